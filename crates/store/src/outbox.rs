//! The transactional outbox: a message that must go out is written in the same
//! transaction as the change that causes it, so a rolled-back change sends nothing
//! and a crash after commit loses nothing.
//!
//! Rows are taken from here in two ways. In production a relay publishes them to a
//! Redis Stream and marks them published. In the embedded default the rows *are* the
//! queue: a consumer leases rows (`lease_until`), and acknowledging marks them
//! published, so a message survives a restart of the one process.

use crate::schema::outbox;
use crate::{AnyConnection, StoreError};
use admit_domain::Envelope;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    pub seq: i64,
    pub message_id: String,
    pub topic: String,
    pub payload: String,
    pub created_at: NaiveDateTime,
    pub lease_until: Option<NaiveDateTime>,
    pub deliveries: i32,
    pub published_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = outbox)]
struct NewOutboxRow<'a> {
    message_id: &'a str,
    topic: &'a str,
    payload: &'a str,
    created_at: NaiveDateTime,
    deliveries: i32,
}

/// The topic of email messages.
pub const MAIL_TOPIC: &str = "mail";

/// Adds a message. Call inside the transaction of the change that causes it.
pub fn enqueue(
    conn: &mut AnyConnection,
    topic: &str,
    envelope: &Envelope,
) -> Result<(), StoreError> {
    let payload = serde_json::to_string(envelope)
        .map_err(|e| StoreError::Internal(format!("cannot encode message: {e}")))?;
    let id = envelope.id.to_string();
    diesel::insert_into(outbox::table)
        .values(NewOutboxRow {
            message_id: &id,
            topic,
            payload: &payload,
            created_at: envelope.created_at.naive_utc(),
            deliveries: 0,
        })
        .execute(conn)?;
    Ok(())
}

/// Makes a finished row deliverable again (a dead letter put back): unpublished,
/// unleased. Returns whether the row exists.
pub fn unpublish(conn: &mut AnyConnection, seq: i64) -> Result<bool, StoreError> {
    let n = diesel::update(outbox::table.filter(outbox::seq.eq(seq)))
        .set((
            outbox::published_at.eq(None::<NaiveDateTime>),
            outbox::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Adds many messages with multi-row statements. Call inside the transaction of the
/// change that causes them.
pub fn enqueue_many(
    conn: &mut AnyConnection,
    topic: &str,
    envelopes: &[Envelope],
) -> Result<(), StoreError> {
    let encoded = envelopes
        .iter()
        .map(|e| {
            serde_json::to_string(e)
                .map(|payload| (e.id.to_string(), payload, e.created_at.naive_utc()))
                .map_err(|e| StoreError::Internal(format!("cannot encode message: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows: Vec<NewOutboxRow> = encoded
        .iter()
        .map(|(id, payload, at)| NewOutboxRow {
            message_id: id,
            topic,
            payload,
            created_at: *at,
            deliveries: 0,
        })
        .collect();
    for chunk in rows.chunks(crate::INSERT_CHUNK) {
        crate::insert_rows!(conn, outbox::table, chunk)?;
    }
    Ok(())
}

pub fn mark_published(
    conn: &mut AnyConnection,
    seqs: &[i64],
    now: NaiveDateTime,
) -> Result<usize, StoreError> {
    Ok(
        diesel::update(outbox::table.filter(outbox::seq.eq_any(seqs)))
            .set(outbox::published_at.eq(Some(now)))
            .execute(conn)?,
    )
}

/// Gives leased rows back at once (their publish failed), so they go out as soon as
/// the queue is back rather than when the lease runs out.
pub fn release(conn: &mut AnyConnection, seqs: &[i64]) -> Result<usize, StoreError> {
    Ok(diesel::update(
        outbox::table
            .filter(outbox::seq.eq_any(seqs))
            .filter(outbox::published_at.is_null()),
    )
    .set(outbox::lease_until.eq(None::<NaiveDateTime>))
    .execute(conn)?)
}

/// Leases up to `limit` rows that are unpublished and not leased by someone else
/// (or whose lease ran out) until `lease_until`. Each row is taken with a
/// conditional update, so two consumers never hold the same row.
pub fn lease(
    conn: &mut AnyConnection,
    topic: &str,
    limit: i64,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> Result<Vec<OutboxRow>, StoreError> {
    let candidates: Vec<OutboxRow> = outbox::table
        .filter(outbox::topic.eq(topic))
        .filter(outbox::published_at.is_null())
        .filter(
            outbox::lease_until
                .is_null()
                .or(outbox::lease_until.lt(now)),
        )
        .order(outbox::seq.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)?;
    let mut taken = Vec::with_capacity(candidates.len());
    for mut row in candidates {
        let n = diesel::update(
            outbox::table
                .filter(outbox::seq.eq(row.seq))
                .filter(outbox::published_at.is_null())
                .filter(
                    outbox::lease_until
                        .is_null()
                        .or(outbox::lease_until.lt(now)),
                ),
        )
        .set((
            outbox::lease_until.eq(Some(lease_until)),
            outbox::deliveries.eq(outbox::deliveries + 1),
        ))
        .execute(conn)?;
        if n == 1 {
            row.lease_until = Some(lease_until);
            row.deliveries += 1;
            taken.push(row);
        }
    }
    Ok(taken)
}

pub fn count_unpublished(conn: &mut AnyConnection, topic: &str) -> Result<i64, StoreError> {
    Ok(outbox::table
        .filter(outbox::topic.eq(topic))
        .filter(outbox::published_at.is_null())
        .count()
        .get_result(conn)?)
}

/// How many rows of `topic` wait to be published, and when the oldest of them was
/// written (`None` when none waits): the outbox lag the relay reports.
pub fn pending_stats(
    conn: &mut AnyConnection,
    topic: &str,
) -> Result<(i64, Option<NaiveDateTime>), StoreError> {
    let waiting = outbox::table
        .filter(outbox::topic.eq(topic))
        .filter(outbox::published_at.is_null());
    let count = waiting.count().get_result(conn)?;
    let oldest = waiting
        .select(diesel::dsl::min(outbox::created_at))
        .first::<Option<NaiveDateTime>>(conn)?;
    Ok((count, oldest))
}

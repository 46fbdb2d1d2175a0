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

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
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
#[diesel(treat_none_as_default_value = false)]
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

/// A message encoded for the outbox ([`encode`]), ready for [`enqueue_encoded`]:
/// a batch encodes its emails before its transaction, not inside it.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub message_id: String,
    pub payload: String,
    pub created_at: NaiveDateTime,
}

/// Encodes a message for the outbox.
pub fn encode(envelope: &Envelope) -> Result<Encoded, StoreError> {
    let mut payload = serde_json::to_string(envelope)
        .map_err(|e| StoreError::Internal(format!("cannot encode message: {e}")))?;
    // The text grew by doubling: an email of 600 bytes would keep 1,024, and a batch
    // holds thousands of them until its chunk commits (shrinking is in place).
    payload.shrink_to_fit();
    Ok(Encoded {
        message_id: envelope.id.to_string(),
        payload,
        created_at: envelope.created_at.naive_utc(),
    })
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
        .map(encode)
        .collect::<Result<Vec<_>, _>>()?;
    enqueue_encoded(conn, topic, &encoded)
}

/// [`enqueue_many`] of messages already encoded.
pub fn enqueue_encoded(
    conn: &mut AnyConnection,
    topic: &str,
    encoded: &[Encoded],
) -> Result<(), StoreError> {
    let rows: Vec<NewOutboxRow> = encoded
        .iter()
        .map(|m| NewOutboxRow {
            message_id: &m.message_id,
            topic,
            payload: &m.payload,
            created_at: m.created_at,
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

/// PostgreSQL's lease: one statement for the whole batch. `FOR UPDATE SKIP LOCKED`
/// takes the rows no other consumer is taking at this moment, and the outer
/// conditions are checked again on the row as it is once locked, so two consumers
/// never hold the same row. The picked rows are a materialized CTE: a subquery under
/// `IN` may be run again by the plan, and return other rows past its `LIMIT`.
const PG_LEASE: &str = "WITH picked AS MATERIALIZED (SELECT seq FROM outbox WHERE topic = $2 \
       AND published_at IS NULL AND (lease_until IS NULL OR lease_until < $3) \
       ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) \
     UPDATE outbox SET lease_until = $1, deliveries = outbox.deliveries + 1 FROM picked \
     WHERE outbox.seq = picked.seq \
       AND outbox.published_at IS NULL AND (outbox.lease_until IS NULL OR outbox.lease_until < $3) \
     RETURNING outbox.seq, outbox.message_id, outbox.topic, outbox.payload, outbox.created_at, \
       outbox.lease_until, outbox.deliveries, outbox.published_at";

/// Leases up to `limit` rows that are unpublished and not leased by someone else
/// (or whose lease ran out) until `lease_until`, oldest first. Each row is taken
/// with a conditional update, so two consumers never hold the same row: on
/// PostgreSQL one `UPDATE … RETURNING` for the batch (the relay runs beside the
/// load it relays, and a statement per row cost PostgreSQL more than the rows'
/// inserts), on SQLite (one writer at a time) a look and an update per row.
pub fn lease(
    conn: &mut AnyConnection,
    topic: &str,
    limit: i64,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> Result<Vec<OutboxRow>, StoreError> {
    if let AnyConnection::Pg(pg) = conn {
        use diesel::sql_types::{BigInt, Text, Timestamp};
        let mut rows: Vec<OutboxRow> = diesel::sql_query(PG_LEASE)
            .bind::<Timestamp, _>(lease_until)
            .bind::<Text, _>(topic)
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(limit)
            .load(pg)?;
        rows.sort_unstable_by_key(|r| r.seq);
        return Ok(rows);
    }
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

/// PostgreSQL only: locks up to `limit` unpublished, unleased rows of `topic`,
/// oldest first, for the caller's transaction (`FOR UPDATE SKIP LOCKED`: rows
/// another transaction holds are passed over, so concurrent relays take disjoint
/// rows and none waits for another). The relay publishes them and marks them
/// published in that same transaction: one write per row where a lease and then
/// the mark were two. `None` on SQLite, which has no row locks (use [`lease`]).
pub fn lock_unpublished(
    conn: &mut AnyConnection,
    topic: &str,
    limit: i64,
    now: NaiveDateTime,
) -> Result<Option<Vec<OutboxRow>>, StoreError> {
    let AnyConnection::Pg(pg) = conn else {
        return Ok(None);
    };
    Ok(Some(
        outbox::table
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
            .for_update()
            .skip_locked()
            .load(pg)?,
    ))
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

//! What operators do with mail: the embedded queue's dead letters (production keeps
//! them in the Redis stream `{prefix}:mail:dead`), putting dead messages back to
//! `queued`, the status of messages by id and by recipient, and the cooldown of
//! resent welcome emails.

use crate::mail::{MailRow, MailStatus};
use crate::schema::{dead_letters, mail_messages, mail_resends, outbox};
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A message the embedded queue gave up on: as it was queued, and why.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = dead_letters)]
pub struct DeadLetterRow {
    pub id: String,
    pub topic: String,
    /// The message id where the payload names one (empty for an undecodable one).
    pub message_id: String,
    pub payload: String,
    pub reason: String,
    pub created_at: NaiveDateTime,
}

pub fn insert_dead_letter(conn: &mut AnyConnection, row: &DeadLetterRow) -> Result<(), StoreError> {
    diesel::insert_into(dead_letters::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The dead letters of `topic`, oldest first.
pub fn dead_letters(
    conn: &mut AnyConnection,
    topic: &str,
    limit: i64,
) -> Result<Vec<DeadLetterRow>, StoreError> {
    Ok(dead_letters::table
        .filter(dead_letters::topic.eq(topic))
        .order((dead_letters::created_at.asc(), dead_letters::id.asc()))
        .limit(limit)
        .select(DeadLetterRow::as_select())
        .load(conn)?)
}

/// Removes a dead letter and returns it: of two callers one gets it, so a retry run
/// twice puts the message back once. Call in the transaction that re-queues it.
pub fn take_dead_letter(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<DeadLetterRow>, StoreError> {
    let Some(row) = dead_letters::table
        .find(id)
        .select(DeadLetterRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let n = diesel::delete(dead_letters::table.find(id)).execute(conn)?;
    Ok((n == 1).then_some(row))
}

/// Puts `dead` messages back to `queued`, due now, with a fresh count of attempts
/// (the last error stays until the next outcome). Returns the ids it changed.
pub fn requeue_dead(
    conn: &mut AnyConnection,
    ids: &[String],
    now: NaiveDateTime,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for chunk in ids.chunks(crate::INSERT_CHUNK) {
        n += diesel::update(
            mail_messages::table
                .filter(mail_messages::id.eq_any(chunk))
                .filter(mail_messages::status.eq(MailStatus::Dead.as_str())),
        )
        .set((
            mail_messages::status.eq(MailStatus::Queued.as_str()),
            mail_messages::attempts.eq(0),
            mail_messages::next_attempt_at.eq(None::<NaiveDateTime>),
            mail_messages::updated_at.eq(now),
        ))
        .execute(conn)?;
    }
    Ok(n)
}

/// The mailer's records of messages to `recipient` (as given, or in lower case),
/// newest first.
pub fn by_recipient(
    conn: &mut AnyConnection,
    recipient: &str,
    limit: i64,
) -> Result<Vec<MailRow>, StoreError> {
    let forms = [recipient.to_owned(), recipient.to_ascii_lowercase()];
    Ok(mail_messages::table
        .filter(mail_messages::recipient.eq_any(&forms))
        .order(mail_messages::created_at.desc())
        .limit(limit)
        .select(MailRow::as_select())
        .load(conn)?)
}

/// A message written to the outbox that the mailer has no record of yet.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub message_id: String,
    pub payload: String,
    pub created_at: NaiveDateTime,
    /// Not yet moved to the queue (production: the Redis stream).
    pub unpublished: bool,
}

/// The outbox row of message `id`, if any.
pub fn in_outbox(conn: &mut AnyConnection, id: &str) -> Result<Option<Waiting>, StoreError> {
    let row: Option<(String, String, NaiveDateTime, Option<NaiveDateTime>)> = outbox::table
        .filter(outbox::message_id.eq(id))
        .order(outbox::seq.desc())
        .select((
            outbox::message_id,
            outbox::payload,
            outbox::created_at,
            outbox::published_at,
        ))
        .first(conn)
        .optional()?;
    Ok(
        row.map(|(message_id, payload, created_at, published)| Waiting {
            message_id,
            payload,
            created_at,
            unpublished: published.is_none(),
        }),
    )
}

/// Unpublished outbox rows of `topic` (the messages still waiting to be queued),
/// oldest first: few, unless the queue is down.
pub fn unpublished(
    conn: &mut AnyConnection,
    topic: &str,
    limit: i64,
) -> Result<Vec<Waiting>, StoreError> {
    let rows: Vec<(String, String, NaiveDateTime)> = outbox::table
        .filter(outbox::topic.eq(topic))
        .filter(outbox::published_at.is_null())
        .order(outbox::seq.asc())
        .limit(limit)
        .select((outbox::message_id, outbox::payload, outbox::created_at))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(message_id, payload, created_at)| Waiting {
            message_id,
            payload,
            created_at,
            unpublished: true,
        })
        .collect())
}

/// Takes the resend slot of `recipient` (normalized) if its last resend is at least
/// `cooldown` old, and records `now`. `Err(seconds)` otherwise: how long until a
/// resend is allowed. The conditional update makes two concurrent resends one.
pub fn take_resend_slot(
    conn: &mut AnyConnection,
    recipient: &str,
    now: NaiveDateTime,
    cooldown: chrono::Duration,
) -> Result<Result<(), i64>, StoreError> {
    let last: Option<NaiveDateTime> = mail_resends::table
        .find(recipient)
        .select(mail_resends::resent_at)
        .first(conn)
        .optional()?;
    let cutoff = now - cooldown;
    let taken = match last {
        None => {
            let row = (
                mail_resends::recipient.eq(recipient),
                mail_resends::resent_at.eq(now),
            );
            match conn {
                AnyConnection::Pg(c) => diesel::insert_into(mail_resends::table)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c)?,
                AnyConnection::Sqlite(c) => diesel::insert_or_ignore_into(mail_resends::table)
                    .values(row)
                    .execute(c)?,
            }
        }
        Some(at) if at <= cutoff => diesel::update(
            mail_resends::table
                .find(recipient)
                .filter(mail_resends::resent_at.le(cutoff)),
        )
        .set(mail_resends::resent_at.eq(now))
        .execute(conn)?,
        Some(_) => 0,
    };
    if taken == 1 {
        return Ok(Ok(()));
    }
    let last: Option<NaiveDateTime> = mail_resends::table
        .find(recipient)
        .select(mail_resends::resent_at)
        .first(conn)
        .optional()?;
    let wait = last
        .map(|at| (at + cooldown - now).num_seconds().max(1))
        .unwrap_or(1);
    Ok(Err(wait))
}

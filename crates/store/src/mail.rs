//! The mailer's record of every message it handled: queued, processing (leased to one
//! sender), sent, failed (to be retried) or dead. It is checked before each send, so a message delivered twice by
//! the queue is sent once.

use crate::schema::mail_messages;
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailStatus {
    Queued,
    Processing,
    Sent,
    Failed,
    Dead,
}

impl MailStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            MailStatus::Queued => "queued",
            MailStatus::Processing => "processing",
            MailStatus::Sent => "sent",
            MailStatus::Failed => "failed",
            MailStatus::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "sent" => MailStatus::Sent,
            "processing" => MailStatus::Processing,
            "failed" => MailStatus::Failed,
            "dead" => MailStatus::Dead,
            _ => MailStatus::Queued,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = mail_messages)]
pub struct MailRow {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
}

impl MailRow {
    pub fn status(&self) -> MailStatus {
        MailStatus::parse(&self.status)
    }
}

pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<MailRow>, StoreError> {
    Ok(mail_messages::table
        .find(id)
        .select(MailRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn mark_sent(conn: &mut AnyConnection, id: &str, now: NaiveDateTime) -> Result<(), StoreError> {
    mark_sent_many(conn, &[id.to_owned()], now)
}

/// [`mark_sent`] for many messages, in one statement per thousand.
pub fn mark_sent_many(
    conn: &mut AnyConnection,
    ids: &[String],
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    for chunk in ids.chunks(crate::INSERT_CHUNK) {
        mark_sent_chunk(conn, chunk, now)?;
    }
    Ok(())
}

fn mark_sent_chunk(
    conn: &mut AnyConnection,
    ids: &[String],
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    diesel::update(mail_messages::table.filter(mail_messages::id.eq_any(ids)))
        .set((
            mail_messages::status.eq(MailStatus::Sent.as_str()),
            mail_messages::attempts.eq(mail_messages::attempts + 1),
            mail_messages::sent_at.eq(Some(now)),
            mail_messages::updated_at.eq(now),
            mail_messages::last_error.eq(None::<String>),
            mail_messages::next_attempt_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records a failed attempt: `failed` with the time of the next try, or `dead` when
/// `next_attempt_at` is `None`.
pub fn mark_failed(
    conn: &mut AnyConnection,
    id: &str,
    error: &str,
    next_attempt_at: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> Result<i32, StoreError> {
    let status = match next_attempt_at {
        Some(_) => MailStatus::Failed,
        None => MailStatus::Dead,
    };
    // A late failure from a sender whose lease ran out never undoes another's success.
    diesel::update(
        mail_messages::table
            .find(id)
            .filter(mail_messages::status.ne(MailStatus::Sent.as_str())),
    )
    .set((
        mail_messages::status.eq(status.as_str()),
        mail_messages::attempts.eq(mail_messages::attempts + 1),
        mail_messages::last_error.eq(Some(error)),
        mail_messages::next_attempt_at.eq(next_attempt_at),
        mail_messages::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(find(conn, id)?.map(|r| r.attempts).unwrap_or_default())
}

/// Lets the current transaction's commit return before its WAL is flushed to disk
/// (PostgreSQL's `synchronous_commit = off`, for this transaction only; a no-op on
/// SQLite). For the mailer's records of what the relay already accepted: a database
/// crash can then forget the last few hundred milliseconds of them, which sends those
/// messages again (never loses one), and in exchange the commit no longer waits for the
/// disk, which is the window in which a killed mailer resends.
pub fn commit_without_flush(conn: &mut AnyConnection) -> Result<(), StoreError> {
    if let AnyConnection::Pg(c) = conn {
        diesel::sql_query("SET LOCAL synchronous_commit TO OFF").execute(c)?;
    }
    Ok(())
}

pub fn count_by_status(conn: &mut AnyConnection, status: MailStatus) -> Result<i64, StoreError> {
    Ok(mail_messages::table
        .filter(mail_messages::status.eq(status.as_str()))
        .count()
        .get_result(conn)?)
}

/// What the mailer may do with a message it was handed.
#[derive(Debug)]
pub enum Claim {
    /// Ours to send now (status `processing` until `lease_until`).
    Mine(MailRow),
    /// Sent or dead already: acknowledge and move on.
    Done,
    /// Another replica is sending it, or its next retry is not due: leave it.
    Busy,
}

/// Registers the message if new and tries to take it for sending. The conditional
/// update makes two replicas handed the same message (a duplicate on the stream, or a
/// take-over while the first is slow) send it once; a lease that ran out (its sender
/// died) makes it available again, so nothing stays `processing` forever.
pub fn claim(
    conn: &mut AnyConnection,
    id: &str,
    kind: &str,
    recipient: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> Result<Claim, StoreError> {
    let wanted = [Wanted {
        id: id.to_owned(),
        kind: kind.to_owned(),
        recipient: recipient.to_owned(),
    }];
    let mut claims = claim_many(conn, &wanted, now, lease_until)?;
    claims.pop().ok_or(StoreError::NotFound)
}

/// A message the mailer was handed.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub id: String,
    pub kind: String,
    pub recipient: String,
}

/// [`claim`] for a batch, one claim per message in order. Messages seen for the first
/// time (nearly all of them) are looked up and recorded as taken in two statements
/// whatever their number; a message the mailer has a record of is claimed with the
/// conditional update, one by one. A message twice in the batch is taken once (the
/// second is `Busy`). If another replica recorded one of the new messages between the
/// look-up and the insert, every new message of the batch is `Busy`: the ones this
/// insert recorded stay leased to nobody until `lease_until`, then come back.
pub fn claim_many(
    conn: &mut AnyConnection,
    wanted: &[Wanted],
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> Result<Vec<Claim>, StoreError> {
    let ids: Vec<&str> = wanted.iter().map(|w| w.id.as_str()).collect();
    let mut known: HashMap<String, MailRow> = HashMap::new();
    for chunk in ids.chunks(crate::INSERT_CHUNK) {
        let rows: Vec<MailRow> = mail_messages::table
            .filter(mail_messages::id.eq_any(chunk))
            .select(MailRow::as_select())
            .load(conn)?;
        known.extend(rows.into_iter().map(|r| (r.id.clone(), r)));
    }
    let mut new_ids: HashSet<&str> = HashSet::new();
    let mut fresh: Vec<MailRow> = wanted
        .iter()
        .filter(|w| !known.contains_key(&w.id) && new_ids.insert(w.id.as_str()))
        .map(|w| MailRow {
            id: w.id.clone(),
            kind: w.kind.clone(),
            recipient: w.recipient.clone(),
            status: MailStatus::Processing.as_str().to_owned(),
            attempts: 0,
            last_error: None,
            next_attempt_at: Some(lease_until),
            created_at: now,
            updated_at: now,
            sent_at: None,
        })
        .collect();
    // In id order, as every replica inserts: two never wait on each other's rows in
    // opposite orders.
    fresh.sort_by(|a, b| a.id.cmp(&b.id));
    let mut inserted = 0;
    for chunk in fresh.chunks(crate::INSERT_CHUNK) {
        inserted += match conn {
            AnyConnection::Pg(c) => diesel::insert_into(mail_messages::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .execute(c)?,
            // One process writes the embedded database, under its write lock: no
            // other replica can have recorded a message since the look-up (and diesel
            // has no multi-row ON CONFLICT for SQLite).
            AnyConnection::Sqlite(c) => diesel::insert_into(mail_messages::table)
                .values(chunk)
                .execute(c)?,
        };
    }
    let raced = inserted != fresh.len();
    let mut fresh: HashMap<String, MailRow> =
        fresh.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut out = Vec::with_capacity(wanted.len());
    let mut seen: HashSet<&str> = HashSet::new();
    for w in wanted {
        let claim = if !seen.insert(w.id.as_str()) {
            Claim::Busy
        } else if let Some(row) = known.remove(&w.id) {
            claim_known(conn, row, now, lease_until)?
        } else {
            match fresh.remove(&w.id) {
                Some(row) if !raced => Claim::Mine(row),
                _ => Claim::Busy,
            }
        };
        out.push(claim);
    }
    Ok(out)
}

/// Takes a message the mailer has a record of, if it is free: not sent or dead, not
/// leased to a live sender, its retry due.
fn claim_known(
    conn: &mut AnyConnection,
    row: MailRow,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> Result<Claim, StoreError> {
    let available = match row.status.as_str() {
        "sent" | "dead" => return Ok(Claim::Done),
        "processing" => row.next_attempt_at.is_some_and(|t| t < now),
        _ => row.next_attempt_at.is_none_or(|t| t <= now),
    };
    if !available {
        return Ok(Claim::Busy);
    }
    let n = diesel::update(
        mail_messages::table
            .find(&row.id)
            .filter(mail_messages::status.eq(&row.status))
            .filter(mail_messages::attempts.eq(row.attempts))
            .filter(mail_messages::updated_at.eq(row.updated_at)),
    )
    .set((
        mail_messages::status.eq("processing"),
        mail_messages::next_attempt_at.eq(Some(lease_until)),
        mail_messages::updated_at.eq(now),
    ))
    .execute(conn)?;
    if n == 1 {
        Ok(Claim::Mine(MailRow {
            status: "processing".into(),
            next_attempt_at: Some(lease_until),
            updated_at: now,
            ..row
        }))
    } else {
        Ok(Claim::Busy)
    }
}

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

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
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

/// [`claim`] for a batch, one claim per message in order. A message twice in the batch
/// is taken once (the second is `Busy`).
///
/// On PostgreSQL the batch is claimed in one statement (see `claim_many_pg`), its own
/// transaction when called outside [`crate::Db::write`]. On SQLite (one process, under
/// its write lock; call it inside [`crate::Db::write`]) messages seen for the first time
/// are looked up and recorded as taken in two statements whatever their number, and a
/// message the mailer has a record of is claimed with the conditional update, one by
/// one.
pub fn claim_many(
    conn: &mut AnyConnection,
    wanted: &[Wanted],
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> Result<Vec<Claim>, StoreError> {
    if let AnyConnection::Pg(c) = conn {
        return claim_many_pg(c, wanted, now, lease_until);
    }
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
    // Only the embedded database (one writer) comes here; a raced insert would leave
    // the messages it recorded leased to nobody until `lease_until`.
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

/// [`claim_many`] on PostgreSQL: the whole batch in one statement, which is its own
/// transaction when called outside [`crate::Db::write`]. New messages are inserted as
/// taken; a message the mailer has a record of is taken by the same statement's
/// `ON CONFLICT … DO UPDATE … WHERE` (not sent or dead, not leased to a live sender,
/// its retry due), evaluated on the row's latest committed version under its row
/// lock, so two replicas racing for one message (a duplicate on the stream, or a
/// take-over) get it once. Rows are taken in id order, as every replica takes them:
/// two never wait on each other's rows in opposite orders. The messages it did not
/// take are looked up again only if there are any, to tell sent or dead (`Done`)
/// from held (`Busy`).
fn claim_many_pg(
    c: &mut diesel::PgConnection,
    wanted: &[Wanted],
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> Result<Vec<Claim>, StoreError> {
    use diesel::sql_types::{Array, Text, Timestamp};
    // Each message once: one statement may not change a row twice.
    let mut seen: HashSet<&str> = HashSet::new();
    let mut unique: Vec<&Wanted> = wanted
        .iter()
        .filter(|w| seen.insert(w.id.as_str()))
        .collect();
    unique.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = unique.iter().map(|w| w.id.as_str()).collect();
    let kinds: Vec<&str> = unique.iter().map(|w| w.kind.as_str()).collect();
    let recipients: Vec<&str> = unique.iter().map(|w| w.recipient.as_str()).collect();
    let taken: Vec<MailRow> = diesel::sql_query(CLAIM_PG)
        .bind::<Array<Text>, _>(&ids)
        .bind::<Array<Text>, _>(&kinds)
        .bind::<Array<Text>, _>(&recipients)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(lease_until)
        .load(c)?;
    let mut taken: HashMap<String, MailRow> =
        taken.into_iter().map(|r| (r.id.clone(), r)).collect();
    let left: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !taken.contains_key(*id))
        .collect();
    let done: HashSet<String> = if left.is_empty() {
        HashSet::new()
    } else {
        mail_messages::table
            .filter(mail_messages::id.eq_any(&left))
            .filter(
                mail_messages::status
                    .eq_any([MailStatus::Sent.as_str(), MailStatus::Dead.as_str()]),
            )
            .select(mail_messages::id)
            .load::<String>(c)?
            .into_iter()
            .collect()
    };
    let mut first: HashSet<&str> = HashSet::new();
    Ok(wanted
        .iter()
        .map(|w| {
            if !first.insert(w.id.as_str()) {
                Claim::Busy
            } else if let Some(row) = taken.remove(&w.id) {
                Claim::Mine(row)
            } else if done.contains(&w.id) {
                Claim::Done
            } else {
                Claim::Busy
            }
        })
        .collect())
}

/// The claim of a batch ($1 ids, $2 kinds, $3 recipients, $4 now, $5 the lease's end);
/// returns the rows taken. The conditions are [`claim_known`]'s.
const CLAIM_PG: &str = "\
INSERT INTO mail_messages AS m \
    (id, kind, recipient, status, attempts, last_error, next_attempt_at, created_at, updated_at, sent_at) \
SELECT w.id, w.kind, w.recipient, 'processing', 0, NULL::text, $5, $4, $4, NULL::timestamp \
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS w(id, kind, recipient, n) \
ORDER BY w.n \
ON CONFLICT (id) DO UPDATE \
    SET status = 'processing', next_attempt_at = EXCLUDED.next_attempt_at, updated_at = EXCLUDED.updated_at \
    WHERE (m.status = 'processing' AND m.next_attempt_at < EXCLUDED.updated_at) \
       OR (m.status NOT IN ('processing', 'sent', 'dead') \
           AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= EXCLUDED.updated_at)) \
RETURNING m.id, m.kind, m.recipient, m.status, m.attempts, m.last_error, m.next_attempt_at, \
    m.created_at, m.updated_at, m.sent_at";

/// A failed send to record: `failed` with the time of its next try, or `dead` when
/// `next_attempt_at` is `None`.
#[derive(Debug, Clone)]
pub struct Failed {
    pub id: String,
    pub error: String,
    pub next_attempt_at: Option<NaiveDateTime>,
}

/// Records the outcomes of many sends: [`mark_sent_many`] for `sent`, [`mark_failed`]
/// for each of `failed` (a late failure never undoes a success). A message named twice
/// is recorded once, sent if either says so.
///
/// On PostgreSQL this is one statement, its own transaction when called outside
/// [`crate::Db::write`], committed without waiting for its WAL to reach the disk
/// ([`commit_without_flush`], for this transaction only): the mailer records what the
/// relay already accepted, and a database crash that forgets the last few hundred
/// milliseconds of such records sends those messages again, never loses one. On
/// SQLite call it inside [`crate::Db::write`].
pub fn record_outcomes(
    conn: &mut AnyConnection,
    sent: &[String],
    failed: &[Failed],
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let sent_ids: HashSet<&str> = sent.iter().map(String::as_str).collect();
    let mut failures: HashMap<&str, &Failed> = HashMap::new();
    for f in failed {
        if !sent_ids.contains(f.id.as_str()) {
            failures.insert(f.id.as_str(), f);
        }
    }
    match conn {
        AnyConnection::Pg(c) => {
            use diesel::sql_types::{Array, Nullable, Text, Timestamp};
            let mut rows: Vec<(&str, &str, Option<&str>, Option<NaiveDateTime>)> = sent_ids
                .iter()
                .map(|id| (*id, MailStatus::Sent.as_str(), None, None))
                .chain(failures.values().map(|f| {
                    let status = match f.next_attempt_at {
                        Some(_) => MailStatus::Failed,
                        None => MailStatus::Dead,
                    };
                    (
                        f.id.as_str(),
                        status.as_str(),
                        Some(f.error.as_str()),
                        f.next_attempt_at,
                    )
                }))
                .collect();
            if rows.is_empty() {
                return Ok(());
            }
            rows.sort_by(|a, b| a.0.cmp(b.0));
            let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
            let statuses: Vec<&str> = rows.iter().map(|r| r.1).collect();
            let errors: Vec<Option<&str>> = rows.iter().map(|r| r.2).collect();
            let next: Vec<Option<NaiveDateTime>> = rows.iter().map(|r| r.3).collect();
            diesel::sql_query(RECORD_PG)
                .bind::<Array<Text>, _>(&ids)
                .bind::<Array<Text>, _>(&statuses)
                .bind::<Array<Nullable<Text>>, _>(&errors)
                .bind::<Array<Nullable<Timestamp>>, _>(&next)
                .bind::<Timestamp, _>(now)
                .execute(c)?;
            Ok(())
        }
        AnyConnection::Sqlite(_) => {
            let ids: Vec<String> = sent_ids.iter().map(|id| (*id).to_owned()).collect();
            mark_sent_many(conn, &ids, now)?;
            for f in failures.values() {
                mark_failed(conn, &f.id, &f.error, f.next_attempt_at, now)?;
            }
            Ok(())
        }
    }
}

/// The record of a group of outcomes ($1 ids, $2 statuses, $3 errors, $4 next
/// attempts, $5 now). `set_config(…, true)` holds for this statement's transaction,
/// whose commit then does not wait for the disk.
const RECORD_PG: &str = "\
UPDATE mail_messages AS m SET \
    status = u.status, \
    attempts = m.attempts + 1, \
    sent_at = CASE WHEN u.status = 'sent' THEN $5 ELSE m.sent_at END, \
    last_error = u.error, \
    next_attempt_at = u.next_at, \
    updated_at = $5 \
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS cfg(v), \
    unnest($1::text[], $2::text[], $3::text[], $4::timestamp[]) AS u(id, status, error, next_at) \
WHERE m.id = u.id AND (u.status = 'sent' OR m.status <> 'sent')";

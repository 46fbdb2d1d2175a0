//! What introspection must honour, read for the in-memory view of the oauth replicas
//! (`admit_runtime::revocations`): revoked access tokens and ended grants.
//!
//! The `revocation_log` table is filled by triggers (migration 000014) whenever a
//! row is added to `revoked_tokens`, a grant's `revoked_at` is set, or a grant is
//! deleted, so no writer can forget to record a revocation. Its numbers are in commit
//! order (see the migration): a reader that has applied every entry up to `n` and
//! reads `seq > n` misses nothing.

use crate::schema::{grants, revocation_log, revoked_tokens};
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// What a log entry revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// An access token, by `jti`.
    Token(String),
    /// A grant (and every access token issued under it), by id.
    Grant(String),
}

/// One entry of the log: what, and until when it matters (the token's or the
/// grant's own expiry; past it the token is inactive anyway).
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: i64,
    pub revoked: Revoked,
    pub expires_at: NaiveDateTime,
}

fn entry((seq, kind, key, expires_at): (i64, String, String, NaiveDateTime)) -> Entry {
    let revoked = if kind == "token" {
        Revoked::Token(key)
    } else {
        Revoked::Grant(key)
    };
    Entry {
        seq,
        revoked,
        expires_at,
    }
}

/// The highest number in the log (0 when it is empty).
pub fn last_seq(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    let max: Option<i64> = revocation_log::table
        .select(diesel::dsl::max(revocation_log::seq))
        .first(conn)?;
    Ok(max.unwrap_or(0))
}

/// The lowest number still in the log (`None` when it is empty).
pub fn first_seq(conn: &mut AnyConnection) -> Result<Option<i64>, StoreError> {
    Ok(revocation_log::table
        .select(diesel::dsl::min(revocation_log::seq))
        .first(conn)?)
}

/// Entries numbered above `after`, oldest first, at most `limit`.
pub fn since(conn: &mut AnyConnection, after: i64, limit: i64) -> Result<Vec<Entry>, StoreError> {
    let rows: Vec<(i64, String, String, NaiveDateTime)> = revocation_log::table
        .filter(revocation_log::seq.gt(after))
        .order(revocation_log::seq.asc())
        .limit(limit)
        .select((
            revocation_log::seq,
            revocation_log::kind,
            revocation_log::key,
            revocation_log::expires_at,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(entry).collect())
}

/// Everything revoked that still matters at `now`, from the tables themselves (a
/// replica's first load, or a reload after the log was trimmed past it): tokens in
/// `revoked_tokens`, grants with `revoked_at` set. Deleted grants are not listed:
/// introspection of a token of a grant that no longer exists reads its absence.
pub fn all(conn: &mut AnyConnection, now: NaiveDateTime) -> Result<Vec<Entry>, StoreError> {
    let tokens: Vec<(String, NaiveDateTime)> = revoked_tokens::table
        .filter(revoked_tokens::expires_at.gt(now))
        .select((revoked_tokens::jti, revoked_tokens::expires_at))
        .load(conn)?;
    let ended: Vec<(String, NaiveDateTime)> = grants::table
        .filter(grants::revoked_at.is_not_null())
        .filter(grants::expires_at.gt(now))
        .select((grants::id, grants::expires_at))
        .load(conn)?;
    let tokens = tokens.into_iter().map(|(jti, expires_at)| Entry {
        seq: 0,
        revoked: Revoked::Token(jti),
        expires_at,
    });
    let ended = ended.into_iter().map(|(id, expires_at)| Entry {
        seq: 0,
        revoked: Revoked::Grant(id),
        expires_at,
    });
    Ok(tokens.chain(ended).collect())
}

/// A grant as introspection needs it: when it ends, and whether it is revoked
/// (`None`: no such grant, or it was deleted).
pub fn grant_state(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(NaiveDateTime, bool)>, StoreError> {
    let row: Option<(NaiveDateTime, Option<NaiveDateTime>)> = grants::table
        .find(id)
        .select((grants::expires_at, grants::revoked_at))
        .first(conn)
        .optional()?;
    Ok(row.map(|(expires_at, revoked_at)| (expires_at, revoked_at.is_some())))
}

/// Forgets log entries written before `before` (replicas that fell further behind
/// reload from the tables).
pub fn purge_log(conn: &mut AnyConnection, before: NaiveDateTime) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(revocation_log::table.filter(revocation_log::logged_at.lt(before)))
            .execute(conn)?,
    )
}

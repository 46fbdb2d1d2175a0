//! Login sessions, grants (a user's authorization of a client), authorization codes,
//! refresh tokens and remembered consent.
//!
//! Secrets are looked up by their SHA-256 digest, never stored in clear. Spending a
//! code or a refresh token is one conditional `UPDATE … WHERE used_at IS NULL`: of
//! concurrent redemptions exactly one changes the row and wins; the others see it
//! spent, which is a replay and revokes the grant.

use crate::schema::{auth_codes, consents, grants, refresh_tokens, sessions};
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id_digest: String,
    pub account_id: String,
    pub auth_time: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = grants)]
pub struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub account_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

impl GrantRow {
    /// Neither revoked nor ended at `now`.
    pub fn is_live(&self, now: NaiveDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = auth_codes)]
pub struct CodeRow {
    pub code_digest: String,
    pub grant_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshRow {
    pub token_digest: String,
    pub grant_id: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

// --- sessions ---------------------------------------------------------------------

/// How long a minted code (SPEC §4's `accessToken.code`) can be exchanged.
pub const MINTED_CODE_TTL_SECS: i64 = 600;

/// A grant of `scope` to `client_id` for `account_id` with an authorization code
/// issued without a redirect URI: what a partner gets for an account it created
/// (SPEC §4). Both rows go in one transaction: [`insert_grant`], [`insert_code`].
pub fn minted_code(
    client_id: &str,
    account_id: &str,
    scope: String,
    code_digest: String,
    now: NaiveDateTime,
    grant_ttl_secs: i64,
) -> (GrantRow, CodeRow) {
    let grant = GrantRow {
        id: uuid::Uuid::now_v7().to_string(),
        client_id: client_id.to_owned(),
        account_id: account_id.to_owned(),
        scope,
        nonce: None,
        auth_time: now,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(grant_ttl_secs),
        revoked_at: None,
    };
    let code = CodeRow {
        code_digest,
        grant_id: grant.id.clone(),
        redirect_uri: String::new(),
        code_challenge: None,
        expires_at: now + chrono::Duration::seconds(MINTED_CODE_TTL_SECS),
        used_at: None,
    };
    (grant, code)
}

pub fn insert_session(conn: &mut AnyConnection, row: &SessionRow) -> Result<(), StoreError> {
    diesel::insert_into(sessions::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The live session whose cookie digests to `digest`.
pub fn find_session(
    conn: &mut AnyConnection,
    digest: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRow>, StoreError> {
    Ok(sessions::table
        .find(digest)
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn end_session(
    conn: &mut AnyConnection,
    digest: &str,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    diesel::update(sessions::table.find(digest))
        .set(sessions::revoked_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}

/// After a password is set or reset: ends every login session of the account,
/// forgets its consents and revokes its grants (their refresh tokens stop working),
/// except `keep_grant`, the grant the partner that created the account received with
/// it (SPEC §4). Returns the sessions ended and the grants revoked.
pub fn after_password_change(
    conn: &mut AnyConnection,
    account_id: &str,
    keep_grant: Option<&str>,
    now: NaiveDateTime,
) -> Result<(usize, usize), StoreError> {
    let ended = diesel::update(
        sessions::table
            .filter(sessions::account_id.eq(account_id))
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(Some(now)))
    .execute(conn)?;
    diesel::delete(consents::table.filter(consents::account_id.eq(account_id))).execute(conn)?;
    let kept: Vec<&str> = keep_grant.into_iter().collect();
    let revoked = diesel::update(
        grants::table
            .filter(grants::account_id.eq(account_id))
            .filter(grants::revoked_at.is_null())
            .filter(diesel::dsl::not(grants::id.eq_any(&kept))),
    )
    .set(grants::revoked_at.eq(Some(now)))
    .execute(conn)?;
    Ok((ended, revoked))
}

// --- grants, codes, refresh tokens ------------------------------------------------

pub fn insert_grant(conn: &mut AnyConnection, row: &GrantRow) -> Result<(), StoreError> {
    diesel::insert_into(grants::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn insert_code(conn: &mut AnyConnection, row: &CodeRow) -> Result<(), StoreError> {
    diesel::insert_into(auth_codes::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn insert_refresh(conn: &mut AnyConnection, row: &RefreshRow) -> Result<(), StoreError> {
    diesel::insert_into(refresh_tokens::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The outcome of presenting a code or a refresh token.
#[derive(Debug)]
pub enum Spend<T> {
    /// First use: the row as it was, and its live grant.
    Won(T, GrantRow),
    /// Already spent (or its grant revoked): the grant is revoked now, if it was not.
    Replayed { grant_id: String },
    /// Unknown or expired.
    Invalid,
}

/// Revokes a grant: its refresh tokens stop working, and introspection reports the
/// access tokens issued under it inactive.
pub fn revoke_grant(
    conn: &mut AnyConnection,
    grant_id: &str,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    diesel::update(
        grants::table
            .find(grant_id)
            .filter(grants::revoked_at.is_null()),
    )
    .set(grants::revoked_at.eq(Some(now)))
    .execute(conn)?;
    Ok(())
}

fn live_grant(
    conn: &mut AnyConnection,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<GrantRow>, StoreError> {
    Ok(grants::table
        .find(id)
        .filter(grants::revoked_at.is_null())
        .filter(grants::expires_at.gt(now))
        .select(GrantRow::as_select())
        .first(conn)
        .optional()?)
}

fn client_of_grant(conn: &mut AnyConnection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(grants::table
        .find(id)
        .select(grants::client_id)
        .first(conn)
        .optional()?)
}

/// Spends an authorization code presented by `client_id`. Call inside
/// [`crate::Db::write`]. Another client's code is `Invalid` and stays unspent.
pub fn redeem_code(
    conn: &mut AnyConnection,
    digest: &str,
    client_id: &str,
    now: NaiveDateTime,
) -> Result<Spend<CodeRow>, StoreError> {
    let Some(code) = auth_codes::table
        .find(digest)
        .select(CodeRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(Spend::Invalid);
    };
    if client_of_grant(conn, &code.grant_id)?.as_deref() != Some(client_id) {
        return Ok(Spend::Invalid);
    }
    let spent = diesel::update(
        auth_codes::table
            .find(digest)
            .filter(auth_codes::used_at.is_null()),
    )
    .set(auth_codes::used_at.eq(Some(now)))
    .execute(conn)?;
    if spent == 0 {
        revoke_grant(conn, &code.grant_id, now)?;
        return Ok(Spend::Replayed {
            grant_id: code.grant_id,
        });
    }
    if code.expires_at <= now {
        return Ok(Spend::Invalid);
    }
    match live_grant(conn, &code.grant_id, now)? {
        Some(grant) => Ok(Spend::Won(code, grant)),
        None => Ok(Spend::Invalid),
    }
}

/// Spends a refresh token presented by `client_id`. Call inside
/// [`crate::Db::write`]; the caller inserts the next token of the grant in the same
/// transaction. Another client's token is `Invalid` and stays unspent.
pub fn spend_refresh(
    conn: &mut AnyConnection,
    digest: &str,
    client_id: &str,
    now: NaiveDateTime,
) -> Result<Spend<RefreshRow>, StoreError> {
    let Some(token) = refresh_tokens::table
        .find(digest)
        .select(RefreshRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(Spend::Invalid);
    };
    if client_of_grant(conn, &token.grant_id)?.as_deref() != Some(client_id) {
        return Ok(Spend::Invalid);
    }
    let spent = diesel::update(
        refresh_tokens::table
            .find(digest)
            .filter(refresh_tokens::used_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(Some(now)))
    .execute(conn)?;
    if spent == 0 {
        revoke_grant(conn, &token.grant_id, now)?;
        return Ok(Spend::Replayed {
            grant_id: token.grant_id,
        });
    }
    if token.expires_at <= now {
        return Ok(Spend::Invalid);
    }
    match live_grant(conn, &token.grant_id, now)? {
        Some(grant) => Ok(Spend::Won(token, grant)),
        None => Ok(Spend::Invalid),
    }
}

/// One refresh of a group handed to [`rotate_refresh`]: the digest of the token
/// presented, the client that presented it, the digest of its successor.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub digest: String,
    pub client_id: String,
    pub next_digest: String,
}

/// The one statement of [`rotate_refresh`]: a call of the database function
/// `rotate_refresh` of migration 000015, whose comment says how each rotation of the
/// group is checked and written, in which order, and why one of concurrent or
/// repeated presentations of a token wins.
///
/// A query of its own type, not a `sql_query`: diesel prepares it once per
/// connection and reuses the prepared statement (its cache is keyed by this type),
/// where a `sql_query` is parsed and planned by PostgreSQL on every call.
struct RotateRefreshPg {
    now: NaiveDateTime,
    digests: Vec<String>,
    client_ids: Vec<String>,
    next_digests: Vec<String>,
    until: NaiveDateTime,
}

impl diesel::query_builder::QueryId for RotateRefreshPg {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for RotateRefreshPg {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RotateRefreshPg {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Text, Timestamp};
        out.push_sql(
            "SELECT i, id, client_id, account_id, scope, nonce, auth_time, created_at, \
             expires_at, revoked_at FROM rotate_refresh(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.digests)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.client_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.next_digests)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.until)?;
        out.push_sql(")");
        Ok(())
    }
}

impl RunQueryDsl<diesel::PgConnection> for RotateRefreshPg {}

/// A rotation that won: its number in the group (from 1) and its live grant.
#[derive(QueryableByName)]
struct Rotated {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    i: i64,
    #[diesel(embed)]
    grant: GrantRow,
}

/// The fast path of refreshes on PostgreSQL: for a group of rotations, each spends
/// its refresh token and stores the next token of its grant (lasting at most
/// `ttl_secs`), all in one autocommitted statement: one round trip and one commit
/// whatever the size of the group. Answers, in the order of `group`, the live grant
/// of each rotation that won.
///
/// `None` for a rotation that changed nothing (unknown, spent, expired, another
/// client's, or its grant revoked or ended, or a token spent earlier in the same
/// group), and for all of them on SQLite: the caller then runs [`spend_refresh`] in a
/// transaction, which tells those cases apart and revokes the grant of a spent token.
/// An error is PostgreSQL's rollback of the whole group, except when the answer is
/// lost after the commit: then each winner's successor is stored (the caller's
/// transaction looks for it). Call it outside any transaction.
pub fn rotate_refresh(
    conn: &mut AnyConnection,
    group: Vec<Rotation>,
    now: NaiveDateTime,
    ttl_secs: i64,
) -> Result<Vec<Option<GrantRow>>, StoreError> {
    let mut won: Vec<Option<GrantRow>> = vec![None; group.len()];
    let AnyConnection::Pg(pg) = conn else {
        return Ok(won);
    };
    let mut statement = RotateRefreshPg {
        now,
        digests: Vec::with_capacity(group.len()),
        client_ids: Vec::with_capacity(group.len()),
        next_digests: Vec::with_capacity(group.len()),
        until: now + chrono::Duration::seconds(ttl_secs),
    };
    for r in group {
        statement.digests.push(r.digest);
        statement.client_ids.push(r.client_id);
        statement.next_digests.push(r.next_digest);
    }
    let rotated = statement.load::<Rotated>(pg)?;
    for Rotated { i, grant } in rotated {
        if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| won.get_mut(i)) {
            *slot = Some(grant);
        }
    }
    Ok(won)
}

/// The grant a refresh token belongs to, whether or not it is spent (revocation).
pub fn grant_of_refresh(
    conn: &mut AnyConnection,
    digest: &str,
) -> Result<Option<GrantRow>, StoreError> {
    Ok(refresh_tokens::table
        .inner_join(grants::table)
        .filter(refresh_tokens::token_digest.eq(digest))
        .select(GrantRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn is_grant_live(
    conn: &mut AnyConnection,
    id: &str,
    now: NaiveDateTime,
) -> Result<bool, StoreError> {
    Ok(live_grant(conn, id, now)?.is_some())
}

/// Forgets grants (and their codes and refresh tokens) that ended before `before`.
pub fn purge_grants(conn: &mut AnyConnection, before: NaiveDateTime) -> Result<usize, StoreError> {
    let ended: Vec<String> = grants::table
        .filter(grants::expires_at.lt(before))
        .select(grants::id)
        .limit(1000)
        .load(conn)?;
    if ended.is_empty() {
        return Ok(0);
    }
    diesel::delete(auth_codes::table.filter(auth_codes::grant_id.eq_any(&ended))).execute(conn)?;
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::grant_id.eq_any(&ended)))
        .execute(conn)?;
    diesel::delete(sessions::table.filter(sessions::expires_at.lt(before))).execute(conn)?;
    Ok(diesel::delete(grants::table.filter(grants::id.eq_any(&ended))).execute(conn)?)
}

// --- consent ----------------------------------------------------------------------

/// The scopes (space separated) the user has already allowed the client.
pub fn consent(
    conn: &mut AnyConnection,
    account_id: &str,
    client_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(consents::table
        .find((account_id, client_id))
        .select(consents::scope)
        .first(conn)
        .optional()?)
}

/// Remembers that the user allowed `scope` to the client (replacing what was).
pub fn remember_consent(
    conn: &mut AnyConnection,
    account_id: &str,
    client_id: &str,
    scope: &str,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    diesel::delete(consents::table.find((account_id, client_id))).execute(conn)?;
    diesel::insert_into(consents::table)
        .values((
            consents::account_id.eq(account_id),
            consents::client_id.eq(client_id),
            consents::scope.eq(scope),
            consents::granted_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

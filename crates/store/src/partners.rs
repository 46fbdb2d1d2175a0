//! Partners, their OAuth clients, API keys and plan codes, and the token signing keys.

use crate::schema::{api_keys, clients, partners, plan_codes, revoked_tokens, signing_keys};
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = partners)]
pub struct PartnerRow {
    pub id: String,
    pub name: String,
    pub landing_url: Option<String>,
    pub created_at: NaiveDateTime,
    /// `#rrggbb`: links and buttons in the partner's emails.
    pub brand_color: Option<String>,
}

impl PartnerRow {
    /// What the partner's emails show of it.
    pub fn brand(self) -> admit_domain::PartnerBrand {
        admit_domain::PartnerBrand {
            name: self.name,
            landing_url: self.landing_url,
            brand_color: self.brand_color,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = clients)]
pub struct ClientRow {
    pub id: String,
    pub partner_id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub is_public: bool,
    pub redirect_uris: String,
    pub grants: String,
    pub scopes: String,
    pub access_ttl_secs: i32,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: String,
    pub partner_id: String,
    pub key_hash: String,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub private_der: String,
    pub public_jwk: String,
    pub created_at: NaiveDateTime,
    pub publish_until: Option<NaiveDateTime>,
}

pub fn insert_partner(conn: &mut AnyConnection, row: &PartnerRow) -> Result<(), StoreError> {
    diesel::insert_into(partners::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find_partner(conn: &mut AnyConnection, id: &str) -> Result<Option<PartnerRow>, StoreError> {
    Ok(partners::table
        .find(id)
        .select(PartnerRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn insert_client(conn: &mut AnyConnection, row: &ClientRow) -> Result<(), StoreError> {
    diesel::insert_into(clients::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// A client that has not been revoked.
pub fn active_client(conn: &mut AnyConnection, id: &str) -> Result<Option<ClientRow>, StoreError> {
    Ok(clients::table
        .find(id)
        .filter(clients::revoked_at.is_null())
        .select(ClientRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn insert_api_key(conn: &mut AnyConnection, row: &ApiKeyRow) -> Result<(), StoreError> {
    diesel::insert_into(api_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn revoke_api_key(
    conn: &mut AnyConnection,
    id: &str,
    now: NaiveDateTime,
) -> Result<bool, StoreError> {
    let n = diesel::update(
        api_keys::table
            .find(id)
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(Some(now)))
    .execute(conn)?;
    Ok(n == 1)
}

/// Adds plan codes; codes the partner already has are kept as they are.
pub fn add_plan_codes(
    conn: &mut AnyConnection,
    partner_id: &str,
    codes: &[String],
    now: NaiveDateTime,
) -> Result<usize, StoreError> {
    let mut added = 0;
    for code in codes {
        let exists: i64 = plan_codes::table
            .filter(plan_codes::partner_id.eq(partner_id))
            .filter(plan_codes::code.eq(code))
            .count()
            .get_result(conn)?;
        if exists == 0 {
            diesel::insert_into(plan_codes::table)
                .values((
                    plan_codes::partner_id.eq(partner_id),
                    plan_codes::code.eq(code),
                    plan_codes::created_at.eq(now),
                ))
                .execute(conn)?;
            added += 1;
        }
    }
    Ok(added)
}

pub fn plan_codes_of(
    conn: &mut AnyConnection,
    partner_id: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(plan_codes::table
        .filter(plan_codes::partner_id.eq(partner_id))
        .order(plan_codes::code.asc())
        .select(plan_codes::code)
        .load(conn)?)
}

pub fn insert_signing_key(conn: &mut AnyConnection, row: &SigningKeyRow) -> Result<(), StoreError> {
    diesel::insert_into(signing_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Keys to publish at `now`, newest first (the first is the one that signs).
pub fn published_signing_keys(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
) -> Result<Vec<SigningKeyRow>, StoreError> {
    Ok(signing_keys::table
        .filter(
            signing_keys::publish_until
                .is_null()
                .or(signing_keys::publish_until.gt(now)),
        )
        .order(signing_keys::created_at.desc())
        .select(SigningKeyRow::as_select())
        .load(conn)?)
}

/// Marks every key but `keep` to be published only until `until`.
pub fn retire_signing_keys_except(
    conn: &mut AnyConnection,
    keep: &str,
    until: NaiveDateTime,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        signing_keys::table
            .filter(signing_keys::kid.ne(keep))
            .filter(signing_keys::publish_until.is_null()),
    )
    .set(signing_keys::publish_until.eq(Some(until)))
    .execute(conn)?)
}

/// Records that the token `jti` is revoked (idempotent).
pub fn revoke_token(
    conn: &mut AnyConnection,
    jti: &str,
    expires_at: NaiveDateTime,
) -> Result<(), StoreError> {
    let known: i64 = revoked_tokens::table
        .filter(revoked_tokens::jti.eq(jti))
        .count()
        .get_result(conn)?;
    if known == 0 {
        diesel::insert_into(revoked_tokens::table)
            .values((
                revoked_tokens::jti.eq(jti),
                revoked_tokens::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn is_token_revoked(conn: &mut AnyConnection, jti: &str) -> Result<bool, StoreError> {
    let n: i64 = revoked_tokens::table
        .filter(revoked_tokens::jti.eq(jti))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Forgets revocations of tokens that have expired anyway.
pub fn purge_revoked_tokens(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.lt(now)))
            .execute(conn)?,
    )
}

/// The partner whose live (unrevoked) API key digests to `digest`.
pub fn partner_of_api_key(
    conn: &mut AnyConnection,
    digest: &str,
) -> Result<Option<String>, StoreError> {
    Ok(api_keys::table
        .filter(api_keys::key_hash.eq(digest))
        .filter(api_keys::revoked_at.is_null())
        .select(api_keys::partner_id)
        .first(conn)
        .optional()?)
}

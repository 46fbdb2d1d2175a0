//! Partner registrations (SPEC §4 and §6): set-password links, memberships (which
//! partner registered or linked which account), failed rows, and the responses kept
//! for `Idempotency-Key` replays. Batches are written with multi-row statements, a
//! chunk at a time, inside the caller's transaction.

use crate::schema::{
    accounts, contacts, idempotency_keys, memberships, password_tokens, registration_failures,
};
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::INSERT_CHUNK;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = password_tokens)]
#[diesel(treat_none_as_default_value = false)]
pub struct PasswordTokenRow {
    pub token_digest: String,
    pub account_id: String,
    pub partner_id: Option<String>,
    /// The grant the partner received with the account (SPEC §4): a new password
    /// keeps it.
    pub grant_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
    /// The address the link was sent to (normalized): using the link confirms it.
    pub sent_to: Option<String>,
    /// What the link is for ([`purpose`]): it works only at the page of its purpose.
    pub purpose: String,
}

/// The purposes of a link of `password_tokens`.
pub mod purpose {
    /// A partner's welcome or "already registered" email (SPEC §4, §6).
    pub const SET_PASSWORD: &str = "set_password";
    /// "Forgot your password?" (SPEC §7).
    pub const RESET: &str = "reset";
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships)]
#[diesel(treat_none_as_default_value = false)]
pub struct MembershipRow {
    pub partner_id: String,
    pub account_id: String,
    pub employee_id: Option<String>,
    pub email_normalized: Option<String>,
    /// `created` or `existing`.
    pub outcome: String,
    /// The partner's other fields, a JSON object.
    pub attributes: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = registration_failures)]
#[diesel(treat_none_as_default_value = false)]
pub struct FailureRow {
    pub partner_id: String,
    pub row_digest: String,
    /// A JSON list of reasons.
    pub reasons: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct IdempotencyRow {
    pub partner_id: String,
    pub idem_key: String,
    pub request_digest: String,
    pub status: i32,
    pub response: String,
    pub created_at: NaiveDateTime,
}

/// Adds set-password or reset links; older unused links of the same accounts and
/// purposes stop working (a newer link invalidates them).
pub fn insert_password_tokens(
    conn: &mut AnyConnection,
    rows: &[PasswordTokenRow],
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let ids: Vec<&str> = chunk.iter().map(|r| r.account_id.as_str()).collect();
        let mut purposes: Vec<&str> = chunk.iter().map(|r| r.purpose.as_str()).collect();
        purposes.sort_unstable();
        purposes.dedup();
        diesel::update(
            password_tokens::table
                .filter(password_tokens::account_id.eq_any(&ids))
                .filter(password_tokens::purpose.eq_any(&purposes))
                .filter(password_tokens::used_at.is_null()),
        )
        .set(password_tokens::used_at.eq(Some(now)))
        .execute(conn)?;
        crate::insert_rows!(conn, password_tokens::table, chunk)?;
    }
    Ok(())
}

/// Adds the links of accounts created in the caller's transaction: they have no
/// older links to retire, so this is the insert alone (no `UPDATE` that probes the
/// links of every account for nothing). Links of accounts that existed before go
/// through [`insert_password_tokens`].
pub fn insert_new_accounts_password_tokens(
    conn: &mut AnyConnection,
    rows: &[PasswordTokenRow],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        crate::insert_rows!(conn, password_tokens::table, chunk)?;
    }
    Ok(())
}

/// The account's newest link for `purpose`, used or not (whom it was sent for).
pub fn latest_password_token(
    conn: &mut AnyConnection,
    account_id: &str,
    purpose: &str,
) -> Result<Option<PasswordTokenRow>, StoreError> {
    Ok(password_tokens::table
        .filter(password_tokens::account_id.eq(account_id))
        .filter(password_tokens::purpose.eq(purpose))
        .order(password_tokens::created_at.desc())
        .select(PasswordTokenRow::as_select())
        .first(conn)
        .optional()?)
}

/// The link of `digest` for `purpose` if it can still be used.
pub fn live_password_token(
    conn: &mut AnyConnection,
    digest: &str,
    purpose: &str,
    now: NaiveDateTime,
) -> Result<Option<PasswordTokenRow>, StoreError> {
    Ok(password_tokens::table
        .find(digest)
        .filter(password_tokens::purpose.eq(purpose))
        .filter(password_tokens::used_at.is_null())
        .filter(password_tokens::expires_at.gt(now))
        .select(PasswordTokenRow::as_select())
        .first(conn)
        .optional()?)
}

/// Uses the link of `digest` for `purpose`: one conditional update, so of two
/// concurrent uses one wins. `None` when it is unknown, used, expired or for another
/// purpose.
pub fn spend_password_token(
    conn: &mut AnyConnection,
    digest: &str,
    purpose: &str,
    now: NaiveDateTime,
) -> Result<Option<PasswordTokenRow>, StoreError> {
    let Some(row) = live_password_token(conn, digest, purpose, now)? else {
        return Ok(None);
    };
    let n = diesel::update(
        password_tokens::table
            .find(digest)
            .filter(password_tokens::used_at.is_null()),
    )
    .set(password_tokens::used_at.eq(Some(now)))
    .execute(conn)?;
    Ok((n == 1).then_some(row))
}

/// Retires every unused link of the account, whatever its purpose: once a password
/// is chosen, an older email must not change it again.
pub fn retire_password_tokens(
    conn: &mut AnyConnection,
    account_id: &str,
    now: NaiveDateTime,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        password_tokens::table
            .filter(password_tokens::account_id.eq(account_id))
            .filter(password_tokens::used_at.is_null()),
    )
    .set(password_tokens::used_at.eq(Some(now)))
    .execute(conn)?)
}

/// Marks the account's email contact `address` (normalized) confirmed, if it is not
/// yet: whoever used a link sent there reads that mailbox.
pub fn confirm_email(
    conn: &mut AnyConnection,
    account_id: &str,
    address: &str,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    diesel::update(
        contacts::table
            .filter(contacts::account_id.eq(account_id))
            .filter(contacts::kind.eq("EMAIL"))
            .filter(contacts::value_normalized.eq(address))
            .filter(contacts::verified_at.is_null()),
    )
    .set(contacts::verified_at.eq(Some(now)))
    .execute(conn)?;
    Ok(())
}

/// Sets the account's password hash and enables it.
pub fn set_password(
    conn: &mut AnyConnection,
    account_id: &str,
    password_hash: &str,
) -> Result<(), StoreError> {
    let n = diesel::update(accounts::table.find(account_id))
        .set((
            accounts::password_hash.eq(Some(password_hash)),
            accounts::status.eq("active"),
        ))
        .execute(conn)?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

pub fn insert_memberships(
    conn: &mut AnyConnection,
    rows: &[MembershipRow],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        crate::insert_rows!(conn, memberships::table, chunk)?;
    }
    Ok(())
}

/// The partner's memberships whose `partner_EmployeeID` is one of `ids`.
pub fn memberships_by_employee(
    conn: &mut AnyConnection,
    partner_id: &str,
    ids: &[String],
) -> Result<Vec<MembershipRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(INSERT_CHUNK * 5) {
        out.extend(
            memberships::table
                .filter(memberships::partner_id.eq(partner_id))
                .filter(memberships::employee_id.eq_any(chunk))
                .select(MembershipRow::as_select())
                .load(conn)?,
        );
    }
    Ok(out)
}

/// The partner's memberships of accounts with one of the normalised `emails`.
pub fn memberships_by_email(
    conn: &mut AnyConnection,
    partner_id: &str,
    emails: &[String],
) -> Result<Vec<MembershipRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in emails.chunks(INSERT_CHUNK * 5) {
        out.extend(
            memberships::table
                .filter(memberships::partner_id.eq(partner_id))
                .filter(memberships::email_normalized.eq_any(chunk))
                .select(MembershipRow::as_select())
                .load(conn)?,
        );
    }
    Ok(out)
}

/// The partner's memberships of the accounts `ids`.
pub fn memberships_by_account(
    conn: &mut AnyConnection,
    partner_id: &str,
    ids: &[String],
) -> Result<Vec<MembershipRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(INSERT_CHUNK * 5) {
        out.extend(
            memberships::table
                .filter(memberships::partner_id.eq(partner_id))
                .filter(memberships::account_id.eq_any(chunk))
                .select(MembershipRow::as_select())
                .load(conn)?,
        );
    }
    Ok(out)
}

/// Which of the normalised `emails` already belong to an account: (email, account).
pub fn accounts_by_email(
    conn: &mut AnyConnection,
    emails: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    for chunk in emails.chunks(INSERT_CHUNK * 5) {
        out.extend(
            contacts::table
                .filter(contacts::kind.eq("EMAIL"))
                .filter(contacts::value_normalized.eq_any(chunk))
                .select((contacts::value_normalized, contacts::account_id))
                .load::<(String, String)>(conn)?,
        );
    }
    Ok(out)
}

pub fn insert_failures(conn: &mut AnyConnection, rows: &[FailureRow]) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        crate::insert_rows!(conn, registration_failures::table, chunk)?;
    }
    Ok(())
}

/// The partner's failed rows among `digests`.
pub fn failures_by_digest(
    conn: &mut AnyConnection,
    partner_id: &str,
    digests: &[String],
) -> Result<Vec<FailureRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in digests.chunks(INSERT_CHUNK * 5) {
        out.extend(
            registration_failures::table
                .filter(registration_failures::partner_id.eq(partner_id))
                .filter(registration_failures::row_digest.eq_any(chunk))
                .select(FailureRow::as_select())
                .load(conn)?,
        );
    }
    Ok(out)
}

/// What [`reserve_idempotency_key`] found.
#[derive(Debug)]
pub enum Reservation {
    /// The key is now this request's (status 0 until [`complete_idempotency_key`]).
    Reserved,
    /// The key was used within the window: its row (status 0: still running).
    Taken(IdempotencyRow),
}

/// Claims the partner's `Idempotency-Key` for a request before its work starts, so
/// two requests with one key never both run. A row older than `since` is replaced.
pub fn reserve_idempotency_key(
    conn: &mut AnyConnection,
    row: &IdempotencyRow,
    since: NaiveDateTime,
) -> Result<Reservation, StoreError> {
    let existing = idempotency_keys::table
        .find((&row.partner_id, &row.idem_key))
        .select(IdempotencyRow::as_select())
        .first(conn)
        .optional()?;
    match existing {
        Some(kept) if kept.created_at > since => return Ok(Reservation::Taken(kept)),
        Some(_) => {
            diesel::delete(idempotency_keys::table.find((&row.partner_id, &row.idem_key)))
                .execute(conn)?;
        }
        None => {}
    }
    diesel::insert_into(idempotency_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(Reservation::Reserved)
}

/// Stores the answer of a reserved key, for replays.
pub fn complete_idempotency_key(
    conn: &mut AnyConnection,
    partner_id: &str,
    key: &str,
    status: i32,
    response: &str,
) -> Result<(), StoreError> {
    diesel::update(idempotency_keys::table.find((partner_id, key)))
        .set((
            idempotency_keys::status.eq(status),
            idempotency_keys::response.eq(response),
        ))
        .execute(conn)?;
    Ok(())
}

/// Gives a reserved key back (its request failed before it had an answer).
pub fn release_idempotency_key(
    conn: &mut AnyConnection,
    partner_id: &str,
    key: &str,
) -> Result<(), StoreError> {
    diesel::delete(
        idempotency_keys::table
            .find((partner_id, key))
            .filter(idempotency_keys::status.eq(0)),
    )
    .execute(conn)?;
    Ok(())
}

/// Forgets answers kept since before `before`.
pub fn purge_idempotency_keys(
    conn: &mut AnyConnection,
    before: NaiveDateTime,
) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(before)))
            .execute(conn)?,
    )
}

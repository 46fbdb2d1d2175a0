//! Confirmations of a pending account's contacts (SPEC §3 `is_enabled=false`): the
//! link of a "confirm your address" email (kind `EMAIL`) and the code of a text
//! message (kind `PHONE`). Only a digest is kept. A link is found by its digest; a
//! code by its phone number (six digits are not unique), and then compared by the
//! caller, in constant time, through the closure given to [`try_code`].
//!
//! Confirming a contact marks it verified and turns a pending account active, in the
//! caller's transaction, and is idempotent: the second confirmation of an account
//! changes nothing.

use crate::schema::{accounts, confirmations, contacts};
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// The status of an account created with `is_enabled=false`, waiting for a contact
/// to be confirmed. (Not `pending`: that is a partner-registered account waiting for
/// its user to choose a password, which no confirmation may activate.)
pub const PENDING: &str = "unconfirmed";
/// The status of an account that can sign in.
pub const ACTIVE: &str = "active";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = confirmations)]
#[diesel(treat_none_as_default_value = false)]
pub struct ConfirmationRow {
    /// The id of the message (email or text) that carries the link or the code.
    pub id: String,
    pub account_id: String,
    /// `EMAIL` (a link) or `PHONE` (a code).
    pub kind: String,
    /// The contact's normalized value.
    pub contact: String,
    pub digest: String,
    pub attempts: i32,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

/// Adds confirmations; the unused ones of the same account and contact stop working
/// (a newer code or link replaces the older one).
pub fn insert(
    conn: &mut AnyConnection,
    rows: &[ConfirmationRow],
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    for row in rows {
        diesel::update(
            confirmations::table
                .filter(confirmations::account_id.eq(&row.account_id))
                .filter(confirmations::kind.eq(&row.kind))
                .filter(confirmations::contact.eq(&row.contact))
                .filter(confirmations::used_at.is_null()),
        )
        .set(confirmations::used_at.eq(Some(now)))
        .execute(conn)?;
        diesel::insert_into(confirmations::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

/// The email link of `digest`, if it can still be used.
pub fn live_link(
    conn: &mut AnyConnection,
    digest: &str,
    now: NaiveDateTime,
) -> Result<Option<ConfirmationRow>, StoreError> {
    Ok(confirmations::table
        .filter(confirmations::digest.eq(digest))
        .filter(confirmations::kind.eq("EMAIL"))
        .filter(confirmations::used_at.is_null())
        .filter(confirmations::expires_at.gt(now))
        .select(ConfirmationRow::as_select())
        .first(conn)
        .optional()?)
}

/// Uses the email link of `digest` (one conditional update: of two concurrent uses
/// one wins) and confirms its contact. `None` when it is unknown, used or expired.
pub fn spend_link(
    conn: &mut AnyConnection,
    digest: &str,
    now: NaiveDateTime,
) -> Result<Option<ConfirmationRow>, StoreError> {
    let Some(row) = live_link(conn, digest, now)? else {
        return Ok(None);
    };
    let n = diesel::update(
        confirmations::table
            .find(&row.id)
            .filter(confirmations::used_at.is_null()),
    )
    .set(confirmations::used_at.eq(Some(now)))
    .execute(conn)?;
    if n != 1 {
        return Ok(None);
    }
    confirm_contact(conn, &row.account_id, &row.kind, &row.contact, now)?;
    Ok(Some(row))
}

/// What a code submitted for a phone came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code was right: it is used, the phone confirmed, the account active.
    Confirmed(String),
    /// The code was wrong; so many tries are left before the code is locked.
    Wrong { attempts_left: u32 },
    /// The code had its `max_attempts` tries: it no longer works, even when right.
    Locked,
    /// No code is waiting for this phone: none was sent, or it was used, replaced
    /// or expired.
    Gone,
}

/// Checks a code submitted for `phone` (normalized) against the newest unused code of
/// that phone: `matches` compares (in constant time) with the stored digest. Every
/// try counts, the right one included, with a conditional update, so concurrent
/// tries never get more than `max_attempts` between them. Call inside
/// [`crate::Db::write`]: a wrong try must commit its count.
pub fn try_code(
    conn: &mut AnyConnection,
    phone: &str,
    now: NaiveDateTime,
    max_attempts: u32,
    matches: impl Fn(&ConfirmationRow) -> bool,
) -> Result<CodeCheck, StoreError> {
    let max = i32::try_from(max_attempts).unwrap_or(i32::MAX);
    let row = confirmations::table
        .filter(confirmations::kind.eq("PHONE"))
        .filter(confirmations::contact.eq(phone))
        .filter(confirmations::used_at.is_null())
        .order(confirmations::created_at.desc())
        .select(ConfirmationRow::as_select())
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok(CodeCheck::Gone);
    };
    if row.expires_at <= now {
        return Ok(CodeCheck::Gone);
    }
    let counted = diesel::update(
        confirmations::table
            .find(&row.id)
            .filter(confirmations::used_at.is_null())
            .filter(confirmations::attempts.lt(max)),
    )
    .set(confirmations::attempts.eq(confirmations::attempts + 1))
    .execute(conn)?;
    if counted != 1 {
        return Ok(CodeCheck::Locked);
    }
    if !matches(&row) {
        let left = max.saturating_sub(row.attempts + 1).max(0);
        return Ok(CodeCheck::Wrong {
            attempts_left: left as u32,
        });
    }
    let used = diesel::update(
        confirmations::table
            .find(&row.id)
            .filter(confirmations::used_at.is_null()),
    )
    .set(confirmations::used_at.eq(Some(now)))
    .execute(conn)?;
    if used != 1 {
        return Ok(CodeCheck::Gone);
    }
    confirm_contact(conn, &row.account_id, &row.kind, &row.contact, now)?;
    Ok(CodeCheck::Confirmed(row.account_id))
}

/// Marks the account's contact verified (if it is not yet) and a pending account
/// active.
pub fn confirm_contact(
    conn: &mut AnyConnection,
    account_id: &str,
    kind: &str,
    normalized: &str,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    diesel::update(
        contacts::table
            .filter(contacts::account_id.eq(account_id))
            .filter(contacts::kind.eq(kind))
            .filter(contacts::value_normalized.eq(normalized))
            .filter(contacts::verified_at.is_null()),
    )
    .set(contacts::verified_at.eq(Some(now)))
    .execute(conn)?;
    diesel::update(
        accounts::table
            .find(account_id)
            .filter(accounts::status.eq(PENDING)),
    )
    .set(accounts::status.eq(ACTIVE))
    .execute(conn)?;
    Ok(())
}

/// The pending account whose unconfirmed phone contact is `phone` (normalized), if
/// there is one: the account a new code may be sent for.
pub fn pending_phone(
    conn: &mut AnyConnection,
    phone: &str,
) -> Result<Option<crate::accounts::AccountRow>, StoreError> {
    pending_contact(conn, "PHONE", phone)
}

/// The pending account whose unconfirmed contact of `kind` is `normalized`, if there
/// is one, with the contact's value as given.
pub fn pending_contact(
    conn: &mut AnyConnection,
    kind: &str,
    normalized: &str,
) -> Result<Option<crate::accounts::AccountRow>, StoreError> {
    Ok(contacts::table
        .inner_join(accounts::table)
        .filter(contacts::kind.eq(kind))
        .filter(contacts::value_normalized.eq(normalized))
        .filter(contacts::verified_at.is_null())
        .filter(accounts::status.eq(PENDING))
        .select(crate::accounts::AccountRow::as_select())
        .first(conn)
        .optional()?)
}

/// The account's confirmations, newest first (for tests and support).
pub fn of_account(
    conn: &mut AnyConnection,
    account_id: &str,
) -> Result<Vec<ConfirmationRow>, StoreError> {
    Ok(confirmations::table
        .filter(confirmations::account_id.eq(account_id))
        .order(confirmations::created_at.desc())
        .select(ConfirmationRow::as_select())
        .load(conn)?)
}

//! Accounts and their contacts.

use crate::schema::{accounts, contacts};
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = accounts)]
#[diesel(treat_none_as_default_value = false)]
pub struct AccountRow {
    pub id: String,
    pub username: Option<String>,
    pub username_normalized: Option<String>,
    pub full_name: Option<String>,
    pub locale: Option<String>,
    pub password_hash: Option<String>,
    pub account_type: String,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = contacts)]
#[diesel(treat_none_as_default_value = false)]
pub struct ContactRow {
    pub id: String,
    pub account_id: String,
    pub kind: String,
    pub value: String,
    pub value_normalized: String,
    pub is_primary: bool,
    pub verified_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

/// Inserts an account with its contacts. Call inside [`crate::Db::write`] so that the
/// outbox rows the caller adds commit with it. A taken email, phone or username is
/// refused by the unique indexes, so two concurrent sign-ups cannot both win.
pub fn insert(
    conn: &mut AnyConnection,
    account: &AccountRow,
    contact_rows: &[ContactRow],
) -> Result<(), StoreError> {
    diesel::insert_into(accounts::table)
        .values(account)
        .execute(conn)?;
    for c in contact_rows {
        diesel::insert_into(contacts::table)
            .values(c)
            .execute(conn)?;
    }
    Ok(())
}

/// Inserts many accounts and their contacts with multi-row statements (a chunk of
/// rows each), for batch registration. Same guarantees as [`insert`].
pub fn insert_many(
    conn: &mut AnyConnection,
    account_rows: &[AccountRow],
    contact_rows: &[ContactRow],
) -> Result<(), StoreError> {
    for chunk in account_rows.chunks(crate::INSERT_CHUNK) {
        crate::insert_rows!(conn, accounts::table, chunk)?;
    }
    for chunk in contact_rows.chunks(crate::INSERT_CHUNK) {
        crate::insert_rows!(conn, contacts::table, chunk)?;
    }
    Ok(())
}

pub fn find(conn: &mut AnyConnection, id: &str) -> Result<AccountRow, StoreError> {
    Ok(accounts::table
        .find(id)
        .select(AccountRow::as_select())
        .first(conn)?)
}

/// The account that owns a contact, by its normalised value.
pub fn find_by_contact(
    conn: &mut AnyConnection,
    kind: &str,
    normalized: &str,
) -> Result<Option<String>, StoreError> {
    Ok(contacts::table
        .filter(contacts::kind.eq(kind))
        .filter(contacts::value_normalized.eq(normalized))
        .select(contacts::account_id)
        .first(conn)
        .optional()?)
}

pub fn count(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(accounts::table.count().get_result(conn)?)
}

/// Deletes test accounts (and their contacts) whose time is up; returns how many.
pub fn purge_expired_test_accounts(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
) -> Result<usize, StoreError> {
    let expired: Vec<String> = accounts::table
        .filter(accounts::account_type.eq("test"))
        .filter(accounts::expires_at.lt(now))
        .select(accounts::id)
        .limit(1000)
        .load(conn)?;
    if expired.is_empty() {
        return Ok(0);
    }
    diesel::delete(contacts::table.filter(contacts::account_id.eq_any(&expired))).execute(conn)?;
    diesel::delete(
        crate::schema::memberships::table
            .filter(crate::schema::memberships::account_id.eq_any(&expired)),
    )
    .execute(conn)?;
    diesel::delete(
        crate::schema::password_tokens::table
            .filter(crate::schema::password_tokens::account_id.eq_any(&expired)),
    )
    .execute(conn)?;
    diesel::delete(
        crate::schema::confirmations::table
            .filter(crate::schema::confirmations::account_id.eq_any(&expired)),
    )
    .execute(conn)?;
    Ok(diesel::delete(accounts::table.filter(accounts::id.eq_any(&expired))).execute(conn)?)
}

pub fn username_taken(conn: &mut AnyConnection, normalized: &str) -> Result<bool, StoreError> {
    let n: i64 = accounts::table
        .filter(accounts::username_normalized.eq(normalized))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

pub fn find_by_username(
    conn: &mut AnyConnection,
    normalized: &str,
) -> Result<Option<AccountRow>, StoreError> {
    Ok(accounts::table
        .filter(accounts::username_normalized.eq(normalized))
        .select(AccountRow::as_select())
        .first(conn)
        .optional()?)
}

/// The account's primary email, if it has one: the value as given and whether it is
/// confirmed.
pub fn primary_email(
    conn: &mut AnyConnection,
    account_id: &str,
) -> Result<Option<(String, bool)>, StoreError> {
    let row: Option<(String, Option<NaiveDateTime>)> = contacts::table
        .filter(contacts::account_id.eq(account_id))
        .filter(contacts::kind.eq("EMAIL"))
        .order(contacts::is_primary.desc())
        .select((contacts::value, contacts::verified_at))
        .first(conn)
        .optional()?;
    Ok(row.map(|(v, at)| (v, at.is_some())))
}

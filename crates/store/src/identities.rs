//! Social identities linked to accounts (`POST /account`, implicit method): which
//! provider's subject an account signed up with. The unique index on (provider,
//! subject) is what lets one identity register one account, even when two requests
//! race.

use crate::accounts::{AccountRow, ContactRow};
use crate::schema::identities;
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = identities)]
pub struct IdentityRow {
    pub id: String,
    pub account_id: String,
    /// The configured provider's name (`account.social.providers.<name>`).
    pub provider: String,
    /// The provider's identifier of the user (OIDC `sub`, Facebook `id`).
    pub subject: String,
    pub created_at: NaiveDateTime,
}

/// Inserts an account, its contacts and the identity it signed up with. Call inside
/// [`crate::Db::write`] so the outbox row the caller adds commits with them. A taken
/// identity is [`crate::Conflict::Identity`], a taken contact
/// [`crate::Conflict::Contact`]; either way nothing is written.
pub fn insert_account(
    conn: &mut AnyConnection,
    account: &AccountRow,
    contacts: &[ContactRow],
    identity: &IdentityRow,
) -> Result<(), StoreError> {
    // The identity first: a repeated sign-up is refused on it before a contact of the
    // same account can be named as the conflict.
    crate::accounts::insert(conn, account, &[])?;
    diesel::insert_into(identities::table)
        .values(identity)
        .execute(conn)?;
    for c in contacts {
        diesel::insert_into(crate::schema::contacts::table)
            .values(c)
            .execute(conn)?;
    }
    Ok(())
}

/// The account linked to `provider`'s `subject`, if any.
pub fn find_account(
    conn: &mut AnyConnection,
    provider: &str,
    subject: &str,
) -> Result<Option<String>, StoreError> {
    Ok(identities::table
        .filter(identities::provider.eq(provider))
        .filter(identities::subject.eq(subject))
        .select(identities::account_id)
        .first(conn)
        .optional()?)
}

/// The identities linked to an account, oldest first.
pub fn for_account(
    conn: &mut AnyConnection,
    account_id: &str,
) -> Result<Vec<IdentityRow>, StoreError> {
    Ok(identities::table
        .filter(identities::account_id.eq(account_id))
        .order((identities::created_at.asc(), identities::id.asc()))
        .select(IdentityRow::as_select())
        .load(conn)?)
}

//! The purge of test accounts (SPEC.md §3, `account_type: test`): 24 hours after its
//! creation a test account is deleted with everything attached to it, in one
//! transaction, so a pass either removes an account whole or not at all.
//!
//! Several replicas run the purge: on PostgreSQL a transaction-scoped advisory lock
//! lets one pass run at a time (the others skip their turn); SQLite has one writer
//! anyway. A pass is idempotent: what it deleted is gone, and the next pass finds
//! the next expired accounts.

use crate::schema::{
    accounts, auth_codes, confirmations, consents, contacts, grants, identities, mail_messages,
    memberships, outbox, password_tokens, refresh_tokens, sessions,
};
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// Accounts deleted by one pass at most; the next pass takes the rest.
const PASS: i64 = 1_000;

/// The advisory lock key of the purge (any constant the platform uses for nothing
/// else).
const LOCK_KEY: i64 = 0x6164_6d69_7450_7572; // "admitPur"

/// What one pass deleted, table by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    pub accounts: usize,
    pub rows: Vec<(&'static str, usize)>,
}

impl Purged {
    pub fn total_rows(&self) -> usize {
        self.rows.iter().map(|(_, n)| n).sum::<usize>() + self.accounts
    }
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// Deletes the test accounts whose time is up at `now`, with their contacts,
/// sessions, grants (codes, refresh tokens), consents, partner memberships, linked
/// social identities, pending confirmations, links and mail records. Call inside [`crate::Db::write`]. `None`: another replica holds
/// the purge lock, and this pass did nothing.
pub fn expired_test_accounts(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
) -> Result<Option<Purged>, StoreError> {
    if let AnyConnection::Pg(c) = conn {
        let lock: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
            .bind::<diesel::sql_types::BigInt, _>(LOCK_KEY)
            .get_result(c)?;
        if !lock.locked {
            return Ok(None);
        }
    }
    let ids: Vec<String> = accounts::table
        .filter(accounts::account_type.eq("test"))
        .filter(accounts::expires_at.lt(now))
        .select(accounts::id)
        .order(accounts::expires_at)
        .limit(PASS)
        .load(conn)?;
    let mut purged = Purged::default();
    if ids.is_empty() {
        return Ok(Some(purged));
    }
    let mut count = |table: &'static str, n: usize| purged.rows.push((table, n));

    // Mail records are keyed by message id and recipient: the account's addresses
    // find them, and their ids find the outbox rows that carried them.
    let addresses: Vec<String> = contacts::table
        .filter(contacts::account_id.eq_any(&ids))
        .select(contacts::value)
        .load(conn)?;
    let mail_ids: Vec<String> = mail_messages::table
        .filter(mail_messages::recipient.eq_any(&addresses))
        .select(mail_messages::id)
        .load(conn)?;
    count(
        "outbox",
        diesel::delete(outbox::table.filter(outbox::message_id.eq_any(&mail_ids))).execute(conn)?,
    );
    count(
        "mail_messages",
        diesel::delete(mail_messages::table.filter(mail_messages::id.eq_any(&mail_ids)))
            .execute(conn)?,
    );

    let grant_ids: Vec<String> = grants::table
        .filter(grants::account_id.eq_any(&ids))
        .select(grants::id)
        .load(conn)?;
    count(
        "auth_codes",
        diesel::delete(auth_codes::table.filter(auth_codes::grant_id.eq_any(&grant_ids)))
            .execute(conn)?,
    );
    count(
        "refresh_tokens",
        diesel::delete(refresh_tokens::table.filter(refresh_tokens::grant_id.eq_any(&grant_ids)))
            .execute(conn)?,
    );
    count(
        "password_tokens",
        diesel::delete(password_tokens::table.filter(password_tokens::account_id.eq_any(&ids)))
            .execute(conn)?,
    );
    count(
        "grants",
        diesel::delete(grants::table.filter(grants::account_id.eq_any(&ids))).execute(conn)?,
    );
    count(
        "consents",
        diesel::delete(consents::table.filter(consents::account_id.eq_any(&ids))).execute(conn)?,
    );
    count(
        "sessions",
        diesel::delete(sessions::table.filter(sessions::account_id.eq_any(&ids))).execute(conn)?,
    );
    count(
        "memberships",
        diesel::delete(memberships::table.filter(memberships::account_id.eq_any(&ids)))
            .execute(conn)?,
    );
    count(
        "confirmations",
        diesel::delete(confirmations::table.filter(confirmations::account_id.eq_any(&ids)))
            .execute(conn)?,
    );
    count(
        "identities",
        diesel::delete(identities::table.filter(identities::account_id.eq_any(&ids)))
            .execute(conn)?,
    );
    count(
        "contacts",
        diesel::delete(contacts::table.filter(contacts::account_id.eq_any(&ids))).execute(conn)?,
    );
    purged.accounts =
        diesel::delete(accounts::table.filter(accounts::id.eq_any(&ids))).execute(conn)?;
    Ok(Some(purged))
}

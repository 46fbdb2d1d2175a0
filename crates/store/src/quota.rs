//! What a partner's daily account-creation quota counts: the accounts it created
//! (memberships with outcome `created`, from `POST /api/account/` and `user.create`)
//! since a moment, and how many of a batch's addresses would be new accounts.

use crate::schema::memberships;
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// Accounts `partner_id` created at or after `since`.
pub fn accounts_created_since(
    conn: &mut AnyConnection,
    partner_id: &str,
    since: NaiveDateTime,
) -> Result<u64, StoreError> {
    let n: i64 = memberships::table
        .filter(memberships::partner_id.eq(partner_id))
        .filter(memberships::outcome.eq("created"))
        .filter(memberships::created_at.ge(since))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Of the normalised addresses `emails` (distinct), how many have no account yet:
/// the accounts a batch of them would create at most.
pub fn new_addresses(conn: &mut AnyConnection, emails: &[String]) -> Result<u64, StoreError> {
    let known = crate::registrations::accounts_by_email(conn, emails)?;
    let known: std::collections::HashSet<&str> = known.iter().map(|(e, _)| e.as_str()).collect();
    let new = emails
        .iter()
        .filter(|e| !known.contains(e.as_str()))
        .count();
    Ok(u64::try_from(new).unwrap_or(u64::MAX))
}

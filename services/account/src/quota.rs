//! The per-partner limits of the partner APIs ([`admit_runtime::limits`]): the request
//! rate, checked right after the credential (before the body is read), and the daily
//! account-creation quota, checked before anything is written.
//!
//! The quota counts the accounts the partner created since 00:00 UTC (its
//! `created` memberships) plus those the request would create: 1 for
//! `POST /api/account/`; for `user.create` the valid rows' distinct addresses that
//! have no account yet, so a retried batch costs nothing. Over it, the request is
//! refused whole (429, `Retry-After` until the next UTC day) and nothing is written.
//! A partner's batches take a lock of this replica for the check and their writes,
//! so two of them cannot both fit into the last places; requests racing on
//! different replicas at the very edge of the quota can exceed it by at most the
//! requests in flight.

use crate::error::ApiError;
use crate::AccountState;
use admit_runtime::limits::{secs_until_next_utc_day, Kind, PartnerLimits};
use admit_store::{quota, AnyConnection};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One lock per partner with a quota, held by its batches.
#[derive(Default)]
pub struct Locks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Locks {
    pub fn of(&self, partner_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(partner_id.to_owned()).or_default().clone()
    }
}

/// Counts one partner API request against the partner's rate.
pub async fn rate(state: &AccountState, partner_id: &str) -> Result<(), ApiError> {
    state.partner_limits.request(partner_id).await?;
    Ok(())
}

/// Refuses when `creating` more accounts today would exceed the partner's quota.
pub fn check(
    conn: &mut AnyConnection,
    limits: &PartnerLimits,
    partner_id: &str,
    creating: u64,
) -> Result<(), ApiError> {
    let Some(allowed) = limits.of(partner_id).daily_accounts else {
        return Ok(());
    };
    if creating == 0 {
        return Ok(());
    }
    let now = admit_store::now();
    let midnight = now.date().and_time(chrono::NaiveTime::MIN);
    let used = quota::accounts_created_since(conn, partner_id, midnight)?;
    if used.saturating_add(creating) <= allowed {
        return Ok(());
    }
    limits.refused(partner_id, Kind::DailyAccounts);
    let retry_after = secs_until_next_utc_day(now);
    tracing::info!(
        partner_id,
        used,
        creating,
        allowed,
        "daily account quota refused a request"
    );
    Err(ApiError::QuotaExceeded {
        message: format!(
            "the daily account-creation quota of this partner (daily_accounts: {allowed} per UTC day) is used up or too small for this request: {used} created today, this request would create {creating}; nothing was created. It starts again at 00:00 UTC, in {retry_after} s"
        ),
        retry_after,
    })
}

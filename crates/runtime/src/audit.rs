//! Where an audit event's origin comes from (the store's [`Origin`]): the request's
//! id (the `request_id` of its span and log lines, set by the request logger) and
//! the client's address by the trusted proxies ([`crate::client`], as the rate
//! limits take it); or, for the `admit` CLI, the operator's user name, a fresh id
//! and `local`. Plus [`record`], for actions that are not one database transaction.

use actix_web::{HttpMessage, HttpRequest};
use admit_store::audit::{NewAuditEvent, Origin};
use admit_store::Db;

/// The actor of the admin HTTP APIs: whoever holds `internal.admin_token` (there is
/// one such credential; its value is never recorded).
pub const ADMIN_TOKEN: (&str, &str) = ("admin_token", "internal.admin_token");

/// The request's id: the one its span carries in the logs, else the caller's
/// `X-Request-Id` (a request handled outside the request logger), else a new one.
pub fn request_id(req: &HttpRequest) -> String {
    if let Some(id) = req.extensions().get::<tracing_actix_web::RequestId>() {
        return id.to_string();
    }
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The origin of events that request `req` records, acted by `kind` `id`.
pub fn origin(req: &HttpRequest, kind: &str, id: &str) -> Origin {
    Origin {
        actor_kind: kind.to_owned(),
        actor_id: id.to_owned(),
        request_id: request_id(req),
        source: crate::client::client_address(req),
    }
}

/// The origin of an admin API call (the admin token's holder).
pub fn admin_origin(req: &HttpRequest) -> Origin {
    origin(req, ADMIN_TOKEN.0, ADMIN_TOKEN.1)
}

/// The origin of one `admit` CLI command: the operator's login name (`USER`, else
/// `LOGNAME`, else `unknown`), one id for every event of the command, `local`.
pub fn cli_origin() -> Origin {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    Origin {
        actor_kind: "cli".to_owned(),
        actor_id: user,
        request_id: uuid::Uuid::new_v4().to_string(),
        source: "local".to_owned(),
    }
}

/// Appends `event` on its own, for an action that was not one database transaction
/// (and is done by now): a failure is logged as a warning, not the action's failure.
pub async fn record(db: &Db, event: NewAuditEvent) {
    let action = event.action.clone();
    if let Err(e) = db
        .write(move |c| admit_store::audit::insert(c, &event))
        .await
    {
        tracing::warn!(error = %e, action, "the audit event could not be written");
    }
}

/// `--since` / `?since=`: a span back from `now` (`90s`, `30m`, `1h`, `2d`, `1w`) or
/// an RFC 3339 time (`2026-12-03T10:00:00Z`).
pub fn parse_since(raw: &str, now: chrono::NaiveDateTime) -> Result<chrono::NaiveDateTime, String> {
    let raw = raw.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.naive_utc());
    }
    let bad = || format!("since: `{raw}` is neither a span like 30m, 1h, 2d nor an RFC 3339 time");
    let split = raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = raw.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let span = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        "w" => chrono::Duration::try_weeks(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_sub_signed(span).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_spans_and_rfc3339_times() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .expect("time")
            .naive_utc();
        let at = |s: &str| parse_since(s, now).map(|t| t.to_string());
        assert_eq!(at("1h").as_deref(), Ok("2026-12-03 11:00:00"));
        assert_eq!(at("30m").as_deref(), Ok("2026-12-03 11:30:00"));
        assert_eq!(at("2d").as_deref(), Ok("2026-12-01 12:00:00"));
        assert_eq!(
            at("2026-12-03T10:00:00+01:00").as_deref(),
            Ok("2026-12-03 09:00:00")
        );
        for bad in ["", "h", "1y", "-1h", "yesterday", "99999999999999999999d"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}

//! `GET /admin/v1/audit` on the account service's admin API (behind
//! `internal.admin_token`): the audit log of every service (one database), newest
//! first, with the filters of `admit audit`.

use crate::AccountState;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_runtime::http::{bearer_matches as authorized, json_answer as answer};
use admit_store::audit::{self, AuditFilter};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events since then: a span back from now (`30m`, `1h`, `2d`) or an RFC 3339
    /// time. (The description's pattern is narrower than what is read: days up to
    /// 28 and a `Z` offset, so that every string it allows is a real time.)
    #[param(
        pattern = r"^([0-9]{1,6}[smhdw]|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z)$"
    )]
    since: Option<String>,
    /// Only this actor: `kind:id` (`account:…`, `cli:alice`), an id, or a kind.
    actor: Option<String>,
    /// Only this action, or a dotted prefix of actions (`login`, `client.create`).
    action: Option<String>,
    /// Only this target: `kind:id`, an id, or a kind.
    target: Option<String>,
    /// At most this many (default 100, at most 10,000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<i64>,
}

/// A kind and an id (`{"kind": "client", "id": "c_…"}`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditRef {
    pub kind: String,
    pub id: String,
}

/// One event of the audit log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    /// RFC 3339, UTC.
    pub time: String,
    pub actor: AuditRef,
    /// A stable dotted name: `client.create`, `login.failure`, `grant.revoke`, …
    pub action: String,
    pub target: AuditRef,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// The request's id (`request_id` in the service logs).
    pub request_id: String,
    /// The client's address (by `http.trusted_proxies`), `local` for the CLI.
    pub source: String,
    /// A small JSON object; never a secret.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditList {
    pub events: Vec<AuditEventView>,
}

fn view(e: &audit::AuditEvent) -> AuditEventView {
    AuditEventView {
        id: e.id,
        time: e
            .at
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        actor: AuditRef {
            kind: e.actor_kind.clone(),
            id: e.actor_id.clone(),
        },
        action: e.action.clone(),
        target: AuditRef {
            kind: e.target_kind.clone(),
            id: e.target_id.clone(),
        },
        outcome: e.outcome.clone(),
        request_id: e.request_id.clone(),
        source: e.source.clone(),
        detail: serde_json::from_str(&e.detail)
            .unwrap_or_else(|_| serde_json::Value::String(e.detail.clone())),
    }
}

fn bad(message: String, field: &str) -> HttpResponse {
    answer(
        400,
        json!({"error": "InvalidArgumentException", "message": message, "field": field}),
    )
}

/// The audit log, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    tag = "admin",
    params(AuditQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The events, newest first", body = AuditList),
        (status = 400, description = "A bad filter", body = crate::api::ErrorBody),
        (status = 401, description = "The admin credential is missing or wrong", body = crate::api::ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = crate::api::ErrorBody),
    )
)]
pub async fn audit_api(req: HttpRequest, state: web::Data<AccountState>) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return answer(
            401,
            json!({"error": "UnauthorizedException", "message": "the admin credential is missing or wrong"}),
        );
    }
    let q = match web::Query::<AuditQuery>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => return bad(format!("the query is not valid: {e}"), "query"),
    };
    let since = match q.since.as_deref() {
        Some(s) => match admit_runtime::audit::parse_since(s, admit_store::now()) {
            Ok(t) => Some(t),
            Err(e) => return bad(e, "since"),
        },
        None => None,
    };
    if q.limit.is_some_and(|n| !(1..=10_000).contains(&n)) {
        return bad("limit: from 1 to 10000".to_owned(), "limit");
    }
    let filter = AuditFilter {
        since,
        actor: q.actor,
        action: q.action,
        target: q.target,
        limit: q.limit.unwrap_or(100),
    };
    match state.db.run(move |c| audit::query(c, &filter)).await {
        Ok(events) => answer(
            200,
            json!(AuditList {
                events: events.iter().map(view).collect()
            }),
        ),
        Err(e) => {
            tracing::error!(error = %e, "audit: the database failed");
            answer(
                503,
                json!({"error": "ServiceUnavailableException", "message": "retry"}),
            )
        }
    }
}

/// The OpenAPI description of the audit endpoint (merged into `admit openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(audit_api),
    components(schemas(AuditList, AuditEventView, AuditRef))
)]
pub struct AuditAdminApi;

//! The mailer's admin HTTP API: the mail records and the queue are the mailer's, so
//! the operator actions on them live here (the admin CLI does the same through
//! [`crate::ops`]). Behind `internal.admin_token` like the authorization server's
//! admin API (`Authorization: Bearer …`, compared in constant time; with none
//! configured every call is refused), with the same error body; not routed by the
//! gateway.
//!
//! - `GET /admin/v1/mail/dead?limit=N` → 200 `{dead_letters: [...]}`
//! - `POST /admin/v1/mail/dead/{id}/retry` → 200 `{retried: [...]}`, or 404
//! - `POST /admin/v1/mail/dead/retry` (all) → 200 `{retried: [...]}`
//! - `GET /admin/v1/mail/messages/{id}` → 200 the status, or 404
//! - `GET /admin/v1/mail/messages?recipient=ADDRESS` → 200 `{recipient, messages}`

use crate::ops::{DeadLetterView, MailOps, MessageStatus, OpsError, Retried, Which};
use actix_web::{web, HttpRequest, HttpResponse};
pub use admit_runtime::http::bearer_matches as authorized;
use admit_runtime::http::json_answer as answer;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What the admin routes need.
pub struct MailAdmin {
    pub ops: MailOps,
    pub admin_token: String,
}

/// The error body of the admin API (the same as every API's).
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminErrorBody {
    /// `InvalidArgumentException`, `NotFoundException`, `UnauthorizedException`,
    /// `TooManyRequestsException`, `ServiceUnavailableException`.
    pub error: String,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetterView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RetryResult {
    pub retried: Vec<Retried>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RecipientMessages {
    pub recipient: String,
    pub messages: Vec<MessageStatus>,
}

fn refused() -> HttpResponse {
    answer(
        401,
        json!({"error": "UnauthorizedException", "message": "the admin credential is missing or wrong"}),
    )
}

fn failed(e: OpsError, field: &str) -> HttpResponse {
    match e {
        OpsError::NotFound(message) => answer(
            404,
            json!({"error": "NotFoundException", "message": message, "field": field}),
        ),
        other => {
            tracing::error!(error = %other, "mail admin API: a dependency failed");
            answer(
                503,
                json!({"error": "ServiceUnavailableException", "message": "the database or the queue is unavailable; retry"}),
            )
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many, oldest first (default 100).
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<usize>,
}

/// `limit` if it is within 1..=`max` (400 naming it otherwise), else `default`.
fn limit_within(
    limit: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, Box<HttpResponse>> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(Box::new(bad_query(
            format!("limit is {n}; it is 1 to {max}"),
            "limit",
        ))),
    }
}

fn bad_query(e: impl std::fmt::Display, field: &str) -> HttpResponse {
    answer(
        400,
        json!({"error": "InvalidArgumentException", "message": format!("bad query: {e}"), "field": field}),
    )
}

/// The dead letters: messages the mailer gave up on, with their last error.
#[utoipa::path(
    get,
    path = "/admin/v1/mail/dead",
    tag = "admin",
    params(ListQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The dead letters, oldest first", body = DeadLetterList),
        (status = 400, description = "A bad `limit`", body = AdminErrorBody),
        (status = 401, description = "The admin credential is missing or wrong", body = AdminErrorBody),
        (status = 503, description = "The database or the queue is unavailable", body = AdminErrorBody),
    )
)]
pub async fn list_dead(req: HttpRequest, state: web::Data<MailAdmin>) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    let q = match web::Query::<ListQuery>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => return bad_query(e, "limit"),
    };
    let limit = match limit_within(q.limit, 100, 10_000) {
        Ok(n) => n,
        Err(res) => return *res,
    };
    match state.ops.dead(limit).await {
        Ok(dead_letters) => answer(200, json!(DeadLetterList { dead_letters })),
        Err(e) => failed(e, "limit"),
    }
}

/// Puts one dead letter back on the queue (its message back to `queued`); by
/// message id, or by the dead letter's `entry` for a message without one. Run twice,
/// the second answers 404: the message is sent once.
#[utoipa::path(
    post,
    path = "/admin/v1/mail/dead/{id}/retry",
    tag = "admin",
    params(("id" = String, Path, description = "A message id, or a dead letter's `entry`")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Put back on the queue", body = RetryResult),
        (status = 401, description = "The admin credential is missing or wrong", body = AdminErrorBody),
        (status = 404, description = "No such dead letter (or it was retried already)", body = AdminErrorBody),
        (status = 503, description = "The database or the queue is unavailable", body = AdminErrorBody),
    )
)]
pub async fn retry_one(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<MailAdmin>,
) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    match state
        .ops
        .retry(
            &admit_runtime::audit::admin_origin(&req),
            Which::One(path.into_inner()),
        )
        .await
    {
        Ok(retried) => answer(200, json!(RetryResult { retried })),
        Err(e) => failed(e, "id"),
    }
}

/// Puts every dead letter back on the queue.
#[utoipa::path(
    post,
    path = "/admin/v1/mail/dead/retry",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every dead letter put back (possibly none)", body = RetryResult),
        (status = 401, description = "The admin credential is missing or wrong", body = AdminErrorBody),
        (status = 503, description = "The database or the queue is unavailable", body = AdminErrorBody),
    )
)]
pub async fn retry_all(req: HttpRequest, state: web::Data<MailAdmin>) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    match state
        .ops
        .retry(&admit_runtime::audit::admin_origin(&req), Which::All)
        .await
    {
        Ok(retried) => answer(200, json!(RetryResult { retried })),
        Err(e) => failed(e, "id"),
    }
}

/// A message's status: queued, processing, sent, failed (attempts, next try) or
/// dead (last error).
#[utoipa::path(
    get,
    path = "/admin/v1/mail/messages/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The message id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The message's status", body = MessageStatus),
        (status = 401, description = "The admin credential is missing or wrong", body = AdminErrorBody),
        (status = 404, description = "No such message", body = AdminErrorBody),
        (status = 503, description = "The database or the queue is unavailable", body = AdminErrorBody),
    )
)]
pub async fn message_status(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<MailAdmin>,
) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    match state.ops.status(&path).await {
        Ok(s) => answer(200, json!(s)),
        Err(e) => failed(e, "id"),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecipientQuery {
    /// The address (as given, or in lower case).
    #[param(required = true, pattern = r"\S")]
    recipient: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Every message to a recipient, newest first: "did the welcome email go out?"
#[utoipa::path(
    get,
    path = "/admin/v1/mail/messages",
    tag = "admin",
    params(RecipientQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The recipient's messages", body = RecipientMessages),
        (status = 400, description = "`recipient` is missing or empty, or a bad `limit`", body = AdminErrorBody),
        (status = 401, description = "The admin credential is missing or wrong", body = AdminErrorBody),
        (status = 503, description = "The database is unavailable", body = AdminErrorBody),
    )
)]
pub async fn recipient_messages(req: HttpRequest, state: web::Data<MailAdmin>) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    let q = match web::Query::<RecipientQuery>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => return bad_query(e, "recipient"),
    };
    let Some(recipient) = q
        .recipient
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
    else {
        return answer(
            400,
            json!({"error": "InvalidArgumentException", "message": "recipient is required: the address whose messages to show", "field": "recipient"}),
        );
    };
    let limit = match limit_within(q.limit, 100, 1000) {
        Ok(n) => n,
        Err(res) => return *res,
    };
    match state.ops.by_recipient(&recipient, limit).await {
        Ok(messages) => answer(
            200,
            json!(RecipientMessages {
                recipient,
                messages
            }),
        ),
        Err(e) => failed(e, "recipient"),
    }
}

/// Mounts the mail admin routes.
pub fn configure(
    state: web::Data<MailAdmin>,
) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    let described = {
        use utoipa::OpenApi as _;
        std::sync::Arc::new(admit_runtime::methods::described(&MailAdminApi::openapi()))
    };
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state.clone())
            .route("/admin/v1/mail/dead", web::get().to(list_dead))
            .route("/admin/v1/mail/dead/retry", web::post().to(retry_all))
            .route("/admin/v1/mail/dead/{id}/retry", web::post().to(retry_one))
            .route("/admin/v1/mail/messages", web::get().to(recipient_messages))
            .route(
                "/admin/v1/mail/messages/{id}",
                web::get().to(message_status),
            );
        // Last: 405 with `Allow` for another method on a described path.
        admit_runtime::methods::mount(cfg, &described);
    }
}

/// The admin bearer credential, for the OpenAPI description.
pub struct AdminSecurity;

impl utoipa::Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin_token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "The operators' credential, `internal.admin_token`. The admin \
                             API is served by each service on its own port and is not \
                             routed by the gateway.",
                        ))
                        .build(),
                ),
            );
    }
}

/// The OpenAPI description of the mail admin API (merged into `admit openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(
    modifiers(&AdminSecurity),
    paths(list_dead, retry_one, retry_all, message_status, recipient_messages),
    components(schemas(
        AdminErrorBody,
        DeadLetterList,
        DeadLetterView,
        RetryResult,
        Retried,
        MessageStatus,
        RecipientMessages
    ))
)]
pub struct MailAdminApi;

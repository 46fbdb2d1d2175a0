//! The admin HTTP API: the operator actions of the admin CLI ([`crate::admin`]) over
//! HTTP, behind the admin credential of `internal.admin_token` (`Authorization:
//! Bearer …`, compared in constant time; with none configured every call is refused).
//! Like the internal endpoints it is not routed by the gateway. Every action is in
//! the audit log as the admin token's, with the request's id and client address.
//!
//! - `POST /admin/v1/partners` `{name, landing_url?, brand_color?}` → 201 `{partner_id, name}`
//! - `POST /admin/v1/clients` `{partner_id, name, redirect_uris?, grants?, scopes?,
//!   public?, access_ttl_secs?}` → 201 `{client_id, client_secret?}` (the secret once)
//! - `POST /admin/v1/partners/{id}/api-keys` → 201 `{key_id, api_key}` (the key once)
//! - `DELETE /admin/v1/api-keys/{id}` → 204, or 404
//! - `POST /admin/v1/partners/{id}/plan-codes` `{codes: [...]}` → 200 `{partner_id, plan_codes}`

use crate::admin::{self, AdminError, NewClient};
use crate::token::TokenState;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_runtime::http::{bearer_matches as authorized, json_answer as answer};
use serde::Deserialize;
use serde_json::json;

fn failed(e: AdminError) -> HttpResponse {
    match e {
        AdminError::Invalid { field, message } => answer(
            400,
            json!({"error": "InvalidArgumentException", "message": message, "field": field}),
        ),
        AdminError::NoPartner(id) => answer(
            404,
            json!({"error": "NotFoundException", "message": format!("no partner {id}"), "field": "partner_id"}),
        ),
        AdminError::Store(e) => {
            tracing::error!(error = %e, "admin API: the database failed");
            answer(
                503,
                json!({"error": "ServiceUnavailableException", "message": "retry"}),
            )
        }
    }
}

fn refused() -> HttpResponse {
    answer(
        401,
        json!({"error": "UnauthorizedException", "message": "the admin credential is missing or wrong"}),
    )
}

/// Parses a JSON body into `T`, or answers 400 naming what is wrong.
fn body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, Box<HttpResponse>> {
    serde_json::from_slice(raw).map_err(|e| {
        Box::new(answer(
            400,
            json!({"error": "InvalidArgumentException", "message": format!("the body is not a valid request: {e}"), "field": "body"}),
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPartner {
    name: String,
    landing_url: Option<String>,
    brand_color: Option<String>,
}

async fn create_partner(
    req: HttpRequest,
    raw: web::Bytes,
    state: web::Data<TokenState>,
) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    let p: NewPartner = match body(&raw) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    match admin::create_partner(
        &state.db,
        &admit_runtime::audit::admin_origin(&req),
        &p.name,
        p.landing_url.as_deref(),
        p.brand_color.as_deref(),
    )
    .await
    {
        Ok(created) => answer(201, json!(created)),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClientBody {
    partner_id: String,
    name: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    public: bool,
    access_ttl_secs: Option<u32>,
}

async fn create_client(
    req: HttpRequest,
    raw: web::Bytes,
    state: web::Data<TokenState>,
) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    let c: NewClientBody = match body(&raw) {
        Ok(c) => c,
        Err(res) => return *res,
    };
    let new = NewClient {
        partner_id: c.partner_id,
        name: c.name,
        redirect_uris: c.redirect_uris,
        grants: c.grants,
        scopes: c.scopes,
        public: c.public,
        access_ttl_secs: c.access_ttl_secs,
    };
    match admin::create_client(
        &state.db,
        &admit_runtime::audit::admin_origin(&req),
        new,
        state.default_access_ttl,
    )
    .await
    {
        Ok(created) => answer(201, json!(created)),
        Err(e) => failed(e),
    }
}

async fn create_api_key(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<TokenState>,
) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    match admin::create_api_key(&state.db, &admit_runtime::audit::admin_origin(&req), &path).await {
        Ok(created) => answer(201, json!(created)),
        Err(e) => failed(e),
    }
}

async fn revoke_api_key(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<TokenState>,
) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    match admin::revoke_api_key(&state.db, &admit_runtime::audit::admin_origin(&req), &path).await {
        Ok(true) => HttpResponse::NoContent().finish(),
        Ok(false) => answer(
            404,
            json!({"error": "NotFoundException", "message": "no live API key with this id", "field": "key_id"}),
        ),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanCodes {
    codes: Vec<String>,
}

async fn add_plan_codes(
    req: HttpRequest,
    path: web::Path<String>,
    raw: web::Bytes,
    state: web::Data<TokenState>,
) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return refused();
    }
    let p: PlanCodes = match body(&raw) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    match admin::add_plan_codes(
        &state.db,
        &admit_runtime::audit::admin_origin(&req),
        &path,
        &p.codes,
    )
    .await
    {
        Ok(all) => answer(200, json!({"partner_id": path.as_str(), "plan_codes": all})),
        Err(e) => failed(e),
    }
}

/// Mounts the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/v1/partners", web::post().to(create_partner))
        .route("/admin/v1/clients", web::post().to(create_client))
        .route(
            "/admin/v1/partners/{id}/api-keys",
            web::post().to(create_api_key),
        )
        .route("/admin/v1/api-keys/{id}", web::delete().to(revoke_api_key))
        .route(
            "/admin/v1/partners/{id}/plan-codes",
            web::post().to(add_plan_codes),
        );
}

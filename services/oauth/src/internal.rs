//! Internal endpoints: called by the other services with the internal credential of
//! `internal.token` (`Authorization: Bearer …`, compared in constant time), never
//! routed by the gateway. With no internal token configured they refuse everyone.
//!
//! `POST /internal/v1/codes` `{client_id, account_id, scope?}`: an authorization code
//! issued to the client for the account, as SPEC §4's `accessToken.code` (single use,
//! ten minutes, exchanged at the token endpoint without a redirect URI).

use crate::token::{list, TokenState};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::secret;
pub(crate) use admit_runtime::http::bearer_matches as authorized;
use admit_store::grants;
use serde::Deserialize;
use serde_json::json;

pub const CODE_TTL_SECS: i64 = grants::MINTED_CODE_TTL_SECS;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintCode {
    pub client_id: String,
    pub account_id: String,
    pub scope: Option<String>,
}

fn refuse(status: u16, error: &str, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .insert_header((header::CACHE_CONTROL, "no-store"))
    .json(json!({"error": error, "message": message}))
}

/// Issues a code for (client, account): the grant and the code in one transaction.
pub async fn mint(state: &TokenState, m: MintCode) -> Result<(String, i64), HttpResponse> {
    let client = state
        .client(&m.client_id)
        .await
        .map_err(|e| refuse(503, "Unavailable", &e))?
        .ok_or_else(|| refuse(400, "InvalidArgumentException", "client_id: no such client"))?;
    if !list(&client.grants)
        .iter()
        .any(|g| g == "authorization_code")
    {
        return Err(refuse(
            400,
            "InvalidArgumentException",
            "client_id: the client is not registered for the authorization code grant",
        ));
    }
    let allowed = list(&client.scopes);
    let scope = match m.scope {
        None => allowed.join(" "),
        Some(s) => {
            if let Some(bad) = s
                .split(' ')
                .filter(|x| !x.is_empty())
                .find(|x| !allowed.iter().any(|a| a == x))
            {
                return Err(refuse(
                    400,
                    "InvalidArgumentException",
                    &format!("scope: {bad} is not a scope of this client"),
                ));
            }
            s
        }
    };
    let code = secret::generate("");
    let (grant, row) = grants::minted_code(
        &client.id,
        &m.account_id,
        scope,
        secret::digest(&code),
        admit_store::now(),
        state.refresh_ttl_secs,
    );
    state
        .db
        .write(move |c| {
            admit_store::accounts::find(c, &grant.account_id)?;
            grants::insert_grant(c, &grant)?;
            grants::insert_code(c, &row)
        })
        .await
        .map_err(|e| match e {
            admit_store::StoreError::NotFound => refuse(
                400,
                "InvalidArgumentException",
                "account_id: no such account",
            ),
            other => refuse(503, "Unavailable", &other.to_string()),
        })?;
    Ok((code, CODE_TTL_SECS))
}

pub async fn mint_code(
    req: HttpRequest,
    body: web::Json<MintCode>,
    state: web::Data<TokenState>,
) -> HttpResponse {
    if !authorized(&req, &state.internal_token) {
        return refuse(
            401,
            "UnauthorizedException",
            "the internal credential is missing or wrong",
        );
    }
    match mint(&state, body.into_inner()).await {
        Ok((code, ttl)) => HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"code": code, "expires_in": ttl})),
        Err(res) => res,
    }
}

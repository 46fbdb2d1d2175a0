//! `POST /oauth/token` (RFC 6749 §3.2) and the JWT access tokens it issues (RFC 9068).
//!
//! Error policy: RFC 6749 §5.2 bodies `{"error", "error_description"}`; a client that
//! fails to authenticate gets 401 `invalid_client` with `WWW-Authenticate`. Every
//! answer carries `Cache-Control: no-store`.

use crate::keys::KeyRing;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::secret;
use admit_store::partners::ClientRow;
use admit_store::Db;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use std::collections::HashMap;

pub struct TokenState {
    pub db: Db,
    pub keys: KeyRing,
    pub issuer: String,
    /// The `aud` of access tokens: the platform's APIs.
    pub audience: String,
    pub pages: admit_runtime::web::Pages,
    /// The account service's login page; the authorize page sends users there.
    pub login_url: String,
    /// How long a user's grant (and so its refresh tokens) lasts.
    pub refresh_ttl_secs: i64,
    /// Refresh rotations written in groups (PostgreSQL; see [`crate::rotate`]).
    pub rotator: crate::rotate::Rotator,
    /// The credential of internal endpoints (empty: they refuse everyone).
    pub internal_token: String,
    /// The credential of the admin API (empty: it refuses everyone).
    pub admin_token: String,
    /// Access token lifetime of clients created without their own.
    pub default_access_ttl: u32,
    /// Active clients, trusted for at most [`crate::clients::TTL`].
    pub clients: crate::clients::ClientCache,
    /// The token endpoint's rate per client (`limits.*.token_requests_per_second`).
    pub limits: std::sync::Arc<admit_runtime::limits::PartnerLimits>,
    /// What is revoked, in memory, trusted under a lease (production); `None`:
    /// introspection reads the database per request (the embedded default).
    pub revocations: Option<std::sync::Arc<admit_runtime::revocations::View>>,
    /// Told after every revoking commit, before the answer.
    pub announcer: std::sync::Arc<admit_runtime::revocations::Announcer>,
    /// Verified tokens and grant ends, for introspection.
    pub memo: crate::memo::Memo,
}

impl TokenState {
    /// A client that has not been revoked (revocations take effect within
    /// [`crate::clients::TTL`]).
    pub async fn client(&self, id: &str) -> Result<Option<ClientRow>, String> {
        let row = self.clients.get(&self.db, id).await?;
        Ok(row.map(|r| ClientRow::clone(&r)))
    }
}

/// What an access token says.
pub struct Issued<'a> {
    pub sub: &'a str,
    pub client_id: &'a str,
    pub partner_id: &'a str,
    pub scope: &'a str,
    /// The user grant it was issued under (absent for client_credentials and implicit).
    pub grant_id: Option<&'a str>,
    pub ttl: i64,
}

#[derive(Debug)]
pub struct OAuthError {
    status: u16,
    code: &'static str,
    description: String,
    /// `Retry-After` seconds, for a 429.
    retry_after: Option<u64>,
}

pub fn err(status: u16, code: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError::new(status, code, description)
}

impl OAuthError {
    pub fn new(status: u16, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    /// A client over its token rate: 429 `slow_down` (RFC 8628 §3.5's name for a
    /// client asking too often) with `Retry-After`.
    pub fn rate_limited(l: &admit_runtime::limits::Limited) -> Self {
        Self {
            retry_after: Some(l.retry_after_secs),
            ..Self::new(
                429,
                "slow_down",
                format!(
                    "this client is over its token rate of {} requests per second (bursts of {}); retry after {} s",
                    l.rate.per_second, l.rate.burst, l.retry_after_secs
                ),
            )
        }
    }

    pub fn response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(
            actix_web::http::StatusCode::from_u16(self.status)
                .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
        );
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.max(1).to_string()));
        }
        if self.code == "invalid_client" {
            res.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"admit\""));
        }
        res.json(serde_json::json!({"error": self.code, "error_description": self.description}))
    }
}

#[derive(Serialize)]
pub struct AccessClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub partner_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<&'a str>,
}

/// The form of a token, introspection or revocation request as those endpoints read
/// it (an entry point for the fuzz targets): `None` where they answer
/// `invalid_request`.
#[doc(hidden)]
pub fn read_form(body: &[u8]) -> Option<HashMap<String, String>> {
    form(body).ok()
}

fn form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| err(400, "invalid_request", "the body is not form-encoded"))?;
    let mut map = HashMap::new();
    for (k, v) in pairs {
        // RFC 6749 §3.2: parameters must not be repeated.
        if map.insert(k.clone(), v).is_some() {
            return Err(err(400, "invalid_request", format!("{k} is repeated")));
        }
    }
    Ok(map)
}

/// The client's credentials: HTTP Basic (each part form-urlencoded, RFC 6749
/// §2.3.1) or `client_id`/`client_secret` in the body, not both.
fn credentials(
    req: &HttpRequest,
    form: &HashMap<String, String>,
) -> Result<(String, Option<String>), OAuthError> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => Err(err(
            400,
            "invalid_request",
            "use one client authentication method",
        )),
        (Some(b64), None) => {
            let decoded = STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| err(401, "invalid_client", "malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| err(401, "invalid_client", "malformed Basic credentials"))?;
            let decode = |s: &str| -> Result<String, OAuthError> {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}"))
                    .map_err(|_| err(401, "invalid_client", "malformed Basic credentials"))?;
                Ok(pairs.into_iter().next().map(|(_, v)| v).unwrap_or_default())
            };
            Ok((decode(id)?, Some(decode(secret)?)))
        }
        (None, secret) => {
            let id = form
                .get("client_id")
                .ok_or_else(|| err(401, "invalid_client", "client authentication is required"))?;
            Ok((id.clone(), secret.cloned()))
        }
    }
}

pub fn list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

async fn authenticate(
    state: &TokenState,
    id: String,
    secret_given: Option<String>,
) -> Result<ClientRow, OAuthError> {
    let client = state
        .client(&id)
        .await
        .map_err(|e| err(503, "temporarily_unavailable", e))?
        .ok_or_else(|| err(401, "invalid_client", "unknown client or wrong secret"))?;
    match (&client.secret_hash, secret_given) {
        (Some(stored), Some(given)) if secret::verify(&given, stored) => Ok(client),
        (None, None) if client.is_public => Ok(client),
        _ => Err(err(401, "invalid_client", "unknown client or wrong secret")),
    }
}

pub async fn token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<TokenState>,
) -> HttpResponse {
    match grant(&req, &body, &state).await {
        Ok(res) => res,
        Err(e) => e.response(),
    }
}

/// Parses the form and authenticates the client that sent it (token, introspection
/// and revocation endpoints alike).
pub async fn authenticate_request(
    req: &HttpRequest,
    body: &[u8],
    state: &TokenState,
) -> Result<(ClientRow, HashMap<String, String>), OAuthError> {
    let form = form(body)?;
    let (id, secret_given) = credentials(req, &form)?;
    let client = authenticate(state, id, secret_given).await?;
    Ok((client, form))
}

async fn grant(
    req: &HttpRequest,
    body: &[u8],
    state: &TokenState,
) -> Result<HttpResponse, OAuthError> {
    let (client, form) = authenticate_request(req, body, state).await?;
    state
        .limits
        .token(&client.id, &client.partner_id)
        .await
        .map_err(|l| OAuthError::rate_limited(&l))?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| err(400, "invalid_request", "grant_type is required"))?
        .clone();
    match grant_type.as_str() {
        "client_credentials" => client_credentials(&client, &form, state),
        "authorization_code" => {
            let origin = admit_runtime::audit::origin(req, "client", &client.id);
            crate::code::redeem(&client, &form, state, &origin).await
        }
        "refresh_token" => {
            let origin = admit_runtime::audit::origin(req, "client", &client.id);
            crate::code::refresh(&client, &form, state, &origin).await
        }
        "password" => Err(err(
            400,
            "unsupported_grant_type",
            "the password grant is not offered (RFC 9700 §2.4)",
        )),
        other => Err(err(
            400,
            "unsupported_grant_type",
            format!("{other} is not a grant type of this server"),
        )),
    }
}

fn client_credentials(
    client: &ClientRow,
    form: &HashMap<String, String>,
    state: &TokenState,
) -> Result<HttpResponse, OAuthError> {
    if client.is_public
        || !list(&client.grants)
            .iter()
            .any(|g| g == "client_credentials")
    {
        return Err(err(
            400,
            "unauthorized_client",
            "this client may not use client_credentials",
        ));
    }
    let allowed = list(&client.scopes);
    let scope = match form.get("scope") {
        None => allowed.join(" "),
        Some(requested) => {
            for s in requested.split(' ').filter(|s| !s.is_empty()) {
                if !allowed.iter().any(|a| a == s) {
                    return Err(err(
                        400,
                        "invalid_scope",
                        format!("{s} is not granted to this client"),
                    ));
                }
            }
            requested
                .split(' ')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let ttl = i64::from(client.access_ttl_secs.max(1));
    let access_token = sign(
        state,
        &Issued {
            sub: &client.id,
            client_id: &client.id,
            partner_id: &client.partner_id,
            scope: &scope,
            grant_id: None,
            ttl,
        },
    )?;
    Ok(token_response(serde_json::json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl,
        "scope": scope,
    })))
}

/// Signs an RFC 9068 access token with the active key.
pub fn sign(state: &TokenState, t: &Issued) -> Result<String, OAuthError> {
    sign_with(&state.keys.current(), &state.issuer, &state.audience, t)
}

/// Signs an RFC 9068 access token with the active key of `keys`.
pub fn sign_with(
    keys: &crate::keys::KeySet,
    issuer: &str,
    audience: &str,
    t: &Issued,
) -> Result<String, OAuthError> {
    let now = chrono::Utc::now().timestamp();
    let mut header = jsonwebtoken::Header::new(keys.algorithm);
    header.typ = Some("at+jwt".into());
    header.kid = Some(keys.kid.clone());
    let claims = AccessClaims {
        iss: issuer,
        sub: t.sub,
        aud: audience,
        exp: now + t.ttl,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: t.client_id,
        scope: t.scope,
        partner_id: t.partner_id,
        gid: t.grant_id,
    };
    jsonwebtoken::encode(&header, &claims, &keys.encoding)
        .map_err(|e| err(500, "server_error", e.to_string()))
}

/// A token response with `Cache-Control: no-store` (RFC 6749 §5.1).
pub fn token_response(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

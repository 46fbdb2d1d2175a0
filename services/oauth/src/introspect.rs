//! Token introspection (RFC 7662) and revocation (RFC 7009) of the access tokens this
//! server signs. Both require client authentication. A revoked token's `jti` is kept
//! until the token would have expired; introspection then answers `active: false`.

use crate::keys::KeySet;
use crate::memo::Verified;
use crate::token::{authenticate_request, OAuthError, TokenState};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_runtime::revocations::GrantEnd;
use admit_store::{grants, partners};
use jsonwebtoken::{decode, decode_header, Validation};
use serde_json::Value;
use std::sync::Arc;

/// The verified claims of one of our access tokens, or `None` (bad signature,
/// expired, another issuer, unknown key, not a JWT).
pub fn verify(state: &TokenState, token: &str) -> Option<Value> {
    verify_with(&state.keys.current(), &state.issuer, &state.audience, token)
}

/// The verified claims of an access token signed with one of `keys`, for `issuer`
/// and `audience`, or `None`.
pub fn verify_with(keys: &KeySet, issuer: &str, audience: &str, token: &str) -> Option<Value> {
    let header = decode_header(token).ok()?;
    if header.typ.as_deref() != Some("at+jwt") {
        return None;
    }
    let (key, alg) = keys.decoding.get(header.kid.as_deref()?)?;
    let mut validation = Validation::new(*alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.leeway = 0;
    decode::<Value>(token, key, &validation)
        .ok()
        .map(|d| d.claims)
}

/// The claims of an access token, verified now or (the same token) before: a token
/// introspected again is not verified again, but its expiry and its key are checked
/// each time (a key retired since is no longer trusted).
pub fn verify_memo(state: &TokenState, token: &str) -> Option<Arc<Value>> {
    let now = chrono::Utc::now().timestamp();
    let keys = state.keys.current();
    if let Some(v) = state.memo.tokens.get(token) {
        // jsonwebtoken's check with no leeway: expired when exp < now.
        if v.exp >= now && keys.decoding.contains_key(&v.kid) {
            return Some(v.claims);
        }
        return None;
    }
    let claims = verify_with(&keys, &state.issuer, &state.audience, token)?;
    let kid = decode_header(token).ok()?.kid?;
    let exp = claims["exp"].as_i64()?;
    let claims = Arc::new(claims);
    state.memo.tokens.insert(
        token,
        Verified {
            claims: claims.clone(),
            kid,
            exp,
        },
    );
    Some(claims)
}

/// Whether a verified access token is still in force: not revoked itself, and its
/// grant (for tokens issued to a user) not revoked, deleted or expired either.
///
/// From memory while the replica's revocation view is trusted
/// ([`admit_runtime::revocations`]), else from the database.
pub async fn is_live(state: &TokenState, claims: &Value) -> Result<bool, OAuthError> {
    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
    let gid = claims["gid"].as_str().map(str::to_owned);
    let unavailable =
        |e: admit_store::StoreError| OAuthError::new(503, "temporarily_unavailable", e.to_string());
    if let Some(view) = &state.revocations {
        let known = view.revoked(&jti, gid.as_deref());
        view.count(known.is_some());
        match known {
            Some(true) => return Ok(false),
            Some(false) => {
                let Some(g) = gid else { return Ok(true) };
                let end = match view.grant_end(&g) {
                    (Some(end), _) => end,
                    (None, generation) => {
                        let id = g.clone();
                        let read = state
                            .db
                            .run(move |c| admit_store::revocations::grant_state(c, &id))
                            .await
                            .map_err(unavailable)?;
                        let end = match read {
                            Some((at, false)) => GrantEnd::At(at),
                            _ => GrantEnd::Ended,
                        };
                        view.remember_grant(&g, end, generation);
                        end
                    }
                };
                return Ok(match end {
                    GrantEnd::At(at) => at > admit_store::now(),
                    GrantEnd::Ended => false,
                });
            }
            None => {}
        }
    }
    state
        .db
        .run(move |c| {
            if partners::is_token_revoked(c, &jti)? {
                return Ok(false);
            }
            match gid {
                Some(g) => grants::is_grant_live(c, &g, admit_store::now()),
                None => Ok(true),
            }
        })
        .await
        .map_err(unavailable)
}

fn no_store(mut res: actix_web::HttpResponseBuilder, body: Value) -> HttpResponse {
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

pub async fn introspect(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<TokenState>,
) -> HttpResponse {
    match introspect_inner(&req, &body, &state).await {
        Ok(v) => no_store(HttpResponse::Ok(), v),
        Err(e) => e.response(),
    }
}

async fn introspect_inner(
    req: &HttpRequest,
    body: &[u8],
    state: &TokenState,
) -> Result<Value, OAuthError> {
    let (_client, form) = authenticate_request(req, body, state).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::new(400, "invalid_request", "token is required"))?;
    let Some(claims) = verify_memo(state, token) else {
        return Ok(serde_json::json!({"active": false}));
    };
    if !is_live(state, &claims).await? {
        return Ok(serde_json::json!({"active": false}));
    }
    Ok(serde_json::json!({
        "active": true,
        "token_type": "access_token",
        "scope": claims["scope"],
        "client_id": claims["client_id"],
        "sub": claims["sub"],
        "aud": claims["aud"],
        "iss": claims["iss"],
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": claims["jti"],
    }))
}

pub async fn revoke(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<TokenState>,
) -> HttpResponse {
    match revoke_inner(&req, &body, &state).await {
        Ok(()) => no_store(HttpResponse::Ok(), serde_json::json!({})),
        Err(e) => e.response(),
    }
}

async fn revoke_inner(
    req: &HttpRequest,
    body: &[u8],
    state: &TokenState,
) -> Result<(), OAuthError> {
    let (client, form) = authenticate_request(req, body, state).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::new(400, "invalid_request", "token is required"))?;
    // RFC 7009 §2.2: an invalid token, or one of another client, is answered 200
    // and nothing happens.
    let origin = admit_runtime::audit::origin(req, "client", &client.id);
    let Some(claims) = verify(state, token) else {
        // A refresh token: revoking it ends its grant (§2.1).
        let digest = admit_domain::secret::digest(token);
        let client_id = client.id.clone();
        let revoked = state
            .db
            .write(move |c| {
                if let Some(g) = grants::grant_of_refresh(c, &digest)? {
                    if g.client_id == client_id {
                        grants::revoke_grant(c, &g.id, admit_store::now())?;
                        let event = origin
                            .event("grant.revoke", "grant", &g.id)
                            .detail(serde_json::json!({"reason": "revoked_by_client", "account_id": g.account_id}));
                        admit_store::audit::insert(c, &event)?;
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .await
            .map_err(|e| OAuthError::new(503, "temporarily_unavailable", e.to_string()))?;
        if revoked {
            // In force on every replica before the client hears it is done.
            state.announcer.announce().await;
        }
        return Ok(());
    };
    if claims["client_id"].as_str() != Some(client.id.as_str()) {
        return Ok(());
    }
    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
    let exp = claims["exp"].as_i64().unwrap_or_default();
    let expires_at = chrono::DateTime::from_timestamp(exp, 0)
        .map(|t| t.naive_utc())
        .unwrap_or_else(admit_store::now);
    let event = origin
        .event("token.revoke", "access_token", &jti)
        .detail(serde_json::json!({"sub": claims["sub"]}));
    state
        .db
        .write(move |c| {
            partners::revoke_token(c, &jti, expires_at)?;
            admit_store::audit::insert(c, &event)
        })
        .await
        .map_err(|e| OAuthError::new(503, "temporarily_unavailable", e.to_string()))?;
    // In force on every replica before the client hears it is done.
    state.announcer.announce().await;
    Ok(())
}

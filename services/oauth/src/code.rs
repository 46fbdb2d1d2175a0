//! The user grants at the token endpoint: `authorization_code` (with PKCE) and
//! `refresh_token` (rotated on every use), the OpenID Connect `id_token` they carry
//! when `openid` was granted, and `/oauth/userinfo`.
//!
//! Spending a code or a refresh token, and storing the next refresh token, is one
//! transaction (see [`admit_store::grants`]): of concurrent presentations one wins.
//! On PostgreSQL the refreshes that win are written in groups, one statement each
//! ([`crate::rotate`], [`grants::rotate_refresh`]); only one that does not (a
//! replay, an invalid token) or narrows the scope runs the transaction.
//! A code or refresh token presented after it was spent revokes its grant: the
//! refresh tokens stop working and introspection reports the access tokens inactive
//! (RFC 9700 §4.5 and §4.14).

use crate::introspect::verify;
use crate::token::{err, list, sign, token_response, Issued, OAuthError, TokenState};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::secret;
use admit_store::grants::{self, GrantRow, RefreshRow, Spend};
use admit_store::partners::ClientRow;
use admit_store::{accounts, now};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::NaiveDateTime;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

fn allows(client: &ClientRow, grant: &str) -> bool {
    list(&client.grants).iter().any(|g| g == grant)
}

fn is_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6, S256 only.
fn pkce_ok(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), &'static str> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a
        // downgrade attempt.
        (None, Some(_)) => Err("code_verifier given for a code issued without PKCE"),
        (Some(_), None) => Err("code_verifier is required"),
        (Some(c), Some(v)) => {
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
            if is_verifier(v) && bool::from(computed.as_bytes().ct_eq(c.as_bytes())) {
                Ok(())
            } else {
                Err("code_verifier does not match the code_challenge")
            }
        }
    }
}

enum Outcome {
    Issued {
        grant: GrantRow,
        refresh: Option<String>,
    },
    Refused(OAuthError),
    /// A replay: the grant was revoked in the transaction.
    Replayed(OAuthError),
}

/// The stored form of refresh token `token` of `grant`: its digest, expiring with the
/// grant or after `ttl` seconds, whichever is first.
fn refresh_row(token: &str, grant: &GrantRow, at: NaiveDateTime, ttl: i64) -> RefreshRow {
    RefreshRow {
        token_digest: secret::digest(token),
        grant_id: grant.id.clone(),
        created_at: at,
        expires_at: grant.expires_at.min(at + chrono::Duration::seconds(ttl)),
        used_at: None,
    }
}

/// The answer to a refresh token that is unknown, expired, of an ended grant, or
/// another client's.
fn invalid_refresh_token() -> OAuthError {
    err(
        400,
        "invalid_grant",
        "the refresh token is unknown, expired, revoked or not this client's",
    )
}

/// The audit event of a grant revoked because `what` was presented again.
fn replay_event(
    origin: &admit_store::audit::Origin,
    what: &str,
    grant_id: &str,
) -> admit_store::audit::NewAuditEvent {
    origin
        .event("grant.revoke", "grant", grant_id)
        .detail(serde_json::json!({"reason": "replayed", "presented": what}))
}

fn replayed(what: &str, grant_id: &str) -> OAuthError {
    tracing::warn!(grant_id, "{what} presented again: grant revoked");
    err(
        400,
        "invalid_grant",
        format!("the {what} was already used; everything issued from it is revoked"),
    )
}

pub async fn redeem(
    client: &ClientRow,
    form: &HashMap<String, String>,
    state: &TokenState,
    origin: &admit_store::audit::Origin,
) -> Result<HttpResponse, OAuthError> {
    if !allows(client, "authorization_code") {
        return Err(err(
            400,
            "unauthorized_client",
            "this client may not use authorization_code",
        ));
    }
    let code = form
        .get("code")
        .ok_or_else(|| err(400, "invalid_request", "code is required"))?;
    let redirect_uri = form.get("redirect_uri").cloned();
    let registered = list(&client.redirect_uris);
    let verifier = form.get("code_verifier").cloned();
    let digest = secret::digest(code);
    let client_id = client.id.clone();
    let with_refresh = allows(client, "refresh_token");
    let origin = origin.clone();
    let refresh = with_refresh.then(|| secret::generate("rt_"));
    let refresh_ttl = state.refresh_ttl_secs;
    let outcome = state
        .db
        .write(move |c| {
            let at = now();
            let (code, grant) = match grants::redeem_code(c, &digest, &client_id, at)? {
                Spend::Won(code, grant) => (code, grant),
                Spend::Replayed { grant_id } => {
                    admit_store::audit::insert(
                        c,
                        &replay_event(&origin, "authorization_code", &grant_id),
                    )?;
                    return Ok(Outcome::Replayed(replayed("authorization code", &grant_id)));
                }
                Spend::Invalid => {
                    return Ok(Outcome::Refused(err(
                        400,
                        "invalid_grant",
                        "the code is unknown, expired or not this client's",
                    )))
                }
            };
            // A code minted for the account service (SPEC §4) was issued without a
            // redirect URI: it is exchanged without one, or with one the client
            // registered (document 002's exchange sends its redirect URI). A code from
            // the authorize page needs exactly its request's (RFC 6749 §4.1.3).
            let matches = if code.redirect_uri.is_empty() {
                redirect_uri
                    .as_deref()
                    .is_none_or(|u| registered.iter().any(|r| r == u))
            } else {
                redirect_uri.as_deref() == Some(code.redirect_uri.as_str())
            };
            if !matches {
                return Ok(Outcome::Refused(err(
                    400,
                    "invalid_grant",
                    "redirect_uri differs from the authorization request's",
                )));
            }
            if let Err(why) = pkce_ok(code.code_challenge.as_deref(), verifier.as_deref()) {
                return Ok(Outcome::Refused(err(400, "invalid_grant", why)));
            }
            if let Some(token) = &refresh {
                grants::insert_refresh(c, &refresh_row(token, &grant, at, refresh_ttl))?;
            }
            Ok(Outcome::Issued { grant, refresh })
        })
        .await
        .map_err(|e| err(503, "temporarily_unavailable", e.to_string()))?;
    respond(client, state, outcome, true).await
}

pub async fn refresh(
    client: &ClientRow,
    form: &HashMap<String, String>,
    state: &TokenState,
    origin: &admit_store::audit::Origin,
) -> Result<HttpResponse, OAuthError> {
    if !allows(client, "refresh_token") {
        return Err(err(
            400,
            "unauthorized_client",
            "this client may not use refresh_token",
        ));
    }
    let token = form
        .get("refresh_token")
        .ok_or_else(|| err(400, "invalid_request", "refresh_token is required"))?;
    let narrowed = form.get("scope").cloned();
    let digest = secret::digest(token);
    let client_id = client.id.clone();
    let next = secret::generate("rt_");
    // The common case in one grouped statement (PostgreSQL): an unspent token of this
    // client, no narrowing. Anything else, and SQLite, takes the transaction below,
    // which tells a replay from an invalid token and revokes the grant of a replayed
    // one. A token only ever goes from unspent to spent, so what the transaction sees
    // after a miss here is at least as spent as what the miss saw: a concurrent loser
    // is always a replay.
    let next_digest = secret::digest(&next);
    let grouped = narrowed.is_none() && state.rotator.is_running();
    if grouped {
        let rotation = grants::Rotation {
            digest: digest.clone(),
            client_id: client_id.clone(),
            next_digest: next_digest.clone(),
        };
        if let Some(grant) = state.rotator.rotate(rotation).await {
            let outcome = Outcome::Issued {
                grant,
                refresh: Some(next),
            };
            return respond(client, state, outcome, false).await;
        }
    }
    let origin = origin.clone();
    let refresh_ttl = state.refresh_ttl_secs;
    let db = state.db.clone();
    let outcome = state
        .db
        .run(move |c| {
            let at = now();
            db.write_on(c, |c| {
                // A group whose answer was lost (the connection dropped after its
                // commit, its rows not read) may have rotated this token after all:
                // then its successor is stored, and this refresh won. Without this
                // look the spent token would read as a replay and end the grant.
                if grouped {
                    if let Some(grant) = grants::grant_of_refresh(c, &next_digest)? {
                        if grant.is_live(at) {
                            return Ok(Outcome::Issued {
                                grant,
                                refresh: Some(next),
                            });
                        }
                        return Ok(Outcome::Refused(invalid_refresh_token()));
                    }
                }
                let mut grant = match grants::spend_refresh(c, &digest, &client_id, at)? {
                    Spend::Won(_, grant) => grant,
                    Spend::Replayed { grant_id } => {
                        admit_store::audit::insert(
                            c,
                            &replay_event(&origin, "refresh_token", &grant_id),
                        )?;
                        return Ok(Outcome::Replayed(replayed("refresh token", &grant_id)));
                    }
                    Spend::Invalid => return Ok(Outcome::Refused(invalid_refresh_token())),
                };
                if let Some(scope) = narrowed {
                    let granted: Vec<&str> = grant.scope.split(' ').collect();
                    let wanted: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
                    if let Some(extra) = wanted.iter().find(|s| !granted.contains(s)) {
                        return Ok(Outcome::Refused(err(
                            400,
                            "invalid_scope",
                            format!("{extra} was not granted"),
                        )));
                    }
                    grant.scope = wanted.join(" ");
                }
                grants::insert_refresh(c, &refresh_row(&next, &grant, at, refresh_ttl))?;
                Ok(Outcome::Issued {
                    grant,
                    refresh: Some(next),
                })
            })
        })
        .await
        .map_err(|e| err(503, "temporarily_unavailable", e.to_string()))?;
    respond(client, state, outcome, false).await
}

async fn respond(
    client: &ClientRow,
    state: &TokenState,
    outcome: Outcome,
    with_id_token: bool,
) -> Result<HttpResponse, OAuthError> {
    let (grant, refresh) = match outcome {
        Outcome::Issued { grant, refresh } => (grant, refresh),
        Outcome::Refused(e) => return Err(e),
        Outcome::Replayed(e) => {
            // The revocation in force on every replica before the client hears of it.
            state.announcer.announce().await;
            return Err(e);
        }
    };
    let ttl = i64::from(client.access_ttl_secs.max(1));
    let access_token = sign(
        state,
        &Issued {
            sub: &grant.account_id,
            client_id: &client.id,
            partner_id: &client.partner_id,
            scope: &grant.scope,
            grant_id: Some(&grant.id),
            ttl,
        },
    )?;
    let mut body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl,
        "scope": grant.scope,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    let openid = grant.scope.split(' ').any(|s| s == "openid");
    if openid && with_id_token {
        body["id_token"] = json!(id_token(state, client, &grant).await?);
    }
    Ok(token_response(body))
}

/// The claims about the user that `scope` allows.
async fn user_claims(
    state: &TokenState,
    account_id: &str,
    scope: &str,
) -> Result<Value, OAuthError> {
    let id = account_id.to_owned();
    let (account, email) = state
        .db
        .run(move |c| Ok((accounts::find(c, &id)?, accounts::primary_email(c, &id)?)))
        .await
        .map_err(|e| err(503, "temporarily_unavailable", e.to_string()))?;
    let mut claims = json!({ "sub": account.id });
    let has = |s: &str| scope.split(' ').any(|x| x == s);
    if has("profile") {
        if let Some(n) = &account.full_name {
            claims["name"] = json!(n);
        }
        if let Some(u) = &account.username {
            claims["preferred_username"] = json!(u);
        }
        if let Some(l) = &account.locale {
            claims["locale"] = json!(l);
        }
    }
    if has("email") {
        if let Some((e, verified)) = email {
            claims["email"] = json!(e);
            claims["email_verified"] = json!(verified);
        }
    }
    Ok(claims)
}

async fn id_token(
    state: &TokenState,
    client: &ClientRow,
    grant: &GrantRow,
) -> Result<String, OAuthError> {
    let mut claims = user_claims(state, &grant.account_id, &grant.scope).await?;
    let at = chrono::Utc::now().timestamp();
    claims["iss"] = json!(state.issuer);
    claims["aud"] = json!(client.id);
    claims["iat"] = json!(at);
    claims["exp"] = json!(at + 3600);
    claims["auth_time"] = json!(grant.auth_time.and_utc().timestamp());
    if let Some(n) = &grant.nonce {
        claims["nonce"] = json!(n);
    }
    let keys = state.keys.current();
    let mut h = jsonwebtoken::Header::new(keys.algorithm);
    h.kid = Some(keys.kid.clone());
    jsonwebtoken::encode(&h, &claims, &keys.encoding)
        .map_err(|e| err(500, "server_error", e.to_string()))
}

/// `GET|POST /oauth/userinfo` (OpenID Connect Core §5.3), with a bearer access token
/// that was granted `openid`.
pub async fn userinfo(req: HttpRequest, state: web::Data<TokenState>) -> HttpResponse {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let refuse = |error: &str, description: &str| {
        HttpResponse::Unauthorized()
            .insert_header((
                header::WWW_AUTHENTICATE,
                format!("Bearer error=\"{error}\", error_description=\"{description}\""),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"error": error, "error_description": description}))
    };
    let Some(claims) = bearer.and_then(|t| verify(&state, t.trim())) else {
        return refuse(
            "invalid_token",
            "the access token is missing, expired or not ours",
        );
    };
    match crate::introspect::is_live(&state, &claims).await {
        Ok(true) => {}
        Ok(false) => return refuse("invalid_token", "the access token was revoked"),
        Err(e) => return e.response(),
    }
    let scope = claims["scope"].as_str().unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return HttpResponse::Forbidden()
            .insert_header((
                header::WWW_AUTHENTICATE,
                "Bearer error=\"insufficient_scope\", scope=\"openid\"",
            ))
            .json(json!({"error": "insufficient_scope"}));
    }
    let sub = claims["sub"].as_str().unwrap_or_default();
    match user_claims(&state, sub, scope).await {
        Ok(c) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(c),
        Err(e) => e.response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_ok(Some(challenge), Some(verifier)).is_ok());
        assert!(pkce_ok(Some(challenge), Some("x".repeat(43).as_str())).is_err());
        assert!(pkce_ok(Some(challenge), None).is_err());
        assert!(pkce_ok(None, Some(verifier)).is_err());
        assert!(pkce_ok(None, None).is_ok());
        // `plain` would send the verifier itself as the challenge: refused.
        assert!(pkce_ok(Some(verifier), Some(verifier)).is_err());
    }
}

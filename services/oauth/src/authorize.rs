//! The authorization endpoint (RFC 6749 §3.1, RFC 9700): `GET /oauth/authorize`
//! (also `/OAuth/authorize`) and the consent form it posts back to itself.
//!
//! Order of checks, as RFC 6749 §4.1.2.1 requires:
//! 1. the client and the redirect URI. Until both are known good nothing is sent to
//!    the redirect URI: an unknown client or a URI that is not, byte for byte, one
//!    the client registered gets an error page, never a `Location`;
//! 2. everything else (response type, scope, PKCE) is answered at the redirect URI
//!    with `error=…&state=…`;
//! 3. no login session: the login page, which comes back here after;
//! 4. no remembered consent for these scopes: the consent page, naming the partner
//!    and the scopes. Allowing is remembered.
//!
//! A code is a random 256-bit value stored as its digest, bound to the client, the
//! redirect URI and the PKCE challenge, single use, valid for ten minutes.

use crate::token::{list, sign, Issued, TokenState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::secret;
use admit_runtime::web::{self as pages, Csrf, Lang};
use admit_store::grants::{self, CodeRow, GrantRow, SessionRow};
use admit_store::partners::{self, ClientRow};
use minijinja::context;
use serde::Serialize;
use std::collections::HashMap;

pub const TEMPLATES: &[(&str, &str)] =
    &[("consent.html", include_str!("../templates/consent.html"))];

const CODE_TTL_SECS: i64 = 600;
/// The parameters of an authorization request, carried through the consent form.
pub const PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "prompt",
];

/// An authorization request whose client and redirect URI have been checked.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_type: String,
    pub scope: String,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
    #[serde(skip)]
    pub client: ClientRow,
}

enum Refusal {
    /// Rendered here: the redirect URI cannot be trusted.
    Page(StatusCode, String),
    /// Sent back to the client at its redirect URI.
    Redirect(String),
}

/// `message`: a translation key, or a text already in `lang`.
fn page_error(
    req: &HttpRequest,
    state: &TokenState,
    status: StatusCode,
    message: &str,
) -> HttpResponse {
    state.pages.error(
        Lang::choose(req, None),
        status,
        "error-authorize-title",
        message,
    )
}

/// The parameters of a request or a form; a parameter of [`PARAMS`] twice is refused
/// with the message, in `lang`, to show.
fn parse(raw: &str, lang: Lang) -> Result<HashMap<String, String>, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|_| admit_runtime::i18n::text(lang, "authorize-unreadable", &[]))?;
    let mut map = HashMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() && PARAMS.contains(&k.as_str()) {
            return Err(admit_runtime::i18n::text(
                lang,
                "authorize-param-twice",
                &[("param", k.into())],
            ));
        }
    }
    Ok(map)
}

/// Appends `params` to `uri` (after `?`, or `#` for the implicit grant).
fn with_params(uri: &str, fragment: bool, params: &[(&str, &str)]) -> String {
    let encoded = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if fragment {
        '#'
    } else if uri.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{uri}{sep}{encoded}")
}

impl Checked {
    fn is_implicit(&self) -> bool {
        self.response_type == "token"
    }

    /// The error answer at the client's redirect URI.
    fn error_uri(&self, state: &TokenState, code: &str, description: &str) -> String {
        let mut p = vec![("error", code), ("error_description", description)];
        if let Some(s) = &self.state {
            p.push(("state", s));
        }
        p.push(("iss", &state.issuer));
        with_params(&self.redirect_uri, self.is_implicit(), &p)
    }

    /// The form fields that carry this request through the consent page.
    fn hidden(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("client_id", self.client_id.clone()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("response_type", self.response_type.clone()),
            ("scope", self.scope.clone()),
        ];
        for (k, v) in [
            ("state", &self.state),
            ("code_challenge", &self.code_challenge),
            ("nonce", &self.nonce),
        ] {
            if let Some(v) = v {
                f.push((k, v.clone()));
            }
        }
        if self.code_challenge.is_some() {
            f.push(("code_challenge_method", "S256".into()));
        }
        f
    }
}

async fn check(state: &TokenState, p: &HashMap<String, String>) -> Result<Checked, Refusal> {
    let page = |m: &str| Refusal::Page(StatusCode::BAD_REQUEST, m.to_owned());
    let client_id = p
        .get("client_id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| page("authorize-no-client"))?;
    let client = state
        .client(client_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "authorize: the client could not be read");
            Refusal::Page(
                StatusCode::SERVICE_UNAVAILABLE,
                "error-unavailable-message".into(),
            )
        })?
        .ok_or_else(|| page("authorize-unknown-client"))?;
    let registered = list(&client.redirect_uris);
    let redirect_uri =
        redirect_uri_of(&registered, p.get("redirect_uri").map(String::as_str)).map_err(page)?;
    let mut checked = Checked {
        client_id: client.id.clone(),
        redirect_uri,
        response_type: p.get("response_type").cloned().unwrap_or_default(),
        scope: String::new(),
        state: p.get("state").filter(|s| !s.is_empty()).cloned(),
        code_challenge: p.get("code_challenge").filter(|s| !s.is_empty()).cloned(),
        nonce: p.get("nonce").filter(|s| !s.is_empty()).cloned(),
        prompt: p.get("prompt").filter(|s| !s.is_empty()).cloned(),
        client,
    };
    let refuse = |c: &Checked, code: &str, d: &str| Refusal::Redirect(c.error_uri(state, code, d));
    let grants = list(&checked.client.grants);
    match checked.response_type.as_str() {
        "code" if grants.iter().any(|g| g == "authorization_code") => {}
        "token" if grants.iter().any(|g| g == "implicit") => {}
        "code" | "token" => {
            let grant = if checked.response_type == "code" {
                "the authorization code grant"
            } else {
                "the implicit grant"
            };
            return Err(refuse(
                &checked,
                "unauthorized_client",
                &format!("this client is not registered for {grant}"),
            ));
        }
        "" => {
            return Err(refuse(
                &checked,
                "invalid_request",
                "response_type is required",
            ))
        }
        _ => {
            return Err(refuse(
                &checked,
                "unsupported_response_type",
                "response_type must be code or token",
            ))
        }
    }
    if checked.state.as_ref().is_some_and(|s| s.len() > 1024)
        || checked.nonce.as_ref().is_some_and(|s| s.len() > 1024)
    {
        return Err(refuse(
            &checked,
            "invalid_request",
            "state and nonce are at most 1024 characters",
        ));
    }
    let allowed = list(&checked.client.scopes);
    checked.scope = match p
        .get("scope")
        .map(|s| s.split(' ').filter(|s| !s.is_empty()))
    {
        None => allowed.join(" "),
        Some(requested) => {
            let mut scopes: Vec<&str> = Vec::new();
            for s in requested {
                if !allowed.iter().any(|a| a == s) {
                    return Err(refuse(
                        &checked,
                        "invalid_scope",
                        &format!("{s} is not a scope of this client"),
                    ));
                }
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
            scopes.join(" ")
        }
    };
    if checked.response_type == "code" {
        match (
            &checked.code_challenge,
            p.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) if is_challenge(c) => {}
            (Some(_), Some("S256")) => {
                return Err(refuse(
                    &checked,
                    "invalid_request",
                    "code_challenge must be 43 base64url characters (S256)",
                ))
            }
            (Some(_), _) => {
                return Err(refuse(
                    &checked,
                    "invalid_request",
                    "code_challenge_method must be S256; plain is not accepted",
                ))
            }
            (None, Some(_)) => {
                return Err(refuse(
                    &checked,
                    "invalid_request",
                    "code_challenge_method without code_challenge",
                ))
            }
            (None, None) if checked.client.is_public => {
                return Err(refuse(
                    &checked,
                    "invalid_request",
                    "PKCE (code_challenge with S256) is required of public clients",
                ))
            }
            (None, None) => {}
        }
    }
    Ok(checked)
}

/// The redirect URI of a request: the one it names when that is, byte for byte, one
/// the client registered (RFC 9700 §4.1.3: no normalising of case, slashes, ports,
/// percent-encoding or query strings), else the only one registered when it names
/// none. The error is the translation key of the page to show.
pub fn redirect_uri_of(
    registered: &[String],
    requested: Option<&str>,
) -> Result<String, &'static str> {
    match requested {
        Some(uri) if registered.iter().any(|r| r == uri) => Ok(uri.to_owned()),
        Some(_) => Err("authorize-redirect-unregistered"),
        None => match registered {
            [only] => Ok(only.clone()),
            _ => Err("authorize-no-redirect"),
        },
    }
}

/// The authorization request's parameters as [`authorize`] and [`decide`] read them
/// (an entry point for the fuzz targets).
#[doc(hidden)]
pub fn read_params(raw: &str) -> Result<HashMap<String, String>, String> {
    parse(raw, Lang::EN)
}

fn is_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn authorize(req: HttpRequest, state: web::Data<TokenState>) -> HttpResponse {
    let params = match parse(req.query_string(), Lang::choose(&req, None)) {
        Ok(p) => p,
        Err(m) => return page_error(&req, &state, StatusCode::BAD_REQUEST, &m),
    };
    let checked = match check(&state, &params).await {
        Ok(c) => c,
        Err(refusal) => return refused(&req, &state, refusal),
    };
    let session = match pages::current_session(&req, &state.db).await {
        Ok(s) => s,
        Err(e) => return unavailable(&req, &state, e),
    };
    let prompt = checked.prompt.clone().unwrap_or_default();
    let session = match session {
        Some(s) if !prompt.split(' ').any(|p| p == "login") => s,
        _ if prompt.split(' ').any(|p| p == "none") => {
            return found(&checked.error_uri(&state, "login_required", "the user is not signed in"))
        }
        _ => {
            let back = format!("{}/oauth/authorize?{}", state.issuer, req.query_string());
            let mut prompt_less = params.clone();
            prompt_less.remove("prompt");
            let back = if prompt.split(' ').any(|p| p == "login") {
                // Once the user has signed in, do not ask again.
                let query = serde_urlencoded::to_string(&prompt_less).unwrap_or_default();
                format!("{}/oauth/authorize?{query}", state.issuer)
            } else {
                back
            };
            let login = with_params(&state.login_url, false, &[("return_to", &back)]);
            return pages::redirect(&login).finish();
        }
    };
    let (account_id, client_id) = (session.account_id.clone(), checked.client_id.clone());
    let remembered = match state
        .db
        .run(move |c| grants::consent(c, &account_id, &client_id))
        .await
    {
        Ok(r) => r,
        Err(e) => return unavailable(&req, &state, e),
    };
    let covered = remembered.as_deref().is_some_and(|r| {
        checked
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| r.split(' ').any(|g| g == s))
    });
    if covered && !prompt.split(' ').any(|p| p == "consent") {
        return issue(&req, &state, &checked, &session).await;
    }
    if prompt.split(' ').any(|p| p == "none") {
        return found(&checked.error_uri(&state, "consent_required", "the user has not consented"));
    }
    consent_page(&req, &state, &checked).await
}

fn found(location: &str) -> HttpResponse {
    let mut res = HttpResponse::Found();
    pages::protect(&mut res);
    res.insert_header((actix_web::http::header::LOCATION, location.to_owned()))
        .finish()
}

fn refused(req: &HttpRequest, state: &TokenState, refusal: Refusal) -> HttpResponse {
    match refusal {
        Refusal::Page(status, message) => page_error(req, state, status, &message),
        Refusal::Redirect(uri) => found(&uri),
    }
}

fn unavailable(req: &HttpRequest, state: &TokenState, e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "authorize: a dependency failed");
    state.pages.error(
        Lang::choose(req, None),
        StatusCode::SERVICE_UNAVAILABLE,
        "error-unavailable-title",
        "error-unavailable-message",
    )
}

/// A scope as the consent page says it: the translation key, and the scope itself
/// (for scopes without a text of their own).
fn describe(scope: &str) -> (&'static str, String) {
    let key = match scope {
        "openid" => "scope-openid",
        "profile" => "scope-profile",
        "email" => "scope-email",
        "accounts:create" => "scope-accounts-create",
        "offline_access" => "scope-offline-access",
        _ => "scope-other",
    };
    (key, scope.to_owned())
}

async fn consent_page(req: &HttpRequest, state: &TokenState, checked: &Checked) -> HttpResponse {
    let partner_id = checked.client.partner_id.clone();
    let partner = match state
        .db
        .run(move |c| partners::find_partner(c, &partner_id))
        .await
    {
        Ok(p) => p.map(|p| p.name).unwrap_or_default(),
        Err(e) => return unavailable(req, state, e),
    };
    let lang = pages::language(req, &state.db).await;
    let scopes: Vec<(&str, String)> = checked
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(describe)
        .collect();
    let csrf = Csrf::of(req);
    let mut res = HttpResponse::Ok();
    csrf.apply(&mut res);
    state.pages.page(
        res,
        lang,
        "consent.html",
        context! {
            csrf => csrf.token,
            partner,
            client => checked.client.name,
            scopes,
            hidden => checked.hidden(),
        },
    )
}

/// `POST /oauth/authorize`: the consent form's answer.
pub async fn decide(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<TokenState>,
) -> HttpResponse {
    let Ok(raw) = std::str::from_utf8(&body) else {
        return page_error(
            &req,
            &state,
            StatusCode::BAD_REQUEST,
            "authorize-form-unreadable",
        );
    };
    let params = match parse(raw, Lang::choose(&req, None)) {
        Ok(p) => p,
        Err(m) => return page_error(&req, &state, StatusCode::BAD_REQUEST, &m),
    };
    let token = params
        .get(pages::CSRF_FIELD)
        .map(String::as_str)
        .unwrap_or("");
    if !pages::csrf_ok(&req, token) {
        return state.pages.error(
            Lang::choose(&req, None),
            StatusCode::FORBIDDEN,
            "error-csrf-title",
            "error-csrf-message",
        );
    }
    let checked = match check(&state, &params).await {
        Ok(c) => c,
        Err(refusal) => return refused(&req, &state, refusal),
    };
    let session = match pages::current_session(&req, &state.db).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return page_error(
                &req,
                &state,
                StatusCode::UNAUTHORIZED,
                "authorize-signed-out",
            )
        }
        Err(e) => return unavailable(&req, &state, e),
    };
    let origin = admit_runtime::audit::origin(&req, "account", &session.account_id);
    if params.get("decision").map(String::as_str) != Some("allow") {
        let event = origin
            .event("consent.deny", "client", &checked.client_id)
            .outcome(admit_store::audit::DENIED)
            .detail(serde_json::json!({"scope": checked.scope}));
        admit_runtime::audit::record(&state.db, event).await;
        let uri = checked.error_uri(&state, "access_denied", "the user declined");
        return pages::redirect(&uri).finish();
    }
    let (account_id, client_id, scope) = (
        session.account_id.clone(),
        checked.client_id.clone(),
        checked.scope.clone(),
    );
    let event = origin
        .event("consent.grant", "client", &checked.client_id)
        .detail(serde_json::json!({"scope": checked.scope}));
    let remembered = state
        .db
        .write(move |c| {
            let mut all: Vec<String> = grants::consent(c, &account_id, &client_id)?
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                if !all.iter().any(|a| a == s) {
                    all.push(s.to_owned());
                }
            }
            grants::remember_consent(
                c,
                &account_id,
                &client_id,
                &all.join(" "),
                admit_store::now(),
            )?;
            admit_store::audit::insert(c, &event)
        })
        .await;
    if let Err(e) = remembered {
        return unavailable(&req, &state, e);
    }
    issue(&req, &state, &checked, &session).await
}

/// Sends the user back to the client with a code, or with an access token (implicit).
async fn issue(
    req: &HttpRequest,
    state: &TokenState,
    checked: &Checked,
    session: &SessionRow,
) -> HttpResponse {
    let mut p: Vec<(&str, String)> = Vec::new();
    if checked.is_implicit() {
        let ttl = i64::from(checked.client.access_ttl_secs.max(1));
        let issued = Issued {
            sub: &session.account_id,
            client_id: &checked.client_id,
            partner_id: &checked.client.partner_id,
            scope: &checked.scope,
            grant_id: None,
            ttl,
        };
        let token = match sign(state, &issued) {
            Ok(t) => t,
            Err(e) => return unavailable(req, state, format!("{e:?}")),
        };
        p.push(("access_token", token));
        p.push(("token_type", "bearer".into()));
        p.push(("expires_in", ttl.to_string()));
        p.push(("scope", checked.scope.clone()));
    } else {
        let code = secret::generate("");
        let now = admit_store::now();
        let grant = GrantRow {
            id: uuid::Uuid::now_v7().to_string(),
            client_id: checked.client_id.clone(),
            account_id: session.account_id.clone(),
            scope: checked.scope.clone(),
            nonce: checked.nonce.clone(),
            auth_time: session.auth_time,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(state.refresh_ttl_secs),
            revoked_at: None,
        };
        let row = CodeRow {
            code_digest: secret::digest(&code),
            grant_id: grant.id.clone(),
            redirect_uri: checked.redirect_uri.clone(),
            code_challenge: checked.code_challenge.clone(),
            expires_at: now + chrono::Duration::seconds(CODE_TTL_SECS),
            used_at: None,
        };
        let stored = state
            .db
            .write(move |c| {
                grants::insert_grant(c, &grant)?;
                grants::insert_code(c, &row)
            })
            .await;
        if let Err(e) = stored {
            return unavailable(req, state, e);
        }
        p.push(("code", code));
    }
    if let Some(s) = &checked.state {
        p.push(("state", s.clone()));
    }
    // RFC 9207: the issuer, so a client talking to several servers can tell (not for
    // the implicit grant, whose fragment the RFC does not cover).
    if !checked.is_implicit() {
        p.push(("iss", state.issuer.clone()));
    }
    let borrowed: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let uri = with_params(&checked.redirect_uri, checked.is_implicit(), &borrowed);
    pages::redirect(&uri).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use admit_runtime::i18n;

    #[test]
    fn the_consent_page_and_the_error_messages_have_texts() {
        for (_, source) in TEMPLATES {
            for key in i18n::keys_in_template(source) {
                assert!(i18n::is_key(key), "{key}");
            }
        }
        for scope in [
            "openid",
            "profile",
            "email",
            "accounts:create",
            "offline_access",
            "x",
        ] {
            assert!(i18n::is_key(describe(scope).0), "{scope}");
        }
        for key in [
            "error-authorize-title",
            "authorize-unreadable",
            "authorize-param-twice",
            "authorize-no-client",
            "authorize-unknown-client",
            "authorize-redirect-unregistered",
            "authorize-no-redirect",
            "authorize-form-unreadable",
            "authorize-signed-out",
        ] {
            assert!(i18n::is_key(key), "{key}");
        }
        let twice = parse(
            "client_id=a&client_id=b",
            Lang::from_code("fr").unwrap_or_default(),
        );
        assert_eq!(
            twice.err().as_deref(),
            Some("Le paramètre client_id apparaît deux fois.")
        );
    }
}

//! The set-password page (SPEC §6 step 2, and the link of SPEC §4's email).
//!
//! `GET /password/set?token=…` shows the form and does not use the token: mail
//! scanners open links. `POST` checks the password against the policy of §3, then in
//! one transaction uses the token (single use, a conditional update), sets the
//! password, enables the account and starts the login session; it redirects to the
//! partner's landing page. The new password ends the account's other sessions,
//! consents and grants (but the one a partner got with the account it created). The
//! page sends `Referrer-Policy: no-referrer`, so the token
//! in its address never leaves in a `Referer`.

use crate::{hasher, AccountState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::secret;
use admit_runtime::web::{self as pages, Csrf};
use admit_store::{grants, partners, registrations, StoreError};
use minijinja::context;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
pub struct SetPasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

fn link_gone(state: &AccountState) -> HttpResponse {
    state.pages.error(
        StatusCode::GONE,
        "This link no longer works",
        "Links to set a password work once and expire after a few days, and a newer email replaces an older one. Sign in, or ask for a new link.",
    )
}

/// The partner that sent the link, for the page's wording and the redirect.
fn partner_of(
    c: &mut admit_store::AnyConnection,
    row: &registrations::PasswordTokenRow,
) -> Result<Option<partners::PartnerRow>, StoreError> {
    match &row.partner_id {
        Some(id) => partners::find_partner(c, id),
        None => Ok(None),
    }
}

fn form_page(
    req: &HttpRequest,
    state: &AccountState,
    status: StatusCode,
    token: &str,
    partner_name: Option<&str>,
    error: Option<&str>,
) -> HttpResponse {
    let csrf = Csrf::of(req);
    let mut res = HttpResponse::build(status);
    csrf.apply(&mut res);
    let password_hint = format!(
        "{} to {} characters; common passwords are refused.",
        state.policy.min_length, state.policy.max_length
    );
    state.pages.page(
        res,
        "set_password.html",
        context! { csrf => csrf.token, token, partner_name, error, password_hint },
    )
}

pub async fn set_password_page(
    req: HttpRequest,
    query: web::Query<TokenQuery>,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let digest = secret::digest(&query.token);
    let found = state
        .db
        .run(move |c| {
            let Some(row) = registrations::live_password_token(c, &digest, admit_store::now())?
            else {
                return Ok(None);
            };
            Ok(Some(partner_of(c, &row)?.map(|p| p.name)))
        })
        .await;
    match found {
        Ok(Some(partner)) => form_page(
            &req,
            &state,
            StatusCode::OK,
            &query.token,
            partner.as_deref(),
            None,
        ),
        Ok(None) => link_gone(&state),
        Err(e) => crate::pages::unavailable(&state, e),
    }
}

enum Outcome {
    Done {
        account_id: String,
        landing: Option<String>,
    },
    Gone,
}

pub async fn set_password(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Ok(f) = serde_urlencoded::from_bytes::<SetPasswordForm>(&body) else {
        return crate::pages::bad_form(&state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return crate::pages::csrf_failed(&state);
    }
    let again = |message: &str| {
        form_page(
            &req,
            &state,
            StatusCode::BAD_REQUEST,
            &f.token,
            None,
            Some(message),
        )
    };
    let password = match state.policy.check(&f.password) {
        Ok(p) => p,
        Err(e) => return again(&format!("This password cannot be used: {}.", e.message)),
    };
    if f.password != f.password_confirm {
        return again("The two passwords are not the same.");
    }
    let digest = secret::digest(&f.token);
    // No hash for a link that cannot be used: the hash pool is not anybody's to spend.
    let probe = digest.clone();
    match state
        .db
        .run(move |c| registrations::live_password_token(c, &probe, admit_store::now()))
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return link_gone(&state),
        Err(e) => return crate::pages::unavailable(&state, e),
    }
    let (cookie, session) = pages::new_session("", state.session_ttl_secs);
    let db = state.db.clone();
    // The hash, the token's use, the password and the session: on the hash thread, the
    // writes in one transaction, so a used link always leaves a usable password.
    let outcome = state
        .hasher
        .run(move || -> Result<Outcome, StoreError> {
            let hash = hasher::hash_blocking(password.expose())
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            let mut conn = db.get()?;
            db.write_on(&mut conn, |c| {
                let now = admit_store::now();
                let Some(row) = registrations::spend_password_token(c, &digest, now)? else {
                    return Ok(Outcome::Gone);
                };
                registrations::set_password(c, &row.account_id, &hash)?;
                if let Some(address) = &row.sent_to {
                    registrations::confirm_email(c, &row.account_id, address, now)?;
                }
                // A new password ends every other way in: sessions, and grants of
                // other clients (whoever signed up with this address before).
                grants::after_password_change(c, &row.account_id, row.partner_id.as_deref(), now)?;
                let mut session = session;
                session.account_id = row.account_id.clone();
                grants::insert_session(c, &session)?;
                Ok(Outcome::Done {
                    landing: partner_of(c, &row)?.and_then(|p| p.landing_url),
                    account_id: row.account_id,
                })
            })
        })
        .await;
    match outcome {
        Ok(Ok(Outcome::Done {
            account_id,
            landing,
        })) => {
            tracing::info!(account_id, "password set; signed in");
            pages::redirect(landing.as_deref().unwrap_or("/"))
                .cookie(cookie)
                .finish()
        }
        Ok(Ok(Outcome::Gone)) => link_gone(&state),
        Ok(Err(e)) => crate::pages::unavailable(&state, e),
        Err(e) => crate::pages::unavailable(&state, e),
    }
}

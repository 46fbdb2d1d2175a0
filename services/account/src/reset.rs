//! "Forgot your password?" (SPEC §7): the request for a reset link. The link's own
//! page, which uses it, is in [`crate::password`].
//!
//! `POST /password/forgot` answers the same page with the same status whether or not
//! an account has the address, and spends the same time on both: the answer depends
//! only on the form and the rate limits, and the lookup, the link and the email are
//! written after the answer, on a task of their own (OWASP Forgot Password cheat sheet:
//! "asynchronous calls"). That task writes the link's digest and the outbox row in one
//! transaction; the email is in the account's language, else the browser's.
//!
//! Requests are limited per address asked for (normalized) and per client address,
//! with the failed-login limiter ([`crate::limit`]: memory in the embedded default,
//! Redis in production). Past a limit the same answer is shown and no email is sent,
//! so the limit tells nothing either.

use crate::pages::{bad_form, csrf_failed, form, return_to, ReturnTo};
use crate::AccountState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::{secret, ContactKind, Email, Envelope, Notification};
use admit_runtime::i18n::text;
use admit_runtime::web::{self as pages, Csrf, Lang};
use admit_store::registrations::{self, purpose, PasswordTokenRow};
use admit_store::{accounts, outbox};
use minijinja::context;
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ForgotForm {
    /// The value of the `__Host-admit_csrf` cookie.
    #[serde(default)]
    csrf_token: String,
    /// Where the sign-in page goes after signing in (a path on this site).
    #[serde(default)]
    return_to: String,
    /// The address of the account.
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254)]
    email: String,
}

#[allow(clippy::too_many_arguments)]
fn forgot_form(
    req: &HttpRequest,
    state: &AccountState,
    lang: Lang,
    status: StatusCode,
    return_to: &str,
    email: &str,
    error: Option<&str>,
) -> HttpResponse {
    let csrf = Csrf::of(req);
    let mut res = HttpResponse::build(status);
    csrf.apply(&mut res);
    state.pages.page(
        res,
        lang,
        "forgot_password.html",
        context! { csrf => csrf.token, return_to, email, error },
    )
}

/// The form that asks for a reset link (linked from the sign-in page).
#[utoipa::path(
    get,
    path = "/password/forgot",
    tag = "pages",
    params(("return_to" = Option<String>, Query, description = "Where the sign-in page goes after signing in (a path on this site); carried back to it")),
    responses(
        (status = 200, description = "The form: an email address (HTML)", content_type = "text/html"),
    )
)]
pub async fn forgot_page(
    req: HttpRequest,
    query: web::Query<ReturnTo>,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let target = return_to(&state, &query.return_to).to_owned();
    let lang = pages::language(&req, &state.db).await;
    forgot_form(&req, &state, lang, StatusCode::OK, &target, "", None)
}

/// Asks for a reset link: the same answer whether or not an account has the address.
#[utoipa::path(
    post,
    path = "/password/forgot",
    tag = "pages",
    request_body(content = ForgotForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "\"Check your email\" (HTML): the same page whether or not an account has the address, and past the rate limits (then no email is sent)", content_type = "text/html"),
        (status = 400, description = "The address is not an email address: the form again, saying so (HTML)", content_type = "text/html"),
        (status = 403, description = "The CSRF token does not match its cookie (HTML)", content_type = "text/html"),
    )
)]
pub async fn forgot(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Some(f) = form::<ForgotForm>(&body) else {
        return bad_form(&req, &state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return csrf_failed(&req, &state);
    }
    // The signed-in account's language, else the browser's: never the language of
    // the account the address belongs to, which would tell that it exists.
    let lang = pages::language(&req, &state.db).await;
    let target = return_to(&state, &f.return_to).to_owned();
    let Ok(email) = Email::parse(f.email.trim()) else {
        let message = text(lang, "forgot-invalid", &[]);
        return forgot_form(
            &req,
            &state,
            lang,
            StatusCode::BAD_REQUEST,
            &target,
            &f.email,
            Some(&message),
        );
    };
    if within_limits(&req, &state, &email).await {
        let state = state.clone();
        tokio::spawn(async move { send_link(&state, email, lang).await });
    } else {
        tracing::info!("password reset: over a limit; no email");
    }
    let csrf = Csrf::of(&req);
    let mut res = HttpResponse::Ok();
    csrf.apply(&mut res);
    state.pages.page(
        res,
        lang,
        "forgot_sent.html",
        context! { return_to => target, minutes => state.reset_link_ttl_secs / 60 },
    )
}

/// Whether this request may send an email; counts it if so.
async fn within_limits(req: &HttpRequest, state: &AccountState, email: &Email) -> bool {
    let client = admit_runtime::client::client_address(req);
    let email_key = format!("reset-email:{}", email.normalized());
    let client_key = format!("reset-address:{client}");
    let (per_email, per_client) = state.reset_limits;
    let limits = [
        (email_key.as_str(), per_email),
        (client_key.as_str(), per_client),
    ];
    for (key, limit) in limits {
        if state.limiter.blocked(key, limit).await.is_some() {
            return false;
        }
    }
    // The limiter counts "failures": here every request that may send an email.
    for (key, limit) in limits {
        state.limiter.failed(key, limit).await;
    }
    true
}

/// The stored half of the reset link that `envelope`'s email carries.
fn reset_link(
    link_key: &[u8],
    envelope: &Envelope,
    account_id: &str,
    sent_to: String,
    now: chrono::NaiveDateTime,
    ttl_secs: i64,
) -> PasswordTokenRow {
    let token = secret::link_token(link_key, secret::RESET_PASSWORD, &envelope.id.to_string());
    PasswordTokenRow {
        token_digest: secret::digest(&token),
        account_id: account_id.to_owned(),
        partner_id: None,
        grant_id: None,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(ttl_secs),
        used_at: None,
        sent_to: Some(sent_to),
        purpose: purpose::RESET.to_owned(),
    }
}

/// Looks the address up and, when an account has it, writes the reset link and its
/// email in one transaction (a newer link retires the older ones).
async fn send_link(state: &AccountState, email: Email, lang: Lang) {
    let (link_key, ttl) = (state.link_key.clone(), state.reset_link_ttl_secs);
    let sent = state
        .db
        .write(move |c| {
            let normalized = email.normalized();
            let Some(account_id) =
                accounts::find_by_contact(c, ContactKind::Email.as_str(), &normalized)?
            else {
                return Ok(None);
            };
            let account = accounts::find(c, &account_id)?;
            let language = account
                .locale
                .as_deref()
                .and_then(Lang::of_locale)
                .unwrap_or(lang);
            let envelope = Envelope::new(Notification::PasswordReset {
                to: email.as_str().to_owned(),
                account_id: account_id.clone(),
                full_name: account.full_name,
                language: language.as_str().to_owned(),
            });
            let now = admit_store::now();
            let row = reset_link(&link_key, &envelope, &account_id, normalized, now, ttl);
            registrations::insert_password_tokens(c, &[row], now)?;
            outbox::enqueue(c, outbox::MAIL_TOPIC, &envelope)?;
            Ok(Some(account_id))
        })
        .await;
    match sent {
        Ok(Some(account_id)) => {
            state.outbox_wake.notify_one();
            tracing::info!(account_id, "password reset: link sent");
        }
        Ok(None) => tracing::info!("password reset: no account has the address"),
        Err(e) => tracing::warn!(error = %e, "password reset: the link could not be written"),
    }
}

/// The limits of reset requests, from settings: per address asked for, per client
/// address.
pub fn limits(settings: &admit_runtime::Settings) -> (crate::limit::Limit, crate::limit::Limit) {
    let window = Duration::from_secs(settings.account.reset_window_secs.max(1));
    (
        crate::limit::Limit {
            max: settings.account.reset_requests_per_email.max(1),
            window,
        },
        crate::limit::Limit {
            max: settings.account.reset_requests_per_address.max(1),
            window,
        },
    )
}

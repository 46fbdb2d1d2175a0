//! The account service's pages: sign in, create an account, the signed-in home, and
//! sign out. They create and end the login session that the authorize page reads
//! (see [`admit_runtime::web`]). They work without JavaScript.

use crate::limit::Limit;
use crate::{register, AccountState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::signup::SubmittedContact;
use admit_domain::{AccountType, Contact, ContactKind, Email, NewAccount, Username};
use admit_runtime::i18n::text;
use admit_runtime::web::{self as pages, Csrf, Lang};
use admit_store::{accounts, grants};
use minijinja::context;
use serde::Deserialize;
use std::time::Duration;

pub const TEMPLATES: &[(&str, &str)] = &[
    ("login.html", include_str!("../templates/login.html")),
    ("signup.html", include_str!("../templates/signup.html")),
    ("home.html", include_str!("../templates/home.html")),
    (
        "set_password.html",
        include_str!("../templates/set_password.html"),
    ),
    (
        "forgot_password.html",
        include_str!("../templates/forgot_password.html"),
    ),
    (
        "forgot_sent.html",
        include_str!("../templates/forgot_sent.html"),
    ),
    (
        "reset_password.html",
        include_str!("../templates/reset_password.html"),
    ),
    (
        "reset_done.html",
        include_str!("../templates/reset_done.html"),
    ),
    ("confirm.html", include_str!("../templates/confirm.html")),
    (
        "confirmed.html",
        include_str!("../templates/confirmed.html"),
    ),
    (
        "confirm_phone.html",
        include_str!("../templates/confirm_phone.html"),
    ),
    (
        "confirm_email.html",
        include_str!("../templates/confirm_email.html"),
    ),
];

#[derive(Deserialize, Default)]
pub struct ReturnTo {
    #[serde(default)]
    pub(crate) return_to: String,
}

pub(crate) fn return_to<'a>(state: &'a AccountState, wanted: &'a str) -> &'a str {
    pages::safe_return_to(wanted, &[state.issuer.as_str()], "/")
}

pub(crate) fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

/// The language of an error page: the browser's (the database may be what failed).
fn error_lang(req: &HttpRequest) -> Lang {
    Lang::choose(req, None)
}

pub(crate) fn bad_form(req: &HttpRequest, state: &AccountState) -> HttpResponse {
    state.pages.error(
        error_lang(req),
        StatusCode::BAD_REQUEST,
        "error-form-title",
        "error-form-message",
    )
}

pub(crate) fn csrf_failed(req: &HttpRequest, state: &AccountState) -> HttpResponse {
    state.pages.error(
        error_lang(req),
        StatusCode::FORBIDDEN,
        "error-csrf-title",
        "error-csrf-message",
    )
}

pub(crate) fn unavailable(
    req: &HttpRequest,
    state: &AccountState,
    e: impl std::fmt::Display,
) -> HttpResponse {
    tracing::error!(error = %e, "page: a dependency failed");
    state.pages.error(
        error_lang(req),
        StatusCode::SERVICE_UNAVAILABLE,
        "error-unavailable-title",
        "error-unavailable-message",
    )
}

/// What the policy has against `raw`, said in `lang`; the password if nothing.
pub(crate) fn checked_password(
    state: &AccountState,
    lang: Lang,
    raw: &str,
) -> Result<admit_domain::Password, String> {
    use admit_domain::PasswordProblem;
    let (min, max) = (
        i64::try_from(state.policy.min_length).unwrap_or(i64::MAX),
        i64::try_from(state.policy.max_length).unwrap_or(i64::MAX),
    );
    let key = match state.policy.problem(raw) {
        None => {
            return state
                .policy
                .check(raw)
                .map_err(|e| format!("{}.", e.message))
        }
        Some(PasswordProblem::Length) => "password-length",
        Some(PasswordProblem::Control) => "password-control",
        Some(PasswordProblem::Common) => "password-common",
    };
    Err(text(lang, key, &[("min", min.into()), ("max", max.into())]))
}

// --- sign in ----------------------------------------------------------------------

pub async fn login_page(
    req: HttpRequest,
    query: web::Query<ReturnTo>,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let target = return_to(&state, &query.return_to).to_owned();
    match pages::current_session(&req, &state.db).await {
        Ok(Some(_)) if target != "/" => return pages::redirect(&target).finish(),
        Ok(_) => {}
        Err(e) => return unavailable(&req, &state, e),
    }
    let lang = pages::language(&req, &state.db).await;
    login_form(&req, &state, lang, StatusCode::OK, &target, "", None)
}

fn login_form(
    req: &HttpRequest,
    state: &AccountState,
    lang: Lang,
    status: StatusCode,
    return_to: &str,
    login: &str,
    error: Option<&str>,
) -> HttpResponse {
    let csrf = Csrf::of(req);
    let mut res = HttpResponse::build(status);
    csrf.apply(&mut res);
    state.pages.page(
        res,
        lang,
        "login.html",
        context! { csrf => csrf.token, return_to, login, error },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    return_to: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

/// The fields of a login form as [`login`] reads them (`csrf_token`, `return_to`,
/// `login`, `password`); `None` where it answers "bad form". An entry point for the
/// fuzz targets.
#[doc(hidden)]
pub fn read_login_form(body: &[u8]) -> Option<[String; 4]> {
    let f = form::<LoginForm>(body)?;
    Some([f.csrf_token, f.return_to, f.login, f.password])
}

/// The fields of a sign-up form as [`signup`] reads them (`csrf_token`, `return_to`,
/// `email`, `full_name`, `password`). An entry point for the fuzz targets.
#[doc(hidden)]
pub fn read_signup_form(body: &[u8]) -> Option<[String; 5]> {
    let f = form::<SignupForm>(body)?;
    Some([f.csrf_token, f.return_to, f.email, f.full_name, f.password])
}

pub async fn login(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Some(f) = form::<LoginForm>(&body) else {
        return bad_form(&req, &state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return csrf_failed(&req, &state);
    }
    let lang = pages::language(&req, &state.db).await;
    let target = return_to(&state, &f.return_to).to_owned();
    let login = f.login.trim().to_owned();
    if login.is_empty() || f.password.is_empty() {
        return login_form(
            &req,
            &state,
            lang,
            StatusCode::BAD_REQUEST,
            &target,
            &login,
            Some(&text(lang, "login-missing", &[])),
        );
    }
    let address = admit_runtime::client::client_address(&req);
    // Who tries is not known yet: the event names the account tried, never the
    // login typed (people type passwords into it).
    let origin = admit_runtime::audit::origin(&req, "anonymous", "");
    let account_key = format!("account:{}", login.to_lowercase());
    let address_key = format!("address:{address}");
    let limits = [
        (account_key.as_str(), state.login_limits.0),
        (address_key.as_str(), state.login_limits.1),
    ];
    for (key, limit) in limits {
        if let Some(wait) = state.limiter.blocked(key, limit).await {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            let minutes = i64::try_from(minutes).unwrap_or(i64::MAX);
            let message = text(lang, "login-too-many", &[("minutes", minutes.into())]);
            let mut res = login_form(
                &req,
                &state,
                lang,
                StatusCode::TOO_MANY_REQUESTS,
                &target,
                &login,
                Some(&message),
            );
            if let Ok(v) = wait.as_secs().to_string().parse() {
                res.headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, v);
            }
            let event = origin
                .event("login.failure", "account", "")
                .outcome(admit_store::audit::DENIED)
                .detail(
                    serde_json::json!({"reason": "rate_limited", "limit": key.split(':').next()}),
                );
            admit_runtime::audit::record(&state.db, event).await;
            return res;
        }
    }
    let account = match find_account(&state, &login).await {
        Ok(a) => a,
        Err(e) => return unavailable(&req, &state, e),
    };
    // An unknown login costs the same hash as a known one, so timing does not tell
    // which accounts exist.
    let pending = account
        .as_ref()
        .is_some_and(|a| a.status == admit_store::confirmations::PENDING);
    let (phc, account_id) = match &account {
        Some(a) if a.status == "active" || pending => (
            a.password_hash
                .clone()
                .unwrap_or_else(|| state.dummy_hash.clone()),
            Some(a.id.clone()).filter(|_| !pending),
        ),
        _ => (state.dummy_hash.clone(), None),
    };
    let matches = match state.hasher.verify(f.password, phc).await {
        Ok(ok) => ok,
        Err(e) => return unavailable(&req, &state, e),
    };
    let tried = account.as_ref().map(|a| a.id.clone()).unwrap_or_default();
    // A pending account gets the same answer whether the password was right or not
    // (the hash was still verified, so timing does not tell either), and no session.
    if pending {
        if !matches {
            for (key, limit) in limits {
                state.limiter.failed(key, limit).await;
            }
        }
        tracing::info!(reason = "pending account", "login refused");
        let event = origin
            .event("login.failure", "account", &tried)
            .outcome(admit_store::audit::DENIED)
            .detail(serde_json::json!({"reason": "pending_account"}));
        admit_runtime::audit::record(&state.db, event).await;
        let csrf = Csrf::of(&req);
        let mut res = HttpResponse::build(StatusCode::FORBIDDEN);
        csrf.apply(&mut res);
        return state.pages.page(
            res,
            lang,
            "login.html",
            context! {
                csrf => csrf.token, return_to => &target, login => &login, pending => true,
                error => text(lang, "login-pending", &[]),
            },
        );
    }
    let Some(account_id) = account_id.filter(|_| matches) else {
        for (key, limit) in limits {
            state.limiter.failed(key, limit).await;
        }
        tracing::info!(reason = "wrong credentials", "login failed");
        let reason = if tried.is_empty() {
            "unknown_login"
        } else {
            "wrong_credentials"
        };
        let event = origin
            .event("login.failure", "account", &tried)
            .outcome(admit_store::audit::FAILURE)
            .detail(serde_json::json!({"reason": reason}));
        admit_runtime::audit::record(&state.db, event).await;
        return login_form(
            &req,
            &state,
            lang,
            StatusCode::UNAUTHORIZED,
            &target,
            &login,
            Some(&text(lang, "login-wrong", &[])),
        );
    };
    start_session(&req, &state, &account_id, &target).await
}

async fn start_session(
    req: &HttpRequest,
    state: &AccountState,
    account_id: &str,
    target: &str,
) -> HttpResponse {
    let (cookie, row) = pages::new_session(account_id, state.session_ttl_secs);
    let event = admit_runtime::audit::origin(req, "account", account_id).event(
        "login.success",
        "account",
        account_id,
    );
    if let Err(e) = state
        .db
        .write(move |c| {
            grants::insert_session(c, &row)?;
            admit_store::audit::insert(c, &event)
        })
        .await
    {
        return unavailable(req, state, e);
    }
    tracing::info!(account_id, "signed in");
    pages::redirect(target).cookie(cookie).finish()
}

async fn find_account(
    state: &AccountState,
    login: &str,
) -> Result<Option<accounts::AccountRow>, admit_store::StoreError> {
    let login = login.to_owned();
    state
        .db
        .run(move |c| {
            if login.contains('@') {
                let Ok(email) = Email::parse(&login) else {
                    return Ok(None);
                };
                match accounts::find_by_contact(
                    c,
                    ContactKind::Email.as_str(),
                    &email.normalized(),
                )? {
                    Some(id) => Ok(Some(accounts::find(c, &id)?)),
                    None => Ok(None),
                }
            } else {
                let Ok(name) = Username::parse(&login) else {
                    return Ok(None);
                };
                accounts::find_by_username(c, &name.normalized())
            }
        })
        .await
}

// --- create an account ------------------------------------------------------------

pub async fn signup_page(
    req: HttpRequest,
    query: web::Query<ReturnTo>,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let target = return_to(&state, &query.return_to).to_owned();
    let lang = pages::language(&req, &state.db).await;
    signup_form(&req, &state, lang, StatusCode::OK, &target, "", "", None)
}

#[allow(clippy::too_many_arguments)]
fn signup_form(
    req: &HttpRequest,
    state: &AccountState,
    lang: Lang,
    status: StatusCode,
    return_to: &str,
    email: &str,
    full_name: &str,
    error: Option<&str>,
) -> HttpResponse {
    let csrf = Csrf::of(req);
    let mut res = HttpResponse::build(status);
    csrf.apply(&mut res);
    state.pages.page(
        res,
        lang,
        "signup.html",
        context! {
            csrf => csrf.token, return_to, email, full_name, error,
            min_length => state.policy.min_length,
        },
    )
}

#[derive(Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    return_to: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    password: String,
}

pub async fn signup(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Some(f) = form::<SignupForm>(&body) else {
        return bad_form(&req, &state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return csrf_failed(&req, &state);
    }
    let lang = pages::language(&req, &state.db).await;
    let target = return_to(&state, &f.return_to).to_owned();
    let again = |status: StatusCode, message: &str| {
        signup_form(
            &req,
            &state,
            lang,
            status,
            &target,
            &f.email,
            &f.full_name,
            Some(message),
        )
    };
    let new = match new_account(&state, lang, &f) {
        Ok(new) => new,
        Err(message) => return again(StatusCode::BAD_REQUEST, &message),
    };
    match register(&state, &new, true, false).await {
        Ok(crate::Registered {
            account_id,
            session: Some((cookie, _)),
            ..
        }) => {
            tracing::info!(account_id, "signed up and signed in");
            pages::redirect(&target).cookie(cookie).finish()
        }
        Ok(_) => unavailable(&req, &state, "the new account has no session"),
        Err(crate::error::ApiError::ContactAlreadyUsed { .. }) => {
            again(StatusCode::CONFLICT, &text(lang, "signup-email-taken", &[]))
        }
        Err(crate::error::ApiError::InvalidArgument { message, .. }) => {
            again(StatusCode::BAD_REQUEST, &message)
        }
        Err(e) => unavailable(&req, &state, e),
    }
}

fn new_account(state: &AccountState, lang: Lang, f: &SignupForm) -> Result<NewAccount, String> {
    let email = f.email.trim();
    let email = Email::parse(email).map_err(|_| text(lang, "signup-email-invalid", &[]))?;
    let full_name = f.full_name.trim();
    if full_name.chars().count() > 1024 {
        return Err(text(lang, "signup-name-long", &[]));
    }
    let password = checked_password(state, lang, &f.password)?;
    NewAccount::new(
        vec![SubmittedContact {
            contact: Contact::Email {
                email,
                is_primary: true,
            },
            is_primary: Some(true),
        }],
        None,
        (!full_name.is_empty()).then(|| full_name.to_owned()),
        None,
        password,
        AccountType::Standard,
    )
    .map_err(|e| e.message)
}

// --- home and sign out ------------------------------------------------------------

pub async fn home(req: HttpRequest, state: web::Data<AccountState>) -> HttpResponse {
    let session = match pages::current_session(&req, &state.db).await {
        Ok(Some(s)) => s,
        Ok(None) => return pages::redirect("/login").finish(),
        Err(e) => return unavailable(&req, &state, e),
    };
    let id = session.account_id.clone();
    let (name, locale) = match state
        .db
        .run(move |c| {
            let a = accounts::find(c, &id)?;
            let name = match a.full_name.or(a.username) {
                Some(n) => Some(n),
                None => accounts::primary_email(c, &id)?.map(|(e, _)| e),
            };
            Ok((name, a.locale))
        })
        .await
    {
        Ok(n) => n,
        Err(e) => return unavailable(&req, &state, e),
    };
    let csrf = Csrf::of(&req);
    let mut res = HttpResponse::Ok();
    csrf.apply(&mut res);
    state.pages.page(
        res,
        Lang::choose(&req, locale.as_deref()),
        "home.html",
        context! { csrf => csrf.token, name },
    )
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

pub async fn logout(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Some(f) = form::<CsrfOnly>(&body) else {
        return bad_form(&req, &state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return csrf_failed(&req, &state);
    }
    if let Some(digest) = pages::session_digest(&req) {
        let ended = state
            .db
            .write(move |c| grants::end_session(c, &digest, admit_store::now()))
            .await;
        if let Err(e) = ended {
            return unavailable(&req, &state, e);
        }
    }
    pages::redirect("/login")
        .cookie(pages::clear_session())
        .finish()
}

/// The limits in force, from settings.
pub fn limits(settings: &admit_runtime::Settings) -> (Limit, Limit) {
    let window = Duration::from_secs(settings.account.login_window_secs.max(1));
    (
        Limit {
            max: settings.account.login_failures_per_account.max(1),
            window,
        },
        Limit {
            max: settings.account.login_failures_per_address.max(1),
            window,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_renders_and_escapes_what_it_is_given() {
        let pages = admit_runtime::web::Pages::new(TEMPLATES).expect("templates parse");
        let ctx = context! {
            csrf => "tok", return_to => "/oauth/authorize?a=1&b=<x>", login => "<b>",
            email => "a@b.c", full_name => "", error => "bad", password_hint => "six",
            name => "Ada",
        };
        for (name, _) in TEMPLATES {
            let html = pages.render(name, &ctx).expect(name);
            assert!(
                !html.contains("<x>") && !html.contains("<b>"),
                "{name} escapes"
            );
        }
        let login = pages.render("login.html", &ctx).expect("login");
        assert!(
            login.contains("%3Fa%3D1%26b%3D%3Cx%3E"),
            "the link carries return_to encoded"
        );
    }

    #[test]
    fn every_text_of_every_page_is_translated_in_every_language() {
        use admit_runtime::i18n;
        let pages = admit_runtime::web::Pages::new(TEMPLATES).expect("templates parse");
        for (name, source) in TEMPLATES {
            let keys = i18n::keys_in_template(source);
            assert!(!keys.is_empty(), "{name} has no translated text");
            for key in keys {
                assert!(i18n::is_key(key), "{name}: {key} has no text");
            }
            for lang in admit_domain::locale::EMAIL_LANGUAGES {
                let ctx = context! {
                    lang, csrf => "tok", return_to => "/", token => "t", name => "Ada",
                    min_length => 6, max_length => 18, minutes => 60, partner_name => "Acme",
                };
                let html = pages.render(name, &ctx).expect(name);
                assert!(
                    html.contains(&format!("<html lang=\"{lang}\">")),
                    "{name} {lang}"
                );
            }
        }
        // The keys the handlers pass to the error pages and forms.
        for key in [
            "error-form-title",
            "error-form-message",
            "error-csrf-title",
            "error-csrf-message",
            "error-unavailable-title",
            "error-unavailable-message",
            "error-link-title",
            "error-set-link-message",
            "error-reset-link-message",
            "login-missing",
            "login-wrong",
            "login-too-many",
            "signup-email-invalid",
            "signup-email-taken",
            "signup-name-long",
            "password-length",
            "password-control",
            "password-common",
            "password-mismatch",
            "forgot-invalid",
        ] {
            assert!(i18n::is_key(key), "{key}");
        }
    }
}

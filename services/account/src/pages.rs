//! The account service's pages: sign in, create an account, the signed-in home, and
//! sign out. They create and end the login session that the authorize page reads
//! (see [`admit_runtime::web`]). They work without JavaScript.

use crate::limit::Limit;
use crate::{register, AccountState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::signup::SubmittedContact;
use admit_domain::{AccountType, Contact, ContactKind, Email, NewAccount, Username};
use admit_runtime::web::{self as pages, Csrf};
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
    return_to: String,
}

fn return_to<'a>(state: &'a AccountState, wanted: &'a str) -> &'a str {
    pages::safe_return_to(wanted, &[state.issuer.as_str()], "/")
}

fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

pub(crate) fn bad_form(state: &AccountState) -> HttpResponse {
    state.pages.error(
        StatusCode::BAD_REQUEST,
        "This form could not be read",
        "Go back, reload the page and try again.",
    )
}

pub(crate) fn csrf_failed(state: &AccountState) -> HttpResponse {
    state.pages.error(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "For your safety the form was not accepted. Go back, reload the page and try again.",
    )
}

pub(crate) fn unavailable(state: &AccountState, e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "page: a dependency failed");
    state.pages.error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Something went wrong",
        "The service is unavailable for a moment. Try again shortly.",
    )
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
        Err(e) => return unavailable(&state, e),
    }
    login_form(&req, &state, StatusCode::OK, &target, "", None)
}

fn login_form(
    req: &HttpRequest,
    state: &AccountState,
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

pub async fn login(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Some(f) = form::<LoginForm>(&body) else {
        return bad_form(&state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return csrf_failed(&state);
    }
    let target = return_to(&state, &f.return_to).to_owned();
    let login = f.login.trim().to_owned();
    if login.is_empty() || f.password.is_empty() {
        return login_form(
            &req,
            &state,
            StatusCode::BAD_REQUEST,
            &target,
            &login,
            Some("Enter your email or username and your password."),
        );
    }
    let address = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let account_key = format!("account:{}", login.to_lowercase());
    let address_key = format!("address:{address}");
    let limits = [
        (account_key.as_str(), state.login_limits.0),
        (address_key.as_str(), state.login_limits.1),
    ];
    for (key, limit) in limits {
        if let Some(wait) = state.limiter.blocked(key, limit).await {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            let message = format!(
                "Too many failed attempts. Try again in {minutes} minute{}, or reset your password.",
                if minutes == 1 { "" } else { "s" }
            );
            let mut res = login_form(
                &req,
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &target,
                &login,
                Some(&message),
            );
            if let Ok(v) = wait.as_secs().to_string().parse() {
                res.headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, v);
            }
            return res;
        }
    }
    let account = match find_account(&state, &login).await {
        Ok(a) => a,
        Err(e) => return unavailable(&state, e),
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
        Err(e) => return unavailable(&state, e),
    };
    // A pending account gets the same answer whether the password was right or not
    // (the hash was still verified, so timing does not tell either), and no session.
    if pending {
        if !matches {
            for (key, limit) in limits {
                state.limiter.failed(key, limit).await;
            }
        }
        tracing::info!(reason = "pending account", "login refused");
        let csrf = Csrf::of(&req);
        let mut res = HttpResponse::build(StatusCode::FORBIDDEN);
        csrf.apply(&mut res);
        return state.pages.page(
            res,
            "login.html",
            context! {
                csrf => csrf.token, return_to => &target, login => &login, pending => true,
                error => "Confirm your address first: follow the link in the email we sent you, or enter the code we sent to your phone.",
            },
        );
    }
    let Some(account_id) = account_id.filter(|_| matches) else {
        for (key, limit) in limits {
            state.limiter.failed(key, limit).await;
        }
        tracing::info!(reason = "wrong credentials", "login failed");
        return login_form(
            &req,
            &state,
            StatusCode::UNAUTHORIZED,
            &target,
            &login,
            Some("The email, username or password is not right."),
        );
    };
    start_session(&state, &account_id, &target).await
}

async fn start_session(state: &AccountState, account_id: &str, target: &str) -> HttpResponse {
    let (cookie, row) = pages::new_session(account_id, state.session_ttl_secs);
    if let Err(e) = state
        .db
        .write(move |c| grants::insert_session(c, &row))
        .await
    {
        return unavailable(state, e);
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
    signup_form(&req, &state, StatusCode::OK, &target, "", "", None)
}

fn signup_form(
    req: &HttpRequest,
    state: &AccountState,
    status: StatusCode,
    return_to: &str,
    email: &str,
    full_name: &str,
    error: Option<&str>,
) -> HttpResponse {
    let csrf = Csrf::of(req);
    let mut res = HttpResponse::build(status);
    csrf.apply(&mut res);
    let password_hint = format!(
        "At least {} characters; common passwords are refused.",
        state.policy.min_length
    );
    state.pages.page(
        res,
        "signup.html",
        context! { csrf => csrf.token, return_to, email, full_name, error, password_hint },
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
        return bad_form(&state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return csrf_failed(&state);
    }
    let target = return_to(&state, &f.return_to).to_owned();
    let again = |status: StatusCode, message: &str| {
        signup_form(
            &req,
            &state,
            status,
            &target,
            &f.email,
            &f.full_name,
            Some(message),
        )
    };
    let new = match new_account(&state, &f) {
        Ok(new) => new,
        Err(message) => return again(StatusCode::BAD_REQUEST, &message),
    };
    match register(&state, &new).await {
        Ok((account_id, _)) => start_session(&state, &account_id, &target).await,
        Err(crate::error::ApiError::ContactAlreadyUsed { .. }) => again(
            StatusCode::CONFLICT,
            "This email already has an account. Sign in instead.",
        ),
        Err(crate::error::ApiError::InvalidArgument { message, .. }) => {
            again(StatusCode::BAD_REQUEST, &message)
        }
        Err(e) => unavailable(&state, e),
    }
}

fn new_account(state: &AccountState, f: &SignupForm) -> Result<NewAccount, String> {
    let email = f.email.trim();
    let email = Email::parse(email).map_err(|e| format!("Email: {}", e.message))?;
    let full_name = f.full_name.trim();
    if full_name.chars().count() > 1024 {
        return Err("Full name: at most 1024 characters.".into());
    }
    let password = state
        .policy
        .check(&f.password)
        .map_err(|e| format!("Password: {}", e.message))?;
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
        Err(e) => return unavailable(&state, e),
    };
    let id = session.account_id.clone();
    let name = match state
        .db
        .run(move |c| {
            let a = accounts::find(c, &id)?;
            Ok(match a.full_name.or(a.username) {
                Some(n) => Some(n),
                None => accounts::primary_email(c, &id)?.map(|(e, _)| e),
            })
        })
        .await
    {
        Ok(n) => n,
        Err(e) => return unavailable(&state, e),
    };
    let csrf = Csrf::of(&req);
    let mut res = HttpResponse::Ok();
    csrf.apply(&mut res);
    state
        .pages
        .page(res, "home.html", context! { csrf => csrf.token, name })
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
        return bad_form(&state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return csrf_failed(&state);
    }
    if let Some(digest) = pages::session_digest(&req) {
        let ended = state
            .db
            .write(move |c| grants::end_session(c, &digest, admit_store::now()))
            .await;
        if let Err(e) = ended {
            return unavailable(&state, e);
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
}

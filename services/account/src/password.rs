//! The pages that choose a password from a link in an email: set password (SPEC §6
//! step 2, and the link of SPEC §4's email) and reset password (SPEC §7, the link of
//! "forgot your password?", see [`crate::reset`]). One machinery, two purposes.
//!
//! `GET /password/set?token=…` and `GET /password/reset?token=…` show the form and do
//! not use the token: mail scanners open links. `POST` checks the password against
//! the policy of §3, then in one transaction uses the token (single use, a
//! conditional update, and only at the page of its purpose), sets the password, marks
//! the address the link was sent to confirmed, retires the account's other links and
//! ends every other way in: every session, consent and grant (their refresh tokens),
//! but the grant a partner got with the account it created (set password only).
//!
//! After that, set password enables the account, starts the login session and
//! redirects to the partner's landing page. Reset does not sign the user in (OWASP
//! Forgot Password cheat sheet: the user signs in through the usual page, so a reset
//! link is never a second way to get a session); it shows that the password was
//! changed, with a link to the sign-in page.
//!
//! The pages send `Referrer-Policy: no-referrer`, so the token in their address never
//! leaves in a `Referer`. They are in the account's language (its locale), else the
//! browser's.

use crate::{hasher, AccountState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::secret;
use admit_runtime::i18n::text;
use admit_runtime::web::{self as pages, Csrf, Lang};
use admit_store::registrations::{self, purpose, PasswordTokenRow};
use admit_store::{accounts, grants, partners, StoreError};
use minijinja::context;
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The token of the link in the email.
    #[serde(default)]
    token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordForm {
    /// The value of the `__Host-admit_csrf` cookie.
    #[serde(default)]
    csrf_token: String,
    /// The token of the link in the email.
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    SetPassword,
    Reset,
}

impl Link {
    fn purpose(self) -> &'static str {
        match self {
            Link::SetPassword => purpose::SET_PASSWORD,
            Link::Reset => purpose::RESET,
        }
    }

    fn template(self) -> &'static str {
        match self {
            Link::SetPassword => "set_password.html",
            Link::Reset => "reset_password.html",
        }
    }
}

/// 410: the link is unknown, used, expired, replaced or for another page.
fn link_gone(req: &HttpRequest, state: &AccountState, link: Link) -> HttpResponse {
    let message = match link {
        Link::SetPassword => "error-set-link-message",
        Link::Reset => "error-reset-link-message",
    };
    state.pages.error(
        Lang::choose(req, None),
        StatusCode::GONE,
        "error-link-title",
        message,
    )
}

/// The partner that sent the link, for the page's wording and the redirect.
fn partner_of(
    c: &mut admit_store::AnyConnection,
    row: &PasswordTokenRow,
) -> Result<Option<partners::PartnerRow>, StoreError> {
    match &row.partner_id {
        Some(id) => partners::find_partner(c, id),
        None => Ok(None),
    }
}

/// The live link of `digest` for `link`, with its partner's name and the account's
/// locale.
type Found = Option<(Option<String>, Option<String>)>;

async fn find_link(state: &AccountState, token: &str, link: Link) -> Result<Found, StoreError> {
    let digest = secret::digest(token);
    state
        .db
        .run(move |c| {
            let now = admit_store::now();
            let Some(row) = registrations::live_password_token(c, &digest, link.purpose(), now)?
            else {
                return Ok(None);
            };
            let locale = accounts::find(c, &row.account_id)?.locale;
            Ok(Some((partner_of(c, &row)?.map(|p| p.name), locale)))
        })
        .await
}

#[allow(clippy::too_many_arguments)]
fn form_page(
    req: &HttpRequest,
    state: &AccountState,
    link: Link,
    lang: Lang,
    status: StatusCode,
    token: &str,
    partner_name: Option<&str>,
    error: Option<&str>,
) -> HttpResponse {
    let csrf = Csrf::of(req);
    let mut res = HttpResponse::build(status);
    csrf.apply(&mut res);
    state.pages.page(
        res,
        lang,
        link.template(),
        context! {
            csrf => csrf.token, token, partner_name, error,
            min_length => state.policy.min_length,
            max_length => state.policy.max_length,
        },
    )
}

async fn link_page(
    req: &HttpRequest,
    state: &AccountState,
    token: &str,
    link: Link,
) -> HttpResponse {
    match find_link(state, token, link).await {
        Ok(Some((partner, locale))) => form_page(
            req,
            state,
            link,
            Lang::choose(req, locale.as_deref()),
            StatusCode::OK,
            token,
            partner.as_deref(),
            None,
        ),
        Ok(None) => link_gone(req, state, link),
        Err(e) => crate::pages::unavailable(req, state, e),
    }
}

pub async fn set_password_page(
    req: HttpRequest,
    query: web::Query<TokenQuery>,
    state: web::Data<AccountState>,
) -> HttpResponse {
    link_page(&req, &state, &query.token, Link::SetPassword).await
}

/// The page of a password-reset link: the form, in the account's language. Does not
/// use the link.
#[utoipa::path(
    get,
    path = "/password/reset",
    tag = "pages",
    params(TokenQuery),
    responses(
        (status = 200, description = "The form to choose a new password (HTML); the link is not used", content_type = "text/html"),
        (status = 410, description = "The link is unknown, used, expired or replaced by a newer one (HTML)", content_type = "text/html"),
        (status = 503, description = "A dependency is unavailable (HTML)", content_type = "text/html"),
    )
)]
pub async fn reset_password_page(
    req: HttpRequest,
    query: web::Query<TokenQuery>,
    state: web::Data<AccountState>,
) -> HttpResponse {
    link_page(&req, &state, &query.token, Link::Reset).await
}

enum Outcome {
    Done {
        account_id: String,
        landing: Option<String>,
        ended: (usize, usize),
    },
    Gone,
}

/// A new password for the account of the link `row`, in the caller's transaction: the
/// hash, the address confirmed, the other links retired, and every session, consent
/// and grant ended but the grant the link keeps. Returns the sessions ended and the
/// grants revoked.
fn change_password(
    c: &mut admit_store::AnyConnection,
    row: &PasswordTokenRow,
    hash: &str,
    keep_grant: Option<&str>,
    now: chrono::NaiveDateTime,
) -> Result<(usize, usize), StoreError> {
    registrations::set_password(c, &row.account_id, hash)?;
    if let Some(address) = &row.sent_to {
        registrations::confirm_email(c, &row.account_id, address, now)?;
    }
    registrations::retire_password_tokens(c, &row.account_id, now)?;
    grants::after_password_change(c, &row.account_id, keep_grant, now)
}

/// The audit events of a password set or reset, in its transaction: the change, and
/// what it ended (sessions, grants) when it ended anything.
fn audit_change(
    c: &mut admit_store::AnyConnection,
    origin: &admit_store::audit::Origin,
    link: Link,
    row: &PasswordTokenRow,
    (sessions, grants): (usize, usize),
) -> Result<(), StoreError> {
    use admit_store::audit;
    use serde_json::json;
    let origin = origin.acting_as("account", &row.account_id);
    let (action, reason) = match link {
        Link::SetPassword => ("password.set", "password_set"),
        Link::Reset => ("password.reset", "password_reset"),
    };
    audit::insert(
        c,
        &origin
            .event(action, "account", &row.account_id)
            .detail(json!({"sessions_ended": sessions, "grants_revoked": grants, "partner_id": row.partner_id})),
    )?;
    if sessions > 0 {
        audit::insert(
            c,
            &origin
                .event("session.end", "account", &row.account_id)
                .detail(json!({"reason": reason, "sessions": sessions})),
        )?;
    }
    if grants > 0 {
        audit::insert(
            c,
            &origin
                .event("grant.revoke", "account", &row.account_id)
                .detail(json!({"reason": reason, "grants": grants})),
        )?;
    }
    Ok(())
}

async fn choose_password(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
    link: Link,
) -> HttpResponse {
    let Ok(f) = serde_urlencoded::from_bytes::<PasswordForm>(&body) else {
        return crate::pages::bad_form(&req, &state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return crate::pages::csrf_failed(&req, &state);
    }
    // No hash for a link that cannot be used: the hash pool is not anybody's to spend.
    let locale = match find_link(&state, &f.token, link).await {
        Ok(Some((_, locale))) => locale,
        Ok(None) => return link_gone(&req, &state, link),
        Err(e) => return crate::pages::unavailable(&req, &state, e),
    };
    let lang = Lang::choose(&req, locale.as_deref());
    let again = |message: &str| {
        form_page(
            &req,
            &state,
            link,
            lang,
            StatusCode::BAD_REQUEST,
            &f.token,
            None,
            Some(message),
        )
    };
    let password = match crate::pages::checked_password(&state, lang, &f.password) {
        Ok(p) => p,
        Err(message) => return again(&message),
    };
    if f.password != f.password_confirm {
        return again(&text(lang, "password-mismatch", &[]));
    }
    let digest = secret::digest(&f.token);
    let (cookie, session) = pages::new_session("", state.session_ttl_secs);
    let db = state.db.clone();
    // The link is the credential: the events are the account's (the token never is
    // in them).
    let origin = admit_runtime::audit::origin(&req, "account", "");
    let refused = origin.acting_as("anonymous", "");
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
                let Some(row) =
                    registrations::spend_password_token(c, &digest, link.purpose(), now)?
                else {
                    return Ok(Outcome::Gone);
                };
                // A reset ends every way in; setting a password from a partner's
                // link keeps the grant that partner got with the account (SPEC §4).
                let keep = match link {
                    Link::SetPassword => row.grant_id.as_deref(),
                    Link::Reset => None,
                };
                let ended = change_password(c, &row, &hash, keep, now)?;
                audit_change(c, &origin, link, &row, ended)?;
                let landing = match link {
                    Link::SetPassword => {
                        let mut session = session;
                        session.account_id = row.account_id.clone();
                        grants::insert_session(c, &session)?;
                        partner_of(c, &row)?.and_then(|p| p.landing_url)
                    }
                    Link::Reset => None,
                };
                Ok(Outcome::Done {
                    landing,
                    account_id: row.account_id,
                    ended,
                })
            })
        })
        .await;
    if let Ok(Ok(Outcome::Done {
        ended: (_, revoked),
        ..
    })) = &outcome
    {
        if *revoked > 0 {
            // The grants ended on every oauth replica before the user hears of it.
            state.revocations.announce().await;
        }
    }
    match outcome {
        Ok(Ok(Outcome::Done {
            account_id,
            landing,
            ended: (sessions, grants),
        })) => match link {
            Link::SetPassword => {
                tracing::info!(account_id, sessions, grants, "password set; signed in");
                pages::redirect(landing.as_deref().unwrap_or("/"))
                    .cookie(cookie)
                    .finish()
            }
            Link::Reset => {
                tracing::info!(account_id, sessions, grants, "password reset");
                let mut res = HttpResponse::Ok();
                // This browser's session, if it had one, ended with the others.
                res.cookie(pages::clear_session());
                state.pages.page(res, lang, "reset_done.html", context! {})
            }
        },
        Ok(Ok(Outcome::Gone)) => {
            let action = match link {
                Link::SetPassword => "password.set",
                Link::Reset => "password.reset",
            };
            let event = refused
                .event(action, "account", "")
                .outcome(admit_store::audit::FAILURE)
                .detail(serde_json::json!({"reason": "link_unusable"}));
            admit_runtime::audit::record(&state.db, event).await;
            link_gone(&req, &state, link)
        }
        Ok(Err(e)) => crate::pages::unavailable(&req, &state, e),
        Err(e) => crate::pages::unavailable(&req, &state, e),
    }
}

pub async fn set_password(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    choose_password(req, body, state, Link::SetPassword).await
}

/// The reset form's answer: a new password for the account of the link.
#[utoipa::path(
    post,
    path = "/password/reset",
    tag = "pages",
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The password was changed; every session and refresh token of the account was ended (HTML, with a link to sign in)", content_type = "text/html"),
        (status = 400, description = "The password breaks the policy, or the two differ: the form again, saying why (HTML)", content_type = "text/html"),
        (status = 403, description = "The CSRF token does not match its cookie (HTML)", content_type = "text/html"),
        (status = 410, description = "The link is unknown, used, expired or replaced by a newer one (HTML)", content_type = "text/html"),
        (status = 503, description = "A dependency is unavailable (HTML)", content_type = "text/html"),
    )
)]
pub async fn reset_password(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    choose_password(req, body, state, Link::Reset).await
}

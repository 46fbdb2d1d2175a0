//! Pending accounts (SPEC §3 `is_enabled=false`) and the confirmation of their
//! contacts: an email link, or a code sent by text message to a phone.
//!
//! - A pending account gets, in the transaction that creates it, a "confirm your
//!   address" email for its primary email and a text message with a 6-digit code for
//!   its primary phone. The link's token and the code are derived from the message id
//!   under `internal.link_key` (see [`admit_domain::secret`]); the database keeps
//!   only a digest and the queue only the message id.
//! - `GET /confirm?token=…` shows a button and changes nothing (mail scanners open
//!   links); `POST /confirm` uses the link (single use, expiring) and confirms.
//! - A code is entered on `GET/POST /confirm/phone` or sent to
//!   `POST /account/confirmation`. Every try counts; after [`MAX_CODE_ATTEMPTS`]
//!   the code is locked, even for the right one, but the account is not: a new code
//!   (`POST /account/confirmation/code`, rate limited, one answer whether or not
//!   the phone is waiting for one) replaces it.
//! - Confirming marks the contact verified and the account active, in one
//!   transaction; confirming again changes nothing.

use crate::error::ApiError;
use crate::limit::Limit;
use crate::AccountState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::secret::{self, CODE_DIGITS, CONFIRM_EMAIL, CONFIRM_PHONE};
use admit_domain::{Contact, Email, Envelope, Locale, NewAccount, Notification, Phone};
use admit_runtime::i18n::{text, Lang};
use admit_runtime::web::{self as pages, Csrf};
use admit_store::confirmations::{self, CodeCheck, ConfirmationRow};
use admit_store::{outbox, StoreError};
use chrono::NaiveDateTime;
use minijinja::context;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// Tries a code answers (wrong ones and the right one together) before it is locked.
pub const MAX_CODE_ATTEMPTS: u32 = 5;

/// New codes one phone number may ask for, and one client address, per window.
const CODE_REQUESTS: Limit = Limit {
    max: 3,
    window: Duration::from_secs(900),
};
const CODE_REQUESTS_PER_ADDRESS: Limit = Limit {
    max: 30,
    window: Duration::from_secs(900),
};

/// What a new account's confirmations need from the service's state.
#[derive(Clone)]
pub(crate) struct Keys {
    pub link_key: Vec<u8>,
    pub link_ttl_secs: i64,
    pub code_ttl_secs: i64,
}

impl Keys {
    pub(crate) fn of(state: &AccountState) -> Self {
        Self {
            link_key: state.link_key.clone(),
            link_ttl_secs: state.confirm_link_ttl_secs,
            code_ttl_secs: state.confirm_code_ttl_secs,
        }
    }
}

fn language(locale: Option<&Locale>) -> String {
    locale
        .and_then(|l| l.language_639_1())
        .unwrap_or("en")
        .to_owned()
}

/// The text message with a new code for `phone`, and its stored half.
fn code_message(
    keys: &Keys,
    account_id: &str,
    phone: &str,
    language: String,
    now: NaiveDateTime,
) -> (Envelope, ConfirmationRow) {
    let envelope = Envelope::new(Notification::ConfirmPhone {
        to: phone.to_owned(),
        account_id: account_id.to_owned(),
        language,
    });
    let id = envelope.id.to_string();
    let code = secret::numeric_code(&keys.link_key, CONFIRM_PHONE, &id);
    let row = ConfirmationRow {
        digest: secret::code_digest(&keys.link_key, &id, &code),
        id,
        account_id: account_id.to_owned(),
        kind: "PHONE".into(),
        contact: phone.to_owned(),
        attempts: 0,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(keys.code_ttl_secs.max(60)),
        used_at: None,
    };
    (envelope, row)
}

/// The "confirm your address" email to `email`, and its stored half.
fn email_message(
    keys: &Keys,
    account_id: &str,
    email: &Email,
    full_name: Option<String>,
    username: Option<String>,
    language: String,
    now: NaiveDateTime,
) -> (Envelope, ConfirmationRow) {
    let envelope = Envelope::new(Notification::ConfirmEmail {
        to: email.as_str().to_owned(),
        account_id: account_id.to_owned(),
        full_name,
        username,
        language,
    });
    let id = envelope.id.to_string();
    let token = secret::link_token(&keys.link_key, CONFIRM_EMAIL, &id);
    let row = ConfirmationRow {
        digest: secret::digest(&token),
        id,
        account_id: account_id.to_owned(),
        kind: "EMAIL".into(),
        contact: email.normalized(),
        attempts: 0,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(keys.link_ttl_secs.max(60)),
        used_at: None,
    };
    (envelope, row)
}

/// The messages of a new pending account and their stored halves: a "confirm your
/// address" email to the primary email, a code to the primary phone. (It replaces
/// the welcome email, which it includes.)
pub(crate) fn pending_messages(
    keys: &Keys,
    new: &NewAccount,
    account_id: &str,
    now: NaiveDateTime,
) -> Vec<(Envelope, ConfirmationRow)> {
    let mut out = Vec::new();
    for c in new.contacts.iter().filter(|c| c.is_primary()) {
        match c {
            Contact::Email { email, .. } => out.push(email_message(
                keys,
                account_id,
                email,
                new.full_name.clone(),
                new.username.as_ref().map(|u| u.as_str().to_owned()),
                language(new.locale.as_ref()),
                now,
            )),
            Contact::Phone { phone, .. } => out.push(code_message(
                keys,
                account_id,
                phone.as_str(),
                language(new.locale.as_ref()),
                now,
            )),
        }
    }
    out
}

/// Writes the messages of [`pending_messages`] (inside the caller's transaction).
pub(crate) fn write_messages(
    conn: &mut admit_store::AnyConnection,
    messages: &[(Envelope, ConfirmationRow)],
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    for (envelope, row) in messages {
        confirmations::insert(conn, std::slice::from_ref(row), now)?;
        outbox::enqueue(conn, outbox::MAIL_TOPIC, envelope)?;
    }
    Ok(())
}

// --- the email link ---------------------------------------------------------------

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
}

fn link_gone(req: &HttpRequest, state: &AccountState) -> HttpResponse {
    state.pages.error(
        Lang::choose(req, None),
        StatusCode::GONE,
        "error-link-title",
        "confirm-link-gone-message",
    )
}

fn confirmed_page(req: &HttpRequest, state: &AccountState, phone: bool) -> HttpResponse {
    state.pages.page(
        HttpResponse::Ok(),
        Lang::choose(req, None),
        "confirmed.html",
        context! { phone },
    )
}

/// `GET /confirm?token=…`: the button that confirms; the link is not used yet.
#[utoipa::path(
    get,
    path = "/confirm",
    tag = "pages",
    params(("token" = Option<String>, Query, description = "The token of the \"confirm your address\" email's link; without one the page is the 410 of an unknown link.")),
    responses(
        (status = 200, description = "A page with the button that confirms (a CSRF form posting to /confirm); nothing is used yet", content_type = "text/html"),
        (status = 410, description = "The link was used, or expired, or is unknown", content_type = "text/html"),
    )
)]
pub async fn confirm_page(
    req: HttpRequest,
    query: web::Query<TokenQuery>,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let digest = secret::digest(&query.token);
    let found = state
        .db
        .run(move |c| confirmations::live_link(c, &digest, admit_store::now()))
        .await;
    match found {
        Ok(Some(row)) => {
            let csrf = Csrf::of(&req);
            let mut res = HttpResponse::Ok();
            csrf.apply(&mut res);
            state.pages.page(
                res,
                Lang::choose(&req, None),
                "confirm.html",
                context! { csrf => csrf.token, token => &query.token, address => row.contact },
            )
        }
        Ok(None) => link_gone(&req, &state),
        Err(e) => crate::pages::unavailable(&req, &state, e),
    }
}

/// `POST /confirm`: uses the link and confirms the address.
#[utoipa::path(
    post,
    path = "/confirm",
    tag = "pages",
    request_body(content = ConfirmFormDoc, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The address is confirmed and the account enabled; the page links to sign in", content_type = "text/html"),
        (status = 400, description = "The form could not be read", content_type = "text/html"),
        (status = 403, description = "The CSRF token does not match its cookie", content_type = "text/html"),
        (status = 410, description = "The link was used, or expired, or is unknown", content_type = "text/html"),
    )
)]
pub async fn confirm(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Ok(f) = serde_urlencoded::from_bytes::<ConfirmForm>(&body) else {
        return crate::pages::bad_form(&req, &state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return crate::pages::csrf_failed(&req, &state);
    }
    let digest = secret::digest(&f.token);
    let spent = state
        .db
        .write(move |c| confirmations::spend_link(c, &digest, admit_store::now()))
        .await;
    match spent {
        Ok(Some(row)) => {
            tracing::info!(account_id = %row.account_id, "email confirmed");
            confirmed_page(&req, &state, false)
        }
        Ok(None) => link_gone(&req, &state),
        Err(e) => crate::pages::unavailable(&req, &state, e),
    }
}

// --- a new link ------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

/// The form of `POST /confirm/email`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmailFormDoc {
    pub csrf_token: String,
    /// The address of a pending account.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

fn email_form(
    req: &HttpRequest,
    state: &AccountState,
    status: StatusCode,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> HttpResponse {
    let csrf = Csrf::of(req);
    let mut res = HttpResponse::build(status);
    csrf.apply(&mut res);
    state.pages.page(
        res,
        Lang::choose(req, None),
        "confirm_email.html",
        context! { csrf => csrf.token, email, error, notice },
    )
}

/// `GET /confirm/email`: asks for a new "confirm your address" email.
#[utoipa::path(
    get,
    path = "/confirm/email",
    tag = "pages",
    responses(
        (status = 200, description = "The form that asks for a new link (posting to /confirm/email)", content_type = "text/html"),
    )
)]
pub async fn email_page(req: HttpRequest, state: web::Data<AccountState>) -> HttpResponse {
    email_form(&req, &state, StatusCode::OK, "", None, None)
}

/// `POST /confirm/email`: a new link for a pending account's unconfirmed address; the
/// same page whether or not there is one.
#[utoipa::path(
    post,
    path = "/confirm/email",
    tag = "pages",
    request_body(content = EmailFormDoc, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The form again, saying a link is on its way if the address waits for one (the same page either way)", content_type = "text/html"),
        (status = 400, description = "The address is malformed", content_type = "text/html"),
        (status = 403, description = "The CSRF token does not match its cookie", content_type = "text/html"),
        (status = 429, description = "Too many links asked for this address or from this client address", content_type = "text/html"),
    )
)]
pub async fn request_link_page(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Ok(f) = serde_urlencoded::from_bytes::<EmailForm>(&body) else {
        return crate::pages::bad_form(&req, &state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return crate::pages::csrf_failed(&req, &state);
    }
    let lang = Lang::choose(&req, None);
    match request_link(&req, &state, &f.email).await {
        Ok(()) => {
            let notice = text(lang, "confirm-link-sent", &[]);
            email_form(&req, &state, StatusCode::OK, &f.email, None, Some(&notice))
        }
        Err(Refusal {
            api: ApiError::Unavailable(e) | ApiError::Internal(e),
            ..
        }) => crate::pages::unavailable(&req, &state, e),
        Err(r) => {
            let status = actix_web::ResponseError::status_code(&r.api);
            let message = r.text(lang);
            email_form(&req, &state, status, &f.email, Some(&message), None)
        }
    }
}

async fn request_link(req: &HttpRequest, state: &AccountState, email: &str) -> Result<(), Refusal> {
    let email = Email::parse(email.trim()).map_err(|e| {
        Refusal::new(
            ApiError::invalid("email", e.message),
            "confirm-email-invalid",
        )
    })?;
    count_request(
        req,
        state,
        format!("link-request:{}", email.normalized()),
        "email",
        "links",
        "confirm-link-too-many",
    )
    .await?;
    let keys = Keys::of(state);
    let sent = state
        .db
        .write(move |c| {
            let Some(account) = confirmations::pending_contact(c, "EMAIL", &email.normalized())?
            else {
                return Ok(false);
            };
            let locale = account
                .locale
                .as_deref()
                .and_then(|l| Locale::parse(l).ok());
            let now = admit_store::now();
            let message = email_message(
                &keys,
                &account.id,
                &email,
                account.full_name.clone(),
                account.username.clone(),
                language(locale.as_ref()),
                now,
            );
            write_messages(c, &[message], now)?;
            Ok(true)
        })
        .await?;
    if sent {
        state.outbox_wake.notify_one();
        tracing::info!("a new confirmation link was sent");
    }
    Ok(())
}

// --- the code of a text message -----------------------------------------------------

/// `POST /account/confirmation`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "+33612345678", "code": "123456"}))]
pub struct ConfirmationRequest {
    /// The phone number the code was sent to, E.164 (separators ` .-()` are accepted too, and dropped).
    #[schema(max_length = 64, pattern = "^\\+[1-9][0-9]{7,14}$")]
    pub phone: String,
    /// The 6 digits of the text message.
    #[schema(min_length = 6, max_length = 6, pattern = "^[0-9]{6}$")]
    pub code: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfirmationResponse {
    pub account_id: String,
    /// The kind of contact that is now confirmed: `PHONE`.
    pub confirmed: String,
}

/// `POST /account/confirmation/code`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "+33612345678"}))]
pub struct CodeRequest {
    /// The phone number of a pending account, E.164 (separators ` .-()` are accepted too, and dropped).
    #[schema(max_length = 64, pattern = "^\\+[1-9][0-9]{7,14}$")]
    pub phone: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CodeResponse {
    /// Always `accepted`: the answer does not tell whether the number has an account.
    pub status: String,
    pub message: String,
}

/// A refused form or request of the confirmations: the API's error (in English), and
/// what a page says instead (a key of `pages.ftl`, with a number argument).
struct Refusal {
    api: ApiError,
    key: &'static str,
    arg: Option<(&'static str, u64)>,
}

impl Refusal {
    fn new(api: ApiError, key: &'static str) -> Self {
        Self {
            api,
            key,
            arg: None,
        }
    }

    fn with(self, name: &'static str, n: impl Into<u64>) -> Self {
        Self {
            arg: Some((name, n.into())),
            ..self
        }
    }

    /// What the page says, in `lang`.
    fn text(&self, lang: Lang) -> String {
        let args: Vec<_> = self
            .arg
            .iter()
            .map(|&(name, n)| (name, i64::try_from(n).unwrap_or(i64::MAX).into()))
            .collect();
        text(lang, self.key, &args)
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::new(e.into(), "error-unavailable-message")
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        r.api
    }
}

fn phone_number(phone: &str) -> Result<Phone, Refusal> {
    Phone::parse(phone.trim()).map_err(|e| Refusal::new(e.into(), "confirm-phone-invalid"))
}

/// Checks `code` for `phone`, and confirms the phone when it is right.
async fn check_code(state: &AccountState, phone: &str, code: &str) -> Result<String, Refusal> {
    let phone = phone_number(phone)?;
    let code = code.trim().to_owned();
    if code.len() != CODE_DIGITS || !code.chars().all(|c| c.is_ascii_digit()) {
        return Err(Refusal::new(
            ApiError::invalid(
                "code",
                format!("a code is the {CODE_DIGITS} digits of the text message"),
            ),
            "confirm-code-format",
        )
        .with("max", CODE_DIGITS as u64));
    }
    let key = state.link_key.clone();
    let number = phone.as_str().to_owned();
    let checked = state
        .db
        .write(move |c| {
            confirmations::try_code(c, &number, admit_store::now(), MAX_CODE_ATTEMPTS, |row| {
                secret::verify_code(&key, &row.id, &code, &row.digest)
            })
        })
        .await?;
    match checked {
        CodeCheck::Confirmed(account_id) => {
            tracing::info!(account_id, "phone confirmed");
            Ok(account_id)
        }
        CodeCheck::Wrong { attempts_left: 0 } => Err(Refusal::new(
            ApiError::TooManyAttempts {
                field: "code".into(),
                message: "this code is not right, and it is now locked: ask for a new code".into(),
            },
            "confirm-code-locked-now",
        )),
        CodeCheck::Wrong { attempts_left } => Err(Refusal::new(
            ApiError::invalid(
                "code",
                format!(
                    "this code is not right; {attempts_left} attempt{} left",
                    if attempts_left == 1 { "" } else { "s" }
                ),
            ),
            "confirm-code-wrong",
        )
        .with("param", attempts_left)),
        CodeCheck::Locked => Err(Refusal::new(
            ApiError::TooManyAttempts {
                field: "code".into(),
                message:
                    "this code had too many wrong attempts and no longer works: ask for a new code"
                        .into(),
            },
            "confirm-code-locked",
        )),
        CodeCheck::Gone => Err(Refusal::new(
            ApiError::Gone {
                field: "code".into(),
                message: "no code is waiting for this phone number: it was used, replaced or expired; ask for a new code".into(),
            },
            "confirm-code-gone",
        )),
    }
}

/// Counts a request for a new link or code against the limits per contact
/// (`contact_key`) and per client address; refused past either, naming `field`.
async fn count_request(
    req: &HttpRequest,
    state: &AccountState,
    contact_key: String,
    field: &str,
    what: &str,
    page_key: &'static str,
) -> Result<(), Refusal> {
    let address = admit_runtime::client::client_address(req);
    let address_key = format!("code-request-address:{address}");
    for (key, limit) in [
        (contact_key.as_str(), CODE_REQUESTS),
        (address_key.as_str(), CODE_REQUESTS_PER_ADDRESS),
    ] {
        if let Some(wait) = state.limiter.blocked(key, limit).await {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            return Err(Refusal::new(
                ApiError::TooManyAttempts {
                    field: field.into(),
                    message: format!(
                        "too many {what} were asked for; try again in {minutes} minutes"
                    ),
                },
                page_key,
            )
            .with("minutes", minutes));
        }
    }
    state.limiter.failed(&contact_key, CODE_REQUESTS).await;
    state
        .limiter
        .failed(&address_key, CODE_REQUESTS_PER_ADDRESS)
        .await;
    Ok(())
}

/// Sends a new code to `phone` if it is the unconfirmed phone of a pending account;
/// the same outcome for the caller either way, but for the rate limit.
async fn request_code(req: &HttpRequest, state: &AccountState, phone: &str) -> Result<(), Refusal> {
    let phone = phone_number(phone)?;
    count_request(
        req,
        state,
        format!("code-request:{}", phone.as_str()),
        "phone",
        "codes",
        "confirm-code-too-many",
    )
    .await?;
    let keys = Keys::of(state);
    let number = phone.as_str().to_owned();
    let sent = state
        .db
        .write(move |c| {
            let Some(account) = confirmations::pending_phone(c, &number)? else {
                return Ok(false);
            };
            let locale = account
                .locale
                .as_deref()
                .and_then(|l| Locale::parse(l).ok());
            let now = admit_store::now();
            let message = code_message(&keys, &account.id, &number, language(locale.as_ref()), now);
            write_messages(c, &[message], now)?;
            Ok(true)
        })
        .await?;
    if sent {
        state.outbox_wake.notify_one();
        tracing::info!("a new confirmation code was sent");
    }
    Ok(())
}

fn read_json(
    body: &[u8],
    fields: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(ApiError::invalid("body", "the body is a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(ApiError::invalid(unknown.clone(), "unknown field"));
    }
    Ok(map)
}

fn string_field(
    map: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<String, ApiError> {
    match map.get(name) {
        Some(serde_json::Value::String(s)) if s.len() <= 64 => Ok(s.clone()),
        Some(serde_json::Value::String(_)) => Err(ApiError::invalid(name, "at most 64 characters")),
        Some(_) => Err(ApiError::invalid(name, "expected a string")),
        None => Err(ApiError::invalid(name, "required")),
    }
}

/// Confirms a pending account's phone with the code of its text message.
#[utoipa::path(
    post,
    path = "/account/confirmation",
    tag = "accounts",
    request_body = ConfirmationRequest,
    responses(
        (status = 200, description = "The phone is confirmed and the account enabled", body = ConfirmationResponse),
        (status = 400, description = "A field is malformed, or the code is not right (the message says how many attempts are left); `field` names it", body = crate::api::ErrorBody),
        (status = 410, description = "No code is waiting for this phone: used, replaced or expired", body = crate::api::ErrorBody),
        (status = 429, description = "The code had 5 attempts and is locked, even for the right code: ask for a new one", body = crate::api::ErrorBody),
        (status = 503, description = "A dependency is unavailable; retry", body = crate::api::ErrorBody),
    )
)]
#[tracing::instrument(name = "confirm_phone", skip_all)]
pub async fn confirm_api(
    payload: web::Payload,
    state: web::Data<AccountState>,
) -> Result<HttpResponse, ApiError> {
    let body = crate::read_body(payload, state.max_body_bytes).await?;
    let map = read_json(&body, &["phone", "code"])?;
    let phone = string_field(&map, "phone")?;
    let code = string_field(&map, "code")?;
    let account_id = check_code(&state, &phone, &code).await?;
    Ok(HttpResponse::Ok().json(ConfirmationResponse {
        account_id,
        confirmed: "PHONE".into(),
    }))
}

/// Sends a new code to a pending account's phone; the older code stops working.
#[utoipa::path(
    post,
    path = "/account/confirmation/code",
    tag = "accounts",
    request_body = CodeRequest,
    responses(
        (status = 202, description = "Accepted; the same answer whether or not the number belongs to a pending account", body = CodeResponse),
        (status = 400, description = "The phone number is malformed; `field` names it", body = crate::api::ErrorBody),
        (status = 429, description = "Too many codes asked for this number (3 per 15 minutes) or from this address", body = crate::api::ErrorBody),
        (status = 503, description = "A dependency is unavailable; retry", body = crate::api::ErrorBody),
    )
)]
#[tracing::instrument(name = "request_code", skip_all)]
pub async fn request_code_api(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AccountState>,
) -> Result<HttpResponse, ApiError> {
    let body = crate::read_body(payload, state.max_body_bytes).await?;
    let map = read_json(&body, &["phone"])?;
    let phone = string_field(&map, "phone")?;
    request_code(&req, &state, &phone).await?;
    Ok(HttpResponse::Accepted().json(CodeResponse {
        status: "accepted".into(),
        message: ACCEPTED.into(),
    }))
}

const ACCEPTED: &str = "If this phone number belongs to an account waiting for confirmation, a new code is on its way.";

/// The form of `POST /confirm`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfirmFormDoc {
    /// The page's CSRF token (the same as its `__Host-admit_csrf` cookie).
    pub csrf_token: String,
    /// The link's token; a missing one is the 410 of an unknown link.
    pub token: Option<String>,
}

/// The form of `POST /confirm/phone`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PhoneFormDoc {
    pub csrf_token: String,
    /// E.164 (separators ` .-()` are accepted too, and dropped).
    #[schema(max_length = 64, pattern = "^\\+[1-9][0-9]{7,14}$")]
    pub phone: String,
    /// The 6 digits of the text message.
    #[schema(min_length = 6, max_length = 6, pattern = "^[0-9]{6}$")]
    pub code: String,
}

/// The form of `POST /confirm/phone/code`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CodeFormDoc {
    pub csrf_token: String,
    /// E.164 (separators ` .-()` are accepted too, and dropped).
    #[schema(max_length = 64, pattern = "^\\+[1-9][0-9]{7,14}$")]
    pub phone: String,
}

#[derive(Deserialize, Default)]
pub struct PhoneQuery {
    #[serde(default)]
    phone: String,
}

#[derive(Deserialize)]
pub struct PhoneForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    code: String,
}

fn phone_form(
    req: &HttpRequest,
    state: &AccountState,
    status: StatusCode,
    phone: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> HttpResponse {
    let csrf = Csrf::of(req);
    let mut res = HttpResponse::build(status);
    csrf.apply(&mut res);
    state.pages.page(
        res,
        Lang::choose(req, None),
        "confirm_phone.html",
        context! { csrf => csrf.token, phone, error, notice, digits => CODE_DIGITS },
    )
}

/// `GET /confirm/phone`: the form for the code of a text message.
#[utoipa::path(
    get,
    path = "/confirm/phone",
    tag = "pages",
    params(("phone" = Option<String>, Query, description = "Fills in the phone number.")),
    responses(
        (status = 200, description = "The form: phone number and code (posting to /confirm/phone), and a \"send a new code\" form (posting to /confirm/phone/code)", content_type = "text/html"),
    )
)]
pub async fn confirm_phone_page(
    req: HttpRequest,
    query: web::Query<PhoneQuery>,
    state: web::Data<AccountState>,
) -> HttpResponse {
    phone_form(&req, &state, StatusCode::OK, &query.phone, None, None)
}

/// `POST /confirm/phone`: checks the code; confirms the phone when it is right.
#[utoipa::path(
    post,
    path = "/confirm/phone",
    tag = "pages",
    request_body(content = PhoneFormDoc, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The phone is confirmed and the account enabled", content_type = "text/html"),
        (status = 400, description = "The number or the code is malformed, or the code is not right (the page says how many attempts are left)", content_type = "text/html"),
        (status = 403, description = "The CSRF token does not match its cookie", content_type = "text/html"),
        (status = 410, description = "No code is waiting for this number: used, replaced or expired", content_type = "text/html"),
        (status = 429, description = "The code had 5 attempts and is locked: ask for a new one", content_type = "text/html"),
    )
)]
pub async fn confirm_phone(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Ok(f) = serde_urlencoded::from_bytes::<PhoneForm>(&body) else {
        return crate::pages::bad_form(&req, &state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return crate::pages::csrf_failed(&req, &state);
    }
    match check_code(&state, &f.phone, &f.code).await {
        Ok(_) => confirmed_page(&req, &state, true),
        Err(r) => refused_phone_form(&req, &state, &f.phone, r),
    }
}

/// `POST /confirm/phone/code`: the page's "send a new code".
#[utoipa::path(
    post,
    path = "/confirm/phone/code",
    tag = "pages",
    request_body(content = CodeFormDoc, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The form again, saying a code is on its way if the number waits for one (the same page either way)", content_type = "text/html"),
        (status = 400, description = "The number is malformed", content_type = "text/html"),
        (status = 403, description = "The CSRF token does not match its cookie", content_type = "text/html"),
        (status = 429, description = "Too many codes asked for this number or from this address", content_type = "text/html"),
    )
)]
pub async fn request_code_page(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AccountState>,
) -> HttpResponse {
    let Ok(f) = serde_urlencoded::from_bytes::<PhoneForm>(&body) else {
        return crate::pages::bad_form(&req, &state);
    };
    if !pages::csrf_ok(&req, &f.csrf_token) {
        return crate::pages::csrf_failed(&req, &state);
    }
    match request_code(&req, &state, &f.phone).await {
        Ok(()) => {
            let notice = text(Lang::choose(&req, None), "confirm-code-sent", &[]);
            phone_form(&req, &state, StatusCode::OK, &f.phone, None, Some(&notice))
        }
        Err(r) => refused_phone_form(&req, &state, &f.phone, r),
    }
}

/// The phone form again, saying why it was refused; or the "unavailable" page.
fn refused_phone_form(
    req: &HttpRequest,
    state: &AccountState,
    phone: &str,
    refusal: Refusal,
) -> HttpResponse {
    match refusal.api {
        ApiError::Unavailable(e) | ApiError::Internal(e) => {
            crate::pages::unavailable(req, state, e)
        }
        ref api => {
            let status = actix_web::ResponseError::status_code(api);
            let message = refusal.text(Lang::choose(req, None));
            phone_form(req, state, status, phone, Some(&message), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_said_in_every_language_of_the_pages() {
        let refusal = |key, arg: Option<(&'static str, u32)>| {
            let r = Refusal::new(ApiError::invalid("code", "x"), key);
            match arg {
                Some((name, n)) => r.with(name, n),
                None => r,
            }
        };
        let wrong = |n| refusal("confirm-code-wrong", Some(("param", n))).text(Lang::EN);
        assert_eq!(wrong(4), "This code is not right; 4 attempts left.");
        assert_eq!(wrong(1), "This code is not right; 1 attempt left.");
        let cases = [
            ("confirm-code-wrong", Some(("param", 2))),
            ("confirm-code-format", Some(("max", 6))),
            ("confirm-code-too-many", Some(("minutes", 3))),
            ("confirm-link-too-many", Some(("minutes", 1))),
            ("confirm-code-locked-now", None),
            ("confirm-code-locked", None),
            ("confirm-code-gone", None),
            ("confirm-phone-invalid", None),
            ("confirm-email-invalid", None),
            ("confirm-link-sent", None),
            ("confirm-code-sent", None),
            ("confirm-link-gone-message", None),
        ];
        for code in admit_domain::locale::EMAIL_LANGUAGES {
            let lang = Lang::from_code(code).expect(code);
            for (key, arg) in cases {
                let said = refusal(key, arg).text(lang);
                assert!(said != key && !said.contains('{'), "{code} {key}: {said}");
                if let Some((_, n)) = arg {
                    assert!(said.contains(&n.to_string()), "{code} {key}: {said}");
                }
                if *code != "en" {
                    assert_ne!(said, refusal(key, arg).text(Lang::EN), "{code} {key}");
                }
            }
        }
    }
}

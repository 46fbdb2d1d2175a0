//! The account service: accounts, contacts and credentials, and the sign-up APIs.
//!
//! [`configure`] mounts its routes on any actix app (its own server, or the embedded
//! process); [`run`] is the standalone service of the production topology.

pub mod api;
pub mod audit_api;
pub mod batch;
pub mod captcha;
pub mod confirm;
pub mod error;
pub mod hasher;
pub mod limit;
pub mod pages;
pub mod partner;
pub mod partner_api;
pub mod password;
pub mod quota;
pub mod resend;
pub mod reset;
pub mod signup;
pub mod social;

use crate::error::ApiError;
use crate::hasher::HashPool;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::{Contact, Envelope, NewAccount, Notification, PasswordPolicy, Stage};
use admit_queue::redis::{RedisQueue, RedisQueueConfig};
use admit_queue::relay::Relay;
use admit_queue::Queue as _;
use admit_runtime::{Metrics, Readiness, Settings};
use admit_store::accounts::{AccountRow, ContactRow};
use admit_store::{accounts, outbox, Db};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Everything a request handler of this service needs.
pub struct AccountState {
    pub db: Db,
    pub hasher: HashPool,
    pub policy: PasswordPolicy,
    pub stage: Stage,
    pub max_body_bytes: usize,
    /// Notified after a commit that wrote outbox rows.
    pub outbox_wake: Arc<Notify>,
    /// The authorization server's issuer: pages may return there after a login.
    pub issuer: String,
    pub pages: admit_runtime::web::Pages,
    pub session_ttl_secs: i64,
    pub limiter: limit::Limiter,
    /// Failed-login limits: per account, per client address.
    pub login_limits: (limit::Limit, limit::Limit),
    /// A hash no password matches: verified when a login names no account, so the
    /// answer takes as long as for one that exists.
    pub dummy_hash: String,
    /// Verifies partner bearer tokens (JWKS) and API keys.
    pub partners: partner::Verifier,
    /// Derives the tokens of set-password links (`internal.link_key`).
    pub link_key: Vec<u8>,
    /// How long a set-password link works.
    pub link_ttl_secs: i64,
    /// How long a password-reset link works, and the limits of reset requests: per
    /// address asked for, per client address.
    pub reset_link_ttl_secs: i64,
    pub reset_limits: (limit::Limit, limit::Limit),
    /// How long a grant minted for a partner (SPEC §4) lasts: the refresh lifetime.
    pub grant_ttl_secs: i64,
    /// `user.create`: most users in one request, and its body limit.
    pub batch_max_users: usize,
    pub batch_max_body_bytes: usize,
    /// Verifies public applications' CAPTCHAs at siteverify.
    pub captcha: captcha::Verifier,
    /// The social providers of `POST /account`'s implicit method.
    pub social: social::Providers,
    /// How long a "confirm your address" link and a phone's code work.
    pub confirm_link_ttl_secs: i64,
    pub confirm_code_ttl_secs: i64,
    /// The admin API's credential (`internal.admin_token`) and the resend cooldown.
    pub admin_token: String,
    pub resend_cooldown_secs: u64,
    /// Per-partner request rates, daily quotas and batch sizes (`limits.*`): counted
    /// in process, or in Redis in production. Shared with the authorization server in
    /// the embedded default.
    pub partner_limits: Arc<admit_runtime::limits::PartnerLimits>,
    /// The locks of partners' batches under a quota ([`quota`]).
    pub quota_locks: quota::Locks,
    /// Told after a commit that revoked grants, before the answer (the oauth
    /// replicas' revocation feed; off in the embedded default).
    pub revocations: Arc<admit_runtime::revocations::Announcer>,
    created: prometheus::IntCounter,
}

impl AccountState {
    pub fn new(
        settings: &Settings,
        db: Db,
        outbox_wake: Arc<Notify>,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let created = prometheus::IntCounter::new("accounts_created_total", "Accounts created")?;
        metrics.register(&created);
        let partner_limits = Arc::new(admit_runtime::limits::PartnerLimits::memory(
            &settings.limits,
        ));
        metrics.register(partner_limits.refusals());
        Ok(Self {
            partner_limits,
            quota_locks: quota::Locks::default(),
            db,
            hasher: HashPool::new(settings.account.hash_threads)?,
            issuer: settings.issuer(),
            partners: partner::Verifier::new(&settings.issuer()),
            pages: admit_runtime::web::Pages::new(pages::TEMPLATES)?,
            session_ttl_secs: settings.account.session_ttl_secs.max(60),
            limiter: limit::Limiter::memory(),
            login_limits: pages::limits(settings),
            // On a thread of its own: Argon2's 19 MiB of working memory goes with the
            // thread instead of staying with this one for the life of the process.
            dummy_hash: std::thread::scope(|s| {
                s.spawn(|| hasher::hash_blocking(&admit_domain::secret::generate("")))
                    .join()
            })
            .map_err(|_| hasher::HashError::new("the hashing thread panicked"))??,
            policy: settings.account.password.clone(),
            stage: settings.stage,
            max_body_bytes: settings.account.max_body_bytes,
            link_key: settings.internal.link_key()?,
            link_ttl_secs: settings.account.password_link_ttl_secs.max(60),
            reset_link_ttl_secs: settings.account.reset_link_ttl_secs.max(60),
            reset_limits: reset::limits(settings),
            grant_ttl_secs: settings.oauth.refresh_ttl_secs.max(60),
            batch_max_users: settings.account.batch_max_users.max(1),
            batch_max_body_bytes: settings.account.batch_max_body_bytes,
            captcha: captcha::Verifier::new(&settings.account.captcha)?,
            social: social::Providers::new(&settings.account.social)?,
            confirm_link_ttl_secs: settings.account.confirm_link_ttl_secs.max(60),
            confirm_code_ttl_secs: settings.account.confirm_code_ttl_secs.max(60),
            admin_token: settings.internal.admin_token.expose_secret().to_owned(),
            resend_cooldown_secs: settings.account.resend_cooldown_secs,
            outbox_wake,
            revocations: admit_runtime::revocations::Announcer::off(),
            created,
        })
    }
}

/// Mounts the service's public routes.
pub fn configure(
    state: web::Data<AccountState>,
) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    let described = std::sync::Arc::new(described_methods());
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state.clone())
            .route("/account", web::post().to(create_account))
            .route("/api/account/", web::post().to(partner_api::create))
            .route("/api/account", web::post().to(partner_api::create))
            .route(
                "/receiver/APIv3/user.create",
                web::post().to(batch::user_create),
            )
            .route("/password/set", web::get().to(password::set_password_page))
            .route("/password/set", web::post().to(password::set_password))
            .route("/password/forgot", web::get().to(reset::forgot_page))
            .route("/password/forgot", web::post().to(reset::forgot))
            .route(
                "/password/reset",
                web::get().to(password::reset_password_page),
            )
            .route("/password/reset", web::post().to(password::reset_password))
            .route("/", web::get().to(pages::home))
            .route("/login", web::get().to(pages::login_page))
            .route("/login", web::post().to(pages::login))
            .route("/signup", web::get().to(pages::signup_page))
            .route("/signup", web::post().to(pages::signup))
            .route("/logout", web::post().to(pages::logout))
            .route("/confirm", web::get().to(confirm::confirm_page))
            .route("/confirm", web::post().to(confirm::confirm))
            .route("/confirm/email", web::get().to(confirm::email_page))
            .route("/confirm/email", web::post().to(confirm::request_link_page))
            .route("/confirm/phone", web::get().to(confirm::confirm_phone_page))
            .route("/confirm/phone", web::post().to(confirm::confirm_phone))
            .route(
                "/confirm/phone/code",
                web::post().to(confirm::request_code_page),
            )
            .route(
                "/account/confirmation",
                web::post().to(confirm::confirm_api),
            )
            .route(
                "/account/confirmation/code",
                web::post().to(confirm::request_code_api),
            )
            .route(
                "/admin/v1/accounts/{id}/resend",
                web::post().to(resend::resend_api),
            )
            .route("/admin/v1/audit", web::get().to(audit_api::audit_api));
        // Last: 405 with `Allow` for another method on a described path.
        admit_runtime::methods::mount(cfg, &described);
    }
}

/// The paths of the account service's OpenAPI description, with their methods.
fn described_methods() -> Vec<(String, Vec<&'static str>)> {
    use utoipa::OpenApi as _;
    let mut doc = api::AccountApi::openapi();
    doc.merge(resend::AccountAdminApi::openapi());
    doc.merge(audit_api::AuditAdminApi::openapi());
    admit_runtime::methods::described(&doc)
}

#[derive(Debug, PartialEq, Eq)]
enum Caller {
    Bearer(String),
    ClientId(String),
    Anonymous,
}

/// The credential of an `Authorization: Bearer <credential>` header value (the
/// scheme in any case), trimmed; `None` for another scheme.
pub fn bearer_credential(value: &str) -> Option<&str> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case("bearer ")
        .then(|| value[7..].trim())
        .filter(|_| value.len() > 7)
}

fn caller(req: &HttpRequest) -> Caller {
    let bearer = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credential);
    if let Some(v) = bearer {
        Caller::Bearer(v.to_owned())
    } else if let Some(id) = req.headers().get("x-client-id") {
        Caller::ClientId(id.to_str().unwrap_or_default().trim().to_owned())
    } else {
        Caller::Anonymous
    }
}

/// Creates an account (SPEC.md §3, explicit and implicit methods).
#[utoipa::path(
    post,
    path = "/account",
    tag = "accounts",
    params(
        ("auto_sign_in" = Option<bool>, Query, description = "Create a login session with the account and return it as `session_id` and `expiration_time`, also set as the session cookie (default false)."),
        ("is_enabled" = Option<bool>, Query, description = "false leaves the account pending until a contact is confirmed (default true)."),
        ("X-Client-Id" = Option<String>, Header, description = "A registered public application's client id (an unknown or confidential one is 401). In staging and production its sign-up needs `recaptcha`."),
    ),
    request_body = api::SignupBody,
    responses(
        (status = 201, description = "Created", body = api::SignupResponse),
        (status = 400, description = "A field is malformed or missing, or `provider_name` is not a configured provider; `field` names it", body = api::ErrorBody),
        (status = 401, description = "No caller credential (staging and production), a bearer token or API key that is not valid, or an X-Client-Id that names no registered public application", body = api::ErrorBody),
        (status = 403, description = "reCAPTCHA failed (IllegalAccessException), or the access token lacks the scope accounts:create; implicit method: the provider refused, failed or did not answer in time (`access_token`), the token is another user's (`user_id`), or the application may not use the provider (`oauth_consumer_key`)", body = api::ErrorBody),
        (status = 409, description = "Contact, username or social identity (`user_id`) already used; implicit method: the provider's address belongs to an account (`access_token`), which is never linked automatically", body = api::ErrorBody),
        (status = 413, description = "Body over the configured limit", body = api::ErrorBody),
        (status = 429, description = "Called with a partner credential: the partner is over its request rate (`RateLimitExceededException`); retry after `Retry-After` seconds", body = api::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait, at least 1"))),
        (status = 503, description = "A dependency is unavailable (the database, or a siteverify endpoint that is down or slower than account.captcha.timeout_ms); retry", body = api::ErrorBody),
    )
)]
#[tracing::instrument(name = "create_account", skip_all)]
pub async fn create_account(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AccountState>,
) -> Result<HttpResponse, ApiError> {
    let options = signup::parse_options(req.query_string())?;
    let public_client = match caller(&req) {
        // A credential that is presented must be good, in every stage.
        Caller::Bearer(_) => {
            let partner = authenticate_partner(&req, &state).await?;
            if !partner.may("accounts:create") {
                return Err(ApiError::IllegalAccess(
                    "the access token lacks the scope accounts:create".into(),
                ));
            }
            quota::rate(&state, &partner.partner_id).await?;
            None
        }
        Caller::ClientId(id) => Some(public_client(&state, id).await?),
        Caller::Anonymous if state.stage.is_strict() => {
            return Err(ApiError::Unauthorized(
                "identify the caller with a partner bearer token or X-Client-Id".into(),
            ))
        }
        Caller::Anonymous => None,
    };
    let body = read_body(payload, state.max_body_bytes).await?;
    let map = signup::parse_body(&body)?;
    // The implicit method (a social provider's token) or the explicit one.
    let method = if signup::is_implicit(&map) {
        Method::Implicit(social::parse(&map, &state.social)?)
    } else {
        Method::Explicit(signup::explicit(&map, &state.policy)?)
    };
    if !options.is_enabled {
        match &method {
            Method::Explicit(new) if new.contacts.is_empty() => {
                return Err(ApiError::invalid(
                    "is_enabled",
                    "a pending account needs an EMAIL or PHONE contact to confirm it",
                ))
            }
            Method::Explicit(_) => {}
            Method::Implicit(_) => {
                return Err(ApiError::invalid(
                    "is_enabled",
                    "a social sign-up is confirmed by its provider: is_enabled=false applies to the explicit method",
                ))
            }
        }
        if options.auto_sign_in {
            return Err(ApiError::invalid(
                "auto_sign_in",
                "a pending account cannot be signed in until a contact is confirmed: drop auto_sign_in or is_enabled=false",
            ));
        }
    }
    // Development and integration skip the CAPTCHA, as document 003 says. The
    // implicit method has no recaptcha field: the provider's token is the proof.
    let explicit = matches!(method, Method::Explicit(_));
    if let (Some(client_id), true) = (&public_client, state.stage.is_strict() && explicit) {
        let Some(submitted) = signup::recaptcha(&map)? else {
            return Err(ApiError::invalid(
                "recaptcha",
                "a public application's sign-up needs a recaptcha object in this stage",
            ));
        };
        state
            .captcha
            .verify(
                client_id,
                &submitted,
                admit_runtime::client::client_ip(&req),
            )
            .await?;
    }

    let registered = match method {
        Method::Explicit(new) => {
            register(&state, &new, options.auto_sign_in, !options.is_enabled).await?
        }
        Method::Implicit(signup) => social::register(&state, signup, options.auto_sign_in).await?,
    };
    signed_up(registered)
}

/// The 201 answer of `POST /account`: with the session's id and expiry, and its
/// cookie, when one was started.
pub(crate) fn signed_up(registered: Registered) -> Result<HttpResponse, ApiError> {
    let mut res = HttpResponse::Created();
    let mut body = serde_json::json!({
        "account_id": registered.account_id,
        "creation_time": registered.created.to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    if let Some((cookie, row)) = registered.session {
        body["session_id"] = cookie.value().into();
        body["expiration_time"] = row
            .expires_at
            .and_utc()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
            .into();
        res.cookie(cookie)
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
    }
    Ok(res.json(body))
}

/// The public application named by `X-Client-Id`: a registered, active client
/// without a secret. Anything else is 401, in every stage.
async fn public_client(state: &AccountState, id: String) -> Result<String, ApiError> {
    let unknown = || {
        ApiError::Unauthorized("X-Client-Id does not name a registered public application".into())
    };
    if id.is_empty() || id.len() > 128 {
        return Err(unknown());
    }
    let lookup = id.clone();
    let client = state
        .db
        .run(move |c| admit_store::partners::active_client(c, &lookup))
        .await?;
    match client {
        Some(c) if c.is_public => Ok(id),
        _ => Err(unknown()),
    }
}

/// The two ways of document 003 to create an account.
enum Method {
    /// Contacts and a password.
    Explicit(NewAccount),
    /// A social provider's access token.
    Implicit(social::SocialSignup),
}

/// The partner behind `Authorization: Bearer …` (an access token or an API key).
pub(crate) async fn authenticate_partner(
    req: &HttpRequest,
    state: &AccountState,
) -> Result<partner::Partner, ApiError> {
    let Caller::Bearer(credential) = caller(req) else {
        return Err(ApiError::Unauthorized(
            "authenticate with Authorization: Bearer and a partner access token or API key".into(),
        ));
    };
    state
        .partners
        .partner(&state.db, &credential)
        .await
        .map_err(|e| match e {
            partner::AuthError::Invalid => {
                ApiError::Unauthorized("the bearer token or API key is not valid".into())
            }
            partner::AuthError::Unavailable(m) => ApiError::Unavailable(m),
        })
}

/// The request body, refused past `limit` bytes.
pub(crate) async fn read_body(
    payload: web::Payload,
    limit: usize,
) -> Result<actix_web::web::BytesMut, ApiError> {
    read_body_sized(payload, limit, 0).await
}

/// [`read_body`] into a buffer of `expected` bytes from the start (`Content-Length`).
pub(crate) async fn read_body_sized(
    payload: web::Payload,
    limit: usize,
    expected: usize,
) -> Result<actix_web::web::BytesMut, ApiError> {
    admit_runtime::http::read_body_sized(payload, limit, expected)
        .await
        .map_err(|e| match e {
            admit_runtime::http::BodyError::TooLarge(limit) => ApiError::TooLarge { limit },
            other => ApiError::invalid("body", other.to_string()),
        })
}

/// A primary contact row of a new account.
pub(crate) fn contact_row(
    account_id: &str,
    kind: &str,
    value: &str,
    normalized: &str,
    at: chrono::NaiveDateTime,
) -> ContactRow {
    ContactRow {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.to_owned(),
        kind: kind.to_owned(),
        value: value.to_owned(),
        value_normalized: normalized.to_owned(),
        is_primary: true,
        verified_at: None,
        created_at: at,
    }
}

/// The stored half of the set-password link that `envelope`'s email carries: the
/// digest of the token the mailer derives from the message id.
pub(crate) fn password_link(
    link_key: &[u8],
    envelope: &Envelope,
    partner_id: &str,
    now: chrono::NaiveDateTime,
    ttl_secs: i64,
) -> admit_store::registrations::PasswordTokenRow {
    let account_id = match &envelope.notification {
        Notification::PartnerAccount { account_id, .. }
        | Notification::SetPassword { account_id, .. }
        | Notification::AlreadyRegistered { account_id, .. }
        | Notification::Welcome { account_id, .. }
        | Notification::SocialWelcome { account_id, .. }
        | Notification::PasswordReset { account_id, .. }
        | Notification::ConfirmEmail { account_id, .. }
        | Notification::ConfirmPhone { account_id, .. } => account_id.clone(),
        Notification::RegistrationFailed { .. } => String::new(),
    };
    let token = admit_domain::secret::link_token(
        link_key,
        admit_domain::secret::SET_PASSWORD,
        &envelope.id.to_string(),
    );
    admit_store::registrations::PasswordTokenRow {
        token_digest: admit_domain::secret::digest(&token),
        account_id,
        partner_id: Some(partner_id.to_owned()),
        grant_id: None,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(ttl_secs),
        used_at: None,
        sent_to: admit_domain::Email::parse(envelope.notification.recipient())
            .ok()
            .map(|e| e.normalized()),
        purpose: admit_store::registrations::purpose::SET_PASSWORD.to_owned(),
    }
}

/// What [`register`] created.
pub(crate) struct Registered {
    pub account_id: String,
    pub created: DateTime<Utc>,
    /// The login session started with the account, and its cookie.
    pub session: Option<(
        actix_web::cookie::Cookie<'static>,
        admit_store::grants::SessionRow,
    )>,
}

/// Creates the account `new` with its welcome email, and with `sign_in` a login
/// session: the password hashed on the hash pool, the rows, the session and the
/// outbox message in one transaction. For `POST /account` and the sign-up page.
///
/// With `pending` the account is pending (SPEC §3 `is_enabled=false`): status
/// `pending`, and in place of the welcome email the messages that confirm its
/// contacts ([`confirm::pending_messages`]), in the same transaction.
pub(crate) async fn register(
    state: &AccountState,
    new: &NewAccount,
    sign_in: bool,
    pending: bool,
) -> Result<Registered, ApiError> {
    let keys = confirm::Keys::of(state);
    // The whole sign-up after parsing runs on the hash thread: a cheap look first, so
    // a taken contact costs no hash, then the hash, then the one transaction that
    // writes the account and its outbox row. One hand-off to the pool and one back,
    // instead of a hop to the blocking pool for every database call. The unique
    // indexes still decide between concurrent requests.
    let (db, new) = (state.db.clone(), new.clone());
    let session_ttl = state.session_ttl_secs;
    let registered = state
        .hasher
        .run(move || -> Result<Registered, ApiError> {
            let mut conn = db.get()?;
            if let Some(taken) = taken_value(&mut conn, &new)? {
                return Err(taken);
            }
            let password_hash = hasher::hash_blocking(new.password.expose())?;
            let now = Utc::now();
            let (mut account, contacts, mut envelope) = records(&new, password_hash, now);
            let account_id = account.id.clone();
            let session =
                sign_in.then(|| admit_runtime::web::new_session(&account_id, session_ttl));
            let confirmations = if pending {
                account.status = admit_store::confirmations::PENDING.into();
                envelope = None;
                confirm::pending_messages(&keys, &new, &account_id, now.naive_utc())
            } else {
                Vec::new()
            };
            let written = db.write_on(&mut conn, |conn| {
                accounts::insert(conn, &account, &contacts)?;
                if let Some((_, row)) = &session {
                    admit_store::grants::insert_session(conn, row)?;
                }
                if let Some(envelope) = &envelope {
                    outbox::enqueue(conn, outbox::MAIL_TOPIC, envelope)?;
                }
                confirm::write_messages(conn, &confirmations, now.naive_utc())?;
                Ok(())
            });
            match written {
                Ok(()) => Ok(Registered {
                    account_id,
                    created: now,
                    session,
                }),
                Err(admit_store::StoreError::Conflict(c)) => {
                    // Lost a race: name the field that the winner took.
                    match taken_value(&mut conn, &new) {
                        Ok(Some(taken)) => Err(taken),
                        _ => Err(admit_store::StoreError::Conflict(c).into()),
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
        .await??;
    state.outbox_wake.notify_one();
    state.created.inc();
    tracing::debug!(account_id = %registered.account_id, signed_in = sign_in, "account created");
    Ok(registered)
}

/// The first value of `new` that another account already has, as the error to return.
fn taken_value(
    conn: &mut admit_store::AnyConnection,
    new: &NewAccount,
) -> Result<Option<ApiError>, admit_store::StoreError> {
    for (i, c) in new.contacts.iter().enumerate() {
        if accounts::find_by_contact(conn, c.kind().as_str(), &c.normalized())?.is_some() {
            return Ok(Some(ApiError::ContactAlreadyUsed {
                field: format!("contacts[{i}][1]"),
                message: format!(
                    "this {} is already registered with an account",
                    c.kind().as_str()
                ),
            }));
        }
    }
    if let Some(u) = &new.username {
        if accounts::username_taken(conn, &u.normalized())? {
            return Ok(Some(ApiError::UsernameAlreadyUsed));
        }
    }
    Ok(None)
}

fn records(
    new: &NewAccount,
    password_hash: String,
    now: DateTime<Utc>,
) -> (AccountRow, Vec<ContactRow>, Option<Envelope>) {
    let id = uuid::Uuid::now_v7().to_string();
    let created_at = now.naive_utc();
    let expires_at = match new.account_type {
        admit_domain::AccountType::Test => Some(created_at + chrono::Duration::hours(24)),
        admit_domain::AccountType::Standard => None,
    };
    let account = AccountRow {
        id: id.clone(),
        username: new.username.as_ref().map(|u| u.as_str().to_owned()),
        username_normalized: new.username.as_ref().map(|u| u.normalized()),
        full_name: new.full_name.clone(),
        locale: new.locale.as_ref().map(|l| l.as_str().to_owned()),
        password_hash: Some(password_hash),
        account_type: new.account_type.as_str().to_owned(),
        status: "active".into(),
        created_at,
        expires_at,
    };
    let contacts = new
        .contacts
        .iter()
        .map(|c: &Contact| ContactRow {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: id.clone(),
            kind: c.kind().as_str().to_owned(),
            value: c.value().to_owned(),
            value_normalized: c.normalized(),
            is_primary: c.is_primary(),
            verified_at: None,
            created_at,
        })
        .collect();
    let envelope = new.primary_email().map(|email| {
        Envelope::new(Notification::Welcome {
            to: email.as_str().to_owned(),
            account_id: id.clone(),
            full_name: new.full_name.clone(),
            username: new.username.as_ref().map(|u| u.as_str().to_owned()),
            language: new
                .locale
                .as_ref()
                .and_then(|l| l.language_639_1())
                .unwrap_or("en")
                .to_owned(),
        })
    });
    (account, contacts, envelope)
}

/// The scheduled purge: expired test accounts with everything attached
/// ([`admit_store::purge`]), and `Idempotency-Key` answers older than their 24 hours.
/// Safe with several replicas: one pass runs at a time, the others skip their turn.
#[derive(Clone)]
pub struct Purger {
    db: Db,
    revocations: Arc<admit_runtime::revocations::Announcer>,
    passes: prometheus::IntCounterVec,
    accounts: prometheus::IntCounter,
    rows: prometheus::IntCounterVec,
}

impl Purger {
    pub fn new(db: Db, metrics: &Metrics) -> anyhow::Result<Self> {
        let passes = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "test_account_purge_passes_total",
                "Passes of the test-account purge, by outcome (done, skipped: another replica held the lock, failed)",
            ),
            &["outcome"],
        )?;
        let accounts = prometheus::IntCounter::new(
            "test_accounts_purged_total",
            "Test accounts deleted 24 hours after their creation",
        )?;
        let rows = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "test_account_purged_rows_total",
                "Rows deleted with purged test accounts, by table",
            ),
            &["table"],
        )?;
        metrics.register(&passes);
        metrics.register(&accounts);
        metrics.register(&rows);
        Ok(Self {
            db,
            revocations: admit_runtime::revocations::Announcer::off(),
            passes,
            accounts,
            rows,
        })
    }

    /// The purge told to `announcer` when it deleted accounts (their grants end).
    pub fn announcing(mut self, announcer: Arc<admit_runtime::revocations::Announcer>) -> Self {
        self.revocations = announcer;
        self
    }

    /// One pass as of `now`; `None` when another replica held the purge lock.
    pub async fn pass(
        &self,
        now: chrono::NaiveDateTime,
    ) -> Result<Option<admit_store::purge::Purged>, admit_store::StoreError> {
        let done = self
            .db
            .write(move |c| admit_store::purge::expired_test_accounts(c, now))
            .await;
        let outcome = match &done {
            Ok(Some(purged)) => {
                self.accounts.inc_by(purged.accounts as u64);
                for (table, n) in &purged.rows {
                    self.rows.with_label_values(&[table]).inc_by(*n as u64);
                }
                if purged.accounts > 0 {
                    self.revocations.announce().await;
                    tracing::info!(accounts = purged.accounts, rows = ?purged.rows, "purged expired test accounts");
                }
                "done"
            }
            Ok(None) => "skipped",
            Err(e) => {
                tracing::warn!(error = %e, "test account purge failed; will retry");
                "failed"
            }
        };
        self.passes.with_label_values(&[outcome]).inc();
        let day_ago = now - chrono::Duration::hours(24);
        if let Err(e) = self
            .db
            .write(move |conn| admit_store::registrations::purge_idempotency_keys(conn, day_ago))
            .await
        {
            tracing::warn!(error = %e, "Idempotency-Key purge failed; will retry");
        }
        done
    }

    /// A pass every `every`, until `stop`.
    pub async fn run(self, every: Duration, stop: CancellationToken) {
        loop {
            let _ = self.pass(admit_store::now()).await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// The standalone account service of the production topology: PostgreSQL, and the
/// outbox relay to Redis. Runs until SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    use admit_runtime::selfcheck::{self, Service};
    let db = admit_runtime::database::connect(&settings)?;
    selfcheck::at_start(Service::Account, &settings, &db).await?;
    let wake = Arc::new(Notify::new());
    let metrics = Metrics::new();
    let mut state = AccountState::new(&settings, db.clone(), wake.clone(), &metrics)?;
    let redis = redis::Client::open(settings.redis.url.expose_secret())?;
    state.limiter = limit::Limiter::redis(redis, &settings.redis.prefix);
    state.revocations = admit_runtime::revocations::Announcer::redis(
        settings.redis.url.expose_secret(),
        &settings.redis.prefix,
    )?;
    let announcer = state.revocations.clone();
    state.partner_limits = Arc::new(
        state
            .partner_limits
            .with_redis(settings.redis.url.expose_secret(), &settings.redis.prefix)?,
    );
    let state = web::Data::new(state);
    let stop = CancellationToken::new();
    let queue = Arc::new(RedisQueue::new(RedisQueueConfig::mail(
        settings.redis.url.expose_secret(),
        &settings.redis.prefix,
        "relay",
        Duration::from_millis(settings.mailer.claim_idle_ms),
    ))?);
    let relay_metrics = admit_queue::relay::RelayMetrics::new();
    metrics.register(&relay_metrics.published);
    metrics.register(&relay_metrics.failures);
    metrics.register(&relay_metrics.pending);
    metrics.register(&relay_metrics.oldest_age);
    let relay = Relay {
        db: db.clone(),
        queue: queue.clone(),
        topic: outbox::MAIL_TOPIC.into(),
        batch: settings.account.relay_batch,
        wake,
        metrics: relay_metrics,
    };
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    tokio::spawn(
        Purger::new(db.clone(), &metrics)?
            .announcing(announcer)
            .run(
                Duration::from_secs(settings.account.purge_every_secs.max(1)),
                stop.clone(),
            ),
    );
    tokio::spawn(selfcheck::LinkKeyCheck::new(Service::Account, &settings)?.run(stop.clone()));
    let readiness =
        admit_runtime::database::check(Readiness::new(), db.clone()).check("redis", move || {
            let queue = queue.clone();
            async move {
                queue.ping().await.map_err(|e| {
                    format!(
                        "cannot reach Redis: {e}; sign-ups go on, their mail waits in the outbox"
                    )
                })
            }
        });
    let (routes, proxies) = (configure(state), admit_runtime::client::data(&settings));
    let started = admit_runtime::http::start(
        "admit-account",
        admit_runtime::http::bind(&settings.bind, settings.account.port)?,
        selfcheck::migrations_check(readiness, db),
        metrics,
        stop.clone(),
        admit_runtime::http::grace(Duration::from_secs(5)),
        move |cfg: &mut web::ServiceConfig| {
            proxies(cfg);
            routes(cfg);
        },
    )?;
    started.server.await?;
    stop.cancel();
    let _ = relay_task.await;
    Ok(())
}

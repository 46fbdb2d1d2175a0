//! `POST /account`, implicit method (SPEC.md §3, document 003): sign-up with a social
//! provider's access token. The body becomes a [`SocialSignup`] here; the provider is
//! asked whom the token belongs to ([`Providers::identify`]); the answer must be the
//! `user_id` the caller named; then one transaction writes the account, the address
//! the provider vouches for, the linked identity and the welcome email (with a
//! set-password link: the account has no password until the user chooses one).
//!
//! Rules, and why:
//! - The provider is asked before anything is looked up, so nobody learns which
//!   identities are registered without a token that proves one.
//! - An address the provider gives that belongs to an account is refused (409, field
//!   `access_token`), never linked to it: whoever controls an account at the provider
//!   does not thereby control the platform account with the same address
//!   (pre-account takeover, SECURITY.md). Linking is done from the existing account.
//! - An address the provider does not mark verified (OIDC `email_verified` not true)
//!   is not stored at all: kept, even unverified, it would hold the unique address
//!   against its real owner's later sign-up. Facebook's Graph API returns only an
//!   address its user confirmed, so facebook's is taken as verified.
//! - The access token and `oauth_consumer_secret` are never stored or logged; the
//!   secret is accepted (document 003 lists it) and otherwise ignored.
//! - `oauth_consumer_key` is only what the caller says. Which application a token was
//!   really issued to, only the provider knows: facebook's `appsecret_proof` binds the
//!   call to the platform's app; a google provider with `client_ids` asks Google's
//!   tokeninfo; an oidc provider does so by RFC 7662 introspection when configured.
//!   Without that, another application's token for its user would sign up here.

use crate::error::ApiError;
use crate::signup::opt_str;
use crate::AccountState;
use admit_domain::{AccountType, Email, Envelope, Locale, Notification};
use admit_runtime::settings::{SocialProviderKind, SocialProviderSettings, SocialSettings};
use admit_store::accounts::{self, AccountRow, ContactRow};
use admit_store::identities::{self, IdentityRow};
use admit_store::{outbox, registrations, StoreError};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The fields of the implicit method's body.
const FIELDS: &[&str] = &[
    "access_token",
    "oauth_consumer_key",
    "oauth_consumer_secret",
    "locale",
    "provider_name",
    "expiration_time",
    "user_id",
    "account_type",
];

/// Providers document 003 names that no longer offer sign-in: Gowalla closed in 2012,
/// and Foursquare's consumer sign-in API is gone.
const RETIRED: &[&str] = &["foursquare", "gowalla"];

const FACEBOOK_ME: &str = "https://graph.facebook.com/me";
const GOOGLE_USERINFO: &str = "https://openidconnect.googleapis.com/v1/userinfo";
const GOOGLE_TOKENINFO: &str = "https://oauth2.googleapis.com/tokeninfo";

/// The largest provider answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The configured providers, ready to be asked.
pub struct Providers {
    http: reqwest::Client,
    by_name: BTreeMap<String, Provider>,
}

struct Provider {
    kind: SocialProviderKind,
    userinfo_url: reqwest::Url,
    app_secret: Option<SecretString>,
    client_ids: Vec<String>,
    timeout: Duration,
    introspection: Option<Introspection>,
    /// google with `client_ids` (and no introspection): Google's tokeninfo endpoint,
    /// which names the application (`aud`, `azp`) a token was issued to.
    tokeninfo: Option<reqwest::Url>,
}

/// Where and as whom a provider's tokens are introspected (RFC 7662).
struct Introspection {
    url: reqwest::Url,
    client_id: String,
    client_secret: SecretString,
}

/// What a provider says about a token's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    pub subject: String,
    pub email: Option<Email>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// A parsed implicit-method body.
#[derive(Debug)]
pub struct SocialSignup {
    pub provider: String,
    pub access_token: SecretString,
    pub user_id: String,
    pub locale: Option<Locale>,
    pub account_type: AccountType,
}

impl Providers {
    /// Checks the configuration: every provider has the endpoint and secret its kind
    /// needs, and no retired name is configured.
    pub fn new(settings: &SocialSettings) -> anyhow::Result<Self> {
        let mut by_name = BTreeMap::new();
        for (name, p) in &settings.providers {
            // Names are matched without regard to case (environment variables give
            // them in lower case); two spellings of one name are a mistake.
            let key = name.to_ascii_lowercase();
            if by_name.insert(key, Provider::new(name, p)?).is_some() {
                anyhow::bail!("account.social.providers: {name} is configured twice");
            }
        }
        let http = reqwest::Client::builder()
            // A provider's redirect is not followed: the token would go where the
            // configuration did not say.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { http, by_name })
    }

    fn get(&self, name: &str) -> Result<&Provider, ApiError> {
        let name = name.to_ascii_lowercase();
        let name = name.as_str();
        if RETIRED.contains(&name) {
            return Err(ApiError::invalid(
                "provider_name",
                format!("{name} no longer offers sign-in; use another provider"),
            ));
        }
        self.by_name.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            ApiError::invalid(
                "provider_name",
                if known.is_empty() {
                    format!("{name} is not a provider of this platform: social sign-up is not configured")
                } else {
                    format!(
                        "{name} is not a provider of this platform; the providers are: {}",
                        known.join(", ")
                    )
                },
            )
        })
    }

    /// Asks `provider` whom `token` belongs to. A refused token, an answer that names
    /// nobody, and a provider that is down or slow are each a 403 on `access_token`
    /// with a message saying which (and, for the last, that a retry may work).
    pub async fn identify(
        &self,
        provider: &str,
        token: &SecretString,
    ) -> Result<ProviderIdentity, ApiError> {
        let p = self.get(provider)?;
        if let Some(intro) = &p.introspection {
            let request = self
                .http
                .post(intro.url.clone())
                .basic_auth(&intro.client_id, Some(intro.client_secret.expose_secret()))
                .form(&[
                    ("token", token.expose_secret()),
                    ("token_type_hint", "access_token"),
                ]);
            let answer = self.ask(provider, p, request).await?;
            check_introspection(provider, &p.client_ids, &answer)?;
        }
        if let Some(url) = &p.tokeninfo {
            let mut url = url.clone();
            url.query_pairs_mut()
                .append_pair("access_token", token.expose_secret());
            let answer = self.ask(provider, p, self.http.get(url)).await?;
            check_audience(provider, &p.client_ids, &answer)?;
        }
        let request = match p.kind {
            SocialProviderKind::Facebook => {
                let proof = appsecret_proof(p.app_secret.as_ref(), token.expose_secret());
                let mut url = p.userinfo_url.clone();
                url.query_pairs_mut()
                    .append_pair("fields", "id,name,email")
                    .append_pair("access_token", token.expose_secret())
                    .append_pair("appsecret_proof", &proof);
                self.http.get(url)
            }
            SocialProviderKind::Google | SocialProviderKind::Oidc => self
                .http
                .get(p.userinfo_url.clone())
                .bearer_auth(token.expose_secret()),
        };
        let claims = self.ask(provider, p, request).await?;
        identity_of(p.kind, &claims)
            .ok_or_else(|| refused(format!("{provider}'s answer names no user")))
    }

    /// Sends `request` to the provider and reads its JSON object; every way that can
    /// fail is a 403 on `access_token` that says which.
    async fn ask(
        &self,
        provider: &str,
        p: &Provider,
        request: reqwest::RequestBuilder,
    ) -> Result<Map<String, Value>, ApiError> {
        let response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(p.timeout)
            .send()
            .await
            .map_err(|e| {
                // reqwest's error text would carry the URL, and facebook's URL the token.
                let e = e.without_url();
                tracing::warn!(provider, error = %e, "social provider did not answer");
                if e.is_timeout() {
                    refused(format!(
                        "{provider} did not answer in time ({} ms) whether the access token is good; the request may be retried",
                        p.timeout.as_millis()
                    ))
                } else {
                    refused(format!(
                        "{provider} could not be reached to check the access token; the request may be retried"
                    ))
                }
            })?;
        let status = response.status();
        let body = read_limited(response, MAX_ANSWER_BYTES).await;
        if status.is_server_error() {
            tracing::warn!(provider, status = status.as_u16(), "social provider failed");
            return Err(refused(format!(
                "{provider} failed to check the access token (HTTP {}); the request may be retried",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(refused(format!(
                "{provider} refused the access token (HTTP {})",
                status.as_u16()
            )));
        }
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(provider, error = %e, "social provider's answer unreadable");
                return Err(refused(format!(
                    "{provider}'s answer could not be read; the request may be retried"
                )));
            }
        };
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) if !m.contains_key("error") => Ok(m),
            Ok(Value::Object(_)) => Err(refused(format!("{provider} refused the access token"))),
            _ => Err(refused(format!(
                "{provider} did not answer with the token's user"
            ))),
        }
    }
}

fn refused(message: String) -> ApiError {
    ApiError::IllegalAccessAt {
        field: "access_token".into(),
        message,
    }
}

/// An RFC 7662 answer: the token must be active and, when the provider has
/// `client_ids`, issued to one of them (`client_id`, `azp` or `aud`).
fn check_introspection(
    provider: &str,
    client_ids: &[String],
    answer: &Map<String, Value>,
) -> Result<(), ApiError> {
    if answer.get("active") != Some(&Value::Bool(true)) {
        return Err(refused(format!(
            "{provider} says the access token is not active"
        )));
    }
    check_audience(provider, client_ids, answer)
}

/// Whether the token an introspection or tokeninfo `answer` describes was issued to
/// one of `client_ids` (any, when there are none).
fn check_audience(
    provider: &str,
    client_ids: &[String],
    answer: &Map<String, Value>,
) -> Result<(), ApiError> {
    if client_ids.is_empty() {
        return Ok(());
    }
    let mut issued_to: Vec<&str> = ["client_id", "azp"]
        .iter()
        .filter_map(|k| answer.get(*k).and_then(Value::as_str))
        .collect();
    match answer.get("aud") {
        Some(Value::String(a)) => issued_to.push(a),
        Some(Value::Array(list)) => issued_to.extend(list.iter().filter_map(Value::as_str)),
        _ => {}
    }
    if issued_to
        .iter()
        .any(|c| client_ids.iter().any(|allowed| allowed == c))
    {
        Ok(())
    } else {
        Err(refused(format!(
            "the access token was issued by {provider} to another application than this platform accepts"
        )))
    }
}

impl Provider {
    fn new(name: &str, p: &SocialProviderSettings) -> anyhow::Result<Self> {
        if RETIRED.contains(&name.to_ascii_lowercase().as_str()) {
            anyhow::bail!("account.social.providers.{name}: {name} no longer offers sign-in");
        }
        let url = match (p.kind, &p.userinfo_url) {
            (_, Some(url)) => url.as_str(),
            (SocialProviderKind::Facebook, None) => FACEBOOK_ME,
            (SocialProviderKind::Google, None) => GOOGLE_USERINFO,
            (SocialProviderKind::Oidc, None) => anyhow::bail!(
                "account.social.providers.{name}.userinfo_url is required for an oidc provider"
            ),
        };
        let userinfo_url = http_url(name, "userinfo_url", url)?;
        let app_secret = p
            .app_secret
            .clone()
            .filter(|s| !s.expose_secret().is_empty());
        if p.kind == SocialProviderKind::Facebook && app_secret.is_none() {
            anyhow::bail!(
                "account.social.providers.{name}.app_secret is required for facebook (appsecret_proof)"
            );
        }
        let introspection = match &p.introspection_url {
            None => None,
            Some(_) if p.kind == SocialProviderKind::Facebook => anyhow::bail!(
                "account.social.providers.{name}.introspection_url: facebook tokens are bound to the app by appsecret_proof instead"
            ),
            Some(url) => Some(Introspection {
                url: http_url(name, "introspection_url", url)?,
                client_id: p.introspection_client_id.clone().ok_or_else(|| {
                    anyhow::anyhow!("account.social.providers.{name}.introspection_client_id is required with introspection_url")
                })?,
                client_secret: p.introspection_client_secret.clone().ok_or_else(|| {
                    anyhow::anyhow!("account.social.providers.{name}.introspection_client_secret is required with introspection_url")
                })?,
            }),
        };
        let tokeninfo = match (&p.tokeninfo_url, p.kind) {
            (Some(_), SocialProviderKind::Facebook | SocialProviderKind::Oidc) => anyhow::bail!(
                "account.social.providers.{name}.tokeninfo_url is Google's; an oidc provider has introspection_url"
            ),
            (url, SocialProviderKind::Google)
                if !p.client_ids.is_empty() && introspection.is_none() =>
            {
                Some(http_url(
                    name,
                    "tokeninfo_url",
                    url.as_deref().unwrap_or(GOOGLE_TOKENINFO),
                )?)
            }
            _ => None,
        };
        Ok(Self {
            kind: p.kind,
            userinfo_url,
            app_secret,
            client_ids: p.client_ids.clone(),
            timeout: Duration::from_millis(p.timeout_ms.max(1)),
            introspection,
            tokeninfo,
        })
    }
}

fn http_url(name: &str, key: &str, url: &str) -> anyhow::Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("account.social.providers.{name}.{key}: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        anyhow::bail!("account.social.providers.{name}.{key} must be an https URL");
    }
    Ok(parsed)
}

/// Facebook's `appsecret_proof`: the hex HMAC-SHA256 of the access token under the
/// app secret, which proves the call comes from the app the token was issued to.
pub fn appsecret_proof(app_secret: Option<&SecretString>, token: &str) -> String {
    use hmac::{Hmac, Mac};
    let key = app_secret.map(|s| s.expose_secret()).unwrap_or_default();
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The user a provider's answer describes.
fn identity_of(kind: SocialProviderKind, claims: &Map<String, Value>) -> Option<ProviderIdentity> {
    let subject_claim = match kind {
        SocialProviderKind::Facebook => "id",
        SocialProviderKind::Google | SocialProviderKind::Oidc => "sub",
    };
    let subject = match claims.get(subject_claim)? {
        Value::String(s) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .and_then(|e| Email::parse(e).ok());
    let email_verified = match kind {
        SocialProviderKind::Facebook => email.is_some(),
        // Some providers send the boolean as a string.
        SocialProviderKind::Google | SocialProviderKind::Oidc => {
            matches!(claims.get("email_verified"), Some(Value::Bool(true)))
                || matches!(claims.get("email_verified"), Some(Value::String(s)) if s == "true")
        }
    };
    let name = claims
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(200).collect());
    Some(ProviderIdentity {
        subject,
        email,
        email_verified,
        name,
    })
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The implicit method's body, checked field by field; `providers` says which
/// `provider_name`s exist and which `oauth_consumer_key`s each accepts.
pub fn parse(body: &Map<String, Value>, providers: &Providers) -> Result<SocialSignup, ApiError> {
    for key in body.keys() {
        if !FIELDS.contains(&key.as_str()) {
            return Err(ApiError::invalid(
                key.as_str(),
                format!(
                    "{key} is not a field of the social sign-up (access_token, provider_name, user_id, oauth_consumer_key, oauth_consumer_secret, locale, expiration_time)"
                ),
            ));
        }
    }
    // The configured name, in lower case, is what identities are stored under.
    let provider = required(body, "provider_name", 64)?.to_ascii_lowercase();
    let p = providers.get(&provider)?;
    let access_token = SecretString::from(required(body, "access_token", 4096)?.to_owned());
    let user_id = required(body, "user_id", 255)?.to_owned();
    let consumer_key = opt_str(body, "oauth_consumer_key", 512)?;
    if !p.client_ids.is_empty() {
        let Some(key) = consumer_key else {
            return Err(ApiError::invalid(
                "oauth_consumer_key",
                format!("{provider} sign-up needs oauth_consumer_key, the provider's client id of your application"),
            ));
        };
        if !p.client_ids.iter().any(|k| k == key) {
            return Err(ApiError::IllegalAccessAt {
                field: "oauth_consumer_key".into(),
                message: format!(
                    "this application is not allowed to sign users up with {provider}"
                ),
            });
        }
    }
    // Accepted for document 003's integrations, never kept.
    opt_str(body, "oauth_consumer_secret", 1024)?;
    let locale = opt_str(body, "locale", 64)?
        .map(Locale::parse)
        .transpose()?;
    if let Some(expires) = expiration_time(body.get("expiration_time"))? {
        if expires <= Utc::now() {
            return Err(ApiError::invalid(
                "expiration_time",
                "the access token has expired: obtain a new one from the provider",
            ));
        }
    }
    let account_type = match opt_str(body, "account_type", 64)? {
        None => AccountType::Standard,
        Some(s) => AccountType::parse(s)
            .ok_or_else(|| ApiError::invalid("account_type", "expected standard or test"))?,
    };
    Ok(SocialSignup {
        provider,
        access_token,
        user_id,
        locale,
        account_type,
    })
}

fn required<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<&'a str, ApiError> {
    match opt_str(body, field, max)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ApiError::invalid(field, format!("{field} is required"))),
    }
}

/// `expiration_time`: RFC 3339 (`2026-12-03T10:00:00Z`), document 002's basic form
/// (`20261203T100000+0000`), or Unix seconds (a number or a string of digits).
fn expiration_time(v: Option<&Value>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "expiration_time",
            "expected a time: RFC 3339 (2026-12-03T10:00:00Z), 20261203T100000+0000, or Unix seconds",
        )
    };
    let from_secs = |n: i64| DateTime::<Utc>::from_timestamp(n, 0).ok_or_else(bad);
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(from_secs)
            .transpose()?
            .ok_or_else(bad)
            .map(Some),
        Some(Value::String(s)) if s.len() <= 64 => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return s.parse().map_err(|_| bad()).and_then(from_secs).map(Some);
            }
            DateTime::parse_from_rfc3339(s)
                .or_else(|_| DateTime::parse_from_str(s, "%Y%m%dT%H%M%S%z"))
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| bad())
        }
        Some(_) => Err(bad()),
    }
}

/// Asks the provider, checks the identity is `user_id`'s, and creates the account
/// linked to it: account, verified address, identity and welcome email in one
/// transaction. Returns the account id and its creation time.
pub(crate) async fn register(
    state: &AccountState,
    signup: SocialSignup,
    sign_in: bool,
) -> Result<crate::Registered, ApiError> {
    let who = state
        .social
        .identify(&signup.provider, &signup.access_token)
        .await?;
    if who.subject != signup.user_id {
        return Err(ApiError::IllegalAccessAt {
            field: "user_id".into(),
            message: format!(
                "the access token belongs to another {} user than user_id",
                signup.provider
            ),
        });
    }
    let now = Utc::now();
    let (account, contacts, identity, envelope) = records(&signup, &who, now);
    // The welcome email's set-password link: the account has no password yet.
    let link = envelope.as_ref().map(|e| {
        let mut row =
            crate::password_link(&state.link_key, e, "", now.naive_utc(), state.link_ttl_secs);
        row.partner_id = None;
        row
    });
    let account_id = account.id.clone();
    let session =
        sign_in.then(|| admit_runtime::web::new_session(&account_id, state.session_ttl_secs));
    let session_row = session.as_ref().map(|(_, row)| row.clone());
    let has_mail = envelope.is_some();
    let provider = signup.provider.clone();
    let db = state.db.clone();
    state
        .db
        .run(move |conn| {
            if let Some(taken) = taken(conn, &provider, &who)? {
                return Ok(Err(taken));
            }
            let written = db.write_on(conn, |c| {
                identities::insert_account(c, &account, &contacts, &identity)?;
                if let Some(row) = &session_row {
                    admit_store::grants::insert_session(c, row)?;
                }
                if let Some(envelope) = &envelope {
                    outbox::enqueue(c, outbox::MAIL_TOPIC, envelope)?;
                }
                if let Some(link) = &link {
                    registrations::insert_password_tokens(
                        c,
                        std::slice::from_ref(link),
                        link.created_at,
                    )?;
                }
                Ok(())
            });
            match written {
                Ok(()) => Ok(Ok(())),
                // Lost a race to a concurrent request: name what the winner took.
                Err(StoreError::Conflict(c)) => match taken(conn, &provider, &who) {
                    Ok(Some(taken)) => Ok(Err(taken)),
                    _ => Err(StoreError::Conflict(c)),
                },
                Err(e) => Err(e),
            }
        })
        .await??;
    if has_mail {
        state.outbox_wake.notify_one();
    }
    state.created.inc();
    tracing::info!(account_id = %account_id, provider = %signup.provider, signed_in = sign_in, "account created with a social identity");
    Ok(crate::Registered {
        account_id,
        created: now,
        session,
    })
}

/// Why the identity or its address cannot have a new account, if so.
fn taken(
    conn: &mut admit_store::AnyConnection,
    provider: &str,
    who: &ProviderIdentity,
) -> Result<Option<ApiError>, StoreError> {
    if identities::find_account(conn, provider, &who.subject)?.is_some() {
        return Ok(Some(ApiError::ContactAlreadyUsed {
            field: "user_id".into(),
            message: format!("this {provider} identity is already registered with an account"),
        }));
    }
    if let Some(email) = &who.email {
        if accounts::find_by_contact(conn, "EMAIL", &email.normalized())?.is_some() {
            return Ok(Some(ApiError::ContactAlreadyUsed {
                field: "access_token".into(),
                message: format!(
                    "the address {provider} gives for this user belongs to another account; it is never linked automatically: sign in to that account to link {provider} to it"
                ),
            }));
        }
    }
    Ok(None)
}

fn records(
    signup: &SocialSignup,
    who: &ProviderIdentity,
    now: DateTime<Utc>,
) -> (AccountRow, Vec<ContactRow>, IdentityRow, Option<Envelope>) {
    let id = uuid::Uuid::now_v7().to_string();
    let created_at = now.naive_utc();
    let account = AccountRow {
        id: id.clone(),
        username: None,
        username_normalized: None,
        full_name: who.name.clone(),
        locale: signup.locale.as_ref().map(|l| l.as_str().to_owned()),
        // No password: the user signs in through the provider, or sets one later
        // with a password reset.
        password_hash: None,
        account_type: signup.account_type.as_str().to_owned(),
        status: "active".into(),
        created_at,
        expires_at: match signup.account_type {
            AccountType::Test => Some(created_at + chrono::Duration::hours(24)),
            AccountType::Standard => None,
        },
    };
    let email = who.email.as_ref().filter(|_| who.email_verified);
    let contacts = email
        .map(|e| ContactRow {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: id.clone(),
            kind: "EMAIL".into(),
            value: e.as_str().to_owned(),
            value_normalized: e.normalized(),
            is_primary: true,
            // The provider confirmed it.
            verified_at: Some(created_at),
            created_at,
        })
        .into_iter()
        .collect();
    let identity = IdentityRow {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: id.clone(),
        provider: signup.provider.clone(),
        subject: who.subject.clone(),
        created_at,
    };
    let envelope = email.map(|e| {
        Envelope::new(Notification::SocialWelcome {
            to: e.as_str().to_owned(),
            account_id: id.clone(),
            full_name: who.name.clone(),
            provider: signup.provider.clone(),
            language: signup
                .locale
                .as_ref()
                .and_then(|l| l.language_639_1())
                .unwrap_or("en")
                .to_owned(),
        })
    });
    (account, contacts, identity, envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn providers() -> Providers {
        let settings: SocialSettings = serde_json::from_value(json!({"providers": {
            "acme": {"kind": "oidc", "userinfo_url": "http://127.0.0.1:9/userinfo", "client_ids": ["web-app"]},
            "google": {"kind": "google"},
        }}))
        .expect("settings");
        Providers::new(&settings).expect("providers")
    }

    fn field_of(body: Value) -> (String, String) {
        let map = body.as_object().expect("object").clone();
        match parse(&map, &providers()) {
            Err(ApiError::InvalidArgument { field, .. }) => (field, "400".into()),
            Err(ApiError::IllegalAccessAt { field, .. }) => (field, "403".into()),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field() {
        let ok = json!({"provider_name": "google", "access_token": "t", "user_id": "1",
            "oauth_consumer_key": "k", "oauth_consumer_secret": "s", "locale": "eng-US",
            "expiration_time": "2999-01-01T00:00:00Z"});
        let parsed = parse(ok.as_object().expect("object"), &providers()).expect("valid");
        assert_eq!(parsed.user_id, "1");
        let mut upper = ok.clone();
        upper["provider_name"] = json!("Google");
        let parsed = parse(upper.as_object().expect("object"), &providers()).expect("valid");
        assert_eq!(parsed.provider, "google", "names match whatever their case");
        assert!(
            !format!("{parsed:?}").contains("\"t\""),
            "the token is not printed"
        );
        let cases = [
            (
                json!({"access_token": "t", "user_id": "1"}),
                "provider_name",
                "400",
            ),
            (
                json!({"provider_name": "foursquare", "access_token": "t", "user_id": "1"}),
                "provider_name",
                "400",
            ),
            (
                json!({"provider_name": "Gowalla", "access_token": "t", "user_id": "1"}),
                "provider_name",
                "400",
            ),
            (
                json!({"provider_name": "twitter", "access_token": "t", "user_id": "1"}),
                "provider_name",
                "400",
            ),
            (
                json!({"provider_name": "google", "user_id": "1"}),
                "access_token",
                "400",
            ),
            (
                json!({"provider_name": "google", "access_token": 5, "user_id": "1"}),
                "access_token",
                "400",
            ),
            (
                json!({"provider_name": "google", "access_token": "t"}),
                "user_id",
                "400",
            ),
            (
                json!({"provider_name": "google", "access_token": "t", "user_id": "1", "password": "x"}),
                "password",
                "400",
            ),
            (
                json!({"provider_name": "google", "access_token": "t", "user_id": "1", "locale": "english"}),
                "locale",
                "400",
            ),
            (
                json!({"provider_name": "google", "access_token": "t", "user_id": "1", "expiration_time": "soon"}),
                "expiration_time",
                "400",
            ),
            (
                json!({"provider_name": "google", "access_token": "t", "user_id": "1", "expiration_time": "2001-01-01T00:00:00Z"}),
                "expiration_time",
                "400",
            ),
            (
                json!({"provider_name": "google", "access_token": "t", "user_id": "1", "oauth_consumer_secret": 1}),
                "oauth_consumer_secret",
                "400",
            ),
            (
                json!({"provider_name": "acme", "access_token": "t", "user_id": "1"}),
                "oauth_consumer_key",
                "400",
            ),
            (
                json!({"provider_name": "acme", "access_token": "t", "user_id": "1", "oauth_consumer_key": "evil-app"}),
                "oauth_consumer_key",
                "403",
            ),
        ];
        for (body, field, status) in cases {
            assert_eq!(
                field_of(body.clone()),
                (field.to_owned(), status.to_owned()),
                "{body}"
            );
        }
    }

    #[test]
    fn expiration_times_in_every_form() {
        for v in [
            json!("2030-05-01T10:00:00Z"),
            json!("20300501T100000+0000"),
            json!(1903860000),
            json!("1903860000"),
        ] {
            let t = expiration_time(Some(&v)).expect("valid").expect("some");
            assert_eq!(t.to_rfc3339(), "2030-05-01T10:00:00+00:00", "{v}");
        }
    }

    #[test]
    fn facebook_proof_is_the_hmac_of_the_token() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231 style vector.
        assert_eq!(
            appsecret_proof(
                Some(&SecretString::from("key")),
                "The quick brown fox jumps over the lazy dog"
            ),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn only_verified_addresses_count_as_verified() {
        let claims = |v: Value| v.as_object().expect("object").clone();
        let oidc = identity_of(
            SocialProviderKind::Oidc,
            &claims(json!({"sub": "s", "email": "a@example.com"})),
        )
        .expect("id");
        assert!(!oidc.email_verified && oidc.email.is_some());
        let oidc = identity_of(
            SocialProviderKind::Oidc,
            &claims(json!({"sub": "s", "email": "a@example.com", "email_verified": true})),
        )
        .expect("id");
        assert!(oidc.email_verified);
        let fb = identity_of(
            SocialProviderKind::Facebook,
            &claims(json!({"id": "10", "email": "a@example.com"})),
        )
        .expect("id");
        assert!(fb.email_verified && fb.subject == "10");
        assert!(identity_of(SocialProviderKind::Oidc, &claims(json!({"id": "10"}))).is_none());
    }

    #[test]
    fn introspection_names_the_application_a_token_belongs_to() {
        let allowed = ["web-app".to_owned()];
        let answer = |v: Value| v.as_object().expect("object").clone();
        let ok = |v: Value| check_introspection("acme", &allowed, &answer(v)).is_ok();
        assert!(ok(json!({"active": true, "client_id": "web-app"})));
        assert!(ok(json!({"active": true, "aud": ["api", "web-app"]})));
        assert!(ok(json!({"active": true, "azp": "web-app"})));
        assert!(!ok(json!({"active": true, "client_id": "other-app"})));
        assert!(!ok(json!({"active": true})));
        assert!(!ok(json!({"active": false, "client_id": "web-app"})));
        assert!(!ok(json!({"active": "true", "client_id": "web-app"})));
        assert!(check_introspection("acme", &[], &answer(json!({"active": true}))).is_ok());
        // Google's tokeninfo has no `active`: only the audience counts.
        assert!(check_audience("google", &allowed, &answer(json!({"aud": "web-app"}))).is_ok());
        assert!(check_audience("google", &allowed, &answer(json!({"aud": "x"}))).is_err());
    }

    #[test]
    fn configuration_is_checked_at_start() {
        let bad = |v: Value| Providers::new(&serde_json::from_value(v).expect("settings")).is_err();
        assert!(bad(json!({"providers": {"acme": {"kind": "oidc"}}})));
        assert!(bad(
            json!({"providers": {"facebook": {"kind": "facebook"}}})
        ));
        assert!(bad(json!({"providers": {"gowalla": {"kind": "google"}}})));
        assert!(bad(
            json!({"providers": {"acme": {"kind": "oidc", "userinfo_url": "ftp://x/"}}})
        ));
    }
}

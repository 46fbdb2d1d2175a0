//! Configuration: defaults in code, then an optional YAML file, then `ADMIT__…`
//! environment variables (`ADMIT__DATABASE__URL`, `ADMIT__MAILER__SMTP__HOST`).
//! Unknown keys are refused, so a misspelt setting fails at start instead of being
//! silently ignored. Secrets are `SecretString`s: they never appear in `Debug`
//! output or logs.

use admit_domain::{PasswordPolicy, Stage};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub stage: Stage,
    /// Where links in emails point (`https://accounts.example.com`). Never taken from
    /// a request's `Host`.
    pub public_base_url: String,
    pub bind: String,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub internal: InternalSettings,
    pub account: AccountSettings,
    pub oauth: OAuthSettings,
    pub mailer: MailerSettings,
    /// Per-partner rate limits and quotas ([`crate::limits`]).
    pub limits: crate::limits::LimitSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            stage: Stage::Development,
            public_base_url: "http://127.0.0.1:8080".into(),
            bind: "127.0.0.1".into(),
            http: HttpSettings::default(),
            log: LogSettings::default(),
            database: DatabaseSettings::default(),
            redis: RedisSettings::default(),
            internal: InternalSettings::default(),
            account: AccountSettings::default(),
            oauth: OAuthSettings::default(),
            mailer: MailerSettings::default(),
            limits: crate::limits::LimitSettings::default(),
        }
    }
}

/// `http`: what every service's HTTP server shares.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// The gateway's addresses (CIDRs or addresses; a list, or one comma-separated
    /// string as `ADMIT__HTTP__TRUSTED_PROXIES` gives it). A request from one of them
    /// has its client address taken from `X-Forwarded-For` ([`crate::client`]);
    /// empty: the TCP peer is the client.
    pub trusted_proxies: crate::client::TrustedProxies,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line, for production log pipelines.
    #[default]
    Json,
    /// Readable lines, for a person at a terminal.
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive (`info`, `admit_mailer=debug,info`).
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://user@host/db` or `sqlite://path/to/file.db`.
    pub url: SecretString,
    pub max_connections: u32,
    /// The longest a request waits for a database connection: with the database
    /// down, every API answers 503 (with `Retry-After`) after at most this long.
    pub connect_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/admit"),
            max_connections: 16,
            connect_timeout_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    pub url: SecretString,
    /// Prefix of every key this deployment writes.
    pub prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("redis://127.0.0.1:6379"),
            prefix: "admit".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InternalSettings {
    /// The credential services present to each other's internal endpoints.
    pub token: SecretString,
    /// The operators' credential for the admin API (`/admin/v1/…`).
    pub admin_token: SecretString,
    /// 32 random bytes in base64, shared by the account service and the mailer: the
    /// tokens of email links (set your password) are derived from it, so neither the
    /// database nor the queue holds a usable link.
    pub link_key: SecretString,
}

impl InternalSettings {
    /// The decoded link key; refused unless it is at least 32 bytes of base64.
    pub fn link_key(&self) -> Result<Vec<u8>, ConfigError> {
        use base64::Engine as _;
        let raw = self.link_key.expose_secret().trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
            .unwrap_or_default();
        if bytes.len() < 32 {
            return Err(ConfigError(
                "internal.link_key must be at least 32 random bytes in base64 (e.g. `openssl rand -base64 32`)".into(),
            ));
        }
        Ok(bytes)
    }
}

impl Default for InternalSettings {
    fn default() -> Self {
        Self {
            token: SecretString::from(""),
            admin_token: SecretString::from(""),
            link_key: SecretString::from(""),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountSettings {
    pub port: u16,
    pub password: PasswordPolicy,
    /// Threads that compute password hashes (0: one per core). Hashing never runs on
    /// the async workers.
    pub hash_threads: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Outbox rows the relay publishes per round trip.
    pub relay_batch: usize,
    /// How long a login session lasts.
    pub session_ttl_secs: i64,
    /// Failed logins allowed per account, then per client address, within
    /// `login_window_secs`; further attempts wait until the window ends.
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_window_secs: u64,
    /// How long a set-password link works (7 days).
    pub password_link_ttl_secs: i64,
    /// How long a password-reset link works (an hour).
    pub reset_link_ttl_secs: i64,
    /// A welcome (set-password) email is resent by an operator (`admit mail resend`,
    /// `POST /admin/v1/accounts/{id}/resend`) at most once per this many seconds per
    /// recipient.
    pub resend_cooldown_secs: u64,
    /// "Forgot your password?" requests that send an email, per email address, then
    /// per client address, within `reset_window_secs`; past them the same answer is
    /// shown and no email is sent.
    pub reset_requests_per_email: u32,
    pub reset_requests_per_address: u32,
    pub reset_window_secs: u64,
    /// `user.create`: most users in one request (more answer 413), and the body
    /// limit of that endpoint.
    pub batch_max_users: usize,
    pub batch_max_body_bytes: usize,
    /// Social sign-up (`POST /account`, implicit method): the providers it accepts.
    pub social: SocialSettings,
    /// The CAPTCHA that a public application's sign-up needs in staging and
    /// production (SPEC.md §3).
    pub captcha: CaptchaSettings,
    /// How often the purge of expired test accounts runs (one replica at a time).
    pub purge_every_secs: u64,
    /// How long the link of a "confirm your address" email works (7 days).
    pub confirm_link_ttl_secs: i64,
    /// How long the code of a "confirm your phone" text message works (15 minutes).
    pub confirm_code_ttl_secs: i64,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            port: 8081,
            password: PasswordPolicy::default(),
            hash_threads: 0,
            max_body_bytes: 64 * 1024,
            relay_batch: 500,
            session_ttl_secs: 12 * 3600,
            login_failures_per_account: 5,
            login_failures_per_address: 50,
            login_window_secs: 900,
            password_link_ttl_secs: 7 * 24 * 3600,
            reset_link_ttl_secs: 3600,
            resend_cooldown_secs: 900,
            reset_requests_per_email: 3,
            reset_requests_per_address: 20,
            reset_window_secs: 3600,
            batch_max_users: 10_000,
            batch_max_body_bytes: 16 * 1024 * 1024,
            social: SocialSettings::default(),
            captcha: CaptchaSettings::default(),
            purge_every_secs: 600,
            confirm_link_ttl_secs: 7 * 24 * 3600,
            confirm_code_ttl_secs: 15 * 60,
        }
    }
}

/// `account.social`: the social providers whose access tokens `POST /account` accepts
/// (its implicit method). None by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocialSettings {
    /// By the name callers give as `provider_name` (`facebook`, `google`, `acme`).
    pub providers: std::collections::BTreeMap<String, SocialProviderSettings>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SocialProviderKind {
    /// Graph API `GET /me?fields=id,name,email` with `appsecret_proof`; subject `id`.
    Facebook,
    /// Google's OpenID Connect userinfo endpoint; subject `sub`.
    Google,
    /// Any OpenID Connect provider, by its userinfo endpoint; subject `sub`.
    Oidc,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocialProviderSettings {
    pub kind: SocialProviderKind,
    /// The endpoint asked whom a token belongs to. Defaults: facebook
    /// `https://graph.facebook.com/me`, google
    /// `https://openidconnect.googleapis.com/v1/userinfo`; required for `oidc`.
    #[serde(default)]
    pub userinfo_url: Option<String>,
    /// facebook: the app secret; every Graph call carries its `appsecret_proof`
    /// (HMAC-SHA256 of the access token under it). Required for facebook.
    #[serde(default)]
    pub app_secret: Option<SecretString>,
    /// The `oauth_consumer_key` values (the provider's client ids of the caller's
    /// application) allowed to sign users up with this provider; empty: any. A list,
    /// or one string of comma-separated ids (as an environment variable gives it).
    #[serde(default, deserialize_with = "string_list")]
    pub client_ids: Vec<String>,
    /// How long the provider may take to answer, in milliseconds.
    #[serde(default = "social_timeout_ms")]
    pub timeout_ms: u64,
    /// google, oidc: the provider's RFC 7662 introspection endpoint. With it a token
    /// must be active and, when `client_ids` is set, issued to one of them: a token
    /// another application obtained cannot sign up, whatever `oauth_consumer_key`
    /// says. (Facebook's `appsecret_proof` binds tokens to the app instead.)
    #[serde(default)]
    pub introspection_url: Option<String>,
    /// The platform's credentials at the introspection endpoint (HTTP Basic).
    #[serde(default)]
    pub introspection_client_id: Option<String>,
    #[serde(default)]
    pub introspection_client_secret: Option<SecretString>,
    /// google: the tokeninfo endpoint asked, when `client_ids` is set (and there is no
    /// introspection), which application a token was issued to (`aud`, `azp`).
    /// Default `https://oauth2.googleapis.com/tokeninfo`.
    #[serde(default)]
    pub tokeninfo_url: Option<String>,
}

fn social_timeout_ms() -> u64 {
    5_000
}

/// A list of strings given as a list, or as one comma-separated string (numbers,
/// which environment variables parse into, are taken as their digits).
pub(crate) fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Item {
        Text(String),
        Number(i64),
    }
    impl Item {
        fn text(self) -> String {
            match self {
                Item::Text(s) => s,
                Item::Number(n) => n.to_string(),
            }
        }
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Item),
        Many(Vec<Item>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(item) => item
            .text()
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect::<Vec<_>>(),
        OneOrMany::Many(items) => items.into_iter().map(Item::text).collect(),
    };
    Ok(items.into_iter().filter(|s| !s.is_empty()).collect())
}

/// A siteverify endpoint: reCAPTCHA, hCaptcha and Cloudflare Turnstile all take a
/// form POST of `secret`, `response` and `remoteip` and answer
/// `{"success": bool, "score"?: number, "error-codes"?: [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptchaSettings {
    pub siteverify_url: String,
    /// The platform's secret with the CAPTCHA provider (never the `private_key` a
    /// client sends: a public application cannot keep one).
    pub secret: SecretString,
    /// The lowest `score` accepted, where the provider sends one (reCAPTCHA v3).
    pub min_score: f64,
    /// How long siteverify may take; past it the sign-up answers 503, never passes.
    pub timeout_ms: u64,
    /// Per public client: its own endpoint, secret or threshold (a list, so client
    /// ids keep their case in YAML).
    pub clients: Vec<ClientCaptcha>,
}

impl Default for CaptchaSettings {
    fn default() -> Self {
        Self {
            siteverify_url: "https://www.google.com/recaptcha/api/siteverify".into(),
            secret: SecretString::from(""),
            min_score: 0.5,
            timeout_ms: 3000,
            clients: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCaptcha {
    pub client_id: String,
    #[serde(default)]
    pub siteverify_url: Option<String>,
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub min_score: Option<f64>,
}

impl CaptchaSettings {
    /// The endpoint, secret and threshold that apply to `client_id`.
    pub fn for_client(&self, client_id: &str) -> (&str, &SecretString, f64) {
        let own = self.clients.iter().find(|c| c.client_id == client_id);
        (
            own.and_then(|c| c.siteverify_url.as_deref())
                .unwrap_or(&self.siteverify_url),
            own.and_then(|c| c.secret.as_ref()).unwrap_or(&self.secret),
            own.and_then(|c| c.min_score).unwrap_or(self.min_score),
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthSettings {
    pub port: u16,
    /// The `iss` of every token and the base of the metadata's URLs (default: the
    /// public base URL).
    pub issuer: Option<String>,
    /// Access token lifetime for clients registered without their own.
    pub access_ttl_secs: u32,
    /// How often the service re-reads its signing keys (a rotation takes effect
    /// within this time, without a restart).
    pub key_refresh_secs: u64,
    /// How long a user's authorization of a client lasts: its refresh tokens rotate
    /// within it and end with it.
    pub refresh_ttl_secs: i64,
    /// 32 random bytes, base64: the signing keys are stored encrypted under it.
    /// Required outside the embedded default (which keeps one in its data directory).
    pub key_encryption_key: SecretString,
    /// `ES256` (default), `RS256` or `EdDSA`: the algorithm of new signing keys (a
    /// first key, and every rotation).
    pub signing_alg: String,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        Self {
            port: 8082,
            issuer: None,
            access_ttl_secs: 86_400,
            key_refresh_secs: 30,
            refresh_ttl_secs: 30 * 86_400,
            key_encryption_key: SecretString::from(""),
            signing_alg: "ES256".into(),
        }
    }
}

impl Settings {
    /// The issuer identifier: configured, or the public base URL.
    pub fn issuer(&self) -> String {
        self.oauth
            .issuer
            .clone()
            .unwrap_or_else(|| self.public_base_url.clone())
            .trim_end_matches('/')
            .to_owned()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on the same host or a test capture server.
    None,
    /// STARTTLS on the submission port (required: a relay without it is refused).
    #[default]
    Starttls,
    /// Implicit TLS (SMTPS, port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Connections kept open to the relay.
    pub pool_size: u32,
    pub timeout_secs: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            pool_size: 8,
            timeout_secs: 30,
        }
    }
}

/// The SMS gateway: text messages (the codes that confirm a phone) are sent as an
/// HTTP POST of `{"to": "+…", "text": "…"}` to `url`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    /// The gateway's endpoint; unset: text messages cannot be sent (they are
    /// dead-lettered). The embedded default keeps them in its inbox instead.
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<SecretString>,
    /// The whole request's time limit (0: 10 seconds).
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailerSettings {
    pub port: u16,
    pub smtp: SmtpSettings,
    pub sms: SmsSettings,
    /// The From header of every email.
    pub from: String,
    /// The platform's name as emails say it.
    pub platform_name: String,
    /// This replica's name in the consumer group (default: host name and pid).
    pub consumer: Option<String>,
    /// A pending message idle this long is taken over from its consumer: longer than
    /// the slowest send.
    pub claim_idle_ms: u64,
    /// Attempts before a message is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt.
    pub retry_base_ms: u64,
    /// Messages per batch, sent at once (over at most `smtp.pool_size` sessions).
    pub concurrency: usize,
    /// How long a short batch waits for more messages (shares the per-batch database
    /// work among them; adds at most this much latency to an email).
    pub batch_window_ms: u64,
    /// Batches handled at once: one batch's database work overlaps another's sends.
    pub batches_in_flight: usize,
}

impl Default for MailerSettings {
    fn default() -> Self {
        Self {
            port: 8083,
            smtp: SmtpSettings::default(),
            sms: SmsSettings::default(),
            from: "admit <no-reply@admit.invalid>".into(),
            platform_name: "admit".into(),
            consumer: None,
            claim_idle_ms: 60_000,
            max_attempts: 8,
            retry_base_ms: 5_000,
            concurrency: 16,
            batch_window_ms: 200,
            batches_in_flight: 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads defaults, then `file` (YAML) if given, then `ADMIT__…` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// [`Settings::load`] with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("{} does not exist", path.display())));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Yaml));
        }
        let vars: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("ADMIT__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("ADMIT")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(vars)),
        );
        let cfg = builder.build().map_err(|e| ConfigError(e.to_string()))?;
        cfg.try_deserialize()
            .map_err(|e| ConfigError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_defaults() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("ADMIT__DATABASE__URL", "sqlite://x.db"),
                ("ADMIT__MAILER__SMTP__PORT", "2525"),
                ("ADMIT__STAGE", "production"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.database.url.expose_secret(), "sqlite://x.db");
        assert_eq!(s.mailer.smtp.port, 2525);
        assert_eq!(s.stage, Stage::Production);
        assert_eq!(s.account.password.min_length, 6);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Settings::load_with_env(None, env(&[("ADMIT__DATABSE__URL", "x")]))
            .expect_err("misspelt key");
        assert!(e.to_string().contains("databse"), "{e}");
        let dir = std::env::temp_dir().join(format!("admit-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.yaml");
        std::fs::write(&f, "mailer:\n  smtp:\n    hots: x\n").expect("write");
        assert!(Settings::load_with_env(Some(&f), Vec::new()).is_err());
    }

    #[test]
    fn social_providers_come_from_the_environment() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("ADMIT__ACCOUNT__SOCIAL__PROVIDERS__ACME__KIND", "oidc"),
                (
                    "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__ACME__USERINFO_URL",
                    "http://127.0.0.1:1/userinfo",
                ),
                (
                    "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__ACME__CLIENT_IDS",
                    "web-app, ios-app",
                ),
                (
                    "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__FACEBOOK__KIND",
                    "facebook",
                ),
                (
                    "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__FACEBOOK__APP_SECRET",
                    "fb-secret-value",
                ),
                (
                    "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__FACEBOOK__CLIENT_IDS",
                    "1234567890",
                ),
            ]),
        )
        .expect("loads");
        let acme = &s.account.social.providers["acme"];
        assert_eq!(acme.kind, SocialProviderKind::Oidc);
        assert_eq!(acme.client_ids, ["web-app", "ios-app"]);
        assert_eq!(acme.timeout_ms, 5_000);
        let fb = &s.account.social.providers["facebook"];
        assert_eq!(fb.client_ids, ["1234567890"]);
        assert!(!format!("{s:?}").contains("fb-secret-value"));
        assert!(Settings::load_with_env(
            None,
            env(&[("ADMIT__ACCOUNT__SOCIAL__PROVIDERS__X__KIND", "myspace")])
        )
        .is_err());
    }

    #[test]
    fn trusted_proxies_come_from_a_comma_separated_variable() {
        let s = Settings::load_with_env(
            None,
            env(&[("ADMIT__HTTP__TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7")]),
        )
        .expect("loads");
        let t = &s.http.trusted_proxies;
        assert!(t.contains("10.2.3.4".parse().expect("ip")));
        assert!(t.contains("192.0.2.7".parse().expect("ip")));
        assert!(!t.contains("192.0.2.8".parse().expect("ip")));
        assert!(Settings::load_with_env(None, Vec::new())
            .expect("loads")
            .http
            .trusted_proxies
            .is_empty());
        let e = Settings::load_with_env(None, env(&[("ADMIT__HTTP__TRUSTED_PROXIES", "gw")]))
            .expect_err("not an address");
        assert!(e.to_string().contains("http.trusted_proxies"), "{e}");
    }

    #[test]
    fn partner_limits_come_from_the_environment() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("ADMIT__LIMITS__PARTNER__REQUESTS_PER_SECOND", "2.5"),
                ("ADMIT__LIMITS__PARTNER__DAILY_ACCOUNTS", "1000"),
                ("ADMIT__LIMITS__PARTNERS__P_00AB__REQUESTS_PER_SECOND", "10"),
                ("ADMIT__LIMITS__PARTNERS__P_00AB__BATCH_MAX_USERS", "50"),
            ]),
        )
        .expect("loads");
        let small = s.limits.of("p_other");
        assert_eq!(small.rate.map(|r| r.per_second), Some(2.5));
        assert_eq!(small.daily_accounts, Some(1000));
        let big = s.limits.of("p_00ab");
        assert_eq!(big.rate.map(|r| (r.per_second, r.burst)), Some((10.0, 10)));
        assert_eq!(big.batch_max_users, Some(50));
        assert_eq!(big.daily_accounts, Some(1000));
        assert!(Settings::load_with_env(
            None,
            env(&[("ADMIT__LIMITS__PARTNERS__P_1__REQUESTS", "1")])
        )
        .is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = Settings::load_with_env(
            None,
            env(&[("ADMIT__DATABASE__URL", "postgres://u:hunter2@db/x")]),
        )
        .expect("loads");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}

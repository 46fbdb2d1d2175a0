//! Start-up self-checks of the production services: what makes a service refuse to
//! start, and what keeps its `/readyz` failing.
//!
//! - A required secret that is empty (in staging and production; the link key and the
//!   key-encryption key in every stage): the service refuses to start, with one JSON
//!   log line naming each setting ([`Refusal`]), and exits non-zero.
//! - Migrations behind (the database lacks migrations this binary knows): the service
//!   refuses to start. The chart runs `admit migrate` as a Job before every install
//!   and upgrade, and the new pods start after it; a pod that starts before (or on a
//!   database nobody migrated) exits and is restarted until the schema is there. A
//!   database that cannot be reached at start is not a refusal: the `migrations`
//!   readiness check asks again until it once succeeds.
//! - `internal.link_key` differing between the account service and the mailer (the
//!   mailer derives the links of the emails that the account service stores digests
//!   of: with another key every link it sends is dead). Each service publishes a
//!   fingerprint of its key ([`admit_domain::secret::link_key_fingerprint`], never the
//!   key) in Redis, with the time it last did; the mailer's `link_key` readiness check
//!   fails, and it logs an error, while the account replicas on record (those seen in
//!   the last [`LINK_KEY_TTL`]) all have another one.

use crate::{Readiness, Settings};
use admit_domain::secret::link_key_fingerprint;
use admit_store::Db;
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The services that check themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Account,
    OAuth,
    Mailer,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Account => "admit-account",
            Service::OAuth => "admit-oauth",
            Service::Mailer => "admit-mailer",
        }
    }
}

/// One reason not to start: the setting (or `database`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub setting: String,
    pub message: String,
}

impl Problem {
    fn new(setting: &str, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// Why a service refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("{service} refuses to start: {}", .problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
pub struct Refusal {
    pub service: &'static str,
    pub problems: Vec<Problem>,
}

impl Refusal {
    /// The settings at fault, for the log line's `settings` field.
    pub fn settings(&self) -> Vec<&str> {
        self.problems.iter().map(|p| p.setting.as_str()).collect()
    }
}

fn empty(s: &secrecy::SecretString) -> bool {
    s.expose_secret().trim().is_empty()
}

/// The required secrets of `service` that `settings` leaves empty or unusable.
pub fn secrets(service: Service, settings: &Settings) -> Vec<Problem> {
    let strict = settings.stage.is_strict();
    let stage = format!("{:?}", settings.stage).to_lowercase();
    let mut out = Vec::new();
    if matches!(service, Service::Account | Service::Mailer)
        && settings.internal.link_key().is_err()
    {
        let what = if empty(&settings.internal.link_key) {
            "internal.link_key is empty"
        } else {
            "internal.link_key is shorter than 32 bytes or not base64"
        };
        out.push(Problem::new(
                "internal.link_key",
                format!(
                    "{what}: the account service and the mailer need the same 32 random bytes in base64 (`openssl rand -base64 32`, ADMIT__INTERNAL__LINK_KEY)"
                ),
            ));
    }
    if service == Service::OAuth && empty(&settings.oauth.key_encryption_key) {
        out.push(Problem::new(
            "oauth.key_encryption_key",
            "oauth.key_encryption_key is empty: the signing keys are stored encrypted under it (32 random bytes in base64, ADMIT__OAUTH__KEY_ENCRYPTION_KEY)",
        ));
    }
    if service == Service::Account && strict {
        let captcha = &settings.account.captcha;
        let per_client = !captcha.clients.is_empty()
            && captcha
                .clients
                .iter()
                .all(|c| c.secret.as_ref().is_some_and(|s| !empty(s)));
        if empty(&captcha.secret) && !per_client {
            out.push(Problem::new(
                "account.captcha.secret",
                format!(
                    "account.captcha.secret is empty: in {stage} a public application's sign-up needs its CAPTCHA verified (ADMIT__ACCOUNT__CAPTCHA__SECRET)"
                ),
            ));
        }
    }
    if service == Service::Mailer && strict {
        let smtp = &settings.mailer.smtp;
        let user = smtp
            .username
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty());
        if user && smtp.password.as_ref().is_none_or(empty) {
            out.push(Problem::new(
                "mailer.smtp.password",
                "mailer.smtp.password is empty while mailer.smtp.username is set (ADMIT__MAILER__SMTP__PASSWORD)",
            ));
        }
    }
    out
}

/// Whether `db` has every migration this binary knows: `Ok(None)` yes, `Ok(Some(_))`
/// the problem, `Err` the database could not tell.
pub async fn migrations(db: &Db) -> Result<Option<Problem>, String> {
    let db = db.clone();
    let pending = tokio::task::spawn_blocking(move || db.pending_migrations())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(pending.last().map(|latest| {
        Problem::new(
            "database",
            format!(
                "database migrations are behind: {} of this version's migrations are not applied (the latest is {latest}); run `admit migrate` (the chart's migration Job does) first",
                pending.len()
            ),
        )
    }))
}

/// The checks that can refuse a start: secrets, then migrations. A database that
/// cannot be asked is left to [`migrations_check`].
pub async fn at_start(service: Service, settings: &Settings, db: &Db) -> Result<(), Refusal> {
    let mut problems = secrets(service, settings);
    match migrations(db).await {
        Ok(Some(p)) => problems.push(p),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether the database migrations are applied; /readyz asks again")
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Refusal {
            service: service.name(),
            problems,
        })
    }
}

/// `readiness` with a `migrations` check: fails while the database lacks migrations
/// (or cannot be asked); once it had them all, it is not asked again.
pub fn migrations_check(readiness: Readiness, db: Db) -> Readiness {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    readiness.check("migrations", move || {
        let (db, done) = (db.clone(), done.clone());
        async move {
            use std::sync::atomic::Ordering;
            if done.load(Ordering::Relaxed) {
                return Ok(());
            }
            match migrations(&db).await? {
                Some(p) => Err(p.message),
                None => {
                    done.store(true, Ordering::Relaxed);
                    Ok(())
                }
            }
        }
    })
}

/// How often a service publishes its link-key fingerprint (and the mailer compares).
pub const LINK_KEY_EVERY: Duration = Duration::from_secs(5);
/// How long a published fingerprint counts: a replica not seen for this long (it
/// stopped, or was rolled to another key) is no longer on record.
pub const LINK_KEY_TTL: Duration = Duration::from_secs(30);

/// What the mailer knows of the account service's link key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyState {
    /// Nothing on record yet, or Redis could not be asked.
    Unknown,
    Same,
    Differs,
}

/// Publishes this service's link-key fingerprint in Redis and, for the mailer,
/// compares it with the account service's.
#[derive(Clone)]
pub struct LinkKeyCheck {
    client: redis::Client,
    prefix: String,
    service: Service,
    fingerprint: String,
    state: Arc<Mutex<KeyState>>,
}

impl LinkKeyCheck {
    pub fn new(service: Service, settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(settings.redis.url.expose_secret())?,
            prefix: settings.redis.prefix.clone(),
            service,
            fingerprint: link_key_fingerprint(&settings.internal.link_key()?),
            state: Arc::new(Mutex::new(KeyState::Unknown)),
        })
    }

    fn key(&self, service: Service) -> String {
        format!("{}:link-key:{}", self.prefix, service.name())
    }

    /// `readiness` with a `link_key` check (the mailer's).
    pub fn readiness(&self, readiness: Readiness) -> Readiness {
        let state = self.state.clone();
        readiness.check("link_key", move || {
            let differs =
                *state.lock().unwrap_or_else(|p| p.into_inner()) == KeyState::Differs;
            async move {
                if differs {
                    Err("internal.link_key differs from admit-account's: the links of the emails would not work".to_owned())
                } else {
                    Ok(())
                }
            }
        })
    }

    /// Whether the last comparison found this key differs from the account service's
    /// (the mailer holds its mail while it does).
    pub fn differs(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let state = self.state.clone();
        move || *state.lock().unwrap_or_else(|p| p.into_inner()) == KeyState::Differs
    }

    /// One comparison now (at most a few seconds), so that a mailer with the wrong
    /// key holds its mail from the start instead of from the first periodic round.
    pub async fn check_once(&self) {
        let once = async {
            let mut c = ConnectionManager::new(self.client.clone()).await.ok()?;
            self.round(&mut c).await.ok()
        };
        if let Ok(Some(state)) = tokio::time::timeout(Duration::from_secs(3), once).await {
            self.record(state);
        }
    }

    /// Every [`LINK_KEY_EVERY`] until `stop`: publish, and compare (the mailer).
    pub async fn run(self, stop: CancellationToken) {
        let mut conn: Option<ConnectionManager> = None;
        loop {
            if conn.is_none() {
                conn = ConnectionManager::new(self.client.clone()).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                match self.round(c).await {
                    Ok(state) => self.record(state),
                    Err(e) => {
                        tracing::warn!(error = %e, "link-key check: Redis unavailable; will retry");
                        self.record(KeyState::Unknown);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(LINK_KEY_EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn round(&self, conn: &mut ConnectionManager) -> redis::RedisResult<KeyState> {
        let now = chrono::Utc::now().timestamp();
        let oldest = now - LINK_KEY_TTL.as_secs() as i64;
        let own = self.key(self.service);
        redis::pipe()
            .zadd(&own, &self.fingerprint, now)
            .ignore()
            .zrembyscore(&own, "-inf", oldest - 1)
            .ignore()
            .expire(&own, (LINK_KEY_TTL.as_secs() * 2) as i64)
            .ignore()
            .query_async::<()>(conn)
            .await?;
        if self.service != Service::Mailer {
            return Ok(KeyState::Unknown);
        }
        let accounts: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(Service::Account))
            .arg(oldest)
            .arg("+inf")
            .query_async(conn)
            .await?;
        Ok(if accounts.is_empty() {
            KeyState::Unknown
        } else if accounts.contains(&self.fingerprint) {
            KeyState::Same
        } else {
            KeyState::Differs
        })
    }

    fn record(&self, new: KeyState) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if new == KeyState::Unknown && *state != KeyState::Unknown {
            // Redis or the account service is away: keep what was known.
            return;
        }
        if new == KeyState::Differs && *state != KeyState::Differs {
            tracing::error!(
                setting = "internal.link_key",
                fingerprint = %self.fingerprint,
                "internal.link_key differs from admit-account's: the links of the emails this mailer sends would not work; it sends nothing and /readyz fails until they agree"
            );
        } else if new == KeyState::Same && *state == KeyState::Differs {
            tracing::info!("internal.link_key agrees with admit-account's again");
        }
        *state = new;
    }
}

/// Logs why `service` cannot start, as one line (JSON in production), and exits
/// non-zero. For `main`: every error that stops a start goes through here, so it
/// reaches the log pipeline rather than a bare line on stderr.
pub fn exit(service: &str, error: &anyhow::Error) -> ! {
    if let Some(r) = error.downcast_ref::<Refusal>() {
        tracing::error!(service, settings = ?r.settings(), "{r}");
        std::process::exit(78);
    }
    tracing::error!(service, error = %format!("{error:#}"), "{service} stopped: {error:#}");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::load_with_env(
            None,
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("loads")
    }

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn names(p: &[Problem]) -> Vec<&str> {
        p.iter().map(|p| p.setting.as_str()).collect()
    }

    #[test]
    fn production_needs_its_secrets_development_only_the_keys() {
        let dev = settings(&[]);
        assert_eq!(
            names(&secrets(Service::Account, &dev)),
            ["internal.link_key"]
        );
        assert_eq!(
            names(&secrets(Service::OAuth, &dev)),
            ["oauth.key_encryption_key"]
        );
        let dev = settings(&[
            ("ADMIT__INTERNAL__LINK_KEY", KEY),
            ("ADMIT__MAILER__SMTP__USERNAME", "admit"),
        ]);
        assert!(secrets(Service::Account, &dev).is_empty());
        assert!(secrets(Service::Mailer, &dev).is_empty());

        let prod = [
            ("ADMIT__STAGE", "production"),
            ("ADMIT__INTERNAL__LINK_KEY", KEY),
            ("ADMIT__MAILER__SMTP__USERNAME", "admit"),
        ];
        let p = secrets(Service::Account, &settings(&prod));
        assert_eq!(names(&p), ["account.captcha.secret"]);
        assert!(p[0].message.contains("production"), "{p:?}");
        assert_eq!(
            names(&secrets(Service::Mailer, &settings(&prod))),
            ["mailer.smtp.password"]
        );
        let mut full = prod.to_vec();
        full.extend([
            ("ADMIT__ACCOUNT__CAPTCHA__SECRET", "captcha-secret"),
            ("ADMIT__MAILER__SMTP__PASSWORD", "smtp-password"),
            ("ADMIT__OAUTH__KEY_ENCRYPTION_KEY", KEY),
        ]);
        let s = settings(&full);
        for service in [Service::Account, Service::OAuth, Service::Mailer] {
            assert!(secrets(service, &s).is_empty(), "{service:?}");
        }
        let short = settings(&[("ADMIT__INTERNAL__LINK_KEY", "c2hvcnQ=")]);
        let p = secrets(Service::Mailer, &short);
        assert!(p[0].message.contains("shorter than 32 bytes"), "{p:?}");
    }

    #[test]
    fn a_refusal_names_every_setting_and_no_secret() {
        let s = settings(&[
            ("ADMIT__STAGE", "staging"),
            ("ADMIT__INTERNAL__LINK_KEY", "c2hvcnQ="),
        ]);
        let r = Refusal {
            service: "admit-account",
            problems: secrets(Service::Account, &s),
        };
        assert_eq!(
            r.settings(),
            ["internal.link_key", "account.captcha.secret"]
        );
        let text = r.to_string();
        assert!(
            text.starts_with("admit-account refuses to start: internal.link_key"),
            "{text}"
        );
        assert!(!text.contains("c2hvcnQ"), "{text}");
    }
}

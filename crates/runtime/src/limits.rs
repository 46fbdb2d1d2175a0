//! Per-partner rate limits and quotas (`limits.partner` for every partner,
//! `limits.partners.<partner_id>` to override one): the settings, the rate limiter and
//! the refusals counter. The services decide where a limit applies; this module knows
//! how to count.
//!
//! A rate is a GCRA ("generic cell rate algorithm", a leaky bucket kept as one
//! timestamp per key): `requests_per_second` sustained, `burst` at once. The embedded
//! default keeps it in process ([`governor`]); production keeps it in Redis, one Lua
//! script per request that reads and moves the timestamp atomically with Redis's own
//! clock, so every replica counts against the same budget whatever its clock says.
//!
//! Availability wins over limiting: when Redis cannot be asked (down, slower than
//! [`REDIS_TIMEOUT`]), the request is let through with a warning, and Redis is left
//! alone for [`REDIS_BACKOFF`] so a dead Redis costs requests nothing.

use governor::clock::Clock as _;
use prometheus::{IntCounterVec, Opts};
use redis::aio::ConnectionManager;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a rate check waits for Redis before it lets the request through.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How long the limiter leaves Redis alone after it failed.
pub const REDIS_BACKOFF: Duration = Duration::from_secs(1);

/// `limits`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// The defaults of every partner.
    pub partner: PartnerLimitSettings,
    /// Overrides by partner id (`limits.partners.p_0123…`); a key left out keeps the
    /// default.
    pub partners: BTreeMap<String, PartnerLimitOverride>,
}

/// `limits.partner`: 0 everywhere means unlimited, the default, so that nothing
/// changes for an operator who configures nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerLimitSettings {
    /// Partner API requests per second (`POST /api/account/`, `user.create`,
    /// `POST /account` with a partner credential); 0: unlimited.
    pub requests_per_second: f64,
    /// Requests allowed at once above the rate; 0: the rate rounded up (at least 1).
    pub burst: u32,
    /// `POST /oauth/token` requests per second per client of the partner; 0: unlimited.
    pub token_requests_per_second: f64,
    /// 0: the token rate rounded up (at least 1).
    pub token_burst: u32,
    /// Accounts the partner may create per UTC day (both partner APIs, batch users
    /// included); 0: unlimited.
    pub daily_accounts: u64,
    /// Most users in one `user.create`; 0: `account.batch_max_users`.
    pub batch_max_users: usize,
}

/// `limits.partners.<partner_id>`: any key set replaces the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerLimitOverride {
    pub requests_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub token_requests_per_second: Option<f64>,
    pub token_burst: Option<u32>,
    pub daily_accounts: Option<u64>,
    pub batch_max_users: Option<usize>,
}

/// A rate: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// `None` (unlimited) for a rate that is not a positive number.
    pub fn new(per_second: f64, burst: u32) -> Option<Rate> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        let burst = if burst == 0 {
            // Saturating float-to-int cast: a huge rate is a huge burst.
            (per_second.ceil() as u32).max(1)
        } else {
            burst
        };
        Some(Rate { per_second, burst })
    }

    /// The time one request uses up.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1))
    }
}

/// The limits in force for one partner.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub rate: Option<Rate>,
    pub token_rate: Option<Rate>,
    pub daily_accounts: Option<u64>,
    pub batch_max_users: Option<usize>,
}

impl LimitSettings {
    /// The limits of `partner_id`: its overrides over the defaults. Keys from
    /// environment variables arrive lower-cased, so a partner's id is matched without
    /// regard to case.
    pub fn of(&self, partner_id: &str) -> Effective {
        let d = &self.partner;
        let o = self.partners.get(partner_id).or_else(|| {
            self.partners
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(partner_id))
                .map(|(_, v)| v)
        });
        let o = o.cloned().unwrap_or_default();
        Effective {
            rate: Rate::new(
                o.requests_per_second.unwrap_or(d.requests_per_second),
                o.burst.unwrap_or(d.burst),
            ),
            token_rate: Rate::new(
                o.token_requests_per_second
                    .unwrap_or(d.token_requests_per_second),
                o.token_burst.unwrap_or(d.token_burst),
            ),
            daily_accounts: Some(o.daily_accounts.unwrap_or(d.daily_accounts)).filter(|n| *n > 0),
            batch_max_users: Some(o.batch_max_users.unwrap_or(d.batch_max_users))
                .filter(|n| *n > 0),
        }
    }
}

/// What was refused, for the metric and the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The partner API request rate.
    Rate,
    /// The token endpoint's rate of a client.
    TokenRate,
    /// The daily account-creation quota.
    DailyAccounts,
    /// The per-partner batch size.
    BatchSize,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rate => "rate",
            Kind::TokenRate => "token_rate",
            Kind::DailyAccounts => "daily_accounts",
            Kind::BatchSize => "batch_size",
        }
    }
}

/// A request over a rate: retry after `retry_after_secs` (at least 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub kind: Kind,
    pub rate: Rate,
    pub retry_after_secs: u64,
}

/// Whole seconds, rounded up, at least 1: the value of `Retry-After`.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Seconds from `now` (UTC) until the next UTC midnight, at least 1.
pub fn secs_until_next_utc_day(now: chrono::NaiveDateTime) -> u64 {
    let next = now.date().succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0));
    let secs = next.map(|n| (n - now).num_seconds()).unwrap_or(86_400);
    u64::try_from(secs).unwrap_or(86_400).max(1)
}

/// The atomic GCRA of the Redis limiter. KEYS[1]: the key; ARGV[1]: the interval of
/// one request in µs; ARGV[2]: the burst times the interval, in µs. Returns 0 when the
/// request is allowed (and counts it), else the µs to wait. The theoretical arrival
/// time is kept as a decimal string of µs since the epoch, expiring when it passes.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - tolerance
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

type Direct = governor::DefaultDirectRateLimiter;

enum Backend {
    Memory(Mutex<HashMap<String, (Rate, Arc<Direct>)>>),
    Redis {
        client: redis::Client,
        conn: tokio::sync::Mutex<Option<ConnectionManager>>,
        prefix: String,
        script: redis::Script,
        /// Redis failed: leave it alone until then.
        resting_until: Mutex<Option<Instant>>,
    },
}

/// GCRA rate limits by key, in process or in Redis.
pub struct RateLimiter {
    backend: Backend,
}

impl RateLimiter {
    pub fn memory() -> Self {
        RateLimiter {
            backend: Backend::Memory(Mutex::new(HashMap::new())),
        }
    }

    /// Keys under `{prefix}:ratelimit:`; connects on first use and again after a
    /// failure, so a Redis that is down at start needs no restart of the service.
    pub fn redis(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(RateLimiter {
            backend: Backend::Redis {
                client: redis::Client::open(url)?,
                conn: tokio::sync::Mutex::new(None),
                prefix: prefix.to_owned(),
                script: redis::Script::new(GCRA),
                resting_until: Mutex::new(None),
            },
        })
    }

    /// Counts one request of `key` against `rate`: `Err(wait)` when it is over.
    pub async fn check(&self, key: &str, rate: Rate) -> Result<(), Duration> {
        match &self.backend {
            Backend::Memory(map) => {
                let limiter = {
                    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                    match map.get(key) {
                        Some((r, l)) if *r == rate => l.clone(),
                        _ => {
                            let l = Arc::new(direct(rate));
                            map.insert(key.to_owned(), (rate, l.clone()));
                            l
                        }
                    }
                };
                limiter.check().map_err(|not_until| {
                    not_until.wait_time_from(governor::clock::DefaultClock::default().now())
                })
            }
            Backend::Redis {
                client,
                conn,
                prefix,
                script,
                resting_until,
            } => {
                {
                    let resting = resting_until.lock().unwrap_or_else(|p| p.into_inner());
                    if resting.is_some_and(|t| Instant::now() < t) {
                        return Ok(());
                    }
                }
                let key = format!("{prefix}:ratelimit:{key}");
                let interval = rate.interval();
                let asked = tokio::time::timeout(REDIS_TIMEOUT, async {
                    // The manager multiplexes: a clone per request, the lock only to
                    // make the first one.
                    let mut c = {
                        let mut slot = conn.lock().await;
                        match slot.as_ref() {
                            Some(c) => c.clone(),
                            None => {
                                let c = ConnectionManager::new(client.clone()).await?;
                                *slot = Some(c.clone());
                                c
                            }
                        }
                    };
                    script
                        .key(&key)
                        .arg(micros(interval))
                        .arg(micros(interval.saturating_mul(rate.burst)))
                        .invoke_async::<u64>(&mut c)
                        .await
                })
                .await;
                let failure = match asked {
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(wait_us)) => return Err(Duration::from_micros(wait_us)),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {} ms", REDIS_TIMEOUT.as_millis()),
                };
                tracing::warn!(error = %failure, "rate limiter: Redis unavailable; letting requests through (not limited) for now");
                *resting_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + REDIS_BACKOFF);
                // A connection that failed may be broken: make a new one next time.
                if let Ok(mut slot) = conn.try_lock() {
                    *slot = None;
                }
                Ok(())
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn direct(rate: Rate) -> Direct {
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    let quota = governor::Quota::with_period(rate.interval())
        .unwrap_or_else(|| governor::Quota::per_second(burst))
        .allow_burst(burst);
    governor::RateLimiter::direct(quota)
}

/// The limits of every partner, their rate limiter and the refusals counter.
pub struct PartnerLimits {
    pub settings: LimitSettings,
    limiter: RateLimiter,
    refusals: IntCounterVec,
}

impl PartnerLimits {
    /// Counted in process (the embedded default, and tests).
    pub fn memory(settings: &LimitSettings) -> Self {
        Self {
            settings: settings.clone(),
            limiter: RateLimiter::memory(),
            refusals: refusals_counter(),
        }
    }

    /// The same limits counted in Redis (production: replicas share them), keeping
    /// this one's refusals counter.
    pub fn with_redis(&self, url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            settings: self.settings.clone(),
            limiter: RateLimiter::redis(url, prefix)?,
            refusals: self.refusals.clone(),
        })
    }

    /// `partner_limit_refusals_total{partner_id, kind}`, to register with the
    /// service's metrics.
    pub fn refusals(&self) -> &IntCounterVec {
        &self.refusals
    }

    pub fn of(&self, partner_id: &str) -> Effective {
        self.settings.of(partner_id)
    }

    /// Counts a refusal of `kind` for `partner_id`.
    pub fn refused(&self, partner_id: &str, kind: Kind) {
        self.refusals
            .with_label_values(&[partner_id, kind.as_str()])
            .inc();
    }

    /// One partner API request of `partner_id`.
    pub async fn request(&self, partner_id: &str) -> Result<(), Limited> {
        let Some(rate) = self.of(partner_id).rate else {
            return Ok(());
        };
        self.count(
            &format!("partner:{partner_id}"),
            partner_id,
            rate,
            Kind::Rate,
        )
        .await
    }

    /// One token request of `client_id`, a client of `partner_id`.
    pub async fn token(&self, client_id: &str, partner_id: &str) -> Result<(), Limited> {
        let Some(rate) = self.of(partner_id).token_rate else {
            return Ok(());
        };
        self.count(
            &format!("token:{client_id}"),
            partner_id,
            rate,
            Kind::TokenRate,
        )
        .await
    }

    async fn count(
        &self,
        key: &str,
        partner_id: &str,
        rate: Rate,
        kind: Kind,
    ) -> Result<(), Limited> {
        self.limiter.check(key, rate).await.map_err(|wait| {
            self.refused(partner_id, kind);
            Limited {
                kind,
                rate,
                retry_after_secs: retry_after_secs(wait),
            }
        })
    }
}

fn refusals_counter() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "partner_limit_refusals_total",
            "Requests refused by a per-partner limit, by partner and kind (rate, token_rate, daily_accounts, batch_size)",
        ),
        &["partner_id", "kind"],
    )
    .expect("static metric definition")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        let mut s = LimitSettings::default();
        s.partner.requests_per_second = 2.0;
        s.partner.daily_accounts = 100;
        s.partners.insert(
            "p_big".into(),
            PartnerLimitOverride {
                requests_per_second: Some(50.0),
                burst: Some(5),
                daily_accounts: Some(0),
                batch_max_users: Some(3),
                ..Default::default()
            },
        );
        s
    }

    #[test]
    fn overrides_replace_only_the_keys_they_set() {
        let s = settings();
        let small = s.of("p_small");
        assert_eq!(
            small.rate,
            Some(Rate {
                per_second: 2.0,
                burst: 2
            })
        );
        assert_eq!(small.daily_accounts, Some(100));
        assert_eq!(small.batch_max_users, None);
        assert_eq!(small.token_rate, None);
        let big = s.of("P_BIG");
        assert_eq!(
            big.rate,
            Some(Rate {
                per_second: 50.0,
                burst: 5
            })
        );
        assert_eq!(big.daily_accounts, None, "0 is unlimited");
        assert_eq!(big.batch_max_users, Some(3));
        let none = LimitSettings::default().of("p_x");
        assert_eq!(
            none,
            Effective {
                rate: None,
                token_rate: None,
                daily_accounts: None,
                batch_max_users: None
            }
        );
    }

    #[test]
    fn a_rate_that_is_not_positive_is_unlimited() {
        assert_eq!(Rate::new(0.0, 10), None);
        assert_eq!(Rate::new(-1.0, 10), None);
        assert_eq!(Rate::new(f64::NAN, 10), None);
        assert_eq!(Rate::new(0.5, 0).map(|r| r.burst), Some(1));
        assert_eq!(Rate::new(2.5, 0).map(|r| r.burst), Some(3));
        assert_eq!(
            Rate::new(4.0, 1).map(|r| r.interval()),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        let t =
            |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time");
        assert_eq!(secs_until_next_utc_day(t("2026-12-03 23:59:59")), 1);
        assert_eq!(secs_until_next_utc_day(t("2026-12-03 00:00:00")), 86_400);
        assert_eq!(secs_until_next_utc_day(t("2026-12-31 12:00:00")), 43_200);
    }

    #[tokio::test]
    async fn the_memory_limiter_allows_the_burst_then_refuses_until_the_interval_passes() {
        let l = RateLimiter::memory();
        let rate = Rate::new(10.0, 3).expect("rate");
        for i in 0..3 {
            assert!(l.check("a", rate).await.is_ok(), "request {i} of the burst");
        }
        let wait = l.check("a", rate).await.expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= rate.interval(), "{wait:?}");
        // Another key has its own budget.
        assert!(l.check("b", rate).await.is_ok());
        tokio::time::sleep(rate.interval() + Duration::from_millis(20)).await;
        assert!(
            l.check("a", rate).await.is_ok(),
            "one more after an interval"
        );
        assert!(l.check("a", rate).await.is_err());
    }

    #[tokio::test]
    async fn partner_limits_count_refusals_by_partner_and_kind() {
        let limits = PartnerLimits::memory(&settings());
        assert!(limits.request("p_small").await.is_ok());
        assert!(limits.request("p_small").await.is_ok());
        let refused = limits
            .request("p_small")
            .await
            .expect_err("third in a burst of 2");
        assert_eq!(refused.kind, Kind::Rate);
        assert_eq!(refused.retry_after_secs, 1);
        for _ in 0..5 {
            assert!(limits.request("p_big").await.is_ok());
        }
        // No token rate is configured: never refused.
        for _ in 0..20 {
            assert!(limits.token("c_1", "p_small").await.is_ok());
        }
        let counted = limits
            .refusals()
            .with_label_values(&["p_small", "rate"])
            .get();
        assert_eq!(counted, 1);
        assert_eq!(
            limits
                .refusals()
                .with_label_values(&["p_big", "rate"])
                .get(),
            0
        );
    }

    #[tokio::test]
    async fn a_redis_that_cannot_be_reached_lets_requests_through() {
        // Nothing listens on port 1.
        let l = RateLimiter::redis("redis://127.0.0.1:1/", "t").expect("client");
        let rate = Rate::new(1.0, 1).expect("rate");
        for _ in 0..5 {
            assert!(l.check("a", rate).await.is_ok());
        }
    }
}

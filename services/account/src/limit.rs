//! Failed-login limits, per account and per client address.
//!
//! A key (an account, an address) that has failed `max` times within a window is
//! refused until that window ends; the window starts at the first failure and the
//! count starts again after it, so a limit delays an attacker and never locks a user
//! out for good. A success does not reset the count (an attacker who also knows one
//! password must not be able to wash away failures).
//!
//! Production keeps the counts in Redis (`INCR` + `EXPIRE NX`), so every replica sees
//! the same failures; the embedded default keeps them in memory. The check happens
//! before the password hash is computed, so a blocked attempt costs no Argon2 time.

use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

pub enum Limiter {
    Memory(Mutex<HashMap<String, (Instant, u32)>>),
    Redis {
        client: redis::Client,
        conn: tokio::sync::Mutex<Option<ConnectionManager>>,
        prefix: String,
    },
}

/// Connects on first use and again after a failure, so a Redis that is down at start
/// or restarts later does not need a restart of this service.
async fn connection(
    client: &redis::Client,
    slot: &tokio::sync::Mutex<Option<ConnectionManager>>,
) -> Option<ConnectionManager> {
    let mut slot = slot.lock().await;
    if slot.is_none() {
        match ConnectionManager::new(client.clone()).await {
            Ok(c) => *slot = Some(c),
            Err(e) => tracing::warn!(error = %e, "login limiter: Redis unavailable"),
        }
    }
    slot.clone()
}

impl Limiter {
    pub fn memory() -> Self {
        Limiter::Memory(Mutex::new(HashMap::new()))
    }

    pub fn redis(client: redis::Client, prefix: &str) -> Self {
        Limiter::Redis {
            client,
            conn: tokio::sync::Mutex::new(None),
            prefix: prefix.to_owned(),
        }
    }

    /// How long `key` stays blocked, if it has used up `limit`.
    pub async fn blocked(&self, key: &str, limit: Limit) -> Option<Duration> {
        match self {
            Limiter::Memory(map) => {
                let map = map.lock().unwrap_or_else(|p| p.into_inner());
                let (start, n) = map.get(key)?;
                let left = limit.window.checked_sub(start.elapsed())?;
                (*n >= limit.max).then_some(left)
            }
            Limiter::Redis {
                client,
                conn,
                prefix,
            } => {
                let mut conn = connection(client, conn).await?;
                let key = format!("{prefix}:login-fail:{key}");
                let (n, ttl): (Option<u32>, i64) = redis::pipe()
                    .get(&key)
                    .ttl(&key)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| tracing::warn!(error = %e, "login limiter: Redis unavailable"))
                    .ok()?;
                (n? >= limit.max && ttl > 0).then(|| Duration::from_secs(ttl.unsigned_abs()))
            }
        }
    }

    /// Counts one failure of `key`.
    pub async fn failed(&self, key: &str, limit: Limit) {
        match self {
            Limiter::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() > 100_000 {
                    map.retain(|_, (start, _)| start.elapsed() < limit.window);
                }
                let entry = map.entry(key.to_owned()).or_insert((Instant::now(), 0));
                if entry.0.elapsed() >= limit.window {
                    *entry = (Instant::now(), 0);
                }
                entry.1 = entry.1.saturating_add(1);
            }
            Limiter::Redis {
                client,
                conn,
                prefix,
            } => {
                let Some(mut conn) = connection(client, conn).await else {
                    return;
                };
                let key = format!("{prefix}:login-fail:{key}");
                let counted: Result<(), redis::RedisError> = redis::Script::new(
                    "local n = redis.call('INCR', KEYS[1]) \
                     if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end \
                     return n",
                )
                .key(&key)
                .arg(limit.window.as_secs().max(1))
                .invoke_async::<i64>(&mut conn)
                .await
                .map(drop);
                if let Err(e) = counted {
                    tracing::warn!(error = %e, "login limiter: cannot count a failure");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_blocked_after_max_failures_and_free_after_the_window() {
        let l = Limiter::memory();
        let limit = Limit {
            max: 3,
            window: Duration::from_millis(200),
        };
        for _ in 0..3 {
            assert!(l.blocked("a", limit).await.is_none());
            l.failed("a", limit).await;
        }
        assert!(l.blocked("a", limit).await.is_some());
        assert!(l.blocked("b", limit).await.is_none());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(l.blocked("a", limit).await.is_none());
    }
}

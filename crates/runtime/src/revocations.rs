//! What is revoked, kept in memory by each oauth replica so introspection answers
//! without a database round trip, and how a revocation reaches every replica before
//! the request that revoked answers.
//!
//! - The database is the source of truth: triggers append every revocation (a token
//!   revoked, a grant revoked or deleted) to `revocation_log` in commit order
//!   ([`admit_store::revocations`]). A [`View`] loads what is revoked and catches up
//!   from the log ([`View::sync`]); nothing a writer does can be missed.
//! - Redis carries the news: after a revoking commit, the writer ([`Announcer`])
//!   appends a poke to the stream `{prefix}:revocations`. Each replica ([`follow`])
//!   blocks on that stream; on a poke it catches up from the database, then reports
//!   the stream id it has applied in `{prefix}:revocations:hb:{replica}` (expiring
//!   after [`LEASE`] + [`MARGIN`]), listed in the sorted set
//!   `{prefix}:revocations:replicas`. The writer waits until every listed replica
//!   whose report has not expired has applied its poke, at most [`LEASE`] +
//!   [`MARGIN`].
//! - A lease: a replica trusts its memory only until [`LEASE`] after the start of
//!   its last round that both read the stream (having reported itself first) and
//!   caught up from the database at most [`DB_EVERY`] before. Redis unreachable,
//!   PostgreSQL unreachable, the task stuck: the lease runs out and introspection
//!   reads the database per request, as without a view. Each process measures its
//!   lease on its own monotonic clock.
//!
//! Why a revocation is in force on every replica when the revoking request answers:
//! a replica that trusts its memory at that moment began its round at most
//! [`LEASE`] earlier. If the writer saw its report applied, it caught up from the
//! database after the poke, so after the commit. If its report had expired, its
//! lease had run out too (the report outlives the lease by [`MARGIN`]), and its next
//! round starts with a new report and then reads the stream, which by then holds the
//! poke. If the writer waited the whole [`LEASE`] + [`MARGIN`] (a replica slow to
//! report, or the poke not posted because Redis was unreachable from the writer),
//! every lease still running began after the commit and includes a catch-up from the
//! database begun after it. A partitioned replica learns of the revocation from the
//! database when it catches up, before it trusts its memory again.

use admit_store::revocations::{self as log, Entry, Revoked};
use admit_store::{AnyConnection, Db, StoreError};
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a replica trusts its memory after a round that caught up.
pub const LEASE: Duration = Duration::from_millis(1000);
/// How much longer a replica's report lives in Redis than its lease (clock rates).
pub const MARGIN: Duration = Duration::from_millis(250);
/// How long a replica's read of the stream blocks.
const BLOCK: Duration = Duration::from_millis(200);
/// A replica catches up from the database at least this often, pokes or not (the
/// path by which a revocation whose poke was never posted arrives).
pub const DB_EVERY: Duration = Duration::from_millis(250);
/// A replica that has not caught up for this long reloads everything (the log keeps
/// [`LOG_KEEP_SECS`]).
const RELOAD_AFTER: Duration = Duration::from_secs(30 * 60);
/// How long the log keeps entries (`purge_log`).
pub const LOG_KEEP_SECS: i64 = 3600;
/// Entries read per query when catching up.
const PAGE: i64 = 5000;
/// Stream entries read per round.
const COUNT: usize = 100;
/// Expired entries are forgotten this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Grants whose end is remembered ([`View::remember_grant`]).
const MAX_ENDS: usize = 50_000;

/// What introspection read of a grant from the database: when it ends, or that it
/// has ended for good (revoked or gone). A grant's end never moves and an ended
/// grant never comes back, so both may be remembered; a revocation after the read
/// is in the revoked set, which is asked first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantEnd {
    At(NaiveDateTime),
    Ended,
}

#[derive(Default)]
struct Known {
    seq: i64,
    loaded: bool,
    /// Incremented by every full reload (a read of a grant's end made before a
    /// reload is not remembered after it).
    generation: u64,
    synced: Option<Instant>,
    pruned: Option<Instant>,
    tokens: HashMap<String, NaiveDateTime>,
    grants: HashMap<String, NaiveDateTime>,
    ends: HashMap<String, GrantEnd>,
}

impl Known {
    fn apply(&mut self, e: Entry) {
        match e.revoked {
            Revoked::Token(jti) => self.tokens.insert(jti, e.expires_at),
            Revoked::Grant(id) => self.grants.insert(id, e.expires_at),
        };
        self.seq = self.seq.max(e.seq);
    }
}

/// A replica's memory of what is revoked, trusted under a lease.
pub struct View {
    known: RwLock<Known>,
    epoch: Instant,
    /// Nanoseconds after `epoch` until which memory is trusted; 0: not trusted.
    trusted_until: AtomicU64,
    /// Introspections answered, by where the revocation check was made.
    answers: prometheus::IntCounterVec,
    /// 1 while the last round kept the lease, 0 otherwise.
    following: prometheus::IntGauge,
    from_memory: prometheus::IntCounter,
    from_database: prometheus::IntCounter,
}

impl View {
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let answers = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "introspection_revocation_checks_total",
                "Revocation checks of introspection, by source (memory: the replica's view under its lease; database: the view was not trusted)",
            ),
            &["source"],
        )?;
        Ok(Arc::new(Self {
            known: RwLock::default(),
            epoch: Instant::now(),
            trusted_until: AtomicU64::new(0),
            from_memory: answers.get_metric_with_label_values(&["memory"])?,
            from_database: answers.get_metric_with_label_values(&["database"])?,
            answers,
            following: prometheus::IntGauge::new(
                "revocation_view_trusted",
                "1 while this replica trusts its in-memory view of revocations (its lease holds), 0 while it reads the database",
            )?,
        }))
    }

    /// The metrics of the view, to register.
    pub fn metrics(&self) -> (&prometheus::IntCounterVec, &prometheus::IntGauge) {
        (&self.answers, &self.following)
    }

    /// Counts a revocation check, answered from memory or not.
    pub fn count(&self, from_memory: bool) {
        if from_memory {
            self.from_memory.inc();
        } else {
            self.from_database.inc();
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether memory may be trusted now.
    pub fn trusted(&self) -> bool {
        let until = self.trusted_until.load(Ordering::Acquire);
        until != 0 && self.nanos(Instant::now()) < until
    }

    /// Trust memory until [`LEASE`] after `start`.
    fn trust_from(&self, start: Instant) {
        let until = self.nanos(start + LEASE).max(1);
        self.trusted_until.store(until, Ordering::Release);
        self.following.set(1);
    }

    /// Stop trusting memory at once.
    pub fn distrust(&self) {
        self.trusted_until.store(0, Ordering::Release);
        self.following.set(0);
    }

    /// Whether the access token `jti` (of grant `gid`) is revoked, from memory:
    /// `None` when memory is not trusted now (ask the database).
    pub fn revoked(&self, jti: &str, gid: Option<&str>) -> Option<bool> {
        if !self.trusted() {
            return None;
        }
        let k = self.known.read().unwrap_or_else(|p| p.into_inner());
        Some(k.tokens.contains_key(jti) || gid.is_some_and(|g| k.grants.contains_key(g)))
    }

    /// The end of grant `gid` as remembered, and the generation to remember a read
    /// under.
    pub fn grant_end(&self, gid: &str) -> (Option<GrantEnd>, u64) {
        let k = self.known.read().unwrap_or_else(|p| p.into_inner());
        (k.ends.get(gid).copied(), k.generation)
    }

    /// Remembers the end of grant `gid`, read from the database in `generation`.
    pub fn remember_grant(&self, gid: &str, end: GrantEnd, generation: u64) {
        let mut k = self.known.write().unwrap_or_else(|p| p.into_inner());
        if k.generation != generation {
            return;
        }
        if k.ends.len() >= MAX_ENDS && !k.ends.contains_key(gid) {
            k.ends.clear();
        }
        k.ends.insert(gid.to_owned(), end);
    }

    /// How many tokens and grants memory holds as revoked.
    pub fn sizes(&self) -> (usize, usize) {
        let k = self.known.read().unwrap_or_else(|p| p.into_inner());
        (k.tokens.len(), k.grants.len())
    }

    /// Catches up from the database (blocking: call inside [`Db::run`]): the log
    /// since the last entry applied, or everything on the first call (and after a
    /// long time without catching up). Everything committed before this call began
    /// is applied when it returns `Ok`.
    pub fn sync(&self, conn: &mut AnyConnection, now: NaiveDateTime) -> Result<(), StoreError> {
        let started = Instant::now();
        let (seq, reload, prune) = {
            let k = self.known.read().unwrap_or_else(|p| p.into_inner());
            let reload = !k.loaded || k.synced.is_none_or(|t| t.elapsed() > RELOAD_AFTER);
            let prune = k.pruned.is_none_or(|t| t.elapsed() > PRUNE_EVERY);
            (k.seq, reload, prune)
        };
        if reload {
            // The log's end first: whatever commits after it is in the log above it.
            let last = log::last_seq(conn)?;
            let generation = self
                .known
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .generation
                + 1;
            let mut fresh = Known {
                seq: last,
                loaded: true,
                generation,
                synced: Some(started),
                pruned: Some(started),
                ..Known::default()
            };
            for e in log::all(conn, now)? {
                fresh.apply(e);
            }
            fresh.seq = fresh.seq.max(last);
            *self.known.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        } else {
            let mut after = seq;
            loop {
                let page = log::since(conn, after, PAGE)?;
                let full = page.len() as i64 == PAGE;
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                if !page.is_empty() {
                    let mut k = self.known.write().unwrap_or_else(|p| p.into_inner());
                    for e in page {
                        k.apply(e);
                    }
                }
                if !full {
                    break;
                }
            }
            let mut k = self.known.write().unwrap_or_else(|p| p.into_inner());
            k.synced = Some(started);
            if prune {
                k.tokens.retain(|_, exp| *exp > now);
                k.grants.retain(|_, exp| *exp > now);
                k.ends
                    .retain(|_, end| matches!(end, GrantEnd::At(at) if *at > now));
                k.pruned = Some(started);
            }
        }
        Ok(())
    }
}

/// The Redis keys of the revocation feed under `prefix`.
#[derive(Clone)]
pub struct Feed {
    client: redis::Client,
    stream: String,
    replicas: String,
    hb: String,
}

impl Feed {
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            stream: format!("{prefix}:revocations"),
            replicas: format!("{prefix}:revocations:replicas"),
            hb: format!("{prefix}:revocations:hb:"),
        })
    }

    async fn connect(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(BLOCK + Duration::from_secs(1));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// A stream id, `ms-seq`, as a pair that orders like the stream.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Keeps `view` current while its lease holds, until `stop`: this replica's half of
/// the protocol above. `db` is where it catches up from.
pub async fn follow(view: Arc<View>, db: Db, feed: Feed, stop: CancellationToken) {
    let me = uuid::Uuid::new_v4().simple().to_string();
    let mut follower = Follower {
        hb_key: format!("{}{me}", feed.hb),
        me,
        feed,
        view,
        db,
        conn: None,
        last_id: None,
        db_synced: None,
    };
    loop {
        if stop.is_cancelled() {
            follower.view.distrust();
            return;
        }
        let started = Instant::now();
        let round = tokio::select! {
            r = tokio::time::timeout(BLOCK + Duration::from_secs(2), follower.round()) => r,
            _ = stop.cancelled() => continue,
        };
        match round {
            Ok(Ok(caught_up)) => {
                if caught_up {
                    let since = follower.db_synced.map_or(started, |s| s.min(started));
                    follower.view.trust_from(since);
                }
            }
            failed => {
                follower.view.distrust();
                follower.conn = None;
                let why = match failed {
                    Ok(Err(e)) => e,
                    _ => "timed out".to_owned(),
                };
                tracing::warn!(error = %why, "revocation feed: cannot follow; introspection reads the database until it can");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    }
}

struct Follower {
    me: String,
    hb_key: String,
    feed: Feed,
    view: Arc<View>,
    db: Db,
    conn: Option<redis::aio::MultiplexedConnection>,
    /// The last stream id whose poke was applied (caught up from the database after).
    last_id: Option<String>,
    /// When the last successful catch-up from the database began.
    db_synced: Option<Instant>,
}

impl Follower {
    /// One round: report, read the stream, catch up from the database when poked
    /// (or every [`DB_EVERY`]). `Ok(true)`: the round saw the end of the stream.
    async fn round(&mut self) -> Result<bool, String> {
        let redis_err = |e: redis::RedisError| format!("Redis: {e}");
        let mut conn = match &self.conn {
            Some(c) => c.clone(),
            None => {
                let c = self.feed.connect().await.map_err(redis_err)?;
                self.conn = Some(c.clone());
                c
            }
        };
        let mut must_sync = false;
        let last_id = match &self.last_id {
            Some(id) => id.clone(),
            None => {
                // The stream's end now; the catch-up below covers what came before.
                let newest: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
                    .arg(&self.feed.stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                must_sync = true;
                newest
                    .ids
                    .first()
                    .map_or_else(|| "0-0".to_owned(), |e| e.id.clone())
            }
        };
        // Report first (what is applied), then read: a writer that does not see
        // this report yet will have its poke in the read that follows.
        let lease_ms = u64::try_from((LEASE + MARGIN).as_millis()).unwrap_or(u64::MAX);
        let now_ms = wall_ms();
        let () = redis::pipe()
            .cmd("SET")
            .arg(&self.hb_key)
            .arg(&last_id)
            .arg("PX")
            .arg(lease_ms)
            .ignore()
            .cmd("ZADD")
            .arg(&self.feed.replicas)
            .arg(now_ms)
            .arg(&self.me)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&self.feed.replicas)
            .arg("-inf")
            .arg(now_ms - 3_600_000)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let read: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(200))
            .arg("STREAMS")
            .arg(&self.feed.stream)
            .arg(&last_id)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let ids: Vec<String> = read
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| k.ids.into_iter().map(|e| e.id))
                    .collect()
            })
            .unwrap_or_default();
        let stale = self.db_synced.is_none_or(|t| t.elapsed() >= DB_EVERY);
        if must_sync || !ids.is_empty() || stale {
            let began = Instant::now();
            let view = self.view.clone();
            self.db
                .run(move |c| view.sync(c, admit_store::now()))
                .await
                .map_err(|e| format!("database: {e}"))?;
            self.db_synced = Some(began);
        }
        match ids.last() {
            Some(newest) => self.last_id = Some(newest.clone()),
            None => self.last_id = Some(last_id),
        }
        Ok(ids.len() < COUNT)
    }
}

/// What a writer calls after a commit that may have revoked something.
// One per process, behind an Arc: the size of the Redis variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Announcer {
    /// Nothing to tell: no replica answers from memory (the embedded default, where
    /// introspection reads the database).
    Off,
    Redis {
        feed: Feed,
        conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    },
}

impl Announcer {
    pub fn off() -> Arc<Self> {
        Arc::new(Self::Off)
    }

    pub fn redis(url: &str, prefix: &str) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(Self::Redis {
            feed: Feed::new(url, prefix)?,
            conn: tokio::sync::Mutex::new(None),
        }))
    }

    /// Call after the commit of a revocation, before answering: returns once every
    /// replica that trusts its memory has applied it (at most [`LEASE`] +
    /// [`MARGIN`], whatever Redis does).
    pub async fn announce(&self) {
        let Self::Redis { feed, conn } = self else {
            return;
        };
        let committed = Instant::now();
        let bound = LEASE + MARGIN;
        let posted = tokio::time::timeout(Duration::from_millis(500), async {
            let mut c = {
                let mut slot = conn.lock().await;
                match slot.as_ref() {
                    Some(c) => c.clone(),
                    None => {
                        let c = feed.connect().await?;
                        *slot = Some(c.clone());
                        c
                    }
                }
            };
            let id: String = redis::cmd("XADD")
                .arg(&feed.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(10_000)
                .arg("*")
                .arg("r")
                .arg(1)
                .query_async(&mut c)
                .await?;
            Ok::<_, redis::RedisError>((id, c))
        })
        .await;
        let (id, mut c) = match posted {
            Ok(Ok(posted)) => posted,
            failed => {
                *conn.lock().await = None;
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::warn!(error = %why, "revocation feed: cannot post to Redis; waiting out every replica's lease");
                tokio::time::sleep_until((committed + bound).into()).await;
                return;
            }
        };
        let deadline = Instant::now() + bound;
        let acked = tokio::time::timeout_at(deadline.into(), async {
            let want = stream_id(&id);
            loop {
                let members: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&feed.replicas)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await?;
                if members.is_empty() {
                    return Ok::<(), redis::RedisError>(());
                }
                let keys: Vec<String> = members.iter().map(|m| format!("{}{m}", feed.hb)).collect();
                let applied: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
                if applied
                    .iter()
                    .all(|a| a.as_deref().is_none_or(|a| stream_id(a) >= want))
                {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        if !matches!(acked, Ok(Ok(()))) {
            *conn.lock().await = None;
            tracing::warn!(
                "revocation feed: a replica did not confirm in time; waited out its lease"
            );
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_like_the_stream() {
        assert!(stream_id("1700000000000-1") > stream_id("1700000000000-0"));
        assert!(stream_id("1700000000001-0") > stream_id("1700000000000-9"));
        assert!(stream_id("10-0") > stream_id("9-0"));
        assert_eq!(stream_id("0-0"), (0, 0));
    }

    #[test]
    fn a_view_is_not_trusted_before_its_first_round() -> Result<(), prometheus::Error> {
        let v = View::new()?;
        assert_eq!(v.revoked("j", None), None);
        v.trust_from(Instant::now());
        assert_eq!(v.revoked("j", None), Some(false));
        v.distrust();
        assert_eq!(v.revoked("j", None), None);
        Ok(())
    }
}

//! The outbox relay: moves committed outbox rows onto the Redis Stream.
//!
//! Rows are taken before they are published (on PostgreSQL locked for the
//! transaction that publishes and marks them, on SQLite leased), so several
//! replicas of the account service relay each row once in the normal case; a
//! relay that dies between
//! publishing and marking leaves a duplicate on the stream, which the mailer's
//! sent-record absorbs. When Redis is down rows simply wait in the outbox: sign-ups
//! go on, and mail flows when Redis returns.

use crate::redis::RedisQueue;
use admit_store::{outbox, Backend, Db};
use prometheus::{Gauge, IntCounter, IntGauge};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The longest a relay waits for the queue to take a batch before it gives the
/// batch's rows back (the lease it used to take was as long).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Relay {
    pub db: Db,
    pub queue: Arc<RedisQueue>,
    pub topic: String,
    pub batch: usize,
    pub wake: Arc<Notify>,
    pub metrics: RelayMetrics,
}

/// What the relay reports: the outbox lag (rows waiting, age of the oldest) and the
/// publishes that failed and will be retried.
#[derive(Clone)]
pub struct RelayMetrics {
    pub published: IntCounter,
    pub failures: IntCounter,
    pub pending: IntGauge,
    pub oldest_age: Gauge,
}

impl RelayMetrics {
    pub fn new() -> Self {
        let counter =
            |name: &str, help: &str| IntCounter::new(name, help).expect("static metric definition");
        Self {
            published: counter(
                "outbox_relay_published_total",
                "Outbox rows published to the queue",
            ),
            failures: counter(
                "outbox_relay_failures_total",
                "Relay passes that could not publish (database or queue unavailable); each is retried with backoff",
            ),
            pending: IntGauge::new("outbox_pending", "Outbox rows not yet published")
                .expect("static metric definition"),
            oldest_age: Gauge::new(
                "outbox_oldest_pending_age_seconds",
                "Age of the oldest outbox row not yet published (0 when none waits)",
            )
            .expect("static metric definition"),
        }
    }
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Relay {
    /// Publishes one batch; returns how many rows went out.
    pub async fn run_once(&self) -> Result<usize, crate::QueueError> {
        if self.db.backend() == Backend::Postgres {
            return self.run_once_locked().await;
        }
        self.run_once_leased().await
    }

    /// PostgreSQL: one transaction locks a batch (`FOR UPDATE SKIP LOCKED`, so
    /// replicas take disjoint rows), publishes it and marks it published. A relay
    /// that dies or loses the database before the commit leaves the rows
    /// unpublished and unlocked for the next pass, which publishes them again (the
    /// mailer's sent-record absorbs the duplicate), exactly as an expired lease did;
    /// a publish that fails or outlasts [`PUBLISH_TIMEOUT`] rolls back at once.
    async fn run_once_locked(&self) -> Result<usize, crate::QueueError> {
        let topic = self.topic.clone();
        let batch = self.batch as i64;
        let queue = self.queue.clone();
        let runtime = tokio::runtime::Handle::current();
        let outcome = self
            .db
            .write(move |conn| {
                let Some(rows) = outbox::lock_unpublished(conn, &topic, batch, admit_store::now())?
                else {
                    return Ok(Err(crate::QueueError::Internal(
                        "row locks need PostgreSQL".into(),
                    )));
                };
                if rows.is_empty() {
                    return Ok(Ok(0));
                }
                let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
                let messages: Vec<(String, String)> = rows
                    .into_iter()
                    .map(|r| (r.message_id, r.payload))
                    .collect();
                // On a thread of the blocking pool, not a worker: waiting here for
                // Redis blocks no task.
                let published = runtime.block_on(async {
                    tokio::time::timeout(PUBLISH_TIMEOUT, queue.publish_batch(&messages))
                        .await
                        .unwrap_or_else(|_| {
                            Err(crate::QueueError::Unavailable(
                                "publishing to the queue timed out".into(),
                            ))
                        })
                });
                if let Err(e) = published {
                    // Nothing was written: the transaction only held the locks.
                    return Ok(Err(e));
                }
                let n = outbox::mark_published(conn, &seqs, admit_store::now())?;
                Ok(Ok(n))
            })
            .await?;
        let n = outcome?;
        self.metrics.published.inc_by(n as u64);
        Ok(n)
    }

    /// SQLite: lease the batch, publish it, mark it published.
    async fn run_once_leased(&self) -> Result<usize, crate::QueueError> {
        let topic = self.topic.clone();
        let batch = self.batch as i64;
        let rows = self
            .db
            .write(move |conn| {
                let now = admit_store::now();
                outbox::lease(
                    conn,
                    &topic,
                    batch,
                    now,
                    now + chrono::Duration::seconds(30),
                )
            })
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let messages: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.message_id.clone(), r.payload.clone()))
            .collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        if let Err(e) = self.queue.publish_batch(&messages).await {
            let leased = seqs.clone();
            if let Err(release) = self
                .db
                .write(move |conn| outbox::release(conn, &leased))
                .await
            {
                tracing::debug!(error = %release, "cannot release the outbox lease; it runs out by itself");
            }
            return Err(e);
        }
        let n = seqs.len();
        self.db
            .write(move |conn| outbox::mark_published(conn, &seqs, admit_store::now()))
            .await?;
        self.metrics.published.inc_by(n as u64);
        Ok(n)
    }

    /// Refreshes the outbox-lag gauges; with the database down they keep their last
    /// values (the failure counter and `/readyz` say why).
    pub async fn observe_lag(&self) {
        let topic = self.topic.clone();
        match self
            .db
            .run(move |conn| outbox::pending_stats(conn, &topic))
            .await
        {
            Ok((count, oldest)) => {
                self.metrics.pending.set(count);
                let age = oldest
                    .map(|t| (admit_store::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                self.metrics.oldest_age.set(age);
            }
            Err(e) => tracing::debug!(error = %e, "cannot measure the outbox lag"),
        }
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut observed: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                return;
            }
            if observed.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                self.observe_lag().await;
                observed = Some(Instant::now());
            }
            match self.run_once().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => {}
                    }
                }
                Err(e) => {
                    self.metrics.failures.inc();
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox relay cannot publish; rows wait in the outbox");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

//! The outbox relay: moves committed outbox rows onto the Redis Stream.
//!
//! Rows are leased before they are published, so several replicas of the account
//! service relay each row once in the normal case; a relay that dies between
//! publishing and marking leaves a duplicate on the stream, which the mailer's
//! sent-record absorbs. When Redis is down rows simply wait in the outbox: sign-ups
//! go on, and mail flows when Redis returns.

use crate::redis::RedisQueue;
use admit_store::{outbox, Db};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub struct Relay {
    pub db: Db,
    pub queue: Arc<RedisQueue>,
    pub topic: String,
    pub batch: usize,
    pub wake: Arc<Notify>,
}

impl Relay {
    /// Publishes one batch; returns how many rows went out.
    pub async fn run_once(&self) -> Result<usize, crate::QueueError> {
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
        self.queue.publish_batch(&messages).await?;
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let n = seqs.len();
        self.db
            .write(move |conn| outbox::mark_published(conn, &seqs, admit_store::now()))
            .await?;
        Ok(n)
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if stop.is_cancelled() {
                return;
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

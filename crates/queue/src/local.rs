//! The embedded queue: the outbox table, leased row by row.

use crate::{Delivery, Queue, QueueError};
use admit_store::{outbox, Db};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub struct OutboxQueue {
    db: Db,
    topic: String,
    /// How long a delivery is reserved for its consumer: longer than the slowest
    /// send, after which the message is delivered again.
    lease: Duration,
    wake: Arc<Notify>,
}

impl OutboxQueue {
    /// `wake` is notified by producers after they commit, so a consumer waiting in
    /// `receive` takes the message at once instead of at its next poll.
    pub fn new(db: Db, topic: &str, lease: Duration, wake: Arc<Notify>) -> Self {
        Self {
            db,
            topic: topic.to_owned(),
            lease,
            wake,
        }
    }

    async fn take(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let topic = self.topic.clone();
        let lease = chrono::Duration::from_std(self.lease)
            .map_err(|e| QueueError::Internal(e.to_string()))?;
        let rows = self
            .db
            .write(move |conn| {
                let now = admit_store::now();
                outbox::lease(conn, &topic, max as i64, now, now + lease)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Delivery {
                receipt: r.seq.to_string(),
                payload: r.payload,
            })
            .collect())
    }

    async fn finish(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        let seqs = deliveries
            .iter()
            .map(|d| {
                d.receipt
                    .parse::<i64>()
                    .map_err(|_| QueueError::Internal(format!("bad receipt {}", d.receipt)))
            })
            .collect::<Result<Vec<i64>, _>>()?;
        if seqs.is_empty() {
            return Ok(());
        }
        self.db
            .write(move |conn| outbox::mark_published(conn, &seqs, admit_store::now()))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Queue for OutboxQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let got = self.take(max).await?;
        if !got.is_empty() {
            return Ok(got);
        }
        // Nothing now: wait for a producer's wake-up, or poll again after `wait`
        // (a lease that ran out is noticed on that poll).
        let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        self.take(max).await
    }

    async fn ack_many(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        self.finish(deliveries).await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        // The mailer's own record keeps the message as `dead` with its reason; the
        // outbox row is finished so that it is not delivered again.
        tracing::warn!(receipt = %delivery.receipt, reason, "message dead-lettered");
        self.finish(std::slice::from_ref(delivery)).await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(self.db.ping().await?)
    }
}

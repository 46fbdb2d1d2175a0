//! The embedded queue: the outbox table, leased row by row.

use crate::{DeadLetter, Delivery, Queue, QueueError};
use admit_store::{mail_ops, outbox, Db};
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
        // The outbox row is finished, so that it is not delivered again, and the
        // message is kept in `dead_letters` (in the same transaction) for a retry.
        tracing::warn!(receipt = %delivery.receipt, reason, "message dead-lettered");
        let seq = delivery
            .receipt
            .parse::<i64>()
            .map_err(|_| QueueError::Internal(format!("bad receipt {}", delivery.receipt)))?;
        // The dead letter is named by its outbox row, which a retry puts back.
        let row = mail_ops::DeadLetterRow {
            id: seq.to_string(),
            topic: self.topic.clone(),
            message_id: crate::payload_message_id(&delivery.payload).unwrap_or_default(),
            payload: delivery.payload.clone(),
            reason: reason.to_owned(),
            created_at: admit_store::now(),
        };
        self.db
            .write(move |conn| {
                mail_ops::insert_dead_letter(conn, &row)?;
                outbox::mark_published(conn, &[seq], admit_store::now())?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let topic = self.topic.clone();
        let rows = self
            .db
            .run(move |conn| mail_ops::dead_letters(conn, &topic, max as i64))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                entry: r.id,
                payload: r.payload,
                reason: r.reason,
                dead_at_ms: r.created_at.and_utc().timestamp_millis(),
            })
            .collect())
    }

    async fn revive(&self, entries: &[String]) -> Result<Vec<String>, QueueError> {
        let entries = entries.to_vec();
        let topic = self.topic.clone();
        let moved = self
            .db
            .write(move |conn| {
                let mut moved = Vec::new();
                for id in &entries {
                    let Ok(seq) = id.parse::<i64>() else {
                        continue;
                    };
                    if let Some(row) = mail_ops::take_dead_letter(conn, id)? {
                        if row.topic == topic && outbox::unpublish(conn, seq)? {
                            moved.push(row.id);
                        }
                    }
                }
                Ok(moved)
            })
            .await?;
        if !moved.is_empty() {
            self.wake.notify_one();
        }
        Ok(moved)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(self.db.ping().await?)
    }
}

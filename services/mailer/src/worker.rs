//! The mailer's loop: take deliveries from the queue, send each message once, and
//! acknowledge only when its outcome is recorded.
//!
//! For each delivery: decode (undecodable: dead-letter); claim the message in the
//! mailer's table (sent or dead already: acknowledge; another replica has it or its
//! retry is not due: leave it pending); render; send. On success the message is
//! recorded `sent`; the batch's recorded messages are then acknowledged together. A transient failure records `failed` with the
//! time of the next try (backoff doubling from `retry_base`) and leaves the delivery
//! pending, to come back after the claim idle time; after `max_attempts`, or on a
//! permanent failure (SMTP 5xx), the message is recorded `dead` and moved to the
//! dead-letter stream. One bad message never holds up the others.

use crate::render::Renderer;
use crate::transport::{SendError, Transport};
use admit_domain::Envelope;
use admit_queue::{Delivery, Queue};
use admit_store::mail::{self, Claim};
use admit_store::Db;
use futures_util::StreamExt;
use prometheus::IntCounterVec;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    /// How long a claimed message is reserved for this sender: longer than a send.
    pub lease: Duration,
}

#[derive(Clone)]
pub struct Worker {
    pub queue: Arc<dyn Queue>,
    pub db: Db,
    pub transport: Arc<dyn Transport>,
    pub renderer: Arc<Renderer>,
    pub config: WorkerConfig,
    pub outcomes: IntCounterVec,
}

/// What happened to one delivery (for logs, metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    AlreadyDone,
    Busy,
    Retry,
    Dead,
    /// The database or queue was unavailable: nothing was decided.
    Deferred,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::AlreadyDone => "duplicate",
            Outcome::Busy => "busy",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
            Outcome::Deferred => "deferred",
        }
    }
}

pub fn outcome_counter() -> IntCounterVec {
    IntCounterVec::new(
        prometheus::Opts::new(
            "mailer_deliveries_total",
            "Queue deliveries handled, by outcome",
        ),
        &["outcome"],
    )
    .expect("static metric definition")
}

impl Worker {
    /// Runs until `stop`; the batch in hand is finished first, and what was not
    /// started stays pending for the next consumer.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        while !stop.is_cancelled() {
            let batch = tokio::select! {
                r = self.queue.receive(self.config.concurrency, Duration::from_secs(1)) => r,
                _ = stop.cancelled() => break,
            };
            match batch {
                Ok(deliveries) => {
                    backoff = Duration::from_millis(200);
                    self.handle_batch(deliveries).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the queue; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!("mailer worker stopped");
    }

    /// Handles deliveries concurrently, then acknowledges the ones whose outcome is
    /// recorded (sent, or found sent already) in one round trip.
    pub async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Vec<Outcome> {
        let results: Vec<(Delivery, Outcome)> = futures_util::stream::iter(deliveries)
            .map(|d| async move {
                let outcome = self.handle(&d).await;
                (d, outcome)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let done: Vec<Delivery> = results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Sent | Outcome::AlreadyDone))
            .map(|(d, _)| d.clone())
            .collect();
        if let Err(e) = self.queue.ack_many(&done).await {
            // The records say sent; redeliveries will be acknowledged as duplicates.
            tracing::warn!(error = %e, count = done.len(), "acknowledgement failed");
        }
        results.into_iter().map(|(_, o)| o).collect()
    }

    #[tracing::instrument(name = "deliver", skip_all, fields(receipt = %delivery.receipt, message_id))]
    pub async fn handle(&self, delivery: &Delivery) -> Outcome {
        let outcome = self.handle_inner(delivery).await;
        self.outcomes.with_label_values(&[outcome.label()]).inc();
        outcome
    }

    async fn handle_inner(&self, delivery: &Delivery) -> Outcome {
        let envelope: Envelope = match serde_json::from_str(&delivery.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "undecodable message");
                return self
                    .dead_letter(delivery, None, &format!("undecodable: {e}"))
                    .await;
            }
        };
        let id = envelope.id.to_string();
        tracing::Span::current().record("message_id", id.as_str());
        let kind = envelope.notification.kind().to_owned();
        let recipient = envelope.notification.recipient().to_owned();
        let lease =
            chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(60));
        let claim_id = id.clone();
        let claim = self
            .db
            .write(move |conn| {
                let now = admit_store::now();
                mail::claim(conn, &claim_id, &kind, &recipient, now, now + lease)
            })
            .await;
        let row = match claim {
            Ok(Claim::Mine(row)) => row,
            Ok(Claim::Done) => return Outcome::AlreadyDone,
            Ok(Claim::Busy) => return Outcome::Busy,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the message; left for later");
                return Outcome::Deferred;
            }
        };
        let email = match self.renderer.render(&envelope) {
            Ok(m) => m,
            Err(e) => return self.dead_letter(delivery, Some(&id), &e.to_string()).await,
        };
        match self.transport.send(&email).await {
            Ok(()) => {
                let sent_id = id.clone();
                let recorded = self
                    .db
                    .write(move |conn| mail::mark_sent(conn, &sent_id, admit_store::now()))
                    .await;
                if let Err(e) = recorded {
                    // Sent but not recorded: the delivery stays pending and the message
                    // may be sent again. At least once, never lost.
                    tracing::error!(error = %e, "sent, but the sent-record failed");
                    return Outcome::Deferred;
                }
                tracing::info!(kind = envelope.notification.kind(), "email sent");
                Outcome::Sent
            }
            Err(SendError::Permanent(reason)) => {
                tracing::warn!(reason = %reason, "relay refused the message");
                self.dead_letter(delivery, Some(&id), &reason).await
            }
            Err(SendError::Transient(reason)) => {
                let attempts = row.attempts as u32 + 1;
                if attempts >= self.config.max_attempts {
                    tracing::warn!(reason = %reason, attempts, "giving up on the message");
                    return self.dead_letter(delivery, Some(&id), &reason).await;
                }
                let delay = self.config.retry_base * 2u32.saturating_pow(attempts - 1).min(1 << 16);
                let next = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
                tracing::warn!(reason = %reason, attempts, retry_in_ms = delay.as_millis() as u64, "send failed; will retry");
                let failed_id = id.clone();
                let _ = self
                    .db
                    .write(move |conn| {
                        let now = admit_store::now();
                        mail::mark_failed(conn, &failed_id, &reason, Some(now + next), now)
                    })
                    .await;
                Outcome::Retry
            }
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, id: Option<&str>, reason: &str) -> Outcome {
        if let Some(id) = id {
            let (id, why) = (id.to_owned(), reason.to_owned());
            if let Err(e) = self
                .db
                .write(move |conn| {
                    mail::mark_failed(conn, &id, &why, None, admit_store::now()).map(|_| ())
                })
                .await
            {
                tracing::warn!(error = %e, "cannot record the dead message; left for later");
                return Outcome::Deferred;
            }
        }
        match self.queue.dead_letter(delivery, reason).await {
            Ok(()) => Outcome::Dead,
            Err(e) => {
                tracing::warn!(error = %e, "cannot dead-letter; left for later");
                Outcome::Deferred
            }
        }
    }
}

//! The queue that carries messages from the services that cause an email to the
//! mailer, with at-least-once delivery: a message is acknowledged only after its
//! effect is durable, and a consumer that dies leaves its messages to another.
//!
//! Two implementations of [`Queue`], one contract (the suite in `tests/` runs against
//! both):
//! - [`redis::RedisQueue`], production: a Redis Stream read by a consumer group;
//!   entries left pending by a dead consumer are taken over with XAUTOCLAIM. The
//!   [`relay`] moves committed outbox rows onto the stream.
//! - [`local::OutboxQueue`], the embedded default: the outbox table itself, leased
//!   row by row, so nothing is lost when the one process restarts.

pub mod local;
pub mod redis;
pub mod relay;

use async_trait::async_trait;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    #[error("queue error: {0}")]
    Internal(String),
}

impl From<admit_store::StoreError> for QueueError {
    fn from(e: admit_store::StoreError) -> Self {
        match e {
            admit_store::StoreError::Unavailable(m) => QueueError::Unavailable(m),
            other => QueueError::Internal(other.to_string()),
        }
    }
}

/// One delivery of a message to a consumer. `receipt` is what acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub receipt: String,
    pub payload: String,
}

/// A message the queue gave up on, kept with its original payload so that an
/// operator can put it back ([`Queue::revive`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead letter's own id (a Redis stream entry id, or the embedded row's id).
    pub entry: String,
    pub payload: String,
    pub reason: String,
    /// When it was dead-lettered, Unix milliseconds.
    pub dead_at_ms: i64,
}

/// The message id a payload names, if it is JSON with a string `id` (an envelope, or
/// a broken one): how an operator finds a dead letter the mailer could not decode.
pub fn payload_message_id(payload: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()?
        .get("id")?
        .as_str()
        .map(str::to_owned)
}

/// The consumer side of a queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Up to `max` deliveries: first messages whose consumer died before
    /// acknowledging them, then new ones. Waits up to `wait` when there are none.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;

    /// The message's effect is durable: it is not delivered again.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.ack_many(std::slice::from_ref(delivery)).await
    }

    /// [`Queue::ack`] for several deliveries in one round trip.
    async fn ack_many(&self, deliveries: &[Delivery]) -> Result<(), QueueError>;

    /// The message will never succeed: it moves where an operator can see it, and is
    /// not delivered again.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;

    /// The dead letters, oldest first, at most `max`.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Puts the dead letters `entries` back on the live queue, each at most once (a
    /// dead letter already put back is not found again); returns the entries moved.
    async fn revive(&self, entries: &[String]) -> Result<Vec<String>, QueueError>;

    /// A round trip to the queue's backing store, for readiness.
    async fn ping(&self) -> Result<(), QueueError>;
}

//! The schema of the messages that travel on the queue from the services that cause
//! an email to the mailer. Versioned by serde tag: a mailer refuses (dead-letters) a
//! kind it does not know instead of guessing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One message on the queue. `id` is assigned when the outbox row is written and is
/// what the mailer deduplicates on: a message delivered twice is sent once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub notification: Notification,
}

impl Envelope {
    pub fn new(notification: Notification) -> Self {
        Self {
            id: Uuid::now_v7(),
            created_at: Utc::now(),
            notification,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// Sent when somebody signs up with `POST /account`.
    Welcome {
        to: String,
        account_id: String,
        full_name: Option<String>,
        username: Option<String>,
        /// ISO 639-1 language to render in; the mailer falls back to English.
        language: String,
    },
}

impl Notification {
    pub fn kind(&self) -> &'static str {
        match self {
            Notification::Welcome { .. } => "welcome",
        }
    }

    pub fn recipient(&self) -> &str {
        match self {
            Notification::Welcome { to, .. } => to,
        }
    }
}

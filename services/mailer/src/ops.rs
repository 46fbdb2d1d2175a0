//! What an operator does with mail, for the admin CLI (`admit mail …`) and the
//! mailer's admin API ([`crate::admin_api`]): list the dead letters, put them back
//! on the queue, and tell the status of a message by id or by recipient.
//!
//! A retry first puts the message's record back to `queued` (fresh attempts), then
//! moves the dead letter to the live queue: in that order, so the mailer never takes
//! the revived delivery while the record still says `dead` (it would acknowledge it
//! unsent). The move is atomic per dead letter, so a retry run twice sends once.

use admit_domain::Envelope;
use admit_queue::{DeadLetter, Queue, QueueError};
use admit_store::mail::{self, MailRow};
use admit_store::{mail_ops, outbox, Db, StoreError};
use chrono::{NaiveDateTime, SecondsFormat};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;

/// How many dead letters a retry looks through.
const RETRY_SCAN: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One dead letter as an operator sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    /// The dead letter's id (a Redis stream entry id in production): what
    /// `retry` takes when the message has no id.
    pub entry: String,
    /// The message's id, when its payload names one.
    pub message_id: Option<String>,
    /// `welcome`, `set_password`, …; absent for a payload the mailer cannot decode.
    pub kind: Option<String>,
    pub recipient: Option<String>,
    /// Why the mailer gave up (the last error: an SMTP 5xx, attempts exhausted, an
    /// undecodable or unrenderable message).
    pub reason: String,
    /// RFC 3339, UTC.
    pub dead_at: String,
    /// Attempts recorded for the message (absent when the mailer has no record).
    pub attempts: Option<i32>,
}

/// A message's delivery status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageStatus {
    pub message_id: String,
    pub kind: Option<String>,
    pub recipient: Option<String>,
    /// `queued` (written, not yet sent), `processing` (being sent), `sent`,
    /// `failed` (to be retried at `next_attempt_at`) or `dead`.
    pub status: String,
    /// Sends tried so far (a retry of a dead message starts again at 0).
    pub attempts: i32,
    pub last_error: Option<String>,
    /// RFC 3339, UTC: the next try of a `failed` message (the lease's end while
    /// `processing`).
    pub next_attempt_at: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub sent_at: Option<String>,
}

/// A dead letter put back on the queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Retried {
    pub entry: String,
    pub message_id: Option<String>,
}

/// Which dead letters to retry.
#[derive(Debug, Clone)]
pub enum Which {
    All,
    /// A message id or a dead letter's entry id.
    One(String),
}

fn time(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn ms_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<MailRow> for MessageStatus {
    fn from(r: MailRow) -> Self {
        MessageStatus {
            status: r.status().as_str().to_owned(),
            message_id: r.id,
            kind: Some(r.kind),
            recipient: Some(r.recipient),
            attempts: r.attempts,
            last_error: r.last_error,
            next_attempt_at: r.next_attempt_at.map(time),
            created_at: Some(time(r.created_at)),
            updated_at: Some(time(r.updated_at)),
            sent_at: r.sent_at.map(time),
        }
    }
}

/// A message known only from its payload (still in the outbox, or dead before the
/// mailer recorded it).
fn from_payload(message_id: String, payload: &str, status: &str) -> MessageStatus {
    let envelope = serde_json::from_str::<Envelope>(payload).ok();
    MessageStatus {
        message_id,
        kind: envelope.as_ref().map(|e| e.notification.kind().to_owned()),
        recipient: envelope.map(|e| e.notification.recipient().to_owned()),
        status: status.to_owned(),
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        created_at: None,
        updated_at: None,
        sent_at: None,
    }
}

#[derive(Clone)]
pub struct MailOps {
    pub queue: Arc<dyn Queue>,
    pub db: Db,
}

impl MailOps {
    pub fn new(queue: Arc<dyn Queue>, db: Db) -> Self {
        Self { queue, db }
    }

    /// The dead letters, oldest first, at most `limit`.
    pub async fn dead(&self, limit: usize) -> Result<Vec<DeadLetterView>, OpsError> {
        let dead = self.queue.dead_letters(limit).await?;
        let ids: Vec<String> = dead
            .iter()
            .filter_map(|d| admit_queue::payload_message_id(&d.payload))
            .collect();
        let rows = self
            .db
            .run(move |c| {
                ids.iter()
                    .filter_map(|id| mail::find(c, id).transpose())
                    .collect::<Result<Vec<MailRow>, _>>()
            })
            .await?;
        Ok(dead
            .into_iter()
            .map(|d| {
                let envelope = serde_json::from_str::<Envelope>(&d.payload).ok();
                let message_id = admit_queue::payload_message_id(&d.payload);
                let attempts = message_id
                    .as_ref()
                    .and_then(|id| rows.iter().find(|r| &r.id == id))
                    .map(|r| r.attempts);
                DeadLetterView {
                    kind: envelope.as_ref().map(|e| e.notification.kind().to_owned()),
                    recipient: envelope.map(|e| e.notification.recipient().to_owned()),
                    message_id,
                    reason: d.reason,
                    dead_at: ms_time(d.dead_at_ms),
                    attempts,
                    entry: d.entry,
                }
            })
            .collect())
    }

    /// Puts dead letters back on the queue, their records back to `queued`.
    /// `Which::One` that matches nothing (or that another retry just took) is
    /// [`OpsError::NotFound`]. Audited as `mail.dead.retry` by `origin`, right after
    /// (the retry spans the database and the queue, so it is not one transaction).
    pub async fn retry(
        &self,
        origin: &admit_store::audit::Origin,
        which: Which,
    ) -> Result<Vec<Retried>, OpsError> {
        let target = match &which {
            Which::One(id) => ("mail_message", id.clone()),
            Which::All => ("dead_letters", "all".to_owned()),
        };
        let result = self.retry_inner(which).await;
        let event = origin.event("mail.dead.retry", target.0, &target.1);
        let event = match &result {
            Ok(retried) => event.detail(serde_json::json!({
                "retried": retried.len(),
                "message_ids": retried.iter().filter_map(|r| r.message_id.clone()).take(100).collect::<Vec<_>>(),
            })),
            Err(OpsError::NotFound(_)) => event
                .outcome(admit_store::audit::FAILURE)
                .detail(serde_json::json!({"error": "not_found"})),
            Err(_) => event
                .outcome(admit_store::audit::FAILURE)
                .detail(serde_json::json!({"error": "unavailable"})),
        };
        admit_runtime::audit::record(&self.db, event).await;
        result
    }

    async fn retry_inner(&self, which: Which) -> Result<Vec<Retried>, OpsError> {
        let dead = self.queue.dead_letters(RETRY_SCAN).await?;
        let chosen: Vec<DeadLetter> = match &which {
            Which::All => dead,
            Which::One(id) => dead
                .into_iter()
                .filter(|d| {
                    &d.entry == id
                        || admit_queue::payload_message_id(&d.payload).as_ref() == Some(id)
                })
                .collect(),
        };
        let not_found = || match &which {
            Which::One(id) => Err(OpsError::NotFound(format!("no dead letter {id}"))),
            Which::All => Ok(Vec::new()),
        };
        if chosen.is_empty() {
            return not_found();
        }
        let ids: Vec<String> = chosen
            .iter()
            .filter_map(|d| admit_queue::payload_message_id(&d.payload))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        self.db
            .write(move |c| mail_ops::requeue_dead(c, &ids, admit_store::now()))
            .await?;
        let entries: Vec<String> = chosen.iter().map(|d| d.entry.clone()).collect();
        let moved: HashSet<String> = self.queue.revive(&entries).await?.into_iter().collect();
        let retried: Vec<Retried> = chosen
            .into_iter()
            .filter(|d| moved.contains(&d.entry))
            .map(|d| Retried {
                message_id: admit_queue::payload_message_id(&d.payload),
                entry: d.entry,
            })
            .collect();
        if retried.is_empty() {
            return not_found();
        }
        for r in &retried {
            tracing::info!(entry = %r.entry, message_id = ?r.message_id, "dead letter put back on the queue");
        }
        Ok(retried)
    }

    /// The status of message `id`: the mailer's record; else a dead letter of it
    /// (dead before it was recorded); else its outbox row (`queued`).
    pub async fn status(&self, id: &str) -> Result<MessageStatus, OpsError> {
        let owned = id.to_owned();
        let (row, waiting) = self
            .db
            .run(move |c| Ok((mail::find(c, &owned)?, mail_ops::in_outbox(c, &owned)?)))
            .await?;
        if let Some(row) = row {
            return Ok(row.into());
        }
        let dead = self.queue.dead_letters(RETRY_SCAN).await?;
        if let Some(d) = dead
            .iter()
            .rev()
            .find(|d| admit_queue::payload_message_id(&d.payload).as_deref() == Some(id))
        {
            let mut s = from_payload(id.to_owned(), &d.payload, "dead");
            s.last_error = Some(d.reason.clone());
            s.updated_at = Some(ms_time(d.dead_at_ms));
            return Ok(s);
        }
        match waiting {
            Some(w) => {
                let mut s = from_payload(w.message_id, &w.payload, "queued");
                s.created_at = Some(time(w.created_at));
                Ok(s)
            }
            None => Err(OpsError::NotFound(format!("no message {id}"))),
        }
    }

    /// Every message to `recipient` (as given or in lower case), newest first: the
    /// mailer's records, and the messages still waiting in the outbox.
    pub async fn by_recipient(
        &self,
        recipient: &str,
        limit: usize,
    ) -> Result<Vec<MessageStatus>, OpsError> {
        let owned = recipient.to_owned();
        let (rows, waiting) = self
            .db
            .run(move |c| {
                Ok((
                    mail_ops::by_recipient(c, &owned, limit as i64)?,
                    mail_ops::unpublished(c, outbox::MAIL_TOPIC, 1000)?,
                ))
            })
            .await?;
        let known: HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut out: Vec<MessageStatus> = waiting
            .into_iter()
            .filter(|w| !known.contains(&w.message_id))
            .filter_map(|w| {
                let s = from_payload(w.message_id.clone(), &w.payload, "queued");
                let to = s.recipient.as_deref()?;
                to.eq_ignore_ascii_case(recipient).then(|| MessageStatus {
                    created_at: Some(time(w.created_at)),
                    ..s
                })
            })
            .rev()
            .collect();
        out.extend(rows.into_iter().map(MessageStatus::from));
        out.truncate(limit);
        Ok(out)
    }
}

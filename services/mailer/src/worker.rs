//! The mailer's loop: take deliveries from the queue, send each message once, and
//! acknowledge only when its outcome is recorded.
//!
//! For each delivery: decode (undecodable: dead-letter); claim the message in the
//! mailer's table (sent or dead already: acknowledge; another replica has it or its
//! retry is not due: leave it pending); render; send. The batch is claimed in one
//! statement on PostgreSQL. Each message's outcome is recorded the moment its relay
//! answers: a recorder task commits whatever outcomes arrived since its last commit
//! in one statement (a group commit, at most one a millisecond), so a process killed
//! after the relay's 250 sends again only what was between that answer and its
//! commit (a few milliseconds), not a whole batch. The batch's recorded messages
//! are then acknowledged together, after their records. A transient failure records `failed` with the
//! time of the next try (backoff doubling from `retry_base`) and leaves the delivery
//! pending, to come back after the claim idle time; after `max_attempts`, or on a
//! permanent failure (SMTP 5xx), the message is recorded `dead` and moved to the
//! dead-letter stream. One bad message never holds up the others.

use crate::render::Renderer;
use crate::transport::{SendError, Transport};
use admit_domain::Envelope;
use admit_queue::{Delivery, Queue};
use admit_store::mail::{self, Claim, MailRow, Wanted};
use admit_store::{Backend, Conn, Db};
use futures_util::StreamExt;
use prometheus::IntCounterVec;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    /// How long a claimed message is reserved for this sender: longer than a send.
    pub lease: Duration,
    /// How long a short batch waits for more messages.
    pub batch_window: Duration,
    /// Batches handled at once, so that one batch's database work overlaps another's
    /// sends.
    pub batches_in_flight: usize,
}

#[derive(Clone)]
pub struct Worker {
    pub queue: Arc<dyn Queue>,
    pub db: Db,
    pub transport: Arc<dyn Transport>,
    /// Where text messages (SMS) go.
    pub sms: Arc<dyn crate::sms::SmsTransport>,
    pub renderer: Arc<Renderer>,
    pub config: WorkerConfig,
    pub outcomes: IntCounterVec,
    /// While this says yes, the worker takes nothing from the queue (the mail waits
    /// in the stream for a replica that can send it right): the mailer's
    /// `internal.link_key` differs from the account service's, so every link it
    /// wrote would be dead.
    pub hold: Arc<dyn Fn() -> bool + Send + Sync>,
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

/// One message's send, for recording.
struct Attempt {
    index: usize,
    id: String,
    kind: String,
    attempts: u32,
    result: Result<(), SendError>,
}

/// A failed send to record: the delay before the next try (`None`: dead).
struct Failure {
    id: String,
    reason: String,
    retry_in: Option<chrono::Duration>,
}

/// One outcome for the recorder, and where it says whether the record committed.
struct Record {
    /// `Ok(id)`: sent; `Err(failure)`: failed or dead.
    outcome: Result<String, Failure>,
    done: oneshot::Sender<bool>,
}

/// Outcomes taken into one commit at most (one statement whatever the number).
const RECORD_GROUP: usize = 1024;

/// The shortest time from the start of one record commit to the start of the next.
/// The commit is one short statement; run back to back, they would each carry one or
/// two outcomes and keep a PostgreSQL backend busy all the time. Paced, a commit takes
/// every outcome of the last millisecond (at 8,000 emails/s about 8), which adds at
/// most this much to the window in which a killed mailer has sent a message and not
/// yet recorded it. An outcome that arrives while the recorder is idle is committed
/// at once.
const RECORD_INTERVAL: Duration = Duration::from_millis(1);

/// The handle of the recorder task: [`Recorder::record`] returns once the outcome is
/// durable (`true`) or its commit failed (`false`).
#[derive(Clone)]
struct Recorder {
    tx: mpsc::Sender<Record>,
}

impl Recorder {
    /// Starts the recorder on `db`; it ends when every handle is dropped, after
    /// committing what it was given.
    fn spawn(db: Db) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(RECORD_GROUP * 4);
        (Self { tx }, tokio::spawn(record_loop(db, rx)))
    }

    async fn record(&self, outcome: Result<String, Failure>) -> bool {
        let (done, answer) = oneshot::channel();
        if self.tx.send(Record { outcome, done }).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// The group commit: waits for an outcome, takes every other one already waiting,
/// records them all in one statement ([`mail::record_outcomes`]), answers each, and
/// starts again, at most once every [`RECORD_INTERVAL`]. While one commit runs, the
/// next group gathers. The recorder keeps its database connection from one commit to
/// the next (no check-out, no validity probe); one whose commit failed goes back to
/// the pool and the next commit takes another.
async fn record_loop(db: Db, mut rx: mpsc::Receiver<Record>) {
    let mut group: Vec<Record> = Vec::with_capacity(RECORD_GROUP);
    let mut held: Option<Conn> = None;
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        if let Some(t) = last {
            tokio::time::sleep_until(t + RECORD_INTERVAL).await;
        }
        if rx.recv_many(&mut group, RECORD_GROUP).await == 0 {
            break;
        }
        last = Some(tokio::time::Instant::now());
        let mut sent_ids: Vec<String> = Vec::new();
        let mut failures: Vec<Failure> = Vec::new();
        let mut answers: Vec<oneshot::Sender<bool>> = Vec::with_capacity(group.len());
        for Record { outcome, done } in group.drain(..) {
            match outcome {
                Ok(id) => sent_ids.push(id),
                Err(f) => failures.push(f),
            }
            answers.push(done);
        }
        let count = answers.len();
        let (db, conn) = (db.clone(), held.take());
        let recorded = tokio::task::spawn_blocking(move || {
            let mut conn = match conn {
                Some(c) => c,
                None => match db.get() {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let now = admit_store::now();
            let failed: Vec<mail::Failed> = failures
                .into_iter()
                .map(|f| mail::Failed {
                    id: f.id,
                    error: f.reason,
                    next_attempt_at: f.retry_in.map(|d| now + d),
                })
                .collect();
            let recorded = write_mail_on(&db, &mut conn, |c| {
                mail::record_outcomes(c, &sent_ids, &failed, now)
            });
            let keep = recorded.is_ok().then_some(conn);
            (keep, recorded)
        })
        .await
        .unwrap_or_else(|e| {
            (
                None,
                Err(admit_store::StoreError::Internal(format!(
                    "blocking task failed: {e}"
                ))),
            )
        });
        held = recorded.0;
        let ok = match recorded.1 {
            Ok(()) => true,
            Err(e) => {
                // Sent but not recorded: the deliveries stay pending and the messages
                // may be sent again. At least once, never lost.
                tracing::error!(error = %e, count, "sent, but the records failed");
                false
            }
        };
        for done in answers {
            let _ = done.send(ok);
        }
    }
}

/// Runs one of the mailer's writes ([`mail::claim_many`], [`mail::record_outcomes`]),
/// which on PostgreSQL are single statements, atomic by themselves: there without a
/// transaction around them (no BEGIN and COMMIT round trips); on SQLite in a
/// transaction under the process's write lock.
fn write_mail_on<T>(
    db: &Db,
    conn: &mut admit_store::AnyConnection,
    f: impl FnOnce(&mut admit_store::AnyConnection) -> Result<T, admit_store::StoreError>,
) -> Result<T, admit_store::StoreError> {
    match db.backend() {
        Backend::Postgres => f(conn),
        Backend::Sqlite => db.write_on(conn, f),
    }
}

/// [`write_mail_on`] with a connection from the pool, on the blocking pool.
async fn write_mail<T, F>(db: &Db, f: F) -> Result<T, admit_store::StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut admit_store::AnyConnection) -> Result<T, admit_store::StoreError>
        + Send
        + 'static,
{
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = db.get()?;
        write_mail_on(&db, &mut conn, f)
    })
    .await
    .map_err(|e| admit_store::StoreError::Internal(format!("blocking task failed: {e}")))?
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
    /// Runs until `stop`; every delivery already read from the queue is handled
    /// (sent and recorded, or left to retry) before it returns, and what was not
    /// read stays in the stream for the next consumer.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        let max = self.config.concurrency.max(1);
        let in_flight = Arc::new(Semaphore::new(self.config.batches_in_flight.max(1)));
        let mut batches = JoinSet::new();
        let (recorder, recorder_task) = Recorder::spawn(self.db.clone());
        while !stop.is_cancelled() {
            while batches.try_join_next().is_some() {}
            if (self.hold)() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => break,
                }
                continue;
            }
            let permit = tokio::select! {
                p = in_flight.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stop.cancelled() => break,
            };
            // Not raced against `stop`: a read that Redis answered would leave its
            // entries pending on this consumer, unsent until another replica takes
            // them over after `claim_idle_ms`. The read blocks for at most a second,
            // and a stop cuts the batch window short instead.
            let batch = self.receive_batch(max, &stop).await;
            match batch {
                Ok(deliveries) => {
                    backoff = Duration::from_millis(200);
                    if !deliveries.is_empty() {
                        let (worker, recorder) = (self.clone(), recorder.clone());
                        batches.spawn(async move {
                            worker.handle_batch(deliveries, &recorder).await;
                            drop(permit);
                        });
                    }
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
        // The batches in hand are finished before the worker says it stopped.
        while batches.join_next().await.is_some() {}
        drop(recorder);
        let _ = recorder_task.await;
        tracing::info!("mailer worker stopped");
    }

    /// Up to `max` deliveries. A short batch waits `batch_window` for company, so
    /// that under a steady trickle the per-batch costs (one claim transaction, one
    /// record transaction, one acknowledgement) are shared by several messages.
    /// On `stop` the window is cut short and what was received is still returned, to
    /// be handled before the worker ends.
    async fn receive_batch(
        &self,
        max: usize,
        stop: &CancellationToken,
    ) -> Result<Vec<Delivery>, admit_queue::QueueError> {
        let mut batch = self.queue.receive(max, Duration::from_secs(1)).await?;
        if !batch.is_empty()
            && batch.len() < max
            && !self.config.batch_window.is_zero()
            && !stop.is_cancelled()
        {
            tokio::select! {
                _ = tokio::time::sleep(self.config.batch_window) => {}
                _ = stop.cancelled() => {}
            }
            // A failed second read must not drop the first one's entries.
            match self.queue.receive(max - batch.len(), Duration::ZERO).await {
                Ok(more) => batch.extend(more),
                Err(e) => tracing::warn!(error = %e, "cannot read more of the queue"),
            }
        }
        Ok(batch)
    }

    /// Handles a batch: decode, claim every message in one transaction, render and
    /// send concurrently, each outcome recorded by `recorder` as soon as its relay
    /// answered, then acknowledge the recorded ones (sent, or found sent already) in
    /// one round trip.
    async fn handle_batch(&self, deliveries: Vec<Delivery>, recorder: &Recorder) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; deliveries.len()];
        let mut decoded: Vec<(usize, Envelope)> = Vec::with_capacity(deliveries.len());
        for (i, d) in deliveries.iter().enumerate() {
            match serde_json::from_str::<Envelope>(&d.payload) {
                Ok(e) => decoded.push((i, e)),
                Err(e) => {
                    tracing::error!(receipt = %d.receipt, error = %e, "undecodable message");
                    outcomes[i] = Some(self.dead_letter(d, &format!("undecodable: {e}")).await);
                }
            }
        }

        // 1. Claim.
        let lease =
            chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(60));
        let wanted: Vec<Wanted> = decoded
            .iter()
            .map(|(_, e)| Wanted {
                id: e.id.to_string(),
                kind: e.notification.kind().to_owned(),
                recipient: e.notification.recipient().to_owned(),
            })
            .collect();
        let claims = write_mail(&self.db, move |conn| {
            let now = admit_store::now();
            mail::claim_many(conn, &wanted, now, now + lease)
        })
        .await;
        let claims = match claims {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the messages; left for later");
                return self.finish(&deliveries, outcomes).await;
            }
        };
        let mut mine: Vec<(usize, Envelope, MailRow)> = Vec::new();
        for ((i, envelope), claim) in decoded.into_iter().zip(claims) {
            match claim {
                Claim::Mine(row) => mine.push((i, envelope, row)),
                Claim::Done => outcomes[i] = Some(Outcome::AlreadyDone),
                Claim::Busy => outcomes[i] = Some(Outcome::Busy),
            }
        }

        // 2. Render, send, and record each outcome as soon as the relay answered. A
        // send that has not begun by half the lease (it waited for an SMTP session)
        // is left for later: once the lease ends another batch may claim the message
        // and send it too. It comes back after the claim idle time, no attempt spent.
        let start_by = tokio::time::Instant::now() + self.config.lease / 2;
        let recorded: Vec<(usize, Outcome, Option<String>)> = futures_util::stream::iter(mine)
            .map(|(i, envelope, row)| async move {
                let attempt = self.send(i, &envelope, &row, start_by).await;
                self.record(recorder, attempt).await
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;

        // 3. Dead letters (their records say dead), then the acknowledgement.
        for (i, outcome, dead_reason) in recorded {
            outcomes[i] = Some(match dead_reason {
                Some(reason) => self.dead_letter(&deliveries[i], &reason).await,
                None => outcome,
            });
        }
        self.finish(&deliveries, outcomes).await
    }

    /// Renders and sends one message.
    async fn send(
        &self,
        index: usize,
        envelope: &Envelope,
        row: &MailRow,
        start_by: tokio::time::Instant,
    ) -> Attempt {
        let result = if envelope.notification.is_sms() {
            match self.renderer.render_sms(envelope) {
                Ok(sms) => self.sms.send_sms(&sms).await,
                Err(e) => Err(SendError::Permanent(e.to_string())),
            }
        } else {
            match self.renderer.render(envelope) {
                Ok(email) => self.transport.send_by(&email, start_by).await,
                Err(e) => Err(SendError::Permanent(e.to_string())),
            }
        };
        Attempt {
            index,
            id: envelope.id.to_string(),
            kind: envelope.notification.kind().to_owned(),
            attempts: row.attempts as u32 + 1,
            result,
        }
    }

    /// Hands one outcome to the recorder and waits until it is durable. Returns the
    /// outcome and, for a message given up on, the reason to dead-letter it with; a
    /// record that failed is `Deferred` (the delivery stays pending).
    async fn record(
        &self,
        recorder: &Recorder,
        Attempt {
            index: i,
            id,
            kind,
            attempts,
            result,
        }: Attempt,
    ) -> (usize, Outcome, Option<String>) {
        let now_plus =
            |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1));
        let (record, outcome, dead_reason) = match result {
            Err(SendError::Late) => {
                tracing::debug!(message_id = %id, "no SMTP session by half the lease; left for later");
                return (i, Outcome::Deferred, None);
            }
            Ok(()) => {
                tracing::info!(message_id = %id, kind = %kind, "email sent");
                (Ok(id), Outcome::Sent, None)
            }
            Err(SendError::Transient(reason)) if attempts < self.config.max_attempts => {
                let delay = self.config.retry_base * 2u32.saturating_pow(attempts - 1).min(1 << 16);
                tracing::warn!(message_id = %id, reason = %reason, attempts, retry_in_ms = delay.as_millis() as u64, "send failed; will retry");
                let failure = Failure {
                    id,
                    reason,
                    retry_in: Some(now_plus(delay)),
                };
                (Err(failure), Outcome::Retry, None)
            }
            Err(SendError::Transient(reason)) | Err(SendError::Permanent(reason)) => {
                tracing::warn!(message_id = %id, reason = %reason, attempts, "giving up on the message");
                let failure = Failure {
                    id,
                    reason: reason.clone(),
                    retry_in: None,
                };
                (Err(failure), Outcome::Dead, Some(reason))
            }
        };
        if recorder.record(record).await {
            (i, outcome, dead_reason)
        } else {
            (i, Outcome::Deferred, None)
        }
    }

    /// Acknowledges what is recorded, counts every outcome.
    async fn finish(
        &self,
        deliveries: &[Delivery],
        outcomes: Vec<Option<Outcome>>,
    ) -> Vec<Outcome> {
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Deferred))
            .collect();
        let done: Vec<Delivery> = deliveries
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, Outcome::Sent | Outcome::AlreadyDone))
            .map(|(d, _)| d.clone())
            .collect();
        if let Err(e) = self.queue.ack_many(&done).await {
            // The records say sent; redeliveries will be acknowledged as duplicates.
            tracing::warn!(error = %e, count = done.len(), "acknowledgement failed");
        }
        for o in &outcomes {
            self.outcomes.with_label_values(&[o.label()]).inc();
        }
        outcomes
    }

    /// Moves a delivery to the dead letters. Its record, where it has one, is
    /// already `dead`.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Outcome {
        match self.queue.dead_letter(delivery, reason).await {
            Ok(()) => Outcome::Dead,
            Err(e) => {
                tracing::warn!(error = %e, "cannot dead-letter; left for later");
                Outcome::Deferred
            }
        }
    }
}

//! The production queue: a Redis Stream read by a consumer group.
//!
//! - Entries are acknowledged (XACK) and deleted (XDEL) only after the consumer's
//!   effect is durable, so the stream holds exactly the messages not yet handled and
//!   nothing pending is ever trimmed away.
//! - A consumer first re-reads its own pending entries (it may be the same consumer
//!   restarted), then takes over entries that another consumer left idle for longer
//!   than `claim_idle` (XAUTOCLAIM), then reads new ones.
//! - The group is created at id 0, so messages published before any mailer ever ran
//!   are delivered too.

use crate::{DeadLetter, Delivery, Queue, QueueError};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, Clone)]
pub struct RedisQueueConfig {
    pub url: String,
    /// Prefix of every key, so several deployments (or tests) share one Redis.
    pub prefix: String,
    pub topic: String,
    pub group: String,
    pub consumer: String,
    /// Idle time after which another consumer's pending entry is taken over: longer
    /// than the slowest send.
    pub claim_idle: Duration,
}

impl RedisQueueConfig {
    /// The mail stream (`{prefix}:mail`) read by the `mailer` consumer group: what
    /// the relay writes to and the mailer reads, so both name it the same.
    pub fn mail(url: &str, prefix: &str, consumer: &str, claim_idle: Duration) -> Self {
        Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            topic: admit_store::outbox::MAIL_TOPIC.to_owned(),
            group: "mailer".to_owned(),
            consumer: consumer.to_owned(),
            claim_idle,
        }
    }
}

pub struct RedisQueue {
    cfg: RedisQueueConfig,
    client: redis::Client,
    // Commands share one multiplexed connection; blocking reads get their own so
    // they do not hold up acknowledgements.
    conn: Mutex<Option<ConnectionManager>>,
    reader: Mutex<Option<ConnectionManager>>,
    state: Mutex<ReadState>,
}

#[derive(Default)]
struct ReadState {
    group_ready: bool,
    own_pending_done: bool,
    claim_cursor: Option<String>,
    /// After a take-over scan that went through the whole pending list and found
    /// nothing, the next one waits until then (see [`RedisQueue::autoclaim_pause`]).
    next_claim_scan: Option<tokio::time::Instant>,
}

fn unavailable(e: redis::RedisError) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl RedisQueue {
    pub fn new(cfg: RedisQueueConfig) -> Result<Self, QueueError> {
        let client = redis::Client::open(cfg.url.as_str()).map_err(unavailable)?;
        Ok(Self {
            cfg,
            client,
            conn: Mutex::new(None),
            reader: Mutex::new(None),
            state: Mutex::new(ReadState::default()),
        })
    }

    pub fn stream_key(&self) -> String {
        format!("{}:{}", self.cfg.prefix, self.cfg.topic)
    }

    pub fn dead_key(&self) -> String {
        format!("{}:{}:dead", self.cfg.prefix, self.cfg.topic)
    }

    async fn manager(
        &self,
        slot: &Mutex<Option<ConnectionManager>>,
        response_timeout: Duration,
    ) -> Result<ConnectionManager, QueueError> {
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(response_timeout)
            .set_number_of_retries(1);
        let c = self
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// How long a take-over scan (XAUTOCLAIM) that found nothing to take waits before
    /// the next: an eighth of `claim_idle`, at most a second. Each scan walks up to ten
    /// times `max` entries of the group's pending list, which under load holds every
    /// batch in flight, and found nothing before this; an entry left by a dead consumer
    /// is then taken over at most this much after `claim_idle`.
    fn autoclaim_pause(&self) -> Duration {
        (self.cfg.claim_idle / 8).min(Duration::from_secs(1))
    }

    async fn conn(&self) -> Result<ConnectionManager, QueueError> {
        self.manager(&self.conn, Duration::from_secs(5)).await
    }

    async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut state = self.state.lock().await;
        if state.group_ready {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let created: Result<(), redis::RedisError> = c
            .xgroup_create_mkstream(self.stream_key(), &self.cfg.group, "0")
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(unavailable(e)),
        }
        state.group_ready = true;
        Ok(())
    }

    /// Appends a message (the relay's side). `id` travels with it for deduplication.
    pub async fn publish_batch(&self, messages: &[(String, String)]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.ensure_group().await?;
        let mut c = self.conn().await?;
        let key = self.stream_key();
        let mut pipe = redis::pipe();
        for (id, payload) in messages {
            pipe.xadd(
                &key,
                "*",
                &[("id", id.as_str()), ("payload", payload.as_str())],
            )
            .ignore();
        }
        pipe.query_async::<()>(&mut c).await.map_err(unavailable)
    }

    fn to_deliveries(entries: Vec<redis::streams::StreamId>) -> Vec<Delivery> {
        entries
            .into_iter()
            .map(|e| {
                let payload = e.get::<String>("payload").unwrap_or_default();
                Delivery {
                    receipt: e.id,
                    payload,
                }
            })
            .collect()
    }

    async fn read_group(
        &self,
        start: &str,
        max: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut opts = StreamReadOptions::default()
            .group(&self.cfg.group, &self.cfg.consumer)
            .count(max);
        let mut c = match block {
            Some(b) => {
                opts = opts.block(b.as_millis() as usize);
                self.manager(&self.reader, b + Duration::from_secs(5))
                    .await?
            }
            None => self.conn().await?,
        };
        let reply: Option<StreamReadReply> = c
            .xread_options(&[self.stream_key()], &[start], &opts)
            .await
            .map_err(unavailable)?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .map(Self::to_deliveries)
            .unwrap_or_default())
    }

    /// Counts of entries in the stream and in the dead-letter stream (for tests and
    /// operators).
    pub async fn lengths(&self) -> Result<(usize, usize), QueueError> {
        let mut c = self.conn().await?;
        let live: usize = c.xlen(self.stream_key()).await.map_err(unavailable)?;
        let dead: usize = c.xlen(self.dead_key()).await.map_err(unavailable)?;
        Ok((live, dead))
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.ensure_group().await?;
        let own_done = self.state.lock().await.own_pending_done;
        if !own_done {
            let mine = self.read_group("0", max, None).await?;
            if !mine.is_empty() {
                return Ok(mine);
            }
            self.state.lock().await.own_pending_done = true;
        }
        let (cursor, scan_due) = {
            let state = self.state.lock().await;
            let due = state
                .next_claim_scan
                .is_none_or(|t| tokio::time::Instant::now() >= t);
            let cursor = state
                .claim_cursor
                .clone()
                .unwrap_or_else(|| "0-0".to_owned());
            (cursor, due)
        };
        if !scan_due {
            return self
                .read_group(">", max, Some(wait.max(Duration::from_millis(1))))
                .await;
        }
        let mut c = self.conn().await?;
        let claimed: StreamAutoClaimReply = c
            .xautoclaim_options(
                self.stream_key(),
                &self.cfg.group,
                &self.cfg.consumer,
                self.cfg.claim_idle.as_millis() as u64,
                &cursor,
                StreamAutoClaimOptions::default().count(max),
            )
            .await
            .map_err(unavailable)?;
        {
            let mut state = self.state.lock().await;
            // "0-0": the scan went through the whole pending list.
            state.next_claim_scan = (claimed.claimed.is_empty() && claimed.next_stream_id == "0-0")
                .then(|| tokio::time::Instant::now() + self.autoclaim_pause());
            state.claim_cursor = Some(claimed.next_stream_id.clone());
        }
        if !claimed.claimed.is_empty() {
            return Ok(Self::to_deliveries(claimed.claimed));
        }
        self.read_group(">", max, Some(wait.max(Duration::from_millis(1))))
            .await
    }

    async fn ack_many(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let key = self.stream_key();
        let ids: Vec<&str> = deliveries.iter().map(|d| d.receipt.as_str()).collect();
        redis::pipe()
            .atomic()
            .xack(&key, &self.cfg.group, &ids)
            .ignore()
            .xdel(&key, &ids)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let mut c = self.conn().await?;
        let key = self.stream_key();
        redis::pipe()
            .atomic()
            .xadd(
                self.dead_key(),
                "*",
                &[
                    ("receipt", delivery.receipt.as_str()),
                    ("payload", delivery.payload.as_str()),
                    ("reason", reason),
                ],
            )
            .ignore()
            .xack(&key, &self.cfg.group, &[&delivery.receipt])
            .ignore()
            .xdel(&key, &[&delivery.receipt])
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut c = self.conn().await?;
        let reply: redis::streams::StreamRangeReply = c
            .xrange_count(self.dead_key(), "-", "+", max)
            .await
            .map_err(unavailable)?;
        Ok(reply
            .ids
            .into_iter()
            .map(|e| DeadLetter {
                dead_at_ms: e
                    .id
                    .split('-')
                    .next()
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or_default(),
                payload: e.get::<String>("payload").unwrap_or_default(),
                reason: e.get::<String>("reason").unwrap_or_default(),
                entry: e.id,
            })
            .collect())
    }

    async fn revive(&self, entries: &[String]) -> Result<Vec<String>, QueueError> {
        // One script per entry: read it from the dead letters, append its payload to
        // the live stream, delete it. Atomic, so a retry run twice (or by two
        // operators) puts the message back once.
        let script = redis::Script::new(
            r"
            local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
            if #found == 0 then return 0 end
            local fields = found[1][2]
            local payload = ''
            for i = 1, #fields, 2 do
                if fields[i] == 'payload' then payload = fields[i + 1] end
            end
            redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'payload', payload)
            redis.call('XDEL', KEYS[1], ARGV[1])
            return 1
            ",
        );
        self.ensure_group().await?;
        let mut c = self.conn().await?;
        let mut moved = Vec::new();
        for entry in entries {
            let id = {
                let dead: redis::streams::StreamRangeReply = c
                    .xrange(self.dead_key(), entry, entry)
                    .await
                    .map_err(unavailable)?;
                dead.ids
                    .first()
                    .and_then(|e| e.get::<String>("payload"))
                    .and_then(|p| crate::payload_message_id(&p))
                    .unwrap_or_default()
            };
            let n: i64 = script
                .key(self.dead_key())
                .key(self.stream_key())
                .arg(entry)
                .arg(id)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            if n == 1 {
                moved.push(entry.clone());
            }
        }
        Ok(moved)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut c = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

//! The queue's contract, run against every implementation: the outbox queue on SQLite
//! and on PostgreSQL, and Redis Streams (fed by the relay, as in production).

use admit_domain::{Envelope, Notification};
use admit_queue::local::OutboxQueue;
use admit_queue::redis::{RedisQueue, RedisQueueConfig};
use admit_queue::relay::Relay;
use admit_queue::Queue;
use admit_store::testing::TestDatabase;
use admit_store::{outbox, Db};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const IDLE: Duration = Duration::from_millis(600);
const WAIT: Duration = Duration::from_millis(200);

fn redis_url() -> String {
    std::env::var("ADMIT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One implementation under test: how to put messages in, and consumers.
struct Fixture {
    name: &'static str,
    db: Db,
    _tdb: TestDatabase,
    redis_prefix: Option<String>,
    wake: Arc<Notify>,
}

impl Fixture {
    fn all() -> anyhow::Result<Vec<Fixture>> {
        let mut out = Vec::new();
        for (name, tdb) in [
            ("outbox/sqlite", TestDatabase::sqlite()?),
            ("outbox/postgres", TestDatabase::postgres()?),
        ] {
            out.push(Fixture {
                name,
                db: tdb.db()?,
                _tdb: tdb,
                redis_prefix: None,
                wake: Arc::new(Notify::new()),
            });
        }
        let tdb = TestDatabase::sqlite()?;
        out.push(Fixture {
            name: "redis",
            db: tdb.db()?,
            _tdb: tdb,
            redis_prefix: Some(format!("admit-test-{}", uuid::Uuid::new_v4().simple())),
            wake: Arc::new(Notify::new()),
        });
        Ok(out)
    }

    fn redis(&self, consumer: &str) -> anyhow::Result<Arc<RedisQueue>> {
        Ok(Arc::new(RedisQueue::new(RedisQueueConfig::mail(
            &redis_url(),
            self.redis_prefix.as_deref().unwrap_or_default(),
            consumer,
            IDLE,
        ))?))
    }

    fn consumer(&self, name: &str) -> anyhow::Result<Arc<dyn Queue>> {
        Ok(match &self.redis_prefix {
            Some(_) => self.redis(name)?,
            None => Arc::new(OutboxQueue::new(
                self.db.clone(),
                outbox::MAIL_TOPIC,
                IDLE,
                self.wake.clone(),
            )),
        })
    }

    /// Commits messages to the outbox (and, for Redis, relays them).
    async fn publish(&self, n: usize) -> anyhow::Result<HashSet<String>> {
        let mut ids = HashSet::new();
        for i in 0..n {
            let e = Envelope::new(Notification::Welcome {
                to: format!("u{i}@example.com"),
                account_id: format!("a{i}"),
                full_name: None,
                username: None,
                language: "en".into(),
            });
            ids.insert(e.id.to_string());
            self.db
                .write(move |c| outbox::enqueue(c, outbox::MAIL_TOPIC, &e))
                .await?;
        }
        if self.redis_prefix.is_some() {
            let relay = Relay {
                db: self.db.clone(),
                queue: self.redis("relay")?,
                topic: outbox::MAIL_TOPIC.into(),
                batch: 500,
                wake: self.wake.clone(),
                metrics: Default::default(),
            };
            while relay.run_once().await? > 0 {}
        }
        self.wake.notify_one();
        Ok(ids)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Leave the shared Redis as we found it.
        if let Some(prefix) = &self.redis_prefix {
            if let Ok(mut c) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}:*"))
                    .query(&mut c)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut c);
                }
            }
        }
    }
}

fn id_of(payload: &str) -> String {
    serde_json::from_str::<Envelope>(payload)
        .map(|e| e.id.to_string())
        .unwrap_or_default()
}

async fn drain(q: &dyn Queue, rounds: usize) -> anyhow::Result<Vec<admit_queue::Delivery>> {
    let mut all = Vec::new();
    for _ in 0..rounds {
        let got = q.receive(100, WAIT).await?;
        if got.is_empty() {
            break;
        }
        all.extend(got);
    }
    Ok(all)
}

#[tokio::test]
async fn every_message_is_delivered_and_acked_ones_never_again() -> anyhow::Result<()> {
    for f in Fixture::all()? {
        let ids = f.publish(25).await?;
        let q = f.consumer("c1")?;
        let got = drain(q.as_ref(), 10).await?;
        let seen: HashSet<String> = got.iter().map(|d| id_of(&d.payload)).collect();
        assert_eq!(seen, ids, "{}: every published message, once", f.name);
        for d in &got {
            q.ack(d).await?;
        }
        tokio::time::sleep(IDLE * 2).await;
        let again = drain(f.consumer("c2")?.as_ref(), 3).await?;
        assert!(
            again.is_empty(),
            "{}: acknowledged messages came back: {}",
            f.name,
            again.len()
        );
        q.ping().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_dead_consumers_messages_go_to_another_after_the_idle_time() -> anyhow::Result<()> {
    for f in Fixture::all()? {
        let ids = f.publish(10).await?;
        let dead = f.consumer("dies")?;
        let taken = drain(dead.as_ref(), 5).await?;
        assert_eq!(taken.len(), 10, "{}", f.name);
        drop(dead); // never acknowledges

        let other = f.consumer("survivor")?;
        let early = other.receive(100, Duration::from_millis(50)).await?;
        assert!(
            early.is_empty(),
            "{}: taken over before the idle time",
            f.name
        );
        tokio::time::sleep(IDLE + Duration::from_millis(300)).await;
        let recovered = drain(other.as_ref(), 10).await?;
        let seen: HashSet<String> = recovered.iter().map(|d| id_of(&d.payload)).collect();
        assert_eq!(seen, ids, "{}: nothing lost", f.name);
        for d in &recovered {
            other.ack(d).await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_dead_letter_leaves_the_queue_and_others_flow() -> anyhow::Result<()> {
    for f in Fixture::all()? {
        f.publish(3).await?;
        let q = f.consumer("c")?;
        let got = drain(q.as_ref(), 5).await?;
        assert_eq!(got.len(), 3, "{}", f.name);
        q.dead_letter(&got[0], "550 no such user").await?;
        q.ack(&got[1]).await?;
        tokio::time::sleep(IDLE + Duration::from_millis(300)).await;
        let back = drain(f.consumer("c2")?.as_ref(), 5).await?;
        assert_eq!(
            back.len(),
            1,
            "{}: only the unacknowledged one returns",
            f.name
        );
        assert_eq!(id_of(&back[0].payload), id_of(&got[2].payload));
        if f.redis_prefix.is_some() {
            let (_, dead) = f.redis("inspect")?.lengths().await?;
            assert_eq!(dead, 1, "the dead-letter stream holds it");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_dead_letter_keeps_its_message_and_is_revived_once() -> anyhow::Result<()> {
    for f in Fixture::all()? {
        let ids = f.publish(2).await?;
        let q = f.consumer("c")?;
        let got = drain(q.as_ref(), 5).await?;
        assert_eq!(got.len(), 2, "{}", f.name);
        q.dead_letter(&got[0], "550 no such user").await?;
        q.ack(&got[1]).await?;
        let dead = q.dead_letters(10).await?;
        assert_eq!(dead.len(), 1, "{}", f.name);
        assert_eq!(
            dead[0].payload, got[0].payload,
            "{}: the original message",
            f.name
        );
        assert_eq!(dead[0].reason, "550 no such user");
        assert!(dead[0].dead_at_ms > 0);
        assert_eq!(
            admit_queue::payload_message_id(&dead[0].payload),
            Some(id_of(&got[0].payload))
        );

        // Revived twice (two operators at once, or a retry run again): once.
        let entry = dead[0].entry.clone();
        let (a, b) = tokio::join!(
            q.revive(std::slice::from_ref(&entry)),
            q.revive(std::slice::from_ref(&entry))
        );
        assert_eq!(a?.len() + b?.len(), 1, "{}: revived once", f.name);
        assert!(q.revive(&[entry]).await?.is_empty());
        assert!(q.dead_letters(10).await?.is_empty(), "{}", f.name);
        let back = drain(f.consumer("c2")?.as_ref(), 5).await?;
        assert_eq!(back.len(), 1, "{}: back on the live queue, once", f.name);
        assert_eq!(back[0].payload, got[0].payload);
        assert!(ids.contains(&id_of(&back[0].payload)));
    }
    Ok(())
}

#[tokio::test]
async fn the_relay_keeps_rows_while_redis_is_unreachable() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let e = Envelope::new(Notification::Welcome {
            to: "x@example.com".into(),
            account_id: "a".into(),
            full_name: None,
            username: None,
            language: "en".into(),
        });
        let id = e.id.to_string();
        db.write(move |c| outbox::enqueue(c, outbox::MAIL_TOPIC, &e))
            .await?;
        let unreachable = Arc::new(RedisQueue::new(RedisQueueConfig {
            url: "redis://127.0.0.1:1".into(),
            prefix: "nowhere".into(),
            topic: outbox::MAIL_TOPIC.into(),
            group: "mailer".into(),
            consumer: "relay".into(),
            claim_idle: IDLE,
        })?);
        let relay = Relay {
            db: db.clone(),
            queue: unreachable,
            topic: outbox::MAIL_TOPIC.into(),
            batch: 10,
            wake: Arc::new(Notify::new()),
            metrics: Default::default(),
        };
        assert!(relay.run_once().await.is_err(), "{backend}");
        assert_eq!(
            db.run(|c| outbox::count_unpublished(c, outbox::MAIL_TOPIC))
                .await?,
            1,
            "{backend}: the row waits in the outbox"
        );
        // It is not held by the failed attempt: a relay that reaches Redis
        // publishes it at once.
        let fixture = Fixture {
            name: backend,
            db: db.clone(),
            _tdb: tdb,
            redis_prefix: Some(format!("admit-test-{}", uuid::Uuid::new_v4().simple())),
            wake: Arc::new(Notify::new()),
        };
        let consumer = fixture.redis("mailer")?;
        consumer.receive(1, Duration::from_millis(1)).await?;
        let working = Relay {
            db: db.clone(),
            queue: fixture.redis("relay")?,
            topic: outbox::MAIL_TOPIC.into(),
            batch: 10,
            wake: Arc::new(Notify::new()),
            metrics: Default::default(),
        };
        assert_eq!(working.run_once().await?, 1, "{}", fixture.name);
        let got = drain(consumer.as_ref(), 5).await?;
        assert_eq!(got.len(), 1, "{backend}");
        assert_eq!(id_of(&got[0].payload), id);
        assert_eq!(
            db.run(|c| outbox::count_unpublished(c, outbox::MAIL_TOPIC))
                .await?,
            0,
            "{backend}"
        );
    }
    Ok(())
}

/// Replicas of the account service relay the same PostgreSQL outbox at once (each
/// batch locked, published and marked in one transaction): every message reaches
/// the stream once, and every row ends published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_running_at_once_publish_each_row_once() -> anyhow::Result<()> {
    let tdb = TestDatabase::postgres()?;
    let db = tdb.db()?;
    let n = 3_000;
    let mails: Vec<Envelope> = (0..n)
        .map(|i| {
            Envelope::new(Notification::Welcome {
                to: format!("r{i}@example.com"),
                account_id: format!("a{i}"),
                full_name: None,
                username: None,
                language: "en".into(),
            })
        })
        .collect();
    let ids: HashSet<String> = mails.iter().map(|e| e.id.to_string()).collect();
    db.write(move |c| outbox::enqueue_many(c, outbox::MAIL_TOPIC, &mails))
        .await?;
    let fixture = Fixture {
        name: "redis/postgres",
        db: db.clone(),
        _tdb: tdb,
        redis_prefix: Some(format!("admit-test-{}", uuid::Uuid::new_v4().simple())),
        wake: Arc::new(Notify::new()),
    };
    let consumer = fixture.redis("mailer")?;
    // The consumer group exists before anything is published.
    consumer.receive(1, Duration::from_millis(1)).await?;
    let mut tasks = Vec::new();
    for r in 0..3 {
        let relay = Relay {
            db: fixture.db.clone(),
            queue: fixture.redis(&format!("relay-{r}"))?,
            topic: outbox::MAIL_TOPIC.into(),
            batch: 100,
            wake: fixture.wake.clone(),
            metrics: Default::default(),
        };
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            loop {
                match relay.run_once().await? {
                    0 => return Ok::<_, admit_queue::QueueError>(sent),
                    k => sent += k,
                }
            }
        }));
    }
    let mut relayed = 0;
    for t in tasks {
        relayed += t.await??;
    }
    assert_eq!(relayed, n, "{}: rows marked published", fixture.name);
    // Acknowledged as read, so that a slow read is not handed back as idle.
    let mut seen: Vec<String> = Vec::new();
    loop {
        let got = consumer.receive(500, WAIT).await?;
        if got.is_empty() {
            break;
        }
        consumer.ack_many(&got).await?;
        seen.extend(got.iter().map(|d| id_of(&d.payload)));
    }
    let distinct: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), n, "messages on the stream");
    assert_eq!(distinct, ids, "each message once");
    assert_eq!(
        db.run(|c| outbox::count_unpublished(c, outbox::MAIL_TOPIC))
            .await?,
        0
    );
    Ok(())
}

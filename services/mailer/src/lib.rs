//! The notification mailer: renders every email from templates and sends it, at
//! least once and, where the relay accepted it, not again.
//!
//! [`run`] is the standalone service of the production topology (Redis Streams in,
//! SMTP out). The embedded process builds a [`worker::Worker`] on the outbox queue
//! with the local [`transport::Inbox`] and mounts [`inbox::configure`].

pub mod inbox;
pub mod render;
pub mod sms;
pub mod transport;
pub mod worker;

use admit_queue::redis::{RedisQueue, RedisQueueConfig};
use admit_queue::Queue;
use admit_runtime::{Metrics, Readiness, Settings};
use admit_store::Db;
use anyhow::Context as _;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use worker::{Worker, WorkerConfig};

/// A worker over `queue` and `transport`, configured from `settings`.
pub fn worker(
    settings: &Settings,
    db: Db,
    queue: Arc<dyn Queue>,
    transport: Arc<dyn transport::Transport>,
    metrics: &Metrics,
) -> anyhow::Result<Worker> {
    let outcomes = worker::outcome_counter();
    metrics.register(&outcomes);
    Ok(Worker {
        queue,
        db,
        transport,
        sms: sms::from_settings(&settings.mailer.sms)?,
        renderer: Arc::new(
            render::Renderer::new(
                &settings.mailer.platform_name,
                &settings.public_base_url,
                settings
                    .internal
                    .link_key()
                    .context("the mailer derives the set-password links of emails")?,
            )?
            .with_link_ttl_secs(settings.account.password_link_ttl_secs)
            .with_reset_ttl_secs(settings.account.reset_link_ttl_secs)
            .with_confirm_ttl_secs(
                settings.account.confirm_link_ttl_secs,
                settings.account.confirm_code_ttl_secs,
            ),
        ),
        config: WorkerConfig {
            concurrency: settings.mailer.concurrency.max(1),
            max_attempts: settings.mailer.max_attempts.max(1),
            retry_base: Duration::from_millis(settings.mailer.retry_base_ms),
            lease: Duration::from_millis(settings.mailer.claim_idle_ms),
            batch_window: Duration::from_millis(settings.mailer.batch_window_ms),
            batches_in_flight: settings.mailer.batches_in_flight.max(1),
        },
        outcomes,
    })
}

/// This replica's consumer name: configured, or host name and process id.
pub fn consumer_name(settings: &Settings) -> String {
    if let Some(c) = &settings.mailer.consumer {
        return c.clone();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "mailer".into());
    format!("{host}-{}", std::process::id())
}

/// The standalone mailer: reads the Redis Stream with a consumer group, sends over
/// SMTP, serves health and metrics. Runs until SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    use admit_runtime::selfcheck::{self, Service};
    let db = admit_runtime::database::connect(&settings)?;
    selfcheck::at_start(Service::Mailer, &settings, &db).await?;
    let queue = Arc::new(RedisQueue::new(RedisQueueConfig::mail(
        settings.redis.url.expose_secret(),
        &settings.redis.prefix,
        &consumer_name(&settings),
        Duration::from_millis(settings.mailer.claim_idle_ms),
    ))?);
    if settings.mailer.smtp.timeout_secs.saturating_mul(1000) >= settings.mailer.claim_idle_ms {
        tracing::warn!(
            timeout_secs = settings.mailer.smtp.timeout_secs,
            claim_idle_ms = settings.mailer.claim_idle_ms,
            "mailer.smtp.timeout_secs is not shorter than mailer.claim_idle_ms: a slow send may \
             be taken over by another sender and the email sent twice"
        );
    }
    let smtp = Arc::new(transport::Smtp::new(
        &settings.mailer.smtp,
        &settings.mailer.from,
    )?);
    let metrics = Metrics::new();
    let worker = worker(&settings, db.clone(), queue.clone(), smtp, &metrics)?;
    let stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(stop.clone()));
    let readiness = {
        let queue = queue.clone();
        admit_runtime::database::check(Readiness::new(), db.clone()).check("redis", move || {
            let queue = queue.clone();
            async move { queue.ping().await.map_err(|e| e.to_string()) }
        })
    };
    let link_key = selfcheck::LinkKeyCheck::new(Service::Mailer, &settings)?;
    let readiness = link_key.readiness(selfcheck::migrations_check(readiness, db));
    tokio::spawn(link_key.run(stop.clone()));
    let started = admit_runtime::http::start(
        "admit-mailer",
        admit_runtime::http::bind(&settings.bind, settings.mailer.port)?,
        readiness,
        metrics,
        stop.clone(),
        admit_runtime::http::grace(Duration::from_secs(5)),
        admit_runtime::client::data(&settings),
    )?;
    started.server.await?;
    stop.cancel();
    let _ = worker_task.await;
    Ok(())
}

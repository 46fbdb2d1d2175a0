//! The notification mailer: renders every email from templates and sends it, at
//! least once and, where the relay accepted it, not again.
//!
//! [`run`] is the standalone service of the production topology (Redis Streams in,
//! SMTP out). The embedded process builds a [`worker::Worker`] on the outbox queue
//! with the local [`transport::Inbox`] and mounts [`inbox::configure`].

pub mod admin_api;
pub mod inbox;
pub mod ops;
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
        hold: Arc::new(|| false),
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
    let link_key = selfcheck::LinkKeyCheck::new(Service::Mailer, &settings)?;
    let mut worker = worker(&settings, db.clone(), queue.clone(), smtp, &metrics)?;
    link_key.check_once().await;
    worker.hold = Arc::new(link_key.differs());
    let stop = CancellationToken::new();
    let admin_db = db.clone();
    let readiness = {
        let queue = queue.clone();
        let smtp = (
            settings.mailer.smtp.host.clone(),
            settings.mailer.smtp.port,
            // With implicit TLS the greeting comes inside the TLS session: a connection
            // that opens is as far as the probe looks.
            settings.mailer.smtp.tls != admit_runtime::settings::SmtpTls::Tls,
        );
        admit_runtime::database::check(Readiness::new(), db.clone())
            .check("redis", move || {
                let queue = queue.clone();
                async move {
                    queue
                        .ping()
                        .await
                        .map_err(|e| format!("cannot reach Redis: {e}"))
                }
            })
            .check("smtp", move || {
                let (host, port, greeting) = smtp.clone();
                async move { smtp_greets(&host, port, greeting).await }
            })
    };
    let readiness = link_key.readiness(selfcheck::migrations_check(readiness, db));
    tokio::spawn(link_key.run(stop.clone()));
    let started = admit_runtime::http::start(
        "admit-mailer",
        admit_runtime::http::bind(&settings.bind, settings.mailer.port)?,
        readiness,
        metrics,
        stop.clone(),
        admit_runtime::http::grace(Duration::from_secs(5)),
        {
            let admin = admin_api::configure(actix_web::web::Data::new(admin_api::MailAdmin {
                ops: ops::MailOps::new(queue.clone(), admin_db),
                admin_token: settings.internal.admin_token.expose_secret().to_owned(),
            }));
            let proxies = admit_runtime::client::data(&settings);
            move |cfg: &mut actix_web::web::ServiceConfig| {
                proxies(cfg);
                admin(cfg);
            }
        },
    )?;
    // After `start`, which registers the SIGTERM listener: a SIGTERM that comes once
    // the worker reads the queue is a graceful stop, never the default action.
    let worker_task = tokio::spawn(worker.run(stop.clone()));
    started.server.await?;
    stop.cancel();
    let _ = worker_task.await;
    Ok(())
}

/// The `smtp` readiness check: the relay accepts a connection and (unless `greeting`
/// is false) greets with 220. Mail waiting for a relay that is down is retried, not
/// lost; this tells the operator why it waits.
async fn smtp_greets(host: &str, port: u16, greeting: bool) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let probe = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot reach the SMTP relay at {host}:{port}: {e}"))?;
        if !greeting {
            return Ok(());
        }
        let mut reader = tokio::io::BufReader::new(stream);
        let mut greeting = String::new();
        reader
            .read_line(&mut greeting)
            .await
            .map_err(|e| format!("the SMTP relay at {host}:{port} sent no greeting: {e}"))?;
        let _ = reader.get_mut().write_all(b"QUIT\r\n").await;
        if greeting.starts_with("220") {
            Ok(())
        } else {
            Err(format!(
                "the SMTP relay at {host}:{port} refuses mail: {}",
                greeting.trim()
            ))
        }
    };
    tokio::time::timeout(Duration::from_millis(1500), probe)
        .await
        .map_err(|_| format!("the SMTP relay at {host}:{port} did not greet within 1.5 s"))?
}

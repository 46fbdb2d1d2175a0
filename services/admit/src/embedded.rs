//! The embedded default: the account service, the authorization server and the
//! mailer in one process on one port, on SQLite in a data directory, with the outbox
//! as the queue and outgoing mail kept in a local inbox at `/dev/inbox`.

use admit_mailer::transport::Inbox;
use admit_queue::local::OutboxQueue;
use admit_runtime::settings::LogFormat;
use admit_runtime::{Metrics, Settings};
use admit_store::{outbox, Db};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on (a container sets ADMIT_HOST=0.0.0.0).
    #[arg(long, env = "ADMIT_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Where the SQLite database and the inbox live.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            port: 8080,
            host: "127.0.0.1".into(),
            data_dir: PathBuf::from("./data"),
        }
    }
}

/// The data directory's key-encryption key for the signing keys
/// (`signing-keys.kek`, created on first use, readable by the owner only). It lives
/// beside the database, not in it: a copy of the database alone cannot sign tokens.
pub fn key_encryption_key(dir: &Path) -> anyhow::Result<String> {
    data_dir_key(dir, "signing-keys.kek")
}

/// The data directory's key of email links (`mail-links.key`, `internal.link_key`),
/// created on first use like the key-encryption key, so links in emails sent before
/// a restart keep working after it.
pub fn link_key(dir: &Path) -> anyhow::Result<String> {
    data_dir_key(dir, "mail-links.key")
}

/// 32 random bytes in base64 kept in `dir/file`, readable by the owner only.
fn data_dir_key(dir: &Path, file: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(k) => Ok(k.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = admit_oauth::keys::Kek::generate_base64()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            writeln!(f, "{k}")?;
            f.sync_all()?;
            Ok(k)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn sqlite_url(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    Ok(format!("sqlite://{}", dir.join("admit.db").display()))
}

pub async fn serve(
    args: ServeArgs,
    mut settings: Settings,
    has_config_file: bool,
) -> anyhow::Result<()> {
    let configured = |key: &str| has_config_file || std::env::var_os(key).is_some();
    if !configured("ADMIT__LOG__FORMAT") {
        settings.log.format = LogFormat::Pretty;
    }
    admit_runtime::logging::init(&settings.log);

    let listener = admit_runtime::http::bind(&args.host, args.port)?;
    let addr = listener.local_addr()?;
    if !configured("ADMIT__PUBLIC_BASE_URL") {
        settings.public_base_url = format!("http://{addr}");
    }
    if !configured("ADMIT__OAUTH__KEY_ENCRYPTION_KEY") {
        settings.oauth.key_encryption_key = key_encryption_key(&args.data_dir)?.into();
    }
    if !configured("ADMIT__INTERNAL__LINK_KEY") {
        settings.internal.link_key = link_key(&args.data_dir)?.into();
    }
    let db = Db::connect(&sqlite_url(&args.data_dir)?, 8)?;
    db.migrate()?;

    let metrics = Metrics::new();
    let wake = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let account = actix_web::web::Data::new(admit_account::AccountState::new(
        &settings,
        db.clone(),
        wake.clone(),
        &metrics,
    )?);
    let queue = Arc::new(OutboxQueue::new(
        db.clone(),
        outbox::MAIL_TOPIC,
        Duration::from_millis(settings.mailer.claim_idle_ms),
        wake,
    ));
    let inbox = Arc::new(Inbox::new(args.data_dir.join("inbox"))?);
    let mail_admin_routes = admit_mailer::admin_api::configure(actix_web::web::Data::new(
        admit_mailer::admin_api::MailAdmin {
            ops: admit_mailer::ops::MailOps::new(queue.clone(), db.clone()),
            admin_token: secrecy::ExposeSecret::expose_secret(&settings.internal.admin_token)
                .to_owned(),
        },
    ));
    let mut worker = admit_mailer::worker(&settings, db.clone(), queue, inbox.clone(), &metrics)?;
    // Text messages go to the inbox too, unless a gateway is configured.
    if settings.mailer.sms.url.is_none() {
        worker.sms = inbox.clone();
    }
    let mail_runtime = background_runtime("mailer")?;
    let worker_task = mail_runtime.spawn(worker.run(stop.clone()));
    tokio::spawn(admit_account::Purger::new(db.clone(), &metrics)?.run(
        Duration::from_secs(settings.account.purge_every_secs.max(1)),
        stop.clone(),
    ));

    let partner_limits = account.partner_limits.clone();
    let account_routes = admit_account::configure(account);
    let oauth_routes = admit_oauth::configure(
        admit_oauth::state_with_limits(&settings, db.clone(), stop.clone(), partner_limits).await?,
    );
    let inbox_routes = admit_mailer::inbox::configure(inbox);
    let proxies = admit_runtime::client::data(&settings);
    let started = admit_runtime::http::start(
        "admit",
        listener,
        admit_runtime::database::check(admit_runtime::Readiness::new(), db),
        metrics,
        stop.clone(),
        admit_runtime::http::grace(Duration::ZERO),
        move |cfg: &mut actix_web::web::ServiceConfig| {
            proxies(cfg);
            account_routes(cfg);
            oauth_routes(cfg);
            inbox_routes(cfg);
            mail_admin_routes(cfg);
        },
    )?;
    println!(
        "\n  Data:   {}\n  Inbox:  http://{addr}/dev/inbox\n  Try:    curl -si http://{addr}/account -H 'Content-Type: application/json' \\\n            -d '{{\"contacts\":[[\"EMAIL\",\"doc@example.com\",true]],\"full_name\":\"Doc Test\",\"password\":\"doctest1\",\"username\":\"doctest\"}}'\n",
        args.data_dir.display()
    );
    started.server.await?;
    stop.cancel();
    if let Some(task) = worker_task {
        let _ = task.await;
    }
    Ok(())
}

/// The nice value of background work in the embedded process: the mailer yields to
/// the request workers and to the hash pool (nice 10), so a burst of sign-ups is not
/// slowed by the emails it causes. The mail is durable in the outbox meanwhile, and a
/// nice thread still gets its share of the CPU, so it is delayed, never starved.
const BACKGROUND_NICE: i32 = 19;

/// A small runtime of its own for background work, its threads (the worker and its
/// blocking pool, where the database and inbox calls run) at [`BACKGROUND_NICE`].
fn background_runtime(name: &str) -> std::io::Result<BackgroundRuntime> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .thread_name(name)
        .on_thread_start(|| admit_runtime::priority::lower_current_thread(BACKGROUND_NICE))
        .enable_all()
        .build()?;
    Ok(BackgroundRuntime(Some(runtime)))
}

/// Shuts its runtime down without waiting when dropped: a runtime may not be dropped
/// the ordinary way on an async thread, and `serve` can return early on an error.
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl BackgroundRuntime {
    fn spawn<F>(&self, task: F) -> Option<tokio::task::JoinHandle<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().map(|rt| rt.spawn(task))
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

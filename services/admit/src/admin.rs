//! The operator commands: partners, clients, API keys, plan codes, signing keys. They
//! work on the embedded database (`--data-dir DIR`, as `serve` takes it) or on the
//! configured one (PostgreSQL in production), and print one JSON object with
//! `--json`. A running service sees the change at once. Every change is in the
//! audit log as the operator's (`cli`, `$USER`), source `local`; `admit audit` reads
//! the log.

use admit_oauth::admin::{self, NewClient};
use admit_runtime::audit::cli_origin;
use admit_runtime::Settings;
use admit_store::Db;
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct Target {
    /// The embedded default's data directory; without it, the configured database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

impl Target {
    fn db(&self, settings: &Settings) -> anyhow::Result<Db> {
        let url = match &self.data_dir {
            Some(dir) => crate::embedded::sqlite_url(dir)?,
            None => settings.database.url.expose_secret().to_owned(),
        };
        let db = Db::connect(&url, 2)?;
        db.migrate()?;
        Ok(db)
    }

    fn print(&self, value: serde_json::Value, human: String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{human}");
        }
    }
}

#[derive(Subcommand)]
pub enum PartnerCmd {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        landing_url: Option<String>,
        /// The partner's colour for links and buttons in its emails: `#rrggbb`.
        #[arg(long)]
        brand_color: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
pub enum ClientCmd {
    Create {
        #[arg(long)]
        partner: String,
        #[arg(long)]
        name: String,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// authorization_code, refresh_token, client_credentials, implicit (repeat).
        #[arg(long = "grant")]
        grants: Vec<String>,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A public client (mobile app, SPA): no secret, PKCE required.
        #[arg(long)]
        public: bool,
        /// Access token lifetime in seconds (default: oauth.access_ttl_secs).
        #[arg(long)]
        access_ttl: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCmd {
    Create {
        #[arg(long)]
        partner: String,
        #[command(flatten)]
        target: Target,
    },
    Revoke {
        key_id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
pub enum PlanCodeCmd {
    Add {
        #[arg(long)]
        partner: String,
        #[arg(required = true)]
        codes: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// A new signing key signs from now on; the old ones stay in the JWKS until the
    /// longest-lived token they signed has expired.
    Rotate {
        #[command(flatten)]
        target: Target,
    },
}

pub async fn partner(cmd: PartnerCmd, settings: &Settings) -> anyhow::Result<()> {
    let PartnerCmd::Create {
        name,
        landing_url,
        brand_color,
        target,
    } = cmd;
    let db = target.db(settings)?;
    let p = admin::create_partner(
        &db,
        &cli_origin(),
        &name,
        landing_url.as_deref(),
        brand_color.as_deref(),
    )
    .await?;
    target.print(
        serde_json::json!(p),
        format!("partner_id: {}", p.partner_id),
    );
    Ok(())
}

pub async fn client(cmd: ClientCmd, settings: &Settings) -> anyhow::Result<()> {
    let ClientCmd::Create {
        partner,
        name,
        redirect_uris,
        grants,
        scopes,
        public,
        access_ttl,
        target,
    } = cmd;
    let db = target.db(settings)?;
    let new = NewClient {
        partner_id: partner,
        name,
        redirect_uris,
        grants,
        scopes,
        public,
        access_ttl_secs: access_ttl,
    };
    let c = admin::create_client(&db, &cli_origin(), new, settings.oauth.access_ttl_secs).await?;
    let human = match &c.client_secret {
        Some(s) => format!("client_id:     {}\nclient_secret: {s}\n(the secret is shown once; only its digest is kept)", c.client_id),
        None => format!("client_id: {} (public client: no secret)", c.client_id),
    };
    target.print(serde_json::json!(c), human);
    Ok(())
}

pub async fn api_key(cmd: ApiKeyCmd, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCmd::Create { partner, target } => {
            let db = target.db(settings)?;
            let k = admin::create_api_key(&db, &cli_origin(), &partner).await?;
            let human = format!(
                "key_id:  {}\napi_key: {}\n(the key is shown once; only its digest is kept)",
                k.key_id, k.api_key
            );
            target.print(serde_json::json!(k), human);
        }
        ApiKeyCmd::Revoke { key_id, target } => {
            let db = target.db(settings)?;
            let revoked = admin::revoke_api_key(&db, &cli_origin(), &key_id).await?;
            anyhow::ensure!(revoked, "no active API key {key_id}");
            target.print(
                serde_json::json!({"key_id": key_id, "revoked": true}),
                format!("revoked {key_id}"),
            );
        }
    }
    Ok(())
}

pub async fn plan_code(cmd: PlanCodeCmd, settings: &Settings) -> anyhow::Result<()> {
    let PlanCodeCmd::Add {
        partner,
        codes,
        target,
    } = cmd;
    let db = target.db(settings)?;
    let all = admin::add_plan_codes(&db, &cli_origin(), &partner, &codes).await?;
    target.print(
        serde_json::json!({"partner_id": partner, "plan_codes": all}),
        format!("plan codes of {partner}: {}", all.join(", ")),
    );
    Ok(())
}

pub async fn keys(cmd: KeysCmd, settings: &Settings) -> anyhow::Result<()> {
    let KeysCmd::Rotate { target } = cmd;
    let db = target.db(settings)?;
    // Old keys stay published for the longest access token lifetime plus a margin.
    let keep = chrono::Duration::seconds(i64::from(settings.oauth.access_ttl_secs) + 3600);
    let kek = match &target.data_dir {
        Some(dir) => crate::embedded::key_encryption_key(dir)?,
        None => settings.oauth.key_encryption_key.expose_secret().to_owned(),
    };
    let kek = admit_oauth::keys::Kek::from_base64(&kek)?;
    let alg = admit_oauth::keys::algorithm(&settings.oauth.signing_alg)?;
    let origin = cli_origin();
    let kid = db
        .write(move |c| {
            let kid = admit_oauth::keys::rotate(c, &kek, alg, keep)
                .map_err(|e| admit_store::StoreError::Internal(e.to_string()))?;
            let event = origin
                .event("signing_key.rotate", "signing_key", &kid)
                .detail(serde_json::json!({"alg": format!("{alg:?}")}));
            admit_store::audit::insert(c, &event)?;
            Ok(kid)
        })
        .await?;
    target.print(
        serde_json::json!({"kid": kid}),
        format!("signing with {kid}"),
    );
    Ok(())
}

/// `admit purge`: one pass of the test-account purge now (the services run one every
/// `account.purge_every_secs`; this is for an operator or a CronJob).
pub async fn purge(target: Target, settings: &Settings) -> anyhow::Result<()> {
    let db = target.db(settings)?;
    let metrics = admit_runtime::Metrics::new();
    let mut purger = admit_account::Purger::new(db.clone(), &metrics)?;
    if db.backend() == admit_store::Backend::Postgres {
        // The production topology: the oauth replicas hear of the grants it ends.
        purger = purger.announcing(admit_runtime::revocations::Announcer::redis(
            settings.redis.url.expose_secret(),
            &settings.redis.prefix,
        )?);
    }
    let purged = purger.pass(admit_store::now()).await?;
    let (value, human) = match purged {
        Some(p) => {
            let rows: serde_json::Map<String, serde_json::Value> = p
                .rows
                .iter()
                .map(|(t, n)| ((*t).to_owned(), (*n).into()))
                .collect();
            (
                serde_json::json!({"ran": true, "accounts": p.accounts, "rows": rows}),
                format!(
                    "purged {} expired test account(s) and {} attached row(s)",
                    p.accounts,
                    p.total_rows() - p.accounts
                ),
            )
        }
        None => (
            serde_json::json!({"ran": false, "accounts": 0, "rows": {}}),
            "another replica is purging right now; nothing done".to_owned(),
        ),
    };
    target.print(value, human);
    Ok(())
}

#[derive(Subcommand)]
pub enum MailCmd {
    /// Dead letters: messages the mailer gave up on (`list`, `retry ID|--all`).
    #[command(subcommand)]
    Dead(DeadCmd),
    /// A message's status by id, or every message to `--recipient ADDRESS`.
    Status {
        /// The message id.
        #[arg(required_unless_present = "recipient", conflicts_with = "recipient")]
        message_id: Option<String>,
        /// An address: every message to it, newest first.
        #[arg(long)]
        recipient: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Resend the welcome (set-password) email of a partner-registered account that
    /// has no password yet: a new link, the old one retired; at most once per
    /// `account.resend_cooldown_secs` per recipient.
    Resend {
        account_id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
pub enum DeadCmd {
    List {
        /// At most this many, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Put dead letters back on the queue (their messages back to `queued`): one by
    /// message id (or dead-letter entry id), or `--all`. Run twice, it sends once.
    Retry {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: Target,
    },
}

impl Target {
    /// The mail queue: the embedded outbox with `--data-dir`, else the configured
    /// Redis stream (where the production mailer keeps its dead letters).
    fn mail_ops(&self, settings: &Settings) -> anyhow::Result<admit_mailer::ops::MailOps> {
        use admit_queue::Queue;
        use std::sync::Arc;
        let db = self.db(settings)?;
        let lease = std::time::Duration::from_millis(settings.mailer.claim_idle_ms);
        let queue: Arc<dyn Queue> = match &self.data_dir {
            Some(_) => Arc::new(admit_queue::local::OutboxQueue::new(
                db.clone(),
                admit_store::outbox::MAIL_TOPIC,
                lease,
                Arc::new(tokio::sync::Notify::new()),
            )),
            None => Arc::new(admit_queue::redis::RedisQueue::new(
                admit_queue::redis::RedisQueueConfig::mail(
                    settings.redis.url.expose_secret(),
                    &settings.redis.prefix,
                    "admit-cli",
                    lease,
                ),
            )?),
        };
        Ok(admit_mailer::ops::MailOps::new(queue, db))
    }
}

pub async fn mail(cmd: MailCmd, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        MailCmd::Dead(DeadCmd::List { limit, target }) => {
            let dead = target.mail_ops(settings)?.dead(limit.max(1)).await?;
            let human = if dead.is_empty() {
                "no dead letters".to_owned()
            } else {
                dead.iter()
                    .map(|d| {
                        format!(
                            "{}  {}  {} {}  {}",
                            d.dead_at,
                            d.message_id.as_deref().unwrap_or(&d.entry),
                            d.kind.as_deref().unwrap_or("-"),
                            d.recipient.as_deref().unwrap_or("-"),
                            d.reason
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            target.print(serde_json::json!({"dead_letters": dead}), human);
        }
        MailCmd::Dead(DeadCmd::Retry { id, all, target }) => {
            let which = match (id, all) {
                (Some(id), false) => admit_mailer::ops::Which::One(id),
                _ => admit_mailer::ops::Which::All,
            };
            let ops = target.mail_ops(settings)?;
            let retried = ops.retry(&cli_origin(), which).await?;
            let human = format!("{} dead letter(s) put back on the queue", retried.len());
            target.print(serde_json::json!({"retried": retried}), human);
        }
        MailCmd::Status {
            message_id,
            recipient,
            target,
        } => {
            let ops = target.mail_ops(settings)?;
            match (message_id, recipient) {
                (_, Some(recipient)) => {
                    let messages = ops.by_recipient(&recipient, 100).await?;
                    let human = messages
                        .iter()
                        .map(|m| {
                            format!(
                                "{}  {} {}  attempts {}{}",
                                m.message_id,
                                m.kind.as_deref().unwrap_or("-"),
                                m.status,
                                m.attempts,
                                m.last_error
                                    .as_deref()
                                    .map(|e| format!("  ({e})"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    target.print(
                        serde_json::json!({"recipient": recipient, "messages": messages}),
                        if human.is_empty() {
                            format!("no messages to {recipient}")
                        } else {
                            human
                        },
                    );
                }
                (Some(id), None) => {
                    let s = ops.status(&id).await?;
                    let human = format!(
                        "{}: {} (attempts {}){}",
                        s.message_id,
                        s.status,
                        s.attempts,
                        s.last_error
                            .as_deref()
                            .map(|e| format!(", last error: {e}"))
                            .unwrap_or_default()
                    );
                    target.print(serde_json::json!(s), human);
                }
                (None, None) => anyhow::bail!("give a message id or --recipient ADDRESS"),
            }
        }
        MailCmd::Resend { account_id, target } => {
            let db = target.db(settings)?;
            let link_key = match (&target.data_dir, settings.internal.link_key()) {
                (_, Ok(k)) => k,
                (Some(dir), Err(_)) => {
                    let mut internal = settings.internal.clone();
                    internal.link_key = crate::embedded::link_key(dir)?.into();
                    internal.link_key()?
                }
                (None, Err(e)) => return Err(e.into()),
            };
            let r = admit_account::resend::resend(
                &db,
                &cli_origin(),
                &link_key,
                settings.account.password_link_ttl_secs.max(60),
                settings.account.resend_cooldown_secs,
                &account_id,
            )
            .await?;
            let human = format!("welcome email {} queued for {}", r.message_id, r.sent_to);
            target.print(serde_json::json!(r), human);
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct AuditArgs {
    /// Only events since then: a span back from now (`30m`, `1h`, `2d`) or an RFC 3339
    /// time.
    #[arg(long)]
    since: Option<String>,
    /// Only this actor: `kind:id` (`account:a_…`, `cli:alice`), an id, or a kind.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action, or a dotted prefix of actions (`login`, `client.create`).
    #[arg(long)]
    action: Option<String>,
    /// Only this target: `kind:id`, an id, or a kind.
    #[arg(long)]
    target: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[command(flatten)]
    db: Target,
}

/// `admit audit`: the audit log, newest first; one JSON object per line with
/// `--json`, a table otherwise.
pub async fn audit(args: AuditArgs, settings: &Settings) -> anyhow::Result<()> {
    let since = match &args.since {
        Some(s) => Some(
            admit_runtime::audit::parse_since(s, admit_store::now())
                .map_err(|e| anyhow::anyhow!(e))?,
        ),
        None => None,
    };
    let filter = admit_store::audit::AuditFilter {
        since,
        actor: args.actor.clone(),
        action: args.action.clone(),
        target: args.target.clone(),
        limit: args.limit,
    };
    let db = args.db.db(settings)?;
    let events = db
        .run(move |c| admit_store::audit::query(c, &filter))
        .await?;
    if args.db.json {
        for e in &events {
            println!("{}", e.to_json());
        }
        return Ok(());
    }
    let rows: Vec<[String; 8]> = events
        .iter()
        .map(|e| {
            [
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                format!("{}:{}", e.actor_kind, e.actor_id),
                e.action.clone(),
                format!("{}:{}", e.target_kind, e.target_id),
                e.outcome.clone(),
                e.request_id.clone(),
                e.source.clone(),
                e.detail.clone(),
            ]
        })
        .collect();
    let head = [
        "TIME (UTC)",
        "ACTOR",
        "ACTION",
        "TARGET",
        "OUTCOME",
        "REQUEST",
        "SOURCE",
        "DETAIL",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()).take(7) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 7 {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.trim_end().to_owned()
    };
    println!("{}", line(head.to_vec()));
    for r in &rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        println!("(no events)");
    }
    Ok(())
}

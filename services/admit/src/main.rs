//! `admit`: the embedded default (all three services in one process, on SQLite, with
//! an in-process queue and a local inbox) and the operator commands.

use admit_runtime::Settings;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod admin;
mod embedded;

#[derive(Parser)]
#[command(
    name = "admit",
    version,
    about = "Partner account registration and access platform"
)]
struct Cli {
    /// A YAML configuration file (also ADMIT_CONFIG); ADMIT__… variables override it.
    #[arg(long, global = true, env = "ADMIT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform in one process on SQLite (the default command).
    Serve(embedded::ServeArgs),
    /// Apply the database migrations: to the SQLite database of --data-dir, or else
    /// to the configured database (ADMIT__DATABASE__URL).
    Migrate {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Partners: `admit partner create --name NAME [--landing-url URL] [--brand-color #RRGGBB]`.
    #[command(subcommand)]
    Partner(admin::PartnerCmd),
    /// OAuth clients of a partner.
    #[command(subcommand)]
    Client(admin::ClientCmd),
    /// Partner API keys (for the batch feed): create prints the key once; revoke.
    #[command(subcommand, name = "api-key")]
    ApiKey(admin::ApiKeyCmd),
    /// Plan codes a partner may use in user.create.
    #[command(subcommand, name = "plan-code")]
    PlanCode(admin::PlanCodeCmd),
    /// Token signing keys: `admit keys rotate`.
    #[command(subcommand)]
    Keys(admin::KeysCmd),
    /// Mail: `admit mail dead list`, `admit mail dead retry ID|--all`, `admit mail
    /// status MESSAGE_ID|--recipient ADDRESS`, `admit mail resend ACCOUNT_ID`.
    #[command(subcommand)]
    Mail(admin::MailCmd),
    /// One pass of the purge of expired test accounts (with everything attached).
    Purge(admin::Target),
    /// The audit log of admin actions and credential events, newest first:
    /// `admit audit [--since 1h|30m|2d|RFC3339] [--actor KIND:ID] [--action PREFIX]
    /// [--target KIND:ID] [--limit N] [--json]`.
    Audit(admin::AuditArgs),
    /// Print the OpenAPI description of every public API (proto-docs/openapi.json).
    Openapi,
    /// Measure this machine's raw Argon2id rate (the ceiling of sign-ups per second).
    BenchHash {
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Measure this machine's raw ES256 signing rate of access tokens, signed as the
    /// token endpoint signs them (the ceiling of client_credentials grants per second).
    BenchSign {
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

fn main() -> anyhow::Result<()> {
    admit_runtime::memory::tune();
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli
        .command
        .unwrap_or(Command::Serve(embedded::ServeArgs::default()))
    {
        Command::Serve(args) => {
            runtime.block_on(embedded::serve(args, settings, cli.config.is_some()))
        }
        Command::Migrate { data_dir } => {
            let url = match data_dir {
                Some(dir) => embedded::sqlite_url(&dir)?,
                None => secrecy::ExposeSecret::expose_secret(&settings.database.url).to_owned(),
            };
            let db = admit_store::Db::connect(&url, 1)?;
            let applied = db.migrate()?;
            println!(
                "{}",
                serde_json::json!({"backend": format!("{:?}", db.backend()).to_lowercase(), "applied": applied})
            );
            Ok(())
        }
        Command::Partner(c) => runtime.block_on(admin::partner(c, &settings)),
        Command::Client(c) => runtime.block_on(admin::client(c, &settings)),
        Command::ApiKey(c) => runtime.block_on(admin::api_key(c, &settings)),
        Command::PlanCode(c) => runtime.block_on(admin::plan_code(c, &settings)),
        Command::Keys(c) => runtime.block_on(admin::keys(c, &settings)),
        Command::Purge(t) => runtime.block_on(admin::purge(t, &settings)),
        Command::Audit(a) => runtime.block_on(admin::audit(a, &settings)),
        Command::Mail(c) => runtime.block_on(admin::mail(c, &settings)),
        Command::Openapi => {
            use utoipa::OpenApi as _;
            let mut doc = admit_account::api::AccountApi::openapi();
            // The admin API (not routed by the gateway): mail on the mailer's port,
            // resend on the account service's.
            doc.merge(admit_mailer::admin_api::MailAdminApi::openapi());
            doc.merge(admit_account::resend::AccountAdminApi::openapi());
            doc.merge(admit_account::audit_api::AuditAdminApi::openapi());
            println!("{}", doc.to_pretty_json()?);
            Ok(())
        }
        Command::BenchHash { threads, seconds } => {
            bench_hash(threads, seconds);
            Ok(())
        }
        Command::BenchSign { threads, seconds } => bench_sign(threads, seconds),
    }
}

fn bench_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        threads
    }
}

/// Signs access tokens on `threads` threads (0: one per core) for `seconds` with a
/// fresh ES256 key, the header and claims of a client_credentials token, and prints
/// the rate.
fn bench_sign(threads: usize, seconds: f64) -> anyhow::Result<()> {
    let threads = bench_threads(threads);
    let kek = admit_oauth::keys::Kek::from_base64(&admit_oauth::keys::Kek::generate_base64()?)?;
    let row = admit_oauth::keys::generate(jsonwebtoken::Algorithm::ES256, &kek)?;
    let keys = std::sync::Arc::new(
        admit_oauth::keys::build(&[row], &kek)?.ok_or_else(|| anyhow::anyhow!("no signing key"))?,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let start = std::time::Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let keys = keys.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    let now = chrono::Utc::now().timestamp();
                    let mut header = jsonwebtoken::Header::new(keys.algorithm);
                    header.typ = Some("at+jwt".into());
                    header.kid = Some(keys.kid.clone());
                    let claims = admit_oauth::token::AccessClaims {
                        iss: "http://127.0.0.1:8080",
                        sub: "c_0123456789abcdef0123456789abcdef",
                        aud: "http://127.0.0.1:8080",
                        exp: now + 3600,
                        iat: now,
                        jti: uuid::Uuid::new_v4().to_string(),
                        client_id: "c_0123456789abcdef0123456789abcdef",
                        scope: "accounts:create",
                        partner_id: "p_0123456789abcdef0123456789abcdef",
                        gid: None,
                    };
                    if jsonwebtoken::encode(&header, &claims, &keys.encoding).is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"threads": threads, "tokens": total, "seconds": elapsed, "tokens_per_second": total as f64 / elapsed})
    );
    Ok(())
}

/// Hashes on `threads` threads (0: one per core) for `seconds`, and prints the rate.
fn bench_hash(threads: usize, seconds: f64) {
    let threads = bench_threads(threads);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let start = std::time::Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    if admit_account::hasher::hash_blocking("bench-password-1").is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"threads": threads, "hashes": total, "seconds": elapsed, "hashes_per_second": total as f64 / elapsed})
    );
}

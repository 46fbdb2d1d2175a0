//! The production topology for end-to-end suites: PostgreSQL, Redis, a real SMTP
//! capture server, and the three service binaries started on demand.

use crate::{http, post_account, redis_url, signup, unique, Proc, SmtpCapture, TestDatabase};
use admit_store::{mail, Db};
use std::process::Command;

pub struct Topology {
    pub tdb: TestDatabase,
    pub env: Vec<(String, String)>,
    pub logs: tempfile::TempDir,
    pub smtp: SmtpCapture,
    pub prefix: String,
    /// The Redis this topology's services use.
    pub redis: String,
}

impl Topology {
    pub fn new(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::build(TestDatabase::postgres()?, &redis_url(), extra, true)
    }

    /// A topology whose database nobody migrated.
    pub fn unmigrated(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::build(TestDatabase::postgres()?, &redis_url(), extra, false)
    }

    /// The topology on `tdb` and the Redis at `redis` (private servers a test stops
    /// and starts, for the outage suites).
    pub fn with(tdb: TestDatabase, redis: &str, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::build(tdb, redis, extra, true)
    }

    fn build(
        tdb: TestDatabase,
        redis: &str,
        extra: &[(&str, &str)],
        migrate: bool,
    ) -> anyhow::Result<Self> {
        let smtp = SmtpCapture::start()?;
        let prefix = unique("admit-e2e-");
        let mut env: Vec<(String, String)> = [
            ("ADMIT__DATABASE__URL", tdb.url.as_str()),
            ("ADMIT__REDIS__URL", redis),
            ("ADMIT__REDIS__PREFIX", prefix.as_str()),
            ("ADMIT__ACCOUNT__PORT", "0"),
            ("ADMIT__OAUTH__PORT", "0"),
            ("ADMIT__MAILER__PORT", "0"),
            ("ADMIT__MAILER__SMTP__HOST", "127.0.0.1"),
            ("ADMIT__MAILER__SMTP__PORT", smtp.port.to_string().as_str()),
            ("ADMIT__MAILER__SMTP__TLS", "none"),
            ("ADMIT__MAILER__CLAIM_IDLE_MS", "2000"),
            ("ADMIT__PUBLIC_BASE_URL", "https://accounts.example.test"),
            (
                "ADMIT__OAUTH__KEY_ENCRYPTION_KEY",
                crate::test_kek().as_str(),
            ),
            ("ADMIT__INTERNAL__LINK_KEY", crate::test_kek().as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if migrate {
            let status = Command::new(crate::bin("admit"))
                .arg("migrate")
                .envs(env.clone())
                .status()?;
            anyhow::ensure!(status.success(), "admit migrate failed");
        }
        Ok(Self {
            tdb,
            env,
            logs: tempfile::tempdir()?,
            smtp,
            prefix,
            redis: redis.to_owned(),
        })
    }

    /// Runs an `admit` operator command against this topology's database.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        crate::admin_cli(args, &self.env)
    }

    pub fn start(&self, name: &str) -> anyhow::Result<Proc> {
        Proc::start(name, &[], &self.env, self.logs.path())
    }

    /// This topology's environment with `extra` set over it.
    pub fn env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// Starts `name` with `extra` set over this topology's environment.
    pub fn start_with(&self, name: &str, extra: &[(&str, &str)]) -> anyhow::Result<Proc> {
        Proc::start(name, &[], &self.env_with(extra), self.logs.path())
    }

    /// Runs `name` with `extra` set over this topology's environment, expecting it
    /// to exit (a refusal to start) within 60 seconds: its exit status and stderr.
    pub fn run_to_exit(
        &self,
        name: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(std::process::ExitStatus, String)> {
        let mut child = Command::new(crate::bin(name))
            .envs(self.env_with(extra))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("{name} did not exit within 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output()?;
        Ok((
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    pub async fn sent_count(&self) -> anyhow::Result<i64> {
        let db = Db::connect(&self.tdb.url, 1)?;
        Ok(db
            .run(|c| mail::count_by_status(c, mail::MailStatus::Sent))
            .await?)
    }

    pub async fn stream_len(&self) -> anyhow::Result<usize> {
        let client = redis::Client::open(self.redis.as_str())?;
        let mut c = client.get_multiplexed_async_connection().await?;
        Ok(redis::cmd("XLEN")
            .arg(format!("{}:mail", self.prefix))
            .query_async(&mut c)
            .await?)
    }

    /// Creates `n` accounts, 16 at a time; returns their addresses.
    pub async fn create_accounts(
        &self,
        base: &str,
        n: usize,
        tag: &str,
    ) -> anyhow::Result<Vec<String>> {
        let client = http();
        let emails: Vec<String> = (0..n).map(|i| format!("{tag}-{i}@example.com")).collect();
        for chunk in emails.chunks(16) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|e| {
                    let (client, base, e) = (client.clone(), base.to_owned(), e.clone());
                    tokio::spawn(async move { post_account(&client, &base, &signup(&e)).await })
                })
                .collect();
            for t in tasks {
                let (status, body) = t.await??;
                anyhow::ensure!(status == 201, "sign-up answered {status}: {body}");
            }
        }
        Ok(emails)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Ok(mut c) = redis::Client::open(self.redis.as_str())
            .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(2)))
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.prefix))
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}

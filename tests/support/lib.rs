//! The end-to-end harness: starts the real binaries (built by `cargo build
//! --workspace --bins`, which scripts/test does first) against real PostgreSQL, Redis
//! and an SMTP server, each test with its own database, Redis key prefix and SMTP
//! capture, so tests run in parallel.

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod outage;
pub mod platform;
pub mod topology;
pub mod upstream;

pub use admit_store::testing::TestDatabase;

/// Where the binaries are: `ADMIT_BIN_DIR`, else the workspace's target/debug.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("ADMIT_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

pub fn redis_url() -> String {
    std::env::var("ADMIT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key-encryption key for the signing keys of a production-topology test.
pub fn test_kek() -> String {
    use base64::Engine as _;
    let mut raw = [0u8; 32];
    raw[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    raw[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Environment that runs a process with its wall clock `offset` away (libfaketime,
/// e.g. `-25h`); monotonic time is left alone so timers behave.
pub fn faked_clock(offset: &str) -> Vec<(&'static str, String)> {
    let lib = std::env::var("ADMIT_TEST_FAKETIME_LIB")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1".into());
    assert!(
        Path::new(&lib).exists(),
        "{lib} is missing: install Debian's faketime (scripts/test does)"
    );
    vec![
        ("LD_PRELOAD", lib),
        ("FAKETIME", offset.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ("FAKETIME_NO_CACHE", "1".to_owned()),
    ]
}

/// `env` without what [`faked_clock`] added: the real clock again.
pub fn real_clock(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .filter(|(k, _)| k != "LD_PRELOAD" && !k.starts_with("FAKETIME"))
        .cloned()
        .collect()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A running binary. Killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    /// `http://127.0.0.1:PORT`, from the line the binary prints when it listens.
    pub url: String,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin(name) args` with `env` and waits for its "listening on" line.
    pub fn start(
        name: &str,
        args: &[&str],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Proc> {
        let log = log_dir.join(format!("{name}-{}.log", unique("")));
        let stderr = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin(name));
        cmd.args(args)
            .env("ADMIT_SHUTDOWN_GRACE_MS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, url)) = line.split_once(" listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => Ok(Proc {
                name: name.into(),
                child,
                url,
                log,
            }),
            Err(_) => {
                let _ = child.kill();
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("{name} did not start listening:\n{out}")
            }
        }
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!("{} did not stop on SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real SMTP server (Python's aiosmtpd) that keeps every message in a Maildir.
pub struct SmtpCapture {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct CapturedMail {
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub text: String,
    pub html: String,
}

impl SmtpCapture {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(free_port())
    }

    /// The capture server on `port` (one a mailer was already pointed at).
    pub fn start_on(port: u16) -> anyhow::Result<Self> {
        let python =
            std::env::var("ADMIT_TEST_SMTP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        let dir = tempfile::tempdir()?;
        let maildir = dir.path().join("Maildir");
        let child = Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting aiosmtpd with {python} (apt-get install python3-aiosmtpd)")
            })?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the SMTP capture server did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, port, dir })
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<CapturedMail> {
        maildir_messages(&self.dir.path().join("Maildir"))
    }

    /// How many messages arrived so far (files in the Maildir, none parsed).
    pub fn count(&self) -> usize {
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.dir.path().join("Maildir").join(sub)).ok())
            .map(|entries| entries.count())
            .sum()
    }

    /// Waits until at least `n` messages arrived (or `timeout`), and returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<CapturedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts how many times each recipient appears.
pub fn by_recipient(mails: &[CapturedMail]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for mail in mails {
        *m.entry(mail.to.to_ascii_lowercase()).or_insert(0) += 1;
    }
    m
}

/// The value of the first line of `base`'s /metrics that starts with `series` (a
/// metric name with its label set), 0 when there is none.
pub async fn metric(base: &str, series: &str) -> anyhow::Result<f64> {
    let text = http()
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a default HTTP client builds")
}

/// `POST {base}/account` with a JSON body; returns status and JSON answer.
pub async fn post_account(
    client: &reqwest::Client,
    base: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let res = client
        .post(format!("{base}/account"))
        .json(body)
        .send()
        .await?;
    let status = res.status().as_u16();
    let json = res.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

/// A sign-up body for `email` with a valid password.
pub fn signup(email: &str) -> serde_json::Value {
    serde_json::json!({"contacts": [["EMAIL", email, true]], "full_name": "Test User", "password": "doctest1"})
}

/// Bodies `POST /account` refuses with 400, each with the field it must name.
pub fn bad_sign_ups() -> Vec<(&'static str, serde_json::Value, &'static str)> {
    use serde_json::json;
    let long_local = format!("{}@example.com", "a".repeat(65));
    let long_address = format!(
        "{}@{}.{}.{}.com",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(58)
    );
    assert_eq!(long_address.len(), 255);
    let c = |email: &str| json!({"contacts":[["EMAIL", email, true]],"password":"doctest1"});
    vec![
        ("no domain", c("doc@"), "contacts[0][1]"),
        ("65-character local part", c(&long_local), "contacts[0][1]"),
        ("255-character address", c(&long_address), "contacts[0][1]"),
        (
            "phone 12345",
            json!({"contacts":[["PHONE","12345"]],"password":"doctest1"}),
            "contacts[0][1]",
        ),
        (
            "locale english",
            json!({"username":"doctest","password":"doctest1","locale":"english"}),
            "locale",
        ),
        (
            "5-character password",
            json!({"username":"doctest","password":"12a4b"}),
            "password",
        ),
        (
            "19-character password",
            json!({"username":"doctest","password":"a".repeat(19)}),
            "password",
        ),
        (
            "password that is a number",
            json!({"username":"doctest","password":12345678}),
            "password",
        ),
        (
            "no contacts, no username",
            json!({"password":"doctest1"}),
            "contacts",
        ),
        (
            "two primary EMAILs",
            json!({"contacts":[["EMAIL","a@example.com",true],["EMAIL","b@example.com",true]],"password":"doctest1"}),
            "contacts[1][2]",
        ),
        (
            "unknown contact name",
            json!({"contacts":[["FAX","+14155550100"]],"password":"doctest1"}),
            "contacts[0][0]",
        ),
        (
            "unknown account type",
            json!({"username":"doctest","password":"doctest1","account_type":"gold"}),
            "account_type",
        ),
        (
            "contacts of the wrong type",
            json!({"contacts":"doc@example.com","password":"doctest1"}),
            "contacts",
        ),
        ("a body that is not an object", json!(["doc"]), "body"),
        (
            "an unknown field",
            json!({"username":"doctest","password":"doctest1","colour":"red"}),
            "colour",
        ),
        (
            "a contact that is not a tuple",
            json!({"contacts":[{"EMAIL":"doc@example.com"}],"password":"doctest1"}),
            "contacts[0]",
        ),
        (
            "is_primary that is not a boolean",
            json!({"contacts":[["EMAIL","doc@example.com","yes"]],"password":"doctest1"}),
            "contacts[0][2]",
        ),
        (
            "two primary PHONEs",
            json!({"contacts":[["PHONE","+14155550100",true],["PHONE","+14155550101",true]],"password":"doctest1"}),
            "contacts[1][2]",
        ),
        (
            "a username with a space",
            json!({"username":"doc test","password":"doctest1"}),
            "username",
        ),
        (
            "a locale with an unknown country",
            json!({"username":"doctest","password":"doctest1","locale":"eng-ZZ"}),
            "locale",
        ),
        (
            "recaptcha without a response",
            json!({"username":"doctest","password":"doctest1","recaptcha":{"private_key":"k","challenge":"c"}}),
            "recaptcha.response",
        ),
        (
            "recaptcha that is not an object",
            json!({"username":"doctest","password":"doctest1","recaptcha":"token"}),
            "recaptcha",
        ),
        (
            "a social field in an explicit body",
            json!({"username":"doctest","password":"doctest1","user_id":"42"}),
            "user_id",
        ),
    ]
}

/// `n` sign-ups at once for one address spelt in `n` different cases.
pub async fn concurrent_same_email(base: &str, email: &str, n: usize) -> anyhow::Result<Vec<u16>> {
    let client = http();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let email: String = email
                .chars()
                .enumerate()
                .map(|(j, ch)| {
                    if (i >> (j % 6)) & 1 == 1 {
                        ch.to_ascii_uppercase()
                    } else {
                        ch
                    }
                })
                .collect();
            let (client, base) = (client.clone(), base.to_owned());
            tokio::spawn(async move {
                post_account(&client, &base, &signup(&email))
                    .await
                    .map(|(s, _)| s)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await??);
    }
    Ok(statuses)
}

/// Runs an `admit` operator command with `--json` and `env`; returns its JSON.
pub fn admin_cli(args: &[&str], env: &[(String, String)]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(bin("admit"))
        .args(args)
        .arg("--json")
        .envs(env.iter().cloned())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "admit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The messages an SMTP capture server delivered into `maildir` (`new` and `cur`).
pub fn maildir_messages(maildir: &Path) -> Vec<CapturedMail> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let Ok(raw) = std::fs::read(e.path()) else {
                continue;
            };
            let Some(m) = mail_parser::MessageParser::default().parse(&raw) else {
                continue;
            };
            let to = m
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .unwrap_or_default()
                .to_owned();
            out.push(CapturedMail {
                to,
                subject: m.subject().unwrap_or_default().to_owned(),
                message_id: m.message_id().unwrap_or_default().to_owned(),
                text: m.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
                html: m.body_html(0).map(|t| t.into_owned()).unwrap_or_default(),
            });
        }
    }
    out
}

/// A real SMTP server whose answers a test scripts (tests/support/smtp_script.py,
/// aiosmtpd): temporary failures (421/451) for the first N recipients, 550 for some
/// addresses, acceptance otherwise, into a Maildir like [`SmtpCapture`]'s.
pub struct ScriptedSmtp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// What a [`ScriptedSmtp`] answered so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmtpAnswers {
    pub tempfail: u64,
    pub rejected: u64,
    pub accepted: u64,
}

impl ScriptedSmtp {
    /// Starts the server with `rules` (see the script: `tempfail`, `tempfail_codes`,
    /// `reject`).
    pub fn start(rules: serde_json::Value) -> anyhow::Result<Self> {
        let python =
            std::env::var("ADMIT_TEST_SMTP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("rules.json"), rules.to_string())?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/smtp_script.py");
        let port = free_port();
        let child = Command::new(&python)
            .arg(&script)
            .arg(port.to_string())
            .arg(dir.path().join("Maildir"))
            .arg(dir.path().join("rules.json"))
            .arg(dir.path().join("stats.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("smtp.log"))?)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} with {python} (apt-get install python3-aiosmtpd)",
                    script.display()
                )
            })?;
        let server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "the scripted SMTP server did not start on port {port}: {}",
                    std::fs::read_to_string(server.dir.path().join("smtp.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Replaces the rules; the next recipient is answered by them.
    pub fn set_rules(&self, rules: serde_json::Value) -> anyhow::Result<()> {
        let tmp = self.dir.path().join("rules.json.tmp");
        std::fs::write(&tmp, rules.to_string())?;
        std::fs::rename(&tmp, self.dir.path().join("rules.json"))?;
        Ok(())
    }

    pub fn answers(&self) -> SmtpAnswers {
        let raw = std::fs::read_to_string(self.dir.path().join("stats.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        SmtpAnswers {
            tempfail: n("tempfail"),
            rejected: n("rejected"),
            accepted: n("accepted"),
        }
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> Vec<CapturedMail> {
        maildir_messages(&self.dir.path().join("Maildir"))
    }

    /// Waits until `done(messages)` holds (or `timeout`), and returns the messages.
    pub fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[CapturedMail]) -> bool,
    ) -> Vec<CapturedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if done(&got) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ScriptedSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

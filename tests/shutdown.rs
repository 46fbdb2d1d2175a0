//! SIGTERM, as Kubernetes sends it when a pod is deleted: under a steady stream of
//! requests each service fails `/readyz` first while still accepting, then closes its
//! listener, drains the requests in flight (one of them still uploading its body when
//! the listener closes), and exits within its grace; the mailer stopped in the middle
//! of its batches finishes what it read, so no email is lost and none sent twice.
//!
//! The stream behaves like the Ingress controller: it sends requests until it sees
//! `/readyz` fail, and sends no new ones after that.

use admit_e2e::topology::Topology;
use admit_e2e::{by_recipient, http, unique, CapturedMail, Proc};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GRACE_MS: u64 = 1500;
const DRAIN_SECS: u64 = 10;

/// What the traffic saw around one SIGTERM.
#[derive(Default)]
struct Observed {
    /// Requests of the stream, with their outcome (`Err`: a failure of any kind).
    results: Vec<Result<u16, String>>,
    /// When `/readyz` first answered 503, and what it said.
    not_ready_at: Option<(Instant, serde_json::Value)>,
    /// When a new connection was first refused.
    closed_at: Option<Instant>,
}

/// A request of the stream: the method and path, the body, and the answer expected.
#[derive(Clone)]
struct Call {
    path: &'static str,
    body: Option<Body>,
    expect: u16,
}

#[derive(Clone)]
enum Body {
    /// A sign-up with a fresh address each time.
    SignUp,
    /// client_credentials with these credentials.
    Token(String, String),
}

async fn send(client: &reqwest::Client, base: &str, call: &Call) -> Result<u16, String> {
    let url = format!("{base}{}", call.path);
    let req = match &call.body {
        None => client.get(url),
        Some(Body::SignUp) => client
            .post(url)
            .json(&admit_e2e::signup(&format!("{}@example.com", unique("s")))),
        Some(Body::Token(id, secret)) => client
            .post(url)
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")]),
    };
    let res = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    res.bytes().await.map_err(|e| format!("body: {e:?}"))?;
    Ok(status)
}

/// A request whose head is sent now and whose body is sent only when `release` is
/// set: it is in flight when the listener closes. Returns the status line's code.
async fn slow_request(
    addr: String,
    head: String,
    body: Vec<u8>,
    release: Arc<AtomicBool>,
) -> Result<u16, String> {
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| e.to_string())?;
    let split = body.len() / 2;
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(&body[..split])
        .await
        .map_err(|e| e.to_string())?;
    while !release.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.write_all(&body[split..])
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))
}

/// Runs the stream against `proc`, sends SIGTERM once it is flowing, and checks
/// everything the Kubernetes rollout relies on.
async fn terminate_under_load(
    proc: Proc,
    call: Call,
    slow: Option<(String, Vec<u8>, u16)>,
) -> anyhow::Result<()> {
    let name = proc.name.clone();
    let base = proc.url.clone();
    let addr = base.trim_start_matches("http://").to_owned();
    let client = http();
    let seen = Arc::new(Mutex::new(Observed::default()));
    let drained = Arc::new(AtomicBool::new(false));

    // The stream: four callers, until the "load balancer" sees readiness fail.
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (client, base, call, seen, drained) = (
            client.clone(),
            base.clone(),
            call.clone(),
            seen.clone(),
            drained.clone(),
        );
        callers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !drained.load(Ordering::SeqCst) && Instant::now() < deadline {
                let r = send(&client, &base, &call).await;
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .results
                    .push(r);
            }
        }));
    }
    // Let it flow, and make sure it does.
    let flowing = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap_or_else(|p| p.into_inner()).results.len() < 20 {
        anyhow::ensure!(Instant::now() < flowing, "{name}: the stream does not flow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let release = Arc::new(AtomicBool::new(false));
    let slow_task = slow.map(|(head, body, expect)| {
        let task = tokio::spawn(slow_request(addr.clone(), head, body, release.clone()));
        (task, expect)
    });
    // The slow request's head is read before the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let term_at = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || {
        let mut proc = proc;
        let status = proc.terminate();
        (proc, status, Instant::now())
    });

    // The load balancer's probe, on fresh connections; then the listener's end.
    let probe = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        anyhow::ensure!(Instant::now() < deadline, "{name}: never stopped accepting");
        match probe.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 503 => {
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                if s.not_ready_at.is_none() {
                    s.not_ready_at = Some((Instant::now(), body));
                    drained.store(true, Ordering::SeqCst);
                }
            }
            Ok(_) => {}
            Err(e) if e.is_connect() => {
                seen.lock().unwrap_or_else(|p| p.into_inner()).closed_at = Some(Instant::now());
                break;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    release.store(true, Ordering::SeqCst);
    for c in callers {
        c.await?;
    }
    let slow_result = match slow_task {
        Some((task, expect)) => Some((task.await?, expect)),
        None => None,
    };
    let (proc, status, exited_at) = stopping.await?;
    let status = status?;

    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    let (not_ready_at, body) = seen
        .not_ready_at
        .clone()
        .ok_or_else(|| anyhow::anyhow!("{name}: /readyz never answered 503"))?;
    let closed_at = seen
        .closed_at
        .ok_or_else(|| anyhow::anyhow!("{name}: the listener never closed"))?;
    assert_eq!(body["status"], "draining", "{name}: {body}");
    assert!(
        not_ready_at < closed_at,
        "{name}: /readyz failed only after the listener closed"
    );
    let failed: Vec<_> = seen
        .results
        .iter()
        .filter(|r| r.as_ref().map(|s| *s != call.expect).unwrap_or(true))
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: {} of {} requests failed: {:?}",
        failed.len(),
        seen.results.len(),
        &failed[..failed.len().min(5)]
    );
    if let Some((result, expect)) = slow_result {
        assert_eq!(
            result,
            Ok(expect),
            "{name}: the request in flight when the listener closed"
        );
    }
    assert!(status.success(), "{name} exited with {status}");
    let took = exited_at - term_at;
    assert!(
        took < Duration::from_millis(GRACE_MS) + Duration::from_secs(DRAIN_SECS),
        "{name} took {took:?} to exit"
    );
    eprintln!(
        "{name}: {} requests, all answered {}; /readyz 503 after {:?}, listener closed after {:?}, exited after {took:?}",
        seen.results.len(),
        call.expect,
        not_ready_at - term_at,
        closed_at - term_at
    );
    assert!(proc.log_text().contains("shutting down"), "{name}");
    Ok(())
}

fn shutdown_env() -> [(&'static str, String); 2] {
    [
        ("ADMIT_SHUTDOWN_GRACE_MS", GRACE_MS.to_string()),
        ("ADMIT_SHUTDOWN_DRAIN_SECS", DRAIN_SECS.to_string()),
    ]
}

fn extra<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn the_account_service_fails_readiness_then_drains_on_sigterm() -> anyhow::Result<()> {
    let env = shutdown_env();
    let t = Topology::new(&extra(&env))?;
    let account = t.start("admit-account")?;
    let body = serde_json::to_vec(&admit_e2e::signup(&format!(
        "{}@example.com",
        unique("slow")
    )))?;
    let head = format!(
        "POST /account HTTP/1.1\r\nHost: accounts.example.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    terminate_under_load(
        account,
        Call {
            path: "/account",
            body: Some(Body::SignUp),
            expect: 201,
        },
        Some((head, body, 201)),
    )
    .await
}

#[tokio::test]
async fn the_authorization_server_fails_readiness_then_drains_on_sigterm() -> anyhow::Result<()> {
    let env = shutdown_env();
    let t = Topology::new(&extra(&env))?;
    let partner = t.cli(&["partner", "create", "--name", "Partner"])?;
    let pid = partner["partner_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let client = t.cli(&[
        "client",
        "create",
        "--partner",
        &pid,
        "--name",
        "svc",
        "--grant",
        "client_credentials",
        "--scope",
        "accounts:create",
    ])?;
    let id = client["client_id"].as_str().unwrap_or_default().to_owned();
    let secret = client["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let oauth = t.start("admit-oauth")?;
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let body = b"grant_type=client_credentials&scope=accounts%3Acreate".to_vec();
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: accounts.example.test\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    terminate_under_load(
        oauth,
        Call {
            path: "/oauth/token",
            body: Some(Body::Token(id, secret)),
            expect: 200,
        },
        Some((head, body, 200)),
    )
    .await
}

#[tokio::test]
async fn the_mailer_fails_readiness_then_stops_on_sigterm() -> anyhow::Result<()> {
    let env = shutdown_env();
    let t = Topology::new(&extra(&env))?;
    let mailer = t.start("admit-mailer")?;
    terminate_under_load(
        mailer,
        Call {
            path: "/healthz",
            body: None,
            expect: 200,
        },
        None,
    )
    .await
}

/// A real SMTP server (aiosmtpd) that takes `delay` to accept each message, so that a
/// mailer always has sends in flight; every message lands in a Maildir.
struct SlowSmtp {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

const SLOW_SMTP: &str = r#"
import asyncio, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

class Slow(Mailbox):
    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(float(sys.argv[3]))
        return await super().handle_DATA(server, session, envelope)

Controller(Slow(sys.argv[2]), hostname="127.0.0.1", port=int(sys.argv[1])).start()
threading.Event().wait()
"#;

impl SlowSmtp {
    fn start(delay: Duration) -> anyhow::Result<Self> {
        let python =
            std::env::var("ADMIT_TEST_SMTP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        let dir = tempfile::tempdir()?;
        let port = admit_e2e::free_port();
        let child = Command::new(python)
            .args(["-c", SLOW_SMTP, &port.to_string()])
            .arg(dir.path().join("Maildir"))
            .arg(delay.as_secs_f64().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the slow SMTP server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, port, dir })
    }

    fn messages(&self) -> Vec<CapturedMail> {
        admit_e2e::maildir_messages(&self.dir.path().join("Maildir"))
    }
}

impl Drop for SlowSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn pending_entries(t: &Topology) -> anyhow::Result<i64> {
    let client = redis::Client::open(admit_e2e::redis_url())?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(format!("{}:mail", t.prefix))
        .arg("mailer")
        .query_async(&mut c)
        .await?;
    match summary {
        redis::Value::Array(v) => match v.first() {
            Some(redis::Value::Int(n)) => Ok(*n),
            other => anyhow::bail!("XPENDING: {other:?}"),
        },
        other => anyhow::bail!("XPENDING: {other:?}"),
    }
}

#[tokio::test]
async fn a_mailer_stopped_mid_batch_loses_no_email_and_sends_none_twice() -> anyhow::Result<()> {
    let smtp = SlowSmtp::start(Duration::from_millis(100))?;
    let port = smtp.port.to_string();
    // No readiness grace: the stop reaches the worker at once, in the middle of its
    // batches (4 batches of 8 in flight, each send 100 ms at the relay).
    let t = Topology::new(&[
        ("ADMIT__MAILER__SMTP__PORT", port.as_str()),
        ("ADMIT_SHUTDOWN_GRACE_MS", "0"),
        ("ADMIT__MAILER__CONCURRENCY", "8"),
    ])?;
    let account = t.start("admit-account")?;
    let n = 160;
    let emails = t.create_accounts(&account.url, n, &unique("m")).await?;

    let first = t.start("admit-mailer")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while smtp.messages().len() < 24 {
        anyhow::ensure!(Instant::now() < deadline, "the mailer does not send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = smtp.messages().len();
    let term_at = Instant::now();
    let (first, status) = tokio::task::spawn_blocking(move || {
        let mut first = first;
        let status = first.terminate();
        (first, status)
    })
    .await?;
    let status = status?;
    let took = term_at.elapsed();
    let at_exit = smtp.messages().len();
    assert!(status.success(), "the mailer exited with {status}");
    // The batches in hand were finished: messages reached the relay after the signal.
    assert!(
        at_exit > before,
        "nothing was sent after SIGTERM ({before}): the stop did not land mid-batch"
    );
    assert!(at_exit < n, "the mailer sent everything before it stopped");
    // Nothing left leased to the stopped mailer, nothing pending on its consumer.
    let db = admit_store::Db::connect(&t.tdb.url, 1)?;
    let processing = db
        .run(|c| admit_store::mail::count_by_status(c, admit_store::mail::MailStatus::Processing))
        .await?;
    assert_eq!(processing, 0, "messages still leased to the stopped mailer");
    assert_eq!(
        pending_entries(&t).await?,
        0,
        "stream entries read but not handled"
    );
    assert!(
        first.log_text().contains("mailer worker stopped"),
        "{}",
        first.log_text()
    );

    let _second = t.start("admit-mailer")?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let counts = by_recipient(&smtp.messages());
        if emails.iter().all(|e| counts.contains_key(e)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lost: {} of {n} addresses got no email",
            emails.iter().filter(|e| !counts.contains_key(*e)).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settle, then exactly one email per address.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (t.sent_count().await? < n as i64 || t.stream_len().await? > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = smtp.messages();
    let counts = by_recipient(&got);
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(got.len(), n, "one email per address");
    eprintln!(
        "stopped after {before} of {n} emails, {at_exit} at exit ({took:?} after SIGTERM); {} in all",
        got.len()
    );
    Ok(())
}

#[tokio::test]
async fn a_mailer_stopped_while_its_batch_waits_for_more_sends_the_batch_first(
) -> anyhow::Result<()> {
    // Batches of up to 64 wait 3 s for company: 20 queued emails are read at once and
    // held for the window, and the stop lands while they are held.
    let t = Topology::new(&[
        ("ADMIT_SHUTDOWN_GRACE_MS", "0"),
        ("ADMIT__MAILER__CONCURRENCY", "64"),
        ("ADMIT__MAILER__BATCH_WINDOW_MS", "3000"),
    ])?;
    let account = t.start("admit-account")?;
    let n = 20;
    let emails = t.create_accounts(&account.url, n, &unique("w")).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.stream_len().await? < n {
        anyhow::ensure!(Instant::now() < deadline, "the relay does not publish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mailer = t.start("admit-mailer")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending_entries(&t).await? < n as i64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the mailer does not read the queue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(t.smtp.messages().is_empty(), "the batch is still waiting");
    let (mailer, status) = tokio::task::spawn_blocking(move || {
        let mut mailer = mailer;
        let status = mailer.terminate();
        (mailer, status)
    })
    .await?;
    assert!(status?.success(), "{}", mailer.log_text());
    // Sent before the process ended, not left for another replica's take-over.
    let counts = by_recipient(&t.smtp.messages());
    for e in &emails {
        assert_eq!(counts.get(e).copied(), Some(1), "{e}");
    }
    assert_eq!(
        pending_entries(&t).await?,
        0,
        "entries left on the stopped consumer"
    );
    Ok(())
}

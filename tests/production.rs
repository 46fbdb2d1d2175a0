//! The production topology: admit-account, admit-oauth and admit-mailer as separate
//! processes on PostgreSQL and Redis, sending through a real SMTP server.

use admit_e2e::topology::Topology;
use admit_e2e::{by_recipient, http, unique, Proc};
use std::time::{Duration, Instant};

#[tokio::test]
async fn every_service_answers_health_readiness_and_metrics() -> anyhow::Result<()> {
    let t = Topology::new(&[])?;
    for name in ["admit-account", "admit-oauth", "admit-mailer"] {
        let p = t.start(name)?;
        let client = http();
        assert_eq!(
            client
                .get(format!("{}/healthz", p.url))
                .send()
                .await?
                .status(),
            200,
            "{name}"
        );
        let ready = client.get(format!("{}/readyz", p.url)).send().await?;
        assert_eq!(ready.status(), 200, "{name}");
        let body: serde_json::Value = ready.json().await?;
        assert_eq!(body["checks"]["database"], "ok", "{name}: {body}");
        let metrics = client
            .get(format!("{}/metrics", p.url))
            .send()
            .await?
            .text()
            .await?;
        assert!(metrics.contains("http_requests_total"), "{name}: {metrics}");
        // JSON logs, with the request id on the request's lines.
        let missing = client.get(format!("{}/no-such-page", p.url)).send().await?;
        assert_eq!(missing.status(), 404, "{name}");
        let err: serde_json::Value = missing.json().await?;
        assert_eq!(err["error"], "NotFoundException");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = p.log_text();
        assert!(
            log.lines()
                .any(|l| l.starts_with('{') && l.contains("\"request_id\"")),
            "{name}: {log}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn mail_waits_for_a_stopped_mailer_and_arrives_exactly_once() -> anyhow::Result<()> {
    let t = Topology::new(&[])?;
    let account = t.start("admit-account")?;
    let emails = t.create_accounts(&account.url, 200, &unique("w")).await?;
    assert!(t.smtp.messages().is_empty(), "no mailer, no mail yet");

    let _mailer = t.start("admit-mailer")?;
    let got = t.smtp.wait_for(200, Duration::from_secs(180));
    assert_eq!(got.len(), 200, "all 200 welcome emails arrived");
    // Let the queue settle, then check nothing more comes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (t.sent_count().await? < 200 || t.stream_len().await? > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = t.smtp.messages();
    assert_eq!(got.len(), 200, "exactly 200: none sent twice");
    let counts = by_recipient(&got);
    for e in &emails {
        assert_eq!(counts.get(e).copied(), Some(1), "{e}");
    }
    assert!(got.iter().all(|m| m.subject == "Welcome to admit"));
    assert!(
        got[0].text.contains("https://accounts.example.test/"),
        "links use the configured base URL"
    );
    assert_eq!(t.sent_count().await?, 200);
    assert_eq!(
        t.stream_len().await?,
        0,
        "acknowledged entries leave the stream"
    );
    Ok(())
}

#[tokio::test]
async fn a_mailer_killed_while_sending_loses_nothing() -> anyhow::Result<()> {
    // Two batches of two sends at a time, so that the kill lands in the middle of the
    // work and at most four messages are sent but not yet recorded when it does.
    let t = Topology::new(&[
        ("ADMIT__MAILER__CONCURRENCY", "2"),
        ("ADMIT__MAILER__BATCHES_IN_FLIGHT", "2"),
    ])?;
    let account = t.start("admit-account")?;
    let mut mailer = t.start("admit-mailer")?;
    let emails = t.create_accounts(&account.url, 300, &unique("k")).await?;
    let before = t.smtp.wait_for(20, Duration::from_secs(120)).len();
    mailer.kill9();
    let at_kill = t.smtp.messages().len();
    assert!(before >= 20, "the mailer was sending before the kill");

    let _second = t.start("admit-mailer")?;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let counts = by_recipient(&t.smtp.messages());
        if emails.iter().all(|e| counts.contains_key(e)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lost: {} of {} addresses got no email",
            emails.iter().filter(|e| !counts.contains_key(*e)).count(),
            emails.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = t.smtp.messages().len();
    eprintln!("killed after {at_kill} of 300 emails; {total} received in all");
    // At least once: a message sent but not yet recorded when the process died may be
    // sent again, at most one per send in flight (concurrency × batches in flight).
    assert!(total - 300 <= 4, "{} duplicates", total - 300);
    Ok(())
}

#[tokio::test]
async fn concurrent_sign_ups_on_postgres_make_one_account() -> anyhow::Result<()> {
    let t = Topology::new(&[])?;
    let account = t.start("admit-account")?;
    let statuses = admit_e2e::concurrent_same_email(&account.url, "same@example.com", 50).await?;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sign_ups_succeed_while_redis_is_down_and_mail_flows_when_it_returns() -> anyhow::Result<()>
{
    // The account service points at a Redis that is not there: the outbox keeps the
    // mail; a relay that can reach Redis (a restarted account service) sends it on.
    let t = Topology::new(&[])?;
    let dead_redis: Vec<(String, String)> = t
        .env
        .iter()
        .cloned()
        .map(|(k, v)| {
            if k == "ADMIT__REDIS__URL" {
                (k, "redis://127.0.0.1:1".to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    let mut cut_off = Proc::start("admit-account", &[], &dead_redis, t.logs.path())?;
    let emails = t.create_accounts(&cut_off.url, 5, &unique("r")).await?;
    cut_off.terminate()?;
    let _account = t.start("admit-account")?;
    let _mailer = t.start("admit-mailer")?;
    let got = t.smtp.wait_for(5, Duration::from_secs(60));
    let counts = by_recipient(&got);
    for e in &emails {
        assert_eq!(counts.get(e).copied(), Some(1), "{e}");
    }
    Ok(())
}

#[tokio::test]
async fn the_standalone_authorization_server_issues_tokens_from_postgres() -> anyhow::Result<()> {
    let t = Topology::new(&[])?;
    let cli = |args: &[&str]| admit_e2e::admin_cli(args, &t.env);
    let partner = cli(&["partner", "create", "--name", "Partner"])?;
    let pid = partner["partner_id"].as_str().unwrap_or_default();
    let client = cli(&[
        "client",
        "create",
        "--partner",
        pid,
        "--name",
        "svc",
        "--grant",
        "client_credentials",
        "--scope",
        "accounts:create",
    ])?;
    let oauth = t.start("admit-oauth")?;
    let res = http()
        .post(format!("{}/oauth/token", oauth.url))
        .basic_auth(
            client["client_id"].as_str().unwrap_or_default(),
            client["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await?;
    assert_eq!(body["token_type"], "bearer");
    let jwks: serde_json::Value = http()
        .get(format!("{}/oauth/jwks", oauth.url))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    Ok(())
}

//! Start-up self-checks and trusted proxies on the production topology: a service
//! refuses to start without its secrets or on a database behind its migrations, the
//! mailer is not ready with another link key than the account service's, and the
//! client address of rate limits and logs comes from `X-Forwarded-For` only through
//! a trusted proxy.

use admit_e2e::platform::Agent;
use admit_e2e::topology::Topology;
use admit_e2e::{http, post_account, signup, test_kek, unique};
use std::time::{Duration, Instant};

/// Variables set over the topology's.
type Env<'a> = Vec<(&'a str, &'a str)>;

/// The one JSON line a refusal logs: level ERROR, the settings at fault.
fn refusal_line(stderr: &str) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["level"] == "ERROR")
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    lines[0].clone()
}

fn settings_of(line: &serde_json::Value) -> String {
    line["fields"]["settings"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn message_of(line: &serde_json::Value) -> String {
    line["fields"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn readyz(url: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let res = http().get(format!("{url}/readyz")).send().await?;
    Ok((res.status().as_u16(), res.json().await?))
}

#[tokio::test]
async fn production_services_refuse_to_start_without_their_secrets() -> anyhow::Result<()> {
    let t = Topology::new(&[("ADMIT__STAGE", "production")])?;
    let short_key = "c2hvcnQta2V5LXZhbHVl"; // "short-key-value": 15 bytes
    let cases: [(&str, Env, &str); 5] = [
        ("admit-account", vec![], "account.captcha.secret"),
        (
            "admit-account",
            vec![
                ("ADMIT__INTERNAL__LINK_KEY", ""),
                ("ADMIT__ACCOUNT__CAPTCHA__SECRET", "captcha"),
            ],
            "internal.link_key",
        ),
        (
            "admit-mailer",
            vec![("ADMIT__MAILER__SMTP__USERNAME", "admit")],
            "mailer.smtp.password",
        ),
        (
            "admit-mailer",
            vec![("ADMIT__INTERNAL__LINK_KEY", short_key)],
            "internal.link_key",
        ),
        (
            "admit-oauth",
            vec![("ADMIT__OAUTH__KEY_ENCRYPTION_KEY", "")],
            "oauth.key_encryption_key",
        ),
    ];
    for (name, extra, setting) in &cases {
        let (status, stderr) = t.run_to_exit(name, extra)?;
        assert_eq!(
            status.code(),
            Some(78),
            "{name} without {setting}: {stderr}"
        );
        let line = refusal_line(&stderr);
        assert_eq!(settings_of(&line), format!("[\"{setting}\"]"), "{line}");
        let message = message_of(&line);
        assert!(
            message.starts_with(&format!("{name} refuses to start: {setting}")),
            "{message}"
        );
        assert!(
            !stderr.contains(short_key),
            "no secret in the log: {stderr}"
        );
    }
    // With them all, it starts and is ready.
    let account = t.start_with(
        "admit-account",
        &[("ADMIT__ACCOUNT__CAPTCHA__SECRET", "captcha")],
    )?;
    let (status, body) = readyz(&account.url).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["migrations"], "ok", "{body}");
    Ok(())
}

#[tokio::test]
async fn services_refuse_to_start_on_a_database_behind_their_migrations() -> anyhow::Result<()> {
    // Nobody migrated: every service refuses, naming the migrations.
    let t = Topology::unmigrated(&[])?;
    for name in ["admit-account", "admit-oauth", "admit-mailer"] {
        let (status, stderr) = t.run_to_exit(name, &[])?;
        assert_eq!(status.code(), Some(78), "{name}: {stderr}");
        let line = refusal_line(&stderr);
        assert_eq!(settings_of(&line), "[\"database\"]", "{line}");
        let message = message_of(&line);
        assert!(
            message.contains("database migrations are behind") && message.contains("admit migrate"),
            "{name}: {message}"
        );
    }
    // Once migrated, the same service starts and its readiness says so.
    let status = std::process::Command::new(admit_e2e::bin("admit"))
        .arg("migrate")
        .envs(t.env.clone())
        .status()?;
    assert!(status.success());
    let account = t.start("admit-account")?;
    let (status, body) = readyz(&account.url).await?;
    assert_eq!(
        (status, &body["checks"]["migrations"]),
        (200, &"ok".into()),
        "{body}"
    );
    drop(account);

    // One migration behind (the newest one's record gone): refused, naming one.
    let db = admit_store::Db::connect(&t.tdb.url, 1)?;
    db.run(|c| {
        use diesel::RunQueryDsl as _;
        diesel::sql_query(
            "DELETE FROM __diesel_schema_migrations WHERE version = \
             (SELECT max(version) FROM __diesel_schema_migrations)",
        )
        .execute(c)?;
        Ok(())
    })
    .await?;
    let (status, stderr) = t.run_to_exit("admit-mailer", &[])?;
    assert_eq!(status.code(), Some(78), "{stderr}");
    let message = message_of(&refusal_line(&stderr));
    assert!(
        message.contains(": 1 of this version's migrations"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn a_mailer_with_another_link_key_than_the_account_service_is_not_ready() -> anyhow::Result<()>
{
    let t = Topology::new(&[])?;
    let account = t.start("admit-account")?;
    let same = t.start("admit-mailer")?;
    let (status, body) = readyz(&same.url).await?;
    assert_eq!(
        (status, &body["checks"]["link_key"]),
        (200, &"ok".into()),
        "{body}"
    );

    let other_key = test_kek();
    let other = t.start_with("admit-mailer", &[("ADMIT__INTERNAL__LINK_KEY", &other_key)])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = readyz(&other.url).await?;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        body["checks"]["link_key"],
        "internal.link_key differs from admit-account's: the links of the emails would not work",
        "{body}"
    );
    let log = other.log_text();
    assert!(
        log.lines().any(|l| l.contains("\"level\":\"ERROR\"")
            && l.contains("internal.link_key differs from admit-account's")),
        "{log}"
    );
    assert!(!log.contains(&other_key), "the key is never logged");
    // The mailer that shares the key, and the account service, stay ready.
    assert_eq!(readyz(&same.url).await?.0, 200);
    assert_eq!(readyz(&account.url).await?.0, 200);

    // Alone, the mismatched mailer sends nothing (its links would be dead): the mail
    // waits in the stream, and a mailer with the right key sends it, once.
    drop(same);
    let email = format!("{}@example.com", unique("held"));
    let (status, body) = post_account(&http(), &account.url, &signup(&email)).await?;
    assert_eq!(status, 201, "{body}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        t.smtp.messages().len(),
        0,
        "the mismatched mailer held the mail"
    );
    drop(other);
    let _right = t.start("admit-mailer")?;
    let got = t.smtp.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to.to_ascii_lowercase(), email.to_ascii_lowercase());
    Ok(())
}

/// Failed logins from `agent` under fresh login names (so only the per-address limit
/// can answer 429): the statuses.
async fn failed_logins(agent: &mut Agent, accounts: &str, n: usize) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let login = format!("{}@example.com", unique("nobody"));
        out.push(
            agent
                .login(accounts, &login, "wrong password")
                .await?
                .status,
        );
    }
    Ok(out)
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() -> anyhow::Result<()> {
    let t = Topology::new(&[
        ("ADMIT__ACCOUNT__LOGIN_FAILURES_PER_ADDRESS", "2"),
        ("ADMIT__ACCOUNT__LOGIN_FAILURES_PER_ACCOUNT", "100"),
    ])?;
    // No trusted proxies: the peer (127.0.0.1) is the client, whatever it forwards.
    let direct = t.start("admit-account")?;
    for (i, expected) in [401, 401, 429].into_iter().enumerate() {
        let xff = format!("203.0.113.{}", i + 1);
        let mut agent = Agent::with_headers(&[("X-Forwarded-For", &xff)])?;
        let got = failed_logins(&mut agent, &direct.url, 1).await?;
        assert_eq!(got, [expected], "spoofed {xff} from an untrusted peer");
    }

    // The gateway at 127.0.0.1 trusted: the right-most entry it did not add is the
    // client; a left-most entry the client wrote changes nothing.
    let gateway = t.start_with(
        "admit-account",
        &[("ADMIT__HTTP__TRUSTED_PROXIES", "127.0.0.1/32")],
    )?;
    let mut a = Agent::with_headers(&[("X-Forwarded-For", "198.51.100.1, 203.0.113.10")])?;
    assert_eq!(failed_logins(&mut a, &gateway.url, 2).await?, [401, 401]);
    let mut spoofed = Agent::with_headers(&[("X-Forwarded-For", "192.0.2.99, 203.0.113.10")])?;
    assert_eq!(failed_logins(&mut spoofed, &gateway.url, 1).await?, [429]);
    let mut other = Agent::with_headers(&[("X-Forwarded-For", "203.0.113.11")])?;
    assert_eq!(
        failed_logins(&mut other, &gateway.url, 1).await?,
        [401],
        "another client, another bucket"
    );

    // The request logs carry the same client address.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let failed_from = |log: &str, ip: &str| {
        log.lines().any(|l| {
            l.contains("login failed") && l.contains(&format!("\"http.client_ip\":\"{ip}\""))
        })
    };
    let log = gateway.log_text();
    assert!(failed_from(&log, "203.0.113.10"), "{log}");
    assert!(failed_from(&log, "203.0.113.11"), "{log}");
    assert!(!failed_from(&log, "192.0.2.99") && !failed_from(&log, "198.51.100.1"));
    let log = direct.log_text();
    assert!(failed_from(&log, "127.0.0.1"), "{log}");
    assert!(!failed_from(&log, "203.0.113.1"), "{log}");
    Ok(())
}

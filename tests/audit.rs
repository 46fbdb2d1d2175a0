//! The audit log on the production topology (PostgreSQL, Redis, a real SMTP
//! server): admin actions by the `admit` CLI and by the admin HTTP APIs, and the
//! credential events of a user (a failed and a good login, a consent, a refresh
//! token revoked, a password reset that ends the session) all appear in `admit audit
//! --since 1h` with their actor, target, request id and client address (through a
//! trusted gateway); `GET /admin/v1/audit` filters them; the table holds none of the
//! passwords, tokens or keys used; and PostgreSQL refuses to change or remove an
//! event. The embedded default records the same on SQLite.

use admit_e2e::platform::{hidden_fields, query_of, Agent, Platform};
use admit_e2e::{bin, http, unique, SmtpCapture};
use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde_json::Value;
use sha2::Digest;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token-for-the-audit-test-0123456789";
const OLD: &str = "horse-battery-9";
const WRONG: &str = "wrong-guess-4711";
const NEW: &str = "staple-correct-7";
const CLIENT_IP: &str = "198.51.100.7";
// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// `admit audit ARGS --json`: one event per line.
fn audit_cli(p: &Platform, args: &[&str]) -> anyhow::Result<Vec<Value>> {
    let out = std::process::Command::new(bin("admit"))
        .arg("audit")
        .args(args)
        .arg("--json")
        .envs(p.env().iter().cloned())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "admit audit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

/// The events of `action` (each the whole event).
fn of<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}

/// The one event of `action` whose target id is `target` (any, with `None`).
fn one<'a>(events: &'a [Value], action: &str, target: Option<&str>) -> anyhow::Result<&'a Value> {
    of(events, action)
        .into_iter()
        .find(|e| target.is_none_or(|t| e["target"]["id"] == t))
        .with_context(|| format!("no {action} on {target:?} in {events:#?}"))
}

async fn admin(method: reqwest::Method, url: &str) -> anyhow::Result<(u16, Value)> {
    let res = http()
        .request(method, url)
        .bearer_auth(ADMIN)
        .header("X-Forwarded-For", CLIENT_IP)
        .header("Content-Type", "application/json")
        .body(r#"{"name": "Audit Partner"}"#)
        .send()
        .await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// The reset link mailed to `to` (waiting up to a minute).
fn reset_link(smtp: &SmtpCapture, to: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let link = smtp
            .messages()
            .into_iter()
            .filter(|m| m.to.eq_ignore_ascii_case(to))
            .find_map(|m| {
                m.text
                    .split_whitespace()
                    .find(|w| w.contains("/password/reset?token="))
                    .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_owned())
            });
        if let Some(link) = link {
            return Ok(link);
        }
        anyhow::ensure!(Instant::now() < deadline, "no reset email to {to}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every stored value of every event, as one text per row (on either backend).
const EVERY_VALUE: &str =
    "SELECT CAST(id AS TEXT) || ' ' || CAST(at AS TEXT) || ' ' || actor_kind \
     || ' ' || actor_id || ' ' || action || ' ' || target_kind || ' ' || target_id || ' ' \
     || outcome || ' ' || request_id || ' ' || source || ' ' || detail AS t FROM audit_events";

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    t: String,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn admin_actions_and_credential_events_are_audited_without_secrets() -> anyhow::Result<()> {
    let smtp = SmtpCapture::start()?;
    let mut p = Platform::production(&[
        ("ADMIT__INTERNAL__ADMIN_TOKEN", ADMIN),
        ("ADMIT__HTTP__TRUSTED_PROXIES", "127.0.0.1/32"),
    ])?;
    p.start_mailer(&smtp)?;
    let mut secrets: Vec<String> = vec![ADMIN.into(), OLD.into(), WRONG.into(), NEW.into()];

    // Admin actions by the CLI.
    let c = p.client(
        "http://127.0.0.1:9/cb",
        &["authorization_code", "refresh_token"],
        false,
    )?;
    let client_secret = c.secret.clone().context("a confidential client")?;
    secrets.push(client_secret.clone());
    let partner = one(
        &audit_cli(&p, &["--action", "partner.create"])?,
        "partner.create",
        None,
    )?["target"]["id"]
        .as_str()
        .context("partner id")?
        .to_owned();
    let key = p.cli(&["api-key", "create", "--partner", &partner])?;
    let key_id = key["key_id"].as_str().context("key_id")?.to_owned();
    secrets.push(key["api_key"].as_str().context("api_key")?.to_owned());
    p.cli(&["api-key", "revoke", &key_id])?;
    p.cli(&["plan-code", "add", "--partner", &partner, "GOLD"])?;
    let kid = p.cli(&["keys", "rotate"])?["kid"]
        .as_str()
        .context("kid")?
        .to_owned();
    p.cli(&["mail", "dead", "retry", "--all"])?;

    // Admin actions by the admin APIs, through the gateway at 127.0.0.1.
    let (status, created) = admin(
        reqwest::Method::POST,
        &format!("{}/admin/v1/partners", p.issuer),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let api_partner = created["partner_id"]
        .as_str()
        .context("partner_id")?
        .to_owned();
    let (status, k) = admin(
        reqwest::Method::POST,
        &format!("{}/admin/v1/partners/{api_partner}/api-keys", p.issuer),
    )
    .await?;
    assert_eq!(status, 201, "{k}");
    secrets.push(k["api_key"].as_str().context("api_key")?.to_owned());
    let (status, _) = admin(
        reqwest::Method::POST,
        &format!("{}/admin/v1/accounts/no-such-account/resend", p.accounts),
    )
    .await?;
    assert_eq!(status, 404);

    // Credential events of a user behind the gateway.
    let email = format!("{}@example.com", unique("audit"));
    let account = p.user(&email, OLD).await?;
    let mut agent = Agent::with_headers(&[("X-Forwarded-For", CLIENT_IP)])?;
    assert_eq!(agent.login(&p.accounts, &email, WRONG).await?.status, 401);
    let res = agent.login(&p.accounts, &email, OLD).await?;
    assert_eq!(res.status, 303, "login: {}", res.body);
    secrets.extend(agent.cookie("__Host-admit_session").cloned());
    let q = serde_urlencoded::to_string([
        ("client_id", c.id.as_str()),
        ("redirect_uri", c.redirect_uri.as_str()),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "st"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ])?;
    let back = agent
        .authorize(&format!("{}/oauth/authorize?{q}", p.issuer))
        .await?;
    let code = query_of(&back).get("code").cloned().context("code")?;
    secrets.push(code.clone());
    let tokens: Value = http()
        .post(format!("{}/oauth/token", p.issuer))
        .basic_auth(&c.id, Some(&client_secret))
        .header("X-Forwarded-For", CLIENT_IP)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", c.redirect_uri.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?
        .json()
        .await?;
    let refresh = tokens["refresh_token"]
        .as_str()
        .with_context(|| format!("refresh_token in {tokens}"))?
        .to_owned();
    secrets.push(refresh.clone());
    secrets.extend(tokens["access_token"].as_str().map(str::to_owned));
    let revoked = http()
        .post(format!("{}/oauth/revoke", p.issuer))
        .basic_auth(&c.id, Some(&client_secret))
        .header("X-Forwarded-For", CLIENT_IP)
        .form(&[("token", refresh.as_str())])
        .send()
        .await?;
    assert_eq!(revoked.status(), 200);
    // A password reset by mail, in another browser: it ends the first one's session.
    let mut other = Agent::with_headers(&[("X-Forwarded-For", CLIENT_IP)])?;
    let page = other
        .get(&format!("{}/password/forgot", p.accounts))
        .await?;
    let mut form = hidden_fields(&page.body);
    form.push(("email".into(), email.clone()));
    let asked = other
        .post(&format!("{}/password/forgot", p.accounts), &form)
        .await?;
    assert_eq!(asked.status, 200, "{}", asked.body);
    let link = reset_link(&smtp, &email)?;
    secrets.push(query_of(&link).get("token").cloned().context("token")?);
    let page = other.get(&link).await?;
    let mut form = hidden_fields(&page.body);
    form.push(("password".into(), NEW.into()));
    form.push(("password_confirm".into(), NEW.into()));
    let reset = other
        .post(&format!("{}/password/reset", p.accounts), &form)
        .await?;
    assert_eq!(reset.status, 200, "{}", reset.body);

    // `admit audit --since 1h` shows each, with who, what, request id and address.
    let events = audit_cli(&p, &["--since", "1h", "--limit", "1000"])?;
    let times: Vec<&str> = events.iter().filter_map(|e| e["time"].as_str()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = p.logs();
    let cli_events = [
        ("partner.create", partner.as_str()),
        ("client.create", c.id.as_str()),
        ("api_key.create", key_id.as_str()),
        ("api_key.revoke", key_id.as_str()),
        ("plan_code.add", partner.as_str()),
        ("signing_key.rotate", kid.as_str()),
        ("mail.dead.retry", "all"),
    ];
    for (action, target) in cli_events {
        let e = one(&events, action, Some(target))?;
        assert_eq!(e["actor"]["kind"], "cli", "{e}");
        assert!(
            !e["actor"]["id"].as_str().unwrap_or_default().is_empty(),
            "{e}"
        );
        assert_eq!(e["source"], "local", "{e}");
        assert_eq!(e["outcome"], "success", "{e}");
        assert!(
            !e["request_id"].as_str().unwrap_or_default().is_empty(),
            "{e}"
        );
    }
    let by_http = [
        (
            "partner.create",
            api_partner.as_str(),
            "admin_token",
            "success",
        ),
        ("api_key.create", "", "admin_token", "success"),
        ("mail.resend", "no-such-account", "admin_token", "failure"),
        ("login.failure", account.as_str(), "anonymous", "failure"),
        ("login.success", account.as_str(), "account", "success"),
        ("consent.grant", c.id.as_str(), "account", "success"),
        ("grant.revoke", "", "client", "success"),
        ("password.reset", account.as_str(), "account", "success"),
        ("session.end", account.as_str(), "account", "success"),
    ];
    for (action, target, actor, outcome) in by_http {
        let e = of(&events, action)
            .into_iter()
            .find(|e| {
                e["actor"]["kind"] == actor && (target.is_empty() || e["target"]["id"] == target)
            })
            .with_context(|| format!("no {action} by {actor} on {target:?}: {events:#?}"))?;
        assert_eq!(
            e["source"], CLIENT_IP,
            "the client's address by the gateway: {e}"
        );
        assert_eq!(e["outcome"], outcome, "{e}");
        let request_id = e["request_id"].as_str().unwrap_or_default();
        assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{e}");
    }
    // The request id is the one of the request's log lines ("login failed", "signed
    // in", "password reset"), one per request.
    let ids: Vec<&str> = ["login.failure", "login.success", "password.reset"]
        .iter()
        .map(|a| {
            one(&events, a, Some(account.as_str()))
                .map(|e| e["request_id"].as_str().unwrap_or_default())
        })
        .collect::<anyhow::Result<_>>()?;
    for id in &ids {
        assert!(
            logs.contains(&format!("\"request_id\":\"{id}\"")),
            "{id} in the logs"
        );
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
    let revoke = one(&events, "grant.revoke", None)?;
    assert_eq!(revoke["actor"]["id"], c.id.as_str(), "{revoke}");
    assert_eq!(revoke["detail"]["account_id"], account.as_str(), "{revoke}");
    let reset_event = one(&events, "password.reset", Some(account.as_str()))?;
    assert_eq!(reset_event["detail"]["sessions_ended"], 1, "{reset_event}");

    // The filters, and the table form.
    let logins = audit_cli(&p, &["--since", "1h", "--action", "login"])?;
    assert_eq!(logins.len(), 2, "{logins:#?}");
    let mine = audit_cli(
        &p,
        &["--actor", &format!("account:{account}"), "--limit", "2"],
    )?;
    assert_eq!(mine.len(), 2, "{mine:#?}");
    let on_key = audit_cli(&p, &["--target", &format!("api_key:{key_id}")])?;
    assert_eq!(of(&on_key, "api_key.revoke").len(), 1, "{on_key:#?}");
    assert_eq!(on_key[0]["action"], "api_key.revoke", "newest first");
    let table = std::process::Command::new(bin("admit"))
        .args(["audit", "--since", "30m"])
        .envs(p.env().iter().cloned())
        .output()?;
    let table = String::from_utf8(table.stdout)?;
    assert!(table.starts_with("TIME (UTC)"), "{table}");
    for (action, _) in cli_events {
        assert!(table.contains(action), "{action} in {table}");
    }
    assert!(table.contains(&format!("account:{account}")), "{table}");

    // The admin API of the account service: the same log, filtered.
    let url = format!("{}/admin/v1/audit?since=1h&action=password", p.accounts);
    assert_eq!(http().get(&url).send().await?.status(), 401);
    let listed: Value = http()
        .get(&url)
        .bearer_auth(ADMIN)
        .send()
        .await?
        .json()
        .await?;
    let listed = listed["events"].as_array().context("events")?;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["action"], "password.reset");
    assert_eq!(listed[0]["target"]["id"], account.as_str());
    let bad = http()
        .get(format!("{}/admin/v1/audit?since=yesterday", p.accounts))
        .bearer_auth(ADMIN)
        .send()
        .await?;
    assert_eq!(bad.status(), 400);

    // None of the secrets used, nor their digests, is in the table.
    let mut conn = diesel::PgConnection::establish(&p.db_url)?;
    let rows: Vec<Row> = diesel::sql_query(EVERY_VALUE).load(&mut conn)?;
    assert!(
        rows.len() >= cli_events.len() + by_http.len(),
        "{}",
        rows.len()
    );
    let stored: String = rows.into_iter().map(|r| r.t + "\n").collect();
    assert!(
        stored.contains(&account) && stored.contains(CLIENT_IP),
        "the scan reads the rows"
    );
    for s in &secrets {
        assert!(s.len() >= 8, "a secret this short proves nothing: {s}");
        assert!(!stored.contains(s.as_str()), "a secret is in the audit log");
        assert!(
            !stored.contains(&sha256_hex(s)),
            "a secret's digest is in the audit log"
        );
    }

    // Append-only: PostgreSQL refuses to change or remove an event.
    for sql in [
        "UPDATE audit_events SET outcome = 'success'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let e = conn.batch_execute(sql).expect_err(sql).to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    let after = audit_cli(&p, &["--since", "1h", "--limit", "1000"])?;
    assert_eq!(after, events, "nothing changed");
    Ok(())
}

#[tokio::test]
async fn the_embedded_default_audits_on_sqlite() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let c = p.client("http://127.0.0.1:9/cb", &["authorization_code"], false)?;
    let email = format!("{}@example.com", unique("audit"));
    let account = p.user(&email, OLD).await?;
    let mut agent = Agent::new()?;
    assert_eq!(agent.login(&p.accounts, &email, WRONG).await?.status, 401);
    assert_eq!(agent.login(&p.accounts, &email, OLD).await?.status, 303);
    let dir = p
        .db_url
        .trim_start_matches("sqlite://")
        .trim_end_matches("/admit.db");
    let out = std::process::Command::new(bin("admit"))
        .args(["audit", "--since", "1h", "--json", "--data-dir", dir])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "login.success",
            "login.failure",
            "client.create",
            "partner.create"
        ],
        "{events:#?}"
    );
    assert_eq!(events[0]["target"]["id"], account.as_str());
    assert_eq!(events[0]["source"], "127.0.0.1");
    assert_eq!(events[2]["target"]["id"], c.id.as_str());
    let mut conn = diesel::SqliteConnection::establish(&format!("{dir}/admit.db"))?;
    let rows: Vec<Row> = diesel::sql_query(EVERY_VALUE).load(&mut conn)?;
    let stored: String = rows.into_iter().map(|r| r.t + "\n").collect();
    assert!(stored.contains(&account), "the scan reads the rows");
    let secret = c.secret.clone().context("a confidential client")?;
    for s in [OLD, WRONG, secret.as_str()] {
        assert!(!stored.contains(s), "a secret is in the audit log");
        assert!(
            !stored.contains(&sha256_hex(s)),
            "a secret's digest is in the audit log"
        );
    }
    for sql in [
        "UPDATE audit_events SET outcome = 'x'",
        "DELETE FROM audit_events",
    ] {
        let e = conn.batch_execute(sql).expect_err(sql).to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    Ok(())
}

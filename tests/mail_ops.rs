//! Mail operations on the production topology (three binaries, PostgreSQL, Redis, a
//! real SMTP server scripted by the test): temporary SMTP failures retried until
//! every email is delivered, a 550 dead-lettered and retried once the address is
//! accepted (exactly once), a poison message dead-lettered without stalling the
//! queue, and the operator commands (CLI and admin API): dead list, retry ID, retry
//! --all, status by message id and by recipient, resend with its cooldown; sends
//! that wait for an SMTP session past their lease are not sent twice.

use admit_e2e::topology::Topology;
use admit_e2e::{bin, by_recipient, http, metric, unique, CapturedMail, ScriptedSmtp};
use anyhow::Context;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: &str = "mail-ops-admin-token-0123456789";

/// A topology that sends to `smtp` and retries quickly.
fn topology(smtp: &ScriptedSmtp, extra: &[(&str, &str)]) -> anyhow::Result<Topology> {
    let port = smtp.port.to_string();
    let mut env = vec![
        ("ADMIT__MAILER__SMTP__PORT", port.as_str()),
        ("ADMIT__MAILER__RETRY_BASE_MS", "100"),
        ("ADMIT__MAILER__MAX_ATTEMPTS", "10"),
        ("ADMIT__MAILER__CLAIM_IDLE_MS", "1000"),
        ("ADMIT__MAILER__SMTP__TIMEOUT_SECS", "5"),
        ("ADMIT__INTERNAL__ADMIN_TOKEN", ADMIN),
    ];
    env.extend_from_slice(extra);
    Topology::new(&env)
}

/// Runs `admit ARGS --json`; returns whether it succeeded, its JSON (or Null) and
/// its stderr.
fn cli(t: &Topology, args: &[&str]) -> anyhow::Result<(bool, Value, String)> {
    let out = std::process::Command::new(bin("admit"))
        .args(args)
        .arg("--json")
        .envs(t.env.iter().cloned())
        .output()?;
    Ok((
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn cli_ok(t: &Topology, args: &[&str]) -> anyhow::Result<Value> {
    let (ok, v, err) = cli(t, args)?;
    anyhow::ensure!(ok, "admit {args:?} failed: {err}");
    Ok(v)
}

async fn admin_get(url: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await?;
    Ok((
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    ))
}

async fn admin_post(url: &str, token: Option<&str>) -> anyhow::Result<reqwest::Response> {
    let mut req = http().post(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Ok(req.send().await?)
}

/// Polls `probe` until it returns `Some`, for at most `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, probe: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The messages to `recipient`, by the CLI.
fn messages_to(t: &Topology, recipient: &str) -> anyhow::Result<Vec<Value>> {
    let v = cli_ok(t, &["mail", "status", "--recipient", recipient])?;
    Ok(v["messages"].as_array().cloned().unwrap_or_default())
}

fn count_to(mails: &[CapturedMail], to: &str) -> usize {
    by_recipient(mails)
        .get(&to.to_ascii_lowercase())
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn temporary_smtp_failures_are_retried_until_every_email_is_delivered() -> anyhow::Result<()>
{
    let smtp = ScriptedSmtp::start(json!({"tempfail": 6, "tempfail_codes": [421, 451]}))?;
    let t = topology(&smtp, &[])?;
    let account = t.start("admit-account")?;
    let mailer = t.start("admit-mailer")?;
    let emails = t.create_accounts(&account.url, 3, &unique("tf")).await?;

    let mails = smtp.wait_until(Duration::from_secs(60), |m| {
        emails.iter().all(|e| count_to(m, e) >= 1)
    });
    for e in &emails {
        assert_eq!(count_to(&mails, e), 1, "{e}: {mails:?}");
    }
    assert_eq!(
        smtp.answers().tempfail,
        6,
        "the server answered 4xx six times"
    );

    // Recorded: sent, every failed attempt counted in the record and the metrics.
    let rows = eventually(Duration::from_secs(30), "three sent records", || async {
        let mut rows = Vec::new();
        for e in &emails {
            let m = messages_to(&t, e)?;
            if m.len() != 1 || m[0]["status"] != "sent" {
                return Ok(None);
            }
            rows.push(m[0].clone());
        }
        Ok(Some(rows))
    })
    .await?;
    let attempts: i64 = rows.iter().filter_map(|r| r["attempts"].as_i64()).sum();
    let retries = metric(&mailer.url, "mailer_deliveries_total{outcome=\"retry\"}").await?;
    let sent = metric(&mailer.url, "mailer_deliveries_total{outcome=\"sent\"}").await?;
    assert_eq!(sent, 3.0);
    assert!(retries >= 6.0, "retries counted: {retries}");
    assert_eq!(attempts, 3 + retries as i64, "attempts of {rows:?}");
    assert!(rows.iter().all(|r| r["last_error"].is_null()), "{rows:?}");
    Ok(())
}

/// Sends that wait for an SMTP session longer than their lease: 16 emails in one
/// batch over one session to a relay taking 150 ms a message, with a 1 s lease. A
/// send that has not started by half its lease is left for later: once the lease
/// ends, another batch claims the message and would send it too (it did).
#[tokio::test]
async fn sends_waiting_past_their_lease_are_left_for_later_not_sent_twice() -> anyhow::Result<()> {
    let smtp = ScriptedSmtp::start(json!({"delay_ms": 150}))?;
    let t = topology(&smtp, &[("ADMIT__MAILER__SMTP__POOL_SIZE", "1")])?;
    let account = t.start("admit-account")?;
    let emails = t.create_accounts(&account.url, 16, &unique("slow")).await?;
    // Started after the sign-ups, so that its first read takes them all at once.
    let mailer = t.start("admit-mailer")?;
    smtp.wait_until(Duration::from_secs(120), |m| {
        emails.iter().all(|e| count_to(m, e) >= 1)
    });
    // A second copy, were one on its way, arrives within a few sends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = smtp.messages();
    for e in &emails {
        assert_eq!(count_to(&mails, e), 1, "{e}: {mails:?}");
    }
    let late = metric(&mailer.url, "mailer_deliveries_total{outcome=\"deferred\"}").await?;
    assert!(late >= 1.0, "some sends were left for later: {late}");
    Ok(())
}

#[tokio::test]
async fn a_rejected_address_is_dead_lettered_and_retried_once_accepted() -> anyhow::Result<()> {
    let tag = unique("rj");
    let bad = format!("{tag}-1@example.com");
    let smtp = ScriptedSmtp::start(json!({"reject": [bad]}))?;
    let t = topology(&smtp, &[])?;
    let account = t.start("admit-account")?;
    let mailer = t.start("admit-mailer")?;
    let emails = t.create_accounts(&account.url, 3, &tag).await?;

    // The others are delivered; the rejected one is dead with its 550.
    let mails = smtp.wait_until(Duration::from_secs(60), |m| {
        emails
            .iter()
            .filter(|e| **e != bad)
            .all(|e| count_to(m, e) == 1)
    });
    assert_eq!(count_to(&mails, &bad), 0);
    let dead = eventually(Duration::from_secs(30), "the dead record", || async {
        let m = messages_to(&t, &bad)?;
        Ok(m.first().filter(|m| m["status"] == "dead").cloned())
    })
    .await?;
    let id = dead["message_id"]
        .as_str()
        .context("message_id")?
        .to_owned();
    assert_eq!(dead["attempts"], 1, "a 5xx is not retried: {dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("550")),
        "{dead}"
    );

    // The dead letter, by the CLI and the admin API.
    let list = cli_ok(&t, &["mail", "dead", "list"])?;
    let letters = list["dead_letters"].as_array().context("dead_letters")?;
    assert_eq!(letters.len(), 1, "{list}");
    assert_eq!(letters[0]["message_id"], id.as_str());
    assert_eq!(letters[0]["recipient"], bad.as_str());
    assert_eq!(letters[0]["kind"], "welcome");
    assert!(letters[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("550")));
    let dead_url = format!("{}/admin/v1/mail/dead", mailer.url);
    assert_eq!(admin_get(&dead_url, None).await?.0, 401);
    assert_eq!(admin_get(&dead_url, Some("wrong")).await?.0, 401);
    let (status, api) = admin_get(&dead_url, Some(ADMIN)).await?;
    assert_eq!(status, 200);
    assert_eq!(api["dead_letters"][0]["message_id"], id.as_str(), "{api}");
    let status_url = format!("{}/admin/v1/mail/messages/{id}", mailer.url);
    let (status, s) = admin_get(&status_url, Some(ADMIN)).await?;
    assert_eq!((status, s["status"].as_str()), (200, Some("dead")), "{s}");
    let (status, _) = admin_get(
        &format!(
            "{}/admin/v1/mail/messages/{}",
            mailer.url,
            uuid::Uuid::new_v4()
        ),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(status, 404);
    let (status, r) = admin_get(
        &format!("{}/admin/v1/mail/messages?recipient={bad}", mailer.url),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(r["messages"][0]["message_id"], id.as_str(), "{r}");
    let (status, r) = admin_get(
        &format!("{}/admin/v1/mail/messages", mailer.url),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(
        (status, r["field"].as_str()),
        (400, Some("recipient")),
        "{r}"
    );

    // The address is accepted now: a retry delivers it, and a second retry finds
    // nothing to do.
    smtp.set_rules(json!({}))?;
    let retried = cli_ok(&t, &["mail", "dead", "retry", &id])?;
    assert_eq!(
        retried["retried"][0]["message_id"],
        id.as_str(),
        "{retried}"
    );
    let (ok, _, err) = cli(&t, &["mail", "dead", "retry", &id])?;
    assert!(!ok && err.contains("no dead letter"), "{err}");
    let r = admin_post(
        &format!("{}/admin/v1/mail/dead/{id}/retry", mailer.url),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(r.status(), 404);
    smtp.wait_until(Duration::from_secs(30), |m| count_to(m, &bad) >= 1);
    let sent = eventually(Duration::from_secs(30), "the sent record", || async {
        let (_, s) = admin_get(&status_url, Some(ADMIN)).await?;
        Ok((s["status"] == "sent").then_some(s))
    })
    .await?;
    assert_eq!(sent["attempts"], 1, "{sent}");
    // Longer than the claim idle time: nothing comes back to send it again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mails = smtp.messages();
    assert_eq!(count_to(&mails, &bad), 1, "exactly once: {mails:?}");
    assert_eq!(mails.len(), 3);
    assert_eq!(smtp.answers().accepted, 3);
    let list = cli_ok(&t, &["mail", "dead", "list"])?;
    assert_eq!(list["dead_letters"], json!([]), "{list}");
    Ok(())
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_queue_keeps_flowing() -> anyhow::Result<()> {
    let smtp = ScriptedSmtp::start(json!({}))?;
    let t = topology(&smtp, &[])?;
    let account = t.start("admit-account")?;
    let mailer = t.start("admit-mailer")?;

    // Two poison messages ahead of real mail: one that is not an envelope at all,
    // one whose data the mailer cannot send (an address that is none).
    let unrenderable = uuid::Uuid::new_v4().to_string();
    let envelope = json!({
        "id": unrenderable,
        "created_at": "2026-12-03T10:00:00Z",
        "notification": {"kind": "welcome", "to": "not an address", "account_id": "a",
                         "full_name": null, "username": null, "language": "en"}
    });
    let client = redis::Client::open(admit_e2e::redis_url())?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let stream = format!("{}:mail", t.prefix);
    for (id, payload) in [
        ("poison", "{not json".to_owned()),
        (unrenderable.as_str(), envelope.to_string()),
    ] {
        redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("id")
            .arg(id)
            .arg("payload")
            .arg(payload)
            .query_async::<String>(&mut c)
            .await?;
    }
    let emails = t.create_accounts(&account.url, 2, &unique("pm")).await?;
    let mails = smtp.wait_until(Duration::from_secs(60), |m| {
        emails.iter().all(|e| count_to(m, e) == 1)
    });
    assert_eq!(mails.len(), 2, "{mails:?}");

    let dead_url = format!("{}/admin/v1/mail/dead", mailer.url);
    let letters = eventually(Duration::from_secs(30), "two dead letters", || async {
        let (_, v) = admin_get(&dead_url, Some(ADMIN)).await?;
        let l = v["dead_letters"].as_array().cloned().unwrap_or_default();
        Ok((l.len() == 2).then_some(l))
    })
    .await?;
    let undecodable = letters
        .iter()
        .find(|l| l["message_id"].is_null())
        .context("the undecodable letter")?;
    assert!(
        undecodable["reason"]
            .as_str()
            .is_some_and(|r| r.contains("undecodable")),
        "{undecodable}"
    );
    assert!(undecodable["entry"].as_str().is_some_and(|e| !e.is_empty()));
    let bad = letters
        .iter()
        .find(|l| l["message_id"] == unrenderable.as_str())
        .context("the unrenderable letter")?;
    assert_eq!(bad["kind"], "welcome");
    assert!(
        !bad["reason"].as_str().unwrap_or_default().is_empty(),
        "{bad}"
    );
    let (_, s) = admin_get(
        &format!("{}/admin/v1/mail/messages/{unrenderable}", mailer.url),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(s["status"], "dead", "{s}");

    // retry --all (admin API): both go back, fail again, and are dead again; the
    // mail after them still flows.
    let r = admin_post(&format!("{dead_url}/retry"), Some(ADMIN)).await?;
    assert_eq!(r.status(), 200);
    let retried: Value = r.json().await?;
    assert_eq!(
        retried["retried"].as_array().map(Vec::len),
        Some(2),
        "{retried}"
    );
    let later = t
        .create_accounts(&account.url, 1, &unique("pm-later"))
        .await?;
    smtp.wait_until(Duration::from_secs(30), |m| count_to(m, &later[0]) == 1);
    eventually(Duration::from_secs(30), "the poison dead again", || async {
        let (_, v) = admin_get(&dead_url, Some(ADMIN)).await?;
        Ok((v["dead_letters"].as_array().map(Vec::len) == Some(2)).then_some(()))
    })
    .await?;
    assert_eq!(count_to(&smtp.messages(), &later[0]), 1);
    assert_eq!(smtp.messages().len(), 3);
    Ok(())
}

#[tokio::test]
async fn resend_issues_a_new_link_retires_the_old_and_keeps_a_cooldown() -> anyhow::Result<()> {
    let smtp = ScriptedSmtp::start(json!({}))?;
    let t = topology(&smtp, &[("ADMIT__ACCOUNT__RESEND_COOLDOWN_SECS", "3600")])?;
    let account = t.start("admit-account")?;
    let _mailer = t.start("admit-mailer")?;
    let partner = cli_ok(&t, &["partner", "create", "--name", "Velo Lease"])?;
    let partner_id = partner["partner_id"].as_str().context("partner_id")?;
    let key = cli_ok(&t, &["api-key", "create", "--partner", partner_id])?;
    let key = key["api_key"].as_str().context("api_key")?;
    cli_ok(&t, &["plan-code", "add", "--partner", partner_id, "PLAN-A"])?;
    let email = format!("{}@example.com", unique("rs-"));
    let res = http()
        .post(format!("{}/receiver/APIv3/user.create", account.url))
        .bearer_auth(key)
        .json(
            &json!({"user": {"BikePlanCode": "PLAN-A", "FirstName": "Jane", "LastName": "Doe",
                               "Email": email, "Language": "EN", "partner_EmployeeID": "E1"}}),
        )
        .send()
        .await?;
    let created: Value = res.json().await?;
    assert_eq!(created["results"][0]["status"], "created", "{created}");
    let account_id = created["results"][0]["account_id"]
        .as_str()
        .context("account_id")?
        .to_owned();

    let link_of = |m: &CapturedMail| -> anyhow::Result<String> {
        let link = m
            .text
            .split_whitespace()
            .find(|w| w.contains("/password/set?token="))
            .with_context(|| format!("no link in {}", m.text))?;
        Ok(link.replace("https://accounts.example.test", &account.url))
    };
    let first = smtp.wait_until(Duration::from_secs(30), |m| count_to(m, &email) == 1);
    let old = link_of(first.first().context("the welcome email")?)?;

    let resend_url = format!("{}/admin/v1/accounts/{account_id}/resend", account.url);
    assert_eq!(admin_post(&resend_url, None).await?.status(), 401);
    let r = admin_post(&resend_url, Some(ADMIN)).await?;
    assert_eq!(r.status(), 202);
    let resent: Value = r.json().await?;
    assert_eq!(resent["sent_to"], email.as_str(), "{resent}");
    let message_id = resent["message_id"]
        .as_str()
        .context("message_id")?
        .to_owned();

    let both = smtp.wait_until(Duration::from_secs(30), |m| count_to(m, &email) == 2);
    let links: Vec<String> = both.iter().map(link_of).collect::<Result<_, _>>()?;
    let new = links
        .iter()
        .find(|l| **l != old)
        .context("a new link")?
        .clone();
    assert_eq!(
        http().get(&old).send().await?.status(),
        410,
        "the old link is retired"
    );
    assert_eq!(
        http().get(&new).send().await?.status(),
        200,
        "the new link works"
    );
    let status = cli_ok(&t, &["mail", "status", &message_id])?;
    assert_eq!(status["kind"], "set_password", "{status}");

    // Inside the cooldown: refused, by the API and by the CLI, and nothing is sent.
    let r = admin_post(&resend_url, Some(ADMIN)).await?;
    assert_eq!(r.status(), 429);
    let wait: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("Retry-After")?;
    assert!(wait > 3000 && wait <= 3600, "{wait}");
    let body: Value = r.json().await?;
    assert_eq!(body["error"], "TooManyRequestsException", "{body}");
    let (ok, _, err) = cli(&t, &["mail", "resend", &account_id])?;
    assert!(!ok && err.contains("cooldown"), "{err}");

    // An account that has a password, and one that does not exist.
    let own = format!("{}@example.com", unique("rs-own-"));
    let (status, body) =
        admit_e2e::post_account(&http(), &account.url, &admit_e2e::signup(&own)).await?;
    assert_eq!(status, 201, "{body}");
    let own_id = body["account_id"].as_str().context("account_id")?;
    let r = admin_post(
        &format!("{}/admin/v1/accounts/{own_id}/resend", account.url),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(r.status(), 409);
    let (ok, _, err) = cli(&t, &["mail", "resend", "no-such-account"])?;
    assert!(!ok && err.contains("no account"), "{err}");
    let r = admin_post(
        &format!("{}/admin/v1/accounts/no-such-account/resend", account.url),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(r.status(), 404);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count_to(&smtp.messages(), &email), 2, "no third email");
    Ok(())
}

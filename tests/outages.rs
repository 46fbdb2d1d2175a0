//! Outages on the production topology (SECURITY.md, "Faults"): Redis, PostgreSQL and
//! the SMTP relay each stop while sign-ups and batches go on; `/readyz` names the
//! dependency that is down; the metrics count what waits and what is retried.

use admit_e2e::outage::{PrivatePostgres, PrivateRedis};
use admit_e2e::topology::Topology;
use admit_e2e::{by_recipient, free_port, http, redis_url, unique, SmtpCapture, TestDatabase};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// `GET {base}/readyz`: the status and the JSON body.
async fn readyz(base: &str) -> anyhow::Result<(u16, Value)> {
    let res = http().get(format!("{base}/readyz")).send().await?;
    Ok((res.status().as_u16(), res.json().await?))
}

/// Polls `/readyz` until it answers `status` (or 60 s); returns the last body.
async fn wait_ready(base: &str, status: u16) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, body) = readyz(base).await?;
        if s == status {
            return Ok(body);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{base}/readyz still answers {s}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the sample `name` (with its labels, `name{a="b"}`) in `/metrics`.
async fn metric(base: &str, sample: &str) -> anyhow::Result<Option<f64>> {
    let text = http()
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok()).flatten()
    }))
}

/// Polls the sample until `ok` holds (or 30 s); returns the last value.
async fn wait_metric(base: &str, sample: &str, ok: impl Fn(f64) -> bool) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = metric(base, sample).await?;
        if let Some(v) = v.filter(|v| ok(*v)) {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "{base}: {sample} is {v:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A partner with an API key and the plan code `PLAN-A`, and a client_credentials
/// client that may create accounts; returns (api_key, client_id, client_secret).
fn partner(t: &Topology) -> anyhow::Result<(String, String, String)> {
    let p = t.cli(&["partner", "create", "--name", "Outage Partner"])?;
    let id = p["partner_id"].as_str().unwrap_or_default().to_owned();
    let key = t.cli(&["api-key", "create", "--partner", &id])?;
    t.cli(&["plan-code", "add", "--partner", &id, "PLAN-A"])?;
    let c = t.cli(&[
        "client",
        "create",
        "--partner",
        &id,
        "--name",
        "svc",
        "--grant",
        "client_credentials",
        "--scope",
        "accounts:create",
    ])?;
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Ok((
        s(&key["api_key"]),
        s(&c["client_id"]),
        s(&c["client_secret"]),
    ))
}

fn batch_user(email: &str, employee: &str) -> Value {
    json!({"BikePlanCode": "PLAN-A", "FirstName": "Jane", "LastName": "Doe", "Email": email,
           "Language": "EN", "ContractType": "", "partner_EmployeeID": employee, "PersonnelNumber": "A1"})
}

/// `POST /receiver/APIv3/user.create` with `users`.
async fn user_create(
    account: &str,
    api_key: &str,
    users: &[Value],
) -> anyhow::Result<reqwest::Response> {
    Ok(http()
        .post(format!("{account}/receiver/APIv3/user.create"))
        .bearer_auth(api_key)
        .json(&json!({ "users": users }))
        .send()
        .await?)
}

async fn client_credentials(
    oauth: &str,
    id: &str,
    secret: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(http()
        .post(format!("{oauth}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "accounts:create"),
        ])
        .send()
        .await?)
}

/// Every address got exactly one email, and nothing else came.
fn exactly_one_each(t: &Topology, emails: &[String]) -> anyhow::Result<()> {
    let got = t.smtp.wait_for(emails.len(), Duration::from_secs(90));
    // Let redeliveries, if any, arrive before counting.
    std::thread::sleep(Duration::from_millis(1500));
    let got = if got.len() >= emails.len() {
        t.smtp.messages()
    } else {
        got
    };
    let counts = by_recipient(&got);
    for e in emails {
        anyhow::ensure!(
            counts.get(&e.to_ascii_lowercase()).copied() == Some(1),
            "{e}: {:?} emails",
            counts.get(&e.to_ascii_lowercase())
        );
    }
    let ids: HashSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    anyhow::ensure!(ids.len() == got.len(), "a Message-ID arrived twice");
    anyhow::ensure!(
        got.len() == emails.len(),
        "{} emails for {} addresses",
        got.len(),
        emails.len()
    );
    Ok(())
}

#[tokio::test]
async fn redis_stopped_for_ten_seconds_sign_ups_and_batches_succeed_and_mail_flows_after(
) -> anyhow::Result<()> {
    let mut redis = PrivateRedis::start()?;
    let t = Topology::with(TestDatabase::postgres()?, &redis.url, &[])?;
    let (api_key, _, _) = partner(&t)?;
    let account = t.start("admit-account")?;
    let mailer = t.start("admit-mailer")?;
    for p in [&account, &mailer] {
        let body = wait_ready(&p.url, 200).await?;
        assert_eq!(body["checks"]["redis"], "ok", "{}: {body}", p.name);
    }

    redis.down()?;
    let stopped = Instant::now();
    let tag = unique("r");
    let mut emails = t.create_accounts(&account.url, 12, &tag).await?;
    let users: Vec<Value> = (0..5)
        .map(|i| {
            batch_user(
                &format!("batch-{i}-{tag}@example.com"),
                &format!("e{i}-{tag}"),
            )
        })
        .collect();
    let res = user_create(&account.url, &api_key, &users).await?;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await?;
    assert_eq!(body["counts"]["created"], 5, "{body}");
    emails.extend((0..5).map(|i| format!("batch-{i}-{tag}@example.com")));

    // Both services say Redis is what is missing.
    for p in [&account, &mailer] {
        let body = wait_ready(&p.url, 503).await?;
        let redis_check = body["checks"]["redis"].as_str().unwrap_or_default();
        assert!(
            redis_check.contains("cannot reach Redis"),
            "{}: {body}",
            p.name
        );
        assert_eq!(body["checks"]["database"], "ok", "{}: {body}", p.name);
    }
    // The mail waits in the outbox, and the relay counts its failed tries.
    let pending = wait_metric(&account.url, "outbox_pending", |v| v >= 17.0).await?;
    assert_eq!(pending, 17.0, "12 welcome emails and 5 batch emails wait");
    wait_metric(&account.url, "outbox_oldest_pending_age_seconds", |v| {
        v > 0.0
    })
    .await?;
    wait_metric(&account.url, "outbox_relay_failures_total", |v| v >= 1.0).await?;
    assert!(
        t.smtp.messages().is_empty(),
        "nothing is sent while Redis is down"
    );

    if let Some(rest) = Duration::from_secs(10).checked_sub(stopped.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    redis.up()?;
    exactly_one_each(&t, &emails)?;
    for p in [&account, &mailer] {
        wait_ready(&p.url, 200).await?;
    }
    wait_metric(&account.url, "outbox_pending", |v| v == 0.0).await?;
    wait_metric(&account.url, "outbox_oldest_pending_age_seconds", |v| {
        v == 0.0
    })
    .await?;
    let published =
        wait_metric(&account.url, "outbox_relay_published_total", |v| v >= 17.0).await?;
    assert_eq!(published, 17.0);
    Ok(())
}

/// What is in the database: every account has a contact, every contact an account,
/// and every outbox row is addressed to a contact that exists.
fn nothing_partial(db_url: &str) -> anyhow::Result<()> {
    use admit_store::schema::{accounts, contacts, outbox};
    use diesel::dsl::{exists, not};
    use diesel::prelude::*;
    let mut c = diesel::PgConnection::establish(db_url)?;
    let lonely_accounts: i64 = accounts::table
        .filter(not(exists(
            contacts::table.filter(contacts::account_id.eq(accounts::id)),
        )))
        .count()
        .get_result(&mut c)?;
    assert_eq!(lonely_accounts, 0, "accounts without a contact");
    let orphan_contacts: i64 = contacts::table
        .filter(not(exists(
            accounts::table.filter(accounts::id.eq(contacts::account_id)),
        )))
        .count()
        .get_result(&mut c)?;
    assert_eq!(orphan_contacts, 0, "contacts without an account");
    let values: Vec<String> = contacts::table
        .select(contacts::value_normalized)
        .load(&mut c)?;
    let payloads: Vec<String> = outbox::table.select(outbox::payload).load(&mut c)?;
    for p in &payloads {
        assert!(
            values.iter().any(|v| p.contains(v.as_str())),
            "an outbox row for no account: {p}"
        );
    }
    Ok(())
}

fn contact_count(db_url: &str, email: &str) -> anyhow::Result<i64> {
    use admit_store::schema::contacts;
    use diesel::prelude::*;
    let mut c = diesel::PgConnection::establish(db_url)?;
    Ok(contacts::table
        .filter(contacts::value_normalized.eq(email.to_ascii_lowercase()))
        .count()
        .get_result(&mut c)?)
}

/// A 503 with `Retry-After` and the JSON error envelope (or, for pages, HTML).
async fn assert_unavailable(what: &str, res: reqwest::Response, started: Instant, bound: Duration) {
    let took = started.elapsed();
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.text().await.unwrap_or_default();
    assert_eq!(status, 503, "{what}: {body}");
    assert!(
        retry_after
            .as_deref()
            .and_then(|v| v.parse::<u32>().ok())
            .is_some(),
        "{what}: Retry-After {retry_after:?}"
    );
    assert!(took < bound, "{what} took {took:?}, more than {bound:?}");
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert!(
        json["error"] == "ServiceUnavailableException"
            || json["error"] == "temporarily_unavailable",
        "{what}: {body}"
    );
}

#[tokio::test]
async fn postgres_stopped_every_api_answers_503_fast_nothing_partial_and_retries_succeed(
) -> anyhow::Result<()> {
    const CONNECT_TIMEOUT_MS: u64 = 1000;
    let pg = PrivatePostgres::start()?;
    let timeout = CONNECT_TIMEOUT_MS.to_string();
    let t = Topology::with(
        TestDatabase::postgres_on(&pg.admin_url)?,
        &redis_url(),
        &[("ADMIT__DATABASE__CONNECT_TIMEOUT_MS", timeout.as_str())],
    )?;
    let (api_key, client_id, secret) = partner(&t)?;
    let account = t.start("admit-account")?;
    let oauth = t.start("admit-oauth")?;
    let tag = unique("p");
    let before = t
        .create_accounts(&account.url, 3, &format!("before-{tag}"))
        .await?;

    pg.down()?;
    // Generous: the pool's wait for a connection, plus slack for a loaded machine;
    // far below the client's own 60 s timeout, so a hang would show.
    let bound = Duration::from_millis(CONNECT_TIMEOUT_MS) + Duration::from_secs(10);
    let emails: Vec<String> = (0..4)
        .map(|i| format!("down-{i}-{tag}@example.com"))
        .collect();
    for e in &emails {
        let started = Instant::now();
        let res = http()
            .post(format!("{}/account", account.url))
            .json(&admit_e2e::signup(e))
            .send()
            .await?;
        assert_unavailable("POST /account", res, started, bound).await;
    }
    let users = vec![batch_user(
        &format!("batch-{tag}@example.com"),
        &format!("e-{tag}"),
    )];
    let started = Instant::now();
    let res = user_create(&account.url, &api_key, &users).await?;
    assert_unavailable("POST /receiver/APIv3/user.create", res, started, bound).await;
    let started = Instant::now();
    let res = client_credentials(&oauth.url, &client_id, &secret).await?;
    assert_unavailable("POST /oauth/token", res, started, bound).await;
    // A page says so in a page, not in a stack trace.
    let started = Instant::now();
    let res = http()
        .get(format!(
            "{}/password/reset?token={}",
            account.url,
            unique("")
        ))
        .send()
        .await?;
    let status = res.status().as_u16();
    let page = res.text().await?;
    assert!(
        status == 503 && started.elapsed() < bound,
        "GET /password/reset answered {status} after {:?}: {page}",
        started.elapsed()
    );
    assert!(
        page.contains("<html") || page.contains("<!DOCTYPE"),
        "{page}"
    );
    for p in [&account, &oauth] {
        let body = wait_ready(&p.url, 503).await?;
        let db_check = body["checks"]["database"].as_str().unwrap_or_default();
        assert!(
            db_check.contains("cannot reach the database"),
            "{}: {body}",
            p.name
        );
    }

    pg.up()?;
    for p in [&account, &oauth] {
        wait_ready(&p.url, 200).await?;
    }
    nothing_partial(&t.tdb.url)?;
    for e in &before {
        assert_eq!(
            contact_count(&t.tdb.url, e)?,
            1,
            "{e}: kept through the outage"
        );
    }
    for e in &emails {
        assert_eq!(contact_count(&t.tdb.url, e)?, 0, "{e}: a 503 wrote nothing");
    }
    // The same requests, retried, now succeed.
    for e in &emails {
        let (status, body) =
            admit_e2e::post_account(&http(), &account.url, &admit_e2e::signup(e)).await?;
        assert_eq!(status, 201, "{e}: {body}");
        assert_eq!(contact_count(&t.tdb.url, e)?, 1, "{e}");
    }
    let res = user_create(&account.url, &api_key, &users).await?;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await?;
    assert_eq!(body["counts"]["created"], 1, "{body}");
    let res = client_credentials(&oauth.url, &client_id, &secret).await?;
    assert_eq!(res.status(), 200);
    nothing_partial(&t.tdb.url)?;
    Ok(())
}

#[tokio::test]
async fn smtp_down_sign_ups_answer_201_and_mail_is_delivered_when_it_comes_up() -> anyhow::Result<()>
{
    let port = free_port();
    let port_text = port.to_string();
    let t = Topology::new(&[
        ("ADMIT__MAILER__SMTP__PORT", port_text.as_str()),
        ("ADMIT__MAILER__RETRY_BASE_MS", "100"),
        ("ADMIT__MAILER__MAX_ATTEMPTS", "50"),
    ])?;
    let account = t.start("admit-account")?;
    let mailer = t.start("admit-mailer")?;
    let body = wait_ready(&mailer.url, 503).await?;
    let smtp_check = body["checks"]["smtp"].as_str().unwrap_or_default();
    assert!(smtp_check.contains("cannot reach the SMTP relay"), "{body}");
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");

    let emails = t.create_accounts(&account.url, 8, &unique("s")).await?;
    // The mailer tries, fails and will retry; nothing is dead-lettered.
    wait_metric(
        &mailer.url,
        "mailer_deliveries_total{outcome=\"retry\"}",
        |v| v >= 8.0,
    )
    .await?;
    assert_eq!(
        metric(&mailer.url, "mailer_deliveries_total{outcome=\"dead\"}")
            .await?
            .unwrap_or(0.0),
        0.0
    );

    let relay = SmtpCapture::start_on(port)?;
    let got = relay.wait_for(emails.len(), Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(1500));
    let got = if got.len() >= emails.len() {
        relay.messages()
    } else {
        got
    };
    let counts = by_recipient(&got);
    for e in &emails {
        assert_eq!(counts.get(&e.to_ascii_lowercase()).copied(), Some(1), "{e}");
    }
    assert_eq!(got.len(), emails.len());
    let body = wait_ready(&mailer.url, 200).await?;
    assert_eq!(body["checks"]["smtp"], "ok", "{body}");
    wait_metric(
        &mailer.url,
        "mailer_deliveries_total{outcome=\"sent\"}",
        |v| v >= 8.0,
    )
    .await?;
    Ok(())
}

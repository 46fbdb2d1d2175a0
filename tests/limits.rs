//! Per-partner limits (`limits.partner`, `limits.partners.<id>`): request rates shared
//! by the replicas through Redis, the daily account-creation quota that refuses a
//! batch whole, the per-partner batch size, the token endpoint's rate per client, and
//! the in-process limiter of the embedded default.

use admit_e2e::platform::Platform;
use admit_e2e::topology::Topology;
use admit_e2e::{http, signup, unique};
use anyhow::Context;
use serde_json::{json, Value};

struct Partner {
    id: String,
    api_key: String,
}

fn partner(cli: impl Fn(&[&str]) -> anyhow::Result<Value>) -> anyhow::Result<Partner> {
    let p = cli(&["partner", "create", "--name", "Limited Partner"])?;
    let id = p["partner_id"].as_str().context("partner_id")?.to_owned();
    let k = cli(&["api-key", "create", "--partner", &id])?;
    cli(&["plan-code", "add", "--partner", &id, "PLAN-A"])?;
    Ok(Partner {
        api_key: k["api_key"].as_str().context("api_key")?.to_owned(),
        id,
    })
}

/// A confidential client of `partner` for client_credentials: (id, secret).
fn client(
    cli: impl Fn(&[&str]) -> anyhow::Result<Value>,
    partner: &str,
) -> anyhow::Result<(String, String)> {
    let c = cli(&[
        "client",
        "create",
        "--partner",
        partner,
        "--name",
        "Limited App",
        "--redirect-uri",
        "https://partner.example.com/cb",
        "--grant",
        "client_credentials",
        "--scope",
        "accounts:create",
    ])?;
    Ok((
        c["client_id"].as_str().context("client_id")?.to_owned(),
        c["client_secret"].as_str().context("secret")?.to_owned(),
    ))
}

fn users(emails: &[String]) -> Value {
    let list: Vec<Value> = emails
        .iter()
        .map(|e| json!({"BikePlanCode": "PLAN-A", "Email": e, "FirstName": "Q"}))
        .collect();
    json!({ "users": list })
}

/// `user.create` at `base` with `p`'s API key: status, `Retry-After`, body.
async fn user_create(
    base: &str,
    p: &Partner,
    body: &Value,
) -> anyhow::Result<(u16, Option<u64>, Value)> {
    let res = http()
        .post(format!("{base}/receiver/APIv3/user.create"))
        .bearer_auth(&p.api_key)
        .json(body)
        .send()
        .await?;
    answer(res).await
}

async fn answer(res: reqwest::Response) -> anyhow::Result<(u16, Option<u64>, Value)> {
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok((status, retry, res.json().await.unwrap_or(Value::Null)))
}

/// `POST /oauth/token` with client_credentials: status and `Retry-After`.
async fn token(issuer: &str, id: &str, secret: &str) -> anyhow::Result<(u16, Option<u64>, Value)> {
    let res = http()
        .post(format!("{issuer}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    answer(res).await
}

fn emails(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}@example.com")).collect()
}

/// How many accounts have one of `emails` (normalised, lower case).
async fn accounts_with(db_url: &str, emails: &[String]) -> anyhow::Result<usize> {
    let db = admit_store::Db::connect(db_url, 1)?;
    let list: Vec<String> = emails.iter().map(|e| e.to_lowercase()).collect();
    Ok(db
        .run(move |c| admit_store::registrations::accounts_by_email(c, &list))
        .await?
        .len())
}

fn refusals(metrics: &str, partner: &str, kind: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("partner_limit_refusals_total{"))
        .filter(|l| l.contains(&format!("partner_id=\"{partner}\"")))
        .filter(|l| l.contains(&format!("kind=\"{kind}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn replicas_share_a_partners_rate_and_the_daily_quota_refuses_a_batch_whole(
) -> anyhow::Result<()> {
    let t = Topology::new(&[])?;
    let (a, b, c) = (
        partner(|x| t.cli(x))?,
        partner(|x| t.cli(x))?,
        partner(|x| t.cli(x))?,
    );
    let (client_id, secret) = client(|x| t.cli(x), &a.id)?;
    // A: 4 requests at once, then one per 100 s (so none comes back while the test
    // runs); B: the defaults (unlimited); C: 5 accounts a day, 3 users per batch.
    let key = |p: &Partner, k: &str| format!("ADMIT__LIMITS__PARTNERS__{}__{k}", p.id);
    let env = [
        (key(&a, "REQUESTS_PER_SECOND"), "0.01".to_owned()),
        (key(&a, "BURST"), "4".to_owned()),
        (key(&a, "TOKEN_REQUESTS_PER_SECOND"), "0.01".to_owned()),
        (key(&a, "TOKEN_BURST"), "2".to_owned()),
        (key(&c, "DAILY_ACCOUNTS"), "5".to_owned()),
        (key(&c, "BATCH_MAX_USERS"), "3".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let replicas = [
        t.start_with("admit-account", &env)?,
        t.start_with("admit-account", &env)?,
    ];
    let oauth = t.start_with("admit-oauth", &env)?;
    let tag = unique("lim");

    // A's requests alternate between the replicas: 4 pass, then every one is
    // refused. Each replica saw at most 3, under the burst: the count is shared.
    let mut statuses = Vec::new();
    for i in 0..7 {
        let base = &replicas[i % 2].url;
        let (status, retry, body) = if i % 3 == 2 {
            // POST /account with the partner's API key counts against the same rate.
            let res = http()
                .post(format!("{base}/account"))
                .bearer_auth(&a.api_key)
                .json(&signup(&format!("{tag}-a-account-{i}@example.com")))
                .send()
                .await?;
            answer(res).await?
        } else {
            let one = json!({"user": {"BikePlanCode": "PLAN-A", "Email": format!("{tag}-a-{i}@example.com")}});
            user_create(base, &a, &one).await?
        };
        if i >= 4 {
            assert_eq!(status, 429, "request {i}: {body}");
            assert_eq!(body["error"], "RateLimitExceededException", "{body}");
            let retry = retry.context("Retry-After")?;
            assert!((1..=100).contains(&retry), "Retry-After {retry}");
        } else {
            assert!(
                status == 200 || status == 201,
                "request {i}: {status} {body}"
            );
        }
        statuses.push(status);
        // B, at the same time, on both replicas: never limited.
        let (status, _, body) =
            user_create(base, &b, &users(&emails(&format!("{tag}-b{i}"), 2))).await?;
        assert_eq!(status, 200, "partner B: {body}");
    }

    // C: 3 of 5 used, then a batch of 3 new users is refused whole.
    let first = emails(&format!("{tag}-c1"), 3);
    let (status, _, body) = user_create(&replicas[0].url, &c, &users(&first)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["counts"]["created"], 3, "{body}");
    let refused = emails(&format!("{tag}-c2"), 3);
    let (status, retry, body) = user_create(&replicas[1].url, &c, &users(&refused)).await?;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "QuotaExceededException", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("daily_accounts: 5"),
        "{body}"
    );
    let retry = retry.context("Retry-After")?;
    assert!((1..=86_400).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        accounts_with(&t.tdb.url, &refused).await?,
        0,
        "nothing partial"
    );
    // A retry of the first batch creates nothing, so it costs nothing.
    let (status, _, body) = user_create(&replicas[1].url, &c, &users(&first)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["counts"]["created"], 3,
        "the first answer again: {body}"
    );
    // Two fit; then the quota is used up.
    let (status, _, body) = user_create(&replicas[1].url, &c, &users(&refused[..2])).await?;
    assert_eq!(status, 200, "{body}");
    let last = emails(&format!("{tag}-c3"), 1);
    let (status, _, body) = user_create(&replicas[0].url, &c, &users(&last)).await?;
    assert_eq!(status, 429, "{body}");
    assert_eq!(accounts_with(&t.tdb.url, &last).await?, 0);
    // C's batches are at most 3 users; the default (10,000) for the others.
    let (status, _, body) = user_create(&replicas[0].url, &c, &users(&emails(&tag, 4))).await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["field"], "users", "{body}");

    // The token endpoint: 2 tokens at once for A's client, then 429 slow_down.
    for i in 0..3 {
        let (status, retry, body) = token(&oauth.url, &client_id, &secret).await?;
        if i < 2 {
            assert_eq!(status, 200, "{body}");
        } else {
            assert_eq!(status, 429, "{body}");
            assert_eq!(body["error"], "slow_down", "{body}");
            assert!(retry.is_some_and(|r| r >= 1), "Retry-After {retry:?}");
        }
    }

    // Refusals by partner and kind, summed over the replicas.
    let mut rate = 0;
    let mut quota = 0;
    for r in &replicas {
        let m = http()
            .get(format!("{}/metrics", r.url))
            .send()
            .await?
            .text()
            .await?;
        rate += refusals(&m, &a.id, "rate");
        quota += refusals(&m, &c.id, "daily_accounts");
        assert_eq!(refusals(&m, &b.id, "rate"), 0);
    }
    assert_eq!(rate, 3, "{statuses:?}");
    assert_eq!(quota, 2);
    let m = http()
        .get(format!("{}/metrics", oauth.url))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(refusals(&m, &a.id, "token_rate"), 1, "{m}");
    Ok(())
}

#[tokio::test]
async fn the_embedded_default_limits_each_partner_in_process() -> anyhow::Result<()> {
    // Every partner: 3 requests at once, then one per 100 s; 2 tokens at once.
    let p = Platform::embedded(&[
        ("ADMIT__LIMITS__PARTNER__REQUESTS_PER_SECOND", "0.01"),
        ("ADMIT__LIMITS__PARTNER__BURST", "3"),
        ("ADMIT__LIMITS__PARTNER__TOKEN_REQUESTS_PER_SECOND", "0.01"),
        ("ADMIT__LIMITS__PARTNER__TOKEN_BURST", "2"),
    ])?;
    let (a, b) = (partner(|x| p.cli(x))?, partner(|x| p.cli(x))?);
    let tag = unique("emb");
    for (who, name) in [(&a, "a"), (&b, "b")] {
        for i in 0..4 {
            let (status, retry, body) = user_create(
                &p.accounts,
                who,
                &users(&emails(&format!("{tag}-{name}{i}"), 1)),
            )
            .await?;
            if i < 3 {
                assert_eq!(status, 200, "{name} {i}: {body}");
            } else {
                assert_eq!(status, 429, "{name} {i}: {body}");
                assert_eq!(body["error"], "RateLimitExceededException");
                assert!(retry.is_some_and(|r| (1..=100).contains(&r)), "{retry:?}");
            }
        }
    }
    let (client_id, secret) = client(|x| p.cli(x), &a.id)?;
    let mut answered = Vec::new();
    for _ in 0..3 {
        answered.push(token(&p.issuer, &client_id, &secret).await?.0);
    }
    assert_eq!(answered, [200, 200, 429]);
    let m = http()
        .get(format!("{}/metrics", p.accounts))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(refusals(&m, &a.id, "rate"), 1, "{m}");
    assert_eq!(refusals(&m, &b.id, "rate"), 1);
    assert_eq!(refusals(&m, &a.id, "token_rate"), 1);
    Ok(())
}

#[tokio::test]
async fn with_redis_down_a_partners_requests_go_on_unlimited() -> anyhow::Result<()> {
    let mut redis = admit_e2e::outage::PrivateRedis::start()?;
    let t = Topology::with(admit_e2e::TestDatabase::postgres()?, &redis.url, &[])?;
    let a = partner(|x| t.cli(x))?;
    let account = t.start_with(
        "admit-account",
        &[
            ("ADMIT__LIMITS__PARTNER__REQUESTS_PER_SECOND", "0.01"),
            ("ADMIT__LIMITS__PARTNER__BURST", "2"),
        ],
    )?;
    let tag = unique("down");
    let mut n = 0;
    let mut push = || {
        n += 1;
        users(&emails(&format!("{tag}-{n}"), 1))
    };
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(user_create(&account.url, &a, &push()).await?.0);
    }
    assert_eq!(seen, [200, 200, 429], "limited while Redis is up");
    redis.down()?;
    for i in 0..3 {
        let (status, _, body) = user_create(&account.url, &a, &push()).await?;
        assert_eq!(status, 200, "request {i} with Redis down: {body}");
    }
    assert!(
        account
            .log_text()
            .contains("rate limiter: Redis unavailable"),
        "a warning says the limit is not enforced"
    );
    redis.up()?;
    // The limiter leaves a failed Redis alone for a second, then counts again (the
    // budget kept in Redis was used up before the stop).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (status, _, body) = user_create(&account.url, &a, &push()).await?;
    assert_eq!(status, 429, "limited again once Redis is back: {body}");
    Ok(())
}

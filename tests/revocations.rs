//! Revocation at once on every replica (production topology: PostgreSQL, Redis, two
//! `admit-oauth` replicas). Each replica answers introspection from its in-memory
//! view of what is revoked while its lease holds (admit_runtime::revocations); a
//! token revoked through one replica, a grant ended by refresh-token reuse or by a
//! password reset in the account service, is inactive on the other in the very next
//! request. A replica cut off from Redis reads the database instead, never answers
//! active for a revoked token, and trusts its memory again once Redis is back.

use admit_e2e::outage::PrivateRedis;
use admit_e2e::platform::{hidden_fields, Agent, Client, Platform};
use admit_e2e::{free_port, http, metric, unique, Proc, SmtpCapture};
use anyhow::Context;
use serde_json::Value;
use std::time::{Duration, Instant};

const ALL_GRANTS: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];
const OLD: &str = "horse-battery-9";
const NEW: &str = "staple-correct-7";

/// The platform (account service and replica A) and a second oauth replica B on
/// the same database and Redis (or `b_redis`).
struct Replicas {
    p: Platform,
    b: Proc,
    c: Client,
    internal: String,
    _logs: tempfile::TempDir,
}

impl Replicas {
    fn a(&self) -> &str {
        &self.p.issuer
    }

    fn b(&self) -> &str {
        &self.b.url
    }

    /// Another admit-oauth on this platform's database, with `extra` set.
    fn replica(&self, extra: &[(&str, String)]) -> anyhow::Result<Proc> {
        let mut env: Vec<(String, String)> = self.p.env().to_vec();
        let mut extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        extra.push(("ADMIT__OAUTH__PORT".into(), free_port().to_string()));
        env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        env.extend(extra);
        Proc::start("admit-oauth", &[], &env, self._logs.path())
    }
}

async fn replicas(extra: &[(&str, &str)]) -> anyhow::Result<Replicas> {
    let internal = unique("it_");
    // Three tests of this file run at once, each with four processes: small pools,
    // or together they pass the server's max_connections (r2d2 opens a pool's
    // connections when it starts).
    let mut all = vec![
        ("ADMIT__INTERNAL__TOKEN", internal.as_str()),
        ("ADMIT__DATABASE__MAX_CONNECTIONS", "4"),
    ];
    all.extend_from_slice(extra);
    let p = Platform::production(&all)?;
    let logs = tempfile::tempdir()?;
    let mut env: Vec<(String, String)> = p.env().to_vec();
    env.retain(|(k, _)| k != "ADMIT__OAUTH__PORT");
    env.push(("ADMIT__OAUTH__PORT".into(), free_port().to_string()));
    let b = Proc::start("admit-oauth", &[], &env, logs.path())?;
    let c = p.client("http://127.0.0.1:9/cb", ALL_GRANTS, false)?;
    Ok(Replicas {
        p,
        b,
        c,
        internal,
        _logs: logs,
    })
}

async fn post(
    base: &str,
    path: &str,
    c: &Client,
    form: &[(&str, &str)],
) -> anyhow::Result<(u16, Value)> {
    let res = http()
        .post(format!("{base}{path}"))
        .basic_auth(&c.id, c.secret.as_deref())
        .form(form)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn active(base: &str, c: &Client, token: &str) -> anyhow::Result<bool> {
    let (status, body) = post(base, "/oauth/introspect", c, &[("token", token)]).await?;
    anyhow::ensure!(status == 200, "introspection answered {status}: {body}");
    Ok(body["active"] == true)
}

async fn revoke(base: &str, c: &Client, token: &str) -> anyhow::Result<()> {
    let (status, body) = post(base, "/oauth/revoke", c, &[("token", token)]).await?;
    anyhow::ensure!(status == 200, "revocation answered {status}: {body}");
    Ok(())
}

async fn client_token(base: &str, c: &Client) -> anyhow::Result<String> {
    let (status, body) = post(
        base,
        "/oauth/token",
        c,
        &[("grant_type", "client_credentials")],
    )
    .await?;
    anyhow::ensure!(
        status == 200,
        "client_credentials answered {status}: {body}"
    );
    Ok(body["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned())
}

/// A grant for `account` (a code minted by the internal endpoint, exchanged on
/// `base`): its access and refresh tokens.
async fn user_tokens(r: &Replicas, base: &str, account: &str) -> anyhow::Result<(String, String)> {
    let minted: Value = http()
        .post(format!("{base}/internal/v1/codes"))
        .bearer_auth(&r.internal)
        .json(&serde_json::json!({"client_id": r.c.id, "account_id": account}))
        .send()
        .await?
        .json()
        .await?;
    let code = minted["code"].as_str().context("minted code")?;
    let (status, body) = post(
        base,
        "/oauth/token",
        &r.c,
        &[("grant_type", "authorization_code"), ("code", code)],
    )
    .await?;
    anyhow::ensure!(status == 200, "code exchange answered {status}: {body}");
    Ok((
        body["access_token"].as_str().context("access")?.to_owned(),
        body["refresh_token"]
            .as_str()
            .context("refresh")?
            .to_owned(),
    ))
}

/// Waits until `base` trusts its in-memory view.
async fn trusted(base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(base, "revocation_view_trusted").await? != 1.0 {
        anyhow::ensure!(Instant::now() < deadline, "{base} never trusted its view");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn from_memory(base: &str) -> anyhow::Result<f64> {
    metric(
        base,
        "introspection_revocation_checks_total{source=\"memory\"}",
    )
    .await
}

#[tokio::test]
async fn a_token_revoked_on_one_replica_is_inactive_on_the_other_in_the_next_request(
) -> anyhow::Result<()> {
    let r = replicas(&[]).await?;
    trusted(r.a()).await?;
    trusted(r.b()).await?;
    let before = from_memory(r.b()).await?;
    for i in 0..40 {
        // Alternate which replica revokes and which is asked.
        let (revoker, other) = if i % 2 == 0 {
            (r.a(), r.b())
        } else {
            (r.b(), r.a())
        };
        let token = client_token(revoker, &r.c).await?;
        assert!(
            active(other, &r.c, &token).await?,
            "round {i}: live at first"
        );
        assert!(active(other, &r.c, &token).await?, "round {i}: live again");
        revoke(revoker, &r.c, &token).await?;
        assert!(
            !active(other, &r.c, &token).await?,
            "round {i}: a token revoked on {revoker} is still active on {other}"
        );
        assert!(!active(revoker, &r.c, &token).await?, "round {i}");
    }
    // Revoking a refresh token ends its grant: its access tokens too, everywhere.
    let account =
        r.p.user(&format!("{}@example.com", unique("rv")), OLD)
            .await?;
    for i in 0..10 {
        let (access, refresh) = user_tokens(&r, r.a(), &account).await?;
        assert!(active(r.b(), &r.c, &access).await?, "round {i}");
        revoke(r.a(), &r.c, &refresh).await?;
        assert!(
            !active(r.b(), &r.c, &access).await?,
            "round {i}: the access token of a revoked grant is still active"
        );
    }
    // And the answers came from memory, not from the database.
    let after = from_memory(r.b()).await?;
    assert!(
        after - before >= 80.0,
        "replica B checked {} revocations in memory",
        after - before
    );
    Ok(())
}

async fn refresh(base: &str, c: &Client, token: &str) -> anyhow::Result<(u16, Value)> {
    post(
        base,
        "/oauth/token",
        c,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

#[tokio::test]
async fn refresh_token_reuse_and_a_password_reset_end_the_grant_on_every_replica(
) -> anyhow::Result<()> {
    let smtp = SmtpCapture::start()?;
    let mut r = replicas(&[]).await?;
    r.p.start_mailer(&smtp)?;
    trusted(r.a()).await?;
    trusted(r.b()).await?;
    let email = format!("{}@example.com", unique("rv"));
    let account = r.p.user(&email, OLD).await?;

    // Reuse of a spent refresh token on A: both access tokens of the grant inactive
    // on B at once.
    for i in 0..5 {
        let (first, spent) = user_tokens(&r, r.a(), &account).await?;
        let (status, body) = refresh(r.a(), &r.c, &spent).await?;
        assert_eq!(status, 200, "{body}");
        let second = body["access_token"].as_str().context("access")?.to_owned();
        assert!(active(r.b(), &r.c, &first).await?);
        assert!(active(r.b(), &r.c, &second).await?);
        let (status, body) = refresh(r.a(), &r.c, &spent).await?;
        assert_eq!(status, 400, "round {i}: reuse refused: {body}");
        assert!(
            !active(r.b(), &r.c, &second).await?,
            "round {i}: reuse did not end the grant on B"
        );
        assert!(!active(r.b(), &r.c, &first).await?, "round {i}");
        assert!(!active(r.a(), &r.c, &second).await?, "round {i}");
    }

    // A password reset in the account service ends every grant of the account.
    let (access, refresh_token) = user_tokens(&r, r.b(), &account).await?;
    assert!(active(r.a(), &r.c, &access).await?);
    assert!(active(r.b(), &r.c, &access).await?);
    let mut agent = Agent::new()?;
    let page = agent
        .get(&format!("{}/password/forgot", r.p.accounts))
        .await?;
    assert_eq!(page.status, 200);
    let mut form = hidden_fields(&page.body);
    form.push(("email".into(), email.clone()));
    let asked = agent
        .post(&format!("{}/password/forgot", r.p.accounts), &form)
        .await?;
    assert_eq!(asked.status, 200, "{}", asked.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    let link = loop {
        let link = smtp
            .messages()
            .into_iter()
            .filter(|m| m.to.eq_ignore_ascii_case(&email))
            .find_map(|m| {
                m.text
                    .split_whitespace()
                    .find(|w| w.contains("/password/reset?token="))
                    .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_owned())
            });
        if let Some(link) = link {
            break link;
        }
        anyhow::ensure!(Instant::now() < deadline, "no reset email");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let page = agent.get(&link).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut form = hidden_fields(&page.body);
    form.push(("password".into(), NEW.into()));
    form.push(("password_confirm".into(), NEW.into()));
    let done = agent
        .post(&format!("{}/password/reset", r.p.accounts), &form)
        .await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        !active(r.b(), &r.c, &access).await?,
        "a password reset did not end the grant on B at once"
    );
    assert!(!active(r.a(), &r.c, &access).await?);
    let (status, _) = refresh(r.a(), &r.c, &refresh_token).await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test]
async fn a_replica_cut_off_from_redis_never_answers_active_for_a_revoked_token(
) -> anyhow::Result<()> {
    let mut redis = PrivateRedis::start()?;
    let r = replicas(&[("ADMIT__REDIS__URL", redis.url.as_str())]).await?;
    trusted(r.a()).await?;
    trusted(r.b()).await?;
    let t1 = client_token(r.a(), &r.c).await?;
    let t2 = client_token(r.a(), &r.c).await?;
    assert!(active(r.b(), &r.c, &t1).await?);
    assert!(active(r.b(), &r.c, &t2).await?);

    // Redis goes away: both replicas stop trusting memory within their lease; a
    // revocation still answers (once every lease has run out) and is in force.
    redis.down()?;
    let began = Instant::now();
    revoke(r.a(), &r.c, &t1).await?;
    assert!(
        began.elapsed() >= Duration::from_millis(1000),
        "with Redis down the revoker waits out the leases ({:?})",
        began.elapsed()
    );
    assert_eq!(metric(r.b(), "revocation_view_trusted").await?, 0.0);
    assert!(!active(r.b(), &r.c, &t1).await?, "revoked while cut off");
    assert!(
        active(r.b(), &r.c, &t2).await?,
        "the database answers the rest"
    );

    // Redis is back: B catches up and trusts memory again; what was revoked while it
    // was away stays revoked, and a new revocation reaches it at once.
    redis.up()?;
    trusted(r.b()).await?;
    trusted(r.a()).await?;
    let before = from_memory(r.b()).await?;
    assert!(!active(r.b(), &r.c, &t1).await?);
    assert!(active(r.b(), &r.c, &t2).await?);
    revoke(r.a(), &r.c, &t2).await?;
    assert!(!active(r.b(), &r.c, &t2).await?);
    assert!(from_memory(r.b()).await? - before >= 3.0);

    // A revoker that cannot reach Redis while the replicas can: it waits out every
    // lease, and the replicas, which catch up from the database more often than
    // that, have the revocation by then.
    let cut_off = r.replica(&[(
        "ADMIT__REDIS__URL",
        format!("redis://127.0.0.1:{}", free_port()),
    )])?;
    for i in 0..3 {
        let t = client_token(r.a(), &r.c).await?;
        assert!(active(r.b(), &r.c, &t).await?);
        let began = Instant::now();
        revoke(&cut_off.url, &r.c, &t).await?;
        assert!(began.elapsed() >= Duration::from_millis(1000), "round {i}");
        assert!(
            !active(r.b(), &r.c, &t).await?,
            "round {i}: a revocation whose poke was never posted is active on B"
        );
        assert!(!active(r.a(), &r.c, &t).await?, "round {i}");
    }
    assert_eq!(metric(r.b(), "revocation_view_trusted").await?, 1.0);
    Ok(())
}

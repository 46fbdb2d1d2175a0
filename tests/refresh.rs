//! `grant_type=refresh_token` under the rules of RFC 9700 §4.14.2, on both backends
//! (on PostgreSQL the refreshes that win are written in groups, one call of the
//! database function `rotate_refresh` each; SQLite, every refresh that does not win,
//! and every refresh of a group that could not be written take the transaction):
//! parallel refreshes of one token have one winner and the losers' reuse revokes the
//! whole family, on two replicas at once; another client's token is refused and stays
//! unspent; an expired token is refused; the scope narrows but does not widen; a
//! group that failed or lost its answer changes none of this.

use admit_e2e::platform::{query_of, Agent, Client, Platform};
use admit_e2e::{bin, free_port, http, unique, Proc};
use anyhow::Context;
use diesel::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const PASSWORD: &str = "horse-battery-9";
const GRANTS: &[&str] = &["authorization_code", "refresh_token"];
// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A signed-in user of `p` and a client `c` it authorized.
struct Setup {
    p: Platform,
    c: Client,
    agent: Agent,
}

async fn setup(p: Platform) -> anyhow::Result<Setup> {
    let c = p.client("http://127.0.0.1:9/cb", GRANTS, false)?;
    let email = format!("{}@example.com", unique("u"));
    p.user(&email, PASSWORD).await?;
    let mut agent = Agent::new()?;
    let res = agent.login(&p.accounts, &email, PASSWORD).await?;
    anyhow::ensure!(res.status == 303, "login: {}", res.body);
    Ok(Setup { p, c, agent })
}

/// A fresh grant of "openid email" to `s.c`: its first refresh token.
async fn first_refresh_token(s: &mut Setup) -> anyhow::Result<String> {
    let q = [
        ("client_id", s.c.id.as_str()),
        ("redirect_uri", s.c.redirect_uri.as_str()),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "st"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let url = format!(
        "{}/oauth/authorize?{}",
        s.p.issuer,
        serde_urlencoded::to_string(q)?
    );
    let loc = s.agent.authorize(&url).await?;
    let code = query_of(&loc).get("code").cloned().context("code")?;
    let res = http()
        .post(format!("{}/oauth/token", s.p.issuer))
        .basic_auth(&s.c.id, s.c.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", s.c.redirect_uri.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    anyhow::ensure!(res.status() == 200, "redeem answered {}", res.status());
    let body: Value = res.json().await?;
    Ok(body["refresh_token"]
        .as_str()
        .context("refresh_token")?
        .to_owned())
}

/// `POST issuer/oauth/token grant_type=refresh_token` as client `c`.
async fn refresh(
    issuer: &str,
    c: &Client,
    token: &str,
    scope: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let res = http()
        .post(format!("{issuer}/oauth/token"))
        .basic_auth(&c.id, c.secret.as_deref())
        .form(&form)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn active(issuer: &str, c: &Client, token: &str) -> anyhow::Result<bool> {
    let res: Value = http()
        .post(format!("{issuer}/oauth/introspect"))
        .basic_auth(&c.id, c.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await?
        .json()
        .await?;
    Ok(res["active"] == true)
}

fn rotated(status: u16, body: &Value) -> anyhow::Result<String> {
    anyhow::ensure!(status == 200, "refresh answered {status}: {body}");
    Ok(body["refresh_token"]
        .as_str()
        .with_context(|| format!("no refresh_token in {body}"))?
        .to_owned())
}

fn invalid_grant(what: &str, status: u16, body: &Value) {
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{what}: {body}"
    );
}

/// The stored refresh token: (used, expires in the future).
async fn stored(p: &Platform, token: &str) -> anyhow::Result<Option<(bool, bool)>> {
    use admit_store::schema::refresh_tokens::dsl::*;
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let db = admit_store::Db::connect(&p.db_url, 1)?;
    let row = db
        .run(move |c| {
            Ok(refresh_tokens
                .find(digest)
                .select((used_at, expires_at))
                .first::<(Option<chrono::NaiveDateTime>, chrono::NaiveDateTime)>(c)
                .optional()?)
        })
        .await?;
    Ok(row.map(|(used, exp)| (used.is_some(), exp > admit_store::now())))
}

/// Moves a stored refresh token's expiry into the past.
async fn expire(p: &Platform, token: &str) -> anyhow::Result<()> {
    use admit_store::schema::refresh_tokens::dsl::*;
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let db = admit_store::Db::connect(&p.db_url, 1)?;
    let n = db
        .run(move |c| {
            Ok(diesel::update(refresh_tokens.find(digest))
                .set(expires_at.eq(admit_store::now() - chrono::Duration::hours(1)))
                .execute(c)?)
        })
        .await?;
    anyhow::ensure!(n == 1, "no stored token to expire");
    Ok(())
}

/// The `grant.revoke` events with reason `replayed` (production topology).
fn replay_revocations(p: &Platform) -> anyhow::Result<Vec<Value>> {
    let out = std::process::Command::new(bin("admit"))
        .args(["audit", "--action", "grant.revoke", "--json"])
        .envs(p.env().iter().cloned())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "admit audit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut events = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let e: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        if e["action"] == "grant.revoke" && e["detail"]["reason"] == "replayed" {
            events.push(e);
        }
    }
    Ok(events)
}

/// Another client's token, an expired one, and scope narrowing.
async fn the_rules(p: Platform) -> anyhow::Result<()> {
    let mut s = setup(p).await?;
    let other = s.p.client("http://127.0.0.1:9/other", GRANTS, false)?;
    let issuer = s.p.issuer.clone();

    // Another client's token: refused, and left unspent for its own client.
    let rt = first_refresh_token(&mut s).await?;
    let (status, body) = refresh(&issuer, &other, &rt, None).await?;
    invalid_grant("another client's token", status, &body);
    assert_eq!(
        stored(&s.p, &rt).await?,
        Some((false, true)),
        "left unspent"
    );
    let (status, body) = refresh(&issuer, &s.c, &rt, None).await?;
    let rt = rotated(status, &body)?;
    assert_eq!(body["scope"], "openid email", "{body}");
    assert!(active(&issuer, &s.c, body["access_token"].as_str().context("at")?).await?);

    // A rotation chain: each token works once, the next one after it.
    let mut rt = rt;
    for _ in 0..5 {
        let (status, body) = refresh(&issuer, &s.c, &rt, None).await?;
        let next = rotated(status, &body)?;
        assert_eq!(stored(&s.p, &rt).await?.map(|s| s.0), Some(true), "spent");
        rt = next;
    }

    // Narrowing: the access token has less; widening is refused.
    let (status, body) = refresh(&issuer, &s.c, &rt, Some("email")).await?;
    let rt = rotated(status, &body)?;
    assert_eq!(body["scope"], "email", "{body}");
    let (status, body) = refresh(&issuer, &s.c, &rt, Some("email profile")).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );

    // An expired token (the rotated one of a fresh grant): refused.
    let first = first_refresh_token(&mut s).await?;
    let (status, body) = refresh(&issuer, &s.c, &first, None).await?;
    let expired = rotated(status, &body)?;
    expire(&s.p, &expired).await?;
    let (status, body) = refresh(&issuer, &s.c, &expired, None).await?;
    invalid_grant("an expired token", status, &body);
    Ok(())
}

#[tokio::test]
async fn refresh_rules_hold_on_postgres() -> anyhow::Result<()> {
    the_rules(Platform::production(&[])?).await
}

#[tokio::test]
async fn refresh_rules_hold_on_sqlite() -> anyhow::Result<()> {
    the_rules(Platform::embedded(&[])?).await
}

/// Fires `n` refreshes of `token` at once, alternately at each of `issuers`; returns
/// the answers.
async fn race(
    issuers: &[String],
    c: &Client,
    token: &str,
    n: usize,
) -> anyhow::Result<Vec<(u16, Value)>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let issuer = issuers[i % issuers.len()].clone();
            let (c, token) = (c.clone(), token.to_owned());
            tokio::spawn(async move { refresh(&issuer, &c, &token, None).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await??);
    }
    Ok(answers)
}

async fn parallel_refreshes(p: Platform, replicas: usize) -> anyhow::Result<()> {
    let mut s = setup(p).await?;
    let mut issuers = vec![s.p.issuer.clone()];
    let logs = tempfile::tempdir()?;
    let mut extra: Vec<Proc> = Vec::new();
    for _ in 1..replicas {
        let mut env = s.p.env().to_vec();
        env.retain(|(k, _)| k != "ADMIT__OAUTH__PORT");
        env.push(("ADMIT__OAUTH__PORT".into(), free_port().to_string()));
        let proc = Proc::start("admit-oauth", &[], &env, logs.path())?;
        issuers.push(proc.url.clone());
        extra.push(proc);
    }
    const N: usize = 16;
    for round in 0..4 {
        let rt = first_refresh_token(&mut s).await?;
        // One ordinary rotation first, on the last replica.
        let last = issuers.last().context("an issuer")?;
        let (status, body) = refresh(last, &s.c, &rt, None).await?;
        let rt = rotated(status, &body)?;
        let before = if s.p.mode == "production" {
            replay_revocations(&s.p)?.len()
        } else {
            0
        };

        let answers = race(&issuers, &s.c, &rt, N).await?;
        let mut winners = Vec::new();
        for (status, body) in &answers {
            match status {
                200 => winners.push(body.clone()),
                400 => invalid_grant("a losing refresh", *status, body),
                other => anyhow::bail!("round {round}: unexpected {other}: {body}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of {N} parallel refreshes wins ({}): {answers:?}",
            s.p.mode
        );
        let won = &winners[0];
        let next = won["refresh_token"].as_str().context("refresh_token")?;
        let access = won["access_token"].as_str().context("access_token")?;
        // The losers presented a spent token: that is reuse, and it revoked the
        // family, the winner's new tokens too.
        for issuer in &issuers {
            assert!(
                !active(issuer, &s.c, access).await?,
                "round {round}: the winner's access token is revoked ({issuer})"
            );
        }
        let (status, body) = refresh(&s.p.issuer, &s.c, next, None).await?;
        invalid_grant("the winner's new refresh token", status, &body);
        if s.p.mode == "production" {
            let after = replay_revocations(&s.p)?.len();
            assert!(
                after > before,
                "round {round}: the reuse is audited as a grant.revoke (replayed)"
            );
        }
    }
    drop(extra);
    Ok(())
}

#[tokio::test]
async fn parallel_refreshes_of_one_token_on_two_replicas_have_one_winner_and_revoke_the_family(
) -> anyhow::Result<()> {
    parallel_refreshes(Platform::production(&[])?, 2).await
}

#[tokio::test]
async fn parallel_refreshes_of_one_token_have_one_winner_on_sqlite() -> anyhow::Result<()> {
    parallel_refreshes(Platform::embedded(&[])?, 1).await
}

/// Runs `sql` on the platform's PostgreSQL database.
async fn execute(p: &Platform, sql: &'static str) -> anyhow::Result<()> {
    let db = admit_store::Db::connect(&p.db_url, 1)?;
    db.run(move |c| {
        let admit_store::AnyConnection::Pg(pg) = c else {
            return Err(admit_store::StoreError::Internal("not PostgreSQL".into()));
        };
        diesel::sql_query(sql).execute(pg)?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// A refresh rotates, its successor is stored and works, and the reuse of the spent
/// token revokes the family; `group` says what became of the refresh's group.
async fn rotates_and_reuse_revokes(s: &mut Setup, group: &str) -> anyhow::Result<()> {
    let rt = first_refresh_token(s).await?;
    let issuer = s.p.issuer.clone();
    let before = replay_revocations(&s.p)?.len();
    let (status, body) = refresh(&issuer, &s.c, &rt, None).await?;
    let next = rotated(status, &body)?;
    assert_eq!(
        stored(&s.p, &rt).await?,
        Some((true, true)),
        "{group}: old token spent"
    );
    assert_eq!(
        stored(&s.p, &next).await?,
        Some((false, true)),
        "{group}: successor stored"
    );
    let access = body["access_token"].as_str().context("access_token")?;
    assert!(
        active(&issuer, &s.c, access).await?,
        "{group}: the grant lives"
    );
    assert_eq!(
        replay_revocations(&s.p)?.len(),
        before,
        "{group}: no replay seen"
    );
    // The successor rotates in its turn.
    let (status, body) = refresh(&issuer, &s.c, &next, None).await?;
    let third = rotated(status, &body)?;
    // Reuse of the spent token revokes the family.
    let (status, body) = refresh(&issuer, &s.c, &rt, None).await?;
    invalid_grant("a replayed token", status, &body);
    assert!(
        !active(&issuer, &s.c, access).await?,
        "{group}: the family is revoked"
    );
    let (status, body) = refresh(&issuer, &s.c, &third, None).await?;
    invalid_grant("the successor of a replayed token", status, &body);
    Ok(())
}

/// A group that cannot be written (here: the database function is gone) writes
/// nothing, and each of its refreshes takes the transaction.
#[tokio::test]
async fn a_refresh_whose_group_cannot_be_written_takes_the_transaction() -> anyhow::Result<()> {
    let mut s = setup(Platform::production(&[])?).await?;
    execute(
        &s.p,
        "DROP FUNCTION rotate_refresh(TEXT[], TEXT[], TEXT[], TIMESTAMP, TIMESTAMP)",
    )
    .await?;
    rotates_and_reuse_revokes(&mut s, "a failed group").await
}

/// A group that committed but whose answer was lost (here: its rows cannot be read,
/// the function answering text where a number is expected): each refresh's
/// transaction finds its successor stored, so the refresh won; it is not taken for a
/// replay, and the grant lives on.
#[tokio::test]
async fn a_refresh_whose_group_committed_but_lost_its_answer_still_wins() -> anyhow::Result<()> {
    let mut s = setup(Platform::production(&[])?).await?;
    execute(
        &s.p,
        "ALTER FUNCTION rotate_refresh(TEXT[], TEXT[], TEXT[], TIMESTAMP, TIMESTAMP) \
         RENAME TO rotate_refresh_committed",
    )
    .await?;
    execute(
        &s.p,
        "CREATE FUNCTION rotate_refresh(a TEXT[], b TEXT[], c TEXT[], d TIMESTAMP, \
         e TIMESTAMP) RETURNS TABLE (i TEXT, id TEXT, client_id TEXT, account_id TEXT, \
         scope TEXT, nonce TEXT, auth_time TIMESTAMP, created_at TIMESTAMP, \
         expires_at TIMESTAMP, revoked_at TIMESTAMP) LANGUAGE sql AS $$ \
         SELECT r.i::TEXT || ' (unreadable)', r.id, r.client_id, r.account_id, r.scope, \
         r.nonce, r.auth_time, r.created_at, r.expires_at, r.revoked_at \
         FROM rotate_refresh_committed(a, b, c, d, e) AS r $$",
    )
    .await?;
    rotates_and_reuse_revokes(&mut s, "a lost answer").await
}

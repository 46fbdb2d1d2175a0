//! `account_type: test` (SPEC.md §3): 24 hours after its creation a test account is
//! deleted with everything attached to it. The platform runs with its clock 25 hours
//! back (libfaketime) while the account gathers rows in every table (a session from
//! `auto_sign_in`, a partner membership and link from `user.create`, a grant with its
//! code, refresh token and consent, mail records); then one purge pass on the real
//! clock removes them, counted table by table, and leaves a standard account alone.

use admit_e2e::platform::{hidden_fields, query_of, Agent, Platform};
use admit_e2e::{faked_clock, http, real_clock, unique, SmtpCapture};
use admit_store::schema::{
    accounts, auth_codes, consents, contacts, grants, mail_messages, memberships, outbox,
    password_tokens, refresh_tokens, sessions,
};
use admit_store::Db;
use anyhow::Context;
use diesel::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SESSION_COOKIE: &str = "__Host-admit_session";
// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The rows of every table attached to `account_id` (reached by `email` for mail).
async fn attached(
    db: &Db,
    account_id: &str,
    email: &str,
) -> anyhow::Result<BTreeMap<&'static str, i64>> {
    let (a, e) = (account_id.to_owned(), email.to_owned());
    Ok(db
        .run(move |c| {
            let g: Vec<String> = grants::table
                .filter(grants::account_id.eq(&a))
                .select(grants::id)
                .load(c)?;
            let m: Vec<String> = mail_messages::table
                .filter(mail_messages::recipient.eq(&e))
                .select(mail_messages::id)
                .load(c)?;
            let mut n = BTreeMap::new();
            n.insert(
                "accounts",
                accounts::table
                    .filter(accounts::id.eq(&a))
                    .count()
                    .get_result(c)?,
            );
            n.insert(
                "contacts",
                contacts::table
                    .filter(contacts::account_id.eq(&a))
                    .count()
                    .get_result(c)?,
            );
            n.insert(
                "sessions",
                sessions::table
                    .filter(sessions::account_id.eq(&a))
                    .count()
                    .get_result(c)?,
            );
            n.insert("grants", g.len() as i64);
            n.insert(
                "auth_codes",
                auth_codes::table
                    .filter(auth_codes::grant_id.eq_any(&g))
                    .count()
                    .get_result(c)?,
            );
            n.insert(
                "refresh_tokens",
                refresh_tokens::table
                    .filter(refresh_tokens::grant_id.eq_any(&g))
                    .count()
                    .get_result(c)?,
            );
            n.insert(
                "consents",
                consents::table
                    .filter(consents::account_id.eq(&a))
                    .count()
                    .get_result(c)?,
            );
            n.insert(
                "memberships",
                memberships::table
                    .filter(memberships::account_id.eq(&a))
                    .count()
                    .get_result(c)?,
            );
            n.insert(
                "password_tokens",
                password_tokens::table
                    .filter(password_tokens::account_id.eq(&a))
                    .count()
                    .get_result(c)?,
            );
            n.insert("mail_messages", m.len() as i64);
            n.insert(
                "outbox",
                outbox::table
                    .filter(outbox::message_id.eq_any(&m))
                    .count()
                    .get_result(c)?,
            );
            Ok::<_, admit_store::StoreError>(n)
        })
        .await?)
}

/// An account with rows in every table, created on `p` (whose clock may be faked).
async fn account_with_everything(
    p: &Platform,
    account_type: &str,
) -> anyhow::Result<(String, String)> {
    let email = format!("{}@example.com", unique("purge"));
    let res = http()
        .post(format!("{}/account?auto_sign_in=true", p.accounts))
        .json(&json!({"contacts": [["EMAIL", email, true]], "password": "doctest1", "account_type": account_type}))
        .send()
        .await?;
    anyhow::ensure!(res.status() == 201, "sign-up: {}", res.status());
    let r: Value = res.json().await?;
    let account_id = r["account_id"].as_str().context("account_id")?.to_owned();
    let session = r["session_id"].as_str().context("session_id")?.to_owned();

    // A partner registers the same address: a membership and a reset link.
    let partner = p.cli(&["partner", "create", "--name", "Purge Partner"])?;
    let pid = partner["partner_id"]
        .as_str()
        .context("partner_id")?
        .to_owned();
    let key = p.cli(&["api-key", "create", "--partner", &pid])?;
    p.cli(&["plan-code", "add", "--partner", &pid, "GOLD"])?;
    let res = http()
        .post(format!("{}/receiver/APIv3/user.create", p.accounts))
        .bearer_auth(key["api_key"].as_str().context("api_key")?)
        .json(
            &json!({"user": {"BikePlanCode": "GOLD", "FirstName": "T", "LastName": "U",
            "Email": email, "Language": "EN", "ContractType": "", "partner_EmployeeID": unique("e"),
            "PersonnelNumber": "P1"}}),
        )
        .send()
        .await?;
    let r: Value = res.json().await?;
    anyhow::ensure!(r["results"][0]["status"] == "existing", "user.create: {r}");

    // The user authorizes a client with the session: consent, code, tokens.
    let c = p.client(
        "http://127.0.0.1:9/cb",
        &["authorization_code", "refresh_token"],
        false,
    )?;
    let q = [
        ("client_id", c.id.as_str()),
        ("redirect_uri", c.redirect_uri.as_str()),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "s"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let mut agent = Agent::new()?;
    agent.set_cookie(SESSION_COOKIE, &session);
    let page = agent
        .get(&format!(
            "{}/oauth/authorize?{}",
            p.issuer,
            serde_urlencoded::to_string(q)?
        ))
        .await?;
    let mut form = hidden_fields(&page.body);
    form.push(("decision".into(), "allow".into()));
    let back = agent
        .post(&format!("{}/oauth/authorize", p.issuer), &form)
        .await?
        .location
        .context("consent redirects")?;
    let code = query_of(&back).get("code").cloned().context("code")?;
    let res = http()
        .post(format!("{}/oauth/token", p.issuer))
        .basic_auth(&c.id, c.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &c.redirect_uri),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    let tokens: Value = res.json().await?;
    anyhow::ensure!(tokens["refresh_token"].is_string(), "tokens: {tokens}");
    Ok((account_id, email))
}

async fn purge_after_a_day(p: &mut Platform, smtp: Option<&SmtpCapture>) -> anyhow::Result<()> {
    if let Some(smtp) = smtp {
        p.start_mailer(smtp)?;
    }
    let (test_id, test_email) = account_with_everything(p, "test").await?;
    let (kept_id, kept_email) = account_with_everything(p, "standard").await?;
    let db = Db::connect(&p.db_url, 1)?;

    // Both emails of each account are recorded by the mailer.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let n = attached(&db, &test_id, &test_email).await?;
        let kept = attached(&db, &kept_id, &kept_email).await?;
        if n["mail_messages"] >= 2 && kept["mail_messages"] >= 2 {
            break n;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{}: mail not recorded: {n:?}",
            p.mode
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (table, n) in &before {
        assert!(
            *n > 0,
            "{}: the test account has rows in {table}: {before:?}",
            p.mode
        );
    }
    let kept_before = attached(&db, &kept_id, &kept_email).await?;

    // On the faked clock the account is 0 hours old: a pass deletes nothing.
    let early = p.cli(&["purge"])?;
    assert_eq!(early["accounts"], 0, "{}: {early}", p.mode);
    // On the real clock it is 25 hours old: one pass deletes it whole.
    let env = real_clock(p.env());
    let mut args = vec!["purge".to_owned()];
    if p.mode == "embedded" {
        args.extend([
            "--data-dir".to_owned(),
            p.db_url
                .trim_start_matches("sqlite://")
                .trim_end_matches("/admit.db")
                .to_owned(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = admit_e2e::admin_cli(&args, &env)?;
    assert_eq!(report["ran"], true, "{}: {report}", p.mode);
    assert_eq!(report["accounts"], 1, "{}: {report}", p.mode);
    let after = attached(&db, &test_id, &test_email).await?;
    for (table, n) in &after {
        assert_eq!(
            *n, 0,
            "{}: {table} still holds the test account's rows",
            p.mode
        );
        if *table != "accounts" {
            assert_eq!(
                report["rows"][table].as_i64(),
                Some(before[table]),
                "{}: the pass reports what it deleted from {table}: {report}",
                p.mode
            );
        }
    }
    assert_eq!(
        attached(&db, &kept_id, &kept_email).await?,
        kept_before,
        "{}: the standard account is untouched",
        p.mode
    );
    // Idempotent: a second pass finds nothing.
    let again = admit_e2e::admin_cli(&args, &env)?;
    assert_eq!(again["accounts"], 0, "{}: {again}", p.mode);
    Ok(())
}

fn clock_25_hours_back() -> Vec<(&'static str, String)> {
    faked_clock("-25h")
}

#[tokio::test]
async fn a_test_account_is_purged_with_every_attached_row_on_the_embedded_default(
) -> anyhow::Result<()> {
    let env = clock_25_hours_back();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut p = Platform::embedded(&env)?;
    purge_after_a_day(&mut p, None).await
}

#[tokio::test]
async fn a_test_account_is_purged_with_every_attached_row_on_the_production_topology(
) -> anyhow::Result<()> {
    let smtp = SmtpCapture::start()?;
    let env = clock_25_hours_back();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut p = Platform::production(&env)?;
    purge_after_a_day(&mut p, Some(&smtp)).await
}

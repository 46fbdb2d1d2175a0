//! `POST /account` (SPEC.md §3) on both run modes: who may call it (partner tokens,
//! public applications by `X-Client-Id`, anonymous callers by stage), the CAPTCHA
//! against a fake siteverify endpoint, `auto_sign_in`, the body's rules and the error
//! of each, and the purge of test accounts.

use admit_e2e::platform::{hidden_fields, query_of, Agent, Platform};
use admit_e2e::upstream::{Reply, Upstream};
use admit_e2e::{http, post_account, signup, unique};
use anyhow::Context;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SITEVERIFY_SECRET: &str = "siteverify-secret-of-the-platform";
const SESSION_COOKIE: &str = "__Host-admit_session";
// RFC 7636 appendix B.
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn platform(mode: &str, env: &[(&str, &str)]) -> anyhow::Result<Platform> {
    match mode {
        "embedded" => Platform::embedded(env),
        _ => Platform::production(env),
    }
}

fn email() -> String {
    format!("{}@example.com", unique("su"))
}

/// `POST /account` with optional `X-Client-Id` and query string.
async fn post(
    p: &Platform,
    client_id: Option<&str>,
    query: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value, reqwest::header::HeaderMap)> {
    let mut req = http()
        .post(format!("{}/account{query}", p.accounts))
        .json(body);
    if let Some(id) = client_id {
        req = req.header("X-Client-Id", id);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    Ok((status, res.json().await.unwrap_or(Value::Null), headers))
}

/// A siteverify endpoint that knows the platform's secret and four tokens: `good`,
/// `low-score` (a reCAPTCHA v3 score of 0.1), `hang` (answers after 20 s) and
/// `broken` (500); any other token fails.
fn siteverify() -> anyhow::Result<Upstream> {
    Upstream::start(|r| {
        let form = r.form();
        if form.get("secret").map(String::as_str) != Some(SITEVERIFY_SECRET) {
            return Reply::json(
                200,
                json!({"success": false, "error-codes": ["invalid-input-secret"]}),
            );
        }
        match form.get("response").map(String::as_str) {
            Some("good") => Reply::json(200, json!({"success": true, "score": 0.9})),
            Some("low-score") => Reply::json(200, json!({"success": true, "score": 0.1})),
            Some("hang") => Reply {
                status: 200,
                body: json!({"success": true}).to_string(),
                delay: Duration::from_secs(20),
            },
            Some("broken") => Reply::json(500, json!({"oops": true})),
            _ => Reply::json(
                200,
                json!({"success": false, "error-codes": ["invalid-input-response"]}),
            ),
        }
    })
}

fn with_captcha(body: Value, token: &str) -> Value {
    let mut body = body;
    body["recaptcha"] =
        json!({"private_key": "site-private-key", "challenge": "ch-1", "response": token});
    body
}

async fn public_applications_and_captcha(mode: &str) -> anyhow::Result<()> {
    let sv = siteverify()?;
    let url = format!("{}/siteverify", sv.url);
    let p = platform(
        mode,
        &[
            ("ADMIT__STAGE", "staging"),
            ("ADMIT__ACCOUNT__CAPTCHA__SITEVERIFY_URL", &url),
            ("ADMIT__ACCOUNT__CAPTCHA__SECRET", SITEVERIFY_SECRET),
            ("ADMIT__ACCOUNT__CAPTCHA__TIMEOUT_MS", "1000"),
        ],
    )
    .await?;
    let public = p.client("http://127.0.0.1:9/cb", &["authorization_code"], true)?;
    let confidential = p.client("http://127.0.0.1:9/cb", &["authorization_code"], false)?;

    // Staging: no credential at all is 401; so is a client id that names no public
    // application.
    let (status, err, _) = post(&p, None, "", &with_captcha(signup(&email()), "good")).await?;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("UnauthorizedException")),
        "{mode}: {err}"
    );
    for id in ["c_nobody", "", confidential.id.as_str()] {
        let (status, err, _) =
            post(&p, Some(id), "", &with_captcha(signup(&email()), "good")).await?;
        assert_eq!(status, 401, "{mode}: X-Client-Id {id:?}: {err}");
    }
    assert!(
        sv.requests().is_empty(),
        "{mode}: nothing reached siteverify yet"
    );

    // A public application's sign-up needs the recaptcha object.
    let (status, err, _) = post(&p, Some(&public.id), "", &signup(&email())).await?;
    assert_eq!(
        (status, err["field"].as_str()),
        (400, Some("recaptcha")),
        "{mode}: {err}"
    );

    // A good CAPTCHA: 201, verified with the platform's secret, the token and the
    // caller's address.
    let good = email();
    let (status, created, _) = post(
        &p,
        Some(&public.id),
        "",
        &with_captcha(signup(&good), "good"),
    )
    .await?;
    assert_eq!(status, 201, "{mode}: {created}");
    assert!(created["account_id"].is_string());
    let asked = sv.requests();
    assert_eq!(asked.len(), 1, "{mode}");
    let form = asked[0].form();
    assert_eq!(form.get("response").map(String::as_str), Some("good"));
    assert_eq!(form.get("remoteip").map(String::as_str), Some("127.0.0.1"));
    assert!(
        !form.contains_key("private_key"),
        "the client's key is not sent"
    );

    // Failed and low-score CAPTCHAs are 403; a siteverify that hangs or breaks is
    // 503 within the timeout, never a pass. None of them writes anything: the same
    // addresses sign up afterwards.
    let mut refused = Vec::new();
    for (token, want) in [
        ("wrong", 403),
        ("low-score", 403),
        ("hang", 503),
        ("broken", 503),
    ] {
        let address = email();
        let started = Instant::now();
        let (status, err, headers) = post(
            &p,
            Some(&public.id),
            "",
            &with_captcha(signup(&address), token),
        )
        .await?;
        let took = started.elapsed();
        assert_eq!(status, want, "{mode}: token {token}: {err}");
        let name = if want == 403 {
            "IllegalAccessException"
        } else {
            "ServiceUnavailableException"
        };
        assert_eq!(err["error"], name, "{mode}: {token}");
        if want == 503 {
            assert!(headers.contains_key("retry-after"), "{mode}: {token}");
            // The hanging endpoint answers after 20 s: the platform did not wait.
            assert!(
                took < Duration::from_secs(15),
                "{mode}: {token} took {took:?}"
            );
        }
        refused.push(address);
    }
    for address in refused {
        let (status, r, _) = post(
            &p,
            Some(&public.id),
            "",
            &with_captcha(signup(&address), "good"),
        )
        .await?;
        assert_eq!(status, 201, "{mode}: a refused sign-up wrote nothing: {r}");
    }
    // The good one was written: the same address again is 409.
    let (status, err, _) = post(
        &p,
        Some(&public.id),
        "",
        &with_captcha(signup(&good), "good"),
    )
    .await?;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("ContactAlreadyUsedException")),
        "{mode}"
    );
    Ok(())
}

#[tokio::test]
async fn public_applications_need_a_verified_captcha_in_staging_on_the_embedded_default(
) -> anyhow::Result<()> {
    public_applications_and_captcha("embedded").await
}

#[tokio::test]
async fn public_applications_need_a_verified_captcha_in_staging_on_the_production_topology(
) -> anyhow::Result<()> {
    public_applications_and_captcha("production").await
}

/// Development (and integration) skip the CAPTCHA and accept anonymous callers, but
/// an X-Client-Id must still name a public application.
async fn development_skips_the_captcha(mode: &str) -> anyhow::Result<()> {
    let p = platform(mode, &[("ADMIT__STAGE", "integration")]).await?;
    let public = p.client("http://127.0.0.1:9/cb", &["authorization_code"], true)?;
    let (status, r, _) = post(&p, None, "", &signup(&email())).await?;
    assert_eq!(status, 201, "{mode}: anonymous: {r}");
    let (status, r, _) = post(&p, Some(&public.id), "", &signup(&email())).await?;
    assert_eq!(status, 201, "{mode}: public without recaptcha: {r}");
    let (status, r, _) = post(&p, Some("c_unknown"), "", &signup(&email())).await?;
    assert_eq!(status, 401, "{mode}: unknown client: {r}");
    Ok(())
}

#[tokio::test]
async fn development_stages_skip_the_captcha_on_both_run_modes() -> anyhow::Result<()> {
    development_skips_the_captcha("embedded").await?;
    development_skips_the_captcha("production").await
}

fn authorize_url(p: &Platform, client_id: &str, redirect_uri: &str) -> String {
    let q = [
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "st-auto"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    format!(
        "{}/oauth/authorize?{}",
        p.issuer,
        serde_urlencoded::to_string(q).unwrap_or_default()
    )
}

/// `auto_sign_in=true`: the answer carries a real login session, also set as the
/// session cookie, and a native app sending it as that cookie goes straight to
/// consent.
async fn auto_sign_in(mode: &str) -> anyhow::Result<()> {
    let p = platform(mode, &[]).await?;
    let c = p.client("http://127.0.0.1:9/cb", &["authorization_code"], false)?;
    let (status, r, headers) = post(&p, None, "?auto_sign_in=true", &signup(&email())).await?;
    assert_eq!(status, 201, "{mode}: {r}");
    let session = r["session_id"].as_str().context("session_id")?.to_owned();
    assert!(session.len() >= 22, "{mode}: a 128-bit session id");
    let created = r["creation_time"].as_str().context("creation_time")?;
    let expires = r["expiration_time"].as_str().context("expiration_time")?;
    assert!(expires > created, "{mode}: {created} < {expires}");
    let cookie = headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(SESSION_COOKIE))
        .context("the session cookie is set")?
        .to_owned();
    assert!(
        cookie.starts_with(&format!("{SESSION_COOKIE}={session};")),
        "{mode}: {cookie}"
    );
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{mode}: {attr} in {cookie}");
    }

    let url = authorize_url(&p, &c.id, &c.redirect_uri);
    let mut anonymous = Agent::new()?;
    let page = anonymous.get(&url).await?;
    assert!(
        page.location
            .as_deref()
            .is_some_and(|l| l.contains("/login")),
        "{mode}: without the session, the login page: {} {:?}",
        page.status,
        page.location
    );
    let mut app = Agent::new()?;
    app.set_cookie(SESSION_COOKIE, &session);
    let page = app.get(&url).await?;
    assert_eq!(
        page.status, 200,
        "{mode}: {:?} {}",
        page.location, page.body
    );
    assert!(
        page.body.contains("id=\"allow\""),
        "{mode}: the consent page"
    );
    let mut form = hidden_fields(&page.body);
    form.push(("decision".into(), "allow".into()));
    let done = app
        .post(&format!("{}/oauth/authorize", p.issuer), &form)
        .await?;
    let back = done.location.context("back to the client")?;
    assert!(query_of(&back).contains_key("code"), "{mode}: {back}");

    // Without auto_sign_in, no session; a bad value names the parameter.
    let (status, r, headers) = post(&p, None, "?auto_sign_in=false", &signup(&email())).await?;
    assert_eq!(status, 201);
    assert!(
        r.get("session_id").is_none() && r.get("expiration_time").is_none(),
        "{r}"
    );
    assert!(headers.get(reqwest::header::SET_COOKIE).is_none());
    let (status, err, _) = post(&p, None, "?auto_sign_in=yes-please", &signup(&email())).await?;
    assert_eq!(
        (status, err["field"].as_str()),
        (400, Some("auto_sign_in")),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn auto_sign_in_returns_a_session_that_authorize_accepts_on_the_embedded_default(
) -> anyhow::Result<()> {
    auto_sign_in("embedded").await
}

#[tokio::test]
async fn auto_sign_in_returns_a_session_that_authorize_accepts_on_the_production_topology(
) -> anyhow::Result<()> {
    auto_sign_in("production").await
}

#[tokio::test]
async fn auto_sign_in_then_authorize_in_chromium_goes_straight_to_consent() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let c = p.client("http://127.0.0.1:9/cb", &["authorization_code"], false)?;
    let (status, r, _) = post(&p, None, "?auto_sign_in=true", &signup(&email())).await?;
    assert_eq!(status, 201, "{r}");
    let session = r["session_id"].as_str().context("session_id")?.to_owned();
    let (issuer, url) = (p.issuer.clone(), authorize_url(&p, &c.id, &c.redirect_uri));
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let (browser, _profile) = admit_e2e::platform::chromium()?;
        let tab = browser.new_tab()?;
        tab.set_default_timeout(Duration::from_secs(60));
        // A native app hands its browser view the session, as the cookie.
        let cookie: headless_chrome::protocol::cdp::Network::CookieParam =
            serde_json::from_value(json!({
                "name": SESSION_COOKIE, "value": session, "url": format!("{issuer}/"),
                "path": "/", "secure": true, "httpOnly": true, "sameSite": "Lax",
            }))?;
        tab.set_cookies(vec![cookie])?;
        tab.navigate_to(&url)?;
        tab.wait_for_element("#allow")
            .with_context(|| format!("no consent page; at {}", tab.get_url()))?;
        anyhow::ensure!(
            tab.find_element("#login").is_err(),
            "the login page was shown"
        );
        anyhow::ensure!(!tab.get_url().contains("/login"), "at {}", tab.get_url());
        Ok(())
    })
    .await??;
    Ok(())
}

/// Every clause of the explicit body, and the error of each, on both run modes.
async fn explicit_clauses(mode: &str) -> anyhow::Result<()> {
    let p = platform(mode, &[]).await?;
    let client = http();
    for (what, body, field) in admit_e2e::bad_sign_ups() {
        let (status, err) = post_account(&client, &p.accounts, &body).await?;
        assert_eq!(status, 400, "{mode}: {what}: {err}");
        assert_eq!(err["error"], "InvalidArgumentException", "{mode}: {what}");
        assert_eq!(err["field"], field, "{mode}: {what}: {err}");
    }
    // Unique email, case-insensitively; unique phone; unique username,
    // case-insensitively: each a 409 naming what was taken.
    // A phone of its own: other tests share the database on PostgreSQL.
    let phone = format!("+1415{}", &uuid::Uuid::new_v4().as_u128().to_string()[..7]);
    let (addr, user) = (email(), unique("u"));
    let first = json!({
        "contacts": [["EMAIL", addr, true], ["PHONE", phone]],
        "username": user, "password": "doctest1", "locale": "fra-FR", "full_name": "Jeanne",
    });
    let (status, r) = post_account(&client, &p.accounts, &first).await?;
    assert_eq!(status, 201, "{mode}: {r}");
    let cases = [
        (
            json!({"contacts": [["EMAIL", addr.to_uppercase()]], "password": "doctest1"}),
            "ContactAlreadyUsedException",
            Some("contacts[0][1]"),
        ),
        (
            json!({"contacts": [["EMAIL", email()], ["PHONE", phone]], "password": "doctest1"}),
            "ContactAlreadyUsedException",
            Some("contacts[1][1]"),
        ),
        (
            json!({"username": user.to_uppercase(), "password": "doctest1"}),
            "UsernameAlreadyUsedException",
            None,
        ),
    ];
    for (body, name, field) in cases {
        let (status, err) = post_account(&client, &p.accounts, &body).await?;
        assert_eq!(
            (status, err["error"].as_str()),
            (409, Some(name)),
            "{mode}: {body}: {err}"
        );
        if let Some(f) = field {
            assert_eq!(err["field"], f, "{mode}: {err}");
        }
    }
    // Contacts may be absent when a username is given; the password is
    // case-sensitive, 6 to 18 characters of any kind; a test account is accepted.
    let (status, r) = post_account(
        &client,
        &p.accounts,
        &json!({"username": unique("only"), "password": "Ünïcödé-€ 18 chars", "account_type": "test"}),
    )
    .await?;
    assert_eq!(status, 201, "{mode}: {r}");
    // Two requests for one contact at once make one account.
    let statuses = admit_e2e::concurrent_same_email(&p.accounts, &email(), 10).await?;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{mode}: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        9,
        "{mode}: {statuses:?}"
    );
    Ok(())
}

#[tokio::test]
async fn every_clause_of_the_explicit_body_on_the_embedded_default() -> anyhow::Result<()> {
    explicit_clauses("embedded").await
}

#[tokio::test]
async fn every_clause_of_the_explicit_body_on_the_production_topology() -> anyhow::Result<()> {
    explicit_clauses("production").await
}

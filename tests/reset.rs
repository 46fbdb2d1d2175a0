//! Password reset (SPEC §7) as a user meets it: "Forgot your password?" on the sign-in
//! page, the email, the link, a new password; in headless Chromium on the embedded
//! default, over HTTP on the production topology (its email through a real SMTP
//! server). The sessions and refresh tokens from before the reset stop working; the
//! answer is the same for an address without an account; the link works once, is not
//! used by a GET, and a newer one retires it; requests are rate limited.

use admit_e2e::platform::{hidden_fields, query_of, Agent, Platform};
use admit_e2e::{http, unique, SmtpCapture};
use anyhow::Context;
use serde_json::Value;
use std::time::{Duration, Instant};

const OLD: &str = "horse-battery-9";
const NEW: &str = "staple-correct-7";
// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Where a platform's email arrives.
enum Mailbox<'a> {
    /// The embedded default's inbox (`/dev/inbox.json`).
    Inbox(&'a str),
    Smtp(&'a SmtpCapture),
}

impl Mailbox<'_> {
    /// The subjects and text parts of the reset emails to `to`, waiting until there
    /// are `n` (at most a minute; fewer if they never come).
    async fn texts(&self, to: &str, n: usize) -> anyhow::Result<Vec<(String, String)>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mine: Vec<(String, String)> = match self {
                Mailbox::Inbox(base) => {
                    let all: Vec<Value> = http()
                        .get(format!("{base}/dev/inbox.json"))
                        .send()
                        .await?
                        .json()
                        .await?;
                    all.into_iter()
                        .filter(|m| m["to"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(to)))
                        .map(|m| {
                            (
                                m["subject"].as_str().unwrap_or_default().to_owned(),
                                m["text"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                }
                Mailbox::Smtp(smtp) => smtp
                    .messages()
                    .into_iter()
                    .filter(|m| m.to.eq_ignore_ascii_case(to))
                    .map(|m| (m.subject, m.text))
                    .collect(),
            };
            // Only the reset emails (a sign-up also sent a welcome).
            let mine: Vec<(String, String)> = mine
                .into_iter()
                .filter(|(_, text)| text.contains("/password/reset?token="))
                .collect();
            if mine.len() >= n || Instant::now() > deadline {
                return Ok(mine);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The reset links of the emails to `to`, waiting until there are `n`.
    async fn reset_links(&self, to: &str, n: usize) -> anyhow::Result<Vec<String>> {
        let texts = self.texts(to, n).await?;
        let links: Vec<String> = texts
            .iter()
            .filter_map(|(_, text)| {
                text.split_whitespace()
                    .find(|w| w.contains("/password/reset?token="))
                    .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_owned())
            })
            .collect();
        anyhow::ensure!(
            links.len() >= n,
            "{} reset links, not {n}: {texts:?}",
            links.len()
        );
        Ok(links)
    }
}

/// A signed-in user with the ways in a reset must end: a login session (in `agent`)
/// and a refresh token of an application they allowed.
struct Before {
    email: String,
    agent: Agent,
    refresh: String,
    client_id: String,
    client_secret: String,
}

async fn signed_in_everywhere(p: &Platform) -> anyhow::Result<Before> {
    let c = p.client(
        "http://127.0.0.1:9/cb",
        &["authorization_code", "refresh_token"],
        false,
    )?;
    let email = format!("{}@example.com", unique("reset"));
    p.user(&email, OLD).await?;
    let mut agent = Agent::new()?;
    let res = agent.login(&p.accounts, &email, OLD).await?;
    assert_eq!(res.status, 303, "login: {}", res.body);
    assert_eq!(agent.get(&format!("{}/", p.accounts)).await?.status, 200);
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
    let secret = c.secret.clone().context("confidential client")?;
    let tokens: Value = http()
        .post(format!("{}/oauth/token", p.issuer))
        .basic_auth(&c.id, Some(&secret))
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
    Ok(Before {
        email,
        agent,
        refresh,
        client_id: c.id,
        client_secret: secret,
    })
}

/// What a reset must have ended and changed: the old session, the old refresh token,
/// the old password; the new one works.
async fn everything_before_is_over(p: &Platform, mut before: Before) -> anyhow::Result<()> {
    let home = before.agent.get(&format!("{}/", p.accounts)).await?;
    assert_eq!(home.status, 303, "the old session still works");
    assert_eq!(home.location.as_deref(), Some("/login"));
    let refreshed = http()
        .post(format!("{}/oauth/token", p.issuer))
        .basic_auth(&before.client_id, Some(&before.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", before.refresh.as_str()),
        ])
        .send()
        .await?;
    assert_eq!(refreshed.status(), 400, "the old refresh token still works");
    let body: Value = refreshed.json().await?;
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let old = Agent::new()?.login(&p.accounts, &before.email, OLD).await?;
    assert_eq!(old.status, 401, "the old password still works");
    let new = Agent::new()?.login(&p.accounts, &before.email, NEW).await?;
    assert_eq!(new.status, 303, "the new password: {}", new.body);
    Ok(())
}

/// Asks for a reset link on the forgot page, as a browser without scripts would.
async fn ask(agent: &mut Agent, accounts: &str, email: &str) -> anyhow::Result<(u16, String)> {
    let page = agent.get(&format!("{accounts}/password/forgot")).await?;
    assert_eq!(page.status, 200);
    let mut form = hidden_fields(&page.body);
    form.push(("email".into(), email.into()));
    let res = agent
        .post(&format!("{accounts}/password/forgot"), &form)
        .await?;
    Ok((res.status, res.body))
}

/// Chooses `password` at the reset link `link`.
async fn reset_at(
    agent: &mut Agent,
    accounts: &str,
    link: &str,
    password: &str,
    confirm: &str,
) -> anyhow::Result<(u16, String)> {
    let page = agent.get(link).await?;
    let mut form = hidden_fields(&page.body);
    if !form.iter().any(|(k, _)| k == "token") {
        // The page is gone: post the link's token anyway, as a replayed form would.
        let token = query_of(link).get("token").cloned().unwrap_or_default();
        form.push(("token".into(), token));
        if let Some(csrf) = agent.cookie("__Host-admit_csrf") {
            form.push(("csrf_token".into(), csrf.clone()));
        }
    }
    form.push(("password".into(), password.into()));
    form.push(("password_confirm".into(), confirm.into()));
    let res = agent
        .post(&format!("{accounts}/password/reset"), &form)
        .await?;
    Ok((res.status, res.body))
}

#[tokio::test]
async fn reset_in_chromium_from_the_login_page_ends_the_old_session_and_refresh_token(
) -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let before = signed_in_everywhere(&p).await?;
    let (email, accounts) = (before.email.clone(), p.accounts.clone());
    let (link_tx, link_rx) = std::sync::mpsc::channel::<String>();
    let (asked_tx, asked_rx) = tokio::sync::oneshot::channel::<()>();
    let browser = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let (browser, _profile) = admit_e2e::platform::chromium()?;
        let tab = browser.new_tab()?;
        tab.set_default_timeout(Duration::from_secs(60));
        tab.navigate_to(&format!("{accounts}/login"))?;
        tab.wait_for_element("#forgot-password")?.click()?;
        tab.wait_for_element("#email")?.click()?;
        tab.type_str(&email)?;
        tab.wait_for_element("#send-link")?.click()?;
        let sent = tab.wait_for_element("#forgot-sent")?.get_inner_text()?;
        anyhow::ensure!(sent.contains("Check your email"), "{sent}");
        let _ = asked_tx.send(());
        // The link, once the email has arrived.
        let link = link_rx.recv_timeout(Duration::from_secs(90))?;
        tab.navigate_to(&link)?;
        tab.wait_for_element("#password")?.click()?;
        tab.type_str(NEW)?;
        tab.wait_for_element("#password_confirm")?.click()?;
        tab.type_str(NEW)?;
        tab.wait_for_element("#reset-password")?.click()?;
        tab.wait_for_element("#password-changed")?;
        // Not signed in by the reset: the sign-in page, with the new password.
        tab.wait_for_element("#sign-in-again")?.click()?;
        tab.wait_for_element("#login")?.click()?;
        tab.type_str(&email)?;
        tab.wait_for_element("#password")?.click()?;
        tab.type_str(NEW)?;
        tab.wait_for_element("#sign-in")?.click()?;
        tab.wait_for_element("#sign-out")
            .with_context(|| format!("not signed in; at {}", tab.get_url()))?;
        Ok(link)
    });
    asked_rx
        .await
        .context("the browser never asked for a link")?;
    let links = Mailbox::Inbox(&p.accounts)
        .reset_links(&before.email, 1)
        .await?;
    link_tx.send(links[0].clone())?;
    let link = browser.await??;
    everything_before_is_over(&p, before).await?;
    // The link worked once.
    assert_eq!(Agent::new()?.get(&link).await?.status, 410);
    Ok(())
}

#[tokio::test]
async fn the_same_answer_for_an_unknown_address_and_a_link_that_works_once() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let email = format!("{}@example.com", unique("known"));
    let account_id = p.user(&email, OLD).await?;
    let unknown = format!("{}@example.com", unique("nobody"));
    let mut agent = Agent::new()?;
    let (known_status, known_page) = ask(&mut agent, &p.accounts, &email).await?;
    let (unknown_status, unknown_page) = ask(&mut agent, &p.accounts, &unknown).await?;
    assert_eq!(known_status, 200, "{known_page}");
    assert_eq!(unknown_status, known_status);
    assert_eq!(
        unknown_page, known_page,
        "the answer tells the addresses apart"
    );
    // A malformed address is said to be one, and writes nothing.
    let (bad, page) = ask(&mut agent, &p.accounts, "not an address").await?;
    assert_eq!(bad, 400);
    assert!(page.contains("forgot-error"), "{page}");
    // Without its CSRF token the form is refused.
    let refused = agent
        .post(
            &format!("{}/password/forgot", p.accounts),
            &[("email".into(), email.clone())],
        )
        .await?;
    assert_eq!(refused.status, 403);

    let mailbox = Mailbox::Inbox(&p.accounts);
    let first = mailbox.reset_links(&email, 1).await?.remove(0);
    assert!(
        first.starts_with(&format!("{}/password/reset?token=", p.accounts)),
        "{first}"
    );
    // Mail scanners open links: a GET shows the form and uses nothing.
    let mut scanner = Agent::new()?;
    for _ in 0..2 {
        let page = scanner.get(&first).await?;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("id=\"reset-password\""));
        assert_eq!(
            page.headers
                .get("referrer-policy")
                .and_then(|v| v.to_str().ok()),
            Some("no-referrer")
        );
    }
    // The policy and the confirmation are checked on the page, and use nothing.
    let (status, page) = reset_at(&mut scanner, &p.accounts, &first, "12345", "12345").await?;
    assert_eq!(status, 400);
    assert!(page.contains("password-error"), "{page}");
    let (status, _) = reset_at(&mut scanner, &p.accounts, &first, NEW, "other-pass-1").await?;
    assert_eq!(status, 400);
    // A newer link retires the older one.
    let (status, _) = ask(&mut agent, &p.accounts, &email).await?;
    assert_eq!(status, 200);
    let links = mailbox.reset_links(&email, 2).await?;
    let second = links
        .iter()
        .find(|l| **l != first)
        .context("a second link")?
        .clone();
    assert_eq!(scanner.get(&first).await?.status, 410);
    // The set-password page does not take a reset link.
    let set = second.replace("/password/reset?", "/password/set?");
    assert_eq!(scanner.get(&set).await?.status, 410);
    let (status, page) = reset_at(&mut scanner, &p.accounts, &second, NEW, NEW).await?;
    assert_eq!(status, 200, "{page}");
    // Used once, never again, by GET or POST.
    assert_eq!(scanner.get(&second).await?.status, 410);
    let (status, _) = reset_at(
        &mut scanner,
        &p.accounts,
        &second,
        "third-pass-3",
        "third-pass-3",
    )
    .await?;
    assert_eq!(status, 410);
    let signed_in = Agent::new()?.login(&p.accounts, &email, NEW).await?;
    assert_eq!(signed_in.status, 303);
    // The unknown address got no email; the known one its two.
    assert!(mailbox.texts(&unknown, 0).await?.is_empty());
    assert_eq!(mailbox.texts(&email, 2).await?.len(), 2);
    // Using the link confirmed the address it was sent to.
    let db = admit_store::Db::connect(&p.db_url, 1)?;
    let confirmed = db
        .run(move |c| admit_store::accounts::primary_email(c, &account_id))
        .await?;
    assert_eq!(confirmed.map(|(_, verified)| verified), Some(true));
    // The logs carry no token.
    let token = query_of(&second).get("token").cloned().context("token")?;
    assert!(!p.logs().contains(&token));
    Ok(())
}

#[tokio::test]
async fn reset_requests_are_limited_per_address_and_per_client() -> anyhow::Result<()> {
    let p = Platform::embedded(&[
        ("ADMIT__ACCOUNT__RESET_REQUESTS_PER_EMAIL", "2"),
        ("ADMIT__ACCOUNT__RESET_REQUESTS_PER_ADDRESS", "4"),
    ])?;
    let (a, b, c) = (
        format!("{}@example.com", unique("la")),
        format!("{}@example.com", unique("lb")),
        format!("{}@example.com", unique("lc")),
    );
    for e in [&a, &b, &c] {
        p.user(e, OLD).await?;
    }
    let mut agent = Agent::new()?;
    let mut answers = Vec::new();
    // a, a: sent; a: over the address's limit. b, b: sent (the client's 4th);
    // c: over the client's limit.
    for e in [&a, &a, &a, &b, &b, &c] {
        answers.push(ask(&mut agent, &p.accounts, e).await?);
    }
    for (status, page) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(page, &answers[0].1, "a limit shows in the answer");
    }
    let mailbox = Mailbox::Inbox(&p.accounts);
    assert_eq!(mailbox.texts(&b, 2).await?.len(), 2);
    // Give a late email time to show up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mailbox.texts(&a, 0).await?.len(), 2);
    assert_eq!(mailbox.texts(&c, 0).await?.len(), 0);
    Ok(())
}

#[tokio::test]
async fn reset_on_the_production_topology_through_a_real_smtp_server() -> anyhow::Result<()> {
    let smtp = SmtpCapture::start()?;
    let mut p = Platform::production(&[])?;
    p.start_mailer(&smtp)?;
    let before = signed_in_everywhere(&p).await?;
    let mut agent = Agent::new()?;
    let (status, page) = ask(&mut agent, &p.accounts, &before.email).await?;
    assert_eq!(status, 200, "{page}");
    let mailbox = Mailbox::Smtp(&smtp);
    let texts = mailbox.texts(&before.email, 1).await?;
    assert_eq!(
        texts.first().map(|(s, _)| s.as_str()),
        Some("Reset your admit password")
    );
    let link = mailbox.reset_links(&before.email, 1).await?.remove(0);
    assert!(link.starts_with(&p.accounts), "{link}");
    assert_eq!(agent.get(&link).await?.status, 200);
    let (status, page) = reset_at(&mut agent, &p.accounts, &link, NEW, NEW).await?;
    assert_eq!(status, 200, "{page}");
    everything_before_is_over(&p, before).await?;
    assert_eq!(agent.get(&link).await?.status, 410);
    Ok(())
}

/// An account a partner registered has no password until one is chosen (as one made
/// with a social provider): a reset gives it one, enables it, and retires the
/// partner's set-password link.
#[tokio::test]
async fn reset_gives_a_password_to_an_account_that_had_none() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let partner = p.cli(&["partner", "create", "--name", "Velo Lease"])?;
    let pid = partner["partner_id"].as_str().context("partner_id")?;
    let key = p.cli(&["api-key", "create", "--partner", pid])?;
    let key = key["api_key"].as_str().context("api_key")?;
    p.cli(&["plan-code", "add", "--partner", pid, "PLAN-A"])?;
    let email = format!("{}@example.com", unique("nopass"));
    let res = http()
        .post(format!("{}/receiver/APIv3/user.create", p.accounts))
        .bearer_auth(key)
        .json(&serde_json::json!({"user": {
            "BikePlanCode": "PLAN-A", "FirstName": "Jane", "LastName": "Johansson",
            "Email": email, "Language": "NL", "ContractType": "",
            "partner_EmployeeID": unique("e"), "PersonnelNumber": "A1"
        }}))
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await?;
    assert_eq!(body["results"][0]["status"], "created", "{body}");
    // The partner's email with its set-password link.
    let mailbox = Mailbox::Inbox(&p.accounts);
    let deadline = Instant::now() + Duration::from_secs(60);
    let set_link = loop {
        let all: Vec<Value> = http()
            .get(format!("{}/dev/inbox.json", p.accounts))
            .send()
            .await?
            .json()
            .await?;
        let link = all
            .iter()
            .filter(|m| m["to"] == email.as_str())
            .filter_map(|m| m["text"].as_str())
            .flat_map(str::split_whitespace)
            .find(|w| w.contains("/password/set?token="))
            .map(str::to_owned);
        if let Some(l) = link {
            break l;
        }
        anyhow::ensure!(Instant::now() < deadline, "no set-password email");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // No password yet: nothing signs in.
    let refused = Agent::new()?.login(&p.accounts, &email, NEW).await?;
    assert_eq!(refused.status, 401);

    let mut agent = Agent::new()?;
    let (status, _) = ask(&mut agent, &p.accounts, &email).await?;
    assert_eq!(status, 200);
    let link = mailbox.reset_links(&email, 1).await?.remove(0);
    let (status, page) = reset_at(&mut agent, &p.accounts, &link, NEW, NEW).await?;
    assert_eq!(status, 200, "{page}");
    let signed_in = Agent::new()?.login(&p.accounts, &email, NEW).await?;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    // The older set-password link cannot change the password again.
    assert_eq!(Agent::new()?.get(&set_link).await?.status, 410);
    Ok(())
}

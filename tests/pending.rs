//! Pending accounts (`POST /account?is_enabled=false`, SPEC §3) on both run modes:
//! the login refused until a contact is confirmed, whatever the password; the email
//! link (GET shows, only POST confirms, once; in headless Chromium on the embedded
//! default, at a real SMTP server in production); the SMS code at the API and on the
//! page (from the embedded inbox, and from a fake SMS gateway, a real HTTP server
//! that records what it receives); five wrong codes lock the code, not the account,
//! and a new code works.

use admit_e2e::platform::{hidden_fields, Agent, Platform};
use admit_e2e::topology::Topology;
use admit_e2e::{http, unique, SmtpCapture};
use anyhow::Context;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "pending-pw-7";
const CONFIRM_FIRST: &str = "Confirm your address first";

/// What reached a fake SMS gateway: the bearer header, the idempotency key (the
/// message id) and the JSON body.
#[derive(Debug, Clone)]
struct Texted {
    auth: Option<String>,
    message_id: Option<String>,
    body: Value,
}

/// A fake SMS gateway on 127.0.0.1: answers 200 to every POST and keeps it.
struct Gateway {
    url: String,
    seen: Arc<Mutex<Vec<Texted>>>,
}

impl Gateway {
    fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/sms", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                let mut line = String::new();
                let (mut length, mut auth, mut key) = (0usize, None, None);
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                        match k.as_str() {
                            "content-length" => length = v.parse().unwrap_or(0),
                            "authorization" => auth = Some(v),
                            "idempotency-key" => key = Some(v),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                keep.lock().unwrap_or_else(|p| p.into_inner()).push(Texted {
                    auth,
                    message_id: key,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        Ok(Self { url, seen })
    }

    fn to(&self, phone: &str) -> Vec<Texted> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|t| t.body["to"] == phone)
            .cloned()
            .collect()
    }
}

/// Where a run mode's messages arrive.
enum Mailbox<'a> {
    /// The embedded default's `/dev/inbox.json`.
    Inbox(String),
    /// The SMTP capture and the fake SMS gateway of the production topology; links
    /// are written for `public` and rewritten to reach `base`.
    Production {
        smtp: &'a SmtpCapture,
        gateway: &'a Gateway,
        public: String,
        base: String,
    },
}

impl Mailbox<'_> {
    /// The texts of the messages to `to` (emails or SMS), waiting until there are `n`.
    async fn texts(&self, to: &str, n: usize) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got: Vec<String> = match self {
                Mailbox::Inbox(base) => {
                    let all: Vec<Value> = http()
                        .get(format!("{base}/dev/inbox.json"))
                        .send()
                        .await?
                        .json()
                        .await?;
                    // Newest first there; oldest first here.
                    all.iter()
                        .rev()
                        .filter(|m| m["to"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(to)))
                        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
                        .collect()
                }
                Mailbox::Production {
                    smtp,
                    gateway,
                    public,
                    base,
                } => {
                    if to.starts_with('+') {
                        gateway
                            .to(to)
                            .iter()
                            .map(|t| t.body["text"].as_str().unwrap_or_default().to_owned())
                            .collect()
                    } else {
                        smtp.messages()
                            .iter()
                            .filter(|m| m.to.eq_ignore_ascii_case(to))
                            .map(|m| m.text.replace(public.as_str(), base))
                            .collect()
                    }
                }
            };
            if got.len() >= n {
                return Ok(got);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{n} messages to {to} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn confirm_link(text: &str) -> anyhow::Result<String> {
    text.split_whitespace()
        .find(|w| w.contains("/confirm?token="))
        .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_owned())
        .with_context(|| format!("no confirm link in: {text}"))
}

fn code_of(text: &str) -> anyhow::Result<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_owned)
        .with_context(|| format!("no code in: {text}"))
}

/// A 6-digit code that is not `code`.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap_or(0);
    format!("{:06}", (n + 1) % 1_000_000)
}

fn phone() -> String {
    let n = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or([7; 8]),
    );
    format!("+3361{:07}", n % 10_000_000)
}

async fn post(url: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let res = http().post(url).json(body).send().await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn pending_signup(base: &str, body: Value) -> anyhow::Result<String> {
    let (status, r) = post(&format!("{base}/account?is_enabled=false"), &body).await?;
    anyhow::ensure!(status == 201, "sign-up answered {status}: {r}");
    Ok(r["account_id"].as_str().context("account_id")?.to_owned())
}

/// The login page refuses the pending account with the same page whether the password
/// is right or wrong, and starts no session.
async fn login_refused(base: &str, login: &str) -> anyhow::Result<()> {
    let mut pages = Vec::new();
    for password in [PASSWORD, "not-the-password"] {
        let mut agent = Agent::new()?;
        let page = agent.login(base, login, password).await?;
        assert_eq!(page.status, 403, "{}", page.body);
        assert!(page.body.contains(CONFIRM_FIRST), "{}", page.body);
        assert!(page.body.contains("href=\"/confirm/phone\""));
        assert!(agent.cookie("__Host-admit_session").is_none());
        // The page but for its CSRF token.
        let body = page
            .body
            .split("name=\"csrf_token\" value=\"")
            .enumerate()
            .map(|(i, p)| match p.split_once('"') {
                Some((_, rest)) if i > 0 => rest,
                _ => p,
            })
            .collect::<String>();
        pages.push(body);
    }
    assert_eq!(pages[0], pages[1], "right and wrong passwords look alike");
    Ok(())
}

async fn login_works(base: &str, login: &str) -> anyhow::Result<()> {
    let mut agent = Agent::new()?;
    let page = agent.login(base, login, PASSWORD).await?;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(agent.cookie("__Host-admit_session").is_some());
    Ok(())
}

async fn account_state(db_url: &str, id: &str) -> anyhow::Result<(String, Vec<bool>)> {
    let db = admit_store::Db::connect(db_url, 1)?;
    let id = id.to_owned();
    Ok(db
        .run(move |c| {
            let a = admit_store::accounts::find(c, &id)?;
            use admit_store::schema::contacts;
            use diesel::prelude::*;
            let verified: Vec<Option<chrono::NaiveDateTime>> = contacts::table
                .filter(contacts::account_id.eq(&id))
                .order(contacts::kind.asc())
                .select(contacts::verified_at)
                .load(c)?;
            Ok((a.status, verified.iter().map(Option::is_some).collect()))
        })
        .await?)
}

// --- the scenarios, on either run mode ------------------------------------------------

/// Errors of `POST /account?is_enabled=false` and of the confirmation endpoints.
async fn bad_input(base: &str) -> anyhow::Result<()> {
    let (status, r) = post(
        &format!("{base}/account?is_enabled=false"),
        &json!({"username": unique("nobody").replace('-', ""), "password": PASSWORD}),
    )
    .await?;
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["field"], "is_enabled", "{r}");
    assert_eq!(r["error"], "InvalidArgumentException");
    let url = format!("{base}/account/confirmation");
    for (body, field) in [
        (json!({"phone": "0612345678", "code": "123456"}), "phone"),
        (json!({"phone": "+33612345678", "code": "12ab56"}), "code"),
        (json!({"phone": "+33612345678", "code": "1234567"}), "code"),
        (json!({"phone": "+33612345678"}), "code"),
        (json!({"phone": "+33612345678", "code": 123456}), "code"),
        (
            json!({"phone": "+33612345678", "code": "123456", "x": 1}),
            "x",
        ),
    ] {
        let (status, r) = post(&url, &body).await?;
        assert_eq!(status, 400, "{body}: {r}");
        assert_eq!(r["field"], field, "{body}: {r}");
    }
    let res = http()
        .post(&url)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await?;
    assert_eq!(res.status(), 400);
    // No code waits for a number nobody registered.
    let (status, r) = post(&url, &json!({"phone": phone(), "code": "123456"})).await?;
    assert_eq!(status, 410, "{r}");
    assert_eq!(r["field"], "code");
    let (status, r) = post(&format!("{url}/code"), &json!({"phone": "12"})).await?;
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["field"], "phone");
    // An unknown link, and a form without its CSRF token.
    let mut agent = Agent::new()?;
    assert_eq!(
        agent
            .get(&format!("{base}/confirm?token=nope"))
            .await?
            .status,
        410
    );
    let page = agent
        .post(
            &format!("{base}/confirm"),
            &[("token".into(), "nope".into())],
        )
        .await?;
    assert_eq!(page.status, 403);
    Ok(())
}

/// The email link: GET twice uses nothing; `confirm` presses the button (Chromium or
/// a plain agent); the link then works no more; the login works.
async fn email_link<F, Fut>(
    base: &str,
    db_url: &str,
    mail: &Mailbox<'_>,
    confirm: F,
) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let email = format!("{}@example.com", unique("pending"));
    let id = pending_signup(
        base,
        json!({"contacts": [["EMAIL", email, true]], "full_name": "Pat Pending", "password": PASSWORD, "locale": "eng"}),
    )
    .await?;
    assert_eq!(
        account_state(db_url, &id).await?,
        ("unconfirmed".into(), vec![false])
    );
    login_refused(base, &email).await?;
    let texts = mail.texts(&email, 1).await?;
    assert_eq!(
        texts.len(),
        1,
        "the confirm email replaces the welcome email"
    );
    let first = confirm_link(&texts[0])?;
    // A new link, asked for on the page the login page links to: the same answer as
    // for an address nobody registered; it replaces the first link.
    let mut agent = Agent::new()?;
    let mut notices = Vec::new();
    for address in [email.clone(), format!("{}@example.com", unique("nobody"))] {
        let page = agent.get(&format!("{base}/confirm/email")).await?;
        let mut form = hidden_fields(&page.body);
        form.push(("email".into(), address));
        let done = agent.post(&format!("{base}/confirm/email"), &form).await?;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done.body.contains("id=\"link-notice\""), "{}", done.body);
        notices.push(
            done.body
                .split("id=\"link-notice\"")
                .nth(1)
                .and_then(|r| r.split("</p>").next())
                .map(str::to_owned),
        );
    }
    assert_eq!(notices[0], notices[1]);
    let bad = {
        let page = agent.get(&format!("{base}/confirm/email")).await?;
        let mut form = hidden_fields(&page.body);
        form.push(("email".into(), "not-an-address".into()));
        agent.post(&format!("{base}/confirm/email"), &form).await?
    };
    assert_eq!(bad.status, 400);
    let texts = mail.texts(&email, 2).await?;
    // (The SMTP capture keeps no order: the new link is the other one.)
    let link = texts
        .iter()
        .filter_map(|t| confirm_link(t).ok())
        .find(|l| *l != first)
        .context("a second, different link")?;
    assert_eq!(Agent::new()?.get(&first).await?.status, 410, "replaced");
    let mut scanner = Agent::new()?;
    for _ in 0..2 {
        let page = scanner.get(&link).await?;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("id=\"confirm\""));
    }
    assert_eq!(account_state(db_url, &id).await?.0, "unconfirmed");
    confirm(link.clone()).await?;
    assert_eq!(
        account_state(db_url, &id).await?,
        ("active".into(), vec![true])
    );
    // Used: the link is gone, for GET and for POST.
    let mut late = Agent::new()?;
    assert_eq!(late.get(&link).await?.status, 410);
    // A fresh CSRF field (the phone page's first form) with the used token.
    let mut form = hidden_fields(&scanner.get(&format!("{base}/confirm/phone")).await?.body);
    form.truncate(1);
    form.push((
        "token".into(),
        admit_e2e::platform::query_of(&link)
            .remove("token")
            .unwrap_or_default(),
    ));
    assert_eq!(
        scanner
            .post(&format!("{base}/confirm"), &form)
            .await?
            .status,
        410
    );
    login_works(base, &email).await
}

/// Presses the confirm button with a plain agent.
async fn press(base: String, link: String) -> anyhow::Result<()> {
    let mut agent = Agent::new()?;
    let page = agent.get(&link).await?;
    let form = hidden_fields(&page.body);
    let done = agent.post(&format!("{base}/confirm"), &form).await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("id=\"confirmed\""), "{}", done.body);
    Ok(())
}

/// The SMS code at the API (an account with a phone and an email: either confirms),
/// and on the page (a phone only).
async fn sms_code(base: &str, db_url: &str, mail: &Mailbox<'_>) -> anyhow::Result<()> {
    let (number, email) = (phone(), format!("{}@example.com", unique("both")));
    let user = unique("u").replace('-', "")[..20].to_owned();
    let id = pending_signup(
        base,
        json!({"contacts": [["EMAIL", email, true], ["PHONE", number, true]], "username": user, "password": PASSWORD, "locale": "fra"}),
    )
    .await?;
    login_refused(base, &user).await?;
    // Both contacts got their message; the text is in French.
    mail.texts(&email, 1).await?;
    let sms = mail.texts(&number, 1).await?;
    assert!(sms[0].contains("code"), "{}", sms[0]);
    assert!(sms[0].contains("expire"), "{}", sms[0]);
    let code = code_of(&sms[0])?;
    let url = format!("{base}/account/confirmation");
    let (status, r) = post(&url, &json!({"phone": number, "code": code})).await?;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!({"account_id": id, "confirmed": "PHONE"}));
    // The phone is confirmed (contacts ordered EMAIL, PHONE), the account active.
    assert_eq!(
        account_state(db_url, &id).await?,
        ("active".into(), vec![false, true])
    );
    // Single use.
    let (status, r) = post(&url, &json!({"phone": number, "code": code})).await?;
    assert_eq!(status, 410, "{r}");
    login_works(base, &user).await?;

    // On the page.
    let number = phone();
    let user = unique("p").replace('-', "")[..20].to_owned();
    let id = pending_signup(
        base,
        json!({"contacts": [["PHONE", number]], "username": user, "password": PASSWORD}),
    )
    .await?;
    let code = code_of(&mail.texts(&number, 1).await?[0])?;
    let mut agent = Agent::new()?;
    let page = agent.get(&format!("{base}/confirm/phone")).await?;
    assert_eq!(page.status, 200);
    let mut form = hidden_fields(&page.body);
    form.truncate(1);
    let submit = |code: &str| {
        let mut f = form.clone();
        f.push(("phone".into(), number.clone()));
        f.push(("code".into(), code.to_owned()));
        f
    };
    let refused = agent
        .post(&format!("{base}/confirm/phone"), &submit(&wrong(&code)))
        .await?;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("4 attempts left"), "{}", refused.body);
    let done = agent
        .post(&format!("{base}/confirm/phone"), &submit(&code))
        .await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("id=\"confirmed\""));
    assert_eq!(
        account_state(db_url, &id).await?,
        ("active".into(), vec![true])
    );
    login_works(base, &user).await
}

/// Five wrong codes lock the code, not the account; a new code (asked for with the
/// same answer as for an unknown number) works; asking is rate limited.
async fn lock_and_new_code(base: &str, mail: &Mailbox<'_>) -> anyhow::Result<()> {
    let number = phone();
    let user = unique("l").replace('-', "")[..20].to_owned();
    pending_signup(
        base,
        json!({"contacts": [["PHONE", number]], "username": user, "password": PASSWORD}),
    )
    .await?;
    let code = code_of(&mail.texts(&number, 1).await?[0])?;
    let url = format!("{base}/account/confirmation");
    for left in (1..5).rev() {
        let (status, r) = post(&url, &json!({"phone": number, "code": wrong(&code)})).await?;
        assert_eq!(status, 400, "{r}");
        assert_eq!(r["field"], "code");
        let plural = if left == 1 { "" } else { "s" };
        assert!(
            r["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("{left} attempt{plural} left")),
            "{r}"
        );
    }
    let (status, r) = post(&url, &json!({"phone": number, "code": wrong(&code)})).await?;
    assert_eq!(status, 429, "{r}");
    // Locked, even with the right code.
    let (status, r) = post(&url, &json!({"phone": number, "code": code})).await?;
    assert_eq!(status, 429, "{r}");
    assert_eq!(r["error"], "TooManyAttemptsException");
    // The account is not locked: still pending, the login says to confirm.
    login_refused(base, &user).await?;
    // A new code: the same answer as for a number nobody registered.
    let ask = format!("{url}/code");
    let (status, mine) = post(&ask, &json!({"phone": number})).await?;
    assert_eq!(status, 202, "{mine}");
    let (status, nobody) = post(&ask, &json!({"phone": phone()})).await?;
    assert_eq!(status, 202);
    assert_eq!(mine, nobody);
    let texts = mail.texts(&number, 2).await?;
    let fresh = code_of(&texts[1])?;
    if fresh != code {
        // The old code is replaced: it is a wrong try at the new one.
        let (status, r) = post(&url, &json!({"phone": number, "code": code})).await?;
        assert_eq!(status, 400, "{r}");
    }
    let (status, r) = post(&url, &json!({"phone": number, "code": fresh})).await?;
    assert_eq!(status, 200, "{r}");
    login_works(base, &user).await?;
    // Three new codes per number per window: the fourth waits.
    let other = phone();
    for _ in 0..3 {
        assert_eq!(post(&ask, &json!({"phone": other})).await?.0, 202);
    }
    let (status, r) = post(&ask, &json!({"phone": other})).await?;
    assert_eq!(status, 429, "{r}");
    assert_eq!(r["field"], "phone");
    Ok(())
}

// --- the embedded default ---------------------------------------------------------------

#[tokio::test]
async fn embedded_email_link_in_chromium_then_login() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    bad_input(&p.accounts).await?;
    let mail = Mailbox::Inbox(p.accounts.clone());
    email_link(&p.accounts, &p.db_url, &mail, |link| async move {
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let (browser, _profile) = admit_e2e::platform::chromium()?;
            let tab = browser.new_tab()?;
            tab.set_default_timeout(Duration::from_secs(60));
            tab.navigate_to(&link)?;
            tab.wait_for_element("#confirm")?.click()?;
            tab.wait_for_element("#confirmed")
                .with_context(|| format!("not confirmed; at {}", tab.get_url()))?;
            tab.wait_for_element("#sign-in")?;
            Ok(())
        })
        .await?
    })
    .await
}

#[tokio::test]
async fn embedded_sms_code_at_the_api_and_on_the_page() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let mail = Mailbox::Inbox(p.accounts.clone());
    sms_code(&p.accounts, &p.db_url, &mail).await?;
    // The inbox shows the text message beside the mail.
    let all: Vec<Value> = http()
        .get(format!("{}/dev/inbox.json", p.accounts))
        .send()
        .await?
        .json()
        .await?;
    assert!(all.iter().any(|m| m["channel"] == "sms"));
    assert!(all.iter().any(|m| m["channel"] == "email"));
    Ok(())
}

#[tokio::test]
async fn embedded_five_wrong_codes_lock_the_code_not_the_account() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    lock_and_new_code(&p.accounts, &Mailbox::Inbox(p.accounts.clone())).await
}

// --- the production topology --------------------------------------------------------------

#[tokio::test]
async fn production_sms_at_a_gateway_and_email_link_at_smtp() -> anyhow::Result<()> {
    let gateway = Gateway::start()?;
    let t = Topology::new(&[
        ("ADMIT__MAILER__SMS__URL", gateway.url.as_str()),
        ("ADMIT__MAILER__SMS__TOKEN", "gateway-secret"),
    ])?;
    let account = t.start("admit-account")?;
    let _mailer = t.start("admit-mailer")?;
    let base = account.url.clone();
    let mail = Mailbox::Production {
        smtp: &t.smtp,
        gateway: &gateway,
        public: "https://accounts.example.test".into(),
        base: base.clone(),
    };
    bad_input(&base).await?;
    let b = base.clone();
    email_link(&base, &t.tdb.url, &mail, |link| press(b, link)).await?;
    sms_code(&base, &t.tdb.url, &mail).await?;
    lock_and_new_code(&base, &mail).await?;
    // The gateway got the configured token and one POST per text, each recorded
    // as sent, to the phone, in mail_messages.
    let all = gateway
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(all.len() >= 4, "{all:?}");
    let db = admit_store::Db::connect(&t.tdb.url, 1)?;
    for text in all {
        assert_eq!(text.auth.as_deref(), Some("Bearer gateway-secret"));
        let id = text.message_id.context("Idempotency-Key")?;
        let row = db
            .run(move |c| admit_store::mail::find(c, &id))
            .await?
            .context("a mail_messages row")?;
        assert_eq!(row.kind, "confirm_phone");
        assert_eq!(Value::String(row.recipient.clone()), text.body["to"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut status = row.status();
        while status != admit_store::mail::MailStatus::Sent && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let id = row.id.clone();
            status = db
                .run(move |c| admit_store::mail::find(c, &id))
                .await?
                .context("row")?
                .status();
        }
        assert_eq!(status, admit_store::mail::MailStatus::Sent);
    }
    // No code or link in the logs.
    let logs = account.log_text();
    assert!(!logs.contains("/confirm?token="), "{logs}");
    Ok(())
}

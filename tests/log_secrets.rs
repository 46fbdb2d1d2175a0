//! Logs carry no secret (SECURITY.md "Input"): the production topology (account,
//! oauth and mailer, PostgreSQL, Redis, a real SMTP server) runs with
//! `RUST_LOG=trace` — every crate, ours and the dependencies', at trace, except the
//! targets `admit_runtime::logging` caps whatever the filter says — through the
//! flows that carry secrets; then every line every process logged is searched for
//! every password, token, code, client secret, API key, link token and refresh token
//! used, as sent and in its URL-encoded and base64 forms.

use admit_e2e::platform::{hidden_fields, query_of, Agent, Platform};
use admit_e2e::{http, unique, SmtpCapture};
use anyhow::Context;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The forms in which a secret could reach a log line: as it is, form- and
/// percent-encoded, and in base64 (standard and URL-safe).
fn forms(secret: &str) -> Vec<String> {
    let form: String = serde_urlencoded::to_string([("v", secret)])
        .unwrap_or_default()
        .trim_start_matches("v=")
        .to_owned();
    let percent = form.replace('+', "%20");
    let mut out = vec![
        secret.to_owned(),
        form,
        percent,
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        // As a JSON string inside a JSON log line.
        serde_json::to_string(secret)
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned(),
    ];
    out.sort();
    out.dedup();
    out
}

/// The names of the secrets found in `logs`, with the line each was first seen on.
fn leaks(logs: &str, secrets: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, secret) in secrets {
        for form in forms(secret) {
            if let Some(line) = logs.lines().find(|l| l.contains(&form)) {
                let shown: String = line.chars().take(300).collect();
                found.push(format!("{name} (as {form:?}) in: {shown}"));
                break;
            }
        }
    }
    found
}

#[test]
fn the_scanner_finds_every_form_of_a_secret() {
    let secrets = vec![
        ("password".to_owned(), "p@ss word+9/x".to_owned()),
        ("token".to_owned(), "rt_abcDEF123-_xyz".to_owned()),
    ];
    assert!(leaks("nothing here\nat all", &secrets).is_empty());
    for logs in [
        "login password=p@ss word+9/x",
        "body: login=a&password=p%40ss+word%2B9%2Fx",
        "GET /x?password=p%40ss%20word%2B9%2Fx",
        &format!("Authorization: Basic {}", STANDARD.encode("p@ss word+9/x")),
        &format!("AUTH PLAIN {}", URL_SAFE_NO_PAD.encode("p@ss word+9/x")),
    ] {
        let got = leaks(logs, &secrets);
        assert_eq!(got.len(), 1, "{logs}: {got:?}");
        assert!(got[0].starts_with("password"), "{got:?}");
    }
    let got = leaks(
        "{\"fields\":{\"body\":\"refresh_token=rt_abcDEF123-_xyz\"}}",
        &secrets,
    );
    assert!(got[0].starts_with("token"), "{got:?}");
}

/// Collects the secrets of the run.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, name: &str, value: &str) -> String {
        assert!(
            value.len() >= 8,
            "{name} is too short to search for: {value:?}"
        );
        self.0.push((name.to_owned(), value.to_owned()));
        value.to_owned()
    }
}

fn str_of(v: &Value, key: &str) -> anyhow::Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{key} in {v}"))
}

async fn form_post(
    url: &str,
    basic: (&str, &str),
    form: &[(&str, &str)],
) -> anyhow::Result<(u16, Value)> {
    let res = http()
        .post(url)
        .basic_auth(basic.0, Some(basic.1))
        .form(form)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

/// The link (`…{path}?token=…`) of the newest message to `to` that has one.
fn link_in(smtp: &SmtpCapture, to: &str, path: &str) -> anyhow::Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let link = smtp
            .messages()
            .into_iter()
            .filter(|m| m.to.eq_ignore_ascii_case(to))
            .filter_map(|m| {
                m.text
                    .split_whitespace()
                    .find(|w| w.contains(&format!("{path}?token=")))
                    .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_owned())
            })
            .next_back();
        if let Some(l) = link {
            return Ok(l);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no {path} link reached {to}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens a password link and chooses `password` on its page.
async fn choose_password(
    agent: &mut Agent,
    accounts: &str,
    link: &str,
    path: &str,
    password: &str,
) -> anyhow::Result<u16> {
    let page = agent.get(link).await?;
    anyhow::ensure!(page.status == 200, "{link}: {} {}", page.status, page.body);
    let mut form = hidden_fields(&page.body);
    form.push(("password".into(), password.into()));
    form.push(("password_confirm".into(), password.into()));
    Ok(agent
        .post(&format!("{accounts}{path}"), &form)
        .await?
        .status)
}

#[tokio::test]
async fn no_secret_reaches_the_logs_at_trace() -> anyhow::Result<()> {
    let smtp = SmtpCapture::start()?;
    let mut p = Platform::production(&[("RUST_LOG", "trace"), ("NO_COLOR", "1")])?;
    p.start_mailer(&smtp)?;
    let mut s = Secrets::default();
    for (k, v) in p.env() {
        if k == "ADMIT__OAUTH__KEY_ENCRYPTION_KEY" || k == "ADMIT__INTERNAL__LINK_KEY" {
            s.add(k, v);
        }
    }
    let redirect_uri = "https://app.example.test/cb";

    // The operator's partner: a confidential client, an API key, a plan code.
    let partner = p.cli(&["partner", "create", "--name", "Velo Lease"])?;
    let pid = str_of(&partner, "partner_id")?;
    let mut args = vec![
        "client",
        "create",
        "--partner",
        &pid,
        "--name",
        "Velo App",
        "--redirect-uri",
        redirect_uri,
    ];
    for g in ["authorization_code", "refresh_token", "client_credentials"] {
        args.extend(["--grant", g]);
    }
    for sc in ["openid", "email", "accounts:create"] {
        args.extend(["--scope", sc]);
    }
    let client = p.cli(&args)?;
    let client_id = str_of(&client, "client_id")?;
    let client_secret = s.add("client secret", &str_of(&client, "client_secret")?);
    s.add("Basic credentials", &format!("{client_id}:{client_secret}"));
    let api_key = s.add(
        "API key",
        &str_of(
            &p.cli(&["api-key", "create", "--partner", &pid])?,
            "api_key",
        )?,
    );
    p.cli(&["plan-code", "add", "--partner", &pid, "PLAN-A"])?;
    let basic = (client_id.as_str(), client_secret.as_str());

    // Sign-up with a password (the API), then login: wrong password, right one.
    let email = format!("{}@example.com", unique("ada"));
    let password = s.add("sign-up password", "Sign-up p@ss 1+/=");
    p.user(&email, &password).await?;
    let mut agent = Agent::new()?;
    let wrong = s.add("wrong password", "Wr0ng p@ssword&x");
    let page = agent.login(&p.accounts, &email, &wrong).await?;
    assert_eq!(page.status, 401, "a wrong password is refused on the page");
    let page = agent.login(&p.accounts, &email, &password).await?;
    assert_eq!(page.status, 303, "{}", page.body);
    let session = agent
        .cookie("__Host-admit_session")
        .context("a session cookie")?
        .clone();
    s.add("session cookie", &session);

    // Authorization code + PKCE, the code exchange, refresh, introspection, revocation.
    let verifier = s.add("PKCE verifier", &pkce_verifier());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = unique("st");
    let url = format!(
        "{}/oauth/authorize?{}",
        p.issuer,
        serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email"),
            ("state", state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])?
    );
    let back = agent.authorize(&url).await?;
    let code = s.add(
        "authorization code",
        query_of(&back).get("code").context("code")?,
    );
    let token_url = format!("{}/oauth/token", p.issuer);
    let (status, tokens) = form_post(
        &token_url,
        basic,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{tokens}");
    let access = s.add("access token", &str_of(&tokens, "access_token")?);
    let refresh = s.add("refresh token", &str_of(&tokens, "refresh_token")?);
    s.add("id token", &str_of(&tokens, "id_token")?);
    let (status, rotated) = form_post(
        &token_url,
        basic,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await?;
    assert_eq!(status, 200, "{rotated}");
    let access2 = s.add("refreshed access token", &str_of(&rotated, "access_token")?);
    let refresh2 = s.add("rotated refresh token", &str_of(&rotated, "refresh_token")?);
    let (status, seen) = form_post(
        &format!("{}/oauth/introspect", p.issuer),
        basic,
        &[("token", &access2)],
    )
    .await?;
    assert_eq!((status, &seen["active"]), (200, &json!(true)), "{seen}");
    for t in [&access, &refresh2] {
        let (status, _) = form_post(
            &format!("{}/oauth/revoke", p.issuer),
            basic,
            &[("token", t)],
        )
        .await?;
        assert_eq!(status, 200);
    }

    // The partner API with a client_credentials bearer token (document 002).
    let (status, cc) = form_post(
        &token_url,
        basic,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "accounts:create"),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{cc}");
    let bearer = s.add("partner bearer token", &str_of(&cc, "access_token")?);
    let partner_email = format!("{}@example.com", unique("doc"));
    let partner_password = s.add("partner-set password", "Doc p@ssw0rd%20+x");
    let res = http()
        .post(format!("{}/api/account/", p.accounts))
        .bearer_auth(&bearer)
        .json(
            &json!({"firstName": "Doc", "lastName": "Test", "email": partner_email,
            "username": unique("doc"), "password": partner_password}),
        )
        .send()
        .await?;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await?;
    s.add(
        "partner authorization code",
        body["account"]["accessToken"]["code"]
            .as_str()
            .context("code")?,
    );

    // user.create with the API key; the set-password link, opened and used.
    let jane = format!("{}@example.com", unique("jane"));
    let res = http()
        .post(format!("{}/receiver/APIv3/user.create", p.accounts))
        .bearer_auth(&api_key)
        .json(
            &json!({"users": [{"BikePlanCode": "PLAN-A", "FirstName": "Jane",
            "Email": jane, "Language": "EN", "partner_EmployeeID": unique("e")}]}),
        )
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    let link = link_in(&smtp, &jane, "/password/set")?;
    s.add(
        "set-password link token",
        query_of(&link).get("token").context("token")?,
    );
    let chosen = s.add("chosen password", "Ch0sen p@ss/word=");
    let mut user = Agent::new()?;
    let status = choose_password(&mut user, &p.accounts, &link, "/password/set", &chosen).await?;
    assert_eq!(status, 303);

    // A password reset: the link, opened and used.
    let page = user.get(&format!("{}/password/forgot", p.accounts)).await?;
    let mut form = hidden_fields(&page.body);
    form.push(("email".into(), jane.clone()));
    let asked = user
        .post(&format!("{}/password/forgot", p.accounts), &form)
        .await?;
    assert_eq!(asked.status, 200);
    let link = link_in(&smtp, &jane, "/password/reset")?;
    s.add(
        "reset link token",
        query_of(&link).get("token").context("token")?,
    );
    let renewed = s.add("reset password", "Res3t p@ss&word!");
    let status =
        choose_password(&mut user, &p.accounts, &link, "/password/reset", &renewed).await?;
    assert_eq!(status, 200);

    // Every process's log, every line, every secret.
    let logs = p.logs();
    let lines = logs.lines().count();
    assert!(
        logs.contains("TRACE") || logs.contains("\"level\":\"TRACE\""),
        "the services did not log at trace ({lines} lines)"
    );
    let found = leaks(&logs, &s.0);
    assert!(
        found.is_empty(),
        "{} of {} secrets reached the logs ({lines} lines):\n{}",
        found.len(),
        s.0.len(),
        found.join("\n")
    );
    Ok(())
}

/// A PKCE verifier (RFC 7636: 43 to 128 unreserved characters), random.
fn pkce_verifier() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

//! Partner registration as partners following documents 002 and 001 call it:
//! `POST /api/account/` with a client_credentials token and the code exchange;
//! `user.create` with an API key, one user and a list, retried; the outcome emails
//! (at the embedded inbox, and at a real SMTP server in the production topology);
//! the set-password page in headless Chromium; links built from the configured base
//! URL whatever `Host` says.

use admit_e2e::platform::{hidden_fields, Agent, Callback, Platform};
use admit_e2e::topology::Topology;
use admit_e2e::{by_recipient, http, unique};
use anyhow::Context;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const GRANTS: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];

struct Partner {
    id: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    api_key: String,
}

/// Every test partner's colour, as the operator types it.
const BRAND_COLOR: &str = "#0A7D3B";

/// A partner with a landing page, a colour, a confidential client, an API key and
/// plan codes.
fn partner(
    cli: impl Fn(&[&str]) -> anyhow::Result<Value>,
    name: &str,
    landing: &str,
    redirect_uri: &str,
) -> anyhow::Result<Partner> {
    let p = cli(&[
        "partner",
        "create",
        "--name",
        name,
        "--landing-url",
        landing,
        "--brand-color",
        BRAND_COLOR,
    ])?;
    let id = p["partner_id"].as_str().context("partner_id")?.to_owned();
    let mut args = vec![
        "client",
        "create",
        "--partner",
        &id,
        "--name",
        "Partner App",
        "--redirect-uri",
        redirect_uri,
    ];
    for g in GRANTS {
        args.extend(["--grant", g]);
    }
    for s in ["openid", "profile", "email", "accounts:create"] {
        args.extend(["--scope", s]);
    }
    let c = cli(&args)?;
    let k = cli(&["api-key", "create", "--partner", &id])?;
    cli(&["plan-code", "add", "--partner", &id, "PLAN-A", "PLAN-B"])?;
    Ok(Partner {
        client_id: c["client_id"].as_str().context("client_id")?.to_owned(),
        client_secret: c["client_secret"].as_str().context("secret")?.to_owned(),
        api_key: k["api_key"].as_str().context("api_key")?.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        id,
    })
}

/// The partner "Velo Lease" of the embedded platform `p`.
fn velo(p: &Platform) -> anyhow::Result<Partner> {
    partner(
        |a| p.cli(a),
        "Velo Lease",
        "https://velo.example.com/",
        "https://velo.example.com/cb",
    )
}

async fn client_credentials(issuer: &str, p: &Partner) -> anyhow::Result<String> {
    let res = http()
        .post(format!("{issuer}/oauth/token"))
        .basic_auth(&p.client_id, Some(&p.client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "accounts:create"),
        ])
        .send()
        .await?;
    anyhow::ensure!(res.status() == 200, "token answered {}", res.status());
    let body: Value = res.json().await?;
    Ok(body["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned())
}

/// The embedded inbox's messages to `to`, waiting until there are `n`.
async fn inbox(base: &str, to: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all: Vec<Value> = http()
            .get(format!("{base}/dev/inbox.json"))
            .send()
            .await?
            .json()
            .await?;
        let mine: Vec<Value> = all
            .into_iter()
            .filter(|m| m["to"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(to)))
            .collect();
        if mine.len() >= n || Instant::now() > deadline {
            return Ok(mine);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The set-password link of an email's text part.
fn set_password_link(text: &str) -> anyhow::Result<String> {
    text.split_whitespace()
        .find(|w| w.contains("/password/set?token="))
        .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_owned())
        .with_context(|| format!("no set-password link in: {text}"))
}

fn doc_002_body(email: &str, username: &str) -> Value {
    json!({"firstName": "Doc", "lastName": "Test", "email": email, "username": username, "password": "doctestpassword"})
}

async fn post_json(
    url: &str,
    bearer: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, Value)> {
    let mut req = http().post(url).bearer_auth(bearer).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

// --- document 002: account creation with a code ---------------------------------

async fn document_002(p: Platform) -> anyhow::Result<()> {
    let partner = partner(
        |a| p.cli(a),
        "Carvoyant Partner",
        "https://partner.example.com/welcome",
        "https://test.example.com/cb",
    )?;
    let token = client_credentials(&p.issuer, &partner).await?;
    let email = format!("{}@example.com", unique("doc"));
    let username = unique("doctest");
    let (status, body) = post_json(
        &format!("{}/api/account/", p.accounts),
        &token,
        &doc_002_body(&email, &username),
        &[],
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    // Exactly the document's shape.
    let mut keys: Vec<&str> = body["account"]
        .as_object()
        .context("account")?
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "accessToken",
            "dateCreated",
            "email",
            "firstName",
            "id",
            "lastName",
            "phone",
            "preferredContact",
            "timeZone",
            "username",
            "zipcode"
        ]
    );
    assert_eq!(body["totalRecords"], 1);
    assert_eq!(body["account"]["firstName"], "Doc");
    assert_eq!(body["account"]["email"], email.as_str());
    assert_eq!(body["account"]["username"], username.as_str());
    assert!(body["account"]["zipcode"].is_null());
    let date = body["account"]["dateCreated"].as_str().context("date")?;
    assert_eq!(date.len(), 20, "{date}");
    assert!(
        date.ends_with("+0000") && date.as_bytes()[8] == b'T',
        "{date}"
    );
    let account_id = body["account"]["id"].as_str().context("id")?.to_owned();
    let code = body["account"]["accessToken"]["code"]
        .as_str()
        .context("code")?
        .to_owned();

    // curl --user CLIENT:SECRET -d "grant_type=authorization_code&code=…&redirect_uri=…"
    let exchange = || {
        http()
            .post(format!("{}/oauth/token", p.issuer))
            .basic_auth(&partner.client_id, Some(&partner.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", partner.redirect_uri.as_str()),
            ])
            .send()
    };
    let res = exchange().await?;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await?;
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 86400);
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let access = tokens["access_token"].as_str().context("access_token")?;
    let me: Value = http()
        .get(format!("{}/oauth/userinfo", p.issuer))
        .bearer_auth(access)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["sub"], account_id.as_str(), "{me}");
    // The code works once.
    let again = exchange().await?;
    assert_eq!(again.status(), 400);
    let again: Value = again.json().await?;
    assert_eq!(again["error"], "invalid_grant");

    // The same address or username again: 409, naming the field.
    let (status, body) = post_json(
        &format!("{}/api/account/", p.accounts),
        &token,
        &doc_002_body(&email.to_uppercase(), &unique("other")),
        &[],
    )
    .await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "ContactAlreadyUsedException");
    assert_eq!(body["field"], "email");
    // Bad input names the field and writes nothing.
    for (field, patch) in [
        ("firstName", json!({"firstName": null})),
        ("email", json!({"email": "no-domain"})),
        ("password", json!({"password": "12345"})),
        ("username", json!({"username": "a b"})),
        ("phone", json!({"phone": "12345"})),
        ("preferredContact", json!({"preferredContact": "pigeon"})),
        ("shoeSize", json!({"shoeSize": 44})),
    ] {
        let mut b = doc_002_body(&format!("{}@example.com", unique("bad")), &unique("bad"));
        for (k, v) in patch.as_object().context("patch")? {
            b[k] = v.clone();
        }
        let (status, body) =
            post_json(&format!("{}/api/account/", p.accounts), &token, &b, &[]).await?;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["field"], field, "{body}");
    }
    // An API key is a partner credential but has no client to issue a code to.
    let (status, _) = post_json(
        &format!("{}/api/account/", p.accounts),
        &partner.api_key,
        &doc_002_body(&format!("{}@example.com", unique("k")), &unique("k")),
        &[],
    )
    .await?;
    assert_eq!(status, 403);
    let (status, _) = post_json(
        &format!("{}/api/account/", p.accounts),
        "not-a-token",
        &doc_002_body(&format!("{}@example.com", unique("k")), &unique("k")),
        &[],
    )
    .await?;
    assert_eq!(status, 401);

    if p.mode == "embedded" {
        // The notice of SPEC §4: who holds the data, the username, the portal, a
        // set-password link; never the password.
        let mail = inbox(&p.accounts, &email, 1).await?;
        assert_eq!(mail.len(), 1, "{mail:?}");
        let text = mail[0]["text"].as_str().unwrap_or_default();
        let html = mail[0]["html"].as_str().unwrap_or_default();
        assert!(mail[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("Carvoyant Partner")));
        assert!(text.contains(&username), "{text}");
        assert!(!text.contains("doctestpassword") && !html.contains("doctestpassword"));
        let link = set_password_link(text)?;
        assert!(link.starts_with(&format!("{}/password/set?token=", p.accounts)));
        let token = link.split("token=").nth(1).context("token")?;
        // Neither the token nor the code is stored in clear.
        let stored = p.stored_text()?;
        assert!(
            !stored.contains(token),
            "a set-password token is stored in clear"
        );
        assert!(!stored.contains(&code), "a code is stored in clear");
    }
    Ok(())
}

#[tokio::test]
async fn document_002_embedded() -> anyhow::Result<()> {
    document_002(Platform::embedded(&[])?).await
}

#[tokio::test]
async fn document_002_production() -> anyhow::Result<()> {
    document_002(Platform::production(&[])?).await
}

// --- document 001: user.create -------------------------------------------------

fn doc_001_user(email: &str, plan: &str, lang: &str, employee: &str) -> Value {
    json!({
        "BikePlanCode": plan,
        "FirstName": "Jane",
        "LastName": "Johansson",
        "Email": email,
        "Language": lang,
        "ContractType": "",
        "partner_EmployeeID": employee,
        "PersonnelNumber": "A1234"
    })
}

/// What the subject of each outcome starts with, per language.
fn subject_starts(kind: &str, lang: &str) -> &'static str {
    match (kind, lang) {
        ("created", "fr") => "Bienvenue",
        ("created", "de") => "Willkommen",
        ("created", "nl") => "Welkom",
        ("created", _) => "Welcome",
        ("existing", "fr") => "Vous avez déjà",
        ("existing", "de") => "Sie haben bereits",
        ("existing", "nl") => "Je hebt al",
        ("existing", _) => "You already",
        ("failed", "fr") => "Votre inscription",
        ("failed", "de") => "Ihre Registrierung",
        ("failed", "nl") => "Je registratie",
        (_, _) => "Your registration",
    }
}

async fn outbox_rows(db_url: &str) -> anyhow::Result<i64> {
    use diesel::prelude::*;
    let mut c = diesel::PgConnection::establish(db_url)?;
    Ok(admit_store::schema::outbox::table
        .count()
        .get_result(&mut c)?)
}

#[tokio::test]
async fn document_001_lists_at_a_real_smtp_server() -> anyhow::Result<()> {
    let t = Topology::new(&[])?;
    let account = t.start("admit-account")?;
    let _oauth = t.start("admit-oauth")?;
    let _mailer = t.start("admit-mailer")?;
    let cli = |a: &[&str]| t.cli(a);
    let velo = partner(
        cli,
        "Velo Lease",
        "https://velo.example.com/",
        "https://velo.example.com/cb",
    )?;
    let other = partner(
        cli,
        "Other Partner",
        "https://other.example.com/",
        "https://other.example.com/cb",
    )?;
    let url = format!("{}/receiver/APIv3/user.create", account.url);
    let tag = unique("b");

    // Document 001's body as is: one user.
    let jane = format!("jane-{tag}@example.com");
    let (status, one) = post_json(
        &url,
        &velo.api_key,
        &json!({"user": doc_001_user(&jane, "PLAN-A", "FR", &format!("ABC123-{tag}"))}),
        &[],
    )
    .await?;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["results"][0]["status"], "created", "{one}");
    assert_eq!(one["counts"]["created"], 1);

    // 100 addresses that already have an account (another partner registered them).
    let existing: Vec<String> = (0..100)
        .map(|i| format!("old-{i}-{tag}@example.com"))
        .collect();
    let first: Vec<Value> = existing
        .iter()
        .enumerate()
        .map(|(i, e)| doc_001_user(e, "PLAN-A", "EN", &format!("o{i}")))
        .collect();
    let (status, r) = post_json(&url, &other.api_key, &json!({"users": first}), &[]).await?;
    assert_eq!(status, 200);
    assert_eq!(r["counts"]["created"], 100, "{}", r["counts"]);

    // 1,000 users: 700 new, 100 existing, 100 unknown plan codes, 100 malformed
    // addresses; languages en, fr, de, nl, and one the mailer does not have (es).
    let langs = ["EN", "fr", "De", "NL", "es"];
    let mut users = Vec::new();
    let mut expect: Vec<(String, &str, String)> = Vec::new(); // (email, kind, lang)
    for i in 0..1000 {
        let lang = langs[i % langs.len()];
        let employee = format!("e{i}-{tag}");
        let (email, plan, kind) = match i % 10 {
            0 => (existing[i / 10].clone(), "PLAN-B", "existing"),
            1 => (
                format!("plan-{i}-{tag}@example.com"),
                "NO-SUCH-PLAN",
                "failed",
            ),
            2 => (
                format!("broken-{i}-{tag}.example.com"),
                "PLAN-A",
                "bad-address",
            ),
            _ => (format!("new-{i}-{tag}@example.com"), "PLAN-A", "created"),
        };
        users.push(doc_001_user(&email, plan, lang, &employee));
        expect.push((email, kind, lang.to_ascii_lowercase()));
    }
    let list = json!({ "users": users });
    let (status, r) = post_json(&url, &velo.api_key, &list, &[]).await?;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["total"], 1000);
    assert_eq!(
        r["counts"],
        json!({"created": 700, "existing": 100, "failed": 200})
    );
    let results = r["results"].as_array().context("results")?;
    for (i, (res, (email, kind, _))) in results.iter().zip(&expect).enumerate() {
        assert_eq!(res["index"], i);
        let want = if *kind == "bad-address" {
            "failed"
        } else {
            kind
        };
        assert_eq!(res["status"], want, "row {i}: {res}");
        match *kind {
            "failed" => assert_eq!(res["reasons"][0]["field"], "BikePlanCode", "{res}"),
            "bad-address" => assert_eq!(res["reasons"][0]["field"], "Email", "{res}"),
            _ => assert!(res["account_id"].is_string(), "{res}"),
        }
        assert_eq!(res["Email"], email.as_str());
    }

    // Each address gets its one email, in its language: 1 + 100 + 700 + 100 + 100.
    let want = 1 + 100 + 700 + 100 + 100;
    let mails = t.smtp.wait_for(want, Duration::from_secs(180));
    assert_eq!(mails.len(), want, "emails at the SMTP server");
    let counts = by_recipient(&mails);
    let by_to: HashMap<String, &admit_e2e::CapturedMail> = mails
        .iter()
        .map(|m| (m.to.to_ascii_lowercase(), m))
        .collect();
    for (email, kind, lang) in &expect {
        let key = email.to_ascii_lowercase();
        if *kind == "bad-address" {
            assert!(!counts.contains_key(&key));
            continue;
        }
        // The existing addresses also had the other partner's welcome.
        let n = if *kind == "existing" { 2 } else { 1 };
        assert_eq!(counts.get(&key), Some(&n), "{email}");
        let mail = mails
            .iter()
            .filter(|m| m.to.eq_ignore_ascii_case(email))
            .find(|m| m.subject.starts_with(subject_starts(kind, lang)))
            .with_context(|| format!("{email} ({kind}, {lang}): {:?}", by_to.get(&key)))?;
        assert!(!mail.text.is_empty() && !mail.html.is_empty());
        // The partner's colour, as the CLI stored it.
        assert!(mail.html.contains("#0a7d3b"), "{}", mail.html);
        match *kind {
            "created" | "existing" => {
                let link = set_password_link(&mail.text)?;
                assert!(link.starts_with("https://accounts.example.test/password/set?token="));
            }
            _ => assert!(mail.text.contains("NO-SUCH-PLAN"), "{}", mail.text),
        }
    }

    // The same list again: the same results, nothing created, nothing queued.
    let before = outbox_rows(&t.tdb.url).await?;
    let (status, again) = post_json(&url, &velo.api_key, &list, &[]).await?;
    assert_eq!(status, 200);
    assert_eq!(again["counts"], r["counts"]);
    for (a, b) in again["results"]
        .as_array()
        .context("results")?
        .iter()
        .zip(results)
    {
        assert_eq!(a, b);
    }
    assert_eq!(
        outbox_rows(&t.tdb.url).await?,
        before,
        "a retry queued email"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(t.smtp.messages().len(), want, "a retry sent email");
    Ok(())
}

/// Counts of the rows a batch writes, from the database.
async fn table_counts(db_url: &str, partner_id: &str) -> anyhow::Result<[i64; 6]> {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = BigInt)]
        accounts: i64,
        #[diesel(sql_type = BigInt)]
        contacts: i64,
        #[diesel(sql_type = BigInt)]
        memberships: i64,
        #[diesel(sql_type = BigInt)]
        links: i64,
        #[diesel(sql_type = BigInt)]
        live_links: i64,
        #[diesel(sql_type = BigInt)]
        outbox: i64,
    }
    let mut c = diesel::PgConnection::establish(db_url)?;
    let n: Counts = diesel::sql_query(
        "SELECT (SELECT count(*) FROM accounts) AS accounts, \
                (SELECT count(*) FROM contacts) AS contacts, \
                (SELECT count(*) FROM memberships WHERE partner_id = $1) AS memberships, \
                (SELECT count(*) FROM password_tokens) AS links, \
                (SELECT count(DISTINCT account_id) FROM password_tokens WHERE used_at IS NULL) AS live_links, \
                (SELECT count(*) FROM outbox) AS outbox",
    )
    .bind::<Text, _>(partner_id)
    .get_result(&mut c)?;
    Ok([
        n.accounts,
        n.contacts,
        n.memberships,
        n.links,
        n.live_links,
        n.outbox,
    ])
}

/// A list of 2,600 users is three chunks on PostgreSQL (each written with `COPY`):
/// new users, addresses another partner registered, unknown plan codes, malformed
/// addresses, and rows of the first chunks repeated in later ones. Each row answers
/// as it should, each user has one account, one membership and one live link, each
/// address gets one email through the outbox, the stream and the mailer; the same
/// list again creates and sends nothing.
#[tokio::test]
async fn a_list_over_several_chunks_mixing_new_existing_failed_and_repeated_rows(
) -> anyhow::Result<()> {
    let t = Topology::new(&[])?;
    let account = t.start("admit-account")?;
    let _mailer = t.start("admit-mailer")?;
    let cli = |a: &[&str]| t.cli(a);
    let velo = partner(
        cli,
        "Velo Lease",
        "https://velo.example.com/",
        "https://velo.example.com/cb",
    )?;
    let other = partner(
        cli,
        "Other Partner",
        "https://other.example.com/",
        "https://other.example.com/cb",
    )?;
    let url = format!("{}/receiver/APIv3/user.create", account.url);
    let tag = unique("c");

    let old: Vec<String> = (0..250)
        .map(|i| format!("old-{i}-{tag}@example.com"))
        .collect();
    let first: Vec<Value> = old
        .iter()
        .enumerate()
        .map(|(i, e)| doc_001_user(e, "PLAN-A", "EN", &format!("o{i}")))
        .collect();
    let (status, r) = post_json(&url, &other.api_key, &json!({"users": first}), &[]).await?;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["counts"]["created"], 250, "{}", r["counts"]);

    // Row i: 13k → an existing address; 13k+1 → an unknown plan code; 13k+2 → a
    // malformed address; 13k+3 from 1,000 on → row i-1,000 again (a new user of an
    // earlier chunk: 1,000 ≡ 12 mod 13, so that row is new); anything else new.
    let n = 2_600;
    let mut users: Vec<Value> = Vec::new();
    let mut kinds = Vec::new();
    for i in 0..n {
        let employee = format!("e{i}-{tag}");
        let (user, kind) = match i % 13 {
            0 => (
                doc_001_user(&old[i / 13], "PLAN-B", "FR", &employee),
                "existing",
            ),
            1 => (
                doc_001_user(
                    &format!("plan-{i}-{tag}@example.com"),
                    "NO-SUCH-PLAN",
                    "DE",
                    &employee,
                ),
                "failed",
            ),
            2 => (
                doc_001_user(
                    &format!("broken-{i}-{tag}.example.com"),
                    "PLAN-A",
                    "NL",
                    &employee,
                ),
                "bad-address",
            ),
            3 if i >= 1000 => (users[i - 1000].clone(), "repeat"),
            _ => (
                doc_001_user(
                    &format!("new-{i}-{tag}@example.com"),
                    "PLAN-A",
                    "EN",
                    &employee,
                ),
                "created",
            ),
        };
        users.push(user);
        kinds.push(kind);
    }
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    let (created, existing, failed, bad, repeats) = (
        count("created"),
        count("existing"),
        count("failed"),
        count("bad-address"),
        count("repeat"),
    );
    let before = table_counts(&t.tdb.url, &velo.id).await?;
    let list = json!({ "users": users });
    let (status, r) = post_json(&url, &velo.api_key, &list, &[]).await?;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["total"], n);
    assert_eq!(
        r["counts"],
        json!({"created": created + repeats, "existing": existing, "failed": failed + bad})
    );
    let results = r["results"].as_array().context("results")?;
    for (i, (res, kind)) in results.iter().zip(&kinds).enumerate() {
        assert_eq!(res["index"], i, "{res}");
        match *kind {
            "repeat" => {
                assert_eq!(res["status"], "created", "row {i}: {res}");
                assert_eq!(
                    res["account_id"],
                    results[i - 1000]["account_id"],
                    "row {i}"
                );
            }
            "bad-address" => assert_eq!(res["reasons"][0]["field"], "Email", "{res}"),
            "failed" => assert_eq!(res["reasons"][0]["field"], "BikePlanCode", "{res}"),
            k => {
                assert_eq!(res["status"], k, "row {i}: {res}");
                assert!(res["account_id"].is_string(), "{res}");
            }
        }
    }
    let after = table_counts(&t.tdb.url, &velo.id).await?;
    let (c, e, f) = (created as i64, existing as i64, failed as i64);
    assert_eq!(
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2],
            after[3] - before[3],
            after[5] - before[5]
        ],
        // accounts, contacts, memberships, links, outbox emails
        [c, c, c + e, c + e, c + e + f],
        "rows written"
    );
    // Every account has one live link: the existing ones' older link (the other
    // partner's welcome) was replaced, the new ones had none.
    assert_eq!(after[4], 250 + c, "accounts with a live link");

    // One email per address through the stream and the mailer (the existing
    // addresses also had the other partner's welcome).
    let want = 250 + created + existing + failed;
    let mails = t.smtp.wait_for(want, Duration::from_secs(240));
    assert_eq!(mails.len(), want, "emails at the SMTP server");
    let got = by_recipient(&mails);
    for (u, kind) in users.iter().zip(&kinds) {
        let to = u["Email"].as_str().context("Email")?.to_ascii_lowercase();
        let n = match *kind {
            "bad-address" => None,
            "existing" => Some(&2),
            _ => Some(&1),
        };
        assert_eq!(got.get(&to), n, "{to} ({kind})");
    }

    // The same list again: the same answers; nothing created, nothing sent.
    let (status, again) = post_json(&url, &velo.api_key, &list, &[]).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["counts"], r["counts"]);
    assert_eq!(again["results"], r["results"]);
    assert_eq!(
        table_counts(&t.tdb.url, &velo.id).await?,
        after,
        "a retry wrote rows"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(t.smtp.messages().len(), want, "a retry sent email");
    Ok(())
}

#[tokio::test]
async fn user_create_limits_and_idempotency_keys() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let partner = velo(&p)?;
    let url = format!("{}/receiver/APIv3/user.create", p.accounts);
    // No key, a wrong key: 401.
    let res = http().post(&url).json(&json!({"users": []})).send().await?;
    assert_eq!(res.status(), 401);
    let (status, _) = post_json(&url, "ak_wrong", &json!({"users": []}), &[]).await?;
    assert_eq!(status, 401);
    // Over the limit: 413 naming the list.
    let many: Vec<Value> = (0..10_001)
        .map(|i| doc_001_user(&format!("m{i}@example.com"), "PLAN-A", "EN", &i.to_string()))
        .collect();
    let (status, body) = post_json(&url, &partner.api_key, &json!({"users": many}), &[]).await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["field"], "users");
    // Shapes that are not a user or a list.
    for bad in [json!({"users": []}), json!({"people": []}), json!([1])] {
        let (status, body) = post_json(&url, &partner.api_key, &bad, &[]).await?;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // An Idempotency-Key replays the response; another body with it answers 422.
    let tag = unique("i");
    let body = json!({"users": [doc_001_user(&format!("a-{tag}@example.com"), "PLAN-A", "EN", "1"),
                                doc_001_user(&format!("b-{tag}@example.com"), "PLAN-A", "NL", "2")]});
    let key = [("Idempotency-Key", tag.as_str())];
    let (status, first) = post_json(&url, &partner.api_key, &body, &key).await?;
    assert_eq!(status, 200);
    let res = http()
        .post(&url)
        .bearer_auth(&partner.api_key)
        .header("Idempotency-Key", tag.as_str())
        .json(&body)
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(res.json::<Value>().await?, first);
    let other =
        json!({"users": [doc_001_user(&format!("c-{tag}@example.com"), "PLAN-A", "EN", "3")]});
    let (status, body) = post_json(&url, &partner.api_key, &other, &key).await?;
    assert_eq!(status, 422, "{body}");
    // The same user twice in one list (by address in another case, or by employee
    // id): one account, one email, the same answer.
    let (x, y) = (
        format!("x-{tag}@example.com"),
        format!("y-{tag}@example.com"),
    );
    let dup = json!({"users": [doc_001_user(&x, "PLAN-A", "EN", "D1"),
                              doc_001_user(&x.to_uppercase(), "PLAN-A", "EN", "D2"),
                              doc_001_user(&y, "PLAN-A", "EN", "D1")]});
    let (status, r) = post_json(&url, &partner.api_key, &dup, &[]).await?;
    assert_eq!(status, 200, "{r}");
    let ids: Vec<&Value> = (0..3).map(|i| &r["results"][i]["account_id"]).collect();
    assert!(
        ids[0].is_string() && ids[0] == ids[1] && ids[1] == ids[2],
        "{r}"
    );
    assert_eq!(r["counts"]["created"], 3);
    assert_eq!(inbox(&p.accounts, &x, 1).await?.len(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        inbox(&p.accounts, &x, 0).await?.len(),
        1,
        "one email per user"
    );
    assert!(inbox(&p.accounts, &y, 0).await?.is_empty());
    // An account with two addresses is one user: a row with either answers the same
    // (and a row for it in the same list too), never a second membership.
    let (a1, a2) = (
        format!("a1-{tag}@example.com"),
        format!("a2-{tag}@example.com"),
    );
    let res = http()
        .post(format!("{}/account", p.accounts))
        .json(&json!({"contacts": [["EMAIL", a1, true], ["EMAIL", a2, false]], "password": "two-addr-99"}))
        .send()
        .await?;
    assert_eq!(res.status(), 201);
    let both = json!({"users": [doc_001_user(&a1, "PLAN-A", "EN", "TWO-1"),
                               doc_001_user(&a2, "PLAN-A", "EN", "TWO-2")]});
    let (status, r) = post_json(&url, &partner.api_key, &both, &[]).await?;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["results"][0]["status"], "existing");
    assert_eq!(r["results"][0]["account_id"], r["results"][1]["account_id"]);
    let (status, r2) = post_json(
        &url,
        &partner.api_key,
        &json!({"user": doc_001_user(&a2, "PLAN-A", "EN", "TWO-3")}),
        &[],
    )
    .await?;
    assert_eq!(status, 200, "{r2}");
    assert_eq!(
        r2["results"][0]["account_id"],
        r["results"][0]["account_id"]
    );
    // A user registered before answers as then, even if the row would fail today.
    let (status, r3) = post_json(
        &url,
        &partner.api_key,
        &json!({"user": doc_001_user(&x, "NO-SUCH-PLAN", "EN", "D1")}),
        &[],
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(r3["results"][0]["status"], "created", "{r3}");
    assert_eq!(r3["results"][0]["account_id"], ids[0].clone());
    // A revoked key stops at once.
    let keys = p.cli(&["api-key", "create", "--partner", &partner.id])?;
    let (key_id, api_key) = (
        keys["key_id"].as_str().context("key_id")?,
        keys["api_key"].as_str().context("api_key")?,
    );
    let one = json!({"user": doc_001_user(&format!("d-{tag}@example.com"), "PLAN-A", "EN", "4")});
    assert_eq!(post_json(&url, api_key, &one, &[]).await?.0, 200);
    p.cli(&["api-key", "revoke", key_id])?;
    assert_eq!(post_json(&url, api_key, &one, &[]).await?.0, 401);
    Ok(())
}

// --- the set-password page --------------------------------------------------------

#[tokio::test]
async fn set_password_in_chromium_then_authorize_skips_login() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let landing = Callback::start()?;
    let partner = partner(|a| p.cli(a), "Velo Lease", &landing.url, &landing.url)?;
    let email = format!("{}@example.com", unique("set"));
    let (status, r) = post_json(
        &format!("{}/receiver/APIv3/user.create", p.accounts),
        &partner.api_key,
        &json!({"user": doc_001_user(&email, "PLAN-A", "EN", "X1")}),
        &[],
    )
    .await?;
    assert_eq!(status, 200, "{r}");
    let account_id = r["results"][0]["account_id"]
        .as_str()
        .context("account_id")?
        .to_owned();
    let db = admit_store::Db::connect(&p.db_url, 1)?;
    let confirmed = |db: admit_store::Db, id: String| async move {
        db.run(move |c| admit_store::accounts::primary_email(c, &id))
            .await
            .map(|e| e.map(|(_, verified)| verified))
    };
    assert_eq!(
        confirmed(db.clone(), account_id.clone()).await?,
        Some(false)
    );
    let mail = inbox(&p.accounts, &email, 1).await?;
    let link = set_password_link(mail[0]["text"].as_str().unwrap_or_default())?;

    // A mail scanner opening the link does not use it.
    let mut scanner = Agent::new()?;
    for _ in 0..2 {
        let page = scanner.get(&link).await?;
        assert_eq!(page.status, 200);
        assert_eq!(
            page.headers
                .get("referrer-policy")
                .and_then(|v| v.to_str().ok()),
            Some("no-referrer")
        );
    }
    // A password the policy refuses is refused on the page.
    let page = scanner.get(&link).await?;
    let mut form = hidden_fields(&page.body);
    form.push(("password".into(), "12345".into()));
    form.push(("password_confirm".into(), "12345".into()));
    let refused = scanner
        .post(&format!("{}/password/set", p.accounts), &form)
        .await?;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("password-error"));

    let authorize = format!(
        "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid&state=s1",
        p.issuer,
        partner.client_id,
        urlencode(&partner.redirect_uri)
    );
    let (link2, authorize2) = (link.clone(), authorize.clone());
    let landing_url = landing.url.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let (browser, _profile) = admit_e2e::platform::chromium()?;
        let tab = browser.new_tab()?;
        tab.set_default_timeout(Duration::from_secs(60));
        tab.navigate_to(&link2)?;
        tab.wait_for_element("#password")?.click()?;
        tab.type_str("horse-battery-9")?;
        tab.wait_for_element("#password_confirm")?.click()?;
        tab.type_str("horse-battery-9")?;
        tab.wait_for_element("#set-password")?.click()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !tab.get_url().starts_with(&landing_url) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "never reached the landing page; at {}",
                tab.get_url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Logged in: authorize for the partner's client goes straight to consent.
        tab.navigate_to(&authorize2)?;
        tab.wait_for_element("#allow")
            .with_context(|| format!("no consent page; at {}", tab.get_url()))?;
        anyhow::ensure!(
            tab.find_element("#login").is_err(),
            "the login page was shown"
        );
        Ok(())
    })
    .await??;
    // The landing page was reached by the browser.
    landing.next(Duration::from_secs(10))?;
    // The link works once.
    let mut late = Agent::new()?;
    let page = late.get(&link).await?;
    assert_eq!(page.status, 410);
    // And the password works on the login page.
    let signed_in = late.login(&p.accounts, &email, "horse-battery-9").await?;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    // Using a link sent to the address confirmed it (email_verified in tokens).
    assert_eq!(confirmed(db, account_id).await?, Some(true));
    Ok(())
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)])
        .unwrap_or_default()
        .trim_start_matches("x=")
        .to_owned()
}

/// SPEC §4: choosing the password from the partner's email ends other ways in, but
/// not the grant the partner got with the account: its refresh token still works.
#[tokio::test]
async fn setting_the_password_keeps_the_grant_the_partner_got_with_the_account(
) -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let partner = velo(&p)?;
    let token = client_credentials(&p.issuer, &partner).await?;
    let email = format!("{}@example.com", unique("keep"));
    let (status, body) = post_json(
        &format!("{}/api/account/", p.accounts),
        &token,
        &doc_002_body(&email, &unique("keep")),
        &[],
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    let code = body["account"]["accessToken"]["code"]
        .as_str()
        .context("code")?;
    let tokens: Value = http()
        .post(format!("{}/oauth/token", p.issuer))
        .basic_auth(&partner.client_id, Some(&partner.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", partner.redirect_uri.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let refresh = tokens["refresh_token"]
        .as_str()
        .with_context(|| format!("refresh_token in {tokens}"))?
        .to_owned();
    let mail = inbox(&p.accounts, &email, 1).await?;
    let link = set_password_link(mail[0]["text"].as_str().unwrap_or_default())?;
    let mut user = Agent::new()?;
    let page = user.get(&link).await?;
    let mut form = hidden_fields(&page.body);
    form.push(("password".into(), "chosen-pass-1".into()));
    form.push(("password_confirm".into(), "chosen-pass-1".into()));
    let done = user
        .post(&format!("{}/password/set", p.accounts), &form)
        .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let refreshed = http()
        .post(format!("{}/oauth/token", p.issuer))
        .basic_auth(&partner.client_id, Some(&partner.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await?;
    assert_eq!(refreshed.status(), 200, "the partner's grant was revoked");
    Ok(())
}

// --- links never come from Host ---------------------------------------------------

#[tokio::test]
async fn email_links_use_the_configured_base_url_whatever_the_host() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let partner = velo(&p)?;
    let token = client_credentials(&p.issuer, &partner).await?;
    let (a, b) = (
        format!("{}@example.com", unique("host")),
        format!("{}@example.com", unique("host")),
    );
    let evil = [("Host", "evil.test"), ("X-Forwarded-Host", "evil.test")];
    // The partner's Accept-Language picks the language of the §4 email.
    let (status, body) = post_json(
        &format!("{}/api/account/", p.accounts),
        &token,
        &doc_002_body(&a, &unique("host")),
        &[
            evil[0],
            evil[1],
            ("Accept-Language", "es, de-CH;q=0.9, en;q=0.5"),
        ],
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_json(
        &format!("{}/receiver/APIv3/user.create", p.accounts),
        &partner.api_key,
        &json!({"user": doc_001_user(&b, "PLAN-A", "DE", "H1")}),
        &evil,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let german = inbox(&p.accounts, &a, 1).await?;
    assert!(
        german[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("Konto für Sie angelegt")),
        "{german:?}"
    );
    for to in [&a, &b] {
        let mail = inbox(&p.accounts, to, 1).await?;
        let text = mail[0]["text"].as_str().unwrap_or_default();
        let html = mail[0]["html"].as_str().unwrap_or_default();
        assert!(!text.contains("evil.test") && !html.contains("evil.test"));
        assert!(set_password_link(text)?.starts_with(&p.accounts));
    }
    Ok(())
}

// --- an address someone else signed up with -----------------------------------------

/// Somebody signs up with an address that is not theirs and keeps a session; the
/// partner then registers the address's owner, who gets "you already have an
/// account" with a reset link. Choosing a password there ends the other session and
/// the grants of other partners' clients (no pre-account takeover).
#[tokio::test]
async fn a_reset_from_the_existing_account_email_ends_every_other_way_in() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    let email = format!("{}@example.com", unique("owner"));
    p.user(&email, "squatter-pass-1").await?;
    let mut squatter = Agent::new()?;
    let signed_in = squatter
        .login(&p.accounts, &email, "squatter-pass-1")
        .await?;
    assert_eq!(signed_in.status, 303);
    assert_eq!(squatter.get(&format!("{}/", p.accounts)).await?.status, 200);

    let partner = velo(&p)?;
    // The squatter also authorized the partner's application: it holds a refresh
    // token of that partner's client.
    let authorize = format!(
        "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid&state=q",
        p.issuer,
        partner.client_id,
        urlencode(&partner.redirect_uri)
    );
    let back = squatter.authorize(&authorize).await?;
    let code = admit_e2e::platform::query_of(&back)
        .get("code")
        .cloned()
        .context("code")?;
    let refresh = |token: String| {
        http()
            .post(format!("{}/oauth/token", p.issuer))
            .basic_auth(&partner.client_id, Some(&partner.client_secret))
            .form(&[
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", token),
            ])
            .send()
    };
    let tokens: Value = http()
        .post(format!("{}/oauth/token", p.issuer))
        .basic_auth(&partner.client_id, Some(&partner.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", partner.redirect_uri.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let squatter_refresh = tokens["refresh_token"]
        .as_str()
        .context("refresh")?
        .to_owned();

    let (status, r) = post_json(
        &format!("{}/receiver/APIv3/user.create", p.accounts),
        &partner.api_key,
        &json!({"user": doc_001_user(&email, "PLAN-A", "NL", "OWN-1")}),
        &[],
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(r["results"][0]["status"], "existing", "{r}");
    let mail = inbox(&p.accounts, &email, 2).await?;
    let existing = mail
        .iter()
        .find(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("Je hebt al"))
        })
        .context("the Dutch 'you already have an account' email")?;
    let link = set_password_link(existing["text"].as_str().unwrap_or_default())?;

    let mut owner = Agent::new()?;
    let page = owner.get(&link).await?;
    let mut form = hidden_fields(&page.body);
    form.push(("password".into(), "owner-pass-22".into()));
    form.push(("password_confirm".into(), "owner-pass-22".into()));
    let done = owner
        .post(&format!("{}/password/set", p.accounts), &form)
        .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("https://velo.example.com/"));
    // The owner is signed in; the squatter's session is over, and its password too.
    assert_eq!(owner.get(&format!("{}/", p.accounts)).await?.status, 200);
    let home = squatter.get(&format!("{}/", p.accounts)).await?;
    assert_eq!(home.status, 303);
    assert_eq!(home.location.as_deref(), Some("/login"));
    let again = Agent::new()?
        .login(&p.accounts, &email, "squatter-pass-1")
        .await?;
    assert_eq!(again.status, 401);
    // The squatter's grant to the same partner's application is revoked.
    let refused = refresh(squatter_refresh).await?;
    assert_eq!(refused.status(), 400);
    // A link that cannot be used costs no hash and answers 410.
    let csrf = owner
        .cookie("__Host-admit_csrf")
        .context("csrf cookie")?
        .clone();
    let mut form = vec![("csrf_token".to_owned(), csrf)];
    form.push(("token".into(), "not-a-token".into()));
    form.push(("password".into(), "owner-pass-33".into()));
    form.push(("password_confirm".into(), "owner-pass-33".into()));
    let gone = owner
        .post(&format!("{}/password/set", p.accounts), &form)
        .await?;
    assert_eq!(gone.status, 410);
    Ok(())
}

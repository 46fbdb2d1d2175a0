//! `POST /account`, implicit method (social sign-up), on the embedded default and on
//! the production topology: against a fake social provider (a real HTTP server on
//! 127.0.0.1 started here, speaking OpenID Connect userinfo and Facebook's Graph
//! `/me`), and against a real OpenID Connect provider none of us wrote (node
//! `oidc-provider`, tests/oidc/), whose authorization code flow the test drives.

use admit_e2e::platform::{query_of, Agent, Platform};
use admit_e2e::{free_port, http, post_account, unique};
use admit_store::{accounts, identities, Db};
use anyhow::Context;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const FB_SECRET: &str = "fb-app-secret-for-tests";
/// How long the platform waits for the `acme` provider; the fake's slow answer takes
/// longer.
const ACME_TIMEOUT_MS: &str = "800";

// --- the fake provider ---------------------------------------------------------------

/// What the fake provider does with a token. A token is `ok~SUB~EMAIL~VERIFIED`
/// (`-` for no email, VERIFIED `1` or `0`), or one of the misbehaviours below.
fn answer(token: &str) -> (u16, Value, Duration) {
    let fast = Duration::ZERO;
    match token {
        "refuse" => (401, json!({"error": "invalid_token"}), fast),
        "error-body" => (200, json!({"error": "invalid_token"}), fast),
        "fail" => (502, json!({"message": "upstream broke"}), fast),
        "slow" => (200, json!({"sub": "slow"}), Duration::from_secs(4)),
        "nobody" => (200, json!({"name": "Nobody"}), fast),
        t => match t.split('~').collect::<Vec<_>>()[..] {
            // A good token of another application (see `tokeninfo`).
            ["foreign", sub] => (200, json!({"sub": sub, "name": "Eve"}), fast),
            ["ok", sub, email, verified] => {
                let mut claims = json!({"sub": sub, "name": "Sam Social"});
                if email != "-" {
                    claims["email"] = json!(email);
                    claims["email_verified"] = json!(verified == "1");
                }
                (200, claims, fast)
            }
            _ => (401, json!({"error": "invalid_token"}), fast),
        },
    }
}

fn proof(token: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(FB_SECRET.as_bytes()).expect("any key");
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn userinfo(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let (status, body, delay) = answer(&token);
    tokio::time::sleep(delay).await;
    respond(status, body)
}

/// Google's tokeninfo: which application a token was issued to (`g-web`, or
/// `other-client` for `foreign~…` tokens).
async fn tokeninfo(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    let q = query_of(&format!("?{}", req.query_string()));
    let token = q.get("access_token").cloned().unwrap_or_default();
    let (status, body, _) = answer(&token);
    if status != 200 || body.get("error").is_some() {
        return respond(
            400,
            json!({"error": "invalid_token", "error_description": "Invalid Value"}),
        );
    }
    let aud = if token.starts_with("foreign~") {
        "other-client"
    } else {
        "g-web"
    };
    respond(
        200,
        json!({"aud": aud, "azp": aud, "sub": body["sub"], "expires_in": 3599}),
    )
}

/// Facebook's Graph `/me`: the token and its `appsecret_proof` in the query, the
/// user's `id` for subject.
async fn graph_me(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    let q = query_of(&format!("?{}", req.query_string()));
    let token = q.get("access_token").cloned().unwrap_or_default();
    if q.get("appsecret_proof") != Some(&proof(&token)) {
        return respond(
            400,
            json!({"error": {"message": "Invalid appsecret_proof provided in the API argument", "type": "GraphMethodException", "code": 100}}),
        );
    }
    if q.get("fields").map(String::as_str) != Some("id,name,email") {
        return respond(400, json!({"error": {"message": "fields", "code": 100}}));
    }
    let (status, mut body, delay) = answer(&token);
    tokio::time::sleep(delay).await;
    if let Some(sub) = body.as_object_mut().and_then(|m| m.remove("sub")) {
        body["id"] = sub;
        body.as_object_mut().map(|m| m.remove("email_verified"));
    }
    respond(status, body)
}

fn respond(status: u16, body: Value) -> actix_web::HttpResponse {
    actix_web::HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("a status"))
        .json(body)
}

/// The fake provider, on a port of its own; stopped when the test ends.
struct FakeProvider {
    url: String,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl FakeProvider {
    fn start() -> anyhow::Result<Self> {
        use actix_web::{web, App, HttpServer};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = HttpServer::new(|| {
            App::new()
                .route("/oidc/userinfo", web::get().to(userinfo))
                .route("/facebook/me", web::get().to(graph_me))
                .route("/google/tokeninfo", web::get().to(tokeninfo))
        })
        .workers(1)
        .listen(listener)?
        .run();
        Ok(Self {
            url,
            _server: tokio::spawn(server),
        })
    }

    /// The platform's configuration of its providers: `google` and `acme` (oidc, with
    /// an allow-list of consumer keys and a short timeout) at the userinfo endpoint,
    /// `facebook` at `/me` with the app secret, `fbwrong` with another secret,
    /// `gone` at a port nobody listens on, `gapp` (google with `client_ids`, so its
    /// tokens' application is checked at tokeninfo).
    fn env(&self) -> Vec<(String, String)> {
        let p = "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__";
        let userinfo = format!("{}/oidc/userinfo", self.url);
        let me = format!("{}/facebook/me", self.url);
        let tokeninfo = format!("{}/google/tokeninfo", self.url);
        let closed = format!("http://127.0.0.1:{}/userinfo", free_port());
        [
            ("GOOGLE__KIND", "google"),
            ("GOOGLE__USERINFO_URL", userinfo.as_str()),
            ("ACME__KIND", "oidc"),
            ("ACME__USERINFO_URL", userinfo.as_str()),
            ("ACME__CLIENT_IDS", "acme-web,acme-ios"),
            ("ACME__TIMEOUT_MS", ACME_TIMEOUT_MS),
            ("FACEBOOK__KIND", "facebook"),
            ("FACEBOOK__USERINFO_URL", me.as_str()),
            ("FACEBOOK__APP_SECRET", FB_SECRET),
            ("FBWRONG__KIND", "facebook"),
            ("FBWRONG__USERINFO_URL", me.as_str()),
            ("FBWRONG__APP_SECRET", "not-the-app-secret"),
            ("GAPP__KIND", "google"),
            ("GAPP__USERINFO_URL", userinfo.as_str()),
            ("GAPP__TOKENINFO_URL", tokeninfo.as_str()),
            ("GAPP__CLIENT_IDS", "g-web"),
            ("GONE__KIND", "oidc"),
            ("GONE__USERINFO_URL", closed.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{p}{k}"), v.to_owned()))
        .collect()
    }
}

// --- helpers -------------------------------------------------------------------------

/// Both run modes with `env`.
fn platforms(env: &[(String, String)]) -> anyhow::Result<[Platform; 2]> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ok([Platform::embedded(&env)?, Platform::production(&env)?])
}

fn social(provider: &str, token: &str, user_id: &str) -> Value {
    json!({
        "provider_name": provider,
        "access_token": token,
        "user_id": user_id,
        "oauth_consumer_key": "acme-web",
        "oauth_consumer_secret": "document-003-consumer-secret",
        "locale": "eng-US",
    })
}

async fn post(p: &Platform, body: &Value) -> anyhow::Result<(u16, Value)> {
    post_account(&http(), &p.accounts, body).await
}

async fn db(p: &Platform) -> anyhow::Result<Db> {
    Ok(Db::connect(&p.db_url, 1)?)
}

async fn account_count(p: &Platform) -> anyhow::Result<i64> {
    Ok(db(p).await?.run(accounts::count).await?)
}

/// The (provider, subject) pairs linked to an account.
async fn linked(p: &Platform, account_id: &str) -> anyhow::Result<Vec<(String, String)>> {
    let id = account_id.to_owned();
    let rows = db(p)
        .await?
        .run(move |c| identities::for_account(c, &id))
        .await?;
    Ok(rows.into_iter().map(|r| (r.provider, r.subject)).collect())
}

/// The account's primary email and whether it is confirmed.
async fn email_of(p: &Platform, account_id: &str) -> anyhow::Result<Option<(String, bool)>> {
    let id = account_id.to_owned();
    Ok(db(p)
        .await?
        .run(move |c| accounts::primary_email(c, &id))
        .await?)
}

fn expect_error(
    mode: &str,
    what: &str,
    got: &(u16, Value),
    status: u16,
    error: &str,
    field: &str,
) -> anyhow::Result<()> {
    let (s, body) = got;
    anyhow::ensure!(
        *s == status && body["error"] == error && body["field"] == field,
        "{mode}, {what}: expected {status} {error} on {field}, got {s} {body}"
    );
    anyhow::ensure!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{mode}, {what}: a message says why: {body}"
    );
    Ok(())
}

// --- the fake provider's tests -------------------------------------------------------

#[tokio::test]
async fn a_good_token_creates_an_account_linked_to_the_identity() -> anyhow::Result<()> {
    let fake = FakeProvider::start()?;
    for p in platforms(&fake.env())? {
        let m = p.mode;
        let sub = unique("g-");
        let email = format!("{sub}@social.example.test");
        let token = format!("ok~{sub}~{email}~1");
        let (status, created) = post(&p, &social("google", &token, &sub)).await?;
        anyhow::ensure!(status == 201, "{m}: {status} {created}");
        let id = created["account_id"].as_str().context("account_id")?;
        assert!(created["creation_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        assert_eq!(
            linked(&p, id).await?,
            [("google".into(), sub.clone())],
            "{m}"
        );
        // The provider vouched for the address: kept, and confirmed.
        assert_eq!(email_of(&p, id).await?, Some((email.clone(), true)), "{m}");
        // The address is now taken for the explicit sign-up too.
        let (s, b) = post(
            &p,
            &json!({"contacts": [["EMAIL", email.to_uppercase(), true]], "password": "doctest1"}),
        )
        .await?;
        assert_eq!(
            (s, b["error"].as_str()),
            (409, Some("ContactAlreadyUsedException")),
            "{m}: {b}"
        );

        // Facebook: Graph /me with the appsecret_proof of the platform's app secret.
        let fb_id = format!("{}", 100_000 + free_port() as u64);
        let (status, created) =
            post(&p, &social("facebook", &format!("ok~{fb_id}~-~0"), &fb_id)).await?;
        anyhow::ensure!(status == 201, "{m}: facebook {status} {created}");
        let id = created["account_id"].as_str().context("account_id")?;
        assert_eq!(
            linked(&p, id).await?,
            [("facebook".into(), fb_id.clone())],
            "{m}"
        );
        assert_eq!(
            email_of(&p, id).await?,
            None,
            "{m}: facebook gave no address"
        );
        // The same token with another app's secret: Graph refuses the proof.
        let got = post(
            &p,
            &social("fbwrong", &format!("ok~{fb_id}x~-~0"), &format!("{fb_id}x")),
        )
        .await?;
        expect_error(
            m,
            "wrong appsecret_proof",
            &got,
            403,
            "IllegalAccessException",
            "access_token",
        )?;

        // An OIDC provider with an allow-list of consumer keys.
        let sub = unique("a-");
        let (status, created) = post(&p, &social("acme", &format!("ok~{sub}~-~0"), &sub)).await?;
        anyhow::ensure!(status == 201, "{m}: acme {status} {created}");
        let mut body = social("acme", &format!("ok~{sub}2~-~0"), &format!("{sub}2"));
        body["oauth_consumer_key"] = json!("someone-else");
        let got = post(&p, &body).await?;
        expect_error(
            m,
            "consumer key not allowed",
            &got,
            403,
            "IllegalAccessException",
            "oauth_consumer_key",
        )?;
        body.as_object_mut().map(|b| b.remove("oauth_consumer_key"));
        let got = post(&p, &body).await?;
        expect_error(
            m,
            "consumer key missing",
            &got,
            400,
            "InvalidArgumentException",
            "oauth_consumer_key",
        )?;

        // A test account (deleted with its identity by the 24-hour purge).
        let sub = unique("t-");
        let mut body = social("google", &format!("ok~{sub}~-~0"), &sub);
        body["account_type"] = json!("test");
        let (status, created) = post(&p, &body).await?;
        anyhow::ensure!(status == 201, "{m}: test account {status} {created}");
        let id = created["account_id"]
            .as_str()
            .context("account_id")?
            .to_owned();
        let row = db(&p).await?.run(move |c| accounts::find(c, &id)).await?;
        assert_eq!(row.account_type, "test", "{m}");
        assert!(
            row.expires_at.is_some() && row.password_hash.is_none(),
            "{m}: {row:?}"
        );

        // Google with client_ids: tokeninfo must say the token is this application's.
        let sub = unique("ga-");
        let mut body = social("gapp", &format!("ok~{sub}~-~0"), &sub);
        body["oauth_consumer_key"] = json!("g-web");
        let (status, created) = post(&p, &body).await?;
        anyhow::ensure!(status == 201, "{m}: gapp {status} {created}");
        let sub = unique("eve-");
        let mut body = social("gapp", &format!("foreign~{sub}"), &sub);
        body["oauth_consumer_key"] = json!("g-web");
        let got = post(&p, &body).await?;
        expect_error(
            m,
            "another application's google token",
            &got,
            403,
            "IllegalAccessException",
            "access_token",
        )?;
        assert!(
            got.1["message"]
                .as_str()
                .unwrap_or_default()
                .contains("another application"),
            "{m}: {}",
            got.1
        );
        body["access_token"] = json!("refuse");
        let got = post(&p, &body).await?;
        expect_error(
            m,
            "tokeninfo refuses",
            &got,
            403,
            "IllegalAccessException",
            "access_token",
        )?;

        // Neither the access tokens nor the consumer secret are kept or logged.
        let stored = p.stored_text()?;
        let logs = p.logs();
        for secret in [token.as_str(), "document-003-consumer-secret", FB_SECRET] {
            assert!(!stored.contains(secret), "{m}: {secret} stored");
            assert!(!logs.contains(secret), "{m}: {secret} logged");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_token_of_another_user_is_refused_and_writes_nothing() -> anyhow::Result<()> {
    let fake = FakeProvider::start()?;
    for p in platforms(&fake.env())? {
        let m = p.mode;
        let before = account_count(&p).await?;
        let sub = unique("g-");
        let token = format!("ok~{sub}~{sub}@social.example.test~1");
        let got = post(&p, &social("google", &token, "somebody-else")).await?;
        expect_error(
            m,
            "other user_id",
            &got,
            403,
            "IllegalAccessException",
            "user_id",
        )?;
        let got = post(&p, &social("facebook", &format!("ok~{sub}~-~0"), "12345")).await?;
        expect_error(
            m,
            "other facebook id",
            &got,
            403,
            "IllegalAccessException",
            "user_id",
        )?;
        assert_eq!(account_count(&p).await?, before, "{m}: nothing written");
        // The address of the refused sign-up is still free.
        let (s, b) = post(
            &p,
            &json!({"contacts": [["EMAIL", format!("{sub}@social.example.test"), true]], "password": "doctest1"}),
        )
        .await?;
        assert_eq!(s, 201, "{m}: {b}");
    }
    Ok(())
}

#[tokio::test]
async fn the_same_identity_twice_is_409_and_concurrent_requests_make_one_account(
) -> anyhow::Result<()> {
    let fake = FakeProvider::start()?;
    for p in platforms(&fake.env())? {
        let m = p.mode;
        let sub = unique("g-");
        let token = format!("ok~{sub}~{sub}@social.example.test~1");
        let (status, first) = post(&p, &social("google", &token, &sub)).await?;
        anyhow::ensure!(status == 201, "{m}: {status} {first}");
        let got = post(&p, &social("google", &token, &sub)).await?;
        expect_error(
            m,
            "same identity",
            &got,
            409,
            "ContactAlreadyUsedException",
            "user_id",
        )?;
        // Provider names match whatever their case.
        let got = post(&p, &social("Google", &token, &sub)).await?;
        expect_error(
            m,
            "same identity, Google",
            &got,
            409,
            "ContactAlreadyUsedException",
            "user_id",
        )?;
        // The same subject at another provider is another identity.
        let (status, other) = post(&p, &social("acme", &format!("ok~{sub}~-~0"), &sub)).await?;
        anyhow::ensure!(status == 201, "{m}: {status} {other}");

        // Eight requests at once for one new identity: one account.
        let sub = unique("race-");
        let body = social("google", &format!("ok~{sub}~-~0"), &sub);
        let before = account_count(&p).await?;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (url, body) = (p.accounts.clone(), body.clone());
                tokio::spawn(async move { post_account(&http(), &url, &body).await })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            let (s, b) = t.await??;
            if s != 201 {
                assert_eq!(b["field"], "user_id", "{m}: {s} {b}");
            }
            statuses.push(s);
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{m}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 409),
            "{m}: {statuses:?}"
        );
        assert_eq!(account_count(&p).await?, before + 1, "{m}");
    }
    Ok(())
}

#[tokio::test]
async fn a_provider_address_of_an_existing_account_is_never_linked() -> anyhow::Result<()> {
    let fake = FakeProvider::start()?;
    for p in platforms(&fake.env())? {
        let m = p.mode;
        let email = format!("{}@victim.example.test", unique("v"));
        let victim = p.user(&email, "victim-pass1").await?;
        let before = account_count(&p).await?;
        for verified in ["1", "0"] {
            let sub = unique("attacker-");
            let token = format!("ok~{sub}~{}~{verified}", email.to_uppercase());
            let got = post(&p, &social("google", &token, &sub)).await?;
            expect_error(
                m,
                "address of an account",
                &got,
                409,
                "ContactAlreadyUsedException",
                "access_token",
            )?;
        }
        assert!(
            linked(&p, &victim).await?.is_empty(),
            "{m}: nothing linked to the account"
        );
        assert_eq!(
            account_count(&p).await?,
            before,
            "{m}: no new account either"
        );

        // An address the provider does not vouch for is not kept: the account is
        // created without it, and the address stays free for its owner.
        let sub = unique("unverified-");
        let free = format!("{sub}@social.example.test");
        let (status, created) =
            post(&p, &social("google", &format!("ok~{sub}~{free}~0"), &sub)).await?;
        anyhow::ensure!(status == 201, "{m}: {status} {created}");
        let id = created["account_id"].as_str().context("account_id")?;
        assert_eq!(email_of(&p, id).await?, None, "{m}");
        assert_eq!(linked(&p, id).await?.len(), 1, "{m}");
        let owner = p.user(&free, "owner-pass1").await?;
        assert_ne!(owner, id);
    }
    Ok(())
}

#[tokio::test]
async fn provider_errors_timeouts_and_bad_fields_are_clear_4xx() -> anyhow::Result<()> {
    let fake = FakeProvider::start()?;
    for p in platforms(&fake.env())? {
        let m = p.mode;
        let before = account_count(&p).await?;
        let refused = [
            ("google", "refuse", "refused"),
            ("google", "error-body", "refused"),
            ("google", "nobody", "names no user"),
            ("google", "fail", "retried"),
            ("acme", "slow", "in time"),
            ("gone", "ok~x~-~0", "could not be reached"),
            ("facebook", "refuse", "refused"),
        ];
        for (provider, token, says) in refused {
            let mut body = social(provider, token, "x");
            body["oauth_consumer_key"] = json!("acme-ios");
            let got = post(&p, &body).await?;
            expect_error(
                m,
                token,
                &got,
                403,
                "IllegalAccessException",
                "access_token",
            )?;
            let message = got.1["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{m}, {provider} {token}: {message}");
        }
        let ok = social("google", "ok~x~-~0", "x");
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            b
        };
        let without = |k: &str| {
            let mut b = ok.clone();
            b.as_object_mut().map(|o| o.remove(k));
            b
        };
        let invalid = [
            (
                "foursquare",
                with("provider_name", json!("foursquare")),
                "provider_name",
            ),
            (
                "gowalla",
                with("provider_name", json!("gowalla")),
                "provider_name",
            ),
            (
                "unconfigured",
                with("provider_name", json!("myspace")),
                "provider_name",
            ),
            ("no provider", without("provider_name"), "provider_name"),
            ("no token", without("access_token"), "access_token"),
            (
                "empty token",
                with("access_token", json!("")),
                "access_token",
            ),
            ("no user_id", without("user_id"), "user_id"),
            ("user_id a number", with("user_id", json!(5)), "user_id"),
            ("bad locale", with("locale", json!("english")), "locale"),
            (
                "bad expiry",
                with("expiration_time", json!("tomorrow")),
                "expiration_time",
            ),
            (
                "expired",
                with("expiration_time", json!("2001-01-01T00:00:00Z")),
                "expiration_time",
            ),
            (
                "explicit field",
                with("password", json!("doctest1")),
                "password",
            ),
            ("unknown field", with("colour", json!("red")), "colour"),
        ];
        for (what, body, field) in invalid {
            let got = post(&p, &body).await?;
            expect_error(m, what, &got, 400, "InvalidArgumentException", field)?;
        }
        // Good expiration times in RFC 3339 and in the documents' basic form.
        for (i, t) in ["2999-01-01T00:00:00Z", "29990101T000000+0000"]
            .iter()
            .enumerate()
        {
            let sub = unique(&format!("exp{i}-"));
            let mut body = social("google", &format!("ok~{sub}~-~0"), &sub);
            body["expiration_time"] = json!(t);
            let (s, b) = post(&p, &body).await?;
            assert_eq!(s, 201, "{m}: {t}: {b}");
        }
        assert_eq!(
            account_count(&p).await?,
            before + 2,
            "{m}: the refusals wrote nothing"
        );
    }
    Ok(())
}

// --- a real OpenID Connect provider ---------------------------------------------------

/// node `oidc-provider` (tests/oidc/provider.js) on 127.0.0.1; killed when dropped.
struct NodeOidc {
    child: Child,
    issuer: String,
    redirect_uri: String,
}

impl NodeOidc {
    fn start() -> anyhow::Result<Self> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc");
        let node = std::env::var("ADMIT_TEST_NODE").unwrap_or_else(|_| "node".into());
        anyhow::ensure!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc/node_modules is missing: run `npm ci` in tests/oidc (scripts/test does)"
        );
        let port = free_port();
        let redirect_uri = format!("http://127.0.0.1:{}/cb", free_port());
        let mut child = Command::new(&node)
            .arg("provider.js")
            .arg(port.to_string())
            .arg(&redirect_uri)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting `{node}` for oidc-provider: Node.js is required (scripts/test installs nodejs and npm)")
            })?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, url)) = line.split_once(" listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let issuer = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                anyhow::bail!("oidc-provider did not start on port {port}");
            }
        };
        Ok(Self {
            child,
            issuer,
            redirect_uri,
        })
    }

    /// Signs `login` in on the provider's own login and consent pages (authorization
    /// code flow with PKCE) and exchanges the code: a real access token for its
    /// userinfo endpoint.
    async fn access_token(&self, login: &str) -> anyhow::Result<String> {
        self.access_token_of("admit-test", login).await
    }

    /// [`NodeOidc::access_token`] for another of the provider's applications.
    async fn access_token_of(&self, client: &str, login: &str) -> anyhow::Result<String> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let verifier = format!("{}{}", unique("v"), unique("v"));
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let mut agent = Agent::new()?;
        let absolute = |loc: String| {
            if loc.starts_with('/') {
                format!("{}{loc}", self.issuer)
            } else {
                loc
            }
        };
        let auth = format!(
            "{}/auth?client_id={client}&response_type=code&scope=openid%20email%20profile&state=st&code_challenge={challenge}&code_challenge_method=S256&redirect_uri={}",
            self.issuer,
            self.redirect_uri.replace(':', "%3A").replace('/', "%2F")
        );
        let mut next = agent
            .get(&auth)
            .await?
            .location
            .context("to the login page")?;
        let mut code = None;
        for _ in 0..8 {
            let url = absolute(next.clone());
            if url.starts_with(&self.redirect_uri) {
                code = query_of(&url).get("code").cloned();
                break;
            }
            let page = if url.contains("/interaction/") {
                let page = agent.get(&url).await?;
                anyhow::ensure!(
                    page.status == 200,
                    "interaction page: {} {}",
                    page.status,
                    page.body
                );
                let form: Vec<(String, String)> = if page.body.contains("name=\"login\"") {
                    vec![
                        ("prompt".into(), "login".into()),
                        ("login".into(), login.into()),
                        ("password".into(), "any".into()),
                    ]
                } else {
                    vec![("prompt".into(), "consent".into())]
                };
                agent.post(&url, &form).await?
            } else {
                agent.get(&url).await?
            };
            next = page
                .location
                .with_context(|| format!("{url} answered {} {}", page.status, page.body))?;
        }
        let code = code.context("the provider sent no code back")?;
        let token: Value = http()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await?
            .json()
            .await?;
        token["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no access token: {token}"))
    }
}

impl Drop for NodeOidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sign_up_with_a_real_openid_connect_providers_token() -> anyhow::Result<()> {
    let op = NodeOidc::start()?;
    let env = vec![
        (
            "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__NODEOIDC__KIND".to_owned(),
            "oidc".to_owned(),
        ),
        (
            "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__NODEOIDC__USERINFO_URL".to_owned(),
            format!("{}/me", op.issuer),
        ),
        (
            "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__NODEOIDC__CLIENT_IDS".to_owned(),
            "admit-test".to_owned(),
        ),
        (
            "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__NODEOIDC__INTROSPECTION_URL".to_owned(),
            format!("{}/token/introspection", op.issuer),
        ),
        (
            "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__NODEOIDC__INTROSPECTION_CLIENT_ID".to_owned(),
            "admit-platform".to_owned(),
        ),
        (
            "ADMIT__ACCOUNT__SOCIAL__PROVIDERS__NODEOIDC__INTROSPECTION_CLIENT_SECRET".to_owned(),
            "admit-platform-secret".to_owned(),
        ),
    ];
    for p in platforms(&env)? {
        let m = p.mode;
        let login = unique("ada");
        let token = op.access_token(&login).await?;
        let body = |token: &str, user_id: &str| {
            json!({
                "provider_name": "nodeoidc",
                "access_token": token,
                "user_id": user_id,
                "oauth_consumer_key": "admit-test",
                "oauth_consumer_secret": "admit-test-secret",
                "locale": "eng",
            })
        };
        // The token is for `login`, not somebody else.
        let got = post(&p, &body(&token, "somebody-else")).await?;
        expect_error(
            m,
            "other user",
            &got,
            403,
            "IllegalAccessException",
            "user_id",
        )?;
        let (status, created) = post(&p, &body(&token, &login)).await?;
        anyhow::ensure!(status == 201, "{m}: {status} {created}");
        let id = created["account_id"].as_str().context("account_id")?;
        assert_eq!(
            linked(&p, id).await?,
            [("nodeoidc".into(), login.clone())],
            "{m}"
        );
        assert_eq!(
            email_of(&p, id).await?,
            Some((format!("{login}@oidc.example.test"), true)),
            "{m}: the provider's verified address"
        );
        let got = post(&p, &body(&token, &login)).await?;
        expect_error(
            m,
            "same identity",
            &got,
            409,
            "ContactAlreadyUsedException",
            "user_id",
        )?;
        // A token the provider never issued: introspection says it is not active.
        let got = post(&p, &body("not-a-token-of-this-provider", &login)).await?;
        expect_error(
            m,
            "forged token",
            &got,
            403,
            "IllegalAccessException",
            "access_token",
        )?;
        // A token the provider issued to another application, presented with this
        // application's consumer key: introspection says whose it is, and it is refused.
        let stranger = unique("eve");
        let foreign = op.access_token_of("other-app", &stranger).await?;
        let got = post(&p, &body(&foreign, &stranger)).await?;
        expect_error(
            m,
            "another application's token",
            &got,
            403,
            "IllegalAccessException",
            "access_token",
        )?;
        assert!(
            got.1["message"]
                .as_str()
                .unwrap_or_default()
                .contains("another application"),
            "{m}: {}",
            got.1
        );
        // A user whose address the provider does not call verified: no address kept.
        let unverified = unique("unverified-");
        let token = op.access_token(&unverified).await?;
        let (status, created) = post(&p, &body(&token, &unverified)).await?;
        anyhow::ensure!(status == 201, "{m}: {status} {created}");
        let id = created["account_id"].as_str().context("account_id")?;
        assert_eq!(email_of(&p, id).await?, None, "{m}");
        assert!(!p.logs().contains(&token), "{m}: the token is not logged");
    }
    Ok(())
}

// --- the welcome email ---------------------------------------------------------------

/// Follows a set-password link as the user: the page, then the form with `password`;
/// then signs in with the address and that password.
async fn choose_password_and_sign_in(
    accounts: &str,
    link: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    let mut user = Agent::new()?;
    let page = user.get(link).await?;
    anyhow::ensure!(
        page.status == 200,
        "the link's page: {} {}",
        page.status,
        page.body
    );
    let mut form = admit_e2e::platform::hidden_fields(&page.body);
    form.push(("password".into(), password.into()));
    form.push(("password_confirm".into(), password.into()));
    let set = user
        .post(&format!("{accounts}/password/set"), &form)
        .await?;
    anyhow::ensure!(
        set.status == 303,
        "setting the password: {} {}",
        set.status,
        set.body
    );
    let login = Agent::new()?.login(accounts, email, password).await?;
    anyhow::ensure!(
        login.status == 303,
        "signing in: {} {}",
        login.status,
        login.body
    );
    Ok(())
}

fn link_in(text: &str) -> anyhow::Result<String> {
    text.split_whitespace()
        .find(|w| w.contains("/password/set?token="))
        .map(str::to_owned)
        .with_context(|| format!("no set-password link in: {text}"))
}

#[tokio::test]
async fn the_welcome_email_names_the_provider_and_lets_the_user_choose_a_password(
) -> anyhow::Result<()> {
    let fake = FakeProvider::start()?;
    let env = fake.env();
    let sub = unique("w-");
    let email = format!("{sub}@social.example.test");
    let body = social("google", &format!("ok~{sub}~{email}~1"), &sub);

    // Embedded: the inbox.
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let p = Platform::embedded(&env_refs)?;
    let (status, created) = post(&p, &body).await?;
    anyhow::ensure!(status == 201, "embedded: {status} {created}");
    let mut mails = Vec::new();
    for _ in 0..100 {
        let all: Vec<Value> = http()
            .get(format!("{}/dev/inbox.json", p.accounts))
            .send()
            .await?
            .json()
            .await?;
        mails = all
            .into_iter()
            .filter(|m| m["to"] == email.as_str())
            .collect();
        if !mails.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mails.len(), 1, "embedded: one welcome email: {}", p.logs());
    assert_eq!(mails[0]["subject"], "Welcome to admit");
    let text = mails[0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("google"), "embedded: {text}");
    choose_password_and_sign_in(&p.accounts, &link_in(text)?, &email, "social-pass-1").await?;

    // Production: admit-account and admit-mailer, a real SMTP server.
    let t = admit_e2e::topology::Topology::new(&env_refs)?;
    let account = t.start("admit-account")?;
    let _mailer = t.start("admit-mailer")?;
    let (status, created) = post_account(&http(), &account.url, &body).await?;
    anyhow::ensure!(status == 201, "production: {status} {created}");
    let got = t.smtp.wait_for(1, Duration::from_secs(60));
    assert_eq!(got.len(), 1, "production: one welcome email");
    assert_eq!(got[0].to, email);
    assert_eq!(got[0].subject, "Welcome to admit");
    assert!(
        got[0].text.contains("google"),
        "production: {}",
        got[0].text
    );
    // The email's links use the configured public base URL; here it is this process.
    let link = link_in(&got[0].text)?.replace("https://accounts.example.test", &account.url);
    choose_password_and_sign_in(&account.url, &link, &email, "social-pass-1").await?;
    Ok(())
}

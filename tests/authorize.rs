//! The authorization server as an application and its user meet it, in both run
//! modes: a standard OpenID Connect client library (the `openidconnect` crate) does
//! discovery, the code flow with PKCE through the real pages in headless Chromium,
//! the token exchange, refresh with rotation and reuse detection, client
//! credentials, introspection and revocation, userinfo, and verifies the id_token
//! and access token against the JWKS. Then the RFC 9700 properties, one by one.

use admit_e2e::platform::{query_of, Agent, Callback, Client, Platform};
use anyhow::Context;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenIntrospectionResponse,
    TokenResponse,
};
use serde_json::Value;
use std::time::Duration;

const PASSWORD: &str = "horse-battery-9";
const ALL_GRANTS: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];

fn oidc_http() -> anyhow::Result<openidconnect::reqwest::Client> {
    Ok(openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()?)
}

/// Drives headless Chromium from `url` through the login and consent pages.
fn browser_login_and_consent(
    url: &str,
    email: &str,
    password: &str,
    redirect_uri: &str,
) -> anyhow::Result<()> {
    let (browser, _profile) = admit_e2e::platform::chromium()?;
    let tab = browser.new_tab()?;
    tab.set_default_timeout(Duration::from_secs(60));
    tab.navigate_to(url)?;
    tab.wait_for_element("#login")?.click()?;
    tab.type_str(email)?;
    tab.wait_for_element("#password")?.click()?;
    tab.type_str(password)?;
    tab.wait_for_element("#sign-in")?.click()?;
    let allow = tab
        .wait_for_element("#allow")
        .with_context(|| format!("no consent page; the browser is at {}", tab.get_url()))?;
    let text = tab.wait_for_element("main")?.get_inner_text()?;
    anyhow::ensure!(
        text.contains("Velo Partner"),
        "consent names the partner: {text}"
    );
    anyhow::ensure!(
        text.contains("email address"),
        "consent names the scopes: {text}"
    );
    allow.click()?;
    // Keep the browser until it has followed the redirect to the client.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !tab.get_url().starts_with(redirect_uri) {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the browser never reached the client; it is at {}",
            tab.get_url()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

async fn full_flow(p: Platform) -> anyhow::Result<()> {
    let cb = Callback::start()?;
    let c = p.client(&cb.url, ALL_GRANTS, false)?;
    let email = format!("{}@example.com", admit_e2e::unique("ada"));
    let account_id = p.user(&email, PASSWORD).await?;
    let http = oidc_http()?;

    // Discovery.
    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(p.issuer.clone())?, &http).await?;
    let secret = c.secret.clone().context("confidential client")?;
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(c.id.clone()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(c.redirect_uri.clone())?)
    .set_introspection_url(IntrospectionUrl::new(format!(
        "{}/oauth/introspect",
        p.issuer
    ))?);

    // Authorization code + PKCE through the pages, in a real browser.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf_state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let (u, e, r) = (url.to_string(), email.clone(), c.redirect_uri.clone());
    tokio::task::spawn_blocking(move || browser_login_and_consent(&u, &e, PASSWORD, &r)).await??;
    let landed = cb.next(Duration::from_secs(60))?;
    let q = query_of(&landed);
    assert_eq!(
        q.get("state").map(String::as_str),
        Some(csrf_state.secret().as_str())
    );
    assert_eq!(q.get("iss"), Some(&p.issuer), "RFC 9207 iss");
    let code = q.get("code").context("code in the redirect")?.clone();

    // The token exchange; the id_token verified by the library against the JWKS.
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))?
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await?;
    let id_token = tokens.id_token().context("id_token")?;
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs([CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = id_token.claims(&verifier, &nonce)?;
    assert_eq!(claims.subject().as_str(), account_id);
    assert_eq!(claims.email().map(|e| e.as_str()), Some(email.as_str()));
    assert!(claims.auth_time().is_some());
    let access = tokens.access_token().clone();
    let at = verify_access_token(&p.issuer, access.secret()).await?;
    assert_eq!(at["sub"], account_id.as_str());
    assert_eq!(at["client_id"], c.id.as_str());
    assert_eq!(tokens.expires_in(), Some(Duration::from_secs(86_400)));

    // Userinfo with the access token.
    let info: openidconnect::core::CoreUserInfoClaims = client
        .user_info(access.clone(), Some(claims.subject().clone()))?
        .request_async(&http)
        .await?;
    assert_eq!(info.email().map(|e| e.as_str()), Some(email.as_str()));

    // Refresh: rotated; the old one refused, and its reuse revokes the new one.
    let rt1 = tokens.refresh_token().context("refresh_token")?.clone();
    let refreshed = client
        .exchange_refresh_token(&rt1)?
        .request_async(&http)
        .await?;
    let rt2 = refreshed
        .refresh_token()
        .context("rotated refresh_token")?
        .clone();
    assert_ne!(rt1.secret(), rt2.secret());
    let reused = client
        .exchange_refresh_token(&rt1)?
        .request_async(&http)
        .await;
    assert!(reused.is_err(), "a spent refresh token is refused");
    let after = client
        .exchange_refresh_token(&rt2)?
        .request_async(&http)
        .await;
    assert!(
        after.is_err(),
        "the reuse revoked the family, the newest token too"
    );
    let gone = client
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await?;
    assert!(
        !gone.active(),
        "access tokens of the revoked family are inactive"
    );

    // Client credentials.
    let cc = client
        .exchange_client_credentials()?
        .add_scope(Scope::new("accounts:create".into()))
        .request_async(&http)
        .await?;
    let cc_claims = verify_access_token(&p.issuer, cc.access_token().secret()).await?;
    assert_eq!(cc_claims["sub"], c.id.as_str());
    assert!(cc.refresh_token().is_none());

    // Introspection: active, then inactive after revocation.
    let active = client
        .introspect(cc.access_token())
        .request_async(&http)
        .await?;
    assert!(active.active());
    assert_eq!(active.client_id().map(|c| c.as_str()), Some(c.id.as_str()));
    // The oauth2 crate sends revocation requests only over https (RFC 7009 §2), and
    // this server listens on http://127.0.0.1 in the tests: a plain RFC 7009 request.
    let revoked = admit_e2e::http()
        .post(format!("{}/oauth/revoke", p.issuer))
        .basic_auth(&c.id, Some(&secret))
        .form(&[
            ("token", cc.access_token().secret().as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await?;
    assert_eq!(revoked.status(), 200);
    let inactive = client
        .introspect(cc.access_token())
        .request_async(&http)
        .await?;
    assert!(!inactive.active());

    // Nothing secret is stored in clear.
    let stored = p.stored_text()?;
    for (what, value) in [
        ("code", code.as_str()),
        ("access token", access.secret().as_str()),
        ("refresh token", rt1.secret().as_str()),
        ("rotated refresh token", rt2.secret().as_str()),
        ("client secret", secret.as_str()),
        ("password", PASSWORD),
    ] {
        assert!(
            !stored.contains(value),
            "{what} is stored in clear ({})",
            p.mode
        );
    }
    assert!(!p.logs().contains(PASSWORD), "no password in the logs");
    // Signing keys are sealed (AES-256-GCM), not stored as a usable PKCS#8 key.
    let keys = p.stored_signing_keys().await?;
    assert!(!keys.is_empty());
    for k in keys {
        assert!(
            k.starts_with("v1:"),
            "a signing key is stored unsealed ({})",
            p.mode
        );
    }
    Ok(())
}

async fn verify_access_token(issuer: &str, token: &str) -> anyhow::Result<Value> {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, DecodingKey, Validation};
    let jwks: JwkSet = admit_e2e::http()
        .get(format!("{issuer}/oauth/jwks"))
        .send()
        .await?
        .json()
        .await?;
    let header = decode_header(token)?;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks
        .find(&header.kid.unwrap_or_default())
        .context("kid in JWKS")?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[issuer]);
    Ok(decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &v)?.claims)
}

#[tokio::test]
async fn an_oidc_client_completes_every_flow_on_the_embedded_platform() -> anyhow::Result<()> {
    full_flow(Platform::embedded(&[])?).await
}

#[tokio::test]
async fn an_oidc_client_completes_every_flow_on_the_production_topology() -> anyhow::Result<()> {
    full_flow(Platform::production(&[])?).await
}

// --- RFC 9700, property by property ------------------------------------------------

struct Setup {
    p: Platform,
    c: Client,
    agent: Agent,
}

async fn signed_in(p: Platform, grants: &[&str], public: bool) -> anyhow::Result<Setup> {
    let c = p.client("http://127.0.0.1:9/cb", grants, public)?;
    let email = format!("{}@example.com", admit_e2e::unique("u"));
    p.user(&email, PASSWORD).await?;
    let mut agent = Agent::new()?;
    let res = agent.login(&p.accounts, &email, PASSWORD).await?;
    assert_eq!(res.status, 303, "login: {}", res.body);
    Ok(Setup { p, c, agent })
}

fn authorize_url(s: &Setup, extra: &[(&str, &str)]) -> String {
    let mut q: Vec<(&str, &str)> = vec![
        ("client_id", &s.c.id),
        ("redirect_uri", &s.c.redirect_uri),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "st-123"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        q.retain(|(qk, _)| qk != k);
        if !v.is_empty() {
            q.push((k, v));
        }
    }
    format!(
        "{}/oauth/authorize?{}",
        s.p.issuer,
        serde_urlencoded::to_string(&q).unwrap_or_default()
    )
}

// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn code(s: &mut Setup) -> anyhow::Result<String> {
    let url = authorize_url(s, &[]);
    let loc = s.agent.authorize(&url).await?;
    query_of(&loc).get("code").cloned().context("code")
}

async fn redeem(
    s: &Setup,
    code: &str,
    verifier: Option<&str>,
) -> anyhow::Result<(u16, Value, String)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", s.c.redirect_uri.as_str()),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let res = admit_e2e::http()
        .post(format!("{}/oauth/token", s.p.issuer))
        .basic_auth(&s.c.id, s.c.secret.as_deref())
        .form(&form)
        .send()
        .await?;
    let status = res.status().as_u16();
    let cache = res
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, res.json().await.unwrap_or(Value::Null), cache))
}

async fn introspect(s: &Setup, token: &str) -> anyhow::Result<bool> {
    let res: Value = admit_e2e::http()
        .post(format!("{}/oauth/introspect", s.p.issuer))
        .basic_auth(&s.c.id, s.c.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await?
        .json()
        .await?;
    Ok(res["active"] == true)
}

#[tokio::test]
async fn a_redirect_uri_that_differs_in_any_way_gets_the_error_page() -> anyhow::Result<()> {
    let mut s = signed_in(Platform::embedded(&[])?, ALL_GRANTS, false).await?;
    let registered = s.c.redirect_uri.clone();
    for bad in [
        "HTTP://127.0.0.1:9/cb",
        "http://127.0.0.1:9/CB",
        "http://127.0.0.1:9/cb/",
        "http://127.0.0.1:9/cb?x=1",
        "http://user@127.0.0.1:9/cb",
        "http://127.0.0.1:10/cb",
        "https://127.0.0.1:9/cb",
        "http://127.0.0.1:9/cb/more",
        "http://127.0.0.1:9/cbx",
        "http://evil.example/cb",
    ] {
        let url = authorize_url(&s, &[("redirect_uri", bad)]);
        let page = s.agent.get(&url).await?;
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.location.is_none(), "{bad} must not redirect");
        assert!(page.body.contains("not one it registered"), "{bad}");
        assert_eq!(
            page.headers
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.contains("frame-ancestors 'none'")),
            Some(true)
        );
    }
    // An unknown client: the error page too.
    let page = s
        .agent
        .get(&authorize_url(&s, &[("client_id", "c_nope")]))
        .await?;
    assert_eq!((page.status, page.location.is_none()), (400, true));
    // The registered one works, and the page headers are there.
    let page = s
        .agent
        .get(&authorize_url(&s, &[("redirect_uri", &registered)]))
        .await?;
    assert_eq!(page.status, 200);
    for (h, v) in [
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
    ] {
        assert_eq!(
            page.headers.get(h).and_then(|x| x.to_str().ok()),
            Some(v),
            "{h}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_code_works_once_and_its_replay_revokes_what_it_issued() -> anyhow::Result<()> {
    let mut s = signed_in(Platform::embedded(&[])?, ALL_GRANTS, false).await?;
    let code = code(&mut s).await?;
    let (status, first, cache) = redeem(&s, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 200, "{first}");
    assert_eq!(cache, "no-store");
    let access = first["access_token"].as_str().context("access_token")?;
    let refresh = first["refresh_token"].as_str().context("refresh_token")?;
    assert!(introspect(&s, access).await?);
    let (status, again, cache) = redeem(&s, &code, Some(VERIFIER)).await?;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(cache, "no-store");
    assert!(
        !introspect(&s, access).await?,
        "the replay revoked the access token"
    );
    let res = admit_e2e::http()
        .post(format!("{}/oauth/token", s.p.issuer))
        .basic_auth(&s.c.id, s.c.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await?;
    assert_eq!(res.status(), 400, "the replay revoked the refresh token");
    Ok(())
}

async fn concurrent_redemptions(p: Platform) -> anyhow::Result<()> {
    let mut s = signed_in(p, ALL_GRANTS, false).await?;
    let code = code(&mut s).await?;
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, code) = (s.clone(), code.clone());
            tokio::spawn(async move { redeem(&s, &code, Some(VERIFIER)).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (status, body, _) = t.await??;
        match status {
            200 => ok += 1,
            400 => assert_eq!(body["error"], "invalid_grant"),
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one redemption succeeds ({})", s.p.mode);
    Ok(())
}

#[tokio::test]
async fn twenty_concurrent_redemptions_of_one_code_give_one_success_on_sqlite() -> anyhow::Result<()>
{
    concurrent_redemptions(Platform::embedded(&[])?).await
}

#[tokio::test]
async fn twenty_concurrent_redemptions_of_one_code_give_one_success_on_postgres(
) -> anyhow::Result<()> {
    concurrent_redemptions(Platform::production(&[])?).await
}

#[tokio::test]
async fn pkce_plain_and_a_missing_verifier_are_refused() -> anyhow::Result<()> {
    let mut s = signed_in(Platform::embedded(&[])?, ALL_GRANTS, false).await?;
    // plain, or no method (which means plain): refused at the redirect URI.
    for method in ["plain", ""] {
        let url = authorize_url(
            &s,
            &[
                ("code_challenge_method", method),
                ("code_challenge", VERIFIER),
            ],
        );
        let loc = s.agent.authorize(&url).await?;
        let q = query_of(&loc);
        assert_eq!(
            q.get("error").map(String::as_str),
            Some("invalid_request"),
            "{method}: {loc}"
        );
        assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
        assert!(!q.contains_key("code"));
    }
    // A code issued with a challenge is refused without its verifier, or with another.
    let c1 = code(&mut s).await?;
    let (status, body, _) = redeem(&s, &c1, None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let c2 = code(&mut s).await?;
    let wrong = "x".repeat(43);
    let (status, _, _) = redeem(&s, &c2, Some(&wrong)).await?;
    assert_eq!(status, 400);
    // A public client must use PKCE at all.
    let mut pubc = signed_in(Platform::embedded(&[])?, &["authorization_code"], true).await?;
    let url = authorize_url(
        &pubc,
        &[("code_challenge", ""), ("code_challenge_method", "")],
    );
    let loc = pubc.agent.authorize(&url).await?;
    assert_eq!(
        query_of(&loc).get("error").map(String::as_str),
        Some("invalid_request")
    );
    // ... and with it, redeems without a secret.
    let c3 = code(&mut pubc).await?;
    let res = admit_e2e::http()
        .post(format!("{}/oauth/token", pubc.p.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", c3.as_str()),
            ("redirect_uri", pubc.c.redirect_uri.as_str()),
            ("client_id", pubc.c.id.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    Ok(())
}

#[tokio::test]
async fn the_implicit_grant_is_only_for_clients_registered_with_it() -> anyhow::Result<()> {
    // Without the implicit grant: refused.
    let mut s = signed_in(Platform::embedded(&[])?, ALL_GRANTS, false).await?;
    let url = authorize_url(
        &s,
        &[
            ("response_type", "token"),
            ("code_challenge", ""),
            ("code_challenge_method", ""),
        ],
    );
    let loc = s.agent.authorize(&url).await?;
    assert!(loc.contains("error=unauthorized_client"), "{loc}");
    assert!(!loc.contains("access_token"));

    // With it: the token in the fragment, and no refresh token.
    let mut s = signed_in(Platform::embedded(&[])?, &["implicit"], false).await?;
    let url = authorize_url(
        &s,
        &[
            ("response_type", "token"),
            ("code_challenge", ""),
            ("code_challenge_method", ""),
        ],
    );
    let loc = s.agent.authorize(&url).await?;
    let (base, fragment) = loc.split_once('#').context("a fragment")?;
    assert_eq!(base, s.c.redirect_uri);
    let f = query_of(&format!("#{fragment}"));
    assert!(
        f.get("access_token").is_some_and(|t| !t.is_empty()),
        "{loc}"
    );
    assert_eq!(f.get("token_type").map(String::as_str), Some("bearer"));
    assert_eq!(f.get("expires_in").map(String::as_str), Some("86400"));
    assert_eq!(f.get("state").map(String::as_str), Some("st-123"));
    assert!(!f.contains_key("refresh_token"));
    let claims = verify_access_token(&s.p.issuer, &f["access_token"]).await?;
    assert_eq!(claims["client_id"], s.c.id.as_str());
    Ok(())
}

#[tokio::test]
async fn consent_is_remembered_and_denial_reaches_the_client() -> anyhow::Result<()> {
    let mut s = signed_in(Platform::embedded(&[])?, ALL_GRANTS, false).await?;
    // First time: the consent page; deny.
    let page = s.agent.get(&authorize_url(&s, &[])).await?;
    assert_eq!(page.status, 200);
    let mut form = admit_e2e::platform::hidden_fields(&page.body);
    form.push(("decision".into(), "deny".into()));
    let res = s
        .agent
        .post(&format!("{}/oauth/authorize", s.p.issuer), &form)
        .await?;
    let q = query_of(res.location.as_deref().unwrap_or_default());
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    // A forged form (no CSRF token): refused, nothing issued.
    let forged: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| k != "csrf_token")
        .cloned()
        .chain([("decision".to_owned(), "allow".to_owned())])
        .collect();
    let res = s
        .agent
        .post(&format!("{}/oauth/authorize", s.p.issuer), &forged)
        .await?;
    assert_eq!((res.status, res.location), (403, None));
    // Allow once; the next request goes straight back with a code.
    let _ = code(&mut s).await?;
    let again = s.agent.get(&authorize_url(&s, &[])).await?;
    assert_eq!(again.status, 303);
    assert!(query_of(again.location.as_deref().unwrap_or_default()).contains_key("code"));
    Ok(())
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_and_the_limit_passes() -> anyhow::Result<()> {
    let p = Platform::embedded(&[
        ("ADMIT__ACCOUNT__LOGIN_FAILURES_PER_ACCOUNT", "3"),
        ("ADMIT__ACCOUNT__LOGIN_WINDOW_SECS", "2"),
    ])?;
    let email = format!("{}@example.com", admit_e2e::unique("rl"));
    p.user(&email, PASSWORD).await?;
    let mut agent = Agent::new()?;
    for _ in 0..3 {
        let res = agent.login(&p.accounts, &email, "wrong password").await?;
        assert_eq!(res.status, 401);
    }
    // Limited now, even with the right password.
    let res = agent.login(&p.accounts, &email, PASSWORD).await?;
    assert_eq!(res.status, 429, "{}", res.body);
    assert!(res.headers.contains_key("retry-after"));
    // Not for good: after the window, the right password works.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let res = agent.login(&p.accounts, &email, PASSWORD).await?;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(agent.cookie("__Host-admit_session").is_some());
    // The login form refuses a post without its CSRF token.
    let res = agent
        .post(
            &format!("{}/login", p.accounts),
            &[
                ("login".into(), email.clone()),
                ("password".into(), PASSWORD.into()),
            ],
        )
        .await?;
    assert_eq!(res.status, 403);
    Ok(())
}

// --- partner credentials at the account service ---------------------------------

#[tokio::test]
async fn partner_endpoints_take_a_scoped_client_credentials_token_or_an_api_key(
) -> anyhow::Result<()> {
    let p = Platform::embedded(&[("ADMIT__STAGE", "production")])?;
    let c = p.client("http://127.0.0.1:9/cb", ALL_GRANTS, false)?;
    let secret = c.secret.clone().context("secret")?;
    let token = |scope: &'static str| {
        let (issuer, id, secret) = (p.issuer.clone(), c.id.clone(), secret.clone());
        async move {
            let body: Value = admit_e2e::http()
                .post(format!("{issuer}/oauth/token"))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials"), ("scope", scope)])
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(
                body["access_token"]
                    .as_str()
                    .context("access_token")?
                    .to_owned(),
            )
        }
    };
    let sign_up = |auth: Option<String>| {
        let base = p.accounts.clone();
        async move {
            let mut req = admit_e2e::http().post(format!("{base}/account")).json(
                &serde_json::json!({
                    "contacts": [["EMAIL", format!("{}@example.com", admit_e2e::unique("pa")), true]],
                    "password": PASSWORD,
                }),
            );
            if let Some(a) = auth {
                req = req.bearer_auth(a);
            }
            let res = req.send().await?;
            anyhow::Ok(res.status().as_u16())
        }
    };
    assert_eq!(sign_up(None).await?, 401, "anonymous, in production");
    assert_eq!(sign_up(Some(token("accounts:create").await?)).await?, 201);
    assert_eq!(
        sign_up(Some(token("openid").await?)).await?,
        403,
        "scope missing"
    );
    assert_eq!(sign_up(Some("not-a-token".into())).await?, 401);
    let forged = token("accounts:create").await?.replace('.', ".x");
    assert_eq!(sign_up(Some(forged)).await?, 401);
    // API keys: good until revoked, at once.
    let partner = p.cli(&["partner", "create", "--name", "Feed"])?;
    let pid = partner["partner_id"].as_str().context("pid")?;
    let key = p.cli(&["api-key", "create", "--partner", pid])?;
    let api_key = key["api_key"].as_str().context("api_key")?.to_owned();
    assert_eq!(sign_up(Some(api_key.clone())).await?, 201);
    p.cli(&[
        "api-key",
        "revoke",
        key["key_id"].as_str().context("key_id")?,
    ])?;
    assert_eq!(sign_up(Some(api_key)).await?, 401);
    Ok(())
}

#[tokio::test]
async fn the_internal_endpoint_mints_a_code_the_partner_exchanges_once() -> anyhow::Result<()> {
    let internal = admit_e2e::unique("it_");
    let p = Platform::production(&[("ADMIT__INTERNAL__TOKEN", internal.as_str())])?;
    let c = p.client("http://127.0.0.1:9/cb", ALL_GRANTS, false)?;
    let account = p
        .user(&format!("{}@example.com", admit_e2e::unique("m")), PASSWORD)
        .await?;
    let mint = |token: Option<String>, account: String| {
        let (issuer, client) = (p.issuer.clone(), c.id.clone());
        async move {
            let mut req = admit_e2e::http()
                .post(format!("{issuer}/internal/v1/codes"))
                .json(&serde_json::json!({"client_id": client, "account_id": account}));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await?;
            let status = res.status().as_u16();
            anyhow::Ok((status, res.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    assert_eq!(mint(None, account.clone()).await?.0, 401);
    assert_eq!(mint(Some("wrong".into()), account.clone()).await?.0, 401);
    assert_eq!(
        mint(Some(internal.clone()), "no-such-account".into())
            .await?
            .0,
        400
    );
    let (status, body) = mint(Some(internal.clone()), account.clone()).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_in"], 600);
    let code = body["code"].as_str().context("code")?;
    let exchange = || {
        admit_e2e::http()
            .post(format!("{}/oauth/token", p.issuer))
            .basic_auth(&c.id, c.secret.as_deref())
            .form(&[("grant_type", "authorization_code"), ("code", code)])
            .send()
    };
    let res = exchange().await?;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await?;
    let claims = verify_access_token(
        &p.issuer,
        tokens["access_token"].as_str().unwrap_or_default(),
    )
    .await?;
    assert_eq!(claims["sub"], account.as_str());
    assert!(tokens["refresh_token"].is_string());
    assert_eq!(exchange().await?.status(), 400, "single use");
    Ok(())
}

#[tokio::test]
async fn the_admin_api_manages_partners_and_changes_take_effect_at_once() -> anyhow::Result<()> {
    let admin = admit_e2e::unique("adm_");
    let p = Platform::production(&[("ADMIT__INTERNAL__ADMIN_TOKEN", admin.as_str())])?;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>, auth: Option<&str>| {
        let mut req = admit_e2e::http().request(method, format!("{}{path}", p.issuer));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        async move {
            let res = req.send().await?;
            let status = res.status().as_u16();
            anyhow::Ok((status, res.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    let post = reqwest::Method::POST;
    let partner = serde_json::json!({"name": "Admin-made"});
    assert_eq!(
        call(
            post.clone(),
            "/admin/v1/partners",
            Some(partner.clone()),
            None
        )
        .await?
        .0,
        401
    );
    assert_eq!(
        call(
            post.clone(),
            "/admin/v1/partners",
            Some(partner.clone()),
            Some("nope")
        )
        .await?
        .0,
        401
    );
    let (status, bad) = call(
        post.clone(),
        "/admin/v1/partners",
        Some(serde_json::json!({"name": ""})),
        Some(&admin),
    )
    .await?;
    assert_eq!((status, bad["field"].as_str()), (400, Some("name")));
    let (status, created) = call(
        post.clone(),
        "/admin/v1/partners",
        Some(partner),
        Some(&admin),
    )
    .await?;
    assert_eq!(status, 201);
    let pid = created["partner_id"]
        .as_str()
        .context("partner_id")?
        .to_owned();
    let (status, client) = call(
        post.clone(),
        "/admin/v1/clients",
        Some(serde_json::json!({"partner_id": pid, "name": "svc", "grants": ["client_credentials"], "scopes": ["accounts:create"]})),
        Some(&admin),
    )
    .await?;
    assert_eq!(status, 201, "{client}");
    // The new client works at once, without a restart.
    let res = admit_e2e::http()
        .post(format!("{}/oauth/token", p.issuer))
        .basic_auth(
            client["client_id"].as_str().unwrap_or_default(),
            client["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    let (status, key) = call(
        post.clone(),
        &format!("/admin/v1/partners/{pid}/api-keys"),
        None,
        Some(&admin),
    )
    .await?;
    assert_eq!(status, 201);
    assert!(key["api_key"]
        .as_str()
        .is_some_and(|k| k.starts_with("ak_")));
    let kid = key["key_id"].as_str().context("key_id")?;
    let path = format!("/admin/v1/api-keys/{kid}");
    assert_eq!(
        call(reqwest::Method::DELETE, &path, None, Some(&admin))
            .await?
            .0,
        204
    );
    assert_eq!(
        call(reqwest::Method::DELETE, &path, None, Some(&admin))
            .await?
            .0,
        404
    );
    let (status, codes) = call(
        post,
        &format!("/admin/v1/partners/{pid}/plan-codes"),
        Some(serde_json::json!({"codes": ["GOLD", "SILVER"]})),
        Some(&admin),
    )
    .await?;
    assert_eq!(
        (status, codes["plan_codes"].clone()),
        (200, serde_json::json!(["GOLD", "SILVER"]))
    );
    Ok(())
}

#[tokio::test]
async fn rs256_and_eddsa_are_selectable_and_verify_against_the_jwks() -> anyhow::Result<()> {
    for (alg, kty) in [("RS256", "RSA"), ("EdDSA", "OKP")] {
        let p = Platform::embedded(&[("ADMIT__OAUTH__SIGNING_ALG", alg)])?;
        let c = p.client("http://127.0.0.1:9/cb", ALL_GRANTS, false)?;
        let body: Value = admit_e2e::http()
            .post(format!("{}/oauth/token", p.issuer))
            .basic_auth(&c.id, c.secret.as_deref())
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?
            .json()
            .await?;
        let token = body["access_token"].as_str().context("access_token")?;
        let header = jsonwebtoken::decode_header(token)?;
        assert_eq!(format!("{:?}", header.alg), alg);
        let jwks: Value = admit_e2e::http()
            .get(format!("{}/oauth/jwks", p.issuer))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(jwks["keys"][0]["kty"], kty);
        let claims = verify_access_token(&p.issuer, token).await?;
        assert_eq!(claims["client_id"], c.id.as_str());
        let meta: Value = admit_e2e::http()
            .get(format!("{}/.well-known/openid-configuration", p.issuer))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(meta["id_token_signing_alg_values_supported"][0], alg);
    }
    Ok(())
}

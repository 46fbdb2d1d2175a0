//! The authorization server as a partner meets it: credentials made with the admin
//! CLI, the client_credentials grant, JWT access tokens verified against the JWKS,
//! and key rotation without a restart.

use admit_e2e::{http, Proc};
use jsonwebtoken::{decode, decode_header, jwk::JwkSet, DecodingKey, Validation};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn cli(data: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = args.to_vec();
    all.extend(["--data-dir", data.to_str().unwrap_or_default()]);
    admit_e2e::admin_cli(&all, &[])
}

/// Client credentials, form, expected status and RFC 6749 error code.
type ErrorCase<'a> = (
    Option<(&'a str, &'a str)>,
    Vec<(&'a str, &'a str)>,
    u16,
    &'a str,
);

struct Partner {
    client_id: String,
    client_secret: String,
    api_key: String,
}

fn setup(data: &Path) -> anyhow::Result<Partner> {
    let p = cli(
        data,
        &[
            "partner",
            "create",
            "--name",
            "Carvoyant",
            "--landing-url",
            "https://partner.example.com/",
        ],
    )?;
    let pid = p["partner_id"].as_str().unwrap_or_default().to_owned();
    let c = cli(
        data,
        &[
            "client",
            "create",
            "--partner",
            &pid,
            "--name",
            "backend",
            "--grant",
            "client_credentials",
            "--scope",
            "accounts:create",
            "--scope",
            "accounts:read",
        ],
    )?;
    let k = cli(data, &["api-key", "create", "--partner", &pid])?;
    cli(data, &["plan-code", "add", "--partner", &pid, "GOLD"])?;
    Ok(Partner {
        client_id: c["client_id"].as_str().unwrap_or_default().into(),
        client_secret: c["client_secret"].as_str().unwrap_or_default().into(),
        api_key: k["api_key"].as_str().unwrap_or_default().into(),
    })
}

async fn grant(
    base: &str,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    let mut req = http().post(format!("{base}/oauth/token")).form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await?;
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    Ok((status, headers, res.json().await.unwrap_or(Value::Null)))
}

async fn verify(base: &str, token: &str) -> anyhow::Result<Value> {
    let jwks: JwkSet = http()
        .get(format!("{base}/oauth/jwks"))
        .send()
        .await?
        .json()
        .await?;
    let header = decode_header(token)?;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 typ");
    let kid = header.kid.unwrap_or_default();
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| anyhow::anyhow!("kid {kid} not in the JWKS"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[base]);
    validation.set_issuer(&[base]);
    Ok(decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)?.claims)
}

#[tokio::test]
async fn client_credentials_tokens_verify_against_the_jwks_and_keys_rotate() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let p = setup(data.path())?;
    let env = vec![("ADMIT__OAUTH__KEY_REFRESH_SECS".to_owned(), "1".to_owned())];
    let server = Proc::start(
        "admit",
        &[
            "serve",
            "--port",
            "0",
            "--data-dir",
            data.path().to_str().unwrap_or_default(),
        ],
        &env,
        data.path(),
    )?;
    let base = server.url.clone();

    let meta: Value = http()
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(meta["issuer"], base.as_str());
    assert_eq!(meta["token_endpoint"], format!("{base}/oauth/token"));
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );

    let (status, headers, body) = grant(
        &base,
        Some((&p.client_id, &p.client_secret)),
        &[("grant_type", "client_credentials")],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 86400);
    assert_eq!(body["scope"], "accounts:create accounts:read");
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh token for client_credentials (RFC 6749 §4.4.3)"
    );
    let first = body["access_token"].as_str().unwrap_or_default().to_owned();
    let claims = verify(&base, &first).await?;
    assert_eq!(claims["client_id"], p.client_id.as_str());
    assert_eq!(claims["sub"], p.client_id.as_str());
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // client_secret_post, and a narrower scope.
    let (status, _, body) = grant(
        &base,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &p.client_id),
            ("client_secret", &p.client_secret),
            ("scope", "accounts:create"),
        ],
    )
    .await?;
    assert_eq!(
        (status, body["scope"].as_str()),
        (200, Some("accounts:create")),
        "{body}"
    );

    // RFC 6749 §5.2 errors.
    let cases: Vec<ErrorCase> = vec![
        (
            Some((&p.client_id, "wrong")),
            vec![("grant_type", "client_credentials")],
            401,
            "invalid_client",
        ),
        (
            Some(("c_nobody", "x")),
            vec![("grant_type", "client_credentials")],
            401,
            "invalid_client",
        ),
        (
            None,
            vec![("grant_type", "client_credentials")],
            401,
            "invalid_client",
        ),
        (
            Some((&p.client_id, &p.client_secret)),
            vec![
                ("grant_type", "password"),
                ("username", "u"),
                ("password", "p"),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            Some((&p.client_id, &p.client_secret)),
            vec![("grant_type", "client_credentials"), ("scope", "admin")],
            400,
            "invalid_scope",
        ),
        (
            Some((&p.client_id, &p.client_secret)),
            vec![("scope", "accounts:create")],
            400,
            "invalid_request",
        ),
        (
            Some((&p.client_id, &p.client_secret)),
            vec![
                ("grant_type", "client_credentials"),
                ("client_secret", &p.client_secret),
            ],
            400,
            "invalid_request",
        ),
    ];
    for (auth, form, status, code) in cases {
        let (got, headers, body) = grant(&base, auth, &form).await?;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{form:?}: {body}"
        );
        assert_eq!(
            headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        if status == 401 {
            assert!(headers.contains_key("www-authenticate"));
        }
    }

    // Introspection (RFC 7662), then revocation (RFC 7009) makes it inactive.
    let introspect = |token: String| {
        let (id, secret, base) = (p.client_id.clone(), p.client_secret.clone(), base.clone());
        async move {
            let res = http()
                .post(format!("{base}/oauth/introspect"))
                .basic_auth(id, Some(secret))
                .form(&[("token", token.as_str())])
                .send()
                .await?;
            anyhow::ensure!(res.status() == 200, "introspect: {}", res.status());
            Ok::<Value, anyhow::Error>(res.json().await?)
        }
    };
    let (_, _, body) = grant(
        &base,
        Some((&p.client_id, &p.client_secret)),
        &[("grant_type", "client_credentials")],
    )
    .await?;
    let doomed = body["access_token"].as_str().unwrap_or_default().to_owned();
    let info = introspect(doomed.clone()).await?;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], p.client_id.as_str());
    assert_eq!(info["scope"], "accounts:create accounts:read");
    assert_eq!(introspect("not-a-token".into()).await?["active"], false);
    let tampered = format!("{}x", &doomed[..doomed.len() - 1]);
    assert_eq!(
        introspect(tampered).await?["active"],
        false,
        "a bad signature is inactive"
    );
    let res = http()
        .post(format!("{base}/oauth/revoke"))
        .basic_auth(&p.client_id, Some(&p.client_secret))
        .form(&[("token", doomed.as_str())])
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(doomed).await?["active"], false, "revoked");
    assert_eq!(
        introspect(first.clone()).await?["active"],
        true,
        "other tokens are untouched"
    );
    let res = http()
        .post(format!("{base}/oauth/introspect"))
        .form(&[("token", first.as_str())])
        .send()
        .await?;
    assert_eq!(
        res.status(),
        401,
        "introspection needs client authentication"
    );

    // No client secret or API key is stored in clear.
    let mut stored = std::fs::read(data.path().join("admit.db"))?;
    if let Ok(wal) = std::fs::read(data.path().join("admit.db-wal")) {
        stored.extend(wal);
    }
    let haystack = String::from_utf8_lossy(&stored);
    assert!(
        !haystack.contains(&p.client_secret[3..]),
        "client secret in clear"
    );
    assert!(!haystack.contains(&p.api_key[3..]), "API key in clear");

    // Rotation: the running server picks up the new key; the old one stays published.
    let rotated = cli(data.path(), &["keys", "rotate"])?;
    let new_kid = rotated["kid"].as_str().unwrap_or_default().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = loop {
        let (_, _, body) = grant(
            &base,
            Some((&p.client_id, &p.client_secret)),
            &[("grant_type", "client_credentials")],
        )
        .await?;
        let t = body["access_token"].as_str().unwrap_or_default().to_owned();
        if decode_header(&t)?.kid.as_deref() == Some(new_kid.as_str()) {
            break t;
        }
        assert!(Instant::now() < deadline, "the new key never signed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    verify(&base, &token).await?;
    verify(&base, &first)
        .await
        .map_err(|e| anyhow::anyhow!("a token of the old key no longer verifies: {e}"))?;
    let jwks: Value = http()
        .get(format!("{base}/oauth/jwks"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    Ok(())
}

#[tokio::test]
async fn admin_cli_refuses_bad_input() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let run = |args: &[&str]| {
        Command::new(admit_e2e::bin("admit"))
            .args(args)
            .args(["--data-dir", data.path().to_str().unwrap_or_default()])
            .output()
    };
    let p = cli(data.path(), &["partner", "create", "--name", "P"])?;
    let pid = p["partner_id"].as_str().unwrap_or_default();
    for args in [
        vec![
            "client",
            "create",
            "--partner",
            "p_nobody",
            "--name",
            "x",
            "--grant",
            "client_credentials",
        ],
        vec![
            "client",
            "create",
            "--partner",
            pid,
            "--name",
            "x",
            "--grant",
            "client_credentials",
            "--public",
        ],
        vec![
            "client",
            "create",
            "--partner",
            pid,
            "--name",
            "x",
            "--grant",
            "authorization_code",
        ],
        vec![
            "client",
            "create",
            "--partner",
            pid,
            "--name",
            "x",
            "--redirect-uri",
            "http://evil.example.com/cb",
        ],
        vec![
            "client",
            "create",
            "--partner",
            pid,
            "--name",
            "x",
            "--grant",
            "password",
        ],
        vec!["api-key", "revoke", "k_nobody"],
    ] {
        let out = run(&args)?;
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
    Ok(())
}

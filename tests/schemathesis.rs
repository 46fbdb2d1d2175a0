//! schemathesis over proto-docs/openapi.json against both run modes: every described
//! operation, generated requests (examples, coverage, fuzzing and the stateful phase
//! over the description's links), with valid credentials for each security scheme
//! (`admin_token`, a partner `api_key`, a `client_credentials` bearer token from
//! /oauth/token) and every check on. A server error or any departure from the
//! description (status code, content type, headers, body) fails the test.
//!
//! The embedded default serves every operation on one port; the production topology
//! serves the admin mail API on the mailer's port and the rest on the account
//! service's, so schemathesis runs once per service with that service's operations.
//! Both run in the `development`/`integration` stage, where CAPTCHA is not asked for.
//!
//! The schemathesis binary: `ADMIT_TEST_SCHEMATHESIS` (scripts/test installs a pinned
//! one into a venv and sets it), else `schemathesis` on PATH.

use admit_e2e::platform::Platform;
use admit_e2e::{http, SmtpCapture};
use anyhow::Context;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ADMIN: &str = "schemathesis-admin-token-0123456789abcdef";
/// Test cases per operation and phase (`ADMIT_TEST_SCHEMATHESIS_MAX_EXAMPLES` for a
/// longer run), and the seed: a bounded, repeatable run.
const MAX_EXAMPLES: &str = "30";
const SEED: &str = "20261203";

fn max_examples() -> String {
    std::env::var("ADMIT_TEST_SCHEMATHESIS_MAX_EXAMPLES")
        .ok()
        .filter(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
        .unwrap_or_else(|| MAX_EXAMPLES.to_owned())
}
/// The CSRF double-submit value the page forms are sent with (cookie and field).
const CSRF: &str = "schemathesis-csrf-0123456789abcdef0123456789";

fn schemathesis() -> PathBuf {
    std::env::var_os("ADMIT_TEST_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("schemathesis"))
}

fn description() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto-docs/openapi.json")
}

/// A partner with a confidential client allowed `client_credentials` and
/// `accounts:create`, an API key and two plan codes; returns (API key, bearer token).
async fn partner_credentials(p: &Platform) -> anyhow::Result<(String, String)> {
    let partner = p.cli(&["partner", "create", "--name", "Schema Partner"])?;
    let pid = partner["partner_id"]
        .as_str()
        .context("partner_id")?
        .to_owned();
    let client = p.cli(&[
        "client",
        "create",
        "--partner",
        &pid,
        "--name",
        "Schema App",
        "--redirect-uri",
        "http://127.0.0.1:9/cb",
        "--grant",
        "client_credentials",
        // `POST /api/account/` issues the new account's code to the calling client.
        "--grant",
        "authorization_code",
        "--scope",
        "accounts:create",
    ])?;
    let key = p.cli(&["api-key", "create", "--partner", &pid])?;
    p.cli(&["plan-code", "add", "--partner", &pid, "PLAN-A", "PLAN-B"])?;
    let res = http()
        .post(format!("{}/oauth/token", p.issuer))
        .basic_auth(
            client["client_id"].as_str().context("client_id")?,
            client["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "accounts:create"),
        ])
        .send()
        .await?;
    anyhow::ensure!(
        res.status() == 200,
        "/oauth/token answered {}",
        res.status()
    );
    let token: Value = res.json().await?;
    Ok((
        key["api_key"].as_str().context("api_key")?.to_owned(),
        token["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned(),
    ))
}

/// Runs schemathesis against `url` with `filter` (its operation-selection options);
/// prints its summary and fails on a non-zero exit, with its whole output.
fn run(label: &str, url: &str, filter: &[&str], api_key: &str, bearer: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // tests/schemathesis.toml: each security scheme's credential (from the
    // environment set here) and what a generated request cannot know, with reasons.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let out = Command::new(schemathesis())
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config)
        .args(["run", "--no-color"])
        .arg(description())
        .args(["--url", url])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &max_examples(), "--seed", SEED])
        .args(["--generation-database", "none"])
        // One worker: hypothesis' lambda-source parsing is not thread-safe on
        // Python 3.11 ("AST constructor recursion depth mismatch" with two).
        .args(["--workers", "1"])
        .args(filter)
        .env("ADMIT_ST_ADMIN_TOKEN", ADMIN)
        .env("ADMIT_ST_API_KEY", api_key)
        .env("ADMIT_ST_BEARER", bearer)
        .env("ADMIT_ST_CSRF", CSRF)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .with_context(|| {
            format!(
                "running {} (scripts/test installs it; or pip install schemathesis)",
                schemathesis().display()
            )
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect();
    println!("schemathesis {label}:\n{}", summary.join("\n"));
    // scripts/test prints these after the suite (cargo test keeps a passing test's
    // output to itself), so every CI log carries the summary.
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "schemathesis-{}.txt",
        label.replace([' ', ','], "-")
    ));
    std::fs::write(
        &file,
        format!("schemathesis {label}:\n{}\n", summary.join("\n")),
    )?;
    anyhow::ensure!(
        out.status.success(),
        "schemathesis {label} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn the_embedded_default_matches_its_description() -> anyhow::Result<()> {
    let p = Platform::embedded(&[
        ("ADMIT__STAGE", "development"),
        ("ADMIT__INTERNAL__ADMIN_TOKEN", ADMIN),
    ])?;
    let (api_key, bearer) = partner_credentials(&p).await?;
    run("embedded", &p.accounts, &[], &api_key, &bearer)
}

#[tokio::test]
async fn the_production_topology_matches_its_description() -> anyhow::Result<()> {
    let smtp = SmtpCapture::start()?;
    let mut p = Platform::production(&[
        ("ADMIT__STAGE", "integration"),
        ("ADMIT__INTERNAL__ADMIN_TOKEN", ADMIN),
    ])?;
    p.start_mailer(&smtp)?;
    let mailer = p.procs.last().context("the mailer")?.url.clone();
    let (api_key, bearer) = partner_credentials(&p).await?;
    // The mail admin API is the mailer's; everything else the account service's.
    let mail = "^/admin/v1/mail";
    run(
        "production, account service",
        &p.accounts,
        &["--exclude-path-regex", mail],
        &api_key,
        &bearer,
    )?;
    run(
        "production, mailer",
        &mailer,
        &["--include-path-regex", mail],
        &api_key,
        &bearer,
    )
}

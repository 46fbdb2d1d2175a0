//! proto-docs/openapi.json is what the code generates: a change to an API that does
//! not update the description fails here.

use std::process::Command;

#[test]
fn the_checked_in_openapi_description_is_current() -> anyhow::Result<()> {
    let out = Command::new(admit_e2e::bin("admit"))
        .arg("openapi")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "admit openapi failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout)?;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto-docs/openapi.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated.trim() == checked_in.trim(),
        "proto-docs/openapi.json is out of date: run `cargo run -p admit -- openapi > proto-docs/openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated)?;
    assert!(doc["paths"]["/account"]["post"].is_object());
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    Ok(())
}

//! The runner of the fuzz targets in `tests/` (proptest, on stable Rust).
//!
//! Each target runs [`DEFAULT_CASES`] generated inputs under `cargo test`, or
//! `PROPTEST_CASES` of them (`scripts/bench fuzz` runs 100,000 per target). With
//! `ADMIT_FUZZ_REPORT=<file>` each target appends one JSON line to the file: its
//! name, the cases asked for, the inputs tried (shrinking included), the seconds it
//! took and whether it failed.

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::fmt::Debug;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Cases per target under `cargo test` when `PROPTEST_CASES` is not set.
pub const DEFAULT_CASES: u32 = 512;

/// The cases a target runs.
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Runs `test` on `cases()` inputs from `strategy`; panics with the smallest failing
/// input proptest finds.
pub fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let cases = cases();
    let config = Config {
        cases,
        // Explicit regression tests are kept in tests/regressions.rs instead.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let tried = AtomicU64::new(0);
    let started = Instant::now();
    let result = runner.run(&strategy, |v| {
        tried.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    let seconds = started.elapsed().as_secs_f64();
    if let Ok(path) = std::env::var("ADMIT_FUZZ_REPORT") {
        let line = serde_json::json!({
            "target": name,
            "cases": cases,
            "tried": tried.load(Ordering::Relaxed),
            "seconds": seconds,
            "failed": result.is_err(),
            "failure": result.as_ref().err().map(|e| e.to_string()),
        });
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!("fuzz {name}: could not append to {path}: {e}");
        }
    }
    if let Err(e) = result {
        panic!("fuzz target {name} failed: {e}");
    }
}

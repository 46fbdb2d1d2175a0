#!/usr/bin/env python3
"""The fuzz section of proto-docs/benchmarks.md from a run's report.

    summarise_fuzz.py DIR OUT --cases N --status S --profile P

DIR holds machine.json, started, finished, cargo.txt and report.jsonl (one JSON line
per fuzz target, written by crates/fuzz: target, cases, tried, seconds, failed,
failure).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from summarise import replace_section  # noqa: E402


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("out")
    ap.add_argument("--cases", type=int, required=True)
    ap.add_argument("--status", type=int, required=True)
    ap.add_argument("--profile", default="dev")
    a = ap.parse_args()
    machine = json.loads(read(os.path.join(a.dir, "machine.json"), "{}") or "{}")
    rows = []
    for line in read(os.path.join(a.dir, "report.jsonl")).splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    rows.sort(key=lambda r: r.get("target", ""))
    failed = [r for r in rows if r.get("failed")]
    lines = []
    add = lines.append
    add("## Fuzz targets (proptest) over the parsers")
    add("")
    add("Last run: {} to {} (UTC), commit `{}`, `BENCH_FUZZ_CASES={}`, `{}` profile.".format(
        read(os.path.join(a.dir, "started"), "?"), read(os.path.join(a.dir, "finished"), "?"),
        machine.get("commit", "?"), a.cases, a.profile))
    add("")
    add("Machine: {} cores (`nproc`), CPU `{}`, {}; load average before the run {}.".format(
        machine.get("nproc", "?"), machine.get("cpu", "?"), machine.get("rustc", "?"),
        " ".join(machine.get("loadavg", [])) or "?"))
    add("")
    total_cases = sum(r.get("cases", 0) for r in rows)
    total_s = sum(r.get("seconds", 0.0) for r in rows)
    add("Targets: {}; cases: {:,}; time: {:.1f} s; failures: {}; `cargo test` exit status {}.".format(
        len(rows), total_cases, total_s, len(failed), a.status))
    add("")
    add("| target | cases | inputs tried (with shrinking) | time | inputs/s | failed |")
    add("| --- | --: | --: | --: | --: | --- |")
    for r in rows:
        s = r.get("seconds", 0.0)
        add("| `{}` | {:,} | {:,} | {:.1f} s | {:,.0f} | {} |".format(
            r.get("target"), r.get("cases", 0), r.get("tried", 0), s,
            r.get("tried", 0) / s if s > 0 else 0, "**yes**" if r.get("failed") else "no"))
    if failed:
        add("")
        add("Failures (each becomes an explicit regression `#[test]` in crates/fuzz/tests/targets.rs and a fix):")
        add("")
        for r in failed:
            add("- `{}`: {}".format(r.get("target"), (r.get("failure") or "").splitlines()[0][:300]))
    if not rows:
        add("")
        add("No target reported: see the run's cargo.txt (the build or the harness failed).")
    add("")
    add("### What is measured, and how")
    add("")
    add("`cargo test -p admit-fuzz --test targets` with `PROPTEST_CASES` set: each target "
        "(crates/fuzz/tests/targets.rs) runs that many generated inputs through the real "
        "parser and checks its property (see the file: exact redirect-URI match, email "
        "parse/display/parse and idempotent normalising, locale round trip, the batch reader "
        "reads every row or refuses the whole body, no mutated JWT or opaque token verifies, "
        "Accept-Language picks the heaviest of our languages, the forms read back what was "
        "sent). Under plain `cargo test` each target runs 512 cases. Inputs tried counts every "
        "call of the property, shrinking included.")
    add("")
    add("Reproduce: `BENCH_FUZZ_CASES={} scripts/bench fuzz`.".format(a.cases))
    replace_section(a.out, "fuzz", "\n".join(lines))
    print("\n".join(lines[:8]))


if __name__ == "__main__":
    main()

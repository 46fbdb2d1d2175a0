#!/usr/bin/env python3
"""Summarises `scripts/bench compare` (standard library only).

    summarise_compare.py round DIR                 one line about one round, for the console
    summarise_compare.py section DIR OUT [options] writes the compare section of OUT (markdown)
"""

import argparse
import base64
import json
import os
import sys

from summarise import add_anomalies, add_run_header, busy_note, write_section, fmt, fmt_ms, load_json, median, sum_errors

SERVERS = ("admit", "node")
LABEL = {"admit": "admit-oauth", "node": "oidc-provider"}


def read_side(d, server):
    res = load_json(os.path.join(d, server + ".json"), {}) or {}
    cpu = load_json(os.path.join(d, server + "-cpu.json"), {}) or {}
    mem = load_json(os.path.join(d, "mem-%s.json" % server), {}) or {}
    lat = res.get("latency_us", {})
    dur = (res.get("duration_us") or 0) / 1e6
    wall = cpu.get("wall_s")
    errors = res.get("errors") or {}
    return {
        "rate": res.get("ok_2xx", 0) / dur if dur else None,
        "ok": res.get("ok_2xx"),
        "non_2xx": res.get("non_2xx") or 0,
        "statuses": res.get("statuses", {}),
        "samples": res.get("non_2xx_samples", []),
        "socket": sum_errors(errors) - errors.get("status", 0) if res else 0,
        "p50": lat.get("p50", 0) / 1000 if lat else None,
        "p99": lat.get("p99", 0) / 1000 if lat else None,
        "foreign": cpu.get("foreign_cores"),
        "server_cores": cpu["pids_cpu_s"] / wall if wall and "pids_cpu_s" in cpu else None,
        "wrk_cores": cpu["commands_cpu_s"] / wall if wall and "commands_cpu_s" in cpu else None,
        "us_per_req": (cpu["pids_cpu_s"] * 1e6 / res["ok_2xx"]
                       if res.get("ok_2xx") and "pids_cpu_s" in cpu else None),
        "hwm_mb": mem.get("VmHWM", 0) / 1024 if mem.get("VmHWM") else None,
        "missing": not res,
    }


def read_round(d):
    r = {"round": os.path.basename(d).split("-")[-1], "anomalies": [],
         "quiet": load_json(os.path.join(d, "quiet.json"), {}) or {}}
    try:
        r["order"] = open(os.path.join(d, "order")).read().split()
    except OSError:
        r["order"] = list(SERVERS)
    try:
        r["loadavg"] = open(os.path.join(d, "loadavg")).read().split()[:3]
    except OSError:
        r["loadavg"] = []
    for s in SERVERS:
        r[s] = read_side(d, s)
        if r[s]["missing"]:
            r["anomalies"].append("{}: no result (wrk failed)".format(LABEL[s]))
        if r[s]["non_2xx"]:
            r["anomalies"].append("{}: non-2xx {}; first: {}".format(
                LABEL[s], r[s]["statuses"], " | ".join(
                    "`{}`".format(x.replace("`", "'")) for x in r[s]["samples"][:2])))
        if r[s]["socket"]:
            r["anomalies"].append("{}: wrk socket errors".format(LABEL[s]))
    a, n = r["admit"]["rate"], r["node"]["rate"]
    r["ratio"] = a / n if a and n else None
    return r


def cmd_round(d):
    r = read_round(d)
    print("compare round {}: admit-oauth {}/s, oidc-provider {}/s, ratio {}".format(
        r["round"], fmt(r["admit"]["rate"], "{:.0f}"), fmt(r["node"]["rate"], "{:.0f}"),
        fmt(r["ratio"], "{:.2f}")))


def claims_of(path):
    """The header and claim names of the access token in a token response (evidence
    that both servers issued the same kind of token)."""
    body = load_json(path, {}) or {}
    token = body.get("access_token", "")
    parts = token.split(".")
    if len(parts) != 3:
        return None, None
    def part(p):
        return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    try:
        return part(parts[0]), part(parts[1])
    except ValueError:
        return None, None


def cmd_section(d, out, opts):
    machine = load_json(os.path.join(d, "machine.json"), {}) or {}
    started = open(os.path.join(d, "started")).read().strip()
    try:
        finished = open(os.path.join(d, "finished")).read().strip()
    except OSError:
        finished = "?"
    def text(name):
        try:
            return open(os.path.join(d, name)).read().strip()
        except OSError:
            return "?"
    rounds = [read_round(os.path.join(d, n)) for n in sorted(os.listdir(d), key=lambda n: (len(n), n))
              if n.startswith("round-") and os.path.isdir(os.path.join(d, n))]
    if not rounds:
        sys.exit("summarise_compare: no rounds in " + d)
    med = {"ratio": median(r["ratio"] for r in rounds)}
    for s in SERVERS:
        for k in ("rate", "p50", "p99", "server_cores", "us_per_req", "hwm_mb"):
            med[s + "_" + k] = median(r[s][k] for r in rounds)

    lines = []
    add = lines.append
    add_run_header(add, "Side by side: `admit-oauth` and node `oidc-provider`, client_credentials",
                   started, finished, machine, opts.rounds,
                   "{}; Node.js {}, oidc-provider {}".format(
                       machine.get("wrk", "?"), text("node-version"), text("oidc-provider-version")))
    add("")
    add("### Goals (medians of the rounds)")
    add("")
    add("| goal | target | median | met |")
    add("| --- | --- | --- | --- |")
    ratio = med["ratio"]
    add("| admit-oauth ÷ oidc-provider, client_credentials grants/s at c={}, same run, alternating rounds | report | {} ({}/s beside {}/s) | {} |".format(
        opts.connections, fmt(ratio, "{:.2f}"), fmt(med["admit_rate"], "{:,.0f}"),
        fmt(med["node_rate"], "{:,.0f}"), "n/a" if ratio is None else "**reported**"))
    add("")
    add("Medians: admit-oauth p50 {} / p99 {}, {} µs of server CPU per grant, peak RSS {} MiB; "
        "oidc-provider p50 {} / p99 {}, {} µs of server CPU per grant (its {} worker processes), "
        "peak RSS {} MiB (the workers' VmHWM added up).".format(
            fmt_ms(med["admit_p50"]), fmt_ms(med["admit_p99"]), fmt(med["admit_us_per_req"], "{:.0f}"),
            fmt(med["admit_hwm_mb"]), fmt_ms(med["node_p50"]), fmt_ms(med["node_p99"]),
            fmt(med["node_us_per_req"], "{:.0f}"), opts.workers, fmt(med["node_hwm_mb"])))
    add("")
    add("### Rounds")
    add("")
    add("| round | first | admit-oauth grants/s | p50 | p99 | CPU (cores) | oidc-provider grants/s | p50 | p99 | CPU (cores) | ratio | load average before | other load (cores): admit / node |")
    add("| --: | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --- | --: |")
    for r in rounds:
        a, n = r["admit"], r["node"]
        add("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |".format(
            r["round"], LABEL.get(r["order"][0], "?"), fmt(a["rate"], "{:,.0f}"), fmt_ms(a["p50"]),
            fmt_ms(a["p99"]), fmt(a["server_cores"], "{:.2f}"), fmt(n["rate"], "{:,.0f}"),
            fmt_ms(n["p50"]), fmt_ms(n["p99"]), fmt(n["server_cores"], "{:.2f}"),
            fmt(r["ratio"], "{:.2f}"), " ".join(r["loadavg"]) or "?",
            fmt(a["foreign"], "{:.2f}"), fmt(n["foreign"], "{:.2f}")))
    add("| **median** | | **{}** | **{}** | **{}** | | **{}** | **{}** | **{}** | | **{}** | | |".format(
        fmt(med["admit_rate"], "{:,.0f}"), fmt_ms(med["admit_p50"]), fmt_ms(med["admit_p99"]),
        fmt(med["node_rate"], "{:,.0f}"), fmt_ms(med["node_p50"]), fmt_ms(med["node_p99"]),
        fmt(ratio, "{:.2f}")))
    add("")
    notes = ["round {}: answered 2xx: admit-oauth {}, oidc-provider {}{}".format(
        r["round"], r["admit"]["ok"], r["node"]["ok"], busy_note(r["quiet"])) for r in rounds]
    add("Per round: " + "; ".join(notes) + ".")
    anomalies = ["round {}: {}".format(r["round"], a) for r in rounds for a in r["anomalies"]]
    add_anomalies(add, anomalies)
    add("")
    ah, ac = claims_of(os.path.join(d, "admit-token.json"))
    nh, nc = claims_of(os.path.join(d, "node-token.json"))
    def describe(h, c):
        if not h:
            return "no token (see the run's files)"
        return "header `{}`, claims {}".format(
            json.dumps({k: h[k] for k in ("alg", "typ") if k in h}),
            ", ".join("`{}`".format(k) for k in sorted(c)))
    add("### What is measured, and how")
    add("")
    add("Both servers run on this machine for the whole benchmark, each idle while the other is "
        "loaded. `admit-oauth` is the release build on the production topology (PostgreSQL, Redis; "
        "set up as in the oauth section: `admit migrate`, a partner, one confidential client). "
        "node `oidc-provider` is the version `tests/oidc/package-lock.json` pins (panva's "
        "OpenID-certified provider), run by `tests/oidc/bench-provider.js` with the "
        "client_credentials grant enabled, one confidential client (`client_secret_basic`), and "
        "resource indicators set so that it issues ES256-signed JWT access tokens, as admit-oauth "
        "does; Node.js runs JavaScript on one core per process, so it runs {w} worker processes "
        "(node's cluster module, one port, one signing key) to use the machine's {w} cores. Its "
        "adapter is the in-memory one (client_credentials JWTs are not stored either way).".format(
            w=opts.workers))
    add("")
    add("Before the rounds, 3 s of the same load on each server, not measured (node's JIT "
        "compiles the hot paths; both servers fill their caches).")
    add("")
    add("Each round: `wrk -t{t} -c{c} -d{s}s --timeout 10s -s scripts/bench.d/oauth.lua` "
        "against one server, then the same against the other; odd rounds start with admit-oauth, "
        "even rounds with oidc-provider, so a drift of the machine's speed during a round does not "
        "always favour the same one. Every request is `POST` (admit-oauth `/oauth/token`, "
        "oidc-provider `/token`) with `Authorization: Basic …` and the body "
        "`grant_type=client_credentials&scope=accounts:create`. Rates count 2xx answers ÷ wrk's "
        "duration; ratio = admit-oauth's rate ÷ oidc-provider's in the same round; the median is "
        "over the rounds' ratios. Server CPU is read from `/proc` (for oidc-provider, the primary "
        "and its workers); *other load* = all busy CPU − the server's and wrk's, per second.".format(
            t=opts.wrk_threads, c=opts.connections, s=opts.seconds))
    add("")
    add("The tokens of the run, decoded: admit-oauth {}; oidc-provider {}.".format(
        describe(ah, ac), describe(nh, nc)))
    add("")
    add("Reproduce: `BENCH_ROUNDS=3 scripts/bench compare` (needs PostgreSQL at `BENCH_PG_URL`, Redis "
        "at `BENCH_REDIS_URL`, `psql`, wrk, Node.js 20 or later; runs `npm ci` in tests/oidc when "
        "oidc-provider is not installed there).")
    write_section(out, "compare", lines, "### Rounds")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("round")
    pr.add_argument("dir")
    ps = sub.add_parser("section")
    ps.add_argument("dir")
    ps.add_argument("out")
    ps.add_argument("--rounds", type=int, required=True)
    ps.add_argument("--seconds", type=int, required=True)
    ps.add_argument("--connections", type=int, required=True)
    ps.add_argument("--wrk-threads", type=int, required=True)
    ps.add_argument("--workers", type=int, required=True)
    a = p.parse_args()
    if a.cmd == "round":
        cmd_round(a.dir)
    else:
        cmd_section(a.dir, a.out, a)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Summarises `scripts/bench oauth` (standard library only).

    summarise_oauth.py round DIR                 one line about one round, for the console
    summarise_oauth.py section DIR OUT [options] writes the oauth section of OUT (markdown)
"""

import argparse
import os
import sys

from summarise import add_anomalies, add_run_header, busy_note, write_section, fmt, fmt_ms, load_json, median, server_log, sum_errors

GOAL_CC_PER_S = 10000  # client_credentials grants/s at c=16
GOAL_CC_P99_MS = 10.0
GOAL_INTROSPECT_PER_S = 12000  # introspections/s at c=16 (issue 13)
GOAL_REFRESH_PER_S = 4000  # refresh grants/s at c=16 on PostgreSQL (issue 13)
GOAL_RSS_MB = 50.0

PHASES = ("healthz", "cc", "introspect", "refresh")
LABEL = {"healthz": "`GET /healthz`", "cc": "client_credentials",
         "introspect": "introspection", "refresh": "refresh_token"}


def read_round(d):
    sign = load_json(os.path.join(d, "sign.json"), {}) or {}
    sign_cpu = load_json(os.path.join(d, "sign-cpu.json"), {}) or {}
    quiet = load_json(os.path.join(d, "quiet.json"), {}) or {}
    r = {"round": os.path.basename(d).split("-")[-1], "sign": sign.get("tokens_per_second"),
         "sign_foreign": sign_cpu.get("foreign_cores"), "quiet": quiet, "anomalies": []}
    try:
        r["loadavg"] = open(os.path.join(d, "loadavg")).read().split()[:3]
    except OSError:
        r["loadavg"] = []
    r["commits"] = None
    try:
        for line in open(os.path.join(d, "commit.txt")):
            if line.startswith("tps = "):
                r["commits"] = float(line.split()[2])
                break
    except (OSError, ValueError, IndexError):
        pass
    if r["commits"] is None:
        r["anomalies"].append("pgbench: no commit rate (see commit.txt)")
    hwm = 0
    for ph in PHASES:
        res = load_json(os.path.join(d, ph + ".json"), {}) or {}
        cpu = load_json(os.path.join(d, ph + "-cpu.json"), {}) or {}
        mem = load_json(os.path.join(d, "mem-%s.json" % ph), {}) or {}
        lat = res.get("latency_us", {})
        dur = (res.get("duration_us") or 0) / 1e6
        wall = cpu.get("wall_s")
        r[ph] = {
            "rate": res.get("ok_2xx", 0) / dur if dur else None,
            "ok": res.get("ok_2xx"),
            "non_2xx": res.get("non_2xx") or 0,
            "statuses": res.get("statuses", {}),
            "samples": res.get("non_2xx_samples", []),
            "socket": sum_errors(res.get("errors")) - (res.get("errors") or {}).get("status", 0),
            "queue_empty": res.get("queue_empty") or 0,
            "p50": lat.get("p50", 0) / 1000 if lat else None,
            "p99": lat.get("p99", 0) / 1000 if lat else None,
            "max": lat.get("max", 0) / 1000 if lat else None,
            "foreign": cpu.get("foreign_cores"),
            "server_cores": cpu["pids_cpu_s"] / wall if wall and "pids_cpu_s" in cpu else None,
            "wrk_cores": cpu["commands_cpu_s"] / wall if wall and "commands_cpu_s" in cpu else None,
            "server_us_per_req": (cpu["pids_cpu_s"] * 1e6 / res["ok_2xx"]
                                  if res.get("ok_2xx") and "pids_cpu_s" in cpu else None),
            "threads": cpu.get("pids_cpu_s_by_thread", {}),
            "rss_kib": mem.get("VmRSS"),
        }
        hwm = max(hwm, mem.get("VmHWM") or 0)
        if not res:
            r["anomalies"].append("{}: no result (a tool failed)".format(ph))
        if res.get("non_2xx"):
            r["anomalies"].append("{}: non-2xx {}; first: {}".format(
                ph, res.get("statuses"), " | ".join("`{}`".format(s.replace("`", "'"))
                                                   for s in res.get("non_2xx_samples", [])[:2])))
        if r[ph]["socket"]:
            r["anomalies"].append("{}: wrk socket errors {}".format(ph, res.get("errors")))
    start = load_json(os.path.join(d, "mem-start.json"), {}) or {}
    r["rss_start_mb"] = start.get("VmRSS", 0) / 1024 if start.get("VmRSS") else None
    r["hwm_mb"] = hwm / 1024 if hwm else None
    r["threads_count"] = (load_json(os.path.join(d, "mem-refresh.json"), {}) or {}).get("Threads")
    check = load_json(os.path.join(d, "introspect-check.json"), {}) or {}
    r["introspect_active"] = check.get("active")
    warn, error, samples = server_log(os.path.join(d, "oauth.log"))
    r["log"] = (warn, error, samples)
    if error or warn:
        r["anomalies"].append("admit-oauth log: {} WARN / {} ERROR: {}".format(
            warn, error, " | ".join("`{}`".format(s.replace("`", "'")) for s in samples[:2])))
    return r


def cmd_round(d):
    r = read_round(d)
    print("round {}: raw ES256 {} tokens/s; ".format(r["round"], fmt(r["sign"], "{:.0f}")) + "; ".join(
        "{} {}/s p50 {} p99 {} (other load {} cores)".format(
            ph, fmt(r[ph]["rate"], "{:.0f}"), fmt_ms(r[ph]["p50"]), fmt_ms(r[ph]["p99"]),
            fmt(r[ph]["foreign"], "{:.2f}")) for ph in PHASES)
        + "; admit-oauth peak RSS {} MB".format(fmt(r["hwm_mb"])))
    for a in r["anomalies"]:
        print("  anomaly: " + a)


def cmd_section(d, out, opts):
    machine = load_json(os.path.join(d, "machine.json"), {}) or {}
    started = open(os.path.join(d, "started")).read().strip()
    try:
        finished = open(os.path.join(d, "finished")).read().strip()
    except OSError:
        finished = "?"
    rounds = [read_round(os.path.join(d, n)) for n in sorted(os.listdir(d), key=lambda n: (len(n), n))
              if n.startswith("round-") and os.path.isdir(os.path.join(d, n))]
    if not rounds:
        sys.exit("summarise_oauth: no rounds in " + d)
    med = {"sign": median(r["sign"] for r in rounds), "hwm_mb": median(r["hwm_mb"] for r in rounds),
           "commits": median(r["commits"] for r in rounds),
           "max_hwm_mb": max((r["hwm_mb"] for r in rounds if r["hwm_mb"]), default=None)}
    for ph in PHASES:
        for k in ("rate", "p50", "p99", "server_cores", "wrk_cores", "server_us_per_req", "rss_kib"):
            med[ph + "_" + k] = median(r[ph][k] for r in rounds)
    for r in rounds:
        r["cc_vs_hz"] = (r["cc"]["rate"] / r["healthz"]["rate"]
                         if r["cc"]["rate"] and r["healthz"]["rate"] else None)
        r["cc_vs_sign"] = r["cc"]["rate"] / r["sign"] if r["cc"]["rate"] and r["sign"] else None
        r["intr_vs_hz"] = (r["introspect"]["rate"] / r["healthz"]["rate"]
                           if r["introspect"]["rate"] and r["healthz"]["rate"] else None)
        r["refr_vs_commits"] = (r["refresh"]["rate"] / r["commits"]
                                if r["refresh"]["rate"] and r["commits"] else None)
    med["cc_vs_hz"] = median(r["cc_vs_hz"] for r in rounds)
    med["intr_vs_hz"] = median(r["intr_vs_hz"] for r in rounds)
    med["refr_vs_commits"] = median(r["refr_vs_commits"] for r in rounds)
    med["cc_vs_sign"] = median(r["cc_vs_sign"] for r in rounds)

    def met(ok):
        return "n/a" if ok is None else ("**yes**" if ok else "**no**")

    lines = []
    add = lines.append
    add_run_header(add, "OAuth: token, refresh and introspection endpoints of `admit-oauth`",
                   started, finished, machine, opts.rounds, machine.get("wrk", "?"))
    add("")
    add("### Goals (medians of the rounds)")
    add("")
    add("| goal | target | median | met |")
    add("| --- | --- | --- | --- |")
    cc_rate, cc_p99, hwm = med["cc_rate"], med["cc_p99"], med["max_hwm_mb"]
    add("| client_credentials grants/s at c={} | ≥ {:,} | {} (limits beside it: bare `/healthz` {}/s, raw ES256 signing {}/s on {} threads) | {} |".format(
        opts.connections, GOAL_CC_PER_S, fmt(cc_rate, "{:.0f}"), fmt(med["healthz_rate"], "{:.0f}"),
        fmt(med["sign"], "{:.0f}"), machine.get("nproc", "?"),
        met(None if cc_rate is None else cc_rate >= GOAL_CC_PER_S)))
    ir, rr = med["introspect_rate"], med["refresh_rate"]
    add("| introspections/s at c={} (production topology) | ≥ {:,} | {} (limit beside it: bare `/healthz` {}/s) | {} |".format(
        opts.connections, GOAL_INTROSPECT_PER_S, fmt(ir, "{:.0f}"), fmt(med["healthz_rate"], "{:.0f}"),
        met(None if ir is None else ir >= GOAL_INTROSPECT_PER_S)))
    add("| refresh grants/s at c={} on PostgreSQL | ≥ {:,} | {} (limits beside it: PostgreSQL single-row commits {}/s from {} clients, raw ES256 signing {}/s) | {} |".format(
        opts.connections, GOAL_REFRESH_PER_S, fmt(rr, "{:.0f}"), fmt(med["commits"], "{:.0f}"),
        opts.connections, fmt(med["sign"], "{:.0f}"),
        met(None if rr is None else rr >= GOAL_REFRESH_PER_S)))
    add("| client_credentials p99 | < {:.0f} ms | {} | {} |".format(
        GOAL_CC_P99_MS, fmt_ms(cc_p99), met(None if cc_p99 is None else cc_p99 < GOAL_CC_P99_MS)))
    add("| admit-oauth peak RSS (VmHWM), highest of the rounds | < {:.0f} MB | {} MiB | {} |".format(
        GOAL_RSS_MB, fmt(hwm), met(None if hwm is None else hwm < GOAL_RSS_MB)))
    add("")
    add("Ratios (medians of each round's ratio): client_credentials ÷ bare `/healthz` = {}, "
        "client_credentials ÷ raw ES256 signing = {}, introspection ÷ bare `/healthz` = {}, "
        "refresh ÷ PostgreSQL single-row commits = {}. Server CPU per answered request (medians): "
        "{}.".format(fmt(med["cc_vs_hz"], "{:.2f}"), fmt(med["cc_vs_sign"], "{:.2f}"),
                     fmt(med["intr_vs_hz"], "{:.2f}"), fmt(med["refr_vs_commits"], "{:.2f}"), ", ".join(
            "{} {} µs".format(LABEL[ph], fmt(med[ph + "_server_us_per_req"], "{:.0f}")) for ph in PHASES)))
    add("")
    add("### Rounds")
    add("")
    add("| round | load average before | raw ES256 tokens/s | PostgreSQL commits/s | `/healthz`/s (p99) | client_credentials/s | cc p50 | cc p99 | introspections/s | intr. p50 | intr. p99 | refreshes/s | refr. p50 | refr. p99 | peak RSS | other load (cores): sign / healthz / cc / intr. / refr. |")
    add("| --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |")
    for r in rounds:
        add("| {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} MiB | {} |".format(
            r["round"], " ".join(r["loadavg"]) or "?", fmt(r["sign"], "{:.0f}"),
            fmt(r["commits"], "{:.0f}"), fmt(r["healthz"]["rate"], "{:.0f}"),
            fmt_ms(r["healthz"]["p99"]), fmt(r["cc"]["rate"], "{:.0f}"), fmt_ms(r["cc"]["p50"]),
            fmt_ms(r["cc"]["p99"]), fmt(r["introspect"]["rate"], "{:.0f}"),
            fmt_ms(r["introspect"]["p50"]), fmt_ms(r["introspect"]["p99"]),
            fmt(r["refresh"]["rate"], "{:.0f}"), fmt_ms(r["refresh"]["p50"]),
            fmt_ms(r["refresh"]["p99"]), fmt(r["hwm_mb"]),
            " / ".join([fmt(r["sign_foreign"], "{:.2f}")] + [fmt(r[ph]["foreign"], "{:.2f}") for ph in PHASES])))
    add("| **median** | | **{}** | **{}** | **{}** ({}) | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{} MiB** | |".format(
        fmt(med["sign"], "{:.0f}"), fmt(med["commits"], "{:.0f}"), fmt(med["healthz_rate"], "{:.0f}"),
        fmt_ms(med["healthz_p99"]), fmt(med["cc_rate"], "{:.0f}"), fmt_ms(med["cc_p50"]), fmt_ms(med["cc_p99"]),
        fmt(med["introspect_rate"], "{:.0f}"), fmt_ms(med["introspect_p50"]),
        fmt_ms(med["introspect_p99"]), fmt(med["refresh_rate"], "{:.0f}"),
        fmt_ms(med["refresh_p50"]), fmt_ms(med["refresh_p99"]), fmt(med["hwm_mb"])))
    add("")
    add("Per round:")
    add("")
    for r in rounds:
        add("- round {}: answered 2xx: {}; admit-oauth RSS at start {} MiB, after each phase {} MiB, "
            "{} threads; CPU of admit-oauth / wrk (cores): {}; admit-oauth CPU by thread in the "
            "client_credentials phase: {}; the run's access token still active after the load: {}{}".format(
                r["round"], ", ".join("{} {}".format(LABEL[ph], r[ph]["ok"]) for ph in PHASES),
                fmt(r["rss_start_mb"]), " / ".join(fmt((r[ph]["rss_kib"] or 0) / 1024) for ph in PHASES),
                r["threads_count"] or "?",
                ", ".join("{} {}/{}".format(ph, fmt(r[ph]["server_cores"], "{:.2f}"),
                                            fmt(r[ph]["wrk_cores"], "{:.2f}")) for ph in PHASES),
                ", ".join("`{}` {:.1f} s".format(k, v) for k, v in sorted(
                    r["cc"]["threads"].items(), key=lambda kv: -kv[1])[:5]) or "n/a",
                r["introspect_active"],
                busy_note(r["quiet"])))
    anomalies = ["round {}: {}".format(r["round"], a) for r in rounds for a in r["anomalies"]]
    add_anomalies(add, anomalies)
    add("")
    add("### What is measured, and how")
    add("")
    add("Once per run: a fresh PostgreSQL database (dropped at the end) and a unique Redis key "
        "prefix; `admit migrate`; `admit partner create` and one confidential client "
        "(`admit client create --grant client_credentials --grant refresh_token --grant "
        "authorization_code --scope accounts:create --scope profile`). Each round, on this "
        "machine alone:")
    add("")
    add("1. **Raw ES256 signing rate.** `admit bench-sign --threads {n} --seconds {s}`: access "
        "tokens with the header and claims the token endpoint signs (jsonwebtoken with aws-lc-rs, "
        "`EncodingKey` built once, a UUID `jti` each), on {n} threads, nothing else running: the "
        "ceiling of grants per second.".format(n=machine.get("nproc", "nproc"), s=opts.sign_seconds))
    add("   Then **PostgreSQL's commit rate**: `pgbench -n -c {c} -j {n} -T {s} -f "
        "scripts/bench.d/commit.sql`, one single-row `INSERT` per transaction (autocommit, rows the "
        "size of a refresh token's, a unique index) into a scratch table of the run's database: "
        "what this PostgreSQL durably commits per second right now, the ceiling of refresh grants "
        "(each must commit the spent token and its successor).".format(
            c=opts.connections, n=machine.get("nproc", "nproc"), s=opts.sign_seconds))
    add("2. **Fresh servers.** `admit-account` and `admit-oauth` (release builds, the production "
        "topology: PostgreSQL, Redis) on free 127.0.0.1 ports. `scripts/bench.d/oauth_tokens.py` "
        "signs a user up, signs in on the login page (CSRF field and cookie), consents once, and "
        "redeems {c} authorization codes for {c} refresh tokens; one client_credentials access "
        "token is fetched for introspection.".format(c=opts.chains))
    add("3. **Four phases of {s} s each, one after the other**, each `wrk -t{t} -c{c} --timeout 10s "
        "-s scripts/bench.d/oauth.lua` (closed loop: {c} requests always in flight); client "
        "authentication is HTTP Basic:".format(s=opts.seconds, t=opts.wrk_threads, c=opts.connections))
    add("   - `GET /healthz`: the bare HTTP rate of the same server (middleware, routing, no "
        "handler work): the ceiling of any endpoint here.")
    add("   - `POST /oauth/token` `grant_type=client_credentials`: client lookup, secret check "
        "(SHA-256, constant-time compare), one ES256 signature, JSON with `Cache-Control: no-store`.")
    add("   - `POST /oauth/introspect` `token=…` (the client_credentials token): client "
        "authentication, the token's verified claims (remembered for a token seen before, its "
        "expiry and key checked on every request), and the revocation check against the "
        "replica's in-memory view of `revocation_log` while its lease holds (else in "
        "PostgreSQL): revocations reach every replica through a Redis poke and a catch-up from "
        "the database's log, and the revoking request answers once every live replica has "
        "applied it or lost its lease (`admit_runtime::revocations`).")
    add("   - `POST /oauth/token` `grant_type=refresh_token`: refresh tokens rotate and are single "
        "use, so each wrk thread keeps a queue of them, sends each exactly once, and queues the "
        "`refresh_token` of every answer ({c} chains in all). On PostgreSQL the refreshes that "
        "arrive while a commit runs are written together (`admit_oauth::rotate`, four lanes): "
        "one call of the database function `rotate_refresh` per group, which for each refresh "
        "spends the old token if unspent, this client's and its grant live, and stores the next "
        "one, then one commit for the group; plus one signature each. A refresh the group did "
        "not win falls back to the transaction that tells a replay (the grant revoked) from an "
        "invalid token. Every round adds about 40,000 spent tokens to the same tables, and this "
        "PostgreSQL runs with autovacuum off, so a later round can be a little slower.".format(
            c=opts.chains))
    add("4. After each phase, `VmRSS` and `VmHWM` of admit-oauth from `/proc/PID/status`; peak RSS "
        "is `VmHWM` after the last phase (the highest resident size of the process's life). "
        "Then both servers are stopped (SIGTERM).")
    add("")
    add("Rates count 2xx answers only (÷ wrk's measured duration); p50/p99 are wrk's latencies "
        "of all answered requests. wrk runs on the same 2 cores and takes a share of them (the "
        "per-round notes give its CPU). Only figures of the same round are compared: this "
        "machine's speed drifts up to 1.6× from minute to minute. *Other load* = all busy CPU "
        "time − the CPU time of admit-oauth and wrk (or of bench-sign), per second of the phase; "
        "well above 0 means the round was shared with other work. In the introspection and "
        "refresh phases PostgreSQL's backends do part of the requests' work, and their CPU is "
        "counted there as other load too (the other load of the `/healthz` and "
        "client_credentials phases, which do not touch the database, shows how busy the "
        "machine was otherwise).")
    add("")
    add("Reproduce: `BENCH_ROUNDS={} scripts/bench oauth` (needs PostgreSQL at "
        "`BENCH_PG_URL`, Redis at `BENCH_REDIS_URL`, `psql`, `redis-cli`, wrk; see the script's "
        "header).".format(opts.rounds))
    write_section(out, "oauth", lines, "Per round:")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("round")
    pr.add_argument("dir")
    ps = sub.add_parser("section")
    ps.add_argument("dir")
    ps.add_argument("out")
    ps.add_argument("--rounds", type=int, default=3)
    ps.add_argument("--seconds", type=int, default=10)
    ps.add_argument("--sign-seconds", type=int, default=5)
    ps.add_argument("--connections", type=int, default=16)
    ps.add_argument("--wrk-threads", type=int, default=2)
    ps.add_argument("--chains", type=int, default=64)
    a = p.parse_args()
    if a.cmd == "round":
        cmd_round(a.dir)
    else:
        cmd_section(a.dir, a.out, a)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Summarises the raw results of `scripts/bench` (standard library only).

    summarise.py round DIR                 one line about one round, for the console
    summarise.py signup DIR OUT [options]  writes the signup section of OUT (markdown)

A section lives between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`;
writing it replaces that section only, or appends it when OUT has none yet.
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile

GOAL_RATIO = 0.90  # sign-ups/s >= 90 % of the raw Argon2id rate
GOAL_HEALTHZ_P99_MS = 5.0  # /healthz p99 < 5 ms while sign-ups saturate the pool

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LEVEL = re.compile(r"\b(WARN|ERROR)\b")

FILE_HEADER = """# Benchmarks

Written by `scripts/bench` (`scripts/bench NAME` runs one benchmark; no argument runs
them all). Each benchmark rewrites only its own section, between its
`<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` markers; text outside the
sections is kept. The machine is noisy, so every figure is compared with the raw rate
measured in the same round, and medians of several rounds are reported.
"""


def load_json(path, default=None):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else default
    except (OSError, ValueError):
        return default


def server_log(path):
    """WARN/ERROR lines of the server's output: (warn, error, first samples)."""
    warn = error = 0
    samples = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = ANSI.sub("", line).rstrip()
                m = LEVEL.search(line[:80])
                if not m:
                    continue
                if m.group(1) == "WARN":
                    warn += 1
                else:
                    error += 1
                if len(samples) < 3:
                    samples.append(line[:300])
    except OSError:
        pass
    return warn, error, samples


def server_metrics(path):
    """From the server's /metrics after the load: its own view of /healthz."""
    buckets, count, total = {}, None, None
    try:
        with open(path) as f:
            for line in f:
                if 'route="/healthz"' not in line or line.startswith("#"):
                    continue
                name, _, value = line.rpartition(" ")
                if name.startswith("http_request_duration_seconds_bucket"):
                    m = re.search(r'le="([^"]+)"', name)
                    if m:
                        buckets[m.group(1)] = float(value)
                elif name.startswith("http_request_duration_seconds_count"):
                    count = float(value)
                elif name.startswith("http_request_duration_seconds_sum"):
                    total = float(value)
    except OSError:
        return {}
    if not count:
        return {}
    return {"count": int(count), "mean_ms": total / count * 1000 if total is not None else None,
            "over_1ms": int(count - buckets.get("0.001", count)),
            "over_5ms": int(count - buckets.get("0.005", count))}


def mail_progress(path):
    """From the server's /metrics right after the load: (accounts created, welcome
    emails sent). The mail of a sign-up is sent in the background; this shows it kept
    up with the load rather than being left for after it."""
    created = sent = None
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.rstrip().rpartition(" ")
                if name == "accounts_created_total":
                    created = int(float(value))
                elif name == 'mailer_deliveries_total{outcome="sent"}':
                    sent = int(float(value))
    except (OSError, ValueError):
        pass
    return created, sent


def pool_stat(load_cpu, post, key, scale):
    """A figure of the server's hash-pool threads (argon2-N), per sign-up."""
    threads = {k: v for k, v in (load_cpu.get("pids_threads") or {}).items()
               if k.startswith("argon2")}
    if not threads or not post.get("ok_2xx"):
        return None
    return sum(v.get(key, 0) for v in threads.values()) * scale / post["ok_2xx"]


def read_round(d):
    """The figures of one round directory."""
    hash_ = load_json(os.path.join(d, "hash.json"), {}) or {}
    post = load_json(os.path.join(d, "post.json"), {}) or {}
    hz = load_json(os.path.join(d, "healthz.json"), {}) or {}
    db = load_json(os.path.join(d, "db.json"), {}) or {}
    hash_cpu = load_json(os.path.join(d, "hash-cpu.json"), {}) or {}
    load_cpu = load_json(os.path.join(d, "load-cpu.json"), {}) or {}
    quiet = load_json(os.path.join(d, "quiet.json"), {}) or {}
    metrics = server_metrics(os.path.join(d, "metrics.txt"))
    created, mail_sent = mail_progress(os.path.join(d, "metrics.txt"))
    warn, error, log_samples = server_log(os.path.join(d, "server.log"))
    raw = hash_.get("hashes_per_second")
    duration = (post.get("duration_us") or 0) / 1e6
    signups = post.get("ok_2xx", 0) / duration if duration else None
    ratio = signups / raw if signups is not None and raw else None
    pl = post.get("latency_us", {})
    hl = hz.get("latency_us", {})
    ms = lambda v: v / 1000.0 if v is not None else None  # noqa: E731
    return {
        "round": os.path.basename(d).split("-")[-1],
        "raw": raw,
        "hashes": hash_.get("hashes"),
        "hash_threads": hash_.get("threads"),
        "signups": signups,
        "ok_2xx": post.get("ok_2xx"),
        "non_2xx": post.get("non_2xx"),
        "statuses": post.get("statuses", {}),
        "non_2xx_samples": post.get("non_2xx_samples", []),
        "post_errors": post.get("errors", {}),
        "post_requests": post.get("requests"),
        "ratio": ratio,
        "post_p50": ms(pl.get("p50")),
        "post_p99": ms(pl.get("p99")),
        "post_max": ms(pl.get("max")),
        "hz_p50": ms(hl.get("p50")),
        "hz_p99": ms(hl.get("p99")),
        "hz_p999": ms(hl.get("p999")),
        "hz_max": ms(hl.get("max")),
        "hz_requests": hz.get("requests"),
        "hz_non_2xx": hz.get("non_2xx"),
        "hz_errors": hz.get("errors", {}),
        "db": db,
        "created": created,
        "mail_sent": mail_sent,
        "hash_foreign": hash_cpu.get("foreign_cores"),
        "load_foreign": load_cpu.get("foreign_cores"),
        "server_cores": (load_cpu["pids_cpu_s"] / load_cpu["wall_s"]
                         if load_cpu.get("wall_s") and "pids_cpu_s" in load_cpu else None),
        "wrk_cores": (load_cpu["commands_cpu_s"] / load_cpu["wall_s"]
                      if load_cpu.get("wall_s") and "commands_cpu_s" in load_cpu else None),
        "steal": (hash_cpu.get("steal_cpu_s") or 0) + (load_cpu.get("steal_cpu_s") or 0),
        "quiet": quiet,
        "metrics": metrics,
        # CPU milliseconds per Argon2id hash (bench-hash) and per sign-up (the server).
        "ms_per_hash": (hash_cpu["commands_cpu_s"] * 1000 / hash_["hashes"]
                        if hash_.get("hashes") and "commands_cpu_s" in hash_cpu else None),
        "ms_per_signup": (load_cpu["pids_cpu_s"] * 1000 / post["ok_2xx"]
                          if post.get("ok_2xx") and "pids_cpu_s" in load_cpu else None),
        # The hash pool's threads (named argon2-N by the server) alone.
        "pool_ms_per_signup": (
            sum(v for k, v in load_cpu["pids_cpu_s_by_thread"].items() if k.startswith("argon2"))
            * 1000 / post["ok_2xx"]
            if post.get("ok_2xx") and any(k.startswith("argon2")
                                           for k in load_cpu.get("pids_cpu_s_by_thread", {}))
            else None),
        "server_threads": load_cpu.get("pids_cpu_s_by_thread", {}),
        # Kernel time and minor page faults per hash: bench-hash, and the server's pool.
        "hash_sys_ms": (hash_cpu["commands_sys_s"] * 1000 / hash_["hashes"]
                        if hash_.get("hashes") and "commands_sys_s" in hash_cpu else None),
        "hash_minflt": (hash_cpu["commands_minflt"] / hash_["hashes"]
                        if hash_.get("hashes") and "commands_minflt" in hash_cpu else None),
        "pool_sys_ms": pool_stat(load_cpu, post, "sys_s", 1000),
        "pool_minflt": pool_stat(load_cpu, post, "minflt", 1),
        "log_warn": warn,
        "log_error": error,
        "log_samples": log_samples,
        "complete": bool(hash_ and post and hz),
    }


def fmt(v, spec="{:.1f}"):
    return "n/a" if v is None else spec.format(v)


def fmt_ms(v):
    if v is None:
        return "n/a"
    if v >= 1000:
        return "{:.2f} s".format(v / 1000)
    if v >= 100:
        return "{:.0f} ms".format(v)
    if v >= 10:
        return "{:.1f} ms".format(v)
    return "{:.2f} ms".format(v)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def sum_errors(e):
    return sum(v for v in (e or {}).values() if isinstance(v, (int, float)))


def add_run_header(add, title, started, finished, machine, rounds, tools):
    """A section's title, when and where it ran; `tools`: what ran beside the server."""
    add("## " + title)
    add("")
    add("Last run: {} to {} (UTC), commit `{}`, `BENCH_ROUNDS={}`.".format(
        started, finished, machine.get("commit", "?"), rounds))
    add("")
    add("Machine: {} cores (`nproc`), CPU `{}`, {} GiB RAM, Linux {}; {}; {}; "
        "load average before the run {}.".format(
            machine.get("nproc", "?"), machine.get("cpu", "?"), machine.get("mem_gib", "?"),
            machine.get("kernel", "?"), machine.get("rustc", "?"), tools,
            " ".join(machine.get("loadavg", [])) or "?"))


def write_section(out, name, lines, summary_end):
    """Writes the section into `out` and prints its goals up to `summary_end`."""
    replace_section(out, name, "\n".join(lines))
    print("\n".join(lines[lines.index("### Goals (medians of the rounds)"):lines.index(summary_end)]))


def busy_note(quiet):
    """A round's note when the machine was not quiet before it (empty when it was)."""
    if quiet.get("quiet", True):
        return ""
    return "; the machine was still busy ({} cores) after waiting {} s before the round".format(
        quiet.get("busy_cores"), quiet.get("waited_s"))


def add_anomalies(add, anomalies):
    """The list of anomalies under its heading, if there is any."""
    if anomalies:
        add("")
        add("Anomalies:")
        add("")
        for a in anomalies:
            add("- " + a)


def cmd_round(d):
    r = read_round(d)
    print(
        "round {}: raw {} hashes/s, sign-ups {}/s (ratio {}), POST p50 {} p99 {}, "
        "healthz p50 {} p99 {} max {}; non-2xx {} {}, socket errors {}, "
        "server log {} WARN / {} ERROR, db {}; other processes took {} cores during "
        "bench-hash and {} during the load (server {} cores, wrk {} cores)".format(
            r["round"], fmt(r["raw"]), fmt(r["signups"]), fmt(r["ratio"], "{:.3f}"),
            fmt_ms(r["post_p50"]), fmt_ms(r["post_p99"]), fmt_ms(r["hz_p50"]),
            fmt_ms(r["hz_p99"]), fmt_ms(r["hz_max"]), r["non_2xx"], r["statuses"] or "",
            sum_errors(r["post_errors"]) - (r["post_errors"] or {}).get("status", 0),
            r["log_warn"], r["log_error"], r["db"], fmt(r["hash_foreign"], "{:.2f}"),
            fmt(r["load_foreign"], "{:.2f}"), fmt(r["server_cores"], "{:.2f}"),
            fmt(r["wrk_cores"], "{:.2f}"),
        )
    )


def replace_section(path, name, body):
    start = "<!-- bench:{}:start -->".format(name)
    end = "<!-- bench:{}:end -->".format(name)
    block = "{}\n{}\n{}\n".format(start, body.strip("\n"), end)
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = FILE_HEADER
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        j += len(end)
        if text[j:j + 1] == "\n":
            j += 1
        text = text[:i] + block + text[j:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".bench-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def cmd_signup(d, out, opts):
    machine = load_json(os.path.join(d, "machine.json"), {}) or {}
    started = open(os.path.join(d, "started")).read().strip()
    try:
        finished = open(os.path.join(d, "finished")).read().strip()
    except OSError:
        finished = "?"
    rounds = []
    for name in sorted(os.listdir(d), key=lambda n: (len(n), n)):
        if name.startswith("round-") and os.path.isdir(os.path.join(d, name)):
            rounds.append(read_round(os.path.join(d, name)))
    if not rounds:
        sys.exit("summarise: no rounds in " + d)

    keys = ["raw", "signups", "ratio", "post_p50", "post_p99", "hz_p50", "hz_p99",
            "ms_per_hash", "ms_per_signup", "pool_ms_per_signup", "server_cores",
            "hash_sys_ms", "hash_minflt", "pool_sys_ms", "pool_minflt"]
    med = {k: median(r[k] for r in rounds) for k in keys}

    lines = []
    add = lines.append
    add_run_header(add, "Sign-up: `POST /account` while `/healthz` is probed", started, finished,
                   machine, opts.rounds, machine.get("wrk", "wrk"))
    add("")
    add("### Goals (medians of the rounds)")
    add("")
    add("| goal | target | median | met |")
    add("| --- | --- | --- | --- |")
    ratio_ok = med["ratio"] is not None and med["ratio"] >= GOAL_RATIO
    hz_ok = med["hz_p99"] is not None and med["hz_p99"] < GOAL_HEALTHZ_P99_MS
    add("| sign-ups/s ÷ raw Argon2id hashes/s | ≥ {:.2f} | {} ({} sign-ups/s vs {} hashes/s) | {} |".format(
        GOAL_RATIO, fmt(med["ratio"], "{:.3f}"), fmt(med["signups"]), fmt(med["raw"]),
        "**yes**" if ratio_ok else "**no**"))
    add("| `/healthz` p99 while sign-ups saturate the hash pool | < {:.0f} ms | {} | {} |".format(
        GOAL_HEALTHZ_P99_MS, fmt_ms(med["hz_p99"]), "**yes**" if hz_ok else "**no**"))
    add("")
    if med["ms_per_hash"] and med["ms_per_signup"]:
        pool = med["pool_ms_per_signup"]
        add("Where the CPU goes (medians): bench-hash spends {:.1f} ms of CPU per Argon2id hash. "
            "The server used {} of the {} cores during the load and spent {:.1f} ms of CPU per "
            "sign-up{}.".format(
                med["ms_per_hash"], fmt(med["server_cores"], "{:.2f}"), machine.get("nproc", "?"),
                med["ms_per_signup"],
                "" if pool is None else
                ": {:.1f} ms on its hash pool's threads (`argon2-N`), {:.1f} ms ({:.0f} %) on "
                "everything else (HTTP workers, JSON, the SQLite writes, the outbox and the "
                "mailer's welcome message, logging)".format(
                    pool, med["ms_per_signup"] - pool,
                    (med["ms_per_signup"] - pool) / med["ms_per_signup"] * 100)))
        add("")
        if None not in (med["hash_sys_ms"], med["hash_minflt"], med["pool_sys_ms"], med["pool_minflt"]):
            add("Kernel time and minor page faults per Argon2id hash (medians): bench-hash "
                "{:.2f} ms and {:.0f} faults per hash; the server's hash pool {:.2f} ms and {:.0f} "
                "faults per sign-up ({:.1f}× the faults){}.".format(
                    med["hash_sys_ms"], med["hash_minflt"], med["pool_sys_ms"], med["pool_minflt"],
                    med["pool_minflt"] / max(med["hash_minflt"], 1),
                    ": inside the server, much of Argon2id's 19 MiB of working memory is handed "
                    "back to the kernel and faulted in again on each hash, which bench-hash avoids"
                    if med["pool_minflt"] > 2 * max(med["hash_minflt"], 1) else ""))
            add("")
    add("### Rounds")
    add("")
    add("| round | raw hashes/s | sign-ups/s | ratio | POST p50 | POST p99 | healthz p50 | healthz p99 | healthz max | non-2xx | socket errors | other load (cores): hash / sign-up phase |")
    add("| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |")
    for r in rounds:
        socket_errors = sum_errors(r["post_errors"]) - (r["post_errors"] or {}).get("status", 0)
        socket_errors += sum_errors(r["hz_errors"]) - (r["hz_errors"] or {}).get("status", 0)
        add("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |".format(
            r["round"], fmt(r["raw"]), fmt(r["signups"]), fmt(r["ratio"], "{:.3f}"),
            fmt_ms(r["post_p50"]), fmt_ms(r["post_p99"]), fmt_ms(r["hz_p50"]),
            fmt_ms(r["hz_p99"]), fmt_ms(r["hz_max"]),
            (r["non_2xx"] or 0) + (r["hz_non_2xx"] or 0), socket_errors,
            fmt(r["hash_foreign"], "{:.2f}"), fmt(r["load_foreign"], "{:.2f}")))
    add("| **median** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | | | | |".format(
        fmt(med["raw"]), fmt(med["signups"]), fmt(med["ratio"], "{:.3f}"),
        fmt_ms(med["post_p50"]), fmt_ms(med["post_p99"]), fmt_ms(med["hz_p50"]),
        fmt_ms(med["hz_p99"])))
    add("")
    add("Per round:")
    add("")
    add("\n".join("- " + x for x in (
        "round {}: {} sign-ups (201) in {} POSTs answered, {} accounts in the database "
        "after the server stopped, {} `/healthz` probes, server log {} WARN / {} ERROR; "
        "CPU during the sign-up phase: server {} cores, wrk {} cores; the server's own "
        "/metrics: {}; welcome emails sent by the end of the load: {}; server CPU by thread: {}{}".format(
            r["round"], r["ok_2xx"], r["post_requests"], r["db"].get("accounts", "?"),
            r["hz_requests"], r["log_warn"], r["log_error"], fmt(r["server_cores"], "{:.2f}"),
            fmt(r["wrk_cores"], "{:.2f}"),
            ("mean /healthz handling {:.3f} ms, {} of {} over 1 ms, {} over 5 ms".format(
                r["metrics"]["mean_ms"], r["metrics"]["over_1ms"], r["metrics"]["count"],
                r["metrics"]["over_5ms"]) if r["metrics"].get("mean_ms") is not None else "n/a"),
            ("{} for {} accounts created".format(r["mail_sent"] or 0, r["created"])
             if r["created"] is not None else "n/a"),
            ", ".join("`{}` {:.1f} s".format(k, v) for k, v in sorted(
                r["server_threads"].items(), key=lambda kv: -kv[1])[:6]) or "n/a",
            busy_note(r["quiet"]))
        for r in rounds)))
    anomalies = []
    for r in rounds:
        if r["non_2xx"]:
            anomalies.append("round {}: non-2xx answers to POST /account {}; first: {}".format(
                r["round"], r["statuses"], " | ".join("`{}`".format(s.replace("`", "'"))
                                                       for s in r["non_2xx_samples"][:2])))
        if r["hz_non_2xx"]:
            anomalies.append("round {}: {} non-2xx answers to /healthz".format(r["round"], r["hz_non_2xx"]))
        for what, errs in (("POST /account", r["post_errors"]), ("/healthz", r["hz_errors"])):
            bad = {k: v for k, v in (errs or {}).items() if v and k != "status"}
            if bad:
                anomalies.append("round {}: wrk socket errors on {}: {}".format(r["round"], what, bad))
        if r["log_samples"] and (r["log_warn"] or r["log_error"]):
            anomalies.append("round {}: server log: {}".format(r["round"], " | ".join(
                "`{}`".format(s.replace("`", "'")) for s in r["log_samples"][:2])))
        if not r["complete"]:
            anomalies.append("round {}: incomplete results (a tool failed)".format(r["round"]))
    add_anomalies(add, anomalies)
    add("")
    add("### What is measured, and how")
    add("")
    add("Each round, on this machine alone:")
    add("")
    add("1. **Raw Argon2id rate.** `admit bench-hash --threads {n} --seconds {h}`: Argon2id "
        "(m=19456 KiB, t=2, p=1, the server's parameters) on {n} threads, nothing else running. "
        "This is the ceiling of sign-ups per second.".format(n=machine.get("nproc", "nproc"), h=opts.hash_seconds))
    add("2. **Sign-ups under load.** A fresh `admit serve` (embedded: all services in one process, "
        "SQLite in a fresh temporary data directory, release build) on a free 127.0.0.1 port; once "
        "`/readyz` answers, two wrk runs go at the same time for {s} s:".format(s=opts.seconds))
    add("   - `wrk -t{t} -c{c} -d{s}s --timeout 10s -s scripts/bench.d/signup.lua .../account`: "
        "`POST /account` with `{{\"contacts\":[[\"EMAIL\",…,true]],\"password\":\"doctest1\",\"username\":…}}`, "
        "every email and username unique (round, wrk thread id, per-thread counter). Only 2xx "
        "answers count as sign-ups; the script's `response` hook counts the others by status. "
        "Sign-ups/s = 2xx answers ÷ wrk's measured duration. POST p50/p99 are wrk's latencies of "
        "all answered POSTs (closed loop: {c} requests always in flight, so they are mostly time "
        "queued for the hash pool).".format(t=opts.wrk_threads, c=opts.connections, s=opts.seconds))
    if opts.pace_ms > 0:
        add("   - `wrk -t1 -c1 --latency -s scripts/bench.d/healthz.lua .../healthz`: one connection, "
            "one `GET /healthz` every {p} ms (wrk's `delay` hook; the pause is not counted in the "
            "latency). The probe is paced rather than run flat out because, on {n} cores, a "
            "closed-loop probe would itself take CPU from the hash pool and lower the sign-up "
            "rate being measured (`BENCH_HEALTHZ_PACE_MS=0` runs it flat out). wrk's latency "
            "includes the time for wrk and the server's worker to be scheduled on cores the hash "
            "pool keeps busy; the server's own /metrics (in the notes above) show the time spent "
            "handling the request.".format(p=opts.pace_ms, n=machine.get("nproc", "these")))
    else:
        add("   - `wrk -t1 -c1 --latency -s scripts/bench.d/healthz.lua .../healthz`: one connection, "
            "`GET /healthz` flat out (`BENCH_HEALTHZ_PACE_MS=0`): the probe itself takes CPU from "
            "the hash pool, so sign-ups/s is lower than with a paced probe.")
    add("3. The server is stopped (SIGTERM), the accounts in its database counted as a cross-check, "
        "and its data directory deleted.")
    add("")
    add("Ratio = that round's sign-ups/s ÷ that round's raw hashes/s: the two are measured a few "
        "seconds apart because this machine's speed drifts (up to 1.6× from minute to minute), "
        "so only figures of the same round are compared. Medians are over the rounds. wrk also "
        "runs on this machine and takes a little CPU; the ratio includes that cost, and the cost "
        "of HTTP, JSON, SQLite writes and the outbox/mailer of every sign-up.")
    add("")
    add("Other load: before each round the script waits (at most `BENCH_QUIET_WAIT` s) until "
        "the machine is nearly idle, then accounts for CPU time during each phase from "
        "`/proc/stat`: *other load* = all busy CPU time − the CPU time of bench-hash, or of the "
        "server and both wrk runs, divided by the phase's duration. A round with other load "
        "well above 0 was shared with other work and its figures are less trustworthy.")
    add("")
    add("Reproduce: `BENCH_ROUNDS={} scripts/bench signup` (see the script's header for the other "
        "settings).".format(opts.rounds))
    # The console gets the goals and the table.
    write_section(out, "signup", lines, "### What is measured, and how")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("round")
    pr.add_argument("dir")
    ps = sub.add_parser("signup")
    ps.add_argument("dir")
    ps.add_argument("out")
    ps.add_argument("--rounds", type=int, default=3)
    ps.add_argument("--seconds", type=int, default=20)
    ps.add_argument("--hash-seconds", type=int, default=10)
    ps.add_argument("--connections", type=int, default=16)
    ps.add_argument("--wrk-threads", type=int, default=2)
    ps.add_argument("--pace-ms", type=int, default=10)
    a = p.parse_args()
    if a.cmd == "round":
        cmd_round(a.dir)
    else:
        cmd_signup(a.dir, a.out, a)


if __name__ == "__main__":
    main()

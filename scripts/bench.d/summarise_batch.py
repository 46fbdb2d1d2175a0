#!/usr/bin/env python3
"""Summarises `scripts/bench batch` (standard library only).

    summarise_batch.py round DIR                 one line about one round, for the console
    summarise_batch.py section DIR OUT [options] writes the batch section of OUT (markdown)
"""

import argparse
import os
import re
import sys

from summarise import add_anomalies, add_run_header, busy_note, write_section, fmt, fmt_ms, load_json, median, server_log

GOAL_USERS_PER_S = 5000  # users registered per second (accounts committed, emails queued)
GOAL_MAIL_SHARE = 0.5  # admit-mailer's rate into smtp-sink ÷ smtp-source's into the same sink
GOAL_MAILER_MIB = 50  # the mailer's peak resident size (VmHWM) under this load
GOAL_ACCOUNT_MIB = 50  # admit-account's peak resident size (VmHWM) under this load
GOAL_SHARE_C1 = 0.6  # users/s with one request in flight ÷ the bare insert rate (issue 13)
GOAL_USERS_PER_S_C2 = 15000  # users/s with two requests in flight (issue 13)


def fmt_n(v):
    return "n/a" if v is None else "{:,.0f}".format(v)


def fmt_s(v):
    return "n/a" if v is None else fmt_ms(v * 1000)


def concurrencies(d):
    out = []
    for n in os.listdir(d):
        m = re.match(r"register-c(\d+)\.json$", n)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def kv(d):
    return ", ".join("{} {}".format(k, v) for k, v in sorted((d or {}).items())) or "none"


def per(v, n, scale=1e6):
    return v * scale / n if v is not None and n else None


def read_register(d, c, users):
    reg = load_json(os.path.join(d, "register-c%d.json" % c), {}) or {}
    db = load_json(os.path.join(d, "db-registered-c%d.json" % c), {}) or {}
    cpu = reg.get("cpu_register") or {}
    relay = reg.get("relay") or {}
    wall = cpu.get("wall_s")
    created = (reg.get("counts") or {}).get("created")
    x = {
        "rate": reg.get("users_per_s"), "wall": reg.get("wall_s"), "p50": reg.get("p50_s"),
        "p99": reg.get("p99_s"), "max": reg.get("max_s"), "counts": reg.get("counts") or {},
        "statuses": reg.get("statuses") or {}, "errors": reg.get("errors") or [],
        "latencies": reg.get("latency_s") or [], "db": db,
        "on_stream": relay.get("published_at_last_response"),
        "relay_after": relay.get("done_s_after_last_response"),
        "relay_total": relay.get("done_s_after_first_request"),
        "published": relay.get("published"),
        "account_cores": per(cpu.get("account_cpu_s"), wall, 1),
        "pg_cores": per(cpu.get("postgres_cpu_s"), wall, 1),
        "busy_cores": per(cpu.get("busy_cpu_s"), wall, 1),
        "other_cores": cpu.get("other_cores"),
        "account_us": per(cpu.get("account_cpu_s"), created),
        "pg_us": per(cpu.get("postgres_cpu_s"), created),
        "threads": cpu.get("threads_cpu_s") or {},
        "body_mb": (reg.get("body_bytes") or 0) / 1e6,
        "account_mib": ((load_json(os.path.join(d, "account-mem-c%d.json" % c), {}) or {}).get("VmHWM") or 0) / 1024 or None,
        "anomalies": [],
    }
    if not reg:
        x["anomalies"].append("c={}: no result (the driver failed)".format(c))
    else:
        if created != users:
            x["anomalies"].append("c={}: {} created of {} ({})".format(c, created, users, x["counts"]))
        if set(x["statuses"]) != {"200"}:
            x["anomalies"].append("c={}: HTTP statuses {}".format(c, x["statuses"]))
        for e in x["errors"][:3]:
            x["anomalies"].append("c={}: {}".format(c, e))
        for t in ("accounts", "contacts", "memberships", "password_tokens", "outbox"):
            if db.get(t) != users:
                x["anomalies"].append("c={}: {} rows in {} (expected {})".format(c, db.get(t), t, users))
        if x["relay_after"] is None:
            x["anomalies"].append("c={}: the relay had published {} of {} when the wait ended".format(
                c, x["published"], users))
    warn, error, samples = server_log(os.path.join(d, "account-c%d.log" % c))
    if warn or error:
        x["anomalies"].append("c={}: admit-account log {} WARN / {} ERROR: {}".format(
            c, warn, error, " | ".join("`{}`".format(s.replace("`", "'")[:200]) for s in samples[:2])))
    return x


def read_round(d, users):
    r = {"round": os.path.basename(d).split("-")[-1], "anomalies": [],
         "quiet": load_json(os.path.join(d, "quiet.json"), {}) or {}}
    r["cs"] = concurrencies(d)
    r["reg"] = {c: read_register(d, c, users) for c in r["cs"]}
    for c in r["cs"]:
        r["anomalies"] += r["reg"][c]["anomalies"]
    limit = load_json(os.path.join(d, "limit.json"), {}) or {}
    r["limit"] = limit.get("users_per_s")
    r["limit_ac"] = limit.get("accounts_contacts_per_s")
    r["limit_us"] = per(limit.get("total_s"), limit.get("rows"))
    r["limit_steps"] = limit.get("steps_ms") or {}
    r["payload_len"] = limit.get("payload_len")
    mail = load_json(os.path.join(d, "mail.json"), {}) or {}
    cpu = mail.get("cpu") or {}
    wall = cpu.get("wall_s")
    r["mail"] = mail.get("emails_per_s")
    r["mail_sent"] = mail.get("sent")
    r["mail_reached"] = mail.get("reached")
    r["mail_outcomes"] = mail.get("outcomes") or {}
    r["mailer_cores"] = per(cpu.get("mailer_cpu_s"), wall, 1)
    r["mail_pg_cores"] = per(cpu.get("postgres_cpu_s"), wall, 1)
    r["sink_cores"] = per(cpu.get("sink_cpu_s"), wall, 1)
    r["mail_busy_cores"] = per(cpu.get("busy_cpu_s"), wall, 1)
    r["mail_other"] = cpu.get("other_cores")
    r["mailer_us"] = per(cpu.get("mailer_cpu_s"), mail.get("sent"))
    r["mail_pg_us"] = per(cpu.get("postgres_cpu_s"), mail.get("sent"))
    r["mail_threads"] = cpu.get("threads_cpu_s") or {}
    r["sink_messages"] = mail.get("sink_messages")
    r["sink_sessions"] = mail.get("sink_sessions")
    r["wire_bytes"] = (mail.get("sink_read_bytes") // mail["sink_messages"]
                       if mail.get("sink_read_bytes") and mail.get("sink_messages") else None)
    db = load_json(os.path.join(d, "db-mailed.json"), {}) or {}
    r["mail_db"] = db.get("mail_by_status") or {}
    span = db.get("mail_sent_span_s")
    sent_db = r["mail_db"].get("sent")
    r["mail_db_rate"] = (sent_db - 1) / span if sent_db and span else None
    source = load_json(os.path.join(d, "source.json"), {}) or {}
    r["source"] = source.get("emails_per_s")
    r["source_sessions"] = source.get("sessions")
    r["source_bytes"] = source.get("body_bytes")
    nagle = load_json(os.path.join(d, "nagle.json"), {}) or {}
    r["nagle_default"] = nagle.get("ms_per_message_default")
    r["nagle_nodelay"] = nagle.get("ms_per_message_nodelay")
    if not mail:
        r["anomalies"].append("mailer: no result (the driver failed)")
    elif not mail.get("reached"):
        r["anomalies"].append("mailer: {} sent of the {} wanted when the phase timed out".format(
            mail.get("sent"), mail.get("target")))
    bad = {k: v for k, v in r["mail_outcomes"].items() if k != "sent"}
    if bad:
        r["anomalies"].append("mailer outcomes other than sent: {}".format(bad))
    if source and (source.get("status") or source.get("sink_counted") != source.get("messages")):
        r["anomalies"].append("smtp-source: status {}, the sink counted {} of {}".format(
            source.get("status"), source.get("sink_counted"), source.get("messages")))
    r["mail_share"] = r["mail"] / r["source"] if r["mail"] and r["source"] else None
    for c in r["cs"]:
        x = r["reg"][c]
        x["share"] = x["rate"] / r["limit"] if x["rate"] and r["limit"] else None
    mem = load_json(os.path.join(d, "mailer-mem.json"), {}) or {}
    r["mailer_mib"] = mem["VmHWM"] / 1024 if mem.get("VmHWM") else None
    # Two replicas on what was left of the stream, into a fresh sink.
    mail2 = load_json(os.path.join(d, "mail2.json"), {}) or {}
    cpu2 = mail2.get("cpu") or {}
    wall2 = cpu2.get("wall_s")
    r["mail2"] = mail2.get("emails_per_s")
    r["mail2_sent"] = mail2.get("sent")
    r["mail2_by_replica"] = mail2.get("sent_by_replica") or []
    r["mail2_outcomes"] = mail2.get("outcomes") or {}
    r["mail2_ratio"] = r["mail2"] / r["mail"] if r["mail2"] and r["mail"] else None
    r["mailers2_cores"] = per(cpu2.get("mailer_cpu_s"), wall2, 1)
    r["mail2_pg_cores"] = per(cpu2.get("postgres_cpu_s"), wall2, 1)
    r["sink2_cores"] = per(cpu2.get("sink_cpu_s"), wall2, 1)
    r["mail2_busy_cores"] = per(cpu2.get("busy_cpu_s"), wall2, 1)
    r["mail2_other"] = cpu2.get("other_cores")
    r["mailers2_us"] = per(cpu2.get("mailer_cpu_s"), mail2.get("sent"))
    r["mail2_pg_us"] = per(cpu2.get("postgres_cpu_s"), mail2.get("sent"))
    r["mailer2_mib"] = []
    for i in (1, 2):
        m2 = load_json(os.path.join(d, "mailer2-%d-mem.json" % i), {}) or {}
        r["mailer2_mib"].append(m2["VmHWM"] / 1024 if m2.get("VmHWM") else None)
    db2 = load_json(os.path.join(d, "db-mailed2.json"), {}) or {}
    r["mail2_db"] = db2.get("mail_by_status") or {}
    if not mail2:
        r["anomalies"].append("two mailers: no result (the driver failed)")
    elif not mail2.get("reached"):
        r["anomalies"].append("two mailers: {} sent of the {} wanted when the phase timed out".format(
            mail2.get("sent"), mail2.get("target")))
    bad2 = {k: v for k, v in r["mail2_outcomes"].items() if k != "sent"}
    if bad2:
        r["anomalies"].append("two mailers: outcomes other than sent: {}".format(bad2))
    for name in ("mailer.log", "mailer2-1.log", "mailer2-2.log"):
        warn, error, samples = server_log(os.path.join(d, name))
        if warn or error:
            r["anomalies"].append("admit-mailer ({}) log {} WARN / {} ERROR: {}".format(
                name, warn, error,
                " | ".join("`{}`".format(s.replace("`", "'")[:200]) for s in samples[:2])))
    return r


def cmd_round(d, users):
    r = read_round(d, users)
    parts = []
    for c in r["cs"]:
        x = r["reg"][c]
        parts.append("c={} {} users/s (p50 {} p99 {}; {} on the stream at the last response, all {} s "
                     "after it)".format(c, fmt_n(x["rate"]), fmt_s(x["p50"]), fmt_s(x["p99"]),
                                        fmt_n(x["on_stream"]), fmt(x["relay_after"], "{:.1f}")))
    print("round {}: {}; bare PostgreSQL {} users/s; mailer {} emails/s, two replicas {} (smtp-source "
          "{}/s); mailer VmHWM {} MiB; write probe {} / {} ms a message".format(
              r["round"], "; ".join(parts), fmt_n(r["limit"]), fmt_n(r["mail"]), fmt_n(r["mail2"]),
              fmt_n(r["source"]), fmt(r["mailer_mib"], "{:.1f}"),
              fmt(r["nagle_default"], "{:.1f}"), fmt(r["nagle_nodelay"], "{:.2f}")))
    for a in r["anomalies"]:
        print("  anomaly: " + a)


def service_default(key):
    """A default of MailerSettings/SmtpSettings as crates/runtime/src/settings.rs writes it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "runtime",
                        "src", "settings.rs")
    try:
        with open(path) as f:
            m = re.search(r"\b%s: (\d[\d_]*)," % key, f.read())
        return m.group(1).replace("_", "") if m else "?"
    except OSError:
        return "?"


def cmd_section(d, out, o):
    for attr, key in (("mail_concurrency", "concurrency"), ("smtp_pool", "pool_size"),
                      ("mail_window_ms", "batch_window_ms")):
        if getattr(o, attr) == "default":
            setattr(o, attr, "{} (default)".format(service_default(key)))
    machine = load_json(os.path.join(d, "machine.json"), {}) or {}
    started = open(os.path.join(d, "started")).read().strip()
    try:
        finished = open(os.path.join(d, "finished")).read().strip()
    except OSError:
        finished = "?"
    rounds = [read_round(os.path.join(d, n), o.users)
              for n in sorted(os.listdir(d), key=lambda n: (len(n), n))
              if n.startswith("round-") and os.path.isdir(os.path.join(d, n))]
    if not rounds:
        sys.exit("summarise_batch: no rounds in " + d)
    cs = sorted({c for r in rounds for c in r["cs"]})
    med = {}
    for c in cs:
        for k in ("share", "account_mib", "rate", "p50", "p99", "on_stream", "relay_after", "relay_total", "account_cores",
                  "pg_cores", "busy_cores", "account_us", "pg_us", "wall"):
            med[(c, k)] = median(r["reg"][c][k] for r in rounds if c in r["reg"])
    for k in ("limit", "limit_ac", "limit_us", "mail", "mail_db_rate", "source", "nagle_default",
              "nagle_nodelay", "mailer_cores", "mail_pg_cores", "sink_cores", "mail_busy_cores",
              "mailer_us", "mail_pg_us", "wire_bytes", "payload_len", "mail_share", "mailer_mib",
              "mail2", "mail2_ratio", "mailers2_cores", "mail2_pg_cores", "sink2_cores",
              "mail2_busy_cores", "mailers2_us", "mail2_pg_us"):
        med[k] = median(r[k] for r in rounds)
    med["mailer2_mib"] = median(max((v for v in r["mailer2_mib"] if v is not None), default=None)
                                for r in rounds)
    per_session = median(r["sink_messages"] / r["sink_sessions"] for r in rounds
                         if r["sink_messages"] and r["sink_sessions"])

    def met(ok):
        return "n/a" if ok is None else ("**yes**" if ok else "**no**")

    lists = o.users // o.list
    lines = []
    add = lines.append
    add_run_header(add, "user.create batches and the mailer", started, finished, machine, o.rounds,
                   "PostgreSQL, Redis and smtp-sink on the same machine")
    if o.mailer_env or not all(v.endswith("(default)")
                               for v in (o.mail_concurrency, o.smtp_pool, o.mail_window_ms)):
        add("")
        add("**Not the default configuration:** admit-mailer ran with concurrency {}, SMTP pool {}, "
            "batch window {} ms{}.".format(o.mail_concurrency, o.smtp_pool, o.mail_window_ms,
                                           ", and `{}`".format(o.mailer_env) if o.mailer_env else ""))
    add("")
    add("### Goals (medians of the rounds)")
    add("")
    add("| goal | target | median | met |")
    add("| --- | --- | --- | --- |")
    for c in cs:
        rate, share = med[(c, "rate")], med[(c, "share")]
        what = ("| users/s registered by `user.create` ({} lists of {:,}, {}): accounts committed, "
                "emails queued in the outbox".format(
                    lists, o.list, "one request at a time" if c == 1 else "{} requests in flight".format(c)))
        if c == 1:
            add("{} ÷ the same rows inserted server-side by PostgreSQL in the same round | ≥ {} | {} "
                "({} users/s beside {} users/s) | {} |".format(
                    what, GOAL_SHARE_C1, fmt(share, "{:.2f}"), fmt_n(rate), fmt_n(med["limit"]),
                    met(None if share is None else share >= GOAL_SHARE_C1)))
        else:
            goal = GOAL_USERS_PER_S_C2 if c == 2 else GOAL_USERS_PER_S
            add("{} | ≥ {:,} | {} (limit beside it: the same rows inserted server-side by "
                "PostgreSQL, {} users/s; {} of it) | {} |".format(
                    what, goal, fmt_n(rate), fmt_n(med["limit"]), fmt(share, "{:.2f}"),
                    met(None if rate is None else rate >= goal)))
    hwm = max((med[(c, "account_mib")] or 0) for c in cs) or None
    by_c = "; ".join("{} in flight: {} MiB".format(c, fmt(med[(c, "account_mib")], "{:.1f}"))
                     for c in cs)
    add("| admit-account's peak resident size (VmHWM) while it registers (the largest of the "
        "concurrencies' medians; a fresh process for each) | < {} MiB | {} MiB ({}) | {} |".format(
            GOAL_ACCOUNT_MIB, fmt(hwm, "{:.1f}"), by_c,
            met(None if hwm is None else hwm < GOAL_ACCOUNT_MIB)))
    add("| emails/s from one admit-mailer into smtp-sink, as a share of postfix's smtp-source "
        "into the same sink in the same round | ≥ {} | {} ({} emails/s; limit beside it: "
        "smtp-source, {}/s on {} connections) | {} |".format(
            GOAL_MAIL_SHARE, fmt(med["mail_share"], "{:.2f}"), fmt_n(med["mail"]),
            fmt_n(med["source"]), rounds[0]["source_sessions"] or "?",
            met(None if med["mail_share"] is None else med["mail_share"] >= GOAL_MAIL_SHARE)))
    add("| emails/s from two admit-mailer replicas on the same stream into smtp-sink | beside one "
        "replica | {} ({}× one replica's {}) | n/a |".format(
            fmt_n(med["mail2"]), fmt(med["mail2_ratio"], "{:.2f}"), fmt_n(med["mail"])))
    add("| admit-mailer's peak resident size (VmHWM) under this load | < {} MiB | {} MiB (one "
        "replica; the larger of two replicas: {} MiB) | {} |".format(
            GOAL_MAILER_MIB, fmt(med["mailer_mib"], "{:.1f}"), fmt(med["mailer2_mib"], "{:.1f}"),
            met(None if med["mailer_mib"] is None else
                med["mailer_mib"] < GOAL_MAILER_MIB and (med["mailer2_mib"] or 0) < GOAL_MAILER_MIB)))
    add("")
    add("### Where the time goes (medians)")
    add("")
    c1 = cs[0]
    add("- **Registration, {} in flight.** PostgreSQL used {} cores and admit-account {} "
        "(the machine {} of its {} cores busy): {} µs of PostgreSQL CPU and {} µs of admit-account "
        "CPU per user. The bare insert of the same rows costs PostgreSQL {} µs per user, so "
        "{}× that is spent per user (statements from the client, the lookups before the inserts, "
        "the outbox relay). Request latency p50 {} / p99 {} for {:,} users ({:.1f} MB of JSON).".format(
            c1, fmt(med[(c1, "pg_cores")], "{:.2f}"), fmt(med[(c1, "account_cores")], "{:.2f}"),
            fmt(med[(c1, "busy_cores")], "{:.2f}"), machine.get("nproc", "?"),
            fmt(med[(c1, "pg_us")], "{:.0f}"), fmt(med[(c1, "account_us")], "{:.0f}"),
            fmt(med["limit_us"], "{:.0f}"),
            fmt(med[(c1, "pg_us")] / med["limit_us"] if med[(c1, "pg_us")] and med["limit_us"] else None,
                "{:.1f}"),
            fmt_s(med[(c1, "p50")]), fmt_s(med[(c1, "p99")]), o.list, rounds[0]["reg"][c1]["body_mb"]))
    for c in cs:
        add("- **Emails onto the Redis stream ({} in flight).** The outbox relay of admit-account "
            "runs during the load: {} of the {:,} emails were on the stream when the last response "
            "came, all of them {} s after it ({} s after the first request).".format(
                c, fmt_n(med[(c, "on_stream")]), o.users, fmt(med[(c, "relay_after")], "{:.1f}"),
                fmt(med[(c, "relay_total")], "{:.1f}")))
    if per_session is not None:
        sessions_note = ("smtp-sink saw {} messages per finished SMTP session.".format(
            fmt(per_session, "{:.1f}")))
    elif all(r["sink_messages"] and r["sink_sessions"] == 0 for r in rounds):
        sessions_note = ("smtp-sink, which counts a session when it ends, counted none while "
                         "the mailer sent: its sessions (at most `mailer.smtp.pool_size`) stayed "
                         "open, each carrying message after message.")
    else:
        sessions_note = "smtp-sink's session count is not available."
    busy = med["mail_busy_cores"]
    nproc = machine.get("nproc")
    waits = busy is not None and isinstance(nproc, (int, float)) and busy < 0.5 * nproc
    add("- **The mailer.** While sending, admit-mailer used {} cores, PostgreSQL {}, smtp-sink {}: "
        "the machine had {} of its {} cores busy{} ({} µs of mailer CPU and {} µs of PostgreSQL "
        "CPU per email). {} The "
        "mailer's sockets set `TCP_NODELAY`: lettre 0.11 writes a body and then its "
        "`\\r\\n.\\r\\n` in a separate write, which on a socket with Nagle's algorithm waits "
        "for the sink's delayed ACK (40 ms on Linux): the probe measured {} ms a message on one "
        "connection that way, {} ms with `TCP_NODELAY`. The rate from the mailer's own records "
        "(`mail_messages` sent, first to last `sent_at`) is {}/s.".format(
            fmt(med["mailer_cores"], "{:.2f}"), fmt(med["mail_pg_cores"], "{:.2f}"),
            fmt(med["sink_cores"], "{:.2f}"), fmt(busy, "{:.2f}"),
            nproc if nproc is not None else "?",
            ", so the mailer mostly waits rather than works" if waits else "",
            fmt(med["mailer_us"], "{:.0f}"), fmt(med["mail_pg_us"], "{:.0f}"),
            sessions_note,
            fmt(med["nagle_default"], "{:.1f}"),
            fmt(med["nagle_nodelay"], "{:.2f}"), fmt_n(med["mail_db_rate"])))
    add("- **Two mailer replicas.** Together {} emails/s ({}× one replica's rate in the same "
        "rounds): the two admit-mailer processes used {} cores, PostgreSQL {}, smtp-sink {}, the "
        "machine {} of its {} cores ({} µs of mailer CPU and {} µs of PostgreSQL CPU per email). "
        "The replicas share the machine's cores with each other, PostgreSQL and the sink, so a "
        "second replica adds sessions and batches in flight, not CPU.".format(
            fmt_n(med["mail2"]), fmt(med["mail2_ratio"], "{:.2f}"),
            fmt(med["mailers2_cores"], "{:.2f}"), fmt(med["mail2_pg_cores"], "{:.2f}"),
            fmt(med["sink2_cores"], "{:.2f}"), fmt(med["mail2_busy_cores"], "{:.2f}"),
            nproc if nproc is not None else "?",
            fmt(med["mailers2_us"], "{:.0f}"), fmt(med["mail2_pg_us"], "{:.0f}")))
    add("")
    add("### Rounds")
    add("")
    head = ["round"]
    for c in cs:
        head += ["users/s c={}".format(c), "p50", "p99", "on the stream at the last response",
                 "all on it after"]
    head += ["bare PostgreSQL users/s", "mailer emails/s", "two mailers emails/s",
             "smtp-source emails/s", "mailer ÷ smtp-source", "mailer VmHWM MiB (one / two)",
             "write probe ms (Nagle / no delay)", "other load (cores): {} / mailer / two mailers".format(
                 " / ".join("c={}".format(c) for c in cs))]
    add("| " + " | ".join(head) + " |")
    add("| --- | " + " | ".join("--:" for _ in head[1:]) + " |")
    for r in rounds:
        row = [r["round"]]
        for c in cs:
            x = r["reg"].get(c) or {}
            row += [fmt_n(x.get("rate")), fmt_s(x.get("p50")), fmt_s(x.get("p99")),
                    fmt_n(x.get("on_stream")),
                    "{} s".format(fmt(x.get("relay_after"), "{:.1f}"))]
        row += [fmt_n(r["limit"]), fmt_n(r["mail"]), fmt_n(r["mail2"]), fmt_n(r["source"]),
                fmt(r["mail_share"], "{:.2f}"),
                "{} / {}".format(fmt(r["mailer_mib"], "{:.1f}"),
                                 " + ".join(fmt(v, "{:.1f}") for v in r["mailer2_mib"])),
                "{} / {}".format(fmt(r["nagle_default"], "{:.1f}"), fmt(r["nagle_nodelay"], "{:.2f}")),
                " / ".join([fmt((r["reg"].get(c) or {}).get("other_cores"), "{:.2f}") for c in cs]
                           + [fmt(r["mail_other"], "{:.2f}"), fmt(r["mail2_other"], "{:.2f}")])]
        add("| " + " | ".join(row) + " |")
    row = ["**median**"]
    for c in cs:
        row += ["**{}**".format(fmt_n(med[(c, "rate")])), "**{}**".format(fmt_s(med[(c, "p50")])),
                "**{}**".format(fmt_s(med[(c, "p99")])), fmt_n(med[(c, "on_stream")]),
                "{} s".format(fmt(med[(c, "relay_after")], "{:.1f}"))]
    row += ["**{}**".format(fmt_n(med["limit"])), "**{}**".format(fmt_n(med["mail"])),
            "**{}**".format(fmt_n(med["mail2"])), "**{}**".format(fmt_n(med["source"])),
            "**{}**".format(fmt(med["mail_share"], "{:.2f}")),
            "{} / {}".format(fmt(med["mailer_mib"], "{:.1f}"), fmt(med["mailer2_mib"], "{:.1f}")),
            "{} / {}".format(fmt(med["nagle_default"], "{:.1f}"), fmt(med["nagle_nodelay"], "{:.2f}")), ""]
    add("| " + " | ".join(row) + " |")
    add("")
    add("Per round:")
    add("")
    for r in rounds:
        regs = []
        for c in cs:
            x = r["reg"].get(c)
            if not x:
                continue
            db = x["db"]
            regs.append(
                "c={}: {} created / {} existing / {} failed; rows after: {} accounts, {} contacts, "
                "{} memberships, {} password_tokens, {} outbox ({} published); request latencies {} s; "
                "CPU (cores) admit-account {} / PostgreSQL {} / machine {}; admit-account by thread: {}".format(
                    c, x["counts"].get("created"), x["counts"].get("existing"), x["counts"].get("failed"),
                    db.get("accounts"), db.get("contacts"), db.get("memberships"),
                    db.get("password_tokens"), db.get("outbox"), db.get("outbox_published"),
                    " ".join("{:.2f}".format(v) for v in x["latencies"]),
                    fmt(x["account_cores"], "{:.2f}"), fmt(x["pg_cores"], "{:.2f}"),
                    fmt(x["busy_cores"], "{:.2f}"),
                    ", ".join("`{}` {:.1f} s".format(k, v) for k, v in sorted(
                        x["threads"].items(), key=lambda kv: -kv[1])[:4]) or "n/a"))
        add("- round {}: {}; bare PostgreSQL: {} µs per user for the five tables (accounts and "
            "contacts alone {} users/s; statement times {}); mailer: {} sent by its `/metrics` "
            "({}), `mail_messages` by status once it stopped: {}; {} messages in {} SMTP sessions "
            "at the sink, {} bytes a message on the "
            "wire, CPU (cores) admit-mailer {} / PostgreSQL {} / smtp-sink {} / machine {}; "
            "two mailers: {} sent ({} by each), `mail_messages` by status once they stopped: {}; "
            "smtp-source: {} bytes of body{}".format(
                r["round"], "; ".join(regs), fmt(r["limit_us"], "{:.0f}"), fmt_n(r["limit_ac"]),
                ", ".join("{} {:.0f} ms".format(k, v) for k, v in r["limit_steps"].items()
                          if k not in ("begin", "commit")),
                r["mail_sent"], kv(r["mail_outcomes"]), kv(r["mail_db"]), r["sink_messages"],
                r["sink_sessions"], r["wire_bytes"], fmt(r["mailer_cores"], "{:.2f}"),
                fmt(r["mail_pg_cores"], "{:.2f}"), fmt(r["sink_cores"], "{:.2f}"),
                fmt(r["mail_busy_cores"], "{:.2f}"), r["mail2_sent"],
                " / ".join(str(v) for v in r["mail2_by_replica"]) or "n/a", kv(r["mail2_db"]),
                r["source_bytes"], busy_note(r["quiet"])))
    anomalies = ["round {}: {}".format(r["round"], a) for r in rounds for a in r["anomalies"]]
    add_anomalies(add, anomalies)
    add("")
    add("### What is measured, and how")
    add("")
    add("The production topology: the release binaries `admit-account` and `admit-mailer` "
        "(copied at the start of the run), PostgreSQL and Redis on 127.0.0.1. Each round, for "
        "each concurrency ({}):".format(", ".join(str(c) for c in cs)))
    add("")
    add("1. **A fresh database** (created, migrated with `admit migrate`, dropped after) and a "
        "fresh Redis key prefix; an operator sets up a partner with the admin commands: "
        "`admit partner create --json`, `admit api-key create --partner ID --json` (the "
        "bearer key), `admit plan-code add --partner ID PLAN-A`. "
        "`scripts/bench.d/batch.py bodies` writes {lists} lists of {n:,} fresh users "
        "(unique `Email` and `partner_EmployeeID`, the eight fields of document 001, `Language` "
        "FR/EN/DE/NL).".format(lists=lists, n=o.list))
    add("2. **Registration.** `admit-account` alone (no oauth, no mailer), with its outbox "
        "relay running as in production. `batch.py register` posts the lists to `POST "
        "/receiver/APIv3/user.create` (`Authorization: Bearer` the API key), keeping c requests "
        "in flight over keep-alive connections. Users/s = users created (the responses' "
        "`counts.created`) ÷ the time from the first request to the last response; a response "
        "comes after every chunk of the request committed its accounts, contacts, memberships, "
        "set-password links and outbox emails. p50/p99 are over the {lists} requests. Meanwhile "
        "`XLEN` of the mail stream is polled every 0.1 s; after the last response the script "
        "waits (at most {w} s) until all {u:,} emails are on the stream. Then the service is "
        "stopped and the tables counted (the per-round notes; each must hold {u:,} rows).".format(
            lists=lists, w="`BENCH_RELAY_WAIT`", u=o.users))
    add("3. After the first concurrency only:")
    add("   - **The PostgreSQL limit.** `batch.py limit`: scratch copies of accounts, contacts, "
        "memberships, password_tokens and outbox (`LIKE … INCLUDING ALL`, the same foreign "
        "keys), then, in one transaction, one `INSERT … SELECT … FROM generate_series(1, "
        "{u})` per table, with rows the size of the round's real ones (outbox payloads of "
        "{p} characters): what PostgreSQL alone takes to store these rows, with no client, "
        "no parsing and no round trips. Users/s = {u:,} ÷ the five statements' time.".format(
            u=o.users, p=fmt(med["payload_len"], "{:.0f}")))
    add("   - **The mailer.** postfix's `smtp-sink` (discards what it receives; `-c` counts "
        "messages and sessions) on a free port; `admit-mailer` reads the round's stream "
        "({u:,} emails) and sends over plain SMTP to the sink (mailer concurrency {mc}, SMTP "
        "pool {sp}, batch window {bw} ms: the service's settings unless the `BENCH_MAIL_*` "
        "variables say otherwise). `batch.py mail` polls the mailer's `/metrics` "
        "(`mailer_deliveries_total{{outcome=\"sent\"}}`) every 0.1 s; emails/s = the emails sent "
        "between the first poll that saw one and the poll that saw {e:,} ÷ the time between "
        "them; then the mailer is stopped. The mailer's `mail_messages` records (`sent`, "
        "first to last `sent_at`) and the sink's own count are the cross-checks. Its peak "
        "resident size is `VmHWM` of `/proc/PID/status` when it is stopped.".format(
            u=o.users, mc=o.mail_concurrency, sp=o.smtp_pool, bw=o.mail_window_ms, e=o.emails))
    add("   - **Two mailer replicas.** A fresh `smtp-sink`, then two `admit-mailer` processes "
        "(two consumers of the group, the same settings) on what is left of the stream; "
        "`batch.py mail` adds up their `/metrics` and measures the same way until {e:,} more "
        "emails are sent.".format(e=o.emails))
    add("   - **The sink's limit.** postfix's `smtp-source -d -s {s}` sends {n:,} messages "
        "over {s} reused connections (the mailer's pool size) into the same sink (the "
        "second one), with bodies "
        "the size the mailer's emails had on the wire: the rate this sink takes from a client "
        "that only sends.".format(s=rounds[0]["source_sessions"] or 8, n=o.source))
    add("   - **The SMTP write-pattern probe.** `batch.py nagle`: 40 transactions on one "
        "connection to the sink, each command and the body written as lettre writes them (the "
        "terminating `\\r\\n.\\r\\n` separately after the body), first on a default socket, "
        "then with `TCP_NODELAY`; milliseconds per message.")
    add("")
    add("CPU is accounted from `/proc`: admit-account or admit-mailer (and their threads), the "
        "PostgreSQL processes of the run's database plus the server's own workers, "
        "redis-server, smtp-sink, the driver; *other load* = all busy CPU − those, per second: "
        "well above 0 means the round was shared with other work. Before each round the script "
        "waits (at most `BENCH_QUIET_WAIT` s) for the machine to be nearly idle. This "
        "machine's speed drifts up to 1.6× from minute to minute, so each figure stands beside "
        "a limit measured in the same round, and medians are over the rounds.")
    add("")
    add("Reproduce: `BENCH_ROUNDS={} scripts/bench batch` (needs PostgreSQL at `BENCH_PG_URL`, "
        "Redis at `BENCH_REDIS_URL`, `psql`, `redis-cli`; installs postfix for `smtp-sink` and "
        "`smtp-source` when they are missing and stops its service; see the script's header "
        "for the settings).".format(o.rounds))
    write_section(out, "batch", lines, "Per round:")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("round")
    pr.add_argument("dir")
    pr.add_argument("--users", type=int, default=100000)
    ps = sub.add_parser("section")
    ps.add_argument("dir")
    ps.add_argument("out")
    ps.add_argument("--rounds", type=int, default=3)
    ps.add_argument("--users", type=int, default=100000)
    ps.add_argument("--list", type=int, default=10000)
    ps.add_argument("--concurrency", default="1 2")
    ps.add_argument("--emails", type=int, default=20000)
    ps.add_argument("--source", type=int, default=20000)
    ps.add_argument("--mail-concurrency", default="default")
    ps.add_argument("--smtp-pool", default="default")
    ps.add_argument("--mail-window-ms", default="default")
    ps.add_argument("--mailer-env", default="")
    a = p.parse_args()
    if a.cmd == "round":
        cmd_round(a.dir, a.users)
    else:
        cmd_section(a.dir, a.out, a)


if __name__ == "__main__":
    main()

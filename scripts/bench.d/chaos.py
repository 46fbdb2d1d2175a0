#!/usr/bin/env python3
"""The chaos benchmark's driver (standard library, and aiosmtpd for the sink).

    chaos.py sink --port P --ids FILE          an SMTP server that appends each
                                               message's Message-ID to FILE before
                                               it answers 250
    chaos.py register --url U --key K --users N --tag T --redis-url R --stream S --out F
                                               N users in user.create lists of at most
                                               10,000; waits until all N are on S
    chaos.py run --mode clean|chaos ...        two admit-mailer replicas drain the
                                               stream into the sink; in chaos mode one
                                               random replica is killed with SIGKILL
                                               every few seconds and restarted
    chaos.py section DIR OUT [options]         writes the chaos section of OUT
"""

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def sink(args):
    from aiosmtpd.controller import Controller

    fd = os.open(args.ids, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            mid = b"?"
            for line in envelope.content.split(b"\r\n"):
                if not line:
                    break
                if line[:11].lower() == b"message-id:":
                    mid = line[11:].strip()
                    break
            # Written before the 250: what the relay acknowledged is in the file.
            os.write(fd, mid + b"\n")
            return "250 OK"

    c = Controller(Handler(), hostname="127.0.0.1", port=args.port)
    c.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        c.stop()


def xlen(redis_url, stream):
    out = subprocess.run(["redis-cli", "-u", redis_url, "xlen", stream],
                         capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        return int(out)
    except ValueError:
        return -1


def register(args):
    users = [{
        "BikePlanCode": "PLAN-A", "FirstName": "Chaos", "LastName": "Bench",
        "Email": "chaos-%d-%s@example.com" % (i, args.tag), "Language": "EN",
        "ContractType": "", "partner_EmployeeID": "c%d-%s" % (i, args.tag),
        "PersonnelNumber": "A1",
    } for i in range(args.users)]
    created = 0
    for i in range(0, len(users), 10000):
        body = json.dumps({"users": users[i:i + 10000]}).encode()
        req = urllib.request.Request(
            args.url.rstrip("/") + "/receiver/APIv3/user.create", data=body, method="POST",
            headers={"Authorization": "Bearer " + args.key, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as res:
            created += json.load(res)["counts"]["created"]
    deadline = time.time() + 300
    while xlen(args.redis_url, args.stream) < args.users and time.time() < deadline:
        time.sleep(0.2)
    out = {"created": created, "on_stream": xlen(args.redis_url, args.stream)}
    json.dump(out, open(args.out, "w"))
    if created != args.users or out["on_stream"] < args.users:
        sys.exit("registered %s" % out)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def read_ids(path):
    try:
        with open(path, "rb") as f:
            return f.read().split(b"\n")[:-1]
    except FileNotFoundError:
        return []


def run(args):
    os.makedirs(args.logs, exist_ok=True)
    sp = free_port()
    sink_proc = subprocess.Popen([args.python, os.path.abspath(__file__), "sink", "--port", str(sp),
                                  "--ids", args.ids], stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(args.logs, "sink.log"), "w"))
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", sp), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or sink_proc.poll() is not None:
                sys.exit("the sink did not start")
            time.sleep(0.05)

    starts = [0]

    def start(i):
        starts[0] += 1
        env = dict(os.environ, ADMIT__MAILER__PORT=str(free_port()),
                   ADMIT__MAILER__SMTP__HOST="127.0.0.1", ADMIT__MAILER__SMTP__PORT=str(sp),
                   ADMIT__MAILER__SMTP__TLS="none", NO_COLOR="1", ADMIT_SHUTDOWN_GRACE_MS="200")
        log = open(os.path.join(args.logs, "mailer-%d-%d.log" % (i, starts[0])), "w")
        return subprocess.Popen([args.mailer], env=env, stdout=log, stderr=log)

    rng = random.Random(args.seed)
    t0 = time.time()
    replicas = [start(0), start(1)]
    kills = []
    next_kill = t0 + rng.uniform(args.kill_min, args.kill_max)
    first = None
    done_at = None
    deadline = t0 + args.timeout
    n = 0
    while time.time() < deadline:
        ids = read_ids(args.ids)
        now = time.time()
        if ids and first is None:
            first = now
        n = len(set(ids))
        if n >= args.emails:
            done_at = now
            break
        if args.mode == "chaos" and now >= next_kill:
            i = rng.randrange(len(replicas))
            replicas[i].send_signal(signal.SIGKILL)
            replicas[i].wait()
            kills.append({"t": round(now - t0, 3), "replica": i, "received": len(ids)})
            replicas[i] = start(i)
            next_kill = now + rng.uniform(args.kill_min, args.kill_max)
        time.sleep(0.02)
    # The stream empties once every entry is recorded and acknowledged: nothing can be
    # sent after that.
    empty_at = None
    while time.time() < deadline + 30:
        if xlen(args.redis_url, args.stream) == 0:
            empty_at = time.time()
            break
        time.sleep(0.1)
    time.sleep(1)
    for p in replicas:
        p.send_signal(signal.SIGTERM)
    for p in replicas:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    sink_proc.send_signal(signal.SIGTERM)
    sink_proc.wait(timeout=10)
    ids = read_ids(args.ids)
    distinct = len(set(ids))
    out = {
        "mode": args.mode, "emails": args.emails, "seed": args.seed,
        "received": len(ids), "distinct": distinct,
        "lost": args.emails - distinct, "sent_twice": len(ids) - distinct,
        "kills": kills,
        "drain_s": None if done_at is None else round(done_at - t0, 3),
        "empty_s": None if empty_at is None else round(empty_at - t0, 3),
        "rate": None if done_at is None or first is None or done_at <= first
        else round((args.emails - 1) / (done_at - first), 1),
        "stream_left": xlen(args.redis_url, args.stream),
    }
    json.dump(out, open(args.out, "w"))
    print(json.dumps(out), file=sys.stderr)


def median(values):
    import statistics
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec="{:,.0f}"):
    return "n/a" if v is None else spec.format(v)


def section(args):
    sys.path.insert(0, HERE)
    from summarise import replace_section
    rounds = []
    for r in range(1, args.rounds + 1):
        d = os.path.join(args.dir, "round-%d" % r)
        try:
            clean = json.load(open(os.path.join(d, "clean.json")))
            chaos = json.load(open(os.path.join(d, "chaos.json")))
        except (OSError, ValueError):
            continue
        rounds.append((r, clean, chaos))
    machine = json.load(open(os.path.join(args.dir, "machine.json")))
    started = open(os.path.join(args.dir, "started")).read().strip()
    finished = open(os.path.join(args.dir, "finished")).read().strip()
    m = {
        "clean_rate": median([c["rate"] for _, c, _ in rounds]),
        "clean_drain": median([c["drain_s"] for _, c, _ in rounds]),
        "lost": median([x["lost"] for _, _, x in rounds]),
        "twice": median([x["sent_twice"] for _, _, x in rounds]),
        "kills": median([len(x["kills"]) for _, _, x in rounds]),
        "drain": median([x["drain_s"] for _, _, x in rounds]),
        "rate": median([x["rate"] for _, _, x in rounds]),
    }
    lines = []
    add = lines.append
    add("## Mailer replicas killed with SIGKILL")
    add("")
    add("Last run: {} to {} (UTC), commit `{}`, `BENCH_ROUNDS={}`, `BENCH_CHAOS_EMAILS={}`{}.".format(
        started, finished, machine.get("commit", "?"), args.rounds, args.emails, args.note))
    add("")
    add("Machine: {} cores (`nproc`), CPU `{}`, {} GiB RAM, Linux {}; {}; PostgreSQL, Redis and the "
        "sink on the same machine; load average before the run {}.".format(
            machine.get("nproc", "?"), machine.get("cpu", "?"), machine.get("mem_gib", "?"),
            machine.get("kernel", "?"), machine.get("rustc", "?"),
            " ".join(machine.get("loadavg", [])) or "?"))
    add("")
    add("### Goals (medians of the rounds)")
    add("")
    add("| goal | target | median | met |")
    add("| --- | --- | --- | --- |")
    add("| emails lost, {:,} emails through two replicas, one killed every {}–{} s | 0 | {} | **{}** |".format(
        args.emails, "%g" % args.kill_min, "%g" % args.kill_max, fmt(m["lost"]),
        "yes" if m["lost"] == 0 else "no"))
    add("| emails sent twice (the relay had answered 250 and the killed replica had not "
        "committed its record) | 0 | {} | **{}** |".format(
            fmt(m["twice"]), "yes" if m["twice"] == 0 else "no"))
    add("")
    add("### Figures (medians)")
    add("")
    add("- Kills per round: {}. Time to drain {:,} emails with kills: {} s ({} emails/s from the "
        "first to the last); without faults, in the same rounds: {} s ({} emails/s).".format(
            fmt(m["kills"]), args.emails, fmt(m["drain"], "{:.1f}"), fmt(m["rate"]),
            fmt(m["clean_drain"], "{:.1f}"), fmt(m["clean_rate"])))
    add("")
    add("| round | emails/s without faults | drain without faults | kills | lost | sent twice | drain with kills | emails/s with kills |")
    add("| --: | --: | --: | --: | --: | --: | --: | --: |")
    for r, c, x in rounds:
        add("| {} | {} | {} s | {} | {} | {} | {} s | {} |".format(
            r, fmt(c["rate"]), fmt(c["drain_s"], "{:.1f}"), len(x["kills"]), x["lost"],
            x["sent_twice"], fmt(x["drain_s"], "{:.1f}"), fmt(x["rate"])))
    add("")
    add("Per round: " + "; ".join(
        "round {}: kills at {} s (emails received then: {}), clean run {} received / {} distinct, "
        "chaos run {} received / {} distinct, stream empty after {} s".format(
            r, ", ".join(str(k["t"]) for k in x["kills"]) or "none",
            ", ".join(str(k["received"]) for k in x["kills"]) or "none",
            c["received"], c["distinct"], x["received"], x["distinct"], fmt(x["empty_s"], "{:.1f}"))
        for r, c, x in rounds) + ".")
    add("")
    add("### What is measured, and how")
    add("")
    add("The production topology with release binaries (unless the run line above says otherwise): PostgreSQL, Redis, `admit-account`, two "
        "`admit-mailer` replicas (the service's settings, except `mailer.claim_idle_ms` = {} ms: a "
        "killed replica's messages come back after that, where the default is 60 s). Each round, twice "
        "(without faults, then with them), on a fresh database and Redis prefix: `chaos.py register` "
        "posts {:,} users in `user.create` lists (one welcome email each) and waits until every email "
        "is on the stream; then `chaos.py run` starts the SMTP sink (aiosmtpd; it appends each "
        "message's Message-ID to a file before it answers 250, so what the relay acknowledged is "
        "counted) and the two replicas, and, with faults, kills one of them at random with SIGKILL "
        "every {}–{} s (uniformly) and restarts it at once, until every email has arrived. Lost = "
        "emails whose Message-ID never arrived; sent twice = arrivals beyond the first of a "
        "Message-ID; drain = from the replicas' start to the last distinct Message-ID; emails/s from "
        "the first arrival to the last. The sink is Python and takes a share of the 2 cores: the "
        "figures without faults are the limit beside the ones with faults, not the mailer's ceiling "
        "(see the batch section for that, into smtp-sink).".format(
            args.claim_idle_ms, args.emails, "%g" % args.kill_min, "%g" % args.kill_max))
    add("")
    add("A sender cannot make the relay's 250 and its own record atomic: a replica killed between "
        "the two leaves a message that its next owner sends again. The mailer records each outcome "
        "as soon as the relay answers (a recorder task commits whatever outcomes arrived in one "
        "transaction) and acknowledges the stream entry after the record, so that window is one "
        "short commit; a replica never sends a message recorded sent, nor one leased to a live "
        "sender. tests/faults.rs checks, message by message, that every copy beyond the first was "
        "in a kill's window.")
    add("")
    add("Reproduce: `BENCH_ROUNDS=3 scripts/bench chaos` (needs PostgreSQL at `BENCH_PG_URL`, Redis "
        "at `BENCH_REDIS_URL`, `psql`, `redis-cli`, python3-aiosmtpd; see the script's header).")
    replace_section(args.out, "chaos", "\n".join(lines))
    print("\n".join(lines[:lines.index("### Figures (medians)")]))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--ids", required=True)
    g = sub.add_parser("register")
    for a in ("--url", "--key", "--tag", "--redis-url", "--stream", "--out"):
        g.add_argument(a, required=True)
    g.add_argument("--users", type=int, required=True)
    r = sub.add_parser("run")
    r.add_argument("--mode", choices=["clean", "chaos"], required=True)
    r.add_argument("--mailer", required=True)
    r.add_argument("--python", default="/usr/bin/python3")
    r.add_argument("--emails", type=int, required=True)
    r.add_argument("--ids", required=True)
    r.add_argument("--logs", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--redis-url", required=True)
    r.add_argument("--stream", required=True)
    r.add_argument("--kill-min", type=float, default=2)
    r.add_argument("--kill-max", type=float, default=5)
    r.add_argument("--timeout", type=float, default=600)
    r.add_argument("--seed", type=int, default=None)
    c = sub.add_parser("section")
    c.add_argument("dir")
    c.add_argument("out")
    c.add_argument("--rounds", type=int, required=True)
    c.add_argument("--emails", type=int, required=True)
    c.add_argument("--kill-min", type=float, required=True)
    c.add_argument("--kill-max", type=float, required=True)
    c.add_argument("--claim-idle-ms", type=int, required=True)
    c.add_argument("--note", default="")
    args = ap.parse_args()
    if args.cmd == "run" and args.seed is None:
        args.seed = random.randrange(1 << 30)
    {"sink": sink, "register": register, "run": run, "section": section}[args.cmd](args)


if __name__ == "__main__":
    main()

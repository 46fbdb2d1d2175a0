#!/usr/bin/env python3
"""Drivers of `scripts/bench batch` (standard library only, Linux /proc).

    batch.py bodies --dir D --lists N --size M --tag T [--plan CODE]
        Writes N request bodies (`{"users": [...]}`, M fresh users each, addresses and
        partner_EmployeeIDs unique by T) to D/list-00.json ...

    batch.py register --url URL --key KEY --dir D --concurrency C --out JSON \
            --pid ACCOUNT_PID --redis-url URL --stream KEY --expect N [--relay-timeout S]
        Phase A: posts the lists of D to URL (POST .../receiver/APIv3/user.create,
        Bearer KEY), C requests in flight, and times it: from the first request to the
        last response. Meanwhile XLEN of the stream is polled, and after the last
        response it waits (at most S s) until the relay has published N messages.
        CPU is accounted per process: the account service (and per thread), the
        PostgreSQL processes, redis-server, this client, the whole machine.

    batch.py limit --db URL --rows N --partner ID --out JSON
        The bare PostgreSQL rate of the same rows: scratch copies of accounts,
        contacts, memberships, password_tokens and outbox (same columns, indexes and
        foreign keys), N rows each from generate_series, in one transaction of
        server-side `INSERT ... SELECT` statements; sizes taken from the real rows.

    batch.py mail --metrics URL --target N --out JSON --pid MAILER_PID --sink-pid PID \
            [--timeout S]
        Phase B: polls the mailer's /metrics until it has sent N emails (or S s
        passed), and accounts for CPU like `register`.

    batch.py source --port P --messages N --sessions S --mail MAIL_JSON --sink-log F --out JSON
        The sink's own rate: postfix's smtp-source sends N messages on S connections
        (reused, as a pool does), each the size the mailer's emails had on the wire
        (bytes the sink read during the mailer phase / messages it counted).

    batch.py nagle --port P --out JSON
        Writes one SMTP transaction after another on one connection the way lettre
        does (the body, then `\r\n.\r\n` in a separate write, each flushed), with and
        without TCP_NODELAY: the cost of the write pattern alone.

    batch.py sink-count FILE
        The last message counter smtp-sink -c wrote to FILE.
"""

import argparse
import http.client
import json
import os
import queue
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import HZ, pid_cpu, proc_stat, thread_cpu  # noqa: E402


# --- CPU accounting -----------------------------------------------------------------
def procs_named(*names):
    """Pids of the processes whose command name is one of `names`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                if f.read().strip() in names:
                    out.append(int(d))
        except OSError:
            continue
    return out


PG_DB = None


def pg_pids():
    """The PostgreSQL processes doing this benchmark's work: the backends of its
    database and the server's own workers (WAL writer, checkpointer, autovacuum...),
    not the backends of other databases (tests running meanwhile); every postgres
    process when the server cannot be asked."""
    if PG_DB:
        r = subprocess.run(
            ["psql", "-X", "-At", PG_DB, "-c",
             "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
             "(datname = current_database() OR backend_type <> 'client backend')"],
            capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return [int(x) for x in r.stdout.split()]
    return procs_named("postgres", "postmaster")


def own_cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class CpuWindow:
    """CPU seconds of named process groups between two snapshots. A process counts
    only if alive at both ends; PostgreSQL backends started meanwhile are taken at
    the end with their whole life (they were born inside the window)."""

    def __init__(self, groups, threads_of=None):
        self.groups = groups  # name -> list of pids
        self.threads_of = threads_of
        self.t0 = time.monotonic()
        self.busy0 = proc_stat()
        self.own0 = own_cpu()
        self.cpu0 = {name: {p: pid_cpu(p) for p in pids} for name, pids in groups.items()}
        self.thr0 = thread_cpu(threads_of) if threads_of else {}

    def close(self, late=None):
        wall = time.monotonic() - self.t0
        busy1 = proc_stat()
        out = {"wall_s": round(wall, 3)}
        total = 0.0
        for name, pids in self.groups.items():
            s = 0.0
            for p in pids:
                a, b = self.cpu0[name].get(p), pid_cpu(p)
                if a is not None and b is not None:
                    s += (b - a) / HZ
            for p in (late or {}).get(name, []):
                if p not in self.cpu0[name]:
                    b = pid_cpu(p)
                    if b is not None:
                        s += b / HZ
            out[name + "_cpu_s"] = round(s, 2)
            total += s
        client = own_cpu() - self.own0
        out["client_cpu_s"] = round(client, 2)
        total += client
        busy = (busy1[0] - self.busy0[0]) / HZ
        out["busy_cpu_s"] = round(busy, 2)
        out["steal_cpu_s"] = round((busy1[1] - self.busy0[1]) / HZ, 2)
        out["other_cpu_s"] = round(max(0.0, busy - total), 2)
        out["other_cores"] = round(max(0.0, busy - total) / wall, 3) if wall else None
        out["cores"] = os.cpu_count()
        if self.threads_of:
            thr1 = thread_cpu(self.threads_of)
            by = {}
            for name, (u1, s1, _) in thr1.items():
                u0, s0, _ = self.thr0.get(name, [0, 0, 0])
                d = (u1 - u0 + s1 - s0) / HZ
                if d > 0:
                    by[name] = round(d, 2)
            out["threads_cpu_s"] = by
        return out


# --- Redis, without a client library ----------------------------------------------------
class Resp:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=5)
        self.buf = b""
        if u.password:
            self.cmd("AUTH", *( [urllib.parse.unquote(u.username), urllib.parse.unquote(u.password)]
                               if u.username else [urllib.parse.unquote(u.password)]))
        db = (u.path or "/").strip("/")
        if db:
            self.cmd("SELECT", db)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        line = self._line()
        if line[:1] == b"-":
            raise RuntimeError(line[1:].decode())
        if line[:1] == b":":
            return int(line[1:])
        if line[:1] == b"+":
            return line[1:].decode()
        if line[:1] == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v.decode()
        raise RuntimeError("unexpected reply %r" % line[:40])


# --- bodies --------------------------------------------------------------------------------
LANGS = ("FR", "EN", "DE", "NL")


def cmd_bodies(a):
    os.makedirs(a.dir, exist_ok=True)
    n = 0
    for i in range(a.lists):
        users = []
        for j in range(a.size):
            users.append({
                "BikePlanCode": a.plan, "FirstName": "Jane", "LastName": "Doe%d" % n,
                "Email": "u%d-%s@example.com" % (n, a.tag), "Language": LANGS[n % 4],
                "ContractType": "", "partner_EmployeeID": "E%d-%s" % (n, a.tag),
                "PersonnelNumber": "A%d" % n,
            })
            n += 1
        with open(os.path.join(a.dir, "list-%02d.json" % i), "w") as f:
            json.dump({"users": users}, f, separators=(",", ":"))


# --- phase A ----------------------------------------------------------------------------------
def cmd_register(a):
    files = sorted(os.path.join(a.dir, f) for f in os.listdir(a.dir) if f.startswith("list-"))
    bodies = []
    for p in files:
        with open(p, "rb") as f:
            bodies.append(f.read())
    u = urllib.parse.urlsplit(a.url)
    path = u.path.rstrip("/") + "/receiver/APIv3/user.create"
    headers = {"Authorization": "Bearer " + a.key, "Content-Type": "application/json"}
    redis = Resp(a.redis_url)
    xlen0 = redis.cmd("XLEN", a.stream)

    work = queue.Queue()
    for i, b in enumerate(bodies):
        work.put((i, b))
    results = [None] * len(bodies)
    errors = []

    def poster():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        while True:
            try:
                i, body = work.get_nowait()
            except queue.Empty:
                break
            t = time.monotonic()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                results[i] = (t, time.monotonic(), resp.status, data)
            except Exception as e:  # noqa: BLE001 - reported, not raised
                errors.append("list %d: %s" % (i, e))
                results[i] = (t, time.monotonic(), None, b"")
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        conn.close()

    # XLEN while the lists are posted and until the relay is done.
    polls = []
    stop = threading.Event()
    relay = {}

    def poller():
        r = Resp(a.redis_url)
        while not stop.is_set():
            n = r.cmd("XLEN", a.stream) - xlen0
            now = time.monotonic()
            polls.append((now, n))
            if n >= a.expect and "done" not in relay:
                relay["done"] = now
                return
            time.sleep(0.1)

    groups = {"account": [a.pid], "postgres": pg_pids(), "redis": procs_named("redis-server")}
    window = CpuWindow(groups, threads_of=a.pid)
    t0 = time.monotonic()
    pt = threading.Thread(target=poller, daemon=True)
    pt.start()
    threads = [threading.Thread(target=poster) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_last = max(r[1] for r in results)
    late = {"postgres": pg_pids()}
    cpu_register = window.close(late)
    xlen_at_last = redis.cmd("XLEN", a.stream) - xlen0
    # The relay's tail: from the last response until every message is on the stream.
    pt.join(timeout=a.relay_timeout)
    stop.set()
    cpu_all = window.close({"postgres": pg_pids()})

    lat = [r[1] - r[0] for r in results]
    counts = {"created": 0, "existing": 0, "failed": 0}
    statuses = {}
    samples = []
    for i, (_, _, status, data) in enumerate(results):
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            try:
                body = json.loads(data)
                for k in counts:
                    counts[k] += body["counts"][k]
            except (ValueError, KeyError) as e:
                samples.append("list %d: bad response %s" % (i, e))
        elif len(samples) < 3:
            samples.append("list %d: %s %s" % (i, status, data[:200].decode(errors="replace")))
    wall = t_last - t0
    lat_sorted = sorted(lat)

    def pct(p):
        if not lat_sorted:
            return None
        k = max(0, min(len(lat_sorted) - 1, int(round(p / 100 * len(lat_sorted) + 0.5)) - 1))
        return lat_sorted[k]

    out = {
        "lists": len(bodies), "concurrency": a.concurrency,
        "body_bytes": sum(len(b) for b in bodies) // max(1, len(bodies)),
        "wall_s": round(wall, 3),
        "users_per_s": counts["created"] / wall if wall > 0 else None,
        "counts": counts, "statuses": statuses, "errors": errors + samples,
        "latency_s": [round(x, 3) for x in lat],
        "p50_s": statistics.median(lat) if lat else None, "p99_s": pct(99),
        "max_s": max(lat) if lat else None,
        "relay": {
            "expect": a.expect,
            "published_at_last_response": xlen_at_last,
            "backlog_at_last_response": a.expect - xlen_at_last,
            "done_s_after_first_request": round(relay["done"] - t0, 3) if "done" in relay else None,
            "done_s_after_last_response": round(relay["done"] - t_last, 3) if "done" in relay else None,
            "published": polls[-1][1] if polls else None,
            "polls_during_load": [(round(t - t0, 2), n) for t, n in polls[::10]],
        },
        "cpu_register": cpu_register,
        "cpu_until_relay_done": cpu_all,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print("phase A: {} created, {} existing, {} failed in {:.2f} s ({:.0f} users/s); "
          "p50 {:.2f} s p99 {:.2f} s; relay: {} of {} published at the last response, all "
          "{} s after it".format(counts["created"], counts["existing"], counts["failed"], wall,
                                 out["users_per_s"] or 0, out["p50_s"] or 0, out["p99_s"] or 0,
                                 xlen_at_last, a.expect, out["relay"]["done_s_after_last_response"]),
          file=sys.stderr)


# --- the PostgreSQL limit ---------------------------------------------------------------------
LIMIT_SQL = """
\\set ON_ERROR_STOP 1
DROP SCHEMA IF EXISTS bench_limit CASCADE;
CREATE SCHEMA bench_limit;
CREATE TABLE bench_limit.accounts (LIKE public.accounts INCLUDING ALL);
CREATE TABLE bench_limit.contacts (LIKE public.contacts INCLUDING ALL,
    FOREIGN KEY (account_id) REFERENCES bench_limit.accounts (id) ON DELETE CASCADE);
CREATE TABLE bench_limit.memberships (LIKE public.memberships INCLUDING ALL,
    FOREIGN KEY (partner_id) REFERENCES public.partners (id),
    FOREIGN KEY (account_id) REFERENCES bench_limit.accounts (id) ON DELETE CASCADE);
CREATE TABLE bench_limit.password_tokens (LIKE public.password_tokens INCLUDING ALL,
    FOREIGN KEY (partner_id) REFERENCES public.partners (id),
    FOREIGN KEY (account_id) REFERENCES bench_limit.accounts (id) ON DELETE CASCADE);
CREATE TABLE bench_limit.outbox (LIKE public.outbox INCLUDING ALL);
CHECKPOINT;
\\timing on
BEGIN;
INSERT INTO bench_limit.accounts (id, full_name, account_type, status, created_at)
  SELECT '0190' || lpad(to_hex(i), 32, '0'), 'Jane Doe' || i, 'standard', 'pending', now()
  FROM generate_series(1, {rows}) i;
INSERT INTO bench_limit.contacts (id, account_id, kind, value, value_normalized, is_primary, created_at)
  SELECT '0191' || lpad(to_hex(i), 32, '0'), '0190' || lpad(to_hex(i), 32, '0'), 'EMAIL',
         'limit' || i || '@example.com', 'limit' || i || '@example.com', true, now()
  FROM generate_series(1, {rows}) i;
INSERT INTO bench_limit.memberships (partner_id, account_id, employee_id, email_normalized, outcome, attributes, created_at)
  SELECT '{partner}', '0190' || lpad(to_hex(i), 32, '0'), 'L' || i, 'limit' || i || '@example.com',
         'created', rpad('{{"BikePlanCode":"PLAN-A"', {attr_len}, 'x'), now()
  FROM generate_series(1, {rows}) i;
INSERT INTO bench_limit.password_tokens (token_digest, account_id, partner_id, created_at, expires_at)
  SELECT encode(sha256(i::text::bytea), 'hex'), '0190' || lpad(to_hex(i), 32, '0'), '{partner}',
         now(), now() + interval '7 days'
  FROM generate_series(1, {rows}) i;
INSERT INTO bench_limit.outbox (message_id, topic, payload, created_at, deliveries)
  SELECT '0192' || lpad(to_hex(i), 32, '0'), 'mail', rpad('{{"id":"' || i, {payload_len}, 'x'), now(), 0
  FROM generate_series(1, {rows}) i;
COMMIT;
\\timing off
DROP SCHEMA bench_limit CASCADE;
"""


def psql(db, sql, *extra):
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *extra, db],
                          input=sql, capture_output=True, text=True, timeout=600)


def cmd_limit(a):
    r = psql(a.db, "SELECT coalesce(avg(length(payload))::int, 600) FROM outbox; "
                   "SELECT coalesce(avg(length(attributes))::int, 150) FROM memberships;", "-At")
    if r.returncode != 0:
        sys.exit("limit: " + r.stderr)
    payload_len, attr_len = (int(x) for x in r.stdout.split())
    sql = LIMIT_SQL.format(rows=a.rows, partner=a.partner.replace("'", "''"),
                           payload_len=payload_len, attr_len=attr_len)
    t = time.monotonic()
    r = psql(a.db, sql)
    wall = time.monotonic() - t
    if r.returncode != 0:
        sys.exit("limit: " + r.stderr)
    ms = [float(m) for m in re.findall(r"^Time: ([0-9.]+) ms", r.stdout, re.M)]
    # BEGIN, five INSERTs, COMMIT.
    names = ["begin", "accounts", "contacts", "memberships", "password_tokens", "outbox", "commit"]
    steps = dict(zip(names, ms))
    total = sum(ms) / 1000
    ac = (steps.get("accounts", 0) + steps.get("contacts", 0)) / 1000
    out = {"rows": a.rows, "payload_len": payload_len, "attributes_len": attr_len,
           "steps_ms": steps, "total_s": round(total, 3), "psql_wall_s": round(wall, 3),
           "users_per_s": a.rows / total if total else None,
           "accounts_contacts_s": round(ac, 3),
           "accounts_contacts_per_s": a.rows / ac if ac else None}
    with open(a.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print("PostgreSQL limit: {} rows into five tables in {:.2f} s ({:.0f} users/s; accounts + "
          "contacts alone {:.0f}/s)".format(a.rows, total, out["users_per_s"] or 0,
                                            out["accounts_contacts_per_s"] or 0), file=sys.stderr)


# --- phase B ----------------------------------------------------------------------------------
def metric_sent(url):
    u = urllib.parse.urlsplit(url)
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
        c.request("GET", u.path or "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        m = re.match(r'mailer_deliveries_total\{outcome="([a-z]+)"\} ([0-9.e+]+)', line)
        if m:
            out[m.group(1)] = int(float(m.group(2)))
    return out


def sink_io(pid):
    try:
        with open("/proc/%d/io" % pid) as f:
            return {k: int(v) for k, v in (line.split(": ") for line in f)}
    except OSError:
        return {}


def sink_counters(path):
    """(sessions, messages) of the last counter line smtp-sink -c wrote."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return 0, 0
    m = re.findall(r"sess=(\d+) quit=\d+ mesg=(\d+)", text)
    return (int(m[-1][0]), int(m[-1][1])) if m else (0, 0)


def metrics_sum(urls):
    """The outcomes of every replica added up, and each replica's; None while one
    does not answer."""
    each = [metric_sent(u) for u in urls]
    if any(m is None for m in each):
        return None, each
    total = {}
    for m in each:
        for k, v in m.items():
            total[k] = total.get(k, 0) + v
    return total, each


def cmd_mail(a):
    # The sink was started for these mailers, which connect before this driver reads
    # anything: its counters start at zero.
    sink0 = (0, 0)
    groups = {"mailer": list(a.pid), "postgres": pg_pids(), "redis": procs_named("redis-server"),
              "sink": [a.sink_pid]}
    io0 = sink_io(a.sink_pid)
    window = CpuWindow(groups, threads_of=a.pid[0] if len(a.pid) == 1 else None)
    t0 = time.monotonic()
    polls = []
    first = None
    done = None
    each = []
    while time.monotonic() - t0 < a.timeout:
        m, got = metrics_sum(a.metrics)
        now = time.monotonic()
        if m is not None:
            each = got
            sent = m.get("sent", 0)
            polls.append((now, sent, m))
            if sent > 0 and first is None:
                first = (now, sent)
            if sent >= a.target:
                done = (now, sent)
                break
        time.sleep(0.1)
    cpu = window.close({"postgres": pg_pids()})
    io1 = sink_io(a.sink_pid)
    sink1 = sink_counters(a.sink_log)
    last = polls[-1] if polls else (time.monotonic(), 0, {})
    end = done or (last[0], last[1])
    rate = None
    if first and end[0] > first[0]:
        rate = (end[1] - first[1]) / (end[0] - first[0])
    out = {
        "target": a.target, "reached": done is not None,
        "sent": end[1], "outcomes": last[2],
        "first_sent_s": round(first[0] - t0, 3) if first else None,
        "done_s": round(end[0] - t0, 3),
        "emails_per_s": rate,
        "emails_per_s_from_start": end[1] / (end[0] - t0) if end[0] > t0 else None,
        "sink_read_bytes": (io1.get("rchar", 0) - io0.get("rchar", 0)) if io0 and io1 else None,
        "sink_messages": sink1[1] - sink0[1], "sink_sessions": sink1[0] - sink0[0],
        "progress": [(round(t - t0, 2), s) for t, s, _ in polls[::10]],
        "cpu": cpu,
        "replicas": len(a.metrics),
        "sent_by_replica": [m.get("sent", 0) for m in each if m is not None],
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print("phase B ({} replica{}): {} emails sent in {:.2f} s after the first ({:.0f} emails/s){}".format(
        len(a.metrics), "" if len(a.metrics) == 1 else "s", end[1], end[0] - (first[0] if first else t0), rate or 0,
        "" if done else " (target {} not reached)".format(a.target)), file=sys.stderr)


def cmd_source(a):
    try:
        with open(a.mail) as f:
            mail = json.load(f)
    except (OSError, ValueError):
        mail = {}
    bytes_, msgs = mail.get("sink_read_bytes") or 0, mail.get("sink_messages") or 0
    # What the sink read per message includes the SMTP commands (about 100 bytes);
    # smtp-source adds its own headers to -l bytes of body.
    size = max(100, bytes_ // msgs - 150) if bytes_ and msgs else 4000
    before = sink_counters(a.sink_log)
    t = time.monotonic()
    r = subprocess.run(["/usr/sbin/smtp-source", "-d", "-s", str(a.sessions), "-m", str(a.messages),
                        "-l", str(size), "-f", "bench@admit.invalid", "-t", "user@example.com",
                        "127.0.0.1:%d" % a.port], capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - t
    time.sleep(0.3)
    after = sink_counters(a.sink_log)
    out = {"messages": a.messages, "sessions": a.sessions, "body_bytes": size,
           "wall_s": round(wall, 3), "emails_per_s": a.messages / wall,
           "sink_counted": after[1] - before[1], "status": r.returncode, "stderr": r.stderr[-300:]}
    with open(a.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print("smtp-source: {} messages ({} bytes of body) on {} connections in {:.2f} s ({:.0f}/s)".format(
        a.messages, size, a.sessions, wall, out["emails_per_s"]), file=sys.stderr)
    if r.returncode != 0:
        sys.exit(r.returncode)


def cmd_nagle(a):
    body = (b"x" * 70 + b"\r\n") * 40

    def run(nodelay, n):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if not line:
                    raise ConnectionError("the sink closed the connection")
                if line[3:4] != b"-":
                    return line

        reply()
        s.sendall(b"EHLO bench\r\n")
        reply()
        t = time.monotonic()
        for _ in range(n):
            for cmd in (b"MAIL FROM:<bench@admit.invalid>\r\n", b"RCPT TO:<user@example.com>\r\n",
                        b"DATA\r\n"):
                s.sendall(cmd)
                reply()
            s.sendall(body)
            s.sendall(b"\r\n.\r\n")
            reply()
        dt = time.monotonic() - t
        s.sendall(b"QUIT\r\n")
        s.close()
        return dt / n * 1000

    out = {"messages": a.messages, "body_bytes": len(body),
           "ms_per_message_default": run(False, a.messages),
           "ms_per_message_nodelay": run(True, a.messages)}
    with open(a.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print("SMTP write pattern on one connection: {:.2f} ms a message without TCP_NODELAY, {:.3f} ms "
          "with it".format(out["ms_per_message_default"], out["ms_per_message_nodelay"]), file=sys.stderr)


def cmd_sink_count(a):
    try:
        with open(a.file, errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    m = re.findall(r"mesg=(\d+)", text)
    print(m[-1] if m else 0)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bodies")
    b.add_argument("--dir", required=True)
    b.add_argument("--lists", type=int, default=10)
    b.add_argument("--size", type=int, default=10000)
    b.add_argument("--tag", required=True)
    b.add_argument("--plan", default="PLAN-A")
    r = sub.add_parser("register")
    r.add_argument("--url", required=True)
    r.add_argument("--key", required=True)
    r.add_argument("--dir", required=True)
    r.add_argument("--concurrency", type=int, default=1)
    r.add_argument("--out", required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--redis-url", required=True)
    r.add_argument("--stream", required=True)
    r.add_argument("--expect", type=int, required=True)
    r.add_argument("--relay-timeout", type=float, default=120)
    r.add_argument("--db", help="the run's database URL (whose PostgreSQL CPU to count)")
    lm = sub.add_parser("limit")
    lm.add_argument("--db", required=True)
    lm.add_argument("--rows", type=int, default=100000)
    lm.add_argument("--partner", required=True)
    lm.add_argument("--out", required=True)
    m = sub.add_parser("mail")
    m.add_argument("--metrics", required=True, action="append",
                   help="a replica's /metrics (once per replica, in the order of --pid)")
    m.add_argument("--target", type=int, required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--pid", type=int, required=True, action="append")
    m.add_argument("--sink-pid", type=int, required=True)
    m.add_argument("--sink-log", required=True)
    m.add_argument("--timeout", type=float, default=300)
    m.add_argument("--db", help="the run's database URL (whose PostgreSQL CPU to count)")
    so = sub.add_parser("source")
    so.add_argument("--port", type=int, required=True)
    so.add_argument("--messages", type=int, default=20000)
    so.add_argument("--sessions", type=int, default=8)
    so.add_argument("--mail", required=True)
    so.add_argument("--sink-log", required=True)
    so.add_argument("--out", required=True)
    ng = sub.add_parser("nagle")
    ng.add_argument("--port", type=int, required=True)
    ng.add_argument("--messages", type=int, default=40)
    ng.add_argument("--out", required=True)
    s = sub.add_parser("sink-count")
    s.add_argument("file")
    a = p.parse_args()
    global PG_DB
    PG_DB = getattr(a, "db", None)
    {"bodies": cmd_bodies, "register": cmd_register, "limit": cmd_limit, "mail": cmd_mail,
     "source": cmd_source, "nagle": cmd_nagle, "sink-count": cmd_sink_count}[a.cmd](a)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""CPU accounting for `scripts/bench` (standard library only, Linux /proc).

    measure.py run --out CPU.json [--pid PID]... [--timeout S] -- OUT1 CMD1... [';;' OUT2 CMD2...]

        Runs the commands at the same time (each one's stdout and stderr to its OUT
        file), waits for all of them (killing them after --timeout seconds), and
        writes how the machine's CPU time was spent meanwhile:
        busy (all processes), ours (the commands + the --pid processes) and
        foreign = busy - ours: what other processes on the machine took from the
        benchmark, in core-seconds and in cores on average. Exits with the first
        non-zero exit status of the commands.

    measure.py quiet --max-wait S [--threshold CORES] [--window S]

        Waits, at most S seconds, until the machine's busy CPU over a window drops
        below CORES (nothing of the benchmark runs at that point, so all of it is
        other work). Prints one JSON line with what it saw; never fails.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def proc_stat():
    """(busy, steal, total) clock ticks of all CPUs since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy, steal, sum(fields[:8])


def pid_cpu(pid):
    """utime + stime of a process and its reaped children, in ticks (None if gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        # Fields after the command: state is index 0, utime 11, stime 12, cutime 13, cstime 14.
        return sum(int(rest[i]) for i in (11, 12, 13, 14))
    except (OSError, IndexError, ValueError):
        return None


def thread_cpu(pid):
    """Per thread name (trailing digits dropped: argon2-0 -> argon2-): [utime, stime]
    in ticks and minor page faults."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                text = f.read()
            name = text[text.index("(") + 1:text.rindex(")")].rstrip("0123456789")
            rest = text.rsplit(")", 1)[1].split()
            acc = out.setdefault(name, [0, 0, 0])
            acc[0] += int(rest[11])
            acc[1] += int(rest[12])
            acc[2] += int(rest[7])
        except (OSError, ValueError, IndexError):
            continue
    return out


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cmd_run(args):
    argv = args.commands
    if argv and argv[0] == "--":
        argv = argv[1:]
    segments, cur = [], []
    for tok in argv:
        if tok == ";;":
            segments.append(cur)
            cur = []
        else:
            cur.append(tok)
    segments.append(cur)
    if any(len(s) < 2 for s in segments):
        sys.exit("measure.py run: each command is OUTFILE CMD [ARGS...]")

    pids0 = {p: pid_cpu(p) for p in args.pid}
    threads0 = {p: thread_cpu(p) for p in args.pid}
    busy0, steal0, total0 = proc_stat()
    ch0 = children_cpu()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    procs = []
    for seg in segments:
        out = open(seg[0], "w")
        procs.append((subprocess.Popen(seg[1:], stdout=out, stderr=subprocess.STDOUT), out))
    deadline = t0 + args.timeout
    codes = []
    timed_out = False
    for p, out in procs:
        try:
            codes.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            timed_out = True
            p.kill()
            codes.append(p.wait())
        out.close()
    wall = time.monotonic() - t0
    busy1, steal1, total1 = proc_stat()
    ch1 = children_cpu()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    pids1 = {p: pid_cpu(p) for p in args.pid}
    threads1 = {p: thread_cpu(p) for p in args.pid}
    # CPU seconds per thread name of the --pid processes, over the run (threads that
    # exited meanwhile are missing here but counted in pids_cpu_s).
    by_thread, detail = {}, {}
    for p in args.pid:
        for name, (u1, s1, f1) in threads1[p].items():
            u0, s0, f0 = threads0[p].get(name, [0, 0, 0])
            delta = (u1 - u0 + s1 - s0) / HZ
            if delta > 0:
                by_thread[name] = round(by_thread.get(name, 0) + delta, 2)
                d = detail.setdefault(name, {"user_s": 0.0, "sys_s": 0.0, "minflt": 0})
                d["user_s"] = round(d["user_s"] + (u1 - u0) / HZ, 2)
                d["sys_s"] = round(d["sys_s"] + (s1 - s0) / HZ, 2)
                d["minflt"] += f1 - f0

    busy = (busy1 - busy0) / HZ
    commands = ch1 - ch0
    pids = sum((pids1[p] - pids0[p]) / HZ for p in args.pid
               if pids0[p] is not None and pids1[p] is not None)
    ours = commands + pids
    foreign = max(0.0, busy - ours)
    result = {
        "wall_s": round(wall, 3),
        "busy_cpu_s": round(busy, 2),
        "steal_cpu_s": round((steal1 - steal0) / HZ, 2),
        "commands_cpu_s": round(commands, 2),
        "pids_cpu_s": round(pids, 2),
        "pids_cpu_s_by_thread": by_thread,
        "pids_threads": detail,
        "commands_user_s": round(ru1.ru_utime - ru0.ru_utime, 2),
        "commands_sys_s": round(ru1.ru_stime - ru0.ru_stime, 2),
        "commands_minflt": ru1.ru_minflt - ru0.ru_minflt,
        "foreign_cpu_s": round(foreign, 2),
        "foreign_cores": round(foreign / wall, 3) if wall else None,
        "cores": os.cpu_count(),
        "exit_codes": codes,
        "timed_out": timed_out,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
        f.write("\n")
    bad = [c for c in codes if c != 0]
    sys.exit(bad[0] if bad and bad[0] > 0 else (1 if bad else 0))


def cmd_quiet(args):
    start = time.monotonic()
    samples = []
    while True:
        b0, _, _ = proc_stat()
        t0 = time.monotonic()
        time.sleep(args.window)
        b1, _, _ = proc_stat()
        cores = (b1 - b0) / HZ / (time.monotonic() - t0)
        samples.append(round(cores, 2))
        waited = time.monotonic() - start
        if cores < args.threshold or waited >= args.max_wait:
            print(json.dumps({"quiet": cores < args.threshold, "busy_cores": round(cores, 2),
                              "waited_s": round(waited, 1), "samples": samples[-10:]}))
            return


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--pid", type=int, action="append", default=[])
    r.add_argument("--timeout", type=float, default=600)
    r.add_argument("commands", nargs=argparse.REMAINDER)
    q = sub.add_parser("quiet")
    q.add_argument("--max-wait", type=float, default=120)
    q.add_argument("--threshold", type=float, default=0.3)
    q.add_argument("--window", type=float, default=2.0)
    a = p.parse_args()
    if a.cmd == "run":
        cmd_run(a)
    else:
        cmd_quiet(a)


if __name__ == "__main__":
    main()

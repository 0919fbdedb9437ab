#!/usr/bin/env python3
"""bench/report.py - turns one run's wsbench JSON lines into docs/benchmarks/results.md.

Called by bench/run.sh. Every figure is shown beside the same run's baselines (direct TCP
to the echo server, websockify) as a ratio, because the machine is shared and noisy: the
absolute numbers move from run to run, the ratios much less. Each scenario ran in rounds
that took the targets in turn; a target's figures are those of its median round (by
MB/s), its errors the sum over all rounds. Also writes throughput.dat, the table
bench/throughput.gp plots, and prints the plot's y-axis floor.
"""
import argparse
import datetime
import json
import math
import os
import platform

SCENARIOS = {
    "64B-1c": ("Throughput: 64 B messages, 1 connection, 16 in flight",
               "64 B x1"),
    "64B-100c": ("Throughput: 64 B messages, 100 connections, 16 in flight each",
                 "64 B x100"),
    "4K-100c": ("Throughput: 4 KiB messages, 100 connections, 8 in flight each",
                "4 KiB x100"),
    "64K-1c": ("Throughput: 64 KiB messages, 1 connection, 2 in flight",
               "64 KiB x1"),
    "64K-100c": ("Throughput: 64 KiB messages, 100 connections, 2 in flight each",
                 "64 KiB x100"),
    "4K-1000c": ("Throughput: 4 KiB messages, 1,000 connections, 2 in flight each",
                 "4 KiB x1000"),
    "lat-64B": ("Latency: 64 B messages, 1 connection, 1 in flight (exact round trips)",
                None),
}
TARGETS = [("tcp", "direct TCP"), ("websockify", "websockify"), ("wsgate", "wsgate")]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return "%.0f GiB" % (int(line.split()[1]) / 1048576)
    except OSError:
        pass
    return "unknown"


def num(v):
    """A count or rate: thousands separators, 3 significant digits below 100."""
    if v is None:
        return "—"
    if v >= 100:
        return "{:,.0f}".format(v)
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def usec(v):
    if v is None:
        return "—"
    return "{:,.0f}".format(v) if v >= 100 else "%.1f" % v


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    if r is None:
        return "—"
    return "%.2f×" % r if r < 10 else "%.1f×" % r


def errors_cell(rounds):
    """Errors summed over every round, by kind, and how many connections ran."""
    done = [r for r in rounds if r is not None]
    failed = len(rounds) - len(done)
    n = sum(r["errors"] for r in done)
    if n == 0 and failed == 0:
        return "0"
    kinds = {}
    for r in done:
        for k, v in r["error_kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    parts = ["%d %s" % (v, k) for k, v in kinds.items() if v]
    if done:
        ran = sorted(r["conns_ok"] for r in done)
        ran_s = "%d" % ran[0] if ran[0] == ran[-1] else "%d–%d" % (ran[0], ran[-1])
        parts.append("%s of %d conns ran" % (ran_s, done[0]["conns"]))
    if failed:
        parts.append("%d rounds gave no result" % failed)
    return "**%d** (%s)" % (n, "; ".join(parts))


def median_round(rounds):
    """The round with the median MB/s (the lower middle one for an even count)."""
    done = sorted((r for r in rounds if r is not None), key=lambda r: r["mb_per_s"])
    return done[(len(done) - 1) // 2] if done else None


def spread(rounds, key, fmt):
    vals = sorted(r[key] for r in rounds if r is not None)
    if len(vals) < 2:
        return "—"
    return "%s–%s" % (fmt(vals[0]), fmt(vals[-1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", required=True)
    ap.add_argument("--rounds", required=True)
    ap.add_argument("--warmup", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--date", help="when the run started (default: now)")
    ap.add_argument("--wsgate-version", default="unknown")
    ap.add_argument("--build-type", default="unknown")
    ap.add_argument("--websockify-version", default="unknown")
    ap.add_argument("--websockify-numpy", default="unknown")
    ap.add_argument("--websockify-select-errors", default="0")
    a = ap.parse_args()

    all_rounds = {}  # (scenario, target) -> [result or None, one per round]
    order = []
    with open(a.results) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if rec["scenario"] not in order:
                order.append(rec["scenario"])
            all_rounds.setdefault((rec["scenario"], rec["target"]), []).append(rec["result"])
    runs = {key: median_round(rounds) for key, rounds in all_rounds.items()}

    def get(sc, tgt, key):
        r = runs.get((sc, tgt))
        return None if r is None else r.get(key)

    now = a.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = []
    w = out.append
    w("# wsgate benchmark results")
    w("")
    w("Generated by `bench/run.sh`; how to run it and how to read it: [README.md](README.md).")
    w("")
    w("| | |")
    w("|---|---|")
    w("| Date | %s |" % now)
    w("| Machine | %d cores (nproc), %s, %s RAM, Linux %s — shared with other work, so "
      "compare ratios, not absolute numbers |"
      % (len(os.sched_getaffinity(0)), cpu_model(), mem_gib(), platform.release()))
    w("| Commit | `%s` |" % a.commit)
    w("| wsgate | %s, %s build, `--log-level warn` |" % (a.wsgate_version, a.build_type))
    w("| websockify | %s (Debian), numpy for unmasking: %s |"
      % (a.websockify_version, a.websockify_numpy))
    w("| Backend | `wsgate-echo` (one epoll thread), shared by all three targets |")
    w("| Per scenario | %s rounds; each round runs the three targets in turn (a different one "
      "first each round), each for %s s warm-up + %s s measured; a target's figures are from "
      "its median round by MB/s, its errors summed over all rounds |"
      % (a.rounds, a.warmup, a.seconds))
    w("| Client | `bench/wsbench`: one epoll thread, on the same 2 cores as the servers |")
    w("")
    w("MB = 10⁶ bytes of payload echoed back to the client per second (one direction). "
      "Latency: from handing a message to the socket to the arrival of the last byte of "
      "its echo. \"Server CPU\" is the relay's own CPU time over the measured window "
      "(for direct TCP: the echo server's): the run time of all its threads from "
      "`/proc/PID/task/*/schedstat`, plus its reaped children's `cutime`+`cstime`, plus the "
      "same for its live children (websockify forks one per connection); \"MB per server "
      "CPU-s\" divides the echoed bytes by it. \"echo CPU\" is the backend's share in the "
      "relayed runs; \"client CPU\" is wsbench's own.")
    w("")

    # Overview: one row per scenario.
    w("## Overview")
    w("")
    w("| scenario | direct TCP MB/s | websockify MB/s | wsgate MB/s | websockify ÷ TCP "
      "| wsgate ÷ TCP | wsgate ÷ websockify |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for sc in order:
        t, k, g = (get(sc, x, "mb_per_s") for x, _ in TARGETS)
        label = SCENARIOS.get(sc, (sc, None))[0].split(": ", 1)[-1]
        if sc.startswith("lat"):
            t, k, g = (get(sc, x, "p50_us") for x, _ in TARGETS)
            w("| %s — **p50 µs** | %s | %s | %s | %s | %s | %s |"
              % (label, usec(t), usec(k), usec(g), fmt_ratio(ratio(k, t)),
                 fmt_ratio(ratio(g, t)), fmt_ratio(ratio(g, k))))
            continue
        w("| %s | %s | %s | %s | %s | %s | %s |"
          % (label, num(t), num(k), num(g), fmt_ratio(ratio(k, t)), fmt_ratio(ratio(g, t)),
             fmt_ratio(ratio(g, k))))
    w("")
    w("Throughput ratios above 1 favour the numerator; in the latency row (round-trip "
      "time) a ratio below 1 favours the numerator.")
    w("")

    for sc in order:
        title = SCENARIOS.get(sc, (sc, None))[0]
        w("## %s (`%s`)" % (title, sc))
        w("")
        w("| target | msgs/s | MB/s | MB/s over rounds | p50 µs | p99 µs | p99.9 µs "
          "| p50 over rounds | × direct TCP | errors | server CPU s | MB per server CPU-s "
          "| echo CPU s | client CPU s |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
        base = get(sc, "tcp", "mb_per_s")
        for tgt, label in TARGETS:
            r = runs.get((sc, tgt))
            if r is None:
                w("| %s | no result (wsbench gave no output) | | | | | | | | | | | | |" % label)
                continue
            rounds = all_rounds[(sc, tgt)]
            cpu = r["cpu_s"].get("server")
            echo_cpu = r["cpu_s"].get("echo") if tgt != "tcp" else None
            mb_cpu = (r["bytes"] / 1e6 / cpu) if cpu and cpu > 0 else None
            w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
              % (label, num(r["msgs_per_s"]), num(r["mb_per_s"]),
                 spread(rounds, "mb_per_s", num), usec(r["p50_us"]),
                 usec(r["p99_us"]), usec(r["p999_us"]), spread(rounds, "p50_us", usec),
                 fmt_ratio(ratio(r["mb_per_s"], base)), errors_cell(rounds),
                 "%.2f" % cpu if cpu is not None else "—", num(mb_cpu),
                 "%.2f" % echo_cpu if echo_cpu is not None else "—",
                 "%.2f" % r["client_cpu_s"]))
        g, k = runs.get((sc, "wsgate")), runs.get((sc, "websockify"))
        if g and k:
            def eff(r):
                c = r["cpu_s"].get("server")
                return r["bytes"] / c if c and c > 0 else None
            w("| **wsgate ÷ websockify** | %s | %s | | %s | %s | %s | | | | %s | %s | | |"
              % (fmt_ratio(ratio(g["msgs_per_s"], k["msgs_per_s"])),
                 fmt_ratio(ratio(g["mb_per_s"], k["mb_per_s"])),
                 fmt_ratio(ratio(g["p50_us"], k["p50_us"])),
                 fmt_ratio(ratio(g["p99_us"], k["p99_us"])),
                 fmt_ratio(ratio(g["p999_us"], k["p999_us"])),
                 fmt_ratio(ratio(g["cpu_s"].get("server"), k["cpu_s"].get("server"))),
                 fmt_ratio(ratio(eff(g), eff(k)))))
        w("")

    sel = int(a.websockify_select_errors or 0)
    if sel:
        w("websockify logged `filedescriptor out of range in select()` %d times in this run: "
          "it waits with `select()`, which cannot watch descriptor numbers of 1024 or more, "
          "so connections whose sockets land there are dropped. Those are the errors "
          "counted above, left as they are (summed over all rounds)." % sel)
        w("")

    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(out))

    # The plot's table: throughput scenarios only, NaN where a run produced nothing.
    # Prints the plot's y-axis floor, the power of ten below the smallest bar, for run.sh.
    smallest = None
    with open(os.path.join(a.out, "throughput.dat"), "w") as f:
        f.write("# scenario tcp websockify wsgate (MB/s)\n")
        for sc in order:
            short = SCENARIOS.get(sc, (None, sc))[1]
            if short is None:
                continue
            vals = []
            for tgt, _ in TARGETS:
                v = get(sc, tgt, "mb_per_s")
                vals.append("%.4f" % v if v else "NaN")
                if v and (smallest is None or v < smallest):
                    smallest = v
            f.write('"%s" %s\n' % (short, " ".join(vals)))
    print(10 ** math.floor(math.log10(smallest)) if smallest else 0.1)


if __name__ == "__main__":
    main()

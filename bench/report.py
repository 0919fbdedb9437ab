#!/usr/bin/env python3
"""bench/report.py - turns one run's wsbench JSON lines into docs/benchmarks/results.md.

Called by bench/run.sh, and with --fanout by bench/fanout.sh (see fanout_main: the MQTT
fan-out section of results.md, kept between markers so each script can rerun alone).
Every figure is shown beside the same run's baselines (direct TCP
to the echo server, websockify, the Go and Node relays) as a ratio, because the machine is shared and noisy: the
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
TARGETS = [("tcp", "direct TCP"), ("websockify", "websockify"), ("wsgate", "wsgate"),
           ("wsgate2", "wsgate, 2 workers"), ("go", "Go relay (gorilla/websocket)"),
           ("node", "Node relay (ws)")]
# The peers wsgate is compared with in every scenario: (target, label in ratios).
PEERS = [("tcp", "TCP"), ("websockify", "websockify"), ("go", "Go"), ("node", "Node")]


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
    if 0 < r < 0.01:
        return "%.2g×" % r
    return "%.2f×" % r if r < 10 else "%.1f×" % r


def per_msg(v):
    """A small per-message figure (page faults), to 3 significant digits, never 1e-05."""
    if v is None:
        return "—"
    if v == 0:
        return "0"
    decimals = min(7, max(0, 2 - math.floor(math.log10(abs(v)))))
    return "{:,.{}f}".format(v, decimals)


def cpu_us_per_msg(r):
    """The relay's (for direct TCP: the echo server's) CPU µs per echoed message."""
    cpu = r["cpu_s"].get("server") if r else None
    if cpu is None or cpu < 0 or not r.get("msgs"):
        return None
    return cpu * 1e6 / r["msgs"]


def faults_per_msg(r):
    """The relay's page faults (minor + major) per echoed message; None where the run
    predates the count or the process was gone at either end of the window."""
    f = r.get("faults", {}).get("server") if r else None
    if f is None or f < 0 or not r.get("msgs"):
        return None
    return f / r["msgs"]


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
    ap.add_argument("--fanout", help="fan-out mode: bench/fanout.sh's fanout.jsonl")
    ap.add_argument("--server-log", action="append", default=[],
                    help="fan-out mode: NAME=FILE, the tail of a server's log")
    ap.add_argument("--results")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds")
    ap.add_argument("--rounds")
    ap.add_argument("--warmup")
    ap.add_argument("--commit")
    ap.add_argument("--date", help="when the run started (default: now)")
    ap.add_argument("--wsgate-version", default="unknown")
    ap.add_argument("--build-type", default="unknown")
    ap.add_argument("--websockify-version", default="unknown")
    ap.add_argument("--websockify-numpy", default="unknown")
    ap.add_argument("--websockify-select-errors", default="0")
    ap.add_argument("--go-version", default="unknown")
    ap.add_argument("--node-version", default="unknown")
    ap.add_argument("--idle-hold", default="2")
    ap.add_argument("--idle-websockify", default="1000")
    a = ap.parse_args()
    if a.fanout:
        fanout_main(a)
        return
    for need in ("results", "seconds", "rounds", "warmup", "commit"):
        if getattr(a, need) is None:
            ap.error("--%s is required" % need)

    all_rounds = {}  # (scenario, target) -> [result or None, one per round]
    order = []
    idle = []  # the idle scenarios' records, in run order
    with open(a.results) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if rec["scenario"].startswith("idle-"):
                idle.append(rec)
                continue
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
    w("| Go relay | `bench/relays/go/relay.go`: %s; a goroutine per direction, 64 KiB "
      "buffers |" % a.go_version)
    w("| Node relay | `bench/relays/node/relay.js`: %s; pauses the side it cannot write to |"
      % a.node_version)
    w("| Backend | `wsgate-echo` (one epoll thread), shared by all the targets |")
    w("| Per scenario | %s rounds; each round runs the targets in turn (a different one "
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
      "CPU-s\" divides the echoed bytes by it, \"CPU µs/msg\" is it per echoed message (each "
      "crosses the relay both ways). \"Faults/msg\": the page faults (minor + major, "
      "`/proc/PID/stat`, the process and its children) the same process took over the "
      "window, per echoed message. \"echo CPU\" is the backend's share in the "
      "relayed runs; \"client CPU\" is wsbench's own.")
    w("")

    # Overview: one row per scenario, every target, then wsgate against each peer.
    names = {"tcp": "direct TCP", "websockify": "websockify", "wsgate": "wsgate",
             "wsgate2": "wsgate 2 workers", "go": "Go", "node": "Node"}
    w("## Overview")
    w("")
    w("| scenario | %s | websockify ÷ TCP | wsgate ÷ TCP | wsgate 2w ÷ TCP | %s |"
      % (" | ".join("%s MB/s" % names[t] for t, _ in TARGETS),
         " | ".join("wsgate ÷ %s" % p for _, p in PEERS[1:])))
    w("|---|" + "---:|" * (len(TARGETS) + 2 + len(PEERS)))
    for sc in order:
        label = SCENARIOS.get(sc, (sc, None))[0].split(": ", 1)[-1]
        rows = [("mb_per_s", label, num)]
        if sc.startswith("lat"):
            rows = [("p50_us", label + " — **p50 µs**", usec),
                    ("p99_us", label + " — **p99 µs**", usec)]
        for key, text, fmt in rows:
            v = {t: get(sc, t, key) for t, _ in TARGETS}
            w("| %s | %s | %s | %s | %s | %s |"
              % (text, " | ".join(fmt(v[t]) for t, _ in TARGETS),
                 fmt_ratio(ratio(v["websockify"], v["tcp"])),
                 fmt_ratio(ratio(v["wsgate"], v["tcp"])),
                 fmt_ratio(ratio(v["wsgate2"], v["tcp"])),
                 " | ".join(fmt_ratio(ratio(v["wsgate"], v[p])) for p, _ in PEERS[1:])))
    w("")
    w("Throughput ratios above 1 favour the numerator; in the latency rows (round-trip "
      "time) a ratio below 1 favours the numerator.")
    w("")

    # What each message costs each relay: CPU and page faults, per scenario.
    w("## CPU and page faults per message")
    w("")
    w("Each cell: the relay's CPU µs / page faults per echoed message over the measured "
      "window of its median round (direct TCP: the echo server's). A message allocated and "
      "freed on pages the heap has just given back costs a fault or more per message; a "
      "relay that reuses its buffers takes almost none in steady state.")
    w("")
    w("| scenario | %s | faults/msg wsgate ÷ Go | faults/msg wsgate ÷ Node |"
      % " | ".join("%s µs / faults" % names[t] for t, _ in TARGETS))
    w("|---|" + "---:|" * (len(TARGETS) + 2))
    for sc in order:
        label = SCENARIOS.get(sc, (sc, None))[0].split(": ", 1)[-1]
        cells = []
        for t, _ in TARGETS:
            r = runs.get((sc, t))
            cells.append("—" if r is None else "%s / %s" % (usec(cpu_us_per_msg(r)),
                                                            per_msg(faults_per_msg(r))))
        g = faults_per_msg(runs.get((sc, "wsgate")))
        w("| %s | %s | %s | %s |"
          % (label, " | ".join(cells),
             fmt_ratio(ratio(g, faults_per_msg(runs.get((sc, "go"))))),
             fmt_ratio(ratio(g, faults_per_msg(runs.get((sc, "node")))))))
    w("")

    for sc in order:
        title = SCENARIOS.get(sc, (sc, None))[0]
        w("## %s (`%s`)" % (title, sc))
        w("")
        w("| target | msgs/s | MB/s | MB/s over rounds | p50 µs | p99 µs | p99.9 µs "
          "| p50 over rounds | × direct TCP | errors | server CPU s | MB per server CPU-s "
          "| server CPU µs/msg | server faults/msg | echo CPU s | client CPU s |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        base = get(sc, "tcp", "mb_per_s")
        for tgt, label in TARGETS:
            r = runs.get((sc, tgt))
            if r is None:
                w("| %s | no result (wsbench gave no output) | | | | | | | | | | | | | | |" % label)
                continue
            rounds = all_rounds[(sc, tgt)]
            cpu = r["cpu_s"].get("server")
            echo_cpu = r["cpu_s"].get("echo") if tgt != "tcp" else None
            mb_cpu = (r["bytes"] / 1e6 / cpu) if cpu and cpu > 0 else None
            w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
              % (label, num(r["msgs_per_s"]), num(r["mb_per_s"]),
                 spread(rounds, "mb_per_s", num), usec(r["p50_us"]),
                 usec(r["p99_us"]), usec(r["p999_us"]), spread(rounds, "p50_us", usec),
                 fmt_ratio(ratio(r["mb_per_s"], base)), errors_cell(rounds),
                 "%.2f" % cpu if cpu is not None else "—", num(mb_cpu),
                 usec(cpu_us_per_msg(r)), per_msg(faults_per_msg(r)),
                 "%.2f" % echo_cpu if echo_cpu is not None else "—",
                 "%.2f" % r["client_cpu_s"]))
        g = runs.get((sc, "wsgate"))

        def eff(r):
            c = r["cpu_s"].get("server")
            return r["bytes"] / c if c and c > 0 else None
        for peer, peer_label in PEERS[1:]:  # direct TCP has its own column
            k = runs.get((sc, peer))
            if not g or not k:
                continue
            w("| **wsgate ÷ %s** | %s | %s | | %s | %s | %s | | | | %s | %s | %s | %s | | |"
              % (peer_label, fmt_ratio(ratio(g["msgs_per_s"], k["msgs_per_s"])),
                 fmt_ratio(ratio(g["mb_per_s"], k["mb_per_s"])),
                 fmt_ratio(ratio(g["p50_us"], k["p50_us"])),
                 fmt_ratio(ratio(g["p99_us"], k["p99_us"])),
                 fmt_ratio(ratio(g["p999_us"], k["p999_us"])),
                 fmt_ratio(ratio(g["cpu_s"].get("server"), k["cpu_s"].get("server"))),
                 fmt_ratio(ratio(eff(g), eff(k))),
                 fmt_ratio(ratio(cpu_us_per_msg(g), cpu_us_per_msg(k))),
                 fmt_ratio(ratio(faults_per_msg(g), faults_per_msg(k)))))
        w("")

    sel = int(a.websockify_select_errors or 0)
    if sel:
        w("websockify logged `filedescriptor out of range in select()` %d times in this run: "
          "it waits with `select()`, which cannot watch descriptor numbers of 1024 or more, "
          "so connections whose sockets land there are dropped. Those are the errors "
          "counted above, left as they are (summed over all rounds)." % sel)
        w("")

    if idle:
        idle_section(w, idle, a)

    # The fan-out section comes from bench/fanout.sh's own run: keep it as it was.
    md = os.path.join(a.out, "results.md")
    kept = fanout_section_of(md)
    with open(md, "w") as f:
        f.write("\n".join(out))
        if kept:
            f.write("\n" + kept)

    # The plot's table: throughput scenarios only, NaN where a run produced nothing.
    # Prints the plot's y-axis floor, the power of ten below the smallest bar, for run.sh.
    smallest = None
    with open(os.path.join(a.out, "throughput.dat"), "w") as f:
        f.write("# scenario %s (MB/s)\n" % " ".join(t for t, _ in TARGETS))
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


# --- idle connections (run.sh's idle-10k, idle-50k) -------------------------------------

def kib_per_conn(r, label, key):
    """Growth of a --mem-pid tree's memory over the run, KiB per connection held."""
    if r is None or not r.get("conns_at_end"):
        return None
    m = r.get("mem", {}).get(label)
    if not m or not m.get(key + "1"):
        return None
    return (m[key + "1"] - m[key + "0"]) / r["conns_at_end"]


def kib(v):
    if v is None:
        return "—"
    return "{:,.0f}".format(v) if v >= 100 else "%.2f" % v


def idle_section(w, idle, a):
    w("## Idle connections (`idle-10k`, `idle-50k`)")
    w("")
    w("Each target gets a fresh backend (`wsgate-echo`) and, for websockify and wsgate, a "
      "fresh relay in front of it, so what they grow by is the connections alone. "
      "`wsbench --idle` reads their memory, opens N connections (direct TCP: plain "
      "connections to `wsgate-echo`; websockify and wsgate: completed WebSocket handshakes "
      "to the relay, each of which opens a backend connection to `wsgate-echo`), at most "
      "256 under way at once, holds them %s s without sending anything, and reads the "
      "memory again. **Connect rate**: connections ready ÷ the time from the first "
      "`connect()` to the last one ready. **Server memory per connection**: growth of the "
      "server's resident memory ÷ connections still open at the end, from "
      "`/proc/PID/status` (RSS) and `/proc/PID/smaps_rollup` (PSS), summed over the "
      "process and its children (websockify forks one per connection). RSS counts a page "
      "shared by several processes once in each, and websockify's forked children share "
      "most of their pages, so for websockify only the **PSS** sum is what the machine "
      "pays; for one process the two are the same. The ratios use PSS. For direct TCP the "
      "server *is* the backend (no relay, just an echo server's per-socket cost); in the "
      "relayed runs the backend's own growth is its own column. User-space memory only: "
      "the kernel's socket structures are in neither." % a.idle_hold)
    w("")
    w("| scenario | target | N asked | N held | connect rate conns/s | connect time s "
      "| server RSS growth per conn KiB | server PSS growth per conn KiB | server processes "
      "| backend (wsgate-echo) RSS growth per conn KiB | errors |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    notes = []
    by = {}
    for rec in idle:
        r = rec["result"]
        by[(rec["scenario"], rec["target"])] = rec
        label = dict(TARGETS)[rec["target"]]
        if r is None:
            w("| `%s` | %s | %s | — | no result (wsbench gave no output) | | | | | | |"
              % (rec["scenario"], label, "{:,}".format(rec["asked"])))
            continue
        asked = "{:,}".format(rec["asked"])
        if rec["n"] < rec["asked"]:
            asked = "{:,} → **{:,}**".format(rec["asked"], rec["n"])
        kinds = ["%d %s" % (v, k) for k, v in r["error_kinds"].items() if v]
        err = "0" if not r["errors"] else "**%d** (%s)" % (r["errors"], ", ".join(kinds))
        procs = r.get("mem", {}).get("server", {}).get("procs1")
        w("| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
          % (rec["scenario"], label, asked, "{:,}".format(r["conns_at_end"]),
             num(r["conns_per_s"]), "%.2f" % r["connect_s"],
             kib(kib_per_conn(r, "server", "rss_kb")), kib(kib_per_conn(r, "server", "pss_kb")),
             "{:,}".format(procs) if procs else "—",
             kib(kib_per_conn(r, "echo", "rss_kb")) if rec["target"] != "tcp" else "(is the server)",
             err))
        if rec["limited"] == "fd":
            why = {"tcp": "wsbench and wsgate-echo hold one descriptor per connection",
                   "wsgate": "wsgate holds two per bridged connection, client and backend, "
                             "and keeps 16 + 1 % of its limit free",
                   "websockify": "one descriptor per connection in wsbench"}[rec["target"]]
            notes.append("`%s`, %s: **%s not possible here: hard RLIMIT_NOFILE %d allows "
                         "%s** (%s; a few more kept back for the processes' own); this run "
                         "asked for %s."
                         % (rec["scenario"], label, "{:,}".format(rec["asked"]), rec["fd_hard"],
                            "{:,}".format(rec["n"]), why, "{:,}".format(rec["n"])))
        elif rec["limited"] == "cap":
            held = r["conns_at_end"]
            text = ("`%s`, websockify: **asked for %s only** (`BENCH_IDLE_WEBSOCKIFY`): it "
                    "forks a Python process per connection; connections not ready within "
                    "20 s would count as errors."
                    % (rec["scenario"], "{:,}".format(rec["n"])))
            if rec.get("select_errors"):
                text += (" It held %s: it logged `filedescriptor out of range in select()` "
                         "%d times, dropping each connection whose socket got a descriptor "
                         "number of 1024 or more (it waits with `select()`), so about 500 "
                         "is as many as it can hold however many are asked."
                         % ("{:,}".format(held), rec["select_errors"]))
            notes.append(text)
    scs = []
    for rec in idle:
        if rec["scenario"] not in scs:
            scs.append(rec["scenario"])
    for sc in scs:
        g = by.get((sc, "wsgate"), {}).get("result")
        for base_t, base_label in (("websockify", "websockify"), ("tcp", "direct TCP")):
            b = by.get((sc, base_t), {}).get("result")
            if g is None or b is None:
                continue
            w("| `%s` | **wsgate ÷ %s** | | | %s | | | %s | | %s | |"
              % (sc, base_label, fmt_ratio(ratio(g["conns_per_s"], b["conns_per_s"])),
                 fmt_ratio(ratio(kib_per_conn(g, "server", "pss_kb"),
                                 kib_per_conn(b, "server", "pss_kb"))),
                 fmt_ratio(ratio(kib_per_conn(g, "echo", "rss_kb"),
                                 kib_per_conn(b, "echo", "rss_kb")))
                 if base_t != "tcp" else "—"))
    w("")
    w("A connect-rate ratio above 1 favours wsgate; a memory ratio below 1 does (against "
      "direct TCP it is what the relay costs per connection over a bare echo server's "
      "socket).")
    w("")
    for n in notes:
        w("- " + n)
    if notes:
        w("")


# --- MQTT fan-out (bench/fanout.sh) ----------------------------------------------------

FANOUT_START = "<!-- fanout: written by bench/fanout.sh -->"
FANOUT_END = "<!-- /fanout -->"
FANOUT_TARGETS = [("mosquitto", "mosquitto WebSocket listener"), ("wsgate", "wsgate mqtt route")]


def fanout_section_of(md):
    """The fan-out section of an existing results.md, markers included, or None."""
    try:
        with open(md) as f:
            text = f.read()
    except OSError:
        return None
    i, j = text.find(FANOUT_START), text.find(FANOUT_END)
    if i < 0 or j < i:
        return None
    return text[i:j + len(FANOUT_END)] + "\n"


def ms(v):
    if v is None:
        return "—"
    v = v / 1000.0
    return "{:,.0f}".format(v) if v >= 100 else ("%.1f" % v if v >= 10 else "%.2f" % v)


def loss_cell(r):
    if r is None:
        return "—"
    if r["expected"] == 0:
        return "—"
    if r["lost"] == 0:
        return "0"
    return "**%s of %s** (%.2f %%)" % ("{:,}".format(r["lost"]), "{:,}".format(r["expected"]),
                                       100.0 * r["lost"] / r["expected"])


def fanout_errors(rounds, subs):
    done = [r for r in rounds if r is not None]
    failed = len(rounds) - len(done)
    n = sum(r["errors"] for r in done)
    parts = []
    kinds = {}
    for r in done:
        for k, v in r["error_kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    parts += ["%d %s" % (v, k) for k, v in kinds.items() if v]
    short = [r["subs_ok"] for r in done if r["subs_ok"] < subs]
    if short:
        parts.append("only %d of %d subscribers received" % (min(short), subs))
    stalls = sum(r.get("stalls", 0) for r in done)
    if stalls:
        parts.append("%d window stalls" % stalls)
    if failed:
        parts.append("%d rounds gave no result" % failed)
    if n == 0 and not parts:
        return "0"
    return "**%d** (%s)" % (n, "; ".join(parts))


def fanout_main(a):
    meta, all_rounds, order, paced = {}, {}, [], {}
    with open(a.fanout) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if "meta" in rec:
                meta = rec["meta"]
                continue
            if rec["subs"] not in order:
                order.append(rec["subs"])
            if rec.get("paced"):
                paced[(rec["subs"], rec["target"])] = rec["result"]
                continue
            all_rounds.setdefault((rec["subs"], rec["target"]), []).append(rec["result"])

    def median(rounds):
        done = sorted((r for r in rounds if r is not None and r.get("deliveries_per_s")),
                      key=lambda r: r["deliveries_per_s"])
        return done[(len(done) - 1) // 2] if done else None

    runs = {k: median(v) for k, v in all_rounds.items()}

    def get(n, t, key):
        r = runs.get((n, t))
        return None if r is None else r.get(key)

    logs = {}
    for spec in a.server_log:
        name, _, path = spec.partition("=")
        try:
            with open(path) as f:
                logs[name] = f.read().strip()
        except OSError:
            pass

    out = []
    w = out.append
    w(FANOUT_START)
    w("## MQTT fan-out: mosquitto's WebSocket listener vs wsgate's mqtt route")
    w("")
    w("Generated by `bench/fanout.sh` (also run by `bench/run.sh`); method: "
      "[README.md](README.md#mqtt-fan-out). Plot: [fanout.png](fanout.png).")
    w("")
    w("| | |")
    w("|---|---|")
    w("| Date | %s |" % meta.get("date", "unknown"))
    w("| Machine | %d cores (nproc), %s, %s RAM, Linux %s — shared with other work, so "
      "compare ratios, not absolute numbers |"
      % (len(os.sched_getaffinity(0)), cpu_model(), mem_gib(), platform.release()))
    w("| Commit | `%s` |" % meta.get("commit", "unknown"))
    w("| wsgate | %s, %s build, `--log-level warn`, one raw mqtt route subscribed to "
      "`bench/fan` |" % (meta.get("wsgate_version", "unknown"), meta.get("build_type", "unknown")))
    w("| Broker | mosquitto %s (Debian), one process for both setups: `set_tcp_nodelay true`, "
      "`max_queued_messages 1000`, `max_inflight_messages 20` (2.0's defaults, written "
      "out), `persistence false` |" % meta.get("mosquitto_version", "unknown"))
    w("| Publisher | one MQTT 3.1.1 client over TCP, QoS 0, 64-byte ASCII payloads; at most "
      "*window* = clamp(%d ÷ subscribers, 2, 64) messages not yet received by every "
      "subscriber |" % meta.get("budget", 4096))
    w("| Per point | %s rounds; each round runs both setups in turn (a different one first "
      "each round), each with fresh connections, %s s warm-up + %s s measured; figures from "
      "the median round by deliveries/s, errors summed over all rounds |"
      % (meta.get("rounds", "?"), meta.get("warmup", "?"), meta.get("seconds", "?")))
    w("| Client | `bench/fanout`: publisher and all subscribers on one epoll thread, on the "
      "same 2 cores as broker and gateway; descriptor limit %s |" % meta.get("fd_limit", "?"))
    w("")
    w("Deliveries/s: 64-byte messages received per second by all subscribers together. "
      "Latency: from the publisher handing a message to its socket to a subscriber having "
      "parsed it (one clock, one machine), over every delivery in the measured window; with "
      "many subscribers it is mostly the time the server takes to reach them all. Lost: "
      "of the messages published in the window, published × subscribers minus those "
      "delivered by the end (QoS 0: a broker or gateway may drop).")
    w("")
    w("| subscribers | mosquitto-ws deliveries/s | wsgate deliveries/s | wsgate ÷ mosquitto "
      "| p99 mosquitto-ws ms | p99 wsgate ms | lost mosquitto-ws | lost wsgate |")
    w("|---:|---:|---:|---:|---:|---:|---|---|")
    for n in order:
        m, g = get(n, "mosquitto", "deliveries_per_s"), get(n, "wsgate", "deliveries_per_s")
        w("| %s | %s | %s | %s | %s | %s | %s | %s |"
          % ("{:,}".format(n), num(m), num(g), fmt_ratio(ratio(g, m)),
             ms(get(n, "mosquitto", "p99_us")), ms(get(n, "wsgate", "p99_us")),
             loss_cell(runs.get((n, "mosquitto"))), loss_cell(runs.get((n, "wsgate")))))
    w("")
    if paced:
        w("### Latency at the same load: %s deliveries/s on both"
          % "{:,}".format(meta.get("paced", 0)))
        w("")
        w("One more round per point and setup, the publisher paced at %s ÷ N messages/s "
          "(in steps of 1 ms) with a window that never binds, so both servers carry the "
          "same load and the latency is no longer that of a saturated queue."
          % "{:,}".format(meta.get("paced", 0)))
        w("")
        w("| subscribers | published/s | mosquitto-ws deliveries/s | wsgate deliveries/s "
          "| p50 ms mosquitto-ws | p50 ms wsgate | p99 ms mosquitto-ws | p99 ms wsgate "
          "| p99 wsgate ÷ mosquitto | server CPU s mosquitto-ws | server CPU s wsgate "
          "| lost mosquitto-ws | lost wsgate |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for n in order:
            m, g = paced.get((n, "mosquitto")), paced.get((n, "wsgate"))
            if m is None and g is None:
                continue
            pget = lambda r, k: None if r is None else r.get(k)
            cpu = lambda r: None if r is None else r["cpu_s"].get("server")
            w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
              % ("{:,}".format(n), num(pget(g or m, "published_per_s")),
                 num(pget(m, "deliveries_per_s")), num(pget(g, "deliveries_per_s")),
                 ms(pget(m, "p50_us")), ms(pget(g, "p50_us")), ms(pget(m, "p99_us")),
                 ms(pget(g, "p99_us")), fmt_ratio(ratio(pget(g, "p99_us"), pget(m, "p99_us"))),
                 "%.2f" % cpu(m) if cpu(m) is not None else "—",
                 "%.2f" % cpu(g) if cpu(g) is not None else "—", loss_cell(m), loss_cell(g)))
        w("")
    w("### Details")
    w("")
    w("| subscribers | setup | window | deliveries/s | over rounds | published/s "
      "| p50 ms | p99 ms | p99.9 ms | lost | errors | server CPU s | broker CPU s "
      "| deliveries per server CPU-s | client CPU s |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|")
    for n in order:
        for t, label in FANOUT_TARGETS:
            rounds = all_rounds.get((n, t), [])
            r = runs.get((n, t))
            if r is None:
                w("| %s | %s | | no result | | | | | | | %s | | | | |"
                  % ("{:,}".format(n), label, fanout_errors(rounds, n)))
                continue
            cpu = r["cpu_s"].get("server")
            broker = r["cpu_s"].get("broker") if t == "wsgate" else cpu
            secs = r.get("seconds") or 0
            eff = r["deliveries"] / cpu if cpu and cpu > 0 else None
            w("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
              % ("{:,}".format(n), label, r["window"], num(r["deliveries_per_s"]),
                 spread(rounds, "deliveries_per_s", num), num(r["published_per_s"]),
                 ms(r["p50_us"]), ms(r["p99_us"]), ms(r["p999_us"]), loss_cell(r),
                 fanout_errors(rounds, n), "%.2f" % cpu if cpu is not None else "—",
                 "%.2f" % broker if broker is not None else "—", num(eff),
                 "%.2f" % r["client_cpu_s"]))
    w("")
    w("Server CPU: the run time of all the server's threads over the measured window "
      "(mosquitto for its own listener; wsgate, Paho's threads included, for the route — its "
      "broker's share is the next column). Deliveries per server CPU-s divides the "
      "window's deliveries by it.")
    w("")
    for name, text in logs.items():
        if text:
            w("%s logged (last lines):" % name)
            w("")
            w("```")
            w(text)
            w("```")
            w("")
    w(FANOUT_END)

    md = os.path.join(a.out, "results.md")
    try:
        with open(md) as f:
            text = f.read()
    except OSError:
        text = "# wsgate benchmark results\n\n"
    i, j = text.find(FANOUT_START), text.find(FANOUT_END)
    section = "\n".join(out) + "\n"
    if i >= 0 and j > i:
        text = text[:i] + section + text[j + len(FANOUT_END):].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(md, "w") as f:
        f.write(text)

    with open(os.path.join(a.out, "fanout.dat"), "w") as f:
        f.write("# subscribers mosquitto_dps wsgate_dps mosquitto_p99_ms wsgate_p99_ms\n")
        for n in order:
            vals = []
            for key, scale in (("deliveries_per_s", 1.0), ("p99_us", 1000.0)):
                for t, _ in FANOUT_TARGETS:
                    v = get(n, t, key)
                    vals.append("%.4f" % (v / scale) if v else "NaN")
            f.write("%d %s\n" % (n, " ".join(vals)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/profile_report.py - bench/profile.sh's summary: per echoed message, wsgate's
user-space instructions by group and function (callgrind, part 2 minus part 1 = M
messages), its system calls (perf stat, run 2 minus run 1) and its time shares, kernel
included (perf record). Prints markdown."""
import argparse
import collections
import json
import os
import re
import subprocess

CASES = [("64B-100c", "64 B messages, 100 connections, 16 in flight each", "m64"),
         ("64K-100c", "64 KiB messages, 100 connections, 2 in flight each", "m64k")]


# libwebsockets 4.1.6-3 (Debian, amd64) is stripped of its static functions: these were
# named by the source file and the log and assert strings each one references.
LWS_STATIC = {
    "0x00000000000427b0": "lws_parse_ws (server-ws.c; unmasks the payload, 4 bytes a step)",
    "0x000000000003df10": "lws_ws_rx_sm (ops-ws.c; frame header state machine, per byte)",
    "0x0000000000023aa0": "_lws_change_pollfd (pollfd.c)",
    "0x0000000000024320": "lws_callback_on_writable internals (pollfd.c)",
    "0x0000000000026200": "lws_ensure_user_space / role code (core-net)",
    "0x00000000000436e0": "lws_issue_raw_ext_access (output path)",
}


def fn_label(fn):
    return LWS_STATIC.get(fn, fn)


def parse_callgrind(path):
    """Self cost per (object, function): {(ob, fn): [Ir, sysCount]}, and the inclusive
    cost of calls: {callee fn: {(ob, caller fn): Ir}}."""
    names = {"ob": {}, "fl": {}, "fn": {}}
    kind_of = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
               "cfl": "fl", "fn": "fn", "cfn": "fn"}
    events = []
    cost = collections.defaultdict(lambda: [0, 0])
    calls = collections.defaultdict(lambda: collections.defaultdict(int))
    ob = fn = cfn = None
    skip_next = False
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip_next:  # the inclusive cost of a call: not this function's own
                    skip_next = False
                    parts = line.split()
                    if len(parts) > 1 and events and events[0] == "Ir":
                        calls[cfn][(ob, fn)] += int(parts[1])
                    continue
                parts = line.split()
                vals = [int(x) for x in parts[1:]]
                key = (ob, fn)
                for i, name in enumerate(events):
                    if i < len(vals):
                        if name == "Ir":
                            cost[key][0] += vals[i]
                        elif name == "sysCount":
                            cost[key][1] += vals[i]
                continue
            if line.startswith("events:"):
                events = line.split()[1:]
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            m = re.match(r"^(ob|cob|fl|fi|fe|cfi|cfl|fn|cfn)=(?:\((\d+)\))?\s*(.*)$", line)
            if not m:
                continue
            tag, ident, name = m.groups()
            space = names[kind_of[tag]]
            if ident is not None:
                if name:
                    space[ident] = name
                name = space.get(ident, "?")
            if tag == "ob":
                ob = name
            elif tag == "fn":
                fn = name
            elif tag == "cfn":
                cfn = name
    return cost, calls


MEM = re.compile(r"mem(cpy|move|set|cmp|chr|rchr)|__memmove|__memcpy|__memset|wmemset")
MALLOC = re.compile(r"^(malloc|free|calloc|realloc|cfree|__libc_(malloc|free|calloc|realloc)|"
                    r"_int_(malloc|free|realloc)|tcache_\w+|unlink_chunk|malloc_consolidate|"
                    r"sysmalloc|_int_free_\w+|arena_get2|malloc_trim|__malloc_\w+)")


def group_of(ob, fn):
    base = os.path.basename(ob or "?")
    fn = fn or "?"
    if base.startswith("libwebsockets"):
        return "libwebsockets"
    if base == "wsgate":
        return "wsgate's own code"
    if "clock_gettime" in fn:
        return "clock_gettime (libc)"
    if base.startswith("libc.so") or base.startswith("libc-"):
        if MEM.search(fn):
            return "libc: memcpy/memmove/memset"
        if MALLOC.search(fn):
            return "libc: malloc/free"
        return "libc: other (syscall wrappers, stdio, ...)"
    if base.startswith("ld-linux") or base.startswith("ld-"):
        return "dynamic loader"
    return "other: " + base


def diff_costs(c1, c2):
    out = {}
    for k in set(c1) | set(c2):
        a, b = c1.get(k, [0, 0]), c2.get(k, [0, 0])
        out[k] = [b[0] - a[0], b[1] - a[1]]
    return out


def perf_stat(path):
    counts = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) < 3 or not parts[0] or parts[0].startswith("#"):
                    continue
                try:
                    counts[parts[2]] = int(parts[0])
                except ValueError:
                    pass
    except OSError:
        return None
    return counts


def wsbench(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


def perf_report(path, with_sym):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                if with_sym:
                    m = re.match(r"^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$", line)
                    if m:
                        rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4)))
                else:
                    m = re.match(r"^\s+([\d.]+)%\s+(\S+)\s*$", line)
                    if m:
                        rows.append((float(m.group(1)), m.group(2)))
    except OSError:
        pass
    return rows


KCOPY = re.compile(r"^(_copy_(from|to)_iter|copy_user\w*|rep_movs\w*|__check_object_size|"
                   r"\w*skb_copy_datagram\w*|__skb_datagram_iter|check_heap_object)$")
KPOLL = re.compile(r"^(sock_poll|tcp_poll|do_sys_poll|do_poll\w*|__x64_sys_poll|fdget|"
                   r"__pollwait|poll_freewait|add_wait_queue|remove_wait_queue|__fget_light)")
KMEM = re.compile(r"(page_fault|handle_mm_fault|clear_page|do_anonymous_page|unmap_page_range|"
                  r"memcg|zap_|free_pages|release_pages|folio|lru|__alloc_pages|get_page_from_"
                  r"freelist|rmqueue|do_user_addr_fault|__handle_mm_fault|mmap|munmap|brk|"
                  r"vma_)")
KSCHED = re.compile(r"(finish_task_switch|_raw_spin_unlock_irq|schedule|try_to_wake_up|"
                    r"wake_up|ttwu|enqueue_|dequeue_|pick_next|update_curr)")


def time_group(dso, sym, lws_names):
    if dso == "[kernel.kallsyms]":
        if KCOPY.search(sym):
            return "kernel: copying data to and from sockets"
        if KPOLL.search(sym):
            return "kernel: poll() over the sockets (sock_poll, tcp_poll, fdget)"
        if KMEM.search(sym):
            return "kernel: page faults and memory (malloc'd buffers touched, freed)"
        if KSCHED.search(sym):
            return "kernel: wake-ups, scheduling, interrupts let in (irqrestore)"
        return "kernel: TCP/IP, syscall entry, the rest"
    if dso.startswith("libwebsockets"):
        name = lws_names(sym)
        if name.startswith("lws_parse_ws"):
            return "libwebsockets: lws_parse_ws (unmasking)"
        if name in ("_lws_log", "_lws_logv"):
            return "libwebsockets: _lws_log (calls filtered at run time)"
        if name.startswith("lws_ws_rx_sm"):
            return "libwebsockets: lws_ws_rx_sm (frame headers)"
        return "libwebsockets: the rest"
    if dso == "wsgate":
        return "wsgate's own code"
    if dso == "[vdso]":
        return "clock_gettime (vDSO)"
    if dso.startswith("libc"):
        if MEM.search(sym):
            return "libc: memcpy/memmove"
        if MALLOC.search(sym):
            return "libc: malloc/free"
        return "libc: the rest (syscall wrappers)"
    return "other: " + dso


def lws_namer():
    """Maps an address in libwebsockets (perf shows its static functions as such) to the
    nearest function start below it: exported symbols and LWS_STATIC."""
    starts = []
    lib = None
    for cand in ("/usr/lib/x86_64-linux-gnu/libwebsockets.so.17",):
        if os.path.exists(cand):
            lib = cand
    if lib:
        try:
            out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True,
                                 text=True, check=False).stdout
            for line in out.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in "tTwW":
                    starts.append((int(parts[0], 16), parts[2]))
        except OSError:
            pass
    for addr, name in LWS_STATIC.items():
        starts.append((int(addr, 16), name))
    starts.sort()

    def name_of(sym):
        if not sym.startswith("0x"):
            return sym
        a = int(sym, 16)
        best = sym
        for start, name in starts:
            if start > a:
                break
            best = name
        return best
    return name_of


def fmt(v):
    if abs(v) >= 100:
        return "{:,.0f}".format(v)
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--m64", type=int, required=True)
    ap.add_argument("--m64k", type=int, required=True)
    a = ap.parse_args()
    d = a.dir
    w = print
    w("# wsgate profile: per echoed message")
    w("")
    w("Written by `bench/profile.sh` (%s)." % d)
    w("")
    for name, title, mkey in CASES:
        m = getattr(a, mkey)
        p1 = os.path.join(d, "callgrind.out.%s.1" % name)
        p2 = os.path.join(d, "callgrind.out.%s.2" % name)
        if not (os.path.exists(p1) and os.path.exists(p2)):
            continue
        w("## %s (`%s`), M = %s messages" % (title, name, "{:,}".format(m)))
        w("")
        for part in (1, 2):
            r = wsbench(os.path.join(d, "callgrind-%s-%d.wsbench" % (name, part)))
            if r:
                w("- callgrind run %d: wsbench echoed %s messages, %d errors, %s msgs/s "
                  "under callgrind" % (part, "{:,}".format(r["msgs"]), r["errors"],
                                       fmt(r["msgs_per_s"])))
        w("")
        c1, calls1 = parse_callgrind(p1)
        c2, calls2 = parse_callgrind(p2)
        cost = diff_costs(c1, c2)
        total = sum(v[0] for v in cost.values())
        groups = collections.defaultdict(lambda: [0, 0])
        for (ob, fn), v in cost.items():
            g = groups[group_of(ob, fn)]
            g[0] += v[0]
            g[1] += v[1]
        w("### User-space instructions per message (callgrind)")
        w("")
        w("Total: **%s instructions per message** (%s per payload byte)."
          % (fmt(total / m), fmt(total / m / (64 if name.startswith("64B") else 65536))))
        w("")
        wrappers = collections.defaultdict(int)
        for (ob, fn), v in cost.items():
            if v[1] and "clock_gettime" not in (fn or ""):
                wrappers[fn] += v[1]
        if wrappers:
            w("System calls under callgrind (valgrind makes `clock_gettime` one too: left "
              "out): %s per message (%s). The gateway runs 15–45 times slower under callgrind; "
              "where its reads find more queued there than at full speed, its per-call costs "
              "are spread over more messages: compare these counts with the native ones "
              "below. What it does per message and per byte is the same."
              % (fmt(sum(wrappers.values()) / m), ", ".join(
                  "`%s` %s" % (k, fmt(n / m)) for k, n in
                  sorted(wrappers.items(), key=lambda kv: -kv[1]) if n / m >= 0.005)))
            w("")
        w("| group | instructions/msg | share |")
        w("|---|---:|---:|")
        for g, v in sorted(groups.items(), key=lambda kv: -kv[1][0]):
            if v[0] / m < 0.05:
                continue
            w("| %s | %s | %.1f %% |" % (g, fmt(v[0] / m), 100.0 * v[0] / total))
        w("")
        w("| function | object | instructions/msg | share |")
        w("|---|---|---:|---:|")
        for (ob, fn), v in sorted(cost.items(), key=lambda kv: -kv[1][0])[:20]:
            w("| `%s` | %s | %s | %.1f %% |" % (fn_label(fn), os.path.basename(ob or "?"),
                                              fmt(v[0] / m), 100.0 * v[0] / total))
        w("")
        # Who calls the copies and the (runtime-filtered) log calls.
        for callee in sorted({fn for (_, fn) in cost
                              if fn and (MEM.search(fn) or fn in ("_lws_log", "_lws_logv"))}):
            a_, b_ = calls1.get(callee, {}), calls2.get(callee, {})
            rows = sorted(((b_.get(k, 0) - a_.get(k, 0), k) for k in set(a_) | set(b_)),
                          reverse=True)
            rows = [(n, k) for n, k in rows if n / m >= 1]
            if not rows:
                continue
            w("Callers of `%s` (inclusive instructions/msg): %s." % (callee, "; ".join(
                "`%s` %s" % (fn_label(k[1]), fmt(n / m)) for n, k in rows[:6])))
            w("")
        s1 = perf_stat(os.path.join(d, "perf-stat-%s-1.txt" % name))
        s2 = perf_stat(os.path.join(d, "perf-stat-%s-2.txt" % name))
        if s1 and s2:
            w("### System calls per message (native, perf stat)")
            w("")
            w("| syscall | per message | messages per call |")
            w("|---|---:|---:|")
            rows = []
            for ev in s2:
                n = s2[ev] - s1.get(ev, 0)
                if n <= 0:
                    continue
                label = "**all**" if ev == "raw_syscalls:sys_enter" else \
                    ev.replace("syscalls:sys_enter_", "")
                rows.append((ev != "raw_syscalls:sys_enter", -n, label, n))
            for _, _, label, n in sorted(rows):
                w("| %s | %s | %s |" % (label, fmt(n / m), fmt(m / n)))
            w("")
        dso = perf_report(os.path.join(d, "perf-report-%s-dso.txt" % name), False)
        sym = perf_report(os.path.join(d, "perf-report-%s-sym.txt" % name), True)
        if dso:
            w("### Where the time goes, kernel included (native, perf record -e cpu-clock)")
            w("")
            w("| DSO | share of samples |")
            w("|---|---:|")
            for pct, name_ in dso:
                if pct >= 0.5:
                    w("| %s | %.1f %% |" % (name_, pct))
            w("")
        us = None
        rg = wsbench(os.path.join(d, "perf-record-%s.wsbench" % name))
        rt = wsbench(os.path.join(d, "direct-%s.wsbench" % name))
        if rg and rg.get("msgs") and rg["cpu_s"].get("server", -1) > 0:
            us = rg["cpu_s"]["server"] / rg["msgs"] * 1e6
            w("Native, in this run (perf attached to wsgate): wsgate echoed %s msgs/s (%s MB/s) "
              "using %.2f of its CPU-s per measured second: **%s µs of wsgate CPU per "
              "message**." % (fmt(rg["msgs_per_s"]), fmt(rg["mb_per_s"]),
                              rg["cpu_s"]["server"] / rg["seconds"], fmt(us)))
            if rt and rt.get("msgs") and rt["cpu_s"].get("server", -1) > 0:
                ue = rt["cpu_s"]["server"] / rt["msgs"] * 1e6
                w("The same load straight to `wsgate-echo` (direct TCP): %s msgs/s (%s MB/s), "
                  "**%s µs of the echo server's CPU per message**; wsgate ÷ direct TCP "
                  "%.2f× in throughput, wsgate's CPU per message %.1f× the echo server's."
                  % (fmt(rt["msgs_per_s"]), fmt(rt["mb_per_s"]), fmt(ue),
                     rg["msgs_per_s"] / rt["msgs_per_s"], us / ue))
            w("")
        if sym:
            names = lws_namer()
            tg = collections.defaultdict(float)
            for pct, dso_, _, s_ in sym:
                tg[time_group(dso_, s_, names)] += pct
            w("| group (by symbol) | share of samples | ns of wsgate CPU per message |")
            w("|---|---:|---:|")
            for g, pct in sorted(tg.items(), key=lambda kv: -kv[1]):
                if pct >= 0.3:
                    w("| %s | %.1f %% | %s |" % (g, pct, fmt(us * pct * 10) if us else "—"))
            w("")
            w("libwebsockets' static functions are named by the nearest known start below the "
              "sampled address (its exported symbols and the table in "
              "`bench/profile_report.py`).")
            w("")
            w("| symbol | DSO | share |")
            w("|---|---|---:|")
            for pct, dso_, _, s_ in sym[:25]:
                label = names(s_) if dso_.startswith("libwebsockets") else s_
                if label != s_:
                    label = "%s (%s)" % (s_, label.split(" (")[0])
                w("| `%s` | %s | %.1f %% |" % (label, dso_, pct))
            w("")


if __name__ == "__main__":
    main()

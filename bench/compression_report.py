#!/usr/bin/env python3
"""bench/compression_report.py - turns run.sh's json-100c lines into compression.md.

json-100c echoes a JSON stream (100 connections, ~200-byte text messages, 4 in flight
each) through each target with and without permessage-deflate. Like report.py, a
target's figures are those of its median round (by messages/s), its errors the sum over
all rounds. Wire bytes are what wsbench read and wrote on its sockets over the measured
window (frame headers and masks included, TCP/IP headers not); per message means per
payload message of the stream, whatever frames the relay cut the echo into.
"""
import argparse
import json

TARGETS = [("websockify", "websockify (no compression; binary messages)"),
           ("wsgate", "wsgate"), ("wsgate-deflate", "wsgate, `\"compression\": true`"),
           ("go", "Go relay"), ("go-deflate", "Go relay, EnableCompression"),
           ("node", "Node relay"), ("node-deflate", "Node relay, perMessageDeflate")]


def median_round(results):
    ok = [r for r in results if r]
    if not ok:
        return None
    ok.sort(key=lambda r: r["msgs_per_s"])
    return ok[len(ok) // 2]


def main():
    ap = argparse.ArgumentParser()
    for a in ("results", "out", "seconds", "rounds", "commit", "date", "go-version",
              "node-version"):
        ap.add_argument("--" + a, required=True)
    args = ap.parse_args()
    rounds = {}
    with open(args.results) as f:
        for line in f:
            rec = json.loads(line)
            rounds.setdefault(rec["target"], []).append(rec["result"])
    size = conns = inflight = None
    rows = []
    for tgt, label in TARGETS:
        if tgt not in rounds:
            continue
        errors = sum((r or {}).get("errors", 1) if r else 1 for r in rounds[tgt])
        r = median_round(rounds[tgt])
        if r is None or r["msgs"] == 0:
            rows.append("| %s | no result | | | | | | | | %d |" % (label, errors))
            continue
        size, conns, inflight = r["size"], r["conns"], r["inflight"]
        sent = r["payload_tx_bytes"] / size  # messages queued in the window
        back = r["bytes"] / size  # messages echoed in the window
        out_b = r["wire_tx_bytes"] / sent if sent else float("nan")
        in_b = r["wire_rx_bytes"] / back if back else float("nan")
        wire = r["wire_tx_bytes"] + r["wire_rx_bytes"]
        ratio = (r["payload_tx_bytes"] + r["bytes"]) / wire if wire else float("nan")
        srv = r["cpu_s"].get("server", -1)
        rows.append("| %s | %s | %.2f | %.1f | %.1f | %.2f | %s | %.1f | %.1f | %d |" % (
            label, "{:,.0f}".format(r["msgs_per_s"]), r["mb_per_s"], out_b, in_b, ratio,
            "%.1f" % (srv / r["msgs"] * 1e6) if srv >= 0 else "n/a",
            r["client_cpu_s"] / r["msgs"] * 1e6, r["p50_us"] / 1000, errors))
    out = []
    w = out.append
    w("# JSON stream with and without permessage-deflate (json-100c)")
    w("")
    w("Written by `bench/run.sh` (`BENCH_ONLY=json-100c bench/run.sh` runs this alone); "
      "how to read it: [README.md](README.md#json-stream-with-and-without-compression-json-100c).")
    w("")
    w("| | |")
    w("|---|---|")
    w("| Run | %s, commit %s |" % (args.date, args.commit))
    w("| Stream | %s connections, JSON text messages of %s bytes (a telemetry stream, "
      "values varying), %s in flight each, echoed by wsgate-echo behind each target |"
      % (conns, size, inflight))
    w("| Per target | %s rounds of %s s; the median round (by messages/s) shown, errors "
      "summed |" % (args.rounds, args.seconds))
    w("| Client | wsbench; with compression it offers `permessage-deflate; "
      "client_max_window_bits` (what browsers send) and compresses with zlib's default "
      "level and memLevel, context kept unless the server asks otherwise |")
    w("| Peers | %s; %s |" % (args.go_version, args.node_version))
    w("")
    w("| target | msgs/s | payload MB/s (echoed) | wire B/msg to server | wire B/msg back "
      "| compression ratio | server CPU µs/msg | client CPU µs/msg | p50 ms | errors |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out.extend(rows)
    w("")
    w("Wire bytes are what the client's sockets carried (WebSocket frame headers and "
      "masks included) per payload message; the ratio is payload ÷ wire bytes, both "
      "directions together (an uncompressed stream is slightly below 1: the frame "
      "headers). Server CPU is the relay's process alone (not the echo backend) over the "
      "measured window, divided by the messages echoed.")
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

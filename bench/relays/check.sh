#!/usr/bin/env bash
# bench/relays/check.sh - proves the Go and Node relays relay correctly before run.sh
# measures them: each gets wsbench's content-checked echo at 64 B, 4 KiB and 64 KiB
# with 1, 100 and 1,000 connections through it to wsgate-echo; any error fails.
#
#   bench/relays/check.sh            # after bench/run.sh has built / installed them once
#
# Environment: WSGATE_BUILD (build directory holding wsgate-echo, default "build"),
# CHECK_SECONDS (measured seconds per case, default 1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${WSGATE_BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$ROOT/$BUILD"
SECS=${CHECK_SECONDS:-1}
RELAYS=$ROOT/bench/relays

die() { echo "check.sh: $*" >&2; exit 1; }

[[ -x $BUILD/wsgate-echo ]] || die "$BUILD/wsgate-echo not found; build first"
[[ -x $RELAYS/go/relay ]] || die "bench/relays/go/relay not built; run bench/run.sh once, or:
  cd bench/relays/go && GO111MODULE=off GOPATH=/usr/share/gocode go build -o relay relay.go"
[[ -d $RELAYS/node/node_modules/ws ]] || die "ws not installed: (cd bench/relays/node && npm ci)"
make -s -C "$ROOT/bench" wsbench
ulimit -Sn 8192 2>/dev/null || true # 1,000 connections are 2,000 descriptors in a relay

WORK=$(mktemp -d /tmp/wsgate-relays.XXXXXX)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_traps check.sh "$WORK" remove

"$BUILD/wsgate-echo" --host 127.0.0.1 --port 0 >"$WORK/echo.log" 2>&1 &
PIDS+=("$!")
ECHO_PORT=$(echo_port_from_log "$WORK/echo.log")
[[ -n $ECHO_PORT ]] || die "wsgate-echo did not start: $(cat "$WORK/echo.log")"
GO_PORT=$(free_port)
"$RELAYS/go/relay" -listen "127.0.0.1:$GO_PORT" -backend "127.0.0.1:$ECHO_PORT" \
    >"$WORK/go.log" 2>&1 &
PIDS+=("$!")
wait_port "$GO_PORT" "$!" "$WORK/go.log"
NODE_PORT=$(free_port)
node "$RELAYS/node/relay.js" --listen "127.0.0.1:$NODE_PORT" --backend "127.0.0.1:$ECHO_PORT" \
    >"$WORK/node.log" 2>&1 &
PIDS+=("$!")
wait_port "$NODE_PORT" "$!" "$WORK/node.log"

failed=0
for relay in "go $GO_PORT" "node $NODE_PORT"; do
    read -r name port <<<"$relay"
    for size in 64 4096 65536; do
        for conns in 1 100 1000; do
            line=$("$ROOT/bench/wsbench" --mode ws --port "$port" --path /echo \
                --subprotocol binary --size "$size" --conns "$conns" --inflight 4 \
                --duration "$SECS" --warmup 0.3 2>"$WORK/wsbench.err") || true
            # ok: no error, every connection ran to the end, and messages came back
            verdict=$(python3 -c '
import json, sys
try:
    r = json.loads(sys.argv[1])
except ValueError:
    print("FAIL no result"); sys.exit()
ok = r["errors"] == 0 and r["conns_at_end"] == r["conns"] and r["msgs"] > 0
print("%s %d msgs, %.1f MB/s, %d errors %s" % ("ok  " if ok else "FAIL", r["msgs"],
      r["mb_per_s"], r["errors"], r["error_kinds"] if r["errors"] else ""))' "$line")
            printf '%-5s %6s B x %4s: %s\n' "$name" "$size" "$conns" "$verdict"
            [[ $verdict == ok* ]] || { failed=1; sed 's/^/    /' "$WORK/wsbench.err"; }
        done
    done
done
[[ $failed == 0 ]] || die "some cases failed (above)"
echo "check.sh: both relays echoed every case with no error" >&2

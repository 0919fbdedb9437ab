#!/usr/bin/env bash
# bench/run.sh - wsgate vs websockify, Go and Node relays and direct TCP, all in one run
# on this machine.
#
# Starts one wsgate-echo, and in front of it websockify, wsgate (once as one process and
# once with "workers": 2), and the relays a developer would write instead of C: Go on
# gorilla/websocket (bench/relays/go) and Node on ws (bench/relays/node), each on a free
# 127.0.0.1 port. Drives every scenario against all of them with bench/wsbench, and
# writes docs/benchmarks/results.md and throughput.png. Figures from a shared, noisy
# machine only mean something beside the same run's baselines, so the report gives
# ratios to direct TCP and wsgate / websockify, / Go, / Node next to the raw numbers, and
# each scenario runs in rounds that take the targets in turn (the report keeps each
# target's median round), so a burst of someone else's load hits all alike. Every
# relay's CPU and page faults over the measured window are counted per message.
#
# Needs: websockify, golang-go and golang-github-gorilla-websocket-dev (Debian), Node.js
# with npm (the relay's ws comes from bench/relays/node/package-lock.json, installed with
# `npm ci` on the first run).
#
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j
#   bench/run.sh                       # uses build/wsgate and build/wsgate-echo
#
# Environment: WSGATE_BUILD (build directory, default "build"), BENCH_SECONDS
# (measured seconds per scenario per target, default 5), BENCH_ROUNDS (rounds they are
# split into, default 3), BENCH_WARMUP (seconds before each round, default 0.5),
# BENCH_OUT (where results go, default docs/benchmarks), BENCH_ONLY (space-separated
# scenario names to run, e.g. "lat-64B 64K-100c"; "fanout" for every MQTT fan-out point,
# "fanout-1000" for one), BENCH_IDLE_HOLD (seconds the idle connections are held before
# their memory is read, default 2), BENCH_IDLE_WEBSOCKIFY (connections asked of websockify
# in the idle scenarios, default 1000; it forks a process per connection).
#
# The idle scenarios (idle-10k, idle-50k) start a fresh backend and relay per target, so
# the memory each grows by is that of the connections alone: wsbench --idle opens N
# connections (WebSocket handshakes included), holds them, and reads the servers' resident
# memory before and after. N is cut to what the hard descriptor limit allows, and the
# report says so.
#
# json-100c is the JSON stream with and without permessage-deflate: 100 connections
# echo ~200-byte JSON text messages (4 in flight each) through wsgate's plain route and
# its "compression": true route, the Go and Node relays with and without their
# compression, and websockify (which has none); wsbench --deflate compresses as a
# browser does. It writes $BENCH_OUT/compression.md (bench/compression_report.py): wire
# bytes per message each way, compression ratio, server CPU per message.
#
# The MQTT fan-out (mosquitto's WebSocket listener vs wsgate's mqtt route) is
# bench/fanout.sh, run after the echo scenarios (see its own variables, FANOUT_*).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${WSGATE_BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$ROOT/$BUILD"
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-0.5}
OUT=${BENCH_OUT:-$ROOT/docs/benchmarks}

die() { echo "run.sh: $*" >&2; exit 1; }

# Which halves BENCH_ONLY selects: the echo scenarios here, the fan-out in fanout.sh.
ECHO_NAMES=" 64B-1c 64B-100c 4K-100c 64K-1c 64K-100c 4K-1000c lat-64B idle-10k idle-50k json-100c "
want_echo=yes
want_fanout=yes
want_main=yes # any echo scenario but json-100c: results.md and the plot
if [[ -n ${BENCH_ONLY:-} ]]; then
    want_echo=no
    want_fanout=no
    want_main=no
    for name in $BENCH_ONLY; do
        if [[ $ECHO_NAMES == *" $name "* ]]; then
            want_echo=yes
            [[ $name == json-100c ]] || want_main=yes
        elif [[ $name == fanout || $name == fanout-* ]]; then
            want_fanout=yes
        else
            die "BENCH_ONLY: unknown scenario '$name' (echo:$ECHO_NAMES; fan-out: fanout, fanout-N)"
        fi
    done
fi
if [[ $want_echo == no ]]; then
    exec "$ROOT/bench/fanout.sh"
fi

for bin in wsgate wsgate-echo; do
    [[ -x $BUILD/$bin ]] || die "$BUILD/$bin not found. Build first:
  cmake -S $ROOT -B $BUILD -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build $BUILD -j
(or set WSGATE_BUILD to an existing Release/RelWithDebInfo build directory)"
done
command -v websockify >/dev/null || die "websockify not found: apt-get install websockify"
# The Go relay builds against Debian's gorilla/websocket, outside Go modules.
GOPATH_DEB=/usr/share/gocode
if ! command -v go >/dev/null || [[ ! -d $GOPATH_DEB/src/github.com/gorilla/websocket ]]; then
    die "the Go relay needs Go and gorilla/websocket from Debian:
  apt-get install -y golang-go golang-github-gorilla-websocket-dev"
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    die "the Node relay needs Node.js and npm (use the machine's own; Debian's npm conflicts with it)"
fi
command -v python3 >/dev/null || die "python3 not found (writes the report)"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
case $build_type in
Release | RelWithDebInfo) ;;
*) echo "run.sh: warning: $BUILD is a '${build_type:-unknown}' build; numbers want Release or RelWithDebInfo" >&2 ;;
esac

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS: expected a positive integer, got '$ROUNDS'"
ROUND_SECS=$(python3 -c "print(round($SECS / $ROUNDS, 3))") || die "BENCH_SECONDS: not a number"
IDLE_HOLD=${BENCH_IDLE_HOLD:-2}
IDLE_WSK=${BENCH_IDLE_WEBSOCKIFY:-1000}
[[ $IDLE_WSK =~ ^[1-9][0-9]*$ ]] || die "BENCH_IDLE_WEBSOCKIFY: expected a positive integer, got '$IDLE_WSK'"

started=$(date -u '+%Y-%m-%d %H:%M UTC')
# Which source the binaries are, read now: others may commit while this runs.
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain -- src tools CMakeLists.txt bench/relays 2>/dev/null |
    awk '{print $2}' | tr '\n' ' ' | sed 's/ $//')
[[ -z $dirty ]] || commit="$commit + uncommitted changes in $dirty"
newer=$(find "$ROOT/src" "$ROOT/tools" -newer "$BUILD/wsgate" -type f 2>/dev/null | head -3 |
    sed "s|$ROOT/||" | tr '\n' ' ' | sed 's/ $//')
if [[ -n $newer ]]; then
    echo "run.sh: warning: $BUILD/wsgate is older than $newer; rebuild to measure the tree" >&2
    commit="$commit (binary older than $newer)"
fi

make -s -C "$ROOT/bench" wsbench
WSBENCH=$ROOT/bench/wsbench

# The peers: Go's binary is rebuilt each run (the build cache makes that a second), ws
# is installed from the lock file once.
RELAYS=$ROOT/bench/relays
(cd "$RELAYS/go" && GO111MODULE=off GOPATH=$GOPATH_DEB go build -o relay relay.go) ||
    die "building bench/relays/go failed"
if [[ ! -d $RELAYS/node/node_modules/ws ]]; then
    (cd "$RELAYS/node" && npm ci --no-audit --no-fund >&2) ||
        die "npm ci in bench/relays/node failed (it needs the npm registry)"
fi

# 1,000 connections need ~2,000 descriptors in a relay; websockify still uses select().
# -S: the soft limit only, so that fanout.sh can still raise it for 10,000 subscribers.
ulimit -Sn 8192 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/wsgate-bench.XXXXXX)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_traps run.sh "$WORK" remove

# --- the three servers --------------------------------------------------------------
"$BUILD/wsgate-echo" --host 127.0.0.1 --port 0 >"$WORK/echo.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
ECHO_PORT=$(echo_port_from_log "$WORK/echo.log")
[[ -n $ECHO_PORT ]] || die "wsgate-echo did not start: $(cat "$WORK/echo.log")"

WSK_PORT=$(free_port)
websockify "127.0.0.1:$WSK_PORT" "127.0.0.1:$ECHO_PORT" >"$WORK/websockify.log" 2>&1 &
WSK_PID=$!
PIDS+=("$WSK_PID")

GW_PORT=$(free_port)
# /echoz: the same route with permessage-deflate (json-100c); the others never ask for it
cat >"$WORK/wsgate.json" <<EOF
{"listen": [{"host": "127.0.0.1", "port": $GW_PORT}],
 "limits": {"max_message_bytes": 1048576},
 "routes": [{"name": "echo", "path": "/echo", "type": "tcp", "subprotocols": ["binary"],
             "target": {"host": "127.0.0.1", "port": $ECHO_PORT}},
            {"name": "echoz", "path": "/echoz", "type": "tcp", "subprotocols": ["binary"],
             "compression": true, "target": {"host": "127.0.0.1", "port": $ECHO_PORT}}]}
EOF
"$BUILD/wsgate" -c "$WORK/wsgate.json" --log-level warn >"$WORK/wsgate.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")

# The same gateway as two worker processes sharing the port ("workers": 2): what the
# second core adds when the client and the backend run on the same two cores too.
GW2_PORT=$(free_port)
sed "s/\"port\": $GW_PORT}/\"port\": $GW2_PORT}/; s/^{\"listen\"/{\"workers\": 2, \"listen\"/" \
    "$WORK/wsgate.json" >"$WORK/wsgate2.json"
"$BUILD/wsgate" -c "$WORK/wsgate2.json" --log-level warn >"$WORK/wsgate2.log" 2>&1 &
GW2_PID=$!
PIDS+=("$GW2_PID")

# The relays a developer would write instead (bench/relays): one process each.
GO_PORT=$(free_port)
"$RELAYS/go/relay" -listen "127.0.0.1:$GO_PORT" -backend "127.0.0.1:$ECHO_PORT" \
    >"$WORK/go.log" 2>&1 &
GO_PID=$!
PIDS+=("$GO_PID")
NODE_PORT=$(free_port)
node "$RELAYS/node/relay.js" --listen "127.0.0.1:$NODE_PORT" --backend "127.0.0.1:$ECHO_PORT" \
    >"$WORK/node.log" 2>&1 &
NODE_PID=$!
PIDS+=("$NODE_PID")
# ... and with their permessage-deflate on (json-100c)
GOZ_PORT=$(free_port)
"$RELAYS/go/relay" -listen "127.0.0.1:$GOZ_PORT" -backend "127.0.0.1:$ECHO_PORT" -compression \
    >"$WORK/goz.log" 2>&1 &
GOZ_PID=$!
PIDS+=("$GOZ_PID")
NODEZ_PORT=$(free_port)
node "$RELAYS/node/relay.js" --listen "127.0.0.1:$NODEZ_PORT" --backend "127.0.0.1:$ECHO_PORT" \
    --deflate 1 >"$WORK/nodez.log" 2>&1 &
NODEZ_PID=$!
PIDS+=("$NODEZ_PID")

wait_port "$WSK_PORT" "$WSK_PID" "$WORK/websockify.log"
wait_port "$GW_PORT" "$GW_PID" "$WORK/wsgate.log"
wait_port "$GW2_PORT" "$GW2_PID" "$WORK/wsgate2.log"
wait_port "$GO_PORT" "$GO_PID" "$WORK/go.log"
wait_port "$NODE_PORT" "$NODE_PID" "$WORK/node.log"
wait_port "$GOZ_PORT" "$GOZ_PID" "$WORK/goz.log"
wait_port "$NODEZ_PORT" "$NODEZ_PID" "$WORK/nodez.log"
echo "run.sh: echo :$ECHO_PORT (pid $ECHO_PID), websockify :$WSK_PORT (pid $WSK_PID)," \
    "wsgate :$GW_PORT (pid $GW_PID), 2 workers :$GW2_PORT (pid $GW2_PID)," \
    "go :$GO_PORT (pid $GO_PID), node :$NODE_PORT (pid $NODE_PID);" \
    "$ROUNDS rounds of $ROUND_SECS s per scenario and target" >&2

# --- scenarios: name size conns inflight ---------------------------------------------
SCENARIOS=(
    "64B-1c 64 1 16"
    "64B-100c 64 100 16"
    "4K-100c 4096 100 8"
    "64K-1c 65536 1 2"
    "64K-100c 65536 100 2"
    "4K-1000c 4096 1000 2"
    "lat-64B 64 1 1"
    "json-100c 200 100 4"
)
TARGETS=(tcp websockify wsgate wsgate2 go node)
# json-100c: JSON text messages, each target with and without compression where it has it
JSON_TARGETS=(websockify wsgate wsgate-deflate go go-deflate node node-deflate)

# Lets websockify reap the previous run's children so they cost the next run nothing.
settle() {
    for _ in $(seq 100); do
        [[ -z $(ps -o pid= --ppid "$WSK_PID" 2>/dev/null) ]] && break
        sleep 0.1
    done
    sleep 0.3
}

RESULTS=$WORK/results.jsonl
: >"$RESULTS"
for sc in "${SCENARIOS[@]}"; do
    read -r name size conns inflight <<<"$sc"
    if [[ -n ${BENCH_ONLY:-} && " $BENCH_ONLY " != *" $name "* ]]; then
        continue
    fi
    targets=("${TARGETS[@]}")
    extra=()
    results=$RESULTS
    if [[ $name == json-100c ]]; then
        targets=("${JSON_TARGETS[@]}")
        results=$WORK/compression.jsonl # its own report: report.py knows the others only
    fi
    for ((round = 0; round < ROUNDS; round++)); do
        # Each round starts with a different target, so none always goes first.
        for ((k = 0; k < ${#targets[@]}; k++)); do
            tgt=${targets[$(((round + k) % ${#targets[@]}))]}
            # websockify closes on text frames (1003): the same JSON as binary messages
            if [[ $name == json-100c && $tgt == websockify ]]; then
                extra=(--payload json-binary)
            elif [[ $name == json-100c ]]; then
                extra=(--payload json)
            fi
            case $tgt in
            tcp) args=(--mode tcp --port "$ECHO_PORT" --cpu-pid "server=$ECHO_PID") ;;
            websockify) args=(--mode ws --port "$WSK_PORT" --path / --subprotocol binary
                --cpu-pid "server=$WSK_PID" --cpu-pid "echo=$ECHO_PID") ;;
            wsgate) args=(--mode ws --port "$GW_PORT" --path /echo --subprotocol binary
                --cpu-pid "server=$GW_PID" --cpu-pid "echo=$ECHO_PID") ;;
            wsgate2) args=(--mode ws --port "$GW2_PORT" --path /echo --subprotocol binary
                --cpu-pid "server=$GW2_PID" --cpu-pid "echo=$ECHO_PID") ;;
            go) args=(--mode ws --port "$GO_PORT" --path /echo --subprotocol binary
                --cpu-pid "server=$GO_PID" --cpu-pid "echo=$ECHO_PID") ;;
            node) args=(--mode ws --port "$NODE_PORT" --path /echo --subprotocol binary
                --cpu-pid "server=$NODE_PID" --cpu-pid "echo=$ECHO_PID") ;;
            wsgate-deflate) args=(--mode ws --port "$GW_PORT" --path /echoz --subprotocol binary
                --deflate --cpu-pid "server=$GW_PID" --cpu-pid "echo=$ECHO_PID") ;;
            go-deflate) args=(--mode ws --port "$GOZ_PORT" --path /echo --subprotocol binary
                --deflate --cpu-pid "server=$GOZ_PID" --cpu-pid "echo=$ECHO_PID") ;;
            node-deflate) args=(--mode ws --port "$NODEZ_PORT" --path /echo --subprotocol binary
                --deflate --cpu-pid "server=$NODEZ_PID" --cpu-pid "echo=$ECHO_PID") ;;
            esac
            settle
            for pid in "$ECHO_PID" "$WSK_PID" "$GW_PID" "$GW2_PID" "$GO_PID" "$NODE_PID" \
                "$GOZ_PID" "$NODEZ_PID"; do
                kill -0 "$pid" 2>/dev/null || die "server pid $pid died; logs in $WORK"
            done
            line=$("$WSBENCH" "${args[@]}" "${extra[@]}" --size "$size" --conns "$conns" \
                --inflight "$inflight" --duration "$ROUND_SECS" --warmup "$WARMUP" \
                2>"$WORK/wsbench.err") || true
            sed "s/^/    [$name $tgt $round] /" "$WORK/wsbench.err" >&2
            [[ -n $line ]] || line=null
            printf '{"scenario":"%s","target":"%s","round":%d,"result":%s}\n' \
                "$name" "$tgt" "$round" "$line" >>"$results"
            echo "run.sh: $name $tgt round $round: $line" >&2
        done
    done
done
settle

# What each server said, for the report (websockify logs a line per connection).
grep -c 'select()' "$WORK/websockify.log" >"$WORK/wsk_select_errors" || true

# --- idle connections: fresh servers per target ---------------------------------------
# Memory growth is only the connections' on a process that has held nothing before, so
# the shared servers above (their allocators keep what the throughput runs used) stop
# here and every idle run starts its own backend and relay. The servers and wsbench get
# the hard descriptor limit; N is cut to what it allows:
#   tcp: wsbench and wsgate-echo hold one descriptor per connection;
#   wsgate: two per bridged connection (client and backend), and it keeps 16 + 1 % of
#     its limit free (src/server.c, fd_reserve_hit);
#   websockify: one process per connection; N is capped at BENCH_IDLE_WEBSOCKIFY and
#     whatever it has ready within 20 s.
# A few descriptors more are kept back for the processes' own (listeners, epoll, logs).
bench_cleanup
FD_HARD=$(ulimit -Hn)
[[ $FD_HARD == unlimited ]] && FD_HARD=1048576
IDLE_SCENARIOS=("idle-10k 10000" "idle-50k 50000")

# Starts a server in the background with the hard descriptor limit; sets STARTED_PID.
start_bg() {
    local log=$1
    shift
    (ulimit -Sn "$FD_HARD" && exec "$@") >"$log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# Stops one idle run's servers: websockify's children first (they leave once wsbench has
# closed their clients; any left are killed by PID), then the servers themselves.
stop_idle_servers() {
    local pid children
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do
            children=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
            [[ -z $children ]] && break
            sleep 0.1
        done
        for child in $children; do kill -9 "$child" 2>/dev/null || true; done
    done
    bench_cleanup
}

idle_run() {
    local name=$1 asked=$2 tgt=$3 n limited=no why="" line echo_port port cfg
    case $tgt in
    tcp) n=$((FD_HARD - 100)) why="fd" ;;
    wsgate) n=$(((FD_HARD - 16 - FD_HARD / 100 - 100) / 2)) why="fd" ;;
    websockify) n=$IDLE_WSK why="cap" ;;
    esac
    ((n > FD_HARD - 100)) && n=$((FD_HARD - 100)) why="fd"
    if ((n < asked)); then limited=$why; else n=$asked; fi

    start_bg "$WORK/idle-echo.log" "$BUILD/wsgate-echo" --host 127.0.0.1 --port 0
    local echo_pid=$STARTED_PID
    echo_port=$(echo_port_from_log "$WORK/idle-echo.log")
    [[ -n $echo_port ]] || die "wsgate-echo did not start: $(cat "$WORK/idle-echo.log")"
    local args=(--mode tcp --port "$echo_port" --mem-pid "server=$echo_pid")
    case $tgt in
    websockify)
        port=$(free_port)
        start_bg "$WORK/idle-websockify.log" websockify "127.0.0.1:$port" "127.0.0.1:$echo_port"
        wait_port "$port" "$STARTED_PID" "$WORK/idle-websockify.log"
        args=(--mode ws --port "$port" --path / --subprotocol binary
            --mem-pid "server=$STARTED_PID" --mem-pid "echo=$echo_pid")
        ;;
    wsgate)
        port=$(free_port)
        cfg=$WORK/idle-wsgate.json
        sed "s/\"port\": $GW_PORT}/\"port\": $port}/; s/\"port\": $ECHO_PORT}/\"port\": $echo_port}/" \
            "$WORK/wsgate.json" >"$cfg"
        start_bg "$WORK/idle-wsgate.log" "$BUILD/wsgate" -c "$cfg" --log-level warn
        wait_port "$port" "$STARTED_PID" "$WORK/idle-wsgate.log"
        args=(--mode ws --port "$port" --path /echo --subprotocol binary
            --mem-pid "server=$STARTED_PID" --mem-pid "echo=$echo_pid")
        ;;
    esac
    sleep 0.3 # let the servers finish starting before their memory is read
    line=$( (ulimit -Sn "$FD_HARD" && exec "$WSBENCH" "${args[@]}" --idle "$IDLE_HOLD" \
        --conns "$n" --connect-timeout 20) 2>"$WORK/wsbench.err") || true
    sed "s/^/    [$name $tgt] /" "$WORK/wsbench.err" >&2
    [[ -n $line ]] || line=null
    # websockify logs each connection it dropped for a descriptor select() cannot watch
    local sel=0
    [[ $tgt != websockify ]] || sel=$(grep -c 'select()' "$WORK/idle-websockify.log" || true)
    printf '{"scenario":"%s","target":"%s","round":0,"asked":%d,"n":%d,"limited":"%s","fd_hard":%d,"select_errors":%d,"result":%s}\n' \
        "$name" "$tgt" "$asked" "$n" "$limited" "$FD_HARD" "${sel:-0}" "$line" >>"$RESULTS"
    echo "run.sh: $name $tgt ($n of $asked): $line" >&2
    stop_idle_servers
}

for sc in "${IDLE_SCENARIOS[@]}"; do
    read -r name asked <<<"$sc"
    if [[ -n ${BENCH_ONLY:-} && " $BENCH_ONLY " != *" $name "* ]]; then
        continue
    fi
    for tgt in tcp websockify wsgate; do # idle: one worker holds what two would
        idle_run "$name" "$asked" "$tgt"
    done
done

mkdir -p "$OUT"
if [[ -s $WORK/compression.jsonl ]]; then
    python3 "$ROOT/bench/compression_report.py" --results "$WORK/compression.jsonl" \
        --out "$OUT/compression.md" --seconds "$ROUND_SECS" --rounds "$ROUNDS" \
        --commit "$commit" --date "$started" \
        --go-version "$(go version | sed 's/^go version //'), gorilla/websocket $(dpkg-query -W -f '${Version}' golang-github-gorilla-websocket-dev 2>/dev/null || echo unknown)" \
        --node-version "Node.js $(node --version), ws $(node -p 'require(process.argv[1]).version' "$RELAYS/node/node_modules/ws/package.json" 2>/dev/null || echo unknown)"
    cp "$WORK/compression.jsonl" "$OUT/compression.jsonl"
    echo "run.sh: wrote $OUT/compression.md" >&2
fi
if [[ $want_main == no ]]; then
    # only json-100c ran: results.md and the plot are left as they were
    if [[ $want_fanout == yes ]]; then
        bench_cleanup
        "$ROOT/bench/fanout.sh"
    fi
    exit 0
fi
# websockify unmasks with numpy when its interpreter has it, much faster than without.
wsk_python=$(head -1 "$(command -v websockify)" | sed -E 's/^#! *//; s/ .*//')
wsk_numpy=no
"$wsk_python" -c 'import numpy' 2>/dev/null && wsk_numpy=yes
ymin=$(python3 "$ROOT/bench/report.py" \
    --results "$RESULTS" --out "$OUT" --seconds "$ROUND_SECS" --rounds "$ROUNDS" --warmup "$WARMUP" \
    --commit "$commit" --date "$started" \
    --wsgate-version "$("$BUILD/wsgate" --version 2>&1 | head -1)" \
    --build-type "${build_type:-unknown}" \
    --websockify-version "$(dpkg-query -W -f '${Version}' websockify 2>/dev/null || echo unknown)" \
    --websockify-numpy "$wsk_numpy" \
    --websockify-select-errors "$(cat "$WORK/wsk_select_errors")" \
    --go-version "$(go version | sed 's/^go version //'), gorilla/websocket $(dpkg-query -W -f '${Version}' golang-github-gorilla-websocket-dev 2>/dev/null || echo unknown)" \
    --node-version "Node.js $(node --version), ws $(node -p 'require(process.argv[1]).version' "$RELAYS/node/node_modules/ws/package.json" 2>/dev/null || echo unknown)" \
    --idle-hold "$IDLE_HOLD" --idle-websockify "$IDLE_WSK")

if ! grep -qv '^#' "$OUT/throughput.dat" 2>/dev/null; then
    # Only lat-64B ran (BENCH_ONLY): no bars to draw; gnuplot would fail on an empty table.
    rm -f "$OUT/throughput.dat"
    echo "run.sh: no throughput scenario ran: wrote $OUT/results.md, throughput.png left as it was" >&2
elif command -v gnuplot >/dev/null; then
    gnuplot -e "datafile='$OUT/throughput.dat'; outfile='$OUT/throughput.png'; ymin=$ymin" \
        -e "subtitle='$(date -u +%Y-%m-%d), ${commit%% *}, $(nproc) cores, median of $ROUNDS x ${ROUND_SECS} s'" \
        "$ROOT/bench/throughput.gp"
    rm -f "$OUT/throughput.dat"
    echo "run.sh: wrote $OUT/results.md and $OUT/throughput.png" >&2
else
    echo "run.sh: gnuplot not found (apt-get install gnuplot-nox): no plot;" \
        "wrote $OUT/results.md" >&2
fi
cp "$RESULTS" "$OUT/results.jsonl"

# --- MQTT fan-out ---------------------------------------------------------------------
if [[ $want_fanout == yes ]]; then
    bench_cleanup # the echo servers are done (stopped before the idle runs); nothing else runs
    "$ROOT/bench/fanout.sh"
fi

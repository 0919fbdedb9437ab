#!/usr/bin/env bash
# bench/fanout.sh - MQTT fan-out: mosquitto's own WebSocket listener vs wsgate's mqtt route,
# on the same mosquitto process, in one run. run.sh calls it; it also runs alone.
#
# Starts one mosquitto (Debian package) with a plain MQTT listener and a `protocol
# websockets` listener, and one wsgate whose raw mqtt route /fan subscribes to the same
# broker. For each subscriber count N, bench/fanout connects N WebSocket subscribers of
# topic bench/fan (to mosquitto: MQTT 3.1.1 over WebSocket, one MQTT client each; to
# wsgate: plain WebSocket clients of /fan) and one MQTT publisher over TCP, and measures
# the messages delivered per second to all subscribers together, their delivery latency
# and any loss. The two setups take turns (a different one first each round) so a burst of
# someone else's load hits both. Writes fanout.jsonl, the fan-out section of results.md
# and fanout.png into docs/benchmarks/.
#
#   bench/fanout.sh                    # uses build/wsgate
#
# Environment: WSGATE_BUILD (default "build"), BENCH_OUT (default docs/benchmarks),
# BENCH_ONLY (as run.sh: "fanout" runs every point, "fanout-1000" one of them),
# FANOUT_SUBS (subscriber counts, default "1 100 1000 10000"), FANOUT_SECONDS (measured
# seconds per point per setup, default 3), FANOUT_ROUNDS (rounds they are split into,
# default 2), FANOUT_WARMUP (seconds before each round, default 0.5), FANOUT_BUDGET
# (deliveries kept outstanding, default 4096: the publisher's window is
# clamp(BUDGET / N, 2, 64) messages), FANOUT_PACED (deliveries/s of one more round per
# point and setup at a fixed publish rate of PACED / N messages/s, for latency at the same
# load on both; default 20000, 0 to skip).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${WSGATE_BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$ROOT/$BUILD"
OUT=${BENCH_OUT:-$ROOT/docs/benchmarks}
SUBS_LIST=${FANOUT_SUBS:-"1 100 1000 10000"}
SECS=${FANOUT_SECONDS:-3}
ROUNDS=${FANOUT_ROUNDS:-2}
WARMUP=${FANOUT_WARMUP:-0.5}
BUDGET=${FANOUT_BUDGET:-4096}
PACED=${FANOUT_PACED:-20000}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
TOPIC=bench/fan

die() { echo "fanout.sh: $*" >&2; exit 1; }

[[ -x $BUILD/wsgate ]] || die "$BUILD/wsgate not found. Build first:
  cmake -S $ROOT -B $BUILD -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build $BUILD -j
(or set WSGATE_BUILD to an existing Release/RelWithDebInfo build directory)"
[[ -x $MOSQUITTO ]] || die "$MOSQUITTO not found: apt-get install mosquitto"
command -v python3 >/dev/null || die "python3 not found (writes the report)"
[[ $PACED =~ ^[0-9]+$ ]] || die "FANOUT_PACED: expected a whole number of deliveries/s, got '$PACED'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "FANOUT_ROUNDS: expected a positive integer, got '$ROUNDS'"
ROUND_SECS=$(python3 -c "print(round($SECS / $ROUNDS, 3))") || die "FANOUT_SECONDS: not a number"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
case $build_type in
Release | RelWithDebInfo) ;;
*) echo "fanout.sh: warning: $BUILD is a '${build_type:-unknown}' build; numbers want Release or RelWithDebInfo" >&2 ;;
esac

# Which subscriber counts to run: BENCH_ONLY may name "fanout" or "fanout-N".
POINTS=()
for n in $SUBS_LIST; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "FANOUT_SUBS: expected positive integers, got '$n'"
    if [[ -n ${BENCH_ONLY:-} && " $BENCH_ONLY " != *" fanout "* &&
        " $BENCH_ONLY " != *" fanout-$n "* ]]; then
        continue
    fi
    POINTS+=("$n")
done
[[ ${#POINTS[@]} -gt 0 ]] || die "nothing selected (BENCH_ONLY='${BENCH_ONLY:-}')"

started=$(date -u '+%Y-%m-%d %H:%M UTC')
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain -- src CMakeLists.txt 2>/dev/null |
    awk '{print $NF}' | tr '\n' ' ' | sed 's/ $//')
[[ -z $dirty ]] || commit="$commit + uncommitted changes in $dirty"
newer=$(find "$ROOT/src" -newer "$BUILD/wsgate" -type f 2>/dev/null | head -3 |
    sed "s|$ROOT/||" | tr '\n' ' ' | sed 's/ $//')
if [[ -n $newer ]]; then
    echo "fanout.sh: warning: $BUILD/wsgate is older than $newer; rebuild to measure the tree" >&2
    commit="$commit (binary older than $newer)"
fi

make -s -C "$ROOT/bench" fanout
FANOUT=$ROOT/bench/fanout

# 10,000 subscribers: as many sockets in the client, in mosquitto, and in wsgate. Raises the
# hard limit where allowed (CAP_SYS_RESOURCE), else takes what the hard limit allows.
max_subs=0
for n in "${POINTS[@]}"; do ((n > max_subs)) && max_subs=$n; done
want_fds=$((max_subs + 1024))
((want_fds < 8192)) && want_fds=8192
if (($(ulimit -Hn) < want_fds)); then ulimit -Hn "$want_fds" 2>/dev/null || true; fi
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < want_fds)); then
    echo "fanout.sh: warning: only $(ulimit -n) descriptors (wanted $want_fds);" \
        "the largest points may lose subscribers" >&2
fi

WORK=$(mktemp -d /tmp/wsgate-fanout.XXXXXX)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_traps fanout.sh "$WORK" remove

# --- mosquitto: one process, both setups ---------------------------------------------
# The queue limits are mosquitto 2.0's defaults, written out (the publisher's window keeps
# at most 64 messages waiting for any subscriber, far below them). set_tcp_nodelay: no Nagle delay on any client socket, wsgate's
# included (mosquitto's default is false).
MQ_PORT=$(free_port)
MQ_WS_PORT=$(free_port)
cat >"$WORK/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous true
persistence false
set_tcp_nodelay true
max_queued_messages 1000
max_queued_bytes 0
max_inflight_messages 20
max_connections -1
log_dest stderr
log_type error
log_type warning
listener $MQ_PORT 127.0.0.1
listener $MQ_WS_PORT 127.0.0.1
protocol websockets
EOF
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
MQ_PID=$!
PIDS+=("$MQ_PID")
wait_port "$MQ_PORT" "$MQ_PID" "$WORK/mosquitto.log"
wait_port "$MQ_WS_PORT" "$MQ_PID" "$WORK/mosquitto.log"

# --- wsgate: one raw mqtt route on that broker -----------------------------------------
GW_PORT=$(free_port)
cat >"$WORK/wsgate.json" <<EOF
{"listen": [{"host": "127.0.0.1", "port": $GW_PORT}],
 "limits": {"max_connections": 1000000},
 "brokers": {"main": {"uri": "tcp://127.0.0.1:$MQ_PORT"}},
 "routes": [{"name": "fan", "path": "/fan", "type": "mqtt", "broker": "main",
             "subscribe": [{"filter": "$TOPIC"}]}]}
EOF
"$BUILD/wsgate" -c "$WORK/wsgate.json" --log-level warn >"$WORK/wsgate.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_port "$GW_PORT" "$GW_PID" "$WORK/wsgate.log"
echo "fanout.sh: mosquitto :$MQ_PORT mqtt, :$MQ_WS_PORT websockets (pid $MQ_PID);" \
    "wsgate :$GW_PORT (pid $GW_PID); $ROUNDS rounds of $ROUND_SECS s per point and setup;" \
    "fd limit $(ulimit -n)" >&2

RESULTS=$WORK/fanout.jsonl
META_DATE=$started META_COMMIT=$commit META_BUILD_TYPE=${build_type:-unknown} \
    META_WSGATE=$("$BUILD/wsgate" --version 2>&1 | head -1) \
    META_MOSQUITTO=$(dpkg-query -W -f '${Version}' mosquitto 2>/dev/null || echo unknown) \
    META_SECONDS=$ROUND_SECS META_ROUNDS=$ROUNDS META_WARMUP=$WARMUP META_BUDGET=$BUDGET \
    META_PACED=$PACED \
    META_FDS=$(ulimit -n) META_CONF=$WORK/mosquitto.conf python3 -c '
import json, os, sys
e = os.environ
meta = {"date": e["META_DATE"], "commit": e["META_COMMIT"], "build_type": e["META_BUILD_TYPE"],
        "wsgate_version": e["META_WSGATE"], "mosquitto_version": e["META_MOSQUITTO"],
        "seconds": float(e["META_SECONDS"]), "rounds": int(e["META_ROUNDS"]),
        "warmup": float(e["META_WARMUP"]), "budget": int(e["META_BUDGET"]),
        "paced": int(e["META_PACED"]),
        "fd_limit": int(e["META_FDS"]), "mosquitto_conf": open(e["META_CONF"]).read()}
print(json.dumps({"meta": meta}))' >"$RESULTS"

TARGETS=(mosquitto wsgate)
# One fanout run: point, setup, round, label, paced, then fanout's own options.
run_one() {
    local n=$1 tgt=$2 round=$3 label=$4 paced=$5 line pid
    shift 5
    local args
    case $tgt in
    mosquitto) args=(--mode mqttws --port "$MQ_WS_PORT" --path /mqtt
        --cpu-pid "server=$MQ_PID") ;;
    wsgate) args=(--mode ws --port "$GW_PORT" --path /fan
        --cpu-pid "server=$GW_PID" --cpu-pid "broker=$MQ_PID") ;;
    esac
    for pid in "$MQ_PID" "$GW_PID"; do
        kill -0 "$pid" 2>/dev/null || die "server pid $pid died; logs in $WORK"
    done
    line=$("$FANOUT" "${args[@]}" --pub-port "$MQ_PORT" --topic "$TOPIC" --subs "$n" \
        --duration "$ROUND_SECS" --warmup "$WARMUP" --connect-timeout 30 "$@" \
        2>"$WORK/fanout.err") || true
    sed "s/^/    [$label $tgt $round] /" "$WORK/fanout.err" >&2
    [[ -n $line ]] || line=null
    printf '{"subs":%d,"target":"%s","round":%d,"paced":%s,"result":%s}\n' \
        "$n" "$tgt" "$round" "$paced" "$line" >>"$RESULTS"
    echo "fanout.sh: $label $tgt round $round: $line" >&2
    # Let the servers close the last run's connections before the next one.
    sleep 0.5
}

for n in "${POINTS[@]}"; do
    window=$((BUDGET / n))
    ((window > 64)) && window=64
    ((window < 2)) && window=2
    for ((round = 0; round < ROUNDS; round++)); do
        for ((k = 0; k < ${#TARGETS[@]}; k++)); do
            run_one "$n" "${TARGETS[$(((round + k) % ${#TARGETS[@]}))]}" "$round" \
                "fanout-$n" false --window "$window"
        done
    done
    if ((PACED > 0)); then
        # The same load on both: PACED deliveries/s in all, a window that never binds.
        rate=$(python3 -c "print($PACED / $n)")
        for tgt in "${TARGETS[@]}"; do
            run_one "$n" "$tgt" 0 "fanout-$n paced" true --window 65536 --rate "$rate"
        done
    fi
done

# What the servers said (mosquitto logs only errors and warnings here).
grep -v '^$' "$WORK/mosquitto.log" | tail -20 >"$WORK/mosquitto.tail" || true
grep -v '^$' "$WORK/wsgate.log" | tail -20 >"$WORK/wsgate.tail" || true

mkdir -p "$OUT"
cp "$RESULTS" "$OUT/fanout.jsonl"
python3 "$ROOT/bench/report.py" --fanout "$OUT/fanout.jsonl" --out "$OUT" \
    --server-log "mosquitto=$WORK/mosquitto.tail" --server-log "wsgate=$WORK/wsgate.tail"
if command -v gnuplot >/dev/null; then
    gnuplot -e "datafile='$OUT/fanout.dat'; outfile='$OUT/fanout.png'" \
        -e "subtitle='$(date -u +%Y-%m-%d), ${commit%% *}, $(nproc) cores, median of $ROUNDS x ${ROUND_SECS} s'" \
        "$ROOT/bench/fanout.gp"
    rm -f "$OUT/fanout.dat"
    echo "fanout.sh: wrote $OUT/results.md (fan-out section) and $OUT/fanout.png" >&2
else
    echo "fanout.sh: gnuplot not found (apt-get install gnuplot-nox): no plot;" \
        "wrote $OUT/results.md (fan-out section)" >&2
fi

#!/usr/bin/env bash
# bench/profile.sh - where wsgate's instructions and system calls go, per echoed message.
#
# A fixed, counted load through wsgate's tcp route to wsgate-echo: bench/wsbench with
# --messages M, then again with 2M, on the same running gateway; the difference between
# the two is the cost of exactly M messages, without the connections' setup and teardown.
# Two cases, the run.sh scenarios where wsgate is the bottleneck:
#   64B-100c  64 B messages, 100 connections, 16 in flight each
#   64K-100c  64 KiB messages, 100 connections, 2 in flight each
# For each it measures
#   1. user-space instructions per message, by function and by group (libwebsockets,
#      wsgate's own code, libc's memcpy/memmove, malloc/free, ...), with valgrind's
#      callgrind: exact counts, the same from run to run whatever else the machine does;
#      the kernel is not in them;
#   2. system calls per message (natively, with perf stat on the syscall tracepoints);
#   3. where the time goes, kernel included (natively, perf record -e cpu-clock, sampled
#      for PROFILE_SECONDS under wsbench --duration): shares by DSO and top symbols.
# and writes OUT/summary.md (the tables docs/benchmarks/profile.md quotes) beside the raw
# files (callgrind.out.*, perf-stat-*.txt, perf-report-*.txt).
#
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j
#   bench/profile.sh                   # about 3 minutes
#
# Environment: WSGATE_BUILD (default "build"), PROFILE_OUT (default a new
# /tmp/wsgate-profile.XXXXXX), PROFILE_MSGS_64B (M for 64 B, default 200000),
# PROFILE_MSGS_64K (M for 64 KiB, default 2000), PROFILE_SECONDS (perf record window,
# default 3; 0 skips it), PROFILE_ONLY ("64B-100c" or "64K-100c").
# Needs valgrind; perf for steps 2 and 3 (skipped with a note if perf cannot count).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${WSGATE_BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$ROOT/$BUILD"
M64=${PROFILE_MSGS_64B:-200000}
M64K=${PROFILE_MSGS_64K:-2000}
PSECS=${PROFILE_SECONDS:-3}
OUT=${PROFILE_OUT:-$(mktemp -d /tmp/wsgate-profile.XXXXXX)}
mkdir -p "$OUT"

die() { echo "profile.sh: $*" >&2; exit 1; }
for bin in wsgate wsgate-echo; do
    [[ -x $BUILD/$bin ]] || die "$BUILD/$bin not found; build first (RelWithDebInfo)"
done
command -v valgrind >/dev/null || die "valgrind not found: apt-get install valgrind"
command -v callgrind_control >/dev/null || die "callgrind_control not found (valgrind package)"
have_perf=no
if command -v perf >/dev/null &&
    perf stat -e raw_syscalls:sys_enter -x, true 2>&1 | grep -q 'raw_syscalls'; then
    have_perf=yes
else
    echo "profile.sh: perf cannot count syscall tracepoints here: steps 2 and 3 skipped" >&2
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == RelWithDebInfo ]] ||
    echo "profile.sh: warning: $BUILD is a '${build_type:-unknown}' build; function names want RelWithDebInfo" >&2

make -s -C "$ROOT/bench" wsbench
WSBENCH=$ROOT/bench/wsbench

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_traps profile.sh "$OUT" keep
stop() { # one server, by PID
    kill "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

"$BUILD/wsgate-echo" --host 127.0.0.1 --port 0 >"$OUT/echo.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
ECHO_PORT=$(echo_port_from_log "$OUT/echo.log")
[[ -n $ECHO_PORT ]] || die "wsgate-echo did not start"

GW_PORT=$(free_port)
cat >"$OUT/wsgate.json" <<EOF
{"listen": [{"host": "127.0.0.1", "port": $GW_PORT}],
 "limits": {"max_message_bytes": 1048576},
 "routes": [{"name": "echo", "path": "/echo", "type": "tcp", "subprotocols": ["binary"],
             "target": {"host": "127.0.0.1", "port": $ECHO_PORT}}]}
EOF

# name size conns inflight messages
CASES=("64B-100c 64 100 16 $M64" "64K-100c 65536 100 2 $M64K")

bench() { # size conns inflight messages|duration-args...
    local size=$1 conns=$2 inflight=$3
    shift 3
    "$WSBENCH" --mode ws --port "$GW_PORT" --path /echo --subprotocol binary \
        --size "$size" --conns "$conns" --inflight "$inflight" --warmup 0 \
        --connect-timeout 60 "$@" 2>>"$OUT/wsbench.err"
}

# Counts one message count's worth of wsgate's syscalls: perf stat attached around a run.
SYSCALLS="raw_syscalls:sys_enter"
for sc in sendto recvfrom poll ppoll read write readv writev sendmsg recvmsg epoll_wait \
    accept4 close connect getsockopt setsockopt ioctl fcntl clock_gettime; do
    SYSCALLS+=",syscalls:sys_enter_$sc"
done
stat_run() { # gw_pid outfile size conns inflight messages
    local gw=$1 file=$2
    shift 2
    perf stat -x, -e "$SYSCALLS" -p "$gw" -o "$file" &
    local perf_pid=$!
    sleep 0.5
    bench "$@" --duration 600 >"$file.wsbench"
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
}

for c in "${CASES[@]}"; do
    read -r name size conns inflight msgs <<<"$c"
    if [[ -n ${PROFILE_ONLY:-} && " $PROFILE_ONLY " != *" $name "* ]]; then continue; fi

    if [[ $have_perf == yes ]]; then
        # 2. syscalls per message, native speed.
        "$BUILD/wsgate" -c "$OUT/wsgate.json" --log-level warn >"$OUT/wsgate-native.log" 2>&1 &
        gw=$!
        PIDS+=("$gw")
        wait_port "$GW_PORT" "$gw" "$OUT/wsgate-native.log" 30
        bench "$size" "$conns" "$inflight" --messages "$msgs" --duration 600 >/dev/null # warm-up
        stat_run "$gw" "$OUT/perf-stat-$name-1.txt" "$size" "$conns" "$inflight" --messages "$msgs"
        stat_run "$gw" "$OUT/perf-stat-$name-2.txt" "$size" "$conns" "$inflight" \
            --messages $((2 * msgs))
        # 3. time shares, kernel included, at full load.
        if [[ $PSECS != 0 ]]; then
            # The same load straight to the echo server, for its CPU per message.
            "$WSBENCH" --mode tcp --port "$ECHO_PORT" --size "$size" --conns "$conns" \
                --inflight "$inflight" --warmup 0.5 --duration "$PSECS" \
                --cpu-pid "server=$ECHO_PID" >"$OUT/direct-$name.wsbench" 2>>"$OUT/wsbench.err"
            bench "$size" "$conns" "$inflight" --warmup 1 --duration "$PSECS" \
                --cpu-pid "server=$gw" --cpu-pid "echo=$ECHO_PID" >"$OUT/perf-record-$name.wsbench" &
            bpid=$!
            sleep 1
            perf record -q -e cpu-clock -F 2000 -g -p "$gw" -o "$OUT/perf-$name.data" -- sleep "$PSECS" \
                2>/dev/null || true
            wait "$bpid" || true
            perf report -i "$OUT/perf-$name.data" --no-children --sort dso --stdio \
                >"$OUT/perf-report-$name-dso.txt" 2>/dev/null || true
            perf report -i "$OUT/perf-$name.data" --no-children --sort dso,sym --stdio -g none \
                >"$OUT/perf-report-$name-sym.txt" 2>/dev/null || true
        fi
        stop "$gw"
    fi

    # 1. instructions per message under callgrind: zero after a warm-up, dump after M
    # messages, dump again after 2M; part 2 minus part 1 is M messages' worth.
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.$name" \
        --collect-systime=yes \
        "$BUILD/wsgate" -c "$OUT/wsgate.json" --log-level warn >"$OUT/wsgate-callgrind-$name.log" 2>&1 &
    vg=$!
    PIDS+=("$vg")
    wait_port "$GW_PORT" "$vg" "$OUT/wsgate-callgrind-$name.log" 30
    bench "$size" "$conns" "$inflight" --messages $((msgs / 10)) --duration 600 >/dev/null
    poke() { (exec 3<>"/dev/tcp/127.0.0.1/$GW_PORT") 2>/dev/null || true; }
    dump() { # waits for callgrind to write the next part file
        local want=$1
        callgrind_control -d "$vg" >/dev/null &
        local cc=$!
        for _ in $(seq 300); do
            poke # a connection wakes the event loop, and callgrind with it
            [[ -e $OUT/callgrind.out.$name.$want ]] && break
            sleep 0.1
        done
        wait "$cc" 2>/dev/null || true
        [[ -e $OUT/callgrind.out.$name.$want ]] || die "callgrind dump $want not written"
        sleep 0.5
    }
    callgrind_control -z "$vg" >/dev/null & # zero after the warm-up
    zc=$!
    for _ in $(seq 30); do poke; kill -0 "$zc" 2>/dev/null || break; sleep 0.1; done
    wait "$zc" 2>/dev/null || true
    bench "$size" "$conns" "$inflight" --messages "$msgs" --duration 600 >"$OUT/callgrind-$name-1.wsbench"
    dump 1
    bench "$size" "$conns" "$inflight" --messages $((2 * msgs)) --duration 600 >"$OUT/callgrind-$name-2.wsbench"
    dump 2
    stop "$vg"
done

python3 "$ROOT/bench/profile_report.py" --dir "$OUT" --m64 "$M64" --m64k "$M64K" \
    >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "profile.sh: raw files and summary.md in $OUT" >&2

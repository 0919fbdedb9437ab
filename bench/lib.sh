# bench/lib.sh - what run.sh, fanout.sh and profile.sh share: the servers they start
# (PIDS), stopping them, free ports, waiting for a listener. Sourced, not run; the
# script defines die() first. Every server a script starts goes into PIDS, and
# bench_cleanup stops them all (and any children left behind, e.g. websockify's).

PIDS=()

# Whether PID is still a child of this shell: bash reaps a server that ended on its
# own, and its number may already belong to another process (pid_max is 32768 here).
bench_is_ours() {
    [[ $(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ') == "$$" ]]
}

bench_cleanup() {
    local pid child
    for pid in "${PIDS[@]}"; do
        if bench_is_ours "$pid"; then kill "$pid" 2>/dev/null || true; fi
    done
    sleep 0.3
    for pid in "${PIDS[@]}"; do
        bench_is_ours "$pid" || continue
        for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
            kill -9 "$child" 2>/dev/null || true
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

# bench_traps NAME DIR REMOVE: on exit stop everything; DIR holds the logs, kept on a
# failure and removed after a success if REMOVE is "remove".
bench_traps() {
    BENCH_NAME=$1 BENCH_DIR=$2 BENCH_REMOVE_DIR=$3
    trap bench_on_exit EXIT
    trap 'exit 130' INT TERM
}
bench_on_exit() {
    local rc=$?
    bench_cleanup
    if [[ $rc -ne 0 ]]; then
        echo "$BENCH_NAME: failed (exit $rc); logs kept in $BENCH_DIR" >&2
    elif [[ $BENCH_REMOVE_DIR == remove ]]; then
        rm -rf "$BENCH_DIR"
    fi
}

# free_port: a port free on 127.0.0.1 below 32768, out of the kernel's ephemeral range
# (32768-60999 here): wsbench's thousands of client connections leave ports of that range
# in TIME_WAIT, and a server cannot bind one of those even with SO_REUSEADDR.
free_port() {
    python3 -c '
import random, socket
for port in random.sample(range(20000, 32768), 200):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("free_port: no free port in 20000-32767")
'
}

# wait_port PORT PID LOG [SECONDS]: until something accepts on 127.0.0.1:PORT, or die
# naming the log to read (the server exited, or nothing listened in time; default 10 s).
wait_port() {
    local port=$1 pid=$2 log=$3 tries=$((${4:-10} * 10))
    for _ in $(seq "$tries"); do
        kill -0 "$pid" 2>/dev/null || die "server (pid $pid) exited at start; see $log:
$(tail -5 "$log")"
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "nothing listening on 127.0.0.1:$port after ${4:-10} s; see $log"
}

# echo_port_from_log LOG: waits (up to 5 s) for wsgate-echo's "listening on" line in LOG
# and prints its port (nothing if it never came: the caller dies with the log).
echo_port_from_log() {
    for _ in $(seq 50); do
        grep -q '^listening on' "$1" && break
        sleep 0.1
    done
    sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$1"
}

#!/usr/bin/env bash
# Runs the demo: installs what is missing, builds, then starts
#   - the TCP echo backend (wsgate-echo) on 127.0.0.1:9000,
#   - a local mosquitto on 127.0.0.1:1883 (its own, not the system one),
#   - wsgate on http://127.0.0.1:8080/ with config/demo.json,
# and prints the URL to open. A port already in use is replaced by a free one
# and the config is then generated with it (build/demo/wsgate.json), so the
# demo also comes up next to a system mosquitto. Ctrl-C stops everything.
#
# Environment: WSGATE_DEMO_PORT (default 8080), WSGATE_DEMO_HOST (default
# 127.0.0.1; 0.0.0.0 to open the page from another machine).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 >/dev/null

host=${WSGATE_DEMO_HOST:-127.0.0.1}
mosquitto=/usr/sbin/mosquitto
py=/usr/bin/python3

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pick() { # pick WANTED: WANTED if nothing listens there, else a free port
  if in_use "$1"; then free_port; else echo "$1"; fi
}
wait_port() { # wait_port PORT NAME PID
  for _ in $(seq 100); do
    in_use "$1" && return 0
    kill -0 "$3" 2>/dev/null || { echo "demo: $2 exited before listening on $1" >&2; return 1; }
    sleep 0.1
  done
  echo "demo: $2 did not listen on $1 within 10 s" >&2
  return 1
}

gw_port=$(pick "${WSGATE_DEMO_PORT:-8080}")
echo_port=$(pick 9000)
mqtt_port=$(pick 1883)

run=build/demo
mkdir -p "$run"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# mosquitto: anonymous, no persistence, only on loopback.
cat >"$run/mosquitto.conf" <<EOF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
EOF
"$mosquitto" -c "$run/mosquitto.conf" &
pids+=($!)
wait_port "$mqtt_port" mosquitto "$!"

build/wsgate-echo --host 127.0.0.1 --port "$echo_port" >/dev/null &
pids+=($!)
wait_port "$echo_port" wsgate-echo "$!"

config=config/demo.json
if [ "$gw_port" != 8080 ] || [ "$echo_port" != 9000 ] || [ "$mqtt_port" != 1883 ] || [ "$host" != 127.0.0.1 ]; then
  config=$run/wsgate.json
  "$py" - "$root" "$config" "$host" "$gw_port" "$echo_port" "$mqtt_port" <<'EOF'
import json, os, sys
root, out, host, gw, echo, mqtt = sys.argv[1:]
with open(os.path.join(root, "config", "demo.json")) as f:
    cfg = json.load(f)
cfg["listen"] = [{"host": host, "port": int(gw)}]
cfg["static"]["dir"] = os.path.join(root, "www")
for b in cfg["brokers"].values():
    b["uri"] = "tcp://127.0.0.1:%s" % mqtt
for r in cfg["routes"]:
    if r.get("type") == "tcp":
        r["target"]["port"] = int(echo)
with open(out, "w") as f:
    json.dump(cfg, f, indent=2)
EOF
fi

build/wsgate -c "$config" &
pids+=($!)
wait_port "$gw_port" wsgate "$!"

shown=$host
[ "$host" = 0.0.0.0 ] && shown=127.0.0.1
cat <<MSG

  wsgate demo is up (config: $config)

    open:     http://$shown:$gw_port/

    echo:     ws://$shown:$gw_port/echo   -> wsgate-echo on 127.0.0.1:$echo_port
    mqtt:     ws://$shown:$gw_port/bus    -> mosquitto on 127.0.0.1:$mqtt_port
              (JSON envelope; publish to demo/+/in, subscribe within demo/#)
    try:      mosquitto_pub -h 127.0.0.1 -p $mqtt_port -t demo/cli/out -m hello
    health:   http://$shown:$gw_port/healthz
    metrics:  http://$shown:$gw_port/metrics

  Ctrl-C stops it.
MSG
wait -n "${pids[@]}"

#!/usr/bin/env bash
# Runs the demo: installs what is missing, builds, starts the TCP echo backend
# (127.0.0.1:9000) and wsgate on config/demo.json (http://127.0.0.1:8080/).
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 >/dev/null

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

build/wsgate-echo --host 127.0.0.1 --port 9000 &
pids+=($!)

build/wsgate -c config/demo.json &
pids+=($!)

for _ in $(seq 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then break; fi
  sleep 0.1
done
cat <<MSG

  wsgate demo is up:
    page:     http://127.0.0.1:8080/
    echo:     ws://127.0.0.1:8080/echo   (subprotocol "binary" or none)
    health:   http://127.0.0.1:8080/healthz
    metrics:  http://127.0.0.1:8080/metrics

  Ctrl-C stops it.
MSG
wait -n "${pids[@]}"

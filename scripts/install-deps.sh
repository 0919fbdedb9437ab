#!/usr/bin/env bash
# Installs what wsgate needs to build, test and run its demo on Debian 12
# (bookworm), as root. Safe to run again: apt skips what is there.
set -euo pipefail

packages=(
  # build
  cmake pkg-config build-essential clang libclang-rt-14-dev clang-format
  libwebsockets-dev libpaho-mqtt-dev libjansson-dev libcmocka-dev libssl-dev zlib1g-dev
  # tests: real peers and clients
  python3-websockets python3-paho-mqtt mosquitto mosquitto-clients openssl valgrind strace
  websockify
  # tests: scale-out (a NATS cluster with MQTT, HAProxy in front of the gateways)
  nats-server haproxy
  # benchmarks: the peers a user would write instead (bench/relays/go; the Node
  # relay comes from npm) and the plots
  golang-go golang-github-gorilla-websocket-dev gnuplot-nox
  # tests: noVNC in headless Chromium against a real VNC server (novnc: Debian's
  # own page, served by `wsgate --web /usr/share/novnc`)
  chromium xvfb x11vnc x11-xserver-utils novnc
  # tests: the Docker image, built with podman on a debootstrapped base
  # (tests/docker/; python3-yaml reads docker/compose.yaml)
  podman debootstrap python3-yaml
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The mosquitto package starts a system broker on port 1883; tests start their
# own on free ports, and the demo starts its own. Leave the system one alone.
echo "install-deps: installed ${missing[*]}"

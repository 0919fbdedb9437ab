#!/usr/bin/python3
"""bench/idle.py - resident memory per idle bridged connection, and connect rate.

Starts wsgate-echo and wsgate (a tcp route to it) from a build directory, opens N
WebSocket connections to the route (each one a client socket and a backend socket
in wsgate), waits, and prints wsgate's RSS growth per connection. N is limited by
the hard RLIMIT_NOFILE (wsgate needs 2 descriptors per connection).

  bench/idle.py [N] [BUILD_DIR]        # defaults: 5000 build
"""
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
BUILD = sys.argv[2] if len(sys.argv) > 2 else "build"
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
LIMIT = min(HARD, 2 * N + 1000)
resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, HARD))


def raise_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, HARD))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


echo = subprocess.Popen([os.path.join(BUILD, "wsgate-echo"), "--host", "127.0.0.1", "--port", "0"],
                        stdout=subprocess.PIPE, preexec_fn=raise_limit)
echo_port = int(echo.stdout.readline().split()[-1].split(b":")[-1])
port = free_port()
cfg = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
cfg.write('{"listen":[{"host":"127.0.0.1","port":%d}],"limits":{"max_connections":0},'
          '"routes":[{"path":"/echo","type":"tcp","target":{"host":"127.0.0.1","port":%d}}]}'
          % (port, echo_port))
cfg.close()
gw = subprocess.Popen([os.path.join(BUILD, "wsgate"), "-c", cfg.name, "--log-level", "warn"],
                      preexec_fn=raise_limit)
time.sleep(0.5)
before = rss_kb(gw.pid)
req = (b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
socks = []
t0 = time.monotonic()
for i in range(N):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    socks.append(s)
    if i % 500 == 499 or i == N - 1:
        for x in socks[-(i % 500 + 1):]:
            assert x.recv(4096).startswith(b"HTTP/1.1 101")
took = time.monotonic() - t0
time.sleep(2.0)
after = rss_kb(gw.pid)
print("%d idle bridged connections: connected in %.2f s (%.0f/s); wsgate RSS %d kB -> %d kB, "
      "%.2f KiB per connection" % (N, took, N / took, before, after, (after - before) / N))
for s in socks:
    s.close()
gw.terminate()
gw.wait()
echo.terminate()
os.unlink(cfg.name)

"""test_proxy_protocol.py - the PROXY protocol in front of wsgate and behind it.

listen[].proxy_protocol: every connection starts with a v1 or v2 header
(before HTTP, and before TLS on a TLS listener); its source address is the
client: logs' peer=, and the start of the trusted_proxies chain. A header
that is invalid, or missing for 5 s, closes the connection without a byte
of answer and counts in wsgate_proxy_protocol_errors_total.

A tcp route's "send_proxy": "v1" | "v2" writes a header to the backend
before any client byte: the client as resolved, and the address the client
connected to.

Real parts: Debian's haproxy in front (send-proxy, send-proxy-v2, and
send-proxy-v2 onto a TLS listener, haproxy passing TLS through in TCP mode),
clients bound to 127.0.0.2 so that the address the header carries differs
from haproxy's own (127.0.0.1); python websockets as the client; backends
of the test's own that read the header."""

import asyncio
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time

import harness
import peers
from harness import HOST, GatewayTestCase, run_async

import websockets

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
OPENSSL = "/usr/bin/openssl"
CLIENT_IP = "127.0.0.2"  # a loopback address that is not haproxy's own
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1_header(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2_header(src, dst, sport, dport, tlv=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlv
    return V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def parse_header(data):
    """(version, src, dst, sport, dport, header_len) of a header at the start
    of data, or None if incomplete."""
    if data.startswith(b"PROXY "):
        end = data.find(b"\r\n")
        if end < 0:
            return None
        f = data[:end].decode().split(" ")
        if f[1] == "UNKNOWN":
            return (1, None, None, 0, 0, end + 2)
        return (1, f[2], f[3], int(f[4]), int(f[5]), end + 2)
    if len(data) >= 16 and data.startswith(V2_SIG):
        n = struct.unpack("!H", data[14:16])[0]
        if len(data) < 16 + n:
            return None
        a = data[16:16 + n]
        if data[13] == 0x11:
            return (2, socket.inet_ntoa(a[0:4]), socket.inet_ntoa(a[4:8]),
                    *struct.unpack("!HH", a[8:12]), 16 + n)
        if data[13] == 0x21:
            return (2, socket.inet_ntop(socket.AF_INET6, a[0:16]),
                    socket.inet_ntop(socket.AF_INET6, a[16:32]), *struct.unpack("!HH", a[32:36]),
                    16 + n)
        return (2, None, None, 0, 0, 16 + n)
    return None


class ProxyReadingBackend(peers.Server):
    """Reads the PROXY header each connection starts with (recorded in
    headers[i]), then echoes everything after it."""

    def __init__(self, **kw):
        self.headers = []
        super().__init__(**kw)

    def serve(self, conn, index):
        data = b""
        while True:
            h = parse_header(data)
            if h:
                break
            chunk = conn.recv(4096)
            if not chunk:
                self.headers.append(("no header", data))
                return
            data += chunk
        self.headers.append(h)
        rest = data[h[5]:]
        while True:
            if rest:
                conn.sendall(rest)
            rest = conn.recv(65536)
            if not rest:
                break


def connect_from(ip, port, timeout=5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((ip, 0))
    s.connect((HOST, port))
    return s


async def echo_over(sock, uri, payload, ssl_ctx=None):
    """Sends payload and collects its echo (a raw route may return it in
    several messages)."""
    kw = {"sock": sock}
    if ssl_ctx:
        kw.update(ssl=ssl_ctx, server_hostname=HOST)
    async with websockets.connect(uri, **kw) as ws:
        await ws.send(payload)
        got = b""
        while len(got) < len(payload):
            got += await asyncio.wait_for(ws.recv(), 5)
        return got


def closed_without_answer(sock, timeout):
    """True if the peer closes (EOF or reset) within timeout without sending
    a byte; the seconds it took as the second value."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        data = b""
    except socket.timeout:
        return False, timeout
    return data == b"", time.monotonic() - start


def proxy_errors(port):
    return harness.metric(harness.parse_prometheus(harness.http_get(port, "/metrics").body.decode()),
                          "wsgate_proxy_protocol_errors_total")


class ProxyProtocolTest(GatewayTestCase):
    def gateway(self, echo_port, proxy_listener=None, **extra):
        self.plain = harness.free_port()
        self.proxied = harness.free_port()
        listen = [{"host": HOST, "port": self.plain},
                  dict({"host": HOST, "port": self.proxied, "proxy_protocol": True},
                       **(proxy_listener or {}))]
        cfg = {"listen": listen,
               "routes": [{"path": "/echo", "type": "tcp",
                           "target": {"host": HOST, "port": echo_port}}]}
        cfg.update(extra)
        return self.h.start_gateway(cfg)

    def peers_logged(self, gw):
        return re.findall(r'connection open" .*?peer=(\S+) client=(\S+)', gw.log())

    def test_v1_and_v2_headers_name_the_peer(self):
        echo = peers.add(self.h, peers.BannerEchoBackend())
        gw = self.gateway(echo.port)
        uri = "ws://%s:%d/echo" % (HOST, self.proxied)
        s = connect_from(HOST, self.proxied)
        s.sendall(v1_header("192.0.2.7", "198.51.100.1", 56324, 443))
        self.assertEqual(run_async(echo_over(s, uri, b"v1")), b"v1")
        # v2, with a TLV, the header arriving a few bytes at a time
        s = connect_from(HOST, self.proxied)
        h = v2_header("198.51.100.9", "198.51.100.1", 1234, 443, tlv=b"\x04\x00\x02ab")
        for i in range(0, len(h), 5):
            s.sendall(h[i:i + 5])
            time.sleep(0.02)
        self.assertEqual(run_async(echo_over(s, uri, b"v2")), b"v2")
        # v2 LOCAL (a health check): the socket's own address stands
        s = connect_from(HOST, self.proxied)
        s.sendall(V2_SIG + b"\x20\x00\x00\x00")
        self.assertEqual(run_async(echo_over(s, uri, b"local")), b"local")
        peers_seen = [p for p, _ in self.peers_logged(gw)]
        self.assertEqual(peers_seen, ["192.0.2.7", "198.51.100.9", "127.0.0.1"])
        self.assertEqual(proxy_errors(self.plain), 0)

    def test_trusted_proxies_chain_starts_at_the_header(self):
        echo = peers.add(self.h, peers.BannerEchoBackend())
        gw = self.gateway(echo.port, trusted_proxies=["10.0.0.0/8"])
        uri = "ws://%s:%d/echo" % (HOST, self.proxied)

        async def with_xff(sock):
            async with websockets.connect(uri, sock=sock,
                                          extra_headers={"X-Forwarded-For": "203.0.113.5"}) as ws:
                await ws.send(b"x")
                return await ws.recv()
        s = connect_from(HOST, self.proxied)
        s.sendall(v1_header("10.1.2.3", "10.0.0.1", 5000, 80))  # a trusted proxy
        run_async(with_xff(s))
        s = connect_from(HOST, self.proxied)
        s.sendall(v1_header("192.0.2.66", "10.0.0.1", 5000, 80))  # not trusted: XFF ignored
        run_async(with_xff(s))
        self.assertEqual(self.peers_logged(gw),
                         [("10.1.2.3", "203.0.113.5"), ("192.0.2.66", "192.0.2.66")])

    def test_bad_and_late_headers_closed_and_counted(self):
        echo = peers.add(self.h, peers.BannerEchoBackend())
        self.gateway(echo.port)
        bad = [b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",       # no header at all
               b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",      # port out of range
               b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",            # LF without CR
               V2_SIG + b"\x21\x11\x00\x04abcd",               # IPv4 block too short
               b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"]  # a TLS ClientHello
        for data in bad:
            s = connect_from(HOST, self.proxied)
            s.sendall(data)
            closed, _ = closed_without_answer(s, 5)
            self.assertTrue(closed, data)
            s.close()
        self.assertTrue(peers.wait_until(lambda: proxy_errors(self.plain) == len(bad), 5))
        # Silent, and a header cut short: closed after 5 s, not before.
        start = time.monotonic()
        silent = connect_from(HOST, self.proxied)
        partial = connect_from(HOST, self.proxied)
        partial.sendall(b"PROXY TCP4 1.2.3.4 ")
        for s in (silent, partial):
            closed, _ = closed_without_answer(s, 12)
            self.assertTrue(closed)
            self.assertGreater(time.monotonic() - start, 4.5)
            s.close()
        self.assertLess(time.monotonic() - start, 9)
        self.assertEqual(proxy_errors(self.plain), len(bad) + 2)
        # A connection that closes having sent nothing (a TCP health check) is no error.
        connect_from(HOST, self.proxied).close()
        time.sleep(0.3)
        self.assertEqual(proxy_errors(self.plain), len(bad) + 2)
        # 300 connections waiting for their header hold up nobody: a good one
        # is served at once, then all 300 are closed at their deadline.
        waiting = [connect_from(HOST, self.proxied) for _ in range(300)]
        start = time.monotonic()
        s = connect_from(HOST, self.proxied)
        s.sendall(v1_header("192.0.2.7", "127.0.0.1", 1, 2))
        self.assertEqual(run_async(echo_over(s, "ws://%s:%d/echo" % (HOST, self.proxied), b"ok")),
                         b"ok")
        self.assertLess(time.monotonic() - start, 1.0)
        for w in waiting:
            closed, _ = closed_without_answer(w, 12)
            self.assertTrue(closed)
            w.close()
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(proxy_errors(self.plain), len(bad) + 2 + 300)

    def test_send_proxy_to_the_backend(self):
        backend = peers.add(self.h, ProxyReadingBackend())
        plain = harness.free_port()
        proxied = harness.free_port()
        cfg = {"listen": [{"host": HOST, "port": plain},
                          {"host": HOST, "port": proxied, "proxy_protocol": True}],
               "routes": [{"path": "/v1", "type": "tcp", "send_proxy": "v1",
                           "target": {"host": HOST, "port": backend.port}},
                          {"path": "/v2", "type": "tcp", "send_proxy": "v2",
                           "target": {"host": HOST, "port": backend.port}}]}
        self.h.start_gateway(cfg)
        # a direct client bound to 127.0.0.2: its own address and port
        s = connect_from(CLIENT_IP, plain)
        client_port = s.getsockname()[1]
        self.assertEqual(run_async(echo_over(s, "ws://%s:%d/v1" % (HOST, plain), b"a")), b"a")
        self.assertEqual(backend.headers[0], (1, CLIENT_IP, HOST, client_port, plain,
                                              len(v1_header(CLIENT_IP, HOST, client_port, plain))))
        # through a PROXY header: the header's client, and the address it reached
        s = connect_from(HOST, proxied)
        s.sendall(v1_header("192.0.2.7", "198.51.100.1", 56324, 443))
        self.assertEqual(run_async(echo_over(s, "ws://%s:%d/v2" % (HOST, proxied), b"b" * 100000)),
                         b"b" * 100000)
        self.assertEqual(backend.headers[1][:5], (2, "192.0.2.7", "198.51.100.1", 56324, 443))


def make_cert(directory):
    key, crt = os.path.join(directory, "gw.key"), os.path.join(directory, "gw.crt")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True, timeout=60)
    return crt, key


# The haproxy configuration README.md shows ("Behind a load balancer"), with
# the test's ports: TCP mode, so HTTP, WebSocket and TLS pass through as bytes.
HAPROXY_CFG = """global
    log stderr format short local0 warning

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend ws_v1
    bind 127.0.0.1:{v1_port}
    default_backend wsgate_v1
backend wsgate_v1
    server gw1 127.0.0.1:{gw_port} send-proxy

frontend ws_v2
    bind 127.0.0.1:{v2_port}
    default_backend wsgate_v2
backend wsgate_v2
    server gw1 127.0.0.1:{gw_port} send-proxy-v2

frontend wss_v2
    bind 127.0.0.1:{tls_port}
    default_backend wsgate_tls
backend wsgate_tls
    server gw1 127.0.0.1:{gw_tls_port} send-proxy-v2
"""


class HaproxyTest(GatewayTestCase):
    def test_haproxy_send_proxy_v1_v2_and_tls(self):
        if not os.path.exists(HAPROXY):
            self.fail("haproxy is not installed (scripts/install-deps.sh installs it)")
        echo = peers.add(self.h, ProxyReadingBackend())
        crt, key = make_cert(self.h.tmp)
        plain, gw_port, gw_tls_port = (harness.free_port() for _ in range(3))
        cfg = {"listen": [{"host": HOST, "port": plain},
                          {"host": HOST, "port": gw_port, "proxy_protocol": True},
                          {"host": HOST, "port": gw_tls_port, "proxy_protocol": True,
                           "tls": {"cert": crt, "key": key}}],
               "routes": [{"path": "/echo", "type": "tcp", "send_proxy": "v2",
                           "target": {"host": HOST, "port": echo.port}}]}
        gw = self.h.start_gateway(cfg)
        ports = {"v1_port": harness.free_port(), "v2_port": harness.free_port(),
                 "tls_port": harness.free_port(), "gw_port": gw_port, "gw_tls_port": gw_tls_port}
        path = self.h.write_file("haproxy.cfg", HAPROXY_CFG.format(**ports))
        check = subprocess.run([HAPROXY, "-c", "-f", path], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        log_path = self.h.path("haproxy.stderr")
        with open(log_path, "wb") as errf:
            proc = harness.popen([HAPROXY, "-db", "-f", path], stdout=errf, stderr=errf)
        self.h.processes.append(harness.Process("haproxy", proc, log_path, None))
        self.assertTrue(peers.wait_until(lambda: not harness.port_is_free(ports["tls_port"]), 10))

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        sources = []
        for name, ctx, scheme in (("v1_port", None, "ws"), ("v2_port", None, "ws"),
                                  ("tls_port", tls, "wss")):
            s = connect_from(CLIENT_IP, ports[name])
            sources.append(s.getsockname()[1])
            uri = "%s://%s:%d/echo" % (scheme, HOST, ports[name])
            self.assertEqual(run_async(echo_over(s, uri, name.encode(), ctx)), name.encode())
        # wsgate saw the client haproxy saw (127.0.0.2), not haproxy (127.0.0.1) ...
        logged = re.findall(r'connection open" .*?peer=(\S+)', gw.log())
        self.assertEqual(logged, [CLIENT_IP] * 3)
        # ... and passed it on to the backend, with the client's own port.
        self.assertEqual([h[1] for h in echo.headers], [CLIENT_IP] * 3)
        self.assertEqual([h[3] for h in echo.headers], sources)
        self.assertEqual(proxy_errors(plain), 0)


if __name__ == "__main__":
    harness.main()

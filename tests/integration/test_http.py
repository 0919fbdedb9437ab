"""test_http.py - the HTTP endpoints every listener serves: /healthz, /readyz,
/metrics (and that its counters follow real traffic), and static files."""

import asyncio
import time
import unittest

import websockets

import harness
from harness import HOST, GatewayTestCase, metric, parse_prometheus, run_async


class EndpointsTest(GatewayTestCase):
    """One gateway with two listeners, an echo route and a route whose backend refuses."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        _, cls.echo_port = cls.ch.start_echo()
        cls.ports = [harness.free_port(), harness.free_port()]
        cls.config = {
            "listen": [{"host": HOST, "port": p} for p in cls.ports],
            "routes": [
                {"name": "echo", "path": "/echo", "type": "tcp", "subprotocols": ["binary"],
                 "target": {"host": HOST, "port": cls.echo_port}},
                {"name": "dead", "path": "/dead", "type": "tcp",
                 "target": {"host": HOST, "port": harness.refused_port()}},
            ],
        }
        cls.gw = cls.ch.start_gateway(cls.config)

    def metrics(self, port=None):
        r = harness.http_get(port or self.ports[0], "/metrics")
        self.assertEqual(r.status, 200)
        ctype = r.header("content-type") or ""
        self.assertTrue(ctype.startswith("text/plain"), "content-type %r" % ctype)
        try:
            return parse_prometheus(r.body.decode("utf-8"))
        except ValueError as e:
            self.fail("/metrics is not Prometheus text: %s" % e)

    def counter(self, samples, name, **labels):
        v = metric(samples, name, **labels)
        return 0.0 if v is None else v

    def test_healthz_on_every_listener(self):
        for port in self.ports:
            r = harness.http_get(port, "/healthz")
            self.assertEqual(r.status, 200, "port %d" % port)
            self.assertEqual(r.json(), {"status": "ok"}, "port %d" % port)

    def test_readyz_without_brokers(self):
        for port in self.ports:
            r = harness.http_get(port, "/readyz")
            self.assertEqual(r.status, 200, "port %d: %r" % (port, r))

    def test_metrics_on_every_listener(self):
        for port in self.ports:
            self.metrics(port)

    async def echo_session(self, messages):
        async with websockets.connect(self.gw.url("/echo"), subprotocols=["binary"],
                                      max_size=None) as ws:
            active = None
            for m in messages:
                await ws.send(m)
                got = b""
                while len(got) < len(m):
                    part = await asyncio.wait_for(ws.recv(), 10)
                    self.assertIsInstance(part, bytes)
                    got += part
                self.assertEqual(got, m)
                if active is None:  # the session is surely up after one round trip
                    active = self.counter(self.metrics(), "wsgate_connections_active",
                                          route="echo")
        return active

    def test_metrics_follow_traffic(self):
        before = self.metrics()
        messages = [bytes([i]) * (100 + i) for i in range(7)]
        n, nbytes = len(messages), sum(len(m) for m in messages)
        active_during = run_async(self.echo_session(messages))

        # connections_active drops back once the client has gone.
        deadline = time.monotonic() + 2.0
        while True:
            after = self.metrics()
            active = metric(after, "wsgate_connections_active", route="echo")
            if active == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(active_during, 1, "connections_active during the session")
        self.assertEqual(active, 0, "connections_active 2 s after the client left")

        def delta(name, **labels):
            return self.counter(after, name, **labels) - self.counter(before, name, **labels)

        self.assertEqual(delta("wsgate_connections_total", route="echo"), 1)
        self.assertGreaterEqual(delta("wsgate_messages_total", route="echo", direction="in"), n)
        self.assertGreaterEqual(delta("wsgate_messages_total", route="echo", direction="out"), n)
        self.assertGreaterEqual(delta("wsgate_bytes_total", route="echo", direction="in"), nbytes)
        self.assertGreaterEqual(delta("wsgate_bytes_total", route="echo", direction="out"), nbytes)

    async def refused_session(self):
        async with websockets.connect(self.gw.url("/dead")) as ws:
            return await harness.recv_until_closed(ws)

    def test_metrics_series_present(self):
        run_async(self.echo_session([b"x"]))
        _, code, _ = run_async(self.refused_session())
        self.assertEqual(code, 1011)
        s = self.metrics()
        names = {(name, tuple(sorted(dict(labels)))) for name, labels in s}
        for name, labels in [
            ("wsgate_connections_active", ("route",)),
            ("wsgate_connections_total", ("route",)),
            ("wsgate_messages_total", ("direction", "route")),
            ("wsgate_bytes_total", ("direction", "route")),
            ("wsgate_backend_errors_total", ("reason", "route")),
        ]:
            self.assertIn((name, labels), names, "series %s{%s} missing" % (name, ",".join(labels)))
        for route in ("echo", "dead"):
            self.assertIsNotNone(metric(s, "wsgate_connections_total", route=route), route)
            self.assertIsNotNone(metric(s, "wsgate_connections_active", route=route), route)
        for direction in ("in", "out"):
            self.assertIsNotNone(metric(s, "wsgate_messages_total", route="echo", direction=direction))
            self.assertIsNotNone(metric(s, "wsgate_bytes_total", route="echo", direction=direction))
        errors = sum(v for (name, labels), v in s.items()
                     if name == "wsgate_backend_errors_total" and ("route", "dead") in labels)
        self.assertGreaterEqual(errors, 1, "wsgate_backend_errors_total{route=\"dead\"} after a refusal")


class StaticFilesTest(GatewayTestCase):
    INDEX = b"<!doctype html><title>wsgate test</title><p>index page</p>\n"
    FILE = b"a file in a sub directory\n"
    SECRET = b"root:x:0:0:this file is outside the static dir\n"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ch.write_file("www/index.html", cls.INDEX)
        cls.ch.write_file("www/sub/file.txt", cls.FILE)
        cls.ch.write_file("secret.txt", cls.SECRET)
        cls.port = harness.free_port()
        cls.gw = cls.ch.start_gateway({
            "listen": [{"host": HOST, "port": cls.port}],
            "static": {"mount": "/", "dir": cls.ch.path("www")},
        })

    def test_index(self):
        r = harness.http_get(self.port, "/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, self.INDEX)
        self.assertTrue((r.header("content-type") or "").startswith("text/html"), r.headers)

    def test_file_in_subdirectory(self):
        r = harness.http_get(self.port, "/sub/file.txt")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, self.FILE)

    def test_h2c_upgrade_served_as_http11(self):
        # lws 4.1.6 would switch to HTTP/2 and send a file past 16 KiB in one
        # oversized DATA frame (the client aborts); wsgate ignores the offer.
        import socket
        big = bytes(range(256)) * 200  # 51,200 bytes
        self.ch.write_file("www/big.bin", big)
        s = socket.create_connection((HOST, self.port), timeout=5)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < len(big):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:200])
        self.assertEqual(body[:len(big)], big)

    def test_missing_file_404(self):
        r = harness.http_get(self.port, "/nope")
        self.assertEqual(r.status, 404)

    def test_endpoints_still_answer_with_static_at_root(self):
        r = harness.http_get(self.port, "/healthz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"status": "ok"})

    def test_no_path_traversal(self):
        for path in ("/../etc/passwd", "/../secret.txt", "/sub/../../secret.txt",
                     "/%2e%2e/secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
                     "/..%2fsecret.txt"):
            with self.subTest(path=path):
                try:
                    r = harness.http_get(self.port, path)
                except (OSError, harness.http.client.HTTPException):
                    continue  # dropping the connection is also a refusal
                self.assertNotIn(b"root:", r.body, "%s served a file outside the static dir"
                                 % path)
                self.assertNotEqual(r.status, 200, "%s answered 200" % path)


if __name__ == "__main__":
    unittest.main(verbosity=2)

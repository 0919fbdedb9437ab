"""test_auth_http.py - "auth": "http" routes (SPEC-2 A, issue 16) with the
real gateway, a real auth service written here (asyncio HTTP/1.1 on a free
port, which counts and keeps every request), a real mosquitto, a real TCP
echo (wsgate-echo) and a recording TCP backend.

The service decides by the "sid" cookie: alice-* / load-* / slow-* allowed
with claims {"user": <sid>} (slow-* and load-* after 1 s), denied-* 401,
banned-* 403, teapot-* 500, evil-* allowed with a user holding '/', hang-*
never answers (a gateway of its own with timeout_ms 1500).

Covered: allowed with claims used in an mqtt topic template (subscribe,
publish, presence); the body the service gets (only the listed headers,
lower-case names); 401 / 403 / 500 / timeout / service down close with
4401 / 4403 / 1013 right after the upgrade; a refused client reaches no
backend (no TCP connect, no subscription, no presence) and what it sent
while held goes nowhere; claims that break a template (1008); cache hits
(the service counts) and one request per key in flight; the metrics; 1,000
concurrent handshakes against the 1 s service finish in about 1 s while
another client's echo round trips stay under 100 ms; no cookie value in
the log.
"""

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import unittest

import harness
from mqtt_peers import (MqttTestCase, Mosquitto, Publisher, Subscriber, WsClient, _SocketCloser,
                        gateway_config, have_mosquitto, metrics, unique_id, wait_ready)

TIMEOUT_MS = 1500  # the gateway of the timeout test
# The class's gateway: generous, so that 1,000 answers after 1 s from a Python
# service sharing 2 cores with everything else never count as timeouts.
LOAD_TIMEOUT_MS = 10000
LOAD_CLIENTS = int(os.environ.get("WSGATE_AUTH_LOAD_CLIENTS", "1000"))


class AuthService:
    """An HTTP/1.1 auth service on an asyncio loop of its own (a thread)."""

    def __init__(self):
        self.requests = []  # (sid, body dict, headers dict) in arrival order
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.port = None
        self.in_flight = 0
        self.max_in_flight = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.server = await asyncio.start_server(self._serve, harness.HOST, 0, backlog=4096)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def count(self, sid):
        with self.lock:
            return sum(1 for r in self.requests if r[0] == sid)

    def last(self, sid):
        with self.lock:
            return [r for r in self.requests if r[0] == sid][-1]

    async def _serve(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            doc = json.loads(body)
            cookie = doc.get("headers", {}).get("cookie") or ""
            sid = ""
            for part in cookie.split(";"):
                k, _, v = part.strip().partition("=")
                if k == "sid":
                    sid = v
            with self.lock:
                self.requests.append((sid, doc, headers, lines[0]))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                status, answer = await self._decide(sid)
            finally:
                with self.lock:
                    self.in_flight -= 1
            if status is None:
                return
            if status == "http10":
                # an HTTP/1.0 answer whose body ends with the connection
                writer.write(b'HTTP/1.0 200 OK\r\n\r\n{"claims": {"user": "old"}}')
                await writer.drain()
                return
            if status == "cut":
                # a 200 that promises more body than it sends, then closes
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"cla")
                await writer.drain()
                return
            data = json.dumps(answer).encode() if answer is not None else b""
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(data))
                         + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _decide(self, sid):
        kind = sid.split("-")[0]
        if kind in ("slow", "load"):
            await asyncio.sleep(1.0)
        if kind in ("alice", "slow", "load"):
            return 200, {"claims": {"user": sid, "n": 7}}
        if kind == "plain":
            return 200, None
        if kind == "denied":
            return 401, {"claims": {"user": "x"}}
        if kind == "banned":
            return 403, None
        if kind == "teapot":
            return 500, None
        if kind == "evil":
            return 200, {"claims": {"user": "a/b"}}
        if kind == "http10":
            return "http10", None
        if kind == "cut":
            return "cut", None
        if kind == "hang":
            await asyncio.sleep(30)
            return None, None
        return 401, None

    def close(self):
        async def stop():
            self.server.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# Echo round trips on the gateway from a process of its own (so that the
# test's 1,000 clients do not delay its reads): prints "RTT start" in seconds
# per line until its stdin closes (or `seconds` pass).
PROBER = r"""
import select, sys, time
sys.path.insert(0, sys.argv[1])
import harness
port, seconds = int(sys.argv[2]), float(sys.argv[3])
r = harness.raw_upgrade(port, "/open")
assert r.status == 101, r.status_line
ws = harness.RawWebSocket(r)
end = time.monotonic() + seconds
while time.monotonic() < end and not select.select([sys.stdin], [], [], 0)[0]:
    t = time.monotonic()
    ws.send(harness.OP_TEXT, b"probe")
    fin, op, data = ws.recv_frame(5)
    assert data == b"probe", data
    print("%.6f %.6f" % (time.monotonic() - t, t), flush=True)
    time.sleep(0.01)
"""

LIVE = {"name": "live", "path": "/live", "type": "mqtt", "broker": "main", "auth": "http",
        "subscribe": [{"filter": "users/{auth.user}/inbox/#"}],
        "publish": {"topic": "users/{auth.user}/outbox"},
        "on_connect": {"topic": "presence/{auth.user}", "payload": "on"}}


class AuthHttpTest(MqttTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not have_mosquitto():
            raise unittest.SkipTest("mosquitto not found")
        h = cls.ch
        cls.svc = AuthService()
        cls.addClassCleanup(cls.svc.close)
        cls.mosq = Mosquitto(h)
        cls.rec = h.recording_backend()
        _, cls.echo_port = h.start_echo()
        cls.port = harness.free_port()
        cls.gw_id = unique_id("wsgate-authhttp")
        routes = [
            LIVE,
            {"name": "rec", "path": "/rec", "type": "tcp", "auth": "http",
             "target": {"host": harness.HOST, "port": cls.rec.port}},
            {"name": "echo", "path": "/echo", "type": "tcp", "auth": "http", "message": "text",
             "target": {"host": harness.HOST, "port": cls.echo_port}},
            {"name": "open", "path": "/open", "type": "tcp", "message": "text",
             "target": {"host": harness.HOST, "port": cls.echo_port}},
        ]
        cfg = gateway_config(cls.port, cls.mosq, routes, cls.gw_id,
                             limits={"max_connections": 5000})
        cfg["auth"] = {"http": {"url": "http://%s:%d/ws-auth" % (harness.HOST, cls.svc.port),
                                "timeout_ms": LOAD_TIMEOUT_MS, "cache_s": 30,
                                "headers": ["Cookie", "x-tenant"]}}
        cls.gw = h.start_gateway(cfg)
        wait_ready(cls.port, 200, timeout=15.0)
        cls.mosq.wait_connected(cls.gw_id, 1, timeout=10.0)
        cls.cookies = []  # every cookie value of the run: none may be logged

    # -- helpers --

    def sid(self, kind):
        s = "%s-%s" % (kind, secrets.token_hex(8))
        self.cookies.append(s)
        return s

    def connect(self, path, sid, headers=None, port=None):
        hdrs = {"Cookie": "theme=dark; sid=" + sid}
        hdrs.update(headers or {})
        c = WsClient(port or self.port, path, headers=hdrs)
        self.h.backends.append(_SocketCloser(c))
        return c

    def assert_closed(self, c, code, reason_part):
        _, close = c.read_until_close(timeout=10.0)
        self.assertEqual(close[0], code, close)
        self.assertIn(reason_part, close[1].decode(), close)
        return close

    def assert_nothing_logged(self):
        log = self.gw.log()
        for s in self.cookies:
            self.assertNotIn(s, log, "a cookie value is in the gateway's log")

    def metric(self, name, **labels):
        return harness.metric(metrics(self.port), name, **labels) or 0

    # -- allowed --

    def test_allowed_claims_fill_mqtt_templates(self):
        sid = self.sid("alice")
        presence = self.subscriber("presence/#")
        outbox = self.subscriber("users/+/outbox")
        flt = "users/%s/inbox/#" % sid
        c = self.connect("/live?a=1", sid, headers={"X-Tenant": "t1", "Origin": "https://s.example",
                                                    "Authorization": "Bearer not-forwarded"})
        self.mosq.wait_filter("SUBSCRIBE", self.gw_id, flt, 1, timeout=10.0)
        pub = Publisher(self.h, self.mosq.port)
        pub.publish("users/%s/inbox/x" % sid, "hello", qos=1)
        self.assertEqual(c.recv_text(10), "hello")
        c.send_text("from me")
        got = outbox.wait_for(1)[0]
        self.assertEqual(got[:2], ("users/%s/outbox" % sid, b"from me"))
        self.assertEqual(presence.wait_for(1)[0][:2], ("presence/" + sid, b"on"))
        # what the service was told: SPEC-2 A's body, only the listed headers
        _, body, headers, line = self.svc.last(sid)
        self.assertEqual(line, "POST /ws-auth HTTP/1.1")
        self.assertEqual(headers.get("content-type"), "application/json")
        self.assertEqual(body, {"route": "live", "path": "/live", "query": "a=1",
                                "client": "127.0.0.1", "origin": "https://s.example",
                                "subprotocols": [],
                                "headers": {"cookie": "theme=dark; sid=" + sid,
                                            "x-tenant": "t1"}})
        c.close()
        self.assert_nothing_logged()

    # -- refused --

    def test_refusals_close_after_upgrade_and_reach_no_backend(self):
        presence = self.subscriber("presence/#")
        for kind, code, part in [("denied", 4401, "not authenticated"),
                                 ("banned", 4403, "forbidden"),
                                 ("teapot", 1013, "answered 500")]:
            sid = self.sid(kind)
            # the mqtt route: no subscription, no presence, nothing published
            outbox = self.subscriber("users/+/outbox")
            c = self.connect("/live", sid)
            c.send_text("sent while held")
            self.assert_closed(c, code, part)
            # a tcp route: the backend sees no connection at all
            before = len(self.rec.connections)
            c = self.connect("/rec", sid)
            c.send_text("sent while held")
            self.assert_closed(c, code, part)
            time.sleep(0.3)
            self.assertEqual(len(self.rec.connections), before, kind)
            self.assertEqual(self.mosq.filter_count("SUBSCRIBE", self.gw_id,
                                                    "users/%s/inbox/#" % sid), 0, kind)
            self.assertEqual(outbox.snapshot(), [], kind)
            # refusals are not cached: each handshake asked again
            self.assertEqual(self.svc.count(sid), 2, kind)
        self.assertEqual([m for m in presence.snapshot()
                          if any(k in m[0] for k in ("denied", "banned", "teapot"))], [])
        self.assert_nothing_logged()

    def test_timeout_and_service_down_fail_closed(self):
        port = harness.free_port()
        cfg = gateway_config(port, self.mosq, [LIVE], unique_id("wsgate-authslow"))
        cfg["auth"] = {"http": {"url": "http://%s:%d/x" % (harness.HOST, self.svc.port),
                                "timeout_ms": TIMEOUT_MS, "headers": ["cookie"]}}
        self.h.start_gateway(cfg)
        wait_ready(port, 200, timeout=15.0)
        t0 = time.monotonic()
        c = self.connect("/live", self.sid("hang"), port=port)
        self.assert_closed(c, 1013, "timed out")
        took = time.monotonic() - t0
        self.assertGreater(took, TIMEOUT_MS / 1000 - 0.2)
        self.assertLess(took, TIMEOUT_MS / 1000 + 3)
        # a gateway whose service is down
        port = harness.free_port()
        cfg = gateway_config(port, self.mosq, [LIVE], unique_id("wsgate-authdown"))
        cfg["auth"] = {"http": {"url": "http://%s:%d/x" % (harness.HOST, harness.refused_port()),
                                "headers": ["cookie"]}}
        gw = self.h.start_gateway(cfg)
        wait_ready(port, 200, timeout=15.0)
        c = self.connect("/live", self.sid("alice"), port=port)
        self.assert_closed(c, 1013, "unreachable")
        m = metrics(port)
        self.assertEqual(harness.metric(m, "wsgate_auth_requests_total", result="unavailable"), 1)
        self.assertTrue(gw.proc.poll() is None)

    def test_answers_cut_short(self):
        """A 200 whose body is cut short allows nothing; an HTTP/1.0 answer
        whose body ends with the connection is a whole answer."""
        c = self.connect("/echo", self.sid("cut"))
        self.assert_closed(c, 1013, "auth service")
        c = self.connect("/echo", self.sid("http10"))
        c.send_text("x")
        self.assertEqual(c.recv_text(5), "x")

    def test_claims_that_break_a_template_refuse(self):
        c = self.connect("/live", self.sid("evil"))
        self.assert_closed(c, 1008, "may not be empty or hold")

    # -- cache, one request per key --

    def test_cache_hits_and_one_request_in_flight(self):
        hits = self.metric("wsgate_auth_cache_hits_total")
        sid = self.sid("alice")
        for _ in range(3):
            c = self.connect("/echo", sid)
            c.send_text("ping")
            self.assertEqual(c.recv_text(5), "ping")
            c.close()
        self.assertEqual(self.svc.count(sid), 1)
        self.assertEqual(self.metric("wsgate_auth_cache_hits_total"), hits + 2)
        # another forwarded header value is another key
        c = self.connect("/echo", sid, headers={"X-Tenant": "other"})
        c.send_text("ping")
        self.assertEqual(c.recv_text(5), "ping")
        self.assertEqual(self.svc.count(sid), 2)
        # five clients with one key while its request is in flight: one request
        sid = self.sid("slow")
        clients = [self.connect("/echo", sid) for _ in range(5)]
        for i, c in enumerate(clients):
            c.send_text("m%d" % i)
        for i, c in enumerate(clients):
            self.assertEqual(c.recv_text(5), "m%d" % i)
        self.assertEqual(self.svc.count(sid), 1)
        self.assert_nothing_logged()

    def test_client_leaving_while_held(self):
        """A client that goes while its request is in flight is forgotten; the
        others waiting on the same key still get the answer."""
        sid = self.sid("slow")
        gone = self.connect("/echo", sid)
        stays = self.connect("/echo", sid)
        time.sleep(0.2)
        gone.ws.close()
        stays.send_text("still here")
        self.assertEqual(stays.recv_text(5), "still here")
        self.assertEqual(self.svc.count(sid), 1)
        # a client alone on its key that leaves: the answer goes to no one
        alone = self.connect("/echo", self.sid("slow"))
        time.sleep(0.2)
        alone.ws.close()
        time.sleep(1.2)
        self.assertTrue(self.gw.proc.poll() is None)

    def test_metrics(self):
        m0 = metrics(self.port)
        c = self.connect("/echo", self.sid("plain"))
        c.send_text("x")
        self.assertEqual(c.recv_text(5), "x")
        c = self.connect("/echo", self.sid("denied"))
        self.assert_closed(c, 4401, "not authenticated")
        m1 = metrics(self.port)
        for result, n in [("allowed", 1), ("unauthorized", 1)]:
            self.assertEqual(
                harness.metric(m1, "wsgate_auth_requests_total", result=result),
                (harness.metric(m0, "wsgate_auth_requests_total", result=result) or 0) + n)
        self.assertEqual(harness.metric(m1, "wsgate_auth_request_duration_seconds_count"),
                         (harness.metric(m0, "wsgate_auth_request_duration_seconds_count")
                          or 0) + 2)
        self.assertGreaterEqual(
            harness.metric(m1, "wsgate_auth_request_duration_seconds_bucket", le="+Inf"),
            harness.metric(m1, "wsgate_auth_request_duration_seconds_bucket", le="0.1"))

    # -- the loop never waits --

    def test_1000_handshakes_against_a_1s_service(self):
        import websockets

        n = LOAD_CLIENTS

        async def one(i):
            sid = "load-%d-%s" % (i, secrets.token_hex(4))
            ws = await websockets.connect(
                "ws://%s:%d/echo" % (harness.HOST, self.port), open_timeout=30,
                extra_headers={"Cookie": "sid=" + sid}, max_queue=None, ping_interval=None)
            await ws.send("hi-%d" % i)
            got = await asyncio.wait_for(ws.recv(), 30)
            assert got == "hi-%d" % i, got
            return ws

        async def main():
            t0 = self.load_t0 = time.monotonic()
            conns = await asyncio.gather(*(one(i) for i in range(n)))
            took = time.monotonic() - t0
            await asyncio.gather(*(ws.close() for ws in conns))
            return took

        probe = subprocess.Popen([sys.executable, "-c", PROBER, os.path.dirname(__file__),
                                  str(self.port), "60"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
        time.sleep(0.5)
        try:
            took = harness.run_async(main(), timeout=120)
        finally:
            probe.stdin.close()  # the probe's signal to stop
            out = probe.stdout.read()
            probe.wait(timeout=30)
        self.assertEqual(probe.returncode, 0)
        # the probes sent while the handshakes were under way
        samples = [tuple(map(float, line.split())) for line in out.decode().splitlines()]
        samples = [(r, t) for r, t in samples if self.load_t0 <= t <= self.load_t0 + took]
        self.assertGreater(len(samples), 10)
        rtts = [r for r, _ in samples]
        worst = max(rtts)
        slow = sorted(samples, reverse=True)[:5]
        print("\nslowest probes (ms @ s after the load began): %s" % ", ".join(
            "%.1f@%.2f" % (r * 1000, t - self.load_t0) for r, t in slow))
        during = len(rtts)
        ordered = sorted(rtts)
        p95 = ordered[int(len(ordered) * 0.95)]
        print("\n%d handshakes against a 1 s auth service: all echoed after %.2f s; "
              "%d probe round trips meanwhile: median %.1f ms, p95 %.1f ms, worst %.1f ms; "
              "service saw %d at once" % (n, took, during, ordered[len(ordered) // 2] * 1000,
                                          p95 * 1000, worst * 1000, self.svc.max_in_flight))
        # On a quiet 2-core machine: all through in 1.5-1.9 s, the probes
        # during them p95 5-30 ms, worst 130-450 ms (single samples see the
        # scheduler: a burst of 1,000 handshakes without auth shows ~75 ms
        # too). Other engineers' builds and fuzzers on the same 2 cores (load
        # 10 and ASan: 5 s, p95 630 ms) stretch all of it, so the bounds keep
        # only what must hold anyway: the requests were in flight together
        # (one after the other: 1,000 s), and the loop went on serving the
        # probe while the service took its 1 s (it never waited on it).
        self.assertGreaterEqual(self.svc.max_in_flight, n // 2, "requests were serialized")
        self.assertLess(took, 15.0, "the handshakes waited on each other")
        self.assertGreater(took, 0.9)
        self.assertLess(ordered[len(ordered) // 2], 0.1, "the loop stalled")
        self.assertLess(p95, 1.0, "the loop waited on the auth service")


if __name__ == "__main__":
    harness.main()

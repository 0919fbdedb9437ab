"""test_liveness.py - limits.ping_interval_s, idle_timeout_s and
max_messages_per_s (SPEC.md "limits"): a client that answers pings stays; one
that stops answering is dropped and its backend connection released; a
client with no data either way for idle_timeout_s gets 1001; one sending over
max_messages_per_s gets 1008 while a steady one under it is untouched."""

import socket
import struct
import time
import unittest

import harness
from harness import HOST, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


class LivenessTest(harness.GatewayTestCase):
    def start(self, limits):
        _, self.echo_port = self.h.start_echo()
        self.port = harness.free_port()
        self.h.start_gateway({"listen": [{"host": HOST, "port": self.port}], "limits": limits,
                              "routes": [{"name": "echo", "path": "/echo", "type": "tcp",
                                          "target": {"host": HOST, "port": self.echo_port}}]})

    def connect(self):
        return harness.RawWebSocket(harness.raw_upgrade(self.port, "/echo"))

    def active(self):
        r = harness.http_get(self.port, "/metrics")
        return harness.metric(harness.parse_prometheus(r.body.decode()),
                              "wsgate_connections_active", route="echo")

    def test_pings_answered_keep_the_connection(self):
        self.start({"ping_interval_s": 1})
        ws = self.connect()
        pings = 0
        deadline = time.monotonic() + 3.6
        while time.monotonic() < deadline:
            try:
                fin, op, data = ws.recv_frame(0.2)
            except socket.timeout:
                continue
            self.assertNotEqual(op, OP_CLOSE, "closed although it answered every ping")
            if op == OP_PING:
                pings += 1
                ws.send(OP_PONG, data)
        self.assertGreaterEqual(pings, 2, "the gateway did not ping an idle client")
        ws.send(OP_BINARY, b"still here")
        fin, op, data = ws.recv_frame(5)
        self.assertEqual((op, data), (OP_BINARY, b"still here"))

    def test_missed_pong_drops_client_and_backend(self):
        self.start({"ping_interval_s": 1})
        ws = self.connect()
        ws.send(OP_BINARY, b"x")
        self.assertEqual(ws.recv_frame(5)[1:], (OP_BINARY, b"x"))
        self.assertEqual(self.active(), 1)
        # Never answer: gone within two intervals or so, the slot freed.
        start = time.monotonic()
        deadline = start + 6
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                fin, op, data = ws.recv_frame(0.2)
            except socket.timeout:
                continue
            except (EOFError, ConnectionError):
                closed = True
        self.assertTrue(closed, "a client that never answered a ping was kept")
        took = time.monotonic() - start
        self.assertLess(took, 4.5)
        deadline = time.monotonic() + 3
        while self.active() != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.active(), 0)
        log = self.h.processes[-1].log()
        self.assertIn("client missed a pong", log)
        self.assertIn("close_code=1001", log)

    def test_idle_timeout(self):
        self.start({"idle_timeout_s": 1, "ping_interval_s": 0})
        busy, idle = self.connect(), self.connect()
        start = time.monotonic()
        got_close = None
        while time.monotonic() - start < 3.0:
            busy.send(OP_BINARY, b"tick")
            self.assertEqual(busy.recv_frame(5)[1:], (OP_BINARY, b"tick"))
            try:
                fin, op, data = idle.recv_frame(0.3)
                if op == OP_CLOSE and got_close is None:
                    got_close = (close_code(data), data[2:], time.monotonic() - start)
            except socket.timeout:
                pass
            except (EOFError, ConnectionError):
                break
        self.assertIsNotNone(got_close, "the idle client was not closed")
        self.assertEqual(got_close[0], 1001)
        self.assertIn(b"idle", got_close[1])
        self.assertGreaterEqual(got_close[2], 0.9)
        busy.send(OP_BINARY, b"after")
        self.assertEqual(busy.recv_frame(5)[1:], (OP_BINARY, b"after"))

    def test_message_rate_limit(self):
        self.start({"max_messages_per_s": 20, "ping_interval_s": 0})
        steady, flood = self.connect(), self.connect()
        for _ in range(15):  # 10/s for 1.5 s: under the limit
            steady.send(OP_TEXT, b"ok")
            self.assertEqual(steady.recv_frame(5)[1:], (OP_BINARY, b"ok"))
            time.sleep(0.1)
        for _ in range(200):
            try:
                flood.send(OP_TEXT, b"f")
            except OSError:
                break
        code = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                fin, op, data = flood.recv_frame(1)
            except (EOFError, ConnectionError, socket.timeout):
                break
            if op == OP_CLOSE:
                code = (close_code(data), data[2:])
                break
        self.assertIsNotNone(code, "the flooding client was not closed")
        self.assertEqual(code[0], 1008)
        self.assertIn(b"messages per second", code[1])
        steady.send(OP_TEXT, b"still ok")
        self.assertEqual(steady.recv_frame(5)[1:], (OP_BINARY, b"still ok"))


if __name__ == "__main__":
    unittest.main()

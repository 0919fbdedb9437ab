"""test_close_codes.py - how WebSocket connections end: backend refused (1011
naming the route), backend closed (1000 after its last bytes), message too
big (1009), invalid UTF-8 in a text frame (1007), client close (everything it
sent reaches the backend, then the backend sees EOF), SIGTERM (1001)."""

import asyncio
import os
import time
import unittest

import websockets

import harness
from harness import (HOST, OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT, GatewayTestCase, RawWebSocket,
                     close_payload, raw_upgrade, recv_until_closed, run_async)


def tcp_route(name, path, port, **extra):
    r = {"name": name, "path": path, "type": "tcp", "target": {"host": HOST, "port": port}}
    r.update(extra)
    return r


class CloseCodesTest(GatewayTestCase):
    def gateway(self, routes, **top):
        port = harness.free_port()
        cfg = {"listen": [{"host": HOST, "port": port}], "routes": routes}
        cfg.update(top)
        return self.h.start_gateway(cfg)

    def echo_gateway(self, **top):
        _, echo = self.h.start_echo()
        return self.gateway([tcp_route("echo", "/echo", echo, subprotocols=["binary"])], **top)

    def test_backend_refused_1011_names_route(self):
        gw = self.gateway([tcp_route("deadroute", "/dead", harness.refused_port())])

        async def go():
            async with websockets.connect(gw.url("/dead")) as ws:
                return await recv_until_closed(ws, 10)

        t0 = time.monotonic()
        msgs, code, reason = run_async(go(), 20)
        elapsed = time.monotonic() - t0
        self.assertEqual(code, 1011, "close code (reason %r)" % reason)
        self.assertIn("deadroute", reason)
        self.assertEqual(msgs, [])
        self.assertLess(elapsed, 4.0, "a refused backend should close the client at once")

    def test_long_reason_is_cut_between_characters(self):
        # A route name of 2-byte characters makes the reason longer than a
        # close frame holds (123 bytes): cut inside a character it would be
        # invalid UTF-8, and the client would fail the close with 1007.
        name = "r\u00e9" * 70
        gw = self.gateway([tcp_route(name, "/long", harness.refused_port())])

        async def go():
            async with websockets.connect(gw.url("/long")) as ws:
                return await recv_until_closed(ws, 10)

        msgs, code, reason = run_async(go(), 20)
        self.assertEqual(code, 1011, "close code (reason %r)" % reason)
        self.assertTrue(reason.startswith("route r\u00e9r\u00e9"), reason)
        self.assertLessEqual(len(reason.encode()), 123)
        self.assertGreaterEqual(len(reason.encode()), 120, "cut no more than one character")

    def test_backend_close_is_1000_after_its_data(self):
        backend = self.h.send_then_close_backend(b"bye")
        gw = self.gateway([tcp_route("bye", "/bye", backend.port)])

        async def go():
            async with websockets.connect(gw.url("/bye")) as ws:
                return await recv_until_closed(ws, 10)

        msgs, code, reason = run_async(go(), 20)
        for m in msgs:
            self.assertIsInstance(m, bytes, "binary route sent a text message")
        self.assertEqual(b"".join(msgs), b"bye")
        self.assertEqual(code, 1000, "close code (reason %r)" % reason)

    def test_message_too_big_1009(self):
        gw = self.echo_gateway(limits={"max_message_bytes": 1024})

        async def go():
            async with websockets.connect(gw.url("/echo"), subprotocols=["binary"]) as ws:
                small = os.urandom(1000)
                await ws.send(small)
                got = b""
                while len(got) < len(small):
                    got += await asyncio.wait_for(ws.recv(), 5)
                self.assertEqual(got, small, "a message under the limit must pass")
                await ws.send(os.urandom(2000))
                return await recv_until_closed(ws, 10)

        _, code, reason = run_async(go(), 20)
        self.assertEqual(code, 1009, "close code (reason %r)" % reason)

    def test_fragmented_message_too_big_1009(self):
        gw = self.echo_gateway(limits={"max_message_bytes": 1024})

        async def go():
            async with websockets.connect(gw.url("/echo"), subprotocols=["binary"]) as ws:
                # Four 500-byte fragments: each under the limit, the message over it.
                await ws.send([os.urandom(500) for _ in range(4)])
                return await recv_until_closed(ws, 10)

        _, code, reason = run_async(go(), 20)
        self.assertEqual(code, 1009, "close code (reason %r)" % reason)

    def test_invalid_utf8_text_1007(self):
        gw = self.echo_gateway()
        resp = raw_upgrade(gw.port, "/echo", protocols="binary")
        self.assertEqual(resp.status, 101, resp.status_line)
        ws = RawWebSocket(resp)
        self.addCleanup(ws.close)
        ws.send(OP_TEXT, b"ok \xff\xfe not utf-8")
        code, reason = ws.recv_close(10)
        self.assertEqual(code, 1007, "close code (reason %r)" % reason)

    def test_utf8_split_across_fragments_is_valid(self):
        gw = self.echo_gateway()
        resp = raw_upgrade(gw.port, "/echo", protocols="binary")
        self.assertEqual(resp.status, 101, resp.status_line)
        ws = RawWebSocket(resp)
        self.addCleanup(ws.close)
        ws.send(OP_TEXT, b"caf\xc3", fin=False)  # "café" cut inside the "é"
        ws.send(OP_CONT, b"\xa9")
        got = b""
        while len(got) < 5:
            fin, op, payload = ws.recv_frame(5)
            self.assertNotEqual(op, OP_CLOSE, "closed: %r" % payload)
            if op in (OP_BINARY, OP_TEXT, OP_CONT):
                got += payload
        self.assertEqual(got, "café".encode())

    def assert_flushed_then_eof(self, backend, expected, closed_at):
        conn = backend.wait_connection(0, 5)
        self.assertTrue(conn.eof.wait(closed_at + 2.0 - time.monotonic() + 0.05),
                        "the backend socket got no EOF within 2 s of the client's close "
                        "(%d of %d bytes arrived)" % (len(conn.data), len(expected)))
        self.assert_same_bytes(expected, bytes(conn.data), "bytes at the backend")
        self.assertIsNone(conn.error, "the backend connection was reset, not closed")

    def test_client_close_flushes_to_backend(self):
        backend = self.h.recording_backend()
        gw = self.gateway([tcp_route("rec", "/rec", backend.port)])
        messages = [os.urandom(10), os.urandom(64 * 1024), os.urandom(300 * 1024)]

        async def go():
            ws = await websockets.connect(gw.url("/rec"), max_size=None)
            for m in messages:
                await ws.send(m)
            await ws.close()
            return time.monotonic()

        closed_at = run_async(go(), 20)
        self.assert_flushed_then_eof(backend, b"".join(messages), closed_at)

    def test_client_close_and_vanish_flushes_to_backend(self):
        backend = self.h.recording_backend()
        gw = self.gateway([tcp_route("rec", "/rec", backend.port)])
        messages = [os.urandom(100), os.urandom(20000), os.urandom(70000)]
        resp = raw_upgrade(gw.port, "/rec")
        self.assertEqual(resp.status, 101, resp.status_line)
        ws = RawWebSocket(resp)
        for m in messages:
            ws.send(OP_BINARY, m)
        ws.send(OP_CLOSE, close_payload(1000))
        ws.close()  # without waiting for the gateway's close frame
        closed_at = time.monotonic()
        self.assert_flushed_then_eof(backend, b"".join(messages), closed_at)

    def test_sigterm_closes_clients_1001_and_exits_0(self):
        gw = self.echo_gateway()

        async def go():
            async with websockets.connect(gw.url("/echo"), subprotocols=["binary"]) as ws:
                await ws.send(b"ping")
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), b"ping")
                gw.proc.send_signal(harness.signal.SIGTERM)
                return await recv_until_closed(ws, 10)

        _, code, reason = run_async(go(), 20)
        self.assertEqual(code, 1001, "close code (reason %r)" % reason)
        try:
            rc = gw.proc.wait(timeout=5)
        except harness.subprocess.TimeoutExpired:
            self.fail("wsgate still running 5 s after SIGTERM")
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)

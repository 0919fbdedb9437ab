"""test_close_order.py - how a bridged connection ends, and in what order.

- Backend closes: everything it sent first reaches the client (even one
  that was slow to read), then close 1000.
- Client closes: everything it sent before its close frame reaches the
  backend (even one that was slow to read), then the backend sees EOF.
- Backend resets (RST) mid-stream: close 1011, counted as reason="reset".
- Client vanishes without a close frame (FIN, RST, or a half-close then an
  RST), idle or while the gateway is blocked writing to it: the backend sees
  EOF within 2 s.
- Backend that accepts and never reads or answers: the client can still
  close normally and at once, and the backend sees EOF.
- SIGTERM while a backend never reads what is queued for it: wsgate still
  exits 0 within the harness's 5 s grace."""

import asyncio
import os
import socket
import time

import websockets

import harness
import peers
from harness import HOST, OP_BINARY, GatewayTestCase, RawWebSocket, raw_upgrade, \
    recv_until_closed, run_async

QUEUE = 262144
MIB = 1024 * 1024


class CloseOrderCase(GatewayTestCase):
    def gateway(self, port, framing=None, name="co", **limits):
        route = {"name": name, "path": "/c", "type": "tcp", "target": {"host": HOST, "port": port}}
        if framing:
            route["framing"] = framing
        lim = {"max_queue_bytes": QUEUE}
        lim.update(limits)
        return self.h.start_gateway({"listen": [{"host": HOST, "port": harness.free_port()}],
                                     "limits": lim, "routes": [route]})

    def raw_ws(self, gw):
        resp = raw_upgrade(gw.port, "/c")
        self.assertEqual(resp.status, 101, resp.status_line)
        return resp


class BackendClosesTest(CloseOrderCase):
    def test_data_in_flight_delivered_before_1000(self):
        data = os.urandom(4 * MIB)
        backend = peers.add(self.h, peers.ScriptBackend([("send", data), ("fin",)]))
        gw = self.gateway(backend.port)

        async def go():
            async with websockets.connect(gw.url("/c"), max_size=None, max_queue=4,
                                          ping_interval=None) as ws:
                await asyncio.sleep(1.0)  # the backend has finished and closed meanwhile
                return await recv_until_closed(ws, 10)

        msgs, code, reason = run_async(go(), 25)
        self.assert_same_bytes(data, b"".join(msgs), "bytes at the client")
        self.assertEqual(code, 1000, "close code (reason %r)" % reason)
        rec = backend.wait_received(0)
        self.assertTrue(rec.eof.wait(2), "the gateway did not close the backend's socket")

    def test_lines_in_flight_delivered_before_1000(self):
        lines = [("%d:" % i).encode() + b"x" * (i % 50) for i in range(20000)]
        backend = peers.add(self.h, peers.ScriptBackend(
            [("send", b"".join(l + b"\n" for l in lines)), ("fin",)]))
        gw = self.gateway(backend.port, "lines")

        async def go():
            async with websockets.connect(gw.url("/c"), max_size=None, max_queue=4,
                                          ping_interval=None) as ws:
                await asyncio.sleep(1.0)
                return await recv_until_closed(ws, 10)

        msgs, code, reason = run_async(go(), 25)
        self.assertEqual(len(msgs), len(lines))
        self.assertEqual(msgs, lines)
        self.assertEqual(code, 1000, "close code (reason %r)" % reason)

    def test_backend_rst_mid_stream_1011(self):
        backend = peers.add(self.h, peers.ScriptBackend(
            [("send", os.urandom(1000)), ("sleep", 0.3), ("rst",)]))
        gw = self.gateway(backend.port, name="rstroute")

        async def go():
            async with websockets.connect(gw.url("/c"), max_size=None) as ws:
                return await recv_until_closed(ws, 5)

        t0 = time.monotonic()
        _, code, reason = run_async(go(), 15)
        self.assertEqual(code, 1011, "close code after a backend RST (reason %r)" % reason)
        self.assertLess(time.monotonic() - t0, 3.0)
        errs = peers.backend_errors(gw.port, "rstroute")
        self.assertEqual(errs, {"connect_failed": 0, "connect_timeout": 0, "reset": 1})

    def test_backend_rst_while_client_writes_1011(self):
        backend = peers.add(self.h, peers.ScriptBackend(
            [("send", b"hello"), ("sleep", 0.3), ("rst",)]))
        gw = self.gateway(backend.port, name="rstroute")

        async def go():
            async with websockets.connect(gw.url("/c"), max_size=None) as ws:
                async def writer():
                    for _ in range(100):
                        await ws.send(os.urandom(1000))
                        await asyncio.sleep(0.01)
                w = asyncio.ensure_future(writer())
                try:
                    return await recv_until_closed(ws, 5)
                finally:
                    w.cancel()
                    try:
                        await w
                    except (asyncio.CancelledError, websockets.exceptions.ConnectionClosed):
                        pass

        _, code, reason = run_async(go(), 15)
        self.assertEqual(code, 1011, "close code after a backend RST (reason %r)" % reason)
        self.assertEqual(peers.backend_errors(gw.port, "rstroute")["reset"], 1)


class ClientClosesTest(CloseOrderCase):
    def test_data_before_close_frame_reaches_slow_backend_before_eof(self):
        pattern = peers.Pattern(seed=9)
        total = 2 * MIB
        backend = peers.add(self.h, peers.SlowReaderBackend(
            pattern, lambda n: (32768, 0.001), start_pause=1.0))
        gw = self.gateway(backend.port)

        async def go():
            async with websockets.connect(gw.url("/c"), max_size=None,
                                          ping_interval=None) as ws:
                for off in range(0, total, 65536):
                    await ws.send(pattern.bytes(off, 65536))
                await ws.close()
                return ws.close_code, time.monotonic()

        code, closed_at = run_async(go(), 25)
        self.assertEqual(backend.wait_accepted(1), 1, "the backend got no connection")
        self.assertTrue(backend.eofs[0].wait(5), "no EOF at the backend within 5 s: %s"
                        % backend.checkers[0].describe())
        checker = backend.checkers[0]
        self.assertIsNone(backend.errors_seen[0], "the gateway reset the backend connection")
        self.assertIsNone(checker.first_bad, checker.describe())
        self.assertEqual(checker.count, total, checker.describe())
        self.assertEqual(code, 1000)

    def test_lines_before_close_frame_reach_backend(self):
        backend = self.h.recording_backend()
        gw = self.gateway(backend.port, "lines")
        msgs = [("m%d" % i).encode() for i in range(3000)]

        async def go():
            async with websockets.connect(gw.url("/c")) as ws:
                for m in msgs:
                    await ws.send(m)

        run_async(go(), 20)
        conn = backend.wait_connection(0)
        self.assertTrue(conn.eof.wait(2), "no EOF at the backend within 2 s")
        self.assertIsNone(conn.error, "the backend connection was reset, not closed")
        self.assert_same_bytes(b"".join(m + b"\n" for m in msgs), bytes(conn.data))

    def vanish(self, how):
        """The client sends a message, then its socket goes: "fin" (closed),
        "rst" (reset) or "fin+rst" (half-closed, then reset)."""
        backend = self.h.recording_backend()
        gw = self.gateway(backend.port)
        resp = self.raw_ws(gw)
        ws = RawWebSocket(resp)
        ws.send(OP_BINARY, b"last words")
        conn = backend.wait_connection(0)
        self.assertTrue(peers.wait_until(lambda: len(conn.data) >= 10, 2),
                        "the message never reached the backend")
        if how == "fin":
            resp.sock.close()
        else:
            if how == "fin+rst":
                resp.sock.shutdown(socket.SHUT_WR)
                time.sleep(0.05)
            peers.reset_socket(resp.sock)
        t0 = time.monotonic()
        self.assertTrue(conn.eof.wait(2.0), "no EOF at the backend within 2 s of the client "
                        "vanishing (%s)" % how)
        print("backend saw EOF %.3f s after the client vanished (%s)"
              % (conn.eof_time - t0, how), flush=True)
        self.assertIsNone(conn.error, "the backend connection was reset, not closed")
        self.assertEqual(bytes(conn.data), b"last words")

    def test_client_vanishes_fin(self):
        self.vanish("fin")

    def test_client_vanishes_rst(self):
        self.vanish("rst")

    def test_client_vanishes_fin_then_rst(self):
        self.vanish("fin+rst")

    def test_client_vanishes_asyncio_abort(self):
        backend = self.h.recording_backend()
        gw = self.gateway(backend.port)

        async def go():
            ws = await websockets.connect(gw.url("/c"))
            await ws.send(b"abc")
            while len(backend.connections) < 1 or len(backend.connections[0].data) < 3:
                await asyncio.sleep(0.01)
            ws.transport.abort()
            return time.monotonic()

        t0 = run_async(go(), 10)
        conn = backend.wait_connection(0)
        self.assertTrue(conn.eof.wait(max(0.0, t0 + 2.0 - time.monotonic())),
                        "no EOF at the backend within 2 s of the transport's abort")
        self.assertEqual(bytes(conn.data), b"abc")

    def test_client_vanishes_while_gateway_blocked_writing_to_it(self):
        # The backend floods; the client never reads, so the gateway has
        # stopped reading the backend and holds a full queue for the client.
        # Meanwhile another client comes and goes on an echo route. Then the
        # flooded client goes: a FIN, an RST, or a FIN then an RST (a client
        # that half-closed and then died), on five connections in turn.
        flood = peers.add(self.h, peers.FloodBackend(peers.Pattern(seed=5)))
        _, echo = self.h.start_echo()
        gw = self.h.start_gateway({
            "listen": [{"host": HOST, "port": harness.free_port()}],
            "limits": {"max_queue_bytes": QUEUE},
            "routes": [{"name": "flood", "path": "/c", "type": "tcp",
                        "target": {"host": HOST, "port": flood.port}},
                       {"name": "echo", "path": "/echo", "type": "tcp",
                        "target": {"host": HOST, "port": echo}}]})

        async def one_echo():
            async with websockets.connect(gw.url("/echo")) as ws:
                await ws.send(b"ping")
                got = b""
                while len(got) < 4:
                    got += await asyncio.wait_for(ws.recv(), 5)
                return got

        for i, how in enumerate(["fin", "rst", "fin+rst", "rst", "fin+rst"]):
            resp = self.raw_ws(gw)
            self.assertEqual(flood.wait_accepted(i + 1), i + 1)
            time.sleep(0.5)  # every buffer on the path fills up
            sent = flood.sent[i]
            self.assertEqual(run_async(one_echo(), 10), b"ping")
            self.assertEqual(flood.sent[i], sent, "the flood was never held back")
            if how == "fin":
                resp.sock.close()
            else:
                if how == "fin+rst":
                    resp.sock.shutdown(socket.SHUT_WR)
                    time.sleep(0.05)
                peers.reset_socket(resp.sock)
            self.assertTrue(flood.done[i].wait(2.0),
                            "connection %d: the backend's socket was still open 2 s after the "
                            "client vanished (%s)" % (i, how))
        self.assertEqual(run_async(one_echo(), 10), b"ping")


class StuckBackendTest(CloseOrderCase):
    def test_backend_never_reads_client_closes_promptly(self):
        backend = peers.add(self.h, peers.StallBackend())
        gw = self.gateway(backend.port)

        async def go():
            async with websockets.connect(gw.url("/c"), close_timeout=5) as ws:
                await ws.send(b"x" * 100)
                backend.conn(0)
                await asyncio.sleep(0.2)
                t0 = time.monotonic()
                await ws.close()
                return ws.close_code, time.monotonic() - t0

        code, took = run_async(go(), 15)
        print("client close took %.3f s" % took, flush=True)
        self.assertEqual(code, 1000)
        self.assertLess(took, 2.0, "the client's close waited on the backend")
        data, how = backend.drain_until_eof(0, 2.0)
        self.assertEqual(how, "eof", "the backend saw no EOF within 2 s (%s)" % how)
        self.assertEqual(data, b"x" * 100)

    def test_backend_never_answers_client_closes_promptly(self):
        backend = peers.add(self.h, peers.StallBackend())
        gw = self.gateway(backend.port)

        async def go():
            async with websockets.connect(gw.url("/c"), close_timeout=5) as ws:
                backend.conn(0)
                t0 = time.monotonic()
                await ws.close()
                return ws.close_code, time.monotonic() - t0

        code, took = run_async(go(), 15)
        self.assertEqual(code, 1000)
        self.assertLess(took, 2.0, "the client's close waited on the backend")
        data, how = backend.drain_until_eof(0, 2.0)
        self.assertEqual((data, how), (b"", "eof"))

    def test_sigterm_with_a_backend_that_never_reads(self):
        backend = peers.add(self.h, peers.StallBackend(recv_buffer=65536))
        gw = self.gateway(backend.port)
        resp = self.raw_ws(gw)
        ws = RawWebSocket(resp)
        frame = harness.encode_frame(OP_BINARY, os.urandom(65536))
        resp.sock.settimeout(0.5)
        try:
            for _ in range(200):  # until the gateway stops reading us
                resp.sock.sendall(frame)
        except socket.timeout:
            pass
        backend.conn(0)
        t0 = time.monotonic()
        gw.proc.send_signal(harness.signal.SIGTERM)
        try:
            rc = gw.proc.wait(timeout=5)
        except harness.subprocess.TimeoutExpired:
            self.fail("wsgate still running 5 s after SIGTERM, with a backend that never reads")
        print("exited %.2f s after SIGTERM" % (time.monotonic() - t0), flush=True)
        self.assertEqual(rc, 0)
        ws.close()


if __name__ == "__main__":
    harness.main()

"""test_framing.py - how a tcp route maps its byte stream to messages.

framing "lines": each client message reaches the backend with "\\n" appended;
each "\\n"-terminated backend line (a "\\r" just before the "\\n" dropped) is
one message, empty lines are empty messages, a partial line waits for its
"\\n", a line over limits.max_message_bytes closes the client with 1009.
framing "length32": a 4-byte big-endian length + payload both ways; a frame
over the limit closes with 1009. message "text": text frames only, never a
UTF-8 sequence cut between two messages (even when the backend dribbles it
byte by byte), and bytes that are not UTF-8 close the client with 1007.
framing "raw" + binary: bytes as they are, nothing appended.

Exact bytes and message lists are compared; UTF-8 checks use raw frames so
that what the gateway sends is seen as is."""

import asyncio
import os
import struct
import time

import websockets

import harness
import peers
from harness import (HOST, OP_BINARY, OP_TEXT, GatewayTestCase, RawWebSocket, make_rng,
                     raw_upgrade, run_async)


def l32(payload):
    return struct.pack("!I", len(payload)) + payload


class FramingCase(GatewayTestCase):
    def gateway(self, backend_port, framing=None, message=None, limits=None, name="fr"):
        route = {"name": name, "path": "/f", "type": "tcp",
                 "target": {"host": HOST, "port": backend_port}}
        if framing:
            route["framing"] = framing
        if message:
            route["message"] = message
        cfg = {"listen": [{"host": HOST, "port": harness.free_port()}], "routes": [route]}
        if limits:
            cfg["limits"] = limits
        return self.h.start_gateway(cfg)

    def script_backend(self, script):
        return peers.add(self.h, peers.ScriptBackend(script))

    def raw_ws(self, gw, path="/f"):
        resp = raw_upgrade(gw.port, path)
        self.assertEqual(resp.status, 101, resp.status_line)
        ws = RawWebSocket(resp)
        self.addCleanup(ws.close)
        return ws

    def client_writes(self, gw, messages, expected, timeout=10):
        """Sends `messages` (str: text frames, bytes: binary), closes, and
        checks that the backend got exactly `expected` then EOF."""
        backend = self.h.recording_backend()
        gw = gw(backend.port)

        async def go():
            async with websockets.connect(gw.url("/f"), max_size=None) as ws:
                for m in messages:
                    await ws.send(m)
            return time.monotonic()

        run_async(go(), timeout)
        conn = backend.wait_connection(0, 5)
        self.assertTrue(conn.eof.wait(5), "no EOF at the backend after the client closed "
                        "(got %r)" % bytes(conn.data[:200]))
        self.assert_same_bytes(expected, bytes(conn.data), "bytes at the backend")

    def collect(self, gw, count, timeout=10):
        """The first `count` messages the client receives."""
        async def go():
            async with websockets.connect(gw.url("/f"), max_size=None) as ws:
                return [await asyncio.wait_for(ws.recv(), timeout) for _ in range(count)]
        return run_async(go(), timeout + 10)

    def close_code(self, gw, timeout=5.0):
        """Reads raw frames until the gateway's close; every text message
        before it must be valid UTF-8. Returns (messages, code)."""
        ws = self.raw_ws(gw)
        try:
            msgs, close = peers.read_messages(ws, timeout=timeout)
        except (OSError, EOFError) as e:
            self.fail("no close frame from the gateway within %ss (%r); messages before: %r"
                      % (timeout, e, [(op, p[:100]) for op, p in getattr(e, "messages", [])]))
        for op, payload in msgs:
            if op == OP_TEXT:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    self.fail("the gateway sent a text message that is not UTF-8: %r" % payload)
        return msgs, close[0]


class LinesTest(FramingCase):
    def test_client_messages_get_a_newline(self):
        self.client_writes(lambda p: self.gateway(p, "lines"),
                           [b"hello", b"", "w\u00f6rld", b"a\rb", b"\x00\xff"],
                           b"hello\n\nw\xc3\xb6rld\na\rb\n\x00\xff\n")

    def test_backend_lines_become_messages_partial_line_waits(self):
        backend = self.script_backend([("send", b"one\ntwo\r\n\nthr"), ("sleep", 1.0),
                                       ("send", b"ee\nx\r\r\n\r\n")])
        gw = self.gateway(backend.port, "lines")

        async def go():
            async with websockets.connect(gw.url("/f"), max_size=None) as ws:
                first = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
                t0 = time.monotonic()
                try:
                    early = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    early = None
                rest = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
                return first, early, time.monotonic() - t0, rest

        first, early, waited, rest = run_async(go(), 20)
        self.assertEqual(first, [b"one", b"two", b""])
        self.assertIsNone(early, "a partial line was sent before its \\n arrived")
        self.assertEqual(rest, [b"three", b"x\r", b""])

    def test_line_dribbled_byte_by_byte(self):
        backend = self.script_backend([("dribble", b"abc\r\n\ndef\n", 0.02)])
        gw = self.gateway(backend.port, "lines")
        self.assertEqual(self.collect(gw, 3), [b"abc", b"", b"def"])

    def test_many_lines_in_one_chunk(self):
        lines = [("line %d" % i).encode() * (i % 7) for i in range(3000)]
        backend = self.script_backend([("send", b"".join(l + b"\n" for l in lines))])
        gw = self.gateway(backend.port, "lines")
        self.assertEqual(self.collect(gw, len(lines)), lines)

    def test_text_lines(self):
        backend = self.script_backend([("send", "caf\u00e9\n\n\u20ac 1\r\n".encode()),
                                       ("dribble", "\U0001F600\n".encode(), 0.03)])
        gw = self.gateway(backend.port, "lines", "text")
        self.assertEqual(self.collect(gw, 4), ["caf\u00e9", "", "\u20ac 1", "\U0001F600"])

    def test_echo_roundtrip_keeps_message_boundaries(self):
        rng, _ = make_rng(self.id())
        _, echo = self.h.start_echo()
        gw = self.gateway(echo, "lines")
        alphabet = bytes(b for b in range(256) if b != 0x0A)
        msgs = []
        for _ in range(2000):
            n = rng.choice([0, 1, 2, rng.randint(0, 100), rng.randint(0, 5000)])
            m = bytes(rng.choice(alphabet) for _ in range(n))
            if m.endswith(b"\r"):
                m = m[:-1] + b"x"
            msgs.append(m)

        async def go():
            async with websockets.connect(gw.url("/f"), max_size=None) as ws:
                async def reader():
                    return [await asyncio.wait_for(ws.recv(), 10) for _ in msgs]

                async def writer():
                    for m in msgs:
                        await ws.send(m)

                got, _ = await asyncio.gather(reader(), writer())
                return got

        got = run_async(go(), 60)
        self.assertEqual(len(got), len(msgs))
        for i, (a, b) in enumerate(zip(msgs, got)):
            self.assertEqual(b, a, "message %d differs" % i)

    def test_line_over_max_message_bytes_1009(self):
        backend = self.script_backend([("send", b"a" * 1024 + b"\n"), ("sleep", 0.2),
                                       ("send", b"b" * 1025 + b"\n")])
        gw = self.gateway(backend.port, "lines", limits={"max_message_bytes": 1024})
        msgs, code = self.close_code(gw)
        self.assertEqual(code, 1009)
        self.assertEqual(msgs, [(OP_BINARY, b"a" * 1024)],
                         "a line of exactly max_message_bytes must pass")

    def test_unterminated_line_over_max_message_bytes_1009(self):
        # The line has no end yet, but it is already longer than the limit:
        # waiting for its "\n" would mean buffering past max_message_bytes.
        backend = self.script_backend([("send", b"c" * 5000), ("sleep", 30)])
        gw = self.gateway(backend.port, "lines", limits={"max_message_bytes": 1024})
        t0 = time.monotonic()
        _, code = self.close_code(gw, timeout=5)
        self.assertEqual(code, 1009)
        self.assertLess(time.monotonic() - t0, 3.0)


class Length32Test(FramingCase):
    def test_client_messages_get_a_header(self):
        big = os.urandom(70000)
        self.client_writes(lambda p: self.gateway(p, "length32"),
                           [b"", b"abc", "\u20ac", big],
                           l32(b"") + l32(b"abc") + l32("\u20ac".encode()) + l32(big))

    def test_backend_frames_split_anywhere(self):
        rng, _ = make_rng(self.id())
        msgs = [b"", b"x", os.urandom(300), b"", os.urandom(70000), b"\n\r\n", os.urandom(5)]
        stream = b"".join(l32(m) for m in msgs)
        # Cut into pieces of 1..9 bytes for the first 40 bytes (headers split
        # byte by byte), then larger random pieces, with short pauses.
        steps, pos = [], 0
        while pos < len(stream):
            n = rng.randint(1, 9) if pos < 40 else rng.randint(1, 40000)
            steps += [("send", stream[pos:pos + n]), ("sleep", 0.01)]
            pos += n
        backend = self.script_backend(steps)
        gw = self.gateway(backend.port, "length32")
        self.assertEqual(self.collect(gw, len(msgs)), msgs)

    def test_echo_roundtrip_keeps_messages(self):
        rng, _ = make_rng(self.id())
        _, echo = self.h.start_echo()
        gw = self.gateway(echo, "length32")
        msgs = [rng.randbytes(rng.choice([0, 1, 4, rng.randint(0, 300), rng.randint(0, 70000)]))
                for _ in range(500)]

        async def go():
            async with websockets.connect(gw.url("/f"), max_size=None) as ws:
                async def reader():
                    return [await asyncio.wait_for(ws.recv(), 10) for _ in msgs]

                async def writer():
                    for m in msgs:
                        await ws.send(m)

                got, _ = await asyncio.gather(reader(), writer())
                return got

        got = run_async(go(), 60)
        for i, (a, b) in enumerate(zip(msgs, got)):
            self.assertEqual(b, a, "message %d differs" % i)
        self.assertEqual(len(got), len(msgs))

    def test_text_frames(self):
        backend = self.script_backend([("send", l32("h\u00e9".encode()) + l32(b"")),
                                       ("dribble", l32("\U0001F600!".encode()), 0.02)])
        gw = self.gateway(backend.port, "length32", "text")
        self.assertEqual(self.collect(gw, 3), ["h\u00e9", "", "\U0001F600!"])

    def test_frame_over_max_message_bytes_1009(self):
        backend = self.script_backend([("send", l32(b"k" * 1024)), ("sleep", 0.2),
                                       ("send", l32(b"m" * 1025))])
        gw = self.gateway(backend.port, "length32", limits={"max_message_bytes": 1024})
        msgs, code = self.close_code(gw)
        self.assertEqual(code, 1009)
        self.assertEqual(msgs, [(OP_BINARY, b"k" * 1024)],
                         "a frame of exactly max_message_bytes must pass")

    def test_header_over_max_message_bytes_1009_without_the_payload(self):
        # The header alone says the frame is too big; waiting for 1 MiB of
        # payload would mean buffering past max_message_bytes.
        backend = self.script_backend([("send", struct.pack("!I", 1 << 20) + b"zz"),
                                       ("sleep", 30)])
        gw = self.gateway(backend.port, "length32", limits={"max_message_bytes": 1024})
        t0 = time.monotonic()
        _, code = self.close_code(gw, timeout=5)
        self.assertEqual(code, 1009)
        self.assertLess(time.monotonic() - t0, 3.0)


class TextTest(FramingCase):
    TEXT = "a\u00e9b\u20acc\U0001F600d\u00e9\u20ac\U0001F600"

    def test_dribbled_multibyte_characters_stay_whole(self):
        data = self.TEXT.encode()
        backend = self.script_backend([("dribble", data, 0.06)])
        gw = self.gateway(backend.port, None, "text")
        ws = self.raw_ws(gw)
        msgs, close = peers.read_messages(
            ws, until=lambda ms: sum(len(p) for _, p in ms) >= len(data), timeout=10)
        self.assertIsNone(close, "closed early: %r (after %r)" % (close, msgs))
        texts = []
        for op, payload in msgs:
            self.assertEqual(op, OP_TEXT, "a text route sent a binary message %r" % payload)
            try:
                texts.append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                self.fail("a text message is not valid UTF-8 on its own: %r (all: %r)"
                          % (payload, msgs))
        self.assertEqual("".join(texts), self.TEXT)
        self.assertGreater(len(msgs), 3, "expected the dribble to arrive in several messages")

    def test_raw_text_passes_ascii_and_newlines(self):
        backend = self.script_backend([("send", b"x\ny\r\n")])
        gw = self.gateway(backend.port, None, "text")

        async def go():
            async with websockets.connect(gw.url("/f")) as ws:
                got = ""
                while len(got) < 5:
                    m = await asyncio.wait_for(ws.recv(), 5)
                    self.assertIsInstance(m, str, "a text route sent a binary message")
                    got += m
                return got

        self.assertEqual(run_async(go(), 15), "x\ny\r\n")

    def bad_utf8(self, framing, chunks):
        steps = []
        for c in chunks:
            steps += [("send", c), ("sleep", 0.1)]
        backend = self.script_backend(steps + [("sleep", 30)])
        gw = self.gateway(backend.port, framing, "text")
        _, code = self.close_code(gw)
        return code

    def test_invalid_byte_ff_1007(self):
        self.assertEqual(self.bad_utf8(None, [b"ok ", b"\xff"]), 1007)

    def test_overlong_nul_1007(self):
        self.assertEqual(self.bad_utf8(None, [b"ok ", b"\xc0\x80"]), 1007)

    def test_surrogate_1007(self):
        self.assertEqual(self.bad_utf8(None, [b"\xed\xa0\x80"]), 1007)

    def test_bad_continuation_after_a_pause_1007(self):
        # An incomplete "\u20ac" held back, then a byte that cannot continue it.
        self.assertEqual(self.bad_utf8(None, [b"ok \xe2\x82", b"A"]), 1007)

    def test_lines_bad_utf8_1007(self):
        self.assertEqual(self.bad_utf8("lines", [b"good\n", b"\xff\n"]), 1007)

    def test_length32_bad_utf8_1007(self):
        self.assertEqual(self.bad_utf8("length32", [l32(b"good"), l32(b"\xc0\x80")]), 1007)


class RawTest(FramingCase):
    def test_raw_binary_is_unchanged(self):
        data = b"a\nb\r\n" + bytes(range(256))
        backend = self.script_backend([("send", data)])
        gw = self.gateway(backend.port)

        async def go():
            async with websockets.connect(gw.url("/f"), max_size=None) as ws:
                await ws.send(b"x\ny")
                await ws.send("t\u00e9")
                got = b""
                while len(got) < len(data):
                    m = await asyncio.wait_for(ws.recv(), 5)
                    self.assertIsInstance(m, bytes, "a binary route sent a text message")
                    got += m
                return got

        got = run_async(go(), 20)
        self.assertEqual(got, data)
        rec = backend.wait_received(0)
        self.assertTrue(rec.eof.wait(5), "no EOF at the backend after the client closed")
        self.assertEqual(rec.snapshot(), b"x\nyt\xc3\xa9")


if __name__ == "__main__":
    harness.main()

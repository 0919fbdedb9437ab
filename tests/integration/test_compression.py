"""test_compression.py - permessage-deflate (RFC 7692) on routes with
"compression": true.

Negotiated only on such routes (a client offering it elsewhere gets no
extension, and a compressed frame there is a protocol error, 1002). Messages
to the client are compressed (RSV1 on the first frame, the deflate stream
without its 00 00 ff ff tail); what the client compresses is inflated, with
or without context takeover, whole or fragmented, and checked: text must be
UTF-8 once inflated (1007), corrupt data is 1007, and max_message_bytes
bounds the inflated size: a 50 MiB message of zeros, 50 KiB compressed,
closes with 1009 without the gateway inflating more than the limit.

Clients: python websockets (which offers and uses permessage-deflate by
default) and frames written by hand; backends: echo servers of the test."""

import asyncio
import json
import os
import struct
import time
import zlib

import harness
import peers
from harness import (HOST, OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT, GatewayTestCase, RawWebSocket,
                     encode_frame, raw_upgrade, run_async)

import websockets

MAX_MESSAGE = 1 << 20
TAIL = b"\x00\x00\xff\xff"


def deflate(data, compressor=None):
    """data as a permessage-deflate payload (context kept in `compressor`)."""
    c = compressor or zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(payload, decompressor=None):
    d = decompressor or zlib.decompressobj(-15)
    return d.decompress(payload + TAIL)


def recv_frame_rsv(ws, timeout=5.0):
    """(rsv bits, fin, opcode, payload) of the server's next frame."""
    ws._need(2, time.monotonic() + timeout)
    rsv = ws.buf[0] & 0x70
    fin, op, payload = ws.recv_frame(timeout)
    return rsv, fin, op, payload


def json_stream(n):
    return [json.dumps({"seq": i, "sensor": "hall-%d" % (i % 4), "temp": 20 + i % 7 / 10,
                        "status": "ok", "tags": ["building-a", "floor-2"]}) for i in range(n)]


class CompressionTest(GatewayTestCase):
    def gateway(self, **limits):
        self.echo = peers.add(self.h, peers.BannerEchoBackend())
        port = harness.free_port()
        route = {"type": "tcp", "framing": "lines", "message": "text",
                 "target": {"host": HOST, "port": self.echo.port}}
        cfg = {"listen": self.listen(port),
               "limits": dict({"max_message_bytes": MAX_MESSAGE}, **limits),
               "routes": [dict(route, path="/z", compression=True),
                          dict(route, path="/plain"),
                          {"path": "/zraw", "type": "tcp", "compression": True,
                           "target": {"host": HOST, "port": self.echo.port}}]}
        self.gw = self.h.start_gateway(cfg)
        return self.gw

    def upgrade(self, path, offer="permessage-deflate; client_max_window_bits"):
        resp = raw_upgrade(self.gw.port, path,
                           extra_headers={"Sec-WebSocket-Extensions": offer} if offer else None)
        self.assertEqual(resp.status, 101, resp.status_line)
        return resp, RawWebSocket(resp)

    def test_negotiated_only_where_configured(self):
        self.gateway()
        resp, ws = self.upgrade("/z")
        self.assertEqual(resp.header("sec-websocket-extensions"), "permessage-deflate")
        ws.close()
        resp, ws = self.upgrade("/plain")
        self.assertIsNone(resp.header("sec-websocket-extensions"))
        # a compressed frame where nothing was negotiated breaks the protocol
        ws.sock.sendall(encode_frame(OP_TEXT, deflate(b"hello"), rsv=4))
        self.assertEqual(ws.recv_close()[0], 1002)
        ws.close()

        async def offered_by_websockets():
            async with websockets.connect(self.gw.url("/z")) as a, \
                    websockets.connect(self.gw.url("/plain")) as b:
                return (a.response_headers.get("Sec-WebSocket-Extensions"),
                        b.response_headers.get("Sec-WebSocket-Extensions"))
        self.assertEqual(run_async(offered_by_websockets()), ("permessage-deflate", None))

    def test_to_the_client_compressed_on_the_wire(self):
        self.gateway()
        _, ws = self.upgrade("/z")
        msgs = json_stream(200)
        # sent uncompressed (allowed), echoed line by line, each a message
        ws.sock.sendall(b"".join(encode_frame(OP_TEXT, m.encode()) for m in msgs))
        wire = plain = 0
        d = zlib.decompressobj(-15)  # the gateway keeps its context: so do we
        for m in msgs:
            rsv, fin, op, payload = recv_frame_rsv(ws)
            self.assertTrue(fin)
            self.assertEqual(op, OP_TEXT)
            self.assertEqual(rsv, 0x40)
            self.assertEqual(inflate(payload, d).decode(), m)
            wire += len(payload)
            plain += len(m)
        print("200 JSON messages: %d bytes of payload, %d compressed (%.1fx)"
              % (plain, wire, plain / wire))
        self.assertLess(wire, plain / 4)
        # a large message goes out in fragments: RSV1 on the first only
        big = ("x" * 100 + "\u00e9") * 3000
        ws.send(OP_TEXT, big.encode())
        got, first = b"", True
        while True:
            rsv, fin, op, payload = recv_frame_rsv(ws)
            self.assertEqual(rsv, 0x40 if first else 0)
            self.assertEqual(op, OP_TEXT if first else OP_CONT)
            got += payload
            first = False
            if fin:
                break
        self.assertEqual(inflate(got, d).decode(), big)
        ws.close()

    def test_idle_connection_gives_its_deflater_back(self):
        # After 5 s without a message the gateway drops its compression
        # context (and memory): the next message is compressed afresh, and
        # a client inflater that kept its own context decodes it all the same.
        self.gateway()
        _, ws = self.upgrade("/z")
        d = zlib.decompressobj(-15)
        line = json_stream(1)[0]
        ws.send(OP_TEXT, line.encode())
        rsv, fin, op, first = recv_frame_rsv(ws)
        self.assertEqual(inflate(first, d).decode(), line)
        ws.send(OP_TEXT, line.encode())
        rsv, fin, op, second = recv_frame_rsv(ws)
        self.assertLess(len(second), len(first) / 2)  # the context at work
        self.assertEqual(inflate(second, d).decode(), line)
        time.sleep(6.5)
        ws.send(OP_TEXT, line.encode())
        rsv, fin, op, third = recv_frame_rsv(ws)
        self.assertEqual(len(third), len(first))  # a fresh start
        self.assertEqual(inflate(third, d).decode(), line)
        ws.close()

    def test_from_the_client_with_context_takeover_and_fragments(self):
        self.gateway()
        _, ws = self.upgrade("/z")
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        d = zlib.decompressobj(-15)  # the gateway's messages to us, context kept
        msgs = json_stream(50)
        for m in msgs:  # one compressor for all: later messages refer to earlier ones
            ws.sock.sendall(encode_frame(OP_TEXT, deflate(m.encode(), c), rsv=4))
        for m in msgs:
            rsv, fin, op, payload = recv_frame_rsv(ws)
            self.assertEqual(inflate(payload, d).decode() if rsv else payload.decode(), m)
        # one compressed message in three fragments, a ping between them
        body = ("\u20ac%d " % 7) * 20000
        z = deflate(body.encode(), c)
        a, b = len(z) // 3, 2 * len(z) // 3
        ws.sock.sendall(encode_frame(OP_TEXT, z[:a], fin=False, rsv=4) +
                        encode_frame(0x9, b"p") +
                        encode_frame(OP_CONT, z[a:b], fin=False) +
                        encode_frame(OP_CONT, z[b:]))
        got = b""
        while len(got) < len(body.encode()):
            rsv, fin, op, payload = recv_frame_rsv(ws)
            if op == 0xA:
                continue  # our ping's pong
            got += inflate(payload, d) if rsv else payload
        self.assertEqual(got.decode(), body)
        ws.close()

    def test_websockets_client_both_ways(self):
        self.gateway()

        async def go():
            async with websockets.connect(self.gw.url("/z"), max_size=None) as ws:
                for m in json_stream(100):
                    await ws.send(m)
                    self.assertEqual(await ws.recv(), m)
                big = "y" * 500000
                await ws.send(big)
                got = ""
                while len(got) < len(big):
                    got += await ws.recv()  # lines framing: one line may come in pieces
                self.assertEqual(got, big)
            async with websockets.connect(self.gw.url("/zraw"), max_size=None) as ws:
                blob = os.urandom(200000)  # incompressible: goes as it is (RSV1 clear)
                await ws.send(blob)
                got = b""
                while len(got) < len(blob):
                    got += await ws.recv()
                self.assertEqual(got, blob)
        run_async(go())

    def test_bomb_closes_1009_without_inflating_past_the_limit(self):
        self.gateway()
        rss_before = peers.proc_status_kb(self.gw.proc.pid, "VmRSS")
        _, ws = self.upgrade("/zraw")
        bomb = deflate(b"\0" * (50 << 20))
        self.assertLess(len(bomb), 60000)
        ws.sock.sendall(encode_frame(OP_BINARY, bomb, rsv=4))
        code, reason = ws.recv_close(10)
        self.assertEqual(code, 1009)
        self.assertIn(b"message over 1048576 bytes", reason)
        ws.close()
        grown = peers.proc_status_kb(self.gw.proc.pid, "VmRSS") - rss_before
        self.assertLess(grown, 16 * 1024, "RSS grew by %d KiB" % grown)
        self.assertTrue(peers.wait_until(
            lambda: "bytes_in=" in self.gw.log() and "close_code=1009" in self.gw.log(), 5))
        line = [l for l in self.gw.log().splitlines() if "close_code=1009" in l][0]
        inflated = int(line.split("bytes_in=")[1].split()[0])
        self.assertLessEqual(inflated, MAX_MESSAGE)

    def test_bad_compressed_data_and_text(self):
        self.gateway()
        cases = [
            (encode_frame(OP_BINARY, b"\xff\xff\xff garbage", rsv=4), 1007),
            (encode_frame(OP_TEXT, deflate(b"caf\xc3"), rsv=4), 1007),  # ends inside a character
            (encode_frame(OP_TEXT, deflate(b"\xc0\xaf"), rsv=4), 1007),  # overlong
            (encode_frame(OP_TEXT, b"ab", fin=False, rsv=4) +
             encode_frame(OP_CONT, b"cd", rsv=4), 1002),  # RSV1 on a continuation
            (encode_frame(0x9, b"", rsv=4), 1002),  # RSV1 on a control frame
            (encode_frame(OP_TEXT, b"\xc0\xaf"), 1007),  # not compressed, still checked
        ]
        for frames, want in cases:
            _, ws = self.upgrade("/z")
            ws.sock.sendall(frames)
            self.assertEqual(ws.recv_close()[0], want, frames[:12])
            ws.close()

    def early(self, frames):
        """An upgrade request with frames in the same packet (before the 101,
        which RFC 6455 forbids, but lws parses them)."""
        import base64
        s = __import__("socket").create_connection((HOST, self.gw.port), timeout=5)
        req = ("GET /z HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
               % base64.b64encode(os.urandom(16)).decode()).encode()
        s.sendall(req + frames)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head, rest = buf.split(b"\r\n\r\n", 1)
        self.assertIn(b" 101 ", head)
        resp = type("R", (), {"sock": s, "rest": rest})
        return RawWebSocket(resp)

    def test_frames_sent_with_the_upgrade(self):
        self.gateway()
        # A compressed frame before the 101 is refused (1002) and never
        # inflated, a bomb included; the gateway lives on.
        ws = self.early(encode_frame(OP_BINARY, deflate(b"x" * 300000), rsv=4))
        self.assertEqual(ws.recv_close()[0], 1002)
        ws.close()
        # A plain one is relayed, and compression works after it.
        ws = self.early(encode_frame(OP_TEXT, b"early bird"))
        rsv, fin, op, payload = recv_frame_rsv(ws)
        self.assertEqual(payload, b"early bird")
        ws.sock.sendall(encode_frame(OP_TEXT, deflate(b"then compressed " * 10), rsv=4))
        rsv, fin, op, payload = recv_frame_rsv(ws)
        self.assertEqual(inflate(payload) if rsv else payload, b"then compressed " * 10)
        ws.close()
        self.assertEqual(harness.http_get(self.gw.port, "/healthz").status, 200)

    def test_memory_per_compressed_connection(self):
        self.gateway(ping_interval_s=0)
        n = 300

        async def hold(path):
            conns = []
            for _ in range(n):
                ws = await websockets.connect(self.gw.url(path))
                await ws.send(json_stream(1)[0])
                await ws.recv()
                conns.append(ws)
            await asyncio.sleep(0.3)
            rss = peers.proc_status_kb(self.gw.proc.pid, "VmRSS")
            for ws in conns:
                await ws.close()
            return rss

        base = peers.proc_status_kb(self.gw.proc.pid, "VmRSS")
        plain = run_async(hold("/plain")) - base
        time.sleep(0.5)
        base = peers.proc_status_kb(self.gw.proc.pid, "VmRSS")
        compressed = run_async(hold("/z")) - base
        per = (compressed - plain) * 1024 / n
        print("RSS for %d connections that each sent one message: %d KiB plain, %d KiB with "
              "permessage-deflate: %.0f bytes more per connection" % (n, plain, compressed, per))
        if not peers.binary_has_asan():  # ASan's redzones and quarantine say nothing here
            self.assertLess(per, 64 * 1024)


if __name__ == "__main__":
    harness.main()

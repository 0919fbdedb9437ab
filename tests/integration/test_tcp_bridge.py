"""test_tcp_bridge.py - the TCP bridge carries the byte stream exactly: random
binary messages through wsgate to wsgate-echo and back, one big stream and
many concurrent clients. The backend may split or merge messages, so the
byte streams are compared, not the messages."""

import asyncio
import random
import time
import unittest

import websockets

import harness
from harness import HOST, GatewayTestCase, make_rng, run_async

MAX_MSG = 64 * 1024
WINDOW = 1024 * 1024  # at most this many bytes sent but not yet echoed


async def echo_stream(url, total, rng, window=WINDOW, max_msg=MAX_MSG):
    """Sends random binary messages (1..max_msg bytes) totalling at least
    `total` bytes while reading the echo; returns (sent bytes, received bytes)."""
    sizes = []
    n = 0
    while n < total:
        s = rng.randint(1, max_msg)
        sizes.append(s)
        n += s
    data = rng.randbytes(n)
    received = bytearray()
    progress = asyncio.Event()
    async with websockets.connect(url, subprotocols=["binary"], max_size=None,
                                  ping_interval=None) as ws:
        assert ws.subprotocol == "binary", "subprotocol %r" % ws.subprotocol

        async def reader():
            while len(received) < len(data):
                msg = await ws.recv()
                if not isinstance(msg, bytes):
                    raise AssertionError("got a text message from a binary route")
                received.extend(msg)
                progress.set()

        async def writer():
            off = 0
            for s in sizes:
                while off - len(received) > window:
                    progress.clear()
                    await progress.wait()
                await ws.send(data[off:off + s])
                off += s

        # gather: an error in either (a close from the gateway) ends the test at once.
        await asyncio.gather(reader(), writer())
        # Anything more (duplicated bytes) would make the comparison fail.
        try:
            extra = await asyncio.wait_for(ws.recv(), 0.2)
            received.extend(extra if isinstance(extra, bytes) else extra.encode())
        except asyncio.TimeoutError:
            pass
    return data, bytes(received)


class TcpBridgeTest(GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        _, cls.echo_port = cls.ch.start_echo()
        cls.port = harness.free_port()
        cls.gw = cls.ch.start_gateway({
            "listen": [{"host": HOST, "port": cls.port}],
            "routes": [{"name": "echo", "path": "/echo", "type": "tcp",
                        "subprotocols": ["binary"],
                        "target": {"host": HOST, "port": cls.echo_port}}],
        })

    def test_10_mib_stream_exact(self):
        rng, _ = make_rng(self.id())
        t0 = time.monotonic()
        sent, got = run_async(echo_stream(self.gw.url("/echo"), 10 * 1024 * 1024, rng), 90)
        dt = time.monotonic() - t0
        print("echoed %d bytes in %.2f s" % (len(sent), dt), flush=True)
        self.assert_same_bytes(sent, got)

    def test_20_concurrent_clients_exact(self):
        rng, _ = make_rng(self.id())
        seeds = [rng.randrange(2**32) for _ in range(20)]

        async def all_clients():
            return await asyncio.gather(*[
                echo_stream(self.gw.url("/echo"), 512 * 1024, random.Random(s),
                            window=256 * 1024, max_msg=16 * 1024)
                for s in seeds])

        results = run_async(all_clients(), 90)
        for i, (sent, got) in enumerate(results):
            self.assert_same_bytes(sent, got, "client %d (seed %d)" % (i, seeds[i]))

    def test_tiny_messages_keep_order(self):
        rng, _ = make_rng(self.id())
        sent, got = run_async(echo_stream(self.gw.url("/echo"), 20000, rng, max_msg=3), 30)
        self.assert_same_bytes(sent, got)


if __name__ == "__main__":
    unittest.main(verbosity=2)

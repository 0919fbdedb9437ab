"""test_alloc_free.py - the relay path calls no allocator per message (SPEC-2 D).

The real wsgate runs with an allocator-counting library preloaded
(tests/alloc/alloc_count.c) in front of the real wsgate-echo. For each
framing and message size, the same 10 connections echo first 1,000 and then
10,000 messages each; every allocator call the whole process makes (ours,
libwebsockets', glibc's) is counted over each run. Connections cost what they
cost, about the same in both runs, so the difference between the two runs is
what 90,000 more messages cost: it must stay under 250 calls (a relay that
allocates once per message makes 90,000 more; what remains is the jitter of
connection setup and teardown and of the pool's 10-second trim, which frees
blocks one run left unused and the next run takes again).

The MQTT relay (AllocFreeMqtt): WebSocket clients publish QoS 1 to a real
mosquitto through a raw MQTT route that also subscribes them to the same
topic, so every message goes to the broker and back through the gateway.
Paho allocates per message on its own (a copy of every publish and of every
message that arrives); those calls are counted apart (ALLOC_COUNT_SKIP,
alloc_count.c) and reported, and the bound applies to the rest: the
gateway's own code, on the loop and in its callbacks on Paho's threads.

Needs a build without sanitizers (ASan replaces the allocator): ctest
registers it only there. Environment (set by ctest): WSGATE_BIN,
WSGATE_ECHO_BIN, ALLOC_COUNT_LIB, WSBENCH_BIN.
"""
import asyncio
import contextlib
import json
import os
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import GatewayTestCase, HOST, free_port, main, run_async  # noqa: E402

import websockets  # noqa: E402

ALLOC_LIB = os.environ.get("ALLOC_COUNT_LIB", "")
WSBENCH = os.environ.get("WSBENCH_BIN", "")
CONNS = 10
SHORT, LONG = 1000, 10000  # messages per connection in the two runs
MAX_EXTRA_CALLS = 250
FIELDS = ("malloc", "calloc", "realloc", "free", "memalign", "bytes", "skipped")
MQTT_SHORT, MQTT_LONG = 300, 3000  # messages per connection, each to the broker and back


def read_counts(path):
    with open(path, "rb") as f:
        values = struct.unpack("<7Q", f.read(56))
    return dict(zip(FIELDS, values))


def calls(c):
    return sum(c[k] for k in FIELDS if k not in ("bytes", "skipped"))


async def echo_text_messages(url, conns, per_conn, size):
    """`conns` clients, each with up to 8 messages in flight, echo
    `per_conn` text messages of `size` bytes (no newline: lines framing)."""
    payload = ("x" * size)

    async def one(i):
        async with websockets.connect(url, subprotocols=["binary"], max_size=None,
                                      compression=None) as ws:
            sent = got = 0
            while got < per_conn:
                while sent < per_conn and sent - got < 8:
                    await ws.send(payload)
                    sent += 1
                msg = await ws.recv()
                assert msg == payload, "echo differs on connection %d" % i
                got += 1

    await asyncio.gather(*(one(i) for i in range(conns)))


class AllocFreeRelay(GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not ALLOC_LIB or not os.path.exists(ALLOC_LIB):
            raise unittest.SkipTest("ALLOC_COUNT_LIB not built (sanitizer build?)")
        _, echo_port = cls.ch.start_echo()
        cls.port = free_port()
        target = {"host": HOST, "port": echo_port}
        routes = [{"name": f, "path": "/" + f, "type": "tcp", "framing": f,
                   "message": "text" if f == "lines" else "binary",
                   "subprotocols": ["binary"], "target": target}
                  for f in ("raw", "lines", "length32")]
        cls.counts_path = cls.ch.path("alloc.counts")
        cls.gw = cls.ch.start_gateway(
            {"listen": [{"host": HOST, "port": cls.port}],
             "limits": {"max_message_bytes": 1048576}, "routes": routes},
            env={"LD_PRELOAD": ALLOC_LIB, "ALLOC_COUNT_FILE": cls.counts_path},
            args=["--log-level", "warn"])
        cls.results = []

    @classmethod
    def tearDownClass(cls):
        print("\nallocator calls by the whole gateway process, %d connections:" % CONNS)
        print("%-10s %8s %14s %14s %8s" % ("framing", "size", "1,000/conn", "10,000/conn",
                                          "extra"))
        for framing, size, a, b in cls.results:
            print("%-10s %8d %14d %14d %8d" % (framing, size, a, b, b - a))
        super().tearDownClass()

    def wsbench(self, path, size, per_conn):
        out = subprocess.run(
            [WSBENCH, "--mode", "ws", "--port", str(self.port), "--path", path,
             "--subprotocol", "binary", "--conns", str(CONNS), "--size", str(size),
             "--inflight", "4", "--messages", str(CONNS * per_conn), "--warmup", "0",
             "--duration", "120"],
            capture_output=True, text=True, timeout=180)
        result = json.loads(out.stdout)
        self.assertEqual(result["errors"], 0, out.stderr)
        self.assertEqual(result["bytes"] if "bytes" in result else size * CONNS * per_conn,
                         result["bytes"])

    def measure(self, framing, size, run):
        """Allocator calls made by `run(per_conn)` for SHORT and LONG."""
        figures = []
        for per_conn in (SHORT, LONG):
            before = read_counts(self.counts_path)
            run(per_conn)
            after = read_counts(self.counts_path)
            figures.append(calls(after) - calls(before))
        self.results.append((framing, size, figures[0], figures[1]))
        self.assertLess(figures[1] - figures[0], MAX_EXTRA_CALLS,
                        "%s %d B: %d allocator calls for %d messages, %d for %d"
                        % (framing, size, figures[0], CONNS * SHORT, figures[1], CONNS * LONG))

    def check_wsbench(self, framing, size):
        if not WSBENCH or not os.path.exists(WSBENCH):
            self.skipTest("WSBENCH_BIN not built")
        self.measure(framing, size, lambda n: self.wsbench("/" + framing, size, n))

    def check_text(self, framing, size):
        url = "ws://%s:%d/%s" % (HOST, self.port, framing)
        self.measure(framing, size,
                     lambda n: run_async(echo_text_messages(url, CONNS, n, size), timeout=300))

    def test_raw_64(self):
        self.check_wsbench("raw", 64)

    def test_raw_4k(self):
        self.check_wsbench("raw", 4096)

    def test_raw_64k(self):
        self.check_wsbench("raw", 65536)

    def test_length32_64(self):
        self.check_wsbench("length32", 64)

    def test_length32_4k(self):
        self.check_wsbench("length32", 4096)

    def test_length32_64k(self):
        self.check_wsbench("length32", 65536)

    def test_lines_64(self):
        self.check_text("lines", 64)

    def test_lines_4k(self):
        self.check_text("lines", 4096)


async def mqtt_round_trips(port, conns, per_conn, size, route="dev", payload_of=None):
    """`conns` clients on /<route>/a<i>, each with up to 8 messages in
    flight, publish `per_conn` messages of `size` bytes (`payload_of(i,
    size)`) and get each back from the broker (the route subscribes them to
    what they publish; it sends them as text frames, the payloads being
    UTF-8)."""
    def data(m):
        return m if isinstance(m, bytes) else m.encode()

    async def one(i):
        async with websockets.connect("ws://%s:%d/%s/a%d" % (HOST, port, route, i),
                                      max_size=None, compression=None) as ws:
            # The gateway's SUBSCRIBE must be in place before the count
            # matters: probe until one comes back.
            while True:
                await ws.send(payload_of(i, 0) if payload_of else b"probe")
                try:
                    msg = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                if data(msg) == (payload_of(i, 0) if payload_of else b"probe"):
                    break
            while True:  # late copies of the probe
                try:
                    await asyncio.wait_for(ws.recv(), 0.3)
                except asyncio.TimeoutError:
                    break
            payload = payload_of(i, size) if payload_of else (b"%d" % i) * size
            sent = got = 0
            while got < per_conn:
                while sent < per_conn and sent - got < 8:
                    await ws.send(payload)
                    sent += 1
                msg = await ws.recv()
                assert data(msg) == payload, "a foreign message on connection %d" % i
                got += 1

    await asyncio.gather(*(one(i) for i in range(conns)))


def rules_payload(i, size):
    """A JSON message the content-routing route publishes by its fields."""
    return json.dumps({"kind": "echo", "n": "r%d" % i, "pad": "p" * size}).encode()


async def rules_round_trips(port, conns, per_conn, size):
    """mqtt_round_trips through /rules/<i>: each message is parsed for the
    rule's `when` and the topic's {msg./n}."""
    await mqtt_round_trips(port, conns, per_conn, size, "rules", rules_payload)


async def envelope_round_trips(port, conns, per_conn, size):
    """The same through the envelope route: `conns` clients on /env/<i>
    subscribe to their own topic, then publish `per_conn` JSON envelopes
    (QoS 1, no id: no ack) with a string payload of `size` bytes, and get
    each back as {"topic": ..., "payload": ...}."""
    async def one(i):
        topic = "alloc/env/e%d" % i
        async with websockets.connect("ws://%s:%d/env/e%d" % (HOST, port, i), max_size=None,
                                      compression=None) as ws:
            await ws.send(json.dumps({"subscribe": topic, "qos": 1, "id": 1}))
            assert json.loads(await ws.recv()) == {"ack": 1}
            payload = ("%d" % i) * size
            request = json.dumps({"topic": topic, "payload": payload, "qos": 1})
            sent = got = 0
            while got < per_conn:
                while sent < per_conn and sent - got < 8:
                    await ws.send(request)
                    sent += 1
                msg = json.loads(await ws.recv())
                assert msg == {"topic": topic, "payload": payload}, \
                    "a foreign message on connection %d: %.80r" % (i, msg)
                got += 1

    await asyncio.gather(*(one(i) for i in range(conns)))


async def fan_out(port, conns, messages, size):
    """`conns` clients on /fan, all subscribed to one topic; client 0
    publishes `messages` messages of `size` bytes (at most 8 it has not got
    back yet) and every client gets every one: conns x messages deliveries."""
    payload = b"f" * size

    async def recv_all(ws, i):
        for n in range(messages):
            msg = await ws.recv()
            msg = msg if isinstance(msg, bytes) else msg.encode()
            assert msg == payload, "client %d, message %d differs" % (i, n)

    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(websockets.connect(
            "ws://%s:%d/fan" % (HOST, port), max_size=None, compression=None))
            for _ in range(conns)]
        # Every client's SUBSCRIBE must be in place before the count matters:
        # probe until each has one, then let late copies arrive and drop them.
        while True:
            await clients[0].send(b"probe")
            await asyncio.sleep(0.2)
            ready = 0
            for ws in clients:
                try:
                    await asyncio.wait_for(ws.recv(), 0.05)
                    ready += 1
                except asyncio.TimeoutError:
                    pass
            if ready == conns:
                break
        await asyncio.sleep(0.5)
        for ws in clients:
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 0.05)
            except asyncio.TimeoutError:
                pass

        got = [0]
        first = clients[0]

        async def publish():
            sent = 0
            while sent < messages:
                while sent < messages and sent - got[0] < 8:
                    await first.send(payload)
                    sent += 1
                await asyncio.sleep(0)
                while sent - got[0] >= 8:
                    await asyncio.sleep(0.001)

        async def recv_first():
            for n in range(messages):
                msg = await first.recv()
                msg = msg if isinstance(msg, bytes) else msg.encode()
                assert msg == payload, "client 0, message %d differs" % n
                got[0] += 1

        await asyncio.gather(publish(), recv_first(),
                             *(recv_all(ws, i) for i, ws in enumerate(clients) if i))


class AllocFreeMqtt(GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not ALLOC_LIB or not os.path.exists(ALLOC_LIB):
            raise unittest.SkipTest("ALLOC_COUNT_LIB not built (sanitizer build?)")
        from mqtt_peers import Mosquitto, have_mosquitto, unique_id
        if not have_mosquitto():
            raise unittest.SkipTest("mosquitto not found")
        mosq = Mosquitto(cls.ch)
        cls.port = free_port()
        route = {"name": "dev", "path": "/dev/{device}", "type": "mqtt", "broker": "main",
                 "publish": {"topic": "alloc/{device}", "qos": 1},
                 "subscribe": [{"filter": "alloc/{device}", "qos": 1}]}
        envelope = {"name": "env", "path": "/env/{device}", "type": "mqtt", "broker": "main",
                    "format": "envelope",
                    "publish": {"allow": ["alloc/env/{device}"], "qos": 1},
                    "subscribe": {"allow": ["alloc/env/{device}"]}}
        rules = {"name": "rules", "path": "/rules/{device}", "type": "mqtt", "broker": "main",
                 "publish": [{"when": {"pointer": "/kind", "equals": "echo"},
                              "topic": "alloc/rules/{device}/{msg./n}", "qos": 1}],
                 "subscribe": [{"filter": "alloc/rules/{device}/#", "qos": 1}]}
        fan = {"name": "fan", "path": "/fan", "type": "mqtt", "broker": "main",
               "publish": {"topic": "alloc/fan", "qos": 1},
               "subscribe": [{"filter": "alloc/fan", "qos": 1}]}
        cls.counts_path = cls.ch.path("alloc-mqtt.counts")
        cls.gw = cls.ch.start_gateway(
            {"listen": [{"host": HOST, "port": cls.port}],
             "brokers": {"main": {"uri": mosq.uri, "client_id": unique_id("wsgate-alloc")}},
             "routes": [route, envelope, rules, fan]},
            env={"LD_PRELOAD": ALLOC_LIB, "ALLOC_COUNT_FILE": cls.counts_path,
                 "ALLOC_COUNT_SKIP": "libpaho-mqtt3as"},
            args=["--log-level", "warn"])
        cls.results = []

    @classmethod
    def tearDownClass(cls):
        print("\nallocator calls by the gateway process (Paho's own apart), %d connections, "
              "each message to the broker and back:" % CONNS)
        print("%-9s %8s %14s %14s %8s %16s" % ("route", "size", "%d/conn" % MQTT_SHORT,
                                                "%d/conn" % MQTT_LONG, "extra", "Paho's (extra)"))
        for kind, size, a, b, pa, pb in cls.results:
            print("%-9s %8d %14d %14d %8d %16d" % (kind, size, a, b, b - a, pb - pa))
        super().tearDownClass()

    def check(self, kind, size, run=mqtt_round_trips):
        """`run(port, CONNS, n, size)` for n = MQTT_SHORT and MQTT_LONG: what
        the gateway's own code allocates must not grow with n."""
        figures, paho = [], []
        for per_conn in (MQTT_SHORT, MQTT_LONG):
            before = read_counts(self.counts_path)
            run_async(run(self.port, CONNS, per_conn, size), timeout=300)
            after = read_counts(self.counts_path)
            figures.append(calls(after) - calls(before))
            paho.append(after["skipped"] - before["skipped"])
        self.results.append((kind, size, figures[0], figures[1], paho[0], paho[1]))
        self.assertGreater(paho[1] - paho[0], MQTT_LONG - MQTT_SHORT,
                           "Paho's calls are not told apart: is ALLOC_COUNT_SKIP right?")
        self.assertLess(figures[1] - figures[0], MAX_EXTRA_CALLS,
                        "MQTT %s %d B: %d allocator calls for %d per connection, %d for %d"
                        % (kind, size, figures[0], MQTT_SHORT, figures[1], MQTT_LONG))

    def test_mqtt_64(self):
        self.check("raw", 64)

    def test_mqtt_4k(self):
        self.check("raw", 4096)

    def test_content_routing_64(self):
        """A raw route whose publish rule reads the message (JSON)."""
        self.check("rules", 64, rules_round_trips)

    def test_envelope_64(self):
        self.check("envelope", 64, envelope_round_trips)

    def test_envelope_4k(self):
        self.check("envelope", 4096, envelope_round_trips)

    def test_fan_out_64(self):
        """One publisher, CONNS subscribers: each message the gateway gets
        from the broker goes to every client."""
        self.check("fan-out", 64, fan_out)


if __name__ == "__main__":
    main()

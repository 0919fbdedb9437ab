#!/usr/bin/python3
"""soak.py - a bounded chaos soak of the real wsgate binary (issue 20, docs/soak.md).

For a fixed time (default 150 s; `--minutes N`, `--seconds N` or env
WSGATE_SOAK_SECONDS for longer) real peers drive one wsgate:

- TCP echo clients of every framing (raw, lines as text, length32) through
  wsgate-echo: every byte that comes back is checked against what was sent,
  in order. A connection that closes loses what was in flight (counted as
  "in flight at close", expected when the backend dies); a byte that comes
  back different, reordered or from nowhere is a mismatch.
- MQTT WebSocket clients on an envelope route (QoS 1 publishes, each acked
  after the broker's PUBACK) and on a raw route (QoS 1 publishes); a durable
  Paho subscriber (clean session off) must receive every acked envelope
  publish and every raw publish. Another MQTT client publishes a QoS 1 feed
  that every WebSocket client must receive: the gateway's broker session is
  persistent (`persistent_session: true`), so nothing is lost across the
  broker's restarts.
- On a schedule (repeated for longer runs): the echo backend SIGKILLed and
  restarted on its port; mosquitto (persistence on) SIGKILLed, brought back
  with only a side port open while another client publishes QoS 1 messages
  the gateway cannot fetch yet, then restarted with both ports; SIGHUP
  reloads and one broken config (refused, the gateway keeps serving); a
  burst of 500 connections at once (a child process); garbage and
  RFC-violating frames (1002/1007 expected); forged, expired, unsigned and
  tampered JWTs on an auth route (401), next to a valid one (101).

At the end: lost 0, mismatches 0, no unexpected close, wsgate's descriptors
back to their count before the first client, RSS within a bound (see
RSS_BOUND below), exit 0 on SIGTERM, no sanitizer report (harness.py). The
figures are printed as a table ("SOAK ...") and, with --report FILE, written
as JSON. Invariants only, never rates: it must not flake on a loaded machine.

Run: WSGATE_BIN=build/wsgate WSGATE_ECHO_BIN=build/wsgate-echo \
     /usr/bin/python3 tests/soak/soak.py --minutes 6
(ctest -R soak sets the environment; see tests/CMakeLists.txt.)
"""

import argparse
import asyncio
import collections
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
import jwt_mint  # noqa: E402
import mqtt_peers  # noqa: E402
import peers  # noqa: E402
from harness import HOST, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT  # noqa: E402
from test_mqtt_persistent import TwoPortMosquitto  # noqa: E402

DEFAULT_SECONDS = 150
CYCLE_S = 150  # one round of every fault per this many seconds of run

N_RAW, N_LINES, N_LEN32 = 4, 4, 4  # echo clients per framing
N_ENV, N_DEV = 4, 4  # MQTT WebSocket clients: envelope, raw
ECHO_RATE = 40  # messages a second per echo client (at most)
MQTT_RATE = 20  # publishes a second per MQTT WebSocket client
FEED_RATE = 10  # feed ticks a second (1 + N_DEV QoS 1 messages each)
WINDOW = 4  # echo messages in flight per client
MAX_UNACKED = 300  # envelope publishes in flight per client (held while the broker is away)
OUTAGE_BATCH = 30  # feed ticks published while the gateway cannot reach the broker
BURST = 500
ECHO_DOWN_S = 2.0
CLOSE_GRACE_S = 10.0  # echo closes this long after a restart still belong to the outage
STALL_S = 30.0  # no progress this long with data in flight: a stall
DRAIN_S = 40.0
MAX_QUEUE = 262144
JWT_SECRET = "soak-secret-" + os.urandom(8).hex()

# RSS bound (plain build): the heap of an idle gateway, plus per open
# WebSocket at most one queue per direction (2 x max_queue_bytes) for the
# clients that stream (echo + MQTT), plus for each connection of the burst
# (each echoes 16 bytes, so no queue fills) lws's per-connection state and
# its rx buffer page (well under 64 KiB), plus 32 MiB for glibc's arenas
# (Paho's threads) and the MQTT in-flight queues.
BURST_CONN_KB = 64
SLACK_KB = 32 * 1024

ECHO_CODES_OK = (1000, 1011)  # backend closed / backend gone


def now():
    return time.monotonic()


def log(fmt, *args):
    print("[%7.1f] %s" % (now() - T0, fmt % args if args else fmt), flush=True)


T0 = now()

# ---------------------------------------------------------------------------
# frames: harness.encode_frame (masks with big ints, fast enough for 32 KiB)


frame = harness.encode_frame


class Closed(Exception):
    pass


class Conn:
    """A WebSocket client over a blocking socket: read() returns the
    complete messages available within a timeout (fragments reassembled,
    pings answered). After the server's close frame (answered) or EOF,
    .close_code is set (1006 for EOF without a close frame)."""

    def __init__(self, port, path, headers=None, timeout=20.0, resp=None):
        if resp is None:
            resp = mqtt_peers.ws_upgrade(port, path, timeout=timeout, headers=headers)
        self.sock = resp.sock
        self.sock.settimeout(timeout)
        self.buf = bytearray(resp.rest)
        self.close_code = None
        self.close_reason = b""
        self.frag_op, self.frag = None, bytearray()

    def send(self, op, payload):
        try:
            self.sock.sendall(frame(op, payload))
        except OSError as e:
            if self.close_code is None:
                self.close_code = 1006
                self.close_reason = repr(e).encode()
            raise Closed()

    def _parse(self):
        msgs = []
        buf = self.buf
        while self.close_code is None:
            f = harness.take_frame(buf)
            if f is None:
                break
            fin, op, payload = f
            if op == OP_PING:
                try:
                    self.sock.sendall(frame(OP_PONG, payload))
                except OSError:
                    pass
            elif op == OP_PONG:
                pass
            elif op == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.close_reason = payload[2:]
                try:
                    self.sock.sendall(frame(OP_CLOSE, payload[:2]))
                except OSError:
                    pass
            elif op in (OP_TEXT, OP_BINARY):
                if self.frag_op is not None:
                    raise AssertionError("a data frame inside a fragmented message")
                if fin:
                    msgs.append((op, payload))
                else:
                    self.frag_op, self.frag = op, bytearray(payload)
            elif op == OP_CONT:
                if self.frag_op is None:
                    raise AssertionError("a continuation outside a message")
                self.frag += payload
                if fin:
                    msgs.append((self.frag_op, bytes(self.frag)))
                    self.frag_op, self.frag = None, bytearray()
            else:
                raise AssertionError("server sent opcode %#x" % op)
        return msgs

    def read(self, timeout):
        msgs = self._parse()
        if msgs or self.close_code is not None:
            return msgs
        r, _, _ = select.select([self.sock], [], [], timeout)
        if r:
            try:
                data = self.sock.recv(262144)
            except OSError as e:
                data = b""
                self.close_reason = repr(e).encode()
            if not data:
                self.close_code = 1006
                return []
            self.buf += data
        return self._parse()

    def close(self, code=1000, timeout=10.0):
        """Sends a close frame and reads until the server's (messages in
        between are returned)."""
        msgs = []
        if self.close_code is None:
            try:
                self.sock.sendall(frame(OP_CLOSE, struct.pack("!H", code)))
            except OSError:
                pass
            deadline = now() + timeout
            while self.close_code is None and now() < deadline:
                msgs += self.read(0.2)
        self.abort()
        return msgs

    def abort(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# echo clients


class EchoClient(threading.Thread):
    """Connects to one tcp route again and again; sends random messages
    (WINDOW in flight), checks every byte of the echo."""

    def __init__(self, soak, kind, index):
        super().__init__(daemon=True, name="echo-%s-%d" % (kind, index))
        self.soak, self.kind, self.index = soak, kind, index
        self.path = {"raw": "/echo", "lines": "/lines", "len32": "/len32"}[kind]
        self.rng = random.Random(soak.seed * 1000 + {"raw": 1, "lines": 2, "len32": 3}[kind] * 100
                                 + index)
        self.sent_msgs = self.sent_bytes = 0
        self.ok_msgs = self.ok_bytes = 0
        self.lost_msgs = self.lost_bytes = 0  # in flight when a connection closed
        self.mismatches = 0
        self.mismatch_notes = []
        self.connections = 0
        self.upgrade_errors = []  # (time, error)
        self.closes = []  # (time, code, reason, messages echoed on that connection)
        self.stalls = 0
        self.stop = threading.Event()
        self.drained = threading.Event()

    def make(self):
        if self.kind == "raw":
            n = self.rng.randint(1, 32768)
            return OP_BINARY, self.rng.randbytes(n)
        if self.kind == "lines":
            n = self.rng.randint(1, 4096)
            return OP_TEXT, bytes(self.rng.choices(range(0x20, 0x7F), k=n))
        n = self.rng.randint(1, 16384)
        return OP_BINARY, self.rng.randbytes(n)

    def mismatch(self, what):
        self.mismatches += 1
        if len(self.mismatch_notes) < 5:
            self.mismatch_notes.append("%s: %s" % (self.name, what))

    def run(self):
        while not self.stop.is_set():
            try:
                c = Conn(self.soak.port, self.path)
            except (AssertionError, OSError) as e:
                self.upgrade_errors.append((now(), repr(e)[:200]))
                self.stop.wait(0.5)
                continue
            self.connections += 1
            try:
                self.session(c)
            finally:
                c.abort()
            if not self.stop.is_set():
                self.stop.wait(0.2)
        self.drained.set()

    def session(self, c):
        pending = collections.deque()  # messages (lines/len32) or sizes (raw) in flight
        raw_pending = bytearray()  # raw: bytes sent, not yet echoed
        head_left = 0  # raw: bytes of pending[0] still to come back
        echoed_here = 0
        last_progress = now()
        next_send = now()
        while True:
            if self.stop.is_set() and not pending:
                c.close()
                if c.close_code not in (1000, None):
                    self.closes.append((now(), c.close_code, c.close_reason, echoed_here))
                return
            t = now()
            if not self.stop.is_set() and len(pending) < WINDOW and t >= next_send:
                op, payload = self.make()
                try:
                    c.send(op, payload)
                except Closed:
                    pass
                else:
                    self.sent_msgs += 1
                    self.sent_bytes += len(payload)
                    if self.kind == "raw":
                        pending.append(len(payload))
                        raw_pending += payload
                        if len(pending) == 1:
                            head_left = len(payload)
                    else:
                        pending.append((op, payload))
                    next_send = max(next_send + 1.0 / ECHO_RATE, t - 1.0)
            try:
                msgs = c.read(0.05 if len(pending) < WINDOW else 0.5)
            except AssertionError as e:
                self.mismatch("bad framing from the gateway: %s" % e)
                return
            for op, payload in msgs:
                last_progress = now()
                if self.kind == "raw":
                    if op != OP_BINARY:
                        self.mismatch("raw echo came as opcode %d" % op)
                        return
                    n = len(payload)
                    if n > len(raw_pending) or raw_pending[:n] != payload:
                        first = next((i for i in range(min(n, len(raw_pending)))
                                      if raw_pending[i] != payload[i]), min(n, len(raw_pending)))
                        self.mismatch("raw stream differs at byte %d of a %d-byte chunk "
                                      "(%d bytes in flight)" % (first, n, len(raw_pending)))
                        return
                    del raw_pending[:n]
                    self.ok_bytes += n
                    while n > 0:
                        k = min(n, head_left)
                        n -= k
                        head_left -= k
                        if head_left == 0:
                            pending.popleft()
                            self.ok_msgs += 1
                            echoed_here += 1
                            head_left = pending[0] if pending else 0
                else:
                    if not pending:
                        self.mismatch("%d-byte message that was never sent" % len(payload))
                        return
                    want_op, want = pending[0]
                    if (op, payload) != (want_op, want):
                        self.mismatch("message of %d bytes (opcode %d) where %d bytes (opcode %d) "
                                      "were due" % (len(payload), op, len(want), want_op))
                        return
                    pending.popleft()
                    self.ok_msgs += 1
                    self.ok_bytes += len(payload)
                    echoed_here += 1
            if c.close_code is not None:
                if self.kind == "raw":
                    self.lost_msgs += len(pending)
                    self.lost_bytes += len(raw_pending)
                else:
                    self.lost_msgs += len(pending)
                    self.lost_bytes += sum(len(p) for _, p in pending)
                self.closes.append((now(), c.close_code, c.close_reason, echoed_here))
                return
            if pending and now() - last_progress > STALL_S:
                self.stalls += 1
                self.mismatch("stalled: nothing echoed for %.0f s with %d messages in flight"
                              % (STALL_S, len(pending)))
                return
            if not pending:
                last_progress = now()


# ---------------------------------------------------------------------------
# MQTT WebSocket clients


class MqttWsClient(threading.Thread):
    """An envelope (/bus/eN) or raw (/dev/dN) client: publishes QoS 1 at
    MQTT_RATE and records the feed messages it receives."""

    def __init__(self, soak, kind, index):
        super().__init__(daemon=True, name="mqtt-%s-%d" % (kind, index))
        self.soak, self.kind, self.index = soak, kind, index
        self.who = ("e%d" if kind == "env" else "d%d") % index
        self.conn = None
        self.ready = threading.Event()
        self.stop_publishing = threading.Event()
        self.stop = threading.Event()
        self.error = None
        self.sent = []  # seqs
        self.unacked = set()
        self.acked = set()
        self.dup_acks = 0
        self.errors = []
        self.feed = collections.Counter()  # feed key -> times received
        self.bad = []  # misrouted or corrupted messages
        self.close = None

    def start_conn(self):
        path = ("/bus/" if self.kind == "env" else "/dev/") + self.who
        self.conn = Conn(self.soak.port, path)
        if self.kind == "env":
            self.conn.send(OP_TEXT, json.dumps({"subscribe": "soak/feed/#", "qos": 1,
                                                "id": "sub"}).encode())
            deadline = now() + 15
            while not self.ready.is_set() and now() < deadline:
                for op, p in self.conn.read(0.2):
                    self.handle(op, p)
                if self.conn.close_code is not None:
                    raise AssertionError("%s closed: %r" % (self.name, self.conn.close_code))
            if not self.ready.is_set():
                raise AssertionError("%s: no ack for its subscribe" % self.name)
        self.ready.set()

    def handle(self, op, payload):
        if self.kind == "env":
            msg = json.loads(payload)
            if "ack" in msg:
                if msg["ack"] == "sub":
                    self.ready.set()
                elif msg["ack"] in self.unacked:
                    self.unacked.discard(msg["ack"])
                    self.acked.add(msg["ack"])
                else:
                    self.dup_acks += 1
            elif "error" in msg:
                self.errors.append(msg["error"])
            elif "topic" in msg:
                key = msg["topic"][len("soak/feed/"):]
                if not msg["topic"].startswith("soak/feed/") or msg.get("payload") != "f:" + key:
                    self.bad.append(msg)
                else:
                    self.feed[key] += 1
            else:
                self.bad.append(msg)
        else:
            text = payload.decode("utf-8", "replace")
            who, _, key = text.partition(":")
            if op != OP_TEXT or who != self.who or not key:
                self.bad.append(text[:100])
            else:
                self.feed[key] += 1

    def publish(self, seq):
        if self.kind == "env":
            self.conn.send(OP_TEXT, json.dumps({"topic": "soak/env/%s/%d" % (self.who, seq),
                                                "payload": "%s:%d" % (self.who, seq), "qos": 1,
                                                "id": seq}).encode())
            self.unacked.add(seq)
        else:
            self.conn.send(OP_TEXT, ("%s:%d" % (self.who, seq)).encode())
        self.sent.append(seq)

    def run(self):
        try:
            seq = 0
            next_t = now()
            while not self.stop.is_set():
                if (not self.stop_publishing.is_set() and now() >= next_t
                        and len(self.unacked) < MAX_UNACKED):
                    self.publish(seq)
                    seq += 1
                    next_t = max(next_t + 1.0 / MQTT_RATE, now() - 1.0)
                for op, p in self.conn.read(0.02):
                    self.handle(op, p)
                if self.conn.close_code is not None:
                    self.close = (now(), self.conn.close_code, self.conn.close_reason)
                    return
        except Closed:
            self.close = (now(), self.conn.close_code, self.conn.close_reason)
        except Exception as e:  # noqa: BLE001 - reported at the end
            self.error = repr(e)


class FeedPublisher(threading.Thread):
    """Another MQTT client (on mosquitto's side port): every tick, one QoS 1
    message to soak/feed/<key> and one to each raw device's
    soak/down/dN/<key>. Keeps each publish's MessageInfo."""

    def __init__(self, soak):
        super().__init__(daemon=True, name="feed")
        self.soak = soak
        self.pub = mqtt_peers.Publisher(None, soak.mosq.side_port,
                                        client_id=mqtt_peers.unique_id("soak-feed"))
        self.pub.client.max_inflight_messages_set(100)
        self.infos = []  # (key, info)
        self.tick_times = {}  # key -> when published
        self.stop = threading.Event()

    def tick(self, pub, key, wait=False):
        out = [(key, pub.publish("soak/feed/" + key, "f:" + key, qos=1, wait=wait))]
        for j in range(N_DEV):
            out.append((key, pub.publish("soak/down/d%d/%s" % (j, key), "d%d:%s" % (j, key),
                                         qos=1, wait=wait)))
        return out

    def run(self):
        seq = 0
        next_t = now()
        while not self.stop.wait(max(0.0, next_t - now())):
            if not self.pub.connected:
                # the broker is away: publish nothing (paho would queue it;
                # the outage batch covers publishing while the gateway is away)
                next_t = now() + 0.05
                continue
            self.tick_times["s%d" % seq] = now()
            self.infos += self.tick(self.pub, "s%d" % seq)
            seq += 1
            next_t = max(next_t + 1.0 / FEED_RATE, now() - 1.0)


# ---------------------------------------------------------------------------
# the burst (a child process: its handshakes are not slowed by our threads)


async def _burst(port, n, timeout):
    async def one(i):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            return "connect: %s" % type(e).__name__, None
        writer.write(("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            writer.close()
            return "handshake: %s" % type(e).__name__, None
        status = head.split(b" ", 2)[1].decode()
        if status != "101":
            writer.close()
            return status, None
        return status, (reader, writer)

    async def echo(i, rw):
        reader, writer = rw
        data = b"burst-%010d" % i
        writer.write(frame(OP_BINARY, data))
        hdr = await reader.readexactly(2)
        got = await reader.readexactly(hdr[1] & 0x7F)
        if hdr[0] & 0x0F != OP_BINARY or got != data:
            return "echo: opcode %d %r" % (hdr[0] & 0x0F, got[:40])
        writer.write(frame(OP_CLOSE, struct.pack("!H", 1000)))
        hdr = await reader.readexactly(2)
        got = await reader.readexactly(hdr[1] & 0x7F)
        if hdr[0] & 0x0F != OP_CLOSE:
            return "close: opcode %d" % (hdr[0] & 0x0F)
        writer.close()
        return "ok"

    async def echo_guarded(i, rw):
        try:
            return await asyncio.wait_for(echo(i, rw), timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            rw[1].close()
            return "echo: %s" % type(e).__name__

    t0 = time.monotonic()
    res = await asyncio.gather(*[one(i) for i in range(n)])
    t_open = time.monotonic() - t0
    statuses = collections.Counter(s for s, _ in res)
    opened = [(i, rw) for i, (s, rw) in enumerate(res) if rw is not None]
    echoes = await asyncio.gather(*[echo_guarded(i, rw) for i, rw in opened])
    return {"statuses": dict(statuses), "echoes": dict(collections.Counter(echoes)),
            "open_s": round(t_open, 2), "all_s": round(time.monotonic() - t0, 2)}


def burst_main(port, n):
    print(json.dumps(asyncio.run(_burst(port, n, 60.0))), flush=True)


# ---------------------------------------------------------------------------
# the soak


class SoakMosquitto(TwoPortMosquitto):
    """TwoPortMosquitto with no cap on QoS 1 messages in flight to a client
    (max_inflight_messages 0, default 20): what it has acked to a publisher
    is written to its subscribers' sockets at once, instead of waiting in its
    memory behind a full in-flight window, where a SIGKILL between two
    autosaves (every second) would lose it - a loss of the broker's, which
    the soak would blame on the gateway."""

    def _write_config(self):
        super()._write_config()
        with open(self.conf_path, "a") as f:
            f.write("max_inflight_messages 0\n")


class Soak:
    def __init__(self, seconds, seed):
        self.seconds = seconds
        self.seed = seed
        self.h = harness.Harness()
        self.problems = []
        self.faults = collections.Counter()
        self.fault_notes = []
        self.echo_windows = []  # (start, end) when echo closes are expected
        self.reloads_ok = self.reloads_failed = 0
        self.rss = []  # (t, kB)
        self.reconnects = []  # seconds from mosquitto accepting to /readyz 200
        self.broker_kills = []  # when mosquitto was taken down
        self.broker_signal = "sigterm"
        self.outage_keys = []
        self.jwt_results = collections.Counter()
        self.garbage_results = collections.Counter()
        self.burst_results = []

    # -- processes --

    def start_echo(self):
        for _ in range(100):
            log_path = self.h.path("echo-%d.stderr" % len(self.h.processes))
            with open(log_path, "wb") as errf:
                proc = harness.popen([harness.ECHO_BIN, "--host", HOST, "--port",
                                      str(self.echo_port)], stdout=subprocess.PIPE,
                                     stderr=errf)
            line = b""
            deadline = now() + 5
            while not line.endswith(b"\n") and now() < deadline:
                r, _, _ = select.select([proc.stdout], [], [], 0.1)
                if r:
                    b = os.read(proc.stdout.fileno(), 1)
                    if not b:
                        break
                    line += b
            if line.startswith(b"listening on"):
                p = harness.Process("wsgate-echo", proc, log_path, None)
                self.h.processes.append(p)
                self.echo = p
                return
            harness.stop_process(proc)
            proc.stdout.close()
            time.sleep(0.1)  # the port still held: again
        raise AssertionError("wsgate-echo could not listen on %d again" % self.echo_port)

    def config(self, extra_route=False, broken=False):
        tgt = {"host": HOST, "port": self.echo_port}
        routes = [
            {"name": "echo", "path": "/echo", "type": "tcp", "target": tgt},
            {"name": "lines", "path": "/lines", "type": "tcp", "framing": "lines",
             "message": "text", "target": tgt},
            {"name": "len32", "path": "/len32", "type": "tcp", "framing": "length32",
             "target": tgt},
            {"name": "secure", "path": "/secure", "type": "tcp", "auth": "jwt", "target": tgt},
            {"name": "bus", "path": "/bus/{who}", "type": "mqtt", "broker": "main",
             "format": "envelope", "publish": {"allow": ["soak/env/#"], "qos": 1},
             "subscribe": {"allow": ["soak/feed/#"]}},
            {"name": "dev", "path": "/dev/{device}", "type": "mqtt", "broker": "main",
             "publish": {"topic": "soak/raw/{device}/up", "qos": 1},
             "subscribe": [{"filter": "soak/down/{device}/#", "qos": 1}]},
        ]
        if extra_route:
            routes.append({"name": "extra", "path": "/extra", "type": "tcp", "target": tgt})
        if broken:
            routes.append({"name": "broken", "path": "/broken", "type": "tcp",
                           "target": {"host": HOST, "port": "80a"}})
        return {
            "listen": [{"host": HOST, "port": self.port}],
            "limits": {"max_queue_bytes": MAX_QUEUE},
            "auth": {"jwt": {"secret": JWT_SECRET}},
            "brokers": {"main": {"uri": self.mosq.uri, "client_id": self.gw_id,
                                 "persistent_session": True}},
            "routes": routes,
        }

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.gw.proc.pid))

    def fd_detail(self):
        out = []
        d = "/proc/%d/fd" % self.gw.proc.pid
        for fd in sorted(os.listdir(d), key=int):
            try:
                out.append("%s:%s" % (fd, os.readlink(os.path.join(d, fd))))
            except OSError:
                pass
        return out

    def settled_fds(self, want=None, timeout=15.0):
        """The gateway's descriptor count once it has not changed for 1 s
        (or has reached `want`)."""
        deadline = now() + timeout
        last, since = self.fds(), now()
        while now() < deadline:
            time.sleep(0.1)
            n = self.fds()
            if want is not None and n == want:
                return n
            if n != last:
                last, since = n, now()
            elif want is None and now() - since >= 1.0:
                return n
        return last

    def rss_loop(self):
        while not self.rss_stop.wait(0.25):
            v = peers.proc_status_kb(self.gw.proc.pid, "VmRSS")
            if v is not None:
                self.rss.append((now(), v))

    def alive(self, what):
        if self.gw.proc.poll() is not None:
            tail = "\n".join(self.gw.log().splitlines()[-40:])
            raise AssertionError("wsgate died (status %s) during %s; its log ends:\n%s"
                                 % (self.gw.proc.returncode, what, tail))

    def metrics(self):
        return mqtt_peers.metrics(self.port)

    # -- faults --

    def fault_echo_kill(self):
        t0 = now()
        os.kill(self.echo.proc.pid, signal.SIGKILL)
        self.echo.proc.wait()
        harness._live_procs.discard(self.echo.proc)
        self.echo.returncode = self.echo.proc.returncode
        self.echo.proc.stdout.close()
        time.sleep(ECHO_DOWN_S)
        self.start_echo()
        t1 = now()
        self.echo_windows.append((t0, t1 + CLOSE_GRACE_S))
        self.faults["echo backend SIGKILL + restart"] += 1
        log("echo backend killed, restarted after %.1f s", t1 - t0)

    def fault_mosquitto(self):
        m = self.mosq
        k0 = now()
        # SIGTERM by default: mosquitto saves what it acked and had not yet
        # delivered. A SIGKILL loses what it had not saved (open finding in
        # docs/soak.md), which no subscriber can get back.
        if self.broker_signal == "sigkill":
            m.kill()
        else:
            m.stop()
        self.broker_kills.append(k0)
        mqtt_peers.wait_ready(self.port, 503, timeout=10)
        # Up with the side port only: the gateway cannot reach it, another
        # client publishes QoS 1 for the WebSocket clients meanwhile.
        m.main_open = False
        m.start()
        n = self.faults["mosquitto down + restart"] + 1
        pub = mqtt_peers.Publisher(None, m.side_port, client_id=mqtt_peers.unique_id("soak-out"))
        keys = []
        try:
            for i in range(OUTAGE_BATCH):
                key = "o%d-%d" % (n, i)
                for _, info in self.feed.tick(pub, key, wait=False):
                    info.wait_for_publish(15)
                    if not info.is_published():
                        raise AssertionError("outage publish %s not acked by mosquitto" % key)
                keys.append(key)
        finally:
            pub.close()
        self.outage_keys += keys
        m.stop()  # SIGTERM: it saves the sessions and what it queued
        m.main_open = True
        m.start()
        t_back = now()
        mqtt_peers.wait_ready(self.port, 200, timeout=20)
        self.reconnects.append(now() - t_back)
        self.faults["mosquitto down + restart"] += 1
        log("mosquitto killed; %d QoS 1 feed messages published while the gateway could not "
            "connect; back after %.1f s, gateway ready %.2f s after the broker accepted",
            len(keys) * (1 + N_DEV), t_back - k0, self.reconnects[-1])

    def reload(self, cfg, expect_ok):
        with open(self.gw.config_path, "w") as f:
            f.write(json.dumps(cfg, indent=1) if isinstance(cfg, dict) else cfg)
        log_before = self.gw.log()
        ok0, bad0 = log_before.count("config reloaded"), log_before.count("config reload failed")
        self.gw.proc.send_signal(signal.SIGHUP)
        deadline = now() + 15
        while now() < deadline:
            text = self.gw.log()
            ok, bad = text.count("config reloaded") - ok0, text.count("config reload failed") - bad0
            if ok or bad:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no reload outcome in wsgate's log within 15 s")
        if expect_ok and ok != 1:
            raise AssertionError("a good config was refused:\n%s" % text[-3000:])
        if not expect_ok and bad != 1:
            raise AssertionError("a broken config was not refused")
        if ok:
            self.reloads_ok += 1
        else:
            self.reloads_failed += 1

    def fault_reload(self):
        self.extra = not self.extra
        self.reload(self.config(extra_route=self.extra), True)
        self.faults["SIGHUP reload"] += 1
        log("SIGHUP reload (extra route %s)", "added" if self.extra else "removed")

    def fault_broken_reload(self):
        self.reload(self.config(broken=True), False)
        # still serving: a new echo connection, /healthz, /readyz
        c = Conn(self.port, "/echo")
        c.send(OP_BINARY, b"after a broken reload")
        got = b""
        deadline = now() + 10
        while len(got) < 21 and now() < deadline and c.close_code is None:
            for op, p in c.read(0.2):
                got += p
        c.close()
        if got != b"after a broken reload":
            raise AssertionError("after the broken reload the echo gave %r (close %r)"
                                 % (got, c.close_code))
        if harness.http_get(self.port, "/healthz").status != 200:
            raise AssertionError("/healthz after the broken reload")
        self.faults["broken config reload (refused)"] += 1
        # the good config back, so the next SIGHUP reloads it
        self.reload(self.config(extra_route=self.extra), True)
        self.faults["SIGHUP reload"] += 1
        log("broken config refused, the gateway kept serving; good config reloaded")

    def fault_burst(self):
        code = ("import sys; sys.path.insert(0, %r); import soak; soak.burst_main(%d, %d)"
                % (HERE, self.port, BURST))
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=180, preexec_fn=harness._die_with_parent)
        try:
            res = json.loads(out.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError("the burst child failed: %s" % out.stdout.decode()[-2000:])
        self.burst_results.append(res)
        self.faults["burst of %d connections" % BURST] += 1
        log("burst of %d connections: %r", BURST, res)
        if res["statuses"] != {"101": BURST} or res["echoes"] != {"ok": BURST}:
            self.problems.append("burst: %r" % res)

    GARBAGE = [
        ("unmasked frame", frame(OP_BINARY, b"plain", mask=False), 1002),
        ("opcode 0x3", frame(0x3, b"what"), 1002),
        ("RSV1 on text", frame(OP_TEXT, b"r", rsv=4), 1002),
        ("126-byte ping", frame(OP_PING, b"p" * 126), 1002),
        ("1-byte close", frame(OP_CLOSE, b"\x03"), 1002),
        ("continuation without start", frame(OP_CONT, b"orphan"), 1002),
        ("fragmented ping", frame(OP_PING, b"p", fin=False), 1002),
        ("close code 1005", frame(OP_CLOSE, struct.pack("!H", 1005)), 1002),
        ("2^63-byte length", struct.pack("!BBQ", 0x82, 0xFF, 1 << 63) + b"\x01\x02\x03\x04x", 1002),
        ("invalid UTF-8 text", frame(OP_TEXT, b"bad \xff\xfe"), 1007),
        ("close reason not UTF-8", frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff\xfe"), 1007),
    ]

    def fault_garbage(self):
        rng = random.Random(self.seed + len(self.garbage_results))
        for name, data, want in self.GARBAGE:
            c = Conn(self.port, "/echo")
            c.send(OP_BINARY, b"ok")  # a good message first
            c.sock.sendall(data)
            deadline = now() + 10
            while c.close_code is None and now() < deadline:
                c.read(0.2)
            c.abort()
            self.garbage_results["%s -> %s" % (name, c.close_code)] += 1
            if c.close_code != want:
                self.problems.append("garbage %s: close %r %r (expected %d)"
                                     % (name, c.close_code, c.close_reason[:80], want))
        # bytes that are not HTTP at all, and random bytes after an upgrade
        for i in range(5):
            s = socket.create_connection((HOST, self.port), timeout=10)
            s.sendall(rng.randbytes(rng.randint(1, 4096)))
            s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
            s.close()
            c = Conn(self.port, "/echo")
            junk = bytearray(rng.randbytes(rng.randint(64, 4096)))
            junk[0] |= 0x20  # RSV2: whatever follows, the first frame is a violation
            c.sock.sendall(junk)
            deadline = now() + 10
            while c.close_code is None and now() < deadline:
                c.read(0.2)
            c.abort()
            self.garbage_results["random bytes (RSV2 first) after the upgrade -> %s"
                                 % c.close_code] += 1
            if c.close_code != 1002:
                self.problems.append("random bytes after an upgrade: close %r" % c.close_code)
        self.faults["garbage and RFC-violating frames"] += 1
        log("garbage: %d bad frames, 5 non-HTTP connections, 5 random streams", len(self.GARBAGE))

    def fault_jwt(self):
        good = jwt_mint.token(jwt_mint.claims("soak"), secret=JWT_SECRET)
        cases = [
            ("forged (another secret)", jwt_mint.token(jwt_mint.claims("soak"),
                                                       secret="not-" + JWT_SECRET), 401),
            ("expired", jwt_mint.token(jwt_mint.claims("soak", ttl=-3600), secret=JWT_SECRET), 401),
            ("alg none", jwt_mint.token(jwt_mint.claims("soak"), header={"alg": "none"},
                                        signature=b""), 401),
            ("tampered claims", ".".join([good.split(".")[0],
                                          jwt_mint.b64url_json(jwt_mint.claims("root")),
                                          good.split(".")[2]]), 401),
            ("garbage", "x.y.z", 401),
            ("valid", good, 101),
        ]
        for name, tok, want in cases:
            for how in ("header", "query"):
                if how == "header":
                    r = harness.raw_upgrade(self.port, "/secure", timeout=10,
                                            extra_headers={"Authorization": "Bearer " + tok})
                else:
                    r = harness.raw_upgrade(self.port, "/secure?token=" + tok, timeout=10)
                self.jwt_results["%s -> %d" % (name, r.status)] += 1
                if r.status != want:
                    self.problems.append("jwt %s (%s): HTTP %d, expected %d"
                                         % (name, how, r.status, want))
                if r.sock is not None:
                    ws = Conn(None, None, timeout=10, resp=r)
                    ws.send(OP_BINARY, b"authorized")
                    got = b""
                    deadline = now() + 10
                    while len(got) < 10 and now() < deadline and ws.close_code is None:
                        for op, p in ws.read(0.2):
                            got += p
                    ws.close()
                    if got != b"authorized":
                        self.problems.append("jwt valid: echo %r (close %r)" % (got, ws.close_code))
        self.faults["forged/expired JWTs"] += 1
        log("JWTs: %d refused, %d accepted", sum(v for k, v in self.jwt_results.items()
                                                 if k.endswith("401")),
            sum(v for k, v in self.jwt_results.items() if k.endswith("101")))

    CYCLE = [
        (0.05, "jwt"), (0.10, "echo_kill"), (0.18, "reload"), (0.24, "garbage"),
        (0.30, "mosquitto"), (0.40, "reload"), (0.45, "burst"), (0.52, "reload"),
        (0.58, "echo_kill"), (0.64, "broken_reload"), (0.70, "mosquitto"),
        (0.82, "echo_kill"), (0.88, "reload"), (0.92, "garbage"), (0.95, "jwt"),
    ]

    # -- the run --

    def run(self):
        self.mosq = SoakMosquitto(self.h)
        self.echo_port = self.pick_echo_port()
        self.start_echo()
        self.port = harness.free_port()
        self.gw_id = mqtt_peers.unique_id("wsgate-soak")
        self.extra = False
        self.gw = self.h.start_gateway(self.config())
        mqtt_peers.wait_ready(self.port, 200, timeout=15)
        self.mosq.wait_connected(self.gw_id, 1, timeout=10)
        time.sleep(0.5)
        self.fd_start = self.settled_fds()
        self.fd_start_detail = self.fd_detail()
        self.rss_idle = peers.proc_status_kb(self.gw.proc.pid, "VmRSS")
        peers.reset_peak_rss(self.gw.proc.pid)  # VmHWM from here: catches what sampling misses
        log("wsgate pid %d: %d descriptors, RSS %d kB before the first client",
            self.gw.proc.pid, self.fd_start, self.rss_idle)
        self.rss_stop = threading.Event()
        rss_t = threading.Thread(target=self.rss_loop, daemon=True)
        rss_t.start()

        self.durable = mqtt_peers.Subscriber(None, self.mosq.side_port,
                                             ["soak/env/#", "soak/raw/#"], qos=1,
                                             client_id=mqtt_peers.unique_id("soak-durable"),
                                             clean_session=False)
        self.mqtt_clients = [MqttWsClient(self, "env", i) for i in range(N_ENV)]
        self.mqtt_clients += [MqttWsClient(self, "dev", i) for i in range(N_DEV)]
        for c in self.mqtt_clients:
            c.start_conn()
        for j in range(N_DEV):
            self.mosq.wait_filter("SUBSCRIBE", self.gw_id, "soak/down/d%d/#" % j, timeout=15)
        time.sleep(2.0)  # mosquitto saves its sessions every second
        self.feed = FeedPublisher(self)
        self.echo_clients = ([EchoClient(self, "raw", i) for i in range(N_RAW)]
                             + [EchoClient(self, "lines", i) for i in range(N_LINES)]
                             + [EchoClient(self, "len32", i) for i in range(N_LEN32)])
        t_start = now()
        for c in self.mqtt_clients + self.echo_clients + [self.feed]:
            c.start()
        log("load running: %d echo clients, %d MQTT WebSocket clients, a feed publisher; "
            "%d s", len(self.echo_clients), len(self.mqtt_clients), self.seconds)

        cycles = max(1, int(round(self.seconds / CYCLE_S)))
        span = self.seconds / cycles
        events = sorted((t_start + k * span + f * span, name)
                        for k in range(cycles) for f, name in self.CYCLE)
        for at, name in events:
            while now() < at:
                self.alive("the load")
                time.sleep(min(0.5, max(0.0, at - now())))
            self.alive("before %s" % name)
            getattr(self, "fault_" + name)()
            self.alive("after %s" % name)
        while now() < t_start + self.seconds:
            self.alive("the load")
            time.sleep(0.5)
        self.t_load = now() - t_start
        self.finish()
        self.rss_stop.set()
        rss_t.join()

    def pick_echo_port(self):
        # below the ephemeral range, so that no client connection can hold it
        # in TIME_WAIT when the echo server binds it again
        rng = random.Random()
        for _ in range(200):
            p = rng.randint(20000, 32000)
            if harness.port_is_free(p):
                return p
        raise AssertionError("no free port below 32000")

    def finish(self):
        log("load done; draining")
        self.feed.stop.set()
        self.feed.join(10)
        for c in self.mqtt_clients:
            c.stop_publishing.set()
        for c in self.echo_clients:
            c.stop.set()
        deadline = now() + DRAIN_S
        for c in self.echo_clients:
            c.drained.wait(max(0.1, deadline - now()))
        # every feed publish acked by mosquitto
        deadline = now() + DRAIN_S
        while now() < deadline and not all(i.is_published() for _, i in self.feed.infos):
            time.sleep(0.1)
        published = [k for k, i in self.feed.infos if i.is_published()]
        self.feed_unpublished = len(self.feed.infos) - len(published)
        self.feed_keys = set(published) | set(self.outage_keys)
        self.feed_msgs = len(published) + len(self.outage_keys) * (1 + N_DEV)
        # every envelope publish acked, every WebSocket client has the feed,
        # the durable subscriber has every client publish
        deadline = now() + DRAIN_S
        while now() < deadline:
            if (all(not c.unacked for c in self.mqtt_clients if c.kind == "env")
                    and all(self.feed_keys <= set(c.feed) for c in self.mqtt_clients)
                    and not self.durable_missing()):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # late duplicates
        for c in self.mqtt_clients:
            c.stop.set()
            c.join(10)
            c.conn.close()
        self.durable.close()
        self.feed.pub.close()
        for c in self.echo_clients:
            c.join(10)
        self.fd_end = self.settled_fds(want=self.fd_start, timeout=15)
        self.fd_end_detail = self.fd_detail()
        self.rss_end = peers.proc_status_kb(self.gw.proc.pid, "VmRSS")
        self.rss_hwm = peers.proc_status_kb(self.gw.proc.pid, "VmHWM") or 0
        self.metrics_end = self.metrics()
        self.exit_code = self.gw.stop()
        log("wsgate exited with %s", self.exit_code)

    def durable_wants(self):
        want = set()
        for c in self.mqtt_clients:
            if c.kind == "env":
                want |= {("soak/env/%s/%d" % (c.who, s), "%s:%d" % (c.who, s)) for s in c.acked}
            else:
                want |= {("soak/raw/%s/up" % c.who, "%s:%d" % (c.who, s)) for s in c.sent}
        return want

    def durable_missing(self):
        got = {(t, p.decode(errors="replace")) for t, p, _, _ in self.durable.snapshot()}
        return self.durable_wants() - got

    # -- verdict --

    def report(self):
        f = {}
        e = self.echo_clients
        f["duration_s"] = round(self.t_load, 1)
        f["echo_clients"] = len(e)
        f["echo_messages_sent"] = sum(c.sent_msgs for c in e)
        f["echo_messages_checked"] = sum(c.ok_msgs for c in e)
        f["echo_bytes_checked"] = sum(c.ok_bytes for c in e)
        f["echo_in_flight_at_close_msgs"] = sum(c.lost_msgs for c in e)
        f["echo_in_flight_at_close_bytes"] = sum(c.lost_bytes for c in e)
        f["echo_connections"] = sum(c.connections for c in e)
        f["echo_mismatches"] = sum(c.mismatches for c in e)
        f["echo_stalls"] = sum(c.stalls for c in e)
        closes = collections.Counter(code for c in e for _, code, _, _ in c.closes)
        f["echo_closes_by_code"] = dict(sorted(closes.items()))
        unexplained = [(c.name, round(t - T0, 1), code, reason[:60].decode(errors="replace"))
                       for c in e for t, code, reason, _ in c.closes
                       if code not in ECHO_CODES_OK
                       or not any(a <= t <= b for a, b in self.echo_windows)]
        f["echo_unexplained_closes"] = len(unexplained)
        f["echo_upgrade_errors"] = sum(len(c.upgrade_errors) for c in e)

        env = [c for c in self.mqtt_clients if c.kind == "env"]
        dev = [c for c in self.mqtt_clients if c.kind == "dev"]
        f["mqtt_ws_clients"] = len(self.mqtt_clients)
        f["envelope_publishes_sent"] = sum(len(c.sent) for c in env)
        f["envelope_publishes_acked"] = sum(len(c.acked) for c in env)
        f["envelope_errors"] = sum(len(c.errors) for c in env)
        f["raw_publishes_sent"] = sum(len(c.sent) for c in dev)
        got = self.durable.snapshot()
        distinct = {(t, p) for t, p, _, _ in got}
        missing = self.durable_missing()
        f["durable_subscriber_received"] = len(got)
        f["durable_subscriber_duplicates"] = len(got) - len(distinct)
        f["client_publishes_lost"] = len(missing)
        f["feed_messages_published"] = self.feed_msgs
        f["feed_published_during_outages"] = len(self.outage_keys) * (1 + N_DEV)
        f["feed_unpublished"] = self.feed_unpublished
        deliveries_due = len(self.feed_keys) * len(self.mqtt_clients)
        lost_feed = sum(len(self.feed_keys - set(c.feed)) for c in self.mqtt_clients)
        f["feed_deliveries_due"] = deliveries_due
        f["feed_deliveries_lost"] = lost_feed
        f["feed_duplicates"] = sum(sum(c.feed.values()) - len(c.feed) for c in self.mqtt_clients)
        f["feed_strays"] = sum(len(set(c.feed) - self.feed_keys) for c in self.mqtt_clients)
        f["mqtt_misrouted_or_corrupt"] = sum(len(c.bad) for c in self.mqtt_clients)
        f["mqtt_ws_closed"] = sum(1 for c in self.mqtt_clients if c.close or c.error)
        f["gateway_reconnect_s"] = [round(x, 2) for x in self.reconnects]

        f["faults"] = dict(self.faults)
        f["reloads_ok"], f["reloads_refused"] = self.reloads_ok, self.reloads_failed
        f["burst"] = self.burst_results
        f["garbage_outcomes"] = dict(sorted(self.garbage_results.items()))
        f["jwt_outcomes"] = dict(sorted(self.jwt_results.items()))
        m = self.metrics_end
        f["metric_reloads_success"] = harness.metric(m, "wsgate_config_reloads_total",
                                                     result="success")
        f["metric_reloads_failure"] = harness.metric(m, "wsgate_config_reloads_total",
                                                     result="failure")
        f["fds_start"], f["fds_end"] = self.fd_start, self.fd_end
        peak = max([v for _, v in self.rss] + [self.rss_idle, self.rss_hwm])
        max_open = len(self.echo_clients) + len(self.mqtt_clients) + 2
        bound = self.rss_idle + max_open * 2 * MAX_QUEUE // 1024 + BURST * BURST_CONN_KB + SLACK_KB
        f["rss_idle_kb"], f["rss_peak_kb"], f["rss_end_kb"] = self.rss_idle, peak, self.rss_end
        f["rss_bound_kb"] = bound
        f["rss_samples"] = len(self.rss)
        f["exit_code"] = self.exit_code
        f["seed"] = self.seed

        p = list(self.problems)
        if f["echo_mismatches"]:
            p.append("echo mismatches: %s" % [n for c in e for n in c.mismatch_notes][:10])
        if f["echo_stalls"]:
            p.append("echo stalls: %d" % f["echo_stalls"])
        if unexplained:
            p.append("echo closes outside a backend outage or with another code: %r"
                     % unexplained[:10])
        if f["echo_upgrade_errors"]:
            p.append("echo upgrades failed: %r" % [x for c in e for x in c.upgrade_errors][:5])
        if f["echo_messages_checked"] < len(e):
            p.append("the echo clients checked almost nothing")
        if f["envelope_errors"]:
            p.append("envelope errors: %r" % [x for c in env for x in c.errors][:5])
        if f["envelope_publishes_acked"] != f["envelope_publishes_sent"]:
            p.append("envelope publishes never acked: %d" % (f["envelope_publishes_sent"]
                                                             - f["envelope_publishes_acked"]))
        if missing:
            p.append("client publishes lost (acked/sent, never at the durable subscriber): %d, "
                     "e.g. %r" % (len(missing), sorted(missing)[:5]))
        if lost_feed:
            lost_keys = sorted({k for c in self.mqtt_clients for k in self.feed_keys - set(c.feed)})
            when = ["%s published %s" % (k, "%+.3f s from the nearest broker SIGKILL" % min(
                (self.feed.tick_times[k] - b for b in self.broker_kills), key=abs)
                if k in self.feed.tick_times and self.broker_kills else "during an outage")
                for k in lost_keys[:5]]
            p.append("feed messages lost: %d, e.g. %r; %s" % (lost_feed, [
                (c.who, sorted(self.feed_keys - set(c.feed))[:5]) for c in self.mqtt_clients
                if self.feed_keys - set(c.feed)][:4], "; ".join(when)))
        if f["feed_unpublished"]:
            p.append("feed publishes never acked by mosquitto: %d" % f["feed_unpublished"])
        if f["feed_strays"] or f["mqtt_misrouted_or_corrupt"]:
            p.append("MQTT strays/misrouted: %r" % [x for c in self.mqtt_clients
                                                     for x in c.bad][:5])
        if f["mqtt_ws_closed"]:
            p.append("MQTT WebSocket clients closed or failed: %r"
                     % [(c.name, c.close, c.error) for c in self.mqtt_clients
                        if c.close or c.error])
        if f["metric_reloads_success"] != self.reloads_ok or \
                f["metric_reloads_failure"] != self.reloads_failed:
            p.append("reload metrics %r/%r, expected %d/%d" % (
                f["metric_reloads_success"], f["metric_reloads_failure"], self.reloads_ok,
                self.reloads_failed))
        if self.fd_end != self.fd_start:
            p.append("descriptors: %d at start, %d at the end: %s" % (
                self.fd_start, self.fd_end, self.fd_listing()))
        if not peers.binary_has_asan() and peak > bound:
            p.append("RSS peak %d kB over the bound %d kB" % (peak, bound))
        if self.exit_code != 0:
            p.append("wsgate exited with %r on SIGTERM" % self.exit_code)
        return f, p

    def fd_listing(self):
        return "at start %s; at the end %s" % (self.fd_start_detail, self.fd_end_detail)


def print_figures(f):
    print("SOAK figures:", flush=True)
    for k, v in f.items():
        print("SOAK   %-32s %s" % (k, v), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--report", help="write the figures as JSON here")
    ap.add_argument("--broker-kill", choices=("sigterm", "sigkill"),
                    default=os.environ.get("WSGATE_SOAK_BROKER_KILL", "sigterm"),
                    help="how mosquitto is taken down (default sigterm: it saves what it "
                         "acked; sigkill loses what it had not saved, see docs/soak.md)")
    ap.add_argument("--burst", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.burst:
        burst_main(*args.burst)
        return 0
    seconds = DEFAULT_SECONDS
    if os.environ.get("WSGATE_SOAK_SECONDS"):
        seconds = float(os.environ["WSGATE_SOAK_SECONDS"])
    if args.minutes:
        seconds = args.minutes * 60
    if args.seconds:
        seconds = args.seconds
    if not mqtt_peers.have_mosquitto():
        print("mosquitto not found at %s" % mqtt_peers.MOSQUITTO_BIN, file=sys.stderr)
        return 1
    seed = int(os.environ.get("WSGATE_TEST_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
    print("soak: %.0f s, seed %d (replay the clients' data with WSGATE_TEST_SEED=%d), wsgate %s"
          % (seconds, seed, seed, harness.WSGATE_BIN), flush=True)
    s = Soak(seconds, seed)
    s.broker_signal = args.broker_kill
    problems = []
    figures = None
    try:
        s.run()
        figures, problems = s.report()
    except Exception as e:  # noqa: BLE001 - reported with the logs below
        import traceback
        traceback.print_exc()
        problems.append("the soak itself failed: %r" % e)
    if problems:
        # keep every log (wsgate, mosquitto with log_type all, wsgate-echo):
        # Harness.close() removes its temp dir when the gateway exited cleanly
        import shutil
        keep = "/tmp/wsgate-soak-failed-%d" % os.getpid()
        try:
            for p in s.h.processes:
                if p.name == "mosquitto":
                    p.stop()
            shutil.copytree(s.h.tmp, keep, dirs_exist_ok=True)
            print("SOAK logs kept in %s" % keep, flush=True)
        except OSError as e:
            print("SOAK could not keep the logs: %r" % e, flush=True)
    try:
        s.h.close()  # stops everything; exit status and sanitizer check of wsgate
    except AssertionError as e:
        problems.append(str(e))
    if figures:
        print_figures(figures)
        if args.report:
            with open(args.report, "w") as fh:
                json.dump(figures, fh, indent=1)
    if problems:
        for name, text in s.h.logs():
            if name == "wsgate":
                sys.stderr.write("---- wsgate stderr, last 15000 bytes ----\n%s\n" % text[-15000:])
        for pr in problems:
            print("SOAK FAIL: %s" % pr, flush=True)
        return 1
    print("SOAK OK: lost 0, mismatches 0, descriptors %d -> %d, RSS peak %d kB, exit 0"
          % (figures["fds_start"], figures["fds_end"], figures["rss_peak_kb"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

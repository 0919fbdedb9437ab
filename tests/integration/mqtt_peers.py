"""mqtt_peers.py - a real mosquitto and Paho clients for wsgate's MQTT tests.

Mosquitto: /usr/sbin/mosquitto on 127.0.0.1 and a free port, from a config
file written into the harness's temp dir, logging everything (log_type all)
to a file the tests read to see what the gateway did at the broker (one
SUBSCRIBE for many WebSocket clients, the UNSUBSCRIBE when the last one goes,
the SUBSCRIBE again after a restart). It is registered with the Harness as a
process, so Harness.close() always stops it (after the gateways, which were
started later) and its log is printed when a test fails. kill() is a crash
(SIGKILL); start() again comes back on the same port.

Subscriber and Publisher: paho-mqtt 1.6.1 clients running their network
loop in a thread; the Subscriber records (topic, payload bytes, qos, retain)
thread-safely and re-subscribes after a reconnect. Both are closed by
Harness.close() (registered as backends).

Not a test itself.
"""

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as mqtt

import harness
from harness import HOST

MOSQUITTO_BIN = os.environ.get("WSGATE_MOSQUITTO_BIN", "/usr/sbin/mosquitto")

_unique = itertools.count(1)


def unique_id(prefix):
    """A client id nobody else in this run (or a concurrent one) uses."""
    return "%s-%d-%d-%s" % (prefix, os.getpid(), next(_unique), uuid.uuid4().hex[:6])


def have_mosquitto():
    return os.access(MOSQUITTO_BIN, os.X_OK)


# ---------------------------------------------------------------------------
# the broker

_LOG_LINE_RE = re.compile(r"^(\d+): (.*)$")


class Mosquitto(harness.Process):
    """A mosquitto process owned by a Harness. `persistence`: keep durable
    sessions in a file saved every second (autosave_interval 1), so that a
    durable Paho subscriber's session survives a SIGKILL and a restart; the
    gateway's own session is a clean one and is never restored by the broker."""

    def __init__(self, h, port=None, persistence=False, extra_config=""):
        self.h = h
        self.port = port or harness.free_port()
        self.dir = os.path.join(h.tmp, "mosquitto-%d" % len(h.processes))
        os.makedirs(self.dir, exist_ok=True)
        self.conf_path = os.path.join(self.dir, "mosquitto.conf")
        self.broker_log_path = os.path.join(self.dir, "mosquitto.log")
        self.stderr_path = os.path.join(self.dir, "mosquitto.stderr")
        self.persistence = persistence
        self.extra_config = extra_config
        self.starts = 0
        super().__init__("mosquitto", None, self.broker_log_path, None)
        self._write_config()
        h.processes.insert(0, self)  # stopped last (close() walks them in reverse)
        self.start()

    def _write_config(self):
        lines = [
            "listener %d %s" % (self.port, HOST),
            "allow_anonymous true",
            "log_type all",
            "log_dest file %s" % self.broker_log_path,
            "log_timestamp true",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            # As root mosquitto would switch to the "mosquitto" user, which
            # cannot write the log into our temp dir.
            lines.append("user root")
        if self.persistence:
            lines += ["persistence true",
                      "persistence_location %s/" % self.dir,
                      "persistence_file mosquitto.db",
                      "autosave_interval 1"]
        else:
            lines.append("persistence false")
        if self.extra_config:
            lines.append(self.extra_config)
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def uri(self):
        return "tcp://%s:%d" % (HOST, self.port)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        """Starts mosquitto (again) on self.port and waits until it accepts
        connections. After a kill the port may briefly stay busy: retried."""
        if self.running():
            raise AssertionError("mosquitto is already running")
        deadline = time.monotonic() + timeout
        while True:
            errf = open(self.stderr_path, "ab")
            try:
                self.proc = harness.popen([MOSQUITTO_BIN, "-c", self.conf_path],
                                          stdout=errf, stderr=errf)
            finally:
                errf.close()
            self.returncode = None
            self.killed = False
            self.starts += 1
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with socket.create_connection((HOST, self.port), timeout=0.5):
                        return
                except OSError:
                    time.sleep(0.02)
            if self.proc.poll() is None:
                harness.stop_process(self.proc)
                raise AssertionError("mosquitto did not accept on port %d within %ss:\n%s"
                                     % (self.port, timeout, self.log()))
            harness._live_procs.discard(self.proc)
            if time.monotonic() >= deadline:
                raise AssertionError("mosquitto exited with status %s at start:\n%s"
                                     % (self.proc.returncode, self.log()))
            time.sleep(0.1)  # e.g. the port still held: try again

    def restart(self, timeout=10.0):
        """Starts again on the same port after kill() or stop()."""
        self.start(timeout)

    def stop(self):
        """SIGTERM, then SIGKILL after the harness's grace period."""
        if self.proc is None:
            return None
        if self.returncode is None:
            self.returncode, self.killed = harness.stop_process(self.proc)
        return self.returncode

    def kill(self):
        """A crash: SIGKILL, reaped at once. The port stops accepting."""
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError("mosquitto is not running")
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)
        harness._live_procs.discard(self.proc)
        self.returncode = self.proc.returncode

    def log(self):
        parts = []
        for path in (self.stderr_path, self.broker_log_path):
            try:
                with open(path, "r", errors="replace") as f:
                    parts.append(f.read())
            except OSError:
                pass
        return "\n".join(parts)

    def broker_log(self):
        try:
            with open(self.broker_log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_lines(self):
        """The broker log's messages without their timestamps."""
        out = []
        for line in self.broker_log().splitlines():
            m = _LOG_LINE_RE.match(line)
            out.append(m.group(2) if m else line)
        return out

    def count_lines(self, text):
        """How many log lines contain `text`, e.g. "Received SUBSCRIBE from wsgate-1"."""
        return sum(1 for line in self.log_lines() if text in line)

    def packets(self, kind, client_id):
        """The SUBSCRIBE or UNSUBSCRIBE packets the broker received from
        `client_id`, in order, each a list of the filters it carried (only
        packets whose filters were all logged)."""
        assert kind in ("SUBSCRIBE", "UNSUBSCRIBE")
        head = "Received %s from %s" % (kind, client_id)
        out = []
        lines = self.log_lines()
        i = 0
        while i < len(lines):
            if lines[i] == head:
                filters = []
                i += 1
                while i < len(lines) and lines[i].startswith("\t"):
                    f = lines[i][1:]
                    if kind == "SUBSCRIBE":
                        f = re.sub(r" \(QoS \d+\)$", "", f)
                    filters.append(f)
                    i += 1
                    # mosquitto adds "<client> <qos> <filter>" / "<client> <filter>"
                    if i < len(lines) and lines[i].startswith(client_id + " "):
                        i += 1
                out.append(filters)
                continue
            i += 1
        return out

    def filter_count(self, kind, client_id, flt):
        """How many SUBSCRIBE/UNSUBSCRIBE packets from client_id named `flt`."""
        return sum(1 for p in self.packets(kind, client_id) if flt in p)

    def wait_filter(self, kind, client_id, flt, count=1, timeout=10.0):
        """Waits until client_id has sent `count` (UN)SUBSCRIBE packets naming
        `flt`, and the broker has answered the last one. Returns the count."""
        ack = "Sending %s to %s" % ("SUBACK" if kind == "SUBSCRIBE" else "UNSUBACK", client_id)
        deadline = time.monotonic() + timeout
        while True:
            n = self.filter_count(kind, client_id, flt)
            if n >= count:
                # the broker's answer follows the packet it received
                lines = self.log_lines()
                last_rx = max(i for i, l in enumerate(lines)
                              if l == "Received %s from %s" % (kind, client_id))
                if any(l == ack for l in lines[last_rx:]):
                    return n
            if time.monotonic() >= deadline:
                raise AssertionError("mosquitto saw %d %s of %r from %s within %ss (wanted %d); "
                                     "its %s packets from that client: %r"
                                     % (n, kind, flt, client_id, timeout, count, kind,
                                        self.packets(kind, client_id)))
            time.sleep(0.05)

    def connects(self, client_id):
        """How many times client_id connected (CONNACK sent)."""
        return self.count_lines("Sending CONNACK to %s " % client_id)

    def wait_connected(self, client_id, count=1, timeout=20.0):
        deadline = time.monotonic() + timeout
        while self.connects(client_id) < count:
            if time.monotonic() >= deadline:
                raise AssertionError("%s connected to mosquitto %d times within %ss "
                                     "(wanted %d)" % (client_id, self.connects(client_id),
                                                      timeout, count))
            time.sleep(0.05)

    def received_publishes(self, client_id, topic=None):
        """[(topic, qos, payload length)] of the PUBLISH packets from client_id."""
        rx = re.compile(r"^Received PUBLISH from %s \(d(\d), q(\d), r(\d), m\d+, '(.*)', "
                        r"\.\.\. \((\d+) bytes\)\)$" % re.escape(client_id))
        out = []
        for line in self.log_lines():
            m = rx.match(line)
            if m and (topic is None or m.group(4) == topic):
                out.append((m.group(4), int(m.group(2)), int(m.group(5))))
        return out


# ---------------------------------------------------------------------------
# Paho clients


class _PahoClient:
    def __init__(self, h, port, client_id, clean_session, prefix):
        self.client_id = client_id or unique_id(prefix)
        self.client = mqtt.Client(client_id=self.client_id, clean_session=clean_session,
                                  protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.connected = False
        self.connect_count = 0
        self.client.on_connect = self._on_connect_base
        self.client.on_disconnect = self._on_disconnect
        self.install_callbacks()  # before the network thread runs, so none is missed
        self.closed = False
        if h is not None:
            h.backends.append(self)
        self.client.connect(HOST, port, keepalive=10)
        self.client.loop_start()

    def _on_connect_base(self, client, userdata, flags, rc):
        if rc != 0:
            return
        with self.cond:
            self.connected = True
            self.connect_count += 1
            self.cond.notify_all()
        self.on_connected(flags)

    def install_callbacks(self):
        pass

    def on_connected(self, flags):
        pass

    def _on_disconnect(self, client, userdata, rc):
        with self.cond:
            self.connected = False
            self.cond.notify_all()

    def wait_connected(self, count=1, timeout=10.0):
        with self.cond:
            if not self.cond.wait_for(lambda: self.connected and self.connect_count >= count,
                                      timeout):
                raise AssertionError("paho client %s: not connected (%d connects, wanted %d) "
                                     "within %ss" % (self.client_id, self.connect_count, count,
                                                     timeout))

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.client.disconnect()
        except Exception:
            pass
        self.client.loop_stop()


class Subscriber(_PahoClient):
    """Subscribes to `filters` (again after every reconnect) and records what
    arrives. messages: a list of (topic, payload bytes, qos, retain)."""

    def __init__(self, h, port, filters, qos=1, client_id=None, clean_session=True,
                 timeout=10.0):
        self.filters = [filters] if isinstance(filters, str) else list(filters)
        self.qos = qos
        self.messages = []
        self.suback_count = 0
        super().__init__(h, port, client_id, clean_session, "test-sub")
        self.wait_subscribed(1, timeout)

    def install_callbacks(self):
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def on_connected(self, flags):
        self.client.subscribe([(f, self.qos) for f in self.filters])

    def _on_subscribe(self, client, userdata, mid, granted_qos):
        with self.cond:
            self.suback_count += 1
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self.cond.notify_all()

    def wait_subscribed(self, count=1, timeout=10.0):
        with self.cond:
            if not self.cond.wait_for(lambda: self.suback_count >= count, timeout):
                raise AssertionError("paho subscriber %s got %d SUBACKs within %ss (wanted %d)"
                                     % (self.client_id, self.suback_count, timeout, count))

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, n, timeout=10.0):
        """Waits until at least n messages arrived; returns all so far.
        Raises AssertionError naming what did arrive."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
            got = list(self.messages)
        if len(got) < n:
            raise AssertionError("paho subscriber %s (%r) got %d messages within %ss, wanted %d: "
                                 "%r" % (self.client_id, self.filters, len(got), timeout, n,
                                         got[:20]))
        return got

    def wait_quiet(self, seconds):
        """Sleeps `seconds`; returns all messages so far (to check nothing more came)."""
        time.sleep(seconds)
        return self.snapshot()

    def payloads(self, topic=None):
        return [m[1] for m in self.snapshot() if topic is None or m[0] == topic]

    def clear(self):
        with self.lock:
            self.messages.clear()


class Publisher(_PahoClient):
    """A connected client for publishing."""

    def __init__(self, h, port, client_id=None, timeout=10.0):
        super().__init__(h, port, client_id, True, "test-pub")
        self.wait_connected(1, timeout)

    def publish(self, topic, payload, qos=0, retain=False, wait=True, timeout=10.0):
        """Publishes; with wait, returns once it is written (QoS 0) or PUBACKed (QoS 1)."""
        if isinstance(payload, str):
            payload = payload.encode()
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            raise AssertionError("paho publish to %r failed: rc %d" % (topic, info.rc))
        if wait:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise AssertionError("paho publish to %r not done within %ss" % (topic, timeout))
        return info


def publish_once(port, topic, payload, qos=0, retain=False, timeout=10.0):
    """Connects, publishes one message, waits for it to be done, disconnects."""
    p = Publisher(None, port, timeout=timeout)
    try:
        p.publish(topic, payload, qos=qos, retain=retain, timeout=timeout)
    finally:
        p.close()


# ---------------------------------------------------------------------------
# gateway config helpers


def broker_config(mosq, client_id=None, **extra):
    """{"main": {...}} for a gateway config's "brokers"."""
    b = {"uri": mosq.uri, "client_id": client_id or unique_id("wsgate-test")}
    b.update(extra)
    return {"main": b}


def gateway_config(port, mosq, routes, client_id=None, limits=None, broker_extra=None):
    cfg = {
        "listen": [{"host": HOST, "port": port}],
        "brokers": broker_config(mosq, client_id, **(broker_extra or {})),
        "routes": routes,
    }
    if limits:
        cfg["limits"] = limits
    return cfg


def readyz(port):
    return harness.http_get(port, "/readyz", timeout=3.0)


def metrics(port):
    r = harness.http_get(port, "/metrics", timeout=5.0)
    if r.status != 200:
        raise AssertionError("/metrics answered %d" % r.status)
    return harness.parse_prometheus(r.body.decode())


def wait_ready(port, want_status=200, timeout=15.0):
    """Polls /readyz until it answers want_status; returns the response.
    Raises AssertionError with the last answer otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = readyz(port)
            if last.status == want_status:
                return last
        except OSError as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("/readyz did not answer %d within %ss (last: %r)"
                                 % (want_status, timeout, last))
        time.sleep(0.05)


def wait_metric(port, name, want, timeout=10.0, **labels):
    """Polls /metrics until series `name{labels}` equals want (None: absent)."""
    deadline = time.monotonic() + timeout
    while True:
        v = harness.metric(metrics(port), name, **labels)
        if v == want:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("%s%r is %r after %ss, wanted %r" % (name, labels, v, timeout,
                                                                     want))
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# a synchronous WebSocket client (raw frames, so nothing is hidden)


def ws_upgrade(port, path, rcvbuf=None, timeout=5.0, headers=None):
    """Like harness.raw_upgrade, but can set SO_RCVBUF before connecting (a
    client whose kernel buffers little, to overflow the gateway's queue)."""
    import base64
    import hashlib
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((HOST, port))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (HOST, port), "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key, "Sec-WebSocket-Version: 13"]
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    try:
        status = int(status_line.split(" ")[1])
    except (IndexError, ValueError):
        sock.close()
        raise AssertionError("bad HTTP response to the upgrade of %s: %r" % (path, buf[:300]))
    if status != 101:
        sock.close()
        raise AssertionError("upgrade of %s answered %r: %r" % (path, status_line, rest[:300]))
    want = base64.b64encode(hashlib.sha1((key + harness.WS_GUID).encode()).digest()).decode()
    accept = None
    for hl in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = hl.partition(":")
        if k.strip().lower() == "sec-websocket-accept":
            accept = v.strip()
    if accept != want:
        sock.close()
        raise AssertionError("bad Sec-WebSocket-Accept %r (expected %r)" % (accept, want))
    return harness.RawResponse(status_line, status, [], b"", sock, rest)


class WsClient:
    """A blocking WebSocket client over harness.RawWebSocket. Messages are
    (opcode, payload bytes); pings are answered while reading."""

    def __init__(self, port, path, rcvbuf=None, timeout=5.0, headers=None):
        self.path = path
        self.ws = harness.RawWebSocket(ws_upgrade(port, path, rcvbuf, timeout, headers))
        self.close_frame = None  # (code, reason) once the server sent one

    @property
    def sock(self):
        return self.ws.sock

    def send_text(self, text):
        self.ws.send(harness.OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_binary(self, data):
        self.ws.send(harness.OP_BINARY, data)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def recv(self, timeout=5.0):
        """The next message. AssertionError on a close frame or a timeout."""
        import peers
        if self.close_frame is not None:
            raise AssertionError("%s: already closed by the server with %r"
                                 % (self.path, self.close_frame))
        try:
            msgs, close = peers.read_messages(self.ws, until=lambda m: len(m) >= 1,
                                              timeout=timeout)
        except socket.timeout:
            raise AssertionError("%s: no message within %ss" % (self.path, timeout))
        except EOFError as e:
            raise AssertionError("%s: the connection ended without a close frame (%s)"
                                 % (self.path, e))
        except ConnectionError as e:
            raise AssertionError("%s: the connection broke: %r" % (self.path, e))
        if close is not None:
            self.close_frame = close
            raise AssertionError("%s: the server closed the connection with %r while a message "
                                 "was expected" % (self.path, close))
        return msgs[0]

    def recv_text(self, timeout=5.0):
        op, payload = self.recv(timeout)
        if op != harness.OP_TEXT:
            raise AssertionError("%s: expected a text message, got opcode %d: %r"
                                 % (self.path, op, payload[:200]))
        return payload.decode("utf-8")

    def recv_json(self, timeout=5.0):
        text = self.recv_text(timeout)
        try:
            return json.loads(text)
        except ValueError:
            raise AssertionError("%s: not JSON: %r" % (self.path, text[:300]))

    def expect_silence(self, seconds):
        """Fails if any message (or close) arrives within `seconds`."""
        try:
            msg = self.recv(seconds)
        except AssertionError as e:
            if "no message within" in str(e):
                return
            raise
        raise AssertionError("%s: expected nothing, got %r" % (self.path, msg))

    def ping(self, payload=b"alive", timeout=5.0):
        """Sends a ping and waits for its pong; fails on a data message or close."""
        import struct
        self.ws.send(harness.OP_PING, payload)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fin, op, data = self.ws.recv_frame(max(0.01, deadline - time.monotonic()))
            except socket.timeout:
                raise AssertionError("%s: no pong within %ss" % (self.path, timeout))
            except (EOFError, ConnectionError) as e:
                raise AssertionError("%s: the connection is gone (%r)" % (self.path, e))
            if op == harness.OP_PONG and data == payload:
                return
            if op == harness.OP_PING:
                self.ws.send(harness.OP_PONG, data)
                continue
            if op == harness.OP_CLOSE:
                self.close_frame = (struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None,
                                    data[2:])
                raise AssertionError("%s: closed by the server with %r instead of a pong"
                                     % (self.path, self.close_frame))
            raise AssertionError("%s: expected a pong, got opcode %d %r" % (self.path, op,
                                                                           data[:100]))

    def read_until_close(self, timeout=10.0):
        """Reads every message until the server's close frame. Returns
        (messages, (code, reason)). AssertionError on EOF without a close or
        on a timeout, naming how many messages came first."""
        import peers
        try:
            msgs, close = peers.read_messages(self.ws, timeout=timeout)
        except socket.timeout as e:
            raise AssertionError("%s: no close frame within %ss (%d messages read)"
                                 % (self.path, timeout, len(getattr(e, "messages", []))))
        except (EOFError, ConnectionError) as e:
            raise AssertionError("%s: the connection ended without a close frame after %d "
                                 "messages (%r)" % (self.path, len(getattr(e, "messages", [])),
                                                    e))
        self.close_frame = close
        return msgs, close

    def close(self, code=1000, timeout=5.0):
        """A clean close: sends a close frame, reads until the server's close
        frame, then closes the socket. Returns the server's (code, reason)."""
        try:
            self.ws.send(harness.OP_CLOSE, harness.close_payload(code))
            if self.close_frame is None:
                _, self.close_frame = self.read_until_close(timeout)
            return self.close_frame
        finally:
            self.ws.close()

    def abort(self):
        """Closes the TCP connection without a close frame (a FIN)."""
        self.ws.close()

    def reset(self):
        """Closes the TCP connection with an RST."""
        import peers
        peers.reset_socket(self.ws.sock)


# ---------------------------------------------------------------------------
# test base class


class _SocketCloser:
    """Closes a WsClient's socket at Harness.close() (after the gateway stopped)."""

    def __init__(self, client):
        self.client = client

    def close(self):
        self.client.abort()


class MqttTestCase(harness.GatewayTestCase):
    """A GatewayTestCase whose tests start a mosquitto and a gateway bridged
    to it (self.mosq, self.gw, self.port, self.gw_id)."""

    def setUp(self):
        if not have_mosquitto():
            self.skipTest("mosquitto not found at %s" % MOSQUITTO_BIN)
        super().setUp()

    def start_mqtt(self, routes, limits=None, persistence=False, ready=True, broker_extra=None):
        self.mosq = Mosquitto(self.h, persistence=persistence)
        self.gw_id = unique_id("wsgate-test")
        self.port = harness.free_port()
        self.gw = self.h.start_gateway(gateway_config(self.port, self.mosq, routes, self.gw_id,
                                                      limits, broker_extra))
        if ready:
            wait_ready(self.port, 200, timeout=15.0)
            self.mosq.wait_connected(self.gw_id, 1, timeout=5.0)
        return self.gw

    def ws(self, path, **kw):
        c = WsClient(self.port, path, **kw)
        self.h.backends.append(_SocketCloser(c))
        return c

    def subscriber(self, filters, **kw):
        return Subscriber(self.h, self.mosq.port, filters, **kw)

    def publisher(self, **kw):
        return Publisher(self.h, self.mosq.port, **kw)

    def metrics(self):
        return metrics(self.port)

    def metric(self, name, **labels):
        return harness.metric(metrics(self.port), name, **labels)

    def wait_gw_subscribed(self, flt, count=1, timeout=10.0):
        """Waits until the gateway has SUBSCRIBEd `flt` (count times) and got its SUBACK."""
        return self.mosq.wait_filter("SUBSCRIBE", self.gw_id, flt, count, timeout)

    def assert_error(self, msg, code, request=None, what=""):
        """msg is {"error": {"code": code, "message": "...", "request": request}}
        (no "request" when request is None)."""
        self.assertIsInstance(msg, dict, what)
        self.assertEqual(list(msg.keys()), ["error"], "%s: expected an error, got %r" % (what, msg))
        err = msg["error"]
        self.assertEqual(err.get("code"), code, "%s: %r" % (what, msg))
        self.assertIsInstance(err.get("message"), str, "%s: %r" % (what, msg))
        self.assertTrue(err.get("message"), "%s: empty message in %r" % (what, msg))
        if request is None:
            self.assertNotIn("request", err, "%s: a request without id: %r" % (what, msg))
        else:
            self.assertIn("request", err, "%s: %r" % (what, msg))
            self.assertEqual(err["request"], request, "%s: %r" % (what, msg))
            self.assertEqual(type(err["request"]), type(request), "%s: %r" % (what, msg))


# ---------------------------------------------------------------------------
# bulk publishing from another process (so the test's own reading threads
# never wait for the GIL while thousands of messages go out)

_FILL = bytes(range(256)) * 64


def bulk_payload(i, size):
    """Message i of a bulk run: its 6-digit number, a 0xff (so it is not
    UTF-8: a binary frame), then filler that depends on i."""
    off = i & 0xff
    return b"%06d" % i + b"\xff" + _FILL[off:off + size - 7]


def _bulk_publish_main(port, topic, start, n, size, qos, client_id, rate):
    pub = Publisher(None, port, client_id=client_id)
    t0 = time.monotonic()
    for i in range(start, start + n):
        if rate:
            left = t0 + (i - start) / rate - time.monotonic()
            if left > 0:
                time.sleep(left)
        pub.publish(topic, bulk_payload(i, size), qos=qos, wait=(i % 100 == 99) or
                    i == start + n - 1, timeout=30)
    print("published %d x %d bytes in %.2f s" % (n, size, time.monotonic() - t0), flush=True)
    pub.close()


class BulkPublisher:
    """Publishes messages start..start+n-1 (bulk_payload) from a child
    process, at most `rate` a second (None: as fast as the broker takes
    them); wait() returns once the broker has them all."""

    def __init__(self, h, port, topic, start, n, size, qos=1, rate=None):
        import sys
        code = ("import sys; sys.path.insert(0, %r); import mqtt_peers; "
                "mqtt_peers._bulk_publish_main(%d, %r, %d, %d, %d, %d, %r, %r)"
                % (harness.HERE, port, topic, start, n, size, qos, unique_id("test-bulk"),
                   rate))
        self.proc = harness.popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.output = None

    def wait(self, timeout=60):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            harness.stop_process(self.proc)
            raise AssertionError("the bulk publisher did not finish within %ss" % timeout)
        harness._live_procs.discard(self.proc)
        self.output = out.decode(errors="replace")
        print(self.output.strip(), flush=True)
        if self.proc.returncode != 0:
            raise AssertionError("the bulk publisher failed (%s):\n%s" % (self.proc.returncode,
                                                                          self.output))

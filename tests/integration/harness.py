"""harness.py - shared helpers for wsgate's integration tests.

Starts the real wsgate binary and its peers (wsgate-echo, small Python TCP
backends in threads) on free 127.0.0.1 ports, talks to it over HTTP, raw
WebSocket frames and the `websockets` client, and always stops what it
started (SIGTERM, then SIGKILL after 5 s), even when a test fails. Not a test
itself: the test_*.py files import it.

Environment (set by ctest): WSGATE_BIN, WSGATE_ECHO_BIN, WSGATE_SOURCE_DIR.
Run by hand with /usr/bin/python3 (Debian's, which has python3-websockets).
"""

import asyncio
import atexit
import base64
import ctypes
import hashlib
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import websockets
import websockets.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("WSGATE_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
WSGATE_BIN = os.environ.get("WSGATE_BIN", os.path.join(SOURCE_DIR, "build", "wsgate"))
ECHO_BIN = os.environ.get("WSGATE_ECHO_BIN", os.path.join(SOURCE_DIR, "build", "wsgate-echo"))
# Leaks of Paho's own that the gateway cannot avoid (see the file).
LSAN_SUPPRESSIONS = os.path.join(SOURCE_DIR, "tests", "lsan.supp")

HOST = "127.0.0.1"
STOP_GRACE_S = 5.0
READY_TIMEOUT_S = 10.0

# ---------------------------------------------------------------------------
# processes

_live_procs = set()  # every Popen not yet reaped: the atexit safety net kills them

_libc = None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    pass


def _die_with_parent():
    # Runs in the child between fork and exec: if this test runner dies (ctest
    # timeout, Ctrl-C), the kernel kills the child too.
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_process(proc, grace=STOP_GRACE_S):
    """SIGTERM, wait up to `grace` s, then SIGKILL. Returns the exit status
    (negative: killed by that signal) and whether SIGKILL was needed."""
    killed = False
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            killed = True
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    _live_procs.discard(proc)
    return proc.returncode, killed


@atexit.register
def _kill_leftovers():
    for proc in list(_live_procs):
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        _live_procs.discard(proc)


def popen(args, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen(args, preexec_fn=_die_with_parent, **kw)
    _live_procs.add(proc)
    return proc


def run_cli(args, env=None, cwd=None, timeout=10):
    """Runs wsgate to completion (for --version, --check ...); returns
    CompletedProcess with text stdout/stderr."""
    full_env = dict(os.environ)
    full_env.pop("WSGATE_CONFIG", None)
    if env:
        full_env.update(env)
    proc = popen([WSGATE_BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 env=full_env, cwd=cwd, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        out, err = proc.communicate()
        raise AssertionError("wsgate %s did not exit within %ss\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(args), timeout, out, err))
    _live_procs.discard(proc)
    return subprocess.CompletedProcess([WSGATE_BIN] + list(args), proc.returncode, out, err)


# ---------------------------------------------------------------------------
# ports


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1, for a server a test
    starts next. Taken below the kernel's ephemeral range: a port the kernel
    handed out (bind to 0) is also what it gives the next outgoing
    connection of any process, so tests running side by side took such a
    port between the pick and the server's bind ("Address already in use")."""
    low = min(_ephemeral_low(), 61000)
    for _ in range(200):
        port = random.randrange(10000, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def refused_port():
    """A port nobody listens on: connecting to it is refused."""
    return free_port()


# ---------------------------------------------------------------------------
# HTTP


class HttpResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (lower-case name, value)
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "HttpResponse(%d, %r, %r)" % (self.status, self.headers, self.body[:300])


def http_get(port, path, timeout=5.0, headers=None):
    """GET `path` as written (no normalisation of '..')."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        return HttpResponse(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], body)
    finally:
        conn.close()


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text):
    """{(metric name, frozenset of (label, value)): float} from Prometheus text.
    Raises ValueError on a line that is not valid exposition format."""
    samples = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError("not a Prometheus sample line: %r" % line)
        name, labels_text, value = m.groups()
        labels = []
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = _LABEL_RE.match(labels_text, pos)
                if not lm or lm.end() == pos:
                    raise ValueError("bad labels in line: %r" % line)
                labels.append((lm.group(1), lm.group(2)))
                pos = lm.end()
        samples[(name, frozenset(labels))] = float(value)
    return samples


def metric(samples, name, **labels):
    """The value of one series, or None if absent."""
    return samples.get((name, frozenset(labels.items())))


# ---------------------------------------------------------------------------
# raw WebSocket (hand-written handshake and frames, to see exactly what goes
# over the wire and to send what well-behaved clients refuse to send)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class RawResponse(HttpResponse):
    def __init__(self, status_line, status, headers, body, sock, rest):
        super().__init__(status, headers, body)
        self.status_line = status_line
        self.sock = sock  # open socket (after a 101) or None
        self.rest = rest  # bytes already read past the headers (after a 101)

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]


def _recv_until(sock, marker, limit=65536):
    buf = b""
    while marker not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            break
    return buf


def raw_upgrade(port, path, protocols=None, origin=None, extra_headers=None, timeout=5.0):
    """Sends a WebSocket upgrade request by hand. Returns a RawResponse: for a
    101 the socket stays open in .sock; otherwise the body is read and the
    socket closed. `protocols`: the Sec-WebSocket-Protocol header value."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET %s HTTP/1.1" % path,
        "Host: %s:%d" % (HOST, port),
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: %s" % key,
        "Sec-WebSocket-Version: 13",
    ]
    if protocols is not None:
        lines.append("Sec-WebSocket-Protocol: %s" % protocols)
    if origin is not None:
        lines.append("Origin: %s" % origin)
    for k, v in (extra_headers or {}).items():
        lines.append("%s: %s" % (k, v))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        buf = _recv_until(sock, b"\r\n\r\n")
    except socket.timeout:
        sock.close()
        raise AssertionError("no HTTP response to the upgrade of %s within %ss" % (path, timeout))
    if b"\r\n\r\n" not in buf:
        sock.close()
        raise AssertionError("incomplete HTTP response to the upgrade of %s: %r" % (path, buf))
    head, rest = buf.split(b"\r\n\r\n", 1)
    head_lines = head.decode("latin-1").split("\r\n")
    status_line = head_lines[0]
    parts = status_line.split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        sock.close()
        raise AssertionError("bad status line %r" % status_line)
    headers = []
    for hl in head_lines[1:]:
        if ":" in hl:
            k, v = hl.split(":", 1)
            headers.append((k.strip().lower(), v.strip()))
    resp = RawResponse(status_line, status, headers, b"", None, b"")
    if status == 101:
        expect = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        got = resp.header("sec-websocket-accept")
        if got != expect:
            sock.close()
            raise AssertionError("bad Sec-WebSocket-Accept %r (expected %r)" % (got, expect))
        resp.sock = sock
        resp.rest = rest
        return resp
    body = rest
    clen = resp.header("content-length")
    try:
        if clen is not None:
            n = int(clen)
            while len(body) < n:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                body += chunk
        else:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                body += chunk
    except socket.timeout:
        pass
    sock.close()
    resp.body = body
    return resp


def mask_bytes(payload, key):
    """RFC 6455 masking, XORed as one big integer (fast enough for large
    messages in Python)."""
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def reload_and_wait(gw, count, timeout=10.0):
    """SIGHUP, then wait until the log shows `count` reload outcomes."""
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = gw.log()
        if log.count("config reloaded") + log.count("config reload failed") >= count:
            return log
        time.sleep(0.05)
    raise AssertionError("no reload outcome in the log:\n" + gw.log())


def take_frame(buf):
    """The first complete (unmasked, server-sent) frame at the front of `buf`,
    a bytearray, consumed: (fin, opcode, payload); None until it is whole."""
    if len(buf) < 2:
        return None
    n = buf[1] & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < pos + n:
        return None
    fin, op = bool(buf[0] & 0x80), buf[0] & 0x0F
    payload = bytes(buf[pos:pos + n])
    del buf[:pos + n]
    return fin, op, payload


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    """One frame; `rsv` sets the reserved bits (1-7), `mask=False` sends it
    unmasked (both only to test the server's refusals)."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class RawWebSocket:
    """A minimal client over a socket that a 101 left open."""

    def __init__(self, resp):
        self.sock = resp.sock
        self.buf = bytearray(resp.rest)

    def send(self, opcode, payload, fin=True):
        self.sock.sendall(encode_frame(opcode, payload, fin=fin))

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out waiting for a frame")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed with %d bytes of a frame" % len(self.buf))
            self.buf += chunk

    def recv_frame(self, timeout=5.0):
        """(fin, opcode, payload) of the next frame from the server."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise AssertionError("the server sent a masked frame")
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        self._need(pos + n, deadline)
        payload = bytes(self.buf[pos:pos + n])
        del self.buf[:pos + n]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_close(self, timeout=5.0):
        """Reads frames until a close frame; returns (code, reason bytes),
        code None for an empty close. Answers pings. Raises EOFError if the
        connection ends without a close frame."""
        deadline = time.monotonic() + timeout
        while True:
            fin, op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == OP_CLOSE:
                if len(payload) >= 2:
                    return struct.unpack("!H", payload[:2])[0], payload[2:]
                return None, b""
            if op == OP_PING:
                self.send(OP_PONG, payload)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# Python TCP backends (threads)


class _BackendBase:
    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self._stop = threading.Event()
        self._threads = []
        self._socks = []
        self._lock = threading.Lock()
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._socks.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        raise NotImplementedError

    def close(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self._lock:
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
        for t in self._threads:
            t.join(timeout=2)


class RecordedConnection:
    def __init__(self):
        self.data = bytearray()
        self.eof = threading.Event()  # set when the gateway closed (or reset) its end
        self.eof_time = None
        self.error = None


class RecordingBackend(_BackendBase):
    """Accepts connections and records every byte received until EOF."""

    def __init__(self):
        self.connections = []
        self.new_connection = threading.Condition()
        super().__init__()

    def _serve(self, conn):
        rec = RecordedConnection()
        with self.new_connection:
            self.connections.append(rec)
            self.new_connection.notify_all()
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                rec.data += chunk
        except OSError as e:
            rec.error = e
        rec.eof_time = time.monotonic()
        rec.eof.set()

    def wait_connection(self, index=0, timeout=5.0):
        with self.new_connection:
            ok = self.new_connection.wait_for(lambda: len(self.connections) > index, timeout)
        if not ok:
            raise AssertionError("the backend got no connection #%d within %ss" % (index, timeout))
        return self.connections[index]


class SendThenCloseBackend(_BackendBase):
    """Sends `data` to each connection, then closes it."""

    def __init__(self, data):
        self.data = data
        self.accepted = 0
        super().__init__()

    def _serve(self, conn):
        self.accepted += 1
        try:
            conn.sendall(self.data)
            conn.shutdown(socket.SHUT_WR)
            # Wait briefly for the gateway to close its end, so that nothing
            # unread turns our close into a reset.
            conn.settimeout(2.0)
            while conn.recv(65536):
                pass
        except OSError:
            pass
        conn.close()


# ---------------------------------------------------------------------------
# the gateway and the echo server


class Process:
    def __init__(self, name, proc, log_path, out_path):
        self.name = name
        self.proc = proc
        self.log_path = log_path  # stderr
        self.out_path = out_path  # stdout (None if piped)
        self.returncode = None
        self.killed = False

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def stop(self):
        if self.returncode is None:
            self.returncode, self.killed = stop_process(self.proc)
        return self.returncode


class Gateway(Process):
    def __init__(self, proc, log_path, out_path, ports, config_path):
        super().__init__("wsgate", proc, log_path, out_path)
        self.ports = ports
        self.port = ports[0] if ports else None
        self.config_path = config_path

    def url(self, path, port=None):
        return "ws://%s:%d%s" % (HOST, port or self.port, path)


class Harness:
    """Owns a temp dir and everything started in one scope (a test or a
    class); close() stops it all and keeps the logs for the failure report."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="wsgate-it-")
        self.processes = []
        self.backends = []
        self.saved_logs = []  # (name, text) kept after close()
        self.closed = False

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write_file(self, rel, content):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(p, mode) as f:
            f.write(content)
        return p

    def write_config(self, config, name="wsgate.json"):
        """`config`: a dict (dumped as JSON) or a string written as is."""
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        return self.write_file(name, text)

    def start_gateway(self, config=None, config_path=None, args=None, wait=True, env=None,
                      ports=None):
        """Starts `wsgate -c FILE --log-level debug` and waits until /healthz
        answers 200 on its first listener. `config` a dict or None (then
        config_path or no -c at all); `ports` overrides the ports to wait on."""
        if config is not None:
            config_path = self.write_config(config, "wsgate-%d.json" % len(self.processes))
        if ports is None:
            ports = []
            if isinstance(config, dict):
                ports = [l["port"] for l in config.get("listen", []) if "port" in l]
        n = len(self.processes)
        log_path = self.path("wsgate-%d.stderr" % n)
        out_path = self.path("wsgate-%d.stdout" % n)
        argv = [WSGATE_BIN]
        if config_path:
            argv += ["-c", config_path]
        argv += ["--log-level", "debug"] + list(args or [])
        full_env = dict(os.environ)
        full_env.pop("WSGATE_CONFIG", None)
        full_env.setdefault("LSAN_OPTIONS", "suppressions=%s:print_suppressions=0"
                            % LSAN_SUPPRESSIONS)
        full_env.update(env or {})
        with open(log_path, "wb") as errf, open(out_path, "wb") as outf:
            proc = popen(argv, stdout=outf, stderr=errf, env=full_env, cwd=self.tmp)
        gw = Gateway(proc, log_path, out_path, ports, config_path)
        self.processes.append(gw)
        if wait and ports:
            wait_healthy(gw, ports[0])
        return gw

    def start_echo(self):
        """Starts wsgate-echo on an ephemeral port; returns (Process, port)."""
        n = len(self.processes)
        log_path = self.path("echo-%d.stderr" % n)
        with open(log_path, "wb") as errf:
            proc = popen([ECHO_BIN, "--host", HOST, "--port", "0"], stdout=subprocess.PIPE,
                         stderr=errf)
        p = Process("wsgate-echo", proc, log_path, None)
        self.processes.append(p)
        deadline = time.monotonic() + 5.0
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            r, _, _ = select.select([proc.stdout], [], [], max(0, left))
            if not r:
                raise AssertionError("wsgate-echo printed no 'listening on' line within 5 s")
            b = os.read(proc.stdout.fileno(), 1)
            if not b:
                raise AssertionError("wsgate-echo exited before listening: %s" % p.log())
            line += b
        m = re.match(r"^listening on (.+):(\d+)\n$", line.decode())
        if not m:
            raise AssertionError("unexpected first line from wsgate-echo: %r" % line)
        return p, int(m.group(2))

    def recording_backend(self):
        b = RecordingBackend()
        self.backends.append(b)
        return b

    def send_then_close_backend(self, data):
        b = SendThenCloseBackend(data)
        self.backends.append(b)
        return b

    def close(self):
        if self.closed:
            return
        self.closed = True
        problems = []
        for p in reversed(self.processes):
            already_exited = p.returncode is not None or p.proc.poll() is not None
            rc = p.stop()
            if p.proc.stdout is not None:
                p.proc.stdout.close()
            text = p.log()
            self.saved_logs.append((p.name, text))
            if isinstance(p, Gateway):
                problems += gateway_exit_problems(p, rc, text, already_exited)
        for b in self.backends:
            b.close()
        if problems:
            raise AssertionError("; ".join(problems))
        shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self):
        if self.closed:
            return self.saved_logs
        return [(p.name, p.log()) for p in self.processes]


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def gateway_exit_problems(gw, rc, stderr_text, already_exited):
    """Every gateway a test started must stop cleanly on SIGTERM: exit 0
    within the grace period, and (in the sanitizer build) with no ASan,
    LeakSanitizer or UBSan report. A test that expects another ending stops
    the process itself and sets gw.expected_exit."""
    problems = []
    expected = getattr(gw, "expected_exit", 0)
    if gw.killed:
        problems.append("wsgate ignored SIGTERM for %ss and was killed" % STOP_GRACE_S)
    elif expected is not None and rc != expected:
        how = "had exited" if already_exited else "exited after SIGTERM"
        problems.append("wsgate %s with status %s (expected %s)" % (how, rc, expected))
    for mark in SANITIZER_MARKS:
        if mark in stderr_text:
            problems.append("wsgate stderr holds a sanitizer report (%r)" % mark)
            break
    return problems


def wait_healthy(gw, port, timeout=READY_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if gw.proc.poll() is not None:
            raise AssertionError("wsgate exited with status %s before serving /healthz; stderr:\n%s"
                                 % (gw.proc.returncode, gw.log()))
        try:
            r = http_get(port, "/healthz", timeout=1.0)
            if r.status == 200:
                return
            last = "status %d" % r.status
        except (OSError, http.client.HTTPException) as e:
            last = repr(e)
        time.sleep(0.05)
    raise AssertionError("wsgate did not answer 200 on /healthz (port %d) within %ss (last: %s)"
                         % (port, timeout, last))


# ---------------------------------------------------------------------------
# test base class


class GatewayTestCase(unittest.TestCase):
    """Gives each test `self.h` and each class `cls.ch` (Harness objects);
    prints the processes' stderr when a test fails or errors."""

    @classmethod
    def setUpClass(cls):
        cls.ch = Harness()
        cls.addClassCleanup(cls.ch.close)

    def setUp(self):
        self.h = Harness()
        self.addCleanup(self.h.close)

    def run(self, result=None):
        before = None
        if result is not None:
            before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > (before or 0):
            logs = list(getattr(self, "h", None).logs() if getattr(self, "h", None) else [])
            ch = getattr(type(self), "ch", None)
            if ch is not None:
                logs += ch.logs()
            sys.stderr.write("\n==== logs for failed %s ====\n" % self.id())
            for name, text in logs:
                tail = text[-20000:]
                sys.stderr.write("---- %s stderr (%d bytes%s) ----\n%s\n"
                                 % (name, len(text), ", last 20000" if len(text) > 20000 else "",
                                    tail))
            sys.stderr.flush()
        return out

    # -- helpers used by several test files --

    def assert_same_bytes(self, expected, got, what="stream"):
        if expected == got:
            return
        n = min(len(expected), len(got))
        first = next((i for i in range(n) if expected[i] != got[i]), n)
        self.fail("%s differs: sent %d bytes, received %d; first difference at offset %d "
                  "(sent %r, received %r)" % (what, len(expected), len(got), first,
                                               bytes(expected[first:first + 16]),
                                               bytes(got[first:first + 16])))

    def listen(self, *ports):
        return [{"host": HOST, "port": p} for p in ports]


def run_async(coro, timeout=60.0):
    """Runs a coroutine with an overall time limit."""
    async def guarded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(guarded())


def close_info(exc):
    """(code, reason) of the close frame the server sent, from a websockets
    ConnectionClosed; (1006, '') if none was received."""
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is None:
        return 1006, ""
    return rcvd.code, rcvd.reason


async def recv_until_closed(ws, timeout=10.0):
    """Collects messages until the server closes. Returns (messages, code, reason)."""
    msgs = []
    try:
        while True:
            msgs.append(await asyncio.wait_for(ws.recv(), timeout))
    except websockets.exceptions.ConnectionClosed as e:
        code, reason = close_info(e)
        return msgs, code, reason


def make_rng(name):
    """A seeded RNG; the seed is printed so a failure can be replayed with
    WSGATE_TEST_SEED=<seed>."""
    seed = int(os.environ.get("WSGATE_TEST_SEED", "0")) or random.SystemRandom().randrange(1, 2**32)
    print("%s: random seed %d (replay with WSGATE_TEST_SEED=%d)" % (name, seed, seed), flush=True)
    return random.Random(seed), seed


def main():
    if not os.path.exists(WSGATE_BIN):
        print("wsgate binary not found at %s (set WSGATE_BIN)" % WSGATE_BIN, file=sys.stderr)
    unittest.main(verbosity=2)

"""peers.py - misbehaving and measuring peers for wsgate's integration tests.

harness.py has the well-behaved peers (wsgate-echo, a recording backend, a
send-then-close backend). This module adds the ones the framing, failover,
backpressure and close-order tests need: backends that follow a script
(send, pause, half-close, reset), flood a deterministic pattern, read slowly,
never read at all, or greet each connection with a banner; a blackhole
connect target; deterministic byte patterns with an in-order checker; RSS
readers for /proc/PID/status; a raw-frame message reader that reassembles
fragments; and a /metrics reader. Every server binds 127.0.0.1 and is
closed by Harness.close() once added to `harness.backends` (the `add_*`
helpers below do that). Not a test itself.
"""

import hashlib
import socket
import struct
import threading
import time
import unittest

import harness
from harness import HOST, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT

# ---------------------------------------------------------------------------
# deterministic byte patterns


class Pattern:
    """A deterministic endless byte stream: a seeded random block of `period`
    bytes, repeated. The period is odd so that a dropped or repeated chunk of
    any power-of-two size shifts the stream and shows as a mismatch."""

    def __init__(self, seed=1, period=1_000_003):
        import random
        self.period = period
        block = random.Random(seed).randbytes(period)
        self._twice = memoryview(block + block)

    def chunk(self, offset, n):
        """The n bytes at stream offset `offset` (n <= period), no copy."""
        if n > self.period:
            raise ValueError("chunk larger than the pattern period")
        start = offset % self.period
        return self._twice[start:start + n]

    def bytes(self, offset, n):
        out = bytearray()
        while n > 0:
            k = min(n, self.period)
            out += self.chunk(offset, k)
            offset += k
            n -= k
        return bytes(out)


class PatternChecker:
    """Checks that received bytes continue a Pattern in order. Keeps the
    offset of the first mismatch (None while all is well) and a sha256."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.count = 0
        self.first_bad = None
        self.sha = hashlib.sha256()

    def feed(self, data):
        mv = memoryview(data)
        self.sha.update(mv)
        if self.first_bad is None:
            pos = 0
            while pos < len(mv):
                k = min(len(mv) - pos, self.pattern.period)
                want = self.pattern.chunk(self.count + pos, k)
                got = mv[pos:pos + k]
                if got != want:
                    i = next(j for j in range(k) if got[j] != want[j])
                    self.first_bad = self.count + pos + i
                    break
                pos += k
        self.count += len(mv)

    def describe(self):
        if self.first_bad is None:
            return "%d bytes in pattern order" % self.count
        return ("%d bytes received; the first byte out of pattern order is at offset %d"
                % (self.count, self.first_bad))


# ---------------------------------------------------------------------------
# TCP servers


class Server:
    """Accepts on 127.0.0.1 (an ephemeral port, or `port` if given), or on
    the unix socket `unix_path`, and runs serve(conn, index) in a thread per
    connection. close() stops accepting, shuts every connection down and
    joins the threads."""

    def __init__(self, port=0, backlog=64, unix_path=None):
        if unix_path:
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(unix_path)
        else:
            self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind((HOST, port))
        self.lsock.listen(backlog)
        self.lsock.settimeout(0.05)
        self.port = None if unix_path else self.lsock.getsockname()[1]
        self.unix_path = unix_path
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.conns = []  # accepted sockets, in order
        self.accept_times = []
        self.errors = []  # exceptions raised by serve() other than socket errors
        self._threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    @property
    def accepted(self):
        with self.lock:
            return len(self.conns)

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self.cond:
                index = len(self.conns)
                self.prepare(index)
                self.conns.append(conn)
                self.accept_times.append(time.monotonic())
                self.cond.notify_all()
            t = threading.Thread(target=self._run, args=(conn, index), daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, conn, index):
        try:
            self.serve(conn, index)
        except OSError:
            pass
        except Exception as e:  # a bug in the peer: keep it for the test to see
            self.errors.append(e)

    def prepare(self, index):
        """Sets up per-connection state before wait_accepted() can see the
        connection (called with the lock held)."""

    def serve(self, conn, index):
        raise NotImplementedError

    def wait_accepted(self, n=1, timeout=5.0):
        """Waits until at least n connections were accepted; returns the count."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.conns) >= n, timeout)
            return len(self.conns)

    def close(self):
        self.stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for s in conns:
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


def reset_socket(sock):
    """Closes `sock` with an RST instead of a FIN (SO_LINGER on, 0 s). The
    socket must not be in use by another thread (closing the fd would not
    wake it, and the socket would live on until its call returned)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Flooder:
    """Writes `data` to `sock` over and over from a thread until stop(),
    never blocking for long (select + non-blocking sends, so a partly sent
    copy is finished, never cut). .sent counts the bytes written."""

    def __init__(self, sock, data):
        self.sock = sock
        self.data = memoryview(data)
        self.sent = 0
        self.error = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        import select
        self.sock.setblocking(False)
        off = 0
        try:
            while not self._stop.is_set():
                _, w, _ = select.select([], [self.sock], [], 0.05)
                if not w:
                    continue
                try:
                    n = self.sock.send(self.data[off:])
                except BlockingIOError:
                    continue
                self.sent += n
                off = (off + n) % len(self.data)
        except OSError as e:
            self.error = e

    def stop(self):
        self._stop.set()
        self._t.join(timeout=5)


class Received:
    """What one backend connection received from the gateway."""

    def __init__(self):
        self.data = bytearray()
        self.eof = threading.Event()  # EOF or error seen
        self.eof_time = None
        self.error = None  # the OSError if the gateway reset the connection
        self.lock = threading.Lock()

    def record_until_eof(self, conn, bufsize=65536):
        try:
            while True:
                chunk = conn.recv(bufsize)
                if not chunk:
                    break
                with self.lock:
                    self.data += chunk
        except OSError as e:
            self.error = e
        self.eof_time = time.monotonic()
        self.eof.set()

    def snapshot(self):
        with self.lock:
            return bytes(self.data)


class ScriptBackend(Server):
    """Runs a script on each connection, then records what the gateway sends
    until EOF. `script`: a list of steps, or a function index -> steps:
      ("send", bytes)   sendall
      ("sleep", s)      pause
      ("dribble", bytes, s)  send one byte at a time, pausing s between
      ("fin",)          shutdown(SHUT_WR): the gateway sees EOF; keep reading
      ("rst",)          close with an RST (SO_LINGER 0); nothing more
    After the script the connection is read (and recorded) until EOF, then
    closed. received[i] is the Received of connection i."""

    def __init__(self, script, **kw):
        self.script = script
        self.received = []
        super().__init__(**kw)

    def prepare(self, index):
        self.received.append(Received())

    def serve(self, conn, index):
        rec = self.received[index]
        steps = self.script(index) if callable(self.script) else self.script
        try:
            for step in steps:
                op = step[0]
                if op == "send":
                    conn.sendall(step[1])
                elif op == "sleep":
                    if self.stopping.wait(step[1]):
                        return
                elif op == "dribble":
                    for i in range(len(step[1])):
                        conn.sendall(step[1][i:i + 1])
                        if self.stopping.wait(step[2]):
                            return
                elif op == "fin":
                    conn.shutdown(socket.SHUT_WR)
                elif op == "rst":
                    reset_socket(conn)
                    rec.eof.set()
                    return
                else:
                    raise ValueError("unknown script step %r" % (step,))
        except OSError as e:
            rec.error = e
            rec.eof.set()
            return
        rec.record_until_eof(conn)
        try:
            conn.close()
        except OSError:
            pass

    def wait_received(self, index=0, timeout=5.0):
        if self.wait_accepted(index + 1, timeout) <= index:
            raise AssertionError("the backend got no connection #%d within %ss" % (index, timeout))
        return self.received[index]


class BannerEchoBackend(Server):
    """Greets each connection with `banner` (to tell backends apart), then
    echoes everything back until EOF."""

    def __init__(self, banner=b"", **kw):
        self.banner = banner
        super().__init__(**kw)

    def serve(self, conn, index):
        if self.banner:
            conn.sendall(self.banner)
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            conn.sendall(chunk)
        conn.close()


class FloodBackend(Server):
    """Writes a Pattern to each connection as fast as the socket takes it:
    `total` bytes then a FIN (total None: until the connection breaks).
    sent[i] counts the bytes connection i has written so far."""

    def __init__(self, pattern, total=None, chunk=256 * 1024, **kw):
        self.pattern = pattern
        self.total = total
        self.chunk_size = min(chunk, pattern.period)
        self.sent = []
        self.done = []  # Event per connection: all sent (or broken)
        super().__init__(**kw)

    def prepare(self, index):
        self.sent.append(0)
        self.done.append(threading.Event())

    def serve(self, conn, index):
        try:
            off = 0
            while (self.total is None or off < self.total) and not self.stopping.is_set():
                n = self.chunk_size if self.total is None else min(self.chunk_size,
                                                                   self.total - off)
                conn.sendall(self.pattern.chunk(off, n))
                off += n
                self.sent[index] = off
            if self.total is not None:
                conn.shutdown(socket.SHUT_WR)
                # Wait for the gateway's close, so our close cannot turn into an RST.
                conn.settimeout(10.0)
                while conn.recv(65536):
                    pass
        finally:
            self.done[index].set()
            conn.close()


class SlowReaderBackend(Server):
    """Reads each connection slowly and checks it against a Pattern.
    `schedule(received_so_far) -> (recv size, pause s after it)`; an initial
    pause `start_pause` s before the first read. checkers[i] and eof[i] per
    connection."""

    def __init__(self, pattern, schedule, start_pause=0.0, **kw):
        self.pattern = pattern
        self.schedule = schedule
        self.start_pause = start_pause
        self.checkers = []
        self.eofs = []
        self.errors_seen = []
        super().__init__(**kw)

    def prepare(self, index):
        self.checkers.append(PatternChecker(self.pattern))
        self.eofs.append(threading.Event())
        self.errors_seen.append(None)

    def serve(self, conn, index):
        checker, eof = self.checkers[index], self.eofs[index]
        if self.stopping.wait(self.start_pause):
            return
        try:
            while True:
                size, pause = self.schedule(checker.count)
                chunk = conn.recv(size)
                if not chunk:
                    break
                checker.feed(chunk)
                if pause and self.stopping.wait(pause):
                    return
        except OSError as e:
            self.errors_seen[index] = e
        eof.set()
        conn.close()


class StallBackend(Server):
    """Accepts and then neither reads nor writes. A test may later drain a
    connection with drain_until_eof() to see what arrived and whether the
    gateway closed it."""

    def __init__(self, recv_buffer=None, **kw):
        self.recv_buffer = recv_buffer
        super().__init__(**kw)
        if recv_buffer:
            # Inherited by accepted sockets: keeps the kernel from absorbing much.
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)

    def serve(self, conn, index):
        self.stopping.wait()

    def conn(self, index=0, timeout=5.0):
        if self.wait_accepted(index + 1, timeout) <= index:
            raise AssertionError("the backend got no connection #%d within %ss" % (index, timeout))
        with self.lock:
            return self.conns[index]

    def drain_until_eof(self, index=0, timeout=2.0):
        """Reads connection `index` until EOF. Returns (data, how) with how
        "eof", "reset" or "timeout"."""
        sock = self.conn(index)
        data = bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return bytes(data), "timeout"
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    return bytes(data), "eof"
                data += chunk
        except socket.timeout:
            return bytes(data), "timeout"
        except OSError:
            return bytes(data), "reset"


class Blackhole:
    """A 127.0.0.1 port where a TCP connect never completes: a listen(0)
    socket whose accept queue is filled and never accepted, so the kernel
    drops further SYNs (net.ipv4.tcp_abort_on_overflow = 0). Raises
    unittest.SkipTest if this kernel answers anyway."""

    def __init__(self, fillers=4):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.fillers = []
        for _ in range(fillers):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((HOST, self.port))
            self.fillers.append(s)
        time.sleep(0.05)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect((HOST, self.port))
        except socket.timeout:
            pass  # a blackhole, as wanted
        except OSError as e:
            self.close()
            raise unittest.SkipTest("cannot build a blackhole connect target here: %r" % e)
        else:
            self.close()
            raise unittest.SkipTest("cannot build a blackhole connect target here: the "
                                    "kernel completed a connect to a full listen queue")
        finally:
            probe.close()

    def close(self):
        for s in self.fillers:
            try:
                s.close()
            except OSError:
                pass
        try:
            self.lsock.close()
        except OSError:
            pass


def add(h, peer):
    """Registers a peer with a Harness so that h.close() closes it."""
    h.backends.append(peer)
    return peer


# ---------------------------------------------------------------------------
# process memory


def proc_status_kb(pid, key):
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM ...) as an int, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0). Returns success."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


_asan_cache = {}


def binary_has_asan(path=None):
    path = path or harness.WSGATE_BIN
    if path not in _asan_cache:
        with open(path, "rb") as f:
            _asan_cache[path] = b"__asan_init" in f.read()
    return _asan_cache[path]


class PeakRss:
    """Samples VmRSS of a process in a thread (VmHWM is read too at the end);
    .peak_kb is the highest of both."""

    def __init__(self, pid, interval=0.01):
        self.pid = pid
        self.interval = interval
        self.peak_kb = proc_status_kb(pid, "VmRSS") or 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop.wait(self.interval):
            v = proc_status_kb(self.pid, "VmRSS")
            if v is not None and v > self.peak_kb:
                self.peak_kb = v

    def stop(self):
        self._stop.set()
        self._t.join(timeout=2)
        hwm = proc_status_kb(self.pid, "VmHWM")
        if hwm is not None and hwm > self.peak_kb:
            self.peak_kb = hwm
        return self.peak_kb


# ---------------------------------------------------------------------------
# raw WebSocket messages


def read_messages(ws, until=None, timeout=5.0):
    """Reads frames from a harness.RawWebSocket, reassembling fragmented
    messages, until a close frame or until until(messages) is true. Answers
    pings. Returns (messages, close) where messages is a list of
    (opcode, payload) and close is (code, reason bytes) or None. Raises
    socket.timeout / EOFError like RawWebSocket.recv_frame, with the
    messages read so far in the exception's .messages."""
    msgs = []
    cur_op, cur = None, bytearray()
    deadline = time.monotonic() + timeout
    while True:
        if until is not None and until(msgs):
            return msgs, None
        try:
            fin, op, payload = ws.recv_frame(max(0.01, deadline - time.monotonic()))
        except (OSError, EOFError) as e:
            e.messages = msgs  # what came before, for the failure report
            raise
        if op == OP_CLOSE:
            if len(payload) >= 2:
                return msgs, (struct.unpack("!H", payload[:2])[0], payload[2:])
            return msgs, (None, b"")
        if op == OP_PING:
            ws.send(OP_PONG, payload)
            continue
        if op == OP_PONG:
            continue
        if op in (OP_TEXT, OP_BINARY):
            if cur_op is not None:
                raise AssertionError("a new data frame began inside a fragmented message")
            cur_op, cur = op, bytearray(payload)
        elif op == OP_CONT:
            if cur_op is None:
                raise AssertionError("a continuation frame outside a message")
            cur += payload
        else:
            raise AssertionError("unexpected opcode %#x" % op)
        if fin:
            msgs.append((cur_op, bytes(cur)))
            cur_op, cur = None, bytearray()


# ---------------------------------------------------------------------------
# metrics


def backend_errors(port, route):
    """{reason: count} of wsgate_backend_errors_total for one route (missing
    reasons count 0)."""
    r = harness.http_get(port, "/metrics")
    if r.status != 200:
        raise AssertionError("/metrics answered %d" % r.status)
    samples = harness.parse_prometheus(r.body.decode())
    out = {"connect_failed": 0, "connect_timeout": 0, "reset": 0}
    for (name, labels), value in samples.items():
        if name != "wsgate_backend_errors_total":
            continue
        d = dict(labels)
        if d.get("route") == route and "reason" in d:
            out[d["reason"]] = int(value)
    return out


def wait_until(pred, timeout, interval=0.05):
    """Polls pred() until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)

"""test_real_clients.py - clients that nobody here wrote talk through wsgate's
`tcp` routes to real servers, all started here on free 127.0.0.1 ports and
stopped by PID:

- websockify's own Python WebSocket client (Debian package `websockify`)
  with the `binary` subprotocol, to wsgate-echo and to a backend that closes;
- MQTT.js (npm `mqtt`, driven by tests/clients/mqtt_client.js) speaking MQTT
  over WebSocket (subprotocol `mqtt`) to a real mosquitto, cross-checked by a
  second MQTT.js client on mosquitto's plain TCP port;
- noVNC (npm `@novnc/novnc`) in headless Chromium (npm `playwright-core`,
  driven by tests/clients/novnc_check.js), through a `binary` route to a real
  VNC server (x11vnc on an Xvfb display), its page served by wsgate's
  `static` config. The screenshot goes to tests/artifacts/novnc.png.
- Debian's noVNC (package `novnc`), its vnc.html unmodified, against wsgate
  started the way novnc_proxy starts websockify (`wsgate --web
  /usr/share/novnc PORT localhost:VNC_PORT`), by Debian's novnc_proxy itself
  (a `websockify` on PATH that is wsgate), and with a websockify token file
  (tests/clients/novnc_page_check.js; screenshots
  tests/artifacts/novnc-websockify-*.png).

The npm packages come from tests/clients/package-lock.json
(`cd tests/clients && npm ci`, a step of .ci/run). A test is skipped only when
a tool it needs is not installed, and says which; with CI=true (set by CI,
which installs them all) a missing tool is an error instead.
"""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import unittest

import harness
from harness import HOST, GatewayTestCase, make_rng

CLIENTS_DIR = os.path.join(harness.SOURCE_DIR, "tests", "clients")
NODE_MODULES = os.path.join(CLIENTS_DIR, "node_modules")
ARTIFACTS_DIR = os.path.join(harness.SOURCE_DIR, "tests", "artifacts")
NPM_HINT = "run `(cd tests/clients && npm ci)`"

CHROMIUM = "/usr/bin/chromium"
MOSQUITTO = "/usr/sbin/mosquitto"


# ---------------------------------------------------------------------------
# prerequisites: skip (never pass) when a tool is genuinely absent


def missing(reason):
    """A prerequisite is absent: skip, except in CI (CI=true), where
    .ci/run installs everything and a skip would hide a broken install."""
    if os.environ.get("CI") == "true":
        raise AssertionError(reason + " -- CI=true, where every prerequisite must be installed")
    raise unittest.SkipTest(reason)


WHERE_FROM = {
    "node": "Node.js with its npm, preinstalled on the project's machines",
}


def require_programs(*names):
    """Skips (in CI: fails) naming the first program not installed."""
    for name in names:
        found = os.access(name, os.X_OK) if os.path.isabs(name) else shutil.which(name)
        if not found:
            missing("%s is not installed (%s)"
                    % (name, WHERE_FROM.get(name, "scripts/install-deps.sh installs it")))


def require_npm_packages(*names):
    require_programs("node")
    for name in names:
        if not os.path.isfile(os.path.join(NODE_MODULES, name, "package.json")):
            missing("npm package %s is not installed in %s: %s" % (name, NODE_MODULES, NPM_HINT))


# ---------------------------------------------------------------------------
# real servers, each a harness.Process in the harness `h`, so that h.close()
# stops it by PID (SIGTERM, then SIGKILL) whatever happens to the test


def start_process(h, name, argv, stdout_log=False, **kw):
    n = len(h.processes)
    err_path = h.path("%s-%d.stderr" % (name, n))
    out_path = h.path("%s-%d.stdout" % (name, n)) if stdout_log else None
    with open(err_path, "wb") as errf:
        if out_path:
            with open(out_path, "wb") as outf:
                proc = harness.popen(argv, stdout=outf, stderr=errf, cwd=h.tmp, **kw)
        else:
            proc = harness.popen(argv, stdout=subprocess.DEVNULL, stderr=errf, cwd=h.tmp, **kw)
    p = harness.Process(name, proc, err_path, out_path)
    h.processes.append(p)
    return p


def read_file(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def wait_port(p, port, timeout=10.0):
    """Waits until something accepts on HOST:port (and `p` still runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise AssertionError("%s exited with status %s before listening on %d:\n%s"
                                 % (p.name, p.proc.returncode, port, p.log()[-4000:]))
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("%s did not listen on %d within %ss:\n%s"
                         % (p.name, port, timeout, p.log()[-4000:]))


def start_mosquitto(h):
    """A real mosquitto on a free port, anonymous, no persistence. Returns port."""
    port = harness.free_port()
    conf = h.write_file("mosquitto-%d.conf" % port, "\n".join([
        "listener %d %s" % (port, HOST),
        "allow_anonymous true",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "",
    ]))
    p = start_process(h, "mosquitto", [MOSQUITTO, "-c", conf])
    wait_port(p, port)
    return port


def start_xvfb(h, size="320x240x24", timeout=10.0):
    """Xvfb on a display number it picks itself (-displayfd: no race with
    other X servers). -noreset: the server keeps its root window when its
    last client leaves. Returns the display name, e.g. ':3'."""
    r, w = os.pipe()
    try:
        p = start_process(h, "Xvfb", ["Xvfb", "-displayfd", str(w), "-screen", "0", size,
                                      "-nolisten", "tcp", "-noreset"], pass_fds=(w,))
    finally:
        os.close(w)
    try:
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(0.0, left))
            if not ready:
                raise AssertionError("Xvfb reported no display within %ss:\n%s"
                                     % (timeout, p.log()[-4000:]))
            chunk = os.read(r, 64)
            if not chunk:
                raise AssertionError("Xvfb exited (status %s) before reporting its display:\n%s"
                                     % (p.proc.poll(), p.log()[-4000:]))
            buf += chunk
    finally:
        os.close(r)
    return ":" + buf.decode().strip()


def start_x11vnc(h, display, timeout=15.0):
    """x11vnc serving `display` on a free 127.0.0.1 port, no password, many
    viewers. Waits for its `PORT=` line (printed once it listens)."""
    port = harness.free_port()
    p = start_process(h, "x11vnc", ["x11vnc", "-display", display, "-rfbport", str(port),
                                    "-localhost", "-noipv6", "-nopw", "-forever", "-shared",
                                    "-norc", "-nolookup"], stdout_log=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise AssertionError("x11vnc exited with status %s:\n%s"
                                 % (p.proc.returncode, p.log()[-4000:]))
        if ("PORT=%d" % port) in read_file(p.out_path):
            wait_port(p, port, timeout=max(0.5, deadline - time.monotonic()))
            return port
        time.sleep(0.05)
    raise AssertionError("x11vnc did not report PORT=%d within %ss:\n%s"
                         % (port, timeout, p.log()[-4000:]))


def xsetroot(display, colour):
    subprocess.run(["xsetroot", "-display", display, "-solid", colour], check=True,
                   timeout=10, stdin=subprocess.DEVNULL, capture_output=True)


# ---------------------------------------------------------------------------
# node client scripts: one JSON line on stdout, exit status 0 on success


def run_node(script, args, timeout, env=None):
    """Runs `node tests/clients/<script> args...` in its own process group
    with a time limit; whatever it started (Chromium) is killed with the
    group. Returns (exit status, parsed JSON line or None, stdout, stderr, s)."""
    argv = ["node", os.path.join(CLIENTS_DIR, script)] + [str(a) for a in args]
    t0 = time.monotonic()
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = harness.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=CLIENTS_DIR,
                         env=full_env, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    finally:
        # Leftovers of a run that ended (a browser child) go with the group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        harness.stop_process(proc)
    elapsed = time.monotonic() - t0
    out = out.decode(errors="replace")
    err = err.decode(errors="replace")
    if timed_out:
        raise AssertionError("%s did not finish within %ss (killed)\nstdout:\n%s\nstderr:\n%s"
                             % (script, timeout, out[-8000:], err[-8000:]))
    result = None
    for line in reversed(out.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                pass
            break
    return proc.returncode, result, out, err, elapsed


# ---------------------------------------------------------------------------
# 1. websockify's Python client

try:
    from websockify.websocket import WebSocket as _WebsockifyWebSocket
    from websockify.websocket import WebSocketWantReadError
except ImportError:  # the Debian package `websockify` is not installed
    _WebsockifyWebSocket = None
    WebSocketWantReadError = None


def websockify_client_class():
    """websockify's client class. websockify 0.10.0 (Debian 12's package)
    cannot send as a client: its _sendmsg builds the mask with
    `mask += random.randrange(256)` (bytes += int, a TypeError). Upstream fixed
    that line (`.to_bytes()`); where the installed copy still has the bug, the
    subclass below applies the same fix to that one method and nothing else:
    handshake, framing, unmasking and close handling stay websockify's own."""
    probe = _WebsockifyWebSocket()
    probe.client = True
    try:
        probe._sendmsg(0x2, b"x")  # gets past the masking, then fails on the missing socket
    except TypeError:
        class FixedMaskWebSocket(_WebsockifyWebSocket):
            def _sendmsg(self, opcode, msg):
                if self.client:
                    return self._send(self._encode_hybi(opcode, msg, os.urandom(4)))
                return self._send(self._encode_hybi(opcode, msg))
        return FixedMaskWebSocket, True
    except Exception:
        pass
    return _WebsockifyWebSocket, False


def websockify_connect(url, protocols, timeout=10.0):
    cls, _ = websockify_client_class()
    ws = cls()
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # websockify's connect() makes its socket with the default
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ws.connect(url, protocols=protocols)
                break
            except WebSocketWantReadError:  # response not complete yet: call again, same args
                if time.monotonic() > deadline:
                    raise AssertionError("no complete handshake response within %ss" % timeout)
    except BaseException:
        if ws.socket is not None:
            ws.socket.close()
        raise
    finally:
        socket.setdefaulttimeout(old)
    ws.settimeout(timeout)
    return ws


def websockify_recv(ws, timeout=10.0):
    """One message (bytes), or None once the connection is closed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ws.recv()
        except WebSocketWantReadError:  # only control frames so far
            if time.monotonic() > deadline:
                raise AssertionError("no message within %ss" % timeout)


class WebsockifyClientTest(GatewayTestCase):
    """websockify's own client (the Python module of the `websockify` package)
    through `tcp` routes with the `binary` subprotocol."""

    GREETING_SIZE = 300 * 1024

    @classmethod
    def setUpClass(cls):
        if _WebsockifyWebSocket is None:
            missing("python module websockify is not installed "
                    "(Debian package websockify; run with /usr/bin/python3)")
        super().setUpClass()
        cls.client_class, cls.patched = websockify_client_class()
        if cls.patched:
            print("websockify client: applying upstream's masking fix to this websockify copy",
                  flush=True)
        _, echo_port = cls.ch.start_echo()
        rng, _ = make_rng(cls.__name__)
        cls.greeting = rng.randbytes(cls.GREETING_SIZE)
        greeter = cls.ch.send_then_close_backend(cls.greeting)
        cls.port = harness.free_port()
        cls.gw = cls.ch.start_gateway({
            "listen": [{"host": HOST, "port": cls.port}],
            "routes": [
                {"name": "echo", "path": "/echo", "type": "tcp", "subprotocols": ["binary"],
                 "target": {"host": HOST, "port": echo_port}},
                {"name": "greet", "path": "/greet", "type": "tcp", "subprotocols": ["binary"],
                 "target": {"host": HOST, "port": greeter.port}},
            ],
        })

    def test_binary_stream_echoed_exactly(self):
        rng, _ = make_rng(self.id())
        ws = websockify_connect(self.gw.url("/echo"), ["binary"])
        self.addCleanup(lambda: ws.socket and ws.socket.close())
        self.assertEqual(ws.protocol, "binary")
        sent = bytearray()
        received = bytearray()
        window = 256 * 1024
        t0 = time.monotonic()
        while len(sent) < 2 * 1024 * 1024:
            msg = rng.randbytes(rng.choice([1, 2, 3, 125, 126, 127, 65535, 65536, 65537,
                                            rng.randint(1, 100000)]))
            ws.send(msg)
            sent += msg
            while len(sent) - len(received) > window:
                got = websockify_recv(ws)
                self.assertIsNotNone(got, "connection closed after %d of %d bytes (close %s %r)"
                                     % (len(received), len(sent), ws.close_code,
                                        ws.close_reason))
                received += got
        while len(received) < len(sent):
            got = websockify_recv(ws)
            self.assertIsNotNone(got, "connection closed after %d of %d bytes (close %s %r)"
                                 % (len(received), len(sent), ws.close_code, ws.close_reason))
            received += got
        print("websockify client: echoed %d bytes in %.2f s" % (len(sent), time.monotonic() - t0),
              flush=True)
        self.assert_same_bytes(bytes(sent), bytes(received))

        # Closing handshake started by the client: the gateway answers with a
        # close frame (websockify records that in _received_close; an EOF
        # without one would leave it False).
        ws.shutdown(socket.SHUT_RDWR, 1000, "done")
        self.assertIsNone(websockify_recv(ws), "data after the client's close")
        self.assertTrue(ws._received_close, "the gateway did not answer the close frame")

    def test_backend_close_reaches_client_as_1000(self):
        ws = websockify_connect(self.gw.url("/greet"), ["binary"])
        self.addCleanup(lambda: ws.socket and ws.socket.close())
        self.assertEqual(ws.protocol, "binary")
        received = bytearray()
        while True:
            got = websockify_recv(ws)
            if got is None:
                break
            received += got
        self.assert_same_bytes(self.greeting, bytes(received), "greeting")
        self.assertEqual(ws.close_code, 1000, "close reason %r" % ws.close_reason)

    def test_no_subprotocol_offered(self):
        # websockify's client refuses a Sec-WebSocket-Protocol it did not ask for.
        ws = websockify_connect(self.gw.url("/echo"), [])
        self.addCleanup(lambda: ws.socket and ws.socket.close())
        self.assertIsNone(ws.protocol)
        msg = b"\x00\x01no subprotocol\xff"
        ws.send(msg)
        got = bytearray()
        while len(got) < len(msg):
            m = websockify_recv(ws)
            self.assertIsNotNone(m, "closed after %d bytes" % len(got))
            got += m
        self.assertEqual(bytes(got), msg)
        ws.close()

    def test_unaccepted_subprotocol_is_http_400(self):
        # websockify's client accepts only an HTTP/1.1 status line and then
        # reports the status: "WebSocket request denied: 400 ...".
        with self.assertRaises(Exception) as cm:
            ws = websockify_connect(self.gw.url("/echo"), ["base64"])
            ws.close()
        self.assertIn("denied: 400", str(cm.exception))


# ---------------------------------------------------------------------------
# 2. MQTT.js through a `tcp` route to mosquitto


class MqttJsTest(GatewayTestCase):
    """MQTT.js speaks MQTT over WebSocket through {"type": "tcp",
    "subprotocols": ["mqtt"]} to a real mosquitto."""

    @classmethod
    def setUpClass(cls):
        require_programs(MOSQUITTO)
        require_npm_packages("mqtt")
        super().setUpClass()
        cls.broker_port = start_mosquitto(cls.ch)
        cls.port = harness.free_port()
        cls.gw = cls.ch.start_gateway({
            "listen": [{"host": HOST, "port": cls.port}],
            "routes": [{"path": "/mqtt", "type": "tcp", "subprotocols": ["mqtt"],
                        "target": {"host": HOST, "port": cls.broker_port}},
                       {"path": "/mqttz", "type": "tcp", "subprotocols": ["mqtt"],
                        "compression": True,
                        "target": {"host": HOST, "port": cls.broker_port}}],
        })

    def run_client(self, version, payload_bytes, path="/mqtt"):
        rc, res, out, err, dt = run_node(
            "mqtt_client.js", [self.gw.url(path), "mqtt://%s:%d" % (HOST, self.broker_port),
                               version, payload_bytes], timeout=50)
        print("mqtt_client.js (MQTT %s, %d-byte payload): exit %s in %.2f s; %s"
              % (version, payload_bytes, rc, dt, (res or {}).get("steps")), flush=True)
        self.assertIsNotNone(res, "no JSON line from mqtt_client.js\nstdout:\n%s\nstderr:\n%s"
                             % (out, err))
        self.assertEqual(rc, 0, "mqtt_client.js failed: %s\nstderr:\n%s"
                         % (json.dumps(res, indent=1), err))
        self.assertTrue(res.get("ok"), res)
        self.assertEqual(res.get("offered_subprotocols"), ["mqtt"])
        self.assertEqual(res.get("subprotocol"), "mqtt", "selected subprotocol")
        self.assertEqual(res.get("unexpected_messages"), 0, res)
        return res

    def test_mqtt_3_1_1_pubsub(self):
        self.run_client(4, 200 * 1024)

    def test_mqtt_5_pubsub(self):
        # Under the default max_message_bytes (1 MiB) with the MQTT header.
        self.run_client(5, 512 * 1024)

    def test_mqtt_over_permessage_deflate(self):
        # MQTT.js's `ws` offers permessage-deflate: negotiated on a route with
        # "compression", and MQTT packets (random payloads: sent as they are
        # when they would not shrink) pass both ways.
        res = self.run_client(4, 200 * 1024, path="/mqttz")
        self.assertIn("permessage-deflate", res.get("extensions") or "")
        self.assertNotIn("permessage-deflate", self.run_client(4, 1024).get("extensions") or "")


# ---------------------------------------------------------------------------
# 3. noVNC in headless Chromium through a `binary` route to x11vnc


class NoVncTest(GatewayTestCase):
    """noVNC's RFB client in headless Chromium, page served by wsgate's
    `static`, through {"type": "tcp", "subprotocols": ["binary"]} to x11vnc
    showing an Xvfb display."""

    @classmethod
    def setUpClass(cls):
        require_programs(CHROMIUM, "Xvfb", "x11vnc", "xsetroot")
        require_npm_packages("@novnc/novnc", "playwright-core")
        super().setUpClass()
        cls.display = start_xvfb(cls.ch)
        cls.vnc_port = start_x11vnc(cls.ch, cls.display)

        www = cls.ch.path("www")
        os.makedirs(www)
        shutil.copy(os.path.join(CLIENTS_DIR, "novnc", "index.html"), www)
        # Copies, not symlinks: the static handler refuses paths that resolve
        # outside its dir. noVNC ships ES modules under core/ (and pako under vendor/).
        pkg = os.path.join(NODE_MODULES, "@novnc", "novnc")
        for sub in ("core", "vendor"):
            shutil.copytree(os.path.join(pkg, sub), os.path.join(www, sub))

        cls.port = harness.free_port()
        cls.gw = cls.ch.start_gateway({
            "listen": [{"host": HOST, "port": cls.port}],
            "static": {"mount": "/", "dir": www},
            "routes": [{"name": "vnc", "path": "/vnc", "type": "tcp",
                        "subprotocols": ["binary"],
                        "target": {"host": HOST, "port": cls.vnc_port}}],
        })

    def test_novnc_draws_the_remote_desktop(self):
        xsetroot(self.display, "red")
        page = "http://%s:%d/index.html?path=/vnc" % (HOST, self.port)
        os.makedirs(ARTIFACTS_DIR, exist_ok=True)
        shot = os.path.join(ARTIFACTS_DIR, "novnc.png")
        if os.path.exists(shot):
            os.unlink(shot)
        # A fresh browser profile in the test's temp dir (removed with it).
        profile = self.h.path("chromium-profile")
        rc, res, out, err, dt = run_node("novnc_check.js", [page, self.display, shot], timeout=55,
                                         env={"WSGATE_CHROMIUM_PROFILE": profile})
        print("novnc_check.js: exit %s in %.2f s; %s"
              % (rc, dt, (res or {}).get("steps")), flush=True)
        self.assertIsNotNone(res, "no JSON line from novnc_check.js\nstdout:\n%s\nstderr:\n%s"
                             % (out, err))
        self.assertEqual(rc, 0, "novnc_check.js failed: %s\nstderr:\n%s"
                         % (json.dumps(res, indent=1), err[-8000:]))
        self.assertTrue(res.get("ok"), res)
        # noVNC really went through the gateway, with the subprotocol it offered.
        self.assertEqual(res.get("ws_url"), self.gw.url("/vnc"))
        self.assertEqual(res.get("offered"), ["binary"])
        self.assertEqual(res.get("subprotocol"), "binary")
        # The framebuffer is the X display's: its size, first red, then blue
        # after xsetroot changed it (a later incremental update).
        for colour in ("red", "blue"):
            st = res[colour]
            self.assertEqual((st["width"], st["height"]), (320, 240), st)
            self.assertGreaterEqual(st["match"], 0.95 * st["total"], "%s: %s" % (colour, st))
        self.assertEqual(res["red"]["center"], [255, 0, 0, 255])
        self.assertEqual(res["blue"]["center"], [0, 0, 255, 255])
        self.assertTrue(res.get("desktop_name"), "no desktop name from the VNC server")
        self.assertTrue(res.get("clean_disconnect"), res.get("events"))
        self.assertEqual(res.get("page_errors"), [])
        self.assertEqual(res.get("failed_requests"), [])
        self.assertTrue(os.path.getsize(shot) > 0, "no screenshot at %s" % shot)
        # The gateway counted it on the route.
        samples = harness.parse_prometheus(harness.http_get(self.port, "/metrics").body.decode())
        total = harness.metric(samples, "wsgate_connections_total", route="vnc")
        self.assertEqual(total, 1.0, "wsgate_connections_total{route=\"vnc\"}")



# ---------------------------------------------------------------------------
# 4. Debian's noVNC page, unmodified, against wsgate in websockify's form

NOVNC_WEB = "/usr/share/novnc"


class NoVncWebsockifyFormTest(GatewayTestCase):
    """What a websockify user runs: novnc_proxy starts `websockify --web
    /usr/share/novnc PORT localhost:5900`; here the same words start wsgate,
    and Debian's own vnc.html connects (autoconnect) as it would there."""

    @classmethod
    def setUpClass(cls):
        require_programs(CHROMIUM, "Xvfb", "x11vnc", "xsetroot")
        require_npm_packages("playwright-core")
        if not os.path.isfile(os.path.join(NOVNC_WEB, "vnc.html")):
            missing("Debian package novnc is not installed (%s/vnc.html)" % NOVNC_WEB)
        super().setUpClass()
        cls.display = start_xvfb(cls.ch)
        cls.vnc_port = start_x11vnc(cls.ch, cls.display)

    def run_page(self, port, extra_query, shot_name):
        xsetroot(self.display, "red")
        page = ("http://%s:%d/vnc.html?autoconnect=true&host=%s&port=%d%s"
                % (HOST, port, HOST, port, extra_query))
        os.makedirs(ARTIFACTS_DIR, exist_ok=True)
        shot = os.path.join(ARTIFACTS_DIR, shot_name)
        if os.path.exists(shot):
            os.unlink(shot)
        rc, res, out, err, dt = run_node("novnc_page_check.js", [page, self.display, shot],
                                         timeout=60)
        print("novnc_page_check.js: exit %s in %.2f s; %s"
              % (rc, dt, (res or {}).get("steps")), flush=True)
        self.assertIsNotNone(res, "no JSON line from novnc_page_check.js\nstdout:\n%s\n"
                             "stderr:\n%s" % (out, err))
        self.assertEqual(rc, 0, "novnc_page_check.js failed: %s\nstderr:\n%s"
                         % (json.dumps(res, indent=1), err[-8000:]))
        for colour in ("red", "blue"):
            st = res[colour]
            self.assertEqual((st["width"], st["height"]), (320, 240), st)
            self.assertGreaterEqual(st["match"], 0.95 * st["total"], "%s: %s" % (colour, st))
        self.assertEqual(res.get("page_errors"), [])
        # ui.js asks for package.json (its version label); Debian's package
        # has none, so it is a 404 under websockify too.
        failed = [r for r in res.get("failed_requests")
                  if r != "http://%s:%d/package.json: HTTP 404" % (HOST, port)]
        self.assertEqual(failed, [])
        self.assertTrue(os.path.getsize(shot) > 0)
        return res

    def test_web_and_positional_target(self):
        port = harness.free_port()
        gw = self.h.start_gateway(args=["--web", NOVNC_WEB, "%s:%d" % (HOST, port),
                                        "localhost:%d" % self.vnc_port], ports=[port])
        res = self.run_page(port, "", "novnc-websockify-positional.png")
        sockets = res["sockets"]
        self.assertEqual(len(sockets), 1, sockets)
        self.assertEqual(sockets[0]["url"], "ws://%s:%d/websockify" % (HOST, port))
        # noVNC 1.3 offers no subprotocol (older ones offered "binary"):
        # accepted, as websockify accepts it.
        self.assertEqual((sockets[0]["offered"], sockets[0]["protocol"]), ([], ""))
        self.assertIn('route=websockify peer=127.0.0.1 client=127.0.0.1 subprotocol=""',
                      gw.log())

    def test_novnc_proxy_starts_wsgate(self):
        # Debian's own launcher, unchanged: novnc_proxy looks websockify up on
        # PATH, where `websockify` is wsgate. Its port check and the address
        # it prints take "127.0.0.1:PORT" as a port that is free, and pass it
        # on, so the test listens on 127.0.0.1 only.
        proxy = os.path.join(NOVNC_WEB, "utils", "novnc_proxy")
        if not os.access(proxy, os.X_OK):
            missing("%s is not installed (Debian package novnc)" % proxy)
        shim = self.h.path("bin")
        os.makedirs(shim)
        os.symlink(harness.WSGATE_BIN, os.path.join(shim, "websockify"))
        port = harness.free_port()
        env = dict(os.environ, PATH=shim + ":" + os.environ["PATH"])
        p = start_process(self.h, "novnc_proxy",
                          [proxy, "--listen", "%s:%d" % (HOST, port), "--vnc",
                           "localhost:%d" % self.vnc_port, "--web", NOVNC_WEB,
                           "--heartbeat", "10", "--idle-timeout", "300"],
                          stdout_log=True, env=env)
        wait_port(p, port)
        res = self.run_page(port, "", "novnc-websockify-proxy.png")
        self.assertTrue(res["sockets"][0]["opened"])
        out = read_file(p.out_path)
        self.assertIn("Using installed websockify at %s/websockify" % shim, out)

    def test_web_and_token_file(self):
        tokens = self.h.write_file("tokens/vnc.conf", "# websockify token file\n"
                                   "desk: localhost:%d\n" % self.vnc_port)
        port = harness.free_port()
        self.h.start_gateway(args=["--web", NOVNC_WEB, "--token-plugin", "TokenFile",
                                   "--token-source", os.path.dirname(tokens),
                                   "%s:%d" % (HOST, port)], ports=[port])
        res = self.run_page(port, "&path=websockify%3Ftoken%3Ddesk",
                            "novnc-websockify-token.png")
        self.assertEqual(res["sockets"][0]["url"],
                         "ws://%s:%d/websockify?token=desk" % (HOST, port))
        self.assertTrue(res["sockets"][0]["opened"])


if __name__ == "__main__":
    harness.main()

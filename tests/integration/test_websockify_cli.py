"""test_websockify_cli.py - wsgate started with websockify's command line,
`wsgate [options] [source_addr:]source_port [target_addr:target_port]`
(SPEC-2 C), against real peers on 127.0.0.1 free ports:

- the positional form with python websockets and with websockify's own
  client (Debian's python3-websockify): every path, `binary` or no
  subprotocol, any Origin;
- --web (files and a WebSocket on any path), --cert with and without
  --ssl-only, --unix-target, --heartbeat, --idle-timeout, --log-file and
  --verbose;
- token files (--token-plugin TokenFile --token-source, and --target-config)
  in websockify's own format, as a file and as a directory, re-read when
  they change; the same file as a JSON config's target_map;
- each refusal: exit 2 and one line naming the option.
"""

import os
import shutil
import signal
import socket
import ssl
import threading
import time
import unittest

import websockets

import harness
import peers
from harness import HOST, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, GatewayTestCase, RawWebSocket, \
    close_payload, raw_upgrade, run_async, run_cli
from test_real_clients import _WebsockifyWebSocket, missing, start_process, wait_port, \
    websockify_connect, websockify_recv
from test_tls import make_cert

RELOAD_S = 3.0


def wait_listening(gw, port, timeout=10.0):
    """For listeners /healthz cannot reach (TLS only): a TCP accept will do."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gw.proc.poll() is not None:
            raise AssertionError("wsgate exited with %s:\n%s" % (gw.proc.returncode, gw.log()))
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("wsgate did not listen on %d within %ss" % (port, timeout))


def start(h, args, wait=True):
    """`wsgate ARGS` in h's temp dir (relative paths are the test's); args
    name the port as "127.0.0.1:PORT", given first."""
    port = int(args[[i for i, a in enumerate(args) if a.startswith(HOST + ":")][0]].split(":")[1])
    gw = h.start_gateway(args=args, ports=[port], wait=wait)
    gw.port = port
    return gw


def unix_banner_server(test, path, banner):
    """A unix socket at `path` that greets each connection with `banner`
    and then echoes; closed with the test."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen()
    test.addCleanup(srv.close)

    def serve(conn):
        with conn:
            conn.sendall(banner)
            while True:
                d = conn.recv(65536)
                if not d:
                    return
                conn.sendall(d)

    def accept_loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept_loop, daemon=True).start()


async def echo_once(url, payload, **kw):
    async with websockets.connect(url, max_size=None, **kw) as ws:
        await ws.send(payload)
        got = b""
        while len(got) < len(payload):
            got += await ws.recv()
        return ws.subprotocol, got


class PositionalFormTest(GatewayTestCase):
    """`wsgate 127.0.0.1:P 127.0.0.1:ECHO`: what websockify users run."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        _, cls.echo_port = cls.ch.start_echo()
        cls.port = harness.free_port()
        cls.gw = start(cls.ch, ["%s:%d" % (HOST, cls.port), "%s:%d" % (HOST, cls.echo_port)])

    def test_every_path_binary_or_none_any_origin(self):
        payload = os.urandom(1 << 20)
        for path in ("/", "/websockify", "/a/b/c?token=x&y=%2F"):
            sub, got = run_async(echo_once(self.gw.url(path), payload, subprotocols=["binary"]))
            self.assertEqual(sub, "binary", path)
            self.assertEqual(got, payload, path)
        sub, got = run_async(echo_once(self.gw.url("/"), b"no subprotocol"))
        self.assertIsNone(sub)
        self.assertEqual(got, b"no subprotocol")
        sub, got = run_async(echo_once(self.gw.url("/"), b"x", subprotocols=["binary"],
                                       origin="https://elsewhere.example"))
        self.assertEqual(got, b"x")
        # The listener is the one on the command line, and the route is named.
        self.assertIn("addr=%s:%d" % (HOST, self.port), self.gw.log())
        self.assertIn("route=websockify", self.gw.log())
        self.assertIn('config="command line"', self.gw.log())

    def test_websockify_client(self):
        if _WebsockifyWebSocket is None:
            missing("python module websockify is not installed (Debian package websockify)")
        ws = websockify_connect(self.gw.url("/websockify"), ["binary"])
        self.addCleanup(lambda: ws.socket and ws.socket.close())
        self.assertEqual(ws.protocol, "binary")
        msg = os.urandom(200000)
        ws.send(msg)
        got = bytearray()
        while len(got) < len(msg):
            m = websockify_recv(ws)
            self.assertIsNotNone(m, "closed after %d bytes" % len(got))
            got += m
        self.assertEqual(bytes(got), msg)
        ws.shutdown(socket.SHUT_RDWR, 1000, "done")
        self.assertIsNone(websockify_recv(ws))


class WebTest(GatewayTestCase):
    def test_files_and_websocket_on_any_path(self):
        _, echo_port = self.h.start_echo()
        self.h.write_file("web/vnc.html", "<html>noVNC</html>")
        self.h.write_file("web/app/ui.js", "// ui")
        port = harness.free_port()
        gw = start(self.h, ["--web", "web", "%s:%d" % (HOST, port), "%s:%d" % (HOST, echo_port)])
        r = harness.http_get(port, "/vnc.html")
        self.assertEqual((r.status, r.body), (200, b"<html>noVNC</html>"))
        self.assertIn("text/html", r.header("content-type"))
        self.assertEqual(harness.http_get(port, "/app/ui.js").body, b"// ui")
        self.assertEqual(harness.http_get(port, "/nope.html").status, 404)
        # A request with Upgrade: websocket is the WebSocket, whatever the path,
        # even the path of a file.
        for path in ("/websockify", "/vnc.html", "/"):
            sub, got = run_async(echo_once(gw.url(path), b"up " + path.encode(),
                                           subprotocols=["binary"]))
            self.assertEqual((sub, got), ("binary", b"up " + path.encode()), path)

    def test_web_dir_missing_exits_2(self):
        r = run_cli(["--web", "/nonexistent/novnc", "%s:%d" % (HOST, harness.free_port()),
                     "%s:5900" % HOST])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr.strip().count("\n"), 0, r.stderr)
        self.assertIn("--web /nonexistent/novnc", r.stderr)


class TokenFileTest(GatewayTestCase):
    """websockify's TokenFile plugin: `token: host:port` lines, ?token=."""

    def setUp(self):
        super().setUp()
        self.b = [peers.add(self.h, peers.BannerEchoBackend(str(i).encode())) for i in range(4)]

    def line(self, token, i):
        return "%s: %s:%d\n" % (token, HOST, self.b[i].port)

    def banner(self, gw, token):
        resp = raw_upgrade(gw.port, "/websockify?token=" + token, protocols="binary")
        if resp.status != 101:
            if resp.sock is not None:
                resp.sock.close()
            return resp.status
        ws = RawWebSocket(resp)
        msgs, close = peers.read_messages(ws, until=lambda m: len(m) >= 1, timeout=5)
        ws.send(OP_CLOSE, close_payload(1000))
        ws.close()
        self.assertIsNone(close)
        self.assertEqual(msgs[0][0], OP_BINARY)
        return msgs[0][1].decode()

    def wait_banner(self, gw, token, want, timeout=RELOAD_S):
        t0 = time.monotonic()
        while True:
            got = self.banner(gw, token)
            if got == want:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                self.fail("token %s: %r %.1f s after the change (wanted %r)"
                          % (token, got, timeout, want))
            time.sleep(0.1)

    def test_file(self):
        self.h.write_file("tokens.cfg", "# consoles\n" + self.line("vm1", 1) + "\n"
                          + self.line("vm2", 2))
        port = harness.free_port()
        gw = start(self.h, ["--token-plugin", "TokenFile", "--token-source", "tokens.cfg",
                            "%s:%d" % (HOST, port)])
        self.assertEqual(self.banner(gw, "vm1"), "1")
        self.assertEqual(self.banner(gw, "vm2"), "2")
        self.assertEqual(self.banner(gw, "vm3"), 404)
        # Edited in place: re-read within the poll interval.
        with open(self.h.path("tokens.cfg"), "a") as f:
            f.write(self.line("vm3", 3))
        took = self.wait_banner(gw, "vm3", "3")
        print("token file: new token served %.2f s after the edit" % took, flush=True)
        self.assertEqual(self.banner(gw, "vm1"), "1")

    def test_directory(self):
        self.h.write_file("tokens.d/a", self.line("vm1", 1))
        self.h.write_file("tokens.d/b.conf", self.line("vm2", 2))
        port = harness.free_port()
        gw = start(self.h, ["--token-plugin=TokenFile", "--token-source=tokens.d",
                            "%s:%d" % (HOST, port)])
        self.assertEqual(self.banner(gw, "vm1"), "1")
        self.assertEqual(self.banner(gw, "vm2"), "2")
        # A file added, then one edited in place (the directory's mtime stays).
        self.h.write_file("tokens.d/c", self.line("vm3", 3))
        self.wait_banner(gw, "vm3", "3")
        time.sleep(0.05)
        with open(self.h.path("tokens.d/a"), "w") as f:
            f.write(self.line("vm1", 0))
        self.wait_banner(gw, "vm1", "0")
        os.unlink(self.h.path("tokens.d/b.conf"))
        self.wait_banner(gw, "vm2", 404)

    def test_sighup_rereads_token_files(self):
        self.h.write_file("tokens.cfg", self.line("vm1", 1))
        port = harness.free_port()
        gw = start(self.h, ["--target-config=tokens.cfg", "%s:%d" % (HOST, port)])
        self.assertNotIn("target map loaded", gw.log())
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "target map loaded" not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("target map loaded", gw.log())
        self.assertIn("SIGHUP: no config file to reload", gw.log())
        self.assertEqual(self.banner(gw, "vm1"), "1")

    def test_target_config_alias(self):
        self.h.write_file("targets", self.line("vm1", 1))
        port = harness.free_port()
        gw = start(self.h, ["--target-config", "targets", "%s:%d" % (HOST, port)])
        self.assertEqual(self.banner(gw, "vm1"), "1")

    def test_same_file_as_json_target_map(self):
        # A migration to a config file keeps the token files as they are.
        path = self.h.write_file("tokens.cfg", self.line("vm1", 1) + self.line("vm2", 2))
        port = harness.free_port()
        gw = self.h.start_gateway({
            "listen": [{"host": HOST, "port": port}],
            "routes": [{"path": "/websockify", "type": "tcp", "subprotocols": ["binary"],
                        "target_map": {"file": path, "key": "{query.token}"}}]})
        self.assertEqual(self.banner(gw, "vm2"), "2")
        self.assertEqual(self.banner(gw, "vm9"), 404)

    def test_same_files_as_websockify(self):
        # The very files websockify reads give wsgate the same answers.
        if not shutil.which("websockify"):
            missing("websockify is not installed (Debian package websockify)")
        self.h.write_file("tokens.d/a", "# lab\n" + self.line("vm1", 1) + "\n"
                          + self.line("vm2", 2))
        self.h.write_file("tokens.d/b", self.line("vm3", 3))
        # websockify's TokenFile takes "unix_socket:PATH" as a unix socket.
        sock = self.h.path("vmu.sock")
        unix_banner_server(self, sock, b"u")
        self.h.write_file("tokens.d/c", "vmu: unix_socket:%s\n" % sock)
        ours, theirs = harness.free_port(), harness.free_port()
        gw = start(self.h, ["--token-plugin", "TokenFile", "--token-source", "tokens.d",
                            "%s:%d" % (HOST, ours)])
        ws = start_process(self.h, "websockify",
                           ["websockify", "--token-plugin", "TokenFile", "--token-source",
                            self.h.path("tokens.d"), "%s:%d" % (HOST, theirs)])
        wait_port(ws, theirs)
        answers = {}
        for port in (ours, theirs):
            gw.port = port
            answers[port] = [self.banner(gw, t) for t in ("vm1", "vm2", "vm3", "vmu")]
        gw.port = ours
        self.assertEqual(answers[ours], ["1", "2", "3", "u"])
        self.assertEqual(answers[theirs], answers[ours])

    def test_bad_token_file_exits_2(self):
        self.h.write_file("tokens.cfg", "vm1 127.0.0.1:5900\n")
        r = run_cli(["--token-plugin", "TokenFile", "--token-source", self.h.path("tokens.cfg"),
                     "%s:%d" % (HOST, harness.free_port())])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("tokens.cfg:1: expected \"token: host:port\"", r.stderr)


class TlsTest(GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.crt, cls.key = make_cert(cls.ch.tmp, "ws")
        _, cls.echo_port = cls.ch.start_echo()
        cls.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cls.ctx.load_verify_locations(cls.crt)

    def wss(self, port, payload):
        return run_async(echo_once("wss://%s:%d/websockify" % (HOST, port), payload,
                                   subprotocols=["binary"], ssl=self.ctx))

    def test_cert_serves_tls_and_plain(self):
        # websockify with --cert and without --ssl-only takes both on one port.
        port = harness.free_port()
        gw = start(self.h, ["--cert", self.crt, "--key", self.key, "%s:%d" % (HOST, port),
                            "%s:%d" % (HOST, self.echo_port)])
        self.assertEqual(self.wss(port, b"tls"), ("binary", b"tls"))
        self.assertEqual(run_async(echo_once(gw.url("/"), b"plain", subprotocols=["binary"])),
                         ("binary", b"plain"))

    def both_pem(self, name):
        """One PEM with certificate and key, as websockify's --cert takes it."""
        both = self.h.path(name)
        with open(both, "w") as out:
            for p in (self.crt, self.key):
                with open(p) as f:
                    out.write(f.read())
        return both

    def test_self_pem_in_working_directory(self):
        # websockify turns TLS on by itself when ./self.pem exists.
        self.both_pem("self.pem")
        port = harness.free_port()
        gw = start(self.h, ["%s:%d" % (HOST, port), "%s:%d" % (HOST, self.echo_port)])
        self.assertEqual(self.wss(port, b"tls"), ("binary", b"tls"))
        self.assertEqual(run_async(echo_once(gw.url("/"), b"plain", subprotocols=["binary"])),
                         ("binary", b"plain"))
        self.assertIn("websockify's default certificate", gw.log())

    def test_ssl_only_refuses_plain(self):
        # One PEM with certificate and key, as websockify's --cert takes it.
        both = self.h.path("both.pem")
        with open(both, "w") as out:
            for p in (self.crt, self.key):
                with open(p) as f:
                    out.write(f.read())
        port = harness.free_port()
        gw = start(self.h, ["--cert=" + both, "--ssl-only", "%s:%d" % (HOST, port),
                            "%s:%d" % (HOST, self.echo_port)], wait=False)
        wait_listening(gw, port)
        self.assertEqual(self.wss(port, b"tls only"), ("binary", b"tls only"))
        with self.assertRaises(Exception) as cm:
            run_async(echo_once(gw.url("/"), b"plain", subprotocols=["binary"], open_timeout=5))
        print("plain client against --ssl-only: %r" % cm.exception, flush=True)
        with self.assertRaises(Exception):
            harness.http_get(port, "/healthz", timeout=3)


class UnixTargetTest(GatewayTestCase):
    def test_unix_socket_target(self):
        path = self.h.path("vnc.sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen()
        self.addCleanup(srv.close)

        def serve():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while True:
                    d = conn.recv(65536)
                    if not d:
                        return
                    conn.sendall(d)
        threading.Thread(target=serve, daemon=True).start()
        port = harness.free_port()
        gw = start(self.h, ["--unix-target=" + path, "%s:%d" % (HOST, port)])
        self.assertEqual(run_async(echo_once(gw.url("/"), b"over unix", subprotocols=["binary"])),
                         ("binary", b"over unix"))
        self.assertIn("vnc.sock", gw.log())


class ProcessOptionsTest(GatewayTestCase):
    def test_heartbeat_pings(self):
        _, echo_port = self.h.start_echo()
        port = harness.free_port()
        gw = start(self.h, ["--heartbeat", "1", "%s:%d" % (HOST, port),
                            "%s:%d" % (HOST, echo_port)])
        resp = raw_upgrade(port, "/websockify", protocols="binary")
        self.assertEqual(resp.status, 101)
        ws = RawWebSocket(resp)
        self.addCleanup(ws.close)
        t0 = time.monotonic()
        seen = []
        for _ in range(2):  # answered, so the next one comes too
            _, op, payload = ws.recv_frame(timeout=5)
            self.assertEqual(op, OP_PING)
            seen.append(time.monotonic() - t0)
            ws.send(OP_PONG, payload)
        print("--heartbeat 1: pings after %s s" % ["%.2f" % t for t in seen], flush=True)
        self.assertLess(seen[1], 4.5)
        self.assertIsNone(gw.proc.poll())

    def test_idle_timeout_exits(self):
        _, echo_port = self.h.start_echo()
        port = harness.free_port()
        t0 = time.monotonic()
        gw = start(self.h, ["--idle-timeout=2", "%s:%d" % (HOST, port),
                            "%s:%d" % (HOST, echo_port)])
        # A connection open for 3 s keeps it running past its 2 s ...
        resp = raw_upgrade(port, "/", protocols="binary")
        self.assertEqual(resp.status, 101)
        ws = RawWebSocket(resp)
        time.sleep(3)
        self.assertIsNone(gw.proc.poll(), "exited while a client was connected")
        ws.send(OP_CLOSE, close_payload(1000))
        ws.close()
        closed = time.monotonic()
        # ... and 2 s after it went, the process exits by itself, status 0.
        rc = gw.proc.wait(timeout=10)
        after = time.monotonic() - closed
        print("--idle-timeout 2: exited %.2f s after the last connection (%.2f s after start)"
              % (after, time.monotonic() - t0), flush=True)
        self.assertEqual(rc, 0, gw.log())
        self.assertGreaterEqual(after, 1.5)
        self.assertLess(after, 6)

    def test_log_file_and_verbose(self):
        _, echo_port = self.h.start_echo()
        port = harness.free_port()
        log = self.h.path("ws.log")
        gw = start(self.h, ["%s:%d" % (HOST, port), "%s:%d" % (HOST, echo_port),
                            "--log-file", log, "-v"])
        run_async(echo_once(gw.url("/"), b"x", subprotocols=["binary"]))
        gw.stop()
        with open(log) as f:
            text = f.read()
        self.assertIn('msg="wsgate started"', text)
        self.assertIn("level=debug", text)
        self.assertIn("connection closed", text)
        self.assertNotIn("wsgate started", gw.log())


class RefusalTest(unittest.TestCase):
    """Each refusal: exit 2 and one line on stderr that names the problem."""

    CASES = [
        (["--record", "/tmp/rec"], "--record is a websockify option wsgate does not support"),
        (["--record=/tmp/rec"], "--record is a websockify option wsgate does not support"),
        (["-D"], "-D is a websockify option wsgate does not support"),
        (["--daemon"], "--daemon is a websockify option wsgate does not support"),
        (["--auth-plugin", "BasicHTTPAuth", "--auth-source", "u:p"],
         "--auth-plugin is a websockify option wsgate does not support"),
        (["--ssl-target"], "--ssl-target is a websockify option wsgate does not support"),
        (["--run-once"], "--run-once is a websockify option wsgate does not support"),
        (["--timeout", "5"], "--timeout is a websockify option wsgate does not support"),
        (["--token-plugin", "JSONTokenApi", "--token-source", "http://x/%s"],
         "--token-plugin JSONTokenApi is not supported"),
        (["-c", "wsgate.json"], "-c cannot be mixed with websockify's"),
        (["--frobnicate"], "no such option: --frobnicate"),
        (["--heartbeat", "often"], "option --heartbeat: invalid integer value: 'often'"),
    ]

    def test_each_refusal(self):
        for extra, words in self.CASES:
            with self.subTest(args=extra):
                r = run_cli(extra + ["6080", "localhost:5900"])
                self.assertEqual(r.returncode, 2, "%s: %r" % (extra, r.stderr))
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                self.assertIn(words, r.stderr)
                self.assertEqual(r.stdout, "")
        r = run_cli(["6080", "--", "x11vnc"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("WRAP_COMMAND_LINE", r.stderr)
        r = run_cli(["6080"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("too few arguments", r.stderr)

    def test_help_lists_both_forms(self):
        r = run_cli(["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("wsgate [-c FILE]", r.stdout)
        self.assertIn("wsgate [options] [source_addr:]source_port [target_addr:target_port]",
                      r.stdout)
        for opt in ("--web", "--cert", "--key", "--ssl-only", "--unix-target", "--token-plugin",
                    "--token-source", "--heartbeat", "--idle-timeout", "--verbose", "--log-file"):
            self.assertIn(opt, r.stdout)
        self.assertEqual(run_cli(["6080", "h:1", "--help"]).returncode, 0)


if __name__ == "__main__":
    harness.main()

"""test_unix_sockets.py - unix sockets at both edges of the gateway.

Targets: a tcp route's backend may be a unix socket, {"unix": PATH} in
"target" and "targets" (mixed with TCP ones), and in token files as
{"unix": PATH} or the string "unix:PATH". The bytes flow both ways as with
TCP; a socket file that is missing is a failed connect (1011, and the next
target is tried).

Listeners: {"unix": PATH, "mode": "0660"} serves HTTP and WebSockets on a
unix socket (python websockets' unix_connect); a stale socket file left by a
crashed process is replaced, the file gets the mode asked for, and it is
removed when wsgate exits."""

import json
import os
import socket
import stat

import harness
import peers
from harness import HOST, GatewayTestCase, run_async

import websockets


async def echo_once(uri, payload, unix_path=None):
    """Connects (over TCP, or over the unix socket), sends payload and
    returns what comes back (banner first, then the echo)."""
    if unix_path:
        ws = await websockets.unix_connect(unix_path, uri)
    else:
        ws = await websockets.connect(uri)
    try:
        got = b""
        await ws.send(payload)
        while len(got) < len(payload) + 1:
            got += await ws.recv()
        return got
    finally:
        await ws.close()


class UnixTargetTest(GatewayTestCase):
    def banner_backend(self, letter, name):
        path = self.h.path(name)
        return peers.add(self.h, peers.BannerEchoBackend(letter, unix_path=path)), path

    def test_target_and_targets(self):
        a, a_path = self.banner_backend(b"A", "a.sock")
        tcp = peers.add(self.h, peers.BannerEchoBackend(b"T"))
        port = harness.free_port()
        cfg = {"listen": self.listen(port),
               "routes": [{"path": "/one", "type": "tcp", "target": {"unix": a_path}},
                          # a socket file that does not exist is a failed connect:
                          # the next target (TCP) is tried
                          {"path": "/many", "type": "tcp",
                           "targets": [{"unix": self.h.path("missing.sock")},
                                       {"host": HOST, "port": tcp.port}]}]}
        gw = self.h.start_gateway(cfg)
        got = run_async(echo_once(gw.url("/one"), b"hello over a unix socket"))
        self.assertEqual(got, b"Ahello over a unix socket")
        got = run_async(echo_once(gw.url("/many"), b"x" * 70000))
        self.assertEqual(got, b"T" + b"x" * 70000)
        self.assertIn("missing.sock", gw.log())

    def test_token_file(self):
        a, a_path = self.banner_backend(b"A", "a.sock")
        b, b_path = self.banner_backend(b"B", "b.sock")
        map_path = self.h.write_file("tokens.json", json.dumps(
            {"vm1": {"unix": a_path}, "vm2": "unix:" + b_path}))
        port = harness.free_port()
        cfg = {"listen": self.listen(port),
               "routes": [{"path": "/vnc", "type": "tcp",
                           "target_map": {"file": map_path, "key": "{query.token}"}}]}
        gw = self.h.start_gateway(cfg)
        self.assertEqual(run_async(echo_once(gw.url("/vnc?token=vm1"), b"1")), b"A1")
        self.assertEqual(run_async(echo_once(gw.url("/vnc?token=vm2"), b"2")), b"B2")

    def test_missing_socket_closes_1011(self):
        port = harness.free_port()
        cfg = {"listen": self.listen(port),
               "routes": [{"path": "/gone", "type": "tcp",
                           "target": {"unix": self.h.path("nobody.sock")}}]}
        gw = self.h.start_gateway(cfg)

        async def go():
            async with websockets.connect(gw.url("/gone")) as ws:
                return await harness.recv_until_closed(ws)
        _, code, reason = run_async(go())
        self.assertEqual(code, 1011)
        self.assertIn("unix:", reason)

    def test_bad_target_config(self):
        cfg = {"listen": self.listen(harness.free_port()),
               "routes": [{"path": "/x", "type": "tcp", "target": {"unix": "/s", "port": 1}}]}
        path = self.h.write_config(cfg)
        r = harness.run_cli(["--check", "-c", path])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("routes[0].target.port: unknown key (expected one of: unix)",
                      r.stderr + r.stdout)


def unix_http_get(path, request_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
               % request_path).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


class UnixListenerTest(GatewayTestCase):
    def config(self, sock_path, echo_port, **listener):
        self.tcp_port = harness.free_port()
        return {"listen": [{"host": HOST, "port": self.tcp_port},
                           dict({"unix": sock_path}, **listener)],
                "routes": [{"path": "/echo", "type": "tcp",
                            "target": {"host": HOST, "port": echo_port}}]}

    def test_serves_http_and_websockets_with_mode(self):
        echo = peers.add(self.h, peers.BannerEchoBackend(b"E"))
        path = self.h.path("gw.sock")
        gw = self.h.start_gateway(self.config(path, echo.port, mode="0660"))
        st = os.stat(path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertIn(b"200 OK", unix_http_get(path, "/healthz").split(b"\r\n")[0])
        got = run_async(echo_once("ws://localhost/echo", b"over unix", unix_path=path))
        self.assertEqual(got, b"Eover unix")
        self.assertRegex(gw.log(), r'connection open" route=/echo peer=unix client=unix')
        self.assertIn("addr=unix:" + path, gw.log())
        gw.stop()
        self.assertFalse(os.path.exists(path), "the socket file outlived wsgate")

    def test_stale_socket_replaced_live_one_kept(self):
        echo = peers.add(self.h, peers.BannerEchoBackend(b"E"))
        path = self.h.path("gw.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)  # a process that died without removing its file
        stale.close()
        gw = self.h.start_gateway(self.config(path, echo.port))
        self.assertIn("stale unix socket file replaced", gw.log())
        self.assertEqual(run_async(echo_once("ws://localhost/echo", b"x", unix_path=path)), b"Ex")
        # While it runs, a second wsgate on the same path refuses to start
        # and leaves the first one's file alone.
        cfg = self.config(path, echo.port)
        r = harness.run_cli(["-c", self.h.write_config(cfg, "second.json")])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("another process is listening on it", r.stderr)
        self.assertEqual(run_async(echo_once("ws://localhost/echo", b"y", unix_path=path)), b"Ey")
        # A file that is no socket is never removed.
        gw.stop()
        with open(path, "w") as f:
            f.write("data")
        r = harness.run_cli(["-c", self.h.write_config(cfg, "third.json")])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("exists and is not a socket", r.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), "data")

    def test_proxy_protocol_on_a_unix_listener(self):
        echo = peers.add(self.h, peers.BannerEchoBackend(b"E"))
        path = self.h.path("gw.sock")
        gw = self.h.start_gateway(self.config(path, echo.port, proxy_protocol=True))

        async def go():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n")
            async with websockets.connect("ws://localhost/echo", sock=s) as ws:
                await ws.send(b"p")
                got = b""
                while len(got) < 2:
                    got += await ws.recv()
                return got
        self.assertEqual(run_async(go()), b"Ep")
        self.assertRegex(gw.log(), r'connection open" route=/echo peer=2001:db8::7 ')

    def test_refused_with_workers(self):
        cfg = self.config(self.h.path("gw.sock"), 1)
        cfg["workers"] = 2
        r = harness.run_cli(["-c", self.h.write_config(cfg)])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('a unix-socket listener needs \\"workers\\": 1', r.stderr)


if __name__ == "__main__":
    harness.main()

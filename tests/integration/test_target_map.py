"""test_target_map.py - websockify-style token files ("target_map").

A tcp route with {"file": F, "key": "{query.token}"} (or a path capture such
as "{vm}") picks its backend per connection from F, a JSON object mapping a
key to {"host", "port"}, "host:port", or a list of those (tried in order).
A key the map lacks is HTTP 404 before the upgrade, a missing parameter 400.
F is re-read on SIGHUP and when it changes (polled about every second): a
new key works and a removed key is 404 within 3 s, open connections carry
on. A broken F is reported on stderr with the file name and the JSON path,
and the last good map stays in force; at startup it is a config error that
`wsgate --check` reports.

Each backend greets a connection with a banner naming it; vm1's also echoes."""

import json
import os
import signal
import time

import harness
import peers
from harness import HOST, OP_BINARY, OP_CLOSE, GatewayTestCase, RawWebSocket, close_payload, \
    raw_upgrade

MAP_NAME = "consoles-map.json"
RELOAD_S = 3.0


class TargetMapTest(GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.b1 = peers.add(self.h, peers.BannerEchoBackend(b"1"))
        self.b2 = peers.add(self.h, peers.BannerEchoBackend(b"2"))
        self.b3 = peers.add(self.h, peers.BannerEchoBackend(b"3"))
        self.map_path = self.h.path(MAP_NAME)

    def base_map(self):
        return {
            "vm1": {"host": HOST, "port": self.b1.port},
            "vm2": "%s:%d" % (HOST, self.b2.port),
            "vm3": [{"host": HOST, "port": harness.refused_port()},
                    "%s:%d" % (HOST, self.b3.port)],
        }

    def write_map(self, content, atomic=True):
        """Writes the map (a dict, or text as is) by writing a temp file and
        renaming it over the map, as an editor or config manager would."""
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        if not atomic:
            with open(self.map_path, "w") as f:
                f.write(text)
            return
        tmp = self.map_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.map_path)

    def config(self, listen_port):
        def route(name, path, key):
            return {"name": name, "path": path, "type": "tcp", "subprotocols": ["binary"],
                    "target_map": {"file": self.map_path, "key": key}}
        return {"listen": [{"host": HOST, "port": listen_port}],
                "routes": [route("novnc", "/websockify", "{query.token}"),
                           route("byvm", "/vnc/{vm}", "{vm}")]}

    def gateway(self, content=None):
        self.write_map(self.base_map() if content is None else content)
        return self.h.start_gateway(self.config(harness.free_port()))

    def open(self, gw, path, protocols="binary"):
        """Upgrades `path`; returns (RawWebSocket, banner) or (None, response)
        for a refusal."""
        resp = raw_upgrade(gw.port, path, protocols=protocols)
        if resp.status != 101:
            return None, resp
        ws = RawWebSocket(resp)
        self.addCleanup(ws.close)
        msgs, close = peers.read_messages(ws, until=lambda m: len(m) >= 1, timeout=5)
        self.assertIsNone(close, "%s: closed before the banner: %r" % (path, close))
        self.assertEqual(msgs[0][0], OP_BINARY)
        return ws, msgs[0][1].decode()

    def banner(self, gw, path):
        ws, b = self.open(gw, path)
        if ws is None:
            self.fail("%s refused: %s %r" % (path, b.status_line, b.body))
        ws.send(OP_CLOSE, close_payload(1000))
        ws.close()
        return b

    def status(self, gw, path):
        resp = raw_upgrade(gw.port, path, protocols="binary")
        if resp.sock is not None:
            resp.sock.close()
        return resp.status_line

    def assert_refused(self, gw, path, status):
        line = self.status(gw, path)
        self.assertTrue(line.startswith("HTTP/1.1 %d" % status),
                        "%s: expected HTTP/1.1 %d, got %r" % (path, status, line))

    def echo(self, ws, payload):
        ws.send(OP_BINARY, payload)
        msgs, close = peers.read_messages(
            ws, until=lambda m: sum(len(p) for _, p in m) >= len(payload), timeout=5)
        self.assertIsNone(close, "the open connection was closed: %r" % (close,))
        self.assertEqual(b"".join(p for _, p in msgs), payload)

    def wait_status(self, gw, path, prefix, timeout=RELOAD_S):
        """Polls until upgrading `path` answers a status line starting with
        `prefix`; returns the seconds it took (fails after `timeout`)."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            last = self.status(gw, path)
            if last.startswith(prefix):
                return time.monotonic() - t0
            time.sleep(0.1)
        self.fail("%s: still %r %.1f s after the map changed (wanted %r)"
                  % (path, last, timeout, prefix))

    def stderr_since(self, gw, mark):
        return gw.log()[mark:]

    def problem_lines(self, gw, mark, *words):
        """warn/error lines on stderr since `mark` naming the map file and `words`."""
        return [l for l in self.stderr_since(gw, mark).splitlines()
                if ("level=error" in l or "level=warn" in l) and MAP_NAME in l
                and all(w in l for w in words)]

    # -- lookups --

    def test_each_entry_form(self):
        gw = self.gateway()
        self.assertEqual(self.banner(gw, "/websockify?token=vm1"), "1")
        self.assertEqual(self.banner(gw, "/websockify?token=vm2"), "2")
        self.assertEqual(self.banner(gw, "/websockify?token=vm3"), "3",
                         "a list entry must fall over to its second target")

    def test_novnc_style(self):
        gw = self.gateway()
        ws, banner = self.open(gw, "/websockify?token=vm1")
        self.assertIsNotNone(ws, banner)
        self.assertEqual(banner, "1")
        self.echo(ws, os.urandom(1000))
        self.assertEqual(self.banner(gw, "/websockify?foo=bar&token=vm2"), "2")
        self.assertEqual(self.banner(gw, "/websockify?token=vm%32"), "2",
                         "the query parameter must be percent-decoded")

    def test_path_capture_key(self):
        gw = self.gateway()
        self.assertEqual(self.banner(gw, "/vnc/vm2"), "2")
        self.assertEqual(self.banner(gw, "/vnc/vm1"), "1")
        self.assert_refused(gw, "/vnc/vm9", 404)

    def test_unknown_key_404_before_upgrade(self):
        gw = self.gateway()
        for path in ["/websockify?token=nope", "/websockify?token=VM1", "/vnc/nope"]:
            resp = raw_upgrade(gw.port, path, protocols="binary")
            if resp.sock is not None:
                resp.sock.close()
            self.assertTrue(resp.status_line.startswith("HTTP/1.1 404"),
                            "%s: %r" % (path, resp.status_line))
            ctype = resp.header("content-type") or ""
            self.assertTrue(ctype.startswith("text/plain"), "%s: content-type %r" % (path, ctype))
        for b in (self.b1, self.b2, self.b3):
            self.assertEqual(b.accepted, 0, "a refused handshake reached a backend")

    def test_missing_query_parameter_400(self):
        gw = self.gateway()
        for path in ["/websockify", "/websockify?other=vm1", "/websockify?token="]:
            self.assert_refused(gw, path, 400)

    # -- reloads --

    def test_file_change_is_picked_up_open_connection_survives(self):
        gw = self.gateway()
        ws, banner = self.open(gw, "/websockify?token=vm1")
        self.assertIsNotNone(ws, banner)
        self.assertEqual(banner, "1")
        self.assert_refused(gw, "/websockify?token=vm4", 404)
        new = self.base_map()
        del new["vm2"], new["vm1"]
        new["vm4"] = {"host": HOST, "port": self.b2.port}
        self.write_map(new)
        took = self.wait_status(gw, "/websockify?token=vm4", "HTTP/1.1 101")
        print("new key usable %.2f s after the rename" % took, flush=True)
        self.assertEqual(self.banner(gw, "/websockify?token=vm4"), "2")
        self.wait_status(gw, "/websockify?token=vm2", "HTTP/1.1 404", timeout=0.5)
        self.assert_refused(gw, "/websockify?token=vm1", 404)
        self.assertEqual(self.banner(gw, "/websockify?token=vm3"), "3")
        self.echo(ws, b"still here after the reload")

    def test_sighup_rereads_the_map(self):
        gw = self.gateway()
        self.assertEqual(self.banner(gw, "/websockify?token=vm2"), "2")
        # Same size, same mtime: only SIGHUP can tell the file changed.
        st = os.stat(self.map_path)
        with open(self.map_path) as f:
            text = f.read()
        self.assertIn('"vm2"', text)
        self.write_map(text.replace('"vm2"', '"vm7"'), atomic=False)
        os.utime(self.map_path, ns=(st.st_atime_ns, st.st_mtime_ns))
        gw.proc.send_signal(signal.SIGHUP)
        self.wait_status(gw, "/websockify?token=vm7", "HTTP/1.1 101")
        self.assertEqual(self.banner(gw, "/websockify?token=vm7"), "2")
        self.assert_refused(gw, "/websockify?token=vm2", 404)

    def test_broken_map_reported_last_good_kept(self):
        gw = self.gateway()
        ws, banner = self.open(gw, "/websockify?token=vm1")
        self.assertIsNotNone(ws, banner)

        # 1. a syntax error
        mark = len(gw.log())
        self.write_map('{"vm1": {"host": "127.0.0.1", "port": 1},\n  "vm9": \n')
        ok = peers.wait_until(lambda: self.problem_lines(gw, mark), RELOAD_S)
        self.assertTrue(ok, "no warn/error line on stderr names %s within %s s of a syntax "
                        "error; stderr since:\n%s" % (MAP_NAME, RELOAD_S,
                                                      self.stderr_since(gw, mark)))
        print("reported: %s" % ok[0], flush=True)
        self.assertEqual(self.banner(gw, "/websockify?token=vm1"), "1")
        self.assertEqual(self.banner(gw, "/websockify?token=vm2"), "2")
        self.assert_refused(gw, "/websockify?token=vm9", 404)

        # 2. a bad port: the whole file is refused, not just that entry
        mark = len(gw.log())
        bad = self.base_map()
        bad["vm1"] = {"host": HOST, "port": 70000}
        bad["vm9"] = {"host": HOST, "port": self.b3.port}
        self.write_map(bad)

        lines = peers.wait_until(lambda: self.problem_lines(gw, mark, "vm1.port"), RELOAD_S)
        self.assertTrue(lines, "no stderr line names %s and vm1.port within %s s; stderr since:\n%s"
                        % (MAP_NAME, RELOAD_S, self.stderr_since(gw, mark)))
        print("reported: %s" % lines[0], flush=True)
        self.assertEqual(self.banner(gw, "/websockify?token=vm1"), "1",
                         "the last good map must stay in force")
        self.assert_refused(gw, "/websockify?token=vm9", 404)

        # 3. fixed: the new map applies
        good = self.base_map()
        good["vm9"] = {"host": HOST, "port": self.b3.port}
        self.write_map(good)
        self.wait_status(gw, "/websockify?token=vm9", "HTTP/1.1 101")
        self.assertEqual(self.banner(gw, "/websockify?token=vm9"), "3")
        self.echo(ws, b"the first connection never noticed")

    # -- startup --

    def check(self, map_content):
        if map_content is None:
            if os.path.exists(self.map_path):
                os.unlink(self.map_path)
        else:
            self.write_map(map_content)
        cfg = self.h.write_config(self.config(harness.free_port()), "check.json")
        return harness.run_cli(["--check", "-c", cfg])

    def test_check_accepts_a_good_map(self):
        r = self.check(self.base_map())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("config ok", r.stdout + r.stderr)

    def test_check_rejects_a_bad_port_naming_the_json_path(self):
        bad = self.base_map()
        bad["vm1"] = {"host": HOST, "port": "5900x"}
        r = self.check(bad)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertTrue(any(MAP_NAME in l and "vm1.port" in l for l in out.splitlines()),
                        "no line names %s and vm1.port:\n%s" % (MAP_NAME, out))

    def test_check_rejects_a_bad_port_in_a_list(self):
        bad = self.base_map()
        bad["vm3"] = ["%s:%d" % (HOST, self.b3.port), {"host": HOST, "port": 0}]
        r = self.check(bad)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertTrue(any(MAP_NAME in l and "vm3[1].port" in l for l in out.splitlines()),
                        "no line names %s and vm3[1].port:\n%s" % (MAP_NAME, out))

    def test_check_rejects_a_syntax_error(self):
        r = self.check('{"vm1": "127.0.0.1:5900",\n}\n')
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIn(MAP_NAME, out)

    def test_check_rejects_a_missing_map(self):
        r = self.check(None)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIn(MAP_NAME, out)


if __name__ == "__main__":
    harness.main()

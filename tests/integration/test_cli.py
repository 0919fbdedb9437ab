"""test_cli.py - wsgate's command line: --version, --help, bad options,
--check on good and broken configs (every error named with file and JSON
path), WSGATE_CONFIG, exit status 2 when the port is taken, and a bare
`wsgate` serving on 127.0.0.1:8080."""

import re
import socket
import unittest

import harness
from harness import HOST, GatewayTestCase, run_cli


def good_config(port=None):
    return {
        "listen": [{"host": HOST, "port": port or harness.free_port()}],
        "routes": [
            {"path": "/echo", "type": "tcp", "subprotocols": ["binary"],
             "target": {"host": HOST, "port": 7}},
        ],
    }


class CommandLineTest(GatewayTestCase):
    def test_version(self):
        r = run_cli(["--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("wsgate "), "stdout: %r" % r.stdout)

    def test_help(self):
        r = run_cli(["--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        for word in ("-c", "--check", "--log-level"):
            self.assertIn(word, r.stdout, "usage on stdout should mention %s" % word)

    def test_unknown_option_exits_1(self):
        r = run_cli(["--no-such-option"])
        self.assertEqual(r.returncode, 1, "stdout: %r stderr: %r" % (r.stdout, r.stderr))
        self.assertIn("--no-such-option", r.stderr)

    def test_bad_log_level_exits_1(self):
        path = self.h.write_config(good_config())
        r = run_cli(["-c", path, "--check", "--log-level", "loud"])
        self.assertEqual(r.returncode, 1, "stdout: %r stderr: %r" % (r.stdout, r.stderr))


class CheckTest(GatewayTestCase):
    def check(self, config, name="wsgate.json"):
        path = self.h.write_config(config, name)
        return path, run_cli(["-c", path, "--check"])

    def error_lines(self, r, name):
        return [l for l in r.stderr.splitlines() if name in l]

    def assert_error(self, config, json_path, also=(), name="broken.json"):
        """--check fails with exit 1 and a stderr line naming the file and
        `json_path` (and every string in `also`)."""
        _, r = self.check(config, name)
        self.assertEqual(r.returncode, 1, "stdout: %r stderr: %r" % (r.stdout, r.stderr))
        self.assertNotIn("config ok", r.stdout)
        lines = [l for l in self.error_lines(r, name) if json_path in l]
        self.assertTrue(lines, "no stderr line names both %s and %s; stderr:\n%s"
                        % (name, json_path, r.stderr))
        for word in also:
            self.assertTrue(any(word in l for l in lines),
                            "the line naming %s does not say %r: %r" % (json_path, word, lines))
        return r

    def test_good_config(self):
        _, r = self.check(good_config())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "config ok")

    def test_port_not_an_integer(self):
        cfg = good_config()
        cfg["routes"][0]["target"]["port"] = "80a"
        self.assert_error(cfg, "routes[0].target.port", also=["expected an integer 1..65535"])

    def test_port_out_of_range(self):
        cfg = good_config()
        cfg["routes"][0]["target"]["port"] = 70000
        self.assert_error(cfg, "routes[0].target.port", also=["1..65535"])

    def test_unknown_key(self):
        cfg = good_config()
        cfg["routes"][0]["tagret"] = cfg["routes"][0].pop("target")
        self.assert_error(cfg, "routes[0].tagret")

    def test_unknown_top_level_key(self):
        cfg = good_config()
        cfg["listne"] = []
        self.assert_error(cfg, "listne")

    def test_unknown_broker(self):
        cfg = good_config()
        cfg["routes"].append({"path": "/m", "type": "mqtt", "broker": "nope",
                              "subscribe": [{"filter": "a/b"}]})
        self.assert_error(cfg, "routes[1].broker", also=["nope"])

    def test_missing_path(self):
        cfg = good_config()
        del cfg["routes"][0]["path"]
        self.assert_error(cfg, "routes[0]", also=["path"])

    def test_json_syntax_error_names_line_and_column(self):
        text = '{\n  "listen": [\n    {"host": "127.0.0.1", "port": 8080,}\n  ]\n}\n'
        path, r = self.check(text, "syntax.json")
        self.assertEqual(r.returncode, 1, "stdout: %r stderr: %r" % (r.stdout, r.stderr))
        lines = self.error_lines(r, "syntax.json")
        self.assertTrue(lines, "no stderr line names syntax.json: %r" % r.stderr)
        # Line 3 holds the stray comma; accept "3:40" or "line 3, column 40".
        self.assertTrue(any(re.search(r"(\b3:\d+\b|line\s*3\D+col(umn)?\s*\d+)", l) for l in lines),
                        "no line:column for the syntax error in: %r" % lines)

    def test_all_errors_reported(self):
        cfg = good_config()
        cfg["listen"][0]["port"] = "eighty"                 # 1: wrong type
        cfg["routes"][0]["tagret"] = {"host": HOST, "port": 1}  # 2: unknown key
        cfg["limits"] = {"max_message_bytes": "big"}       # 3: wrong type
        name = "three.json"
        _, r = self.check(cfg, name)
        self.assertEqual(r.returncode, 1, "stdout: %r stderr: %r" % (r.stdout, r.stderr))
        lines = self.error_lines(r, name)
        for json_path in ("listen[0].port", "routes[0].tagret", "limits.max_message_bytes"):
            hits = [l for l in lines if json_path in l]
            self.assertEqual(len(hits), 1, "expected one line naming %s; stderr:\n%s"
                             % (json_path, r.stderr))
        self.assertEqual(len(lines), 3, "expected exactly 3 error lines naming %s; stderr:\n%s"
                         % (name, r.stderr))

    def test_missing_file(self):
        path = self.h.path("does-not-exist.json")
        r = run_cli(["-c", path, "--check"])
        self.assertEqual(r.returncode, 1, "stdout: %r stderr: %r" % (r.stdout, r.stderr))
        self.assertIn("does-not-exist.json", r.stderr)

    def test_wsgate_config_env(self):
        path = self.h.write_config(good_config(), "from-env.json")
        r = run_cli(["--check"], env={"WSGATE_CONFIG": path})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "config ok")
        bad = good_config()
        bad["routes"][0]["target"]["port"] = "80a"
        bad_path = self.h.write_config(bad, "bad-from-env.json")
        r = run_cli(["--check"], env={"WSGATE_CONFIG": bad_path})
        self.assertEqual(r.returncode, 1, "WSGATE_CONFIG was not used: stdout %r" % r.stdout)
        self.assertIn("bad-from-env.json", r.stderr)


class StartupTest(GatewayTestCase):
    def test_port_in_use_exits_2(self):
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(blocker.close)
        blocker.bind((HOST, 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        path = self.h.write_config(good_config(port))
        r = run_cli(["-c", path], timeout=10)
        self.assertEqual(r.returncode, 2, "stdout: %r stderr: %r" % (r.stdout, r.stderr))
        self.assertIn(HOST, r.stderr)
        self.assertIn(str(port), r.stderr)

    def test_bare_wsgate_serves_on_8080(self):
        if not harness.port_is_free(8080):
            self.skipTest("127.0.0.1:8080 is in use")
        gw = self.h.start_gateway(config=None, ports=[8080])
        r = harness.http_get(8080, "/healthz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"status": "ok"})
        r = harness.http_get(8080, "/metrics")
        self.assertEqual(r.status, 200)
        self.assertEqual(gw.stop(), 0, "SIGTERM should exit 0")

    def test_sigterm_exits_0(self):
        port = harness.free_port()
        gw = self.h.start_gateway(good_config(port))
        self.assertEqual(gw.stop(), 0)
        self.assertFalse(gw.killed, "wsgate needed SIGKILL after SIGTERM")

    def test_sigterm_during_startup_is_not_swallowed(self):
        # SIGTERM sent the moment the process says it started (and at
        # random moments before): a signal that arrives while the server
        # is being made must still stop it.
        import random
        import signal
        import subprocess
        import time
        path = self.h.write_config(good_config())
        for attempt in range(30):
            proc = harness.popen([harness.WSGATE_BIN, "-c", path], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            try:
                if attempt % 2 == 0:
                    for line in proc.stderr:
                        if "wsgate started" in line:
                            break
                else:
                    time.sleep(random.uniform(0, 0.004))
                proc.send_signal(signal.SIGTERM)
                try:
                    rc = proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.fail("attempt %d: SIGTERM during startup was swallowed" % attempt)
                self.assertIn(rc, (0, -signal.SIGTERM), "attempt %d" % attempt)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stderr.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)

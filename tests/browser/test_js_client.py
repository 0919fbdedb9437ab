"""test_js_client.py - the browser client for envelope routes (clients/js/,
served from www/) in headless Chromium, against the real gateway and a real
mosquitto.

Each test starts, on free 127.0.0.1 ports, mosquitto (mqtt_peers.Mosquitto,
which can be restarted on its port) and wsgate with the demo's config
(config/demo.json: the /bus envelope route and its allow lists) plus one
envelope route behind a JWT (/me). tests/browser/js_client_check.js drives
the page and asks this file, by lines on its stdout, to stop and start
mosquitto or wsgate and to mint tokens (jwt_mint, HS256); the answers go back
on its stdin. What each scenario checks is said at the top of that script:
acks, not_allowed, the broker restarted, the gateway restarted (reconnect,
re-subscribe, a dropped publish past maxQueued), a token refreshed before exp,
the demo page (which runs on the client) across a gateway restart, and the
README's five-line example as written there.

Skips when Chromium, mosquitto, node or playwright-core are missing; with
CI=true that is a failure instead. Needs WSGATE_BIN (set by ctest) and
Debian's /usr/bin/python3.
"""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
import jwt_mint  # noqa: E402
import test_real_clients as rc  # noqa: E402  (its helpers only)
from harness import HOST, GatewayTestCase  # noqa: E402
from mqtt_peers import Mosquitto, unique_id, wait_ready  # noqa: E402

CHECK = os.path.join(HERE, "js_client_check.js")
DEMO_CONFIG = os.path.join(harness.SOURCE_DIR, "config", "demo.json")
SECRET_ENV = "WSGATE_TEST_JWT_SECRET"
SECRET = "js-client-test-secret-0123456789abcdef"

ME = {"name": "me", "path": "/me", "type": "mqtt", "broker": "local", "format": "envelope",
      "auth": "jwt",
      "publish": {"allow": ["users/{jwt.sub}/+"], "qos": 1},
      "subscribe": {"allow": ["users/{jwt.sub}/#"]}}


class JsClientTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        rc.require_programs(rc.CHROMIUM, rc.MOSQUITTO, "mosquitto_pub")
        rc.require_npm_packages("playwright-core")
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self.mosq = Mosquitto(self.h)
        self.port = harness.free_port()
        self.client_id = unique_id("wsgate-jsclient")
        with open(DEMO_CONFIG) as f:
            cfg = json.load(f)
        cfg["listen"] = [{"host": HOST, "port": self.port}]
        cfg["static"]["dir"] = os.path.join(harness.SOURCE_DIR, "www")
        cfg["brokers"]["local"].update(uri=self.mosq.uri, client_id=self.client_id)
        cfg["routes"] = [r for r in cfg["routes"] if r.get("type") == "mqtt"] + [ME]
        # leeway 0: "past exp" in the token scenario is past the deadline of a
        # gateway that closes expired connections (4401).
        cfg["auth"] = {"jwt": {"secret_env": SECRET_ENV, "leeway_s": 0}}
        self.config = cfg
        self.tokens = []
        self.gw = self.start_gateway()

    def start_gateway(self):
        gw = self.h.start_gateway(self.config, env={SECRET_ENV: SECRET})
        wait_ready(self.port, 200, timeout=15.0)
        return gw

    # -- what js_client_check.js asks for ------------------------------------

    def on_ask(self, req):
        what = req["ask"]
        t0 = time.monotonic()
        if what == "stop_broker":
            self.subscribes_before = self.mosq.filter_count("SUBSCRIBE", self.client_id, "demo/#")
            self.mosq.stop()
            wait_ready(self.port, 503, timeout=10.0)
        elif what == "start_broker":
            self.mosq.restart()
            wait_ready(self.port, 200, timeout=15.0)
            # The gateway subscribes again by itself; wait for the broker's SUBACK
            # so that the next message cannot race it.
            self.mosq.wait_filter("SUBSCRIBE", self.client_id, "demo/#",
                                  count=self.subscribes_before + 1, timeout=10.0)
        elif what == "stop_gateway":
            self.assertEqual(self.gw.stop(), 0)
        elif what == "start_gateway":
            self.gw = self.start_gateway()
        elif what == "token":
            tok = jwt_mint.token(jwt_mint.claims(sub="alice", ttl=int(req["ttl"])), secret=SECRET)
            self.tokens.append(tok)
            return {"token": tok}
        else:
            raise AssertionError("js_client_check.js asked for %r" % what)
        return {"s": round(time.monotonic() - t0, 2)}

    def drive(self, scenario, timeout=100, **extra):
        opts = dict({"origin": "http://%s:%d" % (HOST, self.port), "scenario": scenario,
                     "mqtt_port": self.mosq.port}, **extra)
        err_path = self.h.path("js_client_check.stderr")
        with open(err_path, "wb") as errf:
            proc = harness.popen(["node", CHECK, json.dumps(opts)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=errf, cwd=HERE,
                                 start_new_session=True)
        res, asks = None, []
        deadline = time.monotonic() + timeout
        buf = b""
        try:
            while res is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("js_client_check.js did not finish within %ss" % timeout)
                ready, _, _ = select.select([proc.stdout], [], [], left)
                if not ready:
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if "ask" in msg:
                        asks.append(msg["ask"])
                        try:
                            reply = self.on_ask(msg)
                        except AssertionError as e:
                            reply = {"error": str(e)[:2000]}
                        reply["n"] = msg["n"]
                        proc.stdin.write((json.dumps(reply) + "\n").encode())
                        proc.stdin.flush()
                    else:
                        res = msg
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # Chromium goes with the group
            except (ProcessLookupError, PermissionError):
                pass
            harness.stop_process(proc)
            proc.stdin.close()
            proc.stdout.close()
        with open(err_path, errors="replace") as f:
            err = f.read()
        print("js_client_check.js %s: exit %s; asks %s; steps %s"
              % (scenario, proc.returncode, asks, json.dumps((res or {}).get("steps"))), flush=True)
        self.assertIsNotNone(res, "no result line from js_client_check.js\nstderr:\n%s" % err[-6000:])
        self.assertTrue(res.get("ok"), "js_client_check.js failed: %s\nstderr:\n%s"
                        % (json.dumps(res, indent=1), err[-6000:]))
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(res.get("page_errors"), [])
        return res

    # -- the scenarios ---------------------------------------------------------

    def test_acks_errors_and_broker_restart(self):
        res = self.drive("basics")
        print("subscribe acked in %d ms, publish in %d ms; publish made during the broker "
              "outage acked %d ms after it was made"
              % (res["subscribe"]["ms"], res["publish"]["ms"], res["outage_publish"]["ms"]), flush=True)

    def test_gateway_restart(self):
        res = self.drive("gateway_restart")
        delays = [r["delay"] for r in res["reconnecting"]]
        print("close %s; reconnect delays %s ms; open %d ms after the new gateway answered"
              % (res["close"]["d"], delays, res["reconnect_ms"]), flush=True)
        # Backoff: the delays grow (jitter 20 %, doubling) and stay under the cap.
        self.assertTrue(all(d <= 1600 * 1.2 for d in delays), delays)
        self.assertGreater(max(delays), delays[0], delays)
        # The client's next attempt comes within the largest delay (+ margin).
        self.assertLess(res["reconnect_ms"], 1600 * 1.2 + 3000)

    def test_token_refresh(self):
        res = self.drive("token")
        print("refresh %s; token() called %d times; /me connections %d"
              % (res["refresh"], res["token_calls"], len(res["me_websockets"])), flush=True)
        if res["refresh"]["ok"]:
            # A gateway that knows {"refresh"} (SPEC-2 A) moved the deadline: no reconnect.
            self.assertEqual(len(res["me_websockets"]), 1, res["me_events"])
        else:
            # One that does not answers an error: one reconnect with the new token.
            self.assertEqual(len(res["me_websockets"]), 2, res["me_events"])
        log = "".join(text for _, text in self.h.logs())
        for tok in self.tokens:
            self.assertNotIn(tok.split(".")[2], log, "a token's signature in a log")

    def test_demo_page_across_a_gateway_restart(self):
        res = self.drive("demo_page")
        print("badge while down: %s; after: %s" % (res["badge_down"], res["after_restart_row"]), flush=True)

    def test_readme_snippet(self):
        """The README's five lines, as written there, against the demo config."""
        with open(os.path.join(harness.SOURCE_DIR, "README.md")) as f:
            readme = f.read()
        blocks = re.findall(r"```js\n(.*?)```", readme, re.S)
        snippet = [b for b in blocks if 'new WsgateClient("ws://127.0.0.1:8080/bus"' in b]
        self.assertEqual(len(snippet), 1, "the README's client example is gone")
        lines = snippet[0].strip().splitlines()
        self.assertEqual(len(lines), 5, lines)
        code = snippet[0].replace("127.0.0.1:8080", "%s:%d" % (HOST, self.port))
        res = self.drive("readme", snippet=code)
        self.assertEqual(res["readme_console"], "log: demo/room1/in {t: 21}")


if __name__ == "__main__":
    harness.main()

"""test_demo_page.py - the demo page (www/) in headless Chromium, served by wsgate.

Starts, on free 127.0.0.1 ports: wsgate-echo, a real mosquitto, and wsgate with
the demo's own config (config/demo.json, with the ports rewritten, the static
dir made absolute, a second listener with TLS and a self-signed certificate
made here with openssl, and one extra route whose backend is down). Then
tests/browser/demo_check.js drives the page with npm playwright-core in
Debian's Chromium:

- over ws:// (page over http) and wss:// (page over https; Chromium trusts the
  test's certificate with --ignore-certificate-errors, only here): the page
  loads, lists the routes, echoes text and binary, shows the messages with
  direction and size, counts them in the metrics view, and explains close
  codes (1000 on Disconnect, 1011 for a backend that is down, 1006 for a
  refused handshake);
- the MQTT envelope panel on /bus: subscribe (ack), a message published with
  mosquitto_pub arrives, a retained publish from the page is read back with
  mosquitto_sub, a subscription and a publish outside the allow lists show
  not_allowed errors, unsubscribe stops delivery.

Screenshots go to tests/artifacts/ (demo.png is the MQTT run, with both
routes busy). With WSGATE_UPDATE_SCREENSHOT=1 that screenshot is also copied
to docs/images/demo.png, the README's picture (not on every run: it would
change the tracked file each time).

Skips when Chromium, mosquitto, openssl, node or playwright-core are missing;
with CI=true that is a failure instead. Needs WSGATE_BIN / WSGATE_ECHO_BIN
(set by ctest) and Debian's /usr/bin/python3.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ left in tests/integration by this import
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
import test_real_clients as rc  # noqa: E402  (its helpers; its test classes are not collected here)
from harness import HOST, GatewayTestCase  # noqa: E402

SOURCE_DIR = harness.SOURCE_DIR
WWW_DIR = os.path.join(SOURCE_DIR, "www")
DEMO_CONFIG = os.path.join(SOURCE_DIR, "config", "demo.json")
DEMO_CHECK = os.path.join(HERE, "demo_check.js")
ARTIFACTS_DIR = os.path.join(SOURCE_DIR, "tests", "artifacts")
DOCS_SCREENSHOT = os.path.join(SOURCE_DIR, "docs", "images", "demo.png")


def make_self_signed_cert(h):
    """A throwaway EC key and certificate for 127.0.0.1 (CN and SAN)."""
    key = h.path("tls-key.pem")
    cert = h.path("tls-cert.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError("openssl could not make a certificate:\n%s" % r.stderr)
    return cert, key


def demo_config(http_port, https_port, cert, key, echo_port, mqtt_port, dead_port):
    """config/demo.json made to run here: same routes, these ports."""
    with open(DEMO_CONFIG) as f:
        cfg = json.load(f)
    cfg["listen"] = [{"host": HOST, "port": http_port},
                     {"host": HOST, "port": https_port, "tls": {"cert": cert, "key": key}}]
    cfg["static"]["dir"] = WWW_DIR
    for b in cfg.get("brokers", {}).values():
        b["uri"] = "tcp://%s:%d" % (HOST, mqtt_port)
    for r in cfg["routes"]:
        if r.get("type") == "tcp":
            r["target"] = {"host": HOST, "port": echo_port}
    cfg["routes"].append({"name": "dead", "path": "/dead", "type": "tcp",
                          "target": {"host": HOST, "port": dead_port}})
    return cfg


class DemoPageTest(GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        rc.require_programs(rc.CHROMIUM, rc.MOSQUITTO, "mosquitto_pub", "mosquitto_sub", "openssl")
        rc.require_npm_packages("playwright-core")
        super().setUpClass()
        _, echo_port = cls.ch.start_echo()
        cls.mqtt_port = rc.start_mosquitto(cls.ch)
        cert, key = make_self_signed_cert(cls.ch)
        cls.http_port = harness.free_port()
        cls.https_port = harness.free_port()
        cls.config = demo_config(cls.http_port, cls.https_port, cert, key, echo_port, cls.mqtt_port,
                                 harness.refused_port())
        cls.gw = cls.ch.start_gateway(cls.config)
        os.makedirs(ARTIFACTS_DIR, exist_ok=True)

    def drive(self, scenario, page, shot_name, timeout=55, **extra):
        shot = os.path.join(ARTIFACTS_DIR, shot_name)
        if os.path.exists(shot):
            os.unlink(shot)
        opts = dict(page=page, scenario=scenario, shot=shot, **extra)
        rc_, res, out, err, dt = rc.run_node(DEMO_CHECK, [json.dumps(opts)], timeout=timeout,
                                             env={"WSGATE_CHROMIUM_PROFILE": self.h.path("profile")})
        print("demo_check.js %s %s: exit %s in %.2f s; %s"
              % (scenario, page, rc_, dt, [s["step"] for s in (res or {}).get("steps", [])]), flush=True)
        self.assertIsNotNone(res, "no JSON line from demo_check.js\nstdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertEqual(rc_, 0, "demo_check.js failed: %s\nstderr:\n%s"
                         % (json.dumps(res, indent=1), err[-6000:]))
        self.assertTrue(res.get("ok"), res)
        self.assertEqual(res.get("page_errors"), [], res.get("page_errors"))
        self.assertEqual(res.get("failed_requests"), [], res.get("failed_requests"))
        self.assertTrue(os.path.getsize(shot) > 10000, "no screenshot at %s" % shot)
        return res

    def metrics(self):
        return harness.parse_prometheus(harness.http_get(self.http_port, "/metrics").body.decode())

    # -- the page's routes list is the demo config's -------------------------

    def test_routes_json_matches_demo_config(self):
        with open(os.path.join(WWW_DIR, "routes.json")) as f:
            listed = json.load(f)["routes"]
        with open(DEMO_CONFIG) as f:
            configured = json.load(f)["routes"]
        keys = ("name", "path", "type", "format", "subprotocols", "publish", "subscribe")

        def view(r):
            v = {k: copy.deepcopy(r[k]) for k in keys if k in r}
            for k in ("publish", "subscribe"):
                if isinstance(v.get(k), dict):
                    v[k] = {kk: vv for kk, vv in v[k].items() if kk in ("allow", "qos")}
            return v
        self.assertEqual([view(r) for r in listed], [view(r) for r in configured],
                         "www/routes.json and config/demo.json list different routes")

    def test_page_served_with_its_assets(self):
        for path, ctype in (("/", "text/html"), ("/demo.js", "text/javascript"),
                            ("/demo.css", "text/css"), ("/wsgate-client.js", "text/javascript"),
                            ("/routes.json", "application/json"),
                            ("/favicon.svg", "image/svg+xml")):
            r = harness.http_get(self.http_port, path)
            self.assertEqual(r.status, 200, path)
            self.assertTrue((r.header("content-type") or "").startswith(ctype), (path, r.headers))

    # -- echo over ws:// and wss:// -------------------------------------------

    def check_echo(self, res, scheme, port):
        self.assertEqual(res["ws_url"], "%s://%s:%d/echo" % (scheme, HOST, port))
        self.assertIn("%s://%s:%d/echo" % (scheme, HOST, port), res["websockets"])
        self.assertEqual(res["text_echo"]["size"], str(len("hello from Chromium ✓".encode())))
        self.assertEqual(res["binary_echo"]["size"], "6")
        self.assertEqual(res["close"]["code"], "1000")
        self.assertEqual(res["dead_close"]["code"], "1011")
        self.assertEqual(res["refused_close"]["code"], "1006")
        self.assertGreaterEqual(res["legend_echo"]["total"], 4)

    def test_echo_over_ws(self):
        before = harness.metric(self.metrics(), "wsgate_connections_total", route="echo") or 0
        res = self.drive("echo", "http://%s:%d/" % (HOST, self.http_port), "demo-echo-ws.png",
                         dead_path="/dead")
        self.check_echo(res, "ws", self.http_port)
        after = harness.metric(self.metrics(), "wsgate_connections_total", route="echo")
        self.assertEqual(after, before + 1, "the page's connection went through the gateway's echo route")

    def test_echo_over_wss(self):
        r = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (HOST, self.https_port),
                            "-servername", HOST], input=b"", capture_output=True, timeout=15)
        self.assertIn(b"CN = 127.0.0.1", r.stdout, "the TLS listener does not present the test's "
                      "certificate:\n%s\n%s" % (r.stdout.decode(errors="replace")[-3000:],
                                                r.stderr.decode(errors="replace")[-3000:]))
        res = self.drive("echo", "https://%s:%d/" % (HOST, self.https_port), "demo-echo-wss.png",
                         dead_path="/dead", ignore_cert=True)
        self.check_echo(res, "wss", self.https_port)

    # -- the MQTT envelope panel ----------------------------------------------

    def test_mqtt_envelope_panel(self):
        update = os.environ.get("WSGATE_UPDATE_SCREENSHOT") == "1"
        extra = {"showcase_s": 20} if update else {}
        res = self.drive("mqtt", "http://%s:%d/" % (HOST, self.http_port), "demo.png",
                         mqtt_port=self.mqtt_port, timeout=85 if update else 55, **extra)
        self.assertEqual(res["subscribe_error"]["errorCode"], "not_allowed")
        self.assertEqual(res["publish_error"]["errorCode"], "not_allowed")
        self.assertEqual(res["received"]["topic"], "demo/sensor-1/out")
        if update:
            os.makedirs(os.path.dirname(DOCS_SCREENSHOT), exist_ok=True)
            shutil.copy(os.path.join(ARTIFACTS_DIR, "demo.png"), DOCS_SCREENSHOT)
            print("copied the screenshot to %s" % DOCS_SCREENSHOT, flush=True)


if __name__ == "__main__":
    harness.main()

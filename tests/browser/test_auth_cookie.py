"""test_auth_cookie.py - a site's cookie login in front of wsgate, in headless
Chromium (issue 16, SPEC-2 A): the browser sends the cookie by itself with the
WebSocket handshake, as no page script can set a header on a WebSocket.

Starts, on free 127.0.0.1 ports: wsgate-echo, the auth service of
tests/integration/test_auth_http.py (asyncio, decides by the "sid" cookie) and
wsgate serving the demo page, with /echo-http ("auth": "http", cookie
forwarded) and /echo-jwt ("auth": "jwt" with auth.jwt.cookie "jwt").
tests/browser/auth_cookie_check.js sets the cookies on the gateway's origin in
a fresh Chromium context per case, loads the page and opens a WebSocket:

- a cookie the service allows: open, echo; the service saw the cookie the
  browser sent and the page's origin;
- a cookie the service refuses with 401: the page sees close 4401 and the
  reason;
- a JWT in the cookie named by auth.jwt.cookie: open, echo; without it the
  handshake is refused (the page sees 1006).

Skips (CI=true: fails) without Chromium, node or playwright-core.
"""

import json
import os
import secrets
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
import jwt_mint  # noqa: E402
import test_real_clients as rc  # noqa: E402
from harness import HOST, GatewayTestCase  # noqa: E402
from test_auth_http import AuthService  # noqa: E402

CHECK = os.path.join(HERE, "auth_cookie_check.js")
SECRET = "browser-secret-" + secrets.token_hex(16)


class AuthCookieTest(GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        rc.require_programs(rc.CHROMIUM)
        rc.require_npm_packages("playwright-core")
        super().setUpClass()
        cls.svc = AuthService()
        cls.addClassCleanup(cls.svc.close)
        _, echo_port = cls.ch.start_echo()
        cls.port = harness.free_port()
        target = {"host": HOST, "port": echo_port}
        cls.gw = cls.ch.start_gateway({
            "listen": [{"host": HOST, "port": cls.port}],
            "static": {"mount": "/", "dir": os.path.join(harness.SOURCE_DIR, "www")},
            "auth": {"jwt": {"secret_env": "WSGATE_TEST_BROWSER_SECRET", "cookie": "jwt"},
                     "http": {"url": "http://%s:%d/ws-auth" % (HOST, cls.svc.port),
                              "headers": ["cookie"]}},
            "routes": [
                {"name": "echo-http", "path": "/echo-http", "type": "tcp", "auth": "http",
                 "message": "text", "target": target},
                {"name": "echo-jwt", "path": "/echo-jwt", "type": "tcp", "auth": "jwt",
                 "message": "text", "target": target},
            ]}, env={"WSGATE_TEST_BROWSER_SECRET": SECRET})

    def test_cookie_reaches_the_auth_service_and_the_jwt_check(self):
        allowed, denied = "alice-" + secrets.token_hex(6), "denied-" + secrets.token_hex(6)
        tok = jwt_mint.token({"sub": "carol", "exp": int(time.time()) + 600}, secret=SECRET)
        page = "http://%s:%d/" % (HOST, self.port)
        cases = [
            {"name": "allowed", "cookies": [{"name": "sid", "value": allowed}],
             "path": "/echo-http", "send": "hello from a logged-in page"},
            {"name": "denied", "cookies": [{"name": "sid", "value": denied}],
             "path": "/echo-http", "send": "never relayed"},
            {"name": "jwt", "cookies": [{"name": "jwt", "value": tok}], "path": "/echo-jwt",
             "send": "hello with a JWT cookie"},
            {"name": "no_jwt", "cookies": [{"name": "other", "value": "x"}],
             "path": "/echo-jwt", "send": "x"},
        ]
        code, res, out, err, dt = rc.run_node(CHECK, [json.dumps({"page": page, "cases": cases})],
                                              timeout=90,
                                              env={"WSGATE_CHROMIUM_PROFILE": self.h.path("p")})
        print("auth_cookie_check.js: exit %s in %.2f s: %s" % (code, dt, res), flush=True)
        self.assertIsNotNone(res, "no JSON line\nstdout:\n%s\nstderr:\n%s" % (out, err[-4000:]))
        self.assertTrue(res.get("ok"), res)
        r = res["results"]
        self.assertTrue(r["allowed"]["opened"], r["allowed"])
        self.assertEqual(r["allowed"]["echo"], "hello from a logged-in page")
        self.assertEqual(r["denied"]["close_code"], 4401, r["denied"])
        self.assertIn("not authenticated", r["denied"]["close_reason"])
        self.assertIsNone(r["denied"]["echo"])
        self.assertTrue(r["jwt"]["opened"], r["jwt"])
        self.assertEqual(r["jwt"]["echo"], "hello with a JWT cookie")
        self.assertFalse(r["no_jwt"]["opened"], r["no_jwt"])
        self.assertEqual(r["no_jwt"]["close_code"], 1006)
        # what the service saw: the cookie Chromium sent by itself, the page's origin
        _, body, _, _ = self.svc.last(allowed)
        self.assertEqual(body["headers"], {"cookie": "sid=" + allowed})
        self.assertEqual(body["origin"], "http://%s:%d" % (HOST, self.port))
        self.assertEqual(self.svc.count(denied), 1)
        log = self.gw.log()
        for secret in (allowed, denied, tok.split(".")[2]):
            self.assertNotIn(secret, log)


if __name__ == "__main__":
    harness.main()

"""test_compression_browser.py - headless Chromium (npm playwright-core) against
a route with "compression": true and one without, through wsgate.

Chromium offers permessage-deflate on every WebSocket: the compressed route
must negotiate it (ws.extensions == "permessage-deflate"), the other must not
(""); 100 JSON messages sent by the page come back intact on both (lines
framing, text messages, an echo backend), and the compressed route's
messages to the browser take several times fewer bytes (the access log's
bytes_out counts what went on the wire). Skips like test_demo_page.py when
Chromium, node or playwright-core are missing (a failure under CI=true)."""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
import peers  # noqa: E402
import test_real_clients as rc  # noqa: E402
from harness import HOST, GatewayTestCase  # noqa: E402

CHECK = os.path.join(HERE, "deflate_check.js")


class CompressionBrowserTest(GatewayTestCase):
    def test_chromium_negotiates_only_where_configured(self):
        rc.require_programs(rc.CHROMIUM)
        rc.require_npm_packages("playwright-core")
        echo = peers.add(self.h, peers.BannerEchoBackend())
        port = harness.free_port()
        route = {"type": "tcp", "framing": "lines", "message": "text",
                 "target": {"host": HOST, "port": echo.port}}
        gw = self.h.start_gateway({"listen": self.listen(port),
                                   "routes": [dict(route, path="/z", compression=True),
                                              dict(route, path="/plain")]})
        opts = {"compressed": gw.url("/z"), "plain": gw.url("/plain"), "count": 100}
        code, res, out, err, took = rc.run_node(CHECK, [json.dumps(opts)], timeout=60,
                                                env={"WSGATE_CHROMIUM_PROFILE": self.h.path("p")})
        self.assertEqual(code, 0, "deflate_check.js: %s\n%s" % (out, err[-4000:]))
        self.assertTrue(res and res["ok"], res)
        self.assertEqual(res["compressed"]["extensions"], "permessage-deflate")
        self.assertEqual(res["plain"]["extensions"], "")
        for side in ("compressed", "plain"):
            self.assertTrue(res[side]["same"], res)
            self.assertEqual(res[side]["code"], 1000)
        self.assertTrue(peers.wait_until(lambda: gw.log().count("connection closed") >= 2, 5))
        out_bytes = {m.group(1): int(m.group(2)) for m in re.finditer(
            r'connection closed" route=(\S+) .*?bytes_out=(\d+)', gw.log())}
        print("Chromium, 100 JSON messages to the browser: %d bytes compressed, %d plain"
              % (out_bytes["/z"], out_bytes["/plain"]))
        self.assertLess(out_bytes["/z"] * 3, out_bytes["/plain"])


if __name__ == "__main__":
    harness.main()

"""test_wsbench_deflate.py - bench/wsbench's JSON stream and permessage-deflate
(the json-100c benchmark scenario) against the real wsgate and wsgate-echo.

wsbench checks every echoed byte itself; these tests check that it negotiates
deflate only where wsgate offers it, that the compressed stream is really
smaller on the wire, and that an uncompressed one is not. Environment (set by
ctest): WSGATE_BIN, WSGATE_ECHO_BIN, WSBENCH_BIN.
"""
import json
import os
import subprocess

from harness import GatewayTestCase, HOST, free_port, main

WSBENCH = os.environ.get("WSBENCH_BIN", "")
CONNS, MESSAGES = 5, 2000


class WsbenchDeflate(GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        _, echo_port = cls.ch.start_echo()
        cls.port = free_port()
        target = {"host": HOST, "port": echo_port}
        cls.ch.start_gateway(
            {"listen": [{"host": HOST, "port": cls.port}],
             "limits": {"max_message_bytes": 1048576},
             "routes": [{"name": "plain", "path": "/plain", "type": "tcp",
                         "subprotocols": ["binary"], "target": target},
                        {"name": "z", "path": "/z", "type": "tcp", "compression": True,
                         "subprotocols": ["binary"], "target": target}]},
            args=["--log-level", "warn"])

    def setUp(self):
        super().setUp()
        if not WSBENCH or not os.path.exists(WSBENCH):
            self.skipTest("WSBENCH_BIN not built")

    def wsbench(self, path, *extra):
        out = subprocess.run(
            [WSBENCH, "--mode", "ws", "--port", str(self.port), "--path", path,
             "--subprotocol", "binary", "--conns", str(CONNS), "--inflight", "4",
             "--messages", str(MESSAGES), "--warmup", "0", "--duration", "60"] + list(extra),
            capture_output=True, text=True, timeout=120)
        return json.loads(out.stdout), out.stderr

    def test_json_stream_compressed(self):
        r, err = self.wsbench("/z", "--payload", "json", "--size", "200", "--deflate")
        self.assertEqual(r["errors"], 0, err)
        self.assertTrue(r["deflate"])
        self.assertGreater(r["msgs"], MESSAGES // 2)
        # ~6x here; 3x leaves room for any zlib, and a broken deflate would be ~1x
        self.assertLess(r["wire_tx_bytes"] * 3, r["payload_tx_bytes"], r)
        self.assertLess(r["wire_rx_bytes"] * 3, r["bytes"], r)

    def test_json_stream_plain(self):
        r, err = self.wsbench("/plain", "--payload", "json", "--size", "200")
        self.assertEqual(r["errors"], 0, err)
        self.assertEqual(r["payload"], "json")
        # 8 bytes of framing per 200-byte message out; the echo may come in bigger frames
        self.assertEqual(r["wire_tx_bytes"], r["payload_tx_bytes"] // 200 * 208, r)
        self.assertGreaterEqual(r["wire_rx_bytes"], r["bytes"])

    def test_deflate_required(self):
        # a route without "compression" does not accept the offer: wsbench says so
        r, err = self.wsbench("/plain", "--payload", "json", "--size", "200", "--deflate")
        self.assertEqual(r["error_kinds"]["handshake"], CONNS, err)
        self.assertIn("did not accept permessage-deflate", err)

    def test_large_messages_compressed(self):
        # messages of several frames' worth each way, the binary pattern
        r, err = self.wsbench("/z", "--size", "70000", "--deflate")
        self.assertEqual(r["errors"], 0, err)
        self.assertEqual(r["bytes"] % 70000, 0)
        self.assertLess(r["wire_tx_bytes"] * 3, r["payload_tx_bytes"], r)


if __name__ == "__main__":
    main()

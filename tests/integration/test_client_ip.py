"""test_client_ip.py - trusted_proxies (SPEC.md): the client address in the
access log comes from X-Forwarded-For / X-Real-IP only when the TCP peer is a
trusted proxy; from anyone else those headers are ignored."""

import re
import time
import unittest

import harness
from harness import HOST, OP_BINARY


class ClientIpTest(harness.GatewayTestCase):
    def access_lines(self, gw, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            lines = [l for l in gw.log().splitlines() if 'msg="connection closed"' in l]
            if len(lines) >= n or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def run_clients(self, trusted):
        _, echo_port = self.h.start_echo()
        port = harness.free_port()
        cfg = {"listen": [{"host": HOST, "port": port}],
               "routes": [{"name": "echo", "path": "/echo", "type": "tcp",
                           "target": {"host": HOST, "port": echo_port}}]}
        if trusted is not None:
            cfg["trusted_proxies"] = trusted
        gw = self.h.start_gateway(cfg)
        for headers in ({"X-Forwarded-For": "6.6.6.6, 198.51.100.7"},
                        {"X-Real-IP": "198.51.100.9"},
                        {}):
            ws = harness.RawWebSocket(harness.raw_upgrade(port, "/echo", extra_headers=headers))
            ws.send(OP_BINARY, b"x")
            ws.recv_frame(5)
            ws.close()
        return [re.search(r" client=(\S+)", l).group(1) for l in self.access_lines(gw, 3)]

    def test_trusted_proxy_headers_used(self):
        self.assertEqual(sorted(self.run_clients(["127.0.0.0/8"])),
                         sorted(["198.51.100.7", "198.51.100.9", "127.0.0.1"]))

    def test_untrusted_peer_headers_ignored(self):
        self.assertEqual(self.run_clients(["10.0.0.0/8"]), ["127.0.0.1"] * 3)
        self.assertEqual(self.run_clients(None), ["127.0.0.1"] * 3)


if __name__ == "__main__":
    unittest.main()

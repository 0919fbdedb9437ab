"""max_connections: past the limit a handshake is refused with HTTP/1.1 503
and counted; the connections already open keep working, and a slot freed by a
client that leaves is usable again."""
import asyncio
import unittest

import websockets

import harness
from harness import HOST, GatewayTestCase, run_async


class MaxConnectionsTest(GatewayTestCase):
    def test_over_limit_is_503_and_others_unaffected(self):
        _, echo = self.h.start_echo()
        port = harness.free_port()
        self.h.start_gateway({
            "listen": [{"host": HOST, "port": port}],
            "limits": {"max_connections": 2},
            "routes": [{"name": "echo", "path": "/echo", "type": "tcp",
                        "target": {"host": HOST, "port": echo}}]})
        url = "ws://%s:%d/echo" % (HOST, port)

        async def go():
            a = await websockets.connect(url)
            b = await websockets.connect(url)
            refused = harness.raw_upgrade(port, "/echo")
            status_line = refused.status_line
            body = refused.body.decode("utf-8", "replace")
            if refused.sock is not None:
                refused.sock.close()
            for ws, data in ((a, b"first"), (b, b"second")):
                await ws.send(data)
                got = b""
                while len(got) < len(data):
                    got += await asyncio.wait_for(ws.recv(), 5)
                self.assertEqual(got, data)
            await a.close()
            # The freed slot is usable again (the session is gone once lws
            # has freed the connection: allow it a moment).
            for _ in range(50):
                r = harness.raw_upgrade(port, "/echo")
                if r.sock is not None:
                    r.sock.close()
                if r.status_line.startswith("HTTP/1.1 101"):
                    break
                await asyncio.sleep(0.05)
            else:
                self.fail("no slot after a client left: %r" % r.status_line)
            await b.close()
            return status_line, body

        status_line, body = run_async(go(), 30)
        self.assertTrue(status_line.startswith("HTTP/1.1 503"), status_line)
        self.assertIn("too many connections", body)
        samples = harness.parse_prometheus(harness.http_get(port, "/metrics").body.decode())
        self.assertGreaterEqual(
            harness.metric(samples, "wsgate_handshakes_refused_total", status="503") or 0, 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""test_targets.py - a tcp route with several "targets".

Connection i starts at target i mod n (round-robin per new connection); on a
failed connect the next targets are tried in order (wrapping), and the
client gets 1011 only if all fail. A target that refused is marked down and
skipped by later connections until it is retried: after 1 s, then 2, 4, ...
up to 30 s; while every target is down all are tried anyway.
connect_timeout_ms applies per attempt: a target whose TCP handshake never
completes (a blackhole) is abandoned after it and the next one tried.
wsgate_backend_errors_total{route,reason} counts connect_failed and
connect_timeout apart.

Each backend greets a connection with a one-letter banner, so the first
message a client receives says which target it reached."""

import time

import harness
import peers
from harness import HOST, OP_BINARY, OP_CLOSE, GatewayTestCase, RawWebSocket, close_payload, \
    raw_upgrade

ROUTE = "multi"


def target(port):
    return {"host": HOST, "port": port}


class TargetsCase(GatewayTestCase):
    def gateway(self, ports, **limits):
        cfg = {"listen": [{"host": HOST, "port": harness.free_port()}],
               "routes": [{"name": ROUTE, "path": "/m", "type": "tcp",
                           "targets": [target(p) for p in ports]}]}
        if limits:
            cfg["limits"] = limits
        return self.h.start_gateway(cfg)

    def banner_backend(self, letter, port=0):
        return peers.add(self.h, peers.BannerEchoBackend(letter.encode(), port=port))

    def reached(self, gw, timeout=5.0):
        """Opens one connection: the letter of the target it reached, or
        ("closed", code, reason) if the gateway closed it first."""
        resp = raw_upgrade(gw.port, "/m")
        self.assertEqual(resp.status, 101, resp.status_line)
        ws = RawWebSocket(resp)
        try:
            msgs, close = peers.read_messages(ws, until=lambda m: len(m) >= 1, timeout=timeout)
            if close is not None:
                return ("closed", close[0], close[1].decode("utf-8", "replace"))
            op, payload = msgs[0]
            self.assertEqual(op, OP_BINARY)
            try:
                ws.send(OP_CLOSE, close_payload(1000))
            except OSError:
                pass
            return payload.decode()
        finally:
            ws.close()

    def errors(self, gw):
        return peers.backend_errors(gw.port, ROUTE)


class TargetsTest(TargetsCase):
    def test_round_robin_per_connection(self):
        ports = [self.banner_backend(c).port for c in "ABC"]
        gw = self.gateway(ports)
        got = [self.reached(gw) for _ in range(7)]
        self.assertEqual(got, list("ABCABCA"))
        self.assertEqual(self.errors(gw), {"connect_failed": 0, "connect_timeout": 0, "reset": 0})

    def test_failover_tries_the_next_targets_in_order_and_wraps(self):
        a, b = self.banner_backend("A"), self.banner_backend("B")
        gw = self.gateway([a.port, b.port, harness.refused_port()])
        # 0: A; 1: B; 2: X refused -> wraps to A; 3: A; 4: B; 5: X is down -> A.
        got = [self.reached(gw) for _ in range(6)]
        self.assertEqual(got, list("ABAABA"))
        self.assertEqual(self.errors(gw)["connect_failed"], 1,
                         "the refused target should have been tried once and then skipped")

    def test_refused_target_skipped_until_retried_after_1s(self):
        x_port = harness.refused_port()
        b, c = self.banner_backend("B"), self.banner_backend("C")
        gw = self.gateway([x_port, b.port, c.port])
        got = [self.reached(gw)]  # 0: X refused -> B
        t_fail = time.monotonic()
        self.assertEqual(self.errors(gw)["connect_failed"], 1)
        # X comes back at once, but is marked down for 1 s: connection 3
        # (which starts at X) must skip it.
        self.banner_backend("X", port=x_port)
        got += [self.reached(gw) for _ in range(3)]
        elapsed = time.monotonic() - t_fail
        self.assertLess(elapsed, 0.9, "test too slow to see the 1 s window")
        self.assertEqual(got, list("BBCB"),
                         "a target that refused must be skipped for 1 s")
        time.sleep(max(0.0, t_fail + 1.3 - time.monotonic()))
        got += [self.reached(gw) for _ in range(3)]  # 4: B, 5: C, 6: X retried
        self.assertEqual(got, list("BBCBBCX"),
                         "a target that refused must be retried after 1 s")
        self.assertEqual(self.errors(gw)["connect_failed"], 1)

    def test_retry_delay_doubles(self):
        b = self.banner_backend("B")
        gw = self.gateway([harness.refused_port(), b.port])
        t0 = time.monotonic()
        fail_times = []
        last = 0
        while time.monotonic() - t0 < 4.6:
            got = self.reached(gw)
            self.assertEqual(got, "B")
            n = self.errors(gw)["connect_failed"]
            if n != last:
                self.assertEqual(n, last + 1, "several failures within one probe")
                fail_times.append(time.monotonic() - t0)
                last = n
            time.sleep(0.03)
        gaps = [round(b - a, 2) for a, b in zip(fail_times, fail_times[1:])]
        print("refused target tried at %s s (gaps %s)"
              % ([round(t, 2) for t in fail_times], gaps), flush=True)
        self.assertEqual(len(fail_times), 3,
                         "expected tries at about 0, 1 and 3 s in 4.6 s, got %s" % fail_times)
        self.assertTrue(0.95 <= gaps[0] <= 1.5, "first retry after %s s, expected 1 s" % gaps[0])
        self.assertTrue(1.95 <= gaps[1] <= 2.6, "second retry after %s s, expected 2 s" % gaps[1])

    def test_all_down_all_tried_anyway(self):
        x_port, y_port = harness.refused_port(), harness.refused_port()
        gw = self.gateway([x_port, y_port])
        r0 = self.reached(gw)
        self.assertEqual(r0[:2], ("closed", 1011))
        self.assertEqual(self.errors(gw)["connect_failed"], 2)
        r1 = self.reached(gw)
        self.assertEqual(r1[:2], ("closed", 1011))
        self.assertEqual(self.errors(gw)["connect_failed"], 4,
                         "with every target down, all must still be tried")
        self.banner_backend("Y", port=y_port)
        self.assertEqual(self.reached(gw), "Y",
                         "a target that recovered must be reached while all are marked down")
        self.assertEqual(self.errors(gw)["connect_failed"], 5)

    def test_all_refused_1011_names_route(self):
        gw = self.gateway([harness.refused_port() for _ in range(3)])
        t0 = time.monotonic()
        r = self.reached(gw)
        self.assertEqual(r[:2], ("closed", 1011), r)
        self.assertIn(ROUTE, r[2])
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(self.errors(gw), {"connect_failed": 3, "connect_timeout": 0, "reset": 0})


class ConnectTimeoutTest(TargetsCase):
    def blackhole(self):
        return peers.add(self.h, peers.Blackhole())

    def test_blackhole_abandoned_after_connect_timeout_next_tried(self):
        bh = self.blackhole()
        b = self.banner_backend("B")
        gw = self.gateway([bh.port, b.port], connect_timeout_ms=500)
        t0 = time.monotonic()
        got = self.reached(gw, timeout=10)
        dt = time.monotonic() - t0
        print("failover from a blackhole took %.2f s" % dt, flush=True)
        self.assertEqual(got, "B")
        self.assertGreaterEqual(dt, 0.45)
        self.assertLess(dt, 2.0, "connect_timeout_ms 500 was not applied to the attempt")
        self.assertEqual(self.errors(gw), {"connect_failed": 0, "connect_timeout": 1, "reset": 0})

    def test_timeout_is_per_attempt(self):
        bh1, bh2 = self.blackhole(), self.blackhole()
        gw = self.gateway([bh1.port, bh2.port], connect_timeout_ms=500)
        t0 = time.monotonic()
        r = self.reached(gw, timeout=10)
        dt = time.monotonic() - t0
        print("two blackholes gave up after %.2f s" % dt, flush=True)
        self.assertEqual(r[:2], ("closed", 1011), r)
        self.assertIn(ROUTE, r[2])
        self.assertGreaterEqual(dt, 0.9, "both targets should get 500 ms each")
        self.assertLess(dt, 3.0)
        self.assertEqual(self.errors(gw), {"connect_failed": 0, "connect_timeout": 2, "reset": 0})

    def test_refused_and_timeout_counted_apart(self):
        bh = self.blackhole()
        gw = self.gateway([harness.refused_port(), bh.port], connect_timeout_ms=400)
        r = self.reached(gw, timeout=10)
        self.assertEqual(r[:2], ("closed", 1011), r)
        self.assertEqual(self.errors(gw), {"connect_failed": 1, "connect_timeout": 1, "reset": 0})


if __name__ == "__main__":
    harness.main()

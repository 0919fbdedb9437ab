"""test_mqtt_slow.py - slow consumers must not hold up the others
(docs/MQTT.md, "Delivery guarantees and bounds", broker -> client): past its
max_queue_bytes a client that does not read loses messages (slow_consumer
"drop", the default, counted in wsgate_messages_dropped_total) or is closed
with 1008 ("close"), while a client that reads gets every message in order."""

import threading
import time
import unittest

import harness
from harness import OP_BINARY, OP_TEXT
from mqtt_peers import BulkPublisher, MqttTestCase, bulk_payload

SLOW_N = 2000
SLOW_SIZE = 4096
# Messages a second in the slow-consumer tests: 2 MB/s, which the sanitizer
# build drains to a reading client without drops (it does not at ~6 MB/s;
# test_fast_reader_alone_loses_nothing publishes unpaced).
SLOW_RATE = 500


def slow_payload(i):
    return bulk_payload(i, SLOW_SIZE)


class Reader(threading.Thread):
    """Reads messages from a WsClient in a thread until `n` arrived, the
    server closes, or stop() was called and nothing came for 2 s."""

    def __init__(self, client, n, timeout=60.0):
        super().__init__(daemon=True)
        self.client, self.n, self.timeout = client, n, timeout
        self.msgs = []
        self.error = None
        self.stopping = threading.Event()
        self.start()

    def run(self):
        deadline = time.monotonic() + self.timeout
        while len(self.msgs) < self.n and time.monotonic() < deadline:
            try:
                self.msgs.append(self.client.recv(0.5))
            except AssertionError as e:
                if "no message within" in str(e) and not self.stopping.is_set():
                    continue
                if "no message within" in str(e) and time.monotonic() < self.stop_deadline:
                    continue
                self.error = e
                return

    def stop(self, grace=3.0):
        self.stop_deadline = time.monotonic() + grace
        self.stopping.set()
        self.join(grace + 5)

    def check(self, test, what):
        """All SLOW_N messages arrived, in order, exact."""
        self.stop()
        test.assertFalse(self.is_alive(), "%s: the reader is still reading" % what)
        s = seqs(self.msgs)
        missing = sorted(set(range(SLOW_N)) - set(s))
        if self.error is not None or len(self.msgs) != SLOW_N:
            test.fail("%s: %d of %d messages (%d missing, first %r; last error: %s)"
                      % (what, len(self.msgs), SLOW_N, len(missing), missing[:10], self.error))
        for i, (op, payload) in enumerate(self.msgs):
            if (op, payload) != (OP_BINARY, slow_payload(i)):
                test.fail("%s: message %d is not #%d (opcode %d, starts %r)"
                          % (what, i, i, op, payload[:8]))


def seqs(msgs):
    return [int(p[:6]) for _, p in msgs]


class SlowConsumerTest(MqttTestCase):
    """One client never reads (a 4 KiB receive buffer, so the kernel absorbs
    little), one reads (a 1 MiB receive buffer, in a thread; the messages
    come from a child process so that nothing in this one holds it up)."""

    def start_slow(self, policy):
        route = {"name": "bulk", "path": "/bulk", "type": "mqtt", "broker": "main",
                 "subscribe": [{"filter": "bulk/#", "qos": 1}]}
        if policy is not None:
            route["slow_consumer"] = policy
        self.start_mqtt([route], limits={"max_queue_bytes": 65536})
        stalled = self.ws("/bulk", rcvbuf=4096)
        self.wait_gw_subscribed("bulk/#")
        reader_ws = self.ws("/bulk", rcvbuf=1 << 20)
        time.sleep(0.3)
        return stalled, reader_ws

    def bulk(self, start, n, rate=SLOW_RATE):
        return BulkPublisher(self.h, self.mosq.port, "bulk/data", start, n, SLOW_SIZE,
                             rate=rate)

    def test_fast_reader_alone_loses_nothing(self):
        # No slow client at all: a client that keeps up (a 1 MiB receive
        # buffer, read at once) must get everything, also when the broker
        # sends as fast as it can.
        route = {"name": "bulk", "path": "/bulk", "type": "mqtt", "broker": "main",
                 "slow_consumer": "drop", "subscribe": [{"filter": "bulk/#", "qos": 1}]}
        self.start_mqtt([route], limits={"max_queue_bytes": 65536})
        reader_ws = self.ws("/bulk", rcvbuf=1 << 20)
        self.wait_gw_subscribed("bulk/#")
        reader = Reader(reader_ws, SLOW_N)
        self.bulk(0, SLOW_N, rate=None).wait()
        reader.stop()
        dropped = self.metric("wsgate_messages_dropped_total", route="bulk",
                              reason="slow_consumer")
        self.assertIn(dropped, (None, 0), "messages dropped for the only client, which reads "
                      "as fast as it can (%d received)" % len(reader.msgs))
        reader.check(self, "the only client")
        reader_ws.close()

    def test_drop(self):
        stalled, reader_ws = self.start_slow("drop")
        reader = Reader(reader_ws, SLOW_N)
        self.bulk(0, SLOW_N).wait()
        reader.stop()
        self.assertEqual(harness.http_get(self.port, "/healthz").status, 200)
        dropped = self.metric("wsgate_messages_dropped_total", route="bulk",
                              reason="slow_consumer")
        self.assertIsNotNone(dropped, "no wsgate_messages_dropped_total{route=\"bulk\","
                             "reason=\"slow_consumer\"} series")
        self.assertGreater(dropped, 0, "nothing counted as dropped for the stalled client")
        # The stalled client now reads: what it gets is in order, without
        # duplicates, and with what was dropped makes up everything.
        got = []
        try:
            while True:
                got.append(stalled.recv(1.5))
        except AssertionError as e:
            if "no message within" not in str(e):
                raise
        s = seqs(got)
        self.assertEqual(s, sorted(set(s)), "the stalled client's messages out of order or "
                         "repeated")
        for op, p in got:
            self.assertEqual((op, p), (OP_BINARY, slow_payload(int(p[:6]))))
        self.assertLess(len(got), SLOW_N)
        # every message went to each client or was counted as dropped
        self.assertEqual(len(got) + len(reader.msgs) + dropped, 2 * SLOW_N,
                         "stalled client %d received, reading client %d received, %d counted "
                         "dropped" % (len(got), len(reader.msgs), dropped))
        # and it is still a live connection that gets new messages
        stalled.ping()
        pub = self.publisher()
        pub.publish("bulk/data", "after", qos=1)
        self.assertEqual(stalled.recv(), (OP_TEXT, b"after"))
        self.assertEqual(reader_ws.recv(), (OP_TEXT, b"after"))
        self.assertEqual(self.metric("wsgate_connections_active", route="bulk"), 2)
        # the reading client got everything, in order
        reader.check(self, "the reading client")
        stalled.close()
        reader_ws.close()

    def test_default_policy_is_drop(self):
        stalled, reader_ws = self.start_slow(None)
        reader = Reader(reader_ws, SLOW_N)
        self.bulk(0, SLOW_N).wait()
        reader.stop()
        dropped = self.metric("wsgate_messages_dropped_total", route="bulk",
                              reason="slow_consumer")
        self.assertTrue(dropped and dropped > 0, "dropped: %r" % dropped)
        self.assertEqual(self.metric("wsgate_connections_active", route="bulk"), 2,
                         "the stalled client was closed although the policy is drop")
        reader.check(self, "the reading client")
        stalled.abort()
        reader_ws.close()

    def test_close(self):
        stalled, reader_ws = self.start_slow("close")
        reader = Reader(reader_ws, SLOW_N)
        resume = 600
        self.bulk(0, resume).wait()
        # The stalled client resumes reading: a gap-free prefix, then 1008.
        closer = {}

        def drain():
            try:
                closer["result"] = stalled.read_until_close(15)
            except AssertionError as e:
                closer["error"] = e
        t = threading.Thread(target=drain, daemon=True)
        t.start()
        self.bulk(resume, SLOW_N - resume).wait()
        t.join(20)
        reader.stop()
        self.assertNotIn("error", closer, "the stalled client: %s" % closer.get("error"))
        self.assertIn("result", closer, "the stalled client: no close within 20 s")
        msgs, (code, reason) = closer["result"]
        self.assertEqual(code, 1008, "close reason %r" % reason)
        s = seqs(msgs)
        self.assertEqual(s, list(range(len(s))), "the stalled client's messages before its close")
        self.assertLess(len(s), SLOW_N)
        self.assertEqual(harness.http_get(self.port, "/healthz").status, 200)
        reader.check(self, "the reading client")
        deadline = time.monotonic() + 5
        while self.metric("wsgate_connections_active", route="bulk") != 1:
            self.assertLess(time.monotonic(), deadline, "connections_active is not 1")
            time.sleep(0.05)
        stalled.abort()
        reader_ws.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)

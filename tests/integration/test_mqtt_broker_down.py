"""test_mqtt_broker_down.py - the broker crashes (SIGKILL) and comes back on
the same port (docs/MQTT.md, "Brokers" and "Delivery guarantees and
bounds"): WebSockets stay open, /readyz and wsgate_mqtt_connected report the
broker down, publishes made meanwhile wait within max_queue_bytes (past it:
queue_full) and go out in order after the reconnect, and the gateway
subscribes again to everything its clients hold.

mosquitto runs with persistence here only so that the Paho test subscriber's
durable session (clean_session False) survives the crash: otherwise the
gateway could republish before the Paho client had subscribed again. The
gateway's own session is a clean one, which mosquitto never restores: the
log shows the gateway's SUBSCRIBE packets after the restart."""

import time
import unittest

from harness import OP_TEXT
from mqtt_peers import MqttTestCase, readyz, unique_id, wait_ready

DEVICES = {"name": "devices", "path": "/devices/{device}", "type": "mqtt", "broker": "main",
           "publish": {"topic": "devices/{device}/cmd", "qos": 1},
           "subscribe": [{"filter": "devices/{device}/state/#"}]}
BUS = {"name": "bus", "path": "/bus", "type": "mqtt", "broker": "main", "format": "envelope",
       "publish": {"allow": ["app/+/in"], "qos": 1},
       "subscribe": {"allow": ["app/#"]}}


class BrokerDownTest(MqttTestCase):
    def durable_subscriber(self, flt):
        saves = self.broker_saves()
        sub = self.subscriber(flt, qos=1, client_id=unique_id("test-durable"),
                              clean_session=False)
        # The session survives a SIGKILL only once mosquitto has saved it
        # (autosave_interval 1; in practice every 1-2 s): wait for a save that
        # began after the subscription. A fixed 1.5 s sleep lost that race on
        # a loaded machine, and the gateway, which reconnects within a
        # second now, published before the subscriber's session was back.
        deadline = time.monotonic() + 10
        while self.broker_saves() < saves + 2:
            self.assertLess(time.monotonic(), deadline, "mosquitto saved no session in 10 s")
            time.sleep(0.1)
        return sub

    def broker_saves(self):
        try:
            with open(self.mosq.broker_log_path, errors="replace") as f:
                return f.read().count("Saving in-memory database")
        except OSError:
            return 0

    def kill_broker_and_wait_unready(self):
        self.mosq.kill()
        t0 = time.monotonic()
        r = wait_ready(self.port, 503, timeout=5)
        print("readyz 503 %.2f s after the kill" % (time.monotonic() - t0), flush=True)
        self.assertIn(b"main", r.body, "the 503 body should name the broker: %r" % r.body)
        deadline = time.monotonic() + 5
        while self.metric("wsgate_mqtt_connected", broker="main") != 0:
            self.assertLess(time.monotonic(), deadline,
                            "wsgate_mqtt_connected{broker=\"main\"} is %r, not 0, 5 s after the "
                            "broker died" % self.metric("wsgate_mqtt_connected", broker="main"))
            time.sleep(0.05)

    def test_restart_restores_everything(self):
        self.start_mqtt([DEVICES, BUS], persistence=True)
        sub = self.durable_subscriber("app/+/in")
        raw = self.ws("/devices/d1")
        self.wait_gw_subscribed("devices/d1/state/#")
        env = self.ws("/bus")
        env.send_json({"subscribe": "app/x/out", "id": "s1"})
        self.assertEqual(env.recv_json(), {"ack": "s1"})
        self.assertEqual(readyz(self.port).status, 200)
        self.assertEqual(self.metric("wsgate_mqtt_connected", broker="main"), 1)

        self.kill_broker_and_wait_unready()
        # the WebSockets stay open
        raw.ping(b"raw-alive")
        env.ping(b"env-alive")
        self.assertEqual(self.metric("wsgate_connections_active", route="devices"), 1)
        self.assertEqual(self.metric("wsgate_connections_active", route="bus"), 1)
        # publishes while down wait for the broker (no ack, no error yet)
        for i in range(5):
            env.send_json({"topic": "app/x/in", "payload": "m%d" % i, "qos": 1, "id": "q%d" % i})
        raw.send_text("raw-while-down")
        env.expect_silence(1.0)
        raw.ping(b"raw-alive-2")
        self.assertEqual(readyz(self.port).status, 503)

        subscribes_before = self.mosq.packets("SUBSCRIBE", self.gw_id)
        t0 = time.monotonic()
        self.mosq.restart()
        wait_ready(self.port, 200, timeout=20)
        print("readyz 200 %.2f s after the restart" % (time.monotonic() - t0), flush=True)
        acks = [env.recv_json(10) for _ in range(5)]
        self.assertEqual(acks, [{"ack": "q%d" % i} for i in range(5)],
                         "the acks of the publishes queued while the broker was down")
        sub.wait_connected(2, 10)
        got = sub.wait_for(5, 10)
        payloads = [p for _, p, _, _ in got]
        first_seen = list(dict.fromkeys(payloads))
        self.assertEqual(first_seen, [b"m%d" % i for i in range(5)],
                         "what the Paho subscriber got: %r" % payloads)
        self.assertEqual(self.metric("wsgate_mqtt_connected", broker="main"), 1)

        # the gateway subscribed again (the broker kept nothing of its session)
        self.wait_gw_subscribed("devices/d1/state/#", count=2, timeout=10)
        self.wait_gw_subscribed("app/x/out", count=2, timeout=10)
        after = self.mosq.packets("SUBSCRIBE", self.gw_id)[len(subscribes_before):]
        self.assertEqual(sorted(f for p in after for f in p),
                         ["app/x/out", "devices/d1/state/#"],
                         "SUBSCRIBE packets after the restart")
        # ... so messages reach both WebSockets again
        pub = self.publisher()
        pub.publish("devices/d1/state/x", "back", qos=1)
        pub.publish("app/x/out", "back-env", qos=1)
        self.assertEqual(raw.recv(), (OP_TEXT, b"back"))
        self.assertEqual(env.recv_json(), {"topic": "app/x/out", "payload": "back-env"})
        # and the raw client's message sent while down went out too
        raw_pubs = [t for t, _, _ in self.mosq.received_publishes(self.gw_id, "devices/d1/cmd")]
        self.assertEqual(raw_pubs, ["devices/d1/cmd"],
                         "the raw message sent while the broker was down")
        env.send_json({"topic": "app/x/in", "payload": "fresh", "qos": 1, "id": "f"})
        self.assertEqual(env.recv_json(), {"ack": "f"})
        self.assertIn(b"fresh", [p for _, p, _, _ in sub.wait_for(6, 10)])
        raw.close()
        env.close()

    def test_queue_bound_while_down(self):
        self.start_mqtt([BUS], persistence=True, limits={"max_queue_bytes": 4096})
        sub = self.durable_subscriber("app/+/in")
        env = self.ws("/bus")
        self.kill_broker_and_wait_unready()
        n = 10
        body = lambda i: ("%d" % i) * 1000
        for i in range(n):
            env.send_json({"topic": "app/x/in", "payload": body(i), "qos": 1, "id": i})
        # the ones past the bound are refused at once, the others wait
        errors = []
        try:
            while True:
                errors.append(env.recv_json(1.5))
        except AssertionError as e:
            if "no message within" not in str(e):
                raise
        refused = []
        for msg in errors:
            self.assertIn("error", msg, "while the broker is down: %r" % msg)
            self.assert_error(msg, "queue_full", msg["error"].get("request"), "a refused publish")
            refused.append(msg["error"]["request"])
        k = n - len(refused)
        print("queued %d of %d 1000-byte publishes within max_queue_bytes 4096" % (k, n),
              flush=True)
        self.assertEqual(refused, list(range(k, n)),
                         "queue_full answers (the ones past the bound, in order)")
        self.assertIn(k, (3, 4), "publishes kept within 4096 bytes")
        self.mosq.restart()
        wait_ready(self.port, 200, timeout=20)
        acks = [env.recv_json(10) for _ in range(k)]
        self.assertEqual(acks, [{"ack": i} for i in range(k)])
        got = sub.wait_for(k, 10)
        time.sleep(0.3)
        got = sub.snapshot()
        self.assertEqual(list(dict.fromkeys(p for _, p, _, _ in got)),
                         [body(i).encode() for i in range(k)])
        # the queue is free again
        env.send_json({"topic": "app/x/in", "payload": "after", "qos": 1, "id": "a"})
        self.assertEqual(env.recv_json(), {"ack": "a"})
        env.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""test_mqtt_raw.py - raw-format MQTT routes against a real mosquitto
(docs/MQTT.md, "format: raw", "Presence", "Content routing", "Metrics"):
client messages are published to the route's topic template, messages on
the route's filters come back as text (UTF-8) or binary frames, captures
that could widen a topic are refused with 400, presence messages go out on
connect and on every kind of disconnect, content rules pick the topic or
drop the message (counted, never published elsewhere), and the route's
message counters match the traffic."""

import time
import unittest

import harness
from harness import OP_BINARY, OP_TEXT
from mqtt_peers import MqttTestCase

DEVICES = {"name": "devices", "path": "/devices/{device}", "type": "mqtt", "broker": "main",
           "publish": {"topic": "devices/{device}/cmd", "qos": 1},
           "subscribe": [{"filter": "devices/{device}/state/#"}]}


class RawRouteTest(MqttTestCase):
    def test_publish_and_receive(self):
        self.start_mqtt([DEVICES])
        sub = self.subscriber("devices/+/cmd")
        pub = self.publisher()
        d1 = self.ws("/devices/d1")
        self.wait_gw_subscribed("devices/d1/state/#")
        d2 = self.ws("/devices/d2")
        self.wait_gw_subscribed("devices/d2/state/#")

        # client -> broker: each message's payload as is, to the route's topic, QoS 1
        d1.send_binary(b"hello")
        d1.send_text("on")
        got = sub.wait_for(2, 10)
        self.assertEqual(got[:2], [("devices/d1/cmd", b"hello", 1, False),
                                   ("devices/d1/cmd", b"on", 1, False)])
        self.assertEqual([(t, q) for t, q, _ in self.mosq.received_publishes(self.gw_id)],
                         [("devices/d1/cmd", 1), ("devices/d1/cmd", 1)],
                         "the gateway's PUBLISH packets as mosquitto logged them")

        # broker -> client: UTF-8 as a text frame, anything else binary
        pub.publish("devices/d1/state/x", "ok", qos=1)
        self.assertEqual(d1.recv(), (OP_TEXT, b"ok"))
        pub.publish("devices/d1/state/a/b", b"\xff\x00", qos=1)
        self.assertEqual(d1.recv(), (OP_BINARY, b"\xff\x00"))
        pub.publish("devices/d1/state/u", "h\u00e9llo \u2603".encode(), qos=0)
        self.assertEqual(d1.recv(), (OP_TEXT, "h\u00e9llo \u2603".encode()))
        pub.publish("devices/d1/state/e", b"", qos=0)
        op, payload = d1.recv()
        self.assertEqual(payload, b"", "an empty MQTT payload")

        # another device's state goes to that device only
        pub.publish("devices/d2/state/x", "for-d2", qos=1)
        pub.publish("devices/d1/state/x", "marker", qos=1)
        self.assertEqual(d2.recv(), (OP_TEXT, b"for-d2"))
        self.assertEqual(d1.recv(), (OP_TEXT, b"marker"),
                         "d1 got a message published on devices/d2/state/x")
        # nor does a topic outside the filter reach it
        pub.publish("devices/d1/other", "nope", qos=1)
        pub.publish("devices/d1/cmd", "nope-cmd", qos=1)
        d1.expect_silence(0.5)
        d2.expect_silence(0.1)

        # d2's messages go to d2's topic
        d2.send_text("from-d2")
        got = sub.wait_for(4, 10)
        self.assertEqual([(t, p) for t, p, _, _ in got],
                         [("devices/d1/cmd", b"hello"), ("devices/d1/cmd", b"on"),
                          ("devices/d1/cmd", b"nope-cmd"), ("devices/d2/cmd", b"from-d2")])
        self.assertEqual(d1.close(), (1000, b""))
        d2.close()

    def test_unsafe_captures_refused(self):
        self.start_mqtt([DEVICES, QUERY])
        # lws hands wsgate the percent-decoded path; an unencoded '+' and "%20"
        # arrive as a space, read back as '+' (docs/ARCHITECTURE.md).
        for path in ["/devices/a%2Bb", "/devices/%2B", "/devices/a%23b", "/devices/%23",
                     "/devices/a+b", "/devices/a%20b",
                     "/q?room=a%2Bb", "/q?room=%23", "/q?room=a%2Fb", "/q?room=a/b", "/q?room=",
                     "/q"]:
            r = harness.raw_upgrade(self.port, path)
            if r.sock:
                r.sock.close()
            self.assertEqual(r.status, 400, "%s: %s %r" % (path, r.status_line, r.body))
        # "%2F" is decoded by lws before routing: two segments, no such route.
        r = harness.raw_upgrade(self.port, "/devices/a%2Fb")
        self.assertEqual(r.status, 404, "%s %r" % (r.status_line, r.body))
        # "%00" never upgrades (lws refuses it: a 400 or a dropped connection)
        for path in ("/devices/a%00b", "/q?room=a%00b"):
            try:
                r = harness.raw_upgrade(self.port, path)
                if r.sock:
                    r.sock.close()
                self.assertNotEqual(r.status, 101, path)
            except AssertionError as e:
                self.assertIn("HTTP response", str(e))
        # safe ones still work, and nothing unsafe was ever subscribed or published
        sub = self.subscriber("q/#")
        c = self.ws("/devices/ok-1")
        self.wait_gw_subscribed("devices/ok-1/state/#")
        subs = [f for p in self.mosq.packets("SUBSCRIBE", self.gw_id) for f in p]
        self.assertEqual(subs, ["devices/ok-1/state/#"])
        q = self.ws("/q?room=r%C3%A9d%201")
        q.send_text("hey")
        got = sub.wait_for(1)
        self.assertEqual(got, [("q/r\u00e9d 1/in", b"hey", 0, False)])
        self.assertEqual([t for t, _, _ in self.mosq.received_publishes(self.gw_id)],
                         ["q/r\u00e9d 1/in"])
        c.close()
        q.close()


QUERY = {"name": "query", "path": "/q", "type": "mqtt", "broker": "main",
         "publish": {"topic": "q/{query.room}/in"}}


PRESENCE = {"name": "presence", "path": "/p/{device}", "type": "mqtt", "broker": "main",
            "publish": {"topic": "p/{device}/in", "qos": 0},
            "on_connect": {"topic": "presence/{device}", "payload": "up", "qos": 1},
            "on_disconnect": {"topic": "presence/{device}", "payload": "down", "qos": 1}}


class PresenceTest(MqttTestCase):
    def test_up_and_down_on_every_kind_of_close(self):
        self.start_mqtt([PRESENCE])
        sub = self.subscriber("presence/#")

        def expect(seq, what, timeout=10):
            got = sub.wait_for(len(seq), timeout)
            self.assertEqual([(t, p) for t, p, _, _ in got], seq, what)

        seq = []
        c = self.ws("/p/dev1")
        seq.append(("presence/dev1", b"up"))
        expect(seq, "after the WebSocket opened")
        c.close()
        seq.append(("presence/dev1", b"down"))
        expect(seq, "after a clean close")

        c = self.ws("/p/dev1")
        seq.append(("presence/dev1", b"up"))
        expect(seq, "after the second open")
        c.abort()  # FIN, no close frame
        seq.append(("presence/dev1", b"down"))
        expect(seq, "after the TCP connection was closed without a close frame", 15)

        c = self.ws("/p/dev2")
        seq.append(("presence/dev2", b"up"))
        expect(seq, "after the third open")
        c.reset()  # RST
        seq.append(("presence/dev2", b"down"))
        expect(seq, "after the TCP connection was reset", 15)

        time.sleep(0.5)
        self.assertEqual(len(sub.snapshot()), len(seq), "extra presence messages: %r"
                         % sub.snapshot())


CONTENT = {"name": "content", "path": "/c", "type": "mqtt", "broker": "main",
           "publish": [{"when": {"pointer": "/type", "equals": "telemetry"},
                        "topic": "t/{msg./id}", "qos": 0},
                       {"when": {"pointer": "/type", "equals": "log"}, "topic": "logs"}]}


class ContentRoutingTest(MqttTestCase):
    def test_rules_pick_the_topic_or_drop(self):
        self.start_mqtt([CONTENT])
        everything = self.subscriber("#")
        c = self.ws("/c")
        before = self.metric("wsgate_messages_dropped_total", route="content", reason="no_rule")

        m1 = '{"type":"telemetry","id":"d7"}'
        c.send_text(m1)
        got = everything.wait_for(1, 10)
        self.assertEqual(got[0][:2], ("t/d7", m1.encode()))
        m2 = '{"type":"log"}'
        c.send_text(m2)
        got = everything.wait_for(2, 10)
        self.assertEqual(got[1][:2], ("logs", m2.encode()))

        refused = ['{"type":"other"}', "not json", '{"type":"telemetry","id":"a/b"}',
                   '{"type":"telemetry","id":"a+b"}', '{"type":"telemetry","id":"#"}',
                   '{"type":"telemetry","id":""}', '{"type":"telemetry"}', "[1,2]",
                   '{"type":"telemetry","id":"a\\u0000b"}']
        for m in refused:
            c.send_text(m)
        c.send_binary(b"\xff\xfe")
        marker = '{"type":"log","n":2}'
        c.send_text(marker)
        got = everything.wait_for(3, 10)
        time.sleep(0.3)
        got = everything.snapshot()
        self.assertEqual([(t, p) for t, p, _, _ in got],
                         [("t/d7", m1.encode()), ("logs", m2.encode()), ("logs", marker.encode())],
                         "a message no rule takes (or whose {msg./id} is unsafe) was published")
        self.assertEqual([t for t, _, _ in self.mosq.received_publishes(self.gw_id)],
                         ["t/d7", "logs", "logs"], "the gateway's PUBLISH packets at mosquitto")
        after = self.metric("wsgate_messages_dropped_total", route="content", reason="no_rule")
        self.assertEqual((before or 0) + len(refused) + 1, after,
                         "wsgate_messages_dropped_total{route=\"content\",reason=\"no_rule\"} "
                         "(before: %r)" % before)
        self.assertEqual(c.close(), (1000, b""))


class RawMetricsTest(MqttTestCase):
    def test_message_counters(self):
        self.start_mqtt([DEVICES])
        sub = self.subscriber("devices/+/cmd")
        pub = self.publisher()
        m = self.metrics()
        self.assertEqual(harness.metric(m, "wsgate_mqtt_connected", broker="main"), 1)
        self.assertEqual(harness.metric(m, "wsgate_messages_total", route="devices",
                                        direction="in"), 0)
        self.assertEqual(harness.metric(m, "wsgate_messages_total", route="devices",
                                        direction="out"), 0)
        a = self.ws("/devices/m1")
        self.wait_gw_subscribed("devices/m1/state/#")
        b = self.ws("/devices/m2")
        self.wait_gw_subscribed("devices/m2/state/#")
        for i in range(5):
            a.send_text("a%d" % i)
        for i in range(3):
            b.send_binary(b"b%d" % i)
        sub.wait_for(8, 10)
        for i in range(4):
            pub.publish("devices/m1/state/x", "s%d" % i, qos=1)
        pub.publish("devices/m2/state/x", "t", qos=1)
        pub.publish("devices/zz/state/x", "nobody", qos=1)
        for i in range(4):
            self.assertEqual(a.recv(), (OP_TEXT, b"s%d" % i))
        self.assertEqual(b.recv(), (OP_TEXT, b"t"))
        m = self.metrics()
        self.assertEqual(harness.metric(m, "wsgate_messages_total", route="devices",
                                        direction="in"), 8)
        self.assertEqual(harness.metric(m, "wsgate_messages_total", route="devices",
                                        direction="out"), 5)
        self.assertEqual(harness.metric(m, "wsgate_connections_active", route="devices"), 2)
        self.assertEqual(harness.metric(m, "wsgate_connections_total", route="devices"), 2)
        a.close()
        b.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)

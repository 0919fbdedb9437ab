"""test_mqtt_envelope.py - envelope-format MQTT routes against a real
mosquitto (docs/MQTT.md, "format: envelope"): subscribe/unsubscribe/publish
requests with acks, messages arriving as {"topic", "payload"} with JSON
values kept as JSON and binary as base64, and every refusal answered with
its error code and the request's id, the connection staying open."""

import base64
import unittest

from mqtt_peers import MqttTestCase

BUS = {"name": "bus", "path": "/bus", "type": "mqtt", "broker": "main", "format": "envelope",
       "publish": {"allow": ["app/+/in"], "qos": 1},
       "subscribe": {"allow": ["app/x/#"]}}


class EnvelopeTest(MqttTestCase):
    def setUp(self):
        super().setUp()
        self.start_mqtt([BUS])
        self.sub = self.subscriber("app/+/in")
        self.pub = self.publisher()

    def request(self, c, req, what=None):
        c.send_json(req) if not isinstance(req, str) else c.send_text(req)
        return c.recv_json(10)

    def test_subscribe_and_receive(self):
        c = self.ws("/bus")
        self.assertEqual(self.request(c, {"subscribe": "app/x/out", "id": 1}), {"ack": 1})
        self.assertEqual(self.mosq.filter_count("SUBSCRIBE", self.gw_id, "app/x/out"), 1,
                         "the ack came before the broker's SUBACK was asked for")
        self.pub.publish("app/x/out", "hi", qos=1)
        self.assertEqual(c.recv_json(), {"topic": "app/x/out", "payload": "hi"})
        # a JSON object or array payload arrives as that JSON value
        self.pub.publish("app/x/out", '{"a": 1, "b": [true, null, "s"]}', qos=1)
        self.assertEqual(c.recv_json(),
                         {"topic": "app/x/out", "payload": {"a": 1, "b": [True, None, "s"]}})
        self.pub.publish("app/x/out", "[1, 2]", qos=0)
        self.assertEqual(c.recv_json(), {"topic": "app/x/out", "payload": [1, 2]})
        # other UTF-8 (even valid JSON scalars) is a string
        self.pub.publish("app/x/out", "123", qos=0)
        self.assertEqual(c.recv_json(), {"topic": "app/x/out", "payload": "123"})
        self.pub.publish("app/x/out", "{broken", qos=0)
        self.assertEqual(c.recv_json(), {"topic": "app/x/out", "payload": "{broken"})
        self.pub.publish("app/x/out", "\u00e9\u2603", qos=0)
        self.assertEqual(c.recv_json(), {"topic": "app/x/out", "payload": "\u00e9\u2603"})
        # not UTF-8: base64
        self.pub.publish("app/x/out", b"\xff\x00\x01", qos=1)
        self.assertEqual(c.recv_json(), {"topic": "app/x/out", "encoding": "base64",
                                         "payload": base64.b64encode(b"\xff\x00\x01").decode()})
        # a topic not subscribed, or inside the allow list but not subscribed: nothing
        self.pub.publish("app/x/other", "no", qos=1)
        self.pub.publish("app/y/out", "no", qos=1)
        c.expect_silence(0.5)

        # a wildcard subscription within the allow list
        self.assertEqual(self.request(c, {"subscribe": "app/x/+/deep", "qos": 1, "id": "s2"}),
                         {"ack": "s2"})
        self.pub.publish("app/x/k/deep", "deep", qos=1)
        self.assertEqual(c.recv_json(), {"topic": "app/x/k/deep", "payload": "deep"})

        # unsubscribe: acked, nothing more arrives, the broker is told
        self.assertEqual(self.request(c, {"unsubscribe": "app/x/out", "id": "u1"}),
                         {"ack": "u1"})
        self.mosq.wait_filter("UNSUBSCRIBE", self.gw_id, "app/x/out", 1, 5)
        self.pub.publish("app/x/out", "gone", qos=1)
        self.pub.publish("app/x/k/deep", "still", qos=1)
        self.assertEqual(c.recv_json(), {"topic": "app/x/k/deep", "payload": "still"})
        c.expect_silence(0.3)
        c.close()

    def test_shared_subscription(self):
        a = self.ws("/bus")
        b = self.ws("/bus")
        self.assertEqual(self.request(a, {"subscribe": "app/x/s", "id": 1}), {"ack": 1})
        self.assertEqual(self.request(b, {"subscribe": "app/x/s", "id": 2}), {"ack": 2})
        # docs/MQTT.md, "Retained messages": b joining a filter the gateway
        # holds makes it SUBSCRIBE again (same session: one subscription).
        self.assertEqual(self.mosq.packets("SUBSCRIBE", self.gw_id), [["app/x/s"], ["app/x/s"]])
        self.pub.publish("app/x/s", "both", qos=1)
        self.assertEqual(a.recv_json(), {"topic": "app/x/s", "payload": "both"})
        self.assertEqual(b.recv_json(), {"topic": "app/x/s", "payload": "both"})
        a.expect_silence(0.2)
        b.expect_silence(0.1)
        # a drops it: b still gets messages, the broker keeps the filter
        self.assertEqual(self.request(a, {"unsubscribe": "app/x/s", "id": 3}), {"ack": 3})
        self.pub.publish("app/x/s", "b-only", qos=1)
        self.assertEqual(b.recv_json(), {"topic": "app/x/s", "payload": "b-only"})
        a.expect_silence(0.3)
        self.assertEqual(self.mosq.packets("UNSUBSCRIBE", self.gw_id), [])
        # b closes: the last holder is gone, so the broker is told
        b.close()
        self.mosq.wait_filter("UNSUBSCRIBE", self.gw_id, "app/x/s", 1, 5)
        a.close()

    def test_retained_messages_once_per_client(self):
        # docs/MQTT.md, "Retained messages": each client joining a filter
        # gets its retained messages after its ack; the others no duplicates.
        self.pub.publish("app/x/ret/1", "r1", qos=1, retain=True)
        self.pub.publish("app/x/ret/2", b"\x00\xff", qos=1, retain=True)
        r1 = {"topic": "app/x/ret/1", "payload": "r1"}
        r2 = {"topic": "app/x/ret/2", "payload": "AP8=", "encoding": "base64"}
        a = self.ws("/bus")
        self.assertEqual(self.request(a, {"subscribe": "app/x/ret/#", "id": "a"}), {"ack": "a"})
        got = sorted([a.recv_json(), a.recv_json()], key=lambda m: m["topic"])
        self.assertEqual(got, [r1, r2])
        b = self.ws("/bus")
        self.assertEqual(self.request(b, {"subscribe": "app/x/ret/#", "id": "b"}), {"ack": "b"})
        got = sorted([b.recv_json(), b.recv_json()], key=lambda m: m["topic"])
        self.assertEqual(got, [r1, r2])
        a.expect_silence(0.5)
        b.expect_silence(0.1)
        # a live message: once each
        self.pub.publish("app/x/ret/1", "live", qos=1)
        self.assertEqual(a.recv_json(), {"topic": "app/x/ret/1", "payload": "live"})
        self.assertEqual(b.recv_json(), {"topic": "app/x/ret/1", "payload": "live"})
        a.expect_silence(0.3)
        b.expect_silence(0.1)
        a.close()
        b.close()

    def test_publish(self):
        c = self.ws("/bus")
        self.assertEqual(self.request(c, {"topic": "app/x/in", "payload": "p", "qos": 1,
                                          "id": "p1"}), {"ack": "p1"})
        got = self.sub.wait_for(1)
        self.assertEqual(got[0], ("app/x/in", b"p", 1, False))
        # a JSON value payload is published as its compact text
        self.assertEqual(self.request(c, {"topic": "app/y/in", "payload": {"k": [1, 2], "s": "v"},
                                          "qos": 1, "id": 2}), {"ack": 2})
        self.assertEqual(self.sub.wait_for(2)[1][:2], ("app/y/in", b'{"k":[1,2],"s":"v"}'))
        # base64 payload: the decoded bytes
        self.assertEqual(self.request(c, {"topic": "app/y/in", "payload": "/wAB",
                                          "encoding": "base64", "qos": 1, "id": 3}),
                         {"ack": 3})
        self.assertEqual(self.sub.wait_for(3)[2][:2], ("app/y/in", b"\xff\x00\x01"))
        # QoS 0 with an id: acked once handed to the broker
        self.assertEqual(self.request(c, {"topic": "app/z/in", "payload": "zero", "qos": 0,
                                          "id": 4}), {"ack": 4})
        self.assertEqual(self.sub.wait_for(4)[3][:3], ("app/z/in", b"zero", 0))
        # retain is passed on: a later subscriber gets the message as retained
        self.assertEqual(self.request(c, {"topic": "app/r/in", "payload": "kept", "qos": 1,
                                          "retain": True, "id": 5}), {"ack": 5})
        self.sub.wait_for(5)
        late = self.subscriber("app/r/in")
        self.assertEqual(late.wait_for(1)[0], ("app/r/in", b"kept", 1, True))
        # without an id: published, no answer
        c.send_json({"topic": "app/x/in", "payload": "silent", "qos": 1})
        self.assertEqual(self.sub.wait_for(6)[5][:2], ("app/x/in", b"silent"))
        c.expect_silence(0.3)
        self.assertEqual([(t, q) for t, q, _ in self.mosq.received_publishes(self.gw_id)],
                         [("app/x/in", 1), ("app/y/in", 1), ("app/y/in", 1), ("app/z/in", 0),
                          ("app/r/in", 1), ("app/x/in", 1)])
        c.close()

    def test_errors_keep_the_connection(self):
        c = self.ws("/bus")
        n = [0]

        def still_works():
            n[0] += 1
            rid = "ok-%d" % n[0]
            self.assertEqual(self.request(c, {"topic": "app/x/in", "payload": rid, "qos": 1,
                                              "id": rid}), {"ack": rid},
                             "a valid publish after an error")
            got = self.sub.wait_for(n[0])
            self.assertEqual(got[n[0] - 1][:2], ("app/x/in", rid.encode()))

        cases = [
            # (request, code, request id echoed)
            ({"subscribe": "#", "id": 1}, "not_allowed", 1),
            ({"subscribe": "app/#", "id": 2}, "not_allowed", 2),
            ({"subscribe": "app/+/out", "id": 3}, "not_allowed", 3),
            ({"subscribe": "+/x/out", "id": "s4"}, "not_allowed", "s4"),
            ({"subscribe": "app/y/out", "id": 5}, "not_allowed", 5),
            ({"subscribe": "app/x/#/more", "id": 6}, "bad_topic", 6),
            ({"subscribe": "app/x/a+", "id": 7}, "bad_topic", 7),
            ({"subscribe": "app/x/a#", "id": 8}, "bad_topic", 8),
            ({"subscribe": "", "id": 9}, "bad_topic", 9),
            ({"subscribe": "#"}, "not_allowed", None),
            ({"topic": "app/x/out", "payload": "p", "qos": 1, "id": 10}, "not_allowed", 10),
            ({"topic": "app", "payload": "p", "id": 11}, "not_allowed", 11),
            ({"topic": "app/x/in/more", "payload": "p", "id": 12}, "not_allowed", 12),
            ({"topic": "app/+/in", "payload": "p", "id": 13}, "bad_topic", 13),
            ({"topic": "app/#", "payload": "p", "id": 14}, "bad_topic", 14),
            ({"topic": "app/x/in", "payload": "p", "qos": 2, "id": 15}, "qos_not_allowed", 15),
            ({"topic": 5, "payload": "p", "id": 16}, "bad_request", 16),
            ({"topic": 5}, "bad_request", None),
            ({"topic": "app/x/in", "payload": "p", "qos": "1", "id": 17}, "bad_request", 17),
            ({"topic": "app/x/in", "payload": "p", "bogus": 1, "id": 19}, "bad_request", 19),
            ({"topic": "app/x/in", "payload": "%%%", "encoding": "base64", "id": 20},
             "bad_request", 20),
            ({"id": 21}, "bad_request", 21),
            ({"subscribe": 7, "id": 22}, "bad_request", 22),
            ({"unsubscribe": "app/x/never", "id": 23}, "not_subscribed", 23),
            ("not json", "bad_json", None),
            ("[1, 2]", "bad_json", None),
            ('"just a string"', "bad_json", None),
            ('{"topic": "app/x/in", "payload": "p", "id": 24', "bad_json", None),
        ]
        for req, code, rid in cases:
            what = "request %r" % (req,)
            self.assert_error(self.request(c, req, what), code, rid, what)
            still_works()
        # bytes that are not JSON at all, in a binary frame
        c.send_binary(b"\xff\xfe{")
        self.assert_error(c.recv_json(), "bad_json", None, "a binary frame of non-JSON")
        still_works()
        # nothing refused reached the broker
        topics = [t for t, _, _ in self.mosq.received_publishes(self.gw_id)]
        self.assertEqual(topics, ["app/x/in"] * n[0])
        self.assertEqual(self.mosq.packets("SUBSCRIBE", self.gw_id), [])
        self.assertEqual(c.close(), (1000, b""))


if __name__ == "__main__":
    unittest.main(verbosity=2)

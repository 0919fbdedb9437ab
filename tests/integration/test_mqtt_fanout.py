"""test_mqtt_fanout.py - one broker subscription fanned out to many
WebSocket clients (docs/MQTT.md: one MQTT session per broker, a filter held
once for all its clients and unsubscribed when its last client leaves):
every client gets every message once, in order."""

import time
import unittest

import harness
from harness import OP_TEXT
from mqtt_peers import MqttTestCase

N_CLIENTS = 50
N_MESSAGES = 200


class FanOutTest(MqttTestCase):
    def assert_one_filter_subscribed(self, flt):
        """The gateway's SUBSCRIBE packets all name just `flt`, at most one per
        client. (docs/MQTT.md, "Retained messages": a client joining a filter
        the gateway holds makes it SUBSCRIBE again, one at a time per filter,
        clients joining meanwhile sharing that SUBACK; so 1..N packets, the
        broker holding one subscription of one session all along.)"""
        packets = self.mosq.packets("SUBSCRIBE", self.gw_id)
        print("%d SUBSCRIBE packets for %r for %d clients" % (len(packets), flt, N_CLIENTS),
              flush=True)
        self.assertTrue(packets, "no SUBSCRIBE from the gateway")
        self.assertEqual([p for p in packets if p != [flt]], [],
                         "SUBSCRIBE packets naming something else")
        self.assertLessEqual(len(packets), N_CLIENTS)

    def test_envelope_fan_out(self):
        self.start_mqtt([{"name": "bus", "path": "/bus", "type": "mqtt", "broker": "main",
                          "format": "envelope", "publish": {"allow": ["feed/in"]},
                          "subscribe": {"allow": ["feed/#"]}}])
        clients = [self.ws("/bus") for _ in range(N_CLIENTS)]
        for i, c in enumerate(clients):
            c.send_json({"subscribe": "feed/all", "qos": 1, "id": i})
        for i, c in enumerate(clients):
            self.assertEqual(c.recv_json(10), {"ack": i}, "client %d" % i)
        pub = self.publisher()
        for i in range(N_MESSAGES):
            pub.publish("feed/all", "m%03d" % i, qos=1, wait=False)
        pub.publish("feed/all", "end", qos=1)
        want = [{"topic": "feed/all", "payload": "m%03d" % i} for i in range(N_MESSAGES)]
        want.append({"topic": "feed/all", "payload": "end"})
        for i, c in enumerate(clients):
            got = [c.recv_json(15) for _ in range(N_MESSAGES + 1)]
            if got != want:
                payloads = [g.get("payload") for g in got]
                self.fail("client %d: got %d messages, not m000..m%03d in order: %r"
                          % (i, len(got), N_MESSAGES - 1, payloads[:10] + ["..."] + payloads[-5:]))
        for c in clients:
            c.expect_silence(0.02)
        clients[0].expect_silence(0.3)  # no duplicates trailing
        self.assert_one_filter_subscribed("feed/all")
        out_count = harness.metric(self.metrics(), "wsgate_messages_total", route="bus",
                                   direction="out")
        # all but one leave: the filter stays
        for c in clients[1:]:
            c.close()
        time.sleep(0.5)
        self.assertEqual(self.mosq.packets("UNSUBSCRIBE", self.gw_id), [],
                         "unsubscribed while a client still held the filter")
        pub.publish("feed/all", "last", qos=1)
        self.assertEqual(clients[0].recv_json(), {"topic": "feed/all", "payload": "last"})
        clients[0].close()
        self.mosq.wait_filter("UNSUBSCRIBE", self.gw_id, "feed/all", 1, 5)
        time.sleep(0.3)
        self.assertEqual(self.mosq.packets("UNSUBSCRIBE", self.gw_id), [["feed/all"]])
        # messages_total{direction="out"} counts broker -> client messages
        # (docs/MQTT.md, "Metrics"), not the gateway's acks
        self.assertEqual(out_count, N_CLIENTS * (N_MESSAGES + 1),
                         "wsgate_messages_total{route=\"bus\",direction=\"out\"} after %d "
                         "clients got %d messages each (and one ack each)"
                         % (N_CLIENTS, N_MESSAGES + 1))

    def test_raw_fan_out(self):
        self.start_mqtt([{"name": "feed", "path": "/feed", "type": "mqtt", "broker": "main",
                          "subscribe": [{"filter": "feed/raw", "qos": 1}]}])
        clients = [self.ws("/feed")]
        self.wait_gw_subscribed("feed/raw")
        clients += [self.ws("/feed") for _ in range(N_CLIENTS - 1)]
        deadline = time.monotonic() + 10
        while self.metric("wsgate_connections_active", route="feed") != N_CLIENTS:
            self.assertLess(time.monotonic(), deadline, "connections_active never reached %d"
                            % N_CLIENTS)
            time.sleep(0.05)
        time.sleep(0.3)
        pub = self.publisher()
        for i in range(N_MESSAGES):
            pub.publish("feed/raw", "r%03d" % i, qos=1, wait=False)
        pub.publish("feed/raw", "end", qos=1)
        want = [(OP_TEXT, b"r%03d" % i) for i in range(N_MESSAGES)] + [(OP_TEXT, b"end")]
        for i, c in enumerate(clients):
            got = [c.recv(15) for _ in range(N_MESSAGES + 1)]
            self.assertEqual(got, want, "client %d" % i)
        clients[-1].expect_silence(0.3)
        self.assert_one_filter_subscribed("feed/raw")
        for c in clients[1:]:
            c.close()
        time.sleep(0.5)
        self.assertEqual(self.mosq.packets("UNSUBSCRIBE", self.gw_id), [],
                         "unsubscribed while a client still held the filter")
        clients[0].close()
        self.mosq.wait_filter("UNSUBSCRIBE", self.gw_id, "feed/raw", 1, 5)
        self.assertEqual(self.mosq.packets("UNSUBSCRIBE", self.gw_id), [["feed/raw"]])


if __name__ == "__main__":
    unittest.main(verbosity=2)

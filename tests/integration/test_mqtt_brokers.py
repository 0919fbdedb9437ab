"""test_mqtt_brokers.py - the broker session's options against a real
mosquitto (docs/MQTT.md, "Brokers"): MQTT 5, ssl:// with a CA made by the
test (and refused with the wrong CA), `uris` failover past a dead node, and
credentials (accepted, refused - and never logged)."""

import json
import os
import time
import signal
import subprocess
import unittest

import harness
from fake_broker import FakeBroker
from harness import HOST
from mqtt_peers import (MqttTestCase, Mosquitto, gateway_config, unique_id, wait_ready,
                        readyz)

BUS = {"name": "bus", "path": "/bus", "type": "mqtt", "broker": "main", "format": "envelope",
       "publish": {"allow": ["app/+/in"], "qos": 1}, "subscribe": {"allow": ["app/#"]}}


def make_ca(directory, name):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    ca_key, ca_crt = os.path.join(directory, name + "-ca.key"), os.path.join(directory,
                                                                              name + "-ca.crt")
    key, csr, crt = (os.path.join(directory, name + ext) for ext in (".key", ".csr", ".crt"))
    ext = os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=60)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=wsgate test CA " + name, "-keyout", ca_key, "-out", ca_crt)
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", key, "-out", csr)
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", crt)
    return ca_crt, crt, key


class BrokerOptionsTest(MqttTestCase):
    def roundtrip(self, port, mosq_port):
        """An envelope client subscribes, gets a message from a Paho publisher,
        and publishes with QoS 1 (acked after the broker's PUBACK)."""
        self.port = port
        from mqtt_peers import Publisher, Subscriber
        c = self.ws("/bus")
        c.send_text(json.dumps({"subscribe": "app/x/out", "id": 1}))
        self.assertEqual(c.recv_json(10), {"ack": 1})
        pub = Publisher(self.h, mosq_port)
        pub.publish("app/x/out", "hello", qos=1)
        self.assertEqual(c.recv_json(), {"topic": "app/x/out", "payload": "hello"})
        sub = Subscriber(self.h, mosq_port, "app/+/in")
        c.send_text(json.dumps({"topic": "app/x/in", "payload": "up", "qos": 1, "id": "p"}))
        self.assertEqual(c.recv_json(10), {"ack": "p"})
        self.assertEqual([(t, p) for t, p, _, _ in sub.wait_for(1, 10)], [("app/x/in", b"up")])
        c.close()

    def test_mqtt5(self):
        self.start_mqtt([BUS], broker_extra={"version": "5"})
        self.assertTrue(any("as %s (p5," % self.gw_id in line for line in self.mosq.log_lines()),
                        "mosquitto did not see an MQTT 5 CONNECT:\n" + self.mosq.log())
        self.roundtrip(self.port, self.mosq.port)

    def test_tls_broker(self):
        ca, crt, key = make_ca(self.h.tmp, "good")
        wrong_ca, _, _ = make_ca(self.h.tmp, "other")
        tls_port = harness.free_port()
        mosq = Mosquitto(self.h, extra_config="\n".join([
            "listener %d %s" % (tls_port, HOST), "cafile " + ca, "certfile " + crt,
            "keyfile " + key, "tls_version tlsv1.2"]))
        self.mosq = mosq
        uri = "ssl://%s:%d" % (HOST, tls_port)

        # The right CA: connected over TLS, and the route works.
        gw_id = unique_id("wsgate-tls")
        port = harness.free_port()
        self.h.start_gateway(gateway_config(port, mosq, [BUS], gw_id,
                                            broker_extra={"uri": uri, "tls": {"ca": ca}}))
        wait_ready(port, 200, timeout=15)
        self.assertTrue(any("New client connected" in l and gw_id in l
                            for l in mosq.log_lines()), mosq.log())
        self.roundtrip(port, mosq.port)

        # A CA that did not sign the broker's certificate: never ready.
        bad_id = unique_id("wsgate-badca")
        bad_port = harness.free_port()
        bad = self.h.start_gateway(gateway_config(bad_port, mosq, [BUS], bad_id,
                                                  broker_extra={"uri": uri,
                                                                "tls": {"ca": wrong_ca}}))
        wait_ready(bad_port, 503, timeout=5)
        import time
        time.sleep(2.0)  # a few reconnect attempts
        r = readyz(bad_port)
        self.assertEqual(r.status, 503)
        self.assertIn(b'"main"', r.body)
        self.assertFalse(any("as %s" % bad_id in l for l in mosq.log_lines()),
                         "the broker accepted a client that should not trust it")
        self.assertIn("mqtt broker unreachable", bad.log())

    def test_uris_failover(self):
        mosq = Mosquitto(self.h)
        self.mosq = mosq
        dead = "tcp://%s:%d" % (HOST, harness.refused_port())
        gw_id = unique_id("wsgate-uris")
        port = harness.free_port()
        cfg = gateway_config(port, mosq, [BUS], gw_id)
        del cfg["brokers"]["main"]["uri"]
        cfg["brokers"]["main"]["uris"] = [dead, mosq.uri]
        self.h.start_gateway(cfg)
        wait_ready(port, 200, timeout=15)
        mosq.wait_connected(gw_id, 1, timeout=5)
        self.roundtrip(port, mosq.port)

    def test_credentials(self):
        passwd = os.path.join(self.h.tmp, "passwd")
        subprocess.run(["mosquitto_passwd", "-c", "-b", passwd, "gw", "s3cret-pw"], check=True,
                       capture_output=True, timeout=30)
        os.chmod(passwd, 0o600)
        mosq = Mosquitto(self.h, extra_config="password_file %s\nallow_anonymous false" % passwd)
        self.mosq = mosq

        os.environ["WSGATE_TEST_MQTT_PW"] = "s3cret-pw"
        good_id = unique_id("wsgate-auth")
        port = harness.free_port()
        good = self.h.start_gateway(gateway_config(
            port, mosq, [BUS], good_id,
            broker_extra={"username": "gw", "password_env": "WSGATE_TEST_MQTT_PW"}))
        wait_ready(port, 200, timeout=15)

        os.environ["WSGATE_TEST_MQTT_PW"] = "wrong-pw-123"
        bad_port = harness.free_port()
        bad = self.h.start_gateway(gateway_config(
            bad_port, mosq, [BUS], unique_id("wsgate-noauth"),
            broker_extra={"username": "gw", "password_env": "WSGATE_TEST_MQTT_PW"}))
        import time
        time.sleep(2.0)
        self.assertEqual(readyz(bad_port).status, 503)
        self.assertEqual(readyz(port).status, 200)
        self.assertIn("mqtt broker unreachable", bad.log())
        for gw in (good, bad):
            self.assertNotIn("s3cret-pw", gw.log())
            self.assertNotIn("wrong-pw-123", gw.log())

    def test_denied_subscription_retried(self):
        """SUBACKs that refuse a filter (what a NATS cluster answers while it
        re-elects its leaders) are retried with backoff, counted and logged;
        an envelope client's ack waits for the grant; then messages flow."""
        broker = FakeBroker(self.h, deny={"secret/#": 2, "app/x/out": 1})
        port = harness.free_port()
        feed = {"name": "feed", "path": "/feed", "type": "mqtt", "broker": "main",
                "subscribe": [{"filter": "secret/#"}]}
        gw = self.h.start_gateway({"listen": [{"host": HOST, "port": port}],
                                   "brokers": {"main": {"uri": broker.uri,
                                                        "client_id": unique_id("wsgate-deny")}},
                                   "routes": [feed, BUS]})
        wait_ready(port, 200, timeout=15)
        from mqtt_peers import WsClient
        raw = WsClient(port, "/feed")
        env = WsClient(port, "/bus")
        env.send_text(json.dumps({"subscribe": "app/x/out", "id": "s"}))
        # secret/# is refused twice (retried 1 s, then 2 s later), then
        # granted; app/x/out once: its ack comes with the grant, not before.
        t0 = time.monotonic()
        self.assertEqual(env.recv_json(10), {"ack": "s"})
        self.assertGreater(time.monotonic() - t0, 0.8, "acked before the retry")
        self.assertEqual(broker.granted("app/x/out"), [False, True])
        deadline = time.monotonic() + 15
        while broker.granted("secret/#") != [False, False, True]:
            self.assertLess(time.monotonic(), deadline, "SUBSCRIBEs seen: %r\n%s"
                            % (broker.subscribes, gw.log()))
            time.sleep(0.05)
        self.assertEqual(gw.log().count("mqtt subscribe refused, retrying"), 3)
        self.assertEqual(harness.metric(harness.parse_prometheus(
            harness.http_get(port, "/metrics").body.decode()),
            "wsgate_mqtt_subscribe_denied_total", broker="main"), 3)
        time.sleep(0.1)
        broker.publish("secret/x", "granted")
        broker.publish("app/x/out", "hi")
        self.assertEqual(raw.recv(10), (harness.OP_TEXT, b"granted"))
        self.assertEqual(env.recv_json(), {"topic": "app/x/out", "payload": "hi"})
        raw.close()
        env.close()

    def test_silent_node_skipped(self):
        """A node that takes the TCP connection but never answers CONNECT is
        given up after the connect timeout and the next of `uris` is used."""
        silent = FakeBroker(self.h, connack=False)
        good = FakeBroker(self.h)
        port = harness.free_port()
        self.h.start_gateway({"listen": [{"host": HOST, "port": port}],
                              "brokers": {"main": {"uris": [silent.uri, good.uri],
                                                   "client_id": unique_id("wsgate-silent")}},
                              "routes": [BUS]})
        start = time.monotonic()
        wait_ready(port, 200, timeout=20)
        took = time.monotonic() - start
        self.assertEqual(silent.connects, 1)
        self.assertEqual(good.connects, 1)
        self.assertLess(took, 10, "the silent node held the gateway for %.1f s" % took)

if __name__ == "__main__":
    unittest.main()

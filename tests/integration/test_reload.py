"""test_reload.py - SIGHUP reloads the config (SPEC.md "Signals"): the new
rules apply to new connections while open ones keep theirs (their route, their
limits, their broker session - unless the changed broker keeps its client id,
which MQTT allows one connection: then they are closed with 1012 and the new
session connects once the old one is gone, docs/MQTT.md); a config that fails
validation - or changes what only a restart can (listeners, new subprotocol
names) - is refused with every error logged and the running config stays;
/metrics counts reloads."""

import json
import os
import signal
import time
import unittest

import harness
from harness import HOST, reload_and_wait
from mqtt_peers import Mosquitto, Publisher, WsClient, have_mosquitto, unique_id, wait_ready




def recv_bytes(client, n):
    """A raw route delivers backend bytes as they arrive: collect n of them."""
    got = b""
    while len(got) < n:
        got += client.recv()[1]
    return got


class ReloadTest(harness.GatewayTestCase):
    def metric(self, port, name, **labels):
        r = harness.http_get(port, "/metrics")
        return harness.metric(harness.parse_prometheus(r.body.decode()), name, **labels)

    def test_new_rules_for_new_connections_only(self):
        _, echo_port = self.h.start_echo()
        port = harness.free_port()
        route_a = {"name": "a", "path": "/a", "type": "tcp",
                   "target": {"host": HOST, "port": echo_port}}
        cfg = {"listen": [{"host": HOST, "port": port}],
               "limits": {"max_message_bytes": 100000}, "routes": [route_a]}
        gw = self.h.start_gateway(cfg)
        path = gw.config_path

        old = WsClient(port, "/a")
        old.send_binary(b"x" * 5000)
        self.assertEqual(recv_bytes(old, 5000), b"x" * 5000)

        # New rules: /a gone, /b added, a smaller message limit.
        route_b = dict(route_a, name="b", path="/b")
        cfg2 = dict(cfg, limits={"max_message_bytes": 1000}, routes=[route_b])
        with open(path, "w") as f:
            json.dump(cfg2, f)
        log = reload_and_wait(gw, 1)
        self.assertIn("config reloaded", log)

        self.assertEqual(harness.raw_upgrade(port, "/a").status, 404)
        new = WsClient(port, "/b")
        new.send_binary(b"y" * 500)
        self.assertEqual(new.recv(), (harness.OP_BINARY, b"y" * 500))
        new.send_binary(b"y" * 5000)
        _, close = new.read_until_close()
        self.assertEqual(close[0], 1009, "the new limit applies to a new connection")

        # The connection from before keeps its route and its limit.
        old.send_binary(b"z" * 5000)
        self.assertEqual(recv_bytes(old, 5000), b"z" * 5000, "over the new limit, not the old")
        self.assertEqual(old.close(), (1000, b""))

        self.assertEqual(self.metric(port, "wsgate_config_reloads_total", result="success"), 1)
        self.assertEqual(self.metric(port, "wsgate_config_last_reload_successful"), 1)
        # Series of the old route stay (counters are monotonic); the new one exists.
        self.assertEqual(self.metric(port, "wsgate_connections_total", route="a"), 1)
        self.assertEqual(self.metric(port, "wsgate_connections_total", route="b"), 1)

    def test_bad_config_refused_old_rules_stay(self):
        _, echo_port = self.h.start_echo()
        port = harness.free_port()
        cfg = {"listen": [{"host": HOST, "port": port}],
               "routes": [{"name": "a", "path": "/a", "type": "tcp", "subprotocols": ["binary"],
                           "target": {"host": HOST, "port": echo_port}}]}
        gw = self.h.start_gateway(cfg)
        path = gw.config_path

        # 1: two schema errors -> both logged with their JSON paths, nothing applied
        bad = dict(cfg, routes=[{"name": "a", "path": "/a", "type": "tcp",
                                 "target": {"host": HOST, "port": "80a"}, "tagret": 1}])
        with open(path, "w") as f:
            json.dump(bad, f)
        log = reload_and_wait(gw, 1)
        self.assertIn("routes[0].target.port: expected an integer 1..65535", log)
        self.assertIn("routes[0].tagret: unknown key", log)
        # 2: a syntax error
        with open(path, "w") as f:
            f.write('{"listen": [')
        reload_and_wait(gw, 2)
        # 3: what needs a restart: another listener, a new subprotocol name
        other = dict(cfg, listen=[{"host": HOST, "port": port}, {"host": HOST, "port":
                                                                  harness.free_port()}])
        other["routes"] = [dict(cfg["routes"][0], subprotocols=["binary", "newproto"])]
        with open(path, "w") as f:
            json.dump(other, f)
        log = reload_and_wait(gw, 3)
        self.assertIn("listen: changed; listeners", log)
        self.assertIn('routes[0].subprotocols[1]: \\"newproto\\" is new', log)
        self.assertEqual(log.count("config reloaded"), 0)

        c = WsClient(port, "/a")
        c.send_binary(b"still here")
        self.assertEqual(c.recv(), (harness.OP_BINARY, b"still here"))
        c.close()
        self.assertEqual(self.metric(port, "wsgate_config_reloads_total", result="failure"), 3)
        self.assertEqual(self.metric(port, "wsgate_config_last_reload_successful"), 0)

        # and a good config afterwards applies
        with open(path, "w") as f:
            json.dump(cfg, f)
        log = reload_and_wait(gw, 4)
        self.assertIn("config reloaded", log)
        self.assertEqual(self.metric(port, "wsgate_config_last_reload_successful"), 1)

    @unittest.skipUnless(have_mosquitto(), "mosquitto not installed")
    def test_broker_changed_old_connections_keep_theirs(self):
        m1, m2 = Mosquitto(self.h), Mosquitto(self.h)
        port = harness.free_port()
        route = {"name": "feed", "path": "/feed", "type": "mqtt", "broker": "main",
                 "subscribe": [{"filter": "feed/#"}]}
        cfg = {"listen": [{"host": HOST, "port": port}],
               "brokers": {"main": {"uri": m1.uri, "client_id": unique_id("wsgate-r1")}},
               "routes": [route]}
        gw = self.h.start_gateway(cfg)
        wait_ready(port, 200)
        old = WsClient(port, "/feed")
        m1.wait_filter("SUBSCRIBE", cfg["brokers"]["main"]["client_id"], "feed/#")

        cfg2 = dict(cfg, brokers={"main": {"uri": m2.uri, "client_id": unique_id("wsgate-r2")}})
        with open(gw.config_path, "w") as f:
            json.dump(cfg2, f)
        reload_and_wait(gw, 1)
        wait_ready(port, 200)
        new = WsClient(port, "/feed")
        m2.wait_filter("SUBSCRIBE", cfg2["brokers"]["main"]["client_id"], "feed/#")

        Publisher(self.h, m1.port).publish("feed/x", "from-m1", qos=1)
        Publisher(self.h, m2.port).publish("feed/x", "from-m2", qos=1)
        self.assertEqual(old.recv(), (harness.OP_TEXT, b"from-m1"))
        self.assertEqual(new.recv(), (harness.OP_TEXT, b"from-m2"))
        old.expect_silence(0.3)
        new.expect_silence(0.1)

        # The replaced session closes once its last client is gone.
        old.close()
        deadline = time.monotonic() + 10
        while "mqtt broker session closed" not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("mqtt broker session closed", gw.log())
        Publisher(self.h, m2.port).publish("feed/y", "again", qos=1)
        self.assertEqual(new.recv(), (harness.OP_TEXT, b"again"))
        new.close()

    def start_with_a_client(self, id_prefix):
        """A broker, a gateway on it with a fixed client id, and a client
        of the /feed route whose filter the broker has."""
        m = Mosquitto(self.h)
        client_id = unique_id(id_prefix)
        gw, port, cfg = self.start_feed_gateway(m, client_id)
        old = WsClient(port, "/feed")
        m.wait_filter("SUBSCRIBE", client_id, "feed/#")
        return m, client_id, gw, port, cfg, old

    def start_feed_gateway(self, m, client_id):
        port = harness.free_port()
        route = {"name": "feed", "path": "/feed", "type": "mqtt", "broker": "main",
                 "subscribe": [{"filter": "feed/#"}]}
        cfg = {"listen": [{"host": HOST, "port": port}],
               "brokers": {"main": {"uri": m.uri, "client_id": client_id}},
               "routes": [route]}
        gw = self.h.start_gateway(cfg)
        wait_ready(port, 200)
        return gw, port, cfg

    def rewrite_broker(self, gw, cfg, **settings):
        main = dict(cfg["brokers"]["main"], **settings)
        with open(gw.config_path, "w") as f:
            json.dump(dict(cfg, brokers={"main": main}), f)

    def check_handed_over(self, gw, port, m, client_id, old):
        """old gets 1012; a new client is served by the one new session;
        the broker never had two sessions of client_id at once."""
        code, reason = old.ws.recv_close(timeout=10)
        old.ws.close()
        self.assertEqual(code, 1012, reason)
        wait_ready(port, 200, timeout=10)
        new = WsClient(port, "/feed")
        m.wait_filter("SUBSCRIBE", client_id, "feed/#", count=2)
        Publisher(self.h, m.port).publish("feed/x", "after", qos=1)
        self.assertEqual(new.recv(), (harness.OP_TEXT, b"after"))
        time.sleep(2)  # long enough for a reconnect or two, were both alive
        self.assertEqual(m.count_lines("already connected, closing old connection"), 0,
                         m.broker_log()[-3000:])
        self.assertEqual(m.count_lines(" as %s " % client_id), 2,
                         "the gateway's connections at the broker: the old one and the new one")
        self.assertIn("mqtt broker session closed", gw.log())
        new.close()

    @unittest.skipUnless(have_mosquitto(), "mosquitto not installed")
    def test_broker_changed_same_client_id_hands_over(self):
        """MQTT allows one connection per client id: a reload that changes a
        broker but keeps its client id (the default "wsgate-<name>" always
        does) cannot leave the old session serving beside the new one, or
        the broker would throw each out in turn for as long as both lived
        (the build before this test: 6 take-overs in 6 s). The old session's
        clients are closed with 1012 (service restart), the old session
        leaves, then the new one connects, once."""
        m, client_id, gw, port, cfg, old = self.start_with_a_client("wsgate-same")
        self.rewrite_broker(gw, cfg, keepalive_s=20)
        reload_and_wait(gw, 1)
        self.check_handed_over(gw, port, m, client_id, old)

    @unittest.skipUnless(have_mosquitto(), "mosquitto not installed")
    def test_two_reloads_during_a_hand_over(self):
        """A second reload before the first hand-over is done (the old
        client has not answered its close yet, so the old session still
        serves it): the session in between never connects; the last one
        connects once the first has gone."""
        m, client_id, gw, port, cfg, old = self.start_with_a_client("wsgate-twice")
        self.rewrite_broker(gw, cfg, keepalive_s=20)
        reload_and_wait(gw, 1)
        self.rewrite_broker(gw, cfg, keepalive_s=25)
        reload_and_wait(gw, 2)
        self.check_handed_over(gw, port, m, client_id, old)
        self.assertEqual(gw.log().count("mqtt broker session closed"), 2,
                         "the first session and the one in between")

if __name__ == "__main__":
    unittest.main()

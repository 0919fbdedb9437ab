"""test_scaleout.py - a fleet of wsgate gateways in front of a clustered MQTT
broker (docs/scaling.md; issue 5, "Scale-out on an existing distributed
engine"), with real processes only, all on 127.0.0.1 and free ports:

    WebSocket clients ── HAProxy (docker/haproxy.cfg) ─┬─ wsgate A ─ uris n1, n2, n3
                         (or straight to a gateway)    └─ wsgate B ─ uris n2, n3, n1
                                                           NATS n1 ═ n2 ═ n3
                                                 (routes, JetStream R3, MQTT listeners)

What is checked, in this order on one fleet (each step leaves the fleet as
the next one expects it):

1. A message a WebSocket client publishes on gateway A reaches the
   subscribers on gateway B and the other way round (envelope route and raw
   route), through HAProxy as well as straight to a gateway; HAProxy's
   leastconn spreads new connections over both gateways.
2. Fan-out across the fleet: N raw subscribers split by HAProxy over both
   gateways, one MQTT publisher on the third NATS node; every message reaches
   every subscriber (or is counted as dropped by the gateway); the delivery
   rate is printed (docs/scaling.md quotes it).
3. SIGKILL of gateway A: its clients' connections end; they reconnect through
   HAProxy (which sends them to B at once: `retries` + `redispatch`),
   subscribe again and get messages; HAProxy marks A down; a restarted A is
   marked up and takes the next new connection (leastconn).
4. SIGKILL of the NATS node gateway B is connected to: B's /readyz goes 503,
   B reconnects to another of its `uris` (the 4 s connect timeout skips a
   node that takes the TCP connection but sends no CONNACK during the
   re-election), subscribes again (a SUBSCRIBE refused meanwhile is retried
   after 1, 2, 4, 8, 16 s), and its clients get messages again; the seconds
   this takes are printed, and wsgate_mqtt_connects_total and
   wsgate_mqtt_subscribe_denied_total account for it, matching the log.

Skipped when nats-server or haproxy is missing (scripts/install-deps.sh
installs both).
"""

import json
import os
import re
import selectors
import socket
import struct
import time
import unittest

import harness
from harness import HOST, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
import fleet_peers
import mqtt_peers
from mqtt_peers import WsClient, metrics, readyz, unique_id

BUS = {"name": "bus", "path": "/bus", "type": "mqtt", "broker": "fleet", "format": "envelope",
       "publish": {"allow": ["fleet/#"], "qos": 1},
       "subscribe": {"allow": ["fleet/#"]}}
ROOM = {"name": "room", "path": "/room/{room}", "type": "mqtt", "broker": "fleet",
        "publish": {"topic": "fleet/rooms/{room}", "qos": 0},
        "subscribe": [{"filter": "fleet/rooms/{room}", "qos": 0}]}

# Bounds. NATS' re-election after a node dies takes 10-20 s (issue 5); a
# gateway's backoff grows to 15 s and a refused SUBSCRIBE is retried for
# 1+2+4+8+16 = 31 s: generous, but every wait has an end.
FAILOVER_TIMEOUT_S = 90.0
# The fan-out step's size (the figures in docs/scaling.md came from a larger
# run of the same step: WSGATE_FANOUT_SUBSCRIBERS=1000 WSGATE_FANOUT_MESSAGES=...)
FANOUT_SUBSCRIBERS = int(os.environ.get("WSGATE_FANOUT_SUBSCRIBERS", "200"))
FANOUT_MESSAGES = int(os.environ.get("WSGATE_FANOUT_MESSAGES", "2000"))
FANOUT_PAYLOAD = 64


class UpgradeRefused(AssertionError):
    pass


class FleetClient(WsClient):
    """A WsClient made with harness.raw_upgrade, so that the response
    headers are kept: `served_by` is HAProxy's X-Wsgate-Server (None when
    connected straight to a gateway)."""

    def __init__(self, port, path, timeout=5.0):
        resp = harness.raw_upgrade(port, path, timeout=timeout)
        if resp.status != 101:
            raise UpgradeRefused("upgrade of %s on port %d answered %d: %r"
                                 % (path, port, resp.status, resp.body[:200]))
        self.path = path
        self.ws = harness.RawWebSocket(resp)
        self.close_frame = None
        self.served_by = resp.header("x-wsgate-server")
        self.sock.settimeout(timeout)

    def request(self, req, timeout=10.0):
        """Sends an envelope request with an id and returns its answer; messages
        that arrive first are kept in self.early."""
        self.send_json(req)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv_json(max(0.05, deadline - time.monotonic()))
            if "ack" in msg or "error" in msg:
                return msg
            self.early = getattr(self, "early", []) + [msg]

    def next_json(self, timeout=5.0):
        """The next message: one kept by request() first, else from the wire."""
        early = getattr(self, "early", [])
        if early:
            return early.pop(0)
        return self.recv_json(timeout)

    def subscribe(self, flt, rid, timeout=10.0, qos=0):
        answer = self.request({"subscribe": flt, "id": rid, "qos": qos}, timeout)
        if answer != {"ack": rid}:
            raise AssertionError("%s: subscribe %r answered %r" % (self.path, flt, answer))

    def wait_gone(self, timeout=10.0):
        """Reads until the connection ends (EOF, reset or a close frame);
        returns how: "eof", "reset" or ("close", code)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: the connection is still open after %ss"
                                     % (self.path, timeout))
            try:
                fin, op, payload = self.ws.recv_frame(left)
            except socket.timeout:
                continue
            except EOFError:
                return "eof"
            except ConnectionError:
                return "reset"
            if op == OP_CLOSE:
                return ("close", struct.unpack("!H", payload[:2])[0] if len(payload) >= 2
                        else None)
            if op == OP_PING:
                self.ws.send(OP_PONG, payload)


class ScaleOutTest(harness.GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        if not fleet_peers.have_nats():
            raise unittest.SkipTest("nats-server not found at %s" % fleet_peers.NATS_BIN)
        if not fleet_peers.have_haproxy():
            raise unittest.SkipTest("haproxy not found at %s" % fleet_peers.HAPROXY_BIN)
        super().setUpClass()
        cls.t_start = time.monotonic()
        h = cls.ch
        cls.nats = fleet_peers.NatsCluster(h, 3)
        js = cls.nats.wait_jetstream(timeout=30)
        mq = cls.nats.wait_mqtt(timeout=30)
        print("NATS cluster: JetStream meta group complete %.2f s, every node's MQTT "
              "listener taking sessions %.2f s after the start" % (js, mq), flush=True)
        # Gateway B's first node is the one leading $MQTT_sess, the stream that
        # holds the MQTT sessions: killing it (step 4) is then the slow case,
        # where the survivors must elect a new leader before any CONNECT or
        # SUBSCRIBE can be stored. A starts on another node; each names all
        # three, in a different order.
        cls.leaders = cls.nats.stream_leaders()
        print("JetStream leaders: %s" % ", ".join("%s %s" % kv
                                                 for kv in sorted(cls.leaders.items())),
              flush=True)
        names = [n.server_name for n in cls.nats.nodes]
        lead = cls.leaders.get("$MQTT_sess") or names[1]
        k = names.index(lead)
        order_b = [cls.nats.nodes[(k + j) % 3] for j in range(3)]
        order_a = [order_b[1], order_b[2], order_b[0]]
        cls.gw_cfg = {
            "A": cls.gateway_config(order_a, unique_id("wsgate-a")),
            "B": cls.gateway_config(order_b, unique_id("wsgate-b")),
        }
        cls.first_node = {"A": order_a[0].server_name, "B": order_b[0].server_name}
        cls.gw = {}
        for name in ("A", "B"):
            cls.start_fleet_gateway(name)
        cls.hap = fleet_peers.HAProxy(h, [("wsgate-a", cls.gw_cfg["A"]["listen"][0]["port"]),
                                          ("wsgate-b", cls.gw_cfg["B"]["listen"][0]["port"])])
        cls.hap.wait_states({"wsgate-a": "UP", "wsgate-b": "UP"}, timeout=15)
        print("fleet up %.2f s after the start" % (time.monotonic() - cls.t_start), flush=True)

    @classmethod
    def gateway_config(cls, nodes, client_id):
        return {
            "listen": [{"host": HOST, "port": harness.free_port()}],
            "trusted_proxies": [HOST],
            "brokers": {"fleet": {"uris": [n.uri for n in nodes], "client_id": client_id}},
            "routes": [BUS, ROOM],
        }

    @classmethod
    def start_fleet_gateway(cls, name):
        gw = cls.ch.start_gateway(cls.gw_cfg[name])
        gw.name = "wsgate " + name
        cls.gw[name] = gw
        mqtt_peers.wait_ready(gw.port, 200, timeout=20)
        return gw

    @classmethod
    def tearDownClass(cls):
        print("scale-out test: %.1f s in all" % (time.monotonic() - cls.t_start), flush=True)
        super().tearDownClass()

    # -- helpers --

    def port_of(self, name):
        return self.gw[name].port

    def client_id_of(self, name):
        return self.gw_cfg[name]["brokers"]["fleet"]["client_id"]

    def direct(self, name, path):
        c = FleetClient(self.port_of(name), path)
        self.h.backends.append(_Closer(c))
        return c

    def via_haproxy(self, path, timeout=10.0):
        """Connects through HAProxy, retrying while it answers 503 (no gateway up)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                c = FleetClient(self.hap.port, path)
                self.h.backends.append(_Closer(c))
                return c
            except (UpgradeRefused, OSError) as e:
                if time.monotonic() >= deadline:
                    raise AssertionError("no WebSocket through HAProxy within %ss: %s"
                                         % (timeout, e))
                time.sleep(0.1)

    def gw_metric(self, name, metric, **labels):
        return harness.metric(metrics(self.port_of(name)), metric, **labels)

    def deliver(self, pub, subs, topic, what, timeout=15.0):
        """Publishes numbered QoS 0 probes on `pub` (envelope) every 0.3 s until
        every client in `subs` has received one (a subscription made on one
        node reaches the others through the cluster's routes a moment later),
        then one QoS 1 message that each must receive next. Returns the
        seconds until the first probe had arrived everywhere."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        got = [False] * len(subs)
        i = 0
        while not all(got):
            if time.monotonic() >= deadline:
                self.fail("%s: probes on %r reached %d of %d subscribers within %ss"
                          % (what, topic, sum(got), len(subs), timeout))
            pub.send_json({"topic": topic, "payload": {"probe": i}, "qos": 0})
            i += 1
            step = time.monotonic() + 0.3
            for k, s in enumerate(subs):
                while not got[k]:
                    try:
                        m = s.next_json(max(0.01, step - time.monotonic()))
                    except AssertionError as e:
                        if "no message within" in str(e):
                            break
                        raise
                    if m.get("topic") != topic:
                        # an earlier step's message again (at least once)
                        self.assertTrue(isinstance(m.get("payload"), dict)
                                        and set(m["payload"]) <= {"msg", "probe"},
                                        "%s: unexpected %r" % (what, m))
                        continue
                    got[k] = True
        took = time.monotonic() - t0
        # drain the probes still under way, then one message that must come next
        time.sleep(0.3)
        for s in subs:
            _drain(s)
        rid = unique_id("m")
        self.assertEqual(pub.request({"topic": topic, "payload": {"msg": rid}, "qos": 1,
                                      "id": rid}), {"ack": rid}, what)
        want = {"topic": topic, "payload": {"msg": rid}}
        for s in subs:
            while True:
                m = s.next_json(10)
                if m == want:
                    break
                # at least once: a QoS 1 message of an earlier step may come again
                # (the gateway resends what was in flight when a node dropped it)
                self.assertTrue(isinstance(m.get("payload"), dict)
                                and set(m["payload"]) <= {"msg", "probe"}
                                and m["payload"] != want["payload"],
                                "%s: expected %r, got %r" % (what, want, m))
                print("%s: skipped a repeated earlier message %r" % (what, m), flush=True)
        return took

    # -- 1 --

    def test_1_cross_gateway(self):
        # straight to each gateway: publisher on A, subscriber on B, and back
        sub_b = self.direct("B", "/bus")
        sub_b.subscribe("fleet/chat/#", "s-b")
        sub_a = self.direct("A", "/bus")
        sub_a.subscribe("fleet/chat/#", "s-a")
        pub_a = self.direct("A", "/bus")
        pub_b = self.direct("B", "/bus")
        took = self.deliver(pub_a, [sub_b, sub_a], "fleet/chat/from-a", "A -> B")
        print("A -> B: first message through after %.2f s" % took, flush=True)
        took = self.deliver(pub_b, [sub_a, sub_b], "fleet/chat/from-b", "B -> A")
        print("B -> A: first message through after %.2f s" % took, flush=True)

        # raw route: browsers in one room on different gateways see each other
        room_a = self.direct("A", "/room/lobby")
        room_b = self.direct("B", "/room/lobby")
        deadline = time.monotonic() + 15
        n = 0
        while True:  # until B's subscription has spread through the cluster
            room_a.send_text("hello %d from A" % n)
            try:
                text = room_b.recv_text(0.3)
                break
            except AssertionError as e:
                if "no message within" not in str(e) or time.monotonic() > deadline:
                    raise
            n += 1
        self.assertRegex(text, r"^hello \d+ from A$")
        time.sleep(0.3)
        _drain(room_a)
        _drain(room_b)
        room_b.send_text("hi from B")
        self.assertEqual(room_a.recv_text(10), "hi from B")
        self.assertEqual(room_b.recv_text(10), "hi from B")  # its own subscription too

        self.hap.wait_idle()
        # through HAProxy: leastconn spreads four new connections 2 + 2, the
        # header says which gateway took each, and they all hear each other
        via = [self.via_haproxy("/bus") for _ in range(4)]
        served = sorted(c.served_by for c in via)
        self.assertEqual(served, ["wsgate-a", "wsgate-a", "wsgate-b", "wsgate-b"],
                         "HAProxy's X-Wsgate-Server on four new connections")
        for name in ("A", "B"):
            self.assertEqual(self.gw_metric(name, "wsgate_connections_active", route="bus"), 4,
                             "gateway %s: 2 direct + 2 through HAProxy" % name)
        for k, c in enumerate(via):
            c.subscribe("fleet/hap/#", "h%d" % k)
        pub = next(c for c in via if c.served_by == "wsgate-a")
        self.deliver(pub, via, "fleet/hap/x", "through HAProxy")
        # the gateway saw HAProxy's X-Forwarded-For (trusted_proxies): nothing to
        # check from outside beyond the connection working

    # -- 2 --

    def test_2_fanout_across_fleet(self):
        """N raw subscribers through HAProxy (split over both gateways), one
        Paho publisher on n3 (neither gateway's node), M messages of 64 bytes
        at QoS 0 as fast as they go."""
        n, m = FANOUT_SUBSCRIBERS, FANOUT_MESSAGES
        topic_room = "fan"
        self.hap.wait_idle()  # the previous step's clients are gone
        reader = FanoutReader()
        self.addCleanup(reader.close)
        for _ in range(n):
            c = self.via_haproxy("/room/%s" % topic_room)
            reader.add(c)
        split = {name: self.gw_metric(name, "wsgate_connections_active", route="room")
                 for name in ("A", "B")}
        print("fan-out: %d subscribers, gateway A %s, gateway B %s"
              % (n, split["A"], split["B"]), flush=True)
        self.assertEqual(split["A"] + split["B"], n)
        self.assertLessEqual(abs(split["A"] - split["B"]), 2, "leastconn split %r" % split)
        n3 = self.nats.nodes[2]
        pub = mqtt_peers.Publisher(self.h, n3.mqtt_port)
        topic = "fleet/rooms/%s" % topic_room
        # prime: probes until every subscriber has one (both gateways' broker
        # subscriptions live and known to n3)
        deadline = time.monotonic() + 20
        while reader.primed() < n:
            if time.monotonic() > deadline:
                self.fail("fan-out priming: %d of %d subscribers got a probe within 20 s"
                          % (reader.primed(), n))
            pub.publish(topic, b"probe", qos=0)
            reader.run(0.2)
        reader.run(0.5)  # the last probes
        dropped0 = self.dropped_total()
        t0 = time.monotonic()
        bulk = mqtt_peers.BulkPublisher(self.h, n3.mqtt_port, topic, 0, m, FANOUT_PAYLOAD,
                                        qos=0)
        reader.run_until(lambda: reader.delivered >= n * m, timeout=60,
                         idle_stop=3.0, done=lambda: bulk.proc.poll() is not None)
        t_last = reader.last_time or time.monotonic()
        bulk.wait(30)
        reader.run(0.5)
        dropped = self.dropped_total() - dropped0
        # from the first delivery to the last (the publisher is a child process
        # whose start-up is not the fleet's time)
        elapsed = max(1e-6, (reader.last_time or t_last) - (reader.first_time or t0))
        rate = reader.delivered / elapsed
        print("fan-out: %d messages x %d subscribers = %d deliveries expected; %d delivered, "
              "%d counted dropped by the gateways; first to last delivery %.2f s: %.0f "
              "deliveries/s (%.0f messages/s in, each to %d WebSockets)"
              % (m, n, n * m, reader.delivered, dropped, elapsed, rate, rate / n, n),
              flush=True)
        self.assertEqual(reader.out_of_order, 0, "messages out of order at a subscriber")
        self.assertEqual(reader.delivered + dropped, n * m,
                         "every message delivered or counted as dropped (slow_consumer)")
        self.assertGreaterEqual(reader.delivered, n * m * 0.9,
                                "more than 10%% dropped: %d of %d" % (n * m - reader.delivered,
                                                                      n * m))

    def dropped_total(self):
        total = 0
        for name in ("A", "B"):
            v = self.gw_metric(name, "wsgate_messages_dropped_total", route="room",
                               reason="slow_consumer")
            total += v or 0
        return total

    # -- 3 --

    def test_3_gateway_killed_clients_move(self):
        self.hap.wait_idle()  # the previous step's clients are gone
        clients = []
        for k in range(6):
            c = self.via_haproxy("/bus")
            c.subscribe("fleet/move/#", "m%d" % k)
            clients.append(c)
        on_a = [c for c in clients if c.served_by == "wsgate-a"]
        on_b = [c for c in clients if c.served_by == "wsgate-b"]
        self.assertEqual((len(on_a), len(on_b)), (3, 3), "leastconn split")
        self.deliver(on_b[0], clients, "fleet/move/before", "before the kill")

        gw_a = self.gw["A"]
        gw_a.expected_exit = -9  # SIGKILL: no clean exit to check
        t_kill = time.monotonic()
        os.kill(gw_a.proc.pid, 9)
        gw_a.proc.wait(5)
        for c in on_a:
            how = c.wait_gone(10)
            self.assertIn(how, ("eof", "reset"), "a client of the killed gateway: %r" % (how,))
        t_gone = time.monotonic() - t_kill
        # the survivor's clients are untouched
        for c in on_b:
            c.ping(b"still-here")
        # the orphans reconnect through HAProxy at once, before its health check
        # has noticed anything: `retries` + `redispatch` send them to B
        moved = []
        for k, old in enumerate(on_a):
            old.abort()
            c = self.via_haproxy("/bus", timeout=15)
            self.assertEqual(c.served_by, "wsgate-b", "a reconnect after A died")
            c.subscribe("fleet/move/#", "r%d" % k)
            moved.append(c)
        t_moved = time.monotonic() - t_kill
        print("gateway A killed: its clients saw the end after %.2f s and were resubscribed "
              "on B %.2f s after the kill" % (t_gone, t_moved), flush=True)
        self.assertEqual(self.gw_metric("B", "wsgate_connections_active", route="bus"), 6)
        self.deliver(moved[0], on_b + moved, "fleet/move/after", "after the move")
        self.hap.wait_states({"wsgate-a": "DOWN", "wsgate-b": "UP"}, timeout=15)
        print("HAProxy marked A down %.2f s after the kill" % (time.monotonic() - t_kill),
              flush=True)

        # A comes back (same port, same config): HAProxy takes it in again and,
        # leastconn, gives it the next new connection (B holds six)
        t_restart = time.monotonic()
        self.start_fleet_gateway("A")
        self.hap.wait_states({"wsgate-a": "UP", "wsgate-b": "UP"}, timeout=20)
        print("restarted A marked up after %.2f s" % (time.monotonic() - t_restart), flush=True)
        fresh = self.via_haproxy("/bus")
        self.assertEqual(fresh.served_by, "wsgate-a", "leastconn after A's return")
        fresh.subscribe("fleet/move/#", "f")
        self.deliver(on_b[1], on_b + moved + [fresh], "fleet/move/back", "after A's return")

    # -- 4 --

    def test_4_nats_node_killed_failover(self):
        node_a = self.nats.mqtt_node_of(self.client_id_of("A"))
        node_b = self.nats.mqtt_node_of(self.client_id_of("B"))
        self.assertIsNotNone(node_a, "gateway A's MQTT session is on no node")
        self.assertIsNotNone(node_b, "gateway B's MQTT session is on no node")
        self.assertEqual(node_a.server_name, self.first_node["A"], "A's first uri")
        self.assertEqual(node_b.server_name, self.first_node["B"], "B's first uri")
        third = next(n for n in self.nats.nodes if n is not node_a and n is not node_b)
        leaders = self.nats.stream_leaders()
        print("gateway A on NATS %s, gateway B on %s; JetStream leaders: %s"
              % (node_a.server_name, node_b.server_name,
                 ", ".join("%s %s" % kv for kv in sorted(leaders.items()))), flush=True)

        # The clients' standing subscriptions are QoS 0: NATS grants those as
        # soon as it can store the session. (A QoS 1 subscription also needs a
        # JetStream consumer, which NATS 2.9 may fail to create for a minute
        # after a node dies: see docs/scaling.md. The new subscription made on A
        # during the re-election below is QoS 1, to see those refusals retried.)
        sub_a = self.direct("A", "/bus")
        sub_a.subscribe("fleet/fail/#", "fa")
        sub_b = self.direct("B", "/bus")
        sub_b.subscribe("fleet/fail/#", "fb")
        room_b = self.direct("B", "/room/fail")
        pub_a = self.direct("A", "/bus")
        self.deliver(pub_a, [sub_a, sub_b], "fleet/fail/before", "before the node dies")
        late_a = self.direct("A", "/bus")
        # probes come from a plain MQTT client on the third node: NATS handles a
        # client's packets one at a time, so a gateway whose SUBSCRIBE waits on
        # JetStream (up to 4 s) has its publishes wait too
        probe = mqtt_peers.Publisher(self.h, third.mqtt_port)

        snap0 = {name: metrics(self.port_of(name)) for name in ("A", "B")}
        self.assertEqual(harness.metric(snap0["B"], "wsgate_mqtt_connected", broker="fleet"), 1)
        log_marks = {name: len(self.gw[name].log()) for name in ("A", "B")}
        nats_marks = {n.server_name: len(n.log()) for n in self.nats.nodes}

        node_b.kill()
        t0 = node_b.kill_time
        # a new subscription on A (whose node lives) while the cluster re-elects
        late_a.send_json({"subscribe": "fleet/late/#", "id": "late", "qos": 1})
        t_503 = t_up = t_sub = t_room = t_late = None
        late_answer = None
        i = 0
        next_probe = 0.0
        deadline = t0 + FAILOVER_TIMEOUT_S
        while t_sub is None or t_room is None or t_late is None:
            now = time.monotonic()
            if now > deadline:
                self.fail("after B's NATS node died: B's /readyz 503 at %s, 200 again at %s, "
                          "B's envelope subscriber served again at %s, its raw one at %s, A's "
                          "new subscription answered at %s (s after the kill); gave up after "
                          "%ss" % (_s(t_503, t0), _s(t_up, t0), _s(t_sub, t0), _s(t_room, t0),
                                   _s(t_late, t0), FAILOVER_TIMEOUT_S))
            if t_up is None:
                st = readyz(self.port_of("B")).status
                if st == 503 and t_503 is None:
                    t_503 = now
                if st == 200 and t_503 is not None:
                    t_up = now
            if now >= next_probe:
                probe.publish("fleet/fail/probe", json.dumps({"probe": i}), qos=0, wait=False)
                probe.publish("fleet/rooms/fail", "probe %d" % i, qos=0, wait=False)
                i += 1
                next_probe = now + 0.5
            if t_sub is None and _try_recv(sub_b, 0.05) is not None:
                t_sub = time.monotonic()
            if t_room is None and _try_recv(room_b, 0.05) is not None:
                t_room = time.monotonic()
            if t_late is None:
                m = _try_recv(late_a, 0.01)
                if m is not None:
                    late_answer = json.loads(m[1])
                    t_late = time.monotonic()

        logs = {name: self.gw[name].log()[log_marks[name]:] for name in ("A", "B")}
        snap1 = {name: metrics(self.port_of(name)) for name in ("A", "B")}

        def delta(name, metric):
            return (harness.metric(snap1[name], metric, broker="fleet")
                    - harness.metric(snap0[name], metric, broker="fleet"))

        node_now = self.nats.mqtt_node_of(self.client_id_of("B"))
        print("NATS %s killed: gateway B's /readyz 503 after %s s and 200 again after %s s "
              "(now on %s); its envelope subscriber served again after %.2f s, its raw one "
              "after %.2f s; B: %d reconnect(s), %d SUBSCRIBE(s) refused"
              % (node_b.server_name, _s(t_503, t0), _s(t_up, t0),
                 node_now.server_name if node_now else None, t_sub - t0, t_room - t0,
                 delta("B", "wsgate_mqtt_connects_total"),
                 delta("B", "wsgate_mqtt_subscribe_denied_total")), flush=True)
        print("gateway A (its node %s lives): a QoS 1 subscription asked for right after the "
              "kill was answered %r after %.2f s; A: %d reconnect(s), %d SUBSCRIBE(s) refused"
              % (node_a.server_name, late_answer, t_late - t0,
                 delta("A", "wsgate_mqtt_connects_total"),
                 delta("A", "wsgate_mqtt_subscribe_denied_total")), flush=True)
        for name in ("A", "B"):
            for line in logs[name].splitlines():
                if 'msg="mqtt' in line:
                    print("  %s: %s" % (name, line), flush=True)
        for n in self.nats.nodes:  # what the survivors said: elections, JetStream timeouts
            if n is node_b:
                continue
            lines = [l for l in n.log()[nats_marks[n.server_name]:].splitlines()
                     if ("[ERR]" in l or "[WRN]" in l or "leader" in l)
                     and "connect to route" not in l]
            for l in lines[:20]:
                print("  %s: %s" % (n.server_name, l[:260]), flush=True)
            if len(lines) > 20:
                print("  %s: ... %d more" % (n.server_name, len(lines) - 20), flush=True)

        # B failed over to another of its uris and restored its subscriptions
        self.assertIsNotNone(t_503, "/readyz never said 503 while B's node was dead")
        self.assertIsNotNone(t_up, "/readyz never said 200 again")
        self.assertIsNotNone(node_now, "B's MQTT session is on no node")
        self.assertNotEqual(node_now.server_name, node_b.server_name)
        self.assertEqual(harness.metric(snap1["B"], "wsgate_mqtt_connected", broker="fleet"), 1)
        self.assertEqual(readyz(self.port_of("B")).status, 200)
        self.assertGreaterEqual(delta("B", "wsgate_mqtt_connects_total"), 1,
                                "wsgate_mqtt_connects_total did not count B's reconnect")
        self.assertIn('msg="mqtt broker connection lost"', logs["B"])
        # every reconnect and every refusal is logged and counted, on both gateways
        for name in ("A", "B"):
            self.assertEqual(logs[name].count('msg="mqtt broker connected"'),
                             delta(name, "wsgate_mqtt_connects_total"),
                             "%s: one 'mqtt broker connected' line per counted connect" % name)
            refused = re.findall(r'msg="mqtt subscribe refused(?:, retrying|, clients told)?" broker=fleet '
                                 r'filter=(\S+)(?: retry_in_s=(\d+))?', logs[name])
            self.assertEqual(len(refused), delta(name, "wsgate_mqtt_subscribe_denied_total"),
                             "%s: one log line per counted refusal" % name)
            # per filter, the retries back off 1, 2, 4, 8, 16 s (starting again
            # at 1 s after a reconnect)
            for flt in {f for f, _ in refused}:
                delays = [int(d) for f, d in refused if f == flt and d]
                runs = []
                for d in delays:
                    if d == 1 or not runs:
                        runs.append([])
                    runs[-1].append(d)
                for run in runs:
                    self.assertEqual(run, [1, 2, 4, 8, 16][:len(run)],
                                     "%s: retry delays of %s: %r" % (name, flt, delays))
        # A's new subscription: granted after the refusals were retried, or, if
        # NATS refused all six attempts (31 s of retries), reported as failed
        denied_late = len(re.findall(r'msg="mqtt subscribe refused[^"]*" broker=fleet '
                                     r'filter=fleet/late/#', logs["A"]))
        if late_answer != {"ack": "late"}:
            self.assertEqual(late_answer.get("error", {}).get("code"), "subscribe_failed",
                             late_answer)
            self.assertEqual(late_answer["error"].get("request"), "late", late_answer)
            self.assertGreaterEqual(denied_late, 6, "subscribe_failed before the last retry")
            self.assertGreaterEqual(t_late - t0, 31.0)
        # both ways again with exact messages: B's clients hear A's, A's hear B's
        # (a QoS 1 message may come twice: at least once)
        _drain(sub_b, 0.5)
        _drain(room_b, 0.1)
        _drain(sub_a, 0.1)
        pub_b = self.direct("B", "/bus")
        self.deliver(pub_a, [sub_a, sub_b], "fleet/fail/after-a", "A -> B after the failover")
        self.deliver(pub_b, [sub_a, sub_b], "fleet/fail/after-b", "B -> A after the failover")
        self.assertEqual(self.gw_metric("A", "wsgate_mqtt_connected", broker="fleet"), 1)


# ---------------------------------------------------------------------------


def _s(t, t0):
    return None if t is None else round(t - t0, 2)


def _try_recv(c, timeout):
    try:
        return c.recv(timeout)
    except AssertionError as e:
        if "no message within" in str(e):
            return None
        raise


def _drain(c, seconds=0.05):
    c.early = []
    while _try_recv(c, seconds) is not None:
        pass


class _Closer:
    def __init__(self, c):
        self.c = c

    def close(self):
        self.c.abort()


class FanoutReader:
    """Reads many WebSocket connections at once (one selector, frames parsed
    by hand, server frames are unmasked). Counts the bulk messages
    (mqtt_peers.bulk_payload: 6 digits then 0xff) each connection receives and
    checks their order; a connection has `primed` once any message came."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.delivered = 0
        self.out_of_order = 0
        self.first_time = None
        self.last_time = None

    def add(self, client):
        st = {"c": client, "buf": bytearray(client.ws.buf), "primed": False, "last": -1,
              "n": 0}
        client.ws.buf = bytearray()
        client.sock.setblocking(False)
        self.sel.register(client.sock, selectors.EVENT_READ, st)
        self.conns.append(st)

    def primed(self):
        return sum(1 for st in self.conns if st["primed"])

    def _parse(self, st):
        buf = st["buf"]
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack("!H", buf[2:4])[0]
                pos = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack("!Q", buf[2:10])[0]
                pos = 10
            if len(buf) < pos + n:
                return
            op = buf[0] & 0x0F
            payload = bytes(buf[pos:pos + n])
            del buf[:pos + n]
            if op == OP_PING:
                st["c"].sock.setblocking(True)
                st["c"].ws.send(OP_PONG, payload)
                st["c"].sock.setblocking(False)
                continue
            if op not in (OP_TEXT, OP_BINARY):
                continue
            st["primed"] = True
            if len(payload) > 7 and payload[6] == 0xFF:
                seq = int(payload[:6])
                if seq <= st["last"]:
                    self.out_of_order += 1
                st["last"] = seq
                st["n"] += 1
                self.delivered += 1
                self.last_time = time.monotonic()
                if self.first_time is None:
                    self.first_time = self.last_time

    def run(self, seconds):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            for key, _ in self.sel.select(min(left, 0.1)):
                st = key.data
                try:
                    data = key.fileobj.recv(262144)
                except (BlockingIOError, InterruptedError):
                    continue
                if not data:
                    self.sel.unregister(key.fileobj)
                    continue
                st["buf"] += data
                self._parse(st)

    def run_until(self, pred, timeout, idle_stop, done):
        """Reads until pred(), or until `done()` and nothing arrived for
        idle_stop seconds, or the timeout."""
        end = time.monotonic() + timeout
        while not pred() and time.monotonic() < end:
            before = self.delivered
            self.run(0.2)
            if self.delivered == before and done():
                quiet_since = time.monotonic()
                while (self.delivered == before and time.monotonic() - quiet_since < idle_stop):
                    self.run(0.2)
                if self.delivered == before:
                    return

    def close(self):
        for st in self.conns:
            try:
                self.sel.unregister(st["c"].sock)
            except (KeyError, ValueError):
                pass
        self.sel.close()


if __name__ == "__main__":
    harness.main()

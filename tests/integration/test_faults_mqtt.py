"""test_faults_mqtt.py - fault injection on MQTT routes with a real mosquitto
(issue 8). Each case prints its figures (a line starting "FAULT").

- The broker is killed (SIGKILL) and restarted under a steady QoS 1 publish
  load from four envelope clients: every publish is eventually acknowledged
  ({"ack": id}, which the gateway sends only after the broker's PUBACK), and
  every acknowledged message reaches a durable Paho subscriber (received ⊇
  acked). Sent, acknowledged and received are printed; duplicates (at least
  once) are allowed and counted. mosquitto runs with persistence so that the
  subscriber's session survives the crash, as in test_mqtt_broker_down.py;
  the topic of each message names it (load/c<client>/<seq>), so a loss can
  be traced in the broker's log to the broker or to the gateway.
- An envelope client holding a subscription vanishes without a close frame
  (FIN, then RST on another): its on_disconnect presence message is
  published, the gateway UNSUBSCRIBEs the filter it no longer needs, and the
  route's active gauge returns to 0 (test_mqtt_raw.py covers presence on a
  raw route; this adds the envelope route and the release of the filter)."""

import json
import select
import time
import unittest

import harness
from harness import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from mqtt_peers import MqttTestCase, unique_id
from test_faults import masked_frame, note, parse_frames

BUS = {"name": "bus", "path": "/bus/{who}", "type": "mqtt", "broker": "main",
       "format": "envelope",
       "publish": {"allow": ["load/#"], "qos": 1},
       "subscribe": {"allow": ["vanish/#"]},
       "on_connect": {"topic": "presence/{who}", "payload": "up", "qos": 1},
       "on_disconnect": {"topic": "presence/{who}", "payload": "down", "qos": 1}}

CLIENTS = 4
RATE = 50  # publishes a second per client
RUN_S = 8.0
KILL_AT = 2.0
DOWN_S = 3.0


def json_frame(obj):
    """A masked text frame (any length) carrying obj as JSON."""
    return harness.encode_frame(OP_TEXT, json.dumps(obj).encode())


class LoadClient:
    """An envelope client driven without threads: send() a publish now,
    poll() reads whatever arrived (acks, errors), answering pings."""

    def __init__(self, test, index):
        self.index = index
        self.c = test.ws("/bus/load%d" % index)
        self.sock = self.c.sock
        self.sock.settimeout(5.0)
        self.buf = bytearray(self.c.ws.buf)
        self.sent, self.acked, self.errors, self.other = [], [], [], []
        self.error_times = []
        self.closed = None

    def topic(self, seq):
        return "load/c%d/%d" % (self.index, seq)

    def send(self, seq):
        self.sock.sendall(json_frame({"topic": self.topic(seq), "payload": "m%d" % seq,
                                      "qos": 1, "id": seq}))
        self.sent.append(seq)

    def poll(self):
        while True:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return
            data = self.sock.recv(65536)
            if not data:
                self.closed = self.closed or "eof"
                return
            self.buf += data
            for op, payload in parse_frames(self.buf):
                if op == OP_PING:
                    self.sock.sendall(masked_frame(OP_PONG, payload))
                elif op == OP_CLOSE:
                    self.closed = payload
                elif op == OP_TEXT:
                    msg = json.loads(payload)
                    if "ack" in msg:
                        self.acked.append(msg["ack"])
                    elif "error" in msg:
                        self.errors.append(msg["error"])
                        self.error_times.append(time.monotonic())
                    else:
                        self.other.append(msg)


class BrokerCrashUnderLoadTest(MqttTestCase):
    def test_broker_killed_and_restarted_under_qos1_load(self):
        self.start_mqtt([BUS], persistence=True)
        sub = self.subscriber("load/#", qos=1, client_id=unique_id("test-durable"),
                              clean_session=False)
        time.sleep(1.5)  # mosquitto saves its sessions every second (autosave_interval 1)
        clients = [LoadClient(self, i) for i in range(CLIENTS)]
        seq = 0
        t0 = time.monotonic()
        killed_at = restarted_at = ready_at = None
        while time.monotonic() - t0 < RUN_S:
            now = time.monotonic() - t0
            if killed_at is None and now >= KILL_AT:
                self.mosq.kill()
                killed_at = now
            elif killed_at is not None and restarted_at is None and now >= KILL_AT + DOWN_S:
                self.mosq.restart()
                restarted_at = time.monotonic() - t0
            for c in clients:
                c.send(seq)
                c.poll()
            seq += 1
            if ready_at is None and restarted_at is not None and all(
                    c.acked and c.acked[-1] >= seq - 5 for c in clients):
                ready_at = time.monotonic() - t0
            pause = t0 + seq / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        sending_done = time.monotonic() - t0
        # every publish is answered once the broker is back
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
                len(c.acked) + len(c.errors) < len(c.sent) and c.closed is None
                for c in clients):
            for c in clients:
                c.poll()
            time.sleep(0.02)
        sent = {(c.index, s) for c in clients for s in c.sent}
        acked = {(c.index, s) for c in clients for s in c.acked}
        refused = [(c.index, e) for c in clients for e in c.errors]
        # what the durable subscriber got
        want = len(acked)
        sub_deadline = time.monotonic() + 15
        while time.monotonic() < sub_deadline:
            got = {m[0] for m in sub.snapshot()}
            if len(got) >= want:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        msgs = sub.snapshot()
        received = set()
        for topic, payload, _, _ in msgs:
            _, ci, s = topic.split("/")
            received.add((int(ci[1:]), int(s)))
        lost = sorted(acked - received)
        dups = len(msgs) - len(received)
        at_broker = {t for t, _, _ in self.mosq.received_publishes(self.gw_id)}
        lost_at_broker = [k for k in lost if "load/c%d/%d" % k in at_broker]
        acks_in_flight_order = all(c.acked == sorted(c.acked) for c in clients)
        for c in clients:
            if c.errors:
                ids = [e.get("request") for e in c.errors]
                codes = sorted({e.get("code") + ": " + e.get("message", "") for e in c.errors})
                note("client %d: %d publishes refused, ids %s..%s, answered %.2f-%.2f s into the "
                     "run (sent %.2f-%.2f s): %s", c.index, len(ids), min(ids), max(ids),
                     c.error_times[0] - t0, c.error_times[-1] - t0, min(ids) / RATE,
                     max(ids) / RATE, codes)
        gw_lines = [l for l in self.gw.log().splitlines()
                    if "level=warn" in l or "level=error" in l or "mqtt" in l]
        note("wsgate log about the broker: %s", " | ".join(gw_lines[:6]))
        note("broker SIGKILL under QoS 1 load: %d envelope clients x %d/s for %.1f s, broker "
             "down %.1f-%.1f s, acks flowing again at %s s: sent %d, acked %d, refused %d %r, "
             "received by the durable subscriber %d distinct (%d duplicates), acked but not "
             "received %d %r (of those, logged as received by mosquitto: %d); acks in "
             "order per client: %s; gateway connects %d",
             CLIENTS, RATE, sending_done, killed_at, restarted_at,
             "%.1f" % ready_at if ready_at else None, len(sent), len(acked), len(refused),
             refused[:3], len(received), dups, len(lost), lost[:10], len(lost_at_broker),
             acks_in_flight_order, self.mosq.connects(self.gw_id))
        self.assertIsNotNone(killed_at)
        self.assertIsNotNone(restarted_at)
        for c in clients:
            self.assertIsNone(c.closed, "client %d was closed: %r" % (c.index, c.closed))
            self.assertEqual(c.other, [], "client %d got unexpected messages" % c.index)
        self.assertEqual(lost, [], "acknowledged QoS 1 messages the subscriber never got")
        self.assertEqual(refused, [], "publishes refused across the broker restart (docs/MQTT.md: "
                         "held while the broker is down, sent after the reconnect)")
        self.assertEqual(acked, sent, "publishes never acknowledged: %r"
                         % sorted(sent - acked)[:10])
        self.assertTrue(received <= sent, "received messages nobody sent")
        for c in clients:
            c.c.close()


class EnvelopeVanishTest(MqttTestCase):
    def test_envelope_client_vanishes_fin_and_rst(self):
        self.start_mqtt([BUS])
        presence = self.subscriber("presence/#")
        figures = []
        for i, how in enumerate(["fin", "rst"]):
            who = "v%s" % how
            c = self.ws("/bus/%s" % who)
            presence.wait_for(2 * i + 1, 10)
            c.send_json({"subscribe": "vanish/%s" % how, "id": "s"})
            self.assertEqual(c.recv_json(), {"ack": "s"})
            self.wait_gw_subscribed("vanish/%s" % how)
            t0 = time.monotonic()
            if how == "fin":
                c.abort()
            else:
                c.reset()
            got = presence.wait_for(2 * i + 2, 10)
            t_presence = time.monotonic() - t0
            self.assertEqual([(t, p) for t, p, _, _ in got[2 * i:]],
                             [("presence/%s" % who, b"up"), ("presence/%s" % who, b"down")])
            self.mosq.wait_filter("UNSUBSCRIBE", self.gw_id, "vanish/%s" % how, 1, 10)
            t_unsub = time.monotonic() - t0
            ok = False
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.metric("wsgate_connections_active", route="bus") == 0:
                    ok = True
                    break
                time.sleep(0.05)
            t_gone = time.monotonic() - t0
            self.assertTrue(ok, "wsgate_connections_active{route=bus} still %r"
                            % self.metric("wsgate_connections_active", route="bus"))
            figures.append("%s: presence down after %.0f ms, UNSUBSCRIBE after %.0f ms, "
                           "gauge 0 after %.0f ms" % (how, t_presence * 1e3, t_unsub * 1e3,
                                                      t_gone * 1e3))
            self.assertLess(t_presence, 2.0)
            self.assertLess(t_unsub, 2.0)
        note("envelope client vanishes: %s", "; ".join(figures))
        time.sleep(0.3)
        self.assertEqual(len(presence.snapshot()), 4, "extra presence messages: %r"
                         % presence.snapshot())


if __name__ == "__main__":
    unittest.main(verbosity=2)

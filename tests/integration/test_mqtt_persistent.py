"""test_mqtt_persistent.py - brokers.NAME.persistent_session (docs/MQTT.md,
"Persistent sessions"; SPEC-2 F): no QoS 1 message lost across the broker's
restarts or the gateway's own, and the reconnect within a second of the
broker being back.

A real mosquitto with persistence on (a temp config: `persistence true`,
`persistence_location` in the test's temp dir, autosave every second),
killed (SIGKILL) and started again on the same port. It also listens on a
second port, the publishers' side door: to publish "while the gateway is
reconnecting" deterministically, mosquitto is first started with the side
port only (the gateway's port still refuses), the messages are published
there, and mosquitto is stopped (SIGTERM: it saves them) and started with
both ports. Then more messages are published the instant it is back, racing
the gateway's reconnect.

- persistent_session true (3.1.1 and 5): every message reaches the WebSocket
  subscriber, in order.
- persistent_session false (the default): the ones published before the
  gateway reconnected are lost (its session is clean: the broker keeps
  nothing for it).
- The gateway reconnects < 1 s after the broker accepts again, although its
  backoff had grown past 4 s (the port probe).
- The gateway restarted (SIGTERM, started again): what was published
  meanwhile for a filter a client holds again within the resume window
  reaches it; what nobody holds again is dropped, counted
  (wsgate_mqtt_messages_unrouted_total), and the session is reset so that
  the broker stops queueing for the filter nobody holds."""

import calendar
import re
import time

import harness
from mqtt_peers import (HOST, Mosquitto, MqttTestCase, Publisher, gateway_config, metrics,
                        unique_id, wait_ready)

TOPIC = "devices/d1/state/x"
DEVICES = {"name": "devices", "path": "/devices/{device}", "type": "mqtt", "broker": "main",
           "subscribe": [{"filter": "devices/{device}/state/#", "qos": 1}]}
DOWN_FOR_S = 9.0  # long enough for the backoff to pass 4 s (0.5, 1, 2, 4, ...)
RESUME_HOLD_S = 10.0  # mqtt_broker.c RESUME_HOLD_US


class TwoPortMosquitto(Mosquitto):
    """mosquitto with persistence, on the gateway's port and a side port for
    publishers; main_open False leaves the gateway's port closed."""

    def __init__(self, h):
        self.side_port = harness.free_port()
        self.main_open = True
        super().__init__(h, persistence=True)

    def _write_config(self):
        super()._write_config()
        with open(self.conf_path) as f:
            lines = f.read().splitlines()
        if not self.main_open:
            lines = [l for l in lines if not l.startswith("listener ")]
        lines.append("listener %d %s" % (self.side_port, HOST))
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=10.0):
        self._write_config()
        if self.main_open:
            return super().start(timeout)
        main, self.port = self.port, self.side_port  # wait on the side port
        try:
            return super().start(timeout)
        finally:
            self.port = main


def publish_all(port, prefix, n, topic=TOPIC):
    """Publishes prefix-0 .. prefix-(n-1) at QoS 1, each PUBACKed."""
    p = Publisher(None, port, client_id=unique_id("test-pub"))
    try:
        for i in range(n):
            p.publish(topic, "%s-%d" % (prefix, i), qos=1, timeout=10)
    finally:
        p.close()


def collect(ws, want, timeout=10.0, quiet=1.5):
    """Text messages until `want` came (then `quiet` s more, to see extras)
    or `timeout`."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait = quiet if len(got) >= want else max(0.05, deadline - time.monotonic())
        try:
            got.append(ws.recv_text(timeout=wait))
        except AssertionError as e:
            if "no message within" not in str(e):
                raise
            if len(got) >= want:
                break
    return got


def gw_publishes(mosq, client_id, topic):
    """PUBLISH packets mosquitto sent to client_id on topic."""
    rx = re.compile(r"^Sending PUBLISH to %s \(.*'%s'" % (re.escape(client_id), re.escape(topic)))
    return sum(1 for l in mosq.log_lines() if rx.match(l))


class PersistentSessionTest(MqttTestCase):
    def start_gw(self, broker_extra, persistence=True):
        self.mosq = TwoPortMosquitto(self.h)
        self.gw_id = unique_id("wsgate-test")
        self.port = harness.free_port()
        self.config = gateway_config(self.port, self.mosq, [DEVICES], self.gw_id,
                                     broker_extra=broker_extra)
        self.gw = self.h.start_gateway(self.config)
        wait_ready(self.port, 200, timeout=15.0)
        self.mosq.wait_connected(self.gw_id, 1, timeout=5.0)

    def wait_reconnect(self, t0_wall, connected_lines, timeout=20.0):
        """Seconds from t0_wall (time.time()) to the gateway's next "mqtt
        broker connected" log line (its own millisecond timestamp)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = [l for l in self.gw.log().splitlines() if 'msg="mqtt broker connected"' in l]
            if len(lines) > connected_lines:
                m = re.match(r"ts=(\d+-\d+-\d+T\d+:\d+:\d+)\.(\d+)Z ", lines[connected_lines])
                t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
                return t + int(m.group(2)) / 1000.0 - t0_wall
            time.sleep(0.02)
        raise AssertionError("the gateway did not reconnect within %ss:\n%s"
                             % (timeout, self.gw.log()[-3000:]))

    def connected_lines(self):
        return self.gw.log().count('msg="mqtt broker connected"')

    def broker_restart(self, broker_extra, n_down=50, n_back=50):
        """The broker crashes; n_down messages are published while the
        gateway cannot reach it, n_back the instant it is back. Returns
        (received texts, reconnect seconds)."""
        self.start_gw(broker_extra)
        ws = self.ws("/devices/d1")
        self.wait_gw_subscribed("devices/d1/state/#")
        publish_all(self.mosq.port, "before", 3)
        self.assertEqual(collect(ws, 3, quiet=0.2), ["before-%d" % i for i in range(3)])
        time.sleep(2.5)  # mosquitto saves sessions every 1-2 s (autosave_interval 1)

        self.mosq.kill()
        killed = time.monotonic()
        wait_ready(self.port, 503, timeout=5)
        # Published while the gateway is away: mosquitto up on the side port
        # only, then stopped (it saves what it queued) and started again.
        self.mosq.main_open = False
        self.mosq.start()
        publish_all(self.mosq.side_port, "down", n_down)
        self.mosq.stop()
        self.mosq.main_open = True
        time.sleep(max(0.0, DOWN_FOR_S - (time.monotonic() - killed)))

        before = self.connected_lines()
        self.mosq.start()  # returns once the gateway's port accepts
        t0, t0_wall = time.monotonic(), time.time()
        publish_all(self.mosq.side_port, "back", n_back)  # races the reconnect
        reconnect_s = self.wait_reconnect(t0_wall, before)
        wait_ready(self.port, 200, timeout=5)
        print("gateway reconnected %.3f s after the broker accepted again (down %.1f s)"
              % (reconnect_s, t0 - killed), flush=True)
        got = collect(ws, n_down + n_back, timeout=10)
        # and live traffic flows
        self.wait_gw_subscribed("devices/d1/state/#", count=2)
        publish_all(self.mosq.side_port, "after", 2)
        after = collect(ws, 2, quiet=0.3)
        self.assertEqual(after, ["after-0", "after-1"])
        return got, reconnect_s

    def assert_all(self, got, n_down, n_back):
        down = [m for m in got if m.startswith("down-")]
        back = [m for m in got if m.startswith("back-")]
        print("delivered: %d/%d published during the outage, %d/%d just after it"
              % (len(down), n_down, len(back), n_back), flush=True)
        self.assertEqual(down, ["down-%d" % i for i in range(n_down)])
        self.assertEqual(back, ["back-%d" % i for i in range(n_back)])
        self.assertEqual(len(got), n_down + n_back, "duplicates or strays: %r" % got)

    def test_broker_restart_persistent_311(self):
        got, reconnect_s = self.broker_restart({"persistent_session": True})
        self.assert_all(got, 50, 50)
        self.assertLess(reconnect_s, 1.0)
        self.assertIn("session=resumed", self.gw.log())

    def test_broker_restart_persistent_mqtt5(self):
        got, reconnect_s = self.broker_restart(
            {"persistent_session": True, "version": "5", "session_expiry_s": 120})
        self.assert_all(got, 50, 50)
        self.assertLess(reconnect_s, 1.0)
        self.assertIn("session=resumed", self.gw.log())

    def test_broker_restart_clean_loses_what_came_before_the_reconnect(self):
        got, reconnect_s = self.broker_restart({})
        down = [m for m in got if m.startswith("down-")]
        back = [m for m in got if m.startswith("back-")]
        print("clean session: delivered %d/50 published during the outage, %d/50 just after "
              "it (those published before the gateway's SUBSCRIBE are lost)"
              % (len(down), len(back)), flush=True)
        self.assertEqual(down, [], "a clean session keeps nothing for the gateway")
        self.assertLess(len(back), 50, "the publisher should have beaten the reconnect")
        self.assertLess(reconnect_s, 1.0)

    def test_broker_back_right_after_a_failed_attempt(self):
        """The port probe reconnects as soon as the broker is back, also when
        it comes back just after one of the gateway's attempts failed: the
        probe used to forget, at each attempt, that it had seen the port
        closed, and such a broker waited out the whole backoff (8.3 s once
        in test_broker_restart_persistent_311)."""
        self.start_gw({"persistent_session": True})
        self.mosq.kill()
        wait_ready(self.port, 503, timeout=5)
        # The second failed attempt: the next one is 2 s (+-20 %) away.
        deadline = time.monotonic() + 10
        while self.gw.log().count('msg="mqtt broker unreachable"') < 2:
            self.assertLess(time.monotonic(), deadline, self.gw.log()[-2000:])
            time.sleep(0.01)
        before = self.connected_lines()
        self.mosq.start()  # returns once the gateway's port accepts
        t0_wall = time.time()
        reconnect_s = self.wait_reconnect(t0_wall, before)
        print("gateway reconnected %.3f s after the broker accepted again (backoff 1.6-2.4 s)"
              % reconnect_s, flush=True)
        self.assertLess(reconnect_s, 1.2)

    def test_gateway_restart(self):
        """Contract: the session outlives the gateway's restart; what was
        queued for it goes to clients that hold the filter again within the
        resume window (10 s after the CONNACK), in order; the rest is dropped
        and counted, and the session reset so nobody's filter stays."""
        extra = {"persistent_session": True}
        self.start_gw(extra)
        ws1 = self.ws("/devices/d1")
        ws2 = self.ws("/devices/d2")
        self.wait_gw_subscribed("devices/d1/state/#")
        self.wait_gw_subscribed("devices/d2/state/#")
        self.assertEqual(self.gw.stop(), 0)
        self.assertEqual(self.mosq.packets("UNSUBSCRIBE", self.gw_id), [],
                         "a persistent session keeps its filters over a graceful restart")
        ws1.abort()
        ws2.abort()
        publish_all(self.mosq.port, "while-restarting", 20)
        publish_all(self.mosq.port, "nobody", 7, topic="devices/d2/state/x")
        connects = self.mosq.connects(self.gw_id)

        self.gw = self.h.start_gateway(self.config)
        ws1 = self.ws("/devices/d1")  # d1 comes back, d2 does not
        got = collect(ws1, 20, timeout=10)
        print("gateway restart: %d/20 published meanwhile reached the client that came back"
              % len(got), flush=True)
        self.assertEqual(got, ["while-restarting-%d" % i for i in range(20)])
        self.assertIn("session=resumed", self.gw.log())

        # After the window: d2's 7 dropped and counted, the session reset.
        deadline = time.monotonic() + RESUME_HOLD_S + 10
        while True:
            m = metrics(self.port)
            unrouted = harness.metric(m, "wsgate_mqtt_messages_unrouted_total", broker="main")
            if unrouted:
                break
            self.assertLess(time.monotonic(), deadline, "nothing counted as unrouted")
            time.sleep(0.2)
        self.assertEqual(unrouted, 7)
        self.mosq.wait_connected(self.gw_id, connects + 3, timeout=10)  # start, clean, persistent
        wait_ready(self.port, 200, timeout=10)
        self.wait_gw_subscribed("devices/d1/state/#", count=3)
        sent_d2 = gw_publishes(self.mosq, self.gw_id, "devices/d2/state/x")
        publish_all(self.mosq.port, "live", 1)
        publish_all(self.mosq.port, "dropped-filter", 1, topic="devices/d2/state/x")
        self.assertEqual(collect(ws1, 1, quiet=1.0), ["live-0"])
        self.assertEqual(gw_publishes(self.mosq, self.gw_id, "devices/d2/state/x"), sent_d2,
                         "after the reset the broker no longer has the filter nobody holds")


if __name__ == "__main__":
    harness.main()

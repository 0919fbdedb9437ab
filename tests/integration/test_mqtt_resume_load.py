"""test_mqtt_resume_load.py - a persistent session resumed after the broker
went away under publish load (issue 20; docs/MQTT.md, "Persistent sessions";
the reconnect loop the soak found, docs/soak.md).

When mosquitto stops while the gateway's Paho client is writing QoS 1
PUBLISHes, some of them fail on their first write (EPIPE / ECONNRESET). Paho
1.3.12 has such a publish in its session's outbound list already, yet frees
its topic and payload with the failed command; resuming the session, it
re-sends the list, that one from freed memory: mosquitto drops the
connection after every CONNACK ("malformed packet"), for ever. The gateway
renews its Paho client before it reconnects when that happened (the
broker's side of the session is kept; the publishes are the gateway's to
send again anyway).

The gateway runs with MALLOC_PERTURB_ so that freed memory is overwritten at
once: a use of it shows every time, not only when the allocator happened to
reuse it (the ASan build reports it as a heap-use-after-free).

Checked: the gateway reconnects once and becomes ready; mosquitto saw no
malformed packet; a durable subscriber on the broker gets every message the
WebSocket clients sent, at least once."""

import threading
import time

import harness
from mqtt_peers import (Mosquitto, MqttTestCase, Subscriber, gateway_config, unique_id,
                        wait_ready)

ROUTE = {"name": "dev", "path": "/dev/{device}", "type": "mqtt", "broker": "main",
         "publish": {"topic": "load/{device}/up", "qos": 1}}
CLIENTS = 4
PER_CLIENT = 3000  # per outage
OUTAGES = 10
RENEWED = 'msg="mqtt client renewed'


class ResumeUnderLoadTest(MqttTestCase):
    def send_all(self, clients, sent):
        """The clients send "<outage>.<k>-<i>" as fast as the gateway takes
        them, so that its Paho client is writing when the broker goes away."""
        for i in range(PER_CLIENT):
            for k, c in enumerate(clients):
                p = b"%d.%d-%d" % (self.outages, k, i)
                c.send_binary(p)
                sent.append(p)
            if i % 50 == 49:
                time.sleep(0.001)

    def outage(self, clients):
        """Stops mosquitto (SIGTERM: it saves the sessions) a third of the way
        into a stream of sends, lets the rest be sent while it is down, and
        starts it again. Returns the payloads sent."""
        self.outages += 1
        sent = []
        sender = threading.Thread(target=self.send_all, args=(clients, sent))
        sender.start()
        try:
            deadline = time.monotonic() + 20
            while len(sent) < CLIENTS * PER_CLIENT // 3 and time.monotonic() < deadline:
                time.sleep(0.002)
            self.mosq.stop()
        finally:
            sender.join()
        time.sleep(0.5)  # the gateway holds what it could not send meanwhile
        self.mosq.start()
        return set(sent)

    def test_resume_after_broker_stopped_under_load(self):
        self.mosq = Mosquitto(self.h, persistence=True)
        # Durable: its session (and what is queued for it) outlives the restart.
        sub = Subscriber(self.h, self.mosq.port, "load/#", qos=1, clean_session=False)
        self.gw_id = unique_id("wsgate-test")
        self.port = harness.free_port()
        config = gateway_config(self.port, self.mosq, [ROUTE], self.gw_id,
                                limits={"max_queue_bytes": 4 << 20},
                                broker_extra={"persistent_session": True})
        self.gw = self.h.start_gateway(config, env={"MALLOC_PERTURB_": "165"})
        wait_ready(self.port, 200, timeout=15.0)
        self.mosq.wait_connected(self.gw_id, 1, timeout=5.0)
        clients = [self.ws("/dev/d%d" % k) for k in range(CLIENTS)]
        self.outages = 0

        # The loop needs a publish that failed on the dying connection; that
        # is timing (the broker closes while Paho writes): up to OUTAGES outages.
        sent = set()
        for attempt in range(OUTAGES):
            connects = self.mosq.connects(self.gw_id)
            sent |= self.outage(clients)
            wait_ready(self.port, 200, timeout=15.0)
            time.sleep(2.0)  # a looping session would have been dropped again by now
            malformed = [l for l in self.mosq.log_lines() if "malformed" in l]
            self.assertEqual(malformed, [], "mosquitto dropped the gateway:\n%s"
                             % self.gw.log()[-3000:])
            self.assertEqual(self.mosq.connects(self.gw_id), connects + 1,
                             "the gateway should reconnect once:\n%s" % self.gw.log()[-3000:])
            wait_ready(self.port, 200, timeout=1.0)
            if RENEWED in self.gw.log():
                break
        renewed = self.gw.log().count(RENEWED)
        print("outages: %d; Paho clients renewed after a publish failed on a dying "
              "connection: %d" % (attempt + 1, renewed), flush=True)
        self.assertGreater(renewed, 0, "no publish failed on the dying connection in %d "
                           "outages: the case this test is about did not happen" % OUTAGES)

        # Every message reaches the durable subscriber (at least once).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = {m[1] for m in sub.snapshot()}
            if sent <= got:
                break
            time.sleep(0.2)
        got_all = sub.snapshot()
        missing = sent - {m[1] for m in got_all}
        print("sent %d, received %d (%d duplicates), missing %d"
              % (len(sent), len(got_all), len(got_all) - len({m[1] for m in got_all}),
                 len(missing)), flush=True)
        self.assertEqual(missing, set(), "lost: %r" % sorted(missing)[:20])


if __name__ == "__main__":
    harness.main()

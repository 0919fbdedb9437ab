"""test_mqtt_shutdown.py - SIGTERM while brokers stream to clients: the
gateway exits 0 within the grace period and, in the sanitizer build, with no
ASan/LeakSanitizer report (docs/ARCHITECTURE.md, "Process state").

Before the mqtt backend type had a shutdown hook, the second test aborted
4 times in 6 ("corrupted size vs. prev_size"): the retired session's close
timer, scheduled when its last client went during the drain, was unlinked
from the destroyed context's timer list when the broker was freed.

Paho's threads keep queueing messages while the loop drains and the lws
context is destroyed; they must stop waking the loop before the context
goes (the mqtt backend type's shutdown hook). Every broker session, the
current ones and those a reload retired while they still serve a client,
is freed once, from struct gateway's `mqtt`."""

import json
import time
import unittest

import harness
from mqtt_peers import (BulkPublisher, Mosquitto, MqttTestCase, WsClient, gateway_config,
                        unique_id, wait_ready)

ROUNDS = 3
STREAM_N = 20000  # more than a round lasts: the broker is still sending at SIGTERM
STREAM_SIZE = 512


def stop_publisher(pub):
    harness.stop_process(pub.proc)
    pub.proc.stdout.close()


def feed_route(name="feed"):
    return {"name": name, "path": "/" + name, "type": "mqtt", "broker": "main",
            "subscribe": [{"filter": name + "/#"}]}


class ShutdownUnderTrafficTest(MqttTestCase):
    def start_gateway_on(self, mosq, client_id):
        port = harness.free_port()
        cfg = gateway_config(port, mosq, [feed_route()], client_id)
        gw = self.h.start_gateway(cfg)
        wait_ready(port, 200, timeout=15.0)
        return gw, port, cfg

    def wait_streaming(self, client, at_least=50, timeout=20.0):
        """Reads until `at_least` messages arrived: the broker is streaming."""
        deadline = time.monotonic() + timeout
        got = 0
        while got < at_least:
            if time.monotonic() > deadline:
                raise AssertionError("only %d messages within %ss" % (got, timeout))
            client.recv(timeout=max(0.1, deadline - time.monotonic()))
            got += 1
        return got

    def assert_clean_stop(self, gw, what):
        rc = gw.stop()
        problems = harness.gateway_exit_problems(gw, rc, gw.log(), False)
        self.assertEqual(problems, [], "%s:\n%s" % (what, gw.log()[-3000:]))
        self.assertIn("wsgate stopped", gw.log(), what)

    def test_sigterm_while_the_broker_streams(self):
        mosq = Mosquitto(self.h)
        for round_no in range(ROUNDS):
            client_id = unique_id("wsgate-down")
            gw, port, _ = self.start_gateway_on(mosq, client_id)
            client = WsClient(port, "/feed")
            mosq.wait_filter("SUBSCRIBE", client_id, "feed/#")
            pub = BulkPublisher(self.h, mosq.port, "feed/x", 0, STREAM_N, STREAM_SIZE, qos=0)
            try:
                self.wait_streaming(client)
                self.assert_clean_stop(gw, "round %d" % round_no)
            finally:
                stop_publisher(pub)
                client.abort()

    def test_sigterm_with_a_retired_broker_session_streaming(self):
        """A reload replaces the broker (new client id: a new session); the
        old session stays, retired, for the client it serves, and both
        stream when SIGTERM comes."""
        mosq = Mosquitto(self.h)
        client_id = unique_id("wsgate-r1")
        gw, port, cfg = self.start_gateway_on(mosq, client_id)
        old = WsClient(port, "/feed")
        mosq.wait_filter("SUBSCRIBE", client_id, "feed/#")

        new_id = unique_id("wsgate-r2")
        cfg2 = dict(cfg, brokers={"main": dict(cfg["brokers"]["main"], client_id=new_id)})
        with open(gw.config_path, "w") as f:
            json.dump(cfg2, f)
        harness.reload_and_wait(gw, 1)
        self.assertIn("config reloaded", gw.log())
        wait_ready(port, 200)
        new = WsClient(port, "/feed")
        mosq.wait_filter("SUBSCRIBE", new_id, "feed/#")

        pub = BulkPublisher(self.h, mosq.port, "feed/x", 0, STREAM_N, STREAM_SIZE, qos=0)
        try:
            self.wait_streaming(old)
            self.wait_streaming(new)
            self.assert_clean_stop(gw, "with a retired session")
        finally:
            stop_publisher(pub)
            old.abort()
            new.abort()


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""test_workers.py - "workers": N worker processes share the listeners
(README "Using every core"): connections spread over them, /metrics and
max_connections count across all of them, SIGHUP reaches each, a killed
worker is replaced, every worker holds its own MQTT session, and a port that
is already taken stops the start instead of being shared."""

import os
import re
import signal
import socket
import subprocess
import time
import unittest

import harness
from harness import HOST
from mqtt_peers import (Mosquitto, WsClient, broker_config, have_mosquitto, metrics,
                        unique_id, wait_ready)


def children(pid):
    """The pids whose parent is `pid` (the workers of a supervisor)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("not within %ss: %s" % (timeout, what))


def upgrade_status(port, path):
    resp = harness.raw_upgrade(port, path)
    if resp.sock is not None:
        resp.sock.close()
    return resp.status


class WorkersTest(harness.GatewayTestCase):
    def start(self, routes, workers=2, limits=None, extra=None):
        self.port = harness.free_port()
        cfg = {"workers": workers, "listen": [{"host": HOST, "port": self.port}],
               "routes": routes}
        if limits:
            cfg["limits"] = limits
        cfg.update(extra or {})
        self.gw = self.h.start_gateway(cfg)
        wait_for(lambda: "workers started" in self.gw.log(), 10, "workers started")
        return self.gw

    def echo_route(self, path="/echo"):
        if not hasattr(self, "echo_port"):
            _, self.echo_port = self.h.start_echo()
        return {"name": "echo", "path": path, "type": "tcp",
                "target": {"host": HOST, "port": self.echo_port}}

    def client(self, path="/echo"):
        c = WsClient(self.port, path)
        self.h.backends.append(_Closer(c))
        return c

    def metric(self, name, **labels):
        return harness.metric(metrics(self.port), name, **labels)

    def test_connections_spread_and_metrics_add_up(self):
        self.start([self.echo_route()])
        workers = children(self.gw.proc.pid)
        self.assertEqual(len(workers), 2, "worker processes of the supervisor")
        clients = [self.client() for _ in range(40)]
        for i, c in enumerate(clients):
            for k in range(3):
                c.send_binary(b"%d-%d" % (i, k))
                self.assertEqual(c.recv(), (harness.OP_BINARY, b"%d-%d" % (i, k)))
        # Whichever worker answers the scrape, the figures are the gateway's.
        for _ in range(8):
            m = metrics(self.port)
            self.assertEqual(harness.metric(m, "wsgate_connections_active", route="echo"), 40)
            self.assertEqual(harness.metric(m, "wsgate_connections_total", route="echo"), 40)
            self.assertEqual(harness.metric(m, "wsgate_messages_total", route="echo",
                                            direction="in"), 120)
        # Both workers served some: each holds sockets of its own connections.
        def sockets(pid):
            n = 0
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
                except OSError:
                    pass
            return n
        counts = [sockets(p) for p in workers]
        print("sockets per worker with 40 bridged connections: %r" % counts, flush=True)
        for c in clients:
            c.close()
        closed = wait_for(lambda: re.findall(r'msg="connection closed".* worker=(\d)',
                                             self.gw.log())
                          if self.gw.log().count("connection closed") >= 40 else None,
                          10, "40 access lines")
        per_worker = {w: closed.count(w) for w in set(closed)}
        print("connections per worker: %r" % per_worker, flush=True)
        self.assertEqual(sorted(per_worker), ["1", "2"], "both workers took connections")
        wait_for(lambda: self.metric("wsgate_connections_active", route="echo") == 0, 5,
                 "connections_active back to 0")

    def test_max_connections_counts_all_workers(self):
        self.start([self.echo_route()], limits={"max_connections": 6})
        held = [self.client() for _ in range(6)]
        for _ in range(8):  # whichever worker each lands on
            self.assertEqual(upgrade_status(self.port, "/echo"), 503)
        held.pop().close()
        wait_for(lambda: self.metric("wsgate_connections_active", route="echo") == 5, 5,
                 "one place free again")
        extra = self.client()
        extra.send_binary(b"in")
        self.assertEqual(extra.recv(), (harness.OP_BINARY, b"in"))

    def test_killed_worker_is_replaced(self):
        self.start([self.echo_route()])
        before = children(self.gw.proc.pid)
        clients = [self.client() for _ in range(20)]
        for c in clients:  # every bridge up (counted) before the kill
            c.send_binary(b"up")
            self.assertEqual(c.recv(), (harness.OP_BINARY, b"up"))
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        after = wait_for(lambda: (lambda c: c if len(c) == 2 and victim not in c else None)(
            children(self.gw.proc.pid)), 10, "a new worker in place of the killed one")
        self.assertIn(before[1], after)
        self.assertIn("worker died; restarting it", self.gw.log())
        wait_for(lambda: self.gw.log().count("wsgate started") >= 4, 10,
                 "the new worker serving")  # supervisor, 2 workers, the new one
        # The survivor's clients still work; the victim's got no answer.
        alive = 0
        for c in clients:
            try:
                c.send_binary(b"x")
                if c.recv(timeout=2.0) == (harness.OP_BINARY, b"x"):
                    alive += 1
            except (AssertionError, OSError):
                pass
        self.assertGreater(alive, 0)
        self.assertLess(alive, 20, "some clients were on the killed worker")
        m = metrics(self.port)
        # Counters never go back; the dead worker's connections are no longer active.
        self.assertEqual(harness.metric(m, "wsgate_connections_total", route="echo"), 20)
        self.assertEqual(harness.metric(m, "wsgate_connections_active", route="echo"), alive)
        for _ in range(10):
            c = self.client()
            c.send_binary(b"new")
            self.assertEqual(c.recv(), (harness.OP_BINARY, b"new"))

    def test_sighup_reaches_every_worker(self):
        route = self.echo_route("/a")
        self.start([route])
        cfg_path = self.gw.config_path
        import json
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["routes"][0]["path"] = "/b"
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        self.gw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.gw.log().count("config reloaded") >= 2, 10,
                 "both workers reloaded")
        reloaded = re.findall(r'msg="config reloaded".* worker=(\d)', self.gw.log())
        self.assertEqual(sorted(reloaded), ["1", "2"])
        for _ in range(12):
            self.assertEqual(upgrade_status(self.port, "/a"), 404)
            self.assertEqual(upgrade_status(self.port, "/b"), 101)
        self.assertEqual(self.metric("wsgate_config_reloads_total", result="success"), 1)
        self.assertEqual(self.metric("wsgate_config_last_reload_successful"), 1)
        # A worker started after the reload runs the reloaded config too.
        for pid in children(self.gw.proc.pid):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: self.gw.log().count("wsgate started") >= 5, 10, "two new workers")
        for _ in range(12):
            self.assertEqual(upgrade_status(self.port, "/b"), 101)
        # The number of workers is not something a reload can change.
        cfg["workers"] = 3
        cfg["routes"][0]["path"] = "/c"
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        self.gw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.gw.log().count("config reload failed") >= 2, 10,
                 "both workers refused the reload")
        self.assertIn("workers: changed; the number of worker processes changes only with a "
                      "restart", self.gw.log())
        self.assertEqual(len(children(self.gw.proc.pid)), 2)
        for _ in range(12):
            self.assertEqual(upgrade_status(self.port, "/b"), 101)
            self.assertEqual(upgrade_status(self.port, "/c"), 404)
        self.assertEqual(self.metric("wsgate_config_last_reload_successful"), 0)

    def test_taken_port_is_not_shared(self):
        """SO_REUSEPORT would let a second gateway bind the same port and take
        half of its connections: the supervisor refuses to start instead."""
        port = harness.free_port()
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((HOST, port))
        holder.listen(8)
        self.addCleanup(holder.close)
        cfg = self.h.write_config({"workers": 2, "listen": [{"host": HOST, "port": port}],
                                   "routes": []}, "taken.json")
        r = subprocess.run([harness.WSGATE_BIN, "-c", cfg], capture_output=True, text=True,
                           timeout=15)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("Address already in use", r.stderr)
        self.assertIn("listen[0]", r.stderr)

    def test_tls_and_handshake_timeout_on_worker_sockets(self):
        """Connections the workers accept themselves (listener.c) get what lws's
        own listener gives: TLS, and the drop of a client that never finishes
        its request (timeout_secs, 10 s)."""
        from test_tls import client_context, https_get, make_cert, wss_echo
        crt, key = make_cert(self.h.tmp, "w")
        _, echo_port = self.h.start_echo()
        self.port = harness.free_port()
        cfg = {"workers": 2,
               "listen": [{"host": HOST, "port": self.port, "tls": {"cert": crt, "key": key}}],
               "routes": [{"name": "echo", "path": "/echo", "type": "tcp",
                           "target": {"host": HOST, "port": echo_port}}]}
        self.gw = self.h.start_gateway(cfg, wait=False)
        wait_for(lambda: "workers started" in self.gw.log(), 10, "workers started")
        ctx = client_context(cafile=crt)
        for i in range(8):
            self.assertTrue(https_get(self.port, "/healthz", ctx).startswith(b"HTTP/1.1 200"))
            self.assertEqual(wss_echo(self.port, ctx, b"tls %d" % i), b"tls %d" % i)
        slow = socket.create_connection((HOST, self.port), timeout=20)  # and no ClientHello
        t0 = time.monotonic()
        try:
            self.assertEqual(slow.recv(100), b"")
        except ConnectionResetError:
            pass
        took = time.monotonic() - t0
        slow.close()
        print("silent TLS client dropped after %.2f s" % took, flush=True)
        self.assertGreater(took, 5.0)
        self.assertLess(took, 15.0)

    def test_sigterm_drains_every_worker(self):
        """SIGTERM to the supervisor: every worker closes its WebSockets with
        1001 after what is in flight, and the whole group exits 0."""
        self.start([self.echo_route()])
        workers = children(self.gw.proc.pid)
        clients = [self.client() for _ in range(16)]
        for c in clients:
            c.send_binary(b"before")
            self.assertEqual(c.recv(), (harness.OP_BINARY, b"before"))
        t0 = time.monotonic()
        self.gw.proc.send_signal(signal.SIGTERM)
        for c in clients:
            msgs, close = c.read_until_close(timeout=10.0)
            self.assertEqual(msgs, [])
            self.assertEqual(close[0], 1001)
        self.assertEqual(self.gw.proc.wait(timeout=10), 0)
        took = time.monotonic() - t0
        print("16 clients on 2 workers drained, group exited 0 in %.2f s" % took, flush=True)
        self.assertLess(took, 5.0)
        for pid in workers:
            self.assertFalse(os.path.exists("/proc/%d" % pid) and
                             open("/proc/%d/stat" % pid).read().split(")")[-1].split()[0] != "Z",
                             "worker %d still running" % pid)
        log = self.gw.log()
        self.assertEqual(log.count('msg="shutting down"'), 2, "both workers drained")
        self.assertEqual(len(re.findall(r'msg="connection closed".*close_code=1001', log)), 16)

    def test_auto_is_one_per_cpu(self):
        self.start([self.echo_route()], workers="auto")
        want = len(os.sched_getaffinity(0))
        if want == 1:
            self.assertEqual(children(self.gw.proc.pid), [])
        else:
            self.assertEqual(len(children(self.gw.proc.pid)), min(want, 64))


class WorkersMqttTest(harness.GatewayTestCase):
    def setUp(self):
        if not have_mosquitto():
            self.skipTest("mosquitto not found")
        super().setUp()

    def test_one_session_per_worker_and_every_client_gets_each_message_once(self):
        mosq = Mosquitto(self.h)
        gw_id = unique_id("wsgate-workers")
        port = harness.free_port()
        self.h.start_gateway({
            "workers": 2, "listen": [{"host": HOST, "port": port}],
            "brokers": broker_config(mosq, gw_id),
            "routes": [{"name": "feed", "path": "/feed", "type": "mqtt", "broker": "main",
                        "subscribe": [{"filter": "feed/#"}]}]})
        mosq.wait_connected(gw_id + "-1", 1, timeout=10.0)
        mosq.wait_connected(gw_id + "-2", 1, timeout=10.0)
        self.assertEqual(mosq.connects(gw_id), 0, "no session under the bare client id")
        for _ in range(6):
            self.assertEqual(wait_ready(port, 200).status, 200)
        clients = []
        for _ in range(20):
            c = WsClient(port, "/feed")
            self.h.backends.append(_Closer(c))
            clients.append(c)
        # Each worker subscribes for its own clients; wait for both SUBACKs.
        for suffix in ("-1", "-2"):
            mosq.wait_filter("SUBSCRIBE", gw_id + suffix, "feed/#", 1, 10.0)
        time.sleep(0.3)
        from mqtt_peers import Publisher
        pub = Publisher(self.h, mosq.port)
        for i in range(10):
            pub.publish("feed/x", "m%d" % i, qos=1)
        for n, c in enumerate(clients):
            got = [c.recv(timeout=5.0)[1] for _ in range(10)]
            self.assertEqual(got, [b"m%d" % i for i in range(10)], "client %d" % n)
            c.expect_silence(0.05)
        m = metrics(port)
        self.assertEqual(harness.metric(m, "wsgate_mqtt_connected", broker="main"), 1)
        self.assertEqual(harness.metric(m, "wsgate_mqtt_connects_total", broker="main"), 2)
        self.assertEqual(harness.metric(m, "wsgate_messages_total", route="feed",
                                        direction="out"), 200)


class _Closer:
    def __init__(self, client):
        self.client = client

    def close(self):
        try:
            self.client.close()
        except OSError:
            pass


if __name__ == "__main__":
    unittest.main()

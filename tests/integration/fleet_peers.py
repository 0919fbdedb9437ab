"""fleet_peers.py - the processes of a wsgate fleet test: a NATS cluster with
MQTT listeners, and HAProxy in front of several gateways.

NatsCluster: n nats-server processes (Debian's nats-server 2.9) on 127.0.0.1
and free ports, clustered by `routes` (every node names the others), each
with a `server_name`, a JetStream `store_dir` in the harness's temp dir
(NATS' MQTT layer keeps its sessions, retained messages and QoS 1 state in
JetStream streams, replicated over up to 3 nodes), an `mqtt { listen }`
block and a monitoring port (`http`), which the helpers read: /healthz,
/jsz (JetStream meta leader) and /connz?mqtt_client=ID (which node an MQTT
client is connected to). Each node is a harness.Process inserted at the
front of the harness's list, so Harness.close() stops the nodes after the
gateways: SIGTERM, and SIGKILL for any node still running NATS_STOP_GRACE_S
later. kill() is a crash (SIGKILL); start() again brings a node back on the
same ports and store.

HAProxy: /usr/sbin/haproxy in the foreground (-db) with a config made from
the shipped template docker/haproxy.cfg: the test's ports replace the bind
addresses, and the test's gateways replace the template's `server` lines
(their options are kept), so the test runs the configuration users copy.
Its stats page (CSV) tells when HAProxy sees a gateway UP or DOWN.

Not a test itself.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import harness
from harness import HOST

NATS_BIN = os.environ.get("WSGATE_NATS_BIN", "/usr/sbin/nats-server")
HAPROXY_BIN = os.environ.get("WSGATE_HAPROXY_BIN", "/usr/sbin/haproxy")
HAPROXY_TEMPLATE = os.path.join(harness.SOURCE_DIR, "docker", "haproxy.cfg")

NATS_STOP_GRACE_S = 4.0


def have_nats():
    return os.access(NATS_BIN, os.X_OK)


def have_haproxy():
    return os.access(HAPROXY_BIN, os.X_OK)


def _http_json(port, path, timeout=2.0):
    with urllib.request.urlopen("http://%s:%d%s" % (HOST, port, path), timeout=timeout) as r:
        return r.status, json.loads(r.read().decode() or "null")


def _wait_port(proc, port, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError("%s exited with status %s before listening on %d"
                                 % (what, proc.returncode, port))
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise AssertionError("%s did not listen on %d within %ss" % (what, port, timeout))
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# NATS


class NatsNode(harness.Process):
    def __init__(self, h, cluster, name):
        self.h = h
        self.cluster = cluster
        self.server_name = name
        self.client_port = harness.free_port()
        self.cluster_port = harness.free_port()
        self.http_port = harness.free_port()
        self.mqtt_port = harness.free_port()
        self.dir = os.path.join(h.tmp, "nats-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf_path = os.path.join(self.dir, "nats.conf")
        self.stderr_path = os.path.join(self.dir, "nats.log")
        super().__init__("nats-server " + name, None, self.stderr_path, None)
        self.starts = 0
        self.kill_time = None

    @property
    def uri(self):
        return "tcp://%s:%d" % (HOST, self.mqtt_port)

    def write_config(self):
        # Every node gets the same list, itself included (NATS skips a route to
        # itself). This matters beyond tidiness: nats-server 2.9 sizes the MQTT
        # streams' replicas by the number of URLs in its own `routes` (capped at
        # 3), so listing only the two others gives R2 streams, which lose their
        # quorum, and MQTT with them, when either of their two nodes dies.
        routes = ", ".join('"nats-route://%s:%d"' % (HOST, n.cluster_port)
                           for n in self.cluster.nodes)
        conf = """# written by fleet_peers.py
server_name: %(name)s
listen: %(host)s:%(client)d
http: %(host)s:%(http)d
jetstream {
  store_dir: "%(store)s"
  max_memory_store: 64MB
  max_file_store: 256MB
}
cluster {
  name: %(cluster)s
  listen: %(host)s:%(cport)d
  routes: [ %(routes)s ]
}
mqtt {
  listen: %(host)s:%(mqtt)d
  # what the routes above give anyway; said explicitly so that a later edit
  # of the routes cannot quietly make the MQTT state R2
  stream_replicas: 3
}
""" % {"name": self.server_name, "host": HOST, "client": self.client_port,
       "http": self.http_port, "store": os.path.join(self.dir, "js"),
       "cluster": self.cluster.name, "cport": self.cluster_port, "routes": routes,
       "mqtt": self.mqtt_port}
        with open(self.conf_path, "w") as f:
            f.write(conf)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=15.0):
        if self.running():
            raise AssertionError("%s is already running" % self.name)
        errf = open(self.stderr_path, "ab")
        try:
            self.proc = harness.popen([NATS_BIN, "-c", self.conf_path], stdout=errf, stderr=errf)
        finally:
            errf.close()
        self.returncode = None
        self.killed = False
        self.starts += 1
        _wait_port(self.proc, self.mqtt_port, timeout, self.name)

    def stop(self):
        """SIGTERM, then SIGKILL if it has not exited NATS_STOP_GRACE_S later."""
        if self.proc is None:
            return None
        if self.returncode is None:
            self.returncode, self.killed = harness.stop_process(self.proc, NATS_STOP_GRACE_S)
        return self.returncode

    def kill(self):
        """A crash: SIGKILL, reaped at once."""
        if not self.running():
            raise AssertionError("%s is not running" % self.name)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.kill_time = time.monotonic()
        self.proc.wait(timeout=5)
        harness._live_procs.discard(self.proc)
        self.returncode = self.proc.returncode

    def monitor(self, path, timeout=2.0):
        """(status, JSON) of a monitoring endpoint; (None, repr(error)) if it failed."""
        try:
            return _http_json(self.http_port, path, timeout)
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read().decode() or "null")
            except ValueError:
                return e.code, None
        except (OSError, ValueError) as e:
            return None, repr(e)

    def mqtt_clients(self):
        """The MQTT client ids connected to this node."""
        status, body = self.monitor("/connz?limit=1024")
        if status != 200 or not isinstance(body, dict):
            return []
        return [c.get("mqtt_client") for c in body.get("connections") or []
                if c.get("mqtt_client")]


class NatsCluster:
    """n clustered nats-server nodes with JetStream and MQTT, started at once."""

    def __init__(self, h, n=3, name="wsgate-fleet"):
        if not have_nats():
            raise AssertionError("nats-server not found at %s" % NATS_BIN)
        self.h = h
        self.name = name
        self.nodes = []
        for i in range(n):
            self.nodes.append(NatsNode(h, self, "n%d" % (i + 1)))
        for node in self.nodes:
            node.write_config()
            h.processes.insert(0, node)  # stopped after the gateways
        self.started_at = time.monotonic()
        for node in self.nodes:
            node.start()

    def node(self, name):
        return next(n for n in self.nodes if n.server_name == name)

    def meta_leader(self, node):
        """The JetStream meta leader as `node` sees it, or None."""
        status, body = node.monitor("/jsz")
        if status != 200 or not isinstance(body, dict):
            return None
        return ((body.get("meta_cluster") or {}).get("leader")) or None

    def meta_peers(self, node):
        """How many meta group members `node` sees as current (itself included;
        meaningful on the meta leader only)."""
        status, body = node.monitor("/jsz")
        if status != 200 or not isinstance(body, dict):
            return 0
        meta = body.get("meta_cluster") or {}
        return 1 + sum(1 for r in meta.get("replicas") or [] if r.get("current"))

    def wait_jetstream(self, timeout=30.0):
        """Waits until every running node answers /healthz 200 and agrees on a
        JetStream meta leader. Returns the seconds since the cluster started."""
        deadline = time.monotonic() + timeout
        while True:
            live = [n for n in self.nodes if n.running()]
            health = [n.monitor("/healthz")[0] for n in live]
            leaders = {self.meta_leader(n) for n in live}
            # only the leader lists the group's members
            peers = [self.meta_peers(n) for n in live if n.server_name in leaders]
            if (all(s == 200 for s in health) and len(leaders) == 1 and None not in leaders
                    and peers == [len(live)]):
                return time.monotonic() - self.started_at
            if time.monotonic() >= deadline:
                raise AssertionError("the NATS cluster is not ready after %ss: /healthz %r, "
                                     "meta leaders %r, current meta peers %r"
                                     % (timeout, health, leaders, peers))
            time.sleep(0.2)

    def wait_mqtt(self, timeout=30.0):
        """Waits until every running node's MQTT listener takes a connection
        (CONNACK 0) and grants a subscription: a node answers /healthz before
        its MQTT layer has its JetStream streams, and until then a CONNECT gets
        no CONNACK. Returns the seconds since the cluster started."""
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            if not n.running():
                continue
            while True:
                ok, detail = mqtt_probe(n.mqtt_port, min(5.0, max(0.5, deadline - time.monotonic())))
                if ok:
                    break
                if time.monotonic() >= deadline:
                    raise AssertionError("%s: no MQTT session within %ss (%s)"
                                         % (n.name, timeout, detail))
                time.sleep(0.2)
        return time.monotonic() - self.started_at

    def stream_leaders(self):
        """{stream name: leader's server name} for the JetStream streams of the
        global account ($MQTT_sess, $MQTT_msgs, $MQTT_rmsgs ...), as the first
        running node reports them, plus "meta" for the meta group's leader."""
        for n in self.nodes:
            if not n.running():
                continue
            status, body = n.monitor("/jsz?accounts=true&streams=true")
            if status != 200 or not isinstance(body, dict):
                continue
            out = {"meta": (body.get("meta_cluster") or {}).get("leader")}
            for acc in body.get("account_details") or []:
                for st in acc.get("stream_detail") or []:
                    out[st.get("name")] = (st.get("cluster") or {}).get("leader")
            return out
        return {}

    def mqtt_node_of(self, client_id):
        """The running node an MQTT client id is connected to, or None."""
        for n in self.nodes:
            if n.running() and client_id in n.mqtt_clients():
                return n
        return None

    def logs(self):
        return [(n.name, n.log()) for n in self.nodes]


def mqtt_probe(port, timeout=5.0):
    """Connects a fresh Paho client to 127.0.0.1:port, subscribes to one
    filter and disconnects. Returns (True, None) once the SUBACK granted it,
    else (False, what happened)."""
    import threading
    import paho.mqtt.client as mqtt
    import mqtt_peers
    done = threading.Event()
    res = {}
    c = mqtt.Client(client_id=mqtt_peers.unique_id("probe"), protocol=mqtt.MQTTv311)

    def on_connect(client, userdata, flags, rc):
        res["connack"] = rc
        if rc == 0:
            client.subscribe("wsgate/probe/#", 0)
        else:
            done.set()

    def on_subscribe(client, userdata, mid, granted):
        res["granted"] = list(granted)
        done.set()

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    try:
        c.connect(HOST, port, keepalive=10)
    except OSError as e:
        return False, repr(e)
    c.loop_start()
    try:
        done.wait(timeout)
    finally:
        try:
            c.disconnect()
        except Exception:
            pass
        c.loop_stop()
    if res.get("granted") and all(g < 0x80 for g in res["granted"]):
        return True, None
    return False, res or "no CONNACK within %ss" % timeout


# ---------------------------------------------------------------------------
# HAProxy


_BIND_RE = re.compile(r"^(\s*bind\s+)(\S+)(.*)$")
_SERVER_RE = re.compile(r"^(\s*)server\s+\S+\s+\S+(.*)$")


def render_haproxy_config(template, sections):
    """The template with, in each section named in `sections` ("frontend ws",
    "backend wsgate", "listen stats"...), its `bind` addresses replaced by
    sections[name]["bind"] and its `server` lines by one line per
    (name, host:port) in sections[name]["servers"], each with the options of
    the template's first server line. Raises if a named section, or a bind
    or server line asked for, is missing: the test must follow the shipped
    file, not silently run something else."""
    lines = template.splitlines()
    out = []
    current = None
    done = {}
    for line in lines:
        stripped = line.strip()
        head = re.match(r"^(global|defaults|frontend|backend|listen|resolvers|peers)\b\s*(\S*)",
                        line)
        if head:
            current = ("%s %s" % (head.group(1), head.group(2))).strip()
        spec = sections.get(current)
        if spec and not stripped.startswith("#"):
            m = _BIND_RE.match(line)
            if m and "bind" in spec:
                if done.get((current, "bind")):
                    continue  # one bind line per section in the rendering
                out.append("%s%s%s" % (m.group(1), spec["bind"], m.group(3)))
                done[(current, "bind")] = True
                continue
            m = _SERVER_RE.match(line)
            if m and "servers" in spec:
                if done.get((current, "servers")):
                    continue
                for name, addr in spec["servers"]:
                    out.append("%sserver %s %s%s" % (m.group(1), name, addr, m.group(2)))
                done[(current, "servers")] = True
                continue
        out.append(line)
    for sec, spec in sections.items():
        for key in ("bind", "servers"):
            if key in spec and not done.get((sec, key)):
                raise AssertionError("%s: no %s line in section %r"
                                     % (HAPROXY_TEMPLATE, key[:-1] if key == "servers" else key,
                                        sec))
    return "\n".join(out) + "\n"


class HAProxy(harness.Process):
    """HAProxy in the foreground with docker/haproxy.cfg rendered for the test:
    the WebSocket frontend on `port`, the stats page on `stats_port`, and
    `servers` [(name, port)] as the gateways."""

    FRONTEND = "frontend ws"
    BACKEND = "backend wsgate"
    STATS = "listen stats"

    def __init__(self, h, servers, template=HAPROXY_TEMPLATE):
        if not have_haproxy():
            raise AssertionError("haproxy not found at %s" % HAPROXY_BIN)
        self.h = h
        self.port = harness.free_port()
        self.stats_port = harness.free_port()
        self.servers = list(servers)
        with open(template) as f:
            text = f.read()
        self.config = render_haproxy_config(text, {
            self.FRONTEND: {"bind": "%s:%d" % (HOST, self.port)},
            self.STATS: {"bind": "%s:%d" % (HOST, self.stats_port)},
            self.BACKEND: {"servers": [(n, "%s:%d" % (HOST, p)) for n, p in self.servers]},
        })
        self.conf_path = h.write_file("haproxy.cfg", self.config)
        self.stderr_path = h.path("haproxy.log")
        super().__init__("haproxy", None, self.stderr_path, None)
        check = subprocess.run([HAPROXY_BIN, "-c", "-f", self.conf_path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=20)
        if check.returncode != 0:
            raise AssertionError("haproxy -c refuses the rendered config:\n%s\n%s"
                                 % (check.stdout, self.config))
        errf = open(self.stderr_path, "ab")
        try:
            self.proc = harness.popen([HAPROXY_BIN, "-db", "-f", self.conf_path],
                                      stdout=errf, stderr=errf)
        finally:
            errf.close()
        h.processes.append(self)
        _wait_port(self.proc, self.port, 10.0, "haproxy")
        _wait_port(self.proc, self.stats_port, 10.0, "haproxy stats")

    def url(self, path):
        return "ws://%s:%d%s" % (HOST, self.port, path)

    def _servers(self):
        r = harness.http_get(self.stats_port, "/stats;csv", timeout=3.0)
        if r.status != 200:
            raise AssertionError("haproxy stats answered %d" % r.status)
        rows = r.body.decode().splitlines()
        head = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            cols = dict(zip(head, row.split(",")))
            if cols.get("pxname") == self.BACKEND.split()[1] and cols.get("svname") not in (
                    "FRONTEND", "BACKEND"):
                out[cols["svname"]] = cols
        return out

    def server_states(self):
        """{server name: status} of the backend, from the stats page's CSV."""
        return {name: cols.get("status") for name, cols in self._servers().items()}

    def wait_idle(self, timeout=10.0):
        """Waits until HAProxy holds no connection to any gateway (scur 0), so
        that leastconn starts from even counts."""
        deadline = time.monotonic() + timeout
        while True:
            cur = {name: int(cols.get("scur") or 0) for name, cols in self._servers().items()}
            if not any(cur.values()):
                return
            if time.monotonic() >= deadline:
                raise AssertionError("haproxy still holds connections after %ss: %r"
                                     % (timeout, cur))
            time.sleep(0.05)

    def wait_states(self, want, timeout=15.0):
        """Waits until each server in `want` {name: "UP"/"DOWN"} has that
        status (a prefix match, so "DOWN" also takes "DOWN 1/2")."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.server_states()
            if all((states.get(n) or "").startswith(s) for n, s in want.items()):
                return states
            if time.monotonic() >= deadline:
                raise AssertionError("haproxy servers %r after %ss, wanted %r"
                                     % (states, timeout, want))
            time.sleep(0.1)

    def stop(self):
        if self.returncode is None and self.proc is not None:
            self.returncode, self.killed = harness.stop_process(self.proc, 3.0)
        return self.returncode

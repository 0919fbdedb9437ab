"""test_out_of_memory.py - out of memory fails the operation that needed it,
never the process (docs/ARCHITECTURE.md, "Out of memory"), seen from outside
with the address-space limit of the real process (RLIMIT_AS, set with
util-linux prlimit): a config too big for the memory left is refused at start
(exit 1, "<file>: out of memory") and on SIGHUP (the running config stays,
open and new connections are served, and a later reload under the same limit
succeeds, so the refused load gave its memory back). Every allocation of the
loaders failing in turn is tests/unit/test_oom.c. Skipped in the ASan build,
whose shadow memory needs an unlimited address space."""

import json
import os
import signal
import subprocess
import time
import unittest

import harness
import peers
from harness import HOST, reload_and_wait
from mqtt_peers import WsClient

MIB = 1024 * 1024
# Parsed, each "0," of the filler becomes a jansson integer (a 32-byte block)
# and an array slot: 5 million take some 200 MiB, past the 128 MiB a whole
# process gets below and the 96 MiB of headroom a running one gets.
FILLER_VALUES = 5_000_000
HEADROOM = 96 * MIB


def huge_config(cfg):
    """`cfg` as JSON text with a 10 MB array that cannot be parsed in HEADROOM."""
    text = json.dumps(cfg)
    return text[:-1] + ', "filler": [' + ",".join(["0"] * FILLER_VALUES) + "]}"


def vm_size(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize for pid %d" % pid)




@unittest.skipIf(peers.binary_has_asan(), "ASan needs an unlimited address space")
class OutOfMemoryTest(harness.GatewayTestCase):
    def metric(self, port, name, **labels):
        r = harness.http_get(port, "/metrics")
        return harness.metric(harness.parse_prometheus(r.body.decode()), name, **labels)

    def test_start_refuses_a_config_that_does_not_fit(self):
        port = harness.free_port()
        path = self.h.write_file("huge.json", huge_config(
            {"listen": [{"host": HOST, "port": port}]}))
        small = self.h.write_config({"listen": [{"host": HOST, "port": port}]}, "small.json")
        limit = "--as=%d" % (128 * MIB)
        for args in (["--check", "-c", path], ["-c", path]):
            proc = harness.popen(["prlimit", limit, harness.WSGATE_BIN] + args,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = proc.communicate(timeout=60)
            self.assertEqual(proc.returncode, 1, "wsgate %s: %s" % (" ".join(args), err))
            self.assertIn("%s: out of memory" % path, err)
            self.assertNotIn("Aborted", err)
            self.assertEqual(harness.port_is_free(port), True)
        # The same limit leaves room for a config of ordinary size.
        ok = subprocess.run(["prlimit", limit, harness.WSGATE_BIN, "--check", "-c", small],
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(ok.returncode, 0, ok.stderr)

    def test_reload_refused_and_the_running_config_stays(self):
        _, echo_port = self.h.start_echo()
        port = harness.free_port()
        route_a = {"name": "a", "path": "/a", "type": "tcp",
                   "target": {"host": HOST, "port": echo_port}}
        cfg = {"listen": [{"host": HOST, "port": port}], "routes": [route_a]}
        gw = self.h.start_gateway(cfg)
        old = WsClient(port, "/a")
        old.send_binary(b"before")
        self.assertEqual(old.recv(), (harness.OP_BINARY, b"before"))

        # From here the process has HEADROOM more address space than it uses.
        limit = vm_size(gw.proc.pid) + HEADROOM
        subprocess.run(["prlimit", "--pid", str(gw.proc.pid), "--as=%d" % limit], check=True)
        route_b = dict(route_a, name="b", path="/b")
        with open(gw.config_path, "w") as f:
            f.write(huge_config(dict(cfg, routes=[route_a, route_b])))
        log = reload_and_wait(gw, 1, timeout=20.0)
        self.assertIn("config reload failed", log)
        self.assertIn("%s: out of memory" % gw.config_path, log)
        self.assertEqual(self.metric(port, "wsgate_config_reloads_total", result="failure"), 1)

        # Nothing else failed: the open connection, a new one, the old rules.
        old.send_binary(b"after")
        self.assertEqual(old.recv(), (harness.OP_BINARY, b"after"))
        new = WsClient(port, "/a")
        new.send_binary(b"new")
        self.assertEqual(new.recv(), (harness.OP_BINARY, b"new"))
        self.assertEqual(harness.raw_upgrade(port, "/b").status, 404)

        # The refused load gave its memory back: a config of ordinary size
        # reloads under the same limit.
        with open(gw.config_path, "w") as f:
            json.dump(dict(cfg, routes=[route_a, route_b]), f)
        log = reload_and_wait(gw, 2, timeout=20.0)
        self.assertIn("config reloaded", log)
        b = WsClient(port, "/b")
        b.send_binary(b"b")
        self.assertEqual(b.recv(), (harness.OP_BINARY, b"b"))
        for c in (old, new, b):
            self.assertEqual(c.close(), (1000, b""))


if __name__ == "__main__":
    harness.main()

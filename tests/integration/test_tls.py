"""test_tls.py - listen[].tls (SPEC.md "listen"): https and wss with a
certificate made by the test with openssl, modern defaults only (TLS 1.0/1.1
refused, HTTP/1.1 the only ALPN protocol so no WebSocket runs over HTTP/2),
the certificate re-read on SIGHUP, and a bad certificate or key named at
start (exit 2)."""

import os
import signal
import socket
import ssl
import subprocess
import time
import unittest

import harness
from harness import HOST

OPENSSL = "/usr/bin/openssl"


def make_cert(directory, name, cn="127.0.0.1"):
    key, crt = os.path.join(directory, name + ".key"), os.path.join(directory, name + ".crt")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=" + cn, "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True, timeout=60)
    return crt, key


def client_context(cafile=None, version=None, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, ctx):
    raw = socket.create_connection((HOST, port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=HOST)


def https_get(port, path, ctx):
    s = tls_connect(port, ctx)
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, HOST)).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if length and len(body) >= int(length[0].split(b":")[1]):
                break
    s.close()
    return data


def wss_echo(port, ctx, payload):
    """An upgrade over TLS by hand, one masked binary frame, its echo back."""
    import base64
    s = tls_connect(port, ctx)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /echo HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (HOST, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    s.sendall(harness.encode_frame(harness.OP_BINARY, payload))
    data = rest
    while len(data) < 2 + len(payload):
        data += s.recv(65536)
    s.close()
    assert data[0] == 0x82 and data[1] == len(payload), data[:4]
    return data[2:2 + len(payload)]


class TlsTest(harness.GatewayTestCase):
    def start(self, crt, key):
        _, echo_port = self.h.start_echo()
        self.port = harness.free_port()
        cfg = {"listen": [{"host": HOST, "port": self.port, "tls": {"cert": crt, "key": key}}],
               "routes": [{"name": "echo", "path": "/echo", "type": "tcp",
                           "target": {"host": HOST, "port": echo_port}}]}
        # /healthz over plain HTTP does not answer on a TLS port: wait for the port.
        gw = self.h.start_gateway(cfg, wait=False)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return gw
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("no TLS listener:\n" + gw.log())
                time.sleep(0.05)

    def test_https_and_wss(self):
        crt, key = make_cert(self.h.tmp, "a")
        self.start(crt, key)
        ctx = client_context(cafile=crt)
        resp = https_get(self.port, "/healthz", ctx)
        self.assertTrue(resp.startswith(b"HTTP/1.1 200"), resp[:100])
        self.assertIn(b'{"status":"ok"}', resp)
        self.assertEqual(wss_echo(self.port, ctx, b"over tls"), b"over tls")

    def test_modern_defaults(self):
        crt, key = make_cert(self.h.tmp, "b")
        self.start(crt, key)
        for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            ctx = client_context(version=old)
            try:
                ctx.set_ciphers("ALL:@SECLEVEL=0")
                s = tls_connect(self.port, ctx)
            except (ssl.SSLError, OSError):
                continue  # refused (by the server, or by this client's OpenSSL policy)
            s.close()
            self.fail("a %s handshake succeeded" % old)
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            s = tls_connect(self.port, client_context(version=version))
            self.assertEqual(s.version(), {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                           ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version])
            s.close()
        # A TLS 1.2 client offering only weak (non-AEAD, non-forward-secret) suites fails.
        ctx = client_context(version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers("AES128-SHA")
        with self.assertRaises((ssl.SSLError, OSError)):
            tls_connect(self.port, ctx).close()
        # ALPN: HTTP/1.1 is chosen even when the client prefers h2.
        s = tls_connect(self.port, client_context(alpn=["h2", "http/1.1"]))
        self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
        s.close()

    def test_certificate_reloaded_on_sighup(self):
        crt, key = make_cert(self.h.tmp, "c", cn="first")
        gw = self.start(crt, key)

        def served_cn():
            s = tls_connect(self.port, client_context())
            der = s.getpeercert(binary_form=True)
            s.close()
            out = subprocess.run([OPENSSL, "x509", "-inform", "DER", "-noout", "-subject"],
                                 input=der, capture_output=True, check=True).stdout.decode()
            return out.strip()

        self.assertIn("first", served_cn())
        # A broken key at the same path: refused with a reason, the old pair stays.
        new_crt, new_key = make_cert(self.h.tmp, "c2", cn="second")
        with open(key, "w") as f:
            f.write("not a key\n")
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "certificate not reloaded" not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("certificate not reloaded", gw.log())
        self.assertIn("first", served_cn())
        # Renewed files: the next handshake gets the new certificate.
        os.replace(new_crt, crt)
        os.replace(new_key, key)
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "second" not in served_cn():
            if time.monotonic() > deadline:
                self.fail("the certificate was not reloaded:\n" + gw.log())
            time.sleep(0.1)
        self.assertEqual(wss_echo(self.port, client_context(cafile=crt), b"renewed"),
                         b"renewed")

    def test_bad_certificate_at_start(self):
        crt, key = make_cert(self.h.tmp, "d")
        _, other_key = make_cert(self.h.tmp, "e")
        port = harness.free_port()
        for c, k, what in [(crt, other_key, "mismatch"),
                           (crt + ".missing", key, "cannot load certificate"),
                           (crt, key + ".missing", "cannot load private key")]:
            path = self.h.write_config({"listen": [{"host": HOST, "port": port,
                                                    "tls": {"cert": c, "key": k}}],
                                        "routes": []}, "bad-%d.json" % port)
            # a missing file is already a config error (exit 1); a bad pair is runtime (2)
            r = harness.run_cli(["-c", path])
            self.assertIn(r.returncode, (1, 2), r.stderr)
            self.assertIn(what if r.returncode == 2 else os.path.basename(c if "missing" in c
                                                                           else k),
                          r.stderr)


if __name__ == "__main__":
    unittest.main()

"""jwt_mint.py - JSON Web Tokens minted by the tests themselves.

HS256 with Python's hmac; RS256 and ES256 with the `openssl` command line
(genpkey, pkey -pubout, dgst -sha256 -sign), the ES256 DER signature turned
into JOSE's raw r || s (32 bytes each, RFC 7518 3.4). Nothing here verifies:
the gateway does that. Tokens can be made wrong on purpose (any header, any
claims, an empty or foreign signature), for the hostile cases.

Not a test itself.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

OPENSSL = os.environ.get("WSGATE_OPENSSL_BIN", "openssl")


def b64url(data):
    """Unpadded base64url (RFC 7515 2)."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj):
    """A JSON value compactly encoded; a str is taken as JSON text as is."""
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return b64url(text.encode())


def claims(sub="alice", ttl=600, **extra):
    """{"sub": sub, "exp": now + ttl, ...extra}; sub=None leaves it out."""
    c = {}
    if sub is not None:
        c["sub"] = sub
    c["exp"] = int(time.time()) + ttl
    c.update(extra)
    return c


def _openssl(args, data=None):
    r = subprocess.run([OPENSSL] + args, input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed (%d): %s"
                             % (" ".join(args), r.returncode, r.stderr.decode(errors="replace")))
    return r.stdout


def der_ecdsa_to_raw(der, size=32):
    """An ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }) to r || s."""
    def read_len(buf, i):
        n = buf[i]
        i += 1
        if n & 0x80:
            k = n & 0x7f
            n = int.from_bytes(buf[i:i + k], "big")
            i += k
        return n, i

    if der[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    _, i = read_len(der, 1)
    out = b""
    for _ in range(2):
        if der[i] != 0x02:
            raise ValueError("not a DER INTEGER")
        n, i = read_len(der, i + 1)
        v = der[i:i + n]
        i += n
        v = v.lstrip(b"\x00")
        if len(v) > size:
            raise ValueError("integer longer than %d bytes" % size)
        out += v.rjust(size, b"\x00")
    return out


class Key:
    """A key pair made by `openssl genpkey` in `directory`: kind "rsa" (bits)
    or "ec" (curve). .public_pem_path is what the gateway's "public_key"
    names; .public_pem its text (the HMAC key of the confusion attack)."""

    def __init__(self, directory, name, kind="rsa", bits=2048, curve="P-256"):
        self.kind = kind
        self.private_path = os.path.join(directory, name + ".key")
        self.public_pem_path = os.path.join(directory, name + ".pub.pem")
        if kind == "rsa":
            _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % bits,
                      "-out", self.private_path])
        elif kind == "ec":
            _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:%s" % curve,
                      "-out", self.private_path])
        else:
            raise ValueError(kind)
        _openssl(["pkey", "-in", self.private_path, "-pubout", "-out", self.public_pem_path])
        with open(self.public_pem_path, "rb") as f:
            self.public_pem = f.read()

    @property
    def alg(self):
        return "RS256" if self.kind == "rsa" else "ES256"

    def sign(self, data):
        """The JWS signature bytes of `data` (RS256: PKCS#1 v1.5; ES256: r || s)."""
        sig = _openssl(["dgst", "-sha256", "-sign", self.private_path], data)
        return sig if self.kind == "rsa" else der_ecdsa_to_raw(sig)


def hs256_sig(secret, data):
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(secret, data, hashlib.sha256).digest()


def token(payload, secret=None, key=None, alg=None, header=None, signature=None):
    """A compact JWS. Signed with `secret` (HMAC-SHA256) or `key` (a Key);
    the header defaults to {"alg": <the signer's>, "typ": "JWT"}, `alg`
    overrides only the header's claim (the signature stays the signer's), a
    `header` dict or JSON text replaces it. `signature`: bytes used as is
    (b"" for the unsecured "h.p." form). payload: a dict or JSON text."""
    if header is None:
        header = {"alg": alg or ("HS256" if key is None else key.alg), "typ": "JWT"}
    signing_input = (b64url_json(header) + "." + b64url_json(payload)).encode()
    if signature is None:
        if key is not None:
            signature = key.sign(signing_input)
        elif secret is not None:
            signature = hs256_sig(secret, signing_input)
        else:
            signature = b""
    return signing_input.decode() + "." + b64url(signature)


def parts(tok):
    """The token's three parts (to look for any of them in a log)."""
    return tok.split(".")

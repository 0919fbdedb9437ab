"""fake_broker.py - a scripted MQTT 3.1.1 broker for the cases a real one will
not produce on demand: SUBACKs that refuse a filter (0x80, what a NATS cluster
answers while it re-elects its leaders), and a node that takes the TCP
connection but never sends a CONNACK. Speaks just enough MQTT for one Paho
client at a time: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, PUBLISH QoS 0/1,
DISCONNECT; publish() sends a message to every connected client. Registered
with a Harness (close() stops it). Not a test itself.
"""

import socket
import struct
import threading

from harness import HOST

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14


def _encode_length(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(kind, flags, body):
    return bytes([kind << 4 | flags]) + _encode_length(len(body)) + body


def _utf8(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


class FakeBroker:
    def __init__(self, h, deny=None, connack=True):
        """deny: {filter: how many SUBSCRIBEs of it get 0x80 before one is
        granted}; connack: False for a node that never answers CONNECT."""
        self.deny_left = dict(deny or {})
        self.connack = connack
        self.lock = threading.Lock()
        self.subscribes = []  # (filter, granted)
        self.connects = 0
        self.published = []  # (topic, payload) from clients
        self.clients = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()
        h.backends.append(self)

    @property
    def uri(self):
        return "tcp://%s:%d" % (HOST, self.port)

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_packet(self, conn):
        head = conn.recv(1)
        if not head:
            raise EOFError
        mult, length = 1, 0
        while True:
            b = conn.recv(1)
            if not b:
                raise EOFError
            length += (b[0] & 0x7F) * mult
            mult *= 128
            if not b[0] & 0x80:
                break
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                raise EOFError
            body += chunk
        return head[0] >> 4, head[0] & 0x0F, body

    def _serve(self, conn):
        try:
            while True:
                kind, flags, body = self._read_packet(conn)
                if kind == CONNECT:
                    with self.lock:
                        self.connects += 1
                    if not self.connack:
                        continue  # take it, say nothing
                    conn.sendall(_packet(CONNACK, 0, b"\x00\x00"))
                    with self.lock:
                        self.clients.append(conn)
                elif kind == SUBSCRIBE:
                    mid = body[:2]
                    pos, codes = 2, bytearray()
                    while pos < len(body):
                        n = struct.unpack("!H", body[pos:pos + 2])[0]
                        flt = body[pos + 2:pos + 2 + n].decode()
                        qos = body[pos + 2 + n]
                        pos += 3 + n
                        with self.lock:
                            deny = self.deny_left.get(flt, 0) > 0
                            if deny:
                                self.deny_left[flt] -= 1
                            self.subscribes.append((flt, not deny))
                        codes.append(0x80 if deny else min(qos, 1))
                    conn.sendall(_packet(SUBACK, 0, mid + bytes(codes)))
                elif kind == UNSUBSCRIBE:
                    conn.sendall(_packet(UNSUBACK, 0, body[:2]))
                elif kind == PINGREQ:
                    conn.sendall(_packet(PINGRESP, 0, b""))
                elif kind == PUBLISH:
                    n = struct.unpack("!H", body[:2])[0]
                    topic = body[2:2 + n].decode()
                    qos = (flags >> 1) & 3
                    rest = body[2 + n:]
                    if qos:
                        conn.sendall(_packet(PUBACK, 0, rest[:2]))
                        rest = rest[2:]
                    with self.lock:
                        self.published.append((topic, rest))
                elif kind == DISCONNECT:
                    break
        except (EOFError, OSError):
            pass
        finally:
            with self.lock:
                if conn in self.clients:
                    self.clients.remove(conn)
            conn.close()

    def publish(self, topic, payload):
        """QoS 0 PUBLISH to every connected client."""
        pkt = _packet(PUBLISH, 0, _utf8(topic) + (payload.encode() if isinstance(payload, str)
                                                  else payload))
        with self.lock:
            clients = list(self.clients)
        for c in clients:
            c.sendall(pkt)

    def granted(self, flt):
        with self.lock:
            return [g for f, g in self.subscribes if f == flt]

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            clients, self.clients = list(self.clients), []
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

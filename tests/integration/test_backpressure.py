"""test_backpressure.py - limits.max_queue_bytes bounds what the gateway
buffers per connection per direction: when one side is slower the gateway
stops reading the other side. No byte is dropped or reordered, memory stays
bounded, and slow or stuck clients never stall the others.

(a) a backend pushes 256 MiB as fast as it can to a client that stops
    reading for 3 s at the start and again in the middle;
(b) a client pushes 64 MiB as fast as it can to a backend that reads slowly
    and stops reading for 3 s at the start and again in the middle;
(c) while one client never reads (its backend floods) and another floods a
    backend that never reads, a third client's echo round trips stay fast.

Both streams are checked byte for byte against a deterministic pattern.
wsgate's peak RSS (VmHWM, and VmRSS sampled every 10 ms) must stay below
idle RSS + 2 * max_queue_bytes + 8 MiB; in an AddressSanitizer build (its
shadow memory and quarantine make RSS meaningless) only that assertion is
skipped, with a note."""

import asyncio
import os
import statistics
import time

import websockets

import harness
import peers
from harness import HOST, OP_BINARY, GatewayTestCase, encode_frame, raw_upgrade, run_async

MIB = 1024 * 1024
QUEUE = 262144
SLACK_KB = 8 * 1024


class BackpressureCase(GatewayTestCase):
    def gateway(self, routes):
        cfg = {"listen": [{"host": HOST, "port": harness.free_port()}],
               "limits": {"max_queue_bytes": QUEUE},
               "routes": routes}
        return self.h.start_gateway(cfg)

    def route(self, name, port):
        return {"name": name, "path": "/" + name, "type": "tcp",
                "target": {"host": HOST, "port": port}}

    def start_rss(self, gw):
        """Resets the peak RSS and starts sampling; returns (idle kB, sampler)."""
        time.sleep(0.2)
        peers.reset_peak_rss(gw.proc.pid)
        idle = peers.proc_status_kb(gw.proc.pid, "VmRSS")
        self.assertIsNotNone(idle, "cannot read /proc/%d/status" % gw.proc.pid)
        return idle, peers.PeakRss(gw.proc.pid)

    def check_rss(self, what, idle_kb, sampler):
        peak = sampler.stop()
        bound = idle_kb + 2 * QUEUE // 1024 + SLACK_KB
        print("%s: wsgate RSS idle %d kB, peak %d kB (+%d kB; bound %d kB)"
              % (what, idle_kb, peak, peak - idle_kb, bound), flush=True)
        if peers.binary_has_asan():
            print("%s: NOTE: %s is an AddressSanitizer build; the RSS bound is not checked "
                  "(run this file against the plain build for that)" % (what, harness.WSGATE_BIN),
                  flush=True)
            return
        self.assertLess(peak, bound,
                        "%s: wsgate's peak RSS %d kB is over idle %d kB + 2 * max_queue_bytes "
                        "+ 8 MiB" % (what, peak, idle_kb))


class BackpressureTest(BackpressureCase):
    def test_fast_backend_to_pausing_client_256mib(self):
        total = 256 * MIB
        pattern = peers.Pattern(seed=256)
        backend = peers.add(self.h, peers.FloodBackend(pattern, total=total))
        gw = self.gateway([self.route("down", backend.port)])
        idle, sampler = self.start_rss(gw)
        checker = peers.PatternChecker(pattern)

        async def go():
            async with websockets.connect(gw.url("/down"), max_size=None, max_queue=4,
                                          ping_interval=None) as ws:
                await asyncio.sleep(3.0)  # not reading
                paused_mid = False
                t_read = 0.0
                t0 = time.monotonic()
                while checker.count < total:
                    msg = await asyncio.wait_for(ws.recv(), 10)
                    if not isinstance(msg, bytes):
                        raise AssertionError("a binary route sent a text message")
                    checker.feed(msg)
                    if checker.first_bad is not None:
                        raise AssertionError(checker.describe())
                    if not paused_mid and checker.count >= total // 2:
                        paused_mid = True
                        t_read += time.monotonic() - t0
                        await asyncio.sleep(3.0)
                        t0 = time.monotonic()
                t_read += time.monotonic() - t0
                msgs, code, reason = await harness.recv_until_closed(ws, 10)
                return t_read, msgs, code, reason

        t_read, extra, code, reason = run_async(go(), 28)
        print("256 MiB: %s; %.1f MB/s while reading (%.2f s), sha256 %s"
              % (checker.describe(), checker.count / t_read / 1e6, t_read,
                 checker.sha.hexdigest()[:16]), flush=True)
        self.assertIsNone(checker.first_bad, checker.describe())
        self.assertEqual(checker.count, total)
        self.assertEqual(extra, [], "bytes after the end of the stream")
        self.assertEqual(code, 1000, "close code after the backend finished (reason %r)" % reason)
        self.check_rss("256 MiB to a pausing client", idle, sampler)

    def test_fast_client_to_slow_backend_64mib(self):
        total = 64 * MIB
        pattern = peers.Pattern(seed=64)
        state = {"mid_pause": False}

        def schedule(count):
            if count < 4 * MIB:
                return 16384, 0.002  # slow
            if count >= 32 * MIB and not state["mid_pause"]:
                state["mid_pause"] = True
                return 65536, 3.0  # stop reading for 3 s
            return 256 * 1024, 0

        backend = peers.add(self.h, peers.SlowReaderBackend(pattern, schedule, start_pause=3.0))
        gw = self.gateway([self.route("up", backend.port)])
        idle, sampler = self.start_rss(gw)
        msg_size = 64 * 1024

        async def go():
            async with websockets.connect(gw.url("/up"), max_size=None,
                                          ping_interval=None) as ws:
                t0 = time.monotonic()
                for off in range(0, total, msg_size):
                    await ws.send(pattern.chunk(off, msg_size))
                t_sent = time.monotonic() - t0
            return t_sent, time.monotonic() - t0

        t_sent, t_closed = run_async(go(), 28)
        self.assertEqual(backend.wait_accepted(1), 1, "the backend got no connection")
        eof = backend.eofs[0]
        # The backend may still be in its pauses when the client is done.
        self.assertTrue(eof.wait(12), "the backend saw no EOF within 12 s of the client's close "
                        "(%s)" % backend.checkers[0].describe())
        checker = backend.checkers[0]
        print("64 MiB: %s at the backend; sent in %.2f s (%.1f MB/s incl. 6 s of pauses), "
              "closed after %.2f s" % (checker.describe(), t_sent, total / t_sent / 1e6,
                                       t_closed), flush=True)
        self.assertIsNone(backend.errors_seen[0], "the gateway reset the backend connection")
        self.assertIsNone(checker.first_bad, checker.describe())
        self.assertEqual(checker.count, total)
        self.check_rss("64 MiB to a slow backend", idle, sampler)


class IsolationTest(BackpressureCase):
    def test_stuck_clients_do_not_slow_others(self):
        flood = peers.add(self.h, peers.FloodBackend(peers.Pattern(seed=3)))
        sink = peers.add(self.h, peers.StallBackend())
        _, echo = self.h.start_echo()
        gw = self.gateway([self.route("flood", flood.port), self.route("sink", sink.port),
                           self.route("echo", echo)])
        idle, sampler = self.start_rss(gw)

        # A: its backend floods; it never reads.
        a = raw_upgrade(gw.port, "/flood")
        self.assertEqual(a.status, 101, a.status_line)
        # B: floods a backend that never reads.
        b = raw_upgrade(gw.port, "/sink")
        self.assertEqual(b.status, 101, b.status_line)
        b_flood = peers.Flooder(b.sock, encode_frame(OP_BINARY, os.urandom(64 * 1024)))
        try:
            time.sleep(1.0)  # let every buffer on both paths fill up
            flood_before, b_before = flood.sent[0], b_flood.sent

            async def pings():
                rtts = []
                async with websockets.connect(gw.url("/echo"), ping_interval=None) as ws:
                    for i in range(100):
                        payload = os.urandom(32)
                        t0 = time.monotonic()
                        await ws.send(payload)
                        got = b""
                        while len(got) < len(payload):
                            got += await asyncio.wait_for(ws.recv(), 5)
                        rtts.append(time.monotonic() - t0)
                        if got != payload:
                            raise AssertionError("echo %d differs" % i)
                        await asyncio.sleep(0.005)
                return rtts

            rtts = run_async(pings(), 25)
            flood_after, b_after = flood.sent[0], b_flood.sent
        finally:
            b_flood.stop()
            peers.reset_socket(a.sock)
            peers.reset_socket(b.sock)
            # What B sent can never be delivered: end the sink's side too, so
            # that this test is not about SIGTERM while a flush is stuck
            # (test_close_order.py checks that).
            sink.close()
        med, worst = statistics.median(rtts), max(rtts)
        print("echo round trips beside two stuck clients: median %.2f ms, max %.2f ms over %d; "
              "flood backend wrote %d -> %d bytes, flooding client wrote %d -> %d bytes"
              % (med * 1e3, worst * 1e3, len(rtts), flood_before, flood_after, b_before,
                 b_after), flush=True)
        self.check_rss("two stuck clients", idle, sampler)
        self.assertLess(med, 0.020, "median round trip %.1f ms" % (med * 1e3))
        self.assertLess(worst, 0.250, "slowest round trip %.1f ms" % (worst * 1e3))
        self.assertLess(flood_after - flood_before, 16 * MIB,
                        "the flooding backend was still being read while its client never read")
        self.assertLess(b_after - b_before, 16 * MIB,
                        "the flooding client was still being read while its backend never read")


if __name__ == "__main__":
    harness.main()

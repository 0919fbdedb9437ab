/* ws_rx_guard.c - recv() and SSL_read() as lws sees them (interpose.c holds
 * the symbols and calls in here); see ws_rx_guard.h. */
#define _GNU_SOURCE /* memmem */
#include "ws_rx_guard.h"

#include "gateway.h"
#include "interpose.h"
#include "ws_frame_check.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* With permessage-deflate: which messages lws is about to deliver were
 * compressed, oldest first, one bit each. lws parses what a read returned
 * before it reads again, so this holds at most one read's message starts:
 * 4,096 is about 24 KiB of minimal frames; a client that packs more into
 * one read is closed (1008). */
#define DEFLATE_RING_BITS 4096
struct deflate_ring {
    uint16_t head, count;
    uint8_t bits[DEFLATE_RING_BITS / 8];
};

struct ping_runs;

/* One registered client socket: 64 bytes (+ 516 with permessage-deflate). */
struct ws_rx_guard_conn {
    struct ws_frame_check check;
    void *owner;
    ws_rx_guard_fail_fn on_fail;
    SSL *ssl;                     /* NULL: plain, read with recv() */
    struct deflate_ring *deflate; /* owned; NULL without permessage-deflate */
    int fd;
    bool failed;    /* a violation was reported, or the client's close frame
                       was read: drain and discard what follows */
    bool closing;   /* our close frame went out: report the end */
    bool ring_full; /* a message start found no room in `deflate` */
};

/* What check() hands the checker's callbacks, on its stack: a registered
 * connection keeps nothing of one read (idle memory per connection). */
struct check_run {
    struct ws_rx_guard_conn *g;
    uint8_t *buf;            /* the bytes being judged (RSV1 is cleared there) */
    struct ping_runs *pings; /* the whole pings seen in them */
};

/* The table (struct gateway's `rx_guard`) is the loop thread's alone:
 * `on_loop` is true only on the thread that registered a connection, so
 * Paho's threads (which call recv and SSL_read too) never look. */
static __thread bool on_loop;

/* Frames a client sent in the same packet as its upgrade request follow the
 * request in the read that held it, and lws parses them without another
 * read (see check_early). They are judged when that read happens, because
 * by ESTABLISHED lws has written its 101 response over the same buffer
 * (its per-thread service buffer). Only a read that starts with "GET " (a
 * whole request) is looked at; one request per thread is remembered. */
static __thread struct {
    int fd;                      /* -1: nothing remembered */
    struct ws_frame_check check; /* the checker after those frames */
    int result;                  /* ws_frame_check_feed's answer for them */
    struct ws_frame_verdict verdict;
} early = {.fd = -1};

/* Clears RSV1 in the header of every whole frame header in p[0..n): frames
 * that came with the upgrade request are judged by check_early (where RSV1
 * already fails them), but lws parses them anyway, and its own
 * permessage-deflate inflater must never run (see note_message). */
static void strip_rsv1(unsigned char *p, size_t n)
{
    size_t at = 0;
    while (at + 2 <= n) {
        p[at] &= (unsigned char)~0x40;
        uint64_t len = p[at + 1] & 0x7f;
        size_t head = 2 + ((p[at + 1] & 0x80) ? 4 : 0);
        if (len == 126 || len == 127) {
            size_t bytes = len == 126 ? 2 : 8;
            if (at + 2 + bytes > n)
                return;
            len = 0;
            for (size_t i = 0; i < bytes; i++)
                len = len << 8 | p[at + 2 + i];
            head += bytes;
        }
        if (len > n - at || head + len > n - at)
            return;
        at += head + (size_t)len;
    }
}

static void note_read(int fd, void *buf, ssize_t n)
{
    if (fd < 0 || n < 4 || memcmp(buf, "GET ", 4) != 0)
        return;
    early.fd = -1;
    const unsigned char *end = memmem(buf, (size_t)n, "\r\n\r\n", 4);
    if (!end)
        return;
    end += 4;
    size_t tail = (size_t)((const unsigned char *)buf + n - end);
    if (tail == 0)
        return;
    ws_frame_check_init(&early.check, 0);
    early.result = ws_frame_check_feed(&early.check, end, tail, &early.verdict);
    early.fd = fd;
    strip_rsv1((unsigned char *)end, tail);
}

static struct ws_rx_guard_conn *lookup(int fd)
{
    const struct ws_rx_guard_table *t = &gateway_get()->rx_guard;
    if (!on_loop || fd < 0 || (size_t)fd >= t->n_by_fd)
        return NULL;
    return t->by_fd[fd];
}

/* Frames sent before the 101 (RFC 6455 4.1 forbids it, a hostile client may
 * not care) were read with the upgrade request and are already in lws's
 * hands: they cannot be cut, only judged. A violation among them is
 * reported at once (the owner stops relaying) and later reads are drained. A
 * request split across reads is not looked at (its last read does not start
 * with "GET "); a client that waits for the 101 leaves nothing here. */

static void check_early(struct ws_rx_guard_conn *g)
{
    if (early.fd != g->fd)
        return;
    early.fd = -1;
    /* Those frames were judged without the connection's settings (not known
     * then: a frame with RSV1 failed them); later ones are judged with. */
    uint8_t settings = g->check.flags & (WS_FC_ALLOW_RSV1 | WS_FC_NO_TEXT_UTF8);
    g->check = early.check;
    g->check.flags |= settings;
    if (early.result == WS_FC_OK)
        return;
    if (early.result == WS_FC_VIOLATION)
        g->on_fail(g->owner, early.verdict.code, early.verdict.reason);
    g->failed = true;
}

struct ws_rx_guard_conn *ws_rx_guard_register(int fd, void *ssl, void *owner,
                                              ws_rx_guard_fail_fn on_fail, uint8_t settings)
{
    if (fd < 0)
        return NULL;
    struct ws_rx_guard_table *t = &gateway_get()->rx_guard;
    if ((size_t)fd >= t->n_by_fd) {
        size_t n = t->n_by_fd ? t->n_by_fd : 256;
        while (n <= (size_t)fd)
            n *= 2;
        struct ws_rx_guard_conn **grown = realloc(t->by_fd, n * sizeof(*grown));
        if (!grown)
            return NULL;
        memset(grown + t->n_by_fd, 0, (n - t->n_by_fd) * sizeof(*grown));
        t->by_fd = grown;
        t->n_by_fd = n;
    }
    struct ws_rx_guard_conn *g = calloc(1, sizeof(*g));
    if (!g || ((settings & WS_FC_ALLOW_RSV1) && !(g->deflate = calloc(1, sizeof(*g->deflate))))) {
        free(g);
        return NULL;
    }
    ws_frame_check_init(&g->check, settings);
    g->owner = owner;
    g->on_fail = on_fail;
    g->ssl = ssl;
    g->fd = fd;
    if (!t->by_fd[fd])
        t->n_registered++;
    t->by_fd[fd] = g; /* a stale entry (never unregistered) is replaced */
    on_loop = true;
    check_early(g);
    return g;
}

void ws_rx_guard_closing(struct ws_rx_guard_conn *g)
{
    if (g)
        g->closing = true;
}

int ws_rx_guard_close_code(const struct ws_rx_guard_conn *g)
{
    return g ? ws_frame_check_close_code(&g->check) : 0;
}

void ws_rx_guard_unregister(struct ws_rx_guard_conn *g)
{
    if (!g)
        return;
    struct ws_rx_guard_table *t = &gateway_get()->rx_guard;
    if (g->fd >= 0 && (size_t)g->fd < t->n_by_fd && t->by_fd[g->fd] == g) {
        t->by_fd[g->fd] = NULL;
        t->n_registered--;
    }
    free(g->deflate);
    free(g);
}

int ws_rx_guard_message_compressed(struct ws_rx_guard_conn *g)
{
    struct deflate_ring *r = g ? g->deflate : NULL;
    if (!r || r->count == 0)
        return 0;
    int bit = (r->bits[r->head / 8] >> (r->head % 8)) & 1;
    r->head = (uint16_t)((r->head + 1) % DEFLATE_RING_BITS);
    r->count--;
    return bit;
}

/* A message starts at buf[at]: remember whether it is compressed, and clear
 * RSV1 so that lws's permessage-deflate leaves it alone (its inflater in
 * 4.1.6 aborts the process on some highly compressible messages); the
 * session inflates it (session.c). */
static void note_message(void *ctx, size_t at, bool rsv1)
{
    struct check_run *run = ctx;
    struct ws_rx_guard_conn *g = run->g;
    struct deflate_ring *r = g->deflate;
    if (r->count == DEFLATE_RING_BITS) {
        g->ring_full = true;
        return;
    }
    size_t slot = (r->head + r->count) % DEFLATE_RING_BITS;
    if (rsv1)
        r->bits[slot / 8] |= (uint8_t)(1u << (slot % 8));
    else
        r->bits[slot / 8] &= (uint8_t) ~(1u << (slot % 8));
    r->count++;
    run->buf[at] &= (uint8_t)~0x40;
}

unsigned long ws_rx_guard_count(void) { return gateway_get()->rx_guard.n_registered; }

/* Pings in one read. lws 4.1.6 answers the first ping it has not answered
 * yet and drops the ones that come before that pong is out, where RFC 6455
 * 5.5.3 allows answering only the most recent. So of the whole pings in one
 * read, lws sees only the last (none, if the read ends inside a newer one):
 * it then answers the most recent. At most PINGS_TRACKED per read are
 * removed; past that, the read goes to lws as it came. */
#define PINGS_TRACKED 32
struct ping_runs {
    size_t start[PINGS_TRACKED], end[PINGS_TRACKED];
    size_t n;
    bool overflow;
};

static void note_ping(void *ctx, size_t start, size_t end)
{
    struct ping_runs *p = ((struct check_run *)ctx)->pings;
    if (start == WS_FC_BEFORE_RUN) /* partly in lws's hands already */
        return;
    if (p->n == PINGS_TRACKED) {
        p->overflow = true;
        return;
    }
    p->start[p->n] = start;
    p->end[p->n++] = end;
}

/* Removes all but the most recent whole ping of buf[0..n); returns the new n. */
static size_t keep_last_ping(const struct ws_rx_guard_conn *g, uint8_t *buf, size_t n,
                             const struct ping_runs *p)
{
    size_t drop = ws_frame_check_in_ping(&g->check) ? p->n : p->n - 1;
    if (p->n == 0 || p->overflow || drop == 0)
        return n;
    size_t out = p->start[0];
    for (size_t k = 0; k < drop; k++) {
        size_t next = k + 1 < p->n ? p->start[k + 1] : n;
        if (k + 1 >= drop) /* after the last dropped ping: everything to the end */
            next = n;
        memmove(buf + out, buf + p->end[k], next - p->end[k]);
        out += next - p->end[k];
    }
    return out;
}

/* Runs the checker over what a read returned; returns how many bytes lws
 * may have. After the client's close frame nothing more goes to lws: 4.1.6
 * would deliver data frames that follow it. */
static size_t check(struct ws_rx_guard_conn *g, void *buf, size_t n)
{
    struct ws_frame_verdict v;
    struct ping_runs pings;
    pings.n = 0;
    pings.overflow = false;
    struct check_run run = {.g = g, .buf = buf, .pings = &pings};
    /* unmask: lws then skips its own unmasking, a byte at a time */
    const struct ws_frame_events ev = {.on_message = g->deflate ? note_message : NULL,
                                       .on_ping = note_ping,
                                       .ctx = &run,
                                       .unmask = buf};
    int r = ws_frame_check_feed_ev(&g->check, buf, n, &v, &ev);
    if (g->ring_full && !g->failed) {
        g->on_fail(g->owner, 1008, "too many messages in one read");
        g->failed = true;
        return 0;
    }
    if (r == WS_FC_OK)
        return keep_last_ping(g, buf, n, &pings);
    if (!g->failed && r == WS_FC_VIOLATION)
        g->on_fail(g->owner, v.code, v.reason);
    g->failed = true;
    return v.keep;
}

/* After a violation the client's bytes mean nothing: read and drop them, at
 * most DRAIN_BYTES (or DRAIN_READS reads: a TLS record may hold one byte)
 * per call, so a client that floods cannot hold the loop here. */
#define DRAIN_BYTES (256 * 1024)
#define DRAIN_READS 4096
/* Scratch of the loop thread, whose content means nothing between calls:
 * not state, so not struct gateway's. */
static unsigned char drain_buf[16384];

/* Plain: 0 at the end of the stream (or once closing), else -1/EAGAIN (the
 * rest of a flood is read at the next POLLIN). */
static ssize_t drain_plain(struct ws_rx_guard_conn *g)
{
    size_t total = 0;
    for (int i = 0; i < DRAIN_READS && total < DRAIN_BYTES; i++) {
        ssize_t r = interpose_real_recv(g->fd, drain_buf, sizeof(drain_buf), MSG_DONTWAIT);
        if (r == 0)
            return 0;
        if (r < 0)
            break;
        total += (size_t)r;
    }
    if (g->closing)
        return 0;
    errno = EAGAIN;
    return -1;
}

/* How much of a client one read takes. lws asks for its receive buffer's
 * size (64 KiB, server.c): with many clients, large reads batch system
 * calls and wake-ups. With few, there is CPU to spare and a large message
 * is better passed on in smaller pieces, so that the backend starts on it
 * while the rest is still arriving (64 KiB messages on one connection:
 * +15 % messages/s, round trip -10 %; docs/benchmarks/profile.md). */
#define FEW_CLIENTS 4
#define FEW_CLIENTS_READ_BYTES 16384

ssize_t ws_rx_guard_recv(int fd, void *buf, size_t len, int flags)
{
    struct ws_rx_guard_conn *g = lookup(fd);
    if (!g || g->ssl || (flags & MSG_PEEK)) {
        ssize_t n = interpose_real_recv(fd, buf, len, flags);
        note_read(fd, buf, n);
        return n;
    }
    if (g->failed)
        return drain_plain(g);
    if (len > FEW_CLIENTS_READ_BYTES && gateway_get()->rx_guard.n_registered <= FEW_CLIENTS)
        len = FEW_CLIENTS_READ_BYTES;
    ssize_t n = interpose_real_recv(fd, buf, len, flags);
    if (n <= 0)
        return n;
    size_t keep = check(g, buf, (size_t)n);
    if (keep > 0 || !g->failed)
        return (ssize_t)keep;
    return drain_plain(g); /* nothing of this read is good */
}

/* TLS: lws asks SSL_get_error() why a read returned <= 0, so "no data yet"
 * must be the real SSL_read's own WANT_READ: read until it says so. To end
 * the connection, lws takes errno ENOTCONN after a failed SSL_read as fatal
 * (lws_ssl_capable_read, 4.1.6); a client that floods past the drain limit
 * after breaking a rule is dropped that way too. */
static int drain_tls(struct ws_rx_guard_conn *g)
{
    int r = 1;
    size_t total = 0;
    for (int i = 0; i < DRAIN_READS && total < DRAIN_BYTES && r > 0; i++)
        if ((r = interpose_real_ssl_read(g->ssl, drain_buf, (int)sizeof(drain_buf))) > 0)
            total += (size_t)r;
    if (r > 0 || g->closing) {
        errno = ENOTCONN;
        return -1;
    }
    return r;
}

int ws_rx_guard_ssl_read(SSL *ssl, void *buf, int num)
{
    int fd = ssl ? SSL_get_fd(ssl) : -1;
    struct ws_rx_guard_conn *g = lookup(fd);
    if (!g || g->ssl != ssl) {
        int n = interpose_real_ssl_read(ssl, buf, num);
        note_read(fd, buf, n);
        return n;
    }
    if (g->failed)
        return drain_tls(g);
    int n = interpose_real_ssl_read(ssl, buf, num);
    if (n <= 0)
        return n;
    size_t keep = check(g, buf, (size_t)n);
    if (keep > 0 || !g->failed)
        return (int)keep;
    return drain_tls(g);
}

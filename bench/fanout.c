/* fanout.c - the benchmark's MQTT fan-out load generator.
 *
 * One thread, one epoll loop. One publisher (MQTT 3.1.1 over plain TCP, QoS 0) publishes
 * 64-byte ASCII payloads to one topic; N WebSocket subscribers receive them:
 *   --mode mqttws  each subscriber is an MQTT 3.1.1 client over WebSocket (subprotocol
 *                  "mqtt", e.g. mosquitto's `protocol websockets` listener): CONNECT,
 *                  SUBSCRIBE (QoS 0), then PUBLISH packets, parsed by hand from the
 *                  WebSocket byte stream;
 *   --mode ws      each subscriber is a plain WebSocket client of a gateway route that
 *                  sends every broker message's payload as one WebSocket message (wsgate's
 *                  raw mqtt route).
 * Each payload carries a sequence number and the publisher's CLOCK_MONOTONIC send time, so
 * every delivery gives one latency sample (publish handed to the socket -> payload parsed
 * by the subscriber, same machine, same clock) and every subscriber sees its gaps.
 *
 * Flow: the publisher keeps at most --window messages outstanding, a message being done
 * once every live subscriber has received it or a later one (a message a subscriber never
 * gets, dropped by the broker or gateway, does not block the window once a later one
 * arrives). So it publishes as fast as the slowest subscriber takes them, without flooding
 * the broker; --rate caps the publish rate on top (0: no cap).
 *
 * Phases: connect all subscribers (and wait for SUBACK in mqttws mode); prime (publish a
 * probe every --prime-interval until every subscriber has received one: the gateway's
 * broker subscription is live); warm-up; the measured window; drain (stop publishing,
 * wait up to --drain seconds for the last messages). Reported: deliveries per second in
 * the window (all subscribers together), latency percentiles of those deliveries, and
 * losses: of the messages published in the window, published x subscribers minus the
 * deliveries of them that arrived by the end of the drain.
 *
 *   fanout --mode mqttws|ws --port N --pub-port N [--host H] [--path P] [--subprotocol S]
 *          [--topic T] [--subs N] [--window W] [--rate R] [--duration S] [--warmup S]
 *          [--connect-timeout S] [--cpu-pid LABEL=PID]...
 * Prints one JSON line on stdout, complaints on stderr.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD_BYTES 64
#define RX_BUF_BYTES (256 * 1024) /* one read's worth, shared by all connections */
#define HS_BUF_BYTES 1024
#define MSG_MAX 256 /* largest MQTT packet / WebSocket message a subscriber accepts */
#define TX_MAX 512  /* a subscriber's own output: handshake, CONNECT+SUBSCRIBE, pongs */
#define MAX_CONNECTING 256
#define MAX_EVENTS 1024
#define MAX_CPU_PIDS 4
#define MAX_SUBS 200000

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 33
#define HIST_BUCKETS ((HIST_MAX_SHIFT + 2) * HIST_SUB)

enum sub_mode { MODE_MQTTWS, MODE_WS };
enum phase { PH_SETUP, PH_PRIME, PH_WARMUP, PH_MEASURE, PH_DRAIN };
enum sub_state { SS_IDLE, SS_CONNECTING, SS_HS_SEND, SS_HS_RECV, SS_MQTT_WAIT, SS_READY, SS_DEAD };
enum err_kind {
    ERR_CONNECT,
    ERR_HANDSHAKE,
    ERR_CLOSED,
    ERR_PROTOCOL,
    ERR_ORDER,
    ERR_TIMEOUT,
    ERR_PRIME,
    ERR_KINDS
};
static const char *const err_names[ERR_KINDS] = {
    "connect", "handshake", "closed", "protocol", "out_of_order", "setup_timeout", "prime_timeout"};

struct options {
    enum sub_mode mode;
    const char *host, *port, *pub_port, *path, *subprotocol, *topic;
    unsigned subs, window;
    double rate, duration, warmup, connect_timeout, drain, prime_interval;
    unsigned ncpu;
    const char *cpu_label[MAX_CPU_PIDS];
    int cpu_pid[MAX_CPU_PIDS];
};

struct sub {
    int fd;
    unsigned id;
    uint8_t state;
    uint32_t events;
    /* WebSocket receive parser */
    unsigned char hdr[14];
    uint8_t hdr_have, hdr_need;
    uint8_t frame_op; /* opcode of the frame being read (0 continuation) */
    bool frame_fin;
    uint32_t frame_left;
    unsigned char ctl[128]; /* a control frame's payload (ping) */
    uint8_t ctl_len;
    /* data: the MQTT packet (mqttws) or WebSocket message (ws) being assembled */
    unsigned char msg[MSG_MAX];
    uint16_t msg_len;
    uint32_t msg_need; /* mqttws: whole packet length once its header is known, else 0 */
    /* delivery bookkeeping */
    bool primed;
    uint64_t last_seq;
    uint64_t got; /* deliveries in the measured window */
    /* handshake, then small writes */
    char *hs;
    uint16_t hs_len;
    unsigned char tx[TX_MAX];
    uint16_t tx_len, tx_pos;
};

struct stats {
    uint64_t deliveries;         /* in the measured window (by arrival time) */
    uint64_t delivered_measured; /* deliveries of messages published in the window, any time */
    uint64_t gaps;               /* sequence numbers skipped, as seen by subscribers */
    uint64_t errors[ERR_KINDS];
    uint64_t hist[HIST_BUCKETS];
    uint64_t hist_count;
};

static struct options opt;
static struct sub *subs;
static struct stats st;
static enum phase phase = PH_SETUP;
static int ep = -1;
static unsigned char *rxbuf;
static struct addrinfo *sub_target;
static unsigned connecting, next_idle, ready_count, primed_count, ready_at_start;
static unsigned errors_printed;
static uint64_t rng_state;

/* Publisher */
static int pub_fd = -1;
static unsigned char *pub_tx;
static size_t pub_tx_cap, pub_tx_len, pub_tx_pos;
static uint64_t pub_next = 1; /* next sequence number; 0 never used */
static uint64_t flow_start;   /* first windowed sequence number */
static uint64_t m0, m1;       /* measured messages: [m0, m1), m1 == 0 while measuring */
static uint64_t flow_t0;      /* when windowed publishing began (for --rate) */
static uint64_t last_probe_ns;
static uint32_t *seen_past; /* ring: subscribers whose last seq >= m */
static uint64_t ring_mask;
static unsigned char pub_header[8];
static size_t pub_header_len;
static size_t pub_packet_len;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* --- histogram (as in wsbench.c) ------------------------------------------------ */

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63 - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    if (shift > HIST_MAX_SHIFT)
        return HIST_BUCKETS - 1;
    return shift * HIST_SUB + (unsigned)(v >> shift);
}

static double hist_value(unsigned idx)
{
    if (idx < 2 * HIST_SUB)
        return idx;
    unsigned shift = idx / HIST_SUB - 1;
    uint64_t low = (uint64_t)(idx - shift * HIST_SUB) << shift;
    return (double)low + (double)(1ull << shift) / 2.0;
}

static double hist_percentile_us(double q)
{
    if (st.hist_count == 0)
        return 0.0;
    uint64_t want = (uint64_t)(q * (double)st.hist_count + 0.999999);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += st.hist[i];
        if (seen >= want)
            return hist_value(i) / 1000.0;
    }
    return hist_value(HIST_BUCKETS - 1) / 1000.0;
}

/* --- small helpers ---------------------------------------------------------------- */

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}

static size_t mqtt_remlen(unsigned char *out, size_t len)
{
    size_t n = 0;
    do {
        unsigned char b = len % 128;
        len /= 128;
        out[n++] = (unsigned char)(len ? b | 0x80 : b);
    } while (len);
    return n;
}

static size_t put_str(unsigned char *out, const char *s)
{
    size_t l = strlen(s);
    out[0] = (unsigned char)(l >> 8);
    out[1] = (unsigned char)l;
    memcpy(out + 2, s, l);
    return 2 + l;
}

/* An MQTT 3.1.1 CONNECT: clean session, keepalive 0 (none). */
static size_t mqtt_connect(unsigned char *out, const char *client_id)
{
    unsigned char body[128];
    size_t b = 0;
    b += put_str(body + b, "MQTT");
    body[b++] = 4;    /* protocol level 3.1.1 */
    body[b++] = 0x02; /* clean session */
    body[b++] = 0;
    body[b++] = 0; /* keepalive */
    b += put_str(body + b, client_id);
    size_t n = 0;
    out[n++] = 0x10;
    n += mqtt_remlen(out + n, b);
    memcpy(out + n, body, b);
    return n + b;
}

static size_t mqtt_subscribe(unsigned char *out, const char *filter)
{
    unsigned char body[300];
    size_t b = 0;
    body[b++] = 0;
    body[b++] = 1; /* packet id */
    b += put_str(body + b, filter);
    body[b++] = 0; /* QoS 0 */
    size_t n = 0;
    out[n++] = 0x82;
    n += mqtt_remlen(out + n, b);
    memcpy(out + n, body, b);
    return n + b;
}

/* One masked client frame of opcode op around payload p into out; returns its length. */
static size_t ws_frame(unsigned char *out, unsigned op, const unsigned char *p, size_t n)
{
    size_t h = 0;
    out[h++] = (unsigned char)(0x80 | op);
    if (n < 126) {
        out[h++] = (unsigned char)(0x80 | n);
    } else {
        out[h++] = 0x80 | 126;
        out[h++] = (unsigned char)(n >> 8);
        out[h++] = (unsigned char)n;
    }
    uint32_t m = (uint32_t)rng_next();
    unsigned char *mask = out + h;
    memcpy(mask, &m, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        out[h + i] = p[i] ^ mask[i & 3];
    return h + n;
}

/* --- subscribers ------------------------------------------------------------------ */

static void sub_fail(struct sub *c, enum err_kind kind, const char *what)
{
    if (c->state == SS_DEAD)
        return;
    st.errors[kind]++;
    if (errors_printed < 5) {
        fprintf(stderr, "fanout: subscriber %u: %s: %s\n", c->id, err_names[kind], what);
        errors_printed++;
    }
    if (c->state >= SS_CONNECTING && c->state <= SS_MQTT_WAIT)
        connecting--;
    if (c->state == SS_READY) {
        ready_count--;
        if (c->primed)
            primed_count--;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = SS_DEAD;
    free(c->hs);
    c->hs = NULL;
}

static int sub_watch(struct sub *c, uint32_t events)
{
    if (c->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        return -1;
    c->events = events;
    return 0;
}

static void sub_flush(struct sub *c)
{
    while (c->tx_pos < c->tx_len) {
        ssize_t w = write(c->fd, c->tx + c->tx_pos, c->tx_len - c->tx_pos);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            sub_fail(c, ERR_CLOSED, strerror(errno));
            return;
        }
        c->tx_pos = (uint16_t)(c->tx_pos + w);
    }
    if (c->tx_pos == c->tx_len)
        c->tx_pos = c->tx_len = 0;
    if (sub_watch(c, c->tx_len ? EPOLLIN | EPOLLOUT : EPOLLIN) != 0)
        sub_fail(c, ERR_CLOSED, strerror(errno));
}

/* Queues a masked frame; drops it (an error) if the small buffer is full. */
static void sub_send_frame(struct sub *c, unsigned op, const unsigned char *p, size_t n)
{
    if (c->tx_len + n + 8 > TX_MAX) {
        sub_fail(c, ERR_PROTOCOL, "own send buffer full (server not reading?)");
        return;
    }
    c->tx_len = (uint16_t)(c->tx_len + ws_frame(c->tx + c->tx_len, op, p, n));
}

static void sub_start(struct sub *c)
{
    int one = 1;
    c->state = SS_CONNECTING;
    connecting++;
    c->fd = socket(sub_target->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        sub_fail(c, ERR_CONNECT, strerror(errno));
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, sub_target->ai_addr, sub_target->ai_addrlen) != 0 && errno != EINPROGRESS) {
        sub_fail(c, ERR_CONNECT, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        sub_fail(c, ERR_CONNECT, strerror(errno));
        return;
    }
    c->events = EPOLLOUT;
}

static void start_more_subs(void)
{
    while (next_idle < opt.subs && connecting < MAX_CONNECTING)
        sub_start(&subs[next_idle++]);
}

static void sub_ready(struct sub *c)
{
    connecting--;
    c->state = SS_READY;
    ready_count++;
}

static void handshake_build(struct sub *c)
{
    unsigned char key[16];
    char key64[25];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next();
        memcpy(key + i, &r, 8);
    }
    base64(key, sizeof(key), key64);
    c->hs = malloc(HS_BUF_BYTES);
    if (!c->hs) {
        sub_fail(c, ERR_HANDSHAKE, "out of memory");
        return;
    }
    int n = snprintf(c->hs, HS_BUF_BYTES,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     opt.path, opt.host, opt.port, key64,
                     opt.subprotocol ? "Sec-WebSocket-Protocol: " : "",
                     opt.subprotocol ? opt.subprotocol : "", opt.subprotocol ? "\r\n" : "");
    if (n < 0 || n >= HS_BUF_BYTES || n > TX_MAX) {
        sub_fail(c, ERR_HANDSHAKE, "request too long");
        return;
    }
    memcpy(c->tx, c->hs, (size_t)n);
    c->tx_len = (uint16_t)n;
    c->tx_pos = 0;
    c->hs_len = 0;
    c->state = SS_HS_SEND;
    sub_flush(c);
    if (c->state == SS_HS_SEND && c->tx_len == 0) {
        c->state = SS_HS_RECV;
    }
}

static void ws_parse(struct sub *c, const unsigned char *p, size_t n, uint64_t now);

static void on_connected(struct sub *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        sub_fail(c, ERR_CONNECT, strerror(err));
        return;
    }
    handshake_build(c);
}

static void handshake_recv(struct sub *c, uint64_t now)
{
    ssize_t r = read(c->fd, c->hs + c->hs_len, HS_BUF_BYTES - 1 - c->hs_len);
    if (r == 0) {
        sub_fail(c, ERR_HANDSHAKE, "connection closed during the handshake");
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR)
            sub_fail(c, ERR_HANDSHAKE, strerror(errno));
        return;
    }
    c->hs_len = (uint16_t)(c->hs_len + r);
    c->hs[c->hs_len] = '\0';
    char *end = strstr(c->hs, "\r\n\r\n");
    if (!end) {
        if (c->hs_len >= HS_BUF_BYTES - 1)
            sub_fail(c, ERR_HANDSHAKE, "response head too long");
        return;
    }
    end += 4;
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
        char line[128];
        snprintf(line, sizeof(line), "%.*s", (int)strcspn(c->hs, "\r\n"), c->hs);
        sub_fail(c, ERR_HANDSHAKE, line);
        return;
    }
    size_t extra = c->hs_len - (size_t)(end - c->hs);
    unsigned char early[HS_BUF_BYTES];
    memcpy(early, end, extra);
    free(c->hs);
    c->hs = NULL;
    if (opt.mode == MODE_MQTTWS) {
        unsigned char pk[400];
        char cid[64];
        snprintf(cid, sizeof(cid), "fan-%d-%u", (int)getpid(), c->id);
        size_t k = mqtt_connect(pk, cid);
        k += mqtt_subscribe(pk + k, opt.topic);
        sub_send_frame(c, 0x2, pk, k);
        if (c->state == SS_DEAD)
            return;
        c->state = SS_MQTT_WAIT;
        sub_flush(c);
    } else {
        sub_ready(c);
        sub_flush(c);
    }
    if (extra > 0 && c->state != SS_DEAD)
        ws_parse(c, early, extra, now);
}

/* --- deliveries --------------------------------------------------------------------- */

static uint64_t hex16(const unsigned char *p, bool *ok)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        unsigned char ch = p[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = ch - '0';
        else if (ch >= 'a' && ch <= 'f')
            d = ch - 'a' + 10;
        else {
            *ok = false;
            return 0;
        }
        v = v << 4 | d;
    }
    return v;
}

static uint64_t delivery_count; /* every delivery, any phase: progress */

static void deliver(struct sub *c, const unsigned char *p, size_t n, uint64_t now)
{
    bool ok = n == PAYLOAD_BYTES && p[16] == ' ';
    uint64_t seq = ok ? hex16(p, &ok) : 0;
    uint64_t ts = ok ? hex16(p + 17, &ok) : 0;
    if (!ok || seq == 0 || seq >= pub_next) {
        sub_fail(c, ERR_PROTOCOL, "payload not one of ours");
        return;
    }
    if (c->state != SS_READY)
        return; /* mqttws: a PUBLISH before SUBACK; cannot happen with one subscription */
    delivery_count++;
    if (!c->primed) {
        c->primed = true;
        primed_count++;
        c->last_seq = seq;
        return;
    }
    if (seq <= c->last_seq) {
        st.errors[ERR_ORDER]++;
        return;
    }
    if (seq > c->last_seq + 1 && c->last_seq + 1 >= flow_start)
        st.gaps += seq - c->last_seq - 1;
    /* seen_past[m] counts the subscribers that have seen m or a later message */
    if (flow_start) {
        uint64_t lo = c->last_seq + 1;
        if (lo < flow_start)
            lo = flow_start;
        uint64_t ring = ring_mask + 1;
        if (pub_next > ring && lo < pub_next - ring)
            lo = pub_next - ring;
        for (uint64_t m = lo; m <= seq; m++)
            seen_past[m & ring_mask]++;
    }
    c->last_seq = seq;
    if (phase == PH_MEASURE) {
        st.deliveries++;
        c->got++;
        st.hist[hist_index(now > ts ? now - ts : 0)]++;
        st.hist_count++;
    }
    if (m0 && seq >= m0 && (m1 == 0 || seq < m1))
        st.delivered_measured++;
}

static void mqtt_packet(struct sub *c, const unsigned char *p, size_t n, uint64_t now)
{
    unsigned type = p[0] >> 4;
    size_t h = 1;
    do {
        h++;
    } while ((p[h - 1] & 0x80) && h < 5);
    const unsigned char *b = p + h;
    size_t bl = n - h;
    switch (type) {
    case 2: /* CONNACK */
        if (bl < 2 || b[1] != 0)
            sub_fail(c, ERR_HANDSHAKE, "CONNACK refused");
        break;
    case 9: /* SUBACK */
        if (bl < 3 || b[2] == 0x80) {
            sub_fail(c, ERR_HANDSHAKE, "SUBACK refused");
            break;
        }
        if (c->state == SS_MQTT_WAIT)
            sub_ready(c);
        break;
    case 3: { /* PUBLISH */
        unsigned qos = (p[0] >> 1) & 3;
        if (bl < 2) {
            sub_fail(c, ERR_PROTOCOL, "short PUBLISH");
            break;
        }
        size_t tl = (size_t)b[0] << 8 | b[1];
        size_t off = 2 + tl + (qos ? 2 : 0);
        if (off > bl) {
            sub_fail(c, ERR_PROTOCOL, "short PUBLISH");
            break;
        }
        deliver(c, b + off, bl - off, now);
        break;
    }
    case 13: /* PINGRESP */
        break;
    default:
        sub_fail(c, ERR_PROTOCOL, "unexpected MQTT packet");
    }
}

/* Feeds WebSocket data-frame payload bytes of an MQTT-over-WebSocket stream. */
static void mqtt_feed(struct sub *c, const unsigned char *p, size_t n, uint64_t now)
{
    while (n > 0 && c->state != SS_DEAD) {
        if (c->msg_need == 0) {
            /* header: type byte and 1..4 remaining-length bytes, one byte at a time */
            c->msg[c->msg_len++] = *p++;
            n--;
            if (c->msg_len >= 2 && !(c->msg[c->msg_len - 1] & 0x80)) {
                size_t rem = 0, mul = 1;
                for (unsigned i = 1; i < c->msg_len; i++, mul *= 128)
                    rem += (c->msg[i] & 0x7f) * mul;
                if (c->msg_len + rem > MSG_MAX) {
                    sub_fail(c, ERR_PROTOCOL, "MQTT packet too large");
                    return;
                }
                c->msg_need = (uint32_t)(c->msg_len + rem);
            } else if (c->msg_len >= 5) {
                sub_fail(c, ERR_PROTOCOL, "bad MQTT remaining length");
                return;
            } else {
                continue;
            }
        }
        size_t take = c->msg_need - c->msg_len;
        if (take > n)
            take = n;
        memcpy(c->msg + c->msg_len, p, take);
        c->msg_len = (uint16_t)(c->msg_len + take);
        p += take;
        n -= take;
        if (c->msg_len == c->msg_need) {
            mqtt_packet(c, c->msg, c->msg_len, now);
            c->msg_len = 0;
            c->msg_need = 0;
        }
    }
}

static void ws_parse(struct sub *c, const unsigned char *p, size_t n, uint64_t now)
{
    while (n > 0 && c->state != SS_DEAD) {
        if (c->hdr_need > 0) {
            while (n > 0 && c->hdr_have < c->hdr_need) {
                c->hdr[c->hdr_have++] = *p++;
                n--;
                if (c->hdr_have == 2) {
                    unsigned len7 = c->hdr[1] & 0x7f;
                    if (c->hdr[1] & 0x80) {
                        sub_fail(c, ERR_PROTOCOL, "server sent a masked frame");
                        return;
                    }
                    c->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0));
                }
            }
            if (c->hdr_have < c->hdr_need)
                return;
            unsigned op = c->hdr[0] & 0x0f;
            uint64_t len = c->hdr[1] & 0x7f;
            if (len == 126)
                len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            else if (len == 127)
                for (int i = 0; i < 8; i++)
                    len = (i ? len << 8 : 0) | c->hdr[2 + i];
            if (op == 0x8) {
                sub_fail(c, ERR_CLOSED, "server sent a close frame");
                return;
            }
            if (op >= 0x8 && len > 125) {
                sub_fail(c, ERR_PROTOCOL, "control frame too long");
                return;
            }
            if (len > 1u << 30) {
                sub_fail(c, ERR_PROTOCOL, "frame too long");
                return;
            }
            c->frame_op = (uint8_t)op;
            c->frame_fin = (c->hdr[0] & 0x80) != 0;
            c->frame_left = (uint32_t)len;
            c->hdr_have = 0;
            c->hdr_need = 0;
            c->ctl_len = 0;
        }
        size_t take = c->frame_left < n ? c->frame_left : n;
        unsigned op = c->frame_op;
        if (op >= 0x8) {
            memcpy(c->ctl + c->ctl_len, p, take);
            c->ctl_len = (uint8_t)(c->ctl_len + take);
        } else if (opt.mode == MODE_MQTTWS) {
            mqtt_feed(c, p, take, now);
        } else {
            if (c->msg_len + take > MSG_MAX) {
                sub_fail(c, ERR_PROTOCOL, "message too large");
                return;
            }
            memcpy(c->msg + c->msg_len, p, take);
            c->msg_len = (uint16_t)(c->msg_len + take);
        }
        if (c->state == SS_DEAD)
            return;
        c->frame_left -= (uint32_t)take;
        p += take;
        n -= take;
        if (c->frame_left == 0) {
            c->hdr_need = 2;
            if (op == 0x9) { /* ping: answer with a pong */
                sub_send_frame(c, 0xA, c->ctl, c->ctl_len);
                if (c->state != SS_DEAD)
                    sub_flush(c);
            } else if (op < 0x8 && opt.mode == MODE_WS && c->frame_fin) {
                deliver(c, c->msg, c->msg_len, now);
                c->msg_len = 0;
            }
        }
    }
}

static void sub_read(struct sub *c, uint64_t now)
{
    for (;;) {
        ssize_t r = read(c->fd, rxbuf, RX_BUF_BYTES);
        if (r == 0) {
            sub_fail(c, ERR_CLOSED, "server closed the connection");
            return;
        }
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR)
                sub_fail(c, ERR_CLOSED, strerror(errno));
            return;
        }
        ws_parse(c, rxbuf, (size_t)r, now);
        if (c->state == SS_DEAD || (size_t)r < RX_BUF_BYTES)
            return;
    }
}

static void sub_event(struct sub *c, uint32_t events, uint64_t now)
{
    switch (c->state) {
    case SS_CONNECTING:
        on_connected(c);
        break;
    case SS_HS_SEND:
        sub_flush(c);
        if (c->state == SS_HS_SEND && c->tx_len == 0)
            c->state = SS_HS_RECV;
        break;
    case SS_HS_RECV:
        handshake_recv(c, now);
        break;
    case SS_MQTT_WAIT:
    case SS_READY:
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            sub_read(c, now);
        if (c->state != SS_DEAD && (events & EPOLLOUT))
            sub_flush(c);
        break;
    default:
        break;
    }
}

/* --- publisher ---------------------------------------------------------------------- */

static int pub_connect(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(opt.host, opt.pub_port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "fanout: publisher %s:%s: %s\n", opt.host, opt.pub_port, gai_strerror(rc));
        return -1;
    }
    pub_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (pub_fd < 0 || connect(pub_fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        fprintf(stderr, "fanout: publisher connect %s:%s: %s\n", opt.host, opt.pub_port,
                strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(pub_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(pub_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    unsigned char pk[128];
    char cid[64];
    snprintf(cid, sizeof(cid), "fan-pub-%d", (int)getpid());
    size_t k = mqtt_connect(pk, cid);
    if (write(pub_fd, pk, k) != (ssize_t)k) {
        fprintf(stderr, "fanout: publisher: CONNECT not written\n");
        return -1;
    }
    unsigned char ack[4];
    size_t got = 0;
    while (got < 4) {
        ssize_t r = read(pub_fd, ack + got, 4 - got);
        if (r <= 0) {
            fprintf(stderr, "fanout: publisher: no CONNACK (%s)\n", r ? strerror(errno) : "EOF");
            return -1;
        }
        got += (size_t)r;
    }
    if (ack[0] != 0x20 || ack[3] != 0) {
        fprintf(stderr, "fanout: publisher: CONNACK refused (%02x %02x %02x %02x)\n", ack[0],
                ack[1], ack[2], ack[3]);
        return -1;
    }
    int fl = fcntl(pub_fd, F_GETFL);
    if (fl < 0 || fcntl(pub_fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, pub_fd, &ev) != 0)
        return -1;
    /* The fixed part of every PUBLISH: type (QoS 0), remaining length, topic. */
    size_t tl = strlen(opt.topic);
    pub_header_len = 0;
    pub_header[pub_header_len++] = 0x30;
    pub_header_len += mqtt_remlen(pub_header + pub_header_len, 2 + tl + PAYLOAD_BYTES);
    pub_packet_len = pub_header_len + 2 + tl + PAYLOAD_BYTES;
    return 0;
}

static void pub_flush(void)
{
    while (pub_tx_pos < pub_tx_len) {
        ssize_t w = write(pub_fd, pub_tx + pub_tx_pos, pub_tx_len - pub_tx_pos);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            fprintf(stderr, "fanout: publisher: write: %s\n", strerror(errno));
            exit(1);
        }
        pub_tx_pos += (size_t)w;
    }
    bool pending = pub_tx_pos < pub_tx_len;
    if (!pending)
        pub_tx_pos = pub_tx_len = 0;
    static bool watching_out;
    if (pending != watching_out) {
        struct epoll_event ev = {.events = pending ? EPOLLIN | EPOLLOUT : EPOLLIN,
                                 .data.ptr = NULL};
        epoll_ctl(ep, EPOLL_CTL_MOD, pub_fd, &ev);
        watching_out = pending;
    }
}

static void put_hex16(unsigned char *out, uint64_t v)
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = (unsigned char)hx[v & 15];
}

/* Appends one PUBLISH of the next sequence number; false if the buffer is full. */
static bool pub_append(uint64_t now)
{
    if (pub_tx_len + pub_packet_len > pub_tx_cap) {
        if (pub_tx_pos == 0)
            return false;
        memmove(pub_tx, pub_tx + pub_tx_pos, pub_tx_len - pub_tx_pos);
        pub_tx_len -= pub_tx_pos;
        pub_tx_pos = 0;
        if (pub_tx_len + pub_packet_len > pub_tx_cap)
            return false;
    }
    unsigned char *o = pub_tx + pub_tx_len;
    memcpy(o, pub_header, pub_header_len);
    o += pub_header_len;
    o += put_str(o, opt.topic);
    /* "<seq, 16 hex> <send time ns, 16 hex> " then filler: 64 ASCII bytes */
    put_hex16(o, pub_next);
    o[16] = ' ';
    put_hex16(o + 17, now);
    memset(o + 33, '.', PAYLOAD_BYTES - 33);
    o[PAYLOAD_BYTES - 1] = '\n';
    pub_tx_len += pub_packet_len;
    if (flow_start && pub_next >= flow_start)
        seen_past[pub_next & ring_mask] = 0;
    pub_next++;
    return true;
}

static uint64_t last_progress_ns, stalls;

static void pub_pump(uint64_t now)
{
    if (phase == PH_PRIME) {
        /* A probe, and another only once nothing at all has arrived for a while (the
         * subscription at the broker may not be in place yet): probes still on their
         * way to 10,000 subscribers would be a backlog in front of the measurement. */
        static uint64_t count_at_probe = UINT64_MAX;
        uint64_t quiet = (uint64_t)(opt.prime_interval * 1e9);
        if (delivery_count != count_at_probe) {
            count_at_probe = delivery_count;
            if (last_probe_ns)
                last_probe_ns = now;
        }
        if (now - last_probe_ns >= quiet) {
            last_probe_ns = now;
            pub_append(now);
        }
    } else if (phase == PH_WARMUP || phase == PH_MEASURE) {
        uint64_t allowed = UINT64_MAX;
        if (opt.rate > 0)
            allowed = flow_start + 1 + (uint64_t)(opt.rate * (double)(now - flow_t0) / 1e9);
        while (pub_next < allowed) {
            if (pub_next >= flow_start + opt.window &&
                seen_past[(pub_next - opt.window) & ring_mask] < ready_count) {
                /* The window is full. A subscriber that lost every message still in it
                 * would hold it shut for good: after 1 s without any delivery, let one
                 * more message out (counted as a stall). */
                if (now - last_progress_ns < 1000000000u)
                    break;
                stalls++;
                last_progress_ns = now;
            }
            if (!pub_append(now))
                break;
        }
    }
    if (pub_tx_len > pub_tx_pos)
        pub_flush();
}

static void pub_event(uint32_t events)
{
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        unsigned char buf[512];
        ssize_t r = read(pub_fd, buf, sizeof(buf));
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            fprintf(stderr, "fanout: publisher: the broker closed the connection\n");
            exit(1);
        }
    }
    if (events & EPOLLOUT)
        pub_flush();
}

/* --- CPU accounting (as in wsbench.c, without children) ------------------------------ */

static double proc_cpu_s(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1.0;
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char tpath[320];
        unsigned long long run_ns;
        snprintf(tpath, sizeof(tpath), "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *t = fopen(tpath, "r");
        if (!t)
            continue;
        if (fscanf(t, "%llu", &run_ns) == 1)
            total += (double)run_ns / 1e9;
        fclose(t);
    }
    closedir(d);
    return total;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* --- options ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fanout --mode mqttws|ws --port N --pub-port N [options]\n"
            "  --mode mqttws        subscribers speak MQTT 3.1.1 over WebSocket (mosquitto)\n"
            "  --mode ws            subscribers get each payload as a WebSocket message\n"
            "  --host H             address of both servers (default 127.0.0.1)\n"
            "  --port N             the subscribers' WebSocket port\n"
            "  --pub-port N         the broker's MQTT TCP port, for the publisher\n"
            "  --path P             WebSocket request path (default /)\n"
            "  --subprotocol NAME   offer this subprotocol (mqttws: default mqtt)\n"
            "  --topic T            topic published and subscribed (default bench/fan)\n"
            "  --subs N             subscribers (default 1)\n"
            "  --window W           messages outstanding until every subscriber has them\n"
            "                       (default 64)\n"
            "  --rate R             cap on published messages/s (default 0: none)\n"
            "  --duration S         measured seconds (default 3)\n"
            "  --warmup S           seconds of traffic before measuring (default 1)\n"
            "  --drain S            at most this long for the last messages (default 2)\n"
            "  --connect-timeout S  subscribers not subscribed by then are errors, and the\n"
            "                       same again for the first message to reach all (default 30)\n"
            "  --prime-interval S   another probe after this long with nothing received\n"
            "                       (default 0.05 + 25 us per subscriber)\n"
            "  --cpu-pid LABEL=PID  report CPU seconds of PID over the measured window\n"
            "Prints one JSON line.\n");
}

static int parse_num(const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "fanout: %s: expected a number in %g..%g, got \"%s\"\n", name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    double v;
    opt.mode = MODE_MQTTWS;
    opt.host = "127.0.0.1";
    opt.path = "/";
    opt.topic = "bench/fan";
    opt.subs = 1;
    opt.window = 64;
    opt.duration = 3;
    opt.warmup = 1;
    opt.drain = 2;
    opt.connect_timeout = 30;
    opt.prime_interval = 0;
    bool subprotocol_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fanout: unknown or incomplete option \"%s\"\n", a);
            return -1;
        }
        const char *val = argv[++i];
        if (strcmp(a, "--mode") == 0) {
            if (strcmp(val, "mqttws") == 0)
                opt.mode = MODE_MQTTWS;
            else if (strcmp(val, "ws") == 0)
                opt.mode = MODE_WS;
            else {
                fprintf(stderr, "fanout: --mode: expected mqttws or ws, got \"%s\"\n", val);
                return -1;
            }
        } else if (strcmp(a, "--host") == 0) {
            opt.host = val;
        } else if (strcmp(a, "--port") == 0) {
            if (parse_num(a, val, 1, 65535, &v) != 0)
                return -1;
            opt.port = val;
        } else if (strcmp(a, "--pub-port") == 0) {
            if (parse_num(a, val, 1, 65535, &v) != 0)
                return -1;
            opt.pub_port = val;
        } else if (strcmp(a, "--path") == 0) {
            opt.path = val;
        } else if (strcmp(a, "--subprotocol") == 0) {
            opt.subprotocol = *val ? val : NULL;
            subprotocol_set = true;
        } else if (strcmp(a, "--topic") == 0) {
            if (strlen(val) == 0 || strlen(val) > 200 || strpbrk(val, "+#")) {
                fprintf(stderr, "fanout: --topic: 1..200 bytes, no wildcards\n");
                return -1;
            }
            opt.topic = val;
        } else if (strcmp(a, "--subs") == 0) {
            if (parse_num(a, val, 1, MAX_SUBS, &v) != 0)
                return -1;
            opt.subs = (unsigned)v;
        } else if (strcmp(a, "--window") == 0) {
            if (parse_num(a, val, 1, 65536, &v) != 0)
                return -1;
            opt.window = (unsigned)v;
        } else if (strcmp(a, "--rate") == 0) {
            if (parse_num(a, val, 0, 1e9, &opt.rate) != 0)
                return -1;
        } else if (strcmp(a, "--duration") == 0) {
            if (parse_num(a, val, 0.1, 86400, &opt.duration) != 0)
                return -1;
        } else if (strcmp(a, "--warmup") == 0) {
            if (parse_num(a, val, 0, 3600, &opt.warmup) != 0)
                return -1;
        } else if (strcmp(a, "--drain") == 0) {
            if (parse_num(a, val, 0, 3600, &opt.drain) != 0)
                return -1;
        } else if (strcmp(a, "--connect-timeout") == 0) {
            if (parse_num(a, val, 0.1, 3600, &opt.connect_timeout) != 0)
                return -1;
        } else if (strcmp(a, "--prime-interval") == 0) {
            if (parse_num(a, val, 0.001, 10, &opt.prime_interval) != 0)
                return -1;
        } else if (strcmp(a, "--cpu-pid") == 0) {
            const char *eq = strchr(val, '=');
            if (!eq || eq == val || opt.ncpu == MAX_CPU_PIDS ||
                parse_num(a, eq + 1, 1, 1e9, &v) != 0) {
                fprintf(stderr, "fanout: --cpu-pid: expected LABEL=PID (at most %d)\n",
                        MAX_CPU_PIDS);
                return -1;
            }
            opt.cpu_label[opt.ncpu] = strndup(val, (size_t)(eq - val));
            opt.cpu_pid[opt.ncpu++] = (int)v;
        } else {
            fprintf(stderr, "fanout: unknown option \"%s\"\n", a);
            return -1;
        }
    }
    if (!opt.port || !opt.pub_port) {
        fprintf(stderr, "fanout: --port and --pub-port are required\n");
        return -1;
    }
    if (!subprotocol_set && opt.mode == MODE_MQTTWS)
        opt.subprotocol = "mqtt";
    if (opt.prime_interval <= 0) /* long enough for a first probe to reach someone */
        opt.prime_interval = 0.05 + opt.subs * 25e-6;
    return 0;
}

/* Enough descriptors for every subscriber: soft limit up to the hard one, and the hard
 * one too where we may (root). */
static void raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    if (rl.rlim_max < want) {
        struct rlimit up = {.rlim_cur = want, .rlim_max = want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        fprintf(stderr, "fanout: only %llu descriptors allowed for %llu wanted\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    rng_state = now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
    raise_nofile((rlim_t)opt.subs + 64);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(opt.host, opt.port, &hints, &sub_target);
    if (rc != 0) {
        fprintf(stderr, "fanout: %s:%s: %s\n", opt.host, opt.port, gai_strerror(rc));
        return 1;
    }
    uint64_t ring = 1;
    while (ring < 2 * (uint64_t)opt.window)
        ring <<= 1;
    ring_mask = ring - 1;
    seen_past = calloc(ring, sizeof(*seen_past));
    rxbuf = malloc(RX_BUF_BYTES);
    subs = calloc(opt.subs, sizeof(*subs));
    pub_tx_cap = 65536 + (size_t)opt.window * 320;
    pub_tx = malloc(pub_tx_cap);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!seen_past || !rxbuf || !subs || !pub_tx || ep < 0) {
        fprintf(stderr, "fanout: out of memory or epoll: %s\n", strerror(errno));
        return 1;
    }
    for (unsigned i = 0; i < opt.subs; i++) {
        subs[i].fd = -1;
        subs[i].id = i;
        subs[i].hdr_need = 2;
    }
    if (pub_connect() != 0)
        return 1;

    uint64_t t_setup = now_ns(), t_prime = 0, t_measure = 0, t_end = 0, t_drained = 0;
    uint64_t deadline = t_setup + (uint64_t)(opt.connect_timeout * 1e9);
    double cpu0[MAX_CPU_PIDS] = {0}, cpu1[MAX_CPU_PIDS] = {0}, self0 = 0, self1 = 0;
    uint64_t published_measured = 0, stalls_measured = 0, gaps0 = 0;
    unsigned ready_at_end = 0;
    struct epoll_event evs[MAX_EVENTS];
    start_more_subs();

    for (;;) {
        uint64_t now = now_ns();
        if (phase == PH_SETUP && ((next_idle == opt.subs && connecting == 0) || now >= deadline)) {
            for (unsigned i = 0; i < opt.subs; i++) {
                struct sub *c = &subs[i];
                if (c->state == SS_IDLE) {
                    c->state = SS_CONNECTING;
                    connecting++;
                }
                if (c->state != SS_READY && c->state != SS_DEAD)
                    sub_fail(c, ERR_TIMEOUT, "not subscribed when the setup time ran out");
            }
            fprintf(stderr, "fanout: %u of %u subscribers ready after %.2f s\n", ready_count,
                    opt.subs, (double)(now - t_setup) / 1e9);
            phase = PH_PRIME;
            t_prime = now;
            deadline = now + (uint64_t)(opt.connect_timeout * 1e9);
            last_probe_ns = 0;
        }
        if (phase == PH_PRIME && ready_count > 0 && primed_count == ready_count) {
            fprintf(stderr, "fanout: all %u receive after %.2f s (%llu probes)\n", ready_count,
                    (double)(now - t_prime) / 1e9, (unsigned long long)(pub_next - 1));
            phase = PH_WARMUP;
            flow_start = pub_next;
            flow_t0 = now;
            last_progress_ns = now;
            ready_at_start = ready_count;
            deadline = now + (uint64_t)(opt.warmup * 1e9);
        } else if (phase == PH_PRIME && (now >= deadline || ready_count == 0)) {
            for (unsigned i = 0; i < opt.subs; i++)
                if (subs[i].state == SS_READY && !subs[i].primed)
                    sub_fail(&subs[i], ERR_PRIME, "no message reached it in time");
            if (ready_count == 0) {
                fprintf(stderr, "fanout: no subscriber receives anything\n");
                t_measure = t_end = now;
                break;
            }
            continue; /* all the rest are primed now */
        }
        if (phase == PH_WARMUP && now >= deadline) {
            for (unsigned i = 0; i < opt.ncpu; i++)
                cpu0[i] = proc_cpu_s(opt.cpu_pid[i]);
            self0 = self_cpu_s();
            phase = PH_MEASURE;
            m0 = pub_next;
            gaps0 = st.gaps;
            stalls_measured = stalls;
            t_measure = now_ns();
            deadline = t_measure + (uint64_t)(opt.duration * 1e9);
            continue;
        }
        if (phase == PH_MEASURE && (now >= deadline || ready_count == 0)) {
            t_end = now;
            self1 = self_cpu_s();
            for (unsigned i = 0; i < opt.ncpu; i++)
                cpu1[i] = proc_cpu_s(opt.cpu_pid[i]);
            m1 = pub_next;
            published_measured = m1 - m0;
            stalls_measured = stalls - stalls_measured;
            ready_at_end = ready_count;
            phase = PH_DRAIN;
            deadline = now + (uint64_t)(opt.drain * 1e9);
        }
        if (phase == PH_DRAIN) {
            if (m1 == m0 || ready_count == 0 || seen_past[(m1 - 1) & ring_mask] >= ready_count ||
                now >= deadline) {
                t_drained = now;
                break;
            }
        }
        pub_pump(now);
        uint64_t wait_ns = deadline > now ? deadline - now : 0;
        int timeout_ms = (int)(wait_ns / 1000000u) + 1;
        if (timeout_ms > 100)
            timeout_ms = 100;
        if (phase == PH_PRIME && timeout_ms > (int)(opt.prime_interval * 1000) + 1)
            timeout_ms = (int)(opt.prime_interval * 1000) + 1;
        if ((phase == PH_WARMUP || phase == PH_MEASURE) && opt.rate > 0)
            timeout_ms = timeout_ms > 1 ? 1 : timeout_ms;
        int n = epoll_wait(ep, evs, MAX_EVENTS, timeout_ms);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "fanout: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        now = now_ns();
        uint64_t before = delivery_count;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                pub_event(evs[i].events);
            else
                sub_event(evs[i].data.ptr, evs[i].events, now);
        }
        if (delivery_count != before)
            last_progress_ns = now;
        if (phase == PH_SETUP)
            start_more_subs();
    }

    double secs = (double)(t_end - t_measure) / 1e9;
    uint64_t errors = 0;
    for (int k = 0; k < ERR_KINDS; k++)
        errors += st.errors[k];
    uint64_t expected = published_measured * ready_at_end;
    uint64_t lost = expected > st.delivered_measured ? expected - st.delivered_measured : 0;
    uint64_t gmin = UINT64_MAX, gmax = 0;
    for (unsigned i = 0; i < opt.subs; i++) {
        if (subs[i].state != SS_READY)
            continue;
        if (subs[i].got < gmin)
            gmin = subs[i].got;
        if (subs[i].got > gmax)
            gmax = subs[i].got;
    }
    if (gmin == UINT64_MAX)
        gmin = 0;
    printf("{\"mode\":\"%s\",\"subs\":%u,\"window\":%u,\"rate\":%.0f,"
           "\"deliveries_per_s\":%.1f,\"published_per_s\":%.1f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"published\":%llu,\"expected\":%llu,\"delivered\":%llu,\"lost\":%llu,"
           "\"loss_ratio\":%.6f,\"gaps\":%llu,\"stalls\":%llu,\"errors\":%llu,",
           opt.mode == MODE_WS ? "ws" : "mqttws", opt.subs, opt.window, opt.rate,
           secs > 0 ? (double)st.deliveries / secs : 0.0,
           secs > 0 ? (double)published_measured / secs : 0.0, hist_percentile_us(0.50),
           hist_percentile_us(0.99), hist_percentile_us(0.999),
           (unsigned long long)published_measured, (unsigned long long)expected,
           (unsigned long long)st.delivered_measured, (unsigned long long)lost,
           expected ? (double)lost / (double)expected : 0.0, (unsigned long long)(st.gaps - gaps0),
           (unsigned long long)stalls_measured, (unsigned long long)errors);
    printf("\"error_kinds\":{");
    for (int k = 0; k < ERR_KINDS; k++)
        printf("%s\"%s\":%llu", k ? "," : "", err_names[k], (unsigned long long)st.errors[k]);
    printf("},\"subs_ok\":%u,\"subs_at_end\":%u,\"per_sub_min\":%llu,\"per_sub_max\":%llu,"
           "\"seconds\":%.3f,\"deliveries\":%llu,\"drain_s\":%.3f,\"setup_s\":%.3f,"
           "\"client_cpu_s\":%.3f,\"cpu_s\":{",
           ready_at_start, ready_at_end, (unsigned long long)gmin, (unsigned long long)gmax, secs,
           (unsigned long long)st.deliveries,
           t_drained > t_end ? (double)(t_drained - t_end) / 1e9 : 0.0,
           t_prime > t_setup ? (double)(t_prime - t_setup) / 1e9 : 0.0, self1 - self0);
    for (unsigned i = 0; i < opt.ncpu; i++) {
        double d = cpu0[i] < 0 || cpu1[i] < 0 ? -1.0 : cpu1[i] - cpu0[i];
        printf("%s\"%s\":%.3f", i ? "," : "", opt.cpu_label[i], d);
    }
    printf("}}\n");
    fflush(stdout);

    for (unsigned i = 0; i < opt.subs; i++) {
        if (subs[i].fd >= 0)
            close(subs[i].fd);
        free(subs[i].hs);
    }
    for (unsigned i = 0; i < opt.ncpu; i++)
        free((void *)opt.cpu_label[i]);
    close(pub_fd);
    free(subs);
    free(rxbuf);
    free(pub_tx);
    free(seen_past);
    freeaddrinfo(sub_target);
    close(ep);
    return 0;
}

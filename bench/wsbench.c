/* wsbench.c - the benchmark's load generator: raw TCP echo or WebSocket echo.
 *
 * One thread, one epoll loop, non-blocking sockets, any number of connections.
 * Each connection keeps --inflight messages of --size bytes outstanding and times
 * each one from the moment it is handed to the socket to the arrival of the last
 * byte of its echo. In ws mode it speaks just enough RFC 6455 to be a client: the
 * upgrade handshake, masked binary frames out, unmasked frames back. A relay may
 * re-frame the echo into other message sizes, so it counts payload bytes, never
 * frames. It prints one JSON line on stdout and its complaints on stderr; it does
 * not use libwebsockets, and it checks nothing of the server but the echoed bytes.
 *
 *   wsbench --mode tcp|ws --port N [--host H] [--path P] [--subprotocol NAME]
 *           [--conns N] [--size BYTES] [--inflight K] [--duration S] [--warmup S]
 *           [--connect-timeout S] [--cpu-pid LABEL=PID]... [--messages N]
 *           [--payload pattern|json] [--deflate]
 *   wsbench --idle S --mode tcp|ws --port N [--conns N] [--mem-pid LABEL=PID]...
 *
 * --idle S opens the connections (handshakes included) without sending anything, holds
 * them S seconds, and reports the connect rate and the resident memory each --mem-pid
 * process tree grew by meanwhile (read before the first connect and at the end of the
 * hold). --messages N sends exactly N messages in all (warm-up included) and stops once
 * every one has been echoed: a fixed amount of work, for profilers. --cpu-pid reports,
 * per label, the CPU seconds ("cpu_s") and page faults ("faults") that process tree
 * took over the measured window.
 *
 * --payload json sends small JSON objects (a telemetry stream: varying readings, exactly
 * --size bytes each, padded with JSON whitespace) as text messages instead of the byte
 * pattern (json-binary: as binary ones, for websockify, which refuses text), and checks
 * every echoed byte. --deflate (ws) offers permessage-deflate the way
 * browsers do ("permessage-deflate; client_max_window_bits"), requires the server to
 * accept it, compresses every message it sends (zlib raw deflate, context kept unless the
 * server asks for client_no_context_takeover) and inflates what comes back. The JSON line
 * then also gives the bytes read and written on the sockets over the measured window
 * ("wire_rx_bytes", "wire_tx_bytes") beside the payload bytes ("bytes", "payload_tx_bytes").
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define PATTERN_PERIOD 251        /* prime, so it never lines up with power-of-two sizes */
#define RX_BUF_BYTES (256 * 1024) /* one read's worth, shared by all connections */
#define HS_BUF_BYTES 2048         /* handshake request, then the response head */
#define MAX_IOV 64                /* frames handed to one writev */
#define MAX_CONNECTING 256        /* connects + handshakes in progress at once */
#define MAX_EVENTS 512
#define MAX_CPU_PIDS 4
#define MAX_SIZE (64u * 1024 * 1024)
#define JSON_MSGS 1024    /* distinct JSON messages; 1024 x ~200 B is well past deflate's window */
#define JSON_MIN_SIZE 160 /* the longest object json_build writes, before padding */
#define INFLATE_BUF_BYTES (64 * 1024)

/* Latency histogram, HDR-style: exact below 256 ns, then 128 linear sub-buckets per
 * power of two (< 0.8 % error), up to 2^40 ns. Bounded memory whatever the run length. */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 33
#define HIST_BUCKETS ((HIST_MAX_SHIFT + 2) * HIST_SUB)

enum bench_mode { MODE_TCP, MODE_WS };
enum phase { PHASE_SETUP, PHASE_WARMUP, PHASE_MEASURE, PHASE_HOLD };
enum conn_state { CS_IDLE, CS_CONNECTING, CS_HS_SEND, CS_HS_RECV, CS_READY, CS_DEAD };
enum err_kind { ERR_CONNECT, ERR_HANDSHAKE, ERR_CLOSED, ERR_VERIFY, ERR_TIMEOUT, ERR_KINDS };
static const char *const err_names[ERR_KINDS] = {"connect", "handshake", "closed", "verify",
                                                 "setup_timeout"};

struct options {
    enum bench_mode mode;
    const char *host, *port, *path, *subprotocol;
    unsigned conns, inflight;
    size_t size;
    double duration, warmup, connect_timeout;
    unsigned ncpu;
    const char *cpu_label[MAX_CPU_PIDS];
    int cpu_pid[MAX_CPU_PIDS];
    double idle;       /* > 0: idle mode, hold the connections this long */
    uint64_t messages; /* > 0: send exactly this many messages in all, then stop */
    unsigned nmem;
    const char *mem_label[MAX_CPU_PIDS];
    int mem_pid[MAX_CPU_PIDS];
    bool json;    /* --payload json or json-binary */
    bool text;    /* --payload json: text frames */
    bool deflate; /* --deflate */
};

/* One per connection, all allocated at start; freed at exit. */
struct conn {
    int fd;
    unsigned id;
    enum conn_state state;
    uint32_t events;            /* what epoll watches now */
    unsigned off;               /* this connection's offset into the pattern */
    const unsigned char *frame; /* one message ready to send: tcp points into the shared
                                 * pattern; ws is malloc'd (header + masked payload) */
    size_t frame_len;
    uint64_t tx_queued; /* bytes of whole queued frames not yet written */
    size_t tx_pos;      /* offset in frame of the next byte to write */
    uint64_t sent;      /* messages queued */
    uint64_t done;      /* messages whose echo has fully arrived */
    uint64_t rx;        /* payload bytes received */
    uint64_t *sent_ns;  /* ring of --inflight send times; malloc'd */
    /* ws receive parser: a frame header may arrive split across reads */
    unsigned char hdr[14];
    unsigned hdr_have, hdr_need;
    uint64_t frame_left; /* payload bytes left in the current frame */
    bool frame_is_data;
    char *hs; /* handshake buffer, malloc'd only while handshaking */
    size_t hs_len, hs_sent;
    /* --payload json / --deflate: every message is framed anew into txbuf (malloc'd) */
    unsigned char *txbuf;
    size_t tx_cap, tx_len, tx_off;
    unsigned char mask[4];
    z_stream *zd, *zi;   /* deflater / inflater, malloc'd once permessage-deflate is agreed */
    bool deflate_reset;  /* server asked for client_no_context_takeover */
    bool msg_compressed; /* the message being received has RSV1 set */
    bool frame_fin;
};

struct stats {
    uint64_t msgs;  /* messages completed in the measured window */
    uint64_t bytes; /* payload bytes echoed back in the measured window */
    uint64_t errors[ERR_KINDS];
    uint64_t hist[HIST_BUCKETS];
    uint64_t hist_count;
    uint64_t wire_tx, wire_rx; /* bytes written to / read from the sockets */
    uint64_t payload_tx;       /* payload bytes of the messages queued */
};

static struct options opt;
static struct conn *conns;
static struct stats st;
static enum phase phase = PHASE_SETUP;
static int ep = -1;
static unsigned char *pattern; /* PATTERN_PERIOD + size bytes of the repeating pattern */
static unsigned char *rxbuf;
static struct addrinfo *target;
static unsigned connecting;     /* connections in CS_CONNECTING .. CS_HS_RECV */
static unsigned next_idle;      /* next connection to start */
static unsigned ready_count;    /* connections in CS_READY now */
static unsigned ready_at_start; /* ... when traffic began */
static unsigned errors_printed;
static bool src_spread;                 /* bind each socket to 127.0.0.2-251 first */
static uint64_t t_last_ready;           /* ns: when the last connection became ready */
static uint64_t total_sent, total_done; /* messages over all phases (--messages) */
static uint64_t rng_state;
static unsigned char *json_msgs; /* JSON_MSGS messages of opt.size bytes each */
static unsigned char *zbuf;      /* one message, deflated, before framing */
static size_t zbuf_cap;
static unsigned char *infbuf; /* INFLATE_BUF_BYTES of inflated payload */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(void)
{
    /* xorshift64*: masks and keys need to vary, not to be secret */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* --- histogram ---------------------------------------------------------------- */

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

/* The middle of a bucket's range. */
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

/* --- connections ------------------------------------------------------------- */

static void conn_fail(struct conn *c, enum err_kind kind, const char *what)
{
    if (c->state == CS_DEAD)
        return;
    st.errors[kind]++;
    if (errors_printed < 5) {
        fprintf(stderr, "wsbench: conn %u: %s: %s\n", c->id, err_names[kind], what);
        errors_printed++;
    }
    if (c->state >= CS_CONNECTING && c->state <= CS_HS_RECV)
        connecting--;
    if (c->state == CS_READY)
        ready_count--;
    close(c->fd); /* also leaves epoll */
    c->fd = -1;
    c->state = CS_DEAD;
    free(c->hs);
    c->hs = NULL;
}

static int conn_watch(struct conn *c, uint32_t events)
{
    if (c->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        return -1;
    c->events = events;
    return 0;
}

static void conn_start(struct conn *c)
{
    int one = 1;
    c->fd = socket(target->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = CS_CONNECTING; /* so conn_fail's bookkeeping balances */
        connecting++;
        conn_fail(c, ERR_CONNECT, strerror(errno));
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src_spread) {
        /* Idle mode to IPv4 loopback: spread the sources over 127.0.0.2-251. With tens of
         * thousands of sockets from 127.0.0.1 (and TIME_WAIT ones from earlier runs) the
         * kernel's search for a free ephemeral port slows connect() ~30 times, and that
         * would be measured as the server's connect rate. */
        struct sockaddr_in src = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(0x7f000002u + c->id % 250)};
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            c->state = CS_CONNECTING;
            connecting++;
            conn_fail(c, ERR_CONNECT, strerror(errno));
            return;
        }
    }
    c->state = CS_CONNECTING;
    connecting++;
    if (connect(c->fd, target->ai_addr, target->ai_addrlen) != 0 && errno != EINPROGRESS) {
        conn_fail(c, ERR_CONNECT, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        conn_fail(c, ERR_CONNECT, strerror(errno));
        return;
    }
    c->events = EPOLLOUT;
}

static void start_more_connections(void)
{
    while (next_idle < opt.conns && connecting < MAX_CONNECTING)
        conn_start(&conns[next_idle++]);
}

static void conn_became_ready(struct conn *c)
{
    connecting--;
    c->state = CS_READY;
    ready_count++;
    t_last_ready = now_ns();
    free(c->hs);
    c->hs = NULL;
    if (conn_watch(c, EPOLLIN) != 0)
        conn_fail(c, ERR_CONNECT, strerror(errno));
}

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

/* The Sec-WebSocket-Accept value is not checked: that needs SHA-1, and a server that
 * got the key wrong would still have to echo the right bytes to pass. */
static void handshake_build(struct conn *c)
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
        conn_fail(c, ERR_HANDSHAKE, "out of memory");
        return;
    }
    int n = snprintf(c->hs, HS_BUF_BYTES,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s%s\r\n",
                     opt.path, opt.host, opt.port, key64,
                     opt.subprotocol ? "Sec-WebSocket-Protocol: " : "",
                     opt.subprotocol ? opt.subprotocol : "", opt.subprotocol ? "\r\n" : "",
                     opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                   "client_max_window_bits\r\n"
                                 : "");
    if (n < 0 || n >= HS_BUF_BYTES) {
        conn_fail(c, ERR_HANDSHAKE, "request too long");
        return;
    }
    c->hs_len = (size_t)n;
    c->hs_sent = 0;
    c->state = CS_HS_SEND;
}

static void ws_parse(struct conn *c, const unsigned char *p, size_t n, uint64_t now);

/* The server's answer to the offer: its parameters bind what this client sends. */
static int deflate_setup(struct conn *c, const char *ext)
{
    int bits = 15;
    const char *b = strstr(ext, "client_max_window_bits=");
    if (b)
        bits = atoi(b + strlen("client_max_window_bits="));
    if (bits < 8 || bits > 15) {
        conn_fail(c, ERR_HANDSHAKE, "bad client_max_window_bits in the server's answer");
        return -1;
    }
    if (bits == 8)
        bits = 9; /* zlib's raw deflate has no 256-byte window; 9 is what it makes of 8 */
    c->deflate_reset = strstr(ext, "client_no_context_takeover") != NULL;
    c->zd = calloc(1, sizeof(*c->zd));
    c->zi = calloc(1, sizeof(*c->zi));
    /* what browsers use: the default level and memLevel */
    if (!c->zd || !c->zi ||
        deflateInit2(c->zd, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) !=
            Z_OK) {
        free(c->zd);
        c->zd = NULL;
        conn_fail(c, ERR_HANDSHAKE, "deflateInit2 failed");
        return -1;
    }
    if (inflateInit2(c->zi, -15) != Z_OK) { /* 15 takes any server_max_window_bits */
        free(c->zi);
        c->zi = NULL;
        conn_fail(c, ERR_HANDSHAKE, "inflateInit2 failed");
        return -1;
    }
    return 0;
}

static void handshake_send(struct conn *c)
{
    ssize_t w = write(c->fd, c->hs + c->hs_sent, c->hs_len - c->hs_sent);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_fail(c, ERR_HANDSHAKE, strerror(errno));
        return;
    }
    c->hs_sent += (size_t)w;
    if (c->hs_sent < c->hs_len)
        return;
    c->hs_len = 0;
    c->state = CS_HS_RECV;
    if (conn_watch(c, EPOLLIN) != 0)
        conn_fail(c, ERR_HANDSHAKE, strerror(errno));
}

/* Finds NAME: in a response head and returns its value (trimmed copy in out) or NULL. */
static const char *header_value(const char *head, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t len = strcspn(v, "\r\n");
            while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
                len--;
            if (len >= outsz)
                len = outsz - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
    }
    return NULL;
}

static unsigned char expected_at(const struct conn *c, uint64_t stream_pos);

/* Idle mode, tcp: the connection is ready once its one-byte probe has come back, proof
 * that the server accepted it (a WebSocket handshake is that proof in ws mode). Without
 * it a plain connect completes in the kernel before the server has accepted anything. */
static void probe_recv(struct conn *c)
{
    unsigned char b;
    ssize_t r = read(c->fd, &b, 1);
    if (r == 0)
        conn_fail(c, ERR_HANDSHAKE, "connection closed before the probe byte came back");
    else if (r < 0 && errno != EAGAIN && errno != EINTR)
        conn_fail(c, ERR_HANDSHAKE, strerror(errno));
    else if (r == 1 && b != expected_at(c, 0))
        conn_fail(c, ERR_VERIFY, "probe byte differs from the one sent");
    else if (r == 1)
        conn_became_ready(c);
}

static void handshake_recv(struct conn *c, uint64_t now)
{
    if (opt.mode == MODE_TCP) {
        probe_recv(c);
        return;
    }
    ssize_t r = read(c->fd, c->hs + c->hs_len, HS_BUF_BYTES - 1 - c->hs_len);
    if (r == 0) {
        conn_fail(c, ERR_HANDSHAKE, "connection closed during the handshake");
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_fail(c, ERR_HANDSHAKE, strerror(errno));
        return;
    }
    c->hs_len += (size_t)r;
    c->hs[c->hs_len] = '\0';
    char *end = strstr(c->hs, "\r\n\r\n");
    if (!end) {
        if (c->hs_len >= HS_BUF_BYTES - 1)
            conn_fail(c, ERR_HANDSHAKE, "response head too long");
        return;
    }
    end += 4;
    size_t head_len = (size_t)(end - c->hs);
    char val[128];
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
        char line[128];
        snprintf(line, sizeof(line), "%.*s", (int)strcspn(c->hs, "\r\n"), c->hs);
        conn_fail(c, ERR_HANDSHAKE, line);
        return;
    }
    if (opt.subprotocol) {
        const char *got = header_value(c->hs, "Sec-WebSocket-Protocol", val, sizeof(val));
        if (!got || strcmp(got, opt.subprotocol) != 0) {
            conn_fail(c, ERR_HANDSHAKE, "server did not select the subprotocol");
            return;
        }
    }
    if (opt.deflate) {
        const char *got = header_value(c->hs, "Sec-WebSocket-Extensions", val, sizeof(val));
        if (!got || strncmp(got, "permessage-deflate", 18) != 0) {
            conn_fail(c, ERR_HANDSHAKE, "server did not accept permessage-deflate");
            return;
        }
        if (deflate_setup(c, got) != 0)
            return;
    }
    /* Anything after the head is already WebSocket data. */
    size_t extra = c->hs_len - head_len;
    unsigned char early[HS_BUF_BYTES];
    memcpy(early, end, extra);
    conn_became_ready(c);
    if (extra > 0 && c->state == CS_READY)
        ws_parse(c, early, extra, now);
}

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        conn_fail(c, ERR_CONNECT, strerror(err));
        return;
    }
    if (opt.mode == MODE_TCP && opt.idle > 0) {
        unsigned char b = expected_at(c, 0);
        if (write(c->fd, &b, 1) != 1) {
            conn_fail(c, ERR_HANDSHAKE, "probe byte not written");
            return;
        }
        c->state = CS_HS_RECV;
        if (conn_watch(c, EPOLLIN) != 0)
            conn_fail(c, ERR_HANDSHAKE, strerror(errno));
        return;
    }
    if (opt.mode == MODE_TCP) {
        conn_became_ready(c);
        return;
    }
    handshake_build(c);
    if (c->state == CS_HS_SEND)
        handshake_send(c);
}

/* --- traffic -------------------------------------------------------------------- */

/* --payload json / --deflate: writes what txbuf holds. */
static void conn_write_buf(struct conn *c)
{
    if (c->tx_off < c->tx_len) {
        ssize_t w = write(c->fd, c->txbuf + c->tx_off, c->tx_len - c->tx_off);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                conn_fail(c, ERR_CLOSED, strerror(errno));
                return;
            }
        } else {
            c->tx_off += (size_t)w;
            if (phase == PHASE_MEASURE)
                st.wire_tx += (uint64_t)w;
        }
    }
    if (c->tx_off == c->tx_len)
        c->tx_off = c->tx_len = 0;
    if (conn_watch(c, c->tx_len > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN) != 0)
        conn_fail(c, ERR_CLOSED, strerror(errno));
}

static const unsigned char *message_at(const struct conn *c, uint64_t k)
{
    if (opt.json)
        return json_msgs + (size_t)((c->off + k) % JSON_MSGS) * opt.size;
    return pattern + c->off;
}

/* Appends message k of this connection to txbuf as one masked frame, deflated with
 * RSV1 set when permessage-deflate is on. */
static int conn_queue_msg(struct conn *c, uint64_t k)
{
    const unsigned char *msg = message_at(c, k);
    const unsigned char *body = msg;
    size_t len = opt.size;
    bool ws = opt.mode == MODE_WS;
    if (c->zd) {
        c->zd->next_in = (unsigned char *)msg;
        c->zd->avail_in = (uInt)opt.size;
        c->zd->next_out = zbuf;
        c->zd->avail_out = (uInt)zbuf_cap;
        if (deflate(c->zd, Z_SYNC_FLUSH) != Z_OK || c->zd->avail_in != 0 || c->zd->avail_out == 0)
            return -1;
        len = zbuf_cap - c->zd->avail_out;
        /* RFC 7692 7.2.1: the sync flush's empty stored block (00 00 ff ff) is dropped */
        if (len >= 4 && memcmp(zbuf + len - 4, "\x00\x00\xff\xff", 4) == 0)
            len -= 4;
        body = zbuf;
        if (c->deflate_reset && deflateReset(c->zd) != Z_OK)
            return -1;
    }
    size_t need = c->tx_len + (ws ? 14 : 0) + len;
    if (need > c->tx_cap) {
        size_t cap = c->tx_cap ? c->tx_cap * 2 : 4096;
        while (cap < need)
            cap *= 2;
        unsigned char *nb = realloc(c->txbuf, cap);
        if (!nb)
            return -1;
        c->txbuf = nb;
        c->tx_cap = cap;
    }
    unsigned char *f = c->txbuf + c->tx_len;
    if (!ws) { /* tcp: the bare payload */
        memcpy(f, body, len);
        c->tx_len += len;
        return 0;
    }
    size_t h = 0;
    f[h++] = (unsigned char)(0x80 | (c->zd ? 0x40 : 0) | (opt.text ? 0x1 : 0x2));
    if (len < 126) {
        f[h++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        f[h++] = 0x80 | 126;
        f[h++] = (unsigned char)(len >> 8);
        f[h++] = (unsigned char)len;
    } else {
        f[h++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            f[h++] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    memcpy(f + h, c->mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++)
        f[h + i] = body[i] ^ c->mask[i & 3];
    c->tx_len += h + len;
    return 0;
}

static void conn_write(struct conn *c)
{
    if (opt.json || opt.deflate) {
        conn_write_buf(c);
        return;
    }
    struct iovec iov[MAX_IOV];
    int cnt = 0;
    uint64_t left = c->tx_queued;
    size_t pos = c->tx_pos;
    while (left > 0 && cnt < MAX_IOV) {
        size_t take = c->frame_len - pos;
        if (take > left)
            take = (size_t)left;
        iov[cnt].iov_base = (void *)(c->frame + pos);
        iov[cnt].iov_len = take;
        cnt++;
        left -= take;
        pos = 0;
    }
    if (cnt > 0) {
        ssize_t w = writev(c->fd, iov, cnt);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                conn_fail(c, ERR_CLOSED, strerror(errno));
                return;
            }
        } else {
            if (phase == PHASE_MEASURE)
                st.wire_tx += (uint64_t)w;
            c->tx_queued -= (uint64_t)w;
            c->tx_pos = (size_t)((c->tx_pos + (uint64_t)w) % c->frame_len);
        }
    }
    if (conn_watch(c, c->tx_queued > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN) != 0)
        conn_fail(c, ERR_CLOSED, strerror(errno));
}

/* Tops the connection up to --inflight outstanding messages and writes them. */
static void conn_refill(struct conn *c, uint64_t now)
{
    bool queued = false;
    while (c->sent - c->done < opt.inflight && (!opt.messages || total_sent < opt.messages)) {
        if ((opt.json || opt.deflate) && conn_queue_msg(c, c->sent) != 0) {
            conn_fail(c, ERR_VERIFY, "could not frame a message (deflate or memory)");
            return;
        }
        if (phase == PHASE_MEASURE)
            st.payload_tx += opt.size;
        c->sent_ns[c->sent % opt.inflight] = now;
        c->sent++;
        total_sent++;
        c->tx_queued += c->frame_len;
        queued = true;
    }
    if (queued)
        conn_write(c);
}

static unsigned char expected_at(const struct conn *c, uint64_t stream_pos)
{ /* the pattern byte at stream_pos of this connection's echo */
    return (unsigned char)(((stream_pos % opt.size) + c->off) % PATTERN_PERIOD);
}

/* --payload json: every byte, against the messages sent in order. */
static bool json_echo_ok(const struct conn *c, const unsigned char *p, size_t n, uint64_t s)
{
    for (size_t i = 0; i < n;) {
        uint64_t k = (s + i) / opt.size;
        size_t at = (size_t)((s + i) % opt.size), take = opt.size - at;
        if (take > n - i)
            take = n - i;
        if (memcmp(p + i, message_at(c, k) + at, take) != 0)
            return false;
        i += take;
    }
    return true;
}

/* The pattern: the chunk's ends, and both sides of every message boundary inside it. */
static bool pattern_echo_ok(const struct conn *c, const unsigned char *p, size_t n, uint64_t s)
{
    bool ok = p[0] == expected_at(c, s) && p[n - 1] == expected_at(c, s + n - 1);
    unsigned char first = (unsigned char)(c->off % PATTERN_PERIOD);
    unsigned char last = (unsigned char)((opt.size - 1 + c->off) % PATTERN_PERIOD);
    size_t in_msg = (size_t)(s % opt.size);
    for (size_t b = in_msg ? opt.size - in_msg : opt.size; ok && b < n; b += opt.size)
        ok = p[b] == first && p[b - 1] == last;
    return ok;
}

/* Counts n echoed payload bytes, checks them, completes messages. */
static void on_payload(struct conn *c, const unsigned char *p, size_t n, uint64_t now)
{
    if (n == 0)
        return;
    uint64_t s = c->rx;
    if (s + n > c->sent * opt.size) {
        conn_fail(c, ERR_VERIFY, "more bytes echoed than were sent");
        return;
    }
    if (!(opt.json ? json_echo_ok(c, p, n, s) : pattern_echo_ok(c, p, n, s))) {
        conn_fail(c, ERR_VERIFY, "echoed bytes differ from those sent");
        return;
    }
    c->rx += n;
    if (phase == PHASE_MEASURE)
        st.bytes += n;
    while (c->done < c->sent && c->rx >= (c->done + 1) * opt.size) {
        if (phase == PHASE_MEASURE) {
            st.hist[hist_index(now - c->sent_ns[c->done % opt.inflight])]++;
            st.hist_count++;
            st.msgs++;
        }
        c->done++;
        total_done++;
    }
}

/* Inflates part of a compressed message and hands what comes out to on_payload. */
static void inflate_feed(struct conn *c, const unsigned char *p, size_t n, uint64_t now)
{
    c->zi->next_in = (unsigned char *)p;
    c->zi->avail_in = (uInt)n;
    while (c->state == CS_READY) {
        c->zi->next_out = infbuf;
        c->zi->avail_out = INFLATE_BUF_BYTES;
        int rc = inflate(c->zi, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            conn_fail(c, ERR_VERIFY, "server sent corrupt deflate data");
            return;
        }
        size_t got = INFLATE_BUF_BYTES - c->zi->avail_out;
        on_payload(c, infbuf, got, now);
        if (c->zi->avail_in == 0 && c->zi->avail_out > 0)
            return;
        if (got == 0 && rc == Z_BUF_ERROR)
            return;
    }
}

static void ws_parse(struct conn *c, const unsigned char *p, size_t n, uint64_t now)
{
    while (n > 0 && c->state == CS_READY) {
        if (c->frame_left == 0 && c->hdr_need > 0) {
            while (n > 0 && c->hdr_have < c->hdr_need) {
                c->hdr[c->hdr_have++] = *p++;
                n--;
                if (c->hdr_have == 2) {
                    unsigned len7 = c->hdr[1] & 0x7f;
                    if (c->hdr[1] & 0x80) {
                        conn_fail(c, ERR_VERIFY, "server sent a masked frame");
                        return;
                    }
                    c->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
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
                conn_fail(c, ERR_CLOSED, "server sent a close frame");
                return;
            }
            c->frame_is_data = op <= 0x2;
            if (op == 0x1 || op == 0x2)
                c->msg_compressed = (c->hdr[0] & 0x40) != 0;
            if (c->frame_is_data && c->msg_compressed && !c->zi) {
                conn_fail(c, ERR_VERIFY, "RSV1 set without permessage-deflate");
                return;
            }
            c->frame_fin = (c->hdr[0] & 0x80) != 0;
            c->frame_left = len;
            c->hdr_have = 0;
            c->hdr_need = len > 0 ? 0 : 2; /* 0: inside a payload */
            if (len == 0 && c->frame_is_data && c->frame_fin && c->msg_compressed)
                inflate_feed(c, (const unsigned char *)"\x00\x00\xff\xff", 4, now);
            continue;
        }
        size_t take = c->frame_left < n ? (size_t)c->frame_left : n;
        if (c->frame_is_data && c->msg_compressed)
            inflate_feed(c, p, take, now);
        else if (c->frame_is_data)
            on_payload(c, p, take, now);
        c->frame_left -= take;
        p += take;
        n -= take;
        if (c->frame_left == 0) {
            c->hdr_need = 2;
            if (c->frame_is_data && c->frame_fin && c->msg_compressed)
                inflate_feed(c, (const unsigned char *)"\x00\x00\xff\xff", 4, now);
        }
    }
}

static void conn_read(struct conn *c, uint64_t now)
{
    for (;;) {
        ssize_t r = read(c->fd, rxbuf, RX_BUF_BYTES);
        if (r == 0) {
            conn_fail(c, ERR_CLOSED, "server closed the connection");
            return;
        }
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_fail(c, ERR_CLOSED, strerror(errno));
            return;
        }
        if (phase == PHASE_MEASURE)
            st.wire_rx += (uint64_t)r;
        if (opt.mode == MODE_WS)
            ws_parse(c, rxbuf, (size_t)r, now);
        else
            on_payload(c, rxbuf, (size_t)r, now);
        if (c->state != CS_READY || (size_t)r < RX_BUF_BYTES)
            return;
    }
}

static void on_event(struct conn *c, uint32_t events)
{
    uint64_t now = now_ns();
    switch (c->state) {
    case CS_CONNECTING:
        on_connected(c);
        break;
    case CS_HS_SEND:
        handshake_send(c);
        break;
    case CS_HS_RECV:
        handshake_recv(c, now);
        break;
    case CS_READY:
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            conn_read(c, now);
        if (c->state != CS_READY || phase == PHASE_SETUP || phase == PHASE_HOLD)
            break;
        if (c->tx_queued > 0 && (events & EPOLLOUT))
            conn_write(c);
        if (c->state == CS_READY)
            conn_refill(c, now);
        break;
    default:
        break;
    }
}

/* --- setup ---------------------------------------------------------------------- */

static int conn_init(struct conn *c, unsigned id)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->id = id;
    c->off = (unsigned)(rng_next() % PATTERN_PERIOD);
    c->hdr_need = 2;
    c->sent_ns = calloc(opt.inflight, sizeof(uint64_t));
    if (!c->sent_ns)
        return -1;
    if (opt.json || opt.deflate) {
        uint32_t m = (uint32_t)rng_next(); /* one mask per connection, as below */
        memcpy(c->mask, &m, 4);
        return 0;
    }
    if (opt.mode == MODE_TCP) {
        c->frame = pattern + c->off;
        c->frame_len = opt.size;
        return 0;
    }
    /* One client frame reused for every message: the mask is fixed per connection so
     * the client pays for masking once; the server still unmasks every byte. */
    size_t hlen = 2 + (opt.size < 126 ? 0 : opt.size <= 0xffff ? 2 : 8) + 4;
    unsigned char *f = malloc(hlen + opt.size);
    if (!f)
        return -1;
    f[0] = 0x82; /* FIN, binary */
    if (opt.size < 126) {
        f[1] = (unsigned char)(0x80 | opt.size);
    } else if (opt.size <= 0xffff) {
        f[1] = 0x80 | 126;
        f[2] = (unsigned char)(opt.size >> 8);
        f[3] = (unsigned char)opt.size;
    } else {
        f[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            f[2 + i] = (unsigned char)((uint64_t)opt.size >> (56 - 8 * i));
    }
    uint32_t m = (uint32_t)rng_next();
    unsigned char *mask = f + hlen - 4;
    memcpy(mask, &m, 4);
    for (size_t i = 0; i < opt.size; i++)
        f[hlen + i] = pattern[c->off + i] ^ mask[i & 3];
    c->frame = f;
    c->frame_len = hlen + opt.size;
    return 0;
}

/* What --cpu-pid reads of a process over the measured window: its CPU time and the
 * page faults it took (a fault on a freshly trimmed-and-regrown heap page costs
 * microseconds on these VMs, so faults per message say where a relay's CPU goes). */
struct usage {
    double cpu_s;            /* -1: the process is gone */
    unsigned long long flts; /* minor + major */
};

/* One process's usage. CPU: its threads' run time in ns from
 * /proc/PID/task/TID/schedstat (exact; /proc/PID/stat's utime+stime are whole clock
 * ticks per process, and summed over websockify's hundreds of children that truncation
 * loses seconds), plus the cutime+cstime of children it has already reaped. Faults:
 * minflt+majflt of /proc/PID/stat (all its threads, live and exited), plus the
 * cminflt+cmajflt of its reaped children, like the CPU time. */
static struct usage proc_usage(int pid)
{
    struct usage u = {-1.0, 0};
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return u;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime cutime cstime */
    unsigned long long mn, cmn, mj, cmj;
    long long cut, cst;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu %llu %llu %llu %*d %*d %lld %lld",
                     &mn, &cmn, &mj, &cmj, &cut, &cst) != 6)
        return u;
    u.flts = mn + cmn + mj + cmj;
    u.cpu_s = (double)(cut + cst) / (double)sysconf(_SC_CLK_TCK);

    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char tpath[320];
        unsigned long long run_ns;
        snprintf(tpath, sizeof(tpath), "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *t = fopen(tpath, "r");
        if (!t)
            continue;
        if (fscanf(t, "%llu", &run_ns) == 1)
            u.cpu_s += (double)run_ns / 1e9;
        fclose(t);
    }
    if (d)
        closedir(d);
    return u;
}

/* Calls fn(child, ctx) for each live child of pid (websockify forks one per connection). */
static void each_child(int pid, void (*fn)(int child, void *ctx), void *ctx)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        /* cheap test of the parent before reading anything else of the child */
        char path[300], buf[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        int ppid = 0;
        if (p && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == pid)
            fn(atoi(e->d_name), ctx);
    }
    if (d)
        closedir(d);
}

static void usage_add(int pid, void *ctx)
{
    struct usage *total = ctx, u = proc_usage(pid);
    if (u.cpu_s >= 0) {
        total->cpu_s += u.cpu_s;
        total->flts += u.flts;
    }
}

/* A process and its live children. A child that exits moves from the children's sum
 * into the parent's cutime (and cminflt) once reaped. */
static struct usage tree_usage(int pid)
{
    struct usage total = proc_usage(pid);
    if (total.cpu_s < 0)
        return total;
    each_child(pid, usage_add, &total);
    return total;
}

/* Resident memory of a process tree: PID and its live children (websockify forks one per
 * connection), summed. RSS counts a page shared by several of them (a forked child's
 * copy-on-write pages, libraries) once per process; PSS divides it among them, so the
 * PSS sum is what the tree costs the machine. From /proc/P/status and smaps_rollup. */
struct tree_mem {
    unsigned procs;
    unsigned long long rss_kb, pss_kb;
};

static unsigned long long proc_field_kb(const char *file, int pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t fl = strlen(field);
    unsigned long long v = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtoull(line + fl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static void mem_add(int pid, void *ctx)
{
    struct tree_mem *m = ctx;
    m->procs++;
    m->rss_kb += proc_field_kb("status", pid, "VmRSS");
    m->pss_kb += proc_field_kb("smaps_rollup", pid, "Pss");
}

static struct tree_mem tree_mem_of(int pid)
{
    struct tree_mem m = {0, 0, 0};
    if (kill(pid, 0) != 0)
        return m;
    mem_add(pid, &m);
    each_child(pid, mem_add, &m);
    return m;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Message i of the JSON stream: a sensor reading whose values vary, padded with spaces
 * (JSON whitespace) to exactly opt.size bytes. */
static void json_build(unsigned char *out, unsigned i)
{
    static const char *const sites[] = {"roof-north", "roof-south", "cellar", "hall", "lab-2"};
    static const char *const states[] = {"ok", "ok", "ok", "warn", "degraded"};
    uint64_t r = rng_next();
    char buf[JSON_MIN_SIZE + 1];
    int n = snprintf(buf, sizeof(buf),
                     "{\"ts\":%llu,\"device\":\"sensor-%04u\",\"site\":\"%s\",\"seq\":%u,"
                     "\"temp\":%.2f,\"humidity\":%.1f,\"battery\":%u,\"status\":\"%s\"}",
                     1765000000000ull + i * 250ull + r % 100, (unsigned)(r >> 8) % 64,
                     sites[(r >> 16) % 5], i, 18.0 + (double)((r >> 24) % 900) / 100.0,
                     35.0 + (double)((r >> 34) % 300) / 10.0, 60 + (unsigned)((r >> 44) % 40),
                     states[(r >> 52) % 5]);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    /* the closing brace last, the padding before it */
    memset(out, ' ', opt.size);
    memcpy(out, buf, len - 1);
    out[opt.size - 1] = '}';
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: wsbench --mode tcp|ws --port N [options]\n"
            "  --host H             server address (default 127.0.0.1)\n"
            "  --path P             ws: request path (default /)\n"
            "  --subprotocol NAME   ws: offer this subprotocol and require it back\n"
            "  --conns N            connections (default 1)\n"
            "  --size BYTES         message payload size (default 64)\n"
            "  --inflight K         messages outstanding per connection (default 1)\n"
            "  --duration S         measured seconds (default 5)\n"
            "  --warmup S           seconds of traffic before measuring (default 1)\n"
            "  --connect-timeout S  connections not ready by then are errors (default 15)\n"
            "  --cpu-pid LABEL=PID  report CPU seconds and page faults (minor + major) of\n"
            "                       PID and its children over the measured window (up to %d)\n"
            "  --messages N         send exactly N messages in all (warm-up included), stop\n"
            "                       when all are echoed (or --duration runs out)\n"
            "  --idle S             idle mode: connect (and handshake), send nothing, hold\n"
            "                       the connections S seconds; report the connect rate\n"
            "  --mem-pid LABEL=PID  idle mode: report the resident memory of PID and its\n"
            "                       children before connecting and at the end (up to %d)\n"
            "  --payload KIND       pattern (default: a byte pattern, binary messages), json\n"
            "                       (text messages, JSON objects of --size >= %d bytes) or\n"
            "                       json-binary (the same JSON in binary messages)\n"
            "  --deflate            ws: offer permessage-deflate, require it, compress what\n"
            "                       is sent, inflate what comes back; report wire bytes\n"
            "Prints one JSON line: throughput, latency percentiles, errors (idle mode:\n"
            "connections held, connect rate, memory, errors).\n",
            MAX_CPU_PIDS, MAX_CPU_PIDS, JSON_MIN_SIZE);
}

static int parse_num(const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "wsbench: %s: expected a number in %g..%g, got \"%s\"\n", name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    double v;
    opt.mode = MODE_TCP;
    opt.host = "127.0.0.1";
    opt.port = NULL;
    opt.path = "/";
    opt.conns = 1;
    opt.inflight = 1;
    opt.size = 64;
    opt.duration = 5;
    opt.warmup = 1;
    opt.connect_timeout = 15;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--deflate") == 0) {
            opt.deflate = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "wsbench: unknown or incomplete option \"%s\"\n", a);
            return -1;
        }
        const char *val = argv[++i];
        if (strcmp(a, "--mode") == 0) {
            if (strcmp(val, "tcp") == 0)
                opt.mode = MODE_TCP;
            else if (strcmp(val, "ws") == 0)
                opt.mode = MODE_WS;
            else {
                fprintf(stderr, "wsbench: --mode: expected tcp or ws, got \"%s\"\n", val);
                return -1;
            }
        } else if (strcmp(a, "--payload") == 0) {
            if (strcmp(val, "json") == 0)
                opt.json = opt.text = true;
            else if (strcmp(val, "json-binary") == 0) /* for servers that refuse text */
                opt.json = true;
            else if (strcmp(val, "pattern") != 0) {
                fprintf(stderr,
                        "wsbench: --payload: expected pattern, json or json-binary, got \"%s\"\n",
                        val);
                return -1;
            }
        } else if (strcmp(a, "--host") == 0) {
            opt.host = val;
        } else if (strcmp(a, "--port") == 0) {
            if (parse_num(a, val, 1, 65535, &v) != 0)
                return -1;
            opt.port = val;
        } else if (strcmp(a, "--path") == 0) {
            opt.path = val;
        } else if (strcmp(a, "--subprotocol") == 0) {
            opt.subprotocol = val;
        } else if (strcmp(a, "--conns") == 0) {
            if (parse_num(a, val, 1, 100000, &v) != 0)
                return -1;
            opt.conns = (unsigned)v;
        } else if (strcmp(a, "--size") == 0) {
            if (parse_num(a, val, 1, MAX_SIZE, &v) != 0)
                return -1;
            opt.size = (size_t)v;
        } else if (strcmp(a, "--inflight") == 0) {
            if (parse_num(a, val, 1, 4096, &v) != 0)
                return -1;
            opt.inflight = (unsigned)v;
        } else if (strcmp(a, "--duration") == 0) {
            if (parse_num(a, val, 0.1, 86400, &opt.duration) != 0)
                return -1;
        } else if (strcmp(a, "--warmup") == 0) {
            if (parse_num(a, val, 0, 3600, &opt.warmup) != 0)
                return -1;
        } else if (strcmp(a, "--connect-timeout") == 0) {
            if (parse_num(a, val, 0.1, 3600, &opt.connect_timeout) != 0)
                return -1;
        } else if (strcmp(a, "--idle") == 0) {
            if (parse_num(a, val, 0.001, 86400, &opt.idle) != 0)
                return -1;
        } else if (strcmp(a, "--messages") == 0) {
            if (parse_num(a, val, 1, 1e15, &v) != 0)
                return -1;
            opt.messages = (uint64_t)v;
        } else if (strcmp(a, "--mem-pid") == 0) {
            const char *eq = strchr(val, '=');
            if (!eq || eq == val || opt.nmem == MAX_CPU_PIDS ||
                parse_num(a, eq + 1, 1, 1e9, &v) != 0) {
                fprintf(stderr, "wsbench: --mem-pid: expected LABEL=PID (at most %d)\n",
                        MAX_CPU_PIDS);
                return -1;
            }
            opt.mem_label[opt.nmem] = strndup(val, (size_t)(eq - val));
            opt.mem_pid[opt.nmem++] = (int)v;
        } else if (strcmp(a, "--cpu-pid") == 0) {
            const char *eq = strchr(val, '=');
            if (!eq || eq == val || opt.ncpu == MAX_CPU_PIDS ||
                parse_num(a, eq + 1, 1, 1e9, &v) != 0) {
                fprintf(stderr, "wsbench: --cpu-pid: expected LABEL=PID (at most %d)\n",
                        MAX_CPU_PIDS);
                return -1;
            }
            opt.cpu_label[opt.ncpu] = strndup(val, (size_t)(eq - val));
            opt.cpu_pid[opt.ncpu++] = (int)v;
        } else {
            fprintf(stderr, "wsbench: unknown option \"%s\"\n", a);
            return -1;
        }
    }
    if (!opt.port) {
        fprintf(stderr, "wsbench: --port is required\n");
        return -1;
    }
    if (opt.deflate && opt.mode != MODE_WS) {
        fprintf(stderr, "wsbench: --deflate needs --mode ws\n");
        return -1;
    }
    if (opt.json && opt.size < JSON_MIN_SIZE) {
        fprintf(stderr, "wsbench: --payload json needs --size %d or more\n", JSON_MIN_SIZE);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    rng_state = now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(opt.host, opt.port, &hints, &target);
    if (rc != 0) {
        fprintf(stderr, "wsbench: %s:%s: %s\n", opt.host, opt.port, gai_strerror(rc));
        return 1;
    }
    src_spread = opt.idle > 0 && target->ai_family == AF_INET &&
                 (ntohl(((struct sockaddr_in *)target->ai_addr)->sin_addr.s_addr) >> 24) == 127;
    pattern = malloc(PATTERN_PERIOD + opt.size);
    rxbuf = malloc(RX_BUF_BYTES);
    conns = calloc(opt.conns, sizeof(*conns));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!pattern || !rxbuf || !conns || ep < 0) {
        fprintf(stderr, "wsbench: out of memory or epoll: %s\n", strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < PATTERN_PERIOD + opt.size; i++)
        pattern[i] = (unsigned char)(i % PATTERN_PERIOD);
    if (opt.json) {
        json_msgs = malloc((size_t)JSON_MSGS * opt.size);
        if (!json_msgs) {
            fprintf(stderr, "wsbench: out of memory\n");
            return 1;
        }
        for (unsigned i = 0; i < JSON_MSGS; i++)
            json_build(json_msgs + (size_t)i * opt.size, i);
    }
    if (opt.deflate) {
        zbuf_cap = compressBound((uLong)opt.size) + 64;
        zbuf = malloc(zbuf_cap);
        infbuf = malloc(INFLATE_BUF_BYTES);
        if (!zbuf || !infbuf) {
            fprintf(stderr, "wsbench: out of memory\n");
            return 1;
        }
    }
    for (unsigned i = 0; i < opt.conns; i++) {
        if (conn_init(&conns[i], i) != 0) {
            fprintf(stderr, "wsbench: out of memory for %u connections\n", opt.conns);
            return 1;
        }
    }

    /* One descriptor per connection, plus a few: take what the hard limit allows. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
        nofile.rlim_cur < (rlim_t)opt.conns + 32) {
        nofile.rlim_cur = nofile.rlim_max == RLIM_INFINITY || nofile.rlim_max > opt.conns + 32
                              ? (rlim_t)opt.conns + 32
                              : nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur < (rlim_t)opt.conns + 32)
            fprintf(stderr, "wsbench: warning: descriptor limit %llu is below %u connections\n",
                    (unsigned long long)nofile.rlim_cur, opt.conns);
    }

    struct tree_mem mem0[MAX_CPU_PIDS], mem1[MAX_CPU_PIDS];
    for (unsigned i = 0; i < opt.nmem; i++)
        mem0[i] = tree_mem_of(opt.mem_pid[i]);

    uint64_t t_setup = now_ns();
    uint64_t deadline = t_setup + (uint64_t)(opt.connect_timeout * 1e9);
    uint64_t t_measure = 0, t_end = 0;
    struct usage use0[MAX_CPU_PIDS] = {{0, 0}}, use1[MAX_CPU_PIDS] = {{0, 0}};
    double self0 = 0, self1 = 0;
    struct epoll_event evs[MAX_EVENTS];
    start_more_connections();

    for (;;) {
        uint64_t now = now_ns();
        if (phase == PHASE_SETUP &&
            ((next_idle == opt.conns && connecting == 0) || now >= deadline)) {
            for (unsigned i = 0; i < opt.conns; i++) {
                struct conn *c = &conns[i];
                if (c->state == CS_IDLE) {
                    c->state = CS_CONNECTING; /* balance conn_fail's bookkeeping */
                    connecting++;
                }
                if (c->state != CS_READY && c->state != CS_DEAD)
                    conn_fail(c, ERR_TIMEOUT, "not ready when the setup time ran out");
            }
            fprintf(stderr, "wsbench: %u of %u connections ready after %.2f s\n", ready_count,
                    opt.conns, (double)(now - t_setup) / 1e9);
            ready_at_start = ready_count;
            if (opt.idle > 0) {
                phase = PHASE_HOLD;
                deadline = now + (uint64_t)(opt.idle * 1e9);
                continue;
            }
            phase = PHASE_WARMUP;
            ready_at_start = ready_count;
            deadline = now + (uint64_t)(opt.warmup * 1e9);
            for (unsigned i = 0; i < opt.conns; i++)
                if (conns[i].state == CS_READY)
                    conn_refill(&conns[i], now);
            continue;
        }
        if (phase == PHASE_WARMUP && now >= deadline) {
            for (unsigned i = 0; i < opt.ncpu; i++)
                use0[i] = tree_usage(opt.cpu_pid[i]);
            self0 = self_cpu_s();
            phase = PHASE_MEASURE;
            t_measure = now_ns();
            deadline = t_measure + (uint64_t)(opt.duration * 1e9);
            continue;
        }
        if (phase == PHASE_HOLD && now >= deadline) {
            t_end = now;
            for (unsigned i = 0; i < opt.nmem; i++)
                mem1[i] = tree_mem_of(opt.mem_pid[i]);
            break;
        }
        if (phase == PHASE_MEASURE &&
            (now >= deadline || ready_count == 0 || (opt.messages && total_done >= opt.messages))) {
            t_end = now;
            self1 = self_cpu_s();
            for (unsigned i = 0; i < opt.ncpu; i++)
                use1[i] = tree_usage(opt.cpu_pid[i]);
            break;
        }
        if (phase == PHASE_WARMUP && ready_count == 0)
            deadline = now; /* nothing left to warm up: measure (nothing) at once */
        uint64_t wait_ns = deadline > now ? deadline - now : 0;
        int timeout_ms = (int)(wait_ns / 1000000u) + 1;
        if (timeout_ms > 100)
            timeout_ms = 100;
        int n = epoll_wait(ep, evs, MAX_EVENTS, timeout_ms);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "wsbench: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        if (phase == PHASE_SETUP)
            start_more_connections();
    }

    uint64_t errors = 0;
    for (int k = 0; k < ERR_KINDS; k++)
        errors += st.errors[k];
    if (opt.idle > 0) {
        /* The connect rate: from the first connect to the last connection ready. */
        double connect_s = ready_at_start ? (double)(t_last_ready - t_setup) / 1e9 : 0.0;
        printf("{\"mode\":\"%s\",\"idle\":true,\"conns\":%u,\"conns_ok\":%u,"
               "\"conns_at_end\":%u,\"connect_s\":%.3f,\"conns_per_s\":%.1f,"
               "\"hold_s\":%.3f,\"errors\":%llu,\"error_kinds\":{",
               opt.mode == MODE_WS ? "ws" : "tcp", opt.conns, ready_at_start, ready_count,
               connect_s, connect_s > 0 ? ready_at_start / connect_s : 0.0,
               (double)(t_end - t_last_ready) / 1e9, (unsigned long long)errors);
        for (int k = 0; k < ERR_KINDS; k++)
            printf("%s\"%s\":%llu", k ? "," : "", err_names[k], (unsigned long long)st.errors[k]);
        printf("},\"mem\":{");
        for (unsigned i = 0; i < opt.nmem; i++)
            printf("%s\"%s\":{\"procs0\":%u,\"procs1\":%u,\"rss_kb0\":%llu,\"rss_kb1\":%llu,"
                   "\"pss_kb0\":%llu,\"pss_kb1\":%llu}",
                   i ? "," : "", opt.mem_label[i], mem0[i].procs, mem1[i].procs, mem0[i].rss_kb,
                   mem1[i].rss_kb, mem0[i].pss_kb, mem1[i].pss_kb);
        printf("}}\n");
        fflush(stdout);
        goto out;
    }
    double secs = (double)(t_end - t_measure) / 1e9;
    printf("{\"mode\":\"%s\",\"conns\":%u,\"size\":%zu,\"inflight\":%u,"
           "\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"errors\":%llu,",
           opt.mode == MODE_WS ? "ws" : "tcp", opt.conns, opt.size, opt.inflight,
           secs > 0 ? (double)st.msgs / secs : 0.0, secs > 0 ? (double)st.bytes / secs / 1e6 : 0.0,
           hist_percentile_us(0.50), hist_percentile_us(0.99), hist_percentile_us(0.999),
           (unsigned long long)errors);
    printf("\"error_kinds\":{");
    for (int k = 0; k < ERR_KINDS; k++)
        printf("%s\"%s\":%llu", k ? "," : "", err_names[k], (unsigned long long)st.errors[k]);
    printf("},\"conns_ok\":%u,\"conns_at_end\":%u,\"seconds\":%.3f,\"msgs\":%llu,\"bytes\":%llu,"
           "\"payload\":\"%s\",\"deflate\":%s,\"payload_tx_bytes\":%llu,\"wire_tx_bytes\":%llu,"
           "\"wire_rx_bytes\":%llu,\"client_cpu_s\":%.3f,\"cpu_s\":{",
           ready_at_start, ready_count, secs, (unsigned long long)st.msgs,
           (unsigned long long)st.bytes, opt.json ? (opt.text ? "json" : "json-binary") : "pattern",
           opt.deflate ? "true" : "false", (unsigned long long)st.payload_tx,
           (unsigned long long)st.wire_tx, (unsigned long long)st.wire_rx, self1 - self0);
    for (unsigned i = 0; i < opt.ncpu; i++) {
        double d = use0[i].cpu_s < 0 || use1[i].cpu_s < 0 ? -1.0 : use1[i].cpu_s - use0[i].cpu_s;
        printf("%s\"%s\":%.3f", i ? "," : "", opt.cpu_label[i], d);
    }
    /* -1: the process was gone at either end (or a child's exit took its faults along) */
    printf("},\"faults\":{");
    for (unsigned i = 0; i < opt.ncpu; i++) {
        long long d = use0[i].cpu_s < 0 || use1[i].cpu_s < 0 || use1[i].flts < use0[i].flts
                          ? -1
                          : (long long)(use1[i].flts - use0[i].flts);
        printf("%s\"%s\":%lld", i ? "," : "", opt.cpu_label[i], d);
    }
    printf("}}\n");
    fflush(stdout);

out:
    for (unsigned i = 0; i < opt.conns; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        if (opt.mode == MODE_WS)
            free((void *)conns[i].frame);
        free(conns[i].sent_ns);
        free(conns[i].hs);
        free(conns[i].txbuf);
        if (conns[i].zd) {
            deflateEnd(conns[i].zd);
            free(conns[i].zd);
        }
        if (conns[i].zi) {
            inflateEnd(conns[i].zi);
            free(conns[i].zi);
        }
    }
    for (unsigned i = 0; i < opt.ncpu; i++)
        free((void *)opt.cpu_label[i]);
    for (unsigned i = 0; i < opt.nmem; i++)
        free((void *)opt.mem_label[i]);
    free(conns);
    free(pattern);
    free(rxbuf);
    free(json_msgs);
    free(zbuf);
    free(infbuf);
    freeaddrinfo(target);
    close(ep);
    return 0;
}

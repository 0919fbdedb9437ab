/* session.c - one client WebSocket connection; see session.h.
 *
 * Lifetime: session_create() at the handshake (CONFIRM_UPGRADE), installed as
 * the connection's user data so it survives lws re-binding the protocol;
 * session_destroy() when lws frees the connection (WSI_DESTROY). The bridge
 * is opened at ESTABLISHED and let go at CLOSED. */
#include "session.h"

#include "auth.h"
#include "auth_http.h"
#include "backend_type.h"
#include "bridge.h"
#include "config.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "msg_queue.h"
#include "peer_addr.h"
#include "rules.h"
#include "sock_room.h"
#include "token_bucket.h"
#include "utf8.h"
#include "ws_deflate.h"
#include "ws_frame_check.h"
#include "ws_rx_guard.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK_TEXT 1u
#define CHUNK_REPLY 2u    /* the gateway's own answer: not counted as relayed */
#define CHUNK_DEFLATED 4u /* compressed (permessage-deflate): RSV1 on its first frame */

#define SESSION_TAG 0x5e55101eu

struct session {
    uint32_t tag;                /* SESSION_TAG, see session_is() */
    int close_code;              /* sent by us, or received from the client */
    struct session *prev, *next; /* in the list of open sessions */
    struct lws *wsi;
    struct route_match match;         /* owned: route, captures, query */
    const struct wsg_target *targets; /* the route's (kept by `rules`), or owned copies */
    size_t n_targets;
    struct rules *rules;             /* a reference: the config this connection keeps */
    const struct wsg_limits *limits; /* in rules */
    struct route_metrics *metrics;
    struct bridge *bridge;             /* owned; NULL before ESTABLISHED and after CLOSED */
    struct ws_rx_guard_conn *rx_guard; /* owned; checks the client's frames from
                                          ESTABLISHED to CLOSED (ws_rx_guard.h) */
    struct msg_queue out;              /* messages to the client; bounded by max_queue_bytes
                                          through backpressure on the backend */
    /* Kept per idle connection, so no fixed-size text beyond the peer. */
    const char *subprotocol;   /* one of the route's names (kept by `rules`), or "" */
    char peer[PEER_ADDR_TEXT]; /* the TCP peer, or what a PROXY header said it is */
    char *client;   /* owned: the client behind trusted proxies; NULL if it is the peer */
    json_t *claims; /* owned reference: the verified JWT's claims, or NULL */
    struct session_auth *auth; /* owned; only on routes with "auth" (session_create) */

    size_t rx_message_bytes;      /* size so far of the client message being received */
    struct ws_inflater *inflater; /* owned; made at the client's first compressed message */
    struct ws_deflater *deflater; /* owned; made at the first message compressed for the client */
    char *close_reason;           /* owned; NULL until there is one (see set_close_reason) */

    /* Flags and small state together, so that no padding goes between them
     * (idle memory per connection is a benchmark target). */
    uint32_t room_known; /* bytes the client's send buffer surely takes now: the last
                            sock_send_room() less what was written since (it only
                            frees more in between); saves asking before each write */
    bool rx_in_message;
    bool deflate;           /* permessage-deflate negotiated (the route has "compression") */
    bool rx_compressed;     /* ... and the message being received is compressed */
    bool rx_first_piece;    /* ... and none of its inflated output went to the bridge yet */
    uint8_t rx_utf8;        /* with deflate: UTF-8 state of the text message being received */
    uint8_t deflate_window; /* its window bits (the client may ask for fewer) */
    bool deflate_reset;     /* server_no_context_takeover: each message on its own */
    bool rx_paused;
    bool established;
    bool counted;          /* in connections_active */
    bool targets_owned;    /* copies of a target map's entries, which a reload frees */
    bool close_pending;    /* close once `out` is flushed */
    bool rx_violation;     /* the client broke RFC 6455: close at once with close_code */
    bool close_asap;       /* a limit was hit while lws parsed (close_now): close with
                              close_code from the next WRITEABLE */
    bool close_handed;     /* the close is lws's now (-1 returned once with a reason) */
    bool rx_drop;          /* ... in frames sent with the handshake, which lws parses
                              anyway, or after close_now: relay nothing more */
    bool ping_due;         /* send a ping at the next WRITEABLE */
    bool ping_outstanding; /* sent, no pong (or anything) since */

    uint64_t started_us;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out;

    /* liveness: pings, idle timeout (see check_liveness) */
    uint64_t ping_sent_us;
    uint64_t last_rx_us;   /* anything from the client, pongs included */
    uint64_t last_data_us; /* a data message either way */

    struct token_bucket rate; /* max_messages_per_s */
};

/* What only sessions of routes with "auth" need, apart so that an idle
 * connection without it stays small (idle memory per connection is a
 * benchmark target: docs/benchmarks/results.md). */
struct session_auth {
    struct session *s;
    /* A JWT connection closes with 4401 when its token's exp (+ leeway)
     * passes: one timer each, armed at ESTABLISHED, moved by a refresh. */
    lws_sorted_usec_list_t expiry_timer;
    int64_t expires_at_s; /* Unix seconds, exp + leeway; 0: never */
    /* "auth": "http": owned while the auth service is asked; the verdict,
     * if it comes before ESTABLISHED, waits in `early` until then. */
    struct auth_wait *wait;
    bool early;
    enum auth_verdict verdict;
    char *reason; /* owned, with `early` */
};

static void session_auth_free(struct session_auth *a)
{
    if (!a)
        return;
    lws_sul_cancel(&a->expiry_timer);
    auth_wait_cancel(a->wait);
    free(a->reason);
    free(a);
}

size_t session_count(void) { return gateway_get()->sessions.count; }

static const char *client_of(const struct session *s) { return s->client ? s->client : s->peer; }

/* The reason is allocated only when a connection closes (NULL if memory is
 * out: closed without one). */
static void set_close_reason(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_close_reason(struct session *s, const char *fmt, ...)
{
    char text[SESSION_CLOSE_REASON_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    text[utf8_cut(text, strlen(text))] = '\0'; /* a cut character would be a 1007 */
    free(s->close_reason);
    s->close_reason = strdup(text);
}

static const char *close_reason(const struct session *s)
{
    return s->close_reason ? s->close_reason : "";
}

bool session_is(const void *opaque) { return opaque && *(const uint32_t *)opaque == SESSION_TAG; }

void session_close_all(int code, const char *reason)
{
    for (struct session *s = gateway_get()->sessions.head; s; s = s->next)
        if (s->established)
            session_close(s, code, reason);
}

static void free_targets(const struct wsg_target *targets, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(targets[i].host);
    free((void *)targets);
}

static struct wsg_target *copy_targets(const struct wsg_target *targets, size_t n)
{
    struct wsg_target *copy = calloc(n ? n : 1, sizeof(*copy));
    if (!copy)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        copy[i].port = targets[i].port;
        if (!(copy[i].host = strdup(targets[i].host))) {
            free_targets(copy, i);
            return NULL;
        }
    }
    return copy;
}

struct session *session_create(struct lws *wsi, struct route_match *match, const char *subprotocol,
                               struct rules *rules, const struct wsg_target *targets,
                               size_t n_targets, const char *client_addr, json_t *claims)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        json_decref(claims);
        return NULL;
    }
    s->claims = claims;
    s->tag = SESSION_TAG;
    if ((match->route->auth_jwt || match->route->auth_http) &&
        !(s->auth = calloc(1, sizeof(*s->auth)))) {
        json_decref(s->claims);
        free(s);
        return NULL;
    }
    if (s->auth)
        s->auth->s = s;
    s->targets = targets;
    s->targets_owned = targets != match->route->targets; /* the route's outlive us */
    if (s->targets_owned && !(s->targets = copy_targets(targets, n_targets))) {
        json_decref(s->claims);
        free(s->auth);
        free(s);
        return NULL;
    }
    s->n_targets = n_targets;
    s->wsi = wsi;
    s->match = *match;
    memset(match, 0, sizeof(*match));
    s->rules = rules_ref(rules);
    s->limits = &rules->cfg->limits;
    s->metrics = metrics_route(s->match.route->name);
    s->subprotocol = "";
    for (size_t i = 0; subprotocol && i < s->match.route->n_subprotocols; i++)
        if (strcmp(s->match.route->subprotocols[i], subprotocol) == 0)
            s->subprotocol = s->match.route->subprotocols[i];
    int peer_port;
    peer_addr_of(wsi, s->peer, &peer_port); /* a PROXY header's source, if any */
    if (client_addr && *client_addr && strcmp(client_addr, s->peer) != 0)
        s->client = strdup(client_addr); /* NULL (out of memory) logs the peer */
    s->started_us = (uint64_t)lws_now_usecs();
    struct session_registry *reg = &gateway_get()->sessions;
    s->next = reg->head;
    if (reg->head)
        reg->head->prev = s;
    reg->head = s;
    reg->count++;
    return s;
}

static void log_access(const struct session *s)
{
    char duration[32], in_b[24], out_b[24], in_m[24], out_m[24], code[16];
    snprintf(duration, sizeof(duration), "%.3f",
             (double)((uint64_t)lws_now_usecs() - s->started_us) / 1e6);
    snprintf(in_b, sizeof(in_b), "%" PRIu64, s->bytes_in);
    snprintf(out_b, sizeof(out_b), "%" PRIu64, s->bytes_out);
    snprintf(in_m, sizeof(in_m), "%" PRIu64, s->msgs_in);
    snprintf(out_m, sizeof(out_m), "%" PRIu64, s->msgs_out);
    snprintf(code, sizeof(code), "%d", s->close_code ? s->close_code : 1006);
    log_info("connection closed", "route", s->match.route->name, "peer", s->peer, "client",
             client_of(s), "subprotocol", s->subprotocol, "duration_s", duration, "bytes_in", in_b,
             "bytes_out", out_b, "messages_in", in_m, "messages_out", out_m, "close_code", code,
             "close_reason", close_reason(s));
}

void session_destroy(struct session *s)
{
    if (!s)
        return;
    session_auth_free(s->auth);
    s->auth = NULL;
    ws_rx_guard_unregister(s->rx_guard);
    s->rx_guard = NULL;
    if (s->bridge) {
        bridge_client_gone(s->bridge);
        s->bridge = NULL;
    }
    if (s->counted) {
        s->metrics->connections_active--;
        metrics_count_close(s->metrics, s->close_code ? s->close_code : 1006);
        log_access(s);
    }
    msg_queue_clear(&s->out);
    ws_inflater_destroy(s->inflater);
    ws_deflater_destroy(s->deflater);
    route_match_clear(&s->match);
    if (s->targets_owned)
        free_targets(s->targets, s->n_targets);
    free(s->client);
    free(s->close_reason);
    rules_unref(s->rules);
    json_decref(s->claims);
    struct session_registry *reg = &gateway_get()->sessions;
    if (s->prev)
        s->prev->next = s->next;
    else
        reg->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    reg->count--;
    metrics_connection_release(); /* taken for it by the handshake */
    s->tag = 0;
    free(s);
}

static long queue_for_client(struct session *s, const void *data, size_t len, unsigned flags)
{
    if (s->close_pending || !s->wsi)
        return -1;
    size_t deflated_len;
    const uint8_t *deflated = NULL;
    if (s->deflate && len >= WS_DEFLATE_MIN_BYTES &&
        (s->deflater || (s->deflater = ws_deflater_create(s->deflate_window, !s->deflate_reset))))
        deflated = ws_deflate_message(s->deflater, data, len, &deflated_len);
    if (deflated) { /* queued compressed: the queue's bound counts what goes on the wire */
        data = deflated;
        len = deflated_len;
        flags |= CHUNK_DEFLATED;
    }
    if (msg_queue_push(&s->out, data, len, flags) != 0) {
        /* Out of memory: the client would miss this message, so it fails
         * the connection (1011), not the process and not silently. */
        session_close(s, CLOSE_INTERNAL_ERROR, "out of memory");
        return -1;
    }
    lws_callback_on_writable(s->wsi);
    return (long)s->out.bytes;
}

long session_send(struct session *s, const void *data, size_t len, bool text)
{
    return queue_for_client(s, data, len, text ? CHUNK_TEXT : 0);
}

long session_reply(struct session *s, const char *text, size_t len)
{
    return queue_for_client(s, text, len, CHUNK_TEXT | CHUNK_REPLY);
}

size_t session_queued_bytes(const struct session *s) { return s->out.bytes; }

void session_close(struct session *s, int code, const char *reason)
{
    if (s->close_pending || !s->wsi)
        return;
    s->close_pending = true;
    s->close_code = code;
    set_close_reason(s, "%s", reason ? reason : "");
    /* Read again so the client's close acknowledgement is seen; anything else
     * it sends from now on is dropped (see on_receive). */
    session_pause_reading(s, false);
    lws_callback_on_writable(s->wsi);
}

void session_pause_reading(struct session *s, bool paused)
{
    if (s->rx_paused == paused || !s->wsi)
        return;
    s->rx_paused = paused;
    lws_rx_flow_control(s->wsi, paused ? 0 : 1);
}

const struct route_match *session_match(const struct session *s) { return &s->match; }
json_t *session_claims(const struct session *s) { return s->claims; }
const struct wsg_limits *session_limits(const struct session *s) { return s->limits; }
struct route_metrics *session_metrics(const struct session *s) { return s->metrics; }
struct lws *session_wsi(const struct session *s) { return s->wsi; }
const char *session_subprotocol(const struct session *s) { return s->subprotocol; }

const char *session_client(const struct session *s) { return client_of(s); }

bool session_accept_deflate(struct session *s, struct lws *wsi)
{
    s->deflate = s->match.route->compression;
    if (!s->deflate)
        return false;
    /* lws takes the first offer; what it says about our side binds us. */
    char offer[256] = "";
    if (lws_hdr_copy(wsi, offer, sizeof(offer), WSI_TOKEN_EXTENSIONS) < 0)
        offer[0] = '\0'; /* longer than any real offer: the defaults */
    char *end = strchr(offer, ',');
    if (end)
        *end = '\0';
    s->deflate_reset = strstr(offer, "server_no_context_takeover") != NULL;
    s->deflate_window = WS_DEFLATE_WINDOW_BITS;
    const char *bits = strstr(offer, "server_max_window_bits=");
    if (bits) {
        int n = atoi(bits + strlen("server_max_window_bits="));
        if (n >= 9 && n < s->deflate_window)
            s->deflate_window = (uint8_t)n;
    }
    return true;
}

const char *session_peer(const struct session *s) { return s->peer; }

const struct wsg_target *session_targets(const struct session *s, size_t *n)
{
    *n = s->n_targets;
    return s->targets;
}

/* Closes right away from inside a receive callback. */
/* Once a close is under way, a peer that reads nothing must not hold its
 * slot forever: lws drops the connection after this long. */
#define CLOSE_SEND_TIMEOUT_S 5

static int close_now(struct session *s, int code, const char *reason)
{
    /* Not by returning -1 from here: lws would drop the unparsed rest of
     * what it has read (up to a receive buffer of frames) and parse the
     * next read from the middle of a frame; a client that keeps sending (a
     * flood over max_messages_per_s) then breaks its parser, and that
     * second close kills the socket before the close frame is out. So the
     * rest of the read is parsed and goes nowhere (rx_drop), and the close
     * starts from the next WRITEABLE, ahead of anything queued. */
    s->rx_drop = true;
    if (s->close_asap)
        return 0;
    s->close_asap = true;
    s->close_code = code;
    set_close_reason(s, "%s", reason);
    lws_callback_on_writable(s->wsi);
    /* A peer that is not reading must not hold the slot forever. */
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_SEND_TIMEOUT_S);
    return 0;
}

/* A client over max_messages_per_s: 1008. */
static int close_over_rate(struct session *s)
{
    char reason[96];
    snprintf(reason, sizeof(reason), "more than %" PRId64 " messages per second",
             s->limits->max_messages_per_s);
    return close_now(s, CLOSE_POLICY, reason);
}

/* One more client message under max_messages_per_s? (token_bucket.h) */
static bool rate_allows(struct session *s)
{
    return token_bucket_take(&s->rate, s->limits->max_messages_per_s, (uint64_t)lws_now_usecs());
}

/* Liveness, checked for every session by one sweep a second (one timer for
 * all: lws 4.1.6 keeps timers in a sorted list, and a timer per connection
 * made accepting N connections cost O(N^2) - 10,000 took 5.6 s instead of
 * 1.8 s). A client silent for ping_interval_s gets a ping, and one that has
 * answered neither it nor anything else a ping interval later is dropped -
 * its backend released. A client with no data message either way for
 * idle_timeout_s is closed with 1001. */
#define SWEEP_US LWS_USEC_PER_SEC

static void check_liveness(struct session *s, uint64_t now)
{
    int64_t ping_s = s->limits->ping_interval_s, idle_s = s->limits->idle_timeout_s;
    if (idle_s > 0 && now >= s->last_data_us + (uint64_t)idle_s * 1000000u) {
        char reason[64];
        snprintf(reason, sizeof(reason), "idle for %" PRId64 " s", idle_s);
        session_close(s, CLOSE_GOING_AWAY, reason);
        /* A peer that is not reading must not hold the slot forever. */
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_SEND_TIMEOUT_S);
        return;
    }
    if (ping_s <= 0)
        return;
    uint64_t interval = (uint64_t)ping_s * 1000000u;
    if (s->ping_outstanding && now - s->ping_sent_us >= interval) {
        s->close_code = CLOSE_GOING_AWAY;
        set_close_reason(s, "no pong within %" PRId64 " s", ping_s);
        log_debug("client missed a pong", "route", s->match.route->name, "peer", s->peer);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    if (!s->ping_outstanding && !s->ping_due && now - s->last_rx_us >= interval) {
        s->ping_due = true;
        lws_callback_on_writable(s->wsi);
    }
}

/* A compressed connection with no message either way for this long gives
 * its deflater back (about 38 KiB); the next message starts a new one,
 * without the old context (the client's inflater does not mind). */
#define DEFLATER_IDLE_US (5 * LWS_USEC_PER_SEC)

static void sweep(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    struct session_registry *reg = &gateway_get()->sessions;
    uint64_t now = (uint64_t)lws_now_usecs();
    for (struct session *s = reg->head; s; s = s->next) {
        if (s->deflater && now - s->last_data_us >= DEFLATER_IDLE_US) {
            ws_deflater_destroy(s->deflater);
            s->deflater = NULL;
        }
        if (s->established && s->wsi && !s->close_pending)
            check_liveness(s, now);
    }
    if (reg->head)
        lws_sul_schedule(gateway_get()->context, 0, &reg->sweep_timer, sweep, SWEEP_US);
    else
        reg->sweeping = false; /* started again by the next connection */
}

static void sweep_start(struct lws_context *context)
{
    struct session_registry *reg = &gateway_get()->sessions;
    if (reg->sweeping)
        return;
    reg->sweeping = true;
    lws_sul_schedule(context, 0, &reg->sweep_timer, sweep, SWEEP_US);
}

void session_sweep_stop(void)
{
    struct session_registry *reg = &gateway_get()->sessions;
    if (reg->sweeping)
        lws_sul_cancel(&reg->sweep_timer);
    reg->sweeping = false;
}

/* UTF-8 of text that reaches us other than through the guard (inflated,
 * or with permessage-deflate negotiated, where the guard cannot judge it):
 * false once it can no longer be valid. */
static bool utf8_feed(uint8_t *state, const uint8_t *data, size_t len)
{
    uint8_t st = *state;
    for (size_t i = 0; i < len && st != UTF8_REJECT; i++)
        st = utf8_step(st, data[i]);
    *state = st;
    return st != UTF8_REJECT;
}

static int over_max_message(struct session *s)
{
    char reason[96];
    snprintf(reason, sizeof(reason), "message over %" PRId64 " bytes",
             s->limits->max_message_bytes);
    return close_now(s, CLOSE_TOO_BIG, reason);
}

/* A piece of an inflated client message (ws_inflate's emit). */
static int inflated_piece(void *ctx, const uint8_t *data, size_t len, bool final)
{
    struct session *s = ctx;
    bool text = !lws_frame_is_binary(s->wsi);
    if (text && (!utf8_feed(&s->rx_utf8, data, len) || (final && s->rx_utf8 != UTF8_ACCEPT)))
        return close_now(s, CLOSE_INVALID_PAYLOAD, "text message is not UTF-8");
    s->rx_message_bytes += len;
    s->bytes_in += len;
    s->metrics->bytes_in += len;
    if (final) {
        s->msgs_in++;
        s->metrics->messages_in++;
        if (!rate_allows(s)) {
            return close_over_rate(s);
        }
    }
    s->last_data_us = s->last_rx_us;
    if (s->bridge)
        bridge_client_data(s->bridge, data, len, s->rx_first_piece, final, text);
    s->rx_first_piece = false;
    return s->close_pending ? 1 : 0; /* the bridge may have closed us */
}

/* Compressed bytes of a client message (lws left them as they came: see
 * ws_rx_guard_message_compressed). max_message_bytes applies to what comes
 * out, and inflating stops one byte past it. */
static int receive_compressed(struct session *s, const uint8_t *in, size_t len, bool first,
                              bool final)
{
    if (first) {
        s->rx_message_bytes = 0;
        s->rx_utf8 = UTF8_ACCEPT;
        s->rx_first_piece = true;
    }
    if (!s->inflater && !(s->inflater = ws_inflater_create()))
        return close_now(s, CLOSE_INTERNAL_ERROR, "out of memory");
    size_t limit = s->limits->max_message_bytes > 0
                       ? (size_t)s->limits->max_message_bytes - s->rx_message_bytes
                       : SIZE_MAX;
    int rc = ws_inflate(s->inflater, in, len, final, limit, inflated_piece, s);
    if (rc == WS_INFLATE_TOO_BIG)
        return over_max_message(s);
    if (rc == WS_INFLATE_CORRUPT)
        return close_now(s, CLOSE_INVALID_PAYLOAD, "invalid compressed data");
    return rc < 0 ? -1 : 0;
}

/* --- token expiry ---------------------------------------------------------- */

/* exp + leeway of a verified token's claims (exp may be a JSON real). */
static int64_t token_deadline(const struct session *s, json_t *claims)
{
    json_t *exp = json_object_get(claims, "exp");
    if (!json_is_number(exp))
        return 0;
    return (int64_t)json_number_value(exp) + s->rules->cfg->auth.jwt.leeway_s;
}

static void token_expired(lws_sorted_usec_list_t *sul)
{
    struct session *s = lws_container_of(sul, struct session_auth, expiry_timer)->s;
    if (!s->wsi || s->close_pending)
        return;
    log_debug("token expired", "route", s->match.route->name, "peer", s->peer);
    session_close(s, CLOSE_UNAUTHORIZED, "token expired");
    /* A peer that is not reading must not hold the slot forever. */
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_SEND_TIMEOUT_S);
}

static void arm_expiry(struct session *s)
{
    struct session_auth *a = s->auth;
    if (!a || a->expires_at_s <= 0 || !s->wsi)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now); /* exp is wall-clock time */
    int64_t left_us =
        (a->expires_at_s - (int64_t)now.tv_sec) * LWS_USEC_PER_SEC - now.tv_nsec / 1000;
    lws_sul_schedule(lws_get_context(s->wsi), 0, &a->expiry_timer, token_expired,
                     left_us > 0 ? left_us : 1);
}

int session_refresh_token(struct session *s, const char *token, size_t len, char *reason,
                          size_t reason_len)
{
    if (!s->match.route->auth_jwt || !s->rules->auth || !s->claims) {
        snprintf(reason, reason_len, "route %s has no token to refresh", s->match.route->name);
        return -1;
    }
    char why[160];
    json_t *claims = auth_verify(s->rules->auth, token, len, (int64_t)time(NULL), why, sizeof(why));
    if (!claims) {
        snprintf(reason, reason_len, "%s", why);
        return -1;
    }
    json_t *was = json_object_get(s->claims, "sub"), *now = json_object_get(claims, "sub");
    bool same = was && now && json_equal(was, now);
    int64_t deadline = token_deadline(s, claims);
    json_decref(claims);
    if (!same) {
        snprintf(reason, reason_len, "the token is for another \"sub\"");
        return -1;
    }
    s->auth->expires_at_s = deadline; /* a JWT route's session has it */
    arm_expiry(s);
    return 0;
}

static int on_receive(struct session *s, const uint8_t *in, size_t len)
{
    s->last_rx_us = (uint64_t)lws_now_usecs();
    s->ping_outstanding = false;
    bool first = !s->rx_in_message;
    bool final = lws_is_final_fragment(s->wsi);
    /* One bit per message, taken even from messages that go nowhere, so the
     * guard's queue stays in step. */
    if (s->deflate && first)
        s->rx_compressed = ws_rx_guard_message_compressed(s->rx_guard);
    if (s->close_pending || s->rx_drop) {
        s->rx_in_message = !final;
        return 0; /* closing: the client's late messages go nowhere */
    }
    if (s->deflate && s->rx_compressed) {
        s->rx_in_message = !final;
        return receive_compressed(s, in, len, first, final);
    }
    if (first)
        s->rx_message_bytes = 0;
    s->rx_message_bytes += len;
    s->rx_in_message = !final;

    /* The frame header announces the rest of this frame: refuse an oversize
     * message before any of it reaches the backend, where it can be known. */
    uint64_t announced = s->rx_message_bytes + lws_remaining_packet_payload(s->wsi);
    if (s->limits->max_message_bytes > 0 && announced > (uint64_t)s->limits->max_message_bytes) {
        char reason[96];
        snprintf(reason, sizeof(reason), "message over %" PRId64 " bytes",
                 s->limits->max_message_bytes);
        return close_now(s, CLOSE_TOO_BIG, reason);
    }

    /* With permessage-deflate the guard leaves text to us (it cannot read
     * compressed text): an uncompressed message is checked here, a
     * compressed one as it is inflated (inflated_piece). */
    if (s->deflate && !lws_frame_is_binary(s->wsi)) {
        if (first)
            s->rx_utf8 = UTF8_ACCEPT;
        if (!utf8_feed(&s->rx_utf8, in, len) || (final && s->rx_utf8 != UTF8_ACCEPT))
            return close_now(s, CLOSE_INVALID_PAYLOAD, "text message is not UTF-8");
    }

    s->bytes_in += len;
    s->metrics->bytes_in += len;
    if (final) {
        s->msgs_in++;
        s->metrics->messages_in++;
    }
    if (final && !rate_allows(s)) {
        return close_over_rate(s);
    }
    s->last_data_us = s->last_rx_us;
    if (s->bridge)
        bridge_client_data(s->bridge, in, len, first, final, !lws_frame_is_binary(s->wsi));
    return 0;
}

/* Frame headers lws puts in front of a fragment (at most 10 bytes). */
#define WS_HEADER_MAX 14
/* Smallest fragment worth sending when the socket reports little room. */
#define MIN_FRAGMENT 512
/* Writes up to this size go out without asking the socket for room. */
#define SMALL_WRITE_BYTES 2048

/* Counts one message (or the last piece of one) as sent to the client. */
static void count_sent(struct session *s, unsigned flags, size_t n, bool message_done)
{
    bool relayed = !(flags & CHUNK_REPLY);
    s->bytes_out += n;
    if (relayed)
        s->metrics->bytes_out += n;
    if (message_done) {
        s->msgs_out++;
        if (relayed)
            s->metrics->messages_out++;
    }
}

/* After sending: resume the bridge past half the bound, ask for more room. */
static void after_send(struct session *s, size_t queued_before)
{
    size_t bound = (size_t)s->limits->max_queue_bytes;
    if (queued_before > bound / 2 && s->out.bytes <= bound / 2 && s->bridge)
        bridge_client_drained(s->bridge);
    if (!msg_queue_empty(&s->out) || s->close_pending)
        lws_callback_on_writable(s->wsi);
}

/* Several small queued messages go out as one write: their WebSocket frames
 * are built here, back to back, and handed to lws as bytes it passes
 * through (LWS_WRITE_HTTP is written raw on a WebSocket connection, see
 * lws 4.1.6 roles/ws/ops-ws.c). One system call instead of one per message
 * is most of what fan-out and small-message echo cost. */
#define COALESCE_BYTES 65536
/* Scratch of the loop thread, not state: nothing in it outlives one write. */
static uint8_t coalesce_buf[LWS_PRE + COALESCE_BYTES];

static size_t frame_header(uint8_t *h, size_t len, bool text, bool deflated)
{
    h[0] = 0x80 | (deflated ? 0x40 : 0) | (text ? 0x1 : 0x2); /* FIN, RSV1, opcode */
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    h[1] = 126; /* len < COALESCE_BYTES: 16 bits always do */
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    return 4;
}

/* The header of one fragment, written at the end of the
 * WS_FRAGMENT_HEADER_MAX bytes at `slot` (right before the payload);
 * returns its length. */
#define WS_FRAGMENT_HEADER_MAX 10
static size_t fragment_header(uint8_t *slot, size_t len, bool fin, int opcode, bool rsv1)
{
    uint8_t h[WS_FRAGMENT_HEADER_MAX];
    size_t n;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
        n = 2;
    } else if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    memcpy(slot + WS_FRAGMENT_HEADER_MAX - n, h, n);
    return n;
}

/* Room in the client's send buffer for a write of `want` bytes: what is
 * known from the last time the kernel was asked, or asks again if that is
 * not enough (SIZE_MAX: it cannot be told). */
static size_t client_room(struct session *s, size_t want)
{
    if (s->room_known >= want)
        return s->room_known;
    size_t room = sock_send_room(lws_get_socket_fd(s->wsi));
    s->room_known = room == SIZE_MAX ? 0 : room > UINT32_MAX ? UINT32_MAX : (uint32_t)room;
    return room;
}

/* n bytes were handed to the client's socket. */
static void room_spent(struct session *s, size_t n)
{
    s->room_known = n < s->room_known ? s->room_known - (uint32_t)n : 0;
}

/* Returns 1 if it wrote, 0 if the queue does not lend itself, -1 on error. */
static int write_coalesced(struct session *s)
{
    struct msg_chunk *c = msg_queue_peek(&s->out);
    if (!c || c->sent || !c->next || c->len + 4 > COALESCE_BYTES / 2 ||
        (c->flags & (MSG_CHUNK_MORE | MSG_CHUNK_CONT)))
        return 0;
    size_t want = 3 * s->out.bytes < COALESCE_BYTES ? 3 * s->out.bytes : COALESCE_BYTES;
    size_t room = client_room(s, want); /* a frame header is at most 2x a tiny message */
    size_t limit = room < COALESCE_BYTES ? room : COALESCE_BYTES;
    uint8_t *out = coalesce_buf + LWS_PRE;
    size_t used = 0, count = 0;
    for (; c && used + 4 + c->len <= limit && !(c->flags & MSG_CHUNK_MORE); c = c->next, count++) {
        used += frame_header(out + used, c->len, c->flags & CHUNK_TEXT, c->flags & CHUNK_DEFLATED);
        memcpy(out + used, msg_chunk_data(c), c->len);
        used += c->len;
    }
    if (count < 2)
        return 0; /* one message: the plain path fragments it if need be */
    if (lws_write(s->wsi, out, used, LWS_WRITE_HTTP) < 0)
        return -1;
    room_spent(s, used);
    size_t queued_before = s->out.bytes;
    while (count--) {
        count_sent(s, msg_queue_peek(&s->out)->flags, msg_queue_peek(&s->out)->len, true);
        msg_queue_consume(&s->out, msg_queue_peek(&s->out)->len);
    }
    s->last_data_us = (uint64_t)lws_now_usecs();
    after_send(s, queued_before);
    return 1;
}

/* Sends (part of) the first queued message. A message larger than the
 * socket can take now, or than lws sends in one go (SESSION_TX_PACKET_BYTES),
 * goes out as several fragments of one WebSocket message, so that lws never
 * has to hold a partly sent buffer (see sock_room.h for why that matters). */
static int on_writable(struct session *s)
{
    if (s->rx_violation) { /* fail the connection: nothing queued goes first */
        /* The close frame is built and written here as raw bytes (see
         * write_coalesced), not by lws_close_reason: lws would send it at a
         * later POLLOUT and then wait for an acknowledgement that the guard
         * discards. Once it is written, the guard ends the reading. */
        uint8_t frame[LWS_PRE + 4 + SESSION_CLOSE_REASON_MAX];
        uint8_t *f = frame + LWS_PRE;
        size_t n = strlen(close_reason(s));
        f[0] = 0x88; /* FIN, close */
        f[1] = (uint8_t)(2 + n);
        f[2] = (uint8_t)(s->close_code >> 8);
        f[3] = (uint8_t)s->close_code;
        memcpy(f + 4, close_reason(s), n);
        lws_write(s->wsi, f, 4 + n, LWS_WRITE_HTTP);
        ws_rx_guard_closing(s->rx_guard);
        return -1;
    }
    if (s->close_handed)
        return 0;        /* see below */
    if (s->close_asap) { /* lws sends it and waits for the client's */
        /* lws may call WRITEABLE again before its own POLLOUT has sent the
         * close frame; a second -1 then would make it drop the socket
         * without sending it (close.c: "we tried the polite way"). */
        s->close_handed = true;
        lws_close_reason(s->wsi, (enum lws_close_status)s->close_code,
                         (unsigned char *)close_reason(s), strlen(close_reason(s)));
        return -1;
    }
    if (s->ping_due && !s->close_pending) {
        uint8_t ping[LWS_PRE + 8];
        memcpy(ping + LWS_PRE, "wsgate", 6);
        s->ping_due = false;
        s->ping_outstanding = true;
        s->ping_sent_us = (uint64_t)lws_now_usecs();
        if (lws_write(s->wsi, ping + LWS_PRE, 6, LWS_WRITE_PING) < 0)
            return -1;
        lws_callback_on_writable(s->wsi); /* the data, if any, next time */
        return 0;
    }
    struct msg_chunk *c = msg_queue_peek(&s->out);
    if (c) {
        int r = write_coalesced(s);
        if (r != 0)
            return r < 0 ? -1 : 0;
        /* A message longer than a chunk spans several (MORE/CONT): each
         * chunk's pieces are fragments of that one message. */
        bool first = c->sent == 0 && !(c->flags & MSG_CHUNK_CONT);
        bool more = c->flags & MSG_CHUNK_MORE;
        size_t left = c->len - c->sent;
        /* WRITEABLE comes on POLLOUT, which Linux signals only with a third
         * or more of the send buffer free: small writes always fit, and
         * need no extra system call to ask. */
        size_t n = left < SESSION_TX_PACKET_BYTES ? left : SESSION_TX_PACKET_BYTES;
        size_t room = left > SMALL_WRITE_BYTES ? client_room(s, n + WS_HEADER_MAX) : SIZE_MAX;
        if (room != SIZE_MAX && n + WS_HEADER_MAX > room)
            n = room > MIN_FRAGMENT + WS_HEADER_MAX ? room - WS_HEADER_MAX : MIN_FRAGMENT;
        if (n > left)
            n = left;
        int type = !first                    ? LWS_WRITE_CONTINUATION
                   : (c->flags & CHUNK_TEXT) ? LWS_WRITE_TEXT
                                             : LWS_WRITE_BINARY;
        if (n < left || more)
            type |= LWS_WRITE_NO_FIN;
        if (s->deflate) {
            /* Raw frames (RSV1 on a compressed message's first): given
             * LWS_WRITE_TEXT/BINARY, lws's extension would compress again,
             * keeping a compressor per connection. The header goes in the
             * headroom, or over payload already sent. */
            uint8_t *p = msg_chunk_data(c) + c->sent;
            int opcode = !first ? 0 : (c->flags & CHUNK_TEXT) ? 1 : 2;
            size_t h = fragment_header(p - WS_FRAGMENT_HEADER_MAX, n, !(type & LWS_WRITE_NO_FIN),
                                       opcode, first && (c->flags & CHUNK_DEFLATED));
            if (lws_write(s->wsi, p - h, h + n, LWS_WRITE_HTTP) < 0)
                return -1;
        } else if (lws_write(s->wsi, msg_chunk_data(c) + c->sent, n,
                             (enum lws_write_protocol)type) < 0) {
            return -1;
        }
        room_spent(s, n + WS_HEADER_MAX);
        count_sent(s, c->flags, n, n == left && !more);
        s->last_data_us = (uint64_t)lws_now_usecs();
        size_t queued_before = s->out.bytes;
        msg_queue_consume(&s->out, n);
        after_send(s, queued_before);
        return 0;
    }
    if (s->close_pending) {
        s->close_handed = true;
        lws_close_reason(s->wsi, (enum lws_close_status)s->close_code,
                         (unsigned char *)close_reason(s), strlen(close_reason(s)));
        return -1;
    }
    return 0;
}

/* The client's close frame: 2-byte code then reason. lws 4.1.6 echoes it,
 * but first turns 1012-1014 (registered since RFC 6455: restart, try again
 * later, bad gateway) into 1002 in place; the guard read the real code. */
static void note_peer_close(struct session *s, uint8_t *in, size_t len)
{
    int sent = ws_rx_guard_close_code(s->rx_guard);
    if (len >= 2 && sent >= 1012 && sent <= 1014 && (in[0] << 8 | in[1]) == 1002) {
        in[0] = (uint8_t)(sent >> 8);
        in[1] = (uint8_t)sent;
    }
    if (s->close_code)
        return;
    s->close_code = len >= 2 ? (in[0] << 8 | in[1]) : 1005;
    if (len > 2)
        set_close_reason(s, "%.*s", (int)(len - 2), (const char *)in + 2);
}

/* ws_rx_guard found a frame that breaks RFC 6455; none of it reached lws.
 * Called from inside lws's read: close from the next WRITEABLE. */
static void on_rx_violation(void *owner, int code, const char *reason)
{
    struct session *s = owner;
    if (!s->wsi || s->rx_violation)
        return;
    s->rx_violation = true;
    s->close_code = code;
    set_close_reason(s, "%s", reason);
    log_debug("client broke RFC 6455", "route", s->match.route->name, "peer", s->peer, "reason",
              reason);
    lws_callback_on_writable(s->wsi);
    /* A peer that is not reading must not hold the slot forever. */
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_SEND_TIMEOUT_S);
}

static void open_bridge(struct session *s)
{
    s->bridge = bridge_open(s);
    if (!s->bridge) {
        char reason_text[120];
        snprintf(reason_text, sizeof(reason_text), "route %s: backend unavailable",
                 s->match.route->name);
        session_close(s, CLOSE_INTERNAL_ERROR, reason_text);
    }
}

/* --- "auth": "http" ---------------------------------------------------------- */

void session_auth_wait(struct session *s, struct auth_wait *w)
{
    s->auth->wait = w; /* an "auth": "http" route's session has it */
    auth_wait_bind(w, s);
}

/* An established, held session learns the verdict. */
static void apply_auth_verdict(struct session *s, enum auth_verdict v, json_t *claims,
                               const char *reason)
{
    char text[200]; /* session_close() cuts it to a close frame's size */
    s->auth->early = false;
    if (v != AUTH_ALLOWED) {
        int code = v == AUTH_UNAUTHORIZED ? CLOSE_UNAUTHORIZED
                   : v == AUTH_FORBIDDEN  ? CLOSE_FORBIDDEN
                                          : CLOSE_TRY_AGAIN_LATER;
        snprintf(text, sizeof(text), "route %s: %s", s->match.route->name, reason);
        session_close(s, code, text);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_SEND_TIMEOUT_S);
        return;
    }
    if (claims != s->claims) {
        json_decref(s->claims);
        s->claims = json_incref(claims);
    }
    /* The templates' refusal rules, now that {auth.x} has values. */
    char why[200];
    struct backend_request req = {.match = &s->match,
                                  .claims = s->claims,
                                  .rules = s->rules,
                                  .targets = s->targets,
                                  .n_targets = s->n_targets};
    int status = bridge_check_request(&req, why, sizeof(why));
    if (status != 0) {
        session_close(s, status == 503 ? CLOSE_TRY_AGAIN_LATER : CLOSE_POLICY, why);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_SEND_TIMEOUT_S);
        return;
    }
    open_bridge(s);
    if (!s->close_pending)
        session_pause_reading(s, false);
}

void session_auth_answer(struct session *s, enum auth_verdict v, json_t *claims, const char *reason)
{
    struct session_auth *a = s->auth;
    auth_wait_cancel(a->wait);
    a->wait = NULL;
    if (!s->wsi || s->close_pending)
        return;
    if (s->established) {
        apply_auth_verdict(s, v, claims, reason);
        return;
    }
    /* Before ESTABLISHED (not seen with lws 4.1.6, but cheap to keep). */
    a->early = true;
    a->verdict = v;
    json_decref(s->claims);
    s->claims = json_incref(claims);
    free(a->reason);
    a->reason = strdup(reason ? reason : "");
}

int session_lws_event(struct session *s, struct lws *wsi, enum lws_callback_reasons reason,
                      void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        s->wsi = wsi;
        s->rx_guard =
            ws_rx_guard_register(lws_get_socket_fd(wsi), lws_get_ssl(wsi), s, on_rx_violation,
                                 s->deflate ? WS_FC_ALLOW_RSV1 | WS_FC_NO_TEXT_UTF8 : 0);
        if (!s->rx_guard)
            return -1;                /* out of memory: unchecked frames are not an option */
        s->rx_drop = s->rx_violation; /* reported at once: see ws_rx_guard.h */
        s->established = true;
        s->counted = true;
        s->metrics->connections_total++;
        s->metrics->connections_active++;
        log_debug("connection open", "route", s->match.route->name, "peer", s->peer, "client",
                  client_of(s), "subprotocol", s->subprotocol);
        s->last_rx_us = s->last_data_us = (uint64_t)lws_now_usecs();
        token_bucket_init(&s->rate, s->limits->max_messages_per_s, s->last_rx_us);
        if (s->limits->ping_interval_s > 0 || s->limits->idle_timeout_s > 0 || s->deflate)
            sweep_start(lws_get_context(wsi));
        if (s->match.route->auth_jwt && s->claims) {
            s->auth->expires_at_s = token_deadline(s, s->claims);
            arm_expiry(s);
        }
        if (s->auth && (s->auth->wait || s->auth->early)) {
            /* Held: nothing read, no backend, until the auth service answers. */
            session_pause_reading(s, true);
            if (s->auth->early)
                apply_auth_verdict(s, s->auth->verdict, s->claims, s->auth->reason);
            return 0;
        }
        open_bridge(s);
        return 0;

    case LWS_CALLBACK_RECEIVE:
        return on_receive(s, in, len);

    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writable(s);

    case LWS_CALLBACK_RECEIVE_PONG:
        s->last_rx_us = (uint64_t)lws_now_usecs();
        s->ping_outstanding = false;
        return 0;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        note_peer_close(s, (uint8_t *)in, len);
        return 0;

    case LWS_CALLBACK_CLOSED:
        if (s->auth)
            lws_sul_cancel(&s->auth->expiry_timer);
        ws_rx_guard_unregister(s->rx_guard);
        s->rx_guard = NULL;
        if (s->bridge) {
            bridge_client_gone(s->bridge);
            s->bridge = NULL;
        }
        s->wsi = NULL;
        return 0;

    default:
        return 0;
    }
}

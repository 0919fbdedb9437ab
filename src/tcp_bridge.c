/* tcp_bridge.c - the bridge of "tcp" routes (see bridge.h): one backend
 * connection per client, opened when the client
 * connects. Targets are tried in the order target_pool gives (round-robin,
 * healthy ones first); a failed or timed-out attempt moves on to the next.
 * Client messages are encoded by the route's framing on the way in; backend
 * bytes are cut into messages by a framing decoder on the way out. Each
 * direction is bounded by max_queue_bytes: past the bound the producing side
 * stops being read, and resumes once the consumer has drained half. */
#include "bridge_impl.h"

#include "backends.h"

#include "config.h"
#include "framing.h"
#include "gateway.h"
#include "log.h"
#include "map_watch.h"
#include "metrics.h"
#include "msg_buffer.h"
#include "msg_queue.h"
#include "route.h"
#include "rules.h"
#include "peer_addr.h"
#include "proxy_proto.h"
#include "session.h"
#include "target_pool.h"
#include "tcp_backend.h"
#include "tcp_bridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* With max_message_bytes 0 ("none"), messages that must be held whole
 * (length32 from the client, a backend line or frame) still stop here. */
#define REASSEMBLY_CAP_BYTES ((size_t)64 << 20)

struct tcp_bridge {
    struct bridge base;      /* first: bridge.c dispatches through it */
    struct session *session; /* the owner; outlives the bridge */
    const struct wsg_route *route;
    size_t queue_bound; /* max_queue_bytes for each direction */
    size_t max_message; /* for reassembly and the decoder */

    /* targets: borrowed from the session; order[] owned */
    const struct wsg_target *targets;
    size_t n_targets;
    size_t *order;    /* owned, or &order_one */
    size_t order_one; /* order[] of a single target: no allocation */
    size_t attempt;   /* index into order of the current attempt */
    size_t failed_attempts;

    struct tcp_backend *backend; /* NULL between attempts, after the end, or once let go */
    bool connected;
    /* in the list of attempts with a deadline (see connect deadlines) */
    struct tcp_bridge *deadline_prev, *deadline_next;
    bool has_deadline;
    uint64_t deadline_us;

    struct msg_queue pending;  /* client bytes waiting for a connection; owned */
    struct msg_buffer message; /* a length32 client message being reassembled */

    struct framing_decoder decoder; /* backend bytes -> messages; owns its tail */
};

static uint64_t now_ms(void) { return (uint64_t)lws_now_usecs() / 1000; }

/* "host:port" or "unix:/path" of the current attempt, for logs (cut if
 * long); formatted when needed rather than kept per connection. */
#define TARGET_NAME_BYTES 80
static const char *target_name(const struct tcp_bridge *b, char name[TARGET_NAME_BYTES])
{
    const struct wsg_target *t = &b->targets[b->order[b->attempt]];
    if (wsg_target_is_unix(t))
        snprintf(name, TARGET_NAME_BYTES, "unix:%s", t->host);
    else
        snprintf(name, TARGET_NAME_BYTES, "%s:%d", t->host, t->port);
    return name;
}

static void close_client(struct tcp_bridge *b, int code, const char *what)
{
    char reason[SESSION_CLOSE_REASON_MAX];
    snprintf(reason, sizeof(reason), "route %s: %s", b->route->name, what);
    session_close(b->session, code, reason);
}

static void deadline_clear(struct tcp_bridge *b);

/* Lets the backend go now (its queued bytes too): the client is closing
 * because of something the backend did. */
static void drop_backend(struct tcp_bridge *b)
{
    deadline_clear(b);
    if (b->backend)
        tcp_backend_abort(b->backend);
    b->backend = NULL;
}

static const struct tcp_backend_events backend_events;
static void connect_timed_out(struct tcp_bridge *b);

/* --- connect deadlines ------------------------------------------------------
 * One timer for every attempt in progress, not one each: lws 4.1.6 keeps
 * timers in a sorted list, so a timer per connection makes a connection
 * storm cost O(N^2). Attempts get the same timeout, so a FIFO is in
 * deadline order (a reload that shortens it only delays the new ones to the
 * old pace). The timer is armed for the head and re-armed when it fires. */

static void deadline_clear(struct tcp_bridge *b)
{
    if (!b->has_deadline)
        return;
    struct tcp_deadlines *d = &gateway_get()->tcp_deadlines;
    if (b->deadline_prev)
        b->deadline_prev->deadline_next = b->deadline_next;
    else
        d->head = b->deadline_next;
    if (b->deadline_next)
        b->deadline_next->deadline_prev = b->deadline_prev;
    else
        d->tail = b->deadline_prev;
    b->deadline_prev = b->deadline_next = NULL;
    b->has_deadline = false;
}

static void deadlines_due(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    struct tcp_deadlines *d = &gateway_get()->tcp_deadlines;
    uint64_t now = (uint64_t)lws_now_usecs();
    while (d->head && d->head->deadline_us <= now) {
        struct tcp_bridge *b = d->head;
        deadline_clear(b);
        connect_timed_out(b); /* may add a new attempt at the tail */
    }
    if (d->head)
        lws_sul_schedule(gateway_get()->context, 0, &d->timer, deadlines_due,
                         (lws_usec_t)(d->head->deadline_us - now));
}

static void deadline_set(struct tcp_bridge *b, struct lws_context *context, uint64_t timeout_us)
{
    struct tcp_deadlines *d = &gateway_get()->tcp_deadlines;
    bool was_empty = d->head == NULL;
    b->deadline_us = (uint64_t)lws_now_usecs() + timeout_us;
    b->deadline_prev = d->tail;
    b->deadline_next = NULL;
    if (d->tail)
        d->tail->deadline_next = b;
    else
        d->head = b;
    d->tail = b;
    b->has_deadline = true;
    d->timer_used = true;
    if (was_empty)
        lws_sul_schedule(context, 0, &d->timer, deadlines_due, (lws_usec_t)timeout_us);
}

/* Cancels the shared connect-deadline timer (before the lws context goes). */
static void tcp_bridge_shutdown(void)
{
    struct tcp_deadlines *d = &gateway_get()->tcp_deadlines;
    if (d->timer_used)
        lws_sul_cancel(&d->timer);
    d->timer_used = false;
}

/* Starts the attempt at order[b->attempt]; false if none are left. */
static bool start_attempt(struct tcp_bridge *b)
{
    if (b->attempt >= b->n_targets)
        return false;
    const struct wsg_target *t = &b->targets[b->order[b->attempt]];
    struct lws *wsi = session_wsi(b->session);
    b->backend = tcp_backend_connect(lws_get_context(wsi), lws_get_vhost(wsi), t->host, t->port,
                                     b->queue_bound, &backend_events, b);
    if (!b->backend)
        return false;
    int64_t timeout_ms = session_limits(b->session)->connect_timeout_ms;
    if (timeout_ms > 0)
        deadline_set(b, lws_get_context(wsi), (uint64_t)timeout_ms * 1000);
    return true;
}

/* The current attempt failed: remember it, then try the next target. */
static void attempt_failed(struct tcp_bridge *b, enum backend_error why, const char *detail)
{
    const struct wsg_target *t = &b->targets[b->order[b->attempt]];
    char name[TARGET_NAME_BYTES];
    target_name(b, name);
    target_pool_report(&gateway_get()->targets, t, false, now_ms());
    session_metrics(b->session)->backend_errors[why]++;
    log_warn(why == BACKEND_ERR_CONNECT_TIMEOUT ? "backend connect timed out"
                                                : "backend unreachable",
             "route", b->route->name, "target", name, "error", detail);
    b->failed_attempts++;
    b->attempt++;
    if (start_attempt(b))
        return;
    char what[110];
    if (b->failed_attempts > 1)
        snprintf(what, sizeof(what), "no backend reachable (%zu tried)", b->failed_attempts);
    else
        snprintf(what, sizeof(what), "backend %s %s", name,
                 why == BACKEND_ERR_CONNECT_TIMEOUT ? "timed out" : "unreachable");
    close_client(b, CLOSE_INTERNAL_ERROR, what);
}

static void connect_timed_out(struct tcp_bridge *b)
{
    if (b->connected || !b->backend)
        return;
    tcp_backend_abort(b->backend);
    b->backend = NULL;
    attempt_failed(b, BACKEND_ERR_CONNECT_TIMEOUT, "no connection within connect_timeout_ms");
}

/* --- client -> backend ---------------------------------------------------- */

/* Queues bytes for the backend (or for the connection still being made)
 * and pauses the client past the bound. Pieces go out as one stream. */
static void to_backend(struct tcp_bridge *b, const struct iovec *iov, int n)
{
    long queued;
    if (b->connected && b->backend)
        queued = tcp_backend_writev(b->backend, iov, n);
    else
        queued = msg_queue_appendv(&b->pending, iov, n, 0) == 0 ? (long)b->pending.bytes : -1;
    if (queued < 0) {
        drop_backend(b);
        close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    if ((size_t)queued > b->queue_bound)
        session_pause_reading(b->session, true);
}

/* A length32 frame: the 4-byte header, then the payload, in one write. */
static void length32_to_backend(struct tcp_bridge *b, const uint8_t *msg, size_t len)
{
    uint8_t header[4];
    framing_length32_header((uint32_t)len, header);
    struct iovec iov[2] = {{.iov_base = header, .iov_len = sizeof(header)},
                           {.iov_base = (void *)msg, .iov_len = len}};
    to_backend(b, iov, 2);
}

static void client_data(struct bridge *base, const uint8_t *data, size_t len, bool first,
                        bool final, bool text)
{
    struct tcp_bridge *b = (struct tcp_bridge *)base;
    (void)text; /* text frames were checked for UTF-8 by lws; bytes are bytes */
    if (!b->backend && !b->connected && b->attempt >= b->n_targets)
        return; /* every target failed: the client is being closed */
    if (b->connected && !b->backend)
        return; /* the backend is gone */

    struct iovec iov[2] = {{.iov_base = (void *)data, .iov_len = len},
                           {.iov_base = "\n", .iov_len = 1}};
    switch (b->route->framing) {
    case WSG_FRAMING_RAW:
        to_backend(b, iov, 1);
        break;
    case WSG_FRAMING_LINES:
        to_backend(b, iov, final ? 2 : 1);
        break;
    case WSG_FRAMING_LENGTH32:
        /* The header needs the whole length: a message that came in pieces
         * is held until its last one (a whole one goes straight out). */
        if (first && final) {
            if (len > b->max_message) {
                drop_backend(b);
                close_client(b, CLOSE_TOO_BIG, "message too big for length32 framing");
                return;
            }
            length32_to_backend(b, data, len);
            break;
        }
        if (first)
            b->message.len = 0;
        int rc = msg_buffer_append(&b->message, data, len, b->max_message);
        if (rc != 0) {
            drop_backend(b);
            if (rc == MSG_BUFFER_NO_MEMORY)
                close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
            else
                close_client(b, CLOSE_TOO_BIG, "message too big for length32 framing");
            return;
        }
        if (final) {
            length32_to_backend(b, b->message.data, b->message.len);
            msg_buffer_done(&b->message);
        }
        break;
    }
}

static void client_drained(struct bridge *base)
{
    struct tcp_bridge *b = (struct tcp_bridge *)base;
    if (b->backend && b->connected)
        tcp_backend_pause_reading(b->backend, false);
}

/* --- backend -> client ---------------------------------------------------- */

/* "send_proxy": the client as resolved and the address it connected to, in
 * a PROXY header ahead of every client byte. The client's port is known
 * only when the client is the peer (not a hop named by X-Forwarded-For). */
static long send_proxy_header(struct tcp_bridge *b)
{
    struct lws *wsi = session_wsi(b->session);
    char local[PEER_ADDR_TEXT];
    int local_port, peer_port;
    peer_addr_local(wsi, local, &local_port);
    {
        char peer[PEER_ADDR_TEXT];
        peer_addr_of(wsi, peer, &peer_port);
    }
    const char *client = session_client(b->session);
    int client_port = strcmp(client, session_peer(b->session)) == 0 ? peer_port : 0;
    struct proxy_proto_info info;
    proxy_proto_info_from_text(&info, client, client_port, local, local_port); /* else UNKNOWN */
    uint8_t header[PROXY_PROTO_WRITE_MAX];
    size_t n = proxy_proto_write(b->route->send_proxy, &info, header, sizeof(header));
    return tcp_backend_write(b->backend, header, n);
}

static void on_backend_connected(void *owner)
{
    struct tcp_bridge *b = owner;
    b->connected = true;
    deadline_clear(b);
    target_pool_report(&gateway_get()->targets, &b->targets[b->order[b->attempt]], true, now_ms());
    char name[TARGET_NAME_BYTES];
    log_debug("backend connected", "route", b->route->name, "target", target_name(b, name));
    if (b->route->send_proxy && send_proxy_header(b) < 0) {
        drop_backend(b);
        close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }

    /* What the client sent meanwhile goes first. */
    long queued = 0;
    for (struct msg_chunk *c = msg_queue_peek(&b->pending); c; c = c->next) {
        queued = tcp_backend_write(b->backend, msg_chunk_data(c), c->len);
        if (queued < 0) {
            drop_backend(b);
            close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
            return;
        }
    }
    msg_queue_clear(&b->pending);
    if ((size_t)queued <= b->queue_bound / 2)
        session_pause_reading(b->session, false);
}

static int emit_to_client(void *ctx, const uint8_t *msg, size_t len)
{
    struct tcp_bridge *b = ctx;
    long queued = session_send(b->session, msg, len, b->route->message == WSG_MESSAGE_TEXT);
    if (queued >= 0 && (size_t)queued > b->queue_bound && b->backend)
        tcp_backend_pause_reading(b->backend, true);
    return 0; /* the overshoot is at most one read: keep going */
}

static void on_backend_data(void *owner, const uint8_t *bytes, size_t len)
{
    struct tcp_bridge *b = owner;
    switch (framing_decode(&b->decoder, bytes, len, emit_to_client, b)) {
    case FRAMING_OK:
        return;
    case FRAMING_TOO_BIG:
        drop_backend(b);
        close_client(b, CLOSE_TOO_BIG, "backend message too big");
        return;
    case FRAMING_BAD_UTF8:
        drop_backend(b);
        close_client(b, CLOSE_INVALID_PAYLOAD, "backend sent invalid UTF-8");
        return;
    case FRAMING_NO_MEMORY:
        drop_backend(b);
        close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
}

static void on_backend_drained(void *owner)
{
    struct tcp_bridge *b = owner;
    session_pause_reading(b->session, false);
}

static void on_backend_ended(void *owner, enum tcp_backend_end how, const char *detail)
{
    struct tcp_bridge *b = owner;
    b->backend = NULL;
    deadline_clear(b);

    if (how == TCP_BACKEND_CONNECT_FAILED) {
        attempt_failed(b, BACKEND_ERR_CONNECT_REFUSED, detail);
        return;
    }
    if (how == TCP_BACKEND_RESET) {
        session_metrics(b->session)->backend_errors[BACKEND_ERR_RESET]++;
        char name[TARGET_NAME_BYTES];
        target_name(b, name);
        log_warn("backend failed", "route", b->route->name, "target", name, "error", detail);
        char what[110];
        snprintf(what, sizeof(what), "backend %s reset the connection", name);
        close_client(b, CLOSE_INTERNAL_ERROR, what);
        return;
    }
    /* An orderly close: what it sent is queued for the client already; a
     * partial line or frame it left behind can never complete. */
    close_client(b, CLOSE_NORMAL, "backend closed");
}

static const struct tcp_backend_events backend_events = {
    .connected = on_backend_connected,
    .data = on_backend_data,
    .drained = on_backend_drained,
    .ended = on_backend_ended,
};

/* --- lifetime ------------------------------------------------------------- */

static void client_gone(struct bridge *base);

static const struct bridge_ops tcp_bridge_ops = {
    .client_data = client_data,
    .client_drained = client_drained,
    .client_gone = client_gone,
};

static struct bridge *tcp_bridge_open(struct session *s)
{
    const struct route_match *m = session_match(s);
    const struct wsg_limits *limits = session_limits(s);
    size_t n_targets = 0;
    const struct wsg_target *targets = session_targets(s, &n_targets);
    if (m->route->type != WSG_ROUTE_TCP || n_targets == 0)
        return NULL;

    struct tcp_bridge *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->order = n_targets == 1 ? &b->order_one : calloc(n_targets, sizeof(*b->order));
    if (!b->order) {
        free(b);
        return NULL;
    }
    b->base.ops = &tcp_bridge_ops;
    b->session = s;
    b->route = m->route;
    b->queue_bound =
        limits->max_queue_bytes > 0 ? (size_t)limits->max_queue_bytes : (size_t)1 << 20;
    b->max_message =
        limits->max_message_bytes > 0 && (size_t)limits->max_message_bytes < REASSEMBLY_CAP_BYTES
            ? (size_t)limits->max_message_bytes
            : REASSEMBLY_CAP_BYTES;
    b->targets = targets;
    b->n_targets = target_pool_order(&gateway_get()->targets, m->route->name, targets, n_targets,
                                     now_ms(), b->order);
    framing_decoder_init(&b->decoder, m->route->framing, m->route->message == WSG_MESSAGE_TEXT,
                         m->route->framing == WSG_FRAMING_RAW ? 0 : b->max_message);
    if (!start_attempt(b)) {
        client_gone(&b->base);
        return NULL;
    }
    return &b->base;
}

static void client_gone(struct bridge *base)
{
    struct tcp_bridge *b = (struct tcp_bridge *)base;
    deadline_clear(b);
    if (b->backend) {
        /* A connection still being made takes the client's bytes with it. */
        for (struct msg_chunk *c = msg_queue_peek(&b->pending); c; c = c->next)
            if (tcp_backend_write(b->backend, msg_chunk_data(c), c->len) < 0)
                break;
        tcp_backend_close(b->backend);
    }
    msg_queue_clear(&b->pending);
    framing_decoder_free(&b->decoder);
    msg_buffer_free(&b->message);
    if (b->order != &b->order_one)
        free(b->order);
    free(b);
}

/* A target_map route's targets for this request: the key template expanded
 * from the request, looked up in the current map. The reason never repeats
 * the key: it is often a secret token. */
static int tcp_check_request(struct backend_request *req, char *reason, size_t reason_len)
{
    const struct route_match *m = req->match;
    if (!m->route->target_map_file)
        return 0;
    char key[512], err[200];
    if (route_expand(m->route->target_map_key, m, NULL, NULL, key, sizeof(key), err, sizeof(err)) <
        0) {
        snprintf(reason, reason_len, "route %s: %s", m->route->name, err);
        return 400;
    }
    req->targets = map_watch_lookup(req->rules->maps, m->route_index, key, &req->n_targets);
    if (!req->targets) {
        snprintf(reason, reason_len, "route %s: no target for this key", m->route->name);
        return 404;
    }
    return 0;
}

static bool tcp_drained(void) { return tcp_backend_count() == 0; }

static const struct lws_protocols tcp_backend_protocol = {
    .name = TCP_BACKEND_PROTOCOL_NAME,
    .callback = tcp_backend_lws_callback,
};

const struct backend_type tcp_backend_type = {
    .name = "tcp",
    .route_type = WSG_ROUTE_TCP,
    .check_request = tcp_check_request,
    .open = tcp_bridge_open,
    .protocol = &tcp_backend_protocol,
    .owns = tcp_backend_is,
    .drained = tcp_drained,
    .shutdown = tcp_bridge_shutdown,
};

/* bridge.c - binds a session to its backend; see bridge.h.
 *
 * For "tcp" routes: one backend connection per client, opened when the client
 * connects. Bytes flow both ways with each direction bounded by
 * max_queue_bytes: past the bound the producing side stops being read, and it
 * is resumed when the consumer has drained half of it. */
#include "bridge.h"

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "tcp_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bridge {
    struct session *session; /* the owner; outlives the bridge */
    const struct wsg_route *route;
    struct tcp_backend *backend; /* NULL once it ended or was let go */
    size_t queue_bound; /* max_queue_bytes for each direction */
    bool backend_connected;
    char target[80]; /* "host:port", for logs and close reasons (cut if long) */
    lws_sorted_usec_list_t connect_timer;
};

static void close_client(struct bridge *b, int code, const char *what)
{
    char reason[123]; /* a close frame's reason holds at most 123 bytes */
    snprintf(reason, sizeof(reason), "route %s: %s", b->route->name, what);
    session_close(b->session, code, reason);
}

/* --- backend events ---------------------------------------------------- */

static void on_backend_connected(void *owner)
{
    struct bridge *b = owner;
    b->backend_connected = true;
    lws_sul_cancel(&b->connect_timer);
    log_debug("backend connected", "route", b->route->name, "target", b->target);
}

static void on_backend_data(void *owner, const uint8_t *bytes, size_t len)
{
    struct bridge *b = owner;
    bool text = b->route->message == WSG_MESSAGE_TEXT;
    long queued = session_send(b->session, bytes, len, text);
    if (queued < 0)
        return; /* the client is closing: nobody is left to read this */
    if ((size_t)queued > b->queue_bound)
        tcp_backend_pause_reading(b->backend, true);
}

static void on_backend_drained(void *owner)
{
    struct bridge *b = owner;
    session_pause_reading(b->session, false);
}

static void on_backend_ended(void *owner, enum tcp_backend_end how, const char *detail)
{
    struct bridge *b = owner;
    struct route_metrics *m = session_metrics(b->session);
    char what[110];
    b->backend = NULL;
    lws_sul_cancel(&b->connect_timer);

    switch (how) {
    case TCP_BACKEND_CONNECT_FAILED:
        m->backend_errors[BACKEND_ERR_CONNECT_REFUSED]++;
        log_warn("backend unreachable", "route", b->route->name, "target", b->target,
                 "error", detail);
        snprintf(what, sizeof(what), "backend %s unreachable", b->target);
        close_client(b, CLOSE_INTERNAL_ERROR, what);
        break;
    case TCP_BACKEND_RESET:
        m->backend_errors[BACKEND_ERR_RESET]++;
        log_warn("backend failed", "route", b->route->name, "target", b->target, "error",
                 detail);
        snprintf(what, sizeof(what), "backend %s failed", b->target);
        close_client(b, CLOSE_INTERNAL_ERROR, what);
        break;
    case TCP_BACKEND_CLOSED:
        close_client(b, CLOSE_NORMAL, "backend closed");
        break;
    }
}

static const struct tcp_backend_events backend_events = {
    .connected = on_backend_connected,
    .data = on_backend_data,
    .drained = on_backend_drained,
    .ended = on_backend_ended,
};

static void on_connect_timeout(lws_sorted_usec_list_t *sul)
{
    struct bridge *b = lws_container_of(sul, struct bridge, connect_timer);
    if (b->backend_connected || !b->backend)
        return;
    tcp_backend_abort(b->backend);
    b->backend = NULL;
    session_metrics(b->session)->backend_errors[BACKEND_ERR_CONNECT_TIMEOUT]++;
    log_warn("backend connect timed out", "route", b->route->name, "target", b->target);
    char what[110];
    snprintf(what, sizeof(what), "backend %s timed out", b->target);
    close_client(b, CLOSE_INTERNAL_ERROR, what);
}

/* --- session side ------------------------------------------------------ */

struct bridge *bridge_open(struct session *s)
{
    const struct route_match *m = session_match(s);
    const struct wsg_limits *limits = session_limits(s);
    if (m->route->type != WSG_ROUTE_TCP || m->route->n_targets == 0)
        return NULL; /* mqtt and target_map routes arrive with later work */

    struct bridge *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->session = s;
    b->route = m->route;
    b->queue_bound = limits->max_queue_bytes > 0 ? (size_t)limits->max_queue_bytes
                                                 : (size_t)1 << 20;
    const struct wsg_target *t = &m->route->targets[0];
    snprintf(b->target, sizeof(b->target), "%s:%d", t->host, t->port);

    struct lws *wsi = session_wsi(s);
    b->backend = tcp_backend_connect(lws_get_context(wsi), lws_get_vhost(wsi), t->host, t->port,
                                     b->queue_bound, &backend_events, b);
    if (!b->backend) {
        free(b);
        return NULL;
    }
    if (limits->connect_timeout_ms > 0)
        lws_sul_schedule(lws_get_context(wsi), 0, &b->connect_timer, on_connect_timeout,
                         (lws_usec_t)limits->connect_timeout_ms * 1000);
    return b;
}

void bridge_client_data(struct bridge *b, const uint8_t *data, size_t len, bool first,
                        bool final, bool text)
{
    (void)first;
    (void)final;
    (void)text;
    if (!b->backend || len == 0)
        return;
    long queued = tcp_backend_write(b->backend, data, len);
    if (queued < 0) {
        close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    if ((size_t)queued > b->queue_bound)
        session_pause_reading(b->session, true);
}

void bridge_client_drained(struct bridge *b)
{
    if (b->backend)
        tcp_backend_pause_reading(b->backend, false);
}

void bridge_client_gone(struct bridge *b)
{
    lws_sul_cancel(&b->connect_timer);
    if (b->backend)
        tcp_backend_close(b->backend);
    free(b);
}

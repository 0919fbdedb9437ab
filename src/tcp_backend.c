/* tcp_backend.c - backend TCP sockets as lws RAW clients; see tcp_backend.h.
 *
 * A struct tcp_backend is created by tcp_backend_connect() and freed here,
 * once lws reports the socket gone (RAW_CLOSE or CLIENT_CONNECTION_ERROR,
 * which lws makes mutually exclusive). The owner may detach earlier
 * (tcp_backend_close / _abort); from then on no event reaches it. */
#include "tcp_backend.h"

#include "gateway.h"
#include "msg_queue.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define BACKEND_TAG 0x7c9bacedu

struct tcp_backend {
    uint32_t tag;    /* BACKEND_TAG: lws's opaque pointer can be told apart */
    struct lws *wsi; /* NULL until lws fills it, and again once it is gone */
    const struct tcp_backend_events *events;
    void *owner;          /* NULL once detached */
    struct msg_queue out; /* bytes for the backend; owned */
    size_t queue_bound;
    bool connected;
    bool closing; /* detached by tcp_backend_close: flush, then close */
    bool paused;
    bool in_connect;                 /* inside lws_client_connect_via_info() */
    bool failed;                     /* the connect failed inside that call: report it later */
    bool failed_midstream;           /* a write error or a reset by the peer: 1011, not 1000 */
    lws_sorted_usec_list_t deferred; /* reports a failure from inside connect */
    char *detail;                    /* owned: why it ended; NULL until then (see set_detail) */
};

bool tcp_backend_is(const void *opaque)
{
    return opaque && *(const uint32_t *)opaque == BACKEND_TAG;
}

size_t tcp_backend_count(void) { return gateway_get()->tcp_backends.live; }

/* Only a backend that ends has a detail, so it is not kept per connection. */
static void set_detail(struct tcp_backend *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_detail(struct tcp_backend *b, const char *fmt, ...)
{
    char text[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    free(b->detail);
    b->detail = strdup(text);
}

static void backend_free(struct tcp_backend *b)
{
    gateway_get()->tcp_backends.live--;
    lws_sul_cancel(&b->deferred);
    msg_queue_clear(&b->out);
    free(b->detail);
    free(b);
}

/* The socket is gone: tell the owner (if still attached) and free. */
static void backend_ended(struct tcp_backend *b, enum tcp_backend_end how)
{
    b->wsi = NULL;
    if (b->owner)
        b->events->ended(b->owner, how, b->detail ? b->detail : "connection failed");
    backend_free(b);
}

static void deferred_failure(lws_sorted_usec_list_t *sul)
{
    struct tcp_backend *b = lws_container_of(sul, struct tcp_backend, deferred);
    backend_ended(b, TCP_BACKEND_CONNECT_FAILED);
}

struct tcp_backend *tcp_backend_connect(struct lws_context *context, struct lws_vhost *vhost,
                                        const char *host, int port, size_t queue_bound,
                                        const struct tcp_backend_events *events, void *owner)
{
    struct tcp_backend *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->tag = BACKEND_TAG;
    b->events = events;
    b->owner = owner;
    b->queue_bound = queue_bound;
    gateway_get()->tcp_backends.live++;

    struct lws_client_connect_info info;
    memset(&info, 0, sizeof(info));
    info.context = context;
    info.vhost = vhost;
    /* lws 4.1.6 connects to a unix socket for an address "+/path" (its
     * copy of the address lives as long as the connection). */
    char unix_address[1 + 108];
    if (port == 0)
        snprintf(unix_address, sizeof(unix_address), "+%s", host);
    info.address = port == 0 ? unix_address : host;
    info.port = port;
    /* No host or origin: a RAW connection sends no headers, and lws keeps a
     * copy of each (and another of host) for the connection's lifetime. */
    info.path = "";
    info.method = "RAW";
    info.local_protocol_name = TCP_BACKEND_PROTOCOL_NAME;
    info.opaque_user_data = b;
    info.pwsi = &b->wsi;

    b->in_connect = true;
    struct lws *wsi = lws_client_connect_via_info(&info);
    b->in_connect = false;
    if (!wsi && !b->failed) {
        /* lws gave up without telling the protocol (e.g. no memory). */
        set_detail(b, "could not start connecting");
        b->failed = true;
    }
    if (b->failed) {
        /* The owner hears of the failure from the loop, never re-entrantly. */
        b->wsi = NULL;
        lws_sul_schedule(context, 0, &b->deferred, deferred_failure, 1);
    }
    return b;
}

long tcp_backend_writev(struct tcp_backend *b, const struct iovec *iov, int n)
{
    size_t before = b->out.bytes;
    if (msg_queue_appendv(&b->out, iov, n, 0) != 0)
        return -1;
    if (b->out.bytes != before && b->wsi && b->connected)
        lws_callback_on_writable(b->wsi);
    return (long)b->out.bytes;
}

long tcp_backend_write(struct tcp_backend *b, const void *bytes, size_t len)
{
    struct iovec iov = {.iov_base = (void *)bytes, .iov_len = len};
    return tcp_backend_writev(b, &iov, 1);
}

void tcp_backend_pause_reading(struct tcp_backend *b, bool paused)
{
    if (b->paused == paused)
        return;
    b->paused = paused;
    if (b->wsi && b->connected)
        lws_rx_flow_control(b->wsi, paused ? 0 : 1);
}

void tcp_backend_close(struct tcp_backend *b)
{
    b->owner = NULL;
    b->closing = true;
    if (!b->wsi || !b->connected)
        return; /* a pending failure frees b; a connect in progress flushes on
                   RAW_CONNECTED (lws's own connect timeout bounds the wait) */
    /* Reading on: the peer's bytes are dropped, but an EOF or error is seen. */
    if (b->paused)
        lws_rx_flow_control(b->wsi, 1);
    lws_callback_on_writable(b->wsi);
}

void tcp_backend_abort(struct tcp_backend *b)
{
    b->owner = NULL;
    b->closing = true;
    msg_queue_clear(&b->out);
    if (b->wsi)
        lws_set_timeout(b->wsi, PENDING_TIMEOUT_KILLED_BY_PROXY_CLIENT_CLOSE, LWS_TO_KILL_ASYNC);
}

/* lws reports an orderly EOF and a reset alike (RAW_CLOSE). The socket is
 * still open then: after the peer's FIN it sits in CLOSE_WAIT, after an RST
 * the kernel has moved it to CLOSE. */
static bool peer_reset(struct lws *wsi)
{
    struct tcp_info info;
    socklen_t len = sizeof(info);
    lws_sockfd_type fd = lws_get_socket_fd(wsi);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
        return false;
    return info.tcpi_state == TCP_CLOSE;
}

/* Writes with send() rather than lws_write(): what the socket does not take
 * stays in our queue, so lws never holds a partly sent buffer for a backend
 * (see sock_room.h for why that matters). */
static int on_writable(struct tcp_backend *b, struct lws *wsi)
{
    struct msg_chunk *c = msg_queue_peek(&b->out);
    if (c) {
        ssize_t n = send(lws_get_socket_fd(wsi), msg_chunk_data(c) + c->sent, c->len - c->sent,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            set_detail(b, "write to backend failed: %s", strerror(errno));
            b->failed_midstream = true;
            return -1;
        }
        if (n > 0) {
            bool was_above = b->out.bytes > b->queue_bound / 2;
            msg_queue_consume(&b->out, (size_t)n);
            if (was_above && b->out.bytes <= b->queue_bound / 2 && b->owner)
                b->events->drained(b->owner);
        }
    }
    if (!msg_queue_empty(&b->out)) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    return b->closing ? -1 : 0;
}

int tcp_backend_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len)
{
    struct tcp_backend *b = lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (!b)
            return 0;
        lws_set_opaque_user_data(wsi, NULL);
        set_detail(b, "%s", in && len ? (const char *)in : "connection failed");
        if (b->in_connect) {
            b->failed = true; /* tcp_backend_connect reports it from the loop */
            return 0;
        }
        backend_ended(b, TCP_BACKEND_CONNECT_FAILED);
        return 0;

    case LWS_CALLBACK_RAW_CONNECTED:
        if (!b)
            return -1;
        b->wsi = wsi;
        b->connected = true;
        if (b->paused)
            lws_rx_flow_control(wsi, 0);
        if (b->owner)
            b->events->connected(b->owner);
        if (!msg_queue_empty(&b->out) || b->closing)
            lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_RAW_RX:
        if (!b)
            return -1;
        if (b->owner && len)
            b->events->data(b->owner, in, len);
        return 0;

    case LWS_CALLBACK_RAW_WRITEABLE:
        if (!b)
            return -1;
        return on_writable(b, wsi);

    case LWS_CALLBACK_RAW_CLOSE:
        if (!b)
            return 0;
        lws_set_opaque_user_data(wsi, NULL);
        if (!b->failed_midstream && b->connected && peer_reset(wsi)) {
            b->failed_midstream = true;
            set_detail(b, "connection reset by backend");
        }
        if (!b->detail)
            set_detail(b, "backend closed the connection");
        backend_ended(b, b->failed_midstream ? TCP_BACKEND_RESET : TCP_BACKEND_CLOSED);
        return 0;

    default:
        return 0;
    }
}

/* tcp_backend.h - one backend TCP connection on the libwebsockets loop (an lws
 * RAW client socket): connect, a bounded write queue, read pausing, and a
 * flush-then-close. It knows nothing of WebSockets or routes: its owner (the
 * bridge) hears about it through the events below. */
#ifndef WSGATE_TCP_BACKEND_H
#define WSGATE_TCP_BACKEND_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* The lws protocol name of backend sockets; ':' keeps it out of reach of a
 * client's Sec-WebSocket-Protocol offer (it is not a valid token). */
#define TCP_BACKEND_PROTOCOL_NAME "wsgate:tcp-backend"

enum tcp_backend_end {
    TCP_BACKEND_CONNECT_FAILED, /* refused, unreachable, name not resolved */
    TCP_BACKEND_CLOSED,         /* the peer closed (EOF) after connecting */
    TCP_BACKEND_RESET,          /* a read or write error after connecting */
};

struct tcp_backend_events {
    void (*connected)(void *owner);
    /* Bytes read from the backend. The backend keeps reading until paused. */
    void (*data)(void *owner, const uint8_t *bytes, size_t len);
    /* The write queue fell to or below half of its bound (resume the producer). */
    void (*drained)(void *owner);
    /* The connection is gone; the owner must drop its pointer. `detail` is a
     * short text for logs and close reasons ("connection refused"). */
    void (*ended)(void *owner, enum tcp_backend_end how, const char *detail);
};

struct tcp_backend;

/* Starts connecting to host:port, or to the unix socket at path `host` if
 * port is 0; events arrive later on the loop, never from inside this
 * call. Returns NULL only on allocation failure. `queue_bound` is the
 * max_queue_bytes the owner promises to respect (for `drained`). Port 0:
 * `host` is the path of a unix socket. */
struct tcp_backend *tcp_backend_connect(struct lws_context *context, struct lws_vhost *vhost,
                                        const char *host, int port, size_t queue_bound,
                                        const struct tcp_backend_events *events, void *owner);

/* Queues bytes for the backend; they are sent when its socket is writable
 * (several writes coalesce into one send). Returns the bytes now queued, or
 * -1 on allocation failure. The caller pauses its producer past the bound.
 * _writev queues several pieces as one stream (a header and its payload). */
long tcp_backend_write(struct tcp_backend *b, const void *bytes, size_t len);
long tcp_backend_writev(struct tcp_backend *b, const struct iovec *iov, int n);

/* Stops or resumes reading from the backend (backpressure from the client). */
void tcp_backend_pause_reading(struct tcp_backend *b, bool paused);

/* Detaches the owner (no more events), writes what is queued, then closes.
 * The owner must not use `b` afterwards. */
void tcp_backend_close(struct tcp_backend *b);

/* Detaches the owner and drops the connection now, queued bytes and all
 * (used when connecting takes too long). */
void tcp_backend_abort(struct tcp_backend *b);

/* The backend sockets of the process (struct gateway's `tcp_backends`). */
struct tcp_backend_sockets {
    size_t live; /* from tcp_backend_connect() until lws reports the socket gone */
};

/* Backend connections not yet fully closed (flushing ones included). */
size_t tcp_backend_count(void);

/* The lws callback of the backend protocol (registered by the server). */
/* True if an lws opaque pointer is a tcp_backend (lws may hand a backend
 * connection that failed at socket() to the vhost's first protocol). */
bool tcp_backend_is(const void *opaque);

int tcp_backend_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len);

#endif

/* listener.h - a listening socket wsgate binds itself, with SO_REUSEPORT,
 * for worker processes sharing a port.
 *
 * Why not lws's own listener: libwebsockets 4.1.6 sets SO_REUSEPORT only
 * when it is built for several service threads (LWS_MAX_SMP > 1); Debian's
 * is built with one, so a second worker's bind would fail. The socket is
 * watched on the lws loop as a raw descriptor; each accepted connection is
 * handed to lws (lws_adopt_socket_vhost) and from there is served exactly
 * like one lws accepted itself: HTTP, the WebSocket handshake, TLS. */
#ifndef WSGATE_LISTENER_H
#define WSGATE_LISTENER_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>

struct listener;

/* Says whether a connection accepted now may be kept (the descriptor
 * reserve, see server.c): 0 keep, 1 hang up. */
typedef int (*listener_admit_fn)(void *ctx, int fd);

/* A nonblocking socket listening on host:port ("0.0.0.0" and "*": every IPv4
 * address), with SO_REUSEPORT if share_port. The descriptor, or -1 with the
 * reason in err. */
int listener_bind(const char *host, int port, bool share_port, char *err, size_t err_len);

/* Binds host:port (SO_REUSEADDR + SO_REUSEPORT) and watches it on vh's loop;
 * connections go to vh. The listener belongs to lws from then on and is
 * freed when the context is destroyed. 0, or -1 with the reason in err. */
int listener_open(struct lws_vhost *vh, const char *host, int port, listener_admit_fn admit,
                  void *admit_ctx, char *err, size_t err_len);

/* Whether lws opaque user data is a listener (its raw descriptor's events
 * come to the vhost's first protocol). */
bool listener_is(const void *opaque);

/* The lws callback for a listener's descriptor. */
int listener_lws_event(struct lws *wsi, enum lws_callback_reasons reason);

#endif

/* listener.h - a listening socket wsgate binds itself: with SO_REUSEPORT
 * for worker processes sharing a port, on a unix socket, or where each
 * connection starts with a PROXY protocol header.
 *
 * Why not lws's own listener: libwebsockets 4.1.6 sets SO_REUSEPORT only
 * when it is built for several service threads (LWS_MAX_SMP > 1); Debian's
 * is built with one, so a second worker's bind would fail. A PROXY header
 * must be read before lws parses anything (before TLS too), and a unix
 * socket file needs its stale predecessor replaced, its mode set and its
 * removal at exit. The socket is watched on the lws loop as a raw
 * descriptor; each accepted connection is handed to lws
 * (lws_adopt_socket_vhost; after its PROXY header, see proxy_accept.h) and
 * from there is served exactly like one lws accepted itself: HTTP, the
 * WebSocket handshake, TLS. */
#ifndef WSGATE_LISTENER_H
#define WSGATE_LISTENER_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct listener;

/* Says whether a connection accepted now may be kept (the descriptor
 * reserve, see server.c): 0 keep, 1 hang up. */
typedef int (*listener_admit_fn)(void *ctx, int fd);

/* A nonblocking socket listening on host:port ("0.0.0.0" and "*": every IPv4
 * address), with SO_REUSEPORT if share_port. The descriptor, or -1 with the
 * reason in err. */
int listener_bind(const char *host, int port, bool share_port, char *err, size_t err_len);

/* A nonblocking unix socket listening at path: a stale socket file there
 * (nobody listening) is replaced; a live one or another file is an error.
 * mode > 0 is applied with chmod. The descriptor, or -1 with the reason. */
int listener_bind_unix(const char *path, int mode, char *err, size_t err_len);

/* Binds what cfg says (host:port with SO_REUSEADDR, and SO_REUSEPORT if
 * share_port; or a unix socket) and watches it on vh's loop; connections
 * go to vh, after their PROXY header if cfg->proxy_protocol. The listener
 * belongs to lws from then on and is freed (its unix socket file removed)
 * when the context is destroyed. 0, or -1 with the reason in err. */
int listener_open(struct lws_vhost *vh, const struct wsg_listen *cfg, bool share_port,
                  listener_admit_fn admit, void *admit_ctx, char *err, size_t err_len);

/* Whether lws opaque user data is a listener or a connection still reading
 * its PROXY header (their raw descriptors' events come to the vhost's first
 * protocol). */
bool listener_is(const void *opaque);

/* The lws callback for those descriptors. */
int listener_lws_event(struct lws *wsi, enum lws_callback_reasons reason);

#endif

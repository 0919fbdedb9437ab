/* proxy_accept.h - connections of a proxy_protocol listener before lws sees
 * them: the PROXY header (v1 or v2) is read on the loop, never blocking it,
 * within PROXY_ACCEPT_DEADLINE_S; then the socket goes to lws as if just
 * accepted, with the header's addresses recorded (peer_addr.h). Anything
 * else closes the socket without a byte written and counts in
 * wsgate_proxy_protocol_errors_total (a connection that closes before
 * sending anything, as load balancers' TCP health checks do, is not
 * counted).
 *
 * The socket is watched through a duplicate descriptor adopted as a raw
 * file (lws owns and closes that one); the header is read with MSG_PEEK and
 * only its own bytes are consumed, so what follows it (an HTTP request, a
 * TLS ClientHello) is still in the socket when lws takes it over. */
#ifndef WSGATE_PROXY_ACCEPT_H
#define WSGATE_PROXY_ACCEPT_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>

#define PROXY_ACCEPT_DEADLINE_S 5

struct proxy_accept_pending;

/* The connections waiting for their header (struct gateway's
 * `proxy_accept`). Zeroed = none; each from accept until its watcher closes;
 * one deadline timer for all (every deadline is as long, so a FIFO is in
 * deadline order). */
struct proxy_accept_fifo {
    size_t n_pending;                         /* watchers not yet closed */
    struct proxy_accept_pending *head, *tail; /* still within their deadline */
    lws_sorted_usec_list_t timer;
    bool timer_used; /* scheduled at least once */
};

/* Takes fd (accepted, nonblocking; owned from here on) for vh. */
void proxy_accept_start(struct lws_vhost *vh, int fd);

/* Whether lws opaque user data is a pending connection (its watcher's
 * events come to the vhost's first protocol), and the callback for them. */
bool proxy_accept_is(const void *opaque);
int proxy_accept_lws_event(struct lws *wsi, enum lws_callback_reasons reason);

/* Connections waiting for their header now. */
size_t proxy_accept_pending(void);

#endif

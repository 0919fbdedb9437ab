/* handshake.h - the pure decisions of a WebSocket handshake: which
 * subprotocol to select from the client's offer, and whether an Origin is
 * allowed. No lws here; server.c applies the answers. */
#ifndef WSGATE_HANDSHAKE_H
#define WSGATE_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

struct wsg_config;
struct wsg_route;

enum subprotocol_result {
    SUBPROTOCOL_NONE = 0, /* client offered none; connect without one */
    SUBPROTOCOL_SELECTED, /* `out` holds the chosen name */
    SUBPROTOCOL_REFUSED,  /* -> HTTP 400 with `reason` */
};

/* Chooses the route's most preferred subprotocol among those offered in a
 * Sec-WebSocket-Protocol header value ("a, b, c"; NULL or "" = none offered).
 * Names the route does not list are never chosen. Entries starting with
 * "bearer." carry tokens and are never chosen or echoed in `reason`. */
enum subprotocol_result handshake_choose_subprotocol(const struct wsg_route *route,
                                                     const char *offered, char *out, size_t out_len,
                                                     char *reason, size_t reason_len);

/* True if `origin` (the Origin header, NULL if absent) may connect: always
 * when the config has no "origins"; else only an exact (case-insensitive)
 * match. A request without Origin is allowed: only browsers send one, and the
 * check exists to stop other sites' pages (cross-site WebSocket hijacking);
 * a non-browser client could send any Origin it likes anyway. */
bool handshake_origin_allowed(const struct wsg_config *cfg, const char *origin);

#endif

/* bridge.h - binds a client session to its backend, by the route's type, and
 * moves messages between them with backpressure both ways:
 * session -> bridge -> backend, and backend -> bridge -> session. */
#ifndef WSGATE_BRIDGE_H
#define WSGATE_BRIDGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct session;
struct bridge;
struct route_match;

/* Checks, before the upgrade, what the route's backend side needs from the
 * request (e.g. query parameters its topics name). 0, or an HTTP status
 * with a one-line reason. */
int bridge_check_request(const struct route_match *m, json_t *claims, char *reason,
                         size_t reason_len);

/* Opens the backend side for a newly established session. Returns NULL if
 * that cannot even start (the session then closes with 1011). The session
 * owns the bridge and ends it with bridge_client_gone(). */
struct bridge *bridge_open(struct session *s);

/* A piece of a client message (`first`/`final` mark message boundaries). */
void bridge_client_data(struct bridge *b, const uint8_t *data, size_t len, bool first,
                        bool final, bool text);

/* The session's queue to the client fell to half its bound: resume reading. */
void bridge_client_drained(struct bridge *b);

/* The client is gone or closing: flush what it sent to the backend, close
 * the backend, free the bridge. */
void bridge_client_gone(struct bridge *b);

/* Cancels the bridges' shared timers (before the lws context goes). */
void bridge_shutdown(void);

#endif

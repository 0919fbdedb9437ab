/* bridge.h - binds a client session to its backend, by the route's type, and
 * moves messages between them with backpressure both ways:
 * session -> bridge -> backend, and backend -> bridge -> session. */
#ifndef WSGATE_BRIDGE_H
#define WSGATE_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct session;
struct bridge;
struct backend_request;

/* Checks, before the upgrade, what the route's backend type needs from the
 * request (e.g. query parameters its topics name, a target map's entry).
 * 0, or an HTTP status with a one-line reason. */
int bridge_check_request(struct backend_request *req, char *reason, size_t reason_len);

/* Opens the backend side for a newly established session, by its route's
 * backend type. Returns NULL if that cannot even start (the session then
 * closes with 1011). The session owns the bridge and ends it with
 * bridge_client_gone(). */
struct bridge *bridge_open(struct session *s);

/* A piece of a client message (`first`/`final` mark message boundaries). */
void bridge_client_data(struct bridge *b, const uint8_t *data, size_t len, bool first, bool final,
                        bool text);

/* The session's queue to the client fell to half its bound: resume reading. */
void bridge_client_drained(struct bridge *b);

/* The client is gone or closing: flush what it sent to the backend, close
 * the backend, free the bridge. */
void bridge_client_gone(struct bridge *b);

#endif

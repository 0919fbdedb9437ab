/* backend_type.h - what a kind of backend (a route "type") gives the gateway,
 * and the registry the rest of the gateway calls through.
 *
 * A backend type is one table of operations, the way redis registers its
 * ConnectionType and libwebsockets its lws_role_ops: per connection it
 * checks a request before the upgrade and opens the backend side of a
 * session; per process it starts, reloads, serves the event loop, reports
 * readiness, drains and stops. server.c, main.c and http_endpoints.c know
 * only this table; tcp_bridge.c and mqtt_bridge.c each fill one, and
 * backends.c registers them. Every hook but `name` and `open` may be NULL.
 *
 * The registry is pure (it only calls what was registered) and is a value
 * the caller owns: the gateway keeps one in its struct gateway, and a unit
 * test makes its own and registers a backend type of its own in it. */
#ifndef WSGATE_BACKEND_TYPE_H
#define WSGATE_BACKEND_TYPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct bridge;
struct lws_context;
struct lws_protocols;
struct route_match;
struct rules;
struct session;

/* A handshake as a backend type sees it before the upgrade. */
struct backend_request {
    const struct route_match *match;
    json_t *claims; /* verified token claims, or NULL */
    /* "auth": "http" before the service answered: {auth.<claim>} has no value
     * yet and is not checked (the check runs again with the answer's claims). */
    bool claims_later;
    const struct rules *rules; /* the rules in force (their config and target maps) */
    /* In and out: the backend addresses this connection may use. Preset to
     * the route's own; a type may point them elsewhere (a target map's
     * entry), at memory that lives at least as long as `rules`. */
    const struct wsg_target *targets;
    size_t n_targets;
};

struct backend_type {
    const char *name;               /* the route "type" it serves, e.g. "tcp" */
    enum wsg_route_type route_type; /* the same, as config.h parses it */

    /* --- per connection ------------------------------------------------- */
    /* Before the upgrade: 0, or an HTTP status with a one-line reason that
     * never repeats a secret (a token, a map key). */
    int (*check_request)(struct backend_request *req, char *reason, size_t reason_len);
    /* After the upgrade: the backend side of `s`, or NULL when it cannot even
     * start (the session then closes with 1011). The session owns it and
     * ends it with bridge_client_gone(). */
    struct bridge *(*open)(struct session *s);

    /* --- the event loop --------------------------------------------------- */
    /* An lws protocol for the type's own backend connections (added to every
     * vhost), and the test for whether a connection's opaque user data is one
     * of them (lws 4.1.6 hands some such connections to a vhost's first
     * protocol instead). */
    const struct lws_protocols *protocol;
    bool (*owns)(const void *opaque);
    /* Called from the loop after lws_cancel_service(): work handed over by
     * other threads. */
    void (*service)(void);

    /* --- the process -------------------------------------------------------- */
    void (*set_worker)(int index); /* in a forked worker, before start */
    int (*start)(const struct wsg_config *cfg, struct lws_context *ctx, char *err, size_t err_len);
    /* SIGHUP: check and adopt `next` (0), or refuse it with a reason and keep
     * running as before. */
    int (*reload)(const struct wsg_config *next, char *err, size_t err_len);
    /* Readiness: the name of a resource that is down (NULL: ready), and what
     * kind of resource it is ("broker"), for /readyz. */
    const char *(*unavailable)(void);
    const char *resource_kind;
    /* Shutdown, in order: stop taking new work; report whether all that was
     * in flight is delivered; cancel timers before the lws context goes;
     * free what is left after it went. */
    void (*drain)(void);
    bool (*drained)(void);
    void (*shutdown)(void);
    void (*stop)(void);
};

/* At most this many types; registering more (or one twice) fails. */
#define BACKEND_TYPES_MAX 8

/* The registered types, in registration order. Zeroed = empty; holds no
 * memory of its own (the types are static tables), so it needs no free. */
struct backend_registry {
    const struct backend_type *types[BACKEND_TYPES_MAX];
    size_t n;
};

/* 0, or -1 when the registry is full or a type of that name or route type is
 * already there. `t` must outlive the registry. */
int backend_type_register(struct backend_registry *reg, const struct backend_type *t);
/* Forgets every type. */
void backend_types_clear(struct backend_registry *reg);

const struct backend_type *backend_type_for(const struct backend_registry *reg,
                                            enum wsg_route_type route_type);
const struct backend_type *backend_type_named(const struct backend_registry *reg, const char *name);
/* The type whose own connection `opaque` is, or NULL. */
const struct backend_type *backend_type_owning(const struct backend_registry *reg,
                                               const void *opaque);
/* The i-th registered type (registration order), or NULL past the end. */
const struct backend_type *backend_type_at(const struct backend_registry *reg, size_t i);

/* The process-level hooks of every registered type, in registration order
 * (stop and shutdown in reverse). start stops what it already started when a
 * later type fails; the first failure's reason is in `err`. */
void backend_types_set_worker(const struct backend_registry *reg, int index);
int backend_types_start(const struct backend_registry *reg, const struct wsg_config *cfg,
                        struct lws_context *ctx, char *err, size_t err_len);
int backend_types_reload(const struct backend_registry *reg, const struct wsg_config *next,
                         char *err, size_t err_len);
void backend_types_service(const struct backend_registry *reg);
/* The first resource that is down, its kind in *kind; NULL when all are up. */
const char *backend_types_unavailable(const struct backend_registry *reg, const char **kind);
void backend_types_drain(const struct backend_registry *reg);
bool backend_types_drained(const struct backend_registry *reg);
void backend_types_shutdown(const struct backend_registry *reg);
void backend_types_stop(const struct backend_registry *reg);

#endif

/* auth_service.h - the pure half of "auth": "http" (SPEC-2 A): the JSON
 * body wsgate POSTs to the auth service, the cache key of a request, the
 * reading of the service's answer, and the cache of allowed answers with the
 * clients waiting on a request in flight. No sockets, no lws; the HTTP
 * client on the event loop is auth_http.c. Unit-tested and fuzzed. */
#ifndef WSGATE_AUTH_SERVICE_H
#define WSGATE_AUTH_SERVICE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a handshake tells the auth service. Every string is borrowed; any may
 * be NULL except route and path. header_values[i] is NULL when the request
 * lacks header header_names[i] (lower-case names, as configured). */
struct auth_request_info {
    const char *route;
    const char *path;
    const char *query;        /* without the '?'; NULL or "" if none */
    const char *client;       /* the client address as wsgate resolved it */
    const char *origin;       /* NULL: JSON null */
    const char *subprotocols; /* the Sec-WebSocket-Protocol value, comma-separated */
    const char *const *header_names;
    const char *const *header_values;
    size_t n_headers;
};

/* The body: {"route", "path", "query", "client", "origin", "subprotocols",
 * "headers"} as compact JSON, malloc'd (the caller frees; it holds the
 * client's secrets: cleanse before freeing). Headers the request lacks are
 * left out. NULL if out of memory. */
char *auth_service_body(const struct auth_request_info *r, size_t *len);

/* The cache key: the service URL, the route and the forwarded header
 * values (present or not), each length-prefixed so that no two requests
 * share a key by accident. malloc'd C string; NULL if out of memory. */
char *auth_service_key(const struct auth_request_info *r, const char *url);

enum auth_verdict {
    AUTH_ALLOWED = 0,
    AUTH_UNAUTHORIZED, /* the service said 401: close 4401 */
    AUTH_FORBIDDEN,    /* 403: close 4403 */
    AUTH_UNAVAILABLE,  /* anything else, a bad answer, no answer: close 1013 */
    AUTH_VERDICT_COUNT
};

/* Largest answer body read; a longer one is a bad answer (unavailable). */
#define AUTH_ANSWER_MAX_BYTES 65536

/* Reads the service's answer: HTTP status `status` (0: no answer) and its
 * body. 200 is allowed; a body that is a JSON object with "claims" (an
 * object) gives those claims (*claims: a new reference, NULL without); a
 * "claims" that is not an object makes the answer unusable (unavailable);
 * any other body is ignored. 401 / 403 are refusals; everything else is
 * unavailable. `reason` gets a short phrase for the close frame / the log,
 * never a piece of the body. */
enum auth_verdict auth_service_answer(int status, const char *body, size_t len, json_t **claims,
                                      char *reason, size_t reason_len);

/* --- cache of allowed answers, and requests in flight ---------------------- */

struct auth_cache;

/* At most `max_entries` keys (answers and requests in flight together). */
struct auth_cache *auth_cache_create(size_t max_entries);
/* Frees every entry; waiters still listed are forgotten. */
void auth_cache_destroy(struct auth_cache *c);

enum auth_cache_result {
    AUTH_CACHE_HIT,     /* *claims: a new reference to the cached claims (or NULL) */
    AUTH_CACHE_WAIT,    /* a request for this key is in flight: `waiter` waits on it */
    AUTH_CACHE_REQUEST, /* none in flight: `waiter` waits, the caller sends the request */
    AUTH_CACHE_FULL,    /* no room for another key (or out of memory): refuse */
};

/* Looks `key` up at time now_ms. An expired answer is dropped first. */
enum auth_cache_result auth_cache_lookup(struct auth_cache *c, const char *key, int64_t now_ms,
                                         void *waiter, json_t **claims);

/* A waiter that no longer waits (its client left). */
void auth_cache_forget(struct auth_cache *c, const char *key, void *waiter);

/* The request for `key` is answered: returns the waiters (malloc'd array,
 * *n entries; the caller frees it, NULL if none) and, for an allowed answer
 * with expires_ms > now_ms, keeps `claims` (takes a new reference) until
 * then; otherwise the key is forgotten. */
void **auth_cache_settle(struct auth_cache *c, const char *key, bool allowed, json_t *claims,
                         int64_t now_ms, int64_t expires_ms, size_t *n);

/* Keys held (answers and requests in flight). */
size_t auth_cache_size(const struct auth_cache *c);

#endif

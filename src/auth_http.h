/* auth_http.h - "auth": "http" routes (SPEC-2 A): at each handshake the
 * auth service is asked, with lws's own HTTP client on the event loop, while
 * the client waits upgraded but read-paused with no backend opened; its
 * answer (or the cache's, or a timeout) then lets the session open its
 * backend or close it with 4401 / 4403 / 1013. The pure half (body, key,
 * answer, cache) is core/auth_service.c. */
#ifndef WSGATE_AUTH_HTTP_H
#define WSGATE_AUTH_HTTP_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>

#include "auth_service.h"

struct rules;
struct route_match;
struct session;

#define AUTH_HTTP_PROTOCOL_NAME "wsgate:auth-http"

/* One client waiting for the auth service's answer; owned by its session
 * once handed to it (session_auth_wait), else by the handshake. */
struct auth_wait;
struct auth_cache;
struct auth_req;

/* The auth service's client (struct gateway's `auth_http`). Zeroed = nothing
 * asked yet; the cache is made with the first request and freed by
 * auth_http_stop(), after the lws context went. */
struct auth_http_state {
    struct auth_cache *cache;  /* owned: answers, and who waits for which key */
    struct auth_req *requests; /* owned: requests not yet freed */
    bool stopping;             /* between auth_http_stopping() and _stop() */
};

/* At the handshake of an "auth": "http" route (request headers readable):
 * 0 with *claims (a new reference, or NULL) when the cache already allows
 * it, 0 with *wait when the answer must be waited for (the request is on
 * its way, or already was for the same key), or 503 with a reason. */
int auth_http_begin(struct lws *wsi, const struct rules *rules, const struct route_match *m,
                    const char *uri, const char *client, json_t **claims, struct auth_wait **wait,
                    char *reason, size_t reason_len);

/* The waiter's session: it hears the answer through session_auth_answer(). */
void auth_wait_bind(struct auth_wait *w, struct session *s);

/* The client no longer waits (it left, or the handshake was refused). */
void auth_wait_cancel(struct auth_wait *w);

/* The protocol callback of the auth service's HTTP client connections. */
int auth_http_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len);

/* True if an lws opaque pointer is one of the auth service's requests. */
bool auth_http_is(const void *opaque);

/* Before the lws context goes: timers cancelled, answers go to no one. */
void auth_http_stopping(void);
/* After it went: the cache is freed. */
void auth_http_stop(void);

#endif

/* http_endpoints.h - the plain HTTP side of every listener: /healthz,
 * /readyz, /metrics, static files, and the HTTP/1.1 refusal responses of a
 * WebSocket handshake. */
#ifndef WSGATE_HTTP_ENDPOINTS_H
#define WSGATE_HTTP_ENDPOINTS_H

#include <libwebsockets.h>
#include <stddef.h>

struct wsg_config;

/* Per HTTP connection state, lws-allocated as the default protocol's
 * per-session data. */
struct http_state {
    char *body; /* owned: a dynamic response waiting for HTTP_WRITEABLE */
    size_t body_len;
};

/* LWS_CALLBACK_HTTP: answers the request for `uri`. Returns the lws callback
 * result. */
int http_endpoints_request(struct lws *wsi, struct http_state *st, const char *uri,
                           const struct wsg_config *cfg);

/* LWS_CALLBACK_HTTP_WRITEABLE: sends the pending dynamic body. */
int http_endpoints_writable(struct lws *wsi, struct http_state *st);

/* Frees what a connection's state holds (on close or protocol drop). */
void http_state_release(struct http_state *st);

/* Writes a complete "HTTP/1.1 <status>" response with a one-line text/plain
 * body, for refusing a WebSocket handshake inside CONFIRM_UPGRADE (where
 * lws_return_http_status() would answer HTTP/1.0). The caller returns 1. */
int http_refuse(struct lws *wsi, int status, const char *reason);

#endif

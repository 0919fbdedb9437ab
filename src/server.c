/* server.c - lws context, listeners, protocol table, handshake; see server.h.
 *
 * Every HTTP request and every WebSocket without a subprotocol lands on the
 * default protocol; each subprotocol named by any route gets a protocol entry
 * of the same callback so lws can echo the chosen name. lws itself would bind
 * the client's *first* offered name that matches *any* protocol on the vhost,
 * so the handshake rewrites the offer down to the one name the route chose
 * (see choose_subprotocol). */
#include "server.h"

#include "auth.h"
#include "auth_http.h"
#include "backend_type.h"
#include "bridge.h"
#include "buf_pool.h"
#include "client_addr.h"
#include "config.h"
#include "gateway.h"
#include "handshake.h"
#include "http_endpoints.h"
#include "json_check.h"
#include "listener.h"
#include "log.h"
#include "map_watch.h"
#include "metrics.h"
#include "page_pool.h"
#include "peer_addr.h"
#include "route.h"
#include "rules.h"
#include "session.h"
#include "tls_check.h"
#include "workers.h"
#include "ws_deflate.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define DEFAULT_PROTOCOL_NAME "wsgate-default"
/* lws allocates rx_buffer_size + LWS_PRE + 4 bytes per WebSocket at the
 * upgrade (rx_ubuf) and reads the socket in pieces of that size: 16 KiB in
 * all, whole pages of the pool in lws_allocator(). */
#define WS_RX_BUFFER_BYTES (65536 - LWS_PRE - 4)
/* TLS 1.2 suites offered (1.3 uses OpenSSL's defaults, all modern). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* Bytes lws keeps for one request's headers (URI included). */
#define HEADER_DATA_BYTES 4096

struct server {
    struct rules *rules;             /* a reference: the rules for new connections */
    char *config_path;               /* owned; NULL for the built-in config */
    struct lws_protocols *protocols; /* owned array, NULL-terminated, names owned too */
    size_t n_protocols;
    char **vhost_names; /* owned: lws keeps the pointers */
    size_t n_vhost_names;
    int fd_limit; /* RLIMIT_NOFILE's soft limit, 0 if unlimited */
    uint64_t fd_refusals;
    lws_usec_t fd_refusal_logged_us;
    volatile sig_atomic_t stopping;
    volatile sig_atomic_t reload_requested;
    lws_sorted_usec_list_t drain_timer;
    lws_sorted_usec_list_t map_poll_timer;
    lws_sorted_usec_list_t pool_trim_timer;
    lws_sorted_usec_list_t idle_exit_timer;
    lws_usec_t idle_exit_us; /* server_exit_when_idle(): 0 = never */
    lws_usec_t idle_since;   /* when the last connection went, or the start */
};

/* How often target map files are checked for changes. */
#define MAP_POLL_US (1 * LWS_USEC_PER_SEC)

/* --- handshake ---------------------------------------------------------- */

/* lws has already percent-decoded the path, turned an unencoded '+' in it
 * into a space, and split the query into decoded name=value fragments. The
 * route matcher decodes once more, so re-encode what would otherwise be
 * decoded twice or split wrongly. A space in the path goes back to the '+'
 * it most likely was (lws cannot tell "+" from "%20"), so a capture that
 * held '+' is refused as SPEC.md promises. */
static bool append_encoded(char *out, size_t out_len, size_t *used, const char *s,
                           const char *escape, bool space_is_plus)
{
    for (; *s; s++) {
        if (*used + 4 >= out_len)
            return false; /* refused, never cut: a cut query would mean another thing */
        unsigned char c = (unsigned char)*s;
        if (c == ' ' && space_is_plus)
            out[(*used)++] = '+';
        else if (c == '%' || c < 0x21 || c >= 0x7f || strchr(escape, c))
            *used += (size_t)snprintf(out + *used, out_len - *used, "%%%02X", c);
        else
            out[(*used)++] = (char)c;
    }
    out[*used] = '\0';
    return true;
}

static int request_uri(struct lws *wsi, char *out, size_t out_len)
{
    /* lws holds every header in HEADER_DATA_BYTES: no piece is longer. */
    char path[HEADER_DATA_BYTES], frag[HEADER_DATA_BYTES];
    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0)
        return -1;
    size_t used = 0;
    out[0] = '\0';
    if (!append_encoded(out, out_len, &used, path, "?#", true))
        return -1;
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        if (used + 2 >= out_len)
            return -1;
        out[used++] = i ? '&' : '?';
        out[used] = '\0';
        char *eq = strchr(frag, '=');
        if (eq)
            *eq = '\0';
        if (!append_encoded(out, out_len, &used, frag, "&=#+", false))
            return -1;
        if (eq) {
            out[used++] = '=';
            out[used] = '\0';
            if (!append_encoded(out, out_len, &used, eq + 1, "&#+", false))
                return -1;
        }
    }
    return used + 4 < out_len ? 0 : -1;
}

/* lws 4.1.6 exports no pointer to a request header, but keeps every header
 * value NUL-terminated in one buffer that starts with the request URI (whose
 * pointer it does export). Finds the stored Sec-WebSocket-Protocol value there
 * and overwrites it with `chosen` padded by spaces (which lws's tokenizer
 * skips). Each candidate is verified by reading the header back through the
 * API and restored if it was not the header, so another header holding the
 * same bytes is never changed. Returns 0 once the header reads as wanted. */
static int rewrite_protocol_header(struct lws *wsi, const char *value, size_t vlen,
                                   const char *chosen)
{
    char *uri, want[1024], check[1024];
    int uri_len;
    size_t clen = strlen(chosen);
    if (vlen >= sizeof(want) || clen > vlen || lws_http_get_uri_and_method(wsi, &uri, &uri_len) < 0)
        return -1;
    memcpy(want, chosen, clen);
    memset(want + clen, ' ', vlen - clen);
    want[vlen] = '\0';

    char *end = uri + HEADER_DATA_BYTES; /* the URI opens the header buffer */
    for (char *p = uri + uri_len + 1; p + vlen < end; p++) {
        if (p[-1] != '\0' || p[vlen] != '\0' || memcmp(p, value, vlen) != 0)
            continue;
        memcpy(p, want, vlen);
        if (lws_hdr_copy(wsi, check, sizeof(check), WSI_TOKEN_PROTOCOL) == (int)vlen &&
            memcmp(check, want, vlen) == 0)
            return 0;
        memcpy(p, value, vlen); /* another header with the same bytes */
    }
    return -1;
}

/* Picks the route's subprotocol and makes lws bind exactly that one (lws
 * alone binds the client's first offered name known anywhere on the vhost).
 * Returns 0, or an HTTP status to refuse with. */
static int choose_subprotocol(struct lws *wsi, const struct wsg_route *route, char *chosen,
                              size_t chosen_len, char *reason, size_t reason_len)
{
    char offered[1024] = "";
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
    if (total > 0 && lws_hdr_copy(wsi, offered, sizeof(offered), WSI_TOKEN_PROTOCOL) < 0) {
        snprintf(reason, reason_len, "Sec-WebSocket-Protocol header too long");
        return 400;
    }
    enum subprotocol_result r =
        handshake_choose_subprotocol(route, offered, chosen, chosen_len, reason, reason_len);
    if (r == SUBPROTOCOL_REFUSED)
        return 400;
    if (total <= 0)
        return 0;
    if (r == SUBPROTOCOL_NONE) {
        /* Only token carriers were offered; lws cannot accept a handshake
         * whose offer names nothing it knows (see NOTES-libwebsockets.md). */
        snprintf(reason, reason_len, "route %s: offer one of its subprotocols", route->name);
        return 400;
    }
    if (lws_hdr_fragment_length(wsi, WSI_TOKEN_PROTOCOL, 1) > 0) {
        snprintf(reason, reason_len, "send one Sec-WebSocket-Protocol header");
        return 400;
    }
    if (rewrite_protocol_header(wsi, offered, strlen(offered), chosen) != 0) {
        snprintf(reason, reason_len, "cannot select subprotocol %s", chosen);
        return 400;
    }
    return 0;
}

/* The client's address: the peer, or what a trusted proxy says it is. */
static void client_of(struct lws *wsi, const struct rules *rules, char *out, size_t out_len)
{
    char peer[PEER_ADDR_TEXT] = "", xff[512] = "", real_ip[64] = "";
    int peer_port;
    peer_addr_of(wsi, peer, &peer_port); /* a PROXY header's source, if any */
    if (addr_set_contains(rules->trusted, peer)) {
        if (lws_hdr_copy(wsi, xff, sizeof(xff), WSI_TOKEN_X_FORWARDED_FOR) < 0)
            xff[0] = '\0'; /* longer than we read: ignored */
        if (lws_hdr_copy(wsi, real_ip, sizeof(real_ip), WSI_TOKEN_HTTP_X_REAL_IP) < 0)
            real_ip[0] = '\0';
    }
    client_addr_pick(rules->trusted, peer, xff, real_ip, out, out_len);
}

/* A route with "auth": "jwt": the request's token (Authorization: Bearer,
 * ?token=, the auth.jwt.cookie cookie, or a "bearer.<jwt>" subprotocol
 * entry) must verify. 0 with the claims, or 401 with a reason that never
 * holds the token. */
static int authenticate(struct lws *wsi, const struct rules *rules, const struct route_match *match,
                        json_t **claims, char *reason, size_t reason_len)
{
    char authorization[AUTH_TOKEN_MAX_BYTES + 16] = "", query_token[AUTH_TOKEN_MAX_BYTES] = "";
    char offered[AUTH_TOKEN_MAX_BYTES] = "", token[AUTH_TOKEN_MAX_BYTES], why[160];
    if (lws_hdr_copy(wsi, authorization, sizeof(authorization), WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        authorization[0] = '\0';
    int q = route_query_param(match, "token", query_token, sizeof(query_token));
    if (q < 0) {
        snprintf(reason, reason_len, "route %s: token too long or badly encoded",
                 match->route->name);
        return 401;
    }
    if (q != 0)
        query_token[0] = '\0';
    if (lws_hdr_copy(wsi, offered, sizeof(offered), WSI_TOKEN_PROTOCOL) < 0)
        offered[0] = '\0';
    const char *cookie_name = rules->cfg->auth.jwt.cookie;
    char cookies[HEADER_DATA_BYTES] = "";
    if (cookie_name && lws_hdr_copy(wsi, cookies, sizeof(cookies), WSI_TOKEN_HTTP_COOKIE) < 0)
        cookies[0] = '\0';
    long len = auth_find_token(authorization, query_token, cookies, cookie_name, offered, token,
                               sizeof(token));
    OPENSSL_cleanse(cookies, sizeof(cookies));
    if (len <= 0) {
        snprintf(why, sizeof(why), "%s", len < 0 ? "token too long" : "no token");
        *claims = NULL;
    } else {
        *claims =
            auth_verify(rules->auth, token, (size_t)len, (int64_t)time(NULL), why, sizeof(why));
        OPENSSL_cleanse(token, sizeof(token));
    }
    if (*claims)
        return 0;
    snprintf(reason, reason_len, "route %s: %s", match->route->name, why);
    return 401;
}

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: decide, then create the session.
 * Returns 0 to accept, 1 after writing a refusal. */
static int confirm_upgrade(struct server *srv, struct lws *wsi, char *upgrade)
{
    char uri[ROUTE_MAX_URI_BYTES + 1] = "", reason[300], chosen[64] = "";
    struct route_match match;
    json_t *claims = NULL; /* owned until the session takes it */
    bool admitted = false; /* holds a max_connections place until the session takes it */
    struct auth_wait *auth_wait = NULL; /* owned until the session takes it */
    int status = 0;

    if (strcasecmp(upgrade, "websocket") != 0) {
        /* Anything else (h2c): served as the HTTP/1.1 request it also is.
         * lws would switch to HTTP/2, where 4.1.6 sends static files in
         * DATA frames past the 16 KiB limit and where no WebSocket may run;
         * spoiling the token in lws's own header copy makes lws ignore it. */
        if (*upgrade)
            upgrade[0] = '!';
        return 0;
    }
    memset(&match, 0, sizeof(match));

    if (request_uri(wsi, uri, sizeof(uri)) != 0) {
        status = 400;
        snprintf(reason, sizeof(reason), "request URI too long");
        goto refuse;
    }
    if (srv->stopping) {
        status = 503;
        snprintf(reason, sizeof(reason), "shutting down");
        goto refuse;
    }
    struct rules *rules = srv->rules;
    switch (route_table_match(rules->routes, uri, &match, reason, sizeof(reason))) {
    case ROUTE_OK:
        break;
    case ROUTE_NOT_FOUND:
        status = 404;
        goto refuse;
    case ROUTE_BAD_REQUEST:
        status = 400;
        goto refuse;
    }

    char origin[256];
    bool has_origin = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) > 0;
    if (!handshake_origin_allowed(rules->cfg, has_origin ? origin : NULL)) {
        status = 403;
        snprintf(reason, sizeof(reason), "origin not allowed");
        goto refuse;
    }

    if (match.route->auth_jwt) {
        status = authenticate(wsi, rules, &match, &claims, reason, sizeof(reason));
        if (status)
            goto refuse;
    }
    /* "auth": "http" routes: {auth.x} is checked once the service answers. */
    struct backend_request breq = {.match = &match,
                                   .claims = claims,
                                   .claims_later = match.route->auth_http,
                                   .rules = rules,
                                   .targets = match.route->targets,
                                   .n_targets = match.route->n_targets};
    status = bridge_check_request(&breq, reason, sizeof(reason));
    if (status)
        goto refuse;

    const struct wsg_limits *limits = &rules->cfg->limits;
    /* Counted across every worker process, in the shared metrics store. */
    if (!(admitted = metrics_connection_admit((uint64_t)limits->max_connections))) {
        status = 503;
        snprintf(reason, sizeof(reason), "too many connections");
        goto refuse;
    }

    char client[64];
    client_of(wsi, rules, client, sizeof(client));
    if (match.route->auth_http) {
        /* Before the subprotocol choice rewrites the offer the service sees. */
        status = auth_http_begin(wsi, rules, &match, uri, client, &claims, &auth_wait, reason,
                                 sizeof(reason));
        if (!status && !auth_wait) { /* a cached answer: refused like a JWT's claims */
            breq.claims = claims;
            breq.claims_later = false;
            status = bridge_check_request(&breq, reason, sizeof(reason));
        }
        if (status)
            goto refuse;
    }

    status = choose_subprotocol(wsi, match.route, chosen, sizeof(chosen), reason, sizeof(reason));
    if (status)
        goto refuse;

    struct session *s =
        session_create(wsi, &match, chosen, rules, breq.targets, breq.n_targets, client, claims);
    claims = NULL;        /* the session's now, even when it failed */
    admitted = s == NULL; /* a session gives the place back when it ends */
    if (!s) {
        status = 503;
        snprintf(reason, sizeof(reason), "out of memory");
        goto refuse;
    }
    if (auth_wait)
        session_auth_wait(s, auth_wait); /* the session's now */
    /* Our session is the connection's user data from here on, so lws keeps
     * it when it binds the chosen protocol; WSI_DESTROY frees it. */
    lws_set_opaque_user_data(wsi, s);
    lws_set_wsi_user(wsi, s);
    return 0;

refuse:;
    char status_text[8], peer[PEER_ADDR_TEXT] = "";
    int peer_port;
    char *query = strchr(uri, '?');
    if (query)
        *query = '\0'; /* the query may carry a token: never logged */
    snprintf(status_text, sizeof(status_text), "%d", status);
    peer_addr_of(wsi, peer, &peer_port);
    log_info("handshake refused", "status", status_text, "peer", peer, "uri", uri, "reason",
             reason);
    route_match_clear(&match);
    json_decref(claims);
    auth_wait_cancel(auth_wait);
    if (admitted)
        metrics_connection_release();
    return http_refuse(wsi, status, reason) == 0 ? 1 : -1;
}

/* --- the protocol callback ---------------------------------------------- */

/* A last guard behind the header rewrite: the protocol lws bound must be the
 * one the route chose (or the default when none was), whatever happened. */
static bool bound_as_chosen(struct lws *wsi, const struct session *s)
{
    const struct lws_protocols *p = lws_get_protocol(wsi);
    const char *chosen = session_subprotocol(s);
    const char *expected = *chosen ? chosen : DEFAULT_PROTOCOL_NAME;
    if (p && p->name && strcmp(p->name, expected) == 0)
        return true;
    log_error("subprotocol mismatch, connection dropped", "chosen", chosen, "bound",
              p && p->name ? p->name : "");
    return false;
}

/* Descriptors kept free (16 + 1% of the limit): each client of a tcp route
 * needs a second one for its backend, and lws itself needs some. A
 * connection accepted into the reserve is hung up at once; letting accept()
 * reach EMFILE instead makes lws 4.1.6 retry it in a busy loop (100% CPU, a
 * log line per try). */
static int fd_reserve_hit(struct server *srv, int fd)
{
    if (srv->fd_limit == 0 || fd < srv->fd_limit - (16 + srv->fd_limit / 100))
        return 0;
    lws_usec_t now = lws_now_usecs();
    srv->fd_refusals++;
    if (now - srv->fd_refusal_logged_us >= LWS_USEC_PER_SEC) { /* at most once a second */
        char limit[24], count[24];
        snprintf(limit, sizeof(limit), "%d", srv->fd_limit);
        snprintf(count, sizeof(count), "%llu", (unsigned long long)srv->fd_refusals);
        log_warn("out of file descriptors: connection hung up", "fd_limit", limit, "hung_up_so_far",
                 count);
        srv->fd_refusal_logged_us = now;
    }
    return 1;
}

/* The same reserve for connections our own listeners accept (listener.h). */
static int fd_reserve_admit(void *ctx, int fd) { return fd_reserve_hit(ctx, fd); }

static int server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    struct server *srv = lws_context_user(lws_get_context(wsi));
    void *opaque = lws_get_opaque_user_data(wsi);
    /* A backend connection that failed at socket() is handed to the vhost's
     * first protocol (this one) by lws 4.1.6: pass it on. */
    const struct backend_type *backend = backend_type_owning(&gateway_get()->backend_types, opaque);
    if (backend)
        return backend->protocol->callback(wsi, reason, user, in, len);
    if (auth_http_is(opaque))
        return auth_http_lws_callback(wsi, reason, user, in, len);
    if (listener_is(opaque))
        return listener_lws_event(wsi, reason);
    struct session *s = session_is(opaque) ? opaque : NULL;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return http_endpoints_request(wsi, user, in, srv->rules->cfg);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_endpoints_writable(wsi, user);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (!s)
            http_state_release(user);
        return 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (!s)
            http_state_release(user);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        http_state_release(user);
        return confirm_upgrade(srv, wsi, in);

    case LWS_CALLBACK_ESTABLISHED:
        if (s && !bound_as_chosen(wsi, s))
            return -1;
        return s ? session_lws_event(s, wsi, reason, in, len) : -1;
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    case LWS_CALLBACK_CLOSED:
        return s ? session_lws_event(s, wsi, reason, in, len) : -1;

    case LWS_CALLBACK_CONFIRM_EXTENSION_OKAY: /* 0 accepts */
        return s && strcmp(in, "permessage-deflate") == 0 && session_accept_deflate(s, wsi) ? 0 : 1;

    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        peer_addr_forget(((struct lws_filter_network_conn_args *)user)->accept_fd);
        return fd_reserve_hit(srv, ((struct lws_filter_network_conn_args *)user)->accept_fd);

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Sent to every protocol of every vhost: the first call takes all. */
        backend_types_service(&gateway_get()->backend_types);
        return 0;

    case LWS_CALLBACK_WSI_DESTROY:
        if (s) {
            lws_set_opaque_user_data(wsi, NULL);
            session_destroy(s);
        }
        return 0;

    default:
        return 0;
    }
}

/* --- setup -------------------------------------------------------------- */

static void free_protocols(struct lws_protocols *p, size_t n)
{
    /* The subprotocol entries hold copies; the backend types' and the auth
     * service's entries don't. */
    for (size_t i = 1; p && i < n; i++)
        if (p[i].callback == server_callback)
            free((char *)p[i].name);
    free(p);
}

static bool protocol_listed(const struct lws_protocols *p, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0)
            return true;
    return false;
}

/* lws 4.1.6 arms a "validity" timer on every WebSocket (by default: its own
 * ping after 300 s without a pong, hang-up at 310 s). wsgate's liveness is
 * ping_interval_s and idle_timeout_s (one sweep for all connections), so
 * lws's is switched off: it would ping even with ping_interval_s 0, and its
 * timers sit in one sorted list that every new connection walks (O(N) per
 * connect). Zero seconds mean "never" to lws. */
static const uint32_t no_retry_ms[] = {1000};
/* Offered on every vhost; accepted per connection only on routes with
 * "compression" (LWS_CALLBACK_CONFIRM_EXTENSION_OKAY). lws inflates what
 * clients send; what goes to them wsgate compresses (ws_deflate.h). */
static const struct lws_extension extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_max_window_bits"},
    {NULL, NULL, NULL},
};

static const lws_retry_bo_t no_validity_timer = {
    .retry_ms_table = no_retry_ms,
    .retry_ms_table_count = 1,
    .secs_since_valid_ping = 0,
    .secs_since_valid_hangup = 0,
};

/* lws's allocator (lws_set_allocator(): realloc semantics, size 0 frees).
 * The one change: each WebSocket's receive buffer ("rx_ubuf", allocated at
 * the upgrade, see WS_RX_BUFFER_BYTES) comes from a page pool, so an idle
 * connection's 64 KiB stay out of resident memory; in the heap they were
 * most of an idle connection's RSS. */
#define RX_POOL_SLOTS 65536 /* 4 GiB of address space (PROT_NONE until used); then the heap */

static void *lws_allocator(void *ptr, size_t size, const char *reason)
{
    struct page_pool *pool = &gateway_get()->rx_pool;
    if (ptr && page_pool_owns(pool, ptr)) {
        void *moved = size ? malloc(size) : NULL; /* lws never does this; just in case */
        if (moved)
            memcpy(moved, ptr, size < pool->slot_bytes ? size : pool->slot_bytes);
        if (moved || !size)
            page_pool_put(pool, ptr);
        return moved;
    }
    if (!size) {
        free(ptr);
        return NULL;
    }
    if (!ptr && size <= pool->slot_bytes && reason && strcmp(reason, "rx_ubuf") == 0) {
        void *buf = page_pool_get(pool);
        if (buf)
            return buf;
    }
    return realloc(ptr, size);
}

/* Names are copied: the protocol table lives as long as the context, which
 * outlives any config a reload replaces. */
static struct lws_protocols *build_protocols(const struct wsg_config *cfg, size_t *count)
{
    const struct backend_registry *types = &gateway_get()->backend_types;
    size_t max = 3; /* the default protocol, the auth service's, the terminating zeroes */
    for (size_t i = 0; backend_type_at(types, i); i++)
        max += backend_type_at(types, i)->protocol != NULL;
    for (size_t r = 0; r < cfg->n_routes; r++)
        max += cfg->routes[r].n_subprotocols;
    struct lws_protocols *p = calloc(max, sizeof(*p));
    if (!p)
        return NULL;
    size_t n = 0;
    p[n++] = (struct lws_protocols){.name = DEFAULT_PROTOCOL_NAME,
                                    .callback = server_callback,
                                    .per_session_data_size = sizeof(struct http_state),
                                    .rx_buffer_size = WS_RX_BUFFER_BYTES,
                                    .tx_packet_size = SESSION_TX_PACKET_BYTES};
    for (size_t r = 0; r < cfg->n_routes; r++)
        for (size_t i = 0; i < cfg->routes[r].n_subprotocols; i++) {
            const char *name = cfg->routes[r].subprotocols[i];
            if (protocol_listed(p, n, name))
                continue;
            char *copy = strdup(name);
            if (!copy) {
                while (n-- > 1)
                    free((char *)p[n].name);
                free(p);
                return NULL;
            }
            p[n++] = (struct lws_protocols){.name = copy,
                                            .callback = server_callback,
                                            .rx_buffer_size = WS_RX_BUFFER_BYTES,
                                            .tx_packet_size = SESSION_TX_PACKET_BYTES};
        }
    p[n++] =
        (struct lws_protocols){.name = AUTH_HTTP_PROTOCOL_NAME, .callback = auth_http_lws_callback};
    for (size_t i = 0; backend_type_at(types, i); i++)
        if (backend_type_at(types, i)->protocol)
            p[n++] = *backend_type_at(types, i)->protocol; /* its name is static: not freed */
    *count = n;
    return p; /* the zeroed last entry terminates the list */
}

static bool any_tls(const struct wsg_config *cfg)
{
    for (size_t i = 0; i < cfg->n_listen; i++)
        if (cfg->listen[i].has_tls)
            return true;
    return false;
}

/* lws binds to an interface name or address; NULL means every address. */
static const char *bind_iface(const char *host)
{
    if (!host || !*host || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ||
        strcmp(host, "*") == 0)
        return NULL;
    if (strcmp(host, "localhost") == 0)
        return "127.0.0.1";
    return host;
}

static void map_poll(lws_sorted_usec_list_t *sul)
{
    struct server *srv = lws_container_of(sul, struct server, map_poll_timer);
    map_watch_poll(srv->rules->maps);
    lws_sul_schedule(gateway_get()->context, 0, &srv->map_poll_timer, map_poll, MAP_POLL_US);
}

/* The relay's buffer pool gives back what a past burst left unused. */
static void pool_trim(lws_sorted_usec_list_t *sul)
{
    struct server *srv = lws_container_of(sul, struct server, pool_trim_timer);
    buf_pool_trim();
    lws_sul_schedule(gateway_get()->context, 0, &srv->pool_trim_timer, pool_trim,
                     BUF_POOL_TRIM_S * LWS_USEC_PER_SEC);
}

static bool any_target_map(const struct wsg_config *cfg)
{
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (cfg->routes[i].target_map_file)
            return true;
    return false;
}

struct server *server_create(struct wsg_config *cfg, struct map_watch *maps,
                             const char *config_path, char *err, size_t err_len)
{
    struct server *srv = calloc(1, sizeof(*srv));
    /* rules own cfg and maps from here, even on failure */
    struct rules *rules = rules_create(cfg, maps, err, err_len);
    if (!srv || !rules || (config_path && !(srv->config_path = strdup(config_path)))) {
        if (rules)
            snprintf(err, err_len, "out of memory");
        rules_unref(rules);
        free(srv);
        return NULL;
    }
    srv->rules = rules;
    srv->protocols = build_protocols(cfg, &srv->n_protocols);
    srv->vhost_names = calloc(cfg->n_listen ? cfg->n_listen : 1, sizeof(*srv->vhost_names));
    if (!srv->protocols || !srv->vhost_names) {
        snprintf(err, err_len, "out of memory");
        server_destroy(srv);
        return NULL;
    }
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
        nofile.rlim_cur < INT_MAX)
        srv->fd_limit = (int)nofile.rlim_cur;

    /* Every configured series exists from the start, at zero. */
    for (size_t i = 0; i < cfg->n_routes; i++)
        metrics_route(cfg->routes[i].name);

    struct page_pool *rx_pool = &gateway_get()->rx_pool; /* kept across servers */
    if (!rx_pool->base &&
        page_pool_init(rx_pool, WS_RX_BUFFER_BYTES + LWS_PRE + 4, RX_POOL_SLOTS) != 0)
        log_warn("no page pool for receive buffers: they come from the heap");
    lws_set_allocator(lws_allocator);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    /* No LWS_SERVER_OPTION_VALIDATE_UTF8: ws_rx_guard checks text messages
     * (and close reasons) before lws parses them, and lws 4.1.6's own check
     * also runs over a pong's payload that arrives between two fragments of
     * a text message, failing valid streams with 1007. */
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (any_tls(cfg))
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = srv;
    info.pt_serv_buf_size = 64 * 1024; /* reads from backends come in up to this size */
    info.timeout_secs = 10;            /* handshakes and connects that make no progress */
    info.max_http_header_data = HEADER_DATA_BYTES;
    gateway_get()->context = lws_create_context(&info);
    if (!gateway_get()->context) {
        snprintf(err, err_len, "libwebsockets context creation failed");
        server_destroy(srv);
        return NULL;
    }

    for (size_t i = 0; i < cfg->n_listen; i++) {
        const struct wsg_listen *l = &cfg->listen[i];
        char name[300];
        if (wsg_listen_is_unix(l))
            snprintf(name, sizeof(name), "unix:%s", l->host);
        else
            snprintf(name, sizeof(name), "%s:%d", l->host, l->port);
        /* lws keeps the vhost name pointer: it must outlive this loop. */
        char *kept = strdup(name);
        if (!kept) {
            snprintf(err, err_len, "out of memory");
            server_destroy(srv);
            return NULL;
        }
        srv->vhost_names[srv->n_vhost_names++] = kept;
        struct lws_context_creation_info vi;
        memset(&vi, 0, sizeof(vi));
        vi.options = info.options;
        /* Worker processes bind the same ports with SO_REUSEPORT, which lws
         * 4.1.6 does not do for us (listener.h): the vhost gets no socket
         * of its own and takes connections from ours. */
        bool shared_port = workers_count(cfg) > 1;
        /* So do unix sockets and PROXY headers (listener.h). */
        bool own_listener = shared_port || l->proxy_protocol || wsg_listen_is_unix(l);
        vi.vhost_name = kept;
        vi.retry_and_idle_policy = &no_validity_timer;
        vi.extensions = extensions;
        vi.port = own_listener ? CONTEXT_PORT_NO_LISTEN_SERVER : l->port;
        vi.iface = bind_iface(l->host);
        vi.protocols = srv->protocols;
        vi.timeout_secs = info.timeout_secs;
        vi.keepalive_timeout = 5;
        if (l->has_tls) {
            char tls_err[300];
            if (tls_check_pair(l->tls.cert, l->tls.key, tls_err, sizeof(tls_err)) != 0) {
                snprintf(err, err_len, "listen %s (tls): %s", name, tls_err);
                server_destroy(srv);
                return NULL;
            }
            vi.ssl_cert_filepath = l->tls.cert;
            vi.ssl_private_key_filepath = l->tls.key;
            /* Modern defaults (Mozilla "intermediate"): TLS 1.2 and 1.3 only,
             * forward-secret AEAD suites. ALPN offers HTTP/1.1 only, so a
             * browser never runs a WebSocket over HTTP/2 (RFC 8441), where
             * the handshake checks of confirm_upgrade() would not run. */
            vi.ssl_options_set = SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 |
                                 SSL_OP_NO_TLSv1_1 | SSL_OP_NO_COMPRESSION;
            vi.ssl_cipher_list = TLS12_CIPHERS;
            vi.alpn = "http/1.1";
            /* Both kinds on one port: lws looks at the first byte. */
            if (l->tls.allow_plain)
                vi.options |= LWS_SERVER_OPTION_ALLOW_NON_SSL_ON_SSL_PORT |
                              LWS_SERVER_OPTION_ALLOW_HTTP_ON_HTTPS_LISTENER;
        }
        errno = 0;
        struct lws_vhost *vh = lws_create_vhost(gateway_get()->context, &vi);
        if (!vh) {
            int e = errno;
            snprintf(err, err_len, "cannot listen on %s%s%s%s", name, l->has_tls ? " (tls)" : "",
                     e ? ": " : "", e ? strerror(e) : "");
            server_destroy(srv);
            return NULL;
        }
        char why[200];
        if (own_listener &&
            listener_open(vh, l, shared_port, fd_reserve_admit, srv, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "cannot listen on %s%s: %s", name, l->has_tls ? " (tls)" : "",
                     why);
            server_destroy(srv);
            return NULL;
        }
        log_info("listening", "addr", name, "tls", l->has_tls ? "true" : "false", "proxy_protocol",
                 l->proxy_protocol ? "true" : "false");
    }
    if (any_target_map(cfg))
        lws_sul_schedule(gateway_get()->context, 0, &srv->map_poll_timer, map_poll, MAP_POLL_US);
    lws_sul_schedule(gateway_get()->context, 0, &srv->pool_trim_timer, pool_trim,
                     BUF_POOL_TRIM_S * LWS_USEC_PER_SEC);
    if (backend_types_start(&gateway_get()->backend_types, cfg, gateway_get()->context, err,
                            err_len) != 0) {
        server_destroy(srv);
        return NULL;
    }
    return srv;
}

/* How long a shutdown may take to deliver what is in flight. */
#define DRAIN_TIMEOUT_US (3 * LWS_USEC_PER_SEC)
#define DRAIN_TICK_US (50 * 1000)

/* Wakes the loop regularly during a drain so the deadline is seen. */
static void drain_tick(lws_sorted_usec_list_t *sul)
{
    struct server *srv = lws_container_of(sul, struct server, drain_timer);
    lws_sul_schedule(gateway_get()->context, 0, &srv->drain_timer, drain_tick, DRAIN_TICK_US);
}

static bool protocol_known(void *ctx, const char *name)
{
    struct server *srv = ctx;
    return protocol_listed(srv->protocols, srv->n_protocols, name);
}

/* Certificates are re-read on every SIGHUP (renewed files, same paths); a
 * pair that does not load is reported and the vhost keeps the one it has. */
static void reload_certificates(struct server *srv)
{
    const struct wsg_config *cfg = srv->rules->cfg;
    for (size_t i = 0; i < cfg->n_listen; i++) {
        const struct wsg_listen *l = &cfg->listen[i];
        if (!l->has_tls)
            continue;
        char err[300];
        if (tls_check_pair(l->tls.cert, l->tls.key, err, sizeof(err)) != 0) {
            log_error("certificate not reloaded", "listen", l->host, "error", err);
            continue;
        }
        lws_tls_cert_updated(gateway_get()->context, l->tls.cert, l->tls.key, NULL, 0, NULL, 0);
    }
}

/* SIGHUP: the whole config is loaded and checked first; only a config that
 * passes replaces the running one, for new connections (open ones keep the
 * rules they hold). Anything else is logged and changes nothing. */
static void server_reload(struct server *srv)
{
    if (!srv->config_path) {
        /* No file to re-read (built-in or websockify's command line); its
         * token files are still re-read, as with a config file. */
        map_watch_reload(srv->rules->maps);
        log_info("SIGHUP: no config file to reload");
        return;
    }
    struct config_errors errs = {0};
    struct rules *next = rules_load(srv->config_path, &errs);
    if (next)
        rules_check_reloadable(srv->rules->cfg, next->cfg, protocol_known, srv, &errs);
    char err[300] = "";
    if (next && errs.count == 0 &&
        backend_types_reload(&gateway_get()->backend_types, next->cfg, err, sizeof(err)) != 0)
        jcheck_add_line(&errs, "%s: %s", srv->config_path, err);
    if (errs.count > 0) {
        for (size_t i = 0; i < errs.count; i++)
            log_error("config reload refused", "error", errs.lines[i]);
        log_warn("config reload failed: the running config stays", "config", srv->config_path);
        config_errors_free(&errs);
        rules_unref(next);
        metrics_count_reload(false);
        return;
    }
    for (size_t i = 0; i < next->cfg->n_routes; i++)
        metrics_route(next->cfg->routes[i].name);
    struct rules *old = srv->rules;
    srv->rules = next;
    rules_unref(old); /* freed now, or with its last connection */
    reload_certificates(srv);
    if (any_target_map(next->cfg))
        lws_sul_schedule(gateway_get()->context, 0, &srv->map_poll_timer, map_poll, MAP_POLL_US);
    else
        lws_sul_cancel(&srv->map_poll_timer);
    metrics_count_reload(true);
    char routes[24], brokers[24];
    snprintf(routes, sizeof(routes), "%zu", next->cfg->n_routes);
    snprintf(brokers, sizeof(brokers), "%zu", next->cfg->n_brokers);
    log_info("config reloaded", "config", srv->config_path, "routes", routes, "brokers", brokers);
}

int server_run(struct server *srv)
{
    while (!srv->stopping) {
        if (lws_service(gateway_get()->context, 0) < 0)
            return 0;
        if (srv->reload_requested) {
            srv->reload_requested = 0;
            server_reload(srv);
        }
    }

    /* Drain: new handshakes get 503 (see confirm_upgrade); open WebSockets
     * get 1001 after what is queued for them; backends get what clients
     * sent. The loop runs until all is closed or the deadline passes. */
    char open_count[24];
    snprintf(open_count, sizeof(open_count), "%zu", session_count());
    log_info("shutting down", "open_connections", open_count);
    backend_types_drain(&gateway_get()->backend_types);
    session_close_all(CLOSE_GOING_AWAY, "server shutting down");
    lws_usec_t deadline = lws_now_usecs() + DRAIN_TIMEOUT_US;
    drain_tick(&srv->drain_timer);
    while ((session_count() > 0 || !backend_types_drained(&gateway_get()->backend_types)) &&
           lws_now_usecs() < deadline)
        if (lws_service(gateway_get()->context, 0) < 0)
            break;
    return 0;
}

/* How often the idle exit looks at the connection count. */
#define IDLE_CHECK_US (LWS_USEC_PER_SEC / 4)

static void idle_exit_check(lws_sorted_usec_list_t *sul)
{
    struct server *srv = lws_container_of(sul, struct server, idle_exit_timer);
    lws_usec_t now = lws_now_usecs();
    if (session_count() > 0 || !backend_types_drained(&gateway_get()->backend_types)) {
        srv->idle_since = now;
    } else if (now - srv->idle_since >= srv->idle_exit_us) {
        log_info("no connection for the idle timeout: exiting");
        srv->stopping = 1;
        return;
    }
    lws_sul_schedule(gateway_get()->context, 0, &srv->idle_exit_timer, idle_exit_check,
                     IDLE_CHECK_US);
}

void server_exit_when_idle(struct server *srv, unsigned seconds)
{
    srv->idle_exit_us = (lws_usec_t)seconds * LWS_USEC_PER_SEC;
    srv->idle_since = lws_now_usecs();
    lws_sul_schedule(gateway_get()->context, 0, &srv->idle_exit_timer, idle_exit_check,
                     IDLE_CHECK_US);
}

void server_request_reload(struct server *srv)
{
    srv->reload_requested = 1;
    if (gateway_get()->context)
        lws_cancel_service(gateway_get()->context);
}

void server_stop(struct server *srv)
{
    srv->stopping = 1;
    if (gateway_get()->context)
        lws_cancel_service(gateway_get()->context);
}

void server_destroy(struct server *srv)
{
    if (!srv)
        return;
    if (gateway_get()->context) {
        lws_sul_cancel(&srv->drain_timer);
        lws_sul_cancel(&srv->map_poll_timer);
        lws_sul_cancel(&srv->pool_trim_timer);
        lws_sul_cancel(&srv->idle_exit_timer);
        session_sweep_stop();
        backend_types_shutdown(&gateway_get()->backend_types);
        auth_http_stopping();
        lws_context_destroy(gateway_get()->context); /* sessions, and their broker links, go here */
        gateway_get()->context = NULL;
        peer_addr_shutdown();
        ws_deflate_shutdown();
    }
    auth_http_stop();
    backend_types_stop(&gateway_get()->backend_types);
    rules_unref(srv->rules);
    free_protocols(srv->protocols, srv->n_protocols);
    for (size_t i = 0; i < srv->n_vhost_names; i++)
        free(srv->vhost_names[i]);
    free(srv->vhost_names);
    free(srv->config_path);
    free(srv);
    buf_pool_release_all(); /* every connection is gone: its blocks are free */
}

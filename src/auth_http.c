/* auth_http.c - the auth service's HTTP client on the event loop; see
 * auth_http.h.
 *
 * One request per cache key in flight (core/auth_service.c keeps the
 * waiters). A request is an lws HTTP client connection (POST, the JSON body
 * written at CLIENT_HTTP_WRITEABLE) with a timer for timeout_ms. It is
 * settled exactly once - answered, failed, closed or timed out - and then
 * every client waiting on its key hears the verdict. It is freed once it is
 * settled and lws has let go of its connection, whichever comes last. */
#include "auth_http.h"

#include "config.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "rules.h"
#include "session.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define REQ_TAG 0xa07a11edu
/* Answers and requests in flight held at once, per worker process. */
#define CACHE_MAX_ENTRIES 100000

struct auth_wait {
    char *key;               /* owned: the cache key waited on */
    struct session *session; /* borrowed; NULL until bound */
};

struct auth_req {
    uint32_t tag;       /* REQ_TAG: lws's opaque pointer can be told apart */
    struct lws *wsi;    /* NULL until lws fills it, and again once it is gone */
    char *key;          /* owned */
    unsigned char *out; /* owned: LWS_PRE bytes, then the body (client secrets: cleansed) */
    size_t out_len;
    char *answer; /* owned: the answer's body so far, at most AUTH_ANSWER_MAX_BYTES + 1 */
    size_t answer_len;
    int status;      /* the answer's HTTP status; 0 until it came */
    int64_t cache_s; /* from the config the request was made under */
    lws_usec_t started_us;
    bool in_connect; /* inside lws_client_connect_via_info() */
    bool failed;     /* it failed inside that call: settled from the loop */
    bool settled;
    bool wsi_gone;
    lws_sorted_usec_list_t timer; /* the timeout, or the deferred failure */
    struct auth_req *prev, *next; /* in auth_http_state.requests */
};

/* This module's part of struct gateway (auth_http.h). */
static struct auth_http_state *state(void) { return &gateway_get()->auth_http; }

bool auth_http_is(const void *opaque) { return opaque && *(const uint32_t *)opaque == REQ_TAG; }

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* --- waiting clients --------------------------------------------------------- */

void auth_wait_bind(struct auth_wait *w, struct session *s) { w->session = s; }

void auth_wait_cancel(struct auth_wait *w)
{
    if (!w)
        return;
    if (state()->cache)
        auth_cache_forget(state()->cache, w->key, w);
    free(w->key);
    free(w);
}

/* --- one request --------------------------------------------------------------- */

static void req_maybe_free(struct auth_req *r)
{
    if (!r->settled || !r->wsi_gone || r->in_connect)
        return;
    lws_sul_cancel(&r->timer);
    if (r->prev)
        r->prev->next = r->next;
    else
        state()->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->out)
        OPENSSL_cleanse(r->out, r->out_len);
    free(r->out);
    free(r->answer);
    free(r->key);
    r->tag = 0;
    free(r);
}

/* Tells every client waiting on the key; an allowed answer is cached. */
static void settle(struct auth_req *r, enum auth_verdict verdict, json_t *claims,
                   const char *reason)
{
    if (r->settled)
        return;
    r->settled = true;
    lws_sul_cancel(&r->timer);
    metrics_count_auth_request((int)verdict, (double)(lws_now_usecs() - r->started_us) / 1e6);
    if (verdict != AUTH_ALLOWED)
        log_info("auth service refused or failed", "reason", reason);
    if (state()->stopping)
        return;
    size_t n = 0;
    int64_t now = now_ms();
    void **waiters = auth_cache_settle(state()->cache, r->key, verdict == AUTH_ALLOWED, claims, now,
                                       now + r->cache_s * 1000, &n);
    for (size_t i = 0; i < n; i++) {
        struct auth_wait *w = waiters[i];
        if (w->session)
            session_auth_answer(w->session, verdict, claims, reason);
    }
    free(waiters);
}

static void on_timer(lws_sorted_usec_list_t *sul)
{
    struct auth_req *r = lws_container_of(sul, struct auth_req, timer);
    settle(r, AUTH_UNAVAILABLE, NULL,
           r->failed ? "auth service unreachable" : "auth service timed out");
    if (r->wsi) /* closed from the loop: WSI_DESTROY frees r */
        lws_set_timeout(r->wsi, PENDING_TIMEOUT_KILLED_BY_PROXY_CLIENT_CLOSE, LWS_TO_KILL_ASYNC);
    req_maybe_free(r);
}

static void settle_answer(struct auth_req *r)
{
    json_t *claims = NULL;
    char reason[100];
    enum auth_verdict v =
        auth_service_answer(r->status, r->answer, r->answer_len, &claims, reason, sizeof(reason));
    settle(r, v, claims, reason);
    json_decref(claims);
}

/* "http://host[:port]/path" (checked by the config loader). */
static int split_url(const char *url, char *host, size_t host_len, int *port, char *path,
                     size_t path_len)
{
    char copy[1024];
    const char *prot, *address, *p;
    if (snprintf(copy, sizeof(copy), "%s", url) >= (int)sizeof(copy) ||
        lws_parse_uri(copy, &prot, &address, port, &p) != 0)
        return -1;
    if (snprintf(host, host_len, "%s", address) >= (int)host_len ||
        snprintf(path, path_len, "/%s", p) >= (int)path_len)
        return -1;
    return 0;
}

/* Starts the request for `key`; 0, or -1 if it cannot even start (then the
 * caller settles the key itself). Failures after this are settled from the
 * loop, never from inside this call. */
static int start_request(struct lws *client, const struct wsg_auth_http *cfg, const char *key,
                         const char *body, size_t body_len)
{
    char host[256], path[1024];
    int port = 80;
    if (split_url(cfg->url, host, sizeof(host), &port, path, sizeof(path)) != 0)
        return -1;
    struct auth_req *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->tag = REQ_TAG;
    r->cache_s = cfg->cache_s;
    r->out_len = LWS_PRE + body_len;
    r->key = strdup(key);
    r->out = malloc(r->out_len);
    if (!r->key || !r->out) {
        free(r->key);
        free(r->out);
        free(r);
        return -1;
    }
    memcpy(r->out + LWS_PRE, body, body_len);
    r->started_us = lws_now_usecs();
    r->next = state()->requests;
    if (state()->requests)
        state()->requests->prev = r;
    state()->requests = r;

    struct lws_context *context = lws_get_context(client);
    struct lws_client_connect_info info;
    memset(&info, 0, sizeof(info));
    info.context = context;
    info.vhost = lws_get_vhost(client);
    info.address = host;
    info.port = port;
    info.path = path;
    info.host = host;
    info.method = "POST";
    info.local_protocol_name = AUTH_HTTP_PROTOCOL_NAME;
    info.opaque_user_data = r;
    info.pwsi = &r->wsi;
    r->in_connect = true;
    struct lws *wsi = lws_client_connect_via_info(&info);
    r->in_connect = false;
    if (!wsi) {
        r->wsi = NULL;
        r->wsi_gone = true;
        r->failed = true;
    }
    lws_sul_schedule(context, 0, &r->timer, on_timer,
                     r->failed ? 1 : cfg->timeout_ms * LWS_USEC_PER_SEC / 1000);
    return 0;
}

/* --- the handshake's side ------------------------------------------------------ */

/* The value of request header `name` (lower case), malloc'd; NULL if absent. */
static char *header_value(struct lws *wsi, const char *name)
{
    char want[128];
    int wlen = snprintf(want, sizeof(want), "%s:", name);
    if (wlen >= (int)sizeof(want))
        return NULL;
    for (int t = 0; t < (int)WSI_TOKEN_COUNT; t++) {
        const char *tn = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        if (!tn || strcasecmp(tn, want) != 0)
            continue;
        int n = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        if (n <= 0)
            return NULL;
        /* room for the separators lws puts between repeated headers */
        size_t cap = (size_t)n * 2 + 16;
        char *v = malloc(cap);
        if (v && lws_hdr_copy(wsi, v, (int)cap, (enum lws_token_indexes)t) < 0) {
            free(v);
            v = NULL;
        }
        return v;
    }
    int n = lws_hdr_custom_length(wsi, want, wlen);
    if (n < 0)
        return NULL;
    char *v = malloc((size_t)n + 1);
    if (v && lws_hdr_custom_copy(wsi, v, n + 1, want, wlen) < 0) {
        free(v);
        v = NULL;
    }
    return v;
}

static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

int auth_http_begin(struct lws *wsi, const struct rules *rules, const struct route_match *m,
                    const char *uri, const char *client, json_t **claims, struct auth_wait **wait,
                    char *reason, size_t reason_len)
{
    const struct wsg_auth_http *cfg = &rules->cfg->auth.http;
    *claims = NULL;
    *wait = NULL;
    if (!state()->cache && !(state()->cache = auth_cache_create(CACHE_MAX_ENTRIES))) {
        snprintf(reason, reason_len, "out of memory");
        return 503;
    }
    char path[2048], origin[256], offered[1024];
    snprintf(path, sizeof(path), "%.*s", (int)strcspn(uri, "?"), uri);
    const char *query = strchr(uri, '?');
    bool has_origin = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) > 0;
    if (lws_hdr_copy(wsi, offered, sizeof(offered), WSI_TOKEN_PROTOCOL) < 0)
        offered[0] = '\0';
    size_t n = cfg->n_headers;
    char **values = calloc(n ? n : 1, sizeof(*values));
    if (!values) {
        snprintf(reason, reason_len, "out of memory");
        return 503;
    }
    for (size_t i = 0; i < n; i++)
        values[i] = header_value(wsi, cfg->headers[i]);
    struct auth_request_info info = {
        .route = m->route->name,
        .path = path,
        .query = query ? query + 1 : "",
        .client = client,
        .origin = has_origin ? origin : NULL,
        .subprotocols = offered,
        .header_names = (const char *const *)cfg->headers,
        .header_values = (const char *const *)values,
        .n_headers = n,
    };
    int status = 503;
    char *body = NULL;
    size_t body_len = 0;
    struct auth_wait *w = calloc(1, sizeof(*w));
    if (!w || !(w->key = auth_service_key(&info, cfg->url))) {
        snprintf(reason, reason_len, "out of memory");
        goto out;
    }
    switch (auth_cache_lookup(state()->cache, w->key, now_ms(), w, claims)) {
    case AUTH_CACHE_HIT:
        metrics_count_auth_cache_hit();
        status = 0;
        break;
    case AUTH_CACHE_WAIT:
        *wait = w;
        w = NULL;
        status = 0;
        break;
    case AUTH_CACHE_REQUEST:
        body = auth_service_body(&info, &body_len);
        if (body && start_request(wsi, cfg, w->key, body, body_len) == 0) {
            *wait = w;
            w = NULL;
            status = 0;
            break;
        }
        size_t k;
        free(auth_cache_settle(state()->cache, w->key, false, NULL, 0, 0, &k)); /* only w waited */
        snprintf(reason, reason_len, "route %s: cannot ask the auth service", m->route->name);
        metrics_count_auth_request(AUTH_UNAVAILABLE, 0);
        break;
    case AUTH_CACHE_FULL:
        snprintf(reason, reason_len, "route %s: too many auth requests", m->route->name);
        break;
    }
out:
    if (w) {
        free(w->key);
        free(w);
    }
    free_secret(body);
    for (size_t i = 0; i < n; i++)
        free_secret(values[i]);
    free(values);
    return status;
}

/* --- lws events ------------------------------------------------------------------ */

static int append_answer(struct auth_req *r, const char *in, size_t len)
{
    if (r->answer_len > AUTH_ANSWER_MAX_BYTES)
        return 0; /* already too long: auth_service_answer refuses it */
    size_t keep = len;
    if (r->answer_len + keep > AUTH_ANSWER_MAX_BYTES + 1)
        keep = AUTH_ANSWER_MAX_BYTES + 1 - r->answer_len;
    char *a = realloc(r->answer, r->answer_len + keep + 1);
    if (!a)
        return -1;
    r->answer = a;
    memcpy(a + r->answer_len, in, keep);
    r->answer_len += keep;
    a[r->answer_len] = '\0';
    return 0;
}

int auth_http_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    (void)user;
    struct auth_req *r = lws_get_opaque_user_data(wsi);
    if (!auth_http_is(r))
        return 0;

    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = (unsigned char **)in, *end = *p + len;
        char length[24];
        int n = snprintf(length, sizeof(length), "%zu", r->out_len - LWS_PRE);
        if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                         (const unsigned char *)"application/json", 16, p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                         (const unsigned char *)length, n, p, end))
            return -1;
        lws_client_http_body_pending(wsi, 1);
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
        lws_client_http_body_pending(wsi, 0);
        if (lws_write(wsi, r->out + LWS_PRE, r->out_len - LWS_PRE, LWS_WRITE_HTTP_FINAL) < 0)
            return -1;
        return 0;
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        r->status = (int)lws_http_client_http_response(wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        return append_answer(r, in, len);
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        char buf[LWS_PRE + 4096], *p = buf + LWS_PRE;
        int n = (int)sizeof(buf) - LWS_PRE;
        return lws_http_client_read(wsi, &p, &n) < 0 ? -1 : 0;
    }
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        settle_answer(r);
        /* One request per connection: close it from the loop. */
        lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PROXY_CLIENT_CLOSE, LWS_TO_KILL_ASYNC);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (r->in_connect)
            r->failed = true; /* settled from the loop (see start_request) */
        else
            settle(r, AUTH_UNAVAILABLE, NULL, "auth service unreachable");
        return 0;
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        /* Closed before the answer was complete: a 200 whose body may be cut
         * short allows nothing (fail closed); a refusal is a refusal. */
        if (!r->settled && (r->status == 401 || r->status == 403))
            settle_answer(r);
        else if (!r->in_connect)
            settle(r, AUTH_UNAVAILABLE, NULL, "auth service closed the connection");
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        lws_set_opaque_user_data(wsi, NULL);
        r->wsi = NULL;
        r->wsi_gone = true;
        if (!r->in_connect)
            settle(r, AUTH_UNAVAILABLE, NULL, "auth service closed the connection");
        req_maybe_free(r);
        return 0;
    default:
        return 0;
    }
}

void auth_http_stopping(void)
{
    state()->stopping = true;
    for (struct auth_req *r = state()->requests; r; r = r->next)
        lws_sul_cancel(&r->timer);
}

void auth_http_stop(void)
{
    while (state()->requests) {
        struct auth_req *r = state()->requests;
        r->settled = r->wsi_gone = true;
        r->in_connect = false;
        req_maybe_free(r);
    }
    auth_cache_destroy(state()->cache);
    state()->cache = NULL;
    state()->stopping = false;
}

/* auth_service.c - request body, cache key, answer and cache of the auth
 * service (SPEC-2 A); see auth_service.h. */
#include "auth_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the request ------------------------------------------------------------ */

/* A value that is not UTF-8 (json_string() refuses it) goes as null. */
static json_t *str_or_null(const char *value)
{
    json_t *v = value ? json_string(value) : NULL;
    return v ? v : json_null();
}

static int set_str(json_t *obj, const char *key, const char *value)
{
    return json_object_set_new(obj, key, str_or_null(value));
}

/* "a, b ,c" -> ["a", "b", "c"] (empty entries dropped, one that is not
 * UTF-8 as null). */
static json_t *offered_list(const char *offered)
{
    json_t *arr = json_array();
    for (const char *p = offered; arr && p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        json_t *v = n > 0 ? json_stringn(p, n) : NULL;
        if (n > 0 && json_array_append_new(arr, v ? v : json_null()) != 0) {
            json_decref(arr);
            return NULL;
        }
        p += n;
    }
    return arr;
}

char *auth_service_body(const struct auth_request_info *r, size_t *len)
{
    json_t *body = json_object(), *headers = json_object(),
           *offered = offered_list(r->subprotocols);
    char *text = NULL;
    if (!body || !headers || !offered)
        goto out;
    for (size_t i = 0; i < r->n_headers; i++)
        if (r->header_values[i] &&
            json_object_set_new(headers, r->header_names[i], str_or_null(r->header_values[i])))
            goto out;
    if (set_str(body, "route", r->route) || set_str(body, "path", r->path) ||
        set_str(body, "query", r->query ? r->query : "") || set_str(body, "client", r->client) ||
        set_str(body, "origin", r->origin) || json_object_set(body, "subprotocols", offered) ||
        json_object_set(body, "headers", headers))
        goto out;
    text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text)
        *len = strlen(text);
out:
    json_decref(offered);
    json_decref(headers);
    json_decref(body);
    return text;
}

/* Appends "<len>:<s>" (or "-" for NULL). */
static int key_part(char **buf, size_t *used, size_t *cap, const char *s)
{
    char head[24];
    size_t n = s ? strlen(s) : 0;
    int h = s ? snprintf(head, sizeof(head), "%zu:", n) : snprintf(head, sizeof(head), "-");
    size_t need = *used + (size_t)h + n + 1;
    if (need > *cap) {
        size_t cap2 = need * 2;
        char *b = realloc(*buf, cap2);
        if (!b)
            return -1;
        *buf = b;
        *cap = cap2;
    }
    memcpy(*buf + *used, head, (size_t)h);
    *used += (size_t)h;
    if (n)
        memcpy(*buf + *used, s, n);
    *used += n;
    (*buf)[*used] = '\0';
    return 0;
}

char *auth_service_key(const struct auth_request_info *r, const char *url)
{
    char *buf = NULL;
    size_t used = 0, cap = 0;
    if (key_part(&buf, &used, &cap, url) || key_part(&buf, &used, &cap, r->route))
        goto fail;
    for (size_t i = 0; i < r->n_headers; i++)
        if (key_part(&buf, &used, &cap, r->header_values[i]))
            goto fail;
    return buf;
fail:
    free(buf);
    return NULL;
}

/* --- the answer ------------------------------------------------------------- */

enum auth_verdict auth_service_answer(int status, const char *body, size_t len, json_t **claims,
                                      char *reason, size_t reason_len)
{
    *claims = NULL;
    if (status == 401 || status == 403) {
        snprintf(reason, reason_len, "%s", status == 401 ? "not authenticated" : "forbidden");
        return status == 401 ? AUTH_UNAUTHORIZED : AUTH_FORBIDDEN;
    }
    if (status != 200) {
        if (status > 0)
            snprintf(reason, reason_len, "auth service answered %d", status);
        else
            snprintf(reason, reason_len, "auth service unavailable");
        return AUTH_UNAVAILABLE;
    }
    if (len > AUTH_ANSWER_MAX_BYTES) {
        snprintf(reason, reason_len, "auth service answer too long");
        return AUTH_UNAVAILABLE;
    }
    snprintf(reason, reason_len, "allowed");
    json_t *doc = body && len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    json_t *c = json_object_get(doc, "claims"); /* NULL unless doc is an object */
    if (c && !json_is_object(c)) {
        json_decref(doc);
        snprintf(reason, reason_len, "auth service answer: \"claims\" is not an object");
        return AUTH_UNAVAILABLE;
    }
    *claims = json_incref(c);
    json_decref(doc);
    return AUTH_ALLOWED;
}

/* --- the cache -------------------------------------------------------------- */

struct cache_entry {
    struct cache_entry *next; /* in its bucket */
    char *key;                /* owned */
    bool pending;             /* a request in flight; else an allowed answer */
    json_t *claims;           /* owned reference, or NULL */
    int64_t expires_ms;
    void **waiters; /* owned array of borrowed pointers, while pending */
    size_t n_waiters, cap_waiters;
};

struct auth_cache {
    struct cache_entry **buckets; /* owned */
    size_t n_buckets;             /* a power of two */
    size_t count, max_entries;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

struct auth_cache *auth_cache_create(size_t max_entries)
{
    struct auth_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->n_buckets = 256;
    c->max_entries = max_entries;
    c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    return c;
}

static void entry_free(struct cache_entry *e)
{
    free(e->key);
    json_decref(e->claims);
    free(e->waiters);
    free(e);
}

void auth_cache_destroy(struct auth_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_buckets; i++)
        for (struct cache_entry *e = c->buckets[i], *next; e; e = next) {
            next = e->next;
            entry_free(e);
        }
    free(c->buckets);
    free(c);
}

size_t auth_cache_size(const struct auth_cache *c) { return c->count; }

static struct cache_entry **find(struct auth_cache *c, const char *key)
{
    struct cache_entry **pe = &c->buckets[hash(key) & (c->n_buckets - 1)];
    while (*pe && strcmp((*pe)->key, key) != 0)
        pe = &(*pe)->next;
    return pe;
}

static void unlink_entry(struct auth_cache *c, struct cache_entry **pe)
{
    struct cache_entry *e = *pe;
    *pe = e->next;
    entry_free(e);
    c->count--;
}

/* Drops every expired answer (when the cache is full). */
static void prune(struct auth_cache *c, int64_t now_ms)
{
    for (size_t i = 0; i < c->n_buckets; i++)
        for (struct cache_entry **pe = &c->buckets[i]; *pe;)
            if (!(*pe)->pending && (*pe)->expires_ms <= now_ms)
                unlink_entry(c, pe);
            else
                pe = &(*pe)->next;
}

/* Doubles the buckets past one entry per bucket; failure only costs speed. */
static void grow(struct auth_cache *c)
{
    size_t n = c->n_buckets * 2;
    struct cache_entry **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < c->n_buckets; i++)
        for (struct cache_entry *e = c->buckets[i], *next; e; e = next) {
            next = e->next;
            struct cache_entry **slot = &b[hash(e->key) & (n - 1)];
            e->next = *slot;
            *slot = e;
        }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = n;
}

static int add_waiter(struct cache_entry *e, void *waiter)
{
    if (e->n_waiters == e->cap_waiters) {
        size_t cap = e->cap_waiters ? e->cap_waiters * 2 : 4;
        void **w = realloc(e->waiters, cap * sizeof(*w));
        if (!w)
            return -1;
        e->waiters = w;
        e->cap_waiters = cap;
    }
    e->waiters[e->n_waiters++] = waiter;
    return 0;
}

enum auth_cache_result auth_cache_lookup(struct auth_cache *c, const char *key, int64_t now_ms,
                                         void *waiter, json_t **claims)
{
    *claims = NULL;
    struct cache_entry **pe = find(c, key);
    if (*pe && !(*pe)->pending && (*pe)->expires_ms <= now_ms)
        unlink_entry(c, pe); /* pe now points at the rest of the chain */
    pe = find(c, key);
    if (*pe && !(*pe)->pending) {
        *claims = json_incref((*pe)->claims);
        return AUTH_CACHE_HIT;
    }
    if (*pe)
        return add_waiter(*pe, waiter) == 0 ? AUTH_CACHE_WAIT : AUTH_CACHE_FULL;
    if (c->count >= c->max_entries)
        prune(c, now_ms);
    if (c->count >= c->max_entries)
        return AUTH_CACHE_FULL;
    if (c->count >= c->n_buckets)
        grow(c);
    struct cache_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key)) || add_waiter(e, waiter) != 0) {
        if (e)
            entry_free(e);
        return AUTH_CACHE_FULL;
    }
    e->pending = true;
    pe = find(c, key);
    *pe = e;
    c->count++;
    return AUTH_CACHE_REQUEST;
}

void auth_cache_forget(struct auth_cache *c, const char *key, void *waiter)
{
    struct cache_entry *e = *find(c, key);
    if (!e || !e->pending)
        return;
    for (size_t i = 0; i < e->n_waiters; i++)
        if (e->waiters[i] == waiter) {
            e->waiters[i] = e->waiters[--e->n_waiters];
            return;
        }
}

void **auth_cache_settle(struct auth_cache *c, const char *key, bool allowed, json_t *claims,
                         int64_t now_ms, int64_t expires_ms, size_t *n)
{
    *n = 0;
    struct cache_entry **pe = find(c, key);
    if (!*pe || !(*pe)->pending)
        return NULL;
    struct cache_entry *e = *pe;
    void **waiters = e->waiters;
    *n = e->n_waiters;
    e->waiters = NULL;
    e->n_waiters = e->cap_waiters = 0;
    if (allowed && expires_ms > now_ms) {
        e->pending = false;
        e->claims = json_incref(claims);
        e->expires_ms = expires_ms;
    } else {
        unlink_entry(c, pe);
    }
    if (*n == 0) {
        free(waiters);
        return NULL;
    }
    return waiters;
}

/* target_pool.c - round-robin and down-marking of backend targets; see
 * target_pool.h. Loop-thread only. */
#include "target_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct target_health_entry {
    struct target_health_entry *next;
    char *key;              /* "host:port" or "unix:/path"; owned */
    uint64_t down_until_ms; /* 0 = up */
    uint32_t backoff_ms;    /* next pause if it fails again */
};

struct target_rotor {
    struct target_rotor *next;
    char *route; /* owned */
    size_t next_start;
};

static void target_key(const struct wsg_target *t, char *out, size_t len)
{
    if (wsg_target_is_unix(t))
        snprintf(out, len, "unix:%s", t->host);
    else
        snprintf(out, len, "%s:%d", t->host, t->port);
}

/* Target maps with thousands of consoles touch one entry per attempt. */
static struct target_health_entry *health_find(const struct target_health *th,
                                               const struct wsg_target *t)
{
    char key[300];
    target_key(t, key, sizeof(key));
    for (struct target_health_entry *h = th->healths; h; h = h->next)
        if (strcmp(h->key, key) == 0)
            return h;
    return NULL;
}

static struct target_health_entry *health_add(struct target_health *th, const struct wsg_target *t)
{
    char key[300];
    target_key(t, key, sizeof(key));
    struct target_health_entry *h = calloc(1, sizeof(*h));
    if (!h || !(h->key = strdup(key))) {
        free(h);
        return NULL;
    }
    h->backoff_ms = TARGET_RETRY_FIRST_MS;
    h->next = th->healths;
    th->healths = h;
    return h;
}

bool target_pool_is_down(const struct target_health *th, const struct wsg_target *t,
                         uint64_t now_ms)
{
    const struct target_health_entry *h = health_find(th, t);
    return h && h->down_until_ms > now_ms;
}

static size_t rotor_next(struct target_health *th, const char *route_name, size_t n)
{
    struct target_rotor *r = th->rotors;
    while (r && strcmp(r->route, route_name) != 0)
        r = r->next;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r || !(r->route = strdup(route_name))) {
            free(r);
            return 0;
        }
        r->next = th->rotors;
        th->rotors = r;
    }
    return r->next_start++ % n;
}

size_t target_pool_order(struct target_health *th, const char *route_name,
                         const struct wsg_target *targets, size_t n, uint64_t now_ms, size_t *order)
{
    if (n == 0)
        return 0;
    size_t start = rotor_next(th, route_name, n);
    size_t used = 0;
    /* Healthy targets first, in round-robin order; then the ones marked down. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++) {
            size_t idx = (start + i) % n;
            bool down = target_pool_is_down(th, &targets[idx], now_ms);
            if (down == (pass == 1))
                order[used++] = idx;
        }
    return used;
}

void target_pool_report(struct target_health *th, const struct wsg_target *t, bool connected,
                        uint64_t now_ms)
{
    struct target_health_entry *h = health_find(th, t);
    if (!h && !connected)
        h = health_add(th, t);
    if (!h)
        return;
    if (connected) {
        h->down_until_ms = 0;
        h->backoff_ms = TARGET_RETRY_FIRST_MS;
        return;
    }
    h->down_until_ms = now_ms + h->backoff_ms;
    h->backoff_ms =
        h->backoff_ms * 2 > TARGET_RETRY_MAX_MS ? TARGET_RETRY_MAX_MS : h->backoff_ms * 2;
}

void target_pool_reset(struct target_health *th)
{
    while (th->healths) {
        struct target_health_entry *next = th->healths->next;
        free(th->healths->key);
        free(th->healths);
        th->healths = next;
    }
    while (th->rotors) {
        struct target_rotor *next = th->rotors->next;
        free(th->rotors->route);
        free(th->rotors);
        th->rotors = next;
    }
}

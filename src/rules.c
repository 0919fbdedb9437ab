/* rules.c - the rules in force, shared by reference; see rules.h. */
#include "rules.h"

#include "auth.h"
#include "client_addr.h"
#include "json_check.h"
#include "map_watch.h"
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rules *rules_create(struct wsg_config *cfg, struct map_watch *maps, char *err,
                           size_t err_len)
{
    struct rules *r = calloc(1, sizeof(*r));
    snprintf(err, err_len, "out of memory");
    if (r) {
        r->refs = 1;
        r->cfg = cfg;
        r->maps = maps;
        r->routes = route_table_create(cfg);
        r->trusted = addr_set_create(cfg->trusted_proxies, cfg->n_trusted_proxies);
        if (cfg->auth.has_jwt && !(r->auth = auth_verifier_create(&cfg->auth.jwt, err, err_len)))
            r->cfg = NULL; /* marks the failure below */
    }
    if (!r || !r->routes || !r->trusted || !r->cfg) {
        if (r) {
            route_table_destroy(r->routes);
            addr_set_destroy(r->trusted);
        }
        free(r);
        map_watch_destroy(maps);
        config_free(cfg);
        return NULL;
    }
    return r;
}

struct rules *rules_load(const char *path, struct config_errors *errs)
{
    struct wsg_config *cfg = config_load_file(path, errs);
    if (!cfg)
        return NULL;
    struct map_watch *maps = map_watch_create(cfg, errs);
    if (!maps) {
        config_free(cfg);
        return NULL;
    }
    char err[300];
    struct rules *r = rules_create(cfg, maps, err, sizeof(err));
    if (!r)
        jcheck_add_line(errs, "%s: %s", path, err);
    return r;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_listener(const struct wsg_listen *a, const struct wsg_listen *b)
{
    return strcmp(a->host, b->host) == 0 && a->port == b->port && a->mode == b->mode &&
           a->proxy_protocol == b->proxy_protocol && a->has_tls == b->has_tls &&
           (!a->has_tls ||
            (same_str(a->tls.cert, b->tls.cert) && same_str(a->tls.key, b->tls.key) &&
             a->tls.allow_plain == b->tls.allow_plain));
}

void rules_check_reloadable(const struct wsg_config *running, const struct wsg_config *next,
                            bool (*protocol_known)(void *ctx, const char *name), void *ctx,
                            struct config_errors *errs)
{
    bool same = running->n_listen == next->n_listen;
    for (size_t i = 0; same && i < next->n_listen; i++)
        same = same_listener(&running->listen[i], &next->listen[i]);
    if (!same)
        jcheck_add_line(errs,
                        "%s: listen: changed; listeners (and certificate paths) change "
                        "only with a restart",
                        next->source);
    if (running->workers != next->workers)
        jcheck_add_line(errs,
                        "%s: workers: changed; the number of worker processes changes "
                        "only with a restart",
                        next->source);
    for (size_t r = 0; r < next->n_routes; r++)
        for (size_t i = 0; i < next->routes[r].n_subprotocols; i++)
            if (!protocol_known(ctx, next->routes[r].subprotocols[i]))
                jcheck_add_line(errs,
                                "%s: routes[%zu].subprotocols[%zu]: \"%s\" is new; a "
                                "subprotocol name the gateway did not start with needs a "
                                "restart",
                                next->source, r, i, next->routes[r].subprotocols[i]);
}

struct rules *rules_ref(struct rules *r)
{
    r->refs++;
    return r;
}

void rules_unref(struct rules *r)
{
    if (!r || --r->refs > 0)
        return;
    map_watch_destroy(r->maps);
    route_table_destroy(r->routes);
    addr_set_destroy(r->trusted);
    auth_verifier_destroy(r->auth);
    config_free(r->cfg);
    free(r);
}

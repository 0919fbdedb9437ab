/* backend_type.c - the registry of backend types; see backend_type.h. */
#include "backend_type.h"

#include <string.h>

/* Process state: filled once at startup (backends_register_builtin), read
 * by the loop's thread only. */
static const struct backend_type *registry[BACKEND_TYPES_MAX];
static size_t n_registered;

int backend_type_register(const struct backend_type *t)
{
    if (!t || !t->name || !t->open || n_registered == BACKEND_TYPES_MAX)
        return -1;
    for (size_t i = 0; i < n_registered; i++)
        if (registry[i] == t || strcmp(registry[i]->name, t->name) == 0 ||
            registry[i]->route_type == t->route_type)
            return -1;
    registry[n_registered++] = t;
    return 0;
}

void backend_types_clear(void)
{
    memset(registry, 0, sizeof(registry));
    n_registered = 0;
}

const struct backend_type *backend_type_for(enum wsg_route_type route_type)
{
    for (size_t i = 0; i < n_registered; i++)
        if (registry[i]->route_type == route_type)
            return registry[i];
    return NULL;
}

const struct backend_type *backend_type_named(const char *name)
{
    for (size_t i = 0; name && i < n_registered; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

const struct backend_type *backend_type_owning(const void *opaque)
{
    for (size_t i = 0; opaque && i < n_registered; i++)
        if (registry[i]->owns && registry[i]->owns(opaque))
            return registry[i];
    return NULL;
}

const struct backend_type *backend_type_at(size_t i)
{
    return i < n_registered ? registry[i] : NULL;
}

void backend_types_set_worker(int index)
{
    for (size_t i = 0; i < n_registered; i++)
        if (registry[i]->set_worker)
            registry[i]->set_worker(index);
}

int backend_types_start(const struct wsg_config *cfg, struct lws_context *ctx, char *err,
                        size_t err_len)
{
    for (size_t i = 0; i < n_registered; i++) {
        if (!registry[i]->start || registry[i]->start(cfg, ctx, err, err_len) == 0)
            continue;
        while (i-- > 0)
            if (registry[i]->stop)
                registry[i]->stop();
        return -1;
    }
    return 0;
}

/* Each type checks and adopts its part in one step: a refusal by a later
 * type leaves an earlier one's adoption in place. Only one type reloads
 * anything today (mqtt: its brokers); a second one would need a check step
 * before the adopt step. */
int backend_types_reload(const struct wsg_config *next, char *err, size_t err_len)
{
    for (size_t i = 0; i < n_registered; i++)
        if (registry[i]->reload && registry[i]->reload(next, err, err_len) != 0)
            return -1;
    return 0;
}

void backend_types_service(void)
{
    for (size_t i = 0; i < n_registered; i++)
        if (registry[i]->service)
            registry[i]->service();
}

const char *backend_types_unavailable(const char **kind)
{
    for (size_t i = 0; i < n_registered; i++) {
        const char *down = registry[i]->unavailable ? registry[i]->unavailable() : NULL;
        if (down) {
            *kind = registry[i]->resource_kind ? registry[i]->resource_kind : registry[i]->name;
            return down;
        }
    }
    return NULL;
}

void backend_types_drain(void)
{
    for (size_t i = 0; i < n_registered; i++)
        if (registry[i]->drain)
            registry[i]->drain();
}

bool backend_types_drained(void)
{
    for (size_t i = 0; i < n_registered; i++)
        if (registry[i]->drained && !registry[i]->drained())
            return false;
    return true;
}

void backend_types_shutdown(void)
{
    for (size_t i = n_registered; i-- > 0;)
        if (registry[i]->shutdown)
            registry[i]->shutdown();
}

void backend_types_stop(void)
{
    for (size_t i = n_registered; i-- > 0;)
        if (registry[i]->stop)
            registry[i]->stop();
}

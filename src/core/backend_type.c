/* backend_type.c - the registry of backend types; see backend_type.h. */
#include "backend_type.h"

#include <string.h>

int backend_type_register(struct backend_registry *reg, const struct backend_type *t)
{
    if (!t || !t->name || !t->open || reg->n == BACKEND_TYPES_MAX)
        return -1;
    for (size_t i = 0; i < reg->n; i++)
        if (reg->types[i] == t || strcmp(reg->types[i]->name, t->name) == 0 ||
            reg->types[i]->route_type == t->route_type)
            return -1;
    reg->types[reg->n++] = t;
    return 0;
}

void backend_types_clear(struct backend_registry *reg) { memset(reg, 0, sizeof(*reg)); }

const struct backend_type *backend_type_for(const struct backend_registry *reg,
                                            enum wsg_route_type route_type)
{
    for (size_t i = 0; i < reg->n; i++)
        if (reg->types[i]->route_type == route_type)
            return reg->types[i];
    return NULL;
}

const struct backend_type *backend_type_named(const struct backend_registry *reg, const char *name)
{
    for (size_t i = 0; name && i < reg->n; i++)
        if (strcmp(reg->types[i]->name, name) == 0)
            return reg->types[i];
    return NULL;
}

const struct backend_type *backend_type_owning(const struct backend_registry *reg,
                                               const void *opaque)
{
    for (size_t i = 0; opaque && i < reg->n; i++)
        if (reg->types[i]->owns && reg->types[i]->owns(opaque))
            return reg->types[i];
    return NULL;
}

const struct backend_type *backend_type_at(const struct backend_registry *reg, size_t i)
{
    return i < reg->n ? reg->types[i] : NULL;
}

void backend_types_set_worker(const struct backend_registry *reg, int index)
{
    for (size_t i = 0; i < reg->n; i++)
        if (reg->types[i]->set_worker)
            reg->types[i]->set_worker(index);
}

int backend_types_start(const struct backend_registry *reg, const struct wsg_config *cfg,
                        struct lws_context *ctx, char *err, size_t err_len)
{
    for (size_t i = 0; i < reg->n; i++) {
        if (!reg->types[i]->start || reg->types[i]->start(cfg, ctx, err, err_len) == 0)
            continue;
        while (i-- > 0)
            if (reg->types[i]->stop)
                reg->types[i]->stop();
        return -1;
    }
    return 0;
}

/* Each type checks and adopts its part in one step: a refusal by a later
 * type leaves an earlier one's adoption in place. Only one type reloads
 * anything today (mqtt: its brokers); a second one would need a check step
 * before the adopt step. */
int backend_types_reload(const struct backend_registry *reg, const struct wsg_config *next,
                         char *err, size_t err_len)
{
    for (size_t i = 0; i < reg->n; i++)
        if (reg->types[i]->reload && reg->types[i]->reload(next, err, err_len) != 0)
            return -1;
    return 0;
}

void backend_types_service(const struct backend_registry *reg)
{
    for (size_t i = 0; i < reg->n; i++)
        if (reg->types[i]->service)
            reg->types[i]->service();
}

const char *backend_types_unavailable(const struct backend_registry *reg, const char **kind)
{
    for (size_t i = 0; i < reg->n; i++) {
        const char *down = reg->types[i]->unavailable ? reg->types[i]->unavailable() : NULL;
        if (down) {
            *kind =
                reg->types[i]->resource_kind ? reg->types[i]->resource_kind : reg->types[i]->name;
            return down;
        }
    }
    return NULL;
}

void backend_types_drain(const struct backend_registry *reg)
{
    for (size_t i = 0; i < reg->n; i++)
        if (reg->types[i]->drain)
            reg->types[i]->drain();
}

bool backend_types_drained(const struct backend_registry *reg)
{
    for (size_t i = 0; i < reg->n; i++)
        if (reg->types[i]->drained && !reg->types[i]->drained())
            return false;
    return true;
}

void backend_types_shutdown(const struct backend_registry *reg)
{
    for (size_t i = reg->n; i-- > 0;)
        if (reg->types[i]->shutdown)
            reg->types[i]->shutdown();
}

void backend_types_stop(const struct backend_registry *reg)
{
    for (size_t i = reg->n; i-- > 0;)
        if (reg->types[i]->stop)
            reg->types[i]->stop();
}

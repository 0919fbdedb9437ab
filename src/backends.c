/* backends.c - the one place that lists the backend types of this build.
 * A new kind of backend is a file that fills a `struct backend_type` and one
 * line here (docs/ARCHITECTURE.md, "Adding a backend type"). */
#include "backends.h"

#include "gateway.h"

#include <stddef.h>

static const struct backend_type *const builtin[] = {
    &tcp_backend_type,
    &mqtt_backend_type,
};

int backends_register_builtin(void)
{
    if (backend_type_at(&gateway_get()->backend_types, 0))
        return 0;
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
        if (backend_type_register(&gateway_get()->backend_types, builtin[i]) != 0)
            return -1;
    return 0;
}

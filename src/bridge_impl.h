/* bridge_impl.h - what bridge.c dispatches to: each kind of bridge (tcp_bridge.c,
 * mqtt_bridge.c) starts its struct with a `struct bridge` naming its
 * operations, and fills a backend type (backend_type.h) that backends.c
 * registers. Only the bridge implementations include this. */
#ifndef WSGATE_BRIDGE_IMPL_H
#define WSGATE_BRIDGE_IMPL_H

#include "bridge.h"

struct bridge_ops {
    void (*client_data)(struct bridge *b, const uint8_t *data, size_t len, bool first, bool final,
                        bool text);
    void (*client_drained)(struct bridge *b);
    void (*client_gone)(struct bridge *b);
};

struct bridge {
    const struct bridge_ops *ops;
};

#endif

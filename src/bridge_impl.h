/* bridge_impl.h - what bridge.c dispatches to: each kind of bridge (tcp_bridge.c,
 * mqtt_bridge.c) starts its struct with a `struct bridge` naming its
 * operations. Only the bridge implementations include this. */
#ifndef WSGATE_BRIDGE_IMPL_H
#define WSGATE_BRIDGE_IMPL_H

#include "bridge.h"

struct bridge_ops {
    void (*client_data)(struct bridge *b, const uint8_t *data, size_t len, bool first,
                        bool final, bool text);
    void (*client_drained)(struct bridge *b);
    void (*client_gone)(struct bridge *b);
};

struct bridge {
    const struct bridge_ops *ops;
};

/* Cancels tcp_bridge's shared connect-deadline timer (before the lws
 * context goes). */
void tcp_bridge_shutdown(void);

/* Each returns NULL when the backend side cannot even start. */
struct bridge *tcp_bridge_open(struct session *s);
struct bridge *mqtt_bridge_open(struct session *s);
int mqtt_bridge_check_request(const struct route_match *m, json_t *claims, char *reason,
                              size_t reason_len);

#endif

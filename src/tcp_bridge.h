/* tcp_bridge.h - backend type "tcp" (tcp_bridge.c): its table is
 * tcp_backend_type in backends.h; here only the state it keeps for the
 * whole process, which struct gateway holds. */
#ifndef WSGATE_TCP_BRIDGE_H
#define WSGATE_TCP_BRIDGE_H

#include <libwebsockets.h>
#include <stdbool.h>

struct tcp_bridge;

/* Backend connects in progress, in deadline order (struct gateway's
 * `tcp_deadlines`). Zeroed = none; a bridge is in it from its connect
 * attempt to the connect's outcome; one timer for the head. */
struct tcp_deadlines {
    struct tcp_bridge *head, *tail; /* borrowed: each bridge unlinks itself */
    lws_sorted_usec_list_t timer;
    bool timer_used; /* scheduled at least once: cancelled at shutdown */
};

#endif

/* gateway.h - the process's mutable state in one place: one struct gateway
 * per process (a forked worker gets its own copy with the fork), reached
 * with gateway_get(). Each member is declared by the module that owns it,
 * in that module's header; this file only gathers them, so the whole state
 * of a running wsgate reads at a glance. What stays file-scope elsewhere,
 * and why, is listed in docs/ARCHITECTURE.md ("Process state"). */
#ifndef WSGATE_GATEWAY_H
#define WSGATE_GATEWAY_H

#include <stddef.h>

#include "auth_http.h"
#include "backend_type.h"
#include "metrics.h"
#include "mqtt_broker.h"
#include "page_pool.h"
#include "peer_addr.h"
#include "proxy_accept.h"
#include "session.h"
#include "target_pool.h"
#include "tcp_backend.h"
#include "tcp_bridge.h"
#include "workers.h"
#include "ws_rx_guard.h"

struct lws_context;
struct server;

/* Every member is the loop thread's unless its comment says otherwise. */
struct gateway {
    /* --- the process (main.c, server.c) --------------------------------- */
    /* The lws context: set by server_create() as soon as lws made it, NULL
     * again once server_destroy() destroyed it. The one copy: every timer
     * and wake-up of ours is scheduled on it. */
    struct lws_context *context;
    /* The server being run (main.c): set once it serves, NULL when its loop
     * returned. Read by the signal handlers, hence volatile. */
    struct server *volatile running;
    /* lws's per-WebSocket receive buffers (server.c): made by the first
     * server_create(), kept for the process (page_pool.h). */
    struct page_pool rx_pool;
    /* This process as a worker (workers.c): the pipe to the supervisor until
     * workers_ready(). */
    struct workers_state worker;
    /* Counters in the mapping shared with the other workers (metrics.c):
     * metrics_init() to metrics_shutdown(). */
    struct metrics_mapping metrics;

    /* --- backends --------------------------------------------------------- */
    /* The backend types of this build (backends.c registers them once at
     * startup); server.c, main.c, http_endpoints.c and bridge.c call them
     * through it. */
    struct backend_registry backend_types;
    /* Targets' health and round-robin positions (tcp_bridge.c through
     * target_pool.h): they outlive connections and reloads, freed at exit. */
    struct target_health targets;
    struct tcp_deadlines tcp_deadlines;      /* tcp_bridge.c: connects in progress */
    struct tcp_backend_sockets tcp_backends; /* tcp_backend.c: sockets not yet closed */
    /* The MQTT brokers (mqtt_broker.c): a reload's old and new sessions meet
     * here (`current` and `retired`); mqtt_brokers_start() to _stop(). */
    struct mqtt_brokers mqtt;

    /* --- client connections ------------------------------------------------ */
    struct session_registry sessions;      /* session.c: every open session */
    struct proxy_accept_fifo proxy_accept; /* proxy_accept.c: headers awaited */
    struct peer_addr_table peer_addrs;     /* peer_addr.c: PROXY headers' addresses by socket */
    struct ws_rx_guard_table rx_guard;     /* ws_rx_guard.c: checked sockets by number */
    struct auth_http_state auth_http;      /* auth_http.c: verdict cache, requests in flight */
};

/* The process's one instance; use gateway_get(). Defined in gateway.c with
 * the members' starting values. */
extern struct gateway gateway_instance;

/* Inline: the relay's read path looks its socket up here on every recv(). */
static inline struct gateway *gateway_get(void) { return &gateway_instance; }

/* Frees what the pure modules' state still holds (at exit, after
 * server_destroy()). */
void gateway_release(void);

#endif

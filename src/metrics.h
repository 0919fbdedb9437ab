/* metrics.h - the counters and gauges of /metrics, rendered as Prometheus
 * text. Series are keyed by route name and survive config reloads, so
 * counters stay monotonic. With several worker processes each counts in its
 * own slot of one shared mapping and /metrics (in whichever worker answers)
 * sums them. Within a process, everything here is touched only on the
 * event-loop thread. */
#ifndef WSGATE_METRICS_H
#define WSGATE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a backend failed, the `reason` label of wsgate_backend_errors_total. */
enum backend_error {
    BACKEND_ERR_CONNECT_REFUSED = 0, /* connect failed (refused, unreachable, DNS) */
    BACKEND_ERR_CONNECT_TIMEOUT,     /* no connection within connect_timeout_ms */
    BACKEND_ERR_RESET,               /* the backend reset or failed mid-stream */
    BACKEND_ERR_COUNT
};

/* Why a message was not delivered, the `reason` label of
 * wsgate_messages_dropped_total. */
enum drop_reason {
    DROP_SLOW_CONSUMER = 0, /* the client's queue was over max_queue_bytes */
    DROP_NO_RULE,           /* no publish rule matched a client message */
    DROP_COUNT
};

/* The close codes wsgate_connections_closed_total tells apart (the `code`
 * label); any other code counts as "other". */
struct metrics_shared;
struct worker_slot;

/* The counters' shared mapping as this process sees it (struct gateway's
 * `metrics`). Zeroed = none yet: metrics_init() maps it (the supervisor
 * before forking, or the first count in a single process), metrics_shutdown()
 * unmaps it. */
struct metrics_mapping {
    struct metrics_shared *shared; /* mmap'd, MAP_SHARED with the workers */
    size_t shared_bytes;
    struct worker_slot *self; /* this process's slot in it */
    bool full_warned;         /* a route or broker found no free slot (logged once) */
};

#define METRICS_CLOSE_CODES 15

struct route_metrics {
    uint64_t connections_active; /* gauge */
    uint64_t connections_total;
    uint64_t messages_in;  /* client -> backend */
    uint64_t messages_out; /* backend -> client */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t backend_errors[BACKEND_ERR_COUNT];
    uint64_t dropped[DROP_COUNT];
    uint64_t closed[METRICS_CLOSE_CODES]; /* by close code, see metrics_count_close */
};

/* Makes the shared store for n_workers worker slots; call before forking
 * them (a process that never calls it gets one slot on first use). The
 * calling process counts in slot 0 until metrics_set_worker(). Returns -1
 * if the mapping cannot be made. */
int metrics_init(unsigned n_workers);

/* In a worker process: count in slot `index` from now on. */
void metrics_set_worker(unsigned index);

/* In the supervisor: worker `index` runs (again) / has died. A dead worker's
 * gauges drop to zero and its connections stop counting against
 * max_connections; its counters stay, and its successor goes on from them. */
void metrics_worker_started(unsigned index);
void metrics_worker_gone(unsigned index);

/* max_connections across all workers: takes one of `limit` places (0 = no
 * limit) and returns true, or returns false when all are taken. Every
 * admitted connection gives its place back with metrics_connection_release. */
bool metrics_connection_admit(uint64_t limit);
void metrics_connection_release(void);

/* The series of one route, created on first use; the pointer stays valid
 * until metrics_shutdown(). */
struct route_metrics *metrics_route(const char *route_name);

/* A connection of this route ended with `code`: the close code sent, or
 * received from the client; 1006 if no close frame went either way. */
void metrics_count_close(struct route_metrics *m, int code);

/* Sets wsgate_mqtt_connected{broker}: 1 or 0 (a 0 -> 1 counts in
 * wsgate_mqtt_connects_total). */
void metrics_set_broker_connected(const char *broker_name, int connected);

/* A SUBSCRIBE refused by the broker (wsgate_mqtt_subscribe_denied_total). */
void metrics_count_subscribe_denied(const char *broker_name);

/* A SIGHUP reload applied (1) or refused (0). */
void metrics_count_reload(int ok);

/* Messages from the broker that matched no client's filter
 * (wsgate_mqtt_messages_unrouted_total). */
void metrics_count_mqtt_unrouted(const char *broker_name, uint64_t n);

/* Drops a broker's series (removed by a config reload). */
void metrics_remove_broker(const char *broker_name);

/* A connection to a proxy_protocol listener closed because its PROXY
 * header was invalid or did not come in time. */
void metrics_count_proxy_protocol_error(void);

/* Handshakes refused before a route was bound, by HTTP status. */
void metrics_count_refused(int http_status);

/* The auth service (SPEC-2 A): one request answered with `result`
 * (0 allowed, 1 unauthorized, 2 forbidden, 3 unavailable: enum auth_verdict)
 * after `seconds`; and a handshake answered from the cache. */
void metrics_count_auth_request(int result, double seconds);
void metrics_count_auth_cache_hit(void);

/* Renders every series into a malloc'd text buffer; the caller frees it. */
char *metrics_render(size_t *len_out);

/* Unmaps the store (in a worker: its view of it). */
void metrics_shutdown(void);

#endif

/* metrics.c - counters and gauges, Prometheus text exposition; see metrics.h. */
#include "metrics.h"

#include "gateway.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The store lives in one anonymous shared mapping made before the workers are
 * forked: each worker writes only its own slot, /metrics in any worker reads
 * and sums every slot, and the supervisor zeroes a dead worker's gauges. A
 * slot has fixed room (names up to METRICS_NAME_BYTES - 1 bytes) because
 * malloc'd memory cannot be shared after fork. Single writer per field, so a
 * reader needs only whole 64-bit loads (relaxed atomics), never locks. */
#define METRICS_MAX_ROUTES 512
#define METRICS_MAX_BROKERS 64
#define METRICS_NAME_BYTES 256

struct route_slot {
    char name[METRICS_NAME_BYTES]; /* "" = unused */
    struct route_metrics m;
};

struct broker_slot {
    char name[METRICS_NAME_BYTES]; /* "" = unused (or removed by a reload) */
    uint64_t connected;            /* gauge 0/1 */
    uint64_t connects;             /* sessions established (the first, and reconnects) */
    uint64_t subscribe_denied;     /* SUBACKs that refused a filter */
    uint64_t unrouted;             /* messages from the broker no client held a filter for */
};

struct refused_entry {
    uint64_t status;
    uint64_t count;
};

/* Upper bounds (seconds) of wsgate_auth_request_duration_seconds's buckets. */
static const double auth_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define AUTH_BUCKETS (sizeof(auth_buckets) / sizeof(auth_buckets[0]))
#define AUTH_RESULTS 4
static const char *const auth_results[AUTH_RESULTS] = {"allowed", "unauthorized", "forbidden",
                                                       "unavailable"};

struct worker_slot {
    uint64_t running;          /* set by the supervisor: 1 while the worker process lives */
    uint64_t open_connections; /* this worker's share of metrics_shared.open_connections */
    uint64_t reloads_ok, reloads_failed, last_reload_ok;
    uint64_t proxy_protocol_errors; /* connections closed for a bad or late PROXY header */
    size_t n_routes, n_brokers;     /* high-water marks of the arrays below */
    struct route_slot routes[METRICS_MAX_ROUTES];
    struct broker_slot brokers[METRICS_MAX_BROKERS];
    struct refused_entry refused[8];
    uint64_t auth_requests[AUTH_RESULTS];
    uint64_t auth_le[AUTH_BUCKETS]; /* per bucket (not cumulative); +Inf is the total */
    uint64_t auth_seconds_us;       /* sum of durations, in microseconds */
    uint64_t auth_cache_hits;
};

struct metrics_shared {
    uint64_t open_connections; /* all workers: what max_connections limits */
    unsigned n_workers;
    struct worker_slot workers[];
};

/* This module's part of struct gateway (metrics.h). */
static struct metrics_mapping *mapping(void) { return &gateway_get()->metrics; }

static uint64_t load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

int metrics_init(unsigned n_workers)
{
    struct metrics_mapping *m = mapping();
    if (m->shared)
        metrics_shutdown();
    if (n_workers == 0)
        n_workers = 1;
    m->shared_bytes = sizeof(*m->shared) + (size_t)n_workers * sizeof(struct worker_slot);
    void *p =
        mmap(NULL, m->shared_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        m->shared = NULL;
        return -1;
    }
    m->shared = p; /* zero-filled by the kernel */
    m->shared->n_workers = n_workers;
    for (unsigned i = 0; i < n_workers; i++)
        m->shared->workers[i].last_reload_ok = 1;
    m->self = &m->shared->workers[0];
    m->self->running = 1;
    return 0;
}

/* Callers that never ran metrics_init (a single process) get one slot. */
static struct worker_slot *own(void)
{
    if (!mapping()->self && metrics_init(1) != 0) {
        static struct worker_slot sink; /* no shared memory: count into nothing */
        return &sink;
    }
    return mapping()->self;
}

void metrics_set_worker(unsigned index)
{
    own();
    if (index < mapping()->shared->n_workers)
        mapping()->self = &mapping()->shared->workers[index];
}

void metrics_worker_started(unsigned index)
{
    if (mapping()->shared && index < mapping()->shared->n_workers)
        __atomic_store_n(&mapping()->shared->workers[index].running, 1, __ATOMIC_RELAXED);
}

void metrics_worker_gone(unsigned index)
{
    if (!mapping()->shared || index >= mapping()->shared->n_workers)
        return;
    struct worker_slot *w = &mapping()->shared->workers[index];
    __atomic_store_n(&w->running, 0, __ATOMIC_RELAXED);
    /* Its connections died with it; counters stay (they must never go back)
     * and its successor goes on counting in the same slot. */
    __atomic_sub_fetch(&mapping()->shared->open_connections, load(&w->open_connections),
                       __ATOMIC_RELAXED);
    __atomic_store_n(&w->open_connections, 0, __ATOMIC_RELAXED);
    for (size_t i = 0; i < w->n_routes; i++)
        __atomic_store_n(&w->routes[i].m.connections_active, 0, __ATOMIC_RELAXED);
    for (size_t i = 0; i < w->n_brokers; i++)
        __atomic_store_n(&w->brokers[i].connected, 0, __ATOMIC_RELAXED);
}

bool metrics_connection_admit(uint64_t limit)
{
    struct worker_slot *w = own();
    if (!mapping()->shared)
        return true;
    uint64_t open = load(&mapping()->shared->open_connections);
    do {
        if (limit > 0 && open >= limit)
            return false;
    } while (!__atomic_compare_exchange_n(&mapping()->shared->open_connections, &open, open + 1,
                                          true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    __atomic_add_fetch(&w->open_connections, 1, __ATOMIC_RELAXED);
    return true;
}

void metrics_connection_release(void)
{
    struct worker_slot *w = own();
    if (!mapping()->shared)
        return;
    __atomic_sub_fetch(&w->open_connections, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&mapping()->shared->open_connections, 1, __ATOMIC_RELAXED);
}

static void warn_full(const char *what, const char *name)
{
    if (mapping()->full_warned)
        return;
    mapping()->full_warned = true;
    log_warn("metrics: no room for another series; it is not counted", "kind", what, "name", name);
}

static bool name_fits(const char *name) { return strlen(name) < METRICS_NAME_BYTES; }

struct route_metrics *metrics_route(const char *route_name)
{
    static struct route_metrics sink; /* no room: count into nothing */
    struct worker_slot *w = own();
    for (size_t i = 0; i < w->n_routes; i++)
        if (strcmp(w->routes[i].name, route_name) == 0)
            return &w->routes[i].m;
    if (w->n_routes == METRICS_MAX_ROUTES || !name_fits(route_name)) {
        warn_full("route", route_name);
        return &sink;
    }
    struct route_slot *r = &w->routes[w->n_routes];
    memset(r, 0, sizeof(*r));
    strcpy(r->name, route_name);
    __atomic_store_n(&w->n_routes, w->n_routes + 1, __ATOMIC_RELEASE);
    return &r->m;
}

static struct broker_slot *broker_slot(const char *broker_name)
{
    static struct broker_slot sink;
    struct worker_slot *w = own();
    struct broker_slot *free_slot = NULL;
    for (size_t i = 0; i < w->n_brokers; i++) {
        if (strcmp(w->brokers[i].name, broker_name) == 0)
            return &w->brokers[i];
        if (!free_slot && !w->brokers[i].name[0])
            free_slot = &w->brokers[i];
    }
    if (!name_fits(broker_name) || (!free_slot && w->n_brokers == METRICS_MAX_BROKERS)) {
        warn_full("broker", broker_name);
        return &sink;
    }
    if (!free_slot)
        free_slot = &w->brokers[w->n_brokers];
    memset(free_slot, 0, sizeof(*free_slot));
    strcpy(free_slot->name, broker_name);
    if (free_slot == &w->brokers[w->n_brokers])
        __atomic_store_n(&w->n_brokers, w->n_brokers + 1, __ATOMIC_RELEASE);
    return free_slot;
}

void metrics_set_broker_connected(const char *broker_name, int connected)
{
    struct broker_slot *b = broker_slot(broker_name);
    if (connected && !b->connected)
        b->connects++;
    b->connected = connected ? 1 : 0;
}

void metrics_count_subscribe_denied(const char *broker_name)
{
    broker_slot(broker_name)->subscribe_denied++;
}

void metrics_count_mqtt_unrouted(const char *broker_name, uint64_t n)
{
    broker_slot(broker_name)->unrouted += n;
}

void metrics_count_reload(int ok)
{
    struct worker_slot *w = own();
    if (ok)
        w->reloads_ok++;
    else
        w->reloads_failed++;
    w->last_reload_ok = ok ? 1 : 0;
}

void metrics_remove_broker(const char *broker_name)
{
    struct worker_slot *w = own();
    for (size_t i = 0; i < w->n_brokers; i++)
        if (strcmp(w->brokers[i].name, broker_name) == 0)
            w->brokers[i].name[0] = '\0';
}

void metrics_count_proxy_protocol_error(void) { own()->proxy_protocol_errors++; }
void metrics_count_auth_request(int result, double seconds)
{
    struct worker_slot *w = own();
    if (result < 0 || result >= AUTH_RESULTS)
        result = AUTH_RESULTS - 1;
    w->auth_requests[result]++;
    for (size_t i = 0; i < AUTH_BUCKETS; i++)
        if (seconds <= auth_buckets[i]) {
            w->auth_le[i]++;
            break;
        }
    w->auth_seconds_us += (uint64_t)(seconds * 1e6);
}

void metrics_count_auth_cache_hit(void) { own()->auth_cache_hits++; }

static void header(FILE *out, const char *name, const char *type, const char *help);

/* The auth service's series, summed over the workers. */
static void render_auth(FILE *out)
{
    uint64_t results[AUTH_RESULTS] = {0}, le[AUTH_BUCKETS] = {0}, sum_us = 0, hits = 0, count = 0;
    for (unsigned w = 0; w < mapping()->shared->n_workers; w++) {
        const struct worker_slot *ws = &mapping()->shared->workers[w];
        for (size_t i = 0; i < AUTH_RESULTS; i++)
            results[i] += load(&ws->auth_requests[i]);
        for (size_t i = 0; i < AUTH_BUCKETS; i++)
            le[i] += load(&ws->auth_le[i]);
        sum_us += load(&ws->auth_seconds_us);
        hits += load(&ws->auth_cache_hits);
    }
    header(out, "wsgate_auth_requests_total", "counter",
           "Requests to the auth service (\"auth\": \"http\" routes), by result.");
    for (size_t i = 0; i < AUTH_RESULTS; i++) {
        fprintf(out, "wsgate_auth_requests_total{result=\"%s\"} %llu\n", auth_results[i],
                (unsigned long long)results[i]);
        count += results[i];
    }
    header(out, "wsgate_auth_request_duration_seconds", "histogram",
           "Time from a request to the auth service to its answer (or timeout).");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < AUTH_BUCKETS; i++) {
        cumulative += le[i];
        fprintf(out, "wsgate_auth_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                auth_buckets[i], (unsigned long long)cumulative);
    }
    fprintf(out, "wsgate_auth_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
            (unsigned long long)count);
    fprintf(out, "wsgate_auth_request_duration_seconds_sum %.6f\n", (double)sum_us / 1e6);
    fprintf(out, "wsgate_auth_request_duration_seconds_count %llu\n", (unsigned long long)count);
    header(out, "wsgate_auth_cache_hits_total", "counter",
           "Handshakes the auth service's cached answers allowed without asking it.");
    fprintf(out, "wsgate_auth_cache_hits_total %llu\n", (unsigned long long)hits);
}

void metrics_count_refused(int http_status)
{
    struct worker_slot *w = own();
    for (size_t i = 0; i < sizeof(w->refused) / sizeof(w->refused[0]); i++) {
        if (w->refused[i].status == (uint64_t)http_status || w->refused[i].status == 0) {
            w->refused[i].status = (uint64_t)http_status;
            w->refused[i].count++;
            return;
        }
    }
}

static const char *const backend_error_names[BACKEND_ERR_COUNT] = {
    [BACKEND_ERR_CONNECT_REFUSED] = "connect_failed",
    [BACKEND_ERR_CONNECT_TIMEOUT] = "connect_timeout",
    [BACKEND_ERR_RESET] = "reset",
};

static const char *const drop_reason_names[DROP_COUNT] = {
    [DROP_SLOW_CONSUMER] = "slow_consumer",
    [DROP_NO_RULE] = "no_rule",
};

static const int close_codes[METRICS_CLOSE_CODES] = {
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008,
    1009, 1010, 1011, 1012, 1013, 1014, 0, /* other */
};

void metrics_count_close(struct route_metrics *m, int code)
{
    size_t i = 0;
    while (i + 1 < METRICS_CLOSE_CODES && close_codes[i] != code)
        i++;
    m->closed[i]++;
}

/* Label values are route and broker names from the config: escape them. */
static void put_label(FILE *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(out, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", out);
        else
            fputc(*v, out);
    }
}

static void header(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static size_t n_routes_of(const struct worker_slot *w)
{
    return __atomic_load_n(&w->n_routes, __ATOMIC_ACQUIRE);
}

static size_t n_brokers_of(const struct worker_slot *w)
{
    return __atomic_load_n(&w->n_brokers, __ATOMIC_ACQUIRE);
}

/* Calls fn once per distinct route name across all workers, in the order the
 * names first appear (config order in worker 0). */
static void each_route_name(void (*fn)(const char *name, void *ctx), void *ctx)
{
    for (unsigned w = 0; w < mapping()->shared->n_workers; w++) {
        const struct worker_slot *ws = &mapping()->shared->workers[w];
        for (size_t i = 0; i < n_routes_of(ws); i++) {
            const char *name = ws->routes[i].name;
            bool seen = false;
            for (unsigned v = 0; v <= w && !seen; v++) {
                const struct worker_slot *vs = &mapping()->shared->workers[v];
                size_t upto = v == w ? i : n_routes_of(vs);
                for (size_t j = 0; j < upto && !seen; j++)
                    seen = strcmp(vs->routes[j].name, name) == 0;
            }
            if (!seen)
                fn(name, ctx);
        }
    }
}

struct route_series_ctx {
    FILE *out;
    const char *metric, *extra_label, *extra_value;
    size_t field_offset;
};

static void route_series_one(const char *name, void *arg)
{
    const struct route_series_ctx *c = arg;
    uint64_t sum = 0;
    for (unsigned w = 0; w < mapping()->shared->n_workers; w++) {
        const struct worker_slot *ws = &mapping()->shared->workers[w];
        for (size_t i = 0; i < n_routes_of(ws); i++)
            if (strcmp(ws->routes[i].name, name) == 0)
                sum += load((const uint64_t *)((const char *)&ws->routes[i].m + c->field_offset));
    }
    fprintf(c->out, "%s{route=\"", c->metric);
    put_label(c->out, name);
    if (c->extra_label)
        fprintf(c->out, "\",%s=\"%s", c->extra_label, c->extra_value);
    fprintf(c->out, "\"} %llu\n", (unsigned long long)sum);
}

static void route_series(FILE *out, const char *metric, const char *extra_label,
                         const char *extra_value, size_t field_offset)
{
    struct route_series_ctx c = {out, metric, extra_label, extra_value, field_offset};
    each_route_name(route_series_one, &c);
}

enum broker_field { BROKER_CONNECTED, BROKER_CONNECTS, BROKER_DENIED, BROKER_UNROUTED };

/* One line per distinct broker name. Counters are summed over every worker
 * that ever held a session; "connected" is 1 only when the session of every
 * running worker is up (each worker has its own). */
static void broker_series(FILE *out, const char *metric, enum broker_field field)
{
    for (unsigned w = 0; w < mapping()->shared->n_workers; w++) {
        const struct worker_slot *ws = &mapping()->shared->workers[w];
        for (size_t i = 0; i < n_brokers_of(ws); i++) {
            char name[METRICS_NAME_BYTES];
            snprintf(name, sizeof(name), "%.*s", METRICS_NAME_BYTES - 1, ws->brokers[i].name);
            if (!name[0])
                continue;
            bool seen = false;
            uint64_t sum = 0, all_up = 1, holders = 0;
            for (unsigned v = 0; v < mapping()->shared->n_workers; v++) {
                const struct worker_slot *vs = &mapping()->shared->workers[v];
                for (size_t j = 0; j < n_brokers_of(vs); j++) {
                    const struct broker_slot *b = &vs->brokers[j];
                    if (strcmp(b->name, name) != 0)
                        continue;
                    if (v < w || (v == w && j < i))
                        seen = true;
                    sum += field == BROKER_CONNECTS   ? load(&b->connects)
                           : field == BROKER_UNROUTED ? load(&b->unrouted)
                                                      : load(&b->subscribe_denied);
                    if (load(&vs->running)) {
                        holders++;
                        all_up &= load(&b->connected);
                    }
                }
            }
            if (seen)
                continue;
            fprintf(out, "%s{broker=\"", metric);
            put_label(out, name);
            fprintf(out, "\"} %llu\n",
                    (unsigned long long)(field == BROKER_CONNECTED ? (holders && all_up) : sum));
        }
    }
}

char *metrics_render(size_t *len_out)
{
    own();
    if (!mapping()->shared)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out)
        return NULL;

    header(out, "wsgate_connections_active", "gauge", "Open WebSocket connections.");
    route_series(out, "wsgate_connections_active", NULL, NULL,
                 offsetof(struct route_metrics, connections_active));
    header(out, "wsgate_connections_total", "counter", "WebSocket connections accepted.");
    route_series(out, "wsgate_connections_total", NULL, NULL,
                 offsetof(struct route_metrics, connections_total));
    header(out, "wsgate_messages_total", "counter",
           "Messages relayed; in = client to backend, out = backend to client.");
    route_series(out, "wsgate_messages_total", "direction", "in",
                 offsetof(struct route_metrics, messages_in));
    route_series(out, "wsgate_messages_total", "direction", "out",
                 offsetof(struct route_metrics, messages_out));
    header(out, "wsgate_bytes_total", "counter", "Payload bytes relayed.");
    route_series(out, "wsgate_bytes_total", "direction", "in",
                 offsetof(struct route_metrics, bytes_in));
    route_series(out, "wsgate_bytes_total", "direction", "out",
                 offsetof(struct route_metrics, bytes_out));
    header(out, "wsgate_backend_errors_total", "counter", "Backend failures by reason.");
    for (int r = 0; r < BACKEND_ERR_COUNT; r++)
        route_series(out, "wsgate_backend_errors_total", "reason", backend_error_names[r],
                     offsetof(struct route_metrics, backend_errors) + (size_t)r * sizeof(uint64_t));
    header(out, "wsgate_messages_dropped_total", "counter",
           "Messages not delivered, by reason (never silently: each one counts here).");
    for (int r = 0; r < DROP_COUNT; r++)
        route_series(out, "wsgate_messages_dropped_total", "reason", drop_reason_names[r],
                     offsetof(struct route_metrics, dropped) + (size_t)r * sizeof(uint64_t));

    header(out, "wsgate_connections_closed_total", "counter",
           "WebSocket connections ended, by the close code sent or received (1006: none).");
    for (int i = 0; i < METRICS_CLOSE_CODES; i++) {
        char code[16];
        snprintf(code, sizeof(code), "%d", close_codes[i]);
        route_series(out, "wsgate_connections_closed_total", "code",
                     close_codes[i] ? code : "other",
                     offsetof(struct route_metrics, closed) + (size_t)i * sizeof(uint64_t));
    }

    header(out, "wsgate_mqtt_connected", "gauge",
           "1 while the broker session is up (in every worker).");
    broker_series(out, "wsgate_mqtt_connected", BROKER_CONNECTED);
    header(out, "wsgate_mqtt_connects_total", "counter",
           "Broker sessions established: the first, then each reconnect.");
    broker_series(out, "wsgate_mqtt_connects_total", BROKER_CONNECTS);
    header(out, "wsgate_mqtt_subscribe_denied_total", "counter",
           "SUBSCRIBEs the broker refused (each retried with backoff).");
    broker_series(out, "wsgate_mqtt_subscribe_denied_total", BROKER_DENIED);
    header(out, "wsgate_mqtt_messages_unrouted_total", "counter",
           "Messages from the broker that no client held a filter for (dropped).");
    broker_series(out, "wsgate_mqtt_messages_unrouted_total", BROKER_UNROUTED);

    /* Every worker reloads on the same SIGHUP: a reload counts once (the
     * most any worker saw), and it was successful only if it was in all. */
    uint64_t reloads_ok = 0, reloads_failed = 0, last_ok = 1;
    for (unsigned w = 0; w < mapping()->shared->n_workers; w++) {
        const struct worker_slot *ws = &mapping()->shared->workers[w];
        if (load(&ws->reloads_ok) > reloads_ok)
            reloads_ok = load(&ws->reloads_ok);
        if (load(&ws->reloads_failed) > reloads_failed)
            reloads_failed = load(&ws->reloads_failed);
        if (load(&ws->running))
            last_ok &= load(&ws->last_reload_ok);
    }
    header(out, "wsgate_config_reloads_total", "counter", "SIGHUP config reloads by result.");
    fprintf(out, "wsgate_config_reloads_total{result=\"success\"} %llu\n",
            (unsigned long long)reloads_ok);
    fprintf(out, "wsgate_config_reloads_total{result=\"failure\"} %llu\n",
            (unsigned long long)reloads_failed);
    header(out, "wsgate_config_last_reload_successful", "gauge",
           "1 if the last reload applied (or none was tried), 0 if it was refused.");
    fprintf(out, "wsgate_config_last_reload_successful %d\n", (int)last_ok);

    uint64_t proxy_errors = 0;
    for (unsigned w = 0; w < mapping()->shared->n_workers; w++)
        proxy_errors += load(&mapping()->shared->workers[w].proxy_protocol_errors);
    header(out, "wsgate_proxy_protocol_errors_total", "counter",
           "Connections to proxy_protocol listeners closed without a valid PROXY header "
           "(invalid, or none within 5 s).");
    fprintf(out, "wsgate_proxy_protocol_errors_total %llu\n", (unsigned long long)proxy_errors);

    header(out, "wsgate_handshakes_refused_total", "counter",
           "WebSocket handshakes refused, by HTTP status.");
    struct refused_entry total[16] = {{0, 0}};
    size_t n_total = 0;
    for (unsigned w = 0; w < mapping()->shared->n_workers; w++) {
        const struct worker_slot *ws = &mapping()->shared->workers[w];
        for (size_t i = 0; i < 8 && load(&ws->refused[i].status); i++) {
            uint64_t status = load(&ws->refused[i].status);
            size_t k = 0;
            while (k < n_total && total[k].status != status)
                k++;
            if (k == n_total) {
                if (n_total == sizeof(total) / sizeof(total[0]))
                    continue;
                total[n_total++].status = status;
            }
            total[k].count += load(&ws->refused[i].count);
        }
    }
    for (size_t i = 0; i < n_total; i++)
        fprintf(out, "wsgate_handshakes_refused_total{status=\"%llu\"} %llu\n",
                (unsigned long long)total[i].status, (unsigned long long)total[i].count);
    render_auth(out);

    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    *len_out = len;
    return buf;
}

void metrics_shutdown(void)
{
    struct metrics_mapping *m = mapping();
    if (m->shared)
        munmap(m->shared, m->shared_bytes);
    memset(m, 0, sizeof(*m));
}

/* metrics.c - counters and gauges, Prometheus text exposition; see metrics.h. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct route_entry {
    struct route_entry *next;
    char *name; /* owned */
    struct route_metrics m;
};

struct broker_entry {
    struct broker_entry *next;
    char *name; /* owned */
    int connected;
    uint64_t connects;         /* sessions established (the first, and reconnects) */
    uint64_t subscribe_denied; /* SUBACKs that refused a filter */
};

struct refused_entry {
    int status;
    uint64_t count;
};

/* Few routes and brokers: lists keep insertion order, which is config order. */
static struct route_entry *routes, **routes_tail = &routes;
static struct broker_entry *brokers, **brokers_tail = &brokers;
static struct refused_entry refused[8];
static uint64_t reloads_ok, reloads_failed;
static int last_reload_ok = 1;

struct route_metrics *metrics_route(const char *route_name)
{
    for (struct route_entry *e = routes; e; e = e->next)
        if (strcmp(e->name, route_name) == 0)
            return &e->m;
    struct route_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(route_name))) {
        free(e);
        /* Out of memory: count into a throwaway so callers need no NULL check. */
        static struct route_metrics sink;
        return &sink;
    }
    *routes_tail = e;
    routes_tail = &e->next;
    return &e->m;
}

static struct broker_entry *broker_entry(const char *broker_name)
{
    for (struct broker_entry *e = brokers; e; e = e->next)
        if (strcmp(e->name, broker_name) == 0)
            return e;
    struct broker_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(broker_name))) {
        free(e);
        static struct broker_entry sink; /* out of memory: count into nothing */
        return &sink;
    }
    *brokers_tail = e;
    brokers_tail = &e->next;
    return e;
}

void metrics_set_broker_connected(const char *broker_name, int connected)
{
    struct broker_entry *e = broker_entry(broker_name);
    if (connected && !e->connected)
        e->connects++;
    e->connected = connected;
}

void metrics_count_subscribe_denied(const char *broker_name)
{
    broker_entry(broker_name)->subscribe_denied++;
}

void metrics_count_reload(int ok)
{
    if (ok)
        reloads_ok++;
    else
        reloads_failed++;
    last_reload_ok = ok ? 1 : 0;
}

void metrics_remove_broker(const char *broker_name)
{
    for (struct broker_entry **p = &brokers; *p; p = &(*p)->next) {
        struct broker_entry *e = *p;
        if (strcmp(e->name, broker_name) == 0) {
            *p = e->next;
            if (brokers_tail == &e->next)
                brokers_tail = p;
            free(e->name);
            free(e);
            return;
        }
    }
}

void metrics_count_refused(int http_status)
{
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (refused[i].status == http_status || refused[i].status == 0) {
            refused[i].status = http_status;
            refused[i].count++;
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

static void route_series(FILE *out, const char *metric, const char *extra_label,
                         const char *extra_value, size_t field_offset)
{
    for (struct route_entry *e = routes; e; e = e->next) {
        uint64_t v = *(const uint64_t *)((const char *)&e->m + field_offset);
        fprintf(out, "%s{route=\"", metric);
        put_label(out, e->name);
        if (extra_label)
            fprintf(out, "\",%s=\"%s", extra_label, extra_value);
        fprintf(out, "\"} %llu\n", (unsigned long long)v);
    }
}

char *metrics_render(size_t *len_out)
{
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
                     offsetof(struct route_metrics, backend_errors) +
                         (size_t)r * sizeof(uint64_t));
    header(out, "wsgate_messages_dropped_total", "counter",
           "Messages not delivered, by reason (never silently: each one counts here).");
    for (int r = 0; r < DROP_COUNT; r++)
        route_series(out, "wsgate_messages_dropped_total", "reason", drop_reason_names[r],
                     offsetof(struct route_metrics, dropped) + (size_t)r * sizeof(uint64_t));

    header(out, "wsgate_mqtt_connected", "gauge", "1 while the broker session is up.");
    for (struct broker_entry *e = brokers; e; e = e->next) {
        fputs("wsgate_mqtt_connected{broker=\"", out);
        put_label(out, e->name);
        fprintf(out, "\"} %d\n", e->connected);
    }
    header(out, "wsgate_mqtt_connects_total", "counter",
           "Broker sessions established: the first, then each reconnect.");
    for (struct broker_entry *e = brokers; e; e = e->next) {
        fputs("wsgate_mqtt_connects_total{broker=\"", out);
        put_label(out, e->name);
        fprintf(out, "\"} %llu\n", (unsigned long long)e->connects);
    }
    header(out, "wsgate_mqtt_subscribe_denied_total", "counter",
           "SUBSCRIBEs the broker refused (each retried with backoff).");
    for (struct broker_entry *e = brokers; e; e = e->next) {
        fputs("wsgate_mqtt_subscribe_denied_total{broker=\"", out);
        put_label(out, e->name);
        fprintf(out, "\"} %llu\n", (unsigned long long)e->subscribe_denied);
    }

    header(out, "wsgate_config_reloads_total", "counter", "SIGHUP config reloads by result.");
    fprintf(out, "wsgate_config_reloads_total{result=\"success\"} %llu\n",
            (unsigned long long)reloads_ok);
    fprintf(out, "wsgate_config_reloads_total{result=\"failure\"} %llu\n",
            (unsigned long long)reloads_failed);
    header(out, "wsgate_config_last_reload_successful", "gauge",
           "1 if the last reload applied (or none was tried), 0 if it was refused.");
    fprintf(out, "wsgate_config_last_reload_successful %d\n", last_reload_ok);

    header(out, "wsgate_handshakes_refused_total", "counter",
           "WebSocket handshakes refused, by HTTP status.");
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]) && refused[i].status; i++)
        fprintf(out, "wsgate_handshakes_refused_total{status=\"%d\"} %llu\n", refused[i].status,
                (unsigned long long)refused[i].count);

    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    *len_out = len;
    return buf;
}

void metrics_shutdown(void)
{
    while (routes) {
        struct route_entry *next = routes->next;
        free(routes->name);
        free(routes);
        routes = next;
    }
    routes_tail = &routes;
    while (brokers) {
        struct broker_entry *next = brokers->next;
        free(brokers->name);
        free(brokers);
        brokers = next;
    }
    brokers_tail = &brokers;
    memset(refused, 0, sizeof(refused));
    reloads_ok = reloads_failed = 0;
    last_reload_ok = 1;
}

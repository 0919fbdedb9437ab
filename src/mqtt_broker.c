/* mqtt_broker.c - the broker session of the MQTT backend: one Paho client
 * per configured broker; see mqtt_broker.h, and mqtt_broker_impl.h for how
 * the backend's files divide the work.
 *
 * Connects, and reconnects itself (not Paho's automaticReconnect), so the
 * loop always knows the state: after a lost connection or failed connect,
 * retry after 0.5 s doubling to 15 s with jitter, and meanwhile probe the
 * broker's port to connect at once when it is back; on success restore
 * every subscription (mqtt_link.c) and send the publishes that waited,
 * oldest first. A persistent session is resumed, with a window for the
 * clients of the process before to come back (RESUME_HOLD_US).
 *
 * Ops: every publish / subscribe handed to Paho is an `op` with a 64-bit id
 * (core/op_map.c); Paho's callbacks carry only that id, and the loop looks it
 * up. An op dropped on our side (connection lost, link gone) simply is not
 * found when a late callback names it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getaddrinfo_a */
#endif
#include "mqtt_broker_impl.h"

#include "buf_pool.h"
#include "config.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "op_map.h"
#include "topic.h"
#include "topic_tree.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define RETRY_FIRST_MS 500
#define RETRY_MAX_MS 15000
/* Publishes handed to Paho and not yet done, per broker. */
#define MAX_IN_FLIGHT 1024
/* A publish failing this often while connected is given up. */
#define MAX_PUBLISH_ATTEMPTS 5
/* A node that takes the TCP connection but sends no CONNACK (a cluster
 * re-electing) is given up after this, and the next URI tried. */
#define CONNECT_TIMEOUT_S 4
#define DISCONNECT_TIMEOUT_MS 1000
#define PUMP_RETRY_US (20 * 1000)
/* While in backoff, the broker's port is probed this often with a
 * non-blocking TCP connect; a port seen refusing and then accepting is a
 * broker back: connect at once (the backoff is for a broker that stays away). */
#define PROBE_INTERVAL_US (250 * 1000)
#define PROBE_TIMEOUT_US (1000 * 1000)
/* Persistent sessions: after this process's first CONNACK resumed a session,
 * messages no client holds a filter for are kept this long (bounded) for the
 * clients that come back and subscribe; then the rest is dropped (counted)
 * and, if there was any, the session is reset to shed the filters nobody
 * holds any more. */
#define RESUME_HOLD_US (10 * LWS_USEC_PER_SEC)
#define RESUME_HOLD_MAX_BYTES ((size_t)8 << 20)
#define RESUME_HOLD_MAX_MESSAGES 100000

/* --- globals (loop thread) ------------------------------------------------- */

/* This module's part of struct gateway (mqtt_broker.h). */
static struct mqtt_brokers *state(void) { return &gateway_get()->mqtt; }

void mqtt_timer_schedule(lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t us)
{
    if (!state()->timers_off && gateway_get()->context)
        lws_sul_schedule(gateway_get()->context, 0, sul, cb, us);
}

/* An op id carries its broker's serial in the top bits, so that the answer
 * to an op dropped on our side still names the broker it concerns. */
#define OP_ID_BROKER_SHIFT 40

/* --- op ids ----------------------------------------------------------------- */

int op_hand_out(struct op *o)
{
    o->id = (uint64_t)o->broker->serial << OP_ID_BROKER_SHIFT |
            (state()->next_op_id++ & ((UINT64_C(1) << OP_ID_BROKER_SHIFT) - 1));
    if (op_map_insert(&state()->ops_by_id, o->id, o) != 0) {
        o->id = 0;
        return -1;
    }
    return 0;
}

void op_forget(struct op *o)
{
    if (o->id)
        op_map_remove(&state()->ops_by_id, o->id);
    o->id = 0;
}

/* --- op lists ------------------------------------------------------------- */

static void list_unlink(struct op_list *l, struct op *o)
{
    if (o->prev)
        o->prev->next = o->next;
    else
        l->head = o->next;
    if (o->next)
        o->next->prev = o->prev;
    else
        l->tail = o->prev;
    o->prev = o->next = NULL;
    l->count--;
}

static void list_append(struct op_list *l, struct op *o)
{
    o->next = NULL;
    o->prev = l->tail;
    if (l->tail)
        l->tail->next = o;
    else
        l->head = o;
    l->tail = o;
    l->count++;
}

/* Inserts by seq (publishes that must go again come before newer ones). */
static void list_insert_ordered(struct op_list *l, struct op *o)
{
    struct op *after = NULL;
    for (struct op *c = l->head; c && c->seq < o->seq; c = c->next)
        after = c;
    o->prev = after;
    o->next = after ? after->next : l->head;
    if (o->next)
        o->next->prev = o;
    else
        l->tail = o;
    if (after)
        after->next = o;
    else
        l->head = o;
    l->count++;
}

struct op *op_new(enum op_kind kind, struct mqtt_broker *b, const char *topic, const char *ack_id,
                  const void *payload, size_t len)
{
    size_t tlen = strlen(topic) + 1, alen = ack_id ? strlen(ack_id) + 1 : 0;
    struct op *o = buf_pool_get(sizeof(*o) + tlen + alen + len, NULL);
    if (!o)
        return NULL;
    memset(o, 0, sizeof(*o));
    char *p = (char *)(o + 1);
    o->topic = memcpy(p, topic, tlen);
    p += tlen;
    if (ack_id) {
        o->ack_id = memcpy(p, ack_id, alen);
        p += alen;
    }
    o->payload = (uint8_t *)p;
    if (len)
        memcpy(o->payload, payload, len);
    o->len = len;
    o->kind = kind;
    o->broker = b;
    return o;
}

void op_free(struct op *o) { buf_pool_put(o); }

/* --- Paho's connect latency ------------------------------------------------ */

/* Paho 1.3.11 (and its master) notices that a TCP connect completed only
 * when its receive thread's poll() returns, and that poll waits for the
 * sockets to be *readable* for up to 1 s: the broker says nothing before
 * our CONNECT, so every reconnect took a second more than the network
 * (Socket_getReadySocket in Paho's Socket.c). While one of our connects is
 * in progress, the poll() calls of Paho's receive thread (named
 * "MQTTAsync_rcv") are capped at PAHO_POLL_CAP_MS; every other thread's
 * poll, and Paho's at any other time, goes to libc untouched (interpose.c
 * asks mqtt_paho_poll_timeout on every poll of the process). */
#define PAHO_POLL_CAP_MS 20

static _Thread_local int poll_thread_kind; /* 0 not known yet, 1 Paho's receiver, 2 other */

int mqtt_paho_poll_timeout(int timeout)
{
    if ((timeout < 0 || timeout > PAHO_POLL_CAP_MS) &&
        atomic_load_explicit(&state()->paho_connecting, memory_order_relaxed) > 0) {
        if (!poll_thread_kind) {
            char name[16] = "";
            pthread_getname_np(pthread_self(), name, sizeof(name));
            poll_thread_kind = strcmp(name, "MQTTAsync_rcv") == 0 ? 1 : 2;
        }
        if (poll_thread_kind == 1)
            return PAHO_POLL_CAP_MS;
    }
    return timeout;
}

static void set_connecting(struct mqtt_broker *b, bool on)
{
    if (b->connecting != on)
        atomic_fetch_add(&state()->paho_connecting, on ? 1 : -1);
    b->connecting = on;
}

/* --- the port probe (loop thread) ----------------------------------------- */

/* While the loop waits out a backoff, a non-blocking TCP connect to the
 * broker's port every PROBE_INTERVAL_US tells when it is back: a port seen
 * refusing (or not answering) and then accepting means the broker
 * restarted, and the gateway connects at once instead of sleeping out a
 * backoff that may have reached 15 s. A port that accepts all along (the
 * broker is up but refuses our CONNECT, e.g. bad credentials) triggers
 * nothing: the backoff applies. Names are resolved with getaddrinfo_a, so
 * nothing here blocks the loop. */

static void broker_connect(struct mqtt_broker *b);

static void probe_close(struct mqtt_broker *b)
{
    if (b->probe_fd >= 0)
        close(b->probe_fd);
    b->probe_fd = -1;
}

static void target_cancel(struct probe_target *t)
{
    if (!t->resolving)
        return;
    if (gai_cancel(&t->req) == EAI_NOTCANCELED) {
        const struct gaicb *list[1] = {&t->req};
        while (gai_error(&t->req) == EAI_INPROGRESS)
            gai_suspend(list, 1, NULL);
    }
    if (gai_error(&t->req) == 0 && t->req.ar_result)
        freeaddrinfo(t->req.ar_result);
    t->resolving = false;
}

static void probe_stop(struct mqtt_broker *b)
{
    lws_sul_cancel(&b->probe_timer);
    probe_close(b);
}

/* host and port of "scheme://host:port[/path]" ("[v6]:port" too). */
static bool uri_host_port(const char *uri, struct probe_target *t)
{
    const char *p = strstr(uri, "://");
    p = p ? p + 3 : uri;
    const char *end;
    size_t hlen;
    if (*p == '[') {
        end = strchr(p, ']');
        if (!end)
            return false;
        hlen = (size_t)(end - p - 1);
        p++;
        end++;
    } else {
        end = p + strcspn(p, ":/");
        hlen = (size_t)(end - p);
    }
    if (*end != ':' || hlen == 0 || hlen >= sizeof(t->host))
        return false;
    size_t plen = strspn(end + 1, "0123456789");
    if (plen == 0 || plen >= sizeof(t->port))
        return false;
    memcpy(t->host, p, hlen);
    t->host[hlen] = '\0';
    memcpy(t->port, end + 1, plen);
    t->port[plen] = '\0';
    return true;
}

/* True once the target has an address (resolving it in the background). */
static bool target_ready(struct probe_target *t)
{
    if (t->have_addr)
        return true;
    if (!t->host[0])
        return false;
    if (!t->resolving) {
        /* An address literal needs no resolver (nor getaddrinfo_a's thread). */
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
        struct addrinfo *ai = NULL;
        if (getaddrinfo(t->host, t->port, &hints, &ai) == 0 && ai) {
            memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
            t->addr_len = ai->ai_addrlen;
            t->have_addr = true;
            freeaddrinfo(ai);
            return true;
        }
    }
    if (!t->resolving) {
        memset(&t->req, 0, sizeof(t->req));
        memset(&t->hints, 0, sizeof(t->hints));
        t->hints.ai_socktype = SOCK_STREAM;
        t->req.ar_name = t->host;
        t->req.ar_service = t->port;
        t->req.ar_request = &t->hints;
        struct gaicb *list[1] = {&t->req};
        if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0)
            return false;
        t->resolving = true;
    }
    int rc = gai_error(&t->req);
    if (rc == EAI_INPROGRESS)
        return false;
    t->resolving = false;
    if (rc == 0 && t->req.ar_result) {
        memcpy(&t->addr, t->req.ar_result->ai_addr, t->req.ar_result->ai_addrlen);
        t->addr_len = t->req.ar_result->ai_addrlen;
        t->have_addr = true;
    }
    if (rc == 0 && t->req.ar_result)
        freeaddrinfo(t->req.ar_result);
    return t->have_addr;
}

/* 1: the port accepted; 0: refused or unreachable; -1: not known yet. */
static int probe_result(struct mqtt_broker *b)
{
    struct pollfd pfd = {.fd = b->probe_fd, .events = POLLOUT};
    if (poll(&pfd, 1, 0) <= 0) {
        if (lws_now_usecs() - b->probe_started < PROBE_TIMEOUT_US)
            return -1;
        return 0; /* no answer: as good as down */
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(b->probe_fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    return err == 0 ? 1 : 0;
}

static void probe_tick(lws_sorted_usec_list_t *sul)
{
    struct mqtt_broker *b = lws_container_of(sul, struct mqtt_broker, probe_timer);
    if (b->connected || b->connecting || b->closing)
        return;
    if (b->probe_fd >= 0) {
        int r = probe_result(b);
        if (r >= 0) {
            probe_close(b);
            struct probe_target *t = &b->targets[b->probe_next];
            if (r == 0) {
                t->have_addr = false; /* resolve again: the node may have moved */
                b->probe_seen_down = true;
            } else if (b->probe_seen_down) {
                /* Seen away, now back: connect now, and retry fast if the
                 * broker needs a moment more to take the CONNECT. */
                b->probe_seen_down = false;
                b->retry_ms = RETRY_FIRST_MS;
                log_info("mqtt broker port open again, connecting", "broker", b->cfg->name, "uri",
                         b->cfg->uris[b->probe_next]);
                lws_sul_cancel(&b->retry_timer);
                broker_connect(b);
                return;
            }
            b->probe_next = (b->probe_next + 1) % b->cfg->n_uris;
        }
    }
    if (b->probe_fd < 0) {
        struct probe_target *t = &b->targets[b->probe_next];
        if (target_ready(t)) {
            int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd >= 0) {
                b->probe_fd = fd;
                b->probe_started = lws_now_usecs();
                if (connect(fd, (struct sockaddr *)&t->addr, t->addr_len) != 0 &&
                    errno != EINPROGRESS) {
                    /* Refused at once (a local port): known at the next tick. */
                }
            }
        } else if (!t->resolving) {
            b->probe_next = (b->probe_next + 1) % b->cfg->n_uris;
        }
    }
    mqtt_timer_schedule(&b->probe_timer, probe_tick, PROBE_INTERVAL_US);
}

/* Starts (again) after each failed attempt. What the probe has seen is kept
 * across attempts: a broker seen down before an attempt and back up right
 * after it failed is reconnected at once (resetting here, a broker back
 * within one probe interval of a failed attempt waited out the whole
 * backoff: test_mqtt_persistent reconnected after 8.3 s instead of < 1 s).
 * It is forgotten once connected, so that a broker whose port stays open
 * but which refuses the CONNECT keeps its backoff. */
static void probe_start(struct mqtt_broker *b)
{
    if (!b->targets || b->closing)
        return;
    mqtt_timer_schedule(&b->probe_timer, probe_tick, PROBE_INTERVAL_US);
}

/* --- connecting ----------------------------------------------------------- */

static void schedule_retry(struct mqtt_broker *b);

static void client_renew(struct mqtt_broker *b);

static void broker_connect(struct mqtt_broker *b)
{
    const struct wsg_broker *c = b->cfg;
    if (b->paho_dangling || !b->client) {
        client_renew(b);
        if (!b->client) {
            schedule_retry(b);
            return;
        }
    }
    MQTTAsync_connectOptions o;
    /* A persistent session is resumed (clean session / clean start off),
     * except once to reset it (filters nobody holds, see resume_end). */
    bool clean = !b->persistent || b->reset_session;
    MQTTProperties props = MQTTProperties_initializer;
    if (b->v5) {
        MQTTAsync_connectOptions init5 = MQTTAsync_connectOptions_initializer5;
        o = init5;
        o.cleanstart = clean;
        if (b->persistent) {
            /* MQTT 5: the session outlives the connection by this much
             * (a clean start with it is a fresh session that persists). */
            MQTTProperty p = {.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL};
            p.value.integer4 = (unsigned int)c->session_expiry_s;
            if (MQTTProperties_add(&props, &p) == 0)
                o.connectProperties = &props; /* Paho copies them */
        }
    } else {
        MQTTAsync_connectOptions init = MQTTAsync_connectOptions_initializer;
        o = init;
        o.cleansession = clean;
        o.MQTTVersion = MQTTVERSION_3_1_1;
    }
    o.keepAliveInterval = (int)c->keepalive_s;
    o.maxInflight = MAX_IN_FLIGHT;
    o.connectTimeout = CONNECT_TIMEOUT_S;
    o.username = c->username;
    o.password = c->password;
    o.serverURIs = c->uris;
    o.serverURIcount = (int)c->n_uris;
    o.context = b;
    o.automaticReconnect = 0;
    mqtt_events_connect_options(&o, b->v5);
    if (c->has_tls)
        o.ssl = &b->ssl;
    set_connecting(b, true);
    probe_stop(b);
    int rc = MQTTAsync_connect(b->client, &o);
    MQTTProperties_free(&props);
    if (rc != MQTTASYNC_SUCCESS) {
        set_connecting(b, false);
        log_warn("mqtt connect failed", "broker", c->name, "error", MQTTAsync_strerror(rc));
        schedule_retry(b);
    }
}

static void retry_due(lws_sorted_usec_list_t *sul)
{
    struct mqtt_broker *b = lws_container_of(sul, struct mqtt_broker, retry_timer);
    if (!b->connected && !b->connecting && !b->closing)
        broker_connect(b);
}

static void schedule_retry(struct mqtt_broker *b)
{
    /* +-20 % jitter so that a fleet of gateways does not reconnect in step. */
    int jitter = b->retry_ms / 5;
    int delay = b->retry_ms - jitter + (jitter ? rand() % (2 * jitter + 1) : 0);
    mqtt_timer_schedule(&b->retry_timer, retry_due, (lws_usec_t)delay * LWS_US_PER_MS);
    b->retry_ms = b->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : b->retry_ms * 2;
    probe_start(b);
}

/* --- publishing ----------------------------------------------------------- */

static void publish_done(struct op *o, bool ok, const char *detail)
{
    struct mqtt_link *l = o->link;
    if (l) {
        bool was_above = l->pending_bytes > l->bound / 2;
        l->pending_bytes -= o->len;
        link_detach_op(o);
        if (l->ev->published && (o->ack_id || !ok))
            l->ev->published(l->owner, o->ack_id, ok, detail);
        if (was_above && l->pending_bytes <= l->bound / 2 && l->ev->drained)
            l->ev->drained(l->owner);
    } else if (!ok) {
        log_warn("mqtt publish failed", "broker", o->broker->cfg->name, "topic", o->topic, "error",
                 detail);
    }
    op_free(o);
}

static void pump_later(lws_sorted_usec_list_t *sul);

/* Hands waiting publishes to Paho, oldest first, within MAX_IN_FLIGHT. */
static void broker_pump(struct mqtt_broker *b)
{
    while (b->connected && b->waiting.head && b->in_flight.count < MAX_IN_FLIGHT) {
        struct op *o = b->waiting.head;
        if (op_hand_out(o) != 0)
            return;
        MQTTAsync_message msg = MQTTAsync_message_initializer;
        msg.payload = o->payload;
        msg.payloadlen = (int)o->len;
        msg.qos = o->qos;
        msg.retained = o->retain;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.context = (void *)(uintptr_t)o->id;
        mqtt_events_publish_options(&ro, b->v5);
        o->attempts++;
        int rc = MQTTAsync_sendMessage(b->client, o->topic, &msg, &ro);
        if (rc == MQTTASYNC_SUCCESS) {
            list_unlink(&b->waiting, o);
            list_append(&b->in_flight, o);
            continue;
        }
        op_forget(o);
        if (rc == MQTTASYNC_DISCONNECTED || rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT ||
            rc == MQTTASYNC_NO_MORE_MSGIDS || rc == MQTTASYNC_OPERATION_INCOMPLETE ||
            rc == MQTTASYNC_MAX_BUFFERED_MESSAGES || rc == MQTTASYNC_MAX_BUFFERED) {
            /* Paho cannot take it now (e.g. its command buffer is full just
             * after a reconnect): again on the next completion, or soon. */
            o->attempts--;
            mqtt_timer_schedule(&b->pump_timer, pump_later, PUMP_RETRY_US);
            return;
        }
        list_unlink(&b->waiting, o);
        publish_done(o, false, MQTTAsync_strerror(rc));
    }
}

static void pump_later(lws_sorted_usec_list_t *sul)
{
    broker_pump(lws_container_of(sul, struct mqtt_broker, pump_timer));
}

void broker_queue_publish(struct mqtt_broker *b, struct op *o)
{
    o->seq = state()->next_seq++;
    list_append(&b->waiting, o);
    broker_pump(b);
}

/* --- connection events ----------------------------------------------------- */

static void resume_end(lws_sorted_usec_list_t *sul);

static void broker_up(struct mqtt_broker *b, const char *uri, bool session_present)
{
    set_connecting(b, false);
    b->connected = true;
    b->probe_seen_down = false; /* see probe_start */
    b->retry_ms = RETRY_FIRST_MS;
    probe_stop(b);
    bool first = !b->had_connack;
    b->had_connack = true;
    if (b->reset_session) {
        b->reset_session = false;
        if (!b->v5) {
            /* 3.1.1: that clean session dropped the old one; it ends with
             * this connection, so reconnect at once with a persistent one. */
            MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
            d.timeout = 0;
            mqtt_events_disconnect_options(&d, b);
            if (MQTTAsync_disconnect(b->client, &d) == MQTTASYNC_SUCCESS) {
                b->reset_reconnect = true;
                return;
            }
        }
    }
    if (!b->retired)
        metrics_set_broker_connected(b->cfg->name, 1);
    char filters[24], waiting[24];
    snprintf(filters, sizeof(filters), "%zu", topic_tree_filter_count(b->tree));
    snprintf(waiting, sizeof(waiting), "%zu", b->waiting.count);
    log_info("mqtt broker connected", "broker", b->cfg->name, "uri", uri && *uri ? uri : "?",
             "filters", filters, "publishes_waiting", waiting, "session",
             !b->persistent    ? "clean"
             : session_present ? "resumed"
                               : "new");
    /* A session this process did not make may hold filters nobody here
     * holds yet: what arrives for them is kept a moment for the clients
     * that come back (see RESUME_HOLD_US). */
    if (first && b->persistent && session_present) {
        b->resuming = true;
        mqtt_timer_schedule(&b->resume_timer, resume_end, RESUME_HOLD_US);
    }
    /* Also with a resumed session: harmless, and a broker that lost its
     * state (or a new node of a cluster) has them again. Messages the
     * session brings before the SUBACKs are routed all the same (the tree
     * holds the filters). */
    links_resubscribe_all(b);
    if (b->unsubs) {
        if (session_present)
            links_send_pending_unsubscribes(b);
        else
            while (b->unsubs) { /* a new session has none of them */
                struct pending_unsub *u = b->unsubs;
                b->unsubs = u->next;
                free(u);
            }
    }
    broker_pump(b);
}

static void broker_down(struct mqtt_broker *b, bool was_connected, const char *why)
{
    set_connecting(b, false);
    b->connected = false;
    if (!b->retired)
        metrics_set_broker_connected(b->cfg->name, 0);
    /* What Paho had not finished goes again, in order, after the reconnect. */
    while (b->in_flight.head) {
        struct op *o = b->in_flight.head;
        list_unlink(&b->in_flight, o);
        op_forget(o);
        list_insert_ordered(&b->waiting, o);
    }
    links_unconfirm_all(b);
    if (b->reset_reconnect) {
        /* Our own disconnect after a session reset: straight back. */
        b->reset_reconnect = false;
        broker_connect(b);
        return;
    }
    char retry[24];
    snprintf(retry, sizeof(retry), "%d", b->retry_ms);
    if (was_connected)
        log_warn("mqtt broker connection lost", "broker", b->cfg->name, "error",
                 why && *why ? why : "connection closed", "retry_in_ms", retry);
    else
        log_warn("mqtt broker unreachable", "broker", b->cfg->name, "error",
                 why && *why ? why : "connect failed", "retry_in_ms", retry);
    schedule_retry(b);
}

/* --- delivering, and the resume window -------------------------------------- */

static void held_free_all(struct mqtt_broker *b)
{
    while (b->held_head) {
        struct held_msg *h = b->held_head;
        b->held_head = h->next;
        free(h);
    }
    b->held_tail = NULL;
    b->held_count = b->held_bytes = 0;
}

/* Keeps a message nobody holds a filter for, during the resume window. */
static bool hold_message(struct mqtt_broker *b, const struct broker_event *e)
{
    size_t size = sizeof(struct held_msg) + e->topic_len + 1 + e->payload_len;
    if (b->held_count >= RESUME_HOLD_MAX_MESSAGES || b->held_bytes + size > RESUME_HOLD_MAX_BYTES)
        return false;
    struct held_msg *h = malloc(size);
    if (!h)
        return false;
    h->next = NULL;
    h->claimed = false;
    h->retained = e->retained;
    h->topic_len = e->topic_len;
    h->payload_len = e->payload_len;
    memcpy(h->data, e->data, e->topic_len + 1 + e->payload_len);
    if (b->held_tail)
        b->held_tail->next = h;
    else
        b->held_head = h;
    b->held_tail = h;
    b->held_count++;
    b->held_bytes += size;
    return true;
}

/* A link's subscription to `filter` is confirmed during the resume window:
 * it gets the kept messages that match, oldest first. */
void broker_replay_held(struct mqtt_broker *b, struct mqtt_link *l, const char *filter)
{
    for (struct held_msg *h = b->held_head; h; h = h->next) {
        if (!topic_filter_matches(filter, h->data))
            continue;
        h->claimed = true;
        struct mqtt_delivery d = {
            .topic = h->data,
            .payload = (const uint8_t *)h->data + h->topic_len + 1,
            .len = h->payload_len,
            .utf8 = -1,
        };
        if (l->ev->message)
            l->ev->message(l->owner, &d);
        msg_buffer_free(&d.envelope);
    }
}

/* The resume window is over: what nobody claimed is dropped (counted), and
 * if anything came for a filter nobody holds, the session still has filters
 * of the process before: reset it (MQTT cannot list or unsubscribe a
 * session's filters by what arrived through them), or the broker would
 * queue their messages for the gateway for ever. */
static void resume_end(lws_sorted_usec_list_t *sul)
{
    struct mqtt_broker *b = lws_container_of(sul, struct mqtt_broker, resume_timer);
    uint64_t unclaimed = b->resume_dropped;
    for (struct held_msg *h = b->held_head; h; h = h->next)
        if (!h->claimed)
            unclaimed++;
    b->resuming = false;
    held_free_all(b);
    b->resume_dropped = 0;
    if (!unclaimed)
        return;
    metrics_count_mqtt_unrouted(b->cfg->name, unclaimed);
    char n[24];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)unclaimed);
    log_warn("mqtt session had filters nobody holds: messages dropped, session reset", "broker",
             b->cfg->name, "dropped", n);
    if (b->closing || state()->stopping)
        return;
    b->reset_session = true;
    if (b->connected) {
        /* Reconnect with a fresh session; every held filter is subscribed
         * again on connect. */
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = 0;
        mqtt_events_disconnect_options(&d, b);
        if (MQTTAsync_disconnect(b->client, &d) == MQTTASYNC_SUCCESS)
            b->reset_reconnect = true;
    }
}

static void broker_message(struct mqtt_broker *b, const struct broker_event *e)
{
    struct mqtt_delivery d = {
        .topic = e->data,
        .payload = (const uint8_t *)e->data + e->topic_len + 1,
        .len = e->payload_len,
        .retained = e->retained,
        .utf8 = -1,
    };
    size_t matched = links_deliver(b, &d);
    msg_buffer_free(&d.envelope);
    if (matched)
        return;
    /* Nobody holds a filter for it: in flight while its last client let go,
     * or brought by a persistent session from before a restart. */
    if (b->resuming) {
        if (!hold_message(b, e))
            b->resume_dropped++;
        return;
    }
    metrics_count_mqtt_unrouted(b->cfg->name, 1);
}

static struct mqtt_broker *broker_by_serial(uint32_t serial)
{
    struct mqtt_broker *lists[] = {state()->current, state()->retired};
    for (size_t i = 0; i < 2; i++)
        for (struct mqtt_broker *b = lists[i]; b; b = b->next)
            if (b->serial == serial)
                return b;
    return NULL;
}

static void op_event(const struct broker_event *e)
{
    struct op *o = op_map_find(&state()->ops_by_id, e->op_id);
    if (e->paho_kept) {
        /* Also when the op was dropped already (the lost connection came
         * first): its id names the broker. */
        struct mqtt_broker *kb =
            o ? o->broker : broker_by_serial((uint32_t)(e->op_id >> OP_ID_BROKER_SHIFT));
        if (kb)
            kb->paho_dangling = true;
    }
    if (!o)
        return; /* dropped on our side already */
    struct mqtt_broker *b = o->broker;
    op_forget(o);
    const char *detail = e->data[0] ? e->data : e->ok ? NULL : "failed";
    switch (o->kind) {
    case OP_PUBLISH:
        list_unlink(&b->in_flight, o);
        if (e->ok || e->refused || o->attempts >= MAX_PUBLISH_ATTEMPTS) {
            publish_done(o, e->ok, detail);
        } else {
            /* The connection went under it: send again, in order. */
            list_insert_ordered(&b->waiting, o);
        }
        broker_pump(b);
        return;
    case OP_SUBSCRIBE:
        links_subscribe_done(o, e->ok, e->refused, detail);
        op_free(o);
        return;
    }
}

static void handle_event(struct broker_event *e)
{
    switch (e->kind) {
    case EV_CONNECTED:
        broker_up(e->broker, e->data, e->code != 0);
        return;
    case EV_DISCONNECTED:
        if (e->broker->connected || e->broker->reset_reconnect)
            broker_down(e->broker, true, e->data);
        return;
    case EV_CONNECT_FAILED:
        broker_down(e->broker, false, e->data);
        return;
    case EV_CONNECTION_LOST:
        if (e->broker->connected)
            broker_down(e->broker, true, e->data);
        return;
    case EV_MESSAGE:
        broker_message(e->broker, e);
        return;
    case EV_OP_DONE:
        op_event(e);
        return;
    }
}
void mqtt_brokers_service(void)
{
    bool more;
    struct broker_event *batch = mqtt_events_take(&more);
    for (struct broker_event *e = batch; e; e = e->next)
        handle_event(e);
    mqtt_events_release(batch);
    if (more && gateway_get()->context)
        lws_cancel_service(gateway_get()->context); /* the rest after lws had its turn */
}

/* --- retiring (config reload) ---------------------------------------------- */

static void broker_free(struct mqtt_broker *b);

static void unlink_from(struct mqtt_broker **list, struct mqtt_broker *b)
{
    for (struct mqtt_broker **p = list; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            b->next = NULL;
            return;
        }
}

#define CLOSE_TICK_US (100 * 1000)
#define CLOSE_FLUSH_US (3 * LWS_USEC_PER_SEC)

/* A retired broker nobody uses: give its held publishes a moment to go out,
 * then disconnect, then free it - each step from a timer, never blocking. */
static void close_tick(lws_sorted_usec_list_t *sul)
{
    struct mqtt_broker *b = lws_container_of(sul, struct mqtt_broker, close_timer);
    lws_usec_t now = lws_now_usecs();
    bool flushed = !b->waiting.head && !b->in_flight.head;
    if (!b->closing) {
        if (!flushed && b->connected && now < b->close_deadline) {
            mqtt_timer_schedule(&b->close_timer, close_tick, CLOSE_TICK_US);
            return;
        }
        b->closing = true;
        b->close_deadline = now + 1500 * LWS_US_PER_MS;
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = DISCONNECT_TIMEOUT_MS;
        if (MQTTAsync_isConnected(b->client) &&
            MQTTAsync_disconnect(b->client, &d) == MQTTASYNC_SUCCESS) {
            mqtt_timer_schedule(&b->close_timer, close_tick, CLOSE_TICK_US);
            return;
        }
    } else if (MQTTAsync_isConnected(b->client) && now < b->close_deadline) {
        mqtt_timer_schedule(&b->close_timer, close_tick, CLOSE_TICK_US);
        return;
    }
    log_info("mqtt broker session closed (replaced by a reload)", "broker", b->cfg->name);
    unlink_from(&state()->retired, b);
    broker_free(b);
}

void broker_start_closing(struct mqtt_broker *b)
{
    b->close_deadline = lws_now_usecs() + CLOSE_FLUSH_US;
    lws_sul_cancel(&b->retry_timer);
    probe_stop(b);
    mqtt_timer_schedule(&b->close_timer, close_tick, 1);
}

static void broker_retire(struct mqtt_broker *b)
{
    b->retired = true;
    b->next = state()->retired;
    state()->retired = b;
    if (!b->link_list)
        broker_start_closing(b);
}

/* MQTT allows one connection per client id, so a session replaced by one
 * with the same id cannot serve beside it: the broker would throw each out
 * in turn for as long as both lived. The old session's clients are told to
 * reconnect (1012); once they have left it flushes its publishes and
 * disconnects, and broker_free() starts the new one. */
static void broker_hand_over(struct mqtt_broker *old, struct mqtt_broker *fresh)
{
    old->successor = fresh;
    fresh->predecessor = old;
    log_info("mqtt broker settings changed: its clients reconnect to the new session", "broker",
             old->cfg->name);
    broker_retire(old);
    for (struct mqtt_link *l = old->link_list, *next; l; l = next) {
        next = l->next;
        if (l->ev->replaced)
            l->ev->replaced(l->owner);
    }
}

/* Out of the chain of sessions waiting for one another: who waited for `b`
 * now waits for what `b` waited for, or connects if that was nothing. */
static void hand_over_chain_unlink(struct mqtt_broker *b)
{
    struct mqtt_broker *before = b->predecessor, *after = b->successor;
    if (before)
        before->successor = after;
    if (after) {
        after->predecessor = before;
        if (!before && !state()->stopping && !state()->timers_off)
            broker_connect(after);
    }
    b->predecessor = b->successor = NULL;
}

/* --- the brokers' API (mqtt_broker.h) ----------------------------------------- */

struct mqtt_broker *mqtt_broker_find(const char *name)
{
    for (struct mqtt_broker *b = state()->current; b; b = b->next)
        if (strcmp(b->cfg->name, name) == 0)
            return b;
    return NULL;
}

bool mqtt_broker_connected(const struct mqtt_broker *b) { return b->connected; }
const char *mqtt_broker_name(const struct mqtt_broker *b) { return b->cfg->name; }

/* --- lifetime -------------------------------------------------------------- */

static void broker_free(struct mqtt_broker *b)
{
    if (b->client)
        MQTTAsync_destroy(&b->client);
    hand_over_chain_unlink(b);
    mqtt_events_purge(b);
    set_connecting(b, false);
    probe_stop(b);
    for (size_t i = 0; b->targets && i < b->cfg->n_uris; i++)
        target_cancel(&b->targets[i]);
    free(b->targets);
    held_free_all(b);
    lws_sul_cancel(&b->resume_timer);
    while (b->unsubs) {
        struct pending_unsub *u = b->unsubs;
        b->unsubs = u->next;
        free(u);
    }
    lws_sul_cancel(&b->retry_timer);
    lws_sul_cancel(&b->close_timer);
    lws_sul_cancel(&b->pump_timer);
    struct op_list *lists[] = {&b->waiting, &b->in_flight};
    for (size_t i = 0; i < 2; i++)
        while (lists[i]->head) {
            struct op *o = lists[i]->head;
            list_unlink(lists[i], o);
            op_forget(o);
            link_detach_op(o);
            op_free(o);
        }
    topic_tree_destroy(b->tree);
    config_broker_free(b->cfg);
    free(b);
}

/* Paho's client for b (its cfg and ssl options set). */
static int client_create(struct mqtt_broker *b, char *err, size_t err_len)
{
    const struct wsg_broker *c = b->cfg;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.MQTTVersion = b->v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    co.maxBufferedMessages = MAX_IN_FLIGHT; /* Paho's own command buffer, default 100 */
    /* Each worker process holds its own session: the broker would drop one
     * of two sessions with the same client id. */
    char client_id[512];
    snprintf(client_id, sizeof(client_id), "%s%s", c->client_id, state()->client_id_suffix);
    int rc = MQTTAsync_createWithOptions(&b->client, c->uris[0], client_id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc == MQTTASYNC_SUCCESS)
        rc = mqtt_events_set_callbacks(b->client, b);
    if (rc != MQTTASYNC_SUCCESS) {
        snprintf(err, err_len, "broker %s: cannot create an MQTT client for %s: %s", c->name,
                 c->uris[0], MQTTAsync_strerror(rc));
        if (b->client)
            MQTTAsync_destroy(&b->client);
        b->client = NULL;
        return -1;
    }
    return 0;
}

/* A client whose session holds a publish Paho freed (on_pub_fail) must not
 * resume it: a fresh client starts with an empty outbound list, and nothing
 * is lost, as the publishes it had in flight are sent again by us anyway
 * (broker_down put them back in `waiting`). The broker's side of the
 * session (subscriptions, queued messages) is kept: the next connect still
 * resumes it. Paho's receiving thread may be waiting for room in the event
 * queue while MQTTAsync_destroy waits for it: it is let through meanwhile. */
static void client_renew(struct mqtt_broker *b)
{
    if (b->client) {
        mqtt_events_let_through(true);
        MQTTAsync_destroy(&b->client);
        mqtt_events_let_through(false);
        b->client = NULL;
        log_warn("mqtt client renewed: a publish failed on a dying connection (Paho would "
                 "resend it from freed memory)",
                 "broker", b->cfg->name);
    }
    b->paho_dangling = false;
    char err[512];
    if (client_create(b, err, sizeof(err)) != 0)
        log_error("mqtt client not created", "error", err);
}

static struct mqtt_broker *broker_create(const struct wsg_broker *settings, char *err,
                                         size_t err_len)
{
    struct mqtt_broker *b = calloc(1, sizeof(*b));
    if (!b || !(b->tree = topic_tree_create()) || !(b->cfg = config_broker_copy(settings))) {
        if (b)
            topic_tree_destroy(b->tree);
        free(b);
        snprintf(err, err_len, "broker %s: out of memory", settings->name);
        return NULL;
    }
    const struct wsg_broker *c = b->cfg;
    b->v5 = c->version == WSG_MQTT_5;
    b->persistent = c->persistent_session;
    b->probe_fd = -1;
    b->targets = calloc(c->n_uris ? c->n_uris : 1, sizeof(*b->targets));
    for (size_t i = 0; b->targets && i < c->n_uris; i++)
        if (!uri_host_port(c->uris[i], &b->targets[i]))
            b->targets[i].host[0] = '\0'; /* not probed: the backoff alone */
    b->retry_ms = RETRY_FIRST_MS;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    ssl.trustStore = c->tls.ca;
    ssl.keyStore = c->tls.cert;
    ssl.privateKey = c->tls.key;
    ssl.enableServerCertAuth = !c->tls.insecure;
    ssl.verify = !c->tls.insecure;
    ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
    b->ssl = ssl;
    b->serial = state()->next_serial++;
    if (client_create(b, err, err_len) != 0) {
        broker_free(b);
        return NULL;
    }
    return b;
}

void mqtt_brokers_set_worker(int index)
{
    if (index < 0)
        state()->client_id_suffix[0] = '\0';
    else
        snprintf(state()->client_id_suffix, sizeof(state()->client_id_suffix), "-%d", index);
}

int mqtt_brokers_start(const struct wsg_config *cfg, char *err, size_t err_len)
{
    state()->stopping = false;
    state()->timers_off = false;
    mqtt_events_open();
    return mqtt_brokers_reload(cfg, err, err_len);
}

int mqtt_brokers_reload(const struct wsg_config *cfg, char *err, size_t err_len)
{
    if (cfg->n_brokers > 0 && !state()->paho_ready) {
        MQTTAsync_init_options init = MQTTAsync_init_options_initializer;
        init.do_openssl_init = 0; /* libwebsockets and OpenSSL 3 initialise it */
        MQTTAsync_global_init(&init);
        srand((unsigned)time(NULL) ^ (unsigned)getpid());
        state()->paho_ready = true;
    }
    /* Create what is new or changed first: if that fails, nothing changed. */
    struct mqtt_broker **fresh = calloc(cfg->n_brokers ? cfg->n_brokers : 1, sizeof(*fresh));
    if (!fresh) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_brokers; i++) {
        struct mqtt_broker *cur = mqtt_broker_find(cfg->brokers[i].name);
        if (cur && config_broker_equal(cur->cfg, &cfg->brokers[i]))
            continue;
        if (!(fresh[i] = broker_create(&cfg->brokers[i], err, err_len))) {
            while (i--)
                if (fresh[i])
                    broker_free(fresh[i]);
            free(fresh);
            return -1;
        }
    }
    /* The new list, in config order; the ones left behind retire. */
    struct mqtt_broker *list = NULL, **tail = &list;
    for (size_t i = 0; i < cfg->n_brokers; i++) {
        struct mqtt_broker *b = mqtt_broker_find(cfg->brokers[i].name);
        if (b)
            unlink_from(&state()->current, b);
        if (fresh[i]) {
            metrics_set_broker_connected(fresh[i]->cfg->name, 0);
            if (b && strcmp(b->cfg->client_id, fresh[i]->cfg->client_id) == 0) {
                broker_hand_over(b, fresh[i]);
            } else {
                if (b)
                    broker_retire(b);
                broker_connect(fresh[i]);
            }
            b = fresh[i];
        }
        *tail = b;
        tail = &b->next;
    }
    while (state()->current) {
        struct mqtt_broker *gone = state()->current;
        state()->current = gone->next;
        metrics_remove_broker(gone->cfg->name);
        broker_retire(gone);
    }
    state()->current = list;
    free(fresh);
    return 0;
}

const char *mqtt_brokers_first_down(void)
{
    for (struct mqtt_broker *b = state()->current; b; b = b->next)
        if (!b->connected)
            return b->cfg->name;
    return NULL;
}

bool mqtt_brokers_flushed(void)
{
    for (struct mqtt_broker *b = state()->current; b; b = b->next)
        if (b->connected && (b->waiting.head || b->in_flight.head))
            return false;
    return true;
}

void mqtt_brokers_stopping(void) { state()->stopping = true; }

static void broker_cancel_timers(struct mqtt_broker *b)
{
    lws_sul_cancel(&b->probe_timer);
    lws_sul_cancel(&b->retry_timer);
    lws_sul_cancel(&b->pump_timer);
    lws_sul_cancel(&b->resume_timer);
    lws_sul_cancel(&b->close_timer);
    links_unconfirm_all(b); /* its filters' retry timers */
}

/* lws keeps a scheduled timer in a list inside the context: a broker freed
 * after the context went (mqtt_brokers_stop) would unlink its timers from
 * freed memory. So they are all cancelled here, while the context lives,
 * and none is scheduled again (a retired broker whose last client goes
 * during lws_context_destroy would start closing). */
void mqtt_brokers_shutdown(void)
{
    mqtt_events_quiet();
    state()->timers_off = true;
    struct mqtt_broker *lists[] = {state()->current, state()->retired};
    for (size_t i = 0; i < 2; i++)
        for (struct mqtt_broker *b = lists[i]; b; b = b->next)
            broker_cancel_timers(b);
}

static void free_op_entry(void *ctx, uint64_t id, void *value)
{
    (void)ctx;
    (void)id;
    op_free(value);
}

void mqtt_brokers_stop(void)
{
    state()->stopping = true; /* nothing connects from here on (hand_over_chain_unlink) */
    /* Paho threads waiting for room must give up before we disconnect. */
    mqtt_events_close();

    /* Retired sessions go down with the current ones. */
    while (state()->retired) {
        struct mqtt_broker *b = state()->retired;
        state()->retired = b->next;
        b->next = state()->current;
        state()->current = b;
    }
    for (struct mqtt_broker *b = state()->current; b; b = b->next) {
        size_t lost = b->waiting.count + b->in_flight.count;
        if (lost) {
            char n[24];
            snprintf(n, sizeof(n), "%zu", lost);
            log_warn("mqtt publishes not delivered at shutdown", "broker", b->cfg->name, "count",
                     n);
        }
        if (b->client && MQTTAsync_isConnected(b->client)) {
            MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
            d.timeout = DISCONNECT_TIMEOUT_MS;
            if (MQTTAsync_disconnect(b->client, &d) == MQTTASYNC_SUCCESS)
                for (int i = 0; i < 150 && MQTTAsync_isConnected(b->client); i++)
                    usleep(10 * 1000);
        }
    }
    while (state()->current) {
        struct mqtt_broker *b = state()->current;
        state()->current = b->next;
        broker_free(b);
    }
    mqtt_events_discard();
    /* Subscribe ops live only in the id map until their answer is taken
     * from the queue; those whose answer never came (or was dropped with
     * the queue above) go here. Publishes left the map with their broker's
     * lists. */
    op_map_each(&state()->ops_by_id, free_op_entry, NULL);
    op_map_clear(&state()->ops_by_id);
}

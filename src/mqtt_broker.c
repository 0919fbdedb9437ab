/* mqtt_broker.c - one Paho MQTT session per broker; see mqtt_broker.h.
 *
 * Threads: Paho calls back on its own threads. Those callbacks touch nothing
 * but the event queue below: they copy what they learned into a
 * `struct broker_event`, append it under a mutex and wake the lws loop with
 * lws_cancel_service(). Everything else - brokers, links, ops, the topic
 * trees - belongs to the loop thread. The queue is bounded: when incoming
 * messages fill it, Paho's receiving thread waits, so the broker's TCP
 * connection backs up instead of our memory.
 *
 * Ops: every publish / subscribe / unsubscribe handed to Paho is an `op`
 * with a 64-bit id; Paho's callbacks carry only that id, and the loop looks
 * it up. An op dropped on our side (connection lost, link gone) simply is not
 * found when a late callback names it.
 *
 * Reconnects are ours (not Paho's automaticReconnect), so the loop always
 * knows the state: after a lost connection or failed connect, retry after
 * 0.5 s doubling to 15 s with jitter; on success restore every subscription
 * and send the publishes that waited, oldest first. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getaddrinfo_a */
#endif
#include "mqtt_broker.h"

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "topic.h"
#include "topic_tree.h"

#include <MQTTAsync.h>
#include <dlfcn.h>
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
/* Incoming message bytes queued for the loop before Paho's thread waits. */
#define EVENT_QUEUE_MAX_BYTES ((size_t)32 << 20)
/* A publish failing this often while connected is given up. */
#define MAX_PUBLISH_ATTEMPTS 5
/* A node that takes the TCP connection but sends no CONNACK (a cluster
 * re-electing) is given up after this, and the next URI tried. */
#define CONNECT_TIMEOUT_S 4
/* A refused SUBSCRIBE is retried after 1, 2, 4, 8, 16 s; then the clients
 * waiting for it are told, and it is retried every 30 s while held. */
#define SUBSCRIBE_RETRIES 5
#define SUBSCRIBE_RETRY_MAX_S 30
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

/* --- types ---------------------------------------------------------------- */

enum op_kind { OP_PUBLISH, OP_SUBSCRIBE };

struct op {
    uint64_t id;   /* while handed to Paho (in the id map), else 0 */
    uint64_t seq;  /* publish order, to resend in order */
    enum op_kind kind;
    struct mqtt_broker *broker;
    struct op *prev, *next;           /* broker's waiting or in-flight list */
    struct op *link_prev, *link_next; /* the link's publishes */
    struct mqtt_link *link;           /* NULL once the link is gone */
    char *ack_id;                     /* owned, may be NULL */
    char *topic;                      /* owned: topic, or filter */
    uint8_t *payload;                 /* owned */
    size_t len;
    int qos;
    bool retain;
    int attempts;
};

struct op_list {
    struct op *head, *tail;
    size_t count;
};

/* Someone waiting for a filter to be confirmed by a SUBACK. */
struct sub_waiter {
    struct sub_waiter *next;
    struct mqtt_link *link;
    char *ack_id; /* owned, may be NULL */
};

/* Per held filter (the topic tree's data slot).
 *
 * Retained messages: the broker sends a filter's retained messages after
 * each SUBACK for it, flagged "retained". A client joining a filter the
 * gateway already holds must get them too, so its join sends the SUBSCRIBE
 * again (MQTT: the subscription is replaced, the flow goes on, the retained
 * messages come again) - one at a time per filter, every joiner meanwhile
 * waiting for the same SUBACK. Each SUBACK opens a new `round`; retained
 * messages then go only to the holdings that waited for it, so the clients
 * that had them already get no duplicates. After a reconnect the round is
 * everyone's: a client directly on the broker would get them again too. */
struct filter_state {
    bool confirmed;     /* SUBACKed on the current connection */
    bool sub_in_flight; /* a SUBSCRIBE is out, its SUBACK not yet back */
    bool everyone;      /* the current round is a reconnect's: all get retained */
    bool resubscribe;   /* the SUBSCRIBE out is a reconnect's */
    uint64_t round;     /* counts SUBACKs */
    struct sub_waiter *waiters;
    /* A refused SUBSCRIBE is tried again with backoff: a clustered broker
     * re-electing its leaders (NATS: 10-20 s) denies them for a while. */
    int denials;
    struct mqtt_broker *broker;
    char *filter; /* owned copy, for the retry timer */
    lws_sorted_usec_list_t retry_timer;
};

static void filter_state_free(struct filter_state *fs)
{
    if (!fs)
        return;
    lws_sul_cancel(&fs->retry_timer);
    free(fs->filter);
    free(fs);
}

/* One filter a link holds. */
struct holding {
    char *filter;   /* owned */
    uint64_t round; /* the filter's round whose SUBACK this holding waited for */
};

/* A message kept during the resume window (see RESUME_HOLD_US). */
struct held_msg {
    struct held_msg *next;
    bool claimed;
    bool retained;
    size_t topic_len, payload_len;
    char data[]; /* topic NUL payload */
};

/* A filter let go while disconnected: a persistent session still has it at
 * the broker, so it is unsubscribed after the reconnect. */
struct pending_unsub {
    struct pending_unsub *next;
    char filter[];
};

/* One node of the broker (one of its uris), for the port probe. */
struct probe_target {
    char host[256];
    char port[8];
    bool have_addr;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    bool resolving;
    struct gaicb req;
    struct addrinfo hints;
};

struct mqtt_link {
    struct mqtt_broker *broker;
    const struct mqtt_link_events *ev;
    void *owner;
    size_t bound;
    size_t pending_bytes;
    struct op *ops; /* its publishes not yet done */
    struct holding *filters; /* owned */
    size_t n_filters, cap_filters;
};

struct mqtt_broker {
    struct mqtt_broker *next;
    struct wsg_broker *cfg; /* owned copy: a broker outlives the config that made it */
    bool retired;    /* replaced or removed by a reload; serves its old links */
    bool closing;    /* retired and unused: flushing, then disconnecting */
    size_t links;
    lws_usec_t close_deadline;
    lws_sorted_usec_list_t close_timer;
    MQTTAsync client;
    uint32_t serial;     /* names the broker in its op ids (OP_ID_BROKER_SHIFT) */
    bool paho_dangling;  /* Paho kept a publish it freed: renew the client (see client_renew) */
    bool v5;
    bool connected;
    bool connecting;
    int retry_ms;
    lws_sorted_usec_list_t retry_timer;
    lws_sorted_usec_list_t pump_timer; /* publishes Paho could not take yet */
    struct topic_tree *tree;
    struct op_list waiting;   /* publishes not yet handed to Paho, oldest first */
    struct op_list in_flight; /* handed to Paho (publishes only) */
    MQTTAsync_SSLOptions ssl;
    /* Persistent session (cfg->persistent_session). */
    bool persistent;
    bool had_connack;    /* this process has been connected once */
    bool reset_session;  /* the next connect starts a fresh session */
    bool reset_reconnect; /* 3.1.1: the clean connect is done, go persistent again */
    bool resuming;       /* in the resume window */
    struct held_msg *held_head, *held_tail;
    size_t held_count, held_bytes;
    uint64_t resume_dropped; /* over the hold's bounds */
    lws_sorted_usec_list_t resume_timer;
    struct pending_unsub *unsubs;
    /* The port probe while in backoff. */
    struct probe_target *targets; /* one per uri */
    size_t probe_next;             /* the target the current/next probe is for */
    int probe_fd;
    lws_usec_t probe_started;
    bool probe_seen_down; /* a probe found the port closed since the last attempt */
    lws_sorted_usec_list_t probe_timer;
};

enum event_kind {
    EV_CONNECTED,
    EV_DISCONNECTED, /* our own disconnect (a session reset) is done */
    EV_CONNECT_FAILED,
    EV_CONNECTION_LOST,
    EV_MESSAGE,
    EV_OP_DONE,
};

struct broker_event {
    struct broker_event *next;
    enum event_kind kind;
    struct mqtt_broker *broker; /* connection events */
    uint64_t op_id;             /* EV_OP_DONE */
    bool ok;
    bool refused; /* the broker said no (not a lost connection) */
    bool paho_kept; /* a publish's first write failed: Paho keeps it, freed (client_renew) */
    bool retained;
    int code;
    size_t topic_len, payload_len;
    char data[]; /* topic NUL payload (messages) or a message text (failures) */
};

/* --- globals (loop thread, except the event queue) ------------------------ */

static struct mqtt_broker *brokers; /* current ones, in config order */
static struct mqtt_broker *retired;  /* replaced ones still in use */
static bool paho_ready;
static struct lws_context *loop_context;
static char client_id_suffix[16]; /* "-<worker>" when several workers run */
static uint64_t next_op_id = 1, next_seq = 1;
static uint32_t next_serial = 1;
/* An op id carries its broker's serial in the top bits, so that the answer
 * to an op dropped on our side still names the broker it concerns. */
#define OP_ID_BROKER_SHIFT 40
static bool stopping; /* the process is shutting down (mqtt_brokers_stopping) */

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_room = PTHREAD_COND_INITIALIZER;
static struct broker_event *queue_head, *queue_tail;
static size_t queue_bytes;
static bool queue_closed; /* stopping: Paho threads must not wait any more */
static bool queue_no_wait; /* a client is being destroyed: its threads must not wait */

/* --- op id map: open addressing, linear probing --------------------------- */

static struct op **id_slots;
static size_t id_cap, id_count;

static size_t id_home(uint64_t id) { return (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 20); }

static void id_place(struct op **slots, size_t cap, struct op *o)
{
    size_t i = id_home(o->id) & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = o;
}

static int id_insert(struct op *o)
{
    if ((id_count + 1) * 2 > id_cap) {
        size_t cap = id_cap ? id_cap * 2 : 64;
        struct op **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return -1;
        for (size_t i = 0; i < id_cap; i++)
            if (id_slots[i])
                id_place(slots, cap, id_slots[i]);
        free(id_slots);
        id_slots = slots;
        id_cap = cap;
    }
    id_place(id_slots, id_cap, o);
    id_count++;
    return 0;
}

static size_t id_index(uint64_t id)
{
    if (!id_cap || !id)
        return SIZE_MAX;
    for (size_t i = id_home(id) & (id_cap - 1);; i = (i + 1) & (id_cap - 1)) {
        if (!id_slots[i])
            return SIZE_MAX;
        if (id_slots[i]->id == id)
            return i;
    }
}

/* Removes the op from the map (backward-shift deletion) and clears its id. */
static void id_remove(struct op *o)
{
    size_t i = id_index(o->id);
    o->id = 0;
    if (i == SIZE_MAX)
        return;
    size_t mask = id_cap - 1;
    id_slots[i] = NULL;
    id_count--;
    for (size_t j = (i + 1) & mask; id_slots[j]; j = (j + 1) & mask) {
        size_t home = id_home(id_slots[j]->id) & mask;
        /* Move j back into the hole if its home is not in (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            id_slots[i] = id_slots[j];
            id_slots[j] = NULL;
            i = j;
        }
    }
}

static struct op *id_find(uint64_t id)
{
    size_t i = id_index(id);
    return i == SIZE_MAX ? NULL : id_slots[i];
}

static int op_hand_out(struct op *o)
{
    o->id = (uint64_t)o->broker->serial << OP_ID_BROKER_SHIFT |
            (next_op_id++ & ((UINT64_C(1) << OP_ID_BROKER_SHIFT) - 1));
    if (id_insert(o) != 0) {
        o->id = 0;
        return -1;
    }
    return 0;
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

static void op_free(struct op *o)
{
    if (!o)
        return;
    free(o->ack_id);
    free(o->topic);
    free(o->payload);
    free(o);
}

static void link_detach_op(struct op *o)
{
    struct mqtt_link *l = o->link;
    if (!l)
        return;
    if (o->link_prev)
        o->link_prev->link_next = o->link_next;
    else
        l->ops = o->link_next;
    if (o->link_next)
        o->link_next->link_prev = o->link_prev;
    o->link_prev = o->link_next = NULL;
    o->link = NULL;
}

/* --- the event queue (any thread) ----------------------------------------- */

static struct broker_event *event_new(enum event_kind kind, struct mqtt_broker *b, size_t extra)
{
    struct broker_event *e = calloc(1, sizeof(*e) + extra + 1);
    if (e) {
        e->kind = kind;
        e->broker = b;
    }
    return e;
}

/* Messages wait for room; everything else always gets in (it is small and
 * rare, and a lost connection event must never be lost). */
static void event_push(struct broker_event *e, bool may_wait)
{
    size_t size = sizeof(*e) + e->topic_len + e->payload_len;
    pthread_mutex_lock(&queue_lock);
    while (may_wait && !queue_closed && !queue_no_wait && queue_bytes > 0 &&
           queue_bytes + size > EVENT_QUEUE_MAX_BYTES) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&queue_room, &queue_lock, &until);
    }
    if (queue_closed) {
        pthread_mutex_unlock(&queue_lock);
        free(e);
        return;
    }
    bool was_empty = queue_head == NULL;
    if (queue_tail)
        queue_tail->next = e;
    else
        queue_head = e;
    queue_tail = e;
    queue_bytes += size;
    struct lws_context *ctx = loop_context;
    pthread_mutex_unlock(&queue_lock);
    if (was_empty && ctx)
        lws_cancel_service(ctx);
}

static void push_simple(enum event_kind kind, struct mqtt_broker *b, int code, const char *text)
{
    size_t tlen = text ? strlen(text) : 0;
    struct broker_event *e = event_new(kind, b, tlen);
    if (!e)
        return; /* out of memory on a Paho thread: nothing better to do */
    e->code = code;
    if (tlen)
        memcpy(e->data, text, tlen);
    event_push(e, false);
}

static struct broker_event *op_done_event(void *context, bool ok, bool refused, int code,
                                          const char *text)
{
    size_t tlen = text ? strlen(text) : 0;
    struct broker_event *e = event_new(EV_OP_DONE, NULL, tlen);
    if (!e)
        return NULL;
    e->op_id = (uint64_t)(uintptr_t)context;
    e->ok = ok;
    e->refused = refused;
    e->code = code;
    if (tlen)
        memcpy(e->data, text, tlen);
    return e;
}

static void push_op_done(void *context, bool ok, bool refused, int code, const char *text)
{
    struct broker_event *e = op_done_event(context, ok, refused, code, text);
    if (e)
        event_push(e, false);
}

/* --- Paho callbacks (Paho's threads: queue only) --------------------------- */

/* The event's text: the URI of the node we are connected to; its code:
 * the CONNACK's session present flag. */
static void on_connect_ok(void *context, MQTTAsync_successData *r)
{
    push_simple(EV_CONNECTED, context, r ? r->alt.connect.sessionPresent : 0,
                r ? r->alt.connect.serverURI : NULL);
}

static void on_connect_ok5(void *context, MQTTAsync_successData5 *r)
{
    push_simple(EV_CONNECTED, context, r ? r->alt.connect.sessionPresent : 0,
                r ? r->alt.connect.serverURI : NULL);
}

static void on_disconnect_done(void *context, MQTTAsync_successData *r)
{
    (void)r;
    push_simple(EV_DISCONNECTED, context, 0, "session reset");
}

static void on_disconnect_fail(void *context, MQTTAsync_failureData *r)
{
    (void)r;
    push_simple(EV_DISCONNECTED, context, 0, "session reset");
}

static void on_connect_fail(void *context, MQTTAsync_failureData *r)
{
    push_simple(EV_CONNECT_FAILED, context, r ? r->code : 0, r ? r->message : NULL);
}

static void on_connect_fail5(void *context, MQTTAsync_failureData5 *r)
{
    push_simple(EV_CONNECT_FAILED, context, r ? (int)r->reasonCode : 0,
                r ? r->message : NULL);
}

static void on_connection_lost(void *context, char *cause)
{
    push_simple(EV_CONNECTION_LOST, context, 0, cause);
}

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *m)
{
    size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    size_t plen = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
    struct broker_event *e = event_new(EV_MESSAGE, context, tlen + 1 + plen);
    if (e) {
        e->retained = m->retained != 0;
        e->topic_len = tlen;
        e->payload_len = plen;
        memcpy(e->data, topic, tlen);
        if (plen)
            memcpy(e->data + tlen + 1, m->payload, plen);
        event_push(e, true);
    }
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static void on_op_ok(void *context, MQTTAsync_successData *r)
{
    (void)r;
    push_op_done(context, true, false, 0, NULL);
}

/* MQTT 3.1.1 SUBACK: 0x80 is a refusal. */
static void on_sub_ok(void *context, MQTTAsync_successData *r)
{
    bool refused = r && r->alt.qos == MQTT_BAD_SUBSCRIBE;
    push_op_done(context, !refused, refused, 0, refused ? "broker refused the subscription" : NULL);
}

static void on_op_fail(void *context, MQTTAsync_failureData *r)
{
    /* Paho reports a SUBACK of 0x80 as a failure with that code. */
    bool refused = r && r->code == MQTT_BAD_SUBSCRIBE;
    push_op_done(context, false, refused, r ? r->code : 0,
                 refused ? "broker refused the subscription" : r ? r->message : NULL);
}

/* MQTT 5: reason codes from 0x80 up are refusals. */
static void on_op_ok5(void *context, MQTTAsync_successData5 *r)
{
    /* One filter per SUBSCRIBE: its reason code is reasonCode (alt.sub is
     * only filled for subscribeMany). */
    bool refused = r && r->reasonCode >= 0x80;
    push_op_done(context, !refused, refused, r ? (int)r->reasonCode : 0,
                 refused ? "broker refused (MQTT 5 reason code)" : NULL);
}

static void on_pub_ok5(void *context, MQTTAsync_successData5 *r)
{
    bool refused = r && r->reasonCode >= 0x80;
    push_op_done(context, !refused, refused, r ? (int)r->reasonCode : 0,
                 refused ? "broker refused the publish (MQTT 5 reason code)" : NULL);
}

static void on_op_fail5(void *context, MQTTAsync_failureData5 *r)
{
    bool refused = r && r->reasonCode >= 0x80;
    push_op_done(context, false, refused, r ? (int)r->reasonCode : 0, r ? r->message : NULL);
}

/* A publish failing with MQTTASYNC_FAILURE is one whose first write hit a
 * socket error (the broker went away under it). Paho 1.3.12 (and its
 * master) then has it in its session's outbound list already, yet frees its
 * topic and payload with the command (MQTTAsync_processCommand: the
 * SOCKET_ERROR branch frees what MQTTProtocol_startPublish stored). When a
 * persistent session is resumed Paho re-sends that list, this one from
 * freed memory: a malformed PUBLISH, the broker drops the connection after
 * every CONNACK (docs/soak.md). The loop renews the client before the next
 * connect (client_renew). */
static void on_pub_fail(void *context, MQTTAsync_failureData *r)
{
    struct broker_event *e = op_done_event(context, false, false, r ? r->code : 0,
                                           r ? r->message : NULL);
    if (!e)
        return;
    e->paho_kept = r && r->code == MQTTASYNC_FAILURE;
    event_push(e, false);
}

static void on_pub_fail5(void *context, MQTTAsync_failureData5 *r)
{
    bool refused = r && r->reasonCode >= 0x80;
    struct broker_event *e = op_done_event(context, false, refused,
                                           r ? (int)r->reasonCode : 0, r ? r->message : NULL);
    if (!e)
        return;
    e->paho_kept = r && !refused && r->code == MQTTASYNC_FAILURE;
    event_push(e, false);
}

/* --- Paho's connect latency ------------------------------------------------ */

/* Paho 1.3.11 (and its master) notices that a TCP connect completed only
 * when its receive thread's poll() returns, and that poll waits for the
 * sockets to be *readable* for up to 1 s: the broker says nothing before
 * our CONNECT, so every reconnect took a second more than the network
 * (Socket_getReadySocket in Paho's Socket.c). While one of our connects is
 * in progress, the poll() calls of Paho's receive thread (named
 * "MQTTAsync_rcv") are capped at PAHO_POLL_CAP_MS; every other thread's
 * poll, and Paho's at any other time, goes to libc untouched. The
 * executable's poll() interposes the one libc exports to Paho. */
#define PAHO_POLL_CAP_MS 20

static atomic_int paho_connecting;
static _Thread_local int poll_thread_kind; /* 0 not known yet, 1 Paho's receiver, 2 other */

typedef int (*poll_fn)(struct pollfd *, nfds_t, int);

int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    static _Atomic(poll_fn) real;
    poll_fn next = atomic_load_explicit(&real, memory_order_relaxed);
    if (!next) {
        next = (poll_fn)dlsym(RTLD_NEXT, "poll");
        atomic_store_explicit(&real, next, memory_order_relaxed);
    }
    if ((timeout < 0 || timeout > PAHO_POLL_CAP_MS) &&
        atomic_load_explicit(&paho_connecting, memory_order_relaxed) > 0) {
        if (!poll_thread_kind) {
            char name[16] = "";
            pthread_getname_np(pthread_self(), name, sizeof(name));
            poll_thread_kind = strcmp(name, "MQTTAsync_rcv") == 0 ? 1 : 2;
        }
        if (poll_thread_kind == 1)
            timeout = PAHO_POLL_CAP_MS;
    }
    return next(fds, nfds, timeout);
}

static void set_connecting(struct mqtt_broker *b, bool on)
{
    if (b->connecting != on)
        atomic_fetch_add(&paho_connecting, on ? 1 : -1);
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
                log_info("mqtt broker port open again, connecting", "broker", b->cfg->name,
                         "uri", b->cfg->uris[b->probe_next]);
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
    lws_sul_schedule(loop_context, 0, &b->probe_timer, probe_tick, PROBE_INTERVAL_US);
}

static void probe_start(struct mqtt_broker *b)
{
    if (!b->targets || b->closing)
        return;
    b->probe_seen_down = false;
    lws_sul_schedule(loop_context, 0, &b->probe_timer, probe_tick, PROBE_INTERVAL_US);
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
        o.onSuccess5 = on_connect_ok5;
        o.onFailure5 = on_connect_fail5;
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
        o.onSuccess = on_connect_ok;
        o.onFailure = on_connect_fail;
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
    lws_sul_schedule(loop_context, 0, &b->retry_timer, retry_due,
                     (lws_usec_t)delay * LWS_US_PER_MS);
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
        log_warn("mqtt publish failed", "broker", o->broker->cfg->name, "topic", o->topic,
                 "error", detail);
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
        if (b->v5) {
            ro.onSuccess5 = on_pub_ok5;
            ro.onFailure5 = on_pub_fail5;
        } else {
            ro.onSuccess = on_op_ok;
            ro.onFailure = on_pub_fail;
        }
        o->attempts++;
        int rc = MQTTAsync_sendMessage(b->client, o->topic, &msg, &ro);
        if (rc == MQTTASYNC_SUCCESS) {
            list_unlink(&b->waiting, o);
            list_append(&b->in_flight, o);
            continue;
        }
        id_remove(o);
        if (rc == MQTTASYNC_DISCONNECTED || rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT ||
            rc == MQTTASYNC_NO_MORE_MSGIDS || rc == MQTTASYNC_OPERATION_INCOMPLETE ||
            rc == MQTTASYNC_MAX_BUFFERED_MESSAGES || rc == MQTTASYNC_MAX_BUFFERED) {
            /* Paho cannot take it now (e.g. its command buffer is full just
             * after a reconnect): again on the next completion, or soon. */
            o->attempts--;
            lws_sul_schedule(loop_context, 0, &b->pump_timer, pump_later, PUMP_RETRY_US);
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

/* --- subscriptions --------------------------------------------------------- */

static struct holding *link_holding(struct mqtt_link *l, const char *filter);
static void replay_held(struct mqtt_broker *b, struct mqtt_link *l, const char *filter);

static void waiters_answer(struct filter_state *fs, const char *filter, bool ok,
                           const char *detail)
{
    struct sub_waiter *w = fs->waiters;
    fs->waiters = NULL;
    while (w) {
        struct sub_waiter *next = w->next;
        struct holding *h = ok && w->link ? link_holding(w->link, filter) : NULL;
        if (h)
            h->round = fs->round; /* the retained messages that follow are its */
        if (w->link && w->link->ev->subscribed)
            w->link->ev->subscribed(w->link->owner, filter, w->ack_id, ok, detail);
        if (h && fs->broker->held_head)
            replay_held(fs->broker, w->link, filter);
        free(w->ack_id);
        free(w);
        w = next;
    }
}

static struct filter_state *filter_state_of(struct mqtt_broker *b, const char *filter)
{
    void **slot = topic_tree_filter_data(b->tree, filter);
    return slot ? *slot : NULL;
}

static void send_subscribe(struct mqtt_broker *b, const char *filter, int qos, bool resubscribe)
{
    struct op *o = calloc(1, sizeof(*o));
    if (o)
        o->broker = b; /* before op_hand_out: the id names it */
    if (!o || !(o->topic = strdup(filter)) || op_hand_out(o) != 0) {
        op_free(o);
        return; /* retried with every filter at the next reconnect */
    }
    o->kind = OP_SUBSCRIBE;
    o->qos = qos;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = (void *)(uintptr_t)o->id;
    if (b->v5) {
        ro.onSuccess5 = on_op_ok5;
        ro.onFailure5 = on_op_fail5;
    } else {
        ro.onSuccess = on_sub_ok;
        ro.onFailure = on_op_fail;
    }
    if (MQTTAsync_subscribe(b->client, filter, qos, &ro) != MQTTASYNC_SUCCESS) {
        id_remove(o);
        op_free(o);
        return;
    }
    struct filter_state *fs = filter_state_of(b, filter);
    if (fs) {
        fs->sub_in_flight = true;
        fs->resubscribe = resubscribe;
    }
}

/* Remembers a filter to unsubscribe once connected (a persistent session
 * still has it at the broker). */
static void unsub_later(struct mqtt_broker *b, const char *filter)
{
    for (struct pending_unsub *u = b->unsubs; u; u = u->next)
        if (strcmp(u->filter, filter) == 0)
            return;
    size_t n = strlen(filter) + 1;
    struct pending_unsub *u = malloc(sizeof(*u) + n);
    if (!u)
        return; /* it stays at the broker: its messages are counted as unrouted */
    memcpy(u->filter, filter, n);
    u->next = b->unsubs;
    b->unsubs = u;
}

static void send_unsubscribe(struct mqtt_broker *b, const char *filter)
{
    if (b->persistent && stopping)
        return; /* the session keeps it for after the restart (resume window) */
    if (!b->connected) {
        if (b->persistent)
            unsub_later(b, filter);
        return; /* a clean session forgot it already */
    }
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int rc = MQTTAsync_unsubscribe(b->client, filter, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
        /* The broker keeps sending its messages (counted as unrouted); a
         * persistent session tries again after the next reconnect, a clean
         * one forgets it then anyway. */
        log_warn("mqtt unsubscribe not sent", "broker", b->cfg->name, "filter", filter, "error",
                 MQTTAsync_strerror(rc));
        if (b->persistent)
            unsub_later(b, filter);
    }
}

/* After a reconnect: filters let go meanwhile, unless held again. */
static void send_pending_unsubscribes(struct mqtt_broker *b)
{
    struct pending_unsub *u = b->unsubs;
    b->unsubs = NULL;
    while (u) {
        struct pending_unsub *next = u->next;
        if (!topic_tree_filter_data(b->tree, u->filter))
            send_unsubscribe(b, u->filter);
        free(u);
        u = next;
    }
}

static void resubscribe_one(void *ctx, const char *filter, int max_qos)
{
    send_subscribe(ctx, filter, max_qos, true);
}

static void retry_subscribe(lws_sorted_usec_list_t *sul)
{
    struct filter_state *fs = lws_container_of(sul, struct filter_state, retry_timer);
    struct mqtt_broker *b = fs->broker;
    if (b->connected && !fs->sub_in_flight)
        send_subscribe(b, fs->filter, topic_tree_max_qos(b->tree, fs->filter), false);
}

static void subscribe_done(struct op *o, bool ok, bool refused, const char *detail)
{
    struct mqtt_broker *b = o->broker;
    struct filter_state *fs = filter_state_of(b, o->topic);
    if (!fs)
        return; /* everybody left meanwhile */
    fs->sub_in_flight = false;
    if (ok) {
        fs->confirmed = true;
        fs->round++;
        fs->everyone = fs->resubscribe;
        waiters_answer(fs, o->topic, true, NULL);
        fs->denials = 0;
    } else if (refused) {
        metrics_count_subscribe_denied(b->cfg->name);
        if (++fs->denials > SUBSCRIBE_RETRIES && fs->waiters) {
            /* Those waiting for an answer get one; a client told "failed"
             * lets go of the filter, which may free fs. */
            log_warn("mqtt subscribe refused, clients told", "broker", b->cfg->name, "filter",
                     o->topic);
            waiters_answer(fs, o->topic, false,
                           detail ? detail : "broker refused the subscription");
            if (!(fs = filter_state_of(b, o->topic)))
                return;
        }
        /* Whoever still holds the filter (after a reconnect nobody is
         * waiting) is served once the broker agrees: keep trying. */
        if (b->connected) {
            int delay_s = fs->denials <= SUBSCRIBE_RETRIES ? 1 << (fs->denials - 1)
                                                           : SUBSCRIBE_RETRY_MAX_S;
            char in[16];
            snprintf(in, sizeof(in), "%d", delay_s);
            log_warn("mqtt subscribe refused, retrying", "broker", b->cfg->name, "filter",
                     o->topic, "retry_in_s", in);
            lws_sul_schedule(loop_context, 0, &fs->retry_timer, retry_subscribe,
                             (lws_usec_t)delay_s * LWS_USEC_PER_SEC);
        }
    }
    /* Otherwise the connection dropped: the reconnect subscribes again. */
}

/* --- connection events ----------------------------------------------------- */

static void unconfirm_one(void *ctx, const char *filter, int max_qos)
{
    (void)max_qos;
    struct filter_state *fs = filter_state_of(ctx, filter);
    if (fs) {
        fs->confirmed = fs->sub_in_flight = false;
        fs->denials = 0;
        lws_sul_cancel(&fs->retry_timer); /* the reconnect subscribes everything */
    }
}

static void resume_end(lws_sorted_usec_list_t *sul);

static void broker_up(struct mqtt_broker *b, const char *uri, bool session_present)
{
    set_connecting(b, false);
    b->connected = true;
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
            d.onSuccess = on_disconnect_done;
            d.onFailure = on_disconnect_fail;
            d.context = b;
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
             !b->persistent ? "clean" : session_present ? "resumed" : "new");
    /* A session this process did not make may hold filters nobody here
     * holds yet: what arrives for them is kept a moment for the clients
     * that come back (see RESUME_HOLD_US). */
    if (first && b->persistent && session_present) {
        b->resuming = true;
        lws_sul_schedule(loop_context, 0, &b->resume_timer, resume_end, RESUME_HOLD_US);
    }
    /* Also with a resumed session: harmless, and a broker that lost its
     * state (or a new node of a cluster) has them again. Messages the
     * session brings before the SUBACKs are routed all the same (the tree
     * holds the filters). */
    topic_tree_each_filter(b->tree, resubscribe_one, b);
    if (b->unsubs) {
        if (session_present)
            send_pending_unsubscribes(b);
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
        id_remove(o);
        list_insert_ordered(&b->waiting, o);
    }
    topic_tree_each_filter(b->tree, unconfirm_one, b);
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

/* --- delivering ------------------------------------------------------------ */

/* A retained message goes to a link only if one of its holdings matching
 * the topic waited for the SUBACK that brought it (see filter_state). */
static bool link_wants_retained(struct mqtt_link *l, const char *topic)
{
    for (size_t i = 0; i < l->n_filters; i++) {
        const struct holding *h = &l->filters[i];
        if (!topic_filter_matches(h->filter, topic))
            continue;
        struct filter_state *fs = filter_state_of(l->broker, h->filter);
        if (fs && (fs->everyone || (h->round != 0 && h->round == fs->round)))
            return true;
    }
    return false;
}

static void deliver_to_link(void *ctx, void *sub)
{
    struct mqtt_link *l = sub;
    struct mqtt_delivery *d = ctx;
    if (d->retained && !link_wants_retained(l, d->topic))
        return;
    if (l->ev->message)
        l->ev->message(l->owner, d);
}

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
static void replay_held(struct mqtt_broker *b, struct mqtt_link *l, const char *filter)
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
        free(d.envelope);
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
    if (b->closing || stopping)
        return;
    b->reset_session = true;
    if (b->connected) {
        /* Reconnect with a fresh session; every held filter is subscribed
         * again on connect. */
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = 0;
        d.onSuccess = on_disconnect_done;
        d.onFailure = on_disconnect_fail;
        d.context = b;
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
    size_t matched = topic_tree_match(b->tree, d.topic, deliver_to_link, &d);
    free(d.envelope);
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
    struct mqtt_broker *lists[] = {brokers, retired};
    for (size_t i = 0; i < 2; i++)
        for (struct mqtt_broker *b = lists[i]; b; b = b->next)
            if (b->serial == serial)
                return b;
    return NULL;
}

static void op_event(const struct broker_event *e)
{
    struct op *o = id_find(e->op_id);
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
    id_remove(o);
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
        subscribe_done(o, e->ok, e->refused, detail);
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

/* Messages are taken in small batches: after each, lws gets to write to the
 * clients before the next is queued for them, so a client that reads keeps
 * its queue short and only one that does not falls behind its bound. */
#define SERVICE_BATCH_MESSAGES 64
#define SERVICE_BATCH_BYTES (16 * 1024)

void mqtt_brokers_service(void)
{
    pthread_mutex_lock(&queue_lock);
    struct broker_event *first = queue_head, *last = NULL;
    size_t taken = 0, messages = 0, payload = 0;
    for (struct broker_event *e = queue_head; e; e = e->next) {
        if (e->kind == EV_MESSAGE &&
            (messages >= SERVICE_BATCH_MESSAGES || payload >= SERVICE_BATCH_BYTES))
            break;
        if (e->kind == EV_MESSAGE) {
            messages++;
            payload += e->payload_len;
        }
        taken += sizeof(*e) + e->topic_len + e->payload_len;
        last = e;
    }
    if (last) {
        queue_head = last->next;
        if (!queue_head)
            queue_tail = NULL;
        last->next = NULL;
        queue_bytes -= taken;
        pthread_cond_broadcast(&queue_room);
    } else {
        first = NULL;
    }
    bool more = queue_head != NULL;
    pthread_mutex_unlock(&queue_lock);
    while (first) {
        struct broker_event *next = first->next;
        handle_event(first);
        free(first);
        first = next;
    }
    if (more && loop_context)
        lws_cancel_service(loop_context); /* the rest after lws had its turn */
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

/* Drops the events queued for b (after Paho stopped calling back for it). */
static void purge_events(const struct mqtt_broker *b)
{
    pthread_mutex_lock(&queue_lock);
    struct broker_event **p = &queue_head, *last = NULL;
    while (*p) {
        struct broker_event *e = *p;
        if (e->broker == b) {
            *p = e->next;
            queue_bytes -= sizeof(*e) + e->topic_len + e->payload_len;
            free(e);
        } else {
            last = e;
            p = &e->next;
        }
    }
    queue_tail = last;
    pthread_mutex_unlock(&queue_lock);
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
            lws_sul_schedule(loop_context, 0, &b->close_timer, close_tick, CLOSE_TICK_US);
            return;
        }
        b->closing = true;
        b->close_deadline = now + 1500 * LWS_US_PER_MS;
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = DISCONNECT_TIMEOUT_MS;
        if (MQTTAsync_isConnected(b->client) &&
            MQTTAsync_disconnect(b->client, &d) == MQTTASYNC_SUCCESS) {
            lws_sul_schedule(loop_context, 0, &b->close_timer, close_tick, CLOSE_TICK_US);
            return;
        }
    } else if (MQTTAsync_isConnected(b->client) && now < b->close_deadline) {
        lws_sul_schedule(loop_context, 0, &b->close_timer, close_tick, CLOSE_TICK_US);
        return;
    }
    log_info("mqtt broker session closed (replaced by a reload)", "broker", b->cfg->name);
    unlink_from(&retired, b);
    broker_free(b);
}

static void broker_start_closing(struct mqtt_broker *b)
{
    b->close_deadline = lws_now_usecs() + CLOSE_FLUSH_US;
    lws_sul_cancel(&b->retry_timer);
    probe_stop(b);
    lws_sul_schedule(loop_context, 0, &b->close_timer, close_tick, 1);
}

static void broker_retire(struct mqtt_broker *b)
{
    b->retired = true;
    b->next = retired;
    retired = b;
    if (b->links == 0)
        broker_start_closing(b);
}

/* --- links ----------------------------------------------------------------- */

struct mqtt_broker *mqtt_broker_find(const char *name)
{
    for (struct mqtt_broker *b = brokers; b; b = b->next)
        if (strcmp(b->cfg->name, name) == 0)
            return b;
    return NULL;
}

bool mqtt_broker_connected(const struct mqtt_broker *b) { return b->connected; }
const char *mqtt_broker_name(const struct mqtt_broker *b) { return b->cfg->name; }

struct mqtt_link *mqtt_link_create(struct mqtt_broker *b, const struct mqtt_link_events *ev,
                                   void *owner, size_t bound)
{
    if (!b)
        return NULL;
    struct mqtt_link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->broker = b;
    l->ev = ev;
    l->owner = owner;
    l->bound = bound;
    b->links++;
    return l;
}

static ssize_t link_filter_index(const struct mqtt_link *l, const char *filter)
{
    for (size_t i = 0; i < l->n_filters; i++)
        if (strcmp(l->filters[i].filter, filter) == 0)
            return (ssize_t)i;
    return -1;
}

static struct holding *link_holding(struct mqtt_link *l, const char *filter)
{
    ssize_t i = link_filter_index(l, filter);
    return i < 0 ? NULL : &l->filters[i];
}

static void waiters_forget_link(struct filter_state *fs, const struct mqtt_link *l)
{
    struct sub_waiter **p = &fs->waiters;
    while (*p) {
        struct sub_waiter *w = *p;
        if (w->link == l) {
            *p = w->next;
            free(w->ack_id);
            free(w);
        } else {
            p = &w->next;
        }
    }
}

/* Drops the link's holding of filter i. */
static void link_release_filter(struct mqtt_link *l, size_t i)
{
    struct mqtt_broker *b = l->broker;
    char *filter = l->filters[i].filter;
    void **slot = topic_tree_filter_data(b->tree, filter);
    struct filter_state *fs = slot ? *slot : NULL;
    if (fs)
        waiters_forget_link(fs, l);
    /* The state goes with the last holder (then no waiter is left either). */
    if (topic_tree_remove(b->tree, filter, l) == 1) {
        filter_state_free(fs);
        send_unsubscribe(b, filter);
    }
    free(filter);
    l->filters[i] = l->filters[--l->n_filters];
}

int mqtt_link_subscribe(struct mqtt_link *l, const char *filter, int qos, const char *ack_id)
{
    struct mqtt_broker *b = l->broker;
    bool held = link_filter_index(l, filter) >= 0;
    if (!held && l->n_filters == l->cap_filters) {
        size_t cap = l->cap_filters ? l->cap_filters * 2 : 4;
        struct holding *grown = realloc(l->filters, cap * sizeof(*grown));
        if (!grown)
            return -1;
        l->filters = grown;
        l->cap_filters = cap;
    }
    char *copy = held ? NULL : strdup(filter);
    if (!held && !copy)
        return -1;
    int changed = topic_tree_add(b->tree, filter, l, qos);
    if (changed < 0) {
        free(copy);
        return -1;
    }
    if (!held)
        l->filters[l->n_filters++] = (struct holding){.filter = copy};
    void **slot = topic_tree_filter_data(b->tree, filter);
    if (!*slot) {
        struct filter_state *created = calloc(1, sizeof(*created));
        if (!created || !(created->filter = strdup(filter))) {
            free(created);
            mqtt_link_unsubscribe(l, filter);
            return -1;
        }
        created->broker = b;
        *slot = created;
    }
    struct filter_state *fs = *slot;
    if (changed == 1)
        fs->confirmed = false; /* new, or a higher QoS to ask for */
    if (held && fs->confirmed && b->connected) {
        if (l->ev->subscribed) /* nothing new: no retained messages are owed */
            l->ev->subscribed(l->owner, filter, ack_id, true, NULL);
        return 0;
    }
    struct sub_waiter *w = calloc(1, sizeof(*w));
    if (!w || (ack_id && !(w->ack_id = strdup(ack_id)))) {
        free(w);
        mqtt_link_unsubscribe(l, filter);
        return -1;
    }
    w->link = l;
    w->next = fs->waiters;
    fs->waiters = w;
    /* New at the broker, a higher QoS, or a join that is owed the filter's
     * retained messages: (re)subscribe, unless a SUBSCRIBE is out already
     * and nothing changed (then its SUBACK answers this waiter too). */
    if (b->connected && (changed == 1 || !fs->sub_in_flight))
        send_subscribe(b, filter, topic_tree_max_qos(b->tree, filter), false);
    return 0;
}

int mqtt_link_unsubscribe(struct mqtt_link *l, const char *filter)
{
    ssize_t i = link_filter_index(l, filter);
    if (i < 0)
        return -1;
    link_release_filter(l, (size_t)i);
    return 0;
}

long mqtt_link_publish(struct mqtt_link *l, const char *topic, const void *payload, size_t len,
                       int qos, bool retain, const char *ack_id)
{
    struct mqtt_broker *b = l->broker;
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return -1;
    o->kind = OP_PUBLISH;
    o->broker = b;
    o->seq = next_seq++;
    o->qos = qos;
    o->retain = retain;
    o->len = len;
    o->topic = strdup(topic);
    o->payload = malloc(len ? len : 1);
    if (!o->topic || !o->payload || (ack_id && !(o->ack_id = strdup(ack_id)))) {
        op_free(o);
        return -1;
    }
    if (len)
        memcpy(o->payload, payload, len);
    o->link = l;
    o->link_next = l->ops;
    if (l->ops)
        l->ops->link_prev = o;
    l->ops = o;
    l->pending_bytes += len;
    list_append(&b->waiting, o);
    broker_pump(b);
    return (long)l->pending_bytes;
}

size_t mqtt_link_pending_bytes(const struct mqtt_link *l) { return l->pending_bytes; }

void mqtt_link_destroy(struct mqtt_link *l)
{
    if (!l)
        return;
    while (l->n_filters)
        link_release_filter(l, l->n_filters - 1);
    free(l->filters);
    while (l->ops)
        link_detach_op(l->ops);
    struct mqtt_broker *b = l->broker;
    free(l);
    if (--b->links == 0 && b->retired)
        broker_start_closing(b);
}

/* --- lifetime -------------------------------------------------------------- */

static void broker_free(struct mqtt_broker *b)
{
    if (b->client)
        MQTTAsync_destroy(&b->client);
    purge_events(b);
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
            id_remove(o);
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
    snprintf(client_id, sizeof(client_id), "%s%s", c->client_id, client_id_suffix);
    int rc = MQTTAsync_createWithOptions(&b->client, c->uris[0], client_id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc == MQTTASYNC_SUCCESS)
        rc = MQTTAsync_setCallbacks(b->client, b, on_connection_lost, on_message, NULL);
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
        pthread_mutex_lock(&queue_lock);
        queue_no_wait = true;
        pthread_cond_broadcast(&queue_room);
        pthread_mutex_unlock(&queue_lock);
        MQTTAsync_destroy(&b->client);
        pthread_mutex_lock(&queue_lock);
        queue_no_wait = false;
        pthread_mutex_unlock(&queue_lock);
        b->client = NULL;
        log_warn("mqtt client renewed: a publish failed on a dying connection (Paho would "
                 "resend it from freed memory)", "broker", b->cfg->name);
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
    b->serial = next_serial++;
    if (client_create(b, err, err_len) != 0) {
        broker_free(b);
        return NULL;
    }
    return b;
}

void mqtt_brokers_set_worker(int index)
{
    if (index < 0)
        client_id_suffix[0] = '\0';
    else
        snprintf(client_id_suffix, sizeof(client_id_suffix), "-%d", index);
}

int mqtt_brokers_start(const struct wsg_config *cfg, struct lws_context *context, char *err,
                       size_t err_len)
{
    pthread_mutex_lock(&queue_lock);
    loop_context = context;
    queue_closed = false;
    stopping = false;
    pthread_mutex_unlock(&queue_lock);
    return mqtt_brokers_reload(cfg, err, err_len);
}

int mqtt_brokers_reload(const struct wsg_config *cfg, char *err, size_t err_len)
{
    if (cfg->n_brokers > 0 && !paho_ready) {
        MQTTAsync_init_options init = MQTTAsync_init_options_initializer;
        init.do_openssl_init = 0; /* libwebsockets and OpenSSL 3 initialise it */
        MQTTAsync_global_init(&init);
        srand((unsigned)time(NULL) ^ (unsigned)getpid());
        paho_ready = true;
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
            unlink_from(&brokers, b);
        if (fresh[i]) {
            if (b)
                broker_retire(b);
            b = fresh[i];
            metrics_set_broker_connected(b->cfg->name, 0);
            broker_connect(b);
        }
        *tail = b;
        tail = &b->next;
    }
    while (brokers) {
        struct mqtt_broker *gone = brokers;
        brokers = gone->next;
        metrics_remove_broker(gone->cfg->name);
        broker_retire(gone);
    }
    brokers = list;
    free(fresh);
    return 0;
}

const char *mqtt_brokers_first_down(void)
{
    for (struct mqtt_broker *b = brokers; b; b = b->next)
        if (!b->connected)
            return b->cfg->name;
    return NULL;
}

bool mqtt_brokers_flushed(void)
{
    for (struct mqtt_broker *b = brokers; b; b = b->next)
        if (b->connected && (b->waiting.head || b->in_flight.head))
            return false;
    return true;
}

void mqtt_brokers_stopping(void) { stopping = true; }

void mqtt_brokers_stop(void)
{
    /* Paho threads waiting for room must give up before we disconnect. */
    pthread_mutex_lock(&queue_lock);
    queue_closed = true;
    pthread_cond_broadcast(&queue_room);
    pthread_mutex_unlock(&queue_lock);

    /* Retired sessions go down with the current ones. */
    while (retired) {
        struct mqtt_broker *b = retired;
        retired = b->next;
        b->next = brokers;
        brokers = b;
    }
    for (struct mqtt_broker *b = brokers; b; b = b->next) {
        size_t lost = b->waiting.count + b->in_flight.count;
        if (lost) {
            char n[24];
            snprintf(n, sizeof(n), "%zu", lost);
            log_warn("mqtt publishes not delivered at shutdown", "broker", b->cfg->name,
                     "count", n);
        }
        if (b->client && MQTTAsync_isConnected(b->client)) {
            MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
            d.timeout = DISCONNECT_TIMEOUT_MS;
            if (MQTTAsync_disconnect(b->client, &d) == MQTTASYNC_SUCCESS)
                for (int i = 0; i < 150 && MQTTAsync_isConnected(b->client); i++)
                    usleep(10 * 1000);
        }
    }
    while (brokers) {
        struct mqtt_broker *b = brokers;
        brokers = b->next;
        broker_free(b);
    }
    pthread_mutex_lock(&queue_lock);
    struct broker_event *e = queue_head;
    queue_head = queue_tail = NULL;
    queue_bytes = 0;
    loop_context = NULL;
    pthread_mutex_unlock(&queue_lock);
    while (e) {
        struct broker_event *next = e->next;
        free(e);
        e = next;
    }
    /* Subscribe and unsubscribe ops live only in the id map until their
     * answer is taken from the queue; those whose answer never came (or was
     * dropped with the queue above) go here. Publishes left the map with
     * their broker's lists. */
    for (size_t i = 0; i < id_cap; i++)
        op_free(id_slots[i]);
    free(id_slots);
    id_slots = NULL;
    id_cap = id_count = 0;
}

/* mqtt_events.c - the thread boundary of the MQTT backend: Paho's callbacks,
 * which run on Paho's threads, and the queue that takes what they learned
 * to the lws loop thread (see mqtt_broker_impl.h).
 *
 * The callbacks touch nothing but this queue: they copy what they learned
 * into a `struct broker_event`, append it under a mutex and wake the loop
 * with lws_cancel_service(). Everything else - brokers, links, ops, the
 * topic trees - belongs to the loop thread, which takes the events in
 * batches (mqtt_brokers_service). The queue is bounded: when incoming
 * messages fill it, Paho's receiving thread waits, so the broker's TCP
 * connection backs up instead of our memory. Paho's answers name an op by
 * its id (the callback's context), never by pointer: an op dropped on the
 * loop meanwhile is simply not found. */
#include "mqtt_broker_impl.h"

#include "gateway.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Incoming message bytes queued for the loop before Paho's thread waits. */
#define EVENT_QUEUE_MAX_BYTES ((size_t)32 << 20)

/* The queue is the one state Paho's threads share with the loop, so it stays
 * in this file, under its own lock, rather than in struct gateway: the
 * thread boundary is the file boundary. */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_room = PTHREAD_COND_INITIALIZER;
static struct broker_event *queue_head, *queue_tail;
static size_t queue_bytes;
static bool queue_closed;  /* stopping: Paho threads must not wait any more */
static bool queue_no_wait; /* a client is being destroyed: its threads must not wait */
/* Paho's threads may wake the loop: from mqtt_events_open() until
 * mqtt_events_quiet(), which comes before the lws context goes, so a Paho
 * thread reads struct gateway's context (under queue_lock) only while it
 * is alive. */
static bool loop_awake;

/* Events are recycled, so relaying a message costs no allocator call on
 * either thread (SPEC-2 D): one of up to 64 KiB (header, topic and payload)
 * comes from the free list of its size class and goes back to it; a larger
 * one is malloc'd and freed. The lists live under queue_lock, taken once per
 * event on Paho's side (it is taken to queue the event anyway) and once per
 * batch on the loop's. Each list keeps at most EVENT_FREE_BYTES (a message
 * of 4 KiB takes an 8 KiB block: 512 of them), a small part of the 32 MiB
 * the queue may hold. */
static const size_t event_class_size[] = {512, 8192, 65536};
#define EVENT_CLASSES (sizeof(event_class_size) / sizeof(event_class_size[0]))
#define EVENT_FREE_BYTES ((size_t)4 << 20)
static struct {
    struct broker_event *free; /* through ->next */
    size_t count;
} event_pool[EVENT_CLASSES];

/* --- the event queue (any thread) ----------------------------------------- */

/* A zeroed header and data[extra] = '\0'; the rest of data is the caller's. */
static struct broker_event *event_new(enum event_kind kind, struct mqtt_broker *b, size_t extra)
{
    size_t size = sizeof(struct broker_event) + extra + 1;
    int c = -1;
    for (size_t i = 0; i < EVENT_CLASSES && c < 0; i++)
        if (size <= event_class_size[i])
            c = (int)i;
    struct broker_event *e = NULL;
    if (c >= 0) {
        pthread_mutex_lock(&queue_lock);
        if ((e = event_pool[c].free)) {
            event_pool[c].free = e->next;
            event_pool[c].count--;
        }
        pthread_mutex_unlock(&queue_lock);
        if (!e)
            e = malloc(event_class_size[c]);
    } else {
        e = malloc(size);
    }
    if (!e)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->pool_class = c;
    e->data[extra] = '\0';
    e->kind = kind;
    e->broker = b;
    return e;
}

/* Under queue_lock. */
static void event_put_locked(struct broker_event *e)
{
    int c = e->pool_class;
    if (c >= 0 && (event_pool[c].count + 1) * event_class_size[c] <= EVENT_FREE_BYTES) {
        e->next = event_pool[c].free;
        event_pool[c].free = e;
        event_pool[c].count++;
    } else {
        free(e);
    }
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
        event_put_locked(e);
        pthread_mutex_unlock(&queue_lock);
        return;
    }
    bool was_empty = queue_head == NULL;
    if (queue_tail)
        queue_tail->next = e;
    else
        queue_head = e;
    queue_tail = e;
    queue_bytes += size;
    struct lws_context *ctx = loop_awake ? gateway_get()->context : NULL;
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
    push_simple(EV_CONNECT_FAILED, context, r ? (int)r->reasonCode : 0, r ? r->message : NULL);
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
        e->data[tlen] = '\0';
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
                 refused ? "broker refused the subscription"
                 : r     ? r->message
                         : NULL);
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
    struct broker_event *e =
        op_done_event(context, false, false, r ? r->code : 0, r ? r->message : NULL);
    if (!e)
        return;
    e->paho_kept = r && r->code == MQTTASYNC_FAILURE;
    event_push(e, false);
}

static void on_pub_fail5(void *context, MQTTAsync_failureData5 *r)
{
    bool refused = r && r->reasonCode >= 0x80;
    struct broker_event *e =
        op_done_event(context, false, refused, r ? (int)r->reasonCode : 0, r ? r->message : NULL);
    if (!e)
        return;
    e->paho_kept = r && !refused && r->code == MQTTASYNC_FAILURE;
    event_push(e, false);
}

/* --- the callbacks into Paho's options (loop thread) ------------------------ */

void mqtt_events_connect_options(MQTTAsync_connectOptions *o, bool v5)
{
    if (v5) {
        o->onSuccess5 = on_connect_ok5;
        o->onFailure5 = on_connect_fail5;
    } else {
        o->onSuccess = on_connect_ok;
        o->onFailure = on_connect_fail;
    }
}

void mqtt_events_publish_options(MQTTAsync_responseOptions *ro, bool v5)
{
    if (v5) {
        ro->onSuccess5 = on_pub_ok5;
        ro->onFailure5 = on_pub_fail5;
    } else {
        ro->onSuccess = on_op_ok;
        ro->onFailure = on_pub_fail;
    }
}

void mqtt_events_subscribe_options(MQTTAsync_responseOptions *ro, bool v5)
{
    if (v5) {
        ro->onSuccess5 = on_op_ok5;
        ro->onFailure5 = on_op_fail5;
    } else {
        ro->onSuccess = on_sub_ok;
        ro->onFailure = on_op_fail;
    }
}

void mqtt_events_disconnect_options(MQTTAsync_disconnectOptions *d, struct mqtt_broker *b)
{
    d->onSuccess = on_disconnect_done;
    d->onFailure = on_disconnect_fail;
    d->context = b;
}

int mqtt_events_set_callbacks(MQTTAsync client, struct mqtt_broker *b)
{
    return MQTTAsync_setCallbacks(client, b, on_connection_lost, on_message, NULL);
}

/* --- the loop's side of the queue ------------------------------------------- */

void mqtt_events_open(void)
{
    pthread_mutex_lock(&queue_lock);
    loop_awake = true;
    queue_closed = false;
    pthread_mutex_unlock(&queue_lock);
}

void mqtt_events_quiet(void)
{
    pthread_mutex_lock(&queue_lock);
    loop_awake = false;
    pthread_mutex_unlock(&queue_lock);
}

/* Messages are taken in small batches: after each, lws gets to write to the
 * clients before the next is queued for them, so a client that reads keeps
 * its queue short and only one that does not falls behind its bound. */
#define SERVICE_BATCH_MESSAGES 64
#define SERVICE_BATCH_BYTES (16 * 1024)

struct broker_event *mqtt_events_take(bool *more)
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
    *more = queue_head != NULL;
    pthread_mutex_unlock(&queue_lock);
    return first;
}

void mqtt_events_release(struct broker_event *list)
{
    if (!list)
        return;
    pthread_mutex_lock(&queue_lock);
    while (list) {
        struct broker_event *next = list->next;
        event_put_locked(list);
        list = next;
    }
    pthread_mutex_unlock(&queue_lock);
}

void mqtt_events_purge(const struct mqtt_broker *b)
{
    pthread_mutex_lock(&queue_lock);
    struct broker_event **p = &queue_head, *last = NULL;
    while (*p) {
        struct broker_event *e = *p;
        if (e->broker == b) {
            *p = e->next;
            queue_bytes -= sizeof(*e) + e->topic_len + e->payload_len;
            event_put_locked(e);
        } else {
            last = e;
            p = &e->next;
        }
    }
    queue_tail = last;
    pthread_mutex_unlock(&queue_lock);
}

void mqtt_events_let_through(bool on)
{
    pthread_mutex_lock(&queue_lock);
    queue_no_wait = on;
    if (on)
        pthread_cond_broadcast(&queue_room);
    pthread_mutex_unlock(&queue_lock);
}

void mqtt_events_close(void)
{
    pthread_mutex_lock(&queue_lock);
    queue_closed = true;
    pthread_cond_broadcast(&queue_room);
    pthread_mutex_unlock(&queue_lock);
}

void mqtt_events_discard(void)
{
    pthread_mutex_lock(&queue_lock);
    struct broker_event *e = queue_head;
    queue_head = queue_tail = NULL;
    queue_bytes = 0;
    loop_awake = false;
    for (size_t c = 0; c < EVENT_CLASSES; c++) {
        /* Nothing calls back any more: every client is destroyed. */
        struct broker_event *f = event_pool[c].free;
        event_pool[c].free = NULL;
        event_pool[c].count = 0;
        while (f) {
            struct broker_event *next = f->next;
            free(f);
            f = next;
        }
    }
    pthread_mutex_unlock(&queue_lock);
    while (e) {
        struct broker_event *next = e->next;
        free(e);
        e = next;
    }
}

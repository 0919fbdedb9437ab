/* mqtt_link.c - the links of the MQTT backend: which WebSocket clients hold
 * which filters of a broker's session, the SUBSCRIBEs and UNSUBSCRIBEs that
 * follow from it, and who gets a message (see mqtt_broker_impl.h).
 *
 * A filter is subscribed at the broker once, however many links hold it (the
 * broker's topic tree counts them, with the highest QoS asked for); it is
 * unsubscribed when its last holder lets go. A link waiting for a filter's
 * SUBACK is answered when it comes; a refused SUBSCRIBE is retried with
 * backoff. Publishing is the session's (mqtt_broker.c): a link only counts
 * its publishes' bytes. */
#include "mqtt_broker_impl.h"

#include "config.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "topic.h"
#include "topic_tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* A refused SUBSCRIBE is retried after 1, 2, 4, 8, 16 s; then the clients
 * waiting for it are told, and it is retried every 30 s while held. */
#define SUBSCRIBE_RETRIES 5
#define SUBSCRIBE_RETRY_MAX_S 30

void filter_state_free(struct filter_state *fs)
{
    if (!fs)
        return;
    lws_sul_cancel(&fs->retry_timer);
    free(fs->filter);
    free(fs);
}

void link_detach_op(struct op *o)
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

/* --- subscriptions --------------------------------------------------------- */

static struct holding *link_holding(struct mqtt_link *l, const char *filter);

static void waiters_answer(struct filter_state *fs, const char *filter, bool ok, const char *detail)
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
            broker_replay_held(fs->broker, w->link, filter);
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
    struct op *o = op_new(OP_SUBSCRIBE, b, filter, NULL, NULL, 0);
    if (!o || op_hand_out(o) != 0) {
        op_free(o);
        return; /* retried with every filter at the next reconnect */
    }
    o->qos = qos;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = (void *)(uintptr_t)o->id;
    mqtt_events_subscribe_options(&ro, b->v5);
    if (MQTTAsync_subscribe(b->client, filter, qos, &ro) != MQTTASYNC_SUCCESS) {
        op_forget(o);
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
    if (b->persistent && gateway_get()->mqtt.stopping)
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
void links_send_pending_unsubscribes(struct mqtt_broker *b)
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

void links_subscribe_done(struct op *o, bool ok, bool refused, const char *detail)
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
            int delay_s =
                fs->denials <= SUBSCRIBE_RETRIES ? 1 << (fs->denials - 1) : SUBSCRIBE_RETRY_MAX_S;
            char in[16];
            snprintf(in, sizeof(in), "%d", delay_s);
            log_warn("mqtt subscribe refused, retrying", "broker", b->cfg->name, "filter", o->topic,
                     "retry_in_s", in);
            mqtt_timer_schedule(&fs->retry_timer, retry_subscribe,
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

void links_resubscribe_all(struct mqtt_broker *b)
{
    topic_tree_each_filter(b->tree, resubscribe_one, b);
}

void links_unconfirm_all(struct mqtt_broker *b)
{
    topic_tree_each_filter(b->tree, unconfirm_one, b);
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

size_t links_deliver(struct mqtt_broker *b, struct mqtt_delivery *d)
{
    return topic_tree_match(b->tree, d->topic, deliver_to_link, d);
}

/* --- the links' API (mqtt_broker.h) ----------------------------------------- */

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
    l->next = b->link_list;
    if (l->next)
        l->next->prev = l;
    b->link_list = l;
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
    struct op *o = op_new(OP_PUBLISH, b, topic, ack_id, payload, len);
    if (!o)
        return -1;
    o->qos = qos;
    o->retain = retain;
    o->link = l;
    o->link_next = l->ops;
    if (l->ops)
        l->ops->link_prev = o;
    l->ops = o;
    l->pending_bytes += len;
    broker_queue_publish(b, o);
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
    if (l->prev)
        l->prev->next = l->next;
    else
        b->link_list = l->next;
    if (l->next)
        l->next->prev = l->prev;
    free(l);
    if (!b->link_list && b->retired)
        broker_start_closing(b);
}

/* mqtt_broker_impl.h - what the files of the MQTT backend share; nothing
 * else includes it (the rest of wsgate sees mqtt_broker.h).
 *
 *   mqtt_broker.c  the broker session: connect, reconnect with backoff, the
 *                  port probe, persistent sessions (resume window, reset),
 *                  publishing, the op ids, reloads and lifetime
 *   mqtt_link.c    the links: which clients hold which filters, the
 *                  SUBSCRIBEs and UNSUBSCRIBEs that follows from it, who
 *                  gets a message
 *   mqtt_events.c  the thread boundary: Paho's callbacks (on Paho's
 *                  threads) and the bounded queue that takes what they
 *                  learned to the loop thread
 *   core/op_map.c  op id -> op
 *
 * Everything declared here, except the mqtt_events_* queue functions, runs
 * on the lws loop thread. */
#ifndef WSGATE_MQTT_BROKER_IMPL_H
#define WSGATE_MQTT_BROKER_IMPL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getaddrinfo_a (struct gaicb in struct probe_target) */
#endif
#include "mqtt_broker.h"

#include <MQTTAsync.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* --- types ---------------------------------------------------------------- */

enum op_kind { OP_PUBLISH, OP_SUBSCRIBE };

struct op {
    uint64_t id;  /* while handed to Paho (in the id map), else 0 */
    uint64_t seq; /* publish order, to resend in order */
    enum op_kind kind;
    struct mqtt_broker *broker;
    struct op *prev, *next;           /* broker's waiting or in-flight list */
    struct op *link_prev, *link_next; /* the link's publishes */
    struct mqtt_link *link;           /* NULL once the link is gone */
    /* In the op's own block (op_new), after the struct: */
    char *ack_id; /* may be NULL */
    char *topic;  /* topic, or filter */
    uint8_t *payload;
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
    struct mqtt_link *prev, *next; /* in its broker's list of links */
    const struct mqtt_link_events *ev;
    void *owner;
    size_t bound;
    size_t pending_bytes;
    struct op *ops;          /* its publishes not yet done */
    struct holding *filters; /* owned */
    size_t n_filters, cap_filters;
};

struct mqtt_broker {
    struct mqtt_broker *next;
    struct wsg_broker *cfg;      /* owned copy: a broker outlives the config that made it */
    bool retired;                /* replaced or removed by a reload; serves its old links */
    bool closing;                /* retired and unused: flushing, then disconnecting */
    struct mqtt_link *link_list; /* the links on this session (not owned) */
    /* A reload replaced this session by one with the same client id, which
     * connects only once this one is gone (broker_hand_over): */
    struct mqtt_broker *successor;   /* waits for this one */
    struct mqtt_broker *predecessor; /* this one waits for it */
    lws_usec_t close_deadline;
    lws_sorted_usec_list_t close_timer;
    MQTTAsync client;
    uint32_t serial;    /* names the broker in its op ids (OP_ID_BROKER_SHIFT) */
    bool paho_dangling; /* Paho kept a publish it freed: renew the client (see client_renew) */
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
    bool had_connack;     /* this process has been connected once */
    bool reset_session;   /* the next connect starts a fresh session */
    bool reset_reconnect; /* 3.1.1: the clean connect is done, go persistent again */
    bool resuming;        /* in the resume window */
    struct held_msg *held_head, *held_tail;
    size_t held_count, held_bytes;
    uint64_t resume_dropped; /* over the hold's bounds */
    lws_sorted_usec_list_t resume_timer;
    struct pending_unsub *unsubs;
    /* The port probe while in backoff. */
    struct probe_target *targets; /* one per uri */
    size_t probe_next;            /* the target the current/next probe is for */
    int probe_fd;
    lws_usec_t probe_started;
    bool probe_seen_down; /* a probe found the port closed since the last connection */
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
    bool refused;   /* the broker said no (not a lost connection) */
    bool paho_kept; /* a publish's first write failed: Paho keeps it, freed (client_renew) */
    bool retained;
    int code;
    int pool_class; /* its size class in mqtt_events.c's free lists, -1: malloc'd */
    size_t topic_len, payload_len;
    char data[]; /* topic NUL payload (messages) or a message text (failures) */
};

/* --- shared state (loop thread) -------------------------------------------- */

/* The loop's timers are scheduled on struct gateway's context; the rest of
 * the MQTT files' process state is its `mqtt` (struct mqtt_brokers). */

/* Schedules one of the MQTT files' timers on the gateway's context; does
 * nothing from mqtt_brokers_shutdown() on (the context is about to go). */
void mqtt_timer_schedule(lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t us);

/* --- mqtt_broker.c: the session ------------------------------------------- */

/* An op with copies of topic, ack_id (may be NULL) and payload, all in one
 * block from the loop's buffer pool (no allocator call once the pool is
 * warm); the rest zeroed. NULL out of memory. Freed with op_free(). */
struct op *op_new(enum op_kind kind, struct mqtt_broker *b, const char *topic, const char *ack_id,
                  const void *payload, size_t len);
/* Gives o (its broker set) an id and puts it in the id map: 0, or -1. */
int op_hand_out(struct op *o);
/* Takes o out of the id map (a late answer for it is then ignored). */
void op_forget(struct op *o);
void op_free(struct op *o);
/* A publish from a link: queued behind the broker's others and sent when
 * Paho can take it. */
void broker_queue_publish(struct mqtt_broker *b, struct op *o);
/* A retired broker's last link is gone: flush, disconnect, free. */
void broker_start_closing(struct mqtt_broker *b);
/* A link's subscription to filter was confirmed during the resume window:
 * it gets the kept messages that match. */
void broker_replay_held(struct mqtt_broker *b, struct mqtt_link *l, const char *filter);

/* --- mqtt_link.c: the links ------------------------------------------------ */

void filter_state_free(struct filter_state *fs);
/* Unhooks a publish from its link (the link is going, or the op is done). */
void link_detach_op(struct op *o);
/* After a reconnect: every held filter is SUBSCRIBEd again. */
void links_resubscribe_all(struct mqtt_broker *b);
/* The connection is gone: no filter is confirmed any more. */
void links_unconfirm_all(struct mqtt_broker *b);
/* After a resumed session: the filters let go while disconnected. */
void links_send_pending_unsubscribes(struct mqtt_broker *b);
/* A SUBSCRIBE's answer (o->topic is its filter). */
void links_subscribe_done(struct op *o, bool ok, bool refused, const char *detail);
/* Hands a message to every link with a matching filter; how many matched. */
size_t links_deliver(struct mqtt_broker *b, struct mqtt_delivery *d);

/* --- mqtt_events.c: Paho's callbacks and the queue to the loop ------------- */

/* The callbacks, set into Paho's options (v5: the MQTT 5 variants). */
void mqtt_events_connect_options(MQTTAsync_connectOptions *o, bool v5);
void mqtt_events_publish_options(MQTTAsync_responseOptions *ro, bool v5);
void mqtt_events_subscribe_options(MQTTAsync_responseOptions *ro, bool v5);
/* Our own disconnect (a session reset): EV_DISCONNECTED for b follows. */
void mqtt_events_disconnect_options(MQTTAsync_disconnectOptions *d, struct mqtt_broker *b);
/* Connection lost and message arrived, for the client of b. */
int mqtt_events_set_callbacks(MQTTAsync client, struct mqtt_broker *b);

/* Paho's threads may queue again (after mqtt_events_close), and wake the
 * loop (struct gateway's context) when the queue was empty. */
void mqtt_events_open(void);
/* Before the lws context goes: Paho's threads no longer wake the loop
 * (what they queue is dropped with the queue at mqtt_events_discard()). */
void mqtt_events_quiet(void);
/* The next batch of events, oldest first (a list through ->next, given
 * back with mqtt_events_release()); *more: events are left for the next call. */
struct broker_event *mqtt_events_take(bool *more);
/* Gives back a list of events taken (NULL is fine). */
void mqtt_events_release(struct broker_event *list);
/* Drops the events queued for b (after Paho stopped calling back for it). */
void mqtt_events_purge(const struct mqtt_broker *b);
/* While a client is destroyed its threads must not wait for room (the
 * loop, which makes room, waits for them): true lets them through. */
void mqtt_events_let_through(bool on);
/* Stopping: no Paho thread waits any more, nothing more is queued. */
void mqtt_events_close(void);
/* After every client is destroyed: frees what is left, forgets the loop. */
void mqtt_events_discard(void);

#endif

/* mqtt_broker.h - one MQTT session per configured broker (Eclipse Paho, async
 * API), shared by every client of every mqtt route.
 *
 * Paho runs its own threads; everything here is called on the lws event loop
 * thread, and Paho's callbacks only hand events over to it through a bounded
 * queue (mqtt_brokers_service() takes them). Each WebSocket client talks to
 * its broker through a `struct mqtt_link`: its subscriptions (reference-counted
 * in one topic tree per broker, so a filter held by 10,000 links is subscribed
 * at the broker once) and its publishes (held until the broker has them, and
 * sent again after a reconnect). */
#ifndef WSGATE_MQTT_BROKER_H
#define WSGATE_MQTT_BROKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg_buffer.h"
#include "op_map.h"

struct wsg_config;
struct mqtt_broker;
struct mqtt_link;

/* The process's broker sessions (struct gateway's `mqtt`), the loop
 * thread's but for paho_connecting. A reload's old and new sessions meet
 * here: a replaced one moves from `current` to `retired` and serves the
 * links it has until the last goes. mqtt_brokers_start() fills it,
 * mqtt_brokers_stop() empties it (after the lws context went). */
struct mqtt_brokers {
    struct mqtt_broker *current; /* owned: the configured ones, in config order */
    struct mqtt_broker *retired; /* owned: replaced or removed ones still in use */
    bool paho_ready;             /* MQTTAsync_global_init() done (once per process) */
    bool stopping;               /* shutting down (mqtt_brokers_stopping) */
    bool timers_off;             /* from mqtt_brokers_shutdown(): no timer is scheduled */
    char client_id_suffix[16];   /* "-<worker>" when several workers run */
    uint64_t next_op_id, next_seq;
    uint32_t next_serial;
    struct op_map ops_by_id; /* the ops Paho has: its answers name them by id */
    /* Our connects in progress: read by every thread's poll() (interpose.c),
     * Paho's included, hence atomic. */
    atomic_int paho_connecting;
};

/* One message from the broker, as handed to every link it matches. The
 * `envelope` is a cache the links of envelope routes share: built by the
 * first that needs it (len 0 until then), given back by the broker. */
struct mqtt_delivery {
    const char *topic;
    const uint8_t *payload;
    size_t len;
    bool retained;              /* sent because of a (re)subscription, not live */
    int utf8;                   /* -1 unknown, else whether payload is valid UTF-8 */
    struct msg_buffer envelope; /* owned by the broker; its block a buf_pool one */
};

/* What a link's owner hears; all on the loop thread. */
struct mqtt_link_events {
    void (*message)(void *owner, struct mqtt_delivery *d);
    /* A publish is done: the broker has it (ok) or refused it. */
    void (*published)(void *owner, const char *ack_id, bool ok, const char *detail);
    /* A subscription is in place at the broker (ok) or was refused; may be
     * called before mqtt_link_subscribe() returns. */
    void (*subscribed)(void *owner, const char *filter, const char *ack_id, bool ok,
                       const char *detail);
    /* The link's publishes waiting for the broker fell to half its bound. */
    void (*drained)(void *owner);
    /* A reload replaced the link's session by one with the same client id,
     * which can connect only once this one is gone: the owner ends its
     * client, which reconnects to the new session. */
    void (*replaced)(void *owner);
};

/* In worker process `index` of several (-1: a single process): client ids
 * get "-<index>" appended, one session per worker. Call before starting. */
void mqtt_brokers_set_worker(int index);

/* Creates every configured broker's session and starts connecting, on the
 * lws context of struct gateway. The config must outlive the brokers. 0, or
 * -1 with a message in err. */
int mqtt_brokers_start(const struct wsg_config *cfg, char *err, size_t err_len);

/* A reload: brokers whose settings are unchanged keep their session; new
 * or changed ones get a new session for new clients, while the replaced
 * session serves the links it has until the last one goes, then flushes and
 * disconnects. Removed brokers likewise. 0, or -1 (nothing changed). */
int mqtt_brokers_reload(const struct wsg_config *cfg, char *err, size_t err_len);

/* Takes the events Paho's threads queued (call on LWS_CALLBACK_EVENT_WAIT_CANCELLED). */
void mqtt_brokers_service(void);

/* True when no connected broker has publishes left to take. */
bool mqtt_brokers_flushed(void);

/* The name of the first configured broker that is not connected, or NULL. */
const char *mqtt_brokers_first_down(void);

/* The process is shutting down: clients going now do not make a persistent
 * session unsubscribe their filters (the broker keeps queueing for them
 * until the gateway is back). Call before the clients are closed. */
void mqtt_brokers_stopping(void);

/* Before the lws context is destroyed: every broker timer is cancelled and
 * none is scheduled again; Paho's threads stop waking a loop that is no
 * longer served (and whose context is about to go). */
void mqtt_brokers_shutdown(void);

/* Disconnects and frees every broker (after the event loop has stopped). */
void mqtt_brokers_stop(void);

struct mqtt_broker *mqtt_broker_find(const char *name);

/* A client's handle. `bound`: bytes of publishes it may have waiting for the
 * broker before drained() is owed (max_queue_bytes). */
struct mqtt_link *mqtt_link_create(struct mqtt_broker *b, const struct mqtt_link_events *ev,
                                   void *owner, size_t bound);

/* Drops the link's subscriptions (unsubscribing filters nobody else holds).
 * Its publishes still waiting go to the broker all the same, unreported. */
void mqtt_link_destroy(struct mqtt_link *l);

/* Holds `filter` (a valid MQTT filter) for the link; subscribed() follows,
 * with `ack_id` (may be NULL). Holding a filter twice keeps one holding.
 * 0, or -1 out of memory. */
int mqtt_link_subscribe(struct mqtt_link *l, const char *filter, int qos, const char *ack_id);

/* Lets go of a filter: 0, or -1 if the link does not hold it. */
int mqtt_link_unsubscribe(struct mqtt_link *l, const char *filter);

/* Queues a publish (topic valid, copied with the payload); published()
 * follows once the broker has it. Returns the link's bytes now waiting, or
 * -1 out of memory. */
long mqtt_link_publish(struct mqtt_link *l, const char *topic, const void *payload, size_t len,
                       int qos, bool retain, const char *ack_id);

/* Bytes of this link's publishes not yet taken by the broker. */
size_t mqtt_link_pending_bytes(const struct mqtt_link *l);

bool mqtt_broker_connected(const struct mqtt_broker *b);
const char *mqtt_broker_name(const struct mqtt_broker *b);

/* For interpose.c's poll(), on every thread: the timeout to use instead of
 * `timeout` (Paho's receive thread waits at most 20 ms while one of our
 * connects is in progress; see mqtt_broker.c). */
int mqtt_paho_poll_timeout(int timeout);

#endif

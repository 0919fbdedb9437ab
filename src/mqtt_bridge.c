/* mqtt_bridge.c - the bridge of "mqtt" routes (see bridge.h and docs/MQTT.md):
 * a client's link to the route's shared broker session.
 *
 * Client -> broker: whole client messages (reassembled here, bounded by
 * max_message_bytes) become publishes - by the route's publish rules
 * ("raw") or as JSON requests checked against the route's allow filters
 * ("envelope"). Publishes the broker has not taken yet count against
 * max_queue_bytes: past it a raw client stops being read, an envelope
 * publish is answered "queue_full".
 * Broker -> client: messages on the link's filters, as payloads (raw) or
 * {"topic", "payload"} (envelope). A client whose send queue is over
 * max_queue_bytes gets the route's slow_consumer policy: drop (counted) or
 * close 1008; the broker session never waits for one client. */
#include "bridge_impl.h"

#include "backends.h"

#include "auth.h"
#include "config.h"
#include "envelope.h"
#include "framing.h"
#include "json_scratch.h"
#include "utf8.h"
#include "log.h"
#include "metrics.h"
#include "msg_buffer.h"
#include "mqtt_broker.h"
#include "publish_rules.h"
#include "route.h"
#include "session.h"
#include "topic.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* With max_message_bytes 0 ("none"), a client message still stops here. */
#define REASSEMBLY_CAP_BYTES ((size_t)64 << 20)
/* Longest topic or filter a template may expand to. */
#define TOPIC_BUF_BYTES 1024

struct mqtt_bridge {
    struct bridge base; /* first: bridge.c dispatches through it */
    struct session *session;
    const struct wsg_route *route;
    struct mqtt_link *link; /* owned */
    size_t bound;           /* max_queue_bytes */
    size_t max_message;
    bool reading_paused;
    bool announced; /* open: on_disconnect is owed */

    struct msg_buffer message; /* the client message being reassembled */

    /* envelope: the route's allow filters with this client's values filled in; owned */
    char **publish_allow;
    size_t n_publish_allow;
    char **subscribe_allow;
    size_t n_subscribe_allow;
};

static void close_client(struct mqtt_bridge *b, int code, const char *what)
{
    char reason[SESSION_CLOSE_REASON_MAX];
    snprintf(reason, sizeof(reason), "route %s: %s", b->route->name, what);
    session_close(b->session, code, reason);
}

/* --- templates ------------------------------------------------------------- */

/* {jwt.<claim>} from the client's token, {auth.<claim>} from the auth
 * service's answer (or the token, on JWT routes: the session holds one set
 * of claims), {msg./pointer} from its message. */
struct value_lookup {
    json_t *claims;    /* or NULL */
    json_t *doc;       /* or NULL */
    bool claims_later; /* {auth.x} not known yet: any safe value stands in */
    char number[32];
};

static const char *lookup_value(void *ctx, const char *name)
{
    struct value_lookup *vl = ctx;
    if (strncmp(name, "jwt.", 4) == 0)
        return auth_claim_value(vl->claims, name + 4, vl->number, sizeof(vl->number));
    if (strncmp(name, "auth.", 5) == 0)
        return vl->claims_later
                   ? "later"
                   : auth_claim_value(vl->claims, name + 5, vl->number, sizeof(vl->number));
    return publish_msg_value(vl->doc, name, vl->number, sizeof(vl->number));
}

static int expand_with(const struct route_match *m, struct value_lookup *vl, const char *tmpl,
                       bool filter, char *out, size_t out_len, char *err, size_t err_len)
{
    if (route_expand(tmpl, m, lookup_value, vl, out, out_len, err, err_len) < 0)
        return -1;
    if (filter ? !topic_filter_is_valid(out) : !topic_name_is_valid(out)) {
        snprintf(err, err_len, "\"%s\" is not a valid MQTT topic%s", tmpl, filter ? " filter" : "");
        return -1;
    }
    return 0;
}

/* Expands a topic or filter template for this client. 0 or -1 with err. */
static int expand(const struct route_match *m, json_t *claims, const char *tmpl, json_t *doc,
                  bool filter, char *out, size_t out_len, char *err, size_t err_len)
{
    struct value_lookup vl = {.claims = claims, .doc = doc};
    return expand_with(m, &vl, tmpl, filter, out, out_len, err, err_len);
}

static bool uses_msg(const char *tmpl) { return strstr(tmpl, "{msg.") != NULL; }

/* Every template that depends only on the request, expanded once to find a
 * missing query parameter before the upgrade (HTTP 400). */
static int mqtt_check_request(struct backend_request *req, char *reason, size_t reason_len)
{
    const struct route_match *m = req->match;
    struct value_lookup vl = {.claims = req->claims, .claims_later = req->claims_later};
    const struct wsg_route *r = m->route;
    char out[TOPIC_BUF_BYTES], err[200];
    struct tmpl_use {
        const char *tmpl;
        bool filter;
    } t[64];
    size_t n = 0;
    for (size_t i = 0; i < r->n_subscribe && n < 64; i++)
        t[n++] = (struct tmpl_use){r->subscribe[i].filter, true};
    for (size_t i = 0; i < r->n_publish && n < 64; i++)
        if (!uses_msg(r->publish[i].topic))
            t[n++] = (struct tmpl_use){r->publish[i].topic, false};
    for (size_t i = 0; i < r->n_publish_allow && n < 64; i++)
        t[n++] = (struct tmpl_use){r->publish_allow[i], true};
    for (size_t i = 0; i < r->n_subscribe_allow && n < 64; i++)
        t[n++] = (struct tmpl_use){r->subscribe_allow[i], true};
    if (r->has_on_connect && n < 64)
        t[n++] = (struct tmpl_use){r->on_connect.topic, false};
    if (r->has_on_disconnect && n < 64)
        t[n++] = (struct tmpl_use){r->on_disconnect.topic, false};
    for (size_t i = 0; i < n; i++) {
        if (expand_with(m, &vl, t[i].tmpl, t[i].filter, out, sizeof(out), err, sizeof(err)) != 0) {
            snprintf(reason, reason_len, "route %s: %s", r->name, err);
            return 400;
        }
    }
    if (!mqtt_broker_find(r->broker)) {
        snprintf(reason, reason_len, "route %s: broker %s not running", r->name, r->broker);
        return 503;
    }
    return 0;
}

/* --- client -> broker ------------------------------------------------------ */

/* A reply built into `json` (0 from its builder) is queued for the client
 * and the buffer given back. */
static void send_reply(struct mqtt_bridge *b, int built, struct msg_buffer *json)
{
    if (built != 0) {
        msg_buffer_free(json);
        close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    long queued = session_reply(b->session, (const char *)json->data, json->len);
    msg_buffer_free(json);
    /* A client that sends requests and never reads the answers is paused. */
    if (queued > 0 && (size_t)queued > b->bound && !b->reading_paused) {
        b->reading_paused = true;
        session_pause_reading(b->session, true);
    }
}

static void reply_error(struct mqtt_bridge *b, const char *code, const char *message,
                        const char *id)
{
    struct msg_buffer json = {0};
    send_reply(b, envelope_error(&json, code, message, id), &json);
}

static void reply_ack(struct mqtt_bridge *b, const char *id)
{
    if (!id)
        return;
    struct msg_buffer json = {0};
    send_reply(b, envelope_ack(&json, id), &json);
}

static void maybe_resume(struct mqtt_bridge *b)
{
    if (b->reading_paused && mqtt_link_pending_bytes(b->link) <= b->bound / 2 &&
        session_queued_bytes(b->session) <= b->bound / 2) {
        b->reading_paused = false;
        session_pause_reading(b->session, false);
    }
}

static void publish(struct mqtt_bridge *b, const char *topic, const uint8_t *payload, size_t len,
                    int qos, bool retain, const char *ack_id)
{
    long pending = mqtt_link_publish(b->link, topic, payload, len, qos, retain, ack_id);
    if (pending < 0) {
        close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    if ((size_t)pending > b->bound && !b->reading_paused) {
        b->reading_paused = true;
        session_pause_reading(b->session, true);
    }
}

static void drop_message(struct mqtt_bridge *b, const char *why)
{
    session_metrics(b->session)->dropped[DROP_NO_RULE]++;
    log_debug("client message not published", "route", b->route->name, "reason", why);
}

static void raw_message(struct mqtt_bridge *b, const uint8_t *msg, size_t len)
{
    const struct wsg_route *r = b->route;
    if (r->n_publish == 0) {
        drop_message(b, "the route publishes nothing");
        return;
    }
    bool needs_json = false;
    for (size_t i = 0; i < r->n_publish; i++)
        needs_json |= r->publish[i].when_pointer || uses_msg(r->publish[i].topic);
    /* The message's JSON is needed only to pick the rule and its topic:
     * jansson's scratch arena (json_scratch.h), so that rules reading it
     * allocate nothing. The scope ends before anything else happens. */
    json_scratch_begin();
    json_t *doc = needs_json ? publish_message_json(msg, len) : NULL;
    long i = publish_rule_pick(r->publish, r->n_publish, doc);
    char topic[TOPIC_BUF_BYTES], err[200];
    int expanded =
        i < 0 ? -1
              : expand(session_match(b->session), session_claims(b->session), r->publish[i].topic,
                       doc, false, topic, sizeof(topic), err, sizeof(err));
    json_decref(doc);
    json_scratch_end();
    if (i < 0)
        drop_message(b, "no publish rule matches");
    else if (expanded != 0)
        drop_message(b, err);
    else
        publish(b, topic, msg, len, r->publish[i].qos, r->publish[i].retain, NULL);
}

static void envelope_request(struct mqtt_bridge *b, const uint8_t *msg, size_t len)
{
    struct envelope_request req;
    const char *code = NULL;
    char text[200];
    if (envelope_parse(msg, len, &req, &code, text, sizeof(text)) != 0) {
        reply_error(b, code, text, req.id);
        envelope_request_free(&req);
        return;
    }
    switch (req.kind) {
    case ENVELOPE_PUBLISH:
        if (!envelope_may_publish(b->publish_allow, b->n_publish_allow, req.topic)) {
            snprintf(text, sizeof(text), "publishing to this topic is not allowed on route %s",
                     b->route->name);
            reply_error(b, ENVELOPE_ERR_NOT_ALLOWED, text, req.id);
        } else if (req.qos > b->route->publish_qos_max) {
            snprintf(text, sizeof(text), "qos %d is above this route's %d", req.qos,
                     b->route->publish_qos_max);
            reply_error(b, ENVELOPE_ERR_QOS_NOT_ALLOWED, text, req.id);
        } else if (mqtt_link_pending_bytes(b->link) + req.payload_len > b->bound) {
            reply_error(b, ENVELOPE_ERR_QUEUE_FULL,
                        "too many publishes waiting for the broker; retry later", req.id);
        } else {
            publish(b, req.topic, req.payload, req.payload_len, req.qos, req.retain, req.id);
        }
        break;
    case ENVELOPE_SUBSCRIBE:
        if (!envelope_may_subscribe(b->subscribe_allow, b->n_subscribe_allow, req.topic)) {
            snprintf(text, sizeof(text), "subscribing to this filter is not allowed on route %s",
                     b->route->name);
            reply_error(b, ENVELOPE_ERR_NOT_ALLOWED, text, req.id);
        } else if (mqtt_link_subscribe(b->link, req.topic, req.qos, req.id) != 0) {
            close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
        }
        break;
    case ENVELOPE_UNSUBSCRIBE:
        if (mqtt_link_unsubscribe(b->link, req.topic) != 0)
            reply_error(b, ENVELOPE_ERR_NOT_SUBSCRIBED, "not subscribed to this filter", req.id);
        else
            reply_ack(b, req.id);
        break;
    case ENVELOPE_REFRESH:
        if (session_refresh_token(b->session, req.topic, strlen(req.topic), text, sizeof(text)) !=
            0)
            reply_error(b, ENVELOPE_ERR_BAD_TOKEN, text, req.id);
        else
            reply_ack(b, req.id);
        OPENSSL_cleanse(req.topic, strlen(req.topic));
        break;
    }
    envelope_request_free(&req);
}

static void client_data(struct bridge *base, const uint8_t *data, size_t len, bool first,
                        bool final, bool text)
{
    (void)text;
    struct mqtt_bridge *b = (struct mqtt_bridge *)base;
    if (first)
        b->message.len = 0;
    if (first && final) { /* the common case: no copy */
        if (b->route->format == WSG_FORMAT_ENVELOPE)
            envelope_request(b, data, len);
        else
            raw_message(b, data, len);
        return;
    }
    int rc = msg_buffer_append(&b->message, data, len, b->max_message);
    if (rc != 0) {
        if (rc == MSG_BUFFER_NO_MEMORY)
            close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
        else
            close_client(b, CLOSE_TOO_BIG, "message too big");
        return;
    }
    if (!final)
        return;
    if (b->route->format == WSG_FORMAT_ENVELOPE)
        envelope_request(b, b->message.data, b->message.len);
    else
        raw_message(b, b->message.data, b->message.len);
    msg_buffer_done(&b->message);
}

static void client_drained(struct bridge *base) { maybe_resume((struct mqtt_bridge *)base); }

/* --- broker -> client ------------------------------------------------------ */

static void on_message(void *owner, struct mqtt_delivery *d)
{
    struct mqtt_bridge *b = owner;
    const void *data;
    size_t len;
    bool text;
    if (b->route->format == WSG_FORMAT_ENVELOPE) {
        if (d->envelope.len == 0 &&
            envelope_message(&d->envelope, d->topic, d->payload, d->len) != 0) {
            /* A topic that is not UTF-8 has no JSON form (not this client's
             * loss); otherwise memory is out, which fails this client. */
            if (utf8_is_valid(d->topic, strlen(d->topic)))
                close_client(b, CLOSE_INTERNAL_ERROR, "out of memory");
            return;
        }
        data = d->envelope.data;
        len = d->envelope.len;
        text = true;
    } else {
        if (d->utf8 < 0)
            d->utf8 = utf8_is_valid(d->payload, d->len);
        data = d->payload;
        len = d->len;
        text = d->utf8 == 1;
    }
    if (session_queued_bytes(b->session) + len > b->bound) {
        if (b->route->slow_consumer == WSG_SLOW_CLOSE) {
            close_client(b, CLOSE_POLICY, "client too slow");
        } else {
            session_metrics(b->session)->dropped[DROP_SLOW_CONSUMER]++;
        }
        return;
    }
    session_send(b->session, data, len, text);
}

static void on_published(void *owner, const char *ack_id, bool ok, const char *detail)
{
    struct mqtt_bridge *b = owner;
    if (b->route->format == WSG_FORMAT_ENVELOPE) {
        if (ok)
            reply_ack(b, ack_id);
        else
            reply_error(b, ENVELOPE_ERR_PUBLISH_FAILED, detail ? detail : "publish failed", ack_id);
        return;
    }
    if (!ok)
        log_warn("mqtt publish failed", "route", b->route->name, "error",
                 detail ? detail : "refused");
}

static void on_subscribed(void *owner, const char *filter, const char *ack_id, bool ok,
                          const char *detail)
{
    struct mqtt_bridge *b = owner;
    if (ok) {
        if (b->route->format == WSG_FORMAT_ENVELOPE)
            reply_ack(b, ack_id);
        return;
    }
    if (b->route->format == WSG_FORMAT_ENVELOPE) {
        reply_error(b, ENVELOPE_ERR_SUBSCRIBE_FAILED,
                    detail ? detail : "the broker refused the subscription", ack_id);
        /* The filter is refused: the gateway must not hold it for the client. */
        char *copy = strdup(filter);
        if (copy) {
            mqtt_link_unsubscribe(b->link, copy);
            free(copy);
        }
        return;
    }
    close_client(b, CLOSE_INTERNAL_ERROR, "the broker refused a subscription");
}

static void on_link_drained(void *owner) { maybe_resume(owner); }

static void on_link_replaced(void *owner)
{
    close_client(owner, CLOSE_SERVICE_RESTART, "broker settings changed; reconnect");
}

static const struct mqtt_link_events link_events = {
    .message = on_message,
    .published = on_published,
    .subscribed = on_subscribed,
    .drained = on_link_drained,
    .replaced = on_link_replaced,
};

/* --- lifetime -------------------------------------------------------------- */

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i]);
    free(list);
}

/* The allow filters with this client's values filled in. */
static char **expand_list(struct mqtt_bridge *b, char *const *tmpls, size_t n, size_t *n_out)
{
    *n_out = 0;
    if (n == 0)
        return NULL;
    char **out = calloc(n, sizeof(*out));
    char buf[TOPIC_BUF_BYTES], err[200];
    for (size_t i = 0; out && i < n; i++) {
        if (expand(session_match(b->session), session_claims(b->session), tmpls[i], NULL, true, buf,
                   sizeof(buf), err, sizeof(err)) != 0 ||
            !(out[i] = strdup(buf))) {
            free_list(out, i);
            return NULL;
        }
    }
    if (out)
        *n_out = n;
    return out;
}

static void publish_presence(struct mqtt_bridge *b, const struct wsg_presence *p)
{
    char topic[TOPIC_BUF_BYTES], err[200];
    if (expand(session_match(b->session), session_claims(b->session), p->topic, NULL, false, topic,
               sizeof(topic), err, sizeof(err)) != 0) {
        log_warn("presence not published", "route", b->route->name, "error", err);
        return;
    }
    if (mqtt_link_publish(b->link, topic, p->payload, strlen(p->payload), p->qos, p->retain, NULL) <
        0)
        log_warn("presence not published", "route", b->route->name, "error", "out of memory");
}

static void client_gone(struct bridge *base)
{
    struct mqtt_bridge *b = (struct mqtt_bridge *)base;
    if (b->announced && b->route->has_on_disconnect)
        publish_presence(b, &b->route->on_disconnect);
    mqtt_link_destroy(b->link);
    free_list(b->publish_allow, b->n_publish_allow);
    free_list(b->subscribe_allow, b->n_subscribe_allow);
    msg_buffer_free(&b->message);
    free(b);
}

static const struct bridge_ops mqtt_bridge_ops = {
    .client_data = client_data,
    .client_drained = client_drained,
    .client_gone = client_gone,
};

static struct bridge *mqtt_bridge_open(struct session *s)
{
    const struct route_match *m = session_match(s);
    const struct wsg_route *r = m->route;
    const struct wsg_limits *limits = session_limits(s);
    struct mqtt_bridge *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->base.ops = &mqtt_bridge_ops;
    b->session = s;
    b->route = r;
    b->bound = limits->max_queue_bytes > 0 ? (size_t)limits->max_queue_bytes : (size_t)1 << 20;
    b->max_message =
        limits->max_message_bytes > 0 && (size_t)limits->max_message_bytes < REASSEMBLY_CAP_BYTES
            ? (size_t)limits->max_message_bytes
            : REASSEMBLY_CAP_BYTES;
    b->link = mqtt_link_create(mqtt_broker_find(r->broker), &link_events, b, b->bound);
    if (!b->link) {
        client_gone(&b->base);
        return NULL;
    }
    if (r->format == WSG_FORMAT_ENVELOPE) {
        b->publish_allow =
            expand_list(b, r->publish_allow, r->n_publish_allow, &b->n_publish_allow);
        b->subscribe_allow =
            expand_list(b, r->subscribe_allow, r->n_subscribe_allow, &b->n_subscribe_allow);
        if (b->n_publish_allow != r->n_publish_allow ||
            b->n_subscribe_allow != r->n_subscribe_allow) {
            client_gone(&b->base);
            return NULL;
        }
    }
    char filter[TOPIC_BUF_BYTES], err[200];
    for (size_t i = 0; i < r->n_subscribe; i++) {
        if (expand(m, session_claims(s), r->subscribe[i].filter, NULL, true, filter, sizeof(filter),
                   err, sizeof(err)) != 0 ||
            mqtt_link_subscribe(b->link, filter, r->subscribe[i].qos, NULL) != 0) {
            client_gone(&b->base);
            return NULL;
        }
    }
    if (r->has_on_connect)
        publish_presence(b, &r->on_connect);
    b->announced = true;
    return &b->base;
}

static bool mqtt_drained(void) { return mqtt_brokers_flushed(); }

static int mqtt_start(const struct wsg_config *cfg, struct lws_context *ctx, char *err,
                      size_t err_len)
{
    (void)ctx; /* the brokers' timers use struct gateway's */
    /* Every configured series exists from the start, at zero. */
    for (size_t i = 0; i < cfg->n_brokers; i++)
        metrics_set_broker_connected(cfg->brokers[i].name, 0);
    return mqtt_brokers_start(cfg, err, err_len);
}

const struct backend_type mqtt_backend_type = {
    .name = "mqtt",
    .route_type = WSG_ROUTE_MQTT,
    .check_request = mqtt_check_request,
    .open = mqtt_bridge_open,
    .service = mqtt_brokers_service,
    .set_worker = mqtt_brokers_set_worker,
    .start = mqtt_start,
    .reload = mqtt_brokers_reload,
    .unavailable = mqtt_brokers_first_down,
    .resource_kind = "broker",
    /* persistent sessions keep their filters */
    .drain = mqtt_brokers_stopping,
    .drained = mqtt_drained,
    .shutdown = mqtt_brokers_shutdown,
    .stop = mqtt_brokers_stop,
};

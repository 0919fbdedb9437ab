/* envelope.h - the JSON envelope of "format": "envelope" mqtt routes:
 * client requests parsed and checked against the route's allow filters,
 * and the gateway's messages, acks and errors built. Pure: buffers in,
 * buffers out; unit-tested and fuzzed. */
#ifndef WSGATE_ENVELOPE_H
#define WSGATE_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum envelope_kind {
    ENVELOPE_PUBLISH,
    ENVELOPE_SUBSCRIBE,
    ENVELOPE_UNSUBSCRIBE,
    ENVELOPE_REFRESH, /* a new JWT for the connection (SPEC-2 A) */
};

/* One parsed client request; every pointer owned (buf_pool blocks), given
 * back by envelope_request_free(). */
struct envelope_request {
    enum envelope_kind kind;
    char *topic;      /* publish: the topic name; (un)subscribe: the filter;
                         refresh: the token (a secret: never echoed or logged) */
    uint8_t *payload; /* publish: the bytes to publish (see envelope_parse) */
    size_t payload_len;
    int qos;     /* publish and subscribe: 0..2, default 0 */
    bool retain; /* publish: default false */
    char *id;    /* the request's "id" as compact JSON (a string or a number), or NULL */
};

/* Error codes of {"error": {"code": ...}} replies. */
#define ENVELOPE_ERR_BAD_JSON "bad_json"                 /* not JSON, or not an object */
#define ENVELOPE_ERR_BAD_REQUEST "bad_request"           /* missing/ill-typed/unknown field */
#define ENVELOPE_ERR_BAD_TOPIC "bad_topic"               /* not a valid topic name / filter */
#define ENVELOPE_ERR_NOT_ALLOWED "not_allowed"           /* outside the route's allow list */
#define ENVELOPE_ERR_QOS_NOT_ALLOWED "qos_not_allowed"   /* above the route's publish qos */
#define ENVELOPE_ERR_NOT_SUBSCRIBED "not_subscribed"     /* unsubscribe of a filter not held */
#define ENVELOPE_ERR_QUEUE_FULL "queue_full"             /* too much waiting for the broker */
#define ENVELOPE_ERR_PUBLISH_FAILED "publish_failed"     /* the broker refused a publish */
#define ENVELOPE_ERR_SUBSCRIBE_FAILED "subscribe_failed" /* the broker refused a subscribe */
#define ENVELOPE_ERR_BAD_TOKEN "bad_token"               /* refresh: invalid, or another "sub" */
#define ENVELOPE_ERR_INTERNAL "internal_error" /* the gateway failed (out of memory): retry */

/* Parses one client message:
 *   {"topic": "t", "payload": P, "qos": 0|1|2, "retain": bool, "id": I,
 *    "encoding": "base64"}  -> publish. P a string: its UTF-8 bytes (or, with
 *                              "encoding": "base64", the decoded bytes); any
 *                              other JSON value: its compact JSON text.
 *   {"subscribe": "filter", "qos": 0|1|2, "id": I}   -> subscribe
 *   {"unsubscribe": "filter", "id": I}               -> unsubscribe
 *   {"refresh": "<jwt>", "id": I}                    -> refresh (token in `topic`)
 * Unknown keys are refused. Topic names and filters are checked for MQTT
 * syntax (topic.h). Returns 0, or -1 with `code` (one of ENVELOPE_ERR_*)
 * and a one-line `message`; out->id is set whenever the id could be read,
 * so the error can echo it. Out of memory is ENVELOPE_ERR_INTERNAL: this
 * request failed, nothing else did. */
int envelope_parse(const uint8_t *msg, size_t len, struct envelope_request *out, const char **code,
                   char *message, size_t message_len);
void envelope_request_free(struct envelope_request *r);

/* ACL checks with MQTT filter semantics: a topic may be published if some
 * allow filter matches it; a filter may be subscribed only if some allow
 * filter covers it entirely (never wider: "#" is refused under "app/#"). */
bool envelope_may_publish(char *const *allow, size_t n_allow, const char *topic);
bool envelope_may_subscribe(char *const *allow, size_t n_allow, const char *filter);

/* The gateway's messages, as compact JSON text written into `out` (what it
 * held is replaced; the caller owns it and gives its block back with
 * msg_buffer_free() or msg_buffer_done()). 0, or -1 with nothing usable in
 * `out`:
 * {"topic": T, "payload": P}: P is the JSON value itself when the payload is
 *   a JSON object or array, else a string when it is valid UTF-8, else
 *   base64 with "encoding": "base64". -1: a topic that is not UTF-8, or
 *   memory out.
 * {"ack": I}: -1 without an id (an ack without one acknowledges nothing).
 * {"error": {"code": C, "message": M, "request": I}} ("request" only with an
 *   id). A message that is not UTF-8 becomes the code, an id that is not
 *   JSON is left out: -1 only when memory is out. */
struct msg_buffer;
int envelope_message(struct msg_buffer *out, const char *topic, const uint8_t *payload,
                     size_t payload_len);
int envelope_ack(struct msg_buffer *out, const char *id);
int envelope_error(struct msg_buffer *out, const char *code, const char *message, const char *id);

#endif

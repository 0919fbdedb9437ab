/* fuzz_envelope.c - the envelope codec and its ACL checks (src/core/envelope.c).
 *
 * Input: byte 0: number of allow filters k (0..3); then k lines, the allow
 * filters (used both as publish_allow and subscribe_allow); the rest is one
 * client message.
 * Properties:
 *  - envelope_parse: on success a valid topic name (publish) or filter,
 *    payload non-NULL and NUL-terminated, qos 0..2, id compact JSON; on
 *    failure a known error code and a one-line UTF-8 message, and
 *    envelope_error() builds a reply that is JSON carrying both;
 *  - ACL: envelope_may_subscribe(allow, f) implies that every topic f
 *    matches (sampled) is publishable under allow, i.e. matched by some
 *    allow filter: a subscription never reaches more than the allow list;
 *    may_publish(allow, t) iff some valid allow filter matches t;
 *  - envelope_message(topic, payload) is JSON whose payload gives back the
 *    bytes (string, or base64), and a publish request built from it parses
 *    back to the same topic and bytes (the browser echo round trip).
 * jansson runs on the scratch arena, as in the gateway (json_scratch.h);
 * in this ASan build a use of arena memory after its scope is reported
 * (buf_pool poisons free blocks). */
#include "fuzz_util.h"

#include <jansson.h>

#include "envelope.h"
#include "../tests/unit/envelope_text.h"
#include "framing.h"
#include "json_scratch.h"
#include "utf8.h"
#include "topic.h"

static const char *const codes[] = {
    ENVELOPE_ERR_BAD_JSON,    ENVELOPE_ERR_BAD_REQUEST,     ENVELOPE_ERR_BAD_TOPIC,
    ENVELOPE_ERR_NOT_ALLOWED, ENVELOPE_ERR_QOS_NOT_ALLOWED, ENVELOPE_ERR_NOT_SUBSCRIBED,
    ENVELOPE_ERR_QUEUE_FULL,  ENVELOPE_ERR_PUBLISH_FAILED,  ENVELOPE_ERR_SUBSCRIBE_FAILED,
    ENVELOPE_ERR_INTERNAL,
};

static bool known_code(const char *c)
{
    for (size_t i = 0; c && i < sizeof codes / sizeof codes[0]; i++)
        if (c == codes[i] || strcmp(c, codes[i]) == 0)
            return true;
    return false;
}

static bool some_allow_matches(char *const *allow, size_t n, const char *topic)
{
    for (size_t i = 0; i < n; i++)
        if (topic_filter_is_valid(allow[i]) && topic_filter_matches(allow[i], topic))
            return true;
    return false;
}

/* A topic the filter matches: wildcards replaced by choices from seed. */
static char *sample_topic(const char *f, unsigned seed, const char *extra)
{
    static const char *const plus[] = {"x", "", "$y", "a", NULL};
    size_t cap = strlen(f) * 2 + strlen(extra) * 8 + 32;
    char *out = malloc(cap), *o = out;
    const char *p = f;
    for (;;) {
        size_t l = strcspn(p, "/");
        const char *lvl = p;
        size_t use = l;
        if (l == 1 && (p[0] == '+' || p[0] == '#')) {
            unsigned c = seed % 5;
            seed /= 5;
            lvl = plus[c] ? plus[c] : extra;
            if (p[0] == '#' && c == 1 && o > out) {
                o--; /* "a/#" matches "a": drop the level and its '/' */
                break;
            }
            use = strlen(lvl);
        }
        if ((size_t)(o - out) + use + 2 >= cap)
            break;
        memcpy(o, lvl, use);
        o += use;
        if (!p[l])
            break;
        *o++ = '/';
        p += l + 1;
    }
    *o = '\0';
    return out;
}

static void check_message_roundtrip(const char *topic, const uint8_t *payload, size_t len)
{
    size_t mlen = 0;
    char *msg = message_text(topic, payload, len, &mlen);
    FUZZ_CHECK(msg, "envelope_message failed for a valid topic");
    FUZZ_CHECK(strlen(msg) == mlen, "envelope_message length");
    json_error_t je;
    json_t *j = json_loadb(msg, mlen, JSON_ALLOW_NUL, &je);
    FUZZ_CHECK(j && json_is_object(j), "envelope_message is not a JSON object: %s", je.text);
    json_t *t = json_object_get(j, "topic"), *p = json_object_get(j, "payload");
    json_t *enc = json_object_get(j, "encoding");
    FUZZ_CHECK(json_is_string(t) && strcmp(json_string_value(t), topic) == 0, "topic changed");
    FUZZ_CHECK(p, "no payload");
    if (enc || json_is_string(p)) {
        /* The client sends the same JSON back as a publish: same bytes. */
        json_t *req = json_object();
        json_object_set(req, "topic", t);
        json_object_set(req, "payload", p);
        if (enc)
            json_object_set(req, "encoding", enc);
        char *text = json_dumps(req, JSON_COMPACT);
        struct envelope_request r;
        const char *code = NULL;
        char err[200];
        int rc = envelope_parse((const uint8_t *)text, strlen(text), &r, &code, err, sizeof err);
        FUZZ_CHECK(rc == 0, "echoed message refused: %s: %s", code, err);
        FUZZ_CHECK(r.payload_len == len && (len == 0 || memcmp(r.payload, payload, len) == 0),
                   "echoed payload differs (%zu vs %zu bytes, encoding %s)", r.payload_len, len,
                   enc ? "base64" : "none");
        envelope_request_free(&r);
        free(text);
        json_decref(req);
    } else {
        FUZZ_CHECK(json_is_object(p) || json_is_array(p), "payload neither string nor JSON");
    }
    json_decref(j);
    free(msg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_scratch_install();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    size_t k = fz_byte(&z) % 4;
    char *allow[3] = {0};
    for (size_t i = 0; i < k; i++)
        allow[i] = fz_line(&z);
    size_t len;
    char *msg = fz_rest(&z, &len);

    struct envelope_request r;
    const char *code = NULL;
    size_t cap = 1 + (len % 7 == 0 ? len % 40 : 200); /* sometimes a tiny message buffer */
    char *err = malloc(cap);
    int rc = envelope_parse((const uint8_t *)msg, len, &r, &code, err, cap);
    if (rc == 0) {
        FUZZ_CHECK(r.topic, "no topic");
        if (r.kind == ENVELOPE_PUBLISH) {
            FUZZ_CHECK(topic_name_is_valid(r.topic), "publish to invalid topic \"%s\"", r.topic);
            FUZZ_CHECK(r.payload && r.payload[r.payload_len] == 0, "payload not NUL-terminated");
        } else {
            FUZZ_CHECK(topic_filter_is_valid(r.topic), "invalid filter \"%s\"", r.topic);
        }
        FUZZ_CHECK(r.qos >= 0 && r.qos <= 2, "qos %d", r.qos);
    } else {
        FUZZ_CHECK(rc == -1, "rc %d", rc);
        FUZZ_CHECK(known_code(code), "unknown error code %s", code ? code : "(null)");
        FUZZ_CHECK(strlen(err) < cap, "message overflow");
        FUZZ_CHECK(utf8_is_valid((const uint8_t *)err, strlen(err)),
                   "error message is not UTF-8: %s", err);
        FUZZ_CHECK(fz_is_one_line(err), "error message is not one line: %s", err);
        size_t elen;
        char *reply = error_text(code, err, r.id, &elen);
        FUZZ_CHECK(reply, "envelope_error failed");
        json_t *j = json_loads(reply, JSON_ALLOW_NUL, NULL);
        FUZZ_CHECK(j, "error reply is not JSON: %s", reply);
        json_t *e = json_object_get(j, "error");
        FUZZ_CHECK(json_is_string(json_object_get(e, "code")) &&
                       strcmp(json_string_value(json_object_get(e, "code")), code) == 0,
                   "reply code");
        FUZZ_CHECK(json_is_string(json_object_get(e, "message")) &&
                       strcmp(json_string_value(json_object_get(e, "message")), err) == 0,
                   "reply lost the message");
        FUZZ_CHECK(!r.id == !json_object_get(e, "request"), "reply lost the request id");
        json_decref(j);
        free(reply);
    }
    if (r.id) {
        json_t *id = json_loads(r.id, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        FUZZ_CHECK(id && (json_is_string(id) || json_is_integer(id)), "id is not JSON: %s", r.id);
        json_decref(id);
        size_t alen;
        char *ack = ack_text(r.id, &alen);
        FUZZ_CHECK(ack, "no ack for id %s", r.id);
        free(ack);
    }

    /* ACL. */
    char *const *al = allow;
    if (rc == 0 && r.kind == ENVELOPE_PUBLISH) {
        FUZZ_CHECK(envelope_may_publish(al, k, r.topic) == some_allow_matches(al, k, r.topic),
                   "may_publish");
        check_message_roundtrip(r.topic, r.payload, r.payload_len);
    }
    /* Subscribe checks with the request's filter, or with the message text
     * itself as a filter when it is not a request. */
    const char *f = rc == 0 ? r.topic : msg;
    if (envelope_may_subscribe(al, k, f)) {
        FUZZ_CHECK(topic_filter_is_valid(f), "may_subscribe to an invalid filter");
        for (unsigned seed = 0; seed < 25; seed++) {
            char *t = sample_topic(f, seed * 7919u, k ? allow[seed % k] : "q");
            if (topic_name_is_valid(t) && topic_filter_matches(f, t))
                FUZZ_CHECK(some_allow_matches(al, k, t),
                           "may_subscribe(\"%s\") but topic \"%s\" is outside every allow filter",
                           f, t);
            free(t);
        }
    }
    if (rc == 0 && r.kind == ENVELOPE_PUBLISH && envelope_may_publish(al, k, r.topic))
        FUZZ_CHECK(k > 0, "publish allowed by an empty list");
    envelope_request_free(&r);
    free(err);
    free(msg);
    for (size_t i = 0; i < k; i++)
        free(allow[i]);
    return 0;
}

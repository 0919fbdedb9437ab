/* envelope.c - the JSON envelope codec of "format": "envelope" mqtt routes:
 * parses and checks client requests, checks topics against allow filters,
 * builds the gateway's messages, acks and errors. Pure: jansson and topic.c;
 * what to do with a request (publish, subscribe, reply) is the bridge's.
 *
 * Per message, so it calls no allocator: each entry point opens a
 * json_scratch scope for jansson's values and copies its results into
 * buf_pool blocks (a request's fields) or the caller's msg_buffer (the
 * gateway's messages) before the scope ends. */
#include "envelope.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "buf_pool.h"
#include "json_scratch.h"
#include "msg_buffer.h"
#include "topic.h"
#include "utf8.h"

#define ID_MAX_BYTES 256 /* longest string "id" (its UTF-8 bytes) */
#define QUOTE_MAX 60     /* most bytes of a client's topic or key put in a message */
#define QUOTE_BUF (QUOTE_MAX + sizeof "...")

/* NUL is allowed in strings so that a payload with NUL bytes, sent to the
 * browser as "\u0000", can come back the same way. jansson never allows it
 * in keys, and topics are checked for it. */
#define LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY)

/* ------------------------------------------------------ errors and quoting */

/* Where envelope_parse's error goes: the code and the caller's buffer. */
struct perr {
    const char **code;
    char *msg;
    size_t cap;
};

static int fail(struct perr *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct perr *e, const char *code, const char *fmt, ...)
{
    if (e->code)
        *e->code = code;
    if (e->msg && e->cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(e->msg, e->cap, fmt, ap);
        va_end(ap);
        /* A small buffer may cut a quoted character: keep the text UTF-8. */
        if (n >= 0 && (size_t)n >= e->cap)
            e->msg[utf8_cut(e->msg, e->cap - 1)] = '\0';
    }
    return -1;
}

/* Out of memory fails this request only, never the process
 * (docs/ARCHITECTURE.md, "Out of memory"): the client gets an error it may
 * retry, on a connection that stays open. */
static int fail_oom(struct perr *e)
{
    return fail(e, ENVELOPE_ERR_INTERNAL, "out of memory; try again later");
}

/* json_dumps()'s text goes back through jansson's own free function. */
static void free_scratch_text(char *text)
{
    json_free_t free_fn;
    json_get_alloc_funcs(NULL, &free_fn);
    free_fn(text);
}

/* A NUL-terminated copy of [s, s+len) in a buf_pool block (what
 * envelope_request_free() gives back), or NULL when memory is out. */
static char *pool_copy(const void *s, size_t len)
{
    char *c = buf_pool_get(len + 1, NULL);
    if (c) {
        memcpy(c, s, len);
        c[len] = '\0';
    }
    return c;
}

/* `v` as compact JSON text in a buf_pool block (json_dumps' own copy is
 * scratch memory, gone with the scope). */
static char *pool_dump(const json_t *v, size_t *len)
{
    char *text = json_dumps(v, DUMP_FLAGS);
    if (!text)
        return NULL;
    size_t n = strlen(text); /* NUL bytes in strings are escaped */
    char *c = pool_copy(text, n);
    free_scratch_text(text);
    if (c && len)
        *len = n;
    return c;
}

/* At most QUOTE_MAX bytes of a client's (valid UTF-8) string for a message,
 * cut on a character boundary, control characters shown as '?' so that
 * the message stays one line; "..." when cut. */
static const char *quote(const char *s, size_t len, char buf[QUOTE_BUF])
{
    size_t n = len > QUOTE_MAX ? utf8_cut(s, QUOTE_MAX) : len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c < 0x20 || c == 0x7F ? '?' : (char)c;
    }
    strcpy(buf + n, n < len ? "..." : "");
    return buf;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "an object";
    }
}

/* ---------------------------------------------------------------- parsing */

/* The keys each kind of request may carry; the first names the kind. */
static const char *const publish_keys[] = {"topic", "payload",  "qos", "retain",
                                           "id",    "encoding", NULL};
static const char *const subscribe_keys[] = {"subscribe", "qos", "id", NULL};
static const char *const unsubscribe_keys[] = {"unsubscribe", "id", NULL};
static const char *const refresh_keys[] = {"refresh", "id", NULL};

static const char *const *const kind_keys[] = {
    [ENVELOPE_PUBLISH] = publish_keys,
    [ENVELOPE_SUBSCRIBE] = subscribe_keys,
    [ENVELOPE_UNSUBSCRIBE] = unsubscribe_keys,
    [ENVELOPE_REFRESH] = refresh_keys,
};
static const char *const kind_names[] = {
    [ENVELOPE_PUBLISH] = "a publish",
    [ENVELOPE_SUBSCRIBE] = "a subscribe",
    [ENVELOPE_UNSUBSCRIBE] = "an unsubscribe",
    [ENVELOPE_REFRESH] = "a refresh",
};

/* jansson's reason without its " near '<token>'" part, which may quote the
 * payload; its position says where instead. */
static int fail_syntax(struct perr *e, const json_error_t *je)
{
    /* jansson 2.14 returns NULL without a word when its own allocation
     * fails; every real syntax error has a text. */
    if (je->text[0] == '\0' || json_error_code(je) == json_error_out_of_memory)
        return fail_oom(e);
    const char *near = strstr(je->text, " near ");
    int n = near ? (int)(near - je->text) : (int)strlen(je->text);
    return fail(e, ENVELOPE_ERR_BAD_JSON, "not valid JSON: %.*s (at byte %d)", n, je->text,
                je->position);
}

/* "id": a string of at most ID_MAX_BYTES or an integer, kept as compact JSON. */
static int read_id(const json_t *req, char **id, struct perr *e)
{
    const json_t *v = json_object_get(req, "id");
    if (!v)
        return 0;
    if (!json_is_integer(v) && !(json_is_string(v) && json_string_length(v) <= ID_MAX_BYTES))
        return fail(e, ENVELOPE_ERR_BAD_REQUEST,
                    "\"id\" must be a string of at most %d bytes or an integer", ID_MAX_BYTES);
    *id = pool_dump(v, NULL);
    return *id ? 0 : fail_oom(e);
}

static int read_kind(const json_t *req, enum envelope_kind *kind, struct perr *e)
{
    int found = 0;
    for (enum envelope_kind k = ENVELOPE_PUBLISH; k <= ENVELOPE_REFRESH; k++) {
        if (json_object_get(req, kind_keys[k][0])) {
            *kind = k;
            found++;
        }
    }
    if (found != 1)
        return fail(e, ENVELOPE_ERR_BAD_REQUEST,
                    "a request has exactly one of \"topic\" (publish), \"subscribe\", "
                    "\"unsubscribe\" or \"refresh\"");
    return 0;
}

static bool key_is_known(const char *const *keys, const char *key)
{
    for (; *keys; keys++) {
        if (strcmp(*keys, key) == 0)
            return true;
    }
    return false;
}

static int check_keys(json_t *req, enum envelope_kind kind, struct perr *e)
{
    const char *key;
    json_t *v;
    json_object_foreach (req, key, v) {
        if (!key_is_known(kind_keys[kind], key)) {
            char q[QUOTE_BUF];
            return fail(e, ENVELOPE_ERR_BAD_REQUEST, "unknown key \"%s\" in %s request",
                        quote(key, strlen(key), q), kind_names[kind]);
        }
    }
    return 0;
}

static int read_qos(const json_t *req, int *qos, struct perr *e)
{
    const json_t *v = json_object_get(req, "qos");
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 2)
        return fail(e, ENVELOPE_ERR_BAD_REQUEST, "\"qos\" must be 0, 1 or 2");
    *qos = (int)json_integer_value(v);
    return 0;
}

static int read_retain(const json_t *req, bool *retain, struct perr *e)
{
    const json_t *v = json_object_get(req, "retain");
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return fail(e, ENVELOPE_ERR_BAD_REQUEST, "\"retain\" must be true or false");
    *retain = json_is_true(v);
    return 0;
}

/* Why `s` (valid UTF-8, from jansson) is no MQTT topic name / filter, or
 * NULL; *hint says what to do about it, if anything. */
static const char *topic_problem(const char *s, size_t len, bool filter, const char **hint)
{
    *hint = "";
    if (len == 0)
        return "is empty";
    if (strlen(s) != len)
        return "contains a NUL character";
    if (len > TOPIC_MAX_BYTES)
        return "is longer than 65535 bytes";
    if (filter && !topic_filter_is_valid(s)) {
        *hint = " ('+' and '#' must be whole levels, '#' only the last)";
        return "is not a valid filter";
    }
    if (!filter && !topic_name_is_valid(s)) {
        *hint = " ('+' and '#' are only for subscribing)";
        return "is not a valid topic name";
    }
    return NULL;
}

/* The topic (publish) or filter ((un)subscribe) under `key`, copied. */
static int read_topic(const json_t *req, const char *key, bool filter, char **out, struct perr *e)
{
    const json_t *v = json_object_get(req, key);
    if (!json_is_string(v))
        return fail(e, ENVELOPE_ERR_BAD_REQUEST, "\"%s\" must be a string", key);
    const char *s = json_string_value(v), *hint;
    size_t len = json_string_length(v);
    const char *why = topic_problem(s, len, filter, &hint);
    if (why) {
        char q[QUOTE_BUF];
        return fail(e, ENVELOPE_ERR_BAD_TOPIC, "\"%s\" %s: \"%s\"%s", key, why, quote(s, len, q),
                    hint);
    }
    *out = pool_copy(s, len);
    return *out ? 0 : fail_oom(e);
}

/* "payload" (and "encoding") into out->payload: always non-NULL and
 * NUL-terminated (not counted in payload_len), for callers' convenience. */
static int read_payload(const json_t *req, struct envelope_request *out, struct perr *e)
{
    const json_t *v = json_object_get(req, "payload");
    const json_t *enc = json_object_get(req, "encoding");
    if (!v)
        return fail(e, ENVELOPE_ERR_BAD_REQUEST, "\"payload\" is required in a publish request");
    if (enc && !(json_is_string(enc) && strcmp(json_string_value(enc), "base64") == 0 &&
                 json_string_length(enc) == 6))
        return fail(e, ENVELOPE_ERR_BAD_REQUEST, "\"encoding\" must be \"base64\"");
    if (enc && !json_is_string(v))
        return fail(e, ENVELOPE_ERR_BAD_REQUEST,
                    "\"encoding\": \"base64\" needs a string \"payload\", got %s",
                    json_type_name(v));
    if (enc) {
        out->payload = buf_pool_get(base64_decoded_max(json_string_length(v)), NULL);
        if (!out->payload)
            return fail_oom(e);
        if (base64_decode_into(BASE64_STD, json_string_value(v), json_string_length(v),
                               out->payload, &out->payload_len) != 0)
            return fail(e, ENVELOPE_ERR_BAD_REQUEST,
                        "\"payload\" is not valid base64 (RFC 4648, padded, no whitespace)");
        return 0;
    }
    if (json_is_string(v)) {
        out->payload_len = json_string_length(v);
        out->payload = (uint8_t *)pool_copy(json_string_value(v), out->payload_len);
        return out->payload ? 0 : fail_oom(e);
    }
    out->payload = (uint8_t *)pool_dump(v, &out->payload_len);
    return out->payload ? 0 : fail_oom(e);
}

static int parse_fields(json_t *req, struct envelope_request *out, struct perr *e)
{
    if (read_kind(req, &out->kind, e) < 0 || check_keys(req, out->kind, e) < 0)
        return -1;
    switch (out->kind) {
    case ENVELOPE_PUBLISH:
        if (read_qos(req, &out->qos, e) < 0 || read_retain(req, &out->retain, e) < 0 ||
            read_payload(req, out, e) < 0)
            return -1;
        return read_topic(req, "topic", false, &out->topic, e);
    case ENVELOPE_SUBSCRIBE:
        if (read_qos(req, &out->qos, e) < 0)
            return -1;
        return read_topic(req, "subscribe", true, &out->topic, e);
    case ENVELOPE_UNSUBSCRIBE:
        return read_topic(req, "unsubscribe", true, &out->topic, e);
    case ENVELOPE_REFRESH: {
        /* The token is a secret: errors describe it, never quote it. */
        const json_t *v = json_object_get(req, "refresh");
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            strlen(json_string_value(v)) != json_string_length(v))
            return fail(e, ENVELOPE_ERR_BAD_REQUEST, "\"refresh\" must be a token (a string)");
        out->topic = pool_copy(json_string_value(v), json_string_length(v));
        return out->topic ? 0 : fail_oom(e);
    }
    }
    return -1;
}

int envelope_parse(const uint8_t *msg, size_t len, struct envelope_request *out, const char **code,
                   char *message, size_t message_len)
{
    struct perr e = {code, message, message_len};
    memset(out, 0, sizeof *out);
    if (!msg || len == 0)
        return fail(&e, ENVELOPE_ERR_BAD_JSON, "empty message");
    json_scratch_begin();
    json_error_t je;
    json_t *req = json_loadb((const char *)msg, len, LOAD_FLAGS | JSON_DECODE_ANY, &je);
    int rc;
    if (!req)
        rc = fail_syntax(&e, &je);
    else if (!json_is_object(req))
        rc = fail(&e, ENVELOPE_ERR_BAD_JSON, "a request is a JSON object, got %s",
                  json_type_name(req));
    else
        rc = read_id(req, &out->id, &e) < 0 ? -1 : parse_fields(req, out, &e);
    json_decref(req);
    json_scratch_end();
    if (rc < 0) {
        /* Only the id survives an error, for the reply to echo. */
        char *id = out->id;
        out->id = NULL;
        envelope_request_free(out);
        out->id = id;
    }
    return rc;
}

void envelope_request_free(struct envelope_request *r)
{
    if (!r)
        return;
    buf_pool_put(r->topic);
    buf_pool_put(r->payload);
    buf_pool_put(r->id);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------- ACL */

bool envelope_may_publish(char *const *allow, size_t n_allow, const char *topic)
{
    if (!allow || !topic_name_is_valid(topic))
        return false;
    for (size_t i = 0; i < n_allow; i++) {
        /* An invalid filter ("a/#/b") would match oddly: it allows nothing. */
        if (topic_filter_is_valid(allow[i]) && topic_filter_matches(allow[i], topic))
            return true;
    }
    return false;
}

bool envelope_may_subscribe(char *const *allow, size_t n_allow, const char *filter)
{
    if (!allow || !topic_filter_is_valid(filter))
        return false;
    for (size_t i = 0; i < n_allow; i++) {
        if (topic_filter_is_valid(allow[i]) && topic_filter_covers(allow[i], filter))
            return true;
    }
    return false;
}

/* -------------------------------------------------------------- building */

static int append_text(const char *piece, size_t len, void *data)
{
    return msg_buffer_append(data, (const uint8_t *)piece, len, SIZE_MAX) == 0 ? 0 : -1;
}

/* `obj` as compact JSON text into `out` (consumes the reference); -1 if obj
 * is NULL or memory is out, with `out` empty: a half-written text must not
 * pass for a message (mqtt_bridge.c shares one per delivery). */
static int finish(json_t *obj, struct msg_buffer *out)
{
    if (!obj)
        return -1;
    int rc = json_dump_callback(obj, append_text, out, DUMP_FLAGS);
    json_decref(obj);
    if (rc != 0)
        out->len = 0;
    return rc == 0 ? 0 : -1;
}

/* A JSON object or array in the payload, else NULL; *oom when jansson ran
 * out of memory deciding (the payload must not go out as a string then).
 * Only text that starts like one is handed to jansson: most payloads fail
 * on the first byte. */
static json_t *payload_as_json(const uint8_t *p, size_t len, bool *oom)
{
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    if (i == len || (p[i] != '{' && p[i] != '['))
        return NULL;
    json_error_t je;
    json_t *v = json_loadb((const char *)p, len, LOAD_FLAGS, &je);
    /* jansson 2.14 fails without a word when its own allocation fails. */
    *oom = !v && (je.text[0] == '\0' || json_error_code(&je) == json_error_out_of_memory);
    return v;
}

/* A payload that is not UTF-8, base64-encoded as a JSON string. */
static json_t *payload_as_base64(const uint8_t *p, size_t len)
{
    size_t n = base64_encoded_len(BASE64_STD, len);
    char *b64 = n == SIZE_MAX ? NULL : buf_pool_get(n + 1, NULL);
    if (!b64)
        return NULL;
    base64_encode_into(BASE64_STD, p, len, b64);
    json_t *v = json_stringn(b64, n);
    buf_pool_put(b64);
    return v;
}

static json_t *message_json(const char *topic, const uint8_t *payload, size_t payload_len)
{
    json_t *obj = json_object();
    if (json_object_set_new(obj, "topic", json_string(topic)) < 0)
        goto fail; /* also a topic that is not UTF-8 */
    bool oom = false;
    json_t *p = payload_len == 0 ? json_string("") : payload_as_json(payload, payload_len, &oom);
    if (oom)
        goto fail;
    if (!p)
        p = json_stringn((const char *)payload, payload_len); /* NULL unless UTF-8 */
    if (p) {
        if (json_object_set_new(obj, "payload", p) < 0)
            goto fail;
        return obj;
    }
    if (json_object_set_new(obj, "payload", payload_as_base64(payload, payload_len)) < 0 ||
        json_object_set_new(obj, "encoding", json_string("base64")) < 0)
        goto fail;
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

int envelope_message(struct msg_buffer *out, const char *topic, const uint8_t *payload,
                     size_t payload_len)
{
    out->len = 0;
    if (!topic || (!payload && payload_len > 0))
        return -1;
    json_scratch_begin();
    int rc = finish(message_json(topic, payload, payload_len), out);
    json_scratch_end();
    return rc;
}

/* An id from envelope_parse (compact JSON), as a value; NULL if none or not
 * JSON, or (with *oom set) when memory is out. */
static json_t *load_id(const char *id, bool *oom)
{
    *oom = false;
    if (!id)
        return NULL;
    json_error_t je;
    json_t *v = json_loads(id, LOAD_FLAGS | JSON_DECODE_ANY, &je);
    *oom = !v && (je.text[0] == '\0' || json_error_code(&je) == json_error_out_of_memory);
    return v;
}

int envelope_ack(struct msg_buffer *out, const char *id)
{
    out->len = 0;
    json_scratch_begin();
    bool oom;
    json_t *v = load_id(id, &oom), *obj = NULL;
    if (v) { /* an ack without an id acknowledges nothing */
        obj = json_object();
        if (json_object_set_new(obj, "ack", v) < 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    int rc = finish(obj, out);
    json_scratch_end();
    return rc;
}

/* jansson's json_object_set_new() takes the value even when it fails (or
 * when the object is NULL), so nothing below leaks on out-of-memory. */
static json_t *error_json(const char *code, const char *message, const char *id)
{
    json_t *obj = json_object(), *err = json_object();
    if (json_object_set_new(obj, "error", err) < 0) {
        json_decref(obj);
        return NULL;
    }
    /* Never lose an error reply to a bad argument: a message that is not
     * UTF-8 becomes the code, an id that is not JSON is left out. But a
     * reply that cannot say which request it answers is no reply: out of
     * memory there fails it (the bridge then closes with 1011). */
    json_t *m = message ? json_string(message) : NULL;
    bool oom;
    json_t *v = load_id(id, &oom);
    if (oom) {
        json_decref(m);
        json_decref(obj);
        return NULL;
    }
    int rc = json_object_set_new(err, "code", json_string(code));
    rc |= json_object_set_new(err, "message", m ? m : json_string(code));
    if (v)
        rc |= json_object_set_new(err, "request", v);
    if (rc != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int envelope_error(struct msg_buffer *out, const char *code, const char *message, const char *id)
{
    out->len = 0;
    if (!code)
        return -1;
    json_scratch_begin();
    int rc = finish(error_json(code, message, id), out);
    json_scratch_end();
    return rc;
}

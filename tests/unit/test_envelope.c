/* test_envelope.c - cmocka tests for envelope.c: every request form and
 * error, strict base64 both ways against a reference coder, the gateway's
 * messages parsed back with jansson, ACL tables, and seeded fuzzing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "envelope.h"
#include "envelope_text.h"
#include "topic.h"

/* --- helpers ------------------------------------------------------------ */

/* A string literal as (bytes, length), NUL bytes included. */
#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1
#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Deterministic PRNG (xorshift64*) so failures reproduce. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed ? seed : 1; }

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static size_t rng_below(size_t n) { return n ? (size_t)(rng_next() % n) : 0; }

static bool is_utf8(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len); /* jansson refuses anything but UTF-8 */
    json_decref(j);
    return j != NULL;
}

static bool is_known_code(const char *code)
{
    static const char *const codes[] = {ENVELOPE_ERR_BAD_JSON, ENVELOPE_ERR_BAD_REQUEST,
                                        ENVELOPE_ERR_BAD_TOPIC, ENVELOPE_ERR_NOT_ALLOWED,
                                        ENVELOPE_ERR_QOS_NOT_ALLOWED};
    for (size_t i = 0; code && i < N_ELEMS(codes); i++) {
        if (strcmp(code, codes[i]) == 0)
            return true;
    }
    return false;
}

/* What every error must look like: a known code, a one-line UTF-8 message,
 * and nothing but (maybe) the id left in the request. */
static void check_error_shape(const struct envelope_request *r, const char *code, const char *msg)
{
    assert_true(is_known_code(code));
    assert_true(strlen(msg) > 0);
    assert_null(strpbrk(msg, "\r\n"));
    assert_true(is_utf8(msg, strlen(msg)));
    assert_null(r->topic);
    assert_null(r->payload);
    assert_int_equal(r->payload_len, 0);
    assert_int_equal(r->qos, 0);
    assert_false(r->retain);
}

static void parse_ok_n(const uint8_t *msg, size_t len, struct envelope_request *r)
{
    const char *code = NULL;
    char m[256] = "";
    if (envelope_parse(msg, len, r, &code, m, sizeof m) != 0)
        fail_msg("refused %.*s: %s: %s", (int)len, (const char *)msg, code, m);
}

static void parse_ok(const char *json, struct envelope_request *r)
{
    parse_ok_n((const uint8_t *)json, strlen(json), r);
}

/* Parses `msg`, expecting code and a message containing `needle`, and `id`
 * (compact JSON, or NULL) kept for the reply. */
static void expect_error_n(const uint8_t *msg, size_t len, const char *code, const char *needle,
                           const char *id)
{
    struct envelope_request r;
    const char *got = NULL;
    char m[256] = "";
    if (envelope_parse(msg, len, &r, &got, m, sizeof m) != -1)
        fail_msg("accepted: %.*s", (int)len, (const char *)msg);
    check_error_shape(&r, got, m);
    if (strcmp(got, code) != 0 || !strstr(m, needle))
        fail_msg("%.*s: got %s \"%s\", want %s \"...%s...\"", (int)len, (const char *)msg, got, m,
                 code, needle);
    if (id)
        assert_non_null(r.id);
    if (id && strcmp(r.id, id) != 0)
        fail_msg("%.*s: id %s, want %s", (int)len, (const char *)msg, r.id, id);
    if (!id && r.id)
        fail_msg("%.*s: id %s, want none", (int)len, (const char *)msg, r.id);
    envelope_request_free(&r);
}

static void expect_error(const char *json, const char *code, const char *needle, const char *id)
{
    expect_error_n((const uint8_t *)json, strlen(json), code, needle, id);
}

/* Reference base64 (RFC 4648 with padding), written differently on purpose. */
static char *ref_b64_encode(const uint8_t *in, size_t len)
{
    static const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1);
    assert_non_null(out);
    size_t o = 0;
    unsigned bits = 0, nbits = 0;
    for (size_t i = 0; i < len; i++) {
        bits = (bits << 8) | in[i];
        nbits += 8;
        while (nbits >= 6) {
            nbits -= 6;
            out[o++] = a[(bits >> nbits) & 63];
        }
    }
    if (nbits > 0)
        out[o++] = a[(bits << (6 - nbits)) & 63];
    while (o % 4)
        out[o++] = '=';
    out[o] = '\0';
    return out;
}

static size_t ref_b64_decode(const char *in, uint8_t *out)
{
    size_t o = 0;
    unsigned bits = 0, nbits = 0;
    for (; *in && *in != '='; in++) {
        const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *p = strchr(a, *in);
        assert_non_null(p);
        bits = (bits << 6) | (unsigned)(p - a);
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            out[o++] = (uint8_t)(bits >> nbits);
        }
    }
    return o;
}

/* envelope_message's output, parsed back; checks it is one compact line. */
static json_t *message_json(const char *topic, const uint8_t *p, size_t len)
{
    size_t n = 0;
    char *s = message_text(topic, p, len, &n);
    assert_non_null(s);
    assert_int_equal(n, strlen(s));
    assert_null(strpbrk(s, "\r\n"));
    json_error_t e;
    json_t *j = json_loads(s, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &e);
    if (!j)
        fail_msg("not JSON: %s (%s)", s, e.text);
    assert_true(json_is_object(j));
    assert_string_equal(json_string_value(json_object_get(j, "topic")), topic);
    free(s);
    return j;
}

/* --- requests ------------------------------------------------------------ */

static void test_publish_defaults(void **state)
{
    (void)state;
    struct envelope_request r;
    parse_ok("{\"topic\": \"app/x/in\", \"payload\": \"hi\"}", &r);
    assert_int_equal(r.kind, ENVELOPE_PUBLISH);
    assert_string_equal(r.topic, "app/x/in");
    assert_int_equal(r.payload_len, 2);
    assert_memory_equal(r.payload, "hi", 2);
    assert_int_equal(r.qos, 0);
    assert_false(r.retain);
    assert_null(r.id);
    envelope_request_free(&r);
}

static void test_publish_all_fields(void **state)
{
    (void)state;
    struct envelope_request r;
    parse_ok("{\"id\":\"r-1\",\"retain\":true,\"qos\":2,\"payload\":\"x\",\"topic\":\"a\"}", &r);
    assert_int_equal(r.kind, ENVELOPE_PUBLISH);
    assert_string_equal(r.topic, "a");
    assert_int_equal(r.qos, 2);
    assert_true(r.retain);
    assert_string_equal(r.id, "\"r-1\"");
    envelope_request_free(&r);

    parse_ok("{\"topic\":\"a\",\"payload\":\"\",\"qos\":1,\"retain\":false,\"id\":-7}", &r);
    assert_int_equal(r.qos, 1);
    assert_false(r.retain);
    assert_string_equal(r.id, "-7");
    assert_non_null(r.payload); /* empty, but still a buffer */
    assert_int_equal(r.payload_len, 0);
    envelope_request_free(&r);
}

/* A non-string payload is published as its compact JSON text. */
static void test_publish_json_payloads(void **state)
{
    (void)state;
    static const struct {
        const char *payload, *bytes;
    } cases[] = {
        {"{ \"a\" : [1, 2, {\"b\": null}] }", "{\"a\":[1,2,{\"b\":null}]}"},
        {"[ ]", "[]"},
        {"42", "42"},
        {"-3", "-3"},
        {"true", "true"},
        {"false", "false"},
        {"null", "null"},
        {"{\"s\": \"\\u00e9\\n\"}", "{\"s\":\"\xc3\xa9\\n\"}"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char req[256];
        snprintf(req, sizeof req, "{\"topic\":\"t\",\"payload\":%s}", cases[i].payload);
        struct envelope_request r;
        parse_ok(req, &r);
        assert_int_equal(r.payload_len, strlen(cases[i].bytes));
        assert_memory_equal(r.payload, cases[i].bytes, r.payload_len);
        envelope_request_free(&r);
    }
}

static void test_publish_string_payload_bytes(void **state)
{
    (void)state;
    struct envelope_request r;
    /* NUL, escapes and non-ASCII arrive as their UTF-8 bytes. */
    parse_ok("{\"topic\":\"t\",\"payload\":\"a\\u0000b\\\"\\u00e9\\ud83d\\ude00\"}", &r);
    static const uint8_t want[] = "a\0b\"\xc3\xa9\xf0\x9f\x98\x80";
    assert_int_equal(r.payload_len, sizeof want - 1);
    assert_memory_equal(r.payload, want, sizeof want - 1);
    assert_int_equal(r.payload[r.payload_len], 0);
    envelope_request_free(&r);
}

static void test_publish_base64(void **state)
{
    (void)state;
    static const struct {
        const char *b64;
        const char *bytes;
        size_t len;
    } cases[] = {
        {"", "", 0},
        {"AA==", "\0", 1},
        {"aGk=", "hi", 2},
        {"aGk/", "hi?", 3},
        {"//79", "\xff\xfe\xfd", 3},
        {"+w==", "\xfb", 1},
        {"AAAA", "\0\0\0", 3},
        {"SGVsbG8sIFdvcmxkIQ==", "Hello, World!", 13},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char req[256];
        snprintf(req, sizeof req, "{\"topic\":\"t\",\"encoding\":\"base64\",\"payload\":\"%s\"}",
                 cases[i].b64);
        struct envelope_request r;
        parse_ok(req, &r);
        assert_int_equal(r.payload_len, cases[i].len);
        assert_memory_equal(r.payload, cases[i].bytes, cases[i].len);
        envelope_request_free(&r);
    }
}

static void test_subscribe(void **state)
{
    (void)state;
    struct envelope_request r;
    parse_ok("{\"subscribe\":\"app/+/in\"}", &r);
    assert_int_equal(r.kind, ENVELOPE_SUBSCRIBE);
    assert_string_equal(r.topic, "app/+/in");
    assert_int_equal(r.qos, 0);
    assert_null(r.payload);
    assert_null(r.id);
    envelope_request_free(&r);

    parse_ok("{\"subscribe\":\"#\",\"qos\":1,\"id\":42}", &r);
    assert_string_equal(r.topic, "#");
    assert_int_equal(r.qos, 1);
    assert_string_equal(r.id, "42");
    envelope_request_free(&r);
}

static void test_unsubscribe(void **state)
{
    (void)state;
    struct envelope_request r;
    parse_ok("{\"unsubscribe\":\"a/#\"}", &r);
    assert_int_equal(r.kind, ENVELOPE_UNSUBSCRIBE);
    assert_string_equal(r.topic, "a/#");
    assert_null(r.id);
    envelope_request_free(&r);

    parse_ok(" {\"id\":\"u\\\"1\",\"unsubscribe\":\"$SYS/x\"} \n", &r);
    assert_string_equal(r.topic, "$SYS/x");
    assert_string_equal(r.id, "\"u\\\"1\"");
    envelope_request_free(&r);
}

/* {"refresh": "<jwt>"}: the token is kept, and never quoted in an error. */
static void test_refresh(void **state)
{
    (void)state;
    struct envelope_request r;
    parse_ok("{\"refresh\":\"a.b.c\",\"id\":7}", &r);
    assert_int_equal(r.kind, ENVELOPE_REFRESH);
    assert_string_equal(r.topic, "a.b.c");
    assert_string_equal(r.id, "7");
    envelope_request_free(&r);
    expect_error("{\"refresh\":\"\",\"id\":1}", ENVELOPE_ERR_BAD_REQUEST, "must be a token", "1");
    expect_error("{\"refresh\":5}", ENVELOPE_ERR_BAD_REQUEST, "must be a token", NULL);
    expect_error("{\"refresh\":\"x\\u0000y\"}", ENVELOPE_ERR_BAD_REQUEST, "must be a token", NULL);
    expect_error("{\"refresh\":\"secret.tok.en\",\"qos\":1}", ENVELOPE_ERR_BAD_REQUEST,
                 "unknown key \"qos\" in a refresh", NULL);
    expect_error("{\"refresh\":\"secret.tok.en\",\"topic\":\"a\"}", ENVELOPE_ERR_BAD_REQUEST,
                 "exactly one of", NULL);
}

static void test_id_forms(void **state)
{
    (void)state;
    char id[300], req[400];
    struct envelope_request r;
    memset(id, 'i', 256);
    id[256] = '\0';
    snprintf(req, sizeof req, "{\"subscribe\":\"a\",\"id\":\"%s\"}", id);
    parse_ok(req, &r); /* 256 bytes: the longest allowed */
    assert_int_equal(strlen(r.id), 258);
    envelope_request_free(&r);
    parse_ok("{\"subscribe\":\"a\",\"id\":\"\"}", &r);
    assert_string_equal(r.id, "\"\"");
    envelope_request_free(&r);
    parse_ok("{\"subscribe\":\"a\",\"id\":9007199254740993}", &r);
    assert_string_equal(r.id, "9007199254740993");
    envelope_request_free(&r);
    parse_ok("{\"subscribe\":\"a\",\"id\":\"\\u00e9\\n\"}", &r);
    assert_string_equal(r.id, "\"\xc3\xa9\\n\"");
    envelope_request_free(&r);

    id[256] = 'i';
    id[257] = '\0';
    snprintf(req, sizeof req, "{\"subscribe\":\"a\",\"id\":\"%s\"}", id);
    expect_error(req, ENVELOPE_ERR_BAD_REQUEST, "\"id\" must be", NULL);
    static const char *const bad[] = {"1.5", "1e3", "true", "null", "[1]", "{}"};
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        snprintf(req, sizeof req, "{\"subscribe\":\"a\",\"id\":%s}", bad[i]);
        expect_error(req, ENVELOPE_ERR_BAD_REQUEST, "\"id\" must be", NULL);
    }
}

/* --- errors -------------------------------------------------------------- */

static void test_bad_json(void **state)
{
    (void)state;
    expect_error_n(NULL, 0, ENVELOPE_ERR_BAD_JSON, "empty", NULL);
    expect_error_n(S(""), ENVELOPE_ERR_BAD_JSON, "empty", NULL);
    static const struct {
        const char *msg, *needle;
    } cases[] = {
        {" ", "not valid JSON"},
        {"{", "not valid JSON"},
        {"{\"topic\":\"a\",}", "not valid JSON"},
        {"{\"topic\":\"a\"} {}", "not valid JSON"},
        {"{\"topic\":\"a\",\"topic\":\"b\",\"payload\":1}", "duplicate"},
        {"{\"topic\":\"\xff\",\"payload\":1}", "not valid JSON"},
        {"{\"topic\":\"\xed\xa0\x80\",\"payload\":1}", "not valid JSON"}, /* a surrogate */
        {"{\"topic\":\"\xc0\xaf\",\"payload\":1}", "not valid JSON"},     /* overlong '/' */
        {"{\"topic\":\"t\",\"payload\":\"\\ud800\"}", "not valid JSON"},
        {"{\"topic\":\"t\",\"payload\":99999999999999999999}", "not valid JSON"},
        {"\xef\xbb\xbf{}", "not valid JSON"},
        {"[{\"topic\":\"t\",\"payload\":1}]", "got an array"},
        {"\"topic\"", "got a string"},
        {"5", "got a number"},
        {"2.5", "got a number"},
        {"true", "got a boolean"},
        {"null", "got null"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++)
        expect_error(cases[i].msg, ENVELOPE_ERR_BAD_JSON, cases[i].needle, NULL);
    expect_error_n(S("{\"topic\":\"a\0\",\"payload\":1}"), ENVELOPE_ERR_BAD_JSON, "not valid JSON",
                   NULL);
    expect_error_n(S("{\"topic\":\"a\",\"payload\":1}\0"), ENVELOPE_ERR_BAD_JSON, "not valid JSON",
                   NULL);
}

static void test_bad_request(void **state)
{
    (void)state;
    static const struct {
        const char *msg, *needle, *id;
    } cases[] = {
        /* which kind */
        {"{}", "exactly one of", NULL},
        {"{\"payload\":\"x\",\"id\":1}", "exactly one of", "1"},
        {"{\"topic\":\"a\",\"subscribe\":\"b\",\"payload\":1}", "exactly one of", NULL},
        {"{\"subscribe\":\"a\",\"unsubscribe\":\"b\",\"id\":\"z\"}", "exactly one of", "\"z\""},
        /* keys */
        {"{\"topic\":\"a\",\"payload\":1,\"extra\":1}", "unknown key \"extra\" in a publish", NULL},
        {"{\"topic\":\"a\",\"payload\":1,\"Topic\":1}", "unknown key \"Topic\"", NULL},
        {"{\"subscribe\":\"a\",\"payload\":\"x\",\"id\":3}",
         "unknown key \"payload\" in a subscribe", "3"},
        {"{\"subscribe\":\"a\",\"retain\":true}", "unknown key \"retain\"", NULL},
        {"{\"subscribe\":\"a\",\"encoding\":\"base64\"}", "unknown key \"encoding\"", NULL},
        {"{\"unsubscribe\":\"a\",\"qos\":1,\"id\":\"q\"}", "unknown key \"qos\" in an unsub",
         "\"q\""},
        {"{\"unsubscribe\":\"a\",\"\":1}", "unknown key \"\"", NULL},
        /* topics of the wrong type */
        {"{\"topic\":1,\"payload\":1,\"id\":5}", "\"topic\" must be a string", "5"},
        {"{\"topic\":null,\"payload\":1}", "\"topic\" must be a string", NULL},
        {"{\"subscribe\":[\"a\"]}", "\"subscribe\" must be a string", NULL},
        {"{\"unsubscribe\":{}}", "\"unsubscribe\" must be a string", NULL},
        /* payload */
        {"{\"topic\":\"a\",\"id\":\"p\"}", "\"payload\" is required", "\"p\""},
        {"{\"topic\":\"a\",\"payload\":\"x\",\"encoding\":\"hex\"}", "\"encoding\" must be", NULL},
        {"{\"topic\":\"a\",\"payload\":\"x\",\"encoding\":\"BASE64\"}", "\"encoding\" must be",
         NULL},
        {"{\"topic\":\"a\",\"payload\":\"x\",\"encoding\":\"base64\\u0000\"}", "\"encoding\" must",
         NULL},
        {"{\"topic\":\"a\",\"payload\":\"x\",\"encoding\":null}", "\"encoding\" must be", NULL},
        {"{\"topic\":\"a\",\"payload\":{},\"encoding\":\"base64\"}", "needs a string \"payload\"",
         NULL},
        {"{\"topic\":\"a\",\"payload\":12,\"encoding\":\"base64\",\"id\":0}", "got a number", "0"},
        /* qos and retain */
        {"{\"topic\":\"a\",\"payload\":1,\"qos\":3}", "\"qos\" must be 0, 1 or 2", NULL},
        {"{\"topic\":\"a\",\"payload\":1,\"qos\":-1}", "\"qos\" must be", NULL},
        {"{\"topic\":\"a\",\"payload\":1,\"qos\":1.0}", "\"qos\" must be", NULL},
        {"{\"topic\":\"a\",\"payload\":1,\"qos\":\"1\"}", "\"qos\" must be", NULL},
        {"{\"topic\":\"a\",\"payload\":1,\"qos\":true}", "\"qos\" must be", NULL},
        {"{\"subscribe\":\"a\",\"qos\":null,\"id\":\"s\"}", "\"qos\" must be", "\"s\""},
        {"{\"subscribe\":\"a\",\"qos\":4294967297}", "\"qos\" must be", NULL},
        {"{\"topic\":\"a\",\"payload\":1,\"retain\":1}", "\"retain\" must be true or false", NULL},
        {"{\"topic\":\"a\",\"payload\":1,\"retain\":\"true\"}", "\"retain\" must be", NULL},
        {"{\"topic\":\"a\",\"payload\":1,\"retain\":null,\"id\":-1}", "\"retain\" must be", "-1"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++)
        expect_error(cases[i].msg, ENVELOPE_ERR_BAD_REQUEST, cases[i].needle, cases[i].id);
}

static void test_bad_base64(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "a",    "ab",   "abc",        "abcde",      "YQ",       "YWI",    "a===",
        "====", "=aaa", "a=aa",       "ab=c",       "aGk=aGk=", "aGk==",  "YR==",
        "YWJ=", "AB==", "aGk=\\n",    " aGk=",      "aG k",     "aG\\tk", "aGk-",
        "aGk_", "aGk.", "\\u00e9aGk", "aG\\u0000k", "aGk=====",
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        char req[256];
        snprintf(req, sizeof req,
                 "{\"topic\":\"t\",\"payload\":\"%s\",\"encoding\":\"base64\",\"id\":%zu}", bad[i],
                 i);
        char id[32];
        snprintf(id, sizeof id, "%zu", i);
        expect_error(req, ENVELOPE_ERR_BAD_REQUEST, "not valid base64", id);
    }
}

static void test_bad_topic(void **state)
{
    (void)state;
    static const struct {
        const char *msg, *needle, *id;
    } cases[] = {
        {"{\"topic\":\"\",\"payload\":1}", "\"topic\" is empty", NULL},
        {"{\"topic\":\"a/+\",\"payload\":1,\"id\":1}", "not a valid topic name", "1"},
        {"{\"topic\":\"#\",\"payload\":1}", "not a valid topic name: \"#\"", NULL},
        {"{\"topic\":\"a/#\",\"payload\":1}", "only for subscribing", NULL},
        {"{\"topic\":\"a+b\",\"payload\":1}", "not a valid topic name", NULL},
        {"{\"topic\":\"a\\u0000b\",\"payload\":1}", "NUL", NULL},
        {"{\"subscribe\":\"\"}", "\"subscribe\" is empty", NULL},
        {"{\"subscribe\":\"a/#/b\",\"id\":\"x\"}", "not a valid filter: \"a/#/b\" ('+'", "\"x\""},
        {"{\"subscribe\":\"a#\"}", "not a valid filter", NULL},
        {"{\"subscribe\":\"+a\"}", "not a valid filter", NULL},
        {"{\"subscribe\":\"#\\u0000\"}", "NUL", NULL},
        {"{\"unsubscribe\":\"a/b+\"}", "\"unsubscribe\" is not a valid filter", NULL},
        {"{\"unsubscribe\":\"\"}", "\"unsubscribe\" is empty", NULL},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++)
        expect_error(cases[i].msg, ENVELOPE_ERR_BAD_TOPIC, cases[i].needle, cases[i].id);
}

static void test_topic_length_limit(void **state)
{
    (void)state;
    size_t n = TOPIC_MAX_BYTES + 1;
    char *req = malloc(n + 64);
    assert_non_null(req);
    int k = sprintf(req, "{\"payload\":1,\"topic\":\"");
    memset(req + k, 'a', n);
    strcpy(req + k + n, "\"}");
    expect_error(req, ENVELOPE_ERR_BAD_TOPIC, "longer than 65535", NULL);
    strcpy(req + k + n - 1, "\"}"); /* exactly the limit: fine */
    struct envelope_request r;
    parse_ok(req, &r);
    assert_int_equal(strlen(r.topic), TOPIC_MAX_BYTES);
    envelope_request_free(&r);
    free(req);
}

/* Messages quote at most ~60 bytes of a topic or key, keep to one line, and
 * never show the payload. */
static void test_message_quoting(void **state)
{
    (void)state;
    char req[2048], m[512];
    const char *code;
    struct envelope_request r;

    int k = sprintf(req, "{\"payload\":\"SECRET\",\"topic\":\"");
    memset(req + k, 'x', 1000);
    strcpy(req + k + 1000, "/#\"}");
    assert_int_equal(envelope_parse((uint8_t *)req, strlen(req), &r, &code, m, sizeof m), -1);
    assert_string_equal(code, ENVELOPE_ERR_BAD_TOPIC);
    assert_non_null(strstr(m, "xxx...\""));
    assert_true(strlen(m) < 200);
    assert_null(strstr(m, "SECRET"));
    envelope_request_free(&r);

    /* A cut never splits a character: 'é' is two bytes, 60 is not odd. */
    k = sprintf(req, "{\"subscribe\":\"a");
    for (int i = 0; i < 100; i++)
        k += sprintf(req + k, "\xc3\xa9");
    strcpy(req + k, "#\"}");
    assert_int_equal(envelope_parse((uint8_t *)req, strlen(req), &r, &code, m, sizeof m), -1);
    assert_true(is_utf8(m, strlen(m)));
    assert_non_null(strstr(m, "\xc3\xa9...\""));
    envelope_request_free(&r);

    /* Control characters in a topic or key become '?'. */
    expect_error("{\"topic\":\"a\\nb\\u0000\",\"payload\":1}", ENVELOPE_ERR_BAD_TOPIC, "\"a?b?\"",
                 NULL);
    expect_error("{\"topic\":\"a\",\"payload\":1,\"x\\ny\\u007f\":1}", ENVELOPE_ERR_BAD_REQUEST,
                 "\"x?y?\"", NULL);
    k = sprintf(req, "{\"topic\":\"a\",\"payload\":1,\"");
    memset(req + k, 'k', 500);
    strcpy(req + k + 500, "\":0}");
    expect_error(req, ENVELOPE_ERR_BAD_REQUEST, "unknown key \"kkkk", NULL);

    /* jansson's "near '<token>'" would show the payload: it is left out. */
    static const char *const leaky[] = {
        "{\"topic\":\"t\",\"payload\":\"SECRET\n\"}",
        "{\"topic\":\"t\",\"payload\":SECRET}",
        "{\"topic\":\"t\",\"payload\":\"SECRET\\q\"}",
        "{\"topic\":\"t\",\"payload\":\"SECRET",
        "{\"topic\":\"t\",\"payload\":{\"SECRET\":1,\"SECRET\":2}}",
        "{\"topic\":\"t\",\"payload\":[1,2,SECRET]}",
        "{\"topic\":\"t\",\"payload\":\"SECRET\",\"qos\":7}",
        "{\"topic\":\"t\",\"payload\":\"SECRET\",\"encoding\":\"base64\"}",
    };
    for (size_t i = 0; i < N_ELEMS(leaky); i++) {
        int rc =
            envelope_parse((const uint8_t *)leaky[i], strlen(leaky[i]), &r, &code, m, sizeof m);
        assert_int_equal(rc, -1);
        check_error_shape(&r, code, m);
        if (strstr(m, "SECRET"))
            fail_msg("message shows the payload: %s", m);
        envelope_request_free(&r);
    }
}

/* Every buffer size gives a NUL-terminated UTF-8 prefix of the message. */
static void test_message_buffer_sizes(void **state)
{
    (void)state;
    const char *req = "{\"subscribe\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9/#/x\"}";
    char full[256], m[256];
    const char *code;
    struct envelope_request r;
    assert_int_equal(envelope_parse((uint8_t *)req, strlen(req), &r, &code, full, sizeof full), -1);
    envelope_request_free(&r);
    for (size_t cap = 1; cap <= strlen(full) + 1; cap++) {
        memset(m, 'Z', sizeof m);
        code = NULL;
        assert_int_equal(envelope_parse((uint8_t *)req, strlen(req), &r, &code, m, cap), -1);
        assert_string_equal(code, ENVELOPE_ERR_BAD_TOPIC);
        size_t n = strlen(m);
        assert_true(n < cap);
        assert_true(n + 4 > cap - 1); /* at most an incomplete character dropped */
        assert_memory_equal(m, full, n);
        assert_true(is_utf8(m, n));
        envelope_request_free(&r);
    }
    /* No buffer at all, no code pointer: still refused, nothing written. */
    assert_int_equal(envelope_parse((uint8_t *)req, strlen(req), &r, NULL, NULL, 0), -1);
    envelope_request_free(&r);
}

static void test_free_is_idempotent(void **state)
{
    (void)state;
    struct envelope_request r;
    parse_ok("{\"topic\":\"t\",\"payload\":\"p\",\"id\":\"i\"}", &r);
    envelope_request_free(&r);
    assert_null(r.topic);
    assert_null(r.payload);
    assert_null(r.id);
    envelope_request_free(&r);
    envelope_request_free(NULL);
}

/* --- base64 round trips -------------------------------------------------- */

/* Client to gateway: every length 0..300 of random bytes, as the reference
 * encodes them, decodes to the same bytes. */
static void test_base64_parse_roundtrip(void **state)
{
    (void)state;
    rng_seed(0xB64);
    uint8_t bytes[300] = {0};
    for (size_t len = 0; len <= sizeof bytes; len++) {
        for (size_t i = 0; i < len; i++)
            bytes[i] = (uint8_t)rng_next();
        char *b64 = ref_b64_encode(bytes, len);
        size_t cap = strlen(b64) + 128;
        char *req = malloc(cap);
        assert_non_null(req);
        snprintf(req, cap, "{\"topic\":\"t\",\"payload\":\"%s\",\"encoding\":\"base64\"}", b64);
        struct envelope_request r;
        parse_ok(req, &r);
        assert_int_equal(r.payload_len, len);
        if (len)
            assert_memory_equal(r.payload, bytes, len);
        envelope_request_free(&r);
        free(req);
        free(b64);
    }
}

/* Gateway to client and back: a binary payload goes out as base64 (what the
 * reference encodes) and its message, sent back as a request, publishes the
 * same bytes. */
static void test_base64_message_roundtrip(void **state)
{
    (void)state;
    rng_seed(0x5EED);
    uint8_t bytes[301], back[301];
    for (size_t len = 1; len <= sizeof bytes; len++) {
        bytes[0] = 0xFF; /* never in UTF-8: forces base64 */
        for (size_t i = 1; i < len; i++)
            bytes[i] = (uint8_t)rng_next();
        char *msg = message_text("dev/1/out", bytes, len, NULL);
        assert_non_null(msg);
        json_t *j = json_loads(msg, 0, NULL);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "encoding")), "base64");
        const char *b64 = json_string_value(json_object_get(j, "payload"));
        char *ref = ref_b64_encode(bytes, len);
        assert_string_equal(b64, ref);
        assert_int_equal(ref_b64_decode(b64, back), len);
        assert_memory_equal(back, bytes, len);

        struct envelope_request r;
        parse_ok(msg, &r);
        assert_string_equal(r.topic, "dev/1/out");
        assert_int_equal(r.payload_len, len);
        assert_memory_equal(r.payload, bytes, len);
        envelope_request_free(&r);
        json_decref(j);
        free(ref);
        free(msg);
    }
}

/* --- the gateway's messages ---------------------------------------------- */

static void test_message_json_payloads(void **state)
{
    (void)state;
    static const struct {
        const char *payload, *embedded;
    } cases[] = {
        {"{\"a\":1}", "{\"a\":1}"},
        {"  {\n \"a\" : [1, {\"b\": \"c\"}]\n}\r\n", "{\"a\":[1,{\"b\":\"c\"}]}"},
        {"[]", "[]"},
        {"[1,\"x\",null,true]", "[1,\"x\",null,true]"},
        {"{\"n\":\"\\u0000\"}", "{\"n\":\"\\u0000\"}"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        json_t *j =
            message_json("a/b", (const uint8_t *)cases[i].payload, strlen(cases[i].payload));
        json_t *p = json_object_get(j, "payload");
        assert_true(json_is_object(p) || json_is_array(p));
        assert_null(json_object_get(j, "encoding"));
        char *s = json_dumps(p, JSON_COMPACT);
        assert_string_equal(s, cases[i].embedded);
        free(s);
        json_decref(j);
    }
}

/* Text that is not a JSON object or array is sent as a string, unchanged. */
static void test_message_string_payloads(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "hello",
        "42",
        "\"quoted\"",
        "true",
        "null",
        "{\"a\":1,\"a\":2}",
        "{\"a\":1} junk",
        "[1,2",
        "{",
        " ",
        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
        "line1\nline2",
        "tab\there",
        "\x7f\x01",
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        json_t *j = message_json("t", (const uint8_t *)cases[i], strlen(cases[i]));
        json_t *p = json_object_get(j, "payload");
        assert_true(json_is_string(p));
        assert_string_equal(json_string_value(p), cases[i]);
        assert_null(json_object_get(j, "encoding"));
        json_decref(j);
    }
}

static void test_message_binary_empty_nul(void **state)
{
    (void)state;
    /* Empty, with and without a buffer. */
    json_t *j = message_json("t", NULL, 0);
    assert_string_equal(json_string_value(json_object_get(j, "payload")), "");
    assert_int_equal(json_object_size(j), 2);
    json_decref(j);
    j = message_json("t", (const uint8_t *)"", 0);
    assert_string_equal(json_string_value(json_object_get(j, "payload")), "");
    json_decref(j);

    /* NUL bytes in UTF-8 text: a string with "\u0000", all bytes kept. */
    static const uint8_t nul[] = {'a', 0, 'b', 0, 0};
    j = message_json("t", nul, sizeof nul);
    json_t *p = json_object_get(j, "payload");
    assert_int_equal(json_string_length(p), sizeof nul);
    assert_memory_equal(json_string_value(p), nul, sizeof nul);
    json_decref(j);

    /* Not UTF-8 (a lone continuation byte, a surrogate, an overlong, a NUL
     * before 0xFF): base64. */
    static const struct {
        const char *bytes;
        size_t len;
        const char *b64;
    } bin[] = {
        {"\x80", 1, "gA=="},
        {"\xed\xa0\x80", 3, "7aCA"},
        {"\xc0\xaf", 2, "wK8="},
        {"\0\xff", 2, "AP8="},
        {"{\"a\":\"\xff\"}", 9, "eyJhIjoi/yJ9"},
    };
    for (size_t i = 0; i < N_ELEMS(bin); i++) {
        j = message_json("t", (const uint8_t *)bin[i].bytes, bin[i].len);
        assert_string_equal(json_string_value(json_object_get(j, "payload")), bin[i].b64);
        assert_string_equal(json_string_value(json_object_get(j, "encoding")), "base64");
        json_decref(j);
    }
}

static void test_message_bad_arguments(void **state)
{
    (void)state;
    size_t n = 123;
    assert_null(message_text(NULL, (const uint8_t *)"x", 1, &n));
    assert_null(message_text("a\xff", (const uint8_t *)"x", 1, &n));
    assert_null(message_text("t", NULL, 1, &n));
    assert_int_equal(n, 123);
    /* Topics come from the broker, so any UTF-8 is quoted faithfully. */
    json_t *j = message_json("a/\"b\"\n/\xc3\xa9", (const uint8_t *)"x", 1);
    json_decref(j);
}

/* A message is itself a publish request: what a client echoes back is
 * published unchanged (JSON payloads as their compact text). */
static void test_message_echoes_as_request(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"", 0},         {"text", 4},        {"a\0b", 3},
        {"\xff\xfe", 2}, {"{\"k\":[1]}", 9}, {"[\"\\u0000\"]", 10},
        {"\"q\"", 3},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t n = 0;
        char *msg = message_text("x/y", (const uint8_t *)cases[i].bytes, cases[i].len, &n);
        assert_non_null(msg);
        struct envelope_request r;
        parse_ok_n((const uint8_t *)msg, n, &r);
        assert_int_equal(r.kind, ENVELOPE_PUBLISH);
        assert_string_equal(r.topic, "x/y");
        assert_int_equal(r.payload_len, cases[i].len);
        assert_memory_equal(r.payload, cases[i].bytes, cases[i].len);
        envelope_request_free(&r);
        free(msg);
    }
}

static void test_ack(void **state)
{
    (void)state;
    size_t n = 0;
    char *s = ack_text("\"r-1\"", &n);
    assert_string_equal(s, "{\"ack\":\"r-1\"}");
    assert_int_equal(n, strlen(s));
    free(s);
    s = ack_text("-12", NULL);
    assert_string_equal(s, "{\"ack\":-12}");
    free(s);
    s = ack_text("\"a\\u0000\\\"\"", NULL);
    assert_string_equal(s, "{\"ack\":\"a\\u0000\\\"\"}");
    free(s);
    assert_null(ack_text(NULL, &n));
    assert_null(ack_text("", &n));
    assert_null(ack_text("not json", &n));
    assert_null(ack_text("\"open", &n));

    /* The id a request carried is what the ack carries. */
    struct envelope_request r;
    parse_ok("{\"topic\":\"t\",\"payload\":1,\"qos\":1,\"id\":\"\\u00e9\\t\"}", &r);
    s = ack_text(r.id, NULL);
    json_t *j = json_loads(s, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "ack")), "\xc3\xa9\t");
    json_decref(j);
    free(s);
    envelope_request_free(&r);
}

static void test_error_reply(void **state)
{
    (void)state;
    size_t n = 0;
    char *s = error_text("bad_topic", "\"topic\" is empty", "7", &n);
    assert_string_equal(s, "{\"error\":{\"code\":\"bad_topic\",\"message\":\"\\\"topic\\\" is "
                           "empty\",\"request\":7}}");
    assert_int_equal(n, strlen(s));
    free(s);
    s = error_text("not_allowed", "line\nbreak", NULL, NULL);
    assert_string_equal(s, "{\"error\":{\"code\":\"not_allowed\",\"message\":\"line\\nbreak\"}}");
    free(s);
    s = error_text("bad_json", "m", "{broken", NULL); /* bad id: left out */
    assert_string_equal(s, "{\"error\":{\"code\":\"bad_json\",\"message\":\"m\"}}");
    free(s);
    s = error_text("bad_json", "\xff", "\"i\"", NULL); /* bad message: the code */
    assert_string_equal(s, "{\"error\":{\"code\":\"bad_json\",\"message\":\"bad_json\","
                           "\"request\":\"i\"}}");
    free(s);
    s = error_text("bad_json", NULL, NULL, NULL);
    assert_string_equal(s, "{\"error\":{\"code\":\"bad_json\",\"message\":\"bad_json\"}}");
    free(s);
    assert_null(error_text(NULL, "m", NULL, NULL));

    /* The whole path: a refused request, its error reply echoing the id. */
    struct envelope_request r;
    const char *code;
    char m[128];
    const char *req = "{\"topic\":\"a/#\",\"payload\":\"x\",\"id\":\"abc\"}";
    assert_int_equal(envelope_parse((uint8_t *)req, strlen(req), &r, &code, m, sizeof m), -1);
    s = error_text(code, m, r.id, NULL);
    json_t *j = json_loads(s, 0, NULL);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "bad_topic");
    assert_string_equal(json_string_value(json_object_get(e, "message")), m);
    assert_string_equal(json_string_value(json_object_get(e, "request")), "abc");
    json_decref(j);
    free(s);
    envelope_request_free(&r);
}

/* --- ACL ------------------------------------------------------------------ */

static void test_may_publish(void **state)
{
    (void)state;
    char *allow[] = {"app/+/in", "status/#", "exact"};
    static const struct {
        const char *topic;
        bool ok;
    } cases[] = {
        {"app/x/in", true},       {"app//in", true},   {"app/x/out", false},
        {"app/x/in/y", false},    {"app/in", false},   {"status", true},
        {"status/a/b/c", true},   {"statusx", false},  {"exact", true},
        {"exact/", false},        {"Exact", false},    {"other", false},
        {"app/+/in", false},      {"status/#", false}, {"", false},
        {"$SYS/app/x/in", false},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        if (envelope_may_publish(allow, N_ELEMS(allow), cases[i].topic) != cases[i].ok)
            fail_msg("publish to \"%s\": want %d", cases[i].topic, cases[i].ok);
    }
    assert_false(envelope_may_publish(allow, N_ELEMS(allow), NULL));
    assert_false(envelope_may_publish(allow, 0, "exact"));
    assert_false(envelope_may_publish(NULL, 0, "exact"));

    char *all[] = {"#"};
    assert_true(envelope_may_publish(all, 1, "a/b"));
    assert_false(envelope_may_publish(all, 1, "$SYS/x")); /* '#' never reaches '$' */
    char *sys[] = {"$SYS/#"};
    assert_true(envelope_may_publish(sys, 1, "$SYS/x"));
    /* An invalid allow filter allows nothing, not something odd. */
    char *broken[] = {"a/#/b", "x+", ""};
    assert_false(envelope_may_publish(broken, N_ELEMS(broken), "a/q/b"));
    assert_false(envelope_may_publish(broken, N_ELEMS(broken), "a/b"));
}

static void test_may_subscribe(void **state)
{
    (void)state;
    char *in[] = {"app/+/in"};
    char *app[] = {"app/#"};
    char *all[] = {"#"};
    char *two[] = {"a/b", "c/+"};
    const struct {
        char *const *allow;
        size_t n;
        const char *filter;
        bool ok;
    } cases[] = {
        /* widening attempts */
        {in, 1, "#", false},
        {in, 1, "app/#", false},
        {in, 1, "+/+/in", false},
        {in, 1, "app/+/+", false},
        {in, 1, "app/x/#", false},
        {in, 1, "app/+/in/#", false},
        {in, 1, "+/x/in", false},
        {app, 1, "#", false},
        {app, 1, "+/x", false},
        {app, 1, "+", false},
        {all, 1, "$SYS/#", false},
        {all, 1, "$SYS/x", false},
        {two, 2, "+", false},
        {two, 2, "a/+", false},
        {two, 2, "c/#", false},
        /* legitimate narrowings */
        {in, 1, "app/+/in", true},
        {in, 1, "app/x/in", true},
        {in, 1, "app//in", true},
        {app, 1, "app/x/in", true},
        {app, 1, "app/+/in", true},
        {app, 1, "app/#", true},
        {app, 1, "app", true},
        {app, 1, "app/+/+/#", true},
        {all, 1, "#", true},
        {all, 1, "x/+/#", true},
        {two, 2, "a/b", true},
        {two, 2, "c/+", true},
        {two, 2, "c/d", true},
        /* not filters at all */
        {all, 1, "a/#/b", false},
        {all, 1, "", false},
        {all, 1, "a+", false},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        if (envelope_may_subscribe(cases[i].allow, cases[i].n, cases[i].filter) != cases[i].ok)
            fail_msg("subscribe \"%s\" under \"%s\"...: want %d", cases[i].filter,
                     cases[i].allow[0], cases[i].ok);
    }
    assert_false(envelope_may_subscribe(all, 1, NULL));
    assert_false(envelope_may_subscribe(all, 0, "a"));
    assert_false(envelope_may_subscribe(NULL, 0, "a"));
    char *sys[] = {"$SYS/#"};
    assert_true(envelope_may_subscribe(sys, 1, "$SYS/broker/+"));
    char *broken[] = {"a/#/b"};
    assert_false(envelope_may_subscribe(broken, 1, "a/x/b"));
}

/* --- fuzzing -------------------------------------------------------------- */

/* Whatever envelope_parse returns, the request is consistent and the error
 * well formed; ASan and valgrind see the leaks. */
static void check_parse(const uint8_t *msg, size_t len)
{
    struct envelope_request r;
    const char *code = NULL;
    char m[160];
    memset(&r, 0x5A, sizeof r); /* garbage in: parse must not read it */
    int rc = envelope_parse(msg, len, &r, &code, m, sizeof m);
    if (rc == 0) {
        assert_non_null(r.topic);
        if (r.kind == ENVELOPE_PUBLISH) {
            assert_true(topic_name_is_valid(r.topic));
            assert_non_null(r.payload);
        } else {
            assert_true(r.kind == ENVELOPE_SUBSCRIBE || r.kind == ENVELOPE_UNSUBSCRIBE);
            assert_true(topic_filter_is_valid(r.topic));
            assert_null(r.payload);
            assert_false(r.retain);
        }
        assert_in_range(r.qos, 0, 2);
    } else {
        assert_int_equal(rc, -1);
        check_error_shape(&r, code, m);
    }
    if (r.id) {
        json_t *id = json_loads(r.id, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        assert_true(json_is_string(id) || json_is_integer(id));
        json_decref(id);
    }
    envelope_request_free(&r);
}

static void test_fuzz_random_bytes(void **state)
{
    (void)state;
    rng_seed(1234);
    uint8_t buf[96];
    static const uint8_t alphabet[] = "{}[]\":,\\ 0123456789-+.eEtrufalsn#/\xc3\xa9\xff\x00";
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = rng_below(sizeof buf + 1);
        bool json_chars = iter % 2;
        for (size_t i = 0; i < len; i++)
            buf[i] = json_chars ? alphabet[rng_below(sizeof alphabet - 1)] : (uint8_t)rng_next();
        if (len > 0 && rng_below(2))
            buf[0] = '{';
        check_parse(buf, len);
    }
}

/* Requests assembled from plausible pieces, so that many get past the JSON
 * parser and into the field checks. */
static void test_fuzz_jsonish(void **state)
{
    (void)state;
    static const char *const keys[] = {
        "topic", "payload",  "subscribe", "unsubscribe", "qos",  "retain",
        "id",    "encoding", "",          "Topic",       "x\\n", "\\u00e9",
    };
    static const char *const values[] = {
        "\"a/b\"",
        "\"#\"",
        "\"+\"",
        "\"a/+/c\"",
        "\"a/#/b\"",
        "\"\"",
        "0",
        "1",
        "2",
        "3",
        "-1",
        "1.5",
        "true",
        "false",
        "null",
        "[]",
        "{}",
        "\"aGk=\"",
        "\"base64\"",
        "\"\\u0000\"",
        "\"x\\ny\"",
        "\"$SYS/#\"",
        "[1,{\"a\":2}]",
        "\"\\ud83d\\ude00\"",
        "\"YR==\"",
        "\"\\u00e9/+\"",
        "99999999999999999999",
        "\"a\\u0000b\"",
    };
    rng_seed(42);
    char buf[1024];
    for (int iter = 0; iter < 4000; iter++) {
        size_t n = 0, fields = rng_below(6);
        buf[n++] = '{';
        for (size_t f = 0; f < fields; f++) {
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\"%s\":%s", f ? "," : "",
                                  keys[rng_below(N_ELEMS(keys))],
                                  values[rng_below(N_ELEMS(values))]);
        }
        buf[n++] = '}';
        /* Now and then a mutation: a byte changed, dropped or repeated. */
        for (size_t k = rng_below(4); k > 0 && k < 3 && n > 0; k--) {
            size_t at = rng_below(n);
            switch (rng_below(3)) {
            case 0:
                buf[at] = (char)rng_next();
                break;
            case 1:
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default:
                memmove(buf + at + 1, buf + at, n - at);
                n++;
                break;
            }
        }
        check_parse((const uint8_t *)buf, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_defaults),
        cmocka_unit_test(test_publish_all_fields),
        cmocka_unit_test(test_publish_json_payloads),
        cmocka_unit_test(test_publish_string_payload_bytes),
        cmocka_unit_test(test_publish_base64),
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_id_forms),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_bad_request),
        cmocka_unit_test(test_refresh),
        cmocka_unit_test(test_bad_base64),
        cmocka_unit_test(test_bad_topic),
        cmocka_unit_test(test_topic_length_limit),
        cmocka_unit_test(test_message_quoting),
        cmocka_unit_test(test_message_buffer_sizes),
        cmocka_unit_test(test_free_is_idempotent),
        cmocka_unit_test(test_base64_parse_roundtrip),
        cmocka_unit_test(test_base64_message_roundtrip),
        cmocka_unit_test(test_message_json_payloads),
        cmocka_unit_test(test_message_string_payloads),
        cmocka_unit_test(test_message_binary_empty_nul),
        cmocka_unit_test(test_message_bad_arguments),
        cmocka_unit_test(test_message_echoes_as_request),
        cmocka_unit_test(test_ack),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_may_publish),
        cmocka_unit_test(test_may_subscribe),
        cmocka_unit_test(test_fuzz_random_bytes),
        cmocka_unit_test(test_fuzz_jsonish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

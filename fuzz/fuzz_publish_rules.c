/* fuzz_publish_rules.c - JSON Pointer lookup and raw publish rules
 * (src/core/publish_rules.c).
 *
 * Input: line 1: a JSON Pointer; line 2: a rule's "equals" value (JSON);
 * the rest: a client message.
 * Properties:
 *  - json_pointer_get(doc, "") is doc; every top-level key of an object
 *    (and index of an array), escaped as a pointer, finds its own value;
 *  - publish_rule_pick: a rule without "when" always matches; a rule with
 *    "when" matches iff the value at the pointer equals the JSON value;
 *  - publish_msg_value gives a string's exact value (never one holding
 *    NUL), or an integer's digits, within the buffer; nothing else. */
#include "fuzz_util.h"

#include <jansson.h>

#include "config.h"
#include "publish_rules.h"

/* "/" + the key with '~' as "~0" and '/' as "~1". */
static char *escape_pointer(const char *key, size_t len)
{
    char *p = malloc(len * 2 + 2), *o = p;
    *o++ = '/';
    for (size_t i = 0; i < len; i++) {
        if (key[i] == '~') {
            *o++ = '~';
            *o++ = '0';
        } else if (key[i] == '/') {
            *o++ = '~';
            *o++ = '1';
        } else {
            *o++ = key[i];
        }
    }
    *o = '\0';
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    char *ptr = fz_line(&z), *equals = fz_line(&z);
    size_t len;
    char *msg = fz_rest(&z, &len);

    json_t *doc = publish_message_json((const uint8_t *)msg, len);
    if (doc) {
        FUZZ_CHECK(json_pointer_get(doc, "") == doc, "\"\" is not the whole document");
        if (json_is_object(doc)) {
            const char *key;
            size_t klen;
            json_t *v;
            json_object_keylen_foreach(doc, key, klen, v)
            {
                char *p = escape_pointer(key, klen);
                /* Tokens longer than 255 bytes are refused by design. */
                if (klen < 128)
                    FUZZ_CHECK(json_pointer_get(doc, p) == v, "pointer %s missed its key", p);
                free(p);
            }
        } else if (json_is_array(doc) && json_array_size(doc) > 0) {
            size_t last = json_array_size(doc) - 1;
            char p[32];
            snprintf(p, sizeof p, "/%zu", last);
            FUZZ_CHECK(json_pointer_get(doc, p) == json_array_get(doc, last), "index %s", p);
            snprintf(p, sizeof p, "/0%zu", last);
            FUZZ_CHECK(!json_pointer_get(doc, p), "leading zero index %s accepted", p);
        }
    }

    json_t *got = json_pointer_get(doc, ptr);
    json_t *want = json_loads(equals, JSON_DECODE_ANY, NULL);
    struct wsg_publish_rule rules[2] = {
        {.when_pointer = ptr, .when_equals = equals, .topic = "t"},
        {.topic = "fallback"},
    };
    long pick = publish_rule_pick(rules, 2, doc);
    bool should = got && want && json_equal(got, want);
    FUZZ_CHECK(pick == (should ? 0 : 1), "picked rule %ld, expected %d", pick, should ? 0 : 1);
    FUZZ_CHECK(publish_rule_pick(rules, 1, doc) == (should ? 0 : -1), "single rule");
    FUZZ_CHECK(publish_rule_pick(rules, 0, doc) == -1, "no rules");
    json_decref(want);

    size_t blen = 1 + (size_t)(len % 24); /* sometimes too small for the digits */
    char *buf = malloc(blen);
    size_t nlen = strlen(ptr) + 5;
    char *name = malloc(nlen);
    snprintf(name, nlen, "msg.%s", ptr);
    const char *v = publish_msg_value(doc, name, buf, blen);
    if (v) {
        FUZZ_CHECK(got && (json_is_string(got) || json_is_integer(got)),
                   "publish_msg_value gave a value for a %d", got ? json_typeof(got) : -1);
        if (json_is_string(got))
            FUZZ_CHECK(strlen(v) == json_string_length(got) &&
                           strcmp(v, json_string_value(got)) == 0,
                       "string value differs");
        else
            FUZZ_CHECK(v == buf && strlen(buf) < blen, "digits not in the buffer");
    } else {
        FUZZ_CHECK(!got || !(json_is_integer(got) ||
                             (json_is_string(got) &&
                              strlen(json_string_value(got)) == json_string_length(got))),
                   "publish_msg_value refused a usable value");
    }
    FUZZ_CHECK(!publish_msg_value(doc, ptr, buf, blen) || strncmp(ptr, "msg.", 4) == 0,
               "a name without \"msg.\" gave a value");
    free(name);
    free(buf);
    json_decref(doc);
    free(ptr);
    free(equals);
    free(msg);
    return 0;
}

/* publish_rules.c - content routing for raw mqtt routes; see publish_rules.h. */
#include "publish_rules.h"

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One reference token of a pointer, unescaped (~1 is '/', ~0 is '~') into
 * buf; returns the length, or -1 when it does not fit or is badly escaped. */
static long pointer_token(const char *p, size_t n, char *buf, size_t buf_len)
{
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '~') {
            if (i + 1 >= n || (p[i + 1] != '0' && p[i + 1] != '1'))
                return -1;
            c = p[++i] == '0' ? '~' : '/';
        }
        if (out + 1 >= buf_len)
            return -1;
        buf[out++] = c;
    }
    buf[out] = '\0';
    return (long)out;
}

/* An array index: "0" or digits without a leading zero. */
static long array_index(const char *s, size_t len)
{
    if (len == 0 || len > 9 || (len > 1 && s[0] == '0'))
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

json_t *json_pointer_get(json_t *doc, const char *pointer)
{
    if (!doc || !pointer)
        return NULL;
    if (*pointer == '\0')
        return doc;
    if (*pointer != '/')
        return NULL;
    json_t *cur = doc;
    const char *p = pointer + 1;
    char token[256];
    for (;;) {
        size_t n = strcspn(p, "/");
        long len = pointer_token(p, n, token, sizeof(token));
        if (len < 0)
            return NULL;
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, token, (size_t)len);
        } else if (json_is_array(cur)) {
            long i = array_index(token, (size_t)len);
            cur = i < 0 ? NULL : json_array_get(cur, (size_t)i);
        } else {
            return NULL;
        }
        if (!cur || p[n] == '\0')
            return cur;
        p += n + 1;
    }
}

json_t *publish_message_json(const uint8_t *msg, size_t len)
{
    return json_loadb((const char *)msg, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
}

static int rule_matches(const struct wsg_publish_rule *r, json_t *doc)
{
    if (!r->when_pointer)
        return 1;
    json_t *v = json_pointer_get(doc, r->when_pointer);
    if (!v)
        return 0;
    json_t *want = json_loads(r->when_equals, JSON_DECODE_ANY, NULL);
    int same = want && json_equal(v, want);
    json_decref(want);
    return same;
}

long publish_rule_pick(const struct wsg_publish_rule *rules, size_t n, json_t *doc)
{
    for (size_t i = 0; i < n; i++)
        if (rule_matches(&rules[i], doc))
            return (long)i;
    return -1;
}

const char *publish_msg_value(json_t *doc, const char *name, char *buf, size_t buf_len)
{
    if (strncmp(name, "msg.", 4) != 0)
        return NULL;
    json_t *v = json_pointer_get(doc, name + 4);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        return strlen(s) == json_string_length(v) ? s : NULL; /* a NUL inside: refused */
    }
    if (json_is_integer(v)) {
        snprintf(buf, buf_len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return NULL;
}

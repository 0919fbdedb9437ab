/* test_publish_rules.c - unit tests for content routing (publish_rules.c):
 * RFC 6901 pointers, rule choice in order, and the values {msg./pointer}
 * templates may take (never one that is not exactly a string or integer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "publish_rules.h"

static json_t *parse(const char *text)
{
    json_t *doc = publish_message_json((const uint8_t *)text, strlen(text));
    assert_non_null(doc);
    return doc;
}

static void test_pointer_rfc6901_examples(void **state)
{
    (void)state;
    json_t *doc = parse("{\"foo\": [\"bar\", \"baz\"], \"\": 0, \"a/b\": 1, \"c%d\": 2, "
                        "\"e^f\": 3, \"g|h\": 4, \"i\\\\j\": 5, \"k\\\"l\": 6, \" \": 7, "
                        "\"m~n\": 8}");
    assert_ptr_equal(json_pointer_get(doc, ""), doc);
    assert_string_equal(json_string_value(json_pointer_get(doc, "/foo/0")), "bar");
    assert_int_equal(json_integer_value(json_pointer_get(doc, "/")), 0);
    assert_int_equal(json_integer_value(json_pointer_get(doc, "/a~1b")), 1);
    assert_int_equal(json_integer_value(json_pointer_get(doc, "/c%d")), 2);
    assert_int_equal(json_integer_value(json_pointer_get(doc, "/i\\j")), 5);
    assert_int_equal(json_integer_value(json_pointer_get(doc, "/k\"l")), 6);
    assert_int_equal(json_integer_value(json_pointer_get(doc, "/ ")), 7);
    assert_int_equal(json_integer_value(json_pointer_get(doc, "/m~0n")), 8);
    json_decref(doc);
}

static void test_pointer_misses(void **state)
{
    (void)state;
    json_t *doc = parse("{\"a\": [10, 20], \"b\": {\"c\": null}}");
    assert_null(json_pointer_get(doc, "a"));      /* must start with '/' */
    assert_null(json_pointer_get(doc, "/x"));     /* absent key */
    assert_null(json_pointer_get(doc, "/a/2"));   /* past the end */
    assert_null(json_pointer_get(doc, "/a/01"));  /* leading zero */
    assert_null(json_pointer_get(doc, "/a/-"));   /* "-" names no element */
    assert_null(json_pointer_get(doc, "/a/0/x")); /* through a number */
    assert_null(json_pointer_get(doc, "/b/c~2")); /* bad escape */
    assert_null(json_pointer_get(doc, "/b/c~"));  /* bad escape */
    assert_true(json_is_null(json_pointer_get(doc, "/b/c")));
    assert_int_equal(json_integer_value(json_pointer_get(doc, "/a/1")), 20);
    assert_null(json_pointer_get(NULL, "/a"));
    json_decref(doc);
}

static void test_not_json(void **state)
{
    (void)state;
    assert_null(publish_message_json((const uint8_t *)"not json", 8));
    assert_null(publish_message_json((const uint8_t *)"{\"a\":1,\"a\":2}", 13)); /* dup keys */
    /* A string holding NUL never becomes a template value: not JSON here. */
    assert_null(publish_message_json((const uint8_t *)"{\"id\":\"a\\u0000b\"}", 17));
    json_t *n = publish_message_json((const uint8_t *)"42", 2); /* any JSON value */
    assert_true(json_is_integer(n));
    json_decref(n);
}

static void test_rules_in_order(void **state)
{
    (void)state;
    struct wsg_publish_rule rules[3] = {
        {.when_pointer = "/type", .when_equals = "\"telemetry\"", .topic = "t"},
        {.when_pointer = "/n", .when_equals = "{\"a\":[1,2.5,null]}", .topic = "n"},
        {.topic = "other"},
    };
    json_t *doc = parse("{\"type\": \"telemetry\"}");
    assert_int_equal(publish_rule_pick(rules, 3, doc), 0);
    json_decref(doc);
    doc = parse("{\"n\": {\"a\": [1, 2.5, null]}, \"type\": \"log\"}");
    assert_int_equal(publish_rule_pick(rules, 3, doc), 1);
    json_decref(doc);
    doc = parse("{\"n\": {\"a\": [1, 2.5]}}");
    assert_int_equal(publish_rule_pick(rules, 3, doc), 2); /* not equal: falls through */
    json_decref(doc);
    assert_int_equal(publish_rule_pick(rules, 3, NULL), 2); /* not JSON: only "no when" */
    assert_int_equal(publish_rule_pick(rules, 2, NULL), -1);
    doc = parse("{\"type\": \"Telemetry\"}"); /* exact, case-sensitive */
    assert_int_equal(publish_rule_pick(rules, 2, doc), -1);
    json_decref(doc);
    doc = parse("[\"telemetry\"]");
    assert_int_equal(publish_rule_pick(rules, 2, doc), -1);
    json_decref(doc);
}

static void test_msg_values(void **state)
{
    (void)state;
    char buf[32];
    json_t *doc = parse("{\"id\": \"d7\", \"n\": -12, \"r\": 1.5, \"t\": true, \"z\": null, "
                        "\"o\": {}, \"a\": [], \"e\": \"\"}");
    assert_string_equal(publish_msg_value(doc, "msg./id", buf, sizeof(buf)), "d7");
    assert_string_equal(publish_msg_value(doc, "msg./n", buf, sizeof(buf)), "-12");
    assert_null(publish_msg_value(doc, "msg./r", buf, sizeof(buf)));
    assert_null(publish_msg_value(doc, "msg./t", buf, sizeof(buf)));
    assert_null(publish_msg_value(doc, "msg./z", buf, sizeof(buf)));
    assert_null(publish_msg_value(doc, "msg./o", buf, sizeof(buf)));
    assert_null(publish_msg_value(doc, "msg./a", buf, sizeof(buf)));
    assert_null(publish_msg_value(doc, "msg./missing", buf, sizeof(buf)));
    assert_null(publish_msg_value(doc, "jwt.sub", buf, sizeof(buf)));
    /* "" is returned as is: route_expand refuses empty values itself. */
    assert_string_equal(publish_msg_value(doc, "msg./e", buf, sizeof(buf)), "");
    assert_null(publish_msg_value(NULL, "msg./id", buf, sizeof(buf)));
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pointer_rfc6901_examples),
        cmocka_unit_test(test_pointer_misses),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_rules_in_order),
        cmocka_unit_test(test_msg_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

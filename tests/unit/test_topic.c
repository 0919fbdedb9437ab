/* test_topic.c - unit tests for MQTT topic/filter syntax and matching (topic.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "topic.h"

static void test_filter_valid(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "a",   "a/b",    "#",    "+",    "a/#",  "a/+/c",          "+/+", "/", "//", "/#",
        "+/#", "$SYS/#", "a//b", "a/b/", "$SYS", "sport/tennis/+", "ü/ø", " ",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (!topic_filter_is_valid(ok[i]))
            fail_msg("filter should be valid: \"%s\"", ok[i]);
    }
}

static void test_filter_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "a#",
        "#a",
        "a/#/b",
        "#/",
        "a/b#",
        "+a",
        "a+",
        "a/+b",
        "a/#b",
        "##",
        "++",
        "a/b+/c",
        "\xff",
        "\xc0\xaf" /* overlong '/' */,
        "\xed\xa0\x80" /* surrogate */,
        "a/\xe2\x82",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (topic_filter_is_valid(bad[i]))
            fail_msg("filter should be invalid: \"%s\"", bad[i]);
    }
    assert_false(topic_filter_is_valid(NULL));
}

static void test_filter_length_limit(void **state)
{
    (void)state;
    char *s = malloc(TOPIC_MAX_BYTES + 2);
    assert_non_null(s);
    memset(s, 'a', TOPIC_MAX_BYTES);
    s[TOPIC_MAX_BYTES] = '\0';
    assert_true(topic_filter_is_valid(s));
    assert_true(topic_name_is_valid(s));
    s[TOPIC_MAX_BYTES] = 'a';
    s[TOPIC_MAX_BYTES + 1] = '\0';
    assert_false(topic_filter_is_valid(s));
    assert_false(topic_name_is_valid(s));
    free(s);
}

static void test_name_valid(void **state)
{
    (void)state;
    assert_true(topic_name_is_valid("a"));
    assert_true(topic_name_is_valid("a/b/c"));
    assert_true(topic_name_is_valid("/"));
    assert_true(topic_name_is_valid("a//b"));
    assert_true(topic_name_is_valid("$SYS/broker/uptime"));
    assert_true(topic_name_is_valid("caf\xc3\xa9"));
    assert_false(topic_name_is_valid(""));
    assert_false(topic_name_is_valid(NULL));
    assert_false(topic_name_is_valid("a/+"));
    assert_false(topic_name_is_valid("a/#"));
    assert_false(topic_name_is_valid("#"));
    assert_false(topic_name_is_valid("a+b"));
    assert_false(topic_name_is_valid("caf\xc3"));
}

struct match_case {
    const char *filter;
    const char *topic;
    bool match;
};

static void check_matches(const struct match_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (topic_filter_matches(c[i].filter, c[i].topic) != c[i].match)
            fail_msg("filter \"%s\" vs topic \"%s\": expected %s", c[i].filter, c[i].topic,
                     c[i].match ? "match" : "no match");
    }
}

static void test_match_literal(void **state)
{
    (void)state;
    static const struct match_case c[] = {
        {"a/b", "a/b", true},   {"a/b", "a/c", false},  {"a/b", "a", false}, {"a", "a/b", false},
        {"a/b", "a/b/", false}, {"a//b", "a//b", true}, {"/a", "/a", true},  {"/a", "a", false},
        {"A", "a", false},      {"ab", "a", false},     {"a", "ab", false},
    };
    check_matches(c, sizeof c / sizeof c[0]);
}

static void test_match_plus(void **state)
{
    (void)state;
    static const struct match_case c[] = {
        {"a/+", "a/b", true},
        {"a/+", "a/b/c", false},
        {"a/+", "a", false},
        {"a/+", "a/", true} /* '+' matches an empty level */,
        {"+", "a", true},
        {"+", "a/b", false},
        {"+/+", "/a", true},
        {"+", "/a", false},
        {"/+", "/a", true},
        {"a/+/c", "a/b/c", true},
        {"a/+/c", "a//c", true},
        {"a/+/c", "a/b/d", false},
        {"+/b/+", "x/b/y", true},
        {"sport/tennis/+", "sport/tennis/player1", true},
        {"sport/tennis/+", "sport/tennis/player1/ranking", false},
        {"sport/+", "sport", false},
        {"sport/+", "sport/", true},
    };
    check_matches(c, sizeof c / sizeof c[0]);
}

static void test_match_hash(void **state)
{
    (void)state;
    static const struct match_case c[] = {
        {"#", "a", true},
        {"#", "a/b/c", true},
        {"#", "/", true},
        {"a/#", "a", true} /* '#' includes the parent level */,
        {"a/#", "a/b", true},
        {"a/#", "a/b/c", true},
        {"a/#", "ab", false},
        {"a/#", "b/a", false},
        {"a/b/#", "a", false},
        {"+/#", "a", true},
        {"+/#", "a/b", true},
        {"a/+/#", "a", false},
        {"a/+/#", "a/b", true},
        {"/#", "/", true},
        {"/#", "a", false},
        {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    };
    check_matches(c, sizeof c / sizeof c[0]);
}

static void test_match_dollar(void **state)
{
    (void)state;
    static const struct match_case c[] = {
        {"#", "$SYS/broker", false},
        {"+/broker", "$SYS/broker", false},
        {"+/#", "$SYS/x", false},
        {"$SYS/#", "$SYS/broker", true},
        {"$SYS/#", "$SYS", true},
        {"$SYS/+", "$SYS/broker", true},
        {"a/+", "a/$x", true} /* only a leading '$' is special */,
        {"a/#", "a/$x/y", true},
        {"$SYS/broker", "$SYS/broker", true},
        {"#", "x$", true},
    };
    check_matches(c, sizeof c / sizeof c[0]);
}

static void test_match_null(void **state)
{
    (void)state;
    assert_false(topic_filter_matches(NULL, "a"));
    assert_false(topic_filter_matches("#", NULL));
}

static void test_covers(void **state)
{
    (void)state;
    static const struct match_case c[] = {
        /* {allow, filter, covered} */
        {"app/#", "app/+/in", true},
        {"app/+/in", "app/#", false},
        {"app/#", "app/#", true},
        {"app/#", "app", true},
        {"app/#", "#", false},
        {"#", "app/#", true},
        {"#", "+", true},
        {"#", "$SYS/#", false},
        {"+/#", "$SYS/x", false},
        {"$SYS/#", "$SYS/+", true},
        {"a/+", "a/b", true},
        {"a/+", "a/+", true},
        {"a/b", "a/+", false},
        {"a/+", "a/#", false},
        {"a/+", "a/b/c", false},
        {"a/+/#", "a/b", true},
        {"a/+/#", "a", false},
        {"a/+/#", "a/#", false},
        {"a/b", "a/b", true},
        {"a/b", "a/c", false},
        {"a", "a/b", false},
        {"a/b", "a", false},
        {"users/u1/#", "users/u2/x", false},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        if (topic_filter_covers(c[i].filter, c[i].topic) != c[i].match)
            fail_msg("allow \"%s\" vs filter \"%s\": expected %s", c[i].filter, c[i].topic,
                     c[i].match ? "covered" : "not covered");
    }
    assert_false(topic_filter_covers(NULL, "a"));
    assert_false(topic_filter_covers("#", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_valid),        cmocka_unit_test(test_filter_invalid),
        cmocka_unit_test(test_filter_length_limit), cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_match_literal),       cmocka_unit_test(test_match_plus),
        cmocka_unit_test(test_match_hash),          cmocka_unit_test(test_match_dollar),
        cmocka_unit_test(test_match_null),          cmocka_unit_test(test_covers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_json_check.c - what the config and target-map checkers share: the
 * error list and its lines, JSON paths (plain, quoted, cut), value
 * descriptions, the cap of 100 listed errors per check, control bytes
 * replaced, jansson's syntax errors, and host/port syntax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "json_check.h"

#define SRC "wsgate.json"

static void assert_line(const struct config_errors *e, size_t i, const char *want)
{
    assert_true(i < e->count);
    assert_string_equal(e->lines[i], want);
}

/* ------------------------------------------------------------ the error list */

static void test_no_error(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct jcheck jc;
    jcheck_begin(&jc, SRC, &errs);
    size_t mark = jcheck_enter_key(&jc, "listen");
    jcheck_leave(&jc, mark);
    assert_int_equal(jcheck_end(&jc), 0);
    assert_int_equal(errs.count, 0);
    assert_null(errs.lines);
}

static void test_error_lines_with_and_without_path(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct jcheck jc;
    jcheck_begin(&jc, SRC, &errs);
    jcheck_error(&jc, "expected a JSON object at the top level");
    size_t m1 = jcheck_enter_key(&jc, "routes");
    size_t m2 = jcheck_enter_index(&jc, 2);
    size_t m3 = jcheck_enter_key(&jc, "target");
    jcheck_error(&jc, "missing \"%s\"", "port");
    jcheck_leave(&jc, m3);
    jcheck_error(&jc, "at the route");
    jcheck_leave(&jc, m2);
    jcheck_leave(&jc, m1);
    jcheck_error(&jc, "back at the top");
    assert_int_equal(jcheck_end(&jc), -1);
    assert_int_equal(errs.count, 4);
    assert_line(&errs, 0, SRC ": expected a JSON object at the top level");
    assert_line(&errs, 1, SRC ": routes[2].target: missing \"port\"");
    assert_line(&errs, 2, SRC ": routes[2]: at the route");
    assert_line(&errs, 3, SRC ": back at the top");
    config_errors_free(&errs);
    assert_int_equal(errs.count, 0);
    assert_null(errs.lines);
}

/* A check that starts on a list holding lines already answers for its own. */
static void test_end_counts_only_this_check(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    jcheck_add_line(&errs, "earlier: cannot open: No such file or directory");
    struct jcheck jc;
    jcheck_begin(&jc, SRC, &errs);
    assert_int_equal(jcheck_end(&jc), 0);
    jcheck_begin(&jc, SRC, &errs);
    jcheck_error(&jc, "bad");
    assert_int_equal(jcheck_end(&jc), -1);
    assert_int_equal(errs.count, 2);
    assert_line(&errs, 0, "earlier: cannot open: No such file or directory");
    config_errors_free(&errs);
}

static void test_max_errors_cap(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    jcheck_add_line(&errs, "not counted against the cap");
    struct jcheck jc;
    jcheck_begin(&jc, SRC, &errs);
    for (int i = 0; i < 250; i++) {
        size_t mark = jcheck_enter_index(&jc, (size_t)i);
        jcheck_error(&jc, "error %d", i);
        jcheck_leave(&jc, mark);
    }
    assert_int_equal(jcheck_end(&jc), -1);
    /* 1 line before, 100 listed, then one line counting the rest. */
    assert_int_equal(errs.count, 1 + 100 + 1);
    assert_line(&errs, 1, SRC ": [0]: error 0");
    assert_line(&errs, 100, SRC ": [99]: error 99");
    assert_line(&errs, 101, SRC ": 150 more errors not listed");

    /* The next check has a cap of its own. */
    jcheck_begin(&jc, "other.json", &errs);
    for (int i = 0; i < 100; i++)
        jcheck_error(&jc, "e");
    assert_int_equal(jcheck_end(&jc), -1);
    assert_int_equal(errs.count, 102 + 100); /* exactly the cap: no "more" line */
    assert_line(&errs, 201, "other.json: e");
    config_errors_free(&errs);
}

static void test_control_bytes_replaced(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct jcheck jc;
    jcheck_begin(&jc, SRC, &errs);
    jcheck_error(&jc, "got \"%s\"", "a\x1b[31mred\x1b[0m\nsecond line\r\t\x7f!");
    jcheck_end(&jc);
    jcheck_add_line(&errs, "%s: %s", "ma\np.json", "bell\a");
    assert_line(&errs, 0,
                SRC ": got \"a?[31mred?[0m?second line??"
                    "?!\"");
    assert_line(&errs, 1, "ma?p.json: bell?");
    /* UTF-8 is kept as it is. */
    jcheck_add_line(&errs, "caf\xc3\xa9 \xe2\x82\xac");
    assert_line(&errs, 2, "caf\xc3\xa9 \xe2\x82\xac");
    config_errors_free(&errs);
}

static void test_unknown_key(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct jcheck jc;
    jcheck_begin(&jc, SRC, &errs);
    size_t mark = jcheck_enter_key(&jc, "limits");
    jcheck_unknown_key(&jc, "max_conections", "max_connections, max_message_bytes");
    assert_int_equal(jcheck_mark(&jc), mark + strlen("limits")); /* left again */
    jcheck_leave(&jc, mark);
    jcheck_unknown_key(&jc, "bogus", "listen, routes");
    jcheck_end(&jc);
    assert_line(&errs, 0,
                SRC ": limits.max_conections: unknown key (expected one of: max_connections, "
                    "max_message_bytes)");
    assert_line(&errs, 1, SRC ": bogus: unknown key (expected one of: listen, routes)");
    config_errors_free(&errs);
}

/* ------------------------------------------------------------ the JSON path */

/* The path as the next error shows it. */
static char *path_of(struct jcheck *jc, struct config_errors *errs)
{
    jcheck_error(jc, "x");
    char *line = errs->lines[errs->count - 1];
    size_t skip = strlen(SRC ": ");
    size_t n = strlen(line);
    assert_true(n >= skip + 3);
    return strndup(line + skip, n - skip - 3); /* without ": x" */
}

static void test_odd_keys_are_quoted(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct jcheck jc;
    jcheck_begin(&jc, SRC, &errs);
    size_t m0 = jcheck_enter_key(&jc, "maps");
    jcheck_enter_key(&jc, "my vm");
    jcheck_enter_key(&jc, "a.b");
    jcheck_enter_key(&jc, "say \"hi\"\n");
    jcheck_enter_key(&jc, "plain_key-2");
    jcheck_enter_index(&jc, 7);
    char *p = path_of(&jc, &errs);
    assert_string_equal(p, "maps[\"my vm\"][\"a.b\"][\"say \\\"hi\\\"\\n\"].plain_key-2[7]");
    free(p);
    jcheck_leave(&jc, m0);
    jcheck_enter_key(&jc, ""); /* the empty key is odd too */
    p = path_of(&jc, &errs);
    assert_string_equal(p, "[\"\"]");
    free(p);
    /* An index first: no leading dot before a key that follows it. */
    jcheck_leave(&jc, 0);
    jcheck_enter_index(&jc, 0);
    jcheck_enter_key(&jc, "k");
    p = path_of(&jc, &errs);
    assert_string_equal(p, "[0].k");
    free(p);
    jcheck_end(&jc);
    config_errors_free(&errs);
}

static void test_long_path_is_cut(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct jcheck jc;
    jcheck_begin(&jc, SRC, &errs);
    /* 100 levels of a 10-byte key: far past the cap. */
    for (int i = 0; i < 100; i++)
        jcheck_enter_key(&jc, "abcdefghij");
    char *p = path_of(&jc, &errs);
    assert_true(strlen(p) < JCHECK_PATH_CAP);
    assert_string_equal(p + strlen(p) - 3, "...");
    assert_memory_equal(p, "abcdefghij.abcdefghij.", 22);
    free(p);

    /* Cut between characters, never inside one: the line stays UTF-8. */
    jcheck_leave(&jc, 0);
    for (int i = 0; i < 100; i++)
        jcheck_enter_key(&jc, "\xe2\x82\xac\xe2\x82\xac"); /* "€€", quoted */
    p = path_of(&jc, &errs);
    size_t n = strlen(p);
    assert_true(n < JCHECK_PATH_CAP);
    assert_string_equal(p + n - 3, "...");
    unsigned char before = (unsigned char)p[n - 4];
    /* the byte before "..." ends a character: ASCII, or the last of a sequence */
    assert_true(before < 0x80 || (p[n - 4] == '\xac' && p[n - 5] == '\x82'));
    free(p);
    jcheck_end(&jc);
    config_errors_free(&errs);
}

/* ------------------------------------------------------ value descriptions */

static void test_describe(void **state)
{
    (void)state;
    char buf[JCHECK_GOT_CAP];
    json_t *v = json_pack("{s:i, s:[b, n], s:s}", "a", 1, "b", 1, "c", "x\ny");
    jcheck_describe(v, false, buf, sizeof buf);
    assert_string_equal(buf, "{\"a\":1,\"b\":[true,null],\"c\":\"x\\ny\"}");
    jcheck_describe(v, true, buf, sizeof buf);
    assert_string_equal(buf, "<hidden>");
    json_decref(v);

    v = json_real(1.5);
    jcheck_describe(v, false, buf, sizeof buf);
    assert_string_equal(buf, "1.5");
    json_decref(v);

    /* 200 'x': cut to the buffer, ending in "...". */
    char big[201];
    memset(big, 'x', 200);
    big[200] = '\0';
    v = json_string(big);
    jcheck_describe(v, false, buf, sizeof buf);
    assert_int_equal(strlen(buf), sizeof buf - 1);
    assert_string_equal(buf + sizeof buf - 4, "...");
    assert_int_equal(buf[0], '"');
    json_decref(v);

    /* Multi-byte characters are cut whole. */
    char euros[3 * 60 + 1] = "";
    for (int i = 0; i < 60; i++)
        strcat(euros, "\xe2\x82\xac");
    v = json_string(euros);
    jcheck_describe(v, false, buf, sizeof buf);
    size_t n = strlen(buf);
    assert_string_equal(buf + n - 3, "...");
    assert_int_equal((n - 3 - 1) % 3, 0); /* the quote, then whole 3-byte characters */
    json_decref(v);
}

static void test_value_error(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct jcheck jc;
    jcheck_begin(&jc, SRC, &errs);
    size_t mark = jcheck_enter_key(&jc, "port");
    json_t *v = json_string("80a");
    jcheck_value_error(&jc, v, false, "expected an integer 1..65535");
    jcheck_value_error(&jc, v, true, "expected a secret");
    json_decref(v);
    jcheck_leave(&jc, mark);
    jcheck_end(&jc);
    assert_line(&errs, 0, SRC ": port: expected an integer 1..65535, got \"80a\"");
    assert_line(&errs, 1, SRC ": port: expected a secret, got <hidden>");
    config_errors_free(&errs);
}

static void test_syntax_error(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    json_error_t e;
    assert_null(json_loads("{\n  \"a\": 1,\n  \"a\": 2}", JSON_REJECT_DUPLICATES, &e));
    jcheck_syntax_error(&errs, SRC, &e, NULL);
    assert_null(json_loads("", 0, &e));
    jcheck_syntax_error(&errs, SRC, &e, " (note)");
    e.line = -1; /* jansson's errors without a position */
    jcheck_syntax_error(&errs, SRC, &e, NULL);
    assert_null(json_loads("[\"\x01\"]", 0, &e)); /* jansson quotes the control byte */
    jcheck_syntax_error(&errs, SRC, &e, NULL);
    assert_int_equal(errs.count, 4);
    assert_string_equal(errs.lines[0], SRC ":3:5: duplicate object key near '\"a\"'");
    assert_string_equal(errs.lines[1], SRC ":1:1: '[' or '{' expected near end of file (note)");
    assert_string_equal(errs.lines[2], SRC ": '[' or '{' expected near end of file");
    assert_non_null(strstr(errs.lines[3], SRC ":1:"));
    for (const char *p = errs.lines[3]; *p; p++)
        assert_true((unsigned char)*p >= 0x20);
    config_errors_free(&errs);
}

/* ----------------------------------------------------------- value syntax */

static void test_host_syntax(void **state)
{
    (void)state;
    assert_true(jcheck_host_is_valid("example.com", 11));
    assert_true(jcheck_host_is_valid("::1", 3));
    assert_true(jcheck_host_is_valid("h\xc3\xa9", 3));
    assert_false(jcheck_host_is_valid("", 0));
    assert_false(jcheck_host_is_valid("a b", 3));
    assert_false(jcheck_host_is_valid("a/b", 3));
    assert_false(jcheck_host_is_valid("a\tb", 3));
    assert_false(jcheck_host_is_valid("a\x7f", 2));
    assert_true(jcheck_host_is_valid("ab/", 2)); /* only the first n bytes count */
}

static void test_port_syntax(void **state)
{
    (void)state;
    assert_int_equal(jcheck_parse_port("1", 1), 1);
    assert_int_equal(jcheck_parse_port("8080", 4), 8080);
    assert_int_equal(jcheck_parse_port("65535", 5), 65535);
    assert_int_equal(jcheck_parse_port("00080", 5), 80);
    assert_int_equal(jcheck_parse_port("65536", 5), 0);
    assert_int_equal(jcheck_parse_port("0", 1), 0);
    assert_int_equal(jcheck_parse_port("", 0), 0);
    assert_int_equal(jcheck_parse_port("123456", 6), 0);
    assert_int_equal(jcheck_parse_port("80a", 3), 0);
    assert_int_equal(jcheck_parse_port("-80", 3), 0);
    assert_int_equal(jcheck_parse_port("80:", 2), 80);
}

/* ----------------------------------------------------------------- memory */

static void test_allocation_helpers(void **state)
{
    (void)state;
    char *s = jcheck_strndup("hello world", 5);
    assert_string_equal(s, "hello");
    free(s);
    s = jcheck_asprintf("%s-%d", "wsgate", 7);
    assert_string_equal(s, "wsgate-7");
    free(s);
    int *z = jcheck_calloc(4, sizeof *z);
    for (int i = 0; i < 4; i++)
        assert_int_equal(z[i], 0);
    free(z);
    free(jcheck_calloc(0, 8)); /* never NULL, even for nothing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_error),
        cmocka_unit_test(test_error_lines_with_and_without_path),
        cmocka_unit_test(test_end_counts_only_this_check),
        cmocka_unit_test(test_max_errors_cap),
        cmocka_unit_test(test_control_bytes_replaced),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_odd_keys_are_quoted),
        cmocka_unit_test(test_long_path_is_cut),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_value_error),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_host_syntax),
        cmocka_unit_test(test_port_syntax),
        cmocka_unit_test(test_allocation_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

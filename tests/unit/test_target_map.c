/* test_target_map.c - unit tests for websockify-style target maps
 * (target_map.c): every value form, lookups, a 100,000-key map, and every
 * error path with its exact message. Each map is written to a mkstemp file,
 * loaded, and the file removed before the snapshot is used. */
#define _GNU_SOURCE /* asprintf */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "target_map.h"

#define SRC "consoles.json"
#define REFUSED "(captures refuse '/', '+', '#' and NUL)"
#define VALUE_EXPECTED                                                                             \
    "expected a target {\"host\", \"port\"}, {\"unix\"}, \"host:port\", \"unix:/path\" or a "      \
    "non-empty array of them"
#define ELEMENT_EXPECTED                                                                           \
    "expected a target {\"host\", \"port\"}, {\"unix\"}, \"host:port\" or \"unix:/path\""
#define HOST_EXPECTED "expected a host name or address"
#define PORT_EXPECTED "expected an integer 1..65535"
#define STR_HOST                                                                                   \
    "expected \"host:port\" with a host name or address (no blanks, control characters or '/')"
#define STR_PORT "expected \"host:port\" with a port 1..65535"

/* ------------------------------------------------------------------ helpers */

/* A new temporary file holding `text`; the caller unlinks and frees the path. */
static char *write_temp(const char *text, size_t len)
{
    const char *dir = getenv("TMPDIR");
    char *path;
    assert_true(asprintf(&path, "%s/wsgate_tm_XXXXXX", dir && *dir ? dir : "/tmp") > 0);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
    return path;
}

/* Loads `text` as SRC; the file is gone before the caller sees the snapshot. */
static struct target_map *load_text(const char *text, struct config_errors *errs)
{
    char *path = write_temp(text, strlen(text));
    struct target_map *m = target_map_load(path, SRC, errs);
    unlink(path);
    free(path);
    return m;
}

static void dump_errors(const struct config_errors *e)
{
    for (size_t i = 0; i < e->count; i++)
        fprintf(stderr, "    | %s\n", e->lines[i]);
}

static void assert_has_line(const struct config_errors *e, const char *line)
{
    for (size_t i = 0; i < e->count; i++) {
        if (strcmp(e->lines[i], line) == 0)
            return;
    }
    dump_errors(e);
    fail_msg("missing error line: %s", line);
}

static struct target_map *load_ok(const char *text)
{
    struct config_errors errs = {0};
    struct target_map *m = load_text(text, &errs);
    if (!m) {
        dump_errors(&errs);
        fail_msg("map unexpectedly invalid: %s", text);
    }
    assert_int_equal(errs.count, 0);
    return m;
}

/* Loads `text` expecting failure; the caller checks and frees `errs`. */
static void load_bad(const char *text, struct config_errors *errs)
{
    struct target_map *m = load_text(text, errs);
    if (m) {
        target_map_free(m);
        fail_msg("map unexpectedly valid: %s", text);
    }
    assert_true(errs->count > 0);
}

/* Looks `key` up and checks its single target. */
static void assert_one(const struct target_map *m, const char *key, const char *host, int port)
{
    size_t n = 99;
    const struct wsg_target *t = target_map_lookup(m, key, &n);
    if (!t)
        fail_msg("key not found: %s", key);
    assert_int_equal(n, 1);
    assert_string_equal(t[0].host, host);
    assert_int_equal(t[0].port, port);
}

static void assert_miss(const struct target_map *m, const char *key)
{
    size_t n = 99;
    assert_null(target_map_lookup(m, key, &n));
    assert_int_equal(n, 0);
}

/* ------------------------------------------------------- one test per error */

/* One error path: the file, the exact line expected, and how many errors
 * the whole load must give (so a mistake is reported once, not echoed). */
struct error_case {
    const char *name;
    const char *json;
    const char *line;
    size_t count;
};

static const struct error_case error_cases[] = {
    /* the document */
    {"top_level_array", "[\"h:1\"]",
     SRC ": expected an object mapping keys to targets, got [\"h:1\"]", 1},
    {"top_level_string", "\"h:1\"", SRC ": expected an object mapping keys to targets, got \"h:1\"",
     1},
    /* not JSON: websockify's lines, where "5" lacks its ": host:port" */
    {"top_level_number", "5", SRC ":1: expected \"token: host:port\", got \"5\"", 1},
    {"syntax_error_line_col", "{\n  \"vm1\": \"h:1\",\n}",
     SRC ":3:1: string or '}' expected near '}'", 1},
    {"syntax_error_truncated", "{\"vm1\": \"h:1\"", SRC ":1:13: '}' expected near end of file", 1},
    {"duplicate_keys", "{\"vm1\": \"a:1\",\n \"vm1\": \"b:2\"}",
     SRC ":2:6: duplicate object key near '\"vm1\"'", 1},
    {"nul_in_host", "{\"vm1\": \"h\\u0000:1\"}",
     SRC ":1:19: \\u0000 is not allowed without JSON_ALLOW_NUL near '\"h\\u0000:1\"'", 1},

    /* keys */
    {"key_empty", "{\"\": \"h:1\"}", SRC ": [\"\"]: expected a non-empty key", 1},
    {"key_slash", "{\"vm/1\": \"h:1\"}",
     SRC ": [\"vm/1\"]: key holds '/': it could never be looked up " REFUSED, 1},
    {"key_plus", "{\"vm+1\": \"h:1\"}",
     SRC ": [\"vm+1\"]: key holds '+': it could never be looked up " REFUSED, 1},
    {"key_hash", "{\"vm#1\": \"h:1\"}",
     SRC ": [\"vm#1\"]: key holds '#': it could never be looked up " REFUSED, 1},
    {"key_nul", "{\"vm\\u00001\": \"h:1\"}",
     SRC
     ":1:12: NUL byte in object key not supported near '\"vm\\u00001\"' (such a key could never "
     "be looked up)",
     1},
    {"key_bad_and_value_bad", "{\"a/b\": 5}", SRC ": [\"a/b\"]: " VALUE_EXPECTED ", got 5", 2},

    /* the value of a key */
    {"value_number", "{\"vm1\": 5900}", SRC ": vm1: " VALUE_EXPECTED ", got 5900", 1},
    {"value_null", "{\"vm1\": null}", SRC ": vm1: " VALUE_EXPECTED ", got null", 1},
    {"value_bool", "{\"vm1\": true}", SRC ": vm1: " VALUE_EXPECTED ", got true", 1},
    {"value_empty_array", "{\"vm1\": []}", SRC ": vm1: " VALUE_EXPECTED ", got []", 1},
    {"element_nested_array", "{\"vm1\": [[\"h:1\"]]}",
     SRC ": vm1[0]: " ELEMENT_EXPECTED ", got [\"h:1\"]", 1},
    {"element_number", "{\"vm1\": [\"h:1\", 7]}", SRC ": vm1[1]: " ELEMENT_EXPECTED ", got 7", 1},

    /* object targets */
    {"object_unknown_key", "{\"vm1\": {\"host\": \"h\", \"port\": 1, \"hots\": \"x\"}}",
     SRC ": vm1.hots: unknown key (expected one of: host, port, unix)", 1},
    {"object_host_env_is_unknown", "{\"vm1\": {\"host_env\": \"H\", \"host\": \"h\", \"port\": 1}}",
     SRC ": vm1.host_env: unknown key (expected one of: host, port, unix)", 1},
    {"object_missing_host", "{\"vm1\": {\"port\": 1}}", SRC ": vm1: missing \"host\"", 1},
    {"object_missing_port", "{\"vm1\": {\"host\": \"h\"}}", SRC ": vm1: missing \"port\"", 1},
    {"object_empty", "{\"vm1\": {}}", SRC ": vm1: missing \"host\"", 2},
    {"object_host_number", "{\"vm1\": {\"host\": 5, \"port\": 1}}",
     SRC ": vm1.host: " HOST_EXPECTED ", got 5", 1},
    {"object_host_empty", "{\"vm1\": {\"host\": \"\", \"port\": 1}}",
     SRC ": vm1.host: " HOST_EXPECTED ", got \"\"", 1},
    {"object_host_blank", "{\"vm1\": {\"host\": \"a b\", \"port\": 1}}",
     SRC ": vm1.host: " HOST_EXPECTED ", got \"a b\"", 1},
    {"object_host_control", "{\"vm1\": {\"host\": \"a\\tb\", \"port\": 1}}",
     SRC ": vm1.host: " HOST_EXPECTED ", got \"a\\tb\"", 1},
    {"object_host_slash", "{\"vm1\": {\"host\": \"a/b\", \"port\": 1}}",
     SRC ": vm1.host: " HOST_EXPECTED ", got \"a/b\"", 1},
    {"object_port_string", "{\"vm1\": {\"host\": \"h\", \"port\": \"x\"}}",
     SRC ": vm1.port: " PORT_EXPECTED ", got \"x\"", 1},
    {"object_port_zero", "{\"vm1\": {\"host\": \"h\", \"port\": 0}}",
     SRC ": vm1.port: " PORT_EXPECTED ", got 0", 1},
    {"object_port_too_big", "{\"vm1\": {\"host\": \"h\", \"port\": 65536}}",
     SRC ": vm1.port: " PORT_EXPECTED ", got 65536", 1},
    {"object_port_negative", "{\"vm1\": {\"host\": \"h\", \"port\": -1}}",
     SRC ": vm1.port: " PORT_EXPECTED ", got -1", 1},
    {"object_port_real", "{\"vm1\": {\"host\": \"h\", \"port\": 5900.0}}",
     SRC ": vm1.port: " PORT_EXPECTED ", got 5900.0", 1},
    {"object_in_array", "{\"vm1\": [\"h:1\", {\"host\": \"\", \"port\": 2}]}",
     SRC ": vm1[1].host: " HOST_EXPECTED ", got \"\"", 1},
    {"odd_key_is_quoted", "{\"my vm\": {\"host\": \"h\", \"port\": \"x\"}}",
     SRC ": [\"my vm\"].port: " PORT_EXPECTED ", got \"x\"", 1},
    {"dotted_key_is_quoted", "{\"a.b\": [\"h:1\", {\"host\": \"h\", \"port\": 0}]}",
     SRC ": [\"a.b\"][1].port: " PORT_EXPECTED ", got 0", 1},

    /* "host:port" strings */
    {"string_no_port", "{\"vm1\": \"localhost\"}", SRC ": vm1: " STR_PORT ", got \"localhost\"", 1},
    {"string_port_empty", "{\"vm1\": \"h:\"}", SRC ": vm1: " STR_PORT ", got \"h:\"", 1},
    {"string_port_zero", "{\"vm1\": \"h:0\"}", SRC ": vm1: " STR_PORT ", got \"h:0\"", 1},
    {"string_port_too_big", "{\"vm1\": \"h:65536\"}", SRC ": vm1: " STR_PORT ", got \"h:65536\"",
     1},
    {"string_port_six_digits", "{\"vm1\": \"h:005900\"}",
     SRC ": vm1: " STR_PORT ", got \"h:005900\"", 1},
    {"string_port_sign", "{\"vm1\": \"h:+80\"}", SRC ": vm1: " STR_PORT ", got \"h:+80\"", 1},
    {"string_port_junk", "{\"vm1\": \"h:80a\"}", SRC ": vm1: " STR_PORT ", got \"h:80a\"", 1},
    {"string_port_blank", "{\"vm1\": \"h: 80\"}", SRC ": vm1: " STR_PORT ", got \"h: 80\"", 1},
    {"string_empty", "{\"vm1\": \"\"}", SRC ": vm1: " STR_HOST ", got \"\"", 1},
    {"string_host_empty", "{\"vm1\": \":80\"}", SRC ": vm1: " STR_HOST ", got \":80\"", 1},
    {"string_host_blank", "{\"vm1\": \"a b:80\"}", SRC ": vm1: " STR_HOST ", got \"a b:80\"", 1},
    {"string_url", "{\"vm1\": \"http://h:80\"}", SRC ": vm1: " STR_HOST ", got \"http://h:80\"", 1},
    {"string_v6_without_brackets", "{\"vm1\": \"::1:5900\"}",
     SRC ": vm1: expected \"[v6addr]:port\": an IPv6 address needs brackets, got \"::1:5900\"", 1},
    {"string_v6_no_closing_bracket", "{\"vm1\": \"[::1:5900\"}",
     SRC ": vm1: expected \"[v6addr]:port\" with a closing ']', got \"[::1:5900\"", 1},
    {"string_v6_not_an_address", "{\"vm1\": \"[vm1]:5900\"}",
     SRC ": vm1: expected \"[v6addr]:port\" with an IPv6 address in the brackets, got "
         "\"[vm1]:5900\"",
     1},
    {"string_v6_v4_in_brackets", "{\"vm1\": \"[127.0.0.1]:5900\"}",
     SRC ": vm1: expected \"[v6addr]:port\" with an IPv6 address in the brackets, got "
         "\"[127.0.0.1]:5900\"",
     1},
    {"string_v6_empty_brackets", "{\"vm1\": \"[]:5900\"}",
     SRC ": vm1: expected \"[v6addr]:port\" with an IPv6 address in the brackets, got "
         "\"[]:5900\"",
     1},
    {"string_v6_empty_zone", "{\"vm1\": \"[fe80::1%]:5900\"}",
     SRC ": vm1: expected \"[v6addr]:port\" with an IPv6 address in the brackets, got "
         "\"[fe80::1%]:5900\"",
     1},
    {"string_v6_junk_after_bracket", "{\"vm1\": \"[::1]x:5900\"}",
     SRC ": vm1: expected \"[v6addr]:port\" (nothing between ']' and ':'), got \"[::1]x:5900\"", 1},
    {"string_v6_no_port", "{\"vm1\": \"[::1]\"}", SRC ": vm1: " STR_PORT ", got \"[::1]\"", 1},
    {"string_v6_bad_port", "{\"vm1\": \"[::1]:0\"}", SRC ": vm1: " STR_PORT ", got \"[::1]:0\"", 1},
    {"unix_relative", "{\"vm1\": {\"unix\": \"app.sock\"}}",
     SRC ": vm1.unix: expected an absolute unix socket path (\"/run/app.sock\"), got \"app.sock\"",
     1},
    {"unix_not_string", "{\"vm1\": {\"unix\": 1}}",
     SRC ": vm1.unix: expected an absolute unix socket path (\"/run/app.sock\"), got 1", 1},
    {"unix_extra_key", "{\"vm1\": {\"unix\": \"/a\", \"port\": 1}}",
     SRC ": vm1.port: unknown key (expected one of: unix)", 1},
    {"unix_string_empty", "{\"vm1\": \"unix:\"}",
     SRC ": vm1: expected an absolute unix socket path (\"/run/app.sock\"), got \"unix:\"", 1},
    {"unix_string_too_long",
     "{\"vm1\": "
     "\"unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
     SRC ": vm1: expected a unix socket path under 108 bytes, got \"unix:/aaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...",
     1},
    {"string_in_array", "{\"vm1\": [\"h:1\", \"h:2\", \"h\"]}",
     SRC ": vm1[2]: " STR_PORT ", got \"h\"", 1},

    /* websockify's lines: the line number, and the line or target quoted */
    {"line_no_separator", "# c\nvm1 h:1\n",
     SRC ":2: expected \"token: host:port\", got \"vm1 h:1\"", 1},
    {"line_colon_without_blank", "vm1:h:1",
     SRC ":1: expected \"token: host:port\", got \"vm1:h:1\"", 1},
    {"line_two_separators", "vm1: h: 1",
     SRC ":1: expected \"token: host:port\" (one \": \" only), got \"vm1: h: 1\"", 1},
    {"line_no_port", "vm1: localhost", SRC ":1: " STR_PORT ", got \"localhost\"", 1},
    {"line_bad_port", "\n\nvm1: h:65536\r\n", SRC ":3: " STR_PORT ", got \"h:65536\"", 1},
    {"line_empty_token", ": h:1", SRC ":1: expected a non-empty key, got \": h:1\"", 1},
    {"line_token_slash", "vm/1: h:1",
     SRC ":1: key holds '/': it could never be looked up " REFUSED ", got \"vm/1: h:1\"", 1},
    {"line_v6_without_brackets", "vm1: ::1:5900",
     SRC ":1: expected \"[v6addr]:port\": an IPv6 address needs brackets, got \"::1:5900\"", 1},
    {"line_control_char_quoted", "vm1\x01 h:1",
     SRC ":1: expected \"token: host:port\", got \"vm1\\x01 h:1\"", 1},
    {"line_not_utf8_escaped", "vm\xc3\xa9\xff h:1",
     SRC ":1: expected \"token: host:port\", got \"vm\\xc3\\xa9\\xff h:1\"", 1},
    {"line_long_cut",
     "tokentokentokentokentokentokentokentokentokentokentokentokentokentokentokentokentoken"
     "tokentokentokentokentokentokentokentokentoken",
     /* 120 bytes shown, then "..." */
     SRC ":1: expected \"token: host:port\", got \"tokentokentokentokentokentokentokentokentoken"
         "tokentokentokentokentokentokentokentokentokentokentokentokentokentokentoken...\"",
     1},
    {"line_duplicate", "vm1: a:1\n# again\nvm1: b:2\n",
     SRC ":3: token \"vm1\" is given again (first at " SRC ":1)", 1},
    {"line_every_error", "a b\nc: d\ne: f:0\n", SRC ":3: " STR_PORT ", got \"f:0\"", 3},
};

static void run_error_case(void **state)
{
    const struct error_case *c = *state;
    struct config_errors errs = {0};
    load_bad(c->json, &errs);
    assert_has_line(&errs, c->line);
    if (errs.count != c->count) {
        dump_errors(&errs);
        fail_msg("expected %zu error(s), got %zu", c->count, errs.count);
    }
    config_errors_free(&errs);
}

/* ------------------------------------------------------------- valid maps */

static void test_object_targets(void **state)
{
    (void)state;
    struct target_map *m = load_ok("{\"vm1\": {\"host\": \"10.0.0.5\", \"port\": 5900},"
                                   " \"vm2\": {\"port\": 65535, \"host\": \"kvm2.example\"}}");
    assert_int_equal(target_map_size(m), 2);
    assert_one(m, "vm1", "10.0.0.5", 5900);
    assert_one(m, "vm2", "kvm2.example", 65535);
    target_map_free(m);
}

static void test_string_targets(void **state)
{
    (void)state;
    struct target_map *m = load_ok("{\"vm1\": \"10.0.0.5:5901\", \"vm2\": \"h:1\","
                                   " \"vm3\": \"kvm-3.example.com:05900\"}");
    assert_int_equal(target_map_size(m), 3);
    assert_one(m, "vm1", "10.0.0.5", 5901);
    assert_one(m, "vm2", "h", 1);
    assert_one(m, "vm3", "kvm-3.example.com", 5900);
    target_map_free(m);
}

/* Unix sockets: {"unix": path} or "unix:path", the path kept as the host
 * with port 0; mixed with TCP targets in one array. */
static void test_unix_targets(void **state)
{
    (void)state;
    struct target_map *m =
        load_ok("{\"a\": {\"unix\": \"/run/app.sock\"}, \"b\": \"unix:/tmp/b.sock\","
                " \"c\": [\"unix:/tmp/c1\", \"h:7\", {\"unix\": \"/tmp/c3\"}]}");
    assert_one(m, "a", "/run/app.sock", 0);
    assert_one(m, "b", "/tmp/b.sock", 0);
    size_t n = 0;
    const struct wsg_target *t = target_map_lookup(m, "c", &n);
    assert_int_equal(n, 3);
    assert_true(wsg_target_is_unix(&t[0]));
    assert_string_equal(t[0].host, "/tmp/c1");
    assert_false(wsg_target_is_unix(&t[1]));
    assert_string_equal(t[2].host, "/tmp/c3");
    target_map_free(m);
}

/* The brackets are URL syntax: the stored host is the bare address. */
static void test_ipv6_targets(void **state)
{
    (void)state;
    struct target_map *m = load_ok("{\"a\": \"[::1]:5900\", \"b\": \"[2001:db8::42]:1\","
                                   " \"c\": \"[fe80::1%eth0]:22\", \"d\": \"[::ffff:10.0.0.1]:7\","
                                   " \"e\": {\"host\": \"::1\", \"port\": 8}}");
    assert_one(m, "a", "::1", 5900);
    assert_one(m, "b", "2001:db8::42", 1);
    assert_one(m, "c", "fe80::1%eth0", 22);
    assert_one(m, "d", "::ffff:10.0.0.1", 7);
    assert_one(m, "e", "::1", 8);
    target_map_free(m);
}

static void test_array_targets_keep_order(void **state)
{
    (void)state;
    struct target_map *m = load_ok(
        "{\"vm\": [\"b:1\", {\"host\": \"a\", \"port\": 2}, \"[::1]:3\"], \"one\": [\"x:9\"]}");
    size_t n = 0;
    const struct wsg_target *t = target_map_lookup(m, "vm", &n);
    assert_non_null(t);
    assert_int_equal(n, 3);
    assert_string_equal(t[0].host, "b");
    assert_int_equal(t[0].port, 1);
    assert_string_equal(t[1].host, "a");
    assert_int_equal(t[1].port, 2);
    assert_string_equal(t[2].host, "::1");
    assert_int_equal(t[2].port, 3);
    assert_one(m, "one", "x", 9);
    target_map_free(m);
}

/* Exact byte comparison: no case folding, no prefixes, no normalisation. */
static void test_lookup_hits_and_misses(void **state)
{
    (void)state;
    char long_key[257];
    memset(long_key, 'k', 256);
    long_key[256] = '\0';
    char *text;
    assert_true(asprintf(&text,
                         "{\"vm1\": \"a:1\", \"vm10\": \"b:2\", \"my vm\": \"c:3\", \"a.b\": "
                         "\"d:4\", \"\\u00e9t\\u00e9\": \"e:5\", \"%s\": \"f:6\", \"x\": \"g:7\"}",
                         long_key) > 0);
    struct target_map *m = load_ok(text);
    free(text);
    assert_int_equal(target_map_size(m), 7);
    assert_one(m, "vm1", "a", 1);
    assert_one(m, "vm10", "b", 2);
    assert_one(m, "my vm", "c", 3);
    assert_one(m, "a.b", "d", 4);
    assert_one(m, "\xc3\xa9t\xc3\xa9", "e", 5);
    assert_one(m, long_key, "f", 6);
    assert_one(m, "x", "g", 7);
    assert_miss(m, "VM1");
    assert_miss(m, "vm");
    assert_miss(m, "vm2");
    assert_miss(m, "vm1 ");
    assert_miss(m, "");
    assert_miss(m, "e\xcc\x81t\xc3\xa9"); /* the same word, decomposed: other bytes */
    assert_miss(m, "a");
    assert_miss(m, "zzz");
    assert_miss(m, NULL);
    assert_miss(NULL, "vm1");
    assert_non_null(target_map_lookup(m, "x", NULL)); /* n may be NULL */
    target_map_free(m);
}

static void test_empty_object(void **state)
{
    (void)state;
    struct target_map *m = load_ok("  {}\n");
    assert_int_equal(target_map_size(m), 0);
    assert_miss(m, "vm1");
    assert_miss(m, "");
    target_map_free(m);
}

/* Keys written in a scrambled order, so the lookup cannot lean on the file's. */
static void test_large_map(void **state)
{
    (void)state;
    enum { N = 100000 };
    char *path = write_temp("", 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\n", f);
    for (unsigned i = 0; i < N; i++) {
        unsigned k = (unsigned)(((uint64_t)i * 7919u) % N); /* 7919 is prime: a permutation */
        fprintf(f, "%s\"tok-%06u\": ", i ? ",\n" : "", k);
        if (k % 3 == 0)
            fprintf(f, "\"host%u:%u\"", k, 1 + k % 65535);
        else if (k % 3 == 1)
            fprintf(f, "{\"host\": \"host%u\", \"port\": %u}", k, 1 + k % 65535);
        else
            fprintf(f, "[\"host%u:%u\", \"[::1]:%u\"]", k, 1 + k % 65535, 1 + k % 65535);
    }
    fputs("\n}\n", f);
    assert_int_equal(fclose(f), 0);
    struct config_errors errs = {0};
    struct target_map *m = target_map_load(path, SRC, &errs);
    unlink(path);
    free(path);
    if (!m)
        dump_errors(&errs);
    assert_non_null(m);
    assert_int_equal(errs.count, 0);
    assert_int_equal(target_map_size(m), N);
    for (unsigned k = 0; k < N; k++) {
        char key[32], host[32];
        snprintf(key, sizeof key, "tok-%06u", k);
        snprintf(host, sizeof host, "host%u", k);
        size_t n = 0;
        const struct wsg_target *t = target_map_lookup(m, key, &n);
        assert_non_null(t);
        assert_int_equal(n, k % 3 == 2 ? 2 : 1);
        assert_string_equal(t[0].host, host);
        assert_int_equal(t[0].port, 1 + k % 65535);
    }
    assert_miss(m, "tok-100000");
    assert_miss(m, "tok-");
    assert_miss(m, "tok-0000001");
    assert_miss(m, "tok-00000");
    target_map_free(m);
}

/* ------------------------------------------------------- error collection */

static void test_multiple_errors_reported_together(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    load_bad("{\"vm1\": \"h:0\",\n"
             " \"ok\": \"h:1\",\n"
             " \"vm/2\": {\"host\": \"h\", \"port\": \"x\", \"extra\": 1},\n"
             " \"vm3\": [],\n"
             " \"vm4\": [\"a:1\", {\"port\": 1}, \"[::1]\"]}",
             &errs);
    static const char *const want[] = {
        SRC ": vm1: " STR_PORT ", got \"h:0\"",
        SRC ": [\"vm/2\"]: key holds '/': it could never be looked up " REFUSED,
        SRC ": [\"vm/2\"].extra: unknown key (expected one of: host, port, unix)",
        SRC ": [\"vm/2\"].port: " PORT_EXPECTED ", got \"x\"",
        SRC ": vm3: " VALUE_EXPECTED ", got []",
        SRC ": vm4[1]: missing \"host\"",
        SRC ": vm4[2]: " STR_PORT ", got \"[::1]\"",
    };
    if (errs.count != sizeof want / sizeof want[0])
        dump_errors(&errs);
    assert_int_equal(errs.count, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < errs.count; i++)
        assert_string_equal(errs.lines[i], want[i]); /* in file order */
    config_errors_free(&errs);
}

/* Errors are appended after what the list already holds (map_watch collects
 * several maps' errors in one list). */
static void test_errors_are_appended(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    load_bad("{\"a\": 1}", &errs);
    load_bad("{\"b\": 2}", &errs);
    assert_int_equal(errs.count, 2);
    assert_string_equal(errs.lines[0], SRC ": a: " VALUE_EXPECTED ", got 1");
    assert_string_equal(errs.lines[1], SRC ": b: " VALUE_EXPECTED ", got 2");
    config_errors_free(&errs);
}

/* A systematic mistake in a huge file lists 100 errors, then counts the rest. */
static void test_error_list_is_bounded(void **state)
{
    (void)state;
    size_t cap = 64 * 1024, used = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    used += (size_t)snprintf(text + used, cap - used, "{");
    for (int i = 0; i < 150; i++)
        used += (size_t)snprintf(text + used, cap - used, "%s\"k%03d\": \"h:0\"", i ? "," : "", i);
    snprintf(text + used, cap - used, "}");
    struct config_errors errs = {0};
    load_bad(text, &errs);
    free(text);
    assert_int_equal(errs.count, 101);
    assert_string_equal(errs.lines[0], SRC ": k000: " STR_PORT ", got \"h:0\"");
    assert_string_equal(errs.lines[99], SRC ": k099: " STR_PORT ", got \"h:0\"");
    assert_string_equal(errs.lines[100], SRC ": 50 more errors not listed");
    config_errors_free(&errs);
}

static void test_key_too_long(void **state)
{
    (void)state;
    char key[258], *text, *want;
    memset(key, 'k', 257);
    key[257] = '\0';
    assert_true(asprintf(&text, "{\"%s\": \"h:1\"}", key) > 0);
    /* The path is cut at 255 bytes, ending in "...". */
    assert_true(asprintf(&want,
                         SRC ": %.252s...: expected a key of at most 256 bytes, got 257 bytes",
                         key) > 0);
    struct config_errors errs = {0};
    load_bad(text, &errs);
    assert_has_line(&errs, want);
    assert_int_equal(errs.count, 1);
    config_errors_free(&errs);
    free(text);
    free(want);
}

/* Values echoed after "got" are cut to keep each error one readable line. */
static void test_long_values_are_cut(void **state)
{
    (void)state;
    char host[201], *text, *want;
    memset(host, 'h', 200);
    host[200] = '\0';
    assert_true(asprintf(&text, "{\"vm1\": {\"host\": \"a %s\", \"port\": 1}}", host) > 0);
    assert_true(asprintf(&want, SRC ": vm1.host: " HOST_EXPECTED ", got \"a %.73s...", host) > 0);
    struct config_errors errs = {0};
    load_bad(text, &errs);
    assert_has_line(&errs, want);
    config_errors_free(&errs);
    free(text);
    free(want);
}

/* ------------------------------------------------------------- the file */

static void test_missing_file(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    assert_null(target_map_load("/nonexistent/wsgate/consoles.json", SRC, &errs));
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.lines[0], SRC ": cannot read: No such file or directory");
    config_errors_free(&errs);
}

/* ------------------------------------------------- websockify's formats */

static void test_websockify_lines(void **state)
{
    (void)state;
    struct target_map *m = load_ok("# consoles\n"
                                   "\n"
                                   "vm1: 10.0.0.5:5901\n"
                                   "   # indented comment\n"
                                   "\tvm2:   kvm2.example:5902  \r\n"
                                   "vm3 : h:3\n"       /* blanks before ':' are not the token's */
                                   "a:b: [::1]:5900\n" /* the ':' with a blank after splits */
                                   "tok-with.dots_x:\th:4"); /* no final newline */
    assert_int_equal(target_map_size(m), 5);
    assert_one(m, "vm1", "10.0.0.5", 5901);
    assert_one(m, "vm2", "kvm2.example", 5902);
    assert_one(m, "vm3", "h", 3);
    assert_one(m, "a:b", "::1", 5900);
    assert_one(m, "tok-with.dots_x", "h", 4);
    assert_miss(m, "#");
    target_map_free(m);
}

/* websockify's TokenFile reads "unix_socket:/path" as a unix socket target. */
static void test_websockify_unix_lines(void **state)
{
    (void)state;
    struct target_map *m = load_ok("vm1: unix_socket:/run/vm1.sock\n"
                                   "vm2: unix:/run/vm2.sock\n"
                                   "vm3: h:3\n");
    assert_one(m, "vm1", "/run/vm1.sock", 0);
    assert_one(m, "vm2", "/run/vm2.sock", 0);
    assert_one(m, "vm3", "h", 3);
    target_map_free(m);
    m = load_ok("{\"vm1\": \"unix_socket:/run/vm1.sock\"}");
    assert_one(m, "vm1", "/run/vm1.sock", 0);
    target_map_free(m);
    struct config_errors errs = {0};
    load_bad("vm1: unix_socket:vm1.sock\n", &errs);
    assert_has_line(&errs, SRC ":1: expected an absolute unix socket path (\"/run/app.sock\"), "
                               "got \"unix_socket:vm1.sock\"");
    config_errors_free(&errs);
}

/* An empty token file (or only comments) is a map with no token, as in
 * websockify: every connection gets 404 until tokens are added. */
static void test_websockify_empty(void **state)
{
    (void)state;
    struct target_map *m = load_ok("");
    assert_int_equal(target_map_size(m), 0);
    target_map_free(m);
    m = load_ok("# nothing yet\n\n");
    assert_int_equal(target_map_size(m), 0);
    target_map_free(m);
}

static char *make_dir(void)
{
    const char *dir = getenv("TMPDIR");
    char *path;
    assert_true(asprintf(&path, "%s/wsgate_tmd_XXXXXX", dir && *dir ? dir : "/tmp") > 0);
    assert_non_null(mkdtemp(path));
    return path;
}

static char *put_file(const char *dir, const char *name, const char *text)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* A directory of token files: every regular file, in either format; hidden
 * files (editor swap files) and subdirectories are not read. */
static void test_directory_of_files(void **state)
{
    (void)state;
    char *dir = make_dir(), *sub;
    char *a = put_file(dir, "a.conf", "vm1: h:1\n");
    char *b = put_file(dir, "b", "{\"vm2\": \"h:2\"}");
    char *c = put_file(dir, ".b.swp", "garbage that is not a token file");
    assert_true(asprintf(&sub, "%s/sub", dir) > 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    struct config_errors errs = {0};
    struct target_map *m = target_map_load(dir, "tokens", &errs);
    assert_non_null(m);
    assert_int_equal(errs.count, 0);
    assert_int_equal(target_map_size(m), 2);
    assert_one(m, "vm1", "h", 1);
    assert_one(m, "vm2", "h", 2);
    target_map_free(m);

    /* Errors name the file inside the directory; a token in two files is one. */
    char *d = put_file(dir, "d", "vm1: h:9\nbad line\n");
    assert_null(target_map_load(dir, "tokens", &errs));
    assert_has_line(&errs, "tokens/d:2: expected \"token: host:port\", got \"bad line\"");
    assert_int_equal(errs.count, 1);
    config_errors_free(&errs);
    unlink(d);
    free(d);
    d = put_file(dir, "d", "vm1: h:9\n");
    assert_null(target_map_load(dir, "tokens", &errs));
    assert_has_line(&errs, "tokens/d:1: token \"vm1\" is given again (first at tokens/a.conf:1)");
    assert_int_equal(errs.count, 1);
    config_errors_free(&errs);

    for (char **p = (char *[]){a, b, c, d, NULL}; *p; p++) {
        unlink(*p);
        free(*p);
    }
    rmdir(sub);
    free(sub);
    /* An empty directory is an empty map. */
    m = target_map_load(dir, "tokens", &errs);
    assert_non_null(m);
    assert_int_equal(target_map_size(m), 0);
    target_map_free(m);
    rmdir(dir);
    free(dir);
}

static void test_permission_denied(void **state)
{
    (void)state;
    if (geteuid() == 0)
        skip(); /* root reads any file */
    char *path = write_temp("{}", 2);
    assert_int_equal(chmod(path, 0), 0);
    struct config_errors errs = {0};
    struct target_map *m = target_map_load(path, SRC, &errs);
    unlink(path);
    free(path);
    assert_null(m);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.lines[0], SRC ": cannot read: Permission denied");
    config_errors_free(&errs);
}

/* Without a display name, messages name the path as given. */
static void test_display_name_defaults_to_path(void **state)
{
    (void)state;
    char *path = write_temp("[]", 2), *want;
    struct config_errors errs = {0};
    assert_null(target_map_load(path, NULL, &errs));
    assert_true(asprintf(&want, "%s: expected an object mapping keys to targets, got []", path) >
                0);
    assert_has_line(&errs, want);
    unlink(path);
    free(path);
    free(want);
    config_errors_free(&errs);
}

/* Callers that only want success or failure may pass no error list. */
static void test_null_errors_and_free(void **state)
{
    (void)state;
    char *path = write_temp("{\"a\": 1}", 8);
    assert_null(target_map_load(path, SRC, NULL));
    unlink(path);
    free(path);
    assert_null(target_map_load("/nonexistent/x.json", SRC, NULL));
    target_map_free(NULL);
    assert_int_equal(target_map_size(NULL), 0);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_object_targets),
        cmocka_unit_test(test_string_targets),
        cmocka_unit_test(test_ipv6_targets),
        cmocka_unit_test(test_unix_targets),
        cmocka_unit_test(test_array_targets_keep_order),
        cmocka_unit_test(test_lookup_hits_and_misses),
        cmocka_unit_test(test_empty_object),
        cmocka_unit_test(test_large_map),
        cmocka_unit_test(test_multiple_errors_reported_together),
        cmocka_unit_test(test_errors_are_appended),
        cmocka_unit_test(test_error_list_is_bounded),
        cmocka_unit_test(test_key_too_long),
        cmocka_unit_test(test_long_values_are_cut),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_websockify_lines),
        cmocka_unit_test(test_websockify_empty),
        cmocka_unit_test(test_websockify_unix_lines),
        cmocka_unit_test(test_directory_of_files),
        cmocka_unit_test(test_permission_denied),
        cmocka_unit_test(test_display_name_defaults_to_path),
        cmocka_unit_test(test_null_errors_and_free),
    };
    enum {
        N_FIXED = sizeof fixed / sizeof fixed[0],
        N_CASES = sizeof error_cases / sizeof error_cases[0]
    };
    /* One cmocka test per error path, named after the case. */
    static struct CMUnitTest tests[N_FIXED + N_CASES];
    memcpy(tests, fixed, sizeof fixed);
    for (size_t i = 0; i < N_CASES; i++) {
        tests[N_FIXED + i] = (struct CMUnitTest){
            .name = error_cases[i].name,
            .test_func = run_error_case,
            .initial_state = (void *)&error_cases[i],
        };
    }
    return _cmocka_run_group_tests("target_map", tests, N_FIXED + N_CASES, NULL, NULL);
}

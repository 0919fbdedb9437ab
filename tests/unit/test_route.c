/* test_route.c - cmocka tests for route.c: pattern and template validation,
 * request matching (order, decoding, refusals, trailing slash) and template
 * expansion. Configs are built by hand, without the config loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "route.h"

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle));                           \
    } while (0)

#define MAX_TEST_ROUTES 8

/* One hand-built config and its table, per test. */
struct fixture {
    struct wsg_config cfg;
    struct wsg_route routes[MAX_TEST_ROUTES];
    struct route_table *table;
    struct route_match m;
    char reason[300];
};

static struct fixture *fixture_new(const char *const *paths, size_t n)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    assert_true(n <= MAX_TEST_ROUTES);
    for (size_t i = 0; i < n; i++) {
        f->routes[i].path = (char *)paths[i];
        f->routes[i].name = (char *)paths[i];
    }
    f->cfg.routes = f->routes;
    f->cfg.n_routes = n;
    f->table = route_table_create(&f->cfg);
    assert_non_null(f->table);
    return f;
}

static void fixture_free(struct fixture *f)
{
    route_match_clear(&f->m);
    route_table_destroy(f->table);
    test_free(f);
}

static enum route_status match(struct fixture *f, const char *uri)
{
    route_match_clear(&f->m);
    f->reason[0] = '\0';
    return route_table_match(f->table, uri, &f->m, f->reason, sizeof(f->reason));
}

static const char *capture(const struct route_match *m, const char *name)
{
    for (size_t i = 0; i < m->n_captures; i++)
        if (strcmp(m->captures[i].name, name) == 0)
            return m->captures[i].value;
    return NULL;
}

static const char *const devices_routes[] = {
    "/echo", "/devices/{device}", "/devices/special", "/{any}/x", "/devices/{device}/cmd",
};
#define N_DEVICES_ROUTES (sizeof(devices_routes) / sizeof(devices_routes[0]))

/* ------------------------------------------------------------- matching */

static void test_first_match_wins_in_order(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);

    assert_int_equal(match(f, "/echo"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 0);
    assert_ptr_equal(f->m.route, &f->routes[0]);
    assert_int_equal(f->m.n_captures, 0);

    /* "/devices/special" is listed after the capture route, so it never wins. */
    assert_int_equal(match(f, "/devices/special"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 1);
    assert_string_equal(capture(&f->m, "device"), "special");

    assert_int_equal(match(f, "/other/x"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 3);
    assert_string_equal(f->m.captures[0].name, "any");
    assert_string_equal(f->m.captures[0].value, "other");

    /* "/devices/x" has the shape of routes 1 and not 3; route 1 comes first. */
    assert_int_equal(match(f, "/devices/x"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 1);

    assert_int_equal(match(f, "/devices/d7/cmd"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 4);
    assert_string_equal(capture(&f->m, "device"), "d7");
    fixture_free(f);
}

/* "**" as the last segment takes the rest of the path: websockify's one
 * route for every path is "/" followed by "**". */
static void test_rest_pattern(void **state)
{
    (void)state;
    static const char *const paths[] = {"/echo", "/vnc/**", "/**"};
    struct fixture *f = fixture_new(paths, 3);
    assert_int_equal(match(f, "/echo"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 0);
    assert_int_equal(match(f, "/vnc"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 1);
    assert_int_equal(match(f, "/vnc/"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 1);
    assert_int_equal(match(f, "/vnc/a/b?token=x"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 1);
    assert_string_equal(f->m.query, "token=x");
    assert_int_equal(match(f, "/vncx"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 2);
    assert_int_equal(match(f, "/"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 2);
    assert_int_equal(match(f, "/websockify?token=a%2Bb"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 2);
    assert_int_equal(match(f, "/echo/more"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 2);
    assert_int_equal(f->m.n_captures, 0);
    fixture_free(f);

    char err[200];
    assert_int_equal(route_pattern_validate("/**", err, sizeof(err)), 0);
    assert_int_equal(route_pattern_validate("/a/{b}/**", err, sizeof(err)), 0);
    assert_int_equal(route_pattern_validate("/**/a", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "last segment"));
    /* Only a whole segment: "a**" stays a literal. */
    assert_int_equal(route_pattern_validate("/a**", err, sizeof(err)), 0);
}

static void test_literal_route_before_capture_route(void **state)
{
    (void)state;
    static const char *const paths[] = {"/devices/special", "/devices/{device}"};
    struct fixture *f = fixture_new(paths, 2);
    assert_int_equal(match(f, "/devices/special"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 0);
    assert_int_equal(f->m.n_captures, 0);
    assert_int_equal(match(f, "/devices/other"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 1);
    fixture_free(f);
}

static void test_several_captures_in_order(void **state)
{
    (void)state;
    static const char *const paths[] = {"/t/{tenant}/d/{device}"};
    struct fixture *f = fixture_new(paths, 1);
    assert_int_equal(match(f, "/t/acme/d/42"), ROUTE_OK);
    assert_int_equal(f->m.n_captures, 2);
    assert_string_equal(f->m.captures[0].name, "tenant");
    assert_string_equal(f->m.captures[0].value, "acme");
    assert_string_equal(f->m.captures[1].name, "device");
    assert_string_equal(f->m.captures[1].value, "42");
    fixture_free(f);
}

static void test_captures_and_literals_are_decoded(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);

    assert_int_equal(match(f, "/devices/a%20b%C3%a9"), ROUTE_OK);
    assert_string_equal(capture(&f->m, "device"), "a b\xc3\xa9");

    /* Literal segments compare after decoding too. */
    assert_int_equal(match(f, "/ech%6F"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 0);

    /* Decoded once only: "%2541" is "%41", not "A". */
    assert_int_equal(match(f, "/devices/%2541"), ROUTE_OK);
    assert_string_equal(capture(&f->m, "device"), "%41");
    fixture_free(f);
}

static void test_query_ignored_for_matching_and_kept(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);

    assert_int_equal(match(f, "/devices/d1?token=abc&x=%2F"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 1);
    assert_string_equal(capture(&f->m, "device"), "d1");
    assert_string_equal(f->m.query, "token=abc&x=%2F"); /* raw */

    assert_int_equal(match(f, "/echo"), ROUTE_OK);
    assert_null(f->m.query);

    assert_int_equal(match(f, "/echo?"), ROUTE_OK);
    assert_non_null(f->m.query);
    assert_string_equal(f->m.query, "");

    /* A query that looks like a path changes nothing. */
    assert_int_equal(match(f, "/echo?/devices/x"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 0);

    /* A fragment is dropped, from the path and from the query. */
    assert_int_equal(match(f, "/echo#frag"), ROUTE_OK);
    assert_null(f->m.query);
    assert_int_equal(match(f, "/echo?a=1#frag"), ROUTE_OK);
    assert_string_equal(f->m.query, "a=1");
    fixture_free(f);
}

static void test_no_route_is_404(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);

    assert_int_equal(match(f, "/nope"), ROUTE_NOT_FOUND);
    assert_string_equal(f->reason, "no route for /nope");
    assert_int_equal(f->m.n_captures, 0);
    assert_null(f->m.route);
    assert_null(f->m.query);

    assert_int_equal(match(f, "/echo/y"), ROUTE_NOT_FOUND);
    assert_int_equal(match(f, "/echox"), ROUTE_NOT_FOUND);
    assert_int_equal(match(f, "/devices"), ROUTE_NOT_FOUND);
    assert_int_equal(match(f, "/devices/a/b/c"), ROUTE_NOT_FOUND);
    assert_int_equal(match(f, "/"), ROUTE_NOT_FOUND);
    assert_int_equal(match(f, "/ECHO"), ROUTE_NOT_FOUND); /* case matters */

    /* The reason names the path, not the query. */
    assert_int_equal(match(f, "/nope?secret=1"), ROUTE_NOT_FOUND);
    assert_string_equal(f->reason, "no route for /nope");

    /* Very many segments: no pattern can be that long. */
    char deep[400] = "";
    for (int i = 0; i < 60; i++)
        strcat(deep, "/a");
    assert_int_equal(match(f, deep), ROUTE_NOT_FOUND);
    assert_contains(f->reason, "no route for /a/a");
    fixture_free(f);
}

static void test_refused_captures_are_400(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    static const char *const bad[] = {
        "/devices/a+b",   "/devices/+",   "/devices/%2B",   "/devices/%2b",  "/devices/%23",
        "/devices/a%23b", "/devices/%2F", "/devices/a%2fb", "/devices/%00",  "/devices/a%00b",
        "/devices/",      "/devices/#",   "/devices/?x=1",  "/devices//cmd", "/devices/%2B/cmd",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum route_status st = match(f, bad[i]);
        if (st != ROUTE_BAD_REQUEST)
            fail_msg("%s: expected 400, got status %d", bad[i], (int)st);
        assert_string_equal(f->reason,
                            "capture \"device\" may not be empty or hold '+', '#', '/' or NUL");
        assert_int_equal(f->m.n_captures, 0);
        assert_null(f->m.route);
        assert_null(f->m.query);
    }
    fixture_free(f);
}

static void test_refused_capture_does_not_fall_through(void **state)
{
    (void)state;
    /* "/devices/" has the shape of route 0 (an empty capture) and, by the
     * trailing-slash rule, of route 1; "/x/%2B" has the shape of routes 2 and
     * 3. Route order decides, and a refusal stops the search. */
    static const char *const paths[] = {"/devices/{device}", "/devices", "/x/{id}", "/{a}/{b}"};
    struct fixture *f = fixture_new(paths, 4);

    assert_int_equal(match(f, "/devices/"), ROUTE_BAD_REQUEST);
    assert_contains(f->reason, "capture \"device\"");
    assert_int_equal(match(f, "/x/%2B"), ROUTE_BAD_REQUEST);
    assert_contains(f->reason, "capture \"id\"");
    assert_int_equal(match(f, "/x/%23"), ROUTE_BAD_REQUEST);
    assert_contains(f->reason, "capture \"id\"");

    /* The later routes are reachable when the earlier ones lack the shape. */
    assert_int_equal(match(f, "/devices"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 1);
    assert_int_equal(match(f, "/y/z"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 3);
    fixture_free(f);
}

static void test_bad_percent_encoding_is_400(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    static const char *const bad[] = {
        "/devices/%zz", "/devices/%4", "/devices/%", "/devices/%g0",
        "/devices/a%2", "/ech%zz",     "/%/x",       "/devices/%%41",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum route_status st = match(f, bad[i]);
        if (st != ROUTE_BAD_REQUEST)
            fail_msg("%s: expected 400, got status %d", bad[i], (int)st);
        assert_contains(f->reason, "percent-encoding");
    }
    /* A bad escape in the query is not the matcher's business. */
    assert_int_equal(match(f, "/echo?x=%zz"), ROUTE_OK);
    fixture_free(f);
}

static void test_trailing_slash(void **state)
{
    (void)state;
    static const char *const paths[] = {"/echo", "/devices/{device}", "/"};
    struct fixture *f = fixture_new(paths, 3);

    /* One trailing slash is forgiven... */
    assert_int_equal(match(f, "/echo/"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 0);
    assert_int_equal(match(f, "/echo/?a=b"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 0);
    assert_string_equal(f->m.query, "a=b");
    assert_int_equal(match(f, "/devices/d1/"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 1);
    assert_string_equal(capture(&f->m, "device"), "d1");

    /* ...two are not. */
    assert_int_equal(match(f, "/echo//"), ROUTE_NOT_FOUND);
    assert_int_equal(match(f, "/devices/d1//"), ROUTE_NOT_FOUND);

    /* "/" matches only "/". */
    assert_int_equal(match(f, "/"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 2);
    assert_int_equal(match(f, "/?x=1"), ROUTE_OK);
    assert_int_equal(f->m.route_index, 2);
    assert_int_equal(match(f, "//"), ROUTE_NOT_FOUND);
    assert_int_equal(match(f, "/other"), ROUTE_NOT_FOUND);
    fixture_free(f);
}

static void test_bad_request_targets(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    assert_int_equal(match(f, ""), ROUTE_BAD_REQUEST);
    assert_int_equal(match(f, "echo"), ROUTE_BAD_REQUEST);
    assert_contains(f->reason, "must start with");
    assert_int_equal(match(f, "?x=1"), ROUTE_BAD_REQUEST);
    assert_int_equal(match(f, "http://host/echo"), ROUTE_BAD_REQUEST);

    static char big[20000];
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    assert_int_equal(match(f, big), ROUTE_BAD_REQUEST);
    assert_contains(f->reason, "too long");

    /* Long, but within bounds, is fine; the 404 reason stays short. */
    static char longish[4000];
    memset(longish, 'b', sizeof(longish) - 1);
    longish[0] = '/';
    assert_int_equal(match(f, longish), ROUTE_NOT_FOUND);
    assert_true(strlen(f->reason) < 250);
    assert_contains(f->reason, "...");
    fixture_free(f);
}

static void test_unprintable_path_in_reason(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    assert_int_equal(match(f, "/a\x01\x7f\xff"), ROUTE_NOT_FOUND);
    assert_string_equal(f->reason, "no route for /a???");
    fixture_free(f);
}

static void test_table_create(void **state)
{
    (void)state;
    struct wsg_route routes[2];
    struct wsg_config cfg;
    memset(routes, 0, sizeof(routes));
    memset(&cfg, 0, sizeof(cfg));

    /* No routes: a table that finds nothing. */
    struct route_table *t = route_table_create(&cfg);
    assert_non_null(t);
    struct route_match m;
    char reason[100];
    assert_int_equal(route_table_match(t, "/x", &m, reason, sizeof(reason)), ROUTE_NOT_FOUND);
    route_table_destroy(t);

    /* A path the validator refuses, or none at all, makes no table. */
    routes[0].path = "/ok";
    routes[1].path = "/bad/{x";
    cfg.routes = routes;
    cfg.n_routes = 2;
    assert_null(route_table_create(&cfg));
    routes[1].path = NULL;
    assert_null(route_table_create(&cfg));
    assert_null(route_table_create(NULL));
    route_table_destroy(NULL);
}

static void test_match_clear_is_idempotent(void **state)
{
    (void)state;
    struct route_match m;
    memset(&m, 0, sizeof(m));
    route_match_clear(&m);
    route_match_clear(&m);
    route_match_clear(NULL);

    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    assert_int_equal(match(f, "/devices/d1/cmd?q=1"), ROUTE_OK);
    route_match_clear(&f->m);
    assert_int_equal(f->m.n_captures, 0);
    assert_null(f->m.query);
    assert_null(f->m.route);
    route_match_clear(&f->m);
    fixture_free(f);
}

/* ----------------------------------------------------------- expansion */

struct lookup_ctx {
    const char *name; /* the placeholder text answered */
    const char *value;
    int calls;
};

static const char *lookup_one(void *ctx, const char *name)
{
    struct lookup_ctx *l = ctx;
    l->calls++;
    return strcmp(name, l->name) == 0 ? l->value : NULL;
}

static void test_expand_captures_and_literals(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    char out[64], err[200];
    assert_int_equal(match(f, "/devices/a%20b"), ROUTE_OK);

    int n =
        route_expand("devices/{device}/cmd", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err));
    assert_int_equal(n, (int)strlen("devices/a b/cmd"));
    assert_string_equal(out, "devices/a b/cmd");

    assert_int_equal(
        route_expand("plain/topic", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), 11);
    assert_string_equal(out, "plain/topic");

    assert_int_equal(route_expand("", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "");

    assert_int_equal(
        route_expand("{device}{device}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), 6);
    assert_string_equal(out, "a ba b");

    /* A capture the route does not have. */
    assert_int_equal(
        route_expand("x/{nope}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), -1);
    assert_string_equal(err, "missing value for {nope}");
    assert_string_equal(out, "");
    fixture_free(f);
}

static void test_expand_query(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    char out[64], err[200];
    assert_int_equal(match(f, "/echo?a=1&token=ab%20c&token=zz&t%6Fk=k&flag&e=&plus=a+b"
                              "&slash=a%2Fb&hash=%23&nul=%00&bad=%4&long=%41%42%43"),
                     ROUTE_OK);

    /* Decoded; the first occurrence wins. */
    assert_int_equal(
        route_expand("k/{query.token}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), 6);
    assert_string_equal(out, "k/ab c");
    assert_int_equal(
        route_expand("{query.long}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), 3);
    assert_string_equal(out, "ABC");
    /* Names are decoded too. */
    assert_int_equal(
        route_expand("{query.tok}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), 1);
    assert_string_equal(out, "k");

    static const char *const refused[] = {"{query.flag}",  "{query.e}",    "{query.plus}",
                                          "{query.slash}", "{query.hash}", "{query.nul}"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        err[0] = '\0';
        if (route_expand(refused[i], &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)) != -1)
            fail_msg("%s: expanded to \"%s\"", refused[i], out);
        assert_contains(err, "may not be empty or hold '+', '#', '/' or NUL");
        assert_contains(err, refused[i]);
        assert_string_equal(out, "");
    }

    assert_int_equal(
        route_expand("{query.bad}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), -1);
    assert_contains(err, "percent-encoding");
    assert_int_equal(
        route_expand("{query.nope}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), -1);
    assert_string_equal(err, "missing value for {query.nope}");
    /* A prefix of a name is not the name. */
    assert_int_equal(
        route_expand("{query.toke}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), -1);

    /* No query at all. */
    assert_int_equal(match(f, "/echo"), ROUTE_OK);
    assert_int_equal(
        route_expand("{query.token}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), -1);
    assert_string_equal(err, "missing value for {query.token}");
    fixture_free(f);
}

static void test_expand_lookup(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    char out[64], err[200];
    assert_int_equal(match(f, "/devices/d1"), ROUTE_OK);

    struct lookup_ctx l = {"jwt.sub", "alice", 0};
    assert_int_equal(route_expand("users/{jwt.sub}/{device}", &f->m, lookup_one, &l, out,
                                  sizeof(out), err, sizeof(err)),
                     (int)strlen("users/alice/d1"));
    assert_string_equal(out, "users/alice/d1");
    assert_int_equal(l.calls, 1);

    /* Captures and query parameters never go to the callback. */
    l.calls = 0;
    assert_int_equal(route_expand("{device}/{query.x}", &f->m, lookup_one, &l, out, sizeof(out),
                                  err, sizeof(err)),
                     -1);
    assert_int_equal(l.calls, 0);

    struct lookup_ctx msg = {"msg./a/b", "telemetry", 0};
    assert_int_equal(
        route_expand("d/{msg./a/b}", &f->m, lookup_one, &msg, out, sizeof(out), err, sizeof(err)),
        11);
    assert_string_equal(out, "d/telemetry");

    /* Absent: no callback, or the callback has no answer. */
    assert_int_equal(
        route_expand("users/{jwt.sub}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), -1);
    assert_string_equal(err, "missing value for {jwt.sub}");
    assert_int_equal(route_expand("users/{jwt.email}", &f->m, lookup_one, &l, out, sizeof(out), err,
                                  sizeof(err)),
                     -1);
    assert_string_equal(err, "missing value for {jwt.email}");

    /* Looked-up values obey the same rules. */
    static const char *const unsafe[] = {"a/b", "+", "#", "x#", ""};
    for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
        struct lookup_ctx u = {"jwt.sub", unsafe[i], 0};
        if (route_expand("users/{jwt.sub}", &f->m, lookup_one, &u, out, sizeof(out), err,
                         sizeof(err)) != -1)
            fail_msg("value \"%s\" was accepted: \"%s\"", unsafe[i], out);
        assert_string_equal(err,
                            "value of {jwt.sub} may not be empty or hold '+', '#', '/' or NUL");
        assert_string_equal(out, "");
    }
    fixture_free(f);
}

static void test_expand_refuses_unsafe_capture_in_hand_built_match(void **state)
{
    (void)state;
    /* route_table_match never yields these, but route_expand checks anyway. */
    struct route_match m;
    struct route_capture cap = {.name = "device", .value = "a/#"};
    memset(&m, 0, sizeof(m));
    m.captures = &cap;
    m.n_captures = 1;
    char out[64], err[200];
    assert_int_equal(route_expand("d/{device}", &m, NULL, NULL, out, sizeof(out), err, sizeof(err)),
                     -1);
    assert_contains(err, "value of {device} may not be empty");
    assert_int_equal(
        route_expand("d/{device}", NULL, NULL, NULL, out, sizeof(out), err, sizeof(err)), -1);
    assert_string_equal(err, "missing value for {device}");
}

static void test_expand_too_long(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    char out[16], err[200];
    assert_int_equal(match(f, "/devices/0123456789?q=abcdef"), ROUTE_OK);

    /* Exactly fits: 15 bytes and the NUL. */
    assert_int_equal(
        route_expand("d/{device}/xy", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), 15);
    assert_string_equal(out, "d/0123456789/xy");
    /* One more byte does not. */
    assert_int_equal(
        route_expand("d/{device}/xyz", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), -1);
    assert_contains(err, "longer than 15 bytes");
    assert_string_equal(out, "");
    /* Overflow inside a value, from a capture and from a query parameter. */
    assert_int_equal(
        route_expand("abcdefgh{device}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)),
        -1);
    assert_contains(err, "longer than");
    assert_int_equal(
        route_expand("0123456789{query.q}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)),
        -1);
    assert_contains(err, "longer than");
    assert_string_equal(out, "");
    assert_int_equal(
        route_expand("012345678{query.q}", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)),
        15);
    assert_string_equal(out, "012345678abcdef");
    /* Literal text alone. */
    assert_int_equal(
        route_expand("0123456789abcdefg", &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)),
        -1);
    /* No room at all. */
    assert_int_equal(route_expand("x", &f->m, NULL, NULL, out, 0, err, sizeof(err)), -1);
    assert_int_equal(route_expand("x", &f->m, NULL, NULL, out, 1, err, sizeof(err)), -1);
    assert_int_equal(route_expand("", &f->m, NULL, NULL, out, 1, err, sizeof(err)), 0);
    fixture_free(f);
}

static void test_expand_syntax_errors_fail_safely(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(devices_routes, N_DEVICES_ROUTES);
    char out[64], err[200];
    assert_int_equal(match(f, "/devices/d1?q=1"), ROUTE_OK);
    static const struct {
        const char *tmpl, *msg;
    } cases[] = {
        {"a/{device", "unclosed \"{\" at offset 2"},
        {"a/{{device}", "unclosed \"{\" at offset 2"},
        {"a/device}", "\"}\" without \"{\" at offset 8"},
        {"a/{}", "empty placeholder {}"},
        {"{query.}", "{query.} needs a parameter name"},
        {"{msg.kind}", "must start with \"/\""},
        {"{x.y}", "unknown placeholder {x.y}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        strcpy(out, "junk");
        err[0] = '\0';
        assert_int_equal(
            route_expand(cases[i].tmpl, &f->m, NULL, NULL, out, sizeof(out), err, sizeof(err)), -1);
        assert_contains(err, cases[i].msg);
        assert_string_equal(out, "");
    }
    fixture_free(f);
}

/* ----------------------------------------------------------- validation */

static void test_pattern_validate(void **state)
{
    (void)state;
    char err[256];
    static const char *const good[] = {
        "/",
        "/echo",
        "/devices/{device}",
        "/t/{tenant}/d/{device_2}/cmd",
        "/a-b.c~d/e:f@g",
        "/caf\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err[0] = '\0';
        if (route_pattern_validate(good[i], err, sizeof(err)) != 0)
            fail_msg("%s refused: %s", good[i], err);
    }

    static const struct {
        const char *pattern, *msg;
    } bad[] = {
        {"", "must start with \"/\""},
        {"vnc", "must start with \"/\""},
        {"/a{b}", "segment \"a{b}\" mixes text and a capture"},
        {"/{a}b", "segment \"{a}b\" mixes text and a capture"},
        {"/{a}{b}", "mixes text and a capture"},
        {"/a}", "mixes text and a capture"},
        {"/{a", "unclosed \"{\" in segment \"{a\""},
        {"/{}", "empty capture"},
        {"/{de-v}", "capture name \"de-v\" may hold only A-Z, a-z, 0-9 and \"_\""},
        {"/{a}/x/{a}", "capture {a} appears twice"},
        {"/a//b", "empty segment"},
        {"/echo/", "may not end with \"/\" (\"/echo\" also matches \"/echo/\")"},
        {"/a?b", "\"?\" is not allowed"},
        {"/a#b", "\"#\" is not allowed"},
        {"/a%20b", "\"%\" is not allowed"},
        {"/a b", "byte 0x20 is not allowed"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(err, "unchanged");
        assert_int_equal(route_pattern_validate(bad[i].pattern, err, sizeof(err)), -1);
        assert_contains(err, bad[i].msg);
    }
    assert_int_equal(route_pattern_validate(NULL, err, sizeof(err)), -1);
    /* A tiny or absent error buffer is fine. */
    assert_int_equal(route_pattern_validate("x", NULL, 0), -1);
    char tiny[4];
    assert_int_equal(route_pattern_validate("x", tiny, sizeof(tiny)), -1);
    assert_int_equal(strlen(tiny), 3);
}

static void test_pattern_validate_bounds(void **state)
{
    (void)state;
    char p[4096], err[256];

    p[0] = '\0';
    for (int i = 0; i < ROUTE_MAX_CAPTURES; i++)
        sprintf(p + strlen(p), "/{c%d}", i);
    assert_int_equal(route_pattern_validate(p, err, sizeof(err)), 0);
    strcat(p, "/{one_more}");
    assert_int_equal(route_pattern_validate(p, err, sizeof(err)), -1);
    assert_contains(err, "at most 16 captures");

    p[0] = '\0';
    for (int i = 0; i < 32; i++)
        strcat(p, "/s");
    assert_int_equal(route_pattern_validate(p, err, sizeof(err)), 0);
    strcat(p, "/s");
    assert_int_equal(route_pattern_validate(p, err, sizeof(err)), -1);
    assert_contains(err, "at most 32 segments");

    memset(p, 'a', 2000);
    p[0] = '/';
    p[2000] = '\0';
    assert_int_equal(route_pattern_validate(p, err, sizeof(err)), -1);
    assert_contains(err, "longer than");
}

static void test_deepest_pattern_matches(void **state)
{
    (void)state;
    static char deep[200];
    deep[0] = '\0';
    for (int i = 0; i < 31; i++)
        strcat(deep, "/s");
    strcat(deep, "/{last}");
    const char *paths[] = {deep};
    struct fixture *f = fixture_new(paths, 1);
    char uri[200] = "";
    for (int i = 0; i < 31; i++)
        strcat(uri, "/s");
    strcat(uri, "/v");
    assert_int_equal(match(f, uri), ROUTE_OK);
    assert_string_equal(capture(&f->m, "last"), "v");
    strcat(uri, "/");
    assert_int_equal(match(f, uri), ROUTE_OK);
    strcat(uri, "x");
    assert_int_equal(match(f, uri), ROUTE_NOT_FOUND);
    fixture_free(f);
}

static void test_template_validate(void **state)
{
    (void)state;
    char err[256];
    const int all = ROUTE_TMPL_QUERY | ROUTE_TMPL_JWT | ROUTE_TMPL_MSG;

    static const char *const good[] = {
        "",
        "plain/topic",
        "devices/{device}/cmd",
        "{query.token}",
        "users/{jwt.sub}/+",
        "a/{msg./kind}/{msg./a~1b/c~0d}",
        "{query.a-b.c~d_e}",
        "{device}{device}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err[0] = '\0';
        if (route_template_validate(good[i], "/devices/{device}", all, err, sizeof(err)) != 0)
            fail_msg("%s refused: %s", good[i], err);
    }

    static const struct {
        const char *tmpl, *path;
        int kinds;
        const char *msg;
    } bad[] = {
        {"a/{devcie}", "/devices/{device}", 0,
         "unknown placeholder {devcie}: the path \"/devices/{device}\" captures: device"},
        {"{x}", "/t/{tenant}/d/{device}", 0,
         "the path \"/t/{tenant}/d/{device}\" captures: tenant, device"},
        {"{x}", "/echo", all, "unknown placeholder {x}: the path \"/echo\" captures nothing"},
        {"users/{jwt.sub}", "/x", ROUTE_TMPL_QUERY | ROUTE_TMPL_MSG,
         "{jwt.sub} is not allowed here"},
        {"{query.t}", "/x", ROUTE_TMPL_JWT, "{query.t} is not allowed here"},
        {"{msg./t}", "/x", ROUTE_TMPL_QUERY | ROUTE_TMPL_JWT, "{msg./t} is not allowed here"},
        {"{msg.kind}", "/x", all, "{msg.kind}: the JSON pointer must start with \"/\""},
        {"{msg.}", "/x", all, "must start with \"/\""},
        {"{msg./a~2}", "/x", all, "\"~\" must be followed by 0 or 1"},
        {"{msg./a~}", "/x", all, "\"~\" must be followed by 0 or 1"},
        {"{query.}", "/x", all, "{query.} needs a parameter name"},
        {"{query.a b}", "/x", all, "a query parameter name may hold only"},
        {"{jwt.}", "/x", all, "{jwt.} needs a claim name"},
        {"{jwt.a/b}", "/x", all, "a claim name may hold only"},
        {"{foo.bar}", "/x", all, "unknown placeholder {foo.bar}"},
        {"{}", "/x", all, "empty placeholder {}"},
        {"a/{device", "/devices/{device}", all, "unclosed \"{\" at offset 2"},
        {"{{device}}", "/devices/{device}", all, "unclosed \"{\" at offset 0"},
        {"a}", "/x", all, "\"}\" without \"{\" at offset 1"},
        {"{device}", "/bad/{x", all, "unclosed \"{\" in segment"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(err, "unchanged");
        if (route_template_validate(bad[i].tmpl, bad[i].path, bad[i].kinds, err, sizeof(err)) != -1)
            fail_msg("%s accepted", bad[i].tmpl);
        assert_contains(err, bad[i].msg);
    }

    /* Over-long placeholders are refused rather than copied. */
    char big[600] = "{jwt.";
    memset(big + 5, 'a', 400);
    strcpy(big + 405, "}");
    assert_int_equal(route_template_validate(big, "/x", all, err, sizeof(err)), -1);
    assert_contains(err, "longer than");
}

static void test_value_is_safe(void **state)
{
    (void)state;
    assert_true(route_value_is_safe("abc", 3));
    assert_true(route_value_is_safe("a b-c.d", 7));
    assert_true(route_value_is_safe("\xc3\xa9", 2));
    assert_false(route_value_is_safe("", 0));
    assert_false(route_value_is_safe(NULL, 0));
    assert_false(route_value_is_safe("a+b", 3));
    assert_false(route_value_is_safe("a#", 2));
    assert_false(route_value_is_safe("/", 1));
    assert_false(route_value_is_safe("a\0b", 3));
    /* `len` is what counts: the NUL lies beyond it here. */
    assert_true(route_value_is_safe("ab\0", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_match_wins_in_order),
        cmocka_unit_test(test_literal_route_before_capture_route),
        cmocka_unit_test(test_several_captures_in_order),
        cmocka_unit_test(test_captures_and_literals_are_decoded),
        cmocka_unit_test(test_query_ignored_for_matching_and_kept),
        cmocka_unit_test(test_no_route_is_404),
        cmocka_unit_test(test_refused_captures_are_400),
        cmocka_unit_test(test_refused_capture_does_not_fall_through),
        cmocka_unit_test(test_bad_percent_encoding_is_400),
        cmocka_unit_test(test_trailing_slash),
        cmocka_unit_test(test_bad_request_targets),
        cmocka_unit_test(test_unprintable_path_in_reason),
        cmocka_unit_test(test_table_create),
        cmocka_unit_test(test_match_clear_is_idempotent),
        cmocka_unit_test(test_expand_captures_and_literals),
        cmocka_unit_test(test_expand_query),
        cmocka_unit_test(test_expand_lookup),
        cmocka_unit_test(test_expand_refuses_unsafe_capture_in_hand_built_match),
        cmocka_unit_test(test_expand_too_long),
        cmocka_unit_test(test_expand_syntax_errors_fail_safely),
        cmocka_unit_test(test_pattern_validate),
        cmocka_unit_test(test_pattern_validate_bounds),
        cmocka_unit_test(test_deepest_pattern_matches),
        cmocka_unit_test(test_template_validate),
        cmocka_unit_test(test_value_is_safe),
        cmocka_unit_test(test_rest_pattern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

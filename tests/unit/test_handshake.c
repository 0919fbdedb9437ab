/* test_handshake.c - subprotocol choice and Origin checks (handshake.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "config.h"
#include "handshake.h"

static struct wsg_route make_route(char **subprotocols, size_t n, bool required)
{
    struct wsg_route r;
    memset(&r, 0, sizeof(r));
    r.name = "vnc";
    r.path = "/vnc";
    r.subprotocols = subprotocols;
    r.n_subprotocols = n;
    r.require_subprotocol = required;
    return r;
}

static enum subprotocol_result choose(const struct wsg_route *r, const char *offer, char *out,
                                      char *reason)
{
    return handshake_choose_subprotocol(r, offer, out, 64, reason, 256);
}

static void test_route_preference_wins(void **state)
{
    (void)state;
    char *names[] = {"binary", "base64"};
    struct wsg_route r = make_route(names, 2, false);
    char out[64], reason[256];
    assert_int_equal(choose(&r, "base64, binary", out, reason), SUBPROTOCOL_SELECTED);
    assert_string_equal(out, "binary");
    assert_int_equal(choose(&r, "base64", out, reason), SUBPROTOCOL_SELECTED);
    assert_string_equal(out, "base64");
}

static void test_unlisted_names_never_chosen(void **state)
{
    (void)state;
    char *names[] = {"binary"};
    struct wsg_route r = make_route(names, 1, false);
    char out[64], reason[256];
    assert_int_equal(choose(&r, "foo,  binary ", out, reason), SUBPROTOCOL_SELECTED);
    assert_string_equal(out, "binary");
    assert_int_equal(choose(&r, "http, mqtt", out, reason), SUBPROTOCOL_REFUSED);
    assert_non_null(strstr(reason, "route vnc accepts subprotocols: binary"));
    /* a name must match whole, not as a prefix */
    assert_int_equal(choose(&r, "binaryx, bin", out, reason), SUBPROTOCOL_REFUSED);
}

static void test_no_offer(void **state)
{
    (void)state;
    char *names[] = {"binary"};
    struct wsg_route r = make_route(names, 1, false);
    char out[64], reason[256];
    assert_int_equal(choose(&r, NULL, out, reason), SUBPROTOCOL_NONE);
    assert_int_equal(choose(&r, "", out, reason), SUBPROTOCOL_NONE);
    assert_string_equal(out, "");
    r.require_subprotocol = true;
    assert_int_equal(choose(&r, NULL, out, reason), SUBPROTOCOL_REFUSED);
    assert_non_null(strstr(reason, "binary"));
}

static void test_route_without_subprotocols(void **state)
{
    (void)state;
    struct wsg_route r = make_route(NULL, 0, false);
    char out[64], reason[256];
    assert_int_equal(choose(&r, "binary", out, reason), SUBPROTOCOL_REFUSED);
    assert_non_null(strstr(reason, "accepts no subprotocol"));
}

static void test_bearer_entries_ignored_and_not_echoed(void **state)
{
    (void)state;
    char *names[] = {"binary"};
    struct wsg_route r = make_route(names, 1, false);
    char out[64], reason[256];
    assert_int_equal(choose(&r, "bearer.SECRET, binary", out, reason), SUBPROTOCOL_SELECTED);
    assert_string_equal(out, "binary");
    assert_int_equal(choose(&r, "bearer.SECRET", out, reason), SUBPROTOCOL_NONE);
    assert_int_equal(choose(&r, "bearer.SECRET, nope", out, reason), SUBPROTOCOL_REFUSED);
    assert_null(strstr(reason, "SECRET"));
}

static void test_origins(void **state)
{
    (void)state;
    struct wsg_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    assert_true(handshake_origin_allowed(&cfg, "https://evil.example"));
    char *origins[] = {"https://app.example.com"};
    cfg.origins = origins;
    cfg.n_origins = 1;
    assert_true(handshake_origin_allowed(&cfg, "https://app.example.com"));
    assert_true(handshake_origin_allowed(&cfg, "HTTPS://APP.EXAMPLE.COM"));
    assert_false(handshake_origin_allowed(&cfg, "https://app.example.com.evil.example"));
    assert_false(handshake_origin_allowed(&cfg, "http://app.example.com"));
    assert_false(handshake_origin_allowed(&cfg, "null"));
    assert_true(handshake_origin_allowed(&cfg, NULL)); /* non-browser clients */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_preference_wins),
        cmocka_unit_test(test_unlisted_names_never_chosen),
        cmocka_unit_test(test_no_offer),
        cmocka_unit_test(test_route_without_subprotocols),
        cmocka_unit_test(test_bearer_entries_ignored_and_not_echoed),
        cmocka_unit_test(test_origins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_auth_service.c - the pure half of "auth": "http" (auth_service.c):
 * the request body the service gets, cache keys, the reading of answers
 * (SPEC-2 A: 200 with or without claims, 401, 403, anything else), and the
 * cache: hits until cache_s, one request per key in flight with the others
 * waiting on it, refusals never kept, bounded size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "auth_service.h"

static const char *const names[] = {"cookie", "authorization", "x-tenant"};

static struct auth_request_info sample(const char **values)
{
    return (struct auth_request_info){
        .route = "live",
        .path = "/live/room1",
        .query = "a=1&b=%20",
        .client = "203.0.113.9",
        .origin = "https://site.example",
        .subprotocols = "mqtt, v2.json ,",
        .header_names = names,
        .header_values = values,
        .n_headers = 3,
    };
}

static void test_body(void **state)
{
    (void)state;
    const char *values[] = {"sid=abc; theme=dark", NULL, "t1"};
    struct auth_request_info r = sample(values);
    size_t len = 0;
    char *body = auth_service_body(&r, &len);
    assert_non_null(body);
    assert_int_equal(len, strlen(body));
    assert_string_equal(body,
                        "{\"route\":\"live\",\"path\":\"/live/room1\",\"query\":\"a=1&b=%20\","
                        "\"client\":\"203.0.113.9\",\"origin\":\"https://site.example\","
                        "\"subprotocols\":[\"mqtt\",\"v2.json\"],"
                        "\"headers\":{\"cookie\":\"sid=abc; theme=dark\",\"x-tenant\":\"t1\"}}");
    free(body);

    /* no origin, no query, no subprotocols, a header that is not UTF-8 */
    const char *bad[] = {"\xff\xfe", NULL, NULL};
    r = sample(bad);
    r.origin = NULL;
    r.query = NULL;
    r.subprotocols = NULL;
    body = auth_service_body(&r, &len);
    assert_non_null(body);
    assert_string_equal(body, "{\"route\":\"live\",\"path\":\"/live/room1\",\"query\":\"\","
                              "\"client\":\"203.0.113.9\",\"origin\":null,\"subprotocols\":[],"
                              "\"headers\":{\"cookie\":null}}");
    free(body);

    /* an offered subprotocol that is not UTF-8 (found by fuzz_auth_service) */
    r.subprotocols = "mqtt, \xd3oe";
    body = auth_service_body(&r, &len);
    assert_non_null(body);
    assert_non_null(strstr(body, "\"subprotocols\":[\"mqtt\",null]"));
    free(body);
}

static void test_key(void **state)
{
    (void)state;
    const char *a[] = {"sid=1", NULL, NULL}, *b[] = {"sid=1", "", NULL},
               *c[] = {"sid=1", NULL, NULL}, *d[] = {"sid=2", NULL, NULL};
    struct auth_request_info ra = sample(a), rb = sample(b), rc = sample(c), rd = sample(d);
    char *ka = auth_service_key(&ra, "http://x/a"), *kb = auth_service_key(&rb, "http://x/a"),
         *kc = auth_service_key(&rc, "http://x/a"), *kd = auth_service_key(&rd, "http://x/a"),
         *ke = auth_service_key(&ra, "http://x/b");
    assert_string_equal(ka, kc);     /* same route and header values */
    assert_string_not_equal(ka, kb); /* absent is not empty */
    assert_string_not_equal(ka, kd);
    assert_string_not_equal(ka, ke); /* another service */
    /* what the key does not hold: path, query, client (the forwarded headers decide) */
    rc.path = "/other";
    rc.client = "10.0.0.1";
    char *kf = auth_service_key(&rc, "http://x/a");
    assert_string_equal(ka, kf);
    /* length prefixes: "ab"+"c" is not "a"+"bc" */
    const char *g[] = {"ab", "c", NULL}, *h[] = {"a", "bc", NULL};
    struct auth_request_info rg = sample(g), rh = sample(h);
    char *kg = auth_service_key(&rg, "u"), *kh = auth_service_key(&rh, "u");
    assert_string_not_equal(kg, kh);
    free(ka), free(kb), free(kc), free(kd), free(ke), free(kf), free(kg), free(kh);
}

static enum auth_verdict answer(int status, const char *body, json_t **claims)
{
    char reason[100];
    enum auth_verdict v =
        auth_service_answer(status, body, body ? strlen(body) : 0, claims, reason, sizeof(reason));
    assert_true(strlen(reason) > 0);
    return v;
}

static void test_answer(void **state)
{
    (void)state;
    json_t *c;
    assert_int_equal(answer(200, "{\"claims\":{\"user\":\"alice\",\"n\":3}}", &c), AUTH_ALLOWED);
    assert_string_equal(json_string_value(json_object_get(c, "user")), "alice");
    assert_int_equal(json_integer_value(json_object_get(c, "n")), 3);
    json_decref(c);
    /* 200 without claims, with an empty or non-JSON body, or other keys */
    assert_int_equal(answer(200, NULL, &c), AUTH_ALLOWED);
    assert_null(c);
    assert_int_equal(answer(200, "OK", &c), AUTH_ALLOWED);
    assert_null(c);
    assert_int_equal(answer(200, "{\"ok\":true}", &c), AUTH_ALLOWED);
    assert_null(c);
    assert_int_equal(answer(200, "[1]", &c), AUTH_ALLOWED);
    assert_null(c);
    /* "claims" that is not an object: the service is broken, fail closed */
    assert_int_equal(answer(200, "{\"claims\":\"alice\"}", &c), AUTH_UNAVAILABLE);
    assert_null(c);
    assert_int_equal(answer(200, "{\"claims\":null}", &c), AUTH_UNAVAILABLE);
    /* refusals and everything else */
    assert_int_equal(answer(401, "{\"claims\":{\"user\":\"x\"}}", &c), AUTH_UNAUTHORIZED);
    assert_null(c);
    assert_int_equal(answer(403, NULL, &c), AUTH_FORBIDDEN);
    int others[] = {0, 201, 204, 301, 302, 400, 404, 500, 502, 503, 999};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        assert_int_equal(answer(others[i], "{\"claims\":{}}", &c), AUTH_UNAVAILABLE);
        assert_null(c);
    }
    /* an answer past the bound */
    char reason[100];
    assert_int_equal(
        auth_service_answer(200, "{}", AUTH_ANSWER_MAX_BYTES + 1, &c, reason, sizeof(reason)),
        AUTH_UNAVAILABLE);
}

static void test_cache_one_request_per_key(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_create(100);
    int w1, w2, w3, w4;
    json_t *claims;
    assert_int_equal(auth_cache_lookup(c, "k", 1000, &w1, &claims), AUTH_CACHE_REQUEST);
    assert_int_equal(auth_cache_lookup(c, "k", 1001, &w2, &claims), AUTH_CACHE_WAIT);
    assert_int_equal(auth_cache_lookup(c, "k", 1002, &w3, &claims), AUTH_CACHE_WAIT);
    assert_int_equal(auth_cache_lookup(c, "other", 1002, &w4, &claims), AUTH_CACHE_REQUEST);
    assert_int_equal(auth_cache_size(c), 2);
    auth_cache_forget(c, "k", &w2); /* that client left */

    json_t *got = json_pack("{s:s}", "user", "alice");
    size_t n;
    void **waiters = auth_cache_settle(c, "k", true, got, 1500, 1500 + 30000, &n);
    json_decref(got);
    assert_int_equal(n, 2);
    assert_true((waiters[0] == &w1 && waiters[1] == &w3) ||
                (waiters[0] == &w3 && waiters[1] == &w1));
    free(waiters);
    /* hits until it expires, then a new request */
    assert_int_equal(auth_cache_lookup(c, "k", 31499, &w2, &claims), AUTH_CACHE_HIT);
    assert_string_equal(json_string_value(json_object_get(claims, "user")), "alice");
    json_decref(claims);
    assert_int_equal(auth_cache_lookup(c, "k", 31500, &w2, &claims), AUTH_CACHE_REQUEST);
    assert_null(claims);

    /* a refusal is not kept; nor is an allow with cache_s 0 */
    waiters = auth_cache_settle(c, "other", false, NULL, 2000, 9999, &n);
    assert_int_equal(n, 1);
    assert_ptr_equal(waiters[0], &w4);
    free(waiters);
    assert_int_equal(auth_cache_lookup(c, "other", 2001, &w4, &claims), AUTH_CACHE_REQUEST);
    waiters = auth_cache_settle(c, "other", true, NULL, 2002, 2002, &n);
    free(waiters);
    assert_int_equal(auth_cache_lookup(c, "other", 2003, &w4, &claims), AUTH_CACHE_REQUEST);
    /* settling twice, or a key never asked: nothing */
    waiters = auth_cache_settle(c, "nope", true, NULL, 1, 2, &n);
    assert_null(waiters);
    assert_int_equal(n, 0);
    auth_cache_destroy(c); /* with requests in flight */
}

static void test_cache_bounded(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_create(3);
    int w;
    json_t *claims;
    char key[16];
    size_t n;
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(auth_cache_lookup(c, key, 0, &w, &claims), AUTH_CACHE_REQUEST);
        free(auth_cache_settle(c, key, true, NULL, 0, 100 + i, &n));
    }
    assert_int_equal(auth_cache_lookup(c, "k3", 50, &w, &claims), AUTH_CACHE_FULL);
    /* expired answers make room */
    assert_int_equal(auth_cache_lookup(c, "k3", 101, &w, &claims), AUTH_CACHE_REQUEST);
    assert_int_equal(auth_cache_size(c), 2);
    auth_cache_destroy(c);

    /* many keys: the table grows and finds them all */
    c = auth_cache_create(100000);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(auth_cache_lookup(c, key, 0, &w, &claims), AUTH_CACHE_REQUEST);
        free(auth_cache_settle(c, key, true, NULL, 0, 1000, &n));
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(auth_cache_lookup(c, key, 10, &w, &claims), AUTH_CACHE_HIT);
    }
    auth_cache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body),          cmocka_unit_test(test_key),
        cmocka_unit_test(test_answer),        cmocka_unit_test(test_cache_one_request_per_key),
        cmocka_unit_test(test_cache_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

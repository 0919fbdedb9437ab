/* test_target_pool.c - round-robin and down-marking (target_pool.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "target_pool.h"

static struct wsg_target targets[3] = {{.host = "10.0.0.1", .port = 1},
                                       {.host = "10.0.0.2", .port = 2},
                                       {.host = "10.0.0.3", .port = 3}};

/* The test's own state (the gateway keeps its in struct gateway). */
static struct target_health pool;

static int teardown(void **state)
{
    (void)state;
    target_pool_reset(&pool);
    return 0;
}

static void test_round_robin_per_route(void **state)
{
    (void)state;
    size_t order[3];
    for (size_t conn = 0; conn < 6; conn++) {
        assert_int_equal(target_pool_order(&pool, "r", targets, 3, 0, order), 3);
        assert_int_equal(order[0], conn % 3);
        assert_int_equal(order[1], (conn + 1) % 3);
        assert_int_equal(order[2], (conn + 2) % 3);
    }
    /* another route has its own rotor */
    target_pool_order(&pool, "other", targets, 3, 0, order);
    assert_int_equal(order[0], 0);
}

static void test_down_target_skipped_until_retry(void **state)
{
    (void)state;
    size_t order[3];
    target_pool_report(&pool, &targets[0], false, 1000);
    assert_true(target_pool_is_down(&pool, &targets[0], 1500));
    target_pool_order(&pool, "r", targets, 3, 1500, order); /* would start at 0 */
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 0); /* still tried last */
    /* retried after the first pause (1 s) */
    assert_false(target_pool_is_down(&pool, &targets[0], 1000 + TARGET_RETRY_FIRST_MS));
}

static void test_backoff_doubles_and_caps_then_resets(void **state)
{
    (void)state;
    uint64_t now = 0;
    uint64_t expected = TARGET_RETRY_FIRST_MS;
    for (int i = 0; i < 10; i++) {
        target_pool_report(&pool, &targets[1], false, now);
        assert_true(target_pool_is_down(&pool, &targets[1], now + expected - 1));
        assert_false(target_pool_is_down(&pool, &targets[1], now + expected));
        now += expected;
        expected = expected * 2 > TARGET_RETRY_MAX_MS ? TARGET_RETRY_MAX_MS : expected * 2;
    }
    target_pool_report(&pool, &targets[1], true, now);
    assert_false(target_pool_is_down(&pool, &targets[1], now));
    target_pool_report(&pool, &targets[1], false, now);
    assert_false(target_pool_is_down(&pool, &targets[1], now + TARGET_RETRY_FIRST_MS));
}

static void test_all_down_still_ordered(void **state)
{
    (void)state;
    size_t order[3];
    for (int i = 0; i < 3; i++)
        target_pool_report(&pool, &targets[i], false, 0);
    assert_int_equal(target_pool_order(&pool, "r", targets, 3, 10, order), 3);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 2);
}

/* The state is a value: another pool (another gateway, a reload's test)
 * has its own health and rotors, and a reset one starts over. */
static void test_pools_are_independent(void **state)
{
    (void)state;
    struct target_health other = {0};
    size_t order[3];
    target_pool_report(&pool, &targets[0], false, 0);
    target_pool_order(&pool, "r", targets, 3, 0, order);
    assert_true(target_pool_is_down(&pool, &targets[0], 10));
    assert_false(target_pool_is_down(&other, &targets[0], 10));
    target_pool_order(&other, "r", targets, 3, 10, order);
    assert_int_equal(order[0], 0); /* its own rotor, first turn */
    target_pool_reset(&other);
    target_pool_reset(&pool);
    assert_null(pool.healths);
    assert_null(pool.rotors);
    assert_false(target_pool_is_down(&pool, &targets[0], 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_round_robin_per_route, teardown),
        cmocka_unit_test_teardown(test_down_target_skipped_until_retry, teardown),
        cmocka_unit_test_teardown(test_backoff_doubles_and_caps_then_resets, teardown),
        cmocka_unit_test_teardown(test_all_down_still_ordered, teardown),
        cmocka_unit_test_teardown(test_pools_are_independent, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

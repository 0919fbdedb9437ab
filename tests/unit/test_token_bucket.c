/* test_token_bucket.c - max_messages_per_s: a steady rate passes, a burst
 * above one second's worth is cut, the bucket refills, 0 means unlimited,
 * and a clock that steps back refills nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "token_bucket.h"

#define SEC 1000000ull
#define T0 (1000 * SEC) /* any start: the bucket never reads a clock itself */

/* How many of n messages sent at once at now_us pass. */
static int burst(struct token_bucket *b, int64_t rate, uint64_t now_us, int n)
{
    int passed = 0;
    for (int i = 0; i < n; i++)
        passed += token_bucket_take(b, rate, now_us);
    return passed;
}

static void test_steady_rate_passes(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 10, T0);
    burst(&b, 10, T0, 10); /* the start allowance spent: from here on only the rate */
    /* 10/s for a minute, evenly spaced: every one passes. */
    for (uint64_t i = 1; i <= 600; i++)
        assert_true(token_bucket_take(&b, 10, T0 + i * SEC / 10));
}

static void test_burst_above_a_second_is_cut(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 100, T0);
    /* One second's worth passes at once, not one message more. */
    assert_int_equal(burst(&b, 100, T0, 250), 100);
    /* 10 ms later one message's worth has come back. */
    assert_int_equal(burst(&b, 100, T0 + SEC / 100, 5), 1);
}

static void test_refill_is_capped_at_one_second(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 50, T0);
    assert_int_equal(burst(&b, 50, T0, 50), 50);
    assert_false(token_bucket_take(&b, 50, T0));
    /* Half a second: half the bucket. */
    assert_int_equal(burst(&b, 50, T0 + SEC / 2, 100), 25);
    /* An hour idle saves up no more than a second's worth. */
    assert_int_equal(burst(&b, 50, T0 + 3600 * SEC, 1000), 50);
}

static void test_refused_take_keeps_the_refill(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 4, T0);
    burst(&b, 4, T0, 4);
    /* Refused at 1/16 s and 1/8 s (0.25 and 0.5 tokens): the fractions add
     * up, so the take at 1/4 s (1.0 token) passes. */
    assert_false(token_bucket_take(&b, 4, T0 + SEC / 16));
    assert_false(token_bucket_take(&b, 4, T0 + SEC / 8));
    assert_true(token_bucket_take(&b, 4, T0 + SEC / 4));
    assert_false(token_bucket_take(&b, 4, T0 + SEC / 4));
}

static void test_rate_zero_is_unlimited(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 0, T0);
    assert_int_equal(burst(&b, 0, T0, 100000), 100000);
    assert_int_equal(burst(&b, -1, T0, 10), 10);
}

static void test_clock_stepping_back_refills_nothing(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 10, T0);
    assert_int_equal(burst(&b, 10, T0, 10), 10);
    /* Unsigned now - at would wrap to a huge refill: it must not. */
    assert_int_equal(burst(&b, 10, T0 - 5 * SEC, 10), 0);
    /* Time counts on from the earlier reading: 0.5 s later, 5 tokens. */
    assert_int_equal(burst(&b, 10, T0 - 5 * SEC + SEC / 2, 10), 5);
    /* The same instant twice gives nothing either. */
    assert_int_equal(burst(&b, 10, T0 - 5 * SEC + SEC / 2, 10), 0);
}

static void test_high_rate(void **state)
{
    (void)state;
    struct token_bucket b;
    int64_t rate = 1000000; /* one per microsecond */
    token_bucket_init(&b, rate, T0);
    assert_int_equal(burst(&b, rate, T0, 1500000), 1000000);
    assert_int_equal(burst(&b, rate, T0 + 10, 100), 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_rate_passes),
        cmocka_unit_test(test_burst_above_a_second_is_cut),
        cmocka_unit_test(test_refill_is_capped_at_one_second),
        cmocka_unit_test(test_refused_take_keeps_the_refill),
        cmocka_unit_test(test_rate_zero_is_unlimited),
        cmocka_unit_test(test_clock_stepping_back_refills_nothing),
        cmocka_unit_test(test_high_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_op_map.c - the MQTT operation id map: find what was put, nothing
 * after removal, growth, and backward-shift deletion in long probe chains
 * (checked against a plain array over many random inserts and removes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "op_map.h"

static void test_insert_find_remove(void **state)
{
    (void)state;
    struct op_map m = {0};
    int a, b;
    assert_null(op_map_find(&m, 1)); /* empty, no slots yet */
    assert_null(op_map_remove(&m, 1));
    assert_int_equal(op_map_insert(&m, 7, &a), 0);
    assert_int_equal(op_map_insert(&m, 8, &b), 0);
    assert_int_equal(op_map_count(&m), 2);
    assert_ptr_equal(op_map_find(&m, 7), &a);
    assert_ptr_equal(op_map_find(&m, 8), &b);
    assert_null(op_map_find(&m, 9));
    assert_ptr_equal(op_map_remove(&m, 7), &a);
    assert_null(op_map_find(&m, 7));
    assert_null(op_map_remove(&m, 7)); /* a late answer for a dropped op */
    assert_ptr_equal(op_map_find(&m, 8), &b);
    assert_int_equal(op_map_count(&m), 1);
    op_map_clear(&m);
    assert_int_equal(op_map_count(&m), 0);
    assert_null(op_map_find(&m, 8));
}

static void test_refuses_id_zero_and_null(void **state)
{
    (void)state;
    struct op_map m = {0};
    int a;
    assert_int_equal(op_map_insert(&m, 0, &a), -1); /* 0 marks an empty slot */
    assert_int_equal(op_map_insert(&m, 1, NULL), -1);
    assert_null(op_map_find(&m, 0));
    assert_int_equal(op_map_count(&m), 0);
    op_map_clear(&m);
}

static void test_grows_and_keeps_everything(void **state)
{
    (void)state;
    struct op_map m = {0};
    enum { N = 10000 };
    static int v[N];
    /* Ids as the session makes them: a broker serial in the top bits. */
    for (uint64_t i = 0; i < N; i++)
        assert_int_equal(op_map_insert(&m, (UINT64_C(3) << 40) | (i + 1), &v[i]), 0);
    assert_int_equal(op_map_count(&m), N);
    assert_true(m.cap >= 2 * N); /* at most half full */
    for (uint64_t i = 0; i < N; i++)
        assert_ptr_equal(op_map_find(&m, (UINT64_C(3) << 40) | (i + 1)), &v[i]);
    assert_null(op_map_find(&m, (UINT64_C(4) << 40) | 1));
    op_map_clear(&m);
}

struct seen {
    size_t n;
    uint64_t sum;
};

static void count_one(void *ctx, uint64_t id, void *value)
{
    struct seen *s = ctx;
    assert_non_null(value);
    s->n++;
    s->sum += id;
}

static void test_each(void **state)
{
    (void)state;
    struct op_map m = {0};
    int a;
    for (uint64_t id = 1; id <= 100; id++)
        assert_int_equal(op_map_insert(&m, id, &a), 0);
    for (uint64_t id = 1; id <= 100; id += 2)
        op_map_remove(&m, id);
    struct seen s = {0};
    op_map_each(&m, count_one, &s);
    assert_int_equal(s.n, 50);
    assert_int_equal(s.sum, 50 * 51); /* 2 + 4 + ... + 100 */
    op_map_clear(&m);
}

/* Random inserts and removes against a reference array: removal must never
 * cut a probe chain (an entry behind the hole stays findable). Ids are
 * chosen from a small range so chains are long and collide often. */
static void test_random_against_reference(void **state)
{
    (void)state;
    struct op_map m = {0};
    enum { RANGE = 600, STEPS = 200000 };
    static void *ref[RANGE + 1];
    static int values[RANGE + 1];
    memset(ref, 0, sizeof(ref));
    size_t live = 0;
    srand(12345);
    for (int step = 0; step < STEPS; step++) {
        uint64_t id = 1 + (uint64_t)(rand() % RANGE);
        if (ref[id]) {
            assert_ptr_equal(op_map_remove(&m, id), ref[id]);
            ref[id] = NULL;
            live--;
        } else {
            assert_int_equal(op_map_insert(&m, id, &values[id]), 0);
            ref[id] = &values[id];
            live++;
        }
        if (step % 997 == 0)
            for (uint64_t k = 1; k <= RANGE; k++)
                assert_ptr_equal(op_map_find(&m, k), ref[k]);
        assert_int_equal(op_map_count(&m), live);
    }
    for (uint64_t k = 1; k <= RANGE; k++)
        assert_ptr_equal(op_map_find(&m, k), ref[k]);
    op_map_clear(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_find_remove),
        cmocka_unit_test(test_refuses_id_zero_and_null),
        cmocka_unit_test(test_grows_and_keeps_everything),
        cmocka_unit_test(test_each),
        cmocka_unit_test(test_random_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

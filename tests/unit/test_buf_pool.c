/* test_buf_pool.c - the relay's block pool: reuse without the C allocator,
 * sizes, growth, and the trim that gives back only what stayed unused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf_pool.h"

static int setup(void **state)
{
    (void)state;
    buf_pool_release_all();
    return 0;
}

static void test_reuse_calls_no_allocator(void **state)
{
    (void)state;
    size_t cap;
    void *a = buf_pool_get(4096, &cap);
    assert_non_null(a);
    assert_true(cap >= 4096);
    buf_pool_put(a);
    uint64_t allocs = buf_pool_stats().system_allocs;
    for (int i = 0; i < 10000; i++) {
        void *b = buf_pool_get(4000 + (size_t)(i % 96), NULL);
        assert_ptr_equal(b, a); /* the same block, every time */
        memset(b, i, 4000);
        buf_pool_put(b);
    }
    assert_int_equal(buf_pool_stats().system_allocs, allocs);
    assert_int_equal(buf_pool_stats().used_bytes, 0);
}

static void test_sizes(void **state)
{
    (void)state;
    assert_int_equal(buf_pool_size_for(0), 256 + BUF_POOL_SLACK);
    assert_int_equal(buf_pool_size_for(256 + BUF_POOL_SLACK), 256 + BUF_POOL_SLACK);
    assert_int_equal(buf_pool_size_for(257 + BUF_POOL_SLACK), 512 + BUF_POOL_SLACK);
    /* a 64 KiB payload with a header in front fits the 64 KiB block */
    assert_int_equal(buf_pool_size_for(65536 + 56), 65536 + BUF_POOL_SLACK);
    size_t big = (8u << 20) + 1;
    assert_int_equal(buf_pool_size_for(big), big); /* past 4 MiB: exact */
    size_t cap;
    void *p = buf_pool_get(big, &cap);
    assert_non_null(p);
    assert_int_equal(cap, big);
    assert_int_equal(buf_pool_capacity(p), big);
    uint64_t frees = buf_pool_stats().system_frees;
    buf_pool_put(p); /* oversize blocks are not kept */
    assert_int_equal(buf_pool_stats().system_frees, frees + 1);
    assert_int_equal(buf_pool_stats().free_bytes, 0);
}

static void test_grow_keeps_bytes(void **state)
{
    (void)state;
    size_t cap;
    uint8_t *p = buf_pool_grow(NULL, 0, 100, &cap);
    assert_non_null(p);
    for (int i = 0; i < 100; i++)
        p[i] = (uint8_t)i;
    uint8_t *q = buf_pool_grow(p, 100, 100000, &cap);
    assert_non_null(q);
    assert_true(cap >= 100000);
    for (int i = 0; i < 100; i++)
        assert_int_equal(q[i], (uint8_t)i);
    assert_ptr_equal(buf_pool_grow(q, 100, 50, &cap), q); /* big enough: kept */
    buf_pool_put(q);
    buf_pool_put(NULL);
}

static void test_trim_gives_back_only_unused(void **state)
{
    (void)state;
    void *blocks[8];
    for (int i = 0; i < 8; i++)
        blocks[i] = buf_pool_get(1000, NULL);
    for (int i = 0; i < 8; i++)
        buf_pool_put(blocks[i]);
    buf_pool_trim(); /* starts an interval: 8 free */
    assert_int_equal(buf_pool_stats().free_bytes, 8 * buf_pool_size_for(1000));

    /* a steady load of 3 at a time: 5 stay unused all interval */
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < 3; i++)
            blocks[i] = buf_pool_get(1000, NULL);
        for (int i = 0; i < 3; i++)
            buf_pool_put(blocks[i]);
    }
    uint64_t frees = buf_pool_stats().system_frees;
    buf_pool_trim();
    assert_int_equal(buf_pool_stats().system_frees, frees + 5);
    assert_int_equal(buf_pool_stats().free_bytes, 3 * buf_pool_size_for(1000));

    /* the same load again: nothing to give back, nothing to allocate */
    uint64_t allocs = buf_pool_stats().system_allocs;
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < 3; i++)
            blocks[i] = buf_pool_get(1000, NULL);
        for (int i = 0; i < 3; i++)
            buf_pool_put(blocks[i]);
    }
    buf_pool_trim();
    assert_int_equal(buf_pool_stats().system_frees, frees + 5);
    assert_int_equal(buf_pool_stats().system_allocs, allocs);

    /* load gone: two quiet intervals empty the pool */
    buf_pool_trim();
    assert_int_equal(buf_pool_stats().free_bytes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_reuse_calls_no_allocator, setup),
        cmocka_unit_test_setup(test_sizes, setup),
        cmocka_unit_test_setup(test_grow_keeps_bytes, setup),
        cmocka_unit_test_setup(test_trim_gives_back_only_unused, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_page_pool.c - page-backed buffers (page_pool.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "page_pool.h"

#include <string.h>
#include <unistd.h>

static void test_slots_are_page_aligned_and_distinct(void **state)
{
    (void)state;
    struct page_pool p;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    assert_int_equal(page_pool_init(&p, 16384, 200), 0);
    assert_int_equal(p.slot_bytes % page, 0);
    uint8_t *bufs[200];
    for (size_t i = 0; i < 200; i++) { /* past one growth step */
        bufs[i] = page_pool_get(&p);
        assert_non_null(bufs[i]);
        assert_int_equal((uintptr_t)bufs[i] % page, 0);
        assert_true(page_pool_owns(&p, bufs[i]));
        memset(bufs[i], (int)i, p.slot_bytes); /* all of it writable */
    }
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(bufs[i][p.slot_bytes - 1], (uint8_t)i); /* no overlap */
    assert_null(page_pool_get(&p)); /* full: the caller allocates elsewhere */
    for (size_t i = 0; i < 200; i++)
        page_pool_put(&p, bufs[i]);
    page_pool_destroy(&p);
}

static void test_put_back_is_reused_and_zeroed(void **state)
{
    (void)state;
    struct page_pool p;
    assert_int_equal(page_pool_init(&p, 5000, 4), 0); /* rounded up to pages */
    uint8_t *a = page_pool_get(&p), *b = page_pool_get(&p);
    memset(a, 0xab, p.slot_bytes);
    page_pool_put(&p, a);
    uint8_t *c = page_pool_get(&p);
    assert_ptr_equal(c, a);
    assert_int_equal(c[0], 0); /* the pages were given back */
    assert_int_equal(c[p.slot_bytes - 1], 0);
    page_pool_put(&p, b);
    page_pool_put(&p, c);
    page_pool_destroy(&p);
}

static void test_owns_only_its_slots(void **state)
{
    (void)state;
    struct page_pool p;
    int local;
    assert_int_equal(page_pool_init(&p, 4096, 8), 0);
    assert_false(page_pool_owns(&p, &local));
    assert_false(page_pool_owns(&p, NULL));
    assert_false(page_pool_owns(&p, p.base)); /* not handed out yet */
    void *a = page_pool_get(&p);
    assert_true(page_pool_owns(&p, a));
    page_pool_put(&p, a);
    page_pool_destroy(&p);

    struct page_pool none = {0}; /* never set up: hands out and owns nothing */
    assert_null(page_pool_get(&none));
    assert_false(page_pool_owns(&none, &local));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots_are_page_aligned_and_distinct),
        cmocka_unit_test(test_put_back_is_reused_and_zeroed),
        cmocka_unit_test(test_owns_only_its_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

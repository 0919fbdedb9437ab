/* test_msg_buffer.c - one client message reassembled from its fragments:
 * the bytes in order, the bound, a failed append that leaves the message as
 * it was, and a buffer that is reused message after message without calling
 * the C allocator (observed through buf_pool_stats). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf_pool.h"
#include "msg_buffer.h"

static int setup(void **state)
{
    (void)state;
    buf_pool_release_all();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(buf_pool_stats().used_bytes, 0); /* every block given back */
    buf_pool_release_all();
    return 0;
}

static void test_fragments_in_order(void **state)
{
    (void)state;
    struct msg_buffer m = {0};
    const char *parts[] = {"hel", "", "lo, ", "wor", "ld"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(msg_buffer_append(&m, (const uint8_t *)parts[i], strlen(parts[i]), 64), 0);
    assert_int_equal(m.len, 12);
    assert_memory_equal(m.data, "hello, world", 12);
    assert_true(m.cap >= m.len);
    msg_buffer_done(&m);
    assert_null(m.data);
    assert_int_equal(m.len, 0);
    assert_int_equal(m.cap, 0);
}

static void test_empty_piece_takes_no_block(void **state)
{
    (void)state;
    struct msg_buffer m = {0};
    uint64_t gets = buf_pool_stats().gets;
    assert_int_equal(msg_buffer_append(&m, NULL, 0, 10), 0);
    assert_null(m.data); /* an idle client holds no buffer */
    assert_int_equal(buf_pool_stats().gets, gets);
}

static void test_bound_is_exact(void **state)
{
    (void)state;
    uint8_t bytes[100];
    memset(bytes, 'x', sizeof bytes);
    struct msg_buffer m = {0};
    assert_int_equal(msg_buffer_append(&m, bytes, 60, 100), 0);
    assert_int_equal(msg_buffer_append(&m, bytes, 40, 100), 0); /* exactly max */
    assert_int_equal(m.len, 100);
    /* One byte more is refused and the message is left as it was. */
    assert_int_equal(msg_buffer_append(&m, bytes, 1, 100), MSG_BUFFER_TOO_BIG);
    assert_int_equal(m.len, 100);
    assert_memory_equal(m.data, bytes, 100);
    msg_buffer_free(&m);

    /* A single piece over the bound takes no block. */
    uint64_t gets = buf_pool_stats().gets;
    assert_int_equal(msg_buffer_append(&m, bytes, 100, 99), MSG_BUFFER_TOO_BIG);
    assert_null(m.data);
    assert_int_equal(buf_pool_stats().gets, gets);
}

static void test_length_overflow_refused(void **state)
{
    (void)state;
    struct msg_buffer m = {0};
    const uint8_t one = '1';
    assert_int_equal(msg_buffer_append(&m, &one, 1, SIZE_MAX), 0);
    /* len + SIZE_MAX wraps around: refused, not a tiny copy of a huge piece. */
    assert_int_equal(msg_buffer_append(&m, &one, SIZE_MAX, SIZE_MAX), MSG_BUFFER_TOO_BIG);
    assert_int_equal(m.len, 1);
    msg_buffer_free(&m);
}

static void test_growth_keeps_bytes(void **state)
{
    (void)state;
    /* 100 KiB in 1000-byte fragments: the block grows through several pool
     * sizes and every byte stays where it was. */
    struct msg_buffer m = {0};
    uint8_t piece[1000];
    for (int i = 0; i < 100; i++) {
        memset(piece, 'a' + i % 26, sizeof piece);
        assert_int_equal(msg_buffer_append(&m, piece, sizeof piece, 1 << 20), 0);
    }
    assert_int_equal(m.len, 100000);
    for (size_t i = 0; i < m.len; i++)
        assert_int_equal(m.data[i], 'a' + (i / 1000) % 26);
    assert_true(m.cap >= 100000);
    msg_buffer_done(&m);
}

static void test_reuse_calls_no_allocator(void **state)
{
    (void)state;
    struct msg_buffer m = {0};
    uint8_t piece[700];
    memset(piece, 'z', sizeof piece);
    /* A first message warms the pool up. */
    for (int f = 0; f < 6; f++)
        assert_int_equal(msg_buffer_append(&m, piece, sizeof piece, 1 << 16), 0);
    msg_buffer_done(&m);
    struct buf_pool_stats before = buf_pool_stats();
    /* 10,000 more messages of the same shape: blocks come from the free
     * lists, none from the C allocator, and none is kept between messages. */
    for (int i = 0; i < 10000; i++) {
        for (int f = 0; f < 6; f++)
            assert_int_equal(msg_buffer_append(&m, piece, sizeof piece, 1 << 16), 0);
        assert_int_equal(m.len, 6 * sizeof piece);
        msg_buffer_done(&m);
        assert_null(m.data);
    }
    struct buf_pool_stats after = buf_pool_stats();
    assert_int_equal(after.system_allocs, before.system_allocs);
    assert_int_equal(after.system_frees, before.system_frees);
    assert_true(after.gets > before.gets);
    assert_int_equal(after.used_bytes, 0);
}

static void test_free_of_empty_buffer(void **state)
{
    (void)state;
    struct msg_buffer m = {0};
    msg_buffer_free(&m); /* nothing held: nothing happens */
    msg_buffer_done(&m);
    assert_null(m.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fragments_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_piece_takes_no_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_is_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_length_overflow_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_growth_keeps_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_calls_no_allocator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_of_empty_buffer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

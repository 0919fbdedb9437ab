/* test_json_scratch.c - jansson's per-message arena: nothing changes until
 * it is installed; inside a scope jansson's memory comes from buf_pool
 * blocks and stays put once the pool has them; values from outside a scope
 * are freed as they came; scopes nest; big documents span blocks. Leaks and
 * bad frees show in the ASan build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "buf_pool.h"
#include "json_scratch.h"

static long outer_calls; /* jansson's allocator before install: counts */

static void *counting_malloc(size_t n)
{
    outer_calls++;
    return malloc(n);
}

static const char doc[] = "{\"topic\": \"a/b\", \"payload\": {\"t\": [1, 2, 3], \"s\": \"text\"}, "
                          "\"qos\": 1, \"id\": \"r-1\"}";

/* One message's worth of jansson: parse, read, dump, free. */
static void handle_one(void)
{
    json_t *v = json_loads(doc, 0, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "topic")), "a/b");
    char *s = json_dumps(json_object_get(v, "payload"), JSON_COMPACT);
    assert_string_equal(s, "{\"t\":[1,2,3],\"s\":\"text\"}");
    json_free_t free_fn;
    json_get_alloc_funcs(NULL, &free_fn);
    free_fn(s);
    json_decref(v);
}

static void test_before_install_nothing_changes(void **state)
{
    (void)state;
    outer_calls = 0;
    json_scratch_begin();
    handle_one();
    assert_int_equal(json_scratch_used(), 0);
    json_scratch_end();
    assert_true(outer_calls > 5); /* jansson still allocates per value */
}

static void test_scope_calls_no_allocator(void **state)
{
    (void)state;
    json_scratch_install();
    json_scratch_begin(); /* the first scope takes the arena's block from the pool */
    handle_one();
    json_scratch_end();
    outer_calls = 0;
    uint64_t pool_allocs = buf_pool_stats().system_allocs;
    for (int i = 0; i < 1000; i++) {
        json_scratch_begin();
        handle_one();
        assert_true(json_scratch_used() > 0);
        json_scratch_end();
        assert_int_equal(json_scratch_used(), 0);
    }
    assert_int_equal(outer_calls, 0);
    assert_int_equal(buf_pool_stats().system_allocs, pool_allocs);
}

static void test_values_from_outside_a_scope(void **state)
{
    (void)state;
    json_scratch_install();
    outer_calls = 0;
    json_t *kept = json_loads(doc, 0, NULL); /* outside: a value that lives on */
    assert_true(outer_calls > 0);
    long made = outer_calls;
    json_scratch_begin();
    json_t *tmp = json_object();
    json_object_set(tmp, "kept", kept); /* borrows it for the scope */
    json_decref(tmp);
    assert_int_equal(outer_calls, made); /* nothing outside the arena */
    json_scratch_end();
    /* still whole after the scope */
    assert_string_equal(json_string_value(json_object_get(kept, "id")), "r-1");
    json_scratch_begin();
    json_decref(kept); /* freed inside a scope: goes back as it came (ASan: no leak) */
    json_scratch_end();
}

static void test_scopes_nest(void **state)
{
    (void)state;
    json_scratch_install();
    json_scratch_begin();
    json_t *outer = json_string("made in the outer scope");
    json_scratch_begin();
    handle_one();
    json_scratch_end(); /* the inner end keeps the arena */
    assert_true(json_scratch_used() > 0);
    assert_string_equal(json_string_value(outer), "made in the outer scope");
    json_decref(outer);
    json_scratch_end();
    assert_int_equal(json_scratch_used(), 0);
}

static void test_big_document_spans_blocks(void **state)
{
    (void)state;
    json_scratch_install();
    size_t n = 300 * 1024;
    char *text = malloc(n + 3);
    text[0] = '"';
    memset(text + 1, 'x', n);
    text[n + 1] = '"';
    text[n + 2] = '\0';
    outer_calls = 0;
    for (int round = 0; round < 3; round++) {
        json_scratch_begin();
        json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        assert_int_equal(json_string_length(v), n);
        assert_true(json_scratch_used() > n);
        json_decref(v);
        json_scratch_end();
    }
    assert_int_equal(outer_calls, 0);
    free(text);
}

int main(void)
{
    json_set_alloc_funcs(counting_malloc, free);
    const struct CMUnitTest tests[] = {
        /* first: nothing is installed yet */
        cmocka_unit_test(test_before_install_nothing_changes),
        cmocka_unit_test(test_scope_calls_no_allocator),
        cmocka_unit_test(test_values_from_outside_a_scope),
        cmocka_unit_test(test_scopes_nest),
        cmocka_unit_test(test_big_document_spans_blocks),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    buf_pool_release_all();
    return rc;
}

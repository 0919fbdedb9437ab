/* test_ws_deflate.c - unit tests for ws_deflate.c: messages deflated with
 * context inflate back with one inflater, as a client would; the inflater
 * gives the same output in any input split, marks only the last piece
 * final, stops one byte past its limit, and refuses corrupt data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "ws_deflate.h"

struct sink {
    uint8_t *data;
    size_t len, cap;
    int finals;      /* pieces marked final */
    bool final_last; /* ... and the last piece was one of them */
    size_t pieces;
};

static int collect(void *ctx, const uint8_t *data, size_t len, bool final)
{
    struct sink *k = ctx;
    assert_true(len <= WS_INFLATE_PIECE);
    if (k->len + len > k->cap) {
        k->cap = (k->len + len) * 2 + 16;
        k->data = realloc(k->data, k->cap);
        assert_non_null(k->data);
    }
    if (len)
        memcpy(k->data + k->len, data, len);
    k->len += len;
    k->finals += final;
    k->final_last = final;
    k->pieces++;
    return 0;
}

/* A client's compressor: raw deflate, sync flush, the 4-byte tail removed. */
static size_t client_deflate(z_stream *zs, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    zs->next_in = (Bytef *)in;
    zs->avail_in = (uInt)len;
    zs->next_out = out;
    zs->avail_out = (uInt)cap;
    assert_int_equal(deflate(zs, Z_SYNC_FLUSH), Z_OK);
    size_t n = cap - zs->avail_out;
    assert_memory_equal(out + n - 4, "\x00\x00\xff\xff", 4);
    return n - 4;
}

static void test_roundtrip_with_context(void **state)
{
    (void)state;
    struct ws_deflater *d = ws_deflater_create(WS_DEFLATE_WINDOW_BITS, true);
    struct ws_inflater *inf = ws_inflater_create();
    assert_non_null(d);
    assert_non_null(inf);
    char msg[200];
    size_t plain = 0, wire = 0;
    for (int i = 0; i < 100; i++) {
        int n = snprintf(msg, sizeof(msg), "{\"seq\":%d,\"sensor\":\"hall-%d\",\"status\":\"ok\"}",
                         i, i % 4);
        size_t zlen;
        const uint8_t *z = ws_deflate_message(d, (const uint8_t *)msg, (size_t)n, &zlen);
        assert_non_null(z);
        struct sink k = {0};
        assert_int_equal(ws_inflate(inf, z, zlen, true, SIZE_MAX, collect, &k), 0);
        assert_int_equal(k.len, (size_t)n);
        assert_memory_equal(k.data, msg, (size_t)n);
        assert_int_equal(k.finals, 1);
        assert_true(k.final_last);
        free(k.data);
        plain += (size_t)n;
        wire += zlen;
    }
    assert_true(wire * 4 < plain); /* context kept: later messages refer to earlier ones */
    /* Short and incompressible messages are not compressed. */
    size_t zlen;
    assert_null(ws_deflate_message(d, (const uint8_t *)"short", 5, &zlen));
    uint8_t noise[4096];
    srand(7);
    for (size_t i = 0; i < sizeof(noise); i++)
        noise[i] = (uint8_t)rand();
    assert_null(ws_deflate_message(d, noise, sizeof(noise), &zlen));
    /* ... and the next message still inflates: the history was dropped. */
    const uint8_t *z = ws_deflate_message(d, (const uint8_t *)msg, strlen(msg), &zlen);
    assert_non_null(z);
    struct sink k = {0};
    assert_int_equal(ws_inflate(inf, z, zlen, true, SIZE_MAX, collect, &k), 0);
    assert_int_equal(k.len, strlen(msg));
    free(k.data);
    ws_deflater_destroy(d);
    ws_inflater_destroy(inf);
    ws_deflate_shutdown();
}

static void test_split_and_pieces(void **state)
{
    (void)state;
    size_t big = 100000;
    uint8_t *plain = malloc(big);
    for (size_t i = 0; i < big; i++)
        plain[i] = (uint8_t)("abcdefgh"[i % 8] + (i / 977) % 3);
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t *z = malloc(big + 64);
    size_t zlen = client_deflate(&zs, plain, big, z, big + 64);
    deflateEnd(&zs);
    size_t steps[] = {1, 7, 100, 4096, zlen};
    for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        struct ws_inflater *inf = ws_inflater_create();
        struct sink k = {0};
        for (size_t at = 0; at < zlen; at += steps[s]) {
            size_t n = zlen - at < steps[s] ? zlen - at : steps[s];
            assert_int_equal(ws_inflate(inf, z + at, n, at + n == zlen, SIZE_MAX, collect, &k), 0);
        }
        assert_int_equal(k.len, big);
        assert_memory_equal(k.data, plain, big);
        assert_int_equal(k.finals, 1);
        assert_true(k.final_last);
        free(k.data);
        ws_inflater_destroy(inf);
    }
    free(z);
    free(plain);
}

static void test_limit_and_corrupt(void **state)
{
    (void)state;
    size_t big = 10 << 20;
    uint8_t *zeros = calloc(1, big);
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t *z = malloc(big / 100);
    size_t zlen = client_deflate(&zs, zeros, big, z, big / 100);
    deflateEnd(&zs);
    assert_true(zlen < 20000); /* a bomb: 10 MiB from ~10 KB */
    for (size_t limit = 0; limit < 70000; limit += 16383) {
        struct ws_inflater *inf = ws_inflater_create();
        struct sink k = {0};
        assert_int_equal(ws_inflate(inf, z, zlen, true, limit, collect, &k), WS_INFLATE_TOO_BIG);
        assert_true(k.len <= limit); /* nothing past the limit reached the caller */
        assert_int_equal(k.finals, 0);
        free(k.data);
        ws_inflater_destroy(inf);
    }
    struct ws_inflater *inf = ws_inflater_create();
    struct sink k = {0};
    assert_int_equal(ws_inflate(inf, z, zlen, true, big, collect, &k), 0); /* exactly the limit */
    assert_int_equal(k.len, big);
    free(k.data);
    ws_inflater_destroy(inf);
    inf = ws_inflater_create();
    memset(&k, 0, sizeof(k));
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x20, 0x67, 0x61};
    assert_int_equal(ws_inflate(inf, garbage, sizeof(garbage), true, SIZE_MAX, collect, &k),
                     WS_INFLATE_CORRUPT);
    free(k.data);
    ws_inflater_destroy(inf);
    /* An empty compressed message is one empty final piece. */
    inf = ws_inflater_create();
    memset(&k, 0, sizeof(k));
    static const uint8_t empty[] = {0x00};
    assert_int_equal(ws_inflate(inf, empty, 0, true, 0, collect, &k), 0);
    assert_int_equal(k.len, 0);
    assert_int_equal(k.finals, 1);
    (void)empty;
    free(k.data);
    ws_inflater_destroy(inf);
    free(z);
    free(zeros);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_with_context),
        cmocka_unit_test(test_split_and_pieces),
        cmocka_unit_test(test_limit_and_corrupt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

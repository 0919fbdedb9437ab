/* fuzz_ws_inflate.c - permessage-deflate from clients (src/core/ws_deflate.c):
 * inflating what a client claims is compressed.
 *
 * Input: byte 0 = split seed, byte 1 = limit selector, then the bytes of
 * one "compressed" message.
 * Properties:
 *  - the output never exceeds the limit (the caller passes what is left of
 *    it at each call; WS_INFLATE_TOO_BIG instead), and
 *    comes in pieces of at most WS_INFLATE_PIECE;
 *  - fed whole or in random pieces, the same verdict and the same output;
 *  - a message that inflates (result 0) has exactly one final piece, the
 *    last;
 *  - the input as plain data, deflated by ws_deflate_message (context
 *    kept), inflates back to itself. */
#include "fuzz_util.h"

#include "ws_deflate.h"

struct sink {
    uint8_t *data;
    size_t len;
    int finals;
    bool final_last;
};

static int collect(void *ctx, const uint8_t *data, size_t len, bool final)
{
    struct sink *k = ctx;
    FUZZ_CHECK(len <= WS_INFLATE_PIECE, "piece of %zu bytes", len);
    k->data = realloc(k->data, k->len + len + 1);
    FUZZ_CHECK(k->data, "out of memory");
    if (len)
        memcpy(k->data + k->len, data, len);
    k->len += len;
    k->finals += final;
    k->final_last = final;
    return 0;
}

static int run(const uint8_t *in, size_t len, size_t limit, uint32_t seed, struct sink *k)
{
    struct ws_inflater *inf = ws_inflater_create();
    FUZZ_CHECK(inf, "no inflater");
    int rc = 0;
    size_t at = 0;
    do {
        size_t step = len - at;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t s = 1 + (seed >> 16) % 64;
            step = s < step ? s : step;
        }
        rc = ws_inflate(inf, in + at, step, at + step == len, limit - k->len, collect, k);
        at += step;
    } while (rc == 0 && at < len);
    ws_inflater_destroy(inf);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    uint32_t seed = fz_byte(&z) | 1u;
    uint8_t sel = fz_byte(&z);
    static const size_t limits[] = {0, 1, 100, 16384, 16385, 65536, 1 << 20};
    size_t limit = limits[sel % 7];

    struct sink whole = {0}, parts = {0};
    int r1 = run(z.p, z.n, limit, 0, &whole);
    int r2 = run(z.p, z.n, limit, seed, &parts);
    FUZZ_CHECK(r1 == 0 || r1 == WS_INFLATE_CORRUPT || r1 == WS_INFLATE_TOO_BIG, "result %d", r1);
    FUZZ_CHECK(whole.len <= limit && parts.len <= limit, "output past the limit");
    FUZZ_CHECK(r1 == r2 || (r1 != 0 && r2 != 0), "whole %d, in pieces %d", r1, r2);
    if (r1 == 0 && r2 == 0) {
        FUZZ_CHECK(whole.len == parts.len &&
                       (!whole.len || memcmp(whole.data, parts.data, whole.len) == 0),
                   "pieces inflate to something else");
        FUZZ_CHECK(whole.finals == 1 && whole.final_last, "final marks: %d", whole.finals);
        FUZZ_CHECK(parts.finals == 1 && parts.final_last, "final marks: %d", parts.finals);
    }
    free(whole.data);
    free(parts.data);

    /* The input as plain data: twice through one deflater, back through one inflater. */
    struct ws_deflater *d = ws_deflater_create(9 + sel % 7, sel & 0x80);
    struct ws_inflater *inf = ws_inflater_create();
    FUZZ_CHECK(d && inf, "no deflater");
    for (int i = 0; i < 2; i++) {
        size_t zlen = 0;
        const uint8_t *c = ws_deflate_message(d, z.p, z.n, &zlen);
        if (!c)
            continue;
        uint8_t *copy = malloc(zlen + 1);
        memcpy(copy, c, zlen);
        struct sink back = {0};
        FUZZ_CHECK(ws_inflate(inf, copy, zlen, true, SIZE_MAX, collect, &back) == 0,
                   "own output does not inflate");
        FUZZ_CHECK(back.len == z.n && memcmp(back.data, z.p, z.n) == 0, "roundtrip differs");
        free(back.data);
        free(copy);
    }
    ws_deflater_destroy(d);
    ws_inflater_destroy(inf);
    return 0;
}

/* test_framing.c - cmocka tests for framing.c: each framing x binary/text, arbitrary chunking,
 * limits, backpressure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf_pool.h"
#include "framing.h"
#include "utf8.h"

/* --- helpers ------------------------------------------------------------ */

/* A byte string that may hold NULs. */
struct utf8_case {
    const char *s;
    size_t len;
};
#define U(lit)                                                                                     \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* Every message a decoder emitted, in order. */
struct collector {
    uint8_t *data; /* all messages concatenated */
    size_t len, cap;
    size_t *ends; /* ends[i]: where message i ends in data */
    size_t n, ncap;
    unsigned stop_every; /* emit returns 1 after every k-th message; 0 = never */
    bool check_utf8;     /* fail on a message that is not valid UTF-8 */
};

static int collect(void *ctx, const uint8_t *msg, size_t len)
{
    struct collector *c = ctx;
    if (c->check_utf8 && !utf8_is_valid(msg, len))
        fail_msg("message %zu is not valid UTF-8", c->n);
    if (c->len + len > c->cap) {
        c->cap = (c->len + len) * 2 + 64;
        c->data = realloc(c->data, c->cap);
        assert_non_null(c->data);
    }
    if (len > 0)
        memcpy(c->data + c->len, msg, len);
    c->len += len;
    if (c->n == c->ncap) {
        c->ncap = c->ncap * 2 + 16;
        c->ends = realloc(c->ends, c->ncap * sizeof(*c->ends));
        assert_non_null(c->ends);
    }
    c->ends[c->n++] = c->len;
    return c->stop_every && c->n % c->stop_every == 0;
}

static void collector_free(struct collector *c)
{
    free(c->data);
    free(c->ends);
    memset(c, 0, sizeof(*c));
}

static size_t msg_len(const struct collector *c, size_t i)
{
    return c->ends[i] - (i ? c->ends[i - 1] : 0);
}

static const uint8_t *msg_at(const struct collector *c, size_t i)
{
    return c->data + (i ? c->ends[i - 1] : 0);
}

static void assert_msg(const struct collector *c, size_t i, const char *want)
{
    if (i >= c->n)
        fail_msg("message %zu missing (%zu emitted)", i, c->n);
    assert_int_equal(msg_len(c, i), strlen(want));
    assert_memory_equal(msg_at(c, i), want, strlen(want));
}

static void assert_same_messages(const struct collector *a, const struct collector *b)
{
    assert_int_equal(a->n, b->n);
    if (a->n > 0)
        assert_memory_equal(a->ends, b->ends, a->n * sizeof(*a->ends));
    assert_int_equal(a->len, b->len);
    if (a->len > 0)
        assert_memory_equal(a->data, b->data, a->len);
}

/* Feeds s cut at the sorted offsets cuts[0..ncuts), then keeps calling with
 * no input while that still delivers something (to finish after stops). */
static enum framing_status feed_cut(struct framing_decoder *d, const uint8_t *s, size_t len,
                                    const size_t *cuts, size_t ncuts, struct collector *c)
{
    size_t prev = 0;
    enum framing_status st = FRAMING_OK;
    for (size_t i = 0; i <= ncuts && st == FRAMING_OK; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        st = framing_decode(d, s + prev, end - prev, collect, c);
        prev = end;
    }
    for (size_t before = SIZE_MAX; st == FRAMING_OK && before != c->n;) {
        before = c->n;
        st = framing_decode(d, NULL, 0, collect, c);
    }
    return st;
}

static enum framing_status feed(struct framing_decoder *d, const uint8_t *s, size_t len,
                                struct collector *c)
{
    return feed_cut(d, s, len, NULL, 0, c);
}

/* Deterministic PRNG (xorshift64*) so failures reproduce. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed ? seed : 1; }

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static size_t rng_below(size_t n) { return n ? (size_t)(rng_next() % n) : 0; }

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static size_t random_cuts(size_t len, size_t *cuts, size_t max_cuts)
{
    size_t n = 1 + rng_below(max_cuts);
    for (size_t i = 0; i < n; i++)
        cuts[i] = rng_below(len + 1);
    qsort(cuts, n, sizeof(*cuts), cmp_size);
    return n;
}

/* --- UTF-8: reference decoder -------------------------------------------- */

/* Straight from RFC 3629's definition: decode, then refuse overlongs,
 * surrogates and values above U+10FFFF. Independent of framing.c's DFA. */
static void test_raw_binary(void **state)
{
    (void)state;
    struct framing_decoder d;
    struct collector c = {0};
    framing_decoder_init(&d, WSG_FRAMING_RAW, false, 0);
    assert_int_equal(framing_decode(&d, S("\xFF\x00\n"), collect, &c), FRAMING_OK);
    assert_int_equal(framing_decode(&d, NULL, 0, collect, &c), FRAMING_OK);
    assert_int_equal(framing_decode(&d, S("\xC3"), collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 2);
    assert_int_equal(msg_len(&c, 0), 3);
    assert_memory_equal(msg_at(&c, 0), "\xFF\x00\n", 3);
    assert_msg(&c, 1, "\xC3");  /* binary: no UTF-8 business */
    assert_int_equal(d.cap, 0); /* never buffers */
    framing_decoder_free(&d);
    collector_free(&c);
}

static void test_raw_text_passthrough(void **state)
{
    (void)state;
    struct framing_decoder d;
    struct collector c = {.check_utf8 = true};
    framing_decoder_init(&d, WSG_FRAMING_RAW, true, 0);
    assert_int_equal(framing_decode(&d, S("hello \xC3\xA9"), collect, &c), FRAMING_OK);
    assert_int_equal(framing_decode(&d, S("w\xC3"), collect, &c), FRAMING_OK);
    assert_int_equal(framing_decode(&d, S("\xA9!"), collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 3);
    assert_msg(&c, 0, "hello \xC3\xA9");
    assert_msg(&c, 1, "w");
    assert_msg(&c, 2, "\xC3\xA9!"); /* the held byte goes out in front */
    framing_decoder_free(&d);
    collector_free(&c);
}

static void test_raw_text_dribble(void **state)
{
    (void)state;
    static const char s[] = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
    static const size_t char_end[] = {2, 5, 9};
    struct framing_decoder d;
    struct collector c = {.check_utf8 = true};
    framing_decoder_init(&d, WSG_FRAMING_RAW, true, 0);
    size_t k = 0;
    for (size_t i = 0; i < sizeof s - 1; i++) {
        assert_int_equal(framing_decode(&d, (const uint8_t *)s + i, 1, collect, &c), FRAMING_OK);
        if (i + 1 == char_end[k])
            k++;
        assert_int_equal(c.n, k);                   /* a message only when a character completes */
        assert_true(d.cap <= buf_pool_size_for(4)); /* the bound, as a pool block */
    }
    assert_msg(&c, 0, "\xC3\xA9");
    assert_msg(&c, 1, "\xE2\x82\xAC");
    assert_msg(&c, 2, "\xF0\x9F\x98\x80");
    framing_decoder_free(&d);
    collector_free(&c);
}

static void test_raw_text_emoji_splits(void **state)
{
    (void)state;
    static const char emoji[] = "\xF0\x9F\x98\x80";
    for (size_t k = 1; k <= 3; k++) {
        struct framing_decoder d;
        struct collector c = {.check_utf8 = true};
        framing_decoder_init(&d, WSG_FRAMING_RAW, true, 0);
        assert_int_equal(framing_decode(&d, (const uint8_t *)emoji, k, collect, &c), FRAMING_OK);
        assert_int_equal(c.n, 0);
        assert_int_equal(framing_decode(&d, (const uint8_t *)emoji + k, 4 - k, collect, &c),
                         FRAMING_OK);
        assert_int_equal(c.n, 1);
        assert_msg(&c, 0, emoji);

        /* With text around it: "a" + first part, then the rest + "b". */
        uint8_t first[8] = "a", second[8];
        memcpy(first + 1, emoji, k);
        memcpy(second, emoji + k, 4 - k);
        second[4 - k] = 'b';
        assert_int_equal(framing_decode(&d, first, 1 + k, collect, &c), FRAMING_OK);
        assert_int_equal(framing_decode(&d, second, 5 - k, collect, &c), FRAMING_OK);
        assert_int_equal(c.n, 3);
        assert_msg(&c, 1, "a");
        assert_msg(&c, 2,
                   "\xF0\x9F\x98\x80"
                   "b");
        framing_decoder_free(&d);
        collector_free(&c);
    }
}

/* A held sequence completed by a large read: still one message. */
static void test_raw_text_large_join(void **state)
{
    (void)state;
    size_t n = 5000;
    uint8_t *in = malloc(n);
    assert_non_null(in);
    in[0] = 0xA9;
    memset(in + 1, 'x', n - 1);
    struct framing_decoder d;
    struct collector c = {.check_utf8 = true};
    framing_decoder_init(&d, WSG_FRAMING_RAW, true, 0);
    assert_int_equal(framing_decode(&d, S("\xC3"), collect, &c), FRAMING_OK);
    assert_int_equal(framing_decode(&d, in, n, collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(msg_len(&c, 0), n + 1);
    assert_memory_equal(msg_at(&c, 0), "\xC3\xA9xxx", 5);
    assert_int_equal(d.len, 0);
    framing_decoder_free(&d);
    collector_free(&c);
    free(in);
}

/* Invalid input fails at the first byte that makes it certain, whether it
 * arrives whole or byte by byte; what went out before is valid text. */
static void test_raw_text_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        size_t fails_at; /* index of the byte that makes it certain */
    } cases[] = {
        {"\xC0\x80", 2, 0},
        {"ab\xC1", 3, 2},
        {"\xE0\x80\x80", 3, 1},
        {"\xED\xA0\x80", 3, 1},
        {"\xF0\x80\x80\x80", 4, 1},
        {"\xF4\x90\x80\x80", 4, 1},
        {"\xF5", 1, 0},
        {"\xFF", 1, 0},
        {"ok\x80", 3, 2},
        {"\xC3\xA9\xA9", 3, 2},
        {"a\xE2\x82z", 4, 3},
        {"\xF0\x9F\x98\xF0\x9F\x98\x80", 7, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t *s = (const uint8_t *)cases[i].s;
        struct framing_decoder d;
        struct collector c = {.check_utf8 = true};
        framing_decoder_init(&d, WSG_FRAMING_RAW, true, 0);
        assert_int_equal(framing_decode(&d, s, cases[i].len, collect, &c), FRAMING_BAD_UTF8);
        framing_decoder_free(&d);

        framing_decoder_init(&d, WSG_FRAMING_RAW, true, 0);
        for (size_t k = 0; k < cases[i].len; k++) {
            enum framing_status st = framing_decode(&d, s + k, 1, collect, &c);
            if (st != (k == cases[i].fails_at ? FRAMING_BAD_UTF8 : FRAMING_OK))
                fail_msg("case %zu byte %zu: status %d", i, k, st);
            if (st != FRAMING_OK)
                break;
        }
        framing_decoder_free(&d);
        collector_free(&c);
    }
}

/* A held incomplete sequence meets a byte that cannot continue it. The
 * input is a heap copy of exact size so that a read outside it shows. */
static void test_raw_text_held_then_bad(void **state)
{
    (void)state;
    static const struct {
        struct utf8_case held, next;
    } cases[] = {
        {U("\xC3"), U("z")},        {U("\xC3"), U("\xC3\xA9")},     {U("\xE2\x82"), U("z")},
        {U("\xE0"), U("\x80\x80")}, {U("\xF0\x9F\x98"), U("\xF0")}, {U("\xED"), U("\xA0\x80ok")},
        {U("\xF4"), U("\x90")},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct framing_decoder d;
        struct collector c = {.check_utf8 = true};
        uint8_t *next = malloc(cases[i].next.len);
        assert_non_null(next);
        memcpy(next, cases[i].next.s, cases[i].next.len);
        framing_decoder_init(&d, WSG_FRAMING_RAW, true, 0);
        assert_int_equal(
            framing_decode(&d, (const uint8_t *)cases[i].held.s, cases[i].held.len, collect, &c),
            FRAMING_OK);
        assert_int_equal(d.len, cases[i].held.len);
        if (framing_decode(&d, next, cases[i].next.len, collect, &c) != FRAMING_BAD_UTF8)
            fail_msg("case %zu not refused", i);
        assert_int_equal(c.n, 0);
        framing_decoder_free(&d);
        collector_free(&c);
        free(next);
    }
}

/* Raw text at random cuts: the messages spell the stream, none empty. */
static void test_raw_text_chunking(void **state)
{
    (void)state;
    static const char s[] = "gr\xC3\xBC\xC3\x9F "
                            "\xE2\x82\xAC\xE2\x82\xAC \xF0\x9F\x98\x80\xF0\x9F\x98\x81 "
                            "\xE4\xB8\xAD\xE6\x96\x87 plain ascii \xF4\x8F\xBF\xBF.";
    const size_t len = sizeof s - 1;
    size_t cuts[24];
    rng_seed(42);
    for (int iter = 0; iter < 2000; iter++) {
        size_t ncuts = iter < (int)len + 1 ? 1 : random_cuts(len, cuts, 24);
        if (iter < (int)len + 1)
            cuts[0] = (size_t)iter;
        struct framing_decoder d;
        struct collector c = {.check_utf8 = true};
        framing_decoder_init(&d, WSG_FRAMING_RAW, true, 0);
        assert_int_equal(feed_cut(&d, (const uint8_t *)s, len, cuts, ncuts, &c), FRAMING_OK);
        assert_int_equal(c.len, len);
        assert_memory_equal(c.data, s, len);
        assert_true(c.n <= ncuts + 1);
        for (size_t i = 0; i < c.n; i++)
            assert_true(msg_len(&c, i) > 0);
        assert_int_equal(d.len, 0);
        assert_true(d.cap <= buf_pool_size_for(4)); /* the bound, as a pool block */
        framing_decoder_free(&d);
        collector_free(&c);
    }
}

/* --- lines ------------------------------------------------------------------- */

static void test_lines_basic(void **state)
{
    (void)state;
    for (int text = 0; text <= 1; text++) {
        struct framing_decoder d;
        struct collector c = {.check_utf8 = text};
        framing_decoder_init(&d, WSG_FRAMING_LINES, text, 100);
        assert_int_equal(framing_decode(&d, S("one\ntwo\r\n\n\r\nthr"), collect, &c), FRAMING_OK);
        assert_int_equal(c.n, 4);
        assert_int_equal(framing_decode(&d, S("ee"), collect, &c), FRAMING_OK);
        assert_int_equal(c.n, 4);
        assert_int_equal(framing_decode(&d, S("\r"), collect, &c), FRAMING_OK);
        assert_int_equal(framing_decode(&d, S("\n"), collect, &c), FRAMING_OK);
        assert_int_equal(framing_decode(&d, S("a\rb\nc\r\r\n\r\r\n"), collect, &c), FRAMING_OK);
        assert_int_equal(c.n, 8);
        assert_msg(&c, 0, "one");
        assert_msg(&c, 1, "two");
        assert_msg(&c, 2, ""); /* empty lines are messages too */
        assert_msg(&c, 3, "");
        assert_msg(&c, 4, "three");
        assert_msg(&c, 5, "a\rb"); /* only a '\r' right before '\n' goes */
        assert_msg(&c, 6, "c\r");
        assert_msg(&c, 7, "\r");
        assert_int_equal(d.len, 0);
        framing_decoder_free(&d);
        collector_free(&c);
    }
}

static void test_lines_binary_bytes(void **state)
{
    (void)state;
    struct framing_decoder d;
    struct collector c = {0};
    framing_decoder_init(&d, WSG_FRAMING_LINES, false, 0);
    assert_int_equal(framing_decode(&d, S("\xFF\x00\xC0\n\x80\n"), collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 2);
    assert_int_equal(msg_len(&c, 0), 3);
    assert_memory_equal(msg_at(&c, 0), "\xFF\x00\xC0", 3);
    assert_msg(&c, 1, "\x80");
    framing_decoder_free(&d);
    collector_free(&c);
}

static void test_lines_text_invalid(void **state)
{
    (void)state;
    static const struct utf8_case bad[] = {
        U("ok\n\xC0\x80\n"),       U("\xED\xA0\x80\n"), U("a\xE2\x82\n"),
        U("\xF4\x90\x80\x80\r\n"), U("\x80\n"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t cut = 0; cut <= bad[i].len; cut++) {
            struct framing_decoder d;
            struct collector c = {.check_utf8 = true};
            framing_decoder_init(&d, WSG_FRAMING_LINES, true, 100);
            if (feed_cut(&d, (const uint8_t *)bad[i].s, bad[i].len, &cut, 1, &c) !=
                FRAMING_BAD_UTF8)
                fail_msg("case %zu cut %zu: not refused", i, cut);
            framing_decoder_free(&d);
            collector_free(&c);
        }
    }
    /* The same bytes on a binary route are fine. */
    struct framing_decoder d;
    struct collector c = {0};
    framing_decoder_init(&d, WSG_FRAMING_LINES, false, 100);
    assert_int_equal(feed(&d, S("ok\n\xC0\x80\n"), &c), FRAMING_OK);
    assert_int_equal(c.n, 2);
    framing_decoder_free(&d);
    collector_free(&c);
}

static enum framing_status lines_max5(const char *const *chunks, size_t n)
{
    struct framing_decoder d;
    struct collector c = {0};
    enum framing_status st = FRAMING_OK;
    framing_decoder_init(&d, WSG_FRAMING_LINES, false, 5);
    for (size_t i = 0; i < n && st == FRAMING_OK; i++) {
        st = framing_decode(&d, (const uint8_t *)chunks[i], strlen(chunks[i]), collect, &c);
        assert_true(d.cap <= buf_pool_size_for(9)); /* the bound, as a pool block */
    }
    if (st == FRAMING_OK && c.n > 0)
        assert_true(msg_len(&c, c.n - 1) <= 5);
    framing_decoder_free(&d);
    collector_free(&c);
    return st;
}

#define CHUNKS(...)                                                                                \
    (const char *const[]){__VA_ARGS__},                                                            \
        sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)

/* A line over max_message fails as soon as the partial line proves it,
 * without waiting for (or buffering up to) the newline. */
static void test_lines_too_long(void **state)
{
    (void)state;
    assert_int_equal(lines_max5(CHUNKS("12345\n")), FRAMING_OK);
    assert_int_equal(lines_max5(CHUNKS("12345\r\n")), FRAMING_OK);
    assert_int_equal(lines_max5(CHUNKS("12345\r", "\n")), FRAMING_OK);
    assert_int_equal(lines_max5(CHUNKS("1234\r\r\n")), FRAMING_OK);
    assert_int_equal(lines_max5(CHUNKS("123456\n")), FRAMING_TOO_BIG);
    assert_int_equal(lines_max5(CHUNKS("123456")), FRAMING_TOO_BIG);
    assert_int_equal(lines_max5(CHUNKS("ok\n123456")), FRAMING_TOO_BIG);
    assert_int_equal(lines_max5(CHUNKS("123", "456")), FRAMING_TOO_BIG);
    assert_int_equal(lines_max5(CHUNKS("12345", "6\n")), FRAMING_TOO_BIG);
    assert_int_equal(lines_max5(CHUNKS("12345\r", "x")), FRAMING_TOO_BIG);
    assert_int_equal(lines_max5(CHUNKS("12345\r\r\n")), FRAMING_TOO_BIG);
    assert_int_equal(lines_max5(CHUNKS("1", "2", "3", "4", "5", "6")), FRAMING_TOO_BIG);
    /* Fails on the sixth byte, fed one at a time. */
    struct framing_decoder d;
    struct collector c = {0};
    framing_decoder_init(&d, WSG_FRAMING_LINES, false, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(framing_decode(&d, S("x"), collect, &c), FRAMING_OK);
    assert_int_equal(framing_decode(&d, S("x"), collect, &c), FRAMING_TOO_BIG);
    framing_decoder_free(&d);
    /* A huge partial line is refused without being copied. */
    uint8_t big[10000];
    memset(big, 'y', sizeof big);
    framing_decoder_init(&d, WSG_FRAMING_LINES, false, 5);
    assert_int_equal(framing_decode(&d, S("ok\n"), collect, &c), FRAMING_OK);
    assert_int_equal(framing_decode(&d, big, sizeof big, collect, &c), FRAMING_TOO_BIG);
    assert_true(d.cap <= buf_pool_size_for(9)); /* the bound, as a pool block */
    framing_decoder_free(&d);
    collector_free(&c);
}

/* --- length32 --------------------------------------------------------------- */

/* Appends one length32 frame to buf at *len. */
static void put_frame(uint8_t *buf, size_t *len, const void *payload, uint32_t n)
{
    framing_length32_header(n, buf + *len);
    if (n > 0)
        memcpy(buf + *len + 4, payload, n);
    *len += 4 + n;
}

static void test_length32_header(void **state)
{
    (void)state;
    uint8_t h[4];
    framing_length32_header(0x01020304u, h);
    assert_memory_equal(h, "\x01\x02\x03\x04", 4);
    framing_length32_header(0, h);
    assert_memory_equal(h, "\0\0\0\0", 4);
    framing_length32_header(UINT32_MAX, h);
    assert_memory_equal(h, "\xFF\xFF\xFF\xFF", 4);
    framing_length32_header(300, h);
    assert_memory_equal(h, "\0\0\x01\x2C", 4);
}

static void test_length32_basic(void **state)
{
    (void)state;
    for (int text = 0; text <= 1; text++) {
        uint8_t s[64];
        size_t len = 0;
        put_frame(s, &len, "hello", 5);
        put_frame(s, &len, "", 0);
        put_frame(s, &len, "\xC3\xA9", 2);
        put_frame(s, &len, "0123456789", 10);
        struct framing_decoder d;
        struct collector c = {.check_utf8 = text};
        framing_decoder_init(&d, WSG_FRAMING_LENGTH32, text, 10);
        assert_int_equal(framing_decode(&d, s, len, collect, &c), FRAMING_OK);
        assert_int_equal(c.n, 4);
        assert_msg(&c, 0, "hello");
        assert_msg(&c, 1, ""); /* zero-length frames are empty messages */
        assert_msg(&c, 2, "\xC3\xA9");
        assert_msg(&c, 3, "0123456789");
        assert_int_equal(d.len, 0);
        framing_decoder_free(&d);
        collector_free(&c);
    }
}

/* The header split at every point across two and three calls. */
static void test_length32_split_header(void **state)
{
    (void)state;
    uint8_t s[32];
    size_t len = 0;
    put_frame(s, &len, "abc", 3);
    for (size_t i = 0; i <= 4; i++) {
        for (size_t j = i; j <= 4; j++) {
            size_t cuts[2] = {i, j};
            struct framing_decoder d;
            struct collector c = {0};
            framing_decoder_init(&d, WSG_FRAMING_LENGTH32, false, 100);
            assert_int_equal(feed_cut(&d, s, len, cuts, 2, &c), FRAMING_OK);
            assert_int_equal(c.n, 1);
            assert_msg(&c, 0, "abc");
            framing_decoder_free(&d);
            collector_free(&c);
        }
    }
}

/* An oversize length is refused on the header alone, however it arrives. */
static void test_length32_too_big(void **state)
{
    (void)state;
    static const uint32_t lens[] = {11, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t s[12] = "\0\0\0\x02"
                        "ok";
        framing_length32_header(lens[i], s + 6);
        for (size_t cut = 0; cut <= 10; cut++) {
            struct framing_decoder d;
            struct collector c = {0};
            framing_decoder_init(&d, WSG_FRAMING_LENGTH32, false, 10);
            assert_int_equal(feed_cut(&d, s, 10, &cut, 1, &c), FRAMING_TOO_BIG);
            assert_int_equal(c.n, 1);                    /* the frame before it went out */
            assert_true(d.cap <= buf_pool_size_for(14)); /* the bound, as a pool block */
            framing_decoder_free(&d);
            collector_free(&c);
        }
    }
    /* Exactly max_message is fine; no limit when max_message is 0. */
    uint8_t s[32];
    size_t len = 0;
    put_frame(s, &len, "0123456789", 10);
    struct framing_decoder d;
    struct collector c = {0};
    framing_decoder_init(&d, WSG_FRAMING_LENGTH32, false, 10);
    assert_int_equal(feed(&d, s, len, &c), FRAMING_OK);
    framing_decoder_free(&d);
    framing_decoder_init(&d, WSG_FRAMING_LENGTH32, false, 0);
    assert_int_equal(framing_decode(&d, S("\x10\0\0\0"), collect, &c), FRAMING_OK);
    framing_decoder_free(&d);
    collector_free(&c);
}

static void test_length32_text_invalid(void **state)
{
    (void)state;
    static const struct utf8_case bad[] = {
        U("\xED\xA0\x80"),
        U("\xC0\x80"),
        U("ab\xE2\x82"),
        U("\xF4\x90\x80\x80"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t s[32];
        size_t len = 0;
        put_frame(s, &len, bad[i].s, (uint32_t)bad[i].len);
        struct framing_decoder d;
        struct collector c = {0};
        framing_decoder_init(&d, WSG_FRAMING_LENGTH32, true, 100);
        assert_int_equal(feed(&d, s, len, &c), FRAMING_BAD_UTF8);
        framing_decoder_free(&d);
        framing_decoder_init(&d, WSG_FRAMING_LENGTH32, false, 100);
        assert_int_equal(feed(&d, s, len, &c), FRAMING_OK);
        framing_decoder_free(&d);
        collector_free(&c);
    }
}

/* --- any chunking, same messages --------------------------------------------- */

static size_t lines_stream(uint8_t *s)
{
    static const char text[] = "hello\r\nw\xC3\xB6rld\n\n\r\n\xE2\x82\xAC"
                               "uro \xF0\x9F\x98\x80 emoji\nno cr\r here\n\r\r\n"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
                               "\xF4\x8F\xBF\xBF\r\ntail without newline \xC3\xA9";
    memcpy(s, text, sizeof text - 1);
    return sizeof text - 1;
}

static size_t length32_stream(uint8_t *s)
{
    size_t len = 0;
    put_frame(s, &len, "", 0);
    put_frame(s, &len, "a", 1);
    put_frame(s, &len, "h\xC3\xA9llo\n", 7);
    put_frame(s, &len, "\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 8);
    put_frame(s, &len, "", 0);
    put_frame(s, &len, "0123456789012345678901234567890123456789012345678901234567890123", 64);
    put_frame(s, &len, "\xE2\x82\xAC", 3);
    memcpy(s + len,
           "\0\0\0\x05"
           "ab",
           6); /* a partial frame at the end stays buffered */
    return len + 6;
}

/* Feeds the stream whole, at every single cut, at every pair of cuts and at
 * seeded random cuts, with and without emit asking to stop: the messages
 * must be the same every time. */
static void check_chunking(enum wsg_framing framing, bool text, const uint8_t *s, size_t len,
                           size_t expect_n)
{
    struct framing_decoder d;
    struct collector want = {.check_utf8 = text};
    framing_decoder_init(&d, framing, text, 64);
    assert_int_equal(feed(&d, s, len, &want), FRAMING_OK);
    assert_int_equal(want.n, expect_n);
    framing_decoder_free(&d);

    size_t cuts[40];
    rng_seed(0x5EED + (uint64_t)framing * 2 + text);
    size_t singles = len + 1, pairs = (len + 1) * (len + 2) / 2;
    for (size_t iter = 0; iter < singles + pairs + 3000; iter++) {
        size_t ncuts;
        if (iter < singles) {
            cuts[0] = iter, ncuts = 1;
        } else if (iter < singles + pairs) {
            size_t k = iter - singles, i = 0;
            while (k > len - i)
                k -= len - i + 1, i++;
            cuts[0] = i, cuts[1] = i + k, ncuts = 2;
        } else {
            ncuts = random_cuts(len, cuts, 40);
        }
        struct collector got = {.check_utf8 = text, .stop_every = (unsigned)(iter % 4)};
        framing_decoder_init(&d, framing, text, 64);
        if (feed_cut(&d, s, len, cuts, ncuts, &got) != FRAMING_OK)
            fail_msg("iteration %zu failed", iter);
        assert_same_messages(&want, &got);
        assert_true(d.cap <= buf_pool_size_for(64 + 4)); /* the bound, as a pool block */
        framing_decoder_free(&d);
        collector_free(&got);
    }
    collector_free(&want);
}

static void test_lines_chunking(void **state)
{
    (void)state;
    uint8_t s[256];
    size_t len = lines_stream(s);
    check_chunking(WSG_FRAMING_LINES, false, s, len, 9);
    check_chunking(WSG_FRAMING_LINES, true, s, len, 9);
}

static void test_length32_chunking(void **state)
{
    (void)state;
    uint8_t s[256];
    size_t len = length32_stream(s);
    check_chunking(WSG_FRAMING_LENGTH32, false, s, len, 7);
    check_chunking(WSG_FRAMING_LENGTH32, true, s, len, 7);
}

/* --- backpressure -------------------------------------------------------------- */

static void test_stop_and_resume_lines(void **state)
{
    (void)state;
    struct framing_decoder d;
    struct collector c = {.stop_every = 1};
    framing_decoder_init(&d, WSG_FRAMING_LINES, false, 10);
    assert_int_equal(framing_decode(&d, S("a\nb\n\nc\nd"), collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(framing_decode(&d, NULL, 0, collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 2);
    /* New input while stopped queues behind what is held. */
    assert_int_equal(framing_decode(&d, S("e\nf"), collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 3);
    for (int i = 0; i < 5; i++)
        assert_int_equal(framing_decode(&d, NULL, 0, collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 5);
    assert_int_equal(framing_decode(&d, S("\n"), collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 6);
    assert_msg(&c, 0, "a");
    assert_msg(&c, 1, "b");
    assert_msg(&c, 2, "");
    assert_msg(&c, 3, "c");
    assert_msg(&c, 4, "de");
    assert_msg(&c, 5, "f");
    assert_int_equal(d.len, 0);
    framing_decoder_free(&d);
    collector_free(&c);
}

static void test_stop_and_resume_length32(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t len = 0;
    put_frame(s, &len, "one", 3);
    put_frame(s, &len, "", 0);
    put_frame(s, &len, "three", 5);
    struct framing_decoder d;
    struct collector c = {.stop_every = 1};
    framing_decoder_init(&d, WSG_FRAMING_LENGTH32, false, 10);
    assert_int_equal(framing_decode(&d, s, len - 2, collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(framing_decode(&d, NULL, 0, collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 2);
    assert_int_equal(framing_decode(&d, NULL, 0, collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 2); /* the third frame is not complete yet */
    assert_int_equal(framing_decode(&d, s + len - 2, 2, collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 3);
    assert_msg(&c, 0, "one");
    assert_msg(&c, 1, "");
    assert_msg(&c, 2, "three");
    framing_decoder_free(&d);
    collector_free(&c);
}

/* raw delivers one message per call, so a stop never leaves anything behind. */
static void test_stop_raw(void **state)
{
    (void)state;
    struct framing_decoder d;
    struct collector c = {.stop_every = 1, .check_utf8 = true};
    framing_decoder_init(&d, WSG_FRAMING_RAW, true, 0);
    assert_int_equal(framing_decode(&d, S("ab\xC3"), collect, &c), FRAMING_OK);
    assert_int_equal(framing_decode(&d, S("\xA9"), collect, &c), FRAMING_OK);
    assert_int_equal(framing_decode(&d, NULL, 0, collect, &c), FRAMING_OK);
    assert_int_equal(c.n, 2);
    assert_msg(&c, 0, "ab");
    assert_msg(&c, 1, "\xC3\xA9");
    framing_decoder_free(&d);
    collector_free(&c);
}

/* --- memory ------------------------------------------------------------------- */

/* A long run of random lines / frames in random reads: the buffer never
 * holds more than max_message + 4 bytes, and nothing is lost. */
static void test_bounded_buffer(void **state)
{
    (void)state;
    const size_t max = 100, total = 1 << 20;
    uint8_t *s = malloc(total + 200);
    assert_non_null(s);
    rng_seed(7);
    for (int framing = WSG_FRAMING_LINES; framing <= WSG_FRAMING_LENGTH32; framing++) {
        size_t len = 0, lines = 0;
        while (len < total) {
            size_t n = rng_below(max + 1);
            if (framing == WSG_FRAMING_LENGTH32) {
                framing_length32_header((uint32_t)n, s + len);
                len += 4;
            }
            for (size_t i = 0; i < n; i++)
                s[len++] = (uint8_t)('a' + rng_below(26));
            if (framing == WSG_FRAMING_LINES) {
                if (n > 0 && rng_below(2))
                    s[len - 1] = '\r';
                s[len++] = '\n';
            }
            lines++;
        }
        struct framing_decoder d;
        struct collector c = {0};
        framing_decoder_init(&d, (enum wsg_framing)framing, false, max);
        for (size_t off = 0; off < len;) {
            size_t n = 1 + rng_below(rng_below(2) ? 7 : 700);
            if (n > len - off)
                n = len - off;
            assert_int_equal(framing_decode(&d, s + off, n, collect, &c), FRAMING_OK);
            assert_true(d.cap <= buf_pool_size_for(max + 4)); /* the bound, as a pool block */
            off += n;
        }
        assert_int_equal(c.n, lines);
        assert_int_equal(d.len, 0);
        framing_decoder_free(&d);
        collector_free(&c);
    }
    free(s);
}

/* A stop may park a whole read in the buffer; once delivered, the buffer
 * goes back under its bound. */
static void test_buffer_shrinks_after_stop(void **state)
{
    (void)state;
    uint8_t s[6000];
    for (size_t i = 0; i < sizeof s; i += 3)
        memcpy(s + i, "ab\n", 3);
    struct framing_decoder d;
    struct collector c = {.stop_every = 1};
    framing_decoder_init(&d, WSG_FRAMING_LINES, false, 10);
    assert_int_equal(feed(&d, s, sizeof s, &c), FRAMING_OK);
    assert_int_equal(c.n, sizeof s / 3);
    assert_true(d.cap <= buf_pool_size_for(14)); /* the bound, as a pool block */
    framing_decoder_free(&d);
    collector_free(&c);
}

static void test_free_twice(void **state)
{
    (void)state;
    struct framing_decoder d;
    struct collector c = {0};
    framing_decoder_init(&d, WSG_FRAMING_LINES, false, 10);
    assert_null(d.buf);
    assert_int_equal(framing_decode(&d, S("partial"), collect, &c), FRAMING_OK);
    assert_non_null(d.buf);
    framing_decoder_free(&d);
    assert_null(d.buf);
    assert_int_equal(d.len, 0);
    assert_int_equal(d.cap, 0);
    framing_decoder_free(&d);
    collector_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_binary),
        cmocka_unit_test(test_raw_text_passthrough),
        cmocka_unit_test(test_raw_text_dribble),
        cmocka_unit_test(test_raw_text_emoji_splits),
        cmocka_unit_test(test_raw_text_large_join),
        cmocka_unit_test(test_raw_text_invalid),
        cmocka_unit_test(test_raw_text_held_then_bad),
        cmocka_unit_test(test_raw_text_chunking),
        cmocka_unit_test(test_lines_basic),
        cmocka_unit_test(test_lines_binary_bytes),
        cmocka_unit_test(test_lines_text_invalid),
        cmocka_unit_test(test_lines_too_long),
        cmocka_unit_test(test_length32_header),
        cmocka_unit_test(test_length32_basic),
        cmocka_unit_test(test_length32_split_header),
        cmocka_unit_test(test_length32_too_big),
        cmocka_unit_test(test_length32_text_invalid),
        cmocka_unit_test(test_lines_chunking),
        cmocka_unit_test(test_length32_chunking),
        cmocka_unit_test(test_stop_and_resume_lines),
        cmocka_unit_test(test_stop_and_resume_length32),
        cmocka_unit_test(test_stop_raw),
        cmocka_unit_test(test_bounded_buffer),
        cmocka_unit_test(test_buffer_shrinks_after_stop),
        cmocka_unit_test(test_free_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

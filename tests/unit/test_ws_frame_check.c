/* test_ws_frame_check.c - RFC 6455 client-frame rules (ws_frame_check.c),
 * each stream fed whole, one byte at a time and in pseudo-random runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ws_frame_check.h"

#include <stdlib.h>
#include <string.h>

/* A stream built frame by frame. */
struct stream {
    uint8_t b[70000];
    size_t len;
    size_t frame_at[16]; /* offset of each frame */
    size_t n_frames;
};

/* Appends a frame: b0 is FIN|RSV|opcode as sent, masked unless told. */
static void put_frame_ex(struct stream *s, uint8_t b0, const void *payload, uint64_t n, bool masked,
                         int len_form)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    s->frame_at[s->n_frames++] = s->len;
    s->b[s->len++] = b0;
    uint8_t m = masked ? 0x80 : 0;
    if (len_form == 0 && n < 126) {
        s->b[s->len++] = m | (uint8_t)n;
    } else if (len_form <= 16 && n < 65536) {
        s->b[s->len++] = m | 126;
        s->b[s->len++] = (uint8_t)(n >> 8);
        s->b[s->len++] = (uint8_t)n;
    } else {
        s->b[s->len++] = m | 127;
        for (int i = 7; i >= 0; i--)
            s->b[s->len++] = (uint8_t)(n >> (8 * i));
    }
    if (masked) {
        memcpy(s->b + s->len, key, 4);
        s->len += 4;
    }
    const uint8_t *p = payload;
    for (uint64_t i = 0; p && i < n; i++)
        s->b[s->len++] = masked ? p[i] ^ key[i % 4] : p[i];
}

static void put_frame(struct stream *s, uint8_t b0, const void *payload, size_t n)
{
    put_frame_ex(s, b0, payload, n, true, 0);
}

static void put_close(struct stream *s, unsigned code, const char *reason)
{
    uint8_t p[125];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    size_t n = strlen(reason);
    memcpy(p + 2, reason, n);
    put_frame(s, 0x88, p, n + 2);
}

struct outcome {
    int rc;
    int code;
    const char *reason;
    size_t cut; /* stream offset before which everything was let through */
};

/* Feeds the stream in runs: split 0 whole, 1 byte by byte, else runs of
 * pseudo-random length seeded by `split`. */
static struct outcome feed(const struct stream *s, unsigned split, uint8_t settings)
{
    struct ws_frame_check c;
    ws_frame_check_init(&c, settings);
    struct outcome o = {0, 0, NULL, s->len};
    unsigned seed = split;
    size_t pos = 0;
    while (pos < s->len) {
        size_t n = s->len - pos;
        if (split == 1)
            n = 1;
        else if (split > 1) {
            seed = seed * 1103515245u + 12345u;
            size_t r = 1 + (seed >> 16) % 23;
            n = r < n ? r : n;
        }
        struct ws_frame_verdict v;
        int rc = ws_frame_check_feed(&c, s->b + pos, n, &v);
        if (rc == WS_FC_END) { /* a close frame ended the stream */
            o.rc = rc;
            o.cut = pos + v.keep;
            assert_int_equal(ws_frame_check_feed(&c, s->b, 1, &v), WS_FC_END);
            assert_int_equal(v.keep, 0);
            return o;
        }
        if (rc != WS_FC_OK) {
            o.rc = -1;
            o.code = v.code;
            o.reason = v.reason;
            o.cut = pos + v.keep;
            assert_true(v.keep <= v.at);
            assert_true(v.at < n);
            /* Once failed, it stays failed. */
            struct ws_frame_verdict again;
            assert_int_equal(ws_frame_check_feed(&c, s->b, 1, &again), -1);
            assert_int_equal(again.code, v.code);
            assert_int_equal(again.keep, 0);
            return o;
        }
        pos += n;
    }
    return o;
}

/* Every split gives the same verdict; whole, the cut is at frame `bad`'s
 * start; split, it is never past that frame's deciding byte. */
static void expect_fail(const struct stream *s, size_t bad, int code, const char *reason_part)
{
    for (unsigned split = 0; split < 12; split++) {
        struct outcome o = feed(s, split, 0);
        assert_int_equal(o.rc, -1);
        assert_int_equal(o.code, code);
        assert_non_null(strstr(o.reason, reason_part));
        assert_true(o.cut >= s->frame_at[bad]);
        if (split == 0)
            assert_int_equal(o.cut, s->frame_at[bad]);
    }
}

static void expect_ok(const struct stream *s, uint8_t settings)
{
    for (unsigned split = 0; split < 12; split++)
        assert_true(feed(s, split, settings).rc >= 0);
}

static void test_valid_mixed_stream(void **state)
{
    (void)state;
    struct stream *s = calloc(1, sizeof(*s));
    put_frame(s, 0x81, "hello", 5);
    put_frame(s, 0x82, "\x00\xff\xfe", 3);
    put_frame(s, 0x89, "ping", 4);
    put_frame(s, 0x8a, "", 0);
    uint8_t big[300];
    memset(big, 'x', sizeof(big));
    put_frame(s, 0x82, big, sizeof(big));     /* 16-bit length */
    put_frame_ex(s, 0x82, big, 10, true, 64); /* 64-bit length, not minimal: allowed */
    put_frame(s, 0x01, "frag", 4);
    put_frame(s, 0x89, "", 0); /* control frames may come between fragments */
    put_frame(s, 0x00, "ment", 4);
    put_frame(s, 0x80, "ed", 2);
    put_close(s, 1000, "bye");
    expect_ok(s, 0);
    struct ws_frame_check c;
    ws_frame_check_init(&c, 0);
    struct ws_frame_verdict v;
    assert_int_equal(ws_frame_check_feed(&c, s->b, s->len, &v), WS_FC_END);
    assert_int_equal(v.keep, s->len);
    assert_int_equal(ws_frame_check_close_code(&c), 1000);
    free(s);
}

static void test_large_payload_is_skipped(void **state)
{
    (void)state;
    struct stream *s = calloc(1, sizeof(*s));
    static uint8_t big[65600];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)i; /* not UTF-8: binary is not read */
    put_frame(s, 0x82, big, sizeof(big));
    put_frame(s, 0x81, "ok", 2);
    expect_ok(s, 0);
    free(s);
}

static void test_unmasked_frame_1002(void **state)
{
    (void)state;
    struct stream s = {0};
    put_frame(&s, 0x81, "fine", 4);
    put_frame_ex(&s, 0x82, "plain", 5, false, 0);
    expect_fail(&s, 1, 1002, "unmasked");
}

static void test_reserved_bits_1002(void **state)
{
    (void)state;
    for (uint8_t rsv = 0x10; rsv <= 0x70; rsv += 0x10) {
        struct stream s = {0};
        put_frame(&s, 0x89, "", 0);
        put_frame(&s, (uint8_t)(0x81 | rsv), "x", 1);
        expect_fail(&s, 1, 1002, "reserved");
    }
    /* RSV1 only once permessage-deflate is negotiated, and only on data */
    struct stream s = {0};
    put_frame(&s, 0xc1, "x", 1);
    expect_ok(&s, WS_FC_ALLOW_RSV1);
    struct stream t = {0};
    put_frame(&t, 0xc9, "", 0);
    struct outcome o = feed(&t, 0, WS_FC_ALLOW_RSV1);
    assert_int_equal(o.code, 1002);
}

static void test_unknown_opcodes_1002(void **state)
{
    (void)state;
    const uint8_t ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < sizeof(ops); i++) {
        struct stream s = {0};
        put_frame(&s, 0x82, "a", 1);
        put_frame(&s, (uint8_t)(0x80 | ops[i]), "", 0);
        expect_fail(&s, 1, 1002, "opcode");
    }
}

static void test_control_frames(void **state)
{
    (void)state;
    uint8_t p[126];
    memset(p, 'p', sizeof(p));
    struct stream ok = {0};
    put_frame(&ok, 0x89, p, 125);
    put_frame(&ok, 0x8a, p, 125);
    expect_ok(&ok, 0);

    uint8_t ops[] = {0x89, 0x8a, 0x88};
    for (size_t i = 0; i < 3; i++) {
        struct stream s = {0};
        put_frame(&s, ops[i], p, 126);
        expect_fail(&s, 0, 1002, "125");
        struct stream f = {0};
        put_frame(&f, 0x82, "a", 1);
        put_frame(&f, (uint8_t)(ops[i] & 0x7f), "", 0); /* FIN = 0 */
        expect_fail(&f, 1, 1002, "fragmented control");
    }
}

static void test_fragmentation(void **state)
{
    (void)state;
    struct stream s = {0};
    put_frame(&s, 0x80, "x", 1);
    expect_fail(&s, 0, 1002, "continuation");

    struct stream t = {0};
    put_frame(&t, 0x02, "a", 1);
    put_frame(&t, 0x82, "b", 1);
    expect_fail(&t, 1, 1002, "inside");

    struct stream u = {0}; /* continuation after the message ended */
    put_frame(&u, 0x01, "a", 1);
    put_frame(&u, 0x80, "b", 1);
    put_frame(&u, 0x00, "c", 1);
    expect_fail(&u, 2, 1002, "continuation");

    struct stream e = {0}; /* empty fragments are fine */
    put_frame(&e, 0x01, "", 0);
    put_frame(&e, 0x00, "", 0);
    put_frame(&e, 0x80, "", 0);
    expect_ok(&e, 0);
}

static void test_close_frames(void **state)
{
    (void)state;
    struct stream one = {0};
    put_frame(&one, 0x88, "\x03", 1);
    expect_fail(&one, 0, 1002, "1-byte");

    struct stream empty = {0};
    put_frame(&empty, 0x88, "", 0);
    expect_ok(&empty, 0);

    const unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct stream s = {0};
        put_close(&s, bad[i], "");
        expect_fail(&s, 0, 1002, "close code");
        assert_false(ws_close_code_valid(bad[i]));
    }
    const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                             1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct stream s = {0};
        put_close(&s, good[i], "r\xc3\xa9sum\xc3\xa9");
        expect_ok(&s, 0);
        struct ws_frame_check c;
        ws_frame_check_init(&c, 0);
        struct ws_frame_verdict v;
        assert_int_equal(ws_frame_check_feed(&c, s.b, s.len, &v), WS_FC_END);
        assert_int_equal(ws_frame_check_close_code(&c), (int)good[i]);
    }

    struct stream r = {0};
    put_close(&r, 1000, "bad \xff here");
    expect_fail(&r, 0, 1007, "reason");
    struct stream cut = {0}; /* a reason that ends inside a character */
    put_close(&cut, 1000, "ends \xe2\x82");
    expect_fail(&cut, 0, 1007, "reason");

    /* Nothing after a valid close is judged, and the cut is right after it. */
    struct stream after = {0};
    put_close(&after, 1000, "");
    put_frame_ex(&after, 0x8f, "", 0, false, 0);
    for (unsigned split = 0; split < 12; split++) {
        struct outcome o = feed(&after, split, 0);
        assert_int_equal(o.rc, WS_FC_END);
        assert_int_equal(o.cut, after.frame_at[1]);
    }
}

static void test_length_top_bit_1002(void **state)
{
    (void)state;
    struct stream s = {0};
    put_frame_ex(&s, 0x82, NULL, 0x8000000000000000ull, true, 64);
    expect_fail(&s, 0, 1002, "2^63");
}

static void test_text_utf8_across_frames(void **state)
{
    (void)state;
    /* U+20AC (E2 82 AC) and U+1F600 (F0 9F 98 80) split over fragments,
     * with a ping in between. */
    struct stream s = {0};
    put_frame(&s, 0x01, "\xe2", 1);
    put_frame(&s, 0x89, "\xff\xfe", 2); /* control payload is not text */
    put_frame(&s, 0x00, "\x82", 1);
    put_frame(&s, 0x8a, "\xff", 1);
    put_frame(&s, 0x00, "\xac\xf0\x9f", 3);
    put_frame(&s, 0x80, "\x98\x80", 2);
    expect_ok(&s, 0);

    struct stream bad = {0};
    put_frame(&bad, 0x01, "ok\xe2\x82", 4);
    put_frame(&bad, 0x00, "\x28", 1); /* not a continuation byte */
    expect_fail(&bad, 1, 1007, "not UTF-8");

    struct stream end = {0};
    put_frame(&end, 0x01, "ok\xe2", 3);
    put_frame(&end, 0x80, "\x82", 1);
    expect_fail(&end, 1, 1007, "inside a character");

    struct stream empty_end = {0}; /* the message ends with an empty frame */
    put_frame(&empty_end, 0x01, "\xc3", 1);
    put_frame(&empty_end, 0x80, "", 0);
    expect_fail(&empty_end, 1, 1007, "inside a character");

    const char *invalid[] = {
        "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\xe0\x80\xaf",
        "\x80",     "\xfe"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        struct stream t = {0};
        put_frame(&t, 0x81, invalid[i], strlen(invalid[i]));
        expect_fail(&t, 0, 1007, "UTF-8");
        expect_ok(&t, WS_FC_NO_TEXT_UTF8);
    }
    /* binary is never read */
    struct stream b = {0};
    put_frame(&b, 0x82, "\xff", 1);
    expect_ok(&b, 0);
    /* a text message after a binary one starts clean */
    struct stream tb = {0};
    put_frame(&tb, 0x02, "\xe2", 1);
    put_frame(&tb, 0x80, "\x82", 1);
    put_frame(&tb, 0x81, "\xe2\x82\xac", 3);
    expect_ok(&tb, 0);
}

/* on_ping: every ping that passed, with where it starts and ends in the run
 * (or WS_FC_BEFORE_RUN when it began in an earlier one); in_ping after a run
 * that ends inside one. */
struct pings_seen {
    size_t start[8], end[8], n;
};

static void record_ping(void *ctx, size_t start, size_t end)
{
    struct pings_seen *p = ctx;
    p->start[p->n] = start;
    p->end[p->n++] = end;
}

static void test_ping_events(void **state)
{
    (void)state;
    static struct stream s;
    memset(&s, 0, sizeof(s));
    put_frame(&s, 0x89, "a", 1);  /* ping */
    put_frame(&s, 0x81, "hi", 2); /* text */
    put_frame(&s, 0x89, NULL, 0); /* empty ping */
    put_frame(&s, 0x8a, "x", 1);  /* pong: not reported */
    put_frame(&s, 0x89, "bc", 2); /* ping, cut below */
    size_t cut = s.frame_at[4] + 3;

    struct ws_frame_check c;
    ws_frame_check_init(&c, 0);
    struct pings_seen seen = {0};
    const struct ws_frame_events ev = {.on_ping = record_ping, .ctx = &seen};
    struct ws_frame_verdict v;
    assert_int_equal(ws_frame_check_feed_ev(&c, s.b, cut, &v, &ev), WS_FC_OK);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.start[0], s.frame_at[0]);
    assert_int_equal(seen.end[0], s.frame_at[1]);
    assert_int_equal(seen.start[1], s.frame_at[2]);
    assert_int_equal(seen.end[1], s.frame_at[3]);
    assert_true(ws_frame_check_in_ping(&c));

    assert_int_equal(ws_frame_check_feed_ev(&c, s.b + cut, s.len - cut, &v, &ev), WS_FC_OK);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.start[2], WS_FC_BEFORE_RUN);
    assert_int_equal(seen.end[2], s.len - cut);
    assert_false(ws_frame_check_in_ping(&c));
}

/* One frame read back from a stream: its opcode, whether its key is all
 * zero, and its payload unmasked with whatever key it carries. */
struct read_frame {
    uint8_t op;
    bool zero_key;
    size_t at, len; /* payload offset in the stream and length */
};

static size_t read_frames(uint8_t *b, size_t len, struct read_frame *out, size_t max)
{
    size_t pos = 0, n = 0;
    while (pos < len && n < max) {
        struct read_frame *f = &out[n++];
        f->op = b[pos] & 0x0f;
        uint64_t plen = b[pos + 1] & 0x7f;
        pos += 2;
        if (plen >= 126) {
            size_t bytes = plen == 126 ? 2 : 8;
            plen = 0;
            for (size_t i = 0; i < bytes; i++)
                plen = plen << 8 | b[pos++];
        }
        const uint8_t *key = b + pos;
        f->zero_key = !(key[0] | key[1] | key[2] | key[3]);
        pos += 4;
        f->at = pos;
        f->len = (size_t)plen;
        for (size_t i = 0; i < plen; i++)
            b[pos + i] ^= key[i % 4];
        pos += (size_t)plen;
    }
    assert_int_equal(pos, len);
    return n;
}

/* With `unmask`, data frames whose key lies in one run arrive with a zero
 * key and their payload in clear; the rest as they came; control frames
 * always masked. Read back, every payload is what was sent, for every
 * split. */
static void test_unmask_in_place(void **state)
{
    (void)state;
    static struct stream s, work;
    static uint8_t sent[70000];
    memset(&s, 0, sizeof(s));
    static const size_t sizes[] = {0, 1, 3, 8, 13, 125, 126, 300, 4096, 20000, 40000};
    size_t n_data = sizeof(sizes) / sizeof(sizes[0]);
    for (size_t i = 0; i < sizeof(sent); i++)
        sent[i] = (uint8_t)(i * 131 + 7);
    put_frame(&s, 0x01, "h\xc3", 2); /* text in two fragments, a ping between */
    put_frame(&s, 0x89, "ping", 4);
    put_frame(&s, 0x80, "\xa9llo", 4);
    for (size_t k = 0; k < n_data; k++)
        put_frame(&s, 0x82, sent, sizes[k]);
    put_close(&s, 1000, "bye");
    size_t n_frames = s.n_frames;

    for (unsigned split = 0; split < 40; split++) {
        memcpy(&work, &s, sizeof(s));
        struct ws_frame_check c;
        ws_frame_check_init(&c, 0);
        unsigned seed = split;
        size_t pos = 0, min_run = SIZE_MAX;
        int rc = WS_FC_OK;
        while (pos < work.len && rc == WS_FC_OK) {
            size_t n = work.len - pos;
            if (split == 1)
                n = 1;
            else if (split > 1) {
                seed = seed * 1103515245u + 12345u;
                size_t r = 1 + (seed >> 16) % (split < 20 ? 23 : 9000);
                n = r < n ? r : n;
            }
            min_run = n < min_run ? n : min_run;
            const struct ws_frame_events ev = {.unmask = work.b + pos};
            struct ws_frame_verdict v;
            rc = ws_frame_check_feed_ev(&c, work.b + pos, n, &v, &ev);
            pos += n;
        }
        assert_int_equal(rc, WS_FC_END);

        struct read_frame f[16];
        assert_int_equal(read_frames(work.b, work.len, f, 16), n_frames);
        size_t zero_keys = 0;
        for (size_t k = 0; k < n_frames; k++) {
            bool control = f[k].op & 0x8;
            if (control)
                assert_false(f[k].zero_key);
            zero_keys += f[k].zero_key;
            if (k >= 3 && k < 3 + n_data) {
                assert_int_equal(f[k].len, sizes[k - 3]);
                if (f[k].len)
                    assert_memory_equal(work.b + f[k].at, sent, f[k].len);
            }
        }
        assert_memory_equal(work.b + f[0].at, "h\xc3", 2);
        assert_memory_equal(work.b + f[1].at, "ping", 4);
        assert_memory_equal(work.b + f[2].at, "\xa9llo", 4);
        if (split == 0) /* one run: every data frame cleared */
            assert_int_equal(zero_keys, n_frames - 2);
        if (min_run < 4 && split == 1) /* a byte at a time: no key whole in a run */
            assert_int_equal(zero_keys, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_mixed_stream),
        cmocka_unit_test(test_large_payload_is_skipped),
        cmocka_unit_test(test_unmasked_frame_1002),
        cmocka_unit_test(test_reserved_bits_1002),
        cmocka_unit_test(test_unknown_opcodes_1002),
        cmocka_unit_test(test_control_frames),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_length_top_bit_1002),
        cmocka_unit_test(test_text_utf8_across_frames),
        cmocka_unit_test(test_ping_events),
        cmocka_unit_test(test_unmask_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

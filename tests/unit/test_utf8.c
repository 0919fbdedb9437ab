/* test_utf8.c - utf8.c against a reference decoder written the slow,
 * obvious way: whole buffers, prefixes cut inside characters, every 2- and
 * 4-byte sequence of interesting bytes, one byte at a time, and cuts of
 * valid text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "utf8.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static bool ref_valid(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        size_t more;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            more = 1, cp = b & 0x1Fu, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            more = 2, cp = b & 0x0Fu, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            more = 3, cp = b & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < more)
            return false;
        for (size_t j = 1; j <= more; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += more + 1;
    }
    return true;
}

/* Can some continuation make s valid? The constraints on continuation bytes
 * are ranges bounded by these six values, so trying them is exhaustive. */
static bool ref_completable(const uint8_t *s, size_t n)
{
    static const uint8_t cand[] = {0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF};
    uint8_t t[16];
    memcpy(t, s, n);
    if (ref_valid(t, n))
        return true;
    for (size_t a = 0; a < 6; a++) {
        t[n] = cand[a];
        if (ref_valid(t, n + 1))
            return true;
        for (size_t b = 0; b < 6; b++) {
            t[n + 1] = cand[b];
            if (ref_valid(t, n + 2))
                return true;
            for (size_t c = 0; c < 6; c++) {
                t[n + 2] = cand[c];
                if (ref_valid(t, n + 3))
                    return true;
            }
        }
    }
    return false;
}

/* utf8_complete_prefix and utf8_is_valid against the reference, for one string. */
static void check_against_reference(const uint8_t *s, size_t n)
{
    bool bad;
    size_t p = utf8_complete_prefix(s, n, &bad);
    if (utf8_is_valid(s, n) != ref_valid(s, n))
        fail_msg("utf8_is_valid disagrees on %02x %02x %02x %02x (n=%zu)", n > 0 ? s[0] : 0,
                 n > 1 ? s[1] : 0, n > 2 ? s[2] : 0, n > 3 ? s[3] : 0, n);
    if (bad == ref_completable(s, n))
        fail_msg("bad=%d wrong on %02x %02x %02x (n=%zu)", bad, n > 0 ? s[0] : 0, n > 1 ? s[1] : 0,
                 n > 2 ? s[2] : 0, n);
    if (bad)
        return;
    assert_true(p <= n && n - p <= 3);
    assert_true(ref_valid(s, p));
    for (size_t q = p + 1; q <= n; q++)
        assert_false(ref_valid(s, q)); /* p is the longest */
}

/* --- UTF-8 tests ----------------------------------------------------------- */

struct utf8_case {
    const char *s;
    size_t len;
};
#define U(lit)                                                                                     \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

static void test_utf8_valid_table(void **state)
{
    (void)state;
    static const struct utf8_case ok[] = {
        U(""),
        U("plain ascii"),
        U("\x00"),
        U("\x7F"),
        U("\xC2\x80"),                                       /* U+0080, smallest 2-byte */
        U("\xDF\xBF"),                                       /* U+07FF */
        U("\xC3\xA9t\xC3\xA9"),                              /* été */
        U("\xE0\xA0\x80"),                                   /* U+0800, smallest 3-byte */
        U("\xE2\x82\xAC"),                                   /* € */
        U("\xED\x9F\xBF"),                                   /* U+D7FF, just below the surrogates */
        U("\xEE\x80\x80"),                                   /* U+E000, just above */
        U("\xEF\xBF\xBF"),                                   /* U+FFFF */
        U("\xF0\x90\x80\x80"),                               /* U+10000, smallest 4-byte */
        U("\xF0\x9F\x98\x80"),                               /* 😀 */
        U("\xF4\x8F\xBF\xBF"),                               /* U+10FFFF, the last one */
        U("abcdefgh\xC3\xA9ijklmnopqrstuvwxyz\xE2\x82\xAC"), /* past the 8-byte ASCII skip */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const uint8_t *s = (const uint8_t *)ok[i].s;
        bool bad = true;
        if (!utf8_is_valid(s, ok[i].len))
            fail_msg("case %zu should be valid", i);
        assert_int_equal(utf8_complete_prefix(s, ok[i].len, &bad), ok[i].len);
        assert_false(bad);
    }
}

static void test_utf8_invalid_table(void **state)
{
    (void)state;
    static const struct utf8_case no[] = {
        U("\xC0\x80"),         /* overlong NUL */
        U("\xC1\xBF"),         /* overlong */
        U("\xE0\x80\x80"),     /* overlong 3-byte */
        U("\xE0\x9F\xBF"),     /* overlong U+07FF */
        U("\xF0\x80\x80\x80"), /* overlong 4-byte */
        U("\xF0\x8F\xBF\xBF"), /* overlong U+FFFF */
        U("\xED\xA0\x80"),     /* U+D800 surrogate */
        U("\xED\xBF\xBF"),     /* U+DFFF surrogate */
        U("\xF4\x90\x80\x80"), /* U+110000 */
        U("\xF5\x80\x80\x80"), /* lead beyond F4 */
        U("\xFE"),
        U("\xFF"),
        U("\x80"),                 /* lone continuation */
        U("a\xBF"),                /* continuation without lead */
        U("\xC3\xA9\x80"),         /* one continuation too many */
        U("\xC2\x41"),             /* lead then a non-continuation */
        U("\xE2\x82\x41"),         /* truncated then ASCII */
        U("\xE2\x82\xE2\x82\xAC"), /* truncated then a new character */
        U("\xF0\x9F\x98x"),        /* truncated 4-byte then ASCII */
        U("ok so far \xC3"),       /* truncated at the end: invalid as a whole */
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (utf8_is_valid((const uint8_t *)no[i].s, no[i].len))
            fail_msg("case %zu should be invalid", i);
    }
}

/* Bytes that can never become valid are reported at once, even truncated. */
static void test_utf8_certain_errors(void **state)
{
    (void)state;
    static const struct utf8_case bad_now[] = {
        U("\xC0"),         U("\xC1"),
        U("\xF5"),         U("\xFF"),
        U("\x80"),         U("\xE0\x80"),
        U("\xE0\x9F"),     U("\xED\xA0"),
        U("\xF0\x80"),     U("\xF0\x8F"),
        U("\xF4\x90"),     U("\xC2\x41"),
        U("\xE2\x82\x41"), U("\xF0\x9F\x98\xF0"),
    };
    for (size_t i = 0; i < sizeof bad_now / sizeof bad_now[0]; i++) {
        bool bad = false;
        utf8_complete_prefix((const uint8_t *)bad_now[i].s, bad_now[i].len, &bad);
        if (!bad)
            fail_msg("case %zu should be certainly bad", i);
    }
    /* ... while a sequence that may still become valid is not an error yet. */
    static const struct utf8_case later[] = {
        U("\xC3"),     U("\xE0\xA0"),     U("\xED\x9F"),
        U("\xF0\x90"), U("\xF4\x8F\xBF"), U("\xF0\x9F\x98"),
    };
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
        bool bad = true;
        size_t p = utf8_complete_prefix((const uint8_t *)later[i].s, later[i].len, &bad);
        if (bad || p != 0)
            fail_msg("case %zu: incomplete, not bad (bad=%d p=%zu)", i, bad, p);
    }
}

static void test_utf8_complete_prefix_cuts(void **state)
{
    (void)state;
    bool bad;
    assert_int_equal(utf8_complete_prefix(S("a\xE2\x82"), &bad), 1);
    assert_false(bad);
    assert_int_equal(utf8_complete_prefix(S("\xC3\xA9\xF0"), &bad), 2);
    assert_false(bad);
    assert_int_equal(utf8_complete_prefix(S("\xF0\x9F\x98"), &bad), 0);
    assert_false(bad);

    /* Every prefix of a valid string: cut at the last boundary before it. */
    static const char s[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80zzzzzzzzz\xF4\x8F\xBF\xBF";
    static const size_t boundaries[] = {0, 1, 3, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 23};
    size_t len = sizeof s - 1, b = 0;
    for (size_t k = 0; k <= len; k++) {
        while (b + 1 < sizeof boundaries / sizeof boundaries[0] && boundaries[b + 1] <= k)
            b++;
        assert_int_equal(utf8_complete_prefix((const uint8_t *)s, k, &bad), boundaries[b]);
        assert_false(bad);
        assert_int_equal(utf8_is_valid((const uint8_t *)s, k), boundaries[b] == k);
    }
}

/* Exhaustive over all 1- and 2-byte strings, and over every 3- and 4-byte
 * string of bytes at the edges of each class. */
static void test_utf8_reference(void **state)
{
    (void)state;
    static const uint8_t edge[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                   0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
                                   0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
    const size_t ne = sizeof edge;
    uint8_t s[4] = {0};
    check_against_reference(s, 0);
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        check_against_reference(s, 1);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            if (utf8_is_valid(s, 2) != ref_valid(s, 2))
                fail_msg("disagree on %02x %02x", a, b);
        }
    }
    for (size_t a = 0; a < ne; a++)
        for (size_t b = 0; b < ne; b++) {
            s[0] = edge[a], s[1] = edge[b];
            check_against_reference(s, 2);
            for (size_t c = 0; c < ne; c++) {
                s[2] = edge[c];
                check_against_reference(s, 3);
                for (size_t e = 0; e < ne; e++) {
                    s[3] = edge[e];
                    if (utf8_is_valid(s, 4) != ref_valid(s, 4))
                        fail_msg("disagree on %02x %02x %02x %02x", s[0], s[1], s[2], s[3]);
                }
            }
        }
}

/* --- raw --------------------------------------------------------------------- */

/* utf8_step, one byte at a time, agrees with utf8_is_valid on each prefix. */
static void test_utf8_step_agrees(void **state)
{
    (void)state;
    static const char *const texts[] = {"plain",        "caf\xC3\xA9", "\xF0\x9F\x98\x80!",
                                        "\xED\xA0\x80", "\xC0\xAF",    "\xE2\x82\xAC\xF4\x90"};
    for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
        const uint8_t *s = (const uint8_t *)texts[t];
        size_t n = strlen(texts[t]);
        uint8_t st = UTF8_ACCEPT;
        bool rejected = false;
        for (size_t i = 0; i < n; i++) {
            st = utf8_step(st, s[i]);
            rejected = rejected || st == UTF8_REJECT;
            bool whole = !rejected && st == UTF8_ACCEPT;
            assert_int_equal(whole, utf8_is_valid(s, i + 1));
        }
    }
}

static void test_utf8_cut(void **state)
{
    (void)state;
    const char *s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"; /* a é € 😀 */
    assert_int_equal(utf8_cut(s, 0), 0);
    assert_int_equal(utf8_cut(s, 1), 1);
    assert_int_equal(utf8_cut(s, 2), 1); /* inside é */
    assert_int_equal(utf8_cut(s, 3), 3);
    assert_int_equal(utf8_cut(s, 4), 3);
    assert_int_equal(utf8_cut(s, 5), 3);
    assert_int_equal(utf8_cut(s, 6), 6);
    assert_int_equal(utf8_cut(s, 9), 6); /* inside the emoji */
    assert_int_equal(utf8_cut(s, 10), 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_table),
        cmocka_unit_test(test_utf8_invalid_table),
        cmocka_unit_test(test_utf8_certain_errors),
        cmocka_unit_test(test_utf8_complete_prefix_cuts),
        cmocka_unit_test(test_utf8_reference),
        cmocka_unit_test(test_utf8_step_agrees),
        cmocka_unit_test(test_utf8_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

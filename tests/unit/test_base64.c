/* test_base64.c - both alphabets: RFC 4648's vectors, round trips of every
 * length, and what the strict decoders refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"

static void expect_encoding(enum base64_alphabet a, const char *in, const char *want)
{
    size_t n = 0;
    char *s = base64_encode(a, (const uint8_t *)in, strlen(in), &n);
    assert_non_null(s);
    assert_string_equal(s, want);
    assert_int_equal(n, strlen(want));
    uint8_t *back;
    size_t back_len;
    assert_int_equal(base64_decode(a, s, n, &back, &back_len), 0);
    assert_int_equal(back_len, strlen(in));
    assert_memory_equal(back, in, back_len);
    assert_int_equal(back[back_len], 0); /* NUL after */
    free(back);
    free(s);
}

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const std[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        expect_encoding(BASE64_STD, in[i], std[i]);
        expect_encoding(BASE64_URL, in[i], url[i]);
    }
    expect_encoding(BASE64_STD, "\xfb\xff", "+/8=");
    expect_encoding(BASE64_URL, "\xfb\xff", "-_8");
}

static void test_round_trip_every_byte(void **state)
{
    (void)state;
    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    for (int a = BASE64_STD; a <= BASE64_URL; a++)
        for (size_t len = 0; len <= sizeof data; len += 1 + len / 16) {
            size_t n;
            char *s = base64_encode((enum base64_alphabet)a, data, len, &n);
            assert_non_null(s);
            uint8_t *back;
            size_t back_len;
            assert_int_equal(base64_decode((enum base64_alphabet)a, s, n, &back, &back_len), 0);
            assert_int_equal(back_len, len);
            assert_memory_equal(back, data, len);
            free(back);
            free(s);
        }
}

static void test_refusals(void **state)
{
    (void)state;
    static const char *const std_bad[] = {
        "Zg",       /* unpadded */
        "Zg=",      /* short padding */
        "Zh==",     /* bits the padding drops are not zero */
        "Zm9=Zm9v", /* padding inside */
        "Z===",     /* too much padding */
        "Zm9 v",    /* whitespace */
        "Zm9v\n",   /* newline */
        "-_8=",     /* url alphabet */
        "====",
    };
    for (size_t i = 0; i < sizeof std_bad / sizeof std_bad[0]; i++) {
        uint8_t *out = (uint8_t *)1;
        size_t n;
        assert_int_equal(base64_decode(BASE64_STD, std_bad[i], strlen(std_bad[i]), &out, &n),
                         BASE64_INVALID);
        assert_null(out);
    }
    static const char *const url_bad[] = {
        "Zg==", /* padding */
        "Z",    /* a lone character */
        "Zh",   /* dropped bits not zero */
        "+/8",  /* standard alphabet */
        "Zm9v.",
    };
    for (size_t i = 0; i < sizeof url_bad / sizeof url_bad[0]; i++) {
        uint8_t *out;
        size_t n;
        assert_int_equal(base64_decode(BASE64_URL, url_bad[i], strlen(url_bad[i]), &out, &n),
                         BASE64_INVALID);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_round_trip_every_byte),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

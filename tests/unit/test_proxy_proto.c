/* test_proxy_proto.c - unit tests for proxy_proto.c: v1 and v2 headers as
 * HAProxy and cloud load balancers send them, arriving whole or a byte at a
 * time; refusal of everything else as early as a prefix shows it; the read
 * hint never reads far past a header; written headers parse back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "proxy_proto.h"

/* Parses `len` bytes given one more byte at a time: every proper prefix of
 * the header must say NEED_MORE, and the whole must say what parsing it at
 * once says. */
static enum proxy_proto_result parse_split(const uint8_t *buf, size_t len,
                                           struct proxy_proto_info *info, size_t *hlen)
{
    enum proxy_proto_result whole = proxy_proto_parse(buf, len, info, hlen);
    for (size_t n = 0; n < len; n++) {
        struct proxy_proto_info tmp;
        size_t tlen = 0;
        enum proxy_proto_result r = proxy_proto_parse(buf, n, &tmp, &tlen);
        if (r == PROXY_PROTO_DONE) {
            assert_int_equal(whole, PROXY_PROTO_DONE);
            assert_int_equal(tlen, *hlen); /* done as soon as the header is */
            assert_true(n >= *hlen);
            return whole;
        }
        if (r == PROXY_PROTO_INVALID) {
            assert_int_equal(whole, PROXY_PROTO_INVALID);
            return whole;
        }
        assert_true(proxy_proto_read_hint(buf, n) >= 1);
    }
    return whole;
}

static void src_is(const struct proxy_proto_info *info, const char *want, unsigned port)
{
    char text[64];
    proxy_proto_src_text(info, text, sizeof(text));
    assert_string_equal(text, want);
    assert_int_equal(info->src_port, port);
}

static void dst_is(const struct proxy_proto_info *info, const char *want, unsigned port)
{
    char text[64];
    proxy_proto_dst_text(info, text, sizeof(text));
    assert_string_equal(text, want);
    assert_int_equal(info->dst_port, port);
}

static void test_v1(void **state)
{
    (void)state;
    struct proxy_proto_info info;
    size_t hlen = 0;
    const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
    assert_int_equal(parse_split((const uint8_t *)h, strlen(h), &info, &hlen), PROXY_PROTO_DONE);
    assert_int_equal(hlen, strlen("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"));
    assert_int_equal(info.version, 1);
    assert_true(info.has_addr);
    assert_int_equal(info.family, AF_INET);
    src_is(&info, "192.0.2.7", 56324);
    dst_is(&info, "198.51.100.1", 443);

    h = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
    assert_int_equal(parse_split((const uint8_t *)h, strlen(h), &info, &hlen), PROXY_PROTO_DONE);
    assert_int_equal(hlen, strlen(h));
    assert_int_equal(info.family, AF_INET6);
    src_is(&info, "2001:db8::1", 65535);
    dst_is(&info, "2001:db8::2", 0);

    h = "PROXY UNKNOWN\r\n";
    assert_int_equal(parse_split((const uint8_t *)h, strlen(h), &info, &hlen), PROXY_PROTO_DONE);
    assert_int_equal(hlen, 15);
    assert_false(info.has_addr);
    h = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nrest";
    assert_int_equal(parse_split((const uint8_t *)h, strlen(h), &info, &hlen), PROXY_PROTO_DONE);
    assert_int_equal(hlen, strlen(h) - 4);
    assert_false(info.has_addr);

    /* The longest TCP6 line (104 bytes), and the longest line the protocol
     * allows (107 bytes, UNKNOWN with anything after it). */
    char longest[200];
    snprintf(longest, sizeof(longest), "PROXY TCP6 %s %s 65535 65535\r\n",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_int_equal(strlen(longest), 104);
    assert_int_equal(parse_split((const uint8_t *)longest, strlen(longest), &info, &hlen),
                     PROXY_PROTO_DONE);
    assert_int_equal(info.src_port, 65535);
    memset(longest, 'x', sizeof(longest));
    memcpy(longest, "PROXY UNKNOWN ", 14);
    memcpy(longest + 105, "\r\n", 2);
    assert_int_equal(parse_split((const uint8_t *)longest, 107, &info, &hlen), PROXY_PROTO_DONE);
    assert_int_equal(hlen, 107);
    memcpy(longest + 105, "x\r\n", 3); /* 108 */
    assert_int_equal(parse_split((const uint8_t *)longest, 108, &info, &hlen), PROXY_PROTO_INVALID);
}

static void test_v1_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n\r\n",                 /* no header at all */
        "\x16\x03\x01\x02\x00\x01",               /* a TLS ClientHello */
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",     /* lower case */
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",     /* no such protocol */
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",    /* two spaces */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",    /* trailing space */
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",    /* leading zero */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", /* port too big */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",    /* sign */
        "PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", /* family mismatch */
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",     /* family mismatch */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",       /* a field short */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",       /* LF without CR */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",      /* CR without LF */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x01\r\n", /* control byte */
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct proxy_proto_info info;
        size_t hlen;
        if (parse_split((const uint8_t *)bad[i], strlen(bad[i]), &info, &hlen) !=
            PROXY_PROTO_INVALID)
            fail_msg("accepted: %s", bad[i]);
    }
    /* Refused at the first byte that cannot belong to a header. */
    struct proxy_proto_info info;
    size_t hlen;
    assert_int_equal(proxy_proto_parse((const uint8_t *)"G", 1, &info, &hlen), PROXY_PROTO_INVALID);
    assert_int_equal(proxy_proto_parse((const uint8_t *)"PROXY X", 7, &info, &hlen),
                     PROXY_PROTO_INVALID);
    assert_int_equal(proxy_proto_parse((const uint8_t *)"PROXY T", 7, &info, &hlen),
                     PROXY_PROTO_NEED_MORE);
    /* No CRLF within 107 bytes. */
    char endless[300];
    memset(endless, 'A', sizeof(endless));
    memcpy(endless, "PROXY UNKNOWN ", 14);
    assert_int_equal(proxy_proto_parse((const uint8_t *)endless, 106, &info, &hlen),
                     PROXY_PROTO_NEED_MORE);
    assert_int_equal(proxy_proto_parse((const uint8_t *)endless, 107, &info, &hlen),
                     PROXY_PROTO_INVALID);
    assert_int_equal(proxy_proto_parse((const uint8_t *)endless, 300, &info, &hlen),
                     PROXY_PROTO_INVALID);
}

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 header: signature, ver/cmd, family, then body of `len` bytes. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t len)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    if (len)
        memcpy(out + 16, body, len);
    return 16 + len;
}

static void test_v2(void **state)
{
    (void)state;
    uint8_t buf[2048], body[1100];
    struct proxy_proto_info info;
    size_t hlen, n;

    /* TCP over IPv4, with a TLV after the addresses (as AWS NLB sends). */
    uint8_t v4[] = {192,  0,    2,    7,    198,  51,   100, 1,   0xDC,
                    0x04, 0x01, 0xBB, 0xEA, 0x00, 0x03, 'a', 'b', 'c'};
    n = v2(buf, 0x21, 0x11, v4, sizeof(v4));
    memcpy(buf + n, "GET", 3);
    assert_int_equal(parse_split(buf, n + 3, &info, &hlen), PROXY_PROTO_DONE);
    assert_int_equal(hlen, n);
    assert_int_equal(info.version, 2);
    assert_int_equal(info.family, AF_INET);
    src_is(&info, "192.0.2.7", 56324);
    dst_is(&info, "198.51.100.1", 443);

    /* TCP over IPv6. */
    memset(body, 0, 36);
    inet_pton(AF_INET6, "2001:db8::7", body);
    inet_pton(AF_INET6, "2001:db8::1", body + 16);
    body[32] = 0x30;
    body[33] = 0x39;
    body[34] = 0x00;
    body[35] = 0x50;
    n = v2(buf, 0x21, 0x21, body, 36);
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_DONE);
    assert_int_equal(info.family, AF_INET6);
    src_is(&info, "2001:db8::7", 12345);
    dst_is(&info, "2001:db8::1", 80);

    /* LOCAL (a health check): no addresses, whatever the block holds. */
    n = v2(buf, 0x20, 0x00, NULL, 0);
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_DONE);
    assert_int_equal(hlen, 16);
    assert_false(info.has_addr);
    n = v2(buf, 0x20, 0x11, v4, 5);
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_DONE);
    assert_false(info.has_addr);

    /* PROXY with UNSPEC or unix addresses: no addresses we use. */
    n = v2(buf, 0x21, 0x00, NULL, 0);
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_DONE);
    assert_false(info.has_addr);
    memset(body, 'x', 216);
    n = v2(buf, 0x21, 0x31, body, 216);
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_DONE);
    assert_false(info.has_addr);

    /* The largest accepted, and one byte more. */
    memcpy(body, v4, 12);
    n = v2(buf, 0x21, 0x11, body, PROXY_PROTO_MAX_HEADER - 16);
    assert_int_equal(proxy_proto_parse(buf, n, &info, &hlen), PROXY_PROTO_DONE);
    n = v2(buf, 0x21, 0x11, body, PROXY_PROTO_MAX_HEADER - 15);
    assert_int_equal(proxy_proto_parse(buf, 16, &info, &hlen), PROXY_PROTO_INVALID);
}

static void test_v2_invalid(void **state)
{
    (void)state;
    uint8_t buf[300], body[64] = {0};
    struct proxy_proto_info info;
    size_t hlen, n;
    n = v2(buf, 0x11, 0x11, body, 12); /* version 1 in a v2 header */
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_INVALID);
    n = v2(buf, 0x22, 0x11, body, 12); /* command 2 */
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_INVALID);
    n = v2(buf, 0x21, 0x41, body, 12); /* family 4 */
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_INVALID);
    n = v2(buf, 0x21, 0x13, body, 12); /* transport 3 */
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_INVALID);
    n = v2(buf, 0x21, 0x11, body, 11); /* IPv4 block too short */
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_INVALID);
    n = v2(buf, 0x21, 0x21, body, 35); /* IPv6 block too short */
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_INVALID);
    n = v2(buf, 0x21, 0x11, body, 12);
    buf[7] = 'X'; /* a broken signature */
    assert_int_equal(parse_split(buf, n, &info, &hlen), PROXY_PROTO_INVALID);
    assert_int_equal(proxy_proto_parse(buf, 8, &info, &hlen), PROXY_PROTO_INVALID);
    assert_int_equal(proxy_proto_parse(buf, 7, &info, &hlen), PROXY_PROTO_NEED_MORE);
}

/* A reader that takes at most read_hint bytes each time never holds more
 * than PROXY_PROTO_V1_MAX bytes past the header. */
static void check_hint(const uint8_t *stream, size_t len)
{
    size_t have = 0;
    struct proxy_proto_info info;
    size_t hlen = 0;
    for (;;) {
        enum proxy_proto_result r = proxy_proto_parse(stream, have, &info, &hlen);
        if (r == PROXY_PROTO_DONE) {
            assert_true(have - hlen <= PROXY_PROTO_V1_MAX);
            return;
        }
        assert_int_equal(r, PROXY_PROTO_NEED_MORE);
        size_t want = proxy_proto_read_hint(stream, have);
        assert_true(want >= 1);
        assert_true(have < len);
        have += want < len - have ? want : len - have;
    }
}

static void test_read_hint(void **state)
{
    (void)state;
    uint8_t stream[4096];
    memset(stream, 'G', sizeof(stream));
    const char *h1 = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
    memcpy(stream, h1, strlen(h1));
    check_hint(stream, sizeof(stream));
    memcpy(stream, "PROXY UNKNOWN\r\n", 15);
    check_hint(stream, sizeof(stream));
    uint8_t body[900] = {192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 2};
    memset(stream, 'G', sizeof(stream));
    v2(stream, 0x21, 0x11, body, 12);
    check_hint(stream, sizeof(stream));
    v2(stream, 0x21, 0x11, body, sizeof(body)); /* longer than the first read */
    check_hint(stream, sizeof(stream));
    v2(stream, 0x20, 0x00, NULL, 0);
    check_hint(stream, sizeof(stream));
    assert_int_equal(proxy_proto_read_hint(stream, 0), PROXY_PROTO_V1_MAX);
}

static void roundtrip(int version, const char *src, int sport, const char *dst, int dport,
                      int want_family, const char *want_src, const char *want_dst)
{
    struct proxy_proto_info in, out;
    assert_true(proxy_proto_info_from_text(&in, src, sport, dst, dport));
    assert_int_equal(in.family, want_family);
    uint8_t buf[PROXY_PROTO_WRITE_MAX];
    size_t n = proxy_proto_write(version, &in, buf, sizeof(buf));
    assert_true(n > 0);
    size_t hlen;
    assert_int_equal(proxy_proto_parse(buf, n, &out, &hlen), PROXY_PROTO_DONE);
    assert_int_equal(hlen, n);
    assert_int_equal(out.version, version);
    assert_int_equal(out.family, want_family);
    src_is(&out, want_src, (unsigned)sport);
    dst_is(&out, want_dst, (unsigned)dport);
}

static void test_write(void **state)
{
    (void)state;
    for (int v = 1; v <= 2; v++) {
        roundtrip(v, "192.0.2.7", 56324, "127.0.0.1", 8080, AF_INET, "192.0.2.7", "127.0.0.1");
        roundtrip(v, "2001:db8::7", 1, "::1", 65535, AF_INET6, "2001:db8::7", "::1");
        /* mixed families: both IPv6, the IPv4 one mapped */
        roundtrip(v, "2001:db8::7", 1, "127.0.0.1", 2, AF_INET6, "2001:db8::7", "127.0.0.1");
        roundtrip(v, "::ffff:192.0.2.9", 3, "127.0.0.1", 4, AF_INET, "192.0.2.9", "127.0.0.1");
    }
    struct proxy_proto_info info;
    uint8_t buf[PROXY_PROTO_WRITE_MAX];
    char text[] = "PROXY TCP4 192.0.2.7 127.0.0.1 56324 8080\r\n";
    assert_true(proxy_proto_info_from_text(&info, "192.0.2.7", 56324, "127.0.0.1", 8080));
    assert_int_equal(proxy_proto_write(1, &info, buf, sizeof(buf)), strlen(text));
    assert_memory_equal(buf, text, strlen(text));
    assert_int_equal(proxy_proto_write(2, &info, buf, sizeof(buf)), 28);
    assert_memory_equal(buf, sig, 12);
    assert_int_equal(buf[12], 0x21);
    assert_int_equal(buf[13], 0x11);
    assert_int_equal(proxy_proto_write(2, &info, buf, 27), 0); /* too small */
    assert_int_equal(proxy_proto_write(1, &info, buf, 10), 0);

    /* An address that is none (a unix-socket client): UNKNOWN / UNSPEC. */
    assert_false(proxy_proto_info_from_text(&info, "unix", 0, "127.0.0.1", 80));
    assert_int_equal(proxy_proto_write(1, &info, buf, sizeof(buf)), 15);
    assert_memory_equal(buf, "PROXY UNKNOWN\r\n", 15);
    assert_int_equal(proxy_proto_write(2, &info, buf, sizeof(buf)), 16);
    assert_int_equal(buf[13], 0x00);
    assert_false(proxy_proto_info_from_text(&info, "1.2.3.4", 70000, "127.0.0.1", 80));
    assert_false(proxy_proto_info_from_text(&info, NULL, 1, "127.0.0.1", 80));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1),        cmocka_unit_test(test_v1_invalid),
        cmocka_unit_test(test_v2),        cmocka_unit_test(test_v2_invalid),
        cmocka_unit_test(test_read_hint), cmocka_unit_test(test_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

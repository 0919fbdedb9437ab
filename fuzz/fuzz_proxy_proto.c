/* fuzz_proxy_proto.c - PROXY protocol v1/v2 headers (src/core/proxy_proto.c).
 *
 * Input: byte 0 = split seed, then the first bytes of a connection.
 * Properties:
 *  - the verdict on the whole input equals the verdict reached by feeding
 *    it in pieces (split-invariance): parsing stops at the first piece that
 *    decides, with the same header length and addresses;
 *  - a header is never longer than PROXY_PROTO_MAX_HEADER nor than the
 *    input; NEED_MORE only for inputs shorter than that bound;
 *  - a reader bounded by proxy_proto_read_hint never holds more than
 *    PROXY_PROTO_V1_MAX bytes past a header;
 *  - an accepted header with addresses, written again as v1 and v2, parses
 *    back to the same addresses and ports. */
#include "fuzz_util.h"

#include "proxy_proto.h"

static bool same_info(const struct proxy_proto_info *a, const struct proxy_proto_info *b)
{
    return a->version == b->version && a->has_addr == b->has_addr && a->family == b->family &&
           memcmp(a->src_addr, b->src_addr, 16) == 0 && memcmp(a->dst_addr, b->dst_addr, 16) == 0 &&
           a->src_port == b->src_port && a->dst_port == b->dst_port;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    uint32_t seed = fz_byte(&z) | 1u;
    const uint8_t *buf = z.p;
    size_t len = z.n;

    struct proxy_proto_info whole;
    size_t whole_len = 0;
    enum proxy_proto_result r = proxy_proto_parse(buf, len, &whole, &whole_len);
    if (r == PROXY_PROTO_DONE) {
        FUZZ_CHECK(whole_len <= len && whole_len <= PROXY_PROTO_MAX_HEADER && whole_len >= 15,
                   "header length %zu of %zu", whole_len, len);
        FUZZ_CHECK(whole.version == 1 || whole.version == 2, "version %d", whole.version);
    }
    if (r == PROXY_PROTO_NEED_MORE)
        FUZZ_CHECK(len < PROXY_PROTO_MAX_HEADER, "still undecided after %zu bytes", len);

    /* In pieces: the first prefix that decides decides the same. */
    size_t have = 0;
    for (;;) {
        struct proxy_proto_info part;
        size_t part_len = 0;
        enum proxy_proto_result pr = proxy_proto_parse(buf, have, &part, &part_len);
        if (pr != PROXY_PROTO_NEED_MORE || have == len) {
            FUZZ_CHECK(pr == r, "whole: %d, in pieces: %d after %zu bytes", r, pr, have);
            if (pr == PROXY_PROTO_DONE)
                FUZZ_CHECK(part_len == whole_len && same_info(&part, &whole),
                           "pieces gave another header");
            break;
        }
        seed = seed * 1103515245u + 12345u;
        size_t step = 1 + (seed >> 16) % 40;
        have += step < len - have ? step : len - have;
    }

    /* A reader bounded by the hint. */
    have = 0;
    for (;;) {
        struct proxy_proto_info part;
        size_t part_len = 0;
        enum proxy_proto_result pr = proxy_proto_parse(buf, have, &part, &part_len);
        if (pr == PROXY_PROTO_DONE)
            FUZZ_CHECK(have - part_len <= PROXY_PROTO_V1_MAX, "read %zu past the header",
                       have - part_len);
        if (pr != PROXY_PROTO_NEED_MORE || have == len)
            break;
        size_t want = proxy_proto_read_hint(buf, have);
        FUZZ_CHECK(want >= 1, "a hint of 0");
        have += want < len - have ? want : len - have;
    }

    if (r == PROXY_PROTO_DONE && whole.has_addr) {
        for (int v = 1; v <= 2; v++) {
            uint8_t out[PROXY_PROTO_WRITE_MAX];
            size_t n = proxy_proto_write(v, &whole, out, sizeof(out));
            FUZZ_CHECK(n > 0, "v%d not written", v);
            struct proxy_proto_info back;
            size_t back_len;
            FUZZ_CHECK(proxy_proto_parse(out, n, &back, &back_len) == PROXY_PROTO_DONE &&
                           back_len == n,
                       "v%d header written does not parse", v);
            back.version = whole.version;
            FUZZ_CHECK(same_info(&back, &whole), "v%d header parses to other addresses", v);
        }
        char text[64];
        proxy_proto_src_text(&whole, text, sizeof(text));
        FUZZ_CHECK(text[0], "no source text");
    }
    return 0;
}

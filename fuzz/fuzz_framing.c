/* fuzz_framing.c - the backend stream decoders (src/core/framing.c): raw, lines
 * and length32, binary and text, under arbitrary splits of the input and
 * arbitrary backpressure stops.
 *
 * Input: byte 0: framing (bits 0-1: raw, lines, length32, raw), text flag
 * (bit 2), max_message choice (bits 3-5); byte 1: split seed; byte 2: stop pattern; the rest is the
 * stream. Properties:
 *  - the one-shot decode agrees with a simple reference decoder (status and
 *    every message);
 *  - split-invariance: feeding the stream in random pieces, and stopping
 *    (emit returns non-zero) at random messages and resuming with empty
 *    feeds, yields the same messages (raw: the same bytes) and status;
 *  - text routes emit only valid UTF-8; lines contain no '\n'; no message
 *    is longer than max_message;
 *  - without stops the tail buffer stays within max_message + 4 bytes;
 *  - utf8_is_valid == (utf8_complete_prefix(...) == len && !bad), and the
 *    prefix is itself valid UTF-8. */
#include "fuzz_util.h"

#include "buf_pool.h"
#include "framing.h"
#include "utf8.h"

struct msgs {
    uint8_t *bytes; /* every message's bytes, concatenated */
    size_t len, cap;
    size_t *ends; /* end offset of each message */
    size_t n, ncap;
    /* stop control */
    uint8_t stop_pattern;
    unsigned calls;
    /* checks on each message */
    const struct framing_decoder *d;
};

static void msgs_add(struct msgs *m, const uint8_t *p, size_t len)
{
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2 + 64;
        m->bytes = realloc(m->bytes, m->cap);
    }
    if (len)
        memcpy(m->bytes + m->len, p, len);
    m->len += len;
    if (m->n == m->ncap) {
        m->ncap = m->ncap * 2 + 16;
        m->ends = realloc(m->ends, m->ncap * sizeof(*m->ends));
    }
    m->ends[m->n++] = m->len;
}

static void msgs_free(struct msgs *m)
{
    free(m->bytes);
    free(m->ends);
}

static int emit(void *ctx, const uint8_t *msg, size_t len)
{
    struct msgs *m = ctx;
    const struct framing_decoder *d = m->d;
    if (d->text)
        FUZZ_CHECK(utf8_is_valid(msg, len), "text route emitted invalid UTF-8 (%zu bytes)", len);
    if (d->framing == WSG_FRAMING_LINES)
        FUZZ_CHECK(!memchr(msg, '\n', len), "a line holds a newline");
    if (d->framing != WSG_FRAMING_RAW && d->max_message)
        FUZZ_CHECK(len <= d->max_message, "message of %zu bytes over max_message %zu", len,
                   d->max_message);
    if (d->framing == WSG_FRAMING_RAW)
        FUZZ_CHECK(len > 0, "raw emitted an empty message");
    msgs_add(m, msg, len);
    unsigned k = m->calls++;
    return (m->stop_pattern >> (k % 8)) & 1;
}

/* Reference for lines and length32: the whole stream at once. Returns the
 * status the decoder must report after seeing all of it. */
static enum framing_status reference(enum wsg_framing fr, bool text, size_t max, const uint8_t *p,
                                     size_t n, struct msgs *out)
{
    size_t off = 0;
    if (fr == WSG_FRAMING_LINES) {
        for (;;) {
            const uint8_t *nl = memchr(p + off, '\n', n - off);
            if (!nl) {
                /* The partial tail: too big if it can no longer make a line. */
                size_t rest = n - off;
                if (max && rest > max && (rest - 1 > max || p[n - 1] != '\r'))
                    return FRAMING_TOO_BIG;
                return FRAMING_OK;
            }
            size_t len = (size_t)(nl - (p + off));
            size_t l = len > 0 && p[off + len - 1] == '\r' ? len - 1 : len;
            if (max && l > max)
                return FRAMING_TOO_BIG;
            if (text && !utf8_is_valid(p + off, l))
                return FRAMING_BAD_UTF8;
            msgs_add(out, p + off, l);
            off += len + 1;
        }
    }
    /* length32 */
    while (n - off >= 4) {
        uint32_t len = (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 |
                       (uint32_t)p[off + 2] << 8 | p[off + 3];
        if (max && len > max)
            return FRAMING_TOO_BIG;
        if (n - off - 4 < len)
            break;
        if (text && !utf8_is_valid(p + off + 4, len))
            return FRAMING_BAD_UTF8;
        msgs_add(out, p + off + 4, len);
        off += 4 + (size_t)len;
    }
    return FRAMING_OK;
}

static size_t tail_bound(const struct framing_decoder *d)
{
    if (d->framing == WSG_FRAMING_RAW)
        return 4;
    if (d->max_message == 0)
        return SIZE_MAX;
    return d->max_message + 4;
}

/* Feeds [p, p+n) in pieces (sizes from the seed), stopping per pattern. */
static enum framing_status run(enum wsg_framing fr, bool text, size_t max, const uint8_t *p,
                               size_t n, uint8_t split_seed, uint8_t stop_pattern, struct msgs *out)
{
    struct framing_decoder d;
    framing_decoder_init(&d, fr, text, max);
    out->d = &d;
    out->stop_pattern = stop_pattern;
    uint32_t rng = split_seed * 2654435761u + 1;
    size_t off = 0;
    enum framing_status st = FRAMING_OK;
    while (st == FRAMING_OK) {
        size_t piece;
        if (split_seed == 0) {
            piece = n - off; /* one shot */
        } else {
            rng = rng * 1103515245u + 12345u;
            unsigned r = (rng >> 16) & 0x7fff;
            piece = r % 4 == 0 ? r % 3 : (r % 17); /* lots of tiny pieces, some empty */
            if (piece > n - off)
                piece = n - off;
        }
        unsigned before = out->calls;
        st = framing_decode(&d, p + off, piece, emit, out);
        off += piece;
        if (st != FRAMING_OK)
            break;
        bool stopped = out->calls > before && out->stop_pattern &&
                       ((out->stop_pattern >> ((out->calls - 1) % 8)) & 1);
        if (!stop_pattern)
            /* The buffer is a pool block: the bound rounded up to its size. */
            FUZZ_CHECK(d.len <= tail_bound(&d) && d.cap <= buf_pool_size_for(tail_bound(&d)),
                       "tail buffer %zu (cap %zu) over its bound %zu", d.len, d.cap,
                       tail_bound(&d));
        if (off == n && !stopped) {
            /* Resume until nothing more comes out. */
            unsigned guard = 0;
            for (;;) {
                unsigned b = out->calls;
                st = framing_decode(&d, NULL, 0, emit, out);
                if (st != FRAMING_OK || out->calls == b)
                    break;
                FUZZ_CHECK(++guard < 1000000, "resume loop does not end");
            }
            break;
        }
    }
    framing_decoder_free(&d);
    return st;
}

static bool same_msgs(const struct msgs *a, const struct msgs *b, size_t *at)
{
    size_t n = a->n < b->n ? a->n : b->n;
    for (size_t i = 0; i < n; i++) {
        size_t sa = i ? a->ends[i - 1] : 0, sb = i ? b->ends[i - 1] : 0;
        size_t la = a->ends[i] - sa;
        if (la != b->ends[i] - sb || (la && memcmp(a->bytes + sa, b->bytes + sb, la) != 0)) {
            *at = i;
            return false;
        }
    }
    *at = n;
    return a->n == b->n;
}

static const size_t max_choices[8] = {0, 1, 2, 3, 5, 16, 100, 1 << 20};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    uint8_t cfg = fz_byte(&z), split = fz_byte(&z), stops = fz_byte(&z);
    const uint8_t *p = z.p;
    size_t n = z.n;

    /* UTF-8 helpers on the raw stream. */
    bool bad;
    size_t pre = utf8_complete_prefix(p, n, &bad);
    FUZZ_CHECK(pre <= n, "prefix %zu > len %zu", pre, n);
    FUZZ_CHECK(utf8_is_valid(p, pre), "utf8_complete_prefix returned a prefix that is not valid");
    FUZZ_CHECK(utf8_is_valid(p, n) == (pre == n && !bad), "utf8_is_valid disagrees");
    if (!bad)
        FUZZ_CHECK(n - pre <= 3, "held back %zu bytes of an incomplete sequence", n - pre);
    uint8_t hdr[4];
    framing_length32_header((uint32_t)n, hdr);
    FUZZ_CHECK(((size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3]) ==
                   (uint32_t)n,
               "length32 header");

    enum wsg_framing fr = (cfg & 3) == 1   ? WSG_FRAMING_LINES
                          : (cfg & 3) == 2 ? WSG_FRAMING_LENGTH32
                                           : WSG_FRAMING_RAW; /* 0 and 3 */
    bool text = (cfg >> 2) & 1;
    size_t max = max_choices[(cfg >> 3) & 7];
    if (fr == WSG_FRAMING_RAW)
        max = 0;

    struct msgs one = {0}, split_m = {0}, ref = {0};
    enum framing_status st1 = run(fr, text, max, p, n, 0, 0, &one);
    enum framing_status st2 = run(fr, text, max, p, n, split ? split : 1, stops, &split_m);
    size_t at;

    if (fr == WSG_FRAMING_RAW) {
        if (text) {
            bool valid_prefix_only = bad; /* some byte can never be UTF-8 */
            FUZZ_CHECK((st1 == FRAMING_BAD_UTF8) == valid_prefix_only,
                       "raw text one-shot status %d, stream bad=%d", st1, bad);
            FUZZ_CHECK((st2 == FRAMING_BAD_UTF8) == valid_prefix_only,
                       "raw text split status %d, stream bad=%d", st2, bad);
            if (!bad) {
                FUZZ_CHECK(one.len == pre && (pre == 0 || memcmp(one.bytes, p, pre) == 0),
                           "raw text one-shot delivered %zu bytes, want the %zu-byte prefix",
                           one.len, pre);
                FUZZ_CHECK(split_m.len == pre && (pre == 0 || memcmp(split_m.bytes, p, pre) == 0),
                           "raw text split delivered %zu bytes, want the %zu-byte prefix",
                           split_m.len, pre);
            } else {
                /* What went out before the error is a prefix of the stream. */
                FUZZ_CHECK(split_m.len <= n &&
                               (split_m.len == 0 || memcmp(split_m.bytes, p, split_m.len) == 0),
                           "raw text split delivered bytes that are not the stream's prefix");
            }
        } else {
            FUZZ_CHECK(st1 == FRAMING_OK && st2 == FRAMING_OK, "raw binary failed");
            FUZZ_CHECK(
                one.len == n && split_m.len == n &&
                    (n == 0 || (memcmp(one.bytes, p, n) == 0 && memcmp(split_m.bytes, p, n) == 0)),
                "raw binary changed the bytes");
        }
    } else {
        enum framing_status st_ref = reference(fr, text, max, p, n, &ref);
        FUZZ_CHECK(st1 == st_ref, "one-shot status %d, reference %d (framing %d, max %zu)", st1,
                   st_ref, fr, max);
        FUZZ_CHECK(same_msgs(&one, &ref, &at), "one-shot message %zu differs from the reference",
                   at);
        FUZZ_CHECK(st2 == st_ref, "split status %d, reference %d (framing %d, max %zu)", st2,
                   st_ref, fr, max);
        FUZZ_CHECK(same_msgs(&split_m, &ref, &at),
                   "split message %zu differs from the reference (%zu vs %zu messages)", at,
                   split_m.n, ref.n);
    }
    msgs_free(&one);
    msgs_free(&split_m);
    msgs_free(&ref);
    return 0;
}

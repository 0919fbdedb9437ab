/* fuzz_ws_frame_check.c - the client-frame checker (src/core/ws_frame_check.c)
 * over arbitrary streams and arbitrary splits.
 *
 * Input: byte 0: settings (bit 0: RSV1 allowed, bit 1: no text UTF-8;
 * bit 2: also run with `unmask`, in place on a copy);
 * byte 1: split seed; the rest is the client-to-server stream.
 * Properties:
 *  - split-invariance: fed whole, one byte at a time, or in pseudo-random
 *    runs, the verdict is the same (OK, END or VIOLATION), with the same
 *    code and reason, the same deciding byte, and (END) the same cut;
 *  - a violation's cut is never past its deciding byte, and fed whole it
 *    is the start of a frame: the cut and the deciding byte lie in one
 *    frame, so re-feeding the stream up to the cut is OK;
 *  - codes are 1002 or 1007 with a reason that fits a close frame;
 *  - after END or VIOLATION the checker stays there;
 *  - the pings reported (on_ping) end at the same stream offsets however the
 *    stream is split, each inside its run, and one that began in the run
 *    starts before it ends (a ping is at least 6 bytes);
 *  - unmasking in place changes no verdict, and what it lets through says
 *    the same as the original: frame by frame, the same header and the same
 *    payload once each is unmasked with the key it carries. */
#include "fuzz_util.h"

#include "ws_frame_check.h"

#define PINGS_MAX 64

struct result {
    size_t ping_end[PINGS_MAX]; /* stream offsets */
    size_t n_pings;
    size_t run_pos, run_len; /* of the run being fed */
    int rc;
    int code;
    const char *reason;
    size_t cut; /* stream offset: bytes let through */
    size_t at;  /* stream offset of the deciding byte (VIOLATION) */
};

static void on_ping(void *ctx, size_t start, size_t end)
{
    struct result *r = ctx;
    FUZZ_CHECK(end <= r->run_len, "ping ends at %zu of a %zu-byte run", end, r->run_len);
    FUZZ_CHECK(start == WS_FC_BEFORE_RUN || start + 6 <= end, "ping %zu..%zu", start, end);
    if (r->n_pings < PINGS_MAX)
        r->ping_end[r->n_pings++] = r->run_pos + end;
}

/* s is written only if `out` (unmask in place there: s itself, writable). */
static struct result run_out(const uint8_t *s, uint8_t *out, size_t len, uint8_t settings,
                             unsigned mode, unsigned seed)
{
    struct ws_frame_check c;
    ws_frame_check_init(&c, settings);
    struct result r = {.rc = WS_FC_OK, .cut = len};
    struct ws_frame_events ev = {.on_ping = on_ping, .ctx = &r};
    size_t pos = 0;
    while (pos < len) {
        size_t n = len - pos;
        if (mode == 1)
            n = 1;
        else if (mode == 2) {
            seed = seed * 1103515245u + 12345u;
            size_t k = 1 + (seed >> 16) % 37;
            n = k < n ? k : n;
        }
        struct ws_frame_verdict v;
        r.run_pos = pos;
        r.run_len = n;
        ev.unmask = out ? out + pos : NULL;
        int rc = ws_frame_check_feed_ev(&c, s + pos, n, &v, &ev);
        if (rc != WS_FC_OK) {
            FUZZ_CHECK(v.keep <= n, "keep %zu of a %zu-byte run", v.keep, n);
            r.rc = rc;
            r.cut = pos + v.keep;
            if (rc == WS_FC_VIOLATION) {
                FUZZ_CHECK(v.keep <= v.at && v.at < n, "keep %zu at %zu run %zu", v.keep, v.at, n);
                FUZZ_CHECK(v.code == 1002 || v.code == 1007, "code %d", v.code);
                FUZZ_CHECK(v.reason && strlen(v.reason) <= 123, "reason");
                r.code = v.code;
                r.reason = v.reason;
                r.at = pos + v.at;
            }
            struct ws_frame_verdict again;
            FUZZ_CHECK(ws_frame_check_feed(&c, s, len ? 1 : 0, &again) == rc, "state left");
            FUZZ_CHECK(again.keep == 0, "keep after the end");
            return r;
        }
        pos += n;
    }
    return r;
}

static struct result run(const uint8_t *s, size_t len, uint8_t settings, unsigned mode,
                         unsigned seed)
{
    return run_out(s, NULL, len, settings, mode, seed);
}

/* Unmasks every frame of b[0..len) with the key it carries and zeroes the
 * key (the last frame may be cut short anywhere). */
static void canonical(uint8_t *b, size_t len)
{
    size_t pos = 0;
    while (pos + 2 <= len) {
        uint64_t plen = b[pos + 1] & 0x7f;
        size_t at = pos + 2;
        if (plen >= 126) {
            size_t bytes = plen == 126 ? 2 : 8;
            if (at + bytes > len)
                return;
            plen = 0;
            for (size_t i = 0; i < bytes; i++)
                plen = plen << 8 | b[at + i];
            at += bytes;
        }
        if (!(b[pos + 1] & 0x80) || at + 4 > len)
            return; /* unmasked frames fail the checker: nothing of them is let through */
        uint8_t key[4];
        memcpy(key, b + at, 4);
        memset(b + at, 0, 4);
        at += 4;
        for (uint64_t i = 0; i < plen && at < len; i++, at++)
            b[at] ^= key[i % 4];
        pos = at;
    }
}

static uint8_t copy_a[1 << 16], copy_b[1 << 16];

/* The unmasking run of `mode` says what the plain one said, and lets
 * through the same frames. */
static void check_unmask(const uint8_t *s, size_t len, uint8_t settings, unsigned mode,
                         unsigned seed, const struct result *plain)
{
    if (len > sizeof(copy_a))
        return;
    memcpy(copy_a, s, len);
    struct result r = run_out(copy_a, copy_a, len, settings, mode, seed);
    FUZZ_CHECK(r.rc == plain->rc && r.cut == plain->cut && r.code == plain->code &&
                   r.at == plain->at,
               "unmask mode %u: rc %d cut %zu, plain rc %d cut %zu", mode, r.rc, r.cut, plain->rc,
               plain->cut);
    memcpy(copy_b, s, r.cut);
    canonical(copy_a, r.cut);
    canonical(copy_b, r.cut);
    FUZZ_CHECK(memcmp(copy_a, copy_b, r.cut) == 0, "unmask mode %u: the frames differ", mode);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t settings = data[0] & (WS_FC_ALLOW_RSV1 | WS_FC_NO_TEXT_UTF8);
    unsigned seed = data[1];
    const uint8_t *s = data + 2;
    size_t len = size - 2;

    struct result whole = run(s, len, settings, 0, seed);
    if (data[0] & 0x04)
        check_unmask(s, len, settings, 0, seed, &whole);
    for (unsigned mode = 1; mode <= 2; mode++) {
        struct result r = run(s, len, settings, mode, seed);
        if (data[0] & 0x04)
            check_unmask(s, len, settings, mode, seed, &r);
        FUZZ_CHECK(r.rc == whole.rc, "mode %u: rc %d, whole %d", mode, r.rc, whole.rc);
        FUZZ_CHECK(r.n_pings == whole.n_pings &&
                       memcmp(r.ping_end, whole.ping_end, r.n_pings * sizeof(size_t)) == 0,
                   "mode %u: %zu pings, whole %zu", mode, r.n_pings, whole.n_pings);
        if (r.rc == WS_FC_VIOLATION) {
            FUZZ_CHECK(r.code == whole.code && strcmp(r.reason, whole.reason) == 0,
                       "mode %u: %d %s, whole %d %s", mode, r.code, r.reason, whole.code,
                       whole.reason);
            FUZZ_CHECK(r.at == whole.at, "mode %u: at %zu, whole %zu", mode, r.at, whole.at);
            FUZZ_CHECK(r.cut >= whole.cut && r.cut <= r.at, "mode %u: cut %zu (whole %zu, at %zu)",
                       mode, r.cut, whole.cut, r.at);
        } else if (r.rc == WS_FC_END) {
            FUZZ_CHECK(r.cut == whole.cut, "mode %u: end at %zu, whole %zu", mode, r.cut,
                       whole.cut);
        }
    }
    if (whole.rc == WS_FC_VIOLATION) {
        /* What was let through breaks nothing by itself. */
        struct result prefix = run(s, whole.cut, settings, 0, seed);
        FUZZ_CHECK(prefix.rc == WS_FC_OK, "the %zu bytes let through gave %d", whole.cut,
                   prefix.rc);
    }
    return 0;
}

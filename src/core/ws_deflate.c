/* ws_deflate.c - permessage-deflate: a deflater and an inflater per
 * compressed connection, made when first needed; see ws_deflate.h. */
#include "ws_deflate.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Level 1: most of the gain on JSON streams for a fraction of the CPU of
 * the default 6 (lws's own extension uses 1 too). memLevel 5 and the 4 KiB
 * window keep the deflater near 38 KiB; on a stream of small JSON messages
 * they compress within a few percent of zlib's defaults (about 270 KiB). */
#define DEFLATE_LEVEL 1
#define DEFLATE_MEM_LEVEL 5

struct ws_deflater {
    z_stream zs;
    bool keep_context; /* false: server_no_context_takeover, reset per message */
};

/* The loop thread's output buffer: grows to the largest message, kept.
 * Scratch (nothing in it outlives a call), so file-scope in this pure
 * module rather than a member of struct gateway. */
static uint8_t *out;
static size_t out_cap;

struct ws_deflater *ws_deflater_create(int window_bits, bool keep_context)
{
    struct ws_deflater *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    /* Raw deflate (negative window bits): the permessage-deflate payload. */
    if (deflateInit2(&d->zs, DEFLATE_LEVEL, Z_DEFLATED, -window_bits, DEFLATE_MEM_LEVEL,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        free(d);
        return NULL;
    }
    d->keep_context = keep_context;
    return d;
}

void ws_deflater_destroy(struct ws_deflater *d)
{
    if (!d)
        return;
    deflateEnd(&d->zs);
    free(d);
}

const uint8_t *ws_deflate_message(struct ws_deflater *d, const uint8_t *data, size_t len,
                                  size_t *out_len)
{
    if (len < WS_DEFLATE_MIN_BYTES || len > (size_t)UINT32_MAX)
        return NULL;
    z_stream *zs = &d->zs;
    /* deflateBound covers the data; the sync flush adds an empty stored block. */
    size_t need = deflateBound(zs, (uLong)len) + 16;
    if (need > out_cap) {
        uint8_t *grown = realloc(out, need);
        if (!grown)
            return NULL;
        out = grown;
        out_cap = need;
    }
    zs->next_in = (Bytef *)data;
    zs->avail_in = (uInt)len;
    zs->next_out = out;
    zs->avail_out = (uInt)out_cap;
    int rc = deflate(zs, Z_SYNC_FLUSH);
    size_t n = out_cap - zs->avail_out;
    bool ok = rc == Z_OK && zs->avail_in == 0 && n >= 4 &&
              memcmp(out + n - 4, "\x00\x00\xff\xff", 4) == 0 && n - 4 < len;
    /* A message not sent compressed must not stay in the history the next
     * one refers to: the client never inflated it. */
    if (!ok || !d->keep_context)
        deflateReset(zs);
    if (!ok)
        return NULL; /* incompressible (already compressed, random): sent as it is */
    *out_len = n - 4;
    return out;
}

void ws_deflate_shutdown(void)
{
    free(out);
    out = NULL;
    out_cap = 0;
}

/* --- from clients ------------------------------------------------------------ */

struct ws_inflater {
    z_stream zs; /* raw inflate, 32 KiB window: takes any client_max_window_bits */
};

struct ws_inflater *ws_inflater_create(void)
{
    struct ws_inflater *inf = calloc(1, sizeof(*inf));
    if (inf && inflateInit2(&inf->zs, -15) != Z_OK) {
        free(inf);
        return NULL;
    }
    return inf;
}

void ws_inflater_destroy(struct ws_inflater *inf)
{
    if (!inf)
        return;
    inflateEnd(&inf->zs);
    free(inf);
}

/* Two output pieces, the loop thread's: a full piece is held back until the
 * next one has output, so that the message's last piece carries `final`. */
static uint8_t pieces[2][WS_INFLATE_PIECE];

int ws_inflate(struct ws_inflater *inf, const uint8_t *in, size_t len, bool last, size_t limit,
               ws_inflate_emit_fn emit, void *ctx)
{
    static const uint8_t trailer[4] = {0x00, 0x00, 0xff, 0xff};
    z_stream *zs = &inf->zs;
    zs->next_in = (Bytef *)in;
    zs->avail_in = (uInt)len;
    bool trailer_in = false;
    int cur = 0, held = -1; /* held: a full piece not emitted yet */
    size_t have = 0, total = 0;
    int rc = 0;
    for (;;) {
        size_t room = WS_INFLATE_PIECE - have;
        if (limit - total < room)
            room = limit - total + 1; /* one byte past the limit tells */
        zs->next_out = pieces[cur] + have;
        zs->avail_out = (uInt)room;
        int z = inflate(zs, trailer_in ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        size_t produced = room - zs->avail_out;
        have += produced;
        total += produced;
        if (total > limit)
            return WS_INFLATE_TOO_BIG;
        if (z != Z_OK && z != Z_BUF_ERROR && z != Z_STREAM_END)
            return WS_INFLATE_CORRUPT;
        if (have == WS_INFLATE_PIECE) { /* full: hold it, go on in the other */
            if (held >= 0 && (rc = emit(ctx, pieces[held], WS_INFLATE_PIECE, false)) != 0)
                return rc;
            held = cur;
            cur ^= 1;
            have = 0;
            continue;
        }
        if (zs->avail_in != 0) {
            if (produced == 0)
                return WS_INFLATE_CORRUPT; /* no progress with room left */
            continue;
        }
        if (last && !trailer_in) {
            zs->next_in = (Bytef *)trailer;
            zs->avail_in = sizeof(trailer);
            trailer_in = true;
            continue;
        }
        break; /* input used up, output drained */
    }
    if (held >= 0 && (rc = emit(ctx, pieces[held], WS_INFLATE_PIECE, last && have == 0)) != 0)
        return rc;
    if (have > 0 || (last && held < 0))
        return emit(ctx, pieces[cur], have, last);
    return 0;
}

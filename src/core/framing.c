/* framing.c - cuts a backend byte stream into WebSocket messages (raw, lines,
 * length32) and checks UTF-8 for text routes. Pure: bytes in, emit() out. */
#include "framing.h"

#include "buf_pool.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

void framing_length32_header(uint32_t len, uint8_t out[4])
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

static uint32_t length32_read(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* --- the tail buffer ------------------------------------------------------- */

void framing_decoder_init(struct framing_decoder *d, enum wsg_framing framing, bool text,
                          size_t max_message)
{
    memset(d, 0, sizeof(*d));
    d->framing = framing;
    d->text = text;
    d->max_message = max_message;
}

void framing_decoder_free(struct framing_decoder *d)
{
    buf_pool_put(d->buf);
    memset(d, 0, sizeof(*d));
}

/* The most the tail ever needs, except while holding input after a stop. */
static size_t tail_bound(const struct framing_decoder *d)
{
    if (d->framing == WSG_FRAMING_RAW)
        return 4; /* at most 3 bytes of one UTF-8 sequence */
    if (d->max_message == 0 || d->max_message > SIZE_MAX - 4)
        return SIZE_MAX;
    return d->max_message + 4; /* a length32 header + its payload */
}

/* Grows geometrically, capped at tail_bound unless `need` itself is larger
 * (only after a stop, which may park the whole unconsumed input here). */
static bool tail_reserve(struct framing_decoder *d, size_t need)
{
    if (need <= d->cap)
        return true;
    size_t bound = tail_bound(d);
    size_t cap = d->cap ? d->cap : 64;
    while (cap < need && cap <= SIZE_MAX / 2)
        cap *= 2;
    if (cap < need)
        cap = need;
    if (cap > bound)
        cap = need > bound ? need : bound;
    uint8_t *p = buf_pool_grow(d->buf, d->len, cap, &d->cap);
    if (!p)
        return false;
    d->buf = p;
    return true;
}

static enum framing_status tail_append(struct framing_decoder *d, const uint8_t *p, size_t n)
{
    if (n == 0)
        return FRAMING_OK;
    if (n > SIZE_MAX - d->len || !tail_reserve(d, d->len + n))
        return FRAMING_NO_MEMORY;
    memcpy(d->buf + d->len, p, n);
    d->len += n;
    return FRAMING_OK;
}

/* Empties the tail and gives its block back: an idle connection keeps no
 * buffer. */
static void tail_clear(struct framing_decoder *d)
{
    buf_pool_put(d->buf);
    d->buf = NULL;
    d->len = d->cap = 0;
}

/* Drops the first n bytes; gives back memory a stop made us take, and all of
 * it once the tail is empty. */
static void tail_consume(struct framing_decoder *d, size_t n)
{
    if (n == 0)
        return;
    if (n == d->len) {
        tail_clear(d);
        return;
    }
    d->len -= n;
    memmove(d->buf, d->buf + n, d->len);
    size_t bound = tail_bound(d);
    if (d->cap > bound && d->len <= bound && d->cap > buf_pool_size_for(bound)) {
        size_t cap;
        uint8_t *p = buf_pool_get(d->len, &cap);
        if (p) {
            memcpy(p, d->buf, d->len);
            buf_pool_put(d->buf);
            d->buf = p;
            d->cap = cap;
        }
    }
}

/* --- cutting messages -------------------------------------------------------- */

/* One framing_decode call: where messages go, and whether emit said stop. */
struct cut {
    struct framing_decoder *d;
    framing_emit_fn emit;
    void *ctx;
    bool stopped;
};

static bool deliver(struct cut *c, const uint8_t *msg, size_t len)
{
    if (c->emit(c->ctx, msg, len) != 0)
        c->stopped = true;
    return c->stopped;
}

/* A partial line (no '\n' yet) of n bytes can no longer fit max_message.
 * One byte of slack while the last byte is '\r': a "\r\n" may still end it. */
static bool partial_line_too_big(const struct framing_decoder *d, const uint8_t *p, size_t n)
{
    if (d->max_message == 0 || n <= d->max_message)
        return false;
    return n - 1 > d->max_message || p[n - 1] != '\r';
}

static enum framing_status cut_lines(struct cut *c, const uint8_t *p, size_t n, size_t *used)
{
    const struct framing_decoder *d = c->d;
    const uint8_t *nl;
    size_t off = 0;
    while (off < n && (nl = memchr(p + off, '\n', n - off)) != NULL) {
        const uint8_t *line = p + off;
        size_t len = (size_t)(nl - line);
        off += len + 1;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (d->max_message && len > d->max_message)
            return FRAMING_TOO_BIG;
        if (d->text && !utf8_is_valid(line, len))
            return FRAMING_BAD_UTF8;
        if (deliver(c, line, len))
            break;
    }
    *used = off;
    if (!c->stopped && partial_line_too_big(d, p + off, n - off))
        return FRAMING_TOO_BIG;
    return FRAMING_OK;
}

static enum framing_status cut_length32(struct cut *c, const uint8_t *p, size_t n, size_t *used)
{
    const struct framing_decoder *d = c->d;
    size_t off = 0;
    while (!c->stopped && n - off >= 4) {
        uint32_t len = length32_read(p + off);
        /* Refused on the header alone: never buffer toward an oversize frame. */
        if (d->max_message && len > d->max_message)
            return FRAMING_TOO_BIG;
        if (n - off - 4 < len)
            break;
        const uint8_t *payload = p + off + 4;
        if (d->text && !utf8_is_valid(payload, len))
            return FRAMING_BAD_UTF8;
        off += 4 + (size_t)len;
        deliver(c, payload, len);
    }
    *used = off;
    return FRAMING_OK;
}

/* Emits the complete messages at the front of [p, p+n) and sets *used to
 * the bytes they took; what remains is one incomplete message, already
 * checked for a certain TOO_BIG (unless emit stopped us). */
static enum framing_status cut(struct cut *c, const uint8_t *p, size_t n, size_t *used)
{
    if (c->d->framing == WSG_FRAMING_LINES)
        return cut_lines(c, p, n, used);
    return cut_length32(c, p, n, used);
}

/* Where to keep bytes from after a stop that consumed `used` bytes. Lines
 * keep the '\n' just consumed: a partial line never holds one, so a buffer
 * starting with '\n' means "complete lines wait here", checked in O(1). */
static size_t stop_keep_from(const struct framing_decoder *d, size_t used)
{
    return d->framing == WSG_FRAMING_LINES ? used - 1 : used;
}

/* Cuts the buffer from `skip` on and drops what was delivered. */
static enum framing_status cut_buffer(struct cut *c, size_t skip)
{
    struct framing_decoder *d = c->d;
    size_t used;
    enum framing_status st = cut(c, d->buf + skip, d->len - skip, &used);
    if (st == FRAMING_OK)
        tail_consume(d, c->stopped ? stop_keep_from(d, skip + used) : skip + used);
    return st;
}

/* Delivers what an earlier stop left in the buffer. Afterwards (unless
 * stopped again) the buffer holds at most one incomplete message. */
static enum framing_status drain_stopped(struct cut *c)
{
    struct framing_decoder *d = c->d;
    if (d->len == 0)
        return FRAMING_OK;
    if (d->framing == WSG_FRAMING_LINES) {
        if (d->buf[0] != '\n')
            return FRAMING_OK; /* only a partial line: scanning it again would be quadratic */
        return cut_buffer(c, 1);
    }
    return cut_buffer(c, 0); /* O(1) when only a partial frame is there */
}

/* Completes the buffered partial line from the input; *off = bytes taken. */
static enum framing_status finish_line(struct cut *c, const uint8_t *in, size_t len, size_t *off)
{
    struct framing_decoder *d = c->d;
    const uint8_t *nl = memchr(in, '\n', len);
    size_t take = nl ? (size_t)(nl - in) + 1 : len;
    /* Take no more than an acceptable line plus "\r\n" could need
     * (max + 2 <= tail_bound); the cut then reports the overflow. The
     * buffered partial is at most max + 1 bytes, so room >= 1. */
    if (d->max_message && d->max_message <= SIZE_MAX - 4) {
        size_t room = d->max_message + 2 - d->len;
        if (take > room)
            take = room;
    }
    *off = take;
    enum framing_status st = tail_append(d, in, take);
    return st != FRAMING_OK ? st : cut_buffer(c, 0);
}

/* Bytes still missing from the buffered length32 frame. */
static size_t length32_missing(const struct framing_decoder *d)
{
    if (d->len < 4)
        return 4 - d->len;
    return 4 + (size_t)length32_read(d->buf) - d->len;
}

/* Completes the buffered partial frame from the input, header first (so an
 * oversize length is refused before any payload is buffered). */
static enum framing_status finish_frame(struct cut *c, const uint8_t *in, size_t len, size_t *off)
{
    struct framing_decoder *d = c->d;
    size_t taken = 0;
    enum framing_status st = FRAMING_OK;
    while (st == FRAMING_OK && !c->stopped && d->len > 0 && taken < len) {
        size_t take = length32_missing(d);
        if (take > len - taken)
            take = len - taken;
        st = tail_append(d, in + taken, take);
        taken += take;
        if (st == FRAMING_OK)
            st = cut_buffer(c, 0);
    }
    *off = taken;
    return st;
}

/* lines and length32: buffered messages first, then the one straddling
 * buffer and input, then whole messages straight from the input (no copy),
 * and finally the incomplete tail into the buffer. */
static enum framing_status decode_framed(struct cut *c, const uint8_t *in, size_t len)
{
    struct framing_decoder *d = c->d;
    enum framing_status st = drain_stopped(c);
    if (st != FRAMING_OK || len == 0)
        return st;
    if (c->stopped)
        return tail_append(d, in, len);

    size_t off = 0;
    if (d->len > 0) {
        st = d->framing == WSG_FRAMING_LINES ? finish_line(c, in, len, &off)
                                             : finish_frame(c, in, len, &off);
        if (st != FRAMING_OK)
            return st;
        if (c->stopped || off == len)
            return tail_append(d, in + off, len - off);
    }

    size_t used;
    st = cut(c, in + off, len - off, &used);
    if (st != FRAMING_OK)
        return st;
    off += c->stopped ? stop_keep_from(d, used) : used;
    return tail_append(d, in + off, len - off);
}

/* --- raw ------------------------------------------------------------------- */

/* Emits a followed by b as one message. The copy is only needed when a
 * character was split across reads; small ones stay on the stack. */
static enum framing_status deliver_joined(struct cut *c, const uint8_t *a, size_t alen,
                                          const uint8_t *b, size_t blen)
{
    uint8_t small[1024];
    size_t n = alen + blen;
    uint8_t *m = n <= sizeof small ? small : buf_pool_get(n, NULL);
    if (!m)
        return FRAMING_NO_MEMORY;
    memcpy(m, a, alen);
    if (blen > 0)
        memcpy(m + alen, b, blen);
    deliver(c, m, n);
    if (m != small)
        buf_pool_put(m);
    return FRAMING_OK;
}

/* Everything up to the last character boundary goes out as one message; an
 * incomplete sequence (<= 3 bytes) waits in the buffer for its other bytes
 * and then goes out at the front of the next message. */
static enum framing_status decode_raw_text(struct cut *c, const uint8_t *in, size_t len)
{
    struct framing_decoder *d = c->d;
    uint8_t head[4]; /* the held bytes + the input bytes that complete them */
    size_t held = d->len, head_len = 0, off = 0;
    bool bad;
    if (len == 0)
        return FRAMING_OK;

    if (held > 0) {
        size_t take = len < sizeof head - held ? len : sizeof head - held;
        memcpy(head, d->buf, held);
        memcpy(head + held, in, take);
        head_len = utf8_complete_prefix(head, held + take, &bad);
        if (bad)
            return FRAMING_BAD_UTF8;
        if (head_len == 0) /* still incomplete, so take == len */
            return tail_append(d, in, take);
        off = head_len - held;
    }

    size_t n = utf8_complete_prefix(in + off, len - off, &bad);
    if (bad)
        return FRAMING_BAD_UTF8;
    tail_clear(d);
    enum framing_status st = tail_append(d, in + off + n, len - off - n);
    if (st != FRAMING_OK)
        return st;
    if (head_len > 0)
        return deliver_joined(c, head, head_len, in + off, n);
    if (n > 0)
        deliver(c, in, n);
    return FRAMING_OK;
}

/* --- entry point ------------------------------------------------------------- */

/* Backpressure: when emit returns non-zero, decoding stops right after that
 * message and everything not yet delivered - buffered messages and the rest
 * of this input - is kept in d->buf; the next call (len 0 is fine) resumes
 * exactly there, before any new input. Only then may the buffer exceed
 * max_message + 4: it holds up to the whole unconsumed input, and shrinks
 * back once that is delivered. raw never needs this: a raw call delivers a
 * single message, so nothing is left undelivered. */
enum framing_status framing_decode(struct framing_decoder *d, const uint8_t *in, size_t len,
                                   framing_emit_fn emit, void *ctx)
{
    struct cut c = {.d = d, .emit = emit, .ctx = ctx, .stopped = false};
    switch (d->framing) {
    case WSG_FRAMING_RAW:
        if (d->text)
            return decode_raw_text(&c, in, len);
        if (len > 0)
            deliver(&c, in, len);
        return FRAMING_OK;
    case WSG_FRAMING_LINES:
    case WSG_FRAMING_LENGTH32: {
        enum framing_status st = decode_framed(&c, in, len);
        if (d->framing == WSG_FRAMING_LINES && d->len == 1 && d->buf[0] == '\n')
            tail_clear(d); /* a stop marker with nothing behind it */
        return st;
    }
    }
    return FRAMING_OK;
}

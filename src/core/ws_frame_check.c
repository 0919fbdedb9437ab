/* ws_frame_check.c - the RFC 6455 client-frame rules; see ws_frame_check.h. */
#include "ws_frame_check.h"

#include "utf8.h"

#include <string.h>

enum { S_HDR0, S_HDR1, S_LEN, S_MASK, S_PAYLOAD };

enum {
    OP_CONT = 0x0,
    OP_TEXT = 0x1,
    OP_BINARY = 0x2,
    OP_CLOSE = 0x8,
    OP_PING = 0x9,
    OP_PONG = 0xa,
};

/* Why a stream failed; the index is kept in `op` once it has. */
enum fault {
    F_UNMASKED,
    F_RSV,
    F_OPCODE,
    F_CTL_LONG,
    F_CTL_FRAGMENTED,
    F_CONT_NO_START,
    F_DATA_IN_MESSAGE,
    F_CLOSE_1_BYTE,
    F_CLOSE_CODE,
    F_CLOSE_UTF8,
    F_LENGTH_63,
    F_TEXT_UTF8,
    F_TEXT_UTF8_END,
};

static const struct {
    int code;
    const char *reason;
} faults[] = {
    [F_UNMASKED] = {WS_CLOSE_PROTOCOL_ERROR, "unmasked client frame"},
    [F_RSV] = {WS_CLOSE_PROTOCOL_ERROR, "reserved bits set"},
    [F_OPCODE] = {WS_CLOSE_PROTOCOL_ERROR, "unknown opcode"},
    [F_CTL_LONG] = {WS_CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes"},
    [F_CTL_FRAGMENTED] = {WS_CLOSE_PROTOCOL_ERROR, "fragmented control frame"},
    [F_CONT_NO_START] = {WS_CLOSE_PROTOCOL_ERROR, "continuation without a message"},
    [F_DATA_IN_MESSAGE] = {WS_CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one"},
    [F_CLOSE_1_BYTE] = {WS_CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload"},
    [F_CLOSE_CODE] = {WS_CLOSE_PROTOCOL_ERROR, "invalid close code"},
    [F_CLOSE_UTF8] = {WS_CLOSE_INVALID_PAYLOAD, "close reason is not UTF-8"},
    [F_LENGTH_63] = {WS_CLOSE_PROTOCOL_ERROR, "frame length over 2^63"},
    [F_TEXT_UTF8] = {WS_CLOSE_INVALID_PAYLOAD, "text message is not UTF-8"},
    [F_TEXT_UTF8_END] = {WS_CLOSE_INVALID_PAYLOAD, "text message ends inside a character"},
};

bool ws_close_code_valid(unsigned code)
{
    if (code < 1000 || code >= 5000)
        return false;
    if (code >= 3000)
        return true;
    return code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

void ws_frame_check_init(struct ws_frame_check *c, uint8_t settings)
{
    memset(c, 0, sizeof(*c));
    c->flags = settings & (WS_FC_ALLOW_RSV1 | WS_FC_NO_TEXT_UTF8);
}

static bool is_control(uint8_t op) { return op & 0x8; }

/* Payload bytes of this frame the checker must read (not just skip). */
static bool reads_payload(const struct ws_frame_check *c)
{
    if (c->op == OP_CLOSE)
        return true;
    if (c->flags & WS_FC_NO_TEXT_UTF8)
        return false;
    return c->op == OP_TEXT || (c->op == OP_CONT && (c->flags & WS_FC_MSG_TEXT));
}

/* First header byte: FIN, RSV, opcode. Returns a fault or -1. */
static int on_hdr0(struct ws_frame_check *c, uint8_t b)
{
    uint8_t op = b & 0x0f, rsv = b & 0x70;
    c->fin = b >> 7;
    c->op = op;
    bool rsv1_ok = (c->flags & WS_FC_ALLOW_RSV1) && (op == OP_TEXT || op == OP_BINARY);
    if (rsv & ~(rsv1_ok ? 0x40 : 0))
        return F_RSV;
    switch (op) {
    case OP_CONT:
        if (!(c->flags & WS_FC_MSG_OPEN))
            return F_CONT_NO_START;
        break;
    case OP_TEXT:
    case OP_BINARY:
        if (c->flags & WS_FC_MSG_OPEN)
            return F_DATA_IN_MESSAGE;
        c->flags = (uint8_t)((c->flags & ~WS_FC_MSG_TEXT) | (op == OP_TEXT ? WS_FC_MSG_TEXT : 0));
        c->text_utf8 = UTF8_ACCEPT;
        break;
    case OP_CLOSE:
    case OP_PING:
    case OP_PONG:
        if (!c->fin)
            return F_CTL_FRAGMENTED;
        return -1;
    default:
        return F_OPCODE;
    }
    if (c->fin)
        c->flags &= (uint8_t)~WS_FC_MSG_OPEN;
    else
        c->flags |= WS_FC_MSG_OPEN;
    return -1;
}

/* Second header byte: MASK, 7-bit length. */
static int on_hdr1(struct ws_frame_check *c, uint8_t b)
{
    uint8_t len7 = b & 0x7f;
    if (!(b & 0x80))
        return F_UNMASKED;
    if (is_control(c->op) && len7 > 125)
        return F_CTL_LONG;
    if (c->op == OP_CLOSE && len7 == 1)
        return F_CLOSE_1_BYTE;
    c->left = len7 < 126 ? len7 : 0;
    c->mask_pos = len7 == 126 ? 2 : len7 == 127 ? 8 : 0; /* length bytes due */
    c->state = c->mask_pos ? S_LEN : S_MASK;
    return -1;
}

/* The frame's last byte has been read (or its header, if it has no payload). */
static int on_frame_end(struct ws_frame_check *c)
{
    if (c->op == OP_CLOSE) {
        if (c->ctl_seen == 0)
            c->close_code = 1005;
        else if (c->ctl_utf8 != UTF8_ACCEPT)
            return F_CLOSE_UTF8;
        c->flags |= WS_FC_CLOSED;
    } else if (!is_control(c->op) && c->fin && reads_payload(c) && c->text_utf8 != UTF8_ACCEPT) {
        return F_TEXT_UTF8_END;
    }
    c->state = S_HDR0;
    return -1;
}

/* Unmasks p[0..n) in place, the key starting at c->mask_pos: eight bytes at
 * a time (memcpy: any alignment). */
static void unmask_span(struct ws_frame_check *c, uint8_t *p, size_t n)
{
    uint8_t key[8];
    for (int k = 0; k < 8; k++)
        key[k] = c->mask[(c->mask_pos + k) & 3];
    uint64_t k64;
    memcpy(&k64, key, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k64;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++)
        p[i] ^= key[i & 7];
    c->mask_pos = (uint8_t)((c->mask_pos + n) & 3);
}

/* Reads payload bytes the checker must judge, unmasking them (and writing
 * them back unmasked to `out` if it is not NULL). Returns a fault or -1; *i
 * is left on the breaking byte. */
static int read_payload(struct ws_frame_check *c, const uint8_t *buf, uint8_t *out, size_t len,
                        size_t *i)
{
    for (; *i < len && c->left; (*i)++, c->left--) {
        uint8_t b = buf[*i] ^ c->mask[c->mask_pos];
        c->mask_pos = (c->mask_pos + 1) & 3;
        if (out)
            out[*i] = b;
        if (c->op != OP_CLOSE) {
            if ((c->text_utf8 = utf8_step(c->text_utf8, b)) == UTF8_REJECT)
                return F_TEXT_UTF8;
            continue;
        }
        uint8_t n = c->ctl_seen++;
        if (n == 0) {
            c->close_code = (uint16_t)(b << 8);
        } else if (n == 1) {
            c->close_code |= b;
            if (!ws_close_code_valid(c->close_code))
                return F_CLOSE_CODE;
        } else if ((c->ctl_utf8 = utf8_step(c->ctl_utf8, b)) == UTF8_REJECT) {
            return F_CLOSE_UTF8;
        }
    }
    return -1;
}

static int fail(struct ws_frame_check *c, int fault, size_t keep, size_t at,
                struct ws_frame_verdict *v)
{
    c->flags |= WS_FC_FAILED;
    c->op = (uint8_t)fault;
    v->keep = keep;
    v->at = at;
    v->code = faults[fault].code;
    v->reason = faults[fault].reason;
    return -1;
}

int ws_frame_check_feed(struct ws_frame_check *c, const uint8_t *buf, size_t len,
                        struct ws_frame_verdict *v)
{
    return ws_frame_check_feed_cb(c, buf, len, v, NULL, NULL);
}

int ws_frame_check_feed_cb(struct ws_frame_check *c, const uint8_t *buf, size_t len,
                           struct ws_frame_verdict *v, ws_frame_message_fn on_message, void *ctx)
{
    const struct ws_frame_events ev = {.on_message = on_message, .ctx = ctx};
    return ws_frame_check_feed_ev(c, buf, len, v, &ev);
}

bool ws_frame_check_in_ping(const struct ws_frame_check *c)
{
    return c->op == OP_PING && c->state != S_HDR0 && !(c->flags & (WS_FC_FAILED | WS_FC_CLOSED));
}

/* A frame that passed on_frame_end: tell who asked about pings. */
static void frame_ended(const struct ws_frame_check *c, const struct ws_frame_events *ev,
                        bool started_here, size_t start, size_t end)
{
    if (c->op == OP_PING && ev && ev->on_ping)
        ev->on_ping(ev->ctx, started_here ? start : WS_FC_BEFORE_RUN, end);
}

int ws_frame_check_feed_ev(struct ws_frame_check *c, const uint8_t *buf, size_t len,
                           struct ws_frame_verdict *v, const struct ws_frame_events *ev)
{
    ws_frame_message_fn on_message = ev ? ev->on_message : NULL;
    void *ctx = ev ? ev->ctx : NULL;
    uint8_t *unmask = ev ? ev->unmask : NULL; /* once given, given for every run after */
    if (c->flags & WS_FC_FAILED)
        return fail(c, c->op, 0, 0, v);
    if (c->flags & WS_FC_CLOSED) {
        v->keep = v->at = 0;
        return WS_FC_END;
    }
    size_t frame_start = 0; /* in this run; 0 if the frame began before it */
    bool started_here = false;
    size_t i = 0;
    int fault = -1;
    while (i < len && fault < 0) {
        uint8_t b = buf[i];
        switch (c->state) {
        case S_HDR0:
            frame_start = i;
            started_here = true;
            c->ctl_seen = 0;
            c->ctl_utf8 = UTF8_ACCEPT;
            if ((fault = on_hdr0(c, b)) < 0) {
                if (on_message && (c->op == OP_TEXT || c->op == OP_BINARY))
                    on_message(ctx, i, b & 0x40);
                c->state = S_HDR1;
                i++;
            }
            break;
        case S_HDR1:
            if ((fault = on_hdr1(c, b)) < 0)
                i++;
            break;
        case S_LEN:
            if (c->mask_pos == 8 && (b & 0x80)) {
                fault = F_LENGTH_63;
                break;
            }
            c->left = c->left << 8 | b;
            i++;
            if (--c->mask_pos == 0)
                c->state = S_MASK;
            break;
        case S_MASK:
            if (c->mask_pos == 0) { /* unmask this frame ourselves? (see ws_frame_events) */
                bool clear = unmask && !is_control(c->op) && len - i >= 4;
                c->flags = (uint8_t)((c->flags & ~WS_FC_CLEARING) | (clear ? WS_FC_CLEARING : 0));
            }
            c->mask[c->mask_pos++] = b;
            if (c->flags & WS_FC_CLEARING)
                unmask[i] = 0;
            i++;
            if (c->mask_pos == 4) {
                c->mask_pos = 0;
                c->state = S_PAYLOAD;
                if (c->left == 0) {
                    if ((fault = on_frame_end(c)) >= 0)
                        i--; /* at the mask's last byte, which ended the frame */
                    else
                        frame_ended(c, ev, started_here, frame_start, i);
                }
            }
            break;
        case S_PAYLOAD:
            if (reads_payload(c)) {
                fault = read_payload(c, buf, (c->flags & WS_FC_CLEARING) ? unmask : NULL, len, &i);
            } else {
                size_t n = len - i < c->left ? len - i : (size_t)c->left;
                if (c->flags & WS_FC_CLEARING)
                    unmask_span(c, unmask + i, n);
                i += n;
                c->left -= n;
            }
            if (fault < 0 && c->left == 0) {
                size_t last = i - 1;
                if ((fault = on_frame_end(c)) >= 0)
                    i = last;
                else
                    frame_ended(c, ev, started_here, frame_start, i);
            }
            break;
        }
        if (c->flags & WS_FC_CLOSED) {
            v->keep = v->at = i; /* i is past the close frame's last byte */
            return WS_FC_END;
        }
    }
    if (fault >= 0)
        return fail(c, fault, frame_start, i, v);
    return 0;
}

/* ws_frame_check.h - RFC 6455 rules a server enforces on the frames a client
 * sends, checked incrementally over the raw byte stream before libwebsockets
 * parses it (see ws_rx_guard.h for where the bytes come from). Pure: no
 * sockets, no allocation; unit-tested and fuzzed.
 *
 * The checker walks frame headers, skips payload by length, and reads only
 * the payload it must judge: a close frame's code and reason, and (unless
 * switched off) text messages, whose UTF-8 is checked across frames and
 * across interleaved control frames, unmasking as it goes. Every rule is
 * decided at the byte that breaks it, so cutting the stream before the
 * offending frame's first byte keeps that byte, and all of the frame, from
 * the parser behind us. */
#ifndef WSGATE_WS_FRAME_CHECK_H
#define WSGATE_WS_FRAME_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_INVALID_PAYLOAD 1007

/* One client-to-server stream. 24 bytes; zero it (or ws_frame_check_init)
 * before the first byte. */
struct ws_frame_check {
    uint64_t left; /* header: bytes of it still due; payload: bytes left */
    uint8_t mask[4];
    uint16_t close_code; /* of the close frame being read, then of the valid one */
    uint8_t state;       /* enum in ws_frame_check.c */
    uint8_t op;          /* opcode of the frame being read */
    uint8_t fin;         /* its FIN bit */
    uint8_t mask_pos;    /* payload bytes seen, modulo 4 */
    uint8_t ctl_seen;    /* control payload bytes seen (<= 125) */
    uint8_t text_utf8;   /* UTF-8 state of the open text message */
    uint8_t ctl_utf8;    /* UTF-8 state of the close reason */
    uint8_t flags;       /* WS_FC_* below */
};

/* flags: settings (set before feeding) and state. */
#define WS_FC_ALLOW_RSV1 0x01   /* permessage-deflate negotiated: RSV1 on a message's first frame */
#define WS_FC_NO_TEXT_UTF8 0x02 /* leave text UTF-8 to someone else */
#define WS_FC_MSG_OPEN 0x10     /* a fragmented message awaits its continuation */
#define WS_FC_MSG_TEXT 0x20     /* ... and it is text */
#define WS_FC_CLEARING 0x08 /* the frame's key was zeroed in the run: payload unmasked in place */
#define WS_FC_CLOSED 0x40   /* a valid close frame was read: nothing more is judged */
#define WS_FC_FAILED 0x80   /* a violation was found: nothing more is judged */

/* What a violation calls for. */
struct ws_frame_verdict {
    size_t keep;        /* bytes of this run before the offending frame (0 if it
                           began in an earlier run) */
    size_t at;          /* index in this run of the byte that broke the rule */
    int code;           /* 1002 or 1007 */
    const char *reason; /* static text, short enough for a close frame */
};

void ws_frame_check_init(struct ws_frame_check *c, uint8_t settings);

/* Feeds the next `len` bytes of the stream (any split). Returns
 *  0  (WS_FC_OK) they break no rule;
 *  1  (WS_FC_END) a valid close frame ended the stream: v->keep bytes of
 *     this run lead up to its end, the rest is not judged (a client sends
 *     nothing after its close); later calls return 1 with keep 0;
 * -1  (WS_FC_VIOLATION) the first violation, in *v; later calls return -1
 *     with the same code and reason, keep 0 and at 0. */
enum { WS_FC_VIOLATION = -1, WS_FC_OK = 0, WS_FC_END = 1 };
int ws_frame_check_feed(struct ws_frame_check *c, const uint8_t *buf, size_t len,
                        struct ws_frame_verdict *v);

/* The same, also calling on_message(ctx, at, rsv1) at the first header byte
 * (buf[at]) of every message's first frame, once that byte has passed the
 * checks, with its RSV1 bit (permessage-deflate: the message is compressed). */
typedef void (*ws_frame_message_fn)(void *ctx, size_t at, bool rsv1);
int ws_frame_check_feed_cb(struct ws_frame_check *c, const uint8_t *buf, size_t len,
                           struct ws_frame_verdict *v, ws_frame_message_fn on_message, void *ctx);

/* What a reader may want to hear of while the checker walks a run. Either
 * callback may be NULL. on_ping: a ping frame passed every check and ended
 * in this run, at buf[end - 1]; `start` is the index of its first header byte
 * in this run, or WS_FC_BEFORE_RUN if it began in an earlier run.
 *
 * unmask: NULL, or the run itself, writable. Then every data frame whose
 * masking key lies wholly in one run has the key zeroed there and its
 * payload unmasked in place, in this run and the ones after it (a frame
 * whose key is split across runs stays as it came). The parser behind sees
 * an all-zero key and skips its own unmasking: libwebsockets 4.1.6 unmasks
 * a byte at a time, this a word at a time. Control frames stay masked.
 * Once a run was fed with `unmask`, every later run must be too. */
#define WS_FC_BEFORE_RUN SIZE_MAX
typedef void (*ws_frame_ping_fn)(void *ctx, size_t start, size_t end);
struct ws_frame_events {
    ws_frame_message_fn on_message;
    ws_frame_ping_fn on_ping;
    void *ctx;
    uint8_t *unmask;
};
int ws_frame_check_feed_ev(struct ws_frame_check *c, const uint8_t *buf, size_t len,
                           struct ws_frame_verdict *v, const struct ws_frame_events *ev);

/* True if the run fed last ended inside a ping frame (its header or payload). */
bool ws_frame_check_in_ping(const struct ws_frame_check *c);

/* The code of the last valid close frame read (0: none yet; 1005 if it had
 * no payload). */
static inline int ws_frame_check_close_code(const struct ws_frame_check *c)
{
    return (c->flags & WS_FC_CLOSED) ? c->close_code : 0;
}

/* RFC 6455 7.4: may a close frame carry this code? */
bool ws_close_code_valid(unsigned code);

#endif

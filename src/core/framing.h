/* framing.h - how a backend byte stream maps to WebSocket messages
 * ("framing": raw, lines, length32; "message": binary or text), and the
 * UTF-8 boundary rules of text routes. Pure: no sockets; unit-tested and
 * fuzzed. The bridge feeds backend bytes in and sends what comes out. */
#ifndef WSGATE_FRAMING_H
#define WSGATE_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum framing_status {
    FRAMING_OK = 0,
    FRAMING_TOO_BIG,  /* a line or length32 frame over max_message bytes */
    FRAMING_BAD_UTF8, /* text route: bytes that are not UTF-8 */
    FRAMING_NO_MEMORY,
};

/* Called once per complete message, in order. `msg` is valid only during
 * the call. Returns 0, or non-zero to stop decoding (framing_decode then
 * returns FRAMING_OK and keeps the undelivered rest for the next call). */
typedef int (*framing_emit_fn)(void *ctx, const uint8_t *msg, size_t len);

/* Turns backend bytes into messages. One per backend connection; its
 * buffer holds only the incomplete tail (a partial line, a partial length32
 * frame, or up to 3 bytes of a UTF-8 sequence on a raw text route) and never
 * grows past max_message + 4 bytes. */
struct framing_decoder {
    enum wsg_framing framing;
    bool text;          /* message: "text" */
    size_t max_message; /* limit for one message; 0 = none (raw only) */
    uint8_t *buf;       /* owned: the incomplete tail */
    size_t len, cap;
};

void framing_decoder_init(struct framing_decoder *d, enum wsg_framing framing, bool text,
                          size_t max_message);
void framing_decoder_free(struct framing_decoder *d);

/* Feeds `len` bytes; emits every message they complete. raw: whatever has
 * arrived is a message (on text routes cut before an incomplete UTF-8
 * sequence, which waits for its remaining bytes). lines: each "\n"-terminated
 * line without its "\n" (and without a "\r" before it). length32: each
 * 4-byte big-endian length + payload, the payload alone. On a text route
 * every emitted message is valid UTF-8; otherwise FRAMING_BAD_UTF8. After a
 * non-OK status the decoder is unusable (the connection closes). */
enum framing_status framing_decode(struct framing_decoder *d, const uint8_t *in, size_t len,
                                   framing_emit_fn emit, void *ctx);

/* The length32 header for a message of `len` bytes, into out[4]. */
void framing_length32_header(uint32_t len, uint8_t out[4]);

#endif

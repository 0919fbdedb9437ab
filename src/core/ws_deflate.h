/* ws_deflate.h - permessage-deflate (RFC 7692) both ways, with zlib.
 *
 * To clients: a deflater per compressed connection, made at its first
 * compressed message, keeping its context between messages (a stream of
 * small JSON messages shrinks about 7x that way, about 1.2x one by one),
 * with a 4 KiB window and memLevel 5: about 38 KiB. The owner may destroy
 * it between messages (an idle connection) and make a new one: the client
 * inflates the fresh stream with the context it kept.
 *
 * From clients: a client may compress with context takeover, so each
 * connection that sends a compressed message gets an inflater (zlib's
 * state and its 32 KiB window: any client_max_window_bits). Output comes in
 * pieces of at most WS_INFLATE_PIECE bytes and stops at a limit, so a small
 * compressed "bomb" is never inflated past max_message_bytes. (lws 4.1.6's
 * own inflater is not used: it aborts the process, assert(priv->rx.avail_out),
 * on some highly compressible messages.) Loop thread only. */
#ifndef WSGATE_WS_DEFLATE_H
#define WSGATE_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Messages shorter than this go out uncompressed (RSV1 clear, as RFC 7692
 * allows): deflate would not shrink them. */
#define WS_DEFLATE_MIN_BYTES 32

/* The deflater's window unless the client asks for a smaller one
 * (server_max_window_bits). */
#define WS_DEFLATE_WINDOW_BITS 12

struct ws_deflater;

/* window_bits 9..15; keep_context false when the client asked for
 * server_no_context_takeover. NULL when out of memory. */
struct ws_deflater *ws_deflater_create(int window_bits, bool keep_context);
void ws_deflater_destroy(struct ws_deflater *d); /* NULL is fine */

/* Compresses one whole message: the payload of its first frame onwards
 * (the final 00 00 ff ff removed, as RFC 7692 7.2.1 says). The result lives
 * in a buffer of this module, valid until the next call; the buffer grows
 * to the largest message seen and stays, so a steady stream allocates
 * nothing. NULL if the message is short, or compression fails or would not
 * make it smaller: then it goes out as it is. */
const uint8_t *ws_deflate_message(struct ws_deflater *d, const uint8_t *data, size_t len,
                                  size_t *out_len);

/* Frees the shared output buffer (at exit). */
void ws_deflate_shutdown(void);

#define WS_INFLATE_PIECE 16384

struct ws_inflater;

/* NULL when out of memory. Free with ws_inflater_destroy (NULL is fine). */
struct ws_inflater *ws_inflater_create(void);
void ws_inflater_destroy(struct ws_inflater *inf);

/* Gets one piece of inflated output; `final` on the message's last piece
 * (which may be empty). A nonzero return stops inflating and is returned. */
typedef int (*ws_inflate_emit_fn)(void *ctx, const uint8_t *data, size_t len, bool final);

enum { WS_INFLATE_CORRUPT = -101, WS_INFLATE_TOO_BIG = -102 };

/* Inflates the next `len` compressed bytes of a message; `last` with the
 * message's last bytes (the 00 00 ff ff the sender removed is put back).
 * At most `limit` bytes may come out of the rest of this message (the
 * caller tracks what came out before): one more is WS_INFLATE_TOO_BIG,
 * found without inflating further. Returns 0, an emit's nonzero return,
 * WS_INFLATE_CORRUPT or WS_INFLATE_TOO_BIG. */
int ws_inflate(struct ws_inflater *inf, const uint8_t *in, size_t len, bool last, size_t limit,
               ws_inflate_emit_fn emit, void *ctx);

#endif

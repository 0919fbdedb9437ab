/* base64.h - RFC 4648 base64, both alphabets wsgate meets: the standard one,
 * padded (envelope payloads that are not UTF-8), and base64url unpadded
 * (JWT segments, RFC 7515). Decoders are strict: one encoding per value. */
#ifndef WSGATE_BASE64_H
#define WSGATE_BASE64_H

#include <stddef.h>
#include <stdint.h>

enum base64_alphabet {
    BASE64_STD, /* "+/", padded with "=" to a multiple of 4 */
    BASE64_URL, /* "-_", no padding */
};

#define BASE64_INVALID (-1)
#define BASE64_NO_MEMORY (-2)

/* Encodes into a malloc'd, NUL-terminated string (the caller frees it);
 * *out_len without the NUL. NULL without memory or when the result would not
 * fit a size_t. */
char *base64_encode(enum base64_alphabet a, const uint8_t *in, size_t len, size_t *out_len);

/* Decodes [in, in+len) into a malloc'd buffer with a NUL after the *out_len
 * bytes (the caller frees it). 0, BASE64_INVALID (a character outside the
 * alphabet, whitespace, padding where the alphabet has none or in the wrong
 * place, a length no encoding has, non-zero bits that the encoding drops),
 * or BASE64_NO_MEMORY; *out is NULL unless 0. */
int base64_decode(enum base64_alphabet a, const char *in, size_t len, uint8_t **out,
                  size_t *out_len);

/* The same into the caller's memory, for callers that keep their buffers
 * (envelope.c: buf_pool blocks). base64_encoded_len() is the length without
 * the NUL (SIZE_MAX when it would not fit a size_t); `out` has room for one
 * more. base64_decoded_max() is the room base64_decode_into() needs, its
 * NUL included; the result and *out_len are those of base64_decode(). */
size_t base64_encoded_len(enum base64_alphabet a, size_t len);
void base64_encode_into(enum base64_alphabet a, const uint8_t *in, size_t len, char *out);
size_t base64_decoded_max(size_t len);
int base64_decode_into(enum base64_alphabet a, const char *in, size_t len, uint8_t *out,
                       size_t *out_len);

#endif

/* base64.c - see base64.h. Pure. */
#include "base64.h"

#include <stdint.h>
#include <stdlib.h>

static const char std_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int value(enum base64_alphabet a, unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (a == BASE64_URL ? '-' : '+'))
        return 62;
    if (c == (a == BASE64_URL ? '_' : '/'))
        return 63;
    return -1;
}

size_t base64_encoded_len(enum base64_alphabet a, size_t len)
{
    if (len / 3 >= (SIZE_MAX - 1) / 4 - 1)
        return SIZE_MAX;
    size_t tail = len % 3;
    return len / 3 * 4 + (tail == 0 ? 0 : a == BASE64_URL ? tail + 1 : 4);
}

void base64_encode_into(enum base64_alphabet a, const uint8_t *in, size_t len, char *out)
{
    const char *chars = a == BASE64_URL ? url_chars : std_chars;
    size_t tail = len % 3;
    char *o = out;
    size_t i = 0;
    for (; len - i >= 3; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = chars[v >> 18];
        *o++ = chars[(v >> 12) & 63];
        *o++ = chars[(v >> 6) & 63];
        *o++ = chars[v & 63];
    }
    if (tail) {
        uint32_t v = (uint32_t)in[i] << 16 | (tail == 2 ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = chars[v >> 18];
        *o++ = chars[(v >> 12) & 63];
        if (tail == 2)
            *o++ = chars[(v >> 6) & 63];
        if (a == BASE64_STD) {
            if (tail == 1)
                *o++ = '=';
            *o++ = '=';
        }
    }
    *o = '\0';
}

char *base64_encode(enum base64_alphabet a, const uint8_t *in, size_t len, size_t *out_len)
{
    size_t n = base64_encoded_len(a, len);
    char *out = n == SIZE_MAX ? NULL : malloc(n + 1);
    if (!out)
        return NULL;
    base64_encode_into(a, in, len, out);
    *out_len = n;
    return out;
}

size_t base64_decoded_max(size_t len) { return len / 4 * 3 + 3; }

int base64_decode_into(enum base64_alphabet a, const char *in, size_t len, uint8_t *out,
                       size_t *out_len)
{
    if (a == BASE64_STD) {
        if (len % 4 != 0)
            return BASE64_INVALID;
        /* Drop the padding; one left inside is an invalid character below. */
        for (int k = 0; k < 2 && len > 0 && in[len - 1] == '='; k++)
            len--;
    }
    if (len % 4 == 1) /* no encoding ends with a lone 6-bit character */
        return BASE64_INVALID;
    uint8_t *o = out;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = value(a, (unsigned char)in[i]);
        if (v < 0)
            return BASE64_INVALID;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (uint8_t)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1))) /* non-zero bits the encoding drops */
        return BASE64_INVALID;
    *o = 0;
    *out_len = (size_t)(o - out);
    return 0;
}

int base64_decode(enum base64_alphabet a, const char *in, size_t len, uint8_t **out,
                  size_t *out_len)
{
    *out = NULL;
    uint8_t *buf = malloc(base64_decoded_max(len));
    if (!buf)
        return BASE64_NO_MEMORY;
    int rc = base64_decode_into(a, in, len, buf, out_len);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

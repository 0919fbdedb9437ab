/* utf8.h - UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above
 * U+10FFFF), whole buffers or one byte at a time. */
#ifndef WSGATE_UTF8_H
#define WSGATE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* States of utf8_step(): start at UTF8_ACCEPT; UTF8_ACCEPT again means a
 * character boundary, UTF8_REJECT means invalid for good, anything else is
 * inside a character. A state fits in a byte. */
enum { UTF8_ACCEPT = 0, UTF8_REJECT = 1 };

/* The state after `byte` in state `state`. */
uint8_t utf8_step(uint8_t state, uint8_t byte);

/* True if [s, s+len) is entirely valid UTF-8. */
bool utf8_is_valid(const void *s, size_t len);

/* The length of the longest prefix of [s, s+len) that ends on a character
 * boundary, given that the whole is valid UTF-8 so far; sets *bad (if not
 * NULL) if some byte can never be part of valid UTF-8 (the prefix is then
 * meaningless). An incomplete sequence at the end (at most 3 bytes) is left
 * out. */
size_t utf8_complete_prefix(const uint8_t *s, size_t len, bool *bad);

/* Where to cut valid UTF-8 text to at most n bytes without splitting a
 * character: n, or up to 3 less. Reads only the last 4 bytes before n. */
size_t utf8_cut(const char *s, size_t n);

#endif

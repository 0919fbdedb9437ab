/* fuzz_util.h - what the libFuzzer targets share: a reader that cuts the
 * fuzzer's bytes into the pieces a target needs (bytes, lines, the rest),
 * and FUZZ_CHECK, which aborts with a message when a property fails (so
 * libFuzzer reports a crash and saves the input). Header-only: each target
 * is one .c file. */
#ifndef WSGATE_FUZZ_UTIL_H
#define WSGATE_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h" /* utf8_is_valid, for fz_is_utf8_but_near */

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "\nFUZZ_CHECK failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct fz {
    const uint8_t *p;
    size_t n;
};

static inline struct fz fz_init(const uint8_t *data, size_t size)
{
    return (struct fz){data, size};
}

/* One byte, 0 once the input is used up. */
static inline uint8_t fz_byte(struct fz *z)
{
    if (z->n == 0)
        return 0;
    z->n--;
    return *z->p++;
}

/* Bytes up to (not including) the next '\n', or the rest; the '\n' is
 * consumed. Malloc'd copy, NUL-terminated (an embedded NUL cuts the C
 * string short, as it would in a real caller); *len gets the byte count. */
static inline char *fz_line_n(struct fz *z, size_t *len)
{
    const uint8_t *nl = memchr(z->p, '\n', z->n);
    size_t n = nl ? (size_t)(nl - z->p) : z->n;
    char *s = malloc(n + 1);
    if (!s)
        abort();
    if (n)
        memcpy(s, z->p, n);
    s[n] = '\0';
    z->p += n;
    z->n -= n;
    if (nl) {
        z->p++;
        z->n--;
    }
    if (len)
        *len = n;
    return s;
}

static inline char *fz_line(struct fz *z) { return fz_line_n(z, NULL); }

/* All remaining bytes, malloc'd, NUL-terminated. */
static inline char *fz_rest(struct fz *z, size_t *len)
{
    char *s = malloc(z->n + 1);
    if (!s)
        abort();
    if (z->n)
        memcpy(s, z->p, z->n);
    s[z->n] = '\0';
    if (len)
        *len = z->n;
    z->p += z->n;
    z->n = 0;
    return s;
}

/* A C string has no byte below 0x20 (one line of a log or an HTTP reason). */
static inline bool fz_is_one_line(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return false;
    return true;
}

/* An error line of a JSON file checker: one line (no byte below 0x20; DEL,
 * which JSON strings may hold unescaped, is let through), except that
 * jansson's syntax errors end in " near '<token>'" quoting the file's raw
 * bytes, control characters included (see fuzz/README.md, findings). Only
 * the part before that quote is checked. */
static inline bool fz_is_one_line_but_near(const char *s)
{
    const char *near = strstr(s, " near '");
    size_t n = near ? (size_t)(near - s) : strlen(s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return false;
    return true;
}

/* The same part is UTF-8 (utf8.h's utf8_is_valid). */
#define fz_is_utf8_but_near(s)                                                                     \
    (utf8_is_valid((const uint8_t *)(s),                                                           \
                   strstr((s), " near '") ? (size_t)(strstr((s), " near '") - (s)) : strlen(s)))

#endif

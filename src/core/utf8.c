/* utf8.c - UTF-8 (RFC 3629) checks for every place that needs them: text
 * messages both ways, close reasons, MQTT topics, cut error texts. One DFA
 * over byte classes; see utf8.h. Pure. */
#include "utf8.h"

#include <string.h>

/* A DFA over byte classes. Each state says what the next byte must be; the
 * narrowed states (after E0, ED, F0, F4) are what rule out overlongs,
 * surrogates and code points above U+10FFFF. */
enum utf8_state {
    U_ACCEPT = UTF8_ACCEPT, /* on a character boundary */
    U_REJECT = UTF8_REJECT, /* never valid, whatever follows */
    U_CONT1,                /* one more 80..BF, then done */
    U_CONT2,                /* two more 80..BF */
    U_CONT3,                /* three more 80..BF */
    U_E0,                   /* A0..BF (shorter would be an overlong), then one more */
    U_ED,                   /* 80..9F (A0..BF would be a surrogate), then one more */
    U_F0,                   /* 90..BF (shorter would be an overlong), then two more */
    U_F4,                   /* 80..8F (higher would pass U+10FFFF), then two more */
    U_NSTATES
};

enum utf8_class {
    K_ASCII, /* 00..7F */
    K_C80,   /* 80..8F continuation */
    K_C90,   /* 90..9F continuation */
    K_CA0,   /* A0..BF continuation */
    K_BAD,   /* C0 C1 F5..FF: never in UTF-8 */
    K_L2,    /* C2..DF */
    K_E0,    /* E0 */
    K_L3,    /* E1..EC EE EF */
    K_ED,    /* ED */
    K_F0,    /* F0 */
    K_L4,    /* F1..F3 */
    K_F4,    /* F4 */
    K_NCLASSES
};

/* Unlisted bytes (00..7F) are K_ASCII. */
_Static_assert(K_ASCII == 0, "utf8_class relies on zero-filling");
static const uint8_t utf8_class[256] = {
    [0x80 ... 0x8F] = K_C80, [0x90 ... 0x9F] = K_C90, [0xA0 ... 0xBF] = K_CA0,
    [0xC0 ... 0xC1] = K_BAD, [0xC2 ... 0xDF] = K_L2,  [0xE0] = K_E0,
    [0xE1 ... 0xEC] = K_L3,  [0xED] = K_ED,           [0xEE ... 0xEF] = K_L3,
    [0xF0] = K_F0,           [0xF1 ... 0xF3] = K_L4,  [0xF4] = K_F4,
    [0xF5 ... 0xFF] = K_BAD,
};

#define R U_REJECT
static const uint8_t utf8_next[U_NSTATES][K_NCLASSES] = {
    /* columns: ASCII C80 C90 CA0 BAD L2 E0 L3 ED F0 L4 F4 */
    [U_ACCEPT] = {U_ACCEPT, R, R, R, R, U_CONT1, U_E0, U_CONT2, U_ED, U_F0, U_CONT3, U_F4},
    [U_REJECT] = {R, R, R, R, R, R, R, R, R, R, R, R},
    [U_CONT1] = {R, U_ACCEPT, U_ACCEPT, U_ACCEPT, R, R, R, R, R, R, R, R},
    [U_CONT2] = {R, U_CONT1, U_CONT1, U_CONT1, R, R, R, R, R, R, R, R},
    [U_CONT3] = {R, U_CONT2, U_CONT2, U_CONT2, R, R, R, R, R, R, R, R},
    [U_E0] = {R, R, R, U_CONT1, R, R, R, R, R, R, R, R},
    [U_ED] = {R, U_CONT1, U_CONT1, R, R, R, R, R, R, R, R, R},
    [U_F0] = {R, R, U_CONT2, U_CONT2, R, R, R, R, R, R, R, R},
    [U_F4] = {R, U_CONT2, R, R, R, R, R, R, R, R, R, R},
};
#undef R

/* Length of the run of ASCII bytes at s: most text is ASCII, so skip it a
 * word at a time instead of stepping the DFA per byte. */
static size_t ascii_run(const uint8_t *s, size_t len)
{
    size_t i = 0;
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, sizeof w);
        if (w & 0x8080808080808080ull)
            break;
    }
    while (i < len && s[i] < 0x80)
        i++;
    return i;
}

size_t utf8_complete_prefix(const uint8_t *s, size_t len, bool *bad)
{
    bool ignored;
    if (!bad)
        bad = &ignored;
    *bad = false;

    size_t boundary = 0;
    unsigned state = U_ACCEPT;
    for (size_t i = 0; i < len; i++) {
        if (state == U_ACCEPT) {
            i += ascii_run(s + i, len - i);
            boundary = i;
            if (i == len)
                break;
        }
        state = utf8_next[state][utf8_class[s[i]]];
        if (state == U_REJECT) {
            *bad = true;
            return boundary;
        }
        if (state == U_ACCEPT)
            boundary = i + 1;
    }
    return boundary;
}

uint8_t utf8_step(uint8_t state, uint8_t byte) { return utf8_next[state][utf8_class[byte]]; }

size_t utf8_cut(const char *s, size_t n)
{
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80)
            continue; /* a continuation byte: its lead is further back */
        size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        return need > back ? n - back : n;
    }
    return n;
}

/* Defined through utf8_complete_prefix so that the two can never disagree. */
bool utf8_is_valid(const void *s, size_t len)
{
    bool bad;
    return utf8_complete_prefix(s, len, &bad) == len && !bad;
}

/* fuzz_client_addr.c - trusted proxies and the client address behind them
 * (src/core/client_addr.c).
 *
 * Input: byte 0: number of trusted entries (0..4) and the output size;
 * then that many entry lines, and lines for the peer, X-Forwarded-For,
 * X-Real-IP and one address to look up.
 * Properties:
 *  - addr_set_contains never crashes, and an exact address entry (no "/")
 *    contains itself;
 *  - client_addr_pick writes a NUL-terminated string within out_len; for
 *    a parseable peer the result is an address (inet_pton parses it, when
 *    it fits) and one line; an untrusted peer is its own client, whatever
 *    the headers say; from a trusted peer, every X-Forwarded-For hop right
 *    of the chosen client is itself a trusted proxy. */
#include "fuzz_util.h"

#include <arpa/inet.h>

#include "client_addr.h"

static bool parses(const char *s, int *family, unsigned char *buf)
{
    if (inet_pton(AF_INET, s, buf) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, buf) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

/* One X-Forwarded-For element as an address in canonical text: trimmed,
 * "[v6]:port" / "v4:port" reduced to the address; false if it is none. */
static bool element_norm(const char *s, size_t len, char *out)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *a = buf;
    if (a[0] == '[') {
        char *close = strchr(a, ']');
        if (!close)
            return false;
        *close = '\0';
        a++;
    } else {
        char *colon = strchr(a, ':');
        if (colon && !strchr(colon + 1, ':'))
            *colon = '\0';
    }
    unsigned char bin[16];
    int fam;
    if (!parses(a, &fam, bin))
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (fam == AF_INET6 && memcmp(bin, mapped, 12) == 0) {
        memmove(bin, bin + 12, 4);
        fam = AF_INET;
    }
    return inet_ntop(fam, bin, out, 64) != NULL;
}

/* The client is never further left in X-Forwarded-For than the first hop
 * (from the right) that is not a trusted proxy: every element right of the
 * chosen one must be trusted. */
static void check_no_forged_hop(const struct addr_set *set, const char *xff, const char *out)
{
    size_t end = strlen(xff);
    char norm[64];
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        if (!element_norm(xff + start, end - start, norm))
            return; /* garbage: the code stops trusting here */
        if (strcmp(norm, out) == 0)
            return; /* the chosen hop: everything right of it was trusted */
        FUZZ_CHECK(addr_set_contains(set, norm),
                   "client %s chosen from X-Forwarded-For \"%s\" past the untrusted hop %s", out,
                   xff, norm);
        end = start ? start - 1 : 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    uint8_t b0 = fz_byte(&z);
    size_t n = b0 % 5;
    char *entries[4] = {0};
    for (size_t i = 0; i < n; i++)
        entries[i] = fz_line(&z);
    char *peer = fz_line(&z), *xff = fz_line(&z), *real = fz_line(&z), *ip = fz_line(&z);

    struct addr_set *set = addr_set_create(entries, n);
    FUZZ_CHECK(set, "addr_set_create failed");
    (void)addr_set_contains(set, ip);
    (void)addr_set_contains(set, NULL);
    for (size_t i = 0; i < n; i++) {
        int fam;
        unsigned char buf[16];
        if (!strchr(entries[i], '/') && parses(entries[i], &fam, buf))
            FUZZ_CHECK(addr_set_contains(set, entries[i]), "entry %s not in its own set",
                       entries[i]);
    }

    size_t out_len = (b0 >> 3) % 2 ? 1 + (b0 >> 4) : 64;
    char *out = malloc(out_len);
    client_addr_pick(set, peer, *xff ? xff : NULL, *real ? real : NULL, out, out_len);
    FUZZ_CHECK(strlen(out) < out_len, "output overflow");
    int fam;
    unsigned char pbuf[16], obuf[16];
    if (parses(peer, &fam, pbuf)) {
        FUZZ_CHECK(fz_is_one_line(out), "client address \"%s\" is not one line", out);
        if (out_len >= 64) {
            int ofam;
            FUZZ_CHECK(parses(out, &ofam, obuf), "client address \"%s\" is no address", out);
            if (!addr_set_contains(set, peer)) {
                /* Normalised peer: compare as addresses. */
                char *again = malloc(64);
                client_addr_pick(set, peer, NULL, NULL, again, 64);
                FUZZ_CHECK(strcmp(again, out) == 0,
                           "untrusted peer %s: headers changed the client to %s", peer, out);
                free(again);
            } else if (*xff) {
                check_no_forged_hop(set, xff, out);
            }
        }
    }
    client_addr_pick(NULL, peer, xff, real, out, out_len);
    FUZZ_CHECK(strlen(out) < out_len, "output overflow");
    free(out);
    addr_set_destroy(set);
    for (size_t i = 0; i < n; i++)
        free(entries[i]);
    free(peer);
    free(xff);
    free(real);
    free(ip);
    return 0;
}

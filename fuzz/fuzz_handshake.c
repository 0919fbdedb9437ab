/* fuzz_handshake.c - subprotocol choice and the Origin check
 * (src/core/handshake.c).
 *
 * Input: byte 0: number of route subprotocols (0..3), require flag, output
 * size; then the route's subprotocol lines, the offered
 * Sec-WebSocket-Protocol value, an allowed origin and the request Origin.
 * Properties:
 *  - a selected name is one the route lists and the client offered, never
 *    a "bearer." token carrier, and fits out;
 *  - a refusal reason is one line and never echoes a bearer token;
 *  - with no offer, the route's require flag alone decides;
 *  - an Origin is allowed iff it equals a configured one ignoring case. */
#include "fuzz_util.h"

#include <strings.h>

#include "config.h"
#include "handshake.h"

static bool offered_has(const char *offer, const char *name)
{
    /* Comma-separated, blanks trimmed, as the header is read. */
    size_t n = strlen(name);
    for (const char *p = offer; p && *p;) {
        p += strspn(p, " \t,");
        size_t l = strcspn(p, ",");
        size_t t = l;
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if (t == n && memcmp(p, name, n) == 0)
            return true;
        p += l;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    uint8_t b0 = fz_byte(&z);
    size_t n = b0 % 4;
    char *protos[3] = {0};
    for (size_t i = 0; i < n; i++)
        protos[i] = fz_line(&z);
    char *offer = fz_line(&z), *allowed = fz_line(&z), *origin = fz_line(&z);

    struct wsg_route r;
    memset(&r, 0, sizeof r);
    r.name = "fuzz";
    r.subprotocols = protos;
    r.n_subprotocols = n;
    r.require_subprotocol = (b0 >> 2) & 1;
    size_t out_len = (b0 >> 3) % 2 ? 1 + (b0 >> 4) : 256;
    char *out = malloc(out_len);
    char reason[200];
    reason[0] = '\0';
    enum subprotocol_result res = handshake_choose_subprotocol(&r, *offer ? offer : NULL, out,
                                                               out_len, reason, sizeof reason);
    switch (res) {
    case SUBPROTOCOL_SELECTED: {
        FUZZ_CHECK(strlen(out) < out_len, "selection overflow");
        bool listed = false;
        for (size_t i = 0; i < n; i++)
            listed |= strcmp(protos[i], out) == 0;
        FUZZ_CHECK(listed, "selected \"%s\", which the route does not list", out);
        FUZZ_CHECK(strlen(offer) < 1024, "selected from an offer that is too long");
        FUZZ_CHECK(offered_has(offer, out), "selected \"%s\", which was not offered", out);
        FUZZ_CHECK(strncmp(out, "bearer.", 7) != 0, "selected a token carrier");
        break;
    }
    case SUBPROTOCOL_NONE:
        FUZZ_CHECK(!r.require_subprotocol, "no subprotocol on a route that requires one");
        FUZZ_CHECK(out[0] == '\0', "out set without a selection");
        break;
    case SUBPROTOCOL_REFUSED: {
        /* A bearer token in the offer never shows in the reason (unless
         * the route itself lists that very text). */
        for (const char *p = strstr(offer, "bearer."); p; p = strstr(p + 1, "bearer.")) {
            size_t l = strcspn(p, ", \t");
            if (l >= 12) {
                char *tok = strndup(p, l);
                bool listed = false;
                for (size_t i = 0; i < n; i++)
                    listed |= strstr(protos[i], tok) != NULL;
                if (!listed)
                    FUZZ_CHECK(!strstr(reason, tok), "reason echoes a bearer token: %s", reason);
                free(tok);
            }
        }
        break;
    }
    default:
        FUZZ_CHECK(false, "unknown result %d", res);
    }

    struct wsg_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char *origins[1] = {allowed};
    cfg.origins = origins;
    cfg.n_origins = *allowed ? 1 : 0;
    bool ok = handshake_origin_allowed(&cfg, *origin ? origin : NULL);
    bool want = !*allowed || !*origin || strcasecmp(allowed, origin) == 0;
    FUZZ_CHECK(ok == want, "origin \"%s\" vs \"%s\": %d", origin, allowed, ok);

    free(out);
    for (size_t i = 0; i < n; i++)
        free(protos[i]);
    free(offer);
    free(allowed);
    free(origin);
    return 0;
}

/* handshake.c - subprotocol choice and Origin check; see handshake.h. */
#include "handshake.h"

#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_OFFERED 32

/* Splits a comma-separated header value into trimmed tokens, in place. */
static size_t split_offer(char *buf, char **names, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*tok)
            names[n++] = tok;
    }
    return n;
}

enum subprotocol_result handshake_choose_subprotocol(const struct wsg_route *route,
                                                     const char *offered, char *out, size_t out_len,
                                                     char *reason, size_t reason_len)
{
    char buf[1024];
    char *names[MAX_OFFERED];
    size_t n_offered = 0;

    out[0] = '\0';
    if (offered && *offered) {
        if (strlen(offered) >= sizeof(buf)) {
            snprintf(reason, reason_len, "Sec-WebSocket-Protocol header too long");
            return SUBPROTOCOL_REFUSED;
        }
        strcpy(buf, offered);
        n_offered = split_offer(buf, names, MAX_OFFERED);
    }

    /* Token carriers are not offers of a protocol. */
    size_t real_offers = 0;
    for (size_t i = 0; i < n_offered; i++)
        if (strncmp(names[i], "bearer.", 7) != 0)
            names[real_offers++] = names[i];

    if (real_offers == 0) {
        if (route->require_subprotocol)
            goto refuse;
        return SUBPROTOCOL_NONE;
    }

    /* The route's preference order wins over the client's. */
    for (size_t r = 0; r < route->n_subprotocols; r++)
        for (size_t i = 0; i < real_offers; i++)
            if (strcmp(route->subprotocols[r], names[i]) == 0) {
                if (strlen(names[i]) >= out_len)
                    goto refuse;
                strcpy(out, names[i]);
                return SUBPROTOCOL_SELECTED;
            }

refuse:
    if (route->n_subprotocols == 0) {
        snprintf(reason, reason_len, "route %s accepts no subprotocol", route->name);
        return SUBPROTOCOL_REFUSED;
    }
    size_t used =
        (size_t)snprintf(reason, reason_len, "route %s accepts subprotocols: ", route->name);
    for (size_t r = 0; r < route->n_subprotocols && used < reason_len; r++)
        used += (size_t)snprintf(reason + used, reason_len - used, "%s%s", r ? ", " : "",
                                 route->subprotocols[r]);
    return SUBPROTOCOL_REFUSED;
}

bool handshake_origin_allowed(const struct wsg_config *cfg, const char *origin)
{
    if (cfg->n_origins == 0)
        return true;
    if (!origin)
        return true;
    for (size_t i = 0; i < cfg->n_origins; i++)
        if (strcasecmp(cfg->origins[i], origin) == 0)
            return true;
    return false;
}

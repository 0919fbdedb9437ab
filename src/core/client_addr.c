/* client_addr.c - the client's address behind trusted proxies; see client_addr.h. */
#include "client_addr.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct block {
    int family;
    uint8_t addr[16];
    int prefix; /* bits */
};

struct addr_set {
    struct block *blocks;
    size_t n;
};

/* Parses an address; an IPv4-mapped IPv6 one becomes IPv4. */
static bool parse_ip(const char *s, size_t len, int *family, uint8_t addr[16])
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, buf, addr) != 1)
        return false;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(addr, mapped, 12) == 0) {
        memmove(addr, addr + 12, 4);
        *family = AF_INET;
    } else {
        *family = AF_INET6;
    }
    return true;
}

struct addr_set *addr_set_create(char *const *entries, size_t n)
{
    struct addr_set *set = calloc(1, sizeof(*set));
    if (!set || (n && !(set->blocks = calloc(n, sizeof(*set->blocks))))) {
        free(set);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *e = entries[i];
        const char *slash = strchr(e, '/');
        struct block *b = &set->blocks[set->n];
        if (!parse_ip(e, slash ? (size_t)(slash - e) : strlen(e), &b->family, b->addr))
            continue;
        int max = b->family == AF_INET ? 32 : 128;
        b->prefix = slash ? atoi(slash + 1) : max;
        if (b->prefix < 0 || b->prefix > max)
            continue;
        set->n++;
    }
    return set;
}

void addr_set_destroy(struct addr_set *set)
{
    if (set)
        free(set->blocks);
    free(set);
}

static bool in_block(const struct block *b, int family, const uint8_t addr[16])
{
    if (b->family != family)
        return false;
    int full = b->prefix / 8, rest = b->prefix % 8;
    if (memcmp(b->addr, addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (b->addr[full] & mask) == (addr[full] & mask);
}

static bool contains(const struct addr_set *set, int family, const uint8_t addr[16])
{
    for (size_t i = 0; set && i < set->n; i++)
        if (in_block(&set->blocks[i], family, addr))
            return true;
    return false;
}

bool addr_set_contains(const struct addr_set *set, const char *ip)
{
    int family;
    uint8_t addr[16];
    return ip && parse_ip(ip, strlen(ip), &family, addr) && contains(set, family, addr);
}

/* One X-Forwarded-For element, trimmed, without a port ("1.2.3.4:80",
 * "[::1]:80") or brackets. */
static bool element_ip(const char *s, size_t len, int *family, uint8_t addr[16])
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len && *s == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return false;
        return parse_ip(s + 1, (size_t)(close - s - 1), family, addr);
    }
    const char *colon = memchr(s, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon - s) - 1))
        len = (size_t)(colon - s); /* "a.b.c.d:port" */
    return parse_ip(s, len, family, addr);
}

static void format_ip(int family, const uint8_t addr[16], char *out, size_t out_len)
{
    char buf[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, addr, buf, sizeof(buf)))
        buf[0] = '\0';
    snprintf(out, out_len, "%s", buf);
}

void client_addr_pick(const struct addr_set *trusted, const char *peer, const char *xff,
                      const char *real_ip, char *out, size_t out_len)
{
    int family;
    uint8_t addr[16];
    if (!peer || !parse_ip(peer, strlen(peer), &family, addr)) {
        snprintf(out, out_len, "%s", peer ? peer : "");
        return;
    }
    if (!contains(trusted, family, addr)) {
        format_ip(family, addr, out, out_len);
        return;
    }
    if (xff && *xff) {
        /* Right to left: the nearest hop that is not one of our proxies. */
        size_t end = strlen(xff);
        bool any = false;
        int last_family = 0;
        uint8_t last[16];
        while (end > 0) {
            size_t start = end;
            while (start > 0 && xff[start - 1] != ',')
                start--;
            int f;
            uint8_t a[16];
            if (!element_ip(xff + start, end - start, &f, a))
                break; /* garbage: trust nothing further left */
            any = true;
            last_family = f;
            memcpy(last, a, 16);
            if (!contains(trusted, f, a)) {
                format_ip(f, a, out, out_len);
                return;
            }
            end = start ? start - 1 : 0;
        }
        if (any) { /* every hop is a proxy of ours: the leftmost is the client */
            format_ip(last_family, last, out, out_len);
            return;
        }
    }
    if (real_ip && element_ip(real_ip, strlen(real_ip), &family, addr)) {
        format_ip(family, addr, out, out_len);
        return;
    }
    parse_ip(peer, strlen(peer), &family, addr);
    format_ip(family, addr, out, out_len);
}

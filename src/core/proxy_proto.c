/* proxy_proto.c - PROXY protocol v1/v2 headers, read and written; see
 * proxy_proto.h and HAProxy's doc/proxy-protocol.txt. */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_start[] = "PROXY ";
static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

#define V2_FIXED 16
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1

/* --- version 2 ------------------------------------------------------------ */

/* Address bytes a family/transport byte needs, or -1 if it is not one. */
static int v2_addr_bytes(uint8_t fam)
{
    switch (fam) {
    case 0x00:
        return 0; /* UNSPEC */
    case 0x11:
    case 0x12:
        return 12; /* IPv4: 2 x 4 + 2 x 2 */
    case 0x21:
    case 0x22:
        return 36; /* IPv6: 2 x 16 + 2 x 2 */
    case 0x31:
    case 0x32:
        return 216; /* unix: 2 x 108 */
    default:
        return -1;
    }
}

static enum proxy_proto_result parse_v2(const uint8_t *buf, size_t len,
                                        struct proxy_proto_info *info, size_t *header_len)
{
    size_t sig = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    if (memcmp(buf, v2_sig, sig) != 0)
        return PROXY_PROTO_INVALID;
    if (len > 12 && ((buf[12] >> 4) != 2 || (buf[12] & 0xF) > V2_CMD_PROXY))
        return PROXY_PROTO_INVALID;
    if (len > 13 && v2_addr_bytes(buf[13]) < 0)
        return PROXY_PROTO_INVALID;
    if (len < V2_FIXED)
        return PROXY_PROTO_NEED_MORE;
    size_t body = (size_t)buf[14] << 8 | buf[15];
    if (V2_FIXED + body > PROXY_PROTO_MAX_HEADER)
        return PROXY_PROTO_INVALID;
    uint8_t cmd = buf[12] & 0xF, fam = buf[13];
    /* A LOCAL command may carry anything (its addresses are ignored); a
     * PROXY command's block must hold its family's addresses. */
    if (cmd == V2_CMD_PROXY && body < (size_t)v2_addr_bytes(fam))
        return PROXY_PROTO_INVALID;
    if (len < V2_FIXED + body)
        return PROXY_PROTO_NEED_MORE;

    memset(info, 0, sizeof(*info));
    info->version = 2;
    const uint8_t *a = buf + V2_FIXED;
    if (cmd == V2_CMD_PROXY && (fam >> 4) == 1) {
        info->has_addr = true;
        info->family = AF_INET;
        memcpy(info->src_addr, a, 4);
        memcpy(info->dst_addr, a + 4, 4);
        info->src_port = (uint16_t)(a[8] << 8 | a[9]);
        info->dst_port = (uint16_t)(a[10] << 8 | a[11]);
    } else if (cmd == V2_CMD_PROXY && (fam >> 4) == 2) {
        info->has_addr = true;
        info->family = AF_INET6;
        memcpy(info->src_addr, a, 16);
        memcpy(info->dst_addr, a + 16, 16);
        info->src_port = (uint16_t)(a[32] << 8 | a[33]);
        info->dst_port = (uint16_t)(a[34] << 8 | a[35]);
    }
    *header_len = V2_FIXED + body;
    return PROXY_PROTO_DONE;
}

/* --- version 1 ------------------------------------------------------------ */

/* A decimal port without sign or leading zeros, 0..65535. */
static bool parse_port(const char *s, uint16_t *port)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* "TCP4 src dst sport dport" or "TCP6 ..." (the line after "PROXY ", CRLF
 * removed), fields separated by exactly one space. */
static bool parse_v1_tcp(char *line, struct proxy_proto_info *info)
{
    char *field[5];
    size_t n = 0;
    char *p = line;
    for (;;) {
        field[n++] = p;
        char *sp = strchr(p, ' ');
        if (!sp || n == 5)
            break;
        *sp = '\0';
        p = sp + 1;
    }
    if (n != 5 || strchr(field[4], ' '))
        return false;
    int family = strcmp(field[0], "TCP4") == 0   ? AF_INET
                 : strcmp(field[0], "TCP6") == 0 ? AF_INET6
                                                 : 0;
    if (!family || inet_pton(family, field[1], info->src_addr) != 1 ||
        inet_pton(family, field[2], info->dst_addr) != 1 ||
        !parse_port(field[3], &info->src_port) || !parse_port(field[4], &info->dst_port))
        return false;
    info->family = family;
    info->has_addr = true;
    return true;
}

/* Whether s[0..n) can begin one of the protocol words after "PROXY ". */
static bool v1_proto_prefix(const uint8_t *s, size_t n)
{
    static const char *const words[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t w = strlen(words[i]);
        if (memcmp(s, words[i], n < w ? n : w) == 0)
            return true;
    }
    return false;
}

static enum proxy_proto_result parse_v1(const uint8_t *buf, size_t len,
                                        struct proxy_proto_info *info, size_t *header_len)
{
    size_t start = sizeof(v1_start) - 1;
    if (memcmp(buf, v1_start, len < start ? len : start) != 0)
        return PROXY_PROTO_INVALID;
    if (len > start && !v1_proto_prefix(buf + start, len - start))
        return PROXY_PROTO_INVALID;
    size_t end = 0; /* index of the CR of CRLF */
    for (size_t i = start; i < len && i < PROXY_PROTO_V1_MAX; i++) {
        if (buf[i] == '\r') {
            if (i + 1 == len)
                return PROXY_PROTO_NEED_MORE;
            if (buf[i + 1] != '\n' || i + 2 > PROXY_PROTO_V1_MAX)
                return PROXY_PROTO_INVALID;
            end = i;
            break;
        }
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return PROXY_PROTO_INVALID;
    }
    if (!end)
        return len >= PROXY_PROTO_V1_MAX ? PROXY_PROTO_INVALID : PROXY_PROTO_NEED_MORE;

    char line[PROXY_PROTO_V1_MAX];
    memcpy(line, buf + start, end - start);
    line[end - start] = '\0';
    memset(info, 0, sizeof(*info));
    info->version = 1;
    /* UNKNOWN may be followed by anything up to the CRLF, which is ignored. */
    if (strncmp(line, "UNKNOWN", 7) == 0 && (line[7] == '\0' || line[7] == ' ')) {
        *header_len = end + 2;
        return PROXY_PROTO_DONE;
    }
    if (!parse_v1_tcp(line, info))
        return PROXY_PROTO_INVALID;
    *header_len = end + 2;
    return PROXY_PROTO_DONE;
}

/* --- public ---------------------------------------------------------------- */

enum proxy_proto_result proxy_proto_parse(const uint8_t *buf, size_t len,
                                          struct proxy_proto_info *info, size_t *header_len)
{
    if (len == 0)
        return PROXY_PROTO_NEED_MORE;
    if (buf[0] == v2_sig[0])
        return parse_v2(buf, len, info, header_len);
    if (buf[0] == 'P')
        return parse_v1(buf, len, info, header_len);
    return PROXY_PROTO_INVALID;
}

size_t proxy_proto_read_hint(const uint8_t *buf, size_t len)
{
    if (len > 0 && buf[0] == v2_sig[0]) {
        if (len < V2_FIXED)
            return V2_FIXED - len;
        size_t total = V2_FIXED + ((size_t)buf[14] << 8 | buf[15]);
        return total > len ? total - len : 1;
    }
    return len < PROXY_PROTO_V1_MAX ? PROXY_PROTO_V1_MAX - len : 1;
}

/* Address text to 16 bytes; an IPv4-mapped IPv6 address counts as IPv4. */
static bool addr_from_text(const char *s, int *family, uint8_t addr[16])
{
    memset(addr, 0, 16);
    if (!s)
        return false;
    if (inet_pton(AF_INET, s, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, addr) != 1)
        return false;
    *family = AF_INET6;
    if (memcmp(addr, v4_mapped, 12) == 0) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = AF_INET;
    }
    return true;
}

static void to_v6(uint8_t addr[16])
{
    memmove(addr + 12, addr, 4);
    memcpy(addr, v4_mapped, 12);
}

bool proxy_proto_info_from_text(struct proxy_proto_info *info, const char *src, int src_port,
                                const char *dst, int dst_port)
{
    memset(info, 0, sizeof(*info));
    int sf, df;
    if (!addr_from_text(src, &sf, info->src_addr) || !addr_from_text(dst, &df, info->dst_addr) ||
        src_port < 0 || src_port > 65535 || dst_port < 0 || dst_port > 65535) {
        memset(info, 0, sizeof(*info));
        return false;
    }
    if (sf != df) {
        if (sf == AF_INET)
            to_v6(info->src_addr);
        else
            to_v6(info->dst_addr);
    }
    info->family = sf == df ? sf : AF_INET6;
    info->has_addr = true;
    info->src_port = (uint16_t)src_port;
    info->dst_port = (uint16_t)dst_port;
    return true;
}

static void addr_text(int family, const uint8_t *addr, char *out, size_t out_len)
{
    char buf[INET6_ADDRSTRLEN];
    if (family == AF_INET6 && memcmp(addr, v4_mapped, 12) == 0) {
        family = AF_INET;
        addr += 12;
    }
    if (!inet_ntop(family, addr, buf, sizeof(buf)))
        buf[0] = '\0';
    snprintf(out, out_len, "%s", buf);
}

void proxy_proto_src_text(const struct proxy_proto_info *info, char *out, size_t out_len)
{
    if (!info->has_addr) {
        snprintf(out, out_len, "%s", "");
        return;
    }
    addr_text(info->family, info->src_addr, out, out_len);
}

void proxy_proto_dst_text(const struct proxy_proto_info *info, char *out, size_t out_len)
{
    if (!info->has_addr) {
        snprintf(out, out_len, "%s", "");
        return;
    }
    addr_text(info->family, info->dst_addr, out, out_len);
}

static size_t write_v1(const struct proxy_proto_info *info, uint8_t *out, size_t out_len)
{
    char text[PROXY_PROTO_WRITE_MAX];
    int n;
    if (!info->has_addr) {
        n = snprintf(text, sizeof(text), "PROXY UNKNOWN\r\n");
    } else {
        char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
        /* v1 writes the family's own text: no IPv4 shortening of mapped ones */
        if (!inet_ntop(info->family, info->src_addr, src, sizeof(src)) ||
            !inet_ntop(info->family, info->dst_addr, dst, sizeof(dst)))
            return 0;
        n = snprintf(text, sizeof(text), "PROXY %s %s %s %u %u\r\n",
                     info->family == AF_INET ? "TCP4" : "TCP6", src, dst, (unsigned)info->src_port,
                     (unsigned)info->dst_port);
    }
    if (n < 0 || (size_t)n >= sizeof(text) || (size_t)n > out_len)
        return 0;
    memcpy(out, text, (size_t)n);
    return (size_t)n;
}

static size_t write_v2(const struct proxy_proto_info *info, uint8_t *out, size_t out_len)
{
    size_t body = !info->has_addr ? 0 : info->family == AF_INET ? 12 : 36;
    if (out_len < V2_FIXED + body)
        return 0;
    memcpy(out, v2_sig, sizeof(v2_sig));
    out[12] = 0x20 | V2_CMD_PROXY;
    out[13] = !info->has_addr ? 0x00 : info->family == AF_INET ? 0x11 : 0x21;
    out[14] = (uint8_t)(body >> 8);
    out[15] = (uint8_t)body;
    uint8_t *a = out + V2_FIXED;
    size_t alen = info->family == AF_INET ? 4 : 16;
    if (info->has_addr) {
        memcpy(a, info->src_addr, alen);
        memcpy(a + alen, info->dst_addr, alen);
        a += 2 * alen;
        a[0] = (uint8_t)(info->src_port >> 8);
        a[1] = (uint8_t)info->src_port;
        a[2] = (uint8_t)(info->dst_port >> 8);
        a[3] = (uint8_t)info->dst_port;
    }
    return V2_FIXED + body;
}

size_t proxy_proto_write(int version, const struct proxy_proto_info *info, uint8_t *out,
                         size_t out_len)
{
    return version == 1 ? write_v1(info, out, out_len) : write_v2(info, out, out_len);
}

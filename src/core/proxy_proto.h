/* proxy_proto.h - the PROXY protocol (HAProxy's, versions 1 and 2): the
 * header a load balancer puts in front of a connection to say who the client
 * is, parsed from the first bytes of a connection and written in front of a
 * backend connection. Pure: no sockets; unit-tested and fuzzed.
 *
 * Parsing is incremental in the simplest way: proxy_proto_parse() is given
 * everything received so far and says whether it is a whole header, a prefix
 * of one (read more; proxy_proto_read_hint() says how much at most), or
 * cannot be one. A prefix that cannot start a header is refused at once. */
#ifndef WSGATE_PROXY_PROTO_H
#define WSGATE_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* v1: at most 107 bytes, CRLF included (the protocol's own bound). */
#define PROXY_PROTO_V1_MAX 107
/* v2: 16 bytes, then addresses and TLVs. The protocol allows up to 64 KiB
 * of those; load balancers send a few hundred at most, and a header is held
 * in memory per pending connection, so larger ones are refused. */
#define PROXY_PROTO_MAX_HEADER 1024
/* Room for a header written by proxy_proto_write() (v1 or v2, TCP6). */
#define PROXY_PROTO_WRITE_MAX 108

enum proxy_proto_result {
    PROXY_PROTO_NEED_MORE, /* a valid prefix: wait for more bytes */
    PROXY_PROTO_INVALID,   /* not a header (or one over PROXY_PROTO_MAX_HEADER) */
    PROXY_PROTO_DONE,      /* a whole header; *header_len says where it ends */
};

/* What a header says. has_addr is false for a v2 LOCAL command (the load
 * balancer's own health check), a v1 UNKNOWN line and v2 families other than
 * TCP/UDP over IPv4/IPv6: the connection's own addresses stand then. */
struct proxy_proto_info {
    int version; /* 1 or 2 */
    bool has_addr;
    int family;                         /* AF_INET or AF_INET6 when has_addr */
    uint8_t src_addr[16], dst_addr[16]; /* network order; 4 bytes used for AF_INET */
    uint16_t src_port, dst_port;        /* host order */
};

/* Parses the bytes received so far (buf[0..len)). On DONE fills *info and
 * *header_len (the bytes after it belong to the application). */
enum proxy_proto_result proxy_proto_parse(const uint8_t *buf, size_t len,
                                          struct proxy_proto_info *info, size_t *header_len);

/* How many more bytes a reader may take, given the len bytes received so far
 * (a prefix for which parse said NEED_MORE), without taking more than
 * PROXY_PROTO_V1_MAX bytes past the end of the header: reads bounded by this
 * leave at most that many application bytes in the reader's buffer (lws
 * takes up to 2048 back with lws_adopt_socket_vhost_readbuf). >= 1. */
size_t proxy_proto_read_hint(const uint8_t *buf, size_t len);

/* Fills info from address text ("192.0.2.1", "2001:db8::1", "::ffff:1.2.3.4")
 * and ports. Mixed families are written as IPv6 (IPv4-mapped), as the
 * protocol needs one family for both ends. Returns false (info->has_addr
 * false: an UNKNOWN/UNSPEC header) if either address does not parse. */
bool proxy_proto_info_from_text(struct proxy_proto_info *info, const char *src, int src_port,
                                const char *dst, int dst_port);

/* Writes a version 1 or 2 header for info (has_addr false: "PROXY UNKNOWN"
 * or a v2 PROXY command with family UNSPEC) into out. Returns its length,
 * or 0 if out_len is too small (PROXY_PROTO_WRITE_MAX always fits). */
size_t proxy_proto_write(int version, const struct proxy_proto_info *info, uint8_t *out,
                         size_t out_len);

/* The source address of info as text (INET6_ADDRSTRLEN bytes fit); an
 * IPv4-mapped IPv6 address is written as IPv4. "" if !has_addr. */
void proxy_proto_src_text(const struct proxy_proto_info *info, char *out, size_t out_len);
void proxy_proto_dst_text(const struct proxy_proto_info *info, char *out, size_t out_len);

#endif

/* peer_addr.h - where a client connection comes from and what address it
 * reached: the socket's own addresses, or what a PROXY protocol header said
 * (proxy_protocol listeners). Everything that names the client's peer
 * (logs' peer=, the start of the trusted_proxies chain, send_proxy) asks
 * here rather than the socket. Loop thread only. */
#ifndef WSGATE_PEER_ADDR_H
#define WSGATE_PEER_ADDR_H

#include <libwebsockets.h>
#include <stddef.h>

#include "proxy_proto.h"

/* Text of an address: INET6_ADDRSTRLEN fits, and "unix". */
#define PEER_ADDR_TEXT 48

struct peer_addr_record;

/* What PROXY headers said, by socket number (struct gateway's
 * `peer_addrs`). Zeroed = empty; grown on demand, freed by
 * peer_addr_shutdown() once the lws context is gone. */
struct peer_addr_table {
    struct peer_addr_record *by_fd; /* owned */
    size_t n_by_fd;
};

/* Records what a PROXY header said for the connection `wsi` on socket fd
 * (called right after lws adopted it). 0, or -1 when out of memory (then
 * the socket's own addresses stand). */
int peer_addr_set(int fd, struct lws *wsi, const struct proxy_proto_info *info);

/* Drops what was recorded for fd: every new client connection passes here
 * (or through peer_addr_set), so a record never outlives its socket's
 * number being given to another client. */
void peer_addr_forget(int fd);

/* The peer as text ("192.0.2.7"; an IPv4-mapped IPv6 address as IPv4;
 * "unix" for a unix-socket client with no PROXY header) and its port (0 if
 * none). "unknown" if the socket cannot say. */
void peer_addr_of(struct lws *wsi, char ip[PEER_ADDR_TEXT], int *port);

/* The address the client connected to: the PROXY header's destination, or
 * the socket's local address ("unix" for a unix listener). */
void peer_addr_local(struct lws *wsi, char ip[PEER_ADDR_TEXT], int *port);

/* Frees the records (at exit). */
void peer_addr_shutdown(void);

#endif

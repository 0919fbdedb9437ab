/* peer_addr.c - client addresses from PROXY headers or sockets; see peer_addr.h.
 *
 * Records live in a table indexed by socket number, grown on demand; each
 * remembers the lws connection it was made for, so a lookup for another
 * connection on a reused number finds nothing even if a forget was missed. */
#include "peer_addr.h"

#include "gateway.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

struct peer_addr_record {
    struct lws *wsi; /* NULL: no record */
    struct proxy_proto_info info;
};

int peer_addr_set(int fd, struct lws *wsi, const struct proxy_proto_info *info)
{
    if (fd < 0)
        return -1;
    struct peer_addr_table *t = &gateway_get()->peer_addrs;
    if ((size_t)fd >= t->n_by_fd) {
        size_t n = t->n_by_fd ? t->n_by_fd : 256;
        while (n <= (size_t)fd)
            n *= 2;
        struct peer_addr_record *grown = realloc(t->by_fd, n * sizeof(*grown));
        if (!grown)
            return -1;
        memset(grown + t->n_by_fd, 0, (n - t->n_by_fd) * sizeof(*grown));
        t->by_fd = grown;
        t->n_by_fd = n;
    }
    t->by_fd[fd].wsi = wsi;
    t->by_fd[fd].info = *info;
    return 0;
}

void peer_addr_forget(int fd)
{
    struct peer_addr_table *t = &gateway_get()->peer_addrs;
    if (fd >= 0 && (size_t)fd < t->n_by_fd)
        t->by_fd[fd].wsi = NULL;
}

static const struct proxy_proto_info *record_of(struct lws *wsi)
{
    const struct peer_addr_table *t = &gateway_get()->peer_addrs;
    int fd = (int)lws_get_socket_fd(wsi);
    if (fd < 0 || (size_t)fd >= t->n_by_fd || t->by_fd[fd].wsi != wsi ||
        !t->by_fd[fd].info.has_addr)
        return NULL;
    return &t->by_fd[fd].info;
}

/* A socket address as text and port; IPv4-mapped IPv6 as IPv4. */
static void sockaddr_text(const struct sockaddr_storage *sa, char ip[PEER_ADDR_TEXT], int *port)
{
    *port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, PEER_ADDR_TEXT);
        *port = ntohs(a->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], ip, PEER_ADDR_TEXT);
        else
            inet_ntop(AF_INET6, &a->sin6_addr, ip, PEER_ADDR_TEXT);
        *port = ntohs(a->sin6_port);
    } else if (sa->ss_family == AF_UNIX) {
        snprintf(ip, PEER_ADDR_TEXT, "unix");
    } else {
        snprintf(ip, PEER_ADDR_TEXT, "unknown");
    }
}

static void socket_address(struct lws *wsi, bool local, char ip[PEER_ADDR_TEXT], int *port)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    int fd = (int)lws_get_socket_fd(wsi);
    memset(&sa, 0, sizeof(sa));
    if (fd < 0 || (local ? getsockname(fd, (struct sockaddr *)&sa, &len)
                         : getpeername(fd, (struct sockaddr *)&sa, &len)) != 0) {
        snprintf(ip, PEER_ADDR_TEXT, "unknown");
        *port = 0;
        return;
    }
    sockaddr_text(&sa, ip, port);
}

void peer_addr_of(struct lws *wsi, char ip[PEER_ADDR_TEXT], int *port)
{
    const struct proxy_proto_info *info = record_of(wsi);
    if (info) {
        proxy_proto_src_text(info, ip, PEER_ADDR_TEXT);
        *port = info->src_port;
        return;
    }
    socket_address(wsi, false, ip, port);
}

void peer_addr_local(struct lws *wsi, char ip[PEER_ADDR_TEXT], int *port)
{
    const struct proxy_proto_info *info = record_of(wsi);
    if (info) {
        proxy_proto_dst_text(info, ip, PEER_ADDR_TEXT);
        *port = info->dst_port;
        return;
    }
    socket_address(wsi, true, ip, port);
}

void peer_addr_shutdown(void)
{
    struct peer_addr_table *t = &gateway_get()->peer_addrs;
    free(t->by_fd);
    t->by_fd = NULL;
    t->n_by_fd = 0;
}

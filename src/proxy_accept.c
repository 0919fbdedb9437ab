/* proxy_accept.c - reading the PROXY header of a new connection; see
 * proxy_accept.h. Loop thread only. */
#define _GNU_SOURCE
#include "proxy_accept.h"

#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "peer_addr.h"
#include "proxy_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PENDING_TAG 0x9e0d1b6au

/* One connection waiting for its header: created at accept, freed when its
 * watcher closes (header read and handed over, refused, or too late). */
struct proxy_accept_pending {
    uint32_t tag;      /* PENDING_TAG, see proxy_accept_is() */
    int fd;            /* the accepted socket; owned until handed to lws, then -1 */
    struct lws *watch; /* lws's raw-file watcher of a duplicate of fd */
    struct lws_vhost *vhost;
    struct proxy_accept_pending *prev, *next; /* the deadline FIFO */
    bool in_fifo;
    uint64_t deadline_us;
    size_t have; /* header bytes consumed from the socket into buf */
    uint8_t buf[PROXY_PROTO_MAX_HEADER];
};

bool proxy_accept_is(const void *opaque)
{
    return opaque && ((const struct proxy_accept_pending *)opaque)->tag == PENDING_TAG;
}

size_t proxy_accept_pending(void) { return gateway_get()->proxy_accept.n_pending; }

/* --- deadlines --------------------------------------------------------------
 * One timer for all pending connections (lws 4.1.6 keeps timers in a sorted
 * list: one each would make a connection storm O(N^2)). Every deadline is
 * the same length after accept, so a FIFO is in deadline order. */

static void fifo_remove(struct proxy_accept_pending *p)
{
    if (!p->in_fifo)
        return;
    struct proxy_accept_fifo *f = &gateway_get()->proxy_accept;
    if (p->prev)
        p->prev->next = p->next;
    else
        f->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        f->tail = p->prev;
    p->prev = p->next = NULL;
    p->in_fifo = false;
    if (!f->head && f->timer_used)
        lws_sul_cancel(&f->timer);
}

static void deadlines_due(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    struct proxy_accept_fifo *f = &gateway_get()->proxy_accept;
    uint64_t now = (uint64_t)lws_now_usecs();
    while (f->head && f->head->deadline_us <= now) {
        struct proxy_accept_pending *p = f->head;
        fifo_remove(p);
        metrics_count_proxy_protocol_error();
        log_debug("PROXY header: none within the deadline, connection closed");
        /* The watcher closes from the loop; RAW_CLOSE_FILE frees p. */
        lws_set_timeout(p->watch, PENDING_TIMEOUT_KILLED_BY_PROXY_CLIENT_CLOSE, LWS_TO_KILL_ASYNC);
    }
    if (f->head)
        lws_sul_schedule(gateway_get()->context, 0, &f->timer, deadlines_due,
                         (lws_usec_t)(f->head->deadline_us - now));
}

static void fifo_add(struct proxy_accept_pending *p, struct lws_context *context)
{
    uint64_t timeout_us = (uint64_t)PROXY_ACCEPT_DEADLINE_S * LWS_USEC_PER_SEC;
    struct proxy_accept_fifo *f = &gateway_get()->proxy_accept;
    bool was_empty = f->head == NULL;
    p->deadline_us = (uint64_t)lws_now_usecs() + timeout_us;
    p->prev = f->tail;
    p->next = NULL;
    if (f->tail)
        f->tail->next = p;
    else
        f->head = p;
    f->tail = p;
    p->in_fifo = true;
    f->timer_used = true;
    if (was_empty)
        lws_sul_schedule(context, 0, &f->timer, deadlines_due, (lws_usec_t)timeout_us);
}

/* --- the connection ---------------------------------------------------------- */

void proxy_accept_start(struct lws_vhost *vh, int fd)
{
    struct proxy_accept_pending *p = calloc(1, sizeof(*p));
    int dup_fd = p ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (dup_fd < 0) {
        log_warn("PROXY header: cannot watch a new connection", "error",
                 p ? strerror(errno) : "out of memory");
        free(p);
        close(fd);
        return;
    }
    p->tag = PENDING_TAG;
    p->fd = fd;
    p->vhost = vh;
    lws_sock_file_fd_type desc = {.filefd = dup_fd};
    p->watch = lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, desc, NULL, NULL);
    if (!p->watch) {
        log_warn("PROXY header: libwebsockets refused to watch a new connection");
        close(dup_fd);
        close(fd);
        free(p);
        return;
    }
    lws_set_opaque_user_data(p->watch, p);
    gateway_get()->proxy_accept.n_pending++;
    fifo_add(p, lws_get_context(p->watch));
}

/* The header is whole: consume its last bytes and give the socket to lws. */
static void hand_over(struct proxy_accept_pending *p, size_t header_len,
                      const struct proxy_proto_info *info)
{
    uint8_t rest[PROXY_PROTO_MAX_HEADER];
    size_t left = header_len - p->have;
    if (left && recv(p->fd, rest, left, MSG_DONTWAIT) != (ssize_t)left) {
        /* It was there a moment ago (peeked): the socket broke meanwhile. */
        close(p->fd);
        p->fd = -1;
        return;
    }
    int fd = p->fd;
    p->fd = -1;
    peer_addr_forget(fd);
    /* HTTP (and TLS when the vhost has it), as lws's own listener would. */
    struct lws *wsi = lws_adopt_socket_vhost(p->vhost, fd);
    if (!wsi) { /* it has closed fd then */
        log_warn("accept: libwebsockets refused the connection");
        return;
    }
    if (info->has_addr && peer_addr_set(fd, wsi, info) != 0)
        log_warn("PROXY header: out of memory, the socket's own address is logged");
}

/* Reads what has come; true when the watcher is done (handed over or
 * refused), false to wait for more. */
static bool read_header(struct proxy_accept_pending *p)
{
    size_t want = proxy_proto_read_hint(p->buf, p->have);
    if (want > sizeof(p->buf) - p->have)
        want = sizeof(p->buf) - p->have;
    /* Peek: only the header's own bytes are taken from the socket. */
    ssize_t n = recv(p->fd, p->buf + p->have, want, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false;
    if (n <= 0) {
        if (p->have > 0) { /* a part of a header, then EOF or an error */
            metrics_count_proxy_protocol_error();
            log_debug("PROXY header: connection ended inside the header");
        }
        return true;
    }
    struct proxy_proto_info info;
    size_t header_len = 0;
    switch (proxy_proto_parse(p->buf, p->have + (size_t)n, &info, &header_len)) {
    case PROXY_PROTO_NEED_MORE:
        /* Every byte seen so far belongs to the header: take them. */
        if (recv(p->fd, p->buf + p->have, (size_t)n, MSG_DONTWAIT) != n)
            return true;
        p->have += (size_t)n;
        return false;
    case PROXY_PROTO_INVALID:
        metrics_count_proxy_protocol_error();
        log_debug("PROXY header: invalid, connection closed");
        return true;
    case PROXY_PROTO_DONE:
        hand_over(p, header_len, &info);
        return true;
    }
    return true;
}

int proxy_accept_lws_event(struct lws *wsi, enum lws_callback_reasons reason)
{
    struct proxy_accept_pending *p = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        if (!p->in_fifo)
            return -1; /* too late: being closed */
        if (read_header(p)) {
            fifo_remove(p);
            return -1; /* the watcher goes; RAW_CLOSE_FILE frees p */
        }
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        lws_set_opaque_user_data(wsi, NULL);
        fifo_remove(p);
        if (p->fd >= 0)
            close(p->fd);
        p->tag = 0;
        free(p);
        gateway_get()->proxy_accept.n_pending--;
        return 0;
    default:
        return 0;
    }
}

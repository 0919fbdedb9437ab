/* listener.c - listening sockets bound by wsgate, accepted into lws; see listener.h. */
#define _GNU_SOURCE
#include "listener.h"

#include "log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTENER_TAG 0x115e7e75u
#define BACKLOG 4096       /* as lws asks for (capped by net.core.somaxconn) */
#define ACCEPTS_PER_EVENT 64 /* then the loop serves the others before more */

struct listener {
    uint32_t tag; /* LISTENER_TAG, see listener_is() */
    int fd;       /* owned by lws from adoption on */
    struct lws_vhost *vhost;
    listener_admit_fn admit;
    void *admit_ctx;
};

bool listener_is(const void *opaque)
{
    return opaque && ((const struct listener *)opaque)->tag == LISTENER_TAG;
}

/* "every address" (IPv4), as "0.0.0.0" and "*" say. */
static const char *bind_host(const char *host)
{
    if (!host || !*host || strcmp(host, "*") == 0)
        return "0.0.0.0";
    return host;
}

int listener_bind(const char *host, int port, bool share_port, char *err, size_t err_len)
{
    char port_text[8];
    snprintf(port_text, sizeof(port_text), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(bind_host(host), port_text, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "%s", gai_strerror(rc));
        return -1;
    }
    int fd = -1, last_errno = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        /* SO_REUSEADDR as libwebsockets sets it: only a live socket on the
         * port (a listener, whatever its options) makes bind() fail. */
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            (share_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
            bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, BACKLOG) != 0) {
            last_errno = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, err_len, "%s", strerror(last_errno ? last_errno : EADDRNOTAVAIL));
    return fd;
}

int listener_open(struct lws_vhost *vh, const char *host, int port, listener_admit_fn admit,
                  void *admit_ctx, char *err, size_t err_len)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    l->fd = listener_bind(host, port, true, err, err_len);
    if (l->fd < 0) {
        free(l);
        return -1;
    }
    l->tag = LISTENER_TAG;
    l->vhost = vh;
    l->admit = admit;
    l->admit_ctx = admit_ctx;
    lws_sock_file_fd_type desc = {.filefd = l->fd};
    struct lws *wsi = lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, desc, NULL, NULL);
    if (!wsi) {
        snprintf(err, err_len, "libwebsockets could not watch the listening socket");
        close(l->fd);
        free(l);
        return -1;
    }
    lws_set_opaque_user_data(wsi, l);
    return 0;
}

/* Takes what is waiting, a bounded number at a time. Another worker may have
 * taken it first (EAGAIN): that is normal with a shared port. */
static void accept_waiting(struct listener *l)
{
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                log_warn("accept: out of file descriptors", "error", strerror(errno));
            return; /* EAGAIN, or an error the next wakeup retries */
        }
        if (l->admit && l->admit(l->admit_ctx, fd)) {
            close(fd);
            continue;
        }
        /* HTTP (and TLS when the vhost has it), as lws's own listener would. */
        if (!lws_adopt_socket_vhost(l->vhost, fd)) /* it has closed fd then */
            log_warn("accept: libwebsockets refused the connection");
    }
}

int listener_lws_event(struct lws *wsi, enum lws_callback_reasons reason)
{
    struct listener *l = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        accept_waiting(l);
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        lws_set_opaque_user_data(wsi, NULL);
        l->tag = 0;
        free(l);
        return 0;
    default:
        return 0;
    }
}

/* listener.c - listening sockets bound by wsgate, accepted into lws; see listener.h. */
#define _GNU_SOURCE
#include "listener.h"

#include "log.h"
#include "peer_addr.h"
#include "proxy_accept.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTENER_TAG 0x115e7e75u
#define BACKLOG 4096         /* as lws asks for (capped by net.core.somaxconn) */
#define ACCEPTS_PER_EVENT 64 /* then the loop serves the others before more */

struct listener {
    uint32_t tag; /* LISTENER_TAG, see listener_is() */
    int fd;       /* owned by lws from adoption on */
    struct lws_vhost *vhost;
    listener_admit_fn admit;
    void *admit_ctx;
    bool proxy_protocol; /* connections start with a PROXY header (proxy_accept.h) */
    char *unix_path;     /* owned; the socket file removed when the listener goes */
    dev_t unix_dev;      /* ... if it is still the one bound here */
    ino_t unix_ino;
};

bool listener_is(const void *opaque)
{
    return opaque &&
           (((const struct listener *)opaque)->tag == LISTENER_TAG || proxy_accept_is(opaque));
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
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
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

/* A socket file left at path by a process that is gone is removed; one
 * that a live process listens on, or a file that is no socket, stays and
 * fails the bind. */
static int remove_stale_socket(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0; /* nothing there */
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, err_len, "%s exists and is not a socket", path);
        return -1;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        snprintf(err, err_len, "%s", strerror(errno));
        return -1;
    }
    int rc = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    close(probe);
    if (rc == 0) {
        snprintf(err, err_len, "%s: another process is listening on it", path);
        return -1;
    }
    if (e != ECONNREFUSED) {
        snprintf(err, err_len, "%s: %s", path, strerror(e));
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, err_len, "cannot remove the stale %s: %s", path, strerror(errno));
        return -1;
    }
    log_info("stale unix socket file replaced", "path", path);
    return 0;
}

int listener_bind_unix(const char *path, int mode, char *err, size_t err_len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, err_len, "%s: path too long for a unix socket", path);
        return -1;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (remove_stale_socket(path, err, err_len) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        (mode > 0 && chmod(path, (mode_t)mode) != 0) || listen(fd, BACKLOG) != 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        if (fd >= 0) {
            struct stat st;
            close(fd);
            if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                unlink(path); /* ours, half made */
        }
        return -1;
    }
    return fd;
}

static void listener_free(struct listener *l)
{
    if (l->unix_path) {
        /* Removed only if it is still ours: a successor may have bound it. */
        struct stat st;
        if (lstat(l->unix_path, &st) == 0 && st.st_dev == l->unix_dev && st.st_ino == l->unix_ino)
            unlink(l->unix_path);
    }
    free(l->unix_path);
    l->tag = 0;
    free(l);
}

int listener_open(struct lws_vhost *vh, const struct wsg_listen *cfg, bool share_port,
                  listener_admit_fn admit, void *admit_ctx, char *err, size_t err_len)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l || (wsg_listen_is_unix(cfg) && !(l->unix_path = strdup(cfg->host)))) {
        snprintf(err, err_len, "out of memory");
        free(l);
        return -1;
    }
    l->fd = wsg_listen_is_unix(cfg) ? listener_bind_unix(cfg->host, cfg->mode, err, err_len)
                                    : listener_bind(cfg->host, cfg->port, share_port, err, err_len);
    if (l->fd < 0) {
        free(l->unix_path);
        free(l);
        return -1;
    }
    struct stat st;
    if (l->unix_path && lstat(l->unix_path, &st) == 0) {
        l->unix_dev = st.st_dev;
        l->unix_ino = st.st_ino;
    }
    l->tag = LISTENER_TAG;
    l->vhost = vh;
    l->admit = admit;
    l->admit_ctx = admit_ctx;
    l->proxy_protocol = cfg->proxy_protocol;
    lws_sock_file_fd_type desc = {.filefd = l->fd};
    struct lws *wsi = lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, desc, NULL, NULL);
    if (!wsi) {
        snprintf(err, err_len, "libwebsockets could not watch the listening socket");
        close(l->fd);
        listener_free(l);
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
        if (l->proxy_protocol) {
            proxy_accept_start(l->vhost, fd);
            continue;
        }
        peer_addr_forget(fd); /* the socket's own addresses are the client's */
        /* HTTP (and TLS when the vhost has it), as lws's own listener would. */
        if (!lws_adopt_socket_vhost(l->vhost, fd)) /* it has closed fd then */
            log_warn("accept: libwebsockets refused the connection");
    }
}

int listener_lws_event(struct lws *wsi, enum lws_callback_reasons reason)
{
    struct listener *l = lws_get_opaque_user_data(wsi);
    if (proxy_accept_is(l))
        return proxy_accept_lws_event(wsi, reason);
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        accept_waiting(l);
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        lws_set_opaque_user_data(wsi, NULL);
        listener_free(l);
        return 0;
    default:
        return 0;
    }
}

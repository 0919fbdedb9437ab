/* echo_server.c - wsgate-echo: a TCP echo server for the demo and the tests.
 *
 * Every byte a client sends comes back to it, in order. One thread, one epoll
 * loop, non-blocking sockets, any number of clients. Each connection holds at
 * most ECHO_BUF_BYTES of not-yet-echoed data: when that is full the server
 * stops reading from the client (EPOLLIN off) until the client reads its
 * echo (EPOLLOUT drains), so a client that never reads cannot make it grow.
 * When a client half-closes, what is pending is flushed, then the socket is
 * closed. It knows nothing of WebSockets.
 *
 *   wsgate-echo [--host 127.0.0.1] [--port N]     (port 0: pick a free one)
 *
 * Prints "listening on HOST:PORT" once listening; SIGTERM / SIGINT exit 0. */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define ECHO_BUF_BYTES (256 * 1024) /* per-connection bound on pending echo data */
#define ECHO_MAX_EVENTS 256

enum echo_kind { ECHO_LISTENER, ECHO_SIGNAL, ECHO_CLIENT };

/* One per accepted client; freed by conn_close(). */
struct echo_conn {
    enum echo_kind kind; /* ECHO_CLIENT; first so an epoll pointer can be told apart */
    int fd;
    size_t off;      /* first byte of buf not yet sent back */
    size_t len;      /* end of the data in buf; off <= len <= ECHO_BUF_BYTES */
    bool read_eof;   /* the client half-closed: flush, then close */
    uint32_t events; /* what epoll currently watches for this fd */
    unsigned char buf[ECHO_BUF_BYTES];
};

/* Marks the listening and signal fds in epoll's data.ptr. */
static enum echo_kind listener_tag = ECHO_LISTENER;
static enum echo_kind signal_tag = ECHO_SIGNAL;

static void usage(FILE *out)
{
    fprintf(out, "usage: wsgate-echo [--host ADDR] [--port N]\n"
                 "  --host ADDR  address to bind (default 127.0.0.1)\n"
                 "  --port N     port to listen on, 0 = any free port (default 0)\n"
                 "Echoes every byte each TCP client sends back to it.\n");
}

/* Binds and listens; returns the fd and the bound port, or -1 after a message. */
static int listen_on(const char *host, const char *port, int *bound_port)
{
    struct addrinfo hints, *res, *ai;
    int fd = -1, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "wsgate-echo: %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        int one = 1;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 512) == 0)
            break;
        rc = errno;
        close(fd);
        fd = -1;
        errno = rc;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "wsgate-echo: cannot listen on %s:%s: %s\n", host, port, strerror(errno));
        return -1;
    }

    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        fprintf(stderr, "wsgate-echo: getsockname: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void conn_close(int ep, struct echo_conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Tells epoll what this connection waits for: input while there is room and
 * the client has not half-closed, output while there is something to send. */
static int conn_update_events(int ep, struct echo_conn *c)
{
    uint32_t want = 0;
    if (!c->read_eof && c->len < ECHO_BUF_BYTES)
        want |= EPOLLIN;
    if (c->off < c->len)
        want |= EPOLLOUT;
    if (want == c->events)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        return -1;
    c->events = want;
    return 0;
}

/* Sends what is pending. 0 on progress or EAGAIN, -1 if the peer is gone. */
static int conn_flush(struct echo_conn *c)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n > 0) {
            c->off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    if (c->off == c->len) {
        c->off = 0;
        c->len = 0;
    } else if (c->off > 0 && c->len == ECHO_BUF_BYTES) {
        /* Full at the end but space at the front: move the rest down to read more. */
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    return 0;
}

/* Reads while there is room. 0 if fine (maybe at EOF), -1 on error. */
static int conn_fill(struct echo_conn *c)
{
    while (!c->read_eof && c->len < ECHO_BUF_BYTES) {
        ssize_t n = recv(c->fd, c->buf + c->len, ECHO_BUF_BYTES - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
        } else if (n == 0) {
            c->read_eof = true;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            return -1;
        }
    }
    return 0;
}

static void conn_service(int ep, struct echo_conn *c, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (conn_fill(c) != 0) {
            conn_close(ep, c);
            return;
        }
    }
    if (conn_flush(c) != 0) {
        conn_close(ep, c);
        return;
    }
    if (c->read_eof && c->off == c->len) {
        conn_close(ep, c); /* everything the client sent has been echoed */
        return;
    }
    if (conn_update_events(ep, c) != 0)
        conn_close(ep, c);
}

static void accept_clients(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                fprintf(stderr, "wsgate-echo: accept: %s\n", strerror(errno));
            return; /* EMFILE and friends: try again on the next event */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct echo_conn *c = malloc(sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->kind = ECHO_CLIENT;
        c->fd = fd;
        c->off = 0;
        c->len = 0;
        c->read_eof = false;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
        }
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *port = "0";

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = argv[++i];
            char *end;
            long p = strtol(port, &end, 10);
            if (*port == '\0' || *end != '\0' || p < 0 || p > 65535) {
                fprintf(stderr, "wsgate-echo: --port: expected 0..65535, got \"%s\"\n", port);
                return 1;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "wsgate-echo: unknown or incomplete option \"%s\"\n", argv[i]);
            usage(stderr);
            return 1;
        }
    }

    /* SIGTERM / SIGINT arrive on a signalfd, so the loop ends them cleanly. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
        fprintf(stderr, "wsgate-echo: sigprocmask: %s\n", strerror(errno));
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        fprintf(stderr, "wsgate-echo: signalfd: %s\n", strerror(errno));
        return 2;
    }

    int bound_port = 0;
    int lfd = listen_on(host, port, &bound_port);
    if (lfd < 0)
        return 2;

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        fprintf(stderr, "wsgate-echo: epoll_create1: %s\n", strerror(errno));
        return 2;
    }
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listener_tag};
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &signal_tag};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sev) != 0) {
        fprintf(stderr, "wsgate-echo: epoll_ctl: %s\n", strerror(errno));
        return 2;
    }

    printf("listening on %s:%d\n", host, bound_port);
    fflush(stdout);

    struct epoll_event events[ECHO_MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, ECHO_MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "wsgate-echo: epoll_wait: %s\n", strerror(errno));
            return 2;
        }
        for (int i = 0; i < n; i++) {
            enum echo_kind *kind = events[i].data.ptr;
            if (*kind == ECHO_SIGNAL) {
                /* Open clients are simply dropped: the process is ending. */
                return 0;
            } else if (*kind == ECHO_LISTENER) {
                accept_clients(ep, lfd);
            } else {
                conn_service(ep, (struct echo_conn *)kind, events[i].events);
            }
        }
    }
}

/* interpose.c - the three library functions the wsgate executable defines
 * over the ones libc and OpenSSL export, and why. Each only forwards: the
 * decision belongs to the module named, this file only holds the symbol.
 *
 * A function of the same name in the executable wins over the shared
 * library's for every caller in the process (the libraries call through
 * their PLT), so these run on every thread: lws's loop, Paho's threads,
 * getaddrinfo_a's. The real functions are found once with dlsym(RTLD_NEXT)
 * before main() and before any thread (under ASan the next one is ASan's
 * interceptor, which calls libc's).
 *
 *   recv()      lws reads client sockets with it: ws_rx_guard.c checks
 *               every byte of an established client WebSocket against RFC
 *               6455 before lws parses it (lws 4.1.6 has no hook between
 *               reading and parsing, and accepts unmasked frames). Other
 *               sockets pass straight through.
 *   SSL_read()  the same for TLS clients.
 *   poll()      Paho's receive thread notices that a TCP connect completed
 *               only when its poll() returns, which waits up to 1 s for
 *               readability: mqtt_broker.c caps that thread's timeout while
 *               one of our connects is in progress (mqtt_paho_poll_timeout).
 *               Every other poll goes to libc untouched. */
#define _GNU_SOURCE /* RTLD_NEXT */
/* A fortified build declares recv() as an inline wrapper, and this file
 * defines the real symbol. */
#undef _FORTIFY_SOURCE
#include "interpose.h"

#include "mqtt_broker.h"
#include "ws_rx_guard.h"

#include <dlfcn.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

typedef ssize_t (*recv_fn)(int, void *, size_t, int);
typedef int (*ssl_read_fn)(SSL *, void *, int);
typedef int (*poll_fn)(struct pollfd *, nfds_t, int);
/* File-scope, not struct gateway's: set before main() by the constructor
 * below and read by every thread, they are the symbols' own, not state. */
static recv_fn real_recv;
static ssl_read_fn real_ssl_read;
static poll_fn real_poll;

/* Before main() and before any thread: no locking needed afterwards. */
__attribute__((constructor)) static void resolve_real(void)
{
    real_recv = (recv_fn)dlsym(RTLD_NEXT, "recv");
    real_ssl_read = (ssl_read_fn)dlsym(RTLD_NEXT, "SSL_read");
    real_poll = (poll_fn)dlsym(RTLD_NEXT, "poll");
    if (!real_recv || !real_ssl_read || !real_poll) {
        fprintf(stderr, "wsgate: cannot find recv/SSL_read/poll behind interpose.c: %s\n",
                dlerror());
        abort();
    }
}

ssize_t interpose_real_recv(int fd, void *buf, size_t len, int flags)
{
    return real_recv(fd, buf, len, flags);
}

int interpose_real_ssl_read(struct ssl_st *ssl, void *buf, int num)
{
    return real_ssl_read(ssl, buf, num);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    return ws_rx_guard_recv(fd, buf, len, flags);
}

int SSL_read(SSL *ssl, void *buf, int num) { return ws_rx_guard_ssl_read(ssl, buf, num); }

int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    return real_poll(fds, nfds, mqtt_paho_poll_timeout(timeout));
}

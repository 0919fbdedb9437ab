/* interpose.h - the real libc and OpenSSL functions behind the ones the
 * wsgate executable overrides (interpose.c), for the modules that own what
 * the overrides do. */
#ifndef WSGATE_INTERPOSE_H
#define WSGATE_INTERPOSE_H

#include <sys/types.h>

struct ssl_st;

ssize_t interpose_real_recv(int fd, void *buf, size_t len, int flags);
int interpose_real_ssl_read(struct ssl_st *ssl, void *buf, int num);

#endif

/* tls_check.h - does a certificate chain file load, with its private key,
 * and do they belong together? Asked before a listener is (re)loaded, so
 * that a bad pair gets a clear message instead of a silent lws failure. */
#ifndef WSGATE_TLS_CHECK_H
#define WSGATE_TLS_CHECK_H

#include <stddef.h>

/* 0, or -1 with a one-line reason in err. */
int tls_check_pair(const char *cert_path, const char *key_path, char *err, size_t err_len);

#endif

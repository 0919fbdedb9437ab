/* tls_check.c - certificate and key checks with OpenSSL; see tls_check.h. */
#include "tls_check.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>

static int fail(SSL_CTX *ctx, char *err, size_t err_len, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char detail[200] = "";
    if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    snprintf(err, err_len, "%s %s%s%s", what, path, *detail ? ": " : "", detail);
    SSL_CTX_free(ctx);
    return -1;
}

int tls_check_pair(const char *cert_path, const char *key_path, char *err, size_t err_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return fail(ctx, err, err_len, "cannot check", cert_path);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1)
        return fail(ctx, err, err_len, "cannot load certificate", cert_path);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1)
        return fail(ctx, err, err_len, "cannot load private key", key_path);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail(ctx, err, err_len, "private key does not match the certificate in", cert_path);
    SSL_CTX_free(ctx);
    return 0;
}

/* healthcheck.c - wsgate-healthcheck: the container image's HEALTHCHECK.
 *
 *   wsgate-healthcheck [-c FILE] [-t SECONDS]
 *
 * GETs /healthz from the wsgate in this container and exits 0 on a 200, else
 * 1 (Docker's "unhealthy"; 2 is reserved by Docker and never used). It reads
 * the same config as the gateway (-c, else $WSGATE_CONFIG, else
 * /etc/wsgate/wsgate.json) and asks the first plain listener, or the first
 * TLS one when all are TLS (https to the same process: the certificate is not
 * verified), so a config with another port needs no change to the image.
 * A wildcard host (absent, "0.0.0.0", "::", "*") is asked on 127.0.0.1, then
 * ::1. One line on stdout says what was asked and what came back (Docker
 * keeps it in `docker inspect`'s health log). The whole check ends within
 * -t seconds (default 3).
 *
 * Why a program and not curl: the runtime image has no curl (about 4 MB with
 * its libraries, and a tool an attacker would like), and a shell one-liner
 * would have to hard-code the port. This is some 20 KB and uses only the
 * libraries wsgate itself links (jansson, OpenSSL). */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/wsgate/wsgate.json"

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "unhealthy: no answer within the time limit\n";
    ssize_t n = write(STDOUT_FILENO, msg, sizeof msg - 1);
    (void)n;
    _exit(1);
}

/* The string field "name", or the variable its "name_env" twin names. */
static const char *str_field(json_t *obj, const char *name)
{
    const char *s = json_string_value(json_object_get(obj, name));
    if (s)
        return s;
    char key[64];
    snprintf(key, sizeof key, "%s_env", name);
    const char *var = json_string_value(json_object_get(obj, key));
    return var ? getenv(var) : NULL;
}

static int connect_to(const char *host, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        printf("unhealthy: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        printf("unhealthy: cannot connect to %s port %d: %s\n", host, port, strerror(err));
    return fd;
}

int main(int argc, char **argv)
{
    const char *config = getenv("WSGATE_CONFIG");
    unsigned timeout = 3;
    int opt;
    while ((opt = getopt(argc, argv, "c:t:h")) != -1) {
        switch (opt) {
        case 'c': config = optarg; break;
        case 't': timeout = (unsigned)atoi(optarg); break;
        default:
            fprintf(opt == 'h' ? stdout : stderr,
                    "usage: wsgate-healthcheck [-c FILE] [-t SECONDS]\n"
                    "GETs /healthz from the listener in wsgate's config (-c, else "
                    "$WSGATE_CONFIG, else " DEFAULT_CONFIG "); exit 0 on a 200, else 1.\n");
            return opt == 'h' ? 0 : 1;
        }
    }
    if (!config || !*config)
        config = DEFAULT_CONFIG;
    signal(SIGALRM, on_alarm);
    alarm(timeout ? timeout : 3);

    json_error_t jerr;
    json_t *root = json_load_file(config, 0, &jerr);
    if (!root) {
        printf("unhealthy: %s: %s\n", config, jerr.text);
        return 1;
    }
    /* The first plain listener, else the first one (TLS). */
    json_t *listen = json_object_get(root, "listen"), *pick = NULL, *l;
    size_t i;
    json_array_foreach(listen, i, l) {
        if (!json_object_get(l, "tls")) {
            pick = l;
            break;
        }
        if (!pick)
            pick = l;
    }
    if (!pick) {
        printf("unhealthy: %s: no listen[] entry\n", config);
        return 1;
    }
    int port = (int)json_integer_value(json_object_get(pick, "port"));
    bool tls = json_object_get(pick, "tls") != NULL;
    const char *host = str_field(pick, "host");
    bool wildcard = !host || !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "::") ||
                    !strcmp(host, "*");
    const char *connect_host = wildcard ? "127.0.0.1" : host;
    int fd = connect_to(connect_host, port);
    if (fd < 0 && wildcard)
        fd = connect_to(connect_host = "::1", port);
    if (fd < 0)
        return 1;

    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* our own process, on this host */
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) != 1) {
            printf("unhealthy: TLS handshake with %s port %d failed: %s\n", connect_host, port,
                   ERR_reason_error_string(ERR_get_error()));
            return 1;
        }
    }
    char authority[300]; /* host:port, an IPv6 address in brackets */
    snprintf(authority, sizeof authority, strchr(connect_host, ':') ? "[%s]:%d" : "%s:%d",
             connect_host, port);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /healthz HTTP/1.1\r\nHost: %s\r\nUser-Agent: wsgate-healthcheck\r\n"
                     "Connection: close\r\n\r\n",
                     authority);
    int sent = tls ? SSL_write(ssl, req, n) : (int)send(fd, req, (size_t)n, MSG_NOSIGNAL);
    if (sent != n) {
        printf("unhealthy: could not send the request to %s\n", authority);
        return 1;
    }
    char resp[256];
    size_t got = 0;
    while (got < sizeof resp - 1 && !memchr(resp, '\n', got)) {
        int r = tls ? SSL_read(ssl, resp + got, (int)(sizeof resp - 1 - got))
                    : (int)recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    resp[got] = '\0';
    char *eol = strpbrk(resp, "\r\n");
    if (eol)
        *eol = '\0';
    const char *url = tls ? "https" : "http";
    int status = 0;
    if (sscanf(resp, "HTTP/%*d.%*d %d", &status) != 1) {
        printf("unhealthy: %s://%s/healthz: no HTTP status line (got \"%.60s\")\n", url,
               authority, resp);
        return 1;
    }
    printf("%s: %s://%s/healthz %d\n", status == 200 ? "healthy" : "unhealthy", url, authority,
           status);
    return status == 200 ? 0 : 1;
}

/* http_endpoints.c - health, readiness, metrics and static files; see
 * http_endpoints.h. */
#include "http_endpoints.h"

#include "config.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "backend_type.h"

#include <limits.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

int http_refuse(struct lws *wsi, int status, const char *reason)
{
    uint8_t buf[LWS_PRE + 1024];
    char *p = (char *)buf + LWS_PRE;
    char line[300];
    /* One line, no control characters: the reason may quote client input. */
    snprintf(line, sizeof(line), "%s", reason);
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < ' ' || *c == 0x7f)
            *c = ' ';
    int n = snprintf(p, sizeof(buf) - LWS_PRE,
                     "HTTP/1.1 %d %s\r\n"
                     "content-type: text/plain; charset=utf-8\r\n"
                     "content-length: %zu\r\n"
                     "connection: close\r\n"
                     "\r\n"
                     "%s\n",
                     status, status_text(status), strlen(line) + 1, line);
    if (n < 0 || (size_t)n >= sizeof(buf) - LWS_PRE)
        return -1;
    metrics_count_refused(status);
    if (lws_write(wsi, (unsigned char *)p, (size_t)n, LWS_WRITE_HTTP_HEADERS) < 0)
        return -1;
    return 0;
}

/* Starts a dynamic response: headers now, the body (owned by st) when writable. */
static int respond(struct lws *wsi, struct http_state *st, int status, const char *type, char *body,
                   size_t len)
{
    uint8_t buf[LWS_PRE + 512];
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;

    free(st->body);
    st->body = body;
    st->body_len = len;
    if (lws_add_http_common_headers(wsi, (unsigned int)status, type, len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int respond_text(struct lws *wsi, struct http_state *st, int status, const char *type,
                        const char *text)
{
    char *body = strdup(text);
    if (!body)
        return -1;
    return respond(wsi, st, status, type, body, strlen(body));
}

int http_endpoints_writable(struct lws *wsi, struct http_state *st)
{
    if (!st->body)
        return 0;
    /* Bodies here are small (metrics of a few routes): one write. */
    uint8_t *buf = malloc(LWS_PRE + st->body_len + 1);
    if (!buf)
        return -1;
    memcpy(buf + LWS_PRE, st->body, st->body_len);
    int n = lws_write(wsi, buf + LWS_PRE, st->body_len, LWS_WRITE_HTTP_FINAL);
    free(buf);
    http_state_release(st);
    if (n < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

void http_state_release(struct http_state *st)
{
    if (!st)
        return;
    free(st->body);
    st->body = NULL;
    st->body_len = 0;
}

static int readyz(struct lws *wsi, struct http_state *st, const struct wsg_config *cfg)
{
    (void)cfg;
    const char *kind = NULL;
    const char *down = backend_types_unavailable(&gateway_get()->backend_types, &kind);
    if (down) {
        char text[300];
        snprintf(text, sizeof(text), "{\"status\":\"unavailable\",\"%s\":\"%s\"}\n", kind, down);
        return respond_text(wsi, st, 503, "application/json", text);
    }
    return respond_text(wsi, st, 200, "application/json", "{\"status\":\"ok\"}\n");
}

static const char *mime_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".wasm", "application/wasm"},
        {".map", "application/json"},
    };
    const char *dot = strrchr(path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* Resolves path (symlinks and all) into real; false unless it lies in root. */
static bool resolve_inside(const char *root, const char *path, char *real)
{
    if (!realpath(path, real))
        return false;
    size_t rlen = strlen(root);
    return strncmp(real, root, rlen) == 0 && (real[rlen] == '/' || real[rlen] == '\0');
}

/* Maps uri under the static mount to a file inside dir; refuses anything
 * that resolves outside it (symlinks included). */
static int static_file(struct lws *wsi, const struct wsg_config *cfg, const char *uri)
{
    const struct wsg_static *st = &cfg->static_files;
    size_t mlen = strlen(st->mount);
    while (mlen > 1 && st->mount[mlen - 1] == '/')
        mlen--;
    if (strncmp(uri, st->mount, mlen) != 0 || (mlen > 1 && uri[mlen] && uri[mlen] != '/'))
        return 0;
    const char *rest = mlen > 1 ? uri + mlen : uri;
    if (!*rest)
        rest = "/";

    char root[PATH_MAX], wanted[PATH_MAX], real[PATH_MAX];
    if (!realpath(st->dir, root))
        return 0;
    int n = snprintf(wanted, sizeof(wanted), "%s%s", root, rest);
    if (n < 0 || (size_t)n >= sizeof(wanted) || !resolve_inside(root, wanted, real))
        return 0;
    struct stat st_buf;
    if (stat(real, &st_buf) != 0)
        return 0;
    if (S_ISDIR(st_buf.st_mode)) {
        /* A directory serves its index.html. */
        n = snprintf(wanted, sizeof(wanted), "%s/index.html", real);
        if (n < 0 || (size_t)n >= sizeof(wanted) || !resolve_inside(root, wanted, real) ||
            stat(real, &st_buf) != 0)
            return 0;
    }
    if (!S_ISREG(st_buf.st_mode))
        return 0;

    int r = lws_serve_http_file(wsi, real, mime_type(real), NULL, 0);
    if (r < 0)
        return -1;
    if (r > 0 && lws_http_transaction_completed(wsi))
        return -1;
    return 1;
}

int http_endpoints_request(struct lws *wsi, struct http_state *st, const char *uri,
                           const struct wsg_config *cfg)
{
    if (!lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) &&
        !lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI)) {
        if (lws_return_http_status(wsi, 405, "only GET and HEAD") ||
            lws_http_transaction_completed(wsi))
            return -1;
        return 0;
    }

    if (strcmp(uri, "/healthz") == 0)
        return respond_text(wsi, st, 200, "application/json", "{\"status\":\"ok\"}\n");
    if (strcmp(uri, "/readyz") == 0)
        return readyz(wsi, st, cfg);
    if (strcmp(uri, "/metrics") == 0) {
        size_t len = 0;
        char *text = metrics_render(&len);
        if (!text)
            return -1;
        return respond(wsi, st, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    }
    if (cfg->has_static) {
        int r = static_file(wsi, cfg, uri);
        if (r != 0)
            return r < 0 ? -1 : 0;
    }
    if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, "not found") ||
        lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

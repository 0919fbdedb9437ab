/* route.c - the route table: compiles path patterns, matches request targets
 * (percent-decoding, refusing captures that could widen a topic or key) and
 * expands templates. Pure logic over buffers; the server maps the statuses
 * to HTTP replies, and config.c uses the validators to report errors. */
#include "route.h"

#include "config.h"

#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATTERN_BYTES 1024    /* a path pattern longer than this is a config error */
#define MAX_SEGMENTS 32           /* segments of a path pattern */
#define MAX_PLACEHOLDER_BYTES 256 /* between "{" and "}" in a template */
#define MAX_REASON_PATH 200       /* bytes of a request path echoed in a 404 reason */

#define REFUSED_CHARS "may not be empty or hold '+', '#', '/' or NUL"

/* One segment of a compiled pattern; points into the config's path string. */
struct segment {
    const char *s; /* literal text, or the capture's name without braces */
    size_t len;
    bool capture;
    bool rest; /* the final "**": this segment and all after it, or none */
};

struct compiled_route {
    struct segment segs[MAX_SEGMENTS];
    size_t n_segs; /* 0 for the pattern "/" */
};

struct route_table {
    const struct wsg_config *cfg;  /* borrowed */
    struct compiled_route *routes; /* owned, cfg->n_routes entries */
    size_t n_routes;
};

/* A decoded request segment: an offset into the decode buffer. */
struct req_segment {
    size_t off;
    size_t len;
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t err_len,
                                                          const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static bool is_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* RFC 3986 pchar without '%': pattern literals are compared with the decoded
 * request, so an escape in the pattern would only confuse. Bytes >= 0x80
 * (UTF-8 from the JSON file) match their percent-encoded form. */
static bool is_literal_char(unsigned char c)
{
    return is_name_char(c) || c >= 0x80 || (c && strchr("-.~!$&'()*+,;=:@", c));
}

static bool is_query_name_char(unsigned char c)
{
    return is_name_char(c) || c == '-' || c == '.' || c == '~';
}

static bool is_claim_char(unsigned char c)
{
    return is_name_char(c) || c == '-' || c == '.' || c == ':';
}

bool route_value_is_safe(const char *value, size_t len)
{
    if (!value || len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (value[i] == '+' || value[i] == '#' || value[i] == '/' || value[i] == '\0')
            return false;
    return true;
}

/* ------------------------------------------------------------ patterns */

/* Splits and checks a pattern; segments point into `pattern`. */
static int parse_pattern(const char *pattern, struct segment *segs, size_t *n_segs, char *err,
                         size_t err_len)
{
    *n_segs = 0;
    if (!pattern || pattern[0] != '/') {
        set_err(err, err_len, "a path pattern must start with \"/\"");
        return -1;
    }
    size_t len = strnlen(pattern, MAX_PATTERN_BYTES + 1);
    if (len > MAX_PATTERN_BYTES) {
        set_err(err, err_len, "a path pattern may not be longer than %d bytes", MAX_PATTERN_BYTES);
        return -1;
    }
    if (len == 1)
        return 0; /* "/" */

    size_t n_captures = 0;
    const char *p = pattern + 1;
    for (;;) {
        size_t slen = strcspn(p, "/");
        const char *end = p + slen;
        if (slen == 0) {
            if (*end)
                set_err(err, err_len, "empty segment (\"//\") in path pattern \"%s\"", pattern);
            else
                set_err(err, err_len,
                        "a path pattern may not end with \"/\" (\"%.*s\" also matches \"%s\")",
                        (int)(len - 1), pattern, pattern);
            return -1;
        }
        if (*n_segs == MAX_SEGMENTS) {
            set_err(err, err_len, "a path pattern may have at most %d segments", MAX_SEGMENTS);
            return -1;
        }
        struct segment *sg = &segs[*n_segs];
        bool has_open = memchr(p, '{', slen) != NULL, has_close = memchr(p, '}', slen) != NULL;
        if (p[0] == '{' && !has_close) {
            set_err(err, err_len, "unclosed \"{\" in segment \"%.*s\"", (int)slen, p);
            return -1;
        }
        if ((has_open || has_close) && (p[0] != '{' || p[slen - 1] != '}' ||
                                        memchr(p + 1, '{', slen - 1) || memchr(p, '}', slen - 1))) {
            set_err(err, err_len,
                    "segment \"%.*s\" mixes text and a capture: a capture is a whole segment "
                    "like \"/{name}\"",
                    (int)slen, p);
            return -1;
        }
        sg->rest = false;
        if (slen == 2 && memcmp(p, "**", 2) == 0) {
            /* "**" takes every path below its prefix (websockify's one
             * listener for every path); anywhere but last it would make
             * the route table ambiguous. */
            if (*end) {
                set_err(err, err_len, "\"**\" may only be the last segment of a path pattern");
                return -1;
            }
            sg->capture = false;
            sg->rest = true;
            sg->s = p;
            sg->len = slen;
        } else if (p[0] == '{') {
            sg->capture = true;
            sg->s = p + 1;
            sg->len = slen - 2;
            if (sg->len == 0) {
                set_err(err, err_len, "empty capture \"{}\": name it, like \"{device}\"");
                return -1;
            }
            for (size_t i = 0; i < sg->len; i++) {
                if (!is_name_char((unsigned char)sg->s[i])) {
                    set_err(err, err_len,
                            "capture name \"%.*s\" may hold only A-Z, a-z, 0-9 and \"_\"",
                            (int)sg->len, sg->s);
                    return -1;
                }
            }
            for (size_t k = 0; k < *n_segs; k++) {
                if (segs[k].capture && segs[k].len == sg->len &&
                    memcmp(segs[k].s, sg->s, sg->len) == 0) {
                    set_err(err, err_len, "capture {%.*s} appears twice", (int)sg->len, sg->s);
                    return -1;
                }
            }
            if (++n_captures > ROUTE_MAX_CAPTURES) {
                set_err(err, err_len, "a path pattern may have at most %d captures",
                        ROUTE_MAX_CAPTURES);
                return -1;
            }
        } else {
            sg->capture = false;
            sg->s = p;
            sg->len = slen;
            for (size_t i = 0; i < slen; i++) {
                unsigned char c = (unsigned char)p[i];
                if (is_literal_char(c))
                    continue;
                if (c > 0x20 && c < 0x7f)
                    set_err(err, err_len, "\"%c\" is not allowed in a path pattern", c);
                else
                    set_err(err, err_len, "byte 0x%02x is not allowed in a path pattern", c);
                return -1;
            }
        }
        (*n_segs)++;
        if (!*end)
            return 0;
        p = end + 1;
    }
}

int route_pattern_validate(const char *pattern, char *err, size_t err_len)
{
    struct segment segs[MAX_SEGMENTS];
    size_t n;
    return parse_pattern(pattern, segs, &n, err, err_len);
}

/* ----------------------------------------------------------- templates */

enum ph_kind { PH_CAPTURE, PH_QUERY, PH_JWT, PH_AUTH, PH_MSG };

/* Finds the placeholder opening at tmpl[i] == '{': its text is
 * tmpl[i+1 .. i+1+*len). A '{' inside counts as unclosed: "{{" is not an
 * escape, and nesting would make the scan ambiguous. */
static int find_placeholder(const char *tmpl, size_t i, size_t *len, char *err, size_t err_len)
{
    size_t n = strcspn(tmpl + i + 1, "{}");
    if (tmpl[i + 1 + n] != '}') {
        set_err(err, err_len, "unclosed \"{\" at offset %zu", i);
        return -1;
    }
    if (n > MAX_PLACEHOLDER_BYTES) {
        set_err(err, err_len, "placeholder at offset %zu is longer than %d bytes", i,
                MAX_PLACEHOLDER_BYTES);
        return -1;
    }
    *len = n;
    return 0;
}

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

/* Sorts a placeholder's text into its kind and checks its own syntax. */
static int classify(const char *s, size_t len, enum ph_kind *kind, char *err, size_t err_len)
{
    if (len == 0) {
        set_err(err, err_len, "empty placeholder {}");
        return -1;
    }
    if (has_prefix(s, len, "query.")) {
        *kind = PH_QUERY;
        if (len == 6) {
            set_err(err, err_len, "{query.} needs a parameter name, like {query.token}");
            return -1;
        }
        for (size_t i = 6; i < len; i++) {
            if (!is_query_name_char((unsigned char)s[i])) {
                set_err(err, err_len,
                        "{%.*s}: a query parameter name may hold only A-Z, a-z, 0-9 and \"_-.~\"",
                        (int)len, s);
                return -1;
            }
        }
        return 0;
    }
    bool jwt = has_prefix(s, len, "jwt.");
    if (jwt || has_prefix(s, len, "auth.")) {
        size_t skip = jwt ? 4 : 5;
        *kind = jwt ? PH_JWT : PH_AUTH;
        if (len == skip) {
            set_err(err, err_len, "{%.*s} needs a claim name, like {%.*ssub}", (int)len, s,
                    (int)len, s);
            return -1;
        }
        for (size_t i = skip; i < len; i++) {
            if (!is_claim_char((unsigned char)s[i])) {
                set_err(err, err_len,
                        "{%.*s}: a claim name may hold only A-Z, a-z, 0-9 and \"_-.:\"", (int)len,
                        s);
                return -1;
            }
        }
        return 0;
    }
    if (has_prefix(s, len, "msg.")) {
        *kind = PH_MSG;
        if (len == 4 || s[4] != '/') {
            set_err(err, err_len,
                    "{%.*s}: the JSON pointer must start with \"/\", like {msg./kind}", (int)len,
                    s);
            return -1;
        }
        for (size_t i = 5; i < len; i++) {
            if (s[i] == '~' && (i + 1 == len || (s[i + 1] != '0' && s[i + 1] != '1'))) {
                set_err(err, err_len, "{%.*s}: in a JSON pointer \"~\" must be followed by 0 or 1",
                        (int)len, s);
                return -1;
            }
        }
        return 0;
    }
    *kind = PH_CAPTURE;
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char((unsigned char)s[i])) {
            set_err(err, err_len,
                    "unknown placeholder {%.*s} (expected a capture of the path, "
                    "{query.<name>}, {jwt.<claim>}, {auth.<claim>} or {msg./pointer})",
                    (int)len, s);
            return -1;
        }
    }
    return 0;
}

static bool has_capture(const struct segment *segs, size_t n, const char *name, size_t len)
{
    for (size_t k = 0; k < n; k++)
        if (segs[k].capture && segs[k].len == len && memcmp(segs[k].s, name, len) == 0)
            return true;
    return false;
}

static void unknown_capture(const char *name, size_t len, const char *path,
                            const struct segment *segs, size_t n, char *err, size_t err_len)
{
    char list[256] = "";
    size_t used = 0;
    for (size_t k = 0; k < n && used < sizeof(list); k++) {
        if (!segs[k].capture)
            continue;
        int w = snprintf(list + used, sizeof(list) - used, "%s%.*s", used ? ", " : "",
                         (int)segs[k].len, segs[k].s);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (used)
        set_err(err, err_len, "unknown placeholder {%.*s}: the path \"%s\" captures: %s", (int)len,
                name, path, list);
    else
        set_err(err, err_len, "unknown placeholder {%.*s}: the path \"%s\" captures nothing",
                (int)len, name, path ? path : "");
}

int route_template_validate(const char *tmpl, const char *path_pattern, int allowed_kinds,
                            char *err, size_t err_len)
{
    struct segment segs[MAX_SEGMENTS];
    size_t n_segs = 0;
    if (!tmpl) {
        set_err(err, err_len, "missing template");
        return -1;
    }
    if (path_pattern && parse_pattern(path_pattern, segs, &n_segs, err, err_len) != 0)
        return -1;

    for (size_t i = 0; tmpl[i];) {
        if (tmpl[i] == '}') {
            set_err(err, err_len, "\"}\" without \"{\" at offset %zu", i);
            return -1;
        }
        if (tmpl[i] != '{') {
            i++;
            continue;
        }
        size_t len;
        enum ph_kind kind;
        if (find_placeholder(tmpl, i, &len, err, err_len) != 0)
            return -1;
        const char *s = tmpl + i + 1;
        if (classify(s, len, &kind, err, err_len) != 0)
            return -1;
        int need = kind == PH_QUERY  ? ROUTE_TMPL_QUERY
                   : kind == PH_JWT  ? ROUTE_TMPL_JWT
                   : kind == PH_AUTH ? ROUTE_TMPL_AUTH
                   : kind == PH_MSG  ? ROUTE_TMPL_MSG
                                     : 0;
        if (kind == PH_CAPTURE && !has_capture(segs, n_segs, s, len)) {
            unknown_capture(s, len, path_pattern, segs, n_segs, err, err_len);
            return -1;
        }
        if (need && !(allowed_kinds & need)) {
            set_err(err, err_len, "{%.*s} is not allowed here", (int)len, s);
            return -1;
        }
        i += len + 2;
    }
    return 0;
}

/* ---------------------------------------------------- percent-decoding */

#define DECODE_BAD (-1)
#define DECODE_FULL (-2)

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes src[0..len) into dst (dst_cap bytes, not NUL-terminated).
 * '+' stays '+': in a path it is a literal plus, and in a query we would
 * rather refuse it than guess that the client meant a space. Returns the
 * decoded length, DECODE_BAD for a malformed escape, DECODE_FULL if dst is
 * too small. */
static ptrdiff_t pct_decode(const char *src, size_t len, char *dst, size_t dst_cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            if (len - i < 3)
                return DECODE_BAD;
            int h = hex_value((unsigned char)src[i + 1]), l = hex_value((unsigned char)src[i + 2]);
            if (h < 0 || l < 0)
                return DECODE_BAD;
            c = (unsigned char)(h << 4 | l);
            i += 2;
        }
        if (o == dst_cap)
            return DECODE_FULL;
        dst[o++] = (char)c;
    }
    return (ptrdiff_t)o;
}

/* -------------------------------------------------------------- matching */

struct route_table *route_table_create(const struct wsg_config *cfg)
{
    if (!cfg || (cfg->n_routes && !cfg->routes))
        return NULL;
    struct route_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cfg = cfg;
    t->n_routes = cfg->n_routes;
    t->routes = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof(*t->routes));
    if (!t->routes) {
        free(t);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_routes; i++) {
        struct compiled_route *cr = &t->routes[i];
        if (parse_pattern(cfg->routes[i].path, cr->segs, &cr->n_segs, NULL, 0) != 0) {
            route_table_destroy(t);
            return NULL;
        }
    }
    return t;
}

void route_table_destroy(struct route_table *table)
{
    if (!table)
        return;
    free(table->routes);
    free(table);
}

void route_match_clear(struct route_match *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->captures && i < m->n_captures; i++) {
        free(m->captures[i].name);
        free(m->captures[i].value);
    }
    free(m->captures);
    free(m->query);
    memset(m, 0, sizeof(*m));
}

/* Echoes the request path in a reason, bounded and printable only. */
static void reason_no_route(char *reason, size_t reason_len, const char *path, size_t len)
{
    char shown[MAX_REASON_PATH + 4];
    size_t n = len < MAX_REASON_PATH ? len : MAX_REASON_PATH;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        shown[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (n < len)
        memcpy(shown + n, "...", 4);
    else
        shown[n] = '\0';
    set_err(reason, reason_len, "no route for %s", shown);
}

static char *dup_bytes(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* Literal segments only: does the request have this route's shape? A single
 * trailing slash in the request is forgiven ("/echo/" matches "/echo"), as
 * clients and proxies add one; anything longer must match segment by segment,
 * except below a final "**", which takes whatever follows its prefix. */
static bool shape_matches(const struct compiled_route *cr, const char *dec,
                          const struct req_segment *req, size_t n_req)
{
    size_t n = cr->n_segs;
    if (n > 0 && cr->segs[n - 1].rest) {
        n--;
        if (n_req < n)
            return false;
    } else if (!(n_req == n || (n_req == n + 1 && req[n].len == 0))) {
        return false;
    }
    for (size_t k = 0; k < n; k++) {
        const struct segment *sg = &cr->segs[k];
        if (!sg->capture &&
            (req[k].len != sg->len || memcmp(dec + req[k].off, sg->s, sg->len) != 0))
            return false;
    }
    return true;
}

enum route_status route_table_match(const struct route_table *table, const char *uri,
                                    struct route_match *out, char *reason, size_t reason_len)
{
    memset(out, 0, sizeof(*out));
    if (!table || !uri) {
        set_err(reason, reason_len, "no route");
        return ROUTE_NOT_FOUND;
    }
    size_t uri_len = strnlen(uri, ROUTE_MAX_URI_BYTES + 1);
    if (uri_len > ROUTE_MAX_URI_BYTES) {
        set_err(reason, reason_len, "request URI too long");
        return ROUTE_BAD_REQUEST;
    }
    /* A fragment is never part of the target; the query plays no part in matching. */
    size_t path_len = strcspn(uri, "?#");
    const char *query = NULL;
    size_t query_len = 0;
    if (uri[path_len] == '?') {
        query = uri + path_len + 1;
        query_len = strcspn(query, "#");
    }
    if (path_len == 0 || uri[0] != '/') {
        set_err(reason, reason_len, "request path must start with \"/\"");
        return ROUTE_BAD_REQUEST;
    }

    /* Split after the leading '/': "/" is one empty segment, "/a/" is "a" and "". */
    struct req_segment req[MAX_SEGMENTS + 1];
    size_t n_req = 1;
    for (size_t i = 1; i < path_len; i++)
        if (uri[i] == '/')
            n_req++;
    if (n_req > MAX_SEGMENTS + 1) {
        reason_no_route(reason, reason_len, uri, path_len);
        return ROUTE_NOT_FOUND; /* longer than any pattern can be */
    }
    char dec[ROUTE_MAX_URI_BYTES];
    size_t used = 0, k = 0;
    for (size_t start = 1; k < n_req; k++) {
        size_t slen = strcspn(uri + start, "/?#"); /* ends at path_len at the latest */
        ptrdiff_t d = pct_decode(uri + start, slen, dec + used, sizeof(dec) - used);
        if (d < 0) {
            set_err(reason, reason_len, "bad percent-encoding in the request path");
            return ROUTE_BAD_REQUEST;
        }
        req[k].off = used;
        req[k].len = (size_t)d;
        used += (size_t)d;
        start += slen + 1;
    }

    for (size_t r = 0; r < table->n_routes; r++) {
        const struct compiled_route *cr = &table->routes[r];
        if (!shape_matches(cr, dec, req, n_req))
            continue;
        /* This route is the match. A refused capture is a 400 rather than a
         * reason to try the next route: a later, wider route (say "/{any}/x"
         * after "/devices/{device}") would otherwise receive a request meant
         * for the narrower one. */
        size_t n_caps = 0;
        for (size_t s = 0; s < cr->n_segs; s++)
            n_caps += cr->segs[s].capture;
        if (n_caps && !(out->captures = calloc(n_caps, sizeof(*out->captures))))
            goto oom;
        for (size_t s = 0; s < cr->n_segs; s++) {
            const struct segment *sg = &cr->segs[s];
            if (!sg->capture)
                continue;
            if (!route_value_is_safe(dec + req[s].off, req[s].len)) {
                set_err(reason, reason_len, "capture \"%.*s\" " REFUSED_CHARS, (int)sg->len, sg->s);
                route_match_clear(out);
                return ROUTE_BAD_REQUEST;
            }
            struct route_capture *c = &out->captures[out->n_captures++];
            c->name = dup_bytes(sg->s, sg->len);
            c->value = dup_bytes(dec + req[s].off, req[s].len);
            if (!c->name || !c->value)
                goto oom;
        }
        if (query && !(out->query = dup_bytes(query, query_len)))
            goto oom;
        out->route_index = r;
        out->route = &table->cfg->routes[r];
        return ROUTE_OK;
    }
    reason_no_route(reason, reason_len, uri, path_len);
    return ROUTE_NOT_FOUND;

oom:
    /* No status fits better; the handshake is refused either way. */
    route_match_clear(out);
    set_err(reason, reason_len, "out of memory");
    return ROUTE_BAD_REQUEST;
}

/* ------------------------------------------------------------ expansion */

static int append(char *out, size_t out_len, size_t *used, const char *s, size_t len)
{
    if (len >= out_len - *used)
        return -1;
    memcpy(out + *used, s, len);
    *used += len;
    return 0;
}

/* Decodes the first query parameter called name[0..len) from the raw query
 * straight into out + *used. Returns 0, 1 if absent, -1 with err. */
static int query_param(const char *query, const char *name, size_t len, char *out, size_t out_len,
                       size_t *used, char *err, size_t err_len)
{
    for (const char *p = query; p && *p;) {
        size_t pair = strcspn(p, "&");
        size_t klen = strcspn(p, "=&");
        char key[MAX_PLACEHOLDER_BYTES];
        ptrdiff_t kd = pct_decode(p, klen, key, sizeof(key));
        if (kd >= 0 && (size_t)kd == len && memcmp(key, name, len) == 0) {
            const char *v = klen < pair ? p + klen + 1 : p + pair;
            size_t vlen = (size_t)(p + pair - v);
            /* Leave room for the NUL the caller adds. */
            ptrdiff_t d = pct_decode(v, vlen, out + *used, out_len - *used - 1);
            if (d == DECODE_BAD) {
                set_err(err, err_len, "bad percent-encoding in query parameter \"%.*s\"", (int)len,
                        name);
                return -1;
            }
            if (d == DECODE_FULL) {
                set_err(err, err_len, "expansion is longer than %zu bytes", out_len - 1);
                return -1;
            }
            *used += (size_t)d;
            return 0;
        }
        p += pair;
        if (*p == '&')
            p++;
    }
    return 1;
}

int route_query_param(const struct route_match *m, const char *name, char *out, size_t out_len)
{
    size_t used = 0;
    char err[8];
    if (!out || out_len == 0)
        return -1;
    out[0] = '\0';
    int r = query_param(m->query, name, strlen(name), out, out_len, &used, err, sizeof(err));
    if (r == 0)
        out[used] = '\0';
    return r;
}

int route_expand(const char *tmpl, const struct route_match *m, route_lookup_fn lookup,
                 void *lookup_ctx, char *out, size_t out_len, char *err, size_t err_len)
{
    if (!out || out_len == 0) {
        set_err(err, err_len, "no room for the expansion");
        return -1;
    }
    out[0] = '\0';
    if (!tmpl) {
        set_err(err, err_len, "missing template");
        return -1;
    }
    if (out_len - 1 > INT_MAX)
        out_len = (size_t)INT_MAX + 1; /* the length must fit the int we return */
    size_t used = 0;
    for (size_t i = 0; tmpl[i];) {
        if (tmpl[i] == '}') {
            set_err(err, err_len, "\"}\" without \"{\" at offset %zu", i);
            goto fail;
        }
        if (tmpl[i] != '{') {
            size_t n = strcspn(tmpl + i, "{}");
            if (append(out, out_len, &used, tmpl + i, n) != 0)
                goto too_long;
            i += n;
            continue;
        }
        size_t len;
        enum ph_kind kind;
        if (find_placeholder(tmpl, i, &len, err, err_len) != 0 ||
            classify(tmpl + i + 1, len, &kind, err, err_len) != 0)
            goto fail;
        const char *s = tmpl + i + 1;
        size_t start = used;

        if (kind == PH_QUERY) {
            int rc =
                m ? query_param(m->query, s + 6, len - 6, out, out_len, &used, err, err_len) : 1;
            if (rc < 0)
                goto fail;
            if (rc > 0)
                goto missing;
        } else {
            const char *v = NULL;
            if (kind == PH_CAPTURE) {
                size_t n = m && m->captures ? m->n_captures : 0;
                for (size_t c = 0; c < n && !v; c++)
                    if (m->captures[c].name && strlen(m->captures[c].name) == len &&
                        memcmp(m->captures[c].name, s, len) == 0)
                        v = m->captures[c].value;
            } else if (lookup) {
                char name[MAX_PLACEHOLDER_BYTES + 1];
                memcpy(name, s, len);
                name[len] = '\0';
                v = lookup(lookup_ctx, name);
            }
            if (!v)
                goto missing;
            if (append(out, out_len, &used, v, strlen(v)) != 0)
                goto too_long;
        }
        /* Checked after decoding, on exactly the bytes that go out. */
        if (!route_value_is_safe(out + start, used - start)) {
            set_err(err, err_len, "value of {%.*s} " REFUSED_CHARS, (int)len, s);
            goto fail;
        }
        i += len + 2;
        continue;

    missing:
        set_err(err, err_len, "missing value for {%.*s}", (int)len, s);
        goto fail;
    }
    out[used] = '\0';
    return (int)used;

too_long:
    set_err(err, err_len, "expansion is longer than %zu bytes", out_len - 1);
fail:
    out[0] = '\0';
    return -1;
}

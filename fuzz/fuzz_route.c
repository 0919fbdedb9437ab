/* fuzz_route.c - path patterns, request matching with captures, template
 * expansion and query parameters (src/core/route.c).
 *
 * Input: byte 0: number of routes (1..4) and the expansion buffer size;
 * then one line per route pattern, a line with the request URI, a line with
 * a template, a line with the value the lookup gives {jwt.*}/{msg.*}
 * ("-": none), and a line with a query parameter name.
 * Properties:
 *  - route_table_create succeeds iff every pattern passes
 *    route_pattern_validate;
 *  - route_table_match agrees with a naive reference (status, route index,
 *    a last "**" taking the rest of the path,
 *    every capture's name and decoded value); a capture never holds
 *    + # / NUL and is never empty; reasons are one printable line;
 *  - route_expand of a template valid for the matched route keeps the
 *    template's level structure: same number of '/' levels, and '+'/'#'
 *    levels exactly where the template has them (no capture injection);
 *    the result length is what it returns and fits the buffer;
 *  - route_query_param's value fits its buffer. */
#include "fuzz_util.h"

#include "config.h"
#include "route.h"

#define MAX_URI 8192
#define MAX_SEGS 32

static int hexv(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Strict percent-decoding; -1 on a bad escape. */
static long ref_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexv((unsigned char)s[i + 1]), l = hexv((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return (long)o;
}

struct ref_seg {
    char *s;
    size_t len;
};

struct ref_result {
    enum route_status st;
    size_t route;
    size_t n_caps;
    char *cap_names[ROUTE_MAX_CAPTURES];
    char *cap_values[ROUTE_MAX_CAPTURES];
};

/* Pattern segments: "/" has none. */
static size_t pattern_segs(const char *pat, struct ref_seg *segs)
{
    size_t n = 0;
    if (strcmp(pat, "/") == 0)
        return 0;
    const char *p = pat + 1;
    for (;;) {
        size_t l = strcspn(p, "/");
        segs[n].s = (char *)p;
        segs[n++].len = l;
        if (!p[l] || n == MAX_SEGS)
            return n;
        p += l + 1;
    }
}

static bool is_capture(const struct ref_seg *s) { return s->len >= 2 && s->s[0] == '{'; }

static void reference(char **patterns, size_t n_routes, const char *uri, struct ref_result *res)
{
    memset(res, 0, sizeof *res);
    size_t ulen = strlen(uri);
    if (ulen > MAX_URI) {
        res->st = ROUTE_BAD_REQUEST;
        return;
    }
    size_t plen = strcspn(uri, "?#");
    if (plen == 0 || uri[0] != '/') {
        res->st = ROUTE_BAD_REQUEST;
        return;
    }
    size_t n_req = 1;
    for (size_t i = 1; i < plen; i++)
        n_req += uri[i] == '/';
    if (n_req > MAX_SEGS + 1) {
        res->st = ROUTE_NOT_FOUND;
        return;
    }
    static char dec[MAX_SEGS + 1][MAX_URI];
    size_t dlen[MAX_SEGS + 1];
    const char *p = uri + 1;
    for (size_t k = 0; k < n_req; k++) {
        size_t l = 0;
        while (p + l < uri + plen && p[l] != '/')
            l++;
        long d = ref_decode(p, l, dec[k]);
        if (d < 0) {
            res->st = ROUTE_BAD_REQUEST;
            return;
        }
        dlen[k] = (size_t)d;
        p += l + 1;
    }
    for (size_t r = 0; r < n_routes; r++) {
        struct ref_seg segs[MAX_SEGS];
        size_t n = pattern_segs(patterns[r], segs);
        /* A last "**" takes whatever follows the segments before it. */
        bool rest = n > 0 && segs[n - 1].len == 2 && memcmp(segs[n - 1].s, "**", 2) == 0;
        if (rest) {
            if (n_req < --n)
                continue;
        } else if (!(n_req == n || (n_req == n + 1 && dlen[n] == 0))) {
            continue;
        }
        bool ok = true;
        for (size_t k = 0; k < n && ok; k++)
            if (!is_capture(&segs[k]))
                ok = dlen[k] == segs[k].len && memcmp(dec[k], segs[k].s, segs[k].len) == 0;
        if (!ok)
            continue;
        res->route = r;
        for (size_t k = 0; k < n; k++) {
            if (!is_capture(&segs[k]))
                continue;
            bool safe = dlen[k] > 0;
            for (size_t i = 0; i < dlen[k]; i++)
                if (strchr("+#/", dec[k][i]) || dec[k][i] == '\0')
                    safe = false;
            if (!safe) {
                for (size_t c = 0; c < res->n_caps; c++) {
                    free(res->cap_names[c]);
                    free(res->cap_values[c]);
                }
                res->n_caps = 0;
                res->st = ROUTE_BAD_REQUEST;
                return;
            }
            res->cap_names[res->n_caps] = strndup(segs[k].s + 1, segs[k].len - 2);
            res->cap_values[res->n_caps++] = strndup(dec[k], dlen[k]);
        }
        res->st = ROUTE_OK;
        return;
    }
    res->st = ROUTE_NOT_FOUND;
}

static const char *lookup_value;

static const char *lookup(void *ctx, const char *name)
{
    FUZZ_CHECK(strncmp(name, "jwt.", 4) == 0 || strncmp(name, "auth.", 5) == 0 ||
                   strncmp(name, "msg.", 4) == 0,
               "lookup asked for \"%s\"", name);
    return lookup_value;
}

/* The template with each {placeholder} as "x" (what config.c checks). */
static char *sample(const char *tmpl)
{
    char *out = calloc(strlen(tmpl) + 1, 1), *o = out;
    for (const char *p = tmpl; *p; p++) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (close) {
                *o++ = 'x';
                p = close;
                continue;
            }
        }
        *o++ = *p;
    }
    return out;
}

static void check_structure(const char *tmpl, const char *out)
{
    char *s = sample(tmpl);
    const char *a = s, *b = out;
    for (;;) {
        size_t al = strcspn(a, "/"), bl = strcspn(b, "/");
        bool aw = al == 1 && (a[0] == '+' || a[0] == '#');
        bool bw = bl == 1 && (b[0] == '+' || b[0] == '#');
        FUZZ_CHECK(aw == bw && (!aw || a[0] == b[0]),
                   "expansion \"%s\" of template \"%s\" changed the wildcard levels", out, tmpl);
        FUZZ_CHECK(!a[al] == !b[bl], "expansion \"%s\" of template \"%s\" changed the levels", out,
                   tmpl);
        if (!a[al])
            break;
        a += al + 1;
        b += bl + 1;
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    uint8_t b0 = fz_byte(&z);
    size_t n_routes = 1 + b0 % 4;
    size_t out_len = (b0 >> 2) % 2 ? 1 + (b0 >> 3) : 512;

    struct wsg_route routes[4];
    memset(routes, 0, sizeof routes);
    char *patterns[4];
    bool all_valid = true;
    for (size_t i = 0; i < n_routes; i++) {
        patterns[i] = fz_line(&z);
        routes[i].path = patterns[i];
        routes[i].name = patterns[i];
        char err[128];
        if (route_pattern_validate(patterns[i], err, sizeof err) != 0)
            all_valid = false;
    }
    char *uri = fz_line(&z), *tmpl = fz_line(&z), *val = fz_line(&z), *qname = fz_line(&z);
    lookup_value = strcmp(val, "-") == 0 ? NULL : val;

    struct wsg_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.routes = routes;
    cfg.n_routes = n_routes;
    struct route_table *t = route_table_create(&cfg);
    FUZZ_CHECK(!t == !all_valid, "route_table_create %s but patterns valid=%d",
               t ? "succeeded" : "failed", all_valid);

    char *out = malloc(out_len); /* exact size: ASan sees any overflow */
    char err[256];
    if (t) {
        struct route_match m;
        char reason[256];
        enum route_status st = route_table_match(t, uri, &m, reason, sizeof reason);
        struct ref_result ref;
        reference(patterns, n_routes, uri, &ref);
        FUZZ_CHECK(st == ref.st, "match(\"%s\") = %d, reference %d", uri, st, ref.st);
        if (st != ROUTE_OK)
            FUZZ_CHECK(fz_is_one_line(reason), "reason is not one printable line: %s", reason);
        if (st == ROUTE_OK) {
            FUZZ_CHECK(m.route_index == ref.route && m.route == &routes[ref.route],
                       "matched route %zu, reference %zu", m.route_index, ref.route);
            FUZZ_CHECK(m.n_captures == ref.n_caps, "%zu captures, reference %zu", m.n_captures,
                       ref.n_caps);
            for (size_t c = 0; c < m.n_captures; c++) {
                const char *v = m.captures[c].value;
                FUZZ_CHECK(strcmp(m.captures[c].name, ref.cap_names[c]) == 0, "capture name");
                FUZZ_CHECK(strcmp(v, ref.cap_values[c]) == 0,
                           "capture %s = \"%s\", reference \"%s\"", m.captures[c].name, v,
                           ref.cap_values[c]);
                FUZZ_CHECK(*v && !strpbrk(v, "+#/"), "unsafe capture \"%s\"", v);
            }
            int rc = route_expand(tmpl, &m, lookup, NULL, out, out_len, err, sizeof err);
            if (rc >= 0) {
                FUZZ_CHECK((size_t)rc < out_len && strlen(out) == (size_t)rc,
                           "route_expand returned %d for \"%s\" (buffer %zu)", rc, out, out_len);
                if (route_template_validate(tmpl, patterns[m.route_index],
                                            ROUTE_TMPL_QUERY | ROUTE_TMPL_JWT | ROUTE_TMPL_MSG,
                                            NULL, 0) == 0)
                    check_structure(tmpl, out);
            } else {
                FUZZ_CHECK(out[0] == '\0', "failed expansion left output");
            }
            int q = route_query_param(&m, qname, out, out_len);
            FUZZ_CHECK(q >= -1 && q <= 1, "route_query_param %d", q);
            if (q == 0)
                FUZZ_CHECK(strlen(out) < out_len, "query value overflow");
            route_match_clear(&m);
        }
        for (size_t c = 0; c < ref.n_caps; c++) {
            free(ref.cap_names[c]);
            free(ref.cap_values[c]);
        }
        route_table_destroy(t);
    }
    /* Templates on their own: validation never crashes; expansion without a
     * match needs lookups only. */
    (void)route_template_validate(tmpl, patterns[0], ROUTE_TMPL_QUERY | ROUTE_TMPL_JWT, err,
                                  sizeof err);
    (void)route_template_validate(tmpl, NULL, ROUTE_TMPL_MSG, err, sizeof err);
    int rc = route_expand(tmpl, NULL, lookup, NULL, out, out_len, err, sizeof err);
    if (rc >= 0 &&
        route_template_validate(tmpl, NULL, ROUTE_TMPL_QUERY | ROUTE_TMPL_JWT | ROUTE_TMPL_MSG,
                                NULL, 0) == 0)
        check_structure(tmpl, out);
    FUZZ_CHECK(route_value_is_safe(val, strlen(val)) == (*val && !strpbrk(val, "+#/")),
               "route_value_is_safe");

    free(out);
    for (size_t i = 0; i < n_routes; i++)
        free(patterns[i]);
    free(uri);
    free(tmpl);
    free(val);
    free(qname);
    return 0;
}

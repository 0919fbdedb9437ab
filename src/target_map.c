/* target_map.c - load a websockify-style token file (a JSON object: key ->
 * target(s)) into an immutable, sorted snapshot for fast per-connection
 * lookup. Errors are reported like the config's, with the file's JSON paths;
 * watching the file and swapping snapshots is left to map_watch.c. */
#define _GNU_SOURCE /* vasprintf, strndup */
#include "target_map.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_CAP 256   /* longest JSON path shown; longer ones end in "..." */
#define GOT_CAP 80     /* longest value echoed after "got"; longer ones end in "..." */
#define MAX_ERRORS 100 /* listed; past that they are only counted (as config.c does) */
#define MAX_KEY_BYTES 256

/* One key of the map and its targets, in the order they are tried. */
struct entry {
    char *key;                  /* owned */
    struct wsg_target *targets; /* owned, as is each host */
    size_t n_targets;
};

struct target_map {
    struct entry *entries; /* owned; sorted by key (strcmp) for binary search */
    size_t n;
};

/* ------------------------------------------------------------------ memory */

/* Out of memory while loading: nothing sensible is left to do. */
static void oom(void)
{
    fputs("wsgate: out of memory\n", stderr);
    abort();
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        oom();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        oom();
    return p;
}

static __attribute__((format(printf, 1, 0))) char *xvasprintf(const char *fmt, va_list ap)
{
    char *s;
    if (vasprintf(&s, fmt, ap) < 0)
        oom();
    return s;
}

static __attribute__((format(printf, 1, 2))) char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}

/* ------------------------------------------------------- the error collector */

/* State of one load: where we are in the JSON tree and what went wrong so far. */
struct loader {
    const char *source; /* the file name used in messages */
    struct config_errors *errs;
    size_t first_error;  /* errs->count when this load started */
    size_t n_unlisted;   /* errors past MAX_ERRORS */
    char path[PATH_CAP]; /* JSON path of the value being checked, e.g. "vm1[1].host" */
    size_t path_len;
};

static void push_line(struct config_errors *errs, char *line)
{
    char **lines = realloc(errs->lines, (errs->count + 1) * sizeof *lines);
    if (!lines)
        oom();
    errs->lines = lines;
    errs->lines[errs->count++] = line;
}

/* Adds "<source>: <path>: <message>" (no path part at the top level). */
static __attribute__((format(printf, 2, 3))) void add_error(struct loader *ld, const char *fmt, ...)
{
    /* A systematic mistake in a 100,000-key file must not flood the log. */
    if (ld->errs->count - ld->first_error >= MAX_ERRORS) {
        ld->n_unlisted++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    char *line = ld->path_len ? xasprintf("%s: %s: %s", ld->source, ld->path, msg)
                              : xasprintf("%s: %s", ld->source, msg);
    free(msg);
    push_line(ld->errs, line);
}

/* "<expected>, got <v as compact JSON>", the value cut on a UTF-8 boundary. */
static void err_value(struct loader *ld, const json_t *v, const char *expected)
{
    char got[GOT_CAP];
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        oom();
    size_t n = strlen(s);
    if (n >= sizeof got) {
        n = sizeof got - 4;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        memcpy(got, s, n);
        memcpy(got + n, "...", 4);
    } else {
        memcpy(got, s, n + 1);
    }
    free(s);
    add_error(ld, "%s, got %s", expected, got);
}

/* ------------------------------------------------------------ the JSON path */

static __attribute__((format(printf, 2, 3))) void path_append(struct loader *ld, const char *fmt,
                                                              ...)
{
    size_t room = sizeof ld->path - ld->path_len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ld->path + ld->path_len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        ld->path_len = sizeof ld->path - 1;
        memcpy(ld->path + ld->path_len - 3, "...", 3);
    } else {
        ld->path_len += (size_t)n;
    }
}

static bool is_plain_key(const char *key)
{
    static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    return key[0] != '\0' && strspn(key, plain) == strlen(key);
}

/* Enters object member `key`; returns the mark to leave it with path_pop(). */
static size_t path_key(struct loader *ld, const char *key)
{
    size_t mark = ld->path_len;
    if (is_plain_key(key)) {
        path_append(ld, "%s%s", mark ? "." : "", key);
        return mark;
    }
    /* Odd keys ("my vm", "a.b") are quoted so the path stays readable. */
    json_t *s = json_string(key);
    char *quoted = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    path_append(ld, "[%s]", quoted ? quoted : "?");
    free(quoted);
    json_decref(s);
    return mark;
}

static size_t path_index(struct loader *ld, size_t i)
{
    size_t mark = ld->path_len;
    path_append(ld, "[%zu]", i);
    return mark;
}

static void path_pop(struct loader *ld, size_t mark)
{
    ld->path_len = mark;
    ld->path[mark] = '\0';
}

/* ------------------------------------------------------------ value syntax */

static const char map_expected[] = "expected an object mapping keys to targets";
static const char value_expected[] =
    "expected a target {\"host\", \"port\"}, \"host:port\" or a non-empty array of them";
static const char element_expected[] = "expected a target {\"host\", \"port\"} or \"host:port\"";
static const char host_expected[] = "expected a host name or address";
static const char port_expected[] = "expected an integer 1..65535";

/* A host name or address to connect to: no blanks, controls or '/' (as config.c). */
static bool host_is_valid(const char *h, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c == 0x7f || c == '/')
            return false;
    }
    return true;
}

/* 1..65535 written as 1 to 5 decimal digits and nothing else. */
static int parse_port(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
        return 0;
    long port = strtol(s, NULL, 10);
    return port >= 1 && port <= 65535 ? (int)port : 0;
}

/* The inside of "[...]": an IPv6 address, optionally with a "%zone" suffix. */
static bool v6_is_valid(const char *a, size_t n)
{
    char buf[INET6_ADDRSTRLEN + 1];
    const char *pct = memchr(a, '%', n);
    size_t addr_len = pct ? (size_t)(pct - a) : n;
    if (addr_len == 0 || addr_len >= sizeof buf)
        return false;
    if (pct && !host_is_valid(pct + 1, n - addr_len - 1))
        return false;
    memcpy(buf, a, addr_len);
    buf[addr_len] = '\0';
    unsigned char out[sizeof(struct in6_addr)];
    return inet_pton(AF_INET6, buf, out) == 1;
}

/* Splits "host:port" or "[v6addr]:port" into t (host without brackets, as
 * getaddrinfo wants it). Returns NULL, or what was expected instead. */
static const char *parse_host_port(const char *s, struct wsg_target *t)
{
    const char *host = s, *colon;
    size_t host_len;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return "expected \"[v6addr]:port\" with a closing ']'";
        host = s + 1;
        host_len = (size_t)(close - host);
        if (!v6_is_valid(host, host_len))
            return "expected \"[v6addr]:port\" with an IPv6 address in the brackets";
        if (close[1] != ':' && close[1] != '\0')
            return "expected \"[v6addr]:port\" (nothing between ']' and ':')";
        colon = close[1] ? close + 1 : NULL;
    } else {
        colon = strrchr(s, ':');
        host_len = colon ? (size_t)(colon - s) : strlen(s);
        if (!host_is_valid(host, host_len))
            return "expected \"host:port\" with a host name or address (no blanks, control "
                   "characters or '/')";
        if (memchr(host, ':', host_len))
            return "expected \"[v6addr]:port\": an IPv6 address needs brackets";
    }
    int port = colon ? parse_port(colon + 1) : 0;
    if (!port)
        return "expected \"host:port\" with a port 1..65535";
    t->host = xstrndup(host, host_len);
    t->port = port;
    return NULL;
}

/* ------------------------------------------------------------ one target */

/* Unknown keys are errors, as in the config: a typo must never be ignored. */
static void check_target_keys(struct loader *ld, json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "host") == 0 || strcmp(key, "port") == 0)
            continue;
        size_t mark = path_key(ld, key);
        add_error(ld, "unknown key (expected one of: host, port)");
        path_pop(ld, mark);
    }
}

static void get_host(struct loader *ld, json_t *obj, struct wsg_target *t)
{
    json_t *host = json_object_get(obj, "host");
    if (!host) {
        add_error(ld, "missing \"host\"");
        return;
    }
    const char *h = json_string_value(host);
    size_t mark = path_key(ld, "host");
    if (h && host_is_valid(h, strlen(h)))
        t->host = xstrndup(h, strlen(h));
    else
        err_value(ld, host, host_expected);
    path_pop(ld, mark);
}

static void get_port(struct loader *ld, json_t *obj, struct wsg_target *t)
{
    json_t *port = json_object_get(obj, "port");
    if (!port) {
        add_error(ld, "missing \"port\"");
        return;
    }
    json_int_t p = json_is_integer(port) ? json_integer_value(port) : 0;
    if (p >= 1 && p <= 65535) {
        t->port = (int)p;
        return;
    }
    size_t mark = path_key(ld, "port");
    err_value(ld, port, port_expected);
    path_pop(ld, mark);
}

/* One target, at the path already entered; `expected` words a wrong type. */
static void parse_target(struct loader *ld, json_t *v, struct wsg_target *t, const char *expected)
{
    if (json_is_object(v)) {
        check_target_keys(ld, v);
        get_host(ld, v, t);
        get_port(ld, v, t);
    } else if (json_is_string(v)) {
        const char *why = parse_host_port(json_string_value(v), t);
        if (why)
            err_value(ld, v, why);
    } else {
        err_value(ld, v, expected);
    }
}

/* The value of one key: a target or a non-empty array of them. */
static void parse_value(struct loader *ld, json_t *v, struct entry *e)
{
    if (!json_is_array(v)) {
        e->targets = xcalloc(1, sizeof *e->targets);
        e->n_targets = 1;
        parse_target(ld, v, &e->targets[0], value_expected);
        return;
    }
    if (json_array_size(v) == 0) {
        err_value(ld, v, value_expected);
        return;
    }
    e->n_targets = json_array_size(v);
    e->targets = xcalloc(e->n_targets, sizeof *e->targets);
    size_t i;
    json_t *elem;
    json_array_foreach(v, i, elem)
    {
        size_t mark = path_index(ld, i);
        parse_target(ld, elem, &e->targets[i], element_expected);
        path_pop(ld, mark);
    }
}

/* Captures and claims refuse '/', '+', '#' and NUL, so no request could
 * ever produce a key holding one: such a key is a mistake in the file. */
static void check_key(struct loader *ld, const char *key, size_t len)
{
    static const char refused[] = "(captures refuse '/', '+', '#' and NUL)";
    size_t bad = strcspn(key, "/+#");
    if (len == 0)
        add_error(ld, "expected a non-empty key");
    else if (len > MAX_KEY_BYTES)
        add_error(ld, "expected a key of at most %d bytes, got %zu bytes", MAX_KEY_BYTES, len);
    else if (memchr(key, '\0', len)) /* jansson refuses these today; keep it true anyway */
        add_error(ld, "key holds a NUL byte: it could never be looked up %s", refused);
    else if (key[bad])
        add_error(ld, "key holds '%c': it could never be looked up %s", key[bad], refused);
}

/* ------------------------------------------------------------ the snapshot */

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->key, ((const struct entry *)b)->key);
}

static struct target_map *build(struct loader *ld, json_t *root)
{
    struct target_map *m = xcalloc(1, sizeof *m);
    if (!json_is_object(root)) {
        err_value(ld, root, map_expected);
        return m;
    }
    m->entries = xcalloc(json_object_size(root), sizeof *m->entries);
    const char *key;
    size_t len;
    json_t *v;
    json_object_keylen_foreach(root, key, len, v)
    {
        struct entry *e = &m->entries[m->n++];
        e->key = xstrndup(key, len);
        size_t mark = path_key(ld, e->key);
        check_key(ld, key, len);
        parse_value(ld, v, e);
        path_pop(ld, mark);
    }
    /* Sorted once here so every lookup is a binary search. */
    qsort(m->entries, m->n, sizeof *m->entries, entry_cmp);
    return m;
}

/* Validates a parsed document; the snapshot, or NULL with errors appended. */
static struct target_map *load_root(json_t *root, const char *source, struct config_errors *errs)
{
    struct loader ld = {.source = source, .errs = errs, .first_error = errs->count};
    struct target_map *m = build(&ld, root);
    if (ld.n_unlisted)
        push_line(errs, xasprintf("%s: %zu more errors not listed", source, ld.n_unlisted));
    if (errs->count == ld.first_error)
        return m;
    target_map_free(m);
    return NULL;
}

static void syntax_error(struct config_errors *errs, const char *source, const json_error_t *e)
{
    /* jansson's own words are right but do not say why it matters here. */
    const char *why = json_error_code(e) == json_error_null_byte_in_key
                          ? " (such a key could never be looked up)"
                          : "";
    if (e->line > 0)
        push_line(errs, xasprintf("%s:%d:%d: %s%s", source, e->line, e->column > 0 ? e->column : 1,
                                  e->text, why));
    else
        push_line(errs, xasprintf("%s: %s%s", source, e->text, why));
}

/* The whole file, or NULL with errno set. A directory fails here (EISDIR)
 * rather than as a confusing JSON error. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        oom();
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *bigger = realloc(buf, cap *= 2);
        if (!bigger)
            oom();
        buf = bigger;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    *len = n;
    return buf;
}

/* ------------------------------------------------------------- public API */

struct target_map *target_map_load(const char *path, const char *display_name,
                                   struct config_errors *errs)
{
    struct config_errors scratch = {0};
    struct config_errors *out = errs ? errs : &scratch;
    const char *source = display_name ? display_name : path;
    struct target_map *m = NULL;
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) {
        push_line(out, xasprintf("%s: cannot read: %s", source, strerror(errno)));
    } else {
        json_error_t jerr;
        /* DECODE_ANY: a top level like `5` gets our message, not jansson's. */
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        free(text);
        if (root)
            m = load_root(root, source, out);
        else
            syntax_error(out, source, &jerr);
        json_decref(root);
    }
    if (out == &scratch)
        config_errors_free(&scratch);
    return m;
}

const struct wsg_target *target_map_lookup(const struct target_map *m, const char *key, size_t *n)
{
    size_t dummy;
    if (!n)
        n = &dummy;
    *n = 0;
    if (!m || !key)
        return NULL;
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, m->entries[mid].key);
        if (c == 0) {
            *n = m->entries[mid].n_targets;
            return m->entries[mid].targets;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t target_map_size(const struct target_map *m) { return m ? m->n : 0; }

void target_map_free(struct target_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        struct entry *e = &m->entries[i];
        for (size_t j = 0; j < e->n_targets; j++)
            free(e->targets[j].host);
        free(e->targets);
        free(e->key);
    }
    free(m->entries);
    free(m);
}

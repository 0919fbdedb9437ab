/* target_map.c - load a websockify-style token file (a JSON object: key ->
 * target(s)) into an immutable, sorted snapshot for fast per-connection
 * lookup. Errors are reported like the config's, with the file's JSON paths;
 * watching the file and swapping snapshots is left to map_watch.c. */
#include "target_map.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_check.h"

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

/* ------------------------------------------------------------ value syntax */

static const char map_expected[] = "expected an object mapping keys to targets";
static const char value_expected[] =
    "expected a target {\"host\", \"port\"}, \"host:port\" or a non-empty array of them";
static const char element_expected[] = "expected a target {\"host\", \"port\"} or \"host:port\"";
static const char host_expected[] = "expected a host name or address";
static const char port_expected[] = "expected an integer 1..65535";

/* The inside of "[...]": an IPv6 address, optionally with a "%zone" suffix. */
static bool v6_is_valid(const char *a, size_t n)
{
    char buf[INET6_ADDRSTRLEN + 1];
    const char *pct = memchr(a, '%', n);
    size_t addr_len = pct ? (size_t)(pct - a) : n;
    if (addr_len == 0 || addr_len >= sizeof buf)
        return false;
    if (pct && !jcheck_host_is_valid(pct + 1, n - addr_len - 1))
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
        if (!jcheck_host_is_valid(host, host_len))
            return "expected \"host:port\" with a host name or address (no blanks, control "
                   "characters or '/')";
        if (memchr(host, ':', host_len))
            return "expected \"[v6addr]:port\": an IPv6 address needs brackets";
    }
    int port = colon ? jcheck_parse_port(colon + 1, strlen(colon + 1)) : 0;
    if (!port)
        return "expected \"host:port\" with a port 1..65535";
    t->host = jcheck_strndup(host, host_len);
    t->port = port;
    return NULL;
}

/* ------------------------------------------------------------ one target */

/* Unknown keys are errors, as in the config: a typo must never be ignored. */
static void check_target_keys(struct jcheck *jc, json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "host") == 0 || strcmp(key, "port") == 0)
            continue;
        jcheck_unknown_key(jc, key, "host, port");
    }
}

static void get_host(struct jcheck *jc, json_t *obj, struct wsg_target *t)
{
    json_t *host = json_object_get(obj, "host");
    if (!host) {
        jcheck_error(jc, "missing \"host\"");
        return;
    }
    const char *h = json_string_value(host);
    size_t mark = jcheck_enter_key(jc, "host");
    if (h && jcheck_host_is_valid(h, strlen(h)))
        t->host = jcheck_strndup(h, strlen(h));
    else
        jcheck_value_error(jc, host, false, host_expected);
    jcheck_leave(jc, mark);
}

static void get_port(struct jcheck *jc, json_t *obj, struct wsg_target *t)
{
    json_t *port = json_object_get(obj, "port");
    if (!port) {
        jcheck_error(jc, "missing \"port\"");
        return;
    }
    json_int_t p = json_is_integer(port) ? json_integer_value(port) : 0;
    if (p >= 1 && p <= 65535) {
        t->port = (int)p;
        return;
    }
    size_t mark = jcheck_enter_key(jc, "port");
    jcheck_value_error(jc, port, false, port_expected);
    jcheck_leave(jc, mark);
}

/* One target, at the path already entered; `expected` words a wrong type. */
static void parse_target(struct jcheck *jc, json_t *v, struct wsg_target *t, const char *expected)
{
    if (json_is_object(v)) {
        check_target_keys(jc, v);
        get_host(jc, v, t);
        get_port(jc, v, t);
    } else if (json_is_string(v)) {
        const char *why = parse_host_port(json_string_value(v), t);
        if (why)
            jcheck_value_error(jc, v, false, why);
    } else {
        jcheck_value_error(jc, v, false, expected);
    }
}

/* The value of one key: a target or a non-empty array of them. */
static void parse_value(struct jcheck *jc, json_t *v, struct entry *e)
{
    if (!json_is_array(v)) {
        e->targets = jcheck_calloc(1, sizeof *e->targets);
        e->n_targets = 1;
        parse_target(jc, v, &e->targets[0], value_expected);
        return;
    }
    if (json_array_size(v) == 0) {
        jcheck_value_error(jc, v, false, value_expected);
        return;
    }
    e->n_targets = json_array_size(v);
    e->targets = jcheck_calloc(e->n_targets, sizeof *e->targets);
    size_t i;
    json_t *elem;
    json_array_foreach(v, i, elem)
    {
        size_t mark = jcheck_enter_index(jc, i);
        parse_target(jc, elem, &e->targets[i], element_expected);
        jcheck_leave(jc, mark);
    }
}

/* Captures and claims refuse '/', '+', '#' and NUL, so no request could
 * ever produce a key holding one: such a key is a mistake in the file. */
static void check_key(struct jcheck *jc, const char *key, size_t len)
{
    static const char refused[] = "(captures refuse '/', '+', '#' and NUL)";
    size_t bad = strcspn(key, "/+#");
    if (len == 0)
        jcheck_error(jc, "expected a non-empty key");
    else if (len > MAX_KEY_BYTES)
        jcheck_error(jc, "expected a key of at most %d bytes, got %zu bytes", MAX_KEY_BYTES, len);
    else if (memchr(key, '\0', len)) /* jansson refuses these today; keep it true anyway */
        jcheck_error(jc, "key holds a NUL byte: it could never be looked up %s", refused);
    else if (key[bad])
        jcheck_error(jc, "key holds '%c': it could never be looked up %s", key[bad], refused);
}

/* ------------------------------------------------------------ the snapshot */

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->key, ((const struct entry *)b)->key);
}

/* Run by jcheck_run(): the snapshot is in *out from its first byte, so that
 * out of memory finds everything built (target_map_free copes with a count
 * set before its array). */
static void build(struct jcheck *jc, json_t *root, struct target_map **out)
{
    struct target_map *m = *out = jcheck_calloc(1, sizeof *m);
    if (!json_is_object(root)) {
        jcheck_value_error(jc, root, false, map_expected);
        return;
    }
    m->entries = jcheck_calloc(json_object_size(root), sizeof *m->entries);
    const char *key;
    size_t len;
    json_t *v;
    json_object_keylen_foreach(root, key, len, v)
    {
        struct entry *e = &m->entries[m->n++];
        e->key = jcheck_strndup(key, len);
        size_t mark = jcheck_enter_key(jc, e->key);
        check_key(jc, key, len);
        parse_value(jc, v, e);
        jcheck_leave(jc, mark);
    }
    /* Sorted once here so every lookup is a binary search. */
    qsort(m->entries, m->n, sizeof *m->entries, entry_cmp);
}

struct load_job {
    struct jcheck jc;
    json_t *root;         /* borrowed */
    struct target_map *m; /* being built */
};

static void build_job(void *ctx)
{
    struct load_job *job = ctx;
    build(&job->jc, job->root, &job->m);
}

/* Validates a parsed document; the snapshot, or NULL with errors appended
 * ("<source>: out of memory" when memory ran out: see json_check.h). */
static struct target_map *load_root(json_t *root, const char *source, struct config_errors *errs)
{
    struct load_job job = {.root = root};
    jcheck_begin(&job.jc, source, errs);
    if (jcheck_run(build_job, &job) != 0) {
        target_map_free(job.m);
        jcheck_out_of_memory(errs, source);
        return NULL;
    }
    if (jcheck_end(&job.jc) == 0)
        return job.m;
    target_map_free(job.m);
    return NULL;
}

/* The whole file, or NULL with errno set (ENOMEM: out of memory). A
 * directory fails here (EISDIR) rather than as a confusing JSON error. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    int err = buf ? 0 : ENOMEM;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *bigger = realloc(buf, cap *= 2);
        if (!bigger) {
            err = ENOMEM;
            break;
        }
        buf = bigger;
    }
    if (!err && ferror(f))
        err = errno;
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
    if (!text && errno == ENOMEM) {
        jcheck_out_of_memory(out, source);
    } else if (!text) {
        jcheck_add_line(out, "%s: cannot read: %s", source, strerror(errno));
    } else {
        json_error_t jerr;
        /* DECODE_ANY: a top level like `5` gets our message, not jansson's. */
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        free(text);
        /* For a NUL in a key jansson's words are right but do not say why it
         * matters here. */
        if (root)
            m = load_root(root, source, out);
        else if (json_error_code(&jerr) == json_error_null_byte_in_key)
            jcheck_syntax_error(out, source, &jerr, " (such a key could never be looked up)");
        else
            jcheck_syntax_error(out, source, &jerr, NULL);
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
        for (size_t j = 0; e->targets && j < e->n_targets; j++)
            free(e->targets[j].host);
        free(e->targets);
        free(e->key);
    }
    free(m->entries);
    free(m);
}

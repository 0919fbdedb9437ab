/* target_map.c - load a websockify token file into an immutable, sorted
 * snapshot for fast per-connection lookup. Two formats: websockify's own
 * lines ("token: host:port", '#' comments) and a JSON object (key ->
 * target(s)); the path may also be a directory of such files, as websockify's
 * TokenFile plugin allows. Errors are reported like the config's, with the
 * file's line or JSON path; watching the files and swapping snapshots is left
 * to map_watch.c. */
#include "target_map.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json_check.h"

#define MAX_KEY_BYTES 256

/* One key of the map and its targets, in the order they are tried. */
struct entry {
    char *key;                  /* owned */
    struct wsg_target *targets; /* owned, as is each host */
    size_t n_targets;
    /* Where the key was given, for the duplicate check while loading only:
     * an index into the loader's file names, and the line (0 in JSON). */
    size_t file;
    size_t line;
};

struct target_map {
    struct entry *entries; /* owned; sorted by key (strcmp) for binary search */
    size_t n, cap;
};

/* A new entry at the end of m for the first key_len bytes of key (copied).
 * The entry is in m before the copy is made: out of memory (jcheck_run)
 * then finds it, with a NULL key. */
static struct entry *add_entry(struct target_map *m, const char *key, size_t key_len, size_t file,
                               size_t line)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        struct entry *bigger = realloc(m->entries, cap * sizeof *bigger);
        if (!bigger)
            jcheck_oom();
        m->entries = bigger;
        m->cap = cap;
    }
    struct entry *e = &m->entries[m->n++];
    *e = (struct entry){.file = file, .line = line};
    e->key = jcheck_strndup(key, key_len);
    return e;
}

/* Everything one load holds, in one place, so that out of memory (a
 * jcheck_* allocation failing inside jcheck_run(), json_check.h) releases
 * it all: each resource is stored here the moment it exists. */
struct load {
    const char *path, *source;  /* borrowed */
    struct config_errors *errs; /* borrowed */
    struct target_map *m;       /* the snapshot being built */
    char **files, **sources;    /* a directory's files and their names in messages */
    size_t n_files;             /* entries of both (sources: at least 1) */
    DIR *dir;                   /* while a directory is listed */
    char *text;                 /* the file being parsed */
    json_t *root;               /* its document, for the JSON format */
    char *scratch;              /* a short-lived copy (a line's target) */
    int rc;                     /* -1 once an error was reported */
};

/* Gives back what `ld` holds besides the snapshot. */
static void load_release(struct load *ld)
{
    if (ld->dir)
        closedir(ld->dir);
    free(ld->text);
    json_decref(ld->root);
    free(ld->scratch);
    for (size_t i = 0; i < ld->n_files; i++) {
        if (ld->files)
            free(ld->files[i]);
        if (ld->sources)
            free(ld->sources[i]);
    }
    free(ld->files);
    free(ld->sources);
    ld->dir = NULL;
    ld->text = ld->scratch = NULL;
    ld->root = NULL;
    ld->files = ld->sources = NULL;
    ld->n_files = 0;
}

/* ------------------------------------------------------------ value syntax */

static const char map_expected[] = "expected an object mapping keys to targets";
static const char value_expected[] =
    "expected a target {\"host\", \"port\"}, {\"unix\"}, \"host:port\", \"unix:/path\" or a "
    "non-empty array of them";
static const char element_expected[] =
    "expected a target {\"host\", \"port\"}, {\"unix\"}, \"host:port\" or \"unix:/path\"";
static const char unix_expected[] = "expected an absolute unix socket path (\"/run/app.sock\")";
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

/* A unix socket's path: absolute (a token file has no directory of its
 * own to be relative to), fitting sun_path. NULL, or what was expected. */
static const char *unix_path_problem(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/' || memchr(p, '\0', n))
        return unix_expected;
    if (n >= WSG_UNIX_PATH_MAX)
        return "expected a unix socket path under 108 bytes";
    return NULL;
}

/* The length of a unix target's prefix: "unix_socket:" (what websockify's
 * token files write: its TokenFile splits at the last ':' and takes the host
 * "unix_socket" to mean the path after it) or "unix:" (as the config's
 * {"unix": PATH}); 0 for anything else. */
static size_t unix_prefix(const char *s, size_t n)
{
    if (n >= 12 && memcmp(s, "unix_socket:", 12) == 0)
        return 12;
    if (n >= 5 && memcmp(s, "unix:", 5) == 0)
        return 5;
    return 0;
}

/* ------------------------------------------------------------ one target */

/* Unknown keys are errors, as in the config: a typo must never be ignored. */
static void check_target_keys(struct jcheck *jc, json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach (obj, key, v) {
        if (strcmp(key, "host") == 0 || strcmp(key, "port") == 0)
            continue;
        jcheck_unknown_key(jc, key, "host, port, unix");
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

/* {"unix": "/path"}: the only key of its object. */
static void get_unix(struct jcheck *jc, json_t *obj, struct wsg_target *t)
{
    const char *key;
    json_t *v;
    json_object_foreach (obj, key, v) {
        if (strcmp(key, "unix") != 0)
            jcheck_unknown_key(jc, key, "unix");
    }
    json_t *path = json_object_get(obj, "unix");
    size_t mark = jcheck_enter_key(jc, "unix");
    const char *why = json_is_string(path)
                          ? unix_path_problem(json_string_value(path), json_string_length(path))
                          : unix_expected;
    if (why)
        jcheck_value_error(jc, path, false, why);
    else
        t->host = jcheck_strndup(json_string_value(path), json_string_length(path));
    t->port = 0;
    jcheck_leave(jc, mark);
}

/* One target, at the path already entered; `expected` words a wrong type. */
static void parse_target(struct jcheck *jc, json_t *v, struct wsg_target *t, const char *expected)
{
    if (json_is_object(v) && json_object_get(v, "unix")) {
        get_unix(jc, v, t);
    } else if (json_is_object(v)) {
        check_target_keys(jc, v);
        get_host(jc, v, t);
        get_port(jc, v, t);
    } else if (json_is_string(v) && unix_prefix(json_string_value(v), json_string_length(v))) {
        /* "unix:/run/app.sock" or websockify's "unix_socket:/run/app.sock" */
        size_t skip = unix_prefix(json_string_value(v), json_string_length(v));
        const char *path = json_string_value(v) + skip;
        size_t n = json_string_length(v) - skip;
        const char *why = unix_path_problem(path, n);
        if (why)
            jcheck_value_error(jc, v, false, why);
        else
            t->host = jcheck_strndup(path, n);
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
    json_array_foreach (v, i, elem) {
        size_t mark = jcheck_enter_index(jc, i);
        parse_target(jc, elem, &e->targets[i], element_expected);
        jcheck_leave(jc, mark);
    }
}

/* Captures and claims refuse '/', '+', '#' and NUL, so no request could
 * ever produce a key holding one: such a key is a mistake in the file.
 * Returns NULL, or what is wrong with the key (written into buf). */
static const char *key_problem(const char *key, size_t len, char *buf, size_t buf_len)
{
    static const char refused[] = "(captures refuse '/', '+', '#' and NUL)";
    size_t bad = strcspn(key, "/+#");
    if (len == 0)
        snprintf(buf, buf_len, "expected a non-empty key");
    else if (len > MAX_KEY_BYTES)
        snprintf(buf, buf_len, "expected a key of at most %d bytes, got %zu bytes", MAX_KEY_BYTES,
                 len);
    else if (memchr(key, '\0', len)) /* jansson refuses these today; keep it true anyway */
        snprintf(buf, buf_len, "key holds a NUL byte: it could never be looked up %s", refused);
    else if (key[bad])
        snprintf(buf, buf_len, "key holds '%c': it could never be looked up %s", key[bad], refused);
    else
        return NULL;
    return buf;
}

static void check_key(struct jcheck *jc, const char *key, size_t len)
{
    char buf[160];
    const char *why = key_problem(key, len, buf, sizeof buf);
    if (why)
        jcheck_error(jc, "%s", why);
}

/* ------------------------------------------------------------ the snapshot */

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->key, ((const struct entry *)b)->key);
}

static void build(struct jcheck *jc, json_t *root, struct target_map *m, size_t file)
{
    if (!json_is_object(root)) {
        jcheck_value_error(jc, root, false, map_expected);
        return;
    }
    const char *key;
    size_t len;
    json_t *v;
    json_object_keylen_foreach(root, key, len, v)
    {
        struct entry *e = add_entry(m, key, len, file, 0);
        size_t mark = jcheck_enter_key(jc, e->key);
        check_key(jc, key, len);
        parse_value(jc, v, e);
        jcheck_leave(jc, mark);
    }
}

/* Validates a parsed document into m; 0, or -1 with errors appended. */
static int load_root(json_t *root, const char *source, struct target_map *m, size_t file,
                     struct config_errors *errs)
{
    struct jcheck jc;
    jcheck_begin(&jc, source, errs);
    build(&jc, root, m, file);
    return jcheck_end(&jc);
}

/* ------------------------------------------------ websockify's own lines */

static const char line_expected[] = "expected \"token: host:port\"";

#define SHOWN_BYTES 128

/* `s` for an error message, cut short if long: quotes, backslashes, control
 * bytes and every byte >= 0x80 as \xNN, so that a line that is not UTF-8,
 * or one cut inside a character, still gives a one-line UTF-8 message. */
static const char *shown(const char *s, size_t len, char out[SHOWN_BYTES])
{
    size_t n = 0, i = 0;
    for (; i < len && n + 5 + 3 < SHOWN_BYTES; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f)
            n += (size_t)snprintf(out + n, SHOWN_BYTES - n, "\\x%02x", c);
        else
            out[n++] = (char)c;
    }
    memcpy(out + n, i < len ? "..." : "", i < len ? 4 : 1);
    return out;
}

/* Errors of the line format name the file and line, and quote the line. */
static void line_error(struct config_errors *errs, const char *source, size_t line_no,
                       const char *what, const char *s, size_t len)
{
    char buf[SHOWN_BYTES];
    jcheck_add_line(errs, "%s:%zu: %s, got \"%s\"", source, line_no, what, shown(s, len, buf));
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* One line as websockify reads it: blanks around it ignored, empty lines and
 * lines starting with '#' skipped; else the line splits at the one ':'
 * followed by a blank into the token and "host:port". Returns -1 on error. */
static int parse_line(const char *s, size_t len, const char *source, size_t line_no,
                      struct load *ld, size_t file, struct config_errors *errs)
{
    struct target_map *m = ld->m;
    while (len && is_blank(*s))
        s++, len--;
    while (len && is_blank(s[len - 1]))
        len--;
    if (len == 0 || s[0] == '#')
        return 0;
    if (memchr(s, '\0', len)) {
        line_error(errs, source, line_no, "expected a line without NUL bytes", s, len);
        return -1;
    }
    const char *sep = NULL;
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] == ':' && is_blank(s[i + 1])) {
            if (sep) {
                line_error(errs, source, line_no, "expected \"token: host:port\" (one \": \" only)",
                           s, len);
                return -1;
            }
            sep = s + i;
        }
    }
    if (!sep) {
        line_error(errs, source, line_no, line_expected, s, len);
        return -1;
    }
    size_t key_len = (size_t)(sep - s);
    while (key_len && is_blank(s[key_len - 1]))
        key_len--;
    const char *target = sep + 1;
    while (is_blank(*target))
        target++;
    size_t target_len = len - (size_t)(target - s);

    struct entry *e = add_entry(m, s, key_len, file, line_no);
    int rc = 0;
    char buf[160];
    const char *why = key_problem(e->key, key_len, buf, sizeof buf);
    if (why) {
        line_error(errs, source, line_no, why, s, len);
        rc = -1;
    }
    e->targets = jcheck_calloc(1, sizeof *e->targets);
    e->n_targets = 1;
    size_t skip = unix_prefix(target, target_len);
    const char *bad;
    if (skip) { /* "unix_socket:/run/vm1.sock": port 0, the path as host */
        bad = unix_path_problem(target + skip, target_len - skip);
        if (!bad)
            e->targets[0].host = jcheck_strndup(target + skip, target_len - skip);
    } else {
        ld->scratch = jcheck_strndup(target, target_len);
        bad = parse_host_port(ld->scratch, &e->targets[0]);
        free(ld->scratch);
        ld->scratch = NULL;
    }
    if (bad) {
        line_error(errs, source, line_no, bad, target, target_len);
        rc = -1;
    }
    return rc;
}

static int load_lines(const char *text, size_t len, const char *source, struct load *ld,
                      size_t file, struct config_errors *errs)
{
    int rc = 0;
    size_t line_no = 1;
    for (size_t start = 0; start < len; line_no++) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (parse_line(text + start, end - start, source, line_no, ld, file, errs) != 0)
            rc = -1;
        start = end + 1;
    }
    return rc;
}

/* The whole file, or NULL with errno set (ENOMEM: out of memory; it holds
 * the FILE, so it does not jump). A directory fails here (EISDIR) rather
 * than as a confusing JSON error. */
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

/* websockify's lines cannot start with these (a token would hold a quote or
 * a bracket), a JSON map must: the first byte that is not blank decides. */
static bool looks_like_json(const char *text, size_t len)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    return i < len && (text[i] == '{' || text[i] == '[' || text[i] == '"');
}

/* One file into ld->m, as file number `file`; 0, or -1 with errors appended. */
static int load_file(struct load *ld, const char *path, const char *source, size_t file,
                     struct config_errors *errs)
{
    size_t len = 0;
    ld->text = read_file(path, &len);
    if (!ld->text && errno == ENOMEM)
        jcheck_oom();
    if (!ld->text) {
        jcheck_add_line(errs, "%s: cannot read: %s", source, strerror(errno));
        return -1;
    }
    int rc;
    if (!looks_like_json(ld->text, len)) {
        rc = load_lines(ld->text, len, source, ld, file, errs);
        free(ld->text);
        ld->text = NULL;
        return rc;
    }
    json_error_t jerr;
    /* DECODE_ANY: a top level like `"x"` gets our message, not jansson's. */
    ld->root = json_loadb(ld->text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    free(ld->text);
    ld->text = NULL;
    /* For a NUL in a key jansson's words are right but do not say why it
     * matters here. */
    if (ld->root)
        rc = load_root(ld->root, source, ld->m, file, errs);
    else if (json_error_code(&jerr) == json_error_null_byte_in_key)
        jcheck_syntax_error(errs, source, &jerr, " (such a key could never be looked up)"), rc = -1;
    else
        jcheck_syntax_error(errs, source, &jerr, NULL), rc = -1;
    json_decref(ld->root);
    ld->root = NULL;
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of a directory that websockify would read, in name order (so a
 * load is reproducible): regular files, except hidden ones (editors' swap
 * and backup files start with '.'), into ld->files and ld->n_files. -1
 * with errno on failure. */
static int list_dir(struct load *ld, const char *path)
{
    if (!(ld->dir = opendir(path)))
        return -1;
    size_t cap = 16;
    ld->files = jcheck_calloc(cap, sizeof *ld->files);
    struct dirent *de;
    while ((de = readdir(ld->dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (ld->n_files == cap) { /* room first: the name is then never only a local */
            char **bigger = realloc(ld->files, (cap * 2) * sizeof *bigger);
            if (!bigger)
                jcheck_oom();
            ld->files = bigger;
            cap *= 2;
        }
        char *full = ld->files[ld->n_files] = jcheck_asprintf("%s/%s", path, de->d_name);
        struct stat st;
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(full);
            continue;
        }
        ld->n_files++;
    }
    closedir(ld->dir);
    ld->dir = NULL;
    qsort(ld->files, ld->n_files, sizeof *ld->files, name_cmp);
    return 0;
}

static void where(char *buf, size_t len, const char *source, size_t line)
{
    if (line)
        snprintf(buf, len, "%s:%zu", source, line);
    else
        snprintf(buf, len, "%s", source);
}

/* Sorted, equal keys are neighbours: each repeat is an error naming both
 * places (websockify would let the last file silently win). */
static int check_duplicates(const struct target_map *m, char *const *sources,
                            struct config_errors *errs)
{
    int rc = 0;
    for (size_t i = 1; i < m->n; i++) {
        const struct entry *a = &m->entries[i - 1], *b = &m->entries[i];
        if (strcmp(a->key, b->key) != 0)
            continue;
        if (b->file < a->file || (b->file == a->file && b->line < a->line)) {
            const struct entry *t = a;
            a = b;
            b = t;
        }
        char first[512], again[512];
        where(first, sizeof first, sources[a->file], a->line);
        where(again, sizeof again, sources[b->file], b->line);
        char key[SHOWN_BYTES];
        jcheck_add_line(errs, "%s: token \"%s\" is given again (first at %s)", again,
                        shown(b->key, strlen(b->key), key), first);
        rc = -1;
    }
    return rc;
}

/* The load itself, run by jcheck_run(). */
static void load_all(void *ctx)
{
    struct load *ld = ctx;
    const char *path = ld->path, *source = ld->source;
    ld->m = jcheck_calloc(1, sizeof *ld->m);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (list_dir(ld, path) != 0) {
            jcheck_add_line(ld->errs, "%s: cannot read: %s", source, strerror(errno));
            ld->rc = -1;
        }
        ld->sources = jcheck_calloc(ld->n_files ? ld->n_files : 1, sizeof *ld->sources);
        /* A file of the directory is named as the directory was, plus its name. */
        for (size_t i = 0; i < ld->n_files; i++)
            ld->sources[i] = jcheck_asprintf("%s/%s", source, strrchr(ld->files[i], '/') + 1);
        for (size_t i = 0; i < ld->n_files; i++)
            if (load_file(ld, ld->files[i], ld->sources[i], i, ld->errs) != 0)
                ld->rc = -1;
    } else {
        ld->sources = jcheck_calloc(1, sizeof *ld->sources);
        ld->n_files = 1;
        ld->sources[0] = jcheck_strndup(source, strlen(source));
        ld->rc = load_file(ld, path, source, 0, ld->errs);
    }
    /* Sorted once here so every lookup is a binary search. */
    if (ld->m->n)
        qsort(ld->m->entries, ld->m->n, sizeof *ld->m->entries, entry_cmp);
    if (ld->rc == 0)
        ld->rc = check_duplicates(ld->m, ld->sources, ld->errs);
}

struct target_map *target_map_load(const char *path, const char *display_name,
                                   struct config_errors *errs)
{
    struct config_errors scratch = {0};
    struct load ld = {
        .path = path, .source = display_name ? display_name : path, .errs = errs ? errs : &scratch};
    if (jcheck_run(load_all, &ld) != 0) {
        /* Out of memory: "<file>: out of memory", and nothing kept. */
        jcheck_out_of_memory(ld.errs, ld.source);
        ld.rc = -1;
    }
    load_release(&ld);
    if (ld.errs == &scratch)
        config_errors_free(&scratch);
    if (ld.rc != 0) {
        target_map_free(ld.m);
        return NULL;
    }
    return ld.m;
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
        /* A load cut short by out of memory may have set the count only. */
        for (size_t j = 0; e->targets && j < e->n_targets; j++)
            free(e->targets[j].host);
        free(e->targets);
        free(e->key);
    }
    free(m->entries);
    free(m);
}

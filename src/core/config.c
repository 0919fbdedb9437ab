/* config.c - load wsgate's JSON config, check it against the schema of SPEC.md
 * and build the plain structs of config.h. Every error is collected, not just
 * the first, as "<source>: <json path>: <what was expected>, got <value>".
 * Templates are checked with route.c, MQTT topic syntax with topic.c. */
#define _GNU_SOURCE /* explicit_bzero */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_check.h"
#include "route.h"
#include "topic.h"

#define INT32_LIMIT 2147483647

static const char builtin_source[] = "<built-in>";

/* The built-in default: validated like any file, so it is valid by construction. */
static const char default_json[] =
    "{ \"listen\": [ { \"host\": \"127.0.0.1\", \"port\": 8080 } ] }";

static char *xstrdup(const char *s) { return jcheck_strndup(s, strlen(s)); }
static void free_strv(char **v, size_t n);

/* State of one load: where we are in the JSON tree and what went wrong so far. */
struct loader {
    struct jcheck jc;     /* the source name, the JSON path and the errors */
    const char *base_dir; /* relative file paths are joined to it; NULL: kept as written */
    struct wsg_config *cfg;
    json_t *brokers;      /* the "brokers" object as written, for routes' cross-checks */
    bool auth_given;      /* a top-level auth.jwt exists (even if it has errors) */
    bool auth_http_given; /* a top-level auth.http exists (even if it has errors) */
};

/* `s` as a JSON string, so odd bytes cannot break the one-line message. */
static void quote(const char *s, char *buf, size_t len)
{
    json_t *v = json_string(s);
    jcheck_describe(v, false, buf, len);
    json_decref(v);
}

/* ------------------------------------------------------------ keys of objects */

struct key_spec {
    const char *name;
    bool str; /* a string field: may instead be given as "<name>_env" */
};

static const struct key_spec *find_key(const struct key_spec *keys, const char *name)
{
    for (; keys->name; keys++) {
        if (strcmp(keys->name, name) == 0)
            return keys;
    }
    return NULL;
}

/* The string field that `name` ("x_env") stands for, if any. */
static const struct key_spec *find_env_key(const struct key_spec *keys, const char *name)
{
    size_t n = strlen(name);
    if (n <= 4 || strcmp(name + n - 4, "_env") != 0)
        return NULL;
    for (; keys->name; keys++) {
        if (keys->str && strlen(keys->name) == n - 4 && strncmp(keys->name, name, n - 4) == 0)
            return keys;
    }
    return NULL;
}

/* Unknown keys are errors: a typo must never be silently ignored. */
static void check_keys(struct loader *ld, json_t *obj, const struct key_spec *keys)
{
    const char *key;
    json_t *v;
    json_object_foreach (obj, key, v) {
        const struct key_spec *spec = find_key(keys, key);
        if (spec) {
            char env_key[64];
            snprintf(env_key, sizeof env_key, "%s_env", key);
            if (spec->str && json_object_get(obj, env_key))
                jcheck_error(&ld->jc, "give either \"%s\" or \"%s\", not both", key, env_key);
            continue;
        }
        if (find_env_key(keys, key))
            continue;
        char list[512];
        size_t used = 0;
        list[0] = '\0';
        for (const struct key_spec *k = keys; k->name && used < sizeof list; k++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", k == keys ? "" : ", ",
                                     k->name);
        jcheck_unknown_key(&ld->jc, key, list);
    }
}

/* ------------------------------------------------------------ typed getters */

enum {
    F_REQUIRED = 1 << 0, /* absent is an error: missing "key" */
    F_NONEMPTY = 1 << 1, /* strings and arrays: empty is an error */
    F_SECRET = 1 << 2,   /* never echo the value */
};

/* A string field's value and where it came from, for later checks. */
struct strval {
    const char *s;      /* borrowed from the JSON tree or the environment */
    const json_t *json; /* the value as written; NULL if from the environment */
    const char *key;    /* "x" or "x_env": where errors about the value point */
    bool hidden;        /* a secret, or from the environment: never echoed */
};

/* A POSIX-portable variable name: [A-Za-z_][A-Za-z0-9_]*. */
static bool env_name_is_valid(const char *s)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789";
    return s[0] != '\0' && !(s[0] >= '0' && s[0] <= '9') && strspn(s, chars) == strlen(s);
}

/* Reports an error about a string value already fetched by get_str(). */
static void bad_str(struct loader *ld, const struct strval *sv, const char *expected)
{
    size_t mark = sv->key ? jcheck_enter_key(&ld->jc, sv->key) : jcheck_mark(&ld->jc);
    if (sv->json)
        jcheck_value_error(&ld->jc, sv->json, sv->hidden, expected);
    else
        jcheck_error(&ld->jc, "%s, got <hidden>", expected);
    jcheck_leave(&ld->jc, mark);
}

/* Reads the variable that "x_env" (the JSON value `ev`) names. */
static bool get_env_str(struct loader *ld, json_t *ev, struct strval *sv)
{
    if (!json_is_string(ev) || !env_name_is_valid(json_string_value(ev))) {
        jcheck_value_error(&ld->jc, ev, false, "expected the name of an environment variable");
        return false;
    }
    const char *var = json_string_value(ev);
    const char *val = getenv(var);
    if (!val) {
        jcheck_error(&ld->jc, "environment variable %s is not set", var);
        return false;
    }
    sv->s = val;
    sv->json = NULL;
    sv->hidden = true;
    return true;
}

/* Fetches string field `key`, or reads it from the variable named by
 * "<key>_env". True with *sv filled if a usable string is there; errors for a
 * wrong type, an unset variable, a missing required or empty string.
 * `expected` (or NULL for "a (non-empty) string") words those errors. */
static bool get_str(struct loader *ld, json_t *obj, const char *key, unsigned flags,
                    const char *expected, struct strval *sv)
{
    char env_key[64];
    snprintf(env_key, sizeof env_key, "%s_env", key);
    json_t *v = json_object_get(obj, key), *ev = json_object_get(obj, env_key);
    if (!expected)
        expected = (flags & F_NONEMPTY) ? "expected a non-empty string" : "expected a string";
    if (v && ev)
        return false; /* check_keys() reported it */
    if (!v && !ev) {
        if (flags & F_REQUIRED)
            jcheck_error(&ld->jc, "missing \"%s\"", key);
        return false;
    }
    memset(sv, 0, sizeof *sv);
    /* The key string must outlive this call: take the object's own copy. */
    sv->key = json_object_iter_key(json_object_iter_at(obj, v ? key : env_key));
    size_t mark = jcheck_enter_key(&ld->jc, sv->key);
    bool ok;
    if (v) {
        ok = json_is_string(v);
        if (!ok)
            jcheck_value_error(&ld->jc, v, flags & F_SECRET, expected);
        sv->s = ok ? json_string_value(v) : NULL;
        sv->json = v;
        sv->hidden = flags & F_SECRET;
    } else {
        ok = get_env_str(ld, ev, sv);
    }
    jcheck_leave(&ld->jc, mark);
    if (ok && (flags & F_NONEMPTY) && sv->s[0] == '\0') {
        bad_str(ld, sv, expected);
        ok = false;
    }
    return ok;
}

/* Integer field in min..max. True if present and valid. */
static bool get_int(struct loader *ld, json_t *obj, const char *key, unsigned flags, int64_t min,
                    int64_t max, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (flags & F_REQUIRED)
            jcheck_error(&ld->jc, "missing \"%s\"", key);
        return false;
    }
    if (json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max) {
        *out = json_integer_value(v);
        return true;
    }
    char expected[80];
    snprintf(expected, sizeof expected, "expected an integer %lld..%lld", (long long)min,
             (long long)max);
    size_t mark = jcheck_enter_key(&ld->jc, key);
    jcheck_value_error(&ld->jc, v, false, expected);
    jcheck_leave(&ld->jc, mark);
    return false;
}

static void get_qos(struct loader *ld, json_t *obj, int *qos)
{
    int64_t v;
    if (get_int(ld, obj, "qos", 0, 0, 2, &v))
        *qos = (int)v;
}

static void get_bool(struct loader *ld, json_t *obj, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return;
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return;
    }
    size_t mark = jcheck_enter_key(&ld->jc, key);
    jcheck_value_error(&ld->jc, v, false, "expected true or false");
    jcheck_leave(&ld->jc, mark);
}

/* One of `names` (NULL-terminated); *out is its index. True if valid. */
static bool get_enum(struct loader *ld, json_t *obj, const char *key, unsigned flags,
                     const char *const *names, int *out)
{
    char expected[128] = "expected";
    size_t used = strlen(expected);
    for (size_t i = 0; names[i]; i++) {
        const char *sep = i == 0 ? " " : names[i + 1] ? ", " : " or ";
        used +=
            (size_t)snprintf(expected + used, sizeof expected - used, "%s\"%s\"", sep, names[i]);
    }
    struct strval sv;
    if (!get_str(ld, obj, key, flags, expected, &sv))
        return false;
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], sv.s) == 0) {
            *out = i;
            return true;
        }
    }
    bad_str(ld, &sv, expected);
    return false;
}

/* The member `key` if present and `ok` (its shape test) accepts it; NULL if
 * absent (an error when required) or refused (an error naming `expected`). */
static json_t *get_member(struct loader *ld, json_t *obj, const char *key, unsigned flags,
                          const char *expected, bool ok)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (flags & F_REQUIRED)
            jcheck_error(&ld->jc, "missing \"%s\"", key);
        return NULL;
    }
    if (ok)
        return v;
    size_t mark = jcheck_enter_key(&ld->jc, key);
    jcheck_value_error(&ld->jc, v, false, expected);
    jcheck_leave(&ld->jc, mark);
    return NULL;
}

/* An object member that must itself be an object; NULL if absent or wrong. */
static json_t *get_obj(struct loader *ld, json_t *obj, const char *key, unsigned flags,
                       const char *expected)
{
    json_t *v = json_object_get(obj, key);
    return get_member(ld, obj, key, flags, expected, json_is_object(v));
}

static json_t *get_arr(struct loader *ld, json_t *obj, const char *key, unsigned flags,
                       const char *expected)
{
    json_t *v = json_object_get(obj, key);
    return get_member(ld, obj, key, flags, expected,
                      json_is_array(v) && (!(flags & F_NONEMPTY) || json_array_size(v) > 0));
}

/* Relative file paths are relative to the config file's directory, so a
 * config works whatever the working directory of the process. */
static char *resolve_path(const struct loader *ld, const char *p)
{
    if (p[0] == '/' || !ld->base_dir || strcmp(ld->base_dir, ".") == 0)
        return xstrdup(p);
    size_t n = strlen(ld->base_dir);
    const char *sep = n > 0 && ld->base_dir[n - 1] == '/' ? "" : "/";
    return jcheck_asprintf("%s%s%s", ld->base_dir, sep, p);
}

/* A string field that names a file: stored resolved against base_dir. */
static void get_file(struct loader *ld, json_t *obj, const char *key, unsigned flags, char **out)
{
    struct strval sv;
    if (get_str(ld, obj, key, flags | F_NONEMPTY, "expected a file path", &sv))
        *out = resolve_path(ld, sv.s);
}

static void get_plain_str(struct loader *ld, json_t *obj, const char *key, unsigned flags,
                          char **out)
{
    struct strval sv;
    if (get_str(ld, obj, key, flags, NULL, &sv))
        *out = xstrdup(sv.s);
}

/* ------------------------------------------------------------ value syntax */

/* The first n bytes of s are exactly "host[:port]" or "[v6addr][:port]". */
static bool parse_authority(const char *s, size_t n, bool port_required)
{
    size_t host_len;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close == s + 1)
            return false;
        host_len = (size_t)(close - s) + 1;
    } else {
        host_len = strcspn(s, ":");
        if (host_len > n)
            host_len = n;
    }
    if (host_len == 0)
        return false;
    for (size_t i = 0; i < host_len; i++) {
        if (strchr("@/?#\\ \t\"'<>", s[i]) || (unsigned char)s[i] < 0x21)
            return false;
    }
    if (host_len == n)
        return !port_required;
    return s[host_len] == ':' && jcheck_parse_port(s + host_len + 1, n - host_len - 1) != 0;
}

/* "scheme://host[:port]" as browsers send it in Origin; lower-cased in place. */
static bool origin_normalize(char *s)
{
    static const char scheme_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789+.-";
    size_t scheme = strspn(s, scheme_chars);
    char first = (char)(s[0] | 0x20); /* ASCII lower case */
    if (scheme == 0 || first < 'a' || first > 'z' || strncmp(s + scheme, "://", 3) != 0)
        return false;
    const char *auth = s + scheme + 3;
    if (!parse_authority(auth, strlen(auth), false))
        return false;
    /* Browsers send scheme and host in lower case; compare like with like. */
    for (char *p = s; *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    return true;
}

/* An IPv4/IPv6 address or CIDR block, as trusted_proxies holds them. */
static bool proxy_is_valid(const char *s)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof addr)
        return false;
    memcpy(addr, s, n);
    addr[n] = '\0';
    unsigned char buf[sizeof(struct in6_addr)];
    int max_prefix;
    if (inet_pton(AF_INET, addr, buf) == 1)
        max_prefix = 32;
    else if (inet_pton(AF_INET6, addr, buf) == 1)
        max_prefix = 128;
    else
        return false;
    if (!slash)
        return true;
    const char *p = slash + 1;
    size_t digits = strspn(p, "0123456789");
    return digits > 0 && digits <= 3 && p[digits] == '\0' && atoi(p) <= max_prefix;
}

/* A broker URI Paho accepts: scheme://host:port (ws/wss may add a path). */
static bool broker_uri_is_valid(const char *uri, bool *tls)
{
    static const struct {
        const char *scheme;
        bool tls, path;
    } schemes[] = {
        {"tcp://", false, false},  {"mqtt://", false, false}, {"ssl://", true, false},
        {"mqtts://", true, false}, {"ws://", false, true},    {"wss://", true, true},
    };
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t len = strlen(schemes[i].scheme);
        if (strncmp(uri, schemes[i].scheme, len) != 0)
            continue;
        const char *auth = uri + len;
        size_t n = strcspn(auth, "/");
        if (auth[n] == '/' && !schemes[i].path)
            return false;
        *tls = schemes[i].tls;
        return parse_authority(auth, n, true);
    }
    return false;
}

/* RFC 6455 subprotocol names are RFC 7230 tokens. */
static bool token_is_valid(const char *s)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
                                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    return s[0] != '\0' && strspn(s, tchar) == strlen(s);
}

/* RFC 6901: "" or "/..." with '~' only as "~0" or "~1". */
static bool json_pointer_is_valid(const char *p)
{
    if (p[0] != '\0' && p[0] != '/')
        return false;
    for (const char *t = strchr(p, '~'); t; t = strchr(t + 1, '~')) {
        if (t[1] != '0' && t[1] != '1')
            return false;
    }
    return true;
}

/* A route or URL path prefix for static files. */
static bool mount_is_valid(const char *m) { return m[0] == '/' && strpbrk(m, "?# \t\r\n") == NULL; }

static bool broker_name_is_valid(const char *s)
{
    return s[0] != '\0' &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
               strlen(s);
}

/* Lists of strings: each element checked by `valid` (which may rewrite it). */
static char **get_str_list(struct loader *ld, json_t *arr, bool (*valid)(char *s),
                           const char *expected, size_t *count)
{
    size_t n = json_array_size(arr);
    char **out = jcheck_calloc(n, sizeof *out);
    *count = n;
    size_t i;
    json_t *v;
    json_array_foreach (arr, i, v) {
        /* `out` is only a local until returned: no jump may leave it behind. */
        char *s = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
        if (json_is_string(v) && !s) {
            free_strv(out, n);
            jcheck_oom();
        }
        if (!s || !valid(s)) {
            size_t mark = jcheck_enter_index(&ld->jc, i);
            jcheck_value_error(&ld->jc, v, false, expected);
            jcheck_leave(&ld->jc, mark);
            free(s);
            continue;
        }
        out[i] = s;
    }
    return out;
}

/* ------------------------------------------------------- top-level sections */

static const char host_expected[] = "expected a host name or address";

static const struct key_spec tls_keys[] = {
    {"cert", true},
    {"key", true},
    {"allow_plain", false},
    {NULL, false},
};
static const struct key_spec listen_keys[] = {
    {"host", true}, {"port", false}, {"tls", false}, {"proxy_protocol", false}, {NULL, false},
};
static const struct key_spec unix_listen_keys[] = {
    {"unix", true}, {"mode", true}, {"tls", false}, {"proxy_protocol", false}, {NULL, false},
};

/* Reads "host" (with host_flags) and the required "port" of a listener or
 * target. Returns true if a host was given (valid or not). */
static bool get_host_port(struct loader *ld, json_t *obj, unsigned host_flags, char **host,
                          int *port)
{
    struct strval sv;
    bool given = get_str(ld, obj, "host", host_flags | F_NONEMPTY, host_expected, &sv);
    if (given) {
        if (jcheck_host_is_valid(sv.s, strlen(sv.s)))
            *host = xstrdup(sv.s);
        else
            bad_str(ld, &sv, host_expected);
    }
    int64_t value;
    if (get_int(ld, obj, "port", F_REQUIRED, 1, 65535, &value))
        *port = (int)value;
    return given;
}

static void get_unix_path(struct loader *ld, json_t *obj, char **out);

/* "mode" of a unix listener: an octal file mode as chmod takes it, "0660". */
static void get_mode(struct loader *ld, json_t *obj, int *mode)
{
    static const char expected[] = "expected an octal file mode 0001..0777 such as \"0660\"";
    struct strval sv;
    if (!get_str(ld, obj, "mode", F_NONEMPTY, expected, &sv))
        return;
    size_t n = strlen(sv.s);
    long v = strtol(sv.s, NULL, 8);
    if (n > 4 || strspn(sv.s, "01234567") != n || v > 0777 || v == 0) {
        bad_str(ld, &sv, expected);
        return;
    }
    *mode = (int)strtol(sv.s, NULL, 8);
}

static void parse_listen_one(struct loader *ld, json_t *obj, struct wsg_listen *l)
{
    if (!json_is_object(obj)) {
        jcheck_value_error(
            &ld->jc, obj, false,
            "expected an object {\"host\", \"port\", \"tls\"} or {\"unix\", \"mode\"}");
        return;
    }
    get_bool(ld, obj, "proxy_protocol", &l->proxy_protocol);
    if (json_object_get(obj, "unix") || json_object_get(obj, "unix_env")) {
        check_keys(ld, obj, unix_listen_keys);
        get_unix_path(ld, obj, &l->host);
        get_mode(ld, obj, &l->mode);
        l->port = 0;
    } else {
        check_keys(ld, obj, listen_keys);
        if (!get_host_port(ld, obj, 0, &l->host, &l->port) && !json_object_get(obj, "host") &&
            !json_object_get(obj, "host_env"))
            l->host = xstrdup("0.0.0.0"); /* like nginx: every interface */
    }
    json_t *tls = get_obj(ld, obj, "tls", 0, "expected an object {\"cert\", \"key\"}");
    if (tls) {
        size_t mark = jcheck_enter_key(&ld->jc, "tls");
        l->has_tls = true;
        check_keys(ld, tls, tls_keys);
        get_file(ld, tls, "cert", F_REQUIRED, &l->tls.cert);
        get_file(ld, tls, "key", F_REQUIRED, &l->tls.key);
        get_bool(ld, tls, "allow_plain", &l->tls.allow_plain);
        jcheck_leave(&ld->jc, mark);
    }
}

static void parse_listen(struct loader *ld, json_t *root)
{
    json_t *arr = get_arr(ld, root, "listen", F_REQUIRED | F_NONEMPTY,
                          "expected a non-empty array of {\"host\", \"port\"} objects");
    if (!arr)
        return;
    struct wsg_config *cfg = ld->cfg;
    cfg->n_listen = json_array_size(arr);
    cfg->listen = jcheck_calloc(cfg->n_listen, sizeof *cfg->listen);
    size_t mark = jcheck_enter_key(&ld->jc, "listen"), i;
    json_t *v;
    json_array_foreach (arr, i, v) {
        size_t m = jcheck_enter_index(&ld->jc, i);
        struct wsg_listen *l = &cfg->listen[i];
        parse_listen_one(ld, v, l);
        for (size_t j = 0; j < i && l->host && l->port; j++) {
            if (cfg->listen[j].port == l->port && cfg->listen[j].host &&
                strcasecmp(cfg->listen[j].host, l->host) == 0) {
                jcheck_error(&ld->jc, "duplicate of listen[%zu] (%s:%d)", j, l->host, l->port);
                break;
            }
        }
        for (size_t j = 0; j < i && l->host && wsg_listen_is_unix(l); j++) {
            if (wsg_listen_is_unix(&cfg->listen[j]) && cfg->listen[j].host &&
                strcmp(cfg->listen[j].host, l->host) == 0) {
                jcheck_error(&ld->jc, "duplicate of listen[%zu] (unix:%s)", j, l->host);
                break;
            }
        }
        jcheck_leave(&ld->jc, m);
    }
    jcheck_leave(&ld->jc, mark);
}

static void parse_origins(struct loader *ld, json_t *root)
{
    /* [] would read as "any origin" (the meaning of no list): say so instead. */
    json_t *arr = get_arr(ld, root, "origins", F_NONEMPTY,
                          "expected a non-empty array of origins (leave \"origins\" out to allow "
                          "any)");
    if (!arr)
        return;
    size_t mark = jcheck_enter_key(&ld->jc, "origins");
    ld->cfg->origins = get_str_list(ld, arr, origin_normalize,
                                    "expected an origin like \"https://app.example.com\" "
                                    "(scheme://host[:port], no path)",
                                    &ld->cfg->n_origins);
    jcheck_leave(&ld->jc, mark);
}

static void parse_limits(struct loader *ld, json_t *root)
{
    static const struct {
        const char *key;
        size_t offset;
    } fields[] = {
        {"max_connections", offsetof(struct wsg_limits, max_connections)},
        {"max_message_bytes", offsetof(struct wsg_limits, max_message_bytes)},
        {"max_queue_bytes", offsetof(struct wsg_limits, max_queue_bytes)},
        {"idle_timeout_s", offsetof(struct wsg_limits, idle_timeout_s)},
        {"ping_interval_s", offsetof(struct wsg_limits, ping_interval_s)},
        {"connect_timeout_ms", offsetof(struct wsg_limits, connect_timeout_ms)},
        {"max_messages_per_s", offsetof(struct wsg_limits, max_messages_per_s)},
    };
    static const struct key_spec keys[] = {
        {"max_connections", false},    {"max_message_bytes", false},
        {"max_queue_bytes", false},    {"idle_timeout_s", false},
        {"ping_interval_s", false},    {"connect_timeout_ms", false},
        {"max_messages_per_s", false}, {NULL, false},
    };
    json_t *obj = get_obj(ld, root, "limits", 0, "expected an object of integer limits");
    if (!obj)
        return;
    size_t mark = jcheck_enter_key(&ld->jc, "limits");
    check_keys(ld, obj, keys);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        /* 0 means "none" for every limit; the bound keeps values sane for int APIs. */
        int64_t *dst = (int64_t *)((char *)&ld->cfg->limits + fields[i].offset);
        get_int(ld, obj, fields[i].key, 0, 0, INT32_LIMIT, dst);
    }
    jcheck_leave(&ld->jc, mark);
}

static bool proxy_check(char *s) { return proxy_is_valid(s); }

static void parse_trusted_proxies(struct loader *ld, json_t *root)
{
    json_t *arr =
        get_arr(ld, root, "trusted_proxies", 0, "expected an array of IP addresses or CIDR blocks");
    if (!arr)
        return;
    size_t mark = jcheck_enter_key(&ld->jc, "trusted_proxies");
    ld->cfg->trusted_proxies =
        get_str_list(ld, arr, proxy_check,
                     "expected an IP address or CIDR block (\"10.0.0.1\", \"10.0.0.0/8\", "
                     "\"::1\", \"fd00::/8\")",
                     &ld->cfg->n_trusted_proxies);
    jcheck_leave(&ld->jc, mark);
}

static void parse_jwt(struct loader *ld, json_t *obj, struct wsg_jwt *jwt)
{
    static const struct key_spec keys[] = {
        {"secret", true},    {"public_key", true}, {"issuer", true}, {"audience", true},
        {"leeway_s", false}, {"cookie", true},     {NULL, false},
    };
    check_keys(ld, obj, keys);
    bool has_secret = json_object_get(obj, "secret") || json_object_get(obj, "secret_env");
    bool has_key = json_object_get(obj, "public_key") || json_object_get(obj, "public_key_env");
    if (has_secret && has_key)
        jcheck_error(&ld->jc,
                     "give either \"secret\" (HS256) or \"public_key\" (RS256/ES256), not both");
    else if (!has_secret && !has_key)
        jcheck_error(&ld->jc, "missing \"secret\" (HS256) or \"public_key\" (RS256/ES256)");
    get_plain_str(ld, obj, "secret", F_SECRET | F_NONEMPTY, &jwt->secret);
    get_file(ld, obj, "public_key", 0, &jwt->public_key);
    get_plain_str(ld, obj, "issuer", F_NONEMPTY, &jwt->issuer);
    get_plain_str(ld, obj, "audience", F_NONEMPTY, &jwt->audience);
    get_int(ld, obj, "leeway_s", 0, 0, 86400, &jwt->leeway_s);
    struct strval sv;
    if (get_str(ld, obj, "cookie", F_NONEMPTY, "expected a cookie name", &sv)) {
        if (token_is_valid(sv.s))
            jwt->cookie = xstrdup(sv.s);
        else
            bad_str(ld, &sv, "expected a cookie name (an RFC 7230 token)");
    }
}

/* "http://host[:port]/path": the auth service is asked in plain HTTP (it
 * sits beside the gateway; TLS to it is not supported yet). */
static bool auth_url_is_valid(const char *url)
{
    if (strncmp(url, "http://", 7) != 0 || strpbrk(url, " \t\r\n#"))
        return false;
    const char *a = url + 7;
    size_t n = strcspn(a, "/?");
    return n > 0 && parse_authority(a, n, false);
}

/* Header names are matched and sent in lower case. */
static bool header_name_check(char *s)
{
    if (!token_is_valid(s))
        return false;
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return true;
}

static void parse_auth_http(struct loader *ld, json_t *obj, struct wsg_auth_http *h)
{
    static const struct key_spec keys[] = {
        {"url", true}, {"timeout_ms", false}, {"cache_s", false}, {"headers", false}, {NULL, false},
    };
    check_keys(ld, obj, keys);
    struct strval sv;
    if (get_str(ld, obj, "url", F_REQUIRED | F_NONEMPTY, NULL, &sv)) {
        if (auth_url_is_valid(sv.s))
            h->url = xstrdup(sv.s);
        else
            bad_str(ld, &sv, "expected an URL \"http://host[:port]/path\"");
    }
    get_int(ld, obj, "timeout_ms", 0, 1, 600000, &h->timeout_ms);
    get_int(ld, obj, "cache_s", 0, 0, 86400, &h->cache_s);
    json_t *arr = get_arr(ld, obj, "headers", 0, "expected an array of header names");
    if (arr) {
        size_t mark = jcheck_enter_key(&ld->jc, "headers");
        h->headers =
            get_str_list(ld, arr, header_name_check, "expected a header name", &h->n_headers);
        jcheck_leave(&ld->jc, mark);
    }
}

static void parse_auth(struct loader *ld, json_t *root)
{
    static const struct key_spec keys[] = {
        {"jwt", false},
        {"http", false},
        {NULL, false},
    };
    json_t *obj =
        get_obj(ld, root, "auth", 0, "expected an object {\"jwt\": {...}, \"http\": {...}}");
    if (!obj)
        return;
    size_t mark = jcheck_enter_key(&ld->jc, "auth");
    check_keys(ld, obj, keys);
    ld->auth_given = json_object_get(obj, "jwt") != NULL;
    ld->auth_http_given = json_object_get(obj, "http") != NULL;
    if (!ld->auth_given && !ld->auth_http_given)
        jcheck_error(&ld->jc, "missing \"jwt\" or \"http\"");
    json_t *http = get_obj(ld, obj, "http", 0,
                           "expected an object {\"url\", \"timeout_ms\", \"cache_s\", "
                           "\"headers\"}");
    if (http) {
        size_t m = jcheck_enter_key(&ld->jc, "http");
        ld->cfg->auth.has_http = true;
        parse_auth_http(ld, http, &ld->cfg->auth.http);
        jcheck_leave(&ld->jc, m);
    }
    json_t *jwt = get_obj(ld, obj, "jwt", 0,
                          "expected an object {\"secret\" or \"public_key\", \"issuer\", "
                          "\"audience\", \"leeway_s\", \"cookie\"}");
    if (jwt) {
        size_t m = jcheck_enter_key(&ld->jc, "jwt");
        ld->cfg->auth.has_jwt = true;
        parse_jwt(ld, jwt, &ld->cfg->auth.jwt);
        jcheck_leave(&ld->jc, m);
    }
    jcheck_leave(&ld->jc, mark);
}

static void parse_static(struct loader *ld, json_t *root)
{
    static const struct key_spec keys[] = {
        {"mount", true},
        {"dir", true},
        {NULL, false},
    };
    json_t *obj = get_obj(ld, root, "static", 0, "expected an object {\"mount\", \"dir\"}");
    if (!obj)
        return;
    struct wsg_static *st = &ld->cfg->static_files;
    size_t mark = jcheck_enter_key(&ld->jc, "static");
    ld->cfg->has_static = true;
    check_keys(ld, obj, keys);
    struct strval sv;
    if (get_str(ld, obj, "mount", 0, "expected a URL path starting with \"/\"", &sv)) {
        if (mount_is_valid(sv.s))
            st->mount = xstrdup(sv.s);
        else
            bad_str(ld, &sv, "expected a URL path starting with \"/\"");
    } else if (!json_object_get(obj, "mount") && !json_object_get(obj, "mount_env")) {
        st->mount = xstrdup("/");
    }
    get_file(ld, obj, "dir", F_REQUIRED, &st->dir);
    jcheck_leave(&ld->jc, mark);
}

/* ------------------------------------------------------------------ brokers */

static const char uri_expected[] = "expected a broker URI \"tcp://host:port\" (schemes: tcp, mqtt, "
                                   "ssl, mqtts, ws, wss)";

static bool uri_check(char *s)
{
    bool tls;
    return broker_uri_is_valid(s, &tls);
}

/* Fills b->uris from "uri" or "uris"; true if any of them is a TLS one. */
static bool parse_broker_uris(struct loader *ld, json_t *obj, struct wsg_broker *b)
{
    bool has_uri = json_object_get(obj, "uri") || json_object_get(obj, "uri_env");
    json_t *uris = json_object_get(obj, "uris");
    if (has_uri && uris) {
        jcheck_error(&ld->jc, "give either \"uri\" or \"uris\", not both");
        return false;
    }
    if (!has_uri && !uris) {
        jcheck_error(&ld->jc, "missing \"uri\" (or \"uris\": several nodes of one cluster)");
        return false;
    }
    if (has_uri) {
        struct strval sv;
        if (!get_str(ld, obj, "uri", 0, uri_expected, &sv))
            return false;
        bool tls;
        if (!broker_uri_is_valid(sv.s, &tls)) {
            bad_str(ld, &sv, uri_expected);
            return false;
        }
        b->uris = jcheck_calloc(1, sizeof *b->uris);
        b->uris[0] = xstrdup(sv.s);
        b->n_uris = 1;
    } else {
        json_t *arr =
            get_arr(ld, obj, "uris", F_NONEMPTY, "expected a non-empty array of broker URIs");
        if (!arr)
            return false;
        size_t mark = jcheck_enter_key(&ld->jc, "uris");
        b->uris = get_str_list(ld, arr, uri_check, uri_expected, &b->n_uris);
        jcheck_leave(&ld->jc, mark);
    }
    bool any_tls = false;
    for (size_t i = 0; i < b->n_uris; i++) {
        bool tls = false;
        if (b->uris[i] && broker_uri_is_valid(b->uris[i], &tls) && tls)
            any_tls = true;
    }
    return any_tls;
}

static void parse_broker_tls(struct loader *ld, json_t *obj, struct wsg_broker *b, bool tls_uri)
{
    static const struct key_spec keys[] = {
        {"ca", true}, {"cert", true}, {"key", true}, {"insecure", false}, {NULL, false},
    };
    json_t *tls =
        get_obj(ld, obj, "tls", 0, "expected an object {\"ca\", \"cert\", \"key\", \"insecure\"}");
    if (!tls)
        return;
    size_t mark = jcheck_enter_key(&ld->jc, "tls");
    b->has_tls = true;
    check_keys(ld, tls, keys);
    get_file(ld, tls, "ca", 0, &b->tls.ca);
    get_file(ld, tls, "cert", 0, &b->tls.cert);
    get_file(ld, tls, "key", 0, &b->tls.key);
    get_bool(ld, tls, "insecure", &b->tls.insecure);
    /* The certificate file may hold the key too, but a key needs a certificate. */
    if (b->tls.key && !b->tls.cert)
        jcheck_error(&ld->jc, "\"key\" needs \"cert\" (the client certificate)");
    if (b->n_uris > 0 && !tls_uri)
        jcheck_error(&ld->jc, "TLS options need an \"ssl://\", \"mqtts://\" or \"wss://\" uri");
    jcheck_leave(&ld->jc, mark);
}

static void parse_broker(struct loader *ld, const char *name, json_t *obj, struct wsg_broker *b)
{
    static const struct key_spec keys[] = {
        {"uri", true},
        {"uris", false},
        {"client_id", true},
        {"version", true},
        {"username", true},
        {"password", true},
        {"keepalive_s", false},
        {"tls", false},
        {"persistent_session", false},
        {"session_expiry_s", false},
        {NULL, false},
    };
    static const char *const versions[] = {"3.1.1", "5", NULL};
    b->name = xstrdup(name);
    b->client_id = jcheck_asprintf("wsgate-%s", name);
    b->version = WSG_MQTT_311;
    b->keepalive_s = 30;
    b->session_expiry_s = 3600;
    if (!broker_name_is_valid(name))
        jcheck_error(&ld->jc, "a broker name may hold only letters, digits, '_', '.' and '-'");
    if (!json_is_object(obj)) {
        jcheck_value_error(&ld->jc, obj, false, "expected an object {\"uri\", \"client_id\", ...}");
        return;
    }
    check_keys(ld, obj, keys);
    bool tls_uri = parse_broker_uris(ld, obj, b);
    struct strval sv;
    if (get_str(ld, obj, "client_id", F_NONEMPTY, NULL, &sv)) {
        char *id = xstrdup(sv.s); /* before the free: xstrdup may jump (jcheck_run) */
        free(b->client_id);
        b->client_id = id;
    }
    int version;
    if (get_enum(ld, obj, "version", 0, versions, &version))
        b->version = version == 0 ? WSG_MQTT_311 : WSG_MQTT_5;
    get_plain_str(ld, obj, "username", 0, &b->username);
    get_plain_str(ld, obj, "password", F_SECRET, &b->password);
    /* MQTT 3.1.1 (3.1.2.9) forbids a password without a user name. */
    if (b->password && !b->username && b->version == WSG_MQTT_311)
        jcheck_error(&ld->jc, "\"password\" needs \"username\" with MQTT 3.1.1");
    get_int(ld, obj, "keepalive_s", 0, 1, 65535, &b->keepalive_s);
    get_bool(ld, obj, "persistent_session", &b->persistent_session);
    /* MQTT 5 Session Expiry Interval: 4 bytes, 0xFFFFFFFF = never. */
    if (get_int(ld, obj, "session_expiry_s", 0, 1, 4294967295LL, &b->session_expiry_s)) {
        size_t m = jcheck_enter_key(&ld->jc, "session_expiry_s");
        if (b->version != WSG_MQTT_5)
            jcheck_error(&ld->jc, "needs \"version\": \"5\" (MQTT 3.1.1 has no session "
                                  "expiry: the broker decides how long it keeps a session)");
        else if (!b->persistent_session)
            jcheck_error(&ld->jc, "needs \"persistent_session\": true");
        jcheck_leave(&ld->jc, m);
    }
    parse_broker_tls(ld, obj, b, tls_uri);
}

static void parse_brokers(struct loader *ld, json_t *root)
{
    json_t *obj = get_obj(ld, root, "brokers", 0,
                          "expected an object mapping broker names to {\"uri\", ...}");
    if (!obj)
        return;
    ld->brokers = obj;
    struct wsg_config *cfg = ld->cfg;
    cfg->brokers = jcheck_calloc(json_object_size(obj), sizeof *cfg->brokers);
    size_t mark = jcheck_enter_key(&ld->jc, "brokers");
    const char *name;
    json_t *v;
    json_object_foreach (obj, name, v) {
        size_t m = jcheck_enter_key(&ld->jc, name);
        parse_broker(ld, name, v, &cfg->brokers[cfg->n_brokers++]);
        jcheck_leave(&ld->jc, m);
    }
    jcheck_leave(&ld->jc, mark);
}

/* ------------------------------------------------------------------ routes */

/* What a route's templates may hold, and the MQTT syntax they must have. */
struct tmpl_ctx {
    const char *route_path; /* NULL if the path is bad: templates are not checked then */
    int kinds;              /* ROUTE_TMPL_* allowed besides the path's captures */
};

enum tmpl_syntax { SYNTAX_KEY, SYNTAX_TOPIC, SYNTAX_FILTER };

/* The template with every placeholder replaced by one level "x": what MQTT
 * syntax checks see (values are refused if they hold '/', '+' or '#'). */
static char *tmpl_sample(const char *tmpl)
{
    char *out = jcheck_calloc(strlen(tmpl) + 1, 1), *o = out;
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

static const char topic_expected[] = "expected an MQTT topic name (non-empty, no \"+\" or \"#\")";
static const char filter_expected[] = "expected an MQTT topic filter (non-empty, \"+\" only as a "
                                      "whole level, \"#\" only as the whole last level)";

static const char *syntax_expected(enum tmpl_syntax syntax)
{
    return syntax == SYNTAX_TOPIC    ? topic_expected
           : syntax == SYNTAX_FILTER ? filter_expected
                                     : "expected a non-empty string";
}

/* route.c says only that a placeholder "is not allowed here"; the config
 * knows why, so say that instead. For templates that are otherwise valid. */
static void explain_kind(const char *tmpl, int kinds, char *err, size_t len)
{
    for (const char *p = strchr(tmpl, '{'); p; p = strchr(p + 1, '{')) {
        int n = (int)strcspn(p + 1, "}");
        if (strncmp(p + 1, "jwt.", 4) == 0 && !(kinds & ROUTE_TMPL_JWT)) {
            snprintf(err, len, "{%.*s} needs \"auth\": \"jwt\" on the route", n, p + 1);
            return;
        }
        if (strncmp(p + 1, "auth.", 5) == 0 && !(kinds & ROUTE_TMPL_AUTH)) {
            snprintf(err, len, "{%.*s} needs \"auth\": \"http\" or \"jwt\" on the route", n, p + 1);
            return;
        }
        if (strncmp(p + 1, "msg.", 4) == 0 && !(kinds & ROUTE_TMPL_MSG)) {
            snprintf(err, len, "{%.*s} is only allowed in a raw \"publish\" topic", n, p + 1);
            return;
        }
    }
}

/* Checks a template value (placeholders, then MQTT syntax); true if good. */
static bool check_template(struct loader *ld, const struct tmpl_ctx *tc, const struct strval *sv,
                           int extra_kinds, enum tmpl_syntax syntax)
{
    if (sv->s[0] == '\0') {
        bad_str(ld, sv, syntax_expected(syntax));
        return false;
    }
    if (!tc->route_path)
        return true; /* the path's own error says it all; avoid echoes */
    char err[256];
    int kinds = tc->kinds | extra_kinds;
    if (route_template_validate(sv->s, tc->route_path, kinds, err, sizeof err)) {
        int all = kinds | ROUTE_TMPL_JWT | ROUTE_TMPL_AUTH | ROUTE_TMPL_MSG;
        char ignored[8];
        if (route_template_validate(sv->s, tc->route_path, all, ignored, sizeof ignored) == 0)
            explain_kind(sv->s, kinds, err, sizeof err); /* only the kind was wrong */
        bad_str(ld, sv, err);
        return false;
    }
    if (syntax == SYNTAX_KEY)
        return true;
    char *sample = tmpl_sample(sv->s);
    bool ok = syntax == SYNTAX_TOPIC ? topic_name_is_valid(sample) : topic_filter_is_valid(sample);
    free(sample);
    if (!ok)
        bad_str(ld, sv, syntax_expected(syntax));
    return ok;
}

/* A template-valued string field; stored only if it checks out. */
static void get_template(struct loader *ld, json_t *obj, const char *key, unsigned flags,
                         const struct tmpl_ctx *tc, int extra_kinds, enum tmpl_syntax syntax,
                         char **out)
{
    struct strval sv;
    if (get_str(ld, obj, key, flags, syntax_expected(syntax), &sv) &&
        check_template(ld, tc, &sv, extra_kinds, syntax))
        *out = xstrdup(sv.s);
}

static const struct key_spec target_keys[] = {
    {"host", true},
    {"port", false},
    {NULL, false},
};
static const struct key_spec unix_target_keys[] = {
    {"unix", true},
    {NULL, false},
};
static const char target_expected[] = "expected an object {\"host\", \"port\"} or {\"unix\"}";

/* A unix socket's path, resolved against base_dir: it must fit sun_path. */
static void get_unix_path(struct loader *ld, json_t *obj, char **out)
{
    struct strval sv;
    if (!get_str(ld, obj, "unix", F_REQUIRED | F_NONEMPTY, "expected a unix socket path", &sv))
        return;
    char *path = resolve_path(ld, sv.s);
    if (strlen(path) >= WSG_UNIX_PATH_MAX) {
        size_t mark = jcheck_enter_key(&ld->jc, sv.key);
        jcheck_error(&ld->jc, "expected a unix socket path under %d bytes, got %zu bytes",
                     WSG_UNIX_PATH_MAX, strlen(path));
        jcheck_leave(&ld->jc, mark);
        free(path);
        return;
    }
    *out = path;
}

static void parse_target(struct loader *ld, json_t *obj, struct wsg_target *t)
{
    if (!json_is_object(obj)) {
        jcheck_value_error(&ld->jc, obj, false, target_expected);
        return;
    }
    if (json_object_get(obj, "unix") || json_object_get(obj, "unix_env")) {
        check_keys(ld, obj, unix_target_keys);
        get_unix_path(ld, obj, &t->host);
        t->port = 0;
        return;
    }
    check_keys(ld, obj, target_keys);
    get_host_port(ld, obj, F_REQUIRED, &t->host, &t->port);
}

static void parse_targets(struct loader *ld, json_t *obj, struct wsg_route *r)
{
    json_t *arr = get_arr(ld, obj, "targets", F_NONEMPTY,
                          "expected a non-empty array of {\"host\", \"port\"} or {\"unix\"} "
                          "objects");
    if (!arr)
        return;
    r->n_targets = json_array_size(arr);
    r->targets = jcheck_calloc(r->n_targets, sizeof *r->targets);
    size_t mark = jcheck_enter_key(&ld->jc, "targets"), i;
    json_t *v;
    json_array_foreach (arr, i, v) {
        size_t m = jcheck_enter_index(&ld->jc, i);
        parse_target(ld, v, &r->targets[i]);
        jcheck_leave(&ld->jc, m);
    }
    jcheck_leave(&ld->jc, mark);
}

static void parse_target_map(struct loader *ld, json_t *obj, struct wsg_route *r,
                             const struct tmpl_ctx *tc)
{
    static const struct key_spec keys[] = {
        {"file", true},
        {"key", true},
        {NULL, false},
    };
    json_t *map = get_obj(ld, obj, "target_map", 0, "expected an object {\"file\", \"key\"}");
    if (!map)
        return;
    size_t mark = jcheck_enter_key(&ld->jc, "target_map");
    check_keys(ld, map, keys);
    get_file(ld, map, "file", F_REQUIRED, &r->target_map_file);
    get_template(ld, map, "key", F_REQUIRED, tc, 0, SYNTAX_KEY, &r->target_map_key);
    jcheck_leave(&ld->jc, mark);
}

static void parse_tcp_route(struct loader *ld, json_t *obj, struct wsg_route *r,
                            const struct tmpl_ctx *tc)
{
    static const char *const framings[] = {"raw", "lines", "length32", NULL};
    static const char *const messages[] = {"binary", "text", NULL};
    json_t *target = json_object_get(obj, "target");
    int given = (target != NULL) + (json_object_get(obj, "targets") != NULL) +
                (json_object_get(obj, "target_map") != NULL);
    if (given == 0)
        jcheck_error(&ld->jc, "missing \"target\", \"targets\" or \"target_map\"");
    else if (given > 1)
        jcheck_error(&ld->jc, "give only one of \"target\", \"targets\" or \"target_map\"");
    if (target && given == 1) {
        r->targets = jcheck_calloc(1, sizeof *r->targets);
        r->n_targets = 1;
        size_t mark = jcheck_enter_key(&ld->jc, "target");
        parse_target(ld, target, &r->targets[0]);
        jcheck_leave(&ld->jc, mark);
    } else if (given == 1) {
        parse_targets(ld, obj, r);
        parse_target_map(ld, obj, r, tc);
    }
    int v;
    if (get_enum(ld, obj, "framing", 0, framings, &v))
        r->framing = (enum wsg_framing)v;
    if (get_enum(ld, obj, "message", 0, messages, &v))
        r->message = (enum wsg_message)v;
    static const char *const proxy_versions[] = {"v1", "v2", NULL};
    if (get_enum(ld, obj, "send_proxy", 0, proxy_versions, &v))
        r->send_proxy = v + 1;
}

static bool parse_when(struct loader *ld, json_t *rule, struct wsg_publish_rule *pr)
{
    static const struct key_spec keys[] = {
        {"pointer", true},
        {"equals", false},
        {NULL, false},
    };
    json_t *when = get_obj(ld, rule, "when", 0, "expected an object {\"pointer\", \"equals\"}");
    if (!when)
        return json_object_get(rule, "when") != NULL;
    size_t mark = jcheck_enter_key(&ld->jc, "when");
    check_keys(ld, when, keys);
    static const char pointer_expected[] = "expected a JSON Pointer (\"\" or \"/a/b\", '~' only "
                                           "as \"~0\" or \"~1\")";
    struct strval sv;
    if (get_str(ld, when, "pointer", F_REQUIRED, pointer_expected, &sv)) {
        if (json_pointer_is_valid(sv.s))
            pr->when_pointer = xstrdup(sv.s);
        else
            bad_str(ld, &sv, pointer_expected);
    }
    json_t *equals = json_object_get(when, "equals");
    if (!equals) {
        jcheck_error(&ld->jc, "missing \"equals\"");
    } else {
        pr->when_equals = json_dumps(equals, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!pr->when_equals)
            jcheck_oom();
    }
    /* Both or neither, as config.h promises. */
    if (!pr->when_pointer || !pr->when_equals) {
        free(pr->when_pointer);
        free(pr->when_equals);
        pr->when_pointer = pr->when_equals = NULL;
    }
    jcheck_leave(&ld->jc, mark);
    return true;
}

/* One raw publish rule; returns true if it has a "when" (a filtered rule). */
static bool parse_publish_rule(struct loader *ld, json_t *rule, struct wsg_publish_rule *pr,
                               const struct tmpl_ctx *tc)
{
    static const struct key_spec keys[] = {
        {"when", false}, {"topic", true}, {"qos", false}, {"retain", false}, {NULL, false},
    };
    if (!json_is_object(rule)) {
        jcheck_value_error(&ld->jc, rule, false,
                           "expected an object {\"when\", \"topic\", \"qos\", \"retain\"}");
        return true;
    }
    check_keys(ld, rule, keys);
    bool filtered = parse_when(ld, rule, pr);
    get_template(ld, rule, "topic", F_REQUIRED, tc, ROUTE_TMPL_MSG, SYNTAX_TOPIC, &pr->topic);
    get_qos(ld, rule, &pr->qos);
    get_bool(ld, rule, "retain", &pr->retain);
    return filtered;
}

static void parse_raw_publish(struct loader *ld, json_t *pub, struct wsg_route *r,
                              const struct tmpl_ctx *tc)
{
    size_t mark = jcheck_enter_key(&ld->jc, "publish");
    if (json_is_object(pub)) {
        r->publish = jcheck_calloc(1, sizeof *r->publish);
        r->n_publish = 1;
        parse_publish_rule(ld, pub, &r->publish[0], tc);
    } else if (json_is_array(pub) && json_array_size(pub) > 0) {
        r->n_publish = json_array_size(pub);
        r->publish = jcheck_calloc(r->n_publish, sizeof *r->publish);
        size_t i, catch_all = SIZE_MAX;
        json_t *v;
        json_array_foreach (pub, i, v) {
            size_t m = jcheck_enter_index(&ld->jc, i);
            if (catch_all != SIZE_MAX && catch_all + 1 == i)
                jcheck_error(&ld->jc,
                             "never used: publish[%zu] has no \"when\" and takes every message",
                             catch_all);
            if (!parse_publish_rule(ld, v, &r->publish[i], tc) && catch_all == SIZE_MAX)
                catch_all = i;
            jcheck_leave(&ld->jc, m);
        }
    } else {
        jcheck_value_error(&ld->jc, pub, false,
                           "expected a rule {\"topic\", \"qos\", \"retain\"} or a non-empty "
                           "array of rules");
    }
    jcheck_leave(&ld->jc, mark);
}

static void parse_raw_subscribe(struct loader *ld, json_t *sub, struct wsg_route *r,
                                const struct tmpl_ctx *tc)
{
    static const struct key_spec keys[] = {
        {"filter", true},
        {"qos", false},
        {NULL, false},
    };
    size_t mark = jcheck_enter_key(&ld->jc, "subscribe");
    if (!json_is_array(sub) || json_array_size(sub) == 0) {
        jcheck_value_error(&ld->jc, sub, false,
                           "expected a non-empty array of {\"filter\", \"qos\"} objects");
        jcheck_leave(&ld->jc, mark);
        return;
    }
    r->n_subscribe = json_array_size(sub);
    r->subscribe = jcheck_calloc(r->n_subscribe, sizeof *r->subscribe);
    size_t i;
    json_t *v;
    json_array_foreach (sub, i, v) {
        size_t m = jcheck_enter_index(&ld->jc, i);
        if (!json_is_object(v)) {
            jcheck_value_error(&ld->jc, v, false, "expected an object {\"filter\", \"qos\"}");
        } else {
            check_keys(ld, v, keys);
            get_template(ld, v, "filter", F_REQUIRED, tc, 0, SYNTAX_FILTER,
                         &r->subscribe[i].filter);
            get_qos(ld, v, &r->subscribe[i].qos);
        }
        jcheck_leave(&ld->jc, m);
    }
    jcheck_leave(&ld->jc, mark);
}

/* "allow": a non-empty array of filter templates (envelope format). */
static void parse_allow(struct loader *ld, json_t *obj, const struct tmpl_ctx *tc, char ***list,
                        size_t *n)
{
    json_t *arr = get_arr(ld, obj, "allow", F_REQUIRED | F_NONEMPTY,
                          "expected a non-empty array of MQTT topic filters");
    if (!arr)
        return;
    *n = json_array_size(arr);
    /* In the route at once: check_template() may jump (jcheck_run). */
    char **out = *list = jcheck_calloc(*n, sizeof *out);
    size_t mark = jcheck_enter_key(&ld->jc, "allow"), i;
    json_t *v;
    json_array_foreach (arr, i, v) {
        size_t m = jcheck_enter_index(&ld->jc, i);
        /* An element has no key of its own: the path already points at it. */
        struct strval sv = {json_string_value(v), v, NULL, false};
        if (!sv.s)
            jcheck_value_error(&ld->jc, v, false, filter_expected);
        else if (check_template(ld, tc, &sv, 0, SYNTAX_FILTER))
            out[i] = xstrdup(sv.s);
        jcheck_leave(&ld->jc, m);
    }
    jcheck_leave(&ld->jc, mark);
}

static void parse_envelope(struct loader *ld, json_t *obj, struct wsg_route *r,
                           const struct tmpl_ctx *tc)
{
    static const struct key_spec pub_keys[] = {
        {"allow", false},
        {"qos", false},
        {NULL, false},
    };
    static const struct key_spec sub_keys[] = {
        {"allow", false},
        {NULL, false},
    };
    json_t *pub = get_obj(ld, obj, "publish", 0,
                          "expected an object {\"allow\": [filters], \"qos\": highest QoS}");
    if (pub) {
        size_t mark = jcheck_enter_key(&ld->jc, "publish");
        check_keys(ld, pub, pub_keys);
        parse_allow(ld, pub, tc, &r->publish_allow, &r->n_publish_allow);
        get_qos(ld, pub, &r->publish_qos_max);
        jcheck_leave(&ld->jc, mark);
    }
    json_t *sub = get_obj(ld, obj, "subscribe", 0, "expected an object {\"allow\": [filters]}");
    if (sub) {
        size_t mark = jcheck_enter_key(&ld->jc, "subscribe");
        check_keys(ld, sub, sub_keys);
        parse_allow(ld, sub, tc, &r->subscribe_allow, &r->n_subscribe_allow);
        jcheck_leave(&ld->jc, mark);
    }
}

static bool parse_presence(struct loader *ld, json_t *obj, const char *key, struct wsg_presence *p,
                           const struct tmpl_ctx *tc)
{
    static const struct key_spec keys[] = {
        {"topic", true}, {"payload", true}, {"qos", false}, {"retain", false}, {NULL, false},
    };
    json_t *pres = get_obj(ld, obj, key, 0,
                           "expected an object {\"topic\", \"payload\", \"qos\", \"retain\"}");
    if (!pres)
        return false;
    size_t mark = jcheck_enter_key(&ld->jc, key);
    check_keys(ld, pres, keys);
    get_template(ld, pres, "topic", F_REQUIRED, tc, 0, SYNTAX_TOPIC, &p->topic);
    struct strval sv;
    p->payload = xstrdup(get_str(ld, pres, "payload", 0, NULL, &sv) ? sv.s : "");
    get_qos(ld, pres, &p->qos);
    get_bool(ld, pres, "retain", &p->retain);
    jcheck_leave(&ld->jc, mark);
    return true;
}

static void parse_route_broker(struct loader *ld, json_t *obj, struct wsg_route *r)
{
    struct strval sv;
    if (!get_str(ld, obj, "broker", F_REQUIRED | F_NONEMPTY, NULL, &sv))
        return;
    if (ld->brokers && json_object_get(ld->brokers, sv.s)) {
        r->broker = xstrdup(sv.s);
        return;
    }
    char expected[256];
    size_t used = (size_t)snprintf(expected, sizeof expected,
                                   "expected the name of an entry in \"brokers\" (");
    const char *name;
    json_t *v;
    size_t n = 0;
    if (ld->brokers) {
        json_object_foreach (ld->brokers, name, v) {
            if (used < sizeof expected) {
                char q[JCHECK_GOT_CAP];
                quote(name, q, sizeof q);
                used += (size_t)snprintf(expected + used, sizeof expected - used, "%s%s",
                                         n++ ? ", " : "", q);
            }
        }
    }
    if (used < sizeof expected)
        snprintf(expected + used, sizeof expected - used, "%s)", n ? "" : "there is none");
    bad_str(ld, &sv, expected);
}

static void parse_mqtt_route(struct loader *ld, json_t *obj, struct wsg_route *r,
                             const struct tmpl_ctx *tc)
{
    static const char *const formats[] = {"raw", "envelope", NULL};
    parse_route_broker(ld, obj, r);
    int format = 0;
    bool format_ok = !json_object_get(obj, "format") && !json_object_get(obj, "format_env");
    if (get_enum(ld, obj, "format", 0, formats, &format))
        format_ok = true;
    r->format = (enum wsg_mqtt_format)format;
    json_t *pub = json_object_get(obj, "publish"), *sub = json_object_get(obj, "subscribe");
    if (!pub && !sub)
        jcheck_error(&ld->jc,
                     "missing \"publish\" or \"subscribe\" (an mqtt route needs at least one)");
    if (format_ok && r->format == WSG_FORMAT_RAW) {
        if (pub)
            parse_raw_publish(ld, pub, r, tc);
        if (sub)
            parse_raw_subscribe(ld, sub, r, tc);
    } else if (format_ok) {
        parse_envelope(ld, obj, r, tc);
    }
    static const char *const policies[] = {"drop", "close", NULL};
    int policy = 0;
    get_enum(ld, obj, "slow_consumer", 0, policies, &policy);
    r->slow_consumer = (enum wsg_slow_consumer)policy;
    r->has_on_connect = parse_presence(ld, obj, "on_connect", &r->on_connect, tc);
    r->has_on_disconnect = parse_presence(ld, obj, "on_disconnect", &r->on_disconnect, tc);
}

static const struct key_spec route_keys[] = {
    {"path", true},
    {"name", true},
    {"type", true},
    {"subprotocols", false},
    {"require_subprotocol", false},
    {"auth", true},
    {"compression", false},
    {"target", false},
    {"targets", false},
    {"target_map", false},
    {"framing", true},
    {"message", true},
    {"send_proxy", true},
    {"broker", true},
    {"format", true},
    {"publish", false},
    {"subscribe", false},
    {"on_connect", false},
    {"on_disconnect", false},
    {"slow_consumer", true},
    {NULL, false},
};

/* The route types the loader knows, one entry each: the "type" value, the
 * keys that only that type takes (all of them also in route_keys), and the
 * parser of those keys. A backend type's runtime side is its struct
 * backend_type (backend_type.h); this is its config side. */
struct route_type_schema {
    const char *name;
    enum wsg_route_type type;
    const char *const *own_keys;
    void (*parse)(struct loader *ld, json_t *obj, struct wsg_route *r, const struct tmpl_ctx *tc);
};

static const char *const tcp_route_keys[] = {"target",  "targets",    "target_map", "framing",
                                             "message", "send_proxy", NULL};
static const char *const mqtt_route_keys[] = {"broker",        "format",     "publish",
                                              "subscribe",     "on_connect", "on_disconnect",
                                              "slow_consumer", NULL};

static const struct route_type_schema route_types[] = {
    {"tcp", WSG_ROUTE_TCP, tcp_route_keys, parse_tcp_route},
    {"mqtt", WSG_ROUTE_MQTT, mqtt_route_keys, parse_mqtt_route},
};
#define N_ROUTE_TYPES (sizeof route_types / sizeof route_types[0])

static bool is_listed(const char *const *names, const char *name)
{
    for (size_t i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* Keys that belong to another route type are named as such, not as unknown. */
static void check_type_keys(struct loader *ld, json_t *obj, const struct route_type_schema *own)
{
    const char *key;
    json_t *v;
    json_object_foreach (obj, key, v) {
        const struct key_spec *spec = find_key(route_keys, key);
        if (!spec)
            spec = find_env_key(route_keys, key); /* "broker_env" is "broker" */
        if (!spec || is_listed(own->own_keys, spec->name))
            continue;
        for (size_t t = 0; t < N_ROUTE_TYPES; t++) {
            if (is_listed(route_types[t].own_keys, spec->name)) {
                size_t mark = jcheck_enter_key(&ld->jc, key);
                jcheck_error(&ld->jc, "only for type \"%s\"", route_types[t].name);
                jcheck_leave(&ld->jc, mark);
                break;
            }
        }
    }
}

static void parse_subprotocols(struct loader *ld, json_t *obj, struct wsg_route *r)
{
    json_t *arr = get_arr(ld, obj, "subprotocols", 0, "expected an array of subprotocol names");
    if (arr) {
        size_t mark = jcheck_enter_key(&ld->jc, "subprotocols"), i;
        r->n_subprotocols = json_array_size(arr);
        r->subprotocols = jcheck_calloc(r->n_subprotocols, sizeof *r->subprotocols);
        json_t *v;
        json_array_foreach (arr, i, v) {
            size_t m = jcheck_enter_index(&ld->jc, i);
            const char *s = json_string_value(v);
            if (!s || !token_is_valid(s)) {
                jcheck_value_error(&ld->jc, v, false,
                                   "expected a subprotocol name (an RFC 7230 token, e.g. "
                                   "\"binary\")");
            } else if (strncmp(s, "bearer.", 7) == 0) {
                /* "bearer.<jwt>" carries a token beside the real subprotocol. */
                jcheck_value_error(&ld->jc, v, false,
                                   "expected a subprotocol name not starting with \"bearer.\"");
            } else {
                for (size_t j = 0; j < i; j++) {
                    if (r->subprotocols[j] && strcmp(r->subprotocols[j], s) == 0) {
                        jcheck_error(&ld->jc, "\"%s\" is already subprotocols[%zu]", s, j);
                        s = NULL;
                        break;
                    }
                }
                if (s)
                    r->subprotocols[i] = xstrdup(s);
            }
            jcheck_leave(&ld->jc, m);
        }
        jcheck_leave(&ld->jc, mark);
    }
    get_bool(ld, obj, "require_subprotocol", &r->require_subprotocol);
    get_bool(ld, obj, "compression", &r->compression);
    if (r->require_subprotocol && json_array_size(arr) == 0) {
        size_t mark = jcheck_enter_key(&ld->jc, "require_subprotocol");
        jcheck_error(&ld->jc, "true needs a non-empty \"subprotocols\"");
        jcheck_leave(&ld->jc, mark);
    }
}

static void parse_route_auth(struct loader *ld, json_t *obj, struct wsg_route *r)
{
    static const char *const kinds[] = {"jwt", "http", NULL};
    int k;
    if (!get_enum(ld, obj, "auth", 0, kinds, &k))
        return;
    if (k == 1) {
        r->auth_http = true;
        if (!ld->auth_http_given) {
            size_t mark = jcheck_enter_key(&ld->jc, "auth");
            jcheck_error(&ld->jc, "\"http\" needs a top-level \"auth\": {\"http\": {...}}");
            jcheck_leave(&ld->jc, mark);
        }
        return;
    }
    r->auth_jwt = true;
    if (!ld->auth_given) {
        size_t mark = jcheck_enter_key(&ld->jc, "auth");
        jcheck_error(&ld->jc, "\"jwt\" needs a top-level \"auth\": {\"jwt\": {...}}");
        jcheck_leave(&ld->jc, mark);
    }
}

static void parse_route(struct loader *ld, json_t *obj, struct wsg_route *r)
{
    const char *types[N_ROUTE_TYPES + 1] = {NULL};
    for (size_t t = 0; t < N_ROUTE_TYPES; t++)
        types[t] = route_types[t].name;
    r->publish_qos_max = 2;
    if (!json_is_object(obj)) {
        jcheck_value_error(&ld->jc, obj, false,
                           "expected a route object {\"path\", \"type\", ...}");
        return;
    }
    check_keys(ld, obj, route_keys);
    struct strval sv;
    char err[256];
    if (get_str(ld, obj, "path", F_REQUIRED | F_NONEMPTY, "expected a path pattern like \"/x\"",
                &sv)) {
        if (route_pattern_validate(sv.s, err, sizeof err) == 0)
            r->path = xstrdup(sv.s);
        else
            bad_str(ld, &sv, err);
    }
    if (get_str(ld, obj, "name", F_NONEMPTY, NULL, &sv))
        r->name = xstrdup(sv.s);
    else if (r->path && !json_object_get(obj, "name") && !json_object_get(obj, "name_env"))
        r->name = xstrdup(r->path);
    int type;
    bool type_ok = get_enum(ld, obj, "type", F_REQUIRED, types, &type);
    parse_subprotocols(ld, obj, r);
    parse_route_auth(ld, obj, r);
    if (!type_ok)
        return;
    const struct route_type_schema *schema = &route_types[type];
    r->type = schema->type;
    check_type_keys(ld, obj, schema);
    /* A bad "auth" value still allows {jwt.x}: one error, not one per template. */
    bool any = json_object_get(obj, "auth") || json_object_get(obj, "auth_env");
    bool jwt = !r->auth_http && (r->auth_jwt || any);
    struct tmpl_ctx tc = {r->path, ROUTE_TMPL_QUERY | (jwt ? ROUTE_TMPL_JWT : 0) |
                                       (any ? ROUTE_TMPL_AUTH : 0)};
    schema->parse(ld, obj, r, &tc);
}

/* Names label metrics and logs; a second route with the same path would never match. */
static void check_route_unique(struct loader *ld, json_t *obj, size_t i)
{
    const struct wsg_route *routes = ld->cfg->routes, *r = &routes[i];
    for (size_t j = 0; j < i && r->path; j++) {
        if (routes[j].path && strcmp(routes[j].path, r->path) == 0) {
            size_t mark = jcheck_enter_key(&ld->jc, "path");
            jcheck_error(&ld->jc, "same as routes[%zu].path: routes[%zu] could never match", j, i);
            jcheck_leave(&ld->jc, mark);
            return;
        }
    }
    bool named = json_object_get(obj, "name") || json_object_get(obj, "name_env");
    for (size_t j = 0; j < i && r->name; j++) {
        if (routes[j].name && strcmp(routes[j].name, r->name) == 0) {
            size_t mark = named ? jcheck_enter_key(&ld->jc, "name") : jcheck_mark(&ld->jc);
            char q[JCHECK_GOT_CAP];
            quote(r->name, q, sizeof q);
            jcheck_error(&ld->jc, "%sname %s is already the name of routes[%zu]",
                         named ? "" : "the default ", q, j);
            jcheck_leave(&ld->jc, mark);
            return;
        }
    }
}

static void parse_routes(struct loader *ld, json_t *root)
{
    json_t *arr = get_arr(ld, root, "routes", 0, "expected an array of route objects");
    if (!arr)
        return;
    struct wsg_config *cfg = ld->cfg;
    cfg->n_routes = json_array_size(arr);
    cfg->routes = jcheck_calloc(cfg->n_routes, sizeof *cfg->routes);
    size_t mark = jcheck_enter_key(&ld->jc, "routes"), i;
    json_t *v;
    json_array_foreach (arr, i, v) {
        size_t m = jcheck_enter_index(&ld->jc, i);
        parse_route(ld, v, &cfg->routes[i]);
        check_route_unique(ld, v, i);
        jcheck_leave(&ld->jc, m);
    }
    jcheck_leave(&ld->jc, mark);
}

/* "workers": a count, or "auto" (one per CPU this process may run on, resolved
 * at start by the caller: the config stays a pure description). */
static void parse_workers(struct loader *ld, json_t *root)
{
    json_t *v = json_object_get(root, "workers");
    if (!v)
        return;
    if (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0) {
        ld->cfg->workers = 0;
        return;
    }
    int64_t n;
    if (json_is_integer(v)) {
        if (get_int(ld, root, "workers", 0, 1, WSG_MAX_WORKERS, &n))
            ld->cfg->workers = (unsigned)n;
        return;
    }
    char expected[80];
    snprintf(expected, sizeof expected, "expected an integer 1..%d or \"auto\"", WSG_MAX_WORKERS);
    size_t mark = jcheck_enter_key(&ld->jc, "workers");
    jcheck_value_error(&ld->jc, v, false, expected);
    jcheck_leave(&ld->jc, mark);
}

/* ------------------------------------------------------------- entry points */

static const struct key_spec root_keys[] = {
    {"listen", false},          {"workers", false}, {"origins", false}, {"limits", false},
    {"trusted_proxies", false}, {"auth", false},    {"static", false},  {"brokers", false},
    {"routes", false},          {NULL, false},
};

static void parse_root(struct loader *ld, json_t *root)
{
    if (!json_is_object(root)) {
        jcheck_value_error(&ld->jc, root, false, "expected a JSON object at the top level");
        return;
    }
    check_keys(ld, root, root_keys);
    parse_workers(ld, root);
    parse_listen(ld, root);
    parse_origins(ld, root);
    parse_limits(ld, root);
    parse_trusted_proxies(ld, root);
    parse_auth(ld, root); /* before routes: "auth": "jwt" needs it */
    parse_static(ld, root);
    parse_brokers(ld, root); /* before routes: they name brokers */
    parse_routes(ld, root);
}

/* In ld->cfg from its first byte, so that out of memory (jcheck_run) finds it. */
static void config_new(struct loader *ld, const char *source, const char *base_dir)
{
    struct wsg_config *cfg = ld->cfg = jcheck_calloc(1, sizeof *cfg);
    cfg->source = xstrdup(source);
    cfg->base_dir = xstrdup(base_dir ? base_dir : ".");
    cfg->limits = (struct wsg_limits){
        .max_connections = 100000,
        .max_message_bytes = 1048576,
        .max_queue_bytes = 1048576,
        .idle_timeout_s = 0,
        .ping_interval_s = 30,
        .connect_timeout_ms = 5000,
        .max_messages_per_s = 0,
    };
    cfg->auth.jwt.leeway_s = 30;
    cfg->auth.http.timeout_ms = 2000;
    cfg->workers = 1;
}

/* One load, run by jcheck_run(): everything it allocates hangs in ld.cfg
 * as soon as it exists (counts may be set before their arrays: config_free
 * copes), so on out of memory config_free() finds all of it. */
struct load_job {
    struct loader ld;
    json_t *root; /* borrowed: the caller's document, released by the caller */
    const char *source, *base_dir;
};

static void build_config(void *ctx)
{
    struct load_job *job = ctx;
    config_new(&job->ld, job->source, job->base_dir);
    parse_root(&job->ld, job->root);
}

/* Validates a parsed document; the config, or NULL with errors appended
 * ("<source>: out of memory" when memory ran out: see json_check.h). */
static struct wsg_config *load_root(json_t *root, const char *source, const char *base_dir,
                                    struct config_errors *errs)
{
    struct load_job job = {
        .ld = {.base_dir = base_dir}, .root = root, .source = source, .base_dir = base_dir};
    jcheck_begin(&job.ld.jc, source, errs);
    if (jcheck_run(build_config, &job) != 0) {
        config_free(job.ld.cfg);
        jcheck_out_of_memory(errs, source);
        return NULL;
    }
    if (jcheck_end(&job.ld.jc) == 0)
        return job.ld.cfg;
    config_free(job.ld.cfg);
    return NULL;
}

/* Callers may pass NULL for errs when they only want success or failure. */
static struct wsg_config *finish(struct wsg_config *cfg, struct config_errors *errs,
                                 struct config_errors *scratch)
{
    if (errs == scratch)
        config_errors_free(scratch);
    return cfg;
}

struct wsg_config *config_load_string(const char *json_text, const char *source_name,
                                      const char *base_dir, struct config_errors *errs)
{
    struct config_errors scratch = {0};
    if (!errs)
        errs = &scratch;
    const char *source = source_name ? source_name : "<string>";
    if (!json_text) {
        jcheck_add_line(errs, "%s: no config text", source);
        return finish(NULL, errs, &scratch);
    }
    json_error_t jerr;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        jcheck_syntax_error(errs, source, &jerr, NULL);
        return finish(NULL, errs, &scratch);
    }
    struct wsg_config *cfg = load_root(root, source, base_dir, errs);
    json_decref(root);
    return finish(cfg, errs, &scratch);
}

/* The directory part of `path` as written: "etc/wsgate.json" -> "etc";
 * NULL when memory is out. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

struct wsg_config *config_load_file(const char *path, struct config_errors *errs)
{
    struct config_errors scratch = {0};
    if (!errs)
        errs = &scratch;
    FILE *f = fopen(path, "r");
    if (!f) {
        jcheck_add_line(errs, "%s: cannot open: %s", path, strerror(errno));
        return finish(NULL, errs, &scratch);
    }
    json_error_t jerr;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!root) {
        jcheck_syntax_error(errs, path, &jerr, NULL);
        return finish(NULL, errs, &scratch);
    }
    char *dir = dir_of(path);
    struct wsg_config *cfg = NULL;
    if (dir)
        cfg = load_root(root, path, dir, errs);
    else
        jcheck_out_of_memory(errs, path);
    free(dir);
    json_decref(root);
    return finish(cfg, errs, &scratch);
}

struct wsg_config *config_load_default(const char *www_dir, struct config_errors *errs)
{
    struct config_errors scratch = {0};
    if (!errs)
        errs = &scratch;
    json_error_t jerr;
    /* The text is a constant: only memory can make these fail. */
    json_t *root = json_loads(default_json, 0, &jerr);
    if (root && www_dir &&
        json_object_set_new(root, "static",
                            json_pack("{s:s, s:s}", "mount", "/", "dir", www_dir)) != 0) {
        json_decref(root);
        root = NULL;
    }
    if (!root) {
        jcheck_out_of_memory(errs, builtin_source);
        return finish(NULL, errs, &scratch);
    }
    struct wsg_config *cfg = load_root(root, builtin_source, NULL, errs);
    json_decref(root);
    return finish(cfg, errs, &scratch);
}

/* ------------------------------------------------------------------ freeing */

/* A load cut short by out of memory may leave a count set before its array
 * exists: every loop over an array checks the array first. */
static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void free_route(struct wsg_route *r)
{
    free(r->name);
    free(r->path);
    free_strv(r->subprotocols, r->n_subprotocols);
    for (size_t i = 0; r->targets && i < r->n_targets; i++)
        free(r->targets[i].host);
    free(r->targets);
    free(r->target_map_file);
    free(r->target_map_key);
    free(r->broker);
    for (size_t i = 0; r->publish && i < r->n_publish; i++) {
        free(r->publish[i].when_pointer);
        free(r->publish[i].when_equals);
        free(r->publish[i].topic);
    }
    free(r->publish);
    for (size_t i = 0; r->subscribe && i < r->n_subscribe; i++)
        free(r->subscribe[i].filter);
    free(r->subscribe);
    free_strv(r->publish_allow, r->n_publish_allow);
    free_strv(r->subscribe_allow, r->n_subscribe_allow);
    free(r->on_connect.topic);
    free(r->on_connect.payload);
    free(r->on_disconnect.topic);
    free(r->on_disconnect.payload);
}

static void free_broker(struct wsg_broker *b)
{
    free(b->name);
    free_strv(b->uris, b->n_uris);
    free(b->client_id);
    free(b->username);
    if (b->password) {
        /* Do not leave the secret lying around in freed memory. */
        explicit_bzero(b->password, strlen(b->password));
        free(b->password);
    }
    free(b->tls.ca);
    free(b->tls.cert);
    free(b->tls.key);
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

struct broker_copy {
    const struct wsg_broker *from;
    struct wsg_broker *to; /* built in place, so that out of memory frees it */
};

static void build_broker_copy(void *ctx)
{
    struct broker_copy *job = ctx;
    const struct wsg_broker *b = job->from;
    struct wsg_broker *c = job->to = jcheck_calloc(1, sizeof(*c));
    *c = *b;
    /* Nothing of b's may be freed with c: its strings are filled in below. */
    c->name = c->client_id = c->username = c->password = NULL;
    c->tls.ca = c->tls.cert = c->tls.key = NULL;
    c->uris = NULL;
    c->name = xstrdup(b->name);
    c->uris = jcheck_calloc(b->n_uris ? b->n_uris : 1, sizeof(*c->uris));
    for (size_t i = 0; i < b->n_uris; i++)
        c->uris[i] = xstrdup(b->uris[i]);
    c->client_id = dup_or_null(b->client_id);
    c->username = dup_or_null(b->username);
    c->password = dup_or_null(b->password);
    c->tls.ca = dup_or_null(b->tls.ca);
    c->tls.cert = dup_or_null(b->tls.cert);
    c->tls.key = dup_or_null(b->tls.key);
}

struct wsg_broker *config_broker_copy(const struct wsg_broker *b)
{
    struct broker_copy job = {b, NULL};
    if (jcheck_run(build_broker_copy, &job) == 0)
        return job.to;
    config_broker_free(job.to);
    return NULL;
}

void config_broker_free(struct wsg_broker *b)
{
    if (!b)
        return;
    free_broker(b);
    free(b);
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool config_broker_equal(const struct wsg_broker *a, const struct wsg_broker *b)
{
    if (!same_str(a->name, b->name) || a->n_uris != b->n_uris || a->version != b->version ||
        a->keepalive_s != b->keepalive_s || a->has_tls != b->has_tls ||
        a->persistent_session != b->persistent_session ||
        a->session_expiry_s != b->session_expiry_s || a->tls.insecure != b->tls.insecure ||
        !same_str(a->client_id, b->client_id) || !same_str(a->username, b->username) ||
        !same_str(a->password, b->password) || !same_str(a->tls.ca, b->tls.ca) ||
        !same_str(a->tls.cert, b->tls.cert) || !same_str(a->tls.key, b->tls.key))
        return false;
    for (size_t i = 0; i < a->n_uris; i++)
        if (!same_str(a->uris[i], b->uris[i]))
            return false;
    return true;
}

void config_free(struct wsg_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->source);
    free(cfg->base_dir);
    for (size_t i = 0; cfg->listen && i < cfg->n_listen; i++) {
        free(cfg->listen[i].host);
        free(cfg->listen[i].tls.cert);
        free(cfg->listen[i].tls.key);
    }
    free(cfg->listen);
    free_strv(cfg->origins, cfg->n_origins);
    free_strv(cfg->trusted_proxies, cfg->n_trusted_proxies);
    if (cfg->auth.jwt.secret) {
        explicit_bzero(cfg->auth.jwt.secret, strlen(cfg->auth.jwt.secret));
        free(cfg->auth.jwt.secret);
    }
    free(cfg->auth.jwt.public_key);
    free(cfg->auth.jwt.issuer);
    free(cfg->auth.jwt.audience);
    free(cfg->auth.jwt.cookie);
    free(cfg->auth.http.url);
    free_strv(cfg->auth.http.headers, cfg->auth.http.n_headers);
    free(cfg->static_files.mount);
    free(cfg->static_files.dir);
    for (size_t i = 0; cfg->brokers && i < cfg->n_brokers; i++)
        free_broker(&cfg->brokers[i]);
    free(cfg->brokers);
    for (size_t i = 0; cfg->routes && i < cfg->n_routes; i++)
        free_route(&cfg->routes[i]);
    free(cfg->routes);
    free(cfg);
}

void config_errors_free(struct config_errors *errs)
{
    if (!errs)
        return;
    jcheck_free_lines(errs->lines, errs->count); /* may be a static "out of memory" */
    errs->lines = NULL;
    errs->count = 0;
}

const struct wsg_route *config_route_by_name(const struct wsg_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_routes; i++) {
        if (cfg->routes[i].name && strcmp(cfg->routes[i].name, name) == 0)
            return &cfg->routes[i];
    }
    return NULL;
}

const struct wsg_broker *config_broker_by_name(const struct wsg_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_brokers; i++) {
        if (strcmp(cfg->brokers[i].name, name) == 0)
            return &cfg->brokers[i];
    }
    return NULL;
}

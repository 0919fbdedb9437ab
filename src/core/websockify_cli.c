/* websockify_cli.c - websockify's command line into a wsgate config (JSON
 * text for config_load_string) and process settings; see websockify_cli.h.
 * Spellings follow websockify 0.10's optparse: "--opt=value" or "--opt value",
 * a unique prefix of a long option, options before or after the positional
 * arguments, and exit status 2 for every mistake. */
#include "websockify_cli.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char websockify_cli_usage[] =
    "       wsgate [options] [source_addr:]source_port [target_addr:target_port]\n"
    "\n"
    "The second form is websockify's command line: no config file, one listener,\n"
    "every path relays to the target (raw bytes, the \"binary\" subprotocol or none,\n"
    "any Origin). websockify's options, same names and meanings:\n"
    "      --web DIR           serve the files in DIR on the same port\n"
    "      --cert FILE         TLS certificate (PEM; default ./self.pem if it exists);\n"
    "                          plain connections still accepted\n"
    "      --key FILE          its key, if not in the certificate file\n"
    "      --ssl-only          refuse plain connections\n"
    "      --unix-target PATH  relay to a unix socket instead of target_addr:target_port\n"
    "      --token-plugin TokenFile --token-source FILE|DIR\n"
    "                          the target per connection from ?token=, looked up in\n"
    "                          lines \"token: host:port\" (a file or a directory of\n"
    "                          them; re-read when they change); --target-config FILE\n"
    "                          is the same\n"
    "      --heartbeat N       ping every client every N seconds\n"
    "      --idle-timeout N    exit after N seconds with no connection\n"
    "  -v, --verbose           debug log lines\n"
    "      --log-file FILE     log lines to FILE instead of stderr\n"
    "Other websockify options are refused (exit status 2), as is -c with this form;\n"
    "--log-level works in both.\n";

/* ------------------------------------------------------------ the options */

enum opt_id {
    OPT_HELP,
    OPT_VERBOSE,
    OPT_WEB,
    OPT_CERT,
    OPT_KEY,
    OPT_SSL_ONLY,
    OPT_UNIX_TARGET,
    OPT_TOKEN_PLUGIN,
    OPT_TOKEN_SOURCE,
    OPT_TARGET_CONFIG,
    OPT_HEARTBEAT,
    OPT_IDLE_TIMEOUT,
    OPT_LOG_FILE,
    OPT_LOG_LEVEL,   /* wsgate's own, and allowed here too */
    OPT_UNSUPPORTED, /* websockify has it, wsgate does not */
    OPT_OWN,         /* wsgate's own, which cannot be mixed with this form */
};

struct opt_spec {
    const char *name; /* long name without "--" */
    char short_name;  /* or 0 */
    bool has_arg;
    enum opt_id id;
};

/* Every option of websockify 0.10 (`websockify --help`), and wsgate's own. */
static const struct opt_spec specs[] = {
    {"help", 'h', false, OPT_HELP},
    {"verbose", 'v', false, OPT_VERBOSE},
    {"web", 0, true, OPT_WEB},
    {"cert", 0, true, OPT_CERT},
    {"key", 0, true, OPT_KEY},
    {"ssl-only", 0, false, OPT_SSL_ONLY},
    {"unix-target", 0, true, OPT_UNIX_TARGET},
    {"token-plugin", 0, true, OPT_TOKEN_PLUGIN},
    {"token-source", 0, true, OPT_TOKEN_SOURCE},
    {"target-config", 0, true, OPT_TARGET_CONFIG},
    {"heartbeat", 0, true, OPT_HEARTBEAT},
    {"idle-timeout", 0, true, OPT_IDLE_TIMEOUT},
    {"log-file", 0, true, OPT_LOG_FILE},
    {"traffic", 0, false, OPT_UNSUPPORTED},
    {"record", 0, true, OPT_UNSUPPORTED},
    {"daemon", 'D', false, OPT_UNSUPPORTED},
    {"run-once", 0, false, OPT_UNSUPPORTED},
    {"timeout", 0, true, OPT_UNSUPPORTED},
    {"key-password", 0, true, OPT_UNSUPPORTED},
    {"ssl-target", 0, false, OPT_UNSUPPORTED},
    {"verify-client", 0, false, OPT_UNSUPPORTED},
    {"cafile", 0, true, OPT_UNSUPPORTED},
    {"ssl-version", 0, true, OPT_UNSUPPORTED},
    {"ssl-ciphers", 0, true, OPT_UNSUPPORTED},
    {"inetd", 0, false, OPT_UNSUPPORTED},
    {"web-auth", 0, false, OPT_UNSUPPORTED},
    {"wrap-mode", 0, true, OPT_UNSUPPORTED},
    {"prefer-ipv6", '6', false, OPT_UNSUPPORTED},
    {"libserver", 0, false, OPT_UNSUPPORTED},
    {"host-token", 0, false, OPT_UNSUPPORTED},
    {"auth-plugin", 0, true, OPT_UNSUPPORTED},
    {"auth-source", 0, true, OPT_UNSUPPORTED},
    {"syslog", 0, true, OPT_UNSUPPORTED},
    {"legacy-syslog", 0, false, OPT_UNSUPPORTED},
    {"config", 'c', true, OPT_OWN},
    {"check", 0, false, OPT_OWN},
    {"log-level", 0, true, OPT_LOG_LEVEL},
    {"version", 0, false, OPT_OWN},
};
#define N_SPECS (sizeof(specs) / sizeof(specs[0]))

/* The plugins that mean websockify's token files. */
static const char *const token_file_plugins[] = {
    "TokenFile",
    "ReadOnlyTokenFile",
    "websockify.token_plugins.TokenFile",
    "websockify.token_plugins.ReadOnlyTokenFile",
};

__attribute__((format(printf, 3, 4))) static enum websockify_cli_status
fail(char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        int n = snprintf(err, err_len, "wsgate: ");
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < err_len)
            vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return WEBSOCKIFY_CLI_ERROR;
}

/* "--name" exactly, else a unique prefix of one (as optparse allows). NULL
 * with *ambiguous set if several match. */
static const struct opt_spec *find_long(const char *name, size_t len, bool *ambiguous)
{
    const struct opt_spec *found = NULL;
    *ambiguous = false;
    for (size_t i = 0; i < N_SPECS; i++) {
        if (strncmp(specs[i].name, name, len) != 0)
            continue;
        if (specs[i].name[len] == '\0')
            return &specs[i];
        if (found)
            *ambiguous = true;
        found = &specs[i];
    }
    return *ambiguous ? NULL : found;
}

static const struct opt_spec *find_short(char c)
{
    for (size_t i = 0; i < N_SPECS; i++)
        if (specs[i].short_name == c)
            return &specs[i];
    return NULL;
}

/* An option that only websockify has (supported or not): it switches to
 * websockify's form. wsgate's own and --help do not; an option neither has
 * is left to wsgate's own parser, which says so. */
static bool is_websockify_option(const char *a)
{
    const struct opt_spec *o = NULL;
    if (a[1] == '-') {
        size_t len = strcspn(a + 2, "=");
        bool ambiguous;
        o = find_long(a + 2, len, &ambiguous);
    } else {
        o = find_short(a[1]);
    }
    return o && o->id != OPT_OWN && o->id != OPT_HELP && o->id != OPT_LOG_LEVEL;
}

bool websockify_cli_wanted(int argc, char *const *argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            return true; /* a positional argument */
        if (strcmp(a, "--") == 0)
            return true; /* websockify's "-- WRAP_COMMAND_LINE" */
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 || strcmp(a, "--log-level") == 0) {
            i++; /* its value is no positional argument */
            continue;
        }
        if (is_websockify_option(a))
            return true;
    }
    return false;
}

/* ------------------------------------------------------ values and targets */

/* A whole number 0..INT_MAX, as optparse's type=int wants it. */
static bool parse_count(const char *s, unsigned *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > INT_MAX)
        return false;
    *out = (unsigned)v;
    return true;
}

static bool parse_port(const char *s, int *port)
{
    unsigned v;
    if (!parse_count(s, &v) || v < 1 || v > 65535)
        return false;
    *port = (int)v;
    return true;
}

/* "[host:]port" (listen) or "host:port" (target), split at the last ':' with
 * brackets around the host dropped, as websockify does. `host` is malloc'd,
 * or NULL if there was none. */
static bool split_host_port(const char *arg, bool host_required, char **host, int *port)
{
    const char *colon = strrchr(arg, ':');
    *host = NULL;
    if (!colon)
        return !host_required && parse_port(arg, port);
    if (!parse_port(colon + 1, port))
        return false;
    const char *h = arg;
    size_t len = (size_t)(colon - arg);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']')
        h++, len -= 2;
    if (len == 0)
        return !host_required;
    *host = strndup(h, len);
    return *host != NULL;
}

/* ------------------------------------------------------- the translation */

/* What the command line said, before it becomes JSON. Strings borrowed from argv. */
struct parsed {
    const char *positional[3];
    size_t n_positional;
    const char *web, *cert, *key, *unix_target, *token_plugin, *token_source, *log_file;
    const char *log_level;
    bool ssl_only, verbose, target_config;
    unsigned heartbeat_s, idle_timeout_s;
};

static void set_new(json_t *obj, const char *key, json_t *value)
{
    if (!value || json_object_set_new(obj, key, value) != 0)
        abort(); /* out of memory: as the config loader, give up */
}

/* The listener, the route and the limits a websockify command line means. */
static char *build_json(const struct parsed *p, const char *listen_host, int listen_port,
                        const char *target_host, int target_port)
{
    json_t *root = json_object();
    json_t *listen = json_object();
    set_new(listen, "host", json_string(listen_host ? listen_host : "0.0.0.0"));
    set_new(listen, "port", json_integer(listen_port));
    if (p->cert) {
        json_t *tls = json_object();
        set_new(tls, "cert", json_string(p->cert));
        /* websockify reads the key from the certificate file unless told. */
        set_new(tls, "key", json_string(p->key ? p->key : p->cert));
        set_new(tls, "allow_plain", json_boolean(!p->ssl_only));
        set_new(listen, "tls", tls);
    }
    set_new(root, "listen", json_pack("[o]", listen));

    json_t *limits = json_object();
    /* websockify pings only when asked to. */
    set_new(limits, "ping_interval_s", json_integer(p->heartbeat_s));
    set_new(root, "limits", limits);
    if (p->web)
        set_new(root, "static", json_pack("{s:s, s:s}", "mount", "/", "dir", p->web));

    json_t *route = json_pack("{s:s, s:s, s:s, s:[s]}", "name", "websockify", "path", "/**", "type",
                              "tcp", "subprotocols", "binary");
    if (!route)
        abort();
    if (p->token_plugin)
        set_new(route, "target_map",
                json_pack("{s:s, s:s}", "file", p->token_source, "key", "{query.token}"));
    else if (p->unix_target)
        set_new(route, "target", json_pack("{s:s}", "unix", p->unix_target));
    else
        set_new(route, "target", json_pack("{s:s, s:i}", "host", target_host, "port", target_port));
    set_new(root, "routes", json_pack("[o]", route));

    char *text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (!text)
        abort();
    return text;
}

static bool is_token_file_plugin(const char *name)
{
    for (size_t i = 0; i < sizeof(token_file_plugins) / sizeof(token_file_plugins[0]); i++)
        if (strcmp(name, token_file_plugins[i]) == 0)
            return true;
    return false;
}

/* The option's value into p; an error status for a bad one. */
static enum websockify_cli_status take(struct parsed *p, const struct opt_spec *o,
                                       const char *shown, const char *value, char *err,
                                       size_t err_len)
{
    switch (o->id) {
    case OPT_HELP:
        return WEBSOCKIFY_CLI_HELP;
    case OPT_VERBOSE:
        p->verbose = true;
        break;
    case OPT_WEB:
        p->web = value;
        break;
    case OPT_CERT:
        p->cert = value;
        break;
    case OPT_KEY:
        p->key = value;
        break;
    case OPT_SSL_ONLY:
        p->ssl_only = true;
        break;
    case OPT_UNIX_TARGET:
        p->unix_target = value;
        break;
    case OPT_TOKEN_PLUGIN:
        if (!is_token_file_plugin(value))
            return fail(err, err_len,
                        "--token-plugin %s is not supported: only TokenFile (token files, "
                        "\"token: host:port\")",
                        value);
        p->token_plugin = value;
        break;
    case OPT_TOKEN_SOURCE:
        p->token_source = value;
        break;
    case OPT_TARGET_CONFIG:
        p->target_config = true;
        p->token_plugin = "TokenFile";
        p->token_source = value;
        break;
    case OPT_HEARTBEAT:
    case OPT_IDLE_TIMEOUT:
        if (!parse_count(value, o->id == OPT_HEARTBEAT ? &p->heartbeat_s : &p->idle_timeout_s))
            return fail(err, err_len, "option %s: invalid integer value: '%s'", shown, value);
        break;
    case OPT_LOG_FILE:
        p->log_file = value;
        break;
    case OPT_LOG_LEVEL:
        if (strcmp(value, "error") != 0 && strcmp(value, "warn") != 0 &&
            strcmp(value, "info") != 0 && strcmp(value, "debug") != 0)
            return fail(err, err_len,
                        "--log-level: expected error, warn, info or debug, got \"%s\"", value);
        p->log_level = value;
        break;
    case OPT_UNSUPPORTED:
        return fail(err, err_len, "%s is a websockify option wsgate does not support", shown);
    case OPT_OWN:
        return fail(err, err_len,
                    "%s cannot be mixed with websockify's [source_addr:]source_port "
                    "[target_addr:target_port] form: use a config file or the command line",
                    shown);
    }
    return WEBSOCKIFY_CLI_RUN;
}

/* Reads argv into p: options anywhere, "--opt=value" or "--opt value". */
static enum websockify_cli_status scan(int argc, char *const *argv, struct parsed *p, char *err,
                                       size_t err_len)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            return fail(err, err_len,
                        "\"-- WRAP_COMMAND_LINE\" (websockify's wrap mode) is not supported");
        if (a[0] != '-' || a[1] == '\0') {
            if (p->n_positional == sizeof(p->positional) / sizeof(p->positional[0]))
                return fail(err, err_len, "too many arguments");
            p->positional[p->n_positional++] = a;
            continue;
        }
        const struct opt_spec *o;
        const char *value = NULL;
        char shown[64];
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            bool ambiguous;
            o = find_long(name, len, &ambiguous);
            if (!o)
                return fail(err, err_len, "%s option: --%.*s (see wsgate --help)",
                            ambiguous ? "ambiguous" : "no such", (int)len, name);
            snprintf(shown, sizeof(shown), "--%s", o->name);
            if (eq && !o->has_arg)
                return fail(err, err_len, "%s option does not take a value", shown);
            if (eq)
                value = eq + 1;
        } else {
            o = find_short(a[1]);
            if (!o)
                return fail(err, err_len, "no such option: -%c (see wsgate --help)", a[1]);
            snprintf(shown, sizeof(shown), "-%c", a[1]);
            if (a[2] && !o->has_arg)
                return fail(err, err_len, "%s option does not take a value", shown);
            if (a[2])
                value = a + 2;
        }
        /* Refused before its value is looked for: the name is the news. */
        if (o->id == OPT_UNSUPPORTED || o->id == OPT_OWN)
            return take(p, o, shown, value, err, err_len);
        if (o->has_arg && !value) {
            if (i + 1 >= argc)
                return fail(err, err_len, "%s option requires an argument", shown);
            value = argv[++i];
        }
        enum websockify_cli_status st = take(p, o, shown, value, err, err_len);
        if (st != WEBSOCKIFY_CLI_RUN)
            return st;
    }
    return WEBSOCKIFY_CLI_RUN;
}

/* The checks websockify makes after parsing, in its words where it has some. */
static enum websockify_cli_status check(const struct parsed *p, char *err, size_t err_len)
{
    if (p->token_source && !p->token_plugin)
        return fail(err, err_len, "you must use --token-plugin to use --token-source");
    if (p->token_plugin && !p->token_source)
        return fail(err, err_len, "--token-plugin %s needs --token-source FILE|DIR",
                    p->token_plugin);
    if (p->token_plugin && p->unix_target)
        return fail(err, err_len, "--unix-target and --token-plugin cannot be used together");
    if (p->key && !p->cert)
        return fail(err, err_len, "--key needs --cert");
    bool no_target = p->token_plugin || p->unix_target;
    size_t want = no_target ? 1 : 2;
    if (p->n_positional < want)
        return fail(err, err_len, "too few arguments: expected [source_addr:]source_port%s",
                    no_target ? "" : " target_addr:target_port");
    if (p->n_positional > want)
        return fail(err, err_len, "too many arguments%s",
                    no_target ? ": with --token-plugin or --unix-target there is no target" : "");
    return WEBSOCKIFY_CLI_RUN;
}

enum websockify_cli_status websockify_cli_parse(int argc, char *const *argv,
                                                bool default_cert_exists,
                                                struct websockify_cli *out, char *err,
                                                size_t err_len)
{
    memset(out, 0, sizeof(*out));
    struct parsed p = {0};
    enum websockify_cli_status st = scan(argc, argv, &p, err, err_len);
    if (st == WEBSOCKIFY_CLI_RUN)
        st = check(&p, err, err_len);
    if (st != WEBSOCKIFY_CLI_RUN)
        return st;

    char *listen_host = NULL, *target_host = NULL;
    int listen_port = 0, target_port = 0;
    if (!split_host_port(p.positional[0], false, &listen_host, &listen_port)) {
        free(listen_host);
        return fail(
            err, err_len,
            "error parsing listen port: \"%s\" (expected [source_addr:]port, port 1..65535)",
            p.positional[0]);
    }
    if (p.n_positional == 2 &&
        !split_host_port(p.positional[1], true, &target_host, &target_port)) {
        free(listen_host);
        free(target_host);
        return fail(err, err_len, "error parsing target: \"%s\" (expected target_addr:target_port)",
                    p.positional[1]);
    }
    /* Without --cert websockify uses ./self.pem when it exists (TLS beside
     * plain), and requires it with --ssl-only. */
    struct parsed q = p;
    if (!q.cert && (q.ssl_only || default_cert_exists)) {
        q.cert = WEBSOCKIFY_CLI_DEFAULT_CERT;
        out->default_cert_used = true;
    }
    out->config_json = build_json(&q, listen_host, listen_port, target_host, target_port);
    free(listen_host);
    free(target_host);
    out->verbose = p.verbose;
    out->idle_timeout_s = p.idle_timeout_s;
    out->log_level = p.log_level;
    if ((p.log_file && !(out->log_file = strdup(p.log_file))) ||
        (p.web && !(out->web_dir = strdup(p.web))))
        abort();
    return WEBSOCKIFY_CLI_RUN;
}

void websockify_cli_free(struct websockify_cli *c)
{
    if (!c)
        return;
    free(c->config_json);
    free(c->log_file);
    free(c->web_dir);
    memset(c, 0, sizeof(*c));
}

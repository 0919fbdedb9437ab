/* test_config.c - unit tests for the config loader (config.c): every error path
 * with its exact message, a full config checked field by field, defaults, *_env
 * secrets, syntax errors and error collection. Fixtures: $WSGATE_TEST_DATA. */
#define _GNU_SOURCE /* asprintf */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

#define SRC "wsgate.json"
/* A minimal valid top level, so each case shows only its own error. */
#define L "\"listen\": [{\"port\": 8080}]"
#define B "\"brokers\": {\"main\": {\"uri\": \"tcp://127.0.0.1:1883\"}}"
#define JWT "\"auth\": {\"jwt\": {\"secret\": \"k\"}}"
#define TCP_TARGET "\"target\": {\"host\": \"127.0.0.1\", \"port\": 7}"

/* ------------------------------------------------------------------ helpers */

static const char *data_dir(void)
{
    const char *d = getenv("WSGATE_TEST_DATA");
    return d ? d : "tests/unit/data";
}

static char *data_path(const char *name)
{
    char *p;
    assert_true(asprintf(&p, "%s/%s", data_dir(), name) > 0);
    return p;
}

static void dump_errors(const struct config_errors *e)
{
    for (size_t i = 0; i < e->count; i++)
        fprintf(stderr, "    | %s\n", e->lines[i]);
}

static bool has_line(const struct config_errors *e, const char *line, bool prefix)
{
    for (size_t i = 0; i < e->count; i++) {
        if (prefix ? strncmp(e->lines[i], line, strlen(line)) == 0 : strcmp(e->lines[i], line) == 0)
            return true;
    }
    return false;
}

static void assert_has_line(const struct config_errors *e, const char *line)
{
    if (!has_line(e, line, false)) {
        dump_errors(e);
        fail_msg("missing error line: %s", line);
    }
}

/* Loads `json` expecting failure; the caller checks and frees `errs`. */
static void load_bad(const char *json, struct config_errors *errs)
{
    struct wsg_config *cfg = config_load_string(json, SRC, NULL, errs);
    if (cfg) {
        config_free(cfg);
        fail_msg("config unexpectedly valid: %s", json);
    }
    assert_true(errs->count > 0);
}

static struct wsg_config *load_ok(const char *json)
{
    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_string(json, SRC, NULL, &errs);
    if (!cfg) {
        dump_errors(&errs);
        fail_msg("config unexpectedly invalid: %s", json);
    }
    assert_int_equal(errs.count, 0);
    return cfg;
}

/* ------------------------------------------------------- one test per error */

/* One error path: the config, the exact line expected, and how many errors
 * the whole load must give (so a mistake is reported once, not echoed). */
struct error_case {
    const char *name;
    const char *json;
    const char *line;
    size_t count;
    bool prefix; /* the rest of the line is route.c's wording: match the start only */
};

static const struct error_case error_cases[] = {
    /* document */
    {"top_level_not_object", "[1]", SRC ": expected a JSON object at the top level, got [1]", 1,
     false},
    {"missing_listen", "{}", SRC ": missing \"listen\"", 1, false},
    {"unknown_top_level_key", "{" L ", \"lisen\": 1}",
     SRC ": lisen: unknown key (expected one of: listen, workers, origins, limits, "
         "trusted_proxies, auth, static, brokers, routes)",
     1, false},
    {"unknown_key_odd_name", "{" L ", \"a b\": 1}",
     SRC ": [\"a b\"]: unknown key (expected one of: listen, workers, origins, limits, "
         "trusted_proxies, auth, static, brokers, routes)",
     1, false},
    {"number_key_env_is_unknown", "{\"listen\": [{\"port_env\": \"P\", \"port\": 1}]}",
     SRC ": listen[0].port_env: unknown key (expected one of: host, port, tls, proxy_protocol)", 1,
     false},

    /* workers */
    {"workers_zero", "{" L ", \"workers\": 0}", SRC ": workers: expected an integer 1..64, got 0",
     1, false},
    {"workers_too_many", "{" L ", \"workers\": 65}",
     SRC ": workers: expected an integer 1..64, got 65", 1, false},
    {"workers_word", "{" L ", \"workers\": \"all\"}",
     SRC ": workers: expected an integer 1..64 or \"auto\", got \"all\"", 1, false},
    {"workers_real", "{" L ", \"workers\": 2.0}",
     SRC ": workers: expected an integer 1..64 or \"auto\", got 2.0", 1, false},

    /* listen */
    {"listen_not_array", "{\"listen\": {\"port\": 80}}",
     SRC ": listen: expected a non-empty array of {\"host\", \"port\"} objects, got {\"port\":80}",
     1, false},
    {"listen_empty", "{\"listen\": []}",
     SRC ": listen: expected a non-empty array of {\"host\", \"port\"} objects, got []", 1, false},
    {"listen_entry_not_object", "{\"listen\": [8080]}",
     SRC ": listen[0]: expected an object {\"host\", \"port\", \"tls\"} or {\"unix\", \"mode\"}, "
         "got 8080",
     1, false},
    {"listen_port_string", "{\"listen\": [{\"port\": \"80a\"}]}",
     SRC ": listen[0].port: expected an integer 1..65535, got \"80a\"", 1, false},
    {"listen_port_zero", "{\"listen\": [{\"port\": 0}]}",
     SRC ": listen[0].port: expected an integer 1..65535, got 0", 1, false},
    {"listen_port_too_big", "{\"listen\": [{\"port\": 65536}]}",
     SRC ": listen[0].port: expected an integer 1..65535, got 65536", 1, false},
    {"listen_port_real", "{\"listen\": [{\"port\": 80.0}]}",
     SRC ": listen[0].port: expected an integer 1..65535, got 80.0", 1, false},
    {"listen_port_missing", "{\"listen\": [{\"host\": \"::\"}]}",
     SRC ": listen[0]: missing \"port\"", 1, false},
    {"listen_host_empty", "{\"listen\": [{\"host\": \"\", \"port\": 1}]}",
     SRC ": listen[0].host: expected a host name or address, got \"\"", 1, false},
    {"listen_host_not_string", "{\"listen\": [{\"host\": 127, \"port\": 1}]}",
     SRC ": listen[0].host: expected a host name or address, got 127", 1, false},
    {"listen_host_blank", "{\"listen\": [{\"host\": \"0.0.0.0 \", \"port\": 1}]}",
     SRC ": listen[0].host: expected a host name or address, got \"0.0.0.0 \"", 1, false},
    {"listen_unknown_key", "{\"listen\": [{\"port\": 1, \"hots\": \"x\"}]}",
     SRC ": listen[0].hots: unknown key (expected one of: host, port, tls, proxy_protocol)", 1,
     false},
    {"listen_proxy_protocol_not_bool", "{\"listen\": [{\"port\": 1, \"proxy_protocol\": \"yes\"}]}",
     SRC ": listen[0].proxy_protocol: expected true or false, got \"yes\"", 1, false},
    {"listen_unix_with_port", "{\"listen\": [{\"unix\": \"/run/w.sock\", \"port\": 1}]}",
     SRC ": listen[0].port: unknown key (expected one of: unix, mode, tls, proxy_protocol)", 1,
     false},
    {"listen_unix_mode_not_octal",
     "{\"listen\": [{\"unix\": \"/run/w.sock\", \"mode\": \"0689\"}]}",
     SRC ": listen[0].mode: expected an octal file mode 0001..0777 such as \"0660\", got \"0689\"",
     1, false},
    {"listen_unix_mode_number", "{\"listen\": [{\"unix\": \"/run/w.sock\", \"mode\": 660}]}",
     SRC ": listen[0].mode: expected an octal file mode 0001..0777 such as \"0660\", got 660", 1,
     false},
    {"listen_unix_mode_zero", "{\"listen\": [{\"unix\": \"/run/w.sock\", \"mode\": \"0\"}]}",
     SRC ": listen[0].mode: expected an octal file mode 0001..0777 such as \"0660\", got \"0\"", 1,
     false},
    {"listen_unix_duplicate",
     "{\"listen\": [{\"unix\": \"/run/w.sock\"}, {\"unix\": \"/run/w.sock\"}]}",
     SRC ": listen[1]: duplicate of listen[0] (unix:/run/w.sock)", 1, false},
    {"route_send_proxy_bad",
     "{" L
     ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"send_proxy\": \"v3\", " TCP_TARGET
     "}]}",
     SRC ": routes[0].send_proxy: expected \"v1\" or \"v2\", got \"v3\"", 1, false},
    {"listen_duplicate",
     "{\"listen\": [{\"port\": 80}, {\"host\": \"::\", \"port\": 80}, "
     "{\"host\": \"0.0.0.0\", \"port\": 80}]}",
     SRC ": listen[2]: duplicate of listen[0] (0.0.0.0:80)", 1, false},
    {"listen_tls_not_object", "{\"listen\": [{\"port\": 1, \"tls\": true}]}",
     SRC ": listen[0].tls: expected an object {\"cert\", \"key\"}, got true", 1, false},
    {"listen_tls_missing_key", "{\"listen\": [{\"port\": 1, \"tls\": {\"cert\": \"c.pem\"}}]}",
     SRC ": listen[0].tls: missing \"key\"", 1, false},
    {"listen_tls_unknown_key",
     "{\"listen\": [{\"port\": 1, \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"x\"}}]}",
     SRC ": listen[0].tls.ca: unknown key (expected one of: cert, key, allow_plain)", 1, false},
    {"listen_tls_allow_plain_not_bool",
     "{\"listen\": [{\"port\": 1, \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"allow_plain\": "
     "1}}]}",
     SRC ": listen[0].tls.allow_plain: expected true or false, got 1", 1, false},
    {"listen_tls_cert_empty",
     "{\"listen\": [{\"port\": 1, \"tls\": {\"cert\": \"\", \"key\": \"k\"}}]}",
     SRC ": listen[0].tls.cert: expected a file path, got \"\"", 1, false},

    /* origins */
    {"origins_not_array", "{" L ", \"origins\": \"https://a.example\"}",
     SRC ": origins: expected a non-empty array of origins (leave \"origins\" out to allow any), "
         "got \"https://a.example\"",
     1, false},
    {"origins_empty", "{" L ", \"origins\": []}",
     SRC ": origins: expected a non-empty array of origins (leave \"origins\" out to allow any), "
         "got []",
     1, false},
    {"origin_with_path",
     "{" L ", \"origins\": [\"https://ok.example\", \"https://app.example.com/\"]}",
     SRC ": origins[1]: expected an origin like \"https://app.example.com\" (scheme://host[:port], "
         "no path), got \"https://app.example.com/\"",
     1, false},
    {"origin_no_scheme", "{" L ", \"origins\": [\"app.example.com\"]}",
     SRC ": origins[0]: expected an origin like \"https://app.example.com\" (scheme://host[:port], "
         "no path), got \"app.example.com\"",
     1, false},
    {"origin_bad_port", "{" L ", \"origins\": [\"http://localhost:80a\"]}",
     SRC ": origins[0]: expected an origin like \"https://app.example.com\" (scheme://host[:port], "
         "no path), got \"http://localhost:80a\"",
     1, false},
    {"origin_not_string", "{" L ", \"origins\": [null]}",
     SRC ": origins[0]: expected an origin like \"https://app.example.com\" (scheme://host[:port], "
         "no path), got null",
     1, false},

    /* limits */
    {"limits_not_object", "{" L ", \"limits\": [1]}",
     SRC ": limits: expected an object of integer limits, got [1]", 1, false},
    {"limits_negative", "{" L ", \"limits\": {\"max_connections\": -1}}",
     SRC ": limits.max_connections: expected an integer 0..2147483647, got -1", 1, false},
    {"limits_string", "{" L ", \"limits\": {\"ping_interval_s\": \"30\"}}",
     SRC ": limits.ping_interval_s: expected an integer 0..2147483647, got \"30\"", 1, false},
    {"limits_too_big", "{" L ", \"limits\": {\"max_queue_bytes\": 4294967296}}",
     SRC ": limits.max_queue_bytes: expected an integer 0..2147483647, got 4294967296", 1, false},
    {"limits_unknown_key", "{" L ", \"limits\": {\"max_conections\": 1}}",
     SRC ": limits.max_conections: unknown key (expected one of: max_connections, "
         "max_message_bytes, max_queue_bytes, idle_timeout_s, ping_interval_s, "
         "connect_timeout_ms, max_messages_per_s)",
     1, false},

    /* trusted_proxies */
    {"proxies_not_array", "{" L ", \"trusted_proxies\": \"127.0.0.1\"}",
     SRC ": trusted_proxies: expected an array of IP addresses or CIDR blocks, got \"127.0.0.1\"",
     1, false},
    {"proxy_bad_address", "{" L ", \"trusted_proxies\": [\"10.0.0.1\", \"10.0.0.256\"]}",
     SRC ": trusted_proxies[1]: expected an IP address or CIDR block (\"10.0.0.1\", "
         "\"10.0.0.0/8\", \"::1\", \"fd00::/8\"), got \"10.0.0.256\"",
     1, false},
    {"proxy_v4_prefix_too_long", "{" L ", \"trusted_proxies\": [\"10.0.0.0/33\"]}",
     SRC ": trusted_proxies[0]: expected an IP address or CIDR block (\"10.0.0.1\", "
         "\"10.0.0.0/8\", \"::1\", \"fd00::/8\"), got \"10.0.0.0/33\"",
     1, false},
    {"proxy_v6_prefix_too_long", "{" L ", \"trusted_proxies\": [\"fd00::/129\"]}",
     SRC ": trusted_proxies[0]: expected an IP address or CIDR block (\"10.0.0.1\", "
         "\"10.0.0.0/8\", \"::1\", \"fd00::/8\"), got \"fd00::/129\"",
     1, false},
    {"proxy_empty_prefix", "{" L ", \"trusted_proxies\": [\"10.0.0.0/\"]}",
     SRC ": trusted_proxies[0]: expected an IP address or CIDR block (\"10.0.0.1\", "
         "\"10.0.0.0/8\", \"::1\", \"fd00::/8\"), got \"10.0.0.0/\"",
     1, false},

    /* auth */
    {"auth_not_object", "{" L ", \"auth\": \"jwt\"}",
     SRC ": auth: expected an object {\"jwt\": {...}, \"http\": {...}}, got \"jwt\"", 1, false},
    {"auth_missing_jwt", "{" L ", \"auth\": {}}", SRC ": auth: missing \"jwt\" or \"http\"", 1,
     false},
    {"auth_unknown_key", "{" L ", \"auth\": {\"jwt\": {\"secret\": \"k\"}, \"basic\": {}}}",
     SRC ": auth.basic: unknown key (expected one of: jwt, http)", 1, false},
    {"jwt_cookie_bad", "{" L ", \"auth\": {\"jwt\": {\"secret\": \"k\", \"cookie\": \"a b\"}}}",
     SRC ": auth.jwt.cookie: expected a cookie name (an RFC 7230 token), got \"a b\"", 1, false},
    {"auth_http_missing_url", "{" L ", \"auth\": {\"http\": {\"timeout_ms\": 5}}}",
     SRC ": auth.http: missing \"url\"", 1, false},
    {"auth_http_https_url", "{" L ", \"auth\": {\"http\": {\"url\": \"https://a/x\"}}}",
     SRC ": auth.http.url: expected an URL \"http://host[:port]/path\", got \"https://a/x\"", 1,
     false},
    {"auth_http_timeout_zero",
     "{" L ", \"auth\": {\"http\": {\"url\": \"http://a/x\", \"timeout_ms\": 0}}}",
     SRC ": auth.http.timeout_ms: expected an integer 1..600000, got 0", 1, false},
    {"auth_http_bad_header",
     "{" L ", \"auth\": {\"http\": {\"url\": \"http://a/x\", \"headers\": [\"a:b\"]}}}",
     SRC ": auth.http.headers[0]: expected a header name, got \"a:b\"", 1, false},
    {"route_auth_http_needs_section",
     "{" L ", \"routes\": [{\"path\": \"/t\", \"type\": \"tcp\", \"auth\": \"http\", "
     "\"target\": {\"host\": \"h\", \"port\": 1}}]}",
     SRC ": routes[0].auth: \"http\" needs a top-level \"auth\": {\"http\": {...}}", 1, false},
    {"jwt_unknown_key", "{" L ", \"auth\": {\"jwt\": {\"secret\": \"k\", \"isuer\": \"x\"}}}",
     SRC ": auth.jwt.isuer: unknown key (expected one of: secret, public_key, issuer, audience, "
         "leeway_s, cookie)",
     1, false},
    {"jwt_secret_and_public_key",
     "{" L ", \"auth\": {\"jwt\": {\"secret\": \"k\", \"public_key\": \"k.pem\"}}}",
     SRC ": auth.jwt: give either \"secret\" (HS256) or \"public_key\" (RS256/ES256), not both", 1,
     false},
    {"jwt_neither_secret_nor_key", "{" L ", \"auth\": {\"jwt\": {\"issuer\": \"x\"}}}",
     SRC ": auth.jwt: missing \"secret\" (HS256) or \"public_key\" (RS256/ES256)", 1, false},
    {"jwt_secret_empty_hidden", "{" L ", \"auth\": {\"jwt\": {\"secret\": \"\"}}}",
     SRC ": auth.jwt.secret: expected a non-empty string, got <hidden>", 1, false},
    {"jwt_secret_wrong_type_hidden", "{" L ", \"auth\": {\"jwt\": {\"secret\": 424242}}}",
     SRC ": auth.jwt.secret: expected a non-empty string, got <hidden>", 1, false},
    {"jwt_leeway_negative", "{" L ", \"auth\": {\"jwt\": {\"secret\": \"k\", \"leeway_s\": -5}}}",
     SRC ": auth.jwt.leeway_s: expected an integer 0..86400, got -5", 1, false},
    {"jwt_issuer_empty", "{" L ", \"auth\": {\"jwt\": {\"secret\": \"k\", \"issuer\": \"\"}}}",
     SRC ": auth.jwt.issuer: expected a non-empty string, got \"\"", 1, false},

    /* static */
    {"static_not_object", "{" L ", \"static\": \"www\"}",
     SRC ": static: expected an object {\"mount\", \"dir\"}, got \"www\"", 1, false},
    {"static_missing_dir", "{" L ", \"static\": {\"mount\": \"/\"}}",
     SRC ": static: missing \"dir\"", 1, false},
    {"static_bad_mount", "{" L ", \"static\": {\"mount\": \"app\", \"dir\": \"www\"}}",
     SRC ": static.mount: expected a URL path starting with \"/\", got \"app\"", 1, false},
    {"static_unknown_key", "{" L ", \"static\": {\"dir\": \"www\", \"index\": \"a.html\"}}",
     SRC ": static.index: unknown key (expected one of: mount, dir)", 1, false},

    /* brokers */
    {"brokers_not_object", "{" L ", \"brokers\": [1]}",
     SRC ": brokers: expected an object mapping broker names to {\"uri\", ...}, got [1]", 1, false},
    {"broker_not_object", "{" L ", \"brokers\": {\"main\": \"tcp://h:1883\"}}",
     SRC ": brokers.main: expected an object {\"uri\", \"client_id\", ...}, got \"tcp://h:1883\"",
     1, false},
    {"broker_bad_name", "{" L ", \"brokers\": {\"my broker\": {\"uri\": \"tcp://h:1\"}}}",
     SRC ": brokers[\"my broker\"]: a broker name may hold only letters, digits, '_', '.' and '-'",
     1, false},
    {"broker_missing_uri", "{" L ", \"brokers\": {\"main\": {\"client_id\": \"x\"}}}",
     SRC ": brokers.main: missing \"uri\" (or \"uris\": several nodes of one cluster)", 1, false},
    {"broker_uri_and_uris",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"uris\": [\"tcp://h:2\"]}}}",
     SRC ": brokers.main: give either \"uri\" or \"uris\", not both", 1, false},
    {"broker_uri_bad_scheme", "{" L ", \"brokers\": {\"main\": {\"uri\": \"http://h:1883\"}}}",
     SRC ": brokers.main.uri: expected a broker URI \"tcp://host:port\" (schemes: tcp, mqtt, ssl, "
         "mqtts, ws, wss), got \"http://h:1883\"",
     1, false},
    {"broker_uri_no_port", "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h\"}}}",
     SRC ": brokers.main.uri: expected a broker URI \"tcp://host:port\" (schemes: tcp, mqtt, ssl, "
         "mqtts, ws, wss), got \"tcp://h\"",
     1, false},
    {"broker_uri_path_on_tcp", "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1/x\"}}}",
     SRC ": brokers.main.uri: expected a broker URI \"tcp://host:port\" (schemes: tcp, mqtt, ssl, "
         "mqtts, ws, wss), got \"tcp://h:1/x\"",
     1, false},
    {"broker_uri_userinfo", "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://u:p@h:1\"}}}",
     SRC ": brokers.main.uri: expected a broker URI \"tcp://host:port\" (schemes: tcp, mqtt, ssl, "
         "mqtts, ws, wss), got \"tcp://u:p@h:1\"",
     1, false},
    {"broker_uris_empty", "{" L ", \"brokers\": {\"main\": {\"uris\": []}}}",
     SRC ": brokers.main.uris: expected a non-empty array of broker URIs, got []", 1, false},
    {"broker_uris_bad_entry",
     "{" L ", \"brokers\": {\"main\": {\"uris\": [\"tcp://a:1\", \"tcp://b:99999\"]}}}",
     SRC ": brokers.main.uris[1]: expected a broker URI \"tcp://host:port\" (schemes: tcp, mqtt, "
         "ssl, mqtts, ws, wss), got \"tcp://b:99999\"",
     1, false},
    {"broker_version_number",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"version\": 5}}}",
     SRC ": brokers.main.version: expected \"3.1.1\" or \"5\", got 5", 1, false},
    {"broker_version_unknown",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"version\": \"3.1\"}}}",
     SRC ": brokers.main.version: expected \"3.1.1\" or \"5\", got \"3.1\"", 1, false},
    {"broker_keepalive_zero",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"keepalive_s\": 0}}}",
     SRC ": brokers.main.keepalive_s: expected an integer 1..65535, got 0", 1, false},
    {"broker_persistent_not_bool",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"persistent_session\": 1}}}",
     SRC ": brokers.main.persistent_session: expected true or false, got 1", 1, false},
    {"broker_session_expiry_v311",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"persistent_session\": true, "
     "\"session_expiry_s\": 60}}}",
     SRC ": brokers.main.session_expiry_s: needs \"version\": \"5\" (MQTT 3.1.1 has no session "
         "expiry: the broker decides how long it keeps a session)",
     1, false},
    {"broker_session_expiry_not_persistent",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"version\": \"5\", "
     "\"session_expiry_s\": 60}}}",
     SRC ": brokers.main.session_expiry_s: needs \"persistent_session\": true", 1, false},
    {"broker_session_expiry_zero",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"version\": \"5\", "
     "\"persistent_session\": true, \"session_expiry_s\": 0}}}",
     SRC ": brokers.main.session_expiry_s: expected an integer 1..4294967295, got 0", 1, false},
    {"broker_client_id_empty",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"client_id\": \"\"}}}",
     SRC ": brokers.main.client_id: expected a non-empty string, got \"\"", 1, false},
    {"broker_password_without_username",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"password\": \"pw\"}}}",
     SRC ": brokers.main: \"password\" needs \"username\" with MQTT 3.1.1", 1, false},
    {"broker_password_wrong_type_hidden",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"username\": \"u\", \"password\": "
     "1234}}}",
     SRC ": brokers.main.password: expected a string, got <hidden>", 1, false},
    {"broker_unknown_key",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"clientid\": \"x\"}}}",
     SRC ": brokers.main.clientid: unknown key (expected one of: uri, uris, client_id, version, "
         "username, password, keepalive_s, tls, persistent_session, session_expiry_s)",
     1, false},
    {"broker_tls_without_tls_uri",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"tls\": {\"ca\": \"ca.pem\"}}}}",
     SRC ": brokers.main.tls: TLS options need an \"ssl://\", \"mqtts://\" or \"wss://\" uri", 1,
     false},
    {"broker_tls_key_without_cert",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"ssl://h:1\", \"tls\": {\"key\": \"k.pem\"}}}}",
     SRC ": brokers.main.tls: \"key\" needs \"cert\" (the client certificate)", 1, false},
    {"broker_tls_insecure_not_bool",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"ssl://h:1\", \"tls\": {\"insecure\": \"yes\"}}}}",
     SRC ": brokers.main.tls.insecure: expected true or false, got \"yes\"", 1, false},
    {"broker_tls_unknown_key",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"ssl://h:1\", \"tls\": {\"cafile\": \"x\"}}}}",
     SRC ": brokers.main.tls.cafile: unknown key (expected one of: ca, cert, key, insecure)", 1,
     false},

    /* *_env */
    {"env_unset",
     "{" L ", \"brokers\": {\"main\": {\"uri\": \"tcp://h:1\", \"username\": \"u\", "
     "\"password_env\": \"WSGATE_TEST_SURELY_UNSET\"}}}",
     SRC ": brokers.main.password_env: environment variable WSGATE_TEST_SURELY_UNSET is not set", 1,
     false},
    {"env_bad_name", "{" L ", \"auth\": {\"jwt\": {\"secret_env\": \"MY-VAR\"}}}",
     SRC ": auth.jwt.secret_env: expected the name of an environment variable, got \"MY-VAR\"", 1,
     false},
    {"env_not_string", "{" L ", \"auth\": {\"jwt\": {\"secret_env\": 3}}}",
     SRC ": auth.jwt.secret_env: expected the name of an environment variable, got 3", 1, false},
    {"env_and_value_both",
     "{" L ", \"auth\": {\"jwt\": {\"secret\": \"k\", \"secret_env\": \"K\"}}}",
     SRC ": auth.jwt: give either \"secret\" or \"secret_env\", not both", 1, false},
    {"env_value_hidden",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type_env\": "
     "\"WSGATE_TEST_TYPE\", " TCP_TARGET "}]}",
     SRC ": routes[0].type_env: expected \"tcp\" or \"mqtt\", got <hidden>", 1, false},

    /* routes: common */
    {"routes_not_array", "{" L ", \"routes\": {}}",
     SRC ": routes: expected an array of route objects, got {}", 1, false},
    {"route_not_object", "{" L ", \"routes\": [\"/x\"]}",
     SRC ": routes[0]: expected a route object {\"path\", \"type\", ...}, got \"/x\"", 1, false},
    {"route_missing_path", "{" L ", \"routes\": [{\"type\": \"tcp\", " TCP_TARGET "}]}",
     SRC ": routes[0]: missing \"path\"", 1, false},
    {"route_bad_path",
     "{" L ", \"routes\": [{\"path\": \"vnc\", \"type\": \"tcp\", " TCP_TARGET "}]}",
     SRC ": routes[0].path: a path pattern must start with \"/\", got \"vnc\"", 1, false},
    {"route_missing_type", "{" L ", \"routes\": [{\"path\": \"/x\", " TCP_TARGET "}]}",
     SRC ": routes[0]: missing \"type\"", 1, false},
    {"route_bad_type", "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"udp\"}]}",
     SRC ": routes[0].type: expected \"tcp\" or \"mqtt\", got \"udp\"", 1, false},
    {"route_unknown_key",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"tagret\": {}, " TCP_TARGET "}]}",
     SRC ": routes[0].tagret: unknown key (expected one of: path, name, type, subprotocols, "
         "require_subprotocol, auth, compression, target, targets, target_map, framing, "
         "message, send_proxy, broker, "
         "format, publish, subscribe, on_connect, on_disconnect, slow_consumer)",
     1, false},
    {"route_name_empty",
     "{" L ", \"routes\": [{\"name\": \"\", \"path\": \"/x\", \"type\": \"tcp\", " TCP_TARGET "}]}",
     SRC ": routes[0].name: expected a non-empty string, got \"\"", 1, false},
    {"route_duplicate_name",
     "{" L ", \"routes\": [{\"name\": \"a\", \"path\": \"/x\", \"type\": \"tcp\", " TCP_TARGET "},"
     " {\"name\": \"a\", \"path\": \"/y\", \"type\": \"tcp\", " TCP_TARGET "}]}",
     SRC ": routes[1].name: name \"a\" is already the name of routes[0]", 1, false},
    {"route_duplicate_default_name",
     "{" L ", \"routes\": [{\"name\": \"/y\", \"path\": \"/x\", \"type\": \"tcp\", " TCP_TARGET "},"
     " {\"path\": \"/y\", \"type\": \"tcp\", " TCP_TARGET "}]}",
     SRC ": routes[1]: the default name \"/y\" is already the name of routes[0]", 1, false},
    {"route_duplicate_path",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", " TCP_TARGET "},"
     " {\"name\": \"b\", \"path\": \"/x\", \"type\": \"tcp\", " TCP_TARGET "}]}",
     SRC ": routes[1].path: same as routes[0].path: routes[1] could never match", 1, false},
    {"subprotocols_not_array",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"subprotocols\": "
     "\"binary\", " TCP_TARGET "}]}",
     SRC ": routes[0].subprotocols: expected an array of subprotocol names, got \"binary\"", 1,
     false},
    {"subprotocol_not_token",
     "{" L
     ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"subprotocols\": [\"a b\"], " TCP_TARGET
     "}]}",
     SRC ": routes[0].subprotocols[0]: expected a subprotocol name (an RFC 7230 token, e.g. "
         "\"binary\"), got \"a b\"",
     1, false},
    {"subprotocol_duplicate",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"subprotocols\": [\"binary\", "
     "\"base64\", \"binary\"], " TCP_TARGET "}]}",
     SRC ": routes[0].subprotocols[2]: \"binary\" is already subprotocols[0]", 1, false},
    {"subprotocol_bearer_reserved",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"subprotocols\": "
     "[\"bearer.x\"], " TCP_TARGET "}]}",
     SRC ": routes[0].subprotocols[0]: expected a subprotocol name not starting with \"bearer.\", "
         "got \"bearer.x\"",
     1, false},
    {"require_subprotocol_without_list",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"require_subprotocol\": "
     "true, " TCP_TARGET "}]}",
     SRC ": routes[0].require_subprotocol: true needs a non-empty \"subprotocols\"", 1, false},
    {"require_subprotocol_not_bool",
     "{" L
     ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"require_subprotocol\": 1, " TCP_TARGET
     "}]}",
     SRC ": routes[0].require_subprotocol: expected true or false, got 1", 1, false},
    {"route_auth_bad_value",
     "{" L ", " JWT
     ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"auth\": \"basic\", " TCP_TARGET "}]}",
     SRC ": routes[0].auth: expected \"jwt\" or \"http\", got \"basic\"", 1, false},
    {"route_auth_without_top_level",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"auth\": \"jwt\", " TCP_TARGET
     "}]}",
     SRC ": routes[0].auth: \"jwt\" needs a top-level \"auth\": {\"jwt\": {...}}", 1, false},

    /* routes: tcp */
    {"tcp_missing_target", "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\"}]}",
     SRC ": routes[0]: missing \"target\", \"targets\" or \"target_map\"", 1, false},
    {"tcp_target_and_targets",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", " TCP_TARGET
     ", \"targets\": []}]}",
     SRC ": routes[0]: give only one of \"target\", \"targets\" or \"target_map\"", 1, false},
    {"tcp_target_port_string",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": {\"host\": \"h\", "
     "\"port\": \"80a\"}}]}",
     SRC ": routes[0].target.port: expected an integer 1..65535, got \"80a\"", 1, false},
    {"tcp_target_missing_host",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": {\"port\": 1}}]}",
     SRC ": routes[0].target: missing \"host\"", 1, false},
    {"tcp_target_not_object",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": \"h:1\"}]}",
     SRC ": routes[0].target: expected an object {\"host\", \"port\"} or {\"unix\"}, got \"h:1\"",
     1, false},
    {"tcp_target_unknown_key",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": {\"host\": \"h\", "
     "\"port\": 1, \"tls\": true}}]}",
     SRC ": routes[0].target.tls: unknown key (expected one of: host, port)", 1, false},
    {"tcp_target_unix_and_host",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": {\"unix\": \"/s\", "
     "\"host\": \"h\", \"port\": 1}}]}",
     SRC ": routes[0].target.host: unknown key (expected one of: unix)", 2, false},
    {"tcp_targets_empty",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"targets\": []}]}",
     SRC ": routes[0].targets: expected a non-empty array of {\"host\", \"port\"} or {\"unix\"} "
         "objects, got []",
     1, false},
    {"tcp_target_unix_with_port",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": {\"unix\": \"/a\", "
     "\"port\": 1}}]}",
     SRC ": routes[0].target.port: unknown key (expected one of: unix)", 1, false},
    {"tcp_target_unix_empty",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": {\"unix\": \"\"}}]}",
     SRC ": routes[0].target.unix: expected a unix socket path, got \"\"", 1, false},
    {"tcp_target_unix_not_string",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"targets\": [{\"unix\": 5}]}]}",
     SRC ": routes[0].targets[0].unix: expected a unix socket path, got 5", 1, false},
    {"tcp_target_unix_too_long",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": {\"unix\": \"/"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaa\"}}]}",
     SRC ": routes[0].target.unix: expected a unix socket path under 108 bytes, got 109 bytes", 1,
     false},
    {"tcp_targets_bad_entry",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"targets\": [{\"host\": \"a\", "
     "\"port\": 1}, {\"host\": \"b\", \"port\": -1}]}]}",
     SRC ": routes[0].targets[1].port: expected an integer 1..65535, got -1", 1, false},
    {"tcp_target_map_missing_key",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target_map\": {\"file\": "
     "\"m.json\"}}]}",
     SRC ": routes[0].target_map: missing \"key\"", 1, false},
    {"tcp_target_map_missing_file",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target_map\": {\"key\": "
     "\"{query.t}\"}}]}",
     SRC ": routes[0].target_map: missing \"file\"", 1, false},
    {"tcp_target_map_unknown_key",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target_map\": {\"file\": \"m\", "
     "\"key\": \"{query.t}\", \"reload\": true}}]}",
     SRC ": routes[0].target_map.reload: unknown key (expected one of: file, key)", 1, false},
    {"tcp_target_map_key_jwt_without_auth",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target_map\": {\"file\": \"m\", "
     "\"key\": \"{jwt.sub}\"}}]}",
     SRC ": routes[0].target_map.key: {jwt.sub} needs \"auth\": \"jwt\" on the route, got "
         "\"{jwt.sub}\"",
     1, false},
    {"tcp_bad_framing",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"framing\": \"line\", " TCP_TARGET
     "}]}",
     SRC ": routes[0].framing: expected \"raw\", \"lines\" or \"length32\", got \"line\"", 1,
     false},
    {"tcp_bad_message",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"message\": \"utf8\", " TCP_TARGET
     "}]}",
     SRC ": routes[0].message: expected \"binary\" or \"text\", got \"utf8\"", 1, false},
    {"tcp_route_with_mqtt_key",
     "{" L ", " B
     ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"broker\": \"main\", " TCP_TARGET "}]}",
     SRC ": routes[0].broker: only for type \"mqtt\"", 1, false},

    {"tcp_route_with_mqtt_env_key",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"format_env\": \"F\", " TCP_TARGET
     "}]}",
     SRC ": routes[0].format_env: only for type \"mqtt\"", 1, false},
    {"tcp_target_host_with_path",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": {\"host\": "
     "\"h/1\", \"port\": 1}}]}",
     SRC ": routes[0].target.host: expected a host name or address, got \"h/1\"", 1, false},
    {"route_duplicate_name_quoted",
     "{" L ", \"routes\": [{\"name\": \"a\\nb\", \"path\": \"/x\", \"type\": \"tcp\", " TCP_TARGET
     "}, {\"name\": \"a\\nb\", \"path\": \"/y\", \"type\": \"tcp\", " TCP_TARGET "}]}",
     SRC ": routes[1].name: name \"a\\nb\" is already the name of routes[0]", 1, false},

    {"tcp_target_map_key_empty",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target_map\": {\"file\": \"m\", "
     "\"key\": \"\"}}]}",
     SRC ": routes[0].target_map.key: expected a non-empty string, got \"\"", 1, false},

    /* routes: mqtt */
    {"mqtt_bad_slow_consumer",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"slow_consumer\": \"block\", \"subscribe\": [{\"filter\": \"a\"}]}]}",
     SRC ": routes[0].slow_consumer: expected \"drop\" or \"close\", got \"block\"", 1, false},
    {"tcp_route_with_slow_consumer",
     "{" L
     ", \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"slow_consumer\": \"drop\", " TCP_TARGET
     "}]}",
     SRC ": routes[0].slow_consumer: only for type \"mqtt\"", 1, false},
    {"mqtt_route_with_tcp_key",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"framing\": \"lines\", \"subscribe\": [{\"filter\": \"a\"}]}]}",
     SRC ": routes[0].framing: only for type \"tcp\"", 1, false},
    {"mqtt_missing_broker",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"subscribe\": "
     "[{\"filter\": \"a\"}]}]}",
     SRC ": routes[0]: missing \"broker\"", 1, false},
    {"mqtt_unknown_broker",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"mian\", "
     "\"subscribe\": [{\"filter\": \"a\"}]}]}",
     SRC
     ": routes[0].broker: expected the name of an entry in \"brokers\" (\"main\"), got \"mian\"",
     1, false},
    {"mqtt_broker_without_brokers",
     "{" L ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a\"}]}]}",
     SRC ": routes[0].broker: expected the name of an entry in \"brokers\" (there is none), got "
         "\"main\"",
     1, false},
    {"mqtt_nothing_to_do",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\"}]}",
     SRC ": routes[0]: missing \"publish\" or \"subscribe\" (an mqtt route needs at least one)", 1,
     false},
    {"mqtt_bad_format",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"format\": \"json\", \"subscribe\": [{\"filter\": \"a\"}]}]}",
     SRC ": routes[0].format: expected \"raw\" or \"envelope\", got \"json\"", 1, false},
    {"raw_publish_wrong_type",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": \"a/b\"}]}",
     SRC
     ": routes[0].publish: expected a rule {\"topic\", \"qos\", \"retain\"} or a non-empty array "
     "of rules, got \"a/b\"",
     1, false},
    {"raw_publish_missing_topic",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": {\"qos\": 1}}]}",
     SRC ": routes[0].publish: missing \"topic\"", 1, false},
    {"raw_publish_topic_wildcard",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": {\"topic\": \"a/+\"}}]}",
     SRC ": routes[0].publish.topic: expected an MQTT topic name (non-empty, no \"+\" or \"#\"), "
         "got \"a/+\"",
     1, false},
    {"raw_publish_topic_empty",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": {\"topic\": \"\"}}]}",
     SRC ": routes[0].publish.topic: expected an MQTT topic name (non-empty, no \"+\" or \"#\"), "
         "got \"\"",
     1, false},
    {"raw_publish_qos",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": {\"topic\": \"a\", \"qos\": 3}}]}",
     SRC ": routes[0].publish.qos: expected an integer 0..2, got 3", 1, false},
    {"raw_publish_retain",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": {\"topic\": \"a\", \"retain\": \"no\"}}]}",
     SRC ": routes[0].publish.retain: expected true or false, got \"no\"", 1, false},
    {"raw_publish_rules_empty",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": []}]}",
     SRC
     ": routes[0].publish: expected a rule {\"topic\", \"qos\", \"retain\"} or a non-empty array "
     "of rules, got []",
     1, false},
    {"raw_publish_rule_unknown_key",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": [{\"topic\": \"a\", \"if\": {}}]}]}",
     SRC ": routes[0].publish[0].if: unknown key (expected one of: when, topic, qos, retain)", 1,
     false},
    {"raw_publish_unreachable_rule",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": [{\"topic\": \"a\"}, {\"when\": {\"pointer\": \"/t\", \"equals\": 1}, "
     "\"topic\": \"b\"}]}]}",
     SRC ": routes[0].publish[1]: never used: publish[0] has no \"when\" and takes every message",
     1, false},
    {"when_missing_equals",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": [{\"when\": {\"pointer\": \"/t\"}, \"topic\": \"a\"}]}]}",
     SRC ": routes[0].publish[0].when: missing \"equals\"", 1, false},
    {"when_bad_pointer",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": [{\"when\": {\"pointer\": \"type\", \"equals\": 1}, \"topic\": \"a\"}]}]}",
     SRC ": routes[0].publish[0].when.pointer: expected a JSON Pointer (\"\" or \"/a/b\", '~' only "
         "as \"~0\" or \"~1\"), got \"type\"",
     1, false},
    {"when_bad_pointer_escape",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": [{\"when\": {\"pointer\": \"/a~2\", \"equals\": 1}, \"topic\": \"a\"}]}]}",
     SRC ": routes[0].publish[0].when.pointer: expected a JSON Pointer (\"\" or \"/a/b\", '~' only "
         "as \"~0\" or \"~1\"), got \"/a~2\"",
     1, false},
    {"when_not_object",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": [{\"when\": \"/t\", \"topic\": \"a\"}]}]}",
     SRC ": routes[0].publish[0].when: expected an object {\"pointer\", \"equals\"}, got \"/t\"", 1,
     false},
    {"when_unknown_key",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"publish\": [{\"when\": {\"pointer\": \"/t\", \"equals\": 1, \"not\": true}, \"topic\": "
     "\"a\"}]}]}",
     SRC ": routes[0].publish[0].when.not: unknown key (expected one of: pointer, equals)", 1,
     false},
    {"raw_subscribe_not_array",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": {\"filter\": \"a\"}}]}",
     SRC ": routes[0].subscribe: expected a non-empty array of {\"filter\", \"qos\"} objects, got "
         "{\"filter\":\"a\"}",
     1, false},
    {"raw_subscribe_bad_filter",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a/#/b\"}]}]}",
     SRC ": routes[0].subscribe[0].filter: expected an MQTT topic filter (non-empty, \"+\" only as "
         "a whole level, \"#\" only as the whole last level), got \"a/#/b\"",
     1, false},
    {"raw_subscribe_missing_filter",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"qos\": 1}]}]}",
     SRC ": routes[0].subscribe[0]: missing \"filter\"", 1, false},
    {"raw_subscribe_unknown_key",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a\", \"topic\": \"b\"}]}]}",
     SRC ": routes[0].subscribe[0].topic: unknown key (expected one of: filter, qos)", 1, false},
    {"template_unknown_capture",
     "{" L ", " B
     ", \"routes\": [{\"path\": \"/x/{id}\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a/{idd}\"}]}]}",
     SRC ": routes[0].subscribe[0].filter: unknown placeholder {idd}", 1, true},
    {"template_jwt_without_auth",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"users/{jwt.sub}/#\"}]}]}",
     SRC ": routes[0].subscribe[0].filter: {jwt.sub} needs \"auth\": \"jwt\" on the route, got "
         "\"users/{jwt.sub}/#\"",
     1, false},
    {"template_msg_outside_publish",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a/{msg./t}\"}]}]}",
     SRC ": routes[0].subscribe[0].filter: {msg./t} is only allowed in a raw \"publish\" topic, "
         "got \"a/{msg./t}\"",
     1, false},
    {"envelope_subscribe_not_object",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"format\": \"envelope\", \"publish\": {\"allow\": [\"a\"]}, \"subscribe\": [{\"filter\": "
     "\"a\"}]}]}",
     SRC
     ": routes[0].subscribe: expected an object {\"allow\": [filters]}, got [{\"filter\":\"a\"}]",
     1, false},
    {"envelope_missing_allow",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"format\": \"envelope\", \"publish\": {\"qos\": 1}}]}",
     SRC ": routes[0].publish: missing \"allow\"", 1, false},
    {"envelope_allow_empty",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"format\": \"envelope\", \"subscribe\": {\"allow\": []}}]}",
     SRC ": routes[0].subscribe.allow: expected a non-empty array of MQTT topic filters, got []", 1,
     false},
    {"envelope_allow_bad_filter",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"format\": \"envelope\", \"subscribe\": {\"allow\": [\"app/#\", \"a+\"]}}]}",
     SRC
     ": routes[0].subscribe.allow[1]: expected an MQTT topic filter (non-empty, \"+\" only as a "
     "whole level, \"#\" only as the whole last level), got \"a+\"",
     1, false},
    {"envelope_allow_not_string",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"format\": \"envelope\", \"subscribe\": {\"allow\": [7]}}]}",
     SRC ": routes[0].subscribe.allow[0]: expected an MQTT topic filter (non-empty, \"+\" only as "
         "a whole level, \"#\" only as the whole last level), got 7",
     1, false},
    {"envelope_allow_empty_string",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"format\": \"envelope\", \"subscribe\": {\"allow\": [\"\"]}}]}",
     SRC
     ": routes[0].subscribe.allow[0]: expected an MQTT topic filter (non-empty, \"+\" only as a "
     "whole level, \"#\" only as the whole last level), got \"\"",
     1, false},
    {"raw_subscribe_filter_not_string",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": 5}]}]}",
     SRC ": routes[0].subscribe[0].filter: expected an MQTT topic filter (non-empty, \"+\" only as "
         "a whole level, \"#\" only as the whole last level), got 5",
     1, false},
    {"envelope_publish_qos",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"format\": \"envelope\", \"publish\": {\"allow\": [\"a\"], \"qos\": \"1\"}}]}",
     SRC ": routes[0].publish.qos: expected an integer 0..2, got \"1\"", 1, false},
    {"envelope_publish_unknown_key",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"format\": \"envelope\", \"publish\": {\"allow\": [\"a\"], \"topic\": \"a\"}}]}",
     SRC ": routes[0].publish.topic: unknown key (expected one of: allow, qos)", 1, false},
    {"presence_not_object",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a\"}], \"on_connect\": \"hello\"}]}",
     SRC
     ": routes[0].on_connect: expected an object {\"topic\", \"payload\", \"qos\", \"retain\"}, "
     "got \"hello\"",
     1, false},
    {"presence_missing_topic",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a\"}], \"on_disconnect\": {\"payload\": \"bye\"}}]}",
     SRC ": routes[0].on_disconnect: missing \"topic\"", 1, false},
    {"presence_topic_wildcard",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a\"}], \"on_connect\": {\"topic\": \"p/#\"}}]}",
     SRC
     ": routes[0].on_connect.topic: expected an MQTT topic name (non-empty, no \"+\" or \"#\"), "
     "got \"p/#\"",
     1, false},
    {"presence_payload_not_string",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a\"}], \"on_connect\": {\"topic\": \"p\", \"payload\": {}}}]}",
     SRC ": routes[0].on_connect.payload: expected a string, got {}", 1, false},
    {"presence_unknown_key",
     "{" L ", " B ", \"routes\": [{\"path\": \"/x\", \"type\": \"mqtt\", \"broker\": \"main\", "
     "\"subscribe\": [{\"filter\": \"a\"}], \"on_connect\": {\"topic\": \"p\", \"message\": "
     "\"x\"}}]}",
     SRC
     ": routes[0].on_connect.message: unknown key (expected one of: topic, payload, qos, retain)",
     1, false},
};

static int setup_env(void **state)
{
    (void)state;
    setenv("WSGATE_TEST_TYPE", "udp", 1);
    unsetenv("WSGATE_TEST_SURELY_UNSET");
    return 0;
}

static void run_error_case(void **state)
{
    const struct error_case *c = *state;
    struct config_errors errs = {0};
    load_bad(c->json, &errs);
    if (!has_line(&errs, c->line, c->prefix)) {
        dump_errors(&errs);
        fail_msg("%s: missing error line: %s", c->name, c->line);
    }
    if (c->count && errs.count != c->count) {
        dump_errors(&errs);
        fail_msg("%s: expected %zu error(s), got %zu", c->name, c->count, errs.count);
    }
    config_errors_free(&errs);
}

/* ---------------------------------------------------------- whole configs */

static void test_full_config_field_by_field(void **state)
{
    (void)state;
    setenv("WSGATE_TEST_JWT_SECRET", "jwt-secret-value", 1);
    setenv("WSGATE_TEST_MQTT_PASSWORD", "mqtt-password-value", 1);
    char *path = data_path("full.json");
    const char *dir = data_dir();
    char *want;
    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_file(path, &errs);
    if (!cfg)
        dump_errors(&errs);
    assert_non_null(cfg);
    assert_int_equal(errs.count, 0);
    assert_string_equal(cfg->source, path);
    assert_string_equal(cfg->base_dir, dir);

    /* listen */
    assert_int_equal(cfg->n_listen, 2);
    assert_string_equal(cfg->listen[0].host, "0.0.0.0");
    assert_int_equal(cfg->listen[0].port, 8080);
    assert_false(cfg->listen[0].has_tls);
    assert_string_equal(cfg->listen[1].host, "::");
    assert_int_equal(cfg->listen[1].port, 8443);
    assert_true(cfg->listen[1].has_tls);
    assert_true(asprintf(&want, "%s/tls/cert.pem", dir) > 0);
    assert_string_equal(cfg->listen[1].tls.cert, want);
    free(want);
    assert_string_equal(cfg->listen[1].tls.key, "/etc/wsgate/key.pem");

    /* origins (scheme and host lower-cased like browsers send them) */
    assert_int_equal(cfg->n_origins, 3);
    assert_string_equal(cfg->origins[0], "https://app.example.com");
    assert_string_equal(cfg->origins[1], "http://localhost:8080");
    assert_string_equal(cfg->origins[2], "http://[::1]:3000");

    /* limits */
    assert_int_equal(cfg->limits.max_connections, 10);
    assert_int_equal(cfg->limits.max_message_bytes, 2048);
    assert_int_equal(cfg->limits.max_queue_bytes, 4096);
    assert_int_equal(cfg->limits.idle_timeout_s, 60);
    assert_int_equal(cfg->limits.ping_interval_s, 0);
    assert_int_equal(cfg->limits.connect_timeout_ms, 1500);
    assert_int_equal(cfg->limits.max_messages_per_s, 50);

    /* trusted_proxies */
    assert_int_equal(cfg->n_trusted_proxies, 4);
    assert_string_equal(cfg->trusted_proxies[0], "127.0.0.1");
    assert_string_equal(cfg->trusted_proxies[1], "10.0.0.0/8");
    assert_string_equal(cfg->trusted_proxies[2], "::1");
    assert_string_equal(cfg->trusted_proxies[3], "fd00::/8");

    /* auth */
    assert_true(cfg->auth.has_jwt);
    assert_string_equal(cfg->auth.jwt.secret, "jwt-secret-value");
    assert_null(cfg->auth.jwt.public_key);
    assert_string_equal(cfg->auth.jwt.issuer, "https://id.example.com");
    assert_string_equal(cfg->auth.jwt.audience, "wsgate");
    assert_int_equal(cfg->auth.jwt.leeway_s, 5);

    /* static */
    assert_true(cfg->has_static);
    assert_string_equal(cfg->static_files.mount, "/app/");
    assert_true(asprintf(&want, "%s/www", dir) > 0);
    assert_string_equal(cfg->static_files.dir, want);
    free(want);

    /* brokers, in file order */
    assert_int_equal(cfg->n_brokers, 2);
    const struct wsg_broker *b = &cfg->brokers[0];
    assert_string_equal(b->name, "main");
    assert_int_equal(b->n_uris, 1);
    assert_string_equal(b->uris[0], "tcp://127.0.0.1:1883");
    assert_string_equal(b->client_id, "wsgate-main");
    assert_int_equal(b->version, WSG_MQTT_311);
    assert_null(b->username);
    assert_null(b->password);
    assert_int_equal(b->keepalive_s, 30);
    assert_false(b->persistent_session);
    assert_int_equal(b->session_expiry_s, 3600);
    assert_false(b->has_tls);
    b = &cfg->brokers[1];
    assert_ptr_equal(config_broker_by_name(cfg, "cluster"), b);
    assert_string_equal(b->name, "cluster");
    assert_int_equal(b->n_uris, 3);
    assert_string_equal(b->uris[0], "ssl://mq1.example.com:8883");
    assert_string_equal(b->uris[1], "mqtts://mq2.example.com:8883");
    assert_string_equal(b->uris[2], "wss://mq3.example.com:443/mqtt");
    assert_string_equal(b->client_id, "gw-7");
    assert_int_equal(b->version, WSG_MQTT_5);
    assert_string_equal(b->username, "gw");
    assert_string_equal(b->password, "mqtt-password-value");
    assert_int_equal(b->keepalive_s, 15);
    assert_true(b->persistent_session);
    assert_int_equal(b->session_expiry_s, 86400);
    assert_true(b->has_tls);
    assert_true(asprintf(&want, "%s/ca.pem", dir) > 0);
    assert_string_equal(b->tls.ca, want);
    free(want);
    assert_true(asprintf(&want, "%s/client.pem", dir) > 0);
    assert_string_equal(b->tls.cert, want);
    free(want);
    assert_true(asprintf(&want, "%s/client.key", dir) > 0);
    assert_string_equal(b->tls.key, want);
    free(want);
    assert_true(b->tls.insecure);
    assert_null(config_broker_by_name(cfg, "nope"));

    assert_int_equal(cfg->n_routes, 5);
    /* routes[0]: tcp, one target, subprotocols required */
    const struct wsg_route *r = &cfg->routes[0];
    assert_ptr_equal(config_route_by_name(cfg, "vnc"), r);
    assert_string_equal(r->name, "vnc");
    assert_string_equal(r->path, "/vnc");
    assert_int_equal(r->type, WSG_ROUTE_TCP);
    assert_int_equal(r->n_subprotocols, 2);
    assert_string_equal(r->subprotocols[0], "binary");
    assert_string_equal(r->subprotocols[1], "base64");
    assert_true(r->require_subprotocol);
    assert_false(r->auth_jwt);
    assert_int_equal(r->n_targets, 1);
    assert_string_equal(r->targets[0].host, "127.0.0.1");
    assert_int_equal(r->targets[0].port, 5900);
    assert_null(r->target_map_file);
    assert_int_equal(r->framing, WSG_FRAMING_RAW);
    assert_int_equal(r->message, WSG_MESSAGE_BINARY);

    /* routes[1]: tcp, several targets, lines/text; name defaults to the path */
    r = &cfg->routes[1];
    assert_string_equal(r->name, "/chat");
    assert_ptr_equal(config_route_by_name(cfg, "/chat"), r);
    assert_int_equal(r->n_subprotocols, 0);
    assert_false(r->require_subprotocol);
    assert_int_equal(r->n_targets, 2);
    assert_string_equal(r->targets[0].host, "10.0.0.5");
    assert_int_equal(r->targets[0].port, 7000);
    assert_string_equal(r->targets[1].host, "10.0.0.6");
    assert_int_equal(r->targets[1].port, 7001);
    assert_int_equal(r->framing, WSG_FRAMING_LINES);
    assert_int_equal(r->message, WSG_MESSAGE_TEXT);

    /* routes[2]: tcp, target_map, length32, jwt */
    r = &cfg->routes[2];
    assert_true(r->auth_jwt);
    assert_int_equal(r->n_targets, 0);
    assert_true(asprintf(&want, "%s/consoles.json", dir) > 0);
    assert_string_equal(r->target_map_file, want);
    free(want);
    assert_string_equal(r->target_map_key, "{query.token}");
    assert_int_equal(r->framing, WSG_FRAMING_LENGTH32);

    /* routes[3]: mqtt raw with content rules, subscriptions and presence */
    r = &cfg->routes[3];
    assert_ptr_equal(config_route_by_name(cfg, "telemetry"), r);
    assert_string_equal(r->path, "/devices/{device}");
    assert_int_equal(r->type, WSG_ROUTE_MQTT);
    assert_string_equal(r->broker, "cluster");
    assert_int_equal(r->format, WSG_FORMAT_RAW);
    assert_true(r->auth_jwt);
    assert_int_equal(r->n_publish, 3);
    assert_string_equal(r->publish[0].when_pointer, "/type");
    assert_string_equal(r->publish[0].when_equals, "\"telemetry\"");
    assert_string_equal(r->publish[0].topic, "devices/{device}/telemetry/{msg./kind}");
    assert_int_equal(r->publish[0].qos, 1);
    assert_false(r->publish[0].retain);
    assert_string_equal(r->publish[1].when_pointer, "/n");
    assert_string_equal(r->publish[1].when_equals, "{\"a\":[1,2.5,null]}");
    assert_string_equal(r->publish[1].topic, "devices/{device}/n");
    assert_int_equal(r->publish[1].qos, 0);
    assert_true(r->publish[1].retain);
    assert_null(r->publish[2].when_pointer);
    assert_null(r->publish[2].when_equals);
    assert_string_equal(r->publish[2].topic, "devices/{device}/other");
    assert_int_equal(r->publish[2].qos, 2);
    assert_int_equal(r->n_subscribe, 2);
    assert_string_equal(r->subscribe[0].filter, "devices/{device}/state/#");
    assert_int_equal(r->subscribe[0].qos, 1);
    assert_string_equal(r->subscribe[1].filter, "users/{jwt.sub}/+");
    assert_int_equal(r->subscribe[1].qos, 0);
    assert_int_equal(r->n_publish_allow, 0);
    assert_int_equal(r->n_subscribe_allow, 0);
    assert_true(r->has_on_connect);
    assert_string_equal(r->on_connect.topic, "presence/{device}");
    assert_string_equal(r->on_connect.payload, "online");
    assert_int_equal(r->on_connect.qos, 1);
    assert_true(r->on_connect.retain);
    assert_true(r->has_on_disconnect);
    assert_string_equal(r->on_disconnect.topic, "presence/{device}");
    assert_string_equal(r->on_disconnect.payload, "");
    assert_int_equal(r->on_disconnect.qos, 0);
    assert_false(r->on_disconnect.retain);
    assert_int_equal(r->slow_consumer, WSG_SLOW_DROP);

    /* routes[4]: mqtt envelope */
    r = &cfg->routes[4];
    assert_string_equal(r->broker, "main");
    assert_int_equal(r->format, WSG_FORMAT_ENVELOPE);
    assert_int_equal(r->slow_consumer, WSG_SLOW_CLOSE);
    assert_int_equal(r->n_publish, 0);
    assert_int_equal(r->n_subscribe, 0);
    assert_int_equal(r->n_publish_allow, 2);
    assert_string_equal(r->publish_allow[0], "app/+/in");
    assert_string_equal(r->publish_allow[1], "app/{query.room}/chat");
    assert_int_equal(r->publish_qos_max, 1);
    assert_int_equal(r->n_subscribe_allow, 1);
    assert_string_equal(r->subscribe_allow[0], "app/#");
    assert_false(r->has_on_connect);
    assert_false(r->has_on_disconnect);
    assert_null(config_route_by_name(cfg, "nope"));

    config_free(cfg);
    free(path);
}

static void test_spec_example(void **state)
{
    (void)state;
    setenv("JWT_SECRET", "s", 1);
    setenv("MQTT_PASSWORD", "p", 1);
    char *path = data_path("spec_example.json");
    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_file(path, &errs);
    if (!cfg)
        dump_errors(&errs);
    assert_non_null(cfg);
    assert_int_equal(cfg->n_listen, 2);
    assert_int_equal(cfg->n_routes, 6);
    assert_int_equal(cfg->n_brokers, 1);
    assert_string_equal(cfg->brokers[0].password, "p");
    assert_string_equal(cfg->auth.jwt.secret, "s");
    /* the single-object publish is one rule without "when" */
    const struct wsg_route *r = config_route_by_name(cfg, "/devices/{device}");
    assert_non_null(r);
    assert_int_equal(r->n_publish, 1);
    assert_null(r->publish[0].when_pointer);
    assert_string_equal(r->publish[0].topic, "devices/{device}/cmd");
    assert_int_equal(r->publish[0].qos, 1);
    config_free(cfg);
    free(path);
    unsetenv("JWT_SECRET");
    unsetenv("MQTT_PASSWORD");
}

static void test_workers_values(void **state)
{
    (void)state;
    struct wsg_config *cfg = load_ok("{" L ", \"workers\": 3}");
    assert_int_equal(cfg->workers, 3);
    config_free(cfg);
    cfg = load_ok("{" L ", \"workers\": \"auto\"}"); /* resolved at start, see workers.h */
    assert_int_equal(cfg->workers, 0);
    config_free(cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct wsg_config *cfg = load_ok(
        "{" L ", " JWT ", \"static\": {\"dir\": \"www\"}, " B ", \"routes\": ["
        "{\"path\": \"/t\", \"type\": \"tcp\", " TCP_TARGET "},"
        "{\"path\": \"/m\", \"type\": \"mqtt\", \"broker\": \"main\", \"publish\": {\"topic\": "
        "\"a\"},"
        " \"subscribe\": [{\"filter\": \"b/#\"}], \"on_connect\": {\"topic\": \"p\"}},"
        "{\"path\": \"/e\", \"type\": \"mqtt\", \"broker\": \"main\", \"format\": \"envelope\","
        " \"publish\": {\"allow\": [\"a/#\"]}}]}");
    assert_string_equal(cfg->source, SRC);
    assert_string_equal(cfg->base_dir, ".");
    assert_int_equal(cfg->workers, 1);
    assert_string_equal(cfg->listen[0].host, "0.0.0.0");
    assert_int_equal(cfg->n_origins, 0);
    assert_null(cfg->origins);
    assert_int_equal(cfg->limits.max_connections, 100000);
    assert_int_equal(cfg->limits.max_message_bytes, 1048576);
    assert_int_equal(cfg->limits.max_queue_bytes, 1048576);
    assert_int_equal(cfg->limits.idle_timeout_s, 0);
    assert_int_equal(cfg->limits.ping_interval_s, 30);
    assert_int_equal(cfg->limits.connect_timeout_ms, 5000);
    assert_int_equal(cfg->limits.max_messages_per_s, 0);
    assert_int_equal(cfg->n_trusted_proxies, 0);
    assert_int_equal(cfg->auth.jwt.leeway_s, 30);
    assert_string_equal(cfg->static_files.mount, "/");
    assert_string_equal(cfg->static_files.dir, "www"); /* no base dir: kept as written */
    assert_string_equal(cfg->brokers[0].client_id, "wsgate-main");
    assert_int_equal(cfg->brokers[0].version, WSG_MQTT_311);
    assert_int_equal(cfg->brokers[0].keepalive_s, 30);
    const struct wsg_route *t = &cfg->routes[0], *m = &cfg->routes[1], *e = &cfg->routes[2];
    assert_string_equal(t->name, "/t");
    assert_int_equal(t->framing, WSG_FRAMING_RAW);
    assert_int_equal(t->message, WSG_MESSAGE_BINARY);
    assert_int_equal(m->format, WSG_FORMAT_RAW);
    assert_int_equal(m->publish[0].qos, 0);
    assert_false(m->publish[0].retain);
    assert_int_equal(m->subscribe[0].qos, 0);
    assert_string_equal(m->on_connect.payload, "");
    assert_false(m->has_on_disconnect);
    assert_int_equal(e->publish_qos_max, 2);
    assert_int_equal(e->n_subscribe_allow, 0);
    config_free(cfg);
}

/* Unix-socket targets: the path is kept as the host with port 0, a
 * relative one resolved against the config's directory. */
static void test_unix_targets(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_string(
        "{" L ", \"routes\": [{\"path\": \"/a\", \"type\": \"tcp\", \"target\": {\"unix\": "
        "\"/run/app.sock\"}}, {\"path\": \"/b\", \"type\": \"tcp\", \"targets\": [{\"unix\": "
        "\"b.sock\"}, {\"host\": \"h\", \"port\": 2}]}]}",
        SRC, "/etc/wsgate", &errs);
    assert_non_null(cfg);
    assert_true(wsg_target_is_unix(&cfg->routes[0].targets[0]));
    assert_string_equal(cfg->routes[0].targets[0].host, "/run/app.sock");
    assert_string_equal(cfg->routes[1].targets[0].host, "/etc/wsgate/b.sock");
    assert_int_equal(cfg->routes[1].targets[0].port, 0);
    assert_false(wsg_target_is_unix(&cfg->routes[1].targets[1]));
    config_free(cfg);
}

/* Listener kinds: TCP with proxy_protocol, unix with and without a mode
 * (a relative path resolved against the config's directory); send_proxy
 * and compression on routes. */
static void test_listeners_and_send_proxy(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_string(
        "{\"listen\": [{\"port\": 8080, \"proxy_protocol\": true}, {\"unix\": \"w.sock\", "
        "\"mode\": \"0660\", \"proxy_protocol\": true}, {\"unix\": \"/run/x.sock\"}], "
        "\"routes\": [{\"path\": \"/a\", \"type\": \"tcp\", \"send_proxy\": \"v2\", "
        "\"compression\": true, "
        "\"target\": {\"host\": \"h\", \"port\": 1}}, {\"path\": \"/b\", \"type\": \"tcp\", "
        "\"target\": {\"host\": \"h\", \"port\": 1}}]}",
        SRC, "/etc/wsgate", &errs);
    assert_non_null(cfg);
    assert_true(cfg->listen[0].proxy_protocol);
    assert_false(wsg_listen_is_unix(&cfg->listen[0]));
    assert_true(wsg_listen_is_unix(&cfg->listen[1]));
    assert_string_equal(cfg->listen[1].host, "/etc/wsgate/w.sock");
    assert_int_equal(cfg->listen[1].mode, 0660);
    assert_true(cfg->listen[1].proxy_protocol);
    assert_int_equal(cfg->listen[2].mode, 0);
    assert_false(cfg->listen[2].proxy_protocol);
    assert_int_equal(cfg->routes[0].send_proxy, 2);
    assert_int_equal(cfg->routes[1].send_proxy, 0);
    assert_true(cfg->routes[0].compression);
    assert_false(cfg->routes[1].compression);
    config_free(cfg);
}

static void test_base_dir_from_string(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_string(
        "{" L ", \"static\": {\"dir\": \"www\"}, \"listen\": [{\"port\": 1, \"tls\": {\"cert\": "
        "\"/abs/c.pem\", \"key\": \"k.pem\"}}]}",
        SRC, "/etc/wsgate/", &errs);
    /* duplicate "listen": JSON_REJECT_DUPLICATES refuses it */
    assert_null(cfg);
    assert_int_equal(errs.count, 1);
    assert_non_null(strstr(errs.lines[0], "duplicate object key"));
    config_errors_free(&errs);

    cfg = config_load_string("{\"static\": {\"dir\": \"www\"}, \"listen\": [{\"port\": 1, \"tls\": "
                             "{\"cert\": \"/abs/c.pem\", \"key\": \"k.pem\"}}]}",
                             SRC, "/etc/wsgate/", &errs);
    assert_non_null(cfg);
    assert_string_equal(cfg->base_dir, "/etc/wsgate/");
    assert_string_equal(cfg->static_files.dir, "/etc/wsgate/www");
    assert_string_equal(cfg->listen[0].tls.cert, "/abs/c.pem");
    assert_string_equal(cfg->listen[0].tls.key, "/etc/wsgate/k.pem");
    config_free(cfg);
}

static void test_builtin_default(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_default(NULL, &errs);
    assert_non_null(cfg);
    assert_int_equal(errs.count, 0);
    assert_string_equal(cfg->source, "<built-in>");
    assert_int_equal(cfg->n_listen, 1);
    assert_string_equal(cfg->listen[0].host, "127.0.0.1");
    assert_int_equal(cfg->listen[0].port, 8080);
    assert_false(cfg->has_static);
    assert_int_equal(cfg->n_routes, 0);
    assert_int_equal(cfg->n_brokers, 0);
    assert_int_equal(cfg->limits.max_message_bytes, 1048576);
    config_free(cfg);

    /* A directory name JSON would need to escape goes through untouched. */
    cfg = config_load_default("/usr/share/wsgate/w\"w w", NULL);
    assert_non_null(cfg);
    assert_true(cfg->has_static);
    assert_string_equal(cfg->static_files.mount, "/");
    assert_string_equal(cfg->static_files.dir, "/usr/share/wsgate/w\"w w");
    config_free(cfg);
}

/* ------------------------------------------------------- syntax and files */

static void test_syntax_error_line_col(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    assert_null(config_load_string("{\n  \"listen\": [\n    { \"port\": 80x }\n  ]\n}\n", SRC, NULL,
                                   &errs));
    assert_int_equal(errs.count, 1);
    assert_has_line(&errs, SRC ":3:17: '}' expected near 'x'");
    config_errors_free(&errs);

    /* from a file: the source is the path exactly as given */
    char *path = data_path("syntax_error.json"), *want;
    assert_null(config_load_file(path, &errs));
    assert_true(asprintf(&want, "%s:3:17: '}' expected near 'x'", path) > 0);
    assert_int_equal(errs.count, 1);
    assert_has_line(&errs, want);
    free(want);
    free(path);
    config_errors_free(&errs);
}

static void test_syntax_error_empty_and_truncated(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    assert_null(config_load_string("", SRC, NULL, &errs));
    assert_has_line(&errs, SRC ":1:1: '[' or '{' expected near end of file");
    config_errors_free(&errs);
    assert_null(config_load_string("{\"listen\": [", SRC, NULL, &errs));
    assert_int_equal(errs.count, 1);
    assert_int_equal(strncmp(errs.lines[0], SRC ":1:", strlen(SRC ":1:")), 0);
    config_errors_free(&errs);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    assert_null(config_load_string("{\"listen\": [{\"port\": 1, \"port\": 2}]}", SRC, NULL, &errs));
    assert_int_equal(errs.count, 1);
    assert_has_line(&errs, SRC ":1:30: duplicate object key near '\"port\"'");
    config_errors_free(&errs);
    assert_null(config_load_string(
        "{\"listen\": [{\"port\": 1}],\n \"routes\": [],\n \"routes\": []}", SRC, NULL, &errs));
    assert_int_equal(errs.count, 1);
    assert_has_line(&errs, SRC ":3:9: duplicate object key near '\"routes\"'");
    config_errors_free(&errs);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    assert_null(config_load_file("no/such/dir/wsgate.json", &errs));
    assert_int_equal(errs.count, 1);
    assert_has_line(&errs, "no/such/dir/wsgate.json: cannot open: No such file or directory");
    config_errors_free(&errs);
    assert_null(config_load_file("no/such/dir/wsgate.json", NULL)); /* errs is optional */
}

static void test_source_names_the_path_as_given(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    assert_null(config_load_string("{}", "conf.d/../wsgate.json", NULL, &errs));
    assert_has_line(&errs, "conf.d/../wsgate.json: missing \"listen\"");
    config_errors_free(&errs);
}

/* ------------------------------------------------------- error collection */

static void test_multiple_errors_reported_together(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    load_bad(
        "{\"listen\": [{\"port\": \"80a\"}],"
        " \"limits\": {\"max_connections\": -1, \"pingg\": 1},"
        " \"origins\": [\"nope\"],"
        " " B ","
        " \"routes\": ["
        "  {\"path\": \"/a\", \"type\": \"tcp\", \"tagret\": {}},"
        "  {\"path\": \"/b\", \"type\": \"tcp\", \"target\": {\"host\": \"h\", \"port\": \"80a\"}},"
        "  {\"path\": \"/c\", \"type\": \"mqtt\", \"broker\": \"mian\", \"subscribe\": "
        "[{\"filter\": \"a#\"}]},"
        "  {\"path\": \"/d\", \"type\": \"tcp\", \"broker\": \"main\", " TCP_TARGET "}"
        " ]}",
        &errs);
    assert_true(errs.count >= 10);
    assert_has_line(&errs, SRC ": listen[0].port: expected an integer 1..65535, got \"80a\"");
    assert_has_line(&errs,
                    SRC ": limits.max_connections: expected an integer 0..2147483647, got -1");
    assert_has_line(&errs,
                    SRC ": limits.pingg: unknown key (expected one of: max_connections, "
                        "max_message_bytes, max_queue_bytes, idle_timeout_s, ping_interval_s, "
                        "connect_timeout_ms, max_messages_per_s)");
    assert_has_line(&errs, SRC ": origins[0]: expected an origin like \"https://app.example.com\" "
                               "(scheme://host[:port], no path), got \"nope\"");
    assert_has_line(&errs,
                    SRC ": routes[0].tagret: unknown key (expected one of: path, name, type, "
                        "subprotocols, require_subprotocol, auth, compression, target, "
                        "targets, target_map, framing, message, send_proxy, broker, format, "
                        "publish, subscribe, on_connect, "
                        "on_disconnect, slow_consumer)");
    assert_has_line(&errs, SRC ": routes[0]: missing \"target\", \"targets\" or \"target_map\"");
    assert_has_line(&errs,
                    SRC ": routes[1].target.port: expected an integer 1..65535, got \"80a\"");
    assert_has_line(&errs, SRC ": routes[2].broker: expected the name of an entry in \"brokers\" "
                               "(\"main\"), got \"mian\"");
    assert_has_line(&errs,
                    SRC ": routes[2].subscribe[0].filter: expected an MQTT topic filter "
                        "(non-empty, \"+\" only as a whole level, \"#\" only as the whole last "
                        "level), got \"a#\"");
    assert_has_line(&errs, SRC ": routes[3].broker: only for type \"mqtt\"");
    config_errors_free(&errs);
}

static void test_error_list_is_bounded(void **state)
{
    (void)state;
    /* 150 bad origins: 100 listed, then one line with the rest counted. */
    size_t len = 0;
    char *json = NULL;
    FILE *f = open_memstream(&json, &len);
    assert_non_null(f);
    fputs("{" L ", \"origins\": [", f);
    for (int i = 0; i < 150; i++)
        fprintf(f, "%s\"bad%d\"", i ? ", " : "", i);
    fputs("]}", f);
    fclose(f);
    struct config_errors errs = {0};
    load_bad(json, &errs);
    assert_int_equal(errs.count, 101);
    assert_has_line(&errs, SRC ": 50 more errors not listed");
    config_errors_free(&errs);
    free(json);
}

static void test_long_values_are_cut(void **state)
{
    (void)state;
    char json[512];
    char big[201];
    memset(big, 'a', 200);
    big[200] = '\0';
    snprintf(json, sizeof json, "{\"listen\": [{\"port\": \"%s\"}]}", big);
    struct config_errors errs = {0};
    load_bad(json, &errs);
    assert_int_equal(errs.count, 1);
    assert_non_null(strstr(errs.lines[0], "got \"aaaa"));
    assert_non_null(strstr(errs.lines[0], "..."));
    assert_true(strlen(errs.lines[0]) < 200);
    config_errors_free(&errs);
}

/* ------------------------------------------------------------- *_env */

static void test_env_resolution(void **state)
{
    (void)state;
    setenv("WSGATE_TEST_HOST", "10.1.2.3", 1);
    setenv("WSGATE_TEST_URI", "ssl://mq.example.com:8883", 1);
    setenv("WSGATE_TEST_PW", "pa55", 1);
    setenv("WSGATE_TEST_EMPTY", "", 1);
    struct wsg_config *cfg =
        load_ok("{\"listen\": [{\"host_env\": \"WSGATE_TEST_HOST\", \"port\": 1}],"
                " \"brokers\": {\"m\": {\"uri_env\": \"WSGATE_TEST_URI\", \"username_env\": "
                "\"WSGATE_TEST_EMPTY\", \"password_env\": \"WSGATE_TEST_PW\"}}}");
    assert_string_equal(cfg->listen[0].host, "10.1.2.3");
    assert_string_equal(cfg->brokers[0].uris[0], "ssl://mq.example.com:8883");
    assert_string_equal(cfg->brokers[0].username, "");
    assert_string_equal(cfg->brokers[0].password, "pa55");
    config_free(cfg);

    /* The variable is read at load time: unset it and the same config fails. */
    unsetenv("WSGATE_TEST_PW");
    struct config_errors errs = {0};
    load_bad("{" L ", \"brokers\": {\"m\": {\"uri\": \"tcp://h:1\", \"username\": \"u\","
             " \"password_env\": \"WSGATE_TEST_PW\"}}}",
             &errs);
    assert_int_equal(errs.count, 1);
    assert_has_line(&errs,
                    SRC ": brokers.m.password_env: environment variable WSGATE_TEST_PW is not set");
    config_errors_free(&errs);

    /* An empty value from the environment is still checked like any value. */
    load_bad("{\"listen\": [{\"host_env\": \"WSGATE_TEST_EMPTY\", \"port\": 1}]}", &errs);
    assert_has_line(&errs,
                    SRC ": listen[0].host_env: expected a host name or address, got <hidden>");
    config_errors_free(&errs);
    unsetenv("WSGATE_TEST_HOST");
    unsetenv("WSGATE_TEST_URI");
    unsetenv("WSGATE_TEST_EMPTY");
}

static void test_secrets_never_in_messages(void **state)
{
    (void)state;
    static const char secret[] = "TOPSECRET-4242";
    setenv("WSGATE_TEST_SECRET", secret, 1);
    setenv("WSGATE_TEST_SECRET_URI", "tcp://user:TOPSECRET-4242@h:1", 1);
    struct config_errors errs = {0};
    load_bad("{\"listen\": [{\"port\": \"TOPSECRET-4242\"}],"
             " \"auth\": {\"jwt\": {\"secret\": \"TOPSECRET-4242\", \"public_key_env\": "
             "\"WSGATE_TEST_SECRET\", \"leeway_s\": \"TOPSECRET-4242\"}},"
             " \"brokers\": {\"m\": {\"uri_env\": \"WSGATE_TEST_SECRET_URI\","
             " \"password\": \"TOPSECRET-4242\", \"keepalive_s\": 0}},"
             " \"routes\": [{\"path\": \"/x\", \"type\": \"tcp\", \"target\": {\"host_env\": "
             "\"WSGATE_TEST_SECRET\", \"port\": 0}}]}",
             &errs);
    assert_true(errs.count >= 5);
    for (size_t i = 0; i < errs.count; i++) {
        /* only the places where the user wrote it in plain sight may echo it */
        if (strstr(errs.lines[i], "listen[0].port") || strstr(errs.lines[i], "leeway_s"))
            continue;
        if (strstr(errs.lines[i], secret)) {
            dump_errors(&errs);
            fail_msg("secret leaked: %s", errs.lines[i]);
        }
    }
    assert_has_line(&errs, SRC ": brokers.m.uri_env: expected a broker URI \"tcp://host:port\" "
                               "(schemes: tcp, mqtt, ssl, mqtts, ws, wss), got <hidden>");
    assert_has_line(&errs, SRC ": brokers.m: \"password\" needs \"username\" with MQTT 3.1.1");
    config_errors_free(&errs);
    unsetenv("WSGATE_TEST_SECRET");
    unsetenv("WSGATE_TEST_SECRET_URI");
}

/* ---------------------------------------------------------- valid corners */

static void test_valid_corners(void **state)
{
    (void)state;
    struct wsg_config *cfg = load_ok(
        "{\"listen\": [{\"host\": \"::1\", \"port\": 65535}, {\"host\": \"::1\", \"port\": 1}],"
        " \"origins\": [\"chrome-extension://abcdef\", \"http://127.0.0.1\"],"
        " \"trusted_proxies\": [\"0.0.0.0/0\", \"::/0\", \"192.168.1.1/32\"],"
        " \"limits\": {\"max_connections\": 0, \"max_message_bytes\": 2147483647},"
        " \"auth\": {\"jwt\": {\"public_key\": \"/k.pem\"}},"
        " \"brokers\": {\"a.b-c_1\": {\"uris\": [\"tcp://[::1]:1883\", \"ws://h:80/mqtt\"],"
        "  \"version\": \"5\", \"password\": \"p\"}},"
        " \"routes\": ["
        "  {\"path\": \"/r\", \"type\": \"mqtt\", \"broker\": \"a.b-c_1\", \"auth\": \"jwt\","
        "   \"publish\": [{\"when\": {\"pointer\": \"\", \"equals\": null}, \"topic\": "
        "\"$app/{jwt.sub}\"},"
        "                {\"when\": {\"pointer\": \"/a~0b~1c\", \"equals\": false}, \"topic\": "
        "\"/\"}],"
        "   \"on_disconnect\": {\"topic\": \"x/{query.id}\", \"qos\": 2}},"
        "  {\"path\": \"/s\", \"type\": \"mqtt\", \"broker\": \"a.b-c_1\", \"format\": "
        "\"envelope\","
        "   \"subscribe\": {\"allow\": [\"#\", \"+\", \"$SYS/#\"]}}"
        " ]}");
    assert_int_equal(cfg->brokers[0].version, WSG_MQTT_5);
    assert_string_equal(cfg->brokers[0].password, "p"); /* MQTT 5: password alone is fine */
    assert_string_equal(cfg->auth.jwt.public_key, "/k.pem");
    assert_null(cfg->auth.jwt.secret);
    assert_string_equal(cfg->routes[0].publish[0].when_pointer, "");
    assert_string_equal(cfg->routes[0].publish[0].when_equals, "null");
    assert_string_equal(cfg->routes[0].publish[1].when_equals, "false");
    assert_int_equal(cfg->routes[1].publish_qos_max, 2);
    assert_int_equal(cfg->limits.max_connections, 0);
    config_free(cfg);
}

static void test_errors_free_is_idempotent(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    config_errors_free(&errs);
    config_errors_free(NULL);
    config_free(NULL);
    assert_null(config_load_string(NULL, SRC, NULL, &errs));
    assert_has_line(&errs, SRC ": no config text");
    config_errors_free(&errs);
    config_errors_free(&errs);
    assert_int_equal(errs.count, 0);
    assert_null(errs.lines);
}

/* auth.http and auth.jwt.cookie as a site in front of an mqtt route sets them. */
static void test_auth_http_and_cookie(void **state)
{
    (void)state;
    struct wsg_config *cfg =
        load_ok("{" L ", \"auth\": {\"jwt\": {\"secret\": \"k\", \"cookie\": \"session_jwt\"}, "
                "\"http\": {\"url\": \"http://127.0.0.1:9100/ws-auth\", \"cache_s\": 30, "
                "\"headers\": [\"Cookie\", \"authorization\"]}}, "
                "\"brokers\": {\"main\": {\"uri\": \"tcp://127.0.0.1:1883\"}}, "
                "\"routes\": [{\"path\": \"/live\", \"type\": \"mqtt\", \"broker\": \"main\", "
                "\"auth\": \"http\", \"subscribe\": [{\"filter\": \"users/{auth.user}/#\"}]}, "
                "{\"path\": \"/j\", \"type\": \"mqtt\", \"broker\": \"main\", \"auth\": \"jwt\", "
                "\"subscribe\": [{\"filter\": \"users/{auth.sub}/{jwt.sub}\"}]}]}");
    assert_string_equal(cfg->auth.jwt.cookie, "session_jwt");
    assert_true(cfg->auth.has_http);
    assert_string_equal(cfg->auth.http.url, "http://127.0.0.1:9100/ws-auth");
    assert_int_equal(cfg->auth.http.timeout_ms, 2000);
    assert_int_equal(cfg->auth.http.cache_s, 30);
    assert_int_equal(cfg->auth.http.n_headers, 2);
    assert_string_equal(cfg->auth.http.headers[0], "cookie");
    assert_string_equal(cfg->auth.http.headers[1], "authorization");
    assert_true(cfg->routes[0].auth_http);
    assert_false(cfg->routes[0].auth_jwt);
    assert_true(cfg->routes[1].auth_jwt);
    config_free(cfg);

    /* {jwt.x} is for JWT routes only; {auth.x} needs some "auth" */
    struct config_errors errs = {0};
    load_bad("{" L ", \"auth\": {\"http\": {\"url\": \"http://a/x\"}}, "
             "\"brokers\": {\"main\": {\"uri\": \"tcp://127.0.0.1:1883\"}}, "
             "\"routes\": [{\"path\": \"/a\", \"type\": \"mqtt\", \"broker\": \"main\", "
             "\"auth\": \"http\", \"subscribe\": [{\"filter\": \"u/{jwt.sub}\"}]}, "
             "{\"path\": \"/b\", \"type\": \"mqtt\", \"broker\": \"main\", "
             "\"subscribe\": [{\"filter\": \"u/{auth.sub}\"}]}]}",
             &errs);
    assert_int_equal(errs.count, 2);
    assert_string_equal(errs.lines[0], SRC ": routes[0].subscribe[0].filter: {jwt.sub} needs "
                                           "\"auth\": \"jwt\" on the route, got \"u/{jwt.sub}\"");
    assert_string_equal(errs.lines[1], SRC ": routes[1].subscribe[0].filter: {auth.sub} needs "
                                           "\"auth\": \"http\" or \"jwt\" on the route, got "
                                           "\"u/{auth.sub}\"");
    config_errors_free(&errs);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_full_config_field_by_field),
        cmocka_unit_test(test_auth_http_and_cookie),
        cmocka_unit_test(test_spec_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_workers_values),
        cmocka_unit_test(test_base_dir_from_string),
        cmocka_unit_test(test_unix_targets),
        cmocka_unit_test(test_listeners_and_send_proxy),
        cmocka_unit_test(test_builtin_default),
        cmocka_unit_test(test_syntax_error_line_col),
        cmocka_unit_test(test_syntax_error_empty_and_truncated),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_source_names_the_path_as_given),
        cmocka_unit_test(test_multiple_errors_reported_together),
        cmocka_unit_test(test_error_list_is_bounded),
        cmocka_unit_test(test_long_values_are_cut),
        cmocka_unit_test(test_env_resolution),
        cmocka_unit_test(test_secrets_never_in_messages),
        cmocka_unit_test(test_valid_corners),
        cmocka_unit_test(test_errors_free_is_idempotent),
    };
    enum {
        N_FIXED = sizeof fixed / sizeof fixed[0],
        N_CASES = sizeof error_cases / sizeof error_cases[0]
    };
    /* One cmocka test per error path, named after the case. */
    static struct CMUnitTest tests[N_FIXED + N_CASES];
    memcpy(tests, fixed, sizeof fixed);
    for (size_t i = 0; i < N_CASES; i++) {
        tests[N_FIXED + i] = (struct CMUnitTest){
            .name = error_cases[i].name,
            .test_func = run_error_case,
            .initial_state = (void *)&error_cases[i],
        };
    }
    return _cmocka_run_group_tests("config", tests, N_FIXED + N_CASES, setup_env, NULL);
}

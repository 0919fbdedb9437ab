/* config.h - load and validate wsgate's JSON config into plain structs.
 *
 * The loader checks the whole schema of SPEC.md, collects every error it finds
 * (each naming the file, the JSON path and what was expected) and resolves
 * "*_env" secrets. It knows nothing of sockets; the runtime reads these structs.
 * Every string and array here is owned by the struct wsg_config that holds it
 * and is freed by config_free(). */
#ifndef WSGATE_CONFIG_H
#define WSGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wsg_tls {
    char *cert; /* PEM certificate chain path */
    char *key;  /* PEM private key path */
    /* Plain connections on the same port as well, told apart by their first
     * byte (websockify's default when given a certificate without
     * --ssl-only). Default false. */
    bool allow_plain;
};

/* A TCP listener (host, port) or a unix-socket one (port 0, host its path). */
struct wsg_listen {
    char *host; /* bind address; "0.0.0.0", "::", "127.0.0.1", "localhost" ...;
                   for a unix listener, the socket's path */
    int port;   /* 1..65535; 0: a unix-socket listener */
    int mode;   /* unix listener: the socket file's mode (0660); 0: as the umask leaves it */
    bool proxy_protocol; /* every connection starts with a PROXY v1/v2 header */
    bool has_tls;
    struct wsg_tls tls;
};

static inline bool wsg_listen_is_unix(const struct wsg_listen *l) { return l->port == 0; }

/* All limits: 0 means "none" except where noted. */
struct wsg_limits {
    int64_t max_connections;    /* default 100000 */
    int64_t max_message_bytes;  /* default 1048576 */
    int64_t max_queue_bytes;    /* default 1048576, per connection per direction */
    int64_t idle_timeout_s;     /* default 0 */
    int64_t ping_interval_s;    /* default 30 */
    int64_t connect_timeout_ms; /* default 5000 */
    int64_t max_messages_per_s; /* default 0 */
};

struct wsg_jwt {
    char *secret;     /* HS256 shared secret (usually from secret_env) or NULL */
    char *public_key; /* path to a PEM public key (RS256/ES256) or NULL */
    char *issuer;     /* required "iss" or NULL */
    char *audience;   /* required "aud" or NULL */
    int64_t leeway_s; /* clock skew allowed for exp/nbf, default 30 */
    char *cookie;     /* name of a cookie carrying the token, or NULL */
};

/* "auth": {"http": {...}}: the external auth service (SPEC-2 A). */
struct wsg_auth_http {
    char *url;          /* "http://host[:port]/path" */
    int64_t timeout_ms; /* default 2000 */
    int64_t cache_s;    /* allowed answers kept this long; 0 = never (default) */
    char **headers;     /* request headers forwarded, lower-case names */
    size_t n_headers;
};

struct wsg_auth {
    bool has_jwt;
    struct wsg_jwt jwt;
    bool has_http;
    struct wsg_auth_http http;
};

struct wsg_static {
    char *mount; /* URL prefix, starts with "/" */
    char *dir;   /* directory; relative paths are relative to the config file's dir */
};

enum wsg_mqtt_version { WSG_MQTT_311 = 4, WSG_MQTT_5 = 5 };

struct wsg_broker_tls {
    char *ca;      /* CA bundle path or NULL (system store) */
    char *cert;    /* client certificate path or NULL */
    char *key;     /* client key path or NULL */
    bool insecure; /* skip server verification (tests only) */
};

struct wsg_broker {
    char *name;  /* the key in "brokers" */
    char **uris; /* one or more "tcp://host:port" / "ssl://host:port" */
    size_t n_uris;
    char *client_id;               /* default "wsgate-<name>" */
    enum wsg_mqtt_version version; /* default 3.1.1 */
    char *username;                /* or NULL */
    char *password;                /* or NULL; usually from password_env */
    int64_t keepalive_s;           /* default 30 */
    /* Keep the MQTT session across reconnects and restarts (3.1.1: clean
     * session off; 5: clean start off, Session Expiry Interval). */
    bool persistent_session;  /* default false */
    int64_t session_expiry_s; /* MQTT 5 only; default 3600 */
    bool has_tls;
    struct wsg_broker_tls tls;
};

/* A backend: TCP host:port, or a unix socket (port 0, host holds its path). */
struct wsg_target {
    char *host; /* a host name or address; for a unix target, the socket's path */
    int port;   /* 1..65535; 0: a unix-socket target */
};

static inline bool wsg_target_is_unix(const struct wsg_target *t) { return t->port == 0; }

/* sizeof(sockaddr_un.sun_path) on Linux, its NUL included. */
#define WSG_UNIX_PATH_MAX 108

enum wsg_route_type { WSG_ROUTE_TCP, WSG_ROUTE_MQTT };
enum wsg_framing { WSG_FRAMING_RAW, WSG_FRAMING_LINES, WSG_FRAMING_LENGTH32 };
enum wsg_message { WSG_MESSAGE_BINARY, WSG_MESSAGE_TEXT };
enum wsg_mqtt_format { WSG_FORMAT_RAW, WSG_FORMAT_ENVELOPE };
/* What happens to broker messages for a client whose queue is full. */
enum wsg_slow_consumer { WSG_SLOW_DROP, WSG_SLOW_CLOSE };

/* One raw-format publish rule: "publish" as an object is one rule without "when". */
struct wsg_publish_rule {
    char *when_pointer; /* JSON Pointer, or NULL: the rule matches every message */
    char *when_equals; /* the value compared, as compact JSON text (e.g. "\"telemetry\"", "3"); NULL
                          iff when_pointer is NULL */
    char *topic;       /* template */
    int qos;           /* 0..2, default 0 */
    bool retain;
};

struct wsg_subscription {
    char *filter; /* template of an MQTT filter */
    int qos;      /* 0..2, default 0 */
};

struct wsg_presence {
    char *topic;   /* template */
    char *payload; /* may be "" */
    int qos;
    bool retain;
};

struct wsg_route {
    char *name; /* default: path */
    char *path; /* pattern, starts with "/", may hold {capture} segments */
    enum wsg_route_type type;
    char **subprotocols; /* preference order; may be empty */
    size_t n_subprotocols;
    bool require_subprotocol;
    bool auth_jwt;    /* "auth": "jwt" */
    bool auth_http;   /* "auth": "http": the auth service decides at each handshake */
    bool compression; /* permessage-deflate (RFC 7692) accepted when a client offers it */

    /* type "tcp" */
    struct wsg_target *targets; /* from "target" (one) or "targets" (several) */
    size_t n_targets;
    char *target_map_file; /* or NULL; then n_targets == 0 */
    char *target_map_key;  /* template, e.g. "{query.token}" */
    enum wsg_framing framing;
    enum wsg_message message;
    int send_proxy; /* 0, or the PROXY protocol version (1, 2) written to the backend first */

    /* type "mqtt" */
    char *broker; /* name of an entry in brokers */
    enum wsg_mqtt_format format;
    struct wsg_publish_rule *publish; /* raw: rules in order; NULL/0 = no publishing */
    size_t n_publish;
    struct wsg_subscription *subscribe; /* raw: filters subscribed for the client */
    size_t n_subscribe;
    char **publish_allow; /* envelope: filters a client may publish to */
    size_t n_publish_allow;
    int publish_qos_max;    /* envelope: "qos" in publish: highest QoS allowed, default 2 */
    char **subscribe_allow; /* envelope: filters a client may subscribe within */
    size_t n_subscribe_allow;
    bool has_on_connect;
    struct wsg_presence on_connect;
    bool has_on_disconnect;
    struct wsg_presence on_disconnect;
    enum wsg_slow_consumer slow_consumer; /* default drop */
};

/* Upper bound of "workers": one process per core is the point, and each
 * worker holds its own broker sessions. */
#define WSG_MAX_WORKERS 64

struct wsg_config {
    char *source;     /* file name used in messages, or "<built-in>" */
    char *base_dir;   /* directory relative paths are resolved against */
    unsigned workers; /* processes sharing the listeners; 0 = "auto" (one per CPU) */
    struct wsg_listen *listen;
    size_t n_listen;
    char **origins; /* NULL/0 = any origin */
    size_t n_origins;
    struct wsg_limits limits;
    char **trusted_proxies; /* IPs or CIDRs */
    size_t n_trusted_proxies;
    struct wsg_auth auth;
    bool has_static;
    struct wsg_static static_files;
    struct wsg_broker *brokers;
    size_t n_brokers;
    struct wsg_route *routes;
    size_t n_routes;
};

/* A list of human-readable errors, each a full line such as
 * "wsgate.json: routes[2].target.port: expected an integer 1..65535, got \"80a\"". */
struct config_errors {
    char **lines; /* owned */
    size_t count;
};

void config_errors_free(struct config_errors *errs);

/* Parse and validate. On success returns a config (free with config_free) and
 * leaves errs empty; on failure returns NULL and fills errs with every error.
 * `source_name` is what messages call the file. */
struct wsg_config *config_load_file(const char *path, struct config_errors *errs);
struct wsg_config *config_load_string(const char *json_text, const char *source_name,
                                      const char *base_dir, struct config_errors *errs);

/* The built-in default: 127.0.0.1:8080, /healthz, /metrics, static demo page
 * if `www_dir` is non-NULL, no routes that need a backend. */
struct wsg_config *config_load_default(const char *www_dir, struct config_errors *errs);

void config_free(struct wsg_config *cfg);

const struct wsg_route *config_route_by_name(const struct wsg_config *cfg, const char *name);
const struct wsg_broker *config_broker_by_name(const struct wsg_config *cfg, const char *name);

/* A deep copy of one broker's settings (for a session that outlives its
 * config), freed with config_broker_free(), or NULL when memory is out; and
 * whether two are the same. */
struct wsg_broker *config_broker_copy(const struct wsg_broker *b);
void config_broker_free(struct wsg_broker *b);
bool config_broker_equal(const struct wsg_broker *a, const struct wsg_broker *b);

#endif

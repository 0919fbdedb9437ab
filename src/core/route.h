/* route.h - match request paths against the configured routes, and expand
 * templates ("devices/{device}/cmd", "{query.token}", "{jwt.sub}") with the
 * refusal rules of SPEC.md. Pure: no sockets, no lws; unit-tested and fuzzed. */
#ifndef WSGATE_ROUTE_H
#define WSGATE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

struct wsg_config;
struct wsg_route;

#define ROUTE_MAX_CAPTURES 16

/* One {name} capture of the request path, percent-decoded. */
struct route_capture {
    char *name;  /* owned by the route_match */
    char *value; /* owned by the route_match, decoded, never empty, no + # / NUL */
};

/* The result of matching one request. Filled by route_table_match(); release
 * with route_match_clear(). */
struct route_match {
    size_t route_index;             /* index into cfg->routes */
    const struct wsg_route *route;  /* borrowed from the config */
    struct route_capture *captures; /* owned, n_captures entries (kept per connection:
                                       sized to the route, not ROUTE_MAX_CAPTURES) */
    size_t n_captures;
    char *query; /* raw query string after '?', without it; owned; NULL if none */
};

enum route_status {
    ROUTE_OK = 0,
    ROUTE_NOT_FOUND,   /* -> HTTP 404 */
    ROUTE_BAD_REQUEST, /* -> HTTP 400: capture empty / holds + # / NUL, bad %-encoding */
};

/* Compiled route patterns, in config order. Borrows the config: the config
 * must outlive the table. */
struct route_table;

struct route_table *route_table_create(const struct wsg_config *cfg);
void route_table_destroy(struct route_table *table);

/* The longest request target (path and query, percent-encoded) that a route
 * is matched against; a longer one is refused with 400. lws keeps all request
 * headers in 4 KiB, but re-encoding what it decoded may triple a byte. */
#define ROUTE_MAX_URI_BYTES 8192

/* Match `uri` (the request target: path, optionally "?query"). The first
 * route whose pattern matches wins. On ROUTE_BAD_REQUEST / ROUTE_NOT_FOUND a
 * one-line reason for the client is written into `reason`. */
enum route_status route_table_match(const struct route_table *table, const char *uri,
                                    struct route_match *out, char *reason, size_t reason_len);
void route_match_clear(struct route_match *m);

/* Checks a path pattern: starts with '/', each {name} is a whole segment with a
 * name of [A-Za-z0-9_], names unique; a last segment "**" matches the rest of
 * the path, whatever it is, or nothing (a pattern of "**" alone takes every path). 0 or -1 with a
 * message in err. */
int route_pattern_validate(const char *pattern, char *err, size_t err_len);

/* Which placeholder kinds a template may use (bit flags). Captures named in
 * the route's path pattern are always allowed. */
enum {
    ROUTE_TMPL_QUERY = 1 << 0, /* {query.<name>} */
    ROUTE_TMPL_JWT = 1 << 1,   /* {jwt.<claim>} */
    ROUTE_TMPL_MSG = 1 << 2,   /* {msg./json/pointer} */
    ROUTE_TMPL_AUTH = 1 << 3,  /* {auth.<claim>}: the auth service's (or the JWT's) claims */
};

/* Checks a template's syntax and that every {name} is a capture of
 * `path_pattern` or an allowed {query.x} / {jwt.x} / {msg./p}. 0 or -1 + err. */
int route_template_validate(const char *tmpl, const char *path_pattern, int allowed_kinds,
                            char *err, size_t err_len);

/* Resolves placeholders that are not path captures or query parameters
 * (jwt.*, msg.*): returns a value or NULL if absent. `name` is the whole
 * placeholder text, e.g. "jwt.sub". */
typedef const char *(*route_lookup_fn)(void *ctx, const char *name);

/* Expands `tmpl` into `out` (NUL-terminated). Values of captures, query
 * parameters and looked-up names must obey the capture rules (non-empty, no
 * + # / NUL); query values are percent-decoded first. Returns the length, or
 * -1 with a one-line reason in err (missing value, refused value, too long). */
int route_expand(const char *tmpl, const struct route_match *m, route_lookup_fn lookup,
                 void *lookup_ctx, char *out, size_t out_len, char *err, size_t err_len);

/* The first query parameter `name`, percent-decoded into out: 0, 1 if
 * absent, -1 if badly encoded or longer than out. */
int route_query_param(const struct route_match *m, const char *name, char *out, size_t out_len);

/* True if a (decoded) value may be put into a topic or key: non-empty and
 * free of '+', '#', '/' and NUL. `len` counts bytes (values may hold NUL). */
bool route_value_is_safe(const char *value, size_t len);

#endif

/* rules.h - the rules in force: a validated config with its compiled route
 * table and target maps. Shared by reference: the server holds the current
 * one, every session holds the one it was accepted under, so a SIGHUP reload
 * swaps the rules for new connections while open ones keep theirs; the old
 * rules are freed with their last connection. Loop thread only. */
#ifndef WSGATE_RULES_H
#define WSGATE_RULES_H

#include "config.h"

#include <stdbool.h>

struct route_table;
struct map_watch;
struct addr_set;
struct auth_verifier;

struct rules {
    unsigned refs;
    struct wsg_config *cfg;     /* owned */
    struct route_table *routes; /* owned; borrows cfg */
    struct map_watch *maps;     /* owned; borrows cfg */
    struct addr_set *trusted;   /* owned: trusted_proxies compiled */
    struct auth_verifier *auth; /* owned; NULL without auth.jwt */
};

/* Takes ownership of cfg and maps (both freed on failure). One reference.
 * NULL with a one-line reason in err (a public key that does not load). */
struct rules *rules_create(struct wsg_config *cfg, struct map_watch *maps, char *err,
                           size_t err_len);

/* Loads the config file `path` and its target maps. NULL with every error in
 * errs when either fails. */
struct rules *rules_load(const char *path, struct config_errors *errs);

/* What a running process cannot change without a restart: its listeners
 * (lws binds them at start; certificates at the same paths do reload) and
 * new subprotocol names (each is a protocol lws knows from the start).
 * Appends one error per blocker to errs, naming the JSON path. */
void rules_check_reloadable(const struct wsg_config *running, const struct wsg_config *next,
                            bool (*protocol_known)(void *ctx, const char *name), void *ctx,
                            struct config_errors *errs);

struct rules *rules_ref(struct rules *r);
void rules_unref(struct rules *r);

#endif

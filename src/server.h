/* server.h - the libwebsockets context: one vhost per configured listener,
 * the protocol table, the WebSocket handshake (route match, Origin,
 * subprotocol, limits) and the event loop. */
#ifndef WSGATE_SERVER_H
#define WSGATE_SERVER_H

#include <stddef.h>

struct wsg_config;
struct map_watch;
struct server;

/* Creates the context and binds every listener. Takes ownership of cfg and
 * maps (the target maps loaded for it). `config_path` is re-read on SIGHUP
 * (NULL: the built-in config, nothing to re-read). On failure returns NULL
 * with a message naming the listener in err. */
struct server *server_create(struct wsg_config *cfg, struct map_watch *maps,
                             const char *config_path, char *err, size_t err_len);

/* Runs the loop until server_stop() is called. Returns 0. */
int server_run(struct server *srv);

/* Makes server_run() return once no client has been connected for
 * `seconds` (websockify's --idle-timeout), counted from now. */
void server_exit_when_idle(struct server *srv, unsigned seconds);

/* Async-signal-safe: asks the loop to reload the config (SIGHUP). */
void server_request_reload(struct server *srv);

/* Async-signal-safe: asks the loop to stop. */
void server_stop(struct server *srv);

void server_destroy(struct server *srv);

#endif

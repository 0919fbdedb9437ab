/* map_watch.h - the target maps of the running config: every route with a
 * "target_map" gets a snapshot loaded at start, re-read when its file (or, for
 * a directory of token files, the directory or any file in it) changes
 * (polled) or on SIGHUP. A file that fails to load is reported with its JSON
 * paths and the last good snapshot stays in force. No lws here: the server
 * calls map_watch_poll() from a timer. */
#ifndef WSGATE_MAP_WATCH_H
#define WSGATE_MAP_WATCH_H

#include <stddef.h>

#include "config.h"

struct map_watch;

/* Loads every route's map. A map that fails is an error of the config:
 * returns NULL with every error appended to errs. */
struct map_watch *map_watch_create(const struct wsg_config *cfg, struct config_errors *errs);

/* The targets for `key` in route `route_index`'s map, or NULL (*n = 0). Valid
 * until the next poll or reload: callers copy what they keep. */
const struct wsg_target *map_watch_lookup(const struct map_watch *w, size_t route_index,
                                          const char *key, size_t *n);

/* Re-reads the files whose size, mtime or inode changed. */
void map_watch_poll(struct map_watch *w);

/* Re-reads every file (SIGHUP). */
void map_watch_reload(struct map_watch *w);

void map_watch_destroy(struct map_watch *w);

#endif

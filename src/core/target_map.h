/* target_map.h - websockify token files: a key (e.g. a VM's token) to the
 * backend target(s) for that key, in websockify's own format or as JSON.
 * Loading reads files and nothing else (files in, a snapshot or errors with
 * lines or JSON paths out); the bridge looks keys up per connection, and the
 * runtime swaps snapshots on reload. */
#ifndef WSGATE_TARGET_MAP_H
#define WSGATE_TARGET_MAP_H

#include <stddef.h>

#include "config.h"

/* An immutable snapshot of one map file. */
struct target_map;

/* Reads and validates `path`: a file, or a directory whose regular files
 * (hidden ones skipped) are read in name order into one map, as websockify's
 * TokenFile plugin does. A file whose first non-blank byte is '{', '[' or '"'
 * is JSON: an object whose values are a target {"host": "...", "port": N} or
 * {"unix": "/path"}, a "host:port" string ("[v6addr]:port" for IPv6) or
 * "unix:/path" / "unix_socket:/path", or a non-empty array of those (tried in
 * order). Any other file is websockify's format: lines "token: host:port" or
 * "token: unix_socket:/path" (split at the ':' followed by a blank), blank
 * lines and lines starting with '#' ignored. A unix target has port 0 and its
 * absolute path as host. A token given twice is an error. Errors are
 * appended to errs, each like
 *   "consoles.json: vm1.port: expected an integer 1..65535, got \"x\""
 *   "consoles.json:3:7: <JSON syntax error>"
 *   "tokens.cfg:4: expected \"token: host:port\", got \"vm1 h:1\""
 * using `display_name` for the file (a directory's files as
 * "<display_name>/<file>"); all errors are reported. Returns NULL on any
 * error. */
struct target_map *target_map_load(const char *path, const char *display_name,
                                   struct config_errors *errs);

/* The targets for `key`, or NULL (with *n = 0) if the map lacks it. The
 * pointer is valid as long as the snapshot. */
const struct wsg_target *target_map_lookup(const struct target_map *m, const char *key, size_t *n);

size_t target_map_size(const struct target_map *m);

void target_map_free(struct target_map *m);

#endif

/* log.h - one logfmt line per event on stderr: ts=... level=... msg="..." k=v.
 * libwebsockets' own log is routed through here at matching levels. */
#ifndef WSGATE_LOG_H
#define WSGATE_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Parses "error|warn|info|debug"; returns -1 if unknown. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* In a worker process (several share the listeners): every line ends with
 * worker=<index>. -1: a single process, no such field. */
void log_set_worker(int index);

/* Routes lws's log through ours (call before creating the lws context). */
void log_route_lws(void);

/* Logs msg with optional key/value fields: fields are given as alternating
 * key and value strings, terminated by NULL. Values are quoted when needed.
 *   log_kv(LOG_INFO, "listening", "addr", "127.0.0.1:8080", NULL); */
void log_kv(enum log_level level, const char *msg, ...);

#define log_error(...) log_kv(LOG_ERROR, __VA_ARGS__, (const char *)NULL)
#define log_warn(...) log_kv(LOG_WARN, __VA_ARGS__, (const char *)NULL)
#define log_info(...) log_kv(LOG_INFO, __VA_ARGS__, (const char *)NULL)
#define log_debug(...) log_kv(LOG_DEBUG, __VA_ARGS__, (const char *)NULL)

#endif

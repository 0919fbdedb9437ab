/* workers.h - several worker processes sharing the listeners, so a gateway
 * uses more than one core (libwebsockets 4.1.6 runs one service thread per
 * context). The supervisor forks the workers after the config is loaded;
 * each binds the same ports with SO_REUSEPORT and the kernel spreads new
 * connections over them. The supervisor forwards SIGHUP and SIGTERM/SIGINT,
 * restarts a worker that dies, and holds no connection itself. */
#ifndef WSGATE_WORKERS_H
#define WSGATE_WORKERS_H

#include <stddef.h>

struct wsg_config;

/* This process as a worker (struct gateway's `worker`). */
struct workers_state {
    int ready_fd; /* the pipe's write end, from the fork until workers_ready(); else -1 */
};

/* How many workers the config asks for: its "workers", or one per CPU this
 * process may run on for "auto". */
unsigned workers_count(const struct wsg_config *cfg);

/* Checks that no socket is bound to any listener's address yet, so that a
 * second gateway can never silently share a port through SO_REUSEPORT.
 * 0, or -1 with the listener and the reason in err. */
int workers_check_listeners(const struct wsg_config *cfg, char *err, size_t err_len);

/* A worker's body: runs the gateway as worker `number` (1..n) and returns
 * the process's exit status. It calls workers_ready() once it serves. */
typedef int (*worker_main_fn)(unsigned number, void *ctx);

/* Called in the supervisor on SIGHUP before the signal goes on to the
 * workers (main.c reloads the config a restarted worker will start with). */
typedef void (*worker_hangup_fn)(void *ctx);

/* Forks n workers one after the other, each serving before the next starts,
 * and supervises them until SIGTERM or SIGINT has stopped them all. Returns
 * the supervisor's exit status: 0 after a clean stop, 2 when a worker failed
 * to start (the others are then stopped). */
int workers_run(unsigned n, worker_main_fn worker_main, worker_hangup_fn on_hangup, void *ctx);

/* In a worker: tells the supervisor this worker serves. No-op elsewhere. */
void workers_ready(void);

#endif

/* target_pool.h - which backend target a new connection tries first, and
 * which targets are skipped for now: round-robin per route, and a target
 * that refused is marked down and retried after a growing pause (1 s, 2 s,
 * ... 30 s). Shared by all connections; state is keyed by "host:port" so it
 * outlives any one connection or config. Time is passed in: pure logic.
 * The state is a value its owner keeps (struct gateway's `targets`; a unit
 * test its own). */
#ifndef WSGATE_TARGET_POOL_H
#define WSGATE_TARGET_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define TARGET_RETRY_FIRST_MS 1000
#define TARGET_RETRY_MAX_MS 30000

/* Targets' health and each route's round-robin position. Zeroed = empty
 * (nothing is down, every route starts at its first target); owns its
 * entries, freed by target_pool_reset(). Loop-thread only. */
struct target_health {
    struct target_health_entry *healths; /* lists: a gateway has few targets and */
    struct target_rotor *rotors;         /* routes, a map touches one per attempt */
};

/* Orders targets[0..n) for one new connection into order[] (indexes):
 * round-robin start for `route_name`, targets that are down moved after the
 * healthy ones (kept, so that a connection still tries them when every
 * target is down). Returns n. */
size_t target_pool_order(struct target_health *th, const char *route_name,
                         const struct wsg_target *targets, size_t n, uint64_t now_ms,
                         size_t *order);

/* Records the outcome of a connect attempt. */
void target_pool_report(struct target_health *th, const struct wsg_target *t, bool connected,
                        uint64_t now_ms);

/* True while t is marked down (for tests and logs). */
bool target_pool_is_down(const struct target_health *th, const struct wsg_target *t,
                         uint64_t now_ms);

/* Frees all state; `th` is empty again (at exit). */
void target_pool_reset(struct target_health *th);

#endif

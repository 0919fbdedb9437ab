/* map_watch.c - target map snapshots, change polling, reload; see map_watch.h. */
#include "map_watch.h"

#include "log.h"
#include "target_map.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct watched_map {
    const char *path;        /* borrowed from the config */
    struct target_map *snap; /* owned; NULL for routes without a map */
    struct stat seen;        /* the file as last read (good or not) */
};

struct map_watch {
    const struct wsg_config *cfg;
    struct watched_map *maps; /* one per route, in route order */
    size_t n;
};

static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Reads one map; on success swaps it in, else logs every error and keeps
 * the old snapshot. */
static void reload_one(struct map_watch *w, size_t i)
{
    struct watched_map *m = &w->maps[i];
    struct config_errors errs = {0};
    stat(m->path, &m->seen); /* remember even a broken state: report it once */
    struct target_map *fresh = target_map_load(m->path, m->path, &errs);
    if (!fresh) {
        for (size_t e = 0; e < errs.count; e++)
            log_error("target map not reloaded, keeping the last good one", "route",
                      w->cfg->routes[i].name, "error", errs.lines[e]);
        config_errors_free(&errs);
        return;
    }
    char keys[24];
    snprintf(keys, sizeof(keys), "%zu", target_map_size(fresh));
    log_info("target map loaded", "route", w->cfg->routes[i].name, "file", m->path, "keys",
             keys);
    target_map_free(m->snap);
    m->snap = fresh;
    config_errors_free(&errs);
}

struct map_watch *map_watch_create(const struct wsg_config *cfg, struct config_errors *errs)
{
    struct map_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->cfg = cfg;
    w->n = cfg->n_routes;
    w->maps = calloc(w->n ? w->n : 1, sizeof(*w->maps));
    if (!w->maps) {
        free(w);
        return NULL;
    }
    size_t errors_before = errs->count;
    for (size_t i = 0; i < w->n; i++) {
        const char *path = cfg->routes[i].target_map_file;
        if (!path)
            continue;
        w->maps[i].path = path;
        stat(path, &w->maps[i].seen);
        w->maps[i].snap = target_map_load(path, path, errs);
    }
    if (errs->count > errors_before) {
        map_watch_destroy(w);
        return NULL;
    }
    return w;
}

const struct wsg_target *map_watch_lookup(const struct map_watch *w, size_t route_index,
                                          const char *key, size_t *n)
{
    *n = 0;
    if (route_index >= w->n || !w->maps[route_index].snap)
        return NULL;
    return target_map_lookup(w->maps[route_index].snap, key, n);
}

void map_watch_poll(struct map_watch *w)
{
    for (size_t i = 0; i < w->n; i++) {
        struct watched_map *m = &w->maps[i];
        struct stat now;
        if (!m->path || stat(m->path, &now) != 0 || same_file_state(&now, &m->seen))
            continue;
        reload_one(w, i);
    }
}

void map_watch_reload(struct map_watch *w)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->maps[i].path)
            reload_one(w, i);
}

void map_watch_destroy(struct map_watch *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        target_map_free(w->maps[i].snap);
    free(w->maps);
    free(w);
}

/* map_watch.c - target map snapshots, change polling, reload; see map_watch.h. */
#include "map_watch.h"

#include "log.h"
#include "target_map.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct watched_map {
    const char *path;        /* borrowed from the config */
    struct target_map *snap; /* owned; NULL for routes without a map */
    uint64_t seen;           /* state_of() the file or directory as last read (good or not) */
};

struct map_watch {
    const struct wsg_config *cfg;
    struct watched_map *maps; /* one per route, in route order */
    size_t n;
};

/* FNV-1a over what identifies a file's version: inode, size, mtime. */
static uint64_t mix_stat(uint64_t h, const struct stat *st)
{
    const uint64_t parts[] = {(uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size,
                              (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        for (int b = 0; b < 64; b += 8)
            h = (h ^ ((parts[i] >> b) & 0xff)) * 0x100000001b3ULL;
    return h;
}

/* A fingerprint of the map's file, or of a directory of token files: the
 * directory itself (files added, removed, renamed) and every file in it
 * (edited in place, which leaves the directory's mtime alone). 0 if absent. */
static uint64_t state_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    uint64_t h = mix_stat(0xcbf29ce484222325ULL, &st);
    if (!S_ISDIR(st.st_mode))
        return h;
    DIR *d = opendir(path);
    if (!d)
        return h;
    struct dirent *de;
    char full[4096];
    /* readdir's order is stable while the directory is unchanged, and a
     * change to the directory changes its own mtime anyway. */
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(full, sizeof(full), "%s/%s", path, de->d_name);
        if (stat(full, &st) == 0)
            h = mix_stat(h, &st);
    }
    closedir(d);
    return h;
}

/* Reads one map; on success swaps it in, else logs every error and keeps
 * the old snapshot. */
static void reload_one(struct map_watch *w, size_t i)
{
    struct watched_map *m = &w->maps[i];
    struct config_errors errs = {0};
    m->seen = state_of(m->path); /* remember even a broken state: report it once */
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
    log_info("target map loaded", "route", w->cfg->routes[i].name, "file", m->path, "keys", keys);
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
        w->maps[i].seen = state_of(path);
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
        if (!m->path)
            continue;
        uint64_t now = state_of(m->path);
        if (now == 0 || now == m->seen)
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

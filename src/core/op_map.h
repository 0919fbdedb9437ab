/* op_map.h - a map from 64-bit operation ids to the caller's records (pure).
 *
 * The MQTT session hands Paho an id instead of a pointer for every publish
 * and subscribe; Paho's answer names that id, and the loop finds the
 * operation (and through it the client waiting for it) here. An operation
 * dropped meanwhile is simply not found. Open addressing with linear probing
 * and backward-shift deletion: no tombstones, so a map that sees millions of
 * inserts and removes stays as short as what it holds. */
#ifndef WSGATE_OP_MAP_H
#define WSGATE_OP_MAP_H

#include <stddef.h>
#include <stdint.h>

struct op_map_slot {
    uint64_t id; /* 0: empty */
    void *value;
};

/* Zero-initialised is an empty map. */
struct op_map {
    struct op_map_slot *slots; /* owned; cap entries */
    size_t cap;                /* 0 or a power of two */
    size_t count;
};

/* Adds id -> value (id not 0, not in the map yet; value not NULL). 0, or -1
 * out of memory (the map unchanged). */
int op_map_insert(struct op_map *m, uint64_t id, void *value);

/* The value for id, or NULL. */
void *op_map_find(const struct op_map *m, uint64_t id);

/* Removes id; returns its value, or NULL if it was not there. */
void *op_map_remove(struct op_map *m, uint64_t id);

size_t op_map_count(const struct op_map *m);

/* Calls fn for every entry (in no particular order); fn must not change the map. */
void op_map_each(const struct op_map *m, void (*fn)(void *ctx, uint64_t id, void *value),
                 void *ctx);

/* Frees the slots (not the values); the map is empty again. */
void op_map_clear(struct op_map *m);

#endif

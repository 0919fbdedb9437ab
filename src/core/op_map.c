/* op_map.c - operation id -> record; see op_map.h. */
#include "op_map.h"

#include <stdlib.h>

#define FIRST_CAP 64

static size_t home(uint64_t id) { return (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 20); }

static void place(struct op_map_slot *slots, size_t cap, uint64_t id, void *value)
{
    size_t i = home(id) & (cap - 1);
    while (slots[i].id)
        i = (i + 1) & (cap - 1);
    slots[i].id = id;
    slots[i].value = value;
}

int op_map_insert(struct op_map *m, uint64_t id, void *value)
{
    if (!id || !value)
        return -1;
    /* At most half full, so probes stay short. */
    if ((m->count + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : FIRST_CAP;
        struct op_map_slot *slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].id)
                place(slots, cap, m->slots[i].id, m->slots[i].value);
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    place(m->slots, m->cap, id, value);
    m->count++;
    return 0;
}

static size_t index_of(const struct op_map *m, uint64_t id)
{
    if (!m->cap || !id)
        return SIZE_MAX;
    for (size_t i = home(id) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i].id)
            return SIZE_MAX;
        if (m->slots[i].id == id)
            return i;
    }
}

void *op_map_find(const struct op_map *m, uint64_t id)
{
    size_t i = index_of(m, id);
    return i == SIZE_MAX ? NULL : m->slots[i].value;
}

void *op_map_remove(struct op_map *m, uint64_t id)
{
    size_t i = index_of(m, id);
    if (i == SIZE_MAX)
        return NULL;
    void *value = m->slots[i].value;
    size_t mask = m->cap - 1;
    m->slots[i] = (struct op_map_slot){0};
    m->count--;
    /* Backward shift: an entry after the hole moves into it unless its home
     * lies in (hole, entry], so every entry stays reachable from its home. */
    for (size_t j = (i + 1) & mask; m->slots[j].id; j = (j + 1) & mask) {
        size_t h = home(m->slots[j].id) & mask;
        if (((j - h) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            m->slots[j] = (struct op_map_slot){0};
            i = j;
        }
    }
    return value;
}

size_t op_map_count(const struct op_map *m) { return m->count; }

void op_map_each(const struct op_map *m, void (*fn)(void *ctx, uint64_t id, void *value), void *ctx)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].id)
            fn(ctx, m->slots[i].id, m->slots[i].value);
}

void op_map_clear(struct op_map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

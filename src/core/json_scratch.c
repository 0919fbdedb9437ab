/* json_scratch.c - a per-thread bump arena for jansson; see json_scratch.h. */
#include "json_scratch.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf_pool.h"

#define ARENA_BLOCK_BYTES (64 * 1024) /* one buf_pool block of the 64 KiB class */
#define ARENA_ALIGN 16                /* what malloc guarantees on x86-64 */
#define ARENA_MAX_BLOCKS 64           /* a request that needs more falls back */

struct arena {
    unsigned depth; /* open scopes on this thread */
    unsigned n_blocks;
    uint8_t *blocks[ARENA_MAX_BLOCKS]; /* owned: buf_pool blocks, the last one current */
    size_t caps[ARENA_MAX_BLOCKS];
    size_t used;  /* in the current block */
    size_t total; /* handed out in this scope */
};

static _Thread_local struct arena arena;
static json_malloc_t outer_malloc; /* jansson's allocator before install */
static json_free_t outer_free;
static bool installed;

static bool in_arena(const void *p)
{
    for (unsigned i = 0; i < arena.n_blocks; i++)
        if ((const uint8_t *)p >= arena.blocks[i] &&
            (const uint8_t *)p < arena.blocks[i] + arena.caps[i])
            return true;
    return false;
}

static void *arena_take(size_t n)
{
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < n)
        return NULL;
    if (arena.n_blocks == 0 || arena.caps[arena.n_blocks - 1] - arena.used < need) {
        if (arena.n_blocks == ARENA_MAX_BLOCKS)
            return outer_malloc(n); /* freed through scratch_free's fallback */
        size_t cap;
        uint8_t *b = buf_pool_get(need > ARENA_BLOCK_BYTES ? need : ARENA_BLOCK_BYTES, &cap);
        if (!b)
            return NULL;
        arena.blocks[arena.n_blocks] = b;
        arena.caps[arena.n_blocks] = cap;
        arena.n_blocks++;
        arena.used = 0;
    }
    void *p = arena.blocks[arena.n_blocks - 1] + arena.used;
    arena.used += need;
    arena.total += need;
    return p;
}

static void *scratch_malloc(size_t n) { return arena.depth ? arena_take(n) : outer_malloc(n); }

/* Frees of arena memory wait for the scope's end; memory from before the
 * scope (or from outside one) goes back as it came. */
static void scratch_free(void *p)
{
    if (p && !(arena.depth && in_arena(p)))
        outer_free(p);
}

void json_scratch_install(void)
{
    if (installed)
        return;
    json_get_alloc_funcs(&outer_malloc, &outer_free);
    json_set_alloc_funcs(scratch_malloc, scratch_free);
    installed = true;
}

void json_scratch_begin(void)
{
    if (installed)
        arena.depth++;
}

void json_scratch_end(void)
{
    if (!installed || arena.depth == 0 || --arena.depth > 0)
        return;
    for (unsigned i = 0; i < arena.n_blocks; i++)
        buf_pool_put(arena.blocks[i]);
    arena.n_blocks = 0;
    arena.used = 0;
    arena.total = 0;
}

size_t json_scratch_used(void) { return arena.depth ? arena.total : 0; }

/* buf_pool.c - size-class free lists for the relay's buffers; see buf_pool.h. */
#include "buf_pool.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* In ASan builds a block sitting in a free list is poisoned, so a use after
 * buf_pool_put() (or of json_scratch memory after its scope) is reported
 * like a use after free(). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define MIN_SHIFT 8  /* 256 B */
#define MAX_SHIFT 22 /* 4 MiB */
#define N_CLASSES (MAX_SHIFT - MIN_SHIFT + 1)
#define OVERSIZE 0xffu
#define BLOCK_MAGIC 0xb10cb10cu

/* In front of every block; keeps the payload as aligned as malloc's. */
struct block_head {
    alignas(16) struct block_head *next; /* in a free list, while free */
    size_t oversize_cap;                 /* usable bytes of an OVERSIZE block */
    uint32_t cls;                        /* class index, or OVERSIZE */
    uint32_t magic;
};

struct size_class {
    struct block_head *free; /* owned: blocks put back, most recent first */
    size_t n_free;
    size_t low_water; /* fewest free blocks since the last trim */
};

static _Thread_local struct size_class classes[N_CLASSES];
static _Thread_local struct buf_pool_stats stats;

static size_t class_capacity(unsigned cls)
{
    return ((size_t)1 << (cls + MIN_SHIFT)) + BUF_POOL_SLACK;
}

static struct block_head *head_of(const void *block)
{
    return (struct block_head *)((uint8_t *)block - sizeof(struct block_head));
}

static void *payload_of(struct block_head *h) { return (uint8_t *)h + sizeof(*h); }

size_t buf_pool_capacity(const void *block)
{
    const struct block_head *h = head_of(block);
    return h->cls == OVERSIZE ? h->oversize_cap : class_capacity(h->cls);
}

static unsigned class_for(size_t want)
{
    unsigned cls = 0;
    while (cls < N_CLASSES && class_capacity(cls) < want)
        cls++;
    return cls;
}

size_t buf_pool_size_for(size_t want)
{
    unsigned cls = class_for(want);
    return cls == N_CLASSES ? want : class_capacity(cls);
}

void *buf_pool_get(size_t want, size_t *cap)
{
    unsigned cls = class_for(want);
    struct block_head *h;
    size_t usable;
    if (cls == N_CLASSES) {
        if (want > SIZE_MAX - sizeof(*h))
            return NULL;
        if (!(h = malloc(sizeof(*h) + want)))
            return NULL;
        h->cls = OVERSIZE;
        h->oversize_cap = usable = want;
        stats.system_allocs++;
    } else {
        struct size_class *c = &classes[cls];
        usable = class_capacity(cls);
        if (c->free) {
            h = c->free;
            c->free = h->next;
            c->n_free--;
            if (c->n_free < c->low_water)
                c->low_water = c->n_free;
            stats.free_bytes -= usable;
        } else {
            if (!(h = malloc(sizeof(*h) + usable)))
                return NULL;
            h->cls = cls;
            stats.system_allocs++;
        }
    }
    h->magic = BLOCK_MAGIC;
    h->next = NULL;
    stats.gets++;
    stats.used_bytes += usable;
    if (cap)
        *cap = usable;
    UNPOISON(payload_of(h), usable);
    return payload_of(h);
}

void buf_pool_put(void *block)
{
    if (!block)
        return;
    struct block_head *h = head_of(block);
    if (h->magic != BLOCK_MAGIC)
        abort(); /* not a pool block, or put twice: memory is already corrupt */
    h->magic = 0;
    size_t usable = buf_pool_capacity(block);
    stats.used_bytes -= usable;
    if (h->cls == OVERSIZE) {
        free(h);
        stats.system_frees++;
        return;
    }
    struct size_class *c = &classes[h->cls];
    h->next = c->free;
    c->free = h;
    c->n_free++;
    stats.free_bytes += usable;
    POISON(block, usable);
}

void *buf_pool_grow(void *block, size_t used, size_t want, size_t *cap)
{
    if (block && buf_pool_capacity(block) >= want) {
        if (cap)
            *cap = buf_pool_capacity(block);
        return block;
    }
    void *bigger = buf_pool_get(want, cap);
    if (!bigger)
        return NULL;
    if (block) {
        if (used)
            memcpy(bigger, block, used);
        buf_pool_put(block);
    }
    return bigger;
}

/* Frees the last n blocks of a free list: the ones least recently put back
 * (the list is most recent first, so those are the coldest). */
static void release_coldest(struct size_class *c, unsigned cls, size_t n)
{
    if (n > c->n_free)
        n = c->n_free;
    if (n == 0)
        return;
    struct block_head **link = &c->free;
    for (size_t keep = c->n_free - n; keep > 0; keep--)
        link = &(*link)->next;
    struct block_head *h = *link;
    *link = NULL;
    while (h) {
        struct block_head *next = h->next;
        UNPOISON(payload_of(h), class_capacity(cls));
        free(h);
        h = next;
    }
    c->n_free -= n;
    stats.free_bytes -= n * class_capacity(cls);
    stats.system_frees += n;
}

void buf_pool_trim(void)
{
    for (unsigned cls = 0; cls < N_CLASSES; cls++) {
        struct size_class *c = &classes[cls];
        release_coldest(c, cls, c->low_water);
        c->low_water = c->n_free;
    }
}

void buf_pool_release_all(void)
{
    for (unsigned cls = 0; cls < N_CLASSES; cls++) {
        release_coldest(&classes[cls], cls, SIZE_MAX);
        classes[cls].low_water = 0;
    }
}

struct buf_pool_stats buf_pool_stats(void) { return stats; }

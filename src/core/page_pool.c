/* page_pool.c - page-backed buffers of one size; see page_pool.h. */
#include "page_pool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Slots made accessible at a time: few mprotect() calls, little unused. */
#define GROW_SLOTS 64

int page_pool_init(struct page_pool *p, size_t slot_bytes, size_t max_slots)
{
    memset(p, 0, sizeof(*p));
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || slot_bytes == 0 || max_slots == 0 || max_slots > UINT32_MAX)
        return -1;
    slot_bytes = (slot_bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
    if (max_slots > SIZE_MAX / slot_bytes)
        return -1;
    void *base = mmap(NULL, slot_bytes * max_slots, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return -1;
    p->base = base;
    p->slot_bytes = slot_bytes;
    p->max_slots = max_slots;
    return 0;
}

void *page_pool_get(struct page_pool *p)
{
    if (!p->base)
        return NULL;
    if (p->n_free)
        return p->base + (size_t)p->free_slots[--p->n_free] * p->slot_bytes;
    if (p->used == p->max_slots)
        return NULL;
    if (p->used == p->accessible) {
        size_t grow =
            p->max_slots - p->accessible < GROW_SLOTS ? p->max_slots - p->accessible : GROW_SLOTS;
        /* Room to put back every slot handed out, so that put never fails. */
        size_t cap = p->accessible + grow;
        uint32_t *free_idx = realloc(p->free_slots, cap * sizeof(*free_idx));
        if (!free_idx)
            return NULL;
        p->free_slots = free_idx;
        p->free_cap = cap;
        if (mprotect(p->base + p->accessible * p->slot_bytes, grow * p->slot_bytes,
                     PROT_READ | PROT_WRITE) != 0)
            return NULL;
        p->accessible += grow;
    }
    return p->base + p->used++ * p->slot_bytes;
}

bool page_pool_owns(const struct page_pool *p, const void *ptr)
{
    const uint8_t *b = ptr;
    return p->base && b >= p->base && b < p->base + p->used * p->slot_bytes;
}

void page_pool_put(struct page_pool *p, void *ptr)
{
    size_t idx = (size_t)((uint8_t *)ptr - p->base) / p->slot_bytes;
    /* The contents are dead: the kernel may drop the pages (they read back
     * as zeros and cost nothing until written again). */
    madvise(p->base + idx * p->slot_bytes, p->slot_bytes, MADV_DONTNEED);
    p->free_slots[p->n_free++] = (uint32_t)idx;
}

void page_pool_destroy(struct page_pool *p)
{
    if (p->base)
        munmap(p->base, p->slot_bytes * p->max_slots);
    free(p->free_slots);
    memset(p, 0, sizeof(*p));
}

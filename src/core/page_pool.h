/* page_pool.h - fixed-size buffers on whole pages of their own, for memory
 * that is allocated per connection but written only when data flows (lws's
 * WebSocket receive buffer). A buffer's pages cost no resident memory until
 * written, and are given back to the kernel when the buffer is put back; in
 * the malloc heap, the small allocations packed around such a buffer would
 * touch its first and last pages and scatter the heap over idle ones.
 *
 * The slots live in one address range reserved up front (PROT_NONE, so it is
 * not charged to the commit limit) and made accessible as they are first
 * used. Not thread-safe: one pool belongs to the lws loop's thread. */
#ifndef WSGATE_PAGE_POOL_H
#define WSGATE_PAGE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct page_pool {
    uint8_t *base;        /* the reserved range; NULL if the pool could not be set up */
    size_t slot_bytes;    /* a multiple of the page size */
    size_t max_slots;     /* slots the range holds */
    size_t used;          /* slots handed out at least once (the high-water mark) */
    size_t accessible;    /* slots made readable and writable so far */
    uint32_t *free_slots; /* indices of slots put back, most recent last */
    size_t n_free, free_cap;
};

/* Reserves room for max_slots buffers of slot_bytes (rounded up to pages);
 * -1 if the range cannot be reserved (the pool then hands out nothing). */
int page_pool_init(struct page_pool *p, size_t slot_bytes, size_t max_slots);

/* A page-aligned buffer of slot_bytes, or NULL when the pool is full (or
 * memory is out): the caller then allocates elsewhere. */
void *page_pool_get(struct page_pool *p);

/* Whether ptr is a buffer of this pool. */
bool page_pool_owns(const struct page_pool *p, const void *ptr);

/* Puts a buffer of this pool back; its pages leave resident memory. */
void page_pool_put(struct page_pool *p, void *ptr);

/* Unmaps the range; every buffer must have been put back. */
void page_pool_destroy(struct page_pool *p);

#endif

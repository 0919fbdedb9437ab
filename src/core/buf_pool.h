/* buf_pool.h - the relay's data buffers: blocks of a few fixed sizes that go
 * back to a free list of their size when released, so that a busy connection
 * reuses the same memory for every message instead of growing and trimming
 * the heap around each burst (each trimmed page is faulted in and zeroed
 * again on the next one; on a virtual machine that costs microseconds).
 *
 * Sizes are powers of two from 256 B to 4 MiB of payload, each with
 * BUF_POOL_SLACK bytes more, so that a payload of a power-of-two size and a
 * small header in front of it (a queue chunk, lws's LWS_PRE) share one block.
 * Larger requests are allocated and freed directly (rare: messages over
 * 4 MiB). Free blocks are given back to the C allocator only by
 * buf_pool_trim(), and only those that sat unused since the previous trim,
 * so a steady load never returns memory it will need again while a burst
 * that is over does not keep its memory for ever.
 *
 * Not locked: a pool belongs to the thread that uses it (each thread has its
 * own free lists; wsgate uses it on the lws loop's thread only). Pure: no
 * sockets; unit-tested. */
#ifndef WSGATE_BUF_POOL_H
#define WSGATE_BUF_POOL_H

#include <stddef.h>
#include <stdint.h>

/* Extra bytes every block has beyond its power-of-two size, for headers. */
#define BUF_POOL_SLACK 256

/* A block of at least `want` bytes; *cap (if not NULL) receives its usable
 * size. NULL when memory is out. Released with buf_pool_put(). */
void *buf_pool_get(size_t want, size_t *cap);

/* The usable size buf_pool_get(want, ...) would hand out. */
size_t buf_pool_size_for(size_t want);

/* Gives a block back (NULL is ignored). */
void buf_pool_put(void *block);

/* The usable size of a block from buf_pool_get(). */
size_t buf_pool_capacity(const void *block);

/* Replaces `block` (holding `used` bytes) by one of at least `want` bytes
 * with the same first `used` bytes; the old block is released. NULL when
 * memory is out (the old block is then left as it was). */
void *buf_pool_grow(void *block, size_t used, size_t want, size_t *cap);

/* Frees every free block that stayed unused since the previous call. Called
 * on a timer (server.c: every BUF_POOL_TRIM_S seconds). */
void buf_pool_trim(void);
#define BUF_POOL_TRIM_S 10

struct buf_pool_stats {
    uint64_t gets;          /* blocks handed out */
    uint64_t system_allocs; /* of those, taken from the C allocator (a miss) */
    uint64_t system_frees;  /* blocks given back to the C allocator */
    size_t free_bytes;      /* held in the free lists now */
    size_t used_bytes;      /* handed out and not yet put back */
};

/* This thread's figures (for /metrics and the tests). */
struct buf_pool_stats buf_pool_stats(void);

/* Gives every free block back (at exit, so leak checkers see a clean heap). */
void buf_pool_release_all(void);

#endif

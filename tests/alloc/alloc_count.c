/* alloc_count.c - an LD_PRELOAD library that counts every call a process
 * makes to the C allocator, for tests that pin "the relay path allocates
 * nothing per message" (tests/integration/test_alloc_free.py).
 *
 * The counts live in a file the test names in ALLOC_COUNT_FILE (mapped
 * shared, so the test reads them while the process runs); without it they
 * are kept in memory only. Calls go through to glibc's own entry points
 * (__libc_malloc and friends), so no dlsym() is needed before the first
 * allocation. Not for sanitizer builds: ASan replaces the allocator itself.
 *
 * ALLOC_COUNT_SKIP names a library (a substring of its path, e.g.
 * "libpaho-mqtt3as"): calls made from its code (the caller's return address
 * in its segments) are counted apart, in skipped_calls. Paho allocates per
 * message on its own threads, which the gateway cannot change; what the
 * gateway itself allocates is what the counts then show. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

/* Layout of the counts file: what the test reads (8-byte little-endian). */
struct alloc_counts {
    uint64_t malloc_calls, calloc_calls, realloc_calls, free_calls, memalign_calls;
    uint64_t bytes;         /* requested by malloc, calloc, realloc, memalign */
    uint64_t skipped_calls; /* every kind, made from the ALLOC_COUNT_SKIP library */
};

static struct alloc_counts local_counts;
static struct alloc_counts *counts = &local_counts;

/* The skipped library's address range (all its PT_LOAD segments); found
 * once, before main: every library the executable needs is mapped by then. */
static uintptr_t skip_lo, skip_hi;

static int find_skipped(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    const char *want = data;
    if (!info->dlpi_name || !strstr(info->dlpi_name, want))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (!skip_lo || lo < skip_lo)
            skip_lo = lo;
        if (hi > skip_hi)
            skip_hi = hi;
    }
    return 1;
}

static int skipped(const void *caller)
{
    uintptr_t a = (uintptr_t)caller;
    if (a >= skip_lo && a < skip_hi) {
        __atomic_add_fetch(&counts->skipped_calls, 1, __ATOMIC_RELAXED);
        return 1;
    }
    return 0;
}

__attribute__((constructor)) static void map_counts_file(void)
{
    const char *skip = getenv("ALLOC_COUNT_SKIP");
    if (skip && *skip)
        dl_iterate_phdr(find_skipped, (void *)skip);
    const char *path = getenv("ALLOC_COUNT_FILE");
    if (!path || !*path)
        return;
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0)
        return;
    if (ftruncate(fd, sizeof(struct alloc_counts)) == 0) {
        void *p =
            mmap(NULL, sizeof(struct alloc_counts), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            struct alloc_counts *shared = p;
            *shared = local_counts; /* what the loader's own calls counted so far */
            counts = shared;
        }
    }
    close(fd);
}

#define COUNT(field, n)                                                                            \
    do {                                                                                           \
        __atomic_add_fetch(&counts->field, 1, __ATOMIC_RELAXED);                                   \
        __atomic_add_fetch(&counts->bytes, (n), __ATOMIC_RELAXED);                                 \
    } while (0)

void *malloc(size_t n)
{
    if (skipped(__builtin_return_address(0)))
        return __libc_malloc(n);
    COUNT(malloc_calls, n);
    return __libc_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    if (skipped(__builtin_return_address(0)))
        return __libc_calloc(k, n);
    COUNT(calloc_calls, k * n);
    return __libc_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    if (skipped(__builtin_return_address(0)))
        return __libc_realloc(p, n);
    COUNT(realloc_calls, n);
    return __libc_realloc(p, n);
}

void free(void *p)
{
    if (!p)
        return; /* free(NULL) is not an allocator call worth counting */
    if (!skipped(__builtin_return_address(0)))
        __atomic_add_fetch(&counts->free_calls, 1, __ATOMIC_RELAXED);
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    COUNT(memalign_calls, n);
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = memalign(align, n);
    if (!p)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}

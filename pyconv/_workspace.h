/* pyconv workspace blocks: aligned malloc/free with a small cache of freed blocks.
 *
 * Every kernel call takes per-thread buffers (packed B, Winograd V and M, staging
 * rows) of 0.1 - 4 MiB and frees them at the end. glibc serves blocks that size with
 * mmap -- or trims them off the heap when freed -- so the next call touches fresh
 * pages again: the kernel zeroes each 4 KiB page on first touch (clear_page), which
 * took 6 % of a ResNet-50 forward pass here, and a 2-thread Winograd layer ran 3x
 * slower when its buffers crossed glibc's moving mmap threshold.
 *
 * Freed blocks are kept in PYCONV_WS_SLOTS slots, at most PYCONV_WS_BYTES in all
 * (blocks beyond that go back to malloc's free); a request takes the smallest cached
 * block that holds it and is at most 4 times its size, else mallocs. One spin lock
 * guards the slots: it is taken twice per buffer, never inside a loop. Each kernel
 * set module has its own cache (this header is compiled into each), and so does
 * _conv, for the output arrays of pyconv.functional (_conv.empty).
 */
#ifndef PYCONV_WORKSPACE_H
#define PYCONV_WORKSPACE_H

#include <stdint.h>
#include <stdlib.h>

#define PYCONV_WS_ALIGN 64
#ifndef PYCONV_WS_SLOTS   /* an including module may set its own bounds */
#define PYCONV_WS_SLOTS 32
#endif
#ifndef PYCONV_WS_BYTES
#define PYCONV_WS_BYTES ((size_t)64 << 20)
#endif

typedef struct { void *raw; size_t size; } pyconv_ws_block;

static pyconv_ws_block pyconv_ws_cache[PYCONV_WS_SLOTS];
static size_t pyconv_ws_cached;   /* bytes held by the cache */
static char pyconv_ws_busy;       /* the lock */

static inline void pyconv_ws_lock(void)
{
    while (__atomic_test_and_set(&pyconv_ws_busy, __ATOMIC_ACQUIRE))
        ;
}

static inline void pyconv_ws_unlock(void)
{
    __atomic_clear(&pyconv_ws_busy, __ATOMIC_RELEASE);
}

/* The header below each block: the raw pointer and the usable size. */
typedef struct { void *raw; size_t size; } pyconv_ws_header;

static inline void *pyconv_ws_align(void *raw, size_t size)
{
    uintptr_t p = ((uintptr_t)raw + sizeof(pyconv_ws_header) + PYCONV_WS_ALIGN - 1)
                  & ~(uintptr_t)(PYCONV_WS_ALIGN - 1);
    pyconv_ws_header *h = (pyconv_ws_header *)p - 1;
    h->raw = raw;
    h->size = size;
    return (void *)p;
}

/* A block of at least `size` bytes aligned to 64, or NULL. */
static void *pyconv_ws_malloc(size_t size)
{
    int best = -1;
    pyconv_ws_lock();
    for (int i = 0; i < PYCONV_WS_SLOTS; i++) {
        size_t s = pyconv_ws_cache[i].size;
        if (pyconv_ws_cache[i].raw && s >= size && s / 4 <= size
                && (best < 0 || s < pyconv_ws_cache[best].size))
            best = i;
    }
    if (best >= 0) {
        pyconv_ws_block b = pyconv_ws_cache[best];
        pyconv_ws_cache[best].raw = NULL;
        pyconv_ws_cached -= b.size;
        pyconv_ws_unlock();
        return pyconv_ws_align(b.raw, b.size);
    }
    pyconv_ws_unlock();
    void *raw = malloc(size + PYCONV_WS_ALIGN + sizeof(pyconv_ws_header));
    return raw ? pyconv_ws_align(raw, size) : NULL;
}

/* Return a block of pyconv_ws_malloc (NULL: nothing) -- to the cache if it fits. */
static void pyconv_ws_free(void *p)
{
    if (p == NULL)
        return;
    pyconv_ws_header h = ((pyconv_ws_header *)p)[-1];
    pyconv_ws_lock();
    if (pyconv_ws_cached + h.size <= PYCONV_WS_BYTES) {
        for (int i = 0; i < PYCONV_WS_SLOTS; i++) {
            if (pyconv_ws_cache[i].raw == NULL) {
                pyconv_ws_cache[i].raw = h.raw;
                pyconv_ws_cache[i].size = h.size;
                pyconv_ws_cached += h.size;
                pyconv_ws_unlock();
                return;
            }
        }
    }
    pyconv_ws_unlock();
    free(h.raw);
}

#endif

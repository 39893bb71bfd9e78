// Counts heap allocations by defining the allocator entry points in the test executable, which the dynamic linker
// prefers over libc's; each forwards to glibc's own __libc_* implementation. Counting is per thread and off unless
// a test turns it on, so the rest of the process is unaffected.
#include "AllocationCounter.h"
#include <errno.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHARDTRAIN_UNDER_ASAN 1
#endif
#endif

static __thread int counting;
static __thread size_t count, bytes;

size_t allocation_count(void) { return count; }
size_t allocation_bytes(void) { return bytes; }
void allocation_counting(int on) { counting = on; }

// Under AddressSanitizer the sanitizer owns the allocator, so nothing is interposed (and nothing counted).
#ifndef SHARDTRAIN_UNDER_ASAN
void *malloc(size_t size) { if (counting) count++, bytes += size; return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { if (counting) count++, bytes += n * size; return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { if (counting) count++, bytes += size; return __libc_realloc(p, size); }
void *aligned_alloc(size_t alignment, size_t size) { if (counting) count++, bytes += size; return __libc_memalign(alignment, size); }
void *memalign(size_t alignment, size_t size) { if (counting) count++, bytes += size; return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    if (counting) count++, bytes += size;
    void *p = __libc_memalign(alignment, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
#endif

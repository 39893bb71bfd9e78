#include <stddef.h>

/// Number of heap allocations (malloc, calloc, realloc, aligned allocations) made by the calling thread while
/// counting was on.
size_t allocation_count(void);
/// Starts (1) or stops (0) counting on the calling thread.
void allocation_counting(int on);
/// Bytes requested by those allocations.
size_t allocation_bytes(void);

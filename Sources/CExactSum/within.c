#include "cexactsum.h"
#include <string.h>

/* Whether parameters `first` to `end` of a sum can be a real one: a bound on each limb and a range of windows.
 * Adds, compares and ORs over 8-byte loads (memcpy: any alignment), with no branch in the loop, so each build below
 * runs it in vector registers at about a read of the limbs. It decides what ResultCheck says of a worker's sum on
 * every contribution an owner adds, where a scalar loop cost as much as unpacking. */

#define INLINE static inline __attribute__((always_inline))

INLINE int within_body(const unsigned char *sum, size_t count, size_t first, size_t end, uint64_t limit,
                       int lowest_window, int highest_window) {
    /* v in [-limit, limit] exactly when v + limit, as unsigned, is at most 2 * limit (limit below 2^63). */
    uint64_t offset = limit, span = 2 * limit, outside = 0;
    const unsigned char *high = sum, *low = sum + cexact_low_limbs_offset(count);
    for (size_t i = first; i < end; i++) {
        uint64_t h, l;
        memcpy(&h, high + 8 * i, 8);
        memcpy(&l, low + 8 * i, 8);
        outside |= (uint64_t)(h + offset > span) | (uint64_t)(l + offset > span);
    }
    const int8_t *windows = (const int8_t *)(sum + cexact_windows_offset(count));
    uint8_t window_span = (uint8_t)(highest_window - lowest_window), window_outside = 0;
    for (size_t i = first; i < end; i++) window_outside |= (uint8_t)((uint8_t)(windows[i] - lowest_window) > window_span);
    return (outside ? 0 : 1) | (window_outside ? 0 : 2);
}

static int within_base(const unsigned char *sum, size_t count, size_t first, size_t end, uint64_t limit, int lowest,
                       int highest) {
    return within_body(sum, count, first, end, limit, lowest, highest);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static int within_avx2(const unsigned char *sum, size_t count, size_t first,
                                                       size_t end, uint64_t limit, int lowest, int highest) {
    return within_body(sum, count, first, end, limit, lowest, highest);
}

__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) static int
within_avx512(const unsigned char *sum, size_t count, size_t first, size_t end, uint64_t limit, int lowest,
              int highest) {
    return within_body(sum, count, first, end, limit, lowest, highest);
}
#endif

int cexact_within(const void *sum, size_t count, size_t first, size_t end, uint64_t limit, int lowest_window,
                  int highest_window) {
    const unsigned char *bytes = (const unsigned char *)sum;
    switch (cexact_level()) {
#if defined(__x86_64__)
    case 2: return within_avx512(bytes, count, first, end, limit, lowest_window, highest_window);
    case 1: return within_avx2(bytes, count, first, end, limit, lowest_window, highest_window);
#endif
    default: return within_base(bytes, count, first, end, limit, lowest_window, highest_window);
    }
}

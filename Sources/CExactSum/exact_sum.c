#include "cexactsum.h"
#include <string.h>

#if defined(__x86_64__)
#include "cplatform.h"
#endif

/* Every product here is by a power of two and exact; a fused multiply-add would still change nothing, but the bits
 * must not depend on what the compiler may fuse. */
#pragma clang fp contract(off)

#define INLINE static inline __attribute__((always_inline))

static const double HIGH_MAGIC = 0x1.8p32; /* x + 1.5*2^(52+k) rounds x to a multiple of 2^k */
static const double LOW_MAGIC = 0x1.8p-19;

INLINE uint64_t bits64(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
INLINE double double_of(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }
INLINE uint32_t bits32(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
INLINE int32_t max32(int32_t a, int32_t b) { return a > b ? a : b; }
INLINE uint32_t maxu32(uint32_t a, uint32_t b) { return a > b ? a : b; }

/* The window a float32 of magnitude bits m needs: the smallest k with |x| < 2^(51k + 30). A normal float with
 * biased exponent b has |x| < 2^(b - 126), so k = ceil((b - 156) / 51), which steps up at b = 4, 55, 106, 157, 208.
 * Compares, not a division, so the loops vectorise on plain SSE2. */
INLINE int32_t window_of_float(uint32_t m) {
    int32_t b = (int32_t)m;
    return -3 + (b >= (4 << 23)) + (b >= (55 << 23)) + (b >= (106 << 23)) + (b >= (157 << 23)) + (b >= (208 << 23));
}

/* The window a Double needs, at least the lowest (Doubles below 2^-123 round in window -3). */
INLINE int32_t window_of_double(double x) {
    int32_t e = (int32_t)((bits64(x) >> 52) & 0x7FF); /* |x| < 2^(e - 1022): k = ceil((e - 1052) / 51) */
    return max32(CEXACT_LOWEST_WINDOW, (e + 18) / 51 - 20);
}

/* 2^(-51k) and 2^(51k): powers of two, normal Doubles for every window. */
INLINE double down(int32_t window) { return double_of((uint64_t)(int64_t)(1023 - 51 * window) << 52); }
INLINE double up(int32_t window) { return double_of((uint64_t)(int64_t)(1023 + 51 * window) << 52); }

/* Adds the deposits of `scaled` (a value times its window's `down`, so below 2^30 in magnitude). */
INLINE void deposit(double scaled, uint64_t *high, uint64_t *low) {
    double shifted = scaled + HIGH_MAGIC;
    double rest = scaled - (shifted - HIGH_MAGIC); /* exact: |rest| <= 2^-21 */
    *high += bits64(shifted) - bits64(HIGH_MAGIC);
    *low += bits64(rest + LOW_MAGIC) - bits64(LOW_MAGIC);
}

/* Limbs moved `steps` (>= 0) windows up: the high limb becomes the low one at one step; nothing is left at two. */
INLINE void raise(uint64_t *high, uint64_t *low, int32_t steps) {
    uint64_t h = *high, l = *low;
    *high = steps == 0 ? h : 0;
    *low = steps == 0 ? l : (steps == 1 ? h : 0);
}

/* A pair's value as a Double: canonical limbs first (low in [0, 2^51)), so equal sums give equal bits. A high limb
 * beyond 2^53 rounds when converted and the sum rounds again: within 2^-52 of the value, the same everywhere. */
INLINE double value_of(uint64_t high, uint64_t low, int32_t window) {
    uint64_t carry = (uint64_t)((int64_t)low >> 51);
    int64_t h = (int64_t)(high + carry), l = (int64_t)(low - (carry << 51));
    return ((double)h * 0x1p-20 + (double)l * 0x1p-71) * up(window);
}

/* ---- Loops, one body each, compiled per instruction set below. ---- */

INLINE uint32_t add_body(uint64_t *restrict high, uint64_t *restrict low, int8_t *restrict windows,
                         const float *g0, const float *g1, const float *g2, const float *g3, const int shards,
                         const int empty, size_t count) {
    uint32_t largest = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t m = bits32(g0[i]) & 0x7FFFFFFFu;
        if (shards > 1) m = maxu32(m, bits32(g1[i]) & 0x7FFFFFFFu);
        if (shards > 2) m = maxu32(m, bits32(g2[i]) & 0x7FFFFFFFu);
        if (shards > 3) m = maxu32(m, bits32(g3[i]) & 0x7FFFFFFFu);
        largest = maxu32(largest, m);
        int32_t old = empty ? CEXACT_LOWEST_WINDOW : windows[i];
        int32_t window = max32(old, window_of_float(m));
        uint64_t h = 0, l = 0;
        if (!empty) {
            h = high[i];
            l = low[i];
            raise(&h, &l, window - old);
        }
        double scale = down(window);
        deposit((double)g0[i] * scale, &h, &l);
        if (shards > 1) deposit((double)g1[i] * scale, &h, &l);
        if (shards > 2) deposit((double)g2[i] * scale, &h, &l);
        if (shards > 3) deposit((double)g3[i] * scale, &h, &l);
        high[i] = h;
        low[i] = l;
        windows[i] = (int8_t)window;
    }
    return largest;
}

INLINE uint32_t add_dispatch(uint64_t *high, uint64_t *low, int8_t *windows, const float *const *g, int shards,
                             int empty, size_t count) {
    const float *g0 = g[0], *g1 = shards > 1 ? g[1] : g0, *g2 = shards > 2 ? g[2] : g0, *g3 = shards > 3 ? g[3] : g0;
    switch (shards * 2 + (empty ? 1 : 0)) {
    case 2: return add_body(high, low, windows, g0, g1, g2, g3, 1, 0, count);
    case 3: return add_body(high, low, windows, g0, g1, g2, g3, 1, 1, count);
    case 4: return add_body(high, low, windows, g0, g1, g2, g3, 2, 0, count);
    case 5: return add_body(high, low, windows, g0, g1, g2, g3, 2, 1, count);
    case 6: return add_body(high, low, windows, g0, g1, g2, g3, 3, 0, count);
    case 7: return add_body(high, low, windows, g0, g1, g2, g3, 3, 1, count);
    case 8: return add_body(high, low, windows, g0, g1, g2, g3, 4, 0, count);
    default: return add_body(high, low, windows, g0, g1, g2, g3, 4, 1, count);
    }
}

/* Adds a wire sum given as its three arrays (high limbs, low limbs, windows; any alignment). */
INLINE void merge_body(uint64_t *restrict high, uint64_t *restrict low, int8_t *restrict windows,
                       const unsigned char *restrict their_high, const unsigned char *restrict their_low,
                       const int8_t *restrict their_windows, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint64_t h2, l2;
        memcpy(&h2, their_high + 8 * i, 8);
        memcpy(&l2, their_low + 8 * i, 8);
        int32_t w1 = windows[i], w2 = their_windows[i], window = max32(w1, w2);
        uint64_t h1 = high[i], l1 = low[i];
        raise(&h1, &l1, window - w1);
        raise(&h2, &l2, window - w2);
        high[i] = h1 + h2;
        low[i] = l1 + l2;
        windows[i] = (int8_t)window;
    }
}

INLINE int mean_body(const uint64_t *restrict high, const uint64_t *restrict low, const int8_t *restrict windows,
                     float *restrict mean, size_t count, double divisor) {
    uint32_t special = 0;
    /* One division, then a multiplication per value (the in-process shortcut for a lone micro-shard does the same). */
    const double reciprocal = 1.0 / divisor;
    for (size_t i = 0; i < count; i++) {
        float value = (float)(value_of(high[i], low[i], windows[i]) * reciprocal);
        mean[i] = value;
        /* An all-ones exponent plus one carries into bit 31; any other exponent does not. */
        special |= (bits32(value) & 0x7F800000u) + 0x00800000u;
    }
    return (special & 0x80000000u) == 0;
}

/* The mean of up to eight Float arrays and nothing else, where Doubles are exact. If a parameter's nonzero values
 * lie within 2^26 of each other (exponents, subnormals counted as exponent 1), each is a multiple of the smallest
 * one's unit and their sum needs at most 24 + 26 + 3 bits: the Double adds are exact in any order. The limbs hold
 * those values exactly too (the window is the largest value's, whose low unit is below the smallest value's unit),
 * so the limbs' value is that same exact sum and the mean's bits are (float)(sum * reciprocal), with a zero sum's -0
 * made +0 as the limbs make it. Returns 0 if some parameter of the block is outside that case (or not finite): the
 * caller then takes the block through the limbs. */
INLINE uint32_t spread_of(uint32_t bits, uint32_t *high_e, uint32_t *low_e) {
    uint32_t e = bits >> 23;
    e = e == 0 ? 1 : e;
    *high_e = bits ? maxu32(*high_e, e) : *high_e;
    *low_e = bits ? (e < *low_e ? e : *low_e) : *low_e;
    return bits;
}

INLINE int float_mean_body(const float *const *g, const int shards, size_t n, float *restrict mean,
                           double reciprocal, uint32_t *largest) {
    const float *g0 = g[0], *g1 = g[shards > 1], *g2 = g[2 * (shards > 2)], *g3 = g[3 * (shards > 3)];
    const float *g4 = g[4 * (shards > 4)], *g5 = g[5 * (shards > 5)], *g6 = g[6 * (shards > 6)];
    const float *g7 = g[7 * (shards > 7)];
    uint32_t bad = 0, top = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t high_e = 0, low_e = 255, m;
        m = spread_of(bits32(g0[i]) & 0x7FFFFFFFu, &high_e, &low_e);
        double sum = (double)g0[i];
#define TAKE(k, gk)                                                                                                \
        if (shards > k) { m = maxu32(m, spread_of(bits32(gk[i]) & 0x7FFFFFFFu, &high_e, &low_e)); sum += (double)gk[i]; }
        TAKE(1, g1) TAKE(2, g2) TAKE(3, g3) TAKE(4, g4) TAKE(5, g5) TAKE(6, g6) TAKE(7, g7)
#undef TAKE
        top = maxu32(top, m);
        /* Bad when the spread exceeds 26 (all zeros leave high_e 0: never bad) or a value is not finite. */
        bad |= (uint32_t)(high_e > low_e + 26) | (uint32_t)(high_e >= 255);
        /* + 0.0 turns an exactly zero sum's −0 into +0, as the limbs hold it (no sign for zero); a nonzero sum
         * keeps its sign even where the mean underflows to −0, as it does from the limbs. */
        mean[i] = (float)((sum + 0.0) * reciprocal);
    }
    *largest = maxu32(*largest, top);
    return bad == 0;
}

INLINE int float_mean_block(const float *const *g, int shards, size_t n, float *mean, double reciprocal,
                            uint32_t *largest) {
    switch (shards) {
    case 1: return float_mean_body(g, 1, n, mean, reciprocal, largest);
    case 2: return float_mean_body(g, 2, n, mean, reciprocal, largest);
    case 3: return float_mean_body(g, 3, n, mean, reciprocal, largest);
    case 4: return float_mean_body(g, 4, n, mean, reciprocal, largest);
    case 5: return float_mean_body(g, 5, n, mean, reciprocal, largest);
    case 6: return float_mean_body(g, 6, n, mean, reciprocal, largest);
    case 7: return float_mean_body(g, 7, n, mean, reciprocal, largest);
    default: return float_mean_body(g, 8, n, mean, reciprocal, largest);
    }
}

/* The mean of up to four wire sums and nothing else, in one pass with no block copies: per parameter each sum's
 * limbs are raised to the highest window and added in registers (the bits of merging them in turn). */
INLINE int wire_mean_body(const unsigned char *restrict t0, const unsigned char *restrict t1,
                          const unsigned char *restrict t2, const unsigned char *restrict t3, const int sums,
                          float *restrict mean, double reciprocal, size_t count, size_t first, size_t end) {
    uint32_t special = 0;
    const unsigned char *t[4] = {t0, t1, t2, t3};
    for (size_t i = first; i < end; i++) {
        uint64_t h[4], l[4];
        int32_t w[4], window = CEXACT_LOWEST_WINDOW;
        for (int k = 0; k < sums; k++) {
            memcpy(&h[k], t[k] + 8 * i, 8);
            memcpy(&l[k], t[k] + 8 * (count + i), 8);
            w[k] = ((const int8_t *)(t[k] + cexact_windows_offset(count)))[i];
            window = max32(window, w[k]);
        }
        uint64_t high = 0, low = 0;
        for (int k = 0; k < sums; k++) {
            raise(&h[k], &l[k], window - w[k]);
            high += h[k];
            low += l[k];
        }
        float value = (float)(value_of(high, low, window) * reciprocal);
        mean[i] = value;
        special |= (bits32(value) & 0x7F800000u) + 0x00800000u;
    }
    return (special & 0x80000000u) == 0;
}

INLINE int wire_mean(const void *const *sums, int sum_count, float *mean, double reciprocal, size_t count,
                     size_t first, size_t end) {
    const unsigned char *t0 = sums[0], *t1 = sum_count > 1 ? sums[1] : t0, *t2 = sum_count > 2 ? sums[2] : t0,
                        *t3 = sum_count > 3 ? sums[3] : t0;
    switch (sum_count) {
    case 1: return wire_mean_body(t0, t0, t0, t0, 1, mean, reciprocal, count, first, end);
    case 2: return wire_mean_body(t0, t1, t0, t0, 2, mean, reciprocal, count, first, end);
    case 3: return wire_mean_body(t0, t1, t2, t0, 3, mean, reciprocal, count, first, end);
    default: return wire_mean_body(t0, t1, t2, t3, 4, mean, reciprocal, count, first, end);
    }
}

/* Parameters per block of a combine: its limbs (17 bytes each) stay in the L1 cache. */
enum { BLOCK = 512 };

/* The loops above, one block at a time: the held sum (unless `empty`), then each wire sum, then the Floats, then
 * either the mean (the held limbs untouched) or the limbs written back. Each parameter sees the same operations in
 * the same order as the separate passes, so the bits are theirs; only the memory traffic differs. */
INLINE uint32_t combine_body(uint64_t *high, uint64_t *low, int8_t *windows, int empty, const void *const *sums,
                             int sum_count, const float *const *gradients, int shards, float *mean, double divisor,
                             int *finite, size_t count, size_t first, size_t end) {
    uint64_t block_high[BLOCK], block_low[BLOCK];
    int8_t block_windows[BLOCK];
    uint32_t largest = 0;
    int all_finite = 1;
    if (mean && empty && shards == 0 && sum_count >= 1 && sum_count <= 4) {
        if (finite) *finite = wire_mean(sums, sum_count, mean, 1.0 / divisor, count, first, end);
        return 0;
    }
    for (size_t start = first; start < end; start += BLOCK) {
        size_t n = end - start < BLOCK ? end - start : BLOCK;
        /* Writing the mean: work on a copy. Accumulating: work on the held limbs themselves. */
        uint64_t *h = mean ? block_high : high + start, *l = mean ? block_low : low + start;
        int8_t *w = mean ? block_windows : windows + start;
        if (mean && empty && sum_count == 0 && shards >= 1 && shards <= 8) {
            const float *block[8];
            for (int g = 0; g < shards; g++) block[g] = gradients[g] + start;
            uint32_t seen = 0;
            if (float_mean_block(block, shards, n, mean + start, 1.0 / divisor, &seen)) {
                largest = maxu32(largest, seen);
                continue;
            }
        }
        int holds_nothing = empty;
        if (mean && !empty) {
            memcpy(h, high + start, 8 * n);
            memcpy(l, low + start, 8 * n);
            memcpy(w, windows + start, n);
        }
        for (int s = 0; s < sum_count; s++) {
            const unsigned char *theirs = (const unsigned char *)sums[s];
            const unsigned char *their_high = theirs + 8 * start, *their_low = theirs + 8 * (count + start);
            const int8_t *their_windows = (const int8_t *)(theirs + cexact_windows_offset(count) + start);
            if (holds_nothing) {
                memcpy(h, their_high, 8 * n);
                memcpy(l, their_low, 8 * n);
                memcpy(w, their_windows, n);
                holds_nothing = 0;
            } else {
                merge_body(h, l, w, their_high, their_low, their_windows, n);
            }
        }
        for (int first = 0; first < shards; first += 4) {
            const float *block[4];
            int group = shards - first < 4 ? shards - first : 4;
            for (int g = 0; g < group; g++) block[g] = gradients[first + g] + start;
            largest = maxu32(largest, add_dispatch(h, l, w, block, group, holds_nothing, n));
            holds_nothing = 0;
        }
        if (mean) all_finite &= mean_body(h, l, w, mean + start, n, divisor);
    }
    if (finite) *finite = all_finite;
    return largest;
}

/* ---- The same loops for SSE2 (any x86-64), AVX2 and AVX-512, chosen once by what the CPU and OS support. ---- */

#define KERNELS(suffix, attributes)                                                                                \
    attributes static uint32_t add_##suffix(uint64_t *high, uint64_t *low, int8_t *windows, const float *const *g,   \
                                            int shards, int empty, size_t count) {                                   \
        return add_dispatch(high, low, windows, g, shards, empty, count);                                            \
    }                                                                                                                \
    attributes static void merge_##suffix(uint64_t *high, uint64_t *low, int8_t *windows, const void *theirs,       \
                                          size_t count) {                                                            \
        const unsigned char *bytes = (const unsigned char *)theirs;                                                  \
        merge_body(high, low, windows, bytes, bytes + cexact_low_limbs_offset(count), (const int8_t *)(bytes + cexact_windows_offset(count)), count);       \
    }                                                                                                                \
    attributes static int mean_##suffix(const uint64_t *high, const uint64_t *low, const int8_t *windows,           \
                                        float *mean, size_t count, double divisor) {                                 \
        return mean_body(high, low, windows, mean, count, divisor);                                                  \
    }                                                                                                                \
    attributes static uint32_t combine_##suffix(uint64_t *high, uint64_t *low, int8_t *windows, int empty,          \
                                                const void *const *sums, int sum_count, const float *const *g,       \
                                                int shards, float *mean, double divisor, int *finite, size_t count,  \
                                                size_t first, size_t end) {                                          \
        return combine_body(high, low, windows, empty, sums, sum_count, g, shards, mean, divisor, finite, count,     \
                            first, end);                                                                             \
    }

KERNELS(base, )
#if defined(__x86_64__)
KERNELS(avx2, __attribute__((target("avx2"))))
KERNELS(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))))
#endif

/* 0 base, 1 AVX2, 2 AVX-512; -1 not yet read. Every thread computes the same value, so a race is harmless. */
static int level = -1;

static int instruction_level(void) { return ccpu_level_get(&level); }

int cexact_level(void) { return instruction_level(); }

int cexact_use_level(int wanted) { return ccpu_level_use(&level, wanted); }

uint32_t cexact_add(uint64_t *high, uint64_t *low, int8_t *windows, const float *const *gradients, int shards,
                    int empty, size_t count) {
    switch (instruction_level()) {
#if defined(__x86_64__)
    case 2: return add_avx512(high, low, windows, gradients, shards, empty, count);
    case 1: return add_avx2(high, low, windows, gradients, shards, empty, count);
#endif
    default: return add_base(high, low, windows, gradients, shards, empty, count);
    }
}

void cexact_merge(uint64_t *high, uint64_t *low, int8_t *windows, const void *theirs, size_t count) {
    switch (instruction_level()) {
#if defined(__x86_64__)
    case 2: merge_avx512(high, low, windows, theirs, count); return;
    case 1: merge_avx2(high, low, windows, theirs, count); return;
#endif
    default: merge_base(high, low, windows, theirs, count);
    }
}

int cexact_mean(const uint64_t *high, const uint64_t *low, const int8_t *windows, float *mean, size_t count,
                double divisor) {
    switch (instruction_level()) {
#if defined(__x86_64__)
    case 2: return mean_avx512(high, low, windows, mean, count, divisor);
    case 1: return mean_avx2(high, low, windows, mean, count, divisor);
#endif
    default: return mean_base(high, low, windows, mean, count, divisor);
    }
}

uint32_t cexact_combine(uint64_t *high, uint64_t *low, int8_t *windows, int empty, const void *const *sums,
                        int sum_count, const float *const *gradients, int shards, float *mean, double divisor,
                        int *finite, size_t count, size_t first, size_t end) {
    switch (instruction_level()) {
#if defined(__x86_64__)
    case 2: return combine_avx512(high, low, windows, empty, sums, sum_count, gradients, shards, mean, divisor, finite,
                                  count, first, end);
    case 1: return combine_avx2(high, low, windows, empty, sums, sum_count, gradients, shards, mean, divisor, finite,
                                count, first, end);
#endif
    default: return combine_base(high, low, windows, empty, sums, sum_count, gradients, shards, mean, divisor, finite,
                                 count, first, end);
    }
}

/* ---- One Double sum (the loss), by the same rules. ---- */

cexact_scalar cexact_scalar_empty(void) {
    cexact_scalar sum = {0, 0, CEXACT_LOWEST_WINDOW};
    return sum;
}

cexact_scalar cexact_scalar_add(cexact_scalar sum, double value) {
    int32_t window = max32(sum.window, window_of_double(value));
    raise(&sum.high, &sum.low, window - sum.window);
    deposit(value * down(window), &sum.high, &sum.low);
    sum.window = window;
    return sum;
}

cexact_scalar cexact_scalar_merge(cexact_scalar a, cexact_scalar b) {
    int32_t window = max32(a.window, b.window);
    raise(&a.high, &a.low, window - a.window);
    raise(&b.high, &b.low, window - b.window);
    cexact_scalar sum = {a.high + b.high, a.low + b.low, window};
    return sum;
}

double cexact_scalar_value(cexact_scalar sum) { return value_of(sum.high, sum.low, sum.window); }

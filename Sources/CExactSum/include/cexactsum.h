#ifndef CEXACTSUM_H
#define CEXACTSUM_H

#include <stddef.h>
#include <stdint.h>

/* The fixed-point arithmetic of exact sums, for whole parameter arrays and for one Double (the loss sum).
 *
 * Bins lie on one grid: bin j counts units of 2^(51j - 20). A sum holds two adjacent bins, its *window* k: a high
 * limb in units of 2^(51k - 20) and a low limb in units of 2^(51k - 71). A value x with |x| < 2^(51k + 30) enters
 * window k as its deposits high = round(x / 2^(51k-20)) and low = round((x - high * 2^(51k-20)) / 2^(51k-71)), each
 * below 2^50 in magnitude. A sum's window is the highest any of its values needs, and a value's deposit in a bin
 * depends only on the value and the bin (a value that needs a lower window deposits nothing in the bin above it). So
 * when a sum moves up one window its high limb becomes its low limb, exactly, and its old low limb (the bin now below
 * the window) is dropped: the result is the sum of each value's deposits in the final window's two bins, whatever
 * the order or grouping. This is the binned summation of reproducible-summation work such as ReproBLAS, with two
 * 51-bit bins and integer limbs (wrapping adds, so associative).
 *
 * Window -3 (|x| < 2^-123) holds every float32 subnormal exactly; window 2 holds every finite float32; a Double loss
 * needs up to window 20. A value 2^50 or more times smaller than the largest in its sum rounds to the low bin's unit
 * (a Double, with 53 bits, may round a little sooner).
 *
 * Every operation is an exactly rounded IEEE operation or integer arithmetic, so the SSE2, AVX2 and AVX-512 builds
 * of each loop (chosen at run time) give the same bits. */

enum { CEXACT_LOWEST_WINDOW = -3, CEXACT_HIGHEST_FLOAT_WINDOW = 2, CEXACT_HIGHEST_WINDOW = 20 };

/* The one layout of a sum of `count` parameters, wherever it lies — a sum's memory, a worker's result region, a
 * result message — and so the only place it is defined: `count` high limbs (int64, little-endian), then `count` low
 * limbs, then `count` windows (int8); CEXACT_BYTES_PER_PARAMETER bytes a parameter. Engine's GradientSum, Wire's
 * result frames and the packed form (pack.c) all read and write it through these. */
enum { CEXACT_BYTES_PER_PARAMETER = 17 };
static inline size_t cexact_low_limbs_offset(size_t count) { return 8 * count; }
static inline size_t cexact_windows_offset(size_t count) { return 16 * count; }

/* Adds `shards` (1 to 4) Float arrays of `count` values to the limbs and windows (`empty`: the limbs hold nothing
 * yet and are overwritten). Returns the largest magnitude bits seen: 0x7F800000 or more means a NaN or infinity. */
uint32_t cexact_add(uint64_t *high, uint64_t *low, int8_t *windows, const float *const *gradients, int shards,
                    int empty, size_t count);

/* Adds another sum given as its wire bytes (count high limbs, count low limbs, count windows; any alignment). */
void cexact_merge(uint64_t *high, uint64_t *low, int8_t *windows, const void *theirs, size_t count);

/* Writes the mean, sum * (1 / divisor), as Floats; returns 1 if every one is finite. */
int cexact_mean(const uint64_t *high, const uint64_t *low, const int8_t *windows, float *mean, size_t count,
                double divisor);

/* All of the above in one pass, in cache-sized blocks, for parameters `first` to `end` (exclusive) of arrays of
 * `count`: the sum in `high`/`low`/`windows` (nothing, if `empty`) plus `sum_count` wire sums (as cexact_merge takes
 * them) plus `shards` Float arrays (any number). With `mean`, writes sum * (1 / divisor) there, sets *finite as
 * cexact_mean returns (Floats alone within range of each other leave it 1: their mean is finite when they are), and
 * leaves the limbs as they were; with `mean` NULL, writes the total back into the limbs.
 * The bits are those of the separate calls in that order. Disjoint ranges may run on several threads at once.
 * Returns the largest magnitude bits of the Floats, as cexact_add does. */
uint32_t cexact_combine(uint64_t *high, uint64_t *low, int8_t *windows, int empty, const void *const *sums,
                        int sum_count, const float *const *gradients, int shards, float *mean, double divisor,
                        int *finite, size_t count, size_t first, size_t end);

/* Checks parameters `first` to `end` (exclusive) of a sum of `count` in cexact_merge's layout (any alignment):
 * bit 0 set if every high and low limb lies within [-limit, limit] (limit below 2^63), bit 1 set if every window lies
 * within [lowest_window, highest_window]; 3 when both hold. A sum of m micro-shards has limbs within m * 2^50 (each
 * value deposits less than 2^50 in a limb, and a window's raise only moves a limb's sum), windows within the
 * float32 ones: what an owner or the coordinator asks of a contribution before adding it. */
int cexact_within(const void *sum, size_t count, size_t first, size_t end, uint64_t limit, int lowest_window,
                  int highest_window);

/* The packed wire form of a sum in cexact_merge's layout (see pack.c): at most cexact_pack_bound(count) bytes. */
size_t cexact_pack_bound(size_t count);
/* Packs `count` parameters of `sum`; returns the bytes written to `out` (which holds cexact_pack_bound bytes). */
size_t cexact_pack(const void *sum, size_t count, unsigned char *out);
/* Packs parameters `first` to `end` (exclusive) of `sum` (of `count`), as cexact_pack packs a sum of just those: what
 * cexact_unpack of `end - first` parameters reads (out holds cexact_pack_bound(end - first) bytes). */
size_t cexact_pack_range(const void *sum, size_t count, size_t first, size_t end, unsigned char *out);
/* Unpacks `length` bytes into `sum` (the layout above, CEXACT_BYTES_PER_PARAMETER * count bytes); returns 1 if they are exactly one
 * packed sum of `count` parameters, 0 if not (what was written is then not a sum). Reads nothing past `length`. */
int cexact_unpack(const unsigned char *in, size_t length, size_t count, void *sum);
/* What the packed form's headers say of the limbs cexact_unpack_bounded wrote, without reading them: every high limb
 * lies in [-2^(high_bits-1), 2^(high_bits-1)) and every low limb in [-2^(low_bits-1), 2^(low_bits-1)) (0: all zero),
 * every window in [lowest_window, highest_window]. Enough to pass a sum's bounds check (cexact_within) when they lie
 * inside it; only when not must the limbs be read. */
typedef struct {
    int high_bits, low_bits, lowest_window, highest_window;
} cexact_unpacked_bounds;
/* cexact_unpack, and (when it returns 1) the bounds above. */
int cexact_unpack_bounded(const unsigned char *in, size_t length, size_t count, void *sum,
                          cexact_unpacked_bounds *bounds);

/* The packed wire form of Floats (see pack_floats.c): every bit pattern kept, about 12 % fewer bytes on gradients
 * and means; at most cexact_pack_floats_bound(count) bytes. */
size_t cexact_pack_floats_bound(size_t count);
/* Packs `count` Floats; returns the bytes written to `out` (which holds cexact_pack_floats_bound bytes). */
size_t cexact_pack_floats(const float *values, size_t count, unsigned char *out);
/* Unpacks `length` bytes into `count` Floats; returns 1 if they are exactly the packed form of `count` Floats, 0 if
 * not (what was written is then not the values). Reads nothing past `length`. */
int cexact_unpack_floats(const unsigned char *in, size_t length, size_t count, float *values);

/* The build of packing and unpacking in use: 0 portable, 1 with BMI2, 2 AVX-512 with VBMI (pack.c); the same bytes
 * and verdicts from each. `cexact_use_pack_level` picks a lower one (tests compare them) and returns 1 if it did. */
int cexact_pack_level(void);
int cexact_use_pack_level(int level);

/* The instruction set the loops use: 0 SSE2 (or the compiler's baseline off x86-64), 1 AVX2, 2 AVX-512. The CPU's
 * best is chosen on first use; `cexact_use_level` picks another (for tests that compare them; a level the CPU lacks
 * is refused) and returns 1 if it did. */
int cexact_level(void);
int cexact_use_level(int level);

/* One sum of Doubles (the loss). */
typedef struct {
    uint64_t high, low;
    int32_t window;
} cexact_scalar;

/* A sum holding nothing. */
cexact_scalar cexact_scalar_empty(void);
/* `sum` plus a finite `value`. */
cexact_scalar cexact_scalar_add(cexact_scalar sum, double value);
/* The sum of two sums. */
cexact_scalar cexact_scalar_merge(cexact_scalar a, cexact_scalar b);
/* A sum's value, rounded once to a Double. */
double cexact_scalar_value(cexact_scalar sum);

#endif

#include "cexactsum.h"
#include <string.h>

#if defined(__x86_64__)
#include "cplatform.h"
#endif

/* The packed wire form of an exact sum: one bit stream, least significant bit first, zero bits up to the next byte at
 * its end; blocks of 8 parameters (the last may be shorter), each
 *   1 bit: the block's windows are all the same; the window + 16 in 5 bits, once if so, else once per parameter;
 *   7 bits: the high limbs' width in bits (0-64); 7 bits: the low limbs' width in bits (0-64) after the shift;
 *   6 bits: the low limbs' shift (0-63), the trailing zero bits all the block's low limbs have;
 *   each high limb in two's complement truncated to its width, then each low limb shifted right by the shift, the same.
 * Limbs are stored as they are (no canonical form: a window raise needs the high limb itself). Gradients' low limbs
 * carry many trailing zero bits (a float32 has 24 significant bits) and their high limbs few significant ones, so a
 * typical worker's sum packs to about a third of its 17 bytes per parameter. Widths in bits rather than whole bytes
 * save about half a byte per limb. A sum of float32 values has windows in [-3, 2], which 5 bits hold.
 *
 * Three builds of the same form, chosen at run time (`cexact_pack_level`), write the same bytes and accept the same
 * streams: the portable one; that one with BMI2's flagless shifts (every bit position is a variable shift); and one
 * for AVX-512 with VBMI, which finds a whole block's widths in vector registers, joins two or four narrow limbs
 * into one put, and unpacks each block's eight limbs of a width at once with a byte permutation. */

#include "bits.h"

enum { PACK_BLOCK = 8, WINDOW_BIAS = 16 };

/* The bits a block's values need in two's complement, from the OR of their sign-folded magnitudes (v ^ (v >> 63))
 * and whether any is nonzero: the smallest n with -2^(n-1) <= v < 2^(n-1) for all; 0 when all are 0. */
INLINE int bits_for(uint64_t folded, int any) {
    return any ? (folded ? 64 - __builtin_clzll(folded) : 0) + 1 : 0;
}

INLINE uint64_t fold(int64_t v) { return (uint64_t)(v ^ (v >> 63)); }

size_t cexact_pack_bound(size_t count) {
    size_t blocks = (count + PACK_BLOCK - 1) / PACK_BLOCK;
    return CEXACT_BYTES_PER_PARAMETER * count + 4 * blocks + 8; /* + 8: each store writes a whole word */
}

/* A block's header: whether its windows are all the same, the window(s), the widths and the shift. */
INLINE void put_header(bit_writer *w, const int8_t *windows, size_t n, int uniform, int nh, int nl, int shift) {
    put_bits(w, (uint64_t)uniform, 1);
    for (size_t i = 0; i < (uniform ? 1 : n); i++) put_bits(w, (uint64_t)(windows[i] + WINDOW_BIAS), 5);
    put_bits(w, (uint64_t)nh | (uint64_t)nl << 7 | (uint64_t)shift << 14, 20);
}

/* Packs the block of `n` parameters whose high limbs, low limbs and windows start at the three pointers. */
INLINE void pack_block(bit_writer *w, const unsigned char *high_bytes, const unsigned char *low_bytes,
                       const int8_t *windows, size_t n) {
    int64_t high[PACK_BLOCK], low[PACK_BLOCK];
    uint64_t high_bits = 0, low_or = 0;
    int high_any = 0, uniform = 1;
    for (size_t i = 0; i < n; i++) {
        memcpy(&high[i], high_bytes + 8 * i, 8);
        memcpy(&low[i], low_bytes + 8 * i, 8);
        high_bits |= fold(high[i]);
        high_any |= high[i] != 0;
        low_or |= (uint64_t)low[i];
        uniform &= windows[i] == windows[0];
    }
    /* Every low limb has at least the OR's trailing zero bits. */
    int shift = low_or ? __builtin_ctzll(low_or) : 0, nh = bits_for(high_bits, high_any);
    uint64_t low_bits = 0;
    for (size_t i = 0; i < n; i++) low_bits |= fold(low[i] >> shift);
    int nl = bits_for(low_bits, low_or != 0);
    put_header(w, windows, n, uniform, nh, nl, shift);
    for (size_t i = 0; i < n; i++) put_limb(w, (uint64_t)high[i], nh);
    for (size_t i = 0; i < n; i++) put_limb(w, (uint64_t)(low[i] >> shift), nl);
}

/* A whole block the vector build packs (it returns 1), or 0 to have `pack_block` do it. */
typedef int (*whole_block_packer)(bit_writer *, const unsigned char *, const unsigned char *, const int8_t *);

/* Packs `count` parameters whose high limbs, low limbs and windows start at the three pointers. */
INLINE size_t pack_body(const unsigned char *high_bytes, const unsigned char *low_bytes, const int8_t *windows,
                        size_t count, unsigned char *out, whole_block_packer whole) {
    bit_writer w = {out, 0, 0};
    for (size_t start = 0; start < count; start += PACK_BLOCK) {
        size_t n = count - start < PACK_BLOCK ? count - start : PACK_BLOCK;
        if (whole && n == PACK_BLOCK && whole(&w, high_bytes + 8 * start, low_bytes + 8 * start, windows + start))
            continue;
        pack_block(&w, high_bytes + 8 * start, low_bytes + 8 * start, windows + start, n);
    }
    memcpy(w.out, &w.word, 8);
    return (size_t)(w.out - out) + (w.filled ? 1 : 0);
}

/* A whole block's limbs the vector build unpacks (high limbs of `nh` bits at bit `position`, then the low limbs):
 * 1 if it did, 0 to have the scalar loop do it, -1 if a low limb's shift does not give it back. */
typedef int (*whole_block_unpacker)(const unsigned char *in, size_t length, size_t position, int nh, int nl,
                                    int shift, unsigned char *high, unsigned char *low);

INLINE int unpack_body(const unsigned char *in, size_t length, size_t count, void *sum, whole_block_unpacker whole,
                       cexact_unpacked_bounds *bounds) {
    unsigned char *bytes = (unsigned char *)sum;
    int8_t *windows = (int8_t *)(bytes + cexact_windows_offset(count));
    size_t position = 0, bits = 8 * length;
    /* The widths and windows seen (a block's header gives them), so a check of the limbs need not read them. */
    int high_bits = 0, low_bits = 0;
    uint32_t windows_seen = 0; /* bit w + WINDOW_BIAS for each window w decoded */
    for (size_t start = 0; start < count; start += PACK_BLOCK) {
        size_t n = count - start < PACK_BLOCK ? count - start : PACK_BLOCK;
        /* The header, 1 + 5 (or 5 per parameter) + 20 bits, lies before the end. */
        if (position + 1 > bits) return 0;
        int uniform = (int)get_bits(in, length, position, 1);
        if (position + 1 + 5 * (uniform ? 1 : n) + 20 > bits) return 0;
        position += 1;
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && uniform) {
                windows[start + i] = windows[start];
            } else {
                uint32_t biased = (uint32_t)get_bits(in, length, position, 5);
                windows[start + i] = (int8_t)((int)biased - WINDOW_BIAS);
                windows_seen |= UINT32_C(1) << biased;
                position += 5;
            }
        }
        uint64_t fields = get_bits(in, length, position, 20);
        int nh = (int)(fields & 0x7F), nl = (int)(fields >> 7 & 0x7F), shift = (int)(fields >> 14);
        position += 20;
        size_t end = position + n * (size_t)(nh + nl);
        if (nh > 64 || nl > 64 || end > bits) return 0;
        int low_width = nl ? nl + shift : 0;
        high_bits = nh > high_bits ? nh : high_bits;
        low_bits = low_width > low_bits ? low_width : low_bits;
        if (whole && n == PACK_BLOCK) {
            int done = whole(in, length, position, nh, nl, shift, bytes + 8 * start, bytes + 8 * (count + start));
            if (done < 0) return 0;
            if (done) {
                position = end;
                continue;
            }
        }
        int whole_words = end + 64 <= bits;
        for (size_t i = 0; i < n; i++, position += (size_t)nh) {
            int64_t h = get_limb(in, length, position, nh, whole_words);
            memcpy(bytes + 8 * (start + i), &h, 8);
        }
        for (size_t i = 0; i < n; i++, position += (size_t)nl) {
            int64_t v = get_limb(in, length, position, nl, whole_words);
            /* The shift must give back a 64-bit value exactly (a packer never writes one that does not). */
            if (shift && ((int64_t)((uint64_t)v << shift) >> shift) != v) return 0;
            int64_t l = (int64_t)((uint64_t)v << shift);
            memcpy(bytes + 8 * (count + start + i), &l, 8);
        }
    }
    /* The stream ends within its last byte, and the bits after it there are zero: one packed form per sum. */
    if ((position + 7) / 8 != length) return 0;
    bounds->high_bits = high_bits;
    bounds->low_bits = low_bits;
    bounds->lowest_window = windows_seen ? __builtin_ctz(windows_seen) - WINDOW_BIAS : 0;
    bounds->highest_window = windows_seen ? 31 - __builtin_clz(windows_seen) - WINDOW_BIAS : 0;
    return position % 8 == 0 || (in[length - 1] >> (position % 8)) == 0;
}

/* ---- The vector build: AVX-512 (F, BW, DQ, VL) with VBMI's byte permutation, and BMI2. ---- */

#if defined(__x86_64__)
/* `pack_block` for a whole block, its widths found in vector registers. */
VECTOR INLINE int pack_whole_block(bit_writer *w, const unsigned char *high_bytes, const unsigned char *low_bytes,
                                   const int8_t *windows) {
    __m512i high = _mm512_loadu_si512(high_bytes), low = _mm512_loadu_si512(low_bytes);
    uint64_t high_bits = (uint64_t)_mm512_reduce_or_epi64(_mm512_xor_si512(high, _mm512_srai_epi64(high, 63)));
    uint64_t low_or = (uint64_t)_mm512_reduce_or_epi64(low), window_bytes;
    memcpy(&window_bytes, windows, 8);
    int uniform = window_bytes == (window_bytes & 0xFF) * UINT64_C(0x0101010101010101);
    int shift = low_or ? __builtin_ctzll(low_or) : 0;
    int nh = bits_for(high_bits, _mm512_test_epi64_mask(high, high) != 0);
    __m512i shifted = _mm512_srav_epi64(low, _mm512_set1_epi64(shift));
    uint64_t low_bits = (uint64_t)_mm512_reduce_or_epi64(_mm512_xor_si512(shifted, _mm512_srai_epi64(shifted, 63)));
    int nl = bits_for(low_bits, low_or != 0);
    put_header(w, windows, PACK_BLOCK, uniform, nh, nl, shift);
    put_eight(w, high, nh);
    put_eight(w, shifted, nl);
    return 1;
}

VECTOR INLINE int unpack_whole_block(const unsigned char *in, size_t length, size_t position, int nh, int nl,
                                     int shift, unsigned char *high_out, unsigned char *low_out) {
    size_t low_position = position + PACK_BLOCK * (size_t)nh;
    if (nh > 56 || nl > 56 || (low_position >> 3) + 64 > length) return 0;
    __m512i high = get_eight_signed(in, position, nh), low = get_eight_signed(in, low_position, nl);
    __m512i shifts = _mm512_set1_epi64(shift), shifted = _mm512_sllv_epi64(low, shifts);
    if (_mm512_cmpneq_epi64_mask(_mm512_srav_epi64(shifted, shifts), low)) return -1;
    _mm512_storeu_si512(high_out, high);
    _mm512_storeu_si512(low_out, shifted);
    return 1;
}
#endif

/* ---- Each build, and the choice among them. ---- */

static size_t pack_portable(const unsigned char *h, const unsigned char *l, const int8_t *w, size_t count,
                            unsigned char *out) {
    return pack_body(h, l, w, count, out, 0);
}
static int unpack_portable(const unsigned char *in, size_t length, size_t count, void *sum,
                           cexact_unpacked_bounds *bounds) {
    return unpack_body(in, length, count, sum, 0, bounds);
}

#if defined(__x86_64__)
__attribute__((target("bmi2"))) static size_t pack_bmi2(const unsigned char *h, const unsigned char *l,
                                                        const int8_t *w, size_t count, unsigned char *out) {
    return pack_body(h, l, w, count, out, 0);
}
__attribute__((target("bmi2"))) static int unpack_bmi2(const unsigned char *in, size_t length, size_t count,
                                                       void *sum, cexact_unpacked_bounds *bounds) {
    return unpack_body(in, length, count, sum, 0, bounds);
}
VECTOR static size_t pack_vector(const unsigned char *h, const unsigned char *l, const int8_t *w, size_t count,
                                 unsigned char *out) {
    return pack_body(h, l, w, count, out, pack_whole_block);
}
VECTOR static int unpack_vector(const unsigned char *in, size_t length, size_t count, void *sum,
                                cexact_unpacked_bounds *bounds) {
    return unpack_body(in, length, count, sum, unpack_whole_block, bounds);
}
#endif

/* The best build this CPU runs: 2 the vector build, 1 BMI2, 0 portable. */
static int best_pack_level(void) {
#if defined(__x86_64__)
    ccpu_features f = ccpu_read();
    if (f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.avx512vbmi && f.bmi2) return 2;
    if (f.bmi2) return 1;
#endif
    return 0;
}

/* -1 until first read; every thread computes the same value, so a race is harmless. */
static int pack_level = -1;

int cexact_pack_level(void) {
    int current = __atomic_load_n(&pack_level, __ATOMIC_RELAXED);
    if (current < 0) {
        current = best_pack_level();
        __atomic_store_n(&pack_level, current, __ATOMIC_RELAXED);
    }
    return current;
}

int cexact_use_pack_level(int wanted) {
    if (wanted < 0 || wanted > best_pack_level()) return 0;
    __atomic_store_n(&pack_level, wanted, __ATOMIC_RELAXED);
    return 1;
}

static size_t pack_arrays(const unsigned char *high_bytes, const unsigned char *low_bytes, const int8_t *windows,
                          size_t count, unsigned char *out) {
    switch (cexact_pack_level()) {
#if defined(__x86_64__)
    case 2: return pack_vector(high_bytes, low_bytes, windows, count, out);
    case 1: return pack_bmi2(high_bytes, low_bytes, windows, count, out);
#endif
    default: return pack_portable(high_bytes, low_bytes, windows, count, out);
    }
}

size_t cexact_pack(const void *sum, size_t count, unsigned char *out) {
    const unsigned char *bytes = (const unsigned char *)sum;
    return pack_arrays(bytes, bytes + cexact_low_limbs_offset(count),
                       (const int8_t *)(bytes + cexact_windows_offset(count)), count, out);
}

size_t cexact_pack_range(const void *sum, size_t count, size_t first, size_t end, unsigned char *out) {
    const unsigned char *bytes = (const unsigned char *)sum;
    return pack_arrays(bytes + 8 * first, bytes + cexact_low_limbs_offset(count) + 8 * first,
                       (const int8_t *)(bytes + cexact_windows_offset(count) + first), end - first, out);
}

int cexact_unpack_bounded(const unsigned char *in, size_t length, size_t count, void *sum,
                          cexact_unpacked_bounds *bounds) {
    switch (cexact_pack_level()) {
#if defined(__x86_64__)
    case 2: return unpack_vector(in, length, count, sum, bounds);
    case 1: return unpack_bmi2(in, length, count, sum, bounds);
#endif
    default: return unpack_portable(in, length, count, sum, bounds);
    }
}

int cexact_unpack(const unsigned char *in, size_t length, size_t count, void *sum) {
    cexact_unpacked_bounds unused;
    return cexact_unpack_bounded(in, length, count, sum, &unused);
}

#include "cexactsum.h"
#include <string.h>

/* The packed wire form of an exact sum: one bit stream, least significant bit first, zero bits up to the next byte at
 * its end; blocks of 8 parameters (the last may be shorter), each
 *   1 bit: the block's windows are all the same; the window + 16 in 5 bits, once if so, else once per parameter;
 *   7 bits: the high limbs' width in bits (0-64); 7 bits: the low limbs' width in bits (0-64) after the shift;
 *   6 bits: the low limbs' shift (0-63), the trailing zero bits all the block's low limbs have;
 *   each high limb in two's complement truncated to its width, then each low limb shifted right by the shift, the same.
 * Limbs are stored as they are (no canonical form: a window raise needs the high limb itself). Gradients' low limbs
 * carry many trailing zero bits (a float32 has 24 significant bits) and their high limbs few significant ones, so a
 * typical worker's sum packs to about a third of its 17 bytes per parameter. Widths in bits rather than whole bytes
 * save about half a byte per limb. A sum of float32 values has windows in [-3, 2], which 5 bits hold. */

enum { PACK_BLOCK = 8, WINDOW_BIAS = 16 };

/* The bits a block's values need in two's complement, from the OR of their sign-folded magnitudes (v ^ (v >> 63))
 * and whether any is nonzero: the smallest n with -2^(n-1) <= v < 2^(n-1) for all; 0 when all are 0. */
static inline int bits_for(uint64_t folded, int any) {
    return any ? (folded ? 64 - __builtin_clzll(folded) : 0) + 1 : 0;
}

static inline uint64_t fold(int64_t v) { return (uint64_t)(v ^ (v >> 63)); }

size_t cexact_pack_bound(size_t count) {
    size_t blocks = (count + PACK_BLOCK - 1) / PACK_BLOCK;
    return CEXACT_BYTES_PER_PARAMETER * count + 4 * blocks + 8; /* + 8: each store writes a whole word */
}

/* Appends bits to `out` without a branch per value: each put stores a whole word and moves on by the whole bytes
 * it filled (the bound leaves a word of room past the end). */
typedef struct {
    unsigned char *out;
    uint64_t word;
    int filled; /* bits of `word` not yet passed, 0-7 */
} bit_writer;

/* Appends the low `width` bits of `value`, width 0-56. */
static inline void put_bits(bit_writer *w, uint64_t value, int width) {
    w->word |= (value & ((UINT64_C(1) << width) - 1)) << w->filled;
    memcpy(w->out, &w->word, 8);
    w->filled += width;
    w->out += w->filled >> 3;
    w->word >>= w->filled & ~7; /* at most 56: filled is at most 63 */
    w->filled &= 7;
}

/* Appends the low `width` bits of `value`, width 0-64. */
static inline void put_limb(bit_writer *w, uint64_t value, int width) {
    if (width > 56) {
        put_bits(w, value, 32);
        put_bits(w, value >> 32, width - 32);
    } else {
        put_bits(w, value, width);
    }
}

/* Packs `count` parameters whose high limbs, low limbs and windows start at the three pointers. */
static size_t pack_arrays(const unsigned char *high_bytes, const unsigned char *low_bytes, const int8_t *windows,
                          size_t count, unsigned char *out) {
    bit_writer w = {out, 0, 0};
    for (size_t start = 0; start < count; start += PACK_BLOCK) {
        size_t n = count - start < PACK_BLOCK ? count - start : PACK_BLOCK;
        int64_t high[PACK_BLOCK], low[PACK_BLOCK];
        uint64_t high_bits = 0, low_or = 0;
        int high_any = 0, uniform = 1;
        for (size_t i = 0; i < n; i++) {
            memcpy(&high[i], high_bytes + 8 * (start + i), 8);
            memcpy(&low[i], low_bytes + 8 * (start + i), 8);
            high_bits |= fold(high[i]);
            high_any |= high[i] != 0;
            low_or |= (uint64_t)low[i];
            uniform &= windows[start + i] == windows[start];
        }
        /* Every low limb has at least the OR's trailing zero bits. */
        int shift = low_or ? __builtin_ctzll(low_or) : 0, nh = bits_for(high_bits, high_any);
        uint64_t low_bits = 0;
        for (size_t i = 0; i < n; i++) low_bits |= fold(low[i] >> shift);
        int nl = bits_for(low_bits, low_or != 0);
        put_bits(&w, (uint64_t)uniform, 1);
        for (size_t i = 0; i < (uniform ? 1 : n); i++) put_bits(&w, (uint64_t)(windows[start + i] + WINDOW_BIAS), 5);
        put_bits(&w, (uint64_t)nh | (uint64_t)nl << 7 | (uint64_t)shift << 14, 20);
        for (size_t i = 0; i < n; i++) put_limb(&w, (uint64_t)high[i], nh);
        for (size_t i = 0; i < n; i++) put_limb(&w, (uint64_t)(low[i] >> shift), nl);
    }
    memcpy(w.out, &w.word, 8);
    return (size_t)(w.out - out) + (w.filled ? 1 : 0);
}

size_t cexact_pack(const void *sum, size_t count, unsigned char *out) {
    const unsigned char *bytes = (const unsigned char *)sum;
    return pack_arrays(bytes, bytes + cexact_low_limbs_offset(count), (const int8_t *)(bytes + cexact_windows_offset(count)), count, out);
}

size_t cexact_pack_range(const void *sum, size_t count, size_t first, size_t end, unsigned char *out) {
    const unsigned char *bytes = (const unsigned char *)sum;
    return pack_arrays(bytes + 8 * first, bytes + cexact_low_limbs_offset(count) + 8 * first, (const int8_t *)(bytes + cexact_windows_offset(count) + first),
                       end - first, out);
}

/* The `width` bits (0-56) at bit `position` of a stream of `length` bytes that holds them, zero-extended: one word
 * load where a whole word lies before the end. */
static inline uint64_t get_bits(const unsigned char *in, size_t length, size_t position, int width) {
    size_t byte = position >> 3;
    uint64_t word = 0;
    if (length - byte >= 8) memcpy(&word, in + byte, 8);
    else memcpy(&word, in + byte, length - byte);
    return (word >> (position & 7)) & ((UINT64_C(1) << width) - 1);
}

/* The `width` bits (0-64) at bit `position`, as a two's complement number; `whole`: a word can be read at every byte
 * of the value (the stream goes on 8 bytes past it), so no read checks the end. */
static inline int64_t get_limb(const unsigned char *in, size_t length, size_t position, int width, int whole) {
    if (width == 0) return 0;
    uint64_t bits;
    if (whole && width <= 56) {
        uint64_t word;
        memcpy(&word, in + (position >> 3), 8);
        bits = word >> (position & 7);
    } else {
        bits = width > 56 ? get_bits(in, length, position, 32) | get_bits(in, length, position + 32, width - 32) << 32
                          : get_bits(in, length, position, width);
    }
    int unused = 64 - width;
    return (int64_t)(bits << unused) >> unused;
}

int cexact_unpack(const unsigned char *in, size_t length, size_t count, void *sum) {
    unsigned char *bytes = (unsigned char *)sum;
    int8_t *windows = (int8_t *)(bytes + cexact_windows_offset(count));
    size_t position = 0, bits = 8 * length;
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
                windows[start + i] = (int8_t)((int)get_bits(in, length, position, 5) - WINDOW_BIAS);
                position += 5;
            }
        }
        uint64_t fields = get_bits(in, length, position, 20);
        int nh = (int)(fields & 0x7F), nl = (int)(fields >> 7 & 0x7F), shift = (int)(fields >> 14);
        position += 20;
        size_t end = position + n * (size_t)(nh + nl);
        if (nh > 64 || nl > 64 || end > bits) return 0;
        int whole = end + 64 <= bits;
        for (size_t i = 0; i < n; i++, position += (size_t)nh) {
            int64_t h = get_limb(in, length, position, nh, whole);
            memcpy(bytes + 8 * (start + i), &h, 8);
        }
        for (size_t i = 0; i < n; i++, position += (size_t)nl) {
            int64_t v = get_limb(in, length, position, nl, whole);
            /* The shift must give back a 64-bit value exactly (a packer never writes one that does not). */
            if (shift && ((int64_t)((uint64_t)v << shift) >> shift) != v) return 0;
            int64_t l = (int64_t)((uint64_t)v << shift);
            memcpy(bytes + 8 * (count + start + i), &l, 8);
        }
    }
    /* The stream ends within its last byte, and the bits after it there are zero: one packed form per sum. */
    if ((position + 7) / 8 != length) return 0;
    return position % 8 == 0 || (in[length - 1] >> (position % 8)) == 0;
}

#include "cexactsum.h"
#include <string.h>

/* The packed wire form of an exact sum: blocks of 8 parameters (the last may be shorter), each
 *   byte 0: high-limb width in bytes (0-8), plus 0x10 if the block's windows are all the same;
 *   byte 1: low-limb width in bytes (0-8) after the shift; byte 2: the low limbs' shift in bits (0-63);
 *   the window (one byte if all the same, else one per parameter);
 *   each high limb in two's complement, truncated to its width, little-endian;
 *   each low limb shifted right by the shift (all the block's low limbs have that many trailing zero bits), the same.
 * Limbs are stored as they are (no canonical form: a window raise needs the high limb itself). Gradients' low limbs
 * carry many trailing zero bits (a float32 has 24 significant bits) and their high limbs few significant ones, so a
 * typical sum packs to about a third of its 17 bytes per parameter. */

enum { PACK_BLOCK = 8 };

/* The bytes a block's values need in two's complement, from the OR of their sign-folded magnitudes (v ^ (v >> 63))
 * and whether any is nonzero: the smallest n with -2^(8n-1) <= v < 2^(8n-1) for all; 0 when all are 0. */
static inline int bytes_for(uint64_t folded, int any) {
    int bits = (folded ? 64 - __builtin_clzll(folded) : 0) + 1;
    return any ? (bits + 7) / 8 : 0;
}

static inline uint64_t fold(int64_t v) { return (uint64_t)(v ^ (v >> 63)); }

size_t cexact_pack_bound(size_t count) {
    size_t blocks = (count + PACK_BLOCK - 1) / PACK_BLOCK;
    return CEXACT_BYTES_PER_PARAMETER * count + 4 * blocks + 8; /* + 8: each store writes a whole word */
}

/* Packs `count` parameters whose high limbs, low limbs and windows start at the three pointers. */
static size_t pack_arrays(const unsigned char *high_bytes, const unsigned char *low_bytes, const int8_t *windows,
                          size_t count, unsigned char *out) {
    unsigned char *p = out;
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
        int shift = low_or ? __builtin_ctzll(low_or) : 0, nh = bytes_for(high_bits, high_any);
        uint64_t low_bits = 0;
        for (size_t i = 0; i < n; i++) low_bits |= fold(low[i] >> shift);
        int nl = bytes_for(low_bits, low_or != 0);
        *p++ = (unsigned char)(nh | (uniform ? 0x10 : 0));
        *p++ = (unsigned char)nl;
        *p++ = (unsigned char)shift;
        if (uniform) {
            *p++ = (unsigned char)windows[start];
        } else {
            memcpy(p, windows + start, n);
            p += n;
        }
        for (size_t i = 0; i < n; i++) {
            memcpy(p, &high[i], 8); /* little-endian: the low nh bytes first */
            p += nh;
        }
        for (size_t i = 0; i < n; i++) {
            int64_t v = low[i] >> shift;
            memcpy(p, &v, 8);
            p += nl;
        }
    }
    return (size_t)(p - out);
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

/* Reads n bytes (n <= 8, all before `end`) as a sign-extended two's complement integer: a whole word when one can
 * be read, so the copy is one load. */
static inline int64_t load_signed(const unsigned char *p, int n, const unsigned char *end) {
    if (n == 0) return 0;
    uint64_t v = 0;
    if (end - p >= 8) memcpy(&v, p, 8);
    else memcpy(&v, p, (size_t)n);
    int unused = 64 - 8 * n;
    return unused ? (int64_t)(v << unused) >> unused : (int64_t)v;
}

int cexact_unpack(const unsigned char *in, size_t length, size_t count, void *sum) {
    unsigned char *bytes = (unsigned char *)sum;
    int8_t *windows = (int8_t *)(bytes + cexact_windows_offset(count));
    const unsigned char *p = in, *end = in + length;
    for (size_t start = 0; start < count; start += PACK_BLOCK) {
        size_t n = count - start < PACK_BLOCK ? count - start : PACK_BLOCK;
        if (end - p < 3) return 0;
        int nh = p[0] & 0x0F, uniform = (p[0] & 0x10) != 0, nl = p[1], shift = p[2];
        if ((p[0] & ~0x1F) || nh > 8 || nl > 8 || shift > 63) return 0;
        p += 3;
        size_t need = (uniform ? 1 : n) + n * (size_t)nh + n * (size_t)nl;
        if ((size_t)(end - p) < need) return 0;
        if (uniform) {
            memset(windows + start, p[0], n);
            p += 1;
        } else {
            memcpy(windows + start, p, n);
            p += n;
        }
        for (size_t i = 0; i < n; i++) {
            int64_t h = load_signed(p, nh, end);
            memcpy(bytes + 8 * (start + i), &h, 8);
            p += nh;
        }
        for (size_t i = 0; i < n; i++) {
            int64_t v = load_signed(p, nl, end);
            /* The shift must give back a 64-bit value exactly (a packer never writes one that does not). */
            if (shift && ((int64_t)((uint64_t)v << shift) >> shift) != v) return 0;
            int64_t l = (int64_t)((uint64_t)v << shift);
            memcpy(bytes + 8 * (count + start + i), &l, 8);
            p += nl;
        }
    }
    return p == end;
}

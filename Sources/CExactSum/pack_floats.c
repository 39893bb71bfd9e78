#include "cexactsum.h"
#include "bits.h"

/* The packed wire form of Floats: every bit pattern comes back as it was (NaN payloads, −0, subnormals). One bit
 * stream, least significant bit first, zero bits up to the next byte at its end; blocks of 8 values (the last may be
 * shorter), each
 *   1 bit: some value is +0 (all 32 bits zero); if so, a bit per value, set for each +0;
 *   unless every value is +0: 8 bits, the smallest biased exponent of the others; 4 bits, the width b (0-8) their
 *   exponents' differences from it need;
 *   each value that is not +0: 24 + b bits, its 23 mantissa bits, its exponent less the smallest, its sign.
 * A gradient's or a mean's neighbouring values have exponents within a few binades of each other, and their
 * mantissas and signs are noise, so a block of them takes about 28.3 bits a value: 11–12 % fewer bytes than Floats.
 * (ReLU's dead units add exact zeros, which cost a bit each.)
 *
 * One packed form per array: the exponent given is the smallest, the width the least that holds the differences,
 * and every +0 is marked; the unpacker refuses any other, so a stream is accepted only as a packer writes it. */

enum { FLOAT_BLOCK = 8, MANTISSA_BITS = 23 };

size_t cexact_pack_floats_bound(size_t count) {
    size_t blocks = (count + FLOAT_BLOCK - 1) / FLOAT_BLOCK;
    return 4 * count + 3 * blocks + 8; /* 21 header bits a block at most; + 8: each store writes a whole word */
}

INLINE uint32_t exponent_of(uint32_t bits) { return bits >> MANTISSA_BITS & 0xFF; }

/* The least width that holds `difference` (0-255). */
INLINE int width_of(uint32_t difference) { return difference ? 32 - __builtin_clz(difference) : 0; }

/* A value's field: mantissa, its exponent less `smallest`, then the sign. */
INLINE uint64_t field_of(uint32_t bits, uint32_t smallest, int width) {
    return (uint64_t)(bits & 0x7FFFFF) | (uint64_t)(exponent_of(bits) - smallest) << MANTISSA_BITS
        | (uint64_t)(bits >> 31) << (MANTISSA_BITS + width);
}

INLINE void pack_float_block(bit_writer *w, const uint32_t *values, size_t n) {
    uint32_t zeros = 0, smallest = 255, largest = 0;
    for (size_t i = 0; i < n; i++) zeros |= (uint32_t)(values[i] == 0) << i;
    put_bits(w, zeros != 0, 1);
    if (zeros) put_bits(w, zeros, (int)n);
    if (zeros == (UINT32_C(1) << n) - 1) return;
    for (size_t i = 0; i < n; i++) {
        if (values[i] == 0) continue;
        uint32_t e = exponent_of(values[i]);
        smallest = e < smallest ? e : smallest;
        largest = e > largest ? e : largest;
    }
    int width = width_of(largest - smallest);
    put_bits(w, smallest | (uint64_t)width << 8, 12);
    for (size_t i = 0; i < n; i++) {
        if (values[i] != 0) put_bits(w, field_of(values[i], smallest, width), MANTISSA_BITS + 1 + width);
    }
}

/* A whole block the vector build packs (1), or 0 to have `pack_float_block` do it. */
typedef int (*whole_float_packer)(bit_writer *, const uint32_t *);

INLINE size_t pack_floats_body(const uint32_t *values, size_t count, unsigned char *out, whole_float_packer whole) {
    bit_writer w = {out, 0, 0};
    for (size_t start = 0; start < count; start += FLOAT_BLOCK) {
        size_t n = count - start < FLOAT_BLOCK ? count - start : FLOAT_BLOCK;
        if (whole && n == FLOAT_BLOCK && whole(&w, values + start)) continue;
        pack_float_block(&w, values + start, n);
    }
    memcpy(w.out, &w.word, 8);
    return (size_t)(w.out - out) + (w.filled ? 1 : 0);
}

/* A whole block's values with no +0 among them, of exponents from `smallest` and differences of `width` bits,
 * that the vector build unpacks: 1 if it did, 0 to have the scalar loop do it, -1 if they are not as a packer
 * writes them. */
typedef int (*whole_float_unpacker)(const unsigned char *, size_t, size_t, uint32_t, int, uint32_t *);

INLINE int unpack_floats_body(const unsigned char *in, size_t length, size_t count, uint32_t *values,
                              whole_float_unpacker whole) {
    size_t position = 0, bits = 8 * length;
    for (size_t start = 0; start < count; start += FLOAT_BLOCK) {
        size_t n = count - start < FLOAT_BLOCK ? count - start : FLOAT_BLOCK;
        uint32_t all = (UINT32_C(1) << n) - 1, zeros = 0;
        if (position + 1 > bits) return 0;
        int any_zero = (int)get_bits(in, length, position, 1);
        position += 1;
        if (any_zero) {
            if (position + n > bits) return 0;
            zeros = (uint32_t)get_bits(in, length, position, (int)n);
            position += n;
            if (zeros == 0) return 0;
            if (zeros == all) {
                memset(values + start, 0, 4 * n);
                continue;
            }
        }
        if (position + 12 > bits) return 0;
        uint64_t header = get_bits(in, length, position, 12);
        uint32_t smallest = (uint32_t)(header & 0xFF);
        int width = (int)(header >> 8), field = MANTISSA_BITS + 1 + width;
        position += 12;
        if (width > 8 || position + (size_t)field * (n - (size_t)__builtin_popcount(zeros)) > bits) return 0;
        if (whole && !zeros && n == FLOAT_BLOCK) {
            int done = whole(in, length, position, smallest, width, values + start);
            if (done < 0) return 0;
            if (done) {
                position += (size_t)field * FLOAT_BLOCK;
                continue;
            }
        }
        uint32_t least = 255, most = 0;
        for (size_t i = 0; i < n; i++) {
            if (zeros >> i & 1) {
                values[start + i] = 0;
                continue;
            }
            uint64_t v = get_bits(in, length, position, field);
            position += (size_t)field;
            uint32_t difference = (uint32_t)(v >> MANTISSA_BITS) & ((UINT32_C(1) << width) - 1);
            uint32_t value = (uint32_t)(v >> (MANTISSA_BITS + width)) << 31 | (smallest + difference) << MANTISSA_BITS
                | (uint32_t)(v & 0x7FFFFF);
            /* A +0 goes as a marked zero, and no exponent passes 255. */
            if (value == 0 || smallest + difference > 255) return 0;
            values[start + i] = value;
            least = difference < least ? difference : least;
            most = difference > most ? difference : most;
        }
        if (least != 0 || width_of(most) != width) return 0;
    }
    if ((position + 7) / 8 != length) return 0;
    return position % 8 == 0 || (in[length - 1] >> (position % 8)) == 0;
}

#if defined(__x86_64__)
VECTOR INLINE int pack_float_whole(bit_writer *w, const uint32_t *values) {
    __m512i v = _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)values));
    if (_mm512_testn_epi64_mask(v, v)) return 0;
    __m512i e = _mm512_and_si512(_mm512_srli_epi64(v, MANTISSA_BITS), _mm512_set1_epi64(0xFF));
    uint32_t smallest = (uint32_t)_mm512_reduce_min_epu64(e), largest = (uint32_t)_mm512_reduce_max_epu64(e);
    int width = width_of(largest - smallest);
    __m512i fields = _mm512_or_si512(
        _mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi64(0x7FFFFF)),
                        _mm512_slli_epi64(_mm512_sub_epi64(e, _mm512_set1_epi64(smallest)), MANTISSA_BITS)),
        _mm512_sllv_epi64(_mm512_srli_epi64(v, 31), _mm512_set1_epi64(MANTISSA_BITS + width)));
    put_bits(w, 0, 1);
    put_bits(w, smallest | (uint64_t)width << 8, 12);
    put_eight(w, fields, MANTISSA_BITS + 1 + width);
    return 1;
}

VECTOR INLINE int unpack_float_whole(const unsigned char *in, size_t length, size_t position, uint32_t smallest,
                                     int width, uint32_t *values) {
    if ((position >> 3) + 64 > length) return 0;
    __m512i v = get_eight_unsigned(in, position, MANTISSA_BITS + 1 + width);
    __m512i difference = _mm512_and_si512(_mm512_srli_epi64(v, MANTISSA_BITS),
                                          _mm512_set1_epi64((1 << width) - 1));
    __m512i e = _mm512_add_epi64(difference, _mm512_set1_epi64(smallest));
    __m512i bits = _mm512_or_si512(
        _mm512_or_si512(_mm512_slli_epi64(_mm512_srlv_epi64(v, _mm512_set1_epi64(MANTISSA_BITS + width)), 31),
                        _mm512_slli_epi64(e, MANTISSA_BITS)),
        _mm512_and_si512(v, _mm512_set1_epi64(0x7FFFFF)));
    /* As the scalar loop checks, by lanes: no +0, some difference 0, some needing the whole width, no exponent
     * past 255. */
    __mmask8 narrow = width ? _mm512_cmpge_epu64_mask(difference, _mm512_set1_epi64(1 << (width - 1))) : 0xFF;
    if (_mm512_testn_epi64_mask(bits, bits) || !_mm512_testn_epi64_mask(difference, difference) || !narrow
        || _mm512_cmpgt_epu64_mask(e, _mm512_set1_epi64(255)))
        return -1;
    _mm256_storeu_si256((__m256i *)values, _mm512_cvtepi64_epi32(bits));
    return 1;
}
#endif

static size_t pack_floats_portable(const uint32_t *v, size_t count, unsigned char *out) {
    return pack_floats_body(v, count, out, 0);
}
static int unpack_floats_portable(const unsigned char *in, size_t length, size_t count, uint32_t *v) {
    return unpack_floats_body(in, length, count, v, 0);
}

#if defined(__x86_64__)
__attribute__((target("bmi2"))) static size_t pack_floats_bmi2(const uint32_t *v, size_t count, unsigned char *out) {
    return pack_floats_body(v, count, out, 0);
}
__attribute__((target("bmi2"))) static int unpack_floats_bmi2(const unsigned char *in, size_t length, size_t count,
                                                              uint32_t *v) {
    return unpack_floats_body(in, length, count, v, 0);
}
VECTOR static size_t pack_floats_vector(const uint32_t *v, size_t count, unsigned char *out) {
    return pack_floats_body(v, count, out, pack_float_whole);
}
VECTOR static int unpack_floats_vector(const unsigned char *in, size_t length, size_t count, uint32_t *v) {
    return unpack_floats_body(in, length, count, v, unpack_float_whole);
}
#endif

size_t cexact_pack_floats(const float *values, size_t count, unsigned char *out) {
    const uint32_t *bits = (const uint32_t *)(const void *)values;
    switch (cexact_pack_level()) {
#if defined(__x86_64__)
    case 2: return pack_floats_vector(bits, count, out);
    case 1: return pack_floats_bmi2(bits, count, out);
#endif
    default: return pack_floats_portable(bits, count, out);
    }
}

int cexact_unpack_floats(const unsigned char *in, size_t length, size_t count, float *values) {
    uint32_t *bits = (uint32_t *)(void *)values;
    switch (cexact_pack_level()) {
#if defined(__x86_64__)
    case 2: return unpack_floats_vector(in, length, count, bits);
    case 1: return unpack_floats_bmi2(in, length, count, bits);
#endif
    default: return unpack_floats_portable(in, length, count, bits);
    }
}

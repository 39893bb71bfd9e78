#ifndef CEXACTSUM_BITS_H
#define CEXACTSUM_BITS_H

/* The bit streams of the packed forms (pack.c, pack_floats.c): least significant bit first, written a whole word at
 * a time, and read a word at a time where the stream holds one; with eight values of a width at once in AVX-512. */

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define INLINE static inline __attribute__((always_inline))

/* Appends bits to `out` without a branch per value: each put stores a whole word and moves on by the whole bytes
 * it filled (the bound leaves a word of room past the end). */
typedef struct {
    unsigned char *out;
    uint64_t word;
    int filled; /* bits of `word` not yet passed, 0-7 */
} bit_writer;

/* Appends the low `width` bits of `value`, width 0-56. */
INLINE void put_bits(bit_writer *w, uint64_t value, int width) {
    w->word |= (value & ((UINT64_C(1) << width) - 1)) << w->filled;
    memcpy(w->out, &w->word, 8);
    w->filled += width;
    w->out += w->filled >> 3;
    w->word >>= w->filled & ~7; /* at most 56: filled is at most 63 */
    w->filled &= 7;
}

/* Appends the low `width` bits of `value`, width 0-64. */
INLINE void put_limb(bit_writer *w, uint64_t value, int width) {
    if (width > 56) {
        put_bits(w, value, 32);
        put_bits(w, value >> 32, width - 32);
    } else {
        put_bits(w, value, width);
    }
}

/* The `width` bits (0-56) at bit `position` of a stream of `length` bytes that holds them, zero-extended: one word
 * load where a whole word lies before the end. */
INLINE uint64_t get_bits(const unsigned char *in, size_t length, size_t position, int width) {
    size_t byte = position >> 3;
    uint64_t word = 0;
    if (length - byte >= 8) memcpy(&word, in + byte, 8);
    else memcpy(&word, in + byte, length - byte);
    return (word >> (position & 7)) & ((UINT64_C(1) << width) - 1);
}

/* The `width` bits (0-64) at bit `position`, as a two's complement number; `whole`: a word can be read at every byte
 * of the value (the stream goes on 8 bytes past it), so no read checks the end. */
INLINE int64_t get_limb(const unsigned char *in, size_t length, size_t position, int width, int whole) {
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

#if defined(__x86_64__)
/* The vector builds: AVX-512 (F, BW, DQ, VL) with VBMI's byte permutation, and BMI2. */
#define VECTOR __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,bmi2")))

/* Puts eight values of `width` bits (0-64): two or four at once while they fit 56 bits (the same bits, fewer puts). */
VECTOR INLINE void put_eight(bit_writer *w, __m512i v, int width) {
    uint64_t lanes[8];
    if (width == 0) return;
    if (width > 28) {
        _mm512_storeu_si512(lanes, v);
        for (int i = 0; i < 8; i++) put_limb(w, lanes[i], width);
        return;
    }
    v = _mm512_and_si512(v, _mm512_set1_epi64((long long)((UINT64_C(1) << width) - 1)));
    /* Lane j of the first four: limb 2j, then limb 2j + 1 above it. */
    __m512i even = _mm512_permutexvar_epi64(_mm512_set_epi64(0, 0, 0, 0, 6, 4, 2, 0), v);
    __m512i odd = _mm512_permutexvar_epi64(_mm512_set_epi64(0, 0, 0, 0, 7, 5, 3, 1), v);
    __m512i pairs = _mm512_or_si512(even, _mm512_sllv_epi64(odd, _mm512_set1_epi64(width)));
    if (width > 14) {
        _mm512_storeu_si512(lanes, pairs);
        for (int i = 0; i < 4; i++) put_bits(w, lanes[i], 2 * width);
        return;
    }
    __m512i even_pairs = _mm512_permutexvar_epi64(_mm512_set_epi64(0, 0, 0, 0, 0, 0, 2, 0), pairs);
    __m512i odd_pairs = _mm512_permutexvar_epi64(_mm512_set_epi64(0, 0, 0, 0, 0, 0, 3, 1), pairs);
    _mm512_storeu_si512(lanes, _mm512_or_si512(even_pairs, _mm512_sllv_epi64(odd_pairs, _mm512_set1_epi64(2 * width))));
    put_bits(w, lanes[0], 4 * width);
    put_bits(w, lanes[1], 4 * width);
}

/* Eight values of `width` (at most 56) bits from bit `position`, where 64 bytes can be read from its byte: each
 * lane's eight bytes picked out of those 64 (its value starts at most 7 + 7 * 56 bits in), shifted down, and the
 * bits above the value moved out of the top (then moved back, sign-extended or not, by the caller). */
VECTOR INLINE __m512i get_eight_top(const unsigned char *in, size_t position, int width) {
    const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    __m512i window = _mm512_loadu_si512(in + (position >> 3));
    __m512i offsets = _mm512_add_epi64(_mm512_set1_epi64((long long)(position & 7)),
                                       _mm512_mullo_epi64(lane, _mm512_set1_epi64(width)));
    __m512i index = _mm512_add_epi64(_mm512_mullo_epi64(_mm512_srli_epi64(offsets, 3),
                                                        _mm512_set1_epi64(0x0101010101010101LL)),
                                     _mm512_set1_epi64(0x0706050403020100LL));
    __m512i words = _mm512_permutexvar_epi8(index, window);
    __m512i limbs = _mm512_srlv_epi64(words, _mm512_and_si512(offsets, _mm512_set1_epi64(7)));
    return _mm512_sllv_epi64(limbs, _mm512_set1_epi64(64 - width));
}

/* Eight two's complement values of `width` bits (0-56), as `get_eight_top` finds them. */
VECTOR INLINE __m512i get_eight_signed(const unsigned char *in, size_t position, int width) {
    return _mm512_srav_epi64(get_eight_top(in, position, width), _mm512_set1_epi64(64 - width));
}

/* Eight unsigned values of `width` bits (0-56), as `get_eight_top` finds them. */
VECTOR INLINE __m512i get_eight_unsigned(const unsigned char *in, size_t position, int width) {
    return _mm512_srlv_epi64(get_eight_top(in, position, width), _mm512_set1_epi64(64 - width));
}

#endif

#endif

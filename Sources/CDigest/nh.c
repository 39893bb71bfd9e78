#include "cdigest.h"
#include "cplatform.h"
#include <string.h>

/* A sum modulo 2^64 does not depend on its order, so each build below may add a block's pairs' products in vector
 * lanes: one 32 × 32 → 64-bit multiply (pmuludq) a pair. The key's block stays in the nearest cache. */

#define INLINE static inline __attribute__((always_inline))

INLINE uint64_t nh_body(const uint32_t *w, size_t count, const uint32_t *k) {
    uint64_t sum = 0;
    size_t pairs = count / 2;
    /* A pair as one 64-bit load (little-endian: w[2i] low): the low half of pair + key is w[2i] + k[2i] mod 2^32
     * whatever carries out of it, so no shuffle separates the halves. */
    for (size_t i = 0; i < pairs; i++) {
        uint64_t pair, key;
        memcpy(&pair, w + 2 * i, 8);
        memcpy(&key, k + 2 * i, 8);
        uint64_t low = (pair + key) & 0xFFFFFFFFu, high = ((pair >> 32) + (key >> 32)) & 0xFFFFFFFFu;
        sum += low * high;
    }
    if (count % 2) sum += (uint64_t)(uint32_t)(w[count - 1] + k[count - 1]) * (uint64_t)k[count];
    return sum;
}

static const uint64_t prime = (1ull << 61) - 1;

/* (a · b) mod p for a, b < p: the 122-bit product folded at bit 61 (2^61 ≡ 1), then one subtraction. */
static inline uint64_t multiply_mod(uint64_t a, uint64_t b) {
    unsigned __int128 product = (unsigned __int128)a * b;
    uint64_t folded = (uint64_t)(product & prime) + (uint64_t)(product >> 61);
    return folded >= prime ? folded - prime : folded;
}

/* h · r + c mod p, for h < p and c < 2^32. */
static inline uint64_t horner(uint64_t h, uint64_t r, uint64_t c) {
    uint64_t next = multiply_mod(h, r) + c;
    return next >= prime ? next - prime : next;
}

INLINE uint64_t digest_body(const uint32_t *w, size_t count, const cdigest_key *key) {
    uint64_t h = 0;
    for (size_t first = 0; first < count; first += CDIGEST_BLOCK) {
        size_t n = count - first < CDIGEST_BLOCK ? count - first : CDIGEST_BLOCK;
        uint64_t block = nh_body(w + first, n, key->words);
        h = horner(horner(h, key->point, block >> 32), key->point, block & 0xFFFFFFFFu);
    }
    return h;
}

static uint64_t digest_base(const uint32_t *w, size_t count, const cdigest_key *key) {
    return digest_body(w, count, key);
}
static uint64_t nh_base(const uint32_t *w, size_t count, const uint32_t *k) { return nh_body(w, count, k); }

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t digest_avx2(const uint32_t *w, size_t count, const cdigest_key *key) {
    return digest_body(w, count, key);
}
__attribute__((target("avx2"))) static uint64_t nh_avx2(const uint32_t *w, size_t count, const uint32_t *k) {
    return nh_body(w, count, k);
}
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) static uint64_t
digest_avx512(const uint32_t *w, size_t count, const cdigest_key *key) {
    return digest_body(w, count, key);
}
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) static uint64_t
nh_avx512(const uint32_t *w, size_t count, const uint32_t *k) {
    return nh_body(w, count, k);
}
#endif

static int level_slot = -1;

int cdigest_level(void) { return ccpu_level_get(&level_slot); }
int cdigest_use_level(int wanted) { return ccpu_level_use(&level_slot, wanted); }

uint64_t cdigest(const uint32_t *words, size_t count, const cdigest_key *key) {
    switch (cdigest_level()) {
#if defined(__x86_64__)
    case 2: return digest_avx512(words, count, key);
    case 1: return digest_avx2(words, count, key);
#endif
    default: return digest_base(words, count, key);
    }
}

uint64_t cdigest_nh(const uint32_t *words, size_t count, const uint32_t *key) {
    if (count > CDIGEST_BLOCK) return 0;
    switch (cdigest_level()) {
#if defined(__x86_64__)
    case 2: return nh_avx512(words, count, key);
    case 1: return nh_avx2(words, count, key);
#endif
    default: return nh_base(words, count, key);
    }
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void cdigest_make_key(uint64_t seed, cdigest_key *key) {
    uint64_t state = seed;
    for (size_t i = 0; i < CDIGEST_BLOCK; i += 2) {
        uint64_t z = splitmix64(&state);
        key->words[i] = (uint32_t)z;
        key->words[i + 1] = (uint32_t)(z >> 32);
    }
    uint64_t point = splitmix64(&state) % prime;
    key->point = point == 0 ? 1 : point;
}

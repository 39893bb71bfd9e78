#include "cdigest.h"
#include "cplatform.h"
#include <string.h>

/* A sum modulo 2^64 does not depend on its order, so each build below may add the pairs' products in vector lanes:
 * one 32 × 32 → 64-bit multiply (pmuludq) a pair, at about a read of the words. */

#define INLINE static inline __attribute__((always_inline))

INLINE uint64_t nh_body(const uint32_t *w, size_t count, const uint32_t *k) {
    uint64_t sum = 0;
    size_t pairs = count / 2;
    for (size_t i = 0; i < pairs; i++) {
        uint32_t a = w[2 * i] + k[2 * i], b = w[2 * i + 1] + k[2 * i + 1];
        sum += (uint64_t)a * (uint64_t)b;
    }
    if (count % 2) sum += (uint64_t)(uint32_t)(w[count - 1] + k[count - 1]) * (uint64_t)k[count];
    return sum;
}

static uint64_t nh_base(const uint32_t *w, size_t count, const uint32_t *k) { return nh_body(w, count, k); }

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t nh_avx2(const uint32_t *w, size_t count, const uint32_t *k) {
    return nh_body(w, count, k);
}

__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) static uint64_t
nh_avx512(const uint32_t *w, size_t count, const uint32_t *k) {
    return nh_body(w, count, k);
}
#endif

static int level_slot = -1;

int cdigest_level(void) { return ccpu_level_get(&level_slot); }
int cdigest_use_level(int wanted) { return ccpu_level_use(&level_slot, wanted); }

uint64_t cdigest_nh(const uint32_t *words, size_t count, const uint32_t *key) {
    switch (cdigest_level()) {
#if defined(__x86_64__)
    case 2: return nh_avx512(words, count, key);
    case 1: return nh_avx2(words, count, key);
#endif
    default: return nh_base(words, count, key);
    }
}

void cdigest_key(uint64_t seed, uint32_t *key, size_t count) {
    uint64_t state = seed;
    for (size_t i = 0; i < count; i += 2) {
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        key[i] = (uint32_t)z;
        if (i + 1 < count) key[i + 1] = (uint32_t)(z >> 32);
    }
}

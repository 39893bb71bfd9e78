#ifndef CDIGEST_H
#define CDIGEST_H

#include <stddef.h>
#include <stdint.h>

/// A keyed digest of an array of 32-bit words, so the coordinator can tell whether a worker's replica of the weights
/// is bit for bit its own without the weights crossing a link (docs/scale-out.md, "Replicas' digests").
///
/// cdigest_nh(words, count, key) = Σ_{i < ⌈count/2⌉} ((w[2i] + k[2i]) mod 2^32) · ((w[2i+1] + k[2i+1]) mod 2^32)
/// mod 2^64, a word past `count` read as 0; `key` holds `count` rounded up to even words. This is NH, the hash under
/// UMAC (Black, Halevi, Krawczyk, Krovetz and Rogaway, CRYPTO 1999): for any two different arrays of the same length
/// and a key drawn uniformly at random, the digests agree with probability at most 2^-32. So a member that does not
/// know a worker's key cannot make a false array that digests as the true one, except by that chance; the
/// coordinator draws a key for each worker and step, after the means it checks were sent, and tells it to that
/// worker alone.
///
/// Integer adds and multiplies only, in any order (sums modulo 2^64 are associative): the SSE2, AVX2 and AVX-512
/// builds, chosen at run time, give the same bits.
uint64_t cdigest_nh(const uint32_t *words, size_t count, const uint32_t *key);

/// Fills `key[0, count)` from `seed` (splitmix64, two words an output): the key a worker and the coordinator both
/// make from the seed the coordinator drew.
void cdigest_key(uint64_t seed, uint32_t *key, size_t count);

/// The instruction set the digest runs on: 0 SSE2, 1 AVX2, 2 AVX-512.
int cdigest_level(void);
/// Runs the digest on a lower instruction set than the best (tests compare them); 0 when `wanted` is beyond it.
int cdigest_use_level(int wanted);

#endif

#ifndef CDIGEST_H
#define CDIGEST_H

#include <stddef.h>
#include <stdint.h>

/// A keyed digest of an array of 32-bit words, so the coordinator can tell whether a worker's replica of the weights
/// is bit for bit its own without the weights crossing a link (docs/scale-out.md, "Replicas' digests").
///
/// Two levels, as UMAC's (Black, Halevi, Krawczyk, Krovetz and Rogaway, CRYPTO 1999; Krovetz's VHASH):
/// - each block of CDIGEST_BLOCK words (the last one shorter) is hashed by NH with the key's words k:
///   NH(w) = Σ_{i < ⌈n/2⌉} ((w[2i] + k[2i]) mod 2^32) · ((w[2i+1] + k[2i+1]) mod 2^32) mod 2^64, a word past the
///   block read as 0. For two different blocks of the same length and uniform k, NH agrees with probability at most
///   2^-32.
/// - the blocks' NH values, each as its two 32-bit halves (high first), are the coefficients of a polynomial
///   evaluated at the key's point r modulo the prime p = 2^61 - 1 (Horner's rule from the first). Two different
///   sequences of m coefficients below 2^32 < p agree at a uniform r with probability at most m / p.
/// So two different arrays of the same length digest alike with probability at most 2^-32 + 2b / 2^61 for b blocks:
/// a member that does not know a worker's key cannot make a false array that digests as the true one, except by that
/// chance. The coordinator draws a key for each worker and step, after the means it checks were sent, and tells it
/// to that worker alone. The key is short (4 KiB, in the nearest cache), so digesting one array under many keys
/// reads the array from memory once.
///
/// Integer adds and multiplies only, summed in any order modulo 2^64 within a block: the SSE2, AVX2 and AVX-512 builds,
/// chosen at run time, give the same bits.
enum { CDIGEST_BLOCK = 1024 };

typedef struct {
    uint32_t words[CDIGEST_BLOCK];
    /// The polynomial's point, in [1, p).
    uint64_t point;
} cdigest_key;

/// The digest of `words[0, count)` under `key`.
uint64_t cdigest(const uint32_t *words, size_t count, const cdigest_key *key);

/// NH of one block of `count` ≤ CDIGEST_BLOCK words (what `cdigest` adds up; tests compare it with its definition).
uint64_t cdigest_nh(const uint32_t *words, size_t count, const uint32_t *key);

/// The key `seed` makes (splitmix64: the key's words two to an output, low half first, then the point as the next
/// output modulo p, 0 taken as 1): what a worker and the coordinator both make from the seed the coordinator drew.
void cdigest_make_key(uint64_t seed, cdigest_key *key);

/// The instruction set the digest runs on: 0 SSE2, 1 AVX2, 2 AVX-512.
int cdigest_level(void);
/// Runs the digest on a lower instruction set than the best (tests compare them); 0 when `wanted` is beyond it.
int cdigest_use_level(int wanted);

#endif

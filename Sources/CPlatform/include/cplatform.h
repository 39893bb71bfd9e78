#ifndef CPLATFORM_H
#define CPLATFORM_H

/// What cpuid (and xgetbv, for the register state the OS saves) says this CPU can run. All zero off x86-64.
typedef struct {
    int vendorAMD;
    int sse42, avx, fma, avx2;
    int avx512f, avx512dq, avx512bw, avx512vl, avx512bf16, avx512vbmi;
    /// Shifts by a register without touching the flags (shlx, shrx, sarx).
    int bmi2;
    int amxTile, amxBF16;
    /// The OS saves the YMM and ZMM registers (without it AVX and AVX-512 cannot be used whatever cpuid says).
    int osYMM, osZMM;
} ccpu_features;

ccpu_features ccpu_read(void);

/// The widest vectors the loops built three ways (CExactSum, CUpdate) may use here: 0 SSE2, 1 AVX2, 2 AVX-512
/// (F, DQ, VL and BW, with the OS saving the registers).
int ccpu_vector_level(void);
/// A loop family's level in `*slot` (-1 until first read, then `ccpu_vector_level`); every thread computes the same
/// value, so a race is harmless.
int ccpu_level_get(int *slot);
/// Sets `*slot` to a lower level than the best (tests compare the loops); returns 0 when `wanted` is beyond it.
int ccpu_level_use(int *slot, int wanted);

/// Makes standard output line-buffered, so every printed line reaches a log file at once.
void cplatform_line_buffer_stdout(void);

#include <stddef.h>

/// A worker's result region: a memfd of `size` bytes, sealed against shrinking and growing (so a reader's mapping
/// can never fault), mapped read-write into *mapping. Returns the descriptor, or -1 (errno set).
int cplatform_region_create(size_t size, void **mapping);

/// Maps another process's result region read-only, found as /proc/PID/fd/FD: only a memfd of this user, of exactly
/// `size` bytes, sealed against shrinking. Opened without blocking (the path may name anything). Returns the
/// mapping, or NULL with a short reason in *why.
void *cplatform_region_map(int pid, int fd, size_t size, const char **why);

/// Unmaps a region mapped by either call above.
void cplatform_region_unmap(void *mapping, size_t size);

#endif

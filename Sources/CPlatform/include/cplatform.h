#ifndef CPLATFORM_H
#define CPLATFORM_H

/// What cpuid (and xgetbv, for the register state the OS saves) says this CPU can run. All zero off x86-64.
typedef struct {
    int vendorAMD;
    int sse42, avx, fma, avx2;
    int avx512f, avx512dq, avx512bw, avx512vl, avx512bf16;
    int amxTile, amxBF16;
    /// The OS saves the YMM and ZMM registers (without it AVX and AVX-512 cannot be used whatever cpuid says).
    int osYMM, osZMM;
} ccpu_features;

ccpu_features ccpu_read(void);

/// Makes standard output line-buffered, so every printed line reaches a log file at once.
void cplatform_line_buffer_stdout(void);

#endif

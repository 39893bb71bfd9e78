#ifndef CMATMUL_H
#define CMATMUL_H

#include <stdint.h>

/* One row-major product C[m×n] = op(A)[m×k] · op(B)[k×n] + beta · C, planned once by oneDNN's matmul primitive
 * (its shape, strides and kernel fixed) and run many times on any buffers of that layout, single-threaded, with a
 * scratchpad the plan owns. */
typedef struct matmul_plan matmul_plan;

/* NULL when oneDNN cannot plan it; `error` (may be NULL) then holds a short reason. */
matmul_plan *matmul_plan_create(int transpose_a, int transpose_b, int64_t m, int64_t n, int64_t k, int64_t lda,
                                int64_t ldb, int64_t ldc, float beta, char error[128]);
/* Returns 0, or oneDNN's status when the run failed. */
int matmul_plan_run(matmul_plan *plan, const float *a, const float *b, float *c);
void matmul_plan_destroy(matmul_plan *plan);
/* The implementation oneDNN chose for the plan (for example "brg:avx512_core"). */
const char *matmul_plan_implementation(const matmul_plan *plan);

/* "oneDNN 2.6.3 avx512_core_bf16": the library and the instruction set it dispatches to on this CPU. */
const char *matmul_library_name(void);
/* Products too small for a library call to pay (m·n·k at most `matmul_small_limit`): a plain loop, each element's
 * sum in k order with a rounded multiply and add (no FMA), so its bits are the same on every CPU. */
enum { matmul_small_limit = 1024 };
void matmul_small(int transpose_a, int transpose_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* The instruction set oneDNN dispatches to on this CPU, within ONEDNN_MAX_CPU_ISA (for example "avx512_core_bf16";
 * upper-cased, the value ONEDNN_MAX_CPU_ISA takes to cap another process at it). */
const char *matmul_isa_name(void);
/* Makes the calling thread's oneDNN calls single-threaded (OpenMP's per-thread setting). */
void matmul_use_one_thread(void);

#endif

#include "cmatmul.h"

#include <dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void omp_set_num_threads(int);

struct matmul_plan {
    dnnl_primitive_t primitive;
    /* Each plan's own stream: a plan runs on one thread at a time, and oneDNN does not promise a stream is safe to
     * share between threads. */
    dnnl_stream_t stream;
    dnnl_memory_t a, b, c, scratchpad;
    void *scratchpad_bytes;
    const char *implementation;
};

/* One CPU engine for the process (an engine may be shared between threads). */
static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_status_t engine_status;

static void make_engine(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

static int fail(char error[128], const char *what, dnnl_status_t status) {
    if (error) snprintf(error, 128, "oneDNN %s failed (status %d)", what, (int)status);
    return 0;
}

/* A 2-D row-major matrix of `rows`×`cols` stored with leading dimension `ld`, read transposed or not. */
static dnnl_status_t describe(dnnl_memory_desc_t *desc, int transposed, int64_t rows, int64_t cols, int64_t ld) {
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {transposed ? 1 : ld, transposed ? ld : 1};
    return dnnl_memory_desc_init_by_strides(desc, 2, dims, dnnl_f32, strides);
}

matmul_plan *matmul_plan_create(int transpose_a, int transpose_b, int64_t m, int64_t n, int64_t k, int64_t lda,
                                int64_t ldb, int64_t ldc, float beta, char error[128]) {
    /* A primitive fixes its thread count when it is made (oneDNN reads OpenMP's then), not when it runs. */
    matmul_use_one_thread();
    pthread_once(&engine_once, make_engine);
    if (engine_status != dnnl_success) return fail(error, "engine", engine_status), NULL;
    matmul_plan *plan = calloc(1, sizeof *plan);
    if (!plan) return fail(error, "allocating a plan", dnnl_out_of_memory), NULL;
    dnnl_primitive_attr_t attributes = NULL;
    dnnl_post_ops_t post_ops = NULL;
    dnnl_primitive_desc_t descriptor = NULL;
    dnnl_memory_desc_t a, b, c;
    dnnl_matmul_desc_t matmul;
    dnnl_status_t s;
    const char *step = "describing the matrices";
    if ((s = describe(&a, transpose_a, m, k, lda)) || (s = describe(&b, transpose_b, k, n, ldb))
        || (s = describe(&c, 0, m, n, ldc)) || (s = dnnl_matmul_desc_init(&matmul, &a, &b, NULL, &c)))
        goto failed;
    step = "attributes";
    if ((s = dnnl_primitive_attr_create(&attributes))
        || (s = dnnl_primitive_attr_set_scratchpad_mode(attributes, dnnl_scratchpad_mode_user)))
        goto failed;
    if (beta != 0) {
        if ((s = dnnl_post_ops_create(&post_ops)) || (s = dnnl_post_ops_append_sum(post_ops, beta))
            || (s = dnnl_primitive_attr_set_post_ops(attributes, post_ops)))
            goto failed;
    }
    step = "planning the product";
    if ((s = dnnl_primitive_desc_create(&descriptor, &matmul, attributes, engine, NULL))) goto failed;
    if ((s = dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &plan->implementation)))
        goto failed;
    const dnnl_memory_desc_t *scratchpad = dnnl_primitive_desc_query_md(descriptor, dnnl_query_scratchpad_md, 0);
    size_t scratchpad_size = scratchpad ? dnnl_memory_desc_get_size(scratchpad) : 0;
    if (scratchpad_size && posix_memalign(&plan->scratchpad_bytes, 64, scratchpad_size)) {
        s = dnnl_out_of_memory;
        goto failed;
    }
    step = "creating the primitive";
    if ((s = dnnl_primitive_create(&plan->primitive, descriptor))
        || (s = dnnl_stream_create(&plan->stream, engine, dnnl_stream_default_flags))
        || (s = dnnl_memory_create(&plan->a, &a, engine, DNNL_MEMORY_NONE))
        || (s = dnnl_memory_create(&plan->b, &b, engine, DNNL_MEMORY_NONE))
        || (s = dnnl_memory_create(&plan->c, &c, engine, DNNL_MEMORY_NONE))
        || (scratchpad && (s = dnnl_memory_create(&plan->scratchpad, scratchpad, engine, plan->scratchpad_bytes))))
        goto failed;
    /* The implementation string lives in the descriptor; keep a copy that outlives it. */
    plan->implementation = strdup(plan->implementation ? plan->implementation : "unknown");
    if (!plan->implementation) {
        s = dnnl_out_of_memory;
        goto failed;
    }
    dnnl_primitive_desc_destroy(descriptor);
    dnnl_primitive_attr_destroy(attributes);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    return plan;
failed:
    fail(error, step, s);
    if (descriptor) dnnl_primitive_desc_destroy(descriptor);
    if (attributes) dnnl_primitive_attr_destroy(attributes);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    plan->implementation = NULL;
    matmul_plan_destroy(plan);
    return NULL;
}

int matmul_plan_run(matmul_plan *plan, const float *a, const float *b, float *c) {
    dnnl_status_t s;
    if ((s = dnnl_memory_set_data_handle(plan->a, (void *)a)) || (s = dnnl_memory_set_data_handle(plan->b, (void *)b))
        || (s = dnnl_memory_set_data_handle(plan->c, c)))
        return (int)s;
    dnnl_exec_arg_t arguments[4] = {
        {DNNL_ARG_SRC, plan->a}, {DNNL_ARG_WEIGHTS, plan->b}, {DNNL_ARG_DST, plan->c},
        {DNNL_ARG_SCRATCHPAD, plan->scratchpad}};
    return (int)dnnl_primitive_execute(plan->primitive, plan->stream, plan->scratchpad ? 4 : 3, arguments);
}

void matmul_plan_destroy(matmul_plan *plan) {
    if (!plan) return;
    if (plan->primitive) dnnl_primitive_destroy(plan->primitive);
    if (plan->stream) dnnl_stream_destroy(plan->stream);
    if (plan->a) dnnl_memory_destroy(plan->a);
    if (plan->b) dnnl_memory_destroy(plan->b);
    if (plan->c) dnnl_memory_destroy(plan->c);
    if (plan->scratchpad) dnnl_memory_destroy(plan->scratchpad);
    free(plan->scratchpad_bytes);
    free((void *)plan->implementation);
    free(plan);
}

const char *matmul_plan_implementation(const matmul_plan *plan) {
    return plan->implementation ? plan->implementation : "unknown";
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "generic";
    }
}

static char library_name[64];

static void describe_library(void) {
    const dnnl_version_t *version = dnnl_version();
    snprintf(library_name, sizeof library_name, "oneDNN %d.%d.%d %s", version->major, version->minor,
             version->patch, matmul_isa_name());
}

const char *matmul_isa_name(void) { return isa_name(dnnl_get_effective_cpu_isa()); }

const char *matmul_library_name(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, describe_library);
    return library_name;
}

/* The bits must not depend on the CPU: no contraction into FMA (SwiftPM builds this with clang; other compilers
 * take -ffp-contract=off, as scripts/bench-gemm.sh passes), and the compiler may not reorder a sum. */
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
void matmul_small(int transpose_a, int transpose_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            float sum = 0;
            for (int64_t p = 0; p < k; p++) {
                float x = transpose_a ? a[p * lda + i] : a[i * lda + p];
                float y = transpose_b ? b[j * ldb + p] : b[p * ldb + j];
                sum = sum + x * y;
            }
            c[i * ldc + j] = beta == 0 ? sum : sum + beta * c[i * ldc + j];
        }
    }
}

void matmul_use_one_thread(void) { omp_set_num_threads(1); }

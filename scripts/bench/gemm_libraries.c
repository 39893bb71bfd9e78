/* sgemm GFLOP/s of the GEMM libraries Debian packages, on one thread, on the products of one training step of a
 * model (as Sources/Engine/Model/Network.swift issues them, row-major): per layer the forward X·Wᵀ, the weight
 * gradient dZᵀ·X, and (all but the first layer) the input gradient dZ·W. Each library is loaded with dlopen, so
 * their cblas_sgemm symbols do not meet; the heap allocations a library makes during the timed steps are counted (the
 * allocator entry points are interposed here). "oneDNN matmul" is fast mode's own path: Sources/CMatmul's plans (one
 * oneDNN matmul primitive per product shape, made in the warm-up), compiled in. Run by scripts/bench-gemm.sh.
 *
 * usage: gemm_libraries MODEL ROWS SECONDS   (MODEL: mnist-mlp or wide) */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmatmul.h"

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);
typedef int (*dnnl_sgemm_fn)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                             int64_t, float, float *, int64_t);

/* Heap allocations while `counting` (glibc's own allocator underneath). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static int counting;
static long allocations;
void *malloc(size_t size) { allocations += counting; return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { allocations += counting; return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { allocations += counting; return __libc_realloc(p, size); }
void *aligned_alloc(size_t alignment, size_t size) { allocations += counting; return __libc_memalign(alignment, size); }
void *memalign(size_t alignment, size_t size) { allocations += counting; return __libc_memalign(alignment, size); }
int posix_memalign(void **p, size_t alignment, size_t size) {
    allocations += counting;
    *p = __libc_memalign(alignment, size);
    return *p ? 0 : 12;
}

static cblas_sgemm_fn cblas;
static dnnl_sgemm_fn dnnl;
static int use_plans, next_plan;
static matmul_plan *plans[16];

/* Row-major C[m×n] = op(A)·op(B) with beta 0, through whichever library is loaded. */
static void gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                 int ldc) {
    if (use_plans) {
        /* A step's products come in the same order every time: the i-th call is the i-th shape. */
        matmul_plan **plan = &plans[next_plan++];
        if (!*plan) *plan = matmul_plan_create(ta, tb, m, n, k, lda, ldb, ldc, 0, NULL);
        if (!*plan || matmul_plan_run(*plan, a, b, c)) {
            fprintf(stderr, "oneDNN could not plan or run a product\n");
            exit(1);
        }
    } else if (dnnl) dnnl(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1, a, lda, b, ldb, 0, c, ldc);
    else cblas(ROW_MAJOR, ta ? TRANS : NO_TRANS, tb ? TRANS : NO_TRANS, m, n, k, 1, a, lda, b, ldb, 0, c, ldc);
}

static int layers, widths[8], calls;
static float *x, *w, *c;

static void step(int rows) {
    next_plan = 0;
    for (int l = 0; l < layers; l++) {
        int in = widths[l], out = widths[l + 1];
        gemm(0, 1, rows, out, in, x, in, w, in, c, out);   /* Z = X·Wᵀ */
        gemm(1, 0, out, in, rows, x, out, x, in, c, in);   /* dW = dZᵀ·X */
        if (l > 0) gemm(0, 0, rows, in, out, x, out, w, in, c, in); /* dX = dZ·W */
        calls += l > 0 ? 3 : 2;
    }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s mnist-mlp|wide ROWS SECONDS\n", argv[0]);
        return 2;
    }
    static const int mnist[] = {784, 512, 256, 10}, wide[] = {1024, 1024, 512, 100};
    memcpy(widths, strcmp(argv[1], "wide") == 0 ? wide : mnist, sizeof mnist);
    layers = 3;
    int rows = atoi(argv[2]);
    double seconds = atof(argv[3]), flops = 0;
    for (int l = 0; l < layers; l++)
        flops += 2.0 * rows * widths[l] * widths[l + 1] * (l > 0 ? 3 : 2);
    size_t big = (size_t)rows * 1024 + 1024 * 1024;
    x = malloc(big * 4), w = malloc(big * 4), c = malloc(big * 4);
    for (size_t i = 0; i < big; i++) x[i] = (float)(i % 7) * 0.1f, w[i] = (float)(i % 5) * 0.1f, c[i] = 0;

    struct { const char *label, *path, *symbol; } libraries[] = {
        {"OpenBLAS", "libopenblas.so.0", "cblas_sgemm"},
        {"BLIS", "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4", "cblas_sgemm"},
        {"oneDNN", "libdnnl.so.2", "dnnl_sgemm"},
        {"oneDNN matmul", "libdnnl.so.2", "dnnl_primitive_execute"},
    };
    for (size_t i = 0; i < sizeof libraries / sizeof libraries[0]; i++) {
        void *handle = dlopen(libraries[i].path, RTLD_NOW | RTLD_LOCAL);
        void *symbol = handle ? dlsym(handle, libraries[i].symbol) : NULL;
        if (!symbol) {
            printf("{\"library\": \"%s\", \"error\": \"not installed\"}\n", libraries[i].label);
            continue;
        }
        cblas = NULL, dnnl = NULL, use_plans = 0;
        if (strcmp(libraries[i].symbol, "dnnl_sgemm") == 0) dnnl = (dnnl_sgemm_fn)symbol;
        else if (strcmp(libraries[i].symbol, "dnnl_primitive_execute") == 0) use_plans = 1;
        else cblas = (cblas_sgemm_fn)symbol;
        char detail[64] = "";
        if (i == 0) {
            char *(*corename)(void) = (char *(*)(void))dlsym(handle, "openblas_get_corename");
            void (*threads)(int) = (void (*)(int))dlsym(handle, "openblas_set_num_threads");
            if (threads) threads(1);
            if (corename) snprintf(detail, sizeof detail, "%s", corename());
        } else if (use_plans) {
            matmul_use_one_thread();
            snprintf(detail, sizeof detail, "%s", matmul_library_name() + strlen("oneDNN "));
        } else if (dnnl) {
            /* dnnl_version_t: major, minor, patch (ints), then strings; dnnl_cpu_isa_t as in dnnl_types.h. */
            const int *(*version)(void) = (const int *(*)(void))dlsym(handle, "dnnl_version");
            int (*isa)(void) = (int (*)(void))dlsym(handle, "dnnl_get_effective_cpu_isa");
            int v = isa ? isa() : -1;
            const char *name = v == 0x3e7 ? "avx512_core_amx" : v == 0xe7 ? "avx512_core_bf16"
                             : v == 0x67 ? "avx512_core_vnni" : v == 0x27 ? "avx512_core" : v == 0x407 ? "avx2_vnni"
                             : v == 0x7 ? "avx2" : "other";
            const int *n = version ? version() : NULL;
            if (n) snprintf(detail, sizeof detail, "%d.%d.%d %s", n[0], n[1], n[2], name);
        }
        for (int warm = 0; warm < 50; warm++) step(rows);
        int steps = 0;
        calls = 0;
        allocations = 0;
        counting = 1;
        double start = now(), elapsed;
        do {
            step(rows);
            steps++;
        } while ((elapsed = now() - start) < seconds);
        counting = 0;
        printf("{\"library\": \"%s\", \"kernel\": \"%s\", \"model\": \"%s\", \"rows\": %d, \"gflops\": %.2f, "
               "\"allocations_per_call\": %.2f}\n", libraries[i].label, detail, argv[1], rows,
               flops * steps / elapsed / 1e9, (double)allocations / calls);
        fflush(stdout);
    }
    return 0;
}

/* SGD's elementwise update (and the level both update loops run on), compiled for SSE2 (any x86-64), AVX2 and AVX-512
 * and chosen once at run time, so a step streams the parameter buffers as fast as the CPU can. */
#include "cupdate.h"

#include "cplatform.h"

/* a*b + c stays a rounded multiply then a rounded add: the bits must not depend on the instruction set. */
#pragma clang fp contract(off)

#define INLINE static inline __attribute__((always_inline))

/* Mode 0: no momentum; 1: the first step with momentum; 2: later steps with momentum. */
INLINE int sgd_body(float *restrict p, const float *restrict g, float *restrict v, size_t n, float scale, float lr,
                    float wd, float mu, float keep, float ahead, int mode) {
    /* A NaN or an infinity times zero is NaN, unequal to zero: one vector compare per element, OR-reduced. */
    int bad = 0;
    if (mode == 0) {
        for (size_t i = 0; i < n; i++) {
            bad |= g[i] * 0.0f != 0.0f;
            p[i] -= lr * (g[i] * scale + wd * p[i]);
        }
    } else if (mode == 1) {
        for (size_t i = 0; i < n; i++) {
            bad |= g[i] * 0.0f != 0.0f;
            float gi = g[i] * scale + wd * p[i];
            v[i] = gi;
            p[i] -= lr * (ahead != 0 ? gi + mu * gi : gi);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            bad |= g[i] * 0.0f != 0.0f;
            float gi = g[i] * scale + wd * p[i];
            float vi = mu * v[i] + keep * gi;
            /* ahead is 1 for Nesterov (g + mu·v), 0 otherwise (v): plain arithmetic, no branch in the loop. */
            v[i] = vi;
            p[i] -= lr * (ahead * (gi + mu * vi) + (1 - ahead) * vi);
        }
    }
    return !bad;
}

#define KERNEL(suffix, attributes)                                                                                 \
    attributes static int sgd_##suffix(float *p, const float *g, float *v, size_t n, float scale, float lr,         \
                                       float wd, float mu, float keep, float ahead, int mode) {                     \
        return sgd_body(p, g, v, n, scale, lr, wd, mu, keep, ahead, mode);                                           \
    }

KERNEL(base, )
#if defined(__x86_64__)
KERNEL(avx2, __attribute__((target("avx2"))))
KERNEL(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))))
#endif

/* The level both update loops run on (-1 until read). */
static int level = -1;

int cupdate_level(void) { return ccpu_level_get(&level); }

int cupdate_use_level(int wanted) { return ccpu_level_use(&level, wanted); }

int cupdate_sgd(float *parameters, const float *gradients, float *velocity, size_t count, float scale,
                float learning_rate, float weight_decay, float momentum, float dampening, int nesterov,
                int first_step) {
    int mode = momentum == 0 ? 0 : first_step ? 1 : 2;
    float keep = 1 - dampening, ahead = nesterov ? 1 : 0;
    switch (cupdate_level()) {
#if defined(__x86_64__)
    case 2: return sgd_avx512(parameters, gradients, velocity, count, scale, learning_rate, weight_decay, momentum,
                              keep, ahead, mode);
    case 1: return sgd_avx2(parameters, gradients, velocity, count, scale, learning_rate, weight_decay, momentum,
                            keep, ahead, mode);
#endif
    default: return sgd_base(parameters, gradients, velocity, count, scale, learning_rate, weight_decay, momentum,
                             keep, ahead, mode);
    }
}

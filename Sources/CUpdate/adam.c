/* Adam's elementwise update, built three ways like SGD's (sgd.c) and chosen at run time. */
#include "cupdate.h"

#include "cplatform.h"

/* a*b + c stays a rounded multiply then a rounded add: the bits must not depend on the instruction set. */
#pragma clang fp contract(off)

#define INLINE static inline __attribute__((always_inline))

/* A square root that never sets errno, so the loop vectorises (sqrtf's errno keeps it scalar); IEEE-exact either way. */
#if defined(__has_builtin) && __has_builtin(__builtin_elementwise_sqrt)
#define SQUARE_ROOT(x) __builtin_elementwise_sqrt(x)
#else
#define SQUARE_ROOT(x) __builtin_sqrtf(x)
#endif

INLINE int adam_body(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                     float *restrict v_max, size_t n, const cupdate_adam_step *s, int amsgrad) {
    const float scale = s->scale, l2 = s->l2, decay = s->decay, beta1 = s->beta1, beta2 = s->beta2, eps = s->eps;
    const float step_size = s->step_size, correction = s->inverse_correction2_root;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad |= g[i] * 0.0f != 0.0f;
        float w = p[i];
        float gi = g[i] * scale + l2 * w;
        /* First moment: running mean of the gradient; second: of its square. */
        float first = m[i];
        float mi = first + (1 - beta1) * (gi - first);
        float vi = beta2 * v[i] + (1 - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (amsgrad) {
            /* AMSGrad keeps the largest second moment seen, so steps never grow back. */
            vi = vi > v_max[i] ? vi : v_max[i];
            v_max[i] = vi;
        }
        /* Bias-corrected step: m̂ / (√v̂ + ε). */
        p[i] = w * decay - step_size * mi / (SQUARE_ROOT(vi) * correction + eps);
    }
    return !bad;
}

#define KERNEL(suffix, attributes)                                                                                 \
    attributes static int adam_##suffix(float *p, const float *g, float *m, float *v, float *v_max, size_t n,      \
                                        const cupdate_adam_step *s) {                                               \
        return s->amsgrad ? adam_body(p, g, m, v, v_max, n, s, 1) : adam_body(p, g, m, v, v_max, n, s, 0);         \
    }

KERNEL(base, )
#if defined(__x86_64__)
KERNEL(avx2, __attribute__((target("avx2"))))
KERNEL(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))))
#endif

int cupdate_adam(float *parameters, const float *gradients, float *first_moment, float *second_moment,
                 float *second_moment_max, size_t count, const cupdate_adam_step *step) {
    switch (cupdate_level()) {
#if defined(__x86_64__)
    case 2: return adam_avx512(parameters, gradients, first_moment, second_moment, second_moment_max, count, step);
    case 1: return adam_avx2(parameters, gradients, first_moment, second_moment, second_moment_max, count, step);
#endif
    default: return adam_base(parameters, gradients, first_moment, second_moment, second_moment_max, count, step);
    }
}

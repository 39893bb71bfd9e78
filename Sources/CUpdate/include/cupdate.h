#ifndef CUPDATE_H
#define CUPDATE_H

#include <stddef.h>

/// `torch.optim.SGD`'s update of elements [0, count), from the gradient `gradients[i] · scale`:
/// `momentum` 0 skips the velocity; `first_step` sets the velocity to the gradient; `nesterov` looks ahead along it.
/// Every element gets the same arithmetic, in the same order, on any instruction set (no contraction into FMA), so
/// the bits do not depend on the CPU or the split. Returns 1 when every gradient was finite; otherwise 0, and the
/// update of this range has been applied with the non-finite values (the run must stop as diverged).
int cupdate_sgd(float *parameters, const float *gradients, float *velocity, size_t count, float scale,
                float learning_rate, float weight_decay, float momentum, float dampening, int nesterov,
                int first_step);

/// One Adam step's scalars, computed once per step (the bias corrections in double precision, as PyTorch does).
typedef struct {
    float scale, l2, decay, beta1, beta2, eps, step_size, inverse_correction2_root;
    int amsgrad;
} cupdate_adam_step;

/// `torch.optim.Adam`'s (and, with `decay` ≠ 1 and `l2` 0, AdamW's) update of elements [0, count), from the gradient
/// `gradients[i] · scale`; `second_moment_max` is read and written only with `amsgrad`. The same arithmetic on every
/// instruction set; returns as `cupdate_sgd` does.
int cupdate_adam(float *parameters, const float *gradients, float *first_moment, float *second_moment,
                 float *second_moment_max, size_t count, const cupdate_adam_step *step);

/// The instruction set the updates run on: 0 SSE2, 1 AVX2, 2 AVX-512.
int cupdate_level(void);
/// Runs the updates on a lower instruction set than the best (tests compare them); 0 when `wanted` is beyond it.
int cupdate_use_level(int wanted);

#endif

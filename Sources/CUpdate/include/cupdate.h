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

/// The instruction set the updates run on: 0 SSE2, 1 AVX2, 2 AVX-512.
int cupdate_level(void);
/// Runs the updates on a lower instruction set than the best (tests compare them); 0 when `wanted` is beyond it.
int cupdate_use_level(int wanted);

#endif

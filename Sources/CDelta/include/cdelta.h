#ifndef CDELTA_H
#define CDELTA_H
#include <stddef.h>
#include <stdint.h>

/* The weights of one step as their change from the step before (see delta.c). */

/* The most bytes cdelta_encode writes for `count` weights. */
size_t cdelta_bound(size_t count);
/* Writes `next` as its change from `previous` (`count` words each) to `out` (cdelta_bound bytes); returns the bytes
 * written. */
size_t cdelta_encode(const uint32_t *previous, const uint32_t *next, size_t count, unsigned char *out);
/* Applies `length` bytes of change to `weights` in place; returns 1 if they are exactly one change of `count` words,
 * 0 if not (the weights are then part changed and must not be used). Reads nothing past `length`. */
int cdelta_apply(const unsigned char *in, size_t length, uint32_t *weights, size_t count);

#endif

/* The weights' wire form for a worker that holds the previous step's: each Float's bits XORed with its bits a step
 * before, in groups of four words, each group one control byte (two bits per word, the first word in the lowest:
 * the XOR's width, 0, 2, 3 or 4 bytes) then the XORs' low bytes, little-endian. A step moves few high bits (sign,
 * exponent, leading mantissa), so a typical step's weights take about 2.4 bytes of their 4; bit-exact either way. */
#include "cdelta.h"
#include <string.h>

static const unsigned widths[4] = {0, 2, 3, 4};
static const uint32_t masks[4] = {0, 0xFFFFu, 0xFFFFFFu, 0xFFFFFFFFu};

size_t cdelta_bound(size_t count) { return 4 * count + (count + 3) / 4 + 4; /* + 4: each store writes a word */ }

size_t cdelta_encode(const uint32_t *previous, const uint32_t *next, size_t count, unsigned char *out) {
    unsigned char *p = out;
    for (size_t start = 0; start < count; start += 4) {
        size_t n = count - start < 4 ? count - start : 4;
        unsigned char *control = p++;
        unsigned codes = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t x = previous[start + i] ^ next[start + i];
            unsigned code = x == 0 ? 0 : x <= 0xFFFFu ? 1 : x <= 0xFFFFFFu ? 2 : 3;
            codes |= code << (2 * i);
            memcpy(p, &x, 4); /* little-endian x86-64 and arm64: the low bytes first */
            p += widths[code];
        }
        *control = (unsigned char)codes;
    }
    return (size_t)(p - out);
}

int cdelta_apply(const unsigned char *in, size_t length, uint32_t *weights, size_t count) {
    const unsigned char *p = in, *end = in + length;
    for (size_t start = 0; start < count; start += 4) {
        size_t n = count - start < 4 ? count - start : 4;
        if (p >= end) return 0;
        unsigned codes = *p++;
        /* Words past the end of the weights must say "unchanged". */
        if (n < 4 && (codes >> (2 * n)) != 0) return 0;
        for (size_t i = 0; i < n; i++) {
            unsigned code = (codes >> (2 * i)) & 3;
            size_t width = widths[code];
            if ((size_t)(end - p) < width) return 0;
            uint32_t x = 0;
            if (end - p >= 4) {
                memcpy(&x, p, 4);
                x &= masks[code];
            } else {
                for (size_t b = 0; b < width; b++) x |= (uint32_t)p[b] << (8 * b);
            }
            weights[start + i] ^= x;
            p += width;
        }
    }
    return p == end;
}

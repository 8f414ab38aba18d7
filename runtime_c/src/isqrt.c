/*
 * Integer square root (LayerNorm's standard deviation), shared by both kernel variants (no DSP
 * twin).
 */
#include "mcuf.h"

uint32_t mcuf_isqrt_u64(uint64_t v)
{
    /* Digit-by-digit square root: no division, at most 32 iterations. */
    uint64_t root = 0;
    uint64_t bit = (uint64_t)1 << 62;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (v >= root + bit) {
            v -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)root; /* floor(sqrt(2^64 - 1)) = 2^32 - 1 */
}

/*
 * Fixed-point helpers (gemmlowp / TFLite semantics). dsp/fixedpoint.c replaces this file on cores
 * with the DSP extension; the integer square root is in isqrt.c.
 * Every operation is done in a type wide enough to be free of signed overflow.
 */
#include "mcuf.h"

int32_t mcuf_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX; /* the only product whose doubled high half does not fit */
    }
    /* |a * b| < 2^62: exact in int64, and so is the nudged sum. */
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    /* C99 division truncates toward zero, as gemmlowp requires; the quotient fits int32. */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

int32_t mcuf_rdbpot(int32_t x, int32_t exponent)
{
    if (exponent < 0) {
        exponent = 0;
    } else if (exponent > 31) {
        exponent = 31;
    }
    const uint32_t mask = (uint32_t)(((uint64_t)1 << exponent) - 1u);
    const uint32_t remainder = (uint32_t)x & mask;
    const uint32_t threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    /* exponent >= 1 whenever the +1 can fire, so (x >> exponent) + 1 <= 2^30. */
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t mcuf_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    if (shift > 30) {
        shift = 30;
    } else if (shift < -31) {
        shift = -31;
    }
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    /* |x| <= 2^31, left <= 30: the product is exact in int64; saturate it to int32. */
    int64_t scaled = (int64_t)x * ((int64_t)1 << left);
    if (scaled > INT32_MAX) {
        scaled = INT32_MAX;
    } else if (scaled < INT32_MIN) {
        scaled = INT32_MIN;
    }
    return mcuf_rdbpot(mcuf_srdhm((int32_t)scaled, multiplier), right);
}

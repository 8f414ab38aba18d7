/*
 * Fixed-point helpers (gemmlowp / TFLite semantics) for cores with the DSP extension (Cortex-M4,
 * M7, M33). Replaces ../fixedpoint.c when the project builds with KERNELS=optimized: the same
 * functions, bit-exact results, fewer instructions (the portable version is written for any C99
 * compiler: an int64 division and a saturating int64 shift).
 */
#include "mcuf_dsp.h"

/*
 * gemmlowp's truncating division of a*b + nudge by 2^31 is mul_round31's floor for both signs
 * (mcuf_dsp.h, Requantization); the result is in [-2^31 + 1, 2^31 - 1] except for
 * INT32_MIN * INT32_MIN, the one saturating product.
 */
static inline int32_t srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return mul_round31(a, b);
}

/* exponent in [0, 31]: round half away from zero. */
static inline int32_t rdbpot(int32_t x, int32_t exponent)
{
    return rdbpot_mask(x, exponent, (UINT32_C(1) << exponent) - 1u);
}

int32_t mcuf_srdhm(int32_t a, int32_t b)
{
    return srdhm(a, b);
}

int32_t mcuf_rdbpot(int32_t x, int32_t exponent)
{
    exponent = exponent < 0 ? 0 : (exponent > 31 ? 31 : exponent);
    return rdbpot(x, exponent);
}

int32_t mcuf_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    shift = shift > 30 ? 30 : (shift < -31 ? -31 : shift);
    if (shift > 0) {
        /* x * 2^shift saturated to int32, as the portable int64 product + clamp; no right shift. */
        return srdhm(sat_shl(x, shift, INT32_MAX >> shift), multiplier);
    }
    return rdbpot(srdhm(x, multiplier), -shift);
}

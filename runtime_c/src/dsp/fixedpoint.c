/*
 * Fixed-point helpers (gemmlowp / TFLite semantics) and the integer square root, for cores with
 * the DSP extension (Cortex-M4, M7, M33). Replaces ../fixedpoint.c when the project builds with
 * KERNELS=optimized: the same functions, bit-exact results, fewer instructions (the portable
 * version is written for any C99 compiler: an int64 division and a saturating int64 shift).
 */
#if !defined(__ARM_FEATURE_DSP)
#error "runtime/src/dsp/fixedpoint.c needs the Arm DSP extension (Cortex-M4/M7/M33): build with KERNELS=portable"
#endif

#include "mcuf.h"

/* floor((x * m + 2^30) / 2^31) for int32 x, m other than x == m == INT32_MIN (then it fits
 * int32): SMLAL into a 64-bit accumulator preset to 2^30, result = accumulator bits [62:31]. */
static inline int32_t mul_round31(int32_t x, int32_t m)
{
    uint32_t lo = UINT32_C(1) << 30;
    uint32_t hi = 0u;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(x), "r"(m));
    return (int32_t)((lo >> 31) | (hi << 1));
}

/*
 * gemmlowp divides a*b + nudge (2^30, or 1 - 2^30 when a*b < 0) by 2^31 truncating toward zero.
 * For a*b >= 0 that is floor((a*b + 2^30) / 2^31); for a*b < 0 the truncation is a ceiling:
 * ceil((a*b + 1 - 2^30) / 2^31) = floor((a*b + 1 - 2^30 + 2^31 - 1) / 2^31), the same floor.
 * So mul_round31 does both; the result is in [-2^31 + 1, 2^31 - 1] except for
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
    const uint32_t mask = (UINT32_C(1) << exponent) - 1u;
    const uint32_t threshold = (mask >> 1) + ((uint32_t)x >> 31);
    /* exponent >= 1 whenever the +1 can fire, so (x >> exponent) + 1 <= 2^30. */
    return (x >> exponent) + (((uint32_t)x & mask) > threshold ? 1 : 0);
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
        /* x * 2^shift saturated to int32, as the portable int64 product + clamp. */
        const int32_t lim = INT32_MAX >> shift; /* INT32_MIN >> shift == -lim - 1 */
        x = x > lim ? INT32_MAX : (x < -lim - 1 ? INT32_MIN : x * (INT32_C(1) << shift));
        return srdhm(x, multiplier);
    }
    return rdbpot(srdhm(x, multiplier), -shift);
}

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

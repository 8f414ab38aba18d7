/*
 * mcuformer C operator library: SIMD and fixed-point helpers shared by the DSP-extension twins
 * (runtime_c/src/dsp, Cortex-M4, M7, M33). Private: static inline only, included by the twins
 * alone; every helper computes exactly what the portable C it stands for computes.
 */
#ifndef MCUF_DSP_H
#define MCUF_DSP_H

#if !defined(__ARM_FEATURE_DSP) || !defined(__ARM_FEATURE_SIMD32)
#error "the runtime/src/dsp kernels need the Arm DSP extension (Cortex-M4/M7/M33): build with KERNELS=portable"
#endif

#include <arm_acle.h>
#include <stdint.h>
#include <string.h>

#include "mcuf.h"

/* ---------------------------------------------------------------------------------------------
 * 16-bit SIMD lanes.
 * ------------------------------------------------------------------------------------------- */
/* A word of 4 int8 from any address (unaligned LDR: Armv7-M / Armv8-M mainline, normal memory). */
static inline int32_t load_s8x4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Bytes 1 and 3 of x, sign-extended into two int16 lanes (gcc does not fold the rotation). */
static inline int32_t sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* sxtb16(x ror 8) + a, lane by lane: bytes 1 and 3 of x sign-extended, plus a's lanes (an input
 * offset folded into the extension; |in + offset| <= 255 fits a lane). */
static inline int32_t sxtab16_ror8(int32_t a, int32_t x)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

/* The last n % 4 (1..3) int8 values at p as one word, missing bytes 0: no read past the row. */
static inline int32_t load_tail(const int8_t *p, int32_t tail)
{
    const uint8_t *u = (const uint8_t *)p;
    if (tail == 1) {
        return (int32_t)u[0];
    }
    const uint32_t lo = (uint32_t)u[0] | ((uint32_t)u[1] << 8);
    return (int32_t)(tail == 2 ? lo : lo | ((uint32_t)u[2] << 16));
}

/* Two consecutive words of an expanded (int16 lane pair) row, and the pointer moved past them
 * (LDRD with post-increment: gcc emits two LDRs for the C form). */
static inline void load2_post(const int32_t **p, int32_t *lo, int32_t *hi)
{
    __asm__("ldrd %0, %1, [%2], #8" : "=r"(*lo), "=r"(*hi), "+r"(*p) : "m"(**p) : "memory");
}

/* One step of a 4-row x 1-column dot-product tile: the packed int8 word wv (4 values of one column)
 * against the next 4-input block of 4 rows expanded as int16 lane pairs at xb; a0..a3 (int32, one per
 * row) accumulate and xb moves past the block. Uses the caller's locals xb, a0, a1, a2, a3. Shared by
 * the tiled linear (4 tokens x 1 channel) and the tiled attention scores (4 queries x 1 key). */
#define MCUFI_DOT_4X1_STEP(wv)                                                                                     \
    do {                                                                                                           \
        const int32_t w02 = __sxtb16(wv);                                                                          \
        const int32_t w13 = sxtb16_ror8(wv);                                                                       \
        int32_t xl, xh;                                                                                            \
        load2_post(&xb, &xl, &xh);                                                                                 \
        a0 = __smlad(w13, xh, __smlad(w02, xl, a0));                                                               \
        load2_post(&xb, &xl, &xh);                                                                                 \
        a1 = __smlad(w13, xh, __smlad(w02, xl, a1));                                                               \
        load2_post(&xb, &xl, &xh);                                                                                 \
        a2 = __smlad(w13, xh, __smlad(w02, xl, a2));                                                               \
        load2_post(&xb, &xl, &xh);                                                                                 \
        a3 = __smlad(w13, xh, __smlad(w02, xl, a3));                                                               \
    } while (0)

/* v in both int16 lanes (v in [-32768, 32767]). */
static inline int32_t dup16(int32_t v)
{
    return (int32_t)(((uint32_t)v << 16) | ((uint32_t)v & 0xFFFFu));
}

/* Low lane of a, low lane of b: (a.lo, b.lo) as (low, high). */
static inline int32_t pkhbt(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* High lane of b, high lane of a: (b.hi, a.hi) as (low, high). */
static inline int32_t pkhtb(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* ---------------------------------------------------------------------------------------------
 * 64-bit products without int64 arithmetic in C.
 * ------------------------------------------------------------------------------------------- */
/* The 64-bit accumulator hi:lo += a * b, signed (SMLAL). */
static inline void smlal(uint32_t *lo, uint32_t *hi, int32_t a, int32_t b)
{
    __asm__("smlal %0, %1, %2, %3" : "+r"(*lo), "+r"(*hi) : "r"(a), "r"(b));
}

/* floor((x * m + 2^30) / 2^31) for int32 x, m other than x == m == INT32_MIN (then it fits
 * int32): SMLAL into a 64-bit accumulator preset to 2^30, result = accumulator bits [62:31]. */
static inline int32_t mul_round31(int32_t x, int32_t m)
{
    uint32_t lo = UINT32_C(1) << 30;
    uint32_t hi = 0u;
    smlal(&lo, &hi, x, m);
    return (int32_t)((lo >> 31) | (hi << 1));
}

/* ---------------------------------------------------------------------------------------------
 * Requantization (mcuf_requantize's arithmetic for checked parameters, mcuf.h).
 *   - left shift: x * 2^left saturated to int32, as the portable int64 product + clamp.
 *   - srdhm: gemmlowp divides x*m + nudge (2^30, or 1 - 2^30 when x*m < 0) by 2^31 truncating
 *     toward zero. For x*m >= 0 that is floor((x*m + 2^30) / 2^31); for x*m < 0 the truncation
 *     is a ceiling, ceil((x*m + 1 - 2^30) / 2^31) = floor((x*m + 1 - 2^30 + 2^31 - 1) / 2^31),
 *     the same floor: mul_round31. A multiplier m >= 0 rules out the one saturating product,
 *     INT32_MIN * INT32_MIN.
 *   - rdbpot: round half away from zero, the portable mask/threshold form.
 * ------------------------------------------------------------------------------------------- */
/* x * 2^left saturated to int32; left in [0, 30], lim = INT32_MAX >> left = 2^(31-left) - 1
 * (INT32_MIN >> left == -lim - 1). */
static inline int32_t sat_shl(int32_t x, int32_t left, int32_t lim)
{
    return x > lim ? INT32_MAX : (x < -lim - 1 ? INT32_MIN : x * (INT32_C(1) << left));
}

/* mcuf_rdbpot(y, right) for right in [0, 31], mask = 2^right - 1. right >= 1 whenever the +1 can
 * fire, so (y >> right) + 1 <= 2^30. */
static inline int32_t rdbpot_mask(int32_t y, int32_t right, uint32_t mask)
{
    const uint32_t threshold = (mask >> 1) + ((uint32_t)y >> 31);
    return (y >> right) + (((uint32_t)y & mask) > threshold ? 1 : 0);
}

/* mcuf_requantize(x, m, s) for checked parameters: m in {0} U [2^30, 2^31), s in [-31, 30]. */
static inline int32_t requantize(int32_t x, int32_t m, int32_t s)
{
    int32_t right = -s;
    if (s > 0) {
        x = sat_shl(x, s, INT32_MAX >> s);
        right = 0;
    }
    return rdbpot_mask(mul_round31(x, m), right, (UINT32_C(1) << right) - 1u);
}

/* The same for one checked (multiplier, shift) applied many times: constants computed once. */
typedef struct {
    int32_t m;
    int32_t left;  /* [0, 30] */
    int32_t lim;   /* INT32_MAX >> left: |x| beyond it saturates the left shift */
    int32_t right; /* [0, 31] */
    uint32_t mask; /* 2^right - 1 */
} requant_k;

static inline requant_k requant_make(const mcuf_requant *r)
{
    requant_k q;
    q.m = r->multiplier;
    q.left = r->shift > 0 ? r->shift : 0;
    q.lim = INT32_MAX >> q.left;
    q.right = r->shift > 0 ? 0 : -r->shift;
    q.mask = (UINT32_C(1) << q.right) - 1u;
    return q;
}

static inline int32_t requant_apply(const requant_k *q, int32_t x)
{
    if (q->left > 0) {
        x = sat_shl(x, q->left, q->lim);
    }
    return rdbpot_mask(mul_round31(x, q->m), q->right, q->mask);
}

/* ---------------------------------------------------------------------------------------------
 * Output stage (mcufi_out_s8): SSAT of r to [-256, 255] keeps r + offset in range (offset in
 * [-128, 127]) and the result unchanged.
 * ------------------------------------------------------------------------------------------- */
/* clamp(r + offset, -128, 127). */
static inline int8_t out_s8(int32_t r, int32_t offset)
{
    return (int8_t)__ssat(__ssat(r, 9) + offset, 8);
}

/* clamp(r + offset, lo, hi) for -128 <= lo <= hi <= 127. */
static inline int8_t out_s8_act(int32_t r, int32_t offset, int32_t lo, int32_t hi)
{
    r = __ssat(r, 9) + offset;
    r = r > hi ? hi : r;
    return (int8_t)(r < lo ? lo : r);
}

/* ---------------------------------------------------------------------------------------------
 * The short output stage. When |x| < 2^30 (x: the sum, bias included), the shift s is in
 * [-30, -1] (no left shift) and the output is clamped to the whole int8 range, mcuf_requantize plus
 * the output offset and clamp is, exactly:
 *   y = SMMULR(2x, m) = floor((2x*m + 2^31) / 2^32) = floor((x*m + 2^30) / 2^31) = mul_round31
 *   v = (y + h + (y >> 31)) >> right,  h = 2^(right-1): rdbpot's round half away from zero
 *       (y >= 0: floor((y + h) / 2^r); y < 0: floor((y + h - 1) / 2^r)); |y| <= 2^30, h <= 2^29
 *   out = SSAT8(v + offset)            (= SSAT8(SSAT9(v) + offset) for |v| < 2^30)
 * ------------------------------------------------------------------------------------------- */
static inline int32_t smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* Whether shift s allows the short stage. */
static inline int short_shift_ok(int32_t s)
{
    return (uint32_t)(s + 30) <= 29u;
}

/* a + SMMULR(x, m) = floor((a * 2^32 + x * m + 2^31) / 2^32), in one instruction (SMMLAR). */
static inline int32_t smmlar(int32_t x, int32_t m, int32_t a)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(x), "r"(m), "r"(a));
    return r;
}

/* The short stage of one sum (|sum + b2 / 2| < 2^30): b2 = 2 * bias, h = 2^(right - 1),
 * right = -s in [1, 30]. With x = 2 * (sum + bias) and y = SMMULR(x, m): y + h is one SMMLAR, and
 * the rounding's -[y < 0] is -[x < 0]: m >= 0 gives y < 0 only for x < 0, and for x < 0 with y = 0
 * both forms give 0 ((h - 1) >> right = h >> right = 0). */
static inline int8_t short_out(int32_t sum, int32_t b2, int32_t m, int32_t h, int32_t right, int32_t off)
{
    const int32_t x = (int32_t)((uint32_t)sum << 1) + b2;
    const int32_t yh = smmlar(x, m, h);
    return (int8_t)__ssat(((yh - (int32_t)((uint32_t)x >> 31)) >> right) + off, 8);
}

#endif /* MCUF_DSP_H */

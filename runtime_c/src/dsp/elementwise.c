/*
 * TFLite ADD int8 for cores with the DSP extension (Cortex-M4, M7, M33). Replaces ../elementwise.c
 * when the project builds with KERNELS=optimized: the same function, the same checks
 * (mcufi_add_check), bit-exact outputs. The three requantizations run inline with their per-call
 * constants hoisted out of the loop (requant_k, mcuf_dsp.h); with right shifts only (the common
 * case) through SMMULR and a rounding add (add_right_shifts).
 */
#include <stddef.h>

#include "mcuf_dsp.h"
#include "mcuf_internal.h"

/* The common parameters (every shift a right shift of 1..31, left_shift <= 21; TFLite's left_shift
 * is 20), with bounds that make two steps exact in fewer instructions:
 *   - |x| = |(v + offset) << left_shift| <= 255 * 2^21 < 2^29, and each requantized input
 *     |s| <= |x| (multiplier < 2^31, rdbpot shrinks), so |s1 + s2| < 2^30: the sum cannot
 *     saturate, and 2x fits int32 for x = the inputs and the sum;
 *   - mul_round31(x, m) = floor((x*m + 2^30) / 2^31) = floor((2x*m + 2^31) / 2^32) = SMMULR(2x, m);
 *   - rdbpot(y, r) (round half away from zero) = (y + 2^(r-1) - [y < 0]) >> r for r >= 1 (|y| < 2^30
 *     and 2^(r-1) <= 2^30: nothing wraps).
 */
#define ADD_FAST_MAX_SHIFT 21

static inline int32_t smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* rdbpot(y, right) for |y| < 2^30, right in [1, 31], half = 2^(right-1). */
static inline int32_t rdbpot_small(int32_t y, int32_t right, int32_t half)
{
    return (y + half - (int32_t)((uint32_t)y >> 31)) >> right;
}

static int add_fast_ok(const mcuf_add_params *p)
{
    const int32_t s1 = p->input1.shift;
    const int32_t s2 = p->input2.shift;
    const int32_t so = p->output.shift;
    return s1 <= -1 && s2 <= -1 && so <= -1 && p->left_shift <= ADD_FAST_MAX_SHIFT;
}

/* The element loop for add_fast_ok parameters; full: act_min = -128 and act_max = 127 (no clamp
 * beyond int8). */
#define ADD_FAST_LOOP(OUT)                                                                                         \
    for (int32_t i = 0; i < n; i++) {                                                                              \
        const int32_t s1 = rdbpot_small(smmulr((int32_t)a[i] * scale2 + off1, m1), r1, h1);                       \
        const int32_t s2 = rdbpot_small(smmulr((int32_t)b[i] * scale2 + off2, m2), r2, h2);                       \
        const int32_t r = rdbpot_small(smmulr((s1 + s2) * 2, mo), ro, ho);                                        \
        output[i] = (OUT); /* out may alias a or b: both read */                                                   \
    }

static void add_right_shifts(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *output)
{
    const int32_t m1 = p->input1.multiplier;
    const int32_t m2 = p->input2.multiplier;
    const int32_t mo = p->output.multiplier;
    const int32_t r1 = -p->input1.shift;
    const int32_t r2 = -p->input2.shift;
    const int32_t ro = -p->output.shift;
    const int32_t h1 = INT32_C(1) << (r1 - 1);
    const int32_t h2 = INT32_C(1) << (r2 - 1);
    const int32_t ho = INT32_C(1) << (ro - 1);
    /* 2x = (v + offset) * 2^(left_shift + 1) = v * scale2 + offset * scale2 (|2x| < 2^30) */
    const int32_t scale2 = INT32_C(1) << (p->left_shift + 1);
    const int32_t off1 = p->input1_offset * scale2;
    const int32_t off2 = p->input2_offset * scale2;
    const int32_t out_off = p->output_offset;
    const int32_t lo = p->act_min;
    const int32_t hi = p->act_max;
    if (lo == -128 && hi == 127) {
        ADD_FAST_LOOP(out_s8(r, out_off))
    } else {
        ADD_FAST_LOOP(out_s8_act(r, out_off, lo, hi))
    }
}

mcuf_status mcuf_add_s8(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *output)
{
    const mcuf_status st = mcufi_add_check(p, n, a, b, output);
    if (st != MCUF_OK) {
        return st;
    }
    const requant_k q1 = requant_make(&p->input1);
    const requant_k q2 = requant_make(&p->input2);
    const requant_k qo = requant_make(&p->output);
    if (add_fast_ok(p)) {
        add_right_shifts(p, n, a, b, output);
        return MCUF_OK;
    }
    const int32_t scale = INT32_C(1) << p->left_shift;
    for (int32_t i = 0; i < n; i++) {
        /* |a + offset| <= 255 and left_shift <= 23: the shifted values fit int32. */
        const int32_t s1 = requant_apply(&q1, ((int32_t)a[i] + p->input1_offset) * scale);
        const int32_t s2 = requant_apply(&q2, ((int32_t)b[i] + p->input2_offset) * scale);
        /* __qadd: the portable int64 sum saturated to int32. */
        const int32_t r = requant_apply(&qo, __qadd(s1, s2));
        output[i] = out_s8_act(r, p->output_offset, p->act_min, p->act_max); /* out may alias a or b: both read */
    }
    return MCUF_OK;
}

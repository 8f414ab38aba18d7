/*
 * Elementwise kernels, table lookup and TFLite ADD int8, for cores with the DSP extension
 * (Cortex-M4, M7, M33). Replaces ../elementwise.c when the project builds with
 * KERNELS=optimized: the same functions, the same checks, bit-exact outputs. ADD's three
 * requantizations run inline with their per-call constants hoisted out of the loop.
 */
#if !defined(__ARM_FEATURE_DSP)
#error "runtime/src/dsp/elementwise.c needs the Arm DSP extension (Cortex-M4/M7/M33): build with KERNELS=portable"
#endif

#include <arm_acle.h>
#include <stddef.h>

#include "mcuf.h"

mcuf_status mcuf_lut_s8(const int8_t *table, int32_t n, const int8_t *input, int8_t *output)
{
    if (table == NULL || n < 0 || (n > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    const int8_t *centre = table + 128; /* indexed by the int8 value itself */
    for (int32_t i = 0; i < n; i++) {
        output[i] = centre[input[i]];
    }
    return MCUF_OK;
}

/* floor((x * m + 2^30) / 2^31) for int32 x, m other than x == m == INT32_MIN (then it fits
 * int32): SMLAL into a 64-bit accumulator preset to 2^30, result = accumulator bits [62:31]. */
static inline int32_t mul_round31(int32_t x, int32_t m)
{
    uint32_t lo = UINT32_C(1) << 30;
    uint32_t hi = 0u;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(x), "r"(m));
    return (int32_t)((lo >> 31) | (hi << 1));
}

/* mcuf_requantize for one checked (multiplier, shift): m in {0} U [2^30, 2^31), s in [-31, 30]. */
typedef struct {
    int32_t m;
    int32_t left;   /* [0, 30] */
    int32_t lim;    /* INT32_MAX >> left: |x| beyond it saturates the left shift */
    int32_t right;  /* [0, 31] */
    uint32_t mask;  /* 2^right - 1 */
} requant_k;

static requant_k requant_make(const mcuf_requant *r)
{
    requant_k q;
    q.m = r->multiplier;
    q.left = r->shift > 0 ? r->shift : 0;
    q.lim = INT32_MAX >> q.left;
    q.right = r->shift > 0 ? 0 : -r->shift;
    q.mask = (UINT32_C(1) << q.right) - 1u;
    return q;
}

/*
 * Left shift saturating as the portable int64 product + clamp (INT32_MIN >> left == -lim - 1);
 * srdhm: gemmlowp's truncating division of x*m + nudge by 2^31 equals floor((x*m + 2^30) / 2^31)
 * for both signs (dsp/linear.c; m >= 0: no saturating product); rdbpot rounds half away from zero.
 */
static inline int32_t requant_apply(const requant_k *q, int32_t x)
{
    if (q->left > 0) {
        x = x > q->lim ? INT32_MAX : (x < -q->lim - 1 ? INT32_MIN : x * (INT32_C(1) << q->left));
    }
    const int32_t y = mul_round31(x, q->m);
    const uint32_t threshold = (q->mask >> 1) + ((uint32_t)y >> 31);
    return (y >> q->right) + (((uint32_t)y & q->mask) > threshold ? 1 : 0);
}

static int requant_ok(const mcuf_requant *r)
{
    return (r->multiplier == 0 || r->multiplier >= (INT32_C(1) << 30)) && r->shift >= -31 && r->shift <= 30;
}

mcuf_status mcuf_add_s8(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *output)
{
    if (p == NULL || n < 0 || (n > 0 && (a == NULL || b == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    if (p->input1_offset < -127 || p->input1_offset > 128 || p->input2_offset < -127 || p->input2_offset > 128 ||
        p->output_offset < -128 || p->output_offset > 127) {
        return MCUF_ERR_ARG;
    }
    if (p->left_shift < 0 || p->left_shift > 23 || p->act_min < -128 || p->act_max > 127 ||
        p->act_min > p->act_max) {
        return MCUF_ERR_ARG;
    }
    if (!requant_ok(&p->input1) || !requant_ok(&p->input2) || !requant_ok(&p->output)) {
        return MCUF_ERR_ARG;
    }
    const requant_k q1 = requant_make(&p->input1);
    const requant_k q2 = requant_make(&p->input2);
    const requant_k qo = requant_make(&p->output);
    const int32_t scale = INT32_C(1) << p->left_shift;
    for (int32_t i = 0; i < n; i++) {
        /* |a + offset| <= 255 and left_shift <= 23: the shifted values fit int32. */
        const int32_t s1 = requant_apply(&q1, ((int32_t)a[i] + p->input1_offset) * scale);
        const int32_t s2 = requant_apply(&q2, ((int32_t)b[i] + p->input2_offset) * scale);
        /* SSAT to [-256, 255] keeps r + offset in range and the result unchanged (as the portable). */
        int32_t r = __ssat(requant_apply(&qo, __qadd(s1, s2)), 9) + p->output_offset;
        r = r > p->act_max ? p->act_max : r;
        output[i] = (int8_t)(r < p->act_min ? p->act_min : r); /* out may alias a or b: both read */
    }
    return MCUF_OK;
}

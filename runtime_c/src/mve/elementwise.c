/*
 * TFLite ADD int8 with Helium (MVE) on the Cortex-M55. Replaces ../elementwise.c (and
 * ../dsp/elementwise.c) with KERNELS=optimized on an M55: the same function, the same checks
 * (mcufi_add_check), bit-exact outputs.
 *
 * 4 elements per step on int32 lanes (the tail predicated, VCTP): VLDRB.S32 widens the inputs,
 * (v + offset) << left_shift (|v + offset| <= 255, left_shift <= 23: fits int32), requantize_x4
 * of mcuf_mve.h (the scalar requantize's integers for every checked multiplier and shift) for
 * each input, their saturating sum (VQADD = the portable int64 sum clamped to int32), the output's
 * requantize_x4 and out_s8_x4 (offset, activation range), VSTRB.32 narrows to bytes. The output
 * may be a or b: each step loads both inputs before it stores. When the output's shift is a right
 * shift and the inputs' are right shifts or 0 (the models' adds: input multiplier 0.5 = (2^30, 0))
 * the groups of 4 run unpredicated (add_groups), the rest (and every element otherwise) through the
 * general predicated steps.
 */
#include <stdbool.h>
#include <stddef.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

typedef struct {
    int32_t ls, o1, o2, m1, s1, m2, s2, mo, so, off, lo, hi;
} add_consts;

/* The first `full` (a multiple of 4) elements, unpredicated, when no shift is a left shift and the
 * output's is a right shift: an input with shift 0 (z1, z2: TFLite's input multiplier 0.5 is
 * (2^30, 0)) is just VQRDMULH (requantize_x4 with left = right = 0), the others requantize_x4_r. */
static inline __attribute__((always_inline)) void add_groups(const add_consts *c, int32_t full, const int8_t *a,
                                                              const int8_t *b, int8_t *output, bool z1, bool z2)
{
    /* (v + o) << ls = v * 2^ls + (o << ls) in one VMLAS (|v + o| <= 255, ls <= 23: no wrap) */
    const int32x4_t pow2 = vdupq_n_s32(INT32_C(1) << c->ls);
    const int32_t c1 = c->o1 * (INT32_C(1) << c->ls);
    const int32_t c2 = c->o2 * (INT32_C(1) << c->ls);
    for (int32_t i = 0; i < full; i += 4) {
        const int32x4_t x1 = vmlasq_n_s32(vldrbq_s32(a + i), pow2, c1);
        const int32x4_t x2 = vmlasq_n_s32(vldrbq_s32(b + i), pow2, c2);
        const int32x4_t r1 = z1 ? vqrdmulhq_n_s32(x1, c->m1) : requantize_x4_r(x1, c->m1, c->s1);
        const int32x4_t r2 = z2 ? vqrdmulhq_n_s32(x2, c->m2) : requantize_x4_r(x2, c->m2, c->s2);
        const int32x4_t r = requantize_x4_r(vqaddq_s32(r1, r2), c->mo, c->so);
        vstrbq_s32(output + i, out_s8_x4(r, c->off, c->lo, c->hi)); /* output may be a or b: read above */
    }
}

mcuf_status mcuf_add_s8(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *output)
{
    const mcuf_status st = mcufi_add_check(p, n, a, b, output);
    if (st != MCUF_OK) {
        return st;
    }
    const int32_t ls = p->left_shift;
    const int32_t o1 = p->input1_offset;
    const int32_t o2 = p->input2_offset;
    const int32_t m1 = p->input1.multiplier;
    const int32_t s1 = p->input1.shift;
    const int32_t m2 = p->input2.multiplier;
    const int32_t s2 = p->input2.shift;
    const int32_t mo = p->output.multiplier;
    const int32_t so = p->output.shift;
    const int32_t off = p->output_offset;
    const int32_t lo = p->act_min;
    const int32_t hi = p->act_max;
    int32_t i = 0;
    if (so <= -1 && s1 <= 0 && s2 <= 0) { /* the models' adds (add_groups) */
        const add_consts c = {ls, o1, o2, m1, s1, m2, s2, mo, so, off, lo, hi};
        const int32_t full = n & ~3;
        if (s1 == 0 && s2 == 0) {
            add_groups(&c, full, a, b, output, true, true);
        } else if (s1 == 0) {
            add_groups(&c, full, a, b, output, true, false);
        } else if (s2 == 0) {
            add_groups(&c, full, a, b, output, false, true);
        } else {
            add_groups(&c, full, a, b, output, false, false);
        }
        i = full;
    }
    for (; i < n; i += 4) {
        const mve_pred16_t pred = vctp32q((uint32_t)(n - i));
        const int32x4_t x1 = vshlq_r_s32(vaddq_n_s32(vldrbq_z_s32(a + i, pred), o1), ls);
        const int32x4_t x2 = vshlq_r_s32(vaddq_n_s32(vldrbq_z_s32(b + i, pred), o2), ls);
        const int32x4_t sum = vqaddq_s32(requantize_x4(x1, m1, s1), requantize_x4(x2, m2, s2));
        const int32x4_t r = out_s8_x4(requantize_x4(sum, mo, so), off, lo, hi);
        vstrbq_p_s32(output + i, r, pred); /* output may be a or b: both read above */
    }
    return MCUF_OK;
}

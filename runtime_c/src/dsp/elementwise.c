/*
 * TFLite ADD int8 for cores with the DSP extension (Cortex-M4, M7, M33). Replaces ../elementwise.c
 * when the project builds with KERNELS=optimized: the same function, the same checks
 * (mcufi_add_check), bit-exact outputs. The three requantizations run inline with their per-call
 * constants hoisted out of the loop (requant_k, mcuf_dsp.h).
 */
#include <stddef.h>

#include "mcuf_dsp.h"
#include "mcuf_internal.h"

mcuf_status mcuf_add_s8(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *output)
{
    const mcuf_status st = mcufi_add_check(p, n, a, b, output);
    if (st != MCUF_OK) {
        return st;
    }
    const requant_k q1 = requant_make(&p->input1);
    const requant_k q2 = requant_make(&p->input2);
    const requant_k qo = requant_make(&p->output);
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

/*
 * TFLite ADD int8, elementwise. dsp/elementwise.c replaces this file on cores with the DSP
 * extension; the parameter checks (mcufi_add_check) are shared in mcuf_internal.h. The table
 * lookup (GELU) is in lut.c.
 */
#include <stddef.h>

#include "mcuf_internal.h"

mcuf_status mcuf_add_s8(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *output)
{
    const mcuf_status st = mcufi_add_check(p, n, a, b, output);
    if (st != MCUF_OK) {
        return st;
    }
    for (int32_t i = 0; i < n; i++) {
        /* |a + offset| <= 255 and left_shift <= 23: the shifted values fit int32. */
        const int32_t x1 = ((int32_t)a[i] + p->input1_offset) * (INT32_C(1) << p->left_shift);
        const int32_t x2 = ((int32_t)b[i] + p->input2_offset) * (INT32_C(1) << p->left_shift);
        const int32_t s1 = mcuf_requantize(x1, p->input1.multiplier, p->input1.shift);
        const int32_t s2 = mcuf_requantize(x2, p->input2.multiplier, p->input2.shift);
        int64_t sum = (int64_t)s1 + s2;
        sum = sum > INT32_MAX ? INT32_MAX : (sum < INT32_MIN ? INT32_MIN : sum);
        const int32_t r = mcuf_requantize((int32_t)sum, p->output.multiplier, p->output.shift);
        output[i] = mcufi_out_s8(r, p->output_offset, p->act_min, p->act_max); /* a[i], b[i] already read */
    }
    return MCUF_OK;
}

/*
 * Elementwise kernels: table lookup (GELU and any int8 -> int8 function) and TFLite ADD int8.
 */
#include <stddef.h>

#include "mcuf.h"

mcuf_status mcuf_lut_s8(const int8_t *table, int32_t n, const int8_t *input, int8_t *output)
{
    if (table == NULL || n < 0 || (n > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    for (int32_t i = 0; i < n; i++) {
        output[i] = table[(int32_t)input[i] + 128];
    }
    return MCUF_OK;
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
    for (int32_t i = 0; i < n; i++) {
        /* |a + offset| <= 255 and left_shift <= 23: the shifted values fit int32. */
        const int32_t x1 = ((int32_t)a[i] + p->input1_offset) * (INT32_C(1) << p->left_shift);
        const int32_t x2 = ((int32_t)b[i] + p->input2_offset) * (INT32_C(1) << p->left_shift);
        const int32_t s1 = mcuf_requantize(x1, p->input1.multiplier, p->input1.shift);
        const int32_t s2 = mcuf_requantize(x2, p->input2.multiplier, p->input2.shift);
        int64_t sum = (int64_t)s1 + s2;
        sum = sum > INT32_MAX ? INT32_MAX : (sum < INT32_MIN ? INT32_MIN : sum);
        int32_t r = mcuf_requantize((int32_t)sum, p->output.multiplier, p->output.shift);
        r = r > 255 ? 255 : (r < -256 ? -256 : r); /* keeps r + offset in range; result unchanged */
        r += p->output_offset;
        output[i] = (int8_t)(r > p->act_max ? p->act_max : (r < p->act_min ? p->act_min : r));
    }
    return MCUF_OK;
}

/*
 * Integer LayerNorm (I-BERT style): integer mean and variance, integer square root, Q(K)
 * normalised values, gamma/beta folded by the compiler. See mcuf.h for the exact arithmetic.
 * dsp/layernorm.c replaces this file on cores with the DSP extension; the parameter checks
 * (mcufi_layernorm_check) are shared in mcuf_internal.h.
 */
#include <stddef.h>

#include "mcuf_internal.h"

mcuf_status mcuf_layernorm_s8(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_layernorm_check(p, input, output);
    if (st != MCUF_OK) {
        return st;
    }
    const int32_t dim = p->dim;
    const int32_t in_off = p->input_offset;

    /* |x_i| <= 255, dim <= 1024: |S| <= 261120. */
    int32_t sum = 0;
    for (int32_t i = 0; i < dim; i++) {
        sum += (int32_t)input[i] + in_off;
    }
    /* |d_i| <= 2 * 255 * 1024 < 2^19, d_i^2 < 2^38, V < 2^48. */
    uint64_t var = 0;
    for (int32_t i = 0; i < dim; i++) {
        const int32_t d = ((int32_t)input[i] + in_off) * dim - sum;
        var += (uint64_t)((int64_t)d * d);
    }
    uint32_t sigma = mcuf_isqrt_u64(var / (uint64_t)dim); /* dim * std, < 2^18 */
    if (sigma < 1u) {
        sigma = 1u;
    }
    const uint32_t inv = (UINT32_C(1) << 30) / sigma; /* <= 2^30 */

    const int32_t k = MCUF_LN_NORM_BITS;
    const int64_t round = (int64_t)1 << (29 - k);
    for (int32_t i = 0; i < dim; i++) {
        const int32_t d = ((int32_t)input[i] + in_off) * dim - sum;
        /* |d * inv| < 2^49; n is arithmetic-shifted (floor), |n| < 2^29. */
        const int64_t n = ((int64_t)d * (int64_t)inv + round) >> (30 - k);
        /* |n * gamma| < 2^60: exact in int64, then saturated. */
        int64_t acc = n * (int64_t)p->gamma[i] + (int64_t)p->beta[i];
        if (acc > INT32_MAX) {
            acc = INT32_MAX;
        } else if (acc < INT32_MIN) {
            acc = INT32_MIN;
        }
        const int32_t r = mcuf_requantize((int32_t)acc, p->out.multiplier, p->out.shift);
        output[i] = mcufi_out_s8(r, p->output_offset, -128, 127); /* in place: input[i] already read */
    }
    return MCUF_OK;
}

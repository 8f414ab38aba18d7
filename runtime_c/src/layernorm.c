/*
 * Integer LayerNorm (I-BERT style): integer mean and variance, the model's epsilon in Q(2F),
 * integer square root, Q(K) normalised values, gamma/beta folded by the compiler. See mcuf.h for
 * the exact arithmetic and its bounds. dsp/layernorm.c replaces this file on cores with the DSP
 * extension; the parameter checks (mcufi_layernorm_check) and the scale (mcufi_layernorm_inv)
 * are shared in mcuf_internal.h.
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

    int32_t sum = 0; /* |S| <= 255 * 1024 < 2^18 */
    int32_t sq = 0;  /* Q <= 255^2 * 1024 < 2^26 */
    for (int32_t i = 0; i < dim; i++) {
        const int32_t x = (int32_t)input[i] + in_off;
        sum += x;
        sq += x * x;
    }
    const int32_t inv = mcufi_layernorm_inv(p, sum, sq);

    const int32_t k = MCUF_LN_NORM_BITS;
    const int64_t round = (int64_t)1 << (29 - k);
    for (int32_t i = 0; i < dim; i++) {
        const int32_t d = ((int32_t)input[i] + in_off) * dim - sum; /* |d| < 2^19 */
        /* |d * inv| < 2^49; n is arithmetic-shifted (floor), |n| < 2^31. */
        const int64_t n = ((int64_t)d * (int64_t)inv + round) >> (30 - k);
        /* |n * gamma| < 2^62: exact in int64, then saturated. */
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

/*
 * Final LayerNorm + mean pooling over tokens + classifier, one token row at a time.
 *
 * With Helium (MVE) on the Cortex-M55: replaces ../pool_head.c with KERNELS=optimized on an M55
 * (the same function, checks, statuses and outputs). The token sums and the pooled row's output
 * stage run 4 channels per step (VLDRB.S32, VADD; requantize_x4 and out_s8_x4 of mcuf_mve.h, the
 * same integers as mcuf_requantize and mcufi_out_s8 for the checked pool scale, the last dim % 4
 * channels predicated) where ../pool_head.c and mcufi_pool_output (common.c) take one channel at a
 * time (about 7 instructions per channel and token, 47 per channel for the output stage). The
 * LayerNorm of each token: its checks and its scan of gamma and beta once per call
 * (mcufi_mve_layernorm_scan / _row), not per token.
 */
#include <stddef.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

#define POOL_MAX_TOKENS (INT32_C(1) << 23) /* 255 * 2^23 < 2^31 */

int32_t mcuf_pool_head_s8_scratch_size(const mcuf_pool_head_params *p)
{
    return p == NULL ? -1 : mcufi_pool_scratch_size(p->dim);
}

mcuf_status mcuf_pool_head_s8(const mcuf_pool_head_params *p, const int8_t *x, int8_t *scratch, int8_t *logits)
{
    if (p == NULL || x == NULL || scratch == NULL || logits == NULL) {
        return MCUF_ERR_ARG;
    }
    const int32_t dim = p->dim;
    if (p->tokens < 1 || p->tokens > POOL_MAX_TOKENS ||
        !mcufi_pool_check(scratch, dim, p->classes, &p->ln, &p->head, p->pool_input_offset, p->pool_output_offset,
                          p->pool)) {
        return MCUF_ERR_ARG; /* also a misaligned scratch: the int32 accumulators come first */
    }
    int32_t *acc;
    int8_t *ln_row;
    int8_t *pooled;
    mcufi_pool_scratch_carve(scratch, dim, &acc, &ln_row, &pooled);

    for (int32_t c = 0; c < dim; c += 4) {
        vstrwq_p_s32(acc + c, vdupq_n_s32(0), vctp32q((uint32_t)(dim - c)));
    }
    const int8_t *x_row = x;
    const int32_t in_off = p->pool_input_offset;
    /* mcuf_layernorm_s8 per token: its checks (the same for every token: the rows are not NULL)
     * and its scan of gamma and beta once, not per token */
    const mcuf_status st = mcufi_layernorm_check(&p->ln, x_row, ln_row);
    if (st != MCUF_OK) {
        return st;
    }
    uint32_t gb[2];
    mcufi_mve_layernorm_scan(&p->ln, gb);
    for (int32_t t = 0; t < p->tokens; t++) {
        mcufi_mve_layernorm_row(&p->ln, x_row, ln_row, gb);
        int32_t c = 0;
        for (; c + 4 <= dim; c += 4) { /* |acc| <= 255 * tokens < 2^31 */
            vst1q_s32(acc + c, vaddq_s32(vld1q_s32(acc + c), vaddq_n_s32(vldrbq_s32(ln_row + c), in_off)));
        }
        if (c < dim) { /* the last dim % 4 channels */
            const mve_pred16_t pr = vctp32q((uint32_t)(dim - c));
            const int32x4_t v = vaddq_n_s32(vldrbq_z_s32(ln_row + c, pr), in_off);
            vstrwq_p_s32(acc + c, vaddq_s32(vldrwq_z_s32(acc + c, pr), v), pr);
        }
        x_row += dim;
    }
    const int32_t m = p->pool.multiplier;
    const int32_t s = p->pool.shift;
    const int32_t out_off = p->pool_output_offset;
    for (int32_t c = 0; c < dim; c += 4) {
        const mve_pred16_t pr = vctp32q((uint32_t)(dim - c));
        vstrbq_p_s32(pooled + c, out_s8_x4(requantize_x4(vldrwq_z_s32(acc + c, pr), m, s), out_off, -128, 127), pr);
    }
    return mcuf_linear_s8(&p->head, pooled, logits);
}

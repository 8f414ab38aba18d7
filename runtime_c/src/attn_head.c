/*
 * One attention head, one query: the score row and the probability-weighted sum of V
 * (TFLite BATCH_MATMUL int8 semantics). dsp/attn_head.c replaces this file on cores with the DSP
 * extension; the parameter checks (mcufi_attn_head_check) are shared in mcuf_internal.h.
 */
#include <stddef.h>

#include "mcuf_internal.h"

mcuf_status mcuf_attn_scores_s8(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k,
                                int32_t k_stride, int8_t *scores)
{
    if (mcufi_attn_head_check(p, q, k, scores, k_stride) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    const int32_t hd = p->head_dim;
    const int8_t *k_row = k;
    for (int32_t j = 0; j < p->tokens; j++) {
        int32_t acc = 0; /* |term| <= 255 * 255, head_dim <= 32767 */
        for (int32_t d = 0; d < hd; d++) {
            acc += ((int32_t)q[d] + p->q_offset) * ((int32_t)k_row[d] + p->k_offset);
        }
        k_row += k_stride;
        scores[j] = mcufi_out_s8(mcuf_requantize(acc, p->score.multiplier, p->score.shift), p->score_offset, -128, 127);
    }
    return MCUF_OK;
}

mcuf_status mcuf_attn_weighted_sum_s8(const mcuf_attn_head_params *p, const int8_t *probs, const int8_t *v,
                                      int32_t v_stride, int8_t *out)
{
    if (mcufi_attn_head_check(p, probs, v, out, v_stride) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    for (int32_t d = 0; d < p->head_dim; d++) {
        const int8_t *v_col = v + d;
        int32_t acc = 0; /* probs + 128 in [0, 255]; tokens <= 32767 */
        for (int32_t j = 0; j < p->tokens; j++) {
            acc += ((int32_t)probs[j] + 128) * ((int32_t)*v_col + p->v_offset);
            v_col += v_stride;
        }
        out[d] = mcufi_out_s8(mcuf_requantize(acc, p->av.multiplier, p->av.shift), p->out_offset, -128, 127);
    }
    return MCUF_OK;
}

void mcufi_attn_scores_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *q, int32_t q_stride,
                            const int8_t *k, int32_t k_stride, int32_t *xbuf, int8_t *scores)
{
    (void)xbuf;
    for (int32_t r = 0; r < n; r++) { /* checked parameters: MCUF_OK */
        (void)mcuf_attn_scores_s8(p, q + r * q_stride, k, k_stride, scores + r * p->tokens);
    }
}

void mcufi_attn_weighted_sum_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *probs,
                                  const int8_t *vt, int32_t *xbuf, int8_t *out, int32_t out_stride)
{
    (void)xbuf;
    const int32_t tokens = p->tokens;
    for (int32_t r = 0; r < n; r++) {
        const int8_t *pr = probs + r * tokens;
        const int8_t *v_row = vt;
        for (int32_t d = 0; d < p->head_dim; d++) {
            int32_t acc = 0; /* as mcuf_attn_weighted_sum_s8 */
            for (int32_t j = 0; j < tokens; j++) {
                acc += ((int32_t)pr[j] + 128) * ((int32_t)v_row[j] + p->v_offset);
            }
            v_row += tokens;
            out[r * out_stride + d] =
                mcufi_out_s8(mcuf_requantize(acc, p->av.multiplier, p->av.shift), p->out_offset, -128, 127);
        }
    }
}

/*
 * One attention head, one query: the score row and the probability-weighted sum of V
 * (TFLite BATCH_MATMUL int8 semantics).
 */
#include <stddef.h>

#include "mcuf.h"

#define ATTN_MAX 32767 /* tokens, head_dim: 255 * 255 * 32767 < 2^31 */

static int requant_ok(const mcuf_requant *r)
{
    return (r->multiplier == 0 || r->multiplier >= (INT32_C(1) << 30)) && r->shift >= -31 && r->shift <= 30;
}

static int in_offset_ok(int32_t off)
{
    return off >= -127 && off <= 128;
}

static int out_offset_ok(int32_t off)
{
    return off >= -128 && off <= 127;
}

static mcuf_status check_head(const mcuf_attn_head_params *p)
{
    if (p == NULL || p->tokens < 1 || p->tokens > ATTN_MAX || p->head_dim < 1 || p->head_dim > ATTN_MAX) {
        return MCUF_ERR_ARG;
    }
    if (!in_offset_ok(p->q_offset) || !in_offset_ok(p->k_offset) || !in_offset_ok(p->v_offset) ||
        !out_offset_ok(p->score_offset) || !out_offset_ok(p->out_offset)) {
        return MCUF_ERR_ARG;
    }
    if (!requant_ok(&p->score) || !requant_ok(&p->av)) {
        return MCUF_ERR_ARG;
    }
    return MCUF_OK;
}

static int8_t to_s8(int32_t r, int32_t offset)
{
    r = r > 255 ? 255 : (r < -256 ? -256 : r); /* keeps r + offset in range; result unchanged */
    r += offset;
    return (int8_t)(r > 127 ? 127 : (r < -128 ? -128 : r));
}

mcuf_status mcuf_attn_scores_s8(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k,
                                int32_t k_stride, int8_t *scores)
{
    if (check_head(p) != MCUF_OK || q == NULL || k == NULL || scores == NULL || k_stride < p->head_dim) {
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
        scores[j] = to_s8(mcuf_requantize(acc, p->score.multiplier, p->score.shift), p->score_offset);
    }
    return MCUF_OK;
}

mcuf_status mcuf_attn_weighted_sum_s8(const mcuf_attn_head_params *p, const int8_t *probs, const int8_t *v,
                                      int32_t v_stride, int8_t *out)
{
    if (check_head(p) != MCUF_OK || probs == NULL || v == NULL || out == NULL || v_stride < p->head_dim) {
        return MCUF_ERR_ARG;
    }
    for (int32_t d = 0; d < p->head_dim; d++) {
        const int8_t *v_col = v + d;
        int32_t acc = 0; /* probs + 128 in [0, 255]; tokens <= 32767 */
        for (int32_t j = 0; j < p->tokens; j++) {
            acc += ((int32_t)probs[j] + 128) * ((int32_t)*v_col + p->v_offset);
            v_col += v_stride;
        }
        out[d] = to_s8(mcuf_requantize(acc, p->av.multiplier, p->av.shift), p->out_offset);
    }
    return MCUF_OK;
}

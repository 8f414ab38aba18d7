/*
 * One attention head, one query, with Helium (MVE) on the Cortex-M55: the score row (Q.K^T) and
 * the probability-weighted sum of V (P.V), TFLite BATCH_MATMUL int8 semantics. Replaces
 * ../attn_head.c (and ../dsp/attn_head.c) with KERNELS=optimized on an M55; bit-exact (the
 * parameter checks, mcufi_attn_head_check, are shared in mcuf_internal.h).
 *
 * Scores, offsets factored out (exact integers, combined in wrapping arithmetic; the true total is
 * the portable kernel's, |acc| <= 255 * 255 * head_dim < 2^31):
 *   sum_d (q[d] + qo)(k[d] + ko) = sum_d q k + ko sum_d q + qo sum_d k + head_dim qo ko
 * per key row: VMLADAVA.S8 and VADDVA.S8 over 16 dimensions at a time (the tail predicated with
 * VCTP.8), the query's vectors and its sum computed once per call.
 * Weighted sum, vectorised over the head's dimensions (4 int32 lanes per vector, up to 16
 * dimensions per pass over the keys):
 *   out[d] = sum_j (p[j] + 128) v[j][d] + vo sum_j (p[j] + 128)
 * per key: one widening load (VLDRB.S32) and one VMLA (vector times the key's scalar weight) per
 * 4 dimensions. |sum| <= 255 * 255 * tokens < 2^31.
 * Output stage per value: the DSP kernels' scalar requantization (mcuf_dsp.h).
 */
#include <stddef.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

static inline int8_t score_out(const mcuf_attn_head_params *p, int32_t acc)
{
    return out_s8(requantize(acc, p->score.multiplier, p->score.shift), p->score_offset);
}

/* Parameters checked. */
static void scores_row(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k, int32_t k_stride,
                       int8_t *scores)
{
    const int32_t hd = p->head_dim;
    int32_t qsum = 0;
    int32_t i = 0;
    for (; i < hd; i += 16) {
        qsum = vaddvaq_s8(qsum, vldrbq_z_s8(q + i, vctp8q((uint32_t)(hd - i))));
    }
    /* ko * sum q + hd * qo * ko: the same for every key */
    const int32_t base = wrap_add(wrap_mul(p->k_offset, qsum), wrap_mul(wrap_mul(hd, p->q_offset), p->k_offset));
    const int32_t qo = p->q_offset;
    if (hd <= 16) { /* the query in one register */
        const mve_pred16_t pr = vctp8q((uint32_t)hd);
        const int8x16_t qv = vldrbq_z_s8(q, pr);
        for (int32_t j = 0; j < p->tokens; j++) {
            const int8x16_t kv = vldrbq_z_s8(k, pr);
            const int32_t dot = vmladavq_s8(qv, kv);
            const int32_t ks = vaddvq_s8(kv);
            scores[j] = score_out(p, wrap_add(wrap_add(dot, wrap_mul(qo, ks)), base));
            k += k_stride;
        }
        return;
    }
    for (int32_t j = 0; j < p->tokens; j++) {
        int32_t dot = 0;
        int32_t ks = 0;
        int32_t d = 0;
        for (; d + 16 <= hd; d += 16) {
            const int8x16_t kv = vldrbq_s8(k + d);
            dot = vmladavaq_s8(dot, vldrbq_s8(q + d), kv);
            ks = vaddvaq_s8(ks, kv);
        }
        if (d < hd) {
            const mve_pred16_t pr = vctp8q((uint32_t)(hd - d));
            const int8x16_t kv = vldrbq_z_s8(k + d, pr);
            dot = vmladavaq_s8(dot, vldrbq_z_s8(q + d, pr), kv);
            ks = vaddvaq_s8(ks, kv);
        }
        scores[j] = score_out(p, wrap_add(wrap_add(dot, wrap_mul(qo, ks)), base));
        k += k_stride;
    }
}

mcuf_status mcuf_attn_scores_s8(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k,
                                int32_t k_stride, int8_t *scores)
{
    if (mcufi_attn_head_check(p, q, k, scores, k_stride) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    scores_row(p, q, k, k_stride, scores);
    return MCUF_OK;
}

mcuf_status mcuf_attn_weighted_sum_s8(const mcuf_attn_head_params *p, const int8_t *probs, const int8_t *v,
                                      int32_t v_stride, int8_t *out)
{
    if (mcufi_attn_head_check(p, probs, v, out, v_stride) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    const int32_t hd = p->head_dim;
    const int32_t tokens = p->tokens;
    int32_t psum = 0; /* sum_j (p[j] + 128) <= 255 * tokens */
    int32_t j = 0;
    for (; j < tokens; j += 16) {
        psum = vaddvaq_s8(psum, vldrbq_z_s8(probs + j, vctp8q((uint32_t)(tokens - j))));
    }
    psum = wrap_add(psum, wrap_mul(128, tokens));
    const int32_t corr = wrap_mul(p->v_offset, psum);
    for (int32_t d0 = 0; d0 < hd; d0 += 16) {
        const int32_t left = hd - d0;
        const mve_pred16_t p0 = vctp32q((uint32_t)left);
        const mve_pred16_t p1 = vctp32q((uint32_t)(left > 4 ? left - 4 : 0));
        const mve_pred16_t p2 = vctp32q((uint32_t)(left > 8 ? left - 8 : 0));
        const mve_pred16_t p3 = vctp32q((uint32_t)(left > 12 ? left - 12 : 0));
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
        const int8_t *row = v + d0;
        for (j = 0; j < tokens; j++) {
            const int32_t pj = (int32_t)probs[j] + 128;
            a0 = vmlaq_n_s32(a0, vldrbq_z_s32(row, p0), pj);
            if (left > 4) {
                a1 = vmlaq_n_s32(a1, vldrbq_z_s32(row + 4, p1), pj);
            }
            if (left > 8) {
                a2 = vmlaq_n_s32(a2, vldrbq_z_s32(row + 8, p2), pj);
                a3 = vmlaq_n_s32(a3, vldrbq_z_s32(row + 12, p3), pj);
            }
            row += v_stride;
        }
        int32_t lanes[16];
        vst1q_s32(lanes, a0);
        vst1q_s32(lanes + 4, a1);
        vst1q_s32(lanes + 8, a2);
        vst1q_s32(lanes + 12, a3);
        const int32_t n = left < 16 ? left : 16;
        for (int32_t d = 0; d < n; d++) {
            const int32_t acc = wrap_add(lanes[d], corr);
            out[d0 + d] = out_s8(requantize(acc, p->av.multiplier, p->av.shift), p->out_offset);
        }
    }
    return MCUF_OK;
}

void mcufi_attn_scores_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *q, int32_t q_stride,
                            const int8_t *k, int32_t k_stride, int32_t *xbuf, int8_t *scores)
{
    (void)xbuf;
    for (int32_t r = 0; r < n; r++) { /* checked parameters */
        scores_row(p, q + r * q_stride, k, k_stride, scores + r * p->tokens);
    }
}

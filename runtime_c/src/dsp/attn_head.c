/*
 * One attention head, one query: the score row and the probability-weighted sum of V (TFLite
 * BATCH_MATMUL int8 semantics), for cores with the DSP extension (Cortex-M4, M7, M33). Replaces
 * ../attn_head.c when the project builds with KERNELS=optimized: the same functions, the same
 * checks (mcufi_attn_head_check), bit-exact outputs.
 *
 * The zero-point of the strided operand is factored out of the sum:
 *   sum_d (q_d + qo)(k_jd + ko) = sum_d (q_d + qo) k_jd + ko * Sq,     Sq = sum_d (q_d + qo)
 *   sum_j (p_j + 128)(v_jd + vo) = sum_j (p_j + 128) v_jd + vo * Sp,   Sp = sum_j (p_j + 128)
 * Each of the two parts is bounded by 255 * 128 * n <= 255 * 128 * 32767 < 2^31 (n = head_dim or
 * tokens), and their sum is the portable kernel's exact int32 sum, so nothing overflows and the
 * result is the same. The remaining products use the 16-bit SIMD dual MAC (SMLAD) on int16
 * lanes: q + qo and p + 128 are in [-255, 255], k and v in [-128, 127].
 */
#include <stddef.h>

#include "mcuf_dsp.h"
#include "mcuf_internal.h"

/* Requantized output value. Not inlined: one copy instead of seven saves ~1 KiB of flash. */
static __attribute__((noinline)) int8_t to_s8(const mcuf_requant *rq, int32_t acc, int32_t offset)
{
    return out_s8(requantize(acc, rq->multiplier, rq->shift), offset);
}

mcuf_status mcuf_attn_scores_s8(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k,
                                int32_t k_stride, int8_t *scores)
{
    if (mcufi_attn_head_check(p, q, k, scores, k_stride) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    const int32_t hd = p->head_dim;
    const int32_t q_off = p->q_offset;
    const int32_t q_off2 = dup16(q_off);
    int32_t sq = 0; /* |sq| <= 255 * head_dim */
    for (int32_t d = 0; d < hd; d++) {
        sq += (int32_t)q[d] + q_off;
    }
    const int32_t k_term = p->k_offset * sq; /* |k_term| <= 128 * 255 * head_dim */
    const int8_t *k_row = k;
    int32_t j = 0;
    for (; j + 2 <= p->tokens; j += 2) {
        const int8_t *x = q;
        const int8_t *k0 = k_row;
        const int8_t *k1 = k_row + k_stride;
        int32_t acc0 = 0;
        int32_t acc1 = 0;
        for (int32_t n = hd >> 2; n > 0; n--) {
            const int32_t xv = load_s8x4(x);
            const int32_t x02 = __sadd16(__sxtb16(xv), q_off2);
            const int32_t x13 = __sadd16(sxtb16_ror8(xv), q_off2);
            const int32_t ka = load_s8x4(k0);
            const int32_t kb = load_s8x4(k1);
            acc0 = __smlad(__sxtb16(ka), x02, acc0);
            acc0 = __smlad(sxtb16_ror8(ka), x13, acc0);
            acc1 = __smlad(__sxtb16(kb), x02, acc1);
            acc1 = __smlad(sxtb16_ror8(kb), x13, acc1);
            x += 4;
            k0 += 4;
            k1 += 4;
        }
        for (int32_t n = hd & 3; n > 0; n--) {
            const int32_t xv = (int32_t)*x++ + q_off;
            acc0 += xv * (int32_t)*k0++;
            acc1 += xv * (int32_t)*k1++;
        }
        scores[j] = to_s8(&p->score, acc0 + k_term, p->score_offset);
        scores[j + 1] = to_s8(&p->score, acc1 + k_term, p->score_offset);
        k_row += 2 * k_stride;
    }
    if (j < p->tokens) {
        const int8_t *x = q;
        const int8_t *k0 = k_row;
        int32_t acc = 0;
        for (int32_t n = hd >> 2; n > 0; n--) {
            const int32_t xv = load_s8x4(x);
            const int32_t ka = load_s8x4(k0);
            acc = __smlad(__sxtb16(ka), __sadd16(__sxtb16(xv), q_off2), acc);
            acc = __smlad(sxtb16_ror8(ka), __sadd16(sxtb16_ror8(xv), q_off2), acc);
            x += 4;
            k0 += 4;
        }
        for (int32_t n = hd & 3; n > 0; n--) {
            acc += ((int32_t)*x++ + q_off) * (int32_t)*k0++;
        }
        scores[j] = to_s8(&p->score, acc + k_term, p->score_offset);
    }
    return MCUF_OK;
}

mcuf_status mcuf_attn_weighted_sum_s8(const mcuf_attn_head_params *p, const int8_t *probs, const int8_t *v,
                                      int32_t v_stride, int8_t *out)
{
    if (mcufi_attn_head_check(p, probs, v, out, v_stride) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    const int32_t tokens = p->tokens;
    const int32_t hd = p->head_dim;
    int32_t sp = 0; /* probs + 128 in [0, 255]: sp <= 255 * tokens */
    for (int32_t j = 0; j < tokens; j++) {
        sp += (int32_t)probs[j] + 128;
    }
    const int32_t v_term = p->v_offset * sp; /* |v_term| <= 128 * 255 * tokens */
    int32_t d = 0;
    /* Four columns at a time, two tokens per step: SMLAD pairs token j (low lanes) with j + 1. */
    for (; d + 4 <= hd; d += 4) {
        const int8_t *pr = probs;
        const int8_t *v0 = v + d;
        int32_t acc0 = 0;
        int32_t acc1 = 0;
        int32_t acc2 = 0;
        int32_t acc3 = 0;
        for (int32_t n = tokens >> 1; n > 0; n--) {
            /* (p_j + 128, p_j+1 + 128): bytes 0 and 2 of b | b << 8 are p_j and p_j+1, and
             * (uint8)p ^ 0x80 == p + 128. */
            const uint32_t two = (uint32_t)(uint8_t)pr[0] | ((uint32_t)(uint8_t)pr[1] << 8);
            const int32_t pp = (int32_t)(__uxtb16(two | (two << 8)) ^ 0x00800080u);
            const int32_t va = load_s8x4(v0);
            const int32_t vb = load_s8x4(v0 + v_stride);
            const int32_t a02 = __sxtb16(va); /* (v_j,d, v_j,d+2) */
            const int32_t b02 = __sxtb16(vb); /* (v_j+1,d, v_j+1,d+2) */
            const int32_t a13 = sxtb16_ror8(va);
            const int32_t b13 = sxtb16_ror8(vb);
            acc0 = __smlad(pp, pkhbt(a02, b02), acc0);
            acc2 = __smlad(pp, pkhtb(b02, a02), acc2);
            acc1 = __smlad(pp, pkhbt(a13, b13), acc1);
            acc3 = __smlad(pp, pkhtb(b13, a13), acc3);
            pr += 2;
            v0 += 2 * v_stride;
        }
        if (tokens & 1) {
            const int32_t pv = (int32_t)*pr + 128;
            acc0 += pv * (int32_t)v0[0];
            acc1 += pv * (int32_t)v0[1];
            acc2 += pv * (int32_t)v0[2];
            acc3 += pv * (int32_t)v0[3];
        }
        out[d] = to_s8(&p->av, acc0 + v_term, p->out_offset);
        out[d + 1] = to_s8(&p->av, acc1 + v_term, p->out_offset);
        out[d + 2] = to_s8(&p->av, acc2 + v_term, p->out_offset);
        out[d + 3] = to_s8(&p->av, acc3 + v_term, p->out_offset);
    }
    for (; d < hd; d++) {
        const int8_t *v_col = v + d;
        int32_t acc = 0;
        for (int32_t j = 0; j < tokens; j++) {
            acc += ((int32_t)probs[j] + 128) * (int32_t)*v_col;
            v_col += v_stride;
        }
        out[d] = to_s8(&p->av, acc + v_term, p->out_offset);
    }
    return MCUF_OK;
}

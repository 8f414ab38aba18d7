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

/* acc += k-word . (x02, x13): both lanes of one key word. */
static inline int32_t dot4(int32_t kv, int32_t x02, int32_t x13, int32_t acc)
{
    return __smlad(sxtb16_ror8(kv), x13, __smlad(__sxtb16(kv), x02, acc));
}

/* Largest head_dim whose expanded q row (two words per 4 dims: 256 bytes of stack) the score kernel
 * keeps on the stack; longer heads take the path that offsets q on the fly. */
#define SCORES_QX_MAX_DIM 128

/* Score of 4 keys: acc[i] += q . k_{j+i} over the expanded q (qx: (q0, q2), (q1, q3) per 4 dims, the
 * offset added; a partial last block zero-padded through load_tail). Key rows j, j+1 through ka,
 * j+2, j+3 through kb (+ k_stride). */
static void scores4(const int32_t *qx, int32_t blocks, int32_t tail, const int8_t *ka, const int8_t *kb,
                    int32_t k_stride, int32_t acc[4])
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t a2 = acc[2];
    int32_t a3 = acc[3];
    if (blocks > 0) {
        /* One block: LDRD of the q lanes, per key a word load, two SXTB16, two SMLAD; 23
         * instructions for 16 MACs. Written out because gcc spills the 13 live registers. */
        int32_t n = blocks;
        int32_t x02, x13, kw, kl;
        __asm__ volatile(
            "1:\n\t"
            "ldrd   %[x02], %[x13], [%[qx]], #8\n\t"
            "ldr    %[kw], [%[ka], %[s]]\n\t"
            "sxtb16 %[kl], %[kw]\n\t"
            "smlad  %[a1], %[kl], %[x02], %[a1]\n\t"
            "sxtb16 %[kl], %[kw], ror #8\n\t"
            "smlad  %[a1], %[kl], %[x13], %[a1]\n\t"
            "ldr    %[kw], [%[ka]], #4\n\t"
            "sxtb16 %[kl], %[kw]\n\t"
            "smlad  %[a0], %[kl], %[x02], %[a0]\n\t"
            "sxtb16 %[kl], %[kw], ror #8\n\t"
            "smlad  %[a0], %[kl], %[x13], %[a0]\n\t"
            "ldr    %[kw], [%[kb], %[s]]\n\t"
            "sxtb16 %[kl], %[kw]\n\t"
            "smlad  %[a3], %[kl], %[x02], %[a3]\n\t"
            "sxtb16 %[kl], %[kw], ror #8\n\t"
            "smlad  %[a3], %[kl], %[x13], %[a3]\n\t"
            "ldr    %[kw], [%[kb]], #4\n\t"
            "sxtb16 %[kl], %[kw]\n\t"
            "smlad  %[a2], %[kl], %[x02], %[a2]\n\t"
            "sxtb16 %[kl], %[kw], ror #8\n\t"
            "smlad  %[a2], %[kl], %[x13], %[a2]\n\t"
            "subs   %[n], %[n], #1\n\t"
            "bne    1b\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [qx] "+r"(qx), [ka] "+r"(ka),
              [kb] "+r"(kb), [n] "+r"(n), [x02] "=&r"(x02), [x13] "=&r"(x13), [kw] "=&r"(kw), [kl] "=&r"(kl)
            : [s] "r"(k_stride)
            : "cc", "memory");
    }
    if (tail != 0) {
        int32_t x02, x13;
        load2_post(&qx, &x02, &x13);
        a0 = dot4(load_tail(ka, tail), x02, x13, a0);
        a1 = dot4(load_tail(ka + k_stride, tail), x02, x13, a1);
        a2 = dot4(load_tail(kb, tail), x02, x13, a2);
        a3 = dot4(load_tail(kb + k_stride, tail), x02, x13, a3);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* q . k over head_dim for one key, q offset on the fly (SXTAB16). */
static int32_t score1(const int8_t *q, const int8_t *k, int32_t full, int32_t tail, int32_t q_off2, int32_t acc)
{
    for (int32_t n = full; n > 0; n--) {
        const int32_t xv = load_s8x4(q);
        acc = dot4(load_s8x4(k), __sxtab16(q_off2, xv), sxtab16_ror8(q_off2, xv), acc);
        q += 4;
        k += 4;
    }
    if (tail != 0) {
        const int32_t xv = load_tail(q, tail);
        acc = dot4(load_tail(k, tail), __sxtab16(q_off2, xv), sxtab16_ror8(q_off2, xv), acc);
    }
    return acc;
}

/* Four keys per pass over q (head_dim <= SCORES_QX_MAX_DIM): q is expanded once into int16 lane
 * pairs with its offset added (a stack row), then each key word costs a load, two SXTB16 and two
 * SMLAD. The head_dim % 4 tail is one more step with zero-padded words (a missing q lane holds
 * q_offset alone, its key lane 0). The last tokens % 4 keys, and longer heads, one key at a time.
 * Requantization constants hoisted (requant_k). */
mcuf_status mcuf_attn_scores_s8(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k,
                                int32_t k_stride, int8_t *scores)
{
    if (mcufi_attn_head_check(p, q, k, scores, k_stride) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    const int32_t hd = p->head_dim;
    const int32_t q_off = p->q_offset;
    const int32_t q_off2 = dup16(q_off);
    const int32_t full = hd >> 2;
    const int32_t tail = hd & 3;
    int32_t sq = 0; /* |sq| <= 255 * head_dim */
    for (int32_t d = 0; d < hd; d++) {
        sq += (int32_t)q[d] + q_off;
    }
    const int32_t k_term = p->k_offset * sq; /* |k_term| <= 128 * 255 * head_dim */
    const requant_k rq = requant_make(&p->score);
    const int32_t out_off = p->score_offset;
    const int8_t *k_row = k;
    int32_t j = 0;
    if (hd <= SCORES_QX_MAX_DIM) {
        int32_t qx[SCORES_QX_MAX_DIM / 2];
        const int8_t *x = q;
        int32_t *dst = qx;
        for (int32_t n = 0; n < full + (tail != 0); n++) {
            const int32_t xv = n < full ? load_s8x4(x) : load_tail(x, tail);
            dst[0] = __sxtab16(q_off2, xv);
            dst[1] = sxtab16_ror8(q_off2, xv);
            x += 4;
            dst += 2;
        }
        for (; j + 4 <= p->tokens; j += 4) {
            int32_t acc[4] = {k_term, k_term, k_term, k_term};
            scores4(qx, full, tail, k_row, k_row + 2 * k_stride, k_stride, acc);
            for (int32_t i = 0; i < 4; i++) {
                scores[j + i] = out_s8(requant_apply(&rq, acc[i]), out_off);
            }
            k_row += 4 * k_stride;
        }
    }
    for (; j < p->tokens; j++) {
        scores[j] = out_s8(requant_apply(&rq, score1(q, k_row, full, tail, q_off2, k_term)), out_off);
        k_row += k_stride;
    }
    return MCUF_OK;
}

/* Four queries x one key per step over the queries expanded once (xbuf: for 4-dim block b and
 * query r, xbuf[(4b + r) * 2 + {0, 1}] = (q0, q2), (q1, q3) + q_offset as int16 lanes, the last
 * block zero-padded): per block one key word, two SXTB16, four LDRD and eight SMLAD for 16 MACs,
 * as the linear kernel's 4-token tile. Each query's key-offset term k_offset * Sq starts its sum;
 * fewer than 4 queries go one at a time (mcuf_attn_scores_s8). */
void mcufi_attn_scores_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *q, int32_t q_stride,
                            const int8_t *k, int32_t k_stride, int32_t *xbuf, int8_t *scores)
{
    const int32_t tokens = p->tokens;
    if (n != 4) {
        for (int32_t r = 0; r < n; r++) { /* checked parameters: MCUF_OK */
            (void)mcuf_attn_scores_s8(p, q + r * q_stride, k, k_stride, scores + r * tokens);
        }
        return;
    }
    const int32_t hd = p->head_dim;
    const int32_t q_off = p->q_offset;
    const int32_t q_off2 = dup16(q_off);
    const int32_t full = hd >> 2;
    const int32_t tail = hd & 3;
    const int32_t blocks = full + (tail != 0);
    int32_t k_term[4];
    for (int32_t r = 0; r < 4; r++) {
        const int8_t *qr = q + r * q_stride;
        int32_t sq = 0; /* |sq| <= 255 * head_dim */
        for (int32_t d = 0; d < hd; d++) {
            sq += (int32_t)qr[d] + q_off;
        }
        k_term[r] = p->k_offset * sq; /* |k_term| <= 128 * 255 * head_dim */
        int32_t *dst = xbuf + 2 * r;
        for (int32_t b = 0; b < blocks; b++) {
            const int32_t xv = b < full ? load_s8x4(qr + 4 * b) : load_tail(qr + 4 * b, tail);
            dst[0] = __sxtab16(q_off2, xv);
            dst[1] = sxtab16_ror8(q_off2, xv);
            dst += 8;
        }
    }
    const requant_k rq = requant_make(&p->score);
    const int32_t out_off = p->score_offset;
    const int8_t *k_row = k;
    for (int32_t j = 0; j < tokens; j++) {
        const int32_t *xb = xbuf;
        const int8_t *kw = k_row;
        int32_t a0 = k_term[0];
        int32_t a1 = k_term[1];
        int32_t a2 = k_term[2];
        int32_t a3 = k_term[3];
        for (int32_t b = full; b > 0; b--) {
            const int32_t wv = load_s8x4(kw);
            MCUFI_DOT_4X1_STEP(wv);
            kw += 4;
        }
        if (tail != 0) {
            const int32_t wv = load_tail(kw, tail);
            MCUFI_DOT_4X1_STEP(wv);
        }
        scores[j] = out_s8(requant_apply(&rq, a0), out_off);
        scores[tokens + j] = out_s8(requant_apply(&rq, a1), out_off);
        scores[2 * tokens + j] = out_s8(requant_apply(&rq, a2), out_off);
        scores[3 * tokens + j] = out_s8(requant_apply(&rq, a3), out_off);
        k_row += k_stride;
    }
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
    /* Four columns at a time, four tokens per step: one word of probabilities gives, with EOR
     * 0x80 per byte ((uint8)p ^ 0x80 == p + 128) and UXTB16, (p_j, p_j+2) and (p_j+1, p_j+3) as
     * 16-bit lanes; each V row word gives its four columns as lanes (SXTB16), and SMLAxy multiplies
     * the lanes it names: 7 instructions per row of 4 MACs plus 4 per step for the probabilities.
     * Written out because gcc spills the 13 live registers. */
    const int32_t steps = tokens >> 2;
    for (; d + 4 <= hd; d += 4) {
        const int8_t *pr = probs;
        const int8_t *v0 = v + d;
        const int8_t *v2 = v0 + 2 * v_stride;
        int32_t acc0 = 0;
        int32_t acc1 = 0;
        int32_t acc2 = 0;
        int32_t acc3 = 0;
        if (steps > 0) {
            int32_t n = steps;
            int32_t p02, p13, vw, lo;
            __asm__ volatile(
                "1:\n\t"
                "ldr    %[p13], [%[pr]], #4\n\t"
                "eor    %[p13], %[p13], #0x80808080\n\t"
                "uxtb16 %[p02], %[p13]\n\t"
                "uxtb16 %[p13], %[p13], ror #8\n\t"
                /* row j: p02 low lane */
                "ldr    %[vw], [%[v0]]\n\t"
                "sxtb16 %[lo], %[vw]\n\t"
                "sxtb16 %[vw], %[vw], ror #8\n\t"
                "smlabb %[a0], %[lo], %[p02], %[a0]\n\t"
                "smlatb %[a2], %[lo], %[p02], %[a2]\n\t"
                "smlabb %[a1], %[vw], %[p02], %[a1]\n\t"
                "smlatb %[a3], %[vw], %[p02], %[a3]\n\t"
                /* row j+1: p13 low lane */
                "ldr    %[vw], [%[v0], %[s]]\n\t"
                "sxtb16 %[lo], %[vw]\n\t"
                "sxtb16 %[vw], %[vw], ror #8\n\t"
                "smlabb %[a0], %[lo], %[p13], %[a0]\n\t"
                "smlatb %[a2], %[lo], %[p13], %[a2]\n\t"
                "smlabb %[a1], %[vw], %[p13], %[a1]\n\t"
                "smlatb %[a3], %[vw], %[p13], %[a3]\n\t"
                /* row j+2: p02 high lane */
                "ldr    %[vw], [%[v2]]\n\t"
                "sxtb16 %[lo], %[vw]\n\t"
                "sxtb16 %[vw], %[vw], ror #8\n\t"
                "smlabt %[a0], %[lo], %[p02], %[a0]\n\t"
                "smlatt %[a2], %[lo], %[p02], %[a2]\n\t"
                "smlabt %[a1], %[vw], %[p02], %[a1]\n\t"
                "smlatt %[a3], %[vw], %[p02], %[a3]\n\t"
                /* row j+3: p13 high lane */
                "ldr    %[vw], [%[v2], %[s]]\n\t"
                "sxtb16 %[lo], %[vw]\n\t"
                "sxtb16 %[vw], %[vw], ror #8\n\t"
                "smlabt %[a0], %[lo], %[p13], %[a0]\n\t"
                "smlatt %[a2], %[lo], %[p13], %[a2]\n\t"
                "smlabt %[a1], %[vw], %[p13], %[a1]\n\t"
                "smlatt %[a3], %[vw], %[p13], %[a3]\n\t"
                "add    %[v0], %[v0], %[s], lsl #2\n\t"
                "add    %[v2], %[v2], %[s], lsl #2\n\t"
                "subs   %[n], %[n], #1\n\t"
                "bne    1b\n\t"
                : [a0] "+r"(acc0), [a1] "+r"(acc1), [a2] "+r"(acc2), [a3] "+r"(acc3), [pr] "+r"(pr), [v0] "+r"(v0),
                  [v2] "+r"(v2), [n] "+r"(n), [p02] "=&r"(p02), [p13] "=&r"(p13), [vw] "=&r"(vw), [lo] "=&r"(lo)
                : [s] "r"(v_stride)
                : "cc", "memory");
        }
        for (int32_t n = tokens & 3; n > 0; n--) {
            const int32_t pv = (int32_t)*pr++ + 128;
            acc0 += pv * (int32_t)v0[0];
            acc1 += pv * (int32_t)v0[1];
            acc2 += pv * (int32_t)v0[2];
            acc3 += pv * (int32_t)v0[3];
            v0 += v_stride;
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

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

/* Four rows of a x `cols` rows of b per step over the a rows expanded once (xbuf: for 4-value
 * block i and row r, xbuf[(4i + r) * 2 + {0, 1}] = (a0, a2), (a1, a3) + a_off as int16 lanes, the
 * last block zero-padded): per block one b word, two SXTB16, four LDRD and eight SMLAD for 16 MACs,
 * as the linear kernel's 4-token tile. Sums: sum_i (a_i + a_off)(b_i + b_off) =
 * sum_i (a_i + a_off) b_i + b_off * S_a, each part bounded by 255 * 128 * len < 2^31 (len <= 32767).
 * out[r * out_rs + c] = the requantized sum of a row r and b row c, plus out_off. Shared by the
 * tiled scores (a: queries, b: keys) and the tiled weighted sum (a: probabilities + 128, b: V
 * transposed). Output stage: short_out (mcuf_dsp.h) when the shift allows it (|sum| <= 255 * 255
 * * len < 2^30 for len <= 16512), else requant_apply. */
static void dot_tile4(int32_t len, int32_t cols, const int8_t *a, int32_t a_stride, int32_t a_off, const int8_t *b,
                      int32_t b_stride, int32_t b_off, const mcuf_requant *req, int32_t out_off, int32_t *xbuf,
                      int8_t *out, int32_t out_rs)
{
    const int32_t a_off2 = dup16(a_off);
    const int32_t full = len >> 2;
    const int32_t tail = len & 3;
    const int32_t blocks = full + (tail != 0);
    int32_t b_term[4];
    for (int32_t r = 0; r < 4; r++) {
        const int8_t *ar = a + r * a_stride;
        int32_t sa = 0; /* |sa| <= 255 * len */
        for (int32_t d = 0; d < len; d++) {
            sa += (int32_t)ar[d] + a_off;
        }
        b_term[r] = b_off * sa; /* |b_term| <= 128 * 255 * len */
        int32_t *dst = xbuf + 2 * r;
        for (int32_t i = 0; i < blocks; i++) {
            const int32_t xv = i < full ? load_s8x4(ar + 4 * i) : load_tail(ar + 4 * i, tail);
            dst[0] = __sxtab16(a_off2, xv);
            dst[1] = sxtab16_ror8(a_off2, xv);
            dst += 8;
        }
    }
    const int short_ok = short_shift_ok(req->shift) && len <= 16512;
    const requant_k rq = requant_make(req);
    const int32_t right = -req->shift;
    const int32_t h = short_ok ? INT32_C(1) << (right - 1) : 0;
    const int32_t m = req->multiplier;
    const int8_t *b_row = b;
    for (int32_t c = 0; c < cols; c++) {
        const int32_t *xb = xbuf;
        const int8_t *kw = b_row;
        int32_t a0 = b_term[0];
        int32_t a1 = b_term[1];
        int32_t a2 = b_term[2];
        int32_t a3 = b_term[3];
        for (int32_t i = full >> 1; i > 0; i--) {
            const int32_t wv0 = load_s8x4(kw);
            const int32_t wv1 = load_s8x4(kw + 4);
            kw += 8;
            MCUFI_DOT_4X1_STEP(wv0);
            MCUFI_DOT_4X1_STEP(wv1);
        }
        if (full & 1) {
            const int32_t wv = load_s8x4(kw);
            kw += 4;
            MCUFI_DOT_4X1_STEP(wv);
        }
        if (tail != 0) {
            const int32_t wv = load_tail(kw, tail);
            MCUFI_DOT_4X1_STEP(wv);
        }
        if (short_ok) {
            out[c] = short_out(a0, 0, m, h, right, out_off);
            out[out_rs + c] = short_out(a1, 0, m, h, right, out_off);
            out[2 * out_rs + c] = short_out(a2, 0, m, h, right, out_off);
            out[3 * out_rs + c] = short_out(a3, 0, m, h, right, out_off);
        } else {
            out[c] = out_s8(requant_apply(&rq, a0), out_off);
            out[out_rs + c] = out_s8(requant_apply(&rq, a1), out_off);
            out[2 * out_rs + c] = out_s8(requant_apply(&rq, a2), out_off);
            out[3 * out_rs + c] = out_s8(requant_apply(&rq, a3), out_off);
        }
        b_row += b_stride;
    }
}

/* Four queries x one key per step (dot_tile4); fewer than 4 queries go one at a time
 * (mcuf_attn_scores_s8). */
void mcufi_attn_scores_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *q, int32_t q_stride,
                            const int8_t *k, int32_t k_stride, int32_t *xbuf, int8_t *scores)
{
    if (n != 4) {
        for (int32_t r = 0; r < n; r++) { /* checked parameters: MCUF_OK */
            (void)mcuf_attn_scores_s8(p, q + r * q_stride, k, k_stride, scores + r * p->tokens);
        }
        return;
    }
    dot_tile4(p->head_dim, p->tokens, q, q_stride, p->q_offset, k, k_stride, p->k_offset, &p->score, p->score_offset,
              xbuf, scores, p->tokens);
}

/* Four probability rows x one V column (a row of V transposed) per step (dot_tile4, the
 * probabilities offset by 128); fewer rows one at a time, one dot product per output (score1). */
void mcufi_attn_weighted_sum_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *probs,
                                  const int8_t *vt, int32_t *xbuf, int8_t *out, int32_t out_stride)
{
    const int32_t tokens = p->tokens;
    if (n == 4) {
        dot_tile4(tokens, p->head_dim, probs, tokens, 128, vt, tokens, p->v_offset, &p->av, p->out_offset, xbuf, out,
                  out_stride);
        return;
    }
    const int32_t off2 = dup16(128);
    for (int32_t r = 0; r < n; r++) {
        const int8_t *pr = probs + r * tokens;
        int32_t sp = 0; /* probs + 128 in [0, 255]: sp <= 255 * tokens */
        for (int32_t j = 0; j < tokens; j++) {
            sp += (int32_t)pr[j] + 128;
        }
        const int32_t v_term = p->v_offset * sp; /* |v_term| <= 128 * 255 * tokens */
        const int8_t *v_row = vt;
        for (int32_t d = 0; d < p->head_dim; d++) {
            out[r * out_stride + d] =
                to_s8(&p->av, score1(pr, v_row, tokens >> 2, tokens & 3, off2, v_term), p->out_offset);
            v_row += tokens;
        }
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

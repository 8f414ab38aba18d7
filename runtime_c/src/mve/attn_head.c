/*
 * One attention head, one query, with Helium (MVE) on the Cortex-M55: the score row (Q.K^T) and
 * the probability-weighted sum of V (P.V), TFLite BATCH_MATMUL int8 semantics. Replaces
 * ../attn_head.c (and ../dsp/attn_head.c) with KERNELS=optimized on an M55; bit-exact (the
 * parameter checks, mcufi_attn_head_check, are shared in mcuf_internal.h).
 *
 * Scores, the key offset factored out (exact integers, combined in wrapping arithmetic; the true
 * total is the portable kernel's, |acc| <= 255 * 255 * head_dim < 2^31):
 *   sum_d (q[d] + qo)(k[d] + ko) = sum_d (q[d] + qo) k[d] + ko sum_d (q[d] + qo)
 * the query q' = q + qo in int16 vectors (8 dimensions each, kept in registers for head_dim <= 32),
 * per key row: VLDRB.S16 and VMLADAVA.S16 per 8 dimensions (the last vector predicated with
 * VCTP.16; head_dim 24 in assembly, 9 instructions per key), the sums of up to 32 keys into a
 * block on the stack, then the output stage on 4 scores per step. head_dim > 32: the same
 * arithmetic with q' recomputed per 8 dimensions.
 * Weighted sum, vectorised over the head's dimensions (4 int32 lanes per vector, 24 dimensions
 * per pass over the keys, then a last pass of 4 .. 24):
 *   out[d] = sum_j (p[j] + 128) v[j][d] + vo sum_j (p[j] + 128)
 * per key: one widening load (VLDRB.S32, V rows contiguous per key: no strided access) and one
 * VMLA (vector times the key's scalar weight) per 4 dimensions; 24 dimensions in assembly, 16
 * instructions per key. |sum| <= 255 * 255 * tokens < 2^31.
 * Output stage: 4 values per step (requantize_x4, out_s8_x4 of mcuf_mve.h), narrowing stores.
 * The fused attention's tiles (mcufi_attn_scores_tile, mcufi_attn_weighted_sum_tile) share work
 * across the tile's rows instead: for head_dim 17..32 two query rows as int8 vectors against each
 * key (dots2_hd32), and 4 probability rows against each row of V transposed (mve_dot4x1); their
 * output stages take requantize_x4_r for right shifts.
 */
#include <stddef.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

#define SCORE_BLOCK 32 /* score accumulators per block (128 bytes of stack) */

/* head_dim 24: the dot products of n >= 1 key rows (k, k + k_stride, ...) with the query
 * (q' = q + q_offset in q0, q1, q2 as int16) into acc[0 .. n), the loop written out (the compiler
 * keeps the query in memory otherwise): per key three VLDRB.S16, VMLADAV and two VMLADAVA, the
 * store, the row step and LE, 9 instructions for 24 MACs. */
static inline void dots24(int16x8_t q0, int16x8_t q1, int16x8_t q2, const int8_t *k, int32_t k_stride, int32_t n,
                          int32_t *acc)
{
    int32_t a;
    int16x8_t t;
    __asm__ volatile("dls lr, %[n]\n"
                     "1:\n\t"
                     "vldrb.s16 %q[t], [%[k]]\n\t"
                     "vmladav.s16 %[a], %q[q0], %q[t]\n\t"
                     "vldrb.s16 %q[t], [%[k], #8]\n\t"
                     "vmladava.s16 %[a], %q[q1], %q[t]\n\t"
                     "vldrb.s16 %q[t], [%[k], #16]\n\t"
                     "vmladava.s16 %[a], %q[q2], %q[t]\n\t"
                     "add %[k], %[k], %[stride]\n\t"
                     "str %[a], [%[acc]], #4\n\t"
                     "le lr, 1b"
                     : [a] "=&Te"(a), [t] "=&w"(t), [k] "+r"(k), [acc] "+r"(acc)
                     : [n] "r"(n), [stride] "r"(k_stride), [q0] "w"(q0), [q1] "w"(q1), [q2] "w"(q2)
                     : "lr", "memory");
}

/* The row for head_dim in (8 (nv - 1), 8 nv], nv in 1..4: the query (q' = q + q_offset) in nv
 * int16 vectors (the last predicated with `last`, zero beyond head_dim); per key, the key row
 * sign-extended to int16 on load and VMLADAVA.S16, 8 dimensions per step, into a block of up to 16
 * accumulators; then the output stage on 4 lanes (requantize_x4, out_s8_x4) and a narrowing store.
 * Written out per vector (constant nv after inlining) so that the query stays in registers. */
static inline __attribute__((always_inline)) void scores_nv(const mcuf_attn_head_params *p, int nv, const int8_t *q,
                                                            const int8_t *k, int32_t k_stride, int8_t *scores)
{
    const int32_t hd = p->head_dim;
    const mve_pred16_t last = vctp16q((uint32_t)(hd - 8 * (nv - 1)));
    const int16_t qo = (int16_t)p->q_offset;
    const int16x8_t zero = vdupq_n_s16(0);
    int16x8_t q0 = zero, q1 = zero, q2 = zero;
    /* the full vectors, then the last one (zero lanes beyond head_dim) */
    if (nv > 1) {
        q0 = vaddq_n_s16(vldrbq_s16(q), qo);
    }
    if (nv > 2) {
        q1 = vaddq_n_s16(vldrbq_s16(q + 8), qo);
    }
    if (nv > 3) {
        q2 = vaddq_n_s16(vldrbq_s16(q + 16), qo);
    }
    const int16x8_t ql = vaddq_m_n_s16(zero, vldrbq_z_s16(q + 8 * (nv - 1), last), qo, last);
    int32_t qsum = vaddvq_s16(ql); /* sum_d (q[d] + qo) */
    if (nv > 1) {
        qsum = vaddvaq_s16(qsum, q0);
    }
    if (nv > 2) {
        qsum = vaddvaq_s16(qsum, q1);
    }
    if (nv > 3) {
        qsum = vaddvaq_s16(qsum, q2);
    }
    /* sum_d (q + qo)(k + ko) = sum_d (q + qo) k + ko * qsum; |each| < 2^31, wrapping sums exact */
    const int32_t base = wrap_mul(p->k_offset, qsum);
    const int32_t m = p->score.multiplier;
    const int32_t sh = p->score.shift;
    const int32_t off = p->score_offset;
    const int32_t tokens = p->tokens;
    int32_t acc[SCORE_BLOCK];
    for (int32_t j0 = 0; j0 < tokens; j0 += SCORE_BLOCK) {
        const int32_t nb = tokens - j0 < SCORE_BLOCK ? tokens - j0 : SCORE_BLOCK;
        if (nv == 3 && hd == 24) {
            dots24(q0, q1, ql, k, k_stride, nb, acc);
            k += nb * k_stride;
        } else {
            for (int32_t j = 0; j < nb; j++) {
                int32_t a = 0;
                if (nv > 1) {
                    a = vmladavaq_s16(a, q0, vldrbq_s16(k));
                }
                if (nv > 2) {
                    a = vmladavaq_s16(a, q1, vldrbq_s16(k + 8));
                }
                if (nv > 3) {
                    a = vmladavaq_s16(a, q2, vldrbq_s16(k + 16));
                }
                acc[j] = vmladavaq_s16(a, ql, vldrbq_z_s16(k + 8 * (nv - 1), last));
                k += k_stride;
            }
        }
        int32_t j = 0;
        for (; j + 4 <= nb; j += 4) {
            vstrbq_s32(scores + j0 + j,
                       out_s8_x4(requantize_x4(vaddq_n_s32(vld1q_s32(acc + j), base), m, sh), off, -128, 127));
        }
        if (j < nb) {
            const int32x4_t r = out_s8_x4(requantize_x4(vaddq_n_s32(vld1q_s32(acc + j), base), m, sh), off, -128, 127);
            vstrbq_p_s32(scores + j0 + j, r, vctp32q((uint32_t)(nb - j)));
        }
    }
}

/* head_dim > 32: q' recomputed per 8 dimensions, the same integers. */
static void scores_long(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k, int32_t k_stride,
                        int8_t *scores)
{
    const int32_t hd = p->head_dim;
    int32_t qsum = 0;
    for (int32_t d = 0; d < hd; d += 8) {
        const mve_pred16_t pr = vctp16q((uint32_t)(hd - d));
        qsum = vaddvaq_p_s16(qsum, vaddq_n_s16(vldrbq_z_s16(q + d, pr), (int16_t)p->q_offset), pr);
    }
    const int32_t base = wrap_mul(p->k_offset, qsum);
    for (int32_t j = 0; j < p->tokens; j++) {
        int32_t acc = 0;
        for (int32_t d = 0; d < hd; d += 8) {
            const mve_pred16_t pr = vctp16q((uint32_t)(hd - d));
            const int16x8_t qv = vaddq_n_s16(vldrbq_z_s16(q + d, pr), (int16_t)p->q_offset);
            acc = vmladavaq_p_s16(acc, qv, vldrbq_z_s16(k + d, pr), pr);
        }
        scores[j] = out_s8(requantize(wrap_add(acc, base), p->score.multiplier, p->score.shift), p->score_offset);
        k += k_stride;
    }
}

/* Parameters checked. */
static void scores_row(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k, int32_t k_stride,
                       int8_t *scores)
{
    switch ((p->head_dim + 7) / 8) {
    case 1:
        scores_nv(p, 1, q, k, k_stride, scores);
        break;
    case 2:
        scores_nv(p, 2, q, k, k_stride, scores);
        break;
    case 3:
        scores_nv(p, 3, q, k, k_stride, scores);
        break;
    case 4:
        scores_nv(p, 4, q, k, k_stride, scores);
        break;
    default:
        scores_long(p, q, k, k_stride, scores);
        break;
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

/* out[0 .. 4 (nv - 1) + last) of one head's weighted sum: nv int32 vectors of output dimensions
 * (the last with `last` in [1, 4] lanes), accumulated over the keys with one widening load
 * (VLDRB.S32, V rows contiguous per key) and one VMLA by the key's weight p[j] + 128 per vector;
 * then the output stage on 4 lanes and a narrowing store. */
static inline __attribute__((always_inline)) void ws_chunk(const mcuf_attn_head_params *p, int nv, int32_t last,
                                                           const int8_t *probs, const int8_t *v, int32_t v_stride,
                                                           int32_t corr, int8_t *out)
{
    const mve_pred16_t pl = vctp32q((uint32_t)last);
    int32x4_t a0 = vdupq_n_s32(corr), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    const int8_t *row = v;
    const int8_t *pr = probs;
    const int8_t *end = probs + p->tokens;
    /* the full vectors a0 .. a(nv-2), then the last one (predicated) */
    while (pr != end) {
        const int32_t pj = (int32_t)*pr++ + 128;
        if (nv > 1) {
            a0 = vmlaq_n_s32(a0, vldrbq_s32(row), pj);
        }
        if (nv > 2) {
            a1 = vmlaq_n_s32(a1, vldrbq_s32(row + 4), pj);
        }
        if (nv > 3) {
            a2 = vmlaq_n_s32(a2, vldrbq_s32(row + 8), pj);
        }
        if (nv > 4) {
            a3 = vmlaq_n_s32(a3, vldrbq_s32(row + 12), pj);
        }
        if (nv > 5) {
            a4 = vmlaq_n_s32(a4, vldrbq_s32(row + 16), pj);
        }
        a5 = vmlaq_n_s32(a5, vldrbq_z_s32(row + 4 * (nv - 1), pl), pj);
        row += v_stride;
    }
    const int32_t m = p->av.multiplier;
    const int32_t sh = p->av.shift;
    const int32_t off = p->out_offset;
    if (nv > 1) {
        vstrbq_s32(out, out_s8_x4(requantize_x4(a0, m, sh), off, -128, 127));
    }
    if (nv > 2) {
        vstrbq_s32(out + 4, out_s8_x4(requantize_x4(a1, m, sh), off, -128, 127));
    }
    if (nv > 3) {
        vstrbq_s32(out + 8, out_s8_x4(requantize_x4(a2, m, sh), off, -128, 127));
    }
    if (nv > 4) {
        vstrbq_s32(out + 12, out_s8_x4(requantize_x4(a3, m, sh), off, -128, 127));
    }
    if (nv > 5) {
        vstrbq_s32(out + 16, out_s8_x4(requantize_x4(a4, m, sh), off, -128, 127));
    }
    vstrbq_p_s32(out + 4 * (nv - 1), out_s8_x4(requantize_x4(a5, m, sh), off, -128, 127), pl);
}

/* ws_chunk(p, 6, 4, ...): 24 output dimensions, the loop over the keys written out (the compiler
 * spends about 9 more instructions per key on addresses): per key one LDRSB of p[j], one ADD of
 * 128, six VLDRB.S32 (immediate offsets) and six VMLA.S32, the row step and LE: 16 instructions
 * for 24 MACs. Six accumulator vectors (start: corr) and one for the loaded V values. */
static void ws24(const mcuf_attn_head_params *p, const int8_t *probs, const int8_t *v, int32_t v_stride,
                 int32_t corr, int8_t *out)
{
    const int8_t *pr = probs;
    const int8_t *row = v;
    int32_t pj;
    int32x4_t a0 = vdupq_n_s32(corr), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, t;
    __asm__ volatile("wls lr, %[n], 2f\n"
                     "1:\n\t"
                     "ldrsb %[pj], [%[pr]], #1\n\t"
                     "vldrb.s32 %q[t], [%[row]]\n\t"
                     "add %[pj], %[pj], #128\n\t"
                     "vmla.s32 %q[a0], %q[t], %[pj]\n\t"
                     "vldrb.s32 %q[t], [%[row], #4]\n\t"
                     "vmla.s32 %q[a1], %q[t], %[pj]\n\t"
                     "vldrb.s32 %q[t], [%[row], #8]\n\t"
                     "vmla.s32 %q[a2], %q[t], %[pj]\n\t"
                     "vldrb.s32 %q[t], [%[row], #12]\n\t"
                     "vmla.s32 %q[a3], %q[t], %[pj]\n\t"
                     "vldrb.s32 %q[t], [%[row], #16]\n\t"
                     "vmla.s32 %q[a4], %q[t], %[pj]\n\t"
                     "vldrb.s32 %q[t], [%[row], #20]\n\t"
                     "vmla.s32 %q[a5], %q[t], %[pj]\n\t"
                     "add %[row], %[row], %[stride]\n\t"
                     "le lr, 1b\n"
                     "2:"
                     : [pj] "=&r"(pj), [pr] "+r"(pr), [row] "+r"(row), [t] "=&w"(t), [a0] "+w"(a0), [a1] "+w"(a1),
                       [a2] "+w"(a2), [a3] "+w"(a3), [a4] "+w"(a4), [a5] "+w"(a5)
                     : [n] "r"(p->tokens), [stride] "r"(v_stride)
                     : "lr", "memory");
    const int32_t m = p->av.multiplier;
    const int32_t sh = p->av.shift;
    const int32_t off = p->out_offset;
    vstrbq_s32(out, out_s8_x4(requantize_x4(a0, m, sh), off, -128, 127));
    vstrbq_s32(out + 4, out_s8_x4(requantize_x4(a1, m, sh), off, -128, 127));
    vstrbq_s32(out + 8, out_s8_x4(requantize_x4(a2, m, sh), off, -128, 127));
    vstrbq_s32(out + 12, out_s8_x4(requantize_x4(a3, m, sh), off, -128, 127));
    vstrbq_s32(out + 16, out_s8_x4(requantize_x4(a4, m, sh), off, -128, 127));
    vstrbq_s32(out + 20, out_s8_x4(requantize_x4(a5, m, sh), off, -128, 127));
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
    int32_t d0 = 0;
    for (; d0 + 24 <= hd; d0 += 24) {
        ws24(p, probs, v + d0, v_stride, corr, out + d0);
    }
    const int32_t left = hd - d0;
    if (left > 20) {
        ws_chunk(p, 6, left - 20, probs, v + d0, v_stride, corr, out + d0);
    } else if (left > 16) {
        ws_chunk(p, 5, left - 16, probs, v + d0, v_stride, corr, out + d0);
    } else if (left > 12) {
        ws_chunk(p, 4, left - 12, probs, v + d0, v_stride, corr, out + d0);
    } else if (left > 8) {
        ws_chunk(p, 3, left - 8, probs, v + d0, v_stride, corr, out + d0);
    } else if (left > 4) {
        ws_chunk(p, 2, left - 4, probs, v + d0, v_stride, corr, out + d0);
    } else if (left > 0) {
        ws_chunk(p, 1, left, probs, v + d0, v_stride, corr, out + d0);
    }
    return MCUF_OK;
}

#define KEY_BLOCK 16 /* keys per block of the score tile (its sums: 48 words of xbuf or stack) */

/* Two query rows qa, qb (int8, 16 < head_dim <= 32, each in two vectors kept in q0..q3, the second
 * predicated to head_dim - 16 lanes and zero beyond) against nk >= 1 key rows (k, k + k_stride, ...):
 * acc_a[j] = sum_d qa[d] k_j[d], acc_b[j] likewise, ksum[j] = sum_d k_j[d]. Per key two VLDRB
 * (the second predicated), VADDV and VADDVA of the key, four VMLADAV(A).S8, three stores, the row
 * step and LE: 14 instructions for 2 head_dim MACs. */
static __attribute__((noinline)) void dots2_hd32(const int8_t *qa, const int8_t *qb, int32_t rest, const int8_t *k,
                                                 int32_t k_stride, int32_t nk, int32_t *acc_a, int32_t *acc_b,
                                                 int32_t *ksum)
{
    int32_t a, b, ks;
    __asm__ volatile("vctp.8 %[rest]\n\t"
                     "vldrb.u8 q0, [%[qa]]\n\t"
                     "vldrb.u8 q2, [%[qb]]\n\t"
                     "vpstt\n\t"
                     "vldrbt.u8 q1, [%[qa], #16]\n\t"
                     "vldrbt.u8 q3, [%[qb], #16]\n\t"
                     "wls lr, %[nk], 2f\n"
                     "1:\n\t"
                     "vldrb.u8 q4, [%[k]]\n\t"
                     "vpst\n\t"
                     "vldrbt.u8 q5, [%[k], #16]\n\t"
                     "vaddv.s8 %[ks], q4\n\t"
                     "vaddva.s8 %[ks], q5\n\t"
                     "vmladav.s8 %[a], q0, q4\n\t"
                     "vmladava.s8 %[a], q1, q5\n\t"
                     "vmladav.s8 %[b], q2, q4\n\t"
                     "vmladava.s8 %[b], q3, q5\n\t"
                     "str %[a], [%[pa]], #4\n\t"
                     "str %[b], [%[pb]], #4\n\t"
                     "str %[ks], [%[pk]], #4\n\t"
                     "add %[k], %[k], %[stride]\n\t"
                     "le lr, 1b\n"
                     "2:"
                     : [a] "=&Te"(a), [b] "=&Te"(b), [ks] "=&Te"(ks), [k] "+r"(k), [pa] "+r"(acc_a), [pb] "+r"(acc_b),
                       [pk] "+r"(ksum)
                     : [qa] "r"(qa), [qb] "r"(qb), [rest] "r"(rest), [stride] "r"(k_stride), [nk] "r"(nk)
                     : "q0", "q1", "q2", "q3", "q4", "q5", "p0", "lr", "memory");
}

/* dots2_hd32 without the key sums (the tile's second pair of rows reuses the first pair's): per
 * key 11 instructions. */
static __attribute__((noinline)) void dots2_hd32_nosum(const int8_t *qa, const int8_t *qb, int32_t rest,
                                                       const int8_t *k, int32_t k_stride, int32_t nk, int32_t *acc_a,
                                                       int32_t *acc_b)
{
    int32_t a, b;
    __asm__ volatile("vctp.8 %[rest]\n\t"
                     "vldrb.u8 q0, [%[qa]]\n\t"
                     "vldrb.u8 q2, [%[qb]]\n\t"
                     "vpstt\n\t"
                     "vldrbt.u8 q1, [%[qa], #16]\n\t"
                     "vldrbt.u8 q3, [%[qb], #16]\n\t"
                     "wls lr, %[nk], 2f\n"
                     "1:\n\t"
                     "vldrb.u8 q4, [%[k]]\n\t"
                     "vpst\n\t"
                     "vldrbt.u8 q5, [%[k], #16]\n\t"
                     "vmladav.s8 %[a], q0, q4\n\t"
                     "vmladava.s8 %[a], q1, q5\n\t"
                     "vmladav.s8 %[b], q2, q4\n\t"
                     "vmladava.s8 %[b], q3, q5\n\t"
                     "str %[a], [%[pa]], #4\n\t"
                     "str %[b], [%[pb]], #4\n\t"
                     "add %[k], %[k], %[stride]\n\t"
                     "le lr, 1b\n"
                     "2:"
                     : [a] "=&Te"(a), [b] "=&Te"(b), [k] "+r"(k), [pa] "+r"(acc_a), [pb] "+r"(acc_b)
                     : [qa] "r"(qa), [qb] "r"(qb), [rest] "r"(rest), [stride] "r"(k_stride), [nk] "r"(nk)
                     : "q0", "q1", "q2", "q3", "q4", "q5", "p0", "lr", "memory");
}

/* The output stage of one pair of score rows for keys j0 .. j0 + nb: acc_a / acc_b plus kc (qo
 * times the key sums) plus the rows' base, 4 scores per step (the tail predicated). With `first`,
 * kc holds the key sums on entry and qo times them on exit (for the second pair). */
static inline __attribute__((always_inline)) void pair_out(const int32_t *acc_a, const int32_t *acc_b, int32_t *kc,
                                                            int32_t nb, int32_t qo, int32_t base_a, int32_t base_b,
                                                            int32_t m, int32_t sh, int32_t off, int8_t *out_a,
                                                            int8_t *out_b, bool first, bool right)
{
    int32_t j = 0;
    for (; j + 4 <= nb; j += 4) {
        int32x4_t c = vld1q_s32(kc + j);
        if (first) {
            c = vmulq_n_s32(c, qo);
            vst1q_s32(kc + j, c);
        }
        const int32x4_t sa = vaddq_n_s32(vaddq_s32(vld1q_s32(acc_a + j), c), base_a);
        const int32x4_t sb = vaddq_n_s32(vaddq_s32(vld1q_s32(acc_b + j), c), base_b);
        vstrbq_s32(out_a + j, out_s8_x4(requantize_x4_any(sa, m, sh, right), off, -128, 127));
        vstrbq_s32(out_b + j, out_s8_x4(requantize_x4_any(sb, m, sh, right), off, -128, 127));
    }
    if (j < nb) {
        const mve_pred16_t pj = vctp32q((uint32_t)(nb - j));
        int32x4_t c = vld1q_s32(kc + j);
        if (first) {
            c = vmulq_n_s32(c, qo);
            vst1q_s32(kc + j, c);
        }
        const int32x4_t sa = vaddq_n_s32(vaddq_s32(vld1q_s32(acc_a + j), c), base_a);
        const int32x4_t sb = vaddq_n_s32(vaddq_s32(vld1q_s32(acc_b + j), c), base_b);
        vstrbq_p_s32(out_a + j, out_s8_x4(requantize_x4_any(sa, m, sh, right), off, -128, 127), pj);
        vstrbq_p_s32(out_b + j, out_s8_x4(requantize_x4_any(sb, m, sh, right), off, -128, 127), pj);
    }
}

/* The score rows of n queries for 16 < head_dim <= 32, up to 4 rows per block of KEY_BLOCK keys:
 * two query rows per pass over the block (dots2_hd32, then dots2_hd32_nosum for the second pair,
 * which reuses the key sums; a missing row repeats the last one and writes the same bytes). With the offsets
 * factored out (each part an exact integer, combined in wrapping arithmetic, the total the
 * portable kernel's int32):
 *   sum_d (q[d] + qo)(k[d] + ko) = sum_d q[d] k[d] + qo sum_d k[d] + ko (sum_d q[d] + head_dim qo)
 * then the output stage on 4 scores per step (requantize_x4, out_s8_x4), the tail predicated. */
static inline __attribute__((always_inline)) void scores_tile_hd32_rq(const mcuf_attn_head_params *p, int32_t n,
                                                                       const int8_t *q, int32_t q_stride,
                                                                       const int8_t *k, int32_t k_stride,
                                                                       int8_t *scores, int32_t *buf, bool right)
{
    const int32_t hd = p->head_dim;
    const int32_t tokens = p->tokens;
    const int32_t qo = p->q_offset;
    const int32_t m = p->score.multiplier;
    const int32_t sh = p->score.shift;
    const int32_t off = p->score_offset;
    const mve_pred16_t last = vctp8q((uint32_t)(hd - 16));
    for (int32_t r0 = 0; r0 < n; r0 += 4) { /* up to 4 rows: two pairs sharing the key sums */
        const int32_t nr = n - r0 < 4 ? n - r0 : 4;
        const int8_t *qr[4];
        int8_t *out[4];
        int32_t base[4];
        for (int32_t i = 0; i < 4; i++) { /* a missing row repeats the last one: the same bytes again */
            const int32_t ri = r0 + (i < nr ? i : nr - 1);
            qr[i] = q + ri * q_stride;
            out[i] = scores + ri * tokens;
            const int32_t qsum = vaddvaq_s8(vaddvq_s8(vldrbq_s8(qr[i])), vldrbq_z_s8(qr[i] + 16, last));
            base[i] = wrap_mul(p->k_offset, wrap_add(qsum, wrap_mul(hd, qo)));
        }
        for (int32_t j0 = 0; j0 < tokens; j0 += KEY_BLOCK) {
            const int32_t nb = tokens - j0 < KEY_BLOCK ? tokens - j0 : KEY_BLOCK;
            int32_t *acc_a = buf;
            int32_t *acc_b = buf + KEY_BLOCK;
            int32_t *kc = buf + 2 * KEY_BLOCK; /* the key sums, then qo times them */
            const int8_t *kb = k + j0 * k_stride;
            dots2_hd32(qr[0], qr[1], hd - 16, kb, k_stride, nb, acc_a, acc_b, kc);
            pair_out(acc_a, acc_b, kc, nb, qo, base[0], base[1], m, sh, off, out[0] + j0, out[1] + j0, true, right);
            if (nr > 2) {
                dots2_hd32_nosum(qr[2], qr[3], hd - 16, kb, k_stride, nb, acc_a, acc_b);
                pair_out(acc_a, acc_b, kc, nb, qo, base[2], base[3], m, sh, off, out[2] + j0, out[3] + j0, false,
                         right);
            }
        }
    }
}

/* scores_tile_hd32_rq for a right-shift score scale (the models': 1/sqrt(head_dim) folded in) and
 * for any other; buf: 3 KEY_BLOCK words. */
static __attribute__((noinline)) void scores_tile_hd32(const mcuf_attn_head_params *p, int32_t n, const int8_t *q,
                                                       int32_t q_stride, const int8_t *k, int32_t k_stride,
                                                       int8_t *scores, int32_t *buf)
{
    if (p->score.shift <= -1) {
        scores_tile_hd32_rq(p, n, q, q_stride, k, k_stride, scores, buf, true);
    } else {
        scores_tile_hd32_rq(p, n, q, q_stride, k, k_stride, scores, buf, false);
    }
}

/* scores_tile_hd32 with its sums on the stack (a tile without the xbuf words). */
static __attribute__((noinline)) void scores_tile_hd32_stack(const mcuf_attn_head_params *p, int32_t n,
                                                             const int8_t *q, int32_t q_stride, const int8_t *k,
                                                             int32_t k_stride, int8_t *scores)
{
    int32_t buf[3 * KEY_BLOCK];
    scores_tile_hd32(p, n, q, q_stride, k, k_stride, scores, buf);
}

/* Two consecutive score rows (queries qa, qb = qa + q_stride; 16 < head_dim <= 32, each in two
 * vectors kept in q0..q3, the second predicated to head_dim - 16 lanes and zero beyond) against the
 * keys two at a time, right-shift score scale only (the models'; shift <= -1), the dot products
 * and the output stage in one pass: per key two VLDRB (the second predicated), VADDV / VADDVA for
 * the key sum ks, four VMLADAV(A).S8, then a + (qo ks + base_a) and b + (qo ks + base_b) (MLA and
 * ADD, wrapping: the total is the portable kernel's int32), and one VMOV of the two into the lanes
 * 0 / 2 (key j) or 1 / 3 (key j + 1) of q6 (row a first; the scatter offsets in q7 are set by the
 * same two-register VMOV form, row a's first, so each score meets its own offset whichever lane of
 * the pair the first register goes to); per pair of
 * keys requantize_x4_r (VQRDMULH, the sign fixup, VRSHL), + score offset (VQADD), the clamp to
 * int8 as VQSHL #24 then VSHR #24 (a saturating shift to the int8 range's int32 image and back:
 * clamp(v, -128, 127) exactly), and one VSTRB.32 scatter to out + j + {0, 1, T, T + 1} (q7):
 * 40 instructions per 4 scores, no int32 round trip through memory and no per-block calls.
 * AAPCS function (top-level assembly: every core register is used), args in a struct. */
typedef struct {
    const int8_t *qa, *qb; /* 0, 4 */
    int32_t rest;          /* 8: head_dim - 16, 1..16 */
    const int8_t *k;       /* 12 */
    int32_t k_stride;      /* 16 */
    int32_t pairs;         /* 20: tokens / 2 >= 1 */
    int8_t *out;           /* 24: row a's scores; row b's at out + tokens */
    int32_t qo;            /* 28 */
    int32_t base_a, base_b; /* 32, 36: k_offset (sum q + head_dim qo) per row */
    int32_t m, sh, off;    /* 40, 44, 48: the score scale (sh <= -1) and offset */
    int32_t tokens;        /* 52 */
} score_pair_args;

void mcufi_mve_scores_pair_hd32(const score_pair_args *a);

#define SCORE_KEY(lanes)                                                                                       \
    "vldrb.u8 q4, [r1]\n\t"                                                                                \
    "vpst\n\t"                                                                                             \
    "vldrbt.u8 q5, [r1, #16]\n\t"                                                                          \
    "add r1, r1, r3\n\t"                                                                                   \
    "vaddv.s8 r4, q4\n\t"                                                                                  \
    "vaddva.s8 r4, q5\n\t"                                                                                 \
    "vmladav.s8 r0, q0, q4\n\t"                                                                            \
    "vmladava.s8 r0, q1, q5\n\t"                                                                           \
    "vmladav.s8 r2, q2, q4\n\t"                                                                            \
    "vmladava.s8 r2, q3, q5\n\t"                                                                           \
    "mla r12, r4, r6, r7\n\t"                                                                              \
    "add r0, r0, r12\n\t"                                                                                  \
    "mla r12, r4, r6, r8\n\t"                                                                              \
    "add r2, r2, r12\n\t"                                                                                  \
    "vmov " lanes ", r0, r2\n\t"

__asm__(".pushsection .text.mcufi_mve_scores_pair_hd32,\"ax\",%progbits\n\t"
        ".balign 4\n\t"
        ".global mcufi_mve_scores_pair_hd32\n\t"
        ".hidden mcufi_mve_scores_pair_hd32\n\t"
        ".thumb_func\n\t"
        ".type mcufi_mve_scores_pair_hd32, %function\n"
        "mcufi_mve_scores_pair_hd32:\n\t"
        "push {r4-r11, lr}\n\t"
        "vpush {d8-d15}\n\t"
        "ldr r1, [r0, #0]\n\t"
        "ldr r2, [r0, #4]\n\t"
        "ldr r3, [r0, #8]\n\t"
        "vctp.8 r3\n\t"
        "vldrb.u8 q0, [r1]\n\t"
        "vldrb.u8 q2, [r2]\n\t"
        "vpstt\n\t"
        "vldrbt.u8 q1, [r1, #16]\n\t"
        "vldrbt.u8 q3, [r2, #16]\n\t"
        "ldr r3, [r0, #52]\n\t"
        "movs r2, #0\n\t"
        "vmov q7[2], q7[0], r2, r3\n\t" /* lanes 0, 2: 0, T */
        "adds r2, r2, #1\n\t"
        "adds r3, r3, #1\n\t"
        "vmov q7[3], q7[1], r2, r3\n\t" /* lanes 1, 3: 1, T + 1 */
        "ldr r1, [r0, #12]\n\t"
        "ldr r3, [r0, #16]\n\t"
        "ldr lr, [r0, #20]\n\t"
        "ldr r5, [r0, #24]\n\t"
        "ldr r6, [r0, #28]\n\t"
        "ldr r7, [r0, #32]\n\t"
        "ldr r8, [r0, #36]\n\t"
        "ldr r9, [r0, #40]\n\t"
        "ldr r10, [r0, #44]\n\t"
        "ldr r11, [r0, #48]\n\t"
        "dls lr, lr\n"
        "1:\n\t"
        SCORE_KEY("q6[2], q6[0]")
        SCORE_KEY("q6[3], q6[1]")
        "vqrdmulh.s32 q6, q6, r9\n\t"
        "vshr.s32 q4, q6, #31\n\t"
        "vadd.i32 q6, q6, q4\n\t"
        "vrshl.s32 q6, r10\n\t"
        "vqadd.s32 q6, q6, r11\n\t"
        "vqshl.s32 q6, q6, #24\n\t"
        "vshr.s32 q6, q6, #24\n\t"
        "vstrb.32 q6, [r5, q7]\n\t"
        "adds r5, r5, #2\n\t"
        "le lr, 1b\n\t"
        "vpop {d8-d15}\n\t"
        "pop {r4-r11, pc}\n\t"
        ".size mcufi_mve_scores_pair_hd32, .-mcufi_mve_scores_pair_hd32\n\t"
        ".popsection\n");

/* 4 score rows (16 < head_dim <= 32, an even number of keys, a right-shift score scale) as two
 * pairs of mcufi_mve_scores_pair_hd32; the rows' bases as in scores_tile_hd32_rq. */
static void scores_tile4_fused(const mcuf_attn_head_params *p, const int8_t *q, int32_t q_stride, const int8_t *k,
                               int32_t k_stride, int8_t *scores)
{
    const int32_t hd = p->head_dim;
    const mve_pred16_t last = vctp8q((uint32_t)(hd - 16));
    score_pair_args a = {NULL,       NULL, hd - 16, k, k_stride, p->tokens / 2, NULL, p->q_offset, 0, 0,
                         p->score.multiplier, p->score.shift, p->score_offset, p->tokens};
    int32_t base[4];
    for (int32_t i = 0; i < 4; i++) {
        const int8_t *qr = q + i * q_stride;
        const int32_t qsum = vaddvaq_s8(vaddvq_s8(vldrbq_s8(qr)), vldrbq_z_s8(qr + 16, last));
        base[i] = wrap_mul(p->k_offset, wrap_add(qsum, wrap_mul(hd, p->q_offset)));
    }
    for (int32_t r = 0; r < 4; r += 2) {
        a.qa = q + r * q_stride;
        a.qb = a.qa + q_stride;
        a.out = scores + r * p->tokens;
        a.base_a = base[r];
        a.base_b = base[r + 1];
        mcufi_mve_scores_pair_hd32(&a);
    }
}

void mcufi_attn_scores_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *q, int32_t q_stride,
                            const int8_t *k, int32_t k_stride, int32_t *xbuf, int8_t *scores)
{
    if (p->head_dim > 16 && p->head_dim <= 32 && n == 4 && p->score.shift <= -1 && (p->tokens & 1) == 0) {
        scores_tile4_fused(p, q, q_stride, k, k_stride, scores);
        return;
    }
    if (p->head_dim > 16 && p->head_dim <= 32) {
        /* the sums in xbuf when the tile has it (n == 4: mcufi_linear_tile_xbuf_words(head_dim, 4)
         * words, 48 or more for head_dim >= 21), else on the stack */
        if (n == 4 && xbuf != NULL && mcufi_linear_tile_xbuf_words(p->head_dim, 4) >= 3 * KEY_BLOCK) {
            scores_tile_hd32(p, n, q, q_stride, k, k_stride, scores, xbuf);
        } else {
            scores_tile_hd32_stack(p, n, q, q_stride, k, k_stride, scores);
        }
        return;
    }
    for (int32_t r = 0; r < n; r++) { /* checked parameters */
        scores_row(p, q + r * q_stride, k, k_stride, scores + r * p->tokens);
    }
}

/* Weighted sums against V transposed (vt [head_dim][tokens]): each output is a contiguous dot
 * product over the tokens. With p' = p + 128 and v' = v + vo,
 *   sum_j p'_j v'_j = sum_j p_j v_j + 128 sum_j v_j + vo sum_j p'_j
 * (each part and the total exact integers, combined in wrapping arithmetic, the total in int32
 * range: |sum| <= 255 * 255 * tokens < 2^31). Up to 4 probability rows share each V row: per
 * output dimension one mve_dot4x1 (per 16 tokens one VLDRB of V and one VADDVA for sum_j v_j, per
 * row one VLDRB and one VMLADAVA.S8: 11 instructions for 64 MACs, tail-predicated; with 4 rows
 * of at most 16 tokens, mve_dots4x4_n16 instead: the rows loaded once per 4 dimensions and kept in
 * registers, 13 instructions per dimension), 4 dimensions into a [row][4] block, then per row the output stage on the 4 dimensions (requantize_x4). A
 * group of fewer than 4 rows repeats its last row (its sums are not stored). */
static inline __attribute__((always_inline)) void ws_tile_rq(const mcuf_attn_head_params *p, int32_t n,
                                                              const int8_t *probs, const int8_t *vt, int8_t *out,
                                                              int32_t out_stride, bool right, bool few)
{
    const int32_t tokens = p->tokens;
    const int32_t hd = p->head_dim;
    const int32_t m = p->av.multiplier;
    const int32_t sh = p->av.shift;
    const int32_t off = p->out_offset;
    for (int32_t r0 = 0; r0 < n; r0 += 4) {
        const int32_t nr = n - r0 < 4 ? n - r0 : 4;
        const int8_t *x[4];
        int32_t corr[4];
        for (int32_t r = 0; r < 4; r++) {
            x[r] = probs + (r0 + (r < nr ? r : nr - 1)) * tokens;
        }
        for (int32_t r = 0; r < nr; r++) {
            int32_t psum = 0;
            for (int32_t j = 0; j < tokens; j += 16) {
                psum = vaddvaq_s8(psum, vldrbq_z_s8(x[r] + j, vctp8q((uint32_t)(tokens - j))));
            }
            psum = wrap_add(psum, wrap_mul(128, tokens)); /* sum_j (p[j] + 128) <= 255 * tokens */
            corr[r] = wrap_mul(p->v_offset, psum);
        }
        const int8_t *v_row = vt;
        for (int32_t d = 0; d < hd; d += 4) {
            int32_t acc[16]; /* [row][dimension] */
            int32_t sv[4];
            const int32_t nd = hd - d < 4 ? hd - d : 4;
            if (nd < 4) {
                vst1q_s32(sv, vdupq_n_s32(0));
                for (int32_t r = 0; r < 4; r++) {
                    vst1q_s32(acc + 4 * r, vdupq_n_s32(0));
                }
            }
            if (few && nd == 4) { /* n = 4 rows of <= 16 tokens: the 4 rows in registers (mcuf_mve.h) */
                mve_dots4x4_n16(x[0], tokens, v_row, (int32_t(*)[4])acc, sv);
                v_row += 4 * tokens;
            } else {
                for (int32_t i = 0; i < nd; i++) {
                    mve_dot4x1(x[0], x[1], x[2], x[3], v_row, tokens, acc + i, sv + i);
                    v_row += tokens;
                }
            }
            const int32x4_t sv128 = vshlq_n_s32(vld1q_s32(sv), 7); /* 128 sum_j v_j, wrapping */
            const mve_pred16_t pd = vctp32q((uint32_t)nd);
            for (int32_t r = 0; r < nr; r++) {
                const int32x4_t sum = vaddq_n_s32(vaddq_s32(vld1q_s32(acc + 4 * r), sv128), corr[r]);
                vstrbq_p_s32(out + (r0 + r) * out_stride + d, out_s8_x4(requantize_x4_any(sum, m, sh, right), off, -128, 127),
                             pd);
            }
        }
    }
}

/* 4 probability rows of n <= 16 tokens against every row of V transposed, with a right-shift
 * scale (av.shift <= -1): the rows 0..2 loaded once (predicated to n lanes, zero beyond) into
 * q1-q3, then per output dimension d (V^T row d, one predicated load, and row 3 into q7) VADDV for
 * sum_j v_j, four VMLADAV.S8, the 4 sums into q7's lanes by two VMOVs (q4: the rows' output
 * offsets r * out_stride, q5: corr[r] = v_offset * sum_j p'_j, set by the same VMOV form, so each
 * row's sum meets its own offset and correction), + 128 sum_j v_j (LSL, VADD; wrapping, as
 * ws_tile_rq), + corr (VADD), requantize_x4_r (VQRDMULH, the sign fixup, VRSHL), + out_offset
 * (VQADD), the clamp to [-128, 127] (VQSHL #24 saturates exactly the values outside it, VSHR #24
 * brings them back: out_s8_x4's integers) and one VSTRB.32 scatter of the 4 bytes to
 * out[r * out_stride + d]: 24 instructions per dimension, where ws_tile_rq spends about 41.
 * AAPCS (top-level assembly), args in a struct. */
typedef struct {
    const int8_t *probs;  /* 0: [4][n] */
    int32_t n;            /* 4: tokens, 1..16 */
    const int8_t *vt;     /* 8: [head_dim][n] */
    int32_t hd;           /* 12: head_dim >= 1 */
    int8_t *out;          /* 16 */
    int32_t out_stride;   /* 20 */
    int32_t m;            /* 24: av.multiplier */
    int32_t sh;           /* 28: av.shift <= -1 */
    int32_t off;          /* 32: out_offset */
    const int32_t *corr;  /* 36: [4] */
} ws4_args;

void mcufi_mve_ws4_n16_r(const ws4_args *a);

__asm__(".pushsection .text.mcufi_mve_ws4_n16_r,\"ax\",%progbits\n\t"
        ".balign 4\n\t"
        ".global mcufi_mve_ws4_n16_r\n\t"
        ".hidden mcufi_mve_ws4_n16_r\n\t"
        ".thumb_func\n\t"
        ".type mcufi_mve_ws4_n16_r, %function\n"
        "mcufi_mve_ws4_n16_r:\n\t"
        "push {r4-r11, lr}\n\t"
        "vpush {d8-d15}\n\t"
        "ldr r4, [r0, #20]\n\t"
        "movs r6, #0\n\t"
        "add r8, r4, r4\n\t"
        "vmov q4[2], q4[0], r6, r8\n\t" /* row 0: 0, row 2: 2 out_stride */
        "add r6, r8, r4\n\t"
        "vmov q4[3], q4[1], r4, r6\n\t" /* row 1: out_stride, row 3: 3 out_stride */
        "ldr r4, [r0, #36]\n\t"
        "ldrd r6, r10, [r4]\n\t"        /* corr[0], corr[1] */
        "ldrd r8, r11, [r4, #8]\n\t"    /* corr[2], corr[3] */
        "vmov q5[2], q5[0], r6, r8\n\t"
        "vmov q5[3], q5[1], r10, r11\n\t"
        "ldr r1, [r0, #0]\n\t"
        "ldr r2, [r0, #4]\n\t"
        "ldr r3, [r0, #8]\n\t"
        "ldr lr, [r0, #12]\n\t"
        "ldr r12, [r0, #16]\n\t"
        "ldr r5, [r0, #24]\n\t"
        "ldr r7, [r0, #28]\n\t"
        "ldr r9, [r0, #32]\n\t"
        "vctp.8 r2\n\t"
        "add r4, r1, r2\n\t"
        "add r6, r4, r2\n\t"
        "vpsttt\n\t"
        "vldrbt.u8 q1, [r1]\n\t"
        "vldrbt.u8 q2, [r4]\n\t"
        "vldrbt.u8 q3, [r6]\n\t"
        "add r1, r6, r2\n\t"
        "dls lr, lr\n"
        "1:\n\t"
        "vpstt\n\t"
        "vldrbt.u8 q0, [r3]\n\t"
        "vldrbt.u8 q7, [r1]\n\t"
        "add r3, r3, r2\n\t"
        "vaddv.s8 r4, q0\n\t"
        "vmladav.s8 r0, q7, q0\n\t"
        "vmladav.s8 r6, q1, q0\n\t"
        "vmladav.s8 r8, q3, q0\n\t"
        "vmov q7[2], q7[0], r6, r8\n\t"
        "vmladav.s8 r6, q2, q0\n\t"
        "vmov q7[3], q7[1], r6, r0\n\t"
        "lsls r4, r4, #7\n\t"
        "vadd.i32 q7, q7, r4\n\t"
        "vadd.i32 q7, q7, q5\n\t"
        "vqrdmulh.s32 q7, q7, r5\n\t"
        "vshr.s32 q6, q7, #31\n\t"
        "vadd.i32 q7, q7, q6\n\t"
        "vrshl.s32 q7, r7\n\t"
        "vqadd.s32 q7, q7, r9\n\t"
        "vqshl.s32 q7, q7, #24\n\t"
        "vshr.s32 q7, q7, #24\n\t"
        "vstrb.32 q7, [r12, q4]\n\t"
        "add r12, r12, #1\n\t"
        "le lr, 1b\n\t"
        "vpop {d8-d15}\n\t"
        "pop {r4-r11, pc}\n\t"
        ".size mcufi_mve_ws4_n16_r, .-mcufi_mve_ws4_n16_r\n\t"
        ".popsection\n");

/* ws_tile_rq for a tile of 4 rows of at most 16 tokens, out of line: its q4-q7 stay out of the
 * general path's register allocation (inlined there, they cost vit-96-rgb's tiles about 70
 * instructions per call). A right-shift scale: mcufi_mve_ws4_n16_r. */
static __attribute__((noinline)) void ws_tile_few(const mcuf_attn_head_params *p, const int8_t *probs,
                                                  const int8_t *vt, int8_t *out, int32_t out_stride)
{
    if (p->av.shift <= -1) {
        const int32_t tokens = p->tokens;
        const mve_pred16_t pr = vctp8q((uint32_t)tokens);
        int32_t corr[4];
        for (int32_t r = 0; r < 4; r++) { /* sum_j (p[j] + 128) <= 255 * tokens, as ws_tile_rq */
            const int32_t psum = wrap_add(vaddvq_s8(vldrbq_z_s8(probs + r * tokens, pr)), wrap_mul(128, tokens));
            corr[r] = wrap_mul(p->v_offset, psum);
        }
        const ws4_args a = {probs,         tokens,        vt,          p->head_dim, out,
                            out_stride,    p->av.multiplier, p->av.shift, p->out_offset, corr};
        mcufi_mve_ws4_n16_r(&a);
    } else {
        ws_tile_rq(p, 4, probs, vt, out, out_stride, false, true);
    }
}

void mcufi_attn_weighted_sum_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *probs,
                                  const int8_t *vt, int32_t *xbuf, int8_t *out, int32_t out_stride)
{
    (void)xbuf;
    if (n == 4 && p->tokens <= 16) {
        ws_tile_few(p, probs, vt, out, out_stride);
    } else if (p->av.shift <= -1) { /* right shifts (requantize_x4_r), else any */
        ws_tile_rq(p, n, probs, vt, out, out_stride, true, false);
    } else {
        ws_tile_rq(p, n, probs, vt, out, out_stride, false, false);
    }
}

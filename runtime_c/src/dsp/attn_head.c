/*
 * One attention head, one query: the score row and the probability-weighted sum of V (TFLite
 * BATCH_MATMUL int8 semantics), for cores with the DSP extension (Cortex-M4, M7, M33). Replaces
 * ../attn_head.c when the project builds with KERNELS=optimized: the same functions, the same
 * checks, bit-exact outputs.
 *
 * The zero-point of the strided operand is factored out of the sum:
 *   sum_d (q_d + qo)(k_jd + ko) = sum_d (q_d + qo) k_jd + ko * Sq,     Sq = sum_d (q_d + qo)
 *   sum_j (p_j + 128)(v_jd + vo) = sum_j (p_j + 128) v_jd + vo * Sp,   Sp = sum_j (p_j + 128)
 * Each of the two parts is bounded by 255 * 128 * n <= 255 * 128 * 32767 < 2^31 (n = head_dim or
 * tokens), and their sum is the portable kernel's exact int32 sum, so nothing overflows and the
 * result is the same. The remaining products use the 16-bit SIMD dual MAC (SMLAD) on int16
 * lanes: q + qo and p + 128 are in [-255, 255], k and v in [-128, 127].
 */
#if !defined(__ARM_FEATURE_DSP) || !defined(__ARM_FEATURE_SIMD32)
#error "runtime/src/dsp/attn_head.c needs the Arm DSP extension (Cortex-M4/M7/M33): build with KERNELS=portable"
#endif

#include <arm_acle.h>
#include <stddef.h>
#include <string.h>

#include "mcuf.h"

#define ATTN_MAX 32767 /* tokens, head_dim: 255 * 255 * 32767 < 2^31 */

/* A word of 4 int8 from any address (unaligned LDR: Armv7-M / Armv8-M mainline, normal memory). */
static inline int32_t load_s8x4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Bytes 1 and 3 of x, sign-extended into two int16 lanes (gcc does not fold the rotation). */
static inline int32_t sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* Low lane of a, low lane of b: (a.lo, b.lo) as (low, high). */
static inline int32_t pkhbt(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* High lane of b, high lane of a: (b.hi, a.hi) as (low, high). */
static inline int32_t pkhtb(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline int32_t dup16(int32_t v)
{
    return (int32_t)(((uint32_t)v << 16) | ((uint32_t)v & 0xFFFFu));
}

/* floor((x * m + 2^30) / 2^31) for int32 x, m other than x == m == INT32_MIN (then it fits
 * int32): SMLAL into a 64-bit accumulator preset to 2^30, result = accumulator bits [62:31]. */
static inline int32_t mul_round31(int32_t x, int32_t m)
{
    uint32_t lo = UINT32_C(1) << 30;
    uint32_t hi = 0u;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(x), "r"(m));
    return (int32_t)((lo >> 31) | (hi << 1));
}

/*
 * mcuf_requantize(x, m, s) for checked parameters: m in {0} U [2^30, 2^31), s in [-31, 30].
 * See dsp/linear.c: the left shift saturates as the portable int64 product + clamp; srdhm's
 * truncating division of x*m + nudge by 2^31 equals floor((x*m + 2^30) / 2^31) for both signs
 * (m >= 0: no saturating product); rdbpot rounds half away from zero.
 */
static inline int32_t requantize(int32_t x, int32_t m, int32_t s)
{
    int32_t right = -s;
    if (s > 0) {
        const int32_t lim = INT32_MAX >> s; /* 2^(31-s) - 1; INT32_MIN >> s == -lim - 1 */
        x = x > lim ? INT32_MAX : (x < -lim - 1 ? INT32_MIN : x * (INT32_C(1) << s));
        right = 0;
    }
    const int32_t y = mul_round31(x, m);
    const uint32_t mask = (UINT32_C(1) << right) - 1u; /* right in [0, 31] */
    const uint32_t threshold = (mask >> 1) + ((uint32_t)y >> 31);
    return (y >> right) + (((uint32_t)y & mask) > threshold ? 1 : 0);
}

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

/* Requantized output value. Not inlined: one copy instead of seven saves ~1 KiB of flash. */
static __attribute__((noinline)) int8_t to_s8(const mcuf_requant *rq, int32_t acc, int32_t offset)
{
    /* SSAT to [-256, 255] keeps r + offset in range and the result unchanged (as the portable). */
    const int32_t r = __ssat(requantize(acc, rq->multiplier, rq->shift), 9) + offset;
    return (int8_t)__ssat(r, 8);
}

mcuf_status mcuf_attn_scores_s8(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k,
                                int32_t k_stride, int8_t *scores)
{
    if (check_head(p) != MCUF_OK || q == NULL || k == NULL || scores == NULL || k_stride < p->head_dim) {
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
    if (check_head(p) != MCUF_OK || probs == NULL || v == NULL || out == NULL || v_stride < p->head_dim) {
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

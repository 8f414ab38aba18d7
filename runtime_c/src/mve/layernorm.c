/*
 * Integer LayerNorm (mcuf.h) with Helium (MVE) on the Cortex-M55. Replaces ../layernorm.c (and
 * ../dsp/layernorm.c) with KERNELS=optimized on an M55: the same function, the same checks
 * (mcufi_layernorm_check), the same scale (mcufi_layernorm_inv), bit-exact outputs.
 *
 * Sums, 16 inputs per step (the tail predicated): with x = in + offset,
 *   S = sum x = sum in + dim * offset,  Q = sum x^2 = sum in^2 + 2 offset sum in + dim offset^2
 * (VADDVA.S8, VMLADAVA.S8; every term exact in int32: |S| < 2^18, Q < 2^26).
 * Output, 4 values per step, every 64-bit step of the portable kernel from 32-bit halves:
 *   - d = in * dim + (offset * dim - S) (VMLAS), |d| < 2^19;
 *   - n = floor((d * inv + 2^(29-K)) / 2^(30-K)): the product's high word (VMULH.S32) and low
 *     word (VMUL), the rounding constant added to the low word with its carry into the high
 *     word, then n = high * 2^(2+K) | low >> (30-K) (|n| < 2^31, so the low 32 bits are n);
 *   - acc = n * gamma + beta saturated to int32: the same two words, beta sign-extended with the
 *     carry, and the saturated value wherever the high word is not the low word's sign;
 *   - requantize_x4 and out_s8_x4 (mcuf_mve.h), a narrowing store.
 */
#include <stddef.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

/* (hi, lo) + c for a 64-bit value in two int32 vectors (lo unsigned) and c >= 0 in one lane set. */
static inline int32x4_t carry_into(int32x4_t hi, uint32x4_t lo, uint32x4_t sum)
{
    /* the addition carried where the unsigned sum is below the old low word */
    return vaddq_m_n_s32(hi, hi, 1, vcmphiq_u32(lo, sum));
}

mcuf_status mcuf_layernorm_s8(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_layernorm_check(p, input, output);
    if (st != MCUF_OK) {
        return st;
    }
    const int32_t dim = p->dim;
    const int32_t in_off = p->input_offset;

    int32_t s_in = 0; /* sum in, |.| <= 128 * 1024 */
    int32_t q_in = 0; /* sum in^2 <= 2^14 * 1024 */
    for (int32_t i = 0; i < dim; i += 16) {
        const int8x16_t v = vldrbq_z_s8(input + i, vctp8q((uint32_t)(dim - i)));
        s_in = vaddvaq_s8(s_in, v);
        q_in = vmladavaq_s8(q_in, v, v);
    }
    const int32_t sum = s_in + dim * in_off;                               /* |S| <= 255 * 1024 */
    const int32_t sq = q_in + 2 * in_off * s_in + dim * in_off * in_off; /* Q <= 255^2 * 1024 */
    const int32_t inv = mcufi_layernorm_inv(p, sum, sq);

    const int32_t k = MCUF_LN_NORM_BITS;
    const int32_t dc = in_off * dim - sum; /* d = in * dim + dc, |dc| < 2^19 */
    const int32_t m = p->out.multiplier;
    const int32_t sh = p->out.shift;
    const int32_t out_off = p->output_offset;
    const int32x4_t vdim = vdupq_n_s32(dim);
    const int32x4_t vmax = vdupq_n_s32(INT32_MAX);
    for (int32_t i = 0; i < dim; i += 4) {
        const mve_pred16_t pr = vctp32q((uint32_t)(dim - i));
        const int32x4_t d = vmlasq_n_s32(vldrbq_z_s32(input + i, pr), vdim, dc);
        /* n = floor((d * inv + 2^(29-K)) / 2^(30-K)) */
        const uint32x4_t lo = vreinterpretq_u32_s32(vmulq_n_s32(d, inv));
        const uint32x4_t lo_r = vaddq_n_u32(lo, UINT32_C(1) << (29 - k));
        const int32x4_t hi = carry_into(vmulhq_s32(d, vdupq_n_s32(inv)), lo, lo_r);
        const int32x4_t n = vreinterpretq_s32_u32(
            vorrq_u32(vreinterpretq_u32_s32(vshlq_n_s32(hi, 2 + k)), vshrq_n_u32(lo_r, 30 - k)));
        /* acc = sat32(n * gamma + beta) */
        const int32x4_t g = vldrwq_z_s32(p->gamma + i, pr);
        const int32x4_t b = vldrwq_z_s32(p->beta + i, pr);
        const uint32x4_t plo = vreinterpretq_u32_s32(vmulq_s32(n, g));
        const uint32x4_t s = vaddq_u32(plo, vreinterpretq_u32_s32(b));
        const int32x4_t phi = carry_into(vaddq_s32(vmulhq_s32(n, g), vshrq_n_s32(b, 31)), plo, s);
        const int32x4_t lo_s = vreinterpretq_s32_u32(s);
        const int32x4_t sat = veorq_s32(vshrq_n_s32(phi, 31), vmax); /* INT32_MIN or INT32_MAX */
        const int32x4_t acc = vpselq_s32(lo_s, sat, vcmpeqq_s32(phi, vshrq_n_s32(lo_s, 31)));
        /* in place: these four inputs are already read */
        vstrbq_p_s32(output + i, out_s8_x4(requantize_x4(acc, m, sh), out_off, -128, 127), pr);
    }
    return MCUF_OK;
}

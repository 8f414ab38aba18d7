/*
 * Integer LayerNorm (mcuf.h) with Helium (MVE) on the Cortex-M55. Replaces ../layernorm.c (and
 * ../dsp/layernorm.c) with KERNELS=optimized on an M55: the same function, the same checks
 * (mcufi_layernorm_check), the same scale as mcufi_layernorm_inv (ln_inv below), bit-exact outputs.
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
#include <stdbool.h>
#include <stddef.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

/* (hi, lo) + c for a 64-bit value in two int32 vectors (lo unsigned) and c >= 0 in one lane set. */
static inline int32x4_t carry_into(int32x4_t hi, uint32x4_t lo, uint32x4_t sum)
{
    /* the addition carried where the unsigned sum is below the old low word */
    return vaddq_m_n_s32(hi, hi, 1, vcmphiq_u32(lo, sum));
}

/* mcufi_layernorm_inv's scale, the same integer, without its 32 64-bit digit steps and its 64-bit
 * division (__aeabi_uldivmod), several hundred instructions per row on the M55:
 *   - ln_isqrt32: floor(sqrt(v)) of a 32-bit v by Newton's iteration (32-bit UDIVs), and the
 *     remainder v - root^2;
 *   - ln_isqrt_u64: floor(sqrt(n)) of a 64-bit n by one Karatsuba step (Zimmermann 1999): n
 *     shifted left by an even z into [2^62, 2^64) (so floor(sqrt(n)) = s >> z/2), written
 *     a3 b^3 + a2 b^2 + a1 b + a0 with b = 2^16; (s1, r1) = the square root and remainder of
 *     a3 b + a2 (s1 in [2^15, 2^16), r1 <= 2 s1); (q, u) = divmod(r1 b + a1, 2 s1), one UDIV of
 *     floor((r1 b + a1) / 2) by s1 (< 2^32; floor(floor(X / 2) / s1) = floor(X / (2 s1)));
 *     s = s1 b + q, minus 1 when u b + a0 - q^2 < 0 (one correction suffices for a normalised n);
 *   - floor(2^44 / sigma) by mve_udiv_shifted (mcuf_mve.h; sigma >= 2^31: the 64-bit division).
 * Checked against mcuf_isqrt_u64 and the 64-bit division on 60 M random values, every square and
 * its neighbours up to 3 M^2 and near 2^63, and every sigma in [2^14, 5 M). */
/* floor(sqrt(v)) for v < 2^32, *rem = v - root^2: Newton's iteration x' = floor((x + floor(v / x)) / 2)
 * from x0 = 2^ceil(b / 2) > sqrt(v) (b = the bit length of v; x0 <= 2^16, so x + v / x < 2^17),
 * which decreases strictly until it reaches floor(sqrt(v)) and stops there (the next x' is not
 * smaller): about 5 UDIV steps where the digit-by-digit loop took 16 (about 130 instructions).
 * The same root and remainder as that loop for every v < 2^32 (checked on the host, all of them). */
static inline uint32_t ln_isqrt32(uint32_t v, uint32_t *rem)
{
    if (v == 0u) {
        *rem = 0u;
        return 0u;
    }
    const int32_t b = 32 - __builtin_clz(v);
    uint32_t x = UINT32_C(1) << ((b + 1) >> 1);
    uint32_t y = (x + v / x) >> 1;
    while (y < x) {
        x = y;
        y = (x + v / x) >> 1;
    }
    *rem = v - x * x;
    return x;
}

static inline uint32_t ln_isqrt_u64(uint64_t n)
{
    uint32_t rem;
    if ((n >> 32) == 0u) {
        return ln_isqrt32((uint32_t)n, &rem);
    }
    const int32_t z = __builtin_clzll(n) & ~1;
    n <<= z;
    const uint32_t a1 = (uint32_t)(n >> 16) & 0xFFFFu;
    const uint32_t a0 = (uint32_t)n & 0xFFFFu;
    const uint32_t s1 = ln_isqrt32((uint32_t)(n >> 32), &rem);
    const uint32_t half = (rem << 15) + (a1 >> 1);
    const uint32_t q = half / s1;
    const uint32_t u = ((half - q * s1) << 1) + (a1 & 1u);
    uint64_t s = ((uint64_t)s1 << 16) + q;
    if ((int64_t)(((uint64_t)u << 16) + a0) < (int64_t)((uint64_t)q * q)) {
        s -= 1u;
    }
    return (uint32_t)(s >> (z >> 1));
}

static inline int32_t ln_inv(const mcuf_layernorm_params *p, int32_t sum, int32_t sq)
{
    const int64_t d_var = (int64_t)p->dim * sq - (int64_t)sum * sum;
    const uint64_t r = ((uint64_t)d_var << (2 * MCUF_LN_SQRT_BITS)) + p->epsilon;
    uint32_t sigma = ln_isqrt_u64(r);
    if (sigma < (UINT32_C(1) << MCUF_LN_SQRT_BITS)) {
        sigma = UINT32_C(1) << MCUF_LN_SQRT_BITS;
    }
    if (sigma >= (UINT32_C(1) << 31)) {
        return (int32_t)((UINT64_C(1) << (30 + MCUF_LN_SQRT_BITS)) / sigma);
    }
    return (int32_t)mve_udiv_shifted(1u, 30 + MCUF_LN_SQRT_BITS, sigma); /* sigma >= 2^14: <= 2^30 */
}

/* ln_short's bounds on |gamma| and |beta| (gb[0], gb[1]): one scan of the parameters per call
 * (per tile of rows with mcufi_mve_layernorm_rows), not per row. */
static void ln_param_max(const mcuf_layernorm_params *p, uint32_t gb[2])
{
    uint32_t g_max = 0u;
    uint32_t b_max = 0u;
    const int32_t *g = p->gamma;
    const int32_t *b = p->beta;
    const int32_t *end = g + (p->dim & ~3);
    while (g != end) {
        g_max = vmaxavq_s32(g_max, vld1q_s32(g));
        b_max = vmaxavq_s32(b_max, vld1q_s32(b));
        g += 4;
        b += 4;
    }
    if ((p->dim & 3) != 0) {
        const mve_pred16_t pr = vctp32q((uint32_t)(p->dim & 3));
        g_max = vmaxavq_p_s32(g_max, vldrwq_z_s32(g, pr), pr);
        b_max = vmaxavq_p_s32(b_max, vldrwq_z_s32(b, pr), pr);
    }
    gb[0] = g_max;
    gb[1] = b_max;
}


/* Whether the row may take ln_rows_short: d_i = in_i * dim + dc is monotonic in in_i, so its extremes
 * are d_lo and d_hi; with |d| < 2^17, n_i = floor((d_i * inv + 2^17) / 2^18) (K = 12) is
 * VRMULH(d_i * 2^14, inv) = floor((d_i * 2^14 * inv + 2^31) / 2^32), the same integer (d_i * 2^14
 * in int32; the DSP twin's SMMULR), and |n_i| <= (|d|max * inv) / 2^18 + 1; and when
 * |n|max * |gamma|max + |beta|max < 2^31, n_i * gamma[i] + beta[i] is in int32 (nothing to
 * saturate) and a VMUL and a VADD compute it. Models' LayerNorms take it (|gamma| < 2^13, |beta| < 2^30,
 * |n| < 2^12 sqrt(dim): mcuf.h); the tests' extreme gamma and beta take the general loop.
 * gb: ln_param_max. */
static bool ln_short(int32_t d_lo, int32_t d_hi, int32_t inv, const uint32_t gb[2])
{
    const uint32_t a_lo = d_lo < 0 ? 0u - (uint32_t)d_lo : (uint32_t)d_lo;
    const uint32_t a_hi = d_hi < 0 ? 0u - (uint32_t)d_hi : (uint32_t)d_hi;
    const uint32_t d_max = a_lo > a_hi ? a_lo : a_hi;
    if (d_max >= (UINT32_C(1) << 17) || MCUF_LN_NORM_BITS != 12) {
        return false;
    }
    const uint64_t n_max = (((uint64_t)d_max * (uint32_t)inv) >> 18) + 1u;
    return n_max * gb[0] + gb[1] < (UINT64_C(1) << 31);
}

/* The row for ln_short's case, 4 values per step: d * 2^14 (VLDRB.S32, one VMLAS with dim * 2^14 and
 * dc * 2^14: |d| < 2^17, so the wrapped products give the true d * 2^14), n (VRMULH),
 * acc = beta + n * gamma (VMUL, VADD), requantize_x4, out_s8_x4 and a narrowing store; the last
 * dim % 4 values predicated. The parameters are read into locals first (the int8 stores could
 * alias them, which made gcc reload the gamma and beta pointers every step). */
static inline __attribute__((always_inline)) void ln_rows_short_rq(const mcuf_layernorm_params *p,
                                                                    const int8_t *input, int8_t *output, int32_t dc,
                                                                    int32_t inv, bool right)
{
    const int32_t dim = p->dim;
    const int32_t m = p->out.multiplier;
    const int32_t sh = p->out.shift;
    const int32_t out_off = p->output_offset;
    const int32_t *gamma = p->gamma;
    const int32_t *beta = p->beta;
    const int32x4_t vdim14 = vdupq_n_s32((int32_t)((uint32_t)dim << 14));
    const int32_t dc14 = (int32_t)((uint32_t)dc << 14);
    const int32x4_t vinv = vdupq_n_s32(inv);
    const int32x4_t lo = vdupq_n_s32(-128);
    const int32x4_t hi = vdupq_n_s32(127);
    for (int32_t i = dim >> 2; i > 0; i--) {
        const int32x4_t d14 = vmlasq_n_s32(vldrbq_s32(input), vdim14, dc14);
        const int32x4_t n = vrmulhq_s32(d14, vinv);
        const int32x4_t acc = vaddq_s32(vld1q_s32(beta), vmulq_s32(n, vld1q_s32(gamma)));
        const int32x4_t r = requantize_x4_any(acc, m, sh, right);
        /* in place: these four inputs are already read */
        vstrbq_s32(output, vminq_s32(vmaxq_s32(vqaddq_n_s32(r, out_off), lo), hi));
        input += 4;
        output += 4;
        gamma += 4;
        beta += 4;
    }
    if ((dim & 3) != 0) {
        const mve_pred16_t pr = vctp32q((uint32_t)(dim & 3));
        const int32x4_t d14 = vmlasq_n_s32(vldrbq_z_s32(input, pr), vdim14, dc14);
        const int32x4_t n = vrmulhq_s32(d14, vinv);
        const int32x4_t acc = vaddq_s32(vldrwq_z_s32(beta, pr), vmulq_s32(n, vldrwq_z_s32(gamma, pr)));
        const int32x4_t r = requantize_x4_any(acc, m, sh, right);
        vstrbq_p_s32(output, vminq_s32(vmaxq_s32(vqaddq_n_s32(r, out_off), lo), hi), pr);
    }
}

/* ln_rows_short_rq for a right-shift output scale (requantize_x4_r) and for any other. */
static void ln_rows_short(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output, int32_t dc,
                          int32_t inv)
{
    if (p->out.shift <= -1) {
        ln_rows_short_rq(p, input, output, dc, inv, true);
    } else {
        ln_rows_short_rq(p, input, output, dc, inv, false);
    }
}

/* One row, the parameters checked and scanned (gb: ln_param_max). */
static void ln_row(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output, const uint32_t gb[2])
{
    const int32_t dim = p->dim;
    const int32_t in_off = p->input_offset;

    int32_t s_in = 0; /* sum in, |.| <= 128 * 1024 */
    int32_t q_in = 0; /* sum in^2 <= 2^14 * 1024 */
    int8_t in_lo = input[0];
    int8_t in_hi = input[0];
    int32_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        const int8x16_t v = vldrbq_s8(input + i);
        s_in = vaddvaq_s8(s_in, v);
        q_in = vmladavaq_s8(q_in, v, v);
        in_lo = vminvq_s8(in_lo, v);
        in_hi = vmaxvq_s8(in_hi, v);
    }
    if (i < dim) {
        const mve_pred16_t pr = vctp8q((uint32_t)(dim - i));
        const int8x16_t v = vldrbq_z_s8(input + i, pr);
        s_in = vaddvaq_s8(s_in, v);
        q_in = vmladavaq_s8(q_in, v, v);
        in_lo = vminvq_p_s8(in_lo, v, pr);
        in_hi = vmaxvq_p_s8(in_hi, v, pr);
    }
    const int32_t sum = s_in + dim * in_off;                               /* |S| <= 255 * 1024 */
    const int32_t sq = q_in + 2 * in_off * s_in + dim * in_off * in_off; /* Q <= 255^2 * 1024 */
    const int32_t inv = ln_inv(p, sum, sq);

    const int32_t k = MCUF_LN_NORM_BITS;
    const int32_t dc = in_off * dim - sum; /* d = in * dim + dc, |dc| < 2^19 */
    const int32_t m = p->out.multiplier;
    const int32_t sh = p->out.shift;
    const int32_t out_off = p->output_offset;
    const int32x4_t vdim = vdupq_n_s32(dim);
    if (ln_short(dim * in_lo + dc, dim * in_hi + dc, inv, gb)) {
        ln_rows_short(p, input, output, dc, inv);
        return;
    }
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
}

mcuf_status mcuf_layernorm_s8(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_layernorm_check(p, input, output);
    if (st != MCUF_OK) {
        return st;
    }
    uint32_t gb[2];
    ln_param_max(p, gb);
    ln_row(p, input, output, gb);
    return MCUF_OK;
}

mcuf_status mcufi_mve_layernorm_rows(const mcuf_layernorm_params *p, int32_t n, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_layernorm_check(p, input, output);
    if (st != MCUF_OK || n < 1) {
        return st;
    }
    uint32_t gb[2];
    ln_param_max(p, gb);
    for (int32_t r = 0; r < n; r++) {
        ln_row(p, input, output, gb);
        input += p->dim;
        output += p->dim;
    }
    return MCUF_OK;
}

void mcufi_mve_layernorm_scan(const mcuf_layernorm_params *p, uint32_t gb[2])
{
    ln_param_max(p, gb);
}

void mcufi_mve_layernorm_row(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output, const uint32_t gb[2])
{
    ln_row(p, input, output, gb);
}

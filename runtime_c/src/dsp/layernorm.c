/*
 * Integer LayerNorm (I-BERT style) for cores with the DSP extension (Cortex-M4, M7, M33).
 * Replaces ../layernorm.c when the project builds with KERNELS=optimized: the same function,
 * the same checks (mcufi_layernorm_check), bit-exact outputs. See mcuf.h for the arithmetic.
 *
 * One SIMD pass gives S = sum x_i and Q = sum x_i^2 (x_i = in_i + offset, |x_i| <= 255, so
 * |S| <= 255 * 1024 and Q <= 255^2 * 1024 < 2^26: exact in int32 with SMLAD); the scale
 * (epsilon, square root, reciprocal) is mcufi_layernorm_inv, shared with the portable kernel.
 */
#include <stddef.h>

#include "mcuf_dsp.h"
#include "mcuf_internal.h"

/* n = (d * inv + 2^(29 - K)) >> (30 - K) (floor) for |d| < 2^19, 0 < inv <= 2^30: |d * inv| < 2^49
 * and |n| < 2^31, so accumulator bits [61 - K:30 - K] are n (K = MCUF_LN_NORM_BITS). */
static inline int32_t normalise(int32_t d, int32_t inv)
{
    uint32_t lo = UINT32_C(1) << (29 - MCUF_LN_NORM_BITS);
    uint32_t hi = 0u;
    smlal(&lo, &hi, d, inv);
    return (int32_t)((lo >> (30 - MCUF_LN_NORM_BITS)) | (hi << (2 + MCUF_LN_NORM_BITS)));
}

/* a * b + c, exact in int64 (|a * b| <= 2^62), saturated to int32. */
static inline int32_t mla_sat32(int32_t a, int32_t b, int32_t c)
{
    uint32_t lo = (uint32_t)c;
    uint32_t hi = c < 0 ? UINT32_MAX : 0u; /* c sign-extended */
    smlal(&lo, &hi, a, b);
    if (hi != (lo >> 31 != 0u ? UINT32_MAX : 0u)) { /* not a sign-extended int32 */
        return (hi >> 31) != 0u ? INT32_MIN : INT32_MAX;
    }
    return (int32_t)lo;
}

/* The fast path's bound on d_i: |d_i| <= 255 * (dim - 1) (d_i = sum_j (x_i - x_j), |x_i - x_j| <= 255)
 * must stay below 2^(29 - K) so that d_i * 2^(K + 2) fits int32. */
#define LN_FAST_SHIFT (MCUF_LN_NORM_BITS + 2)
#define LN_FAST_MAX_DIM ((INT32_C(1) << (31 - LN_FAST_SHIFT)) / 255)

/* The second pass when dim <= LN_FAST_MAX_DIM and the output shift allows the short stage
 * (short_shift_ok; LayerNorm's output is clamped to the whole int8 range):
 *   - n_i = floor((d_i * inv + 2^(29 - K)) / 2^(30 - K)) = SMMULR(d_i * 2^(K + 2), inv), and
 *     d_i * 2^(K + 2) = in_i * (dim << (K + 2)) + ((input_offset * dim - S) << (K + 2)), one MLA
 *     (wrapping; the result is in range);
 *   - acc_i = n_i * gamma_i + beta_i with SMLAL; when -2^30 <= acc_i < 2^30 (always, for the
 *     compiler's gamma and beta, but checked) the saturation is a no-op and the requantization is
 *     the short stage (mcuf_dsp.h); other elements take the general steps. */
/* Output i by the general steps (normalise, mla_sat32, requantize, offset). Not inlined: the element
 * loop keeps its registers for the short path. */
static __attribute__((noinline)) int8_t ln_general(const mcuf_layernorm_params *p, int32_t x, int32_t sum,
                                                   int32_t inv, int32_t i)
{
    const int32_t d = (x + p->input_offset) * p->dim - sum; /* |d| < 2^19 */
    const int32_t n = normalise(d, inv);
    /* |n * gamma| < 2^62: exact in int64, then saturated (as the portable). */
    const int32_t acc = mla_sat32(n, p->gamma[i], p->beta[i]);
    return out_s8(requantize(acc, p->out.multiplier, p->out.shift), p->output_offset);
}

/* The short path of the second pass, for rows with dim <= LN_FAST_MAX_DIM and an output shift in
 * [-LN_FOLD_MAX_RIGHT, -1] (LayerNorm's output is clamped to the whole int8 range):
 *   - n_i = floor((d_i * inv + 2^(29 - K)) / 2^(30 - K)) = SMMULR(d_i * 2^(K + 2), inv), and
 *     d_i * 2^(K + 2) = in_i * (dim << (K + 2)) + ((input_offset * dim - S) << (K + 2)), one MLA
 *     (wrapping; the result is in range);
 *   - acc_i = n_i * gamma_i + beta_i with SMLAL; when -2^30 <= acc_i < 2^30 (always, for the
 *     compiler's gamma and beta, but checked per element) the saturation is a no-op and the
 *     requantization is the short stage (mcuf_dsp.h), with the output offset added before the shift:
 *     hf = 2^(right - 1) + offset * 2^right (|y| <= 2^30 and 2^(right-1) + 128 * 2^right < 2^30:
 *     nothing wraps, and (v + offset * 2^right) >> right = (v >> right) + offset).
 * Other rows, and other elements, take ln_general. */
#define LN_FOLD_MAX_RIGHT 22

mcuf_status mcuf_layernorm_s8(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_layernorm_check(p, input, output);
    if (st != MCUF_OK) {
        return st;
    }
    const int32_t dim = p->dim;
    const int32_t in_off = p->input_offset;
    const int32_t off2 = dup16(in_off);
    const int32_t ones = 0x00010001;

    int32_t sum = 0; /* |S| <= 255 * 1024 */
    int32_t sq = 0;  /* Q <= 255^2 * 1024 < 2^26 */
    const int8_t *x = input;
    for (int32_t k = dim >> 2; k > 0; k--) {
        const int32_t v = load_s8x4(x);
        const int32_t x02 = __sxtab16(off2, v);
        const int32_t x13 = sxtab16_ror8(off2, v);
        sum = __smlad(x02, ones, sum);
        sq = __smlad(x02, x02, sq);
        sum = __smlad(x13, ones, sum);
        sq = __smlad(x13, x13, sq);
        x += 4;
    }
    for (int32_t k = dim & 3; k > 0; k--) {
        const int32_t v = (int32_t)*x++ + in_off;
        sum += v;
        sq += v * v;
    }
    const int32_t inv = mcufi_layernorm_inv(p, sum, sq);
    const int32_t right = -p->out.shift;
    const int row_fast = dim <= LN_FAST_MAX_DIM && short_shift_ok(p->out.shift) && right <= LN_FOLD_MAX_RIGHT;
    if (!row_fast) {
        for (int32_t i = 0; i < dim; i++) {
            output[i] = ln_general(p, input[i], sum, inv, i); /* in place: input[i] already read */
        }
        return MCUF_OK;
    }
    const int32_t r = right;
    const uint32_t dk = (uint32_t)dim << LN_FAST_SHIFT;
    const uint32_t ck = ((uint32_t)(in_off * dim) - (uint32_t)sum) << LN_FAST_SHIFT;
    const int32_t m = p->out.multiplier;
    const int32_t hf = (INT32_C(1) << (r - 1)) + (int32_t)((uint32_t)p->output_offset << r);
    const int32_t *gamma = p->gamma;
    const int32_t *beta = p->beta;
    for (int32_t i = dim - 1; i >= 0; i--) { /* in place: input[i] is read before output[i] */
        const int32_t n = smmulr((int32_t)((uint32_t)input[i] * dk + ck), inv);
        uint32_t lo = (uint32_t)beta[i];
        uint32_t hi = (uint32_t)((int32_t)lo >> 31);
        smlal(&lo, &hi, n, gamma[i]);
        const uint32_t t = lo + UINT32_C(0x40000000);
        const uint32_t u = hi + (t < lo ? 1u : 0u);
        if (__builtin_expect((u | (t >> 31)) == 0u, 1)) { /* acc in [-2^30, 2^30) */
            output[i] = short_out((int32_t)lo, 0, m, hf, r, 0);
        } else {
            output[i] = ln_general(p, input[i], sum, inv, i);
        }
    }
    return MCUF_OK;
}

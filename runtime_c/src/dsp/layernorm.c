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
        const int32_t x02 = __sadd16(__sxtb16(v), off2);
        const int32_t x13 = __sadd16(sxtb16_ror8(v), off2);
        sum = __smlad(x02, ones, sum);
        sum = __smlad(x13, ones, sum);
        sq = __smlad(x02, x02, sq);
        sq = __smlad(x13, x13, sq);
        x += 4;
    }
    for (int32_t k = dim & 3; k > 0; k--) {
        const int32_t v = (int32_t)*x++ + in_off;
        sum += v;
        sq += v * v;
    }
    const int32_t inv = mcufi_layernorm_inv(p, sum, sq);

    const requant_k q = requant_make(&p->out);
    const int32_t out_off = p->output_offset;
    for (int32_t i = 0; i < dim; i++) {
        const int32_t d = ((int32_t)input[i] + in_off) * dim - sum; /* |d| < 2^19 */
        const int32_t n = normalise(d, inv);
        /* |n * gamma| < 2^62: exact in int64, then saturated (as the portable). */
        const int32_t acc = mla_sat32(n, p->gamma[i], p->beta[i]);
        output[i] = out_s8(requant_apply(&q, acc), out_off); /* in place: input[i] already read */
    }
    return MCUF_OK;
}

/*
 * Integer LayerNorm (I-BERT style) for cores with the DSP extension (Cortex-M4, M7, M33).
 * Replaces ../layernorm.c when the project builds with KERNELS=optimized: the same function,
 * the same checks, bit-exact outputs. See mcuf.h for the arithmetic.
 *
 * One SIMD pass gives S = sum x_i and Q = sum x_i^2 (x_i = in_i + offset, |x_i| <= 255, so
 * |S| <= 255 * 1024 and Q <= 255^2 * 1024 < 2^31: exact in int32 with SMLAD). The portable
 * variance sum is then closed-form: with d_i = x_i * dim - S,
 *   V = sum d_i^2 = dim^2 Q - 2 dim S sum x_i + dim S^2 = dim (dim Q - S^2),
 * so V / dim (floor) = dim Q - S^2 exactly, in [0, 2^37).
 */
#if !defined(__ARM_FEATURE_DSP) || !defined(__ARM_FEATURE_SIMD32)
#error "runtime/src/dsp/layernorm.c needs the Arm DSP extension (Cortex-M4/M7/M33): build with KERNELS=portable"
#endif

#include <arm_acle.h>
#include <stddef.h>
#include <string.h>

#include "mcuf.h"

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

/* floor((x * m + 2^30) / 2^31) for int32 x, m other than x == m == INT32_MIN (then it fits
 * int32): SMLAL into a 64-bit accumulator preset to 2^30, result = accumulator bits [62:31]. */
static inline int32_t mul_round31(int32_t x, int32_t m)
{
    uint32_t lo = UINT32_C(1) << 30;
    uint32_t hi = 0u;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(x), "r"(m));
    return (int32_t)((lo >> 31) | (hi << 1));
}

/* n = (d * inv + 2^19) >> 20 (floor) for |d| < 2^19, 0 < inv <= 2^30: |d * inv| < 2^49 and
 * |n| < 2^29, so accumulator bits [51:20] are n. */
static inline int32_t normalise(int32_t d, int32_t inv)
{
    uint32_t lo = UINT32_C(1) << (29 - MCUF_LN_NORM_BITS);
    uint32_t hi = 0u;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(d), "r"(inv));
    return (int32_t)((lo >> (30 - MCUF_LN_NORM_BITS)) | (hi << (2 + MCUF_LN_NORM_BITS)));
}

/* a * b + c, exact in int64 (|a * b| <= 2^62), saturated to int32. */
static inline int32_t mla_sat32(int32_t a, int32_t b, int32_t c)
{
    uint32_t lo = (uint32_t)c;
    uint32_t hi = c < 0 ? UINT32_MAX : 0u; /* c sign-extended */
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(a), "r"(b));
    if (hi != (lo >> 31 != 0u ? UINT32_MAX : 0u)) { /* not a sign-extended int32 */
        return (hi >> 31) != 0u ? INT32_MIN : INT32_MAX;
    }
    return (int32_t)lo;
}

/*
 * mcuf_requantize(x, m, s) for checked parameters: m in {0} U [2^30, 2^31), s in [-31, 30],
 * with the constants of (m, s) computed once per row. The left shift saturates as the portable
 * int64 product + clamp (INT32_MIN >> left == -lim - 1); srdhm's truncating division of
 * x*m + nudge by 2^31 equals floor((x*m + 2^30) / 2^31) for both signs (see dsp/linear.c;
 * m >= 0: no saturating product); rdbpot rounds half away from zero.
 */
typedef struct {
    int32_t m;
    int32_t left;  /* [0, 30] */
    int32_t lim;   /* INT32_MAX >> left */
    int32_t right; /* [0, 31] */
    uint32_t mask; /* 2^right - 1 */
} requant_k;

static requant_k requant_make(const mcuf_requant *r)
{
    requant_k q;
    q.m = r->multiplier;
    q.left = r->shift > 0 ? r->shift : 0;
    q.lim = INT32_MAX >> q.left;
    q.right = r->shift > 0 ? 0 : -r->shift;
    q.mask = (UINT32_C(1) << q.right) - 1u;
    return q;
}

static inline int32_t requant_apply(const requant_k *q, int32_t x)
{
    if (q->left > 0) {
        x = x > q->lim ? INT32_MAX : (x < -q->lim - 1 ? INT32_MIN : x * (INT32_C(1) << q->left));
    }
    const int32_t y = mul_round31(x, q->m);
    const uint32_t threshold = (q->mask >> 1) + ((uint32_t)y >> 31);
    return (y >> q->right) + (((uint32_t)y & q->mask) > threshold ? 1 : 0);
}

mcuf_status mcuf_layernorm_s8(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL || p->gamma == NULL || p->beta == NULL) {
        return MCUF_ERR_ARG;
    }
    const int32_t dim = p->dim;
    if (dim < 1 || dim > MCUF_LN_MAX_DIM) {
        return MCUF_ERR_ARG;
    }
    if (p->input_offset < -127 || p->input_offset > 128 || p->output_offset < -128 || p->output_offset > 127) {
        return MCUF_ERR_ARG;
    }
    if (!((p->out.multiplier == 0 || p->out.multiplier >= (INT32_C(1) << 30)) && p->out.shift >= -31 &&
          p->out.shift <= 30)) {
        return MCUF_ERR_ARG;
    }
    const int32_t in_off = p->input_offset;
    const int32_t off2 = (int32_t)(((uint32_t)in_off << 16) | ((uint32_t)in_off & 0xFFFFu));
    const int32_t ones = 0x00010001;

    int32_t sum = 0; /* |S| <= 255 * 1024 */
    int32_t sq = 0;  /* Q <= 255^2 * 1024 < 2^31 */
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
    /* dim Q - S^2 = V / dim >= 0 (Cauchy-Schwarz); < 2^37. */
    const int64_t var_over_dim = (int64_t)dim * sq - (int64_t)sum * sum;
    uint32_t sigma = mcuf_isqrt_u64((uint64_t)var_over_dim); /* dim * std, < 2^19 */
    if (sigma < 1u) {
        sigma = 1u;
    }
    const int32_t inv = (int32_t)((UINT32_C(1) << 30) / sigma); /* in [1, 2^30] */

    const requant_k q = requant_make(&p->out);
    const int32_t out_off = p->output_offset;
    for (int32_t i = 0; i < dim; i++) {
        const int32_t d = ((int32_t)input[i] + in_off) * dim - sum; /* |d| < 2^19 */
        const int32_t n = normalise(d, inv);
        /* |n * gamma| < 2^60: exact in int64, then saturated (as the portable). */
        const int32_t acc = mla_sat32(n, p->gamma[i], p->beta[i]);
        /* SSAT to [-256, 255] keeps r + offset in range and the result unchanged (as the portable). */
        const int32_t r = __ssat(requant_apply(&q, acc), 9) + out_off;
        output[i] = (int8_t)__ssat(r, 8); /* in place: input[i] already read */
    }
    return MCUF_OK;
}

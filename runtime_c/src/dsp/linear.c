/*
 * Linear (TFLite FULLY_CONNECTED int8, per-channel) for cores with the DSP extension
 * (Cortex-M4, M7, M33). Replaces ../linear.c when the project builds with KERNELS=optimized:
 * the same functions, the same checks, bit-exact outputs.
 *
 * Dot products: 4 inputs per step and 4 output rows at a time (the last out_features % 4 rows one
 * at a time; in_features % 4 tail inputs scalar) with the 16-bit SIMD dual MAC. SXTB16
 * sign-extends bytes 0 and 2 of a word into two int16 lanes (and, rotated by 8, bytes 1 and 3);
 * SADD16 adds the input offset to both lanes (|in + offset| <= 255 fits int16), once per input
 * word for the 4 rows; SMLAD adds both lane products to an int32 accumulator. Inputs and weights
 * are split alike, so the products are exactly the portable kernel's, summed in another order.
 * Every partial sum is bounded by sum |term| <= 255 * 128 * in_features < 2^31, so the int32 sum
 * is the same.
 * Requantization: mcuf_requantize's arithmetic (requantize() below), without its int64 division
 * and saturating int64 shift.
 */
#if !defined(__ARM_FEATURE_DSP) || !defined(__ARM_FEATURE_SIMD32)
#error "runtime/src/dsp/linear.c needs the Arm DSP extension (Cortex-M4/M7/M33): build with KERNELS=portable"
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

/* v in both int16 lanes (v in [-32768, 32767]). */
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
 *   - left shift: x * 2^s saturated to int32, as the portable int64 product + clamp.
 *   - srdhm: gemmlowp divides x*m + nudge (2^30, or 1 - 2^30 when x*m < 0) by 2^31 truncating
 *     toward zero. For x*m >= 0 that is floor((x*m + 2^30) / 2^31); for x*m < 0 the truncation
 *     is a ceiling, ceil((x*m + 1 - 2^30) / 2^31) = floor((x*m + 2^30) / 2^31), the same floor:
 *     mul_round31. m >= 0 rules out the one saturating product, INT32_MIN * INT32_MIN.
 *   - rdbpot: round half away from zero, the portable mask/threshold form.
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

static int requant_ok(int32_t multiplier, int32_t shift)
{
    return (multiplier == 0 || multiplier >= (INT32_C(1) << 30)) && shift >= -31 && shift <= 30;
}

static mcuf_status check_linear(const mcuf_linear_params *p)
{
    if (p == NULL || p->weights == NULL || p->multiplier == NULL || p->shift == NULL) {
        return MCUF_ERR_ARG;
    }
    if (p->in_features < 1 || p->in_features > MCUF_LINEAR_MAX_IN || p->out_features < 1) {
        return MCUF_ERR_ARG;
    }
    if (p->input_offset < -127 || p->input_offset > 128 || p->output_offset < -128 || p->output_offset > 127) {
        return MCUF_ERR_ARG;
    }
    if (p->act_min < -128 || p->act_max > 127 || p->act_min > p->act_max) {
        return MCUF_ERR_ARG;
    }
    for (int32_t o = 0; o < p->out_features; o++) {
        if (!requant_ok(p->multiplier[o], p->shift[o])) {
            return MCUF_ERR_ARG;
        }
    }
    return MCUF_OK;
}

/* Output channel o from its dot product: bias (saturating), requantize, offset, activation clamp.
 * Not inlined: one copy instead of five costs a call per output and saves ~700 bytes of flash. */
static __attribute__((noinline)) int8_t finish(const mcuf_linear_params *p, int32_t o, int32_t sum)
{
    const int32_t acc = p->bias != NULL ? __qadd(sum, p->bias[o]) : sum;
    /* SSAT to [-256, 255] keeps r + offset in range and the result unchanged (as the portable). */
    int32_t r = __ssat(requantize(acc, p->multiplier[o], p->shift[o]), 9) + p->output_offset;
    r = r > p->act_max ? p->act_max : r;
    return (int8_t)(r < p->act_min ? p->act_min : r);
}

/* Parameters already checked. Four output rows at a time share each input word's SXTB16/SADD16;
 * the last out_features % 4 rows go one at a time. */
static void linear_row(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
    const int32_t n_in = p->in_features;
    const int32_t in_off = p->input_offset;
    const int32_t off2 = dup16(in_off);
    const int8_t *w = p->weights;
    int32_t o = 0;
    for (; o + 4 <= p->out_features; o += 4) {
        /* Rows o, o+1 through w01 (and w01 + n_in), rows o+2, o+3 through w23: two row pointers
         * instead of four leave the loop fewer registers short. */
        const int8_t *x = input;
        const int8_t *w01 = w;
        const int8_t *w23 = w + 2 * n_in;
        int32_t acc0 = 0;
        int32_t acc1 = 0;
        int32_t acc2 = 0;
        int32_t acc3 = 0;
        for (int32_t k = n_in >> 2; k > 0; k--) {
            const int32_t xv = load_s8x4(x);
            const int32_t x02 = __sadd16(__sxtb16(xv), off2);
            const int32_t x13 = __sadd16(sxtb16_ror8(xv), off2);
            int32_t wv = load_s8x4(w01);
            acc0 = __smlad(__sxtb16(wv), x02, acc0);
            acc0 = __smlad(sxtb16_ror8(wv), x13, acc0);
            wv = load_s8x4(w01 + n_in);
            acc1 = __smlad(__sxtb16(wv), x02, acc1);
            acc1 = __smlad(sxtb16_ror8(wv), x13, acc1);
            wv = load_s8x4(w23);
            acc2 = __smlad(__sxtb16(wv), x02, acc2);
            acc2 = __smlad(sxtb16_ror8(wv), x13, acc2);
            wv = load_s8x4(w23 + n_in);
            acc3 = __smlad(__sxtb16(wv), x02, acc3);
            acc3 = __smlad(sxtb16_ror8(wv), x13, acc3);
            x += 4;
            w01 += 4;
            w23 += 4;
        }
        for (int32_t k = n_in & 3; k > 0; k--) {
            const int32_t xv = (int32_t)*x++ + in_off;
            acc0 += xv * (int32_t)w01[0];
            acc1 += xv * (int32_t)w01[n_in];
            acc2 += xv * (int32_t)w23[0];
            acc3 += xv * (int32_t)w23[n_in];
            w01++;
            w23++;
        }
        output[o] = finish(p, o, acc0);
        output[o + 1] = finish(p, o + 1, acc1);
        output[o + 2] = finish(p, o + 2, acc2);
        output[o + 3] = finish(p, o + 3, acc3);
        w += 4 * n_in;
    }
    for (; o < p->out_features; o++) {
        const int8_t *x = input;
        int32_t acc = 0;
        for (int32_t k = n_in >> 2; k > 0; k--) {
            const int32_t xv = load_s8x4(x);
            const int32_t wv = load_s8x4(w);
            acc = __smlad(__sxtb16(wv), __sadd16(__sxtb16(xv), off2), acc);
            acc = __smlad(sxtb16_ror8(wv), __sadd16(sxtb16_ror8(xv), off2), acc);
            x += 4;
            w += 4;
        }
        for (int32_t k = n_in & 3; k > 0; k--) {
            acc += ((int32_t)*x++ + in_off) * (int32_t)*w++;
        }
        output[o] = finish(p, o, acc);
    }
}

mcuf_status mcuf_linear_s8(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = check_linear(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (input == NULL || output == NULL) {
        return MCUF_ERR_ARG;
    }
    linear_row(p, input, output);
    return MCUF_OK;
}

mcuf_status mcuf_linear_rows_s8(const mcuf_linear_params *p, int32_t rows, const int8_t *input, int8_t *output)
{
    const mcuf_status st = check_linear(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (rows < 0 || (rows > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    for (int32_t r = 0; r < rows; r++) {
        linear_row(p, input, output);
        input += p->in_features;
        output += p->out_features;
    }
    return MCUF_OK;
}

/*
 * Linear (TFLite FULLY_CONNECTED int8, per-channel) for cores with the DSP extension
 * (Cortex-M4, M7, M33). Replaces ../linear.c when the project builds with KERNELS=optimized:
 * the same functions, the same checks, bit-exact outputs.
 *
 * Dot products: 4 inputs per step and 2 output rows at a time with the 16-bit SIMD dual MAC.
 * SXTB16 sign-extends bytes 0 and 2 of a word into two int16 lanes (and, rotated by 8, bytes 1
 * and 3); SADD16 adds the input offset to both lanes (|in + offset| <= 255 fits int16); SMLAD
 * adds both lane products to an int32 accumulator. Inputs and weights are split alike, so the
 * products are exactly the portable kernel's, summed in another order. Every partial sum is
 * bounded by sum |term| <= 255 * 128 * in_features < 2^31, so the int32 sum is the same.
 * Requantization: mcuf_requantize's arithmetic, inlined (requantize() below).
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

/*
 * mcuf_requantize(x, m, s) for checked parameters: m in {0} U [2^30, 2^31), s in [-31, 30].
 *   - left shift: x * 2^s saturated to int32, as the portable int64 product + clamp.
 *   - srdhm: gemmlowp divides x*m + nudge (2^30, or 1 - 2^30 when x*m < 0) by 2^31 truncating
 *     toward zero; for x*m < 0 that equals floor((x*m + 2^30) / 2^31), and for x*m >= 0 it is
 *     that floor too, so one arithmetic shift does both (gcc's >> on a negative int64 is
 *     arithmetic). m >= 0 rules out the one saturating product, INT32_MIN * INT32_MIN; the
 *     result is in (-2^31, 2^31).
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
    const int32_t y = (int32_t)(((int64_t)x * m + (INT64_C(1) << 30)) >> 31);
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

/* Output channel o from its dot product: bias (saturating), requantize, offset, activation clamp. */
static inline int8_t finish(const mcuf_linear_params *p, int32_t o, int32_t sum)
{
    const int32_t acc = p->bias != NULL ? __qadd(sum, p->bias[o]) : sum;
    /* SSAT to [-256, 255] keeps r + offset in range and the result unchanged (as the portable). */
    int32_t r = __ssat(requantize(acc, p->multiplier[o], p->shift[o]), 9) + p->output_offset;
    r = r > p->act_max ? p->act_max : r;
    r = r < p->act_min ? p->act_min : r;
    return (int8_t)r;
}

/* Parameters already checked. */
static void linear_row(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
    const int32_t n_in = p->in_features;
    const int32_t in_off = p->input_offset;
    const int32_t off2 = dup16(in_off);
    const int8_t *w = p->weights;
    int32_t o = 0;
    for (; o + 2 <= p->out_features; o += 2) {
        const int8_t *x = input;
        const int8_t *w0 = w;
        const int8_t *w1 = w + n_in;
        int32_t acc0 = 0;
        int32_t acc1 = 0;
        for (int32_t k = n_in >> 2; k > 0; k--) {
            const int32_t xv = load_s8x4(x);
            const int32_t x02 = __sadd16(__sxtb16(xv), off2);
            const int32_t x13 = __sadd16(sxtb16_ror8(xv), off2);
            const int32_t wa = load_s8x4(w0);
            const int32_t wb = load_s8x4(w1);
            acc0 = __smlad(__sxtb16(wa), x02, acc0);
            acc0 = __smlad(sxtb16_ror8(wa), x13, acc0);
            acc1 = __smlad(__sxtb16(wb), x02, acc1);
            acc1 = __smlad(sxtb16_ror8(wb), x13, acc1);
            x += 4;
            w0 += 4;
            w1 += 4;
        }
        for (int32_t k = n_in & 3; k > 0; k--) {
            const int32_t xv = (int32_t)*x++ + in_off;
            acc0 += xv * (int32_t)*w0++;
            acc1 += xv * (int32_t)*w1++;
        }
        output[o] = finish(p, o, acc0);
        output[o + 1] = finish(p, o + 1, acc1);
        w += 2 * n_in;
    }
    if (o < p->out_features) {
        const int8_t *x = input;
        int32_t acc = 0;
        for (int32_t k = n_in >> 2; k > 0; k--) {
            const int32_t xv = load_s8x4(x);
            const int32_t wa = load_s8x4(w);
            acc = __smlad(__sxtb16(wa), __sadd16(__sxtb16(xv), off2), acc);
            acc = __smlad(sxtb16_ror8(wa), __sadd16(sxtb16_ror8(xv), off2), acc);
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

/*
 * Linear (TFLite FULLY_CONNECTED int8, per-channel) for cores with the DSP extension
 * (Cortex-M4, M7, M33). Replaces ../linear.c when the project builds with KERNELS=optimized: the
 * same row function, bit-exact outputs (the public entry points and their checks are shared,
 * ../linear_api.c).
 *
 * Dot products: 4 inputs per step and 4 output rows at a time (the last out_features % 4 rows one
 * at a time; in_features % 4 tail inputs scalar) with the 16-bit SIMD dual MAC. SXTB16
 * sign-extends bytes 0 and 2 of a word into two int16 lanes (and, rotated by 8, bytes 1 and 3);
 * SADD16 adds the input offset to both lanes (|in + offset| <= 255 fits int16), once per input
 * word for the 4 rows; SMLAD adds both lane products to an int32 accumulator. Inputs and weights
 * are split alike, so the products are exactly the portable kernel's, summed in another order.
 * Every partial sum is bounded by sum |term| <= 255 * 128 * in_features < 2^31, so the int32 sum
 * is the same.
 * Requantization: mcuf_requantize's arithmetic (requantize(), mcuf_dsp.h), without its int64
 * division and saturating int64 shift.
 */
#include <stddef.h>

#include "mcuf_dsp.h"
#include "mcuf_internal.h"

/* Output channel o from its dot product: bias (saturating), requantize, offset, activation clamp.
 * Not inlined: one copy instead of five costs a call per output and saves ~700 bytes of flash. */
static __attribute__((noinline)) int8_t finish(const mcuf_linear_params *p, int32_t o, int32_t sum)
{
    const int32_t acc = p->bias != NULL ? __qadd(sum, p->bias[o]) : sum;
    return out_s8_act(requantize(acc, p->multiplier[o], p->shift[o]), p->output_offset, p->act_min, p->act_max);
}

/* Parameters already checked. Four output rows at a time share each input word's SXTB16/SADD16;
 * the last out_features % 4 rows go one at a time. */
void mcufi_linear_row(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
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

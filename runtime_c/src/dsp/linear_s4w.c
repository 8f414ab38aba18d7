/*
 * Linear with packed int4 weights for cores with the DSP extension (Cortex-M4, M7, M33). Replaces
 * ../linear_s4w.c when the project builds with KERNELS=optimized: the same row function, bit-exact
 * outputs (the public entry points and their checks are shared, ../linear_s4w_api.c).
 *
 * 8 inputs per step, 2 output rows at a time (an odd last row alone; in_features % 8 tail inputs
 * scalar). The packed block order (mcuf.h) puts the step's 8
 * nibbles in one word as bytes (w0,w1) (w4,w5) (w2,w3) (w6,w7); (v << 4) & 0xF0F0F0F0 moves the
 * even weights, and v & 0xF0F0F0F0 keeps the odd ones, into the top nibble of each byte: bytes of
 * value 16 * w, in [-128, 112], which SXTB16 (and with ROR 8) sign-extends into the lane pairs
 * (16w0, 16w2), (16w4, 16w6), (16w1, 16w3), (16w5, 16w7): those of the inputs x[0..3], x[4..7]
 * after SXTB16 and SADD16 (offset added, |x| <= 255), computed once per step for the rows.
 * SMLAD sums 16 * x * w: every term is a multiple of 16 and |16 * x * w| <= 255 * 128, so the
 * int32 sum is exact (the int8 kernel's bound, < 2^31) and sum >> 4 (an exact division) is the
 * portable dot product, summed in another order.
 */
#include <stddef.h>

#include "mcuf_dsp.h"
#include "mcuf_internal.h"

/* The inputs of one step as lane pairs (x0, x2), (x1, x3), (x4, x6), (x5, x7), offset added. */
typedef struct {
    int32_t x02, x13, x46, x57;
} input_pairs;

static inline input_pairs load_pairs(const int8_t *x, int32_t off2)
{
    const int32_t a = load_s8x4(x);
    const int32_t b = load_s8x4(x + 4);
    const input_pairs r = {__sadd16(__sxtb16(a), off2), __sadd16(sxtb16_ror8(a), off2), __sadd16(__sxtb16(b), off2),
                           __sadd16(sxtb16_ror8(b), off2)};
    return r;
}

/* acc + 16 * (dot product of one step), from the step's weight word wv. */
static inline int32_t dot8x16(int32_t acc, int32_t wv, const input_pairs *x)
{
    const int32_t even = (int32_t)(((uint32_t)wv << 4) & 0xF0F0F0F0u);
    const int32_t odd = (int32_t)((uint32_t)wv & 0xF0F0F0F0u);
    acc = __smlad(__sxtb16(even), x->x02, acc);
    acc = __smlad(sxtb16_ror8(even), x->x46, acc);
    acc = __smlad(__sxtb16(odd), x->x13, acc);
    return __smlad(sxtb16_ror8(odd), x->x57, acc);
}

/* Dot product of inputs [from, n_in) with a packed row (the scalar tail). */
static inline int32_t dot_tail(const int8_t *input, const int8_t *row, int32_t from, int32_t n_in, int32_t in_off)
{
    int32_t sum = 0;
    for (int32_t i = from; i < n_in; i++) {
        sum += ((int32_t)input[i] + in_off) * mcufi_s4_tail_at(row, i);
    }
    return sum;
}

/* Output channel o from its dot product: bias (saturating), requantize, offset, activation clamp.
 * Not inlined: one copy instead of five. */
static __attribute__((noinline)) int8_t finish(const mcuf_linear_s4w_params *p, int32_t o, int32_t sum)
{
    const int32_t acc = p->bias != NULL ? __qadd(sum, p->bias[o]) : sum;
    return out_s8_act(requantize(acc, p->multiplier[o], p->shift[o]), p->output_offset, p->act_min, p->act_max);
}

/* Parameters already checked. Two output rows at a time share each step's input pairs (four
 * rows leave the loop registers short: the accumulators spill). */
void mcufi_linear_s4w_row(const mcuf_linear_s4w_params *p, const int8_t *input, int8_t *output)
{
    const int32_t n_in = p->in_features;
    const int32_t in_off = p->input_offset;
    const int32_t off2 = dup16(in_off);
    const int32_t row_bytes = (n_in + 1) >> 1;
    const int32_t tail = n_in & ~7;           /* first input of the scalar tail */
    const int8_t *const x_end = input + tail; /* end of the 8-input steps */
    const int8_t *w = p->weights;
    int32_t o = 0;
    for (; o + 2 <= p->out_features; o += 2) {
        const int8_t *w0 = w;
        const int8_t *w1 = w + row_bytes;
        int32_t acc0 = 0;
        int32_t acc1 = 0;
        for (const int8_t *x = input; x < x_end; x += 8) {
            const input_pairs xp = load_pairs(x, off2);
            acc0 = dot8x16(acc0, load_s8x4(w0), &xp);
            acc1 = dot8x16(acc1, load_s8x4(w1), &xp);
            w0 += 4;
            w1 += 4;
        }
        /* acc >> 4: exact (a multiple of 16), arithmetic shift. */
        output[o] = finish(p, o, (acc0 >> 4) + dot_tail(input, w, tail, n_in, in_off));
        output[o + 1] = finish(p, o + 1, (acc1 >> 4) + dot_tail(input, w + row_bytes, tail, n_in, in_off));
        w += 2 * row_bytes;
    }
    if (o < p->out_features) {
        const int8_t *w0 = w;
        int32_t acc = 0;
        for (const int8_t *x = input; x < x_end; x += 8) {
            const input_pairs xp = load_pairs(x, off2);
            acc = dot8x16(acc, load_s8x4(w0), &xp);
            w0 += 4;
        }
        output[o] = finish(p, o, (acc >> 4) + dot_tail(input, w, tail, n_in, in_off));
    }
}

/*
 * Linear with packed int4 weights (mcuf.h: mcuf_linear_s4w_s8): the dot products and output stage
 * of one row, portable C. dsp/linear_s4w.c replaces this file on cores with the DSP extension; the
 * public entry points and their checks are in linear_s4w_api.c (no twin).
 */
#include <stddef.h>

#include "mcuf_internal.h"

/* The first weight of byte k of a packed block of 8 (mcuf.h): (w0,w1) (w4,w5) (w2,w3) (w6,w7). */
static const int32_t block_first[4] = {0, 4, 2, 6};

void mcufi_linear_s4w_row(const mcuf_linear_s4w_params *p, const int8_t *input, int8_t *output)
{
    const int32_t n_in = p->in_features;
    const int32_t in_off = p->input_offset;
    const int32_t row_bytes = (n_in + 1) >> 1; /* odd rows end with a padding nibble */
    const int32_t tail = n_in & ~7;             /* blocks of 8, then the in-order tail */
    const int8_t *w = p->weights;
    for (int32_t o = 0; o < p->out_features; o++) {
        /* |(in + in_off) * w| <= 255 * 8 and n_in <= 65535: |sum| < 2^27. */
        int32_t sum = 0;
        for (int32_t b = 0; b < tail; b += 8) {
            for (int32_t k = 0; k < 4; k++) {
                const uint32_t byte = (uint8_t)w[(b >> 1) + k];
                const int32_t i = b + block_first[k];
                sum += ((int32_t)input[i] + in_off) * mcufi_s4(byte & 0xFu);
                sum += ((int32_t)input[i + 1] + in_off) * mcufi_s4(byte >> 4);
            }
        }
        for (int32_t i = tail; i < n_in; i++) {
            sum += ((int32_t)input[i] + in_off) * mcufi_s4_tail_at(w, i);
        }
        w += row_bytes;
        /* |bias| < 2^31: the int64 sum is exact, then saturated as mcuf_linear_s8 does. */
        int64_t acc = sum;
        if (p->bias != NULL) {
            acc += p->bias[o];
            acc = acc > INT32_MAX ? INT32_MAX : (acc < INT32_MIN ? INT32_MIN : acc);
        }
        const int32_t r = mcuf_requantize((int32_t)acc, p->multiplier[o], p->shift[o]);
        output[o] = mcufi_out_s8(r, p->output_offset, p->act_min, p->act_max);
    }
}

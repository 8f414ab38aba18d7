/*
 * Linear (TFLite FULLY_CONNECTED int8, per-channel): the dot products and output stage of one row.
 * dsp/linear.c replaces this file on cores with the DSP extension; the public mcuf_linear_s8 /
 * mcuf_linear_rows_s8 / mcuf_linear_tile_s8 and their parameter checks are in linear_api.c (no
 * twin). The portable tile is row by row: the reference the DSP twin's register-blocked tiles match.
 */
#include <stddef.h>

#include "mcuf_internal.h"

void mcufi_linear_row(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
    if (mcufi_linear_row_dispatch_s4w(p, input, output)) {
        return;
    }
    const int32_t n_in = p->in_features;
    const int32_t in_off = p->input_offset;
    const int8_t *w = p->weights;
    for (int32_t o = 0; o < p->out_features; o++) {
        /* |(in + in_off) * w| <= 255 * 128 and n_in <= 65535: |sum| < 2^31. */
        int32_t sum = 0;
        for (int32_t i = 0; i < n_in; i++) {
            sum += ((int32_t)input[i] + in_off) * (int32_t)w[i];
        }
        w += n_in;
        int64_t acc = sum;
        if (p->bias != NULL) {
            acc += p->bias[o];
            if (acc > INT32_MAX) {
                acc = INT32_MAX;
            } else if (acc < INT32_MIN) {
                acc = INT32_MIN;
            }
        }
        const int32_t r = mcuf_requantize((int32_t)acc, p->multiplier[o], p->shift[o]);
        output[o] = mcufi_out_s8(r, p->output_offset, p->act_min, p->act_max);
    }
}

void mcufi_linear_tile(const mcuf_linear_params *p, int32_t rows, int32_t tile, const int8_t *input,
                       int32_t *xbuf, int32_t bias_stride, int8_t *output)
{
    (void)tile;
    (void)xbuf;
    mcuf_linear_params q = *p; /* q.bias: the current row's */
    for (int32_t r = 0; r < rows; r++) {
        mcufi_linear_row(&q, input, output);
        input += p->in_features;
        output += p->out_features;
        if (q.bias != NULL) {
            q.bias += bias_stride;
        }
    }
}

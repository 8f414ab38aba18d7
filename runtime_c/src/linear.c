/*
 * Linear (TFLite FULLY_CONNECTED int8, per-channel).
 */
#include <stddef.h>

#include "mcuf.h"

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

/* Parameters already checked. */
static void linear_row(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
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
        int32_t r = mcuf_requantize((int32_t)acc, p->multiplier[o], p->shift[o]);
        /* Pre-clamp so adding the offset ([-128, 127]) cannot overflow; the result is unchanged. */
        r = r > 255 ? 255 : (r < -256 ? -256 : r);
        r += p->output_offset;
        r = r > p->act_max ? p->act_max : (r < p->act_min ? p->act_min : r);
        output[o] = (int8_t)r;
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

/*
 * Linear with packed int4 weights: the public entry points and their parameter checks, shared by
 * both kernel variants (no DSP twin). The rows are computed by mcufi_linear_s4w_row (linear_s4w.c,
 * or dsp/linear_s4w.c on cores with the DSP extension).
 */
#include <stddef.h>

#include "mcuf_internal.h"

/* The ranges are mcuf_linear_s8's: its checks run on a view of the same fields (the packed weights
 * are only tested for NULL there). */
static mcuf_status check_linear_s4w(const mcuf_linear_s4w_params *p)
{
    if (p == NULL) {
        return MCUF_ERR_ARG;
    }
    const mcuf_linear_params view = {.in_features = p->in_features,
                                     .out_features = p->out_features,
                                     .input_offset = p->input_offset,
                                     .output_offset = p->output_offset,
                                     .act_min = p->act_min,
                                     .act_max = p->act_max,
                                     .weights = p->weights,
                                     .bias = p->bias,
                                     .multiplier = p->multiplier,
                                     .shift = p->shift,
                                     .weight_format = MCUF_WEIGHTS_S8};
    return mcufi_linear_check(&view);
}

#if defined(MCUF_WITH_S4W)
void mcufi_linear_row_s4w_of(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_linear_s4w_params view = {p->in_features, p->out_features, p->input_offset, p->output_offset,
                                         p->act_min,      p->act_max,      p->weights,      p->bias,
                                         p->multiplier,   p->shift};
    mcufi_linear_s4w_row(&view, input, output);
}
#endif

mcuf_status mcuf_linear_s4w_s8(const mcuf_linear_s4w_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = check_linear_s4w(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (input == NULL || output == NULL) {
        return MCUF_ERR_ARG;
    }
    mcufi_linear_s4w_row(p, input, output);
    return MCUF_OK;
}

mcuf_status mcuf_linear_rows_s4w_s8(const mcuf_linear_s4w_params *p, int32_t rows, const int8_t *input,
                                    int8_t *output)
{
    const mcuf_status st = check_linear_s4w(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (rows < 0 || (rows > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    for (int32_t r = 0; r < rows; r++) {
        mcufi_linear_s4w_row(p, input, output);
        input += p->in_features;
        output += p->out_features;
    }
    return MCUF_OK;
}

/*
 * Linear (TFLite FULLY_CONNECTED int8, per-channel): the public entry points and their parameter
 * checks, shared by both kernel variants (no DSP twin). The rows are computed by
 * mcufi_linear_row (linear.c, or dsp/linear.c on cores with the DSP extension).
 */
#include <stddef.h>
#include <stdint.h>

#include "mcuf_internal.h"

mcuf_status mcufi_linear_check(const mcuf_linear_params *p)
{
    if (p == NULL || p->weights == NULL || p->multiplier == NULL || p->shift == NULL) {
        return MCUF_ERR_ARG;
    }
    if (p->in_features < 1 || p->in_features > MCUF_LINEAR_MAX_IN || p->out_features < 1) {
        return MCUF_ERR_ARG;
    }
    if (!mcufi_in_offset_ok(p->input_offset) || !mcufi_out_offset_ok(p->output_offset)) {
        return MCUF_ERR_ARG;
    }
    if (p->act_min < -128 || p->act_max > 127 || p->act_min > p->act_max) {
        return MCUF_ERR_ARG;
    }
    if (p->weight_format != MCUF_WEIGHTS_S8 && !mcufi_linear_is_s4w(p)) { /* int4: MCUF_WITH_S4W only */
        return MCUF_ERR_ARG;
    }
    for (int32_t o = 0; o < p->out_features; o++) {
        if (!mcufi_requant_ok(p->multiplier[o], p->shift[o])) {
            return MCUF_ERR_ARG;
        }
    }
    return MCUF_OK;
}

mcuf_status mcuf_linear_s8(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_linear_check(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (input == NULL || output == NULL) {
        return MCUF_ERR_ARG;
    }
    mcufi_linear_row(p, input, output);
    return MCUF_OK;
}

mcuf_status mcuf_linear_rows_s8(const mcuf_linear_params *p, int32_t rows, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_linear_check(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (rows < 0 || (rows > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    for (int32_t r = 0; r < rows; r++) {
        mcufi_linear_row(p, input, output);
        input += p->in_features;
        output += p->out_features;
    }
    return MCUF_OK;
}

int32_t mcuf_linear_tile_s8_scratch_size(const mcuf_linear_params *p, int32_t tile)
{
    if (p == NULL || p->in_features < 0 || p->in_features > MCUF_LINEAR_MAX_IN || !mcufi_linear_tile_ok(tile)) {
        return -1;
    }
    return 4 * mcufi_linear_tile_xbuf_words(p->in_features, tile);
}

mcuf_status mcuf_linear_tile_s8(const mcuf_linear_params *p, int32_t rows, int32_t tile, const int8_t *input,
                                int8_t *scratch, int8_t *output)
{
    const mcuf_status st = mcufi_linear_check(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (rows < 0 || !mcufi_linear_tile_ok(tile) || (rows > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    if (tile > 1 && (scratch == NULL || ((uintptr_t)scratch & 3u) != 0u)) {
        return MCUF_ERR_ARG;
    }
    mcufi_linear_tile(p, rows, tile, input, (int32_t *)(void *)scratch, 0, output);
    return MCUF_OK;
}

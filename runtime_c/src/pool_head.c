/*
 * Final LayerNorm + mean pooling over tokens + classifier, one token row at a time.
 */
#include <stddef.h>

#include "mcuf_internal.h"

#define POOL_MAX_TOKENS (INT32_C(1) << 23) /* 255 * 2^23 < 2^31 */

int32_t mcuf_pool_head_s8_scratch_size(const mcuf_pool_head_params *p)
{
    return p == NULL ? -1 : mcufi_pool_scratch_size(p->dim);
}

mcuf_status mcuf_pool_head_s8(const mcuf_pool_head_params *p, const int8_t *x, int8_t *scratch, int8_t *logits)
{
    if (p == NULL || x == NULL || scratch == NULL || logits == NULL) {
        return MCUF_ERR_ARG;
    }
    const int32_t dim = p->dim;
    if (p->tokens < 1 || p->tokens > POOL_MAX_TOKENS ||
        !mcufi_pool_check(scratch, dim, p->classes, &p->ln, &p->head, p->pool_input_offset, p->pool_output_offset,
                          p->pool)) {
        return MCUF_ERR_ARG; /* also a misaligned scratch: the int32 accumulators come first */
    }
    int32_t *acc;
    int8_t *ln_row;
    int8_t *pooled;
    mcufi_pool_scratch_carve(scratch, dim, &acc, &ln_row, &pooled);

    for (int32_t c = 0; c < dim; c++) {
        acc[c] = 0;
    }
    const int8_t *x_row = x;
    for (int32_t t = 0; t < p->tokens; t++) {
        const mcuf_status st = mcuf_layernorm_s8(&p->ln, x_row, ln_row);
        if (st != MCUF_OK) {
            return st;
        }
        for (int32_t c = 0; c < dim; c++) {
            acc[c] += (int32_t)ln_row[c] + p->pool_input_offset; /* |acc| <= 255 * tokens < 2^31 */
        }
        x_row += dim;
    }
    mcufi_pool_output(acc, dim, p->pool, p->pool_output_offset, pooled);
    return mcuf_linear_s8(&p->head, pooled, logits);
}

/*
 * Final LayerNorm + mean pooling over tokens + classifier, one token row at a time.
 */
#include <stddef.h>

#include "mcuf.h"

#define POOL_MAX_TOKENS (INT32_C(1) << 23) /* 255 * 2^23 < 2^31 */

static int32_t align4(int32_t n)
{
    return (int32_t)(((uint32_t)n + 3u) & ~3u);
}

int32_t mcuf_pool_head_scratch_size(const mcuf_pool_head_params *p)
{
    if (p == NULL || p->dim < 0) {
        return -1;
    }
    const int64_t dim4 = ((int64_t)p->dim + 3) & ~(int64_t)3;
    const int64_t total = 4 * (int64_t)p->dim + 2 * dim4;
    return total > INT32_MAX ? -1 : (int32_t)total;
}

mcuf_status mcuf_pool_head_s8(const mcuf_pool_head_params *p, const int8_t *x, int8_t *scratch, int8_t *logits)
{
    if (p == NULL || x == NULL || scratch == NULL || logits == NULL) {
        return MCUF_ERR_ARG;
    }
    if (((uintptr_t)scratch & 3u) != 0u) {
        return MCUF_ERR_ARG; /* the int32 accumulators come first */
    }
    const int32_t dim = p->dim;
    if (p->tokens < 1 || p->tokens > POOL_MAX_TOKENS || dim < 1 || dim > MCUF_LN_MAX_DIM || p->ln.dim != dim) {
        return MCUF_ERR_ARG;
    }
    if (p->classes < 1 || p->head.in_features != dim || p->head.out_features != p->classes) {
        return MCUF_ERR_ARG;
    }
    if (p->pool_input_offset < -127 || p->pool_input_offset > 128 || p->pool_output_offset < -128 ||
        p->pool_output_offset > 127) {
        return MCUF_ERR_ARG;
    }
    if (!((p->pool.multiplier == 0 || p->pool.multiplier >= (INT32_C(1) << 30)) && p->pool.shift >= -31 &&
          p->pool.shift <= 30)) {
        return MCUF_ERR_ARG;
    }
    int32_t *acc = (int32_t *)(void *)scratch;
    int8_t *ln_row = scratch + 4 * dim;
    int8_t *pooled = ln_row + align4(dim);

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
    for (int32_t c = 0; c < dim; c++) {
        int32_t r = mcuf_requantize(acc[c], p->pool.multiplier, p->pool.shift);
        r = r > 255 ? 255 : (r < -256 ? -256 : r); /* keeps r + offset in range; result unchanged */
        r += p->pool_output_offset;
        pooled[c] = (int8_t)(r > 127 ? 127 : (r < -128 ? -128 : r));
    }
    return mcuf_linear_s8(&p->head, pooled, logits);
}

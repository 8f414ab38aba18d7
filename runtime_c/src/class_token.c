/*
 * Kernels of imported ViTs: prefix tokens (class / distillation) written into the residual stream
 * before the patch tokens, the class-token readout head and the mean -> LayerNorm -> classifier head
 * (fc_norm). Not hot (each runs once per inference), so there is no DSP twin.
 */
#include <stddef.h>

#include "mcuf_internal.h"

#define POOL_MAX_TOKENS (INT32_C(1) << 23) /* 255 * 2^23 < 2^31 */

int32_t mcuf_patch_embed_prefix_s8_scratch_size(const mcuf_patch_embed_prefix_params *p)
{
    return p == NULL ? -1 : mcuf_patch_embed_s8_scratch_size(&p->embed);
}

mcuf_status mcuf_patch_embed_prefix_s8(const mcuf_patch_embed_prefix_params *p, mcuf_stripe_reader read, void *ctx,
                                       int8_t *scratch, int8_t *x)
{
    if (p == NULL || x == NULL || p->prefix_tokens < 0 || p->prefix_tokens > MCUF_MAX_PREFIX_TOKENS ||
        (p->prefix_tokens > 0 && p->prefix == NULL) || p->embed.dim < 1) {
        return MCUF_ERR_ARG;
    }
    const int32_t n = p->prefix_tokens * p->embed.dim; /* <= 16 * dim: no overflow for any int32 dim / 16 */
    if (p->embed.dim > INT32_MAX / MCUF_MAX_PREFIX_TOKENS) {
        return MCUF_ERR_ARG;
    }
    for (int32_t i = 0; i < n; i++) {
        x[i] = p->prefix[i];
    }
    return mcuf_patch_embed_s8(&p->embed, read, ctx, scratch, x + n);
}

int32_t mcuf_token_head_s8_scratch_size(const mcuf_token_head_params *p)
{
    if (p == NULL || p->dim < 0 || p->readout < 0 || p->readout > MCUF_MAX_PREFIX_TOKENS) {
        return -1;
    }
    const int64_t total = ((int64_t)p->readout * p->dim + 3) & ~(int64_t)3;
    return total > INT32_MAX ? -1 : (int32_t)total;
}

mcuf_status mcuf_token_head_s8(const mcuf_token_head_params *p, const int8_t *x, int8_t *scratch, int8_t *logits)
{
    if (p == NULL || x == NULL || scratch == NULL || logits == NULL) {
        return MCUF_ERR_ARG;
    }
    const int32_t dim = p->dim;
    if (p->readout < 1 || p->readout > MCUF_MAX_PREFIX_TOKENS || p->readout > p->tokens || dim < 1 ||
        dim > MCUF_LN_MAX_DIM || p->ln.dim != dim) {
        return MCUF_ERR_ARG;
    }
    if (p->classes < 1 || p->head.in_features != p->readout * dim || p->head.out_features != p->classes) {
        return MCUF_ERR_ARG;
    }
    for (int32_t i = 0; i < p->readout; i++) {
        const mcuf_status st = mcuf_layernorm_s8(&p->ln, x + i * dim, scratch + i * dim);
        if (st != MCUF_OK) {
            return st;
        }
    }
    return mcuf_linear_s8(&p->head, scratch, logits);
}

int32_t mcuf_pool_norm_head_s8_scratch_size(const mcuf_pool_norm_head_params *p)
{
    return p == NULL ? -1 : mcufi_pool_scratch_size(p->dim);
}

mcuf_status mcuf_pool_norm_head_s8(const mcuf_pool_norm_head_params *p, const int8_t *x, int8_t *scratch,
                                   int8_t *logits)
{
    if (p == NULL || x == NULL || scratch == NULL || logits == NULL) {
        return MCUF_ERR_ARG;
    }
    const int32_t dim = p->dim;
    if (p->first_token < 0 || p->first_token >= p->tokens || p->tokens - p->first_token > POOL_MAX_TOKENS ||
        !mcufi_pool_check(scratch, dim, p->classes, &p->ln, &p->head, p->pool_input_offset, p->pool_output_offset,
                          p->pool)) {
        return MCUF_ERR_ARG; /* also a misaligned scratch: the int32 accumulators come first */
    }
    int32_t *acc;
    int8_t *pooled;
    int8_t *ln_row;
    mcufi_pool_scratch_carve(scratch, dim, &acc, &pooled, &ln_row);

    for (int32_t c = 0; c < dim; c++) {
        acc[c] = 0;
    }
    const int8_t *x_row = x + (int64_t)p->first_token * dim;
    for (int32_t t = p->first_token; t < p->tokens; t++) {
        for (int32_t c = 0; c < dim; c++) {
            acc[c] += (int32_t)x_row[c] + p->pool_input_offset; /* |acc| <= 255 * 2^23 < 2^31 */
        }
        x_row += dim;
    }
    mcufi_pool_output(acc, dim, p->pool, p->pool_output_offset, pooled);
    const mcuf_status st = mcuf_layernorm_s8(&p->ln, pooled, ln_row);
    if (st != MCUF_OK) {
        return st;
    }
    return mcuf_linear_s8(&p->head, ln_row, logits);
}

/*
 * Internal helpers (mcuf_internal.h): the attention head's parameter checks (attn_head.c and its
 * DSP twin), scratch layouts, and the parts of the attention block shared by its two schedules
 * (attention.c, attention_perhead.c). No DSP twin: these are the same on every target, and they
 * call only public mcuf.h kernels.
 */
#include <stddef.h>

#include "mcuf_internal.h"

#define ATTN_MAX 32767 /* attn_head tokens, head_dim: 255 * 255 * 32767 < 2^31 */

mcuf_status mcufi_attn_head_check(const mcuf_attn_head_params *p, const int8_t *a, const int8_t *b, const int8_t *out,
                                  int32_t stride)
{
    if (p == NULL || p->tokens < 1 || p->tokens > ATTN_MAX || p->head_dim < 1 || p->head_dim > ATTN_MAX) {
        return MCUF_ERR_ARG;
    }
    if (!mcufi_in_offset_ok(p->q_offset) || !mcufi_in_offset_ok(p->k_offset) || !mcufi_in_offset_ok(p->v_offset) ||
        !mcufi_out_offset_ok(p->score_offset) || !mcufi_out_offset_ok(p->out_offset)) {
        return MCUF_ERR_ARG;
    }
    if (!mcufi_requant_ok(p->score.multiplier, p->score.shift) || !mcufi_requant_ok(p->av.multiplier, p->av.shift)) {
        return MCUF_ERR_ARG;
    }
    if (a == NULL || b == NULL || out == NULL || stride < p->head_dim) {
        return MCUF_ERR_ARG;
    }
    return MCUF_OK;
}

int32_t mcufi_layout_size(const int32_t *parts, int32_t n)
{
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (parts[i] < 0) {
            return -1;
        }
        total += ((int64_t)parts[i] + 3) & ~(int64_t)3; /* n parts < 2^31 each: no int64 overflow */
    }
    return total > INT32_MAX ? -1 : (int32_t)total;
}

static int linear_shape_ok(const mcuf_linear_params *p, int32_t in, int32_t out)
{
    return p->in_features == in && p->out_features == out;
}

mcuf_status mcufi_attention_check(const mcuf_attention_params *p)
{
    const int32_t dim = p->dim;
    if (p->tokens < 1 || p->tokens > MCUF_SOFTMAX_MAX_LENGTH || dim < 1 || dim > MCUF_LN_MAX_DIM || p->heads < 1 ||
        dim % p->heads != 0) {
        return MCUF_ERR_ARG;
    }
    if (p->ln.dim != dim || p->qkv_rank < 0) {
        return MCUF_ERR_ARG;
    }
    const int32_t qkv_in = p->qkv_rank > 0 ? p->qkv_rank : dim;
    if (p->qkv_rank > 0 && !linear_shape_ok(&p->qkv_down, dim, p->qkv_rank)) {
        return MCUF_ERR_ARG;
    }
    if (!linear_shape_ok(&p->q, qkv_in, dim) || !linear_shape_ok(&p->k, qkv_in, dim) ||
        !linear_shape_ok(&p->v, qkv_in, dim) || !linear_shape_ok(&p->proj, dim, dim)) {
        return MCUF_ERR_ARG;
    }
    if (p->head.tokens != p->tokens || p->head.head_dim != dim / p->heads || p->softmax.length != p->tokens) {
        return MCUF_ERR_ARG;
    }
    return MCUF_OK;
}

mcuf_status mcufi_attention_qkv_input(const mcuf_attention_params *p, const int8_t *x_row, int8_t *ln_row,
                                      int8_t *r_row, const int8_t **qkv_in)
{
    mcuf_status st = mcuf_layernorm_s8(&p->ln, x_row, ln_row);
    if (st != MCUF_OK) {
        return st;
    }
    if (p->qkv_rank == 0) {
        *qkv_in = ln_row;
        return MCUF_OK;
    }
    *qkv_in = r_row;
    return mcuf_linear_s8(&p->qkv_down, ln_row, r_row);
}

int mcufi_pool_check(const int8_t *scratch, int32_t dim, int32_t classes, const mcuf_layernorm_params *ln,
                     const mcuf_linear_params *head, int32_t input_offset, int32_t output_offset, mcuf_requant pool)
{
    return ((uintptr_t)scratch & 3u) == 0u && dim >= 1 && dim <= MCUF_LN_MAX_DIM && ln->dim == dim &&
           classes >= 1 && head->in_features == dim && head->out_features == classes &&
           mcufi_in_offset_ok(input_offset) && mcufi_out_offset_ok(output_offset) &&
           mcufi_requant_ok(pool.multiplier, pool.shift);
}

int32_t mcufi_pool_scratch_size(int32_t dim)
{
    if (dim < 0 || dim > INT32_MAX / 4) {
        return -1; /* above INT32_MAX / 4, the acc part alone is 4 * dim > INT32_MAX - 3 */
    }
    int32_t parts[MCUFI_POOL_PARTS];
    mcufi_pool_scratch_parts(dim, parts);
    return mcufi_layout_size(parts, MCUFI_POOL_PARTS);
}

void mcufi_pool_output(const int32_t *acc, int32_t dim, mcuf_requant pool, int32_t output_offset, int8_t *pooled)
{
    for (int32_t c = 0; c < dim; c++) {
        pooled[c] = mcufi_out_s8(mcuf_requantize(acc[c], pool.multiplier, pool.shift), output_offset, -128, 127);
    }
}

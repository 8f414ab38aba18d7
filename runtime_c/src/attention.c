/*
 * Fused row-wise attention block with token overwriting (DESIGN section 4): K and V for every
 * token, then one query row at a time; the H x T x T score tensor never exists.
 */
#include <stddef.h>

#include "mcuf.h"

static int32_t align4(int32_t n)
{
    return (int32_t)(((uint32_t)n + 3u) & ~3u);
}

/* Sum of align4(parts[i]), or -1 for a negative part or a total above INT32_MAX. */
static int32_t layout_size(const int32_t *parts, int32_t n)
{
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (parts[i] < 0) {
            return -1;
        }
        total += ((int64_t)parts[i] + 3) & ~(int64_t)3;
    }
    return total > INT32_MAX ? -1 : (int32_t)total;
}

int32_t mcuf_attention_scratch_size(const mcuf_attention_params *p)
{
    if (p == NULL) {
        return -1;
    }
    const int32_t parts[6] = {p->dim, p->qkv_rank, p->dim, p->tokens, p->dim, p->dim};
    return layout_size(parts, 6);
}

static int linear_shape_ok(const mcuf_linear_params *p, int32_t in, int32_t out)
{
    return p->in_features == in && p->out_features == out;
}

/* Shape consistency of every part; value ranges are checked by the kernels on the first row. */
static mcuf_status check_attention(const mcuf_attention_params *p)
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

/* y = LN(x_row); returns the row the q/k/v projections read (y, or qkv_down(y)). */
static mcuf_status qkv_input(const mcuf_attention_params *p, const int8_t *x_row, int8_t *ln_row, int8_t *r_row,
                             const int8_t **qkv_in)
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

mcuf_status mcuf_attention_rowwise_s8(const mcuf_attention_params *p, int8_t *x, int8_t *k_buf, int8_t *v_buf,
                                      int8_t *scratch)
{
    if (p == NULL || x == NULL || k_buf == NULL || v_buf == NULL || scratch == NULL) {
        return MCUF_ERR_ARG;
    }
    mcuf_status st = check_attention(p);
    if (st != MCUF_OK) {
        return st;
    }
    const int32_t dim = p->dim;
    const int32_t hd = dim / p->heads;
    int8_t *ln_row = scratch;
    int8_t *r_row = ln_row + align4(dim);
    int8_t *q_row = r_row + align4(p->qkv_rank);
    int8_t *probs = q_row + align4(dim);
    int8_t *concat = probs + align4(p->tokens);
    int8_t *proj_row = concat + align4(dim);
    const int8_t *qkv_in;

    /* Pass 1: K and V for every token (x is not written). */
    for (int32_t t = 0; t < p->tokens; t++) {
        st = qkv_input(p, x + t * dim, ln_row, r_row, &qkv_in);
        if (st == MCUF_OK) {
            st = mcuf_linear_s8(&p->k, qkv_in, k_buf + t * dim);
        }
        if (st == MCUF_OK) {
            st = mcuf_linear_s8(&p->v, qkv_in, v_buf + t * dim);
        }
        if (st != MCUF_OK) {
            return st;
        }
    }
    /* Pass 2: one query row at a time; x_t is overwritten last, once nothing reads it. */
    for (int32_t t = 0; t < p->tokens; t++) {
        int8_t *x_row = x + t * dim;
        st = qkv_input(p, x_row, ln_row, r_row, &qkv_in);
        if (st == MCUF_OK) {
            st = mcuf_linear_s8(&p->q, qkv_in, q_row);
        }
        for (int32_t h = 0; h < p->heads && st == MCUF_OK; h++) {
            st = mcuf_attn_scores_s8(&p->head, q_row + h * hd, k_buf + h * hd, dim, probs);
            if (st == MCUF_OK) {
                st = mcuf_softmax_s8(&p->softmax, probs, probs);
            }
            if (st == MCUF_OK) {
                st = mcuf_attn_weighted_sum_s8(&p->head, probs, v_buf + h * hd, dim, concat + h * hd);
            }
        }
        if (st == MCUF_OK) {
            st = mcuf_linear_s8(&p->proj, concat, proj_row);
        }
        if (st == MCUF_OK) {
            st = mcuf_add_s8(&p->residual, dim, x_row, proj_row, x_row);
        }
        if (st != MCUF_OK) {
            return st;
        }
    }
    return MCUF_OK;
}

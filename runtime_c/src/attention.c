/*
 * Fused row-wise attention block with token overwriting (DESIGN section 4): K and V for every
 * token, then one query row at a time; the H x T x T score tensor never exists. The shape checks
 * and the LN / qkv_down input row are shared with attention_perhead.c (common.c).
 */
#include <stddef.h>

#include "mcuf_internal.h"

int32_t mcuf_attention_scratch_size(const mcuf_attention_params *p)
{
    if (p == NULL) {
        return -1;
    }
    const int32_t parts[6] = {p->dim, p->qkv_rank, p->dim, p->tokens, p->dim, p->dim};
    return mcufi_layout_size(parts, 6);
}

mcuf_status mcuf_attention_rowwise_s8(const mcuf_attention_params *p, int8_t *x, int8_t *k_buf, int8_t *v_buf,
                                      int8_t *scratch)
{
    if (p == NULL || x == NULL || k_buf == NULL || v_buf == NULL || scratch == NULL) {
        return MCUF_ERR_ARG;
    }
    mcuf_status st = mcufi_attention_check(p);
    if (st != MCUF_OK) {
        return st;
    }
    const int32_t dim = p->dim;
    const int32_t hd = dim / p->heads;
    int8_t *ln_row = scratch;
    int8_t *r_row = ln_row + mcufi_align4(dim);
    int8_t *q_row = r_row + mcufi_align4(p->qkv_rank);
    int8_t *probs = q_row + mcufi_align4(dim);
    int8_t *concat = probs + mcufi_align4(p->tokens);
    int8_t *proj_row = concat + mcufi_align4(dim);
    const int8_t *qkv_in;

    /* Pass 1: K and V for every token (x is not written). */
    for (int32_t t = 0; t < p->tokens; t++) {
        st = mcufi_attention_qkv_input(p, x + t * dim, ln_row, r_row, &qkv_in);
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
        st = mcufi_attention_qkv_input(p, x_row, ln_row, r_row, &qkv_in);
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

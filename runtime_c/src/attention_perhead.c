/*
 * Per-head schedule of the fused attention block (mcuf.h, mcuf_attention_perhead_s8): K and V of
 * one head at a time instead of all heads, at the cost of recomputing LN and qkv_down per head.
 *
 * Bit-exact with mcuf_attention_rowwise_s8 because every integer it produces is computed by the
 * same public kernel from the same inputs:
 *   - x is not written before the last loop, so every LN / qkv_down row is LN(x_t) of the input x,
 *     exactly what both row-wise passes read (row-wise overwrites x_t only after its last read);
 *   - mcuf_linear_s8 computes each output channel from its own weight row, bias, multiplier and
 *     shift, so k_h(r)[o] == k(r)[h*hd + o] (same for q, v);
 *   - the score and weighted-sum kernels read K_h / V_h with stride hd; row-wise reads the same
 *     values as columns [h*hd, (h+1)*hd) of K / V with stride dim;
 *   - O[t] is row-wise's concat row, and proj / add are applied to it and to the unchanged x_t.
 * Besides the public mcuf.h kernels, this file uses only the shape checks and the LN / qkv_down
 * input row that mcuf_attention_rowwise_s8 uses too (common.c, which has no target-specific twin).
 */
#include <stddef.h>

#include "mcuf_internal.h"

/* The parts of the scratch layout (mcuf.h), in order: indices into the parts table. */
enum {
    PART_LN,    /* [dim] */
    PART_R,     /* [qkv_rank] */
    PART_Q,     /* [head_dim] */
    PART_PROBS, /* [tokens] */
    PART_PROJ,  /* [dim] */
    SCRATCH_PARTS
};

/* For heads >= 1. A negative dim gives a negative (or, truncated, zero) head_dim; the dim part
 * then makes mcufi_layout_size return -1. */
static void scratch_parts(const mcuf_attention_params *p, int32_t parts[SCRATCH_PARTS])
{
    parts[PART_LN] = p->dim;
    parts[PART_R] = p->qkv_rank;
    parts[PART_Q] = p->dim / p->heads;
    parts[PART_PROBS] = p->tokens;
    parts[PART_PROJ] = p->dim;
}

int32_t mcuf_attention_perhead_s8_scratch_size(const mcuf_attention_params *p)
{
    if (p == NULL || p->heads < 1) {
        return -1; /* head_dim = dim / heads is undefined */
    }
    int32_t parts[SCRATCH_PARTS];
    scratch_parts(p, parts);
    return mcufi_layout_size(parts, SCRATCH_PARTS);
}

/*
 * The shape checks of mcuf_attention_rowwise_s8, plus one bound: qkv_rank <= MCUF_LINEAR_MAX_IN
 * keeps the head-view offsets below in int32 (h * hd * in < 1024 * 65536); row-wise rejects the
 * same parameters (its q/k/v have in_features = qkv_rank), so both return MCUF_ERR_ARG.
 */
static mcuf_status check_perhead(const mcuf_attention_params *p)
{
    if (p->qkv_rank > MCUF_LINEAR_MAX_IN || !mcufi_linear_tile_ok(p->tile)) { /* tile: as row-wise */
        return MCUF_ERR_ARG;
    }
    return mcufi_attention_check(p);
}

/*
 * Output channels [first, first + n) of `full`: a view with the same in_features whose pointers
 * are advanced to channel `first`. Requires first + n <= full->out_features and
 * first * in_features < 2^31 (both hold after check_perhead). NULL pointers stay NULL: no
 * arithmetic on NULL, and mcuf_linear_s8 still rejects a NULL weights / multiplier / shift.
 */
static mcuf_linear_params out_rows(const mcuf_linear_params *full, int32_t first, int32_t n)
{
    mcuf_linear_params view = *full;
    view.out_features = n;
    if (view.weights != NULL) {
        view.weights += first * mcufi_linear_row_bytes(full); /* packed int4 rows are shorter */
    }
    if (view.bias != NULL) {
        view.bias += first;
    }
    if (view.multiplier != NULL) {
        view.multiplier += first;
    }
    if (view.shift != NULL) {
        view.shift += first;
    }
    return view;
}

/* Passes 1 and 2 for head h: K_h, V_h for every token, then O[:, h*hd:(h+1)*hd]. x is only read. */
static mcuf_status one_head(const mcuf_attention_params *p, int32_t h, const int8_t *x, int8_t *kh_buf,
                            int8_t *vh_buf, int8_t *o_buf, int8_t *ln_row, int8_t *r_row, int8_t *q_row,
                            int8_t *probs)
{
    const int32_t dim = p->dim;
    const int32_t hd = dim / p->heads;
    const mcuf_linear_params k_h = out_rows(&p->k, h * hd, hd);
    const mcuf_linear_params v_h = out_rows(&p->v, h * hd, hd);
    const mcuf_linear_params q_h = out_rows(&p->q, h * hd, hd);
    const int8_t *qkv_in;
    mcuf_status st;

    /* Pass 1 (head h): K_h and V_h, [tokens][hd] each, for every token. */
    for (int32_t t = 0; t < p->tokens; t++) {
        st = mcufi_attention_qkv_input(p, x + t * dim, ln_row, r_row, &qkv_in);
        if (st == MCUF_OK) {
            st = mcuf_linear_s8(&k_h, qkv_in, kh_buf + t * hd);
        }
        if (st == MCUF_OK) {
            st = mcuf_linear_s8(&v_h, qkv_in, vh_buf + t * hd);
        }
        if (st != MCUF_OK) {
            return st;
        }
    }
    /* Pass 2 (head h): one query row at a time; its head output goes to its slot of O[t]. */
    for (int32_t t = 0; t < p->tokens; t++) {
        st = mcufi_attention_qkv_input(p, x + t * dim, ln_row, r_row, &qkv_in);
        if (st == MCUF_OK) {
            st = mcuf_linear_s8(&q_h, qkv_in, q_row);
        }
        if (st == MCUF_OK) {
            st = mcuf_attn_scores_s8(&p->head, q_row, kh_buf, hd, probs);
        }
        if (st == MCUF_OK) {
            st = mcuf_softmax_s8(&p->softmax, probs, probs);
        }
        if (st == MCUF_OK) {
            st = mcuf_attn_weighted_sum_s8(&p->head, probs, vh_buf, hd, o_buf + t * dim + h * hd);
        }
        if (st != MCUF_OK) {
            return st;
        }
    }
    return MCUF_OK;
}

mcuf_status mcuf_attention_perhead_s8(const mcuf_attention_params *p, int8_t *x, int8_t *kh_buf, int8_t *vh_buf,
                                      int8_t *o_buf, int8_t *scratch)
{
    if (p == NULL || x == NULL || kh_buf == NULL || vh_buf == NULL || o_buf == NULL || scratch == NULL) {
        return MCUF_ERR_ARG;
    }
    mcuf_status st = check_perhead(p);
    if (st != MCUF_OK) {
        return st;
    }
    /* After check_perhead: tokens <= 32767, dim <= 1024, so t * dim < 2^25 and no index overflows. */
    const int32_t dim = p->dim;
    int32_t parts[SCRATCH_PARTS];
    int8_t *at[SCRATCH_PARTS];
    scratch_parts(p, parts);
    mcufi_layout_carve(scratch, parts, SCRATCH_PARTS, at);
    int8_t *proj_row = at[PART_PROJ];

    for (int32_t h = 0; h < p->heads; h++) {
        st = one_head(p, h, x, kh_buf, vh_buf, o_buf, at[PART_LN], at[PART_R], at[PART_Q], at[PART_PROBS]);
        if (st != MCUF_OK) {
            return st; /* x not written yet */
        }
    }
    /*
     * Pass 3: the output projection and the residual, one row at a time. Every other kernel has
     * already run (so checked its parameters); proj and add check theirs on t = 0 before add writes
     * x_0, so an error here also leaves x unchanged.
     */
    for (int32_t t = 0; t < p->tokens; t++) {
        int8_t *x_row = x + t * dim;
        st = mcuf_linear_s8(&p->proj, o_buf + t * dim, proj_row);
        if (st == MCUF_OK) {
            st = mcuf_add_s8(&p->residual, dim, x_row, proj_row, x_row);
        }
        if (st != MCUF_OK) {
            return st;
        }
    }
    return MCUF_OK;
}

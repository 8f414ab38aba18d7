/*
 * Fused row-wise MLP block with token overwriting: LN -> fc1 (low-rank) -> GELU table -> fc2
 * (low-rank) -> residual add into the token's own row. Scratch is O(dim + hidden + ranks).
 */
#include <stddef.h>

#include "mcuf_internal.h"

int32_t mcuf_mlp_scratch_size(const mcuf_mlp_params *p)
{
    if (p == NULL) {
        return -1;
    }
    const int32_t parts[5] = {p->dim, p->fc1.rank, p->hidden, p->fc2.rank, p->dim};
    return mcufi_layout_size(parts, 5);
}

/* in -> out through `lp`, dense (rank 0) or low-rank. */
static int lowrank_shape_ok(const mcuf_lowrank_params *lp, int32_t in, int32_t out)
{
    if (lp->rank < 0 || lp->up.out_features != out) {
        return 0;
    }
    if (lp->rank == 0) {
        return lp->up.in_features == in;
    }
    return lp->down.in_features == in && lp->down.out_features == lp->rank && lp->up.in_features == lp->rank;
}

mcuf_status mcuf_mlp_rowwise_s8(const mcuf_mlp_params *p, int8_t *x, int8_t *scratch)
{
    if (p == NULL || x == NULL || scratch == NULL || p->gelu_table == NULL) {
        return MCUF_ERR_ARG;
    }
    const int32_t dim = p->dim;
    if (p->tokens < 1 || dim < 1 || dim > MCUF_LN_MAX_DIM || p->hidden < 1 || p->ln.dim != dim) {
        return MCUF_ERR_ARG;
    }
    if (!lowrank_shape_ok(&p->fc1, dim, p->hidden) || !lowrank_shape_ok(&p->fc2, p->hidden, dim)) {
        return MCUF_ERR_ARG;
    }
    int8_t *ln_row = scratch;
    int8_t *mid1 = ln_row + mcufi_align4(dim);
    int8_t *hidden = mid1 + mcufi_align4(p->fc1.rank);
    int8_t *mid2 = hidden + mcufi_align4(p->hidden);
    int8_t *out_row = mid2 + mcufi_align4(p->fc2.rank);

    int8_t *x_row = x;
    for (int32_t t = 0; t < p->tokens; t++) {
        mcuf_status st = mcuf_layernorm_s8(&p->ln, x_row, ln_row);
        if (st == MCUF_OK) {
            st = mcuf_lowrank_linear_s8(&p->fc1, ln_row, mid1, hidden);
        }
        if (st == MCUF_OK) {
            st = mcuf_lut_s8(p->gelu_table, p->hidden, hidden, hidden);
        }
        if (st == MCUF_OK) {
            st = mcuf_lowrank_linear_s8(&p->fc2, hidden, mid2, out_row);
        }
        if (st == MCUF_OK) {
            st = mcuf_add_s8(&p->residual, dim, x_row, out_row, x_row); /* x_t overwritten last */
        }
        if (st != MCUF_OK) {
            return st;
        }
        x_row += dim;
    }
    return MCUF_OK;
}

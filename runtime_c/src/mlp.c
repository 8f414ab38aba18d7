/*
 * Fused row-wise MLP block with token overwriting: LN -> fc1 (low-rank) -> GELU table -> fc2
 * (low-rank) -> residual add into the token's own row, a tile of 1, 2 or 4 tokens at a time.
 * Scratch is O(tile * (dim + hidden + ranks)).
 */
#include <stddef.h>
#include <stdint.h>

#include "mcuf_internal.h"

static int32_t max4(int32_t a, int32_t b, int32_t c, int32_t d)
{
    const int32_t ab = a > b ? a : b;
    const int32_t cd = c > d ? c : d;
    return ab > cd ? ab : cd;
}

int32_t mcuf_mlp_scratch_size(const mcuf_mlp_params *p)
{
    if (p == NULL || !mcufi_linear_tile_ok(p->tile)) {
        return -1;
    }
    const int32_t widest = max4(p->dim, p->hidden, p->fc1.rank, p->fc2.rank);
    if (p->dim < 0 || p->hidden < 0 || p->fc1.rank < 0 || p->fc2.rank < 0 || widest > MCUF_LINEAR_MAX_IN) {
        return -1;
    }
    const int64_t t = p->tile;
    const int64_t rows[5] = {t * p->dim, t * p->fc1.rank, t * p->hidden, t * p->fc2.rank, t * p->dim};
    int32_t parts[6];
    for (int32_t i = 0; i < 5; i++) {
        if (rows[i] > INT32_MAX) {
            return -1;
        }
        parts[i] = (int32_t)rows[i];
    }
    parts[5] = 4 * mcufi_linear_tile_xbuf_words(widest, p->tile);
    return mcufi_layout_size(parts, 6);
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

/* `rows` rows through a low-rank (or dense) linear, `tile` rows per pass over the weights; the
 * rank-R rows go through mid. `out` is written only after both parameter sets were accepted. */
static mcuf_status lowrank_rows(const mcuf_lowrank_params *lp, int32_t rows, int32_t tile, const int8_t *in,
                                int8_t *mid, int8_t *xbuf, int8_t *out)
{
    if (lp->rank == 0) {
        return mcuf_linear_tile_s8(&lp->up, rows, tile, in, xbuf, out);
    }
    const mcuf_status st = mcuf_linear_tile_s8(&lp->down, rows, tile, in, xbuf, mid);
    if (st != MCUF_OK) {
        return st;
    }
    return mcuf_linear_tile_s8(&lp->up, rows, tile, mid, xbuf, out);
}

mcuf_status mcuf_mlp_rowwise_s8(const mcuf_mlp_params *p, int8_t *x, int8_t *scratch)
{
    if (p == NULL || x == NULL || scratch == NULL || p->gelu_table == NULL) {
        return MCUF_ERR_ARG;
    }
    const int32_t dim = p->dim;
    const int32_t tile = p->tile;
    if (p->tokens < 1 || dim < 1 || dim > MCUF_LN_MAX_DIM || p->hidden < 1 || p->ln.dim != dim) {
        return MCUF_ERR_ARG;
    }
    if (!lowrank_shape_ok(&p->fc1, dim, p->hidden) || !lowrank_shape_ok(&p->fc2, p->hidden, dim)) {
        return MCUF_ERR_ARG;
    }
    if (mcuf_mlp_scratch_size(p) < 0 || (tile > 1 && ((uintptr_t)scratch & 3u) != 0u)) {
        return MCUF_ERR_ARG;
    }
    int8_t *ln_rows = scratch;
    int8_t *mid1 = ln_rows + mcufi_align4(tile * dim);
    int8_t *hidden = mid1 + mcufi_align4(tile * p->fc1.rank);
    int8_t *mid2 = hidden + mcufi_align4(tile * p->hidden);
    int8_t *out_rows = mid2 + mcufi_align4(tile * p->fc2.rank);
    int8_t *xbuf = out_rows + mcufi_align4(tile * dim);

    int8_t *x_rows = x;
    for (int32_t t = 0; t < p->tokens; t += tile) {
        const int32_t n = p->tokens - t < tile ? p->tokens - t : tile;
        mcuf_status st = MCUF_OK;
        for (int32_t r = 0; r < n && st == MCUF_OK; r++) {
            st = mcuf_layernorm_s8(&p->ln, x_rows + r * dim, ln_rows + r * dim);
        }
        if (st == MCUF_OK) {
            st = lowrank_rows(&p->fc1, n, tile, ln_rows, mid1, xbuf, hidden);
        }
        if (st == MCUF_OK) {
            st = mcuf_lut_s8(p->gelu_table, n * p->hidden, hidden, hidden);
        }
        if (st == MCUF_OK) {
            st = lowrank_rows(&p->fc2, n, tile, hidden, mid2, xbuf, out_rows);
        }
        if (st == MCUF_OK) { /* the tile's rows of x overwritten last */
            st = mcuf_add_s8(&p->residual, n * dim, x_rows, out_rows, x_rows);
        }
        if (st != MCUF_OK) {
            return st;
        }
        x_rows += n * dim;
    }
    return MCUF_OK;
}

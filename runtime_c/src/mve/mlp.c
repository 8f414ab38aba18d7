/*
 * Fused row-wise MLP block with token overwriting: LN -> fc1 (low-rank) -> GELU table -> fc2
 * (low-rank) -> residual add into the token's own row, a tile of 1, 2 or 4 tokens at a time.
 * Scratch is O(tile * (dim + hidden + ranks)).
 *
 * With Helium (MVE) on the Cortex-M55: replaces ../mlp.c with KERNELS=optimized on an M55 (the
 * same function, checks, statuses and outputs). Two differences in form: the four linears'
 * parameters are checked once per call (mcufi_linear_check, before anything is written) and every
 * tile runs mcufi_linear_tile directly, where ../mlp.c calls mcuf_linear_tile_s8 per tile and
 * linear, which checks them again every time (a rejected set still returns MCUF_ERR_ARG with x
 * untouched, as there); and a tile's LayerNorm rows go through mcufi_mve_layernorm_rows (the
 * checks and the gamma / beta scan once per tile, the same rows).
 */
#include <stddef.h>
#include <stdint.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

static int32_t max4(int32_t a, int32_t b, int32_t c, int32_t d)
{
    const int32_t ab = a > b ? a : b;
    const int32_t cd = c > d ? c : d;
    return ab > cd ? ab : cd;
}

/* The parts of the scratch layout (mcuf.h), in order: indices into the parts table. */
enum {
    PART_LN,     /* [tile][dim] */
    PART_MID1,   /* [tile][fc1.rank] */
    PART_HIDDEN, /* [tile][hidden] */
    PART_MID2,   /* [tile][fc2.rank] */
    PART_OUT,    /* [tile][dim] */
    PART_XBUF,   /* expanded tile inputs of the widest input */
    SCRATCH_PARTS
};

/* The scratch layout: the part sizes into parts and their total (mcufi_layout_size), or -1 (parts
 * then undefined) when p is NULL or a size is out of range. The public size and the kernel's carving
 * both come from here. */
static int32_t scratch_layout(const mcuf_mlp_params *p, int32_t parts[SCRATCH_PARTS])
{
    if (p == NULL || !mcufi_linear_tile_ok(p->tile)) {
        return -1;
    }
    const int32_t widest = max4(p->dim, p->hidden, p->fc1.rank, p->fc2.rank);
    if (p->dim < 0 || p->hidden < 0 || p->fc1.rank < 0 || p->fc2.rank < 0 || widest > MCUF_LINEAR_MAX_IN) {
        return -1;
    }
    const int64_t t = p->tile;
    const int64_t rows[PART_XBUF] = {t * p->dim, t * p->fc1.rank, t * p->hidden, t * p->fc2.rank, t * p->dim};
    for (int32_t i = 0; i < PART_XBUF; i++) {
        if (rows[i] > INT32_MAX) {
            return -1;
        }
        parts[i] = (int32_t)rows[i];
    }
    parts[PART_XBUF] = 4 * mcufi_linear_tile_xbuf_words(widest, p->tile);
    return mcufi_layout_size(parts, SCRATCH_PARTS);
}

int32_t mcuf_mlp_rowwise_s8_scratch_size(const mcuf_mlp_params *p)
{
    int32_t parts[SCRATCH_PARTS];
    return scratch_layout(p, parts);
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
 * rank-R rows go through mid; both parameter sets were checked once per call (lowrank_check). */
static mcuf_status lowrank_rows(const mcuf_lowrank_params *lp, int32_t rows, int32_t tile, const int8_t *in,
                                int8_t *mid, int8_t *xbuf, int8_t *out)
{
    int32_t *buf = (int32_t *)(void *)xbuf; /* 4-byte aligned: checked with the scratch */
    if (lp->rank == 0) {
        mcufi_linear_tile(&lp->up, rows, tile, in, buf, 0, out);
        return MCUF_OK;
    }
    mcufi_linear_tile(&lp->down, rows, tile, in, buf, 0, mid);
    mcufi_linear_tile(&lp->up, rows, tile, mid, buf, 0, out);
    return MCUF_OK;
}

/* mcufi_linear_check on both linears of a low-rank layer (the up-projection alone when dense). */
static mcuf_status lowrank_check(const mcuf_lowrank_params *lp)
{
    if (lp->rank > 0 && mcufi_linear_check(&lp->down) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    return mcufi_linear_check(&lp->up);
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
    int32_t parts[SCRATCH_PARTS];
    if (scratch_layout(p, parts) < 0 || (tile > 1 && ((uintptr_t)scratch & 3u) != 0u)) {
        return MCUF_ERR_ARG;
    }
    if (lowrank_check(&p->fc1) != MCUF_OK || lowrank_check(&p->fc2) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    int8_t *at[SCRATCH_PARTS];
    mcufi_layout_carve(scratch, parts, SCRATCH_PARTS, at);
    int8_t *ln_rows = at[PART_LN];
    int8_t *mid1 = at[PART_MID1];
    int8_t *hidden = at[PART_HIDDEN];
    int8_t *mid2 = at[PART_MID2];
    int8_t *out_rows = at[PART_OUT];
    int8_t *xbuf = at[PART_XBUF];

    int8_t *x_rows = x;
    for (int32_t t = 0; t < p->tokens; t += tile) {
        const int32_t n = p->tokens - t < tile ? p->tokens - t : tile;
        mcuf_status st = mcufi_mve_layernorm_rows(&p->ln, n, x_rows, ln_rows); /* mcuf_layernorm_s8 per row */
        if (st == MCUF_OK) {
            st = lowrank_rows(&p->fc1, n, tile, ln_rows, mid1, xbuf, hidden);
        }
        if (st == MCUF_OK) {
            st = mcufi_lut_s8(p->gelu_table, n * p->hidden, hidden, hidden);
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

/*
 * Fused row-wise attention block (DESIGN section 4) with Helium (MVE) on the Cortex-M55: replaces
 * ../attention.c with KERNELS=optimized on an M55 (the same function, the same checks and statuses,
 * the same outputs). Three differences in form, all for the per-tile costs:
 *   - the linears' parameters are checked once per call (mcufi_linear_check on qkv_down, k, v, q
 *     and proj, before anything is written), then every tile runs mcufi_linear_tile directly;
 *     ../attention.c calls mcuf_linear_tile_s8 per tile, which checks them again every time (the
 *     same checks: a rejected set still returns MCUF_ERR_ARG with x untouched; k_buf and v_buf,
 *     which ../attention.c may have filled by then, are left unwritten);
 *   - a tile's LayerNorm rows through mcufi_mve_layernorm_rows (mve/layernorm.c: the checks and
 *     the gamma / beta scan once per tile; the same rows and statuses);
 *   - V transposed 4 values per step (VLDRB.S32, then a VSTRB.32 scatter to rows c .. c + 3 of
 *     v_buf, offsets 0, T, 2T, 3T), the dim % 4 tail predicated, where ../attention.c copies
 *     byte by byte; with at most 17 tokens 16 values per step (VLDRB.8, a VSTRB.8 scatter with
 *     the byte offsets 0, T, .., 15 T <= 255), the dim % 16 tail predicated.
 * Layout and passes as in ../attention.c: K and V for every
 * token, then one query row at a time; the H x T x T score tensor never exists. The linears run a
 * tile of 1, 2 or 4 tokens per pass over their weights (mcufi_linear_tile here). The shape checks are
 * shared with attention_perhead.c (common.c).
 *
 * v_buf holds V transposed, [dim][tokens] (v_buf[c * tokens + t] = V[t][c]): head h's V^T is the
 * block of rows [h * head_dim, (h + 1) * head_dim), and each weighted sum is a contiguous dot
 * product over the tokens (mcufi_attn_weighted_sum_tile), like the scores' rows of K. Pass 1
 * writes a tile's V rows into the projection rows (unused until pass 2) and transposes them.
 */
#include <stddef.h>
#include <stdint.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

/* The parts of the scratch layout (mcuf.h), in order: indices into the parts table. */
enum {
    PART_LN,     /* [tile][dim] */
    PART_R,      /* [tile][qkv_rank], 0 bytes with the cache */
    PART_Q,      /* [tile][dim] */
    PART_PROBS,  /* [tile][tokens] */
    PART_CONCAT, /* [tile][dim] */
    PART_PROJ,   /* [tile][dim] */
    PART_XBUF,   /* expanded tile inputs (linears), queries (scores) or probabilities (weighted sums) */
    PART_CACHE,  /* [tokens][qkv_rank] with a tile > 1 and qkv_rank > 0, else 0 bytes */
    SCRATCH_PARTS
};

/* The scratch carved into its parts. */
typedef struct {
    int8_t *ln;
    int8_t *r;
    int8_t *q;
    int8_t *probs;
    int8_t *concat;
    int8_t *proj;
    int8_t *xbuf;
    int8_t *cache; /* NULL without the cache */
} attention_scratch;

/* Whether pass 1 keeps every token's qkv_down row for pass 2 (which then skips LN and qkv_down). */
static int caches_qkv(const mcuf_attention_params *p)
{
    return p->tile > 1 && p->qkv_rank > 0;
}

static int32_t scratch_parts(const mcuf_attention_params *p, int32_t parts[SCRATCH_PARTS])
{
    if (!mcufi_linear_tile_ok(p->tile) || p->dim < 0 || p->qkv_rank < 0 || p->tokens < 0 ||
        p->dim > MCUF_LINEAR_MAX_IN || p->qkv_rank > MCUF_LINEAR_MAX_IN || p->tokens > MCUF_SOFTMAX_MAX_LENGTH) {
        return 0;
    }
    int32_t widest = p->dim > p->qkv_rank ? p->dim : p->qkv_rank;
    widest = widest > p->tokens ? widest : p->tokens; /* the weighted sums expand 4 rows of tokens */
    /* tile <= 4, dim, qkv_rank <= 65535, tokens <= 32767: every part fits int32. */
    parts[PART_LN] = p->tile * p->dim;
    parts[PART_R] = caches_qkv(p) ? 0 : p->tile * p->qkv_rank;
    parts[PART_Q] = p->tile * p->dim;
    parts[PART_PROBS] = p->tile * p->tokens;
    parts[PART_CONCAT] = p->tile * p->dim;
    parts[PART_PROJ] = p->tile * p->dim;
    parts[PART_XBUF] = 4 * mcufi_linear_tile_xbuf_words(widest, p->tile);
    parts[PART_CACHE] = caches_qkv(p) ? p->tokens * p->qkv_rank : 0;
    return 1;
}

int32_t mcuf_attention_rowwise_s8_scratch_size(const mcuf_attention_params *p)
{
    int32_t parts[SCRATCH_PARTS];
    if (p == NULL || !scratch_parts(p, parts)) {
        return -1;
    }
    return mcufi_layout_size(parts, SCRATCH_PARTS);
}

/* mcuf_linear_tile_s8 for parameters checked once per call (rows <= tile, the scratch aligned). */
static inline mcuf_status linear_tile(const mcuf_linear_params *p, int32_t rows, int32_t tile, const int8_t *input,
                                      int8_t *xbuf, int8_t *output)
{
    mcufi_linear_tile(p, rows, tile, input, (int32_t *)(void *)xbuf, 0, output);
    return MCUF_OK;
}

/* mcufi_linear_check on every linear of the block. */
static mcuf_status linears_check(const mcuf_attention_params *p)
{
    if (p->qkv_rank > 0 && mcufi_linear_check(&p->qkv_down) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    if (mcufi_linear_check(&p->k) != MCUF_OK || mcufi_linear_check(&p->v) != MCUF_OK ||
        mcufi_linear_check(&p->q) != MCUF_OK || mcufi_linear_check(&p->proj) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    return MCUF_OK;
}

/* LN of n rows of x, then qkv_down on them into r_rows (rank > 0): *qkv_in = the rows q/k/v read. */
static mcuf_status qkv_input_rows(const mcuf_attention_params *p, const int8_t *x_rows, int32_t n,
                                  const attention_scratch *s, int8_t *r_rows, const int8_t **qkv_in)
{
    const mcuf_status st = mcufi_mve_layernorm_rows(&p->ln, n, x_rows, s->ln); /* mcuf_layernorm_s8 per row */
    if (st != MCUF_OK) {
        return st;
    }
    if (p->qkv_rank == 0) {
        *qkv_in = s->ln;
        return MCUF_OK;
    }
    *qkv_in = r_rows;
    return linear_tile(&p->qkv_down, n, p->tile, s->ln, s->xbuf, r_rows);
}

mcuf_status mcuf_attention_rowwise_s8(const mcuf_attention_params *p, int8_t *x, int8_t *k_buf, int8_t *v_buf,
                                      int8_t *scratch)
{
    if (p == NULL || x == NULL || k_buf == NULL || v_buf == NULL || scratch == NULL) {
        return MCUF_ERR_ARG;
    }
    mcuf_status st = mcufi_attention_check(p);
    int32_t parts[SCRATCH_PARTS];
    if (st != MCUF_OK || !scratch_parts(p, parts) || (p->tile > 1 && ((uintptr_t)scratch & 3u) != 0u)) {
        return MCUF_ERR_ARG;
    }
    if (linears_check(p) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    const int32_t dim = p->dim;
    const int32_t hd = dim / p->heads;
    const int32_t tile = p->tile;
    int8_t *at[SCRATCH_PARTS];
    mcufi_layout_carve(scratch, parts, SCRATCH_PARTS, at);
    const attention_scratch s = {at[PART_LN],     at[PART_R],    at[PART_Q],    at[PART_PROBS],
                                 at[PART_CONCAT], at[PART_PROJ], at[PART_XBUF], caches_qkv(p) ? at[PART_CACHE] : NULL};
    const int8_t *qkv_in;

    const uint32x4_t rows4 = vmulq_n_u32(vidupq_n_u32(0u, 1), (uint32_t)p->tokens); /* 0, T, 2T, 3T */
    /* at most 17 tokens: 16 columns per VSTRB.8 scatter, byte offsets 0, T, .., 15 T <= 255 */
    const uint8x16_t rows16 = vmulq_n_u8(vidupq_n_u8(0u, 1), (uint8_t)p->tokens);
    /* Pass 1: K and V for every token, a tile at a time (x is not written); with the cache, the
     * qkv_down rows stay for pass 2. */
    for (int32_t t = 0; t < p->tokens; t += tile) {
        const int32_t n = p->tokens - t < tile ? p->tokens - t : tile;
        st = qkv_input_rows(p, x + t * dim, n, &s, s.cache != NULL ? s.cache + t * p->qkv_rank : s.r, &qkv_in);
        if (st == MCUF_OK) {
            st = linear_tile(&p->k, n, tile, qkv_in, s.xbuf, k_buf + t * dim);
        }
        if (st == MCUF_OK) {
            st = linear_tile(&p->v, n, tile, qkv_in, s.xbuf, s.proj);
        }
        if (st != MCUF_OK) {
            return st;
        }
        for (int32_t r = 0; r < n && p->tokens <= 17; r++) { /* V^T, 16 columns per step (below) */
            const int8_t *src = s.proj + r * dim;
            int8_t *dst = v_buf + t + r;
            int32_t c = 0;
            for (; c + 16 <= dim; c += 16) { /* rows c .. c + 15 of v_buf */
                vstrbq_scatter_offset_s8(dst, rows16, vldrbq_s8(src + c));
                dst += 16 * p->tokens;
            }
            if (c < dim) {
                const mve_pred16_t pr = vctp8q((uint32_t)(dim - c));
                vstrbq_scatter_offset_p_s8(dst, rows16, vldrbq_z_s8(src + c, pr), pr);
            }
        }
        for (int32_t r = 0; r < n && p->tokens > 17; r++) { /* V^T: column c of the tile's rows to row c of v_buf */
            const int8_t *src = s.proj + r * dim;
            int8_t *dst = v_buf + t + r;
            for (int32_t c = 0; c < dim; c += 4) { /* rows c .. c + 3 of v_buf, the tail predicated */
                const mve_pred16_t pr = vctp32q((uint32_t)(dim - c));
                vstrbq_scatter_offset_p_s32(dst, rows4, vldrbq_z_s32(src + c, pr), pr);
                dst += 4 * p->tokens;
            }
        }
    }
    /* Pass 2: the queries of a tile, each query row through every head, then the tile's projection;
     * the tile's rows of x are overwritten last, once nothing reads them. */
    for (int32_t t = 0; t < p->tokens; t += tile) {
        const int32_t n = p->tokens - t < tile ? p->tokens - t : tile;
        int8_t *x_rows = x + t * dim;
        if (s.cache != NULL) { /* LN(x_t) and qkv_down of pass 1: x_t is not written before this tile */
            qkv_in = s.cache + t * p->qkv_rank;
        } else {
            st = qkv_input_rows(p, x_rows, n, &s, s.r, &qkv_in);
        }
        if (st == MCUF_OK) {
            st = linear_tile(&p->q, n, tile, qkv_in, s.xbuf, s.q);
        }
        for (int32_t h = 0; h < p->heads && st == MCUF_OK; h++) {
            /* mcuf_attn_scores_s8's checks (the same for every row of the tile), then all rows */
            st = mcufi_attn_head_check(&p->head, s.q + h * hd, k_buf + h * hd, s.probs, dim);
            if (st == MCUF_OK) {
                mcufi_attn_scores_tile(&p->head, n, s.q + h * hd, dim, k_buf + h * hd, dim, (int32_t *)(void *)s.xbuf,
                                       s.probs);
            }
            for (int32_t r = 0; r < n && st == MCUF_OK; r++) {
                int8_t *probs = s.probs + r * p->tokens;
                st = mcuf_softmax_s8(&p->softmax, probs, probs);
            }
            /* mcuf_attn_weighted_sum_s8's checks, then the tile's rows against V_h^T */
            const int8_t *vt = v_buf + h * hd * p->tokens;
            if (st == MCUF_OK) {
                st = mcufi_attn_head_check(&p->head, s.probs, vt, s.concat + h * hd, dim);
            }
            if (st == MCUF_OK) {
                mcufi_attn_weighted_sum_tile(&p->head, n, s.probs, vt, (int32_t *)(void *)s.xbuf, s.concat + h * hd,
                                             dim);
            }
        }
        if (st == MCUF_OK) {
            st = linear_tile(&p->proj, n, tile, s.concat, s.xbuf, s.proj);
        }
        if (st == MCUF_OK) {
            st = mcuf_add_s8(&p->residual, n * dim, x_rows, s.proj, x_rows);
        }
        if (st != MCUF_OK) {
            return st;
        }
    }
    return MCUF_OK;
}

/*
 * mcuformer C operator library: internal declarations shared by the kernel files. Not part of the
 * API (mcuf.h): the names start with mcufi_ and may change with the library.
 *
 * Layout of runtime_c/src (DESIGN section 5): a DSP-extension twin src/dsp/X.c replaces src/X.c
 * whole, so a file that has a twin holds only the code its twin really optimizes. Parameter checks
 * and everything else that is the same in both variants live here or in files that have no twin
 * (linear_api.c, linear_s4w_api.c, lut.c, isqrt.c, common.c). The per-call checks of layernorm
 * and add are static inline: they run on every call, and inlining keeps the instruction counts of
 * both variants.
 */
#ifndef MCUF_INTERNAL_H
#define MCUF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mcuf.h"
#include "mcuf_config.h"

/* ---------------------------------------------------------------------------------------------
 * Ranges of mcuf.h.
 * ------------------------------------------------------------------------------------------- */
/* multiplier in [2^30, 2^31) or 0, shift in [-31, 30] (mcuf_requant). */
static inline int mcufi_requant_ok(int32_t multiplier, int32_t shift)
{
    return (multiplier == 0 || multiplier >= (INT32_C(1) << 30)) && shift >= -31 && shift <= 30;
}

/* An input offset (= -zero_point_in): [-127, 128]. */
static inline int mcufi_in_offset_ok(int32_t off)
{
    return off >= -127 && off <= 128;
}

/* An output offset (= zero_point_out): [-128, 127]. */
static inline int mcufi_out_offset_ok(int32_t off)
{
    return off >= -128 && off <= 127;
}

/* n rounded up to a multiple of 4, for 0 <= n <= INT32_MAX - 3 (scratch layouts). */
static inline int32_t mcufi_align4(int32_t n)
{
    return (int32_t)(((uint32_t)n + 3u) & ~3u);
}

/*
 * The portable output stage: clamp(r + offset, lo, hi) for offset in [-128, 127] and
 * -128 <= lo <= hi <= 127. r is first clamped to [-256, 255], which keeps r + offset in range
 * and the result unchanged.
 */
static inline int8_t mcufi_out_s8(int32_t r, int32_t offset, int32_t lo, int32_t hi)
{
    r = r > 255 ? 255 : (r < -256 ? -256 : r);
    r += offset;
    r = r > hi ? hi : (r < lo ? lo : r);
    return (int8_t)r;
}

/* ---------------------------------------------------------------------------------------------
 * Parameter checks of the kernels that have a DSP twin (both variants run the same checks, so the
 * same parameters give the same status). MCUF_OK or MCUF_ERR_ARG.
 * ------------------------------------------------------------------------------------------- */
/* mcuf_attn_scores_s8 (a = q, b = k, out = scores, stride = k_stride) and
 * mcuf_attn_weighted_sum_s8 (a = probs, b = v, out = out, stride = v_stride). A function
 * (common.c), not inline: inlined into both kernels it costs flash, and registers in the portable
 * dot-product loops. */
mcuf_status mcufi_attn_head_check(const mcuf_attn_head_params *p, const int8_t *a, const int8_t *b,
                                  const int8_t *out, int32_t stride);

/* The score rows of n queries (row r at q + r * q_stride) into scores [n][tokens], for parameters
 * mcufi_attn_head_check accepted (with every query row): the same integers as n calls of
 * mcuf_attn_scores_s8. xbuf: mcufi_linear_tile_xbuf_words(head_dim, 4) words when n == 4 (the DSP
 * twin expands the 4 queries into it, the Helium twin keeps its score sums there; other n and the
 * portable kernel do not use it). */
void mcufi_attn_scores_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *q, int32_t q_stride,
                            const int8_t *k, int32_t k_stride, int32_t *xbuf, int8_t *scores);

/* The weighted sums of n queries against one head's V stored transposed: probs [n][tokens] (the
 * softmax rows), vt [head_dim][tokens] (vt[d * tokens + j] = V[j][d]); out[r * out_stride + d] =
 * what mcuf_attn_weighted_sum_s8 computes for probability row r and the untransposed V, for
 * parameters mcufi_attn_head_check accepted. With V transposed each output is a contiguous dot
 * product over the tokens (the DSP and Helium twins use dual-MAC / 8-bit vector dot products).
 * xbuf: mcufi_linear_tile_xbuf_words(tokens, 4) words when n == 4 (the DSP twin expands the 4
 * probability rows into it). */
void mcufi_attn_weighted_sum_tile(const mcuf_attn_head_params *p, int32_t n, const int8_t *probs,
                                  const int8_t *vt, int32_t *xbuf, int8_t *out, int32_t out_stride);

/* mcuf_layernorm_s8. */
static inline mcuf_status mcufi_layernorm_check(const mcuf_layernorm_params *p, const int8_t *input,
                                                const int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL || p->gamma == NULL || p->beta == NULL) {
        return MCUF_ERR_ARG;
    }
    if (p->dim < 1 || p->dim > MCUF_LN_MAX_DIM) {
        return MCUF_ERR_ARG;
    }
    if (!mcufi_in_offset_ok(p->input_offset) || !mcufi_out_offset_ok(p->output_offset) ||
        !mcufi_requant_ok(p->out.multiplier, p->out.shift) || p->epsilon > MCUF_LN_MAX_EPSILON) {
        return MCUF_ERR_ARG;
    }
    return MCUF_OK;
}

/* mcuf_layernorm_s8's scale inv = 2^(30 + F) / max(2^F, isqrt((dim * Q - S^2) * 2^(2F) + epsilon))
 * (mcuf.h) from S = sum x_i and Q = sum x_i^2: 0 <= dim * Q - S^2 < 2^34 (dim^2 times a variance
 * of values in a range of 255), so R < 2^62 + MCUF_LN_MAX_EPSILON < 2^63 and sigma < 2^31.5:
 * inv is in [2^12, 2^30]. One 64-bit division per row. */
static inline int32_t mcufi_layernorm_inv(const mcuf_layernorm_params *p, int32_t sum, int32_t sq)
{
    const int64_t d_var = (int64_t)p->dim * sq - (int64_t)sum * sum; /* sum d_i^2 / dim, exact */
    const uint64_t r = ((uint64_t)d_var << (2 * MCUF_LN_SQRT_BITS)) + p->epsilon;
    uint32_t sigma = mcuf_isqrt_u64(r); /* dim * sqrt(var + eps) in Q(F) */
    if (sigma < (UINT32_C(1) << MCUF_LN_SQRT_BITS)) {
        sigma = UINT32_C(1) << MCUF_LN_SQRT_BITS; /* only when d_var = 0: then every d_i = 0 */
    }
    return (int32_t)((UINT64_C(1) << (30 + MCUF_LN_SQRT_BITS)) / sigma);
}

/* mcuf_softmax_s8: a row of 1..MCUF_SOFTMAX_MAX_LENGTH values and a table whose entry 0 is 1.0 (Q16). */
static inline mcuf_status mcufi_softmax_check(const mcuf_softmax_params *p, const int8_t *input, const int8_t *output)
{
    if (p == NULL || p->exp_table == NULL || input == NULL || output == NULL) {
        return MCUF_ERR_ARG;
    }
    if (p->length < 1 || p->length > MCUF_SOFTMAX_MAX_LENGTH || p->exp_table[0] != 65536) {
        return MCUF_ERR_ARG;
    }
    return MCUF_OK;
}

/* mcuf_add_s8. left_shift <= 23 keeps (x + offset) << left_shift in int32 (|x + offset| <= 255). */
static inline mcuf_status mcufi_add_check(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b,
                                          const int8_t *output)
{
    if (p == NULL || n < 0 || (n > 0 && (a == NULL || b == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    if (!mcufi_in_offset_ok(p->input1_offset) || !mcufi_in_offset_ok(p->input2_offset) ||
        !mcufi_out_offset_ok(p->output_offset)) {
        return MCUF_ERR_ARG;
    }
    if (p->left_shift < 0 || p->left_shift > 23 || p->act_min < -128 || p->act_max > 127 ||
        p->act_min > p->act_max) {
        return MCUF_ERR_ARG;
    }
    if (!mcufi_requant_ok(p->input1.multiplier, p->input1.shift) ||
        !mcufi_requant_ok(p->input2.multiplier, p->input2.shift) ||
        !mcufi_requant_ok(p->output.multiplier, p->output.shift)) {
        return MCUF_ERR_ARG;
    }
    return MCUF_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Linear: linear.c / dsp/linear.c compute rows; linear_api.c (no twin) checks the parameters and
 * is the public mcuf_linear_s8 / mcuf_linear_rows_s8.
 * ------------------------------------------------------------------------------------------- */
/* One row, input [in_features] -> output [out_features], for parameters mcufi_linear_check accepted. */
void mcufi_linear_row(const mcuf_linear_params *p, const int8_t *input, int8_t *output);

/* Token tiles (mcuf_linear_tile_s8): a tile of 1, 2 or 4 rows. */
static inline int mcufi_linear_tile_ok(int32_t tile)
{
    return tile == 1 || tile == 2 || tile == 4;
}

/* int32 words of the expanded-input buffer of a tile: 2 words (two int16 lane pairs) per block of
 * 4 inputs (the last one partial) per row of the tile; none for tile 1.
 * n_in <= MCUF_LINEAR_MAX_IN: at most 2^17 words. */
static inline int32_t mcufi_linear_tile_xbuf_words(int32_t n_in, int32_t tile)
{
    return tile > 1 ? 2 * tile * ((n_in + 3) >> 2) : 0;
}

/* `rows` rows [rows][in_features] -> [rows][out_features], `tile` rows per pass over the weights
 * where the kernel has a tiled path (the DSP twin), for parameters mcufi_linear_check accepted; xbuf
 * holds mcufi_linear_tile_xbuf_words(in_features, tile) words (unused by the portable kernel). Row r
 * adds the bias at p->bias + r * bias_stride (0: the same bias for every row). The same outputs as
 * row by row. */
void mcufi_linear_tile(const mcuf_linear_params *p, int32_t rows, int32_t tile, const int8_t *input,
                       int32_t *xbuf, int32_t bias_stride, int8_t *output);

/* The parameter checks of mcuf_linear_s8 (linear_api.c): MCUF_OK or MCUF_ERR_ARG. */
mcuf_status mcufi_linear_check(const mcuf_linear_params *p);

/* Bytes of one output channel's weights: in_features (int8) or (in_features + 1) / 2 (packed
 * int4). in_features <= MCUF_LINEAR_MAX_IN. */
static inline int32_t mcufi_linear_row_bytes(const mcuf_linear_params *p)
{
    return p->weight_format == MCUF_WEIGHTS_S4 ? (p->in_features + 1) >> 1 : p->in_features;
}

#if defined(MCUF_WITH_S4W)
/* mcufi_linear_s4w_row on the fields of p (weight_format MCUF_WEIGHTS_S4; linear_s4w_api.c). */
void mcufi_linear_row_s4w_of(const mcuf_linear_params *p, const int8_t *input, int8_t *output);
#endif

/* Whether p's weights are packed int4; a constant 0 without MCUF_WITH_S4W, so an int8-only runtime
 * has no int4 code (mcufi_linear_check rejects MCUF_WEIGHTS_S4 there). */
static inline int mcufi_linear_is_s4w(const mcuf_linear_params *p)
{
#if defined(MCUF_WITH_S4W)
    return p->weight_format == MCUF_WEIGHTS_S4;
#else
    (void)p;
    return 0;
#endif
}

/* The start of each variant's mcufi_linear_row: a packed int4 row goes to the int4 row kernel
 * (returns 1: done); 0: the caller's int8 kernel runs. */
static inline int mcufi_linear_row_dispatch_s4w(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
#if defined(MCUF_WITH_S4W)
    if (p->weight_format == MCUF_WEIGHTS_S4) {
        mcufi_linear_row_s4w_of(p, input, output);
        return 1;
    }
#else
    (void)p;
    (void)input;
    (void)output;
#endif
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Linear with packed int4 weights: linear_s4w.c / dsp/linear_s4w.c compute rows; linear_s4w_api.c
 * (no twin) checks the parameters (mcufi_linear_check on a view: the same ranges) and is the
 * public mcuf_linear_s4w_s8 / mcuf_linear_rows_s4w_s8.
 * ------------------------------------------------------------------------------------------- */
/* One row, input [in_features] -> output [out_features], for checked parameters. */
void mcufi_linear_s4w_row(const mcuf_linear_s4w_params *p, const int8_t *input, int8_t *output);

/* The value of a two's complement int4 nibble (0..15): in [-8, 7]. */
static inline int32_t mcufi_s4(uint32_t nibble)
{
    return (int32_t)(nibble ^ 8u) - 8;
}

/* Weight i of the in-order tail of a packed int4 row (mcuf.h: i >= in_features & ~7). */
static inline int32_t mcufi_s4_tail_at(const int8_t *row, int32_t i)
{
    const uint32_t byte = (uint8_t)row[i >> 1];
    return mcufi_s4((i & 1) != 0 ? byte >> 4 : byte & 0xFu);
}

/* mcuf_lut_s8 on its table (lut.c): the same checks (table, n, input, output) and lookups. The MLP
 * block calls it with its gelu_table, so its per-tile call costs what it did before mcuf_lut_params. */
mcuf_status mcufi_lut_s8(const int8_t *table, int32_t n, const int8_t *input, int8_t *output);

/* ---------------------------------------------------------------------------------------------
 * Scratch layouts. A kernel with a scratch of several parts fills one table of part sizes (bytes,
 * in layout order) and both sizes its scratch from it (mcufi_layout_size, in its *_scratch_size())
 * and carves the scratch from it (mcufi_layout_carve, in the kernel): one layout, written once.
 * ------------------------------------------------------------------------------------------- */
/* Sum of mcufi_align4(parts[i]) for i < n, or -1 for a negative part or a total above INT32_MAX
 * (the *_scratch_size() contract; common.c). */
int32_t mcufi_layout_size(const int32_t *parts, int32_t n);

/* at[i] = base + sum of mcufi_align4(parts[j]) for j < i, i < n: the parts back to back, each
 * rounded up to 4 bytes, as mcufi_layout_size sizes them (so a 4-byte aligned base keeps every part
 * 4-byte aligned). For a table mcufi_layout_size accepted. Inline: with a constant n the loop
 * unrolls into the same pointer additions as written out by hand (once per kernel call). */
static inline void mcufi_layout_carve(int8_t *base, const int32_t *parts, int32_t n, int8_t **at)
{
#pragma GCC unroll 16
    for (int32_t i = 0; i < n; i++) {
        at[i] = base;
        base += mcufi_align4(parts[i]);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Fused kernels (common.c, no twin).
 * ------------------------------------------------------------------------------------------- */

/*
 * Shape consistency of every part of an attention block (both schedules, so the same parameters
 * give the same status): tokens, dim, heads ranges, heads divides dim, and ln / qkv_down / q / k /
 * v / proj / head / softmax shapes. Value ranges are checked by the kernels on their first call.
 * p != NULL.
 */
mcuf_status mcufi_attention_check(const mcuf_attention_params *p);

/* Mean pooling shared by the pool heads (pool_head.c, class_token.c): the checks common to both (scratch
 * 4-byte aligned, 1 <= dim <= MCUF_LN_MAX_DIM, ln.dim = head.in_features = dim, head.out_features =
 * classes >= 1, pooling offsets and requant in range); their scratch layout, int32 acc [dim] | two int8
 * rows [dim] (each head names the two rows), sized by mcufi_pool_scratch_size (-1 for dim < 0 or a
 * size above INT32_MAX) and carved by mcufi_pool_scratch_carve; the output stage
 * pooled[c] = clamp(requantize(acc[c], pool) + output_offset, -128, 127). */
int mcufi_pool_check(const int8_t *scratch, int32_t dim, int32_t classes, const mcuf_layernorm_params *ln,
                     const mcuf_linear_params *head, int32_t input_offset, int32_t output_offset, mcuf_requant pool);
#define MCUFI_POOL_PARTS 3

/* For 0 <= dim <= INT32_MAX / 4. */
static inline void mcufi_pool_scratch_parts(int32_t dim, int32_t parts[MCUFI_POOL_PARTS])
{
    parts[0] = 4 * dim; /* int32 acc [dim] */
    parts[1] = dim;
    parts[2] = dim;
}

int32_t mcufi_pool_scratch_size(int32_t dim);

/* For a dim mcufi_pool_check accepted: *acc, then the two rows in layout order. */
static inline void mcufi_pool_scratch_carve(int8_t *scratch, int32_t dim, int32_t **acc, int8_t **row1, int8_t **row2)
{
    int32_t parts[MCUFI_POOL_PARTS];
    int8_t *at[MCUFI_POOL_PARTS];
    mcufi_pool_scratch_parts(dim, parts);
    mcufi_layout_carve(scratch, parts, MCUFI_POOL_PARTS, at);
    *acc = (int32_t *)(void *)at[0];
    *row1 = at[1];
    *row2 = at[2];
}
void mcufi_pool_output(const int32_t *acc, int32_t dim, mcuf_requant pool, int32_t output_offset, int8_t *pooled);

/* y = LN(x_row) into ln_row; *qkv_in = the row the q/k/v projections read: ln_row, or
 * qkv_down(y) in r_row when qkv_rank > 0. */
mcuf_status mcufi_attention_qkv_input(const mcuf_attention_params *p, const int8_t *x_row, int8_t *ln_row,
                                      int8_t *r_row, const int8_t **qkv_in);

#endif /* MCUF_INTERNAL_H */

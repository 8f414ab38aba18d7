/*
 * mcuformer C operator library: int8, integer-only kernels for vision transformers.
 *
 * Conventions (CMSIS-NN style):
 *   - names: mcuf_<op>[_<variant>]_<dtype>; fixed argument order: params, inputs, scratch, output.
 *   - every kernel returns an mcuf_status; MCUF_OK on success, MCUF_ERR_ARG on a bad parameter.
 *   - activations are int8 with a per-tensor zero point; offsets are passed pre-negated
 *     (input_offset = -zero_point_in, in [-127, 128]; output_offset = zero_point_out).
 *   - weights are int8, symmetric (zero point 0), per output channel, row-major [out][in].
 *   - bias is int32 with scale s_in * s_w[o].
 *   - requantization is TFLite's: Q31 multiplier + shift (shift > 0 = left shift), computed by
 *     mcuf_requantize() below; the compiler computes every multiplier, shift and table.
 *   - no float, no malloc, no stdio. A kernel mcuf_<kernel> that needs scratch exports
 *     mcuf_<kernel>_scratch_size() (e.g. mcuf_mlp_rowwise_s8_scratch_size for mcuf_mlp_rowwise_s8),
 *     which sizes its scratch from the same table of parts the kernel carves it from.
 *   - every documented range is checked (MCUF_ERR_ARG). The checks depend only on the parameters
 *     (one exception: softmax's zero sum, reachable only with an out-of-range table), and the
 *     fused kernels run them all on their first row, before their first write to x: on
 *     MCUF_ERR_ARG x is unchanged. Nothing in the library has undefined behaviour, whatever the
 *     inputs.
 *   - *_scratch_size() returns -1 when p is NULL, a size is negative or the total exceeds INT32_MAX.
 *
 * The Python integer reference (codegen/ref.py) computes exactly the same integers.
 */
#ifndef MCUF_H
#define MCUF_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MCUF_OK = 0,
    MCUF_ERR_ARG = -1,   /* a parameter is out of its documented range */
    MCUF_ERR_INPUT = -2, /* the input callback reported an error */
} mcuf_status;

/* ---------------------------------------------------------------------------------------------
 * Fixed-point helpers (TFLite gemmlowp semantics).
 *   mcuf_srdhm(a, b): saturating rounding doubling high multiply, (a*b*2 + 2^31) >> 32 with
 *     round-half-away-from-zero nudge; saturates INT32_MIN*INT32_MIN to INT32_MAX.
 *   mcuf_rdbpot(x, e): rounding divide by 2^e, e in [0, 31], round half away from zero.
 *   mcuf_requantize(x, m, s): left = s > 0 ? s : 0, right = s > 0 ? 0 : -s;
 *     return rdbpot(srdhm(x * 2^left, m), right). m in [2^30, 2^31) or 0; s in [-31, 30].
 *     x * 2^left saturates to int32 (TFLite leaves that overflow undefined).
 *   The helpers clamp an out-of-range exponent / shift into its range instead of shifting by it;
 *   kernels reject such parameters before calling them.
 * ------------------------------------------------------------------------------------------- */
int32_t mcuf_srdhm(int32_t a, int32_t b);
int32_t mcuf_rdbpot(int32_t x, int32_t exponent);
int32_t mcuf_requantize(int32_t x, int32_t multiplier, int32_t shift);

typedef struct {
    int32_t multiplier; /* Q31, [2^30, 2^31) or 0 */
    int32_t shift;      /* [-31, 30], > 0 is a left shift */
} mcuf_requant;

/* ---------------------------------------------------------------------------------------------
 * Linear (TFLite FULLY_CONNECTED int8, per-channel):
 *   acc[o] = sum_i (in[i] + input_offset) * w[o][i] + (bias ? bias[o] : 0)
 *   out[o] = clamp(mcuf_requantize(acc[o], multiplier[o], shift[o]) + output_offset,
 *                  act_min, act_max)
 * The sum is exact in int32 (|term| <= 255 * 128, in_features <= MCUF_LINEAR_MAX_IN); adding the
 * bias saturates to int32.
 * Ranges: 1 <= in_features <= MCUF_LINEAR_MAX_IN, out_features >= 1; input_offset in [-127, 128];
 *   output_offset in [-128, 127]; -128 <= act_min <= act_max <= 127; multiplier[o], shift[o] as
 *   for mcuf_requant (checked for every channel); weight_format MCUF_WEIGHTS_S8, or MCUF_WEIGHTS_S4
 *   in a runtime built with MCUF_WITH_S4W (mcuf_config.h), else MCUF_ERR_ARG.
 * weight_format: how `weights` is stored. MCUF_WEIGHTS_S8 (0, what a zero-initialized struct has):
 *   int8 [out_features][in_features]. MCUF_WEIGHTS_S4 (1): packed int4 rows of (in_features + 1) / 2
 *   bytes, mcuf_linear_s4w_params' layout (below); every entry point taking mcuf_linear_params
 *   (mcuf_linear_s8, _rows_s8, _tile_s8, and the low-rank, attention and MLP kernels through them)
 *   then runs the int4 row kernel (mcuf_linear_s4w_s8's arithmetic: the same integers as int8
 *   weights of the same values), row by row (a token tile does not apply to int4 weights).
 * ------------------------------------------------------------------------------------------- */
#define MCUF_LINEAR_MAX_IN 65535
#define MCUF_WEIGHTS_S8 0
#define MCUF_WEIGHTS_S4 1

typedef struct {
    int32_t in_features;
    int32_t out_features;
    int32_t input_offset;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
    const int8_t *weights;     /* [out_features][in_features], or packed int4 rows (weight_format) */
    const int32_t *bias;       /* [out_features] or NULL */
    const int32_t *multiplier; /* [out_features] */
    const int32_t *shift;      /* [out_features] */
    int32_t weight_format;     /* MCUF_WEIGHTS_S8 (0) or MCUF_WEIGHTS_S4 */
} mcuf_linear_params;

/* One row: input [in_features] -> output [out_features]. input and output must not overlap. */
mcuf_status mcuf_linear_s8(const mcuf_linear_params *p, const int8_t *input, int8_t *output);

/* `rows` rows, row-major: input [rows][in_features] -> output [rows][out_features]. */
mcuf_status mcuf_linear_rows_s8(const mcuf_linear_params *p, int32_t rows, const int8_t *input,
                                int8_t *output);

/* The same rows computed a tile of `tile` tokens (1, 2 or 4) at a time: each weight is loaded once
 * per tile instead of once per row where the kernel has a tiled path (the DSP kernels; the portable
 * kernel runs row by row); identical outputs. scratch: mcuf_linear_tile_s8_scratch_size(p, tile) bytes,
 * 4-byte aligned (checked; NULL allowed for tile 1): the tile's inputs expanded to int16,
 * 8 * tile * ceil(in_features / 4) bytes for tile > 1, 0 for tile 1. */
int32_t mcuf_linear_tile_s8_scratch_size(const mcuf_linear_params *p, int32_t tile);
mcuf_status mcuf_linear_tile_s8(const mcuf_linear_params *p, int32_t rows, int32_t tile, const int8_t *input,
                                int8_t *scratch, int8_t *output);

/* ---------------------------------------------------------------------------------------------
 * Linear with packed int4 weights (int8 activations; weights symmetric int4 per output channel):
 * mcuf_linear_s8's arithmetic exactly, with w[o][i] the signed 4-bit weights,
 *   acc[o] = sum_i (in[i] + input_offset) * w[o][i] + (bias ? bias[o] : 0)
 *   out[o] = clamp(mcuf_requantize(acc[o], multiplier[o], shift[o]) + output_offset,
 *                  act_min, act_max)
 * Packing: two weights per byte, each a two's complement nibble in [-8, 7] (the compiler's are in
 * [-7, 7], scale max|w_f[o]| / 7). Each row is (in_features + 1) / 2 bytes, rows back to back (a
 * row of odd length ends on a whole byte: its last high nibble is padding, ignored by the kernels,
 * 0 from the compiler). Within a row, weights go in blocks of 8 (4 bytes): the bytes of block b
 * are (w0 | w1 << 4), (w4 | w5 << 4), (w2 | w3 << 4), (w6 | w7 << 4) with wk = w[o][8b + k], so that
 * one word splits into the 16-bit lane pairs (w0, w2), (w1, w3), (w4, w6), (w5, w7) of four
 * consecutive inputs with a mask and SXTB16; the last in_features % 8 weights follow in order,
 * w[o][i] in bits 0..3 (even i) or 4..7 (odd i) of the row's byte i / 2.
 * |term| <= 255 * 8, so the sum is exact in int32; adding the bias saturates to int32.
 * Ranges: as mcuf_linear_s8 (1 <= in_features <= MCUF_LINEAR_MAX_IN, ...).
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t in_features;
    int32_t out_features;
    int32_t input_offset;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
    const int8_t *weights;     /* [out_features][(in_features + 1) / 2] bytes, packed int4 (above) */
    const int32_t *bias;       /* [out_features] or NULL */
    const int32_t *multiplier; /* [out_features] */
    const int32_t *shift;      /* [out_features] */
} mcuf_linear_s4w_params;

/* One row: input [in_features] -> output [out_features]. input and output must not overlap. */
mcuf_status mcuf_linear_s4w_s8(const mcuf_linear_s4w_params *p, const int8_t *input, int8_t *output);

/* `rows` rows, row-major: input [rows][in_features] -> output [rows][out_features]. */
mcuf_status mcuf_linear_rows_s4w_s8(const mcuf_linear_s4w_params *p, int32_t rows, const int8_t *input,
                                    int8_t *output);

/* ---------------------------------------------------------------------------------------------
 * Low-rank linear: W = up @ down. rank == 0: dense, only `up` is used (up.in_features = in).
 * rank > 0: mid = linear(down, in) (int8 [rank], own quantization), out = linear(up, mid).
 * The rank-R intermediate lives in caller scratch: mcuf_lowrank_linear_s8_scratch_size() bytes.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t rank; /* 0 = dense */
    mcuf_linear_params down; /* in -> rank (bias NULL); unused when rank == 0 */
    mcuf_linear_params up;   /* rank (or in) -> out */
} mcuf_lowrank_params;

int32_t mcuf_lowrank_linear_s8_scratch_size(const mcuf_lowrank_params *p);
mcuf_status mcuf_lowrank_linear_s8(const mcuf_lowrank_params *p, const int8_t *input, int8_t *scratch,
                                   int8_t *output);

/* ---------------------------------------------------------------------------------------------
 * LayerNorm over one row of `dim` int8 values (I-BERT style, integer square root), with the
 * model's epsilon folded in:
 *   x_i = in[i] + input_offset                          |x_i| <= 255
 *   S   = sum_i x_i,  Q = sum_i x_i^2                   |S| < 2^18, Q < 2^26
 *   d_i = x_i * dim - S                                 |d_i| < 2^19
 *   D   = dim * Q - S^2  (= sum_i d_i^2 / dim exactly)  dim^2 * variance: 0 <= D < 2^34
 *   R   = D * 2^(2F) + epsilon                          uint64, R < 2^63; F = 14
 *   sigma = max(2^F, isqrt(R))                          floor; dim * sqrt(var + eps) in Q(F)
 *   inv   = 2^(30 + F) / sigma                          floor; in [2^12, 2^30]
 *   n_i   = (d_i * inv + 2^(29 - K)) >> (30 - K)        int64 product, arithmetic shift; K = 12
 *   acc_i = n_i * gamma[i] + beta[i]                    int64, saturated to int32
 *   out_i = clamp(mcuf_requantize(acc_i, out.multiplier, out.shift) + output_offset, -128, 127)
 * (F = MCUF_LN_SQRT_BITS, K = MCUF_LN_NORM_BITS.) n_i is (x_i - mean) / sqrt(var + eps) in Q(K).
 * The sigma floor 2^F only matters when D = 0 (D >= 1 gives R >= 2^(2F)); then every d_i = 0.
 * The compiler folds epsilon, gamma, beta and the output scale (s_in, s_out: input and output
 * scales; eps, gamma_f, beta_f: the model's float LayerNorm):
 *   epsilon  = min(round(eps * dim^2 / s_in^2 * 2^(2F)), MCUF_LN_MAX_EPSILON)
 *   gamma[i] = round(gamma_f[i] * 2^G), beta[i] = round(beta_f[i] * 2^(K+G)), with the largest
 *              G <= 30 - K such that |gamma[i]| <= 2^13 - 1 and |beta[i]| <= 2^30 - 1,
 *   out real multiplier = 1 / (2^(K+G) * s_out).
 * With these, |n_i| <= sqrt(dim - 1) * 2^K < 2^17, so |acc_i| < 2^30 + 2^30 fits int32 (the int64
 * product and the saturation only matter for parameters outside the compiler's bounds).
 * Precision: the error of n_i is below 2^-13 (rounding) + |d_i| / 2^30 (inv's floor, < 2^-11) +
 * 2^-14 (sigma's floor, as D >= dim - 1) in units of 1, under 2^-10 in all. The output is
 * therefore within 1 LSB of round(y_i / s_out) + zp_out, y = float LayerNorm (PyTorch semantics,
 * with eps) of the dequantized row, whenever (|gamma_f[i]| * 2^-10 + |n_i| * 2^-(G+1)) / s_out
 * < 1/2 (n_i error plus gamma's rounding, in output steps); measured on random and near-constant
 * rows, widths 16..256: at most 1 LSB (tests/test_layernorm_precision.py). The epsilon is clamped
 * (and the bound lost) only when eps * dim^2 / s_in^2 >= 2^34, i.e. sqrt(eps) above 128 input
 * steps for dim 1024.
 * Ranges: 1 <= dim <= 1024; input_offset in [-127, 128]; output_offset in [-128, 127];
 * epsilon <= MCUF_LN_MAX_EPSILON (2^62 - 1). in and out may be the same buffer (in place).
 * ------------------------------------------------------------------------------------------- */
#define MCUF_LN_NORM_BITS 12
#define MCUF_LN_SQRT_BITS 14
#define MCUF_LN_MAX_DIM 1024
#define MCUF_LN_MAX_EPSILON ((UINT64_C(1) << 62) - 1u)

typedef struct {
    int32_t dim;
    int32_t input_offset;
    int32_t output_offset;
    const int32_t *gamma; /* [dim] */
    const int32_t *beta;  /* [dim] */
    mcuf_requant out;
    uint64_t epsilon; /* eps * dim^2 / s_in^2 in Q(2F), [0, MCUF_LN_MAX_EPSILON] */
} mcuf_layernorm_params;

uint32_t mcuf_isqrt_u64(uint64_t v); /* floor(sqrt(v)) */
mcuf_status mcuf_layernorm_s8(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output);

/* ---------------------------------------------------------------------------------------------
 * Softmax over one row of `length` int8 values, output scale 1/256, zero point -128:
 *   m = max_i in[i];  e_i = exp_table[m - in[i]]      (table index in [0, 255])
 *   sum = sum_i e_i                                   (uint32)
 *   out_i = min((e_i * 256 + sum / 2) / sum, 255) - 128   (uint32 arithmetic, floor division)
 * exp_table[d] = round(2^16 * exp(-s_in * d)), so exp_table[0] = 65536 and sum >= 65536.
 * Every entry must be in [0, 65536]; then sum <= 32767 * 65536 < 2^31 and nothing wraps.
 * exp_table[0] == 65536 is checked; other entries are not (an out-of-range entry gives wrapped
 * uint32 values, never undefined behaviour; a zero sum returns MCUF_ERR_ARG).
 * Ranges: 1 <= length <= 32767. in and out may be the same buffer.
 * ------------------------------------------------------------------------------------------- */
#define MCUF_SOFTMAX_MAX_LENGTH 32767

typedef struct {
    int32_t length;
    const int32_t *exp_table; /* [256] */
} mcuf_softmax_params;

mcuf_status mcuf_softmax_s8(const mcuf_softmax_params *p, const int8_t *input, int8_t *output);

/* ---------------------------------------------------------------------------------------------
 * Elementwise table lookup (GELU and any int8 -> int8 function): out[i] = table[in[i] + 128].
 * The table holds the 256 outputs in input order, entry k for the input k - 128 (any int8 value is
 * valid: the lookup is the whole function). Ranges: table != NULL; n >= 0 (input and output may be
 * NULL only when n == 0). in and out may be the same buffer.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    const int8_t *table; /* [256], entry in + 128 for the int8 input in */
} mcuf_lut_params;

mcuf_status mcuf_lut_s8(const mcuf_lut_params *p, int32_t n, const int8_t *input, int8_t *output);

/* ---------------------------------------------------------------------------------------------
 * Add (TFLite ADD int8):
 *   a' = mcuf_requantize((a + input1_offset) << left_shift, input1.multiplier, input1.shift)
 *   b' = mcuf_requantize((b + input2_offset) << left_shift, input2.multiplier, input2.shift)
 *   out = clamp(mcuf_requantize(a' + b', output.multiplier, output.shift) + output_offset,
 *               act_min, act_max)
 * a' + b' saturates to int32 (it cannot overflow with TFLite's parameters).
 * left_shift = 20 (range [0, 23], so (a + offset) << left_shift fits int32). n >= 0.
 * input offsets in [-127, 128]; output_offset in [-128, 127]; -128 <= act_min <= act_max <= 127.
 * out may alias a or b (in place, element by element).
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t input1_offset;
    int32_t input2_offset;
    int32_t output_offset;
    int32_t left_shift;
    mcuf_requant input1;
    mcuf_requant input2;
    mcuf_requant output;
    int32_t act_min;
    int32_t act_max;
} mcuf_add_params;

mcuf_status mcuf_add_s8(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *output);

/* ---------------------------------------------------------------------------------------------
 * Attention score row and weighted sum (TFLite BATCH_MATMUL int8 semantics, one head, one query):
 *   scores[j] = clamp(requantize(sum_d (q[d] + q_offset) * (k[j*k_stride + d] + k_offset),
 *                                score) + score_offset, -128, 127),   j < tokens, d < head_dim
 *   out[d]    = clamp(requantize(sum_j (probs[j] + 128) * (v[j*v_stride + d] + v_offset),
 *                                av) + out_offset, -128, 127)
 * The 1/sqrt(head_dim) factor is folded into `score`. probs are softmax outputs (zp -128).
 * Sums are exact in int32: |term| <= 255 * 255 and tokens, head_dim <= 32767.
 * Ranges: 1 <= tokens <= 32767; 1 <= head_dim <= 32767; q/k/v offsets in [-127, 128];
 *   score_offset, out_offset in [-128, 127]; k_stride, v_stride >= head_dim.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t tokens;
    int32_t head_dim;
    int32_t q_offset, k_offset, v_offset;
    int32_t score_offset;
    int32_t out_offset;
    mcuf_requant score;
    mcuf_requant av;
} mcuf_attn_head_params;

mcuf_status mcuf_attn_scores_s8(const mcuf_attn_head_params *p, const int8_t *q, const int8_t *k,
                                int32_t k_stride, int8_t *scores);
mcuf_status mcuf_attn_weighted_sum_s8(const mcuf_attn_head_params *p, const int8_t *probs, const int8_t *v,
                                      int32_t v_stride, int8_t *out);

/* ---------------------------------------------------------------------------------------------
 * Fused row-wise attention block with token overwriting (DESIGN section 4):
 *   pass 1, for every token t:  y = LN(x_t); r = qkv_down(y) if rank; K[t] = k(r); V[t] = v(r)
 *   pass 2, for every token t:  y = LN(x_t); r = qkv_down(y) if rank; q = q(r)
 *                               for each head h: scores = q_h . K_h^T; softmax in place;
 *                                                o_h = probs . V_h
 *                               a = proj(o); x_t = add(x_t, a)          (x_t overwritten)
 * K is [tokens][dim], head h uses its columns [h*head_dim, (h+1)*head_dim); V is stored transposed,
 * v_buf [dim][tokens] (v_buf[c * tokens + t] = V[t][c]), head h uses its rows [h*head_dim,
 * (h+1)*head_dim), so each probs . V_h output is a contiguous dot product over the tokens.
 * The H x T x T score tensor never exists: one row of `tokens` scores at a time.
 * All heads share one quantization: `head` (head.tokens = tokens, head.head_dim = dim / heads).
 * Ranges: 1 <= tokens <= 32767; 1 <= dim <= MCUF_LN_MAX_DIM; heads divides dim; every part's
 *   shape must match (ln.dim, q/k/v/proj and qkv_down features, head, softmax.length).
 * Token tiles: the linears (qkv_down, k, v, q, proj) run `tile` (1, 2 or 4) tokens per pass over
 *   their weights (mcuf_linear_tile_s8; a last partial tile has fewer tokens); identical x for
 *   every tile. Only the row-wise schedule tiles; mcuf_attention_perhead_s8 ignores `tile`.
 *   With tile > 1 and qkv_rank > 0, pass 1 also keeps every token's qkv_down row (a cache of
 *   tokens x qkv_rank bytes in scratch) and pass 2 reads it instead of recomputing LN and qkv_down
 *   (x_t is unchanged until its own tile's last step, so the rows are the same).
 * scratch: mcuf_attention_rowwise_s8_scratch_size() bytes, 4-byte aligned (checked) when tile > 1, layout
 *   (each part rounded up to 4 bytes): LN rows [tile][dim] | qkv_down rows [tile][qkv_rank] (0 with
 *   the cache) | q rows [tile][dim] | scores/probs [tile][tokens] | concat [tile][dim] | proj rows
 *   [tile][dim] | expanded tile inputs (mcuf_linear_tile_s8_scratch_size of max(dim, qkv_rank, tokens)
 *   inputs: the linears' inputs, 4 queries' head rows, 4 probability rows; 0 for tile 1) | qkv_down cache [tokens][qkv_rank] (tile > 1 and qkv_rank > 0, else 0).
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t tokens;
    int32_t dim;
    int32_t heads;
    mcuf_layernorm_params ln;
    int32_t qkv_rank; /* 0 = dense; else qkv_down maps dim -> qkv_rank */
    mcuf_linear_params qkv_down;
    mcuf_linear_params q, k, v; /* (qkv_rank or dim) -> dim */
    mcuf_attn_head_params head;  /* shared by all heads */
    mcuf_softmax_params softmax; /* length = tokens */
    mcuf_linear_params proj;     /* dim -> dim */
    mcuf_add_params residual;    /* x_t (input1) + proj (input2) -> x_t */
    int32_t tile;                /* row-wise schedule: tokens per pass over the weights, 1, 2 or 4 */
} mcuf_attention_params;

int32_t mcuf_attention_rowwise_s8_scratch_size(const mcuf_attention_params *p);
mcuf_status mcuf_attention_rowwise_s8(const mcuf_attention_params *p, int8_t *x, int8_t *k_buf, int8_t *v_buf,
                                      int8_t *scratch);

/* ---------------------------------------------------------------------------------------------
 * Per-head schedule of the same block (same params, bit-identical x): it trades instructions for
 * memory. Instead of K and V for all heads ([tokens][dim] each) it keeps K_h and V_h of one head
 * ([tokens][head_dim] each) plus the concatenated head outputs O [tokens][dim]:
 *   for each head h:
 *     for every token t: y = LN(x_t); r = qkv_down(y) if rank; K_h[t] = k_h(r); V_h[t] = v_h(r)
 *     for every token t: y = LN(x_t); r = ...; q = q_h(r); scores = q . K_h^T; softmax in place;
 *                        O[t][h*hd:(h+1)*hd] = probs . V_h
 *   for every token t: a = proj(O[t]); x_t = add(x_t, a)
 * k_h / v_h / q_h are the output rows [h*hd, (h+1)*hd) of k / v / q (a view of the same params).
 * LN and qkv_down are recomputed per head (2 * heads LN rows per token instead of 2); buffers:
 * 2*T*hd + T*E bytes instead of 2*T*E (smaller when heads > 2).
 * Ranges: as mcuf_attention_rowwise_s8 (plus qkv_rank <= MCUF_LINEAR_MAX_IN, which the row-wise
 *   kernel's q/k/v linears enforce too: the same parameters give the same status).
 * x is written only in the last loop, after every kernel has run on every head: on any error
 *   (MCUF_ERR_ARG, including softmax's zero sum) x is unchanged.
 * kh_buf, vh_buf [tokens][head_dim], o_buf [tokens][dim], x and scratch must not overlap.
 * scratch: mcuf_attention_perhead_s8_scratch_size() bytes (-1 also when heads < 1), layout (each part
 *   rounded up to 4 bytes): LN row [dim] | qkv_down row [qkv_rank] | q_h row [head_dim] |
 *   scores/probs [tokens] | proj row [dim].
 * ------------------------------------------------------------------------------------------- */
int32_t mcuf_attention_perhead_s8_scratch_size(const mcuf_attention_params *p);
mcuf_status mcuf_attention_perhead_s8(const mcuf_attention_params *p, int8_t *x, int8_t *kh_buf, int8_t *vh_buf,
                                      int8_t *o_buf, int8_t *scratch);

/* ---------------------------------------------------------------------------------------------
 * Fused row-wise MLP block with token overwriting:
 *   for every token t: y = LN(x_t); h = fc1(y) (low-rank: rank-R row buffer); h = lut(h);
 *                      m = fc2(h); x_t = add(x_t, m)
 * Token tiles: `tile` (1, 2 or 4) tokens go through each step together, so the linears load each
 *   weight once per tile (mcuf_linear_tile_s8; a last partial tile has fewer tokens). Identical x
 *   for every tile; a larger tile costs scratch and saves instructions with the DSP kernels.
 * Ranges: tokens >= 1; 1 <= dim <= MCUF_LN_MAX_DIM; hidden >= 1; fc1: dim -> hidden, fc2: hidden -> dim;
 *   tile in {1, 2, 4}.
 * scratch: mcuf_mlp_rowwise_s8_scratch_size() bytes, O(tile * (dim + hidden + rank)), independent of tokens,
 *   4-byte aligned (checked) when tile > 1; layout (each part rounded up to 4 bytes): LN rows
 *   [tile][dim] | fc1 mid [tile][fc1.rank] | hidden [tile][hidden] | fc2 mid [tile][fc2.rank] |
 *   fc2 out [tile][dim] | expanded tile inputs (mcuf_linear_tile_s8_scratch_size of the widest input,
 *   max(dim, hidden, ranks); 0 for tile 1).
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t tokens;
    int32_t dim;
    int32_t hidden;
    mcuf_layernorm_params ln;
    mcuf_lowrank_params fc1; /* dim -> hidden */
    const int8_t *gelu_table; /* [256]: the table of mcuf_lut_s8 (mcuf_lut_params.table) */
    mcuf_lowrank_params fc2; /* hidden -> dim */
    mcuf_add_params residual;
    int32_t tile; /* tokens per pass over the weights: 1, 2 or 4 */
} mcuf_mlp_params;

int32_t mcuf_mlp_rowwise_s8_scratch_size(const mcuf_mlp_params *p);
mcuf_status mcuf_mlp_rowwise_s8(const mcuf_mlp_params *p, int8_t *x, int8_t *scratch);

/* ---------------------------------------------------------------------------------------------
 * Decomposed patch embedding: the image (int8, HWC, image_h x image_w x channels) arrives one
 * stripe of `patch` rows at a time through `read`; the full image is never in SRAM.
 *   for stripe s in [0, image_h / patch): read(ctx, s, stripe_buf, patch * image_w * channels)
 *     for each patch column g: patch vector v (index (py * patch + px) * channels + c)
 *       x[t] = linear(proj, v) with bias token_bias[t][:]   (t = s * grid_w + g)
 * proj.bias must be NULL: the position embedding is folded into token_bias [tokens][dim].
 * read returns 0 on success; any other value stops the kernel with MCUF_ERR_INPUT (tokens of
 * earlier stripes are then already written).
 * Token tiles: `tile` (1, 2 or 4) patches of a stripe go through the projection together
 *   (mcuf_linear_tile_s8's kernels, each token with its own bias row); identical x for every tile.
 * Ranges: image_h, image_w multiples of patch >= 1; proj.in_features = patch*patch*channels
 *   <= MCUF_LINEAR_MAX_IN; tile in {1, 2, 4}.
 * scratch: mcuf_patch_embed_s8_scratch_size() bytes, 4-byte aligned (checked) when tile > 1: stripe
 * buffer | `tile` patch vectors | expanded tile inputs (mcuf_linear_tile_s8_scratch_size; 0 for tile 1),
 * each rounded up to 4 bytes.
 * ------------------------------------------------------------------------------------------- */
typedef int32_t (*mcuf_stripe_reader)(void *ctx, int32_t stripe, int8_t *dst, int32_t n_bytes);

typedef struct {
    int32_t image_h, image_w, channels, patch;
    int32_t dim;
    mcuf_linear_params proj;   /* patch*patch*channels -> dim, bias NULL */
    const int32_t *token_bias; /* [tokens][dim] */
    int32_t tile;              /* patches per pass over the weights: 1, 2 or 4 */
} mcuf_patch_embed_params;

int32_t mcuf_patch_embed_s8_scratch_size(const mcuf_patch_embed_params *p);
mcuf_status mcuf_patch_embed_s8(const mcuf_patch_embed_params *p, mcuf_stripe_reader read, void *ctx,
                                int8_t *scratch, int8_t *x);

/* ---------------------------------------------------------------------------------------------
 * 3x3 convolution, padding 1, stride 1 or 2 (the convolutional stem), int8 HWC in and out:
 *   out_h = (in_h - 1) / stride + 1, out_w = (in_w - 1) / stride + 1, out_channels = proj.out_features
 *   v = im2col vector of output pixel (oy, ox): v[(ky * 3 + kx) * in_channels + c] =
 *       in[oy * stride - 1 + ky][ox * stride - 1 + kx][c], or -proj.input_offset (the input zero
 *       point, which adds 0 to the sum) where the tap falls in the padding
 *   out[oy][ox][:] = mcuf_linear_s8(proj, v)  (weights [out_channels][3][3][in_channels], the bias
 *       with BatchNorm folded in; ReLU is the clamp: act_min = the output's quantized 0)
 * The input arrives through `read`, one row per stripe, each row once and in order
 * (read(ctx, iy, dst, in_w * in_channels) for iy = 0 .. in_h - 1), into a rolling buffer of 3 rows:
 * the whole input is never needed in SRAM (the model's input callback for the first stem layer,
 * mcuf_memory_reader over the previous layer's output in the arena for the others); any nonzero
 * return stops the kernel with MCUF_ERR_INPUT (rows of earlier outputs are then already written).
 * Ranges: in_h, in_w, in_channels >= 1, 3 * in_w * in_channels <= INT32_MAX - 3; stride 1 or 2;
 *   proj.in_features = 9 * in_channels <= MCUF_LINEAR_MAX_IN; proj.bias not NULL; proj as for
 *   mcuf_linear_s8.
 * scratch: mcuf_conv2d_3x3_s8_scratch_size() bytes: one im2col vector (9 * in_channels) | 3 input
 *   rows (3 * in_w * in_channels), each rounded up to 4 bytes.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t in_h, in_w, in_channels, stride;
    mcuf_linear_params proj; /* 9 * in_channels -> out_channels, bias [out_channels] */
} mcuf_conv2d_params;

int32_t mcuf_conv2d_3x3_s8_scratch_size(const mcuf_conv2d_params *p);
mcuf_status mcuf_conv2d_3x3_s8(const mcuf_conv2d_params *p, mcuf_stripe_reader read, void *ctx, int8_t *scratch,
                               int8_t *output);

/* An mcuf_stripe_reader over memory: stripe s = bytes [s * n_bytes, (s + 1) * n_bytes) from ctx (an
 * int8 buffer). The patch embedding of a model with a stem reads the stem's feature map with it. */
int32_t mcuf_memory_reader(void *ctx, int32_t stripe, int8_t *dst, int32_t n_bytes);

/* ---------------------------------------------------------------------------------------------
 * Final LayerNorm + mean pooling + classifier:
 *   for every token t: y = LN(x_t); acc[c] += y[c] + pool_input_offset      (int32 [dim])
 *   pooled[c] = clamp(requantize(acc[c], pool) + pool_output_offset, -128, 127)
 *   logits = linear(head, pooled)
 * pool's real multiplier = s_y / (tokens * s_pooled).
 * Ranges: 1 <= tokens <= 2^23 (acc stays exact in int32); pool_input_offset in [-127, 128];
 *   pool_output_offset in [-128, 127].
 * scratch: mcuf_pool_head_s8_scratch_size() bytes, 4-byte aligned (checked), layout:
 *   acc int32 [dim] | LN row [dim] | pooled [dim] (int8 parts rounded up to 4 bytes).
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t tokens;
    int32_t dim;
    int32_t classes;
    mcuf_layernorm_params ln;
    int32_t pool_input_offset;
    int32_t pool_output_offset;
    mcuf_requant pool;
    mcuf_linear_params head;
} mcuf_pool_head_params;

int32_t mcuf_pool_head_s8_scratch_size(const mcuf_pool_head_params *p);
mcuf_status mcuf_pool_head_s8(const mcuf_pool_head_params *p, const int8_t *x, int8_t *scratch, int8_t *logits);

/* ---------------------------------------------------------------------------------------------
 * Prefix tokens (class token, DeiT's distillation token) + patch embedding, for imported ViTs:
 *   x[0 .. prefix_tokens) = prefix rows (int8 constants in x's quantization: the token plus its
 *   position embedding, quantized by the compiler), then
 *   x[prefix_tokens ..) = mcuf_patch_embed_s8(embed) (the patch tokens, as above).
 * x holds (prefix_tokens + tokens) x embed.dim int8 values; the residual stream starts here.
 * Ranges: 0 <= prefix_tokens <= 16; prefix may be NULL only when prefix_tokens == 0.
 * scratch: mcuf_patch_embed_prefix_s8_scratch_size() bytes (= mcuf_patch_embed_s8_scratch_size(&embed)).
 * ------------------------------------------------------------------------------------------- */
#define MCUF_MAX_PREFIX_TOKENS 16

typedef struct {
    mcuf_patch_embed_params embed;
    int32_t prefix_tokens;
    const int8_t *prefix; /* [prefix_tokens][embed.dim] */
} mcuf_patch_embed_prefix_params;

int32_t mcuf_patch_embed_prefix_s8_scratch_size(const mcuf_patch_embed_prefix_params *p);
mcuf_status mcuf_patch_embed_prefix_s8(const mcuf_patch_embed_prefix_params *p, mcuf_stripe_reader read, void *ctx,
                                       int8_t *scratch, int8_t *x);

/* ---------------------------------------------------------------------------------------------
 * Class-token readout: final LayerNorm of the first `readout` tokens (0 .. readout-1), their
 * rows concatenated, and the classifier:
 *   r[i * dim + c] = LN(x_i)[c]     for i < readout
 *   logits = linear(head, r)        (head.in_features = readout * dim)
 * readout = 1 reads the class token (timm 'token' pooling, torchvision); readout = 2 is DeiT's
 * distilled inference, (head(x_0) + head_dist(x_1)) / 2, folded by the compiler into one
 * classifier over [x_0 | x_1] with weights [W_head | W_dist] / 2 and bias (b_head + b_dist) / 2.
 * LN is row-wise, so LN before the readout equals LN of the read rows: the other rows are untouched.
 * Ranges: 1 <= readout <= min(tokens, MCUF_MAX_PREFIX_TOKENS); ln.dim = dim.
 * scratch: mcuf_token_head_s8_scratch_size() bytes: the readout rows, readout * dim rounded up to 4.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t tokens;
    int32_t dim;
    int32_t classes;
    int32_t readout;
    mcuf_layernorm_params ln;
    mcuf_linear_params head;
} mcuf_token_head_params;

int32_t mcuf_token_head_s8_scratch_size(const mcuf_token_head_params *p);
mcuf_status mcuf_token_head_s8(const mcuf_token_head_params *p, const int8_t *x, int8_t *scratch, int8_t *logits);

/* ---------------------------------------------------------------------------------------------
 * Mean pooling, then the final norm, then the classifier (timm global_pool='avg' with fc_norm):
 *   acc[c] = sum over t in [first_token, tokens) of (x_t[c] + pool_input_offset)   (int32 [dim])
 *   pooled[c] = clamp(requantize(acc[c], pool) + pool_output_offset, -128, 127)
 *   logits = linear(head, LN(pooled))
 * pool's real multiplier = s_x / ((tokens - first_token) * s_pooled); first_token skips the
 * prefix tokens (a class token is not averaged, as in timm).
 * Ranges: 0 <= first_token < tokens; tokens - first_token <= 2^23 (acc exact in int32);
 *   pool_input_offset in [-127, 128]; pool_output_offset in [-128, 127]; ln.dim = dim.
 * scratch: mcuf_pool_norm_head_s8_scratch_size() bytes, 4-byte aligned (checked), layout:
 *   acc int32 [dim] | pooled [dim] | LN row [dim] (int8 parts rounded up to 4 bytes).
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int32_t tokens;
    int32_t first_token;
    int32_t dim;
    int32_t classes;
    int32_t pool_input_offset;
    int32_t pool_output_offset;
    mcuf_requant pool;
    mcuf_layernorm_params ln;
    mcuf_linear_params head;
} mcuf_pool_norm_head_params;

int32_t mcuf_pool_norm_head_s8_scratch_size(const mcuf_pool_norm_head_params *p);
mcuf_status mcuf_pool_norm_head_s8(const mcuf_pool_norm_head_params *p, const int8_t *x, int8_t *scratch,
                                   int8_t *logits);

#ifdef __cplusplus
}
#endif

#endif /* MCUF_H */

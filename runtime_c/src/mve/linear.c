/*
 * Linear (TFLite FULLY_CONNECTED int8, per-channel) with Helium (MVE) on the Cortex-M55. Replaces
 * ../linear.c (and ../dsp/linear.c) when the project builds with KERNELS=optimized on an M55: the
 * same row and tile functions, bit-exact outputs (the public entry points and their checks are
 * shared, ../linear_api.c).
 *
 * The input offset is factored out of the dot product:
 *   sum_i (x[i] + off) * w[i] = sum_i x[i] * w[i] + off * sum_i w[i]
 * VMLADAVA.S8 multiplies 16 int8 lane pairs and adds the 16 products to an int32 accumulator;
 * VADDVA.S8 adds a weight vector's 16 lanes to the row's weight sum, once per pass over the row
 * however many tokens share it. The last in_features % 16 inputs go through the same
 * instructions predicated with VCTP.8 (zeroing loads), so no scalar tail. Both sides are exact
 * integers: |sum_i x*w| <= 128 * 128 * n and |off * sum_i w| <= 128 * 128 * n with n <= 65535,
 * and the total is the portable kernel's sum (< 2^31); the combination is done in wrapping
 * arithmetic, which gives the same int32.
 *
 * One row (mcufi_linear_row): 4 output channels per pass over the input (one input load, four
 * weight loads, four VMLADAVA and four VADDVA per 16 inputs: 13 instructions per 64 MACs).
 * A tile of 2 or 4 tokens (mcufi_linear_tile): each weight vector is loaded and summed once for
 * the tile (per 16 inputs and 4 tokens: one weight load, one VADDVA, four input loads, four
 * VMLADAVA: 10 instructions per 64 MACs; 4 tokens: mve_dot4x1's tail-predicated loop, or for
 * in_features <= 16 / 17..32 the token rows (or their tails) kept in registers, dots_t4_n16 /
 * dots_t4_n32, chosen once per call; with in_features <= 32 and one bias row for the tile, the
 * fused mcufi_mve_linear_t4_n16 / _n32 instead: dot products and output stage per channel, the
 * tokens in the lanes); xbuf is not used. Output stage: 4 channels at a time
 * (requantize_x4v of mcuf_mve.h with the channels' multipliers and shifts in vectors, loaded once
 * per 4 channels for the whole tile), the last out_features % 4 channels through the DSP kernels'
 * scalar requantization (mcuf_dsp.h); both the same integers as mcuf_requantize.
 */
#include <stdbool.h>
#include <stddef.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

/* The output stage of channel o with bias b: bias (saturating), requantize, offset, clamp. */
static inline int8_t finish(const mcuf_linear_params *p, int32_t o, int32_t bias, int32_t sum)
{
    return out_s8_act(requantize(__qadd(sum, bias), p->multiplier[o], p->shift[o]), p->output_offset, p->act_min,
                      p->act_max);
}

/* The per-channel constants of channels o .. o + 3 for the 4-lane output stage. */
typedef struct {
    int32x4_t m, left, negr;
} chan4;

static inline chan4 chan4_load(const mcuf_linear_params *p, int32_t o)
{
    chan4 c;
    const int32x4_t s = vld1q_s32(p->shift + o);
    c.m = vld1q_s32(p->multiplier + o);
    c.left = vmaxq_s32(s, vdupq_n_s32(0));
    c.negr = vminq_s32(s, vdupq_n_s32(0));
    return c;
}

/* finish() for channels o .. o + 3 at once: sum (4 lanes, input offset applied), bias at
 * bias + o (NULL: none), the output bytes at out. */
static inline void finish4(const mcuf_linear_params *p, const chan4 *c, const int32_t *bias, int32_t o,
                           int32x4_t sum, int8_t *out)
{
    if (bias != NULL) {
        sum = vqaddq_s32(sum, vld1q_s32(bias + o));
    }
    vstrbq_s32(out, out_s8_x4(requantize_x4v(sum, c->m, c->left, c->negr), p->output_offset, p->act_min,
                              p->act_max));
}

/* T tokens (x, x + xs, ...; T <= 4, a constant after inlining) against one weight row w of n:
 * acc[t * as] = sum_i x_t[i] * w[i] and *wsum = sum_i w[i]. */
static inline __attribute__((always_inline)) void dot_tokens(const int8_t *x, int32_t xs, int32_t T, const int8_t *w,
                                                              int32_t n, int32_t *acc, int32_t as, int32_t *wsum)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, ws = 0;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const int8x16_t wv = vldrbq_s8(w + i);
        ws = vaddvaq_s8(ws, wv);
        a0 = vmladavaq_s8(a0, vldrbq_s8(x + i), wv);
        if (T > 1) {
            a1 = vmladavaq_s8(a1, vldrbq_s8(x + xs + i), wv);
        }
        if (T > 2) {
            a2 = vmladavaq_s8(a2, vldrbq_s8(x + 2 * xs + i), wv);
            a3 = vmladavaq_s8(a3, vldrbq_s8(x + 3 * xs + i), wv);
        }
    }
    if (i < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        const int8x16_t wv = vldrbq_z_s8(w + i, pr);
        ws = vaddvaq_s8(ws, wv);
        a0 = vmladavaq_s8(a0, vldrbq_z_s8(x + i, pr), wv);
        if (T > 1) {
            a1 = vmladavaq_s8(a1, vldrbq_z_s8(x + xs + i, pr), wv);
        }
        if (T > 2) {
            a2 = vmladavaq_s8(a2, vldrbq_z_s8(x + 2 * xs + i, pr), wv);
            a3 = vmladavaq_s8(a3, vldrbq_z_s8(x + 3 * xs + i, pr), wv);
        }
    }
    acc[0] = a0;
    if (T > 1) {
        acc[as] = a1;
    }
    if (T > 2) {
        acc[2 * as] = a2;
        acc[3 * as] = a3;
    }
    *wsum = ws;
}

/* One input x against 4 weight rows (w, w + n, w + 2n, w + 3n): acc[r], wsum[r]. */
static void dot_rows4(const int8_t *x, const int8_t *w, int32_t n, int32_t *acc, int32_t *wsum)
{
    const int8_t *w1 = w + n;
    const int8_t *w2 = w1 + n;
    const int8_t *w3 = w2 + n;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const int8x16_t xv = vldrbq_s8(x + i);
        const int8x16_t v0 = vldrbq_s8(w + i);
        const int8x16_t v1 = vldrbq_s8(w1 + i);
        const int8x16_t v2 = vldrbq_s8(w2 + i);
        const int8x16_t v3 = vldrbq_s8(w3 + i);
        a0 = vmladavaq_s8(a0, xv, v0);
        s0 = vaddvaq_s8(s0, v0);
        a1 = vmladavaq_s8(a1, xv, v1);
        s1 = vaddvaq_s8(s1, v1);
        a2 = vmladavaq_s8(a2, xv, v2);
        s2 = vaddvaq_s8(s2, v2);
        a3 = vmladavaq_s8(a3, xv, v3);
        s3 = vaddvaq_s8(s3, v3);
    }
    if (i < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        const int8x16_t xv = vldrbq_z_s8(x + i, pr);
        const int8x16_t v0 = vldrbq_z_s8(w + i, pr);
        const int8x16_t v1 = vldrbq_z_s8(w1 + i, pr);
        const int8x16_t v2 = vldrbq_z_s8(w2 + i, pr);
        const int8x16_t v3 = vldrbq_z_s8(w3 + i, pr);
        a0 = vmladavaq_s8(a0, xv, v0);
        s0 = vaddvaq_s8(s0, v0);
        a1 = vmladavaq_s8(a1, xv, v1);
        s1 = vaddvaq_s8(s1, v1);
        a2 = vmladavaq_s8(a2, xv, v2);
        s2 = vaddvaq_s8(s2, v2);
        a3 = vmladavaq_s8(a3, xv, v3);
        s3 = vaddvaq_s8(s3, v3);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    wsum[0] = s0;
    wsum[1] = s1;
    wsum[2] = s2;
    wsum[3] = s3;
}

/* Parameters already checked. */
void mcufi_linear_row(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
    if (mcufi_linear_row_dispatch_s4w(p, input, output)) {
        return;
    }
    const int32_t n_in = p->in_features;
    const int32_t off = p->input_offset;
    const int8_t *w = p->weights;
    int32_t o = 0;
    int32_t acc[4];
    int32_t ws[4];
    for (; o + 4 <= p->out_features; o += 4) {
        dot_rows4(input, w, n_in, acc, ws);
        const chan4 c = chan4_load(p, o);
        /* acc + off * ws: the lanes wrap, and the true sum is in int32 (above) */
        const int32x4_t sum = vmlaq_n_s32(vld1q_s32(acc), vld1q_s32(ws), off);
        finish4(p, &c, p->bias, o, sum, output + o);
        w += 4 * n_in;
    }
    for (; o < p->out_features; o++) {
        dot_tokens(input, 0, 1, w, n_in, acc, 1, ws);
        const int32_t bias = p->bias != NULL ? p->bias[o] : 0;
        output[o] = finish(p, o, bias, wrap_add(acc[0], wrap_mul(off, ws[0])));
        w += n_in;
    }
}

/* T = 4 tokens, in_features n in (16, 32] (the low-rank layers' up-projections): the dot products
 * of 4 weight rows (w, w + n, ...) with the 4 token rows x, x + n, ... into a4[token][row] and
 * their weight sums into w4[row]. Per row: the weights in two vectors (the second predicated to
 * n - 16 lanes, zero beyond), VADDV/VADDVA for the sum, and per token one load of its first 16
 * inputs, VMLADAV with the first weight vector and VMLADAVA of its last n - 16 inputs (loaded
 * once, predicated, kept in q4-q7 for the 4 rows) with the second: 24 instructions per row and
 * 4 tokens, where the general loop spends about 70 on its predicated tail. */
static __attribute__((noinline)) void dots_t4_n32(const int8_t *x, int32_t n, const int8_t *w, int32_t (*a4)[4], int32_t *w4)
{
    const int8_t *x1 = x + n;
    const int8_t *x2 = x1 + n;
    const int8_t *x3 = x2 + n;
    int32_t a, ws;
    int32_t *acc = &a4[0][0];
    __asm__ volatile("vctp.8 %[rest]\n\t"
                     "vpstttt\n\t"
                     "vldrbt.u8 q4, [%[x0], #16]\n\t"
                     "vldrbt.u8 q5, [%[x1], #16]\n\t"
                     "vldrbt.u8 q6, [%[x2], #16]\n\t"
                     "vldrbt.u8 q7, [%[x3], #16]\n\t"
                     "dls lr, %[rows]\n"
                     "1:\n\t"
                     "vldrb.u8 q0, [%[w]]\n\t"
                     "vpst\n\t"
                     "vldrbt.u8 q1, [%[w], #16]\n\t"
                     "vaddv.s8 %[ws], q0\n\t"
                     "vaddva.s8 %[ws], q1\n\t"
                     "vldrb.u8 q2, [%[x0]]\n\t"
                     "vmladav.s8 %[a], q2, q0\n\t"
                     "vmladava.s8 %[a], q4, q1\n\t"
                     "str %[a], [%[acc]]\n\t"
                     "vldrb.u8 q2, [%[x1]]\n\t"
                     "vmladav.s8 %[a], q2, q0\n\t"
                     "vmladava.s8 %[a], q5, q1\n\t"
                     "str %[a], [%[acc], #16]\n\t"
                     "vldrb.u8 q2, [%[x2]]\n\t"
                     "vmladav.s8 %[a], q2, q0\n\t"
                     "vmladava.s8 %[a], q6, q1\n\t"
                     "str %[a], [%[acc], #32]\n\t"
                     "vldrb.u8 q2, [%[x3]]\n\t"
                     "vmladav.s8 %[a], q2, q0\n\t"
                     "vmladava.s8 %[a], q7, q1\n\t"
                     "str %[a], [%[acc], #48]\n\t"
                     "str %[ws], [%[w4]], #4\n\t"
                     "add %[acc], %[acc], #4\n\t"
                     "add %[w], %[w], %[n]\n\t"
                     "le lr, 1b"
                     : [a] "=&Te"(a), [ws] "=&Te"(ws), [w] "+r"(w), [acc] "+r"(acc), [w4] "+r"(w4)
                     : [x0] "r"(x), [x1] "r"(x1), [x2] "r"(x2), [x3] "r"(x3), [n] "r"(n), [rest] "r"(n - 16),
                       [rows] "r"(4)
                     : "q0", "q1", "q2", "q4", "q5", "q6", "q7", "p0", "lr", "memory");
}

/* T = 4 tokens, in_features n in [1, 16] (the rank-16 up-projections): mve_dots4x4_n16 (mcuf_mve.h: the
 * 4 token rows in q4-q7, 13 instructions per weight row and 4 tokens, where dots_t4 spends about 48),
 * out of line like the other dots_* entries. */
static __attribute__((noinline)) void dots_t4_n16(const int8_t *x, int32_t n, const int8_t *w, int32_t (*a4)[4],
                                                  int32_t *w4)
{
    mve_dots4x4_n16(x, n, w, a4, w4);
}

/* T = 2 tokens, in_features n in [1, 16] / (16, 32] (the low-rank linears' 2-token tiles): as
 * dots_t4_n16 / dots_t4_n32 for the 2 token rows x, x + n (kept in q4-q5 / q4-q7 for the 4
 * weight rows: per row one or two weight loads, VADDV(A), two or four VMLADAV(A) and the stores
 * into a4[token][row]), where dot_tokens' loop and predicated tail take about 45 per row. */
static __attribute__((noinline)) void dots_t2_n16(const int8_t *x, int32_t n, const int8_t *w, int32_t (*a4)[4],
                                                  int32_t *w4)
{
    const int8_t *x1 = x + n;
    int32_t a, ws;
    int32_t *acc = &a4[0][0];
    __asm__ volatile("vctp.8 %[n]\n\t"
                     "vpstt\n\t"
                     "vldrbt.u8 q4, [%[x0]]\n\t"
                     "vldrbt.u8 q5, [%[x1]]\n\t"
                     "dls lr, %[rows]\n"
                     "1:\n\t"
                     "vpst\n\t"
                     "vldrbt.u8 q0, [%[w]]\n\t"
                     "vaddv.s8 %[ws], q0\n\t"
                     "vmladav.s8 %[a], q4, q0\n\t"
                     "str %[a], [%[acc]]\n\t"
                     "vmladav.s8 %[a], q5, q0\n\t"
                     "str %[a], [%[acc], #16]\n\t"
                     "str %[ws], [%[w4]], #4\n\t"
                     "add %[acc], %[acc], #4\n\t"
                     "add %[w], %[w], %[n]\n\t"
                     "le lr, 1b"
                     : [a] "=&Te"(a), [ws] "=&Te"(ws), [w] "+r"(w), [acc] "+r"(acc), [w4] "+r"(w4)
                     : [x0] "r"(x), [x1] "r"(x1), [n] "r"(n), [rows] "r"(4)
                     : "q0", "q4", "q5", "p0", "lr", "memory");
}

static __attribute__((noinline)) void dots_t2_n32(const int8_t *x, int32_t n, const int8_t *w, int32_t (*a4)[4],
                                                  int32_t *w4)
{
    const int8_t *x1 = x + n;
    int32_t a, ws;
    int32_t *acc = &a4[0][0];
    __asm__ volatile("vctp.8 %[rest]\n\t"
                     "vldrb.u8 q4, [%[x0]]\n\t"
                     "vldrb.u8 q6, [%[x1]]\n\t"
                     "vpstt\n\t"
                     "vldrbt.u8 q5, [%[x0], #16]\n\t"
                     "vldrbt.u8 q7, [%[x1], #16]\n\t"
                     "dls lr, %[rows]\n"
                     "1:\n\t"
                     "vldrb.u8 q0, [%[w]]\n\t"
                     "vpst\n\t"
                     "vldrbt.u8 q1, [%[w], #16]\n\t"
                     "vaddv.s8 %[ws], q0\n\t"
                     "vaddva.s8 %[ws], q1\n\t"
                     "vmladav.s8 %[a], q4, q0\n\t"
                     "vmladava.s8 %[a], q5, q1\n\t"
                     "str %[a], [%[acc]]\n\t"
                     "vmladav.s8 %[a], q6, q0\n\t"
                     "vmladava.s8 %[a], q7, q1\n\t"
                     "str %[a], [%[acc], #16]\n\t"
                     "str %[ws], [%[w4]], #4\n\t"
                     "add %[acc], %[acc], #4\n\t"
                     "add %[w], %[w], %[n]\n\t"
                     "le lr, 1b"
                     : [a] "=&Te"(a), [ws] "=&Te"(ws), [w] "+r"(w), [acc] "+r"(acc), [w4] "+r"(w4)
                     : [x0] "r"(x), [x1] "r"(x1), [n] "r"(n), [rest] "r"(n - 16), [rows] "r"(4)
                     : "q0", "q1", "q4", "q5", "q6", "q7", "p0", "lr", "memory");
}

/* T = 2 tokens, in_features n = 16 k (k >= 1): per weight row (4 rows) a low-overhead loop over
 * the k chunks of 16 inputs (the weights and both token rows post-incremented: one weight load,
 * VADDVA, two token loads, two VMLADAVA and LE, 7 per chunk), then the stores into
 * a4[token][row] and w4[row]; dot_tokens' loop takes 9 per chunk and about 20 per row around it. */
static __attribute__((noinline)) void dots_t2_k(const int8_t *x, int32_t n, const int8_t *w, int32_t (*a4)[4],
                                                int32_t *w4)
{
    int32_t a0, a1, ws;
    const int8_t *p0, *p1;
    int32_t *acc = &a4[0][0];
    int32_t rows = 4;
    __asm__ volatile("2:\n\t"
                     "movs %[a0], #0\n\t"
                     "movs %[a1], #0\n\t"
                     "movs %[ws], #0\n\t"
                     "mov %[p0], %[x]\n\t"
                     "add %[p1], %[x], %[n]\n\t"
                     "lsr lr, %[n], #4\n\t"
                     "dls lr, lr\n"
                     "1:\n\t"
                     "vldrb.u8 q0, [%[w]], #16\n\t"
                     "vaddva.s8 %[ws], q0\n\t"
                     "vldrb.u8 q1, [%[p0]], #16\n\t"
                     "vmladava.s8 %[a0], q1, q0\n\t"
                     "vldrb.u8 q2, [%[p1]], #16\n\t"
                     "vmladava.s8 %[a1], q2, q0\n\t"
                     "le lr, 1b\n\t"
                     "str %[a0], [%[acc]]\n\t"
                     "str %[a1], [%[acc], #16]\n\t"
                     "str %[ws], [%[w4]], #4\n\t"
                     "add %[acc], %[acc], #4\n\t"
                     "subs %[rows], %[rows], #1\n\t"
                     "bne 2b"
                     : [a0] "=&Te"(a0), [a1] "=&Te"(a1), [ws] "=&Te"(ws), [p0] "=&r"(p0), [p1] "=&r"(p1),
                       [w] "+r"(w), [acc] "+r"(acc), [w4] "+r"(w4), [rows] "+r"(rows)
                     : [x] "r"(x), [n] "r"(n)
                     : "q0", "q1", "q2", "lr", "cc", "memory");
}

/* T = 4 tokens, any in_features n: the dot products of 4 weight rows (w, w + n, ...) with the 4
 * token rows x, x + n, ... into a4[token][row] and the weight sums into w4[row], one
 * mve_dot4x1 per weight row (each weight vector loaded and summed once for the 4 tokens: 11
 * instructions per 64 MACs, the tail predicated by the loop). */
static __attribute__((noinline)) void dots_t4(const int8_t *x, int32_t n, const int8_t *w, int32_t (*a4)[4],
                                              int32_t *w4)
{
    for (int32_t r = 0; r < 4; r++) {
        mve_dot4x1(x, x + n, x + 2 * n, x + 3 * n, w, n, &a4[0][r], &w4[r]);
        w += n;
    }
}

/* T = 4 tokens, in_features n <= 32, with a bias (one row for the 4 tokens: bias_stride 0): the
 * dot products and the output stage in one pass per output channel o, the 4 tokens in the 4
 * lanes of q7 (no int32 round trip through memory, no call per 4 channels). Per channel: the
 * weights (n <= 16: one vector predicated to n lanes; 17..32: 16 lanes and a second predicated to
 * n - 16, zero beyond), VADDV(A) for their sum, per token VMLADAV(A) of its row's (one or two)
 * vectors, two VMOVs of the 4 sums into q7 (lanes 0/2, then 1/3; the scatter offsets in q4 are
 * set by the same two-register VMOV form with the same operand order, so each sum meets its
 * token's offset whichever of the pair's lanes the first register goes to), + off * wsum (VADD, wrapping:
 * the true sum is in int32, as in tile_rows), + bias[o] (VQADD), the channel's requantization
 * (shift <= -1: VQRDMULH, the sign fixup, VRSHL = requantize_x4_r; shift >= 0: VQSHL, VQRDMULH =
 * requantize_x4 with right = 0), + output offset (VQADD), the clamp (VMAX, VMIN) and one VSTRB.32
 * scatter of the 4 bytes to out[t * n_out + o] (offsets t * n_out in q4): the same integers as
 * finish(). Token rows are read as whole vectors where that stays inside the 4 rows (x_t + 31 <
 * x_3 + n for t <= 2 when n >= 17; n <= 16 and token 3's tail: predicated); lanes past n meet
 * zero weights. About 45 (17..32) or 34 (<= 16) instructions per channel and 4 tokens.
 * AAPCS functions (top-level assembly: every core register is used), args in a struct. */
typedef struct {
    const int8_t *x;       /* 0: the 4 token rows, [4][n] */
    int32_t n;             /* 4: in_features, 1..32 */
    const int8_t *w;       /* 8 */
    const int32_t *mult;   /* 12 */
    const int32_t *shift;  /* 16 */
    const int32_t *bias;   /* 20: not NULL */
    int8_t *out;           /* 24: [4][n_out] */
    int32_t n_out;         /* 28: >= 1 */
    int32_t off;           /* 32: input offset */
    int32_t out_off;       /* 36 */
    int32_t lo, hi;        /* 40, 44: act_min, act_max */
} t4_args;

void mcufi_mve_linear_t4_n16(const t4_args *a);
void mcufi_mve_linear_t4_n32(const t4_args *a);
/* The same for every shift <= -1 (no sign test per channel: T4_OUTPUT_R). */
void mcufi_mve_linear_t4_n16_r(const t4_args *a);
void mcufi_mve_linear_t4_n32_r(const t4_args *a);

/* The common start: callee-saved registers, [sp] = out_off, [sp, #4] = off, q4 = t * n_out (lanes as
 * the loops' VMOVs place token t),
 * q5 / q6 = the clamp bounds, r5 = w, r7 = n, r9 / r10 / r11 = mult / shift / bias, r12 = out,
 * lr = n_out, r0 .. r3 = the token rows (r2 is token 1, r1 token 2: see the loops' VMOVs). */
#define T4_ENTRY(name)                                                                                        \
    ".pushsection .text." name ",\"ax\",%progbits\n\t"                                                     \
    ".balign 4\n\t"                                                                                        \
    ".global " name "\n\t"                                                                                 \
    ".hidden " name "\n\t"                                                                                 \
    ".thumb_func\n\t"                                                                                      \
    ".type " name ", %function\n" name ":\n\t"                                                             \
    "push {r4-r11, lr}\n\t"                                                                                \
    "vpush {d8-d15}\n\t"                                                                                   \
    "ldr r2, [r0, #36]\n\t"                                                                                \
    "ldr r3, [r0, #32]\n\t"                                                                                \
    "push {r2, r3}\n\t"                                                                                    \
    "ldr r2, [r0, #40]\n\t"                                                                                \
    "vdup.32 q5, r2\n\t"                                                                                   \
    "ldr r2, [r0, #44]\n\t"                                                                                \
    "vdup.32 q6, r2\n\t"                                                                                   \
    "ldr r3, [r0, #28]\n\t"                                                                                \
    "mov lr, r3\n\t"                                                                                       \
    "movs r2, #0\n\t"                                                                                      \
    "add r4, r3, r3\n\t"                                                                                   \
    "vmov q4[2], q4[0], r2, r4\n\t" /* offsets 0 (token 0), 2 n_out (token 2) */                            \
    "add r2, r4, r3\n\t"                                                                                   \
    "vmov q4[3], q4[1], r3, r2\n\t" /* n_out (token 1), 3 n_out (token 3) */                                \
    "ldr r7, [r0, #4]\n\t"                                                                                 \
    "ldr r5, [r0, #8]\n\t"                                                                                 \
    "ldr r9, [r0, #12]\n\t"                                                                                \
    "ldr r10, [r0, #16]\n\t"                                                                               \
    "ldr r11, [r0, #20]\n\t"                                                                               \
    "ldr r12, [r0, #24]\n\t"                                                                               \
    "ldr r0, [r0, #0]\n\t"                                                                                 \
    "add r2, r0, r7\n\t"                                                                                   \
    "add r1, r2, r7\n\t"                                                                                   \
    "add r3, r1, r7\n\t"

/* The output stage of q7 (4 tokens' sums; r4 = the weight sum) and the loop's end. */
#define T4_OUTPUT_RQ(CHECK, TAIL)                                                                                             \
    "ldr r6, [sp, #4]\n\t"                                                                                 \
    "mul r4, r4, r6\n\t"                                                                                   \
    "vadd.i32 q7, q7, r4\n\t"                                                                              \
    "ldr r6, [r11], #4\n\t"                                                                                \
    "vqadd.s32 q7, q7, r6\n\t"                                                                             \
    "ldr r6, [r9], #4\n\t"                                                                                 \
    "ldr r8, [r10], #4\n\t"                                                                                \
    CHECK                                                                                                  \
    "vqrdmulh.s32 q7, q7, r6\n\t"                                                                          \
    "vshr.s32 q0, q7, #31\n\t"                                                                             \
    "vadd.i32 q7, q7, q0\n\t"                                                                              \
    "vrshl.s32 q7, r8\n"                                                                                   \
    "4:\n\t"                                                                                               \
    "ldr r6, [sp]\n\t"                                                                                     \
    "vqadd.s32 q7, q7, r6\n\t"                                                                             \
    "vmax.s32 q7, q7, q5\n\t"                                                                              \
    "vmin.s32 q7, q7, q6\n\t"                                                                              \
    "vstrb.32 q7, [r12, q4]\n\t"                                                                           \
    "add r12, r12, #1\n\t"                                                                                 \
    "le lr, 1b\n\t"                                                                                        \
    "add sp, sp, #8\n\t"                                                                                   \
    "vpop {d8-d15}\n\t"                                                                                    \
    "pop {r4-r11, pc}\n"                                                                                   \
    TAIL

/* The shift's sign test and the left-shift branch (any shifts), or nothing (every shift <= -1). */
#define T4_CHECK_ANY "cmp r8, #0\n\tbge 5f\n\t"
#define T4_TAIL_ANY "5:\n\tvqshl.s32 q7, r8\n\tvqrdmulh.s32 q7, q7, r6\n\tb 4b\n\t"
#define T4_OUTPUT T4_OUTPUT_RQ(T4_CHECK_ANY, T4_TAIL_ANY)
#define T4_OUTPUT_R T4_OUTPUT_RQ("", "")

#define T4_EXIT(name) ".size " name ", .-" name "\n\t.popsection\n"

/* n in 1..16: the weights and the 4 rows predicated to n lanes (VCTP.8 n). Tokens 0, 1 and 2 are
 * loaded once per call and kept in q1, q2, q3 (T4_OUTPUT leaves them alone); token 3 is loaded per
 * channel into q7 and its sum taken (into r0: its row pointer is no longer needed) before the VMOVs
 * overwrite q7: 11 instructions per channel before the output stage (were 15). */
#define T4_N16_BODY \
    "vctp.8 r7\n\t" \
    "vpsttt\n\t" \
    "vldrbt.u8 q1, [r0]\n\t" \
    "vldrbt.u8 q2, [r2]\n\t" \
    "vldrbt.u8 q3, [r1]\n\t" \
    "dls lr, lr\n" \
    "1:\n\t" \
    "vpstt\n\t" \
    "vldrbt.u8 q0, [r5]\n\t" \
    "vldrbt.u8 q7, [r3]\n\t" \
    "add r5, r5, r7\n\t" \
    "vaddv.s8 r4, q0\n\t" \
    "vmladav.s8 r0, q7, q0\n\t" \
    "vmladav.s8 r6, q1, q0\n\t" \
    "vmladav.s8 r8, q3, q0\n\t" \
    "vmov q7[2], q7[0], r6, r8\n\t" \
    "vmladav.s8 r6, q2, q0\n\t" \
    "vmov q7[3], q7[1], r6, r0\n\t"
__asm__(T4_ENTRY("mcufi_mve_linear_t4_n16") T4_N16_BODY T4_OUTPUT T4_EXIT("mcufi_mve_linear_t4_n16"));
__asm__(T4_ENTRY("mcufi_mve_linear_t4_n16_r") T4_N16_BODY T4_OUTPUT_R T4_EXIT("mcufi_mve_linear_t4_n16_r"));

/* n in 17..32: 16 lanes, then n - 16 predicated (VCTP.8 n - 16) for the weights and token 3. */
#define T4_N32_BODY \
    "sub r4, r7, #16\n\t" \
    "vctp.8 r4\n\t" \
    "dls lr, lr\n" \
    "1:\n\t" \
    "vldrb.u8 q0, [r5]\n\t" \
    "vpst\n\t" \
    "vldrbt.u8 q1, [r5, #16]\n\t" \
    "add r5, r5, r7\n\t" \
    "vaddv.s8 r4, q0\n\t" \
    "vaddva.s8 r4, q1\n\t" \
    "vldrb.u8 q2, [r0]\n\t" \
    "vldrb.u8 q3, [r0, #16]\n\t" \
    "vmladav.s8 r6, q2, q0\n\t" \
    "vmladava.s8 r6, q3, q1\n\t" \
    "vldrb.u8 q2, [r1]\n\t" \
    "vldrb.u8 q3, [r1, #16]\n\t" \
    "vmladav.s8 r8, q2, q0\n\t" \
    "vmladava.s8 r8, q3, q1\n\t" \
    "vmov q7[2], q7[0], r6, r8\n\t" \
    "vldrb.u8 q2, [r2]\n\t" \
    "vldrb.u8 q3, [r2, #16]\n\t" \
    "vmladav.s8 r6, q2, q0\n\t" \
    "vmladava.s8 r6, q3, q1\n\t" \
    "vldrb.u8 q2, [r3]\n\t" \
    "vpst\n\t" \
    "vldrbt.u8 q3, [r3, #16]\n\t" \
    "vmladav.s8 r8, q2, q0\n\t" \
    "vmladava.s8 r8, q3, q1\n\t" \
    "vmov q7[3], q7[1], r6, r8\n\t"
__asm__(T4_ENTRY("mcufi_mve_linear_t4_n32") T4_N32_BODY T4_OUTPUT T4_EXIT("mcufi_mve_linear_t4_n32"));
__asm__(T4_ENTRY("mcufi_mve_linear_t4_n32_r") T4_N32_BODY T4_OUTPUT_R T4_EXIT("mcufi_mve_linear_t4_n32_r"));

/* T = 4 tokens, in_features n = 16 k (k = 1 .. 8), any bias row layout: the fused pass of
 * mcufi_mve_linear_t4_n32 for wider rows (the demo's 64- and 128-input linears, vit-96-rgb's
 * 96-input ones), with no bias, one bias row for the tile, or a bias row per token (the patch
 * embedding's token bias). Per output channel: the k chunks of 16 inputs written out, the token
 * rows at immediate offsets (x_t + 16 c, c < 8) and the weights post-incremented, chunk 0 with
 * VADDV / VMLADAV (no zeroing), chunks c = k - 1 .. 1 entered by one load of the PC (the chunks
 * are laid out 7, 6, .., 1 at 40 bytes each, every MVE instruction being 32 bits; the entry
 * point, computed once per call, is chunk k - 1's, or the output stage's for k = 1): 10
 * instructions per 64 MACs. Then T4_OUTPUT's stage with the 4 sums in q7 (the two-register VMOVs
 * as there, the scatter offsets in q4 and the bias addresses in q3 set in the same lane order):
 * + off * wsum by VMLA (q5 = off in every lane; wrapping, the true sum is in int32), + the bias
 * (a gather of the 4 tokens' bias[o] from q3's addresses, advanced 4 bytes per channel by the
 * gather's write-back: each token's own row, or the one shared row, stride 0; VQADD), the
 * requantization, the output offset (VQADD), the clamp (VMAX q2, VMIN q6) and the scatter store:
 * about 20 instructions. 60 instructions per channel and 4 tokens at n = 64, where dots_t4 and
 * finish4 take about 113. The same integers as finish(). */
typedef struct {
    const int8_t *x;       /* 0: the 4 token rows, [4][n] */
    int32_t n;             /* 4: in_features, 16 k with k in 1..8 */
    const int8_t *w;       /* 8 */
    const int32_t *mult;   /* 12 */
    const int32_t *shift;  /* 16 */
    const int32_t *bias;   /* 20: token 0's bias of channel 0 (the _nb variant: unused) */
    int8_t *out;           /* 24: [4][n_out] */
    int32_t n_out;         /* 28: >= 1 */
    int32_t off;           /* 32: input offset */
    int32_t out_off;       /* 36 */
    int32_t lo, hi;        /* 40, 44: act_min, act_max */
    int32_t bias_bytes;    /* 48: bytes between the tokens' bias rows (4 bias_stride; 0: one row) */
} t4k_args;

void mcufi_mve_linear_t4_k(const t4k_args *a);
void mcufi_mve_linear_t4_k_nb(const t4k_args *a);
/* The same for every shift <= -1 (no sign test per channel). */
void mcufi_mve_linear_t4_k_r(const t4k_args *a);
void mcufi_mve_linear_t4_k_nb_r(const t4k_args *a);

/* Chunk c of 16 inputs at byte offset OFF ("16" .. "112"), accumulating. */
#define T4K_CHUNK(OFF)                                                                                         \
    "vldrb.u8 q0, [r9, #" OFF "]\n\t"                                                                      \
    "vaddva.s8 r8, q0\n\t"                                                                                 \
    "vldrb.u8 q1, [r1, #" OFF "]\n\t"                                                                      \
    "vmladava.s8 r0, q1, q0\n\t"                                                                           \
    "vldrb.u8 q1, [r3, #" OFF "]\n\t"                                                                      \
    "vmladava.s8 r2, q1, q0\n\t"                                                                           \
    "vldrb.u8 q1, [r5, #" OFF "]\n\t"                                                                      \
    "vmladava.s8 r4, q1, q0\n\t"                                                                           \
    "vldrb.u8 q1, [r7, #" OFF "]\n\t"                                                                      \
    "vmladava.s8 r6, q1, q0\n\t"

/* BIAS: the two bias instructions, or nothing (_nb). */
#define T4K_FUNC(name, BIAS, CHECK, TAIL)                                                                                   \
    __asm__(".pushsection .text." name ",\"ax\",%progbits\n\t"                                             \
            ".balign 4\n\t"                                                                                \
            ".global " name "\n\t"                                                                         \
            ".hidden " name "\n\t"                                                                         \
            ".thumb_func\n\t"                                                                              \
            ".type " name ", %function\n" name ":\n\t"                                                     \
            "push {r4-r11, lr}\n\t"                                                                        \
            "vpush {d8-d15}\n\t"                                                                           \
            "sub sp, sp, #16\n\t" /* [sp] = out_off, [sp, #4] = n, [sp, #8] = the chunks' entry */        \
            "ldr r2, [r0, #36]\n\t"                                                                        \
            "str r2, [sp]\n\t"                                                                             \
            "ldr r2, [r0, #32]\n\t"                                                                        \
            "vdup.32 q5, r2\n\t"                                                                           \
            "ldr r2, [r0, #40]\n\t"                                                                        \
            "vdup.32 q2, r2\n\t"                                                                           \
            "ldr r2, [r0, #44]\n\t"                                                                        \
            "vdup.32 q6, r2\n\t"                                                                           \
            "ldr r3, [r0, #28]\n\t"                                                                        \
            "mov lr, r3\n\t"                                                                               \
            "movs r2, #0\n\t"                                                                              \
            "add r4, r3, r3\n\t"                                                                           \
            "vmov q4[2], q4[0], r2, r4\n\t" /* offsets 0 (token 0), 2 n_out (token 2) */                   \
            "add r2, r4, r3\n\t"                                                                           \
            "vmov q4[3], q4[1], r3, r2\n\t" /* n_out (token 1), 3 n_out (token 3) */                       \
            "ldr r4, [r0, #20]\n\t"                                                                        \
            "subs r4, r4, #4\n\t" /* the gather pre-increments */                                          \
            "ldr r6, [r0, #48]\n\t"                                                                        \
            "add r8, r4, r6\n\t"                                                                           \
            "add r2, r8, r6\n\t"                                                                           \
            "add r6, r2, r6\n\t"                                                                           \
            "vmov q3[2], q3[0], r4, r2\n\t" /* bias rows of tokens 0 and 2 */                              \
            "vmov q3[3], q3[1], r8, r6\n\t" /* tokens 1 and 3 */                                           \
            "ldr r7, [r0, #4]\n\t"                                                                         \
            "str r7, [sp, #4]\n\t"                                                                         \
            "lsrs r2, r7, #4\n\t"                                                                          \
            "rsb r2, r2, #8\n\t"                                                                           \
            "movs r4, #40\n\t"                                                                             \
            "muls r2, r4, r2\n\t"                                                                          \
            "adr r4, 6f\n\t"                                                                               \
            "add r2, r2, r4\n\t"                                                                           \
            "orr r2, r2, #1\n\t" /* the Thumb bit */                                                       \
            "str r2, [sp, #8]\n\t"                                                                         \
            "ldr r9, [r0, #8]\n\t"                                                                         \
            "ldr r10, [r0, #12]\n\t"                                                                       \
            "ldr r11, [r0, #16]\n\t"                                                                       \
            "ldr r12, [r0, #24]\n\t"                                                                       \
            "ldr r1, [r0, #0]\n\t"                                                                         \
            "add r3, r1, r7\n\t"                                                                           \
            "add r5, r3, r7\n\t"                                                                           \
            "add r7, r5, r7\n\t"                                                                           \
            "dls lr, lr\n"                                                                                 \
            "1:\n\t"                                                                                       \
            "vldrb.u8 q0, [r9]\n\t"                                                                        \
            "vaddv.s8 r8, q0\n\t"                                                                          \
            "vldrb.u8 q1, [r1]\n\t"                                                                        \
            "vmladav.s8 r0, q1, q0\n\t"                                                                    \
            "vldrb.u8 q1, [r3]\n\t"                                                                        \
            "vmladav.s8 r2, q1, q0\n\t"                                                                    \
            "vldrb.u8 q1, [r5]\n\t"                                                                        \
            "vmladav.s8 r4, q1, q0\n\t"                                                                    \
            "vldrb.u8 q1, [r7]\n\t"                                                                        \
            "vmladav.s8 r6, q1, q0\n\t"                                                                    \
            "ldr pc, [sp, #8]\n"                                                                           \
            "6:\n\t" T4K_CHUNK("112") T4K_CHUNK("96") T4K_CHUNK("80") T4K_CHUNK("64") T4K_CHUNK("48")      \
                T4K_CHUNK("32") T4K_CHUNK("16")                                                            \
            "3:\n\t"                                                                                       \
            ".if (3b - 6b) != 280\n\t"                                                                     \
            ".error \"the chunks are not 40 bytes each\"\n\t"                                              \
            ".endif\n\t"                                                                                   \
            "vmov q7[2], q7[0], r0, r4\n\t"                                                                \
            "vmov q7[3], q7[1], r2, r6\n\t"                                                                \
            "vmla.s32 q7, q5, r8\n\t" BIAS "ldr r0, [r10], #4\n\t"                                         \
            "ldr r2, [r11], #4\n\t"                                                                        \
            CHECK                                                                                          \
            "vqrdmulh.s32 q7, q7, r0\n\t"                                                                  \
            "vshr.s32 q0, q7, #31\n\t"                                                                     \
            "vadd.i32 q7, q7, q0\n\t"                                                                      \
            "vrshl.s32 q7, r2\n"                                                                           \
            "4:\n\t"                                                                                       \
            "ldrd r0, r2, [sp]\n\t" /* out_off, n */                                                        \
            "add r9, r9, r2\n\t"    /* the next weight row */                                               \
            "vqadd.s32 q7, q7, r0\n\t"                                                                     \
            "vmax.s32 q7, q7, q2\n\t"                                                                      \
            "vmin.s32 q7, q7, q6\n\t"                                                                      \
            "vstrb.32 q7, [r12, q4]\n\t"                                                                   \
            "add r12, r12, #1\n\t"                                                                         \
            "le lr, 1b\n\t"                                                                                \
            "add sp, sp, #16\n\t"                                                                          \
            "vpop {d8-d15}\n\t"                                                                            \
            "pop {r4-r11, pc}\n"                                                                           \
            TAIL                                                                                           \
            ".size " name ", .-" name "\n\t.popsection\n")

/* The shift's sign test and the left-shift branch (any shifts), or nothing (_r: every shift <= -1). */
#define T4K_CHECK_ANY "cmp r2, #0\n\tbge 5f\n\t"
#define T4K_TAIL_ANY "5:\n\tvqshl.s32 q7, r2\n\tvqrdmulh.s32 q7, q7, r0\n\tb 4b\n\t"
#define T4K_BIAS "vldrw.u32 q0, [q3, #4]!\n\tvqadd.s32 q7, q7, q0\n\t"

T4K_FUNC("mcufi_mve_linear_t4_k", T4K_BIAS, T4K_CHECK_ANY, T4K_TAIL_ANY);
T4K_FUNC("mcufi_mve_linear_t4_k_nb", "", T4K_CHECK_ANY, T4K_TAIL_ANY);
T4K_FUNC("mcufi_mve_linear_t4_k_r", T4K_BIAS, "", "");
T4K_FUNC("mcufi_mve_linear_t4_k_nb_r", "", "", "");

/* T tokens (rows of input, T in {2, 4}) through every output channel; row t's bias at
 * p->bias + t * bias_stride. */
static inline __attribute__((always_inline)) void tile_rows(const mcuf_linear_params *p, int32_t T, const int8_t *input,
                                                             int32_t bias_stride, int8_t *output, bool right)
{
    const int32_t n_in = p->in_features;
    const int32_t n_out = p->out_features;
    const int32_t off = p->input_offset;
    const int8_t *w = p->weights;
    int32_t a4[4][4]; /* [token][channel] */
    int32_t w4[4];
    int32_t o = 0;
    /* T = 4: the 4-row dot products for this in_features, chosen once per call */
    void (*const dots4)(const int8_t *, int32_t, const int8_t *, int32_t(*)[4], int32_t *) =
        n_in <= 16 ? dots_t4_n16 : (n_in <= 32 ? dots_t4_n32 : dots_t4);
    for (; o + 4 <= n_out; o += 4) {
        if (T == 4) {
            dots4(input, n_in, w, a4, w4);
            w += 4 * n_in;
        } else if (n_in <= 32) { /* T = 2 */
            (n_in <= 16 ? dots_t2_n16 : dots_t2_n32)(input, n_in, w, a4, w4);
            w += 4 * n_in;
        } else if ((n_in & 15) == 0) {
            dots_t2_k(input, n_in, w, a4, w4);
            w += 4 * n_in;
        } else {
            for (int32_t r = 0; r < 4; r++) {
                dot_tokens(input, n_in, T, w, n_in, &a4[0][r], 4, &w4[r]);
                w += n_in;
            }
        }
        const chan4 c = chan4_load(p, o);
        const int32x4_t corr = vmulq_n_s32(vld1q_s32(w4), off);
        for (int32_t t = 0; t < T; t++) {
            int32x4_t sum = vaddq_s32(vld1q_s32(a4[t]), corr);
            if (p->bias != NULL) {
                sum = vqaddq_s32(sum, vld1q_s32(p->bias + t * bias_stride + o));
            }
            /* right: every shift <= -1 (requantize_x4v_r, no left-shift step) */
            const int32x4_t rq = right ? requantize_x4v_r(sum, c.m, c.negr) : requantize_x4v(sum, c.m, c.left, c.negr);
            vstrbq_s32(output + t * n_out + o, out_s8_x4(rq, p->output_offset, p->act_min, p->act_max));
        }
    }
    int32_t acc[4];
    int32_t ws;
    for (; o < n_out; o++) {
        dot_tokens(input, n_in, T, w, n_in, acc, 1, &ws);
        const int32_t corr = wrap_mul(off, ws);
        for (int32_t t = 0; t < T; t++) {
            const int32_t bias = p->bias != NULL ? p->bias[o + t * bias_stride] : 0;
            output[t * n_out + o] = finish(p, o, bias, wrap_add(acc[t], corr));
        }
        w += n_in;
    }
}

static void tile2(const mcuf_linear_params *p, const int8_t *input, int32_t bias_stride, int8_t *output)
{
    tile_rows(p, 2, input, bias_stride, output, false);
}

/* tile2 when every shift is a right shift (shifts_right) */
static void tile2_r(const mcuf_linear_params *p, const int8_t *input, int32_t bias_stride, int8_t *output)
{
    tile_rows(p, 2, input, bias_stride, output, true);
}

static void tile4(const mcuf_linear_params *p, const int8_t *input, int32_t bias_stride, int8_t *output)
{
    tile_rows(p, 4, input, bias_stride, output, false);
}

/* Whether every shift[o], o < n (n >= 1), is a right shift (<= -1): the fused 4-token passes' _r
 * variants, without the per-channel sign test (2 instructions per channel; this scan about 0.75). */
static bool shifts_right(const int32_t *shift, int32_t n)
{
    int32_t mx = INT32_MIN;
    int32_t o = 0;
    for (; o + 4 <= n; o += 4) {
        mx = vmaxvq_s32(mx, vld1q_s32(shift + o));
    }
    if (o < n) {
        const mve_pred16_t pr = vctp32q((uint32_t)(n - o));
        mx = vmaxvq_p_s32(mx, vldrwq_z_s32(shift + o, pr), pr);
    }
    return mx <= -1;
}

void mcufi_linear_tile(const mcuf_linear_params *p, int32_t rows, int32_t tile, const int8_t *input,
                       int32_t *xbuf, int32_t bias_stride, int8_t *output)
{
    (void)xbuf;
    mcuf_linear_params q = *p; /* q.bias: the current row's */
    int32_t r = 0;
    if (mcufi_linear_is_s4w(p)) {
        tile = 1; /* int4 weights: row by row (mcufi_linear_row dispatches) */
    }
    if (tile == 4 && p->in_features <= 32 && p->bias != NULL && bias_stride == 0 && !mcufi_linear_is_s4w(p)) {
        /* one bias row for every token: the fused 4-token pass (mcufi_mve_linear_t4_*) */
        const bool right = rows >= 4 && shifts_right(p->shift, p->out_features);
        void (*const fused)(const t4_args *) =
            p->in_features <= 16 ? (right ? mcufi_mve_linear_t4_n16_r : mcufi_mve_linear_t4_n16)
                                 : (right ? mcufi_mve_linear_t4_n32_r : mcufi_mve_linear_t4_n32);
        t4_args a = {input,         p->in_features, p->weights,       p->multiplier,  p->shift, p->bias,
                     output,        p->out_features, p->input_offset, p->output_offset, p->act_min, p->act_max};
        for (; r + 4 <= rows; r += 4) {
            fused(&a);
            a.x += 4 * p->in_features;
            a.out += 4 * p->out_features;
        }
        input = a.x;
        output = a.out;
    }
    const int32_t n_in = p->in_features;
    if (tile == 4 && (n_in & 15) == 0 && n_in <= 128 && !mcufi_linear_is_s4w(p)) {
        /* every other 4-token tile with 16 k inputs (k <= 8): mcufi_mve_linear_t4_k */
        t4k_args a = {input,         n_in,           p->weights,       p->multiplier,    p->shift,   q.bias,
                      output,        p->out_features, p->input_offset, p->output_offset, p->act_min, p->act_max,
                      4 * bias_stride};
        const bool right = rows - r >= 4 && shifts_right(p->shift, p->out_features);
        void (*const fused)(const t4k_args *) =
            a.bias != NULL ? (right ? mcufi_mve_linear_t4_k_r : mcufi_mve_linear_t4_k)
                           : (right ? mcufi_mve_linear_t4_k_nb_r : mcufi_mve_linear_t4_k_nb);
        for (; r + 4 <= rows; r += 4) {
            fused(&a);
            if (a.bias != NULL) {
                a.bias += 4 * bias_stride;
            }
            a.x += 4 * n_in;
            a.out += 4 * p->out_features;
        }
        input = a.x;
        output = a.out;
        q.bias = a.bias;
    }
    if (tile > 1) {
        const bool right2 = tile == 2 && rows - r >= 2 && shifts_right(p->shift, p->out_features);
        for (; r + tile <= rows; r += tile) {
            if (tile == 4) {
                tile4(&q, input, bias_stride, output);
            } else if (right2) {
                tile2_r(&q, input, bias_stride, output);
            } else {
                tile2(&q, input, bias_stride, output);
            }
            input += tile * p->in_features;
            output += tile * p->out_features;
            if (q.bias != NULL) {
                q.bias += tile * bias_stride;
            }
        }
    }
    for (; r < rows; r++) {
        mcufi_linear_row(&q, input, output);
        input += p->in_features;
        output += p->out_features;
        if (q.bias != NULL) {
            q.bias += bias_stride;
        }
    }
}

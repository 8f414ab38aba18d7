/*
 * Linear (TFLite FULLY_CONNECTED int8, per-channel) for cores with the DSP extension
 * (Cortex-M4, M7, M33). Replaces ../linear.c when the project builds with KERNELS=optimized: the
 * same row and tile functions, bit-exact outputs (the public entry points and their checks are
 * shared, ../linear_api.c).
 *
 * SIMD: SXTB16 sign-extends bytes 0 and 2 of a word into two int16 lanes (rotated by 8: bytes 1
 * and 3); SXTAB16 does the same and adds the input offset to both lanes in the same instruction
 * (|in + offset| <= 255 fits int16); SMLAD adds both lane products to an int32 accumulator.
 * Inputs and weights are split alike, so the products are exactly the portable kernel's, summed in
 * another order; every partial sum is bounded by sum |term| <= 255 * 128 * in_features < 2^31, so
 * the int32 sum is the same.
 *
 * One row (mcufi_linear_row): 4 output channels per pass over the input, 4 inputs per step.
 * A tile of tokens (mcufi_linear_tile): the tile's inputs are first expanded once into int16 lane
 * pairs with the offset added (xbuf), then each weight word is loaded and sign-extended once for
 * 4 tokens (or 2 tokens x 2 channels): about 1 instruction per MAC in the inner loop instead of
 * 1.5 for one row; with 4 tokens the channel's output constants are computed once per tile.
 * Requantization: mcuf_requantize's arithmetic (requantize(), mcuf_dsp.h), without its int64
 * division and saturating int64 shift.
 */
#include <stddef.h>

#include "mcuf_dsp.h"
#include "mcuf_internal.h"

/* The output stage of one channel for a tile, constants hoisted: bias, requantization
 * (requant_k), output offset and activation range. */
typedef struct {
    int32_t bias;
    requant_k rq;
    int32_t out_off, act_min, act_max;
} channel_k;

static inline channel_k channel_make(const mcuf_linear_params *p, int32_t o)
{
    channel_k c;
    const mcuf_requant r = {p->multiplier[o], p->shift[o]};
    c.bias = p->bias != NULL ? p->bias[o] : 0;
    c.rq = requant_make(&r);
    c.out_off = p->output_offset;
    c.act_min = p->act_min;
    c.act_max = p->act_max;
    return c;
}

static inline int8_t channel_out(const channel_k *c, int32_t sum)
{
    return out_s8_act(requant_apply(&c->rq, __qadd(sum, c->bias)), c->out_off, c->act_min, c->act_max);
}

/* Channel o of 4 rows (output row stride n_out), its constants computed once. Not inlined: one
 * copy instead of three saves ~1 KiB of flash for a call per 4 outputs. */
static __attribute__((noinline)) void out4(const mcuf_linear_params *p, int32_t o, int32_t a0, int32_t a1,
                                           int32_t a2, int32_t a3, int32_t bias_stride, int8_t *output)
{
    const int32_t n_out = p->out_features;
    channel_k c = channel_make(p, o);
    const int32_t acc[4] = {a0, a1, a2, a3};
    if (bias_stride != 0) { /* each row its own bias (the patch embedding's token bias) */
        for (int32_t t = 0; t < 4; t++) {
            c.bias = p->bias[o + t * bias_stride];
            output[t * n_out + o] = channel_out(&c, acc[t]);
        }
        return;
    }
    if (c.rq.left == 0 && c.act_min == -128 && c.act_max == 127) {
        /* The common case (no left shift, no activation clamp): requant_apply and out_s8_act less
         * their no-op steps, the same integers. */
        for (int32_t t = 0; t < 4; t++) {
            const int32_t y = mul_round31(__qadd(acc[t], c.bias), c.rq.m);
            output[t * n_out + o] = out_s8(rdbpot_mask(y, c.rq.right, c.rq.mask), c.out_off);
        }
        return;
    }
    output[o] = channel_out(&c, a0);
    output[n_out + o] = channel_out(&c, a1);
    output[2 * n_out + o] = channel_out(&c, a2);
    output[3 * n_out + o] = channel_out(&c, a3);
}

/* The output stage of channel o: bias (saturating), requantize, offset, activation clamp. */
static inline int8_t finish_with(const mcuf_linear_params *p, int32_t bias, int32_t m, int32_t s, int32_t sum)
{
    return out_s8_act(requantize(__qadd(sum, bias), m, s), p->output_offset, p->act_min, p->act_max);
}

/* The short output stage (mcuf_dsp.h, short_out) when |sum + bias| < 2^30: |sum| <= 255 * 128 *
 * in_features (mcuf.h), so |bias| <= fast_bias_lim(in_features) suffices. */
/* The largest |bias| the short stage allows for in_features inputs (-1: none). */
static inline int32_t fast_bias_lim(const mcuf_linear_params *p)
{
    if (p->act_min != -128 || p->act_max != 127) {
        return -1;
    }
    const int64_t lim = (int64_t)0x3FFFFFFF - (int64_t)32640 * p->in_features;
    return lim < 0 ? -1 : (int32_t)lim;
}

/* Whether channel (bias, shift) takes the short stage; blim from fast_bias_lim. */
static inline int fast_ok(int32_t bias, int32_t s, int32_t blim)
{
    return short_shift_ok(s) && blim >= 0 && (uint32_t)(bias + blim) <= 2u * (uint32_t)blim;
}

/* Channel o with the bias at p->bias[o + bias_at] (a row's own bias: mcufi_linear_tile's bias_stride).
 * Not inlined: one copy instead of seven costs a call per output and saves ~1 KiB of flash. */
static __attribute__((noinline)) int8_t finish_at(const mcuf_linear_params *p, int32_t o, int32_t bias_at, int32_t sum)
{
    const int32_t bias = p->bias != NULL ? p->bias[o + bias_at] : 0;
    const int32_t s = p->shift[o];
    const int32_t blim = fast_bias_lim(p);
    if (fast_ok(bias, s, blim)) {
        return short_out(sum, 2 * bias, p->multiplier[o], INT32_C(1) << (-s - 1), -s, p->output_offset);
    }
    return finish_with(p, bias, p->multiplier[o], s, sum);
}

static inline int8_t finish(const mcuf_linear_params *p, int32_t o, int32_t sum)
{
    return finish_at(p, o, 0, sum);
}

/* Parameters already checked. Four output rows at a time share each input word's SXTAB16;
 * the last out_features % 4 rows go one at a time. */
void mcufi_linear_row(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
    if (mcufi_linear_row_dispatch_s4w(p, input, output)) {
        return;
    }
    const int32_t n_in = p->in_features;
    const int32_t in_off = p->input_offset;
    const int32_t off2 = dup16(in_off);
    const int8_t *w = p->weights;
    int32_t o = 0;
    for (; o + 4 <= p->out_features; o += 4) {
        /* Rows o, o+1 through w01 (and w01 + n_in), rows o+2, o+3 through w23: two row pointers
         * instead of four leave the loop fewer registers short. */
        const int8_t *x = input;
        const int8_t *w01 = w;
        const int8_t *w23 = w + 2 * n_in;
        int32_t acc0 = 0;
        int32_t acc1 = 0;
        int32_t acc2 = 0;
        int32_t acc3 = 0;
        for (int32_t k = n_in >> 2; k > 0; k--) {
            const int32_t xv = load_s8x4(x);
            const int32_t x02 = __sxtab16(off2, xv);
            const int32_t x13 = sxtab16_ror8(off2, xv);
            int32_t wv = load_s8x4(w01);
            acc0 = __smlad(__sxtb16(wv), x02, acc0);
            acc0 = __smlad(sxtb16_ror8(wv), x13, acc0);
            wv = load_s8x4(w01 + n_in);
            acc1 = __smlad(__sxtb16(wv), x02, acc1);
            acc1 = __smlad(sxtb16_ror8(wv), x13, acc1);
            wv = load_s8x4(w23);
            acc2 = __smlad(__sxtb16(wv), x02, acc2);
            acc2 = __smlad(sxtb16_ror8(wv), x13, acc2);
            wv = load_s8x4(w23 + n_in);
            acc3 = __smlad(__sxtb16(wv), x02, acc3);
            acc3 = __smlad(sxtb16_ror8(wv), x13, acc3);
            x += 4;
            w01 += 4;
            w23 += 4;
        }
        for (int32_t k = n_in & 3; k > 0; k--) {
            const int32_t xv = (int32_t)*x++ + in_off;
            acc0 += xv * (int32_t)w01[0];
            acc1 += xv * (int32_t)w01[n_in];
            acc2 += xv * (int32_t)w23[0];
            acc3 += xv * (int32_t)w23[n_in];
            w01++;
            w23++;
        }
        output[o] = finish(p, o, acc0);
        output[o + 1] = finish(p, o + 1, acc1);
        output[o + 2] = finish(p, o + 2, acc2);
        output[o + 3] = finish(p, o + 3, acc3);
        w += 4 * n_in;
    }
    for (; o < p->out_features; o++) {
        const int8_t *x = input;
        int32_t acc = 0;
        for (int32_t k = n_in >> 2; k > 0; k--) {
            const int32_t xv = load_s8x4(x);
            const int32_t wv = load_s8x4(w);
            acc = __smlad(__sxtb16(wv), __sxtab16(off2, xv), acc);
            acc = __smlad(sxtb16_ror8(wv), sxtab16_ror8(off2, xv), acc);
            x += 4;
            w += 4;
        }
        for (int32_t k = n_in & 3; k > 0; k--) {
            acc += ((int32_t)*x++ + in_off) * (int32_t)*w++;
        }
        output[o] = finish(p, o, acc);
    }
}

/* The inputs of `g` rows, expanded: for 4-input block b (the last one partial when in_features % 4
 * != 0, its missing bytes 0) and row t, xbuf[(b * g + t) * 2] = (in[4b] + off, in[4b+2] + off)
 * and [.. + 1] = (in[4b+1] + off, in[4b+3] + off), as int16 lanes. A missing input's lane holds
 * the offset alone: its weight lane is 0 (load_tail), so its product is 0. */
static void expand(const int8_t *input, int32_t n_in, int32_t g, int32_t off2, int32_t *xbuf)
{
    const int32_t full = n_in >> 2;
    const int32_t tail = n_in & 3;
    for (int32_t t = 0; t < g; t++) {
        const int8_t *x = input + t * n_in;
        int32_t *dst = xbuf + 2 * t;
        for (int32_t b = full; b > 0; b--) {
            const int32_t xv = load_s8x4(x);
            dst[0] = __sxtab16(off2, xv);
            dst[1] = sxtab16_ror8(off2, xv);
            x += 4;
            dst += 2 * g;
        }
        if (tail != 0) {
            const int32_t xv = load_tail(x, tail);
            dst[0] = __sxtab16(off2, xv);
            dst[1] = sxtab16_ror8(off2, xv);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * The 4-token tile in assembly (issue 10, M7 54-input tile): mcufi_dsp_linear_t4 below. gcc spilled
 * around the per-channel code of the C tile (about 100 instructions per channel of 4 tokens); here:
 *   - the inputs are expanded with the partial block first (the head: inputs 0 .. head-1,
 *     head = ((in_features - 1) % 4) + 1) and doubled (expand_head; fast_bias_lim >= 0 implies
 *     in_features <= T4_DOUBLE_MAX_IN): each sum is then 2 * (sum + bias) directly, the short
 *     stage's x, and the head block's weights are one word at the row's start, masked (no read
 *     past the row: in_features > 4), their SMLADs starting at 2 * bias;
 *   - the other blocks: LDR (post-increment), two SXTB16, two LDM of 4 expanded words (2 tokens),
 *     eight SMLAD: 13 instructions per 16 MACs, unrolled 4 times, entered Duff-style;
 *   - the output stage of mcuf_dsp.h's short_out with the output offset folded into the rounding
 *     constant, hoff = 2^(r-1) + offset * 2^r = (2 offset + 1) << (r - 1) (no wrap for r <= 23:
 *     |y| < 2^30, |hoff| <= 255 * 2^22, the sum < 2^31 - 2^22): per token SMMLAR, the sign fix,
 *     ASR, SSAT, STRB;
 *   - the per-channel checks (fast_ok, and r <= 23) first: a channel that fails returns to C
 *     (tile4_c) before anything is written.
 * QEMU counts an LDM as one instruction (a real M7 spends about a cycle per register pair). */

/* Its arguments, copied to its stack frame (the offsets are the assembly's). */
typedef struct {
    const int32_t *bias;   /*  0: channel o's (advances) */
    const int32_t *shift;  /*  4: channel o's (advances) */
    int32_t blim;          /*  8: fast_bias_lim, >= 0 */
    uint32_t blim2;        /* 12: 2 * blim */
    uint32_t mask;         /* 16: the head word's bytes */
    int32_t head;          /* 20: 1 .. 4 */
    const int32_t *xbuf;   /* 24: from expand_head */
    const int32_t *xb_end; /* 28: xbuf + 8 * blocks */
    int32_t rem;           /* 32: blocks % 4 (after the head); the prologue makes it the loop's entry */
    const int32_t *mult;   /* 36: channel o's (advances) */
    int8_t *out;           /* 40: token 0's output of channel o (advances) */
    int32_t off2p1;        /* 44: 2 * output_offset + 1 */
    int32_t n1, n2, n3;    /* 48, 52, 56: 1, 2, 3 output rows */
    int8_t *out_end;       /* 60: token 0's output row end */
} t4_args;

typedef char t4_args_is_64_bytes[sizeof(t4_args) == 64 ? 1 : -1];

/* Channels from a->out to a->out_end, w: the first one's weight row; returns where it stopped: a->out_end,
 * or the output of the first channel that fails its checks (nothing of it written). */
int8_t *mcufi_dsp_linear_t4(const t4_args *a, const int8_t *w);

/* One block of 4 inputs x 4 tokens: r1 = w, r0 = xb, r7 .. r10 = the sums. */
#define T4_BLOCK                                                                                                       \
    "ldr.w r12, [r1], #4\n\t"                                                                                          \
    "sxtb16 r11, r12\n\t"                                                                                              \
    "sxtb16 r12, r12, ror #8\n\t"                                                                                      \
    "ldm.w r0!, {r3-r6}\n\t"                                                                                           \
    "smlad r7, r11, r3, r7\n\t"                                                                                        \
    "smlad r7, r12, r4, r7\n\t"                                                                                        \
    "smlad r8, r11, r5, r8\n\t"                                                                                        \
    "smlad r8, r12, r6, r8\n\t"                                                                                        \
    "ldm.w r0!, {r3-r6}\n\t"                                                                                           \
    "smlad r9, r11, r3, r9\n\t"                                                                                        \
    "smlad r9, r12, r4, r9\n\t"                                                                                        \
    "smlad r10, r11, r5, r10\n\t"                                                                                      \
    "smlad r10, r12, r6, r10\n\t"

/* The output of token t: sum in ra, result (then free) rd; r0 = m, r5 = hoff, r2 = right. */
#define T4_OUT(rd, ra)                                                                                                 \
    "smmlar " rd ", " ra ", r0, r5\n\t"                                                                                \
    "sub " rd ", " rd ", " ra ", lsr #31\n\t"                                                                          \
    "asr " rd ", " rd ", r2\n\t"                                                                                       \
    "ssat " rd ", #8, " rd "\n\t"

__asm__(".pushsection .text.mcufi_dsp_linear_t4,\"ax\",%progbits\n\t"
        ".syntax unified\n\t"
        ".thumb\n\t"
        ".balign 4\n\t"
        ".global mcufi_dsp_linear_t4\n\t"
        ".hidden mcufi_dsp_linear_t4\n\t"
        ".thumb_func\n\t"
        ".type mcufi_dsp_linear_t4, %function\n"
        "mcufi_dsp_linear_t4:\n\t"
        "push {r4-r11, lr}\n\t"
        "sub sp, sp, #64\n\t"
        "ldm r0!, {r2-r9}\n\t"
        "stm sp, {r2-r9}\n\t"
        "ldm r0, {r2-r9}\n\t"
        "add r0, sp, #32\n\t"
        "stm r0, {r2-r9}\n\t"
        /* the loop's entry: block (4 - rem) % 4 of the unrolled 4 */
        "ldr r2, [sp, #32]\n\t"
        "rsb r2, r2, #4\n\t"
        "and r2, r2, #3\n\t"
        "movs r3, #52\n\t"
        "adr.w r4, .Lt4_loop\n\t"
        "mla r4, r2, r3, r4\n\t"
        "orr r4, r4, #1\n\t"
        "str r4, [sp, #32]\n"
        ".Lt4_chan:\n\t"
        "ldm sp, {r0, r3, r4, r5}\n\t" /* bias, shift pointers, blim, blim2 */
        "ldr lr, [r0], #4\n\t"
        "ldr r2, [r3], #4\n\t"
        "add r4, r4, lr\n\t"
        "cmp r4, r5\n\t"
        "bhi .Lt4_slow\n\t"
        "mvn r2, r2\n\t" /* right - 1 */
        "cmp r2, #22\n\t"
        "bhi .Lt4_slow\n\t"
        "stm sp, {r0, r3}\n\t"
        "lsl lr, lr, #1\n\t" /* 2 * bias */
        "ldrd r3, r4, [sp, #16]\n\t"
        "ldr r12, [r1]\n\t"
        "and r12, r12, r3\n\t"
        "add r1, r1, r4\n\t"
        "ldr r0, [sp, #24]\n\t"
        "sxtb16 r11, r12\n\t"
        "sxtb16 r12, r12, ror #8\n\t"
        "ldm r0!, {r3-r6}\n\t"
        "smlad r7, r11, r3, lr\n\t"
        "smlad r7, r12, r4, r7\n\t"
        "smlad r8, r11, r5, lr\n\t"
        "smlad r8, r12, r6, r8\n\t"
        "ldm r0!, {r3-r6}\n\t"
        "smlad r9, r11, r3, lr\n\t"
        "smlad r9, r12, r4, r9\n\t"
        "smlad r10, r11, r5, lr\n\t"
        "smlad r10, r12, r6, r10\n\t"
        "ldr lr, [sp, #28]\n\t"
        "ldr pc, [sp, #32]\n\t"
        ".balign 4\n"
        ".Lt4_loop:\n\t" T4_BLOCK ".Lt4_b1:\n\t" T4_BLOCK T4_BLOCK T4_BLOCK
        "cmp r0, lr\n\t"
        "bne .Lt4_loop\n\t"
        "add r0, sp, #36\n\t"
        "ldm r0, {r3, r4, r5, r6, r11, r12, lr}\n\t" /* mult, out, off2p1, n1, n2, n3, out_end */
        "ldr r0, [r3], #4\n\t"
        "str r3, [sp, #36]\n\t"
        "lsl r5, r5, r2\n\t" /* hoff */
        "add r2, r2, #1\n\t" /* right */
        T4_OUT("r3", "r8") "strb r3, [r4, r6]\n\t"
        T4_OUT("r8", "r9") "strb r8, [r4, r11]\n\t"
        T4_OUT("r9", "r10") "strb r9, [r4, r12]\n\t"
        T4_OUT("r10", "r7") "strb r10, [r4], #1\n\t"
        "str r4, [sp, #40]\n\t"
        "cmp r4, lr\n\t"
        "bne .Lt4_chan\n\t"
        "mov r0, r4\n\t"
        "add sp, sp, #64\n\t"
        "pop {r4-r11, pc}\n"
        ".Lt4_slow:\n\t"
        "ldr r0, [sp, #40]\n\t"
        "add sp, sp, #64\n\t"
        "pop {r4-r11, pc}\n\t"
        ".if (.Lt4_b1 - .Lt4_loop) != 52\n\t"
        ".error \"mcufi_dsp_linear_t4: a block is not 52 bytes\"\n\t"
        ".endif\n\t"
        ".size mcufi_dsp_linear_t4, .-mcufi_dsp_linear_t4\n\t"
        ".popsection\n");

/* The most inputs of a 4-token tile (mcufi_linear_tile: more go 2 tokens at a time), whose doubled
 * sums fit int32: 2 * 32640 * in_features < 2^31. It is also the most for which fast_bias_lim is
 * >= 0 (32640 * in_features <= 2^30 - 1). */
#define T4_DOUBLE_MAX_IN 32896

/* expand() for the 4-token tile, 4 rows: the partial block first (inputs 0 .. head-1, missing
 * bytes 0), then the blocks of 4 from input head; every lane doubled, 2 * (in + offset) (|.| <= 510;
 * in_features <= T4_DOUBLE_MAX_IN). */
static void expand_head(const int8_t *input, int32_t n_in, int32_t off2, int32_t *xbuf)
{
    const int32_t head = ((n_in - 1) & 3) + 1;
    for (int32_t t = 0; t < 4; t++) {
        const int8_t *x = input + t * n_in;
        int32_t *dst = xbuf + 2 * t;
        int32_t xv = head == 4 ? load_s8x4(x) : load_tail(x, head);
        x += head;
        for (int32_t b = (n_in - head) >> 2; b >= 0; b--) {
            const int32_t lo = __sxtab16(off2, xv);
            const int32_t hi = sxtab16_ror8(off2, xv);
            dst[0] = __sadd16(lo, lo);
            dst[1] = __sadd16(hi, hi);
            dst += 8;
            if (b > 0) {
                xv = load_s8x4(x);
                x += 4;
            }
        }
    }
}

/* short_out for a doubled sum a = 2 * sum (expand_head's): x = a + b2. */
static inline int8_t short_out2(int32_t a, int32_t b2, int32_t m, int32_t h, int32_t right, int32_t off)
{
    const int32_t x = a + b2;
    const int32_t yh = smmlar(x, m, h);
    return (int8_t)__ssat(((yh - (int32_t)((uint32_t)x >> 31)) >> right) + off, 8);
}

/* Channels o .. o_end-1 of 4 rows in C over expand_head's doubled inputs: the short stage when
 * fast_ok (blim from fast_bias_lim, -1 for none), else out4 with the sums halved (exact: 2 |sum| <
 * 2^31 for in_features <= T4_DOUBLE_MAX_IN). The channels the assembly returns, and every channel
 * where it does not apply (t4_asm_ok). */
static __attribute__((noinline)) void tile4_c(const mcuf_linear_params *p, const int32_t *xbuf, int32_t o,
                                              int32_t o_end, int32_t bias_stride, int32_t blim, int8_t *output)
{
    const int32_t n_in = p->in_features;
    const int32_t n_out = p->out_features;
    const int32_t head = ((n_in - 1) & 3) + 1;
    const int32_t blocks = (n_in - head) >> 2;
    const int8_t *w = p->weights + o * n_in;
    for (; o < o_end; o++) {
        const int32_t *xb = xbuf;
        int32_t a0 = 0;
        int32_t a1 = 0;
        int32_t a2 = 0;
        int32_t a3 = 0;
        const int32_t wh = head == 4 ? load_s8x4(w) : load_tail(w, head);
        w += head;
        MCUFI_DOT_4X1_STEP(wh);
        for (int32_t k = blocks >> 1; k > 0; k--) {
            const int32_t wv0 = load_s8x4(w);
            const int32_t wv1 = load_s8x4(w + 4);
            w += 8;
            MCUFI_DOT_4X1_STEP(wv0);
            MCUFI_DOT_4X1_STEP(wv1);
        }
        if (blocks & 1) {
            const int32_t wv = load_s8x4(w);
            w += 4;
            MCUFI_DOT_4X1_STEP(wv);
        }
        const int32_t bias = p->bias != NULL ? p->bias[o] : 0;
        const int32_t s = p->shift[o];
        if (fast_ok(bias, s, blim)) {
            const int32_t b2 = 2 * bias;
            const int32_t m = p->multiplier[o];
            const int32_t right = -s;
            const int32_t h = INT32_C(1) << (right - 1);
            const int32_t off = p->output_offset;
            output[o] = short_out2(a0, b2, m, h, right, off);
            output[n_out + o] = short_out2(a1, b2, m, h, right, off);
            output[2 * n_out + o] = short_out2(a2, b2, m, h, right, off);
            output[3 * n_out + o] = short_out2(a3, b2, m, h, right, off);
        } else {
            out4(p, o, a0 >> 1, a1 >> 1, a2 >> 1, a3 >> 1, bias_stride, output);
        }
    }
}

/* Whether the 4-token tile takes the assembly: one bias row, whole-range activation (blim >= 0),
 * more than 4 inputs. */
static inline int t4_asm_ok(const mcuf_linear_params *p, int32_t bias_stride)
{
    return p->bias != NULL && bias_stride == 0 && p->in_features > 4 && fast_bias_lim(p) >= 0;
}

/* Four rows (tokens) x every channel; xbuf from expand_head. Row r adds the bias at p->bias + r *
 * bias_stride (a row's own bias: out4). */
static void tile4(const mcuf_linear_params *p, const int32_t *xbuf, int32_t bias_stride, int8_t *output)
{
    const int32_t n_in = p->in_features;
    const int32_t n_out = p->out_features;
    const int32_t blim = bias_stride == 0 ? fast_bias_lim(p) : -1;
    if (!t4_asm_ok(p, bias_stride)) {
        tile4_c(p, xbuf, 0, n_out, bias_stride, blim, output);
        return;
    }
    const int32_t head = ((n_in - 1) & 3) + 1;
    const int32_t blocks = (n_in - head) >> 2; /* after the head, >= 1 */
    t4_args a;
    a.blim = blim;
    a.blim2 = 2u * (uint32_t)blim;
    a.mask = head == 4 ? UINT32_C(0xFFFFFFFF) : (UINT32_C(1) << (8 * head)) - 1u;
    a.head = head;
    a.xbuf = xbuf;
    a.xb_end = xbuf + 8 * (blocks + 1);
    a.rem = blocks & 3;
    a.off2p1 = 2 * p->output_offset + 1;
    a.n1 = n_out;
    a.n2 = 2 * n_out;
    a.n3 = 3 * n_out;
    a.out_end = output + n_out;
    int32_t o = 0;
    while (o < n_out) {
        a.bias = p->bias + o;
        a.shift = p->shift + o;
        a.mult = p->multiplier + o;
        a.out = output + o;
        o = (int32_t)(mcufi_dsp_linear_t4(&a, p->weights + o * n_in) - output);
        if (o < n_out) {
            tile4_c(p, xbuf, o, o + 1, 0, blim, output);
            o++;
        }
    }
}

/* One step of tile2: weight words wa, wb of channels o, o+1 against block b of 2 rows. */
#define TILE2_STEP(wa, wb)                                                                                             \
    do {                                                                                                               \
        const int32_t wa02 = __sxtb16(wa);                                                                             \
        const int32_t wb02 = __sxtb16(wb);                                                                             \
        const int32_t wa13 = sxtb16_ror8(wa);                                                                          \
        const int32_t wb13 = sxtb16_ror8(wb);                                                                          \
        int32_t xl, xh;                                                                                                \
        load2_post(&xb, &xl, &xh);                                                                                     \
        a00 = __smlad(wa13, xh, __smlad(wa02, xl, a00));                                                               \
        a01 = __smlad(wb13, xh, __smlad(wb02, xl, a01));                                                               \
        load2_post(&xb, &xl, &xh);                                                                                     \
        a10 = __smlad(wa13, xh, __smlad(wa02, xl, a10));                                                               \
        a11 = __smlad(wb13, xh, __smlad(wb02, xl, a11));                                                               \
    } while (0)

/* Two rows (tokens) x two channels per step over the expanded inputs; xbuf from expand(.., 2, ..);
 * an odd last channel with the 2 x 1 step. Per block: 2 weight loads, 4 SXTB16, 2 LDRD, 8 SMLAD. */
static void tile2(const mcuf_linear_params *p, const int32_t *xbuf, int32_t bias_stride, int8_t *output)
{
    const int32_t n_in = p->in_features;
    const int32_t n_out = p->out_features;
    const int32_t full = n_in >> 2;
    const int32_t tail = n_in & 3;
    const int8_t *w = p->weights;
    int32_t o = 0;
    for (; o + 2 <= n_out; o += 2) {
        const int32_t *xb = xbuf;
        const int8_t *w0 = w;
        int32_t a00 = 0; /* row 0, channel o */
        int32_t a01 = 0; /* row 0, channel o + 1 */
        int32_t a10 = 0;
        int32_t a11 = 0;
        for (int32_t k = full; k > 0; k--) {
            const int32_t wa = load_s8x4(w0);
            const int32_t wb = load_s8x4(w0 + n_in);
            w0 += 4;
            TILE2_STEP(wa, wb);
        }
        if (tail != 0) {
            const int32_t wa = load_tail(w0, tail);
            const int32_t wb = load_tail(w0 + n_in, tail);
            TILE2_STEP(wa, wb);
        }
        output[o] = finish(p, o, a00);
        output[o + 1] = finish(p, o + 1, a01);
        output[n_out + o] = finish_at(p, o, bias_stride, a10);
        output[n_out + o + 1] = finish_at(p, o + 1, bias_stride, a11);
        w += 2 * n_in;
    }
    if (o < n_out) {
        const int32_t *xb = xbuf;
        int32_t a0 = 0;
        int32_t a1 = 0;
        for (int32_t k = 0; k < full + (tail != 0); k++) {
            const int32_t wv = k < full ? load_s8x4(w + 4 * k) : load_tail(w + 4 * k, tail);
            const int32_t w02 = __sxtb16(wv);
            const int32_t w13 = sxtb16_ror8(wv);
            int32_t xl, xh;
            load2_post(&xb, &xl, &xh);
            a0 = __smlad(w13, xh, __smlad(w02, xl, a0));
            load2_post(&xb, &xl, &xh);
            a1 = __smlad(w13, xh, __smlad(w02, xl, a1));
        }
        output[o] = finish(p, o, a0);
        output[n_out + o] = finish_at(p, o, bias_stride, a1);
    }
}

/* Parameters already checked; xbuf holds mcufi_linear_tile_xbuf_words(p, tile) words. Groups of
 * `tile` rows (4 or 2) through the register-blocked kernels (4 only up to T4_DOUBLE_MAX_IN inputs,
 * else 2), the rest (and tile 1) row by row. Row r adds the bias at p->bias + r * bias_stride (0: one
 * bias for every row). */
void mcufi_linear_tile(const mcuf_linear_params *p, int32_t rows, int32_t tile, const int8_t *input,
                       int32_t *xbuf, int32_t bias_stride, int8_t *output)
{
    const int32_t n_in = p->in_features;
    const int32_t n_out = p->out_features;
    const int32_t off2 = dup16(p->input_offset);
    const int32_t bias_step = p->bias != NULL ? bias_stride : 0;
    mcuf_linear_params q = *p; /* q.bias: the current row's */
    int32_t r = 0;
    if (mcufi_linear_is_s4w(p)) {
        tile = 1; /* int4 weights: row by row (mcufi_linear_row dispatches) */
    }
    if (tile >= 4 && n_in <= T4_DOUBLE_MAX_IN) {
        for (; r + 4 <= rows; r += 4) {
            expand_head(input, n_in, off2, xbuf);
            tile4(&q, xbuf, bias_step, output);
            input += 4 * n_in;
            output += 4 * n_out;
            q.bias += 4 * bias_step;
        }
    }
    if (tile >= 2) {
        for (; r + 2 <= rows; r += 2) {
            expand(input, n_in, 2, off2, xbuf);
            tile2(&q, xbuf, bias_step, output);
            input += 2 * n_in;
            output += 2 * n_out;
            q.bias += 2 * bias_step;
        }
    }
    for (; r < rows; r++) {
        mcufi_linear_row(&q, input, output);
        input += n_in;
        output += n_out;
        q.bias += bias_step;
    }
}

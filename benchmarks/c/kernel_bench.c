/*
 * Kernel microbenchmark for Cortex-M under QEMU (benchmarks/kernels.py): runs the hot kernels on
 * the shapes of the MCUFormer-scale model (benchmarks/run.py, mcuformer-240: 144 tokens, embed
 * 216, 4 heads of 54, rank 54, MLP hidden 432, patch vectors of 1200) with pseudo-random data and
 * prints, through semihosting, per kernel
 *   KERNEL <name> <macs> <instructions> <checksum>
 * then DONE. Instructions are QEMU -icount counts (resolution: one SysTick tick), not cycles. The
 * checksum (sum of out[i] * (i + 1) over the outputs, mod 2^32) lets the caller check that the
 * portable and optimized builds computed the same integers.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mcuf.h"
#include "mcuf_internal.h" /* mcufi_attn_scores_tile: the fused attention's query tile */
#include "platform.h"

#define TOKENS 144
#define DIM 216
#define HEAD_DIM 54
#define MAX_IN 1200
#define MAX_OUT 432
#define MAX_ROWS 8
/* weights: at least MAX_IN * DIM and 432 * 216 bytes */

#include "bench_weights.inc" /* static const int8_t weights[MAX_IN * DIM]: benchmarks/kernels.py */
static int32_t bias[MAX_OUT];
static int32_t multiplier[MAX_OUT];
static int32_t shift[MAX_OUT];
static int8_t input[MAX_ROWS * MAX_IN];
static int8_t output[MAX_ROWS * MAX_OUT];
static int8_t kv[2 * TOKENS * DIM];
static int8_t q_row[DIM];
static int8_t probs[TOKENS];

static uint32_t rng_state = 12345u;

static int8_t next_s8(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (int8_t)(rng_state >> 24);
}

static void fill(int8_t *p, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        p[i] = next_s8();
    }
}

static uint32_t checksum(const int8_t *p, int32_t n)
{
    uint32_t s = 0u;
    for (int32_t i = 0; i < n; i++) {
        s += (uint32_t)(int32_t)p[i] * (uint32_t)(i + 1);
    }
    return s;
}

static void report(const char *name, int32_t macs, uint64_t instructions, uint32_t sum)
{
    mcuf_platform_puts("KERNEL ");
    mcuf_platform_puts(name);
    mcuf_platform_puts(" ");
    mcuf_platform_put_int(macs);
    mcuf_platform_puts(" ");
    mcuf_platform_put_u64(instructions);
    mcuf_platform_puts(" ");
    mcuf_platform_put_u64(sum);
    mcuf_platform_puts("\n");
}

static int failed;

static int32_t tile_scratch[2 * 4 * ((MAX_IN + 3) / 4)];

/* rows rows through mcuf_linear_tile_s8 with `tile` tokens per pass over the weights. */
static void linear(const char *name, int32_t in, int32_t out, int32_t rows, int32_t tile)
{
    mcuf_linear_params p = {0};
    p.in_features = in;
    p.out_features = out;
    p.input_offset = 3;
    p.output_offset = -5;
    p.weights = weights;
    p.bias = bias;
    p.multiplier = multiplier;
    p.shift = shift;
    p.act_min = -128;
    p.act_max = 127;
    mcuf_platform_counter_start();
    const mcuf_status st = mcuf_linear_tile_s8(&p, rows, tile, input, (int8_t *)tile_scratch, output);
    const uint64_t n = mcuf_platform_counter_stop();
    failed |= st != MCUF_OK;
    report(name, in * out * rows, n, checksum(output, out * rows));
}

int main(void)
{
    mcuf_platform_init();
    fill(input, (int32_t)sizeof input);
    fill(kv, (int32_t)sizeof kv);
    fill(q_row, (int32_t)sizeof q_row);
    fill(probs, (int32_t)sizeof probs);
    for (int32_t o = 0; o < MAX_OUT; o++) {
        bias[o] = (int32_t)next_s8() * 97;
        multiplier[o] = (int32_t)(0x40000000u + ((uint32_t)(uint8_t)next_s8() << 20));
        shift[o] = -9 - (o % 3);
    }
    /* (in, out) of every linear of one mcuformer-240 block, and the patch embedding. */
    static const char *const names[3][6] = {
        {"linear_216x54_t1", "linear_54x216_t1", "linear_216x216_t1", "linear_54x432_t1", "linear_432x54_t1",
         "linear_1200x216_t1"},
        {"linear_216x54_t2", "linear_54x216_t2", "linear_216x216_t2", "linear_54x432_t2", "linear_432x54_t2",
         "linear_1200x216_t2"},
        {"linear_216x54_t4", "linear_54x216_t4", "linear_216x216_t4", "linear_54x432_t4", "linear_432x54_t4",
         "linear_1200x216_t4"},
    };
    static const int32_t tiles[3] = {1, 2, 4};
    for (int32_t i = 0; i < 3; i++) {
        linear(names[i][0], DIM, 54, MAX_ROWS, tiles[i]);
        linear(names[i][1], 54, DIM, MAX_ROWS, tiles[i]);
        linear(names[i][2], DIM, DIM, MAX_ROWS, tiles[i]);
        linear(names[i][3], 54, 432, MAX_ROWS, tiles[i]);
        linear(names[i][4], 432, 54, MAX_ROWS, tiles[i]);
        linear(names[i][5], MAX_IN, DIM, 4, tiles[i]);
    }

    mcuf_attn_head_params h = {0};
    h.tokens = TOKENS;
    h.head_dim = HEAD_DIM;
    h.q_offset = 7;
    h.k_offset = -2;
    h.v_offset = 4;
    h.score_offset = 3;
    h.out_offset = -1;
    h.score.multiplier = 0x5A000000;
    h.score.shift = -12;
    h.av.multiplier = 0x48000000;
    h.av.shift = -15;
    mcuf_platform_counter_start();
    mcuf_status st = MCUF_OK;
    for (int32_t r = 0; r < 4 && st == MCUF_OK; r++) {
        st = mcuf_attn_scores_s8(&h, q_row, kv + r * HEAD_DIM, DIM, output + r * TOKENS);
    }
    uint64_t n = mcuf_platform_counter_stop();
    failed |= st != MCUF_OK;
    report("attn_scores_144x54", 4 * TOKENS * HEAD_DIM, n, checksum(output, 4 * TOKENS));
    /* the same four score rows as one tile of 4 queries (the head's rows of a q tile) */
    static int8_t q_tile[4 * DIM];
    for (int32_t r = 0; r < 4; r++) {
        memcpy(q_tile + r * DIM, q_row, HEAD_DIM);
    }
    mcuf_platform_counter_start();
    for (int32_t r = 0; r < 4 && st == MCUF_OK; r++) {
        mcufi_attn_scores_tile(&h, 4, q_tile, DIM, kv + r * HEAD_DIM, DIM, tile_scratch, output + 4 * r * TOKENS);
    }
    n = mcuf_platform_counter_stop();
    report("attn_scores_tile4_144x54", 16 * TOKENS * HEAD_DIM, n, checksum(output, 16 * TOKENS));
    mcuf_platform_counter_start();
    for (int32_t r = 0; r < 4 && st == MCUF_OK; r++) {
        st = mcuf_attn_weighted_sum_s8(&h, probs, kv + TOKENS * DIM + r * HEAD_DIM, DIM, output + r * HEAD_DIM);
    }
    n = mcuf_platform_counter_stop();
    failed |= st != MCUF_OK;
    report("attn_weighted_sum_144x54", 4 * TOKENS * HEAD_DIM, n, checksum(output, 4 * HEAD_DIM));
    /* four probability rows against each head's V transposed (the fused attention's v_buf
     * [dim][tokens]: the second half of kv read as [DIM][TOKENS]) */
    static int8_t probs4[4 * TOKENS];
    for (int32_t r = 0; r < 4; r++) {
        memcpy(probs4 + r * TOKENS, probs, TOKENS);
        probs4[r * TOKENS + r] = (int8_t)(probs4[r * TOKENS + r] ^ 0x55); /* rows differ */
    }
    mcuf_platform_counter_start();
    for (int32_t r = 0; r < 4; r++) {
        mcufi_attn_weighted_sum_tile(&h, 4, probs4, kv + TOKENS * DIM + r * HEAD_DIM * TOKENS, tile_scratch,
                                     output + r * HEAD_DIM, DIM);
    }
    n = mcuf_platform_counter_stop();
    report("attn_weighted_sum_tile4_144x54", 16 * TOKENS * HEAD_DIM, n, checksum(output, 4 * DIM));
    /* Per-token row kernels of the fused blocks (MACs column: elements). */
    static int32_t gamma[DIM];
    static int32_t beta[DIM];
    static int32_t exp_table[256];
    for (int32_t i = 0; i < DIM; i++) {
        gamma[i] = 900 + (int32_t)next_s8();
        beta[i] = (int32_t)next_s8() * 1000;
    }
    for (int32_t i = 0; i < 256; i++) {
        exp_table[i] = 65536 >> (i / 16);
    }
    mcuf_layernorm_params ln = {DIM, 3, -2, gamma, beta, {0x50000000, -8}, 0u};
    mcuf_platform_counter_start();
    for (int32_t r = 0; r < MAX_ROWS && st == MCUF_OK; r++) {
        st = mcuf_layernorm_s8(&ln, input + r * DIM, output + r * DIM);
    }
    n = mcuf_platform_counter_stop();
    failed |= st != MCUF_OK;
    report("layernorm_216", MAX_ROWS * DIM, n, checksum(output, MAX_ROWS * DIM));
    mcuf_add_params add = {5, -3, 2, 20, {0x5A000000, -20}, {0x43000000, -19}, {0x60000000, -10}, -128, 127};
    mcuf_platform_counter_start();
    st = mcuf_add_s8(&add, MAX_ROWS * DIM, input, input + 7, output);
    n = mcuf_platform_counter_stop();
    failed |= st != MCUF_OK;
    report("add_216", MAX_ROWS * DIM, n, checksum(output, MAX_ROWS * DIM));
    const mcuf_lut_params lut = {input};
    mcuf_platform_counter_start();
    st = mcuf_lut_s8(&lut, MAX_ROWS * 432, input + 100, output);
    n = mcuf_platform_counter_stop();
    failed |= st != MCUF_OK;
    report("lut_432", MAX_ROWS * 432, n, checksum(output, MAX_ROWS * 432));
    mcuf_softmax_params sm = {TOKENS, exp_table};
    mcuf_platform_counter_start();
    for (int32_t r = 0; r < MAX_ROWS && st == MCUF_OK; r++) {
        st = mcuf_softmax_s8(&sm, input + r * TOKENS, output + r * TOKENS);
    }
    n = mcuf_platform_counter_stop();
    failed |= st != MCUF_OK;
    report("softmax_144", MAX_ROWS * TOKENS, n, checksum(output, MAX_ROWS * TOKENS));
    mcuf_platform_puts(failed ? "ERROR\n" : "DONE\n");
    mcuf_platform_exit(failed ? 1 : 0);
}

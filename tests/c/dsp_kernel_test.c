/*
 * Kernel test program for Cortex-M under QEMU (tests/test_dsp_kernels.py): runs every case of
 * the generated dsp_vectors.inc (tests/dsp_vectors.py: inputs, parameters and the Python
 * integer reference's outputs, all in flash; no file I/O) through the kernels it is linked with
 * (portable or DSP-extension) and prints, through semihosting,
 *   MISMATCH <kernel> <case> <index> <expected> <got>   for every differing output value
 *   STATUS <kernel> <case> <expected> <got>              for a differing return status
 *   OVERWRITE <kernel> <case> <offset>                   for a write outside the output
 *   COUNT <kernel> <cases> <values>                      per kernel, values compared
 *   INSTR <weight_bits> <in> <out> <rows> <instructions>  per bench case (QEMU instruction count)
 *   DONE
 * Inputs the kernels read from RAM in a model (activations, K, V) are copied to RAM at the
 * case's byte offset `align` (0..3) first, so word loads meet every alignment. Outputs go to a
 * RAM buffer filled with a guard byte; on an error status it must be left untouched.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mcuf.h"
#include "mcuf_internal.h"
#include "platform.h"

#define GUARD_BYTE 0x5A
#define GUARD_BYTES 16

typedef struct {
    mcuf_linear_params p;
    int32_t rows; /* -1: mcuf_linear_s8 (one row), else mcuf_linear_rows_s8 or mcuf_linear_tile_s8 */
    int32_t tile; /* 0: not tiled; 1, 2, 4 (or a bad value): mcuf_linear_tile_s8 */
    int32_t align;
    const int8_t *input;    /* [max(rows, 1)][in_features] */
    const int8_t *expected; /* [rows or 1][out_features]; NULL: error or rows 0, output untouched */
    int32_t status;
    int32_t weight_bits; /* 8; or 4: p.weights is packed int4, run through mcuf_linear[_rows]_s4w_s8 */
    int32_t bias_stride; /* != 0: mcufi_linear_tile with a bias row per token (p.bias + r * bias_stride) */
} linear_case;

typedef struct {
    mcuf_attn_head_params p;
    int32_t k_stride, v_stride;
    int32_t align;
    const int8_t *q;      /* [head_dim] */
    const int8_t *k;      /* [tokens][k_stride] */
    const int8_t *probs;  /* [tokens] */
    const int8_t *v;      /* [tokens][v_stride] */
    const int8_t *scores; /* [tokens]; NULL: error */
    const int8_t *out;    /* [head_dim]; NULL: error */
    int32_t scores_status, out_status;
} attn_case;

typedef struct {
    mcuf_add_params p;
    int32_t n;
    int32_t align;
    const int8_t *a, *b, *expected;
    int32_t status;
} add_case;

typedef struct {
    mcuf_layernorm_params p;
    int32_t align;
    const int8_t *input, *expected;
    int32_t status;
} layernorm_case;

typedef struct {
    const int8_t *table;
    int32_t n;
    int32_t align;
    const int8_t *input, *expected;
} lut_case;

typedef struct {
    mcuf_softmax_params p;
    int32_t align;
    const int8_t *input, *expected;
} softmax_case;

typedef struct {
    mcuf_patch_embed_params p;
    const int8_t *image;    /* [image_h][image_w][channels] */
    const int8_t *expected; /* [n_expected]: the tokens' rows (those before the failing stripe) */
    int32_t n_expected;
    int32_t fail_at; /* the stripe whose read fails, -1: none */
    int32_t status;
} patch_case;

typedef struct {
    mcuf_pool_head_params p;
    const int8_t *x;        /* [tokens][dim] */
    const int8_t *expected; /* [classes] */
} pool_case;

#include "dsp_vectors.inc"

static int8_t ram_a[MAX_BYTES + 4];
static int8_t ram_b[MAX_BYTES + 4];
static int8_t ram_c[MAX_BYTES + 4];
static int8_t out_buf[MAX_BYTES + GUARD_BYTES];
static int32_t tile_scratch[2 * 4 * 64]; /* mcuf_linear_tile_s8, tile 4, in_features <= 256 */

static uint32_t n_errors;

static void put_fields(const char *tag, const char *kernel, int32_t a, int32_t b, int32_t c, int32_t d, int n)
{
    const int32_t v[4] = {a, b, c, d};
    mcuf_platform_puts(tag);
    mcuf_platform_puts(" ");
    mcuf_platform_puts(kernel);
    for (int i = 0; i < n; i++) {
        mcuf_platform_puts(" ");
        mcuf_platform_put_int(v[i]);
    }
    mcuf_platform_puts("\n");
}

static int8_t *to_ram(int8_t *ram, const int8_t *src, int32_t n, int32_t align)
{
    memcpy(ram + align, src, (size_t)n);
    return ram + align;
}

static void arm_output(int32_t n)
{
    memset(out_buf, GUARD_BYTE, (size_t)n + GUARD_BYTES);
}

/* Compares out_buf[0, n) with expected (NULL: the whole buffer must still be guard bytes) and the
 * guard bytes after n; returns the number of values compared. */
static int32_t check_output(const char *kernel, int32_t index, const int8_t *expected, int32_t n)
{
    if (expected == NULL) {
        for (int32_t i = 0; i < n + GUARD_BYTES; i++) {
            if (out_buf[i] != (int8_t)GUARD_BYTE) {
                put_fields("OVERWRITE", kernel, index, i, 0, 0, 2);
                n_errors++;
            }
        }
        return 0;
    }
    for (int32_t i = 0; i < n; i++) {
        if (out_buf[i] != expected[i]) {
            put_fields("MISMATCH", kernel, index, i, expected[i], out_buf[i], 4);
            n_errors++;
        }
    }
    for (int32_t i = n; i < n + GUARD_BYTES; i++) {
        if (out_buf[i] != (int8_t)GUARD_BYTE) {
            put_fields("OVERWRITE", kernel, index, i, 0, 0, 2);
            n_errors++;
        }
    }
    return n;
}

static void check_status(const char *kernel, int32_t index, int32_t expected, mcuf_status got)
{
    if ((int32_t)got != expected) {
        put_fields("STATUS", kernel, index, expected, (int32_t)got, 0, 3);
        n_errors++;
    }
}

/* One linear case (int8 or packed int4 weights); returns the values compared and the instructions
 * the kernel call ran. */
static int32_t run_linear_case(const char *table, int32_t c, const linear_case *t, uint64_t *instructions)
{
    const int32_t rows = t->rows < 0 ? 1 : t->rows;
    const int8_t *in = to_ram(ram_a, t->input, (rows > 0 ? rows : 1) * t->p.in_features, t->align);
    const int32_t n_out = rows * t->p.out_features;
    const mcuf_linear_params *p = &t->p;
    const mcuf_linear_s4w_params q = {p->in_features, p->out_features, p->input_offset, p->output_offset, p->act_min,
                                      p->act_max,     p->weights,      p->bias,         p->multiplier,    p->shift};
    if (t->tile != 0 && mcuf_linear_tile_s8_scratch_size(p, t->tile) > (int32_t)sizeof tile_scratch) {
        put_fields("STATUS", "linear_tile_scratch", c, mcuf_linear_tile_s8_scratch_size(p, t->tile),
                   (int32_t)sizeof tile_scratch, 0, 3);
        n_errors++;
        *instructions = 0;
        return 0;
    }
    arm_output(n_out);
    mcuf_status st;
    mcuf_platform_counter_start();
    if (t->weight_bits == 4) {
        st = t->rows >= 0 ? mcuf_linear_rows_s4w_s8(&q, t->rows, in, out_buf) : mcuf_linear_s4w_s8(&q, in, out_buf);
    } else if (t->bias_stride != 0) {
        st = mcufi_linear_check(p);
        if (st == MCUF_OK) {
            mcufi_linear_tile(p, t->rows, t->tile, in, tile_scratch, t->bias_stride, out_buf);
        }
    } else if (t->tile != 0) {
        st = mcuf_linear_tile_s8(p, t->rows, t->tile, in, (int8_t *)tile_scratch, out_buf);
    } else {
        st = t->rows >= 0 ? mcuf_linear_rows_s8(p, t->rows, in, out_buf) : mcuf_linear_s8(p, in, out_buf);
    }
    *instructions = mcuf_platform_counter_stop();
    check_status(table, c, t->status, st);
    return check_output(table, c, t->expected, n_out);
}

static void run_linear(void)
{
    int32_t values = 0;
    uint64_t instructions;
    for (int32_t c = 0; c < (int32_t)(sizeof linear_cases / sizeof linear_cases[0]); c++) {
        values += run_linear_case("linear", c, &linear_cases[c], &instructions);
    }
    put_fields("COUNT", "linear", (int32_t)(sizeof linear_cases / sizeof linear_cases[0]), values, 0, 0, 2);
}

/* The same layer with int8 and with int4 weights: instructions per call. */
static void run_bench(void)
{
    for (int32_t c = 0; c < (int32_t)(sizeof bench_cases / sizeof bench_cases[0]); c++) {
        const linear_case *t = &bench_cases[c];
        uint64_t instructions;
        run_linear_case("bench", c, t, &instructions);
        mcuf_platform_puts("INSTR");
        const int32_t v[4] = {t->weight_bits, t->p.in_features, t->p.out_features, t->rows};
        for (int i = 0; i < 4; i++) {
            mcuf_platform_puts(" ");
            mcuf_platform_put_int(v[i]);
        }
        mcuf_platform_puts(" ");
        mcuf_platform_put_u64(instructions);
        mcuf_platform_puts("\n");
    }
}

/* The fused attention's tiles (mcuf_internal.h) on an accepted case: 4, 3 and 1 query rows (row r:
 * the case's q rotated by r, each row offset by zero rows in between: q_stride 2 * head_dim)
 * through mcufi_attn_scores_tile, and 4, 3 and 1 probability rows (the case's probs rotated by r)
 * against V transposed through mcufi_attn_weighted_sum_tile (out_stride head_dim + 3). Row 0 must
 * be the case's expected row (the Python reference); rows 1 .. 3, which differ from it and from
 * each other, what the one-row kernels (mcuf_attn_scores_s8 and mcuf_attn_weighted_sum_s8 on the
 * untransposed V, checked against the reference above) give for them: a tile that mixed up, shifted
 * or dropped a row fails. Returns the values compared. */
static int8_t tile_in[4 * MAX_BYTES + 4];
static int8_t tile_vt[MAX_BYTES + 4];
static int8_t tile_out[4 * (MAX_BYTES + 3)];
static int8_t tile_row[MAX_BYTES + 4];
static int8_t tile_ref[4][MAX_BYTES + 4];

static void rotated(int8_t *dst, const int8_t *src, int32_t n, int32_t r)
{
    for (int32_t i = 0; i < n; i++) {
        dst[i] = src[(i + r) % n];
    }
}

static int32_t run_attn_tiles(int32_t c, const attn_case *t, const int8_t *k, const int8_t *v)
{
    const int32_t tokens = t->p.tokens;
    const int32_t hd = t->p.head_dim;
    int32_t values = 0;
    if (2 * 4 * ((tokens > hd ? tokens : hd) + 3) / 4 > (int32_t)(sizeof tile_scratch / sizeof tile_scratch[0])) {
        return 0; /* longer than the scratch: the scores / weighted-sum kernels above cover the case */
    }
    memset(tile_in, 0, sizeof tile_in);
    for (int32_t r = 0; r < 4; r++) {
        rotated(tile_in + r * 2 * hd, t->q, hd, r);
        memcpy(tile_row, tile_in + r * 2 * hd, (size_t)hd);
        if (mcuf_attn_scores_s8(&t->p, tile_row, k, t->k_stride, tile_ref[r]) != MCUF_OK) {
            put_fields("STATUS", "attn_scores_tile", c, MCUF_OK, 1, 0, 3);
            n_errors++;
        }
    }
    for (int32_t n = 4; n >= 1; n -= n == 4 ? 1 : 2) { /* 4, 3, 1 */
        mcufi_attn_scores_tile(&t->p, n, tile_in, 2 * hd, k, t->k_stride, tile_scratch, tile_out);
        for (int32_t r = 0; r < n; r++) {
            arm_output(tokens);
            memcpy(out_buf, tile_out + r * tokens, (size_t)tokens);
            values += check_output(r == 0 ? "attn_scores_tile" : "attn_scores_tile_rows", c,
                                   r == 0 ? t->scores : tile_ref[r], tokens);
        }
    }
    for (int32_t j = 0; j < tokens; j++) {
        for (int32_t d = 0; d < hd; d++) {
            tile_vt[d * tokens + j] = v[j * t->v_stride + d];
        }
    }
    for (int32_t r = 0; r < 4; r++) {
        rotated(tile_in + r * tokens, t->probs, tokens, r);
        memcpy(tile_row, tile_in + r * tokens, (size_t)tokens);
        if (mcuf_attn_weighted_sum_s8(&t->p, tile_row, v, t->v_stride, tile_ref[r]) != MCUF_OK) {
            put_fields("STATUS", "attn_weighted_sum_tile", c, MCUF_OK, 1, 0, 3);
            n_errors++;
        }
    }
    const int32_t os = hd + 3;
    for (int32_t n = 4; n >= 1; n -= n == 4 ? 1 : 2) { /* 4, 3, 1 */
        mcufi_attn_weighted_sum_tile(&t->p, n, tile_in, tile_vt, tile_scratch, tile_out, os);
        for (int32_t r = 0; r < n; r++) {
            arm_output(hd);
            memcpy(out_buf, tile_out + r * os, (size_t)hd);
            values += check_output(r == 0 ? "attn_weighted_sum_tile" : "attn_weighted_sum_tile_rows", c,
                                   r == 0 ? t->out : tile_ref[r], hd);
        }
    }
    return values;
}

static void run_attn(void)
{
    int32_t values = 0;
    for (int32_t c = 0; c < (int32_t)(sizeof attn_cases / sizeof attn_cases[0]); c++) {
        const attn_case *t = &attn_cases[c];
        const int32_t tokens = t->p.tokens;
        const int32_t hd = t->p.head_dim;
        const int8_t *q = to_ram(ram_a, t->q, hd, t->align);
        const int8_t *k = to_ram(ram_b, t->k, tokens * t->k_stride, (t->align + 1) & 3);
        arm_output(tokens);
        mcuf_status st = mcuf_attn_scores_s8(&t->p, q, k, t->k_stride, out_buf);
        check_status("attn_scores", c, t->scores_status, st);
        values += check_output("attn_scores", c, t->scores, tokens);

        const int8_t *probs = to_ram(ram_a, t->probs, tokens, t->align);
        const int8_t *v = to_ram(ram_c, t->v, tokens * t->v_stride, (t->align + 2) & 3);
        arm_output(hd);
        st = mcuf_attn_weighted_sum_s8(&t->p, probs, v, t->v_stride, out_buf);
        check_status("attn_weighted_sum", c, t->out_status, st);
        values += check_output("attn_weighted_sum", c, t->out, hd);
        if (t->scores != NULL && t->out != NULL) {
            values += run_attn_tiles(c, t, k, v); /* q, probs: from the case (ram_a is reused) */
        }
    }
    put_fields("COUNT", "attn", (int32_t)(sizeof attn_cases / sizeof attn_cases[0]), values, 0, 0, 2);
}

static void run_add(void)
{
    int32_t values = 0;
    for (int32_t c = 0; c < (int32_t)(sizeof add_cases / sizeof add_cases[0]); c++) {
        const add_case *t = &add_cases[c];
        const int8_t *a = to_ram(ram_a, t->a, t->n, t->align);
        const int8_t *b = to_ram(ram_b, t->b, t->n, (t->align + 3) & 3);
        arm_output(t->n);
        const mcuf_status st = mcuf_add_s8(&t->p, t->n, a, b, out_buf);
        check_status("add", c, t->status, st);
        values += check_output("add", c, t->expected, t->n);
    }
    put_fields("COUNT", "add", (int32_t)(sizeof add_cases / sizeof add_cases[0]), values, 0, 0, 2);
}

static void run_layernorm(void)
{
    int32_t values = 0;
    for (int32_t c = 0; c < (int32_t)(sizeof layernorm_cases / sizeof layernorm_cases[0]); c++) {
        const layernorm_case *t = &layernorm_cases[c];
        const int8_t *in = to_ram(ram_a, t->input, t->p.dim, t->align);
        arm_output(t->p.dim);
        const mcuf_status st = mcuf_layernorm_s8(&t->p, in, out_buf);
        check_status("layernorm", c, t->status, st);
        values += check_output("layernorm", c, t->expected, t->p.dim);
    }
    put_fields("COUNT", "layernorm", (int32_t)(sizeof layernorm_cases / sizeof layernorm_cases[0]), values, 0, 0, 2);
}

static void run_lut(void)
{
    int32_t values = 0;
    for (int32_t c = 0; c < (int32_t)(sizeof lut_cases / sizeof lut_cases[0]); c++) {
        const lut_case *t = &lut_cases[c];
        const int8_t *in = to_ram(ram_a, t->input, t->n, t->align);
        arm_output(t->n);
        const mcuf_lut_params p = {t->table};
        check_status("lut", c, MCUF_OK, mcuf_lut_s8(&p, t->n, in, out_buf));
        values += check_output("lut", c, t->expected, t->n);
        /* in place, as the MLP block calls it on its hidden rows */
        int8_t *io = to_ram(ram_a, t->input, t->n, t->align);
        check_status("lut_in_place", c, MCUF_OK, mcuf_lut_s8(&p, t->n, io, io));
        arm_output(t->n);
        memcpy(out_buf, io, (size_t)t->n);
        values += check_output("lut_in_place", c, t->expected, t->n);
    }
    put_fields("COUNT", "lut", (int32_t)(sizeof lut_cases / sizeof lut_cases[0]), values, 0, 0, 2);
}

static void run_softmax(void)
{
    int32_t values = 0;
    for (int32_t c = 0; c < (int32_t)(sizeof softmax_cases / sizeof softmax_cases[0]); c++) {
        const softmax_case *t = &softmax_cases[c];
        const int8_t *in = to_ram(ram_a, t->input, t->p.length, t->align);
        arm_output(t->p.length);
        check_status("softmax", c, MCUF_OK, mcuf_softmax_s8(&t->p, in, out_buf));
        values += check_output("softmax", c, t->expected, t->p.length);
    }
    put_fields("COUNT", "softmax", (int32_t)(sizeof softmax_cases / sizeof softmax_cases[0]), values, 0, 0, 2);
}

/* Scalar helpers: {x, m, s, expected}, {a, b, expected}, {x, e, expected}; isqrt in/out. */
static void run_fixedpoint(void)
{
    int32_t values = 0;
    for (int32_t c = 0; c < (int32_t)(sizeof requantize_cases / sizeof requantize_cases[0]); c++) {
        const int32_t *t = requantize_cases[c];
        const int32_t got = mcuf_requantize(t[0], t[1], t[2]);
        if (got != t[3]) {
            put_fields("MISMATCH", "requantize", c, 0, t[3], got, 4);
            n_errors++;
        }
        values++;
    }
    for (int32_t c = 0; c < (int32_t)(sizeof srdhm_cases / sizeof srdhm_cases[0]); c++) {
        const int32_t *t = srdhm_cases[c];
        const int32_t got = mcuf_srdhm(t[0], t[1]);
        if (got != t[2]) {
            put_fields("MISMATCH", "srdhm", c, 0, t[2], got, 4);
            n_errors++;
        }
        values++;
    }
    for (int32_t c = 0; c < (int32_t)(sizeof rdbpot_cases / sizeof rdbpot_cases[0]); c++) {
        const int32_t *t = rdbpot_cases[c];
        const int32_t got = mcuf_rdbpot(t[0], t[1]);
        if (got != t[2]) {
            put_fields("MISMATCH", "rdbpot", c, 0, t[2], got, 4);
            n_errors++;
        }
        values++;
    }
    for (int32_t c = 0; c < (int32_t)(sizeof isqrt_in / sizeof isqrt_in[0]); c++) {
        const uint32_t got = mcuf_isqrt_u64(isqrt_in[c]);
        if (got != isqrt_out[c]) {
            /* values up to 2^32 - 1: printed as their int32 bit pattern */
            put_fields("MISMATCH", "isqrt", c, 0, (int32_t)isqrt_out[c], (int32_t)got, 4);
            n_errors++;
        }
        values++;
    }
    put_fields("COUNT", "fixedpoint", 4, values, 0, 0, 2);
}

/* The stripe reader of the patch embedding cases: stripe s of the case's image, or an error at
 * fail_at. */
typedef struct {
    const patch_case *t;
    int32_t calls;
} patch_reader_ctx;

static int32_t patch_reader(void *ctx, int32_t stripe, int8_t *dst, int32_t n_bytes)
{
    patch_reader_ctx *r = (patch_reader_ctx *)ctx;
    if (stripe != r->calls++ || stripe == r->t->fail_at) {
        return 1;
    }
    memcpy(dst, r->t->image + (size_t)stripe * (size_t)n_bytes, (size_t)n_bytes);
    return 0;
}

static int32_t embed_scratch[MAX_BYTES / 2 + 64];

static void run_patch(void)
{
    int32_t values = 0;
    for (int32_t c = 0; c < (int32_t)(sizeof patch_cases / sizeof patch_cases[0]); c++) {
        const patch_case *t = &patch_cases[c];
        if (mcuf_patch_embed_s8_scratch_size(&t->p) > (int32_t)sizeof embed_scratch) {
            put_fields("STATUS", "patch_scratch", c, mcuf_patch_embed_s8_scratch_size(&t->p), 0, 0, 3);
            n_errors++;
            continue;
        }
        patch_reader_ctx r = {t, 0};
        arm_output(t->n_expected);
        check_status("patch", c, t->status,
                     mcuf_patch_embed_s8(&t->p, patch_reader, &r, (int8_t *)embed_scratch, out_buf));
        values += check_output("patch", c, t->expected, t->n_expected);
    }
    put_fields("COUNT", "patch", (int32_t)(sizeof patch_cases / sizeof patch_cases[0]), values, 0, 0, 2);
}

static void run_pool(void)
{
    int32_t values = 0;
    for (int32_t c = 0; c < (int32_t)(sizeof pool_cases / sizeof pool_cases[0]); c++) {
        const pool_case *t = &pool_cases[c];
        if (mcuf_pool_head_s8_scratch_size(&t->p) > (int32_t)sizeof embed_scratch) {
            put_fields("STATUS", "pool_scratch", c, mcuf_pool_head_s8_scratch_size(&t->p), 0, 0, 3);
            n_errors++;
            continue;
        }
        const int8_t *x = to_ram(ram_a, t->x, t->p.tokens * t->p.dim, 0);
        arm_output(t->p.classes);
        check_status("pool", c, 0, mcuf_pool_head_s8(&t->p, x, (int8_t *)embed_scratch, out_buf));
        values += check_output("pool", c, t->expected, t->p.classes);
    }
    put_fields("COUNT", "pool", (int32_t)(sizeof pool_cases / sizeof pool_cases[0]), values, 0, 0, 2);
}

int main(void)
{
    mcuf_platform_init();
    run_fixedpoint();
    run_linear();
    run_bench();
    run_attn();
    run_add();
    run_layernorm();
    run_lut();
    run_softmax();
    run_patch();
    run_pool();
    mcuf_platform_puts("ERRORS ");
    mcuf_platform_put_u64(n_errors);
    mcuf_platform_puts("\nDONE\n");
    return 0;
}

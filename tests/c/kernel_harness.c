/*
 * Test driver for the mcuformer C kernels (tests/test_kernels.py).
 *
 * usage: kernel_harness IN OUT
 * IN is a sequence of cases written by tests/kernel_harness.py; every item is tagged:
 *   'I' int32 | 'Q' uint64 | 'b' n int8[n] | 'i' n int32[n] | 'q' n uint64[n] | 'N' (NULL pointer)
 *   'S' len name  (start of a parameter struct: the Python dataclass's C_TYPE)
 * Structs are read field by field in mcuf.h order, so a Python dataclass whose fields are not in
 * C order fails here. Every array gets its own exact-size heap block (ASan catches any over-read
 * or over-write), and every case's blocks are freed before the next case.
 * OUT gets, per case: status int32, aux int32 (scratch size or 0), count int32, then count
 * tagged arrays ('b' / 'i' / 'u' uint32, n, data).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcuf.h"

#define MAX_ALLOCS 4096

static void *g_allocs[MAX_ALLOCS];
static int g_n_allocs;

static void die(const char *what)
{
    fprintf(stderr, "kernel_harness: %s\n", what);
    exit(2);
}

static void *xalloc(size_t n)
{
    if (g_n_allocs == MAX_ALLOCS) {
        die("too many allocations in one case");
    }
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        die("out of memory");
    }
    g_allocs[g_n_allocs++] = p;
    return p;
}

static void free_all(void)
{
    for (int i = 0; i < g_n_allocs; i++) {
        free(g_allocs[i]);
    }
    g_n_allocs = 0;
}

/* ---- input ---------------------------------------------------------------------------------- */

static const uint8_t *g_in;
static size_t g_in_len;
static size_t g_pos;

static void take(void *dst, size_t n)
{
    if (g_pos + n > g_in_len) {
        die("truncated input");
    }
    memcpy(dst, g_in + g_pos, n);
    g_pos += n;
}

static char rd_tag(void)
{
    char t;
    take(&t, 1);
    return t;
}

static int32_t rd_raw32(void)
{
    int32_t v;
    take(&v, 4);
    return v;
}

static int32_t rd_int(void)
{
    if (rd_tag() != 'I') {
        die("expected an int32 ('I')");
    }
    return rd_raw32();
}

static uint64_t rd_u64(void)
{
    if (rd_tag() != 'Q') {
        die("expected a uint64 ('Q')");
    }
    uint64_t v;
    take(&v, 8);
    return v;
}

/* Array of `elem` bytes per element with tag `tag`, or NULL for 'N'. */
static void *rd_array(char tag, size_t elem, int32_t *count)
{
    const char t = rd_tag();
    if (t == 'N') {
        if (count != NULL) {
            *count = 0;
        }
        return NULL;
    }
    if (t != tag) {
        fprintf(stderr, "kernel_harness: expected array tag '%c', got '%c'\n", tag, t);
        exit(2);
    }
    const int32_t n = rd_raw32();
    if (n < 0) {
        die("negative array length");
    }
    void *p = xalloc((size_t)n * elem);
    take(p, (size_t)n * elem);
    if (count != NULL) {
        *count = n;
    }
    return p;
}

static int8_t *rd_s8(int32_t *n)
{
    return (int8_t *)rd_array('b', 1, n);
}

static int32_t *rd_s32(int32_t *n)
{
    return (int32_t *)rd_array('i', 4, n);
}

static void rd_struct(const char *c_type)
{
    if (rd_tag() != 'S') {
        die("expected a struct ('S')");
    }
    const int32_t n = rd_raw32();
    char name[64];
    if (n <= 0 || n >= (int32_t)sizeof(name)) {
        die("bad struct name length");
    }
    take(name, (size_t)n);
    name[n] = '\0';
    if (strcmp(name, c_type) != 0) {
        fprintf(stderr, "kernel_harness: expected struct %s, got %s\n", c_type, name);
        exit(2);
    }
}

static void rd_requant(mcuf_requant *r)
{
    rd_struct("mcuf_requant");
    r->multiplier = rd_int();
    r->shift = rd_int();
}

/* The fields of mcuf_linear_params, also those of mcuf_linear_s4w_params (c_type names which). */
static void rd_linear_fields(mcuf_linear_params *p, const char *c_type)
{
    rd_struct(c_type);
    p->in_features = rd_int();
    p->out_features = rd_int();
    p->input_offset = rd_int();
    p->output_offset = rd_int();
    p->act_min = rd_int();
    p->act_max = rd_int();
    p->weights = rd_s8(NULL);
    p->bias = rd_s32(NULL);
    p->multiplier = rd_s32(NULL);
    p->shift = rd_s32(NULL);
    p->weight_format = MCUF_WEIGHTS_S8; /* mcuf_linear_s4w_params has no such field */
    if (strcmp(c_type, "mcuf_linear_params") == 0) {
        p->weight_format = rd_int();
    }
}

static void rd_linear(mcuf_linear_params *p)
{
    rd_linear_fields(p, "mcuf_linear_params");
}

static void rd_lowrank(mcuf_lowrank_params *p)
{
    rd_struct("mcuf_lowrank_params");
    p->rank = rd_int();
    rd_linear(&p->down);
    rd_linear(&p->up);
}

static void rd_layernorm(mcuf_layernorm_params *p)
{
    rd_struct("mcuf_layernorm_params");
    p->dim = rd_int();
    p->input_offset = rd_int();
    p->output_offset = rd_int();
    p->gamma = rd_s32(NULL);
    p->beta = rd_s32(NULL);
    rd_requant(&p->out);
    p->epsilon = rd_u64();
}

static void rd_softmax(mcuf_softmax_params *p)
{
    rd_struct("mcuf_softmax_params");
    p->length = rd_int();
    p->exp_table = rd_s32(NULL);
}

static void rd_add(mcuf_add_params *p)
{
    rd_struct("mcuf_add_params");
    p->input1_offset = rd_int();
    p->input2_offset = rd_int();
    p->output_offset = rd_int();
    p->left_shift = rd_int();
    rd_requant(&p->input1);
    rd_requant(&p->input2);
    rd_requant(&p->output);
    p->act_min = rd_int();
    p->act_max = rd_int();
}

static void rd_head(mcuf_attn_head_params *p)
{
    rd_struct("mcuf_attn_head_params");
    p->tokens = rd_int();
    p->head_dim = rd_int();
    p->q_offset = rd_int();
    p->k_offset = rd_int();
    p->v_offset = rd_int();
    p->score_offset = rd_int();
    p->out_offset = rd_int();
    rd_requant(&p->score);
    rd_requant(&p->av);
}

static void rd_attention(mcuf_attention_params *p)
{
    rd_struct("mcuf_attention_params");
    p->tokens = rd_int();
    p->dim = rd_int();
    p->heads = rd_int();
    rd_layernorm(&p->ln);
    p->qkv_rank = rd_int();
    rd_linear(&p->qkv_down);
    rd_linear(&p->q);
    rd_linear(&p->k);
    rd_linear(&p->v);
    rd_head(&p->head);
    rd_softmax(&p->softmax);
    rd_linear(&p->proj);
    rd_add(&p->residual);
    p->tile = rd_int();
}

static void rd_mlp(mcuf_mlp_params *p)
{
    rd_struct("mcuf_mlp_params");
    p->tokens = rd_int();
    p->dim = rd_int();
    p->hidden = rd_int();
    rd_layernorm(&p->ln);
    rd_lowrank(&p->fc1);
    p->gelu_table = rd_s8(NULL);
    rd_lowrank(&p->fc2);
    rd_add(&p->residual);
    p->tile = rd_int();
}

static void rd_patch_embed(mcuf_patch_embed_params *p)
{
    rd_struct("mcuf_patch_embed_params");
    p->image_h = rd_int();
    p->image_w = rd_int();
    p->channels = rd_int();
    p->patch = rd_int();
    p->dim = rd_int();
    rd_linear(&p->proj);
    p->token_bias = rd_s32(NULL);
    p->tile = rd_int();
}

static void rd_conv2d(mcuf_conv2d_params *p)
{
    rd_struct("mcuf_conv2d_params");
    p->in_h = rd_int();
    p->in_w = rd_int();
    p->in_channels = rd_int();
    p->stride = rd_int();
    rd_linear(&p->proj);
}

static void rd_pool_head(mcuf_pool_head_params *p)
{
    rd_struct("mcuf_pool_head_params");
    p->tokens = rd_int();
    p->dim = rd_int();
    p->classes = rd_int();
    rd_layernorm(&p->ln);
    p->pool_input_offset = rd_int();
    p->pool_output_offset = rd_int();
    rd_requant(&p->pool);
    rd_linear(&p->head);
}

static void rd_patch_embed_prefix(mcuf_patch_embed_prefix_params *p)
{
    rd_struct("mcuf_patch_embed_prefix_params");
    rd_patch_embed(&p->embed);
    p->prefix_tokens = rd_int();
    p->prefix = rd_s8(NULL);
}

static void rd_token_head(mcuf_token_head_params *p)
{
    rd_struct("mcuf_token_head_params");
    p->tokens = rd_int();
    p->dim = rd_int();
    p->classes = rd_int();
    p->readout = rd_int();
    rd_layernorm(&p->ln);
    rd_linear(&p->head);
}

static void rd_pool_norm_head(mcuf_pool_norm_head_params *p)
{
    rd_struct("mcuf_pool_norm_head_params");
    p->tokens = rd_int();
    p->first_token = rd_int();
    p->dim = rd_int();
    p->classes = rd_int();
    p->pool_input_offset = rd_int();
    p->pool_output_offset = rd_int();
    rd_requant(&p->pool);
    rd_layernorm(&p->ln);
    rd_linear(&p->head);
}

/* ---- output --------------------------------------------------------------------------------- */

static FILE *g_out;

static void wr_raw(const void *p, size_t n)
{
    if (n != 0 && fwrite(p, 1, n, g_out) != n) {
        die("write failed");
    }
}

static void wr_i32(int32_t v)
{
    wr_raw(&v, 4);
}

static void wr_header(int32_t status, int32_t aux, int32_t count)
{
    wr_i32(status);
    wr_i32(aux);
    wr_i32(count);
}

static void wr_array(char tag, const void *p, int32_t n, size_t elem)
{
    wr_raw(&tag, 1);
    wr_i32(n);
    wr_raw(p, (size_t)n * elem);
}

/* Scratch of exactly `size` bytes (malloc: 16-byte aligned), or a small block for size <= 0. */
static int8_t *scratch_of(int32_t size)
{
    return (int8_t *)xalloc(size > 0 ? (size_t)size : 16u);
}

/* ---- ops ------------------------------------------------------------------------------------ */

#include "kernel_harness_ops.h" /* enum OP_*: written by tests/kernel_harness.py from its Op */

static void op_fixedpoint(int32_t op)
{
    int32_t n;
    int32_t n2;
    int32_t n3;
    if (op == OP_ISQRT) {
        const uint64_t *v = (const uint64_t *)rd_array('q', 8, &n);
        uint32_t *out = (uint32_t *)xalloc((size_t)n * 4u);
        for (int32_t i = 0; i < n; i++) {
            out[i] = mcuf_isqrt_u64(v[i]);
        }
        wr_header(MCUF_OK, 0, 1);
        wr_array('u', out, n, 4);
        return;
    }
    const int32_t *a = rd_s32(&n);
    const int32_t *b = rd_s32(&n2);
    const int32_t *c = op == OP_REQUANTIZE ? rd_s32(&n3) : NULL;
    if (n2 != n || (op == OP_REQUANTIZE && n3 != n)) {
        die("fixed-point operands differ in length");
    }
    int32_t *out = (int32_t *)xalloc((size_t)n * 4u);
    for (int32_t i = 0; i < n; i++) {
        out[i] = op == OP_SRDHM ? mcuf_srdhm(a[i], b[i])
                 : op == OP_RDBPOT ? mcuf_rdbpot(a[i], b[i])
                                   : mcuf_requantize(a[i], b[i], c[i]);
    }
    wr_header(MCUF_OK, 0, 1);
    wr_array('i', out, n, 4);
}

/* Rows of a row kernel: input [rows * in_len], output [rows * out_len] (fresh, or the input). */
static void op_linear(int32_t op)
{
    const int s4w = op == OP_LINEAR_S4W || op == OP_LINEAR_ROWS_S4W;
    mcuf_linear_params p;
    rd_linear_fields(&p, s4w ? "mcuf_linear_s4w_params" : "mcuf_linear_params");
    const mcuf_linear_s4w_params q = {p.in_features, p.out_features, p.input_offset, p.output_offset, p.act_min,
                                      p.act_max,     p.weights,      p.bias,         p.multiplier,    p.shift};
    const int32_t rows = rd_int();
    const int32_t out_len = rd_int();
    int32_t n_in;
    const int8_t *in = rd_s8(&n_in);
    int8_t *out = (int8_t *)xalloc((size_t)rows * (size_t)out_len);
    memset(out, 0x5a, (size_t)rows * (size_t)out_len);
    mcuf_status st;
    if (op == OP_LINEAR) {
        st = mcuf_linear_s8(&p, in, out); /* rows == 1 */
    } else if (op == OP_LINEAR_ROWS) {
        st = mcuf_linear_rows_s8(&p, rows, in, out);
    } else if (op == OP_LINEAR_S4W) {
        st = mcuf_linear_s4w_s8(&q, in, out); /* rows == 1 */
    } else {
        st = mcuf_linear_rows_s4w_s8(&q, rows, in, out);
    }
    wr_header(st, 0, 1);
    wr_array('b', out, rows * out_len, 1);
}

static void op_lowrank(void)
{
    mcuf_lowrank_params p;
    rd_lowrank(&p);
    const int32_t rows = rd_int();
    const int32_t out_len = rd_int();
    int32_t n_in;
    const int8_t *in = rd_s8(&n_in);
    const int32_t in_len = rows > 0 ? n_in / rows : 0;
    const int32_t size = mcuf_lowrank_linear_s8_scratch_size(&p);
    int8_t *scratch = size > 0 ? scratch_of(size) : NULL;
    int8_t *out = (int8_t *)xalloc((size_t)rows * (size_t)out_len);
    mcuf_status st = MCUF_OK;
    for (int32_t r = 0; r < rows && st == MCUF_OK; r++) {
        st = mcuf_lowrank_linear_s8(&p, in + r * in_len, scratch, out + r * out_len);
    }
    wr_header(st, size, 1);
    wr_array('b', out, rows * out_len, 1);
}

/* LayerNorm / softmax rows, optionally in place. */
static void op_row_norm(int32_t op)
{
    mcuf_layernorm_params ln;
    mcuf_softmax_params sm;
    if (op == OP_LAYERNORM) {
        rd_layernorm(&ln);
    } else {
        rd_softmax(&sm);
    }
    const int32_t rows = rd_int();
    const int32_t row_len = rd_int();
    const int32_t in_place = rd_int();
    int32_t n;
    int8_t *in = rd_s8(&n);
    int8_t *out = in_place ? in : (int8_t *)xalloc((size_t)n);
    mcuf_status st = MCUF_OK;
    for (int32_t r = 0; r < rows && st == MCUF_OK; r++) {
        const int8_t *src = in + r * row_len;
        int8_t *dst = out + r * row_len;
        st = op == OP_LAYERNORM ? mcuf_layernorm_s8(&ln, src, dst) : mcuf_softmax_s8(&sm, src, dst);
    }
    wr_header(st, 0, 1);
    wr_array('b', out, n, 1);
}

/* mode 0: fresh output, 1: in place, 2: fresh output and NULL params. */
static void rd_lut(mcuf_lut_params *p)
{
    rd_struct("mcuf_lut_params");
    p->table = rd_s8(NULL);
}

static void op_lut(void)
{
    mcuf_lut_params p;
    rd_lut(&p);
    const int32_t mode = rd_int();
    int32_t n;
    int8_t *in = rd_s8(&n);
    int8_t *out = mode == 1 ? in : (int8_t *)xalloc((size_t)n);
    const mcuf_status st = mcuf_lut_s8(mode == 2 ? NULL : &p, n, in, out);
    wr_header(st, 0, 1);
    wr_array('b', out, n, 1);
}

static void op_add(void)
{
    mcuf_add_params p;
    rd_add(&p);
    const int32_t alias = rd_int(); /* 0: fresh output, 1: out = a, 2: out = b */
    int32_t n;
    int32_t n2;
    int8_t *a = rd_s8(&n);
    int8_t *b = rd_s8(&n2);
    if (n2 != n) {
        die("add operands differ in length");
    }
    int8_t *out = alias == 1 ? a : (alias == 2 ? b : (int8_t *)xalloc((size_t)n));
    const mcuf_status st = mcuf_add_s8(&p, n, a, b, out);
    wr_header(st, 0, 1);
    wr_array('b', out, n, 1);
}

static void op_head(int32_t op)
{
    mcuf_attn_head_params p;
    rd_head(&p);
    const int32_t stride = rd_int();
    const int32_t out_len = rd_int();
    const int8_t *row = rd_s8(NULL);   /* q or probs */
    const int8_t *mat = rd_s8(NULL);   /* k or v, [tokens][stride] */
    int8_t *out = (int8_t *)xalloc((size_t)out_len);
    const mcuf_status st = op == OP_SCORES ? mcuf_attn_scores_s8(&p, row, mat, stride, out)
                                           : mcuf_attn_weighted_sum_s8(&p, row, mat, stride, out);
    wr_header(st, 0, 1);
    wr_array('b', out, out_len, 1);
}

static void op_attention(void)
{
    mcuf_attention_params p;
    rd_attention(&p);
    const int32_t kv_len = rd_int();
    int32_t n;
    int8_t *x = rd_s8(&n);
    int8_t *k_buf = (int8_t *)xalloc((size_t)kv_len);
    int8_t *v_buf = (int8_t *)xalloc((size_t)kv_len);
    memset(k_buf, 0, (size_t)kv_len);
    memset(v_buf, 0, (size_t)kv_len);
    const int32_t size = mcuf_attention_rowwise_s8_scratch_size(&p);
    const mcuf_status st = mcuf_attention_rowwise_s8(&p, x, k_buf, v_buf, scratch_of(size));
    wr_header(st, size, 3);
    wr_array('b', x, n, 1);
    wr_array('b', k_buf, kv_len, 1);
    wr_array('b', v_buf, kv_len, 1);
}

/*
 * Per-head attention. mode 0 runs the kernel; 1 only reports the scratch size (no buffers, x may
 * be NULL); 2, 3, 4, 5 pass NULL for kh_buf, vh_buf, o_buf, scratch. kh/vh get exactly kh_len
 * bytes, o exactly o_len, scratch exactly the reported size. Outputs: x, kh, vh, o.
 */
static void op_attention_perhead(void)
{
    mcuf_attention_params p;
    rd_attention(&p);
    const int32_t mode = rd_int();
    const int32_t kh_len = rd_int();
    const int32_t o_len = rd_int();
    int32_t n;
    int8_t *x = rd_s8(&n);
    const int32_t size = mcuf_attention_perhead_s8_scratch_size(&p);
    if (mode == 1) {
        wr_header(MCUF_OK, size, 0);
        return;
    }
    int8_t *kh = (int8_t *)xalloc((size_t)kh_len);
    int8_t *vh = (int8_t *)xalloc((size_t)kh_len);
    int8_t *o = (int8_t *)xalloc((size_t)o_len);
    memset(kh, 0, (size_t)kh_len);
    memset(vh, 0, (size_t)kh_len);
    memset(o, 0, (size_t)o_len);
    const mcuf_status st = mcuf_attention_perhead_s8(&p, x, mode == 2 ? NULL : kh, mode == 3 ? NULL : vh,
                                                     mode == 4 ? NULL : o, mode == 5 ? NULL : scratch_of(size));
    wr_header(st, size, 4);
    wr_array('b', x, n, 1);
    wr_array('b', kh, kh_len, 1);
    wr_array('b', vh, kh_len, 1);
    wr_array('b', o, o_len, 1);
}

static void op_mlp(void)
{
    mcuf_mlp_params p;
    rd_mlp(&p);
    int32_t n;
    int8_t *x = rd_s8(&n);
    const int32_t size = mcuf_mlp_rowwise_s8_scratch_size(&p);
    const mcuf_status st = mcuf_mlp_rowwise_s8(&p, x, scratch_of(size));
    wr_header(st, size, 1);
    wr_array('b', x, n, 1);
}

typedef struct {
    const int8_t *image;
    int32_t image_len;
    int32_t stripe_bytes;
    int32_t fail_at; /* stripe index whose read fails, or -1 */
    int32_t *log;    /* stripes requested, in order */
    int32_t n_log;
    int32_t max_log;
} stripe_source;

static int32_t read_stripe(void *ctx, int32_t stripe, int8_t *dst, int32_t n_bytes)
{
    stripe_source *src = (stripe_source *)ctx;
    if (src->n_log < src->max_log) {
        src->log[src->n_log++] = stripe;
    }
    if (stripe == src->fail_at) {
        return -5;
    }
    if (n_bytes != src->stripe_bytes || stripe < 0 || (int64_t)(stripe + 1) * n_bytes > src->image_len) {
        die("stripe request out of range");
    }
    memcpy(dst, src->image + (size_t)stripe * (size_t)n_bytes, (size_t)n_bytes);
    return 0;
}

/* A kernel that reads its input through the stripe callback: after its params, the case holds fail_at,
 * the output length, the stripe (or row) bytes and the image; the outputs are the output buffer and the
 * stripes requested, in order (at most max_log). */
typedef struct {
    stripe_source src;
    int8_t *out;
    int32_t out_len;
} streamed_case;

static streamed_case rd_streamed_case(int32_t max_log)
{
    streamed_case c;
    const int32_t fail_at = rd_int();
    c.out_len = rd_int();
    const int32_t stripe_bytes = rd_int();
    int32_t n;
    const int8_t *image = rd_s8(&n);
    c.src = (stripe_source){image, n, stripe_bytes, fail_at, NULL, 0, max_log};
    c.src.log = (int32_t *)xalloc(sizeof(int32_t) * (size_t)max_log);
    c.out = (int8_t *)xalloc((size_t)c.out_len);
    memset(c.out, 0, (size_t)c.out_len);
    return c;
}

static void wr_streamed_case(mcuf_status st, int32_t scratch_size, const streamed_case *c)
{
    wr_header(st, scratch_size, 2);
    wr_array('b', c->out, c->out_len, 1);
    wr_array('i', c->src.log, c->src.n_log, 4);
}

static void op_patch_embed(void)
{
    mcuf_patch_embed_params p;
    rd_patch_embed(&p);
    streamed_case c = rd_streamed_case(1024);
    const int32_t size = mcuf_patch_embed_s8_scratch_size(&p);
    wr_streamed_case(mcuf_patch_embed_s8(&p, read_stripe, &c.src, scratch_of(size), c.out), size, &c);
}

/* conv2d: params, fail_at, output length, row bytes, image; outputs: the map, the rows requested. The
 * scratch has exactly the reported size (scratch_of), so a kernel that overruns it trips ASan. */
static void op_conv2d(void)
{
    mcuf_conv2d_params p;
    rd_conv2d(&p);
    streamed_case c = rd_streamed_case(4096);
    const int32_t size = mcuf_conv2d_3x3_s8_scratch_size(&p);
    wr_streamed_case(mcuf_conv2d_3x3_s8(&p, read_stripe, &c.src, scratch_of(size), c.out), size, &c);
}

static void op_pool_head(void)
{
    mcuf_pool_head_params p;
    rd_pool_head(&p);
    const int32_t logits_len = rd_int();
    const int32_t misalign = rd_int();
    int32_t n;
    const int8_t *x = rd_s8(&n);
    int8_t *logits = (int8_t *)xalloc((size_t)logits_len);
    memset(logits, 0, (size_t)logits_len);
    const int32_t size = mcuf_pool_head_s8_scratch_size(&p);
    /* Exactly `size` usable bytes, starting 1 byte past an aligned block when misaligned. */
    int8_t *scratch = scratch_of(size > 0 && misalign ? size + 1 : size) + (misalign ? 1 : 0);
    const mcuf_status st = mcuf_pool_head_s8(&p, x, scratch, logits);
    wr_header(st, size, 1);
    wr_array('b', logits, logits_len, 1);
}

static void op_patch_embed_prefix(void)
{
    mcuf_patch_embed_prefix_params p;
    rd_patch_embed_prefix(&p);
    const int32_t x_len = rd_int();
    const int32_t stripe_bytes = rd_int();
    int32_t n;
    const int8_t *image = rd_s8(&n);
    stripe_source src = {image, n, stripe_bytes, -1, NULL, 0, 1024};
    src.log = (int32_t *)xalloc(sizeof(int32_t) * 1024u);
    int8_t *x = (int8_t *)xalloc((size_t)x_len);
    memset(x, 0, (size_t)x_len);
    const int32_t size = mcuf_patch_embed_prefix_s8_scratch_size(&p);
    const mcuf_status st = mcuf_patch_embed_prefix_s8(&p, read_stripe, &src, scratch_of(size), x);
    wr_header(st, size, 1);
    wr_array('b', x, x_len, 1);
}

/* token_head (OP_TOKEN_HEAD) or pool_norm_head: x in, logits out; scratch of exactly the reported size */
static void op_class_head(int32_t op)
{
    mcuf_token_head_params tp;
    mcuf_pool_norm_head_params pp;
    if (op == OP_TOKEN_HEAD) {
        rd_token_head(&tp);
    } else {
        rd_pool_norm_head(&pp);
    }
    const int32_t logits_len = rd_int();
    int32_t n;
    const int8_t *x = rd_s8(&n);
    int8_t *logits = (int8_t *)xalloc((size_t)logits_len);
    memset(logits, 0, (size_t)logits_len);
    const int32_t size =
        op == OP_TOKEN_HEAD ? mcuf_token_head_s8_scratch_size(&tp) : mcuf_pool_norm_head_s8_scratch_size(&pp);
    int8_t *scratch = scratch_of(size);
    const mcuf_status st = op == OP_TOKEN_HEAD ? mcuf_token_head_s8(&tp, x, scratch, logits)
                                               : mcuf_pool_norm_head_s8(&pp, x, scratch, logits);
    wr_header(st, size, 1);
    wr_array('b', logits, logits_len, 1);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        die("usage: kernel_harness IN OUT");
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        die("cannot open input");
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        die("seek failed");
    }
    const long len = ftell(f);
    rewind(f);
    uint8_t *buf = (uint8_t *)malloc(len > 0 ? (size_t)len : 1u);
    if (buf == NULL || (len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len)) {
        die("cannot read input");
    }
    fclose(f);
    g_in = buf;
    g_in_len = (size_t)len;
    g_out = fopen(argv[2], "wb");
    if (g_out == NULL) {
        die("cannot open output");
    }
    while (g_pos < g_in_len) {
        const int32_t op = rd_int();
        switch (op) {
        case OP_SRDHM:
        case OP_RDBPOT:
        case OP_REQUANTIZE:
        case OP_ISQRT:
            op_fixedpoint(op);
            break;
        case OP_LINEAR:
        case OP_LINEAR_ROWS:
        case OP_LINEAR_S4W:
        case OP_LINEAR_ROWS_S4W:
            op_linear(op);
            break;
        case OP_LOWRANK:
            op_lowrank();
            break;
        case OP_LAYERNORM:
        case OP_SOFTMAX:
            op_row_norm(op);
            break;
        case OP_LUT:
            op_lut();
            break;
        case OP_ADD:
            op_add();
            break;
        case OP_SCORES:
        case OP_WSUM:
            op_head(op);
            break;
        case OP_ATTENTION:
            op_attention();
            break;
        case OP_MLP:
            op_mlp();
            break;
        case OP_PATCH_EMBED:
            op_patch_embed();
            break;
        case OP_POOL_HEAD:
            op_pool_head();
            break;
        case OP_CONV2D:
            op_conv2d();
            break;
        case OP_ATTENTION_PERHEAD:
            op_attention_perhead();
            break;
        case OP_PATCH_EMBED_PREFIX:
            op_patch_embed_prefix();
            break;
        case OP_TOKEN_HEAD:
        case OP_POOL_NORM_HEAD:
            op_class_head(op);
            break;
        default:
            die("unknown op");
        }
        free_all();
    }
    free(buf);
    if (fclose(g_out) != 0) {
        die("cannot close output");
    }
    return 0;
}

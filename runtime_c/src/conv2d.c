/*
 * 3x3 convolution (padding 1, stride 1 or 2) of an int8 HWC feature map, for the convolutional stem:
 * each output pixel is mcuf_linear_s8 of its im2col vector (ky, kx, c), padded taps holding the
 * input zero point. The input arrives row by row through a stripe reader (the model's input callback,
 * or mcuf_memory_reader over a feature map in the arena) into a rolling buffer of 3 input rows.
 */
#include <stddef.h>
#include <stdint.h>

#include "mcuf_internal.h"

/* Bytes of one input row and of one im2col vector; 0 when a dimension is out of range. */
static int conv_sizes(const mcuf_conv2d_params *p, int64_t *row, int64_t *vec)
{
    if (p->in_h < 1 || p->in_w < 1 || p->in_channels < 1) {
        return 0;
    }
    *row = (int64_t)p->in_w * p->in_channels;
    *vec = (int64_t)9 * p->in_channels;
    return *row <= (INT32_MAX - 3) / 3 && *vec <= MCUF_LINEAR_MAX_IN;
}

/* The parts of the scratch layouts (mcuf.h), in order. */
enum {
    PART_VEC,  /* one im2col vector */
    PART_ROWS, /* 3 input rows (a rolling buffer) */
    SCRATCH_PARTS
};

static void scratch_parts(int32_t row, int32_t vec, int32_t parts[SCRATCH_PARTS])
{
    parts[PART_VEC] = vec;
    parts[PART_ROWS] = 3 * row;
}

int32_t mcuf_conv2d_3x3_s8_scratch_size(const mcuf_conv2d_params *p)
{
    int64_t row;
    int64_t vec;
    if (p == NULL || !conv_sizes(p, &row, &vec)) {
        return -1;
    }
    int32_t parts[SCRATCH_PARTS];
    scratch_parts((int32_t)row, (int32_t)vec, parts);
    return mcufi_layout_size(parts, SCRATCH_PARTS);
}

static mcuf_status conv_check(const mcuf_conv2d_params *p, const int8_t *scratch, const int8_t *output)
{
    int64_t row;
    int64_t vec;
    if (p == NULL || scratch == NULL || output == NULL || !conv_sizes(p, &row, &vec)) {
        return MCUF_ERR_ARG;
    }
    if ((p->stride != 1 && p->stride != 2) || p->proj.in_features != vec || p->proj.bias == NULL) {
        return MCUF_ERR_ARG;
    }
    return mcufi_linear_check(&p->proj);
}

/* One output row from its 3 input rows (NULL: a padding row above or below the map). */
static void conv_row(const mcuf_conv2d_params *p, const int8_t *const rows[3], int8_t *vec, int8_t *out)
{
    const int32_t cin = p->in_channels;
    const int32_t stride = p->stride;
    const int32_t out_w = (p->in_w - 1) / stride + 1;
    const int8_t pad = (int8_t)(-p->proj.input_offset); /* the input zero point: adds 0 to the sum */
    for (int32_t ox = 0; ox < out_w; ox++) {
        int8_t *v = vec;
        for (int32_t ky = 0; ky < 3; ky++) {
            for (int32_t kx = 0; kx < 3; kx++) {
                const int32_t ix = ox * stride - 1 + kx;
                if (rows[ky] == NULL || ix < 0 || ix >= p->in_w) {
                    for (int32_t c = 0; c < cin; c++) {
                        v[c] = pad;
                    }
                } else {
                    const int8_t *src = rows[ky] + (int64_t)ix * cin;
                    for (int32_t c = 0; c < cin; c++) {
                        v[c] = src[c];
                    }
                }
                v += cin;
            }
        }
        mcufi_linear_row(&p->proj, vec, out);
        out += p->proj.out_features;
    }
}

mcuf_status mcuf_conv2d_3x3_s8(const mcuf_conv2d_params *p, mcuf_stripe_reader read, void *ctx, int8_t *scratch, int8_t *output)
{
    const mcuf_status st = conv_check(p, scratch, output);
    if (st != MCUF_OK) {
        return st;
    }
    if (read == NULL) {
        return MCUF_ERR_ARG;
    }
    const int32_t row_bytes = p->in_w * p->in_channels; /* conv_sizes: 3 rows fit int32 */
    int32_t parts[SCRATCH_PARTS];
    int8_t *at[SCRATCH_PARTS];
    scratch_parts(row_bytes, 9 * p->in_channels, parts);
    mcufi_layout_carve(scratch, parts, SCRATCH_PARTS, at);
    int8_t *const buf = at[PART_ROWS]; /* input row iy lives in slot iy % 3 */
    const int32_t out_h = (p->in_h - 1) / p->stride + 1;
    const int64_t out_row_bytes = (int64_t)((p->in_w - 1) / p->stride + 1) * p->proj.out_features;
    int32_t next = 0; /* the next input row to read: rows arrive once each, in order */
    for (int32_t oy = 0; oy < out_h; oy++) {
        const int32_t last = oy * p->stride + 1 < p->in_h ? oy * p->stride + 1 : p->in_h - 1;
        for (; next <= last; next++) {
            if (read(ctx, next, buf + (next % 3) * row_bytes, row_bytes) != 0) {
                return MCUF_ERR_INPUT;
            }
        }
        const int8_t *rows[3];
        for (int32_t ky = 0; ky < 3; ky++) {
            const int32_t iy = oy * p->stride - 1 + ky;
            rows[ky] = iy >= 0 && iy < p->in_h ? buf + (iy % 3) * row_bytes : NULL;
        }
        conv_row(p, rows, at[PART_VEC], output + oy * out_row_bytes);
    }
    return MCUF_OK;
}

int32_t mcuf_memory_reader(void *ctx, int32_t stripe, int8_t *dst, int32_t n_bytes)
{
    if (ctx == NULL || dst == NULL || stripe < 0 || n_bytes < 0) {
        return -1;
    }
    const int8_t *src = (const int8_t *)ctx + (int64_t)stripe * n_bytes;
    for (int32_t i = 0; i < n_bytes; i++) {
        dst[i] = src[i];
    }
    return 0;
}

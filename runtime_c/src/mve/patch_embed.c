/*
 * Decomposed patch embedding: the image arrives one stripe of `patch` rows at a time, so only
 * patch * image_w * channels bytes of it are ever resident.
 *
 * With Helium (MVE) on the Cortex-M55: replaces ../patch_embed.c with KERNELS=optimized on an M55
 * (the same function, checks, statuses and outputs). Two differences in form:
 *   - the token tile fills across stripes: ../patch_embed.c runs the projection on the tokens of
 *     one stripe at a time (a grid row of 2 tokens on an 8x8 image with patch 4 never makes a tile
 *     of 4: each token then goes through mcufi_linear_row alone); here the patch vectors are
 *     gathered in token order until `tile` of them wait (or the image ends), and then run
 *     together (mcufi_linear_tile, row r with its own token bias: the fused 4-token pass of
 *     mve/linear.c). Each token's output depends only on its vector and its bias row, so the
 *     values are the same; when a stripe cannot be read (MCUF_ERR_INPUT), the tokens still
 *     waiting are projected first, so every earlier stripe's tokens are written, as there;
 *   - a patch row is copied with one predicated VLDRB / VSTRB per 16 bytes, not byte by byte.
 */
#include <stddef.h>
#include <stdint.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

/* Stripe bytes and patch-vector bytes; 0 when a dimension is negative or a size is too large. */
static int patch_sizes(const mcuf_patch_embed_params *p, int64_t *stripe, int64_t *vec)
{
    if (p->image_h < 0 || p->image_w < 0 || p->channels < 0 || p->patch < 0) {
        return 0;
    }
    *stripe = (int64_t)p->patch * p->image_w * p->channels;
    *vec = (int64_t)p->patch * p->patch * p->channels;
    return *stripe <= INT32_MAX - 3 && *vec <= MCUF_LINEAR_MAX_IN;
}

/* The parts of the scratch layout (mcuf.h), in order: indices into the parts table. */
enum {
    PART_STRIPE, /* one stripe of the image */
    PART_VECS,   /* [tile][vec] patch vectors */
    PART_XBUF,   /* expanded tile inputs */
    SCRATCH_PARTS
};

/* For a tile in {1, 2, 4} and the sizes patch_sizes accepted: stripe <= INT32_MAX - 3, and with
 * vec <= MCUF_LINEAR_MAX_IN and tile <= 4 the vectors and the expanded inputs fit int32. */
static void scratch_parts(int32_t tile, int32_t stripe, int32_t vec, int32_t parts[SCRATCH_PARTS])
{
    parts[PART_STRIPE] = stripe;
    parts[PART_VECS] = tile * vec;
    parts[PART_XBUF] = 4 * mcufi_linear_tile_xbuf_words(vec, tile);
}

int32_t mcuf_patch_embed_s8_scratch_size(const mcuf_patch_embed_params *p)
{
    int64_t stripe;
    int64_t vec;
    if (p == NULL || !mcufi_linear_tile_ok(p->tile) || !patch_sizes(p, &stripe, &vec)) {
        return -1;
    }
    int32_t parts[SCRATCH_PARTS];
    scratch_parts(p->tile, (int32_t)stripe, (int32_t)vec, parts);
    return mcufi_layout_size(parts, SCRATCH_PARTS);
}

mcuf_status mcuf_patch_embed_s8(const mcuf_patch_embed_params *p, mcuf_stripe_reader read, void *ctx,
                                int8_t *scratch, int8_t *x)
{
    int64_t stripe_bytes;
    int64_t vec_bytes;
    if (p == NULL || read == NULL || scratch == NULL || x == NULL || p->token_bias == NULL) {
        return MCUF_ERR_ARG;
    }
    if (p->patch < 1 || p->channels < 1 || p->image_h < p->patch || p->image_w < p->patch ||
        p->image_h % p->patch != 0 || p->image_w % p->patch != 0 || !patch_sizes(p, &stripe_bytes, &vec_bytes)) {
        return MCUF_ERR_ARG;
    }
    if (p->dim < 1 || p->proj.bias != NULL || p->proj.in_features != vec_bytes || p->proj.out_features != p->dim) {
        return MCUF_ERR_ARG;
    }
    if (!mcufi_linear_tile_ok(p->tile) || (p->tile > 1 && ((uintptr_t)scratch & 3u) != 0u)) {
        return MCUF_ERR_ARG;
    }
    /* The projection with the token's folded bias (position embedding + linear bias). */
    mcuf_linear_params proj = p->proj;
    proj.bias = p->token_bias;
    if (mcufi_linear_check(&proj) != MCUF_OK) {
        return MCUF_ERR_ARG;
    }
    const int32_t patch = p->patch;
    const int32_t tile = p->tile;
    const int32_t vec_len = (int32_t)vec_bytes;
    const int32_t row_bytes = patch * p->channels; /* one patch row: <= vec_bytes */
    const int32_t grid_h = p->image_h / patch;
    const int32_t grid_w = p->image_w / patch;
    int32_t parts[SCRATCH_PARTS];
    int8_t *at[SCRATCH_PARTS];
    scratch_parts(tile, (int32_t)stripe_bytes, vec_len, parts);
    mcufi_layout_carve(scratch, parts, SCRATCH_PARTS, at);
    int8_t *stripe = at[PART_STRIPE];
    int8_t *vecs = at[PART_VECS]; /* [tile][vec_len] */
    int32_t *xbuf = (int32_t *)(void *)at[PART_XBUF];
    const int64_t row_stride = (int64_t)p->image_w * p->channels; /* <= stripe_bytes */

    int8_t *x_row = x;
    int32_t waiting = 0; /* patch vectors in vecs, not yet projected */
    for (int32_t s = 0; s < grid_h; s++) {
        if (read(ctx, s, stripe, (int32_t)stripe_bytes) != 0) {
            if (waiting > 0) { /* the earlier stripes' tokens are written, as in ../patch_embed.c */
                mcufi_linear_tile(&proj, waiting, tile, vecs, xbuf, p->dim, x_row);
            }
            return MCUF_ERR_INPUT;
        }
        for (int32_t g = 0; g < grid_w; g++) {
            /* vecs[waiting][(py * patch + px) * channels + c] = stripe[py][g * patch + px][c] */
            const int8_t *src = stripe + (int64_t)g * row_bytes;
            int8_t *dst = vecs + waiting * vec_len;
            for (int32_t py = 0; py < patch; py++) {
                for (int32_t i = 0; i < row_bytes; i += 16) {
                    const mve_pred16_t pr = vctp8q((uint32_t)(row_bytes - i));
                    vstrbq_p_s8(dst + i, vldrbq_z_s8(src + i, pr), pr);
                }
                src += row_stride;
                dst += row_bytes;
            }
            waiting++;
            if (waiting == tile || (s == grid_h - 1 && g == grid_w - 1)) {
                mcufi_linear_tile(&proj, waiting, tile, vecs, xbuf, p->dim, x_row); /* row r: its token bias */
                proj.bias += waiting * p->dim;
                x_row += waiting * p->dim;
                waiting = 0;
            }
        }
    }
    return MCUF_OK;
}

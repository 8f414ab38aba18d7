/*
 * Linear (TFLite FULLY_CONNECTED int8, per-channel): the public entry points and their parameter
 * checks with Helium (MVE) on the Cortex-M55. Replaces ../linear_api.c when the project builds
 * with KERNELS=optimized on an M55: the same entry points, the same checks, the same statuses.
 * Only the per-channel check differs in form: ../linear_api.c checks mcufi_requant_ok channel by
 * channel (about 9 instructions per channel, on every call: the fused blocks call
 * mcuf_linear_tile_s8 once per token tile, about 770 channels per tile and block on vit-96-rgb);
 * here 8 channels per step (channels_ok, about 2 per channel). The rows are computed by
 * mcufi_linear_row / mcufi_linear_tile (linear.c here).
 */
#include <stddef.h>
#include <stdint.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

/* mcufi_requant_ok(multiplier[o], shift[o]) for every o < n (n >= 1), 4 channels per step, the
 * last n % 4 lanes loaded as 0 (multiplier 0 and shift 0 are accepted, so they never fail).
 *   - multiplier m in {0} U [2^30, 2^31): with h = m >> 30 (arithmetic: 1 for m >= 2^30, 0 for
 *     [0, 2^30), -1 or -2 for negative m), h - 1 (wrapping) is 0 for m >= 2^30, 0xFFFFFFFF for
 *     [0, 2^30) and 0xFFFFFFFE or 0xFFFFFFFD for negative m, so min_u32(h - 1, (uint32_t)m) is 0
 *     exactly when m is accepted (m = 0: min(0xFFFFFFFF, 0); a negative m is at least 2^31
 *     unsigned); the lanes are ORed into one accumulator;
 *   - shift in [-31, 30]: the lanes' running minimum and maximum (both start at 0). */
static int channels_ok(const int32_t *multiplier, const int32_t *shift, int32_t n)
{
    uint32x4_t bad = vdupq_n_u32(0);
    int32x4_t smin = vdupq_n_s32(0);
    int32x4_t smax = vdupq_n_s32(0);
    int32_t o = 0;
    for (; o + 8 <= n; o += 8) { /* unpredicated (gcc rebuilt a per-step predicate with VMRS / VMSR) */
        for (int32_t k = 0; k < 8; k += 4) {
            const int32x4_t m = vld1q_s32(multiplier + o + k);
            const int32x4_t s = vld1q_s32(shift + o + k);
            const int32x4_t h = vsubq_n_s32(vshrq_n_s32(m, 30), 1);
            bad = vorrq_u32(bad, vminq_u32(vreinterpretq_u32_s32(h), vreinterpretq_u32_s32(m)));
            smin = vminq_s32(smin, s);
            smax = vmaxq_s32(smax, s);
        }
    }
    for (; o < n; o += 4) {
        const mve_pred16_t pr = vctp32q((uint32_t)(n - o));
        const int32x4_t m = vldrwq_z_s32(multiplier + o, pr);
        const int32x4_t s = vldrwq_z_s32(shift + o, pr);
        const int32x4_t h = vsubq_n_s32(vshrq_n_s32(m, 30), 1);
        bad = vorrq_u32(bad, vminq_u32(vreinterpretq_u32_s32(h), vreinterpretq_u32_s32(m)));
        smin = vminq_s32(smin, s);
        smax = vmaxq_s32(smax, s);
    }
    return vmaxvq_u32(0u, bad) == 0u && vminvq_s32(0, smin) >= -31 && vmaxvq_s32(0, smax) <= 30;
}

mcuf_status mcufi_linear_check(const mcuf_linear_params *p)
{
    if (p == NULL || p->weights == NULL || p->multiplier == NULL || p->shift == NULL) {
        return MCUF_ERR_ARG;
    }
    if (p->in_features < 1 || p->in_features > MCUF_LINEAR_MAX_IN || p->out_features < 1) {
        return MCUF_ERR_ARG;
    }
    if (!mcufi_in_offset_ok(p->input_offset) || !mcufi_out_offset_ok(p->output_offset)) {
        return MCUF_ERR_ARG;
    }
    if (p->act_min < -128 || p->act_max > 127 || p->act_min > p->act_max) {
        return MCUF_ERR_ARG;
    }
    if (p->weight_format != MCUF_WEIGHTS_S8 && !mcufi_linear_is_s4w(p)) { /* int4: MCUF_WITH_S4W only */
        return MCUF_ERR_ARG;
    }
    if (!channels_ok(p->multiplier, p->shift, p->out_features)) {
        return MCUF_ERR_ARG;
    }
    return MCUF_OK;
}

mcuf_status mcuf_linear_s8(const mcuf_linear_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_linear_check(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (input == NULL || output == NULL) {
        return MCUF_ERR_ARG;
    }
    mcufi_linear_row(p, input, output);
    return MCUF_OK;
}

mcuf_status mcuf_linear_rows_s8(const mcuf_linear_params *p, int32_t rows, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_linear_check(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (rows < 0 || (rows > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    for (int32_t r = 0; r < rows; r++) {
        mcufi_linear_row(p, input, output);
        input += p->in_features;
        output += p->out_features;
    }
    return MCUF_OK;
}

int32_t mcuf_linear_tile_s8_scratch_size(const mcuf_linear_params *p, int32_t tile)
{
    if (p == NULL || p->in_features < 0 || p->in_features > MCUF_LINEAR_MAX_IN || !mcufi_linear_tile_ok(tile)) {
        return -1;
    }
    return 4 * mcufi_linear_tile_xbuf_words(p->in_features, tile);
}

mcuf_status mcuf_linear_tile_s8(const mcuf_linear_params *p, int32_t rows, int32_t tile, const int8_t *input,
                                int8_t *scratch, int8_t *output)
{
    const mcuf_status st = mcufi_linear_check(p);
    if (st != MCUF_OK) {
        return st;
    }
    if (rows < 0 || !mcufi_linear_tile_ok(tile) || (rows > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    if (tile > 1 && (scratch == NULL || ((uintptr_t)scratch & 3u) != 0u)) {
        return MCUF_ERR_ARG;
    }
    mcufi_linear_tile(p, rows, tile, input, (int32_t *)(void *)scratch, 0, output);
    return MCUF_OK;
}

/*
 * Integer softmax over one row (mcuf.h) with Helium (MVE) on the Cortex-M55. Replaces ../softmax.c
 * (and ../dsp/softmax.c) with KERNELS=optimized on an M55: the same function, the same checks,
 * bit-exact outputs (the portable arithmetic is unsigned 32-bit, wrapping for tables outside the
 * documented range; so is this one).
 *   - maximum: VMAXV over 16 values per step (the tail predicated);
 *   - sum of table[max - x]: 4 values per step, a widening load, VSUB for the index and a gather
 *     load of the table entries (VLDRW.U32 with offsets shifted by 2), VADDVA (wrapping);
 *   - q = min((e * 256 + half) / sum, 255): the division by the row's invariant sum as a multiply
 *     (Granlund and Montgomery 1994, figure 4.1, exact for every 32-bit numerator and divisor
 *     d >= 1): l = ceil(log2 d), m = floor(2^32 (2^l - d) / d) + 1, t = (m n) >> 32 (VMULH.U32),
 *     n / d = (t + ((n - t) >> min(l, 1))) >> max(l - 1, 0); m once per row (one 64-bit division).
 */
#include <stddef.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

/* (e * 256 + half) / sum on 4 lanes, wrapping as the portable, with the row's m, sh1, sh2. */
static inline uint32x4_t divide(uint32x4_t e, uint32_t half, uint32x4_t m, int32_t sh1, int32_t sh2)
{
    const uint32x4_t num = vaddq_n_u32(vshlq_n_u32(e, 8), half);
    const uint32x4_t t = vmulhq_u32(num, m);
    return vshlq_r_u32(vaddq_u32(t, vshlq_r_u32(vsubq_u32(num, t), sh1)), sh2);
}

/* The output pass for 2 <= sum < 2^31 (every row of a table in the documented range), the same
 * integers as divide(): l = ceil(log2 sum) in [1, 31], m = floor(2^32 (2^l - sum) / sum) + 1 by
 * mve_udiv_shifted (2^l - sum < sum: 32-bit UDIVs, no 64-bit division), and
 *   (t + ((n - t) >> 1)) >> (l - 1) = floor((n + t) / 2) >> (l - 1)   (t = (m n) >> 32 <= n)
 * with VHADD.U32 (the halving add, no overflow); num = e * 256 + half in one VMLAS. Per 4 values:
 * the widening load, VSUB, the gather, VMLAS, VMULH, VHADD, VSHL, VMIN, VSUB, the narrowing store. */
static void outputs_short(const int8_t *input, int8_t *output, int32_t n, const uint32_t *table, int32x4_t vmax,
                          uint32_t sum, uint32_t half)
{
    const int32_t l = 32 - (int32_t)__builtin_clz(sum - 1u);
    const uint32x4_t vm = vdupq_n_u32(mve_udiv_shifted((UINT32_C(1) << l) - sum, 32, sum) + 1u);
    const uint32x4_t v256 = vdupq_n_u32(256u);
    const uint32x4_t v255 = vdupq_n_u32(255u);
    const int32_t sh = 1 - l; /* right shift by l - 1 as a VSHL amount */
    const int32_t full = n & ~3;
    int32_t i = 0;
    for (; i < full; i += 4) {
        const uint32x4_t idx = vreinterpretq_u32_s32(vsubq_s32(vmax, vldrbq_s32(input + i)));
        const uint32x4_t num = vmlasq_n_u32(vldrwq_gather_shifted_offset_u32(table, idx), v256, half);
        const uint32x4_t q = vshlq_r_u32(vhaddq_u32(num, vmulhq_u32(num, vm)), sh);
        /* in place: the four inputs are already read; the low byte of min(q, 255) - 128 */
        vstrbq_u32((uint8_t *)output + i, vsubq_n_u32(vminq_u32(q, v255), 128u));
    }
    if (full < n) {
        const mve_pred16_t pr = vctp32q((uint32_t)(n - full));
        const uint32x4_t idx = vreinterpretq_u32_s32(vsubq_s32(vmax, vldrbq_z_s32(input + full, pr)));
        const uint32x4_t num = vmlasq_n_u32(vldrwq_gather_shifted_offset_z_u32(table, idx, pr), v256, half);
        const uint32x4_t q = vshlq_r_u32(vhaddq_u32(num, vmulhq_u32(num, vm)), sh);
        vstrbq_p_u32((uint8_t *)output + full, vsubq_n_u32(vminq_u32(q, v255), 128u), pr);
    }
}

mcuf_status mcuf_softmax_s8(const mcuf_softmax_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_softmax_check(p, input, output);
    if (st != MCUF_OK) {
        return st;
    }
    const int32_t n = p->length;
    const uint32_t *table = (const uint32_t *)(const void *)p->exp_table; /* index max - x in [0, 255] */

    int8_t mx = input[0];
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        mx = vmaxvq_s8(mx, vldrbq_s8(input + i));
    }
    if (i < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        mx = vmaxvq_p_s8(mx, vldrbq_z_s8(input + i, pr), pr);
    }
    const int32x4_t vmax = vdupq_n_s32(mx);
    const int32_t full = n & ~3; /* groups of 4 unpredicated, then one predicated tail */
    /* With entries in [0, 65536]: sum <= 32767 * 65536 < 2^31. Other tables wrap (unsigned). */
    uint32_t sum = 0;
    for (i = 0; i < full; i += 4) {
        const uint32x4_t idx = vreinterpretq_u32_s32(vsubq_s32(vmax, vldrbq_s32(input + i)));
        sum = vaddvaq_u32(sum, vldrwq_gather_shifted_offset_u32(table, idx));
    }
    if (full < n) {
        const mve_pred16_t pr = vctp32q((uint32_t)(n - full));
        const uint32x4_t idx = vreinterpretq_u32_s32(vsubq_s32(vmax, vldrbq_z_s32(input + full, pr)));
        sum = vaddvaq_p_u32(sum, vldrwq_gather_shifted_offset_z_u32(table, idx, pr), pr);
    }
    if (sum == 0u) {
        return MCUF_ERR_ARG; /* only reachable with a table outside the documented range */
    }
    const uint32_t half = sum / 2u;
    if (sum >= 2u && sum < (UINT32_C(1) << 31)) {
        outputs_short(input, output, n, table, vmax, sum, half);
        return MCUF_OK;
    }
    /* l = ceil(log2 sum) in [0, 32] */
    const int32_t l = sum == 1u ? 0 : 32 - (int32_t)__builtin_clz(sum - 1u);
    const uint32_t m = (uint32_t)((((UINT64_C(1) << l) - sum) << 32) / sum) + 1u;
    const int32_t sh1 = l < 1 ? -l : -1; /* right shifts as negative VSHL amounts */
    const int32_t sh2 = l > 1 ? 1 - l : 0;
    const uint32x4_t vm = vdupq_n_u32(m);
    const uint32x4_t v255 = vdupq_n_u32(255u);
    for (i = 0; i < full; i += 4) {
        const uint32x4_t idx = vreinterpretq_u32_s32(vsubq_s32(vmax, vldrbq_s32(input + i)));
        const uint32x4_t q = divide(vldrwq_gather_shifted_offset_u32(table, idx), half, vm, sh1, sh2);
        /* in place: the four inputs are already read; the low byte of min(q, 255) - 128 */
        vstrbq_u32((uint8_t *)output + i, vsubq_n_u32(vminq_u32(q, v255), 128u));
    }
    if (full < n) {
        const mve_pred16_t pr = vctp32q((uint32_t)(n - full));
        const uint32x4_t idx = vreinterpretq_u32_s32(vsubq_s32(vmax, vldrbq_z_s32(input + full, pr)));
        const uint32x4_t q = divide(vldrwq_gather_shifted_offset_z_u32(table, idx, pr), half, vm, sh1, sh2);
        vstrbq_p_u32((uint8_t *)output + full, vsubq_n_u32(vminq_u32(q, v255), 128u), pr);
    }
    return MCUF_OK;
}

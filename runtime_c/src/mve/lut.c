/*
 * Elementwise table lookup (GELU and any int8 -> int8 function) with Helium (MVE) on the
 * Cortex-M55. Replaces ../lut.c with KERNELS=optimized on an M55 (the DSP build keeps the portable
 * file: it has no DSP twin): the same functions, the same checks, the same bytes.
 *
 * 16 values per step: the index in + 128 is the input byte with its top bit flipped (VEOR), then
 * one gather load of 16 table bytes (VLDRB.U8 with 8-bit offsets, [0, 255]) and one store: about
 * 6 instructions per 16 values where the portable loop spends 5 per value. The last n % 16 values
 * go through the same instructions predicated (VCTP.8). In place (input == output) is fine: each
 * step reads its 16 inputs before it writes them.
 */
#include <stddef.h>

#include "mcuf_internal.h"
#include "mcuf_mve.h"

mcuf_status mcufi_lut_s8(const int8_t *table, int32_t n, const int8_t *input, int8_t *output)
{
    if (table == NULL || n < 0 || (n > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    const uint8_t *t = (const uint8_t *)(const void *)table;
    const uint8_t *in = (const uint8_t *)(const void *)input;
    uint8_t *out = (uint8_t *)(void *)output;
    const uint8x16_t flip = vdupq_n_u8(0x80u);
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vstrbq_u8(out + i, vldrbq_gather_offset_u8(t, veorq_u8(vldrbq_u8(in + i), flip)));
    }
    if (i < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        const uint8x16_t idx = veorq_u8(vldrbq_z_u8(in + i, pr), flip);
        vstrbq_p_u8(out + i, vldrbq_gather_offset_z_u8(t, idx, pr), pr);
    }
    return MCUF_OK;
}

mcuf_status mcuf_lut_s8(const mcuf_lut_params *p, int32_t n, const int8_t *input, int8_t *output)
{
    if (p == NULL) {
        return MCUF_ERR_ARG;
    }
    return mcufi_lut_s8(p->table, n, input, output);
}

/*
 * Elementwise table lookup (GELU and any int8 -> int8 function), shared by both kernel variants
 * (no DSP twin).
 */
#include <stddef.h>

#include "mcuf_internal.h"

mcuf_status mcufi_lut_s8(const int8_t *table, int32_t n, const int8_t *input, int8_t *output)
{
    if (table == NULL || n < 0 || (n > 0 && (input == NULL || output == NULL))) {
        return MCUF_ERR_ARG;
    }
    const int8_t *centre = table + 128; /* indexed by the int8 value itself: table[in + 128] */
    const int8_t *end = input + n;
    while (input != end) { /* pointer form: 5 instructions per value on Cortex-M instead of 9 */
        *output++ = centre[*input++]; /* in place: the input value already read */
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

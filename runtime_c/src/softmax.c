/*
 * Integer softmax over one row: exp(-s_in * (max - x)) from a 256-entry table, output scale 1/256
 * and zero point -128. See mcuf.h for the exact arithmetic.
 */
#include <stddef.h>

#include "mcuf_internal.h"

mcuf_status mcuf_softmax_s8(const mcuf_softmax_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_softmax_check(p, input, output);
    if (st != MCUF_OK) {
        return st;
    }
    const int32_t n = p->length;
    const int32_t *table = p->exp_table;

    int32_t max = input[0];
    for (int32_t i = 1; i < n; i++) {
        max = input[i] > max ? input[i] : max;
    }
    /* With entries in [0, 65536]: sum <= 32767 * 65536 < 2^31. Other tables wrap (unsigned). */
    uint32_t sum = 0;
    for (int32_t i = 0; i < n; i++) {
        sum += (uint32_t)table[max - input[i]]; /* index in [0, 255] */
    }
    if (sum == 0u) {
        return MCUF_ERR_ARG; /* only reachable with a table outside the documented range */
    }
    const uint32_t half = sum / 2u;
    for (int32_t i = 0; i < n; i++) {
        /* e * 256 <= 2^24, + half < 2^31. */
        uint32_t q = ((uint32_t)table[max - input[i]] * 256u + half) / sum;
        q = q > 255u ? 255u : q;
        output[i] = (int8_t)((int32_t)q - 128); /* in place: input[i] already read */
    }
    return MCUF_OK;
}

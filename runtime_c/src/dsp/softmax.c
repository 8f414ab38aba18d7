/*
 * Integer softmax over one row (mcuf.h) for cores with the DSP extension (Cortex-M4, M7, M33).
 * Replaces ../softmax.c when the project builds with KERNELS=optimized: the same function, the same
 * checks, bit-exact outputs. The maximum takes 4 values per step (SSUB8 sets the GE flags of the
 * four byte lanes, SEL keeps the larger bytes); the sum and the output pass are the portable
 * arithmetic with the table index and the clamp in fewer instructions (USAT).
 */
#include <stddef.h>

#include "mcuf_dsp.h"
#include "mcuf_internal.h"

/* The largest of n int8 values (n >= 1). */
static int32_t row_max(const int8_t *x, int32_t n)
{
    int32_t i = 0;
    int32_t m = x[0];
    if (n >= 4) {
        int32_t m4 = load_s8x4(x); /* four running byte maxima */
        for (i = 4; i + 4 <= n; i += 4) {
            const int32_t v = load_s8x4(x + i);
            int32_t d;
            /* SSUB8 sets GE[k] = (v.byte[k] >= m4.byte[k]), signed; SEL takes those bytes of v */
            __asm__("ssub8 %0, %2, %1\n\tsel %1, %2, %1" : "=&r"(d), "+r"(m4) : "r"(v) : "cc");
        }
        for (int32_t k = 0; k < 4; k++) {
            const int32_t b = (int8_t)(m4 >> (8 * k));
            m = b > m ? b : m;
        }
    }
    for (; i < n; i++) {
        m = x[i] > m ? x[i] : m;
    }
    return m;
}

mcuf_status mcuf_softmax_s8(const mcuf_softmax_params *p, const int8_t *input, int8_t *output)
{
    const mcuf_status st = mcufi_softmax_check(p, input, output);
    if (st != MCUF_OK) {
        return st;
    }
    const int32_t n = p->length;
    const int32_t max = row_max(input, n);
    const uint32_t *table = (const uint32_t *)(const void *)p->exp_table; /* index max - x in [0, 255] */
    /* With entries in [0, 65536]: sum <= 32767 * 65536 < 2^31. Other tables wrap (unsigned). */
    uint32_t sum = 0;
    const int8_t *x = input;
    const int8_t *end = input + n;
    while (x != end) {
        sum += table[max - *x++];
    }
    if (sum == 0u) {
        return MCUF_ERR_ARG; /* only reachable with a table outside the documented range */
    }
    const uint32_t half = sum / 2u;
    x = input;
    int8_t *out = output;
    while (x != end) {
        /* e * 256 <= 2^24, + half < 2^31; USAT 8 of the quotient (< 2^31) is min(q, 255). */
        const uint32_t q = (table[max - *x++] * 256u + half) / sum;
        *out++ = (int8_t)((int32_t)__usat((int32_t)q, 8) - 128); /* in place: input already read */
    }
    return MCUF_OK;
}

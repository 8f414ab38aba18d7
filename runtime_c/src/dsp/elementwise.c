/*
 * TFLite ADD int8 for cores with the DSP extension (Cortex-M4, M7, M33). Replaces ../elementwise.c
 * when the project builds with KERNELS=optimized: the same function, the same checks
 * (mcufi_add_check), bit-exact outputs. The residual adds' parameters (right shifts only, the
 * whole int8 range) run an assembly loop of SMMLAR roundings (add_right_shifts, 23 instructions per
 * element); other parameters the general loop, the three requantizations with their per-call
 * constants hoisted out of the loop (requant_k, mcuf_dsp.h).
 */
#include <stddef.h>

#include "mcuf_dsp.h"
#include "mcuf_internal.h"

/* The common parameters (right shifts of 1..31, or an input multiplier of exactly 0.5: see
 * add_input_make; left_shift <= 21, TFLite's is 20), with bounds that make two steps exact in fewer
 * instructions:
 *   - |x| = |(v + offset) << left_shift| <= 255 * 2^21 < 2^29, and each requantized input
 *     |s| <= |x| (multiplier < 2^31, rdbpot shrinks), so |s1 + s2| < 2^30: the sum cannot
 *     saturate, and 2x fits int32 for x = the inputs and the sum;
 *   - mul_round31(x, m) = floor((x*m + 2^30) / 2^31) = floor((2x*m + 2^31) / 2^32) = SMMULR(2x, m);
 *   - rdbpot(y, r) (round half away from zero) = (y + 2^(r-1) - [y < 0]) >> r for r >= 1 (|y| < 2^30
 *     and 2^(r-1) <= 2^30: nothing wraps).
 */
#define ADD_FAST_MAX_SHIFT 21

/* One input's constants in add_right_shifts: s = rdbpot(SMMULR(v * scale + offset * scale, m), right)
 * with half = 2^(right - 1), v the int8 input. */
typedef struct {
    int32_t scale, m, right, half;
} add_input_k;

/* 1 when the input's requantization has a fast form, with its constants in *k:
 *   - shift in [-31, -1], left_shift <= 21: scale = 2^(left_shift + 1) (2x), the multiplier as is;
 *   - multiplier 2^30, shift 0 (TFLite's 0.5 for the input with the larger scale), 1 <= left_shift
 *     <= 20: x = v * 2^left_shift is even, so the exact result floor((x + 1) / 2) = x / 2; with
 *     scale = 2^(left_shift + 2), SMMULR(4x, 2^30) = floor(x + 1/2) = x (|4x| < 2^31), and
 *     rdbpot(x, 1) = x / 2. */
static int add_input_make(const mcuf_requant *q, int32_t left_shift, add_input_k *k)
{
    if (q->shift <= -1 && left_shift <= ADD_FAST_MAX_SHIFT) {
        k->scale = INT32_C(1) << (left_shift + 1);
        k->m = q->multiplier;
        k->right = -q->shift;
        k->half = INT32_C(1) << (k->right - 1);
        return 1;
    }
    if (q->shift == 0 && q->multiplier == (INT32_C(1) << 30) && left_shift >= 1 && left_shift <= 20) {
        k->scale = INT32_C(1) << (left_shift + 2);
        k->m = INT32_C(1) << 30;
        k->right = 1;
        k->half = 1;
        return 1;
    }
    return 0;
}

/* The element loop in assembly, for the whole int8 output range and an output shift in [-22, -1]
 * (the usual residual add). With SMMLAR (a + SMMULR(x, m) in one instruction)
 * rdbpot(SMMULR(x, m), r) = (SMMLAR(x, m, h) - [x < 0]) >> r, since
 * m >= 0 gives sign(SMMULR(x, m)) = sign(x) except SMMULR(x, m) = 0 for some x < 0, where both forms
 * give (h - 1) >> r = h >> r = 0; the output offset is added before the last shift (hf = h +
 * offset * 2^r: |SMMULR(2s, m)| < 2^30, h <= 2^21 and |offset| * 2^22 <= 2^29, nothing wraps) and
 * SSAT 8 clamps. The 13 constants are reloaded per element (an LDM for each input's set, LDRD and
 * LDR for the output's) as the registers hold the pointers, the index and the temporaries: 23
 * instructions per element. k: {scale1, off1, m1, h1, r1, scale2, off2, m2, h2, r2, mo, hf, ro}. */
static __attribute__((noinline)) void add_loop_asm(const int32_t *k, int32_t n, const int8_t *a, const int8_t *b,
                                                   int8_t *output)
{
    const int32_t *k2 = k + 5; /* LDMDB from here: the first input's set, LDM: the second's */
    int32_t i = -n;
    a += n;
    b += n;
    output += n;
    /* r7 (the Thumb frame pointer at -O0) and r9 (the platform register of some ABIs) stay free. */
    __asm__ volatile("1:\n\t"
                     "ldmdb  %[k2], {r4, r5, r6, r8, r10}\n\t"
                     "ldrsb  r11, [%[a], %[i]]\n\t"
                     "mla    r12, r11, r4, r5\n\t"
                     "smmlar r11, r12, r6, r8\n\t"
                     "sub    r11, r11, r12, lsr #31\n\t"
                     "asr    lr, r11, r10\n\t"
                     "ldm    %[k2], {r4, r5, r6, r8, r10}\n\t"
                     "ldrsb  r11, [%[b], %[i]]\n\t"
                     "mla    r12, r11, r4, r5\n\t"
                     "smmlar r11, r12, r6, r8\n\t"
                     "sub    r11, r11, r12, lsr #31\n\t"
                     "asr    r11, r11, r10\n\t"
                     "add    r12, lr, r11\n\t"
                     "ldrd   r4, r5, [%[k2], #20]\n\t"
                     "ldr    r6, [%[k2], #28]\n\t"
                     "lsl    r11, r12, #1\n\t"
                     "smmlar r11, r11, r4, r5\n\t"
                     "sub    r11, r11, r12, lsr #31\n\t"
                     "asr    r11, r11, r6\n\t"
                     "ssat   r11, #8, r11\n\t"
                     "strb   r11, [%[o], %[i]]\n\t"
                     "adds   %[i], %[i], #1\n\t"
                     "bne    1b\n\t"
                     : [i] "+r"(i)
                     : [k2] "r"(k2), [a] "r"(a), [b] "r"(b), [o] "r"(output)
                     : "r4", "r5", "r6", "r8", "r10", "r11", "r12", "lr", "cc", "memory");
}

/* For parameters whose inputs both have a fast form (add_input_make), an output shift in [-22, -1]
 * and the whole int8 range as the activation (the residual adds); returns 0 (nothing written)
 * otherwise: then the general loop runs. */
static int add_right_shifts(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *output)
{
    add_input_k k1;
    add_input_k k2;
    const int32_t ro = -p->output.shift;
    if (!add_input_make(&p->input1, p->left_shift, &k1) || !add_input_make(&p->input2, p->left_shift, &k2) ||
        ro < 1 || ro > 22 || p->left_shift > ADD_FAST_MAX_SHIFT || p->act_min != -128 || p->act_max != 127) {
        return 0;
    }
    if (n > 0) {
        const int32_t hf = (INT32_C(1) << (ro - 1)) + (int32_t)((uint32_t)p->output_offset << ro);
        const int32_t k[13] = {k1.scale, p->input1_offset * k1.scale, k1.m, k1.half, k1.right,
                               k2.scale, p->input2_offset * k2.scale, k2.m, k2.half, k2.right,
                               p->output.multiplier, hf, ro};
        add_loop_asm(k, n, a, b, output);
    }
    return 1;
}

mcuf_status mcuf_add_s8(const mcuf_add_params *p, int32_t n, const int8_t *a, const int8_t *b, int8_t *output)
{
    const mcuf_status st = mcufi_add_check(p, n, a, b, output);
    if (st != MCUF_OK) {
        return st;
    }
    const requant_k q1 = requant_make(&p->input1);
    const requant_k q2 = requant_make(&p->input2);
    const requant_k qo = requant_make(&p->output);
    if (add_right_shifts(p, n, a, b, output)) {
        return MCUF_OK;
    }
    const int32_t scale = INT32_C(1) << p->left_shift;
    for (int32_t i = 0; i < n; i++) {
        /* |a + offset| <= 255 and left_shift <= 23: the shifted values fit int32. */
        const int32_t s1 = requant_apply(&q1, ((int32_t)a[i] + p->input1_offset) * scale);
        const int32_t s2 = requant_apply(&q2, ((int32_t)b[i] + p->input2_offset) * scale);
        /* __qadd: the portable int64 sum saturated to int32. */
        const int32_t r = requant_apply(&qo, __qadd(s1, s2));
        output[i] = out_s8_act(r, p->output_offset, p->act_min, p->act_max); /* out may alias a or b: both read */
    }
    return MCUF_OK;
}

/*
 * Shared helpers of the Helium (M-profile vector extension, MVE) kernels in runtime/src/mve (Cortex-M55).
 * Private: included by the mve/ twins only, never by a portable file. The MVE kernels also use
 * mcuf_dsp.h's scalar requantization (the M55 has the DSP extension).
 *
 * Integer MVE only (__ARM_FEATURE_MVE bit 0): the build uses -mcpu=cortex-m55 -mfloat-abi=softfp
 * (the soft-float calling convention; MVE needs the FP/MVE register file, which -mfloat-abi=soft
 * switches off). The start-up code enables CP10/CP11 (CPACR) before main whenever __ARM_FP is
 * defined, which it is for this build: no MVE instruction runs before that.
 */
#ifndef MCUF_MVE_H
#define MCUF_MVE_H

#if !defined(__ARM_FEATURE_MVE) || (__ARM_FEATURE_MVE & 1) == 0
#error "the runtime/src/mve kernels need Helium (Cortex-M55, -mfloat-abi=softfp or hard): build with KERNELS=dsp or portable"
#endif

#include <arm_mve.h>
#include <stdbool.h>
#include <stdint.h>

#include "mcuf_dsp.h"

/* Wrapping int32 arithmetic (the identities below hold modulo 2^32, and every true result is in
 * int32 range, so the wrapped result is the true one; signed overflow would be undefined in C). */
static inline int32_t wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t wrap_mul(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a * (uint32_t)b);
}

/* requantize(x, m, s) of mcuf_dsp.h on 4 lanes, for checked parameters (m in {0} U [2^30, 2^31),
 * s in [-31, 30]), the same integers:
 *   - left shift: VQSHL (saturating), the scalar sat_shl;
 *   - mul_round31: VQRDMULH = floor((2 x m + 2^31) / 2^32) = floor((x m + 2^30) / 2^31); m >= 0
 *     rules out its one saturating case;
 *   - rdbpot (round half away from zero): gemmlowp's vector form, minus 1 on negative lanes when
 *     right > 0 (saturating; only INT32_MIN, where the result is the same), then VRSHL (round half
 *     up) by -right, computed without overflow. */
static inline int32x4_t requantize_x4(int32x4_t x, int32_t m, int32_t s)
{
    const int32_t left = s > 0 ? s : 0; /* a saturating shift by 0 is the identity */
    const int32_t right = s > 0 ? 0 : -s;
    x = vqrdmulhq_n_s32(vqshlq_r_s32(x, left), m);
    const int32x4_t fixup = vshrq_n_s32(vandq_s32(x, vdupq_n_s32(-right)), 31);
    return vrshlq_n_s32(vqaddq_s32(x, fixup), -right);
}

/* requantize_x4 with a multiplier and a shift per lane (per-channel parameters, each checked):
 * left = max(s, 0) and negr = min(s, 0) = -right, computed once per group of 4 channels. */
static inline int32x4_t requantize_x4v(int32x4_t x, int32x4_t m, int32x4_t left, int32x4_t negr)
{
    x = vqrdmulhq_s32(vqshlq_s32(x, left), m);
    const int32x4_t fixup = vshrq_n_s32(vandq_s32(x, negr), 31);
    return vrshlq_s32(vqaddq_s32(x, fixup), negr);
}

/* requantize_x4 for a right shift (s <= -1), 4 instead of 6 instructions: no left shift (VQSHL by
 * 0 is the identity), and the fixup is the sign (-1 on negative lanes: VAND with -right keeps just
 * the sign bit when right > 0); a plain VADD for the saturating one, since VQRDMULH by
 * m <= 2^31 - 1 never returns INT32_MIN (its least value is -2^31 + 1). The same integers. */
static inline int32x4_t requantize_x4_r(int32x4_t x, int32_t m, int32_t s)
{
    x = vqrdmulhq_n_s32(x, m);
    return vrshlq_n_s32(vaddq_s32(x, vshrq_n_s32(x, 31)), s);
}

/* requantize_x4v for lanes whose shifts are all <= -1 (negr = the shifts): as requantize_x4_r. */
static inline int32x4_t requantize_x4v_r(int32x4_t x, int32x4_t m, int32x4_t negr)
{
    x = vqrdmulhq_s32(x, m);
    return vrshlq_s32(vaddq_s32(x, vshrq_n_s32(x, 31)), negr);
}

/* requantize_x4_r when `right` (a constant after inlining: the caller's loop is written twice,
 * for s <= -1 and for any s), else requantize_x4. */
static inline __attribute__((always_inline)) int32x4_t requantize_x4_any(int32x4_t x, int32_t m, int32_t s, bool right)
{
    return right ? requantize_x4_r(x, m, s) : requantize_x4(x, m, s);
}

/* clamp(r + offset, lo, hi) on 4 lanes (out_s8_act; the saturating add keeps the order). */
static inline int32x4_t out_s8_x4(int32x4_t r, int32_t offset, int32_t lo, int32_t hi)
{
    return vminq_s32(vmaxq_s32(vqaddq_n_s32(r, offset), vdupq_n_s32(lo)), vdupq_n_s32(hi));
}

/* floor(r * 2^bits / d) for 0 <= r < d < 2^31 and a quotient below 2^32, by long division with
 * 32-bit UDIVs: per step as many quotient bits as the remainder's leading zeros allow (at least
 * one, since r < d < 2^31; a few steps where a 64-bit division (__aeabi_uldivmod) costs about a
 * hundred instructions). Every intermediate quotient is the final one shifted right, so below 2^32. */
static inline uint32_t mve_udiv_shifted(uint32_t r, int32_t bits, uint32_t d)
{
    uint32_t q = 0u;
    while (bits > 0) {
        if (r == 0u) {
            return q << bits; /* the rest of the quotient is zeros */
        }
        int32_t k = __builtin_clz(r);
        if (k > bits) {
            k = bits;
        }
        r <<= k;
        bits -= k;
        const uint32_t digit = r / d;
        q = (q << k) + digit;
        r -= digit * d;
    }
    return q;
}

/* Four int8 rows x0 .. x3 against one int8 row w of n >= 0 values, 16 lanes per step in a
 * tail-predicated loop (WLSTP.8 / LETP: in the last step the lanes at and beyond n are off, not
 * loaded and not accumulated):
 *   acc[4 r] = sum_i x_r[i] * w[i] (r = 0 .. 3, a stride of 4 words: the [row][4] blocks of the
 *   callers' output stages), *wsum = sum_i w[i].
 * Per 16 values one VLDRB and one VADDVA of w, then per row one VLDRB and one VMLADAVA.S8, and
 * LETP: 11 instructions for 64 MACs. |sum| <= 128 * 128 * n: exact int32 for n < 2^17. The rows
 * may alias each other (a tile of fewer than 4 rows repeats one). The accumulators are pinned to
 * even registers (`Te`: VMLADAVA and VADDVA need one). The loop's tail predication is FPSCR.LTPSIZE
 * (reset by LETP on exit), not VPR: no predicate is clobbered. */
static inline void mve_dot4x1(const int8_t *x0, const int8_t *x1, const int8_t *x2, const int8_t *x3,
                              const int8_t *w, int32_t n, int32_t *acc, int32_t *wsum)
{
    int32_t a0, a1, a2, a3, ws;
    __asm__ volatile("movs %[a0], #0\n\t"
                     "movs %[a1], #0\n\t"
                     "movs %[a2], #0\n\t"
                     "movs %[a3], #0\n\t"
                     "movs %[ws], #0\n\t"
                     "wlstp.8 lr, %[n], 2f\n"
                     "1:\n\t"
                     "vldrb.u8 q0, [%[w]], #16\n\t"
                     "vaddva.s8 %[ws], q0\n\t"
                     "vldrb.u8 q1, [%[x0]], #16\n\t"
                     "vmladava.s8 %[a0], q1, q0\n\t"
                     "vldrb.u8 q1, [%[x1]], #16\n\t"
                     "vmladava.s8 %[a1], q1, q0\n\t"
                     "vldrb.u8 q1, [%[x2]], #16\n\t"
                     "vmladava.s8 %[a2], q1, q0\n\t"
                     "vldrb.u8 q1, [%[x3]], #16\n\t"
                     "vmladava.s8 %[a3], q1, q0\n\t"
                     "letp lr, 1b\n"
                     "2:"
                     : [a0] "=&Te"(a0), [a1] "=&Te"(a1), [a2] "=&Te"(a2), [a3] "=&Te"(a3), [ws] "=&Te"(ws),
                       [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2), [x3] "+r"(x3), [w] "+r"(w)
                     : [n] "r"(n)
                     : "q0", "q1", "lr", "memory");
    acc[0] = a0;
    acc[4] = a1;
    acc[8] = a2;
    acc[12] = a3;
    *wsum = ws;
}

/* mcuf_layernorm_s8 on n >= 1 consecutive rows (row r: input + r * dim -> output + r * dim), with
 * the same checks (once: they do not depend on the row) and outputs; gamma and beta scanned for
 * the short rows' bound once per call, not per row (mve/layernorm.c; the fused blocks' tiles). */
mcuf_status mcufi_mve_layernorm_rows(const mcuf_layernorm_params *p, int32_t n, const int8_t *input, int8_t *output);

/* The same rows one at a time (the pool head's tokens, one LayerNorm row buffer): the parameters
 * checked by mcufi_layernorm_check first, gamma and beta scanned once (mcufi_mve_layernorm_scan,
 * gb: the short rows' bounds), then each row as mcuf_layernorm_s8 (mcufi_mve_layernorm_row). */
void mcufi_mve_layernorm_scan(const mcuf_layernorm_params *p, uint32_t gb[2]);
void mcufi_mve_layernorm_row(const mcuf_layernorm_params *p, const int8_t *input, int8_t *output, const uint32_t gb[2]);

/* Four int8 rows x, x + n, x + 2n, x + 3n of n <= 16 values against four rows w, w + n, w + 2n, w + 3n:
 * a4[t][r] = sum_i x_t[i] * w_r[i] and w4[r] = sum_i w_r[i]. The 4 x rows loaded once
 * (predicated to n lanes, zero beyond) into q4-q7, then per w row one predicated load, VADDV and
 * four VMLADAV.S8 with their stores: 13 instructions per w row (the weighted sums of a 4-row
 * attention tile with at most 16 tokens: 4 probability rows against 4 rows of V transposed;
 * linear.c's dots_t4_n16 calls it out of line). */
static inline void mve_dots4x4_n16(const int8_t *x, int32_t n, const int8_t *w, int32_t (*a4)[4], int32_t *w4)
{
    const int8_t *x1 = x + n;
    const int8_t *x2 = x1 + n;
    const int8_t *x3 = x2 + n;
    int32_t a, ws;
    int32_t *acc = &a4[0][0];
    __asm__ volatile("vctp.8 %[n]\n\t"
                     "vpstttt\n\t"
                     "vldrbt.u8 q4, [%[x0]]\n\t"
                     "vldrbt.u8 q5, [%[x1]]\n\t"
                     "vldrbt.u8 q6, [%[x2]]\n\t"
                     "vldrbt.u8 q7, [%[x3]]\n\t"
                     "dls lr, %[rows]\n"
                     "1:\n\t"
                     "vpst\n\t"
                     "vldrbt.u8 q0, [%[w]]\n\t"
                     "vaddv.s8 %[ws], q0\n\t"
                     "vmladav.s8 %[a], q4, q0\n\t"
                     "str %[a], [%[acc]]\n\t"
                     "vmladav.s8 %[a], q5, q0\n\t"
                     "str %[a], [%[acc], #16]\n\t"
                     "vmladav.s8 %[a], q6, q0\n\t"
                     "str %[a], [%[acc], #32]\n\t"
                     "vmladav.s8 %[a], q7, q0\n\t"
                     "str %[a], [%[acc], #48]\n\t"
                     "str %[ws], [%[w4]], #4\n\t"
                     "add %[acc], %[acc], #4\n\t"
                     "add %[w], %[w], %[n]\n\t"
                     "le lr, 1b"
                     : [a] "=&Te"(a), [ws] "=&Te"(ws), [w] "+r"(w), [acc] "+r"(acc), [w4] "+r"(w4)
                     : [x0] "r"(x), [x1] "r"(x1), [x2] "r"(x2), [x3] "r"(x3), [n] "r"(n), [rows] "r"(4)
                     : "q0", "q4", "q5", "q6", "q7", "p0", "lr", "memory");
}

#endif

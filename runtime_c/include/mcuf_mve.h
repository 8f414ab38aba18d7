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

/* clamp(r + offset, lo, hi) on 4 lanes (out_s8_act; the saturating add keeps the order). */
static inline int32x4_t out_s8_x4(int32x4_t r, int32_t offset, int32_t lo, int32_t hi)
{
    return vminq_s32(vmaxq_s32(vqaddq_n_s32(r, offset), vdupq_n_s32(lo)), vdupq_n_s32(hi));
}

#endif

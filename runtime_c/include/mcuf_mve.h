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

#endif

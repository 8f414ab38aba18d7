/*
 * mcuformer platform layer: the few services the test harness (main.c) needs from a target.
 *
 * Implementations:
 *   platform_semihost.c + startup_cortexm.c: bare-metal Cortex-M, output and exit code through
 *     ARM semihosting (QEMU with -semihosting-config enable=on, or a debug probe with
 *     semihosting enabled; without one the first output traps), instruction counting with
 *     SysTick under QEMU -icount shift=0, stack high-water mark by stack painting.
 *   platform_host.c: native build (stdio, exit); no counter, no stack measurement.
 *
 * None of these functions is used by the kernels or by the generated model: only by main.c.
 */
#ifndef MCUF_PLATFORM_H
#define MCUF_PLATFORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MCUF_NORETURN __attribute__((noreturn))
#else
#define MCUF_NORETURN
#endif

/* Exit codes of the harness (QEMU's exit status is the code: semihosting SYS_EXIT_EXTENDED). */
#define MCUF_EXIT_OK 0
#define MCUF_EXIT_MODEL_ERROR 2    /* mcuf_model_run returned a non-OK status */
#define MCUF_EXIT_FAULT 3          /* a CPU fault (HardFault, BusFault, ...) */
#define MCUF_EXIT_STACK_OVERFLOW 4 /* the painted stack was used to its last word */

void mcuf_platform_init(void);

/* Text output; no formatting, no buffering (each call reaches the console). */
void mcuf_platform_puts(const char *s);
void mcuf_platform_put_int(int32_t v);
void mcuf_platform_put_u64(uint64_t v);

MCUF_NORETURN void mcuf_platform_exit(int code);

/*
 * Instruction counter. counter_stop() returns what ran since counter_start().
 * Cortex-M under QEMU -icount shift=0: executed instructions, resolution 40 (one SysTick tick at
 * the 25 MHz MPS2 processor clock), deterministic. On a real board: processor clock cycles.
 * Host: always 0 (not measured).
 */
void mcuf_platform_counter_start(void);
uint64_t mcuf_platform_counter_stop(void);
/* Instructions since mcuf_platform_counter_start without stopping the counter (0 = not counted). */
uint64_t mcuf_platform_counter_read(void);

/*
 * Stack high-water mark in bytes since reset and the reserved stack size; 0 = not measured.
 * Cortex-M: the free RAM and the stack are painted with MCUF_STACK_PAINT_WORD at reset (below
 * the live frame) and scanned upwards from the end of .bss for the first overwritten word, so
 * used > size means the stack ran past its reservation. Words a frame reserves but never writes
 * (and a write of the paint word itself) are not seen: the figure is the deepest write.
 */
#define MCUF_STACK_PAINT_WORD 0xA5C35A3Cu

uint32_t mcuf_platform_stack_used(void);
uint32_t mcuf_platform_stack_size(void);

#ifdef __cplusplus
}
#endif

#endif /* MCUF_PLATFORM_H */

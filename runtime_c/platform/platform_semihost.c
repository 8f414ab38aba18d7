/*
 * Platform layer for bare-metal Cortex-M (Armv6-M, Armv7-M, Armv8-M) over ARM semihosting; number
 * formatting and the stack measurement are in platform_cortexm.c.
 *
 * Semihosting: `bkpt 0xAB` with the operation in r0 and the argument in r1. QEMU answers it with
 * -semihosting-config enable=on,target=native; on a board a debug probe must have semihosting
 * enabled, otherwise the breakpoint is a HardFault.
 *
 * Instruction counter: SysTick on the processor clock, free running from LOAD = 2^24 - 1, with
 * the wraps counted in SysTick_Handler. Under QEMU -icount shift=0 every instruction advances
 * virtual time by 1 ns, so one tick = 1e9 / (processor clock) instructions (MCUF_INSTRUCTIONS_PER_TICK).
 */
#include "platform.h"

#include <stddef.h>

#define SH_SYS_WRITE0 0x04
#define SH_SYS_EXIT 0x18
#define SH_SYS_EXIT_EXTENDED 0x20
#define SH_ADP_STOPPED_APPLICATION_EXIT 0x20026u

#define REG32(addr) (*(volatile uint32_t *)(addr))
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SCB_ICSR REG32(0xE000ED04u)

#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE_CPU (1u << 2)
#define SCB_ICSR_PENDSTCLR (1u << 25)
#define SCB_ICSR_PENDSTSET (1u << 26)

#define SYST_LOAD 0x00FFFFFFu
/* Instructions per SysTick tick under QEMU -icount shift=0 (1 ns per instruction): 1e9 / the emulated
 * processor clock, from the generated Makefile (40 on mps2-an386/an500 at 25 MHz, 50 on an505). */
#ifndef MCUF_INSTRUCTIONS_PER_TICK
#error "define MCUF_INSTRUCTIONS_PER_TICK (the generated Makefile does, from the board's QEMU machine)"
#endif
#define INSTRUCTIONS_PER_TICK MCUF_INSTRUCTIONS_PER_TICK

/* Number of times SysTick reached zero since counter_start (exceptions taken). */
static volatile uint32_t systick_zero_count;

static int32_t semihost_call(int32_t op, const void *arg)
{
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void mcuf_platform_init(void)
{
}

void mcuf_platform_puts(const char *s)
{
    semihost_call(SH_SYS_WRITE0, s);
}

void mcuf_platform_exit(int code)
{
    /* SYS_EXIT_EXTENDED carries the status (QEMU exits with it); plain SYS_EXIT on AArch32 can
     * only say "success" (QEMU exit 0) or anything else (QEMU exit 1). */
    const uint32_t block[2] = {SH_ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    semihost_call(SH_SYS_EXIT_EXTENDED, block);
    semihost_call(SH_SYS_EXIT, (const void *)(uintptr_t)(code == 0 ? SH_ADP_STOPPED_APPLICATION_EXIT : 0x20023u));
    for (;;) {
        __asm__ volatile("wfi");
    }
}

void SysTick_Handler(void);
void SysTick_Handler(void)
{
    systick_zero_count = systick_zero_count + 1u;
}

static uint32_t irq_save(void)
{
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask) : : "memory");
    return primask;
}

static void irq_restore(uint32_t primask)
{
    __asm__ volatile("msr primask, %0" : : "r"(primask) : "memory");
}

void mcuf_platform_counter_start(void)
{
    SYST_CSR = 0u;
    SYST_RVR = SYST_LOAD;
    SYST_CVR = 0u; /* any write clears the count; the first tick reloads LOAD */
    SCB_ICSR = SCB_ICSR_PENDSTCLR;
    systick_zero_count = 0u;
    SYST_CSR = SYST_CSR_CLKSOURCE_CPU | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

/* Instructions since counter_start from a snapshot taken with interrupts masked. */
static uint64_t counter_snapshot(void)
{
    const uint32_t val = SYST_CVR;
    uint64_t zeros = systick_zero_count;
    if ((SCB_ICSR & SCB_ICSR_PENDSTSET) != 0u) { /* reached zero, exception not taken yet */
        zeros += 1u;
    }
    /* The first tick loads LOAD; tick k (k >= 1) leaves LOAD - ((k - 1) mod (LOAD + 1)) and the
     * exception fires when that is 0. So VAL == 0 is the last tick of a period, not the first
     * tick of the next. Ticks counted from the first reload (the reload tick itself is not). */
    uint64_t ticks;
    if (val == 0u && zeros > 0u) {
        ticks = zeros * ((uint64_t)SYST_LOAD + 1u) - 1u;
    } else if (val == 0u) {
        ticks = 0u; /* not a single tick yet */
    } else {
        ticks = zeros * ((uint64_t)SYST_LOAD + 1u) + (SYST_LOAD - val);
    }
    return ticks * INSTRUCTIONS_PER_TICK;
}

uint64_t mcuf_platform_counter_read(void)
{
    const uint32_t primask = irq_save();
    const uint64_t count = counter_snapshot();
    irq_restore(primask);
    return count;
}

uint64_t mcuf_platform_counter_stop(void)
{
    const uint32_t primask = irq_save();
    SYST_CSR = SYST_CSR_CLKSOURCE_CPU; /* stop: the count is frozen from here */
    const uint64_t count = counter_snapshot();
    SCB_ICSR = SCB_ICSR_PENDSTCLR;
    irq_restore(primask);
    return count;
}

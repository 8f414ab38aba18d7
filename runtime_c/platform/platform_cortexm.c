/*
 * Platform services shared by every bare-metal Cortex-M platform layer (platform_semihost.c,
 * platform_stm32f4_usart.c): number formatting over mcuf_platform_puts and the stack high-water
 * mark by stack painting (startup_cortexm.c paints [_spaint, SP) at reset).
 */
#include "platform.h"

#include <stddef.h>

/* Linker-script symbols (boards/templates/cortexm.ld.j2): the reserved stack [_sstack, _estack);
 * [_spaint, _sstack) is the free RAM below it in its region (_spaint = _ebss when the stack is in
 * the main region). */
extern uint32_t _spaint;
extern uint32_t _sstack;
extern uint32_t _estack;

void mcuf_platform_put_u64(uint64_t v)
{
    char buf[21];
    size_t i = sizeof buf - 1;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    mcuf_platform_puts(&buf[i]);
}

void mcuf_platform_put_int(int32_t v)
{
    if (v < 0) {
        mcuf_platform_puts("-");
        mcuf_platform_put_u64((uint64_t)(-(int64_t)v));
    } else {
        mcuf_platform_put_u64((uint64_t)v);
    }
}

uint32_t mcuf_platform_stack_size(void)
{
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)&_sstack);
}

uint32_t mcuf_platform_stack_used(void)
{
    /* Painted from _spaint (the free RAM below the stack included), so a stack that went past
     * _sstack into free RAM reads as more than mcuf_platform_stack_size(). */
    const volatile uint32_t *p = (const volatile uint32_t *)&_spaint;
    const volatile uint32_t *const end = (const volatile uint32_t *)&_estack;
    while (p < end && *p == MCUF_STACK_PAINT_WORD) {
        ++p;
    }
    return (uint32_t)((uintptr_t)end - (uintptr_t)p);
}

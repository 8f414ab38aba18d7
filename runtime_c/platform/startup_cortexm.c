/*
 * Startup for bare-metal Cortex-M (Armv6-M, Armv7-M, Armv8-M mainline), linked with
 * -nostartfiles against boards/templates/cortexm.ld.j2.
 *
 * Reset_Handler: copy .data from its load address in FLASH, zero .bss (and the arena or row
 * scratch placed in another RAM region), enable the FPU when the code uses it, enable the
 * configurable fault exceptions, paint the free RAM and the free part of the stack, run main()
 * and exit (mcuf_platform_exit: semihosting, or the board's console and a reset) with its return
 * value. Faults print one line
 *   FAULT <exception> pc=0x... lr=0x... cfsr=0x... hfsr=0x... addr=0x...
 * and exit with MCUF_EXIT_FAULT.
 */
#include "platform.h"

#include <stddef.h>

/* Linker-script symbols. */
extern uint32_t _sidata; /* load address of .data in FLASH */
extern uint32_t _sdata, _edata;
extern uint32_t _sbss, _ebss;
extern uint32_t _sstack, _estack; /* reserved stack; the initial SP is _estack */
extern uint32_t _sarena, _earena;     /* an arena outside .bss (another RAM region), else empty */
extern uint32_t _sscratch, _escratch; /* the row scratch outside .bss, else empty */
extern uint32_t _spaint;              /* start of the free RAM below the stack, in the stack's region */

int main(void);

void Reset_Handler(void);
void Fault_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void); /* platform_semihost.c */

#define REG32(addr) (*(volatile uint32_t *)(addr))
#define SCB_CPACR REG32(0xE000ED88u)
#define SCB_CCR REG32(0xE000ED14u)
#define SCB_SHCSR REG32(0xE000ED24u)
#define SCB_CFSR REG32(0xE000ED28u)
#define SCB_HFSR REG32(0xE000ED2Cu)
#define SCB_MMFAR REG32(0xE000ED34u)
#define SCB_BFAR REG32(0xE000ED38u)

#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__)
#define HAVE_CONFIGURABLE_FAULTS 1
#else
#define HAVE_CONFIGURABLE_FAULTS 0
#endif

typedef void (*vector_fn)(void);

typedef struct {
    void *initial_sp;
    vector_fn handlers[15];
} vector_table;

/* System exceptions only: the harness enables no external interrupt. */
__attribute__((section(".isr_vector"), used)) const vector_table mcuf_vector_table = {
    &_estack,
    {
        Reset_Handler,   /* 1  Reset */
        Fault_Handler,   /* 2  NMI */
        Fault_Handler,   /* 3  HardFault */
        Fault_Handler,   /* 4  MemManage */
        Fault_Handler,   /* 5  BusFault */
        Fault_Handler,   /* 6  UsageFault */
        Fault_Handler,   /* 7  SecureFault (Armv8-M) */
        Default_Handler, /* 8  reserved */
        Default_Handler, /* 9  reserved */
        Default_Handler, /* 10 reserved */
        Default_Handler, /* 11 SVCall */
        Default_Handler, /* 12 DebugMonitor */
        Default_Handler, /* 13 reserved */
        Default_Handler, /* 14 PendSV */
        SysTick_Handler, /* 15 SysTick */
    },
};

#if defined(MCUF_RP2350_IMAGE_DEF)
/* RP2350 boot ROM: the minimal IMAGE_DEF block (RP2350 datasheet, "minimum viable image metadata":
 * an Arm Secure executable for RP2350, one block in a loop to itself), within the first 4 KiB of
 * the image; the linker script puts .isr_vector.* right after the vector table, whose initial SP
 * and Reset_Handler the boot ROM then uses. */
__attribute__((section(".isr_vector.image_def"), used)) const uint32_t mcuf_rp2350_image_def[5] = {
    0xFFFFDED3u, /* PICOBIN_BLOCK_MARKER_START */
    0x10210142u, /* IMAGE_TYPE item: EXE, chip RP2350, CPU Arm, Secure */
    0x000001FFu, /* LAST item, block size 1 word */
    0x00000000u, /* relative link to the next block: 0 = this block only */
    0xAB123579u, /* PICOBIN_BLOCK_MARKER_END */
};
#endif

void Reset_Handler(void)
{
    const uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
    for (uint32_t *dst = &_sarena; dst < &_earena;) {
        *dst++ = 0u;
    }
    for (uint32_t *dst = &_sscratch; dst < &_escratch;) {
        *dst++ = 0u;
    }

#if defined(__ARM_FP)
    SCB_CPACR |= (0xFu << 20); /* CP10, CP11 full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
#if HAVE_CONFIGURABLE_FAULTS
    SCB_SHCSR |= (1u << 16) | (1u << 17) | (1u << 18); /* MemManage, BusFault, UsageFault */
    SCB_CCR |= (1u << 4);                              /* trap integer division by zero */
#endif

    /* Paint [_spaint, sp): the free RAM below the stack and the stack below the current SP. Below
     * SP nothing is live (no interrupt is enabled); this frame is at or above it. Volatile
     * stores and no call, so nothing below SP is used while painting. */
    uintptr_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *p = &_spaint; (uintptr_t)p < sp; ++p) {
        *p = MCUF_STACK_PAINT_WORD;
    }

    mcuf_platform_exit(main());
}

static void put_hex(const char *label, uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    char buf[11];
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 8; ++i) {
        buf[2 + i] = digits[(v >> (28 - 4 * i)) & 0xFu];
    }
    buf[10] = '\0';
    mcuf_platform_puts(label);
    mcuf_platform_puts(buf);
}

/* frame: the exception stack frame (r0-r3, r12, lr, pc, xpsr) or NULL if it cannot be trusted. */
void mcuf_fault_report(const uint32_t *frame);
void mcuf_fault_report(const uint32_t *frame)
{
    static const char *const names[] = {"thread", "reset", "NMI", "HardFault", "MemManage", "BusFault",
                                        "UsageFault", "SecureFault"};
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    ipsr &= 0x1FFu;
    mcuf_platform_puts("\nFAULT ");
    if (ipsr < sizeof names / sizeof names[0]) {
        mcuf_platform_puts(names[ipsr]);
    } else {
        mcuf_platform_puts("exception ");
        mcuf_platform_put_int((int32_t)ipsr);
    }
    if (frame != NULL) {
        put_hex(" pc=", frame[6]);
        put_hex(" lr=", frame[5]);
    }
#if HAVE_CONFIGURABLE_FAULTS
    const uint32_t cfsr = SCB_CFSR;
    put_hex(" cfsr=", cfsr);
    put_hex(" hfsr=", SCB_HFSR);
    if ((cfsr & (1u << 15)) != 0u) { /* BFARVALID */
        put_hex(" addr=", SCB_BFAR);
    } else if ((cfsr & (1u << 7)) != 0u) { /* MMARVALID */
        put_hex(" addr=", SCB_MMFAR);
    }
#endif
    mcuf_platform_puts("\n");
    mcuf_platform_exit(MCUF_EXIT_FAULT);
}

/* Pass the stacked frame (MSP or PSP per EXC_RETURN bit 2) to mcuf_fault_report.
 * Armv6-M compatible instructions only. */
__attribute__((naked)) void Fault_Handler(void)
{
    __asm__ volatile(
        "movs r0, #4\n\t"
        "mov r1, lr\n\t"
        "tst r0, r1\n\t"
        "beq 1f\n\t"
        "mrs r0, psp\n\t"
        "b 2f\n"
        "1:\n\t"
        "mrs r0, msp\n"
        "2:\n\t"
        "ldr r1, =mcuf_fault_report\n\t"
        "bx r1\n\t"
        ".ltorg\n");
}

void Default_Handler(void)
{
    mcuf_fault_report(NULL);
}

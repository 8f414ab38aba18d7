/*
 * Platform layer of the firmware image for STM32F4 parts (STM32F405/407/415/417 register map):
 * register-level code only, no vendor HAL, no semihosting, so the image runs on a board without a
 * debugger attached.
 *
 * mcuf_platform_init:
 *   - clock: HSI (16 MHz, running at reset) -> PLL at 168 MHz (PLLM 16, PLLN 336, PLLP 2,
 *     PLLQ 7), flash at 5 wait states with the caches and prefetch on, AHB /1, APB1 /4 (42 MHz),
 *     APB2 /2 (84 MHz). Every wait on a ready flag is bounded (CLOCK_WAIT_LIMIT polls); when one
 *     runs out (QEMU's clock controller and flash interface are not modelled and read as zero)
 *     the core stays on the 16 MHz HSI with APB2 = 16 MHz and the console is set up for that.
 *   - console: USART1 on PA9 (TX, AF7) / PA10 (RX, AF7), 115200 baud 8N1, transmit only.
 * mcuf_platform_puts: each '\n' is sent as "\r\n" (a serial terminal's line end); waits for TXE
 *   before every byte (bounded, so a console without a clock cannot hang the program).
 * mcuf_platform_exit(code): prints the final status line "EXIT <code>", waits until the last
 *   byte left the shift register (TC), then requests a system reset (SCB AIRCR SYSRESETREQ); QEMU
 *   started with -no-reboot ends there, a board restarts the program.
 * Counter: not measured (returns 0): instruction counts come from the MPS2 machines, and SysTick
 *   at 168 MHz does not tick a whole number of instructions under QEMU -icount.
 */
#include "platform.h"

#include <stddef.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

/* RCC (RM0090 section 7.3) */
#define RCC_BASE 0x40023800u
#define RCC_CR REG32(RCC_BASE + 0x00u)
#define RCC_PLLCFGR REG32(RCC_BASE + 0x04u)
#define RCC_CFGR REG32(RCC_BASE + 0x08u)
#define RCC_AHB1ENR REG32(RCC_BASE + 0x30u)
#define RCC_APB2ENR REG32(RCC_BASE + 0x44u)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_CFGR_SW_MASK 0x3u
#define RCC_CFGR_SW_PLL 0x2u
#define RCC_CFGR_SWS_MASK (0x3u << 2)
#define RCC_CFGR_SWS_PLL (0x2u << 2)
#define RCC_CFGR_PPRE1_DIV4 (0x5u << 10)
#define RCC_CFGR_PPRE2_DIV2 (0x4u << 13)
#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_APB2ENR_USART1EN (1u << 4)
/* PLL from HSI: VCO in = 16 MHz / PLLM(16) = 1 MHz, VCO = 1 MHz * PLLN(336) = 336 MHz,
 * SYSCLK = VCO / PLLP(2) = 168 MHz, USB/SDIO = VCO / PLLQ(7) = 48 MHz. PLLSRC (bit 22) = 0: HSI. */
#define RCC_PLLCFGR_168MHZ_FROM_HSI ((16u << 0) | (336u << 6) | (0u << 16) | (7u << 24))

/* Flash interface: 5 wait states for 168 MHz at 2.7-3.6 V (RM0090 table 10). */
#define FLASH_ACR REG32(0x40023C00u)
#define FLASH_ACR_LATENCY_MASK 0x7u
#define FLASH_ACR_LATENCY_5WS 5u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

/* GPIOA: PA9, PA10 in alternate function mode (MODER 0b10), AF7 = USART1 (AFRH). */
#define GPIOA_BASE 0x40020000u
#define GPIOA_MODER REG32(GPIOA_BASE + 0x00u)
#define GPIOA_AFRH REG32(GPIOA_BASE + 0x24u)

/* USART1 on APB2 */
#define USART1_BASE 0x40011000u
#define USART1_SR REG32(USART1_BASE + 0x00u)
#define USART1_DR REG32(USART1_BASE + 0x04u)
#define USART1_BRR REG32(USART1_BASE + 0x08u)
#define USART1_CR1 REG32(USART1_BASE + 0x0Cu)
#define USART_SR_TC (1u << 6)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_UE (1u << 13)
#define CONSOLE_BAUD 115200u

#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_AIRCR_VECTKEY (0x05FAu << 16)
#define SCB_AIRCR_SYSRESETREQ (1u << 2)

#define HSI_HZ 16000000u
#define APB2_HZ_AT_168MHZ 84000000u
/* Polls of a ready flag before giving up: the PLL locks in well under 1 ms on silicon (< 16,000
 * polls at 16 MHz); a UART byte at 115200 baud takes 87 us (< 1,400 polls at 16 MHz). */
#define CLOCK_WAIT_LIMIT 100000u
#define CONSOLE_WAIT_LIMIT 100000u

/* The clock the console's baud rate is derived from (APB2), set by mcuf_platform_init. */
static uint32_t apb2_hz = HSI_HZ;

/* Waits until (reg & mask) == value, at most `limit` polls. Returns 1 when it got there. */
static int wait_bits(volatile uint32_t *reg, uint32_t mask, uint32_t value, uint32_t limit)
{
    for (uint32_t i = 0u; i < limit; ++i) {
        if ((*reg & mask) == value) {
            return 1;
        }
    }
    return 0;
}

/* HSI -> PLL at 168 MHz. Returns 1 when SYSCLK runs from the PLL, 0 when it stayed on HSI
 * (every register write of a failed attempt is undone, so HSI at 16 MHz with 0 wait states). */
static int start_pll_168mhz(void)
{
    if (!wait_bits(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY, CLOCK_WAIT_LIMIT)) {
        return 0;
    }
    RCC_PLLCFGR = RCC_PLLCFGR_168MHZ_FROM_HSI;
    RCC_CR |= RCC_CR_PLLON;
    if (!wait_bits(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY, CLOCK_WAIT_LIMIT)) {
        RCC_CR &= ~RCC_CR_PLLON;
        return 0;
    }
    /* Wait states before the clock goes up; the new latency must read back before the switch. */
    FLASH_ACR = FLASH_ACR_LATENCY_5WS | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    if ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != FLASH_ACR_LATENCY_5WS) {
        FLASH_ACR = 0u;
        RCC_CR &= ~RCC_CR_PLLON;
        return 0;
    }
    RCC_CFGR = RCC_CFGR_PPRE1_DIV4 | RCC_CFGR_PPRE2_DIV2; /* APB dividers first, SYSCLK still HSI */
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    if (!wait_bits(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SWS_PLL, CLOCK_WAIT_LIMIT)) {
        RCC_CFGR = 0u; /* back to HSI, APB /1 */
        RCC_CR &= ~RCC_CR_PLLON;
        FLASH_ACR = 0u;
        return 0;
    }
    return 1;
}

static void console_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
    (void)RCC_APB2ENR; /* read back: the peripheral clock is on before the first access */
    GPIOA_MODER = (GPIOA_MODER & ~((3u << 18) | (3u << 20))) | (2u << 18) | (2u << 20);
    GPIOA_AFRH = (GPIOA_AFRH & ~((0xFu << 4) | (0xFu << 8))) | (7u << 4) | (7u << 8);
    /* Oversampling by 16: BRR = USARTDIV * 16 = f_APB2 / baud, rounded to nearest
     * (84 MHz: 729 -> 115,226 baud, +0.02 %; 16 MHz: 139 -> 115,108 baud, -0.08 %). */
    USART1_BRR = (apb2_hz + CONSOLE_BAUD / 2u) / CONSOLE_BAUD;
    USART1_CR1 = USART_CR1_UE | USART_CR1_TE;
}

void mcuf_platform_init(void)
{
    apb2_hz = start_pll_168mhz() ? APB2_HZ_AT_168MHZ : HSI_HZ;
    console_init();
}

static void console_put_byte(char c)
{
    (void)wait_bits(&USART1_SR, USART_SR_TXE, USART_SR_TXE, CONSOLE_WAIT_LIMIT);
    USART1_DR = (uint32_t)(unsigned char)c;
}

void mcuf_platform_puts(const char *s)
{
    for (; *s != '\0'; ++s) {
        if (*s == '\n') {
            console_put_byte('\r');
        }
        console_put_byte(*s);
    }
}

void mcuf_platform_exit(int code)
{
    mcuf_platform_puts("EXIT ");
    mcuf_platform_put_int((int32_t)code);
    mcuf_platform_puts("\n");
    (void)wait_bits(&USART1_SR, USART_SR_TC, USART_SR_TC, CONSOLE_WAIT_LIMIT);
    __asm__ volatile("dsb" ::: "memory");
    SCB_AIRCR = SCB_AIRCR_VECTKEY | SCB_AIRCR_SYSRESETREQ;
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
        __asm__ volatile("wfi");
    }
}

/* SysTick is never started here; the vector table (startup_cortexm.c) names the handler. */
void SysTick_Handler(void);
void SysTick_Handler(void)
{
}

void mcuf_platform_counter_start(void)
{
}

uint64_t mcuf_platform_counter_stop(void)
{
    return 0u;
}

uint64_t mcuf_platform_counter_read(void)
{
    return 0u;
}

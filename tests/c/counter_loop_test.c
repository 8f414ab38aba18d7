/* Counts a loop of known length (2 instructions per iteration: SUBS, BNE) with the platform counter,
 * for n = 1..N: tests/test_helium.py checks that the converted count is 2n plus a constant. */
#include "platform.h"

#define N_MAX 300

int main(void)
{
    mcuf_platform_init();
    for (uint32_t n = 1; n <= N_MAX; n++) {
        uint32_t k = n;
        mcuf_platform_counter_start();
        __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(k));
        const uint64_t count = mcuf_platform_counter_stop();
        mcuf_platform_puts("LOOP ");
        mcuf_platform_put_int((int32_t)n);
        mcuf_platform_puts(" ");
        mcuf_platform_put_int((int32_t)count);
        mcuf_platform_puts("\n");
    }
    mcuf_platform_puts("DONE\n");
    return 0;
}

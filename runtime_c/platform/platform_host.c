/* Platform layer for a native host build: stdio output, process exit status, nothing measured. */
#include "platform.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

void mcuf_platform_init(void)
{
}

void mcuf_platform_puts(const char *s)
{
    fputs(s, stdout);
}

void mcuf_platform_put_int(int32_t v)
{
    printf("%" PRId32, v);
}

void mcuf_platform_put_u64(uint64_t v)
{
    printf("%" PRIu64, v);
}

void mcuf_platform_exit(int code)
{
    fflush(stdout);
    exit(code);
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

uint32_t mcuf_platform_stack_used(void)
{
    return 0u;
}

uint32_t mcuf_platform_stack_size(void)
{
    return 0u;
}

/*
 * Test harness of a generated project: runs the model on every test input embedded in flash and
 * prints, for input i,
 *   LOGITS <i> <v0> ... <vN-1>
 *   INSTRUCTIONS <i> <count>        (0 where the platform does not count)
 * then
 *   OPS <i> <end0> ... <endK-1>     (only with -DMCUF_PROFILE: instruction count when operator k
 *                                    returned, from the start of inference i)
 *   STACK <bytes>                   (high-water mark since reset; 0 = not measured)
 *   DONE
 * and exits 0. A non-OK model status prints `ERROR <i> <status>` and exits MCUF_EXIT_MODEL_ERROR;
 * a stack used to its last reserved word prints `STACK_OVERFLOW <reserved bytes>` and exits
 * MCUF_EXIT_STACK_OVERFLOW. mcuformer/emulate.py parses exactly these lines.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model.h"
#include "platform.h"

#define STRIPE_BYTES (MCUF_MODEL_PATCH * MCUF_MODEL_IMAGE_W * MCUF_MODEL_CHANNELS)
#define NUM_STRIPES (MCUF_MODEL_IMAGE_H / MCUF_MODEL_PATCH)

typedef char image_h_is_a_multiple_of_patch[(MCUF_MODEL_IMAGE_H % MCUF_MODEL_PATCH == 0) ? 1 : -1];

typedef struct {
    const int8_t *image; /* IMAGE_H x IMAGE_W x CHANNELS, HWC */
} test_image;

/* mcuf_stripe_reader over an image in flash: stripe s = image rows [s * PATCH, (s + 1) * PATCH).
 * Returns 0, or -1 for a stripe or size outside the image (the model reports MCUF_ERR_INPUT). */
static int32_t read_test_stripe(void *ctx, int32_t stripe, int8_t *dst, int32_t n_bytes)
{
    const test_image *img = (const test_image *)ctx;
    if (stripe < 0 || stripe >= NUM_STRIPES || n_bytes != STRIPE_BYTES || dst == NULL) {
        return -1;
    }
    memcpy(dst, img->image + (size_t)stripe * STRIPE_BYTES, STRIPE_BYTES);
    return 0;
}

static int8_t logits[MCUF_MODEL_NUM_CLASSES];

#ifdef MCUF_PROFILE
static uint64_t op_end[MCUF_MODEL_NUM_OPS];

void mcuf_model_op_done(int32_t op)
{
    if (op >= 0 && op < MCUF_MODEL_NUM_OPS) {
        op_end[op] = mcuf_platform_counter_read();
    }
}

static void print_op_counts(int32_t input)
{
    mcuf_platform_puts("OPS ");
    mcuf_platform_put_int(input);
    for (int32_t k = 0; k < MCUF_MODEL_NUM_OPS; ++k) {
        mcuf_platform_puts(" ");
        mcuf_platform_put_u64(op_end[k]);
    }
    mcuf_platform_puts("\n");
}
#endif

int main(void)
{
    mcuf_platform_init();
    for (int32_t i = 0; i < MCUF_MODEL_NUM_TEST_INPUTS; ++i) {
        test_image img = {mcuf_model_test_inputs[i]};
        mcuf_platform_counter_start();
        const mcuf_status status = mcuf_model_run(read_test_stripe, &img, logits);
        const uint64_t count = mcuf_platform_counter_stop();
        if (status != MCUF_OK) {
            mcuf_platform_puts("ERROR ");
            mcuf_platform_put_int(i);
            mcuf_platform_puts(" ");
            mcuf_platform_put_int((int32_t)status);
            mcuf_platform_puts("\n");
            mcuf_platform_exit(MCUF_EXIT_MODEL_ERROR);
        }
        mcuf_platform_puts("LOGITS ");
        mcuf_platform_put_int(i);
        for (int32_t c = 0; c < MCUF_MODEL_NUM_CLASSES; ++c) {
            mcuf_platform_puts(" ");
            mcuf_platform_put_int(logits[c]);
        }
        mcuf_platform_puts("\nINSTRUCTIONS ");
        mcuf_platform_put_int(i);
        mcuf_platform_puts(" ");
        mcuf_platform_put_u64(count);
        mcuf_platform_puts("\n");
#ifdef MCUF_PROFILE
        print_op_counts(i);
#endif
    }
    const uint32_t reserved = mcuf_platform_stack_size();
    const uint32_t used = mcuf_platform_stack_used();
    if (reserved != 0u && used >= reserved) {
        mcuf_platform_puts("STACK_OVERFLOW ");
        mcuf_platform_put_u64(reserved);
        mcuf_platform_puts("\n");
        mcuf_platform_exit(MCUF_EXIT_STACK_OVERFLOW);
    }
    mcuf_platform_puts("STACK ");
    mcuf_platform_put_u64(used);
    mcuf_platform_puts("\nDONE\n");
    return MCUF_EXIT_OK;
}

/*
 * Low-rank linear: out = up(down(in)) through a rank-R int8 row in scratch, or dense (rank 0).
 * Built on mcuf_linear_s8 only, so an optimized linear kernel speeds it up too.
 */
#include <stddef.h>

#include "mcuf_internal.h"

int32_t mcuf_lowrank_linear_s8_scratch_size(const mcuf_lowrank_params *p)
{
    if (p == NULL) {
        return -1;
    }
    return mcufi_layout_size(&p->rank, 1);
}

mcuf_status mcuf_lowrank_linear_s8(const mcuf_lowrank_params *p, const int8_t *input, int8_t *scratch,
                                   int8_t *output)
{
    if (p == NULL || p->rank < 0) {
        return MCUF_ERR_ARG;
    }
    if (p->rank == 0) {
        return mcuf_linear_s8(&p->up, input, output);
    }
    if (p->down.out_features != p->rank || p->up.in_features != p->rank || scratch == NULL) {
        return MCUF_ERR_ARG;
    }
    /* `output` is written only by the second call, after both parameter sets were accepted. */
    const mcuf_status st = mcuf_linear_s8(&p->down, input, scratch);
    if (st != MCUF_OK) {
        return st;
    }
    return mcuf_linear_s8(&p->up, scratch, output);
}

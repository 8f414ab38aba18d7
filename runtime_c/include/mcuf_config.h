/*
 * Build configuration of the runtime. The exporter writes this file per model
 * (codegen.emit.runtime_sources); this is the default, an int8-only runtime.
 *
 * MCUF_WITH_S4W: the linear kernels dispatch layers with weight_format MCUF_WEIGHTS_S4 (packed int4
 * weights) to the int4 row kernel (linear_s4w.c). Defined only for models with int4 weights, so an
 * int8 model links no int4 code (--gc-sections); without it, MCUF_WEIGHTS_S4 is rejected
 * (MCUF_ERR_ARG).
 */
#ifndef MCUF_CONFIG_H
#define MCUF_CONFIG_H

#endif /* MCUF_CONFIG_H */

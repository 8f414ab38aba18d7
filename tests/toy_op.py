"""A toy op in ONE file, to prove that adding an op touches nothing else (tests/test_add_an_op.py).

``toy_scale``: scale the residual stream, channel by channel, by small integer multipliers,
saturating: y[t, c] = x[t, c] * m[c] in float; in int8 the output keeps the input's quantization, so
y_q = clamp((x_q - zp) * m[c] + zp, -128, 127). Fused as ``fused_toy_scale``: one row at a time into
a row of scratch, then back over x (in place), by its own C kernel ``toy_scale_rows_s8`` carried
here as C source.

Importing this module registers both definitions (codegen.ops.register).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mcuformer.codegen.ir import Attrs, FusedDims, Graph, KernelParams, Node, QParams, Role, Schedule
from mcuformer.codegen.ops import CallContext, FusedOp, PrimitiveOp, Step, register

TOY_SCALE = "toy_scale"
FUSED_TOY_SCALE = "fused_toy_scale"
KERNEL = "toy_scale_rows_s8"


@dataclass(frozen=True)
class ScaleAttrs(Attrs):
    multipliers: np.ndarray | None = None  # per channel, integers in [-128, 127] (None: shapes only)


@dataclass(frozen=True, eq=False)
class ToyScaleParams:
    """Mirrors the C struct toy_scale_params below, field by field."""

    C_TYPE: ClassVar[str] = "toy_scale_params"
    tokens: int
    dim: int
    zero_point: int  # of the input and the output
    multipliers: np.ndarray | None  # int8 (dim,)


def toy_scale_rows_s8_scratch_size(dim: int) -> int:
    """toy_scale_rows_s8_scratch_size: one int8 output row, rounded up to 4."""
    return (dim + 3) & ~3 if dim >= 0 else -1


def toy_scale_reference(p: ToyScaleParams, x: np.ndarray) -> np.ndarray:
    """The C kernel's integers, on (..., dim)."""
    assert p.multipliers is not None
    y = (np.asarray(x).astype(np.int64) - p.zero_point) * p.multipliers.astype(np.int64) + p.zero_point
    return np.clip(y, -128, 127).astype(np.int8)


def _attrs(node: Node) -> ScaleAttrs:
    assert isinstance(node.attrs, ScaleAttrs)
    return node.attrs


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    return args[0] * _attrs(node).multipliers


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    tokens, dim = graph.tensors[node.inputs[0]].shape
    multipliers = np.asarray(_attrs(node).multipliers, dtype=np.int8)
    return ToyScaleParams(tokens, dim, q[node.inputs[0]].zero_point, multipliers)


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(node.kernel, ToyScaleParams)
    return toy_scale_reference(node.kernel, args[0])


def _shape_key(node: Node, graph: Graph) -> tuple[int, ...]:
    return graph.tensors[node.inputs[0]].shape


def _params_for_shapes(tokens: int, dim: int) -> KernelParams:
    return ToyScaleParams(tokens, dim, 0, np.zeros(dim, dtype=np.int8))


def _features(node: Node, graph: Graph) -> dict[str, float]:
    return {"elementwise": math.prod(graph.tensors[node.inputs[0]].shape)}


def _dims(body: Mapping[Role, Node], graph: Graph) -> FusedDims:
    tokens, dim = graph.tensors[body[Role.NONE].inputs[0]].shape
    return FusedDims(tokens, dim)


def _fused_reference(node: Node, x: np.ndarray) -> np.ndarray:
    assert isinstance(node.kernel, ToyScaleParams)
    return toy_scale_reference(node.kernel, x)


def _call_args(node: Node, c: CallContext) -> tuple[str, ...]:
    return (c.params, c.arena(node.inputs[0]), c.scratch)


C_HEADER = """/* toy_scale: per-channel integer scaling of the residual stream, in place (tests/toy_op.py). */
#ifndef TOY_SCALE_H
#define TOY_SCALE_H
#include "mcuf.h"

typedef struct {
    int32_t tokens;
    int32_t dim;
    int32_t zero_point;
    const int8_t *multipliers;
} toy_scale_params;

int32_t toy_scale_rows_s8_scratch_size(const toy_scale_params *p);
/* x [tokens][dim] overwritten row by row through scratch (toy_scale_rows_s8_scratch_size bytes). */
mcuf_status toy_scale_rows_s8(const toy_scale_params *p, int8_t *x, int8_t *scratch);
#endif
"""

C_SOURCE = """#include <stddef.h>
#include "toy_scale.h"

int32_t toy_scale_rows_s8_scratch_size(const toy_scale_params *p)
{
    if (p == NULL || p->dim < 0 || p->dim > INT32_MAX - 3) {
        return -1;
    }
    return (p->dim + 3) & ~3;
}

mcuf_status toy_scale_rows_s8(const toy_scale_params *p, int8_t *x, int8_t *scratch)
{
    if (p == NULL || x == NULL || scratch == NULL || p->multipliers == NULL || p->tokens < 0 || p->dim < 0 ||
        p->zero_point < -128 || p->zero_point > 127) {
        return MCUF_ERR_ARG;
    }
    for (int32_t t = 0; t < p->tokens; t++) {
        int8_t *row = x + t * p->dim;
        for (int32_t c = 0; c < p->dim; c++) {
            /* |(x - zp) * m| <= 255 * 128: no overflow in int32 */
            int32_t y = ((int32_t)row[c] - p->zero_point) * (int32_t)p->multipliers[c] + p->zero_point;
            scratch[c] = (int8_t)(y < -128 ? -128 : (y > 127 ? 127 : y));
        }
        for (int32_t c = 0; c < p->dim; c++) {
            row[c] = scratch[c];
        }
    }
    return MCUF_OK;
}
"""

PRIMITIVE = register(
    PrimitiveOp(
        TOY_SCALE,
        _evaluate,
        _quantize,
        _reference,
        _shape_key,
        _params_for_shapes,
        _features,
        output_qparams=lambda node, q: q[node.inputs[0]],  # saturating: the input's quantization
    )
)
FUSED = register(
    FusedOp(
        FUSED_TOY_SCALE,
        patterns=((Step(TOY_SCALE),),),
        dims=_dims,
        build_kernel=lambda node, kernels: kernels[Role.NONE],
        reference=_fused_reference,
        kernels={Schedule.DEFAULT: KERNEL},
        call_args=_call_args,
        scratch_bytes=lambda dims, variant, tile: toy_scale_rows_s8_scratch_size(dims.dim),
        inplace=lambda body, output: ((body[Role.NONE].inputs[0], output),),
        c_header=C_HEADER,
        c_source=C_SOURCE,
        c_name="toy_scale",
    )
)

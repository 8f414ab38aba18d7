"""linear: (T, in) -> (T, out), y = x W^T + b; int8 weights per output channel (mcuf_linear_s8), or
int4 (qmax 7) packed two per byte when the node's ``weight_bits`` is 4 (weight_format WEIGHTS_S4)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.base import Features, PrimitiveOp, TrainContext, register, zeros_s8, zeros_s32


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    y = args[0] @ node.attrs.weight.T
    return y + node.attrs.bias if node.attrs.bias is not None else y


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    src, out = q[node.inputs[0]], q[node.outputs[0]]
    a = node.attrs
    qmax = qp.INT4_QMAX if a.weight_bits == 4 else qp.INT8_QMAX
    p = qp.linear_params(a.weight, a.bias, src.scale, src.zero_point, out.scale, out.zero_point, weight_qmax=qmax)
    return p.packed_s4() if a.weight_bits == 4 else p


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(node.kernel, qp.LinearParams)
    return ref.linear(node.kernel, args[0])


def _train_forward(node: Node, args: list, ctx: TrainContext):
    from mcuformer.codegen.fake_quant import linear_forward  # lazy: torch, for training only

    return ctx.output(node, linear_forward(ctx, node, args[0]))


def _shape_key(node: Node, graph: Graph) -> tuple[int, ...]:
    a = node.attrs
    return a.in_features, a.out_features, int(a.has_bias), qp.WEIGHT_FORMAT_OF_BITS[a.weight_bits]


def params_for_shapes(
    in_features: int, out_features: int, has_bias: int, weight_format: int = qp.WEIGHTS_S8
) -> KernelParams:
    """Zero-filled parameters of these shapes: the weight array's bytes are what lowering emits
    (packed int4 rows of (in_features + 1) // 2 bytes, padding included)."""
    bias = zeros_s32(out_features) if has_bias else None
    weights = zeros_s8(out_features, qp.weight_row_bytes(in_features, weight_format))
    return qp.LinearParams(
        in_features,
        out_features,
        0,
        0,
        -128,
        127,
        weights,
        bias,
        zeros_s32(out_features),
        zeros_s32(out_features),
        weight_format,
    )


def _features(node: Node, graph: Graph) -> Features:
    rows = graph.tensors[node.inputs[0]].shape[0]
    a = node.attrs
    return {"macs": rows * a.in_features * a.out_features, "outputs": rows * a.out_features, "rows": rows}


LINEAR = register(
    PrimitiveOp(
        Op.LINEAR,
        _evaluate,
        _quantize,
        _reference,
        _shape_key,
        params_for_shapes,
        _features,
        train_forward=_train_forward,
    )
)

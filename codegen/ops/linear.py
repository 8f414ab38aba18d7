"""linear: (T, in) -> (T, out), y = x W^T + b; int8 weights per output channel (mcuf_linear_s8)."""

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
    return qp.linear_params(node.attrs.weight, node.attrs.bias, src.scale, src.zero_point, out.scale, out.zero_point)


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(node.kernel, qp.LinearParams)
    return ref.linear(node.kernel, args[0])


def _train_forward(node: Node, args: list, ctx: TrainContext):
    from mcuformer.codegen.fake_quant import linear_forward  # lazy: torch, for training only

    return ctx.output(node, linear_forward(ctx, node, args[0]))


def _shape_key(node: Node, graph: Graph) -> tuple[int, ...]:
    return node.attrs.in_features, node.attrs.out_features, int(node.attrs.has_bias)


def params_for_shapes(in_features: int, out_features: int, has_bias: int) -> KernelParams:
    bias = zeros_s32(out_features) if has_bias else None
    weights = zeros_s8(out_features, in_features)
    return qp.LinearParams(
        in_features, out_features, 0, 0, -128, 127, weights, bias, zeros_s32(out_features), zeros_s32(out_features)
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

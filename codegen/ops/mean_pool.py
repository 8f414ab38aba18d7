"""mean_pool: (T, E) -> (1, E), the mean over tokens [first_token, T) (the pooling loops of the heads)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.base import Features, PrimitiveOp, TrainContext, register, unused_shape_key


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    return args[0][:, node.attrs.first_token :].mean(axis=1, keepdims=True)


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    src, out = q[node.inputs[0]], q[node.outputs[0]]
    tokens = graph.tensors[node.inputs[0]].shape[0] - node.attrs.first_token
    return qp.mean_pool_params(tokens, src.scale, src.zero_point, out.scale, out.zero_point)


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    k = node.kernel
    assert isinstance(k, qp.MeanPool)
    r = k.requant
    return ref.mean_pool(args[0], node.attrs.first_token, k.input_offset, r.multiplier, r.shift, k.output_offset)


def _train_forward(node: Node, args: list, ctx: TrainContext):
    """The kernel itself on the integer rows (its requantization rounds twice with the small shifts of a
    mean: up to 1 LSB from the mean rounded once); gradient: the float mean's."""
    from mcuformer.codegen.fake_quant import from_int, straight_through, to_int  # lazy: torch, for training only

    first, src = node.attrs.first_token, ctx.qparams(node.inputs[0])
    soft = args[0][:, first:].mean(dim=1, keepdim=True)
    out = ctx.observe(node, soft)
    k = qp.mean_pool_params(args[0].shape[1] - first, src.scale, src.zero_point, out.scale, out.zero_point)
    exact = ref.mean_pool(to_int(args[0], src), first, k.input_offset, k.requant.multiplier, k.requant.shift,
                          k.output_offset)  # fmt: skip
    return straight_through(soft, from_int(exact, out, soft))


def params_for_shapes() -> KernelParams:  # no arrays
    return qp.MeanPool(0, 0, qp.Requant(0, 0))


def _features(node: Node, graph: Graph) -> Features:
    return {"elementwise": math.prod(graph.tensors[node.inputs[0]].shape)}


MEAN_POOL = register(
    PrimitiveOp(
        Op.MEAN_POOL,
        _evaluate,
        _quantize,
        _reference,
        unused_shape_key,
        params_for_shapes,
        _features,
        train_forward=_train_forward,
    )
)

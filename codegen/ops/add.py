"""add: a (T, E) + b (T, E), TFLite's int8 ADD (mcuf_add_s8); the residual connections."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.base import Features, PrimitiveOp, TrainContext, register, unused_shape_key


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    return args[0] + args[1]


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    a, b, out = (q[name] for name in (*node.inputs, node.outputs[0]))
    return qp.add_params(a.scale, a.zero_point, b.scale, b.zero_point, out.scale, out.zero_point)


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(node.kernel, qp.AddParams)
    return ref.add(node.kernel, args[0], args[1])


def _train_forward(node: Node, args: list, ctx: TrainContext):
    return ctx.output(node, args[0] + args[1])  # TFLite ADD rounds each input on a 2^20 finer grid first


def params_for_shapes() -> KernelParams:  # no arrays
    r = qp.Requant(0, 0)
    return qp.AddParams(0, 0, 0, 0, r, r, r, -128, 127)


def _features(node: Node, graph: Graph) -> Features:
    return {"elementwise": math.prod(graph.tensors[node.inputs[0]].shape)}


ADD = register(
    PrimitiveOp(
        Op.ADD,
        _evaluate,
        _quantize,
        _reference,
        unused_shape_key,
        params_for_shapes,
        _features,
        train_forward=_train_forward,
    )
)

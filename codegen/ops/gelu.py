"""gelu: elementwise GELU (torch's erf or tanh form) as a 256-entry int8 table (mcuf_lut_s8)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.special import erf

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.base import Features, PrimitiveOp, TrainContext, register, unused_shape_key, zeros_s8


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    if node.attrs.approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    src, out = q[node.inputs[0]], q[node.outputs[0]]
    table = qp.gelu_table(src.scale, src.zero_point, out.scale, out.zero_point, node.attrs.approximate)
    return qp.LutParams(table)


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(node.kernel, qp.LutParams)
    return ref.lut(node.kernel.table, args[0])


def _train_forward(node: Node, args: list, ctx: TrainContext):
    """The kernel's table itself on the integer inputs (gradient: the float GELU's)."""
    import torch.nn.functional as F

    from mcuformer.codegen.fake_quant import from_int, straight_through, to_int  # lazy: torch, for training only

    src = ctx.qparams(node.inputs[0])
    soft = F.gelu(args[0], approximate=node.attrs.approximate)
    out = ctx.observe(node, soft)
    table = qp.gelu_table(src.scale, src.zero_point, out.scale, out.zero_point, node.attrs.approximate)
    return straight_through(soft, from_int(ref.lut(table, to_int(args[0], src)), out, soft))


def params_for_shapes() -> KernelParams:
    return qp.LutParams(zeros_s8(256))


def _features(node: Node, graph: Graph) -> Features:
    return {"elementwise": math.prod(graph.tensors[node.inputs[0]].shape)}


GELU = register(
    PrimitiveOp(
        Op.GELU,
        _evaluate,
        _quantize,
        _reference,
        unused_shape_key,
        params_for_shapes,
        _features,
        train_forward=_train_forward,
    )
)

"""softmax: (H, T, T) -> probabilities over the last axis, output scale 1/256 and zero point -128
(mcuf_softmax_s8, a 256-entry exp table)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.base import Features, PrimitiveOp, TrainContext, register, unused_shape_key, zeros_s32

PROBS_QPARAMS = QParams(qp.PROB_SCALE, qp.PROB_ZERO_POINT)  # the kernel's contract


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    z = np.exp(args[0] - args[0].max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    return qp.softmax_params(graph.tensors[node.inputs[0]].shape[-1], q[node.inputs[0]].scale)


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(node.kernel, qp.SoftmaxParams)
    return ref.softmax(node.kernel, args[0])


def _train_forward(node: Node, args: list, ctx: TrainContext):
    """The kernel itself (its exp table, integer normalisation) on the integer scores (gradient: float softmax)."""
    from mcuformer.codegen.fake_quant import from_int, straight_through, to_int  # lazy: torch, for training only

    src = ctx.qparams(node.inputs[0])
    soft = args[0].softmax(dim=-1)
    exact = ref.softmax(qp.softmax_params(args[0].shape[-1], src.scale), to_int(args[0], src))
    return straight_through(soft, from_int(exact, ctx.observe(node, soft), soft))


def params_for_shapes() -> KernelParams:  # the table does not depend on the length
    return qp.SoftmaxParams(0, zeros_s32(256))


def _features(node: Node, graph: Graph) -> Features:
    heads, tokens, _ = graph.tensors[node.inputs[0]].shape
    return {"softmax": heads * tokens * tokens}


SOFTMAX = register(
    PrimitiveOp(
        Op.SOFTMAX,
        _evaluate,
        _quantize,
        _reference,
        unused_shape_key,
        params_for_shapes,
        _features,
        output_qparams=lambda node, q: PROBS_QPARAMS,
        train_forward=_train_forward,
    )
)

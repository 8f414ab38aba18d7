"""attn_av: probs (H, T, T), v (T, E) -> (T, E), the heads' weighted sums concatenated
(mcuf_attn_weighted_sum_s8)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.attn_scores import head_columns, split_heads
from mcuformer.codegen.ops.base import Features, PrimitiveOp, TrainContext, register, unused_shape_key


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    out = args[0] @ split_heads(args[1], node.attrs.heads)  # (B, H, T, Dh)
    b, h, t, d = out.shape
    return out.transpose(0, 2, 1, 3).reshape(b, t, h * d)


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    tokens, dim = graph.tensors[node.inputs[1]].shape
    return qp.attn_av_params(tokens, dim // node.attrs.heads, q[node.inputs[1]], q[node.outputs[0]])


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:  # (B, H, T, T), (B, T, E) -> (B, T, E)
    assert isinstance(node.kernel, qp.AttnHeadParams)
    (probs, v), heads = args, node.attrs.heads
    outs = [ref.attn_weighted_sum(node.kernel, probs[:, h], head_columns(v, heads, h)) for h in range(heads)]
    return np.concatenate(outs, axis=-1)


def _train_forward(node: Node, args: list, ctx: TrainContext):
    out = args[0] @ split_heads(args[1], node.attrs.heads)  # (B, H, T, Dh)
    b, h, t, d = out.shape
    return ctx.output(node, out.swapaxes(1, 2).reshape(b, t, h * d))


def params_for_shapes() -> KernelParams:  # no arrays
    return qp.AttnHeadParams(0, 0, 0, 0, 0, 0, 0, qp.Requant(0, 0), qp.Requant(0, 0))


def _features(node: Node, graph: Graph) -> Features:
    tokens, dim = graph.tensors[node.outputs[0]].shape
    return {"attn_macs": tokens * tokens * dim}


ATTN_AV = register(
    PrimitiveOp(
        Op.ATTN_AV,
        _evaluate,
        _quantize,
        _reference,
        unused_shape_key,
        params_for_shapes,
        _features,
        train_forward=_train_forward,
    )
)

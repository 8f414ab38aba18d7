"""attn_scores: q (T, E), k (T, E) -> scores (H, T, T) per head, scaled by 1/sqrt(E/H) (mcuf_attn_scores_s8)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.base import Features, PrimitiveOp, TrainContext, register, unused_shape_key


def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(B, T, E) -> (B, H, T, E/H)."""
    b, t, e = x.shape
    return x.reshape(b, t, heads, e // heads).swapaxes(1, 2)  # numpy arrays and torch tensors alike


def head_columns(x: np.ndarray, heads: int, h: int) -> np.ndarray:
    """Head h's columns of (..., E)."""
    dh = x.shape[-1] // heads
    return x[..., h * dh : (h + 1) * dh]


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    q, k = (split_heads(t, node.attrs.heads) for t in args)
    return q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])  # (B, H, T, T)


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    tokens, dim = graph.tensors[node.inputs[0]].shape
    ins = [q[name] for name in node.inputs]
    return qp.attn_scores_params(tokens, dim // node.attrs.heads, ins[0], ins[1], q[node.outputs[0]])


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:  # -> (B, H, T, T)
    assert isinstance(node.kernel, qp.AttnHeadParams)
    (q, k), heads = args, node.attrs.heads
    scores = [ref.attn_scores(node.kernel, head_columns(q, heads, h), head_columns(k, heads, h)) for h in range(heads)]
    return np.stack(scores, axis=1)


def _train_forward(node: Node, args: list, ctx: TrainContext):
    q, k = (split_heads(t, node.attrs.heads) for t in args)  # (B, H, T, Dh)
    return ctx.output(node, q @ k.transpose(-2, -1) / float(np.sqrt(q.shape[-1])))  # (B, H, T, T)


def params_for_shapes() -> KernelParams:  # no arrays
    return qp.AttnHeadParams(0, 0, 0, 0, 0, 0, 0, qp.Requant(0, 0), qp.Requant(0, 0))


def _features(node: Node, graph: Graph) -> Features:
    tokens, dim = graph.tensors[node.inputs[1]].shape
    return {"attn_macs": tokens * tokens * dim}


ATTN_SCORES = register(
    PrimitiveOp(
        Op.ATTN_SCORES,
        _evaluate,
        _quantize,
        _reference,
        unused_shape_key,
        params_for_shapes,
        _features,
        train_forward=_train_forward,
    )
)

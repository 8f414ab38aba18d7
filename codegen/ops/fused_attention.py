"""fused_attention: the attention block row by row, the residual stream overwritten in place.
Schedules: all_heads (mcuf_attention_rowwise_s8: K and V of every head resident, token-tiled) and
per_head (mcuf_attention_perhead_s8: one head's K_h, V_h plus the head outputs, LN recomputed per head)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from mcuformer.codegen.ir import FusedDims, Graph, KernelParams, Node, Op, Role, Schedule
from mcuformer.codegen.ops.base import Body, CallContext, Features, FusedOp, Step, register


@dataclass(frozen=True)
class AttentionDims(FusedDims):
    heads: int
    qkv_rank: int  # 0 = dense


def _pattern(low_rank: bool) -> tuple[Step, ...]:
    down = (Step(Op.LINEAR, Role.QKV_DOWN),) if low_rank else ()
    return (
        Step(Op.LAYERNORM),
        *down,
        Step(Op.LINEAR, Role.Q),
        Step(Op.LINEAR, Role.K),
        Step(Op.LINEAR, Role.V),
        Step(Op.ATTN_SCORES),
        Step(Op.SOFTMAX),
        Step(Op.ATTN_AV),
        Step(Op.LINEAR, Role.PROJ),
        Step(Op.ADD),
    )


def _dims(body: Body, graph: Graph) -> FusedDims:
    tokens, dim = graph.tensors[body[Role.LN].inputs[0]].shape
    down = body.get(Role.QKV_DOWN)
    return AttentionDims(tokens, dim, body[Role.SCORES].attrs.heads, down.attrs.out_features if down else 0)


def _scratch(dims: FusedDims, variant: Schedule, tile: int) -> int:
    assert isinstance(dims, AttentionDims)
    if variant == Schedule.PER_HEAD:
        return scratch.attention_perhead_s8_scratch_size(dims.tokens, dims.dim, dims.qkv_rank, dims.heads)
    return scratch.attention_rowwise_s8_scratch_size(dims.tokens, dims.dim, dims.qkv_rank, tile)


def _build_kernel(node: Node, k: Mapping[Role, KernelParams]) -> KernelParams:
    dims = node.dims
    assert isinstance(dims, AttentionDims)
    down = k.get(Role.QKV_DOWN)
    return qp.AttentionParams(
        tokens=dims.tokens,
        dim=dims.dim,
        heads=dims.heads,
        ln=k[Role.LN],
        qkv_rank=dims.qkv_rank,
        qkv_down=down if down else qp.LinearParams.empty(),
        q=k[Role.Q],
        k=k[Role.K],
        v=k[Role.V],
        head=qp.merge_attn_head(k[Role.SCORES], k[Role.AV]),
        softmax=k[Role.SOFTMAX],
        proj=k[Role.PROJ],
        residual=k[Role.RESIDUAL],
        tile=node.tile,
    )


def _reference(node: Node, x: np.ndarray) -> np.ndarray:  # both schedules give these integers
    assert isinstance(node.kernel, qp.AttentionParams)
    return ref.attention_rowwise(node.kernel, x)


def _call_args(node: Node, c: CallContext) -> tuple[str, ...]:  # workspace: (K, V) or (K_h, V_h, head outputs)
    return (c.params, c.arena(node.inputs[0]), *(c.arena(t) for t in node.workspace), c.scratch)


def _features(node: Node) -> Features:
    """per_head recomputes the LN (and the low-rank down-projection) for H - 1 more heads, in both passes."""
    dims = node.dims
    assert isinstance(dims, AttentionDims)
    if node.variant != Schedule.PER_HEAD:
        return {}
    extra = (dims.heads - 1) * 2 * dims.tokens
    return {"norm": extra * dims.dim, "macs": extra * dims.dim * dims.qkv_rank}


FUSED_ATTENTION = register(
    FusedOp(
        Op.FUSED_ATTENTION,
        patterns=(_pattern(False), _pattern(True)),
        dims=_dims,
        build_kernel=_build_kernel,
        reference=_reference,
        kernels={Schedule.ALL_HEADS: "mcuf_attention_rowwise_s8", Schedule.PER_HEAD: "mcuf_attention_perhead_s8"},
        call_args=_call_args,
        scratch_bytes=_scratch,
        variant=lambda body: Schedule.ALL_HEADS,
        tiled_variants=frozenset({Schedule.ALL_HEADS}),
        inplace=lambda body, output: ((body[Role.LN].inputs[0], output),),  # token overwriting
        workspace=lambda body: (body[Role.K].outputs[0], body[Role.V].outputs[0]),
        features=_features,
    )
)

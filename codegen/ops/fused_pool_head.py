"""fused_pool_head: final LayerNorm of every token, mean pool, classifier (mcuf_pool_head_s8)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from mcuformer.codegen.ir import FusedDims, Graph, KernelParams, Node, Op, Role, Schedule
from mcuformer.codegen.ops.base import Body, CallContext, FusedOp, Step, register


@dataclass(frozen=True)
class HeadDims(FusedDims):
    classes: int


def head_call_args(node: Node, c: CallContext) -> tuple[str, ...]:
    """The heads' C arguments: params, the token matrix, scratch, the caller's logits."""
    return (c.params, c.arena(node.inputs[0]), c.scratch, "logits")


def head_dims(body: Body, graph: Graph, rows_of: Role) -> HeadDims:
    tokens, dim = graph.tensors[body[rows_of].inputs[0]].shape
    return HeadDims(tokens, dim, body[Role.CLASSIFIER].attrs.out_features)


def pool_scratch(dims: FusedDims, variant: Schedule, tile: int) -> int:
    return scratch.pool_head_s8_scratch_size(dims.dim)


def _build_kernel(node: Node, k: Mapping[Role, KernelParams]) -> KernelParams:
    dims, pool, head = node.dims, k[Role.POOL], k[Role.CLASSIFIER]
    assert isinstance(dims, HeadDims) and isinstance(pool, qp.MeanPool) and isinstance(head, qp.LinearParams)
    return qp.PoolHeadParams(
        tokens=dims.tokens,
        dim=dims.dim,
        classes=head.out_features,
        ln=k[Role.LN],
        pool_input_offset=pool.input_offset,
        pool_output_offset=pool.output_offset,
        pool=pool.requant,
        head=head,
    )


def _reference(node: Node, x: np.ndarray) -> np.ndarray:
    assert isinstance(node.kernel, qp.PoolHeadParams)
    return ref.pool_head(node.kernel, x)


FUSED_POOL_HEAD = register(
    FusedOp(
        Op.FUSED_POOL_HEAD,
        patterns=((Step(Op.LAYERNORM), Step(Op.MEAN_POOL), Step(Op.LINEAR)),),
        dims=lambda body, graph: head_dims(body, graph, Role.LN),
        build_kernel=_build_kernel,
        reference=_reference,
        kernels={Schedule.DEFAULT: "mcuf_pool_head_s8"},
        call_args=head_call_args,
        scratch_bytes=pool_scratch,
    )
)

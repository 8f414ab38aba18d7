"""fused_pool_norm_head: mean pool over the patch tokens, then LayerNorm (timm's fc_norm), classifier
(mcuf_pool_norm_head_s8)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import FusedDims, Graph, KernelParams, Node, Op, Role, Schedule
from mcuformer.codegen.ops.base import Body, FusedOp, Step, register
from mcuformer.codegen.ops.fused_pool_head import HeadDims, head_call_args, pool_scratch


@dataclass(frozen=True)
class PoolNormHeadDims(HeadDims):
    first_token: int  # rows before it (prefix tokens) are not averaged


def _dims(body: Body, graph: Graph) -> FusedDims:
    pool = body[Role.POOL]
    tokens, dim = graph.tensors[pool.inputs[0]].shape
    return PoolNormHeadDims(tokens, dim, body[Role.CLASSIFIER].attrs.out_features, pool.attrs.first_token)


def _build_kernel(node: Node, k: Mapping[Role, KernelParams]) -> KernelParams:
    dims, pool, head = node.dims, k[Role.POOL], k[Role.CLASSIFIER]
    assert isinstance(dims, PoolNormHeadDims) and isinstance(pool, qp.MeanPool) and isinstance(head, qp.LinearParams)
    return qp.PoolNormHeadParams(
        tokens=dims.tokens,
        first_token=dims.first_token,
        dim=dims.dim,
        classes=head.out_features,
        pool_input_offset=pool.input_offset,
        pool_output_offset=pool.output_offset,
        pool=pool.requant,
        ln=k[Role.LN],
        head=head,
    )


def _reference(node: Node, x: np.ndarray) -> np.ndarray:
    assert isinstance(node.kernel, qp.PoolNormHeadParams)
    return ref.pool_norm_head(node.kernel, x)


FUSED_POOL_NORM_HEAD = register(
    FusedOp(
        Op.FUSED_POOL_NORM_HEAD,
        patterns=((Step(Op.MEAN_POOL), Step(Op.LAYERNORM), Step(Op.LINEAR)),),
        dims=_dims,
        build_kernel=_build_kernel,
        reference=_reference,
        kernels={Schedule.DEFAULT: "mcuf_pool_norm_head_s8"},
        call_args=head_call_args,
        scratch_bytes=pool_scratch,
    )
)

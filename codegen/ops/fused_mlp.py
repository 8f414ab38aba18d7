"""fused_mlp: the MLP block row by row (mcuf_mlp_rowwise_s8, token-tiled), residual stream in place;
fc1 and fc2 dense or low rank."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from mcuformer.codegen.ir import FusedDims, Graph, KernelParams, Node, Op, Role, Schedule
from mcuformer.codegen.ops.base import Body, CallContext, FusedOp, Step, register


@dataclass(frozen=True)
class MLPDims(FusedDims):
    hidden: int
    fc1_rank: int  # 0 = dense
    fc2_rank: int


_DENSE = {Role.FC1: (Role.FC1,), Role.FC2: (Role.FC2,)}
_LOW_RANK = {Role.FC1: (Role.FC1_DOWN, Role.FC1_UP), Role.FC2: (Role.FC2_DOWN, Role.FC2_UP)}
_DOWN = {Role.FC1: Role.FC1_DOWN, Role.FC2: Role.FC2_DOWN}
_UP = {Role.FC1: Role.FC1_UP, Role.FC2: Role.FC2_UP}


def _pattern(fc1: tuple[Role, ...], fc2: tuple[Role, ...]) -> tuple[Step, ...]:
    linears = [Step(Op.LINEAR, role) for role in fc1], [Step(Op.LINEAR, role) for role in fc2]
    return (Step(Op.LAYERNORM), *linears[0], Step(Op.GELU), *linears[1], Step(Op.ADD))


def _dims(body: Body, graph: Graph) -> FusedDims:
    tokens, dim = graph.tensors[body[Role.LN].inputs[0]].shape

    def rank(layer: Role) -> int:
        down = body.get(_DOWN[layer])
        return down.attrs.out_features if down else 0

    hidden = graph.tensors[body[Role.GELU].inputs[0]].shape[1]
    return MLPDims(tokens, dim, hidden, rank(Role.FC1), rank(Role.FC2))


def _scratch(dims: FusedDims, variant: Schedule, tile: int) -> int:
    assert isinstance(dims, MLPDims)
    return scratch.mlp_rowwise_s8_scratch_size(dims.dim, dims.hidden, dims.fc1_rank, dims.fc2_rank, tile)


def _lowrank(k: Mapping[Role, KernelParams], layer: Role) -> qp.LowRankParams:
    if layer in k:
        return qp.lowrank_params(k[layer])
    return qp.lowrank_params(k[_UP[layer]], k[_DOWN[layer]])


def _build_kernel(node: Node, k: Mapping[Role, KernelParams]) -> KernelParams:
    dims = node.dims
    assert isinstance(dims, MLPDims)
    gelu = k[Role.GELU]
    assert isinstance(gelu, qp.LutParams)
    return qp.MLPParams(
        tokens=dims.tokens,
        dim=dims.dim,
        hidden=dims.hidden,
        ln=k[Role.LN],
        fc1=_lowrank(k, Role.FC1),
        gelu_table=gelu.table,
        fc2=_lowrank(k, Role.FC2),
        residual=k[Role.RESIDUAL],
        tile=node.tile,
    )


def _reference(node: Node, x: np.ndarray) -> np.ndarray:
    assert isinstance(node.kernel, qp.MLPParams)
    return ref.mlp_rowwise(node.kernel, x)


def _call_args(node: Node, c: CallContext) -> tuple[str, ...]:
    return (c.params, c.arena(node.inputs[0]), c.scratch)


FUSED_MLP = register(
    FusedOp(
        Op.FUSED_MLP,
        patterns=tuple(
            _pattern(fc1, fc2)
            for fc1 in (_DENSE[Role.FC1], _LOW_RANK[Role.FC1])
            for fc2 in (_DENSE[Role.FC2], _LOW_RANK[Role.FC2])
        ),  # fmt: skip
        dims=_dims,
        build_kernel=_build_kernel,
        reference=_reference,
        kernels={Schedule.DEFAULT: "mcuf_mlp_rowwise_s8"},
        call_args=_call_args,
        scratch_bytes=_scratch,
        tiled_variants=frozenset({Schedule.DEFAULT}),
        inplace=lambda body, output: ((body[Role.LN].inputs[0], output),),  # token overwriting
    )
)

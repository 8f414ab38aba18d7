"""fused_token_head: final LayerNorm of the prefix (class / distillation) token rows, concatenated,
classifier (mcuf_token_head_s8)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from mcuformer.codegen.ir import FusedDims, Graph, KernelParams, Node, Op, Role, Schedule
from mcuformer.codegen.ops.base import Body, FusedOp, Step, register
from mcuformer.codegen.ops.fused_pool_head import HeadDims, head_call_args
from mcuformer.codegen.ops.readout import ReadOut


@dataclass(frozen=True)
class TokenHeadDims(HeadDims):
    readout: int  # rows read out


def _dims(body: Body, graph: Graph) -> FusedDims:
    tokens, dim = graph.tensors[body[Role.LN].inputs[0]].shape
    readout = graph.tensors[body[Role.READOUT].outputs[0]].shape[1] // dim
    return TokenHeadDims(tokens, dim, body[Role.CLASSIFIER].attrs.out_features, readout)


def _scratch(dims: FusedDims, variant: Schedule, tile: int) -> int:
    assert isinstance(dims, TokenHeadDims)
    return scratch.token_head_s8_scratch_size(dims.readout, dims.dim)


def _build_kernel(node: Node, k: Mapping[Role, KernelParams]) -> KernelParams:
    dims, readout, head = node.dims, k[Role.READOUT], k[Role.CLASSIFIER]
    assert isinstance(dims, TokenHeadDims) and isinstance(readout, ReadOut) and isinstance(head, qp.LinearParams)
    return qp.TokenHeadParams(
        tokens=dims.tokens, dim=dims.dim, classes=head.out_features, readout=readout.rows, ln=k[Role.LN], head=head
    )


def _reference(node: Node, x: np.ndarray) -> np.ndarray:
    assert isinstance(node.kernel, qp.TokenHeadParams)
    return ref.token_head(node.kernel, x)


FUSED_TOKEN_HEAD = register(
    FusedOp(
        Op.FUSED_TOKEN_HEAD,
        patterns=((Step(Op.LAYERNORM), Step(Op.READOUT), Step(Op.LINEAR)),),
        dims=_dims,
        build_kernel=_build_kernel,
        reference=_reference,
        kernels={Schedule.DEFAULT: "mcuf_token_head_s8"},
        call_args=head_call_args,
        scratch_bytes=_scratch,
    )
)

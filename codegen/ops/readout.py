"""readout: (T, E) -> (1, K*E), rows 0..K-1 concatenated (class / distillation tokens). A copy: the
output keeps the input's quantization, and the token head kernel does it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.base import PrimitiveOp, no_features, register, unused_shape_key


@dataclass(frozen=True)
class ReadOut:
    """The readout's integer parameters (part of mcuf_token_head_params: its ``readout`` field)."""

    C_TYPE: ClassVar[str] = ""
    rows: int


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    rows = node.attrs.out_features // args[0].shape[-1]  # out_features = rows * E
    return args[0][:, :rows].reshape(len(args[0]), 1, -1)


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    return ReadOut(rows=node.attrs.out_features // graph.tensors[node.inputs[0]].shape[1])


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:  # (B, T, E) -> (B, 1, rows * E), a copy
    assert isinstance(node.kernel, ReadOut)
    return args[0][:, : node.kernel.rows].reshape(len(args[0]), 1, -1)


READOUT = register(
    PrimitiveOp(
        Op.READOUT,
        _evaluate,
        _quantize,
        _reference,
        unused_shape_key,
        lambda: ReadOut(0),
        no_features,
        output_qparams=lambda node, q: q[node.inputs[0]],
        train_forward=lambda node, args, ctx: _evaluate(node, args),  # a copy: already on its grid
    )
)

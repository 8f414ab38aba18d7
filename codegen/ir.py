"""The compiler IR: frozen dataclasses for tensors, nodes and graphs. Every pass is Graph -> Graph.

Two levels live in the same IR:
- primitive nodes (what the frontend emits, one per math op: LINEAR, LAYERNORM, ATTN_SCORES...);
- fused nodes (what passes/fuse.py makes: FUSED_ATTENTION, FUSED_MLP, ...) whose ``body`` keeps the
  primitive nodes they replace, so the naive planner and the unfused reference can still see them.

Float weights are attributes of primitive nodes (numpy arrays, or None for a shapes-only graph used by
the search's cost model). After quantization every node carries ``kernel``: the integer parameter
dataclass of codegen.qparams that mirrors the C param struct of the kernel that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np


class Op(str, Enum):
    # primitive ops
    PATCH_EMBED = "patch_embed"  # image (H, W, C) -> X (K+T, E); weight (E, P*P*C), token_bias (T, E), prefix (K, E)
    LAYERNORM = "layernorm"  # (T, E) -> (T, E); gamma, beta (E,)
    LINEAR = "linear"  # (T, in) -> (T, out); weight (out, in), bias (out,) or None
    ATTN_SCORES = "attn_scores"  # q (T, E), k (T, E) -> scores (H, T, T), scaled by 1/sqrt(E/H)
    SOFTMAX = "softmax"  # (H, T, T) -> probs (H, T, T), over the last axis
    ATTN_AV = "attn_av"  # probs (H, T, T), v (T, E) -> (T, E) (heads concatenated)
    ADD = "add"  # a (T, E), b (T, E) -> (T, E)
    GELU = "gelu"  # elementwise
    MEAN_POOL = "mean_pool"  # (T, E) -> (1, E), over tokens [first_token, T)
    READOUT = "readout"  # (T, E) -> (1, K*E): rows 0..K-1 concatenated (class / distillation tokens)
    # fused ops (passes/fuse.py)
    FUSED_PATCH_EMBED = "fused_patch_embed"  # stripe by stripe from an input callback
    FUSED_ATTENTION = "fused_attention"  # row-wise attention block, residual in place
    FUSED_MLP = "fused_mlp"  # row-wise MLP block, residual in place
    FUSED_POOL_HEAD = "fused_pool_head"  # final LN + mean pool + classifier
    FUSED_TOKEN_HEAD = "fused_token_head"  # final LN of the prefix tokens + readout + classifier
    FUSED_POOL_NORM_HEAD = "fused_pool_norm_head"  # mean pool + final LN (timm fc_norm) + classifier


FUSED_OPS = frozenset(
    {
        Op.FUSED_PATCH_EMBED,
        Op.FUSED_ATTENTION,
        Op.FUSED_MLP,
        Op.FUSED_POOL_HEAD,
        Op.FUSED_TOKEN_HEAD,
        Op.FUSED_POOL_NORM_HEAD,
    }
)


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"  # float32 before quantization, int8 after
    qparams: QParams | None = None

    @property
    def nbytes(self) -> int:
        size = 1
        for dim in self.shape:
            size *= dim
        return size * (1 if self.dtype == "int8" else 4)


@dataclass(frozen=True)
class Attrs:
    """Op attributes; a field is used by the ops noted beside it. Arrays are float weights."""

    weight: np.ndarray | None = None  # LINEAR (out, in); PATCH_EMBED (E, P*P*C)
    bias: np.ndarray | None = None  # LINEAR (out,); PATCH_EMBED token bias (T, E)
    gamma: np.ndarray | None = None  # LAYERNORM
    beta: np.ndarray | None = None  # LAYERNORM
    eps: float = 0.0  # LAYERNORM: the model's epsilon (torch.nn.LayerNorm.eps)
    prefix: np.ndarray | None = None  # PATCH_EMBED: (K, E) constant rows before the patch tokens (+ pos)
    first_token: int = 0  # MEAN_POOL: rows before it (prefix tokens) are not averaged
    approximate: str = "none"  # GELU: torch's form, 'none' (erf) or 'tanh'
    heads: int = 0  # ATTN_SCORES, ATTN_AV, FUSED_ATTENTION
    patch: int = 0  # PATCH_EMBED
    in_features: int = 0  # LINEAR
    out_features: int = 0  # LINEAR
    role: str = ""  # the node's role inside its fusion pattern, e.g. "q", "fc1.down"


@dataclass(frozen=True, eq=False)
class Node:
    name: str
    op: Op
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Attrs = field(default_factory=Attrs)
    scope: str = ""  # module path of the model, e.g. "blocks.0.attn": the unit a fusion replaces
    kernel: Any = None  # codegen.qparams dataclass after quantization
    body: tuple[Node, ...] = ()  # fused nodes: the primitive nodes they replace
    inplace: tuple[tuple[str, str], ...] = ()  # (input, output) pairs that share one buffer
    workspace: tuple[str, ...] = ()  # tensors alive only during this node (e.g. K, V)
    scratch_bytes: int = 0  # kernel scratch (from the *_scratch_size contract)
    variant: str = ""  # schedule of a fused node, e.g. "all_heads" / "per_head" attention
    tile: int = 1  # tokens per pass over the weights (fused MLP, row-wise attention): 1, 2 or 4


@dataclass(frozen=True, eq=False)
class Graph:
    tensors: dict[str, Tensor]
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def with_nodes(self, nodes: tuple[Node, ...], tensors: dict[str, Tensor] | None = None) -> Graph:
        return replace(self, nodes=nodes, tensors=self.tensors if tensors is None else tensors)

    def producers(self) -> dict[str, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        result: dict[str, list[Node]] = {name: [] for name in self.tensors}
        for node in self.nodes:
            for name in node.inputs:
                result[name].append(node)
        return result


class IRError(Exception):
    """The IR or the memory plan violates an invariant (a compiler bug, never a user mistake)."""


def verify_graph(graph: Graph) -> None:
    """Structural invariants: every input is produced before use, each tensor has one producer,
    in-place pairs match in shape and dtype, quantized graphs carry kernels and int8 tensors."""
    defined = set(graph.inputs)
    for node in graph.nodes:
        for name in node.inputs:
            if name not in graph.tensors:
                raise IRError(f"{node.name}: unknown input tensor {name}")
            if name not in defined:
                raise IRError(f"{node.name}: input {name} used before it is produced")
        for name in node.outputs + node.workspace:
            if name not in graph.tensors:
                raise IRError(f"{node.name}: unknown tensor {name}")
            if name in defined:
                raise IRError(f"{node.name}: tensor {name} produced twice")
            defined.add(name)
        for src, dst in node.inplace:
            a, b = graph.tensors[src], graph.tensors[dst]
            if src not in node.inputs or dst not in node.outputs:
                raise IRError(f"{node.name}: in-place pair ({src}, {dst}) is not (input, output)")
            if a.nbytes != b.nbytes:
                raise IRError(f"{node.name}: in-place pair ({src}, {dst}) differs in size")
        if graph.meta.get("quantized") and node.kernel is None:
            raise IRError(f"{node.name}: quantized graph node has no kernel parameters")
    for name in graph.outputs:
        if name not in defined:
            raise IRError(f"graph output {name} is never produced")

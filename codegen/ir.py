"""The compiler IR: frozen dataclasses for tensors, nodes and graphs. Every pass is Graph -> Graph.

Two levels live in the same IR:
- primitive nodes (what the frontend emits, one per math op: linear, layernorm, attn_scores...);
- fused nodes (what passes/fuse.py makes: fused_attention, fused_mlp, ...) whose ``body`` keeps the
  primitive nodes they replace, so the naive planner and the unfused reference can still see them.

An op is a name (a string); what the compiler knows about it lives in ONE definition registered
under that name (codegen.ops: one file per op). ``Op`` lists the built-in names; a new op brings its
own name and registers its definition, without editing this module.

Float weights are attributes of primitive nodes (numpy arrays, or None for a shapes-only graph used by
the search's cost model). After quantization every node carries ``kernel``: the integer parameter
dataclass of codegen.qparams that mirrors the C param struct of the kernel that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import numpy as np


class Op:
    """Names of the built-in ops (a node's ``op``). Not closed: an op file may register any other name."""

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
    CONV2D = "conv2d"  # (H, W, C) -> (H', W', C'): 3x3, pad 1, stride 1|2, ReLU; weight (C', 9*C) (ky, kx, c), bias
    # fused ops (passes/fuse.py)
    FUSED_PATCH_EMBED = "fused_patch_embed"  # stripe by stripe from an input callback (or the stem's map)
    FUSED_CONV2D = "fused_conv2d"  # a stem layer, row by row from the input callback or the arena
    FUSED_ATTENTION = "fused_attention"  # row-wise attention block, residual in place
    FUSED_MLP = "fused_mlp"  # row-wise MLP block, residual in place
    FUSED_POOL_HEAD = "fused_pool_head"  # final LN + mean pool + classifier
    FUSED_TOKEN_HEAD = "fused_token_head"  # final LN of the prefix tokens + readout + classifier
    FUSED_POOL_NORM_HEAD = "fused_pool_norm_head"  # mean pool + final LN (timm fc_norm) + classifier


class Role(StrEnum):
    """A primitive node's role inside its fusion pattern, where two nodes of a pattern have the same op."""

    NONE = ""
    PROJ = "proj"  # the patch embedding; the attention output projection
    LN = "ln"
    QKV_DOWN = "qkv_down"
    Q = "q"
    K = "k"
    V = "v"
    SCORES = "scores"
    SOFTMAX = "softmax"
    AV = "av"
    RESIDUAL = "residual"
    FC1 = "fc1"
    FC1_DOWN = "fc1.down"
    FC1_UP = "fc1.up"
    GELU = "gelu"
    FC2 = "fc2"
    FC2_DOWN = "fc2.down"
    FC2_UP = "fc2.up"
    POOL = "pool"
    READOUT = "readout"
    CLASSIFIER = "classifier"


class Schedule(StrEnum):
    """The schedule variant of a fused node; each (fused op, variant) has its own C kernel."""

    DEFAULT = ""  # the op's only schedule
    ALL_HEADS = "all_heads"  # K and V of all heads resident: fewest instructions
    PER_HEAD = "per_head"  # K_h and V_h of one head + the head outputs: less memory, LN recomputed per head
    PREFIX_TOKENS = "prefix_tokens"  # patch embedding that first writes the class / distillation token rows


class KernelParams(Protocol):
    """A node's integer parameters: a frozen codegen.qparams dataclass (or an op file's own).
    ``C_TYPE`` names the C struct it mirrors; "" for the parameters of a primitive that is only a
    part of a fused kernel's struct (mean pooling, readout), never emitted on its own."""

    C_TYPE: ClassVar[str]


class ArchLike(Protocol):
    """What the compiler reads of a model's architecture (mcuformer.arch.ArchConfig, or the
    ImportedArch of an imported ONNX model)."""

    image_size: int
    in_channels: int
    patch_size: int
    num_classes: int

    @property
    def tokens(self) -> int: ...

    @property
    def num_heads(self) -> tuple[int, ...]: ...

    def short(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


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
    """Op attributes; a field is used by the ops noted beside it. Arrays are float weights. An op
    file with attributes of its own subclasses this dataclass."""

    weight: np.ndarray | None = None  # LINEAR (out, in); PATCH_EMBED (E, P*P*C)
    bias: np.ndarray | None = None  # LINEAR (out,); PATCH_EMBED token bias (T, E)
    has_bias: bool = True  # LINEAR: whether the layer has a bias (also known without weights)
    gamma: np.ndarray | None = None  # LAYERNORM
    beta: np.ndarray | None = None  # LAYERNORM
    eps: float = 0.0  # LAYERNORM: the model's epsilon (torch.nn.LayerNorm.eps)
    prefix: np.ndarray | None = None  # PATCH_EMBED: (K, E) constant rows before the patch tokens (+ pos)
    first_token: int = 0  # MEAN_POOL: rows before it (prefix tokens) are not averaged
    approximate: str = "none"  # GELU: torch's form, 'none' (erf) or 'tanh'
    heads: int = 0  # ATTN_SCORES, ATTN_AV
    patch: int = 0  # PATCH_EMBED
    stride: int = 1  # CONV2D
    in_features: int = 0  # LINEAR
    out_features: int = 0  # LINEAR
    weight_bits: int = 8  # LINEAR: 8 (int8 weights) or 4 (packed int4, mcuf_linear_params.weight_format)
    role: Role = Role.NONE  # the node's role inside its fusion pattern


@dataclass(frozen=True)
class FusedDims:
    """The shapes of a fused node, computed once by the fuse pass; each fused op file subclasses it
    with the dims of its kind (heads, hidden, ranks...)."""

    tokens: int  # rows of the residual stream
    dim: int  # embedding dimension


@dataclass(frozen=True, eq=False)
class Node:
    name: str
    op: str  # the name of a registered op definition (Op.* for the built-ins)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Attrs = field(default_factory=Attrs)
    scope: str = ""  # module path of the model, e.g. "blocks.0.attn": the unit a fusion replaces
    kernel: KernelParams | None = None  # codegen.qparams dataclass after quantization
    body: tuple[Node, ...] = ()  # fused nodes: the primitive nodes they replace
    dims: FusedDims | None = None  # fused nodes: their shapes
    inplace: tuple[tuple[str, str], ...] = ()  # (input, output) pairs that share one buffer
    workspace: tuple[str, ...] = ()  # tensors alive only during this node (e.g. K, V)
    scratch_bytes: int = 0  # kernel scratch (codegen.scratch, the C *_scratch_size contract)
    variant: Schedule = Schedule.DEFAULT  # schedule of a fused node
    tile: int = 1  # tokens per pass over the weights (fused MLP, row-wise attention): 1, 2 or 4


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int  # bytes, multiple of the planner's alignment
    first: int  # first step alive (inclusive)
    last: int  # last step alive (inclusive)
    tensors: tuple[str, ...] = ()
    offset: int = -1

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last

    def overlaps_in_space(self, other: Buffer) -> bool:
        return self.offset < other.offset + other.size and other.offset < self.offset + self.size


@dataclass(frozen=True)
class MemoryPlan:
    buffers: tuple[Buffer, ...]
    arena_bytes: int
    naive_arena_bytes: int
    lower_bound_bytes: int
    steps: int

    def buffer_of(self, tensor: str) -> Buffer:
        for buf in self.buffers:
            if tensor in buf.tensors or buf.name == tensor:
                return buf
        raise KeyError(tensor)

    def offset_of(self, tensor: str) -> int:
        return self.buffer_of(tensor).offset


@dataclass(frozen=True)
class ScratchSplit:
    """The arena plan without the row scratch, and the row scratch's own plan (codegen.regions;
    codegen.lower emits ``scratch_arena + offset`` for scratch arguments)."""

    arena: MemoryPlan
    scratch: MemoryPlan


@dataclass(frozen=True, eq=False)
class Graph:
    tensors: dict[str, Tensor]
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    arch: ArchLike
    quantized: bool = False
    streamed_inputs: tuple[str, ...] = ()  # read stripe by stripe through a callback: not in the arena
    external_outputs: tuple[str, ...] = ()  # caller-owned (the logits): not in the arena
    arena_budget: int | None = None  # arena bytes the schedule choice must fit (None: no budget)
    naive_plan: bool = True  # whether the planner also places the naive op-by-op graph
    plan: MemoryPlan | None = None  # set by passes/plan.py
    scratch_split: ScratchSplit | None = None  # set by codegen.regions when the row scratch moves to a TCM
    input_affine: tuple[np.ndarray, np.ndarray] | None = None  # imported model: its input is x * scale + shift
    import_check_max_abs_diff: float | None = None  # imported model: max |float IR - ONNX model|

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

    def planned(self) -> MemoryPlan:
        """The memory plan (raises IRError before the plan pass)."""
        if self.plan is None:
            raise IRError("the graph has no memory plan yet (run the pipeline)")
        return self.plan

    def arena_plan(self) -> MemoryPlan:
        """The plan of the arena buffer: the whole plan, or its part without the row scratch."""
        return self.scratch_split.arena if self.scratch_split else self.planned()


def has_int4_weights(graph: Graph) -> bool:
    """Whether a linear of ``graph`` (inside fused bodies too) has int4 weights (Attrs.weight_bits 4)."""
    return any(node.attrs.weight_bits == 4 for top in graph.nodes for node in (top.body or (top,)))


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
        if node.body and node.dims is None:
            raise IRError(f"{node.name}: fused node has no dims")
        if graph.quantized and node.kernel is None:
            raise IRError(f"{node.name}: quantized graph node has no kernel parameters")
    for name in graph.outputs:
        if name not in defined:
            raise IRError(f"graph output {name} is never produced")

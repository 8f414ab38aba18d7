"""Op definitions and their registry: what the compiler knows about an op lives in ONE frozen
definition, registered under the op's name by the op's own file (codegen/ops/<op>.py).

- ``PrimitiveOp``: an op of the frontend's graph: float evaluation, quantization rule, integer
  reference on batched whole tensors, the constant arrays it puts in flash (from its parameter
  dataclass built from shapes alone) and its instruction-model features.
- ``FusedOp``: a kernel that runs a sequence of primitive ops row by row: the op sequences it
  matches, its dims, how its C parameters are assembled from its body's, its integer reference
  (row-wise, as the C), its C symbol per schedule and argument list, its scratch, in-place pairs and
  workspace, and optionally a C source of its own (an op that brings its kernel).

The drivers (quantize, float_exec, int_exec, cost, fuse, lower, nas.instr_model) look definitions up
here; none of them names an op. Adding an op = one new file that calls ``register``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mcuformer.codegen.ir import FusedDims, Graph, IRError, KernelParams, Node, QParams, Role, Schedule

# Instruction-model features an op contributes to (nas.instr_model adds the constant): MACs of
# linear layers, their output elements (one requantization each), the rows they run on, attention
# MACs, softmax elements, elementwise elements (tables, adds, pooling), LayerNorm elements.
OP_FEATURES = ("macs", "outputs", "rows", "attn_macs", "softmax", "elementwise", "norm")
Features = dict[str, float]
QuantRule = Callable[[Node, Mapping[str, QParams], Graph], KernelParams]


@dataclass(frozen=True)
class PrimitiveOp:
    name: str
    evaluate: Callable[[Node, list[np.ndarray]], np.ndarray]  # float64, batched: (B, ...) arguments
    quantize: QuantRule  # -> the codegen.qparams dataclass of the node
    reference: Callable[[Node, list[np.ndarray]], np.ndarray]  # integers, batched, calling codegen.ref
    shape_key: Callable[[Node, Graph], tuple[int, ...]]  # the shapes its parameter dataclass depends on
    params_for_shapes: Callable[..., KernelParams]  # (*shape_key) -> zero-filled parameters of those shapes
    features: Callable[[Node, Graph], Features]  # instruction-model features (OP_FEATURES)
    # the output's quantization when the op fixes it (softmax: 1/256, -128; a copy: the input's);
    # None: from the calibrated range
    output_qparams: Callable[[Node, Mapping[str, QParams]], QParams] | None = None
    # quantization-aware training (codegen.fake_quant): (node, torch arguments, context) -> the output in
    # float on the integer kernel's output grid, gradients by the straight-through estimator; None: no QAT
    train_forward: Callable[[Node, list[Any], TrainContext], Any] | None = None


class TrainContext(Protocol):
    """What an op's ``train_forward`` asks of the fake-quantized graph it runs in (codegen.fake_quant):
    its float parameters as torch tensors (trainable where they come from the model), the quantization
    of its tensors, and the fake quantization of its output on the grid the compiler will choose."""

    def param(self, node: Node, field: str) -> Any: ...  # torch tensor of node.attrs.<field>

    def qparams(self, tensor: str) -> QParams: ...

    def weight_qmax(self, node: Node) -> int: ...  # 127 (int8 weights) or 7 (int4)

    def observe(self, node: Node, y: Any) -> QParams: ...  # records y's range (while observing) -> its qparams

    def output(self, node: Node, y: Any) -> Any: ...  # observe, then fake-quantize y on that grid


@dataclass(frozen=True)
class Step:
    """One element of a fused op's pattern: a primitive op, and its role where the pattern has
    several nodes of that op (None: any role)."""

    op: str
    role: Role | None = None


@dataclass(frozen=True)
class CallContext:
    """What a fused op's C argument list is made of: the parameter struct and planned addresses."""

    params: str  # "&<struct symbol>"
    scratch: str  # the node's row scratch
    arena: Callable[[str], str]  # tensor name -> its address in the arena


Body = Mapping[Role, Node]  # a fused node's primitive nodes by role


@dataclass(frozen=True)
class FusedOp:
    name: str
    patterns: tuple[tuple[Step, ...], ...]  # op sequences of one scope it replaces
    dims: Callable[[Body, Graph], FusedDims]
    build_kernel: Callable[[Node, Mapping[Role, KernelParams]], KernelParams]  # from the body's kernels
    reference: Callable[[Node, np.ndarray], np.ndarray]  # one image / token matrix, row-wise as the C
    kernels: Mapping[Schedule, str]  # C function per schedule variant
    call_args: Callable[[Node, CallContext], tuple[str, ...]]
    scratch_bytes: Callable[[FusedDims, Schedule, int], int]  # (dims, variant, tile) -> bytes
    variant: Callable[[Body], Schedule] = lambda body: Schedule.DEFAULT
    tiled_variants: frozenset[Schedule] = frozenset()  # variants whose kernel takes a token tile
    inplace: Callable[[Body, str], tuple[tuple[str, str], ...]] = lambda body, output: ()
    workspace: Callable[[Body], tuple[str, ...]] = lambda body: ()
    features: Callable[[Node], Features] = lambda node: {}  # beyond its body's (e.g. recomputation)
    c_header: str = ""  # an op that brings its own kernel: declarations (runtime/include/<c_name>.h)
    c_source: str = ""  # and its definitions (runtime/src/<c_name>.c); built-ins live in runtime_c/
    c_name: str = ""


_PRIMITIVES: dict[str, PrimitiveOp] = {}
_FUSED: dict[str, FusedOp] = {}
# fused ops by the op sequence of a pattern, with the (position, role) pairs the pattern requires
_BY_OPS: dict[tuple[str, ...], list[tuple[tuple[tuple[int, Role], ...], FusedOp]]] = {}
_CONSTANT_BYTES: dict[tuple[str, tuple[int, ...]], int] = {}


def register(definition: PrimitiveOp | FusedOp) -> PrimitiveOp | FusedOp:
    """Register an op definition under its name (once; a second definition of a name is an error)."""
    if definition.name in _PRIMITIVES or definition.name in _FUSED:
        raise IRError(f"op '{definition.name}' is already registered")
    if isinstance(definition, PrimitiveOp):
        _PRIMITIVES[definition.name] = definition
    else:
        _FUSED[definition.name] = definition
        for pattern in definition.patterns:
            roles = tuple((i, step.role) for i, step in enumerate(pattern) if step.role is not None)
            _BY_OPS.setdefault(tuple(step.op for step in pattern), []).append((roles, definition))
    return definition


def primitive(op: str) -> PrimitiveOp:
    if op not in _PRIMITIVES:
        raise IRError(f"no primitive op '{op}' is registered")
    return _PRIMITIVES[op]


def fused(op: str) -> FusedOp:
    if op not in _FUSED:
        raise IRError(f"'{op}' is not a fused op (run the fuse pass first)")
    return _FUSED[op]


def match_fused(body: tuple[Node, ...]) -> FusedOp | None:
    """The fused op one of whose patterns is exactly ``body``'s op sequence (and roles)."""
    for roles, definition in _BY_OPS.get(tuple(n.op for n in body), ()):
        if all(body[i].attrs.role == role for i, role in roles):
            return definition
    return None


def by_role(body: tuple[Node, ...]) -> dict[Role, Node]:
    return {n.attrs.role: n for n in body}


def array_bytes(params: object) -> int:
    """Bytes of every array of a parameter dataclass (nested ones included): what lowering emits
    into flash for it (codegen.lower walks the same fields)."""
    if isinstance(params, np.ndarray):
        return int(params.nbytes)
    if dataclasses.is_dataclass(params):
        return sum(array_bytes(getattr(params, f.name)) for f in dataclasses.fields(params))
    return 0


def constant_bytes(node: Node, graph: Graph) -> int:
    """Flash bytes of a primitive node's constant arrays: those of its parameters, or, on a
    shapes-only graph, of zero-filled parameters of its shapes (cached per shape: the search costs
    thousands of candidates)."""
    if node.kernel is not None:
        return array_bytes(node.kernel)
    definition = _PRIMITIVES.get(node.op) or primitive(node.op)
    key = (node.op, definition.shape_key(node, graph))
    size = _CONSTANT_BYTES.get(key)
    if size is None:
        size = _CONSTANT_BYTES[key] = array_bytes(definition.params_for_shapes(*key[1]))
    return size


def node_features(graph: Graph, top: Node) -> Features:
    """The instruction-model features of one top-level node: its primitive ops' plus the fused op's own."""
    f = dict.fromkeys(OP_FEATURES, 0.0)
    for n in top.body or (top,):
        for name, value in primitive(n.op).features(n, graph).items():
            f[name] += value
    if top.body:
        for name, value in fused(top.op).features(top).items():
            f[name] += value
    return f


def zeros_s8(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.int8)


def zeros_s32(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.int32)


def no_features(node: Node, graph: Graph) -> Features:
    return {}


def unused_shape_key(node: Node, graph: Graph) -> tuple[int, ...]:
    return ()

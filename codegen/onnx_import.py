"""ONNX frontend: a ViT trained elsewhere (timm, torchvision, DeiT, your own PyTorch) -> primitive float IR.

It works from the graph's structure and values, never from node names:

1. Load, infer shapes (``onnx.shape_inference``), drop Identity/Dropout, fold every node whose inputs
   are constants (``Shape`` of a statically shaped tensor included), evaluating it with ONNX's own
   reference implementation.
2. Walk the residual stream from the image: per-channel input normalisation (Sub/Div, Mul/Add by
   constants) -> Conv (kernel = stride = P) or reshape + linear patch embedding -> prefix tokens
   (Concat with constant rows: class / distillation token) -> position embedding (Add of a constant)
   -> blocks -> head. A block is a LayerNorm of the stream whose branch comes back through an Add to
   the stream; a branch with a Softmax is attention, one with Erf/Tanh/Gelu is an MLP.
3. Layout ops between the compute nodes (Reshape, Transpose, Split, Slice, Gather, Squeeze, ...) are
   not pattern-matched: the importer *traces* them by running them on integer index tensors, so it
   knows for every element of q, k, v, of the projection's input or of the classifier's input
   which output channel of which linear (or which token of the stream) it is. That gives fused or
   separate q/k/v, any head count and the order of the concatenated heads from any exporter. Scalar
   Mul/Div on those paths (the attention scale, sqrt(scale) on q and k in torch's SDPA export) are
   collected and folded into the q projection; LayerScale (Mul by a constant vector) is folded into
   the projection before it; the input normalisation into the patch embedding.
4. GELU is recognised by its op (Gelu, Erf, Tanh) and checked numerically: the activation subgraph is
   evaluated on a probe and compared with the erf or tanh GELU.
5. The resulting float IR is checked against the ONNX model itself (onnxruntime, else ONNX's reference
   evaluator) on two random images: a structure misread shows up as a mismatch, never as a silently
   wrong model.

Anything else fails with ``UserError`` naming the node, its op type and what is supported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mcuformer.codegen.float_exec import run_float
from mcuformer.codegen.frontend import GraphBuilder
from mcuformer.codegen.ir import Attrs, Graph, Node, Op, Role
from mcuformer.codegen.qparams import GELU_FORMS
from mcuformer.errors import UserError

LAYOUT_OPS = frozenset(
    {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Gather", "Split", "Concat", "Expand"}
)
SUPPORTED = (
    "supported: Conv (kernel = stride) or reshape + linear patch embedding, class/distillation tokens, "
    "learned position embedding, "
    "LayerNorm, multi-head self-attention (fused or separate q/k/v), GELU (erf or tanh) MLP, LayerScale, "
    "token or mean pooling with the final norm before or after it, a linear classifier"
)
_LEAF_BITS = 40  # index codes: leaf id << 40 | flat element index
MAX_CHECK_DIFF = 1e-3  # imported float IR vs ONNX reference, relative to the logits' magnitude


def _fail(node, what: str) -> UserError:
    name = node.name or (node.output[0] if node.output else "?")
    return UserError(f"{what}: node '{name}' ({node.op_type}) is not supported here; {SUPPORTED}")


# ------------------------------------------------------------------------------------------ loading
@dataclass
class OnnxModel:
    """The folded graph: constants by name, the remaining (dynamic) nodes in order, static shapes."""

    nodes: list[Any]
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    input: str
    output: str
    opset: int
    producer: dict[str, Any] = field(default_factory=dict)
    consumers: dict[str, list[Any]] = field(default_factory=dict)

    def index(self) -> None:
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def dyn_inputs(self, node) -> list[str]:
        return [i for i in node.input if i and i not in self.consts]

    def users(self, name: str) -> list[Any]:
        return self.consumers.get(name, [])


def _attr(node, name: str, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def run_node(node, values: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """Evaluate one node with ONNX's reference implementation (any dtype: index tensors too)."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inputs = [i for i in node.input if i]
    graph = helper.make_graph(
        [node],
        "node",
        [
            helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(values[i].dtype), values[i].shape)
            for i in inputs
        ],
        [helper.make_empty_tensor_value_info(o) for o in node.output if o],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    return list(ReferenceEvaluator(model).run(None, {i: values[i] for i in inputs}))


def load_onnx(path: Path) -> OnnxModel:
    import onnx

    try:
        model = onnx.load(str(path))
        initializers = {t.name for t in model.graph.initializer}
        for graph_input in model.graph.input:  # a dynamic batch axis is fixed to 1 (one image per inference)
            dims = graph_input.type.tensor_type.shape.dim
            if graph_input.name not in initializers and dims and not dims[0].HasField("dim_value"):
                dims[0].dim_value = 1
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises several types for damaged files
        raise UserError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from None
    g = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if not 14 <= opset <= 21:
        raise UserError(f"{path}: ONNX opset {opset}; supported: opsets 14 to 21 (torch.onnx.export opset_version)")
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in consts]
    if len(real_inputs) != 1 or len(g.output) != 1:
        raise UserError(f"{path}: the model must have one image input and one output (logits)")
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    image = real_inputs[0].name
    in_shape = shapes.get(image)
    if in_shape is None or len(in_shape) != 4 or in_shape[0] != 1:
        dims = [d.dim_value or d.dim_param for d in real_inputs[0].type.tensor_type.shape.dim]
        raise UserError(f"{path}: input '{image}' has shape {dims}; export with a fixed (1, C, H, W) input")
    if in_shape[2] != in_shape[3]:  # data, resize, project and report all describe one side
        raise UserError(
            f"{path}: input {in_shape[2]}x{in_shape[3]} (H x W) is not square; supported: square images (H = W, a "
            f"whole number of patches per side); crop or pad to a square and export again"
        )
    alias: dict[str, str] = {}
    nodes = []
    for node in g.node:
        for k, name in enumerate(node.input):
            if name in alias:
                node.input[k] = alias[name]
        if node.op_type == "Constant":
            value = _attr(node, "value")
            if value is None:
                raise _fail(node, "constant")
            consts[node.output[0]] = onnx.numpy_helper.to_array(value)
            continue
        if node.op_type in ("Identity", "Dropout"):
            alias[node.output[0]] = node.input[0]
            continue
        if node.op_type == "Shape" and node.input[0] in shapes:
            shape = np.array(shapes[node.input[0]], dtype=np.int64)
            start, end = _attr(node, "start", 0), _attr(node, "end", None)
            consts[node.output[0]] = shape[start:end]
            continue
        present = [i for i in node.input if i]
        if present and all(i in consts for i in present):
            for name, value in zip(node.output, run_node(node, consts, opset), strict=False):
                consts[name] = np.asarray(value)
            continue
        nodes.append(node)
    out = alias.get(g.output[0].name, g.output[0].name)
    result = OnnxModel(nodes, consts, shapes, image, out, opset)
    result.index()
    return result


# ------------------------------------------------------------------------------------------ tracing
class Tracer:
    """Runs the layout ops between compute nodes on integer index tensors ("codes")."""

    def __init__(self, m: OnnxModel, leaves: dict[str, tuple[int, ...]]) -> None:
        self.m = m
        self.leaf_ids = {name: k for k, name in enumerate(leaves)}
        self.leaves = leaves
        self.memo: dict[str, tuple[np.ndarray, float]] = {}

    def __call__(self, name: str) -> tuple[np.ndarray, float]:
        if name in self.memo:
            return self.memo[name]
        if name in self.leaf_ids:
            shape = self.leaves[name]
            codes = (np.int64(self.leaf_ids[name]) << _LEAF_BITS) + np.arange(math.prod(shape), dtype=np.int64)
            result = (codes.reshape(shape), 1.0)
        else:
            node = self.m.producer.get(name)
            if node is None:
                raise UserError(f"tensor '{name}' is neither computed nor constant; {SUPPORTED}")
            result = self._through(node, name)
        self.memo[name] = result
        return result

    def _through(self, node, name: str) -> tuple[np.ndarray, float]:
        m = self.m
        if node.op_type in ("Mul", "Div"):
            dyn = m.dyn_inputs(node)
            const = [m.const(i) for i in node.input if i in m.consts]
            if len(dyn) == 1 and len(const) == 1 and const[0].size == 1:
                if node.op_type == "Div" and node.input[1] not in m.consts:
                    raise _fail(node, "division by a tensor on a layout path")
                c = float(const[0].reshape(-1)[0])
                codes, scale = self(dyn[0])
                return codes, scale * (1.0 / c if node.op_type == "Div" else c)
            raise _fail(node, "elementwise op on a layout path")
        if node.op_type not in LAYOUT_OPS:
            raise _fail(node, "unexpected op between layers")
        values: dict[str, np.ndarray] = {}
        scales = []
        for i in node.input:
            if not i:
                continue
            if i in m.consts:
                values[i] = m.consts[i]
            else:
                values[i], s = self(i)
                scales.append(s)
        if len(set(scales)) > 1:
            raise _fail(node, "tensors of different scales joined")
        outs = run_node(node, values, m.opset)
        for out_name, value in zip(node.output, outs, strict=False):
            self.memo[out_name] = (np.asarray(value), scales[0] if scales else 1.0)
        return self.memo[name]

    def decode(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return codes >> _LEAF_BITS, codes & ((np.int64(1) << _LEAF_BITS) - 1)


def _rows_cols(codes: np.ndarray, tracer: Tracer, leaf: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(token, channel) of each element, which must all come from ``leaf`` (a (.., tokens, width) tensor)."""
    ids, flat = tracer.decode(codes)
    if np.any(ids != tracer.leaf_ids[leaf]):
        raise UserError(f"tensor '{leaf}' is mixed with another one on a layout path; {SUPPORTED}")
    return flat // width, flat % width


# ---------------------------------------------------------------------------------------- recognising
@dataclass
class Linear:
    node: Any  # the MatMul or Gemm
    input: str
    output: str  # after the bias Add, if any
    weight: np.ndarray  # (out, in), float64
    bias: np.ndarray | None
    nodes: tuple[Any, ...]


def _as_linear(m: OnnxModel, node) -> Linear | None:
    """MatMul(x, W) [+ Add(b)] or Gemm(x, W[, b]) with constant W (and b)."""
    if node.op_type == "Gemm":
        if len(m.dyn_inputs(node)) != 1 or node.input[1] not in m.consts or _attr(node, "transA", 0):
            return None
        w = m.consts[node.input[1]].astype(np.float64) * float(_attr(node, "alpha", 1.0))
        w = w if _attr(node, "transB", 0) else w.T
        b = m.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if b is not None:
            b = np.broadcast_to(b.astype(np.float64) * float(_attr(node, "beta", 1.0)), (w.shape[0],)).copy()
        return Linear(node, node.input[0], node.output[0], w, b, (node,))
    if node.op_type != "MatMul" or node.input[1] not in m.consts or node.input[0] in m.consts:
        return None
    w = m.consts[node.input[1]].astype(np.float64)
    if w.ndim != 2:
        return None
    w = w.T  # ONNX MatMul weight is (in, out)
    users = m.users(node.output[0])
    if len(users) == 1 and users[0].op_type == "Add":
        add = users[0]
        other = [i for i in add.input if i != node.output[0]]
        b = m.const(other[0]) if other else None
        if b is not None and b.size == w.shape[0]:
            return Linear(node, node.input[0], add.output[0], w, b.reshape(-1).astype(np.float64), (node, add))
    return Linear(node, node.input[0], node.output[0], w, None, (node,))


@dataclass
class Norm:
    input: str
    output: str
    gamma: np.ndarray
    beta: np.ndarray
    eps: float
    nodes: tuple[Any, ...]


def _reduce_axes(m: OnnxModel, node) -> tuple[int, ...] | None:
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = m.const(node.input[1])
    return None if axes is None else tuple(int(a) for a in np.asarray(axes).reshape(-1))


def _layernorm_of(m: OnnxModel, x: str) -> Norm | None:
    """A LayerNormalization node over the last axis, or the decomposed ReduceMean/Sub/Pow/Sqrt/Div form."""
    rank = len(m.shapes.get(x, (1, 1, 1)))
    for node in m.users(x):
        if node.op_type == "LayerNormalization" and node.input[0] == x:
            if _attr(node, "axis", -1) not in (-1, rank - 1):
                raise _fail(node, "LayerNorm over more than the last axis")
            gamma = m.const(node.input[1])
            beta = m.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros_like(gamma)
            if gamma is None or beta is None:
                raise _fail(node, "LayerNorm with non-constant scale or bias")
            eps = float(_attr(node, "epsilon", 1e-5))
            return Norm(x, node.output[0], gamma.astype(np.float64), beta.astype(np.float64), eps, (node,))
    for mean in m.users(x):
        if mean.op_type != "ReduceMean" or _reduce_axes(m, mean) not in ((-1,), (rank - 1,)):
            continue
        subs = [n for n in m.users(mean.output[0]) if n.op_type == "Sub" and list(n.input) == [x, mean.output[0]]]
        if not subs:
            continue
        d = subs[0].output[0]
        nodes = [mean, subs[0]]
        div = next((n for n in m.users(d) if n.op_type == "Div" and n.input[0] == d), None)
        if div is None:
            continue
        # denominator: Sqrt(Add(ReduceMean(Pow(d, 2)), eps))
        sqrt = m.producer.get(div.input[1])
        add = m.producer.get(sqrt.input[0]) if sqrt is not None and sqrt.op_type == "Sqrt" else None
        eps_c = (
            None
            if add is None or add.op_type != "Add"
            else next((m.const(i) for i in add.input if i in m.consts), None)
        )
        var = None if add is None else m.producer.get(m.dyn_inputs(add)[0])
        sq = m.producer.get(var.input[0]) if var is not None and var.op_type == "ReduceMean" else None
        square_ok = sq is not None and (
            (sq.op_type == "Pow" and sq.input[0] == d and float(m.const(sq.input[1]).reshape(-1)[0]) == 2.0)
            or (sq.op_type == "Mul" and list(sq.input) == [d, d])
        )
        if eps_c is None or not square_ok:
            raise _fail(div, "LayerNorm pattern (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div)")
        nodes += [sq, var, add, sqrt, div]
        out = div.output[0]
        dim = m.shapes[x][-1]
        gamma, beta = np.ones(dim), np.zeros(dim)
        users = m.users(out)
        if len(users) == 1 and users[0].op_type == "Mul" and any(i in m.consts for i in users[0].input):
            gamma = np.broadcast_to([m.const(i) for i in users[0].input if i in m.consts][0], (dim,)).astype(float)
            nodes.append(users[0])
            out = users[0].output[0]
            users = m.users(out)
        if len(users) == 1 and users[0].op_type == "Add" and any(i in m.consts for i in users[0].input):
            beta = np.broadcast_to([m.const(i) for i in users[0].input if i in m.consts][0], (dim,)).astype(float)
            nodes.append(users[0])
            out = users[0].output[0]
        return Norm(
            x,
            out,
            np.array(gamma, dtype=np.float64),
            np.array(beta, dtype=np.float64),
            float(eps_c.reshape(-1)[0]),
            tuple(nodes),
        )
    return None


def _branch(m: OnnxModel, start: str, end: str) -> list[Any]:
    """Nodes on paths from tensor ``start`` to tensor ``end`` (topological order)."""
    forward: set[str] = {start}
    for node in m.nodes:
        if any(i in forward for i in node.input):
            forward.update(node.output)
    back: set[str] = {end}
    for node in reversed(m.nodes):
        if any(o in back for o in node.output):
            back.update(i for i in node.input if i not in m.consts)
    return [n for n in m.nodes if any(o in forward and o in back for o in n.output)]


def _check_identity(tracer: Tracer, name: str, leaf: str, tokens: int, width: int) -> float:
    """``name`` must be the leaf's (tokens, width) values in token-major order (any batch-1 shape)."""
    codes, scale = tracer(name)
    rows, cols = _rows_cols(codes, tracer, leaf, width)
    want = np.arange(tokens * width)
    if codes.size != want.size or not np.array_equal(rows.reshape(-1) * width + cols.reshape(-1), want):
        raise UserError(
            f"tensor '{name}' is a rearrangement of '{leaf}' that is not a (tokens, features) view; {SUPPORTED}"
        )
    return scale


def _scale_chain(m: OnnxModel, start: str, stop: str, dim: int) -> tuple[np.ndarray, list[Any]]:
    """From ``stop`` back towards ``start``: per-channel Mul by constants (LayerScale), folded."""
    gamma = np.ones(dim)
    name = stop
    nodes = []
    while name != start:
        node = m.producer.get(name)
        if node is None or node.op_type != "Mul":
            break
        const = [m.const(i) for i in node.input if i in m.consts]
        dyn = m.dyn_inputs(node)
        if len(const) != 1 or len(dyn) != 1 or const[0].size not in (1, dim):
            raise _fail(node, "multiplication of the residual branch")
        gamma = gamma * np.broadcast_to(const[0].reshape(-1), (dim,))
        nodes.append(node)
        name = dyn[0]
    return gamma, name


@dataclass
class Block:
    kind: str  # "attn" | "mlp"
    ln: Norm
    linears: dict[str, tuple[np.ndarray, np.ndarray | None]]  # role -> (weight (out, in), bias)
    heads: int = 0
    approximate: str = "none"


def _gelu_form(m: OnnxModel, nodes: list[Any], src: str, dst: str, shape: tuple[int, ...]) -> str:
    ops = {n.op_type for n in nodes}
    if "Gelu" in ops:
        form = str(_attr(next(n for n in nodes if n.op_type == "Gelu"), "approximate", b"none"))
        form = "tanh" if "tanh" in form else "none"
    elif "Erf" in ops:
        form = "none"
    elif "Tanh" in ops:
        form = "tanh"
    else:
        raise _fail(nodes[0] if nodes else m.producer[dst], "activation (only GELU, erf or tanh form)")
    probe = np.resize(np.linspace(-6.0, 6.0, 97, dtype=np.float32), shape).astype(np.float32)
    values = {**m.consts, src: probe}
    for node in nodes:
        for out, value in zip(node.output, run_node(node, values, m.opset), strict=False):
            values[out] = value

    want = np.vectorize(GELU_FORMS[form])(probe.astype(np.float64))
    if values[dst].shape != probe.shape or np.max(np.abs(values[dst] - want)) > 1e-4:
        raise _fail(nodes[-1], f"activation that is not GELU ({form} form) by value")
    return form


def _attention(m: OnnxModel, ln: Norm, branch: list[Any], out: str, tokens: int, dim: int) -> Block:
    linears = [lin for lin in (_as_linear(m, n) for n in branch) if lin is not None]
    lin_nodes = {id(n) for lin in linears for n in lin.nodes}
    matmuls = [n for n in branch if n.op_type == "MatMul" and id(n) not in lin_nodes]
    softmax = [n for n in branch if n.op_type == "Softmax"]
    if len(softmax) != 1 or len(matmuls) != 2:
        raise _fail(softmax[0] if softmax else branch[0], "attention other than softmax(q k^T) v")
    sm = softmax[0]
    av = next((n for n in matmuls if sm.output[0] in n.input), None)
    qk = next((n for n in matmuls if n is not av), None)
    if av is None or av.input[0] != sm.output[0]:
        raise _fail(sm, "attention whose softmax does not feed probs @ v")
    rank = len(m.shapes.get(sm.input[0], ()))
    if _attr(sm, "axis", -1) not in (-1, rank - 1):
        raise _fail(sm, "softmax over an axis other than the last")
    inputs = [lin for lin in linears if lin.input == ln.output or _feeds(m, ln.output, lin.input)]
    proj = [lin for lin in linears if lin not in inputs]
    if not inputs or len(proj) != 1:
        raise _fail(branch[0], "attention projections (q/k/v from the LayerNorm, one output projection)")
    tracer = Tracer(m, {lin.output: _lin_shape(m, lin, tokens) for lin in inputs})
    for lin in inputs:
        _check_identity(
            Tracer(m, {ln.output: m.shapes.get(ln.output, (1, tokens, dim))}), lin.input, ln.output, tokens, dim
        )
    for node in _branch(m, qk.output[0], sm.input[0]):
        if node.op_type in ("Add", "Sub", "Where") and len(node.input) > 1:
            raise _fail(node, "a bias or mask added to the attention scores (relative position bias)")
    q_codes, s_q = tracer(qk.input[0])
    k_codes, s_k = tracer(qk.input[1])
    v_codes, s_v = tracer(av.input[1])
    s_scores = _check_identity(
        Tracer(m, {qk.output[0]: m.shapes[qk.output[0]]}),
        sm.input[0],
        qk.output[0],
        math.prod(m.shapes[qk.output[0]][:-1]),
        m.shapes[qk.output[0]][-1],
    )
    if s_v != 1.0:
        raise _fail(av, "scaled values")
    if q_codes.ndim != 4 or q_codes.shape[0] != 1:
        raise _fail(qk, "attention tensors other than (1, heads, tokens, head_dim)")
    heads, _, head_dim = q_codes.shape[1:]
    k_codes = np.swapaxes(k_codes, -1, -2)  # (1, H, T, Dh)
    weights = {}
    for role, codes in (("q", q_codes), ("k", k_codes), ("v", v_codes)):
        if codes.shape != (1, heads, tokens, head_dim):
            raise _fail(qk if role != "v" else av, f"{role} of shape {codes.shape}")
        ids, flat = tracer.decode(codes)
        lin_id = int(ids.reshape(-1)[0])
        if np.any(ids != lin_id):
            raise _fail(qk, f"{role} mixed from several projections")
        lin = inputs[lin_id]
        width = lin.weight.shape[0]
        rows, chans = flat // width, flat % width
        if not np.array_equal(rows, np.broadcast_to(np.arange(tokens)[None, None, :, None], rows.shape)):
            raise _fail(qk, f"{role} whose tokens are reordered")
        channel = chans[0, :, 0, :]  # (H, Dh), the same for every token
        if np.any(chans != channel[None, :, None, :]):
            raise _fail(qk, f"{role} whose channels depend on the token")
        order = channel.reshape(-1)
        weights[role] = (lin.weight[order], None if lin.bias is None else lin.bias[order])
    # the scores are s * q.k; the kernel computes q.k / sqrt(head_dim): fold the ratio into q
    fold = s_q * s_k * s_scores * math.sqrt(head_dim)
    w_q, b_q = weights["q"]
    weights["q"] = (w_q * fold, None if b_q is None else b_q * fold)
    p = proj[0]
    av_tracer = Tracer(m, {av.output[0]: (1, heads, tokens, head_dim)})
    codes, s_in = av_tracer(p.input)
    _, flat = av_tracer.decode(codes)
    flat = flat.reshape(tokens, dim)  # (token, input feature of proj) -> element of (1, H, T, Dh)
    h, t, d = flat // (tokens * head_dim), (flat // head_dim) % tokens, flat % head_dim
    if not np.array_equal(t, np.broadcast_to(np.arange(tokens)[:, None], t.shape)):
        raise _fail(p.node, "projection input whose tokens are reordered")
    col_of = (h * head_dim + d)[0]  # proj input feature j holds head output feature col_of[j]
    w_p = np.zeros_like(p.weight)
    w_p[:, col_of] = p.weight * s_in
    gamma, before = _scale_chain(m, p.output, out, dim)
    _check_identity(Tracer(m, {p.output: _lin_shape(m, p, tokens)}), before, p.output, tokens, dim)
    weights["proj"] = (w_p * gamma[:, None], None if p.bias is None else p.bias * gamma)
    return Block("attn", ln, weights, heads=int(heads))


def _lin_shape(m: OnnxModel, lin: Linear, tokens: int) -> tuple[int, ...]:
    return m.shapes.get(lin.output, (tokens, lin.weight.shape[0]))


def _feeds(m: OnnxModel, src: str, dst: str) -> bool:
    """``dst`` is reached from ``src`` through layout ops only."""
    name = dst
    while name != src:
        node = m.producer.get(name)
        if node is None or node.op_type not in LAYOUT_OPS or len(m.dyn_inputs(node)) != 1:
            return False
        name = m.dyn_inputs(node)[0]
    return True


def _mlp(m: OnnxModel, ln: Norm, branch: list[Any], out: str, tokens: int, dim: int) -> Block:
    linears = [lin for lin in (_as_linear(m, n) for n in branch) if lin is not None]
    if len(linears) != 2:
        raise _fail(branch[0], f"MLP with {len(linears)} linear layers (two expected)")
    fc1, fc2 = linears
    _check_identity(
        Tracer(m, {ln.output: m.shapes.get(ln.output, (1, tokens, dim))}), fc1.input, ln.output, tokens, dim
    )
    lin_nodes = {id(n) for lin in linears for n in lin.nodes}
    act_nodes = [n for n in _branch(m, fc1.output, fc2.input) if id(n) not in lin_nodes]
    hidden = fc1.weight.shape[0]
    form = _gelu_form(m, act_nodes, fc1.output, fc2.input, m.shapes.get(fc1.output, (tokens, hidden)))
    gamma, before = _scale_chain(m, fc2.output, out, dim)
    _check_identity(Tracer(m, {fc2.output: _lin_shape(m, fc2, tokens)}), before, fc2.output, tokens, dim)
    weights = {
        "fc1": (fc1.weight, fc1.bias),
        "fc2": (fc2.weight * gamma[:, None], None if fc2.bias is None else fc2.bias * gamma),
    }
    return Block("mlp", ln, weights, approximate=form)


@dataclass
class Head:
    kind: str  # "token" (LN -> rows 0..K-1 -> classifier), "pool_norm" (mean -> LN), "norm_pool" (LN -> mean)
    ln: Norm
    weight: np.ndarray  # (classes, K*E or E)
    bias: np.ndarray
    first_token: int = 0
    readout: int = 1


def _head(m: OnnxModel, r: str, tokens: int, dim: int) -> Head:
    ln = _layernorm_of(m, r)
    pooled_ln: Norm | None = None
    first = 0
    selected = _selected_row_norm(m, r, tokens, dim) if ln is None else None
    if selected is not None:  # the class token selected first, then normed: the same as LN, then the row
        source, norm, kind = selected.output, selected, "token"
    elif ln is None:  # mean over tokens first, then the norm (timm fc_norm)
        mean = next((n for n in _branch(m, r, m.output) if n.op_type == "ReduceMean"), None)
        if mean is None:
            node = m.users(r)[0] if m.users(r) else m.producer[r]
            raise _fail(node, "head without a final LayerNorm")
        first = _mean_rows(m, mean, r, tokens, dim)
        pooled_ln = _layernorm_of(m, mean.output[0])
        if pooled_ln is None:
            raise _fail(m.users(mean.output[0])[0], "mean pooling not followed by a LayerNorm")
        source, norm, kind = pooled_ln.output, pooled_ln, "pool_norm"
    else:
        source, norm, kind = ln.output, ln, "token"
        mean = next((n for n in _branch(m, ln.output, m.output) if n.op_type == "ReduceMean"), None)
        if mean is not None:  # LN -> mean over tokens (mcuformer's own head)
            first = _mean_rows(m, mean, ln.output, tokens, dim)
            if first:
                raise _fail(mean, "mean over the patch tokens after the final norm with prefix tokens")
            source, kind = mean.output[0], "norm_pool"
    region = _branch(m, source, m.output)
    linears = [lin for lin in (_as_linear(m, n) for n in region) if lin is not None]
    if not linears or len(linears) > 16:
        raise _fail(region[-1] if region else m.producer[m.output], "classifier")
    lin_nodes = {id(n) for lin in linears for n in lin.nodes}
    # logits = sum_i s_i * linear_i: find s_i by evaluating what follows the linears
    post = [n for n in region if id(n) not in lin_nodes and not any(n is x for x in _upstream(m, region, linears))]
    scales = _combination(m, post, linears)
    parts, bias = [], np.zeros(linears[0].weight.shape[0])
    rows = []
    for lin, s in zip(linears, scales, strict=True):
        shape = m.shapes.get(source, (1, tokens, dim) if kind == "token" else (1, dim))
        tracer = Tracer(m, {source: shape})
        codes, s_in = tracer(lin.input)
        width = dim
        row_ids, cols = _rows_cols(codes, tracer, source, width)
        row = int(row_ids.reshape(-1)[0])
        if codes.size != dim or np.any(row_ids != row) or not np.array_equal(cols.reshape(-1), np.arange(dim)):
            raise _fail(lin.node, "classifier input that is not one token")
        rows.append(row)
        parts.append(lin.weight * s * s_in)
        bias = bias + (0 if lin.bias is None else lin.bias * s)
    if kind == "token":
        order = np.argsort(rows)
        if sorted(rows) != list(range(len(rows))):
            raise _fail(linears[0].node, f"readout of tokens {sorted(rows)} (the first tokens 0..K-1 are supported)")
        weight = np.concatenate([parts[i] for i in order], axis=1)
        return Head("token", norm, weight, bias, readout=len(rows))
    if len(parts) != 1:
        raise _fail(linears[1].node, "several classifiers after pooling")
    return Head(kind, norm, parts[0], bias, first_token=first)


def _selected_row_norm(m: OnnxModel, r: str, tokens: int, dim: int) -> Norm | None:
    """``LN(x[:, 0])``: row 0 of the stream selected by layout ops, then a LayerNorm."""
    name = r
    while len(m.users(name)) == 1 and m.users(name)[0].op_type in LAYOUT_OPS:
        name = m.users(name)[0].output[0]
    if name == r or (norm := _layernorm_of(m, name)) is None:
        return None
    tracer = Tracer(m, {r: m.shapes.get(r, (1, tokens, dim))})
    rows, cols = _rows_cols(tracer(name)[0], tracer, r, dim)
    if rows.size != dim or np.any(rows != 0) or not np.array_equal(cols.reshape(-1), np.arange(dim)):
        raise _fail(m.users(r)[0], "a final norm of rows other than the class token")
    return norm


def _upstream(m: OnnxModel, region: list[Any], linears: list[Linear]) -> list[Any]:
    """Region nodes that feed the linears (token selection), not what combines their outputs."""
    needed = {lin.input for lin in linears}
    result = []
    for node in reversed(region):
        if any(o in needed for o in node.output):
            result.append(node)
            needed.update(node.input)
    return result


def _combination(m: OnnxModel, post: list[Any], linears: list[Linear]) -> list[float]:
    """The scalar s_i of logits = sum_i s_i * linear_i, by evaluating the nodes after the linears."""
    classes = linears[0].weight.shape[0]
    if any(lin.weight.shape[0] != classes for lin in linears):
        raise _fail(linears[1].node, "classifiers of different widths")

    def run(values: list[np.ndarray]) -> np.ndarray:
        env = dict(m.consts)
        for lin, v in zip(linears, values, strict=True):
            env[lin.output] = v.reshape(m.shapes.get(lin.output, (1, classes))).astype(np.float32)
        for node in post:
            if node.op_type not in ("Add", "Sub", "Mul", "Div", "Sum", "Mean") + tuple(LAYOUT_OPS):
                raise _fail(node, "op after the classifier")
            for out, value in zip(node.output, run_node(node, env, m.opset), strict=False):
                env[out] = value
        return np.asarray(env[m.output], dtype=np.float64).reshape(-1)

    zero = [np.zeros(classes) for _ in linears]
    if np.any(run(zero) != 0.0):
        raise _fail(post[-1] if post else linears[0].node, "constant added after the classifier")
    probe = np.linspace(1.0, 2.0, classes)
    scales = []
    for i in range(len(linears)):
        got = run([probe if j == i else np.zeros(classes) for j in range(len(linears))])
        s = float(got[0] / probe[0])
        if not np.allclose(got, s * probe, rtol=1e-5, atol=1e-6):
            raise _fail(post[-1] if post else linears[i].node, "non-linear combination of classifiers")
        scales.append(s)
    return scales


def _mean_rows(m: OnnxModel, mean, src: str, tokens: int, dim: int) -> int:
    """The mean over tokens [first, tokens) of ``src``: returns first."""
    axes = _reduce_axes(m, mean)
    rank = len(m.shapes.get(mean.input[0], ()))
    if axes is None or len(axes) != 1 or axes[0] % rank != rank - 2:
        raise _fail(mean, "mean over an axis other than the tokens")
    tracer = Tracer(m, {src: m.shapes.get(src, (1, tokens, dim))})
    codes, _ = tracer(mean.input[0])
    rows, cols = _rows_cols(codes.reshape(-1, dim), tracer, src, dim)
    first = int(rows[0, 0])
    if not np.array_equal(rows[:, 0], np.arange(first, tokens)) or not np.array_equal(cols[0], np.arange(dim)):
        raise _fail(mean, "mean over tokens that are not the last ones")
    return first


# ------------------------------------------------------------------------------------ the whole model
@dataclass(frozen=True)
class ImportedArch:
    """What emit, the report and the evaluators need to know of an imported ViT (duck-types ArchConfig)."""

    image_size: int
    in_channels: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: tuple[int, ...]
    mlp_hidden_dims: tuple[int, ...]
    num_classes: int
    prefix_tokens: int
    pooling: str  # "token", "pool_norm" or "norm_pool"
    mlp_gelu: str

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens(self) -> int:
        return self.grid * self.grid + self.prefix_tokens

    def short(self) -> str:
        heads = ",".join(map(str, self.num_heads))
        hidden = ",".join(map(str, self.mlp_hidden_dims))
        return (
            f"imported res{self.image_size} p{self.patch_size} E{self.embed_dim} D{self.depth} H[{heads}] "
            f"M[{hidden}] prefix{self.prefix_tokens} {self.pooling} gelu-{self.mlp_gelu}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "imported": True,
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": list(self.num_heads),
            "mlp_hidden": list(self.mlp_hidden_dims),
            "num_classes": self.num_classes,
            "prefix_tokens": self.prefix_tokens,
            "pooling": self.pooling,
            "gelu": self.mlp_gelu,
        }


def import_onnx(
    path: Path | str, check: bool = True, input_scale: np.ndarray | None = None, input_shift: np.ndarray | None = None
) -> Graph:
    """An ONNX ViT -> primitive float IR (graph.arch is an ImportedArch).

    ``input_scale`` / ``input_shift`` (per channel): the compiled model takes x and feeds the ONNX
    model x * input_scale + input_shift (a normalisation folded into the patch embedding, exact in float).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist")
    m = load_onnx(path)
    graph = _build(m, input_scale, input_shift)
    if input_scale is not None or input_shift is not None:
        c = graph.arch.in_channels
        affine = (
            np.ones(c) if input_scale is None else np.broadcast_to(input_scale, (c,)),
            np.zeros(c) if input_shift is None else np.broadcast_to(input_shift, (c,)),
        )
        graph = replace(graph, input_affine=affine)
    if check:
        diff, scale = check_against_reference(graph, path, seed=0)
        if diff > MAX_CHECK_DIFF * max(1.0, scale):
            raise UserError(
                f"{path}: the imported graph differs from the ONNX model by {diff:.3g} (logits up to {scale:.3g}); "
                f"the model has a structure the importer misread; {SUPPORTED}"
            )
        graph = replace(graph, import_check_max_abs_diff=diff)
    return graph


def _patch_embedding(m: OnnxModel, scale: np.ndarray | None, shift: np.ndarray | None) -> tuple[dict[str, Any], str]:
    _, c, h, w = m.shapes[m.input]
    a = np.ones(c) if scale is None else np.broadcast_to(np.asarray(scale, dtype=np.float64), (c,)).copy()
    b = np.zeros(c) if shift is None else np.broadcast_to(np.asarray(shift, dtype=np.float64), (c,)).copy()
    name = m.input
    while True:
        users = m.users(name)
        if len(users) != 1:
            raise _fail(users[1] if users else m.producer.get(name), "input used by more than one op")
        node = users[0]
        if node.op_type not in ("Sub", "Add", "Mul", "Div"):
            break
        const = [m.const(i) for i in node.input if i in m.consts]
        per_channel = len(const) == 1 and const[0].ndim >= 3 and const[0].shape[-3] == c == const[0].size
        if len(const) != 1 or not (const[0].size == 1 or per_channel):  # (1, C, 1, 1) or a scalar
            raise _fail(node, "input normalisation that is not per channel")
        k = np.broadcast_to(const[0].reshape(-1).astype(np.float64), (c,))
        first_const = node.input[0] in m.consts
        if node.op_type == "Sub":
            a, b = (-a, k - b) if first_const else (a, b - k)
        elif node.op_type == "Add":
            b = b + k
        elif node.op_type == "Mul":
            a, b = a * k, b * k
        elif first_const:
            raise _fail(node, "input normalisation dividing by the image")
        else:
            a, b = a / k, b / k
        name = node.output[0]
    if node.op_type in LAYOUT_OPS:
        return _linear_patch_embedding(m, name, a, b)
    if node.op_type != "Conv":
        raise _fail(node, "patch embedding (a Conv with kernel = stride, no padding, or reshape + linear)")
    kernel = list(_attr(node, "kernel_shape", []))
    strides = list(_attr(node, "strides", [1, 1]))
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    if (
        len(kernel) != 2
        or kernel[0] != kernel[1]
        or strides != kernel
        or any(pads)
        or _attr(node, "group", 1) != 1
        or list(_attr(node, "dilations", [1, 1])) != [1, 1]
        or node.input[1] not in m.consts
    ):
        raise _fail(node, f"convolution kernel {kernel} stride {strides} pads {pads} (kernel = stride, no padding)")
    p = kernel[0]
    if h != w or h % p:
        raise _fail(node, f"input {h}x{w} (square images, a whole number of {p}x{p} patches)")
    weight = m.consts[node.input[1]].astype(np.float64)  # (E, C, P, P)
    bias = m.const(node.input[2]).astype(np.float64) if len(node.input) > 2 and node.input[2] else None
    dim = weight.shape[0]
    bias = np.zeros(dim) if bias is None else bias
    bias = bias + np.einsum("ecyx,c->e", weight, b)  # normalisation folded: conv(a x + b)
    weight = weight * a[None, :, None, None]
    patch_weight = weight.transpose(0, 2, 3, 1).reshape(dim, p * p * c)  # (py, px, c) order
    embed = {"channels": c, "image": h, "patch": p, "dim": dim, "weight": patch_weight, "bias": bias}
    # conv output (1, E, grid, grid) -> the (tokens, E) view
    name = node.output[0]
    while len(m.users(name)) == 1 and m.users(name)[0].op_type in ("Reshape", "Transpose", "Flatten", "Squeeze"):
        name = m.users(name)[0].output[0]
    grid = h // p
    patches = grid * grid
    tracer = Tracer(m, {node.output[0]: (1, dim, grid, grid)})
    codes, _ = tracer(name)
    _, flat = tracer.decode(codes)
    want = (np.arange(dim)[None, :] * patches + np.arange(patches)[:, None]).reshape(-1)
    if codes.size != patches * dim or not np.array_equal(flat.reshape(-1), want):
        raise _fail(m.producer.get(name) or m.users(node.output[0])[0], "patch tokens layout (B, tokens, E) expected")
    return embed, name


def _linear_patch_embedding(m: OnnxModel, image: str, a: np.ndarray, b: np.ndarray) -> tuple[dict[str, Any], str]:
    """Patchify by Reshape/Transpose + a Linear: which pixel each input feature of each token reads is
    traced on an index image, then the weight columns are permuted into the (py, px, c) order."""
    _, c, h, w = m.shapes[m.input]
    name = image
    while len(m.users(name)) == 1 and m.users(name)[0].op_type in LAYOUT_OPS:
        name = m.users(name)[0].output[0]
    lin = _as_linear(m, m.users(name)[0]) if len(m.users(name)) == 1 else None
    if lin is None:
        node = m.users(name)[0] if m.users(name) else m.producer[name]
        raise _fail(node, "patch embedding (a Conv with kernel = stride, no padding, or reshape + linear)")
    tracer = Tracer(m, {image: (1, c, h, w)})
    codes, scale = tracer(lin.input)
    _, flat = tracer.decode(codes)
    features = lin.weight.shape[1]
    p = math.isqrt(features // c) if features % c == 0 else 0
    if p < 1 or p * p * c != features or h != w or h % p or codes.size != (h // p) ** 2 * features:
        raise _fail(lin.node, f"patch vectors of {features} values from a {c}x{h}x{w} image")
    grid = h // p
    flat = flat.reshape(grid * grid, features)
    ch, y, x = flat // (h * w), (flat // w) % h, flat % w
    t = np.arange(grid * grid)[:, None]
    py, px = y - (t // grid) * p, x - (t % grid) * p
    ours = (py * p + px) * c + ch  # our patch-vector index of each traced feature
    if np.any(py < 0) or np.any(py >= p) or np.any(px < 0) or np.any(px >= p) or np.any(ours != ours[:1]):
        raise _fail(lin.node, "linear patch embedding whose tokens are not the row-major P x P patches")
    dim = lin.weight.shape[0]
    weight = np.zeros((dim, features))
    weight[:, ours[0]] = lin.weight * scale
    per_col_a = a[np.arange(features) % c]  # column (py, px, c) reads channel c
    per_col_b = b[np.arange(features) % c]
    bias = (np.zeros(dim) if lin.bias is None else lin.bias) + weight @ per_col_b  # normalisation folded
    embed = {"channels": c, "image": h, "patch": p, "dim": dim, "weight": weight * per_col_a, "bias": bias}
    users = m.users(lin.output)
    name = lin.output
    if len(users) == 1 and users[0].op_type in ("Reshape", "Unsqueeze"):  # (T, E) -> (1, T, E)
        name = users[0].output[0]
    _check_identity(Tracer(m, {lin.output: m.shapes.get(lin.output, (1, grid * grid, dim))}), name, lin.output,
                    grid * grid, dim)  # fmt: skip
    return embed, name


def _build(m: OnnxModel, scale: np.ndarray | None, shift: np.ndarray | None) -> Graph:
    embed, name = _patch_embedding(m, scale, shift)
    dim, grid = embed["dim"], embed["image"] // embed["patch"]
    patches = grid * grid
    token_bias = np.broadcast_to(embed["bias"], (patches, dim)).copy()
    prefix: np.ndarray | None = None
    while True:  # prefix tokens (Concat with constants) and position embedding (Add of a constant)
        users = m.users(name)
        if len(users) != 1:
            break
        node = users[0]
        const = [m.const(i) for i in node.input if i in m.consts]
        if node.op_type == "Concat" and len(m.dyn_inputs(node)) == 1 and const:
            if int(_attr(node, "axis", 0)) % 3 != 1:
                raise _fail(node, "concatenation along features")
            pos = list(node.input).index(name)
            if any(i not in m.consts for i in node.input[:pos]) or pos != len(node.input) - 1 or prefix is not None:
                raise _fail(node, "tokens appended after the patch tokens")
            prefix = np.concatenate([m.consts[i].reshape(-1, dim) for i in node.input[:pos]]).astype(np.float64)
        elif node.op_type == "Add" and len(const) == 1 and len(m.dyn_inputs(node)) == 1:
            rows = patches + (0 if prefix is None else len(prefix))
            pos_embed = np.broadcast_to(const[0].astype(np.float64).reshape(-1, dim), (rows, dim))
            if prefix is not None:
                prefix = prefix + pos_embed[: len(prefix)]
            token_bias = token_bias + pos_embed[rows - patches :]
        else:
            break
        name = node.output[0]
    k = 0 if prefix is None else len(prefix)
    tokens = patches + k
    if k > 16:
        raise _fail(m.users(name)[0], f"{k} prefix tokens (at most 16)")
    blocks: list[Block] = []
    r = name
    while True:
        ln = _layernorm_of(m, r)
        residual = [
            n
            for n in m.users(r)
            if n.op_type == "Add" and len(m.dyn_inputs(n)) == 2 and (ln is None or n not in ln.nodes)
        ]
        if ln is None or not residual:
            break
        add = residual[0]
        other = next(i for i in add.input if i != r)
        branch = _branch(m, ln.output, other)
        ops = {n.op_type for n in branch}
        if "Softmax" in ops:
            blocks.append(_attention(m, ln, branch, other, tokens, dim))
        elif ops & {"Erf", "Tanh", "Gelu"}:
            blocks.append(_mlp(m, ln, branch, other, tokens, dim))
        else:
            raise _fail(branch[0] if branch else add, "residual branch that is neither attention nor a GELU MLP")
        r = add.output[0]
    if len(blocks) % 2 or any(b.kind != kind for b, kind in zip(blocks, ["attn", "mlp"] * len(blocks), strict=False)):
        raise UserError(f"blocks found: {[b.kind for b in blocks]}; expected attention, MLP, attention, MLP, ...")
    head = _head(m, r, tokens, dim)
    return _graph(embed, prefix, token_bias, blocks, head, tokens)


def _graph(embed: dict, prefix, token_bias, blocks: list[Block], head: Head, tokens: int) -> Graph:

    dim, c, size, p = embed["dim"], embed["channels"], embed["image"], embed["patch"]
    b = GraphBuilder()
    tensor = b.tensor

    def linear(scope: str, role: Role, src: str, dst: str, wb) -> None:
        w, bias = wb
        b.linear(scope, role, src, dst, w, bias, w.shape[1], w.shape[0])

    def layernorm(scope: str, src: str, dst: str, ln: Norm) -> None:
        b.layernorm(scope, Role.LN, src, dst, ln.gamma, ln.beta, ln.eps)

    image = tensor("image", size, size, c)
    x = tensor("x0", tokens, dim)
    attrs = Attrs(weight=embed["weight"], bias=token_bias, prefix=prefix, patch=p, role=Role.PROJ)
    b.nodes.append(Node("patch_embed", Op.PATCH_EMBED, (image,), (x,), attrs, "patch_embed"))
    heads, hidden, forms = [], [], set()
    for i in range(0, len(blocks), 2):
        attn, mlp = blocks[i], blocks[i + 1]
        scope = f"blocks.{i // 2}.attn"
        y = tensor(f"{scope}.ln", tokens, dim)
        layernorm(scope, x, y, attn.ln)
        q, k, v = (tensor(f"{scope}.{n}", tokens, dim) for n in "qkv")
        for role, dst in ((Role.Q, q), (Role.K, k), (Role.V, v)):
            linear(scope, role, y, dst, attn.linears[role])
        av = b.attention_core(scope, q, k, v, attn.heads, tokens, dim)
        proj = tensor(f"{scope}.proj", tokens, dim)
        linear(scope, Role.PROJ, av, proj, attn.linears["proj"])
        x = b.residual(scope, x, proj, tokens, dim)
        scope = f"blocks.{i // 2}.mlp"
        y = tensor(f"{scope}.ln", tokens, dim)
        layernorm(scope, x, y, mlp.ln)
        width = mlp.linears["fc1"][0].shape[0]
        h = tensor(f"{scope}.fc1", tokens, width)
        linear(scope, Role.FC1, y, h, mlp.linears["fc1"])
        g = b.gelu(scope, h, tokens, width, mlp.approximate)
        f = tensor(f"{scope}.fc2", tokens, dim)
        linear(scope, Role.FC2, g, f, mlp.linears["fc2"])
        x = b.residual(scope, x, f, tokens, dim)
        heads.append(attn.heads)
        hidden.append(width)
        forms.add(mlp.approximate)
    scope = "head"
    classes = head.weight.shape[0]
    logits = tensor("logits", 1, classes)
    if head.kind == "pool_norm":
        pooled = tensor("head.pool", 1, dim)
        pool_attrs = Attrs(first_token=head.first_token, role=Role.POOL)
        b.nodes.append(Node("head.pool", Op.MEAN_POOL, (x,), (pooled,), pool_attrs, scope))
        y = tensor("head.ln", 1, dim)
        layernorm(scope, pooled, y, head.ln)
        linear(scope, Role.CLASSIFIER, y, logits, (head.weight, head.bias))
    else:
        y = tensor("head.ln", tokens, dim)
        layernorm(scope, x, y, head.ln)
        if head.kind == "token":
            read = tensor("head.readout", 1, head.readout * dim)
            read_attrs = Attrs(out_features=head.readout * dim, role=Role.READOUT)
            b.nodes.append(Node("head.readout", Op.READOUT, (y,), (read,), read_attrs, scope))
        else:
            read = tensor("head.pool", 1, dim)
            b.nodes.append(Node("head.pool", Op.MEAN_POOL, (y,), (read,), Attrs(role=Role.POOL), scope))
        linear(scope, Role.CLASSIFIER, read, logits, (head.weight, head.bias))
    arch = ImportedArch(
        image_size=size,
        in_channels=c,
        patch_size=p,
        embed_dim=dim,
        depth=len(heads),
        num_heads=tuple(heads),
        mlp_hidden_dims=tuple(hidden),
        num_classes=classes,
        prefix_tokens=0 if prefix is None else len(prefix),
        pooling=head.kind,
        mlp_gelu="/".join(sorted(forms)) or "none",
    )
    return b.graph(arch, image, logits)


# ------------------------------------------------------------------------------------------ checking
def reference_logits(path: Path, images_nchw: np.ndarray) -> np.ndarray:
    """The ONNX model's own output: onnxruntime if installed, else ONNX's reference evaluator."""
    import onnx

    model = onnx.load(str(path))
    name = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}][0]
    outs = []
    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        run = lambda x: session.run(None, {name: x})[0]  # noqa: E731
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        run = lambda x: evaluator.run(None, {name: x})[0]  # noqa: E731
    for image in images_nchw:
        outs.append(np.asarray(run(image[None].astype(np.float32)), dtype=np.float64).reshape(-1))
    return np.stack(outs)


def float_logits(graph: Graph, images_nchw: np.ndarray) -> np.ndarray:

    hwc = np.ascontiguousarray(np.asarray(images_nchw, dtype=np.float64).transpose(0, 2, 3, 1))
    return run_float(graph, hwc)[graph.outputs[0]].reshape(len(images_nchw), -1)


def check_against_reference(graph: Graph, path: Path, seed: int = 0, count: int = 2) -> tuple[float, float]:
    """(max |imported float IR - ONNX model|, max |logit|) on ``count`` random images."""
    a = graph.arch
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, a.in_channels, a.image_size, a.image_size)).astype(np.float32)
    fed = images
    if graph.input_affine is not None:  # what the ONNX model receives for our input
        scale, shift = (np.asarray(v, dtype=np.float32).reshape(1, -1, 1, 1) for v in graph.input_affine)
        fed = images * scale + shift
    want = reference_logits(path, fed)
    got = float_logits(graph, images)
    return float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))

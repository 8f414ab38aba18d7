"""Integer execution of a quantized graph with the Python reference (codegen.ref).

``run`` executes the fused graph exactly as the C does (row-wise kernels); ``run_unfused`` executes
the primitive ops one by one on whole tensors. Both must give identical integers: fusion is exact.
"""

from __future__ import annotations

import numpy as np

from codegen import ref
from codegen.ir import Graph, IRError, Node, Op


def _run_fused_node(node: Node, value: np.ndarray) -> np.ndarray:
    if node.op == Op.FUSED_PATCH_EMBED:
        return ref.patch_embed(node.kernel, value)
    if node.op == Op.FUSED_ATTENTION:
        return ref.attention_rowwise(node.kernel, value)
    if node.op == Op.FUSED_MLP:
        return ref.mlp_rowwise(node.kernel, value)
    if node.op == Op.FUSED_POOL_HEAD:
        return ref.pool_head(node.kernel, value)
    raise IRError(f"{node.name}: not a fused node; run the fuse pass first")


def run(graph: Graph, image_int8: np.ndarray) -> np.ndarray:
    """One int8 HWC image -> int8 logits (classes,), bit-exact with the generated C."""
    value = image_int8
    for node in graph.nodes:  # fused graphs are a chain: each node consumes its predecessor's output
        value = _run_fused_node(node, value)
    return np.asarray(value, dtype=np.int8).reshape(-1)


def run_batch(graph: Graph, images_int8: np.ndarray) -> np.ndarray:
    return np.stack([run(graph, image) for image in images_int8]) if len(images_int8) else np.zeros((0, 0), np.int8)


def _run_primitive(node: Node, args: list[np.ndarray]) -> np.ndarray:
    k = node.kernel
    if node.op == Op.PATCH_EMBED:
        return ref.patch_embed(k, args[0])
    if node.op == Op.LINEAR:
        return ref.linear(k, args[0])
    if node.op == Op.LAYERNORM:
        return ref.layernorm(k, args[0])
    if node.op == Op.ATTN_SCORES:
        return _per_head(args, node.attrs.heads, lambda q, kk: ref.attn_scores(k, q, kk))
    if node.op == Op.SOFTMAX:
        return ref.softmax(k, args[0])
    if node.op == Op.ATTN_AV:
        probs, v = args
        heads = node.attrs.heads
        dh = v.shape[1] // heads
        return np.concatenate(
            [ref.attn_weighted_sum(k, probs[h], v[:, h * dh : (h + 1) * dh]) for h in range(heads)], axis=1
        )
    if node.op == Op.ADD:
        return ref.add(k, args[0], args[1])
    if node.op == Op.GELU:
        return ref.lut(k, args[0])
    if node.op == Op.MEAN_POOL:
        acc = (args[0].astype(np.int64) + k.input_offset).sum(axis=0, keepdims=True)
        out = ref.requantize(acc, k.requant.multiplier, k.requant.shift) + k.output_offset
        return np.clip(out, -128, 127).astype(np.int8)
    raise IRError(f"{node.name}: no unfused rule for {node.op}")


def _per_head(args: list[np.ndarray], heads: int, fn) -> np.ndarray:
    q, k = args
    dh = q.shape[1] // heads
    return np.stack([fn(q[:, h * dh : (h + 1) * dh], k[:, h * dh : (h + 1) * dh]) for h in range(heads)])


def run_unfused(graph: Graph, image_int8: np.ndarray) -> np.ndarray:
    """Op-by-op execution of the primitive nodes (inside fused bodies too)."""
    values = {graph.inputs[0]: image_int8}
    for top in graph.nodes:
        for node in top.body or (top,):
            values[node.outputs[0]] = _run_primitive(node, [values[name] for name in node.inputs])
    return np.asarray(values[graph.outputs[0]], dtype=np.int8).reshape(-1)

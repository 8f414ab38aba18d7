"""Integer execution of a quantized graph with the Python reference (codegen.ref).

``run`` executes the fused graph exactly as the C does (row-wise kernels); ``run_unfused`` executes
the primitive ops one by one on whole (batched) tensors. Both give identical integers (fusion is
exact, tested), so evaluation over a data set uses the faster unfused path.
"""

from __future__ import annotations

import numpy as np
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, IRError, Node, Op
from mcuformer.codegen.qparams import PatchEmbedPrefixParams


def _patch_embed(kernel, image: np.ndarray) -> np.ndarray:
    if isinstance(kernel, PatchEmbedPrefixParams):
        return ref.patch_embed_prefix(kernel, image)
    return ref.patch_embed(kernel, image)


def _run_fused_node(node: Node, value: np.ndarray) -> np.ndarray:
    if node.op == Op.FUSED_PATCH_EMBED:
        return _patch_embed(node.kernel, value)
    if node.op == Op.FUSED_ATTENTION:
        return ref.attention_rowwise(node.kernel, value)
    if node.op == Op.FUSED_MLP:
        return ref.mlp_rowwise(node.kernel, value)
    if node.op == Op.FUSED_POOL_HEAD:
        return ref.pool_head(node.kernel, value)
    if node.op == Op.FUSED_TOKEN_HEAD:
        return ref.token_head(node.kernel, value)
    if node.op == Op.FUSED_POOL_NORM_HEAD:
        return ref.pool_norm_head(node.kernel, value)
    raise IRError(f"{node.name}: not a fused node; run the fuse pass first")


def run(graph: Graph, image_int8: np.ndarray) -> np.ndarray:
    """One int8 HWC image -> int8 logits (classes,), bit-exact with the generated C."""
    value = image_int8
    for node in graph.nodes:  # fused graphs are a chain: each node consumes its predecessor's output
        value = _run_fused_node(node, value)
    return np.asarray(value, dtype=np.int8).reshape(-1)


def run_batch(graph: Graph, images_int8: np.ndarray) -> np.ndarray:
    return np.stack([run(graph, image) for image in images_int8]) if len(images_int8) else np.zeros((0, 0), np.int8)


def _heads(x: np.ndarray, heads: int, h: int) -> np.ndarray:
    dh = x.shape[-1] // heads
    return x[..., h * dh : (h + 1) * dh]


def _run_primitive(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """One primitive op on whole tensors with a leading batch axis: (B, ...) -> (B, ...)."""
    k, heads = node.kernel, node.attrs.heads
    if node.op == Op.PATCH_EMBED:
        return np.stack([_patch_embed(k, image) for image in args[0]])
    if node.op == Op.LINEAR:
        return ref.linear(k, args[0])
    if node.op == Op.LAYERNORM:
        return ref.layernorm(k, args[0])
    if node.op == Op.ATTN_SCORES:  # -> (B, H, T, T)
        q, kk = args
        return np.stack([ref.attn_scores(k, _heads(q, heads, h), _heads(kk, heads, h)) for h in range(heads)], axis=1)
    if node.op == Op.SOFTMAX:
        return ref.softmax(k, args[0])
    if node.op == Op.ATTN_AV:  # (B, H, T, T), (B, T, E) -> (B, T, E)
        probs, v = args
        outs = [ref.attn_weighted_sum(k, probs[:, h], _heads(v, heads, h)) for h in range(heads)]
        return np.concatenate(outs, axis=-1)
    if node.op == Op.ADD:
        return ref.add(k, args[0], args[1])
    if node.op == Op.GELU:
        return ref.lut(k, args[0])
    if node.op == Op.MEAN_POOL:
        r = k.requant
        return ref.mean_pool(args[0], node.attrs.first_token, k.input_offset, r.multiplier, r.shift, k.output_offset)
    if node.op == Op.READOUT:  # (B, T, E) -> (B, 1, rows * E), a copy
        return args[0][:, : k.rows].reshape(len(args[0]), 1, -1)
    raise IRError(f"{node.name}: no unfused rule for {node.op}")


def run_unfused(graph: Graph, images_int8: np.ndarray) -> np.ndarray:
    """Op-by-op execution of the primitive nodes (inside fused bodies too) on a batch of int8 HWC
    images (B, H, W, C) -> logits (B, classes). Much faster than the row-wise path for evaluation."""
    values = {graph.inputs[0]: np.asarray(images_int8)}
    for top in graph.nodes:
        for node in top.body or (top,):
            values[node.outputs[0]] = _run_primitive(node, [values[name] for name in node.inputs])
    logits = values[graph.outputs[0]]
    return np.asarray(logits, dtype=np.int8).reshape(len(images_int8), -1)


def evaluate_batched(graph: Graph, images_int8: np.ndarray, max_elements: int = 1 << 22) -> np.ndarray:
    """Integer logits for many images, in chunks that keep the H x T x T score tensors bounded."""
    tokens = graph.meta["arch"].tokens
    heads = max(graph.meta["arch"].num_heads)
    chunk = max(1, max_elements // (heads * tokens * tokens))
    parts = [run_unfused(graph, images_int8[i : i + chunk]) for i in range(0, len(images_int8), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, graph.meta["arch"].num_classes), np.int8)


def op_error_lsb(graph: Graph, images_int8: np.ndarray) -> dict[str, dict[str, float]]:
    """Each primitive op's own error: its integer output against the float op evaluated on the same
    (dequantized) integer inputs, in output LSBs (the float result clipped to the int8 range first).
    Isolates one op's arithmetic from the error the ops before it accumulated."""
    from mcuformer.codegen.float_exec import eval_node

    def real(name: str, q: np.ndarray) -> np.ndarray:
        qp = graph.tensors[name].qparams
        return (q.astype(np.float64) - qp.zero_point) * qp.scale

    values = {graph.inputs[0]: np.asarray(images_int8)}
    result: dict[str, dict[str, float]] = {}
    for top in graph.nodes:
        for node in top.body or (top,):
            args = [values[name] for name in node.inputs]
            got = values[node.outputs[0]] = _run_primitive(node, args)
            want = eval_node(node, [real(n, a) for n, a in zip(node.inputs, args, strict=True)])
            qp = graph.tensors[node.outputs[0]].qparams
            want = np.clip(want, qp.scale * (-128 - qp.zero_point), qp.scale * (127 - qp.zero_point))
            err = np.abs(real(node.outputs[0], got) - want) / qp.scale
            result[node.name] = {"max_lsb": round(float(err.max()), 3), "mean_lsb": round(float(err.mean()), 4)}
    return result

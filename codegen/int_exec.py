"""Integer execution of a quantized graph with the Python reference (codegen.ref).

``run`` executes the fused graph exactly as the C does (row-wise kernels); ``run_unfused`` executes
the primitive ops one by one on whole (batched) tensors; both are the ops' definitions' references
(codegen.ops). Both give identical integers (fusion is
exact, tested), so evaluation over a data set uses the faster unfused path.
"""

from __future__ import annotations

import numpy as np

from mcuformer.codegen.float_exec import eval_node
from mcuformer.codegen.ir import Graph, Node
from mcuformer.codegen.ops import fused, primitive
from mcuformer.codegen.qparams import dequantize_tensor


def run_node(node: Node, value: np.ndarray) -> np.ndarray:
    """One fused node on one image's value, row-wise as its C kernel (its definition's reference)."""
    return fused(node.op).reference(node, value)


def run(graph: Graph, image_int8: np.ndarray) -> np.ndarray:
    """One int8 HWC image -> int8 logits (classes,), bit-exact with the generated C."""
    value = image_int8
    for node in graph.nodes:  # fused graphs are a chain: each node consumes its predecessor's output
        value = run_node(node, value)
    return np.asarray(value, dtype=np.int8).reshape(-1)


def run_batch(graph: Graph, images_int8: np.ndarray) -> np.ndarray:
    return np.stack([run(graph, image) for image in images_int8]) if len(images_int8) else np.zeros((0, 0), np.int8)


def run_primitive(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """One primitive op on whole tensors with a leading batch axis: (B, ...) -> (B, ...)."""
    return primitive(node.op).reference(node, args)


def run_unfused(graph: Graph, images_int8: np.ndarray) -> np.ndarray:
    """Op-by-op execution of the primitive nodes (inside fused bodies too) on a batch of int8 HWC
    images (B, H, W, C) -> logits (B, classes). Much faster than the row-wise path for evaluation."""
    values = {graph.inputs[0]: np.asarray(images_int8)}
    for top in graph.nodes:
        for node in top.body or (top,):
            values[node.outputs[0]] = run_primitive(node, [values[name] for name in node.inputs])
    logits = values[graph.outputs[0]]
    return np.asarray(logits, dtype=np.int8).reshape(len(images_int8), -1)


def evaluate_batched(graph: Graph, images_int8: np.ndarray, max_elements: int = 1 << 22) -> np.ndarray:
    """Integer logits for many images, in chunks that keep the H x T x T score tensors bounded."""
    tokens = graph.arch.tokens
    heads = max(graph.arch.num_heads)
    chunk = max(1, max_elements // (heads * tokens * tokens))
    parts = [run_unfused(graph, images_int8[i : i + chunk]) for i in range(0, len(images_int8), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, graph.arch.num_classes), np.int8)


def op_error_lsb(graph: Graph, images_int8: np.ndarray) -> dict[str, dict[str, float]]:
    """Each primitive op's own error: its integer output against the float op evaluated on the same
    (dequantized) integer inputs, in output LSBs (the float result clipped to the int8 range first).
    Isolates one op's arithmetic from the error the ops before it accumulated."""

    def real(name: str, q: np.ndarray) -> np.ndarray:
        qp = graph.tensors[name].qparams
        return dequantize_tensor(q, qp.scale, qp.zero_point)

    values = {graph.inputs[0]: np.asarray(images_int8)}
    result: dict[str, dict[str, float]] = {}
    for top in graph.nodes:
        for node in top.body or (top,):
            args = [values[name] for name in node.inputs]
            got = values[node.outputs[0]] = run_primitive(node, args)
            want = eval_node(node, [real(n, a) for n, a in zip(node.inputs, args, strict=True)])
            qp = graph.tensors[node.outputs[0]].qparams
            want = np.clip(want, qp.scale * (-128 - qp.zero_point), qp.scale * (127 - qp.zero_point))
            err = np.abs(real(node.outputs[0], got) - want) / qp.scale
            result[node.name] = {"max_lsb": round(float(err.max()), 3), "mean_lsb": round(float(err.mean()), 4)}
    return result

"""Float interpreter of the primitive IR (numpy, float64, batched). Used for calibration and to check
that the frontend reproduces the torch model."""

from __future__ import annotations

import numpy as np
from mcuformer.codegen.ir import Graph, Node, Op
from scipy.special import erf


def patchify_hwc(images: np.ndarray, patch: int) -> np.ndarray:
    """(B, H, W, C) -> (B, T, P*P*C), patch vectors ordered (py, px, c), tokens row-major."""
    b, h, w, c = images.shape
    g_h, g_w = h // patch, w // patch
    x = images.reshape(b, g_h, patch, g_w, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, g_h * g_w, patch * patch * c)


def _split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    b, t, e = x.shape
    return x.reshape(b, t, heads, e // heads).transpose(0, 2, 1, 3)  # (B, H, T, Dh)


def eval_node(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """One primitive op in float64 on batched arguments."""
    a = node.attrs
    if node.op == Op.PATCH_EMBED:
        x = patchify_hwc(args[0], a.patch) @ a.weight.T + a.bias[None]
        if a.prefix is None:
            return x
        return np.concatenate([np.broadcast_to(a.prefix, (len(x), *a.prefix.shape)), x], axis=1)
    if node.op == Op.LINEAR:
        y = args[0] @ a.weight.T
        return y + a.bias if a.bias is not None else y
    if node.op == Op.LAYERNORM:
        x = args[0]
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + a.eps) * a.gamma + a.beta
    if node.op == Op.ATTN_SCORES:
        q, k = (_split_heads(t, a.heads) for t in args)
        return q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])  # (B, H, T, T)
    if node.op == Op.SOFTMAX:
        z = np.exp(args[0] - args[0].max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)
    if node.op == Op.ATTN_AV:
        out = args[0] @ _split_heads(args[1], a.heads)  # (B, H, T, Dh)
        b, h, t, d = out.shape
        return out.transpose(0, 2, 1, 3).reshape(b, t, h * d)
    if node.op == Op.ADD:
        return args[0] + args[1]
    if node.op == Op.GELU:
        x = args[0]
        if a.approximate == "tanh":
            return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    if node.op == Op.MEAN_POOL:
        return args[0][:, a.first_token :].mean(axis=1, keepdims=True)
    if node.op == Op.READOUT:
        rows = a.out_features // args[0].shape[-1]  # out_features = rows * E
        return args[0][:, :rows].reshape(len(args[0]), 1, -1)
    raise ValueError(f"float interpreter has no rule for {node.op}")


def run_float(graph: Graph, images_hwc: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor's value for a batch of (B, H, W, C) float images."""
    values: dict[str, np.ndarray] = {graph.inputs[0]: np.asarray(images_hwc, dtype=np.float64)}
    for top in graph.nodes:
        for node in top.body or (top,):
            values[node.outputs[0]] = eval_node(node, [values[name] for name in node.inputs])
    return values

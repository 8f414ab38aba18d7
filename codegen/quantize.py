"""Post-training int8 quantization: calibration ranges -> int8 tensors + per-node integer kernels.

Activations: asymmetric per-tensor int8 from the calibrated [min, max] (always containing 0).
Softmax outputs are fixed at scale 1/256, zero point -128 (the kernel's contract). Weights are
symmetric per output channel (codegen.qparams). Everything the C needs is computed here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from mcuformer.codegen import qparams as qp
from mcuformer.codegen.float_exec import run_float
from mcuformer.codegen.ir import Graph, Node, Op, QParams, Tensor

PROBS_QPARAMS = QParams(1.0 / 256.0, -128)


def calibrate(graph: Graph, images_hwc: np.ndarray, max_elements: int = 1 << 22) -> dict[str, tuple[float, float]]:
    """Per-tensor (min, max) over a calibration batch of float (B, H, W, C) images, run in chunks
    that keep the float H x T x T attention tensors below ``max_elements`` values."""
    largest = max(int(np.prod(t.shape)) for t in graph.tensors.values())
    chunk = max(1, max_elements // largest)
    ranges: dict[str, tuple[float, float]] = {}
    for start in range(0, len(images_hwc), chunk):
        for name, v in run_float(graph, images_hwc[start : start + chunk]).items():
            lo, hi = ranges.get(name, (np.inf, -np.inf))
            ranges[name] = (min(lo, float(v.min())), max(hi, float(v.max())))
    return ranges


@dataclass(frozen=True)
class ReadOut:
    """The READOUT node's integer parameters (not a C struct: the token head kernel does the copy)."""

    rows: int


def _tensor_qparams(graph: Graph, ranges: dict[str, tuple[float, float]]) -> dict[str, QParams]:
    result: dict[str, QParams] = {}
    for name in graph.tensors:
        if name.endswith(".probs"):
            result[name] = PROBS_QPARAMS
        else:
            lo, hi = ranges[name]
            scale, zero_point = qp.choose_qparams(lo, hi)
            result[name] = QParams(scale, zero_point)
    for node in graph.nodes:
        if node.op == Op.READOUT:
            result[node.outputs[0]] = result[node.inputs[0]]
    return result


def _kernel(node: Node, q: dict[str, QParams], graph: Graph):
    a = node.attrs
    ins = [q[name] for name in node.inputs]
    out = q[node.outputs[0]]
    if node.op == Op.LINEAR:
        return qp.linear_params(a.weight, a.bias, ins[0].scale, ins[0].zero_point, out.scale, out.zero_point)
    if node.op == Op.PATCH_EMBED:
        h, w, c = graph.tensors[node.inputs[0]].shape
        embed = qp.patch_embed_params(
            a.weight, a.bias, h, w, c, a.patch, ins[0].scale, ins[0].zero_point, out.scale, out.zero_point
        )
        if a.prefix is None:
            return embed
        prefix = qp.quantize_tensor(a.prefix, out.scale, out.zero_point)  # rows of the residual stream
        return qp.PatchEmbedPrefixParams(embed=embed, prefix_tokens=len(prefix), prefix=prefix)
    if node.op == Op.LAYERNORM:
        return qp.layernorm_params(
            a.gamma, a.beta, ins[0].scale, ins[0].zero_point, out.scale, out.zero_point, eps=a.eps
        )
    if node.op == Op.ATTN_SCORES:
        tokens, dim = graph.tensors[node.inputs[0]].shape
        return qp.attn_scores_params(tokens, dim // a.heads, ins[0], ins[1], out)
    if node.op == Op.SOFTMAX:
        return qp.softmax_params(graph.tensors[node.inputs[0]].shape[-1], ins[0].scale)
    if node.op == Op.ATTN_AV:
        tokens, dim = graph.tensors[node.inputs[1]].shape
        return qp.attn_av_params(tokens, dim // a.heads, ins[1], out)
    if node.op == Op.ADD:
        return qp.add_params(
            ins[0].scale, ins[0].zero_point, ins[1].scale, ins[1].zero_point, out.scale, out.zero_point
        )
    if node.op == Op.GELU:
        return qp.gelu_table(ins[0].scale, ins[0].zero_point, out.scale, out.zero_point, a.approximate)
    if node.op == Op.MEAN_POOL:
        tokens = graph.tensors[node.inputs[0]].shape[0] - a.first_token
        return qp.mean_pool_params(tokens, ins[0].scale, ins[0].zero_point, out.scale, out.zero_point)
    if node.op == Op.READOUT:  # a copy of rows: the output keeps the input's quantization (_tensor_qparams)
        return ReadOut(rows=a.out_features // graph.tensors[node.inputs[0]].shape[1])
    raise ValueError(f"no quantization rule for {node.op}")


def quantize(graph: Graph, ranges: dict[str, tuple[float, float]]) -> Graph:
    """Float primitive graph + calibration ranges -> int8 graph whose nodes carry integer kernels."""
    assert not graph.meta.get("quantized"), "graph is already quantized"
    q = _tensor_qparams(graph, ranges)
    tensors = {name: replace(t, dtype="int8", qparams=q[name]) for name, t in graph.tensors.items()}
    nodes = tuple(replace(node, kernel=_kernel(node, q, graph)) for node in graph.nodes)
    return replace(graph, tensors=tensors, nodes=nodes, meta={**graph.meta, "quantized": True})


def quantize_images(images_hwc: np.ndarray, qparams: QParams) -> np.ndarray:
    """Float (B, H, W, C) images -> int8 with the graph input's quantization."""
    return qp.quantize_tensor(images_hwc, qparams.scale, qparams.zero_point)


def input_qparams(graph: Graph) -> QParams:
    tensor: Tensor = graph.tensors[graph.inputs[0]]
    assert tensor.qparams is not None
    return tensor.qparams

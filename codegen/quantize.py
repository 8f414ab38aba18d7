"""Post-training int8 quantization: calibration ranges -> int8 tensors + per-node integer kernels.

Activations: asymmetric per-tensor int8 from the calibrated [min, max] (always containing 0), unless
the op fixes its output's quantization (softmax: scale 1/256, zero point -128, the kernel's
contract; a readout keeps its input's). Weights are symmetric per output channel (codegen.qparams).
Each op's quantization rule lives in its definition (codegen.ops).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen.float_exec import run_float
from mcuformer.codegen.ir import Graph, QParams, Tensor
from mcuformer.codegen.ops import primitive


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


def tensor_qparams(graph: Graph, ranges: Mapping[str, tuple[float, float]]) -> dict[str, QParams]:
    """Every tensor's int8 quantization: from its range, or fixed by its producer's rule."""
    fixed = {}
    for node in graph.nodes:
        rule = primitive(node.op).output_qparams
        if rule is not None:
            fixed[node.outputs[0]] = node
    result: dict[str, QParams] = {}
    for name in graph.tensors:
        if name not in fixed:
            scale, zero_point = qp.choose_qparams(*ranges[name])
            result[name] = QParams(scale, zero_point)
    for name, node in fixed.items():  # in node order: a fixed output may follow another's
        rule = primitive(node.op).output_qparams
        assert rule is not None
        result[name] = rule(node, result)
    return result


def quantize(graph: Graph, ranges: Mapping[str, tuple[float, float]]) -> Graph:
    """Float primitive graph + calibration ranges -> int8 graph whose nodes carry integer kernels."""
    assert not graph.quantized, "graph is already quantized"
    q = tensor_qparams(graph, ranges)
    tensors = {name: replace(t, dtype="int8", qparams=q[name]) for name, t in graph.tensors.items()}
    nodes = tuple(replace(node, kernel=primitive(node.op).quantize(node, q, graph)) for node in graph.nodes)
    return replace(graph, tensors=tensors, nodes=nodes, quantized=True)


def check_ranges(graph: Graph, ranges: Mapping[str, tuple[float, float]]) -> None:
    """ValueError unless ``ranges`` gives a finite (min, max) with min <= max for every tensor of ``graph``."""
    missing = sorted(set(graph.tensors) - set(ranges))
    if missing:
        raise ValueError(f"activation ranges miss {len(missing)} tensor(s) of the graph, e.g. {missing[0]!r}")
    for name in graph.tensors:
        lo, hi = ranges[name]
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise ValueError(f"activation range of {name!r} is not a finite (min, max): {(lo, hi)}")


def quantize_images(images_hwc: np.ndarray, qparams: QParams) -> np.ndarray:
    """Float (B, H, W, C) images -> int8 with the graph input's quantization."""
    return qp.quantize_tensor(images_hwc, qparams.scale, qparams.zero_point)


def input_qparams(graph: Graph) -> QParams:
    tensor: Tensor = graph.tensors[graph.inputs[0]]
    assert tensor.qparams is not None
    return tensor.qparams

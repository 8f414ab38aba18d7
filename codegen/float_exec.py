"""Float interpreter of the primitive IR (numpy, float64, batched): each op's own float evaluation
(codegen.ops). Used for calibration and to check that the frontend reproduces the torch model."""

from __future__ import annotations

import numpy as np

from mcuformer.codegen.ir import Graph, Node
from mcuformer.codegen.ops import primitive


def eval_node(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """One primitive op in float64 on batched arguments."""
    return primitive(node.op).evaluate(node, args)


def run_float(graph: Graph, images_hwc: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor's value for a batch of (B, H, W, C) float images."""
    values: dict[str, np.ndarray] = {graph.inputs[0]: np.asarray(images_hwc, dtype=np.float64)}
    for top in graph.nodes:
        for node in top.body or (top,):
            values[node.outputs[0]] = eval_node(node, [values[name] for name in node.inputs])
    return values

"""The fake-quantized primitive graph (codegen.fake_quant): the context each op's ``train_forward``
runs in (``GraphContext``: parameters, activation ranges and their EMA while observing, the
quantization the compiler derives from them) and two drivers: ``run_graph`` (a batch of images through
the whole graph; nas.qat trains through it) and ``op_error_report`` (each op's fake-quant output against
its integer reference on the same integer inputs, in output LSBs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping

import numpy as np
import torch

from mcuformer.codegen import qparams as qp
from mcuformer.codegen.fake_quant import fake_quant, to_int
from mcuformer.codegen.int_exec import run_primitive
from mcuformer.codegen.ir import Graph, Node, QParams
from mcuformer.codegen.ops import primitive

Ranges = MutableMapping[str, tuple[float, float]]
ParamSource = Callable[[Node, str], torch.Tensor | None]  # a node's parameter from the model (None: its attrs)


class GraphContext:
    """The fake-quantized graph's state for ``train_forward``: parameters (``source``: the model's
    tensors; a node's float attrs otherwise), activation ranges (updated by an exponential moving
    average of each batch's min and max while ``observing``; the graph's inputs never), and the
    quantization the compiler derives from them (codegen.quantize.tensor_qparams' rules)."""

    def __init__(
        self,
        graph: Graph,
        ranges: Ranges | None = None,
        source: ParamSource | None = None,
        fixed: Mapping[str, QParams] | None = None,
        ema_decay: float = 0.9,
    ) -> None:
        """``fixed``: every tensor's quantization, given (a quantized graph's); else from ``ranges``."""
        assert (ranges is None) != (fixed is None), "give the ranges or the fixed quantization"
        self.graph = graph
        self.ranges = ranges
        self.source = source
        self.fixed = fixed
        self.ema_decay = ema_decay
        self.observing = False
        self._qparams: dict[str, QParams] = {}
        self._producers = graph.producers()
        self._constants: dict[tuple[str, str], torch.Tensor] = {}

    def param(self, node: Node, field: str) -> torch.Tensor:
        tensor = self.source(node, field) if self.source else None
        if tensor is not None:
            return tensor
        key = (node.name, field)
        if key not in self._constants:
            value = getattr(node.attrs, field)
            assert value is not None, f"{node.name} has no {field}"
            self._constants[key] = torch.as_tensor(np.asarray(value), dtype=torch.float32)
        return self._constants[key]

    def weight_qmax(self, node: Node) -> int:
        return qp.INT4_QMAX if getattr(node.attrs, "weight_bits", 8) == 4 else qp.INT8_QMAX

    def qparams(self, tensor: str) -> QParams:
        if self.fixed is not None:
            return self.fixed[tensor]
        if tensor not in self._qparams:
            node = self._producers.get(tensor)
            rule = primitive(node.op).output_qparams if node is not None else None
            if rule is not None:
                self._qparams[tensor] = rule(node, {name: self.qparams(name) for name in node.inputs})
            else:
                assert self.ranges is not None
                self._qparams[tensor] = QParams(*qp.choose_qparams(*self.ranges[tensor]))
        return self._qparams[tensor]

    def observe(self, node: Node, y: torch.Tensor) -> QParams:
        name = node.outputs[0]
        if self.observing and self.ranges is not None and primitive(node.op).output_qparams is None:
            lo, hi = self.ranges[name]
            d = self.ema_decay
            self.ranges[name] = (d * lo + (1 - d) * float(y.detach().min()), d * hi + (1 - d) * float(y.detach().max()))
            self._qparams.pop(name, None)
        return self.qparams(name)

    def output(self, node: Node, y: torch.Tensor) -> torch.Tensor:
        return fake_quant(y, self.observe(node, y))

    def run_node(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        forward = primitive(node.op).train_forward
        if forward is None:
            raise NotImplementedError(f"op '{node.op}' has no train_forward: it cannot be trained quantization-aware")
        return forward(node, args, self)


def primitive_nodes(graph: Graph) -> list[Node]:
    """The primitive nodes in order (inside fused bodies too)."""
    return [node for top in graph.nodes for node in (top.body or (top,))]


def run_graph(ctx: GraphContext, images_hwc: torch.Tensor) -> torch.Tensor:
    """Float (B, H, W, C) images -> (B, classes) logits of the fake-quantized graph (real values)."""
    graph = ctx.graph
    values = {graph.inputs[0]: fake_quant(images_hwc, ctx.qparams(graph.inputs[0]))}
    for node in primitive_nodes(graph):
        values[node.outputs[0]] = ctx.run_node(node, [values[name] for name in node.inputs])
    logits = values[graph.outputs[0]]
    return logits.reshape(len(images_hwc), -1)


@torch.no_grad()
def op_error_report(graph: Graph, images_int8: np.ndarray) -> dict[str, dict[str, float]]:
    """Per primitive op of a quantized graph: its fake-quant forward (``train_forward``) against its
    integer reference, both on the integer reference's inputs, in output LSBs: ``max_lsb``,
    ``mean_lsb`` and ``exact`` (the fraction of outputs that agree). The target is max_lsb <= 1."""
    assert graph.quantized, "op_error_report needs a quantized graph"
    fixed = {name: t.qparams for name, t in graph.tensors.items() if t.qparams is not None}
    ctx = GraphContext(graph, fixed=fixed)
    values: dict[str, np.ndarray] = {graph.inputs[0]: np.asarray(images_int8)}
    report: dict[str, dict[str, float]] = {}
    for node in primitive_nodes(graph):
        args = [values[name] for name in node.inputs]
        got = values[node.outputs[0]] = run_primitive(node, args)
        real_args = [
            torch.as_tensor(qp.dequantize_tensor(a, *_sz(fixed[name])), dtype=torch.float32)
            for name, a in zip(node.inputs, args, strict=True)
        ]
        out_q = fixed[node.outputs[0]]
        fake = to_int(ctx.run_node(node, real_args), out_q)
        diff = np.abs(fake - np.asarray(got, dtype=np.int64).reshape(fake.shape))
        report[node.name] = {
            "max_lsb": float(diff.max()),
            "mean_lsb": round(float(diff.mean()), 5),
            "exact": round(float((diff == 0).mean()), 5),
        }
    return report


def _sz(q: QParams) -> tuple[float, int]:
    return q.scale, q.zero_point

"""The compiler driver: static ViT -> quantized, fused, planned, verified graph -> lowered model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from mcuformer.codegen import int_exec
from mcuformer.codegen.cost import NUM_TEST_INPUTS, Cost, arena_budget, cost_of_graph
from mcuformer.codegen.frontend import from_torch
from mcuformer.codegen.ir import Graph
from mcuformer.codegen.lower import LoweredModel, lower
from mcuformer.codegen.pipeline import run_pipeline
from mcuformer.codegen.quantize import calibrate, check_ranges, input_qparams, quantize, quantize_images


@dataclass(frozen=True, eq=False)
class CompiledModel:
    float_graph: Graph  # primitive, float
    graph: Graph  # quantized, fused, scheduled, planned, verified
    lowered: LoweredModel
    cost: Cost

    def quantize_input(self, images_hwc: np.ndarray) -> np.ndarray:
        return quantize_images(images_hwc, input_qparams(self.graph))

    def run_int8(self, images_int8: np.ndarray) -> np.ndarray:
        """Integer reference logits (B, classes) int8: exactly what the C prints."""
        return int_exec.run_batch(self.graph, images_int8)

    def evaluate_int8(self, images_int8: np.ndarray) -> np.ndarray:
        """The same logits through the batched op-by-op reference (identical integers, faster)."""
        return int_exec.evaluate_batched(self.graph, images_int8)


def to_hwc(images_nchw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(images_nchw, dtype=np.float64).transpose(0, 2, 3, 1))


def compile_model(
    model,
    calibration_nchw: np.ndarray,
    sram_bytes: int | None = None,
    log: Callable[[str], None] | None = None,
    num_test_inputs: int = NUM_TEST_INPUTS,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> CompiledModel:
    """model: mcuformer.model.ViT; calibration images (B, C, H, W) float at the model's resolution;
    sram_bytes: the board's SRAM (lets the planner choose memory-saving schedules to fit it); ranges:
    every tensor's activation (min, max) to quantize with (those quantization-aware training learned,
    nas.qat) instead of calibrating on the images."""
    return compile_graph(from_torch(model), calibration_nchw, sram_bytes, log, num_test_inputs, ranges)


def compile_graph(
    float_graph: Graph,
    calibration_nchw: np.ndarray,
    sram_bytes: int | None = None,
    log: Callable[[str], None] | None = None,
    num_test_inputs: int = NUM_TEST_INPUTS,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> CompiledModel:
    """The same for a primitive float graph from any frontend (our ViT, an imported ONNX model)."""
    if ranges is None:
        ranges = calibrate(float_graph, to_hwc(calibration_nchw))
    else:
        check_ranges(float_graph, ranges)
    graph = quantize(float_graph, ranges)
    graph = replace(graph, arena_budget=arena_budget(sram_bytes, graph.arch))
    graph = run_pipeline(graph, log)
    return CompiledModel(float_graph, graph, lower(graph), cost_of_graph(graph, num_test_inputs))

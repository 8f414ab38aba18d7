"""Every report JSON the app writes, built in one place: the search run's RUN/arch.json
(``search_report``) and the C project's PROJ/report.json (``project_report``), plus the log lines
that summarise a project's memory."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from mcuformer.arch import ArchConfig, SearchSpace
from mcuformer.boards import Board
from mcuformer.codegen.compile import CompiledModel
from mcuformer.codegen.ir import Graph, Node, Op
from mcuformer.data import Dataset
from mcuformer.nas.instr_model import node_features
from mcuformer.nas.search import SearchConfig, SearchResult

Log = Callable[[str], None]


def op_macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of one fused operator: its linears, patch embedding and attention
    products (recomputation by the per-head schedule included)."""
    f = node_features(graph, node)
    return int(f["macs"] + f["attn_macs"])


def weight_precision(graph: Graph) -> list[int]:
    """Weight bits of each transformer block's linears (8, or 4 for packed int4), in block order, as
    compiled: read from the graph's linear nodes (scope ``blocks.<i>.*``)."""
    bits: dict[int, int] = {}
    for top in graph.nodes:
        for node in top.body or (top,):
            block = re.match(r"blocks\.(\d+)\.", node.scope)
            if node.op == Op.LINEAR and block:
                i = int(block.group(1))
                bits[i] = min(bits.get(i, 8), node.attrs.weight_bits)
    return [bits[i] for i in sorted(bits)]


def project_report(
    compiled: CompiledModel,
    board: Board,
    test_int8: np.ndarray,
    expected: np.ndarray,
    labels: list[int],
    float_acc: float,
    int8_acc: float,
    source: str,
    data: Dataset,
    arch: ArchConfig,
) -> dict[str, Any]:
    """PROJ/report.json (and the library's): memory plan, quantization of the input and output, the
    embedded test inputs with their expected outputs, and how to prepare a camera image."""
    graph, cost = compiled.graph, compiled.cost
    plan = graph.planned()
    ops = []
    for step, node in enumerate(graph.nodes):
        tensors = node.inputs + node.outputs + node.workspace
        excluded = set(graph.streamed_inputs) | set(graph.external_outputs)
        ops.append(
            {
                "step": step,
                "name": node.name,
                "kind": node.op,
                "kernel": compiled.lowered.calls[step].kernel,
                "schedule": node.variant,
                "tile": node.tile,
                "macs": op_macs(graph, node),
                "shapes": {t: list(graph.tensors[t].shape) for t in tensors},
                "offsets": {t: plan.offset_of(t) for t in tensors if t not in excluded},
                "scratch": {"offset": plan.offset_of(f"{node.name}.scratch"), "bytes": node.scratch_bytes},
                "fused": [n.name for n in node.body],
            }
        )
    in_q = graph.tensors[graph.inputs[0]].qparams
    out_q = graph.tensors[graph.outputs[0]].qparams
    return {
        "board": board.name,
        "arch": graph.arch.to_json(),
        "run": source,
        "arena_bytes": cost.arena_bytes,
        "naive_arena_bytes": cost.naive_arena_bytes,
        "lower_bound_bytes": cost.lower_bound_bytes,
        "peak_sram_bytes": cost.peak_sram_bytes,
        "flash_bytes": cost.flash_bytes,
        "weight_bytes": cost.weight_bytes,
        "weight_precision": weight_precision(graph),  # per block: 8 (int8) or 4 (packed int4) weights
        "budget": {"sram_bytes": board.sram_bytes, "flash_bytes": board.flash_bytes},
        "accuracy": {"float_top1": float_acc, "int8_top1": int8_acc},
        "input_quant": {"scale": in_q.scale, "zero_point": in_q.zero_point, "layout": "HWC int8"},
        "output_quant": {"scale": out_q.scale, "zero_point": out_q.zero_point},
        "buffers": [
            {"name": b.name, "offset": b.offset, "bytes": b.size, "first_step": b.first, "last_step": b.last}
            for b in plan.buffers
        ],
        "ops": ops,
        "test_inputs": [img.reshape(-1).astype(int).tolist() for img in test_int8],
        "test_labels": labels,
        "expected_outputs": [row.astype(int).tolist() for row in expected],
        "class_labels": list(data.class_names),
        "preprocessing": input_preparation(data, arch, {"scale": in_q.scale, "zero_point": in_q.zero_point}),
    }


def add_project_details(
    report: dict[str, Any],
    model_normalisation: dict[str, list[float]] | None,
    compiled: CompiledModel,
    placement_json: dict[str, Any],
    op_errors: dict[str, Any],
) -> None:
    """What a C project's report.json adds to ``project_report``: the memory regions, a folded
    normalisation, each op's error against float, and the ONNX import check."""
    report["memory_regions"] = placement_json
    if model_normalisation:
        report["preprocessing"]["model_normalisation"] = (
            f"folded into the patch embedding: the ONNX model sees (v - mean) / std, v = (x + 1) / 2 in [0, 1], "
            f"mean {model_normalisation['mean']}, std {model_normalisation['std']}"
        )
    report["op_error_lsb"] = op_errors  # each op vs float on its own inputs
    if compiled.float_graph.import_check_max_abs_diff is not None:
        report["import"] = {"onnx_max_abs_diff": compiled.float_graph.import_check_max_abs_diff}


def log_memory(report: dict[str, Any], log: Log) -> None:
    a, n, lb = report["arena_bytes"], report["naive_arena_bytes"], report["lower_bound_bytes"]
    log(
        f"arena {a} B (naive op-by-op {n} B = {a / n:.2f}x of naive; lower bound {lb} B), "
        f"planned peak SRAM {report['peak_sram_bytes']} B, flash {report['flash_bytes']} B"
    )
    measured = report.get("measured")
    if measured and "error" not in measured:
        log(
            f"measured in {measured['target']}: peak SRAM {measured['peak_sram_bytes']} B "
            f"(static {measured['static_sram_bytes']} B + stack {measured['stack_bytes']} B), "
            f"flash {measured['flash_bytes']} B, {measured['instructions_per_inference']:,} instructions/inference, "
            + ("bit-exact" if measured["bit_exact"] else "NOT bit-exact")
        )
    elif measured:
        log(f"not measured in QEMU: {measured['error']}")


def input_preparation(data: Dataset, arch: ArchConfig, input_quant: dict[str, Any]) -> dict[str, Any]:
    """How a raw camera image becomes the int8 input the model expects (for the project README)."""
    return {
        "resize": f"{arch.image_size}x{arch.image_size}, bilinear (half-pixel centers, no antialias)",
        "channels": arch.in_channels,
        "layout": "HWC (row by row, channels interleaved)",
        "scaling": data.preprocessing,
        "quantize": f"q = clamp(round(x / {input_quant['scale']:.9g}) + {input_quant['zero_point']}, -128, 127)",
    }


def search_report(
    *,
    board: Board,
    result: SearchResult,
    search_cfg: SearchConfig,
    predicted: tuple[int, int, int],
    accuracy: tuple[float, float],
    costed: int,
    rejected: dict[str, int],
    largest_fits: bool,
    cost_evaluations: tuple[int, float, float],
    trajectory: dict[str, Any] | None,
    search_space: SearchSpace,
    init_from: str | None,
    finetune_epochs: int,
    seconds: dict[str, float],
    data: Dataset,
    data_spec: str,
    data_size: int | None,
    data_info: dict[str, Any],
    seed: int,
    space: SearchSpace,
    space_info: dict[str, Any],
    fill: dict[str, Any],
    instr_budget: float | None,
    predicted_instructions: float | None,
) -> dict[str, Any]:
    """RUN/arch.json. ``predicted``: the winner's (peak SRAM, flash, arena) bytes; ``accuracy``: its
    (float, int8) val top-1; ``costed``/``rejected``: the candidates the space evolution and the evolution
    costed, and those over each budget; ``cost_evaluations``: (count, per second, per CPU second)."""
    sram, flash, arena = predicted
    evaluations, per_second, per_cpu_second = cost_evaluations
    report: dict[str, Any] = {
        "arch": result.best_arch.to_json(),
        "board": board.name,
        "budget": {"sram_bytes": board.sram_bytes, "flash_bytes": board.flash_bytes},
        "predicted": {"peak_sram_bytes": sram, "flash_bytes": flash, "arena_bytes": arena},
        "accuracy": {"float_top1": accuracy[0], "int8_top1": accuracy[1], "supernet_top1": result.best_acc},
        "search": {  # every candidate costed (space evolution + evolution); "evolution": the latter only
            "evaluated": costed,
            "rejected_sram": rejected["sram"],
            "rejected_flash": rejected["flash"],
            "rejected_instr": rejected["instr"],
            "evolution": {
                k: getattr(result, k) for k in ("evaluated", "rejected_sram", "rejected_flash", "rejected_instr")
            }
            | {"feasible": len(result.feasible)},
            "population": search_cfg.population,
            "generations": search_cfg.generations,
            "parents": search_cfg.parents,
            "mutations": search_cfg.mutations,
            "crossovers": search_cfg.crossovers,
            "largest_fits": largest_fits,
            "cost_evaluations": evaluations,
            "cost_evaluations_per_second": per_second,
            "cost_evaluations_per_cpu_second": per_cpu_second,
            "space_evolution": trajectory["chosen"] if trajectory else None,
            "search_space": search_space.to_json(),
            "init_from": init_from,
            "finetune_epochs": finetune_epochs,
            "seconds": seconds,
        },
        "data": data_spec,
        "data_size": data_size,  # folders: resized on load to this
        "data_stored": data_info,  # RUN/data.npz: what export calibrates and tests on
        "class_labels": data.class_names,  # the user's label of output k
        "preprocessing": data.preprocessing,
        "seed": seed,
        "space": space.to_json(),
        "space_source": space_info,
        "fill": fill,
    }
    if instr_budget is not None:
        report["budget"]["instructions"] = instr_budget
        report["predicted"]["instructions"] = predicted_instructions
    return report

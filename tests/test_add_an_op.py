"""Adding an op is one file: tests/toy_op.py registers a toy op (its float evaluation, quantization,
integer reference, constant bytes, scratch, C kernel and call) and nothing else is edited. Here it
is inserted into a real small model after the patch embedding and taken through quantization, the
integer reference, the cost model, the planner, lowering and a host C build that must match the
Python reference bit for bit. Also the pipeline's verify-each-pass switch."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mcuformer.arch import ArchConfig
from mcuformer.boards import get_board
from mcuformer.codegen import pipeline
from mcuformer.codegen.board_files import render_board_files
from mcuformer.codegen.compile import compile_graph
from mcuformer.codegen.cost import STACK_RESERVE_BYTES, constant_bytes, cost_of_graph
from mcuformer.codegen.emit import project_sources, render_model_files, runtime_sources
from mcuformer.codegen.frontend import build_graph, from_torch
from mcuformer.codegen.ir import Graph, IRError, Node, Tensor
from mcuformer.codegen.pipeline import VERIFY_ENV, run_pipeline
from mcuformer.emulate import emulate
from mcuformer.model import ViT
from tests import toy_op

ARCH = ArchConfig(8, 1, 4, 32, 2, (2, 2), (2.0, 1.0), (8, 0), (0, 8), 10)
HAVE_CC = shutil.which("cc") is not None or shutil.which("gcc") is not None


def with_toy_scale(graph: Graph, multipliers: np.ndarray | None) -> Graph:
    """``graph`` with a toy_scale node (its own scope) on the patch embedding's output."""
    x0 = graph.nodes[0].outputs[0]
    scaled = "toy.out"
    node = Node("toy.scale", toy_op.TOY_SCALE, (x0,), (scaled,), toy_op.ScaleAttrs(multipliers=multipliers), "toy")
    rest = tuple(replace(n, inputs=tuple(scaled if t == x0 else t for t in n.inputs)) for n in graph.nodes[1:])
    tensors = {**graph.tensors, scaled: Tensor(scaled, graph.tensors[x0].shape)}
    return graph.with_nodes((graph.nodes[0], node, *rest), tensors)


@pytest.fixture(scope="module")
def compiled():
    torch.manual_seed(0)
    model = ViT(ARCH).eval()
    multipliers = np.random.default_rng(1).integers(-2, 4, ARCH.embed_dim).astype(np.float64)
    graph = with_toy_scale(from_torch(model), multipliers)
    calibration = np.random.default_rng(2).uniform(-1.0, 1.0, (8, 1, ARCH.image_size, ARCH.image_size))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(VERIFY_ENV, "1")  # the whole pipeline with the verifier after every pass
        return compile_graph(graph, calibration, sram_bytes=get_board("host").sram_bytes)


def test_toy_op_quantizes_and_fuses(compiled) -> None:
    toy = next(n for n in compiled.graph.nodes if n.op == toy_op.FUSED_TOY_SCALE)
    assert isinstance(toy.kernel, toy_op.ToyScaleParams) and toy.kernel.multipliers.dtype == np.int8
    assert toy.inplace == (("x0", "toy.out"),)  # one buffer with the residual stream
    assert toy.scratch_bytes == toy_op.toy_scale_rows_s8_scratch_size(ARCH.embed_dim) == 32
    plan = compiled.graph.planned()
    assert plan.buffer_of("x0") is plan.buffer_of("toy.out")
    assert plan.buffer_of("toy.scratch").size == 32
    q = compiled.graph.tensors
    assert q["toy.out"].qparams == q["x0"].qparams  # the op's own output rule


def test_toy_op_integer_reference(compiled) -> None:
    images = np.random.default_rng(3).integers(-128, 128, (6, ARCH.image_size, ARCH.image_size, 1), dtype=np.int8)
    rowwise = compiled.run_int8(images)  # fused: the toy kernel's row-wise reference
    assert np.array_equal(rowwise, compiled.evaluate_int8(images))  # op by op: the primitive reference
    kernel = next(n.kernel for n in compiled.graph.nodes if n.op == toy_op.FUSED_TOY_SCALE)
    x = np.arange(-128, 128, dtype=np.int8).reshape(8, 32)
    want = np.clip((x.astype(int) - kernel.zero_point) * kernel.multipliers + kernel.zero_point, -128, 127)
    assert np.array_equal(toy_op.toy_scale_reference(kernel, x), want)


def test_toy_op_in_the_cost_model(compiled) -> None:
    assert compiled.cost.weight_bytes == compiled.lowered.constant_bytes == cost_of_graph(compiled.graph).weight_bytes
    shapes_only = run_pipeline(build_graph(ARCH))
    with_toy = run_pipeline(with_toy_scale(build_graph(ARCH), None))
    assert constant_bytes(with_toy) - constant_bytes(shapes_only) == ARCH.embed_dim  # int8 multipliers
    assert constant_bytes(with_toy) == compiled.cost.weight_bytes  # shapes alone give the emitted bytes
    assert with_toy.planned().arena_bytes == compiled.graph.planned().arena_bytes


@pytest.mark.skipif(not HAVE_CC, reason="no host C compiler")
def test_toy_op_lowers_and_runs_bit_exact_in_c(compiled, tmp_path: Path) -> None:
    board = get_board("host")
    images = np.random.default_rng(4).integers(-128, 128, (3, ARCH.image_size, ARCH.image_size, 1), dtype=np.int8)
    expected = compiled.run_int8(images)
    model = render_model_files(compiled.graph, compiled.lowered, images, [0, 1, 2])
    assert '#include "toy_scale.h"' in model["model/model.c"]
    assert f"{toy_op.KERNEL}(&toy, arena + " in model["model/model.c"]
    runtime = runtime_sources(board, compiled.graph)
    assert "runtime/src/toy_scale.c" in runtime and "runtime/src/toy_scale.c" not in runtime_sources(board)
    files = {**model, **runtime, **render_board_files(board, project_sources(runtime), STACK_RESERVE_BYTES)}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    report = {"board": board.name, "expected_outputs": [[int(v) for v in row] for row in expected]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    result = emulate(tmp_path, host=True, sanitize=True)
    assert result["bit_exact"], result["mismatches"]
    assert result["inputs"] == 3


def test_verify_each_pass_catches_a_bad_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def drop_first_node(graph: Graph) -> Graph:  # leaves the next node's input unproduced
        return graph.with_nodes(graph.nodes[1:])

    passes = (*pipeline.PIPELINE[:2], ("broken", drop_first_node, "a bug"), *pipeline.PIPELINE[2:3])
    monkeypatch.setattr(pipeline, "PIPELINE", passes)
    graph = build_graph(ARCH)
    run_pipeline(graph, verify_each_pass=False)  # unnoticed without the switch
    with pytest.raises(IRError, match="used before it is produced"):
        run_pipeline(graph, verify_each_pass=True)
    monkeypatch.setenv(VERIFY_ENV, "1")
    with pytest.raises(IRError, match="used before it is produced"):
        run_pipeline(graph)

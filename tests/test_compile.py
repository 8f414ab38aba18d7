"""Compiler tests: frontend == torch, fused integer graph == unfused integer graph, int8 close to
float, the cost model's flash figure equals the emitted arrays, and emission is deterministic."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch

from mcuformer.arch import ArchConfig
from mcuformer.codegen.compile import compile_model, to_hwc
from mcuformer.codegen.cost import estimate
from mcuformer.codegen.emit import render_model_files
from mcuformer.codegen.float_exec import run_float
from mcuformer.codegen.frontend import from_torch
from mcuformer.codegen.int_exec import run_batch, run_unfused
from mcuformer.codegen.ir import Op
from mcuformer.codegen.lower import c_identifier
from mcuformer.codegen.scratch import mlp_rowwise_s8_scratch_size
from mcuformer.model import ViT
from tests.builders import random_arch


def make_model(arch: ArchConfig, seed: int) -> ViT:
    torch.manual_seed(seed)
    return ViT(arch).eval()


def images(arch: ArchConfig, n: int, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, arch.in_channels, arch.image_size, arch.image_size, generator=gen) * 2 - 1).numpy()


@pytest.mark.parametrize("seed", range(4))
def test_frontend_reproduces_torch(seed: int) -> None:
    arch = random_arch(random.Random(100 + seed))
    model = make_model(arch, seed).double()
    x = images(arch, 3, seed)
    with torch.no_grad():
        expected = model(torch.from_numpy(x).double()).numpy()
    got = run_float(from_torch(model), to_hwc(x))["logits"][:, 0]
    np.testing.assert_allclose(got, expected, atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_fused_graph_equals_unfused_graph(seed: int) -> None:
    arch = random_arch(random.Random(200 + seed))
    model = make_model(arch, seed)
    compiled = compile_model(model, images(arch, 32, seed))
    q = compiled.quantize_input(to_hwc(images(arch, 5, seed + 1)))
    fused, unfused = run_batch(compiled.graph, q), run_unfused(compiled.graph, q)
    where = np.argwhere(fused != unfused)
    assert where.size == 0, (
        f"first mismatch at (image, class) {tuple(where[0])}: {fused[tuple(where[0])]} vs {unfused[tuple(where[0])]}"
    )


def test_int8_tracks_float() -> None:
    arch = ArchConfig(16, 1, 4, 48, 2, (4, 2), (2.0, 2.0), (12, 0), (0, 24), 10)
    model = make_model(arch, 0)
    x = images(arch, 64, 0)
    compiled = compile_model(model, x)
    out_q = compiled.graph.tensors["logits"].qparams
    logits = run_batch(compiled.graph, compiled.quantize_input(to_hwc(x[:16])))
    dequant = (logits.astype(np.float64) - out_q.zero_point) * out_q.scale
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:16])).numpy()
    # accumulated quantization error over 2 blocks: a few output LSB, far below the logit range
    assert np.abs(dequant - ref).max() <= 8 * out_q.scale
    assert (dequant.argmax(1) == ref.argmax(1)).mean() >= 0.8


@pytest.mark.parametrize("seed", range(3))
def test_cost_model_matches_emitted_model(seed: int) -> None:
    """The search's figures (shapes only, no weights) are what the emitted C holds: the constant
    arrays' bytes and the arena the C declares; and the arena holds each MLP call's x and scratch
    side by side (the kernel requires them disjoint)."""
    arch = random_arch(random.Random(300 + seed))
    compiled = compile_model(make_model(arch, seed), images(arch, 16, seed))
    assert compiled.lowered.constant_bytes == compiled.cost.weight_bytes
    files = render_model_files(
        compiled.graph, compiled.lowered, compiled.quantize_input(to_hwc(images(arch, 1, 9))), [0]
    )
    defined = re.search(r"#define MCUF_MODEL_ARENA_BYTES (\d+)", files["model/model.h"])
    assert defined is not None
    arena = int(defined.group(1))
    assert arena == estimate(arch).arena_bytes
    mlps = {c_identifier(n.name): n.kernel for n in compiled.graph.nodes if n.op == Op.FUSED_MLP}
    calls = re.findall(r"mcuf_mlp_rowwise_s8\(&(\w+), arena \+ (\d+), arena \+ (\d+)\)", files["model/model.c"])
    assert len(calls) == len(mlps) == arch.depth
    for symbol, x_at, scratch_at in calls:
        p = mlps[symbol]
        x = range(int(x_at), int(x_at) + p.tokens * p.dim)
        scratch_bytes = mlp_rowwise_s8_scratch_size(p.dim, p.hidden, p.fc1.rank, p.fc2.rank, p.tile)
        scratch_range = range(int(scratch_at), int(scratch_at) + scratch_bytes)
        assert scratch_bytes > 0 and x.stop <= arena and scratch_range.stop <= arena, symbol
        assert x.stop <= scratch_range.start or scratch_range.stop <= x.start, f"{symbol}: x and scratch overlap"


def test_emission_is_byte_identical_for_the_same_inputs() -> None:
    arch = random_arch(random.Random(7))
    texts = []
    for _ in range(2):
        compiled = compile_model(make_model(arch, 7), images(arch, 16, 7))
        q = compiled.quantize_input(to_hwc(images(arch, 2, 8)))
        texts.append(render_model_files(compiled.graph, compiled.lowered, q, [0, 1]))
    assert texts[0] == texts[1]
    assert "float" not in texts[0]["model/model.c"]


def test_chosen_token_tiles_reach_the_emitted_params() -> None:
    """The tile choose_schedules picks per block is the tile the C params carry (and the scratch it
    plans): a tile lost between the planner and the emitted C would still be bit-exact, only slower."""
    arch = ArchConfig(16, 3, 4, 32, 2, (2, 2), (2.0, 2.0), (8, 8), (8, 8), 10)
    compiled = compile_model(make_model(arch, 3), images(arch, 16, 3))
    blocks = [n for n in compiled.graph.nodes if n.kernel is not None and hasattr(n.kernel, "tile")]
    # patch embedding, 2 attention and 2 MLP blocks; 16 tokens, no budget: the largest tile
    assert len(blocks) == 5 and {n.tile for n in blocks} == {4}
    for node in blocks:
        assert node.kernel.tile == node.tile
    q = compiled.quantize_input(to_hwc(images(arch, 1, 4)))
    text = render_model_files(compiled.graph, compiled.lowered, q, [0])["model/model.c"]
    assert text.count(".tile = 4,") == 5

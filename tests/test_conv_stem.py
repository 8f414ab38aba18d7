"""The convolutional stem through the whole compiler: the architecture's validation and arch.json
compatibility, frontend == torch (BatchNorm folded), fused == unfused integer graph, the cost model's
arena and constant bytes equal to the emitted ones, and an exported project bit-exact on the host
(ASan/UBSan) and in QEMU, its input read one image row per callback."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

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
from mcuformer.emulate import run_emulate
from mcuformer.errors import UserError
from mcuformer.export import run_export
from mcuformer.model import ViT
from tests.builders import make_random_run

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
BASE = ArchConfig(16, 1, 2, 32, 2, (2, 4), (2.0, 1.0), (0, 8), (8, 0), 10)
STEMS = [
    replace(BASE, stem_channels=(8,), stem_strides=(2,)),  # 16 -> 8, patch 2: 16 tokens
    replace(BASE, in_channels=3, stem_channels=(4, 8), stem_strides=(1, 2)),  # full resolution, then / 2
    replace(BASE, image_size=15, patch_size=4, stem_channels=(6,), stem_strides=(2,)),  # odd side: 15 -> 8
]


def stem_model(arch: ArchConfig, seed: int) -> ViT:
    """Random weights with BatchNorm statistics far from the identity, so the folding matters."""
    torch.manual_seed(seed)
    model = ViT(arch)
    for layer in model.stem:
        c = layer.bn.num_features
        layer.bn.running_mean.copy_(torch.rand(c) - 0.5)
        layer.bn.running_var.copy_(torch.rand(c) * 2 + 0.25)
        layer.bn.weight.data.copy_(torch.rand(c) + 0.5)
        layer.bn.bias.data.copy_(torch.rand(c) * 0.6 - 0.3)
    return model.eval()


def images(arch: ArchConfig, n: int, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, arch.in_channels, arch.image_size, arch.image_size, generator=gen) * 2 - 1).numpy()


def test_arch_validation_and_json_compatibility() -> None:
    a = STEMS[1]
    assert (a.feature_size, a.feature_channels, a.tokens, a.patch_dim) == (8, 8, 16, 32)
    assert STEMS[2].feature_size == 8 and STEMS[2].tokens == 4
    assert ArchConfig.from_json(a.to_json()) == a
    assert "stem_channels" not in BASE.to_json(), "a stemless arch.json is unchanged"
    assert ArchConfig.from_json(BASE.to_json()) == BASE and BASE.stem_channels == ()
    assert "stem[4s1,8s2]" in a.short()
    for bad, message in [
        (dict(stem_channels=(8,), stem_strides=()), "same length"),
        (dict(stem_channels=(8,), stem_strides=(3,)), "stem_strides must be 1 or 2"),
        (dict(stem_channels=(0,), stem_strides=(1,)), "stem_channels must be integers"),
        (dict(stem_channels=(8, 8, 8, 8, 8), stem_strides=(1,) * 5), "at most 4"),
        (dict(stem_channels=(8,), stem_strides=(2,), patch_size=16), "the stem's output size 8"),
    ]:
        with pytest.raises(ValueError, match=message):
            replace(BASE, **bad)
    with pytest.raises(UserError, match="stem_strides"):
        ArchConfig.from_json({**a.to_json(), "stem_strides": [1, 4]})


@pytest.mark.parametrize("index", range(len(STEMS)))
def test_stem_compiles_exactly(index: int) -> None:
    arch = STEMS[index]
    model = stem_model(arch, index)
    x = images(arch, 3, index)
    with torch.no_grad():
        want = model.double()(torch.from_numpy(x).double()).numpy()
    got = run_float(from_torch(model), to_hwc(x))["logits"].reshape(want.shape)
    assert np.abs(got - want).max() < 1e-9, "frontend (BatchNorm folded) == torch"
    model = model.float()
    compiled = compile_model(model, images(arch, 32, 50 + index), 64 * 1024)
    assert [n.op for n in compiled.graph.nodes[: len(arch.stem_channels) + 1]] == [Op.FUSED_CONV2D] * len(
        arch.stem_channels
    ) + [Op.FUSED_PATCH_EMBED]
    q = compiled.quantize_input(to_hwc(images(arch, 4, 60 + index)))
    fused = run_batch(compiled.graph, q)
    assert (fused == run_unfused(compiled.graph, q)).all(), "row-wise fused == unfused integer graph"
    assert (fused == compiled.evaluate_int8(q)).all()
    # the cost model (shapes only) is what the C holds
    cost = estimate(arch, 64 * 1024)
    assert compiled.lowered.constant_bytes == compiled.cost.weight_bytes == cost.weight_bytes
    files = render_model_files(compiled.graph, compiled.lowered, q[:1], [0])
    arena = int(re.search(r"#define MCUF_MODEL_ARENA_BYTES (\d+)", files["model/model.h"]).group(1))
    assert arena == cost.arena_bytes == compiled.cost.arena_bytes
    assert "#define MCUF_MODEL_PATCH 1 " in files["model/model.h"], "the stem reads one image row per call"
    model_c = files["model/model.c"]
    assert model_c.count("mcuf_conv2d_3x3_s8(&stem_") == len(arch.stem_channels)
    assert "mcuf_conv2d_3x3_s8(&stem_0, read, ctx," in model_c
    assert re.search(r"mcuf_patch_embed_s8\(&patch_embed, mcuf_memory_reader, arena \+ \d+,", model_c)


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed (run make setup)")
def test_stem_export_is_bit_exact_in_qemu_and_on_the_host(tmp_path: Path) -> None:
    arch = replace(STEMS[1], in_channels=1)  # the grey test data of make_random_run
    run = make_random_run(tmp_path, arch)
    model = stem_model(arch, 1)
    torch.save(model.state_dict(), run / "model.pt")
    report = run_export(run, "NUCLEO-F412ZG", tmp_path / "proj", force=False, log=lambda _: None)
    assert report["measured"]["bit_exact"], report["measured"]
    kernels = [op["kernel"] for op in report["ops"]]
    assert kernels[:3] == ["mcuf_conv2d_3x3_s8", "mcuf_conv2d_3x3_s8", "mcuf_patch_embed_s8"]
    assert report["measured"]["peak_sram_bytes"] <= report["peak_sram_bytes"]
    assert report["measured"]["flash_bytes"] <= report["flash_bytes"], "the stem's code is in the flash figure"
    result = run_emulate(tmp_path / "proj", host=True, sanitize=True, log=None)
    assert result["bit_exact"], result
    saved = json.loads((tmp_path / "proj" / "report.json").read_text())
    assert saved["arch"]["stem_channels"] == [4, 8]


def test_space_stem_choice_and_supernet(tmp_path: Path) -> None:
    """A space's stem widths: validated from a file, sampled (none or a width, the token grid unchanged),
    mutated and crossed over; a subnet with a stem extracts to a ViT that computes the supernet's function,
    and training moves the shared BatchNorm statistics."""
    import random

    from mcuformer.arch import SearchSpace, space_patch
    from mcuformer.nas.search import crossover, mutate
    from mcuformer.nas.supernet import Supernet, sample_arch
    from mcuformer.spaces import describe_space, load_space

    choices = {"image_sizes": [16], "patch_sizes": [2, 4], "embed_dims": [16, 32], "depths": [1, 2],
               "num_heads": [2, 4], "mlp_ratios": [1, 2], "stem_channels": [8, 4]}  # fmt: skip
    path = tmp_path / "space.json"
    path.write_text(json.dumps(choices))
    space = load_space(str(path), 1, 10)
    assert space.stem_channels == (4, 8) and "stem 0/4/8" in describe_space(space)
    assert space.to_json()["stem_channels"] == (4, 8) and "stem_channels" not in SearchSpace().to_json()
    for bad, message in [([0], "stem widths in 1..256"), ([4.5], "stem widths"), ("8", "must be a list")]:
        path.write_text(json.dumps({**choices, "stem_channels": bad}))
        with pytest.raises(UserError, match=message):
            load_space(str(path), 1, 10)
    path.write_text(json.dumps({**choices, "patch_sizes": [1]}))
    with pytest.raises(UserError, match="needs an even patch size"):
        load_space(str(path), 1, 10)
    assert space.largest().stem_channels == (8,) and space.smallest().stem_channels == ()

    rng = random.Random(0)
    archs = [sample_arch(space, rng) for _ in range(40)]
    archs += [mutate(space, archs[i], 0.5, rng) for i in range(20)] + [
        crossover(space, archs[i], archs[i + 1], rng) for i in range(20)
    ]
    assert {a.stem_channels for a in archs} == {(), (4,), (8,)}
    for a in archs:
        assert a.stem_strides in ((), (2,)) and space_patch(a) in space.patch_sizes
        assert a.tokens == (16 // space_patch(a)) ** 2, "a stem keeps the token grid"
    torch.manual_seed(0)
    supernet = Supernet(space)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    before = supernet.stem_bn.running_var.clone()
    supernet.train()
    for a in archs[:8]:
        supernet(x, a).sum().backward()
    assert (supernet.stem_bn.running_var != before).any() and supernet.stem_conv.grad is not None
    supernet.eval()
    stem_arch = next(a for a in archs if a.stem_channels == (4,))
    with torch.no_grad():
        assert torch.equal(supernet.extract(stem_arch).eval()(x), supernet(x, stem_arch))


def test_two_layer_stem_in_a_search_space(tmp_path):
    """``stem_layers = 2``: every stem is a stride-1 layer of half the width, then the stride-2 layer;
    validated from a file, sampled, mutated, crossed over; both layers train and a subnet extracts to a
    ViT computing the supernet's function."""
    import random

    from mcuformer.arch import SearchSpace
    from mcuformer.nas.search import crossover, mutate
    from mcuformer.nas.supernet import Supernet, sample_arch
    from mcuformer.spaces import describe_space, load_space

    choices = {"image_sizes": [16], "patch_sizes": [2, 4], "embed_dims": [16, 32], "depths": [1, 2],
               "num_heads": [2, 4], "mlp_ratios": [1, 2], "stem_channels": [8, 4], "stem_layers": 2}  # fmt: skip
    path = tmp_path / "space.json"
    path.write_text(json.dumps(choices))
    space = load_space(str(path), 1, 10)
    assert space.stem_layers == 2 and "stem 0/4/8 (2 layers)" in describe_space(space)
    assert space.to_json()["stem_layers"] == 2 and "stem_layers" not in SearchSpace().to_json()
    for bad, message in [({"stem_layers": 3}, "must be 1 or 2"), ({"stem_channels": [6, 3]}, "must be even")]:
        path.write_text(json.dumps({**choices, **bad}))
        with pytest.raises(UserError, match=message):
            load_space(str(path), 1, 10)
    assert space.largest().stem_channels == (4, 8) and space.largest().stem_strides == (1, 2)
    rng = random.Random(0)
    archs = [sample_arch(space, rng) for _ in range(40)]
    archs += [mutate(space, archs[i], 0.5, rng) for i in range(20)] + [
        crossover(space, archs[i], archs[i + 1], rng) for i in range(20)
    ]
    assert {(a.stem_channels, a.stem_strides) for a in archs} == {((), ()), ((2, 4), (1, 2)), ((4, 8), (1, 2))}
    torch.manual_seed(0)
    supernet = Supernet(space)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    supernet.train()
    for a in archs[:8]:
        supernet(x, a).sum().backward()
    assert supernet.stem_conv0.grad is not None and supernet.stem_conv.grad is not None
    supernet.eval()
    for width in (4, 8):
        stem_arch = next(a for a in archs if a.stem_channels[-1:] == (width,))
        with torch.no_grad():
            assert torch.equal(supernet.extract(stem_arch).eval()(x), supernet(x, stem_arch))
    big = Supernet(load_space("mnist", 1, 10))  # 28 -> 14 after the stem: the plain patch 4 does not tile 14
    big.check(next(a for a in (sample_arch(big.space, rng) for _ in range(200)) if a.stem_channels == (8, 16)))
    one_layer = next(a for a in archs if a.stem_channels == (4, 8))
    with pytest.raises(ValueError, match="not one of the space's"):
        supernet.check(type(one_layer)(**{**one_layer.__dict__, "stem_channels": (8,), "stem_strides": (2,)}))

"""int4 weights as a search choice: space files, sampling, the model's int4 grid, per-block sensitivity."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from mcuformer.arch import ArchConfig, SearchSpace
from mcuformer.cli import main
from mcuformer.codegen.qparams import INT4_QMAX, quantize_weights
from mcuformer.data import load_dataset
from mcuformer.errors import UserError
from mcuformer.model import Int4Linear, ViT
from mcuformer.nas.search import mutate
from mcuformer.nas.sensitivity import measure, with_int4
from mcuformer.nas.supernet import Supernet, layer_choices, make_arch, sample_arch
from mcuformer.spaces import space_from_dict

SPACE = {"image_sizes": [8], "patch_sizes": [4], "embed_dims": [16, 32], "depths": [1, 2], "num_heads": [2],
         "mlp_ratios": [1, 2]}  # fmt: skip


def test_space_file_weight_bits() -> None:
    space = space_from_dict(SPACE | {"weight_bits": [8, 4]}, "t.toml", 1, 10)
    assert space.int4_layers == (0, 1)
    assert space.smallest().weight_bits == (4,)  # the least flash: int4 where allowed
    assert space.largest().weight_bits == ()  # the most: int8
    assert space_from_dict(SPACE, "t.toml", 1, 10).int4_layers == ()
    for bad in ([4], [8, 2], "8", []):
        with pytest.raises(UserError, match="weight_bits"):
            space_from_dict(SPACE | {"weight_bits": bad}, "t.toml", 1, 10)


def test_int8_only_spaces_sample_as_before_int4() -> None:
    """The digest of 30 samples and 30 mutants of the default space, taken before int4 existed."""
    space, rng = SearchSpace(), random.Random(0)
    archs = [sample_arch(space, rng) for _ in range(30)]
    archs += [mutate(space, a, 0.5, rng) for a in archs]
    assert all(not a.int4_blocks for a in archs)
    assert hashlib.sha256("|".join(a.short() for a in archs).encode()).hexdigest()[:16] == "a677fa3d12f20d7a"


def test_sampling_mutation_keep_bits_inside_int4_layers() -> None:
    space = replace(space_from_dict(SPACE | {"weight_bits": [8, 4]}, "t.toml", 1, 10), int4_layers=(1,))
    rng = random.Random(3)
    archs = [sample_arch(space, rng) for _ in range(200)]
    archs += [mutate(space, a, 0.5, rng) for a in archs]
    assert all(0 not in a.int4_blocks for a in archs)  # block 0 is int8-only here
    assert any(a.int4_blocks == (1,) for a in archs) and any(a.depth == 2 and not a.int4_blocks for a in archs)
    for a in archs:  # choices round-trip through make_arch
        assert make_arch(space, a.image_size, a.patch_size, a.embed_dim, layer_choices(space, a)) == a


def test_arch_weight_bits_contract() -> None:
    base = dict(image_size=8, in_channels=1, patch_size=4, embed_dim=16, depth=2, num_heads=(2, 2),
                mlp_ratio=(1.0, 1.0), attn_rank=(0, 0), mlp_rank=(0, 0), num_classes=10)  # fmt: skip
    a = ArchConfig(**base, weight_bits=(8, 4))
    assert a.bits_of(0) == 8 and a.bits_of(1) == 4 and a.short().endswith(" w4:[1]")
    assert ArchConfig.from_json(a.to_json()) == a
    assert ArchConfig(**base, weight_bits=(8, 8)) == ArchConfig(**base)  # one spelling of all-int8
    assert "weight_bits" not in ArchConfig(**base).to_json()  # arch.json as before int4
    for bad in ((4,), (8, 5)):
        with pytest.raises(ValueError, match="weight_bits"):
            ArchConfig(**base, weight_bits=bad)


def test_int4_linear_uses_the_compilers_grid() -> None:
    torch.manual_seed(0)
    layer = Int4Linear(24, 5)
    with torch.no_grad():
        layer.weight[0] = 0.0  # an all-zero row: scale 1
    w_q, scale = quantize_weights(layer.weight.detach().double().numpy(), INT4_QMAX)
    x = torch.randn(3, 24)
    want = x.double() @ torch.from_numpy(w_q * scale[:, None]).T + layer.bias.detach().double()
    np.testing.assert_allclose(layer(x).detach().double().numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    layer(x).sum().backward()  # straight-through: the float weight gets a gradient
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_vit_int4_blocks_only_where_asked() -> None:
    arch = replace(sample_arch(SearchSpace(depths=(2,)), random.Random(0)), weight_bits=(4, 8))
    vit = ViT(arch)
    assert isinstance(vit.blocks[0].attn.proj, Int4Linear) and not isinstance(vit.blocks[1].attn.proj, Int4Linear)
    assert not isinstance(vit.head, Int4Linear) and not isinstance(vit.patch_embed, Int4Linear)
    assert set(vit.state_dict()) == set(ViT(replace(arch, weight_bits=())).state_dict())  # same keys


def test_sensitivity_measures_each_block_and_filters_by_tolerance() -> None:
    torch.manual_seed(0)
    data = load_dataset("digits")
    space = space_from_dict(SPACE | {"weight_bits": [8, 4]}, "t.toml", data.in_channels, data.num_classes)
    supernet = Supernet(space)
    every = measure(supernet, space, data, tolerance_points=100.0)
    assert set(every.drop_points) == {0, 1} and every.allowed == (0, 1)
    strict = measure(supernet, space, data, tolerance_points=0.0)
    assert strict.drop_points == every.drop_points  # deterministic in eval mode
    assert strict.allowed == tuple(b for b in (0, 1) if every.drop_points[b] <= 0.0)
    assert every.reference == with_int4(space.largest(), ())
    assert every.to_json()["int4_blocks_allowed"] == [0, 1]


def test_cli_rejects_a_bad_int4_tolerance(tmp_path, capsys) -> None:
    code = main(["search", "--board", "STM32F746G-DISCO", "--out", str(tmp_path / "r"), "--int4-tolerance", "-1"])
    err = capsys.readouterr().err
    assert code != 0 and "--int4-tolerance" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()

"""Search spaces as data: presets, JSON/TOML files with one-line errors, the budget-sized default, fill."""

from __future__ import annotations

import json
import random

import pytest
import torch

from mcuformer.arch import ArchConfig
from mcuformer.errors import UserError
from mcuformer.nas.supernet import sample_arch
from mcuformer.spaces import PRESETS, RANK_GRID, budget_space, fill, fill_analysis, load_space

GOOD = {"image_sizes": [28, 24], "patch_sizes": [4, 2], "embed_dims": [64, 48], "depths": [4, 2],
        "num_heads": [2, 4], "mlp_ratios": [2, 1], "rank_ratios": [0.5, 0, 0.25], "per_layer": False}  # fmt: skip


def test_toml_and_json_give_the_same_validated_space(tmp_path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(GOOD))
    toml = "\n".join(f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in GOOD.items())
    (tmp_path / "s.toml").write_text(toml)
    a = load_space(str(tmp_path / "s.json"), 3, 7)
    b = load_space(str(tmp_path / "s.toml"), 3, 7)
    assert a == b
    assert a.image_sizes == (24, 28) and a.depths == (2, 4) and a.rank_ratios == (0.25, 0.5, 0.0)
    assert (a.in_channels, a.num_classes, a.per_layer) == (3, 7, False)
    rng = random.Random(0)
    for _ in range(20):  # shared choices: every layer takes the same heads / MLP ratio / ranks
        arch = sample_arch(a, rng)
        for field in ("num_heads", "mlp_ratio", "attn_rank", "mlp_rank"):
            assert len(set(getattr(arch, field))) == 1, arch.short()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"depth": [2]}, "unknown key(s) ['depth']"),
        ({"num_classes": 3}, "set by the data set"),
        ({"embed_dims": []}, "'embed_dims' must be a non-empty list"),
        ({"embed_dims": [64.5]}, "'embed_dims' must hold integers"),
        ({"depths": [0, 2]}, "'depths' must be between 1 and 64"),
        ({"rank_ratios": [1.5]}, "'rank_ratios' must be in [0, 1)"),
        ({"mlp_ratios": [0]}, "'mlp_ratios' must be in (0, 16]"),
        ({"image_sizes": [30], "patch_sizes": [4]}, "no image size in [30] is divisible by a patch size"),
        ({"embed_dims": [50], "num_heads": [4]}, "embed dim 50 is not divisible by any of num_heads [4]"),
        ({"per_layer": "yes"}, "'per_layer' must be true or false"),
    ],
)
def test_bad_space_files_fail_with_one_line(tmp_path, change: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(GOOD | change))
    with pytest.raises(UserError) as err:
        load_space(str(path), 1, 10)
    assert message in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)


def test_unreadable_or_missing_space_files(tmp_path) -> None:
    (tmp_path / "x.toml").write_text("image_sizes = [")
    (tmp_path / "x.yaml").write_text("a: 1")
    for spec, message in ((tmp_path / "x.toml", "cannot parse"), (tmp_path / "x.yaml", "must end in .json or .toml"),
                          (tmp_path / "none.json", "not found: give a preset (digits")):  # fmt: skip
        with pytest.raises(UserError) as err:
            load_space(str(spec), 1, 10)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_example_space_file_loads() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "mnist_space.toml"
    space = load_space(str(example), 1, 10)
    assert space.image_sizes == (20, 24, 28) and space.patch_sizes == (4, 7) and space.rank_ratios[-1] == 0.0


def test_presets_reach_mcuformer_scale() -> None:
    spaces = {name: load_space(name, 3, 10) for name in PRESETS}
    big = spaces["mcuformer"]
    assert max(big.image_sizes) == 240 and max(big.embed_dims) >= 256 and max(big.depths) == 14
    assert set(big.num_heads) == {3, 4, 6, 8} and big.mlp_ratios == (1.0, 2.0, 3.0, 4.0)
    assert big.rank_ratios == RANK_GRID
    for space in spaces.values():  # every preset's extremes are valid architectures
        assert isinstance(space.largest(), ArchConfig) and isinstance(space.smallest(), ArchConfig)


@pytest.mark.parametrize(("image", "channels", "sram", "flash"), [(8, 1, 6 * 1024, 96 * 1024),
                         (28, 1, 64 * 1024, 256 * 1024), (96, 3, 256 * 1024, 1024 * 1024)])  # fmt: skip
def test_budget_sized_space_binds(image: int, channels: int, sram: int, flash: int) -> None:
    from mcuformer.codegen.cost import CostCache

    cost = CostCache(sram)
    sized = budget_space(image, channels, 10, sram, flash, cost, sample_arch)
    large, small = cost(sized.space.largest()), cost(sized.space.smallest())
    assert large[0] > sram or large[1] > flash  # the budget binds ...
    assert small[0] <= sram and small[1] <= flash  # ... and something fits
    rng = random.Random(99)
    over = [not (s <= sram and f <= flash) for s, f in (cost(sample_arch(sized.space, rng)) for _ in range(200))]
    assert 0.15 <= sum(over) / len(over) < 1.0  # where the search samples, too (>= 25% of 48 seeded samples)
    assert sized.binding == ("sram" if large[0] / sram >= large[1] / flash else "flash")
    assert max(sized.space.image_sizes) <= max(image, 16) and f"{sized.binding} binds" in sized.note


def test_budget_too_small_for_any_vit() -> None:
    from mcuformer.codegen.cost import CostCache

    with pytest.raises(UserError, match="no ViT of a 28x28 input fits"):
        budget_space(28, 1, 10, 1024, 16 * 1024, CostCache(1024), sample_arch)


def test_fill_analysis_reports_the_fuller_runner_up() -> None:
    space = load_space("digits", 1, 10)
    a, b, c = space.smallest(), space.largest(), sample_arch(space, random.Random(3))
    assert fill((512, 900), 1024, 1000) == {"sram_fill": 0.5, "flash_fill": 0.9, "binding": "flash", "fill": 0.9}
    full = fill_analysis((a, 0.95, 900, 100), [(a, 0.95, 900, 100)], 1000, 1000)
    assert "fuller_candidate" not in full and full["binding"] == "sram"
    low = fill_analysis((a, 0.95, 500, 100), [(a, 0.95, 500, 100), (b, 0.90, 950, 10), (c, 0.93, 10, 870)], 1000, 1000)
    assert low["fuller_candidate"]["summary"] == c.short() and low["fuller_candidate"]["binding"] == "flash"
    assert "lost on accuracy" in low["note"] and "0.9300 vs 0.9500" in low["note"]
    none = fill_analysis((a, 0.95, 500, 100), [(a, 0.95, 500, 100), (b, 0.90, 700, 10)], 1000, 1000)
    assert none["fuller_candidate"] is None
    assert "the space (or the search's sampling of it) is the limit" in none["note"]


def test_spaces_cli_lists_presets(capsys) -> None:
    from mcuformer.cli import main

    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS) and "res 160/176/192/208/224/240" in out
    assert main(["spaces", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mcuformer"]["depths"][-1] == 14
    assert main(["search", "--board", "NUCLEO-F412ZG", "--out", "/nonexistent/r", "--space", "nope"]) == 2
    assert "error: search space 'nope' not found" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["search", "--board", "NUCLEO-F412ZG", "--out", "/nonexistent/r", "--device", "cuda"]) == 2
        assert "error: --device cuda: no CUDA device is available" in capsys.readouterr().err

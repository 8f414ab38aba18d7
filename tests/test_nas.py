"""Fast tests of data loading, the weight-sharing supernet, sandwich training and the evolution search."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from mcuformer.arch import ArchConfig, SearchSpace
from mcuformer.data import Dataset, load_dataset
from mcuformer.errors import UserError
from mcuformer.model import LowRankLinear, resize_images
from nas.search import SearchConfig, crossover, evolution_search, mutate, pareto_front, plot_pareto
from nas.supernet import Supernet, resolution_choices
from nas.train import TrainConfig, finetune, train_supernet

TINY = SearchSpace(
    image_sizes=(8, 12),
    patch_sizes=(2, 4),
    embed_dims=(16, 24),
    depths=(1, 2),
    num_heads=(2, 4),
    mlp_ratios=(1.0, 2.0),
    rank_ratios=(0.25, 0.5, 0.0),
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small_digits(digits: Dataset) -> Dataset:
    """A few hundred images: enough to see learning, small enough for a fast test."""
    return replace(
        digits,
        train_x=digits.train_x[:320],
        train_y=digits.train_y[:320],
        val_x=digits.val_x[:120],
        val_y=digits.val_y[:120],
    )


def supernet(space: SearchSpace = TINY, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(space)


def arch(space: SearchSpace = TINY, **kw: object) -> ArchConfig:
    """The largest arch of ``space`` with some fields replaced (per-layer tuples follow depth)."""
    base = space.largest().to_json() | kw
    d = base["depth"]
    for name in ("num_heads", "mlp_ratio", "attn_rank", "mlp_rank"):
        base[name] = tuple(base[name])[:d] + (tuple(base[name])[-1],) * (d - len(tuple(base[name])))
    return ArchConfig(**base)


def toy_cost(a: ArchConfig) -> tuple[int, int]:
    """Deterministic stand-in for the planner: (activation bytes, int8 weight bytes)."""
    e, params = a.embed_dim, a.patch_dim * a.embed_dim + a.tokens * a.embed_dim + a.embed_dim * a.num_classes
    for i in range(a.depth):
        m, ra, rm = a.mlp_hidden(i), a.attn_rank[i], a.mlp_rank[i]
        params += (ra * e + 3 * e * ra) if ra else 3 * e * e
        params += e * e + ((rm * e + m * rm) + (rm * m + e * rm) if rm else 2 * e * m)
    sram = a.tokens * e * 2 + a.tokens * a.tokens + max(a.mlp_hidden(i) for i in range(a.depth)) + a.image_size**2
    return sram, params


# -- data ------------------------------------------------------------------------------------------


def test_digits_shapes_and_normalisation(digits: Dataset) -> None:
    assert digits.train_x.shape[1:] == (1, 8, 8) and digits.val_x.shape[1:] == (1, 8, 8)
    assert len(digits.train_y) + len(digits.val_y) == 1797
    assert digits.train_x.min() == -1.0 and digits.train_x.max() == 1.0
    assert (digits.in_channels, digits.num_classes, digits.image_size) == (1, 10, 8)
    val_counts = torch.bincount(digits.val_y, minlength=10)
    assert 0.18 * 1797 / 10 < val_counts.min() and val_counts.max() < 0.22 * 1797 / 10  # stratified
    again, other = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(again.val_x, digits.val_x) and not torch.equal(other.val_x, digits.val_x)


def test_npz_loading(tmp_path) -> None:
    rng = np.random.default_rng(0)
    gray, rgb = tmp_path / "gray.npz", tmp_path / "rgb.npz"
    np.savez(gray, x=rng.integers(0, 256, (40, 6, 6), dtype=np.uint8), y=np.arange(40) % 4)
    np.savez(rgb, x=rng.random((30, 5, 5, 3)).astype(np.float32), y=np.arange(30) % 3)
    d = load_dataset(str(gray), val_fraction=0.2)
    assert (d.in_channels, d.image_size, d.num_classes) == (1, 6, 4)
    assert len(d.val_y) == 8 and len(d.train_y) == 32 and -1.0 <= d.train_x.min() and d.train_x.max() <= 1.0
    d = load_dataset(str(rgb))
    assert d.train_x.shape[1:] == (3, 5, 5) and d.train_x.dtype == torch.float32 and d.train_x.min() >= -1.0


def test_image_folder_loading(tmp_path) -> None:
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(np.full((4, 4), 50 * i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    d = load_dataset(str(tmp_path))
    assert d.class_names == ["cat", "dog"] and d.num_classes == 2 and d.train_x.shape[1:] == (1, 4, 4)
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(UserError, match="differs"):
        load_dataset(str(tmp_path))


def test_bad_datasets_raise_user_error(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((4, 8, 8), np.uint8))
    np.savez(tmp_path / "wide.npz", x=np.zeros((4, 8, 9), np.uint8), y=np.zeros(4, int))
    (tmp_path / "empty").mkdir()
    cases = ["does/not/exist.npz", "notes.txt", "broken.npz", "nolabels.npz", "wide.npz", "empty"]
    for spec in cases:
        with pytest.raises(UserError) as err:
            load_dataset(spec if spec.startswith("does") else str(tmp_path / spec))
        assert "\n" not in str(err.value)


# -- supernet ---------------------------------------------------------------------------------------


def test_extract_equals_supernet_forward() -> None:
    net = supernet()
    rng = random.Random(0)
    archs = [
        TINY.largest(),
        TINY.smallest(),
        arch(image_size=12, patch_size=2, embed_dim=16, depth=2, attn_rank=(0, 4), mlp_rank=(8, 0)),  # mixed
        arch(image_size=8, patch_size=4, embed_dim=24, depth=1, attn_rank=(6,), mlp_rank=(12,)),  # low-rank
        arch(image_size=12, patch_size=4, embed_dim=24, depth=2, num_heads=(2, 4)),  # dense, 3x3 grid
    ] + [net.sample(rng) for _ in range(8)]
    assert any(a.attn_rank[0] for a in archs) and any(not a.mlp_rank[0] for a in archs)
    assert {a.patch_size for a in archs} == {2, 4} and {a.image_size for a in archs} == {8, 12}
    x = torch.rand(6, 1, 8, 8) * 2 - 1  # (B, C, H, W) at the data's resolution
    for a in archs:
        vit = net.extract(a)
        expected = vit(resize_images(x, a.image_size))
        torch.testing.assert_close(net(x, a), expected, atol=1e-5, rtol=0)
        assert isinstance(vit.blocks[0].fc1, LowRankLinear) == (a.mlp_rank[0] > 0)
        assert (vit.blocks[0].attn.qkv_down is not None) == (a.attn_rank[0] > 0)


def test_weights_are_shared() -> None:
    net = supernet()
    small = arch(embed_dim=16, depth=1, attn_rank=(4,), mlp_rank=(8,), mlp_ratio=(1.0,))
    big = TINY.largest()
    ps, pb = net.extract(small).blocks[0], net.extract(big).blocks[0]
    assert torch.equal(ps.attn.proj.weight, pb.attn.proj.weight[:16, :16])
    assert torch.equal(ps.fc1.down.weight, net.blocks[0].fc1.down[:8, :16].detach())
    dense_fc1 = net.blocks[0].fc1.up[:48, :24] @ net.blocks[0].fc1.down[:24, :24]  # rank 0 = product at r = E
    torch.testing.assert_close(pb.fc1.weight, dense_fc1.detach())

    x = torch.rand(4, 1, 8, 8) * 2 - 1
    before_small, before_big = net(x, small).detach(), net(x, big).detach()
    with torch.no_grad():
        net.blocks[0].proj.weight[:16, :16] += torch.randn(16, 16)  # the slice both subnets use
    ps, pb = net.extract(small).blocks[0], net.extract(big).blocks[0]
    assert torch.equal(ps.attn.proj.weight, pb.attn.proj.weight[:16, :16])
    assert not torch.allclose(net(x, small), before_small) and not torch.allclose(net(x, big), before_big)
    torch.testing.assert_close(net(x, small), net.extract(small)(resize_images(x, small.image_size)), atol=1e-5, rtol=0)


def test_patch_kernel_resize_preserves_constant_patches() -> None:
    net = supernet()
    w4, w2 = net.patch_weight(4, 24), net.patch_weight(2, 24)  # (E, 16), (E, 4)
    torch.testing.assert_close(w4.sum(dim=1), w2.sum(dim=1))  # a constant patch embeds the same
    assert net.pos_weight(3, 24).shape == (9, 24) and net.pos_weight(6, 24).shape == (36, 24)


def test_sample_is_valid_and_covers_the_space() -> None:
    net = supernet()
    rng = random.Random(1)
    archs = [net.sample(rng) for _ in range(300)]
    assert {(a.image_size, a.patch_size) for a in archs} == set(resolution_choices(TINY))
    assert {a.embed_dim for a in archs} == {16, 24} and {a.depth for a in archs} == {1, 2}
    assert {r for a in archs for r in a.attn_rank} == {0, 4, 8, 6, 12}  # 0.25/0.5 of 16 and 24, and dense
    for a in archs[:50]:
        net.check(a)
        for child in (mutate(TINY, a, 0.5, rng), crossover(TINY, a, archs[-1], rng)):
            net.check(child)


# -- training ---------------------------------------------------------------------------------------


def test_sandwich_training_learns_and_is_deterministic(small_digits: Dataset) -> None:
    space = replace(TINY, image_sizes=(8,))
    cfg = TrainConfig(epochs=2, batch_size=32, lr=3e-3, warmup_epochs=0.5, seed=3)
    logs: list[str] = []
    net = supernet(space)
    result = train_supernet(net, small_digits, cfg, log=logs.append)
    losses = result["step_losses"]
    assert len(logs) == 2 and len(losses) == 20 and result["history"][1]["loss"] < result["history"][0]["loss"]
    assert sum(losses[-5:]) < sum(losses[:5])

    again = supernet(space)
    train_supernet(again, small_digits, cfg, log=lambda s: None)
    for (name, p), q in zip(net.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name

    vit = net.extract(space.smallest())
    tuned = finetune(vit, small_digits, replace(cfg, epochs=1), log=lambda s: None)
    assert 0.0 <= tuned["val_acc"] <= 1.0 and len(tuned["history"]) == 1


# -- search -----------------------------------------------------------------------------------------


def run_search(data: Dataset, sram_budget: int, flash_budget: int, seed: int = 0):
    calls: list[ArchConfig] = []

    def cost(a: ArchConfig) -> tuple[int, int]:
        calls.append(a)
        return toy_cost(a)

    cfg = SearchConfig(population=8, generations=3, parents=4, mutations=4, crossovers=4, seed=seed)
    result = evolution_search(TINY, supernet(), data, cost, sram_budget, flash_budget, cfg, log=lambda s: None)
    return result, calls


def test_search_respects_budgets_and_counts_rejections(small_digits: Dataset) -> None:
    sram_budget, flash_budget = 900, 6000
    largest_sram, largest_flash = toy_cost(TINY.largest())
    assert largest_sram > sram_budget and largest_flash > flash_budget  # the largest does not fit
    result, calls = run_search(small_digits, sram_budget, flash_budget)

    assert len(calls) == len(set(calls)) == result.evaluated  # every candidate's cost computed once
    assert result.rejected_sram == sum(toy_cost(a)[0] > sram_budget for a in calls) > 0
    assert result.rejected_flash == sum(toy_cost(a)[1] > flash_budget for a in calls) > 0
    n_fit = sum(toy_cost(a)[0] <= sram_budget and toy_cost(a)[1] <= flash_budget for a in calls)
    assert len(result.feasible) == n_fit and n_fit > 8
    for a, acc, sram, flash in result.feasible:
        assert (sram, flash) == toy_cost(a) and sram <= sram_budget and flash <= flash_budget and 0 <= acc <= 1
    assert toy_cost(result.best_arch)[0] <= sram_budget and toy_cost(result.best_arch)[1] <= flash_budget
    assert result.best_acc == max(acc for _, acc, _, _ in result.feasible)
    assert len(result.history) == 4 and result.to_json()["evaluated"] == result.evaluated


def test_search_is_deterministic(small_digits: Dataset) -> None:
    (a, _), (b, _) = run_search(small_digits, 900, 6000, seed=5), run_search(small_digits, 900, 6000, seed=5)
    assert a.best_arch == b.best_arch and a.feasible == b.feasible
    assert (a.evaluated, a.rejected_sram, a.rejected_flash) == (b.evaluated, b.rejected_sram, b.rejected_flash)


def test_search_budget_too_small(small_digits: Dataset) -> None:
    sram, flash = toy_cost(TINY.smallest())
    with pytest.raises(UserError, match=f"{sram} B SRAM and {flash} B flash"):
        run_search(small_digits, sram - 1, 10**9)


def test_pareto_front_and_plot(small_digits: Dataset, tmp_path) -> None:
    a = TINY.smallest()
    points = [(a, 0.5, 100, 1), (a, 0.4, 150, 1), (a, 0.7, 200, 1), (a, 0.7, 300, 1), (a, 0.9, 400, 1)]
    assert [(p[1], p[2]) for p in pareto_front(points)] == [(0.5, 100), (0.7, 200), (0.9, 400)]
    result, _ = run_search(small_digits, 900, 6000)
    plot_pareto(result, str(tmp_path / "pareto.png"))
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"

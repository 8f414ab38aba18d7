"""Fast tests of data loading, the weight-sharing supernet, sandwich training and the evolution search."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from mcuformer.arch import ArchConfig, SearchSpace, save_json, stem_width
from mcuformer.data import Dataset, load_dataset
from mcuformer.datasets import to_float
from mcuformer.errors import UserError
from mcuformer.model import LowRankLinear, ViT, resize_images
from mcuformer.nas.instr_model import DEFAULT_MODEL, DEFAULT_PROFILES, FEATURES, InstructionModel, features, fit
from mcuformer.nas.search import SearchConfig, crossover, evolution_search, mutate, pareto_front
from mcuformer.nas.space_evolution import (
    RANK_GRID,
    EvolutionConfig,
    evolve_space,
    fit_trend,
    rank_levels,
)
from mcuformer.nas.supernet import Supernet, init_from_dense, load_vit, resolution_choices, sample_arch, svd_factors
from mcuformer.nas.train import TrainConfig, finetune, train_supernet
from mcuformer.plots import plot_pareto, plot_trajectory

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
    assert len(d.val_y) == 8 and len(d.train_y) == 32 and d.train_x.dtype == torch.uint8  # kept as uint8
    x = to_float(d.train_x)  # per batch, with the float loaders' arithmetic
    assert x.dtype == torch.float32 and -1.0 <= x.min() and x.max() <= 1.0
    raw = np.load(gray)["x"]
    assert torch.equal(to_float(torch.from_numpy(raw)), torch.from_numpy(raw.astype(np.float32) / 255.0 * 2.0 - 1.0))
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
    assert d.train_x.dtype == torch.uint8 and set(d.train_x.unique().tolist()) <= {0, 50, 100, 150, 200}
    Image.fromarray(np.zeros((5, 7), dtype=np.uint8)).save(tmp_path / "dog" / "odd.png")
    mixed = load_dataset(str(tmp_path))  # mixed sizes: centre square crop, resized to the smallest side
    assert mixed.train_x.shape[1:] == (1, 4, 4) and len(mixed.train_y) + len(mixed.val_y) == 11
    big = load_dataset(str(tmp_path), image_size=8)  # resized on load to the space's largest resolution
    assert big.train_x.shape[1:] == (1, 8, 8) and big.image_size == 8
    Image.fromarray(np.zeros((6, 6, 3), dtype=np.uint8)).save(tmp_path / "dog" / "rgb.png")
    assert load_dataset(str(tmp_path), image_size=8).in_channels == 3  # one RGB image: all RGB


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

    arch = space.smallest()
    vit = net.extract(arch)
    tuned = finetune(vit, small_digits, replace(cfg, epochs=1), log=lambda s: None)
    assert len(tuned["history"]) == 1
    # the reported accuracy is the fine-tuned model's top-1 on the validation split, counted here
    with torch.no_grad():
        logits = vit.eval()(resize_images(to_float(small_digits.val_x), arch.image_size))
    correct = int((logits.argmax(dim=-1) == torch.as_tensor(small_digits.val_y)).sum())
    assert tuned["val_acc"] == correct / len(small_digits.val_y)


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
    for a, _, sram, flash in result.feasible:
        assert (sram, flash) == toy_cost(a) and sram <= sram_budget and flash <= flash_budget
    # a candidate's accuracy is its subnet's top-1 on the validation split (the search does not train)
    net, val_x, val_y = supernet(), to_float(small_digits.val_x), torch.as_tensor(small_digits.val_y)
    for a, acc, _, _ in result.feasible[:3]:
        with torch.no_grad():
            correct = int((net(val_x, a).argmax(dim=-1) == val_y).sum())
        assert acc == correct / len(val_y), a
    assert toy_cost(result.best_arch)[0] <= sram_budget and toy_cost(result.best_arch)[1] <= flash_budget
    assert result.best_acc == max(acc for _, acc, _, _ in result.feasible)
    assert len(result.history) == 4


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
    by_flash = [(a, 0.5, 1, 300), (a, 0.8, 1, 200), (a, 0.6, 1, 100), (a, 0.9, 1, 400)]
    assert [(p[1], p[3]) for p in pareto_front(by_flash, 3)] == [(0.6, 100), (0.8, 200), (0.9, 400)]
    result, _ = run_search(small_digits, 900, 6000)
    plot_pareto(result, str(tmp_path / "pareto.png"))
    from PIL import Image

    with Image.open(tmp_path / "pareto.png") as im:
        assert im.size[0] > 2 * im.size[1]  # two panels: accuracy vs peak SRAM and vs flash
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"


# -- SVD initialisation from a dense model ------------------------------------------------------------


def best_rank_r(w: torch.Tensor, r: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    return (u[:, :r] * s[:r]) @ vh[:r]


def test_svd_factors_give_the_best_rank_r_approximation() -> None:
    w = torch.randn(12, 7, generator=torch.Generator().manual_seed(0))
    up, down = svd_factors(w, rank_max=24)
    assert up.shape == (12, 7) and down.shape == (7, 7)
    s = torch.linalg.svdvals(w.double())
    for r in range(1, 8):
        approx = (up[:, :r] @ down[:r]).double()
        torch.testing.assert_close(approx, best_rank_r(w, r), atol=1e-5, rtol=0)
        err = torch.linalg.matrix_norm(w.double() - approx)  # Eckart-Young: the tail singular values
        torch.testing.assert_close(err, s[r:].square().sum().sqrt(), atol=1e-5, rtol=0)
    assert svd_factors(w, rank_max=3)[0].shape == (12, 3)


def test_init_from_dense_reproduces_the_model_and_low_rank_slices_are_optimal(tmp_path) -> None:
    torch.manual_seed(1)
    big = TINY.largest()  # dense, E = 24, patch 2, res 12
    dense = ViT(big)
    with torch.no_grad():
        for p in dense.parameters():
            p.add_(0.1 * torch.randn_like(p))  # non-trivial LN / biases too
    net = supernet()
    assert init_from_dense(net, dense) == []
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(net(x, big), dense(resize_images(x, 12)), atol=2e-4, rtol=0)  # full rank = exact

    r = 5
    low = arch(attn_rank=(r, r), mlp_rank=(r, r))
    vit = net.extract(low)
    for i, block in enumerate(dense.blocks):
        lb = vit.blocks[i]
        fc1 = (lb.fc1.up.weight @ lb.fc1.down.weight).double()
        torch.testing.assert_close(fc1, best_rank_r(block.fc1.weight.detach(), r), atol=1e-5, rtol=0)
        fc2 = (lb.fc2.up.weight @ lb.fc2.down.weight).double()
        torch.testing.assert_close(fc2, best_rank_r(block.fc2.weight.detach(), r), atol=1e-5, rtol=0)
        qkv = torch.cat([lb.attn.q.weight, lb.attn.k.weight, lb.attn.v.weight]) @ lb.attn.qkv_down.weight  # (3E, E)
        stacked = torch.cat([block.attn.q.weight, block.attn.k.weight, block.attn.v.weight]).detach()
        torch.testing.assert_close(qkv.double(), best_rank_r(stacked, r), atol=1e-5, rtol=0)

    ckpt = tmp_path / "dense.pt"
    torch.save({"arch": big.to_json(), "model": dense.state_dict()}, ckpt)
    loaded = load_vit(str(ckpt))
    torch.testing.assert_close(loaded(resize_images(x, 12)), dense(resize_images(x, 12)))
    with pytest.raises(UserError, match="init-from"):
        load_vit(str(tmp_path / "missing"))


# -- checkpoint / resume ------------------------------------------------------------------------------


class Killed(Exception):
    pass


def kill_after(prefix: str):
    def log(line: str) -> None:
        if line.startswith(prefix):
            raise Killed(line)

    return log


def test_training_resumes_bit_identically(small_digits: Dataset, tmp_path) -> None:
    space = replace(TINY, image_sizes=(8,))
    data = replace(small_digits, train_x=small_digits.train_x[:128], train_y=small_digits.train_y[:128])
    cfg = TrainConfig(epochs=3, batch_size=32, seed=2, threads=1, augment_shift=1)
    straight = supernet(space)
    expected = train_supernet(straight, data, cfg, log=lambda s: None)

    ckpt = str(tmp_path / "supernet.ckpt.pt")
    with pytest.raises(Killed):
        train_supernet(supernet(space), data, cfg, log=kill_after("epoch   2/"), checkpoint=ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["supernet.ckpt.pt"]  # atomic: no temp files left
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    resumed = supernet(space, seed=7)  # other init: everything must come from the checkpoint
    logs: list[str] = []
    got = train_supernet(resumed, data, cfg, log=logs.append, checkpoint=ckpt, resume=True)
    assert logs[0].startswith("resumed") and len(logs) == 2  # epoch 3 only
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert got["step_losses"] == expected["step_losses"] and got["subnets_digest"] == expected["subnets_digest"]
    with pytest.raises(UserError, match="other training settings"):
        train_supernet(supernet(space), data, replace(cfg, lr=1e-3), log=lambda s: None, checkpoint=ckpt, resume=True)


def test_search_resumes_to_the_same_result(small_digits: Dataset, tmp_path) -> None:
    net = supernet()
    cfg = SearchConfig(population=6, generations=4, parents=3, mutations=3, crossovers=3, seed=1)
    args = (TINY, net, small_digits, toy_cost, 900, 6000, cfg)
    expected = evolution_search(*args, log=lambda s: None)
    state = str(tmp_path / "search_state.json")
    with pytest.raises(Killed):
        evolution_search(*args, log=kill_after("gen   2/"), state_path=state)
    assert json.loads((tmp_path / "search_state.json").read_text())["generation"] == 2
    logs: list[str] = []
    got = evolution_search(*args, log=logs.append, state_path=state, resume=True)
    assert logs[0].startswith("resumed") and sum(line.startswith("gen") for line in logs) == 2
    assert got.feasible == expected.feasible and got.history == expected.history
    assert (got.best_arch, got.evaluated, got.rejected_sram) == (
        expected.best_arch,
        expected.evaluated,
        expected.rejected_sram,
    )
    with pytest.raises(UserError, match="other settings"):
        evolution_search(
            TINY, net, small_digits, toy_cost, 901, 6000, cfg, lambda s: None, state_path=state, resume=True
        )


# -- instruction budget -------------------------------------------------------------------------------


def toy_instr(a: ArchConfig) -> float:
    return float(a.tokens * toy_cost(a)[1])  # a MAC-count-like proxy


def test_search_respects_an_instruction_budget(small_digits: Dataset) -> None:
    cfg = SearchConfig(population=8, generations=2, parents=4, mutations=4, crossovers=4, seed=0)
    free = evolution_search(TINY, supernet(), small_digits, toy_cost, 900, 6000, cfg, lambda s: None)
    budget = sorted(toy_instr(a) for a, *_ in free.feasible)[len(free.feasible) // 2]  # binds: half are over
    result = evolution_search(
        TINY, supernet(), small_digits, toy_cost, 900, 6000, cfg, lambda s: None, toy_instr, budget
    )
    assert result.rejected_instr > 0 and result.feasible
    for a, *_ in result.feasible:
        assert toy_instr(a) <= budget and result.instructions[a] == toy_instr(a)
    assert result.pareto_json()["budget"]["instructions"] == budget


def test_instruction_model_fit_recovers_a_linear_law(tmp_path) -> None:
    rng = random.Random(0)
    archs = list(dict.fromkeys(sample_arch(TINY, rng) for _ in range(40)))[:20]
    true = {k: 0.0 for k in FEATURES} | {"const": 5e4, "macs": 1.2, "outputs": 9.0, "softmax": 14.0, "norm": 7.0}
    pairs = [(a, sum(true[k] * v for k, v in features(a).items())) for a in archs]
    model = fit(pairs, "NUCLEO-F412ZG", "cortex-m4", True)
    assert model.fit["max_abs_rel_err"] < 1e-6 and model.fit["samples"] == 20
    save_json(str(tmp_path / "m.json"), model.to_json())
    again = InstructionModel.load(tmp_path / "m.json")
    for a, y in pairs[:5]:
        assert again.predict(a) == pytest.approx(y, rel=1e-6)


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="no fitted instruction model in nas/data")
def test_shipped_instruction_model_predicts_its_profiles() -> None:
    model = InstructionModel.load()
    data = json.loads(DEFAULT_PROFILES.read_text())
    errors = [abs(model.predict(ArchConfig.from_json(p["arch"])) / p["instructions"] - 1) for p in data["profiles"]]
    assert len(errors) >= len(FEATURES) and max(errors) < 0.25 and sum(errors) / len(errors) < 0.1
    assert model.dsp is True and model.fit["loo_mean_abs_rel_err"] < 0.15


# -- search-space evolution ---------------------------------------------------------------------------


def test_space_evolution_moves_along_the_fitted_trend(small_digits: Dataset, tmp_path) -> None:
    space = replace(TINY, rank_ratios=(0.125, 0.25, 0.375, 0.5, 0.0))
    net = supernet(space)

    def fits(a: ArchConfig) -> bool:  # binds on both axes: big patches and low ranks fit more often
        sram, flash = toy_cost(a)
        return sram <= 900 and flash <= 4500

    cfg = EvolutionConfig(samples=8, start_rank=4, start_patch=0, seed=0)
    chosen, traj = evolve_space(space, net, small_digits, fits, cfg, log=lambda s: None)
    again, traj2 = evolve_space(space, net, small_digits, fits, cfg, log=lambda s: None)
    assert chosen == again and traj["regions"] == traj2["regions"]  # deterministic

    assert rank_levels(space) == [0.125, 0.25, 0.375, 0.5, 1.0]
    its = traj["iterations"]
    assert its[0]["centre"]["rank_index"] == 4 and its[0]["centre"]["patch_index"] == 0
    assert len(its) >= 2 and its[-1]["stop"] in ("converged", "cycle", "iterations")
    for it, nxt in zip(its, its[1:], strict=False):
        fitted, move = it["fit"], it["move"]
        for axis, slope in ((0, fitted["slope_rank"]), (1, fitted["slope_patch"])):
            assert move[axis] in (0, 1 if slope > 0 else -1)
            assert move[axis] == 0 or abs(slope) >= cfg.min_gain
        assert nxt["centre"]["rank_index"] == it["centre"]["rank_index"] + move[0]
        assert nxt["centre"]["patch_index"] == it["centre"]["patch_index"] + move[1]
    regions = traj["regions"]
    best = max(regions, key=lambda r: r["score"])
    assert traj["chosen"]["score"] == best["score"] and chosen.patch_sizes == (best["patch_size"],)
    assert list(chosen.rank_ratios) == best["rank_ratios"]
    for r in regions:
        assert r["score"] == pytest.approx(r["acc_top"] * r["fit_fraction"]) and r["samples"] == 8
    assert traj["chosen"]["score"] > regions[0]["score"]  # moved somewhere better than the start
    plot_trajectory(traj, str(tmp_path / "traj.png"))
    assert (tmp_path / "traj.png").read_bytes()[:4] == b"\x89PNG"


def test_fit_trend_is_least_squares() -> None:
    pts = [((0, 0), 1.0), ((1, 0), 1.5), ((0, 1), 0.5), ((1, 1), 1.0), ((2, 0), 2.0)]
    b, g_rank, g_patch = fit_trend(pts)
    assert (b, g_rank, g_patch) == pytest.approx((1.0, 0.5, -0.5))
    assert fit_trend([((0, 1), 0.2), ((1, 1), 0.4)])[2] == 0.0  # one patch value: no patch slope


# -- exact cost, fast ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sram", [4 * 1024, 6 * 1024, 10 * 1024])
def test_cost_cache_decides_exactly_like_estimate(sram: int) -> None:
    from mcuformer.codegen.cost import CostCache, estimate, peak_sram_lower_bound, planned_graph

    space = replace(SearchSpace(), rank_ratios=RANK_GRID)
    rng = random.Random(sram)
    archs = [sample_arch(space, rng) for _ in range(60)] + [space.largest(), space.smallest()]
    cache = CostCache(sram)
    over = pruned = 0
    for a in archs:
        exact = estimate(a, sram)
        bound = peak_sram_lower_bound(planned_graph(a))
        assert bound <= exact.peak_sram_bytes  # a lower bound for the schedules the planner picks
        got = cache.cost(a)
        assert (got.peak_sram_bytes <= sram) == (exact.peak_sram_bytes <= sram) and got.flash_bytes == exact.flash_bytes
        if exact.peak_sram_bytes <= sram:  # the search's cache skips only the naive op-by-op figure
            assert got == replace(exact, naive_arena_bytes=0) and cache(a) == (exact.peak_sram_bytes, exact.flash_bytes)
        over += estimate(a).peak_sram_bytes > sram
        pruned += bound > sram
    assert 0 < pruned <= over < len(archs)  # every path of the cache is exercised
    assert cache.evaluations == len(set(archs)) and cache.per_second > 0


def test_cost_cache_with_a_flash_budget_decides_like_estimate() -> None:
    from mcuformer.codegen.cost import UNPLANNED_SRAM, CostCache, estimate

    space = replace(SearchSpace(), rank_ratios=RANK_GRID)
    rng = random.Random(5)
    archs = [sample_arch(space, rng) for _ in range(60)]
    sram, flash = 6 * 1024, 80 * 1024
    cache = CostCache(sram, flash)
    over_flash = 0
    for a in archs:
        exact = estimate(a, sram)
        got_sram, got_flash = cache(a)
        assert got_flash == exact.flash_bytes  # flash never depends on the schedule
        fits = exact.peak_sram_bytes <= sram and exact.flash_bytes <= flash
        assert (got_sram <= sram and got_flash <= flash) == fits
        over_flash += exact.flash_bytes > flash
        if exact.flash_bytes > flash:  # not planned: counted as over flash only
            assert got_sram == UNPLANNED_SRAM
    assert 0 < over_flash < len(archs)


def test_flash_of_the_primitive_graph_equals_the_planned_cost() -> None:
    """CostCache rejects over-flash candidates from the unplanned primitive graph: its flash must be the
    planned graph's for every kind of subnet (stems of 1 and 2 layers, int4 blocks, low rank, dense)."""
    from mcuformer.codegen.cost import estimate, flash_of_graph
    from mcuformer.codegen.frontend import build_graph

    space = replace(SearchSpace(), rank_ratios=RANK_GRID, stem_channels=(8, 16), int4_layers=(0, 1))
    rng = random.Random(11)
    archs = [sample_arch(space, rng) for _ in range(24)]
    archs += [sample_arch(replace(space, stem_layers=2), rng) for _ in range(12)]
    assert any(stem_width(a) for a in archs) and any(a.weight_bits for a in archs)  # the paths are exercised
    for a in archs:
        exact = estimate(a, 8 * 1024)
        assert flash_of_graph(build_graph(a)) == (exact.weight_bytes, exact.flash_bytes), a.short()


# -- CLI and run directory --------------------------------------------------------------------------


def test_search_cli_flags_and_errors(tmp_path, capsys) -> None:
    from mcuformer.cli import build_parser, main
    from mcuformer.search_options import SearchOptions
    from mcuformer.workflow import run_search

    args = build_parser().parse_args(
        ["search", "--board", "NUCLEO-F412ZG", "--out", "r", "--no-space-evolution", "--parents", "3",
         "--mutations", "4", "--crossovers", "5", "--instr-budget", "2.5M", "--init-from", "x", "--resume"]
    )  # fmt: skip
    assert (args.space_evolution, args.parents, args.mutations, args.crossovers) == (False, 3, 4, 5)
    assert (args.instr_budget, args.init_from, args.resume) == ("2.5M", "x", True)
    out = str(tmp_path / "run")
    assert main(["search", "--board", "NUCLEO-F412ZG", "--out", out, "--instr-budget", "lots"]) == 2
    assert "--instr-budget" in capsys.readouterr().err

    (tmp_path / ".run.partial").mkdir()  # an interrupted run's checkpoints
    with pytest.raises(UserError, match="--resume"):
        run_search(SearchOptions(board="NUCLEO-F412ZG", out=tmp_path / "run"), lambda s: None)
    assert (tmp_path / ".run.partial").is_dir() and not (tmp_path / "run").exists()


def test_killed_search_resumes_to_the_same_run(tmp_path) -> None:
    from mcuformer.search_options import SearchOptions
    from mcuformer.workflow import run_search

    opts = dict(board="NUCLEO-F412ZG", sram="8KiB", flash="96KiB", epochs=1, finetune_epochs=1)
    opts |= dict(population=4, generations=2, space_evolution=False)
    straight = run_search(SearchOptions(out=tmp_path / "a", **opts), lambda s: None)
    with pytest.raises(Killed):  # killed in the evolution, after generation 1
        run_search(SearchOptions(out=tmp_path / "b", **opts), kill_after("gen   1/"))
    partial = tmp_path / ".b.partial"
    assert {p.name for p in partial.iterdir()} == {"options.json", "supernet.ckpt.pt", "search_state.json"}
    logs: list[str] = []
    resumed = run_search(SearchOptions(out=tmp_path / "b", resume=True, **opts), logs.append)
    assert any(line.startswith("resumed from") for line in logs) and not any(line.startswith("epoch") for line in logs)
    assert not partial.exists()
    for report in (straight, resumed):
        report["search"].pop("seconds")
        for key in ("cost_evaluations", "cost_evaluations_per_second", "cost_evaluations_per_cpu_second"):
            report["search"].pop(key)  # the resumed run costs fewer candidates itself
    assert resumed == straight
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "b" / "pareto.json").read_text() == (tmp_path / "a" / "pareto.json").read_text()

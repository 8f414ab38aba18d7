"""The training pipeline: uint8 storage converted per batch, augmentation, label smoothing,
distillation, streaming folders, the recipe, and the fixed CNN baseline (memory and int8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mcuformer.data import Dataset, load_dataset
from mcuformer.datasets import to_float
from mcuformer.errors import UserError
from mcuformer.nas.cnn import CNN, cnn_cost, int8_model, widest_cnn
from mcuformer.nas.data_pipeline import Augment, augment, default_augment, make_loader, resolve_device, stream_folder
from mcuformer.nas.recipe import Recipe, finetune_epochs_for, lr_for_width, train_config
from mcuformer.nas.train import TrainConfig, distill_loss, supervised_loss, train_batches, train_classifier
from mcuformer.search_options import SearchOptions


def tiny_uint8(n: int = 40, size: int = 8) -> Dataset:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (n, 1, size, size), dtype=np.uint8))
    y = torch.arange(n) % 4
    return Dataset(x, y, x[:8].clone(), y[:8].clone(), 1, 4, size, "tiny")


def test_uint8_batches_equal_float_batches() -> None:
    u8 = tiny_uint8()
    f32 = Dataset(to_float(u8.train_x), u8.train_y, to_float(u8.val_x), u8.val_y, 1, 4, 8, "tiny")
    cfg = TrainConfig(batch_size=16, augment_shift=2, flip=True)
    a = list(train_batches(u8, cfg, torch.Generator().manual_seed(3), 1))
    b = list(train_batches(f32, cfg, torch.Generator().manual_seed(3), 1))
    assert len(a) == len(b) == 3
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    assert all(x.dtype == torch.float32 and -1.0 <= x.min() and x.max() <= 1.0 for x, _ in a)


def test_augment_crop_moves_by_at_most_the_padding_and_flips_only_when_asked() -> None:
    x = torch.full((64, 1, 9, 9), -1.0)
    x[:, 0, 4, 4] = 1.0  # one bright pixel in the centre
    out = augment(x, Augment(crop_pad=2), torch.Generator().manual_seed(0))
    where = (out[:, 0] == 1.0).nonzero()[:, 1:]  # (row, col) of the pixel in each image
    assert out.shape == x.shape and len(where) == 64 and (where - 4).abs().max() == 2  # every shift in [-2, 2] ...
    assert len({tuple(p) for p in where.tolist()}) > 10  # ... and not always the same
    asym = torch.arange(9.0).repeat(8, 1, 9, 1)  # columns 0..8
    flipped = augment(asym, Augment(flip=True), torch.Generator().manual_seed(0))
    n_flipped = int((flipped[:, 0, 0, 0] == 8.0).sum())
    assert 0 < n_flipped < 8 and torch.equal(augment(asym, Augment(), torch.Generator()), asym)
    assert default_augment("mnist", 1, 28) == Augment(crop_pad=2, flip=False)  # never flip digits
    assert default_augment("digits", 3, 8).flip is False and default_augment("pets", 3, 96) == Augment(8, True)


def test_label_smoothing_and_distillation_losses() -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    cfg = TrainConfig(label_smoothing=0.1)
    expected = F.cross_entropy(logits, y, label_smoothing=0.1)
    assert torch.allclose(supervised_loss(logits, logits, y, cfg, None), expected)
    assert distill_loss(logits, logits, 2.0).abs() < 1e-6  # the same predictions: nothing to learn
    teacher = torch.nn.Identity()  # the "teacher" returns its input: the logits themselves
    mixed = supervised_loss(logits, logits, y, TrainConfig(label_smoothing=0.1, distill_weight=0.5), teacher)
    assert torch.allclose(mixed, 0.5 * F.cross_entropy(logits, y, label_smoothing=0.1), atol=1e-6)


def test_recipe_device_and_schedule() -> None:
    data = load_dataset("digits")
    cfg = train_config(Recipe(teacher="cnn"), data, 7, 1, 50_000)  # 8x8 digits: no crop padding, no flips
    assert (cfg.epochs, cfg.seed, cfg.augment_shift, cfg.flip, cfg.label_smoothing) == (7, 1, 0, False, 0.1)
    assert cfg.distill_weight == 0.5 and cfg.device == "cpu" and cfg.threads == 1
    assert SearchOptions.distill_weight == Recipe.distill_weight  # the CLI's default is the recipe's
    assert train_config(Recipe(crop_pad=0, flip=True), data, 1, 0, 1).distill_weight == 0.0
    assert [finetune_epochs_for(p, 10) for p in (50_000, 100_000, 225_000, 10_000_000)] == [10, 10, 15, 20]
    # the peak learning rate: TrainConfig's up to 64 wide, then 1 / width (E160 diverged at 5e-3, docs/nas.md)
    assert [lr_for_width(e) for e in (16, 64, 128, 160, 256)] == pytest.approx([5e-3, 5e-3, 2.5e-3, 2e-3, 1.25e-3])
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")


def test_cli_rejects_a_distill_weight_outside_0_to_1(tmp_path, capsys) -> None:
    from mcuformer.cli import main

    out = tmp_path / "r"
    args = ["--board", "STM32F746G-DISCO", "--out", str(out), "--teacher", "cnn", "--distill-weight", "1.5"]
    code = main(["search", *args])
    err = capsys.readouterr().err
    assert code != 0 and "--distill-weight" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cnn_memory_is_a_greedy_arena_and_the_widest_fits() -> None:
    c = cnn_cost(28, 1, 8, 10)
    acts = [784, 28 * 28 * 8, 14 * 14 * 8, 14 * 14 * 16, 7 * 7 * 16, 7 * 7 * 32, 32, 12]  # logits 10 -> aligned 12
    pairs = zip(acts[:-1], acts[1:], strict=True)
    # every op's input and output alive together; on this chain the greedy arena meets that bound (pool1)
    assert c.arena_bytes == max(a + b for a, b in pairs) == 28 * 28 * 8 + 14 * 14 * 8
    assert c.flash_bytes == 9 * (8 + 8 * 16 + 16 * 32) + 4 * (8 + 16 + 32) + 32 * 10 + 40
    assert c.params == sum(p.numel() for p in CNN(1, 8, 10).parameters()) - (8 + 16 + 32)  # BN folded into a bias
    best = widest_cnn(28, 1, 10, 64 * 1024, 256 * 1024)
    wider = cnn_cost(28, 1, best.width + 1, 10)
    assert best.peak_sram_bytes <= 64 * 1024 and best.flash_bytes <= 256 * 1024
    assert wider.peak_sram_bytes > 64 * 1024 or wider.flash_bytes > 256 * 1024


def test_cnn_int8_ptq_tracks_the_float_model() -> None:
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = CNN(1, 8, 10)
    train_classifier(model, model, data, TrainConfig(epochs=3, augment_shift=1, lr=1e-2), lambda _: None)
    model.eval()
    with torch.no_grad():
        float_acc = float((model(data.val_x).argmax(1) == data.val_y).float().mean())
        q = int8_model(model, data.train_x[:256])
        int8_acc = float((q(data.val_x).argmax(1) == data.val_y).float().mean())
    assert float_acc > 0.8 and abs(float_acc - int8_acc) <= 0.02, (float_acc, int8_acc)


def test_streamed_folder_trains_through_a_dataloader(tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in ("x", "y"):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    data, stream = stream_folder(tmp_path, 8, seed=0, calib=4)
    assert (data.in_channels, data.image_size, len(data.val_y), len(stream)) == (3, 8, 4, 16)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (4, 3, 8, 8)
    seen = torch.cat([y for _, y in make_loader(stream, 8, seed=0, workers=1)])
    assert sorted(seen.tolist()) == sorted(label for _, label in stream.files)  # every training image, once
    model = CNN(3, 4, 2)
    cfg = TrainConfig(epochs=1, batch_size=8, loader_workers=1)
    result = train_classifier(model, model, data, cfg, lambda _: None, stream=stream)
    assert len(result["history"]) == 1 and np.isfinite(result["history"][0]["loss"])

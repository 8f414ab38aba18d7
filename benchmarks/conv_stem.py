"""Does a convolutional stem close the ViT-vs-CNN gap? The searched 64 KiB / 256 KiB architecture of
docs/nas.json with and without a stem of 3x3 conv + BN + ReLU layers, trained from scratch with the
evidence's recipe (benchmarks/nas_evidence.py: SCRATCH_EPOCHS, crop padding 2, label smoothing 0.1, no
teacher) on the 5,000 MNIST images, 1 seed; float top-1 and int8 top-1 through the compiler (the Python
integer reference of the emitted C), peak SRAM and flash from the planner (codegen.cost).

    nice -n 10 python benchmarks/conv_stem.py                # trains, writes benchmarks/results/conv_stem.json
    python benchmarks/conv_stem.py --quick                   # 1 epoch: checks the script

Each model is also exported for STM32F746G-DISCO within 64 KiB / 256 KiB and run in QEMU (mps2-an500,
Cortex-M7, -icount) with per-operator counters: measured peak SRAM, flash, instructions per inference
(instruction counts, not cycles) and bit-exactness of the C against the integer reference.

Trained weights are cached in --cache (default /tmp/mcuformer_conv_stem), so a rerun only evaluates.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcuformer.arch import ArchConfig, save_json  # noqa: E402
from mcuformer.codegen.cost import estimate  # noqa: E402
from mcuformer.data import load_dataset  # noqa: E402
from mcuformer.emulate import run_emulate  # noqa: E402
from mcuformer.export import accuracies, compile_for, run_export  # noqa: E402
from mcuformer.model import ViT  # noqa: E402
from mcuformer.nas.recipe import Recipe, num_params, train_config  # noqa: E402
from mcuformer.nas.train import finetune  # noqa: E402

SRAM, FLASH = 64 * 1024, 256 * 1024
BOARD = "STM32F746G-DISCO"  # Cortex-M7: QEMU mps2-an500 counts the instructions
SCRATCH_EPOCHS = 8  # benchmarks/nas_evidence.py
# docs/nas.json, budget 64KiB / 256KiB, "searched"
SEARCHED = ArchConfig(
    image_size=28,
    in_channels=1,
    patch_size=4,
    embed_dim=64,
    depth=5,
    num_heads=(2, 4, 4, 4, 2),
    mlp_ratio=(3.0, 1.0, 2.0, 2.0, 3.0),
    attn_rank=(48, 0, 0, 0, 48),
    mlp_rank=(40, 40, 40, 40, 48),
    num_classes=10,
)
VARIANTS = {
    "none": SEARCHED,
    # one stride-2 conv: 28 -> 14, patch 2 -> the same 7x7 = 49 tokens
    "stem16s2": replace(SEARCHED, patch_size=2, stem_channels=(16,), stem_strides=(2,)),
    # a stride-1 conv at full resolution, then a stride-2 conv
    "stem8s1_16s2": replace(SEARCHED, patch_size=2, stem_channels=(8, 16), stem_strides=(1, 2)),
}


def measure(arch: ArchConfig, weights: Path) -> dict:
    """Export for the board within the budget, build, run in QEMU with per-operator counters: the
    measured peak SRAM, flash and instructions per inference, bit-exact against the reference."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        shutil.copy(weights, run / "model.pt")
        save_json(str(run / "arch.json"), {"arch": arch.to_json(), "data": "mnist", "seed": 0})
        proj = Path(tmp) / "proj"
        report = run_export(run, BOARD, proj, False, lambda _: None, sram="64KiB", flash="256KiB", data="mnist")
        profile = run_emulate(proj, host=False, sanitize=False, log=None, profile=True)
    measured = report["measured"]
    stem = [row for row in profile["profile"] if row["kind"] == "fused_conv2d"]
    return {
        "bit_exact": measured["bit_exact"] and profile["bit_exact"],
        "measured_peak_sram_bytes": measured["peak_sram_bytes"],
        "measured_flash_bytes": measured["flash_bytes"],
        "instructions_per_inference": profile["instructions_per_inference"],
        "stem_instructions": sum(row["instructions"] for row in stem),
        "stem_macs": sum(row["macs"] for row in stem),
        "profile": [{k: row[k] for k in ("name", "kernel", "instructions", "macs")} for row in profile["profile"]],
    }


def train_or_load(name: str, seed: int, epochs: int, data, cache: Path) -> tuple[ViT, Path, float]:
    """The variant trained from scratch with the evidence's recipe (cached: weights + training seconds)."""
    arch = VARIANTS[name]
    torch.manual_seed(seed)
    model = ViT(arch)
    weights = cache / f"{name}_e{epochs}_s{seed}.pt"
    seconds_file = weights.with_suffix(".seconds")
    if weights.is_file():
        model.load_state_dict(torch.load(weights, weights_only=True))
    else:
        t0 = time.time()
        cfg = train_config(Recipe(), data, epochs, seed, num_params(model))
        finetune(model, data, cfg, log=lambda _: None)
        torch.save(model.state_dict(), weights)
        seconds_file.write_text(f"{time.time() - t0:.1f}\n")
    seconds = float(seconds_file.read_text()) if seconds_file.is_file() else float("nan")
    return model.eval(), weights, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=SCRATCH_EPOCHS)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--cache", default="/tmp/mcuformer_conv_stem")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--train-only", action="store_true", help="train and cache the weights, evaluate nothing")
    p.add_argument("--no-measure", action="store_true", help="skip the export + QEMU measurement")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "conv_stem.json"))
    args = p.parse_args()
    epochs = 1 if args.quick else args.epochs
    seeds = [int(s) for s in args.seeds.split(",")]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    data = load_dataset("mnist", seed=0)
    summary = []
    for name in args.variants.split(","):
        arch = VARIANTS[name]
        cost = estimate(arch, SRAM)
        runs = []
        for seed in seeds:
            model, weights, seconds = train_or_load(name, seed, epochs, data, cache)
            if args.train_only:
                print(f"{name} seed {seed}: trained in {seconds:.0f} s -> {weights}", flush=True)
                continue
            float_acc, int8_acc = accuracies(model, compile_for(model, data, SRAM), data)
            run = {"seed": seed, "float_top1": float_acc, "int8_top1": int8_acc, "train_seconds": seconds}
            if seed == seeds[0] and not args.no_measure:  # the C once per variant: bit-exact, instructions
                run.update(measure(arch, weights))
            print(f"{name:14s} seed {seed}: float {float_acc:.4f} int8 {int8_acc:.4f} ({seconds:.0f} s)", flush=True)
            runs.append(run)
        if args.train_only:
            continue
        ints = [r["int8_top1"] for r in runs]
        first = runs[0]
        row = {
            "variant": name,
            "arch": arch.short(),
            "arch_json": arch.to_json(),
            "params": num_params(ViT(arch)),
            "float_top1_mean": statistics.mean(r["float_top1"] for r in runs),
            "int8_top1_mean": statistics.mean(ints),
            "top1_std": statistics.pstdev(ints) if len(ints) > 1 else 0.0,
            "peak_sram_bytes": cost.peak_sram_bytes,
            "flash_bytes": cost.flash_bytes,
            "fits": cost.peak_sram_bytes <= SRAM and cost.flash_bytes <= FLASH,
            **{k: first[k] for k in ("bit_exact", "measured_peak_sram_bytes", "measured_flash_bytes",
                                     "instructions_per_inference", "stem_instructions", "stem_macs") if k in first},
            "runs": runs,
        }
        print(
            f"{name:14s} {arch.short()}: float {row['float_top1_mean']:.4f} int8 {row['int8_top1_mean']:.4f} "
            f"(std {row['top1_std']:.4f}, {len(runs)} seeds) SRAM {cost.peak_sram_bytes} flash {cost.flash_bytes}"
            + (f", {first['instructions_per_inference']:,} instructions in QEMU (stem {first['stem_instructions']:,}),"
               f" bit-exact {first['bit_exact']}" if "bit_exact" in first else ""),
            flush=True,
        )
        summary.append(row)
    if args.train_only:
        return
    result = {"epochs": epochs, "seeds": seeds, "budget": "64KiB / 256KiB", "board": BOARD, "sram_bytes": SRAM,
              "flash_bytes": FLASH, "quick": args.quick, "variants": summary, "torch": torch.__version__,
              "command": "nice -n 10 python benchmarks/conv_stem.py"}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

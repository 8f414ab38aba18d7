"""Evidence for the NAS: searched subnet vs a hand-scaled ViT vs random feasible subnets, on digits,
at two budgets where the largest subnet does not fit. Writes docs/nas.json and the evidence section
of docs/nas.md (between the markers).

    python benchmarks/nas_evidence.py            # the full run (about 15-25 minutes on 2 cores)
    python benchmarks/nas_evidence.py --quick    # a smoke run with tiny settings (numbers meaningless)

Protocol (the same for every model):
- search: `mcuformer search` defaults (supernet 30 epochs, space evolution, evolution 50 x 20 with
  top 10 / 25 mutations / 25 crossovers, fine-tune 15 epochs), timed; its own result is reported as
  "searched (supernet + fine-tune)".
- comparison at an equal training budget: every architecture (searched, hand-scaled, random) is
  trained FROM SCRATCH with the same recipe (`nas.train.finetune` on a fresh `ViT`: AdamW, lr 5e-3,
  cosine, SCRATCH_EPOCHS epochs, batch 64), for each of SEEDS.
- hand-scaled: the space's largest ViT (dense, res 16, patch 2, depth 3, 4 heads, MLP ratio 3) with
  its embed dim shrunk in steps of 8 until it fits; then depth, if no width fits.
- random: the first RANDOM_ARCHS subnets sampled uniformly from the full space that fit.
- accuracy: val top-1, float and int8 (codegen.compile.compile_model + evaluate_int8, through
  mcuformer.workflow.compile_for / accuracies, exactly as `search` and `export` report it);
  memory: codegen.cost.estimate(arch, budget) (the planner the C is generated from).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codegen.cost import estimate  # noqa: E402
from mcuformer.arch import ArchConfig, SearchSpace, save_json  # noqa: E402
from mcuformer.data import load_dataset  # noqa: E402
from mcuformer.model import ViT  # noqa: E402
from mcuformer.workflow import (  # noqa: E402
    CostCache,
    SearchOptions,
    accuracies,
    compile_for,
    default_space,
    resolve_board,
    run_search,
)
from nas.space_evolution import RANK_GRID  # noqa: E402
from nas.supernet import sample_arch  # noqa: E402
from nas.train import TrainConfig, finetune  # noqa: E402

BOARD = "NUCLEO-F412ZG"
BUDGETS = [("8KiB", "64KiB"), ("16KiB", "128KiB")]
SCRATCH_EPOCHS = 40
SEEDS = (0, 1, 2)
RANDOM_ARCHS = 3
MARK_BEGIN, MARK_END = "<!-- evidence:begin -->", "<!-- evidence:end -->"


def log(msg: str) -> None:
    print(msg, flush=True)


def hand_scaled(space: SearchSpace, fits) -> ArchConfig:
    base = space.largest()
    for depth in range(base.depth, 0, -1):
        for e in range(base.embed_dim, 7, -8):
            heads = max(h for h in (4, 2, 1) if e % h == 0)
            a = replace(
                base,
                embed_dim=e,
                depth=depth,
                num_heads=(heads,) * depth,
                mlp_ratio=base.mlp_ratio[:depth],
                attn_rank=(0,) * depth,
                mlp_rank=(0,) * depth,
            )
            if fits(a):
                return a
    raise RuntimeError("no hand-scaled ViT fits")


def random_feasible(space: SearchSpace, fits, n: int, seed: int) -> list[ArchConfig]:
    rng, out = random.Random(seed), []
    while len(out) < n:
        a = sample_arch(space, rng)
        if fits(a) and a not in out:
            out.append(a)
    return out


def train_and_measure(arch: ArchConfig, data, board, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = ViT(arch)
    t0 = time.time()
    finetune(model, data, TrainConfig(epochs=epochs, seed=seed), log=lambda _: None)
    model.eval()
    compiled = compile_for(model, data, board.sram_bytes)
    float_acc, int8_acc = accuracies(model, compiled, data)
    return {"seed": seed, "float_top1": float_acc, "int8_top1": int8_acc, "train_seconds": time.time() - t0}


def memory(arch: ArchConfig, board) -> dict:
    cost = estimate(arch, board.sram_bytes)
    return {"peak_sram_bytes": cost.peak_sram_bytes, "flash_bytes": cost.flash_bytes}


def summarize(runs: list[dict]) -> dict:
    out = {}
    for key in ("float_top1", "int8_top1"):
        values = [r[key] for r in runs]
        out[key] = statistics.mean(values)
        out[key + "_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
    return out


def cost_rate(space: SearchSpace, sram_bytes: int, n: int) -> dict:
    rng = random.Random(123)
    archs = list(dict.fromkeys(sample_arch(space, rng) for _ in range(n)))
    cache = CostCache(sram_bytes)
    for a in archs:
        cache(a)
    t0 = time.perf_counter()
    for a in archs[: n // 4]:
        estimate(a, sram_bytes)
    plain = (n // 4) / (time.perf_counter() - t0)
    over = sum(s > sram_bytes for s, _ in cache.costed().values())
    return {
        "candidates": len(archs),
        "over_sram_fraction": over / len(archs),
        "cost_cache_per_second": cache.per_second,
        "cost_cache_per_cpu_second": cache.per_cpu_second,
        "plain_estimate_per_second": plain,
    }


def run(quick: bool, out_json: Path, out_md: Path) -> dict:
    load = os.getloadavg()
    data = load_dataset("digits", seed=0)
    space = replace(default_space(data.image_size, data.in_channels, data.num_classes), rank_ratios=RANK_GRID)
    epochs = 2 if quick else SCRATCH_EPOCHS
    seeds = SEEDS[:1] if quick else SEEDS
    results = []
    for sram, flash in BUDGETS:
        board = resolve_board(BOARD, sram, flash)
        cost = CostCache(board.sram_bytes)

        def fits(a: ArchConfig, cost=cost, board=board) -> bool:
            s, f = cost(a)
            return s <= board.sram_bytes and f <= board.flash_bytes

        largest = memory(space.largest(), board)
        assert not fits(space.largest()), f"budget {sram}/{flash} does not bind"
        log(f"== budget {sram} SRAM / {flash} flash on {BOARD}: the largest subnet needs {largest}")
        with tempfile.TemporaryDirectory() as tmp:
            opts = SearchOptions(board=BOARD, sram=sram, flash=flash, out=Path(tmp) / "run", seed=0)
            if quick:
                opts = replace(opts, epochs=1, finetune_epochs=1, population=6, generations=2)
            t0 = time.time()
            report = run_search(opts, log)
            search_seconds = time.time() - t0
            pareto = json.loads((Path(tmp) / "run" / "pareto.json").read_text())
        searched = ArchConfig.from_json(report["arch"])
        rows = [
            {
                "model": "searched (supernet + fine-tune)",
                "arch": searched.short(),
                "float_top1": report["accuracy"]["float_top1"],
                "int8_top1": report["accuracy"]["int8_top1"],
                "float_top1_std": 0.0,
                "int8_top1_std": 0.0,
                "training": f"supernet {opts.epochs} ep + fine-tune {opts.finetune_epochs} ep",
                **memory(searched, board),
            }
        ]
        candidates = [("searched", searched, seeds), ("hand-scaled", hand_scaled(space, fits), seeds)]
        candidates += [
            (f"random #{i + 1}", a, seeds[:1]) for i, a in enumerate(random_feasible(space, fits, RANDOM_ARCHS, 0))
        ]
        random_runs = []
        for name, arch, arch_seeds in candidates:
            runs = [train_and_measure(arch, data, board, epochs, s) for s in arch_seeds]
            row = {"model": f"{name} (from scratch)", "arch": arch.short(), "runs": runs, **summarize(runs)}
            row |= {"training": f"scratch {epochs} ep x {len(arch_seeds)} seed(s)", **memory(arch, board)}
            log(f"{row['model']:32s} {row['arch']}: float {row['float_top1']:.4f} int8 {row['int8_top1']:.4f}")
            rows.append(row)
            if name.startswith("random"):
                random_runs += runs
        rows.append(
            {
                "model": f"random, mean of {RANDOM_ARCHS} (from scratch)",
                "arch": "-",
                "training": f"scratch {epochs} ep",
                **summarize(random_runs),
            }
        )
        for row in rows:
            if "peak_sram_bytes" in row:
                assert row["peak_sram_bytes"] <= board.sram_bytes and row["flash_bytes"] <= board.flash_bytes, row
        results.append(
            {
                "board": BOARD,
                "budget": {
                    "sram": sram,
                    "flash": flash,
                    "sram_bytes": board.sram_bytes,
                    "flash_bytes": board.flash_bytes,
                },
                "largest_subnet": largest,
                "rows": rows,
                "search": {
                    "wall_seconds": search_seconds,
                    "phase_seconds": report["search"]["seconds"],
                    "evaluated": report["search"]["evaluated"],
                    "rejected_sram": report["search"]["rejected_sram"],
                    "rejected_flash": report["search"]["rejected_flash"],
                    "cost_evaluations": report["search"]["cost_evaluations"],
                    "cost_evaluations_per_second": report["search"]["cost_evaluations_per_second"],
                    "cost_evaluations_per_cpu_second": report["search"]["cost_evaluations_per_cpu_second"],
                    "space_evolution": report["search"]["space_evolution"],
                    "pareto_front": [(p["summary"], p["accuracy"], p["peak_sram_bytes"]) for p in pareto["front"]],
                },
                "cost_microbenchmark": cost_rate(space, board.sram_bytes, 200 if quick else 1000),
            }
        )
    evidence = {
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "loadavg_start": load,
            "loadavg_end": os.getloadavg(),
        },
        "protocol": __doc__.split("Protocol (the same for every model):")[1].strip(),
        "data": data.summary(),
        "budgets": results,
    }
    save_json(str(out_json), evidence)
    write_markdown(evidence, out_md)
    log(f"wrote {out_json} and the evidence section of {out_md}")
    return evidence


def write_markdown(evidence: dict, path: Path) -> None:
    lines = [
        MARK_BEGIN,
        "",
        f"Generated by `python benchmarks/nas_evidence.py` on {evidence['machine']['cpus']} CPU cores "
        f"(torch {evidence['machine']['torch']}; load average at start {evidence['machine']['loadavg_start'][0]:.1f}). "
        f"Data: {evidence['data']}. Accuracy is val top-1; mean (std) over seeds where several.",
        "",
    ]
    for b in evidence["budgets"]:
        s = b["search"]
        lines += [
            f"**{b['board']}, {b['budget']['sram']} SRAM / {b['budget']['flash']} flash** (the largest subnet "
            f"needs {b['largest_subnet']['peak_sram_bytes']} B SRAM, {b['largest_subnet']['flash_bytes']} B flash)",
            "",
            "| model | architecture | training | float top-1 | int8 top-1 | peak SRAM (B) | flash (B) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in b["rows"]:
            acc = [
                f"{r[k]:.4f}" + (f" ({r[k + '_std']:.4f})" if r.get(k + "_std") else "")
                for k in ("float_top1", "int8_top1")
            ]
            lines.append(
                f"| {r['model']} | {r['arch']} | {r['training']} | {acc[0]} | {acc[1]} | "
                f"{r.get('peak_sram_bytes', '-')} | {r.get('flash_bytes', '-')} |"
            )
        phases = ", ".join(f"{k} {v:.0f} s" for k, v in s["phase_seconds"].items())
        micro = b["cost_microbenchmark"]
        lines += [
            "",
            f"Search wall time {s['wall_seconds']:.0f} s ({phases}); {s['evaluated']} candidates costed "
            f"({s['rejected_sram']} over SRAM, {s['rejected_flash']} over flash); "
            f"{s['cost_evaluations']} exact cost evaluations at {s['cost_evaluations_per_second']:.0f}/s wall "
            f"({s['cost_evaluations_per_cpu_second']:.0f} per CPU second) in the search; "
            f"microbenchmark on {micro['candidates']} random subnets ({100 * micro['over_sram_fraction']:.0f}% over "
            f"the SRAM budget): {micro['cost_cache_per_second']:.0f}/s wall "
            f"({micro['cost_cache_per_cpu_second']:.0f} per CPU second) through the search's CostCache, "
            f"{micro['plain_estimate_per_second']:.0f}/s wall calling `estimate(arch, budget)` directly.",
            "",
        ]
    lines.append(MARK_END)
    text = path.read_text() if path.exists() else f"# NAS\n\n{MARK_BEGIN}\n{MARK_END}\n"
    pattern = re.compile(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), re.S)
    path.write_text(
        pattern.sub(lambda _: "\n".join(lines), text) if pattern.search(text) else text + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the script, numbers are meaningless")
    p.add_argument("--json", default=str(ROOT / "docs" / "nas.json"))
    p.add_argument("--md", default=str(ROOT / "docs" / "nas.md"))
    args = p.parse_args()
    run(args.quick, Path(args.json), Path(args.md))

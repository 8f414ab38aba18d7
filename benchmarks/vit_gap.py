"""What closes the ViT-CNN gap at 64 KiB / 256 KiB (issue 9)? The hand-scaled ViT of the 64 KiB
evidence space (benchmarks/spaces/mnist_64k_evidence.toml: dense E48 D5, MLP ratio 4, 4 heads, patch 2
after a two-layer stem), trained from scratch exactly as the evidence table's rows
(benchmarks/nas_evidence.py: crop padding 2, label smoothing 0.1, int8 through the compiler), with one
change at a time:

    nice -n 5 python benchmarks/vit_gap.py --seed 0 --epochs 40 --teacher     # + CNN-teacher distillation
    nice -n 5 python benchmarks/vit_gap.py --seed 0 --epochs 40 --stem 32     # 32-wide stem (16 s1, 32 s2)
    nice -n 5 python benchmarks/vit_gap.py --seed 0 --epochs 40 --stem 64 --deep-stem --teacher
                                           # 3-layer stem (16 s1, 32 s2, 64 s2) and patch 1: the same tokens
    nice -n 5 python benchmarks/vit_gap.py --seed 0 --epochs 40 --fuller-from a64w --teacher
                                           # the fuller candidate that part a64w's search ranked below its winner

Appends one JSON line per run to benchmarks/results/vit_gap.jsonl. The teacher is the recipe's
(nas.recipe.train_teacher: nas.cnn's CNN at width 32, trained first with the same epochs and recipe; cached
per seed by nas_evidence.cached_teacher)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.nas_evidence import BOARD, cached_teacher, hand_scaled, part_budget, vit_from_scratch  # noqa: E402
from mcuformer.arch import ArchConfig, plain_vit, stem_width, with_stem  # noqa: E402
from mcuformer.codegen.cost import CostCache  # noqa: E402
from mcuformer.data import load_dataset  # noqa: E402
from mcuformer.export import resolve_board  # noqa: E402
from mcuformer.nas.recipe import Recipe, lr_for_width  # noqa: E402
from mcuformer.spaces import load_space  # noqa: E402

SPACE = ROOT / "benchmarks" / "spaces" / "mnist_64k_evidence.toml"
RESULTS = ROOT / "benchmarks" / "results" / "vit_gap.jsonl"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--stem", type=int, default=0, help="stem width (its stride-2 layer); 0: the space's (16)")
    p.add_argument("--deep-stem", action="store_true", help="3 stem layers (w/4 s1, w/2 s2, w s2), patch / 4")
    p.add_argument("--fuller-from", help="PART: train the fill analysis's fuller candidate of that part's search")
    p.add_argument("--searched-from", help="PART: train the winner of that part's search (at --budget)")
    p.add_argument("--budget", default="64KiB/256KiB", help="SRAM/flash, for --searched-from")
    p.add_argument("--teacher", action="store_true", help="distil from the recipe's CNN teacher")
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW; default nas.recipe.lr_for_width)")
    p.add_argument("--distill-weight", type=float, default=Recipe.distill_weight, help="with --teacher")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist")
    board = resolve_board(BOARD, *args.budget.split("/"))
    space = load_space(str(SPACE), data.in_channels, data.num_classes)
    cost = CostCache(board.sram_bytes)

    def fits(a) -> bool:
        sram, flash = cost(a)
        return sram <= board.sram_bytes and flash <= board.flash_bytes

    arch = hand_scaled(space, fits)
    if args.fuller_from or args.searched_from:
        entry = part_budget(args.fuller_from or args.searched_from, args.budget.replace("/", " / "))
        search = entry["searched_by_search"]
        chosen = search["fill"]["fuller_candidate"]["arch"] if args.fuller_from else search["arch_json"]
        arch = ArchConfig.from_json(chosen)
        assert fits(arch), f"{arch.short()} does not fit the budget"
    elif args.stem and args.deep_stem:  # outside the search space's stems (1-2 layers): an experiment
        plain = plain_vit(arch)
        assert plain.patch_size % 4 == 0, plain.short()
        w = args.stem
        channels, strides = (w // 4, w // 2, w), (1, 2, 2)
        arch = replace(plain, patch_size=plain.patch_size // 4, stem_channels=channels, stem_strides=strides)
        assert fits(arch), f"{arch.short()} does not fit the budget"
    elif args.stem:
        arch = with_stem(args.stem, space.stem_layers, plain_vit(arch))
        assert fits(arch), f"{arch.short()} does not fit the budget"
    recipe = Recipe(teacher="cnn" if args.teacher else "none", distill_weight=args.distill_weight)
    t0 = time.time()
    teacher = cached_teacher(recipe, data, args.epochs, args.seed)
    lr = args.lr or lr_for_width(arch.embed_dim)
    run = vit_from_scratch(arch, data, board, recipe, args.epochs, args.seed, teacher, lr=lr)
    run |= {"lr": lr, "distill_weight": recipe.distill_weight if args.teacher else 0.0,
            "budget": args.budget, "stem_width": stem_width(arch), "stem_layers": len(arch.stem_channels),
            "teacher": recipe.teacher, "epochs": args.epochs, "seconds_with_teacher": time.time() - t0}  # fmt: skip
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(run, sort_keys=True) + "\n")
    print(json.dumps(run))


if __name__ == "__main__":
    main()

"""Profile and fit the instruction model that an instruction budget searches with (mcuformer.nas.instr_model).

    python -m mcuformer.instr_profile profile --n 24   # export random subnets, count their instructions in QEMU
    python -m mcuformer.instr_profile fit              # fit the linear model on the profiles

Profiling is app work: it exports each architecture with random weights (instruction counts do not
depend on the values beyond a few data-dependent branches) and runs the project in QEMU.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mcuformer.arch import ArchConfig, SearchSpace, save_json
from mcuformer.boards import get_board
from mcuformer.emulate import run_emulate
from mcuformer.export import run_export
from mcuformer.model import ViT
from mcuformer.nas.instr_model import DEFAULT_MODEL, DEFAULT_PROFILES, fit
from mcuformer.nas.supernet import sample_arch
from mcuformer.spaces import RANK_GRID


def have_qemu() -> bool:
    return shutil.which("qemu-system-arm") is not None and shutil.which("arm-none-eabi-gcc") is not None


def profile_arch(arch: ArchConfig, board: str, workdir: Path, seed: int = 0) -> int:
    """Export ``arch`` with random weights and count its instructions per inference in QEMU."""
    torch.manual_seed(seed)
    run = workdir / "run"
    run.mkdir(parents=True, exist_ok=True)
    torch.save(ViT(arch).state_dict(), run / "model.pt")
    save_json(str(run / "arch.json"), {"arch": arch.to_json(), "data": "digits", "seed": 0})
    run_export(run, board, workdir / "proj", True, lambda _: None)
    result = run_emulate(workdir / "proj", host=False, sanitize=False, log=None)
    if not result.get("bit_exact") or not result.get("instructions_per_inference"):
        raise RuntimeError(f"profiling {arch.short()} failed: {result}")
    return int(result["instructions_per_inference"])


def profile_space(
    space: SearchSpace, n: int, board: str, seed: int, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    archs = list(dict.fromkeys([space.smallest(), space.largest()] + [sample_arch(space, rng) for _ in range(4 * n)]))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcuf-instr-") as tmp:
        for k, arch in enumerate(archs[:n]):
            t0 = time.time()
            instr = profile_arch(arch, board, Path(tmp) / str(k))
            rows.append({"arch": arch.to_json(), "instructions": instr})
            log(f"profile {k + 1}/{n}: {arch.short()} -> {instr:,} instructions ({time.time() - t0:.1f}s)")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mcuformer.instr_profile", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("profile", help="measure instructions per inference of random subnets in QEMU")
    pr.add_argument("--n", type=int, default=24)
    pr.add_argument("--board", default="NUCLEO-F412ZG")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--out", default=str(DEFAULT_PROFILES))
    ft = sub.add_parser("fit", help="fit the linear model on profiles")
    ft.add_argument("--profiles", default=str(DEFAULT_PROFILES))
    ft.add_argument("--out", default=str(DEFAULT_MODEL))
    args = p.parse_args(argv)

    if args.cmd == "profile":
        if not have_qemu():
            print("qemu-system-arm / arm-none-eabi-gcc not found: nothing profiled (install them with make setup)")
            return 0
        board = get_board(args.board)
        space = replace(SearchSpace(), rank_ratios=RANK_GRID)
        rows = profile_space(space, args.n, board.name, args.seed)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        save_json(args.out, {"board": board.name, "core": board.core, "dsp": board.dsp, "profiles": rows})
        print(f"wrote {args.out}")
        return 0
    data = json.loads(Path(args.profiles).read_text())
    pairs = [(ArchConfig.from_json(r["arch"]), r["instructions"]) for r in data["profiles"]]
    model = fit(pairs, data["board"], data["core"], data["dsp"])
    save_json(args.out, model.to_json())
    print(json.dumps(model.fit, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

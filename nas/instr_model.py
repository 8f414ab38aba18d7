"""A linear model of instructions per inference, fitted on QEMU profiles, for an optional
instruction budget in the search.

QEMU counts instructions exactly (``-icount``; DESIGN section 6), but a build and a run take seconds,
far too slow for thousands of candidates. So: profile a few architectures once
(``python -m mcuformer.nas.instr_model profile``: export with random weights, run in QEMU, read
``instructions_per_inference``), fit ``instructions ~ coef . features(arch)`` by non-negative least
squares (``python -m mcuformer.nas.instr_model fit``), and let the search predict from shapes alone.

Features are counts from the same shapes-only graph the planner uses (after fusion and the
schedule choice for the budget): MACs of every linear layer (patch embedding and classifier
included), their output elements (one requantization each), the rows they run on (per-row
overhead), attention MACs (scores and weighted sum), softmax elements, elementwise elements (GELU
table, residual adds, mean pool), LayerNorm elements, plus a constant. Where the planner chose the
``per_head`` attention schedule, the LayerNorm and low-rank down-projection it recomputes for the
other heads are added to the LayerNorm and MAC counts.

The data (``nas/data/instr_profiles.json``) and the fitted model (``nas/data/instr_model.json``)
are small and versioned; the model records the board it was measured on and is only valid for
cores that run the same kernels (same DSP setting).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from mcuformer.codegen import ops as op_defs
from mcuformer.codegen.ir import Graph, Node
from mcuformer.codegen.ops import OP_FEATURES

from mcuformer.arch import ArchConfig, SearchSpace, save_json
from mcuformer.errors import UserError

FEATURES = ("const", *OP_FEATURES)
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_PROFILES = DATA_DIR / "instr_profiles.json"
DEFAULT_MODEL = DATA_DIR / "instr_model.json"


def features(arch: ArchConfig, sram_bytes: int | None = None) -> dict[str, float]:
    from mcuformer.codegen.cost import planned_graph

    graph = planned_graph(arch, sram_bytes)
    f = dict.fromkeys(FEATURES, 0.0)
    f["const"] = 1.0
    for top in graph.nodes:
        for name, value in node_features(graph, top).items():
            f[name] += value
    return f


def node_features(graph: Graph, top: Node) -> dict[str, float]:
    """The features of one top-level (fused) node of a planned graph (no constant): each op's own
    (its definition in codegen.ops), e.g. the per_head attention's recomputation included."""
    return op_defs.node_features(graph, top)


@dataclass(frozen=True)
class InstructionModel:
    coef: dict[str, float]
    board: str
    core: str
    dsp: bool
    fit: dict[str, Any]

    def predict(self, arch: ArchConfig, sram_bytes: int | None = None) -> float:
        f = features(arch, sram_bytes)
        return sum(self.coef[k] * f[k] for k in FEATURES)

    def to_json(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "coef": self.coef, "board": self.board, "core": self.core,
                "dsp": self.dsp, "target": "instructions_per_inference (QEMU -icount)", "fit": self.fit}  # fmt: skip

    @staticmethod
    def load(path: str | Path = DEFAULT_MODEL) -> InstructionModel:
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"instruction model {path} not found; fit one with `python -m mcuformer.nas.instr_model fit`"
            )
        data = json.loads(path.read_text())
        if list(data.get("features", [])) != list(FEATURES):
            raise UserError(f"instruction model {path} has other features than {FEATURES}; refit it")
        return InstructionModel(data["coef"], data["board"], data["core"], data["dsp"], data["fit"])


def fit(pairs: list[tuple[ArchConfig, float]], board: str, core: str, dsp: bool) -> InstructionModel:
    """Non-negative least squares of measured instructions on the features (columns scaled to unit
    max for conditioning); reports the in-sample and leave-one-out relative errors."""
    from scipy.optimize import nnls

    assert len(pairs) >= len(FEATURES), f"need at least {len(FEATURES)} profiles, got {len(pairs)}"
    x = np.array([[features(a)[k] for k in FEATURES] for a, _ in pairs])  # (N, F)
    y = np.array([float(v) for _, v in pairs])  # (N,)
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)

    def solve(rows: np.ndarray) -> np.ndarray:
        return nnls(x[rows] / scale, y[rows])[0] / scale

    coef = solve(np.arange(len(y)))
    rel = np.abs(x @ coef - y) / y
    loo = np.array([abs(x[i] @ solve(np.delete(np.arange(len(y)), i)) - y[i]) / y[i] for i in range(len(y))])
    stats = {
        "samples": len(y),
        "mean_abs_rel_err": float(rel.mean()),
        "max_abs_rel_err": float(rel.max()),
        "loo_mean_abs_rel_err": float(loo.mean()),
        "loo_max_abs_rel_err": float(loo.max()),
        "instructions_range": [float(y.min()), float(y.max())],
    }
    return InstructionModel(dict(zip(FEATURES, map(float, coef), strict=True)), board, core, dsp, stats)


# ---------------------------------------------------------------------------------------------- profiling
def have_qemu() -> bool:
    return shutil.which("qemu-system-arm") is not None and shutil.which("arm-none-eabi-gcc") is not None


def profile_arch(arch: ArchConfig, board: str, workdir: Path, seed: int = 0) -> int:
    """Export ``arch`` with random weights (instruction counts do not depend on the values beyond a
    few data-dependent branches) and count its instructions per inference in QEMU."""
    import torch

    from mcuformer.model import ViT
    from mcuformer.workflow import run_emulate, run_export

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


def profile_space(space: SearchSpace, n: int, board: str, seed: int, log=print) -> list[dict[str, Any]]:
    from mcuformer.nas.supernet import sample_arch

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
    p = argparse.ArgumentParser(prog="python -m mcuformer.nas.instr_model", description=__doc__.splitlines()[0])
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

    from mcuformer.boards import get_board

    if args.cmd == "profile":
        if not have_qemu():
            print("qemu-system-arm / arm-none-eabi-gcc not found: nothing profiled (install them with make setup)")
            return 0
        from mcuformer.nas.space_evolution import RANK_GRID

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

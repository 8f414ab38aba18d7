"""Search-space evolution (MCUFormer): move a (rank ratio, patch size) region of the search space
along the regressed trend of a score that rewards both accuracy and fitting the budget.

Axes. ``rank``: the index of a level in ``levels`` = the space's non-zero rank ratios, sorted, then
dense (ratio 1). ``patch``: the index in the sorted patch sizes. A region centred at (i, j) is the
subspace whose attention and MLP rank ratios are levels i-1, i, i+1 (those that exist), whose patch
size is patch_sizes[j] and whose input resolutions are the space's sizes divisible by it; every
other choice (embed dim, depth, heads, MLP ratio) is the full space's.

Score of a region: sample ``samples`` subnets from it (a generator seeded by the seed and the region,
so a score does not depend on when it is computed), cost each one exactly (the same cost function
and budgets as the evolutionary search), evaluate the ones that fit with the supernet's inherited
weights (val top-1), and take

    F = fraction of the samples that fit,  A = mean accuracy of the best ``top_fraction`` of those
    that fit (0 if none fits),  score = A * F.

Move rule, per iteration: score the centre and its axis neighbours (i +- 1, j), (i, j +- 1) not yet
scored; fit score ~ b + g_rank * i + g_patch * j by least squares to every scored region at
Chebyshev distance <= 1 of the centre (an axis with one value among them gets slope 0); on each
axis step one index in the direction of the slope if |slope| >= ``min_gain`` and the target exists.
Stop when nothing moves, the new centre was a centre before, or after ``iterations`` moves. The
result is the best-scoring region scored (ties: the first scored). The trajectory (every region's
numbers, every fit, every move) is saved as JSON and drawn as a PNG (mcuformer.plots).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from mcuformer.arch import ArchConfig, SearchSpace
from mcuformer.data import Dataset
from mcuformer.nas.supernet import Supernet, sample_arch
from mcuformer.nas.train import deterministic, evaluate
from mcuformer.spaces import RANK_GRID  # noqa: F401  (the rank axis; re-exported here)

# The rank ratios the supernet is trained over when the space evolves: a grid fine enough for a
# region (three adjacent levels) to be a real subspace. 0.0 = dense, the top level.

Fits = Callable[[ArchConfig], bool]
Region = tuple[int, int]  # (rank level index, patch size index)


@dataclass
class EvolutionConfig:
    iterations: int = 6  # at most this many moves
    samples: int = 24  # subnets sampled per region
    top_fraction: float = 0.5  # A = mean accuracy of this best fraction of the fitting samples
    min_gain: float = 0.005  # an axis moves only if the fitted slope is at least this (score per index)
    start_rank: int = -1  # initial rank level index; -1 = the middle level
    start_patch: int = -1  # initial patch index; -1 = the largest patch (fewest tokens)
    seed: int = 0
    threads: int = 1  # torch threads (0 = all cores); see TrainConfig.threads

    def __post_init__(self) -> None:
        assert self.samples >= 1 and 0.0 < self.top_fraction <= 1.0 and self.iterations >= 0, self


def rank_levels(space: SearchSpace) -> list[float]:
    """The rank axis: non-zero ratios ascending, then 1.0 for dense (if the space allows dense)."""
    levels = sorted(r for r in set(space.rank_ratios) if r > 0)
    return levels + ([1.0] if 0.0 in space.rank_ratios else [])


def region_space(space: SearchSpace, region: Region) -> SearchSpace | None:
    """The subspace of a region, or None when no image size is divisible by its patch size."""
    levels, patches = rank_levels(space), sorted(space.patch_sizes)
    i, j = region
    patch = patches[j]
    sizes = tuple(s for s in space.image_sizes if s % patch == 0)
    if not sizes:
        return None
    ratios = tuple(0.0 if r == 1.0 else r for r in levels[max(0, i - 1) : i + 2])
    return replace(space, rank_ratios=ratios, patch_sizes=(patch,), image_sizes=sizes)


def describe(space: SearchSpace, region: Region) -> dict[str, Any]:
    sub = region_space(space, region)
    assert sub is not None
    return {"rank_index": region[0], "patch_index": region[1], "rank_ratios": list(sub.rank_ratios),
            "patch_size": sub.patch_sizes[0], "image_sizes": list(sub.image_sizes)}  # fmt: skip


def fit_trend(points: list[tuple[Region, float]]) -> tuple[float, float, float]:
    """Least-squares plane score ~ b + g_rank * i + g_patch * j; an axis without spread gets slope 0."""
    x = np.array([[1.0, r[0], r[1]] for r, _ in points])
    y = np.array([s for _, s in points])
    keep = [0] + [k for k in (1, 2) if np.ptp(x[:, k]) > 0]
    coef = np.zeros(3)
    coef[keep] = np.linalg.lstsq(x[:, keep], y, rcond=None)[0]
    return float(coef[0]), float(coef[1]), float(coef[2])


def evolve_space(
    space: SearchSpace,
    supernet: Supernet,
    data: Dataset,
    fits: Fits,
    cfg: EvolutionConfig,
    log: Callable[[str], None] = print,
) -> tuple[SearchSpace, dict[str, Any]]:
    """Returns the chosen region's subspace and the trajectory (JSON-able)."""
    levels, patches = rank_levels(space), sorted(space.patch_sizes)
    valid = {(i, j) for i in range(len(levels)) for j in range(len(patches)) if region_space(space, (i, j))}
    assert valid, "no region of the space has an image size divisible by its patch size"
    centre = (
        cfg.start_rank if cfg.start_rank >= 0 else (len(levels) - 1) // 2,
        cfg.start_patch if cfg.start_patch >= 0 else len(patches) - 1,
    )
    if centre not in valid:
        centre = min(valid, key=lambda r: (abs(r[0] - centre[0]) + abs(r[1] - centre[1]), r))
    scored: dict[Region, dict[str, Any]] = {}
    start = time.time()

    def score(region: Region) -> dict[str, Any]:
        if region not in scored:
            sub = region_space(space, region)
            assert sub is not None
            rng = random.Random(f"space-evolution-{cfg.seed}-{region[0]}-{region[1]}")
            archs = [sample_arch(sub, rng) for _ in range(cfg.samples)]
            feasible = [a for a in archs if fits(a)]
            accs = sorted((evaluate(lambda x, a=a: supernet(x, a), data, "val") for a in feasible), reverse=True)
            top = accs[: max(1, math.ceil(cfg.top_fraction * len(accs)))] if accs else []
            fit_fraction, acc = len(feasible) / len(archs), (sum(top) / len(top) if top else 0.0)
            scored[region] = describe(space, region) | {
                "samples": len(archs),
                "fit": len(feasible),
                "fit_fraction": fit_fraction,
                "acc_top": acc,
                "score": acc * fit_fraction,
                "order": len(scored),
            }
        return scored[region]

    iterations: list[dict[str, Any]] = []
    centres = [centre]
    with deterministic(cfg.seed, cfg.threads), torch.no_grad():
        supernet.eval()
        for it in range(cfg.iterations + 1):
            t0 = time.time()
            i, j = centre
            for region in [centre, (i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)]:
                if region in valid:
                    score(region)
            local = [(r, s["score"]) for r, s in scored.items() if max(abs(r[0] - i), abs(r[1] - j)) <= 1]
            b, g_rank, g_patch = fit_trend(local)
            move = [0, 0]
            for axis, slope in ((0, g_rank), (1, g_patch)):
                step = int(math.copysign(1, slope)) if abs(slope) >= cfg.min_gain else 0
                target = (i + step, j) if axis == 0 else (i, j + step)
                if step and target in valid:
                    move[axis] = step
            new = (i + move[0], j + move[1])
            if new not in valid:  # a diagonal move into a hole: keep the rank move only
                new = (i + move[0], j)
            stop = "converged" if new == centre else "cycle" if new in centres else ""
            stop = stop or ("iterations" if it == cfg.iterations else "")
            c = scored[centre]
            iterations.append(
                {
                    "iteration": it,
                    "centre": describe(space, centre),
                    "centre_score": c["score"],
                    "fit": {"intercept": b, "slope_rank": g_rank, "slope_patch": g_patch, "points": len(local)},
                    "move": [new[0] - i, new[1] - j],
                    "stop": stop,
                    "seconds": time.time() - t0,
                }
            )
            log(
                f"space {it:2d} | ranks {c['rank_ratios']} patch {c['patch_size']} | score {c['score']:.3f} "
                f"(acc {c['acc_top']:.3f} x fit {c['fit_fraction']:.2f}) | slope rank {g_rank:+.3f} "
                f"patch {g_patch:+.3f} | {time.time() - t0:.1f}s"
            )
            if stop:
                break
            centre = new
            centres.append(centre)

    best = max(scored, key=lambda r: (scored[r]["score"], -scored[r]["order"]))
    chosen = region_space(space, best)
    assert chosen is not None
    log(
        f"space evolution: region ranks {list(chosen.rank_ratios)} patch {chosen.patch_sizes[0]} "
        f"(score {scored[best]['score']:.3f}, {len(scored)} regions scored, {time.time() - start:.1f}s)"
    )
    trajectory = {
        "config": asdict(cfg),
        "rank_levels": levels,
        "patch_sizes": patches,
        "regions": sorted(scored.values(), key=lambda s: s["order"]),
        "iterations": iterations,
        "chosen": describe(space, best) | {"score": scored[best]["score"]},
        "seconds": time.time() - start,
    }
    return chosen, trajectory

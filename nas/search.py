"""Evolutionary architecture search under SRAM and flash budgets (AutoFormer's evolution).

Every candidate's exact cost comes from ``cost_fn`` (the compiler's planner in production). A
candidate over a budget is rejected without being evaluated; the others get their fitness from
the supernet with inherited weights (validation top-1). Each generation keeps the best
``parents`` seen so far, breeds ``mutations`` + ``crossovers`` new candidates from them and fills
the population up with random ones. A candidate is never evaluated twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from mcuformer.arch import ArchConfig, SearchSpace
from mcuformer.data import Dataset
from mcuformer.errors import UserError
from nas.supernet import (
    LayerChoice,
    Supernet,
    head_choices,
    layer_choices,
    make_arch,
    resolution_choices,
    sample_arch,
    sample_layer,
)
from nas.train import deterministic, evaluate

CostFn = Callable[[ArchConfig], tuple[int, int]]  # arch -> (peak_sram_bytes, flash_bytes)
Feasible = tuple[ArchConfig, float, int, int]  # (arch, val accuracy, peak SRAM bytes, flash bytes)


@dataclass
class SearchConfig:
    population: int = 50
    generations: int = 20
    parents: int = 10  # top-k kept and bred from
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.2
    seed: int = 0
    max_tries: int = 2000  # random samples tried for the initial population
    threads: int = 0  # torch threads; 0 = all cores


@dataclass
class SearchResult:
    best_arch: ArchConfig
    best_acc: float
    evaluated: int  # distinct candidates whose cost was computed
    rejected_sram: int  # ... of which over the SRAM budget
    rejected_flash: int  # ... of which over the flash budget (a candidate can be in both)
    history: list[dict[str, Any]]  # per generation
    feasible: list[Feasible]  # every candidate that fits, with its accuracy
    sram_budget: int
    flash_budget: int
    seconds: float = 0.0
    best_cost: tuple[int, int] = field(default=(0, 0))  # (peak SRAM, flash) of best_arch

    def to_json(self) -> dict[str, Any]:
        return {
            "best_arch": self.best_arch.to_json(),
            "best_acc": self.best_acc,
            "best_peak_sram_bytes": self.best_cost[0],
            "best_flash_bytes": self.best_cost[1],
            "evaluated": self.evaluated,
            "rejected_sram": self.rejected_sram,
            "rejected_flash": self.rejected_flash,
            "feasible": len(self.feasible),
            "budget": {"sram_bytes": self.sram_budget, "flash_bytes": self.flash_budget},
            "seconds": self.seconds,
            "history": self.history,
            "pareto": [
                {"arch": a.short(), "accuracy": acc, "peak_sram_bytes": s, "flash_bytes": f}
                for a, acc, s, f in pareto_front(self.feasible)
            ],
        }


def mutate(space: SearchSpace, arch: ArchConfig, prob: float, rng: random.Random) -> ArchConfig:
    """Resample each choice (resolution/patch pair, embed dim, depth, every layer's choices) with ``prob``."""
    image_size, patch_size = arch.image_size, arch.patch_size
    if rng.random() < prob:
        image_size, patch_size = rng.choice(resolution_choices(space))
    e = rng.choice(space.embed_dims) if rng.random() < prob else arch.embed_dim
    depth = rng.choice(space.depths) if rng.random() < prob else arch.depth
    layers = layer_choices(space, arch)[:depth]
    layers += [sample_layer(space, e, rng) for _ in range(depth - len(layers))]  # new layers: random
    out = []
    for layer in layers:
        heads = rng.choice(head_choices(space, e)) if rng.random() < prob or e % layer.heads else layer.heads
        mlp_ratio = rng.choice(space.mlp_ratios) if rng.random() < prob else layer.mlp_ratio
        attn = rng.choice(space.rank_ratios) if rng.random() < prob else layer.attn_rank_ratio
        mlp = rng.choice(space.rank_ratios) if rng.random() < prob else layer.mlp_rank_ratio
        out.append(LayerChoice(heads, mlp_ratio, attn, mlp))
    return make_arch(space, image_size, patch_size, e, out)


def crossover(space: SearchSpace, a: ArchConfig, b: ArchConfig, rng: random.Random) -> ArchConfig:
    """Each choice from either parent; layer i from either parent that has it."""
    image_size, patch_size = rng.choice([(a.image_size, a.patch_size), (b.image_size, b.patch_size)])
    e = rng.choice([a.embed_dim, b.embed_dim])
    depth = rng.choice([a.depth, b.depth])
    la, lb = layer_choices(space, a), layer_choices(space, b)
    layers = [rng.choice(la[i : i + 1] + lb[i : i + 1]) for i in range(depth)]
    layers = [x if e % x.heads == 0 else replace(x, heads=rng.choice(head_choices(space, e))) for x in layers]
    return make_arch(space, image_size, patch_size, e, layers)


def evolution_search(
    space: SearchSpace,
    supernet: Supernet,
    data: Dataset,
    cost_fn: CostFn,
    sram_budget: int,
    flash_budget: int,
    cfg: SearchConfig,
    log: Callable[[str], None] = print,
) -> SearchResult:
    start = time.time()
    rng = random.Random(cfg.seed)
    costs: dict[ArchConfig, tuple[int, int]] = {}  # every candidate whose cost was computed
    accs: dict[ArchConfig, float] = {}  # every feasible candidate, in evaluation order
    rejected = {"sram": 0, "flash": 0}

    def fits(arch: ArchConfig) -> bool:
        if arch not in costs:
            sram, flash = (int(v) for v in cost_fn(arch))
            costs[arch] = (sram, flash)
            rejected["sram"] += sram > sram_budget
            rejected["flash"] += flash > flash_budget
        sram, flash = costs[arch]
        return sram <= sram_budget and flash <= flash_budget

    def fitness(arch: ArchConfig) -> float:
        if arch not in accs:
            accs[arch] = evaluate(lambda x: supernet(x, arch), data, "val")
        return accs[arch]

    def new_candidates(n: int, make: Callable[[], ArchConfig], tries: int) -> list[ArchConfig]:
        """Up to n candidates never seen before that fit both budgets (evaluated)."""
        out: list[ArchConfig] = []
        for _ in range(tries):
            if len(out) >= n:
                break
            arch = make()
            if arch not in costs and fits(arch):
                fitness(arch)
                out.append(arch)
        return out

    def top(k: int) -> list[ArchConfig]:  # best k so far; ties keep evaluation order
        return sorted(accs, key=lambda a: -accs[a])[:k]

    def record(generation: int, population: list[ArchConfig], t0: float) -> None:
        best = top(1)[0]
        row = {
            "generation": generation,
            "best_acc": accs[best],
            "best_arch": best.short(),
            "population": len(population),
            "population_mean_acc": sum(accs[a] for a in population) / len(population),
            "evaluated": len(costs),
            "rejected_sram": rejected["sram"],
            "rejected_flash": rejected["flash"],
        }
        history.append(row)
        log(
            f"gen {generation:3d}/{cfg.generations} | best {accs[best]:.3f} {best.short()} | "
            f"population {len(population)} mean {row['population_mean_acc']:.3f} | evaluated {len(costs)} "
            f"rejected sram {rejected['sram']} flash {rejected['flash']} | {time.time() - t0:.1f}s"
        )

    history: list[dict[str, Any]] = []
    with deterministic(cfg.seed, cfg.threads), torch.no_grad():
        supernet.eval()
        t0 = time.time()
        population = new_candidates(cfg.population, lambda: sample_arch(space, rng), cfg.max_tries)
        if not population:
            smallest = space.smallest()
            if not fits(smallest):
                sram, flash = costs[smallest]
                raise UserError(
                    f"budget too small for the smallest subnet ({smallest.short()}): it needs {sram} B SRAM and "
                    f"{flash} B flash, the budget is {sram_budget} B SRAM and {flash_budget} B flash; "
                    f"choose a bigger board or a smaller search space"
                )
            log(f"no random subnet fits in {cfg.max_tries} tries; starting from the smallest")
            fitness(smallest)
            population = [smallest]
        record(0, population, t0)

        for generation in range(1, cfg.generations + 1):
            t0 = time.time()
            parents = top(cfg.parents)

            def mutant(ps: list[ArchConfig] = parents) -> ArchConfig:
                return mutate(space, rng.choice(ps), cfg.mutation_prob, rng)

            def cross(ps: list[ArchConfig] = parents) -> ArchConfig:
                return crossover(space, *rng.sample(ps, 2), rng)

            children = new_candidates(cfg.mutations, mutant, 10 * cfg.mutations)
            if len(parents) >= 2:
                children += new_candidates(cfg.crossovers, cross, 10 * cfg.crossovers)
            fill = cfg.population - len(children)
            children += new_candidates(fill, lambda: sample_arch(space, rng), 10 * max(fill, 0))
            population = children or population
            record(generation, population, t0)

    best = top(1)[0]
    return SearchResult(
        best_arch=best,
        best_acc=accs[best],
        evaluated=len(costs),
        rejected_sram=rejected["sram"],
        rejected_flash=rejected["flash"],
        history=history,
        feasible=[(a, acc, *costs[a]) for a, acc in accs.items()],
        sram_budget=sram_budget,
        flash_budget=flash_budget,
        seconds=time.time() - start,
        best_cost=costs[best],
    )


def pareto_front(points: list[Feasible]) -> list[Feasible]:
    """The points no other point beats on both accuracy (higher) and peak SRAM (lower), by SRAM."""
    front: list[Feasible] = []
    for p in sorted(points, key=lambda p: (p[2], -p[1])):
        if not front or p[1] > front[-1][1]:
            front.append(p)
    return front


def plot_pareto(result: SearchResult, path: str) -> None:
    """Accuracy vs peak SRAM of every feasible candidate, the Pareto front, the winner and the budget."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed (Agg)

    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.subplots()
    kib = 1 / 1024
    ax.scatter([p[2] * kib for p in result.feasible], [p[1] for p in result.feasible], s=12, c="0.6", label="feasible")
    front = pareto_front(result.feasible)
    ax.step([p[2] * kib for p in front], [p[1] for p in front], where="post", c="tab:red", label="Pareto front")
    ax.scatter([result.best_cost[0] * kib], [result.best_acc], marker="*", s=160, c="tab:red", label="chosen", zorder=3)
    ax.axvline(result.sram_budget * kib, ls="--", c="k", lw=1, label="SRAM budget")
    ax.set_xlabel("peak SRAM (KiB)")
    ax.set_ylabel("val top-1 (supernet weights)")
    ax.set_title(f"{len(result.feasible)} feasible of {result.evaluated} candidates")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)

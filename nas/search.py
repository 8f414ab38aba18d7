"""Evolutionary architecture search under SRAM and flash budgets (AutoFormer's evolution).

Every candidate's exact cost comes from ``cost_fn`` (the compiler's planner in production), and,
with an instruction budget, its predicted instructions from ``instr_fn`` (``nas.instr_model``). A
candidate over a budget is rejected without being evaluated; the others get their fitness from
the supernet with inherited weights (validation top-1). Each generation keeps the best
``parents`` seen so far, breeds ``mutations`` + ``crossovers`` new candidates from them and fills
the population up with random ones. A candidate is never evaluated twice. The whole state is saved
(JSON, atomically) after every generation, so a killed search resumes to the same result.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from mcuformer.arch import ArchConfig, SearchSpace, save_json, space_patch, stem_width
from mcuformer.budget import Budget
from mcuformer.data import Dataset
from mcuformer.errors import UserError
from mcuformer.nas.supernet import (
    LayerChoice,
    Supernet,
    head_choices,
    layer_choices,
    make_arch,
    resolution_choices,
    sample_arch,
    sample_bits,
    sample_layer,
    sample_stem,
)
from mcuformer.nas.train import deterministic, evaluate

CostFn = Callable[[ArchConfig], tuple[int, int]]  # arch -> (peak_sram_bytes, flash_bytes)
InstrFn = Callable[[ArchConfig], float]  # arch -> predicted instructions per inference
Feasible = tuple[ArchConfig, float, int, int]  # (arch, val accuracy, peak SRAM bytes, flash bytes)
STATE_VERSION = 1


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
    threads: int = 1  # torch threads (0 = all cores); see TrainConfig.threads

    def __post_init__(self) -> None:
        if min(self.population, self.parents) < 1 or min(self.generations, self.mutations, self.crossovers) < 0:
            raise UserError(
                f"search: population and parents must be >= 1, generations/mutations/crossovers >= 0 (got {self})"
            )


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
    rejected_instr: int = 0  # fits SRAM and flash but over the instruction budget
    instr_budget: float | None = None
    instructions: dict[ArchConfig, float] = field(default_factory=dict)  # predicted, for feasible candidates
    cost_seconds: float = 0.0  # time spent computing costs (planner + instruction model)
    costs: dict[ArchConfig, tuple[int, int, float | None]] = field(default_factory=dict)  # every costed candidate

    def point(self, p: Feasible) -> dict[str, Any]:
        a, acc, sram, flash = p
        return {
            "arch": a.to_json(),
            "summary": a.short(),
            "accuracy": acc,
            "peak_sram_bytes": sram,
            "flash_bytes": flash,
            "instructions": self.instructions.get(a),
        }

    def pareto_json(self) -> dict[str, Any]:
        """Accuracy (supernet weights, val) vs peak SRAM: the front and every feasible candidate."""
        return {
            "budget": {
                "sram_bytes": self.sram_budget,
                "flash_bytes": self.flash_budget,
                "instructions": self.instr_budget,
            },
            "best": self.point((self.best_arch, self.best_acc, *self.best_cost)),
            "front": [self.point(p) for p in pareto_front(self.feasible)],
            "feasible": [self.point(p) for p in self.feasible],
        }


def mutate(space: SearchSpace, arch: ArchConfig, prob: float, rng: random.Random) -> ArchConfig:
    """Resample each choice (resolution/patch pair, embed dim, depth, every layer's choices) with ``prob``."""
    image_size, patch_size, stem = arch.image_size, space_patch(arch), stem_width(arch)
    if rng.random() < prob:
        image_size, patch_size = rng.choice(resolution_choices(space))
    if space.stem_channels and (rng.random() < prob or stem not in space.stem_choices(patch_size)):
        stem = sample_stem(space, patch_size, rng)  # no draw without stem choices: as before
    e = rng.choice(space.embed_dims) if rng.random() < prob else arch.embed_dim
    depth = rng.choice(space.depths) if rng.random() < prob else arch.depth
    layers = layer_choices(space, arch)[:depth]
    layers += [sample_layer(space, e, rng, i) for i in range(len(layers), depth)]  # new layers: random
    out = []
    for i, layer in enumerate(layers):
        heads = rng.choice(head_choices(space, e)) if rng.random() < prob or e % layer.heads else layer.heads
        mlp_ratio = rng.choice(space.mlp_ratios) if rng.random() < prob else layer.mlp_ratio
        attn = rng.choice(space.rank_ratios) if rng.random() < prob else layer.attn_rank_ratio
        mlp = rng.choice(space.rank_ratios) if rng.random() < prob else layer.mlp_rank_ratio
        redraw = len(space.bits_choices(i)) > 1 and rng.random() < prob  # no draw without an int4 choice
        bits = sample_bits(space, i, rng) if redraw else layer.weight_bits
        out.append(LayerChoice(heads, mlp_ratio, attn, mlp, bits))
    return make_arch(space, image_size, patch_size, e, out, stem)


def crossover(space: SearchSpace, a: ArchConfig, b: ArchConfig, rng: random.Random) -> ArchConfig:
    """Each choice from either parent; layer i from either parent that has it."""
    image_size, patch_size, stem = rng.choice(
        [(a.image_size, space_patch(a), stem_width(a)), (b.image_size, space_patch(b), stem_width(b))]
    )
    e = rng.choice([a.embed_dim, b.embed_dim])
    depth = rng.choice([a.depth, b.depth])
    la, lb = layer_choices(space, a), layer_choices(space, b)
    layers = [rng.choice(la[i : i + 1] + lb[i : i + 1]) for i in range(depth)]
    layers = [x if e % x.heads == 0 else replace(x, heads=rng.choice(head_choices(space, e))) for x in layers]
    return make_arch(space, image_size, patch_size, e, layers, stem)


@dataclass
class _State:
    """Everything the search needs to continue after a generation (saved as JSON, atomically)."""

    generation: int = -1  # last completed generation (0 = the initial population)
    costs: dict[ArchConfig, tuple[int, int, float | None]] = field(default_factory=dict)  # every costed candidate
    accs: dict[ArchConfig, float] = field(default_factory=dict)  # every feasible one, in evaluation order
    rejected: dict[str, int] = field(default_factory=lambda: {"sram": 0, "flash": 0, "instr": 0})
    history: list[dict[str, Any]] = field(default_factory=list)
    population: list[ArchConfig] = field(default_factory=list)
    cost_seconds: float = 0.0

    def to_json(self, rng: random.Random, fingerprint: dict[str, Any]) -> dict[str, Any]:
        index = {a: i for i, a in enumerate(self.costs)}
        return {
            "version": STATE_VERSION,
            "fingerprint": fingerprint,
            "generation": self.generation,
            "rng": rng.getstate(),
            "costs": [[a.to_json(), *c] for a, c in self.costs.items()],
            "accs": [[index[a], acc] for a, acc in self.accs.items()],
            "rejected": self.rejected,
            "history": self.history,
            "population": [index[a] for a in self.population],
            "cost_seconds": self.cost_seconds,
        }

    @staticmethod
    def from_json(data: dict[str, Any], rng: random.Random) -> _State:
        archs = [ArchConfig.from_json(row[0]) for row in data["costs"]]
        version, internal, gauss = data["rng"]
        rng.setstate((version, tuple(internal), gauss))
        return _State(
            generation=data["generation"],
            costs={a: (row[1], row[2], row[3]) for a, row in zip(archs, data["costs"], strict=True)},
            accs={archs[i]: acc for i, acc in data["accs"]},
            rejected=data["rejected"],
            history=data["history"],
            population=[archs[i] for i in data["population"]],
            cost_seconds=data["cost_seconds"],
        )


def evolution_search(
    space: SearchSpace,
    supernet: Supernet,
    data: Dataset,
    cost_fn: CostFn,
    sram_budget: int,
    flash_budget: int,
    cfg: SearchConfig,
    log: Callable[[str], None] = print,
    instr_fn: InstrFn | None = None,
    instr_budget: float | None = None,
    state_path: str | None = None,
    resume: bool = False,
    proxy_fitness: Callable[[ArchConfig], float] | None = None,
) -> SearchResult:
    """Evolution under exact SRAM/flash budgets (and optionally a predicted instruction budget:
    ``instr_fn`` is only asked about candidates that fit the memory budgets). With ``state_path``
    the state is written atomically after every generation; ``resume`` continues from it and ends
    with the same result as an uninterrupted search. ``proxy_fitness`` replaces the supernet's
    validation accuracy (e.g. parameter count for a search with an untrained supernet)."""
    assert (instr_fn is None) == (instr_budget is None), "instr_fn and instr_budget go together"
    start = time.time()
    rng = random.Random(cfg.seed)
    fingerprint = {
        "config": {k: v for k, v in asdict(cfg).items() if k != "threads"},
        "budget": [sram_budget, flash_budget, instr_budget],
        "space": space.to_json(),
    }
    st = _State()
    if resume and state_path and os.path.exists(state_path):
        with open(state_path) as fh:
            saved = json.load(fh)
        if saved.get("version") != STATE_VERSION or saved.get("fingerprint") != json.loads(json.dumps(fingerprint)):
            raise UserError(f"search state {state_path} was written with other settings; start a new run")
        st = _State.from_json(saved, rng)
        log(f"resumed search from {state_path} after generation {st.generation}")

    budget = Budget(sram_budget, flash_budget)

    def fits(arch: ArchConfig) -> bool:
        if arch not in st.costs:
            t0 = time.perf_counter()
            sram, flash = (int(v) for v in cost_fn(arch))
            over = budget.over(sram, flash)
            instr = float(instr_fn(arch)) if instr_fn is not None and not over else None
            st.cost_seconds += time.perf_counter() - t0
            st.costs[arch] = (sram, flash, instr)
            for resource, _, _ in over:
                st.rejected[resource] += 1
            st.rejected["instr"] += instr is not None and instr_budget is not None and instr > instr_budget
        sram, flash, instr = st.costs[arch]
        return budget.fits(sram, flash) and (instr_budget is None or instr <= instr_budget)

    def fitness(arch: ArchConfig) -> float:
        if arch not in st.accs:
            if proxy_fitness is not None:
                st.accs[arch] = float(proxy_fitness(arch))
            else:
                st.accs[arch] = evaluate(lambda x: supernet(x, arch), data, "val")
        return st.accs[arch]

    def new_candidates(n: int, make: Callable[[], ArchConfig], tries: int) -> list[ArchConfig]:
        """Up to n candidates never seen before that fit every budget (evaluated)."""
        out: list[ArchConfig] = []
        for _ in range(tries):
            if len(out) >= n:
                break
            arch = make()
            if arch not in st.costs and fits(arch):
                fitness(arch)
                out.append(arch)
        return out

    def top(k: int) -> list[ArchConfig]:  # best k so far; ties keep evaluation order
        return sorted(st.accs, key=lambda a: -st.accs[a])[:k]

    def end_generation(generation: int, population: list[ArchConfig], t0: float) -> None:
        best = top(1)[0]
        rej = st.rejected
        row = {
            "generation": generation,
            "best_acc": st.accs[best],
            "best_arch": best.short(),
            "population": len(population),
            "population_mean_acc": sum(st.accs[a] for a in population) / len(population),
            "evaluated": len(st.costs),
            "rejected_sram": rej["sram"],
            "rejected_flash": rej["flash"],
            "rejected_instr": rej["instr"],
        }
        st.generation, st.population = generation, population
        st.history.append(row)
        if state_path:
            save_json(state_path, st.to_json(rng, fingerprint))
        log(
            f"gen {generation:3d}/{cfg.generations} | best {st.accs[best]:.3f} {best.short()} | "
            f"population {len(population)} mean {row['population_mean_acc']:.3f} | evaluated {len(st.costs)} "
            f"rejected sram {rej['sram']} flash {rej['flash']} instr {rej['instr']} | {time.time() - t0:.1f}s"
        )

    with deterministic(cfg.seed, cfg.threads), torch.no_grad():
        supernet.eval()
        if st.generation < 0:
            t0 = time.time()
            population = new_candidates(cfg.population, lambda: sample_arch(space, rng), cfg.max_tries)
            if not population:
                population = [start_from_smallest(space, fits, st.costs, sram_budget, flash_budget, instr_budget)]
                log(f"no random subnet fits in {cfg.max_tries} tries; starting from the smallest")
                fitness(population[0])
            end_generation(0, population, t0)

        for generation in range(st.generation + 1, cfg.generations + 1):
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
            end_generation(generation, children or st.population, t0)

    best = top(1)[0]
    return SearchResult(
        best_arch=best,
        best_acc=st.accs[best],
        evaluated=len(st.costs),
        rejected_sram=st.rejected["sram"],
        rejected_flash=st.rejected["flash"],
        history=st.history,
        feasible=[(a, acc, *st.costs[a][:2]) for a, acc in st.accs.items()],
        sram_budget=sram_budget,
        flash_budget=flash_budget,
        seconds=time.time() - start,
        best_cost=st.costs[best][:2],
        rejected_instr=st.rejected["instr"],
        instr_budget=instr_budget,
        instructions={a: st.costs[a][2] for a in st.accs if st.costs[a][2] is not None},
        cost_seconds=st.cost_seconds,
        costs=st.costs,
    )


def start_from_smallest(
    space: SearchSpace,
    fits: Callable[[ArchConfig], bool],
    costs: dict[ArchConfig, tuple[int, int, float | None]],
    sram_budget: int,
    flash_budget: int,
    instr_budget: float | None,
) -> ArchConfig:
    """The smallest subnet when no random one fits; a UserError naming what it needs when it does not."""
    smallest = space.smallest()
    if not fits(smallest):
        sram, flash, instr = costs[smallest]
        need = f"{sram} B SRAM and {flash} B flash"
        have = f"{sram_budget} B SRAM and {flash_budget} B flash"
        if instr is not None and instr_budget is not None and instr > instr_budget:
            need, have = need + f" and {instr:.0f} instructions", have + f" and {instr_budget:.0f} instructions"
        raise UserError(
            f"budget too small for the smallest subnet ({smallest.short()}): it needs {need}, the budget is "
            f"{have}; choose a bigger board or a smaller search space"
        )
    return smallest


def pareto_front(points: list[Feasible], resource: int = 2) -> list[Feasible]:
    """The points no other point beats on both accuracy (higher) and a resource (lower), by that
    resource: ``resource`` 2 = peak SRAM, 3 = flash (indices into ``Feasible``)."""
    front: list[Feasible] = []
    for p in sorted(points, key=lambda p: (p[resource], -p[1])):
        if not front or p[1] > front[-1][1]:
            front.append(p)
    return front

"""Exact deployment cost of an architecture: the same frontend, fusion and planner as `export`.

The search calls ``estimate`` for every candidate, so the search and the exported C can never
disagree about what fits. Everything is computed from shapes (no weights needed):
- arena: the planner's arena (exact: the C declares exactly this many bytes);
- flash: every constant array the emitter writes (exact, checked against the emitted arrays in
  tests) plus the code and parameter structs (a per-core constant measured from built ELFs,
  see docs/memory.md);
- peak SRAM: arena + the stack reserved in the linker script + static data of the runtime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from math import prod

from mcuformer.arch import ArchConfig
from mcuformer.boards import Board
from mcuformer.codegen import ops as op_defs
from mcuformer.codegen.frontend import build_graph
from mcuformer.codegen.ir import Graph, Node, Op, Tensor, has_int4_weights
from mcuformer.codegen.ops.fused_attention import AttentionDims
from mcuformer.codegen.passes.choose_schedules import to_per_head, with_tile
from mcuformer.codegen.passes.plan import ALIGN
from mcuformer.codegen.pipeline import run_pipeline

# Reserved by the linker script; measured in QEMU (stack paint): 608 B for the demo on the M4, 864 B for
# vit-96-rgb with the Helium kernels on the M55; emulate fails on an overflow.
STACK_RESERVE_BYTES = 1024
STATIC_SRAM_BYTES = 64  # runtime/platform statics besides the arena (counters, stack paint state)
# `emulate --profile` builds keep one uint64 counter per operator (runtime_c/platform/main.c): reserved in
# every plan, so that a model whose token tiles fill the budget still links for profiling.
PROFILE_BYTES_PER_OP = 8
# Flash besides the constant arrays: code, vectors and the patch-embedding / head param structs, plus
# the param structs of each transformer block (attention + MLP). Measured with the token-tiled DSP
# kernels (make bench, M4/M7, -O2): 16,204 B for 2 blocks, 22,852 B for 12, i.e. about 14.9 KiB +
# 665 B per block (the portable kernels are smaller). Since mcuf_linear_params has weight_format (int4
# weights), each linear struct is 4 B larger: +36 B per block, +8 B in all, inside these margins.
# Issue 10's 4-token assembly tile (runtime_c/src/dsp/linear.c) added 832 / 824 / 836 B (M4 / M7 / M33)
# to tests/test_int4_compiler.py's int8 model: measured 41,872 / 41,892 / 41,880 B (was 41,040 /
# 41,068 / 41,044 B against 41,080 B predicted), so +1 KiB: 42,104 B predicted, 212 B over the M7's.
CODE_FLASH_BYTES = 17 * 1024
BLOCK_FLASH_BYTES = 768
# A convolutional stem adds runtime/src/conv2d.c (808-880 B of code at -O2 for Cortex-M0+/M4/M7/M33,
# arm-none-eabi-gcc, measured with arm-none-eabi-size; not linked without a stem: --gc-sections) and,
# per layer, its mcuf_conv2d_params struct (56 B) and call.
STEM_CODE_FLASH_BYTES = 1024
# int4 weights (ArchConfig.weight_bits) link the int4 row kernel and the dispatch to it (MCUF_WITH_S4W,
# mcuf_config.h; not linked for int8-only models): measured 972-1000 B of code at -O2 (M4/M7 DSP
# kernels, M55 image; the model of tests/test_int4_compiler.py, flash of its int4 export minus that
# of its int8 export plus the weight bytes int4 saves).
S4W_CODE_FLASH_BYTES = 1152
STEM_LAYER_FLASH_BYTES = 96
NUM_TEST_INPUTS = 4  # test images embedded in flash by `export`


@dataclass(frozen=True)
class Cost:
    arena_bytes: int
    naive_arena_bytes: int
    lower_bound_bytes: int
    peak_sram_bytes: int
    weight_bytes: int  # all constant arrays of the model (weights, biases, multipliers, tables)
    flash_bytes: int

    def fits(self, board: Board) -> tuple[bool, bool]:
        """(fits SRAM, fits flash)."""
        return self.peak_sram_bytes <= board.sram_bytes, self.flash_bytes <= board.flash_bytes


def _primitives(graph: Graph) -> list[Node]:
    """The primitive nodes of a primitive or fused graph (a fused node's body in its place)."""
    return [node for top in graph.nodes for node in (top.body or (top,))]


def constant_bytes(graph: Graph) -> int:
    """Bytes of every constant array the emitter writes for this (primitive or fused) graph: each
    primitive node's parameter arrays (codegen.ops.constant_bytes)."""
    return sum(op_defs.constant_bytes(node, graph) for node in _primitives(graph))


def flash_of_graph(graph: Graph, test_inputs: int = NUM_TEST_INPUTS) -> tuple[int, int]:
    """(constant array bytes, flash bytes) of a primitive or fused graph, planned or not: flash does not
    depend on fusion, schedules or the plan (the same primitive nodes write the same arrays)."""
    weights = constant_bytes(graph)
    image = graph.tensors[graph.inputs[0]]
    image_bytes = image.shape[0] * image.shape[1] * image.shape[2]
    prims = _primitives(graph)
    blocks = sum(1 for node in prims if node.op == Op.GELU)  # one per transformer block (its MLP)
    stem = sum(1 for node in prims if node.op == Op.CONV2D)
    flash = weights + test_inputs * image_bytes + CODE_FLASH_BYTES + blocks * BLOCK_FLASH_BYTES
    if stem:
        flash += STEM_CODE_FLASH_BYTES + stem * STEM_LAYER_FLASH_BYTES
    if has_int4_weights(graph):
        flash += S4W_CODE_FLASH_BYTES
    return weights, flash


def cost_of_graph(graph: Graph, test_inputs: int = NUM_TEST_INPUTS) -> Cost:
    """Cost of a graph that went through the pipeline (has a plan)."""
    plan = graph.planned()
    weights, flash = flash_of_graph(graph, test_inputs)
    return Cost(
        arena_bytes=plan.arena_bytes,
        naive_arena_bytes=plan.naive_arena_bytes,
        lower_bound_bytes=plan.lower_bound_bytes,
        peak_sram_bytes=plan.arena_bytes + STACK_RESERVE_BYTES + static_sram_bytes(len(graph.nodes)),
        weight_bytes=weights,
        flash_bytes=flash,
    )


def fused_ops(arch: ArchConfig) -> int:
    """Operators of the fused graph: patch embedding, attention and MLP per block, pool + head."""
    return 2 * arch.depth + 2


def static_sram_bytes(ops: int) -> int:
    """SRAM besides the arena and the stack for a model of `ops` operators (the profile counters included)."""
    return STATIC_SRAM_BYTES + PROFILE_BYTES_PER_OP * ops


def arena_budget(sram_bytes: int | None, arch: ArchConfig) -> int | None:
    """Arena bytes left by a board's (or budget's) SRAM after the stack reserve and statics."""
    return None if sram_bytes is None else sram_bytes - STACK_RESERVE_BYTES - static_sram_bytes(fused_ops(arch))


def planned_graph(
    arch: ArchConfig, sram_bytes: int | None = None, naive: bool = True, graph: Graph | None = None
) -> Graph:
    """The shapes-only graph after the pipeline (fused, scheduled for the budget, planned). Without
    ``naive`` the naive op-by-op figure is skipped (reported as 0): the search needs only the arena.
    ``graph``: ``build_graph(arch)`` if the caller already has it."""
    graph = build_graph(arch) if graph is None else graph
    graph = replace(graph, arena_budget=arena_budget(sram_bytes, arch), naive_plan=naive)
    return run_pipeline(graph)


def estimate(arch: ArchConfig, sram_bytes: int | None = None, naive: bool = True) -> Cost:
    """Exact cost of ``arch``; with ``sram_bytes`` the planner may pick memory-saving schedules."""
    return cost_of_graph(planned_graph(arch, sram_bytes, naive))


def peak_sram_lower_bound(graph: Graph) -> int:
    """A lower bound on the peak SRAM of a planned shapes-only graph's architecture under ANY choice of
    attention schedules and MLP token tiles (``choose_schedules``), so that the search can reject a candidate without
    searching schedules. A schedule changes only what its attention block keeps during its own step
    (workspace and scratch); so at every step at least the other live buffers plus the smallest
    schedule's own buffers are alive, and an arena holds every buffer alive at a step."""

    def own_bytes(node: Node, tensors: dict[str, Tensor]) -> int:  # int8 sizes, as the planner counts them
        sizes = [prod(tensors[t].shape) for t in node.workspace] + [node.scratch_bytes]
        return sum((n + ALIGN - 1) // ALIGN * ALIGN for n in sizes if n)

    plan = graph.planned()
    worst = 0
    for step, node in enumerate(graph.nodes):
        live = sum(b.size for b in plan.buffers if b.first <= step <= b.last)
        heads = node.dims.heads if isinstance(node.dims, AttentionDims) else 1
        mine = own_bytes(node, graph.tensors)
        least = mine
        if node.tile > 1:  # a tile of 1 has the least scratch of its schedule
            least = min(least, own_bytes(with_tile(node, graph, 1), graph.tensors))
        if node.op == Op.FUSED_ATTENTION and heads > 1:
            alt, extra = to_per_head(node, graph)
            least = min(least, own_bytes(alt, {**graph.tensors, **extra}))
        live += least - mine
        worst = max(worst, live)
    return worst + STACK_RESERVE_BYTES + static_sram_bytes(len(graph.nodes))


UNPLANNED_SRAM = 0  # CostCache's peak SRAM of a candidate over the flash budget: not planned, not computed


class CostCache:
    """Exact cost from the planner for one SRAM budget, memoised per architecture; counts the
    distinct evaluations and their time (the search's cost evaluations per second).

    Same decisions as ``estimate(arch, sram)``, with fewer plans. The all-heads plan (one plan) comes
    first: ``estimate(arch, sram)`` returns exactly that plan whenever it fits. Over the budget, the
    per-head schedule search (several plans) runs only if ``peak_sram_lower_bound`` (valid for every
    schedule) leaves a chance to fit; when it does not, no schedule fits and the all-heads cost is
    kept. A candidate over ``flash_bytes`` is not planned at all: flash is computed from the primitive
    graph (``flash_of_graph``: it does not depend on fusion, schedules or the plan) and the candidate is
    rejected whatever its plan; its SRAM reads ``UNPLANNED_SRAM`` (0: not computed), so it counts as over
    flash only. So a candidate that fits has exactly ``estimate(arch, sram)``'s cost (without the naive
    op-by-op figure, which the search never reads: 0), and one that does not is over a budget by both
    (tested in tests/test_nas.py)."""

    def __init__(self, sram_bytes: int | None = None, flash_bytes: int | None = None) -> None:
        self.sram_bytes = sram_bytes
        self.flash_bytes = flash_bytes  # a candidate over it is rejected whatever its schedule
        self._cache: dict[ArchConfig, Cost] = {}
        self.evaluations = 0
        self.seconds = 0.0  # wall time
        self.cpu_seconds = 0.0  # this process's CPU time: the rate without other jobs' load

    def cost(self, arch: ArchConfig) -> Cost:
        if arch not in self._cache:
            t0, c0 = time.perf_counter(), time.process_time()
            primitive = build_graph(arch)
            weights, flash = flash_of_graph(primitive)
            if self.flash_bytes is not None and flash > self.flash_bytes:
                cost = Cost(0, 0, 0, UNPLANNED_SRAM, weights, flash)  # rejected whatever the plan: not planned
            else:
                graph = planned_graph(arch, naive=False, graph=primitive)  # all-heads schedules
                cost = cost_of_graph(graph)
                over = self.sram_bytes is not None and cost.peak_sram_bytes > self.sram_bytes
                if over and peak_sram_lower_bound(graph) <= self.sram_bytes:
                    # per-head schedules may fit: estimate(arch, sram, naive=False) on the graph already built
                    cost = cost_of_graph(planned_graph(arch, self.sram_bytes, naive=False, graph=primitive))
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0
            self.evaluations += 1
            self._cache[arch] = cost
        return self._cache[arch]

    def __call__(self, arch: ArchConfig) -> tuple[int, int]:
        cost = self.cost(arch)
        return cost.peak_sram_bytes, cost.flash_bytes

    def costed(self) -> dict[ArchConfig, tuple[int, int]]:
        """Every architecture costed so far -> (peak SRAM, flash)."""
        return {a: (c.peak_sram_bytes, c.flash_bytes) for a, c in self._cache.items()}

    @property
    def per_second(self) -> float:
        return self.evaluations / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.evaluations / self.cpu_seconds if self.cpu_seconds else 0.0

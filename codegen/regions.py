"""Placement of the model's RAM across a board's memory regions (boards/*.json ``sram`` and
``external_ram``: mcuformer.boards.MemoryRegion), after the arena is planned.

Three things take RAM: the arena (one static buffer, the planner's offsets inside it), the stack
(STACK_RESERVE_BYTES) and the other statics (.data/.bss of the runtime and the harness, bounded by
STATIC_SRAM_BYTES). Rules, in order:
  - the statics stay in the board's first (main) region, where the start-up code copies .data and
    zeroes .bss;
  - the stack goes to the board's ``stack_region`` (its vendor's convention; default the main region);
  - the arena goes to the first region with room for it, in this order: tightly coupled memory
    ("tcm": single-cycle, no cache misses; the arena is the data every kernel reads and writes),
    the main region, the other on-chip regions (largest first), then external RAM ("external":
    SDRAM/PSRAM the application must have started before mcuf_model_run).
  - hot scratch: when the whole arena fits no tightly coupled memory but the fused kernels' row
    scratch (``<node>.scratch`` buffers: the score row, the MLP hidden row, the patch vector: the
    bytes every inner loop touches) does, the scratch moves to a buffer of its own in that TCM
    (``split_hot_scratch``: both parts re-placed by the planner's first fit, each proved disjoint)
    and the rest of the arena is placed by the rules above without the TCM.
A region has room for the arena when its size minus what is already placed there (stack, statics)
is at least the arena. When no region has room the arena stays in the main region, so the link
fails there with the overflow (the planner already fitted the arena to the main region's budget).

The linker scripts (boards/templates/cortexm.ld.j2) follow the placement: the arena
(``.bss.mcuf_arena``, the static of model.c, or ``.bss.mcuf_model_arena`` of the library) gets an
output section in its region, the stack is at the top of its region, and every region has its
board size, so an overflow is reported per region at link time. report.json's ``memory_regions``
lists what went where.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mcuformer.boards import Board, MemoryRegion
from mcuformer.codegen.ir import Buffer, MemoryPlan, ScratchSplit
from mcuformer.codegen.lower import lower
from mcuformer.codegen.passes.plan import ALIGN, place_greedy
from mcuformer.errors import UserError

ARENA_INPUT_SECTIONS = (".bss.mcuf_arena", ".bss.mcuf_model_arena")
SCRATCH_SUFFIX = ".scratch"  # the planner's name of a fused node's row scratch buffer


def _replaced(plan: MemoryPlan, buffers: list[Buffer]) -> MemoryPlan:
    placed, size = place_greedy(buffers)
    part = replace(plan, buffers=tuple(placed), arena_bytes=size)
    for buf in placed:  # what verify_plan proves for the whole plan, for each part
        if buf.offset < 0 or buf.offset % ALIGN or buf.offset + buf.size > size:
            raise AssertionError(f"buffer {buf.name} at {buf.offset}+{buf.size} outside {size} or unaligned")
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            if a.size and b.size and a.overlaps_in_time(b) and a.overlaps_in_space(b):
                raise AssertionError(f"buffers {a.name} and {b.name} overlap while both alive")
    return part


def split_hot_scratch(plan: MemoryPlan) -> ScratchSplit:
    """The plan's ``.scratch`` buffers in a plan of their own, the others in another; both placed
    with the planner's first fit. Buffers keep their tensors, so in-place pairs stay shared."""
    scratch = [b for b in plan.buffers if b.name.endswith(SCRATCH_SUFFIX)]
    rest = [b for b in plan.buffers if not b.name.endswith(SCRATCH_SUFFIX)]
    return ScratchSplit(arena=_replaced(plan, rest), scratch=_replaced(plan, scratch))


@dataclass(frozen=True)
class RegionPlacement:
    """Where the arena and the stack live; ``main`` holds .data/.bss (the statics)."""

    main: MemoryRegion
    arena: MemoryRegion
    stack: MemoryRegion
    arena_bytes: int
    stack_bytes: int
    static_bytes: int
    scratch: MemoryRegion | None = None  # the hot row scratch in its own buffer (split_hot_scratch)
    scratch_bytes: int = 0

    @property
    def extra_regions(self) -> list[MemoryRegion]:
        """The regions besides the main one that hold something, in placement order (arena, stack)."""
        used: list[MemoryRegion] = []
        for region in (self.arena, self.scratch, self.stack):
            if region is not None and region.name != self.main.name and region not in used:
                used.append(region)
        return used

    def to_json(self, board: Board) -> list[dict]:
        """report.json ``memory_regions``: every region of the board (the main one at the budget's
        size) and what was placed in it."""
        rows = []
        for region in (self.main, *board.regions[1:]):
            placed = []
            if region.name == self.main.name:
                placed.append({"what": "statics (.data, .bss)", "bytes": self.static_bytes})
            if region.name == self.arena.name:
                placed.append({"what": "arena", "bytes": self.arena_bytes})
            if self.scratch is not None and region.name == self.scratch.name:
                placed.append({"what": "hot scratch (fused kernels' row buffers)", "bytes": self.scratch_bytes})
            if region.name == self.stack.name:
                placed.append({"what": "stack", "bytes": self.stack_bytes})
            rows.append(
                {
                    "name": region.name,
                    "kind": region.kind,
                    "origin": region.origin,
                    "bytes": region.size,
                    "placed": placed,
                    "used_bytes": sum(p["bytes"] for p in placed),
                }
            )
        return rows


def main_region(board: Board) -> MemoryRegion:
    """The region the board's sram_origin/sram_bytes describe (its size is the budget's)."""
    if not board.regions:
        return MemoryRegion("RAM", board.sram_origin, board.sram_bytes)
    first = board.regions[0]
    return MemoryRegion(first.name, board.sram_origin, board.sram_bytes, first.kind)


def _region_by_name(board: Board, name: str) -> MemoryRegion:
    main = main_region(board)
    if not name or name == main.name:
        return main
    for region in board.regions:
        if region.name == name:
            return region
    raise UserError(f"board {board.name}: stack_region '{name}' is not one of its regions")


def place_memory(
    board: Board,
    arena_bytes: int,
    stack_bytes: int,
    static_bytes: int,
    split: tuple[int, int] | None = None,
) -> RegionPlacement:
    """The placement of the rules in the module doc. split: (arena bytes without the row scratch,
    row scratch bytes) of ``split_hot_scratch``, the alternative when the arena fits no TCM."""
    main = main_region(board)
    stack = _region_by_name(board, board.stack_region)
    others = list(board.regions[1:])
    tcm = [r for r in others if r.kind == "tcm"]
    on_chip = sorted((r for r in others if r.kind == "sram"), key=lambda r: -r.size)
    external = [r for r in others if r.kind == "external"]
    candidates = [*tcm, main, *on_chip, *external]

    def room(region: MemoryRegion) -> int:
        taken = (stack_bytes if region.name == stack.name else 0) + (static_bytes if region.name == main.name else 0)
        return region.size - taken

    arena = next((r for r in candidates if room(r) >= arena_bytes), main)
    if split is None or arena.kind == "tcm" or not split[1]:
        return RegionPlacement(main, arena, stack, arena_bytes, stack_bytes, static_bytes)
    rest_bytes, scratch_bytes = split
    scratch = next((r for r in tcm if room(r) >= scratch_bytes), None)
    if scratch is None:
        return RegionPlacement(main, arena, stack, arena_bytes, stack_bytes, static_bytes)
    rest = next((r for r in candidates if r.kind != "tcm" and room(r) >= rest_bytes), main)
    return RegionPlacement(main, rest, stack, rest_bytes, stack_bytes, static_bytes, scratch, scratch_bytes)


def place_compiled(board: Board, compiled, stack_bytes: int, static_bytes: int):
    """(the compiled model, its RegionPlacement) for ``board``; when the placement moves the row
    scratch to its own buffer, the graph carries the ScratchSplit (``scratch_split``) and is
    lowered again, so model.c declares the two buffers. ``compiled``: codegen.compile.CompiledModel."""

    split = split_hot_scratch(compiled.graph.planned())
    placement = place_memory(
        board,
        compiled.lowered.arena_bytes,
        stack_bytes,
        static_bytes,
        (split.arena.arena_bytes, split.scratch.arena_bytes),
    )
    if placement.scratch is None:
        return compiled, placement
    graph = replace(compiled.graph, scratch_split=split)
    return replace(compiled, graph=graph, lowered=lower(graph)), placement

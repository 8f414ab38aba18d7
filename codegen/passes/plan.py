"""Plan pass: static arena offsets from buffer lifetimes (DESIGN section 4).

- A buffer is one IR tensor, or a chain of tensors joined by in-place pairs (token overwriting makes
  the whole residual stream one buffer), or a fused node's workspace/scratch.
- Lifetimes are [first, last] step indices in the schedule, inclusive.
- Placement is greedy first fit by decreasing size (TFLite Micro's GreedyMemoryPlanner rule), so the
  naive figure and ours differ only in what is materialised, not in the allocator.
- naive: the unfused op-by-op graph, every tensor materialised (image, H x T x T scores, T x M MLP
  hidden...), no in-place. lower bound: the most bytes alive at any one step of our schedule.
Streamed inputs (the image, read stripe by stripe) and caller-owned outputs (logits) are not in the
arena of the fused plan; the naive plan materialises them as TFLite Micro would.
"""

from __future__ import annotations

import bisect
from dataclasses import replace

from mcuformer.codegen.ir import Buffer, Graph, MemoryPlan, Node

__all__ = ["ALIGN", "Buffer", "MemoryPlan", "peak_live_bytes", "place_fused", "place_greedy", "plan"]

ALIGN = 4


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def place_greedy(buffers: list[Buffer]) -> tuple[list[Buffer], int]:
    """Greedy first fit, largest first; ties by first use then name (deterministic).

    A buffer goes at the lowest offset where it overlaps (in space) no placed buffer alive at the same
    time, scanning those buffers by increasing offset. ``placed`` is kept sorted by offset, so the scan
    needs no sort per buffer (O(n) per buffer instead of O(n log n)); buffers at equal offsets may scan
    in any order (the gap test and the max are order-independent), so the offsets are those of a
    sort-per-buffer implementation."""
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, buffers[i].first, buffers[i].name))
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last), sorted by offset
    offsets = [0] * len(buffers)
    for i in order:
        buf = buffers[i]
        size, first, last = buf.size, buf.first, buf.last
        offset = 0
        for other_offset, other_end, other_first, other_last in placed:
            if other_first > last or first > other_last:
                continue  # not alive at the same time
            if offset + size <= other_offset:
                break
            if other_end > offset:
                offset = other_end
        offsets[i] = offset
        bisect.insort(placed, (offset, offset + size, first, last))
    result = [Buffer(b.name, b.size, b.first, b.last, b.tensors, off) for b, off in zip(buffers, offsets, strict=True)]
    arena = max((b.offset + b.size for b in result), default=0)
    return sorted(result, key=lambda b: (b.offset, b.first, b.name)), arena


def peak_live_bytes(buffers: list[Buffer], steps: int) -> int:
    return max((sum(b.size for b in buffers if b.first <= s <= b.last) for s in range(steps)), default=0)


def _lifetimes(graph: Graph, nodes: tuple[Node, ...], excluded: set[str], inplace: bool) -> list[Buffer]:
    """Buffers for the tensors touched by ``nodes`` (one step each)."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.get(name, name) != name:
            name = parent[name]
        return name

    if inplace:
        for node in nodes:
            for src, dst in node.inplace:
                parent[find(dst)] = find(src)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    members: dict[str, list[str]] = {}
    for step, node in enumerate(nodes):
        for name in node.inputs + node.outputs + node.workspace:
            if name in excluded:
                continue
            root = find(name)
            first.setdefault(root, step)
            last[root] = step
            if name not in members.setdefault(root, []):
                members[root].append(name)
    end = len(nodes) - 1
    for name in graph.outputs:  # graph outputs stay alive to the end
        if name not in excluded and find(name) in last:
            last[find(name)] = end
    buffers = [
        Buffer(
            root,
            _aligned(max(_int8_bytes(graph.tensors[t]) for t in members[root])),
            first[root],
            last[root],
            tuple(members[root]),
        )
        for root in first
    ]
    for step, node in enumerate(nodes):
        if node.scratch_bytes:
            buffers.append(Buffer(f"{node.name}.scratch", _aligned(node.scratch_bytes), step, step, ()))
    return buffers


def _int8_bytes(tensor) -> int:
    """Arena sizes are those of the int8 deployment, also on a float (shapes-only) graph."""
    size = 1
    for dim in tensor.shape:
        size *= dim
    return size


def place_fused(graph: Graph) -> tuple[list[Buffer], int]:
    """Our placement only (buffers, arena bytes): what the schedule choice compares."""
    excluded = set(graph.streamed_inputs) | set(graph.external_outputs)
    return place_greedy(_lifetimes(graph, graph.nodes, excluded, inplace=True))


def plan(graph: Graph) -> Graph:
    """Place the fused graph's buffers. The naive op-by-op figure (a placement of the much larger
    primitive graph) is computed unless ``graph.naive_plan`` is False, as in the search's
    cost model, which needs only the arena; then ``naive_arena_bytes`` is 0 (not computed)."""
    ours, arena = place_fused(graph)
    naive_arena = 0
    if graph.naive_plan:
        primitive = tuple(n for node in graph.nodes for n in (node.body or (node,)))
        _, naive_arena = place_greedy(_lifetimes(graph, primitive, set(), inplace=False))
    memory = MemoryPlan(
        buffers=tuple(ours),
        arena_bytes=arena,
        naive_arena_bytes=naive_arena,
        lower_bound_bytes=peak_live_bytes(ours, len(graph.nodes)),
        steps=len(graph.nodes),
    )
    return replace(graph, plan=memory)

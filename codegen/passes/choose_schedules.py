"""Choose schedules: where a fused block has schedules that trade memory for instructions, pick the
cheapest (fewest instructions) set that fits the arena budget.

Attention has two: ``all_heads`` keeps K and V for every head (2 x T x E bytes) and ``per_head``
keeps one head's K_h, V_h (2 x T x E/H) plus the concatenated head outputs (T x E), recomputing the
LayerNorm (and the low-rank down-projection) once per head. Both give identical integers.

The patch embedding, the fused MLP and the row-wise (all_heads) attention have token tiles (``tile``
of their C params): 1, 2 or 4 tokens per pass over the linears' weights. A larger tile loads each weight once for more
tokens (fewer instructions with the DSP kernels: about 1.1 instead of 2.0 per MAC on a 1200-input
linear on the M7, benchmarks/kernels.py) and costs tile x the row scratch plus the expanded inputs.
Every tile gives identical integers. Tiles are chosen first: every block starts at the largest tile
not above its token count; while the arena exceeds the budget, the block whose next smaller tile
lowers the arena most steps down (a block whose scratch is not at the peak keeps its tile), or, when
no single step lowers it (blocks of equal scratch share the peak), every block at the largest tile
steps down one size; then each block, in order, takes larger tiles again while the arena stays
within the budget. Without
a budget every block keeps the largest tile. Switching an attention block to per_head drops its tile.

Attention rule: start from all_heads everywhere (fewest instructions). While the planned arena exceeds the
budget, switch the attention block whose switch saves the most arena bytes per extra instruction
(switches that save nothing are kept only while a peak shared by several blocks is being lowered).
Then switches that do not raise the arena (above the budget, or above the smallest arena reached when
nothing fits) are undone, most expensive first. Without a budget (or when all_heads fits) nothing
changes.
"""

from __future__ import annotations

from dataclasses import replace

from mcuformer.codegen import scratch
from mcuformer.codegen.ir import Graph, Node, Op, Role, Schedule, Tensor
from mcuformer.codegen.ops import by_role, fused
from mcuformer.codegen.ops.fused_attention import AttentionDims
from mcuformer.codegen.passes.plan import place_fused


def _attention_dims(node: Node) -> AttentionDims:
    assert isinstance(node.dims, AttentionDims), f"{node.name} is not an attention block"
    return node.dims


def extra_instructions(node: Node, graph: Graph) -> int:
    """Estimated extra instructions of per_head over all_heads: LN (about 8 per element) and the
    low-rank down-projection (about 1 per MAC) recomputed for H - 1 more heads, in both passes."""
    d = _attention_dims(node)
    return (d.heads - 1) * 2 * d.tokens * (8 * d.dim + d.dim * d.qkv_rank)


def to_per_head(node: Node, graph: Graph) -> tuple[Node, dict[str, Tensor]]:
    d = _attention_dims(node)
    head_dim = d.dim // d.heads
    k_head = Tensor(f"{node.name}.k_head", (d.tokens, head_dim), "int8")
    v_head = Tensor(f"{node.name}.v_head", (d.tokens, head_dim), "int8")
    heads_out = by_role(node.body)[Role.AV].outputs[0]  # the concatenated head outputs, T x E
    new = replace(
        node,
        variant=Schedule.PER_HEAD,
        tile=1,  # the per-head kernel does not tile
        kernel=None if node.kernel is None else replace(node.kernel, tile=1),
        workspace=(k_head.name, v_head.name, heads_out),
        scratch_bytes=fused(node.op).scratch_bytes(d, Schedule.PER_HEAD, 1),
    )
    return new, {k_head.name: k_head, v_head.name: v_head}


def _with(graph: Graph, switched: set[int], per_head: dict[int, tuple[Node, dict[str, Tensor]]]) -> Graph:
    nodes = tuple(per_head[i][0] if i in switched else n for i, n in enumerate(graph.nodes))
    tensors = dict(graph.tensors)
    for i in switched:
        tensors.update(per_head[i][1])
    return graph.with_nodes(nodes, tensors)


def tiled(node: Node) -> bool:
    """Whether the node's kernel takes a token tile (its definition's tiled schedules: the patch
    embedding without prefix tokens, the fused MLP, row-wise (all_heads) attention)."""
    return node.variant in fused(node.op).tiled_variants


def with_tile(node: Node, graph: Graph, tile: int) -> Node:
    """The node with a token tile of `tile` (its scratch and its kernel parameters follow)."""
    assert node.dims is not None
    kernel = None if node.kernel is None else replace(node.kernel, tile=tile)
    return replace(
        node, tile=tile, kernel=kernel, scratch_bytes=fused(node.op).scratch_bytes(node.dims, node.variant, tile)
    )


def _largest_tile(node: Node, graph: Graph) -> int:
    tokens = graph.tensors[node.outputs[0]].shape[0]  # the token rows it writes
    return max(t for t in scratch.TILES if t <= max(tokens, 1))


def choose_tiles(graph: Graph, budget: int | None) -> Graph:
    """Largest tiles; smaller ones where the arena would exceed the budget (module doc)."""
    blocks = [i for i, n in enumerate(graph.nodes) if tiled(n)]
    tiles = {i: _largest_tile(graph.nodes[i], graph) for i in blocks}

    tiled_nodes: dict[tuple[int, int], Node] = {}  # (block, tile) -> the block at that tile, made once

    def at_tile(i: int, tile: int) -> Node:
        if (i, tile) not in tiled_nodes:
            tiled_nodes[(i, tile)] = with_tile(graph.nodes[i], graph, tile)
        return tiled_nodes[(i, tile)]

    def with_tiles(tiles: dict[int, int]) -> Graph:
        nodes = tuple(at_tile(i, tiles[i]) if i in tiles else n for i, n in enumerate(graph.nodes))
        return graph.with_nodes(nodes, dict(graph.tensors))

    if budget is None or not blocks:
        return with_tiles(tiles)
    current = place_fused(with_tiles(tiles))[1]
    while current > budget:
        trials = []
        for i in blocks:
            if tiles[i] > 1:
                smaller = {**tiles, i: max(t for t in scratch.TILES if t < tiles[i])}
                trials.append((place_fused(with_tiles(smaller))[1], -i, smaller))
        if not trials:
            break
        size, _, smaller = min(trials, key=lambda t: (t[0], t[1]))
        if size >= current:  # no single step lowers the peak (blocks share it): all the largest at once
            top = max(tiles.values())
            step = max(t for t in scratch.TILES if t < top)
            smaller = {i: step if t == top else t for i, t in tiles.items()}
            size = place_fused(with_tiles(smaller))[1]
        tiles, current = smaller, size
    target = max(budget, current)
    for i in blocks:  # raise tiles again where the arena stays within the budget (the steps overshoot)
        while tiles[i] < _largest_tile(graph.nodes[i], graph):
            bigger = {**tiles, i: min(t for t in scratch.TILES if t > tiles[i])}
            size = place_fused(with_tiles(bigger))[1]
            if size > target:
                break
            tiles, current = bigger, size
    return with_tiles(tiles)


def choose_schedules(graph: Graph) -> Graph:
    budget = graph.arena_budget
    graph = choose_tiles(graph, budget)
    if budget is None:
        return graph

    def arena(switched: set[int]) -> int:
        return place_fused(_with(graph, switched, per_head))[1]

    per_head = {
        i: to_per_head(n, graph)
        for i, n in enumerate(graph.nodes)
        if n.op == Op.FUSED_ATTENTION and _attention_dims(n).heads > 1
    }
    switched: set[int] = set()
    current = arena(switched)
    while current > budget and len(switched) < len(per_head):
        trials = []
        for i in sorted(set(per_head) - switched):
            size = arena(switched | {i})
            trials.append(((current - size) / extra_instructions(graph.nodes[i], graph), -i, size, i))
        gain, _, size, best = max(trials)
        if gain < 0:
            break
        switched.add(best)
        current = size
    target = max(budget, current)  # over budget: keep the smallest arena reached, at the fewest instructions
    for i in sorted(switched, key=lambda i: -extra_instructions(graph.nodes[i], graph)):
        if arena(switched - {i}) <= target:
            switched.discard(i)
    return _with(graph, switched, per_head)

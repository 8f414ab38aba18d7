"""Planner, fusion and verifier tests on shapes-only graphs (no weights needed)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mcuformer.arch import ArchConfig, SearchSpace
from mcuformer.codegen.cost import estimate
from mcuformer.codegen.frontend import build_graph
from mcuformer.codegen.ir import IRError, Op, verify_graph
from mcuformer.codegen.passes.choose_schedules import tiled, with_tile
from mcuformer.codegen.passes.plan import Buffer, place_fused, place_greedy
from mcuformer.codegen.passes.verify_plan import verify_plan
from mcuformer.codegen.pipeline import run_pipeline
from tests.builders import random_arch


@pytest.mark.parametrize("seed", range(8))
def test_plan_is_verified_and_bounded(seed: int) -> None:
    arch = random_arch(random.Random(seed))
    graph = run_pipeline(build_graph(arch))
    plan = graph.planned()
    assert [n.op for n in graph.nodes] == (
        [Op.FUSED_PATCH_EMBED] + [Op.FUSED_ATTENTION, Op.FUSED_MLP] * arch.depth + [Op.FUSED_POOL_HEAD]
    )
    assert plan.lower_bound_bytes <= plan.arena_bytes
    # token overwriting: the whole residual stream is one T x E buffer
    x = plan.buffer_of("x0")
    assert x.size == arch.tokens * arch.embed_dim + (-arch.tokens * arch.embed_dim) % 4
    assert f"blocks.{arch.depth - 1}.mlp.out" in x.tensors
    # no H x T x T score tensor and no T x M hidden tensor in the fused plan
    names = {t for b in plan.buffers for t in b.tensors}
    assert not any(n.endswith((".scores", ".probs", ".fc1", ".gelu")) for n in names)
    assert "image" not in names


def test_fused_arena_beats_naive_on_a_large_model() -> None:
    arch = ArchConfig(240, 3, 20, 216, 12, (4,) * 12, (2.0,) * 12, (54,) * 12, (54,) * 12, 100)
    cost = estimate(arch)
    assert cost.arena_bytes <= 0.5 * cost.naive_arena_bytes
    assert cost.arena_bytes <= 1.15 * cost.lower_bound_bytes
    # X, K and V (3 x T x E) must coexist during attention: nothing can beat that
    assert cost.arena_bytes >= 3 * arch.tokens * arch.embed_dim


def test_verifier_rejects_overlapping_live_buffers() -> None:
    graph = run_pipeline(build_graph(SearchSpace().largest()))
    plan = graph.planned()
    k = plan.buffer_of("blocks.0.attn.k")
    x = plan.buffer_of("x0")
    bad = tuple(replace(b, offset=x.offset) if b is k else b for b in plan.buffers)
    with pytest.raises(IRError, match="overlap"):
        verify_plan(replace(graph, plan=replace(plan, buffers=bad)))


def test_verifier_rejects_buffer_outside_arena() -> None:
    graph = run_pipeline(build_graph(SearchSpace().smallest()))
    plan = graph.planned()
    bad = (replace(plan.buffers[0], offset=plan.arena_bytes),) + plan.buffers[1:]
    with pytest.raises(IRError, match="outside arena"):
        verify_plan(replace(graph, plan=replace(plan, buffers=bad)))


def test_graph_verifier_rejects_use_before_definition() -> None:
    graph = build_graph(SearchSpace().smallest())
    swapped = (graph.nodes[1], graph.nodes[0]) + graph.nodes[2:]
    with pytest.raises(IRError, match="before it is produced"):
        verify_graph(graph.with_nodes(swapped))


def test_greedy_first_fit_reuses_dead_space() -> None:
    buffers = [Buffer("a", 100, 0, 1), Buffer("b", 100, 2, 3), Buffer("c", 40, 1, 2)]
    placed, arena = place_greedy(buffers)
    offsets = {b.name: b.offset for b in placed}
    assert offsets["a"] == offsets["b"] == 0  # a and b never live together
    assert offsets["c"] == 100
    assert arena == 140


def test_cost_is_deterministic_and_monotone_in_depth() -> None:
    space = SearchSpace()
    big = space.largest()
    assert estimate(big) == estimate(big)
    shallow = replace(
        big,
        depth=1,
        num_heads=big.num_heads[:1],
        mlp_ratio=big.mlp_ratio[:1],
        attn_rank=big.attn_rank[:1],
        mlp_rank=big.mlp_rank[:1],
    )
    assert estimate(shallow).flash_bytes < estimate(big).flash_bytes


def test_schedules_trade_instructions_for_memory_only_when_over_budget() -> None:
    arch = ArchConfig(240, 3, 20, 216, 4, (4,) * 4, (2.0,) * 4, (54,) * 4, (54,) * 4, 100)
    roomy = estimate(arch, 512 * 1024)
    assert roomy == estimate(arch)  # all heads at once with the largest tiles fits: nothing changes

    def planned(arena_budget: int):
        graph = build_graph(arch)
        return run_pipeline(replace(graph, arena_budget=arena_budget))

    top = planned(roomy.arena_bytes)
    assert [n.tile for n in top.nodes if n.op in (Op.FUSED_ATTENTION, Op.FUSED_MLP)] == [4] * 8
    # a little less memory: smaller token tiles first (the attention scratch is at the peak)
    untiled = planned(roomy.arena_bytes - 1024)
    assert untiled.planned().arena_bytes <= roomy.arena_bytes - 1024
    assert [n.variant for n in untiled.nodes if n.op == Op.FUSED_ATTENTION] == ["all_heads"] * 4
    assert any(n.tile < 4 for n in untiled.nodes if n.op == Op.FUSED_ATTENTION)
    untiled_graph = top.with_nodes(tuple(with_tile(n, top, 1) if tiled(n) else n for n in top.nodes), dict(top.tensors))
    all_heads_tile1 = place_fused(untiled_graph)[1]
    tight_sram = roomy.peak_sram_bytes - (roomy.arena_bytes - all_heads_tile1) - 4096  # below that arena
    tight = estimate(arch, tight_sram)
    assert tight.peak_sram_bytes <= tight_sram < roomy.peak_sram_bytes
    # per head keeps K_h, V_h (2 x T x E/H) and the head outputs (T x E) instead of K, V (2 x T x E)
    t, e, h = arch.tokens, arch.embed_dim, 4
    assert roomy.arena_bytes - tight.arena_bytes >= (2 * t * e) - (2 * t * e // h + t * e) - 512
    graph = planned(tight.arena_bytes)
    variants = [n.variant for n in graph.nodes if n.op == Op.FUSED_ATTENTION]
    assert variants == ["per_head"] * 4
    assert all(n.tile == 1 for n in graph.nodes if n.op == Op.FUSED_ATTENTION)
    # a budget nothing can meet leaves the cheapest-memory plan (the link then fails with a clear message)
    assert estimate(arch, 1024).arena_bytes == tight.arena_bytes


def test_unmeetable_budget_keeps_the_smallest_arena_with_needed_switches_only() -> None:
    arch = ArchConfig(32, 3, 2, 96, 2, (4, 1), (1.0, 1.0), (0, 0), (0, 0), 10)
    graph = build_graph(arch)
    planned = run_pipeline(replace(graph, arena_budget=1024))
    # the heads=1 block has no per-head schedule and keeps the 3 x T x E peak, so switching the
    # heads=4 block cannot lower the arena: it stays on the cheaper all-heads schedule
    assert [n.variant for n in planned.nodes if n.op == Op.FUSED_ATTENTION] == ["all_heads", "all_heads"]
    # over budget the attention tiles (their scratch is at the peak) step down to 1; MLP tiles that do
    # not raise the smallest arena may stay larger; the largest tiles everywhere cost memory
    assert [n.tile for n in planned.nodes if n.op == Op.FUSED_ATTENTION] == [1, 1]
    untiled = planned.with_nodes(
        tuple(with_tile(n, planned, 1) if tiled(n) else n for n in planned.nodes), dict(planned.tensors)
    )
    assert planned.planned().arena_bytes == place_fused(untiled)[1] < estimate(arch).arena_bytes

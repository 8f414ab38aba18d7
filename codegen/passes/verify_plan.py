"""Plan verifier: proves the memory plan is safe. Runs in the pipeline and in tests.

Checks: every buffer lies inside the arena and is aligned; no two buffers alive at the same step
overlap in memory; in-place pairs share one buffer; every tensor a fused node reads or writes
(except streamed inputs and caller-owned outputs) has a buffer alive at that step.
"""

from __future__ import annotations

from mcuformer.codegen.ir import Buffer, Graph, IRError
from mcuformer.codegen.passes.plan import ALIGN


def verify_plan(graph: Graph) -> Graph:
    plan = graph.planned()
    buffers = plan.buffers
    for buf in buffers:
        if buf.offset < 0 or buf.offset % ALIGN or buf.offset + buf.size > plan.arena_bytes:
            raise IRError(f"buffer {buf.name} at {buf.offset}+{buf.size} outside arena {plan.arena_bytes} or unaligned")
    by_offset = sorted(buffers, key=lambda b: (b.offset, b.size))
    for i, a in enumerate(by_offset):  # only buffers that start before ``a`` ends can overlap it in space
        for b in by_offset[i + 1 :]:
            if b.offset >= a.offset + a.size:
                break
            if a.overlaps_in_time(b) and a.overlaps_in_space(b):
                raise IRError(
                    f"buffers {a.name} [{a.offset}, {a.offset + a.size}) steps {a.first}-{a.last} and "
                    f"{b.name} [{b.offset}, {b.offset + b.size}) steps {b.first}-{b.last} overlap while both alive"
                )
    excluded = set(graph.streamed_inputs) | set(graph.external_outputs)
    owner: dict[str, Buffer] = {}  # tensor or buffer name -> its buffer (the first, as MemoryPlan.buffer_of)
    for buf in buffers:
        for name in (*buf.tensors, buf.name):
            owner.setdefault(name, buf)

    def buffer_of(name: str) -> Buffer:
        if name not in owner:
            raise KeyError(name)
        return owner[name]

    for step, node in enumerate(graph.nodes):
        for src, dst in node.inplace:
            if buffer_of(src) is not buffer_of(dst):
                raise IRError(f"{node.name}: in-place pair ({src}, {dst}) not in one buffer")
        for name in node.inputs + node.outputs + node.workspace:
            if name in excluded:
                continue
            buf = buffer_of(name)
            if not buf.first <= step <= buf.last:
                raise IRError(f"{node.name}: tensor {name} used at step {step} outside its lifetime")
        if node.scratch_bytes:
            buf = buffer_of(f"{node.name}.scratch")
            if buf.size < node.scratch_bytes or not buf.first <= step <= buf.last:
                raise IRError(f"{node.name}: scratch buffer too small or not alive")
    if plan.arena_bytes < plan.lower_bound_bytes:
        raise IRError(f"arena {plan.arena_bytes} below the lower bound {plan.lower_bound_bytes}")
    return graph

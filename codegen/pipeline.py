"""The compiler pipeline: one list of passes, in order, each with why it sits where it does."""

from __future__ import annotations

from collections.abc import Callable

from mcuformer.codegen.ir import Graph, verify_graph
from mcuformer.codegen.passes.choose_schedules import choose_schedules
from mcuformer.codegen.passes.fuse import fuse
from mcuformer.codegen.passes.plan import plan
from mcuformer.codegen.passes.schedule import schedule
from mcuformer.codegen.passes.verify_plan import verify_plan

Pass = Callable[[Graph], Graph]


def _verify(graph: Graph) -> Graph:
    verify_graph(graph)
    return graph


PIPELINE: tuple[tuple[str, Pass, str], ...] = (
    ("verify_ir", _verify, "catch frontend/quantizer bugs before any pass relies on the graph"),
    ("fuse", fuse, "after quantization: fused kernels need every sub-op's integer parameters"),
    ("schedule", schedule, "after fusion: lifetimes are counted in fused steps, not primitive ops"),
    ("choose_schedules", choose_schedules, "after scheduling: trades instructions for memory only if over budget"),
    ("plan", plan, "after choosing schedules: offsets depend on which buffers each schedule keeps alive"),
    ("verify_plan", verify_plan, "last: prove no two live buffers overlap before any C is emitted"),
)


def run_pipeline(graph: Graph, log: Callable[[str], None] | None = None) -> Graph:
    for name, fn, _why in PIPELINE:
        graph = fn(graph)
        if log:
            log(f"pass {name}: {len(graph.nodes)} nodes")
    return graph

"""The compiler pipeline, in one visible order: frontend -> calibrate -> quantize -> passes -> lower.

``STAGES`` lists the whole path with why each stage sits where it does; ``PIPELINE`` is its pass part
(what the search's cost model runs on a shapes-only graph, and the compiler on the quantized one).
Debug switch: ``verify_each_pass=True`` or the environment variable MCUFORMER_VERIFY_EACH_PASS=1
runs ``verify_graph`` after every pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mcuformer.codegen.ir import Graph, verify_graph
from mcuformer.codegen.passes.choose_schedules import choose_schedules
from mcuformer.codegen.passes.fuse import fuse
from mcuformer.codegen.passes.plan import plan
from mcuformer.codegen.passes.schedule import schedule
from mcuformer.codegen.passes.verify_plan import verify_plan

Pass = Callable[[Graph], Graph]
VERIFY_ENV = "MCUFORMER_VERIFY_EACH_PASS"

# (stage, where it lives, why here): codegen.compile.compile_graph runs them in this order.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("frontend", "codegen.frontend / codegen.onnx_import", "first: one primitive float graph, whatever the source"),
    (
        "calibrate",
        "codegen.quantize.calibrate",
        "on the float primitive graph: every tensor's range, before fusion hides them",
    ),
    (
        "quantize",
        "codegen.quantize.quantize",
        "per primitive op: each op's quantization rule needs its tensors' ranges",
    ),
    ("passes", "PIPELINE below", "on the quantized graph: fusion regroups the primitives' integer parameters"),
    ("lower", "codegen.lower.lower", "last: a planned, verified graph -> C calls, structs and arrays"),
)


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


def verify_each_pass_requested() -> bool:
    return os.environ.get(VERIFY_ENV, "") not in ("", "0")


def run_pipeline(graph: Graph, log: Callable[[str], None] | None = None, verify_each_pass: bool | None = None) -> Graph:
    """The passes in order; ``verify_each_pass`` (default: the MCUFORMER_VERIFY_EACH_PASS switch)
    runs the graph verifier after each."""
    verify = verify_each_pass_requested() if verify_each_pass is None else verify_each_pass
    for name, fn, _why in PIPELINE:
        graph = fn(graph)
        if verify:
            verify_graph(graph)
        if log:
            log(f"pass {name}: {len(graph.nodes)} nodes")
    return graph

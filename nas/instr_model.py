"""A linear model of instructions per inference, fitted on QEMU profiles, for an optional
instruction budget in the search.

QEMU counts instructions exactly (``-icount``; DESIGN section 6), but a build and a run take seconds,
far too slow for thousands of candidates. So: profile a few architectures once
(``python -m mcuformer.instr_profile profile``: export with random weights, run in QEMU, read
``instructions_per_inference``), fit ``instructions ~ coef . features(arch)`` by non-negative least
squares (``python -m mcuformer.instr_profile fit``), and let the search predict from shapes alone.

Features are counts from the same shapes-only graph the planner uses (after fusion and the
schedule choice for the budget): MACs of every linear layer (patch embedding and classifier
included), their output elements (one requantization each), the rows they run on (per-row
overhead), attention MACs (scores and weighted sum), softmax elements, elementwise elements (GELU
table, residual adds, mean pool), LayerNorm elements, plus a constant. Where the planner chose the
``per_head`` attention schedule, the LayerNorm and low-rank down-projection it recomputes for the
other heads are added to the LayerNorm and MAC counts.

Int4 weights (ArchConfig.weight_bits) are not a fitted feature (the profiles are int8 models): each
MAC of an int4 linear adds INT4_EXTRA_INSTRUCTIONS_PER_MAC to the fitted int8 MAC coefficient (the
int4 row kernel unpacks the weights and runs row by row, without the int8 kernels' token tiles).

The data (``nas/data/instr_profiles.json``) and the fitted model (``nas/data/instr_model.json``)
are small and versioned; the model records the board it was measured on and is only valid for
cores that run the same kernels (same DSP setting).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcuformer.arch import ArchConfig
from mcuformer.codegen import ops as op_defs
from mcuformer.codegen.cost import planned_graph
from mcuformer.codegen.ir import Graph, Node, Op
from mcuformer.codegen.ops import OP_FEATURES, primitive
from mcuformer.errors import UserError

FEATURES = ("const", *OP_FEATURES)
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_PROFILES = DATA_DIR / "instr_profiles.json"
DEFAULT_MODEL = DATA_DIR / "instr_model.json"
# Instructions an int4-weight MAC costs beyond an int8 one (QEMU -icount, DSP kernels, the same model
# exported with int8 and with int4 blocks): 2.26 on the M4 (mps2-an386) and 2.24 on the M7 (mps2-an500)
# for res8 p2 E48 D1 mlp 2 (294,912 int4 MACs); 3.20 / 3.16 for res8 p4 E32 D2 with rank-8 layers (4
# tokens, short rows: the per-row overhead weighs more). It was 1.88 / 1.87 when measured with the
# int4 kernels; the int8 token tiles and output stages of issue 10 made the int8 models faster (2.25 /
# 2.23 at the first pass, 2.26 / 2.24 after the second) and the int4 rows, which run row by row, not.
# With the fitted int8 MAC coefficient (1.18 on the M4) an int4 MAC is ~3.4 instructions (the int4
# kernel alone, one 96 -> 96 layer: 3.20 / MAC, docs/design.md).
INT4_EXTRA_INSTRUCTIONS_PER_MAC = 2.25


def int4_macs(graph: Graph) -> float:
    """MACs of the linears with int4 weights (Attrs.weight_bits 4) of a graph."""
    return sum(
        primitive(node.op).features(node, graph)["macs"]
        for top in graph.nodes
        for node in (top.body or (top,))
        if node.op == Op.LINEAR and node.attrs.weight_bits == 4
    )


def features(arch: ArchConfig, sram_bytes: int | None = None) -> dict[str, float]:
    return graph_features(planned_graph(arch, sram_bytes))


def graph_features(graph: Graph) -> dict[str, float]:
    f = dict.fromkeys(FEATURES, 0.0)
    f["const"] = 1.0
    for top in graph.nodes:
        for name, value in node_features(graph, top).items():
            f[name] += value
    return f


def node_features(graph: Graph, top: Node) -> dict[str, float]:
    """The features of one top-level (fused) node of a planned graph (no constant): each op's own
    (its definition in codegen.ops), e.g. the per_head attention's recomputation included."""
    return op_defs.node_features(graph, top)


@dataclass(frozen=True)
class InstructionModel:
    coef: dict[str, float]
    board: str
    core: str
    dsp: bool
    fit: dict[str, Any]

    def predict(self, arch: ArchConfig, sram_bytes: int | None = None) -> float:
        graph = planned_graph(arch, sram_bytes)
        f = graph_features(graph)
        return sum(self.coef[k] * f[k] for k in FEATURES) + INT4_EXTRA_INSTRUCTIONS_PER_MAC * int4_macs(graph)

    def to_json(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "coef": self.coef, "board": self.board, "core": self.core,
                "dsp": self.dsp, "target": "instructions_per_inference (QEMU -icount)", "fit": self.fit}  # fmt: skip

    @staticmethod
    def load(path: str | Path = DEFAULT_MODEL) -> InstructionModel:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"instruction model {path} not found; fit one with `python -m mcuformer.instr_profile fit`")
        data = json.loads(path.read_text())
        if list(data.get("features", [])) != list(FEATURES):
            raise UserError(f"instruction model {path} has other features than {FEATURES}; refit it")
        return InstructionModel(data["coef"], data["board"], data["core"], data["dsp"], data["fit"])


def fit(pairs: list[tuple[ArchConfig, float]], board: str, core: str, dsp: bool) -> InstructionModel:
    """Non-negative least squares of measured instructions on the features (columns scaled to unit
    max for conditioning), each profile weighted by 1 / sqrt(instructions): between the absolute fit,
    where the largest models decide and the smallest are off by up to 17 %, and the relative one,
    which zeroes the per-row coefficient (24 profiles of the tiled kernels: in-sample mean / max 2.8 /
    16.8 % unweighted, 2.1 / 6.8 % weighted). Reports the in-sample and leave-one-out relative errors."""
    from scipy.optimize import nnls

    assert len(pairs) >= len(FEATURES), f"need at least {len(FEATURES)} profiles, got {len(pairs)}"
    x = np.array([[features(a)[k] for k in FEATURES] for a, _ in pairs])  # (N, F)
    y = np.array([float(v) for _, v in pairs])  # (N,)
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)
    weight = 1.0 / np.sqrt(y)

    def solve(rows: np.ndarray) -> np.ndarray:
        return nnls(x[rows] / scale * weight[rows, None], y[rows] * weight[rows])[0] / scale

    coef = solve(np.arange(len(y)))
    rel = np.abs(x @ coef - y) / y
    loo = np.array([abs(x[i] @ solve(np.delete(np.arange(len(y)), i)) - y[i]) / y[i] for i in range(len(y))])
    stats = {
        "samples": len(y),
        "mean_abs_rel_err": float(rel.mean()),
        "max_abs_rel_err": float(rel.max()),
        "loo_mean_abs_rel_err": float(loo.mean()),
        "loo_max_abs_rel_err": float(loo.max()),
        "instructions_range": [float(y.min()), float(y.max())],
    }
    return InstructionModel(dict(zip(FEATURES, map(float, coef), strict=True)), board, core, dsp, stats)

"""Per-block int4 sensitivity: the validation top-1 a subnet loses when the linears of one block alone
go to 4-bit weights (everything else int8). The search uses it to allow int4 only where it is cheap,
the way HAQ / HAWQ-style mixed precision restricts low bit widths to insensitive layers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from mcuformer.arch import ArchConfig, SearchSpace
from mcuformer.data import Dataset
from mcuformer.nas.supernet import Supernet
from mcuformer.nas.train import evaluate


def with_int4(arch: ArchConfig, blocks: tuple[int, ...]) -> ArchConfig:
    """``arch`` with int4 weights in ``blocks`` and int8 elsewhere."""
    return replace(arch, weight_bits=tuple(4 if i in blocks else 8 for i in range(arch.depth)))


@dataclass(frozen=True)
class Sensitivity:
    reference: ArchConfig  # the subnet measured (int8 everywhere)
    int8_top1: float  # its validation top-1
    drop_points: dict[int, float]  # block -> top-1 points lost with that block alone in int4
    tolerance_points: float
    allowed: tuple[int, ...]  # blocks within the tolerance: the search's int4 choices

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference.short(),
            "int8_val_top1": self.int8_top1,
            "drop_points": {str(i): round(d, 3) for i, d in sorted(self.drop_points.items())},
            "tolerance_points": self.tolerance_points,
            "int4_blocks_allowed": list(self.allowed),
        }


@torch.no_grad()
def measure(supernet: Supernet, space: SearchSpace, data: Dataset, tolerance_points: float) -> Sensitivity:
    """Sensitivity of each of ``space.int4_layers`` on the space's largest subnet (it has every block),
    on the validation split; a block is allowed int4 when it loses at most ``tolerance_points``."""
    assert tolerance_points >= 0, tolerance_points
    reference = with_int4(space.largest(), ())
    was_training = supernet.training
    supernet.eval()
    try:
        base = evaluate(lambda x: supernet(x, reference), data)
        drops = {}
        for block in space.int4_layers:
            arch = with_int4(reference, (block,))
            drops[block] = 100.0 * (base - evaluate(lambda x, a=arch: supernet(x, a), data))
    finally:
        supernet.train(was_training)
    allowed = tuple(b for b, d in sorted(drops.items()) if d <= tolerance_points)
    return Sensitivity(reference, base, drops, tolerance_points, allowed)

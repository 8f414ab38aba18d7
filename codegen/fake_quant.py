"""Fake quantization in torch: the forward computes an op on the grid its integer kernel produces,
the backward is the float op's (straight-through estimator). The helpers every op's ``train_forward``
(codegen.ops) shares; the graph they run in is codegen.fake_quant_graph.

Where it matters the forward is the integer reference itself: softmax runs codegen.ref.softmax on its
exp table, GELU its 256-entry table, LayerNorm the kernel's integer normalisation (gamma and beta on
their fixed-point grids). Linear layers use per-channel symmetric weights (qmax 127, or 7 for int4),
the bias on the int32 grid s_in * s_w, and round their output as the requantization does (they can
differ from it only where the Q31 multiplier's rounding moves a tie: at most 1 LSB).
"""

from __future__ import annotations

import numpy as np
import torch

from mcuformer.codegen.ir import Node, QParams
from mcuformer.codegen.ops.base import TrainContext
from mcuformer.quant_grid import fake_quant_weight, round_half_away, round_ste, straight_through

__all__ = ["fake_quant_weight", "round_half_away", "round_ste", "straight_through"]  # shared with the model


# ------------------------------------------------------------------------------------------ helpers
def to_int(x: torch.Tensor, q: QParams) -> np.ndarray:
    """A tensor on q's grid -> its int8 values (numpy int64), as the integer kernels see it (x / scale is
    within float error of an integer, so any rounding of it does)."""
    v = torch.round(x.detach().double() / q.scale) + q.zero_point
    return torch.clamp(v, -128, 127).to(torch.int64).cpu().numpy()


def from_int(values: np.ndarray, q: QParams, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor((np.asarray(values, dtype=np.float64) - q.zero_point) * q.scale, dtype=like.dtype)


def fake_quant(x: torch.Tensor, q: QParams) -> torch.Tensor:
    """clamp(round(x / s) + zp, -128, 127) back to real values; the gradient passes inside the range."""
    lo, hi = (-128 - q.zero_point) * q.scale, (127 - q.zero_point) * q.scale
    with torch.no_grad():
        levels = torch.clamp(round_half_away(x / q.scale) + q.zero_point, -128.0, 127.0)
        exact = (levels - q.zero_point) * q.scale
    return straight_through(torch.clamp(x, lo, hi), exact)


def fake_quant_bias(bias: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """A bias on the int32 grid of its accumulator (scale s_in * s_w, broadcast over its last axis)."""
    return round_ste(bias / scale) * scale


def linear_forward(ctx: TrainContext, node: Node, x: torch.Tensor, bias_field: str = "bias") -> torch.Tensor:
    """x (..., in) @ W^T + b with fake-quantized weights and bias, before the output's quantization."""
    w, s_w = fake_quant_weight(ctx.param(node, "weight"), ctx.weight_qmax(node))
    y = x @ w.T
    bias = ctx.param(node, bias_field) if getattr(node.attrs, bias_field) is not None else None
    if bias is not None:
        y = y + fake_quant_bias(bias, ctx.qparams(node.inputs[0]).scale * s_w)
    return y

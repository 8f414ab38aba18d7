"""Torch values on the compiler's integer grids, with straight-through gradients: what the deployable
model (``model.Int4Linear``) and quantization-aware training (``codegen.fake_quant``) share. Core: it
imports torch only, so the model can use it without the compiler."""

from __future__ import annotations

import torch


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties away from zero (codegen.qparams.round_half_away)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def straight_through(soft: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``exact``'s values with ``soft``'s gradient."""
    return soft + (exact - soft).detach()


def round_ste(x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        rounded = round_half_away(x)
    return straight_through(x, rounded)


def fake_quant_weight(w: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric weights (out, in) on qp.quantize_weights' grid -> (weights, scales):
    scale max|w[o]| / qmax (1 for an all-zero row), values round_half_away(w / scale) in [-qmax, qmax]."""
    amax = w.detach().abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))  # (out,)
    return torch.clamp(round_ste(w / scale[:, None]), -qmax, qmax) * scale[:, None], scale

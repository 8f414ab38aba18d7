"""The fixed CNN baseline (and distillation teacher), its memory at a budget and its int8 accuracy.

Architecture, fixed so that it cannot be made weak: 3x3 convolutions of widths w, 2w, 4w (padding 1),
each with batch norm and ReLU, 2x2 max-pooling after the first two, global average pooling, a linear
classifier. ``w`` is the largest that fits the budget:

- SRAM: a TFLite-Micro-style greedy arena of its int8 activations (the same first-fit-by-size
  allocator as our planner, ``codegen.passes.plan.place_greedy``; every op's input and output alive
  together, the input image included), plus the same stack reserve and statics as our models.
- flash: its int8 weights and int32 biases (batch norm folded; no allowance for code, which favours
  the CNN).

int8: batch norm folded into the convolutions, weights symmetric per output channel, activations
per tensor (asymmetric, calibrated on training images), biases int32; simulated in float64 with
exact int8 rounding and clamping at every tensor the int8 kernels would write (post-training
quantization as the TFLite converter does it; not compiled to C here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mcuformer.codegen.cost import STACK_RESERVE_BYTES, STATIC_SRAM_BYTES
from mcuformer.codegen.passes.plan import Buffer, _aligned, place_greedy


class CNN(nn.Module):
    def __init__(self, in_channels: int, width: int, num_classes: int) -> None:
        super().__init__()
        w = width
        self.width = width
        self.convs = nn.ModuleList([nn.Conv2d(c, o, 3, padding=1, bias=False)
                                    for c, o in ((in_channels, w), (w, 2 * w), (2 * w, 4 * w))])  # fmt: skip
        self.bns = nn.ModuleList([nn.BatchNorm2d(o) for o in (w, 2 * w, 4 * w)])
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            x = F.relu(bn(conv(x)))
            if i < 2:
                x = F.max_pool2d(x, 2)
        return self.head(x.mean(dim=(2, 3)))


@dataclass(frozen=True)
class CNNCost:
    width: int
    arena_bytes: int
    peak_sram_bytes: int
    flash_bytes: int
    params: int


def cnn_cost(image_size: int, in_channels: int, width: int, num_classes: int) -> CNNCost:
    """Exact int8 memory of the CNN at ``width`` (see the module docstring)."""
    h, w = image_size, width
    h2, h4 = h // 2, h // 4
    # tensors in op order: conv1, pool1, conv2, pool2, conv3, global pool, linear; op k reads tensor k, writes k+1
    sizes = [h * h * in_channels, h * h * w, h2 * h2 * w, h2 * h2 * 2 * w, h4 * h4 * 2 * w, h4 * h4 * 4 * w, 4 * w,
             num_classes]  # fmt: skip
    last_op = len(sizes) - 2
    buffers = [Buffer(f"t{k}", _aligned(n), max(0, k - 1), min(k, last_op)) for k, n in enumerate(sizes)]
    _, arena = place_greedy(buffers)
    convs = [(in_channels, w), (w, 2 * w), (2 * w, 4 * w)]
    weights = sum(9 * c * o + 4 * o for c, o in convs) + 4 * w * num_classes + 4 * num_classes
    params = sum(9 * c * o + o for c, o in convs) + 4 * w * num_classes + num_classes
    return CNNCost(w, arena, arena + STACK_RESERVE_BYTES + STATIC_SRAM_BYTES, weights, params)


def widest_cnn(image_size: int, in_channels: int, num_classes: int, sram_bytes: int, flash_bytes: int) -> CNNCost:
    """The CNN with the largest width that fits both budgets (memory grows with the width)."""
    best = None
    for width in range(1, 4097):
        cost = cnn_cost(image_size, in_channels, width, num_classes)
        if cost.peak_sram_bytes > sram_bytes or cost.flash_bytes > flash_bytes:
            break
        best = cost
    if best is None:
        raise ValueError(f"no CNN fits {sram_bytes} B SRAM / {flash_bytes} B flash")
    return best


# ------------------------------------------------------------------------------------- int8 (PTQ)
def _fake_quant(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """Round to the int8 grid (half away from zero, as our compiler) and clamp, back to real values."""
    q = torch.clamp(torch.sign(x / scale) * torch.floor(torch.abs(x / scale) + 0.5) + zero_point, -128, 127)
    return (q - zero_point) * scale


def _qparams(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / 255.0
    return scale, int(round(-128 - lo / scale))


@torch.no_grad()
def int8_model(model: CNN, calibration: torch.Tensor):
    """Per-channel int8 post-training quantization of a trained CNN (BN folded); returns a function
    (B, C, H, W) float images -> (B, K) logits that computes with int8-rounded weights, int32-rounded
    biases and int8 activations (float64 simulation)."""
    model = model.cpu().eval()
    layers = []  # (weight (O, I, 3, 3), bias (O,)) folded, float64
    for conv, bn in zip(model.convs, model.bns, strict=True):
        inv = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = bn.bias.double() - bn.running_mean.double() * inv
        layers.append((conv.weight.double() * inv[:, None, None, None], bias))
    head_w, head_b = model.head.weight.double(), model.head.bias.double()

    def run(x: torch.Tensor, quant: list[tuple[float, int]] | None, record: list[torch.Tensor] | None):
        def act(t: torch.Tensor, k: int) -> torch.Tensor:
            if record is not None:
                record.append(t)
            return t if quant is None else _fake_quant(t, *quant[k])

        x = act(x.double(), 0)
        for i, (w, b) in enumerate(layers):
            s_in = quant[i][0] if quant else None
            wq, bq = w, b
            if quant:
                s_w = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127.0  # per output channel, symmetric
                wq = torch.clamp(torch.round(w / s_w[:, None, None, None]), -127, 127) * s_w[:, None, None, None]
                bq = torch.round(b / (s_in * s_w)) * (s_in * s_w)  # int32 bias at scale s_in * s_w
            x = act(F.relu(F.conv2d(x, wq, bq, padding=1)), i + 1)
            if i < 2:
                x = F.max_pool2d(x, 2)  # max of int8 values: stays on the grid
        x = act(x.mean(dim=(2, 3)), 4)
        wq, bq = head_w, head_b
        if quant:
            s_w = head_w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            wq = torch.clamp(torch.round(head_w / s_w[:, None]), -127, 127) * s_w[:, None]
            bq = torch.round(head_b / (quant[4][0] * s_w)) * (quant[4][0] * s_w)
        return act(x @ wq.T + bq, 5)

    record: list[torch.Tensor] = []
    run(calibration, None, record)
    quant = [_qparams(float(t.min()), float(t.max())) for t in record]
    return lambda images: run(images, quant, None).float()

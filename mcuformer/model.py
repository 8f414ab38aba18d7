"""The static, deployable ViT in plain torch. Its parameter layout is what codegen.frontend reads.

Layout conventions shared with the C runtime:
- images are (B, C, H, W) float in torch; the C side receives int8 HWC.
- a patch vector is ordered (py, px, c): index (py * P + px) * C + c, tokens row-major on the grid.
- no class token: the classifier reads the mean over tokens of the final LayerNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mcuformer.arch import ArchConfig
from mcuformer.datasets import to_float
from mcuformer.quant_grid import fake_quant_weight

LN_EPS = 1e-6  # read by the frontend per module (nn.LayerNorm.eps); the integer LayerNorm folds it in
INT4_QMAX = 7  # codegen.qparams.INT4_QMAX: int4 weights take [-7, 7]


class Int4Linear(nn.Linear):
    """An nn.Linear (same parameters and state-dict keys) whose forward uses its weight on the int4
    grid the compiler will store, so training and evaluation see what the int4 kernels compute."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fake_quant_weight(self.weight, INT4_QMAX)[0], self.bias)


def linear(in_features: int, out_features: int, bias: bool = True, bits: int = 8) -> nn.Linear:
    """A dense layer whose weight the compiler stores at ``bits`` (8 or 4)."""
    return (Int4Linear if bits == 4 else nn.Linear)(in_features, out_features, bias=bias)


class LowRankLinear(nn.Module):
    """W = up @ down with rank r: x (.., in) -> down (.., r) -> up (.., out). Bias on ``up`` only."""

    def __init__(self, in_features: int, out_features: int, rank: int, bits: int = 8) -> None:
        super().__init__()
        assert 0 < rank
        self.down = linear(in_features, rank, bias=False, bits=bits)
        self.up = linear(rank, out_features, bits=bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def make_linear(in_features: int, out_features: int, rank: int, bits: int = 8) -> nn.Module:
    if rank == 0:
        return linear(in_features, out_features, bits=bits)
    return LowRankLinear(in_features, out_features, rank, bits)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, rank: int, bits: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.rank = rank
        qkv_in = rank if rank else dim
        self.qkv_down = linear(dim, rank, bias=False, bits=bits) if rank else None
        self.q = linear(qkv_in, dim, bits=bits)
        self.k = linear(qkv_in, dim, bits=bits)
        self.v = linear(qkv_in, dim, bits=bits)
        self.proj = linear(dim, dim, bits=bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape  # (B, T, E)
        h = self.qkv_down(x) if self.qkv_down is not None else x
        q, k, v = (lin(h).view(b, t, self.heads, e // self.heads).transpose(1, 2) for lin in (self.q, self.k, self.v))
        scores = (q @ k.transpose(-2, -1)) * (e // self.heads) ** -0.5  # (B, H, T, T)
        out = scores.softmax(dim=-1) @ v  # (B, H, T, Dh)
        return self.proj(out.transpose(1, 2).reshape(b, t, e))


class Block(nn.Module):
    """``bits``: the precision the compiler stores every linear weight of the block at (8 or 4)."""

    def __init__(self, dim: int, heads: int, hidden: int, attn_rank: int, mlp_rank: int, bits: int = 8) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads, attn_rank, bits)
        self.ln2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.fc1 = make_linear(dim, hidden, mlp_rank, bits)
        self.fc2 = make_linear(hidden, dim, mlp_rank, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ConvBNReLU(nn.Module):
    """One stem layer: 3x3 convolution (padding 1, no bias) + BatchNorm + ReLU. The frontend folds the
    BatchNorm into the convolution's weights and bias (per output channel)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, T, P*P*C) with patch vectors ordered (py, px, c)."""
    b, c, h, w = images.shape
    assert h % patch == 0 and w % patch == 0, (h, w, patch)
    gh, gw = h // patch, w // patch
    x = images.permute(0, 2, 3, 1).reshape(b, gh, patch, gw, patch, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, patch * patch * c)


class ViT(nn.Module):
    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        e = arch.embed_dim
        widths = (arch.in_channels, *arch.stem_channels)
        self.stem = nn.ModuleList(
            ConvBNReLU(widths[i], widths[i + 1], arch.stem_strides[i]) for i in range(len(arch.stem_channels))
        )
        self.patch_embed = nn.Linear(arch.patch_dim, e)
        self.pos_embed = nn.Parameter(torch.zeros(arch.tokens, e))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            Block(e, arch.num_heads[i], arch.mlp_hidden(i), arch.attn_rank[i], arch.mlp_rank[i], arch.bits_of(i))
            for i in range(arch.depth)
        )
        self.norm = nn.LayerNorm(e, eps=LN_EPS)
        self.head = nn.Linear(e, arch.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        a = self.arch
        assert images.shape[1:] == (a.in_channels, a.image_size, a.image_size), images.shape
        for layer in self.stem:
            images = layer(images)  # (B, C_i, H_i, W_i): the stem's feature maps
        x = self.patch_embed(patchify(images, a.patch_size)) + self.pos_embed  # (B, T, E)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))  # (B, classes)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) images to the architecture's input resolution; uint8 images
    (0..255) are first mapped to float [-1, 1] exactly as the data loaders do."""
    images = to_float(images)
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)

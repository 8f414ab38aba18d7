"""Small stand-ins for the ViTs people train elsewhere, for the ONNX importer's tests.

timm and torchvision cannot be imported on the machines this project is tested on (PyPI's
torchvision fails to load beside the pinned torch CPU build), so these modules reproduce the module
structure and forward pass of, as read from the public sources:

- ``TimmViT``: timm's ``VisionTransformer`` (``timm/models/vision_transformer.py``): conv patch
  embedding, class token, learned position embedding over prefix + patch tokens, blocks of
  ``x + ls1(attn(norm1(x)))`` / ``x + ls2(mlp(norm2(x)))`` with one fused ``qkv`` Linear and
  ``F.scaled_dot_product_attention``, optional LayerScale (``init_values``), ``global_pool`` 'token'
  or 'avg' (avg over the patch tokens, then ``fc_norm`` and no final ``norm``), dropouts as identity.
- ``DeiTDistilled``: timm's ``VisionTransformerDistilled`` (deit.py): class and distillation tokens,
  two heads averaged at inference.
- ``OwnViT``: hand-written PyTorch: reshape/permute + Linear patch embedding, separate q/k/v.
- ``TorchvisionViT``: torchvision's ``VisionTransformer`` (``torchvision/models/vision_transformer.py``):
  ``conv_proj``, class token concatenated before ``encoder.pos_embedding`` is added, encoder blocks
  with ``nn.MultiheadAttention(batch_first=True)`` and ``MLPBlock``, final ``encoder.ln``, ``heads.head``.

Written from the structure, not copied. Weights are random unless a test trains them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int | tuple[int, int], patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
        self.num_patches = (h // patch_size) * (w // patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))  # (B, T, E)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, fused_attn: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        x = x.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, approximate: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.drop1 = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class Block(nn.Module):
    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, init_values: float | None, approximate: str
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), approximate)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class TimmViT(nn.Module):
    """timm VisionTransformer: global_pool 'token' (class token, final norm) or 'avg' (fc_norm)."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 32,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 10,
        embed_dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        global_pool: str = "token",
        class_token: bool = True,
        init_values: float | None = None,
        approximate: str = "none",
        dist_token: bool = False,
    ) -> None:
        super().__init__()
        self.global_pool = global_pool
        self.num_prefix_tokens = int(class_token) + int(dist_token)
        use_fc_norm = global_pool == "avg"
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02) if class_token else None
        self.dist_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02) if dist_token else None
        tokens = self.patch_embed.num_patches + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, embed_dim) * 0.02)
        self.pos_drop = nn.Dropout(0.0)
        self.norm_pre = nn.Identity()
        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values, approximate) for _ in range(depth)]
        )
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6) if use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(0.0)
        self.head = nn.Linear(embed_dim, num_classes)
        self.head_dist = nn.Linear(embed_dim, num_classes) if dist_token else None

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.dist_token) if t is not None]
        if prefix:
            x = torch.cat([*prefix, x], dim=1)
        return self.pos_drop(x + self.pos_embed)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_dist is not None:  # DeiT distilled, inference: mean of the two heads
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        x = x[:, self.num_prefix_tokens :].mean(dim=1) if self.global_pool == "avg" else x[:, 0]
        return self.head(self.head_drop(self.fc_norm(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_pre(self._pos_embed(self.patch_embed(x)))
        return self.forward_head(self.norm(self.blocks(x)))


def deit_distilled(**kwargs) -> TimmViT:
    """DeiT's VisionTransformerDistilled: class + distillation tokens, (head + head_dist) / 2."""
    return TimmViT(dist_token=True, global_pool="token", **kwargs)


class MLPBlock(nn.Sequential):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0))


class EncoderBlock(nn.Module):
    def __init__(self, heads: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = self.dropout(y) + x
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, depth: int, heads: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(*[EncoderBlock(heads, dim, hidden) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class TorchvisionViT(nn.Module):
    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        num_layers: int = 2,
        num_heads: int = 4,
        hidden_dim: int = 64,
        mlp_dim: int = 128,
        num_classes: int = 10,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(in_chans, hidden_dim, kernel_size=patch_size, stride=patch_size)
        seq_length = (image_size // patch_size) ** 2 + 1
        self.class_token = nn.Parameter(torch.randn(1, 1, hidden_dim) * 0.02)
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(hidden_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        x = self.conv_proj(x).reshape(n, self.hidden_dim, (h // self.patch_size) * (w // self.patch_size))
        x = x.permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


class Normalized(nn.Module):
    """A model with its input normalisation inside the graph: (x - mean) / std per channel."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


class SeparateQKVAttention(nn.Module):
    """Hand-written attention with three projections, no q/k/v bias, scale applied after q @ k^T."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (f(x).view(b, n, self.heads, c // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        attn = torch.softmax(q @ k.transpose(-2, -1) / (c // self.heads) ** 0.5, dim=-1)
        return self.out((attn @ v).transpose(1, 2).reshape(b, n, c))


class OwnViT(nn.Module):
    """'Your own PyTorch code': patchify by reshape/permute + nn.Linear (patch vectors in (c, py, px)
    order), a class token, separate q/k/v, pre-norm blocks, class token -> LN -> head."""

    def __init__(self, img: int = 32, patch: int = 4, chans: int = 3, dim: int = 64, depth: int = 2, heads: int = 4):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(chans * patch * patch, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, dim) * 0.02)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2 * depth))
        self.attns = nn.ModuleList(SeparateQKVAttention(dim, heads) for _ in range(depth))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), -1)
        x = torch.cat([self.cls.expand(b, -1, -1), self.embed(x)], dim=1) + self.pos
        for i, (attn, mlp) in enumerate(zip(self.attns, self.mlps, strict=True)):
            x = x + attn(self.norms[2 * i](x))
            x = x + mlp(self.norms[2 * i + 1](x))
        return self.head(self.norm(x[:, 0]))  # the class token selected, then normed


class RelPosAttention(Attention):
    """Attention with a learned relative position bias added to the scores (Swin / BEiT style)."""

    def __init__(self, dim: int, num_heads: int, tokens: int) -> None:
        super().__init__(dim, num_heads, qkv_bias=True, fused_attn=False)
        self.rel_bias = nn.Parameter(torch.randn(num_heads, tokens, tokens) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1) + self.rel_bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


def relpos_vit(**kwargs) -> TimmViT:
    """A ViT with relative position bias in every block: not supported by the importer."""
    model = TimmViT(**kwargs)
    tokens = model.pos_embed.shape[1]
    for block in model.blocks:
        block.attn = RelPosAttention(model.head.in_features, block.attn.num_heads, tokens)
    return model


class SmallCNN(nn.Module):
    """Not a ViT: the importer must refuse it with one line."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


def export_onnx(
    model: nn.Module, path: str, dynamo: bool, opset: int, image_size: int | tuple[int, int] = 32, channels: int = 3
) -> None:
    """torch.onnx.export with either exporter, batch 1, no external data.

    Not under torch.no_grad(): in eval mode without gradients nn.MultiheadAttention takes its fast
    path (aten::_native_multi_head_attention), which the legacy exporter cannot export; torchvision
    users hit the same and export this way.
    """
    import warnings

    model.eval()
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    example = (torch.randn(1, channels, h, w),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(model, example, dynamo=True, opset_version=opset, verbose=False)
            program.save(path, external_data=False)
        else:
            torch.onnx.export(model, example, path, dynamo=False, opset_version=opset, input_names=["image"])

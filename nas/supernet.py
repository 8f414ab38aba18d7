"""The weight-sharing supernet (AutoFormer's weight entanglement + MCUFormer's low-rank choices).

One set of weights, sized for the largest choice of everything; a subnet uses leading slices:

- embed dim E: the first E channels of every weight and LayerNorm; depth d: the first d blocks;
  MLP hidden M: the first M rows of fc1 / columns of fc2; heads H: the same q/k/v outputs (E of
  them) split into H heads of E/H dims, so the head count changes no weight.
- low rank: every factorisable layer stores ``up (out_max x R)`` and ``down (R x in_max)`` with
  R = the largest embed dim. Rank r uses ``up[:out, :r] @ down[:r, :in]``; a dense layer (rank 0)
  uses the same product at r = E (for E x E, E x M and M x E matrices that is full rank), so dense
  and low-rank choices train the same factors. Attention: one ``qkv_down`` factor shared by the
  q, k and v up factors (as in ``mcuformer.model.Attention``); the output projection is a plain
  dense weight, sliced. MLP: fc1 and fc2 are each factorised at ``mlp_rank``.
- patch size P: ONE kernel (E, P_max, P_max, C). A smaller P resizes it by bilinear interpolation
  (align_corners=False) and multiplies by (P_max / P)^2: the resize averages, the factor restores
  the sum, so a patch of constant intensity gives the same embedding at every patch size. For
  P_max / P = 2 (e.g. patches 2 and 4) the result is exactly the sum of each 2x2 block of the big
  kernel, i.e. the P-patch embedding of an image equals the P_max-patch embedding of the same image
  upsampled 2x. (For ratios above 2, bilinear reads only the inner taps of each block.)
- input resolution: images are resized to ``arch.image_size`` (``mcuformer.model.resize_images``);
  position embeddings are stored on the largest token grid and resized bicubically (antialiased)
  to the subnet's grid.

``forward(images, arch)`` runs the deployable ``mcuformer.model.ViT``'s own code with the subnet's
weights (``torch.func.functional_call`` on a weightless "meta" ViT), and ``extract(arch)`` copies
the very same tensors into a real ViT. Training, search and export therefore compute the same
function by construction.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mcuformer.arch import SPACE_STEM_STRIDE, ArchConfig, SearchSpace, plain_vit, stem_width, with_stem
from mcuformer.errors import UserError
from mcuformer.model import LN_EPS, ViT, resize_images

# ----------------------------------------------------------------------------------------------
# The search space as choices. A layer's ranks are kept as ratios of embed_dim, so that an arch
# whose embed dim changes (mutation, crossover) keeps the same *relative* rank.


@dataclass(frozen=True)
class LayerChoice:
    heads: int
    mlp_ratio: float
    attn_rank_ratio: float  # 0.0 = dense
    mlp_rank_ratio: float
    weight_bits: int = 8  # 4: the block's linears stored as packed int4 (only in space.int4_layers)


def resolution_choices(space: SearchSpace) -> list[tuple[int, int]]:
    """The (image_size, patch_size) pairs of the space where the patch tiles the image."""
    pairs = [(s, p) for s in space.image_sizes for p in space.patch_sizes if s % p == 0]
    if not pairs:
        raise UserError(f"search space: no image size in {space.image_sizes} is divisible by a patch size")
    return pairs


def head_choices(space: SearchSpace, embed_dim: int) -> list[int]:
    heads = [h for h in space.num_heads if embed_dim % h == 0]
    if not heads:
        raise UserError(f"search space: no num_heads choice in {space.num_heads} divides embed_dim {embed_dim}")
    return heads


def rank_ratio(space: SearchSpace, rank: int, embed_dim: int) -> float:
    """Inverse of ``space.rank``: the ratio choice that gives ``rank`` at ``embed_dim``."""
    if rank == 0:
        return 0.0
    for ratio in space.rank_ratios:
        if ratio and space.rank(ratio, embed_dim) == rank:
            return ratio
    return rank / embed_dim  # not one of the space's choices: keep the same fraction


def make_arch(
    space: SearchSpace,
    image_size: int,
    patch_size: int,
    embed_dim: int,
    layers: Sequence[LayerChoice],
    stem: int = 0,
) -> ArchConfig:
    """``patch_size`` is the space's patch; with a stem of width ``stem`` the ViT's is half of it."""
    per_block = layers  # weight precision stays a per-block choice even when the rest is shared
    if not space.per_layer:  # one choice shared by every layer: the first layer's
        layers = [layers[0]] * len(layers)
    return with_stem(stem, space.stem_layers, ArchConfig(
        image_size=image_size,
        in_channels=space.in_channels,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=len(layers),
        num_heads=tuple(layer.heads for layer in layers),
        mlp_ratio=tuple(layer.mlp_ratio for layer in layers),
        attn_rank=tuple(space.rank(layer.attn_rank_ratio, embed_dim) for layer in layers),
        mlp_rank=tuple(space.rank(layer.mlp_rank_ratio, embed_dim) for layer in layers),
        num_classes=space.num_classes,
        weight_bits=tuple(
            c.weight_bits if c.weight_bits in space.bits_choices(i) else 8 for i, c in enumerate(per_block)
        ),
    ))


def sample_stem(space: SearchSpace, patch_size: int, rng: random.Random) -> int:
    """A stem width for a subnet of (space) patch ``patch_size``; draws nothing from ``rng`` when the
    space has no stem choice, so stemless spaces sample exactly as before."""
    return rng.choice(space.stem_choices(patch_size)) if space.stem_channels else 0


def layer_choices(space: SearchSpace, arch: ArchConfig) -> list[LayerChoice]:
    """Inverse of ``make_arch``: the per-layer choices of an arch."""
    e = arch.embed_dim
    return [
        LayerChoice(
            arch.num_heads[i],
            arch.mlp_ratio[i],
            rank_ratio(space, arch.attn_rank[i], e),
            rank_ratio(space, arch.mlp_rank[i], e),
            arch.bits_of(i),
        )
        for i in range(arch.depth)
    ]


def sample_bits(space: SearchSpace, layer: int, rng: random.Random) -> int:
    """Weight precision of block ``layer``; draws nothing from ``rng`` where the block has no int4
    choice, so int8-only spaces sample exactly the sequences they did before int4 existed."""
    choices = space.bits_choices(layer)
    return rng.choice(choices) if len(choices) > 1 else choices[0]


def sample_layer(space: SearchSpace, embed_dim: int, rng: random.Random, layer: int = -1) -> LayerChoice:
    return LayerChoice(
        heads=rng.choice(head_choices(space, embed_dim)),
        mlp_ratio=rng.choice(space.mlp_ratios),
        attn_rank_ratio=rng.choice(space.rank_ratios),
        mlp_rank_ratio=rng.choice(space.rank_ratios),
        weight_bits=sample_bits(space, layer, rng),
    )


def sample_arch(space: SearchSpace, rng: random.Random) -> ArchConfig:
    """Uniform over every choice: (resolution, patch) pair, embed dim, depth, then per layer."""
    image_size, patch_size = rng.choice(resolution_choices(space))
    embed_dim = rng.choice(space.embed_dims)
    depth = rng.choice(space.depths)
    layers = [sample_layer(space, embed_dim, rng, i) for i in range(depth)]
    return make_arch(space, image_size, patch_size, embed_dim, layers, sample_stem(space, patch_size, rng))


# ----------------------------------------------------------------------------------------------
# Supernet modules. Each ``state(...)`` returns the static ViT's state-dict entries for one subnet;
# the tensors are slices/products of the shared parameters, so gradients flow back to them.


def init_factors(out_max: int, in_max: int, rank_max: int) -> tuple[nn.Parameter, nn.Parameter]:
    """(up, down) with balanced scales: down keeps activations O(1), and the full-rank product
    has the spread of nn.Linear's default init (std 1/sqrt(3 * in)). A rank-r slice is smaller."""
    down = torch.randn(rank_max, in_max) * in_max**-0.5
    up = torch.randn(out_max, rank_max) * (3 * rank_max) ** -0.5
    return nn.Parameter(up), nn.Parameter(down)


class FactorisedLinear(nn.Module):
    """W (out_max x in_max) = up (out_max x R) @ down (R x in_max); bias (out_max) on ``up``."""

    def __init__(self, in_max: int, out_max: int, rank_max: int) -> None:
        super().__init__()
        self.up, self.down = init_factors(out_max, in_max, rank_max)
        self.bias = nn.Parameter(torch.zeros(out_max))

    def state(self, name: str, in_f: int, out_f: int, rank: int, dense_rank: int) -> dict[str, torch.Tensor]:
        if rank == 0:  # dense: the full product at rank = embed dim -> nn.Linear(in_f, out_f)
            weight = self.up[:out_f, :dense_rank] @ self.down[:dense_rank, :in_f]  # (out, in)
            return {f"{name}.weight": weight, f"{name}.bias": self.bias[:out_f]}
        return {  # -> LowRankLinear(in_f, out_f, rank)
            f"{name}.down.weight": self.down[:rank, :in_f],  # (r, in)
            f"{name}.up.weight": self.up[:out_f, :rank],  # (out, r)
            f"{name}.up.bias": self.bias[:out_f],
        }


class SuperBlock(nn.Module):
    def __init__(self, embed_max: int, hidden_max: int, rank_max: int) -> None:
        super().__init__()
        e, r = embed_max, rank_max
        self.ln1 = nn.LayerNorm(e, eps=LN_EPS)
        self.q_up, self.qkv_down = init_factors(e, e, r)  # qkv_down (r, E) is shared by q, k and v
        self.k_up, _ = init_factors(e, e, r)
        self.v_up, _ = init_factors(e, e, r)
        self.q_bias = nn.Parameter(torch.zeros(e))
        self.k_bias = nn.Parameter(torch.zeros(e))
        self.v_bias = nn.Parameter(torch.zeros(e))
        self.proj = nn.Linear(e, e)  # always dense
        self.ln2 = nn.LayerNorm(e, eps=LN_EPS)
        self.fc1 = FactorisedLinear(e, hidden_max, r)
        self.fc2 = FactorisedLinear(hidden_max, e, r)

    def state(self, name: str, e: int, hidden: int, attn_rank: int, mlp_rank: int) -> dict[str, torch.Tensor]:
        st = {
            f"{name}.ln1.weight": self.ln1.weight[:e],
            f"{name}.ln1.bias": self.ln1.bias[:e],
            f"{name}.ln2.weight": self.ln2.weight[:e],
            f"{name}.ln2.bias": self.ln2.bias[:e],
            f"{name}.attn.proj.weight": self.proj.weight[:e, :e],
            f"{name}.attn.proj.bias": self.proj.bias[:e],
        }
        r = attn_rank or e  # dense q/k/v = the product at rank e
        down = self.qkv_down[:r, :e]  # (r, E)
        if attn_rank:
            st[f"{name}.attn.qkv_down.weight"] = down
        for q in "qkv":
            up, bias = getattr(self, f"{q}_up"), getattr(self, f"{q}_bias")
            st[f"{name}.attn.{q}.weight"] = up[:e, :r] if attn_rank else up[:e, :r] @ down  # (E, r) or (E, E)
            st[f"{name}.attn.{q}.bias"] = bias[:e]
        st.update(self.fc1.state(f"{name}.fc1", e, hidden, mlp_rank, dense_rank=e))
        st.update(self.fc2.state(f"{name}.fc2", hidden, e, mlp_rank, dense_rank=e))
        return st


class Supernet(nn.Module):
    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.resolutions = resolution_choices(space)
        for e in space.embed_dims:
            head_choices(space, e)  # every embed dim needs a valid head count
        if any(r < 0 or r > 1 for r in space.rank_ratios):
            raise UserError(f"search space: rank ratios must be in [0, 1], got {space.rank_ratios}")
        self.embed_max = max(space.embed_dims)
        self.rank_max = self.embed_max
        self.depth_max = max(space.depths)
        self.patch_max = max(space.patch_sizes)
        self.hidden_max = max(max(1, int(round(e * m))) for e in space.embed_dims for m in space.mlp_ratios)
        self.grid_max = max(s // p for s, p in self.resolutions)
        e, p, c, g = self.embed_max, self.patch_max, space.in_channels, self.grid_max

        self.patch_kernel = nn.Parameter(torch.randn(e, p, p, c) * (p * p * c) ** -0.5)  # (E, py, px, c)
        self.patch_bias = nn.Parameter(torch.zeros(e))
        self.pos_embed = nn.Parameter(torch.randn(g, g, e))  # (grid, grid, E) on the largest grid; O(1) like tokens
        self.blocks = nn.ModuleList(SuperBlock(e, self.hidden_max, self.rank_max) for _ in range(self.depth_max))
        self.norm = nn.LayerNorm(e, eps=LN_EPS)
        self.head = nn.Linear(e, space.num_classes)
        # The optional stem (space.stem_channels): the widest stem's conv and BatchNorm, a width w using
        # their first w channels (a channel's output does not depend on w, so neither do its batch
        # statistics), and a patch kernel of its own over the stem's map, (E, P_max/2, P_max/2, W_max).
        # With two stem layers (space.stem_layers) a stride-1 conv of W_max / 2 channels comes first; a
        # width w uses its first w / 2 channels and the stride-2 conv's first w outputs of those inputs
        # (then the second layer's statistics do depend on w: they are shared as AutoFormer shares
        # LayerNorms).
        self.stem_max = max(space.stem_channels, default=0)
        if self.stem_max:
            w = self.stem_max
            self.stem_patch_max = max(p // SPACE_STEM_STRIDE for p in space.patch_sizes if p % SPACE_STEM_STRIDE == 0)
            q = self.stem_patch_max
            c_in = c
            if space.stem_layers == 2:
                self.stem_conv0 = nn.Parameter(torch.randn(w // 2, c, 3, 3) * (9 * c) ** -0.5)
                self.stem_bn0 = nn.BatchNorm2d(w // 2)
                c_in = w // 2
            self.stem_conv = nn.Parameter(torch.randn(w, c_in, 3, 3) * (9 * c_in) ** -0.5)
            self.stem_bn = nn.BatchNorm2d(w)
            self.stem_patch_kernel = nn.Parameter(torch.randn(e, q, q, w) * (q * q * w) ** -0.5)
        self._skeletons: dict[ArchConfig, ViT] = {}  # weightless ViTs whose forward code we borrow

    # -- the subnet's weights ------------------------------------------------------------------

    def patch_weight(self, patch: int, e: int, stem: int = 0) -> torch.Tensor:
        """The shared kernel resized to P x P, as the ViT's patch_embed weight (E, P*P*C), (py, px, c) order;
        with a stem of width ``stem``, the stem's kernel (C = stem)."""
        if stem:
            kernel, patch_max = self.stem_patch_kernel[:e, :, :, :stem], self.stem_patch_max
        else:
            kernel, patch_max = self.patch_kernel[:e], self.patch_max  # (E, Pmax, Pmax, C)
        if patch != patch_max:
            k = kernel.permute(0, 3, 1, 2)  # (E, C, Pmax, Pmax)
            k = F.interpolate(k, size=(patch, patch), mode="bilinear", align_corners=False)
            kernel = k.permute(0, 2, 3, 1) * (patch_max / patch) ** 2  # (E, P, P, C)
        return kernel.reshape(e, -1)

    def pos_weight(self, grid: int, e: int) -> torch.Tensor:
        """Position embeddings resized to the subnet's grid: (grid*grid, E), tokens row-major."""
        pos = self.pos_embed[:, :, :e]  # (G, G, E)
        if grid != self.grid_max:
            p = pos.permute(2, 0, 1).unsqueeze(0)  # (1, E, G, G)
            p = F.interpolate(p, size=(grid, grid), mode="bicubic", align_corners=False, antialias=True)
            pos = p[0].permute(1, 2, 0)  # (grid, grid, E)
        return pos.reshape(grid * grid, e)

    def subnet_state(self, arch: ArchConfig) -> dict[str, torch.Tensor]:
        """The state dict of ``mcuformer.model.ViT(arch)``, made of (differentiable) views of ours."""
        self.check(arch)
        e = arch.embed_dim
        stem = stem_width(arch)
        st = {
            "patch_embed.weight": self.patch_weight(arch.patch_size, e, stem),
            "patch_embed.bias": self.patch_bias[:e],
            "pos_embed": self.pos_weight(arch.grid, e),
            "norm.weight": self.norm.weight[:e],
            "norm.bias": self.norm.bias[:e],
            "head.weight": self.head.weight[:, :e],
            "head.bias": self.head.bias,
        }
        for i in range(arch.depth):
            st.update(self.blocks[i].state(f"blocks.{i}", e, arch.mlp_hidden(i), arch.attn_rank[i], arch.mlp_rank[i]))
        if stem:  # views of the BatchNorm's buffers: training updates the shared running statistics in place
            layers = [(self.stem_conv, self.stem_bn, stem, self.space.in_channels)]
            if self.space.stem_layers == 2:
                layers = [(self.stem_conv0, self.stem_bn0, stem // 2, self.space.in_channels),
                          (self.stem_conv, self.stem_bn, stem, stem // 2)]  # fmt: skip
            for i, (conv, bn, width, inputs) in enumerate(layers):
                st.update(
                    {
                        f"stem.{i}.conv.weight": conv[:width, :inputs],
                        f"stem.{i}.bn.weight": bn.weight[:width],
                        f"stem.{i}.bn.bias": bn.bias[:width],
                        f"stem.{i}.bn.running_mean": bn.running_mean[:width],
                        f"stem.{i}.bn.running_var": bn.running_var[:width],
                        f"stem.{i}.bn.num_batches_tracked": bn.num_batches_tracked,
                    }
                )
        return st

    def check(self, arch: ArchConfig) -> None:
        """Any arch within the supernet's largest dims can be run (not only the listed choices)."""
        problems = [
            f"{name} {value} > {limit}"
            for name, value, limit in [
                ("embed_dim", arch.embed_dim, self.embed_max),
                ("depth", arch.depth, self.depth_max),
                ("patch_size", arch.patch_size, self.patch_max),
                ("mlp hidden", max((arch.mlp_hidden(i) for i in range(arch.depth)), default=0), self.hidden_max),
                ("rank", max(arch.attn_rank + arch.mlp_rank, default=0), self.rank_max),
            ]
            if value > limit
        ]
        width = stem_width(arch)
        if arch.stem_channels and (
            width > self.stem_max
            or arch.patch_size > self.stem_patch_max
            or width % self.space.stem_layers
            or with_stem(width, self.space.stem_layers, plain_vit(arch)) != arch
        ):
            problems.append(f"stem {list(arch.stem_channels)} not one of the space's (widths <= {self.stem_max})")
        if (arch.in_channels, arch.num_classes) != (self.space.in_channels, self.space.num_classes):
            problems.append(f"in_channels/num_classes {arch.in_channels}/{arch.num_classes} != the space's")
        if problems:
            raise ValueError(f"arch outside the supernet ({', '.join(problems)}): {arch.short()}")

    # -- the public API ------------------------------------------------------------------------

    def forward(self, images: torch.Tensor, arch: ArchConfig) -> torch.Tensor:
        """(B, C, H, W) images at any resolution -> (B, classes) logits of subnet ``arch``."""
        x = resize_images(images, arch.image_size)  # (B, C, S, S)
        skeleton = self._skeletons.get(arch)
        if skeleton is None:
            with torch.device("meta"):
                skeleton = self._skeletons[arch] = ViT(arch)
        skeleton.train(self.training)  # the stem's BatchNorm: batch statistics only while training
        return functional_call(skeleton, self.subnet_state(arch), (x,), strict=True)

    @torch.no_grad()
    def extract(self, arch: ArchConfig) -> ViT:
        """A standalone static ViT holding a copy of the subnet's weights."""
        with torch.device("meta"):
            vit = ViT(arch)
        vit.load_state_dict({k: v.detach().clone() for k, v in self.subnet_state(arch).items()}, assign=True)
        return vit

    def sample(self, rng: random.Random) -> ArchConfig:
        return sample_arch(self.space, rng)

    def largest(self) -> ArchConfig:
        return self.space.largest()

    def smallest(self) -> ArchConfig:
        return self.space.smallest()


# ----------------------------------------------------------------------------------------------
# Initialisation from a trained dense (or low-rank) static ViT by SVD.


@torch.no_grad()
def svd_factors(weight: torch.Tensor, rank_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (out, in) -> up (out, k), down (k, in) with k = min(out, in, rank_max).

    up = U sqrt(S), down = sqrt(S) V^T, singular values in decreasing order, so for every r <= k the
    leading slices give ``up[:, :r] @ down[:r] = U_r S_r V_r^T``, the best rank-r approximation of
    ``weight`` in Frobenius and spectral norm (Eckart-Young). Computed in float64."""
    assert weight.dim() == 2, weight.shape
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)  # (out, m), (m,), (m, in)
    k = min(len(s), rank_max)
    root = s[:k].sqrt()
    return (u[:, :k] * root).to(weight.dtype), (root[:, None] * vh[:k]).to(weight.dtype)


def _dense_weight(layer: nn.Module) -> torch.Tensor:
    """The (out, in) matrix of an nn.Linear or a LowRankLinear (the product up @ down)."""
    if isinstance(layer, nn.Linear):
        return layer.weight
    return layer.up.weight @ layer.down.weight  # (out, r) @ (r, in)


def _bias(layer: nn.Module) -> torch.Tensor:
    return layer.bias if isinstance(layer, nn.Linear) else layer.up.bias


@torch.no_grad()
def init_from_dense(supernet: Supernet, model: ViT) -> list[str]:
    """Copy a trained static ViT into the leading slices of the supernet; every factorised weight
    W (dense, or the product of a low-rank layer) is written as its SVD factors (``svd_factors``),
    so the subnet with the model's dims computes the model's function (up to float rounding, where
    the model's layers have rank <= the supernet's rank) and a rank-r subnet starts from the best
    rank-r approximation. q, k and v share one down factor: they are factorised jointly, as the
    stacked (3E, E) matrix [Wq; Wk; Wv]. Returns a list of notes (what could not be copied exactly).

    Not covered by the model (larger embed dims, deeper blocks, higher ranks) keeps its init. The
    patch kernel is copied when the model's patch is P_max, else spread evenly over each
    (P_max/P)^2 block (exact for integer ratios); position embeddings are resized bicubically to
    the supernet's grid when the model's grid differs (then not exact)."""
    arch = model.arch
    if arch.stem_channels:
        raise UserError("--init-from: a model with a convolutional stem is not supported (SVD covers the ViT only)")
    try:
        supernet.check(arch)
    except ValueError as exc:
        raise UserError(f"--init-from: the model does not fit the search space's supernet: {exc}") from None
    e, p_max, c, r_max = arch.embed_dim, supernet.patch_max, arch.in_channels, supernet.rank_max
    notes: list[str] = []

    def put_factors(up_param: nn.Parameter, down_param: nn.Parameter, weight: torch.Tensor) -> None:
        up, down = svd_factors(weight, r_max)  # (out, k), (k, in)
        out_f, k = up.shape
        up_param[:out_f, :k] = up
        down_param[:k, : weight.shape[1]] = down

    kernel = model.patch_embed.weight.reshape(e, arch.patch_size, arch.patch_size, c)  # (E, P, P, C)
    if arch.patch_size != p_max:
        if p_max % arch.patch_size:
            notes.append(f"patch {arch.patch_size} does not divide {p_max}: patch kernel not copied")
        else:
            k = p_max // arch.patch_size  # each tap becomes a k x k block of tap / k^2
            kernel = kernel.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2) / (k * k)
    if kernel.shape[1] == p_max:
        supernet.patch_kernel[:e] = kernel
    supernet.patch_bias[:e] = model.patch_embed.bias
    pos = model.pos_embed.reshape(arch.grid, arch.grid, e)  # (g, g, E)
    if arch.grid != supernet.grid_max:
        notes.append(f"position embeddings resized from grid {arch.grid} to {supernet.grid_max}")
        p = pos.permute(2, 0, 1).unsqueeze(0)  # (1, E, g, g)
        p = F.interpolate(p, size=(supernet.grid_max,) * 2, mode="bicubic", align_corners=False)
        pos = p[0].permute(1, 2, 0)
    supernet.pos_embed[:, :, :e] = pos
    supernet.norm.weight[:e], supernet.norm.bias[:e] = model.norm.weight, model.norm.bias
    supernet.head.weight[:, :e], supernet.head.bias[:] = model.head.weight, model.head.bias

    for i, block in enumerate(model.blocks):
        sb: SuperBlock = supernet.blocks[i]  # type: ignore[assignment]
        for name in ("ln1", "ln2"):
            getattr(sb, name).weight[:e] = getattr(block, name).weight
            getattr(sb, name).bias[:e] = getattr(block, name).bias
        sb.proj.weight[:e, :e], sb.proj.bias[:e] = block.attn.proj.weight, block.attn.proj.bias
        attn = block.attn
        qkv = torch.cat([attn.q.weight, attn.k.weight, attn.v.weight])  # (3E, E) dense, or (3E, r)
        if attn.qkv_down is not None:
            qkv = qkv @ attn.qkv_down.weight  # (3E, r) @ (r, E)
        up, down = svd_factors(qkv, r_max)  # (3E, k), (k, E)
        k = up.shape[1]
        for j, name in enumerate("qkv"):
            getattr(sb, f"{name}_up")[:e, :k] = up[j * e : (j + 1) * e]
            getattr(sb, f"{name}_bias")[:e] = getattr(attn, name).bias
        sb.qkv_down[:k, :e] = down
        for name in ("fc1", "fc2"):
            layer, target = getattr(block, name), getattr(sb, name)
            put_factors(target.up, target.down, _dense_weight(layer))
            target.bias[: _bias(layer).shape[0]] = _bias(layer)
    return notes


def load_vit(path: str) -> ViT:
    """A trained static ViT from a search RUN directory (arch.json + model.pt) or from a torch file
    holding ``{"arch": ArchConfig.to_json(), "model": state_dict}``."""
    p = Path(path)
    try:
        if p.is_dir():
            arch_json = json.loads((p / "arch.json").read_text())["arch"]
            state = torch.load(p / "model.pt", map_location="cpu", weights_only=True)
        else:
            blob = torch.load(p, map_location="cpu", weights_only=True)
            arch_json, state = blob["arch"], blob["model"]
        model = ViT(ArchConfig.from_json(arch_json))
        model.load_state_dict(state)
    except (OSError, KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise UserError(
            f"--init-from {path}: not a search run directory (arch.json + model.pt) or a checkpoint with "
            f"'arch' and 'model' ({type(exc).__name__}: {exc})"
        ) from None
    return model.eval()

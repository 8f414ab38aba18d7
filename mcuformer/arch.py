"""Architecture configuration of a static (deployable) ViT, and the NAS search space.

An ``ArchConfig`` fully determines every tensor shape of the deployed model, so the compiler's
planner can compute exact SRAM and flash from it without weights.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mcuformer.errors import UserError

# What a deployable model can be: far above any microcontroller model, and small enough that a
# mistyped arch.json fails here instead of asking for gigabytes of weights.
_LIMITS = {
    "image_size": (1, 1024),
    "in_channels": (1, 16),
    "patch_size": (1, 256),
    "embed_dim": (1, 4096),
    "depth": (1, 64),
    "num_classes": (2, 100_000),
}
MAX_MLP_RATIO = 16
MAX_STEM_LAYERS = 4  # convolutional stem: at most this many 3x3 convolutions
MAX_STEM_CHANNELS = 256
STEM_STRIDES = (1, 2)
WEIGHT_BITS = (8, 4)  # weight precisions a block's linears can take


def conv_out_size(size: int, stride: int) -> int:
    """Output side of a 3x3 convolution with padding 1: floor((size - 1) / stride) + 1 (torch's rule)."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class ArchConfig:
    """A ViT without class token: patch embedding (+ position embedding) -> depth x block -> LN ->
    mean pool over tokens -> linear classifier.

    Per-layer tuples have length ``depth``. A rank of 0 means the layer is dense; a rank r > 0
    factorises ``W (out x in)`` as ``up (out x r) @ down (r x in)``.
    - ``attn_rank[i]``: one shared down-projection E -> r feeding the q, k and v up-projections.
    - ``mlp_rank[i]``: fc1 (E -> M) and fc2 (M -> E) are each factorised with rank r.
    The attention output projection is always dense.

    Optional convolutional stem (``stem_channels``, default none): 3x3 convolutions (padding 1, stride
    ``stem_strides[i]`` in {1, 2}) + BatchNorm + ReLU before the patch embedding, which then patchifies
    the stem's feature map (``feature_size`` square, ``feature_channels`` channels).

    ``weight_bits[i]`` (optional, default ``()`` = every block int8): 8 or 4, the precision of every
    linear weight of block i (q/k/v and their low-rank factors, the attention output projection,
    fc1/fc2 and their factors); 4 = per-channel symmetric int4 (qmax 7), packed two per byte. The
    patch embedding, stem and classifier stay int8.
    """

    image_size: int
    in_channels: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    attn_rank: tuple[int, ...]
    mlp_rank: tuple[int, ...]
    num_classes: int
    stem_channels: tuple[int, ...] = ()
    stem_strides: tuple[int, ...] = ()
    # per block: 8 (int8 weights) or 4 (packed int4 weights in every linear of the block); () = all 8
    weight_bits: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name, (lo, hi) in _LIMITS.items():  # before any shape is derived or memory allocated
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
        for name in ("num_heads", "mlp_ratio", "attn_rank", "mlp_rank"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(value))
            if len(getattr(self, name)) != self.depth:
                raise ValueError(f"ArchConfig.{name} has {len(value)} entries, depth is {self.depth}")
        for name in ("stem_channels", "stem_strides", "weight_bits"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.weight_bits and len(self.weight_bits) != self.depth:
            raise ValueError(
                f"ArchConfig.weight_bits has {len(self.weight_bits)} entries, depth is {self.depth} (or () for int8)"
            )
        for bits in self.weight_bits:
            if isinstance(bits, bool) or not isinstance(bits, int) or bits not in WEIGHT_BITS:  # int8, or packed int4
                raise ValueError(f"weight_bits must be 8 or 4 per block, got {bits!r}")
        if all(b == 8 for b in self.weight_bits):  # one spelling of "all int8": equal archs compare equal
            object.__setattr__(self, "weight_bits", ())
        if len(self.stem_channels) != len(self.stem_strides) or len(self.stem_channels) > MAX_STEM_LAYERS:
            raise ValueError(
                f"stem_channels and stem_strides must have the same length (at most {MAX_STEM_LAYERS}), got "
                f"{len(self.stem_channels)} and {len(self.stem_strides)}"
            )
        for c in self.stem_channels:
            if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_STEM_CHANNELS:
                raise ValueError(f"stem_channels must be integers in 1..{MAX_STEM_CHANNELS}, got {c!r}")
        for stride in self.stem_strides:
            if isinstance(stride, bool) or stride not in STEM_STRIDES:
                raise ValueError(f"stem_strides must be 1 or 2, got {stride!r}")
        if self.feature_size % self.patch_size:
            what = "image_size" if not self.stem_channels else "the stem's output size"
            raise ValueError(f"{what} {self.feature_size} not divisible by patch_size {self.patch_size}")
        for heads in self.num_heads:
            if not isinstance(heads, int) or heads < 1 or self.embed_dim % heads:
                raise ValueError(f"embed_dim {self.embed_dim} not divisible by num_heads {heads}")
        for ratio in self.mlp_ratio:
            if not isinstance(ratio, (int, float)) or not 0 < ratio <= MAX_MLP_RATIO:
                raise ValueError(f"mlp_ratio must be in (0, {MAX_MLP_RATIO}], got {ratio!r}")
        for r in self.attn_rank + self.mlp_rank:
            if not isinstance(r, int) or not 0 <= r <= self.embed_dim * MAX_MLP_RATIO:
                raise ValueError(
                    f"ranks must be integers in 0..{self.embed_dim * MAX_MLP_RATIO} (0 = dense), got {r!r}"
                )

    @property
    def feature_size(self) -> int:
        """Side of what the patch embedding reads: the image, or the stem's output feature map."""
        size = self.image_size
        for stride in self.stem_strides:
            size = conv_out_size(size, stride)
        return size

    @property
    def feature_channels(self) -> int:
        return self.stem_channels[-1] if self.stem_channels else self.in_channels

    @property
    def grid(self) -> int:
        return self.feature_size // self.patch_size

    @property
    def tokens(self) -> int:
        return self.grid * self.grid

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * self.feature_channels

    def mlp_hidden(self, layer: int) -> int:
        return max(1, int(round(self.embed_dim * self.mlp_ratio[layer])))

    def head_dim(self, layer: int) -> int:
        return self.embed_dim // self.num_heads[layer]

    def bits_of(self, layer: int) -> int:
        """Weight bits of block ``layer``'s linears: 8 or 4 (8 for every block when weight_bits is ())."""
        if not 0 <= layer < self.depth:
            raise IndexError(f"block {layer} out of range (depth {self.depth})")
        return self.weight_bits[layer] if self.weight_bits else 8

    @property
    def int4_blocks(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.depth) if self.bits_of(i) == 4)

    def to_json(self) -> dict[str, Any]:
        """Without a stem the stem keys are left out, and so is weight_bits when it is () (all int8):
        arch.json of a stemless int8 model is as before."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if not self.stem_channels:
            del data["stem_channels"], data["stem_strides"]
        if not self.int4_blocks:  # all int8: arch.json as before int4 existed
            del data["weight_bits"]
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> ArchConfig:
        try:
            return ArchConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise UserError(f"invalid architecture in arch.json: {exc}") from None

    def short(self) -> str:
        heads = ",".join(map(str, self.num_heads))
        ratios = ",".join(f"{r:g}" for r in self.mlp_ratio)
        ar = ",".join(map(str, self.attn_rank))
        mr = ",".join(map(str, self.mlp_rank))
        stem = ""
        if self.stem_channels:
            layers = zip(self.stem_channels, self.stem_strides, strict=True)
            stem = " stem[" + ",".join(f"{c}s{s}" for c, s in layers) + "]"
        w4 = f" w4:[{','.join(map(str, self.int4_blocks))}]" if self.int4_blocks else ""
        return (
            f"res{self.image_size}{stem} p{self.patch_size} E{self.embed_dim} D{self.depth} "
            f"H[{heads}] mlp[{ratios}] rank_attn[{ar}] rank_mlp[{mr}]{w4}"
        )


@dataclass(frozen=True)
class SearchSpace:
    """Choices of the weight-sharing supernet. Ranks are given as ratios of embed_dim; a ratio of
    0 (dense) is always allowed. The largest subnet takes the max of every choice (dense)."""

    image_sizes: tuple[int, ...] = (8, 12, 16)
    patch_sizes: tuple[int, ...] = (2, 4)
    embed_dims: tuple[int, ...] = (32, 48, 64)
    depths: tuple[int, ...] = (1, 2, 3)
    num_heads: tuple[int, ...] = (2, 4)
    mlp_ratios: tuple[float, ...] = (1.0, 2.0, 3.0)
    rank_ratios: tuple[float, ...] = (0.25, 0.5, 0.0)
    in_channels: int = 1
    num_classes: int = 10
    per_layer: bool = True  # False: every layer takes the same heads / MLP ratio / ranks (one choice)
    # widths of an optional one-layer convolutional stem (3x3, stride SPACE_STEM_STRIDE); no stem is
    # always a choice too. With a stem of a subnet whose patch P is even, the ViT patchifies the stem's
    # map with P / 2: the token grid is the same as without it. () = no stem choice (every subnet plain).
    stem_channels: tuple[int, ...] = ()
    # layers of every stem: 1 = one stride-2 layer of the chosen width w; 2 = a full-resolution stride-1
    # layer of w / 2 channels first (measured on MNIST: stabler and more accurate than one layer).
    stem_layers: int = 1
    # blocks whose linears may take int4 weights (a search choice per block, next to width and depth);
    # () = int8 only. The search narrows it to the blocks whose measured sensitivity allows it.
    int4_layers: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def bits_choices(self, layer: int) -> tuple[int, ...]:
        return (8, 4) if layer in self.int4_layers else (8,)

    def lowest_bits(self, depth: int) -> tuple[int, ...]:
        """The least flash per block: 4 where the space allows it."""
        return tuple(min(self.bits_choices(i)) for i in range(depth))

    def rank(self, ratio: float, embed_dim: int) -> int:
        return 0 if ratio == 0.0 else max(1, int(round(ratio * embed_dim)))

    def _pairs(self) -> list[tuple[int, int, int]]:
        """(tokens, image size, patch size) of every (image size, patch size) pair where the patch tiles."""
        return sorted(((s // p) ** 2, s, p) for s in self.image_sizes for p in self.patch_sizes if s % p == 0)

    def stem_choices(self, patch: int) -> tuple[int, ...]:
        """Stem widths a subnet with (space) patch ``patch`` can take: 0 (none), and the space's
        widths where the stem's stride divides the patch."""
        if patch % SPACE_STEM_STRIDE:
            return (0,)
        return (0, *self.stem_channels)

    def largest(self) -> ArchConfig:
        depth, e = max(self.depths), max(self.embed_dims)
        _, image, patch = max(self._pairs(), key=lambda t: (t[0], t[1]))  # most tokens, then the larger image
        return with_stem(max(self.stem_choices(patch)), self.stem_layers, ArchConfig(
            image_size=image,
            in_channels=self.in_channels,
            patch_size=patch,
            embed_dim=e,
            depth=depth,
            num_heads=(max(h for h in self.num_heads if e % h == 0),) * depth,
            mlp_ratio=(max(self.mlp_ratios),) * depth,
            attn_rank=(0,) * depth,
            mlp_rank=(0,) * depth,
            num_classes=self.num_classes,
        ))

    def smallest(self) -> ArchConfig:
        depth = min(self.depths)
        nonzero = [r for r in self.rank_ratios if r > 0]
        ratio = min(nonzero) if nonzero else 0.0
        e = min(self.embed_dims)
        _, image, patch = min(self._pairs(), key=lambda t: (t[0], t[1]))  # fewest tokens, then the smaller image
        return ArchConfig(
            image_size=image,
            in_channels=self.in_channels,
            patch_size=patch,
            embed_dim=e,
            depth=depth,
            num_heads=(min(h for h in self.num_heads if e % h == 0),) * depth,
            mlp_ratio=(min(self.mlp_ratios),) * depth,
            attn_rank=(self.rank(ratio, e),) * depth,
            mlp_rank=(self.rank(ratio, e),) * depth,
            num_classes=self.num_classes,
            weight_bits=self.lowest_bits(depth),
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        if not self.stem_channels:  # as before stems existed
            data.pop("stem_channels")
        if self.stem_layers == 1:  # as before two-layer stems existed
            data.pop("stem_layers")
        if not self.int4_layers:  # as before int4 existed
            data.pop("int4_layers")
        return data


SPACE_STEM_STRIDE = 2


def with_stem(width: int, layers: int, arch: ArchConfig) -> ArchConfig:
    """``arch`` (a plain ViT with patch P) with a stem ending in a ``width``-channel stride-2 layer and
    patch P / 2 (the same tokens); with ``layers`` 2 a stride-1 layer of ``width // 2`` channels at the
    input's resolution comes first. Width 0: ``arch`` unchanged."""
    if not width:
        return arch
    assert layers in (1, 2) and (layers == 1 or width % 2 == 0), (width, layers)
    channels = (width // 2, width) if layers == 2 else (width,)
    return replace(
        arch,
        patch_size=arch.patch_size // SPACE_STEM_STRIDE,
        stem_channels=channels,
        stem_strides=(1,) * (layers - 1) + (SPACE_STEM_STRIDE,),
    )


def plain_vit(arch: ArchConfig) -> ArchConfig:
    """``arch`` without its stem, patchifying the image with the search space's patch (the same tokens)."""
    return replace(arch, patch_size=space_patch(arch), stem_channels=(), stem_strides=())


def space_patch(arch: ArchConfig) -> int:
    """The patch of ``arch`` in the search space's terms: its ViT patch times the stem's strides."""
    patch = arch.patch_size
    for stride in arch.stem_strides:
        patch *= stride
    return patch


def stem_width(arch: ArchConfig) -> int:
    """The width of a search space's stem: its last (stride-2) layer's (0 without a stem)."""
    return arch.stem_channels[-1] if arch.stem_channels else 0


def save_json(path: str, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename): a crash never leaves a half-written report."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)

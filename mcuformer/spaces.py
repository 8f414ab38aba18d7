"""Search spaces as data: named presets, JSON/TOML files, and a default sized to a budget.

A space file holds the choices of the weight-sharing supernet (the keys of ``SPACE_KEYS``); the
number of input channels and classes come from the data set, never from the file::

    # myspace.toml
    image_sizes = [20, 24, 28]
    patch_sizes = [2, 4]
    embed_dims = [48, 64, 96]
    depths = [2, 3, 4, 5, 6]
    num_heads = [2, 4]
    mlp_ratios = [1, 2, 3]
    rank_ratios = [0.25, 0.5, 0]     # fractions of embed_dim; 0 = dense
    per_layer = true                 # heads / MLP ratio / ranks chosen per layer (false: one for all)
    stem_channels = [8, 16]          # optional: a 3x3 stride-2 conv stem of these widths, or none
    stem_layers = 2                  # optional: 2 = a stride-1 conv of half the width first (default 1)
    weight_bits = [8, 4]             # optional: each block's linears int8 or packed int4 (default [8])

This module is core: it imports neither ``codegen`` nor ``nas``. ``budget_space`` takes the exact
cost as a function, so the app layer can hand it the planner.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcuformer.arch import MAX_STEM_CHANNELS, SPACE_STEM_STRIDE, WEIGHT_BITS, ArchConfig, SearchSpace
from mcuformer.budget import Budget
from mcuformer.errors import DoesNotFit, UserError

# The rank-ratio grid of the space evolution (nas.space_evolution.RANK_GRID): 0.125 .. 0.75 and dense.
RANK_GRID: tuple[float, ...] = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.0)

INT_KEYS = ("image_sizes", "patch_sizes", "embed_dims", "depths", "num_heads")
FLOAT_KEYS = ("mlp_ratios", "rank_ratios")
SPACE_KEYS = (*INT_KEYS, *FLOAT_KEYS, "per_layer", "stem_channels", "stem_layers", "weight_bits")
MAX_IMAGE_SIZE = 1024
MAX_DEPTH = 64
MAX_EMBED_DIM = 4096


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    choices: dict[str, Any]


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "digits",
            "8x8 digits (scikit-learn); the original built-in space",
            {"image_sizes": [8, 12, 16], "patch_sizes": [2, 4], "embed_dims": [32, 48, 64], "depths": [1, 2, 3],
             "num_heads": [2, 4], "mlp_ratios": [1, 2, 3]},
        ),
        Preset(
            "mnist",
            "28x28 images (MNIST-like), 16-256 KiB SRAM",
            {"image_sizes": [16, 20, 24, 28], "patch_sizes": [2, 4], "embed_dims": [32, 48, 64, 96, 128],
             "depths": [1, 2, 3, 4, 5, 6, 7, 8], "num_heads": [2, 4], "mlp_ratios": [1, 2, 3, 4],
             "stem_channels": [16], "stem_layers": 2},
        ),
        Preset(
            "vww96",
            "96x96 RGB (visual-wake-words-like), 256 KiB / 1 MiB boards",
            {"image_sizes": [64, 80, 96], "patch_sizes": [4, 8], "embed_dims": [64, 96, 128, 160, 192],
             "depths": [2, 4, 6, 8, 10], "num_heads": [3, 4, 6, 8], "mlp_ratios": [1, 2, 3, 4]},
        ),
        Preset(
            "mcuformer",
            "MCUFormer scale (ImageNet-like, up to 240x240, E256, 14 layers) for 320-512 KiB boards",
            {"image_sizes": [160, 176, 192, 208, 224, 240], "patch_sizes": [8, 16],
             "embed_dims": [96, 128, 160, 192, 216, 256], "depths": [4, 6, 8, 10, 12, 14], "num_heads": [3, 4, 6, 8],
             "mlp_ratios": [1, 2, 3, 4]},
        ),
    )
}  # fmt: skip


def preset_for(image_size: int) -> str:
    """The preset of the input size (for tools without a budget, e.g. nas.train_ddp)."""
    for limit, name in ((16, "digits"), (48, "mnist"), (128, "vww96")):
        if image_size <= limit:
            return name
    return "mcuformer"


def space_from_dict(data: dict[str, Any], source: str, in_channels: int, num_classes: int) -> SearchSpace:
    """Validate a space's choices (one-line UserError naming ``source`` and the key) -> SearchSpace.
    Missing ``rank_ratios`` default to the space-evolution grid; ``per_layer`` defaults to true."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: a search space is a table of choices, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SPACE_KEYS))
    if unknown:
        hint = " (set by the data set)" if set(unknown) & {"in_channels", "num_classes"} else ""
        raise UserError(f"{source}: unknown key(s) {unknown}{hint}; allowed: {', '.join(SPACE_KEYS)}")
    missing = [k for k in INT_KEYS + ("mlp_ratios",) if k not in data]
    if missing:
        raise UserError(f"{source}: missing key(s) {missing}")
    values: dict[str, Any] = {}
    for key in INT_KEYS + FLOAT_KEYS:
        if key not in data:
            continue
        raw = data[key]
        if not isinstance(raw, list) or not raw:
            raise UserError(f"{source}: '{key}' must be a non-empty list, got {raw!r}")
        want_int = key in INT_KEYS
        for v in raw:
            if isinstance(v, bool) or not isinstance(v, int | float) or (want_int and not float(v).is_integer()):
                raise UserError(f"{source}: '{key}' must hold {'integers' if want_int else 'numbers'}, got {v!r}")
        values[key] = tuple(sorted({int(v) if want_int else float(v) for v in raw}))
    limits = {"image_sizes": MAX_IMAGE_SIZE, "patch_sizes": MAX_IMAGE_SIZE, "embed_dims": MAX_EMBED_DIM,
              "depths": MAX_DEPTH, "num_heads": MAX_EMBED_DIM}  # fmt: skip
    for key, top in limits.items():
        bad = [v for v in values[key] if not 1 <= v <= top]
        if bad:
            raise UserError(f"{source}: '{key}' must be between 1 and {top}, got {bad}")
    if any(not 0 < r <= 16 for r in values["mlp_ratios"]):
        raise UserError(f"{source}: 'mlp_ratios' must be in (0, 16], got {list(values['mlp_ratios'])}")
    ranks = values.get("rank_ratios", RANK_GRID)
    if any(not 0 <= r < 1 for r in ranks):
        raise UserError(f"{source}: 'rank_ratios' must be in [0, 1) (0 = dense), got {list(ranks)}")
    if not any(s % p == 0 for s in values["image_sizes"] for p in values["patch_sizes"]):
        raise UserError(f"{source}: no image size in {list(values['image_sizes'])} is divisible by a patch size")
    for e in values["embed_dims"]:
        if not any(e % h == 0 for h in values["num_heads"]):
            raise UserError(f"{source}: embed dim {e} is not divisible by any of num_heads {list(values['num_heads'])}")
    per_layer = data.get("per_layer", True)
    if not isinstance(per_layer, bool):
        raise UserError(f"{source}: 'per_layer' must be true or false, got {per_layer!r}")
    if in_channels < 1 or num_classes < 2:
        raise UserError(f"{source}: the data must have >= 1 channel and >= 2 classes")
    stems = data.get("stem_channels", [])
    if not isinstance(stems, list) or any(
        isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= MAX_STEM_CHANNELS for w in stems
    ):
        raise UserError(
            f"{source}: 'stem_channels' must be a list of stem widths in 1..{MAX_STEM_CHANNELS} (no stem is always "
            f"a choice), got {stems!r}"
        )
    if stems and not any(p % SPACE_STEM_STRIDE == 0 for p in values["patch_sizes"]):
        raise UserError(f"{source}: 'stem_channels' needs an even patch size (the stem halves the resolution)")
    stem_layers = data.get("stem_layers", 1)
    if isinstance(stem_layers, bool) or stem_layers not in (1, 2):
        raise UserError(f"{source}: 'stem_layers' must be 1 or 2, got {stem_layers!r}")
    if stem_layers == 2 and any(w % 2 or w < 2 for w in stems):
        raise UserError(f"{source}: with 'stem_layers' 2 every stem width must be even (the first layer has half)")
    bits = data.get("weight_bits", [8])
    if not isinstance(bits, list) or not bits or any(isinstance(b, bool) or b not in WEIGHT_BITS for b in bits):
        raise UserError(f"{source}: 'weight_bits' must be a list of precisions from {list(WEIGHT_BITS)}, got {bits!r}")
    if 8 not in bits:
        raise UserError(f"{source}: 'weight_bits' must include 8 (int4 is chosen per block where it costs little)")
    return SearchSpace(
        image_sizes=values["image_sizes"],
        patch_sizes=values["patch_sizes"],
        embed_dims=values["embed_dims"],
        depths=values["depths"],
        num_heads=values["num_heads"],
        mlp_ratios=values["mlp_ratios"],
        rank_ratios=tuple(sorted(r for r in ranks if r > 0)) + ((0.0,) if 0.0 in ranks else ()),
        in_channels=in_channels,
        num_classes=num_classes,
        per_layer=per_layer,
        stem_channels=tuple(sorted(set(stems))),
        stem_layers=stem_layers,
        int4_layers=tuple(range(max(values["depths"]))) if 4 in bits else (),
    )


def read_space_file(path: Path) -> dict[str, Any]:
    """A .json or .toml file -> its table (one-line UserError on a missing or unparsable file)."""
    if not path.is_file():
        raise UserError(f"search space '{path}' not found: give a preset ({', '.join(PRESETS)}) or a .json/.toml file")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise UserError(f"{path}: TOML needs Python 3.11 or newer; write the space as .json") from None
            return tomllib.loads(text)
        if path.suffix.lower() == ".json":
            return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise UserError(f"{path}: cannot parse ({str(exc).splitlines()[0]})") from None
    raise UserError(f"{path}: a search space file must end in .json or .toml")


def load_space(spec: str, in_channels: int, num_classes: int) -> SearchSpace:
    """``spec`` is a preset name (``PRESETS``) or a path to a .json/.toml space file."""
    if spec in PRESETS:
        return space_from_dict(PRESETS[spec].choices, f"preset '{spec}'", in_channels, num_classes)
    return space_from_dict(read_space_file(Path(spec)), spec, in_channels, num_classes)


def describe_space(space: SearchSpace) -> str:
    def join(values: tuple) -> str:
        return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

    return (
        f"res {join(space.image_sizes)} patch {join(space.patch_sizes)} E {join(space.embed_dims)} "
        f"D {join(space.depths)} heads {join(space.num_heads)} mlp {join(space.mlp_ratios)} "
        f"rank {join(space.rank_ratios)}"
        + (f" stem 0/{join(space.stem_channels)}" if space.stem_channels else "")
        + (f" ({space.stem_layers} layers)" if space.stem_channels and space.stem_layers > 1 else "")
        + (f" int4 in blocks {join(space.int4_layers)}" if space.int4_layers else "")
        + ("" if space.per_layer else " (shared by all layers)")
    )


# ----------------------------------------------------------------------------------- budget sizing
CostFn = Callable[[ArchConfig], tuple[int, int]]  # arch -> (peak SRAM bytes, flash bytes), exact


@dataclass(frozen=True)
class SizedSpace:
    space: SearchSpace
    binding: str  # "sram" or "flash": the resource the largest subnet exceeds by the larger factor
    largest_cost: tuple[int, int]
    smallest_cost: tuple[int, int]
    note: str  # one line for the log


def _resolutions(image_size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Input resolutions (the data's size and smaller, multiples of 4) and patch sizes for them."""
    if image_size <= 16:
        return (8, 12, 16), (2, 4)
    top = image_size if image_size % 4 == 0 else image_size // 4 * 4
    if image_size <= 48:  # patches of 4 (and 7 where it tiles): at most 144 tokens, as MNIST-scale ViTs use
        sizes = sorted({max(8, top // 2 // 4 * 4), max(8, top * 3 // 4 // 4 * 4), top - 4 * (top >= 24), top})
        return tuple(sizes), (4, 7) if image_size % 7 == 0 else (4, 8)
    if image_size <= 128:
        sizes = sorted({max(32, top // 2 // 8 * 8), top * 3 // 4 // 8 * 8, top // 8 * 8})
        return tuple(s for s in sizes if s > 0), (4, 8)
    sizes = sorted({top // 2 // 16 * 16, top * 3 // 4 // 16 * 16, top // 16 * 16})
    return tuple(s for s in sizes if s > 0), (8, 16)


# The sized default's convolutional stem for inputs of 17-48 px (subnets with an even patch may take it):
# a 3x3 stride-1 conv of 8 channels, then a stride-2 conv of 16. Measured on MNIST (docs/nas.md,
# "Convolutional stem"): the plain ViT trails the fixed CNN by several points, the stem closes most of it.
DEFAULT_STEM = (16,)


def _stem_choices(image_size: int, patches: tuple[int, ...]) -> tuple[int, ...]:
    return DEFAULT_STEM if 16 < image_size <= 48 and any(p % SPACE_STEM_STRIDE == 0 for p in patches) else ()


def _ladder_space(
    rung: int, sizes: tuple[int, ...], patches: tuple[int, ...], in_channels: int, num_classes: int, stem=()
) -> SearchSpace:
    """Rung k of the growing ladder: widest embed dim 32 * 1.25^k (multiple of 8), deepest 2 + k layers,
    the narrower half of the widths and depths kept so the smallest subnet stays small; ``stem``: the
    two-layer stem widths the subnets may take."""
    step = 8 if 32 * 1.25**rung < 96 else 24  # from 96 on, multiples of 24: divisible by 3, 4, 6 and 8 heads
    e_max = max(32, int(round(32 * 1.25**rung / step)) * step)
    d_max = min(MAX_DEPTH, 2 + rung)
    embed = sorted({max(16, e_max // 2 // step * step), max(16, e_max * 3 // 4 // step * step), e_max})
    depths = sorted({max(1, d_max // 3), max(1, (d_max + 1) // 2), max(1, 2 * d_max // 3), d_max})
    heads = (2, 4) if step == 8 else (3, 4, 6, 8)
    return SearchSpace(
        image_sizes=sizes,
        patch_sizes=patches,
        embed_dims=tuple(embed),
        depths=tuple(depths),
        num_heads=heads,
        mlp_ratios=(1.0, 2.0, 3.0, 4.0) if rung >= 2 else (1.0, 2.0, 3.0),
        rank_ratios=RANK_GRID,
        in_channels=in_channels,
        num_classes=num_classes,
        stem_channels=tuple(stem),
        stem_layers=2 if stem else 1,
    )


def binding_resource(cost: tuple[int, int], sram_bytes: int, flash_bytes: int) -> str:
    """The resource used the most, relative to its budget."""
    return "sram" if cost[0] / sram_bytes >= cost[1] / flash_bytes else "flash"


OVER_FRACTION = 0.25  # a sized space must have at least this share of uniform random subnets over the budget
SIZING_SAMPLES = 48


def budget_space(
    image_size: int,
    in_channels: int,
    num_classes: int,
    sram_bytes: int,
    flash_bytes: int,
    cost: CostFn,
    sample: Callable[[SearchSpace, random.Random], ArchConfig],
) -> SizedSpace:
    """The first rung of a growing ladder of spaces (wider and deeper ViTs at the data's resolutions)
    whose smallest subnet fits the budget while its largest subnet exceeds it (SRAM or flash) and at
    least OVER_FRACTION of SIZING_SAMPLES uniform random subnets (``sample``, seeded) exceed it too:
    the budget then binds where the search looks, not only at the space's corner. If no rung gets
    there before the smallest subnet stops fitting, the last rung whose smallest subnet fits is used
    (the note says how much of it is over the budget). If even the first rung's smallest subnet does
    not fit, raises UserError (the budget is too small for any ViT of this input)."""
    sizes, patches = _resolutions(image_size)
    budget = Budget(sram_bytes, flash_bytes)

    top_rung = 18  # embed 32 * 1.25^18 ~ 1,800, depth 20: beyond any microcontroller
    candidate: tuple[SearchSpace, tuple[int, int], tuple[int, int], float] | None = None
    for rung in range(top_rung + 1):
        space = _ladder_space(rung, sizes, patches, in_channels, num_classes, _stem_choices(image_size, patches))
        small, large = cost(space.smallest()), cost(space.largest())
        if not budget.fits(*small):
            if candidate is None:
                raise DoesNotFit(
                    f"no ViT of a {image_size}x{image_size} input fits {sram_bytes} B SRAM / {flash_bytes} B flash: "
                    f"the smallest subnet needs {small[0]} B SRAM and {small[1]} B flash"
                )
            break
        rng = random.Random(rung)
        over = sum(not budget.fits(*cost(sample(space, rng))) for _ in range(SIZING_SAMPLES)) / SIZING_SAMPLES
        candidate = (space, small, large, over)
        if not budget.fits(*large) and over >= OVER_FRACTION:
            break
    assert candidate is not None
    space, small, large, over = candidate
    binding = binding_resource(large, sram_bytes, flash_bytes)
    factor = large[0] / sram_bytes if binding == "sram" else large[1] / flash_bytes
    note = (
        f"space sized to the budget: largest subnet needs {large[0]} B SRAM / {large[1]} B flash ({factor:.2f}x "
        f"the {binding} budget), smallest {small[0]} B / {small[1]} B fits, {100 * over:.0f}% of random subnets "
        + (f"over the budget: {binding} binds" if not budget.fits(*large) else "over: the budget does not bind")
    )
    return SizedSpace(space, binding, large, small, note)


FILL_TARGET = 0.85  # a winner below this fill of its binding resource gets the runner-up analysis


def fill(cost: tuple[int, int], sram_bytes: int, flash_bytes: int) -> dict[str, Any]:
    """Use over budget per resource (peak SRAM, flash) and the binding (more filled) resource."""
    sram_fill, flash_fill = cost[0] / sram_bytes, cost[1] / flash_bytes
    binding = "sram" if sram_fill >= flash_fill else "flash"
    return {"sram_fill": sram_fill, "flash_fill": flash_fill, "binding": binding, "fill": max(sram_fill, flash_fill)}


def fill_analysis(
    winner: tuple[ArchConfig, float, int, int],
    feasible: list[tuple[ArchConfig, float, int, int]],
    sram_bytes: int,
    flash_bytes: int,
) -> dict[str, Any]:
    """The winner's fill; where it is below FILL_TARGET, the most accurate feasible candidate (arch,
    search accuracy, peak SRAM, flash) that fills at least FILL_TARGET of a resource and why it lost,
    or, if none was evaluated, the fullest one (the space or the sampling is then the limit)."""
    arch, acc, sram, flash = winner
    out: dict[str, Any] = fill((sram, flash), sram_bytes, flash_bytes)
    if out["fill"] >= FILL_TARGET:
        out["note"] = f"the winner fills {100 * out['fill']:.0f}% of the {out['binding']} budget"
        return out
    full = [p for p in feasible if fill(p[2:], sram_bytes, flash_bytes)["fill"] >= FILL_TARGET]
    if full:
        a, a_acc, a_sram, a_flash = max(full, key=lambda p: p[1])  # first of equals: evaluation order
        f = fill((a_sram, a_flash), sram_bytes, flash_bytes)
        out["fuller_candidate"] = {"arch": a.to_json(), "summary": a.short(), "search_top1": a_acc,
                                   "peak_sram_bytes": a_sram, "flash_bytes": a_flash, **f}  # fmt: skip
        out["note"] = (
            f"the winner fills {100 * out['fill']:.0f}% of the {out['binding']} budget; the most accurate candidate "
            f"filling >= {100 * FILL_TARGET:.0f}% ({a.short()}, {100 * f['fill']:.0f}% of {f['binding']}) lost on "
            f"accuracy with the supernet's weights: {a_acc:.4f} vs {acc:.4f}: the training (a bigger subnet "
            f"trained no better), not the space, is the limit"
        )
    else:
        top = max(feasible, key=lambda p: fill(p[2:], sram_bytes, flash_bytes)["fill"], default=winner)
        f = fill(top[2:], sram_bytes, flash_bytes)
        out["fuller_candidate"] = None
        out["note"] = (
            f"the winner fills {100 * out['fill']:.0f}% of the {out['binding']} budget; no feasible candidate "
            f"evaluated fills >= {100 * FILL_TARGET:.0f}% (the fullest: {100 * f['fill']:.0f}% of {f['binding']}, "
            f"{top[0].short()}): the space (or the search's sampling of it) is the limit"
        )
    return out

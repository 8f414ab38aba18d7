"""Shared model builders of the tests: random architectures of the default space and run
directories with random weights (what `mcuformer search` writes, without the training)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from mcuformer.arch import ArchConfig, SearchSpace, save_json
from mcuformer.model import ViT


def random_arch(rng: random.Random) -> ArchConfig:
    space = SearchSpace()
    depth = rng.choice(space.depths)
    e = rng.choice(space.embed_dims)
    return ArchConfig(
        image_size=rng.choice(space.image_sizes),
        in_channels=rng.choice((1, 3)),
        patch_size=rng.choice(space.patch_sizes),
        embed_dim=e,
        depth=depth,
        num_heads=tuple(rng.choice(space.num_heads) for _ in range(depth)),
        mlp_ratio=tuple(rng.choice(space.mlp_ratios) for _ in range(depth)),
        attn_rank=tuple(space.rank(rng.choice(space.rank_ratios), e) for _ in range(depth)),
        mlp_rank=tuple(space.rank(rng.choice(space.rank_ratios), e) for _ in range(depth)),
        num_classes=10,
    )


def make_random_run(tmp_path: Path, arch: ArchConfig) -> Path:
    """A run directory with random weights and a small data set (quick calibration and evaluation)."""
    torch.manual_seed(0)
    run = tmp_path / "run"
    run.mkdir()
    torch.save(ViT(arch).state_dict(), run / "model.pt")
    data = tmp_path / "small.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y=np.arange(30) % 10)
    save_json(str(run / "arch.json"), {"arch": arch.to_json(), "data": str(data), "seed": 0})
    return run

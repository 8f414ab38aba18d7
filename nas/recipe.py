"""The training recipe of a search: augmentation suited to the data, label smoothing, optional
distillation from a small CNN teacher, device, threads, and a fine-tuning schedule that grows with
the subnet.

- augmentation: ``nas.data_pipeline.default_augment`` unless set (random crop with padding of about
  1/12 of the side; horizontal flips only for RGB images that are not digits);
- label smoothing 0.1 on every cross-entropy with the labels;
- teacher "cnn": the baseline CNN of ``nas.cnn`` at width ``TEACHER_WIDTH``, trained first with the
  same recipe; the supernet's largest subnet and the fine-tuned winner then mix their cross-entropy
  with Hinton distillation (weight ``distill_weight``, 0.5 by default, temperature 2);
- fine-tuning epochs: the base count times sqrt(parameters / 100k), clamped to [1, 2]: a subnet with
  400k parameters gets twice the epochs of one with 100k or fewer;
- peak learning rate: 5e-3 up to embed dim 64, then 5e-3 x 64 / embed dim (``lr_for_width``);
- threads: 1 for subnets under 1 M parameters (tiny models do not scale on a shared machine), all
  cores above.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mcuformer.data import Dataset
from mcuformer.nas.cnn import CNN
from mcuformer.nas.data_pipeline import default_augment, resolve_device
from mcuformer.nas.train import TrainConfig, train_classifier

TEACHER_WIDTH = 32
LR_REFERENCE_WIDTH = 64  # ViTs up to this embed dim train at TrainConfig.lr; wider ones at a 1/width share
SMALL_MODEL_PARAMS = 100_000
THREADED_MODEL_PARAMS = 1_000_000


@dataclass(frozen=True)
class Recipe:
    device: str = "auto"  # auto | cpu | cuda
    label_smoothing: float = 0.1
    crop_pad: int | None = None  # None: from the data (default_augment)
    flip: bool | None = None  # None: from the data (never for digits)
    teacher: str = "none"  # none | cnn
    # of the KL to the teacher. At 64 KiB / 256 KiB 0.9 gave subnets of 96k-155k parameters 0.2 point more
    # than 0.5 but tiny ones (11-45k) 0.87 point less, 3 seeds each (docs/nas.md): 0.5 is the safe default
    distill_weight: float = 0.5
    threads: int = 0  # 0: by model size (see the module docstring)


def threads_for(params: int, recipe: Recipe) -> int:
    if recipe.threads:
        return recipe.threads
    return (os.cpu_count() or 1) if params >= THREADED_MODEL_PARAMS else 1


def train_config(recipe: Recipe, data: Dataset, epochs: int, seed: int, params: int, **overrides) -> TrainConfig:
    aug = default_augment(data.name, data.in_channels, data.image_size)
    return TrainConfig(
        epochs=epochs,
        seed=seed,
        augment_shift=aug.crop_pad if recipe.crop_pad is None else recipe.crop_pad,
        flip=aug.flip if recipe.flip is None else recipe.flip,
        label_smoothing=recipe.label_smoothing,
        distill_weight=recipe.distill_weight if recipe.teacher != "none" else 0.0,
        device=resolve_device(recipe.device).type,
        threads=threads_for(params, recipe),
        **overrides,
    )


def lr_for_width(embed_dim: int) -> float:
    """AdamW's peak learning rate for a ViT (a supernet: its widest subnet) trained from scratch:
    ``TrainConfig.lr`` (5e-3) up to ``LR_REFERENCE_WIDTH`` wide, then shrinking as 1 / width (Adam's
    update size does not shrink with fan-in as SGD's does). Measured on MNIST, 40 epochs, seed 0: E160
    D4 reached 64.5 % at 5e-3, 97.7 % at 2e-3 (this rule) and 98.1 % at 1e-3; E64 trains the same at
    5e-3 and 2e-3 (docs/nas.md)."""
    return TrainConfig.lr * min(1.0, LR_REFERENCE_WIDTH / embed_dim)


def finetune_epochs_for(params: int, base: int) -> int:
    """Longer fine-tuning for larger subnets: base * sqrt(params / 100k), clamped to [base, 2 * base]."""
    return int(round(base * min(2.0, max(1.0, math.sqrt(params / SMALL_MODEL_PARAMS)))))


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_teacher(
    recipe: Recipe, data: Dataset, epochs: int, seed: int, log: Callable[[str], None]
) -> nn.Module | None:
    """The distillation teacher of the recipe (None for teacher "none"), trained on ``data``."""
    if recipe.teacher == "none":
        return None
    import torch

    torch.manual_seed(seed)
    teacher = CNN(data.in_channels, TEACHER_WIDTH, data.num_classes)
    cfg = train_config(Recipe(**{**recipe.__dict__, "teacher": "none"}), data, epochs, seed, num_params(teacher))
    result = train_classifier(teacher, teacher, data, cfg, log, name="teacher")
    log(f"teacher: CNN width {TEACHER_WIDTH}, {num_params(teacher)} parameters, val top-1 {result['val_acc']:.4f}")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher

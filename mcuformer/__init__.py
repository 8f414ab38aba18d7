"""mcuformer: search, compile and verify tiny vision transformers for microcontrollers."""

from pathlib import Path as _Path

from mcuformer import _source_tree
from mcuformer.version import __version__

__all__ = ["__version__", "compile"]

_source_tree.install(_Path(__file__).parent)


def compile(model, board: str, calibration, out, **options):  # noqa: A001 - the documented public name
    """Compile a ViT (torch.nn.Module, .onnx file or search run) for a board: see mcuformer.api.compile."""
    from mcuformer.api import compile as _compile  # lazy: `import mcuformer` must not load torch and the compiler

    return _compile(model, board, calibration, out, **options)

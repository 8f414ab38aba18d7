"""The package version (core: codegen stamps it into generated files without importing the app)."""

__version__ = "0.1.0"  # keep equal to pyproject.toml's [project] version (tests/test_layers.py)

"""Import a source checkout's own subpackages, whatever `mcuformer` install is active.

pyproject.toml installs the top-level folders nas/, codegen/, runtime_c/ and boards/ as
`mcuformer.nas`, `mcuformer.codegen`, ... (package-dir). An installed wheel has them inside the
package; an editable install maps them to the ONE checkout it was made from. A second checkout put on
sys.path (a git worktree, `PYTHONPATH=checkout`, benchmarks run from a clone) would then import its
own `mcuformer` but another tree's subpackages. In a checkout this finder maps the four names to the
folders beside this package first, so a tree always runs its own code.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

SUBPACKAGE_FOLDERS = {"mcuformer.nas": "nas", "mcuformer.codegen": "codegen",
                      "mcuformer.runtime_c": "runtime_c", "mcuformer.boards": "boards"}  # fmt: skip


class SourceTreeFinder(importlib.abc.MetaPathFinder):
    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path=None, target=None):  # noqa: ANN001 - importlib's signature
        folder = SUBPACKAGE_FOLDERS.get(fullname)
        if folder is None:
            return None
        init = self.root / folder / "__init__.py"
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[str(init.parent)])


def install(package_dir: Path) -> None:
    """Called by mcuformer/__init__.py; a no-op unless ``package_dir`` sits in a source checkout."""
    root = package_dir.resolve().parent
    if not (root / "pyproject.toml").is_file():
        return  # an installed wheel: the subpackages are inside the package
    if not all((root / folder / "__init__.py").is_file() for folder in SUBPACKAGE_FOLDERS.values()):
        return
    if not any(isinstance(f, SourceTreeFinder) and f.root == root for f in sys.meta_path):
        sys.meta_path.insert(0, SourceTreeFinder(root))

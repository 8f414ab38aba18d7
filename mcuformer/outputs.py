"""Output directories that never cost the user data.

Every directory this tool writes (a search RUN, an export PROJ, a demo) is built in a hidden
temporary sibling and renamed into place only when the job succeeds, and it carries a marker file
naming its kind. ``--force`` replaces an existing directory only if it carries the marker of the same
kind, and never the current directory, the home directory, ``/``, an input of the job, anything
inside an input or anything containing one (all compared as resolved paths, so a symlink cannot
slip through). Temporaries of killed jobs (their process is gone) are removed on the next job that
writes into the same parent directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from mcuformer.errors import UserError

MARKER = ".mcuformer-output.json"
_TEMPORARY_RE = re.compile(r"^\..+\.(tmp|old)-(\d+)-[^/]+$")


class OutputKind(str, Enum):
    RUN = "run"  # mcuformer search
    PROJECT = "project"  # mcuformer export
    DEMO = "demo"  # mcuformer demo


_COMMAND = {OutputKind.RUN: "search", OutputKind.PROJECT: "export", OutputKind.DEMO: "demo"}


def marker_kind(directory: Path) -> str | None:
    """The kind recorded in ``directory``'s marker, or None when it has no (readable) marker."""
    try:
        data = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) and data.get("tool") == "mcuformer" else None


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def check_output(out: Path, kind: OutputKind, force: bool, inputs: Sequence[Path] = ()) -> Path:
    """Validate ``--out`` before any work starts; return it resolved. Raises UserError (one line)."""
    try:
        resolved = out.expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise UserError(f"--out {out}: cannot resolve the path ({exc})") from None
    if not resolved.exists():
        if resolved.parent.exists() and not resolved.parent.is_dir():
            raise UserError(f"--out {out}: {resolved.parent} is a file, not a directory; choose another --out")
        return resolved
    if not resolved.is_dir():
        raise UserError(f"--out {out} exists and is not a directory; remove it or choose another --out")
    protected = {  # the most specific name first: / contains everything
        "the root directory": Path("/"),
        "the home directory": Path.home().resolve(),
        "the current directory": Path.cwd().resolve(),
    }
    for what, path in protected.items():
        if resolved == path or (what != "the root directory" and path.is_relative_to(resolved)):
            raise UserError(f"--out {out} is or contains {what}; mcuformer never replaces it: choose a new directory")
    for source in inputs:
        source = source.expanduser().resolve()
        if _overlaps(resolved, source):
            raise UserError(
                f"--out {out} overlaps the input {source}; mcuformer never replaces its input: choose another --out"
            )
    if not force:
        raise UserError(f"{resolved} already exists; pass --force to replace it or choose another --out")
    found = marker_kind(resolved)
    if found != kind.value:
        what = f"an mcuformer {found}" if found else "not written by mcuformer"
        raise UserError(
            f"--force refused: {resolved} is {what}, and --force replaces only an earlier `mcuformer "
            f"{_COMMAND[kind]}` {kind.value}; remove it yourself or choose another --out"
        )
    return resolved


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def clean_stale_temporaries(parent: Path) -> list[Path]:
    """Remove the temporaries (``.NAME.tmp-PID-*``, ``.NAME.old-PID-*``) that this tool left in
    ``parent`` when it was killed: only directories that carry the marker and whose process is gone."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY_RE.match(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir() or marker_kind(entry) is None:
            continue
        if not _process_alive(int(match.group(2))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _write_marker(directory: Path, kind: OutputKind) -> None:
    (directory / MARKER).write_text(json.dumps({"tool": "mcuformer", "kind": kind.value}) + "\n")


def _first_missing_ancestor(path: Path) -> Path | None:
    missing = None
    while not path.exists():
        missing, path = path, path.parent
    return missing


def _remove_empty_tree(root: Path | None) -> None:
    """Remove ``root`` if it holds nothing but empty directories (the parents this job created)."""
    if root is None or not root.is_dir():
        return
    if all(p.is_dir() and not p.is_symlink() for p in root.rglob("*")):
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def atomic_directory(out: Path, kind: OutputKind, force: bool, inputs: Sequence[Path] = ()) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``out`` only if the block succeeds (see module doc)."""
    resolved = check_output(out, kind, force, inputs)
    created = _first_missing_ancestor(resolved.parent)
    try:
        resolved.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(resolved.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{resolved.name}.tmp-{os.getpid()}-", dir=resolved.parent))
    except OSError as exc:
        _remove_empty_tree(created)
        raise UserError(
            f"--out {out}: cannot write in {resolved.parent} ({exc.strerror}); choose another --out"
        ) from None
    try:
        _write_marker(tmp, kind)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty_tree(created)
        raise
    if resolved.exists():
        check_output(out, kind, True, inputs)  # still ours (the job ran for minutes)
        old = resolved.parent / f".{resolved.name}.old-{os.getpid()}-{int(time.time() * 1000)}"
        resolved.rename(old)
        tmp.rename(resolved)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(resolved)

"""Bad input never costs the user data: every case runs the real CLI in a subprocess and checks the
exit code (2 usage/data, 1 does not fit), a single `error:` line on stderr, no traceback, and that
every file of the working directory (the inputs among them) is byte-identical afterwards, with
nothing created or removed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mcuformer.arch import ArchConfig, save_json
from mcuformer.data import load_dataset
from mcuformer.export import run_export
from mcuformer.model import ViT
from mcuformer.outputs import MARKER, clean_stale_temporaries
from mcuformer.search_options import SearchOptions, keep_checkpoints, prepare_partial
from mcuformer.workflow import run_search

BOARD = "NUCLEO-F412ZG"
TINY = ArchConfig(8, 1, 2, 16, 1, (2,), (1.0,), (0,), (0,), 10)
REPO = Path(__file__).resolve().parents[1]


def quiet(_: str) -> None:
    pass


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory below root (symlinks not followed) -> sha256 of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """work/: run/ (random weights), data.npz, project/ (an export of run), mine/ (a user's folder)."""
    work = tmp_path_factory.mktemp("safety") / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    np.savez(work / "data.npz", x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y=np.arange(40) % 10)
    run = work / "run"
    run.mkdir()
    torch.manual_seed(0)
    torch.save(ViT(TINY).state_dict(), run / "model.pt")
    save_json(str(run / "arch.json"), {"arch": TINY.to_json(), "data": str(work / "data.npz"), "seed": 0})
    run_export(run, BOARD, work / "project", force=False, log=quiet, measure=False)
    (work / "mine").mkdir()
    (work / "mine" / "thesis.tex").write_text("months of work\n")
    return work


@pytest.fixture
def work(base: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "work"
    shutil.copytree(base, copy, symlinks=True)
    (tmp_path / "home").mkdir()
    return copy


def cli(work: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(work.parent / "home"), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "mcuformer", *argv]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout, env=env)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def _arch_json(work: Path, **change) -> None:
    report = json.loads((work / "run/arch.json").read_text())
    report["arch"].update(change)
    (work / "run/arch.json").write_text(json.dumps(report))


def _rng_images(n: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, size, size), dtype=np.uint8)


# Each case: (id, setup(work) run before the snapshot, argv, exit code, message fragment).
EXPORT = ("export", "run", "--board", BOARD, "--no-measure")
SEARCH = ("search", "--board", BOARD, "--epochs", "1", "--population", "4", "--generations", "1")
CASES = [
    # data loss: --force never replaces the input, the working directory, home, / or a user's folder
    ("export-out-is-run", None, (*EXPORT, "--out", "run", "--force"), 2, "overlaps the input"),
    ("export-out-is-cwd", None, (*EXPORT, "--out", ".", "--force"), 2, "current directory"),
    ("export-out-contains-cwd", None, (*EXPORT, "--out", "..", "--force"), 2, "is or contains the"),
    ("export-out-inside-run", lambda w: (w / "run/sub").mkdir(), (*EXPORT, "--out", "run/sub", "--force"), 2,
     "overlaps the input"),
    ("export-out-symlink-to-run", lambda w: (w / "link").symlink_to(w / "run"), (*EXPORT, "--out", "link", "--force"),
     2, "overlaps the input"),
    ("export-out-home", None, (*EXPORT, "--out", "~", "--force"), 2, "home directory"),
    ("export-out-root", None, (*EXPORT, "--out", "/", "--force"), 2, "root directory"),
    ("export-force-user-folder", None, (*EXPORT, "--out", "mine", "--force"), 2, "not written by mcuformer"),
    ("search-force-over-project", None, (*SEARCH, "--out", "project", "--force"), 2, "is an mcuformer project"),
    ("search-out-is-data", None, (*SEARCH, "--data", "data.npz", "--out", "data.npz", "--force"), 2,
     "not a directory"),
    ("demo-out-is-cwd", None, ("demo", "--out", ".", "--force"), 2, "current directory"),
    ("export-exists-no-force", None, (*EXPORT, "--out", "mine"), 2, "pass --force"),
    # validation before minutes of training
    ("search-impossible-budget", None, (*SEARCH, "--sram", "1B", "--out", "r"), 1, "the smallest subnet needs"),
    ("search-impossible-budget-space", None, (*SEARCH, "--space", "digits", "--sram", "1B", "--out", "r"), 1,
     "even the smallest subnet of the search space"),
    ("search-budget-over-board", None, (*SEARCH, "--sram", "4MiB", "--out", "r"), 2, "exceeds board"),
    ("search-population-0", None, (*SEARCH[:-4], "--population", "0", "--out", "r"), 2,
     "argument --population: must be at least 2, got 0"),
    ("search-parents-0", None, (*SEARCH, "--parents", "0", "--out", "r"), 2, "--parents"),
    ("search-parents-over-population", None, (*SEARCH, "--parents", "9", "--out", "r"), 2, "exceeds --population"),
    ("search-epochs-negative", None, (*SEARCH[:3], "--epochs", "-1", "--out", "r"), 2,
     "argument --epochs: must be at least 0, got -1"),
    ("search-finetune-negative", None, (*SEARCH, "--finetune-epochs", "-1", "--out", "r"), 2, "--finetune-epochs"),
    ("search-missing-data", None, (*SEARCH, "--data", "nope.npz", "--out", "r"), 2, "not found"),
    # data that is wrong says what is wrong with it
    ("data-single-class", lambda w: _npz(w / "d/one.npz", x=_rng_images(10), y=np.full(10, 3)),
     (*SEARCH, "--data", "d/one.npz", "--out", "r"), 2, "single class (3)"),
    ("data-empty-file", lambda w: _write(w / "d/empty.npz", b""), (*SEARCH, "--data", "d/empty.npz", "--out", "r"), 2,
     "the file is empty"),
    ("data-text-file", lambda w: _write(w / "d/notes.npz", b"x,y\n1,2\n"), (*SEARCH, "--data", "d/notes.npz", "--out",
     "r"), 2, "not an .npz archive"),
    ("data-no-images", lambda w: _npz(w / "d/none.npz", x=np.zeros((0, 8, 8), np.uint8), y=np.zeros(0, np.int64)),
     (*SEARCH, "--data", "d/none.npz", "--out", "r"), 2, "holds no images"),
    ("data-mixed-sizes", lambda w: _npz(w / "d/mixed.npz", x=np.array([np.zeros((8, 8)), np.zeros((9, 9))],
     dtype=object), y=np.array([0, 1])), (*SEARCH, "--data", "d/mixed.npz", "--out", "r"), 2, "different sizes"),
    # damaged runs: one line, before allocating anything
    ("run-model-empty", lambda w: _write(w / "run/model.pt", b""), (*EXPORT, "--out", "p"), 2, "truncated"),
    ("run-model-truncated", lambda w: _truncate(w / "run/model.pt", 300), (*EXPORT, "--out", "p"), 2, "truncated"),
    ("run-absurd-embed", lambda w: _arch_json(w, embed_dim=100000, num_heads=[2]), (*EXPORT, "--out", "p"), 2,
     "embed_dim must be an integer in 1..4096"),
    ("run-negative-embed", lambda w: _arch_json(w, embed_dim=-16), (*EXPORT, "--out", "p"), 2, "embed_dim"),
    ("run-classes-mismatch", lambda w: _arch_json(w, num_classes=5), (*EXPORT, "--out", "p"), 2,
     "head.bias is (10,), the architecture needs (5,)"),
    ("export-out-read-only", None, (*EXPORT, "--out", "/sys/mcuformer-test-p"), 2, "cannot write in /sys"),
    ("search-out-read-only", None, (*SEARCH, "--out", "/sys/mcuformer-test-r"), 2, "cannot write in /sys"),
    ("memory-plot-truncated", lambda w: _truncate(w / "project/report.json", 99),
     ("memory-plot", "project", "--out", "t.png"), 2, "truncated or not JSON"),
    ("memory-plot-no-ops", lambda w: (w / "project/report.json").write_text('{"board": "host"}'),
     ("memory-plot", "project", "--out", "t.png"), 2, "no memory plan"),
    # a model that does not fit the requested budget is a failure, whatever --no-measure says
    ("export-over-budget", None, (*EXPORT, "--sram", "1KiB", "--out", "p"), 1,
     "peak SRAM 1,944 B > 1,024 B (over by 920 B)"),
]  # fmt: skip


@pytest.mark.parametrize(("setup", "argv", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_touches_nothing(work: Path, setup, argv, code: int, message: str) -> None:
    if setup is not None:
        setup(work)
    before = snapshot(work.parent)
    proc = cli(work, *argv)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "training supernet" not in proc.stdout  # every check runs before the training
    assert snapshot(work.parent) == before  # inputs byte-identical; nothing created, nothing removed


def test_force_replaces_only_our_own_output(work: Path) -> None:
    marker = json.loads((work / "project" / MARKER).read_text())
    assert marker == {"tool": "mcuformer", "kind": "project"}
    (work / "project" / "stale.txt").write_text("from an earlier export")
    proc = cli(work, *EXPORT, "--out", "project", "--force")
    assert proc.returncode == 0, proc.stderr
    assert not (work / "project" / "stale.txt").exists() and (work / "project/report.json").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["data.npz", "mine", "project", "run"]  # no temporaries left


def test_stale_temporaries_of_killed_jobs_are_removed(work: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a finished process: its pid names no live process
    stale = work / f".p.tmp-{dead.pid}-abc"
    stale.mkdir()
    (stale / MARKER).write_text('{"tool": "mcuformer", "kind": "project"}')
    alive = work / f".q.tmp-{os.getpid()}-abc"  # a job still running (this process)
    alive.mkdir()
    (alive / MARKER).write_text('{"tool": "mcuformer", "kind": "project"}')
    unmarked = work / f".r.tmp-{dead.pid}-abc"  # not ours: no marker
    unmarked.mkdir()
    assert clean_stale_temporaries(work) == [stale]
    assert not stale.exists() and alive.exists() and unmarked.exists()
    stale.mkdir()
    (stale / MARKER).write_text('{"tool": "mcuformer", "kind": "project"}')
    assert cli(work, *EXPORT, "--out", "p").returncode == 0
    assert not stale.exists()  # the next job into the same parent cleaned it


def test_resume_names_changed_training_options_and_reuses_the_supernet(tmp_path: Path) -> None:
    opts = SearchOptions(board=BOARD, out=tmp_path / "r", resume=True, epochs=3)
    work = tmp_path / ".r.partial"
    work.mkdir()
    training = {"data": "digits", "seed": 0, "epochs": 3, "init_from": None, "space": {"a": 1}}
    searching = {"board": BOARD, "sram": None, "population": 50}
    save_json(str(work / "options.json"), {"training": {**training, "epochs": 5}, "search": searching})
    with pytest.raises(Exception, match=r"--resume: --epochs differ"):
        prepare_partial(work, opts, training, searching, quiet)
    save_json(str(work / "options.json"), {"training": training, "search": {**searching, "sram": "8KiB"}})
    logged: list[str] = []
    assert prepare_partial(work, opts, training, searching, logged.append) is True
    assert "sram changed: reusing the trained supernet" in logged[0]
    save_json(str(work / "options.json"), {"training": training, "search": searching})
    assert prepare_partial(work, opts, training, searching, quiet) is False


def test_a_run_failing_before_its_first_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    work = tmp_path / ".r.partial"
    work.mkdir()
    with pytest.raises(KeyboardInterrupt), keep_checkpoints(work):
        raise KeyboardInterrupt
    assert not work.exists()
    work.mkdir()
    (work / "supernet.ckpt.pt").write_bytes(b"state")
    with pytest.raises(KeyboardInterrupt), keep_checkpoints(work):
        raise KeyboardInterrupt
    assert (work / "supernet.ckpt.pt").is_file()  # a checkpoint is worth resuming


def test_sparse_labels_map_to_classes_and_are_kept(tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=_rng_images(30), y=np.array([3, 7, 9] * 10))
    ds = load_dataset(str(data))
    assert ds.num_classes == 3 and ds.class_names == ["3", "7", "9"]
    assert sorted(set(ds.train_y.tolist()) | set(ds.val_y.tolist())) == [0, 1, 2]
    folder = tmp_path / "f"
    from PIL import Image

    for name, count in (("cat", 3), ("empty", 0), ("dog", 3)):
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(_rng_images(1)[0]).save(folder / name / f"{i}.png")
    ds = load_dataset(str(folder))
    assert ds.num_classes == 2 and ds.class_names == ["cat", "dog"]  # a class without images is not an output


def test_a_run_is_self_contained_and_keeps_the_users_labels(tmp_path: Path) -> None:
    """The search ran with a relative data path; export from elsewhere after the data is gone."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    np.savez(a / "d.npz", x=_rng_images(60), y=np.array([3, 7, 9] * 20))
    cwd = os.getcwd()
    os.chdir(a)
    try:
        report = run_search(
            SearchOptions(board=BOARD, out=Path("run"), data="d.npz", epochs=1, finetune_epochs=0, population=4,
                          generations=1, space_evolution=False),
            quiet,
        )  # fmt: skip
    finally:
        os.chdir(cwd)
    assert report["class_labels"] == ["3", "7", "9"] and report["arch"]["num_classes"] == 3
    (a / "d.npz").unlink()
    shutil.move(a / "run", b / "run")
    proc = cli(b, "export", "run", "--board", BOARD, "--out", "p", "--no-measure")
    assert proc.returncode == 0, proc.stderr
    project = json.loads((b / "p/report.json").read_text())
    assert project["class_labels"] == ["3", "7", "9"]
    assert project["preprocessing"]["scaling"].startswith("x = pixel / 127.5 - 1")
    readme = (b / "p/README.md").read_text()
    assert "Preparing an input image" in readme and "`2` = `9`" in readme


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")
def test_a_c_build_error_names_the_file_and_line(work: Path) -> None:
    model_c = work / "project/model/model.c"
    lines = model_c.read_text().splitlines()
    lines.insert(5, "this is not C;")
    model_c.write_text("\n".join(lines) + "\n")
    proc = cli(work, "emulate", "project", "--host", "--no-sanitize")
    assert proc.returncode == 2
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and "model/model.c:6:" in errors[0] and "error" in errors[0], proc.stderr
    assert "make " not in errors[0]  # the compiler's message, not the command line

"""Behaviour check: the same models exported and emulated by two versions of mcuformer, compared.

Proof for a behaviour-preserving refactor (issue 8). The BASE version is a git revision checked out
into a temporary worktree (``git worktree add --detach``, removed at the end); the CURRENT version
is the tree this script lives in. Each version runs its own command line:

    python -m mcuformer export RUN --board B --out P [--sram S] [--flash F] --no-measure
    python -m mcuformer emulate P --json [--kernels portable | --profile]

with ``PYTHONPATH`` set to that version's root and that root as working directory (through runpy,
so that a call that loads project code from outside that root fails: see RUN_CLI). The cases are the
demo's run directory (``demo/run``, made by ``make demo``) and the reference models of ``make bench``
(benchmarks/run.py), whose random-weight run directories are built once, here, and exported by both.

Compared, and any difference is a mismatch (exit 1, one line each):
- every constant array (``[static] const <type> <name>[...] = {...};``) of the generated model/*.c;
- every numeric, boolean and null field of report.json, and its structure (keys, list lengths);
- the Python reference logits (report.json ``expected_outputs``), the C logits (each version's
  QEMU output must be bit-exact with its reference, and the two QEMU console outputs, replayed
  from the built ELFs, must be identical);
- the ``emulate --json`` results per run (instruction counts, per operator too, sizes, stack, ...).
Shown, not asserted: a unified diff of the generated text files (written to OUT/<case>.diff) and
string fields that differ (C names may change in a refactor). Keys that are wall-clock
times (see IGNORED_KEY) are never compared. See docs/behaviour_check.md.

Usage: python benchmarks/behaviour_check.py [--base REV] [--cases a,b] [--quick] [--out DIR] [--keep]
Exit: 0 identical, 1 a mismatch (or a command failed), 2 a usage or setup error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE = "8b7a114"  # the last commit before the refactor of issue 8
DEFAULT_OUT = ROOT / "build" / "behaviour_check"
COMMAND_TIMEOUT_S = 3600

# Keys that are wall-clock times: never compared (matched case-insensitively against every key).
IGNORED_KEY = re.compile(r"seconds|time|elapsed|duration|wall", re.IGNORECASE)

# QEMU MPS2 machines and their cores (mcuformer.boards.QEMU_MACHINES), for the console replay.
QEMU_CPU = {"mps2-an385": "cortex-m3", "mps2-an386": "cortex-m4", "mps2-an500": "cortex-m7", "mps2-an505": "cortex-m33"}


@dataclass(frozen=True)
class Case:
    name: str
    board: str
    sram: str | None = None
    flash: str | None = None
    arch: dict | None = None  # None: the demo's run directory
    val_images: int = 4  # test inputs embedded in the project (export takes at most 4)
    portable: bool = True  # also emulate with --kernels portable and --profile (not in --quick)
    note: str = ""


def _arch(image, chans, patch, embed, depth, heads, mlp, attn_rank, mlp_rank, classes) -> dict:
    """An ArchConfig as arch.json holds it (field order of mcuformer.arch.ArchConfig)."""
    return {
        "image_size": image, "in_channels": chans, "patch_size": patch, "embed_dim": embed, "depth": depth,
        "num_heads": list(heads), "mlp_ratio": list(mlp), "attn_rank": list(attn_rank), "mlp_rank": list(mlp_rank),
        "num_classes": classes,
    }  # fmt: skip


# The reference models of `make bench` (benchmarks/run.py REFERENCES at 8b7a114), copied so that both
# versions export exactly the same run directories whatever the refactor does to run.py.
CASES = (
    Case("demo-run", "", note="demo/run from `make demo` (board and budget from its arch.json)"),
    Case("demo", "NUCLEO-F412ZG", arch=_arch(8, 1, 4, 64, 2, (2, 2), (1.0, 2.0), (16, 32), (0, 0), 10)),
    Case(
        "readme-demo",
        "NUCLEO-F412ZG",
        sram="6KiB",
        arch=_arch(16, 1, 4, 64, 3, (4, 4, 2), (1.0, 2.0, 3.0), (16, 24, 16), (24, 8, 24), 10),
    ),
    Case(
        "vit-96-rgb",
        "NUCLEO-F412ZG",
        arch=_arch(96, 3, 8, 96, 6, (4,) * 6, (2.0,) * 6, (24,) * 6, (24,) * 6, 10),
        val_images=2,
    ),
    Case(
        "mcuformer-240",
        "RPI-PICO2",
        sram="320KiB",
        arch=_arch(240, 3, 20, 216, 12, (4,) * 12, (2.0,) * 12, (54,) * 12, (54,) * 12, 100),
        val_images=1,
        note="3.3 MB of weights: the bench's STM32F746G-DISCO (1 MiB flash) cannot hold them through the CLI, "
        "so the RPI-PICO2 (Cortex-M33, 4 MiB flash) with the F746's 320 KiB of SRAM",
    ),
)
QUICK = ("demo-run", "demo", "readme-demo")
# The emulate runs per case: the default kernels (optimized: DSP on these boards) always; the portable
# kernels and the per-operator profile (optimized kernels, instructions per operator) without --quick.
VARIANTS = {"optimized": [], "portable": ["--kernels", "portable"], "profile": ["--profile"]}
# emulate --json strings that name what ran: a difference is a mismatch (other strings are shown).
STRICT_EMULATE_STRINGS = ("target", "board", "kernels")
CALIBRATION_IMAGES = 8
SEED = 0


class SetupError(Exception):
    """A usage or setup problem: exit 2."""


class CommandFailed(Exception):
    pass


# ------------------------------------------------------------------------------------------ versions
PACKAGES = ("mcuformer", "codegen", "nas", "boards", "runtime_c")  # the project's import names, old and new
# `python -m mcuformer ARGS`, through runpy as -m does, listing at exit the project modules it loaded
# (and where from): an editable install that maps mcuformer.codegen to another checkout would
# otherwise compile the other checkout's code without a word.
RUN_CLI = """
import atexit, json, os, runpy, sys
def _loaded():
    files = {m.__name__: m.__file__ for m in list(sys.modules.values())
             if getattr(m, "__file__", None) and m.__name__.split(".")[0] in PACKAGES}
    with open(os.environ["BEHAVIOUR_CHECK_MODULES"], "w") as f:
        json.dump(files, f)
atexit.register(_loaded)
runpy.run_module("mcuformer", run_name="__main__", alter_sys=True)
""".replace("PACKAGES", repr(PACKAGES))


@dataclass
class Version:
    label: str  # "base" or "current"
    root: Path
    commit: str = ""
    modules: dict[str, str] = field(default_factory=dict)  # module -> file, over all CLI calls

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.root)  # this version only, not the caller's PYTHONPATH
        env["PYTHONHASHSEED"] = "0"
        env["OMP_NUM_THREADS"] = "1"  # same float reductions in both versions, whatever the load
        return env

    def python(self, args: list[str], stdin: str | None = None, env: dict | None = None):
        return subprocess.run(
            [sys.executable, *args], cwd=self.root, env={**self.env(), **(env or {})}, input=stdin,
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
        )  # fmt: skip

    def cli(self, what: str, args: list[str]) -> subprocess.CompletedProcess:
        """``python -m mcuformer ARGS`` (see RUN_CLI); a failure or code from outside this tree raises."""
        with tempfile.TemporaryDirectory(prefix="mcuformer-check-") as tmp:
            record = Path(tmp) / "modules.json"
            proc = self.python(["-c", RUN_CLI, *args], env={"BEHAVIOUR_CHECK_MODULES": str(record)})
            loaded = json.loads(record.read_text()) if record.is_file() else {}
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise CommandFailed(f"{self.label}: {what} failed (exit {proc.returncode}): {tail}")
        if not loaded:
            raise CommandFailed(f"{self.label}: {what} did not report the modules it loaded")
        root = self.root.resolve()
        outside = sorted(f"{n} from {f}" for n, f in loaded.items() if not Path(f).resolve().is_relative_to(root))
        if outside:
            raise CommandFailed(
                f"{self.label}: {what} ran code from outside {root} ({len(outside)} module(s), e.g. {outside[0]}): "
                "an editable install maps them elsewhere; check with the tree the install points at"
            )
        self.modules.update(loaded)
        return proc


def git(*args: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def add_worktree(rev: str) -> Version:
    try:
        commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except SetupError:
        raise SetupError("not a commit of this repository") from None
    tmp = Path(tempfile.mkdtemp(prefix="mcuformer-base-"))
    try:
        git("worktree", "add", "--detach", str(tmp), commit)
    except SetupError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Version("base", tmp, commit)


def remove_worktree(version: Version) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(version.root)], cwd=ROOT, capture_output=True)
    shutil.rmtree(version.root, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)


# ---------------------------------------------------------------------------------------- run dirs
BUILD_WEIGHTS = """
import json, sys
import torch
from mcuformer.arch import ArchConfig
from mcuformer.model import ViT
for item in json.loads(sys.stdin.read()):
    torch.manual_seed(item["seed"])
    torch.save(ViT(ArchConfig.from_json(item["arch"])).eval().state_dict(), item["path"])
"""


def build_runs(cases: list[Case], runs: Path, builder: Version) -> dict[str, Path]:
    """Random-weight run directories (arch.json, model.pt, data.npz), built once and shared by both
    versions: seeded weights from ``builder``'s ViT, seeded random images in [-1, 1]."""
    out: dict[str, Path] = {}
    jobs = []
    for case in cases:
        run = runs / case.name
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        arch = case.arch
        assert arch is not None
        rng = np.random.default_rng(SEED)
        n = CALIBRATION_IMAGES + case.val_images
        size, chans, classes = arch["image_size"], arch["in_channels"], arch["num_classes"]
        x = rng.uniform(-1.0, 1.0, (n, chans, size, size)).astype(np.float32)
        y = np.arange(n, dtype=np.int64) % classes
        np.savez_compressed(
            run / "data.npz",
            calib_x=x[:CALIBRATION_IMAGES],
            calib_y=y[:CALIBRATION_IMAGES],
            val_x=x[CALIBRATION_IMAGES:],
            val_y=y[CALIBRATION_IMAGES:],
            class_names=np.array([str(i) for i in range(classes)]),
            meta=np.array(["random", "x = uniform random float32 in [-1, 1] (behaviour_check)"]),
        )
        (run / "arch.json").write_text(json.dumps({"arch": arch, "data": "random", "seed": SEED}, indent=2) + "\n")
        jobs.append({"arch": arch, "seed": SEED, "path": str(run / "model.pt")})
        out[case.name] = run
    if jobs:
        proc = builder.python(["-c", BUILD_WEIGHTS], stdin=json.dumps(jobs))
        if proc.returncode != 0:
            raise SetupError(f"building the random-weight runs with {builder.label} failed: {proc.stderr.strip()}")
    return out


def demo_settings(run: Path) -> tuple[str, str | None, str | None]:
    """Board and budget of the demo's own export (`make demo` exports within its search budget)."""
    report = json.loads((run / "arch.json").read_text())
    budget = report.get("budget") or {}
    sram, flash = budget.get("sram_bytes"), budget.get("flash_bytes")
    return str(report["board"]), (f"{sram}B" if sram else None), (f"{flash}B" if flash else None)


# ----------------------------------------------------------------------------------- one version
def export_and_emulate(case: Case, version: Version, run: Path, project: Path, variants: list[str], log) -> dict:
    board, sram, flash = (case.board, case.sram, case.flash)
    if case.arch is None:
        board, sram, flash = demo_settings(run)
    shutil.rmtree(project, ignore_errors=True)
    project.parent.mkdir(parents=True, exist_ok=True)
    args = ["export", str(run), "--board", board, "--out", str(project), "--no-measure"]
    args += (["--sram", sram] if sram else []) + (["--flash", flash] if flash else [])
    result: dict = {"export_args": args[1:], "seconds": {}}
    log(f"exporting with {version.label}...")
    started = time.monotonic()
    version.cli("export", args)
    result["seconds"]["export"] = round(time.monotonic() - started, 1)
    result["emulate"] = {}
    result["console"] = {}
    for variant in variants:
        command = " ".join(["emulate", "--json", *VARIANTS[variant]])
        log(f"emulating with {version.label} ({variant}: {command})...")
        started = time.monotonic()
        proc = version.cli(command, ["emulate", str(project), "--json", *VARIANTS[variant]])
        try:
            emu = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise CommandFailed(f"{version.label}: {command} printed no JSON") from None
        result["emulate"][variant] = emu
        result["console"][variant] = replay(project, emu, profile=variant == "profile")
        result["seconds"][f"emulate_{variant}"] = round(time.monotonic() - started, 1)
    return result


def replay(project: Path, emu: dict, profile: bool) -> dict:
    """Run the ELF that emulate built once more in QEMU and keep its console output (the C logits,
    instruction counts and stack lines): emulate --json reports the verdict, not the logits."""
    machine = str(emu.get("target", "")).removeprefix("qemu:")
    elf = project / "build" / f"{emu.get('kernels')}{'-profile' if profile else ''}" / "qemu.elf"
    if machine not in QEMU_CPU or not elf.is_file():
        return {"available": False, "why": f"no QEMU ELF at {elf.relative_to(project)} for target {machine!r}"}
    cmd = ["qemu-system-arm", "-M", machine, "-cpu", QEMU_CPU[machine], "-nographic",
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, errors="replace",
                          stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT_S)  # fmt: skip
    output = proc.stdout + proc.stderr
    logits = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[0] == "LOGITS":
            logits[fields[1]] = [int(v) for v in fields[2:]]
    return {"available": True, "returncode": proc.returncode, "output": output,
            "logits": [logits[k] for k in sorted(logits, key=int)]}  # fmt: skip


# ----------------------------------------------------------------------------------- comparisons
def flatten(value, path: str = "", ignored: set[str] | None = None) -> dict[str, object]:
    """Leaves by path ("ops/0/macs"); containers also leave a marker with their keys or length, so
    that a missing key or a shorter list is a difference too. Wall-clock keys are skipped (``ignored``)."""
    out: dict[str, object] = {}
    if isinstance(value, dict):
        kept = []
        for key in sorted(value):
            sub = f"{path}/{key}" if path else str(key)
            if IGNORED_KEY.search(str(key)):
                if ignored is not None:
                    ignored.add(re.sub(r"/\d+(?=/|$)", "/*", sub))
                continue
            kept.append(str(key))
            out.update(flatten(value[key], sub, ignored))
        out[f"{path}/{{keys}}"] = tuple(kept)
    elif isinstance(value, list):
        out[f"{path}/{{len}}"] = len(value)
        for i, item in enumerate(value):
            out.update(flatten(item, f"{path}/{i}", ignored))
    else:
        out[path] = value
    return out


def same(a: object, b: object) -> bool:
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def compare_json(a: dict, b: dict, ignored: set[str]) -> tuple[list[str], list[str]]:
    """(numeric and structural differences, string differences) between two JSON documents."""
    fa, fb = flatten(a, ignored=ignored), flatten(b, ignored=ignored)
    numeric, strings = [], []
    for key in sorted(set(fa) | set(fb)):
        if key not in fa or key not in fb:
            numeric.append(f"{key}: only in {'base' if key in fa else 'current'}")
            continue
        va, vb = fa[key], fb[key]
        if same(va, vb):
            continue
        text = f"{key}: base {_short(va)}, current {_short(vb)}"
        (strings if isinstance(va, str) and isinstance(vb, str) else numeric).append(text)
    return numeric, strings


def _short(value: object, limit: int = 80) -> str:
    text = json.dumps(value) if not isinstance(value, tuple) else json.dumps(list(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


ARRAY_DECL = re.compile(
    r"^[ \t]*(?:static[ \t]+)?const[ \t]+([A-Za-z_][\w \t]*?)[ \t]+"  # [static] const <type>
    r"([A-Za-z_]\w*)[ \t]*((?:\[[^\]\n]*\][ \t]*)+)=[ \t]*\{",  # <name>[...][...] = {
    re.MULTILINE,
)
COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)


def const_arrays(project: Path) -> dict[str, tuple[str, list]]:
    """name -> (type and dimensions, flattened values) of every constant array in model/*.c."""
    arrays: dict[str, tuple[str, list]] = {}
    for source in sorted((project / "model").glob("*.c")):
        text = COMMENTS.sub(" ", source.read_text())
        for match in ARRAY_DECL.finditer(text):
            start = match.end()  # just after the opening brace
            depth, end = 1, start
            while depth:
                end = min(i for i in (text.find("{", end), text.find("}", end), len(text)) if i >= 0)
                if end == len(text):
                    break
                depth += 1 if text[end] == "{" else -1
                end += 1
            body = text[start : end - 1]
            values = [_literal(tok) for tok in re.split(r"[\s,{}]+", body) if tok]
            name = match.group(2) if source.name == "model.c" else f"{source.stem}:{match.group(2)}"
            declared = " ".join(match.group(1).split()) + " " + "".join(match.group(3).split())
            arrays[name] = (declared, values)
    return arrays


def _literal(token: str) -> object:
    bare = token.rstrip("uUlL")
    try:
        return int(bare, 0)
    except ValueError:
        pass
    try:
        return float(token.rstrip("fF"))
    except ValueError:
        return token


def compare_arrays(a: dict[str, tuple[str, list]], b: dict[str, tuple[str, list]]) -> list[str]:
    problems = []
    only_a, only_b = [n for n in a if n not in b], [n for n in b if n not in a]  # in declaration order
    renamed: set[str] = set()
    by_content: dict[str, list[str]] = {}
    for name in only_a:
        by_content.setdefault(_digest(a[name]), []).append(name)
    for name in only_b:
        twins = by_content.get(_digest(b[name]))
        if twins:
            twin = twins.pop(0)
            problems.append(f"array renamed: base {twin} -> current {name} (same type and values)")
            only_a.remove(twin)
            renamed.add(name)
    left_b = [name for name in only_b if name not in renamed]
    pairs = [(name, name) for name in a if name in b]
    if len(only_a) == len(left_b):  # renamed and changed: pair them in declaration order
        pairs += list(zip(only_a, left_b, strict=True))
    else:
        problems += [f"array {name} only in base" for name in only_a]
        problems += [f"array {name} only in current" for name in left_b]
    for name_a, name_b in pairs:
        (ta, va), (tb, vb) = a[name_a], b[name_b]
        name = name_a if name_a == name_b else f"{name_a} (current {name_b}, renamed)"
        if ta != tb:
            problems.append(f"array {name}: declared {ta} in base, {tb} in current")
        elif va != vb:
            first = next((i for i, (x, y) in enumerate(zip(va, vb, strict=False)) if x != y), min(len(va), len(vb)))
            problems.append(f"array {name}: {len(va)} vs {len(vb)} values, first difference at index {first}")
        elif name_a != name_b:
            problems.append(f"array {name}: same type and values")
    return problems


def _digest(entry: tuple[str, list]) -> str:
    return hashlib.sha256(json.dumps([entry[0], entry[1]]).encode()).hexdigest()


SKIPPED_FILES = ("report.json",)  # compared field by field instead


def project_files(project: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project).as_posix()
        if path.is_file() and not rel.startswith("build/") and rel not in SKIPPED_FILES:
            files[rel] = path
    return files


def diff_projects(base: Path, current: Path, diff_file: Path) -> dict:
    """Unified diff of every generated text file (binary files: listed when their bytes differ)."""
    fa, fb = project_files(base), project_files(current)
    chunks: list[str] = []
    stats = {"files": 0, "files_differ": [], "lines_added": 0, "lines_removed": 0, "binary_differ": []}
    for rel in sorted(set(fa) | set(fb)):
        stats["files"] += 1
        a, b = fa.get(rel), fb.get(rel)
        da = a.read_bytes() if a else b""
        db = b.read_bytes() if b else b""
        if da == db:
            continue
        if b"\0" in da[:8192] or b"\0" in db[:8192]:
            stats["binary_differ"].append(rel)
            chunks.append(f"Binary files base/{rel} and current/{rel} differ\n")
            continue
        proc = subprocess.run(
            ["diff", "-u", "--label", f"base/{rel}", "--label", f"current/{rel}",
             str(a) if a else "/dev/null", str(b) if b else "/dev/null"],
            capture_output=True, text=True, errors="replace",
        )  # fmt: skip
        stats["files_differ"].append(rel)
        for line in proc.stdout.splitlines():
            if line.startswith("+") and not line.startswith("+++ "):
                stats["lines_added"] += 1
            elif line.startswith("-") and not line.startswith("--- "):
                stats["lines_removed"] += 1
        chunks.append(proc.stdout)
    diff_file.write_text("".join(chunks))
    return stats


def compare_case(case: str, base: dict, current: dict, projects: dict[str, Path], out: Path) -> dict:
    """The comparison of one case: mismatches (fail) and shown differences."""
    mismatches: list[str] = []
    ignored: set[str] = set()
    row: dict = {}
    pa, pb = projects["base"], projects["current"]
    # constant arrays
    arrays_a, arrays_b = const_arrays(pa), const_arrays(pb)
    problems = compare_arrays(arrays_a, arrays_b)
    row["arrays"] = {"base": len(arrays_a), "current": len(arrays_b),
                     "values": sum(len(v) for _, v in arrays_a.values()), "identical": not problems}  # fmt: skip
    mismatches += problems
    if not arrays_a:
        mismatches.append("no constant arrays found in the base's model/*.c (parser or layout problem)")
    # report.json
    ra, rb = (json.loads((p / "report.json").read_text()) for p in (pa, pb))
    numeric, strings = compare_json(ra, rb, ignored)
    row["report"] = {"fields": len(flatten(ra)), "numeric_differ": numeric}
    row["strings_differ"] = [f"report.json {d}" for d in strings]
    mismatches += [f"report.json {d}" for d in numeric]
    # logits: the Python integer reference (report.json), then the C output of each variant
    ref_a, ref_b = ra.get("expected_outputs"), rb.get("expected_outputs")
    logits = {"reference_identical": ref_a == rb.get("expected_outputs") and ref_a is not None}
    if ref_a is None or ref_b is None:
        mismatches.append("report.json has no expected_outputs (Python reference logits)")
    logits["inputs"] = len(ref_a or [])
    # emulate JSON per kernel variant
    row["instructions"] = {}
    for variant in base["emulate"]:
        ea, eb = base["emulate"][variant], current["emulate"].get(variant)
        if eb is None:
            mismatches.append(f"emulate {variant}: no result from current")
            continue
        diffs, text_diffs = compare_json(ea, eb, ignored)
        strict = [d for d in text_diffs if d.split(":")[0].rsplit("/", 1)[-1] in STRICT_EMULATE_STRINGS]
        mismatches += [f"emulate {variant} {d}" for d in diffs + strict]
        row["strings_differ"] += [f"emulate {variant} {d}" for d in text_diffs if d not in strict]
        if variant == "profile":
            ops_a, ops_b = ea.get("profile") or [], eb.get("profile") or []
            same_ops = ops_a == ops_b or [o.get("instructions") for o in ops_a] == [
                o.get("instructions") for o in ops_b
            ]
            row["profile"] = {"ops": len(ops_a), "instructions_identical": bool(ops_a) and same_ops}
        for label, emu in (("base", ea), ("current", eb)):
            if not emu.get("bit_exact") or emu.get("mismatches"):
                mismatches.append(f"emulate {variant}: {label}'s C logits differ from its Python reference")
        row["instructions"][variant] = {
            "base": ea.get("instructions_per_inference"),
            "current": eb.get("instructions_per_inference"),
            "per_input_identical": ea.get("instructions_per_input") == eb.get("instructions_per_input"),
        }
        ca, cb = base["console"][variant], current["console"][variant]
        if ca["available"] and cb["available"]:
            logits[f"c_{variant}_identical"] = ca["logits"] == cb["logits"] and bool(ca["logits"])
            logits[f"c_{variant}_equals_reference"] = ca["logits"] == ref_a and cb["logits"] == ref_b
            if ca["logits"] != cb["logits"]:
                mismatches.append(f"C logits ({variant} kernels, QEMU replay) differ between the versions")
            elif not ca["logits"]:
                mismatches.append(f"QEMU replay ({variant} kernels) printed no LOGITS lines")
            elif ca["logits"] != ref_a:
                mismatches.append(f"C logits ({variant} kernels, QEMU replay) differ from report.json expected_outputs")
            if ca["output"] != cb["output"]:
                pairs = zip(ca["output"].splitlines(), cb["output"].splitlines(), strict=False)
                first = next((f"{x!r} vs {y!r}" for x, y in pairs if x != y), "different lengths")
                mismatches.append(f"QEMU console output ({variant} kernels) differs: {first}")
            logits[f"console_{variant}_identical"] = ca["output"] == cb["output"]
        else:
            logits[f"c_{variant}_replay"] = ca.get("why") or cb.get("why")
    if ref_a != ref_b:
        mismatches.append("Python reference logits (report.json expected_outputs) differ")
    row["logits"] = logits
    # the generated C, shown
    row["c_diff"] = diff_projects(pa, pb, out / f"{case}.diff")
    row["c_diff"]["file"] = str(out / f"{case}.diff")
    row["ignored_keys"] = sorted(ignored)
    row["mismatches"] = mismatches
    return row


# ------------------------------------------------------------------------------------------ output
def table(rows: dict[str, dict]) -> str:
    head = ("case", "const arrays", "report.json", "strings (shown)", "logits", "instr. optimized", "instr. portable",
            "per-op instr.", "C diff (shown)", "result")  # fmt: skip
    lines = [head]
    for name, row in rows.items():
        if "error" in row:
            lines.append((name, "-", "-", "-", "-", "-", "-", "-", "-", "FAIL: " + row["error"]))
            continue
        a = row["arrays"]
        arrays = f"{a['base']} / {a['values']:,} values {'same' if a['identical'] else 'DIFFER'}"
        rep = row["report"]
        numbers = (
            f"{rep['fields']:,} fields same" if not rep["numeric_differ"] else f"{len(rep['numeric_differ'])} DIFFER"
        )
        strings = "same" if not row["strings_differ"] else f"{len(row['strings_differ'])} differ"
        lg = row["logits"]
        c_ok = all(v for k, v in lg.items() if k.endswith("_identical") and not k.startswith("console_"))
        logits = f"{lg['inputs']} input{'s' if lg['inputs'] != 1 else ''} {'same' if c_ok else 'DIFFER'}"
        instr = {}
        for variant, counts in row["instructions"].items():
            ok = counts["base"] == counts["current"] and counts["per_input_identical"]
            instr[variant] = f"{counts['base']:,}" + ("" if ok else f" != {counts['current']:,}")
        d = row["c_diff"]
        changed = len(d["files_differ"]) + len(d["binary_differ"])
        diff = f"{changed}/{d['files']} files, +{d['lines_added']} -{d['lines_removed']}"
        result = "identical" if not row["mismatches"] else f"{len(row['mismatches'])} MISMATCH"
        prof = row.get("profile")
        per_op = "-" if prof is None else f"{prof['ops']} ops {'same' if prof['instructions_identical'] else 'DIFFER'}"
        lines.append((name, arrays, numbers, strings, logits, instr.get("optimized", "-"), instr.get("portable", "-"),
                      per_op, diff, result))  # fmt: skip
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(head))]
    text = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text)


# -------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base", default=DEFAULT_BASE, help=f"git revision of the base version (default {DEFAULT_BASE})"
    )
    parser.add_argument("--cases", help=f"comma-separated cases (default: all): {', '.join(c.name for c in CASES)}")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}; no portable or profile runs")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default build/behaviour_check)")
    parser.add_argument("--keep", action="store_true", help="keep the base worktree (its path is printed)")
    return parser.parse_args(argv)


def select_cases(args: argparse.Namespace) -> list[Case]:
    known = {c.name: c for c in CASES}
    names = args.cases.split(",") if args.cases else (list(QUICK) if args.quick else list(known))
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SetupError(f"unknown case(s) {', '.join(unknown) or '(none)'}; known: {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        cases = select_cases(args)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    demo_run = ROOT / "demo" / "run"
    if any(c.arch is None for c in cases) and not (demo_run / "arch.json").is_file():
        print(f"error: {demo_run} not found: run `make demo` first (or leave out the demo-run case)", file=sys.stderr)
        return 2
    for tool in ("git", "qemu-system-arm", "arm-none-eabi-gcc", "diff"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found (run `make setup`)", file=sys.stderr)
            return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    current = Version("current", ROOT, git("rev-parse", "HEAD"))
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))

    def on_term(signum, _frame):  # the worktree is removed on SIGTERM too (finally below)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        base = add_worktree(args.base)
    except SetupError as exc:
        print(f"error: base revision {args.base!r}: {exc}", file=sys.stderr)
        return 2
    print(f"base {args.base} = {base.commit[:12]} in {base.root}", flush=True)
    print(f"current: {ROOT} (HEAD {current.commit[:12]}{', with uncommitted changes' if dirty else ''})", flush=True)
    rows: dict[str, dict] = {}
    seconds: dict[str, dict] = {}
    runs: dict[str, Path] = {}
    try:
        generated = [c for c in cases if c.arch is not None]
        if generated:
            print(f"[runs] building {len(generated)} random-weight run directories (seed {SEED})...", flush=True)
            runs = build_runs(generated, out / "runs", base)
        for case in cases:
            run = demo_run if case.arch is None else runs[case.name]
            variants = ["optimized"] + (["portable", "profile"] if case.portable and not args.quick else [])
            case_started = time.monotonic()
            results, projects = {}, {}
            try:
                for version in (base, current):
                    projects[version.label] = out / "projects" / case.name / version.label
                    results[version.label] = export_and_emulate(
                        case, version, run, projects[version.label], variants,
                        lambda m, name=case.name: print(f"[{name}] {m}", flush=True),
                    )  # fmt: skip
                print(f"[{case.name}] comparing...", flush=True)
                try:
                    rows[case.name] = compare_case(case.name, results["base"], results["current"], projects, out)
                except Exception as exc:  # a comparison that cannot run is a failed proof, not a crash
                    raise CommandFailed(f"comparison failed: {type(exc).__name__}: {exc}") from exc
            except (CommandFailed, subprocess.TimeoutExpired) as exc:
                reason = str(exc) if isinstance(exc, CommandFailed) else f"timed out: {' '.join(exc.cmd[:4])}..."
                rows[case.name] = {"error": reason, "mismatches": [reason]}
            rows[case.name]["export"] = {k: v["export_args"] for k, v in results.items()}
            rows[case.name]["note"] = case.note
            seconds[case.name] = {k: v["seconds"] for k, v in results.items()}
            seconds[case.name]["total"] = round(time.monotonic() - case_started, 1)
            verdict = "identical" if not rows[case.name]["mismatches"] else "MISMATCH"
            print(f"[{case.name}] {verdict} ({seconds[case.name]['total']} s)", flush=True)
    finally:
        if args.keep:
            print(f"kept the base worktree {base.root} (remove: git worktree remove --force {base.root})")
        else:
            remove_worktree(base)
    mismatches = [f"{name}: {m}" for name, row in rows.items() for m in row["mismatches"]]
    total = round(time.monotonic() - started, 1)
    summary = {
        "base": {"rev": args.base, "commit": base.commit},
        "current": {"root": str(ROOT), "commit": current.commit, "uncommitted_changes": dirty},
        "quick": args.quick,
        "modules_loaded": {v.label: sorted(v.modules) for v in (base, current)},
        "cases": rows,
        "seconds": seconds,
        "total_seconds": total,
        "identical": not mismatches,
        "mismatches": mismatches,
        "ignored_keys": sorted({k for row in rows.values() for k in row.get("ignored_keys", [])}),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print()
    print(table(rows))
    print()
    for name, row in rows.items():
        d = row.get("c_diff")
        if d:
            changed = d["files_differ"] + d["binary_differ"]
            what = ", ".join(changed[:8]) + (", ..." if len(changed) > 8 else "") if changed else "no file differs"
            print(f"{name}: C diff {len(changed)} of {d['files']} files (+{d['lines_added']} -{d['lines_removed']} "
                  f"lines) -> {d['file']}: {what}")  # fmt: skip
        for text in row.get("strings_differ", [])[:10]:
            print(f"{name}: string differs (shown, not a mismatch): {text}")
        if len(row.get("strings_differ", [])) > 10:
            print(f"{name}: ... {len(row['strings_differ']) - 10} more string differences in summary.json")
    print(f"summary: {out / 'summary.json'}; {total} s")
    for m in mismatches:
        print(f"MISMATCH {m}")
    print("behaviour identical" if not mismatches else f"{len(mismatches)} mismatch(es)")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())

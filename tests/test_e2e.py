"""End to end: search (tiny settings) -> export -> emulate in QEMU and natively with sanitizers.

Asserts bit-exact logits against the Python integer reference, that the plan fits the board, and
the failure modes a user meets: a model bigger than the board fails at link time with a message
naming the overflow; bad arguments give one line and a non-zero exit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcuformer.arch import ArchConfig
from mcuformer.codegen.cost import STACK_RESERVE_BYTES
from mcuformer.emulate import run_emulate
from mcuformer.export import run_export
from mcuformer.search_options import SearchOptions
from mcuformer.workflow import run_search
from tests.builders import make_random_run

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
BOARD = "NUCLEO-F412ZG"


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("e2e") / "run"
    report = run_search(
        SearchOptions(
            board=BOARD,
            sram="8KiB",
            flash="96KiB",
            out=run,
            epochs=1,
            finetune_epochs=1,
            population=6,
            generations=2,
        ),
        quiet,
    )
    return run, report


def test_search_respects_the_budget(searched: tuple[Path, dict]) -> None:
    run, report = searched
    assert (run / "arch.json").is_file() and (run / "model.pt").is_file() and (run / "pareto.png").is_file()
    assert report["predicted"]["peak_sram_bytes"] <= report["budget"]["sram_bytes"] == 8 * 1024
    assert report["predicted"]["flash_bytes"] <= report["budget"]["flash_bytes"] == 96 * 1024
    assert not report["search"]["largest_fits"]
    assert report["search"]["rejected_sram"] > 0
    assert report["search"]["evaluated"] >= 6
    assert report["space_source"]["source"] == "sized to the budget" and report["space_source"]["binding"] in (
        "sram",
        "flash",
    )
    fill = report["fill"]  # the winner's use of the budget, as predicted by the planner
    assert fill["sram_fill"] == report["predicted"]["peak_sram_bytes"] / (8 * 1024)
    assert fill["flash_fill"] == report["predicted"]["flash_bytes"] / (96 * 1024)
    assert fill["fill"] == max(fill["sram_fill"], fill["flash_fill"]) <= 1.0
    assert json.loads((run / "arch.json").read_text())["arch"] == report["arch"]


@pytest.fixture(scope="module")
def project(searched: tuple[Path, dict]) -> tuple[Path, dict]:
    run, _ = searched
    proj = run.parent / "proj"
    report = run_export(run, BOARD, proj, force=False, log=quiet)
    return proj, report


def test_export_writes_a_self_contained_project(project: tuple[Path, dict]) -> None:
    proj, report = project
    for rel in (
        "Makefile",
        "Makefile.host",
        "linker/board.ld",
        "linker/qemu.ld",
        "model/model.c",
        "main.c",
        "runtime/include/mcuf.h",
        "README.md",
        "report.json",
        "model.onnx",
    ):
        assert (proj / rel).is_file(), rel
    import onnx

    graph = onnx.load(str(proj / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["logits"]
    board_ld = (proj / "linker/board.ld").read_text()
    assert "256K" in board_ld or str(256 * 1024) in board_ld  # the board's real SRAM size
    model_c = (proj / "model/model.c").read_text()
    assert "float" not in model_c and "double" not in model_c
    for key in (
        "arena_bytes",
        "naive_arena_bytes",
        "lower_bound_bytes",
        "peak_sram_bytes",
        "flash_bytes",
        "ops",
        "test_inputs",
        "expected_outputs",
    ):
        assert key in report
    assert report["peak_sram_bytes"] <= 256 * 1024 and report["flash_bytes"] <= 1024 * 1024


def test_export_is_deterministic(searched: tuple[Path, dict], project: tuple[Path, dict]) -> None:
    run, _ = searched
    proj, _ = project
    again = run.parent / "proj2"
    run_export(run, BOARD, again, force=False, log=quiet)
    for rel in ("model/model.c", "model/test_inputs.c", "Makefile", "linker/qemu.ld"):
        assert (proj / rel).read_bytes() == (again / rel).read_bytes(), rel


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed (run make setup)")
def test_qemu_is_bit_exact(project: tuple[Path, dict]) -> None:
    proj, report = project
    result = run_emulate(proj, host=False, sanitize=False, log=None)
    assert result["target"] == "qemu:mps2-an386"
    assert result["mismatches"] == [] and result["bit_exact"]
    assert result["inputs"] == len(report["expected_outputs"])
    assert result["instructions_per_inference"] > 0
    assert 0 < result["stack_bytes"] <= STACK_RESERVE_BYTES
    # the measured static SRAM holds the planned arena; measured peak stays within the plan
    assert report["arena_bytes"] <= result["static_sram_bytes"]
    assert result["static_sram_bytes"] + result["stack_bytes"] <= report["peak_sram_bytes"]
    assert result["flash_bytes"] <= report["flash_bytes"]


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed (run make setup)")
def test_stm32f405_firmware_boots_and_matches_the_reference(searched: tuple[Path, dict]) -> None:
    """Export for the STM32F405: the image linked with the real memory map boots from flash in
    netduinoplus2, prints over USART1 and matches the Python integer reference bit-exactly."""
    run, _ = searched
    proj = run.parent / "proj-f405"
    report = run_export(run, "STM32F405", proj, force=False, log=quiet)
    assert report["measured"]["bit_exact"] and report["measured"]["target"] == "qemu:mps2-an386"
    assert report["measured"]["firmware"]["target"] == "qemu:netduinoplus2", report["measured"]
    assert report["measured"]["firmware"]["bit_exact"]
    proc = subprocess.run(
        [sys.executable, "-m", "mcuformer", "emulate", str(proj), "--firmware", "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["firmware"] and result["bit_exact"] and result["mismatches"] == []
    assert result["inputs"] == len(report["expected_outputs"]) and result["instructions_per_inference"] is None
    assert result["kernels"] == "optimized"  # the Cortex-M4 DSP kernels, as flashed
    assert {"build/optimized/board.bin", "build/optimized/board.hex"} <= set(result["images"])


def test_host_with_sanitizers_is_bit_exact(project: tuple[Path, dict]) -> None:
    proj, _ = project
    result = run_emulate(proj, host=True, sanitize=True, log=None)
    assert result["target"] == "host" and result["bit_exact"] and result["mismatches"] == []


def test_tampered_expectation_is_reported_as_mismatch(project: tuple[Path, dict], tmp_path: Path) -> None:
    proj, _ = project
    copy = tmp_path / "proj"
    shutil.copytree(proj, copy, ignore=shutil.ignore_patterns("build"))
    report = json.loads((copy / "report.json").read_text())
    report["expected_outputs"][1][3] += 1 if report["expected_outputs"][1][3] < 127 else -1
    (copy / "report.json").write_text(json.dumps(report))
    result = run_emulate(copy, host=True, sanitize=False, log=None)
    assert not result["bit_exact"]
    assert len(result["mismatches"]) == 1 and result["mismatches"][0]["input"] == 1
    assert result["mismatches"][0]["index"] == 3


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed (run make setup)")
def test_per_head_schedule_fits_a_budget_and_is_bit_exact(tmp_path: Path) -> None:
    # 256 tokens x 96 dims, 4 heads: all heads at once needs ~73 KiB of arena, per head ~61 KiB
    arch = ArchConfig(64, 1, 4, 96, 1, (4,), (1.0,), (0,), (0,), 10)
    run = make_random_run(tmp_path, arch)
    report = run_export(run, BOARD, tmp_path / "proj", force=False, log=quiet, sram="64KiB")
    kinds = [op["kernel"] for op in report["ops"]]
    assert "mcuf_attention_perhead_s8" in kinds and "mcuf_attention_rowwise_s8" not in kinds
    assert report["peak_sram_bytes"] <= 64 * 1024 < report["naive_arena_bytes"]
    assert report["measured"]["bit_exact"] and report["measured"]["peak_sram_bytes"] <= 64 * 1024
    result = run_emulate(tmp_path / "proj", host=True, sanitize=True, log=None)
    assert result["bit_exact"]
    roomy = run_export(run, BOARD, tmp_path / "roomy", force=False, log=quiet, measure=False)
    assert "mcuf_attention_rowwise_s8" in [op["kernel"] for op in roomy["ops"]]  # fewer instructions when it fits
    assert roomy["arena_bytes"] > report["arena_bytes"]


def test_model_bigger_than_the_board_fails_before_writing(tmp_path: Path) -> None:
    # 1024 tokens x 96 dims: X, K and V alone need 288 KiB > 256 KiB of SRAM (2 heads: no smaller schedule)
    arch = ArchConfig(128, 1, 4, 96, 1, (2,), (1.0,), (0,), (0,), 10)
    run = make_random_run(tmp_path, arch)
    proj = tmp_path / "proj"
    export = subprocess.run(
        [sys.executable, "-m", "mcuformer", "export", str(run), "--board", BOARD, "--out", str(proj), "--no-measure"],
        capture_output=True,
        text=True,
    )
    assert export.returncode == 1, export.stderr  # 1: does not fit (2 is for usage errors)
    lines = export.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model does not fit NUCLEO-F412ZG"), export.stderr
    assert "over by 35,152 B" in lines[0]  # planned peak 297,296 B (profile counters included) against 262,144 B
    assert not proj.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run", "small.npz"]


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed (run make setup)")
def test_link_overflow_is_one_line_and_json(tmp_path: Path) -> None:
    # fits the H743's 512 KiB; the project's emulator linker script is then cut to 256 KiB of RAM
    arch = ArchConfig(128, 1, 4, 96, 1, (2,), (1.0,), (0,), (0,), 10)
    run = make_random_run(tmp_path, arch)
    proj = tmp_path / "proj"
    run_export(run, "NUCLEO-H743ZI", proj, force=False, log=quiet, measure=False)
    script = proj / "linker/qemu.ld"
    script.write_text(script.read_text().replace(f"LENGTH = {512 * 1024}", f"LENGTH = {256 * 1024}"))
    cli = [sys.executable, "-m", "mcuformer", "emulate", str(proj)]
    emulate = subprocess.run(cli, capture_output=True, text=True)
    assert emulate.returncode == 1
    lines = emulate.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model does not fit") and "RAM overflowed by" in lines[0]
    assert "Traceback" not in emulate.stderr
    as_json = subprocess.run(cli + ["--json"], capture_output=True, text=True)
    assert as_json.returncode == 1
    result = json.loads(as_json.stdout)
    assert result["bit_exact"] is False and "RAM overflowed by" in result["error"] and result["exit_code"] == 1
    assert as_json.stderr.strip().splitlines() == lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--board", "NOPE", "--out", "{tmp}/r"], "unknown board 'NOPE'"),
        (["search", "--board", BOARD, "--sram", "12XB", "--out", "{tmp}/r"], "bad --sram '12XB'"),
        (["search", "--board", BOARD, "--sram", "1GiB", "--out", "{tmp}/r"], "bad --sram"),
        (["search", "--board", BOARD, "--sram", "4MiB", "--out", "{tmp}/r"], "exceeds board"),
        (["export", "{tmp}/missing", "--board", BOARD, "--out", "{tmp}/p"], "does not exist"),
        (["export", "{tmp}", "--board", BOARD, "--out", "{tmp}/p"], "is not a search run"),
        (["emulate", "{tmp}"], "not an mcuformer project"),
        (["search", "--board", BOARD, "--data", "{tmp}/nothing.npz", "--out", "{tmp}/r"], "nothing.npz"),
    ],
)
def test_bad_arguments_give_one_line_errors(args: list[str], message: str, tmp_path: Path) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-m", "mcuformer", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "p").exists()  # nothing half-written


def test_existing_output_is_not_clobbered(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cmd = [sys.executable, "-m", "mcuformer", "search", "--board", BOARD, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_memory_plot_draws_the_timeline(project: tuple[Path, dict], tmp_path: Path) -> None:
    from mcuformer.plots import run_memory_plot

    proj, _ = project
    out = run_memory_plot(proj, tmp_path / "timeline.png", quiet)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed (run make setup)")
def test_profile_splits_the_inference_by_operator(project: tuple[Path, dict]) -> None:
    proj, report = project
    result = run_emulate(proj, host=False, sanitize=False, log=None, profile=True)
    assert result["bit_exact"]
    rows = result["profile"]
    assert [r["name"] for r in rows] == [op["name"] for op in report["ops"]]
    assert all(r["instructions"] > 0 for r in rows)
    total = sum(r["instructions"] for r in rows)
    # the per-operator counts add up to the whole inference (up to the call and counter overhead)
    assert 0 <= result["instructions_per_inference"] - total <= 2000
    proc = subprocess.run(
        [sys.executable, "-m", "mcuformer", "emulate", str(proj), "--profile", "--host"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "cannot be combined with --host" in proc.stderr

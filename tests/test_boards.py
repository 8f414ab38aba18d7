"""Every board: a small model exports, builds and runs bit-exactly in its QEMU machine (and the
STM32F405 firmware image on netduinoplus2); the Raspberry Pi Pico's Armv6-M build also runs on a
real Cortex-M0 (QEMU's microbit), which faults on the unaligned accesses an M3 tolerates."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from mcuformer.arch import ArchConfig
from mcuformer.boards import all_boards, get_board
from mcuformer.codegen.board_files import render_board_files
from mcuformer.codegen.emit import project_sources, runtime_sources
from mcuformer.emulate import _parse_output, compare, qemu_command
from mcuformer.export import run_export
from tests.builders import make_random_run

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc or qemu-system-arm not installed")
# 16x16 grey, patch 4 (16 tokens), E32, one block with a low-rank MLP: ~1.7 KiB arena, ~30 KiB flash
ARCH = ArchConfig(16, 1, 4, 32, 1, (2,), (2.0,), (0,), (8,), 10)
ARM_BOARDS = [b.name for b in all_boards() if not b.is_host]


@pytest.fixture(scope="module")
def random_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_run(tmp_path_factory.mktemp("boards"), ARCH)


@needs_arm
@pytest.mark.parametrize("board_name", ARM_BOARDS)
def test_every_board_exports_and_verifies(random_run: Path, board_name: str, tmp_path: Path) -> None:
    board = get_board(board_name)
    report = run_export(random_run, board_name, tmp_path / "proj", force=False, log=lambda _: None)
    measured = report["measured"]
    assert measured.get("bit_exact"), measured
    assert measured["target"] == f"qemu:{board.qemu_machine}" and measured["instructions_per_inference"] > 0
    if board.firmware_machine:
        assert measured["firmware"].get("bit_exact"), measured["firmware"]
    regions = report["memory_regions"]
    assert sum(len(r["placed"]) for r in regions) >= 2 and regions[0]["placed"][0]["what"].startswith("statics")


@needs_arm
def test_pico_build_runs_on_a_real_cortex_m0(random_run: Path, tmp_path: Path) -> None:
    """The RPI-PICO project (-mcpu=cortex-m0plus, portable kernels) linked for the micro:bit's 16 KiB
    RAM / 256 KiB flash and run on its Cortex-M0: bit-exact with the reference."""
    project = tmp_path / "pico"
    report = run_export(random_run, "RPI-PICO", project, force=False, log=lambda _: None, sram="14KiB", measure=False)
    microbit = replace(get_board("RPI-PICO"), qemu_machine="microbit", sram_bytes=14 * 1024, flash_bytes=256 * 1024)
    sources = project_sources(runtime_sources(microbit))
    for path, text in render_board_files(microbit, sources, 1024).items():
        (project / path).write_text(text)
    assert "-mcpu=cortex-m0plus" in (project / "Makefile").read_text()
    build = subprocess.run(["make", "-j2", "qemu", "KERNELS=portable"], cwd=project, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    proc = subprocess.run(
        qemu_command(microbit, project / "build" / "qemu.elf"),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    parsed = _parse_output(proc.stdout + proc.stderr, proc.returncode, "QEMU (microbit)")
    expected = json.loads((project / "report.json").read_text())["expected_outputs"]
    assert compare(expected, parsed.logits) == [] and len(parsed.logits) == len(expected) == len(report["test_inputs"])
    assert 0 < parsed.stack <= 1024

"""Memory regions: the arena and the stack placed across a board's RAM regions (codegen.regions),
the linker scripts that follow, a QEMU run of a project with the arena and the stack outside the
main region, and report.json's ``memory_regions``."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from mcuformer.arch import ArchConfig
from mcuformer.boards import MemoryRegion, get_board
from mcuformer.codegen.board_files import linker_memory_name, render_board_files
from mcuformer.codegen.regions import main_region, place_memory, split_hot_scratch
from mcuformer.emulate import elf_sections, emulate, format_report
from mcuformer.errors import UserError
from tests.builders import make_random_run
from tests.test_emulate import STACK_BYTES, make_project

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc or qemu-system-arm not installed")
KIB = 1024


def test_placement_rules() -> None:
    h743 = get_board("NUCLEO-H743ZI")
    small = place_memory(h743, 100 * KIB, 1 * KIB, 64)
    assert (small.arena.name, small.stack.name, small.main.name) == ("DTCM", "DTCM", "AXI SRAM")
    # DTCM (128 KiB) less the stack has no room for 128 KiB: the main region (AXI SRAM) takes it
    big = place_memory(h743, 128 * KIB, 1 * KIB, 64)
    assert big.arena.name == "AXI SRAM" and big.stack.name == "DTCM"
    # past every on-chip region: the Portenta's SDRAM; past every region: the main one (the link fails)
    portenta = get_board("PORTENTA-H7")
    assert place_memory(portenta, 600 * KIB, KIB, 64).arena.name == "SDRAM"
    assert place_memory(portenta, 300 * KIB, KIB, 64).arena.name == "AXI SRAM"
    assert place_memory(portenta, 9 * KIB * KIB, KIB, 64).arena.name == "AXI SRAM"
    # the F405's CCM is no faster than its SRAM on the M4: the SRAM first, the CCM when SRAM is full
    f405 = get_board("STM32F405")
    assert place_memory(f405, 100 * KIB, KIB, 64).arena.name == "SRAM"
    assert place_memory(replace(f405, sram_bytes=40 * KIB), 50 * KIB, KIB, 64).arena.name == "CCM"
    # a single-region board: everything in it
    f412 = get_board("NUCLEO-F412ZG")
    plan = place_memory(f412, 10 * KIB, KIB, 64)
    assert plan.arena == plan.stack == plan.main == main_region(f412) and plan.extra_regions == []
    rows = small.to_json(h743)
    assert [r["name"] for r in rows] == ["AXI SRAM", "DTCM", "SRAM1-3", "SRAM4"]
    assert rows[1]["placed"] == [{"what": "arena", "bytes": 100 * KIB}, {"what": "stack", "bytes": KIB}]
    assert rows[1]["used_bytes"] == 101 * KIB and rows[2]["placed"] == []
    with pytest.raises(UserError, match="stack_region 'ITCM' is not one of its regions"):
        place_memory(replace(h743, stack_region="ITCM"), KIB, KIB, 64)


def test_linker_memory_names() -> None:
    assert linker_memory_name("AXI SRAM") == "AXI_SRAM" and linker_memory_name("SRAM1-3") == "SRAM1_3"
    assert linker_memory_name("RAM") == "R_RAM" and linker_memory_name("2nd") == "R_2nd"


def test_linker_scripts_follow_the_placement() -> None:
    board = get_board("NUCLEO-H743ZI")
    plan = place_memory(board, 8 * KIB, STACK_BYTES, 64)
    files = render_board_files(board, ["model/model.c"], STACK_BYTES, placement=plan)
    board_ld, qemu_ld = files["linker/board.ld"], files["linker/qemu.ld"]
    assert "RAM   (rwx) : ORIGIN = 0x24000000, LENGTH = 524288" in board_ld
    assert "DTCM (rwx) : ORIGIN = 0x20000000, LENGTH = 131072" in board_ld
    # the emulator maps DTCM right after the main region, at its board size
    assert "DTCM (rwx) : ORIGIN = 0x20080000, LENGTH = 131072" in qemu_ld
    for script in (board_ld, qemu_ld):
        assert "*(.bss.mcuf_arena .bss.mcuf_model_arena)" in script and "} > DTCM" in script
        assert "ORIGIN(DTCM) + LENGTH(DTCM) - MCUF_STACK_BYTES" in script
        assert "SRAM1_3" not in script  # regions that hold nothing are not declared
    # too much RAM in use for the emulator's 4 MiB
    huge = replace(board, regions=(*board.regions[:1], MemoryRegion("DTCM", 0x20000000, 4 * KIB * KIB, "tcm")))
    with pytest.raises(UserError, match=r"do not fit the emulator's 4 MiB of RAM \(mps2-an500\)"):
        render_board_files(huge, ["model/model.c"], STACK_BYTES, placement=place_memory(huge, 8 * KIB, KIB, 64))


@needs_arm
def test_arena_and_stack_outside_the_main_region_run_in_qemu(tmp_path: Path) -> None:
    board = get_board("NUCLEO-H743ZI")
    project = make_project(tmp_path, board.name)
    plan = place_memory(board, 192, STACK_BYTES, 64)
    for path, text in render_board_files(
        board, ["model/model.c", "model/test_inputs.c"], STACK_BYTES, placement=plan
    ).items():
        (project / path).write_text(text)
    result = emulate(project)
    assert result["bit_exact"], format_report(result)
    assert 0 < result["stack_bytes"] < result["stack_reserved_bytes"] == STACK_BYTES
    elf = project / "build" / result["kernels"] / "qemu.elf"
    sections = {s.name: s for s in elf_sections(elf)}
    dtcm = 0x20080000  # qemu.ld: DTCM after the 512 KiB main region
    assert sections[".mcuf_arena"].address == dtcm and sections[".mcuf_arena"].size == 192
    assert sections[".stack"].address + sections[".stack"].size == dtcm + 128 * KIB
    assert sections[".bss"].address < 0x20080000  # the statics stay in the main region


@needs_arm
def test_export_reports_what_went_where(tmp_path: Path) -> None:
    arch = ArchConfig(16, 1, 4, 32, 1, (2,), (1.0,), (0,), (0,), 10)
    run = make_random_run(tmp_path, arch)
    from mcuformer.export import run_export

    report = run_export(run, "NUCLEO-H743ZI", tmp_path / "proj", force=False, log=lambda _: None)
    assert report["measured"]["bit_exact"], report["measured"]
    regions = {r["name"]: r for r in json.loads((tmp_path / "proj" / "report.json").read_text())["memory_regions"]}
    assert regions["DTCM"]["placed"][0] == {"what": "arena", "bytes": report["arena_bytes"]}
    assert [p["what"] for p in regions["AXI SRAM"]["placed"]] == ["statics (.data, .bss)"]
    assert "} > DTCM" in (tmp_path / "proj" / "linker" / "board.ld").read_text()


@needs_arm
def test_hot_scratch_goes_to_tcm_when_the_arena_does_not(tmp_path: Path) -> None:
    """An H743 whose DTCM holds the stack and the row scratch but not the arena: the row scratch gets
    its own buffer in DTCM, the rest of the arena stays in AXI SRAM, and the model is bit-exact."""
    from mcuformer.data import load_dataset
    from mcuformer.export import export_model, load_run

    arch = ArchConfig(16, 1, 4, 32, 1, (2,), (1.0,), (0,), (0,), 10)
    model, run_report = load_run(make_random_run(tmp_path, arch))
    data = load_dataset(run_report["data"], seed=0)
    h743 = get_board("NUCLEO-H743ZI")
    small_dtcm = MemoryRegion("DTCM", 0x20000000, 1024 + 1024, "tcm")  # the 1 KiB stack + 1 KiB (tile-4 rows)
    board = replace(h743, regions=(h743.regions[0], small_dtcm, *h743.regions[2:]))
    report = export_model(model, data, board, tmp_path / "proj", False, lambda _: None)
    assert report["measured"]["bit_exact"], report["measured"]

    split = split_hot_scratch(load_plan(model, data, board))
    scratch_buffers = [b for b in split.scratch.buffers if b.size]
    assert split.scratch.arena_bytes == max(b.size for b in scratch_buffers) <= 1024  # one operator at a time
    assert split.arena.arena_bytes + split.scratch.arena_bytes >= report["arena_bytes"] > split.arena.arena_bytes
    regions = {r["name"]: r for r in report["memory_regions"]}
    assert [p["what"] for p in regions["DTCM"]["placed"]] == ["hot scratch (fused kernels' row buffers)", "stack"]
    assert regions["DTCM"]["placed"][0]["bytes"] == split.scratch.arena_bytes
    assert regions["AXI SRAM"]["placed"][1] == {"what": "arena", "bytes": split.arena.arena_bytes}

    proj = tmp_path / "proj"
    model_c = (proj / "model" / "model.c").read_text()
    assert f"int8_t bytes[{split.scratch.arena_bytes}];\n}} mcuf_scratch_arena;" in model_c
    assert "scratch_arena + " in model_c and "float" not in model_c
    assert f"#define MCUF_MODEL_ARENA_BYTES {split.arena.arena_bytes}\n" in (proj / "model" / "model.h").read_text()
    ld = (proj / "linker" / "qemu.ld").read_text()
    assert "*(.bss.mcuf_scratch_arena)" in ld and "DTCM (rwx) : ORIGIN = 0x20080000, LENGTH = 2048" in ld


def load_plan(model, data, board):
    from mcuformer.export import compile_for

    return compile_for(model, data, board.sram_bytes, 4).graph.planned()

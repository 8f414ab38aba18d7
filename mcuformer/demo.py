"""``mcuformer demo``: search, export and emulate in one go, for a budget that binds; summary.json."""

from __future__ import annotations

import time
from pathlib import Path

from mcuformer.arch import ArchConfig, save_json
from mcuformer.emulate import run_emulate
from mcuformer.errors import UserError
from mcuformer.export import run_export
from mcuformer.outputs import OutputKind, atomic_directory, check_output
from mcuformer.search_options import Log, SearchOptions
from mcuformer.workflow import run_search

DEMO_BOARD = "NUCLEO-F412ZG"
DEMO_SRAM = "6KiB"  # the largest subnet of the space sized to it needs 13.4 KiB
DEMO_FLASH = "96KiB"  # binds: that largest subnet needs 316 KiB of flash


def run_demo(out: Path, force: bool, log: Log) -> bool:
    started = time.time()
    out = check_output(out, OutputKind.DEMO, force)
    with atomic_directory(out, OutputKind.DEMO, force) as tmp:
        opts = SearchOptions(
            board=DEMO_BOARD,
            sram=DEMO_SRAM,
            flash=DEMO_FLASH,
            data="digits",
            out=tmp / "run",
            epochs=20,
            finetune_epochs=10,
            population=30,
            generations=10,
        )
        log(f"== demo: search for {DEMO_BOARD} limited to {DEMO_SRAM} SRAM / {DEMO_FLASH} flash")
        arch_report = run_search(opts, log)
        if arch_report["search"]["largest_fits"]:
            raise UserError("demo budget does not bind: the largest subnet fits (a bug in the demo settings)")
        log(f"== demo: export for {DEMO_BOARD} within the same budget")
        # the budget again: token tiles would otherwise spend the board's SRAM on speed
        proj = run_export(tmp / "run", DEMO_BOARD, tmp / "project", False, log, sram=DEMO_SRAM, flash=DEMO_FLASH)
        log("== demo: emulate in QEMU")
        emu = run_emulate(tmp / "project", host=False, sanitize=False, log=log)
        save_json(str(tmp / "emulate.json"), emu)
        summary = {
            "arch": arch_report["arch"],
            "float_top1": arch_report["accuracy"]["float_top1"],
            "int8_top1": proj["accuracy"]["int8_top1"],
            "planned_peak_sram_bytes": proj["peak_sram_bytes"],
            "measured_peak_sram_bytes": emu["static_sram_bytes"] + emu["stack_bytes"],
            "flash_bytes_measured": emu["flash_bytes"],
            "instructions_per_inference": emu["instructions_per_inference"],
            "bit_exact": emu["bit_exact"],
            "fill": arch_report["fill"],
            "seconds": round(time.time() - started, 1),
        }
        save_json(str(tmp / "summary.json"), summary)
    log("== demo summary")
    log(f"architecture: {ArchConfig.from_json(summary['arch']).short()}")
    log(f"accuracy: float top-1 {summary['float_top1']:.4f}, int8 top-1 {summary['int8_top1']:.4f}")
    log(f"SRAM: planned peak {summary['planned_peak_sram_bytes']} B, measured {summary['measured_peak_sram_bytes']} B")
    log(f"flash (ELF): {summary['flash_bytes_measured']} B")
    fill = summary["fill"]
    log(
        f"fill (planned): SRAM {100 * fill['sram_fill']:.1f}%, flash {100 * fill['flash_fill']:.1f}% of the budget; "
        f"{fill['binding']} binds"
    )
    log(f"instructions per inference (QEMU -icount): {summary['instructions_per_inference']}")
    log(f"{'PASS' if summary['bit_exact'] else 'FAIL'}: C in QEMU vs Python integer reference, {summary['seconds']} s")
    log(f"outputs in {out}: run/arch.json, project/report.json, emulate.json")
    return bool(summary["bit_exact"])

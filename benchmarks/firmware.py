"""Firmware, memory regions and the library, measured (part of `make bench`): writes docs/firmware.md
and docs/firmware.json.

For the `demo` and `vit-96-rgb` reference architectures of benchmarks/run.py (random weights):
- STM32F405: the board image (real memory map, USART1 console) booted on QEMU's netduinoplus2 and
  checked bit-exactly; its flash image sizes; the emulator image's instruction counts on mps2-an386.
- Region placement on every board with more than one RAM region (what went where).
- `--format lib` for the STM32F405 (hard float ABI): the host example bit-exact, and the library's
  code and data sizes for the Cortex-M4 (arm-none-eabi-size on the archive).

Usage: python benchmarks/firmware.py [--out-dir docs]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import REFERENCES, random_data  # noqa: E402

from mcuformer.arch import ArchConfig  # noqa: E402
from mcuformer.boards import all_boards, get_board  # noqa: E402
from mcuformer.emulate import emulate, emulate_firmware  # noqa: E402
from mcuformer.export import export_model  # noqa: E402
from mcuformer.model import ViT  # noqa: E402

F405 = "STM32F405"
MODELS = ("demo", "vit-96-rgb")
# 128x128 grey, patch 4: 1024 tokens x 96; X, K and V alone are 288 KiB, more than any DTCM: the
# row scratch goes to DTCM on its own (codegen.regions.split_hot_scratch).
BIG = ArchConfig(128, 1, 4, 96, 1, (2,), (1.0,), (0,), (0,), 10)
BIG_NAME = "tokens-1024"


def quiet(_: str) -> None:
    pass


def _model(name: str):
    arch = BIG if name == BIG_NAME else next(r for r in REFERENCES if r.name == name).arch
    torch.manual_seed(0)
    return ViT(arch).eval(), random_data(arch, 16, seed=0)


def firmware_row(name: str, work: Path) -> dict:
    model, data = _model(name)
    project = work / f"{name}-f405"
    report = export_model(model, data, get_board(F405), project, False, quiet, measure=False)
    start = time.perf_counter()
    firmware = emulate_firmware(project)
    seconds = time.perf_counter() - start
    mps2 = emulate(project)
    out = project / "build" / firmware["kernels"]
    return {
        "model": name,
        "arena_bytes": report["arena_bytes"],
        "firmware_target": firmware["target"],
        "firmware_bit_exact": firmware["bit_exact"],
        "firmware_inputs": firmware["inputs"],
        "firmware_seconds": round(seconds, 2),
        "board_bin_bytes": (out / "board.bin").stat().st_size,
        "board_hex_bytes": (out / "board.hex").stat().st_size,
        "firmware_flash_bytes": firmware["flash_bytes"],
        "firmware_static_sram_bytes": firmware["static_sram_bytes"],
        "firmware_stack_bytes": firmware["stack_bytes"],
        "mps2_target": mps2["target"],
        "mps2_bit_exact": mps2["bit_exact"],
        "mps2_instructions_per_inference": mps2["instructions_per_inference"],
        "memory_regions": report["memory_regions"],
    }


def region_rows(work: Path) -> list[dict]:
    rows = []
    for board in all_boards():
        if len(board.regions) < 2:
            continue
        for name in (*MODELS, *([BIG_NAME] if board.name == "NUCLEO-H743ZI" else [])):
            model, data = _model(name)
            report = export_model(model, data, board, work / f"{name}-{board.name}", False, quiet, measure=True)
            measured = report.get("measured", {})
            rows.append(
                {
                    "board": board.name,
                    "model": name,
                    "bit_exact": measured.get("bit_exact"),
                    "error": measured.get("error"),
                    "instructions_per_inference": measured.get("instructions_per_inference"),
                    "placed": {
                        r["name"]: [f"{p['what']} {p['bytes']} B" for p in r["placed"]]
                        for r in report["memory_regions"]
                        if r["placed"]
                    },
                }
            )
    return rows


def library_row(work: Path) -> dict:
    model, data = _model("demo")
    lib = work / "demo-lib"
    report = export_model(model, data, get_board(F405), lib, False, quiet, float_abi="hard")
    build = lib / "build" / "arm"
    for cmd in (
        ["cmake", "-S", ".", "-B", str(build), "-DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake"],
        ["cmake", "--build", str(build)],
    ):
        subprocess.run(cmd, cwd=lib, check=True, capture_output=True)
    size = (
        subprocess.run(
            ["arm-none-eabi-size", "-t", str(build / "libmcuformer_model.a")],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.splitlines()[-1]
        .split()
    )
    return {
        "model": "demo",
        "float_abi": "hard",
        "host_example_bit_exact": report["measured"]["bit_exact"],
        "m4_text_bytes": int(size[0]),
        "m4_data_bytes": int(size[1]),
        "m4_bss_bytes": int(size[2]),
        "arena_bytes": report["arena_bytes"],
    }


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Firmware, memory regions, library (measured)",
        "",
        "Written by `benchmarks/firmware.py` (part of `make bench`); random weights, the reference",
        "architectures of `benchmarks/run.py`. Instruction counts are QEMU `-icount` instructions, not cycles.",
        "",
        "## STM32F405 board image on netduinoplus2 (real memory map, USART1)",
        "",
        "| model | arena B | firmware bit-exact | .bin B | flash B (ELF) | static SRAM B | stack B | QEMU s "
        "| mps2-an386 instructions/inference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["firmware"]:
        lines.append(
            f"| {r['model']} | {r['arena_bytes']:,} | {r['firmware_bit_exact']} ({r['firmware_inputs']} inputs) "
            f"| {r['board_bin_bytes']:,} | {r['firmware_flash_bytes']:,} | {r['firmware_static_sram_bytes']:,} "
            f"| {r['firmware_stack_bytes']:,} | {r['firmware_seconds']} | {r['mps2_instructions_per_inference']:,} |"
        )
    lines += [
        "",
        "## Region placement",
        "",
        f"`{BIG_NAME}`: {BIG.short()} (an arena larger than any DTCM). QEMU has no memory timing: the",
        "instruction counts do not show what TCM saves on silicon (cache misses), only that placement costs none.",
        "",
        "| board | model | bit-exact (MPS2) | instructions/inference | placed |",
        "|---|---|---|---|---|",
    ]
    for r in result["regions"]:
        placed = "; ".join(f"{region}: {', '.join(items)}" for region, items in r["placed"].items())
        verdict = r["bit_exact"] if r["error"] is None else f"error: {r['error']}"
        count = f"{r['instructions_per_inference']:,}" if r["instructions_per_inference"] else "-"
        lines.append(f"| {r['board']} | {r['model']} | {verdict} | {count} | {placed} |")
    lib = result["library"]
    lines += [
        "",
        "## Library (`export --format lib`, STM32F405, hard float ABI)",
        "",
        f"Host example bit-exact: {lib['host_example_bit_exact']}. `libmcuformer_model.a` for the Cortex-M4 "
        f"(every kernel; the application's `--gc-sections` drops the unused ones): text {lib['m4_text_bytes']:,} B "
        f"(code, weights, parameters), data {lib['m4_data_bytes']:,} B, bss {lib['m4_bss_bytes']:,} B "
        f"(the arena: {lib['arena_bytes']:,} B).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    args = parser.parse_args()
    out = Path(args.out_dir)
    with tempfile.TemporaryDirectory(prefix="mcuf-firmware-") as tmp:
        work = Path(tmp)
        result = {
            "firmware": [firmware_row(name, work) for name in MODELS],
            "regions": region_rows(work),
            "library": library_row(work),
        }
    (out / "firmware.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    write_markdown(result, out / "firmware.md")
    print((out / "firmware.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: export a fixed set of reference architectures (random weights) and run them in QEMU.

For every model: the naive op-by-op arena, our arena, the lower bound, the peak SRAM measured in
QEMU (static SRAM from the ELF + painted stack), flash from the ELF, and QEMU instruction counts
(-icount, not cycles) with the optimized (DSP) and the portable kernels, on the model's board and on
a Cortex-M7. Every run is checked bit-exact against the Python integer reference. Writes
docs/benchmarks.json and docs/benchmarks.md.

Usage: python benchmarks/run.py [--only NAME] [--out-dir docs]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcuformer.arch import ArchConfig, save_json  # noqa: E402
from mcuformer.boards import Board, format_bytes, get_board, qemu_machine  # noqa: E402
from mcuformer.data import Dataset  # noqa: E402
from mcuformer.emulate import emulate  # noqa: E402
from mcuformer.model import ViT  # noqa: E402
from mcuformer.workflow import export_model  # noqa: E402

M7_BOARD = "STM32F746G-DISCO"


@dataclasses.dataclass(frozen=True)
class Reference:
    name: str
    board: str
    arch: ArchConfig
    note: str


REFERENCES = (
    Reference(
        "demo",
        "NUCLEO-F412ZG",
        ArchConfig(8, 1, 4, 64, 2, (2, 2), (1.0, 2.0), (16, 32), (0, 0), 10),
        "the architecture `make demo` found for digits (6 KiB SRAM / 96 KiB flash budget)",
    ),
    Reference(
        "vit-96-rgb",
        "NUCLEO-F412ZG",
        ArchConfig(96, 3, 8, 96, 6, (4,) * 6, (2.0,) * 6, (24,) * 6, (24,) * 6, 10),
        "96x96 RGB, 144 tokens, sized for a 256 KiB SRAM / 1 MiB flash board",
    ),
    Reference(
        "mcuformer-240",
        "STM32F746G-DISCO",
        ArchConfig(240, 3, 20, 216, 12, (4,) * 12, (2.0,) * 12, (54,) * 12, (54,) * 12, 100),
        "MCUFormer scale: 240x240 RGB, patch 20 (144 tokens), embed 216, 12 layers, low rank 54",
    ),
)


def random_data(arch: ArchConfig, images: int, seed: int) -> Dataset:
    """Random images at the model's resolution (calibration and test inputs; weights are random too)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(images, arch.in_channels, arch.image_size, arch.image_size, generator=gen) * 2 - 1
    y = torch.arange(images) % arch.num_classes
    half = images // 2
    return Dataset(
        x[:half], y[:half], x[half:], y[half:], arch.in_channels, arch.num_classes, arch.image_size, "random"
    )


def run_reference(ref: Reference, work: Path, log) -> dict:
    board = get_board(ref.board)
    torch.manual_seed(0)
    model = ViT(ref.arch).eval()
    data = random_data(ref.arch, 16, seed=0)
    from codegen.cost import estimate

    predicted = estimate(ref.arch, board.sram_bytes)
    flash_note = ""
    if predicted.flash_bytes > board.flash_bytes:
        limit = qemu_machine(board.qemu_machine).region_bytes  # the emulator's code region
        bigger = min(limit, 1 << (predicted.flash_bytes - 1).bit_length())
        flash_note = (
            f"weights need {format_bytes(predicted.flash_bytes)} of flash > {format_bytes(board.flash_bytes)}: "
            f"run with the board's SRAM and {format_bytes(bigger)} of flash"
        )
        board = dataclasses.replace(board, flash_bytes=bigger)
    started = time.time()
    project = work / ref.name
    report = export_model(model, data, board, project, force=True, log=log, measure=False, num_test_inputs=1)
    entry = {
        "name": ref.name,
        "board": ref.board,
        "core": board.core,
        "arch": ref.arch.to_json(),
        "note": ref.note,
        "flash_note": flash_note,
        "arena_bytes": report["arena_bytes"],
        "naive_arena_bytes": report["naive_arena_bytes"],
        "lower_bound_bytes": report["lower_bound_bytes"],
        "planned_peak_sram_bytes": report["peak_sram_bytes"],
        "schedules": sorted({op["kernel"] for op in report["ops"]}),
    }
    runs = {}
    for label, target in (("board", board), ("m7", _m7(board))):
        for kernels in ("optimized", "portable"):
            if label == "m7" and target is None:
                continue
            proj = project if label == "board" else _retarget(project, target, work, report)
            log(f"{ref.name}: QEMU {target.name} ({target.core}), {kernels} kernels")
            runs[(label, kernels)] = emulate(proj, host=False, sanitize=False, kernels=kernels)
    main = runs[("board", "optimized")]
    entry.update(
        {
            "peak_sram_bytes": main["static_sram_bytes"] + main["stack_bytes"],
            "stack_bytes": main["stack_bytes"],
            "flash_bytes": main["flash_bytes"],
            "instructions_optimized": main["instructions_per_inference"],
            "instructions_portable": runs[("board", "portable")]["instructions_per_inference"],
            "bit_exact": all(r["bit_exact"] for r in runs.values()),
            "seconds": round(time.time() - started, 1),
        }
    )
    if ("m7", "optimized") in runs:
        entry["m7_instructions_optimized"] = runs[("m7", "optimized")]["instructions_per_inference"]
        entry["m7_instructions_portable"] = runs[("m7", "portable")]["instructions_per_inference"]
    else:
        entry["m7_instructions_optimized"] = entry["instructions_optimized"]
        entry["m7_instructions_portable"] = entry["instructions_portable"]
    entry["m7_speedup"] = round(entry["m7_instructions_portable"] / entry["m7_instructions_optimized"], 2)
    entry["arena_vs_naive"] = round(entry["arena_bytes"] / entry["naive_arena_bytes"], 3)
    entry["arena_vs_lower_bound"] = round(entry["arena_bytes"] / entry["lower_bound_bytes"], 3)
    return entry


def _m7(board: Board) -> Board | None:
    """The same memory sizes on a Cortex-M7 (None when the board already is one)."""
    if board.core == "cortex-m7":
        return None
    m7 = get_board(M7_BOARD)
    return dataclasses.replace(m7, sram_bytes=board.sram_bytes, flash_bytes=board.flash_bytes)


def _retarget(project: Path, board: Board, work: Path, report: dict) -> Path:
    """A copy of the project built for another core: same model sources, that core's board files."""
    import shutil

    from codegen.board_files import render_board_files
    from codegen.cost import STACK_RESERVE_BYTES
    from codegen.emit import project_sources, runtime_sources

    target = work / f"{project.name}-{board.core}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(project, target, ignore=shutil.ignore_patterns("build"))
    runtime = runtime_sources(board)
    files = {**runtime, **render_board_files(board, project_sources(runtime), STACK_RESERVE_BYTES)}
    for rel, text in files.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    retargeted = dict(report, board=board.name)
    (target / "report.json").write_text(json.dumps(retargeted))
    return target


def write_markdown(entries: list[dict], path: Path) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (`benchmarks/run.py`): reference architectures with random weights, exported",
        "and run in QEMU. Instructions are QEMU `-icount` instruction counts per inference (not cycles).",
        "Peak SRAM is measured: static SRAM from the ELF + the painted stack's high-water mark.",
        "",
        "| model | board | arena | naive arena | lower bound | arena/naive | arena/LB | peak SRAM (QEMU) | flash "
        "| instr. optimized | instr. portable | M7 speedup | bit-exact |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| {e['name']} | {e['board']} | {e['arena_bytes']:,} | {e['naive_arena_bytes']:,} | "
            f"{e['lower_bound_bytes']:,} | {e['arena_vs_naive']} | {e['arena_vs_lower_bound']} | "
            f"{e['peak_sram_bytes']:,} | {e['flash_bytes']:,} | {e['instructions_optimized']:,} | "
            f"{e['instructions_portable']:,} | {e['m7_speedup']}x | {'yes' if e['bit_exact'] else 'NO'} |"
        )
    lines += ["", "## Models", ""]
    for e in entries:
        arch = ArchConfig.from_json(e["arch"])
        lines.append(
            f"- **{e['name']}** ({e['board']}, {e['core']}): {e['note']}. `{arch.short()}`. "
            f"Kernels: {', '.join(e['schedules'])}."
        )
        if e["flash_note"]:
            lines.append(f"  Flash: {e['flash_note']}.")
        lines.append(
            f"  M7 instructions per inference: optimized {e['m7_instructions_optimized']:,}, "
            f"portable {e['m7_instructions_portable']:,}."
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only this reference model")
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    args = parser.parse_args()
    refs = [r for r in REFERENCES if args.only in (None, r.name)]
    if not refs:
        print(f"error: no reference model '{args.only}'; known: {', '.join(r.name for r in REFERENCES)}")
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="mcuformer-bench-") as tmp:
        for ref in refs:
            entries.append(run_reference(ref, Path(tmp), lambda m: print(m, flush=True)))
            e = entries[-1]
            print(
                f"{e['name']}: arena {e['arena_bytes']:,} B ({e['arena_vs_naive']}x naive, "
                f"{e['arena_vs_lower_bound']}x lower bound), peak SRAM {e['peak_sram_bytes']:,} B, "
                f"instructions {e['instructions_optimized']:,} optimized / {e['instructions_portable']:,} portable, "
                f"M7 speedup {e['m7_speedup']}x, bit-exact {e['bit_exact']}",
                flush=True,
            )
    save_json(str(out_dir / "benchmarks.json"), {"models": entries})
    write_markdown(entries, out_dir / "benchmarks.md")
    print(f"wrote {out_dir / 'benchmarks.json'} and {out_dir / 'benchmarks.md'}")
    return 0 if all(e["bit_exact"] for e in entries) else 1


if __name__ == "__main__":
    np.set_printoptions(linewidth=200)
    sys.exit(main())

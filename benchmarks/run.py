"""`make bench`: export a fixed set of reference architectures (random weights) and run them in QEMU.

For every model: the naive op-by-op arena, our arena, the lower bound, the peak SRAM measured in
QEMU (static SRAM from the ELF + painted stack), flash from the ELF, and QEMU instruction counts
(-icount, not cycles) with the optimized (DSP) and the portable kernels, on the model's board and on
a Cortex-M7, and on a Cortex-M55 (Helium/MVE, DSP-only and portable builds) where the model fits the
emulator's code region. Every run is checked bit-exact against the Python integer reference. Writes
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from mcuformer.arch import ArchConfig, save_json  # noqa: E402
from mcuformer.boards import Board, format_bytes, get_board, qemu_machine  # noqa: E402
from mcuformer.data import Dataset  # noqa: E402
from mcuformer.emulate import emulate  # noqa: E402
from mcuformer.export import export_model  # noqa: E402
from mcuformer.model import ViT  # noqa: E402

M7_BOARD = "STM32F746G-DISCO"
NOTES_MARK = "<!-- hand-written sections below: kept by benchmarks/run.py -->"
M55_BOARD = "Alif-Ensemble-E7-HP"
M55_KERNELS = ("optimized", "dsp", "portable")  # optimized on the M55: the Helium (MVE) twins
M55_TARGET = 4.0  # issue 10: the MVE build at least 4x fewer instructions than the DSP-only build
# Optimized-kernel instructions per inference before issue 10 (token tiles, faster DSP loops),
# measured by this script at commit 3af6fcb: (model's board, Cortex-M7).
BASELINE = {
    "demo": (916_160, 911_920),
    "readme-demo": (5_283_530, None),  # README, `make demo` on the M4
    "vit-96-rgb": (242_633_880, 241_388_480),
    "mcuformer-240": (1_393_352_280, 1_393_352_280),
}


@dataclasses.dataclass(frozen=True)
class Reference:
    name: str
    board: str
    arch: ArchConfig
    note: str
    sram_bytes: int | None = None  # a budget below the board's SRAM (the README demo's search budget)


REFERENCES = (
    Reference(
        "demo",
        "NUCLEO-F412ZG",
        ArchConfig(8, 1, 4, 64, 2, (2, 2), (1.0, 2.0), (16, 32), (0, 0), 10),
        "the architecture `make demo` found for digits (6 KiB SRAM / 96 KiB flash budget)",
    ),
    Reference(
        "readme-demo",
        "NUCLEO-F412ZG",
        ArchConfig(16, 1, 4, 64, 3, (4, 4, 2), (1.0, 2.0, 3.0), (16, 24, 16), (24, 8, 24), 10),
        "the README demo's architecture, within its 6 KiB SRAM budget",
        sram_bytes=6 * 1024,
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
    if ref.sram_bytes is not None:
        board = dataclasses.replace(board, sram_bytes=ref.sram_bytes)
    torch.manual_seed(0)
    model = ViT(ref.arch).eval()
    data = random_data(ref.arch, 16, seed=0)
    from mcuformer.codegen.cost import estimate

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
    m55 = _m55(board)
    m55_skip = _m55_skip(predicted.flash_bytes, m55)
    targets = [("board", board, ("optimized", "portable")), ("m7", _m7(board), ("optimized", "portable"))]
    if m55_skip:
        log(f"{ref.name}: {m55.name} ({m55.core}) not run: {m55_skip}")
    else:
        targets.append(("m55", m55, M55_KERNELS))
    runs = {}
    projects: dict[str, Path] = {}
    for label, target, variants in targets:
        if target is None:
            continue
        proj = project if label == "board" else _retarget(project, target, work, report)
        projects[label] = proj
        for kernels in variants:
            log(f"{ref.name}: QEMU {target.name} ({target.core}), {kernels} kernels")
            runs[(label, kernels)] = emulate(proj, host=False, sanitize=False, kernels=kernels)
    log(f"{ref.name}: per-operator profiles (optimized kernels)")
    profiles = {
        label: emulate(proj, host=False, sanitize=False, kernels="optimized", profile=True)
        for label, proj in projects.items()
    }
    profiles.setdefault("m7", profiles["board"])
    entry["per_kind"] = {
        label: per_kind(profiles[label]["profile"]) for label in ("board", "m7", "m55") if label in profiles
    }
    entry["tiles"] = [
        {"name": op["name"], "schedule": op["schedule"], "tile": op["tile"]}
        for op in report["ops"]
        if op["kind"] in ("fused_attention", "fused_mlp")
    ]
    entry["macs"] = sum(op["macs"] for op in report["ops"])
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
    entry["instructions_per_mac"] = round(entry["instructions_optimized"] / entry["macs"], 3)
    entry["m7_instructions_per_mac"] = round(entry["m7_instructions_optimized"] / entry["macs"], 3)
    entry.update(m55_figures(runs, entry["macs"], m55_skip))
    before = BASELINE.get(ref.name)
    if before is not None:
        entry["baseline_instructions_optimized"], entry["baseline_m7_instructions_optimized"] = before
    entry["arena_vs_naive"] = round(entry["arena_bytes"] / entry["naive_arena_bytes"], 3)
    entry["arena_vs_lower_bound"] = round(entry["arena_bytes"] / entry["lower_bound_bytes"], 3)
    return entry


def per_kind(profile: list[dict]) -> dict[str, dict]:
    """Instructions, MACs and instructions per MAC per operator kind, from an ``emulate`` profile."""
    kinds: dict[str, dict] = {}
    for row in profile:
        k = kinds.setdefault(row["kind"], {"instructions": 0, "macs": 0})
        k["instructions"] += row["instructions"]
        k["macs"] += row["macs"] or 0
    for k in kinds.values():
        k["instructions_per_mac"] = round(k["instructions"] / k["macs"], 3) if k["macs"] else None
    return kinds


def m55_figures(runs: dict[tuple[str, str], dict], macs: int, skip: str = "") -> dict:
    """The M55 keys of an entry from its ("m55", kernels) ``emulate`` results (None where not run).
    ``m55_dsp_over_mve``: DSP-only over Helium (MVE) instructions; the target is met at >= M55_TARGET."""
    counts = {k: runs[("m55", k)]["instructions_per_inference"] for k in M55_KERNELS if ("m55", k) in runs}
    mve, dsp, portable = (counts.get(k) for k in M55_KERNELS)
    m55_runs = [r for (label, _), r in runs.items() if label == "m55"]
    return {
        "m55_board": M55_BOARD,
        "m55_note": skip,
        "m55_instructions_mve": mve,
        "m55_instructions_dsp": dsp,
        "m55_instructions_portable": portable,
        "m55_dsp_over_mve": round(dsp / mve, 2) if mve and dsp else None,
        "m55_portable_over_mve": round(portable / mve, 1) if mve and portable else None,
        "m55_instructions_per_mac": round(mve / macs, 3) if mve else None,
        "m55_target_met": dsp >= M55_TARGET * mve if mve and dsp else None,
        "m55_flash_bytes": runs[("m55", "optimized")]["flash_bytes"] if mve else None,
        "m55_stack_bytes": runs[("m55", "optimized")]["stack_bytes"] if mve else None,
        "m55_bit_exact": all(r["bit_exact"] for r in m55_runs) if m55_runs else None,
    }


def _same_memory(name: str, board: Board) -> Board:
    """Board ``name`` with ``board``'s SRAM and flash sizes (the same exported model re-targeted)."""
    return dataclasses.replace(get_board(name), sram_bytes=board.sram_bytes, flash_bytes=board.flash_bytes)


def _m7(board: Board) -> Board | None:
    """The same memory sizes on a Cortex-M7 (None when the board already is one)."""
    if board.core == "cortex-m7":
        return None
    return _same_memory(M7_BOARD, board)


def _m55(board: Board) -> Board:
    """The same memory sizes on the Cortex-M55 (Helium) board."""
    return _same_memory(M55_BOARD, board)


def _m55_skip(flash_bytes: int, m55: Board) -> str:
    """Why the model cannot run on the M55's emulator ("" when it can): its code and weights must fit
    the machine's code region (mps3-an547: the 512 KiB ITCM)."""
    machine = qemu_machine(m55.qemu_machine)
    if flash_bytes <= machine.flash_bytes_limit:
        return ""
    return (
        f"weights need {format_bytes(flash_bytes)} of flash > the {format_bytes(machine.flash_bytes_limit)} "
        f"that QEMU {machine.name} runs code and weights from (its ITCM)"
    )


def _retarget(project: Path, board: Board, work: Path, report: dict) -> Path:
    """A copy of the project built for another core: same model sources, that core's board files."""
    import shutil

    from mcuformer.codegen.board_files import render_board_files
    from mcuformer.codegen.cost import STACK_RESERVE_BYTES
    from mcuformer.codegen.emit import project_sources, runtime_sources

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


def write_markdown(entries: list[dict], path: Path, kernels: dict[str, dict] | None = None) -> None:
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
    lines += [
        "",
        "## Instructions before and after issue 10 (token tiles, faster DSP loops)",
        "",
        "Optimized kernels, QEMU instruction counts per inference. MACs: the model's multiply-accumulates",
        "(linears, patch embedding, attention products).",
        "",
        "| model | core | MACs | before | after | speedup | instr./MAC after | tiles (attention, MLP) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        tiles = sorted({(t["schedule"] or "mlp", t["tile"]) for t in e["tiles"]})
        tile_text = ", ".join(f"{name} {tile}" for name, tile in tiles)
        rows = [(e["core"], e.get("baseline_instructions_optimized"), e["instructions_optimized"])]
        if e["core"] != "cortex-m7":
            rows.append(("cortex-m7", e.get("baseline_m7_instructions_optimized"), e["m7_instructions_optimized"]))
        for core, before, after in rows:
            speed = f"{before / after:.2f}x" if before else "-"
            before_text = f"{before:,}" if before else "-"
            lines.append(
                f"| {e['name']} | {core} | {e['macs']:,} | {before_text} | {after:,} | {speed} | "
                f"{after / e['macs']:.2f} | {tile_text} |"
            )
    lines += [
        "",
        "Per operator kind (optimized kernels; instructions, and instructions per MAC where the kind has MACs):",
        "",
        "| model | core | kind | instructions | MACs | instr./MAC |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        for label, kinds in e["per_kind"].items():
            core = {"board": e["core"], "m7": "cortex-m7", "m55": "cortex-m55"}[label]
            if label == "m7" and e["core"] == "cortex-m7":
                continue
            for kind, k in kinds.items():
                per_mac = f"{k['instructions_per_mac']:.2f}" if k["instructions_per_mac"] else "-"
                lines.append(f"| {e['name']} | {core} | {kind} | {k['instructions']:,} | {k['macs']:,} | {per_mac} |")
    lines += m55_markdown(entries)
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
    if kernels:
        lines += [
            "",
            "## Kernel microbenchmark (benchmarks/kernels.py)",
            "",
            "The hot kernels on the MCUFormer-scale model's shapes (`linear_<in>x<out>_t<tile>`: 8 rows through",
            "`mcuf_linear_tile_s8` with a tile of 1, 2 or 4 tokens; attention over 144 tokens, head_dim 54,",
            "4 heads; row kernels: instructions per element). Instructions per MAC, optimized / portable;",
            "both builds compute the same checksums.",
            "",
            "| kernel | " + " | ".join(kernels) + " |",
            "|---|" + "---|" * len(kernels),
        ]
        names = list(next(iter(kernels.values())))
        for name in names:
            cells = [
                f"{kernels[core][name]['instructions_per_mac_optimized']:.2f} / "
                f"{kernels[core][name]['instructions_per_mac_portable']:.2f}"
                for core in kernels
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = ""  # the hand-written sections after NOTES_MARK are kept: a re-run regenerates only the tables
    if path.exists() and NOTES_MARK in (old := path.read_text()):
        notes = "\n" + old[old.index(NOTES_MARK) :]
    path.write_text("\n".join(lines) + "\n" + notes)


def m55_markdown(entries: list[dict]) -> list[str]:
    """The Cortex-M55 section of benchmarks.md: Helium (MVE), DSP-only and portable builds."""
    lines = [
        "",
        "## Cortex-M55: Helium (MVE) and DSP kernels",
        "",
        f"The same exported models re-targeted to {M55_BOARD} (Cortex-M55 with Helium; the model's SRAM and",
        "flash sizes) and run in QEMU mps3-an547 (an MVE instruction counts as one): optimized (the Helium",
        "twins, the DSP twins elsewhere), DSP (the DSP twins only) and portable kernels. Issue 10's target:",
        f"the MVE build at least {M55_TARGET:g}x fewer instructions than the DSP build.",
        "",
        "| model | MACs | MVE | DSP | portable | DSP / MVE | portable / MVE | MVE instr./MAC | "
        f"{M55_TARGET:g}x target | bit-exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    skipped = []
    for e in entries:
        mve = e.get("m55_instructions_mve")
        if not mve:
            skipped.append(e)
            continue
        portable = e.get("m55_instructions_portable")
        portable_text = f"{portable:,}" if portable else "-"
        portable_ratio = f"{e['m55_portable_over_mve']:.1f}x" if portable else "-"
        lines.append(
            f"| {e['name']} | {e['macs']:,} | {mve:,} | {e['m55_instructions_dsp']:,} | {portable_text} | "
            f"{e['m55_dsp_over_mve']:.2f}x | {portable_ratio} | {e['m55_instructions_per_mac']:.2f} | "
            f"{'met' if e['m55_target_met'] else 'not met'} | {'yes' if e['m55_bit_exact'] else 'NO'} |"
        )
    if skipped:
        lines.append("")
        for e in skipped:
            lines.append(f"- {e['name']}: not run on the M55: {e.get('m55_note') or 'no M55 figures'}.")
    return lines


def _m55_summary(e: dict) -> str:
    if not e.get("m55_instructions_mve"):
        return f"M55 not run ({e.get('m55_note')})"
    return (
        f"M55 MVE {e['m55_instructions_mve']:,} / DSP {e['m55_instructions_dsp']:,} "
        f"({e['m55_dsp_over_mve']}x, target {'met' if e['m55_target_met'] else 'not met'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only this reference model")
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    parser.add_argument("--no-kernels", action="store_true", help="skip the kernel microbenchmark")
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
                f"M7 speedup {e['m7_speedup']}x, {_m55_summary(e)}, bit-exact {e['bit_exact']}",
                flush=True,
            )
    kernels: dict[str, dict] = {}
    if not args.no_kernels:
        import kernels as kernel_bench  # benchmarks/kernels.py

        with tempfile.TemporaryDirectory(prefix="mcuformer-kbench-") as tmp:
            for core in kernel_bench.BOARDS:
                print(f"kernel microbenchmark: {core}", flush=True)
                kernels[core] = kernel_bench.figures(kernel_bench.run_core(core, Path(tmp)))
    save_json(str(out_dir / "benchmarks.json"), {"models": entries, "kernels": kernels})
    write_markdown(entries, out_dir / "benchmarks.md", kernels)
    print(f"wrote {out_dir / 'benchmarks.json'} and {out_dir / 'benchmarks.md'}")
    return 0 if all(e["bit_exact"] for e in entries) else 1


if __name__ == "__main__":
    np.set_printoptions(linewidth=200)
    sys.exit(main())

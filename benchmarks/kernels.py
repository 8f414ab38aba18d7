"""Kernel microbenchmark: the hot kernels on the MCUFormer-scale model's shapes, in QEMU.

Builds benchmarks/c/kernel_bench.c with the runtime for one board per core, with the portable and
the optimized kernels, runs both in the core's QEMU machine and reports instructions per MAC per
kernel (QEMU -icount instruction counts, not cycles). The two builds must print the same checksums
(the same integers), or the run fails.

Usage: python benchmarks/kernels.py [--core cortex-m7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcuformer.boards import get_board  # noqa: E402
from mcuformer.codegen.board_files import render_board_files  # noqa: E402
from mcuformer.codegen.emit import runtime_sources  # noqa: E402
from mcuformer.emulate import qemu_command  # noqa: E402

BOARDS = {"cortex-m4": "NUCLEO-F412ZG", "cortex-m7": "STM32F746G-DISCO", "cortex-m33": "NUCLEO-L552ZE-Q"}
STACK_BYTES = 2048
WEIGHT_BYTES = 1200 * 216
_LINE = re.compile(r"^KERNEL (\S+) (\d+) (\d+) (\d+)$")


@dataclass(frozen=True)
class KernelFigure:
    name: str
    macs: int
    instructions: int
    checksum: int

    @property
    def per_mac(self) -> float:
        return self.instructions / self.macs


def _weights_include() -> str:
    """Seeded int8 weights in flash (const), enough for the largest shape (1200 x 216)."""
    values = np.random.default_rng(0).integers(-128, 128, WEIGHT_BYTES)
    body = ",".join(str(int(v)) for v in values)
    return f"static const int8_t weights[{WEIGHT_BYTES}] = {{{body}}};\n"


def run_core(
    core: str, work: Path, variants: tuple[str, ...] = ("portable", "optimized")
) -> dict[str, list[KernelFigure]]:
    """{variant: figures} for one core; raises RuntimeError on a build or run failure."""
    board = get_board(BOARDS[core])
    project = work / core
    runtime = runtime_sources(board)
    sources = sorted(p for p in runtime if p.endswith(".c"))
    files = {**runtime, **render_board_files(board, sources, STACK_BYTES, include_dirs=("runtime/include",))}
    files["main.c"] = (ROOT / "benchmarks" / "c" / "kernel_bench.c").read_text()
    files["bench_weights.inc"] = _weights_include()
    for rel, text in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    results: dict[str, list[KernelFigure]] = {}
    for variant in variants:
        build = f"build-{variant}"
        proc = subprocess.run(
            ["make", "-j2", "qemu", f"KERNELS={variant}", f"BUILD={build}", "EXTRA_CFLAGS=-I."],
            cwd=project,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{core} {variant} build failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        run = subprocess.run(
            qemu_command(board, project / build / "qemu.elf"),
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        text = run.stdout + run.stderr  # semihosting output
        if run.returncode != 0 or "DONE" not in text:
            raise RuntimeError(f"{core} {variant}: run failed (exit {run.returncode}):\n{text[-3000:]}")
        figures = []
        for line in text.splitlines():
            m = _LINE.match(line.strip())
            if m:
                figures.append(KernelFigure(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
        results[variant] = figures
    if len(variants) == 2:
        sums = [[f.checksum for f in results[v]] for v in variants]
        if sums[0] != sums[1]:
            raise RuntimeError(f"{core}: portable and optimized kernels computed different outputs: {sums}")
    return results


def figures(results: dict[str, list[KernelFigure]]) -> dict[str, dict]:
    """{kernel: MACs, instructions and instructions per MAC, optimized and portable} of run_core."""
    out = {}
    for port, opt in zip(results["portable"], results["optimized"], strict=True):
        out[opt.name] = {
            "macs": opt.macs,
            "instructions_optimized": opt.instructions,
            "instructions_portable": port.instructions,
            "instructions_per_mac_optimized": round(opt.per_mac, 3),
            "instructions_per_mac_portable": round(port.per_mac, 3),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", action="append", choices=sorted(BOARDS), help="default: every core")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    cores = args.core or list(BOARDS)
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mcuformer-kbench-") as tmp:
        for core in cores:
            out[core] = figures(run_core(core, Path(tmp)))
            for name, f in out[core].items():
                print(
                    f"{core:10s} {name:26s} {f['macs']:>9,} MACs  "
                    f"optimized {f['instructions_per_mac_optimized']:5.2f}/MAC "
                    f"portable {f['instructions_per_mac_portable']:5.2f}/MAC",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

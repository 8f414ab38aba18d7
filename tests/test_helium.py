"""Helium (MVE) on the Cortex-M55 (Alif Ensemble E7 HP core, emulated by QEMU's mps3-an547):
the per-core optimized directories (mve first, then dsp), exact instruction counts on an547, and
a whole exported project bit-exact with every kernel variant. The MVE kernels themselves are
checked value by value in tests/test_dsp_kernels.py (core cortex-m55)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mcuformer.boards import get_board, qemu_machine
from mcuformer.codegen.board_files import optimized_dirs, render_board_files, split_kernel_sources
from mcuformer.codegen.emit import project_sources, runtime_sources
from mcuformer.emulate import emulate, format_report, qemu_command
from tests.test_dsp_kernels import RUNTIME_SRC, _functions, _includes, _qemu_has, random_run  # noqa: F401

_HERE = Path(__file__).resolve().parent
BOARD = "Alif-Ensemble-E7-HP"
MACHINE = "mps3-an547"
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_an547 = pytest.mark.skipif(
    not HAVE_ARM or not _qemu_has(MACHINE), reason=f"arm-none-eabi-gcc or qemu-system-arm with {MACHINE} missing"
)


def test_every_mve_file_replaces_a_portable_file_completely() -> None:
    twins = sorted((RUNTIME_SRC / "mve").glob("*.c"))
    assert {p.name for p in twins} >= {"linear.c", "attn_head.c"}
    for twin in twins:
        portable = RUNTIME_SRC / twin.name
        assert portable.is_file(), f"{twin} has no portable file"
        # every function of the portable file, plus the twins' own mcufi_mve_ helpers (declared in
        # mcuf_mve.h: the mve twins are always linked together, mcufi_mve_layernorm_rows)
        extra = {f for f in _functions(twin) if f.startswith("mcufi_mve_")}
        assert _functions(twin) - extra == _functions(portable), twin.name
        for name in extra:
            assert name in (RUNTIME_SRC.parent / "include" / "mcuf_mve.h").read_text(), name
        assert "mcuf_mve.h" in _includes(twin)
    for portable in RUNTIME_SRC.glob("*.c"):
        assert "mcuf_mve.h" not in _includes(portable)


def test_m55_kernel_order_and_makefile() -> None:
    board = get_board(BOARD)
    assert board.core == "cortex-m55" and optimized_dirs(board) == ("mve", "dsp")
    assert optimized_dirs(get_board("NUCLEO-F412ZG")) == ("dsp",) and optimized_dirs(get_board("host")) == ()
    runtime = runtime_sources(board)
    assert "runtime/include/mcuf_mve.h" in runtime and "runtime/src/mve/linear.c" in runtime
    assert "runtime/include/mcuf_mve.h" not in runtime_sources(get_board("NUCLEO-F412ZG"))
    assert not any("/mve/" in p for p in runtime_sources(get_board("NUCLEO-F412ZG")))
    sources = project_sources(runtime)
    split = split_kernel_sources(sources, optimized_dirs(board))
    at = split.portable.index("runtime/src/linear.c")
    assert split.optimized[at] == "runtime/src/mve/linear.c"
    assert split.optimized[split.portable.index("runtime/src/softmax.c")] == "runtime/src/mve/softmax.c"
    assert split.optimized[split.portable.index("runtime/src/fixedpoint.c")] == "runtime/src/dsp/fixedpoint.c"
    assert dict(split.more)["dsp"][at] == "runtime/src/dsp/linear.c"
    # an M4 project split with the M55's order has no mve twin; mve files in a dsp-only split are unused
    dsp_only = split_kernel_sources(sources)
    assert not any("/mve/" in p for p in dsp_only.common + dsp_only.optimized)
    files = render_board_files(board, sources, 1024)
    makefile = files["Makefile"]
    assert "-mcpu=cortex-m55" in makefile and "-mfloat-abi=softfp" in makefile
    assert "DSP_KERNELS += runtime/src/dsp/linear.c" in makefile and "else ifeq ($(KERNELS),dsp)" in makefile
    assert "OPTIMIZED_KERNELS += runtime/src/mve/linear.c" in makefile
    assert "/mve/" not in files["Makefile.host"] and "/dsp/" not in files["Makefile.host"]
    # the emulator image runs from the ITCM's Secure alias (512 KiB), the board image from MRAM
    assert "ORIGIN = 0x10000000, LENGTH = 524288" in files["linker/qemu.ld"]
    assert f"ORIGIN = 0x80000000, LENGTH = {board.flash_bytes}" in files["linker/board.ld"]


def test_an547_count_conversion() -> None:
    machine = qemu_machine(MACHINE)
    assert machine.icount_shift == 10 and machine.instructions(0) == 0
    # n instructions = n * 1024 ns = 32.768 n ticks, give or take 2: the conversion inverts it for every n
    for n in range(0, 5000):
        for error in (-2, -1, 0, 1, 2):
            assert machine.instructions(max(0, n * 1024 * 32 // 1000 + error)) == n
    assert qemu_machine("mps2-an386").instructions(1234) == 1234


@needs_an547
def test_an547_counter_is_exact_on_a_known_loop(tmp_path: Path) -> None:
    """The platform counter (SysTick under -icount shift=10) converted by QemuMachine.instructions
    gives 2n + a constant for a loop of n SUBS/BNE pairs, for every n in 1..300."""
    board = get_board(BOARD)
    runtime = {p: t for p, t in runtime_sources(board).items() if p.endswith(".h")}
    files = {**runtime, **render_board_files(board, [], 2048, include_dirs=("runtime/include",))}
    files["main.c"] = (_HERE / "c" / "counter_loop_test.c").read_text()
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    proc = subprocess.run(["make", "qemu"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = subprocess.run(
        qemu_command(board, tmp_path / "build" / "qemu.elf"), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    rows = [tuple(map(int, m)) for m in re.findall(r"^LOOP (\d+) (\d+)$", run.stdout + run.stderr, re.MULTILINE)]
    assert len(rows) == 300, run.stdout[-1000:] + run.stderr[-1000:]
    machine = qemu_machine(MACHINE)
    offsets = {machine.instructions(count) - 2 * n for n, count in rows}
    assert len(offsets) == 1, f"not exact: instructions - 2n takes the values {sorted(offsets)}"


@needs_an547
def test_m55_project_bit_exact_with_every_kernel_variant(random_run: Path) -> None:  # noqa: F811
    from mcuformer.export import run_export

    project = random_run.parent / "proj-m55"
    run_export(random_run, BOARD, project, force=False, log=lambda _: None, measure=False)
    results = {k: emulate(project, sanitize=False, kernels=k) for k in ("optimized", "dsp", "portable")}
    for kernels, result in results.items():
        assert result["target"] == f"qemu:{MACHINE}" and result["kernels"] == kernels
        assert result["bit_exact"] and result["mismatches"] == [], format_report(result)
    counts = {k: r["instructions_per_inference"] for k, r in results.items()}
    assert counts["optimized"] < counts["dsp"] < counts["portable"], counts
    assert emulate(project, sanitize=False)["kernels"] == "optimized"

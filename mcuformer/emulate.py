"""Build a generated project, run it in QEMU (or natively) and compare every logit with the Python
integer reference stored in the project's report.json (DESIGN section 8, ``emulate --json``).

What is measured and how:
- logits: the harness (main.c) prints ``LOGITS <i> <v...>`` per test input.
- instructions per inference: QEMU runs with ``-icount shift=0`` (one instruction = 1 ns of virtual
  time); SysTick on the processor clock then ticks once per 1e9 / clock instructions (40 on the
  25 MHz mps2-an386/an500, 50 on the 20 MHz an505; mcuformer.boards.QEMU_MACHINES, passed to the
  harness by the Makefile), so the count is executed instructions with that resolution, identical
  on every run. Not cycles. On mps3-an547 (Cortex-M55, 32 MHz: 31.25 instructions per tick at
  shift 0) QEMU runs with ``-icount shift=10`` (1024 ns per instruction, 32.768 ticks), the harness
  prints ticks and they are converted to the exact instruction count (QemuMachine.instructions):
  resolution 1. An MVE (Helium) instruction counts as one, like any other.
- profile: built with ``-DMCUF_PROFILE`` (into build/<variant>-profile/), the harness also prints
  the counter after every operator; per-operator instructions are the differences.
- kernels: ``"default"`` (the Makefile's: optimized on a core with the DSP extension, else
  portable), ``"portable"``, ``"optimized"`` or, on a core with several optimized directories
  (the M55: mve then dsp), ``"dsp"`` (the DSP twins only); each variant builds into build/<variant>/ with
  ``make KERNELS=<variant> BUILD=build/<variant>``. The host build is always portable.
- stack_bytes: high-water mark since reset from stack painting (deepest overwritten word).
- From the ELF section headers (build/<variant>/qemu.elf), ``SHF_ALLOC`` sections only:
    flash_bytes       = sum of sizes of sections with contents (not SHT_NOBITS): vectors, .text,
                        .rodata (weights, tables, test inputs), .ARM.exidx and the .data load image;
    static_sram_bytes = sum of sizes of writable sections (.data + .bss: arena and statics),
                        excluding the reserved ``.stack`` and the ``.ram_free`` filler;
    stack_reserved_bytes = size of ``.stack``.
  measured peak SRAM = static_sram_bytes + stack_bytes.
Host runs (``host=True``) measure none of these (None): only bit-exactness, under ASan/UBSan.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from mcuformer.boards import (
    FIRMWARE_MACHINES,
    QEMU_MACHINES,
    Board,
    FirmwareMachine,
    all_boards,
    format_bytes,
    get_board,
)
from mcuformer.codegen.board_files import OPTIMIZED_DIR, default_kernels, optimized_dirs, split_kernel_sources
from mcuformer.errors import DoesNotFit, UserError

DEFAULT_TIMEOUT_S = 300.0
INSTRUCTIONS_NOTE = (
    "executed instructions under QEMU -icount (SysTick, resolution 40; 50 on mps2-an505; exact, resolution 1, on "
    "mps3-an547 where an MVE instruction counts as one); not cycles"
)

# QEMU accepts only its machine's own CPU for -cpu; a core it lacks (cortex-m0plus) runs on the
# machine's CPU (mps2-an385 = Cortex-M3 runs Armv6-M code).
QEMU_MACHINE_CPU = {name: machine.cpu for name, machine in QEMU_MACHINES.items()}

# Kernel variants of an ARM build (runtime/src/dsp/*.c twins: codegen.board_files.split_kernel_sources).
KERNEL_VARIANTS = ("default", "portable", "optimized", "dsp")

# Exit codes of runtime_c/platform/main.c (platform.h MCUF_EXIT_*).
EXIT_MODEL_ERROR = 2
EXIT_FAULT = 3
EXIT_STACK_OVERFLOW = 4
STATUS_NAMES = {-1: "MCUF_ERR_ARG", -2: "MCUF_ERR_INPUT"}

# Sections of the linker script that are RAM reservations, not static data.
NOT_STATIC_SECTIONS = frozenset({".stack", ".ram_free"})

_OVERFLOW_RE = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")
_MEMORY_RE = re.compile(r"^\s*(\w+)\s*\([a-z]+\)\s*:\s*ORIGIN\s*=\s*\w+\s*,\s*LENGTH\s*=\s*(\d+)", re.MULTILINE)
_OVERFLOW_WHAT = {"RAM": "arena/statics/stack", "FLASH": "weights/code/test inputs"}


@dataclass(frozen=True)
class RunResult:
    target: str  # "qemu:<machine>" or "host"
    logits: list[list[int]]  # [input][class]
    instructions: list[int]  # per inference; all 0 on the host (not measured)
    stack_bytes: int | None  # None: not measured (host)
    stack_reserved_bytes: int | None
    static_sram_bytes: int | None
    flash_bytes: int | None
    output: str  # what the program printed (stdout + stderr)
    op_ends: list[list[int]] = field(default_factory=list)  # per input, counter after each operator (profile)


@dataclass(frozen=True)
class Mismatch:
    input: int
    index: int
    expected: int | None  # None: the C printed a value the reference does not have
    got: int | None  # None: the C printed no value here


@dataclass(frozen=True)
class ElfSizes:
    flash_bytes: int
    static_sram_bytes: int
    stack_reserved_bytes: int


# ------------------------------------------------------------------------------------------ project
def _load_report(project: Path) -> dict:
    report_path = project / "report.json"
    if (
        not project.is_dir()
        or not report_path.is_file()
        or not ((project / "Makefile").is_file() or (project / "Makefile.host").is_file())
    ):
        raise UserError(f"{project} is not an mcuformer project (no report.json); create one with `mcuformer export`")
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{report_path} is not valid JSON ({exc}); re-run `mcuformer export`") from None
    if not isinstance(report, dict) or "board" not in report:
        raise UserError(f"{report_path} has no 'board'; re-run `mcuformer export`")
    return report


def _board_and_expected_outputs(project: Path) -> tuple[Board, list]:
    """The project's board and report.json's expected outputs (the Python integer reference)."""
    report = _load_report(project)
    expected = report.get("expected_outputs")
    if not isinstance(expected, list):
        raise UserError(f"{project / 'report.json'} has no expected_outputs; re-run `mcuformer export`")
    return get_board(str(report["board"])), expected


def _project_board(project: Path) -> Board:
    return get_board(str(_load_report(project)["board"]))


def _use_host(board: Board, host: bool) -> bool:
    return host or board.is_host


def _host_executable(project: Path, sanitize: bool) -> Path:
    return project / "build" / ("host-asan" if sanitize else "host") / "model"


def _region_sizes(project: Path, board: Board) -> dict[str, int]:
    """Region sizes the project links against (a budget can be smaller than the board)."""
    sizes = {"RAM": board.sram_bytes, "FLASH": board.flash_bytes}
    script = project / "linker" / "qemu.ld"
    if script.is_file():
        sizes.update({name: int(length) for name, length in _MEMORY_RE.findall(script.read_text())})
    return sizes


def _require_tool(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise UserError(f"{tool} not found; install the Debian package {package} (apt-get install {package})")


# -------------------------------------------------------------------------------------------- build
def resolve_kernels(project: Path, board: Board, host: bool, kernels: str) -> str:
    """The variant a build uses, "portable" or "optimized", for a requested one (KERNEL_VARIANTS).
    "default" is optimized on a board with the DSP extension whose project has the optimized
    kernels (runtime/src/dsp), else portable; the host is portable. UserError for the impossible."""
    if kernels not in KERNEL_VARIANTS:
        raise UserError(f"unknown kernels '{kernels}': use one of {', '.join(KERNEL_VARIANTS)}")
    sources = sorted(p.relative_to(project).as_posix() for p in (project / "runtime").rglob("*.c"))
    # the twin rule of codegen.board_files, as the Makefile applies it
    variants = split_kernel_sources(sources, optimized_dirs(board))
    if host:
        if kernels in ("optimized", "dsp"):
            raise UserError("the host build has only the portable kernels (optimized ones need a DSP Cortex-M core)")
        return "portable"
    if kernels == "default":
        return default_kernels(board, variants)
    if kernels == "dsp" and "dsp" not in dict(variants.more):
        raise UserError(
            f"board {board.name} ({board.core}) has no kernel variant 'dsp' (only a core with optimized kernels "
            "besides the DSP ones, the Cortex-M55, has it): use optimized or portable"
        )
    if kernels == "optimized" and not board.dsp:
        raise UserError(f"board {board.name} ({board.core}) has no DSP extension: use the portable kernels")
    if kernels == "optimized" and not variants.optimized:
        raise UserError(f"{project} has no optimized kernels (runtime/src/{OPTIMIZED_DIR}); re-run `mcuformer export`")
    return kernels


def _build_dir(variant: str, profile: bool) -> str:
    return f"build/{variant}-profile" if profile else f"build/{variant}"


def _qemu_elf(project: Path, variant: str, profile: bool = False) -> Path:
    return project / _build_dir(variant, profile) / "qemu.elf"


def _board_elf(project: Path, variant: str) -> Path:
    return project / _build_dir(variant, False) / "board.elf"


def build(
    project: Path,
    host: bool = False,
    sanitize: bool = True,
    kernels: str = "default",
    profile: bool = False,
    firmware: bool = False,
) -> Path:
    """Build the project: ARM ``make qemu KERNELS=<v> BUILD=build/<v>`` -> build/<v>/qemu.elf
    (v = resolve_kernels(kernels)); with ``firmware`` ``make all ...`` -> build/<v>/board.elf (the
    board's memory map) and its .bin/.hex; host ``make -f Makefile.host`` (``SANITIZE=1`` with
    ASan/UBSan) -> build/host[-asan]/model. Returns the executable.

    Raises UserError with one line: the link overflow ("model does not fit <board>: RAM overflowed
    by N bytes (...)") or the first compiler error.
    """
    project = Path(project)
    board = _project_board(project)
    host = _use_host(board, host)
    variant = resolve_kernels(project, board, host, kernels)
    _require_tool("make", "make")
    jobs = f"-j{min(os.cpu_count() or 1, 8)}"
    if host:
        _require_tool("cc", "gcc")
        cmd = ["make", jobs, "-f", "Makefile.host", f"SANITIZE={int(sanitize)}"]
        target = _host_executable(project, sanitize)
    else:
        if not (project / "Makefile").is_file():
            raise UserError(f"{project} has no ARM Makefile (board {board.name}); use --host")
        _require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
        goal = "all" if firmware else "qemu"
        cmd = ["make", jobs, goal, f"KERNELS={variant}", f"BUILD={_build_dir(variant, profile)}"]
        if profile:
            cmd.append("EXTRA_CFLAGS=-DMCUF_PROFILE")
        target = _board_elf(project, variant) if firmware else _qemu_elf(project, variant, profile)
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    if proc.returncode != 0:
        raise _build_error(project, board, proc.stdout + proc.stderr)
    if not target.is_file():
        raise UserError(f"`{' '.join(cmd)}` in {project} succeeded but produced no {target.relative_to(project)}")
    return target


_COMPILER_ERROR_RE = re.compile(r"^(?P<where>[^\s:][^:]*:\d+(?::\d+)?): (?:fatal )?error: (?P<what>.*)$")


def _build_error(project: Path, board: Board, log: str) -> UserError:
    """One line: the link overflow (DoesNotFit), else the compiler's first errors as file:line: message
    (paths relative to the project), else the first line that mentions an error."""
    overflows = {region: int(n) for region, n in _OVERFLOW_RE.findall(log)}
    if overflows:
        sizes = _region_sizes(project, board)
        parts = [
            f"{region} overflowed by {n} bytes ({_OVERFLOW_WHAT.get(region, 'contents')} exceed "
            f"{format_bytes(sizes[region]) if region in sizes else 'the region'})"
            for region, n in overflows.items()
        ]
        return DoesNotFit(f"model does not fit {board.name}: " + "; ".join(parts))
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [m for m in map(_COMPILER_ERROR_RE.match, lines) if m]
    if errors:
        shown = [f"{_relative(project, m['where'])}: {m['what']}" for m in errors[:2]]
        more = f" (+{len(errors) - 2} more)" if len(errors) > 2 else ""
        return UserError(f"build of {project} failed: " + "; ".join(shown) + more)
    first = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no output")
    return UserError(f"build of {project} failed: {first}")


def _relative(project: Path, where: str) -> str:
    """A compiler's file:line (relative to the make directory, or absolute) relative to the project."""
    path, _, position = where.partition(":")
    try:
        path = str((project / path).resolve().relative_to(project.resolve()))
    except (ValueError, OSError):
        pass
    return f"{path}:{position}"


# ---------------------------------------------------------------------------------------------- ELF
@dataclass(frozen=True)
class ElfSection:
    name: str
    type: int
    flags: int
    address: int
    size: int


SHF_WRITE, SHF_ALLOC, SHT_NOBITS = 0x1, 0x2, 8


def elf_sections(elf: Path) -> list[ElfSection]:
    """The section headers of a 32-bit little-endian ELF."""
    data = elf.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise UserError(f"{elf} is not a 32-bit little-endian ELF file")
    shoff = struct.unpack_from("<I", data, 0x20)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    headers = [struct.unpack_from("<10I", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_offset = headers[shstrndx][4]

    def name(offset: int) -> str:
        end = data.index(b"\0", strtab_offset + offset)
        return data[strtab_offset + offset : end].decode()

    return [ElfSection(name(h[0]), h[1], h[2], h[3], h[5]) for h in headers]


def elf_sizes(elf: Path) -> ElfSizes:
    """Flash, static SRAM and reserved stack of a 32-bit little-endian ELF (see module doc)."""
    flash = sram = stack = 0
    for section in elf_sections(elf):
        if not section.flags & SHF_ALLOC:
            continue
        if section.name == ".stack":
            stack = section.size
        if section.type != SHT_NOBITS:
            flash += section.size
        if section.flags & SHF_WRITE and section.name not in NOT_STATIC_SECTIONS:
            sram += section.size
    return ElfSizes(flash_bytes=flash, static_sram_bytes=sram, stack_reserved_bytes=stack)


# ---------------------------------------------------------------------------------------------- run
def qemu_command(board: Board, elf: Path) -> list[str]:
    return [
        "qemu-system-arm",
        "-M", board.qemu_machine,
        "-cpu", QEMU_MACHINE_CPU.get(board.qemu_machine, board.core),
        "-nographic",
        "-semihosting-config", "enable=on,target=native",
        "-icount", f"shift={QEMU_MACHINES[board.qemu_machine].icount_shift}",
        "-kernel", str(elf),
    ]  # fmt: skip


def run(
    project: Path,
    host: bool = False,
    sanitize: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    kernels: str = "default",
    profile: bool = False,
) -> RunResult:
    """Run a built project (``build`` first, same ``kernels``) and parse its output. Raises
    UserError on a model error, a CPU fault, a stack overflow, a sanitizer report, a hang
    (timeout) or garbled output."""
    project = Path(project)
    board = _project_board(project)
    host = _use_host(board, host)
    variant = resolve_kernels(project, board, host, kernels)
    if host:
        exe = _host_executable(project, sanitize)
        cmd, target, who = [str(exe.resolve())], "host", "the host build"
        env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    else:
        exe = _qemu_elf(project, variant, profile)
        _require_tool("qemu-system-arm", "qemu-system-arm")
        cmd, target, who = qemu_command(board, exe.resolve()), f"qemu:{board.qemu_machine}", "QEMU"
        env = None
    if not exe.is_file():
        raise UserError(f"{exe} does not exist; build the project first")
    try:
        # QEMU 7.2 writes semihosting output to stderr: parse both streams.
        proc = subprocess.run(
            cmd, cwd=project, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL,
            timeout=timeout_s, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UserError(
            f"{who} did not finish within {timeout_s:g} s running {project} (a hang, e.g. a fault loop, "
            "or a model too slow for the emulator; pass a larger timeout)"
        ) from None
    output = proc.stdout + proc.stderr
    parsed = _parse_output(output, proc.returncode, who)
    if host:
        return RunResult(target, parsed.logits, parsed.instructions, None, None, None, None, output, parsed.op_ends)
    machine = QEMU_MACHINES[board.qemu_machine]  # exact instructions from the counts (ticks at shift > 0)
    parsed = replace(
        parsed,
        instructions=[machine.instructions(c) for c in parsed.instructions],
        op_ends=[[machine.instructions(c) for c in ends] for ends in parsed.op_ends],
    )
    return _elf_run_result(target, parsed, exe, output)


def _elf_run_result(target: str, parsed: _Parsed, elf: Path, output: str) -> RunResult:
    """A Cortex-M run's result: the parsed output and the sizes of the ELF that ran."""
    sizes = elf_sizes(elf)
    return RunResult(
        target=target,
        logits=parsed.logits,
        instructions=parsed.instructions,
        stack_bytes=parsed.stack,
        stack_reserved_bytes=sizes.stack_reserved_bytes,
        static_sram_bytes=sizes.static_sram_bytes,
        flash_bytes=sizes.flash_bytes,
        output=output,
        op_ends=parsed.op_ends,
    )


@dataclass(frozen=True)
class _Parsed:
    logits: list[list[int]]
    instructions: list[int]
    stack: int
    op_ends: list[list[int]]  # per input: the counter after each operator (profile builds only)


def _parse_output(output: str, returncode: int, who: str) -> _Parsed:
    logits: dict[int, list[int]] = {}
    instructions: dict[int, int] = {}
    op_ends: dict[int, list[int]] = {}
    stack: int | None = None
    done = False
    for line in output.splitlines():
        fields = line.split()
        if not fields:
            continue
        key, args = fields[0], fields[1:]
        try:
            if key == "LOGITS" and args:
                logits[int(args[0])] = [int(v) for v in args[1:]]
            elif key == "INSTRUCTIONS" and len(args) == 2:
                instructions[int(args[0])] = int(args[1])
            elif key == "OPS" and args:
                op_ends[int(args[0])] = [int(v) for v in args[1:]]
            elif key == "STACK" and len(args) == 1:
                stack = int(args[0])
            elif key == "DONE":
                done = True
            elif key == "ERROR" and len(args) == 2:
                status = int(args[1])
                raise UserError(
                    f"the model returned {STATUS_NAMES.get(status, status)} on test input {args[0]} in {who}"
                )
            elif key == "STACK_OVERFLOW" and len(args) == 1:
                raise UserError(
                    f"stack overflow in {who}: the program used more than the {args[0]} bytes of stack "
                    "reserved by the linker script; export with a larger stack"
                )
            elif key == "FAULT":
                raise UserError(f"CPU fault in {who}: {line.strip()}")
        except ValueError:
            raise UserError(f"garbled output line from {who}: {line.strip()!r}") from None
    if returncode != 0 or not done:
        summary = next((ln.strip() for ln in output.splitlines() if "SUMMARY:" in ln or "runtime error" in ln), None)
        if summary:
            raise UserError(f"sanitizer error in {who}: {summary}")
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        raise UserError(f"{who} exited with status {returncode} before finishing: {last}")
    if sorted(logits) != list(range(len(logits))) or sorted(instructions) != sorted(logits) or stack is None:
        raise UserError(f"incomplete output from {who}: missing LOGITS, INSTRUCTIONS or STACK lines")
    n = len(logits)
    ends = [op_ends[i] for i in range(n)] if sorted(op_ends) == list(range(n)) else []
    return _Parsed([logits[i] for i in range(n)], [instructions[i] for i in range(n)], stack, ends)


# ------------------------------------------------------------------------------------------ compare
def compare(expected: list[list[int]], got: list[list[int]]) -> list[Mismatch]:
    """Every (input, index) where the C differs from the reference, missing values included."""
    mismatches: list[Mismatch] = []
    for i in range(max(len(expected), len(got))):
        exp_row = expected[i] if i < len(expected) else []
        got_row = got[i] if i < len(got) else []
        for j in range(max(len(exp_row), len(got_row))):
            e = int(exp_row[j]) if j < len(exp_row) else None
            g = int(got_row[j]) if j < len(got_row) else None
            if e != g:
                mismatches.append(Mismatch(input=i, index=j, expected=e, got=g))
    return mismatches


# ------------------------------------------------------------------------------------------ emulate
def emulate(
    project: Path,
    host: bool = False,
    sanitize: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    kernels: str = "default",
    profile: bool = False,
) -> dict:
    """Build, run and compare; the ``emulate --json`` dict (DESIGN section 8).

    Keys: target, board, bit_exact, inputs, mismatches [{input, index, expected, got}],
    instructions_per_inference (mean over inputs, rounded; None on the host),
    instructions_per_input, instructions_note, stack_bytes, stack_reserved_bytes,
    static_sram_bytes, flash_bytes, measured_peak_sram_bytes (static + stack), sanitized,
    kernels ("portable" or "optimized": the variant built, see resolve_kernels).
    """
    project = Path(project)
    board, expected = _board_and_expected_outputs(project)
    host = _use_host(board, host)
    if profile and host:
        raise UserError("--profile counts instructions in QEMU; it cannot be combined with --host")
    variant = resolve_kernels(project, board, host, kernels)
    build(project, host=host, sanitize=sanitize, kernels=variant, profile=profile)
    result = run(project, host=host, sanitize=sanitize, timeout_s=timeout_s, kernels=variant, profile=profile)
    mismatches = compare(expected, result.logits)
    measured = not host
    counts = result.instructions if measured else None
    peak = (
        result.static_sram_bytes + result.stack_bytes
        if result.static_sram_bytes is not None and result.stack_bytes is not None
        else None
    )
    return {
        "target": result.target,
        "board": board.name,
        "bit_exact": not mismatches,
        "inputs": len(expected),
        "mismatches": [asdict(m) for m in mismatches],
        "instructions_per_inference": round(sum(counts) / len(counts)) if counts else None,
        "instructions_per_input": counts,
        "instructions_note": INSTRUCTIONS_NOTE if measured else "not measured on the host",
        "stack_bytes": result.stack_bytes,
        "stack_reserved_bytes": result.stack_reserved_bytes,
        "static_sram_bytes": result.static_sram_bytes,
        "flash_bytes": result.flash_bytes,
        "measured_peak_sram_bytes": peak,
        "sanitized": host and sanitize,
        "kernels": variant,
        **({"profile": operator_profile(_load_report(project), result.op_ends)} if profile else {}),
    }


# ----------------------------------------------------------------------------------------- firmware
FIRMWARE_NOTE = (
    "not measured on the firmware machine (SysTick at the SoC's clock does not tick a whole number of "
    "instructions under -icount); instruction counts come from `emulate` on the MPS2 machine"
)
_EXIT_RE = re.compile(r"^EXIT (-?\d+)\s*$", re.MULTILINE)


def firmware_machine(board: Board) -> FirmwareMachine:
    if not board.firmware_machine:
        with_firmware = ", ".join(b.name for b in all_boards() if b.firmware_machine) or "none"
        raise UserError(
            f"board {board.name} has no emulated microcontroller for its firmware image "
            f"(boards with one: {with_firmware})"
        )
    try:
        return FIRMWARE_MACHINES[board.firmware_machine]
    except KeyError:
        raise UserError(f"board {board.name}: unknown firmware machine '{board.firmware_machine}'") from None


def firmware_command(machine: FirmwareMachine, elf: Path) -> list[str]:
    """Boot ``elf`` from the machine's flash; the first UART is stdout; a reset request ends QEMU."""
    return [
        "qemu-system-arm",
        "-M", machine.name,
        "-display", "none",
        "-monitor", "none",
        "-serial", "stdio",
        "-no-reboot",
        "-kernel", str(elf),
    ]  # fmt: skip


def check_firmware_layout(elf: Path, machine: FirmwareMachine) -> None:
    """UserError unless every allocated section of ``elf`` lies in memory the machine models."""
    for section in elf_sections(elf):
        if section.flags & SHF_ALLOC and section.size and not machine.maps(section.address, section.size):
            raise UserError(
                f"{elf.name}: section {section.name} at 0x{section.address:08x} ({section.size} B) is outside "
                f"the memory {machine.name} models ({machine.notes}); the emulator cannot run this image"
            )


def run_firmware(project: Path, kernels: str = "default", timeout_s: float = DEFAULT_TIMEOUT_S) -> RunResult:
    """Boot the built firmware image (``build(..., firmware=True)`` first) on the board's emulated
    microcontroller and parse its serial output. The image must end with the status line
    ``EXIT <code>`` and a reset request (which ends QEMU under -no-reboot); UserError otherwise, on
    a model error, a CPU fault, a stack overflow or a hang."""
    project = Path(project)
    board = _project_board(project)
    machine = firmware_machine(board)
    variant = resolve_kernels(project, board, False, kernels)
    elf = _board_elf(project, variant)
    if not elf.is_file():
        raise UserError(f"{elf} does not exist; build the firmware image first")
    check_firmware_layout(elf, machine)
    _require_tool("qemu-system-arm", "qemu-system-arm")
    who = f"the firmware on {machine.name}"
    try:
        proc = subprocess.run(
            firmware_command(machine, elf.resolve()), cwd=project, capture_output=True, text=True,
            errors="replace", stdin=subprocess.DEVNULL, timeout=timeout_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UserError(
            f"{who} did not finish within {timeout_s:g} s (no reset request: a hang, or a fault loop)"
        ) from None
    output = proc.stdout.replace("\r\n", "\n")
    if proc.returncode != 0:
        raise UserError(f"QEMU ({machine.name}) exited with status {proc.returncode}: {proc.stderr.strip()[-300:]}")
    exits = _EXIT_RE.findall(output)
    if not exits:
        parsed_tail = output.strip().splitlines()[-1] if output.strip() else "no output"
        raise UserError(f"{who} reset without its final status line (EXIT <code>); last output: {parsed_tail}")
    return _elf_run_result(f"qemu:{machine.name}", _parse_output(output, int(exits[-1]), who), elf, output)


def emulate_firmware(project: Path, kernels: str = "default", timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Build the firmware image (the board's memory map, its console), boot it on the board's
    emulated microcontroller and compare its serial output with report.json's expected outputs.
    The ``emulate --json`` dict, with ``firmware: true``, the image files next to the ELF
    (``images``) and no instruction counts."""
    project = Path(project)
    board, expected = _board_and_expected_outputs(project)
    if board.is_host:
        raise UserError("--firmware runs a microcontroller image; the host board has none")
    firmware_machine(board)
    variant = resolve_kernels(project, board, False, kernels)
    elf = build(project, kernels=variant, firmware=True)
    result = run_firmware(project, kernels=variant, timeout_s=timeout_s)
    mismatches = compare(expected, result.logits)
    return {
        "target": result.target,
        "board": board.name,
        "firmware": True,
        "bit_exact": not mismatches,
        "inputs": len(expected),
        "mismatches": [asdict(m) for m in mismatches],
        "instructions_per_inference": None,
        "instructions_per_input": None,
        "instructions_note": FIRMWARE_NOTE,
        "stack_bytes": result.stack_bytes,
        "stack_reserved_bytes": result.stack_reserved_bytes,
        "static_sram_bytes": result.static_sram_bytes,
        "flash_bytes": result.flash_bytes,
        "measured_peak_sram_bytes": result.static_sram_bytes + result.stack_bytes,
        "sanitized": False,
        "kernels": variant,
        "images": sorted(str(p.relative_to(project)) for p in elf.parent.glob("board.*") if p.suffix != ".map"),
    }


# ------------------------------------------------------------------------------------------ library
def check_library(library: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Build a ``--format lib`` directory with CMake and the host compiler (into build/host-check),
    run its example and compare the logits with report.json's expected outputs.
    ``{"target": "host (cmake)", "bit_exact", "inputs", "mismatches"}``; UserError on a failed
    configure, build or run."""
    library = Path(library)
    report_path = library / "report.json"
    if not (library / "CMakeLists.txt").is_file() or not report_path.is_file():
        raise UserError(
            f"{library} is not an mcuformer library (no CMakeLists.txt/report.json); use export --format lib"
        )
    expected = json.loads(report_path.read_text()).get("expected_outputs")
    if not isinstance(expected, list):
        raise UserError(f"{report_path} has no expected_outputs; re-run `mcuformer export --format lib`")
    _require_tool("cmake", "cmake")
    _require_tool("cc", "gcc")
    build_dir = library / "build" / "host-check"
    steps = (
        ["cmake", "-S", ".", "-B", str(build_dir.relative_to(library)), "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build_dir.relative_to(library)), f"-j{min(os.cpu_count() or 1, 8)}"],
    )
    for cmd in steps:
        proc = subprocess.run(cmd, cwd=library, capture_output=True, text=True)
        if proc.returncode != 0:
            raise _build_error(library, get_board("host"), proc.stdout + proc.stderr)
    exe = build_dir / "mcuformer_example"
    try:
        proc = subprocess.run([str(exe.resolve())], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UserError(f"the library example did not finish within {timeout_s:g} s") from None
    logits: dict[int, list[int]] = {}
    for line in proc.stdout.splitlines():
        fields = line.split()
        if fields[:1] == ["LOGITS"] and len(fields) >= 2:
            logits[int(fields[1])] = [int(v) for v in fields[2:]]
    if proc.returncode != 0 or "DONE" not in proc.stdout.split():
        last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"the library example exited with status {proc.returncode}: {last[0]}")
    mismatches = compare(expected, [logits[i] for i in sorted(logits)])
    return {
        "target": "host (cmake)",
        "bit_exact": not mismatches,
        "inputs": len(expected),
        "mismatches": [asdict(m) for m in mismatches],
    }


def operator_profile(report: dict, op_ends: list[list[int]]) -> list[dict]:
    """Instructions per operator (mean over the test inputs) from the counter after each operator."""
    ops = report["ops"]
    if not op_ends or any(len(ends) != len(ops) for ends in op_ends):
        raise UserError("the profile build printed no per-operator counts (OPS lines); re-run `mcuformer export`")
    table = []
    for k, op in enumerate(ops):
        deltas = [ends[k] - (ends[k - 1] if k else 0) for ends in op_ends]
        table.append(
            {
                "step": k,
                "name": op["name"],
                "kind": op["kind"],
                "kernel": op["kernel"],
                "instructions": round(sum(deltas) / len(deltas)),
                "macs": op.get("macs"),  # absent in reports of older exports
            }
        )
    total = sum(row["instructions"] for row in table) or 1
    for row in table:
        row["share"] = round(row["instructions"] / total, 4)
        row["instructions_per_mac"] = round(row["instructions"] / row["macs"], 3) if row["macs"] else None
    return table


def format_report(result: dict, max_mismatches: int = 10) -> str:
    """Console summary of an ``emulate`` dict."""
    n_inputs = result["inputs"]
    mismatches = result["mismatches"]
    if result["bit_exact"]:
        verdict = f"PASS: {n_inputs}/{n_inputs} test inputs bit-exact with the Python integer reference"
    else:
        bad = len({m["input"] for m in mismatches})
        verdict = f"FAIL: {len(mismatches)} logits differ from the Python integer reference in {bad}/{n_inputs} inputs"
    target = result["target"] + (" (ASan+UBSan)" if result.get("sanitized") else "")
    lines = [f"emulate {result['board']} on {target}: {verdict}"]
    for m in mismatches[:max_mismatches]:
        lines.append(f"  input {m['input']} logit {m['index']}: expected {m['expected']}, got {m['got']}")
    if len(mismatches) > max_mismatches:
        lines.append(f"  ... and {len(mismatches) - max_mismatches} more")
    if result["instructions_per_inference"] is not None:
        per_input = result["instructions_per_input"]
        spread = f" (min {min(per_input):,}, max {max(per_input):,})" if len(set(per_input)) > 1 else ""
        lines.append(
            f"instructions per inference: {result['instructions_per_inference']:,}{spread} "
            "- instructions (QEMU -icount), not cycles"
        )
    if result["stack_bytes"] is not None:
        reserved = result.get("stack_reserved_bytes")
        of = f" of {format_bytes(reserved)} reserved" if reserved else ""
        lines.append(f"stack: {format_bytes(result['stack_bytes'])} used{of}")
    if result["static_sram_bytes"] is not None:
        lines.append(f"static SRAM: {format_bytes(result['static_sram_bytes'])} (.data + .bss: arena and statics)")
    if result.get("measured_peak_sram_bytes") is not None:
        lines.append(f"peak SRAM (static + stack): {format_bytes(result['measured_peak_sram_bytes'])}")
    if result["flash_bytes"] is not None:
        lines.append(f"flash: {format_bytes(result['flash_bytes'])}")
    if result.get("firmware"):
        lines.append(f"firmware image (the board's memory map, serial console): {', '.join(result['images'])}")
        lines.append(f"instructions: {result['instructions_note']}")
    if result.get("profile"):
        width = max(len(row["name"]) for row in result["profile"])
        lines.append(f"instructions per operator ({result['kernels']} kernels; QEMU -icount, not cycles):")
        for row in result["profile"]:
            per_mac = row.get("instructions_per_mac")
            lines.append(
                f"  {row['step']:>3}  {row['name']:<{width}}  {row['kernel']:<28} "
                f"{row['instructions']:>14,}  {100 * row['share']:5.1f}%"
                + (f"  {per_mac:6.2f}/MAC" if per_mac is not None else "")
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- the emulate job
def run_emulate(
    project: Path,
    host: bool,
    sanitize: bool,
    log: Callable[[str], None] | None,
    kernels: str = "default",
    profile: bool = False,
    firmware: bool = False,
) -> dict:
    if firmware and (host or profile):
        raise UserError("--firmware boots the board image in QEMU; it cannot be combined with --host or --profile")
    if firmware:
        result = emulate_firmware(project, kernels=kernels)
    else:
        result = emulate(project, host=host, sanitize=sanitize, kernels=kernels, profile=profile)
    if log:
        log(format_report(result))
    return result

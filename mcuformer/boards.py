"""Board loading. Boards are data files in ``boards/*.json``; no other module tests a board's name."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from mcuformer.errors import UserError


@dataclass(frozen=True)
class QemuMachine:
    """A qemu-system-arm (7.2) machine that runs a board's image: its CPU and where the image lives.

    The emulation image is linked at ``flash_origin`` (vectors, code, read-only data) and
    ``ram_origin`` (data, bss, stack) with the board's own sizes, each at most ``region_bytes``.
    ``instructions_per_tick``: SysTick on the processor clock under ``-icount shift=0`` (1 ns per
    instruction) ticks once per this many instructions (1e9 / the machine's processor clock).
    """

    name: str
    cpu: str  # -cpu: the machine's own core (QEMU accepts no other)
    flash_origin: int
    ram_origin: int
    region_bytes: int
    instructions_per_tick: int
    notes: str = ""


# Instructions per SysTick tick that runtime_c/platform/platform_semihost.c assumes (25 MHz MPS2).
PLATFORM_INSTRUCTIONS_PER_TICK = 40

QEMU_MACHINES: dict[str, QemuMachine] = {
    m.name: m
    for m in (
        # Armv7-M / Armv6-M MPS2 images: 4 MiB ZBT SSRAM1 at 0x0 (code), 4 MiB SSRAM2/3 at 0x20000000
        # (data); 25 MHz processor clock. mps2-an385 (Cortex-M3) also runs Armv6-M (M0/M0+) code.
        QemuMachine("mps2-an385", "cortex-m3", 0x00000000, 0x20000000, 4 * 1024 * 1024, 40),
        QemuMachine("mps2-an386", "cortex-m4", 0x00000000, 0x20000000, 4 * 1024 * 1024, 40),
        QemuMachine("mps2-an500", "cortex-m7", 0x00000000, 0x20000000, 4 * 1024 * 1024, 40),
        # Armv8-M (IoTKit, TrustZone): the core resets in Secure state with SVTOR = 0x10000000, and
        # the IDAU makes every address with bit 28 set Secure. SSRAM1 (4 MiB) is at 0x00000000,
        # SSRAM2 and SSRAM3 (2 MiB each) at 0x28000000 and 0x28200000; their MPCs reset to
        # Secure-only, so a Secure image uses the Secure aliases 0x10000000 (code, vectors) and
        # 0x38000000 (data, 4 MiB contiguous). SYSCLK is 20 MHz: 50 instructions per tick.
        QemuMachine(
            "mps2-an505",
            "cortex-m33",
            0x10000000,
            0x38000000,
            4 * 1024 * 1024,
            50,
            "runs in Secure state from the Secure aliases of SSRAM1 (code) and SSRAM2/3 (data)",
        ),
    )
}


def qemu_machine(name: str) -> QemuMachine:
    """The emulator description of a board's ``qemu_machine``."""
    try:
        return QEMU_MACHINES[name]
    except KeyError:
        known = ", ".join(sorted(QEMU_MACHINES))
        raise UserError(f"no emulator description for QEMU machine '{name}' (known: {known})") from None


@dataclass(frozen=True)
class Board:
    name: str
    core: str  # cortex-m0plus | cortex-m4 | cortex-m7 | cortex-m33 | host
    fpu: str
    dsp: bool  # has the DSP extension (SIMD 16-bit dual MAC)
    clock_hz: int
    sram_bytes: int  # the region the model uses (arena, stack, statics)
    sram_origin: int
    flash_bytes: int
    flash_origin: int
    qemu_machine: str  # "" for the host
    cflags: str
    notes: str

    @property
    def is_host(self) -> bool:
        return self.core == "host"

    def with_budget(self, sram_bytes: int | None, flash_bytes: int | None) -> Board:
        """The same board limited to a smaller budget (a search/export constraint)."""
        sram = self.sram_bytes if sram_bytes is None else sram_bytes
        flash = self.flash_bytes if flash_bytes is None else flash_bytes
        if sram > self.sram_bytes or flash > self.flash_bytes:
            raise UserError(
                f"budget {format_bytes(sram)} SRAM / {format_bytes(flash)} flash exceeds board {self.name} "
                f"({format_bytes(self.sram_bytes)} / {format_bytes(self.flash_bytes)}); pick a smaller budget"
            )
        return replace(self, sram_bytes=sram, flash_bytes=flash)


def boards_dir() -> Path:
    return Path(str(resources.files("boards")))


def _load(path: Path) -> Board:
    data = json.loads(path.read_text())
    sram = data["sram"][0]
    return Board(
        name=data["name"],
        core=data["core"],
        fpu=data["fpu"],
        dsp=bool(data["dsp"]),
        clock_hz=int(data["clock_hz"]),
        sram_bytes=int(sram["size"]),
        sram_origin=int(sram["origin"]),
        flash_bytes=int(data["flash"]["size"]),
        flash_origin=int(data["flash"]["origin"]),
        qemu_machine=data["qemu_machine"],
        cflags=data["cflags"],
        notes=data.get("notes", ""),
    )


def all_boards() -> list[Board]:
    return [_load(p) for p in sorted(boards_dir().glob("*.json"))]


def get_board(name: str) -> Board:
    for board in all_boards():
        if board.name.lower() == name.lower():
            return board
    names = ", ".join(b.name for b in all_boards())
    raise UserError(f"unknown board '{name}'; known boards: {names} (see `mcuformer boards`)")


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2}


def parse_bytes(text: str, what: str = "size") -> int:
    """'256KiB' -> 262144, '1MiB', '512kB', '4096'. Units: B, kB, KiB, MB, MiB (case-insensitive)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise UserError(f"bad {what} '{text}': use a number with a unit B, kB, KiB, MB or MiB, e.g. 256KiB")
    value = float(match.group(1)) * _UNITS[unit]
    if value < 1 or value != int(value):
        raise UserError(f"bad {what} '{text}': must be a positive whole number of bytes")
    return int(value)


def format_bytes(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB".replace(".0 KiB", " KiB")
    return f"{n} B"

"""Board loading. Boards are data files in ``boards/*.json``; no other module tests a board's name."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from mcuformer.errors import UserError

# Emulator memory map (MPS2 AN385/AN386/AN500): code at 0x0, data at 0x20000000, 4 MiB each.
QEMU_FLASH_ORIGIN = 0x00000000
QEMU_RAM_ORIGIN = 0x20000000
QEMU_REGION_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Board:
    name: str
    core: str  # cortex-m4 | cortex-m7 | host
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

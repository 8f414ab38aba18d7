"""Board loading. Boards are data files in ``boards/*.json``; no other module tests a board's name."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from mcuformer.errors import UserError


@dataclass(frozen=True)
class QemuMachine:
    """A qemu-system-arm (7.2) machine that runs a board's image: its CPU and where the image lives.

    The emulation image is linked at ``flash_origin`` (vectors, code, read-only data) and
    ``ram_origin`` (data, bss, stack) with the board's own sizes, each at most ``region_bytes``.
    ``instructions_per_tick``: SysTick on the processor clock under ``-icount shift=0`` (1 ns per
    instruction) ticks once per this many instructions (1e9 / the machine's processor clock).
    ``icount_shift`` > 0 (a clock that ticks no whole number of instructions at shift 0): QEMU runs
    with ``-icount shift=<icount_shift>`` (2^shift ns per instruction, many SysTick periods of
    1e9 / ``clock_hz`` ns), the harness counts ticks (``instructions_per_tick`` 1) and
    ``instructions`` recovers the exact number of instructions from them.
    ``flash_window``: the code region (``flash_bytes_limit``) is smaller than the board's flash: the
    emulator image's FLASH is that region (a larger model fails at link time there), the board
    image keeps the board's flash.
    """

    name: str
    cpu: str  # -cpu: the machine's own core (QEMU accepts no other)
    flash_origin: int
    ram_origin: int
    region_bytes: int
    instructions_per_tick: int
    notes: str = ""
    flash_region_bytes: int = 0  # the code region when smaller than region_bytes (0: region_bytes)
    icount_shift: int = 0
    clock_hz: int = 0  # SysTick's processor clock, needed when icount_shift > 0
    flash_window: bool = False

    @property
    def flash_bytes_limit(self) -> int:
        return self.flash_region_bytes or self.region_bytes

    def instructions(self, count: int) -> int:
        """Executed instructions for a count the harness printed (SysTick ticks times
        ``instructions_per_tick``). At shift 0 the count itself. At shift s > 0 a run of n
        instructions lasts n * 2^s ns, r = 2^s * clock_hz / 1e9 ticks per instruction (32.768 on
        mps3-an547 at shift 10), and SysTick counts t = n * r + e ticks, |e| <= 2 (where the tick
        grid starts, and the reload tick the counter skips); with r > 4, n = round(t / r) exactly
        (checked on a loop of known length in tests/test_helium.py)."""
        if self.icount_shift == 0:
            return count
        d = self.clock_hz << self.icount_shift  # r * 1e9
        return (2 * count * 1_000_000_000 + d) // (2 * d)


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
        # Arm MPS3 AN547 (Corstone SSE-300, Cortex-M55 with MVE and the FPU; QEMU 7.2 memory map):
        # ITCM 512 KiB at 0x00000000, SRAM 2 MiB at 0x01000000, DTCM 512 KiB at 0x20000000, ISRAM
        # 4 MiB at 0x21000000, QSPI 8 MiB (ROM) at 0x28000000, DDR 2 GiB at 0x60000000; the core
        # resets in Secure state with SVTOR = 0x10000000 (the ITCM's Secure alias), and the Secure
        # aliases (bit 28 set) reach every one of them. The image runs from the ITCM (vectors, code
        # and weights: 512 KiB at most, a window on the board's flash) with its data in DDR (16 MiB
        # used: the main region and the board's other regions in use, back to back). SYSCLK is
        # 32 MHz: 31.25 instructions per tick at shift 0, so QEMU runs at shift 10 (1024 ns per
        # instruction, 32.768 ticks) and the count is recovered exactly (QemuMachine.instructions).
        QemuMachine(
            "mps3-an547",
            "cortex-m55",
            0x10000000,
            0x70000000,
            16 * 1024 * 1024,
            1,
            "runs in Secure state: code and weights in the ITCM (512 KiB), data in DDR",
            flash_region_bytes=512 * 1024,
            icount_shift=10,
            clock_hz=32_000_000,
            flash_window=True,
        ),
        # BBC micro:bit (nRF51822): a real Cortex-M0 (Armv6-M: unaligned accesses fault, unlike on
        # the M3 of mps2-an385), 256 KiB flash at 0x0, 16 KiB RAM at 0x20000000. SysTick runs at
        # 16 MHz (62.5 instructions per tick): no instruction counts (0), bit-exactness only.
        QemuMachine(
            "microbit",
            "cortex-m0",
            0x00000000,
            0x20000000,
            16 * 1024,
            0,
            "Cortex-M0 check of Armv6-M builds with a small model; no instruction counts",
            flash_region_bytes=256 * 1024,
        ),
    )
}


@dataclass(frozen=True)
class FirmwareMachine:
    """A qemu-system-arm (7.2) model of a real microcontroller that boots a board's firmware image
    (linked with the board's real memory map) from its flash, with console output over a UART.

    ``mapped``: the (origin, bytes) address ranges the machine backs with memory; an image whose
    flash or RAM sections fall outside them cannot run there. No instruction counts: its SysTick
    clock does not give a whole number of instructions per tick under -icount.
    """

    name: str
    flash: tuple[int, int]
    mapped: tuple[tuple[int, int], ...]
    notes: str = ""

    def maps(self, origin: int, size: int) -> bool:
        return any(lo <= origin and origin + size <= lo + n for lo, n in (self.flash, *self.mapped))


FIRMWARE_MACHINES: dict[str, FirmwareMachine] = {
    m.name: m
    for m in (
        # STM32F405: 1 MiB flash at 0x08000000 (aliased at 0x0, where the core reads its vector
        # table), SRAM at 0x20000000 (QEMU maps 192 KiB; the part has 112 + 16 KiB), no CCM at
        # 0x10000000; RCC, flash interface and GPIO are unimplemented devices (writes ignored,
        # reads zero); USART1 at 0x40011000 is the first serial port (-serial).
        FirmwareMachine(
            "netduinoplus2",
            (0x08000000, 1024 * 1024),
            ((0x20000000, 192 * 1024),),
            "STM32F405 model: no CCM, clock controller reads as zero",
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
class MemoryRegion:
    """One RAM region of a board. kind: "sram" (general purpose), "tcm" (tightly coupled / core
    coupled: single-cycle, not reachable by DMA on most parts) or "external" (SDRAM/PSRAM behind a
    memory controller the application must start before the model runs)."""

    name: str
    origin: int
    size: int
    kind: str = "sram"


MEMORY_REGION_KINDS = ("sram", "tcm", "external")


@dataclass(frozen=True)
class Board:
    name: str
    core: str  # cortex-m0plus | cortex-m4 | cortex-m7 | cortex-m33 | cortex-m55 | host
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
    # Every RAM region of the board (the first is the model's default region: sram_origin/bytes).
    regions: tuple[MemoryRegion, ...] = ()
    # The firmware image (linker/board.ld) runs on this FIRMWARE_MACHINES entry, with this platform
    # layer (runtime_c/platform/platform_<firmware_platform>.c); "" = semihosting like the emulator image.
    firmware_machine: str = ""
    firmware_platform: str = ""
    flash_formats: tuple[str, ...] = ("bin", "hex")  # files next to board.elf ("uf2" where it boots one)
    uf2_family: int = 0  # UF2 family ID (0: no UF2)
    stack_region: str = ""  # the region of the stack (the vendor's convention); "" = the first region
    defines: tuple[str, ...] = ()  # preprocessor symbols of the board's build (e.g. MCUF_RP2350_IMAGE_DEF)

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
    return Path(__file__).resolve().parent  # the board JSON files live beside this module


def _region(entry: dict, path: Path) -> MemoryRegion:
    kind = entry.get("kind", "sram")
    if kind not in MEMORY_REGION_KINDS:
        raise UserError(f"{path}: region '{entry.get('name')}' has kind '{kind}'; use one of {MEMORY_REGION_KINDS}")
    return MemoryRegion(str(entry["name"]), int(entry["origin"]), int(entry["size"]), kind)


def _load(path: Path) -> Board:
    data = json.loads(path.read_text())
    sram = data["sram"][0]
    firmware = data.get("firmware", {})
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
        regions=tuple(_region(r, path) for r in (*data["sram"], *data.get("external_ram", []))),
        firmware_machine=firmware.get("qemu_machine", ""),
        firmware_platform=firmware.get("platform", ""),
        flash_formats=tuple(data.get("flash_formats", ("bin", "hex"))),
        uf2_family=int(data.get("uf2_family", 0)),
        defines=tuple(data.get("defines", ())),
        stack_region=data.get("stack_region", ""),
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

"""Board- and platform-specific files of a generated C project (Makefiles, linker scripts, startup,
platform layer, test harness).

``render_board_files`` is pure: it returns ``{relative path: content}`` and writes nothing; the
exporter writes the project. Sources come from the installed packages (importlib.resources), so
this works from a wheel as well as from a checkout.

Project layout produced here (paths relative to the project root):
  Makefile          ARM build (``make`` -> build/board.elf, ``make qemu`` -> build/qemu.elf;
                    ``KERNELS=optimized|portable``, ``BUILD=<dir>``)
  Makefile.host     native build (``make -f Makefile.host [SANITIZE=1]``), portable kernels
  linker/board.ld   the board's memory map
  linker/qemu.ld    the emulator's origins (mcuformer.boards.QEMU_MACHINES), the board's sizes
  main.c            test harness (runtime_c/platform/main.c)
  platform/*        platform layer (runtime_c/platform)
For the host board only Makefile.host, main.c and the host platform files are produced.

Kernel variants (DESIGN section 5): a source ``<dir>/<opt>/<name>.c``, ``<opt>`` one of a core's
optimized directories (``optimized_dirs``: ``dsp`` on the M4, M7 and M33; ``mve`` then ``dsp`` on
the M55), is a twin of ``<dir>/<name>.c`` and defines the same functions. The ARM Makefile builds,
with ``KERNELS=optimized`` (the default on a board with the DSP extension), for each portable file
its first twin in that order in its place, and with ``KERNELS=portable`` (the default otherwise)
the portable files only; a core with several directories also has ``KERNELS=<dir>`` for each later
one (the M55's ``KERNELS=dsp``: the DSP twins only, the same build the M4/M7/M33 get). The host
build always uses the portable files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import jinja2

from mcuformer.boards import Board, QemuMachine, format_bytes, qemu_machine
from mcuformer.codegen.regions import RegionPlacement, main_region
from mcuformer.errors import UserError

PLATFORM_DIR = "platform"
HARNESS = "main.c"
# Linked into both ARM images; each image adds its own platform layer (console, exit, counter):
# the emulator image SEMIHOST_PLATFORM, the board image the board's firmware platform or SEMIHOST_PLATFORM.
ARM_PLATFORM_SOURCES = ("platform/startup_cortexm.c", "platform/platform_cortexm.c")
SEMIHOST_PLATFORM = "platform/platform_semihost.c"
HOST_PLATFORM_SOURCES = ("platform/platform_host.c",)
UF2_TOOL = "tools/bin2uf2.py"  # boards/tools/bin2uf2.py, for boards with a UF2 family
ARM_PLATFORM_FILES = ("platform.h", "startup_cortexm.c", "platform_cortexm.c", "platform_semihost.c")
HOST_PLATFORM_FILES = ("platform.h", "platform_host.c")
# The exporter's layout (codegen.emit): model/model.h, runtime/include/*.h (mcuf.h and the private headers).
DEFAULT_INCLUDE_DIRS = ("model", "runtime/include")
OPTIMIZED_DIR = "dsp"  # <dir>/dsp/<name>.c replaces <dir>/<name>.c with KERNELS=optimized
MVE_DIR = "mve"  # Helium (M-profile vector extension) twins, Cortex-M55
# Optimized directories per core, first choice first (a core not listed: dsp when it has the DSP extension).
CORE_OPTIMIZED_DIRS: dict[str, tuple[str, ...]] = {"cortex-m55": (MVE_DIR, OPTIMIZED_DIR)}
OPTIMIZED_DIRS = (MVE_DIR, OPTIMIZED_DIR)  # every optimized directory the runtime has

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False, trim_blocks=False
)


# Linker scripts: block tags on their own lines leave no blank line.
_LD_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False, trim_blocks=True, lstrip_blocks=True
)


def _template(package: str, name: str) -> jinja2.Template:
    env = _LD_ENV if name.endswith(".ld.j2") else _ENV
    return env.from_string(resources.files(package).joinpath("templates", name).read_text())


@dataclass(frozen=True)
class LinkerRegion:
    """A MEMORY entry of a linker script besides FLASH and RAM (the main region)."""

    memory: str  # the linker's region name
    origin: int
    size: int
    label: str  # the board's name for it


def linker_memory_name(region_name: str) -> str:
    """A board region's name as a linker MEMORY name ("AXI SRAM" -> "AXI_SRAM", "SRAM1-3" -> "SRAM1_3")."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", region_name.strip())
    return name if name and not name[0].isdigit() and name not in ("RAM", "FLASH") else f"R_{name}"


def _linker_regions(
    board: Board, placement: RegionPlacement, machine: QemuMachine | None
) -> tuple[list[LinkerRegion], str, str, str]:
    """(extra MEMORY entries, the arena's, the row scratch's and the stack's memory names) for the board's
    addresses, or, with ``machine``, for the emulator's: each extra region is mapped after the
    main one in the machine's RAM (1 KiB aligned), at the board's size."""
    main_name = placement.main.name
    names = {r.name: linker_memory_name(r.name) for r in placement.extra_regions}
    regions = []
    next_origin = (machine.ram_origin if machine else 0) + placement.main.size
    for region in placement.extra_regions:
        next_origin = -(-next_origin // 1024) * 1024
        origin = next_origin if machine else region.origin
        next_origin += region.size
        if machine and next_origin - machine.ram_origin > machine.region_bytes:
            raise UserError(
                f"board {board.name}: the regions in use ({main_name}, "
                f"{', '.join(r.name for r in placement.extra_regions)}) do not fit the emulator's "
                f"{format_bytes(machine.region_bytes)} of RAM ({machine.name})"
            )
        regions.append(LinkerRegion(names[region.name], origin, region.size, region.name))

    def memory(region_name: str) -> str:
        return "RAM" if region_name == main_name else names[region_name]

    scratch = memory(placement.scratch.name) if placement.scratch is not None else "RAM"
    return regions, memory(placement.arena.name), scratch, memory(placement.stack.name)


def _platform_file(name: str) -> str:
    return resources.files("mcuformer.runtime_c").joinpath("platform", name).read_text()


def optimized_dirs(board: Board) -> tuple[str, ...]:
    """The optimized kernel directories a board's project ships, first choice first: () for the
    host. A core without the DSP extension ships dsp/ too, built only with KERNELS=optimized
    (default_kernels picks portable there)."""
    if board.is_host:
        return ()
    return CORE_OPTIMIZED_DIRS.get(board.core, (OPTIMIZED_DIR,))


@dataclass(frozen=True)
class KernelSources:
    """A project's C sources split by kernel variant."""

    common: list[str]  # built with either variant
    portable: list[str]  # portable files that have an optimized twin (KERNELS=portable)
    optimized: list[str]  # for each, its first twin in the directory order (KERNELS=optimized)
    # (name, files): KERNELS=<name> for each later directory of the order: for each portable file
    # its first twin from that directory on, else the portable file itself.
    more: tuple[tuple[str, list[str]], ...] = ()


def split_kernel_sources(sources: Sequence[str], dirs: Sequence[str] = (OPTIMIZED_DIR,)) -> KernelSources:
    """Split sources into common files, portable files with a twin in one of ``dirs`` (the core's
    optimized directories, first choice first: ``optimized_dirs``), and the twins. Twins in an
    optimized directory the core does not use (OPTIMIZED_DIRS) belong to no variant. Raises
    ValueError for a twin whose portable file is not among the sources."""
    present = set(sources)
    twins: dict[str, dict[str, str]] = {}  # portable path -> {dir: twin path}
    unused: set[str] = set()
    for path in sources:
        head, _, name = path.rpartition("/")
        parent, _, sub = head.rpartition("/")
        if sub not in OPTIMIZED_DIRS or not name.endswith(".c"):
            continue
        portable = f"{parent}/{name}" if parent else name
        if portable not in present:
            raise ValueError(f"optimized kernel {path} has no portable file {portable} among the sources")
        if sub in dirs:
            twins.setdefault(portable, {})[sub] = path
        else:
            unused.add(path)
    replaced = [p for p in sources if p in twins]

    def choose(order: Sequence[str]) -> list[str]:
        return [next((twins[p][d] for d in order if d in twins[p]), p) for p in replaced]

    every_twin = {t for ts in twins.values() for t in ts.values()}
    return KernelSources(
        common=[p for p in sources if p not in twins and p not in every_twin and p not in unused],
        portable=replaced,
        optimized=choose(dirs),
        more=tuple((d, choose(dirs[i:])) for i, d in enumerate(dirs) if i > 0),
    )


def default_kernels(board: Board, kernels: KernelSources) -> str:
    """The Makefile's default KERNELS: optimized on a core with the DSP extension that has twins."""
    return "optimized" if board.dsp and kernels.optimized else "portable"


def board_platform_source(board: Board) -> str:
    """The platform layer of the board image (linker/board.ld): the board's console where it has
    one (boards/*.json "firmware"), else semihosting like the emulator image."""
    if not board.firmware_platform:
        return SEMIHOST_PLATFORM
    name = f"platform_{board.firmware_platform}.c"
    if not resources.files("mcuformer.runtime_c").joinpath("platform", name).is_file():
        raise UserError(f"board {board.name}: no platform layer runtime_c/platform/{name}")
    return f"{PLATFORM_DIR}/{name}"


def _check_arm_memory(board: Board, machine: QemuMachine, stack_bytes: int) -> None:
    checks = [("SRAM", board.sram_bytes, machine.region_bytes)]
    if not machine.flash_window:  # else the emulator image's FLASH is the machine's code region
        checks.append(("flash", board.flash_bytes, machine.flash_bytes_limit))
    for what, size, limit in checks:
        if size > limit:
            raise UserError(
                f"board {board.name}: {what} of {format_bytes(size)} is larger than the emulator's "
                f"{format_bytes(limit)} region ({machine.name}); use a budget of at most that"
            )
    if (board.sram_origin + board.sram_bytes) % 8 or board.sram_bytes % 8:
        raise UserError(f"board {board.name}: SRAM origin and size must be multiples of 8 (the stack is at its top)")
    if stack_bytes >= board.sram_bytes:
        raise UserError(
            f"stack of {format_bytes(stack_bytes)} does not leave any SRAM of {board.name} "
            f"({format_bytes(board.sram_bytes)}) for the model"
        )


def render_board_files(
    board: Board,
    sources: Sequence[str],
    stack_bytes: int,
    *,
    include_dirs: Sequence[str] = DEFAULT_INCLUDE_DIRS,
    placement: RegionPlacement | None = None,
) -> dict[str, str]:
    """Every board/platform-specific file of a project, as {path relative to the project: content}.

    board: the target (a budget-limited Board gives linker regions of the budget's sizes).
    sources: the model's and the runtime's C sources relative to the project root; the harness
      and the platform sources are added here. ``<dir>/dsp/<name>.c`` sources are optimized twins
      (see the module doc): only the ARM Makefile builds them, with KERNELS=optimized.
    stack_bytes: stack reserved at the top of RAM (positive multiple of 8); counted in the RAM
      region, so arena + statics + stack > SRAM fails at link time.
    include_dirs: -I directories relative to the project root; ``platform`` is added.
    placement: where the arena and the stack go among the board's regions (codegen.regions);
      None: everything in the main region.
    """
    if stack_bytes <= 0 or stack_bytes % 8:
        raise ValueError(f"stack_bytes must be a positive multiple of 8, got {stack_bytes}")
    platform_sources = HOST_PLATFORM_SOURCES if board.is_host else (*ARM_PLATFORM_SOURCES, SEMIHOST_PLATFORM)
    all_sources = [*sources, HARNESS, *platform_sources]
    if len(set(all_sources)) != len(all_sources):
        raise ValueError(f"duplicate or reserved source path in {list(sources)}")
    dirs = list(dict.fromkeys([*include_dirs, PLATFORM_DIR]))
    kernels = split_kernel_sources(sources, optimized_dirs(board))
    arm_only = {p for p in sources if p not in kernels.common and p not in kernels.portable}
    host_sources = [*[s for s in sources if s not in arm_only], HARNESS, *HOST_PLATFORM_SOURCES]
    files: dict[str, str] = {
        "Makefile.host": _template("mcuformer.codegen", "Makefile.host.j2").render(
            board=board, sources=host_sources, include_dirs=dirs
        ),
        HARNESS: _platform_file("main.c"),
    }
    for name in HOST_PLATFORM_FILES:
        files[f"{PLATFORM_DIR}/{name}"] = _platform_file(name)
    if board.is_host:
        return files

    machine = qemu_machine(board.qemu_machine)
    _check_arm_memory(board, machine, stack_bytes)
    board_platform = board_platform_source(board)
    files["Makefile"] = _template("mcuformer.codegen", "Makefile.j2").render(
        board=board,
        qemu_platform_source=SEMIHOST_PLATFORM,
        board_platform_source=board_platform,
        board_console="semihosting" if board_platform == SEMIHOST_PLATFORM else f"{board_platform} (serial console)",
        flash_formats=[*board.flash_formats, *(["uf2"] if board.uf2_family else [])],
        sources=[*kernels.common, HARNESS, *ARM_PLATFORM_SOURCES],
        portable_kernels=kernels.portable,
        optimized_kernels=kernels.optimized,
        more_kernels=[(name, name.upper(), files) for name, files in kernels.more],
        default_kernels=default_kernels(board, kernels),
        include_dirs=dirs,
        instructions_per_tick=machine.instructions_per_tick,
        icount_shift=machine.icount_shift,
    )
    linker = _template("mcuformer.boards", "cortexm.ld.j2")
    if placement is None:
        main = main_region(board)
        placement = RegionPlacement(main, main, main, 0, stack_bytes, 0)
    for name, target in (("board", None), ("qemu", machine)):
        extra, arena_memory, scratch_memory, stack_memory = _linker_regions(board, placement, target)
        files[f"linker/{name}.ld"] = linker.render(
            flash_origin=target.flash_origin if target else board.flash_origin,
            flash_bytes=min(board.flash_bytes, machine.flash_bytes_limit) if target else board.flash_bytes,
            ram_origin=target.ram_origin if target else board.sram_origin,
            ram_bytes=board.sram_bytes,
            stack_bytes=stack_bytes,
            extra_regions=extra,
            arena_memory=arena_memory,
            scratch_memory=scratch_memory,
            stack_memory=stack_memory,
        )
    for name in ARM_PLATFORM_FILES:
        files[f"{PLATFORM_DIR}/{name}"] = _platform_file(name)
    files[board_platform] = _platform_file(board_platform.rpartition("/")[2])
    if board.uf2_family:
        files[UF2_TOOL] = resources.files("mcuformer.boards").joinpath("tools", "bin2uf2.py").read_text()
    return files

"""Board- and platform-specific files of a generated C project (Makefiles, linker scripts, startup,
platform layer, test harness).

``render_board_files`` is pure: it returns ``{relative path: content}`` and writes nothing; the
exporter writes the project. Sources come from the installed packages (importlib.resources), so
this works from a wheel as well as from a checkout.

Project layout produced here (paths relative to the project root):
  Makefile          ARM build (``make`` -> build/board.elf, ``make qemu`` -> build/qemu.elf)
  Makefile.host     native build (``make -f Makefile.host [SANITIZE=1]``)
  linker/board.ld   the board's memory map
  linker/qemu.ld    the emulator's origins (mcuformer.boards.QEMU_*), the board's sizes
  main.c            test harness (runtime_c/platform/main.c)
  platform/*        platform layer (runtime_c/platform)
For the host board only Makefile.host, main.c and the host platform files are produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import jinja2

from mcuformer.boards import QEMU_FLASH_ORIGIN, QEMU_RAM_ORIGIN, QEMU_REGION_LIMIT, Board, format_bytes
from mcuformer.errors import UserError

PLATFORM_DIR = "platform"
HARNESS = "main.c"
ARM_PLATFORM_SOURCES = ("platform/platform_semihost.c", "platform/startup_cortexm.c")
HOST_PLATFORM_SOURCES = ("platform/platform_host.c",)
ARM_PLATFORM_FILES = ("platform.h", "platform_semihost.c", "startup_cortexm.c")
HOST_PLATFORM_FILES = ("platform.h", "platform_host.c")
# The exporter's layout (codegen.emit): model/model.h, runtime/include/mcuf.h.
DEFAULT_INCLUDE_DIRS = ("model", "runtime/include")

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False, trim_blocks=False
)


def _template(package: str, name: str) -> jinja2.Template:
    return _ENV.from_string(resources.files(package).joinpath("templates", name).read_text())


def _platform_file(name: str) -> str:
    return resources.files("runtime_c").joinpath("platform", name).read_text()


def _check_arm_memory(board: Board, stack_bytes: int) -> None:
    for what, size in (("SRAM", board.sram_bytes), ("flash", board.flash_bytes)):
        if size > QEMU_REGION_LIMIT:
            raise UserError(
                f"board {board.name}: {what} of {format_bytes(size)} is larger than the emulator's "
                f"{format_bytes(QEMU_REGION_LIMIT)} region; use a budget of at most that"
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
) -> dict[str, str]:
    """Every board/platform-specific file of a project, as {path relative to the project: content}.

    board: the target (a budget-limited Board gives linker regions of the budget's sizes).
    sources: the model's and the runtime's C sources relative to the project root; the harness
      and the platform sources are added here.
    stack_bytes: stack reserved at the top of RAM (positive multiple of 8); counted in the RAM
      region, so arena + statics + stack > SRAM fails at link time.
    include_dirs: -I directories relative to the project root; ``platform`` is added.
    """
    if stack_bytes <= 0 or stack_bytes % 8:
        raise ValueError(f"stack_bytes must be a positive multiple of 8, got {stack_bytes}")
    platform_sources = HOST_PLATFORM_SOURCES if board.is_host else ARM_PLATFORM_SOURCES
    all_sources = [*sources, HARNESS, *platform_sources]
    if len(set(all_sources)) != len(all_sources):
        raise ValueError(f"duplicate or reserved source path in {list(sources)}")
    dirs = list(dict.fromkeys([*include_dirs, PLATFORM_DIR]))

    host_sources = [*sources, HARNESS, *HOST_PLATFORM_SOURCES]
    files: dict[str, str] = {
        "Makefile.host": _template("codegen", "Makefile.host.j2").render(
            board=board, sources=host_sources, include_dirs=dirs
        ),
        HARNESS: _platform_file("main.c"),
    }
    for name in HOST_PLATFORM_FILES:
        files[f"{PLATFORM_DIR}/{name}"] = _platform_file(name)
    if board.is_host:
        return files

    _check_arm_memory(board, stack_bytes)
    files["Makefile"] = _template("codegen", "Makefile.j2").render(board=board, sources=all_sources, include_dirs=dirs)
    linker = _template("boards", "cortexm.ld.j2")
    files["linker/board.ld"] = linker.render(
        flash_origin=board.flash_origin,
        flash_bytes=board.flash_bytes,
        ram_origin=board.sram_origin,
        ram_bytes=board.sram_bytes,
        stack_bytes=stack_bytes,
    )
    files["linker/qemu.ld"] = linker.render(
        flash_origin=QEMU_FLASH_ORIGIN,
        flash_bytes=board.flash_bytes,
        ram_origin=QEMU_RAM_ORIGIN,
        ram_bytes=board.sram_bytes,
        stack_bytes=stack_bytes,
    )
    for name in ARM_PLATFORM_FILES:
        files[f"{PLATFORM_DIR}/{name}"] = _platform_file(name)
    return files

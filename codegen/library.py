"""``mcuformer export --format lib``: the model and the kernels it uses as a static library for an
existing firmware (STM32Cube, Zephyr, Pico SDK, Arduino, ...), with one public header.

``render_library`` is pure: it returns ``{relative path: content}``; the exporter writes it.

Layout (paths relative to the library directory):
  include/mcuformer_model.h   the one header: mcuf_model_run, the stripe callback type, the arena
                              symbol mcuf_model_arena, sizes and quantization as macros
  src/model/                  model.c (weights, parameters, the arena, mcuf_model_run), model.h
  src/runtime/                the operator library: include/ (private headers), src/*.c (portable),
                              src/dsp/*.c (DSP-extension twins, Cortex-M boards)
  CMakeLists.txt              static library ``mcuformer_model`` (+ ``mcuformer_example`` on the host)
  cmake/arm-none-eabi.cmake   toolchain file: -mcpu of the board, MCUF_FLOAT_ABI soft|softfp|hard
  example/main.c              a camera-like line buffer feeding image rows to mcuf_model_run
  example/test_data.c         the export's test images and labels
  README.md

The public header's ``mcuf_status`` and ``mcuf_stripe_reader`` are copied verbatim from the
runtime's mcuf.h (guarded by its include guard), and model.c includes the public header after
model.h, so the compiler checks every public declaration against the library's definitions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources

import jinja2
import numpy as np

from mcuformer.boards import Board
from mcuformer.codegen.board_files import optimized_dirs, split_kernel_sources
from mcuformer.codegen.emit import input_stripe_rows, project_sources, render_model_files, runtime_sources
from mcuformer.codegen.ir import Graph
from mcuformer.codegen.lower import LoweredModel, format_values
from mcuformer.errors import UserError
from mcuformer.version import __version__

FLOAT_ABIS = ("soft", "softfp", "hard")
PUBLIC_HEADER = "include/mcuformer_model.h"
SOURCE_DIR = "src"
EXAMPLE_SOURCES = ("example/main.c", "example/test_data.c")

_STATUS_RE = re.compile(r"^typedef enum \{[^}]*\} mcuf_status;$", re.MULTILINE)
_READER_RE = re.compile(r"^typedef int32_t \(\*mcuf_stripe_reader\)\([^)]*\);$", re.MULTILINE)

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


def _render(name: str, **context: object) -> str:
    text = resources.files("mcuformer.codegen").joinpath("templates", "lib", name).read_text()
    return _ENV.from_string(text).render(version=__version__, **context)


def check_float_abi(board: Board, float_abi: str) -> None:
    """UserError for a float ABI the board cannot use (softfp and hard need an FPU)."""
    if float_abi not in FLOAT_ABIS:
        raise UserError(f"unknown float ABI '{float_abi}': use one of {', '.join(FLOAT_ABIS)}")
    if float_abi != "soft" and not board.is_host and not board.fpu:
        raise UserError(f"board {board.name} ({board.core}) has no FPU: use --float-abi soft")


def public_types(mcuf_h: str) -> tuple[str, str]:
    """The ``mcuf_status`` and ``mcuf_stripe_reader`` typedefs of mcuf.h, verbatim."""
    status, reader = _STATUS_RE.search(mcuf_h), _READER_RE.search(mcuf_h)
    if status is None or reader is None:
        raise RuntimeError("runtime_c/include/mcuf.h: mcuf_status or mcuf_stripe_reader typedef not found")
    return status.group(0), reader.group(0)


def render_library(
    graph: Graph,
    lowered: LoweredModel,
    board: Board,
    test_images: np.ndarray,
    test_labels: Sequence[int],
    *,
    float_abi: str,
    flash_bytes: int,
    stack_bytes: int,
) -> dict[str, str]:
    """Every file of the library directory (see the module doc).

    flash_bytes: the planned flash of the model (macro MCUF_MODEL_FLASH_BYTES); stack_bytes: the
    stack to leave for mcuf_model_run (macro MCUF_MODEL_STACK_BYTES).
    """
    check_float_abi(board, float_abi)
    arch = graph.arch
    model = render_model_files(graph, lowered, test_images, list(test_labels), export_arena=True)
    runtime = runtime_sources(board, graph)
    files = {f"{SOURCE_DIR}/{path}": text for path, text in runtime.items()}
    for name in ("model/model.c", "model/model.h"):
        files[f"{SOURCE_DIR}/{name}"] = model[name]
    kernels = split_kernel_sources(
        [f"{SOURCE_DIR}/{p}" for p in project_sources(runtime) if p != "model/test_inputs.c"], optimized_dirs(board)
    )
    in_q = graph.tensors[graph.inputs[0]].qparams
    out_q = graph.tensors[graph.outputs[0]].qparams
    assert in_q is not None and out_q is not None
    status_typedef, reader_typedef = public_types(runtime["runtime/include/mcuf.h"])
    files[PUBLIC_HEADER] = _render(
        "mcuformer_model.h.j2",
        board=board,
        arch_summary=arch.short(),
        image_h=arch.image_size,
        image_w=arch.image_size,
        channels=arch.in_channels,
        patch=input_stripe_rows(graph),
        num_classes=arch.num_classes,
        arena_bytes=lowered.arena_bytes,
        stack_bytes=stack_bytes,
        flash_bytes=flash_bytes,
        input_scale=f"{in_q.scale:.9g}",
        input_zero_point=in_q.zero_point,
        output_scale=f"{out_q.scale:.9g}",
        output_zero_point=out_q.zero_point,
        status_typedef=status_typedef,
        reader_typedef=reader_typedef,
    )
    files["CMakeLists.txt"] = _render(
        "CMakeLists.txt.j2",
        board=board,
        float_abi=float_abi,
        common_sources=kernels.common,
        portable_kernels=kernels.portable,
        optimized_kernels=kernels.optimized,
        arm_default_kernels="optimized" if board.dsp and kernels.optimized else "portable",
    )
    if not board.is_host:
        files["cmake/arm-none-eabi.cmake"] = _render("arm-none-eabi.cmake.j2", board=board, float_abi=float_abi)
    images = [
        {"label": int(label), "body": format_values(image)}
        for image, label in zip(test_images, test_labels, strict=True)
    ]
    files["example/main.c"] = _render("example_main.c.j2", num_images=len(images))
    files["example/test_data.c"] = _render(
        "example_data.c.j2", num_images=len(images), images=images, labels=[str(i["label"]) for i in images]
    )
    files["README.md"] = _render(
        "README.md.j2",
        board=board,
        float_abi=float_abi,
        arch_summary=arch.short(),
        arena_bytes=lowered.arena_bytes,
        stack_bytes=stack_bytes,
        flash_bytes=flash_bytes,
    )
    return files

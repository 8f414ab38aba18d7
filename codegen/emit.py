"""C emission: render the lowered model into project files. Pure: returns {path: text}, writes nothing."""

from __future__ import annotations

from importlib import resources

import jinja2
import numpy as np

from mcuformer.boards import Board
from mcuformer.codegen.board_files import MVE_DIR, optimized_dirs, split_kernel_sources
from mcuformer.codegen.ir import Graph, has_int4_weights
from mcuformer.codegen.lower import LoweredModel, format_values
from mcuformer.codegen.ops import FusedOp, fused
from mcuformer.version import __version__

MODEL_SOURCES = ("model/model.c", "model/test_inputs.c")


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("mcuformer.codegen") / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def own_kernel_ops(graph: Graph) -> list[FusedOp]:
    """The fused ops of ``graph`` that bring their own C kernel (not in runtime_c), in graph order."""
    result: list[FusedOp] = []
    for node in graph.nodes:
        definition = fused(node.op)
        if definition.c_source and definition not in result:
            result.append(definition)
    return result


# Headers only one optimized directory's kernels include: shipped with that directory only.
DIR_HEADERS = {"mcuf_mve.h": MVE_DIR}
CONFIG_HEADER = "runtime/include/mcuf_config.h"
WITH_S4W_DEFINE = (
    "/* This model has int4 weights (codegen.emit.runtime_sources): the int4 linear dispatch is built. */\n"
    "#ifndef MCUF_WITH_S4W\n#define MCUF_WITH_S4W 1\n#endif\n\n"
)


def config_header(default: str, graph: Graph | None) -> str:
    """mcuf_config.h of the model's runtime: the default, plus MCUF_WITH_S4W when the model has int4
    weights (so an int8 model's runtime, and its code flash, are as before int4 existed)."""
    if graph is None or not has_int4_weights(graph):
        return default
    end = "#endif /* MCUF_CONFIG_H */"
    if end not in default:
        raise RuntimeError(f"runtime_c/include/mcuf_config.h: no '{end}' line")  # a packaging bug
    return default.replace(end, WITH_S4W_DEFINE + end)


def runtime_sources(board: Board, graph: Graph | None = None) -> dict[str, str]:
    """The runtime_c files a board's project uses: {project path: text}, plus the C kernels of the
    ops in ``graph`` that bring their own (runtime/include/<c_name>.h, runtime/src/<c_name>.c).

    The headers (runtime/include/*.h: mcuf.h and the private ones the kernels include) and the
    portable kernels (runtime/src/*.c) always; for a Cortex-M board also the optimized kernels of
    its core (codegen.board_files.optimized_dirs: runtime/src/dsp/*.c, and on the M55 first
    runtime/src/mve/*.c with mcuf_mve.h), each a drop-in twin of the portable file of the same
    name. runtime/include/mcuf_config.h defines MCUF_WITH_S4W when ``graph`` has int4 weights
    (config_header). The ARM Makefile builds one file of each group (KERNELS=optimized|portable, and dsp on
    the M55; default from board.dsp: codegen.board_files); the host build uses the portable files.
    """
    root = resources.files("mcuformer.runtime_c")
    src = root / "src"
    dirs = optimized_dirs(board)
    shipped = ("", *dirs)  # headers of no directory, and those of the board's directories
    headers = sorted(
        (p for p in (root / "include").iterdir() if p.name.endswith(".h") and DIR_HEADERS.get(p.name, "") in shipped),
        key=lambda p: p.name,
    )
    files = {f"runtime/include/{path.name}": path.read_text() for path in headers}
    files[CONFIG_HEADER] = config_header(files[CONFIG_HEADER], graph)
    portable = sorted((p for p in src.iterdir() if p.name.endswith(".c")), key=lambda p: p.name)
    for path in portable:
        files[f"runtime/src/{path.name}"] = path.read_text()
    for definition in own_kernel_ops(graph) if graph is not None else []:
        files[f"runtime/include/{definition.c_name}.h"] = definition.c_header
        files[f"runtime/src/{definition.c_name}.c"] = definition.c_source
    for sub in dirs:
        optimized_dir = src / sub
        if not optimized_dir.is_dir():
            continue
        for path in sorted((p for p in optimized_dir.iterdir() if p.name.endswith(".c")), key=lambda p: p.name):
            files[f"runtime/src/{sub}/{path.name}"] = path.read_text()
    split_kernel_sources(sorted(files), dirs)  # ValueError for a twin without its portable file (a packaging bug)
    return files


def input_stripe_rows(graph: Graph) -> int:
    """Image rows per call of the input callback: the patch size, or 1 when a convolutional stem reads
    the image (row by row into its rolling buffer)."""
    return 1 if getattr(graph.arch, "stem_channels", ()) else graph.arch.patch_size


def render_model_files(
    graph: Graph, lowered: LoweredModel, test_images: np.ndarray, test_labels: list[int], export_arena: bool = False
) -> dict[str, str]:
    """model/model.h, model.c, test_inputs.c. ``export_arena``: the arena is the global
    ``mcuf_model_arena`` declared by the library's public header (``export --format lib``) instead
    of a static of model.c."""
    arch = graph.arch
    plan = graph.planned()
    in_q = graph.tensors[graph.inputs[0]].qparams
    out_q = graph.tensors[graph.outputs[0]].qparams
    assert in_q is not None and out_q is not None
    assert test_images.dtype == np.int8 and test_images.shape[1:] == graph.tensors[graph.inputs[0]].shape
    context = {
        "version": __version__,
        "arch_summary": arch.short(),
        "image_h": arch.image_size,
        "image_w": arch.image_size,
        "channels": arch.in_channels,
        "patch": input_stripe_rows(graph),
        "num_classes": arch.num_classes,
        "num_test_inputs": len(test_images),
        "arena_bytes": lowered.arena_bytes,
        "naive_arena_bytes": plan.naive_arena_bytes,
        "lower_bound_bytes": plan.lower_bound_bytes,
        "constant_bytes": lowered.constant_bytes,
        "input_scale": f"{in_q.scale:.9g}",
        "input_zero_point": in_q.zero_point,
        "output_scale": f"{out_q.scale:.9g}",
        "output_zero_point": out_q.zero_point,
        "arrays": lowered.arrays,
        "structs": lowered.structs,
        "calls": lowered.calls,
        "images": [
            {"label": int(label), "body": format_values(image)}
            for image, label in zip(test_images, test_labels, strict=True)
        ],
        "export_arena": export_arena,
        "scratch_arena_bytes": lowered.scratch_arena_bytes,
        "op_headers": [f"{definition.c_name}.h" for definition in own_kernel_ops(graph)],
    }
    env = _env()
    return {
        "model/model.h": env.get_template("model.h.j2").render(context),
        "model/model.c": env.get_template("model.c.j2").render(context),
        "model/test_inputs.c": env.get_template("test_inputs.c.j2").render(context),
    }


def render_readme(context: dict) -> str:
    return _env().get_template("project_readme.md.j2").render(context)


def project_sources(runtime_files: dict[str, str]) -> list[str]:
    return list(MODEL_SOURCES) + sorted(p for p in runtime_files if p.endswith(".c"))

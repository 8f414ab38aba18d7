"""The export job: a search run (or a ViT from ONNX) -> a C project or library for a board.

The project is built in a temporary sibling directory and renamed into place at the end
(mcuformer.outputs), so a failed export never leaves a half-written PROJ. Its report.json comes from
mcuformer.reports; with ``measure`` the project is also built and run once in QEMU.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mcuformer.arch import ArchConfig, save_json
from mcuformer.boards import Board, format_bytes, get_board, parse_bytes
from mcuformer.budget import Budget
from mcuformer.codegen.board_files import render_board_files
from mcuformer.codegen.compile import CompiledModel, compile_graph, compile_model, to_hwc
from mcuformer.codegen.cost import NUM_TEST_INPUTS, STACK_RESERVE_BYTES, STATIC_SRAM_BYTES, Cost
from mcuformer.codegen.emit import project_sources, render_model_files, render_readme, runtime_sources
from mcuformer.codegen.frontend import from_torch
from mcuformer.codegen.int_exec import op_error_lsb
from mcuformer.codegen.library import check_float_abi, render_library
from mcuformer.codegen.quantize import check_ranges
from mcuformer.codegen.regions import RegionPlacement, place_compiled
from mcuformer.data import RUN_DATA_FILE, Dataset, load_dataset, load_run_data
from mcuformer.emulate import check_library, emulate, emulate_firmware
from mcuformer.errors import DoesNotFit, UserError
from mcuformer.imported import ImportedModel, load_imported, normalisation_affine
from mcuformer.model import ViT, resize_images
from mcuformer.nas.qat import ranges_from_json
from mcuformer.outputs import OutputKind, atomic_directory, check_output
from mcuformer.reports import add_project_details, log_memory, project_report

Log = Callable[[str], None]
Model = ViT | ImportedModel

CALIBRATION_IMAGES = 256
QAT_RANGES_FILE = "qat_ranges.json"  # RUN/: the activation ranges quantization-aware training learned
Ranges = dict[str, tuple[float, float]]


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def resolve_board(name: str, sram: str | None, flash: str | None) -> Board:
    board = get_board(name)
    return board.with_budget(
        parse_bytes(sram, "--sram") if sram else None, parse_bytes(flash, "--flash") if flash else None
    )


def compile_for(
    model: Model,
    data: Dataset,
    sram_bytes: int | None = None,
    num_test_inputs: int = NUM_TEST_INPUTS,
    ranges: Ranges | None = None,
) -> CompiledModel:
    """Calibrated on the first training images, or quantized with ``ranges`` (learned by --qat)."""
    calib = resize_images(data.train_x[:CALIBRATION_IMAGES], model.arch.image_size).numpy()
    if isinstance(model, ImportedModel):
        return compile_graph(model.float_graph, calib, sram_bytes, num_test_inputs=num_test_inputs, ranges=ranges)
    return compile_model(model, calib, sram_bytes, num_test_inputs=num_test_inputs, ranges=ranges)


def accuracies(model: Model, compiled: CompiledModel, data: Dataset) -> tuple[float, float]:
    images = resize_images(data.val_x, model.arch.image_size)
    with torch.no_grad():
        float_pred = model(images).argmax(dim=1).numpy()
    int_logits = compiled.evaluate_int8(compiled.quantize_input(to_hwc(images.numpy())))
    labels = data.val_y.numpy()
    return float((float_pred == labels).mean()), float((int_logits.argmax(axis=1) == labels).mean())


def load_run(run: Path) -> tuple[ViT, dict]:
    """The run's model and arch.json; every value and weight shape is checked before allocating."""
    arch_file = run / "arch.json"
    if not run.is_dir():
        raise UserError(f"run directory {run} does not exist; create it with `mcuformer search --out {run}`")
    if not arch_file.is_file() or not (run / "model.pt").is_file():
        raise UserError(f"{run} is not a search run (no arch.json/model.pt); create one with `mcuformer search`")
    try:
        report = json.loads(arch_file.read_text())
        arch = ArchConfig.from_json(report["arch"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{arch_file} is not a valid arch.json ({exc!r}); re-run `mcuformer search`") from None
    try:
        state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile):
        raise UserError(
            f"{run / 'model.pt'} is truncated or not a PyTorch state dict; re-run `mcuformer search`"
        ) from None
    with torch.device("meta"):  # the expected shapes, without allocating the weights
        expected = {k: tuple(v.shape) for k, v in ViT(arch).state_dict().items()}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{run / 'model.pt'} is not a state dict of tensors; re-run `mcuformer search`")
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        key = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))[0]
        raise UserError(
            f"{run / 'model.pt'} does not match {arch_file}: {key} is {got.get(key, 'missing')}, the architecture "
            f"needs {expected.get(key, 'no such weight')}; re-run `mcuformer search`"
        )
    model = ViT(arch)
    model.load_state_dict(state)
    model.eval()
    return model, report


def load_qat_ranges(run: Path, model: ViT) -> Ranges | None:
    """RUN/qat_ranges.json (a search with --qat), checked against the model's graph, or None."""
    path = run / QAT_RANGES_FILE
    if not path.is_file():
        return None
    try:
        ranges = ranges_from_json(json.loads(path.read_text()))
        check_ranges(from_torch(model), ranges)
        return ranges
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is not valid activation ranges ({exc}); re-run `mcuformer search --qat`") from None


def run_data(run: Path, run_report: dict, override: str | None) -> Dataset:
    """What export calibrates and tests on: ``--data`` if given, else the data the run stored
    (RUN/data.npz), else (runs of older versions) the data set named in arch.json."""
    seed = int(run_report.get("seed", 0))
    size = run_report.get("data_size")  # a folder was resized to this on load
    if override:
        return load_dataset(override, seed=seed, image_size=size)
    if (run / RUN_DATA_FILE).is_file():
        return load_run_data(run / RUN_DATA_FILE)
    spec = str(run_report.get("data", "digits"))
    if spec != "digits" and not Path(spec).exists():
        raise UserError(f"{run} stores no data and its data set {spec} is not found: pass it with --data")
    return load_dataset(spec, seed=seed, image_size=size)


def run_export(
    run: Path,
    board_name: str,
    out: Path,
    force: bool,
    log: Log,
    measure: bool = True,
    sram: str | None = None,
    flash: str | None = None,
    data: str | None = None,
    float_abi: str | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> dict:
    """Compile RUN (a search run directory, or an ONNX file) for a board (optionally limited to an
    SRAM/flash budget, e.g. to leave room for the application) into the project OUT (see ``export_model``);
    with ``float_abi`` into a library directory instead (``export --format lib``, see ``export_library``)."""
    board = resolve_board(board_name, sram, flash)  # user errors first, before any work
    check_library_options(board, float_abi)
    inputs = [run] + ([Path(data)] if data and data != "digits" else [])
    if run.suffix == ".onnx" or (mean or std):
        return export_onnx(run, board, out, force, log, measure, data, inputs, mean, std, float_abi)
    check_output(out, OutputKind.PROJECT, force, inputs)
    model, run_report = load_run(run)
    arch = model.arch
    dataset = run_data(run, run_report, data)
    check_data_matches(dataset, arch, "the run's model", ": pass the data the run was trained on with --data")
    labels = run_report.get("class_labels")
    if isinstance(labels, list) and len(labels) == arch.num_classes:
        dataset.class_names = [str(v) for v in labels]
    ranges = load_qat_ranges(run, model)
    if ranges is not None:
        log(f"quantizing with the activation ranges of quantization-aware training ({QAT_RANGES_FILE})")
    return export_model(
        model, dataset, board, out, force, log, measure=measure, source=str(run), inputs=inputs, float_abi=float_abi,
        ranges=ranges,
    )  # fmt: skip


def check_data_matches(dataset: Dataset, arch: ArchConfig, model_name: str, hint: str = "") -> None:
    """UserError unless the data has the model's input channels and classes."""
    if (dataset.in_channels, dataset.num_classes) != (arch.in_channels, arch.num_classes):
        raise UserError(
            f"data '{dataset.name}' has {dataset.in_channels} channels and {dataset.num_classes} classes, "
            f"{model_name} {arch.in_channels} and {arch.num_classes}{hint}"
        )


def export_onnx(
    path: Path,
    board: Board,
    out: Path,
    force: bool,
    log: Log,
    measure: bool,
    data: str | None,
    inputs: list[Path],
    mean: list[float] | None,
    std: list[float] | None,
    float_abi: str | None = None,
) -> dict:
    """Export of a ViT trained elsewhere: MODEL.onnx, calibrated and tested on ``--data``."""
    if path.suffix != ".onnx":
        raise UserError(f"--mean/--std apply to an imported model (MODEL.onnx), not to the run {path}")
    if not path.is_file():
        raise UserError(f"model file {path} does not exist")
    if not data:
        raise UserError("an ONNX model needs --data: the images to calibrate and test on (.npz or image folder)")
    normalisation_affine(mean, std)  # bad --mean/--std fail before any work
    check_output(out, OutputKind.PROJECT, force, inputs)
    dataset = load_dataset(data)
    normalisation_affine(mean, std, dataset.in_channels)
    log(f"importing {path}")
    model = load_imported(path, mean=mean, std=std)
    arch = model.arch
    check_data_matches(dataset, arch, "the model")
    log(f"{arch.short()}: float graph within {model.float_graph.import_check_max_abs_diff:.2g} of the ONNX model")
    return export_model(
        model, dataset, board, out, force, log, measure=measure, source=str(path), inputs=inputs, float_abi=float_abi
    )


def export_model(
    model: Model,
    data: Dataset,
    board: Board,
    out: Path,
    force: bool,
    log: Log,
    measure: bool = True,
    num_test_inputs: int = NUM_TEST_INPUTS,
    source: str = "",
    inputs: list[Path] | None = None,
    float_abi: str | None = None,
    ranges: Ranges | None = None,
) -> dict:
    """Quantize (calibrating on ``data``), compile and write a C project for ``board`` into OUT, with
    the first validation images as embedded test inputs. A model over the board's (or budget's) SRAM or
    flash raises DoesNotFit before anything is written. With ``measure`` (and the Arm toolchain +
    QEMU present) the project is also built and run once in QEMU and the measured peak SRAM, flash and
    instructions are added to report.json under ``measured``."""
    arch = model.arch
    with atomic_directory(out, OutputKind.PROJECT, force, inputs or []) as tmp:
        log(f"compiling {arch.short()} for {board.name}")
        compiled = compile_for(model, data, board.sram_bytes, num_test_inputs, ranges)
        check_fits(compiled.cost, board)
        float_acc, int8_acc = accuracies(model, compiled, data)
        test_float = resize_images(data.val_x[:num_test_inputs], arch.image_size).numpy()
        test_int8 = compiled.quantize_input(to_hwc(test_float))
        expected = compiled.run_int8(test_int8)
        labels = [int(v) for v in data.val_y[:num_test_inputs]]
        facts = (test_int8, expected, labels, float_acc, int8_acc, source, data, arch)
        if float_abi is not None:
            report = project_report(compiled, board, *facts)
            return export_library(tmp, compiled, board, test_int8, report, float_abi, measure, log)
        compiled, placement = place_model_memory(board, compiled)
        runtime = runtime_sources(board, compiled.graph)
        files = {**render_model_files(compiled.graph, compiled.lowered, test_int8, labels), **runtime}
        files.update(render_board_files(board, project_sources(runtime), STACK_RESERVE_BYTES, placement=placement))
        report = project_report(compiled, board, *facts)  # the placed plan: its buffers and offsets
        add_project_details(
            report, getattr(model, "normalisation", None), compiled, placement.to_json(board),
            op_error_lsb(compiled.graph, test_int8),
        )  # fmt: skip
        files["README.md"] = render_readme({**report, "arch_summary": arch.short(), "kernel_files": sorted(runtime)})
        write_files(tmp, files)
        write_onnx(model, tmp / "model.onnx")
        save_json(str(tmp / "report.json"), report)
        if measure and not board.is_host:
            report["measured"] = measure_in_qemu(tmp, log)
            save_json(str(tmp / "report.json"), report)
    log_memory(report, log)
    log(f"float top-1 {float_acc:.4f}, int8 top-1 {int8_acc:.4f}; wrote project {out}")
    return report


def check_fits(cost: Cost, board: Board) -> None:
    """A planned model over the board's (or the requested budget's) SRAM or flash is a failure."""
    labels = {"sram": "peak SRAM", "flash": "flash"}
    over = [
        f"{labels[what]} {need:,} B > {have:,} B (over by {need - have:,} B)"
        for what, need, have in Budget.of(board).over(cost.peak_sram_bytes, cost.flash_bytes)
    ]
    if over:
        raise DoesNotFit(
            f"model does not fit {board.name} (budget {format_bytes(board.sram_bytes)} SRAM, "
            f"{format_bytes(board.flash_bytes)} flash): {'; '.join(over)}; search a smaller model or raise the budget"
        )


def place_model_memory(board: Board, compiled: CompiledModel) -> tuple[CompiledModel, RegionPlacement]:
    """The arena (or the arena and the hot row scratch), stack and statics across the board's RAM
    regions (codegen.regions)."""
    return place_compiled(board, compiled, STACK_RESERVE_BYTES, STATIC_SRAM_BYTES)


def check_library_options(board: Board, float_abi: str | None) -> None:
    if float_abi is not None:
        check_float_abi(board, float_abi)


def export_library(
    tmp: Path,
    compiled: CompiledModel,
    board: Board,
    test_int8: np.ndarray,
    report: dict,
    float_abi: str,
    measure: bool,
    log: Log,
) -> dict:
    """Write the ``--format lib`` directory (codegen.library) into ``tmp`` with report.json; with
    ``measure`` build it with CMake on the host and check its example bit-exactly."""
    files = render_library(
        compiled.graph, compiled.lowered, board, test_int8, report["test_labels"],
        float_abi=float_abi, flash_bytes=report["flash_bytes"], stack_bytes=STACK_RESERVE_BYTES,
    )  # fmt: skip
    write_files(tmp, files)
    report = {**report, "format": "lib", "float_abi": float_abi}
    save_json(str(tmp / "report.json"), report)
    log_memory(report, log)
    if measure and shutil.which("cmake") and shutil.which("cc"):
        log("building the library with CMake on the host and running its example")
        try:
            report["measured"] = check_library(tmp)
        except UserError as exc:
            report["measured"] = {"error": str(exc)}
        finally:
            shutil.rmtree(tmp / "build", ignore_errors=True)
    save_json(str(tmp / "report.json"), report)
    measured = report.get("measured", {})
    if measured:
        verdict = measured.get("error") or ("bit-exact" if measured["bit_exact"] else "NOT bit-exact")
        log(f"library example built with CMake on the host: {verdict}")
    log(f"wrote library ({float_abi} float ABI): include/mcuformer_model.h, CMakeLists.txt, example/")
    return report


def write_onnx(model: Model, path: Path) -> None:
    """The float model as ONNX (opset 17), for inspection and for comparison with other toolchains."""
    import onnx  # only for the exported file's check

    if hasattr(model, "write_onnx"):  # an imported model: the user's own ONNX file
        model.write_onnx(path)
        return
    a = model.arch
    example = torch.zeros(1, a.in_channels, a.image_size, a.image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the shape asserts
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=17, input_names=["image"], output_names=["logits"]
        )
    onnx.checker.check_model(onnx.load(str(path)))


def measure_in_qemu(project: Path, log: Log) -> dict:
    """Build and run the fresh project in QEMU once; a failure is recorded, not raised (emulate
    reports it to the user with the full message)."""
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        return {"error": "arm-none-eabi-gcc or qemu-system-arm not installed (run `make setup`)"}
    log("measuring in QEMU")
    try:
        result = emulate(project, host=False, sanitize=False)
    except UserError as exc:
        return {"error": str(exc)}
    finally:
        shutil.rmtree(project / "build", ignore_errors=True)
    keys = ("target", "bit_exact", "instructions_per_inference", "stack_bytes", "static_sram_bytes", "flash_bytes")
    measured = {k: result[k] for k in keys}
    measured["peak_sram_bytes"] = result["static_sram_bytes"] + result["stack_bytes"]
    measured.update(measure_firmware(project, log))
    return measured


def measure_firmware(project: Path, log: Log) -> dict:
    """``{"firmware": {...}}``: the board image (real memory map) booted on the board's emulated
    microcontroller and checked bit-exactly, for boards that have one; ``{}`` for the others. A
    failure is recorded, not raised, like measure_in_qemu."""
    if not _project_board_has_firmware_machine(project):
        return {}
    log("booting the firmware image on its emulated microcontroller")
    try:
        result = emulate_firmware(project)
    except UserError as exc:
        log(f"firmware image not verified: {exc}")
        return {"firmware": {"error": str(exc)}}
    finally:
        shutil.rmtree(project / "build", ignore_errors=True)
    log(f"firmware image on {result['target']}: " + ("bit-exact" if result["bit_exact"] else "NOT bit-exact"))
    keys = ("target", "bit_exact", "stack_bytes", "static_sram_bytes", "flash_bytes")
    return {"firmware": {k: result[k] for k in keys}}


def _project_board_has_firmware_machine(project: Path) -> bool:
    return bool(get_board(json.loads((project / "report.json").read_text())["board"]).firmware_machine)

"""The search job, end to end (RUN). The other jobs: mcuformer.export, mcuformer.emulate (``run_emulate``),
mcuformer.demo, mcuformer.plots (``run_memory_plot``); the report JSON is built in mcuformer.reports.

A search runs as steps, each returning a frozen record: ``validate_search`` (every user error before any
work) -> ``train_supernet_step`` -> ``evolve_step`` (space evolution + evolution under the budgets) ->
``finetune_step`` (the winner, quantized) -> ``write_run``. Outputs are built in a temporary sibling
directory and renamed into place at the end, so a failed or interrupted job never leaves a half-written
RUN or PROJ; an existing one is only replaced with --force, and only if it is this tool's own output of
the same kind (mcuformer.outputs).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mcuformer.arch import ArchConfig, SearchSpace, save_json
from mcuformer.boards import Board, format_bytes
from mcuformer.budget import Budget
from mcuformer.codegen.compile import CompiledModel, to_hwc
from mcuformer.codegen.cost import CostCache
from mcuformer.codegen.fake_quant_graph import op_error_report
from mcuformer.data import RUN_DATA_FILE, Dataset, load_dataset, save_run_data
from mcuformer.errors import DoesNotFit, UserError
from mcuformer.export import CALIBRATION_IMAGES, QAT_RANGES_FILE, accuracies, compile_for, resolve_board
from mcuformer.model import ViT, resize_images
from mcuformer.nas.data_pipeline import resolve_device
from mcuformer.nas.instr_model import DEFAULT_MODEL, InstructionModel
from mcuformer.nas.qat import QATConfig, QATResult, qat_finetune, ranges_to_json, split_holdout
from mcuformer.nas.recipe import Recipe, finetune_epochs_for, lr_for_width, num_params, train_config, train_teacher
from mcuformer.nas.search import InstrFn, SearchConfig, SearchResult, evolution_search
from mcuformer.nas.sensitivity import measure as measure_sensitivity
from mcuformer.nas.space_evolution import EvolutionConfig, evolve_space
from mcuformer.nas.supernet import Supernet, init_from_dense, load_vit, sample_arch
from mcuformer.nas.train import finetune, train_supernet
from mcuformer.outputs import OutputKind, atomic_directory, check_output
from mcuformer.plots import plot_pareto, plot_trajectory
from mcuformer.reports import search_report
from mcuformer.search_options import (
    SEARCH_STATE,
    SUPERNET_CHECKPOINT,
    SearchOptions,
    data_spec,
    keep_checkpoints,
    prepare_partial,
    search_fingerprint,
    search_inputs,
    training_fingerprint,
)
from mcuformer.spaces import budget_space, describe_space, fill_analysis, load_space

Log = Callable[[str], None]
FINETUNE_LR = 5e-4  # the winner's fine-tuning
QAT_LR_FRACTION = 0.1  # --qat's learning rate: this fraction of the fine-tuning's
QAT_ERROR_IMAGES = 64  # validation images of --qat's per-op error report


def space_resolution(spec: str | None) -> int | None:
    """The largest input resolution of a given space (None without one)."""
    if not spec:
        return None
    return max(load_space(spec, 1, 2).image_sizes)


def search_space_for(spec: str | None, data, board: Board) -> tuple[SearchSpace, dict]:
    """The search space: a preset or a .json/.toml file (``spec``), or, without one, a space sized to
    the board's budget and the data's input size so that the budget binds (``spaces.budget_space``).
    Returns the space and a description for the log and arch.json (``note``, ``binding`` if sized)."""
    if spec:
        space = load_space(spec, data.in_channels, data.num_classes)
        return space, {"source": spec, "note": f"search space '{spec}': {describe_space(space)}"}
    probe = CostCache(board.sram_bytes)
    sized = budget_space(
        data.image_size, data.in_channels, data.num_classes, board.sram_bytes, board.flash_bytes, probe, sample_arch
    )
    info = {"source": "sized to the budget", "binding": sized.binding, "note": sized.note}
    info["note"] += f"\nsearch space (sized to the budget): {describe_space(sized.space)}"
    return sized.space, info


def check_budget_feasible(smallest: ArchConfig, sram: int, flash: int, budget: Budget) -> None:
    labels = {"sram": "SRAM", "flash": "flash"}
    over = [f"{labels[what]} {need:,} B > {have:,} B" for what, need, have in budget.over(sram, flash)]
    if over:
        raise DoesNotFit(
            f"even the smallest subnet of the search space ({smallest.short()}) needs {sram:,} B SRAM and "
            f"{flash:,} B flash ({'; '.join(over)}): raise --sram/--flash or choose a larger board"
        )


# -------------------------------------------------------------------------------------- search steps
@dataclass(frozen=True)
class SearchInputs:
    """A search's checked inputs: everything a user can get wrong has failed before this exists."""

    opts: SearchOptions
    board: Board  # with the --sram/--flash budget applied
    budget: Budget
    instr_model: InstructionModel | None  # with an instruction budget
    data: Dataset
    space: SearchSpace
    space_info: dict[str, Any]  # where the space came from ("note", "binding" if sized): arch.json
    cost_fn: CostCache  # every candidate of the search, and only those
    largest_fits: bool  # the space's largest subnet fits the budget (the budget does not bind)
    work: Path  # .OUT.partial: the checkpoints; survives a killed run, removed at the end
    training: dict[str, Any]  # fingerprints of the options (options.json), for --resume
    searching: dict[str, Any]
    reuse_supernet_only: bool  # --resume with changed search options: keep the supernet, restart the evolution


@dataclass(frozen=True)
class TrainedSupernet:
    supernet: Supernet
    recipe: Recipe
    teacher: nn.Module | None  # the distillation teacher (--teacher cnn)
    seconds: dict[str, float]  # "teacher", "train_supernet"


@dataclass(frozen=True)
class Evolved:
    search_space: SearchSpace  # the evolved region (the whole space without space evolution)
    trajectory: dict[str, Any] | None  # the space evolution's (None without it)
    result: SearchResult
    config: SearchConfig
    costed: int  # candidates costed by the space evolution and the evolution
    rejected: dict[str, int]  # of those, over the budget: "sram", "flash", "instr"
    best_instructions: float | None  # the winner's predicted instructions (with an instruction budget)
    seconds: dict[str, float]  # "sensitivity", "space_evolution", "evolution_search"
    sensitivity: dict[str, Any] | None  # per-block int4 sensitivity (a space with int4 choices)


@dataclass(frozen=True)
class Winner:
    model: ViT  # fine-tuned, in eval mode
    finetune_epochs: int
    compiled: CompiledModel  # for the board's SRAM
    float_acc: float
    int8_acc: float
    sram_bytes: int  # peak SRAM and flash, as the search costed them
    flash_bytes: int
    fill: dict[str, Any]  # spaces.fill_analysis
    seconds: float
    qat: QATOutcome | None = None  # with --qat


@dataclass(frozen=True)
class QATOutcome:
    """Quantization-aware fine-tuning of the winner (--qat): the ranges export uses, and the report."""

    ranges: dict[str, tuple[float, float]]
    report: dict[str, Any]  # RUN/qat_report.json: post-training vs QAT top-1, the selection, per-op error


def validate_search(opts: SearchOptions, log: Log) -> SearchInputs:
    """Every user error before anything is written; loads the data, sizes the space and checks that
    its smallest subnet fits (not after training the supernet)."""
    board = resolve_board(opts.board, opts.sram, opts.flash)  # user errors first, before any work
    if opts.space:
        load_space(opts.space, 1, 2)  # a bad --space fails before anything is written
    resolve_device(opts.device)  # --device cuda without CUDA: before anything is written
    instr_model = None
    if opts.instr_budget is not None:
        instr_model = InstructionModel.load(opts.instr_model or DEFAULT_MODEL)
        if instr_model.dsp != board.dsp:
            raise UserError(
                f"the instruction model was fitted on {instr_model.board} (DSP {instr_model.dsp}); {board.name} runs "
                f"other kernels (DSP {board.dsp}): profile and fit one for it (python -m mcuformer.instr_profile)"
            )
    out = check_output(opts.out, OutputKind.RUN, opts.force, search_inputs(opts))  # before any work
    # data errors before anything is written; an image folder is resized on load to the given space's largest
    # resolution
    data = load_dataset(opts.data, seed=opts.seed, image_size=space_resolution(opts.space))
    space, space_info = search_space_for(opts.space, data, board)
    if opts.int4 and not space.int4_layers:
        space = replace(space, int4_layers=tuple(range(max(space.depths))))
        space_info = space_info | {"note": space_info["note"] + "\n--int4: every block may take int4 weights"}
    budget = Budget.of(board)
    largest, smallest = space.largest(), space.smallest()
    probe = CostCache(board.sram_bytes)
    log(
        f"board {board.name}: budget {format_bytes(board.sram_bytes)} SRAM, {format_bytes(board.flash_bytes)} flash"
        + (f", {opts.instr_budget:,.0f} instructions (predicted)" if instr_model else "")
    )
    for label, arch in (("largest", largest), ("smallest", smallest)):
        sram, flash = probe(arch)
        log(
            f"{label} subnet {arch.short()}: peak SRAM {sram} B, flash {flash} B -> "
            + ("fits" if budget.fits(sram, flash) else "does not fit")
        )
    check_budget_feasible(smallest, *probe(smallest), budget)  # fail now, not after training the supernet
    for line in space_info["note"].splitlines():
        log(line)
    log(f"data {data.summary()}")

    work = out.parent / f".{out.name}.partial"
    training = training_fingerprint(opts, space)
    searching = search_fingerprint(opts)
    reuse_supernet_only = prepare_partial(work, opts, training, searching, log)
    search_cost = CostCache(board.sram_bytes, board.flash_bytes)  # over-flash candidates are not planned
    return SearchInputs(opts, board, budget, instr_model, data, space, space_info, search_cost,
                        budget.fits(*probe(largest)), work, training, searching, reuse_supernet_only)  # fmt: skip


def start_run(inputs: SearchInputs, tmp: Path) -> dict[str, Any]:
    """The checkpoint directory with the options it was made with, and RUN/data.npz (what export
    calibrates and tests on); returns the stored data's description for arch.json."""
    inputs.work.mkdir(parents=True, exist_ok=True)
    save_json(str(inputs.work / "options.json"), {"training": inputs.training, "search": inputs.searching})
    if inputs.reuse_supernet_only:
        (inputs.work / SEARCH_STATE).unlink(missing_ok=True)
    return save_run_data(tmp / RUN_DATA_FILE, inputs.data, CALIBRATION_IMAGES)


def train_supernet_step(inputs: SearchInputs, log: Log) -> TrainedSupernet:
    """The teacher (if any), then the weight-sharing supernet (sandwich rule, checkpointed every epoch)."""
    opts, data = inputs.opts, inputs.data
    t0 = time.time()
    recipe = Recipe(opts.device, opts.label_smoothing, opts.crop_pad, opts.flip, opts.teacher,
                    opts.distill_weight, opts.threads)  # fmt: skip
    teacher = train_teacher(recipe, data, opts.finetune_epochs, opts.seed, log)
    seconds = {"teacher": time.time() - t0}
    t0 = time.time()
    torch.manual_seed(opts.seed)
    supernet = Supernet(inputs.space)
    if opts.init_from:
        notes = init_from_dense(supernet, load_vit(opts.init_from))
        log(f"supernet initialised from {opts.init_from} by SVD" + "".join(f"; {n}" for n in notes))
    largest = inputs.space.largest()
    train_cfg = train_config(
        recipe, data, opts.epochs, opts.seed, num_params(supernet.extract(largest)), lr=lr_for_width(largest.embed_dim)
    )
    log(
        f"training supernet: {opts.epochs} epochs, sandwich rule, on {train_cfg.device} ({train_cfg.threads} "
        f"thread(s)); peak learning rate {train_cfg.lr:g}, crop padding {train_cfg.augment_shift} px, flips "
        f"{'on' if train_cfg.flip else 'off'}, label smoothing {train_cfg.label_smoothing}"
        + (f", distilling from the {opts.teacher} teacher" if teacher else "")
    )
    train_supernet(
        supernet, data, train_cfg, log, checkpoint=str(inputs.work / SUPERNET_CHECKPOINT), resume=opts.resume,
        teacher=teacher,
    )  # fmt: skip
    seconds["train_supernet"] = time.time() - t0
    return TrainedSupernet(supernet, recipe, teacher, seconds)


def evolve_step(inputs: SearchInputs, trained: TrainedSupernet, log: Log) -> Evolved:
    """The space evolution (optional), then the evolution under the exact budgets (resumable per generation)."""
    opts, budget, cost_fn = inputs.opts, inputs.budget, inputs.cost_fn
    instructions: dict[ArchConfig, float] = {}  # predicted, for candidates that fit SRAM and flash
    instr_fn: InstrFn | None = None
    instr_model = inputs.instr_model
    if instr_model is not None:

        def instr_fn(arch: ArchConfig) -> float:
            if arch not in instructions:
                instructions[arch] = instr_model.predict(arch, budget.sram_bytes)
            return instructions[arch]

    def fits_budget(arch: ArchConfig) -> bool:
        if not budget.fits(*cost_fn(arch)):
            return False
        return instr_fn is None or instr_fn(arch) <= opts.instr_budget

    t0 = time.time()
    space, sensitivity = inputs.space, None
    if space.int4_layers:  # int4 only where one block alone in int4 loses at most the tolerance
        measured = measure_sensitivity(trained.supernet, space, inputs.data, opts.int4_tolerance)
        drops = ", ".join(f"{b}: {d:+.2f}" for b, d in sorted(measured.drop_points.items()))
        log(
            f"int4 sensitivity on {measured.reference.short()} (val top-1 {measured.int8_top1:.4f}), points lost "
            f"per block alone in int4: {drops}; int4 allowed in blocks {list(measured.allowed)} "
            f"(tolerance {opts.int4_tolerance:g})"
        )
        space, sensitivity = replace(space, int4_layers=measured.allowed), measured.to_json()
    seconds = {"sensitivity": time.time() - t0}
    t0 = time.time()
    search_space, trajectory = space, None
    if opts.space_evolution:
        evo_cfg = EvolutionConfig(seed=opts.seed)
        search_space, trajectory = evolve_space(space, trained.supernet, inputs.data, fits_budget, evo_cfg, log)
    seconds["space_evolution"] = time.time() - t0

    t0 = time.time()
    search_cfg = SearchConfig(
        population=opts.population,
        generations=opts.generations,
        parents=opts.parents if opts.parents is not None else max(2, opts.population // 5),
        mutations=opts.mutations if opts.mutations is not None else opts.population // 2,
        crossovers=opts.crossovers if opts.crossovers is not None else opts.population // 2,
        seed=opts.seed,
    )
    result = evolution_search(
        search_space, trained.supernet, inputs.data, cost_fn, budget.sram_bytes, budget.flash_bytes, search_cfg, log,
        instr_fn=instr_fn, instr_budget=opts.instr_budget if instr_fn else None,
        state_path=str(inputs.work / SEARCH_STATE), resume=opts.resume,
    )  # fmt: skip
    seconds["evolution_search"] = time.time() - t0
    costed = cost_fn.costed() | {a: c[:2] for a, c in result.costs.items()}  # space evolution + evolution
    instructions |= {a: c[2] for a, c in result.costs.items() if c[2] is not None}  # (also from a resumed state)
    rejected = {
        "sram": sum(s > budget.sram_bytes for s, _ in costed.values()),
        "flash": sum(f > budget.flash_bytes for _, f in costed.values()),
        "instr": sum(v > opts.instr_budget for v in instructions.values()) if instructions else 0,
    }
    log(
        f"search: {len(costed)} candidates costed, {rejected['sram']} rejected for SRAM (of those planned: "
        f"not over flash), {rejected['flash']} for flash, {rejected['instr']} for instructions; best "
        f"{result.best_arch.short()} (supernet val top-1 "
        f"{result.best_acc:.3f}); {cost_fn.evaluations} cost evaluations in {cost_fn.seconds:.2f}s = "
        f"{cost_fn.per_second:.0f}/s ({cost_fn.per_cpu_second:.0f} per CPU second)"
    )
    best_instructions = instr_fn(result.best_arch) if instr_fn is not None else None
    return Evolved(search_space, trajectory, result, search_cfg, len(costed), rejected, best_instructions, seconds,
                   sensitivity)  # fmt: skip


def finetune_step(inputs: SearchInputs, trained: TrainedSupernet, evolved: Evolved, log: Log) -> Winner:
    """The winner with the supernet's weights, fine-tuned, compiled for the board and measured (float
    and int8 top-1, the fill of the budget)."""
    opts, data, budget, result = inputs.opts, inputs.data, inputs.budget, evolved.result
    t0 = time.time()
    model = trained.supernet.extract(result.best_arch)
    ft_epochs = finetune_epochs_for(num_params(model), opts.finetune_epochs)
    use_qat = opts.qat if opts.qat is not None else bool(result.best_arch.int4_blocks)
    if use_qat and opts.qat is None:
        log("the winner has int4 blocks: quantization-aware fine-tuning is on (--no-qat skips it)")
    # with QAT the fine-tuning leaves out the hold-out QAT selects its checkpoint on (the same seeded
    # split), so the selection judges images the model has not trained on
    ft_data = split_holdout(data, QATConfig.holdout_fraction, opts.seed) if use_qat else data
    log(f"fine-tuning the winner: {ft_epochs} epochs ({num_params(model)} parameters)"
        + (f", {len(ft_data.train_y)} images (the rest held out for QAT)" if use_qat else ""))  # fmt: skip
    ft_cfg = train_config(trained.recipe, ft_data, ft_epochs, opts.seed, num_params(model), lr=FINETUNE_LR)
    finetune(model, ft_data, ft_cfg, log, trained.teacher)
    model.eval()
    qat_run = qat_step(model, data, trained.recipe, opts, budget.sram_bytes, log) if use_qat else None
    seconds = time.time() - t0

    compiled = compile_for(model, data, budget.sram_bytes, ranges=qat_run[0].ranges if qat_run else None)
    float_acc, int8_acc = accuracies(model, compiled, data)
    log(f"winner: float top-1 {float_acc:.4f}, int8 top-1 {int8_acc:.4f} (val, {len(data.val_y)} images)")
    qat = qat_outcome(*qat_run, compiled, model, data, (float_acc, int8_acc), log) if qat_run else None
    sram, flash = inputs.cost_fn(result.best_arch)
    fill = fill_analysis(
        (result.best_arch, result.best_acc, sram, flash), result.feasible, budget.sram_bytes, budget.flash_bytes
    )
    log(
        f"fill: peak SRAM {sram} B = {100 * fill['sram_fill']:.1f}% of {budget.sram_bytes} B, flash {flash} B = "
        f"{100 * fill['flash_fill']:.1f}% of {budget.flash_bytes} B; {fill['binding']} binds"
    )
    log(fill["note"])
    return Winner(model, ft_epochs, compiled, float_acc, int8_acc, sram, flash, fill, seconds, qat)


def qat_step(
    model: ViT, data: Dataset, recipe: Recipe, opts: SearchOptions, sram_bytes: int, log: Log
) -> tuple[QATResult, dict[str, Any]]:
    """Post-training int8 of the fine-tuned winner (the baseline), then quantization-aware fine-tuning
    (nas.qat: selected on a hold-out of the training images, never below its post-training start there).
    Returns QAT's result and the post-training baseline's report."""
    ptq = compile_for(model, data, sram_bytes)
    ptq_float, ptq_int8 = accuracies(model, ptq, data)
    log(f"quantization-aware fine-tuning: {opts.qat_epochs} epochs (post-training int8 top-1 {ptq_int8:.4f})")
    lr = QAT_LR_FRACTION * FINETUNE_LR
    cfg = train_config(recipe, data, opts.qat_epochs, opts.seed, num_params(model), lr=lr, min_lr=lr / 10,
                       weight_decay=0.0)  # fmt: skip
    result = qat_finetune(model, data, data.train_x[:CALIBRATION_IMAGES], cfg, QATConfig(epochs=opts.qat_epochs), log)
    baseline = {"float_top1": ptq_float, "int8_top1": ptq_int8, "qat_epochs": opts.qat_epochs, "qat_lr": lr}
    return result, baseline


def qat_outcome(
    result: QATResult,
    baseline: dict[str, Any],
    compiled: CompiledModel,
    model: ViT,
    data: Dataset,
    accuracy: tuple[float, float],
    log: Log,
) -> QATOutcome:
    """The QAT report of the compiled winner: both top-1s against the post-training baseline, the
    checkpoint selection, and each op's fake-quant vs integer error (target <= 1 LSB)."""
    images = resize_images(data.val_x[:QAT_ERROR_IMAGES], model.arch.image_size).numpy()
    test_int8 = compiled.quantize_input(to_hwc(images))
    errors = op_error_report(compiled.graph, test_int8)
    worst = max(errors, key=lambda op: errors[op]["max_lsb"])
    log(f"fake-quant vs integer reference: at most {errors[worst]['max_lsb']:.0f} LSB per op (worst {worst})")
    report = {
        "ptq": baseline,
        "qat": {"float_top1": accuracy[0], "int8_top1": accuracy[1]},
        "selection": result.to_json(),
        "op_error_lsb": {
            "images": len(test_int8), "worst_op": worst, "max_lsb": errors[worst]["max_lsb"], "ops": errors
        },  # fmt: skip
    }
    return QATOutcome(result.ranges, report)


def write_run(
    tmp: Path, inputs: SearchInputs, trained: TrainedSupernet, evolved: Evolved, winner: Winner, data_info: dict
) -> dict[str, Any]:
    """RUN/model.pt, pareto.png/json, space_evolution.json/png and arch.json (last: a RUN is complete
    when it has one); returns arch.json's content."""
    opts, cost_fn = inputs.opts, inputs.cost_fn
    report = search_report(
        board=inputs.board,
        result=evolved.result,
        search_cfg=evolved.config,
        predicted=(winner.sram_bytes, winner.flash_bytes, winner.compiled.cost.arena_bytes),
        accuracy=(winner.float_acc, winner.int8_acc),
        costed=evolved.costed,
        rejected=evolved.rejected,
        largest_fits=inputs.largest_fits,
        cost_evaluations=(cost_fn.evaluations, cost_fn.per_second, cost_fn.per_cpu_second),
        trajectory=evolved.trajectory,
        search_space=evolved.search_space,
        init_from=opts.init_from,
        finetune_epochs=winner.finetune_epochs,
        seconds=trained.seconds | evolved.seconds | {"finetune": winner.seconds},
        data=inputs.data,
        data_spec=data_spec(opts.data),
        data_size=inputs.data.image_size if Path(opts.data).is_dir() else None,  # folders: resized on load to this
        data_info=data_info,
        seed=opts.seed,
        space=inputs.space,
        space_info=inputs.space_info,
        fill=winner.fill,
        instr_budget=opts.instr_budget if inputs.instr_model is not None else None,
        predicted_instructions=evolved.best_instructions,
    )
    if evolved.sensitivity is not None:
        report["int4_sensitivity"] = evolved.sensitivity
    if winner.qat is not None:
        report["qat"] = {k: winner.qat.report[k] for k in ("ptq", "qat", "selection")} | {
            "max_op_error_lsb": winner.qat.report["op_error_lsb"]["max_lsb"],
            "ranges_file": QAT_RANGES_FILE,
        }
        save_json(str(tmp / QAT_RANGES_FILE), ranges_to_json(winner.qat.ranges))
        save_json(str(tmp / "qat_report.json"), winner.qat.report)
    torch.save(winner.model.state_dict(), tmp / "model.pt")
    plot_pareto(evolved.result, tmp / "pareto.png")
    save_json(str(tmp / "pareto.json"), evolved.result.pareto_json())
    if evolved.trajectory is not None:
        save_json(str(tmp / "space_evolution.json"), evolved.trajectory)
        plot_trajectory(evolved.trajectory, str(tmp / "space_evolution.png"))
    save_json(str(tmp / "arch.json"), report)
    return report


def run_search(opts: SearchOptions, log: Log) -> dict[str, Any]:
    """Train the supernet (checkpointed), evolve the search-space region, run the evolution under the
    exact budgets (resumable per generation), fine-tune and quantize the winner. Writes RUN/arch.json,
    model.pt, pareto.json/png and space_evolution.json/png. Checkpoints live in ``.OUT.partial/`` next
    to OUT until the run completes; ``opts.resume`` continues from them to the same result."""
    inputs = validate_search(opts, log)
    with (
        atomic_directory(opts.out, OutputKind.RUN, opts.force, search_inputs(opts)) as tmp,
        keep_checkpoints(inputs.work),
    ):
        data_info = start_run(inputs, tmp)
        trained = train_supernet_step(inputs, log)
        evolved = evolve_step(inputs, trained, log)
        winner = finetune_step(inputs, trained, evolved, log)
        report = write_run(tmp, inputs, trained, evolved, winner, data_info)
    shutil.rmtree(inputs.work, ignore_errors=True)
    written = ", space_evolution.json/png" if evolved.trajectory else ""
    written += f", {QAT_RANGES_FILE}, qat_report.json" if winner.qat else ""
    log(f"wrote {opts.out}/arch.json, model.pt, pareto.json/png" + written)
    return report

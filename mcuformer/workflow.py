"""The user jobs, end to end: search (RUN), export (PROJ), emulate, demo, memory plot.

Outputs are built in a temporary sibling directory and renamed into place at the end, so a failed or
interrupted job never leaves a half-written RUN or PROJ, and an existing one is only replaced with
--force.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from codegen.cost import NUM_TEST_INPUTS
from mcuformer.arch import ArchConfig, SearchSpace, save_json
from mcuformer.boards import Board, format_bytes, get_board, parse_bytes
from mcuformer.errors import UserError

Log = Callable[[str], None]

CALIBRATION_IMAGES = 256


# ----------------------------------------------------------------------------------------------- io
@contextmanager
def atomic_directory(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``out`` only if the block succeeds."""
    out = out.resolve()
    if out.exists() and not force:
        raise UserError(f"{out} already exists; pass --force to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory; remove it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{int(time.time() * 1000)}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


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


def default_space(image_size: int, in_channels: int, num_classes: int) -> SearchSpace:
    """Digits-sized inputs use the built-in space; larger images scale resolution and patch choices."""
    if image_size <= 16:
        return SearchSpace(in_channels=in_channels, num_classes=num_classes)
    sizes = tuple(sorted({max(8, image_size // 2 // 8 * 8), image_size // 8 * 8}))
    return SearchSpace(image_sizes=sizes, patch_sizes=(4, 8), in_channels=in_channels, num_classes=num_classes)


# ------------------------------------------------------------------------------------------- search
@dataclass(frozen=True)
class SearchOptions:
    board: str
    out: Path
    sram: str | None = None
    flash: str | None = None
    data: str = "digits"
    force: bool = False
    seed: int = 0
    epochs: int = 30
    finetune_epochs: int = 15
    population: int = 50
    generations: int = 20
    parents: int | None = None  # None: population // 5 (AutoFormer: top 10 of 50)
    mutations: int | None = None  # None: population // 2 (AutoFormer: 25 of 50)
    crossovers: int | None = None  # None: population // 2 (AutoFormer: 25 of 50)
    resume: bool = False  # continue an interrupted run from its checkpoints (OUT's sibling .OUT.partial/)
    init_from: str | None = None  # RUN dir or {"arch", "model"} checkpoint: SVD-initialise the supernet
    instr_budget: float | None = None  # max predicted instructions per inference (nas.instr_model)
    instr_model: str | None = None  # fitted instruction model JSON (default nas/data/instr_model.json)
    space_evolution: bool = True  # evolve the (rank ratio, patch size) region before the evolution


class CostCache:
    """Exact cost from codegen's planner for one SRAM budget, memoised per architecture; counts the
    distinct evaluations and their time (the search's cost evaluations per second).

    Same decisions as ``estimate(arch, sram)``, with fewer plans. The all-heads plan (one plan) comes
    first: ``estimate(arch, sram)`` returns exactly that plan whenever it fits. Over the budget, the
    per-head schedule search (several plans) runs only if ``peak_sram_lower_bound`` (valid for every
    schedule) leaves a chance to fit; when it does not, no schedule fits and the all-heads cost is
    kept. So a candidate that fits has exactly ``estimate(arch, sram)``'s cost, and one that does not
    is over the budget by both (tested in tests/test_nas.py)."""

    def __init__(self, sram_bytes: int | None = None) -> None:
        self.sram_bytes = sram_bytes
        self._cache: dict[ArchConfig, object] = {}
        self.evaluations = 0
        self.seconds = 0.0  # wall time
        self.cpu_seconds = 0.0  # this process's CPU time: the rate without other jobs' load

    def cost(self, arch: ArchConfig):  # -> codegen.cost.Cost
        if arch not in self._cache:
            from codegen.cost import cost_of_graph, estimate, peak_sram_lower_bound, planned_graph

            t0, c0 = time.perf_counter(), time.process_time()
            graph = planned_graph(arch)  # all-heads schedules
            cost = cost_of_graph(graph)
            over = self.sram_bytes is not None and cost.peak_sram_bytes > self.sram_bytes
            if over and peak_sram_lower_bound(graph) <= self.sram_bytes:
                cost = estimate(arch, self.sram_bytes)  # per-head schedules may fit
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0
            self.evaluations += 1
            self._cache[arch] = cost
        return self._cache[arch]

    def __call__(self, arch: ArchConfig) -> tuple[int, int]:
        cost = self.cost(arch)
        return cost.peak_sram_bytes, cost.flash_bytes

    def costed(self) -> dict[ArchConfig, tuple[int, int]]:
        """Every architecture costed so far -> (peak SRAM, flash)."""
        return {a: (c.peak_sram_bytes, c.flash_bytes) for a, c in self._cache.items()}

    @property
    def per_second(self) -> float:
        return self.evaluations / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.evaluations / self.cpu_seconds if self.cpu_seconds else 0.0


def run_search(opts: SearchOptions, log: Log) -> dict:
    """Train the supernet (checkpointed), evolve the search-space region, run the evolution under the
    exact budgets (resumable per generation), fine-tune and quantize the winner. Writes RUN/arch.json,
    model.pt, pareto.json/png and space_evolution.json/png. Checkpoints live in ``.OUT.partial/`` next
    to OUT until the run completes; ``opts.resume`` continues from them to the same result."""
    board = resolve_board(opts.board, opts.sram, opts.flash)  # user errors first, before heavy imports
    instr_model = None
    if opts.instr_budget is not None:
        from nas.instr_model import DEFAULT_MODEL, InstructionModel

        instr_model = InstructionModel.load(opts.instr_model or DEFAULT_MODEL)
        if instr_model.dsp != board.dsp:
            raise UserError(
                f"the instruction model was fitted on {instr_model.board} (DSP {instr_model.dsp}); {board.name} runs "
                f"other kernels (DSP {board.dsp}): profile and fit one for it (python -m nas.instr_model)"
            )
    import dataclasses

    import torch

    from mcuformer.data import load_dataset
    from nas.search import SearchConfig, evolution_search, plot_pareto
    from nas.space_evolution import RANK_GRID, EvolutionConfig, evolve_space, plot_trajectory
    from nas.supernet import Supernet, init_from_dense, load_vit
    from nas.train import TrainConfig, finetune, train_supernet

    out = opts.out.resolve()
    work = out.parent / f".{out.name}.partial"  # checkpoints; survives a killed run, removed at the end
    fingerprint = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("out", "force", "resume")}
    fingerprint = json.loads(json.dumps(fingerprint, default=str))
    timings: dict[str, float] = {}

    with atomic_directory(opts.out, opts.force) as tmp:
        if work.exists() and not opts.resume:
            if not opts.force:
                raise UserError(f"{work} holds an interrupted run: pass --resume to continue it or --force to restart")
            shutil.rmtree(work)
        options = work / "options.json"
        if options.is_file() and json.loads(options.read_text()) != fingerprint:
            raise UserError(f"{work} is an interrupted run with other options: rerun with them, or --force to restart")
        work.mkdir(parents=True, exist_ok=True)
        save_json(str(options), fingerprint)
        data = load_dataset(opts.data, seed=opts.seed)
        space = default_space(data.image_size, data.in_channels, data.num_classes)
        space = dataclasses.replace(space, rank_ratios=RANK_GRID)  # the rank axis of the space evolution
        cost_fn = CostCache(board.sram_bytes)  # every candidate of the search, and only those
        largest, smallest = space.largest(), space.smallest()
        probe = CostCache(board.sram_bytes)
        log(
            f"board {board.name}: budget {format_bytes(board.sram_bytes)} SRAM, {format_bytes(board.flash_bytes)} flash"
            + (f", {opts.instr_budget:,.0f} instructions (predicted)" if instr_model else "")
        )
        for label, arch in (("largest", largest), ("smallest", smallest)):
            sram, flash = probe(arch)
            fits = sram <= board.sram_bytes and flash <= board.flash_bytes
            log(
                f"{label} subnet {arch.short()}: peak SRAM {sram} B, flash {flash} B -> "
                + ("fits" if fits else "does not fit")
            )
        log(f"data {data.summary()}")

        t0 = time.time()
        torch.manual_seed(opts.seed)
        supernet = Supernet(space)
        if opts.init_from:
            notes = init_from_dense(supernet, load_vit(opts.init_from))
            log(f"supernet initialised from {opts.init_from} by SVD" + "".join(f"; {n}" for n in notes))
        train_cfg = TrainConfig(epochs=opts.epochs, seed=opts.seed)
        log(f"training supernet: {opts.epochs} epochs, sandwich rule")
        train_supernet(supernet, data, train_cfg, log, checkpoint=str(work / "supernet.ckpt.pt"), resume=opts.resume)
        timings["train_supernet"] = time.time() - t0

        instructions: dict[ArchConfig, float] = {}  # predicted, for candidates that fit SRAM and flash
        instr_fn = None
        if instr_model is not None:

            def instr_fn(arch: ArchConfig) -> float:
                if arch not in instructions:
                    instructions[arch] = instr_model.predict(arch, board.sram_bytes)
                return instructions[arch]

        def fits_budget(arch: ArchConfig) -> bool:
            sram, flash = cost_fn(arch)
            if sram > board.sram_bytes or flash > board.flash_bytes:
                return False
            return instr_fn is None or instr_fn(arch) <= opts.instr_budget

        t0 = time.time()
        search_space, trajectory = space, None
        if opts.space_evolution:
            evo_cfg = EvolutionConfig(seed=opts.seed)
            search_space, trajectory = evolve_space(space, supernet, data, fits_budget, evo_cfg, log)
        timings["space_evolution"] = time.time() - t0

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
            search_space, supernet, data, cost_fn, board.sram_bytes, board.flash_bytes, search_cfg, log,
            instr_fn=instr_fn, instr_budget=opts.instr_budget if instr_fn else None,
            state_path=str(work / "search_state.json"), resume=opts.resume,
        )  # fmt: skip
        timings["evolution_search"] = time.time() - t0
        costed = cost_fn.costed() | {a: c[:2] for a, c in result.costs.items()}  # space evolution + evolution
        instructions |= {a: c[2] for a, c in result.costs.items() if c[2] is not None}  # (also from a resumed state)
        rejected_sram = sum(s > board.sram_bytes for s, _ in costed.values())
        rejected_flash = sum(f > board.flash_bytes for _, f in costed.values())
        rejected_instr = sum(v > opts.instr_budget for v in instructions.values()) if instructions else 0
        log(
            f"search: {len(costed)} candidates costed, {rejected_sram} rejected for SRAM, {rejected_flash} for "
            f"flash, {rejected_instr} for instructions; best {result.best_arch.short()} (supernet val top-1 "
            f"{result.best_acc:.3f}); {cost_fn.evaluations} cost evaluations in {cost_fn.seconds:.2f}s = "
            f"{cost_fn.per_second:.0f}/s ({cost_fn.per_cpu_second:.0f} per CPU second)"
        )
        t0 = time.time()
        model = supernet.extract(result.best_arch)
        log(f"fine-tuning the winner: {opts.finetune_epochs} epochs")
        finetune(model, data, TrainConfig(epochs=opts.finetune_epochs, seed=opts.seed, lr=5e-4), log)
        model.eval()
        timings["finetune"] = time.time() - t0

        compiled = compile_for(model, data, board.sram_bytes)
        float_acc, int8_acc = accuracies(model, compiled, data)
        log(f"winner: float top-1 {float_acc:.4f}, int8 top-1 {int8_acc:.4f} (val, {len(data.val_y)} images)")
        sram, flash = cost_fn(result.best_arch)
        report = {
            "arch": result.best_arch.to_json(),
            "board": board.name,
            "budget": {"sram_bytes": board.sram_bytes, "flash_bytes": board.flash_bytes},
            "predicted": {"peak_sram_bytes": sram, "flash_bytes": flash, "arena_bytes": compiled.cost.arena_bytes},
            "accuracy": {"float_top1": float_acc, "int8_top1": int8_acc, "supernet_top1": result.best_acc},
            "search": {  # every candidate costed (space evolution + evolution); "evolution": the latter only
                "evaluated": len(costed),
                "rejected_sram": rejected_sram,
                "rejected_flash": rejected_flash,
                "rejected_instr": rejected_instr,
                "evolution": {
                    k: getattr(result, k) for k in ("evaluated", "rejected_sram", "rejected_flash", "rejected_instr")
                }
                | {"feasible": len(result.feasible)},
                "population": search_cfg.population,
                "generations": search_cfg.generations,
                "parents": search_cfg.parents,
                "mutations": search_cfg.mutations,
                "crossovers": search_cfg.crossovers,
                "largest_fits": all(
                    x <= y for x, y in zip(probe(largest), (board.sram_bytes, board.flash_bytes), strict=True)
                ),
                "cost_evaluations": cost_fn.evaluations,
                "cost_evaluations_per_second": cost_fn.per_second,
                "cost_evaluations_per_cpu_second": cost_fn.per_cpu_second,
                "space_evolution": trajectory["chosen"] if trajectory else None,
                "search_space": search_space.to_json(),
                "init_from": opts.init_from,
                "seconds": timings,
            },
            "data": opts.data,
            "seed": opts.seed,
            "space": space.to_json(),
        }
        if instr_fn is not None:
            report["budget"]["instructions"] = opts.instr_budget
            report["predicted"]["instructions"] = instr_fn(result.best_arch)
        torch.save(model.state_dict(), tmp / "model.pt")
        plot_pareto(result, tmp / "pareto.png")
        save_json(str(tmp / "pareto.json"), result.pareto_json())
        if trajectory is not None:
            save_json(str(tmp / "space_evolution.json"), trajectory)
            plot_trajectory(trajectory, str(tmp / "space_evolution.png"))
        save_json(str(tmp / "arch.json"), report)
    shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {opts.out}/arch.json, model.pt, pareto.json/png" + (", space_evolution.json/png" if trajectory else ""))
    return report


def compile_for(model, data, sram_bytes: int | None = None, num_test_inputs: int = NUM_TEST_INPUTS):
    from codegen.compile import compile_model
    from mcuformer.model import resize_images

    calib = resize_images(data.train_x[:CALIBRATION_IMAGES], model.arch.image_size).numpy()
    return compile_model(model, calib, sram_bytes, num_test_inputs=num_test_inputs)


def accuracies(model, compiled, data) -> tuple[float, float]:
    import torch

    from codegen.compile import to_hwc
    from mcuformer.model import resize_images

    images = resize_images(data.val_x, model.arch.image_size)
    with torch.no_grad():
        float_pred = model(images).argmax(dim=1).numpy()
    int_logits = compiled.evaluate_int8(compiled.quantize_input(to_hwc(images.numpy())))
    labels = data.val_y.numpy()
    return float((float_pred == labels).mean()), float((int_logits.argmax(axis=1) == labels).mean())


# ------------------------------------------------------------------------------------------- export
def load_run(run: Path):
    import torch

    from mcuformer.model import ViT

    arch_file = run / "arch.json"
    if not run.is_dir():
        raise UserError(f"run directory {run} does not exist; create it with `mcuformer search --out {run}`")
    if not arch_file.is_file() or not (run / "model.pt").is_file():
        raise UserError(f"{run} is not a search run (no arch.json/model.pt); create one with `mcuformer search`")
    try:
        report = json.loads(arch_file.read_text())
        arch = ArchConfig.from_json(report["arch"])
    except (json.JSONDecodeError, KeyError) as exc:
        raise UserError(f"{arch_file} is not a valid arch.json ({exc}); re-run `mcuformer search`") from None
    model = ViT(arch)
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, report


def run_export(
    run: Path,
    board_name: str,
    out: Path,
    force: bool,
    log: Log,
    measure: bool = True,
    sram: str | None = None,
    flash: str | None = None,
) -> dict:
    """Compile RUN for a board (optionally limited to an SRAM/flash budget, e.g. to leave room for the
    application) into the project OUT (see ``export_model``)."""
    board = resolve_board(board_name, sram, flash)  # user errors first, before heavy imports
    from mcuformer.data import load_dataset

    model, run_report = load_run(run)
    arch = model.arch
    data = load_dataset(run_report.get("data", "digits"), seed=int(run_report.get("seed", 0)))
    if (data.in_channels, data.num_classes) != (arch.in_channels, arch.num_classes):
        raise UserError(f"data '{run_report.get('data')}' does not match the run's architecture")
    return export_model(model, data, board, out, force, log, measure=measure, source=str(run))


def export_model(
    model,
    data,
    board: Board,
    out: Path,
    force: bool,
    log: Log,
    measure: bool = True,
    num_test_inputs: int = NUM_TEST_INPUTS,
    source: str = "",
) -> dict:
    """Quantize (calibrating on ``data``), compile and write a C project for ``board`` into OUT, with
    the first validation images as embedded test inputs. With ``measure`` (and the Arm toolchain +
    QEMU present) the project is also built and run once in QEMU and the measured peak SRAM, flash and
    instructions are added to report.json under ``measured``."""
    from codegen.board_files import render_board_files
    from codegen.compile import to_hwc
    from codegen.cost import STACK_RESERVE_BYTES
    from codegen.emit import project_sources, render_model_files, render_readme, runtime_sources
    from mcuformer.model import resize_images

    arch = model.arch
    with atomic_directory(out, force) as tmp:
        log(f"compiling {arch.short()} for {board.name}")
        compiled = compile_for(model, data, board.sram_bytes, num_test_inputs)
        float_acc, int8_acc = accuracies(model, compiled, data)
        test_float = resize_images(data.val_x[:num_test_inputs], arch.image_size).numpy()
        test_int8 = compiled.quantize_input(to_hwc(test_float))
        expected = compiled.run_int8(test_int8)
        labels = [int(v) for v in data.val_y[:num_test_inputs]]
        runtime = runtime_sources(board)
        files = {**render_model_files(compiled.graph, compiled.lowered, test_int8, labels), **runtime}
        files.update(render_board_files(board, project_sources(runtime), STACK_RESERVE_BYTES))
        report = project_report(compiled, board, test_int8, expected, labels, float_acc, int8_acc, source)
        files["README.md"] = render_readme({**report, "arch_summary": arch.short(), "kernel_files": sorted(runtime)})
        write_files(tmp, files)
        write_onnx(model, tmp / "model.onnx")
        save_json(str(tmp / "report.json"), report)
        if measure and not board.is_host:
            report["measured"] = measure_in_qemu(tmp, log)
            save_json(str(tmp / "report.json"), report)
    log_memory(report, log)
    log(f"float top-1 {float_acc:.4f}, int8 top-1 {int8_acc:.4f}; wrote project {out}")
    if report["peak_sram_bytes"] > board.sram_bytes or report["flash_bytes"] > board.flash_bytes:
        log(
            f"warning: the model needs {format_bytes(report['peak_sram_bytes'])} SRAM / "
            f"{format_bytes(report['flash_bytes'])} flash but {board.name} has "
            f"{format_bytes(board.sram_bytes)} / {format_bytes(board.flash_bytes)}: the link will fail"
        )
    return report


def write_onnx(model, path: Path) -> None:
    """The float model as ONNX (opset 17), for inspection and for comparison with other toolchains."""
    import warnings

    import onnx
    import torch

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
    import shutil as _shutil

    from mcuformer.emulate import emulate

    if not (_shutil.which("arm-none-eabi-gcc") and _shutil.which("qemu-system-arm")):
        return {"error": "arm-none-eabi-gcc or qemu-system-arm not installed (run `make setup`)"}
    log("measuring in QEMU")
    try:
        result = emulate(project, host=False, sanitize=False)
    except UserError as exc:
        return {"error": str(exc)}
    finally:
        _shutil.rmtree(project / "build", ignore_errors=True)
    keys = ("target", "bit_exact", "instructions_per_inference", "stack_bytes", "static_sram_bytes", "flash_bytes")
    measured = {k: result[k] for k in keys}
    measured["peak_sram_bytes"] = result["static_sram_bytes"] + result["stack_bytes"]
    return measured


def op_macs(graph, node) -> int:
    """Multiply-accumulates of one fused operator: its linears, patch embedding and attention
    products (recomputation by the per-head schedule included)."""
    from nas.instr_model import node_features

    f = node_features(graph, node)
    return int(f["macs"] + f["attn_macs"])


def project_report(compiled, board: Board, test_int8, expected, labels, float_acc, int8_acc, source: str) -> dict:
    graph, cost = compiled.graph, compiled.cost
    plan = graph.meta["plan"]
    ops = []
    for step, node in enumerate(graph.nodes):
        tensors = node.inputs + node.outputs + node.workspace
        excluded = set(graph.meta["streamed_inputs"]) | set(graph.meta["external_outputs"])
        ops.append(
            {
                "step": step,
                "name": node.name,
                "kind": node.op.value,
                "kernel": compiled.lowered.calls[step].kernel,
                "schedule": node.variant,
                "tile": node.tile,
                "macs": op_macs(graph, node),
                "shapes": {t: list(graph.tensors[t].shape) for t in tensors},
                "offsets": {t: plan.offset_of(t) for t in tensors if t not in excluded},
                "scratch": {"offset": plan.offset_of(f"{node.name}.scratch"), "bytes": node.scratch_bytes},
                "fused": [n.name for n in node.body],
            }
        )
    in_q = graph.tensors[graph.inputs[0]].qparams
    out_q = graph.tensors[graph.outputs[0]].qparams
    return {
        "board": board.name,
        "arch": graph.meta["arch"].to_json(),
        "run": source,
        "arena_bytes": cost.arena_bytes,
        "naive_arena_bytes": cost.naive_arena_bytes,
        "lower_bound_bytes": cost.lower_bound_bytes,
        "peak_sram_bytes": cost.peak_sram_bytes,
        "flash_bytes": cost.flash_bytes,
        "weight_bytes": cost.weight_bytes,
        "budget": {"sram_bytes": board.sram_bytes, "flash_bytes": board.flash_bytes},
        "accuracy": {"float_top1": float_acc, "int8_top1": int8_acc},
        "input_quant": {"scale": in_q.scale, "zero_point": in_q.zero_point, "layout": "HWC int8"},
        "output_quant": {"scale": out_q.scale, "zero_point": out_q.zero_point},
        "buffers": [
            {"name": b.name, "offset": b.offset, "bytes": b.size, "first_step": b.first, "last_step": b.last}
            for b in plan.buffers
        ],
        "ops": ops,
        "test_inputs": [img.reshape(-1).astype(int).tolist() for img in test_int8],
        "test_labels": labels,
        "expected_outputs": [row.astype(int).tolist() for row in expected],
    }


def log_memory(report: dict, log: Log) -> None:
    a, n, lb = report["arena_bytes"], report["naive_arena_bytes"], report["lower_bound_bytes"]
    log(
        f"arena {a} B (naive op-by-op {n} B = {a / n:.2f}x of naive; lower bound {lb} B), "
        f"planned peak SRAM {report['peak_sram_bytes']} B, flash {report['flash_bytes']} B"
    )
    measured = report.get("measured")
    if measured and "error" not in measured:
        log(
            f"measured in {measured['target']}: peak SRAM {measured['peak_sram_bytes']} B "
            f"(static {measured['static_sram_bytes']} B + stack {measured['stack_bytes']} B), "
            f"flash {measured['flash_bytes']} B, {measured['instructions_per_inference']:,} instructions/inference, "
            + ("bit-exact" if measured["bit_exact"] else "NOT bit-exact")
        )
    elif measured:
        log(f"not measured in QEMU: {measured['error']}")


# ------------------------------------------------------------------------------------------ emulate
def run_emulate(
    project: Path, host: bool, sanitize: bool, log: Log | None, kernels: str = "default", profile: bool = False
) -> dict:
    from mcuformer.emulate import emulate, format_report

    result = emulate(project, host=host, sanitize=sanitize, kernels=kernels, profile=profile)
    if log:
        log(format_report(result))
    return result


# --------------------------------------------------------------------------------------------- demo
DEMO_BOARD = "NUCLEO-F412ZG"
DEMO_SRAM = "6KiB"  # binds: the largest subnet of the digits space needs ~13.4 KiB
DEMO_FLASH = "96KiB"  # binds: the largest subnet needs ~176 KiB of flash


def run_demo(out: Path, force: bool, log: Log) -> bool:
    started = time.time()
    out = out.resolve()
    if out.exists() and not force:
        raise UserError(f"{out} already exists; pass --force to replace it or choose another --out")
    with atomic_directory(out, force) as tmp:
        opts = SearchOptions(
            board=DEMO_BOARD,
            sram=DEMO_SRAM,
            flash=DEMO_FLASH,
            data="digits",
            out=tmp / "run",
            epochs=20,
            finetune_epochs=10,
            population=30,
            generations=10,
        )
        log(f"== demo: search for {DEMO_BOARD} limited to {DEMO_SRAM} SRAM / {DEMO_FLASH} flash")
        arch_report = run_search(opts, log)
        if arch_report["search"]["largest_fits"]:
            raise UserError("demo budget does not bind: the largest subnet fits (a bug in the demo settings)")
        log(f"== demo: export for {DEMO_BOARD} within the same budget")
        # the budget again: token tiles would otherwise spend the board's SRAM on speed
        proj = run_export(tmp / "run", DEMO_BOARD, tmp / "project", False, log, sram=DEMO_SRAM, flash=DEMO_FLASH)
        log("== demo: emulate in QEMU")
        emu = run_emulate(tmp / "project", host=False, sanitize=False, log=log)
        save_json(str(tmp / "emulate.json"), emu)
        summary = {
            "arch": arch_report["arch"],
            "float_top1": arch_report["accuracy"]["float_top1"],
            "int8_top1": proj["accuracy"]["int8_top1"],
            "planned_peak_sram_bytes": proj["peak_sram_bytes"],
            "measured_peak_sram_bytes": emu["static_sram_bytes"] + emu["stack_bytes"],
            "flash_bytes_measured": emu["flash_bytes"],
            "instructions_per_inference": emu["instructions_per_inference"],
            "bit_exact": emu["bit_exact"],
            "seconds": round(time.time() - started, 1),
        }
        save_json(str(tmp / "summary.json"), summary)
    log("== demo summary")
    log(f"architecture: {ArchConfig.from_json(summary['arch']).short()}")
    log(f"accuracy: float top-1 {summary['float_top1']:.4f}, int8 top-1 {summary['int8_top1']:.4f}")
    log(f"SRAM: planned peak {summary['planned_peak_sram_bytes']} B, measured {summary['measured_peak_sram_bytes']} B")
    log(f"flash (ELF): {summary['flash_bytes_measured']} B")
    log(f"instructions per inference (QEMU -icount): {summary['instructions_per_inference']}")
    log(f"{'PASS' if summary['bit_exact'] else 'FAIL'}: C in QEMU vs Python integer reference, {summary['seconds']} s")
    log(f"outputs in {out}: run/arch.json, project/report.json, emulate.json")
    return bool(summary["bit_exact"])


# -------------------------------------------------------------------------------------- memory plot
def run_memory_plot(project: Path, out: Path | None, log: Log) -> Path:
    report_file = project / "report.json"
    if not report_file.is_file():
        raise UserError(f"{project} is not an mcuformer project (no report.json); create one with `mcuformer export`")
    report = json.loads(report_file.read_text())
    out = out or project / "memory_timeline.png"
    plot_memory_timeline(report, out)
    log(f"wrote {out}")
    return out


def plot_memory_timeline(report: dict, out: Path) -> None:
    """Arena offset (y) of every buffer over the fused operators (x): one box per buffer lifetime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = len(report["ops"])
    arena = report["arena_bytes"]
    fig, ax = plt.subplots(figsize=(max(7, steps * 0.9), 4.8))
    colors = plt.get_cmap("tab20")
    for i, buf in enumerate(report["buffers"]):
        start, width = buf["first_step"] - 0.45, buf["last_step"] - buf["first_step"] + 0.9
        ax.broken_barh(
            [(start, width)], (buf["offset"], buf["bytes"]), facecolors=colors(i % 20), edgecolor="black", linewidth=0.5
        )
        if buf["bytes"] >= 0.05 * arena:  # label only boxes tall enough to read
            ax.text(
                start + width / 2,
                buf["offset"] + buf["bytes"] / 2,
                f"{buf['name']} ({buf['bytes']:,} B)",
                fontsize=7,
                ha="center",
                va="center",
            )
    ax.axhline(arena, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(range(steps), [op["name"] for op in report["ops"]], rotation=30, ha="right", fontsize=7)
    ax.set_xlim(-0.6, steps - 0.4)
    ax.set_ylim(0, arena * 1.08)
    ax.set_ylabel("arena offset (bytes)")
    ax.set_title(
        f"{report['board']}: arena {arena:,} B, naive op-by-op {report['naive_arena_bytes']:,} B, "
        f"lower bound {report['lower_bound_bytes']:,} B",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)

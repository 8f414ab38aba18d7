"""The user jobs, end to end: search (RUN), export (PROJ), emulate, demo, memory plot.

Outputs are built in a temporary sibling directory and renamed into place at the end, so a failed or
interrupted job never leaves a half-written RUN or PROJ; an existing one is only replaced with
--force, and only if it is this tool's own output of the same kind (mcuformer.outputs).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mcuformer.arch import ArchConfig, SearchSpace, save_json
from mcuformer.boards import Board, format_bytes, get_board, parse_bytes
from mcuformer.codegen.cost import NUM_TEST_INPUTS
from mcuformer.errors import DoesNotFit, UserError
from mcuformer.outputs import OutputKind, atomic_directory, check_output

Log = Callable[[str], None]

CALIBRATION_IMAGES = 256


# ----------------------------------------------------------------------------------------------- io
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


def space_resolution(spec: str | None) -> int | None:
    """The largest input resolution of a given space (None without one)."""
    if not spec:
        return None
    from mcuformer.spaces import load_space

    return max(load_space(spec, 1, 2).image_sizes)


def search_space_for(spec: str | None, data, board: Board) -> tuple[SearchSpace, dict]:
    """The search space: a preset or a .json/.toml file (``spec``), or, without one, a space sized to
    the board's budget and the data's input size so that the budget binds (``spaces.budget_space``).
    Returns the space and a description for the log and arch.json (``note``, ``binding`` if sized)."""
    from mcuformer.spaces import budget_space, describe_space, load_space

    if spec:
        space = load_space(spec, data.in_channels, data.num_classes)
        return space, {"source": spec, "note": f"search space '{spec}': {describe_space(space)}"}
    from mcuformer.nas.supernet import sample_arch

    probe = CostCache(board.sram_bytes)
    sized = budget_space(
        data.image_size, data.in_channels, data.num_classes, board.sram_bytes, board.flash_bytes, probe, sample_arch
    )
    info = {"source": "sized to the budget", "binding": sized.binding, "note": sized.note}
    info["note"] += f"\nsearch space (sized to the budget): {describe_space(sized.space)}"
    return sized.space, info


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
    space: str | None = None  # preset name or .json/.toml file; None: sized to the budget and the data
    device: str = "auto"  # training device: auto | cpu | cuda (nas.recipe)
    label_smoothing: float = 0.1
    crop_pad: int | None = None  # random-crop padding in pixels; None: from the data (nas.data_pipeline)
    flip: bool | None = None  # horizontal flips; None: from the data (never for digits)
    teacher: str = "none"  # none | cnn: distil from a small CNN trained first on the same data
    distill_weight: float = 0.5
    threads: int = 0  # torch threads; 0: by model size (nas.recipe)


class CostCache:
    """Exact cost from codegen's planner for one SRAM budget, memoised per architecture; counts the
    distinct evaluations and their time (the search's cost evaluations per second).

    Same decisions as ``estimate(arch, sram)``, with fewer plans. The all-heads plan (one plan) comes
    first: ``estimate(arch, sram)`` returns exactly that plan whenever it fits. Over the budget, the
    per-head schedule search (several plans) runs only if ``peak_sram_lower_bound`` (valid for every
    schedule) leaves a chance to fit; when it does not, no schedule fits and the all-heads cost is
    kept; nor when the candidate is over ``flash_bytes`` (a schedule does not change flash: it is
    rejected anyway, with its all-heads SRAM). So a candidate that fits has exactly
    ``estimate(arch, sram)``'s cost (without the naive op-by-op figure, which the search never reads:
    0), and one that does not is over a budget by both (tested in tests/test_nas.py)."""

    def __init__(self, sram_bytes: int | None = None, flash_bytes: int | None = None) -> None:
        self.sram_bytes = sram_bytes
        self.flash_bytes = flash_bytes  # a candidate over it is rejected whatever its schedule
        self._cache: dict[ArchConfig, object] = {}
        self.evaluations = 0
        self.seconds = 0.0  # wall time
        self.cpu_seconds = 0.0  # this process's CPU time: the rate without other jobs' load

    def cost(self, arch: ArchConfig):  # -> codegen.cost.Cost
        if arch not in self._cache:
            from mcuformer.codegen.cost import cost_of_graph, estimate, peak_sram_lower_bound, planned_graph

            t0, c0 = time.perf_counter(), time.process_time()
            graph = planned_graph(arch, naive=False)  # all-heads schedules
            cost = cost_of_graph(graph)
            over = self.sram_bytes is not None and cost.peak_sram_bytes > self.sram_bytes
            flash_over = self.flash_bytes is not None and cost.flash_bytes > self.flash_bytes
            if over and not flash_over and peak_sram_lower_bound(graph) <= self.sram_bytes:
                cost = estimate(arch, self.sram_bytes, naive=False)  # per-head schedules may fit
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


SUPERNET_CHECKPOINT = "supernet.ckpt.pt"
SEARCH_STATE = "search_state.json"
# change one of these and the trained supernet is another one (the space itself is compared too)
_TRAINING_OPTIONS = ("data", "seed", "epochs", "init_from", "device", "label_smoothing", "crop_pad", "flip", "teacher",
                     "distill_weight", "threads")  # fmt: skip


def data_spec(spec: str) -> str:
    """'digits' as is; a path made absolute, so a run names its data from any directory."""
    return spec if spec == "digits" else str(Path(spec).expanduser().resolve())


def search_inputs(opts: SearchOptions) -> list[Path]:
    """The files a search reads: its --out may never replace them."""
    paths = [Path(opts.data)] if opts.data != "digits" else []
    return paths + [Path(p) for p in (opts.init_from, opts.instr_model) if p]


def check_budget_feasible(smallest: ArchConfig, sram: int, flash: int, board: Board) -> None:
    if sram <= board.sram_bytes and flash <= board.flash_bytes:
        return
    over = [f"{what} {need:,} B > {have:,} B" for what, need, have in
            (("SRAM", sram, board.sram_bytes), ("flash", flash, board.flash_bytes)) if need > have]  # fmt: skip
    raise DoesNotFit(
        f"even the smallest subnet of the search space ({smallest.short()}) needs {sram:,} B SRAM and "
        f"{flash:,} B flash ({'; '.join(over)}): raise --sram/--flash or choose a larger board"
    )


def training_fingerprint(opts: SearchOptions, space: SearchSpace) -> dict:
    values = {k: getattr(opts, k) for k in _TRAINING_OPTIONS} | {"space": space.to_json()}
    values["data"] = data_spec(opts.data)
    return json.loads(json.dumps(values, default=str))


def search_fingerprint(opts: SearchOptions) -> dict:
    skip = {"out", "force", "resume", *_TRAINING_OPTIONS}
    return json.loads(json.dumps({k: v for k, v in vars(opts).items() if k not in skip}, default=str))


def prepare_partial(work: Path, opts: SearchOptions, training: dict, searching: dict, log: Log) -> bool:
    """Check an interrupted run's checkpoints in ``work`` against these options before any work.
    Returns True when only search or budget options changed: the trained supernet is reused and the
    evolution restarts."""
    if not work.exists():
        return False
    if not opts.resume:
        if not opts.force:
            raise UserError(f"{work} holds an interrupted run: pass --resume to continue it or --force to restart")
        shutil.rmtree(work)
        return False
    try:
        saved = json.loads((work / "options.json").read_text())
        saved_training, saved_search = saved["training"], saved["search"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{work} has no readable options.json: pass --force to restart the search") from None
    differ = sorted(k for k in training.keys() | saved_training.keys() if training.get(k) != saved_training.get(k))
    if differ:
        names = ", ".join("--" + k.replace("_", "-") if k != "space" else "the search space" for k in differ)
        raise UserError(
            f"--resume: {names} differ from the interrupted run in {work}: rerun with the same values, "
            "or --force to restart"
        )
    if saved_search != searching:
        changed = sorted(k for k in searching.keys() | saved_search.keys() if searching.get(k) != saved_search.get(k))
        log(f"resume: {', '.join(changed)} changed: reusing the trained supernet, restarting the evolution")
        return True
    return False


@contextmanager
def keep_checkpoints(work: Path) -> Iterator[None]:
    """A run that fails before its first checkpoint leaves no ``.OUT.partial`` behind."""
    try:
        yield
    except BaseException:
        if not any((work / name).exists() for name in (SUPERNET_CHECKPOINT, SEARCH_STATE)):
            shutil.rmtree(work, ignore_errors=True)
        raise


def run_search(opts: SearchOptions, log: Log) -> dict:
    """Train the supernet (checkpointed), evolve the search-space region, run the evolution under the
    exact budgets (resumable per generation), fine-tune and quantize the winner. Writes RUN/arch.json,
    model.pt, pareto.json/png and space_evolution.json/png. Checkpoints live in ``.OUT.partial/`` next
    to OUT until the run completes; ``opts.resume`` continues from them to the same result."""
    board = resolve_board(opts.board, opts.sram, opts.flash)  # user errors first, before heavy imports
    if opts.space:
        from mcuformer.spaces import load_space

        load_space(opts.space, 1, 2)  # a bad --space fails before anything is written
    from mcuformer.nas.data_pipeline import resolve_device

    resolve_device(opts.device)  # --device cuda without CUDA: before anything is written
    instr_model = None
    if opts.instr_budget is not None:
        from mcuformer.nas.instr_model import DEFAULT_MODEL, InstructionModel

        instr_model = InstructionModel.load(opts.instr_model or DEFAULT_MODEL)
        if instr_model.dsp != board.dsp:
            raise UserError(
                f"the instruction model was fitted on {instr_model.board} (DSP {instr_model.dsp}); {board.name} runs "
                f"other kernels (DSP {board.dsp}): profile and fit one for it (python -m mcuformer.nas.instr_model)"
            )
    import torch

    from mcuformer.data import RUN_DATA_FILE, load_dataset, save_run_data
    from mcuformer.nas.recipe import Recipe, finetune_epochs_for, num_params, train_config, train_teacher
    from mcuformer.nas.search import SearchConfig, evolution_search, plot_pareto
    from mcuformer.nas.space_evolution import EvolutionConfig, evolve_space, plot_trajectory
    from mcuformer.nas.supernet import Supernet, init_from_dense, load_vit
    from mcuformer.nas.train import finetune, train_supernet
    from mcuformer.spaces import fill_analysis

    out = check_output(opts.out, OutputKind.RUN, opts.force, search_inputs(opts))  # before any work
    # data errors before anything is written; an image folder is resized on load to the given space's largest
    # resolution
    data = load_dataset(opts.data, seed=opts.seed, image_size=space_resolution(opts.space))
    space, space_info = search_space_for(opts.space, data, board)
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
    check_budget_feasible(smallest, *probe(smallest), board)  # fail now, not after training the supernet
    for line in space_info["note"].splitlines():
        log(line)
    log(f"data {data.summary()}")

    work = out.parent / f".{out.name}.partial"  # checkpoints; survives a killed run, removed at the end
    training = training_fingerprint(opts, space)
    searching = search_fingerprint(opts)
    reuse_supernet_only = prepare_partial(work, opts, training, searching, log)
    timings: dict[str, float] = {}

    with atomic_directory(opts.out, OutputKind.RUN, opts.force, search_inputs(opts)) as tmp, keep_checkpoints(work):
        work.mkdir(parents=True, exist_ok=True)
        save_json(str(work / "options.json"), {"training": training, "search": searching})
        if reuse_supernet_only:
            (work / SEARCH_STATE).unlink(missing_ok=True)
        data_info = save_run_data(tmp / RUN_DATA_FILE, data, CALIBRATION_IMAGES)

        t0 = time.time()
        recipe = Recipe(opts.device, opts.label_smoothing, opts.crop_pad, opts.flip, opts.teacher,
                        opts.distill_weight, opts.threads)  # fmt: skip
        teacher = train_teacher(recipe, data, opts.finetune_epochs, opts.seed, log)
        timings["teacher"] = time.time() - t0
        t0 = time.time()
        torch.manual_seed(opts.seed)
        supernet = Supernet(space)
        if opts.init_from:
            notes = init_from_dense(supernet, load_vit(opts.init_from))
            log(f"supernet initialised from {opts.init_from} by SVD" + "".join(f"; {n}" for n in notes))
        train_cfg = train_config(recipe, data, opts.epochs, opts.seed, num_params(supernet.extract(largest)))
        log(
            f"training supernet: {opts.epochs} epochs, sandwich rule, on {train_cfg.device} ({train_cfg.threads} "
            f"thread(s)); crop padding {train_cfg.augment_shift} px, flips {'on' if train_cfg.flip else 'off'}, "
            f"label smoothing {train_cfg.label_smoothing}"
            + (f", distilling from the {opts.teacher} teacher" if teacher else "")
        )
        train_supernet(
            supernet, data, train_cfg, log, checkpoint=str(work / SUPERNET_CHECKPOINT), resume=opts.resume,
            teacher=teacher,
        )  # fmt: skip
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
            state_path=str(work / SEARCH_STATE), resume=opts.resume,
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
        ft_epochs = finetune_epochs_for(num_params(model), opts.finetune_epochs)
        log(f"fine-tuning the winner: {ft_epochs} epochs ({num_params(model)} parameters)")
        ft_cfg = train_config(recipe, data, ft_epochs, opts.seed, num_params(model), lr=5e-4)
        finetune(model, data, ft_cfg, log, teacher)
        model.eval()
        timings["finetune"] = time.time() - t0

        compiled = compile_for(model, data, board.sram_bytes)
        float_acc, int8_acc = accuracies(model, compiled, data)
        log(f"winner: float top-1 {float_acc:.4f}, int8 top-1 {int8_acc:.4f} (val, {len(data.val_y)} images)")
        sram, flash = cost_fn(result.best_arch)
        fill = fill_analysis(
            (result.best_arch, result.best_acc, sram, flash), result.feasible, board.sram_bytes, board.flash_bytes
        )
        log(
            f"fill: peak SRAM {sram} B = {100 * fill['sram_fill']:.1f}% of {board.sram_bytes} B, flash {flash} B = "
            f"{100 * fill['flash_fill']:.1f}% of {board.flash_bytes} B; {fill['binding']} binds"
        )
        log(fill["note"])
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
                "finetune_epochs": ft_epochs,
                "seconds": timings,
            },
            "data": data_spec(opts.data),
            "data_size": data.image_size if Path(opts.data).is_dir() else None,  # folders: resized on load to this
            "data_stored": data_info,  # RUN/data.npz: what export calibrates and tests on
            "class_labels": data.class_names,  # the user's label of output k
            "preprocessing": data.preprocessing,
            "seed": opts.seed,
            "space": space.to_json(),
            "space_source": space_info,
            "fill": fill,
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
    from mcuformer.codegen.compile import compile_graph, compile_model
    from mcuformer.imported import ImportedModel
    from mcuformer.model import resize_images

    calib = resize_images(data.train_x[:CALIBRATION_IMAGES], model.arch.image_size).numpy()
    if isinstance(model, ImportedModel):
        return compile_graph(model.float_graph, calib, sram_bytes, num_test_inputs=num_test_inputs)
    return compile_model(model, calib, sram_bytes, num_test_inputs=num_test_inputs)


def accuracies(model, compiled, data) -> tuple[float, float]:
    import torch

    from mcuformer.codegen.compile import to_hwc
    from mcuformer.model import resize_images

    images = resize_images(data.val_x, model.arch.image_size)
    with torch.no_grad():
        float_pred = model(images).argmax(dim=1).numpy()
    int_logits = compiled.evaluate_int8(compiled.quantize_input(to_hwc(images.numpy())))
    labels = data.val_y.numpy()
    return float((float_pred == labels).mean()), float((int_logits.argmax(axis=1) == labels).mean())


# ------------------------------------------------------------------------------------------- export
def load_run(run: Path):
    """The run's model and arch.json; every value and weight shape is checked before allocating."""
    import pickle
    import zipfile

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


def run_data(run: Path, run_report: dict, override: str | None):
    """What export calibrates and tests on: ``--data`` if given, else the data the run stored
    (RUN/data.npz), else (runs of older versions) the data set named in arch.json."""
    from mcuformer.data import RUN_DATA_FILE, load_dataset, load_run_data

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
    board = resolve_board(board_name, sram, flash)  # user errors first, before heavy imports
    check_library_options(board, float_abi)
    inputs = [run] + ([Path(data)] if data and data != "digits" else [])
    if run.suffix == ".onnx" or (mean or std):
        return export_onnx(run, board, out, force, log, measure, data, inputs, mean, std, float_abi)
    check_output(out, OutputKind.PROJECT, force, inputs)
    model, run_report = load_run(run)
    arch = model.arch
    dataset = run_data(run, run_report, data)
    if (dataset.in_channels, dataset.num_classes) != (arch.in_channels, arch.num_classes):
        raise UserError(
            f"data '{dataset.name}' has {dataset.in_channels} channels and {dataset.num_classes} classes, the run's "
            f"model {arch.in_channels} and {arch.num_classes}: pass the data the run was trained on with --data"
        )
    labels = run_report.get("class_labels")
    if isinstance(labels, list) and len(labels) == arch.num_classes:
        dataset.class_names = [str(v) for v in labels]
    return export_model(
        model, dataset, board, out, force, log, measure=measure, source=str(run), inputs=inputs, float_abi=float_abi
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
    from mcuformer.data import load_dataset
    from mcuformer.imported import load_imported, normalisation_affine

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
    if (dataset.in_channels, dataset.num_classes) != (arch.in_channels, arch.num_classes):
        raise UserError(
            f"data '{dataset.name}' has {dataset.in_channels} channels and {dataset.num_classes} classes, the model "
            f"{arch.in_channels} and {arch.num_classes}"
        )
    log(f"{arch.short()}: float graph within {model.float_graph.import_check_max_abs_diff:.2g} of the ONNX model")
    return export_model(
        model, dataset, board, out, force, log, measure=measure, source=str(path), inputs=inputs, float_abi=float_abi
    )


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
    inputs: list[Path] | None = None,
    float_abi: str | None = None,
) -> dict:
    """Quantize (calibrating on ``data``), compile and write a C project for ``board`` into OUT, with
    the first validation images as embedded test inputs. A model over the board's (or budget's) SRAM or
    flash raises DoesNotFit before anything is written. With ``measure`` (and the Arm toolchain +
    QEMU present) the project is also built and run once in QEMU and the measured peak SRAM, flash and
    instructions are added to report.json under ``measured``."""
    from mcuformer.codegen.board_files import render_board_files
    from mcuformer.codegen.compile import to_hwc
    from mcuformer.codegen.cost import STACK_RESERVE_BYTES
    from mcuformer.codegen.emit import project_sources, render_model_files, render_readme, runtime_sources
    from mcuformer.codegen.int_exec import op_error_lsb
    from mcuformer.model import resize_images

    arch = model.arch
    with atomic_directory(out, OutputKind.PROJECT, force, inputs or []) as tmp:
        log(f"compiling {arch.short()} for {board.name}")
        compiled = compile_for(model, data, board.sram_bytes, num_test_inputs)
        check_fits(compiled.cost, board)
        float_acc, int8_acc = accuracies(model, compiled, data)
        test_float = resize_images(data.val_x[:num_test_inputs], arch.image_size).numpy()
        test_int8 = compiled.quantize_input(to_hwc(test_float))
        expected = compiled.run_int8(test_int8)
        labels = [int(v) for v in data.val_y[:num_test_inputs]]
        if float_abi is not None:
            report = project_report(compiled, board, test_int8, expected, labels, float_acc, int8_acc, source)
            report["class_labels"] = list(data.class_names)
            report["preprocessing"] = input_preparation(data, arch, report["input_quant"])
            return export_library(tmp, compiled, board, test_int8, report, float_abi, measure, log)
        compiled, placement = place_model_memory(board, compiled)
        runtime = runtime_sources(board, compiled.graph)
        files = {**render_model_files(compiled.graph, compiled.lowered, test_int8, labels), **runtime}
        files.update(render_board_files(board, project_sources(runtime), STACK_RESERVE_BYTES, placement=placement))
        report = project_report(compiled, board, test_int8, expected, labels, float_acc, int8_acc, source)
        report["class_labels"] = list(data.class_names)
        report["preprocessing"] = input_preparation(data, arch, report["input_quant"])
        report["memory_regions"] = placement.to_json(board)
        if getattr(model, "normalisation", None):
            report["preprocessing"]["model_normalisation"] = (
                f"folded into the patch embedding: the ONNX model sees (v - mean) / std, v = (x + 1) / 2 in [0, 1], "
                f"mean {model.normalisation['mean']}, std {model.normalisation['std']}"
            )
        report["op_error_lsb"] = op_error_lsb(compiled.graph, test_int8)  # each op vs float on its own inputs
        if compiled.float_graph.import_check_max_abs_diff is not None:
            report["import"] = {"onnx_max_abs_diff": compiled.float_graph.import_check_max_abs_diff}
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


def check_fits(cost, board: Board) -> None:
    """A planned model over the board's (or the requested budget's) SRAM or flash is a failure."""
    over = [
        f"{what} {need:,} B > {have:,} B (over by {need - have:,} B)"
        for what, need, have in (
            ("peak SRAM", cost.peak_sram_bytes, board.sram_bytes),
            ("flash", cost.flash_bytes, board.flash_bytes),
        )
        if need > have
    ]
    if over:
        raise DoesNotFit(
            f"model does not fit {board.name} (budget {format_bytes(board.sram_bytes)} SRAM, "
            f"{format_bytes(board.flash_bytes)} flash): {'; '.join(over)}; search a smaller model or raise the budget"
        )


def input_preparation(data, arch: ArchConfig, input_quant: dict) -> dict:
    """How a raw camera image becomes the int8 input the model expects (for the project README)."""
    return {
        "resize": f"{arch.image_size}x{arch.image_size}, bilinear (half-pixel centers, no antialias)",
        "channels": arch.in_channels,
        "layout": "HWC (row by row, channels interleaved)",
        "scaling": data.preprocessing,
        "quantize": f"q = clamp(round(x / {input_quant['scale']:.9g}) + {input_quant['zero_point']}, -128, 127)",
    }


def place_model_memory(board: Board, compiled):  # -> (CompiledModel, codegen.regions.RegionPlacement)
    """The arena (or the arena and the hot row scratch), stack and statics across the board's RAM
    regions (codegen.regions)."""
    from mcuformer.codegen.cost import STACK_RESERVE_BYTES, STATIC_SRAM_BYTES
    from mcuformer.codegen.regions import place_compiled

    return place_compiled(board, compiled, STACK_RESERVE_BYTES, STATIC_SRAM_BYTES)


def check_library_options(board: Board, float_abi: str | None) -> None:
    if float_abi is not None:
        from mcuformer.codegen.library import check_float_abi

        check_float_abi(board, float_abi)


def export_library(
    tmp: Path, compiled, board: Board, test_int8, report: dict, float_abi: str, measure: bool, log: Log
) -> dict:
    """Write the ``--format lib`` directory (codegen.library) into ``tmp`` with report.json; with
    ``measure`` build it with CMake on the host and check its example bit-exactly."""
    from mcuformer.codegen.cost import STACK_RESERVE_BYTES
    from mcuformer.codegen.library import render_library
    from mcuformer.emulate import check_library

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


def write_onnx(model, path: Path) -> None:
    """The float model as ONNX (opset 17), for inspection and for comparison with other toolchains."""
    import warnings

    import onnx
    import torch

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
    measured.update(measure_firmware(project, log))
    return measured


def measure_firmware(project: Path, log: Log) -> dict:
    """``{"firmware": {...}}``: the board image (real memory map) booted on the board's emulated
    microcontroller and checked bit-exactly, for boards that have one; ``{}`` for the others. A
    failure is recorded, not raised, like measure_in_qemu."""
    from mcuformer.emulate import emulate_firmware

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


def op_macs(graph, node) -> int:
    """Multiply-accumulates of one fused operator: its linears, patch embedding and attention
    products (recomputation by the per-head schedule included)."""
    from mcuformer.nas.instr_model import node_features

    f = node_features(graph, node)
    return int(f["macs"] + f["attn_macs"])


def project_report(compiled, board: Board, test_int8, expected, labels, float_acc, int8_acc, source: str) -> dict:
    graph, cost = compiled.graph, compiled.cost
    plan = graph.planned()
    ops = []
    for step, node in enumerate(graph.nodes):
        tensors = node.inputs + node.outputs + node.workspace
        excluded = set(graph.streamed_inputs) | set(graph.external_outputs)
        ops.append(
            {
                "step": step,
                "name": node.name,
                "kind": node.op,
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
        "arch": graph.arch.to_json(),
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
    project: Path,
    host: bool,
    sanitize: bool,
    log: Log | None,
    kernels: str = "default",
    profile: bool = False,
    firmware: bool = False,
) -> dict:
    from mcuformer.emulate import emulate, emulate_firmware, format_report

    if firmware and (host or profile):
        raise UserError("--firmware boots the board image in QEMU; it cannot be combined with --host or --profile")
    if firmware:
        result = emulate_firmware(project, kernels=kernels)
    else:
        result = emulate(project, host=host, sanitize=sanitize, kernels=kernels, profile=profile)
    if log:
        log(format_report(result))
    return result


# --------------------------------------------------------------------------------------------- demo
DEMO_BOARD = "NUCLEO-F412ZG"
DEMO_SRAM = "6KiB"  # the largest subnet of the space sized to it needs 13.4 KiB
DEMO_FLASH = "96KiB"  # binds: that largest subnet needs 316 KiB of flash


def run_demo(out: Path, force: bool, log: Log) -> bool:
    started = time.time()
    out = check_output(out, OutputKind.DEMO, force)
    with atomic_directory(out, OutputKind.DEMO, force) as tmp:
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
            "fill": arch_report["fill"],
            "seconds": round(time.time() - started, 1),
        }
        save_json(str(tmp / "summary.json"), summary)
    log("== demo summary")
    log(f"architecture: {ArchConfig.from_json(summary['arch']).short()}")
    log(f"accuracy: float top-1 {summary['float_top1']:.4f}, int8 top-1 {summary['int8_top1']:.4f}")
    log(f"SRAM: planned peak {summary['planned_peak_sram_bytes']} B, measured {summary['measured_peak_sram_bytes']} B")
    log(f"flash (ELF): {summary['flash_bytes_measured']} B")
    fill = summary["fill"]
    log(
        f"fill (planned): SRAM {100 * fill['sram_fill']:.1f}%, flash {100 * fill['flash_fill']:.1f}% of the budget; "
        f"{fill['binding']} binds"
    )
    log(f"instructions per inference (QEMU -icount): {summary['instructions_per_inference']}")
    log(f"{'PASS' if summary['bit_exact'] else 'FAIL'}: C in QEMU vs Python integer reference, {summary['seconds']} s")
    log(f"outputs in {out}: run/arch.json, project/report.json, emulate.json")
    return bool(summary["bit_exact"])


# -------------------------------------------------------------------------------------- memory plot
def run_memory_plot(project: Path, out: Path | None, log: Log) -> Path:
    report_file = project / "report.json"
    if not report_file.is_file():
        raise UserError(f"{project} is not an mcuformer project (no report.json); create one with `mcuformer export`")
    try:
        report = json.loads(report_file.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{report_file} is truncated or not JSON; re-run `mcuformer export`") from None
    missing = [k for k in _TIMELINE_KEYS if not isinstance(report, dict) or k not in report]
    if missing or not report["ops"] or not isinstance(report["buffers"], list):
        raise UserError(f"{report_file} has no memory plan ({', '.join(missing) or 'ops'} missing); re-run export")
    out = out or project / "memory_timeline.png"
    if out.exists() and not out.is_file():
        raise UserError(f"--out {out} is a directory; give a .png file path")
    try:
        plot_memory_timeline(report, out)
    except OSError as exc:
        raise UserError(f"cannot write {out} ({exc.strerror}); choose another --out") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{report_file} has a malformed memory plan ({exc!r}); re-run `mcuformer export`") from None
    log(f"wrote {out}")
    return out


_TIMELINE_KEYS = ("ops", "buffers", "arena_bytes", "naive_arena_bytes", "lower_bound_bytes", "board")


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

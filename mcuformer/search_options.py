"""A search's options, and the checkpoints of an interrupted search (``.OUT.partial/`` next to RUN):
what ``--resume`` may continue, checked against the options before any work."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mcuformer.arch import SearchSpace
from mcuformer.errors import UserError

Log = Callable[[str], None]


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
    distill_weight: float = 0.5  # nas.recipe.Recipe.distill_weight (docs/nas.md: 0.5 against 0.9)
    threads: int = 0  # torch threads; 0: by model size (nas.recipe)
    int4: bool = False  # every block may take packed int4 weights (a search choice, narrowed by sensitivity)
    int4_tolerance: float = 1.0  # top-1 points a block may lose alone in int4 to stay an int4 choice
    # quantization-aware fine-tuning of the winner after its fine-tuning (nas.qat); None: on when the
    # winner has int4 blocks (where it was measured to help, docs/quantization.md), off for int8 only
    qat: bool | None = None
    qat_epochs: int = 3


SUPERNET_CHECKPOINT = "supernet.ckpt.pt"
SEARCH_STATE = "search_state.json"
# change one of these and the trained supernet is another one (the space itself is compared too)
_TRAINING_OPTIONS = ("data", "seed", "epochs", "init_from", "device", "label_smoothing", "crop_pad", "flip", "teacher",
                     "distill_weight", "threads", "int4")  # fmt: skip


# what runs after the evolution from its winner (nothing checkpointed depends on them): a --resume with
# other values neither restarts the evolution nor retrains the supernet
_AFTER_SEARCH_OPTIONS = ("qat", "qat_epochs")


def data_spec(spec: str) -> str:
    """'digits' as is; a path made absolute, so a run names its data from any directory."""
    return spec if spec == "digits" else str(Path(spec).expanduser().resolve())


def search_inputs(opts: SearchOptions) -> list[Path]:
    """The files a search reads: its --out may never replace them."""
    paths = [Path(opts.data)] if opts.data != "digits" else []
    return paths + [Path(p) for p in (opts.init_from, opts.instr_model) if p]


def training_fingerprint(opts: SearchOptions, space: SearchSpace) -> dict:
    values = {k: getattr(opts, k) for k in _TRAINING_OPTIONS} | {"space": space.to_json()}
    values["data"] = data_spec(opts.data)
    return json.loads(json.dumps(values, default=str))


def search_fingerprint(opts: SearchOptions) -> dict:
    skip = {"out", "force", "resume", *_TRAINING_OPTIONS, *_AFTER_SEARCH_OPTIONS}
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

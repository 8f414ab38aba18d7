"""Command-line interface: boards, spaces, search, export, emulate, demo, memory-plot.

User mistakes raise UserError and print one line `error: ...` with exit status 2; a model that
does not fit its budget (DoesNotFit) or a C-vs-reference mismatch exits 1; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from mcuformer.boards import all_boards, format_bytes
from mcuformer.errors import UserError
from mcuformer.search_options import SearchOptions
from mcuformer.spaces import PRESETS, describe_space, load_space


def _log(message: str) -> None:
    print(message, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line (exit 2), like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive, non_negative = _integer(1), _integer(0)


def cmd_boards(args: argparse.Namespace) -> int:
    rows = [("board", "core", "DSP", "SRAM", "flash", "emulator")]
    for b in all_boards():
        machine = f"qemu-system-arm -M {b.qemu_machine}" if b.qemu_machine else "native (host cc)"
        machine += f"; firmware image: -M {b.firmware_machine}" if b.firmware_machine else ""
        rows.append(
            (b.name, b.core, "yes" if b.dsp else "no", format_bytes(b.sram_bytes), format_bytes(b.flash_bytes), machine)
        )
    if args.json:
        print(json.dumps([dict(zip(rows[0], r, strict=True)) for r in rows[1:]], indent=2))
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({n: {"description": p.description, **p.choices} for n, p in PRESETS.items()}, indent=2))
        return 0
    for name, preset in PRESETS.items():
        print(f"{name:10s} {preset.description}")
        print(f"{'':10s} {describe_space(load_space(name, 1, 10))}")
    print("without --space, search sizes a space to the budget and the data; --space FILE takes a .json/.toml")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from mcuformer.workflow import run_search  # lazy: the jobs load torch; --help, `boards` and `spaces` do not

    def _count(text: str, flag: str) -> float:
        """'2500000', '2.5e6', '2.5M' or '800k' -> a number."""
        scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1.0)
        try:
            value = float(text[:-1] if scale != 1.0 else text) * scale
        except ValueError:
            raise UserError(f"{flag}: expected a number such as 2500000, 2.5e6 or 2.5M, got '{text}'") from None
        if value <= 0:
            raise UserError(f"{flag} must be positive, got '{text}'")
        return value

    if not 0.0 <= args.distill_weight <= 1.0:
        raise UserError(f"--distill-weight is the teacher's share of the loss, 0 to 1, got {args.distill_weight:g}")
    if not 0.0 <= args.int4_tolerance <= 100.0:
        raise UserError(f"--int4-tolerance is in top-1 points, 0 to 100, got {args.int4_tolerance:g}")
    if args.qat_epochs is not None and args.qat is False:
        raise UserError("--qat-epochs has no effect with --no-qat: drop one of them")
    if args.parents is not None and args.parents > args.population:
        raise UserError(f"--parents {args.parents} exceeds --population {args.population}: choose fewer parents")
    run_search(
        SearchOptions(
            board=args.board,
            sram=args.sram,
            flash=args.flash,
            data=args.data,
            out=Path(args.out),
            force=args.force,
            seed=args.seed,
            epochs=args.epochs,
            finetune_epochs=args.finetune_epochs,
            population=args.population,
            generations=args.generations,
            parents=args.parents,
            mutations=args.mutations,
            crossovers=args.crossovers,
            resume=args.resume,
            init_from=args.init_from,
            instr_budget=_count(args.instr_budget, "--instr-budget") if args.instr_budget else None,
            instr_model=args.instr_model,
            space_evolution=args.space_evolution,
            space=args.space,
            int4=args.int4,
            int4_tolerance=args.int4_tolerance,
            device=args.device,
            label_smoothing=args.label_smoothing,
            crop_pad=args.crop_pad,
            flip=args.flip,
            teacher=args.teacher,
            distill_weight=args.distill_weight,
            threads=args.threads,
            qat=args.qat,
            qat_epochs=args.qat_epochs if args.qat_epochs is not None else SearchOptions.qat_epochs,
        ),
        _log,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mcuformer.export import run_export  # lazy: the jobs load torch; --help, `boards` and `spaces` do not

    float_abi = (args.float_abi or "soft") if args.format == "lib" else None
    if args.float_abi and args.format != "lib":
        raise UserError("--float-abi applies to --format lib only")
    run_export(
        Path(args.run), args.board, Path(args.out), args.force, _log, not args.no_measure, args.sram, args.flash,
        data=args.data, float_abi=float_abi, mean=args.mean, std=args.std,
    )  # fmt: skip
    return 0


def cmd_emulate(args: argparse.Namespace) -> int:
    from mcuformer.emulate import run_emulate  # lazy: the jobs load torch; --help, `boards` and `spaces` do not

    try:
        result = run_emulate(
            Path(args.project),
            host=args.host,
            sanitize=not args.no_sanitize,
            log=_log if not args.json else None,
            kernels=args.kernels,
            profile=args.profile,
            firmware=args.firmware,
        )
    except UserError as exc:
        if args.json:  # JSON on stdout on every outcome; the message still goes to stderr
            failure = {"bit_exact": False, "error": str(exc), "exit_code": exc.exit_code, "mismatches": []}
            print(json.dumps(failure, indent=2, sort_keys=True))
        raise
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0 if result["bit_exact"] else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from mcuformer.demo import run_demo  # lazy: the jobs load torch; --help, `boards` and `spaces` do not

    return 0 if run_demo(Path(args.out), args.force, _log) else 1


def cmd_memory_plot(args: argparse.Namespace) -> int:
    from mcuformer.plots import run_memory_plot  # lazy: the jobs load torch; --help, `boards` and `spaces` do not

    run_memory_plot(Path(args.project), Path(args.out) if args.out else None, _log)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mcuformer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("boards", help="list the supported boards")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_boards)

    p = sub.add_parser("spaces", help="list the named search-space presets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_spaces)

    p = sub.add_parser("search", help="train a supernet and search a ViT that fits a board/budget")
    p.add_argument("--board", required=True)
    p.add_argument("--sram", help="SRAM budget, e.g. 64KiB (default: the board's SRAM)")
    p.add_argument("--flash", help="flash budget, e.g. 512KiB (default: the board's flash)")
    p.add_argument("--data", default="digits", help="digits, a .npz file or an image folder")
    p.add_argument(
        "--space",
        help="search space: a preset (`mcuformer spaces`) or a .json/.toml file (default: sized to the budget)",
    )
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--seed", type=non_negative, default=0)
    p.add_argument("--epochs", type=non_negative, default=30, help="supernet training epochs")
    p.add_argument("--finetune-epochs", type=non_negative, default=15)
    p.add_argument("--population", type=_integer(2), default=50)
    p.add_argument("--generations", type=positive, default=20)
    p.add_argument("--parents", type=positive, help="top-k bred from each generation (default population/5)")
    p.add_argument("--mutations", type=non_negative, help="mutated children per generation (default population/2)")
    p.add_argument("--crossovers", type=non_negative, help="crossover children per generation (default population/2)")
    p.add_argument(
        "--space-evolution",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="evolve the (rank ratio, patch size) region of the space before the evolution (default on)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="training device (default auto)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: 1, all cores for >= 1M parameters)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--crop-pad", type=int, help="random-crop padding in pixels (default: about 1/12 of the side)")
    p.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, default=None, help="horizontal flips (default: RGB non-digits)"
    )
    p.add_argument("--teacher", choices=("none", "cnn"), default="none", help="distil from a small CNN trained first")
    p.add_argument(
        "--distill-weight",
        type=float,
        default=SearchOptions.distill_weight,
        help=f"with --teacher: the teacher's share of the loss, 0 to 1 (default {SearchOptions.distill_weight:g})",
    )
    p.add_argument(
        "--int4",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="let the search give blocks packed int4 weights where the measured sensitivity allows (default off)",
    )
    p.add_argument(
        "--int4-tolerance",
        type=float,
        default=1.0,
        help="top-1 points a block may lose alone in int4 and stay an int4 choice (default 1.0)",
    )
    p.add_argument(
        "--qat",
        action=argparse.BooleanOptionalAction,
        default=SearchOptions.qat,
        help="quantization-aware fine-tuning of the winner; export then uses the ranges it learned (default: on "
        "when the winner has int4 blocks)",
    )
    p.add_argument("--qat-epochs", type=positive, help=f"epochs of --qat (default {SearchOptions.qat_epochs})")
    p.add_argument("--instr-budget", help="max instructions per inference, predicted by the fitted QEMU model")
    p.add_argument("--instr-model", help="instruction model JSON (default: nas/data/instr_model.json)")
    p.add_argument("--init-from", help="RUN dir or checkpoint of a trained ViT: SVD-initialise the supernet")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search from its checkpoints")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.set_defaults(fn=cmd_search)

    p = sub.add_parser("export", help="quantize and compile a searched or imported (ONNX) model into a C project")
    p.add_argument("run", metavar="MODEL", help="run directory written by `mcuformer search`, or a ViT as MODEL.onnx")
    p.add_argument("--board", required=True)
    p.add_argument("--out", required=True, help="project directory to create")
    p.add_argument("--sram", help="SRAM the model may use, e.g. 64KiB (default: the board's SRAM)")
    p.add_argument("--flash", help="flash the model may use (default: the board's flash)")
    p.add_argument("--data", help="calibration/test data (default: the data stored in RUN at search time)")
    p.add_argument("--mean", type=float, nargs="+", help="ONNX model: its input is (v - mean) / std, v in [0, 1]")
    p.add_argument("--std", type=float, nargs="+", help="ONNX model: per-channel std of that normalisation")
    p.add_argument("--no-measure", action="store_true", help="do not build and run the project in QEMU")
    p.add_argument(
        "--format",
        choices=("project", "lib"),
        default="project",
        help="project: a C project with its own startup (default); lib: a static library + one header + CMake",
    )
    p.add_argument("--float-abi", choices=("soft", "softfp", "hard"), help="float ABI of the library (default soft)")
    p.add_argument("--force", action="store_true", help="replace an existing project directory")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("emulate", help="build and run a project in QEMU (or natively) and check bit-exactness")
    p.add_argument("project")
    p.add_argument("--host", action="store_true", help="build and run natively with the host compiler")
    p.add_argument("--no-sanitize", action="store_true", help="host build without -fsanitize=address,undefined")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--kernels",
        choices=("default", "optimized", "portable", "dsp"),
        default="default",
        help="kernel variant (default: optimized on cores with the DSP extension; dsp: the M55 without Helium)",
    )
    p.add_argument("--profile", action="store_true", help="instructions per operator from QEMU (table / JSON)")
    p.add_argument(
        "--firmware",
        action="store_true",
        help="boot the board image (real memory map, serial console) on the emulated microcontroller",
    )
    p.set_defaults(fn=cmd_emulate)

    p = sub.add_parser("demo", help="search -> export -> emulate on digits with a budget that binds")
    p.add_argument("--out", default="demo")
    p.add_argument("--force", action="store_true", help="replace an existing demo directory")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("memory-plot", help="draw a project's memory timeline over operators as a PNG")
    p.add_argument("project")
    p.add_argument("--out", help="PNG path (default PROJECT/memory_timeline.png)")
    p.set_defaults(fn=cmd_memory_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Every plot the app draws: the search's Pareto fronts (RUN/pareto.png), the space evolution's
score map (RUN/space_evolution.png) and a project's arena timeline (``mcuformer memory-plot``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mcuformer.errors import UserError
from mcuformer.nas.search import SearchResult, pareto_front

Log = Callable[[str], None]


def plot_pareto(result: SearchResult, path: str | Path) -> None:
    """Accuracy vs peak SRAM (left) and vs flash (right) of every feasible candidate, the Pareto front
    on that resource, the winner and the budget: whichever resource binds, its panel shows the fill."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed (Agg)

    fig = Figure(figsize=(11.0, 4.4), dpi=120)
    kib = 1 / 1024
    panels = ((2, 0, result.sram_budget, "peak SRAM"), (3, 1, result.flash_budget, "flash"))
    for ax, (index, best_index, budget, label) in zip(fig.subplots(1, 2), panels, strict=True):
        ax.scatter([p[index] * kib for p in result.feasible], [p[1] for p in result.feasible], s=12, c="0.6",
                   label="feasible")  # fmt: skip
        front = pareto_front(result.feasible, index)
        ax.step([p[index] * kib for p in front], [p[1] for p in front], where="post", c="tab:red", label="Pareto front")
        best = result.best_cost[best_index] * kib
        ax.scatter([best], [result.best_acc], marker="*", s=160, c="tab:red", label="chosen", zorder=3)
        ax.axvline(budget * kib, ls="--", c="k", lw=1, label=f"{label} budget")
        ax.set_xlabel(f"{label} (KiB); chosen: {100 * best / (budget * kib):.0f}% of the budget")
        ax.set_ylabel("val top-1 (supernet weights)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{len(result.feasible)} feasible of {result.evaluated} candidates")
    fig.tight_layout()
    fig.savefig(path)


def plot_trajectory(trajectory: dict[str, Any], path: str | Path) -> None:
    """Scored regions as a score map over (rank level, patch size), the centre's path, the chosen one."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed (Agg)

    levels, patches = trajectory["rank_levels"], trajectory["patch_sizes"]
    grid = np.full((len(patches), len(levels)), np.nan)
    for r in trajectory["regions"]:
        grid[r["patch_index"], r["rank_index"]] = r["score"]
    fig = Figure(figsize=(1.1 * len(levels) + 2.0, 1.0 * len(patches) + 2.0), dpi=120)
    ax = fig.subplots()
    image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto", vmin=0.0)
    fig.colorbar(image, ax=ax, label="score = acc x fit fraction")
    for r in trajectory["regions"]:
        ax.text(r["rank_index"], r["patch_index"], f"{r['score']:.2f}\nfit {r['fit_fraction']:.2f}",
                ha="center", va="center", fontsize=7, bbox={"facecolor": "w", "alpha": 0.6, "lw": 0})  # fmt: skip
    path_x = [it["centre"]["rank_index"] for it in trajectory["iterations"]]
    path_y = [it["centre"]["patch_index"] for it in trajectory["iterations"]]
    ax.plot(path_x, path_y, "-o", c="tab:red", lw=2, ms=5, label="centre")
    chosen = trajectory["chosen"]
    ax.scatter([chosen["rank_index"]], [chosen["patch_index"]], marker="*", s=250, c="tab:orange", label="chosen")
    ax.set_xticks(range(len(levels)), ["dense" if v == 1.0 else f"{v:g}" for v in levels])
    ax.set_yticks(range(len(patches)), [str(p) for p in patches])
    ax.set_xlabel("rank ratio (region = this level +- 1)")
    ax.set_ylabel("patch size")
    ax.set_title("search-space evolution")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


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

"""benchmarks/run.py's report code (no QEMU): the Cortex-M55 figures, the JSON keys and the markdown."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _run(instructions: int, bit_exact: bool = True) -> dict:
    return {
        "instructions_per_inference": instructions,
        "bit_exact": bit_exact,
        "flash_bytes": 91_784,
        "stack_bytes": 772,
    }


def _m55_runs(mve: int, dsp: int, portable: int | None, bit_exact: bool = True) -> dict:
    runs = {
        ("board", "optimized"): _run(405_200),
        ("m55", "optimized"): _run(mve),
        ("m55", "dsp"): _run(dsp, bit_exact),
    }
    if portable is not None:
        runs[("m55", "portable")] = _run(portable)
    return runs


def test_m55_figures(bench):
    f = bench.m55_figures(_m55_runs(91_502, 401_808, 1_681_789), macs=189_056)
    assert f["m55_instructions_mve"] == 91_502
    assert f["m55_instructions_dsp"] == 401_808
    assert f["m55_instructions_portable"] == 1_681_789
    assert f["m55_dsp_over_mve"] == 4.39  # DSP over MVE, not the inverse
    assert f["m55_portable_over_mve"] == 18.4
    assert f["m55_instructions_per_mac"] == 0.484
    assert f["m55_target_met"] is True
    assert f["m55_bit_exact"] is True
    assert f["m55_flash_bytes"] == 91_784
    assert f["m55_note"] == ""
    # the target is 4x: 4.0 exactly is met, just under is not; any M55 mismatch shows
    assert bench.m55_figures(_m55_runs(100_000, 400_000, None), 1)["m55_target_met"] is True
    assert bench.m55_figures(_m55_runs(100_001, 400_000, None), 1)["m55_target_met"] is False
    assert bench.m55_figures(_m55_runs(100, 400, None), 1)["m55_instructions_portable"] is None
    assert bench.m55_figures(_m55_runs(100, 400, None, bit_exact=False), 1)["m55_bit_exact"] is False


def test_m55_skipped(bench):
    m55 = bench._m55(bench.get_board("STM32F746G-DISCO"))
    assert m55.core == "cortex-m55" and m55.sram_bytes == 320 * 1024
    assert bench._m55_skip(470_200, m55) == ""
    reason = bench._m55_skip(3_376_336, m55)
    assert "512 KiB" in reason and "ITCM" in reason
    f = bench.m55_figures({("board", "optimized"): _run(1)}, 10, reason)
    assert f["m55_note"] == reason
    assert all(f[k] is None for k in ("m55_instructions_mve", "m55_instructions_dsp", "m55_dsp_over_mve"))


def _entry(bench, name: str, core: str, runs: dict, macs: int, skip: str = "") -> dict:
    kinds = {"fused_mlp": {"instructions": 1_000, "macs": 500, "instructions_per_mac": 2.0}}
    per_kind = {"board": kinds, "m7": kinds}
    if not skip:
        per_kind["m55"] = {"fused_mlp": {"instructions": 250, "macs": 500, "instructions_per_mac": 0.5}}
    return {
        "name": name,
        "board": "NUCLEO-F412ZG",
        "core": core,
        "arch": bench.REFERENCES[0].arch.to_json(),
        "note": "a note",
        "flash_note": "",
        "arena_bytes": 2_560,
        "naive_arena_bytes": 1_280,
        "lower_bound_bytes": 2_448,
        "arena_vs_naive": 2.0,
        "arena_vs_lower_bound": 1.046,
        "peak_sram_bytes": 3_132,
        "flash_bytes": 81_788,
        "instructions_optimized": 405_200,
        "instructions_portable": 1_861_280,
        "m7_instructions_optimized": 408_520,
        "m7_instructions_portable": 1_974_560,
        "m7_speedup": 4.83,
        "bit_exact": True,
        "schedules": ["mcuf_mlp_rowwise_s8"],
        "tiles": [{"name": "b0.mlp", "schedule": None, "tile": 4}],
        "macs": macs,
        "per_kind": per_kind,
        **bench.m55_figures(runs, macs, skip),
    }


def test_markdown_m55_table(bench, tmp_path):
    entries = [
        _entry(bench, "demo", "cortex-m4", _m55_runs(91_502, 401_808, 1_681_789), 189_056),
        _entry(bench, "small", "cortex-m4", _m55_runs(30_000, 90_000, None, bit_exact=False), 10_000),
        _entry(bench, "big", "cortex-m7", {("board", "optimized"): _run(1)}, 10, skip="too big for the ITCM"),
    ]
    path = tmp_path / "benchmarks.md"
    bench.write_markdown(entries, path)
    text = path.read_text()
    lines = text.splitlines()
    section = lines.index("## Cortex-M55: Helium (MVE) and DSP kernels")
    assert lines.index("## Instructions before and after issue 10 (token tiles, faster DSP loops)") < section
    assert section < lines.index("## Models")
    header = next(i for i in range(section, len(lines)) if lines[i].startswith("| model | MACs | MVE | DSP |"))
    assert lines[header + 1] == "|---|---|---|---|---|---|---|---|---|---|"
    assert lines[header + 2] == ("| demo | 189,056 | 91,502 | 401,808 | 1,681,789 | 4.39x | 18.4x | 0.48 | met | yes |")
    assert lines[header + 3] == "| small | 10,000 | 30,000 | 90,000 | - | 3.00x | - | 3.00 | not met | NO |"
    assert "- big: not run on the M55: too big for the ITCM." in lines
    assert not any(line.startswith("| big | 10 |") for line in lines)
    # per-kind rows: the M55's under its own core, the M7 board's M7 copy not repeated
    assert "| demo | cortex-m55 | fused_mlp | 250 | 500 | 0.50 |" in lines
    assert "| demo | cortex-m7 | fused_mlp | 1,000 | 500 | 2.00 |" in lines
    assert sum(line.startswith("| big | cortex-m7 | fused_mlp |") for line in lines) == 1
    assert not any(line.startswith("| big | cortex-m55 |") for line in lines)
    # the main table keeps its columns
    assert lines[6].startswith("| model | board | arena | naive arena |") and lines[6].endswith(
        "| M7 speedup | bit-exact |"
    )


def test_markdown_rewrite_keeps_the_hand_written_sections(bench, tmp_path):
    entries = [_entry(bench, "demo", "cortex-m4", _m55_runs(91_502, 401_808, 1_681_789), 189_056)]
    path = tmp_path / "benchmarks.md"
    notes = f"{bench.NOTES_MARK}\n\n## A pass measured by hand\n\nfigures that no table regenerates\n"
    path.write_text("# Benchmarks\n\nstale generated tables\n\n" + notes)
    bench.write_markdown(entries, path)
    text = path.read_text()
    assert text.endswith("\n" + notes) and text.count(bench.NOTES_MARK) == 1
    assert "stale generated tables" not in text and "| demo | 189,056 | 91,502 |" in text
    bench.write_markdown(entries, path)  # idempotent: a second run keeps one copy of the notes
    assert path.read_text() == text

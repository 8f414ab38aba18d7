"""int4 weights through the compiler (ArchConfig.weight_bits): the architecture field, the packed
weights the compiler emits and their flash accounting, the linear kernels' dispatch on
mcuf_linear_params.weight_format (host harness: every path that takes linear parameters), and a
mixed int4 / int8 model bit-exact with the integer reference natively and in QEMU on an M4, an M7
and the M55 board. int8 models are unchanged: their generated C names no weight format and their
runtime is built without the int4 kernels.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mcuformer.arch import ArchConfig
from mcuformer.boards import get_board
from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.compile import CompiledModel, compile_model, to_hwc
from mcuformer.codegen.cost import S4W_CODE_FLASH_BYTES, estimate, planned_graph
from mcuformer.codegen.emit import render_model_files, runtime_sources
from mcuformer.codegen.int_exec import run_batch, run_unfused
from mcuformer.codegen.ir import Op
from mcuformer.emulate import run_emulate
from mcuformer.errors import UserError
from mcuformer.export import run_export
from mcuformer.model import ViT
from mcuformer.nas.instr_model import INT4_EXTRA_INSTRUCTIONS_PER_MAC, InstructionModel, int4_macs
from tests import kernel_harness as kh
from tests.builders import make_random_run
from tests.kernel_cases import (
    assert_same,
    attention_case,
    float_mlp,
    linear_case,
    lowrank_case,
    mlp_case,
    random_linear,
)
from tests.test_attention_perhead import perhead_case, random_attention

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc or qemu-system-arm not installed")

# res8 p4 E32 D2: block 0 int4 with a rank-8 attention (qkv_down 32 -> 8, q/k/v 8 -> 32), block 1
# int8 with rank-8 fc1 / fc2 (odd widths are tested in the kernel cases below)
MIXED = ArchConfig(8, 1, 4, 32, 2, (2, 2), (2.0, 2.0), (8, 0), (0, 8), 10, weight_bits=(4, 8))
INT8 = replace(MIXED, weight_bits=())
OK = 0
ERR_ARG = -1


def _quiet(_: str) -> None:
    pass


# ---- ArchConfig.weight_bits -------------------------------------------------------------------


def test_weight_bits_validation_and_accessors() -> None:
    assert INT8.bits_of(0) == INT8.bits_of(1) == 8 and INT8.int4_blocks == ()
    assert MIXED.bits_of(0) == 4 and MIXED.bits_of(1) == 8 and MIXED.int4_blocks == (0,)
    assert MIXED.short().endswith(" w4:[0]") and "w4" not in INT8.short()
    assert "w4" not in replace(MIXED, weight_bits=(8, 8)).short()
    with pytest.raises(ValueError, match="weight_bits has 1 entries, depth is 2"):
        replace(MIXED, weight_bits=(4,))
    for bad in ((4, 2), (4, 16), (True, 8), (4.0, 8), ("4", 8)):
        with pytest.raises(ValueError, match="weight_bits must be 8 or 4"):
            replace(MIXED, weight_bits=bad)
    with pytest.raises(IndexError):
        MIXED.bits_of(2)


def test_weight_bits_json_round_trip() -> None:
    data = MIXED.to_json()
    assert data["weight_bits"] == [4, 8]
    assert ArchConfig.from_json(json.loads(json.dumps(data))) == MIXED
    assert "weight_bits" not in INT8.to_json()  # arch.json of an int8 model is as before
    assert ArchConfig.from_json(INT8.to_json()) == INT8
    with pytest.raises(UserError, match="weight_bits must be 8 or 4"):
        ArchConfig.from_json({**data, "weight_bits": [3, 8]})


# ---- compiled model: packed weights and flash -------------------------------------------------


def _compile(arch: ArchConfig) -> CompiledModel:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(16, 1, 8, 8, generator=gen) * 2 - 1).numpy()
    return compile_model(ViT(arch).eval(), x)


@pytest.fixture(scope="module")
def compiled() -> tuple[CompiledModel, CompiledModel]:
    return _compile(MIXED), _compile(INT8)


def _linears(model: CompiledModel) -> dict[str, tuple[int, qp.LinearParams]]:
    """Every primitive linear's name -> (weight bits, its parameters)."""
    return {
        n.name: (n.attrs.weight_bits, n.kernel)
        for top in model.graph.nodes
        for n in (top.body or (top,))
        if n.op == Op.LINEAR
    }


def test_int4_blocks_weights_are_packed(compiled: tuple[CompiledModel, CompiledModel]) -> None:
    mixed, int8 = compiled
    mixed_linears, int8_linears = _linears(mixed), _linears(int8)
    assert mixed_linears.keys() == int8_linears.keys()
    int4_roles = set()
    for name, (bits, p) in mixed_linears.items():
        _, q8 = int8_linears[name]
        assert bits == (4 if name.startswith("blocks.0.") else 8), name
        if bits == 4:
            int4_roles.add(name.split(".", 3)[3])
            assert p.weight_format == qp.WEIGHTS_S4, name
            assert p.weights.shape == (p.out_features, (p.in_features + 1) // 2), name
            assert p.weights.nbytes == q8.weights.nbytes // 2 + (p.out_features if p.in_features % 2 else 0), name
            w = p.int8_weights()
            assert w.min() >= -qp.INT4_QMAX and w.max() <= qp.INT4_QMAX, name
        else:
            assert p.weight_format == qp.WEIGHTS_S8 and p.weights.nbytes == p.out_features * p.in_features, name
    # every linear of block 0: low-rank q/k/v, the output projection, the MLP's fc1 and fc2
    assert int4_roles == {"qkv_down", "q", "k", "v", "proj", "fc1", "fc2"}
    assert mixed_linears["head.classifier"][0] == 8  # the classifier (and the patch embedding, not a linear) int8


def test_predicted_flash_equals_emitted(compiled: tuple[CompiledModel, CompiledModel]) -> None:
    mixed, int8 = compiled
    shapes_only = estimate(MIXED)  # what the search sees: no weights
    assert mixed.lowered.constant_bytes == mixed.cost.weight_bytes == shapes_only.weight_bytes
    saved = sum(
        q8.weights.nbytes - p.weights.nbytes
        for (bits, p), (_, q8) in zip(_linears(mixed).values(), _linears(int8).values(), strict=True)
        if bits == 4
    )
    assert saved > 0 and int8.cost.weight_bytes - mixed.cost.weight_bytes == saved
    assert mixed.cost.flash_bytes == int8.cost.flash_bytes - saved + S4W_CODE_FLASH_BYTES


def test_fused_reference_equals_unfused_and_emitted_format(compiled: tuple[CompiledModel, CompiledModel]) -> None:
    mixed, int8 = compiled
    gen = torch.Generator().manual_seed(2)
    q = mixed.quantize_input(to_hwc((torch.rand(6, 1, 8, 8, generator=gen) * 2 - 1).numpy()))
    fused, unfused = run_batch(mixed.graph, q), run_unfused(mixed.graph, q)
    where = np.argwhere(fused != unfused)
    assert where.size == 0, f"first mismatch at (image, class) {tuple(where[0])}"
    n_int4 = sum(1 for bits, _ in _linears(mixed).values() if bits == 4)
    image = q[:1]
    mixed_c = render_model_files(mixed.graph, mixed.lowered, image, [0])["model/model.c"]
    assert mixed_c.count(".weight_format = 1,") == n_int4 and ".weight_format = 0" not in mixed_c
    int8_c = render_model_files(int8.graph, int8.lowered, int8.quantize_input(to_hwc(np.zeros((1, 1, 8, 8)))), [0])
    assert "weight_format" not in int8_c["model/model.c"]  # the int8 model's C is as before int4


def test_runtime_config_enables_int4_only_for_int4_models(compiled: tuple[CompiledModel, CompiledModel]) -> None:
    mixed, int8 = compiled
    board = get_board("NUCLEO-F412ZG")
    default = (kh.RUNTIME / "include" / "mcuf_config.h").read_text()
    assert "#define MCUF_WITH_S4W" not in default
    assert runtime_sources(board, int8.graph)["runtime/include/mcuf_config.h"] == default
    assert "#define MCUF_WITH_S4W 1" in runtime_sources(board, mixed.graph)["runtime/include/mcuf_config.h"]


def test_instruction_model_charges_int4_macs() -> None:
    model = InstructionModel.load()
    graph = planned_graph(MIXED)
    macs = int4_macs(graph)
    # block 0, 4 tokens: qkv_down 32x8, q/k/v 8x32, proj 32x32, fc1 32x64, fc2 64x32
    assert macs == 4 * (32 * 8 + 3 * 8 * 32 + 32 * 32 + 2 * 32 * 64)
    extra = model.predict(MIXED) - model.predict(INT8)
    assert extra == pytest.approx(INT4_EXTRA_INSTRUCTIONS_PER_MAC * macs)


# ---- C kernels: the weight_format dispatch (host harness, ASan + UBSan) -----------------------


def _int4(p: qp.LinearParams, rng: np.random.Generator) -> qp.LinearParams:
    """p with random int4 weights ([-8, 7]: the kernels' whole range), packed."""
    w = rng.integers(-8, 8, size=(p.out_features, p.in_features)).astype(np.int8)
    return replace(p, weights=w).packed_s4()


def test_linear_entry_points_dispatch_int4(harness: kh.Harness) -> None:
    rng = np.random.default_rng(4)
    cases, expected = [], []
    for n_in, n_out, rows in ((1, 3, 2), (7, 5, 3), (8, 4, 1), (17, 9, 4), (32, 33, 2), (63, 16, 3)):
        p = _int4(random_linear(rng, n_in, n_out), rng)
        x = rng.integers(-128, 128, size=(rows, n_in)).astype(np.int8)
        for rows_api in (False, True):
            cases.append(linear_case(p, x if rows_api else x[:1], rows_api))
            expected.append(ref.linear(p, x if rows_api else x[:1]))
        up = _int4(random_linear(rng, 5, n_out), rng)
        down = _int4(random_linear(rng, n_in, 5, bias=False), rng)
        low = qp.lowrank_params(up, down)
        cases.append(lowrank_case(low, x))
        expected.append(ref.lowrank_linear(low, x))
    results = harness.run(cases)
    for i, (res, want) in enumerate(zip(results, expected, strict=True)):
        assert res.status == OK, f"case {i}: status {res.status}"
        assert_same(res.outputs[0], want, f"case {i}")


def test_attention_and_mlp_dispatch_int4_every_tile(harness: kh.Harness) -> None:
    """Row-wise attention (token tiles 1, 2, 4), the per-head schedule (head views of packed rows)
    and the MLP (tiles, low-rank factors), with every linear int4 or only some."""
    rng = np.random.default_rng(5)
    cases, checks = [], []
    for tokens, dim, heads, rank in ((5, 12, 3, 0), (6, 10, 2, 3), (4, 16, 4, 7)):
        for which in ("all", "some"):
            p = random_attention(rng, tokens, dim, heads, rank)
            names = ("q", "k", "v", "proj", "qkv_down") if which == "all" else ("k", "proj")
            p = replace(p, **{n: _int4(getattr(p, n), rng) for n in names if getattr(p, n).out_features})
            x = rng.integers(-128, 128, size=(tokens, dim)).astype(np.int8)
            want = ref.attention_rowwise(p, x)
            for tile in (1, 2, 4):
                cases.append(attention_case(replace(p, tile=tile), x))
                checks.append((f"attention T{tokens} E{dim} H{heads} R{rank} {which} tile {tile}", want))
            cases.append(perhead_case(p, x))
            checks.append((f"per-head attention T{tokens} E{dim} H{heads} R{rank} {which}", want))
    for tokens, dim, hidden, rank in ((5, 12, 23, 0), (3, 9, 17, 5)):
        p, x = float_mlp(rng, tokens, dim, hidden, rank)
        fc1 = replace(p.fc1, up=_int4(p.fc1.up, rng))
        if rank:
            fc1 = replace(fc1, down=_int4(p.fc1.down, rng))
        p = replace(p, fc1=fc1, fc2=replace(p.fc2, up=_int4(p.fc2.up, rng)))  # fc2's down (if any) int8
        want = ref.mlp_rowwise(p, x)
        for tile in (1, 2, 4):
            cases.append(mlp_case(replace(p, tile=tile), x))
            checks.append((f"mlp T{tokens} E{dim} M{hidden} R{rank} tile {tile}", want))
    results = harness.run(cases)
    for res, (what, want) in zip(results, checks, strict=True):
        assert res.status == OK, f"{what}: status {res.status}"
        assert_same(res.outputs[0], want, what)


def test_int4_weights_need_the_int4_runtime(tmp_path: Path) -> None:
    """Without MCUF_WITH_S4W (an int8 model's runtime), weight_format MCUF_WEIGHTS_S4 is an argument
    error, and an unknown format always is."""
    cc = kh.host_cc()
    if cc is None:
        pytest.skip("no host C compiler")
    main = tmp_path / "main.c"
    main.write_text(
        '#include <stdio.h>\n#include "mcuf.h"\n'
        "int main(void) {\n"
        "    static const int8_t w[2] = {0x21, 0x43};\n"
        "    static const int32_t m[1] = {1 << 30}, s[1] = {0};\n"
        "    int8_t in[4] = {1, 2, 3, 4}, out[1];\n"
        "    mcuf_linear_params p = {.in_features = 4, .out_features = 1, .act_min = -128, .act_max = 127,\n"
        "                            .weights = w, .multiplier = m, .shift = s, .weight_format = MCUF_WEIGHTS_S4};\n"
        "    const int a = mcuf_linear_s8(&p, in, out);\n"
        "    p.weight_format = 2;\n"
        '    printf("%d %d\\n", a, mcuf_linear_s8(&p, in, out));\n'
        "    return 0;\n}\n"
    )
    sources = [str(s) for s in sorted((kh.RUNTIME / "src").glob("*.c"))]
    for define, first in (([], ERR_ARG), (["-DMCUF_WITH_S4W"], OK)):
        exe = tmp_path / f"t{len(define)}"
        cmd = [cc, "-std=c99", "-O1", *define, f"-I{kh.RUNTIME / 'include'}", *sources, str(main), "-o", str(exe)]
        subprocess.run(cmd, check=True, capture_output=True)
        out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
        assert out == [str(first), str(ERR_ARG)], (define, out)


# ---- exported projects: host and QEMU ------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_run(tmp_path_factory.mktemp("int4"), MIXED)


def _symbols(elf: Path) -> str:
    return subprocess.run(["arm-none-eabi-nm", str(elf)], check=True, capture_output=True, text=True).stdout


def test_host_project_bit_exact(mixed_run: Path) -> None:
    project = mixed_run.parent / "proj-host"
    report = run_export(mixed_run, "host", project, force=False, log=_quiet, measure=False)
    assert report["weight_precision"] == [4, 8] and report["arch"]["weight_bits"] == [4, 8]
    result = run_emulate(project, host=True, sanitize=True, log=None)
    assert result["bit_exact"] and result["mismatches"] == [], result["mismatches"][:3]


@needs_arm
@pytest.mark.parametrize(
    "board, kernels",
    [
        ("NUCLEO-F412ZG", ("optimized", "portable")),  # Cortex-M4: DSP and portable kernels
        ("STM32F746G-DISCO", ("optimized",)),  # Cortex-M7
        ("Alif-Ensemble-E7-HP", ("optimized", "dsp")),  # Cortex-M55: Helium (+ DSP int4 rows) and DSP
    ],
)
def test_qemu_bit_exact(mixed_run: Path, board: str, kernels: tuple[str, ...]) -> None:
    project = mixed_run.parent / f"proj-{board}"
    report = run_export(mixed_run, board, project, force=False, log=_quiet, measure=False)
    assert report["weight_precision"] == [4, 8]
    # the int4 block runs token tiles: the tiled entry points' int4 path (row by row) is covered
    assert all(op["tile"] > 1 for op in report["ops"] if op["name"].startswith("blocks.0.")), report["ops"]
    for variant in kernels:
        result = run_emulate(project, host=False, sanitize=False, log=None, kernels=variant)
        assert result["bit_exact"] and result["mismatches"] == [], (variant, result["mismatches"][:3])
        elf = next(project.glob(f"build/{variant}/qemu.elf"))
        assert "mcufi_linear_s4w_row" in _symbols(elf), variant  # the int4 kernel is linked and used
        if board != "Alif-Ensemble-E7-HP":  # the M55's Helium code is larger than CODE_FLASH_BYTES says
            assert result["flash_bytes"] <= report["flash_bytes"], variant


@needs_arm
def test_int8_project_links_no_int4_code(tmp_path: Path) -> None:
    run = make_random_run(tmp_path, INT8)
    project = tmp_path / "proj"
    report = run_export(run, "NUCLEO-F412ZG", project, force=False, log=_quiet, measure=False)
    assert report["weight_precision"] == [8, 8]
    result = run_emulate(project, host=False, sanitize=False, log=None)
    assert result["bit_exact"] and result["flash_bytes"] <= report["flash_bytes"]
    assert "weight_format" not in (project / "model/model.c").read_text()
    assert "#define MCUF_WITH_S4W" not in (project / "runtime/include/mcuf_config.h").read_text()
    symbols = _symbols(project / "build" / result["kernels"] / "qemu.elf")
    assert "mcufi_linear_s4w_row" not in symbols and "mcufi_linear_row" in symbols

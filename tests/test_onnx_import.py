"""Bring your own ViT: ONNX import of timm / torchvision / DeiT structures (tests/vit_zoo.py), with both
torch exporters, checked against onnxruntime (float), the float model (int8 top-1) and QEMU (bit-exact).

timm and torchvision themselves cannot be imported on this machine (see tests/vit_zoo.py); the zoo
reproduces their module structure. The full matrix (every model x exporter x core) is in
benchmarks/imported.py; here each model runs once per exporter and once in QEMU.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mcuformer.codegen.compile import compile_graph, to_hwc
from mcuformer.codegen.onnx_import import float_logits, import_onnx
from mcuformer.errors import UserError
from tests import vit_zoo as zoo

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency (pip install .[dev])")

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
HAVE_DYNAMO = True
try:
    import onnxscript  # noqa: F401
except ImportError:
    HAVE_DYNAMO = False
REPO = Path(__file__).resolve().parents[1]

# name -> (module factory, prefix tokens, pooling, GELU form, heads)
MODELS = {
    "timm_cls": (lambda: zoo.TimmViT(), 1, "token", "none", 4),
    "timm_avg_fcnorm_layerscale": (
        lambda: zoo.Normalized(
            zoo.TimmViT(global_pool="avg", class_token=False, init_values=0.1, approximate="tanh", qkv_bias=False),
            mean=(0.5, 0.4, 0.3),
            std=(0.25, 0.5, 2.0),
        ),
        0,
        "pool_norm",
        "tanh",
        4,
    ),
    "deit_distilled": (lambda: zoo.deit_distilled(embed_dim=96, num_heads=3), 2, "token", "none", 3),
    "torchvision": (lambda: zoo.TorchvisionViT(num_heads=2, mlp_dim=192), 1, "token", "none", 2),
    "own_reshape_linear_separate_qkv": (lambda: zoo.OwnViT(), 1, "token", "none", 4),
}
EXPORTERS = {"legacy": (False, 14), "dynamo": (True, 18)}  # opset 14: decomposed LayerNorm and GELU


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("onnx")
    files = {}
    for k, (name, (factory, *_)) in enumerate(MODELS.items()):
        torch.manual_seed(k)
        model = factory().eval()
        for exporter, (dynamo, opset) in EXPORTERS.items():
            if dynamo and not HAVE_DYNAMO:
                continue
            path = root / f"{name}_{exporter}.onnx"
            zoo.export_onnx(model, str(path), dynamo, opset)
            files[(name, exporter)] = path
    return files


def _images(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 3, 32, 32)).astype(np.float32)


def _onnxruntime(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: image[None]})[0] for image in images])


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", MODELS)
def test_import_matches_onnxruntime(onnx_files, name: str, exporter: str) -> None:
    if (name, exporter) not in onnx_files:
        pytest.skip("the dynamo exporter needs onnxscript")
    _, prefix, pooling, gelu, heads = MODELS[name]
    graph = import_onnx(onnx_files[(name, exporter)])
    arch = graph.arch
    assert (arch.prefix_tokens, arch.pooling, arch.mlp_gelu, arch.num_heads) == (prefix, pooling, gelu, (heads,) * 2)
    images = _images(1, 4)
    diff = np.abs(float_logits(graph, images) - _onnxruntime(onnx_files[(name, exporter)], images)).max()
    print(f"{name} {exporter}: max |imported float IR - onnxruntime| = {diff:.3g}")
    assert diff < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_int8_reference_tracks_float(onnx_files, name: str) -> None:
    """Integer reference vs the float model (random weights, random images): top-1 agreement; the
    row-wise (C-shaped) and op-by-op integer paths agree exactly."""
    graph = import_onnx(onnx_files[(name, "legacy")])
    compiled = compile_graph(graph, _images(2, 32))
    images = _images(3, 32)
    q = compiled.quantize_input(to_hwc(images))
    int_logits = compiled.evaluate_int8(q)
    agreement = float((int_logits.argmax(1) == float_logits(graph, images).argmax(1)).mean())
    print(f"{name}: int8 vs float top-1 agreement {agreement:.3f}")
    assert agreement >= 0.8
    assert np.array_equal(compiled.run_int8(q[:2]), int_logits[:2])


QEMU_CASES = [  # each head / prefix kind once, on an M4 or an M7 board (the full matrix: benchmarks/imported.py)
    ("timm_cls", "dynamo", "NUCLEO-F412ZG"),
    ("timm_avg_fcnorm_layerscale", "legacy", "STM32F746G-DISCO"),
    ("deit_distilled", "legacy", "STM32F746G-DISCO"),
]


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc or qemu-system-arm not installed")
@pytest.mark.parametrize(("name", "exporter", "board"), QEMU_CASES)
def test_qemu_bit_exact(onnx_files, tmp_path: Path, name: str, exporter: str, board: str) -> None:
    from mcuformer.emulate import emulate

    if (name, exporter) not in onnx_files:
        pytest.skip("the dynamo exporter needs onnxscript")
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(4)
    np.savez(data, x=rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8), y=np.arange(48) % 10)
    out = tmp_path / "proj"
    cmd = [sys.executable, "-m", "mcuformer", "export", str(onnx_files[(name, exporter)]), "--board", board]
    proc = subprocess.run(cmd + ["--data", str(data), "--out", str(out), "--no-measure"], capture_output=True,
                          text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = emulate(out, host=False, sanitize=False)
    assert result["bit_exact"], result["mismatches"]
    assert result["inputs"] == 4 and result["instructions_per_inference"] > 0


def test_unsupported_models_fail_in_one_line(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((8, 32, 32, 3), np.uint8), y=np.arange(8) % 2)
    for model, expected in ((zoo.SmallCNN(), "(Conv)"), (zoo.relpos_vit(), "relative position bias")):
        path = tmp_path / f"{type(model).__name__}.onnx"
        zoo.export_onnx(model, str(path), False, 17)
        with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            import_onnx(path)
        out = tmp_path / "proj"
        cmd = [sys.executable, "-m", "mcuformer", "export", str(path), "--board", "NUCLEO-F412ZG"]
        proc = subprocess.run(cmd + ["--data", str(data), "--out", str(out)], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 2
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr and "supported:" in errors[0]
        assert not out.exists()


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_non_square_input_fails_in_one_line(tmp_path: Path, exporter: str) -> None:
    """H != W (a 7 x 8 patch grid) is refused before any work, naming what is supported."""
    if exporter == "dynamo" and not HAVE_DYNAMO:
        pytest.skip("the dynamo exporter needs onnxscript")
    torch.manual_seed(0)
    model = zoo.TimmViT(img_size=(28, 32), in_chans=1, embed_dim=32, depth=1, num_heads=2)
    path = tmp_path / "wide.onnx"
    zoo.export_onnx(model, str(path), exporter == "dynamo", 18 if exporter == "dynamo" else 17, (28, 32), 1)
    with pytest.raises(UserError, match=r"input 28x32 \(H x W\) is not square; supported: square images"):
        import_onnx(path)
    out = tmp_path / "proj"
    cmd = [sys.executable, "-m", "mcuformer", "export", str(path), "--board", "NUCLEO-F412ZG", "--data", "mnist"]
    proc = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, cwd=REPO)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "not square" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_export_input_errors_and_does_not_fit(onnx_files, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = onnx_files[("deit_distilled", "legacy")]
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((20, 32, 32, 3), np.uint8), y=np.arange(20) % 10)
    from mcuformer.cli import main

    base = ["export", str(path), "--board", "NUCLEO-F412ZG", "--out"]
    for extra, code, message in (
        ([], 2, "needs --data"),
        (["--data", str(data), "--std", "0"], 2, "--std must be positive"),
        (["--data", str(data), "--sram", "8KiB"], 1, "does not fit"),
    ):
        out = tmp_path / "proj"
        assert main(base + [str(out), *extra]) == code
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0]
        assert not out.exists()


def test_python_api_compiles_a_module(tmp_path: Path) -> None:
    """The README example: mcuformer.compile(torch.nn.Module, ...) -> Project, run natively bit-exact."""
    import mcuformer

    torch.manual_seed(5)
    model = zoo.TimmViT(img_size=16, in_chans=1, embed_dim=32, num_classes=4, init_values=0.5)
    images = _images(6, 16)[:, :1, :16, :16]
    project = mcuformer.compile(model, board="host", calibration=images, labels=np.arange(16) % 4, out=tmp_path / "p")
    assert project.report["arch"]["prefix_tokens"] == 1 and project.report["import"]["onnx_max_abs_diff"] < 1e-4
    errors = project.report["op_error_lsb"]  # each integer op vs the float op on the same inputs
    assert {"patch_embed", "head.readout", "blocks.0.mlp.gelu"} <= set(errors)
    assert max(e["max_lsb"] for e in errors.values()) <= 1.5, errors
    assert (project.path / "model.onnx").is_file()
    if shutil.which("cc") and shutil.which("make"):
        assert project.emulate(host=True)["bit_exact"]


def test_dynamic_batch_axis_is_fixed_to_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also: without onnxruntime the import check runs on ONNX's reference evaluator."""
    torch.manual_seed(7)
    model = zoo.Normalized(zoo.TimmViT(depth=1), mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4)).eval()
    path = tmp_path / "dynamic.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})  # fmt: skip
    images = _images(8, 2)
    expected = _onnxruntime(path, images)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    graph = import_onnx(path)
    assert graph.import_check_max_abs_diff < 1e-4
    assert np.abs(float_logits(graph, images) - expected).max() < 1e-4

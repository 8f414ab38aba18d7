"""``export --format lib``: the static library builds with CMake for the host and for a Cortex-M4
with the requested float ABI; its example feeds camera rows and is bit-exact on the host; the
public header is self-contained and matches the library's definitions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcuformer.arch import ArchConfig
from mcuformer.emulate import check_library
from tests.builders import make_random_run

HAVE_CMAKE = shutil.which("cmake") is not None and shutil.which("cc") is not None
HAVE_ARM_GCC = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("arm-none-eabi-readelf") is not None
needs_cmake = pytest.mark.skipif(not HAVE_CMAKE, reason="cmake or a host C compiler not installed")
ARCH = ArchConfig(16, 1, 4, 32, 2, (2, 2), (1.0, 2.0), (0, 8), (0, 8), 10)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcuformer", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("lib")
    run = make_random_run(root, ARCH)
    out = root / "lib"
    proc = cli("export", str(run), "--board", "STM32F405", "--out", str(out), "--format", "lib", "--float-abi", "hard")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "report.json").read_text())


@needs_cmake
def test_export_lib_checks_its_example_on_the_host(library: tuple[Path, dict]) -> None:
    out, report = library
    assert report["format"] == "lib" and report["float_abi"] == "hard"
    assert report["measured"]["target"] == "host (cmake)", report["measured"]
    assert report["measured"]["bit_exact"] and report["measured"]["inputs"] == len(report["expected_outputs"])
    for rel in ("include/mcuformer_model.h", "CMakeLists.txt", "cmake/arm-none-eabi.cmake", "example/main.c"):
        assert (out / rel).is_file(), rel
    assert not (out / "build").exists() and not (out / "src" / "model" / "test_inputs.c").exists()
    model_c = (out / "src" / "model" / "model.c").read_text()
    assert "float" not in model_c and "double" not in model_c


@needs_cmake
def test_library_example_mismatch_is_reported(library: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = library
    copy = tmp_path / "lib"
    shutil.copytree(out, copy)
    result = check_library(copy)
    assert result["bit_exact"] and result["mismatches"] == []
    report = json.loads((copy / "report.json").read_text())
    report["expected_outputs"][0][2] += 1 if report["expected_outputs"][0][2] < 127 else -1
    (copy / "report.json").write_text(json.dumps(report))
    result = check_library(copy)
    assert not result["bit_exact"]
    assert [(m["input"], m["index"]) for m in result["mismatches"]] == [(0, 2)]


@needs_cmake
def test_public_header_is_self_contained(library: tuple[Path, dict], tmp_path: Path) -> None:
    out, report = library
    app = tmp_path / "app.c"
    app.write_text(
        '#include "mcuformer_model.h"\n'
        "typedef char arena_size_ok[sizeof mcuf_model_arena == MCUF_MODEL_ARENA_BYTES ? 1 : -1];\n"
        "int main(void) { return MCUF_OK + (int)sizeof(mcuf_stripe_reader) * 0; }\n"
    )
    proc = subprocess.run(
        ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", f"-I{out / 'include'}", str(app)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    header = (out / "include" / "mcuformer_model.h").read_text()
    assert f"#define MCUF_MODEL_ARENA_BYTES {report['arena_bytes']}\n" in header
    assert f"#define MCUF_MODEL_FLASH_BYTES {report['flash_bytes']}\n" in header


def _arm_build(out: Path, build: str, float_abi: str) -> Path:
    for cmd in (
        [
            "cmake",
            "-S",
            ".",
            "-B",
            build,
            "-DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake",
            f"-DMCUF_FLOAT_ABI={float_abi}",
        ],
        ["cmake", "--build", build, "-j2"],
    ):
        proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / build / "libmcuformer_model.a"


@needs_cmake
@pytest.mark.skipif(not HAVE_ARM_GCC, reason="arm-none-eabi-gcc not installed")
def test_library_builds_for_cortex_m4_with_each_float_abi(library: tuple[Path, dict], tmp_path: Path) -> None:
    out, report = library
    copy = tmp_path / "lib"
    shutil.copytree(out, copy)
    attributes = {}
    for abi in ("hard", "soft"):
        archive = _arm_build(copy, f"build/arm-{abi}", abi)
        attributes[abi] = subprocess.run(
            ["arm-none-eabi-readelf", "-A", str(archive)], capture_output=True, text=True, check=True
        ).stdout
        assert 'Tag_CPU_name: "7E-M"' in attributes[abi]  # -mcpu=cortex-m4 (the DSP kernels need it)
    assert "Tag_ABI_VFP_args: VFP registers" in attributes["hard"]
    assert "Tag_ABI_VFP_args" not in attributes["soft"] and "Tag_FP_arch" not in attributes["soft"]
    # the arena is one symbol in its own section, with the planned size
    headers = subprocess.run(
        ["arm-none-eabi-objdump", "-h", str(copy / "build" / "arm-hard" / "libmcuformer_model.a")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"\.bss\.mcuf_model_arena\s+([0-9a-f]+)", headers)
    assert match and int(match.group(1), 16) == report["arena_bytes"]
    # the optimized (DSP) kernels are the M4 default
    cache = (copy / "build" / "arm-hard" / "CMakeCache.txt").read_text()
    assert "MCUF_KERNELS:STRING=optimized" in cache


def test_float_abi_errors(tmp_path: Path) -> None:
    run = tmp_path / "missing-run"
    proc = cli("export", str(run), "--board", "STM32F405", "--out", str(tmp_path / "o"), "--float-abi", "hard")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --float-abi applies to --format lib only"
    proc = cli(
        "export",
        str(run),
        "--board",
        "RPI-PICO",
        "--out",
        str(tmp_path / "o"),
        "--format",
        "lib",
        "--float-abi",
        "hard",
    )
    assert proc.returncode == 2 and "has no FPU: use --float-abi soft" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()

"""Board files + emulation: a fake generated model (tests/fixtures/fake_model) built for Cortex-M4
and Cortex-M7 and run in QEMU, natively under ASan/UBSan, and linked past the board's memory."""

from __future__ import annotations

import json
import re
import shutil
import struct
from importlib import resources
from pathlib import Path

import pytest

from mcuformer.boards import get_board
from mcuformer.codegen.board_files import render_board_files
from mcuformer.emulate import (
    Mismatch,
    build,
    compare,
    elf_sections,
    emulate,
    emulate_firmware,
    format_report,
    run,
    run_firmware,
)
from mcuformer.errors import UserError

FIXTURE = Path(__file__).parent / "fixtures" / "fake_model"
IMAGE_BYTES = 16 * 16 * 3  # model.h: IMAGE_H x IMAGE_W x CHANNELS
NUM_CLASSES = 10
NUM_INPUTS = 3
STACK_BYTES = 2048

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
HAVE_HOST = shutil.which("cc") is not None and shutil.which("make") is not None
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc or qemu-system-arm not installed")
needs_host = pytest.mark.skipif(not HAVE_HOST, reason="no host C compiler (cc) or make")

# fixtures/fake_model/fake_config.h, lower-case without FAKE_
FAKE_KNOBS = {"extra_bss_bytes": 0, "extra_rodata_bytes": 0, "spin_iterations": 0, "return_status": 0, "bus_fault": 0}

BOARDS = [("NUCLEO-F412ZG", "qemu:mps2-an386"), ("STM32F746G-DISCO", "qemu:mps2-an500")]


def fake_test_images() -> list[list[int]]:
    state, images = 1, []
    for _ in range(NUM_INPUTS):
        image = []
        for _ in range(IMAGE_BYTES):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            image.append(((state >> 16) & 0xFF) - 128)
        images.append(image)
    return images


def fake_logits(image: list[int]) -> list[int]:
    """The fake model of fixtures/fake_model/model.c, in Python."""
    logits = []
    for c in range(NUM_CLASSES):
        acc = 100 * c - 450 + sum(x * ((c * 31 + i * 7) % 17 - 8) for i, x in enumerate(image))
        logits.append(max(-128, min(127, (acc + 64) >> 7)))
    return logits


def make_project(root: Path, board_name: str, **config: int) -> Path:
    """A project in the exporter's layout: model/, runtime/include/mcuf.h, board files, report.json.
    config: FAKE_* knobs of fixtures/fake_model/fake_config.h (lower-case, without FAKE_)."""
    assert set(config) <= set(FAKE_KNOBS), config
    board = get_board(board_name)
    project = root / f"proj-{board.name}-{'-'.join(f'{k}{v}' for k, v in sorted(config.items()))}"
    model = project / "model"
    model.mkdir(parents=True)
    for name in ("model.h", "model.c"):
        shutil.copy(FIXTURE / name, model / name)
    knobs = {**FAKE_KNOBS, **config}
    (model / "fake_config.h").write_text("".join(f"#define FAKE_{k.upper()} ({v})\n" for k, v in knobs.items()))
    images = fake_test_images()
    rows = ",\n".join("    {" + ", ".join(map(str, image)) + "}" for image in images)
    (model / "test_inputs.c").write_text(
        '#include "model.h"\n\nconst int8_t mcuf_model_test_inputs[MCUF_MODEL_NUM_TEST_INPUTS]\n'
        "    [MCUF_MODEL_IMAGE_H * MCUF_MODEL_IMAGE_W * MCUF_MODEL_CHANNELS] = {\n" + rows + "\n};\n"
    )
    (project / "runtime" / "include").mkdir(parents=True)
    mcuf_h = resources.files("mcuformer.runtime_c").joinpath("include", "mcuf.h").read_text()
    (project / "runtime" / "include" / "mcuf.h").write_text(mcuf_h)
    for path, text in render_board_files(board, ["model/model.c", "model/test_inputs.c"], STACK_BYTES).items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    report = {"board": board.name, "expected_outputs": [fake_logits(image) for image in images]}
    (project / "report.json").write_text(json.dumps(report))
    return project


# ------------------------------------------------------------------------------------ pure functions
def test_render_board_files_arm_and_host() -> None:
    board = get_board("NUCLEO-F412ZG")
    files = render_board_files(board, ["model/model.c"], 4096)
    assert {"Makefile", "Makefile.host", "linker/board.ld", "linker/qemu.ld", "main.c"} <= set(files)
    assert {"platform/platform.h", "platform/platform_semihost.c", "platform/startup_cortexm.c"} <= set(files)
    assert "ORIGIN = 0x08000000, LENGTH = 1048576" in files["linker/board.ld"]
    assert "ORIGIN = 0x20000000, LENGTH = 262144" in files["linker/board.ld"]
    assert "ORIGIN = 0x00000000, LENGTH = 1048576" in files["linker/qemu.ld"]  # emulator origin, board size
    assert "MCUF_STACK_BYTES = 4096;" in files["linker/qemu.ld"]
    assert "-mcpu=cortex-m4" in files["Makefile"] and "platform/startup_cortexm.c" in files["Makefile"]
    assert "platform/platform_host.c" in files["Makefile.host"] and "startup" not in files["Makefile.host"]

    host_files = render_board_files(get_board("host"), ["model/model.c"], 4096)
    assert "Makefile" not in host_files and "linker/qemu.ld" not in host_files
    assert {"Makefile.host", "main.c", "platform/platform_host.c"} <= set(host_files)
    with pytest.raises(ValueError):
        render_board_files(board, ["model/model.c"], 1001)


def test_compare_lists_every_difference() -> None:
    assert compare([[1, 2], [3]], [[1, 2], [3]]) == []
    assert compare([[1, 2], [3]], [[1, 5]]) == [Mismatch(0, 1, 2, 5), Mismatch(1, 0, 3, None)]


def test_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"is not an mcuformer project \(no report.json\).*mcuformer export"):
        emulate(tmp_path)
    with pytest.raises(UserError, match="is not an mcuformer project"):
        emulate(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------- QEMU
@pytest.fixture(scope="module")
def arm_projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("arm")
    return {name: make_project(root, name) for name, _ in BOARDS}


@needs_arm
@pytest.mark.parametrize(("board_name", "target"), BOARDS)
def test_qemu_bit_exact_and_deterministic(arm_projects: dict[str, Path], board_name: str, target: str) -> None:
    project = arm_projects[board_name]
    result = emulate(project)
    assert result["target"] == target and result["board"] == board_name
    assert result["bit_exact"], format_report(result)
    assert result["inputs"] == NUM_INPUTS and result["mismatches"] == []
    counts = result["instructions_per_input"]
    assert len(counts) == NUM_INPUTS and all(c > 0 and c % 40 == 0 for c in counts)
    assert run(project).instructions == counts  # -icount: the same on every run
    assert 0 < result["stack_bytes"] < result["stack_reserved_bytes"] == STACK_BYTES
    # the stripe buffer (192 B) and accumulators are statics; test inputs and code are flash
    assert 192 + 4 * NUM_CLASSES <= result["static_sram_bytes"] < 1024
    assert NUM_INPUTS * IMAGE_BYTES < result["flash_bytes"] < 32 * 1024
    assert result["measured_peak_sram_bytes"] == result["static_sram_bytes"] + result["stack_bytes"]
    text = format_report(result)
    assert "PASS" in text and "instructions (QEMU -icount), not cycles" in text


@needs_arm
def test_qemu_counts_instructions_exactly(tmp_path: Path) -> None:
    """A 2-instruction loop run N times adds 2N instructions (to the 40-instruction resolution)."""
    spin = 50_000
    base = make_project(tmp_path, "NUCLEO-F412ZG")
    spun = make_project(tmp_path, "NUCLEO-F412ZG", spin_iterations=spin)
    counts = []
    for project in (base, spun):
        build(project)
        counts.append(run(project).instructions)
    for before, after in zip(*counts, strict=True):
        assert abs(after - before - 2 * spin) <= 40


@needs_arm
def test_qemu_model_error_is_reported(tmp_path: Path) -> None:
    project = make_project(tmp_path, "NUCLEO-F412ZG", return_status=-2)
    with pytest.raises(UserError, match="model returned MCUF_ERR_INPUT on test input 0 in QEMU"):
        emulate(project)


@needs_arm
def test_qemu_fault_is_reported(tmp_path: Path) -> None:
    project = make_project(tmp_path, "NUCLEO-F412ZG", bus_fault=1)
    with pytest.raises(UserError, match=r"CPU fault in QEMU: FAULT BusFault pc=0x[0-9a-f]{8} .* addr=0x70000000"):
        emulate(project)


@needs_arm
def test_qemu_hang_times_out(tmp_path: Path) -> None:
    project = make_project(tmp_path, "NUCLEO-F412ZG", spin_iterations=0xFFFFFFFF)  # ~8.6e9 instructions
    build(project)
    with pytest.raises(UserError, match=r"QEMU did not finish within 1 s"):
        run(project, timeout_s=1)


@needs_arm
def test_ram_overflow_fails_at_link_time(tmp_path: Path) -> None:
    project = make_project(tmp_path, "NUCLEO-F412ZG", extra_bss_bytes=300 * 1024)
    with pytest.raises(UserError) as info:
        build(project)
    message = str(info.value)
    match = re.fullmatch(
        r"model does not fit NUCLEO-F412ZG: RAM overflowed by (\d+) bytes \(arena/statics/stack exceed 256 KiB\)",
        message,
    )
    assert match, message
    # 300 KiB of extra arena + the stripe buffer + statics (< 1 KiB) + the stack, less 256 KiB
    excess = 300 * 1024 + 192 + STACK_BYTES - 256 * 1024
    assert excess <= int(match.group(1)) < excess + 1024


@needs_arm
def test_flash_overflow_fails_at_link_time(tmp_path: Path) -> None:
    project = make_project(tmp_path, "NUCLEO-F412ZG", extra_rodata_bytes=1100 * 1024)
    with pytest.raises(UserError, match=r"^model does not fit NUCLEO-F412ZG: FLASH overflowed by \d+ bytes .*1 MiB\)$"):
        build(project)


# ---------------------------------------------------------------------------------------------- host
@needs_host
def test_host_sanitized_bit_exact(tmp_path: Path) -> None:
    project = make_project(tmp_path, "NUCLEO-F412ZG")
    result = emulate(project, host=True, sanitize=True)
    assert result["target"] == "host" and result["sanitized"]
    assert result["bit_exact"], format_report(result)
    assert result["instructions_per_inference"] is None and result["stack_bytes"] is None
    assert "PASS" in format_report(result)


# ------------------------------------------------------------------------------------------ firmware
@needs_arm
def test_firmware_boots_from_flash_and_prints_over_usart(tmp_path: Path) -> None:
    """The STM32F405 image linked at 0x08000000/0x20000000 boots in netduinoplus2, copies .data
    (the fake model's biases), prints over USART1 and ends with EXIT 0 and a reset request."""
    project = make_project(tmp_path, "STM32F405")
    result = emulate_firmware(project)
    assert result["target"] == "qemu:netduinoplus2" and result["firmware"]
    assert result["bit_exact"], format_report(result)
    assert result["inputs"] == NUM_INPUTS and result["instructions_per_inference"] is None
    assert 0 < result["stack_bytes"] < result["stack_reserved_bytes"] == STACK_BYTES
    assert {"build/portable/board.elf", "build/portable/board.bin", "build/portable/board.hex"} <= set(result["images"])
    elf = project / "build" / "portable" / "board.elf"
    sections = {s.name: s for s in elf_sections(elf)}
    assert sections[".text"].address >= 0x08000000 and sections[".data"].address == 0x20000000
    assert sections[".data"].size >= 4 * NUM_CLASSES  # fake_model_bias lives in .data
    # the .bin is the flash image from 0x08000000: the vector table's reset vector points into it
    image = (project / "build" / "portable" / "board.bin").read_bytes()
    initial_sp, reset = struct.unpack_from("<II", image, 0)
    assert initial_sp == 0x20000000 + 128 * 1024 and 0x08000000 < reset < 0x08000000 + len(image)
    assert (project / "build" / "portable" / "board.hex").read_text().startswith(":02000004080")
    run_output = run_firmware(project).output
    assert "\nEXIT 0\n" in run_output and "\r" not in run_output


@needs_arm
@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"return_status": -2}, "model returned MCUF_ERR_INPUT on test input 0 in the firmware on netduinoplus2"),
        ({"bus_fault": 1}, r"CPU fault in the firmware on netduinoplus2: FAULT BusFault pc=0x0800[0-9a-f]{4} "),
    ],
)
def test_firmware_errors_are_reported(tmp_path: Path, knobs: dict[str, int], message: str) -> None:
    project = make_project(tmp_path, "STM32F405", **knobs)
    with pytest.raises(UserError, match=message):
        emulate_firmware(project)


@needs_arm
def test_firmware_outside_the_emulated_memory_is_refused(tmp_path: Path) -> None:
    """QEMU's STM32F405 has no CCM: an image with a section there is refused before it runs."""
    project = make_project(tmp_path, "STM32F405")
    (project / "model" / "ccm.c").write_text(
        '#include <stdint.h>\n__attribute__((section(".ccm_probe"), used)) const uint32_t ccm_probe = 1;\n'
    )
    makefile = project / "Makefile"
    makefile.write_text(
        makefile.read_text().replace("SOURCES += model/model.c", "SOURCES += model/model.c model/ccm.c")
    )
    script = project / "linker" / "board.ld"
    script.write_text(
        script.read_text().replace(
            "    .rodata :", "    .ccm_probe 0x10000000 : { KEEP(*(.ccm_probe)) }\n\n    .rodata :", 1
        )
    )
    with pytest.raises(
        UserError, match=r"section \.ccm_probe at 0x10000000 \(4 B\) is outside the memory netduinoplus2"
    ):
        emulate_firmware(project)


def test_firmware_needs_a_board_with_an_emulated_microcontroller(tmp_path: Path) -> None:
    project = make_project(tmp_path, "NUCLEO-F412ZG")
    with pytest.raises(UserError, match=r"board NUCLEO-F412ZG has no emulated microcontroller.*STM32F405"):
        emulate_firmware(project)


@needs_arm
def test_uf2_for_the_rp2350_carries_the_flash_image(tmp_path: Path) -> None:
    """`make` builds board.bin/.hex/.uf2 for the Pico 2: the UF2 blocks reassemble to board.bin at
    0x10000000 with the RP2350 family, and the boot ROM's IMAGE_DEF block follows the vector table."""
    project = make_project(tmp_path, "RPI-PICO2")
    out = build(project, firmware=True).parent
    image = (out / "board.bin").read_bytes()
    uf2 = (out / "board.uf2").read_bytes()
    assert len(uf2) == 512 * -(-len(image) // 256)
    rebuilt = bytearray()
    for k in range(len(uf2) // 512):
        block = uf2[512 * k : 512 * (k + 1)]
        magic0, magic1, flags, address, size, number, count, family = struct.unpack_from("<8I", block)
        assert (magic0, magic1, struct.unpack_from("<I", block, 508)[0]) == (0x0A324655, 0x9E5D5157, 0x0AB16F30)
        assert (flags, family, number, count) == (0x2000, 0xE48BFF59, k, len(uf2) // 512)
        assert address == 0x10000000 + 256 * k and size == 256
        rebuilt += block[32 : 32 + size]
    assert bytes(rebuilt[: len(image)]) == image and not any(rebuilt[len(image) :])
    vectors = struct.unpack_from("<16I", image, 0)
    assert vectors[0] == 0x20000000 + 520 * 1024 and 0x10000000 < vectors[1] < 0x10000000 + len(image)
    assert struct.unpack_from("<5I", image, 64) == (0xFFFFDED3, 0x10210142, 0x1FF, 0, 0xAB123579)


@needs_arm
def test_armv6m_board_runs_the_portable_build(tmp_path: Path) -> None:
    """The Raspberry Pi Pico (Cortex-M0+, -mcpu=cortex-m0plus) project runs bit-exact on the Cortex-M3 machine."""
    project = make_project(tmp_path, "RPI-PICO")
    result = emulate(project)
    assert result["target"] == "qemu:mps2-an385" and result["kernels"] == "portable"
    assert result["bit_exact"], format_report(result)
    assert "-mcpu=cortex-m0plus" in (project / "Makefile").read_text()


@needs_arm
def test_firmware_hang_and_missing_status_line_are_reported(tmp_path: Path) -> None:
    hang = make_project(tmp_path, "STM32F405", spin_iterations=0xFFFFFFFF)
    build(hang, firmware=True)
    with pytest.raises(UserError, match=r"the firmware on netduinoplus2 did not finish within 1 s \(no reset request"):
        run_firmware(hang, timeout_s=1)
    # an image whose platform resets without the final EXIT line (its exit does not print it)
    silent = make_project(tmp_path, "STM32F405")
    platform = silent / "platform" / "platform_stm32f4_usart.c"
    text = platform.read_text()
    platform.write_text(
        text.replace(
            '    mcuf_platform_puts("EXIT ");\n    mcuf_platform_put_int((int32_t)code);\n', "    (void)code;\n"
        )
    )
    build(silent, firmware=True)
    with pytest.raises(UserError, match=r"reset without its final status line \(EXIT <code>\); last output: DONE"):
        run_firmware(silent)

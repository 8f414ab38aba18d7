"""Host build of the C kernels + test driver (tests/c/kernel_harness.c), and its binary protocol.

The driver reads a batch of cases from a file and writes one result per case. Parameter structs
are serialised generically from the codegen.qparams dataclasses (``dataclasses.fields`` order,
tagged with ``C_TYPE``); the C side reads them in mcuf.h order, so a dataclass that does not
mirror its struct fails loudly.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "runtime_c"
DRIVER = Path(__file__).resolve().parent / "c" / "kernel_harness.c"
WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]

# Op codes: the enum in kernel_harness.c.
(
    OP_SRDHM,
    OP_RDBPOT,
    OP_REQUANTIZE,
    OP_ISQRT,
    OP_LINEAR,
    OP_LINEAR_ROWS,
    OP_LOWRANK,
    OP_LAYERNORM,
    OP_SOFTMAX,
    OP_LUT,
    OP_ADD,
    OP_SCORES,
    OP_WSUM,
    OP_ATTENTION,
    OP_MLP,
    OP_PATCH_EMBED,
    OP_POOL_HEAD,
) = range(1, 18)
OP_ATTENTION_PERHEAD = 18  # appended to the enum in kernel_harness.c
OP_LINEAR_S4W, OP_LINEAR_ROWS_S4W = 19, 20  # appended after it
OP_PATCH_EMBED_PREFIX, OP_TOKEN_HEAD, OP_POOL_NORM_HEAD = 40, 41, 42  # class_token.c (fixed codes)


def runtime_sources() -> list[Path]:
    return sorted((RUNTIME / "src").glob("*.c"))


def host_cc() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def build(out_dir: Path, cc: str) -> Path:
    """Compile the runtime (with -Werror) and the driver with ASan + UBSan into out_dir."""
    exe = out_dir / "kernel_harness"
    cmd = [cc, *WARNINGS, "-O1", "-g", *SANITIZE, f"-I{RUNTIME / 'include'}"]
    cmd += [str(s) for s in runtime_sources()] + [str(DRIVER), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"harness build failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return exe


def harness_or_skip(tmp_path_factory, name: str) -> Harness:  # tmp_path_factory: pytest.TempPathFactory
    """The harness built in a fresh temporary folder `name`; skips the test without a host C compiler."""
    import pytest

    cc = host_cc()
    if cc is None:
        pytest.skip("no host C compiler (cc/gcc) on PATH")
    work = tmp_path_factory.mktemp(name)
    return Harness(build(work, cc), work)


class Writer:
    """One case: an op code followed by tagged ints, arrays and parameter structs."""

    def __init__(self, op: int) -> None:
        self.buf = bytearray()
        self.int(op)

    def int(self, v: int) -> Writer:
        self.buf += b"I" + struct.pack("<i", int(v))
        return self

    def uint64(self, v: int) -> Writer:
        self.buf += b"Q" + struct.pack("<Q", int(v))
        return self

    def s8(self, a: np.ndarray | None) -> Writer:
        return self._array(None if a is None else np.asarray(a), np.int8, b"b")

    def s32(self, a: np.ndarray | None) -> Writer:
        return self._array(None if a is None else np.asarray(a), np.int32, b"i")

    def u64(self, a: np.ndarray) -> Writer:
        return self._array(np.asarray(a), np.uint64, b"q")

    def _array(self, a: np.ndarray | None, dtype: type, tag: bytes) -> Writer:
        if a is None:
            self.buf += b"N"
            return self
        if a.dtype != np.dtype(dtype):
            raise TypeError(f"expected a {np.dtype(dtype)} array, got {a.dtype}")
        self.buf += tag + struct.pack("<i", a.size) + np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
        return self

    def params(self, obj: object) -> Writer:
        """Any qparams dataclass, walked generically in field order."""
        name = type(obj).C_TYPE.encode()
        self.buf += b"S" + struct.pack("<i", len(name)) + name
        uint64_fields = getattr(type(obj), "UINT64_FIELDS", frozenset())
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_dataclass(value):
                self.params(value)
            elif value is None:
                self.buf += b"N"
            elif isinstance(value, np.ndarray):
                tags = {np.dtype(np.int8): self.s8, np.dtype(np.int32): self.s32}
                if value.dtype not in tags:
                    raise TypeError(f"{type(obj).__name__}.{f.name}: unsupported dtype {value.dtype}")
                tags[value.dtype](value)
            elif f.name in uint64_fields:
                self.uint64(value)
            else:
                self.int(value)
        return self


@dataclass
class Result:
    status: int
    aux: int  # the kernel's scratch size where it has one
    outputs: list[np.ndarray]


_DTYPES = {b"b": np.dtype("<i1"), b"i": np.dtype("<i4"), b"u": np.dtype("<u4")}


class Harness:
    def __init__(self, exe: Path, work: Path) -> None:
        self.exe = exe
        self.work = work
        self.runs = 0

    def run(self, cases: list[Writer]) -> list[Result]:
        self.runs += 1
        inp = self.work / f"in{self.runs}.bin"
        out = self.work / f"out{self.runs}.bin"
        inp.write_bytes(b"".join(bytes(c.buf) for c in cases))
        proc = subprocess.run([str(self.exe), str(inp), str(out)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"kernel_harness failed (rc {proc.returncode}):\n{proc.stderr[-6000:]}")
        data = out.read_bytes()
        results, pos = [], 0
        for _ in cases:
            status, aux, count = struct.unpack_from("<iii", data, pos)
            pos += 12
            arrays = []
            for _ in range(count):
                tag = data[pos : pos + 1]
                (n,) = struct.unpack_from("<i", data, pos + 1)
                dt = _DTYPES[tag]
                arrays.append(np.frombuffer(data, dtype=dt, count=n, offset=pos + 5).copy())
                pos += 5 + n * dt.itemsize
            results.append(Result(status, aux, arrays))
        if pos != len(data):
            raise AssertionError("kernel_harness output has trailing bytes")
        return results

    def run_one(self, case: Writer) -> Result:
        return self.run([case])[0]

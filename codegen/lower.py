"""Lowering: the planned, fused int8 graph -> a flat call list plus the constant data the C needs.

Everything is decided here (kernel names and argument lists from each fused op's definition, arena
offsets, array contents), so the jinja2 templates only loop and fill in. Param dataclasses of
codegen.qparams mirror the C structs field by field, so they are emitted generically: scalars become
literals, numpy arrays become `static const` arrays in flash, nested dataclasses become nested initializers.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen.ir import Graph, IRError, Node, Schedule
from mcuformer.codegen.ops import CallContext, array_bytes, fused

_C_TYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t", np.dtype(np.int16): "int16_t"}
VALUES_PER_LINE = 24


@dataclass(frozen=True)
class CArray:
    symbol: str
    ctype: str
    length: int
    body: str  # comma-separated values, wrapped


@dataclass(frozen=True)
class CStruct:
    symbol: str
    ctype: str
    initializer: str


@dataclass(frozen=True)
class Call:
    kernel: str
    args: tuple[str, ...]
    comment: str


@dataclass(frozen=True)
class LoweredModel:
    arrays: tuple[CArray, ...]
    structs: tuple[CStruct, ...]
    calls: tuple[Call, ...]
    arena_bytes: int
    constant_bytes: int  # sum of the array sizes (flash)
    scratch_arena_bytes: int = 0  # > 0: the fused kernels' row scratch has its own buffer (codegen.regions)


def c_identifier(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def format_values(values: np.ndarray) -> str:
    flat = [str(int(v)) for v in values.reshape(-1)]
    lines = [", ".join(flat[i : i + VALUES_PER_LINE]) for i in range(0, len(flat), VALUES_PER_LINE)]
    return ",\n".join("    " + line for line in lines)


class _StructWriter:
    """Walks a param dataclass, registering its arrays and returning its C initializer."""

    def __init__(self) -> None:
        self.arrays: list[CArray] = []

    def array(self, symbol: str, values: np.ndarray) -> str:
        ctype = _C_TYPES.get(values.dtype)
        if ctype is None:
            raise IRError(f"{symbol}: no C type for dtype {values.dtype}")
        self.arrays.append(CArray(symbol, ctype, int(values.size), format_values(values)))
        return symbol

    def initializer(self, value: object, path: str, indent: int = 1) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, (bool, np.bool_)):
            raise IRError(f"{path}: booleans have no C field type here")
        if isinstance(value, (int, np.integer)):
            return f"UINT64_C({int(value)})" if int(value) > 0x7FFFFFFF else str(int(value))  # uint64_t field
        if isinstance(value, np.ndarray):
            return self.array(path, value)
        if dataclasses.is_dataclass(value):
            pad = "    " * indent
            # a dataclass's OMIT_WHEN_ZERO fields are left out when 0 (the C zero-initializes them)
            omitted = getattr(value, "OMIT_WHEN_ZERO", frozenset())
            fields = [
                f"{pad}.{f.name} = {self.initializer(getattr(value, f.name), f'{path}_{f.name}', indent + 1)},"
                for f in dataclasses.fields(value)
                if not (f.name in omitted and getattr(value, f.name) == 0)
            ]
            return "{\n" + "\n".join(fields) + "\n" + "    " * (indent - 1) + "}"
        raise IRError(f"{path}: cannot emit a value of type {type(value).__name__}")


def _call(node: Node, symbol: str, graph: Graph) -> Call:
    plan = graph.arena_plan()
    split = graph.scratch_split  # the row scratch in its own buffer (codegen.regions)
    if split:
        scratch = f"scratch_arena + {split.scratch.offset_of(f'{node.name}.scratch')}"
    else:
        scratch = f"arena + {plan.offset_of(f'{node.name}.scratch')}"
    definition = fused(node.op)
    if node.variant not in definition.kernels:
        raise IRError(f"{node.name}: {node.op} has no kernel for schedule '{node.variant}'")
    context = CallContext(params=f"&{symbol}", scratch=scratch, arena=lambda t: f"arena + {plan.offset_of(t)}")
    variant = f" ({node.variant})" if node.variant != Schedule.DEFAULT else ""
    return Call(
        definition.kernels[node.variant], definition.call_args(node, context), f"{node.name}: {node.op}{variant}"
    )


def lower(graph: Graph) -> LoweredModel:
    if not graph.quantized or graph.plan is None:
        raise IRError("lower needs a quantized, planned graph")
    writer = _StructWriter()
    structs: list[CStruct] = []
    calls: list[Call] = []
    for node in graph.nodes:
        symbol = c_identifier(node.name)
        kernel = node.kernel
        assert kernel is not None
        structs.append(CStruct(symbol, kernel.C_TYPE, writer.initializer(kernel, symbol)))
        calls.append(_call(node, symbol, graph))
    return LoweredModel(
        arrays=tuple(writer.arrays),
        structs=tuple(structs),
        calls=tuple(calls),
        arena_bytes=graph.arena_plan().arena_bytes,
        constant_bytes=sum(array_bytes(node.kernel) for node in graph.nodes),
        scratch_arena_bytes=graph.scratch_split.scratch.arena_bytes if graph.scratch_split else 0,
    )

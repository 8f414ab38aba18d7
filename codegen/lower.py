"""Lowering: the planned, fused int8 graph -> a flat call list plus the constant data the C needs.

Everything is decided here (kernel names, argument expressions, arena offsets, array contents), so
the jinja2 templates only loop and fill in. Param dataclasses of codegen.qparams mirror the C
structs field by field, so they are emitted generically: scalars become literals, numpy arrays
become `static const` arrays in flash, nested dataclasses become nested initializers.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np
from mcuformer.codegen.ir import Graph, IRError, Node, Op
from mcuformer.codegen.passes.fuse import ALL_HEADS, PER_HEAD, PREFIX_TOKENS

# One kernel per (fused op, schedule). Optimized (DSP) variants keep these names: chosen by file.
KERNEL_OF: dict[tuple[Op, str], str] = {
    (Op.FUSED_PATCH_EMBED, ""): "mcuf_patch_embed_s8",
    (Op.FUSED_PATCH_EMBED, PREFIX_TOKENS): "mcuf_patch_embed_prefix_s8",
    (Op.FUSED_ATTENTION, ALL_HEADS): "mcuf_attention_rowwise_s8",
    (Op.FUSED_ATTENTION, PER_HEAD): "mcuf_attention_perhead_s8",
    (Op.FUSED_MLP, ""): "mcuf_mlp_rowwise_s8",
    (Op.FUSED_POOL_HEAD, ""): "mcuf_pool_head_s8",
    (Op.FUSED_TOKEN_HEAD, ""): "mcuf_token_head_s8",
    (Op.FUSED_POOL_NORM_HEAD, ""): "mcuf_pool_norm_head_s8",
}

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
        self.constant_bytes = 0

    def array(self, symbol: str, values: np.ndarray) -> str:
        ctype = _C_TYPES.get(values.dtype)
        if ctype is None:
            raise IRError(f"{symbol}: no C type for dtype {values.dtype}")
        self.arrays.append(CArray(symbol, ctype, int(values.size), format_values(values)))
        self.constant_bytes += int(values.nbytes)
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
            fields = [
                f"{pad}.{f.name} = {self.initializer(getattr(value, f.name), f'{path}_{f.name}', indent + 1)},"
                for f in dataclasses.fields(value)
            ]
            return "{\n" + "\n".join(fields) + "\n" + "    " * (indent - 1) + "}"
        raise IRError(f"{path}: cannot emit a value of type {type(value).__name__}")


def _arena(offset: int) -> str:
    return f"arena + {offset}"


def _call(node: Node, symbol: str, graph: Graph) -> Call:
    split = graph.meta.get("scratch_split")  # codegen.regions.ScratchSplit: scratch in its own buffer
    plan = split.arena if split else graph.meta["plan"]
    if split:
        scratch = f"scratch_arena + {split.scratch.offset_of(f'{node.name}.scratch')}"
    else:
        scratch = _arena(plan.offset_of(f"{node.name}.scratch"))
    if node.op == Op.FUSED_PATCH_EMBED:
        args = (f"&{symbol}", "read", "ctx", scratch, _arena(plan.offset_of(node.outputs[0])))
    elif node.op == Op.FUSED_ATTENTION:  # workspace: (K, V) or (K_h, V_h, head outputs)
        x = _arena(plan.offset_of(node.inputs[0]))
        args = (f"&{symbol}", x, *(_arena(plan.offset_of(t)) for t in node.workspace), scratch)
    elif node.op == Op.FUSED_MLP:
        args = (f"&{symbol}", _arena(plan.offset_of(node.inputs[0])), scratch)
    elif node.op in (Op.FUSED_POOL_HEAD, Op.FUSED_TOKEN_HEAD, Op.FUSED_POOL_NORM_HEAD):
        args = (f"&{symbol}", _arena(plan.offset_of(node.inputs[0])), scratch, "logits")
    else:
        raise IRError(f"{node.name}: {node.op} cannot be lowered (run the fuse pass first)")
    variant = f" ({node.variant})" if node.variant else ""
    return Call(KERNEL_OF[(node.op, node.variant)], args, f"{node.name}: {node.op.value}{variant}")


def lower(graph: Graph) -> LoweredModel:
    if not graph.meta.get("quantized") or "plan" not in graph.meta:
        raise IRError("lower needs a quantized, planned graph")
    writer = _StructWriter()
    structs: list[CStruct] = []
    calls: list[Call] = []
    for node in graph.nodes:
        symbol = c_identifier(node.name)
        init = writer.initializer(node.kernel, symbol)
        structs.append(CStruct(symbol, type(node.kernel).C_TYPE, init))
        calls.append(_call(node, symbol, graph))
    return LoweredModel(
        arrays=tuple(writer.arrays),
        structs=tuple(structs),
        calls=tuple(calls),
        arena_bytes=(split.arena if (split := graph.meta.get("scratch_split")) else graph.meta["plan"]).arena_bytes,
        constant_bytes=writer.constant_bytes,
        scratch_arena_bytes=split.scratch.arena_bytes if split else 0,
    )

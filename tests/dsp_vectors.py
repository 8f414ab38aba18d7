"""Test vectors for the kernels on Cortex-M (tests/c/dsp_kernel_test.c, tests/test_dsp_kernels.py).

Seeded random cases with odd sizes and tails (in_features 1..67, out_features 1..9, strides,
token counts 1..19), saturating cases (all -128 / 127, extreme offsets and biases, maximal
multipliers, extreme shifts) and rejected parameters. Expected outputs come from codegen.ref (the
Python integer reference, bit-exact with the portable C kernels by tests/test_kernels.py). Every
case becomes C data in one include file: the program in QEMU reads no files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, is_dataclass, replace

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref

I32_MIN, I32_MAX = qp.INT32_MIN, qp.INT32_MAX
OK, ERR_ARG, ERR_INPUT = 0, -1, -2
M_MAX = I32_MAX  # largest Q31 multiplier
M_MIN = 1 << 30  # smallest non-zero multiplier


@dataclass(frozen=True)
class Case:
    kernel: str  # the C table: linear, attn, add, layernorm, lut
    index: int
    desc: str


# ------------------------------------------------------------------------------------------ C text
def _c_int(v: int) -> str:
    v = int(v)
    if v > 0x7FFFFFFF:  # a uint64_t field (LayerNorm's epsilon)
        return f"UINT64_C({v})"
    return "(-2147483647 - 1)" if v == I32_MIN else str(v)


class CFile:
    """Static const arrays and table rows of the include file."""

    def __init__(self) -> None:
        self.decls: list[str] = []
        self.max_bytes = 16
        self._n = 0

    def array(self, values: np.ndarray | None, ctype: str) -> str:
        if values is None:
            return "NULL"
        flat = np.asarray(values).reshape(-1)
        self._n += 1
        name = f"v{self._n}"
        body = ", ".join(_c_int(v) for v in flat) if flat.size else "0"
        self.decls.append(f"static const {ctype} {name}[] = {{{body}}};")
        return name

    def s8(self, values: np.ndarray | None) -> str:
        if values is not None:
            self.max_bytes = max(self.max_bytes, int(np.asarray(values).size))
        return self.array(values, "int8_t")

    def struct(self, obj: object) -> str:
        """A qparams dataclass as a C initializer, fields in declaration (= mcuf.h) order."""
        parts = []
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_dataclass(value):
                parts.append(self.struct(value))
            elif value is None:
                parts.append("NULL")
            elif isinstance(value, np.ndarray):
                parts.append(self.s8(value) if value.dtype == np.int8 else self.array(value, "int32_t"))
            else:
                parts.append(_c_int(value))
        return "{" + ", ".join(parts) + "}"


# ---------------------------------------------------------------------------------------- params
def _multipliers(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.integers(M_MIN, M_MAX, size=n, endpoint=True).astype(np.int32)
    m[rng.random(n) < 0.1] = 0
    return m


def _shifts(rng: np.random.Generator, n: int) -> np.ndarray:
    s = rng.integers(-14, 1, size=n).astype(np.int32)
    pick = rng.random(n)
    s[pick < 0.15] = rng.integers(1, 9, size=int((pick < 0.15).sum()))  # left shifts (saturating)
    s[pick > 0.95] = -31
    return s


def _requant(rng: np.random.Generator) -> qp.Requant:
    return qp.Requant(int(_multipliers(rng, 1)[0]), int(_shifts(rng, 1)[0]))


def _s8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def _linear(
    rng: np.random.Generator,
    n_in: int,
    n_out: int,
    *,
    weights: np.ndarray | None = None,
    bias: np.ndarray | None | str = "random",
    multiplier: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    input_offset: int | None = None,
    act: tuple[int, int] | None = None,
) -> qp.LinearParams:
    lo, hi = act if act is not None else sorted(int(v) for v in rng.integers(-128, 128, size=2))
    if act is None and rng.random() < 0.6:
        lo, hi = -128, 127
    if isinstance(bias, str):
        bias = rng.integers(-(1 << 20), 1 << 20, size=n_out).astype(np.int32) if rng.random() < 0.8 else None
    return qp.LinearParams(
        in_features=n_in,
        out_features=n_out,
        input_offset=int(rng.integers(-127, 129)) if input_offset is None else input_offset,
        output_offset=int(rng.integers(-128, 128)),
        act_min=lo,
        act_max=hi,
        weights=_s8(rng, n_out, n_in) if weights is None else weights,
        bias=bias,
        multiplier=_multipliers(rng, n_out) if multiplier is None else multiplier,
        shift=_shifts(rng, n_out) if shift is None else shift,
    )


def _saturating_linears(rng: np.random.Generator, w_min: int, w_max: int) -> list[tuple[int, int, qp.LinearParams]]:
    """(weight, input offset, params): every weight at one extreme (w_min or w_max), extreme input
    offsets, maximal multipliers, extreme shifts and biases."""
    out = []
    for n_in, n_out in ((67, 9), (64, 8), (33, 5)):
        for w_val, off in ((w_min, 128), (w_max, 128), (w_min, -127), (w_max, -127)):
            w = np.full((n_out, n_in), w_val, dtype=np.int8)
            m = np.full(n_out, M_MAX, dtype=np.int32)
            s = np.array([30, 0, -31, 5, 1, -1, 0, 30, -31][:n_out], dtype=np.int32)
            bias = np.array([I32_MAX, I32_MIN, 0, I32_MAX, -5, I32_MIN, 7, 1, -1][:n_out], dtype=np.int32)
            out.append(
                (w_val, off, _linear(rng, n_in, n_out, weights=w, bias=bias, multiplier=m, shift=s, input_offset=off))
            )
    return out


def _attn(rng: np.random.Generator, tokens: int, head_dim: int, **fixed: int | qp.Requant) -> qp.AttnHeadParams:
    values: dict[str, int | qp.Requant] = {
        "tokens": tokens,
        "head_dim": head_dim,
        "q_offset": int(rng.integers(-127, 129)),
        "k_offset": int(rng.integers(-127, 129)),
        "v_offset": int(rng.integers(-127, 129)),
        "score_offset": int(rng.integers(-128, 128)),
        "out_offset": int(rng.integers(-128, 128)),
        "score": _requant(rng),
        "av": _requant(rng),
    }
    values.update(fixed)
    return qp.AttnHeadParams(**values)  # type: ignore[arg-type]


def ref_sum_zero(p: qp.SoftmaxParams, x: np.ndarray) -> bool:
    """Whether mcuf_softmax_s8's 32-bit sum of the row's table entries is 0 (an error, no output)."""
    xi = np.asarray(x).astype(np.int64)
    e = (p.exp_table.astype(np.int64) & 0xFFFFFFFF)[xi.max() - xi]
    return int(e.sum()) & 0xFFFFFFFF == 0


# ----------------------------------------------------------------------------------------- cases
class Vectors:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.c = CFile()
        kernels = ("linear", "attn", "add", "layernorm", "lut", "softmax", "bench", "patch", "pool")
        self.rows: dict[str, list[str]] = {k: [] for k in kernels}
        self.cases: dict[str, list[Case]] = {k: [] for k in self.rows}

    def _add_case(self, kernel: str, row: str, desc: str) -> None:
        self.cases[kernel].append(Case(kernel, len(self.rows[kernel]), desc))
        self.rows[kernel].append(row)

    # -- linear
    def linear(
        self,
        p: qp.LinearParams | qp.LinearS4WParams,
        rows: int,
        desc: str,
        status: int = OK,
        align: int | None = None,
        table: str = "linear",
        tile: int = 0,
        token_bias: np.ndarray | None = None,
    ) -> None:
        """rows -1: mcuf_linear_s8 (one row); rows >= 0: mcuf_linear_rows_s8, or mcuf_linear_tile_s8
        with `tile` tokens per pass when tile != 0; the _s4w_ kernels for LinearS4WParams (packed int4
        weights: weight_bits 4 in the C row). token_bias ([rows][out_features]): mcufi_linear_tile
        (internal) with row r's bias token_bias[r] (bias_stride out_features: the patch embedding's)."""
        n = max(rows, 1)
        x = _s8(self.rng, n, p.in_features)
        if desc.startswith("saturating"):
            x[:] = -128 if p.input_offset < 0 else 127
        s4w = isinstance(p, qp.LinearS4WParams)
        reference = ref.linear_s4w if s4w else ref.linear
        bias_stride = 0
        if token_bias is not None:
            expected = np.concatenate([reference(replace(p, bias=token_bias[r]), x[r : r + 1]) for r in range(n)])
            p = replace(p, bias=token_bias[0])
            object.__setattr__(p, "bias", np.ascontiguousarray(token_bias, dtype=np.int32).reshape(-1))
            bias_stride = p.out_features
        else:
            expected = reference(p, x) if status == OK and rows != 0 else None
        self.c.max_bytes = max(self.c.max_bytes, n * p.out_features)
        a = int(self.rng.integers(0, 4)) if align is None else align
        bits = 4 if s4w else 8
        params = self.c.struct(p)
        if s4w:  # the C row holds mcuf_linear_params: its weight_format (not read for the _s4w_ kernels)
            params = params[:-1] + ", MCUF_WEIGHTS_S8}"
        row = (
            f"{{{params}, {rows}, {tile}, {a}, {self.c.s8(x)}, {self.c.s8(expected)}, {status}, {bits}, {bias_stride}}}"
        )
        where = f"in {p.in_features} out {p.out_features} rows {rows} tile {tile} align {a}"
        self._add_case(table, row, f"{desc}: int{bits} weights, {where}")

    def linear_cases(self) -> None:
        rng = self.rng
        for n_in in range(1, 68):  # every tail of the 4-input step, every row-block tail
            n_out = int(rng.integers(1, 10))
            self.linear(_linear(rng, n_in, n_out), -1, "random")
        for n_in, n_out in ((96, 24), (24, 96), (192, 24), (48, 16), (130, 7)):  # model-like shapes
            self.linear(_linear(rng, n_in, n_out), -1, "model-like")
        for rows in (1, 2, 3):
            self.linear(_linear(rng, int(rng.integers(1, 40)), int(rng.integers(1, 10))), rows, "rows")
        self.linear(_linear(rng, 5, 3), 0, "rows=0", align=0)
        # Token tiles (mcuf_linear_tile_s8): every input tail, odd channel counts, row counts that
        # leave a 2-row group and a single row after the 4-row groups.
        for n_in in range(1, 68):
            tile = (2, 4)[n_in % 2]
            rows = int(rng.integers(1, 10))
            self.linear(_linear(rng, n_in, int(rng.integers(1, 10))), rows, "tiled", tile=tile)
        for n_in, n_out, rows, tile in ((216, 7, 4, 4), (54, 9, 7, 4), (130, 5, 3, 2), (17, 3, 2, 1), (4, 1, 0, 4)):
            self.linear(_linear(rng, n_in, n_out), rows, "tiled model-like", tile=tile)
        small = np.random.default_rng(2028)  # own stream: the Helium 4-token path for 16 < in_features <= 32
        for n_in, n_out, rows in ((24, 96, 9), (17, 8, 4), (32, 13, 5), (18, 5, 8), (31, 4, 4)):
            self.linear(_linear(small, n_in, n_out), rows, "tiled, 4 tokens, 17..32 inputs", tile=4)
        tiny = np.random.default_rng(2033)  # own stream: the Helium 4-token path for in_features <= 16
        for n_in, n_out, rows in ((16, 64, 9), (2, 7, 4), (4, 9, 5), (8, 4, 8), (12, 13, 4), (14, 6, 6), (16, 5, 3)):
            self.linear(_linear(tiny, n_in, n_out), rows, "tiled, 4 tokens, 1..16 inputs", tile=4)
        p = _linear(tiny, 16, 8, weights=np.full((8, 16), -128, np.int8), input_offset=128)
        self.linear(p, 5, "saturating tiled, 4 tokens, 16 inputs", tile=4)
        # The Helium 2-token dot products for in_features <= 16, 17..32 and 16 k (dots_t2_n16 / _n32 / _k):
        # every input count class, 4-channel groups and a remainder, a single row after the pairs;
        # then the extremes (weights, inputs, offsets, biases, shifts, multipliers).
        pair = np.random.default_rng(2070)  # own stream: the other cases keep their values
        for n_in in (1, 5, 8, 15, 16, 17, 20, 24, 31, 32, 48, 64, 128):  # and 16 k: dots_t2_k
            self.linear(_linear(pair, n_in, 9), 5, "tiled, 2 tokens", tile=2)
            for w_val, off in ((-128, 128), (127, -127)):
                w = np.full((9, n_in), w_val, dtype=np.int8)
                m = np.full(9, M_MAX, dtype=np.int32)
                s = np.array([30, 0, -31, 5, 1, -1, 0, 30, -31], dtype=np.int32)
                bias = np.array([I32_MAX, I32_MIN, 0, I32_MAX, -5, I32_MIN, 7, 1, -1], dtype=np.int32)
                p = _linear(pair, n_in, 9, weights=w, bias=bias, multiplier=m, shift=s, input_offset=off)
                self.linear(p, 4, f"saturating tiled, 2 tokens, w={w_val} off={off}", tile=2)
        # The Helium fused 4-token pass (in_features <= 32, a bias): every input count class, one and
        # six channels, a row remainder after the 4-row groups; then every weight, input, offset, bias
        # and shift at its extremes (saturating bias add, left shifts 1..30, right shifts to -31).
        fused = np.random.default_rng(2041)  # own stream: the other cases keep their values
        for n_in in (1, 3, 8, 15, 16, 17, 20, 24, 31, 32):
            for n_out, rows in ((1, 4), (6, 9)):
                bias = fused.integers(-(1 << 24), 1 << 24, size=n_out).astype(np.int32)
                self.linear(_linear(fused, n_in, n_out, bias=bias), rows, "tiled, 4 tokens, fused pass", tile=4)
        for n_in in (16, 17, 32):
            for w_val, off in ((-128, 128), (127, 128), (-128, -127), (127, -127)):
                w = np.full((9, n_in), w_val, dtype=np.int8)
                m = np.full(9, M_MAX, dtype=np.int32)
                s = np.array([30, 0, -31, 5, 1, -1, 0, 30, -31], dtype=np.int32)
                bias = np.array([I32_MAX, I32_MIN, 0, I32_MAX, -5, I32_MIN, 7, 1, -1], dtype=np.int32)
                p = _linear(fused, n_in, 9, weights=w, bias=bias, multiplier=m, shift=s, input_offset=off)
                self.linear(p, 4, f"saturating tiled, 4 tokens, fused pass w={w_val} off={off}", tile=4)
        # The Helium fused 4-token pass for 16 k inputs (k = 1..8, mcufi_mve_linear_t4_k): every k,
        # one and seven channels, a row remainder; no bias, a bias row for every token (random, or
        # none), a bias row per token (the patch embedding's); then the extremes as above.
        wide = np.random.default_rng(2050)  # own stream: the other cases keep their values
        for n_in in (16, 48, 64, 128):
            for n_out, rows in ((1, 4), (5, 5)):

                def mid(n_in: int = n_in, n_out: int = n_out, **kw) -> qp.LinearParams:
                    s = wide.integers(-22, -14, size=n_out).astype(np.int32)  # most outputs inside int8
                    s[: n_out // 4] = wide.integers(-31, 3, size=n_out // 4)
                    return _linear(wide, n_in, n_out, shift=s, **kw)

                self.linear(mid(bias=None), rows, "tiled, 4 tokens, 16 k inputs, no bias", tile=4)
                self.linear(mid(), rows, "tiled, 4 tokens, 16 k inputs", tile=4)
                bias = wide.integers(-(1 << 24), 1 << 24, size=(rows, n_out)).astype(np.int32)
                p = mid(bias=bias[0])
                self.linear(p, rows, "tiled, 4 tokens, 16 k inputs, a bias row per token", tile=4, token_bias=bias)
        for n_in in (64,):
            for w_val, off in ((-128, 128), (127, -127)):
                w = np.full((9, n_in), w_val, dtype=np.int8)
                m = np.full(9, M_MAX, dtype=np.int32)
                s = np.array([30, 0, -31, 5, 1, -1, 0, 30, -31], dtype=np.int32)
                bias = np.array([I32_MAX, I32_MIN, 0, I32_MAX, -5, I32_MIN, 7, 1, -1], dtype=np.int32)
                p = _linear(wide, n_in, 9, weights=w, bias=bias, multiplier=m, shift=s, input_offset=off)
                self.linear(p, 4, f"saturating tiled, 4 tokens, 16 k inputs w={w_val} off={off}", tile=4)
                p = _linear(wide, n_in, 9, weights=w, bias=None, multiplier=m, shift=s, input_offset=off)
                self.linear(p, 4, f"saturating tiled, 4 tokens, 16 k inputs, no bias w={w_val} off={off}", tile=4)
                rows_b = np.stack([np.roll(bias, r) for r in range(4)])
                p = _linear(wide, n_in, 9, weights=w, bias=bias, multiplier=m, shift=s, input_offset=off)
                desc = f"saturating tiled, 4 tokens, bias rows w={w_val} off={off}"
                self.linear(p, 4, desc, tile=4, token_bias=rows_b)
        # Every shift a right shift (-1 .. -31): the fused passes' _r variants (no per-channel sign
        # test), with the extremes of the weights, inputs, offsets and biases.
        right = np.random.default_rng(2060)  # own stream: the other cases keep their values
        for n_in in (5, 16, 17, 32, 64, 128):
            for w_val, off in ((-128, 128), (127, -127)):
                w = np.full((9, n_in), w_val, dtype=np.int8)
                m = np.full(9, M_MAX, dtype=np.int32)
                m[4] = M_MIN
                s = np.array([-1, -31, -1, -5, -31, -1, -2, -20, -1], dtype=np.int32)
                bias = np.array([I32_MAX, I32_MIN, 0, I32_MAX, -5, I32_MIN, 7, 1, -1], dtype=np.int32)
                p = _linear(right, n_in, 9, weights=w, bias=bias, multiplier=m, shift=s, input_offset=off)
                self.linear(p, 5, f"saturating tiled, 4 tokens, right shifts w={w_val} off={off}", tile=4)
                self.linear(p, 5, f"saturating tiled, 2 tokens, right shifts w={w_val} off={off}", tile=2)
                if n_in % 16 == 0:
                    p = _linear(right, n_in, 9, weights=w, bias=None, multiplier=m, shift=s, input_offset=off)
                    self.linear(p, 4, f"saturating tiled, 4 tokens, right shifts, no bias w={w_val}", tile=4)
            s = right.integers(-22, -14, size=7).astype(np.int32)  # most outputs inside int8
            s[:2] = (-1, -31)
            bias = right.integers(-(1 << 22), 1 << 22, size=7).astype(np.int32)
            p = _linear(right, n_in, 7, shift=s, bias=bias, act=(-128, 127))
            self.linear(p, 8, "tiled, 4 tokens, random right shifts", tile=4)
            self.linear(p, 5, "tiled, 2 tokens, random right shifts", tile=2)
        # Saturating: all inputs and weights at one extreme, extreme offsets, maximal multipliers.
        for w_val, off, p in _saturating_linears(rng, -128, 127):
            self.linear(p, -1, f"saturating w={w_val} off={off}")
            self.linear(p, 5, f"saturating tiled w={w_val} off={off}", tile=4)
            self.linear(p, 3, f"saturating tiled w={w_val} off={off}", tile=2)
        p = _linear(rng, 64, 8, weights=np.full((8, 64), -128, np.int8), input_offset=128, act=(-5, 9))
        self.linear(p, -1, "saturating narrow activation")
        # The DSP tiles' short output stage at its bounds: |bias| = 2^30 - 1 - 32640 * in_features with
        # every sum at its extreme (taken) and one more (the general stage); shifts -1, -21, -30
        # (taken), 0 and -31 (general).
        edge = np.random.default_rng(2030)  # own stream: the other cases keep their values
        for n_in, w_val in ((54, -128), (54, 127), (13, 127), (216, -128)):
            lim = (1 << 30) - 1 - 32640 * n_in
            bias = np.array([lim, -lim, lim + 1, -lim - 1, lim, -lim, 0, -lim], dtype=np.int32)
            s = np.array([-1, -30, -1, -30, 0, -31, -21, -22], dtype=np.int32)
            m = _multipliers(edge, 8)
            w = np.full((8, n_in), w_val, np.int8)
            p = _linear(edge, n_in, 8, weights=w, bias=bias, multiplier=m, shift=s, input_offset=128, act=(-128, 127))
            for rows, tile in ((4, 4), (2, 2), (1, 4)):
                self.linear(p, rows, f"saturating tiled, short-stage bounds w={w_val}", tile=tile)
        # The DSP 4-token tile in assembly (mcufi_dsp_linear_t4: one bias row, whole int8 range, more
        # than 4 inputs): every head size and loop entry (5..24 inputs), the 54-input class and
        # others up to 256; shifts that take it ([-23, -1]) mixed per channel with ones that return
        # to C (-24 .. -31, 0, left shifts), so slow channels fall first, last and between; output
        # offsets at both ends (the offset folded into the rounding constant); no bias (C tile).
        asm = np.random.default_rng(2051)  # own stream: the other cases keep their values
        shapes = [(n, int(asm.integers(1, 14))) for n in range(5, 25)]
        shapes += [(54, 216), (54, 23), (53, 9), (55, 9), (56, 9), (58, 9), (70, 6), (216, 7), (255, 5), (256, 5)]
        for i, (n_in, n_out) in enumerate(shapes):
            s = asm.integers(-23, 0, size=n_out).astype(np.int32)
            pick = asm.random(n_out)
            s[pick < 0.2] = asm.integers(-31, -23, size=int((pick < 0.2).sum()))
            s[pick > 0.9] = asm.integers(0, 6, size=int((pick > 0.9).sum()))
            bias = asm.integers(-(1 << 24), 1 << 24, size=n_out).astype(np.int32)
            p = _linear(asm, n_in, n_out, bias=bias, shift=s, act=(-128, 127))
            p = replace(p, output_offset=(-128, 127, p.output_offset)[i % 3])
            rows = int(asm.integers(4, 10))
            self.linear(p, rows, "tiled, 4 tokens, assembly tile", tile=4)
        p = _linear(asm, 54, 11, bias=None, act=(-128, 127))
        self.linear(p, 4, "tiled, 4 tokens, 54 inputs, no bias", tile=4)
        # ... and at its edges: every weight and input at an extreme, extreme input and output
        # offsets, the bias at the short stage's bound (taken) and one past it (C), shifts -1, -23
        # (taken, the largest folded offset) and -24 (C), multipliers 0, 2^30 and 2^31 - 1.
        for n_in in (5, 54, 55, 216):
            lim = (1 << 30) - 1 - 32640 * n_in
            bias = np.array([lim, -lim, lim + 1, -lim - 1, lim, -lim, 0, -lim, lim, 3], dtype=np.int32)
            s = np.array([-1, -23, -23, -1, -24, -23, -1, -22, -30, -23], dtype=np.int32)
            m = np.array([M_MAX, M_MAX, M_MAX, M_MIN, M_MAX, 0, M_MIN, M_MAX, M_MAX, M_MAX], dtype=np.int32)
            for w_val, off, out_off in ((-128, 128, -128), (127, 128, 127), (-128, -127, 127), (127, -127, -128)):
                w = np.full((10, n_in), w_val, np.int8)
                p = _linear(asm, n_in, 10, weights=w, bias=bias, multiplier=m, shift=s, input_offset=off,
                            act=(-128, 127))
                p = replace(p, output_offset=out_off)
                self.linear(p, 4, f"saturating tiled, 4 tokens, assembly tile edges w={w_val} off={off}", tile=4)
        # Rejected: a bad multiplier / shift on the last channel, a bad offset: output untouched.
        m = _multipliers(rng, 6)
        m[5] = (1 << 30) - 1
        self.linear(_linear(rng, 10, 6, multiplier=m), -1, "bad multiplier", status=ERR_ARG)
        s = _shifts(rng, 6)
        s[5] = 31
        self.linear(_linear(rng, 10, 6, shift=s), 2, "bad shift", status=ERR_ARG)
        self.linear(_linear(rng, 10, 6, input_offset=129), -1, "bad input offset", status=ERR_ARG)
        self.linear(_linear(rng, 10, 6), 4, "bad tile", status=ERR_ARG, tile=3)
        self.linear(_linear(rng, 10, 6, shift=s), 4, "tiled bad shift", status=ERR_ARG, tile=4)
        # The per-channel check (the Helium twin checks 8 channels per step, the last n % 8 lanes in
        # predicated steps of 4, zero-filled): one bad multiplier or shift at the first, the last and a
        # random channel, for channel counts around the 4-channel step; and every accepted extreme (multiplier 0, 2^30,
        # 2^31 - 1, shift -31 and 30) at every position of the step, which must still run.
        chk = np.random.default_rng(2040)  # own stream: the other cases keep their values
        bad_m = (1, M_MIN - 1, -1, I32_MIN, -M_MIN, 1 << 29, -M_MAX)
        bad_s = (-32, 31, I32_MIN, I32_MAX, 64, -33)
        k = 0
        for n_out in (1, 2, 3, 4, 5, 7, 8, 9, 13, 12, 16, 21):  # 8 channels per step, tails of 1 or 2 steps
            for pos in sorted({0, n_out - 1, int(chk.integers(0, n_out))}):
                rows, tile = ((-1, 0), (5, 4), (3, 2), (2, 0))[k % 4]
                m = _multipliers(chk, n_out)
                m[pos] = bad_m[k % len(bad_m)]
                p = _linear(chk, 5, n_out, multiplier=m)
                self.linear(p, rows, f"bad multiplier {m[pos]} at channel {pos}", status=ERR_ARG, tile=tile)
                s = _shifts(chk, n_out)
                s[pos] = bad_s[k % len(bad_s)]
                p = _linear(chk, 5, n_out, shift=s)
                self.linear(p, rows, f"bad shift {s[pos]} at channel {pos}", status=ERR_ARG, tile=tile)
                k += 1
        for n_out in (4, 5, 7):
            for r in range(4):
                m = np.roll(np.array([0, M_MIN, M_MAX, M_MIN + 1, 0, M_MAX, M_MIN], dtype=np.int32)[:n_out], r)
                s = np.roll(np.array([-31, 30, 0, -1, 30, -31, 1], dtype=np.int32)[:n_out], r)
                p = _linear(chk, 5, n_out, multiplier=m, shift=s)
                self.linear(p, (-1, 5, 3, 4)[r], "accepted multiplier / shift extremes", tile=(0, 4, 2, 4)[r])

    def linear_s4w_cases(self) -> None:
        """mcuf_linear_s4w_s8 / mcuf_linear_rows_s4w_s8: packed int4 weights (every nibble value,
        -8 included), every tail of the DSP kernel's 8-input step and of its 4-row blocks."""
        rng = self.rng

        def s4w(n_in: int, n_out: int, w: np.ndarray | None = None, **kw) -> qp.LinearS4WParams:
            w = rng.integers(-8, 8, size=(n_out, n_in)).astype(np.int8) if w is None else w
            return qp.LinearS4WParams.from_linear(_linear(rng, n_in, n_out, weights=w, **kw))

        for n_in in range(1, 42):
            self.linear(s4w(n_in, int(rng.integers(1, 10))), -1, "random")
        for n_in, n_out in ((96, 24), (24, 96), (192, 24), (95, 17), (130, 7)):  # model-like shapes
            self.linear(s4w(n_in, n_out), -1, "model-like")
        for rows in (1, 2, 3):
            self.linear(s4w(int(rng.integers(1, 40)), int(rng.integers(1, 10))), rows, "rows")
        self.linear(s4w(5, 3), 0, "rows=0", align=0)
        for n_in in (7, 33):  # a non-zero padding nibble is ignored
            p = s4w(n_in, 5)
            padded = p.weights.copy()
            padded[:, -1] |= np.int8(-16)  # high nibble 0xF
            self.linear(replace(p, weights=padded), -1, "padding nibble 0xF")
        for w_val, off, p in _saturating_linears(rng, -8, 7):
            self.linear(qp.LinearS4WParams.from_linear(p), -1, f"saturating w={w_val} off={off}")
        m = _multipliers(rng, 6)
        m[5] = (1 << 30) - 1
        self.linear(s4w(10, 6, multiplier=m), -1, "bad multiplier", status=ERR_ARG)
        self.linear(s4w(10, 6, input_offset=129), 2, "bad input offset", status=ERR_ARG)

    def bench_cases(self) -> None:
        """One layer (96 -> 96, 8 rows) quantized to int8 and to int4: QEMU counts each kernel's
        instructions (INSTR lines) and checks its outputs."""
        rng = self.rng
        w_f, b_f = rng.normal(0.0, 0.1, size=(96, 96)), rng.normal(0.0, 0.1, size=96)
        args = (w_f, b_f, 0.05, 3, 0.04, -2)
        self.linear(qp.linear_params(*args), 8, "bench", table="bench")
        self.linear(qp.linear_s4w_params(*args), 8, "bench", table="bench")

    # -- attention head
    def attn(
        self,
        p: qp.AttnHeadParams,
        k_pad: int,
        v_pad: int,
        desc: str,
        status: tuple[int, int] = (OK, OK),
        fill: int = 0,
    ) -> None:
        """status: (scores, weighted sum)."""
        rng = self.rng
        tokens, hd = p.tokens, p.head_dim
        k_stride, v_stride = hd + k_pad, hd + v_pad
        q, probs = _s8(rng, hd), _s8(rng, tokens)
        k, v = _s8(rng, tokens, k_stride), _s8(rng, tokens, v_stride)
        if fill:
            for arr in (q, probs, k, v):
                arr[...] = fill
        scores = ref.attn_scores(p, q, k[:, :hd]) if status[0] == OK else None
        out = ref.attn_weighted_sum(p, probs, v[:, :hd]) if status[1] == OK else None
        a = int(rng.integers(0, 4))
        c = self.c
        row = (
            f"{{{c.struct(p)}, {k_stride}, {v_stride}, {a}, {c.s8(q)}, {c.s8(k)}, {c.s8(probs)}, {c.s8(v)}, "
            f"{c.s8(scores)}, {c.s8(out)}, {status[0]}, {status[1]}}}"
        )
        self._add_case("attn", row, f"{desc}: tokens {tokens} head_dim {hd} strides {k_stride}/{v_stride} align {a}")

    def attn_cases(self) -> None:
        rng = self.rng
        for _ in range(40):
            tokens, hd = int(rng.integers(1, 20)), int(rng.integers(1, 20))
            self.attn(_attn(rng, tokens, hd), int(rng.integers(0, 6)), int(rng.integers(0, 6)), "random")
        for tokens, hd, pad in ((64, 24, 72), (17, 16, 48), (16, 8, 0), (5, 32, 1)):  # model-like: K/V rows of dim
            self.attn(_attn(rng, tokens, hd), pad, pad, "model-like")
        wide = np.random.default_rng(2026)  # own stream: the cases above keep their values
        for _ in range(10):  # the Helium kernel's paths: head_dim 25..32 (4 query vectors), > 32, > 24 + 4
            tokens, hd = int(wide.integers(1, 40)), int(wide.integers(20, 60))
            self.attn(_attn(wide, tokens, hd), int(wide.integers(0, 6)), int(wide.integers(0, 6)), "wide")
        big = qp.Requant(M_MAX, 30)
        for fill, off in ((-128, 128), (127, 128), (-128, -127), (127, -127)):
            p = _attn(rng, 19, 23, q_offset=off, k_offset=off, v_offset=off, score=big, av=big)
            self.attn(p, 3, 1, f"saturating fill={fill} off={off}", fill=fill)
            p = _attn(rng, 7, 9, q_offset=off, k_offset=off, v_offset=off, score=qp.Requant(M_MAX, -31))
            self.attn(p, 0, 2, f"saturating shift -31 fill={fill} off={off}", fill=fill)
        # The Helium fused score pairs (4-row tiles, 16 < head_dim <= 32, an even number of keys, a
        # right-shift score scale): head_dim at both ends and between, 2..36 keys, shifts -1..-31;
        # then every query and key at its extremes with extreme offsets (sums at their bounds, the
        # clamp at both ends).
        pairs = np.random.default_rng(2042)  # own stream: the other cases keep their values
        for hd in (17, 20, 24, 31, 32):
            for tokens in (2, 4, 10, 36):
                score = qp.Requant(int(_multipliers(pairs, 1)[0]) or M_MIN, int(pairs.integers(-31, 0)))
                pad = int(pairs.integers(0, 6))
                self.attn(_attn(pairs, tokens, hd, score=score), pad, pad, "fused score pairs")
        for hd in (17, 32):
            for fill, off in ((-128, 128), (127, 128), (-128, -127), (127, -127)):
                for sh in (-1, -31):
                    p = _attn(pairs, 6, hd, q_offset=off, k_offset=off, v_offset=off, score=qp.Requant(M_MAX, sh))
                    self.attn(p, 1, 0, f"saturating fused score pairs shift {sh} fill={fill} off={off}", fill=fill)
        # The Helium weighted-sum tile with at most 16 tokens (the 4 probability rows in registers,
        # mve_dots4x4_n16): 1..16 tokens, head_dim with and without a tail of the 4-dimension step,
        # then every probability and value at its extremes with extreme offsets.
        few = np.random.default_rng(2051)  # own stream: the other cases keep their values
        for tokens, hd in ((1, 4), (3, 8), (4, 32), (7, 13), (12, 16), (16, 32), (16, 6)):
            av = qp.Requant(int(_multipliers(few, 1)[0]) or M_MIN, int(few.integers(-14, 0)))
            self.attn(_attn(few, tokens, hd, av=av), 0, int(few.integers(0, 6)), "weighted sums, <= 16 tokens")
        for fill, off in ((-128, 128), (127, 128), (-128, -127), (127, -127)):
            for tokens, hd in ((4, 32), (16, 8)):
                p = _attn(few, tokens, hd, q_offset=off, k_offset=off, v_offset=off, av=big)
                self.attn(p, 0, 0, f"saturating weighted sums, {tokens} tokens fill={fill} off={off}", fill=fill)
        self.attn(_attn(rng, 4, 8), -1, 0, "k_stride < head_dim", status=(ERR_ARG, OK))
        self.attn(_attn(rng, 4, 8), 0, -1, "v_stride < head_dim", status=(OK, ERR_ARG))
        self.attn(_attn(rng, 4, 8, k_offset=129), 0, 0, "bad k offset", status=(ERR_ARG, ERR_ARG))
        self.attn(_attn(rng, 4, 8, av=qp.Requant(M_MIN - 1, 0)), 0, 0, "bad multiplier", status=(ERR_ARG, ERR_ARG))

    # -- add, layernorm, lut
    def add_cases(self) -> None:
        rng = self.rng
        for i in range(12):
            n = int(rng.integers(0, 70)) if i else 0
            scales = rng.uniform(0.01, 0.3, size=3)
            zps = rng.integers(-128, 128, size=3)
            p = qp.add_params(scales[0], int(zps[0]), scales[1], int(zps[1]), scales[2], int(zps[2]))
            a, b = _s8(rng, n), _s8(rng, n)
            if i == 11:  # extreme inputs and offsets, maximal multipliers, the largest left shift
                big = qp.Requant(M_MAX, 0)
                p = qp.AddParams(128, -127, 127, 23, big, qp.Requant(M_MAX, -1), qp.Requant(M_MAX, 7), -128, 127)
                a[:], b[:] = 127, -128
            al = int(rng.integers(0, 4))
            expected = self.c.s8(ref.add(p, a, b))
            row = f"{{{self.c.struct(p)}, {n}, {al}, {self.c.s8(a)}, {self.c.s8(b)}, {expected}, {OK}}}"
            self._add_case("add", row, f"n {n} align {al}")
        # Right shifts only (the DSP kernel's SMMULR path) at its bounds: left_shift 21, shifts 0 and
        # -31, maximal and minimal multipliers, extreme inputs and offsets, a narrow activation; and
        # left_shift 22 (the general path).
        fast = (
            (21, (M_MAX, 0), (M_MAX, 0), (M_MAX, 0), (128, 128, 127), (-128, 127)),
            (21, (M_MAX, -31), (M_MIN, -31), (M_MAX, -31), (-127, -127, -128), (-128, 127)),
            (20, (M_MIN, -1), (M_MAX, 0), (M_MAX, -5), (128, -127, 0), (-5, 9)),
            (21, (M_MAX, 0), (M_MIN, -3), (M_MIN, 0), (128, 128, -128), (-128, 127)),
            (22, (M_MAX, 0), (M_MAX, 0), (M_MAX, -1), (128, 128, 0), (-128, 127)),
            (20, (M_MAX, -1), (M_MIN, -1), (M_MAX, -1), (0, 0, 0), (-128, 127)),
            # multiplier 2^30 and shift -20: s = (v << 20) / 2^21 exactly, a tie for every odd v,
            # negative ones included; the sum then meets ties at the output's shift -1
            (20, (M_MIN, -20), (M_MIN, -20), (M_MIN, -1), (0, 0, 0), (-128, 127)),
            # TFLite's input multiplier 0.5 = (2^30, 0) on either input (exact halving path), its
            # left_shift bounds 1 and 20, and 21 (the general path)
            (20, (M_MIN, 0), (M_MAX, -2), (M_MAX, -19), (-3, 17, 5), (-128, 127)),
            (20, (M_MAX, -1), (M_MIN, 0), (M_MIN, -20), (128, -127, -128), (-128, 127)),
            (1, (M_MIN, 0), (M_MIN, 0), (M_MAX, -1), (0, 0, 0), (-128, 127)),
            (21, (M_MIN, 0), (M_MAX, -3), (M_MAX, -20), (7, -7, 0), (-20, 20)),
            (21, (M_MIN, -2), (M_MAX, -1), (M_MIN, -1), (1, -1, 3), (-128, 127)),
            # the assembly loop's bounds: output shift -22 with the extreme output offsets (folded
            # into the rounding constant), -23 (the C loop)
            (21, (M_MAX, -1), (M_MAX, -2), (M_MAX, -22), (128, -127, 127), (-128, 127)),
            (21, (M_MAX, -1), (M_MIN, 0), (M_MIN, -22), (-127, 128, -128), (-128, 127)),
            (21, (M_MAX, -1), (M_MAX, -1), (M_MAX, -23), (128, 128, -128), (-128, 127)),
            # the largest left shift with right shifts only (the Helium groups' VMLAS: 255 << 23)
            (23, (M_MAX, 0), (M_MIN, -1), (M_MAX, -1), (128, 128, 0), (-128, 127)),
            (23, (M_MIN, 0), (M_MAX, 0), (M_MIN, -31), (-127, 128, 127), (-128, 127)),
        )
        for ls, r1, r2, ro, (o1, o2, oo), (lo, hi) in fast:
            p = qp.AddParams(o1, o2, oo, ls, qp.Requant(*r1), qp.Requant(*r2), qp.Requant(*ro), lo, hi)
            edges = np.array([-128, 127, 0, -1, 1], np.int8)
            a = np.concatenate([rng.choice(edges, 20), _s8(rng, 47)])
            b = np.concatenate([rng.choice(edges, 20), _s8(rng, 47)])
            expected = self.c.s8(ref.add(p, a, b))
            row = f"{{{self.c.struct(p)}, 67, 1, {self.c.s8(a)}, {self.c.s8(b)}, {expected}, {OK}}}"
            self._add_case("add", row, f"right shifts only, left_shift {ls}")

    def layernorm_cases(self) -> None:
        rng = self.rng
        for i, dim in enumerate((1, 2, 3, 5, 8, 16, 24, 33, 67, 96, 250)):
            p = qp.layernorm_params(
                rng.normal(1.0, 0.3, dim),
                rng.normal(0.0, 0.2, dim),
                0.05 if i % 3 else 0.002,  # eps / s_in^2 = 4e-3 or 2.5 input steps^2
                int(rng.integers(-128, 128)),
                0.03,
                3,
                eps=1e-5,
            )
            if i == 10:
                p = replace(p, epsilon=qp.LN_MAX_EPSILON)
            x = _s8(rng, dim)
            if i % 2:  # near-constant row: the epsilon and the square root's fraction bits matter
                x = np.clip(x[:1] + (rng.random(dim) < 0.3), -128, 127).astype(np.int8)
            al = int(rng.integers(0, 4))
            row = f"{{{self.c.struct(p)}, {al}, {self.c.s8(x)}, {self.c.s8(ref.layernorm(p, x))}, {OK}}}"
            self._add_case("layernorm", row, f"dim {dim} align {al}")
        edge = np.random.default_rng(2029)  # own stream: the 64-bit steps' extremes (gamma * n saturating)
        picks = np.array([I32_MIN, I32_MAX, -1, 0, 1, 8191, -8191, 1 << 30, -(1 << 30)], dtype=np.int64)
        # (the DSP kernel's short path: dim <= 514 and shift in [-22, -1], per element when the
        # product and bias stay in [-2^30, 2^30); 515 and the other shifts take the general steps)
        ln_edges = (
            (7, 128, qp.Requant(M_MAX, 30)),
            (96, -127, qp.Requant(M_MAX, -31)),
            (33, 5, None),
            (514, -127, qp.Requant(M_MAX, -30)),
            (515, 128, None),
            (40, 3, qp.Requant(M_MIN, -1)),
            (64, -127, qp.Requant(M_MAX, -22)),  # the largest shift with the offset folded
            (64, 128, qp.Requant(M_MIN, -23)),  # the general steps
        )
        for dim, off, out in ln_edges:
            p = qp.layernorm_params(edge.normal(1.0, 0.3, dim), edge.normal(0.0, 0.2, dim), 0.05, 0, 0.03, 3)
            gamma = np.where(edge.random(dim) < 0.5, edge.choice(picks, dim), edge.integers(I32_MIN, I32_MAX, dim))
            beta = np.where(edge.random(dim) < 0.5, edge.choice(picks, dim), edge.integers(I32_MIN, I32_MAX, dim))
            p = replace(p, input_offset=off, gamma=gamma.astype(np.int32), beta=beta.astype(np.int32))
            if out is not None:
                p = replace(p, out=out)
            x = edge.choice(np.array([-128, 127, 0, -1], np.int8), dim)
            row = f"{{{self.c.struct(p)}, 0, {self.c.s8(x)}, {self.c.s8(ref.layernorm(p, x))}, {OK}}}"
            self._add_case("layernorm", row, f"dim {dim} extreme gamma/beta offset {off}")
        # The Helium kernel's short rows (no 64-bit steps: |d| < 2^17 and |n| * |gamma| + |beta| < 2^31)
        # at their bounds: one outlier among equal inputs (|d| = 255 (dim - 1), the largest |n|), gamma
        # and beta at the compiler's limits (|gamma| <= 2^13 - 1, |beta| <= 2^30 - 1) or past them
        # (gamma 2^15, 2^17: the general steps), dims 514 / 515 (short) and 600 (|d| >= 2^17: general).
        short = np.random.default_rng(2032)  # own stream: the cases above keep their values
        for dim, g_abs, b_abs, off in (
            (514, 8191, (1 << 30) - 1, 128),
            (515, 8191, (1 << 30) - 1, -127),
            (600, 8191, (1 << 30) - 1, 0),
            (97, 8191, (1 << 30) - 1, 5),
            (97, 1 << 15, (1 << 30) - 1, 5),
            (45, 1 << 17, 1 << 30, -3),
            (18, 4000, 1 << 20, 0),
        ):
            p = qp.layernorm_params(short.normal(1.0, 0.3, dim), short.normal(0.0, 0.2, dim), 0.05, 0, 0.03, 3)
            gamma = np.where(short.random(dim) < 0.5, g_abs, -g_abs)
            gamma[1:] = (gamma[1:] * short.random(dim - 1)).astype(np.int64)
            beta = np.where(short.random(dim) < 0.5, b_abs, -b_abs)
            p = replace(p, input_offset=off, gamma=gamma.astype(np.int32), beta=beta.astype(np.int32))
            x = np.full(dim, -128 if dim % 2 else 127, np.int8)
            x[int(short.integers(0, dim))] = 127 if dim % 2 else -128
            row = f"{{{self.c.struct(p)}, 0, {self.c.s8(x)}, {self.c.s8(ref.layernorm(p, x))}, {OK}}}"
            self._add_case("layernorm", row, f"dim {dim} one outlier, |gamma| <= {g_abs}, |beta| {b_abs}")

    def lut_cases(self) -> None:
        rng = self.rng
        t = _s8(rng, 256)
        table = self.c.s8(t)
        for n in (1, 3, 4, 7, 64, 70):
            x = _s8(rng, n)
            al = int(rng.integers(0, 4))
            row = f"{{{table}, {n}, {al}, {self.c.s8(x)}, {self.c.s8(ref.lut(t, x))}}}"
            self._add_case("lut", row, f"n {n} align {al}")
        # the Helium gather (16 values per step): every tail of the step, both ends of the table
        edge = np.random.default_rng(2031)  # own stream: the cases above keep their values
        t2 = _s8(edge, 256)
        t2[0], t2[255] = -128, 127
        table2 = self.c.s8(t2)
        for n in (15, 16, 17, 31, 33, 47, 192, 250):
            x = _s8(edge, n)
            x[0], x[-1] = -128, 127
            al = int(edge.integers(0, 4))
            row = f"{{{table2}, {n}, {al}, {self.c.s8(x)}, {self.c.s8(ref.lut(t2, x))}}}"
            self._add_case("lut", row, f"n {n} align {al}, 16-value steps")

    def softmax_cases(self) -> None:
        """Every length 1..40 (the 4-value maximum's tails), the maximum at the first, last and an
        inner place, extreme values, equal values, several tables, and a zero table entry."""
        rng = self.rng
        for n in (*range(1, 41), 67, 144):
            p = qp.softmax_params(n, float(rng.uniform(0.01, 0.2)))
            x = _s8(rng, n)
            if n % 5 == 0:
                x[:] = rng.choice(np.array([-128, 127], np.int8), n)
            if n % 7 == 0:
                x[:] = -77
            if n % 3 == 0 and n > 1:
                x[rng.integers(0, n)] = 127  # the maximum somewhere
            if n % 4 == 1:
                x[-1] = 127  # the maximum in the scalar tail
            al = int(rng.integers(0, 4))
            expected = self.c.s8(ref.softmax(p, x))
            row = f"{{{self.c.struct(p)}, {al}, {self.c.s8(x)}, {expected}}}"
            self._add_case("softmax", row, f"length {n} align {al}")
        table = qp.exp_table(0.05)
        table[200:] = 0  # a table with zeros: inputs far below the maximum count 0
        x = np.concatenate([np.array([127], np.int8), _s8(rng, 30)])
        p = qp.SoftmaxParams(length=31, exp_table=table)
        row = f"{{{self.c.struct(p)}, 1, {self.c.s8(x)}, {self.c.s8(ref.softmax(p, x))}}}"
        self._add_case("softmax", row, "length 31, table with zero entries")
        wrap = np.random.default_rng(2027)  # own stream: the cases above keep their values
        for n in (1, 5, 33, 144):  # tables outside [0, 65536]: wrapping sums, any 32-bit divisor
            table = wrap.integers(I32_MIN, I32_MAX, size=256, endpoint=True).astype(np.int32)
            table[0] = 65536
            x = _s8(wrap, n)
            p = qp.SoftmaxParams(length=n, exp_table=table)
            if n == 1 or np.any(ref_sum_zero(p, x)):
                table[1:] = wrap.integers(0, 1 << 20, size=255)  # n == 1: the divisor 65536 itself
            row = f"{{{self.c.struct(p)}, 0, {self.c.s8(x)}, {self.c.s8(ref.softmax(p, x))}}}"
            self._add_case("softmax", row, f"length {n}, wrapping table")

    # -- scalar fixed-point helpers
    def fixedpoint(self) -> str:
        rng = self.rng
        edge = np.array([I32_MIN, I32_MIN + 1, -(1 << 30), -1, 0, 1, 1 << 30, I32_MAX - 1, I32_MAX], dtype=np.int64)
        xs = np.concatenate([edge, rng.integers(I32_MIN, I32_MAX, size=150, endpoint=True)])
        ms = np.concatenate([[0, M_MIN, M_MAX, I32_MIN, -1, 1], rng.integers(M_MIN, M_MAX, size=20, endpoint=True)])
        rq = [(x, m, s) for x in xs[:20] for m in ms[:8] for s in (-40, -31, -13, -1, 0, 1, 7, 30, 40)]
        rq += [(int(x), int(rng.choice(ms)), int(rng.integers(-32, 32))) for x in xs[20:]]
        rq_a = np.array(rq, dtype=np.int64)
        rq_exp = ref.requantize(rq_a[:, 0], rq_a[:, 1], rq_a[:, 2])
        sr = [(a, b) for a in edge for b in edge] + [(int(a), int(rng.choice(xs))) for a in xs[9:]]
        sr_a = np.array(sr, dtype=np.int64)
        sr_exp = ref.srdhm(sr_a[:, 0], sr_a[:, 1])
        rd = [(int(x), e) for x in xs[:30] for e in (-3, 0, 1, 2, 15, 30, 31, 32)]
        rd_a = np.array(rd, dtype=np.int64)
        rd_exp = ref.rdbpot(rd_a[:, 0], rd_a[:, 1])
        sq = [0, 1, 2, 3, 4, (1 << 32) - 1, 1 << 32, (1 << 64) - 1, (1 << 62) + 12345, (1 << 48) - 1]
        sq += [int(v) for v in rng.integers(0, 1 << 63, size=20, dtype=np.uint64)]
        sq_exp = ref.isqrt_u64(np.array(sq, dtype=np.uint64))

        def table(name: str, rows: np.ndarray, expected: np.ndarray) -> str:
            body = ",\n".join(
                "    {" + ", ".join(_c_int(v) for v in (*r, e)) + "}" for r, e in zip(rows, expected, strict=True)
            )
            return f"static const int32_t {name}[][{rows.shape[1] + 1}] = {{\n{body}\n}};"

        isqrt = ", ".join(f"UINT64_C({v})" for v in sq)
        isqrt_out = ", ".join(f"UINT32_C({int(v)})" for v in sq_exp)
        return "\n".join(
            [
                table("requantize_cases", rq_a, rq_exp),
                table("srdhm_cases", sr_a, sr_exp),
                table("rdbpot_cases", rd_a, rd_exp),
                f"static const uint64_t isqrt_in[] = {{{isqrt}}};",
                f"static const uint32_t isqrt_out[] = {{{isqrt_out}}};",
            ]
        )

    def embed_head_cases(self) -> None:
        """mcuf_patch_embed_s8 (the stripe reader reads the case's image; it fails at stripe fail_at,
        -1: never) and mcuf_pool_head_s8: the Helium twins gather the token tile across stripes and
        pool 4 channels per step. Grids of 1..3 tokens per stripe (a tile spanning stripes, a last
        partial tile), tiles 1, 2 and 4; a reader error after a partial tile (the earlier stripes'
        tokens written, no later one); pooling dims with and without a tail of the 4-channel step."""
        from tests.kernel_cases import float_patch_embed, float_pool_head

        rng = np.random.default_rng(2052)  # own stream: the other cases keep their values
        for image_h, image_w, channels, patch, dim, tile, fail_at in (
            (8, 8, 1, 4, 64, 4, -1),  # the demo's: 2 tokens per stripe, one tile of 4
            (12, 12, 1, 4, 16, 4, -1),  # 3 per stripe: tiles across stripes, a last one of 1
            (8, 12, 2, 4, 8, 4, -1),
            (12, 8, 3, 4, 12, 2, -1),
            (16, 16, 1, 8, 24, 4, -1),
            (12, 12, 1, 4, 16, 4, 2),  # 6 tokens before the failing stripe: a tile of 4 and 2 waiting
            (12, 12, 1, 4, 16, 1, 1),
        ):
            pe, img = float_patch_embed(rng, image_h, image_w, channels, patch, dim)
            pe = replace(pe, tile=tile)
            expected = ref.patch_embed(pe, img)
            status = OK
            if fail_at >= 0:
                expected = expected[: fail_at * (image_w // patch)]
                status = ERR_INPUT
            self.c.max_bytes = max(self.c.max_bytes, pe.tokens * pe.dim, patch * image_w * channels)
            arrays = f"{self.c.s8(img)}, {self.c.s8(expected)}, {expected.size}"
            row = f"{{{self.c.struct(pe)}, {arrays}, {fail_at}, {status}}}"
            where = f"{image_h}x{image_w}x{channels} patch {patch} dim {dim} tile {tile} fail_at {fail_at}"
            self._add_case("patch", row, f"patch embedding {where}")
        for tokens, dim, classes in ((4, 64, 10), (1, 8, 2), (5, 13, 3), (16, 32, 7), (3, 6, 4)):
            ph, x = float_pool_head(rng, tokens, dim, classes)
            self.c.max_bytes = max(self.c.max_bytes, tokens * dim)
            row = f"{{{self.c.struct(ph)}, {self.c.s8(x)}, {self.c.s8(ref.pool_head(ph, x))}}}"
            self._add_case("pool", row, f"pool head tokens {tokens} dim {dim} classes {classes}")

    TYPES = {
        "linear": "linear_case",
        "attn": "attn_case",
        "add": "add_case",
        "layernorm": "layernorm_case",
        "lut": "lut_case",
        "softmax": "softmax_case",
        "bench": "linear_case",
        "patch": "patch_case",
        "pool": "pool_case",
    }

    def build(self) -> str:
        """Every case; returns the fixed-point tables (C text, in every part)."""
        fixed = self.fixedpoint()
        self.linear_cases()
        self.linear_s4w_cases()
        self.bench_cases()
        self.attn_cases()
        self.add_cases()
        self.layernorm_cases()
        self.lut_cases()
        self.softmax_cases()
        self.embed_head_cases()
        return fixed

    def part_source(self, fixed: str, indices: dict[str, list[int]]) -> str:
        """The include file of one part: the rows ``indices[kernel]`` of every table (in that order) and
        only the arrays those rows reference."""
        rows = {kernel: [self.rows[kernel][i] for i in indices[kernel]] for kernel in self.TYPES}
        used = {name for table in rows.values() for row in table for name in re.findall(r"\bv\d+\b", row)}
        decls = [d for d in self.c.decls if d.split("[]", 1)[0].rsplit(" ", 1)[1] in used]
        out = ["/* Generated by tests/dsp_vectors.py. Do not edit. */", f"#define MAX_BYTES {self.c.max_bytes}"]
        out += decls
        out.append(fixed)
        for kernel, ctype in self.TYPES.items():
            body = ",\n".join(f"    {r}" for r in rows[kernel])
            out.append(f"static const {ctype} {kernel}_cases[] = {{\n{body}\n}};")
        return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Part:
    """One test program's share of the cases: its include file and, per table, the global case index of
    each of its rows (the C program numbers a part's rows from 0)."""

    source: str
    indices: dict[str, list[int]]


def generate_parts(seed: int, parts: int) -> tuple[list[Part], dict[str, list[Case]]]:
    """The cases split round-robin over ``parts`` test programs (each table's case i goes to part
    i % parts), so that each program's tables fit a 512 KiB QEMU flash (the an505's and the an547's
    ITCM); every part keeps at least one row of every table."""
    v = Vectors(seed)
    fixed = v.build()
    assert all(len(v.rows[k]) >= parts for k in v.TYPES), {k: len(v.rows[k]) for k in v.TYPES}
    out = []
    for p in range(parts):
        indices = {k: list(range(p, len(v.rows[k]), parts)) for k in v.TYPES}
        out.append(Part(v.part_source(fixed, indices), indices))
    return out, v.cases


def generate(seed: int = 0) -> tuple[str, dict[str, list[Case]]]:
    """(include file text with every case, the cases per kernel table for messages)."""
    parts, cases = generate_parts(seed, 1)
    return parts[0].source, cases

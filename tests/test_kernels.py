"""C kernels (runtime_c/src) vs the Python integer reference (codegen/ref.py): bit-exact.

The C is built once per session with ASan + UBSan and -Werror into a driver
(tests/c/kernel_harness.c); every test sends a batch of cases and compares every output integer.
Ref-only tests check fusion exactness (row-wise == unfused), the multiplier builder, and the
integer kernels against float maths.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE.parent), str(_HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import kernel_harness as kh  # noqa: E402

from mcuformer.codegen import qparams as qp  # noqa: E402
from mcuformer.codegen import ref, scratch  # noqa: E402

OK, ERR_ARG, ERR_INPUT = 0, -1, -2
I32_MIN, I32_MAX = qp.INT32_MIN, qp.INT32_MAX


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------


def assert_same(c_out: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Bit-exact comparison; the message names the first mismatching index and both values."""
    expected = np.asarray(expected)
    c_out = np.asarray(c_out)
    if c_out.size != expected.size:
        raise AssertionError(f"{what}: C produced {c_out.size} values, reference {expected.size}")
    c_flat = c_out.reshape(-1).astype(np.int64)
    r_flat = expected.reshape(-1).astype(np.int64)
    bad = np.flatnonzero(c_flat != r_flat)
    if bad.size:
        i = int(bad[0])
        index = np.unravel_index(i, expected.shape) if expected.ndim else ()
        raise AssertionError(
            f"{what}: {bad.size} of {c_flat.size} values differ; first at index {tuple(int(j) for j in index)}: "
            f"C={c_flat[i]} ref={r_flat[i]}"
        )


def check_ok(res: kh.Result, what: str) -> None:
    assert res.status == OK, f"{what}: C returned status {res.status}"


def rand_s8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def rand_scale(rng: np.random.Generator, lo: float = 1e-3, hi: float = 0.5) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def rand_zp(rng: np.random.Generator) -> int:
    return int(rng.integers(-128, 128))


def rand_requant_arrays(rng: np.random.Generator, n: int, lo_shift: int = -14, hi_shift: int = 1):
    mult = rng.integers(1 << 30, 1 << 31, size=n, dtype=np.int64).astype(np.int32)
    shift = rng.integers(lo_shift, hi_shift + 1, size=n).astype(np.int32)
    return mult, shift


def rand_requant(rng: np.random.Generator, lo_shift: int = -14, hi_shift: int = 1) -> qp.Requant:
    m, s = rand_requant_arrays(rng, 1, lo_shift, hi_shift)
    return qp.Requant(int(m[0]), int(s[0]))


def random_linear(
    rng: np.random.Generator, n_in: int, n_out: int, bias: bool = True, extreme: bool = False
) -> qp.LinearParams:
    """Random integer parameters (not from floats): any legal offsets, multipliers, biases."""
    mult, shift = rand_requant_arrays(rng, n_out, -18 if not extreme else -31, -6 if not extreme else 30)
    if extreme:
        mult[::3] = 0
        mult[1::3] = I32_MAX
    b = None
    if bias:
        hi = 1 << (30 if extreme else 16)
        b = rng.integers(-hi, hi, size=n_out, dtype=np.int64).astype(np.int32)
        if extreme:
            b[:2] = [I32_MAX, I32_MIN][: min(2, n_out)]
    act_min = int(rng.integers(-128, 0)) if rng.random() < 0.3 else -128
    act_max = int(rng.integers(0, 128)) if rng.random() < 0.3 else 127
    return qp.LinearParams(
        in_features=n_in,
        out_features=n_out,
        input_offset=int(rng.integers(-127, 129)),
        output_offset=rand_zp(rng),
        act_min=act_min,
        act_max=act_max,
        weights=rand_s8(rng, n_out, n_in),
        bias=b,
        multiplier=mult,
        shift=shift,
    )


# ---- float-calibrated block parameters (realistic value ranges) -----------------------------


def _qp_of(a: np.ndarray) -> tuple[float, int]:
    return qp.choose_qparams(float(a.min()), float(a.max()))


def _fq(a: np.ndarray, s: float, zp: int) -> np.ndarray:
    """Fake-quantize: the float value the int8 tensor stands for."""
    return qp.dequantize_tensor(qp.quantize_tensor(a, s, zp), s, zp)


LN_EPS = 1e-5  # PyTorch's default LayerNorm epsilon


def _float_ln(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = LN_EPS) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def _float_linear(rng: np.random.Generator, x: np.ndarray, n_out: int, bias: bool = True):
    n_in = x.shape[-1]
    w = rng.normal(0.0, 1.0 / math.sqrt(n_in), size=(n_out, n_in))
    b = rng.normal(0.0, 0.1, size=n_out) if bias else None
    y = x @ w.T + (0.0 if b is None else b)
    return w, b, y


def _layer(rng, x: np.ndarray, s_x: float, zp_x: int, n_out: int, bias: bool = True):
    """A float linear layer calibrated on x: (LinearParams, y_fq, s_y, zp_y)."""
    w, b, y = _float_linear(rng, x, n_out, bias)
    s_y, zp_y = _qp_of(y)
    p = qp.linear_params(w, b, s_x, zp_x, s_y, zp_y)
    return p, _fq(y, s_y, zp_y), s_y, zp_y


def _lowrank(rng, x: np.ndarray, s_x: float, zp_x: int, n_out: int, rank: int):
    if rank == 0:
        up, y, s_y, zp_y = _layer(rng, x, s_x, zp_x, n_out)
        return qp.lowrank_params(up), y, s_y, zp_y
    down, mid, s_m, zp_m = _layer(rng, x, s_x, zp_x, rank, bias=False)
    up, y, s_y, zp_y = _layer(rng, mid, s_m, zp_m, n_out)
    return qp.lowrank_params(up, down), y, s_y, zp_y


def _layernorm(rng, x: np.ndarray, s_x: float, zp_x: int):
    dim = x.shape[-1]
    gamma = 1.0 + 0.2 * rng.normal(size=dim)
    beta = 0.2 * rng.normal(size=dim)
    y = _float_ln(x, gamma, beta)
    s_y, zp_y = _qp_of(y)
    p = qp.layernorm_params(gamma, beta, s_x, zp_x, s_y, zp_y, eps=LN_EPS)
    return p, _fq(y, s_y, zp_y), s_y, zp_y


def _residual(x: np.ndarray, s_x: float, zp_x: int, a: np.ndarray, s_a: float, zp_a: int):
    out = x + a
    s_o, zp_o = _qp_of(out)
    return qp.add_params(s_x, zp_x, s_a, zp_a, s_o, zp_o)


def _input(rng, tokens: int, dim: int, scale: float = 1.0):
    x_f = rng.normal(0.0, scale, size=(tokens, dim)) + rng.normal(0.0, 0.3 * scale, size=dim)
    s_x, zp_x = _qp_of(x_f)
    x_q = qp.quantize_tensor(x_f, s_x, zp_x)
    return x_q, qp.dequantize_tensor(x_q, s_x, zp_x), s_x, zp_x


def float_attention(rng: np.random.Generator, tokens: int, dim: int, heads: int, rank: int):
    """Attention params calibrated on a random float input; returns (params, x int8)."""
    x_q, x, s_x, zp_x = _input(rng, tokens, dim)
    ln, y, s_y, zp_y = _layernorm(rng, x, s_x, zp_x)
    if rank:
        qkv_down, r, s_r, zp_r = _layer(rng, y, s_y, zp_y, rank, bias=False)
    else:
        qkv_down, r, s_r, zp_r = qp.LinearParams.empty(), y, s_y, zp_y
    (q, qf, s_q, zp_q), (k, kf, s_k, zp_k), (v, vf, s_v, zp_v) = (_layer(rng, r, s_r, zp_r, dim) for _ in range(3))
    hd = dim // heads
    qh, khd, vh = (a.reshape(tokens, heads, hd).transpose(1, 0, 2) for a in (qf, kf, vf))
    scores = qh @ khd.transpose(0, 2, 1) / math.sqrt(hd)
    s_s, zp_s = _qp_of(scores)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    o = (probs @ vh).transpose(1, 0, 2).reshape(tokens, dim)
    s_o, zp_o = _qp_of(o)
    head = qp.attn_head_params(tokens, hd, s_q, zp_q, s_k, zp_k, s_v, zp_v, s_s, zp_s, s_o, zp_o)
    proj, a, s_a, zp_a = _layer(rng, _fq(o, s_o, zp_o), s_o, zp_o, dim)
    p = qp.AttentionParams(
        tokens=tokens,
        dim=dim,
        heads=heads,
        ln=ln,
        qkv_rank=rank,
        qkv_down=qkv_down,
        q=q,
        k=k,
        v=v,
        head=head,
        softmax=qp.softmax_params(tokens, s_s),
        proj=proj,
        residual=_residual(x, s_x, zp_x, a, s_a, zp_a),
    )
    return p, x_q


def float_mlp(rng: np.random.Generator, tokens: int, dim: int, hidden: int, rank: int):
    x_q, x, s_x, zp_x = _input(rng, tokens, dim)
    ln, y, s_y, zp_y = _layernorm(rng, x, s_x, zp_x)
    fc1, h, s_h, zp_h = _lowrank(rng, y, s_y, zp_y, hidden, rank)
    g = np.vectorize(qp.gelu)(h)
    s_g, zp_g = _qp_of(g)
    fc2, m, s_m, zp_m = _lowrank(rng, _fq(g, s_g, zp_g), s_g, zp_g, dim, rank)
    p = qp.MLPParams(
        tokens=tokens,
        dim=dim,
        hidden=hidden,
        ln=ln,
        fc1=fc1,
        gelu_table=qp.gelu_table(s_h, zp_h, s_g, zp_g),
        fc2=fc2,
        residual=_residual(x, s_x, zp_x, m, s_m, zp_m),
    )
    return p, x_q


def float_pool_head(rng: np.random.Generator, tokens: int, dim: int, classes: int):
    x_q, x, s_x, zp_x = _input(rng, tokens, dim)
    ln, y, s_y, zp_y = _layernorm(rng, x, s_x, zp_x)
    pooled = y.mean(axis=0)
    s_p, zp_p = _qp_of(pooled)
    head, _, _, _ = _layer(rng, _fq(pooled, s_p, zp_p)[None, :], s_p, zp_p, classes)
    p = qp.PoolHeadParams(
        tokens=tokens,
        dim=dim,
        classes=classes,
        ln=ln,
        pool_input_offset=-zp_y,
        pool_output_offset=zp_p,
        pool=qp.pool_requant(tokens, s_y, s_p),
        head=head,
    )
    return p, x_q


def float_patch_embed(rng: np.random.Generator, image_h: int, image_w: int, channels: int, patch: int, dim: int):
    img_f = rng.uniform(-1.0, 1.0, size=(image_h, image_w, channels))
    s_i, zp_i = _qp_of(img_f)
    img = qp.quantize_tensor(img_f, s_i, zp_i)
    tokens = (image_h // patch) * (image_w // patch)
    w = rng.normal(0.0, 1.0 / math.sqrt(patch * patch * channels), size=(dim, patch * patch * channels))
    b = rng.normal(0.0, 0.1, size=dim)
    pos = rng.normal(0.0, 0.1, size=(tokens, dim))
    y = ref.patchify_hwc(qp.dequantize_tensor(img, s_i, zp_i), patch) @ w.T + b + pos
    s_y, zp_y = _qp_of(y)
    p = qp.patch_embed_params(w, b, image_h, image_w, channels, patch, s_i, zp_i, s_y, zp_y, pos_f=pos)
    return p, img


# ---- case builders ----------------------------------------------------------------------------


def linear_case(p: qp.LinearParams, x: np.ndarray, rows_api: bool) -> kh.Writer:
    rows = x.shape[0] if rows_api else 1
    w = kh.Writer(kh.Op.LINEAR_ROWS if rows_api else kh.Op.LINEAR).params(p)
    return w.int(rows).int(p.out_features).s8(x.reshape(-1))


def lowrank_case(p: qp.LowRankParams, x: np.ndarray) -> kh.Writer:
    return kh.Writer(kh.Op.LOWRANK).params(p).int(x.shape[0]).int(p.up.out_features).s8(x.reshape(-1))


def layernorm_case(p: qp.LayerNormParams, x: np.ndarray, in_place: bool = False) -> kh.Writer:
    w = kh.Writer(kh.Op.LAYERNORM).params(p)
    return w.int(x.shape[0]).int(x.shape[1]).int(int(in_place)).s8(x.reshape(-1))


def softmax_case(p: qp.SoftmaxParams, x: np.ndarray, in_place: bool = False) -> kh.Writer:
    w = kh.Writer(kh.Op.SOFTMAX).params(p)
    return w.int(x.shape[0]).int(x.shape[1]).int(int(in_place)).s8(x.reshape(-1))


def add_case(p: qp.AddParams, a: np.ndarray, b: np.ndarray, alias: int = 0) -> kh.Writer:
    return kh.Writer(kh.Op.ADD).params(p).int(alias).s8(a).s8(b)


def attention_case(p: qp.AttentionParams, x: np.ndarray) -> kh.Writer:
    return kh.Writer(kh.Op.ATTENTION).params(p).int(p.tokens * p.dim).s8(x.reshape(-1))


def mlp_case(p: qp.MLPParams, x: np.ndarray) -> kh.Writer:
    return kh.Writer(kh.Op.MLP).params(p).s8(x.reshape(-1))


def pool_case(p: qp.PoolHeadParams, x: np.ndarray, misalign: bool = False) -> kh.Writer:
    return kh.Writer(kh.Op.POOL_HEAD).params(p).int(p.classes).int(int(misalign)).s8(x.reshape(-1))


def patch_case(p: qp.PatchEmbedParams, image: np.ndarray, fail_at: int = -1) -> kh.Writer:
    w = kh.Writer(kh.Op.PATCH_EMBED).params(p).int(fail_at).int(p.tokens * p.dim)
    return w.int(p.patch * p.image_w * p.channels).s8(image.reshape(-1))


# ---------------------------------------------------------------------------------------------
# Structure: dataclasses mirror the C structs
# ---------------------------------------------------------------------------------------------


def _c_structs() -> dict[str, list[tuple[str, str]]]:
    """typedef struct { ... } name; -> [(c_type, field_name)] in declaration order."""
    text = (kh.RUNTIME / "include" / "mcuf.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    structs = {}
    for body, name in re.findall(r"typedef struct \{(.*?)\}\s*(\w+);", text, flags=re.S):
        out = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            first, *rest = decl.split(",")
            m = re.match(r"(?:const )?(\w+)\s*(\**)\s*(\w+)$", first.strip())
            assert m, f"cannot parse declaration {decl!r} in {name}"
            c_type = m.group(1) + m.group(2)
            out.append((c_type, m.group(3)))
            out += [(c_type, r.strip().lstrip("*").strip()) for r in rest]
        structs[name] = out
    return structs


def test_dataclasses_mirror_c_structs() -> None:
    structs = _c_structs()
    by_c_type = {cls.C_TYPE: cls for cls in qp.PARAM_TYPES}
    assert set(by_c_type) == set(structs), "every C param struct has exactly one dataclass"
    expected_annotation = {
        "int32_t": "int",
        "uint64_t": "int",
        "int8_t*": "np.ndarray | None",
        "int32_t*": "np.ndarray | None",
    }
    for c_name, c_fields in structs.items():
        cls = by_c_type[c_name]
        py_fields = [(f.name, f.type) for f in fields(cls)]
        assert [n for n, _ in py_fields] == [n for _, n in c_fields], f"{cls.__name__} vs {c_name}"
        for (c_type, name), (_, annotation) in zip(c_fields, py_fields, strict=True):
            want = by_c_type[c_type].__name__ if c_type in by_c_type else expected_annotation[c_type]
            assert annotation == want, f"{cls.__name__}.{name}: annotated {annotation}, C type {c_type}"


def test_harness_driver_handles_every_op() -> None:
    """Op is the one op list (the driver's enum is generated from it): the driver dispatches each."""
    cases = set(re.findall(r"case (OP_\w+):", kh.DRIVER.read_text()))
    assert cases == {f"OP_{op.name}" for op in kh.Op}
    assert all(f"OP_{op.name} = {op.value}," in kh.ops_header() for op in kh.Op)


def test_dataclasses_check_dtypes_and_shapes() -> None:
    with pytest.raises(TypeError):
        qp.SoftmaxParams(length=4, exp_table=np.zeros(256, dtype=np.int64))
    with pytest.raises(ValueError):
        qp.LayerNormParams(3, 0, 0, np.zeros(4, np.int32), np.zeros(3, np.int32), qp.Requant(0, 0))
    with pytest.raises(TypeError):
        qp.Requant(1.5, 0)  # type: ignore[arg-type]
    p = qp.Requant(np.int64(1 << 30), np.int32(-3))
    assert type(p.multiplier) is int and type(p.shift) is int


# ---------------------------------------------------------------------------------------------
# Fixed-point helpers
# ---------------------------------------------------------------------------------------------

EDGE32 = np.array(
    [I32_MIN, I32_MIN + 1, -(1 << 30), -65536, -257, -2, -1, 0, 1, 2, 255, 65535, (1 << 30) - 1, 1 << 30, I32_MAX],
    dtype=np.int64,
)


def test_fixedpoint_helpers(harness: kh.Harness) -> None:
    rng = np.random.default_rng(1)
    # srdhm: every pair of edge values plus random pairs.
    a = np.concatenate([np.repeat(EDGE32, EDGE32.size), rng.integers(I32_MIN, I32_MAX, 20000, dtype=np.int64)])
    b = np.concatenate([np.tile(EDGE32, EDGE32.size), rng.integers(I32_MIN, I32_MAX, 20000, dtype=np.int64)])
    # rdbpot: every exponent (and two out of range, clamped) on edge and random values.
    xs = np.concatenate([EDGE32, rng.integers(I32_MIN, I32_MAX, 600, dtype=np.int64)])
    exps = np.arange(-2, 34)
    rx, re_ = np.repeat(xs, exps.size), np.tile(exps, xs.size)
    # requantize: random values, multipliers incl. 0 / 2^30 / INT32_MAX, shifts over [-33, 32].
    n = 30000
    qx = np.concatenate([rng.integers(I32_MIN, I32_MAX, n // 2, dtype=np.int64), rng.integers(-70000, 70000, n // 2)])
    qm = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64)
    qm[::7] = 0
    qm[1::7] = 1 << 30
    qm[2::7] = I32_MAX
    qs = rng.integers(-33, 33, n)
    cases = [
        kh.Writer(kh.Op.SRDHM).s32(a.astype(np.int32)).s32(b.astype(np.int32)),
        kh.Writer(kh.Op.RDBPOT).s32(rx.astype(np.int32)).s32(re_.astype(np.int32)),
        kh.Writer(kh.Op.REQUANTIZE).s32(qx.astype(np.int32)).s32(qm.astype(np.int32)).s32(qs.astype(np.int32)),
    ]
    r_srdhm, r_rdbpot, r_req = harness.run(cases)
    assert_same(r_srdhm.outputs[0], ref.srdhm(a, b), "srdhm")
    assert_same(r_rdbpot.outputs[0], ref.rdbpot(rx, re_), "rdbpot")
    assert_same(r_req.outputs[0], ref.requantize(qx, qm, qs), "requantize")
    assert int(ref.srdhm(I32_MIN, I32_MIN)) == I32_MAX
    assert [int(ref.rdbpot(v, 1)) for v in (-3, -2, -1, 1, 2, 3)] == [-2, -1, -1, 1, 1, 2]  # ties away


def test_isqrt(harness: kh.Harness) -> None:
    rng = np.random.default_rng(2)
    roots = rng.integers(0, 1 << 32, 2000, dtype=np.uint64)
    squares = [int(r) * int(r) for r in roots]
    vals = [0, 1, 2, 3, 4, (1 << 64) - 1, (1 << 62), ((1 << 32) - 1) ** 2, ((1 << 32) - 1) ** 2 - 1]
    vals += squares + [max(s - 1, 0) for s in squares] + [s + 1 for s in squares if s + 1 < 1 << 64]
    vals += [int(v) for v in rng.integers(0, 1 << 62, 2000, dtype=np.int64)]
    vals += [
        int(v) >> int(k)
        for v, k in zip(rng.integers(0, 1 << 62, 500, dtype=np.int64), rng.integers(0, 62, 500), strict=True)
    ]
    v = np.array(vals, dtype=np.uint64)
    res = harness.run_one(kh.Writer(kh.Op.ISQRT).u64(v))
    assert_same(res.outputs[0], ref.isqrt_u64(v), "isqrt_u64 (exact path)")
    small = v[v < (1 << 62)].astype(np.int64)  # the float path serves every value below 2^62
    assert_same(ref.isqrt_u64(small), np.array([math.isqrt(int(x)) for x in small]), "isqrt_u64 (float path)")


# ---------------------------------------------------------------------------------------------
# Linear and low-rank
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_linear(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    cases, expected = [], []
    for i in range(8):
        n_in, n_out, rows = int(rng.integers(1, 200)), int(rng.integers(1, 70)), int(rng.integers(1, 6))
        extreme = i == 7
        p = random_linear(rng, n_in, n_out, bias=bool(i % 3), extreme=extreme)
        x = rand_s8(rng, rows, n_in)
        cases += [linear_case(p, x[:1], rows_api=False), linear_case(p, x, rows_api=True)]
        expected += [ref.linear(p, x[:1]), ref.linear_rows(p, x)]
    # a float-calibrated layer: outputs spread over the int8 range instead of saturating
    x_q, x_f, s_x, zp_x = _input(rng, 9, 48)
    p, _, _, _ = _layer(rng, x_f, s_x, zp_x, 33)
    cases.append(linear_case(p, x_q, rows_api=True))
    expected.append(ref.linear(p, x_q))
    assert np.unique(expected[-1]).size > 64
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"linear case {i}")
        assert_same(res.outputs[0], exp, f"linear case {i}")


def test_linear_saturation(harness: kh.Harness) -> None:
    """Largest legal accumulators: in_features = 65535, |x + offset| = 255, |w| = 128, int32 bias limits."""
    rng = np.random.default_rng(7)
    n_in = qp.LINEAR_MAX_IN
    cases, expected = [], []
    for x_val, off, w_val, bias in ((-128, -127, -128, I32_MIN), (127, 128, -128, I32_MAX), (127, 128, 127, None)):
        w = np.full((3, n_in), w_val, dtype=np.int8)
        b = None if bias is None else np.array([bias, -bias - 1, 0], dtype=np.int32)
        p = qp.LinearParams(
            n_in, 3, off, 5, -128, 127, w, b,
            np.array([I32_MAX, 1 << 30, 0], np.int32), np.array([30, -31, 0], np.int32),
        )  # fmt: skip
        x = np.full((1, n_in), x_val, dtype=np.int8)
        cases.append(linear_case(p, x, rows_api=False))
        expected.append(ref.linear(p, x))
    p = random_linear(rng, 40, 16, extreme=True)
    for x_val in (-128, 127):
        x = np.full((3, 40), x_val, dtype=np.int8)
        cases.append(linear_case(p, x, rows_api=True))
        expected.append(ref.linear(p, x))
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"saturating linear {i}")
        assert_same(res.outputs[0], exp, f"saturating linear {i}")


@pytest.mark.parametrize("seed", range(3))
def test_lowrank(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    cases, expected, params = [], [], []
    for rank in (0, 1, 5, 16):
        n_in, n_out, rows = int(rng.integers(2, 90)), int(rng.integers(1, 60)), 4
        if rank:
            p = qp.lowrank_params(random_linear(rng, rank, n_out), random_linear(rng, n_in, rank, bias=False))
        else:
            p = qp.lowrank_params(random_linear(rng, n_in, n_out))
        x = rand_s8(rng, rows, n_in)
        cases.append(lowrank_case(p, x))
        expected.append(ref.lowrank_linear(p, x))
        params.append(p)
    x_q, x_f, s_x, zp_x = _input(rng, 5, 40)
    p, _, _, _ = _lowrank(rng, x_f, s_x, zp_x, 24, rank=6)
    cases.append(lowrank_case(p, x_q))
    expected.append(ref.lowrank_linear(p, x_q))
    params.append(p)
    for i, (res, exp, p) in enumerate(zip(harness.run(cases), expected, params, strict=True)):
        check_ok(res, f"lowrank case {i}")
        assert res.aux == scratch.lowrank_linear_s8_scratch_size(p.rank) == scratch.align4(p.rank)
        assert_same(res.outputs[0], exp, f"lowrank case {i} (rank {p.rank})")


# ---------------------------------------------------------------------------------------------
# LayerNorm, softmax, LUT, add
# ---------------------------------------------------------------------------------------------


def random_layernorm(rng: np.random.Generator, dim: int, extreme: bool = False) -> qp.LayerNormParams:
    if extreme:  # beyond the compiler's bounds: exercises the int64 product and int32 saturation
        gamma = rng.integers(-(1 << 31), 1 << 31, dim, dtype=np.int64).astype(np.int32)
        beta = rng.integers(-(1 << 31), 1 << 31, dim, dtype=np.int64).astype(np.int32)
        out = rand_requant(rng, -31, 30)
    else:
        gamma = rng.integers(-32767, 32768, dim).astype(np.int32)
        beta = rng.integers(-(1 << 30) + 1, 1 << 30, dim).astype(np.int32)
        out = rand_requant(rng, -26, -20)
    # epsilon: none, a typical one (eps 1e-5, s_in 0.05: 1e-5 * dim^2 / 0.0025 * 2^28), any, the largest
    epsilon = [0, round(4e-3 * dim * dim * 2**28), int(rng.integers(0, 1 << 62)), qp.LN_MAX_EPSILON][
        int(rng.integers(0, 4))
    ]
    return qp.LayerNormParams(dim, int(rng.integers(-127, 129)), rand_zp(rng), gamma, beta, out, epsilon)


@pytest.mark.parametrize("seed", range(4))
def test_layernorm(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    cases, expected = [], []
    for dim in (1, 2, 3, 17, 64, 255, qp.LN_MAX_DIM):
        p = random_layernorm(rng, dim, extreme=dim == 17)
        x = rand_s8(rng, 6, dim)
        x[1] = x[1, 0]  # zero variance
        x[2] = np.where(rng.random(dim) < 0.5, -128, 127)  # largest |d_i|
        x[3, :] = -128
        x[3, 0] = 127  # one outlier: |n| near 2^K * sqrt(dim - 1)
        x[4] = np.clip(x[4, 0] + (rng.random(dim) < 0.2), -128, 127)  # near-constant: epsilon matters
        in_place = bool(seed % 2)
        cases.append(layernorm_case(p, x, in_place))
        expected.append(ref.layernorm(p, x))
    x_q, x_f, s_x, zp_x = _input(rng, 6, 96)
    p, _, _, _ = _layernorm(rng, x_f, s_x, zp_x)
    cases.append(layernorm_case(p, x_q))
    expected.append(ref.layernorm(p, x_q))
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"layernorm case {i}")
        assert_same(res.outputs[0], exp, f"layernorm case {i} (dim {exp.shape[-1]})")


def test_layernorm_extreme_offsets(harness: kh.Harness) -> None:
    rng = np.random.default_rng(9)
    cases, expected = [], []
    for in_off in (-127, 128):
        for out_off in (-128, 127):
            p = replace(random_layernorm(rng, 50), input_offset=in_off, output_offset=out_off)
            x = rand_s8(rng, 3, 50)
            x[0] = 127
            cases.append(layernorm_case(p, x))
            expected.append(ref.layernorm(p, x))
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"layernorm offsets {i}")
        assert_same(res.outputs[0], exp, f"layernorm offsets {i}")


@pytest.mark.parametrize("seed", range(3))
def test_softmax(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(400 + seed)
    cases, expected = [], []
    for length in (1, 2, 7, 64, 197):
        p = qp.softmax_params(length, rand_scale(rng, 1e-3, 2.0))
        x = rand_s8(rng, 6, length)
        x[1] = x[1, 0]  # all equal
        x[2] = -128
        x[2, length // 2] = 127  # one-hot
        x[3] = 127
        x[4] = np.where(rng.random(length) < 0.5, -128, 127)
        cases.append(softmax_case(p, x, in_place=bool(seed % 2)))
        expected.append(ref.softmax(p, x))
    # the longest row: the sum reaches 32767 * 65536
    p = qp.softmax_params(qp.SOFTMAX_MAX_LENGTH, 0.05)
    x = np.full((1, qp.SOFTMAX_MAX_LENGTH), 5, dtype=np.int8)
    x[0, ::2] = rand_s8(rng, (qp.SOFTMAX_MAX_LENGTH + 1) // 2)
    cases.append(softmax_case(p, x))
    expected.append(ref.softmax(p, x))
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"softmax case {i}")
        assert_same(res.outputs[0], exp, f"softmax case {i}")


def _tie_tables() -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows of c1 maxima (e = 65536) and c2 entries with e = x where x * 256 + sum / 2 is an exact
    multiple of sum: exact rounding ties (512 x = odd * sum)."""
    found = []
    for c1 in (1, 2, 3):
        for c2 in range(1, 512):
            for odd in range(1, 512, 2):
                den = 512 - odd * c2
                if den <= 0:
                    break
                if (odd * c1 * 65536) % den == 0 and 0 < odd * c1 * 65536 // den <= 65536:
                    table = qp.exp_table(0.05)
                    table[1] = odd * c1 * 65536 // den
                    row = np.full((1, c1 + c2), -1, dtype=np.int8)
                    row[0, :c1] = 0
                    found.append((table, row))
    return found[::4]


def test_softmax_rounding_ties_and_odd_tables(harness: kh.Harness) -> None:
    rng = np.random.default_rng(19)
    cases, expected = [], []
    ties = _tie_tables()
    assert ties, "no rounding tie found"
    for table, row in ties:
        p = qp.SoftmaxParams(row.shape[1], table)
        cases.append(softmax_case(p, row))
        expected.append(ref.softmax(p, row))
        e1, n_max = int(table[1]), int((row == 0).sum())
        total = 65536 * n_max + e1 * (row.shape[1] - n_max)
        assert (e1 * 256 + total // 2) % total == 0, "constructed row is a rounding tie"
        assert int(expected[-1][0, -1]) == (e1 * 256 + total // 2) // total - 128
    row = np.full((1, 512), 3, dtype=np.int8)  # all equal, length 512: 256 / 512 rounds up to 1
    cases.append(softmax_case(qp.softmax_params(512, 0.1), row))
    expected.append(ref.softmax(qp.softmax_params(512, 0.1), row))
    assert (expected[-1] == 1 - 128).all()
    for _ in range(4):  # legal but non-monotone tables
        table = rng.integers(0, 65537, 256).astype(np.int32)
        table[0] = 65536
        p = qp.SoftmaxParams(40, table)
        x = rand_s8(rng, 8, 40)
        cases.append(softmax_case(p, x))
        expected.append(ref.softmax(p, x))
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"softmax tie case {i}")
        assert_same(res.outputs[0], exp, f"softmax tie case {i}")


def test_lut(harness: kh.Harness) -> None:
    rng = np.random.default_rng(11)
    table = rand_s8(rng, 256)
    x = np.concatenate([np.arange(-128, 128, dtype=np.int8), rand_s8(rng, 1000)])
    gelu = qp.gelu_table(0.05, 3, 0.03, -100)
    cases = [
        kh.Writer(kh.Op.LUT).params(qp.LutParams(table)).int(kh.LUT_FRESH).s8(x),
        kh.Writer(kh.Op.LUT).params(qp.LutParams(gelu)).int(kh.LUT_IN_PLACE).s8(x),
        kh.Writer(kh.Op.LUT).params(qp.LutParams(table)).int(kh.LUT_FRESH).s8(np.zeros(0, np.int8)),
    ]
    r1, r2, r3 = harness.run(cases)
    assert_same(r1.outputs[0], ref.lut(table, x), "lut")
    assert_same(r2.outputs[0], ref.lut(gelu, x), "lut in place")
    assert r3.status == OK and r3.outputs[0].size == 0


@pytest.mark.parametrize("seed", range(4))
def test_add(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(500 + seed)
    cases, expected = [], []
    for i in range(6):
        s1, s2, so = rand_scale(rng), rand_scale(rng), rand_scale(rng)
        p = qp.add_params(s1, rand_zp(rng), s2, rand_zp(rng), so, rand_zp(rng))
        if i == 5:
            p = replace(p, act_min=-20, act_max=90)
        a, b = rand_s8(rng, 300), rand_s8(rng, 300)
        a[:4], b[:4] = [-128, 127, -128, 127], [-128, 127, 127, -128]
        cases.append(add_case(p, a, b, alias=i % 3))
        expected.append(ref.add(p, a, b))
    # saturation: a tiny output scale, extreme offsets, positive input and output shifts
    p = qp.add_params(0.5, -128, 0.5, 127, 1e-4, 127)
    a, b = np.array([-128, 127, 127, -128, 0], np.int8), np.array([-128, 127, -128, 127, 0], np.int8)
    cases.append(add_case(p, a, b))
    expected.append(ref.add(p, a, b))
    p = replace(p, input1=qp.Requant(I32_MAX, 30), input2=qp.Requant(I32_MAX, 30), left_shift=23)
    cases.append(add_case(p, a, b))
    expected.append(ref.add(p, a, b))
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"add case {i}")
        assert_same(res.outputs[0], exp, f"add case {i}")


# ---------------------------------------------------------------------------------------------
# Attention pieces and fused blocks
# ---------------------------------------------------------------------------------------------


def random_head(rng: np.random.Generator, tokens: int, head_dim: int) -> qp.AttnHeadParams:
    return qp.AttnHeadParams(
        tokens=tokens,
        head_dim=head_dim,
        q_offset=int(rng.integers(-127, 129)),
        k_offset=int(rng.integers(-127, 129)),
        v_offset=int(rng.integers(-127, 129)),
        score_offset=rand_zp(rng),
        out_offset=rand_zp(rng),
        score=rand_requant(rng, -20, -8),
        av=rand_requant(rng, -20, -8),
    )


@pytest.mark.parametrize("seed", range(3))
def test_attn_head_kernels(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(600 + seed)
    cases, expected = [], []
    for tokens, hd, extra in ((1, 1, 0), (5, 8, 3), (49, 16, 0), (64, 27, 54)):
        p = random_head(rng, tokens, hd)
        stride = hd + extra
        q = rand_s8(rng, hd)
        mat = rand_s8(rng, tokens, stride)
        probs = rand_s8(rng, tokens)
        cases.append(kh.Writer(kh.Op.SCORES).params(p).int(stride).int(tokens).s8(q).s8(mat))
        expected.append(ref.attn_scores(p, q, mat[:, :hd]))
        cases.append(kh.Writer(kh.Op.WSUM).params(p).int(stride).int(hd).s8(probs).s8(mat))
        expected.append(ref.attn_weighted_sum(p, probs, mat[:, :hd]))
    # largest accumulators: all terms 255 * 255
    p = replace(random_head(rng, 300, 300), q_offset=128, k_offset=128, v_offset=128)
    full = np.full((300, 300), 127, np.int8)
    cases.append(kh.Writer(kh.Op.SCORES).params(p).int(300).int(300).s8(full[0]).s8(full))
    expected.append(ref.attn_scores(p, full[0], full))
    cases.append(kh.Writer(kh.Op.WSUM).params(p).int(300).int(300).s8(full[0]).s8(full))
    expected.append(ref.attn_weighted_sum(p, full[0], full))
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"attention head case {i}")
        assert_same(res.outputs[0], exp, f"attention head case {i}")


ATTN_CONFIGS = [  # tokens, dim, heads, qkv_rank
    (1, 8, 1, 0),
    (16, 32, 2, 0),
    (16, 48, 3, 8),
    (49, 64, 4, 16),
    (10, 24, 6, 1),
]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("config", ATTN_CONFIGS, ids=lambda c: "T{}-E{}-H{}-R{}".format(*c))
def test_attention_fused(harness: kh.Harness, config: tuple[int, int, int, int], seed: int) -> None:
    rng = np.random.default_rng(700 + seed)
    tokens, dim, heads, rank = config
    p, x = float_attention(rng, tokens, dim, heads, rank)
    x_sat = np.where(rng.random(x.shape) < 0.5, -128, 127).astype(np.int8)
    runs = [(replace(p, tile=t), xin) for t in (1, 2, 4) for xin in (x, x_sat)]  # token tiles: identical x
    for res, (pt, xin) in zip(harness.run([attention_case(pt, xin) for pt, xin in runs]), runs, strict=True):
        where = f"attention {config} tile {pt.tile}"
        check_ok(res, where)
        assert res.aux == scratch.attention_rowwise_s8_scratch_size(pt.tokens, pt.dim, pt.qkv_rank, pt.tile)
        k, v = ref.attention_kv(p, xin)
        assert_same(res.outputs[1], k, f"{where}: K buffer")
        assert_same(res.outputs[2], v, f"{where}: V buffer")
        assert_same(res.outputs[0], ref.attention_rowwise(p, xin), f"{where}: x")
    assert scratch.attention_rowwise_s8_scratch_size(p.tokens, p.dim, p.qkv_rank, 3) == -1


def test_attention_random_integer_params(harness: kh.Harness) -> None:
    """Arbitrary legal integer parameters (extreme offsets, random multipliers), not float-derived."""
    rng = np.random.default_rng(17)
    cases, params, xs = [], [], []
    for tokens, dim, heads, rank in ((12, 16, 2, 0), (9, 24, 3, 5)):
        qkv_in = rank or dim
        p = qp.AttentionParams(
            tokens=tokens,
            dim=dim,
            heads=heads,
            ln=random_layernorm(rng, dim),
            qkv_rank=rank,
            qkv_down=random_linear(rng, dim, rank, bias=False) if rank else qp.LinearParams.empty(),
            q=random_linear(rng, qkv_in, dim),
            k=random_linear(rng, qkv_in, dim),
            v=random_linear(rng, qkv_in, dim),
            head=replace(random_head(rng, tokens, dim // heads), q_offset=-127, k_offset=128),
            softmax=qp.softmax_params(tokens, rand_scale(rng, 0.01, 1.0)),
            proj=random_linear(rng, dim, dim),
            residual=qp.add_params(0.1, -128, 0.05, 127, 0.07, 0),
        )
        params.append(p)
        xs.append(rand_s8(rng, tokens, dim))
        cases.append(attention_case(p, xs[-1]))
    for res, p, x in zip(harness.run(cases), params, xs, strict=True):
        check_ok(res, "attention (random integer params)")
        assert_same(res.outputs[0], ref.attention_rowwise(p, x), "attention (random integer params)")


MLP_CONFIGS = [  # tokens, dim, hidden, rank
    (1, 8, 16, 0),
    (16, 32, 64, 0),
    (16, 32, 96, 8),
    (49, 64, 128, 1),
]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("config", MLP_CONFIGS, ids=lambda c: "T{}-E{}-M{}-R{}".format(*c))
def test_mlp_fused(harness: kh.Harness, config: tuple[int, int, int, int], seed: int) -> None:
    rng = np.random.default_rng(800 + seed)
    tokens, dim, hidden, rank = config
    p, x = float_mlp(rng, tokens, dim, hidden, rank)
    x_sat = np.full_like(x, -128 if seed else 127)
    tiles = (1, 2, 4)  # token tiles (a partial last tile when tokens % tile != 0): identical x
    runs = [(replace(p, tile=t), xin) for t in tiles for xin in (x, x_sat)]
    for res, (pt, xin) in zip(harness.run([mlp_case(pt, xin) for pt, xin in runs]), runs, strict=True):
        check_ok(res, f"mlp {config} tile {pt.tile}")
        assert res.aux == scratch.mlp_rowwise_s8_scratch_size(pt.dim, pt.hidden, pt.fc1.rank, pt.fc2.rank, pt.tile)
        assert_same(res.outputs[0], ref.mlp_rowwise(p, xin), f"mlp {config} tile {pt.tile}: x")
    assert scratch.mlp_rowwise_s8_scratch_size(p.dim, p.hidden, p.fc1.rank, p.fc2.rank, 3) == -1


@pytest.mark.parametrize("seed", range(2))
def test_patch_embed(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(900 + seed)
    configs = [(8, 8, 1, 2, 16), (12, 20, 3, 4, 24), (6, 6, 2, 6, 8), (16, 8, 3, 8, 12)]
    cases, params, images = [], [], []
    for image_h, image_w, channels, patch, dim in configs:
        p, img = float_patch_embed(rng, image_h, image_w, channels, patch, dim)
        for tile in (1, 2, 4):  # patches per pass (a partial last group per stripe): identical x
            params.append(replace(p, tile=tile))
            images.append(img)
            cases.append(patch_case(params[-1], img))
    for res, p, img in zip(harness.run(cases), params, images, strict=True):
        where = f"patch_embed {p.image_h}x{p.image_w}x{p.channels} tile {p.tile}"
        check_ok(res, where)
        assert res.aux == scratch.patch_embed_s8_scratch_size(*_patch_shape(p), p.tile)
        assert list(res.outputs[1]) == list(range(p.image_h // p.patch)), "stripes read once, in order"
        assert_same(res.outputs[0], ref.patch_embed(replace(p, tile=1), img), where)
    assert scratch.patch_embed_s8_scratch_size(*_patch_shape(params[0]), 3) == -1


def test_patch_embed_reader_error(harness: kh.Harness) -> None:
    rng = np.random.default_rng(5)
    p, img = float_patch_embed(rng, 12, 8, 2, 4, 8)
    res = harness.run_one(patch_case(p, img, fail_at=1))
    assert res.status == ERR_INPUT
    assert list(res.outputs[1]) == [0, 1]
    grid_w = p.image_w // p.patch
    assert_same(res.outputs[0][: grid_w * p.dim], ref.patch_embed(p, img)[:grid_w], "tokens before the failure")


@pytest.mark.parametrize("seed", range(3))
def test_pool_head(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    cases, params, xs = [], [], []
    for tokens, dim, classes in ((1, 8, 2), (16, 32, 10), (49, 64, 7)):
        p, x = float_pool_head(rng, tokens, dim, classes)
        params.append(p)
        xs.append(x)
        cases.append(pool_case(p, x))
    p = replace(params[1], pool_input_offset=128, pool_output_offset=-128, pool=rand_requant(rng, -31, 30))
    x = np.full((16, 32), 127, np.int8)
    params.append(p)
    xs.append(x)
    cases.append(pool_case(p, x))
    for res, p, x in zip(harness.run(cases), params, xs, strict=True):
        check_ok(res, "pool_head")
        assert res.aux == scratch.pool_head_s8_scratch_size(p.dim) == 4 * p.dim + 2 * scratch.align4(p.dim)
        assert_same(res.outputs[0], ref.pool_head(p, x), f"pool_head T{p.tokens} E{p.dim}")


# ---------------------------------------------------------------------------------------------
# Parameter checks
# ---------------------------------------------------------------------------------------------


def test_invalid_parameters(harness: kh.Harness) -> None:
    rng = np.random.default_rng(13)
    lin = random_linear(rng, 8, 4)
    x8 = rand_s8(rng, 1, 8)
    ln = random_layernorm(rng, 8)
    add = qp.add_params(0.1, 0, 0.1, 0, 0.1, 0)
    attn, xa = float_attention(rng, 8, 16, 2, 4)
    mlp, xm = float_mlp(rng, 8, 16, 32, 4)
    pool, xp = float_pool_head(rng, 8, 16, 3)
    patch, img = float_patch_embed(rng, 8, 8, 1, 4, 8)
    big_ln = qp.LayerNormParams(1025, 0, 0, np.zeros(1025, np.int32), np.zeros(1025, np.int32), qp.Requant(0, 0))
    bad_table = qp.exp_table(0.1)
    bad_table[0] = 65535
    lut_table = qp.gelu_table(0.05, 3, 0.03, -100)
    bad = {
        "linear in_features 0": linear_case(replace(lin, in_features=0, weights=np.zeros((4, 0), np.int8)), x8, False),
        "linear input_offset 129": linear_case(replace(lin, input_offset=129), x8, False),
        "linear output_offset 128": linear_case(replace(lin, output_offset=128), x8, True),
        "linear act_min > act_max": linear_case(replace(lin, act_min=5, act_max=4), x8, False),
        "linear multiplier < 2^30": linear_case(replace(lin, multiplier=np.full(4, 5, np.int32)), x8, False),
        "linear shift 31": linear_case(replace(lin, shift=np.full(4, 31, np.int32)), x8, False),
        "linear NULL weights": linear_case(replace(lin, weights=None), x8, False),
        "lowrank rank mismatch": lowrank_case(qp.LowRankParams(3, random_linear(rng, 8, 4), lin), x8),
        "layernorm dim 1025": layernorm_case(big_ln, rand_s8(rng, 1, 1025)),
        "layernorm dim 0": layernorm_case(replace(ln, dim=0, gamma=np.zeros(0, np.int32), beta=None), x8[:, :0]),
        "layernorm shift -32": layernorm_case(replace(ln, out=qp.Requant(1 << 30, -32)), x8),
        "layernorm epsilon 2^62": layernorm_case(replace(ln, epsilon=qp.LN_MAX_EPSILON + 1), x8),
        "layernorm epsilon 2^64 - 1": layernorm_case(replace(ln, epsilon=qp.UINT64_MAX), x8),
        "softmax length 32768": softmax_case(qp.softmax_params(32768, 0.1), rand_s8(rng, 1, 32768)),
        "softmax length 0": softmax_case(qp.softmax_params(0, 0.1), x8[:, :0]),
        "softmax table[0] != 65536": softmax_case(qp.SoftmaxParams(8, bad_table), x8),
        "softmax NULL table": softmax_case(qp.SoftmaxParams(8, None), x8),
        "lut NULL table": kh.Writer(kh.Op.LUT).params(qp.LutParams(None)).int(kh.LUT_FRESH).s8(x8[0]),
        "lut NULL params": kh.Writer(kh.Op.LUT).params(qp.LutParams(lut_table)).int(kh.LUT_NULL_PARAMS).s8(x8[0]),
        "add left_shift 24": add_case(replace(add, left_shift=24), x8[0], x8[0]),
        "add input2_offset -128": add_case(replace(add, input2_offset=-128), x8[0], x8[0]),
        "add act_max 128": add_case(replace(add, act_max=128), x8[0], x8[0]),
        "scores head_dim 0": kh.Writer(kh.Op.SCORES).params(random_head(rng, 4, 0)).int(1).int(4).s8(x8).s8(x8),
        "scores stride < head_dim": kh.Writer(kh.Op.SCORES)
        .params(random_head(rng, 2, 4))
        .int(3)
        .int(2)
        .s8(x8[0, :4])
        .s8(x8),
        "attention heads 3 of dim 16": attention_case(replace(attn, heads=3), xa),
        "attention head.tokens": attention_case(replace(attn, head=replace(attn.head, tokens=7)), xa),
        "attention softmax.length": attention_case(replace(attn, softmax=qp.softmax_params(7, 0.1)), xa),
        "attention q in_features": attention_case(replace(attn, qkv_rank=0), xa),
        "attention proj multiplier": attention_case(
            replace(attn, proj=replace(attn.proj, multiplier=np.full(16, 7, np.int32))), xa
        ),
        "attention residual offset": attention_case(
            replace(attn, residual=replace(attn.residual, output_offset=200)), xa
        ),
        "attention ln.dim": attention_case(replace(attn, ln=big_ln), xa),
        "attention ln.epsilon": attention_case(replace(attn, ln=replace(attn.ln, epsilon=qp.LN_MAX_EPSILON + 1)), xa),
        "mlp fc2 shape": mlp_case(replace(mlp, hidden=31), xm),
        "mlp NULL gelu": mlp_case(replace(mlp, gelu_table=None), xm),
        "mlp ln.epsilon": mlp_case(replace(mlp, ln=replace(mlp.ln, epsilon=qp.LN_MAX_EPSILON + 1)), xm),
        "mlp fc1 up multiplier": mlp_case(
            replace(mlp, fc1=replace(mlp.fc1, up=replace(mlp.fc1.up, shift=np.full(32, -40, np.int32)))), xm
        ),
        "pool misaligned scratch": pool_case(pool, xp, misalign=True),
        "pool classes": pool_case(replace(pool, classes=4), xp),
        "pool offset": pool_case(replace(pool, pool_input_offset=-128), xp),
        "pool ln.epsilon": pool_case(replace(pool, ln=replace(pool.ln, epsilon=qp.LN_MAX_EPSILON + 1)), xp),
        "patch proj.bias not NULL": patch_case(
            replace(patch, proj=replace(patch.proj, bias=np.zeros(8, np.int32))), img
        ),
        "patch image_w % patch": patch_case(replace(patch, image_w=6, token_bias=None), img[:, :6]),
    }
    results = harness.run(list(bad.values()))
    for name, res in zip(bad, results, strict=True):
        assert res.status == ERR_ARG, f"{name}: expected MCUF_ERR_ARG, got {res.status}"
    unchanged = {"attention": xa, "mlp": xm}
    for name, res in zip(bad, results, strict=True):
        kind = name.split()[0]
        if kind in unchanged:
            assert_same(res.outputs[0], unchanged[kind], f"{name}: x must be unchanged on MCUF_ERR_ARG")
        if kind == "pool":
            assert not res.outputs[0].any(), f"{name}: logits written despite MCUF_ERR_ARG"


def _patch_shape(p: qp.PatchEmbedParams) -> tuple[int, int, int, int]:
    return p.image_h, p.image_w, p.channels, p.patch


def test_scratch_sizes_negative_and_overflow() -> None:
    assert scratch.lowrank_linear_s8_scratch_size(-1) == -1
    assert scratch.lowrank_linear_s8_scratch_size(5) == 8
    assert scratch.lowrank_linear_s8_scratch_size(0) == 0
    assert scratch.pool_head_s8_scratch_size(3) == 12 + 4 + 4
    assert scratch.pool_head_s8_scratch_size(1 << 29) == -1
    assert scratch.patch_embed_s8_scratch_size(1 << 16, 1 << 20, 1 << 10, 1 << 4) == -1


# ---------------------------------------------------------------------------------------------
# Reference-only properties
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_fused_equals_unfused(seed: int) -> None:
    rng = np.random.default_rng(1100 + seed)
    for tokens, dim, heads, rank in ((16, 32, 2, 0), (25, 48, 4, 12), (9, 24, 3, 0)):
        p, x = float_attention(rng, tokens, dim, heads, rank)
        assert_same(ref.attention_rowwise(p, x), ref.attention_unfused(p, x), f"attention T{tokens} E{dim}")
    for tokens, dim, hidden, rank in ((16, 32, 64, 0), (25, 48, 96, 6)):
        p, x = float_mlp(rng, tokens, dim, hidden, rank)
        assert_same(ref.mlp_rowwise(p, x), ref.mlp_unfused(p, x), f"mlp T{tokens} E{dim}")


def test_reference_speed_full_size_layer() -> None:
    """One T=144, E=216 layer (attention + MLP) runs row-wise in well under a second; fused == unfused."""
    rng = np.random.default_rng(1200)
    pa, x = float_attention(rng, 144, 216, 4, 32)
    pm, _ = float_mlp(rng, 144, 216, 864, 0)
    start = time.perf_counter()
    y = ref.mlp_rowwise(pm, ref.attention_rowwise(pa, x))
    elapsed = time.perf_counter() - start
    assert_same(y, ref.mlp_unfused(pm, ref.attention_unfused(pa, x)), "full-size layer")
    assert elapsed < 5.0, f"row-wise reference took {elapsed:.2f} s for one layer"


def test_quantize_multiplier() -> None:
    rng = np.random.default_rng(14)
    for real in np.exp(rng.uniform(math.log(2.0**-31), math.log(2.0**29), 3000)):
        m, s = qp.quantize_multiplier(float(real))
        assert (1 << 30) <= m < (1 << 31) and -31 <= s <= 30
        assert abs(m * 2.0 ** (s - 31) - real) <= real * 2.0**-30
    assert qp.quantize_multiplier(0.0) == (0, 0)
    assert qp.quantize_multiplier(1.0) == (1 << 30, 1)
    assert qp.quantize_multiplier(0.5) == (1 << 30, 0)
    assert qp.quantize_multiplier(1.0 - 2.0**-40) == (1 << 30, 1)  # rounds to 2^31: renormalised
    assert qp.quantize_multiplier(2.0**-32) == (1 << 30, -31)
    assert qp.quantize_multiplier(2.0**-33) == (0, 0)  # shift < -31
    assert qp.quantize_multiplier(1e-12) == (0, 0)
    assert qp.quantize_multiplier(2.0**31) == (I32_MAX, 30)
    with pytest.raises(ValueError):
        qp.quantize_multiplier(-0.1)
    with pytest.raises(ValueError):
        qp.quantize_multiplier(float("nan"))
    # the integer requantization multiplies by `real` to within one unit
    x = rng.integers(-(1 << 20), 1 << 20, 5000)
    for real in (0.75, 3e-3, 1.7, 123.4, 2.0**-20):
        m, s = qp.quantize_multiplier(real)
        got = ref.requantize(x, m, s)
        assert np.abs(got - x * real).max() <= 1.0  # two roundings (srdhm, rdbpot), each <= 1/2


def test_rounding_and_qparams() -> None:
    assert list(qp.round_half_away(np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999999999999994]))) == [
        -3, -2, -1, 1, 2, 3, 0,
    ]  # fmt: skip
    s, zp = qp.choose_qparams(-1.0, 3.0)
    assert qp.quantize_tensor(0.0, s, zp) == zp  # zero is exact
    assert qp.quantize_tensor(-1.0, s, zp) == -128 and qp.quantize_tensor(3.0, s, zp) == 127
    assert qp.choose_qparams(0.5, 2.0)[1] == -128  # range extended to include 0
    assert qp.choose_qparams(-2.0, -0.5)[1] == 127
    assert qp.choose_qparams(0.0, 0.0) == (1.0, 0)


def test_layernorm_close_to_float() -> None:
    rng = np.random.default_rng(15)
    worst = 0
    for dim in (8, 64, 192, 1024):
        x_q, x, s_x, zp_x = _input(rng, 64, dim, scale=rng.uniform(0.2, 5.0))
        gamma, beta = 1.0 + 0.3 * rng.normal(size=dim), 0.3 * rng.normal(size=dim)
        y = _float_ln(x, gamma, beta)
        s_y, zp_y = _qp_of(y)
        p = qp.layernorm_params(gamma, beta, s_x, zp_x, s_y, zp_y, eps=LN_EPS)
        want = qp.quantize_tensor(y, s_y, zp_y).astype(np.int64)
        diff = np.abs(ref.layernorm(p, x_q).astype(np.int64) - want)
        worst = max(worst, int(diff.max()))
        assert diff.mean() < 0.1, f"dim {dim}: mean |diff| {diff.mean():.3f} LSB"
    assert worst <= 1, f"integer LayerNorm is {worst} LSB from float"


def test_softmax_close_to_float() -> None:
    rng = np.random.default_rng(16)
    for length in (4, 49, 197):
        s_in = rand_scale(rng, 0.01, 0.3)
        x = rand_s8(rng, 50, length)
        got = (ref.softmax(qp.softmax_params(length, s_in), x).astype(np.float64) + 128) / 256.0
        z = s_in * x.astype(np.float64)
        want = np.exp(z - z.max(axis=-1, keepdims=True))
        want /= want.sum(axis=-1, keepdims=True)
        assert np.abs(got - want).max() <= 1.0 / 256.0 + 1e-9


def test_add_and_gelu_close_to_float() -> None:
    rng = np.random.default_rng(18)
    for _ in range(20):
        s1, s2, so = rand_scale(rng, 0.01, 0.2), rand_scale(rng, 0.01, 0.2), rand_scale(rng, 0.01, 0.2)
        z1, z2, zo = rand_zp(rng), rand_zp(rng), rand_zp(rng)
        a, b = rand_s8(rng, 500), rand_s8(rng, 500)
        got = ref.add(qp.add_params(s1, z1, s2, z2, so, zo), a, b).astype(np.int64)
        want_f = qp.dequantize_tensor(a, s1, z1) + qp.dequantize_tensor(b, s2, z2)
        want = qp.quantize_tensor(want_f, so, zo).astype(np.int64)
        assert np.abs(got - want).max() <= 1
    x = np.arange(-128, 128, dtype=np.int8)
    table = qp.gelu_table(0.04, -10, 0.02, -30)
    want = qp.quantize_tensor(np.vectorize(qp.gelu)(qp.dequantize_tensor(x, 0.04, -10)), 0.02, -30)
    assert_same(ref.lut(table, x), want, "gelu table")
    assert abs(qp.gelu(1.0) - 0.8413447460685429) < 1e-12


def assert_represents(rq: qp.Requant, real: float, what: str) -> None:
    """rq is the Q31 form of `real` (mcuf.h: real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31)),
    rounded to the nearest multiplier: within half a multiplier step, 2^(shift - 32)."""
    assert 1 << 30 <= rq.multiplier < 1 << 31, f"{what}: multiplier {rq.multiplier} outside [2^30, 2^31)"
    step = 2.0 ** (rq.shift - 31)
    assert abs(rq.multiplier * step - real) <= step / 2, f"{what}: {rq} is {rq.multiplier * step}, want {real}"


def test_builder_scales_offsets_and_folded_bias() -> None:
    rng = np.random.default_rng(20)
    s_q, zp_q, s_k, zp_k, s_v, zp_v, s_s, zp_s, s_o, zp_o = 0.1, 3, 0.2, -5, 0.05, 7, 0.3, -20, 0.02, 11
    head = qp.attn_head_params(9, 8, s_q, zp_q, s_k, zp_k, s_v, zp_v, s_s, zp_s, s_o, zp_o)
    assert (head.tokens, head.head_dim) == (9, 8)
    # mcuf.h: offsets are pre-negated on the inputs, the zero point itself on the outputs
    assert (head.q_offset, head.k_offset, head.v_offset, head.score_offset, head.out_offset) == (-3, 5, -7, -20, 11)
    # scores: s_q * s_k / sqrt(head_dim) per unit of the int32 dot product, in steps of s_score
    assert_represents(head.score, s_q * s_k / (math.sqrt(8) * s_s), "score")
    # weighted sum: probabilities have scale 1/256 (zero point -128, mcuf.h)
    assert_represents(head.av, s_v / (256 * s_o), "av")
    # 0.05 / (16 * 0.04) = 0.078125 = 0.625 * 2^-3 exactly: multiplier 0.625 * 2^31, shift -3
    pool = qp.mean_pool_params(16, 0.05, 10, 0.04, -3)
    assert (pool.input_offset, pool.output_offset) == (-10, -3)
    assert (pool.requant.multiplier, pool.requant.shift) == (1_342_177_280, -3)
    assert_represents(qp.pool_requant(49, 0.031, 0.0123), 0.031 / (49 * 0.0123), "pool 49 tokens")
    # a per-token bias equals a per-channel bias plus a position embedding
    w, b, pos = rng.normal(size=(6, 12)), rng.normal(size=6), rng.normal(size=(4, 6))
    p1 = qp.patch_embed_params(w, b, 4, 4, 3, 2, 0.1, 0, 0.2, 0, pos_f=pos)
    p2 = qp.patch_embed_params(w, b[None, :] + pos, 4, 4, 3, 2, 0.1, 0, 0.2, 0)
    assert np.array_equal(p1.token_bias, p2.token_bias)


# ---------------------------------------------------------------------------------------------
# Builds
# ---------------------------------------------------------------------------------------------

# Undefined symbols the portable kernels may need: the library's own (mcuf_ public, mcufi_ internal,
# mcuf_internal.h), and from libgcc / libc: 64-bit division and shifts, integer division on cores
# without it, and compiler-generated block copies.
ALLOWED_EXTERNAL = re.compile(
    r"^(mcufi?_\w+|mem(cpy|set|move)|__aeabi_(u?ldivmod|u?idiv(mod)?|l(asl|lsr|asr)|lmul|mem(cpy|set|move|clr)\w*))$"
)


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m0plus", "cortex-m33"])
def test_arm_cross_compile(cpu: str, tmp_path: Path) -> None:
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)")
    objs = []
    for src in kh.runtime_sources():
        obj = tmp_path / (src.stem + ".o")
        cmd = [gcc, *kh.WARNINGS, "-O2", f"-mcpu={cpu}", "-mthumb", "-mfloat-abi=soft"]
        cmd += [f"-I{kh.RUNTIME / 'include'}", "-c", str(src), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{src.name} for {cpu}:\n{proc.stderr}"
        objs.append(obj)
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        return
    out = subprocess.run([nm, "-u", *map(str, objs)], capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1] for line in out.splitlines() if line.strip() and not line.endswith(":")}
    foreign = sorted(s for s in undefined if not ALLOWED_EXTERNAL.match(s))
    assert not foreign, f"kernels reference outside symbols (float, libc, ...): {foreign}"


def test_host_compile_pedantic(tmp_path: Path) -> None:
    cc = kh.host_cc()
    if cc is None:
        pytest.skip("no host C compiler")
    for src in kh.runtime_sources():
        cmd = [cc, *kh.WARNINGS, "-O2", "-pedantic-errors", "-Wshadow", "-Wcast-align", "-Wstrict-prototypes"]
        cmd += [f"-I{kh.RUNTIME / 'include'}", "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{src.name}:\n{proc.stderr}"

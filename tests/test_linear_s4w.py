"""Linear with packed int4 weights (mcuf_linear_s4w_s8 / mcuf_linear_rows_s4w_s8): the packing, the
quantization rule, and the portable C kernel bit-exact with the Python reference (host build with
ASan + UBSan; every weight array is an exact-size heap block, so reading past the packed bytes
fails). The DSP twin runs the same kind of cases in QEMU on M4, M7 and M33 (tests/dsp_vectors.py,
tests/test_dsp_kernels.py), where the instruction counts are measured too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from tests import kernel_harness as kh
from tests.kernel_cases import I32_MAX, I32_MIN, assert_same, check_ok, random_linear

_HERE = Path(__file__).resolve().parent

OK, ERR_ARG = 0, -1


def s4w_case(p: qp.LinearS4WParams, x: np.ndarray, rows_api: bool) -> kh.Writer:
    rows = x.shape[0] if rows_api else 1
    w = kh.Writer(kh.Op.LINEAR_ROWS_S4W if rows_api else kh.Op.LINEAR_S4W).params(p)
    return w.int(rows).int(p.out_features).s8(x.reshape(-1))


def random_s4w(rng: np.random.Generator, n_in: int, n_out: int, extreme: bool = False) -> qp.LinearS4WParams:
    """Random integer parameters with int4 weights over the whole nibble range [-8, 7]."""
    p = random_linear(rng, n_in, n_out, extreme=extreme)
    return qp.LinearS4WParams.from_linear(replace(p, weights=rng.integers(-8, 8, size=(n_out, n_in), dtype=np.int8)))


# --------------------------------------------------------------------------------------- packing
def test_packing_layout() -> None:
    """Blocks of 8 as bytes (w0,w1) (w4,w5) (w2,w3) (w6,w7), low nibble first; the in % 8 tail in
    order; an odd row ends with a zero padding nibble (mcuf.h)."""
    w = np.array([[-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2]], dtype=np.int8)  # one block + a tail of 3
    packed = qp.pack_s4(w)
    assert packed.dtype == np.int8 and packed.shape == (1, 6)
    assert [f"{b:02x}" for b in packed.view(np.uint8)[0]] == ["98", "dc", "ba", "fe", "10", "02"]
    rng = np.random.default_rng(41)
    for n_in in range(1, 41):
        w = rng.integers(-8, 8, size=(3, n_in)).astype(np.int8)
        packed = qp.pack_s4(w)
        assert packed.shape == (3, (n_in + 1) // 2)
        assert_same(qp.unpack_s4(packed, n_in), w, f"unpack(pack) in {n_in}")
        if n_in % 2:
            assert not (packed[:, -1].view(np.uint8) >> 4).any(), "padding nibble must be 0"
            garbage = packed.copy()
            garbage[:, -1] |= np.int8(-16)
            assert_same(qp.unpack_s4(garbage, n_in), w, f"padding ignored, in {n_in}")
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        qp.pack_s4(np.array([[8]]))
    with pytest.raises(ValueError, match=r"expected \(2, 2\)"):  # 4 inputs take 2 bytes per row, not 4
        qp.LinearS4WParams(4, 2, 0, 0, -128, 127, np.zeros((2, 4), np.int8), None, None, None)


def test_quantization_halves_weight_bytes() -> None:
    """Per-channel symmetric int4 (scale max|w[o]| / 7, values in [-7, 7]); the packed weights take
    half the bytes of int8 (odd rows: the padding nibble counted)."""
    rng = np.random.default_rng(42)
    for n_in in (7, 8, 64, 95):
        w_f = rng.normal(0.0, 0.2, size=(12, n_in))
        w_f[3] = 0.0  # an all-zero channel
        p8 = qp.linear_params(w_f, None, 0.05, 3, 0.1, -2)
        p4 = qp.linear_s4w_params(w_f, None, 0.05, 3, 0.1, -2)
        w4 = p4.unpacked().weights
        assert int(np.abs(w4).max()) == 7 and not w4[3].any()
        assert_same(w4, qp.quantize_weights(w_f, qp.INT4_QMAX)[0], f"int4 weights in {n_in}")
        amax = np.abs(w_f).max(axis=1)
        s_w = np.where(amax > 0, amax / 7.0, 1.0)
        assert np.abs(w4 * s_w[:, None] - w_f).max() <= 0.5 * s_w.max() + 1e-12
        assert p4.weights.nbytes == p4.weight_bytes == 12 * ((n_in + 1) // 2)
        assert p8.weights.nbytes == 12 * n_in
        if n_in % 2 == 0:
            assert 2 * p4.weights.nbytes == p8.weights.nbytes


# ------------------------------------------------------------------------------------ C kernels
@pytest.mark.parametrize("seed", range(3))
def test_linear_s4w_bit_exact(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(4400 + seed)
    cases, expected, shapes = [], [], []
    for n_in in list(range(1, 34)) + [64, 95, 96, 130, 257]:  # every tail of a block of 8, odd rows
        p = random_s4w(rng, n_in, int(rng.integers(1, 10)), extreme=n_in % 5 == 0)
        rows_api = bool(rng.integers(0, 2))
        x = rng.integers(-128, 128, size=(int(rng.integers(1, 4)) if rows_api else 1, n_in), dtype=np.int8)
        cases.append(s4w_case(p, x, rows_api))
        expected.append(ref.linear_s4w(p, x))
        shapes.append(f"in {n_in} out {p.out_features} rows {x.shape[0]}")
    x_f = rng.normal(size=(5, 48))
    s_x, zp_x = qp.choose_qparams(float(x_f.min()), float(x_f.max()))
    p = qp.linear_s4w_params(rng.normal(0, 0.2, (24, 48)), rng.normal(0, 0.1, 24), s_x, zp_x, 0.05, 4)
    x = qp.quantize_tensor(x_f, s_x, zp_x)
    cases.append(s4w_case(p, x, rows_api=True))
    expected.append(ref.linear_s4w(p, x))
    shapes.append("float-calibrated in 48 out 24 rows 5")
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"linear_s4w case {i}")
        assert_same(res.outputs[0], exp, f"linear_s4w case {i} ({shapes[i]})")


def test_linear_s4w_saturating_and_padding(harness: kh.Harness) -> None:
    """Largest accumulators (in_features 65535, |x + offset| = 255, w = -8 / 7, int32 bias limits),
    a non-zero padding nibble (ignored), and the int4 kernel equal to mcuf_linear_s8 on the same
    weights."""
    n_in = qp.LINEAR_MAX_IN  # odd: every row ends with a padding nibble
    cases, expected = [], []
    for x_val, off, w_val, bias in ((-128, -127, -8, I32_MIN), (127, 128, -8, I32_MAX), (127, 128, 7, None)):
        w = np.full((3, n_in), w_val, dtype=np.int8)
        b = None if bias is None else np.array([bias, -bias - 1, 0], dtype=np.int32)
        p8 = qp.LinearParams(
            n_in, 3, off, 5, -128, 127, w, b,
            np.array([I32_MAX, 1 << 30, 0], np.int32), np.array([30, -31, 0], np.int32),
        )  # fmt: skip
        p = qp.LinearS4WParams.from_linear(p8)
        padded = p.weights.copy()
        padded[:, -1] |= np.int8(-16)
        x = np.full((1, n_in), x_val, dtype=np.int8)
        assert_same(ref.linear_s4w(p, x), ref.linear(p8, x), "int4 reference == int8 reference")
        for params in (p, replace(p, weights=padded)):
            cases.append(s4w_case(params, x, rows_api=False))
            expected.append(ref.linear(p8, x))
    for i, (res, exp) in enumerate(zip(harness.run(cases), expected, strict=True)):
        check_ok(res, f"saturating linear_s4w {i}")
        assert_same(res.outputs[0], exp, f"saturating linear_s4w {i}")


def test_linear_s4w_invalid_parameters(harness: kh.Harness) -> None:
    """mcuf_linear_s8's ranges, MCUF_ERR_ARG, output untouched."""
    rng = np.random.default_rng(45)
    p = random_s4w(rng, 9, 4)
    x = rng.integers(-128, 128, size=(2, 9), dtype=np.int8)
    bad = {
        "in_features 0": replace(p, in_features=0, weights=np.zeros((4, 0), np.int8)),
        "NULL weights": replace(p, weights=None),
        "NULL multiplier": replace(p, multiplier=None),
        "input_offset 129": replace(p, input_offset=129),
        "output_offset 128": replace(p, output_offset=128),
        "act_min > act_max": replace(p, act_min=3, act_max=2),
        "multiplier < 2^30": replace(p, multiplier=np.full(4, 5, np.int32)),
        "shift 31": replace(p, shift=np.full(4, 31, np.int32)),
    }
    cases = [s4w_case(q, x, rows_api) for q in bad.values() for rows_api in (False, True)]
    for (name, rows_api), res in zip(((n, r) for n in bad for r in (False, True)), harness.run(cases), strict=True):
        assert res.status == ERR_ARG, f"{name} (rows API {rows_api}): expected MCUF_ERR_ARG, got {res.status}"
        assert (res.outputs[0] == 0x5A).all(), f"{name}: output written despite MCUF_ERR_ARG"

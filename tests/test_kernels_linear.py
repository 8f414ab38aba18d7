"""Linear and low-rank linear kernels (C vs Python, bit-exact), saturating edge cases included."""

from __future__ import annotations

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from tests import kernel_harness as kh
from tests.kernel_cases import (
    I32_MAX,
    I32_MIN,
    assert_same,
    check_ok,
    float_input,
    linear_case,
    lowrank_case,
    quant_linear_layer,
    quant_lowrank_layer,
    rand_s8,
    random_linear,
)


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
    x_q, x_f, s_x, zp_x = float_input(rng, 9, 48)
    p, _, _, _ = quant_linear_layer(rng, x_f, s_x, zp_x, 33)
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
    x_q, x_f, s_x, zp_x = float_input(rng, 5, 40)
    p, _, _, _ = quant_lowrank_layer(rng, x_f, s_x, zp_x, 24, rank=6)
    cases.append(lowrank_case(p, x_q))
    expected.append(ref.lowrank_linear(p, x_q))
    params.append(p)
    for i, (res, exp, p) in enumerate(zip(harness.run(cases), expected, params, strict=True)):
        check_ok(res, f"lowrank case {i}")
        assert res.aux == scratch.lowrank_linear_s8_scratch_size(p.rank) == scratch.align4(p.rank)
        assert_same(res.outputs[0], exp, f"lowrank case {i} (rank {p.rank})")

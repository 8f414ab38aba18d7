"""LayerNorm kernel (C vs Python, bit-exact) and its accuracy against float LayerNorm."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from tests import kernel_harness as kh
from tests.kernel_cases import (
    LN_EPS,
    assert_same,
    check_ok,
    float_input,
    float_layernorm,
    layernorm_case,
    qparams_of,
    quant_layernorm,
    rand_s8,
    random_layernorm,
)


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
    x_q, x_f, s_x, zp_x = float_input(rng, 6, 96)
    p, _, _, _ = quant_layernorm(rng, x_f, s_x, zp_x)
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


def test_layernorm_close_to_float() -> None:
    rng = np.random.default_rng(15)
    worst = 0
    for dim in (8, 64, 192, 1024):
        x_q, x, s_x, zp_x = float_input(rng, 64, dim, scale=rng.uniform(0.2, 5.0))
        gamma, beta = 1.0 + 0.3 * rng.normal(size=dim), 0.3 * rng.normal(size=dim)
        y = float_layernorm(x, gamma, beta)
        s_y, zp_y = qparams_of(y)
        p = qp.layernorm_params(gamma, beta, s_x, zp_x, s_y, zp_y, eps=LN_EPS)
        want = qp.quantize_tensor(y, s_y, zp_y).astype(np.int64)
        diff = np.abs(ref.layernorm(p, x_q).astype(np.int64) - want)
        worst = max(worst, int(diff.max()))
        assert diff.mean() < 0.1, f"dim {dim}: mean |diff| {diff.mean():.3f} LSB"
    assert worst <= 1, f"integer LayerNorm is {worst} LSB from float"

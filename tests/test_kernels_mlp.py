"""GELU table, residual add and the fused row-wise MLP kernel (C vs Python, bit-exact), and add / GELU
against float maths."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from tests import kernel_harness as kh
from tests.kernel_cases import (
    I32_MAX,
    OK,
    add_case,
    assert_same,
    check_ok,
    float_mlp,
    mlp_case,
    rand_s8,
    rand_scale,
    rand_zp,
)


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

"""Fixed-point arithmetic: SRDHM, rounding shifts, requantization, isqrt (C vs Python, bit-exact), and
the multiplier / scale builders of codegen.qparams against float products."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from tests import kernel_harness as kh
from tests.kernel_cases import (
    EDGE32,
    I32_MAX,
    I32_MIN,
    assert_same,
    attn_head_params,
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


def assert_represents(rq: qp.Requant, real: float, what: str) -> None:
    """rq is the Q31 form of `real` (mcuf.h: real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31)),
    rounded to the nearest multiplier: within half a multiplier step, 2^(shift - 32)."""
    assert 1 << 30 <= rq.multiplier < 1 << 31, f"{what}: multiplier {rq.multiplier} outside [2^30, 2^31)"
    step = 2.0 ** (rq.shift - 31)
    assert abs(rq.multiplier * step - real) <= step / 2, f"{what}: {rq} is {rq.multiplier * step}, want {real}"


def test_builder_scales_offsets_and_folded_bias() -> None:
    rng = np.random.default_rng(20)
    s_q, zp_q, s_k, zp_k, s_v, zp_v, s_s, zp_s, s_o, zp_o = 0.1, 3, 0.2, -5, 0.05, 7, 0.3, -20, 0.02, 11
    head = attn_head_params(9, 8, s_q, zp_q, s_k, zp_k, s_v, zp_v, s_s, zp_s, s_o, zp_o)
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

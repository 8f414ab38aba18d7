"""Softmax, attention-head and fused row-wise attention kernels (C vs Python, bit-exact), and the
softmax against float maths."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from tests import kernel_harness as kh
from tests.kernel_cases import (
    assert_same,
    attention_case,
    check_ok,
    float_attention,
    rand_s8,
    rand_scale,
    random_head,
    random_layernorm,
    random_linear,
    softmax_case,
)


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
        # V transposed: v_buf [dim][tokens]
        assert_same(res.outputs[2], np.ascontiguousarray(v.T).reshape(res.outputs[2].shape), f"{where}: V buffer")
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

"""Per-head attention schedule (mcuf_attention_perhead_s8): bit-exact with the row-wise schedule.

For every case: C per-head == C row-wise == ref.attention_rowwise == ref.attention_perhead, and the
per-head O / K_h / V_h buffers hold what the reference says. The C driver is built with ASan + UBSan
and every buffer (K_h, V_h, O, scratch) is an exact-size heap block, so any overrun fails the test.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from tests import kernel_harness as kh
from tests.kernel_cases import (
    assert_same,
    float_attention,
    rand_requant,
    rand_s8,
    rand_scale,
    rand_zp,
    random_head,
    random_layernorm,
    random_linear,
)

_HERE = Path(__file__).resolve().parent

OK, ERR_ARG = 0, -1
SRC = kh.RUNTIME / "src" / "attention_perhead.c"

# mode argument of Op.ATTENTION_PERHEAD (tests/c/kernel_harness.c)
RUN, SIZE_ONLY, NULL_KH, NULL_VH, NULL_O, NULL_SCRATCH = range(6)


# ---- cases ------------------------------------------------------------------------------------


def _head_dim(p: qp.AttentionParams) -> int:
    return p.dim // p.heads if p.heads >= 1 else 0


def perhead_case(p: qp.AttentionParams, x: np.ndarray | None, mode: int = RUN) -> kh.Writer:
    """K_h / V_h get exactly tokens * head_dim bytes and O tokens * dim (any size >= 0 when invalid)."""
    kh_len = max(p.tokens, 0) * max(_head_dim(p), 0) if mode != SIZE_ONLY else 0
    o_len = max(p.tokens, 0) * max(p.dim, 0) if mode != SIZE_ONLY else 0
    w = kh.Writer(kh.Op.ATTENTION_PERHEAD).params(p).int(mode).int(kh_len).int(o_len)
    return w.s8(None if x is None else x.reshape(-1))


def rowwise_case(p: qp.AttentionParams, x: np.ndarray) -> kh.Writer:
    return kh.Writer(kh.Op.ATTENTION).params(p).int(max(p.tokens, 0) * max(p.dim, 0)).s8(x.reshape(-1))


def random_attention(
    rng: np.random.Generator, tokens: int, dim: int, heads: int, rank: int, extreme: bool = False
) -> qp.AttentionParams:
    """Arbitrary legal integer parameters; `extreme`: zero / INT32_MAX multipliers, shifts over the
    whole range, int32-limit biases, offsets at their limits (saturation everywhere)."""
    qkv_in = rank or dim
    head = random_head(rng, tokens, dim // heads)
    if extreme:
        lim = [-127, 128]
        head = replace(
            head,
            q_offset=lim[int(rng.integers(2))],
            k_offset=lim[int(rng.integers(2))],
            v_offset=lim[int(rng.integers(2))],
            score=rand_requant(rng, -31, 30),
            av=rand_requant(rng, -31, 30),
        )
    s = [rand_scale(rng, 0.01, 0.2) for _ in range(3)]
    residual = qp.add_params(s[0], rand_zp(rng), s[1], rand_zp(rng), s[2], rand_zp(rng))
    if extreme:
        residual = replace(residual, input1_offset=128, input2_offset=-127, act_min=-100, act_max=90)
    return qp.AttentionParams(
        tokens=tokens,
        dim=dim,
        heads=heads,
        ln=random_layernorm(rng, dim, extreme),
        qkv_rank=rank,
        qkv_down=random_linear(rng, dim, rank, bias=False, extreme=extreme) if rank else qp.LinearParams.empty(),
        q=random_linear(rng, qkv_in, dim, extreme=extreme),
        k=random_linear(rng, qkv_in, dim, extreme=extreme),
        v=random_linear(rng, qkv_in, dim, extreme=extreme),
        head=head,
        softmax=qp.softmax_params(tokens, rand_scale(rng, 0.01, 1.0)),
        proj=random_linear(rng, dim, dim, extreme=extreme),
        residual=residual,
    )


def random_shape(rng: np.random.Generator) -> tuple[int, int, int, int]:
    """tokens 1..40, heads 1..4, head_dim 1..12; dense or low-rank (rank up to 2 * dim)."""
    heads = int(rng.integers(1, 5))
    dim = heads * int(rng.integers(1, 13))
    rank = 0 if rng.random() < 0.5 else int(rng.integers(1, 2 * dim + 1))
    return int(rng.integers(1, 41)), dim, heads, rank


def expected_buffers(p: qp.AttentionParams, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-head kernel's buffers at return: O (tokens, dim) and the last head's K_h, V_h."""
    t, h, hd = p.tokens, p.heads, p.dim // p.heads
    y = ref.layernorm(p.ln, x)
    r = ref.linear(p.qkv_down, y) if p.qkv_rank else y
    q, k, v = (ref.linear(lin, r).reshape(t, h, hd).transpose(1, 0, 2) for lin in (p.q, p.k, p.v))
    o = ref.attn_weighted_sum(p.head, ref.softmax(p.softmax, ref.attn_scores(p.head, q, k)), v)
    return o.transpose(1, 0, 2).reshape(t, p.dim), k[-1], v[-1]


def check_all_equal(harness: kh.Harness, params: list[qp.AttentionParams], xs: list[np.ndarray]) -> None:
    """C per-head == C row-wise == ref row-wise == ref per-head, plus buffers and scratch size."""
    cases = []
    for p, x in zip(params, xs, strict=True):
        cases += [perhead_case(p, x), rowwise_case(p, x)]
    results = harness.run(cases)
    for i, (p, x) in enumerate(zip(params, xs, strict=True)):
        what = f"case {i} T{p.tokens} E{p.dim} H{p.heads} R{p.qkv_rank}"
        ph, rw = results[2 * i], results[2 * i + 1]
        assert ph.status == OK and rw.status == OK, f"{what}: status per-head {ph.status}, row-wise {rw.status}"
        assert ph.aux == _perhead_scratch(p), f"{what}: scratch size"
        want = ref.attention_rowwise(p, x)
        assert_same(ref.attention_perhead(p, x), want, f"{what}: ref per-head vs ref row-wise")
        assert_same(rw.outputs[0], want, f"{what}: C row-wise vs ref")
        assert_same(ph.outputs[0], want, f"{what}: C per-head vs ref")
        o, k_last, v_last = expected_buffers(p, x)
        assert_same(ph.outputs[3], o, f"{what}: O buffer")
        assert_same(ph.outputs[1], k_last, f"{what}: K_h of the last head")
        assert_same(ph.outputs[2], v_last, f"{what}: V_h of the last head")


# ---- bit-exactness ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(2))
def test_perhead_equals_rowwise_float_calibrated(harness: kh.Harness, seed: int) -> None:
    """Realistic (float-calibrated) parameters on random shapes; each with a random and a saturated x."""
    rng = np.random.default_rng(4100 + seed)
    params, xs = [], []
    for _ in range(8):
        p, x = float_attention(rng, *random_shape(rng))
        params += [p, p]
        xs += [x, np.where(rng.random(x.shape) < 0.5, -128, 127).astype(np.int8)]
    check_all_equal(harness, params, xs)


@pytest.mark.parametrize("seed", range(2))
def test_perhead_equals_rowwise_random_integer_params(harness: kh.Harness, seed: int) -> None:
    rng = np.random.default_rng(4200 + seed)
    params, xs = [], []
    for _ in range(8):
        params.append(random_attention(rng, *random_shape(rng)))
        xs.append(rand_s8(rng, params[-1].tokens, params[-1].dim))
    check_all_equal(harness, params, xs)


def test_perhead_saturating(harness: kh.Harness) -> None:
    """Extreme parameters (every requantization and clamp saturates somewhere) and extreme inputs."""
    rng = np.random.default_rng(4300)
    params, xs = [], []
    shapes = [(1, 1, 1, 0), (40, 48, 4, 0), (7, 12, 3, 25), (33, 8, 2, 1), (40, 4, 4, 0), (2, 6, 2, 3)]
    for tokens, dim, heads, rank in shapes:
        p = random_attention(rng, tokens, dim, heads, rank, extreme=True)
        for x in (
            np.full((tokens, dim), 127, np.int8),
            np.full((tokens, dim), -128, np.int8),
            np.where(rng.random((tokens, dim)) < 0.5, -128, 127).astype(np.int8),
        ):
            params.append(p)
            xs.append(x)
    check_all_equal(harness, params, xs)


def test_reference_perhead_equals_rowwise_and_unfused() -> None:
    rng = np.random.default_rng(4400)
    for tokens, dim, heads, rank in ((49, 64, 4, 16), (16, 36, 3, 0), (5, 8, 1, 2)):
        p, x = float_attention(rng, tokens, dim, heads, rank)
        want = ref.attention_unfused(p, x)
        assert_same(ref.attention_perhead(p, x), want, f"ref per-head T{tokens} E{dim} H{heads}")
        assert_same(ref.attention_rowwise(p, x), want, f"ref row-wise T{tokens} E{dim} H{heads}")
    with pytest.raises(ValueError):
        ref.attention_perhead(replace(p, heads=3), x)


# ---- scratch sizes ------------------------------------------------------------------------------


def _shape_only(tokens: int, dim: int, heads: int, rank: int) -> qp.AttentionParams:
    """Parameters with the given shapes and no arrays: only the scratch-size function reads them."""
    lin = qp.LinearParams.empty()
    zero = qp.Requant(0, 0)
    return qp.AttentionParams(
        tokens=tokens,
        dim=dim,
        heads=heads,
        ln=qp.LayerNormParams(0, 0, 0, None, None, zero),
        qkv_rank=rank,
        qkv_down=lin,
        q=lin,
        k=lin,
        v=lin,
        head=qp.AttnHeadParams(0, 0, 0, 0, 0, 0, 0, zero, zero),
        softmax=qp.SoftmaxParams(0, None),
        proj=lin,
        residual=qp.AddParams(0, 0, 0, 0, zero, zero, zero, 0, 0),
    )


def _perhead_scratch(p: qp.AttentionParams) -> int:
    return scratch.attention_perhead_s8_scratch_size(p.tokens, p.dim, p.qkv_rank, p.heads)


def test_scratch_sizes_c_equals_python(harness: kh.Harness) -> None:
    rng = np.random.default_rng(4500)
    big = qp.INT32_MAX
    shapes = [(49, 64, 4, 16), (1, 1, 1, 0), (197, 192, 3, 0), (-1, 8, 1, 0), (8, -4, 2, 0), (8, -1, 2, 0)]
    shapes += [(8, 8, 0, 0), (8, 8, -2, 0), (8, 8, 2, -3), (big, 8, 1, 0), (big - 40, 12, 3, 4), (8, 1024, 7, 5)]
    shapes += [(big // 2, big // 2, 1, 0), (big - 3, 0, 1, 0), (big - 2, 0, 1, 0)]
    for _ in range(40):
        shapes.append(tuple(int(v) for v in rng.integers(-2, [300, 1100, 9, 300])))
    results = harness.run([perhead_case(_shape_only(*s), None, SIZE_ONLY) for s in shapes])
    for (tokens, dim, heads, rank), res in zip(shapes, results, strict=True):
        p = _shape_only(tokens, dim, heads, rank)
        assert res.aux == _perhead_scratch(p), f"shape {(tokens, dim, heads, rank)}"
    # layout: LN row 64 | rank row 16 | q_h row 16 | scores 52 | proj row 64
    assert _perhead_scratch(_shape_only(49, 64, 4, 16)) == 64 + 16 + 16 + 52 + 64
    assert _perhead_scratch(_shape_only(big - 2, 0, 1, 0)) == -1  # rounds up past INT32_MAX
    assert _perhead_scratch(_shape_only(big - 3, 0, 1, 0)) == big - 3  # already a multiple of 4


def test_perhead_buffers_smaller_than_rowwise() -> None:
    """K_h + V_h + O + scratch vs K + V + scratch: smaller as soon as heads > 2."""
    for tokens, dim, heads, rank in ((144, 216, 4, 32), (196, 192, 3, 0), (49, 64, 8, 16)):
        hd = dim // heads
        perhead = 2 * tokens * hd + tokens * dim + scratch.attention_perhead_s8_scratch_size(tokens, dim, rank, heads)
        rowwise = 2 * tokens * dim + scratch.attention_rowwise_s8_scratch_size(tokens, dim, rank)
        assert perhead < rowwise, (tokens, dim, heads, rank)


# ---- parameter checks ---------------------------------------------------------------------------


def test_invalid_parameters(harness: kh.Harness) -> None:
    """Both schedules return MCUF_ERR_ARG for the same parameters; x is unchanged."""
    rng = np.random.default_rng(4600)
    attn, x = float_attention(rng, 8, 16, 2, 4)  # head_dim 8
    hd = 8

    k_mult = attn.k.multiplier.copy()
    k_mult[-1] = 7  # only the last head's channels are bad
    v_shift = attn.v.shift.copy()
    v_shift[hd] = 31  # first channel of head 1
    wide = 70000  # qkv_rank > MCUF_LINEAR_MAX_IN: row-wise's q/k/v reject it too
    wide_down = qp.LinearParams(16, wide, 0, 0, -128, 127, None, None, None, None)
    wide_in = qp.LinearParams(wide, 16, 0, 0, -128, 127, None, None, None, None)
    big_ln = qp.LayerNormParams(1025, 0, 0, np.zeros(1025, np.int32), np.zeros(1025, np.int32), qp.Requant(0, 0))
    bad = {
        "heads 3 of dim 16": replace(attn, heads=3),
        "heads 0": replace(attn, heads=0),
        "tokens 0": replace(attn, tokens=0),
        "head.tokens": replace(attn, head=replace(attn.head, tokens=7)),
        "head.head_dim": replace(attn, head=replace(attn.head, head_dim=16)),
        "head q_offset 129": replace(attn, head=replace(attn.head, q_offset=129)),
        "head av shift -32": replace(attn, head=replace(attn.head, av=qp.Requant(1 << 30, -32))),
        "softmax.length": replace(attn, softmax=qp.softmax_params(7, 0.1)),
        "softmax table[0]": replace(attn, softmax=qp.SoftmaxParams(8, np.zeros(256, np.int32))),
        "q in_features (dense with low-rank q)": replace(attn, qkv_rank=0),
        "q NULL weights": replace(attn, q=replace(attn.q, weights=None)),
        "k multiplier of the last head": replace(attn, k=replace(attn.k, multiplier=k_mult)),
        "v shift of head 1": replace(attn, v=replace(attn.v, shift=v_shift)),
        "qkv_down act_min > act_max": replace(attn, qkv_down=replace(attn.qkv_down, act_min=3, act_max=2)),
        "qkv_rank 70000": replace(attn, qkv_rank=wide, qkv_down=wide_down, q=wide_in, k=wide_in, v=wide_in),
        "proj multiplier": replace(attn, proj=replace(attn.proj, multiplier=np.full(16, 7, np.int32))),
        "residual offset": replace(attn, residual=replace(attn.residual, output_offset=200)),
        "ln.dim": replace(attn, ln=big_ln),
    }
    cases = []
    for p in bad.values():
        cases += [perhead_case(p, x), rowwise_case(p, x)]
    null_modes = {"NULL kh_buf": NULL_KH, "NULL vh_buf": NULL_VH, "NULL o_buf": NULL_O, "NULL scratch": NULL_SCRATCH}
    cases += [perhead_case(attn, x, mode) for mode in null_modes.values()]
    results = harness.run(cases)
    for i, name in enumerate(bad):
        ph, rw = results[2 * i], results[2 * i + 1]
        assert (ph.status, rw.status) == (ERR_ARG, ERR_ARG), f"{name}: per-head {ph.status}, row-wise {rw.status}"
        assert_same(ph.outputs[0], x, f"{name}: per-head x must be unchanged")
        assert_same(rw.outputs[0], x, f"{name}: row-wise x must be unchanged")
    for name, res in zip(null_modes, results[2 * len(bad) :], strict=True):
        assert res.status == ERR_ARG, f"{name}: got {res.status}"
        assert_same(res.outputs[0], x, f"{name}: x must be unchanged")


def test_softmax_zero_sum_leaves_x_unchanged(harness: kh.Harness) -> None:
    """A table outside [0, 65536] can make a softmax sum wrap to zero (MCUF_ERR_ARG, data-dependent).
    Row-wise may have overwritten rows by then; per-head writes x only after every softmax."""
    rng = np.random.default_rng(4700)
    p, x = float_attention(rng, 2, 8, 2, 0)
    table = np.full(256, -65536, np.int32)
    table[0] = 65536  # a row of two different scores: 65536 + (2^32 - 65536) wraps to 0
    p = replace(p, softmax=qp.SoftmaxParams(2, table))
    for fn in (ref.attention_rowwise, ref.attention_perhead):
        with pytest.raises(ValueError, match="softmax sum is zero"):
            fn(p, x)
    ph, rw = harness.run([perhead_case(p, x), rowwise_case(p, x)])
    assert (ph.status, rw.status) == (ERR_ARG, ERR_ARG)
    assert_same(ph.outputs[0], x, "per-head x after a softmax error")


# ---- builds ------------------------------------------------------------------------------------


def test_cortex_m4_build(tmp_path: Path) -> None:
    """-Werror build for Cortex-M4; the object uses only public mcuf_* kernels and the attention helpers
    it shares with the row-wise schedule (common.c, no target twin): no libc, no float."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    obj = tmp_path / "attention_perhead.o"
    cmd = [gcc, *kh.WARNINGS, "-O2", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft", "-Wshadow", "-Wcast-align"]
    cmd += ["-pedantic-errors", f"-I{kh.RUNTIME / 'include'}", "-c", str(SRC), "-o", str(obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        return
    out = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert undefined <= {
        "mcuf_layernorm_s8",
        "mcuf_linear_s8",
        "mcuf_softmax_s8",
        "mcuf_attn_scores_s8",
        "mcuf_attn_weighted_sum_s8",
        "mcuf_add_s8",
        "mcufi_attention_check",
        "mcufi_attention_qkv_input",
        "mcufi_layout_size",
    }, sorted(undefined)

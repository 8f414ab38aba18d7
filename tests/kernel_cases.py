"""Shared builders of the kernel tests: random integer parameters, float reference layers quantized
by codegen.qparams, and the harness cases (one per kernel) that the per-family test files send."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from tests import kernel_harness as kh

OK, ERR_ARG, ERR_INPUT = 0, -1, -2


I32_MIN, I32_MAX = qp.INT32_MIN, qp.INT32_MAX


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


def qparams_of(a: np.ndarray) -> tuple[float, int]:
    return qp.choose_qparams(float(a.min()), float(a.max()))


def fake_quant(a: np.ndarray, s: float, zp: int) -> np.ndarray:
    """Fake-quantize: the float value the int8 tensor stands for."""
    return qp.dequantize_tensor(qp.quantize_tensor(a, s, zp), s, zp)


LN_EPS = 1e-5  # PyTorch's default LayerNorm epsilon


def float_layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = LN_EPS) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def float_linear(rng: np.random.Generator, x: np.ndarray, n_out: int, bias: bool = True):
    n_in = x.shape[-1]
    w = rng.normal(0.0, 1.0 / math.sqrt(n_in), size=(n_out, n_in))
    b = rng.normal(0.0, 0.1, size=n_out) if bias else None
    y = x @ w.T + (0.0 if b is None else b)
    return w, b, y


def quant_linear_layer(rng, x: np.ndarray, s_x: float, zp_x: int, n_out: int, bias: bool = True):
    """A float linear layer calibrated on x: (LinearParams, y_fq, s_y, zp_y)."""
    w, b, y = float_linear(rng, x, n_out, bias)
    s_y, zp_y = qparams_of(y)
    p = qp.linear_params(w, b, s_x, zp_x, s_y, zp_y)
    return p, fake_quant(y, s_y, zp_y), s_y, zp_y


def quant_lowrank_layer(rng, x: np.ndarray, s_x: float, zp_x: int, n_out: int, rank: int):
    if rank == 0:
        up, y, s_y, zp_y = quant_linear_layer(rng, x, s_x, zp_x, n_out)
        return qp.lowrank_params(up), y, s_y, zp_y
    down, mid, s_m, zp_m = quant_linear_layer(rng, x, s_x, zp_x, rank, bias=False)
    up, y, s_y, zp_y = quant_linear_layer(rng, mid, s_m, zp_m, n_out)
    return qp.lowrank_params(up, down), y, s_y, zp_y


def quant_layernorm(rng, x: np.ndarray, s_x: float, zp_x: int):
    dim = x.shape[-1]
    gamma = 1.0 + 0.2 * rng.normal(size=dim)
    beta = 0.2 * rng.normal(size=dim)
    y = float_layernorm(x, gamma, beta)
    s_y, zp_y = qparams_of(y)
    p = qp.layernorm_params(gamma, beta, s_x, zp_x, s_y, zp_y, eps=LN_EPS)
    return p, fake_quant(y, s_y, zp_y), s_y, zp_y


def quant_residual(x: np.ndarray, s_x: float, zp_x: int, a: np.ndarray, s_a: float, zp_a: int):
    out = x + a
    s_o, zp_o = qparams_of(out)
    return qp.add_params(s_x, zp_x, s_a, zp_a, s_o, zp_o)


def float_input(rng, tokens: int, dim: int, scale: float = 1.0):
    x_f = rng.normal(0.0, scale, size=(tokens, dim)) + rng.normal(0.0, 0.3 * scale, size=dim)
    s_x, zp_x = qparams_of(x_f)
    x_q = qp.quantize_tensor(x_f, s_x, zp_x)
    return x_q, qp.dequantize_tensor(x_q, s_x, zp_x), s_x, zp_x


def float_attention(rng: np.random.Generator, tokens: int, dim: int, heads: int, rank: int):
    """Attention params calibrated on a random float input; returns (params, x int8)."""
    x_q, x, s_x, zp_x = float_input(rng, tokens, dim)
    ln, y, s_y, zp_y = quant_layernorm(rng, x, s_x, zp_x)
    if rank:
        qkv_down, r, s_r, zp_r = quant_linear_layer(rng, y, s_y, zp_y, rank, bias=False)
    else:
        qkv_down, r, s_r, zp_r = qp.LinearParams.empty(), y, s_y, zp_y
    (q, qf, s_q, zp_q), (k, kf, s_k, zp_k), (v, vf, s_v, zp_v) = (
        quant_linear_layer(rng, r, s_r, zp_r, dim) for _ in range(3)
    )
    hd = dim // heads
    qh, khd, vh = (a.reshape(tokens, heads, hd).transpose(1, 0, 2) for a in (qf, kf, vf))
    scores = qh @ khd.transpose(0, 2, 1) / math.sqrt(hd)
    s_s, zp_s = qparams_of(scores)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    o = (probs @ vh).transpose(1, 0, 2).reshape(tokens, dim)
    s_o, zp_o = qparams_of(o)
    head = attn_head_params(tokens, hd, s_q, zp_q, s_k, zp_k, s_v, zp_v, s_s, zp_s, s_o, zp_o)
    proj, a, s_a, zp_a = quant_linear_layer(rng, fake_quant(o, s_o, zp_o), s_o, zp_o, dim)
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
        residual=quant_residual(x, s_x, zp_x, a, s_a, zp_a),
    )
    return p, x_q


def float_mlp(rng: np.random.Generator, tokens: int, dim: int, hidden: int, rank: int):
    x_q, x, s_x, zp_x = float_input(rng, tokens, dim)
    ln, y, s_y, zp_y = quant_layernorm(rng, x, s_x, zp_x)
    fc1, h, s_h, zp_h = quant_lowrank_layer(rng, y, s_y, zp_y, hidden, rank)
    g = np.vectorize(qp.gelu)(h)
    s_g, zp_g = qparams_of(g)
    fc2, m, s_m, zp_m = quant_lowrank_layer(rng, fake_quant(g, s_g, zp_g), s_g, zp_g, dim, rank)
    p = qp.MLPParams(
        tokens=tokens,
        dim=dim,
        hidden=hidden,
        ln=ln,
        fc1=fc1,
        gelu_table=qp.gelu_table(s_h, zp_h, s_g, zp_g),
        fc2=fc2,
        residual=quant_residual(x, s_x, zp_x, m, s_m, zp_m),
    )
    return p, x_q


def float_pool_head(rng: np.random.Generator, tokens: int, dim: int, classes: int):
    x_q, x, s_x, zp_x = float_input(rng, tokens, dim)
    ln, y, s_y, zp_y = quant_layernorm(rng, x, s_x, zp_x)
    pooled = y.mean(axis=0)
    s_p, zp_p = qparams_of(pooled)
    head, _, _, _ = quant_linear_layer(rng, fake_quant(pooled, s_p, zp_p)[None, :], s_p, zp_p, classes)
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
    s_i, zp_i = qparams_of(img_f)
    img = qp.quantize_tensor(img_f, s_i, zp_i)
    tokens = (image_h // patch) * (image_w // patch)
    w = rng.normal(0.0, 1.0 / math.sqrt(patch * patch * channels), size=(dim, patch * patch * channels))
    b = rng.normal(0.0, 0.1, size=dim)
    pos = rng.normal(0.0, 0.1, size=(tokens, dim))
    y = ref.patchify_hwc(qp.dequantize_tensor(img, s_i, zp_i), patch) @ w.T + b + pos
    s_y, zp_y = qparams_of(y)
    p = qp.patch_embed_params(w, b, image_h, image_w, channels, patch, s_i, zp_i, s_y, zp_y, pos_f=pos)
    return p, img


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


EDGE32 = np.array(
    [I32_MIN, I32_MIN + 1, -(1 << 30), -65536, -257, -2, -1, 0, 1, 2, 255, 65535, (1 << 30) - 1, 1 << 30, I32_MAX],
    dtype=np.int64,
)


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


def patch_shape(p: qp.PatchEmbedParams) -> tuple[int, int, int, int]:
    return p.image_h, p.image_w, p.channels, p.patch


@dataclass(frozen=True)
class ScaleZeroPoint:
    scale: float
    zero_point: int


def attn_head_params(
    tokens: int,
    head_dim: int,
    s_q: float,
    zp_q: int,
    s_k: float,
    zp_k: int,
    s_v: float,
    zp_v: int,
    s_score: float,
    zp_score: int,
    s_out: float,
    zp_out: int,
) -> qp.AttnHeadParams:
    """The compiler builds a head from its two primitive ops (codegen.ops attn_scores / attn_av); tests
    build one from scales directly. One head's score row (scale s_score, 1/sqrt(head_dim) folded in) and weighted sum.

    The probabilities feeding the weighted sum have scale 1/256 and zero point -128.
    """
    scores = qp.attn_scores_params(
        tokens, head_dim, ScaleZeroPoint(s_q, zp_q), ScaleZeroPoint(s_k, zp_k), ScaleZeroPoint(s_score, zp_score)
    )
    return qp.merge_attn_head(
        scores, qp.attn_av_params(tokens, head_dim, ScaleZeroPoint(s_v, zp_v), ScaleZeroPoint(s_out, zp_out))
    )

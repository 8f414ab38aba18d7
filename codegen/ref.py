"""Python integer reference of the C kernels (runtime_c/src): exactly the integers the C computes.

One function per C function, vectorised with numpy int64 over rows and elements. The fixed-point
helpers mirror mcuf_srdhm / mcuf_rdbpot / mcuf_requantize line by line; the rest follow the
formulas in mcuf.h. Dot products run as float64 matmuls (BLAS): every term and every partial sum
is an integer below 2^31 in magnitude, so they are exact in float64 (< 2^53) in any order.

``attention_rowwise`` / ``mlp_rowwise`` mirror the fused C loops (one token row at a time,
overwriting x); ``attention_unfused`` / ``mlp_unfused`` compute the same blocks op by op on
whole tensors (the full H x T x T scores). Fusion is exact: both give the same integers.
``attention_perhead`` mirrors the per-head schedule (mcuf_attention_perhead_s8), also exact.

Parameter errors (MCUF_ERR_ARG in C) raise ValueError here where they matter for shapes.
"""

from __future__ import annotations

import math

import numpy as np

from mcuformer.codegen.qparams import (
    INT32_MAX,
    INT32_MIN,
    LN_MAX_EPSILON,
    LN_NORM_BITS,
    LN_SQRT_BITS,
    AddParams,
    AttentionParams,
    AttnHeadParams,
    Conv2dParams,
    LayerNormParams,
    LinearParams,
    LinearS4WParams,
    LowRankParams,
    MLPParams,
    PatchEmbedParams,
    PatchEmbedPrefixParams,
    PoolHeadParams,
    PoolNormHeadParams,
    SoftmaxParams,
    TokenHeadParams,
)

U32_MASK = (1 << 32) - 1


def _i64(x: np.ndarray | int) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def _sat32(x: np.ndarray) -> np.ndarray:
    return np.clip(x, INT32_MIN, INT32_MAX)


def _to_s8(r: np.ndarray, offset: int, lo: int = -128, hi: int = 127) -> np.ndarray:
    """clamp(r + offset, lo, hi) as int8 (the C pre-clamps r to [-256, 255]: same result)."""
    return np.clip(r + offset, lo, hi).astype(np.int8)


# ---------------------------------------------------------------------------------------------
# Fixed-point helpers
# ---------------------------------------------------------------------------------------------


def srdhm(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """mcuf_srdhm: saturating rounding doubling high multiply (gemmlowp)."""
    a, b = _i64(a), _i64(b)
    ab = a * b  # |ab| <= 2^62
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    t = ab + nudge
    q = np.where(t >= 0, t >> 31, -((-t) >> 31))  # division truncating toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), q)


def rdbpot(x: np.ndarray | int, exponent: np.ndarray | int) -> np.ndarray:
    """mcuf_rdbpot: rounding divide by 2^exponent, ties away from zero; exponent clamped to [0, 31]."""
    x = _i64(x)
    e = np.clip(_i64(exponent), 0, 31)
    mask = np.left_shift(np.int64(1), e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def requantize(x: np.ndarray | int, multiplier: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """mcuf_requantize: rdbpot(srdhm(sat32(x * 2^left), m), right); shift clamped to [-31, 30]."""
    s = np.clip(_i64(shift), -31, 30)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    scaled = _sat32(_i64(x) * np.left_shift(np.int64(1), left))
    return rdbpot(srdhm(scaled, multiplier), right)


def isqrt_u64(v: np.ndarray | int) -> np.ndarray:
    """mcuf_isqrt_u64: floor(sqrt(v)) for 0 <= v < 2^64."""
    v = np.asarray(v)
    if v.dtype == np.uint64 or (v.size and (int(v.max()) >= 1 << 62 or int(v.min()) < 0)):
        flat = [math.isqrt(int(e)) for e in v.reshape(-1)]
        return np.array(flat, dtype=np.int64).reshape(v.shape)
    v = v.astype(np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r -= r * r > v  # float sqrt of v < 2^62 is off by at most one; (r + 1)^2 <= (2^31 + 1)^2 < 2^63
    r += (r + 1) * (r + 1) <= v
    return r


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


def _linear_core(p: LinearParams, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    x = np.asarray(x)
    if x.shape[-1] != p.in_features or p.weights is None:
        raise ValueError(f"linear input has {x.shape[-1]} features, params expect {p.in_features}")
    xf = x.astype(np.float64) + p.input_offset
    acc = np.rint(xf @ p.int8_weights().astype(np.float64).T).astype(np.int64)  # exact, |acc| < 2^31
    if bias is not None:
        acc = _sat32(acc + bias.astype(np.int64))
    r = requantize(acc, p.multiplier, p.shift)
    return _to_s8(r, p.output_offset, p.act_min, p.act_max)


def linear(p: LinearParams, x: np.ndarray) -> np.ndarray:
    """mcuf_linear_s8 / mcuf_linear_rows_s8: x (..., in_features) -> (..., out_features); int4
    weights (weight_format WEIGHTS_S4) give the integers of the int4 row kernel (mcuf_linear_s4w_s8)."""
    return _linear_core(p, x, p.bias)


linear_rows = linear


def linear_s4w(p: LinearS4WParams, x: np.ndarray) -> np.ndarray:
    """mcuf_linear_s4w_s8 / mcuf_linear_rows_s4w_s8: mcuf_linear_s8's arithmetic on the unpacked
    int4 weights (the same exact int32 dot products)."""
    return linear(p.unpacked(), x)


def lowrank_linear(p: LowRankParams, x: np.ndarray) -> np.ndarray:
    """mcuf_lowrank_linear_s8 (any leading dims)."""
    if p.rank == 0:
        return linear(p.up, x)
    return linear(p.up, linear(p.down, x))


def layernorm(p: LayerNormParams, x: np.ndarray) -> np.ndarray:
    """mcuf_layernorm_s8 over the last axis (dim), any leading dims."""
    x = np.asarray(x)
    dim = p.dim
    if x.shape[-1] != dim:
        raise ValueError(f"layernorm input has {x.shape[-1]} features, params expect {dim}")
    if not 0 <= p.epsilon <= LN_MAX_EPSILON:
        raise ValueError(f"layernorm epsilon {p.epsilon} is outside [0, {LN_MAX_EPSILON}] (MCUF_ERR_ARG in C)")
    n = layernorm_normalized(x.astype(np.int64) + p.input_offset, p.epsilon)
    acc = _sat32(n * p.gamma.astype(np.int64) + p.beta.astype(np.int64))
    return _to_s8(requantize(acc, p.out.multiplier, p.out.shift), p.output_offset)


def layernorm_normalized(xi: np.ndarray, epsilon: int) -> np.ndarray:
    """The normalized rows of mcuf_layernorm_s8 before gamma and beta: (x - mean) / sigma in
    Q(LN_NORM_BITS), int64, from the offset inputs xi (..., dim) and the integer epsilon."""
    k, dim = LN_NORM_BITS, xi.shape[-1]
    s = xi.sum(axis=-1, keepdims=True)
    d = xi * dim - s
    d_var = dim * (xi * xi).sum(axis=-1, keepdims=True) - s * s  # sum d_i^2 / dim, < 2^34
    r = (d_var << (2 * LN_SQRT_BITS)) + epsilon  # < 2^63 for epsilon <= LN_MAX_EPSILON
    sigma = np.maximum(isqrt_u64(r), 1 << LN_SQRT_BITS)
    inv = (1 << (30 + LN_SQRT_BITS)) // sigma
    return (d * inv + (1 << (29 - k))) >> (30 - k)


def softmax(p: SoftmaxParams, x: np.ndarray) -> np.ndarray:
    """mcuf_softmax_s8 over the last axis (length), any leading dims; output zp -128, scale 1/256."""
    x = np.asarray(x)
    if x.shape[-1] != p.length:
        raise ValueError(f"softmax input has length {x.shape[-1]}, params expect {p.length}")
    xi = x.astype(np.int64)
    m = xi.max(axis=-1, keepdims=True)
    table = p.exp_table.astype(np.int64) & U32_MASK  # (uint32_t)exp_table[d]
    e = table[m - xi]
    total = e.sum(axis=-1, keepdims=True) & U32_MASK
    if np.any(total == 0):
        raise ValueError("softmax sum is zero: exp_table is outside [0, 65536]")
    q = ((e * 256 + total // 2) & U32_MASK) // total
    return (np.minimum(q, 255) - 128).astype(np.int8)


def lut(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """mcuf_lut_s8: table[x + 128]."""
    return np.asarray(table, dtype=np.int8)[np.asarray(x).astype(np.int64) + 128]


def add(p: AddParams, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """mcuf_add_s8 (TFLite ADD int8), elementwise."""
    scale = 1 << p.left_shift
    x1 = (np.asarray(a).astype(np.int64) + p.input1_offset) * scale
    x2 = (np.asarray(b).astype(np.int64) + p.input2_offset) * scale
    s1 = requantize(x1, p.input1.multiplier, p.input1.shift)
    s2 = requantize(x2, p.input2.multiplier, p.input2.shift)
    r = requantize(_sat32(s1 + s2), p.output.multiplier, p.output.shift)
    return _to_s8(r, p.output_offset, p.act_min, p.act_max)


def _batched_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (..., n, k) @ b (..., k, m), or a (k,) @ b (k, m) -> (m,); exact integer result as int64."""
    if a.ndim == 1:
        return np.rint(a @ b).astype(np.int64)
    return np.rint(np.matmul(a, b)).astype(np.int64)


def attn_scores(p: AttnHeadParams, q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """mcuf_attn_scores_s8: q (head_dim,) and k (tokens, head_dim) -> scores (tokens,).

    Batched: q (..., n, head_dim) and k (..., tokens, head_dim) -> (..., n, tokens).
    """
    qf = np.asarray(q).astype(np.float64) + p.q_offset
    kf = np.asarray(k).astype(np.float64) + p.k_offset
    if qf.shape[-1] != p.head_dim or kf.shape[-1] != p.head_dim or kf.shape[-2] != p.tokens:
        raise ValueError(f"attn_scores shapes q {qf.shape}, k {kf.shape} do not match the params")
    acc = _batched_matmul(qf, np.swapaxes(kf, -1, -2))  # |acc| <= 255 * 255 * head_dim < 2^31
    return _to_s8(requantize(acc, p.score.multiplier, p.score.shift), p.score_offset)


def attn_weighted_sum(p: AttnHeadParams, probs: np.ndarray, v: np.ndarray) -> np.ndarray:
    """mcuf_attn_weighted_sum_s8: probs (tokens,) and v (tokens, head_dim) -> (head_dim,).

    Batched: probs (..., n, tokens) and v (..., tokens, head_dim) -> (..., n, head_dim).
    """
    pf = np.asarray(probs).astype(np.float64) + 128.0
    vf = np.asarray(v).astype(np.float64) + p.v_offset
    if pf.shape[-1] != p.tokens or vf.shape[-2:] != (p.tokens, p.head_dim):
        raise ValueError(f"attn_weighted_sum shapes probs {pf.shape}, v {vf.shape} do not match the params")
    acc = _batched_matmul(pf, vf)  # |acc| <= 255 * 255 * tokens < 2^31
    return _to_s8(requantize(acc, p.av.multiplier, p.av.shift), p.out_offset)


# ---------------------------------------------------------------------------------------------
# Fused blocks (mirror the C loops) and their unfused equivalents
# ---------------------------------------------------------------------------------------------


def _check_tokens(x: np.ndarray, tokens: int, dim: int) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != (tokens, dim) or x.dtype != np.int8:
        raise ValueError(f"x must be int8 {(tokens, dim)}, got {x.dtype} {x.shape}")
    return x


def _qkv_input(p: AttentionParams, x_rows: np.ndarray) -> np.ndarray:
    y = layernorm(p.ln, x_rows)
    return linear(p.qkv_down, y) if p.qkv_rank else y


def attention_kv(p: AttentionParams, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1 of mcuf_attention_rowwise_s8: the K and V buffers (tokens, dim)."""
    x = _check_tokens(x, p.tokens, p.dim)
    r = _qkv_input(p, x)
    return linear(p.k, r), linear(p.v, r)


def attention_rowwise(p: AttentionParams, x: np.ndarray) -> np.ndarray:
    """mcuf_attention_rowwise_s8: returns the new x (tokens, dim); the input is not modified."""
    x = _check_tokens(x, p.tokens, p.dim).copy()
    hd = p.dim // p.heads
    k_buf, v_buf = attention_kv(p, x)  # pass 1 (row by row in the C: the same integers)
    concat = np.empty(p.dim, dtype=np.int8)
    for t in range(p.tokens):  # pass 2: row t is overwritten once its query is done
        q = linear(p.q, _qkv_input(p, x[t]))
        for h in range(p.heads):
            cols = slice(h * hd, (h + 1) * hd)
            probs = softmax(p.softmax, attn_scores(p.head, q[cols], k_buf[:, cols]))
            concat[cols] = attn_weighted_sum(p.head, probs, v_buf[:, cols])
        x[t] = add(p.residual, x[t], linear(p.proj, concat))
    return x


def _out_rows(p: LinearParams, first: int, n: int) -> LinearParams:
    """Output channels [first, first + n) of p: the head view mcuf_attention_perhead_s8 gives mcuf_linear_s8."""
    rows = slice(first, first + n)

    def cut(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[rows]

    return LinearParams(
        in_features=p.in_features,
        out_features=n,
        input_offset=p.input_offset,
        output_offset=p.output_offset,
        act_min=p.act_min,
        act_max=p.act_max,
        weights=cut(p.weights),
        bias=cut(p.bias),
        multiplier=cut(p.multiplier),
        shift=cut(p.shift),
        weight_format=p.weight_format,
    )


def attention_perhead(p: AttentionParams, x: np.ndarray) -> np.ndarray:
    """mcuf_attention_perhead_s8: returns the new x (tokens, dim); the input is not modified.

    Same loops as the C: per head, K_h / V_h (tokens, head_dim) from LN + qkv_down recomputed per
    head, then each query row's head output into O; x is written only in the last loop. Equal to
    attention_rowwise bit for bit.
    """
    x = _check_tokens(x, p.tokens, p.dim).copy()
    if p.heads < 1 or p.dim % p.heads:
        raise ValueError(f"heads {p.heads} does not divide dim {p.dim}")
    hd = p.dim // p.heads
    kh_buf = np.empty((p.tokens, hd), dtype=np.int8)
    vh_buf = np.empty((p.tokens, hd), dtype=np.int8)
    o_buf = np.empty_like(x)
    for h in range(p.heads):
        k_h, v_h, q_h = (_out_rows(lin, h * hd, hd) for lin in (p.k, p.v, p.q))
        for t in range(p.tokens):  # pass 1 of head h
            r = _qkv_input(p, x[t])
            kh_buf[t] = linear(k_h, r)
            vh_buf[t] = linear(v_h, r)
        for t in range(p.tokens):  # pass 2 of head h
            q = linear(q_h, _qkv_input(p, x[t]))
            probs = softmax(p.softmax, attn_scores(p.head, q, kh_buf))
            o_buf[t, h * hd : (h + 1) * hd] = attn_weighted_sum(p.head, probs, vh_buf)
    for t in range(p.tokens):  # pass 3: projection and residual, x overwritten row by row
        x[t] = add(p.residual, x[t], linear(p.proj, o_buf[t]))
    return x


def attention_unfused(p: AttentionParams, x: np.ndarray) -> np.ndarray:
    """The attention block op by op on whole tensors, with the full (H, T, T) score tensor."""
    x = _check_tokens(x, p.tokens, p.dim)
    t, h = p.tokens, p.heads
    hd = p.dim // h
    r = _qkv_input(p, x)
    q, k, v = (linear(lin, r).reshape(t, h, hd).transpose(1, 0, 2) for lin in (p.q, p.k, p.v))  # (H, T, hd)
    scores = attn_scores(p.head, q, k)  # (H, T, T)
    probs = softmax(p.softmax, scores)
    out = attn_weighted_sum(p.head, probs, v)  # (H, T, hd)
    concat = out.transpose(1, 0, 2).reshape(t, p.dim)
    return add(p.residual, x, linear(p.proj, concat))


def mlp_rowwise(p: MLPParams, x: np.ndarray) -> np.ndarray:
    """mcuf_mlp_rowwise_s8: returns the new x (tokens, dim); the input is not modified."""
    x = _check_tokens(x, p.tokens, p.dim).copy()
    for t in range(p.tokens):
        h = lut(p.gelu_table, lowrank_linear(p.fc1, layernorm(p.ln, x[t])))
        x[t] = add(p.residual, x[t], lowrank_linear(p.fc2, h))
    return x


def mlp_unfused(p: MLPParams, x: np.ndarray) -> np.ndarray:
    """The MLP block op by op on whole (tokens, hidden) tensors."""
    x = _check_tokens(x, p.tokens, p.dim)
    h = lut(p.gelu_table, lowrank_linear(p.fc1, layernorm(p.ln, x)))
    return add(p.residual, x, lowrank_linear(p.fc2, h))


def patchify_hwc(image: np.ndarray, patch: int) -> np.ndarray:
    """(H, W, C) -> (tokens, patch*patch*C), patch vectors ordered (py, px, c), tokens row-major."""
    h, w, c = image.shape
    gh, gw = h // patch, w // patch
    x = image.reshape(gh, patch, gw, patch, c).transpose(0, 2, 1, 3, 4)
    return x.reshape(gh * gw, patch * patch * c)


def patch_embed(p: PatchEmbedParams, image: np.ndarray) -> np.ndarray:
    """mcuf_patch_embed_s8: int8 HWC image (image_h, image_w, channels) -> x (tokens, dim)."""
    image = np.asarray(image)
    if image.shape != (p.image_h, p.image_w, p.channels):
        raise ValueError(f"image must be {(p.image_h, p.image_w, p.channels)}, got {image.shape}")
    if p.proj.bias is not None or p.token_bias is None:
        raise ValueError("patch embedding needs proj.bias None and a token_bias")
    return _linear_core(p.proj, patchify_hwc(image, p.patch), p.token_bias)


def im2col_3x3(image: np.ndarray, stride: int, pad_value: int) -> np.ndarray:
    """(..., H, W, C) -> (..., out_h, out_w, 9*C): the 3x3 neighbourhoods (padding 1 filled with
    ``pad_value``) of every output pixel, ordered (ky, kx, c)."""
    image = np.asarray(image)
    *lead, h, w, c = image.shape
    padded = np.full((*lead, h + 2, w + 2, c), pad_value, dtype=image.dtype)
    padded[..., 1 : h + 1, 1 : w + 1, :] = image
    out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
    taps = [
        padded[..., ky : ky + stride * (out_h - 1) + 1 : stride, kx : kx + stride * (out_w - 1) + 1 : stride, :]
        for ky in range(3)
        for kx in range(3)
    ]
    return np.concatenate(taps, axis=-1)


def conv2d(p: Conv2dParams, image: np.ndarray) -> np.ndarray:
    """mcuf_conv2d_3x3_s8: int8 HWC (in_h, in_w, in_channels), any leading
    dims -> (out_h, out_w, out_channels). mcuf_linear_s8's arithmetic on each pixel's im2col vector;
    a padded tap holds -input_offset (the input's zero point), so (x + input_offset) is 0 there."""
    image = np.asarray(image)
    if image.shape[-3:] != (p.in_h, p.in_w, p.in_channels):
        raise ValueError(f"conv2d input must be {(p.in_h, p.in_w, p.in_channels)}, got {image.shape[-3:]}")
    if p.stride not in (1, 2) or p.proj.in_features != 9 * p.in_channels:
        raise ValueError("conv2d needs stride 1 or 2 and proj.in_features = 9 * in_channels")
    if not -128 <= -p.proj.input_offset <= 127:
        raise ValueError(f"conv2d input_offset {p.proj.input_offset} is not minus an int8 zero point")
    cols = im2col_3x3(image.astype(np.int64), p.stride, -p.proj.input_offset)
    return linear(p.proj, cols)


def pool_head(p: PoolHeadParams, x: np.ndarray) -> np.ndarray:
    """mcuf_pool_head_s8: x (tokens, dim) -> logits (classes,)."""
    x = _check_tokens(x, p.tokens, p.dim)
    y = layernorm(p.ln, x)
    pooled = mean_pool(y, 0, p.pool_input_offset, p.pool.multiplier, p.pool.shift, p.pool_output_offset)
    return linear(p.head, pooled.reshape(-1))


def mean_pool(x: np.ndarray, first_token: int, input_offset: int, multiplier: int, shift: int, output_offset: int):
    """Mean over rows [first_token, T) of x (..., T, dim) -> int8 (..., 1, dim), as the C pooling loops."""
    acc = (np.asarray(x)[..., first_token:, :].astype(np.int64) + input_offset).sum(axis=-2, keepdims=True)
    return _to_s8(requantize(acc, multiplier, shift), output_offset)


def patch_embed_prefix(p: PatchEmbedPrefixParams, image: np.ndarray) -> np.ndarray:
    """mcuf_patch_embed_prefix_s8: the prefix rows, then the patch tokens -> (prefix_tokens + tokens, dim)."""
    return np.concatenate([p.prefix.reshape(p.prefix_tokens, p.embed.dim), patch_embed(p.embed, image)])


def token_head(p: TokenHeadParams, x: np.ndarray) -> np.ndarray:
    """mcuf_token_head_s8: LN of rows 0..readout-1, concatenated, then the classifier."""
    x = _check_tokens(x, p.tokens, p.dim)
    return linear(p.head, layernorm(p.ln, x[: p.readout]).reshape(-1))


def pool_norm_head(p: PoolNormHeadParams, x: np.ndarray) -> np.ndarray:
    """mcuf_pool_norm_head_s8: mean over rows [first_token, tokens), LN, classifier."""
    x = _check_tokens(x, p.tokens, p.dim)
    pooled = mean_pool(x, p.first_token, p.pool_input_offset, p.pool.multiplier, p.pool.shift, p.pool_output_offset)
    return linear(p.head, layernorm(p.ln, pooled.reshape(-1)))

"""Integer parameters of the C kernels (runtime_c/include/mcuf.h).

Two parts:

- Frozen dataclasses that mirror the C parameter structs field by field: same names, same order.
  Scalars are Python ``int``; pointers are numpy arrays of the C element type (``np.int8`` /
  ``np.int32``) in the documented shape, or ``None`` for NULL; nested structs hold the nested
  dataclass. ``C_TYPE`` names the C struct. A code emitter can walk them with
  ``dataclasses.fields()`` and write C initializers in declaration order.
- Builders that turn float quantities (scales, zero points, float weights) into those integers.

Rounding: every float -> int conversion here rounds half away from zero (``round_half_away``),
as TFLite's ``std::round`` does; ``quantize_tensor`` uses the same rule.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

# Constants of mcuf.h.
LN_NORM_BITS = 12  # MCUF_LN_NORM_BITS (K)
LN_SQRT_BITS = 14  # MCUF_LN_SQRT_BITS (F)
LN_MAX_DIM = 1024  # MCUF_LN_MAX_DIM
LN_MAX_EPSILON = (1 << 62) - 1  # MCUF_LN_MAX_EPSILON
LN_GAMMA_MAX = (1 << 13) - 1  # |gamma| bound the compiler keeps: |n * gamma| < 2^17 * 2^13 = 2^30
UINT64_MAX = (1 << 64) - 1
INT8_QMAX = 127  # int8 weights: [-127, 127], scale max|w| / 127
INT4_QMAX = 7  # int4 weights: [-7, 7], scale max|w| / 7 (mcuf_linear_s4w_s8 accepts [-8, 7])
SOFTMAX_MAX_LENGTH = 32767  # MCUF_SOFTMAX_MAX_LENGTH
LINEAR_MAX_IN = 65535  # MCUF_LINEAR_MAX_IN
ADD_LEFT_SHIFT = 20
EXP_ONE = 1 << 16  # exp_table[0]
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
PROB_SCALE = 1.0 / 256.0  # softmax output scale
PROB_ZERO_POINT = -128  # softmax output zero point


# ---------------------------------------------------------------------------------------------
# Dataclasses mirroring the C structs
# ---------------------------------------------------------------------------------------------


def _check_array(obj: object, name: str, dtype: type, shape: tuple[int, ...] | None) -> None:
    """Require field `name` to be None or a C-contiguous array of `dtype` (and `shape`, if known)."""
    value = getattr(obj, name)
    if value is None:
        return
    if not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype):
        got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise TypeError(f"{type(obj).__name__}.{name} must be a numpy {np.dtype(dtype)} array or None, got {got}")
    if shape is not None and value.shape != shape:
        raise ValueError(f"{type(obj).__name__}.{name} has shape {value.shape}, expected {shape}")
    if not value.flags.c_contiguous:
        object.__setattr__(obj, name, np.ascontiguousarray(value))


def _check_ints(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{type(obj).__name__}.{name} must be an int, got {type(value).__name__}")
        if not INT32_MIN <= int(value) <= INT32_MAX:
            raise ValueError(f"{type(obj).__name__}.{name} = {value} does not fit int32_t")
        object.__setattr__(obj, name, int(value))


@dataclass(frozen=True, eq=False)
class Requant:
    C_TYPE: ClassVar[str] = "mcuf_requant"
    multiplier: int  # Q31, [2^30, 2^31) or 0
    shift: int  # [-31, 30], > 0 is a left shift

    def __post_init__(self) -> None:
        _check_ints(self, "multiplier", "shift")


# mcuf_linear_params.weight_format (mcuf.h): how `weights` is stored.
WEIGHTS_S8 = 0  # MCUF_WEIGHTS_S8: int8 [out_features][in_features]
WEIGHTS_S4 = 1  # MCUF_WEIGHTS_S4: packed int4 [out_features][(in_features + 1) / 2] bytes (pack_s4)
WEIGHT_FORMAT_OF_BITS = {8: WEIGHTS_S8, 4: WEIGHTS_S4}


def weight_row_bytes(in_features: int, weight_format: int) -> int:
    """Bytes of one output channel's weights: in_features (int8) or (in_features + 1) // 2 (packed
    int4: an odd row ends with a padding nibble)."""
    return (in_features + 1) // 2 if weight_format == WEIGHTS_S4 else in_features


def _check_linear_fields(obj: LinearParams | LinearS4WParams, weight_bytes_per_row: int) -> None:
    """The checks of the linear structs: int32 scalars, weights int8 (out_features,
    weight_bytes_per_row), bias / multiplier / shift int32 (out_features,)."""
    _check_ints(obj, "in_features", "out_features", "input_offset", "output_offset", "act_min", "act_max")
    known = obj.out_features >= 0 and obj.in_features >= 0
    _check_array(obj, "weights", np.int8, (obj.out_features, weight_bytes_per_row) if known else None)
    for name in ("bias", "multiplier", "shift"):
        _check_array(obj, name, np.int32, (obj.out_features,) if known else None)


@dataclass(frozen=True, eq=False)
class LinearParams:
    C_TYPE: ClassVar[str] = "mcuf_linear_params"
    # fields the emitter leaves out of the C initializer when 0 (C zero-initializes them): the
    # generated C of an int8-only model is as before weight_format existed
    OMIT_WHEN_ZERO: ClassVar[frozenset[str]] = frozenset({"weight_format"})
    in_features: int
    out_features: int
    input_offset: int  # -zero_point_in
    output_offset: int  # zero_point_out
    act_min: int
    act_max: int
    weights: np.ndarray | None  # int8 (out_features, weight_row_bytes(in_features, weight_format))
    bias: np.ndarray | None  # int32 (out_features,) or None
    multiplier: np.ndarray | None  # int32 (out_features,)
    shift: np.ndarray | None  # int32 (out_features,)
    weight_format: int = WEIGHTS_S8  # WEIGHTS_S8 or WEIGHTS_S4 (packed int4, pack_s4)

    def __post_init__(self) -> None:
        _check_ints(self, "weight_format")
        if self.weight_format not in (WEIGHTS_S8, WEIGHTS_S4):
            raise ValueError(f"LinearParams.weight_format must be 0 (int8) or 1 (int4), got {self.weight_format}")
        _check_linear_fields(self, weight_row_bytes(self.in_features, self.weight_format))

    @classmethod
    def empty(cls) -> LinearParams:
        """All-zero parameters with NULL pointers: the unused `down` of a dense low-rank layer."""
        return cls(0, 0, 0, 0, 0, 0, None, None, None, None)

    def int8_weights(self) -> np.ndarray | None:
        """The weights as int8 (out_features, in_features), unpacked when stored as int4."""
        if self.weights is None or self.weight_format == WEIGHTS_S8:
            return self.weights
        return unpack_s4(self.weights, self.in_features)

    def packed_s4(self) -> LinearParams:
        """The same layer with its int8 weights (in [-8, 7]) packed as int4 (weight_format WEIGHTS_S4)."""
        if self.weight_format != WEIGHTS_S8:
            raise ValueError("the weights are already packed")
        packed = None if self.weights is None else pack_s4(self.weights)
        return dataclasses.replace(self, weights=packed, weight_format=WEIGHTS_S4)


# Byte order of a block of 8 int4 weights (4 bytes of pairs (w0,w1) (w2,w3) (w4,w5) (w6,w7)): pairs
# 1 and 2 swapped (mcuf.h), so one word gives the SIMD lane pairs of 4 consecutive inputs. Its own
# inverse.
_S4_BLOCK_ORDER = np.array([0, 2, 1, 3])


def pack_s4(w_q: np.ndarray) -> np.ndarray:
    """Packed int4 rows (mcuf.h, mcuf_linear_s4w_params): int8 (out, (in + 1) // 2) bytes, two
    two's complement nibbles per byte, blocks of 8 weights in the order of _S4_BLOCK_ORDER, the
    in % 8 tail in order; a row of odd length ends with a zero padding nibble. w_q: integers in
    [-8, 7], shape (out, in)."""
    w = np.asarray(w_q, dtype=np.int64)
    if w.ndim != 2:
        raise ValueError(f"weights must be (out, in), got shape {w.shape}")
    if w.size and (int(w.min()) < -8 or int(w.max()) > 7):
        raise ValueError(f"int4 weights must be in [-8, 7], got [{int(w.min())}, {int(w.max())}]")
    n_out, n_in = w.shape
    nibbles = np.zeros((n_out, 2 * ((n_in + 1) // 2)), dtype=np.int64)
    nibbles[:, :n_in] = w & 0xF
    pairs = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)  # byte i // 2 of the in-order layout
    return _s4_reorder_blocks(pairs, n_in).astype(np.uint8).view(np.int8)


def unpack_s4(packed: np.ndarray, in_features: int) -> np.ndarray:
    """The int8 (out, in_features) weights of packed int4 rows, as the kernels read them (the
    padding nibble of an odd row is ignored)."""
    b = _s4_reorder_blocks(np.asarray(packed).view(np.uint8).astype(np.int64), in_features)
    nibbles = np.stack([b & 0xF, b >> 4], axis=-1).reshape(b.shape[0], -1)[:, :in_features]
    return ((nibbles ^ 8) - 8).astype(np.int8)


def _s4_reorder_blocks(row_bytes: np.ndarray, in_features: int) -> np.ndarray:
    """Swap byte pairs 1 and 2 of every full block of 8 weights (in-order <-> packed; an involution)."""
    n_block_bytes = 4 * (in_features // 8)
    out = row_bytes.copy()
    blocks = out[:, :n_block_bytes].reshape(out.shape[0], -1, 4)
    out[:, :n_block_bytes] = blocks[:, :, _S4_BLOCK_ORDER].reshape(out.shape[0], -1)
    return out


@dataclass(frozen=True, eq=False)
class LinearS4WParams:
    """mcuf_linear_s4w_params: LinearParams with packed int4 weights (pack_s4)."""

    C_TYPE: ClassVar[str] = "mcuf_linear_s4w_params"
    in_features: int
    out_features: int
    input_offset: int  # -zero_point_in
    output_offset: int  # zero_point_out
    act_min: int
    act_max: int
    weights: np.ndarray | None  # int8 (out_features, (in_features + 1) // 2), packed int4
    bias: np.ndarray | None  # int32 (out_features,) or None
    multiplier: np.ndarray | None  # int32 (out_features,)
    shift: np.ndarray | None  # int32 (out_features,)

    def __post_init__(self) -> None:
        _check_linear_fields(self, (self.in_features + 1) // 2)

    @classmethod
    def from_linear(cls, p: LinearParams) -> LinearS4WParams:
        """The same layer with its weights (in [-8, 7]) packed."""
        if p.weight_format != WEIGHTS_S8:
            raise ValueError("from_linear takes int8 weights (weight_format WEIGHTS_S8)")
        packed = None if p.weights is None else pack_s4(p.weights)
        fields = {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name != "weight_format"}
        return cls(**{**fields, "weights": packed})

    def unpacked(self) -> LinearParams:
        """The same layer as int8 LinearParams (mcuf_linear_s8 computes the same integers)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        weights = None if self.weights is None else unpack_s4(self.weights, self.in_features)
        return LinearParams(**{**fields, "weights": weights})

    @property
    def weight_bytes(self) -> int:
        """Flash bytes of the packed weights (padding nibbles included)."""
        return self.out_features * ((self.in_features + 1) // 2)


@dataclass(frozen=True, eq=False)
class LowRankParams:
    C_TYPE: ClassVar[str] = "mcuf_lowrank_params"
    rank: int  # 0 = dense
    down: LinearParams  # in -> rank; LinearParams.empty() when rank == 0
    up: LinearParams  # rank (or in) -> out

    def __post_init__(self) -> None:
        _check_ints(self, "rank")


@dataclass(frozen=True, eq=False)
class LayerNormParams:
    C_TYPE: ClassVar[str] = "mcuf_layernorm_params"
    dim: int
    input_offset: int
    output_offset: int
    gamma: np.ndarray | None  # int32 (dim,), gamma_f * 2^G
    beta: np.ndarray | None  # int32 (dim,), beta_f * 2^(K+G)
    out: Requant  # 1 / (2^(K+G) * s_out)
    epsilon: int = 0  # uint64_t: eps * dim^2 / s_in^2 * 2^(2F), [0, LN_MAX_EPSILON]
    UINT64_FIELDS: ClassVar[frozenset[str]] = frozenset({"epsilon"})

    def __post_init__(self) -> None:
        _check_ints(self, "dim", "input_offset", "output_offset")
        for name in ("gamma", "beta"):
            _check_array(self, name, np.int32, (self.dim,) if self.dim >= 0 else None)
        eps = self.epsilon
        if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, np.integer)):
            raise TypeError(f"LayerNormParams.epsilon must be an int, got {type(eps).__name__}")
        if not 0 <= int(eps) <= UINT64_MAX:
            raise ValueError(f"LayerNormParams.epsilon = {eps} does not fit uint64_t")
        object.__setattr__(self, "epsilon", int(eps))


@dataclass(frozen=True, eq=False)
class SoftmaxParams:
    C_TYPE: ClassVar[str] = "mcuf_softmax_params"
    length: int
    exp_table: np.ndarray | None  # int32 (256,)

    def __post_init__(self) -> None:
        _check_ints(self, "length")
        _check_array(self, "exp_table", np.int32, (256,))


@dataclass(frozen=True, eq=False)
class AddParams:
    C_TYPE: ClassVar[str] = "mcuf_add_params"
    input1_offset: int
    input2_offset: int
    output_offset: int
    left_shift: int
    input1: Requant
    input2: Requant
    output: Requant
    act_min: int
    act_max: int

    def __post_init__(self) -> None:
        _check_ints(self, "input1_offset", "input2_offset", "output_offset", "left_shift", "act_min", "act_max")


@dataclass(frozen=True, eq=False)
class AttnHeadParams:
    C_TYPE: ClassVar[str] = "mcuf_attn_head_params"
    tokens: int
    head_dim: int
    q_offset: int
    k_offset: int
    v_offset: int
    score_offset: int
    out_offset: int
    score: Requant  # s_q * s_k / (sqrt(head_dim) * s_score)
    av: Requant  # s_v / (256 * s_out)

    def __post_init__(self) -> None:
        _check_ints(self, "tokens", "head_dim", "q_offset", "k_offset", "v_offset", "score_offset", "out_offset")


@dataclass(frozen=True, eq=False)
class AttentionParams:
    C_TYPE: ClassVar[str] = "mcuf_attention_params"
    tokens: int
    dim: int
    heads: int
    ln: LayerNormParams
    qkv_rank: int  # 0 = dense
    qkv_down: LinearParams  # dim -> qkv_rank; LinearParams.empty() when dense
    q: LinearParams
    k: LinearParams
    v: LinearParams
    head: AttnHeadParams
    softmax: SoftmaxParams
    proj: LinearParams
    residual: AddParams
    tile: int = 1  # row-wise schedule: tokens per pass over the weights, 1, 2 or 4

    def __post_init__(self) -> None:
        _check_ints(self, "tokens", "dim", "heads", "qkv_rank", "tile")


@dataclass(frozen=True, eq=False)
class MLPParams:
    C_TYPE: ClassVar[str] = "mcuf_mlp_params"
    tokens: int
    dim: int
    hidden: int
    ln: LayerNormParams
    fc1: LowRankParams
    gelu_table: np.ndarray | None  # int8 (256,)
    fc2: LowRankParams
    residual: AddParams
    tile: int = 1  # tokens per pass over the weights: 1, 2 or 4

    def __post_init__(self) -> None:
        _check_ints(self, "tokens", "dim", "hidden", "tile")
        _check_array(self, "gelu_table", np.int8, (256,))


@dataclass(frozen=True, eq=False)
class PatchEmbedParams:
    C_TYPE: ClassVar[str] = "mcuf_patch_embed_params"
    image_h: int
    image_w: int
    channels: int
    patch: int
    dim: int
    proj: LinearParams  # patch*patch*channels -> dim, bias None
    token_bias: np.ndarray | None  # int32 (tokens, dim)
    tile: int = 1  # patches per pass over the weights: 1, 2 or 4

    def __post_init__(self) -> None:
        _check_ints(self, "image_h", "image_w", "channels", "patch", "dim", "tile")
        shape = None
        if self.patch > 0 and self.image_h >= 0 and self.image_w >= 0 and self.dim >= 0:
            shape = ((self.image_h // self.patch) * (self.image_w // self.patch), self.dim)
        _check_array(self, "token_bias", np.int32, shape)

    @property
    def tokens(self) -> int:
        return (self.image_h // self.patch) * (self.image_w // self.patch)


@dataclass(frozen=True, eq=False)
class Conv2dParams:
    """mcuf_conv2d_params: a 3x3 convolution (padding 1, stride 1 or 2) of an int8 HWC map as a linear
    layer over im2col vectors ordered (ky, kx, c); padded taps read the input zero point (-input_offset),
    so they add nothing. Per-output-channel weights, int32 bias (BatchNorm folded), ReLU in act_min."""

    C_TYPE: ClassVar[str] = "mcuf_conv2d_params"
    in_h: int
    in_w: int
    in_channels: int
    stride: int
    proj: LinearParams  # 9*in_channels -> out_channels, with bias

    def __post_init__(self) -> None:
        _check_ints(self, "in_h", "in_w", "in_channels", "stride")

    @property
    def out_h(self) -> int:
        return (self.in_h - 1) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.in_w - 1) // self.stride + 1

    @property
    def out_channels(self) -> int:
        return self.proj.out_features


@dataclass(frozen=True, eq=False)
class PoolHeadParams:
    C_TYPE: ClassVar[str] = "mcuf_pool_head_params"
    tokens: int
    dim: int
    classes: int
    ln: LayerNormParams
    pool_input_offset: int
    pool_output_offset: int
    pool: Requant  # s_y / (tokens * s_pooled)
    head: LinearParams

    def __post_init__(self) -> None:
        _check_ints(self, "tokens", "dim", "classes", "pool_input_offset", "pool_output_offset")


MAX_PREFIX_TOKENS = 16  # MCUF_MAX_PREFIX_TOKENS


@dataclass(frozen=True, eq=False)
class PatchEmbedPrefixParams:
    C_TYPE: ClassVar[str] = "mcuf_patch_embed_prefix_params"
    embed: PatchEmbedParams
    prefix_tokens: int  # class token (+ DeiT's distillation token), [0, MAX_PREFIX_TOKENS]
    prefix: np.ndarray | None  # int8 (prefix_tokens, embed.dim), in the residual stream's quantization

    def __post_init__(self) -> None:
        _check_ints(self, "prefix_tokens")
        known = 0 <= self.prefix_tokens and self.embed.dim >= 0
        _check_array(self, "prefix", np.int8, (self.prefix_tokens, self.embed.dim) if known else None)


@dataclass(frozen=True, eq=False)
class TokenHeadParams:
    C_TYPE: ClassVar[str] = "mcuf_token_head_params"
    tokens: int
    dim: int
    classes: int
    readout: int  # tokens 0 .. readout-1 are normalised and concatenated into the classifier's input
    ln: LayerNormParams
    head: LinearParams  # readout * dim -> classes

    def __post_init__(self) -> None:
        _check_ints(self, "tokens", "dim", "classes", "readout")


@dataclass(frozen=True, eq=False)
class PoolNormHeadParams:
    C_TYPE: ClassVar[str] = "mcuf_pool_norm_head_params"
    tokens: int
    first_token: int  # rows [first_token, tokens) are averaged (prefix tokens skipped)
    dim: int
    classes: int
    pool_input_offset: int
    pool_output_offset: int
    pool: Requant  # s_x / ((tokens - first_token) * s_pooled)
    ln: LayerNormParams
    head: LinearParams

    def __post_init__(self) -> None:
        _check_ints(self, "tokens", "first_token", "dim", "classes", "pool_input_offset", "pool_output_offset")


@dataclass(frozen=True, eq=False)
class LutParams:
    """mcuf_lut_params: a 256-entry int8 table, output = table[input + 128] (mcuf_lut_s8; the GELU).
    The fused MLP holds its table as a plain pointer (mcuf_mlp_params.gelu_table); None is NULL."""

    C_TYPE: ClassVar[str] = "mcuf_lut_params"
    table: np.ndarray | None  # int8 (256,)

    def __post_init__(self) -> None:
        _check_array(self, "table", np.int8, (256,))


PARAM_TYPES: tuple[type, ...] = (
    Requant,
    LinearParams,
    LinearS4WParams,
    LowRankParams,
    LayerNormParams,
    SoftmaxParams,
    AddParams,
    AttnHeadParams,
    AttentionParams,
    MLPParams,
    PatchEmbedParams,
    PoolHeadParams,
    PatchEmbedPrefixParams,
    TokenHeadParams,
    PoolNormHeadParams,
    LutParams,
    Conv2dParams,
)

# ---------------------------------------------------------------------------------------------
# Rounding and tensor quantization
# ---------------------------------------------------------------------------------------------


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """Round to nearest, ties away from zero, exactly (no ``floor(x + 0.5)`` double rounding)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    f = np.floor(a)
    r = f + (a - f >= 0.5)  # a - floor(a) is exact in binary floating point
    return np.copysign(r, x)


def _round_int(x: float) -> int:
    return int(round_half_away(x))


def _check_scale(name: str, scale: float) -> None:
    if not (math.isfinite(scale) and scale > 0.0):
        raise ValueError(f"{name} must be a positive finite scale, got {scale}")


def _check_zp(name: str, zp: int) -> None:
    if not -128 <= int(zp) <= 127:
        raise ValueError(f"{name} must be an int8 zero point, got {zp}")


def choose_qparams(vmin: float, vmax: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero_point) covering [min(vmin, 0), max(vmax, 0)]; 0.0 is exact."""
    lo, hi = min(float(vmin), 0.0), max(float(vmax), 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"range must be finite, got [{vmin}, {vmax}]")
    if hi == lo:
        return 1.0, 0
    scale = (hi - lo) / 255.0
    zp = _round_int(-128.0 - lo / scale)
    return scale, max(-128, min(127, zp))


def quantize_tensor(x: np.ndarray | float, scale: float, zero_point: int) -> np.ndarray:
    """clamp(round_half_away(x / scale) + zero_point, -128, 127) as int8."""
    _check_scale("scale", scale)
    q = round_half_away(np.asarray(x, dtype=np.float64) / scale) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize_tensor(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, dtype=np.float64) - int(zero_point)) * scale


# ---------------------------------------------------------------------------------------------
# Multipliers
# ---------------------------------------------------------------------------------------------


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real ~= multiplier * 2^(shift - 31), multiplier in [2^30, 2^31).

    0.0 -> (0, 0). A real below 2^-32 (shift < -31) -> (0, 0). A real >= 2^30 saturates to
    (2^31 - 1, 30). Negative or non-finite reals raise ValueError.
    """
    real = float(real)
    if not math.isfinite(real) or real < 0.0:
        raise ValueError(f"multiplier must be finite and >= 0, got {real}")
    if real == 0.0:
        return 0, 0
    mantissa, exponent = math.frexp(real)  # real = mantissa * 2^exponent, mantissa in [0.5, 1)
    q = _round_int(mantissa * float(1 << 31))  # scaling by 2^31 is exact
    if q == 1 << 31:
        q //= 2
        exponent += 1
    if exponent < -31:
        return 0, 0
    if exponent > 30:
        return INT32_MAX, 30
    return q, exponent


def requant(real: float) -> Requant:
    return Requant(*quantize_multiplier(real))


def quantize_weights(weight_f: np.ndarray, qmax: int = INT8_QMAX) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric: s_w[o] = max|w[o]| / qmax (1.0 for an all-zero row); qmax 127
    (int8) or INT4_QMAX (int4).

    Returns (int8 weights (out, in) in [-qmax, qmax], float64 scales (out,)).
    """
    w = np.asarray(weight_f, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be (out, in), got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    amax = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0])
    s_w = np.where(amax > 0.0, amax / float(qmax), 1.0)
    w_q = np.clip(round_half_away(w / s_w[:, None]), -qmax, qmax).astype(np.int8)
    return w_q, s_w


def _quantize_bias(bias_f: np.ndarray, bias_scale: np.ndarray) -> np.ndarray:
    b = round_half_away(np.asarray(bias_f, dtype=np.float64) / bias_scale)
    return np.clip(b, INT32_MIN, INT32_MAX).astype(np.int32)


def linear_params(
    weight_f: np.ndarray,
    bias_f: np.ndarray | None,
    s_in: float,
    zp_in: int,
    s_out: float,
    zp_out: int,
    act_min: int = -128,
    act_max: int = 127,
    weight_qmax: int = INT8_QMAX,
) -> LinearParams:
    """FULLY_CONNECTED int8 parameters for y = x @ W.T + b (W float (out, in), b float (out,));
    weights in [-weight_qmax, weight_qmax] (INT4_QMAX: the int4 grid, see linear_s4w_params)."""
    _check_scale("s_in", s_in)
    _check_scale("s_out", s_out)
    _check_zp("zp_in", zp_in)
    _check_zp("zp_out", zp_out)
    w_q, s_w = quantize_weights(weight_f, weight_qmax)
    n_out, n_in = w_q.shape
    pairs = [quantize_multiplier(s_in * float(s) / s_out) for s in s_w]
    bias = None
    if bias_f is not None:
        bias_f = np.asarray(bias_f, dtype=np.float64)
        if bias_f.shape != (n_out,):
            raise ValueError(f"bias has shape {bias_f.shape}, expected {(n_out,)}")
        bias = _quantize_bias(bias_f, s_in * s_w)
    return LinearParams(
        in_features=n_in,
        out_features=n_out,
        input_offset=-int(zp_in),
        output_offset=int(zp_out),
        act_min=int(act_min),
        act_max=int(act_max),
        weights=w_q,
        bias=bias,
        multiplier=np.array([m for m, _ in pairs], dtype=np.int32),
        shift=np.array([s for _, s in pairs], dtype=np.int32),
    )


def linear_s4w_params(
    weight_f: np.ndarray,
    bias_f: np.ndarray | None,
    s_in: float,
    zp_in: int,
    s_out: float,
    zp_out: int,
    act_min: int = -128,
    act_max: int = 127,
) -> LinearS4WParams:
    """linear_params with per-channel symmetric int4 weights (scale max|w[o]| / 7), packed."""
    return LinearS4WParams.from_linear(
        linear_params(weight_f, bias_f, s_in, zp_in, s_out, zp_out, act_min, act_max, weight_qmax=INT4_QMAX)
    )


def lowrank_params(up: LinearParams, down: LinearParams | None = None) -> LowRankParams:
    """Dense (down None, rank 0) or low-rank (rank = down.out_features) layer from two linears."""
    if down is None:
        return LowRankParams(rank=0, down=LinearParams.empty(), up=up)
    if up.in_features != down.out_features:
        raise ValueError(f"up.in_features {up.in_features} != down.out_features {down.out_features}")
    return LowRankParams(rank=down.out_features, down=down, up=up)


def layernorm_params(
    gamma_f: np.ndarray,
    beta_f: np.ndarray,
    s_in: float,
    zp_in: int,
    s_out: float,
    zp_out: int,
    eps: float = 0.0,
) -> LayerNormParams:
    """Integer LayerNorm (mcuf.h) of the float LayerNorm with epsilon ``eps`` (the model's).

    gamma = round(gamma_f * 2^G), beta = round(beta_f * 2^(K+G)) with G the largest integer (capped
    at 30 - K) such that max|gamma_f| * 2^G <= LN_GAMMA_MAX and max|beta_f| * 2^(K+G) <= 2^30 - 1.
    LayerNorm is invariant to the input scale except through the epsilon, which in the integer
    domain (x in input steps, d_i = dim * (x_i - mean)) is eps * dim^2 / s_in^2, carried in Q(2F):
    epsilon = round(eps * dim^2 / s_in^2 * 2^(2F)), clamped to LN_MAX_EPSILON.
    """
    _check_scale("s_in", s_in)
    _check_scale("s_out", s_out)
    _check_zp("zp_in", zp_in)
    _check_zp("zp_out", zp_out)
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"LayerNorm epsilon must be finite and >= 0, got {eps}")
    g = np.asarray(gamma_f, dtype=np.float64).reshape(-1)
    b = np.asarray(beta_f, dtype=np.float64).reshape(-1)
    if g.shape != b.shape or g.size == 0:
        raise ValueError(f"gamma {g.shape} and beta {b.shape} must be the same non-empty shape")
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(b))):
        raise ValueError("gamma and beta must be finite")
    k = LN_NORM_BITS
    gexp = layernorm_gamma_exponent(float(np.abs(g).max()), float(np.abs(b).max()))
    gamma_q = round_half_away(g * 2.0**gexp).astype(np.int32)
    beta_q = round_half_away(b * 2.0 ** (k + gexp)).astype(np.int32)
    epsilon = layernorm_epsilon(eps, g.size, s_in)
    return LayerNormParams(
        dim=g.size,
        input_offset=-int(zp_in),
        output_offset=int(zp_out),
        gamma=gamma_q,
        beta=beta_q,
        out=requant(1.0 / (2.0 ** (k + gexp) * s_out)),
        epsilon=epsilon,
    )


def layernorm_gamma_exponent(g_max: float, b_max: float) -> int:
    """G of layernorm_params: the largest integer (at most 30 - K) with g_max * 2^G <= LN_GAMMA_MAX and
    b_max * 2^(K+G) <= 2^30 - 1 (gamma is stored as round(gamma * 2^G), beta as round(beta * 2^(K+G)))."""
    k = LN_NORM_BITS
    gexp = 30 - k
    while g_max * 2.0**gexp > float(LN_GAMMA_MAX) or b_max * 2.0 ** (k + gexp) > float((1 << 30) - 1):
        gexp -= 1
    return gexp


def layernorm_epsilon(eps: float, dim: int, s_in: float) -> int:
    """The model's epsilon in the integer LayerNorm's units: round(eps * dim^2 / s_in^2 * 2^(2F)), clamped."""
    eps_q = eps * float(dim) ** 2 / (s_in * s_in) * 2.0 ** (2 * LN_SQRT_BITS)
    return LN_MAX_EPSILON if eps_q >= LN_MAX_EPSILON else _round_int(eps_q)


def exp_table(s_in: float) -> np.ndarray:
    """exp_table[d] = round(2^16 * exp(-s_in * d)), d in [0, 255]; int32 (256,)."""
    _check_scale("s_in", s_in)
    d = np.arange(256, dtype=np.float64)
    return round_half_away(EXP_ONE * np.exp(-s_in * d)).astype(np.int32)


def softmax_params(length: int, s_in: float) -> SoftmaxParams:
    """Softmax over `length` int8 inputs of scale s_in (output scale 1/256, zero point -128)."""
    return SoftmaxParams(length=int(length), exp_table=exp_table(s_in))


def lut_table(fn: Callable[[float], float], s_in: float, zp_in: int, s_out: float, zp_out: int) -> np.ndarray:
    """table[q + 128] = quantize(fn(dequantize(q))) for every int8 q; int8 (256,)."""
    _check_scale("s_in", s_in)
    _check_scale("s_out", s_out)
    _check_zp("zp_in", zp_in)
    _check_zp("zp_out", zp_out)
    q = np.arange(-128, 128, dtype=np.float64)
    y = np.array([fn(float(v)) for v in s_in * (q - zp_in)], dtype=np.float64)
    return quantize_tensor(y, s_out, zp_out)


def gelu(x: float) -> float:
    """Exact (erf) GELU, as torch.nn.functional.gelu's default."""
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def gelu_tanh(x: float) -> float:
    """Tanh-form GELU, as torch.nn.functional.gelu(approximate='tanh')."""
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


GELU_FORMS: dict[str, Callable[[float], float]] = {"none": gelu, "tanh": gelu_tanh}


def gelu_table(s_in: float, zp_in: int, s_out: float, zp_out: int, approximate: str = "none") -> np.ndarray:
    """The 256-entry GELU table; ``approximate`` is torch's name of the form: 'none' (erf) or 'tanh'."""
    if approximate not in GELU_FORMS:
        raise ValueError(f"GELU form must be one of {sorted(GELU_FORMS)}, got {approximate!r}")
    return lut_table(GELU_FORMS[approximate], s_in, zp_in, s_out, zp_out)


def add_params(
    s1: float,
    zp1: int,
    s2: float,
    zp2: int,
    s_out: float,
    zp_out: int,
    act_min: int = -128,
    act_max: int = 127,
) -> AddParams:
    """TFLite ADD int8: inputs rescaled to twice the larger input scale, with 20 bits of headroom."""
    for name, s in (("s1", s1), ("s2", s2), ("s_out", s_out)):
        _check_scale(name, s)
    for name, zp in (("zp1", zp1), ("zp2", zp2), ("zp_out", zp_out)):
        _check_zp(name, zp)
    twice_max_input_scale = 2.0 * max(s1, s2)
    return AddParams(
        input1_offset=-int(zp1),
        input2_offset=-int(zp2),
        output_offset=int(zp_out),
        left_shift=ADD_LEFT_SHIFT,
        input1=requant(s1 / twice_max_input_scale),
        input2=requant(s2 / twice_max_input_scale),
        output=requant(twice_max_input_scale / ((1 << ADD_LEFT_SHIFT) * s_out)),
        act_min=int(act_min),
        act_max=int(act_max),
    )


class ScaleZeroPoint(Protocol):
    """Anything with a per-tensor scale and zero point (e.g. codegen.ir.QParams)."""

    scale: float
    zero_point: int


def attn_scores_params(
    tokens: int, head_dim: int, q: ScaleZeroPoint, k: ScaleZeroPoint, score: ScaleZeroPoint
) -> AttnHeadParams:
    """The score half of a head (1/sqrt(head_dim) folded in); the AV fields are zero.

    Valid as is for mcuf_attn_scores_s8; merge_attn_head() joins it with attn_av_params().
    """
    _check_scale("q.scale", q.scale)
    _check_scale("k.scale", k.scale)
    _check_scale("score.scale", score.scale)
    for name, zp in (("q", q.zero_point), ("k", k.zero_point), ("score", score.zero_point)):
        _check_zp(f"{name}.zero_point", zp)
    if head_dim < 1:
        raise ValueError(f"head_dim must be >= 1, got {head_dim}")
    return AttnHeadParams(
        tokens=int(tokens),
        head_dim=int(head_dim),
        q_offset=-int(q.zero_point),
        k_offset=-int(k.zero_point),
        v_offset=0,
        score_offset=int(score.zero_point),
        out_offset=0,
        score=requant(q.scale * k.scale / (math.sqrt(head_dim) * score.scale)),
        av=Requant(0, 0),
    )


def attn_av_params(tokens: int, head_dim: int, v: ScaleZeroPoint, out: ScaleZeroPoint) -> AttnHeadParams:
    """The weighted-sum half of a head (probs: scale 1/256, zero point -128); the score fields are zero.

    Valid as is for mcuf_attn_weighted_sum_s8.
    """
    _check_scale("v.scale", v.scale)
    _check_scale("out.scale", out.scale)
    _check_zp("v.zero_point", v.zero_point)
    _check_zp("out.zero_point", out.zero_point)
    return AttnHeadParams(
        tokens=int(tokens),
        head_dim=int(head_dim),
        q_offset=0,
        k_offset=0,
        v_offset=-int(v.zero_point),
        score_offset=0,
        out_offset=int(out.zero_point),
        score=Requant(0, 0),
        av=requant(PROB_SCALE * v.scale / out.scale),
    )


def merge_attn_head(scores: AttnHeadParams, av: AttnHeadParams) -> AttnHeadParams:
    """One head's full parameters from attn_scores_params() and attn_av_params()."""
    if (scores.tokens, scores.head_dim) != (av.tokens, av.head_dim):
        raise ValueError("score and AV halves disagree on tokens / head_dim")
    return AttnHeadParams(
        tokens=scores.tokens,
        head_dim=scores.head_dim,
        q_offset=scores.q_offset,
        k_offset=scores.k_offset,
        v_offset=av.v_offset,
        score_offset=scores.score_offset,
        out_offset=av.out_offset,
        score=scores.score,
        av=av.av,
    )


def pool_requant(tokens: int, s_y: float, s_pooled: float) -> Requant:
    """Mean pooling: pooled = sum_t (y_t - zp_y) * s_y / (tokens * s_pooled) + zp_pooled."""
    _check_scale("s_y", s_y)
    _check_scale("s_pooled", s_pooled)
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens}")
    return requant(s_y / (tokens * s_pooled))


@dataclass(frozen=True)
class MeanPool:
    """The pooling part of PoolHeadParams (pool_input_offset, pool_output_offset, pool); not a C struct."""

    C_TYPE: ClassVar[str] = ""

    input_offset: int
    output_offset: int
    requant: Requant


def mean_pool_params(tokens: int, s_in: float, zp_in: int, s_out: float, zp_out: int) -> MeanPool:
    """Mean over `tokens` rows of an int8 tensor (s_in, zp_in) into int8 (s_out, zp_out)."""
    _check_zp("zp_in", zp_in)
    _check_zp("zp_out", zp_out)
    return MeanPool(input_offset=-int(zp_in), output_offset=int(zp_out), requant=pool_requant(tokens, s_in, s_out))


def patch_embed_params(
    weight_f: np.ndarray,
    bias_f: np.ndarray | None,
    image_h: int,
    image_w: int,
    channels: int,
    patch: int,
    s_in: float,
    zp_in: int,
    s_out: float,
    zp_out: int,
    pos_f: np.ndarray | None = None,
) -> PatchEmbedParams:
    """Patch embedding with the linear bias and the position embedding folded into token_bias.

    weight_f is (dim, patch*patch*channels) in patch-vector order (py, px, c), as the model's
    ``patch_embed`` Linear. bias_f is (dim,) or already per token (tokens, dim); pos_f
    (tokens, dim) is added to it. Either may be None.
    """
    if patch < 1 or image_h % patch or image_w % patch:
        raise ValueError(f"image {image_h}x{image_w} is not a whole number of {patch}x{patch} patches")
    proj = linear_params(weight_f, None, s_in, zp_in, s_out, zp_out)
    if proj.in_features != patch * patch * channels:
        raise ValueError(f"weight has {proj.in_features} inputs, expected patch*patch*channels")
    dim = proj.out_features
    tokens = (image_h // patch) * (image_w // patch)
    _, s_w = quantize_weights(weight_f)
    real_bias = np.zeros((tokens, dim), dtype=np.float64)
    if bias_f is not None:
        bias_f = np.asarray(bias_f, dtype=np.float64)
        if bias_f.shape not in ((dim,), (tokens, dim)):
            raise ValueError(f"bias has shape {bias_f.shape}, expected {(dim,)} or {(tokens, dim)}")
        real_bias += bias_f
    if pos_f is not None:
        real_bias += np.asarray(pos_f, dtype=np.float64).reshape(tokens, dim)
    token_bias = _quantize_bias(real_bias, (s_in * s_w)[None, :])
    return PatchEmbedParams(
        image_h=int(image_h),
        image_w=int(image_w),
        channels=int(channels),
        patch=int(patch),
        dim=dim,
        proj=proj,
        token_bias=token_bias,
    )


def conv2d_params(
    weight_f: np.ndarray,
    bias_f: np.ndarray | None,
    in_h: int,
    in_w: int,
    in_channels: int,
    stride: int,
    s_in: float,
    zp_in: int,
    s_out: float,
    zp_out: int,
    relu: bool = True,
) -> Conv2dParams:
    """3x3 convolution (weight_f (out, 9*in_channels) in (ky, kx, c) order, BatchNorm already folded);
    ReLU folds into the clamp: act_min = the output's quantized 0 (at least -128)."""
    if stride not in (1, 2):
        raise ValueError(f"conv2d stride must be 1 or 2, got {stride}")
    act_min = max(-128, min(127, int(zp_out))) if relu else -128
    proj = linear_params(weight_f, bias_f, s_in, zp_in, s_out, zp_out, act_min=act_min)
    if proj.in_features != 9 * in_channels:
        raise ValueError(f"conv2d weight has {proj.in_features} inputs, expected 9 * {in_channels}")
    return Conv2dParams(int(in_h), int(in_w), int(in_channels), int(stride), proj)

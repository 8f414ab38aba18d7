"""Row-scratch sizes of the C kernels: the one Python copy of the C ``*_scratch_size()`` formulas.

Each function is named after the C kernel whose scratch it sizes and returns exactly what the C
returns for parameters of those shapes: -1 for a negative size, a tile other than 1, 2 or 4, a shape
the kernel rejects, or a total above INT32_MAX. ``<kernel>_scratch_size`` here is
``mcuf_<kernel>_scratch_size`` in runtime_c/include/mcuf.h (e.g. ``mcuf_attention_rowwise_s8_scratch_size``).
Every sub-buffer is rounded up to 4 bytes, int32 parts first. Tests compare both on random shapes.
"""

from __future__ import annotations

from mcuformer.codegen.qparams import INT32_MAX, LINEAR_MAX_IN, MAX_PREFIX_TOKENS, SOFTMAX_MAX_LENGTH

TILES = (1, 2, 4)  # tokens per pass over the weights (mcuf_mlp_params.tile, mcuf_attention_params.tile)


def align4(n: int) -> int:
    return (n + 3) & ~3


def _sizes_ok(*sizes: int) -> bool:
    """Every part is non-negative and rounds up to 4 without passing INT32_MAX."""
    return all(0 <= n <= INT32_MAX - 3 for n in sizes)


def _total(total: int) -> int:
    return -1 if total > INT32_MAX else total


def linear_tile_s8_scratch_size(in_features: int, tile: int) -> int:
    """mcuf_linear_tile_s8_scratch_size: the tile's inputs as int16 lane pairs, 8 bytes per 4 inputs per row."""
    return 8 * tile * ((in_features + 3) // 4) if tile > 1 else 0


def lowrank_linear_s8_scratch_size(rank: int) -> int:
    """mcuf_lowrank_linear_s8_scratch_size: the int8 [rank] intermediate row (0 when dense)."""
    return align4(rank) if _sizes_ok(rank) else -1


def attention_rowwise_s8_scratch_size(tokens: int, dim: int, qkv_rank: int, tile: int = 1) -> int:
    """mcuf_attention_rowwise_s8: LN rows | qkv_down rows | q rows | scores/probs | concat rows | proj
    rows (`tile` rows each, the scores one row per token of the tile; each rounded to 4) | expanded
    tile inputs | with tile > 1 and a rank, the qkv_down rows of every token (pass 2 reuses them)
    instead of a tile of rank rows."""
    if tile not in TILES or not _sizes_ok(tokens, dim, qkv_rank):
        return -1
    if max(dim, qkv_rank) > LINEAR_MAX_IN or tokens > SOFTMAX_MAX_LENGTH:
        return -1
    cache = tile > 1 and qkv_rank > 0
    rows = align4(tile * dim) + (0 if cache else align4(tile * qkv_rank)) + align4(tile * dim) + align4(tile * tokens)
    rows += align4(tile * dim) + align4(tile * dim) + linear_tile_s8_scratch_size(max(dim, qkv_rank, tokens), tile)
    return _total(rows + (align4(tokens * qkv_rank) if cache else 0))


def attention_perhead_s8_scratch_size(tokens: int, dim: int, qkv_rank: int, heads: int) -> int:
    """mcuf_attention_perhead_s8: LN row | qkv_down row | one head's q row | scores/probs | proj row.
    Its K_h / V_h ([tokens][head_dim] each) and O ([tokens][dim]) buffers are activations, not scratch."""
    if heads < 1 or not _sizes_ok(tokens, dim, qkv_rank):
        return -1
    return _total(align4(dim) + align4(qkv_rank) + align4(dim // heads) + align4(tokens) + align4(dim))


def mlp_rowwise_s8_scratch_size(dim: int, hidden: int, fc1_rank: int, fc2_rank: int, tile: int = 1) -> int:
    """mcuf_mlp_rowwise_s8: LN rows | fc1 mid | hidden | fc2 mid | fc2 out, `tile` rows each |
    expanded tile inputs."""
    if tile not in TILES or not _sizes_ok(dim, hidden, fc1_rank, fc2_rank):
        return -1
    if max(dim, hidden, fc1_rank, fc2_rank) > LINEAR_MAX_IN:
        return -1
    rows = align4(tile * dim) + align4(tile * fc1_rank) + align4(tile * hidden) + align4(tile * fc2_rank)
    return _total(rows + align4(tile * dim) + linear_tile_s8_scratch_size(max(dim, hidden, fc1_rank, fc2_rank), tile))


def patch_embed_s8_scratch_size(image_h: int, image_w: int, channels: int, patch: int, tile: int = 1) -> int:
    """mcuf_patch_embed_s8 (and mcuf_patch_embed_prefix_s8, tile 1): stripe buffer (patch rows of
    the image) | `tile` patch vectors | expanded tile inputs (each rounded to 4)."""
    if min(image_h, image_w, channels, patch) < 0 or tile not in TILES:
        return -1
    vec = patch * patch * channels
    if not _sizes_ok(patch * image_w * channels) or vec > LINEAR_MAX_IN:
        return -1
    return _total(align4(patch * image_w * channels) + align4(tile * vec) + linear_tile_s8_scratch_size(vec, tile))


def conv2d_3x3_s8_scratch_size(in_w: int, in_channels: int) -> int:
    """mcuf_conv2d_3x3_s8: one im2col vector (9 * in_channels) | 3 input rows (3 * in_w * in_channels),
    each rounded to 4; -1 where the C's ranges reject the shape."""
    if in_w < 1 or in_channels < 1 or in_w * in_channels > (INT32_MAX - 3) // 3 or 9 * in_channels > LINEAR_MAX_IN:
        return -1
    return _total(align4(9 * in_channels) + align4(3 * in_w * in_channels))


def pool_head_s8_scratch_size(dim: int) -> int:
    """mcuf_pool_head_s8: int32 accumulators [dim] | LN row | pooled row (int8 parts rounded to 4)."""
    return _total(4 * dim + align4(dim) + align4(dim)) if _sizes_ok(dim) else -1


def pool_norm_head_s8_scratch_size(dim: int) -> int:
    """mcuf_pool_norm_head_s8: int32 accumulators [dim] | pooled row | LN row (the pool head's layout)."""
    return pool_head_s8_scratch_size(dim)


def token_head_s8_scratch_size(readout: int, dim: int) -> int:
    """mcuf_token_head_s8: the readout rows, readout * dim int8, rounded to 4."""
    if dim < 0 or not 0 <= readout <= MAX_PREFIX_TOKENS:
        return -1
    return _total(align4(readout * dim))

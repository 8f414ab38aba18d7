"""Row-scratch sizes of the fused C kernels, from shapes alone (the search's cost model has no weights).

These are the formulas of the C ``mcuf_*_scratch_size()`` functions (runtime_c); tests check that
both agree on random shapes. Every sub-buffer is rounded up to 4 bytes, int32 parts first.
"""

from __future__ import annotations

from mcuformer.codegen.ir import Graph, Node, Op


def align4(n: int) -> int:
    return (n + 3) & ~3


def lowrank(rank: int) -> int:
    return align4(rank)


TILES = (1, 2, 4)  # tokens per pass over the weights (mcuf_mlp_params.tile, mcuf_attention_params.tile)


def linear_tile(in_features: int, tile: int) -> int:
    """mcuf_linear_tile_scratch_size: the tile's inputs as int16 lane pairs, 8 bytes per 4 inputs per row."""
    return 8 * tile * ((in_features + 3) // 4) if tile > 1 else 0


def attention(tokens: int, dim: int, qkv_rank: int, tile: int = 1) -> int:
    # LN rows, rank rows, q rows, score rows (softmax in place), concatenated heads, proj rows,
    # expanded tile inputs; with tile > 1 and a rank, the qkv_down rows of every token (pass 2 reuses
    # them) instead of a tile of rank rows
    cache = tile > 1 and qkv_rank > 0
    rows = align4(tile * dim) + (0 if cache else align4(tile * qkv_rank)) + align4(tile * dim) + align4(tile * tokens)
    rows += align4(tile * dim) + align4(tile * dim) + linear_tile(max(dim, qkv_rank), tile)
    return rows + (align4(tokens * qkv_rank) if cache else 0)


def attention_perhead(tokens: int, dim: int, qkv_rank: int, head_dim: int) -> int:
    """Per-head schedule (mcuf_attention_perhead_s8): LN row, rank row, one head's q row, scores, proj row.

    Its K_h / V_h ([tokens][head_dim] each) and O ([tokens][dim]) buffers are activations, not scratch.
    """
    return align4(dim) + align4(qkv_rank) + align4(head_dim) + align4(tokens) + align4(dim)


def mlp(dim: int, hidden: int, fc1_rank: int, fc2_rank: int, tile: int = 1) -> int:
    rows = align4(tile * dim) + align4(tile * fc1_rank) + align4(tile * hidden) + align4(tile * fc2_rank)
    return rows + align4(tile * dim) + linear_tile(max(dim, hidden, fc1_rank, fc2_rank), tile)


def patch_embed(patch: int, image_w: int, channels: int, tile: int = 1) -> int:
    vec = patch * patch * channels
    return align4(patch * image_w * channels) + align4(tile * vec) + linear_tile(vec, tile)


def pool_head(dim: int) -> int:
    return 4 * dim + align4(dim) + align4(dim)


def token_head(readout: int, dim: int) -> int:
    return align4(readout * dim)


def for_fused(op: Op, body: tuple[Node, ...], graph: Graph, tile: int = 1) -> int:
    """Scratch bytes of a fused node; `tile` is its token tile (patch embedding, MLP, row-wise attention)."""
    by_role = {n.attrs.role: n for n in body}

    def shape(name: str) -> tuple[int, ...]:
        return graph.tensors[name].shape

    def rank_of(prefix: str) -> int:
        down = by_role.get(prefix + ".down")
        return down.attrs.out_features if down else 0

    if op == Op.FUSED_PATCH_EMBED:
        h, w, c = shape(by_role["proj"].inputs[0])
        return patch_embed(by_role["proj"].attrs.patch, w, c, tile)
    if op == Op.FUSED_ATTENTION:
        tokens, dim = shape(by_role["ln"].inputs[0])
        down = by_role.get("qkv_down")
        return attention(tokens, dim, down.attrs.out_features if down else 0, tile)
    if op == Op.FUSED_MLP:
        _, dim = shape(by_role["ln"].inputs[0])
        hidden = shape(by_role["gelu"].inputs[0])[1]
        return mlp(dim, hidden, rank_of("fc1"), rank_of("fc2"), tile)
    if op in (Op.FUSED_POOL_HEAD, Op.FUSED_POOL_NORM_HEAD):  # same layout: acc | two int8 rows
        return pool_head(shape(by_role["ln"].inputs[0])[1])
    if op == Op.FUSED_TOKEN_HEAD:
        return token_head(1, shape(by_role["readout"].outputs[0])[1])
    raise ValueError(op)

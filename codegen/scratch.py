"""Row-scratch sizes of the fused C kernels, from shapes alone (the search's cost model has no weights).

These are the formulas of the C ``mcuf_*_scratch_size()`` functions (runtime_c); tests check that
both agree on random shapes. Every sub-buffer is rounded up to 4 bytes, int32 parts first.
"""

from __future__ import annotations

from codegen.ir import Graph, Node, Op


def align4(n: int) -> int:
    return (n + 3) & ~3


def lowrank(rank: int) -> int:
    return align4(rank)


def attention(tokens: int, dim: int, qkv_rank: int) -> int:
    # LN row, rank row, q row, one row of scores (softmax in place), concatenated heads, proj row
    return align4(dim) + align4(qkv_rank) + align4(dim) + align4(tokens) + align4(dim) + align4(dim)


def attention_perhead(tokens: int, dim: int, qkv_rank: int, head_dim: int) -> int:
    """Per-head schedule (mcuf_attention_perhead_s8): LN row, rank row, one head's q row, scores, proj row.

    Its K_h / V_h ([tokens][head_dim] each) and O ([tokens][dim]) buffers are activations, not scratch.
    """
    return align4(dim) + align4(qkv_rank) + align4(head_dim) + align4(tokens) + align4(dim)


def mlp(dim: int, hidden: int, fc1_rank: int, fc2_rank: int) -> int:
    return align4(dim) + align4(fc1_rank) + align4(hidden) + align4(fc2_rank) + align4(dim)


def patch_embed(patch: int, image_w: int, channels: int) -> int:
    return align4(patch * image_w * channels) + align4(patch * patch * channels)


def pool_head(dim: int) -> int:
    return 4 * dim + align4(dim) + align4(dim)


def token_head(readout: int, dim: int) -> int:
    return align4(readout * dim)


def for_fused(op: Op, body: tuple[Node, ...], graph: Graph) -> int:
    by_role = {n.attrs.role: n for n in body}

    def shape(name: str) -> tuple[int, ...]:
        return graph.tensors[name].shape

    def rank_of(prefix: str) -> int:
        down = by_role.get(prefix + ".down")
        return down.attrs.out_features if down else 0

    if op == Op.FUSED_PATCH_EMBED:
        h, w, c = shape(by_role["proj"].inputs[0])
        return patch_embed(by_role["proj"].attrs.patch, w, c)
    if op == Op.FUSED_ATTENTION:
        tokens, dim = shape(by_role["ln"].inputs[0])
        down = by_role.get("qkv_down")
        return attention(tokens, dim, down.attrs.out_features if down else 0)
    if op == Op.FUSED_MLP:
        _, dim = shape(by_role["ln"].inputs[0])
        hidden = shape(by_role["gelu"].inputs[0])[1]
        return mlp(dim, hidden, rank_of("fc1"), rank_of("fc2"))
    if op in (Op.FUSED_POOL_HEAD, Op.FUSED_POOL_NORM_HEAD):  # same layout: acc | two int8 rows
        return pool_head(shape(by_role["ln"].inputs[0])[1])
    if op == Op.FUSED_TOKEN_HEAD:
        return token_head(1, shape(by_role["readout"].outputs[0])[1])
    raise ValueError(op)

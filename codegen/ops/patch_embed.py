"""patch_embed: image (H, W, C) -> tokens (K + T, E): the patch projection with the position embedding
folded into a per-token bias, after K constant prefix rows (class / distillation tokens) if any."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.base import Features, PrimitiveOp, TrainContext, register, zeros_s8, zeros_s32


def patchify_hwc(images: np.ndarray, patch: int) -> np.ndarray:
    """(B, H, W, C) -> (B, T, P*P*C), patch vectors ordered (py, px, c), tokens row-major."""
    b, h, w, c = images.shape
    g_h, g_w = h // patch, w // patch
    x = images.reshape(b, g_h, patch, g_w, patch, c).swapaxes(2, 3)  # numpy arrays and torch tensors alike
    return x.reshape(b, g_h * g_w, patch * patch * c)


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    a = node.attrs
    x = patchify_hwc(args[0], a.patch) @ a.weight.T + a.bias[None]
    if a.prefix is None:
        return x
    return np.concatenate([np.broadcast_to(a.prefix, (len(x), *a.prefix.shape)), x], axis=1)


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    a, src, out = node.attrs, q[node.inputs[0]], q[node.outputs[0]]
    h, w, c = graph.tensors[node.inputs[0]].shape
    embed = qp.patch_embed_params(
        a.weight, a.bias, h, w, c, a.patch, src.scale, src.zero_point, out.scale, out.zero_point
    )
    if a.prefix is None:
        return embed
    prefix = qp.quantize_tensor(a.prefix, out.scale, out.zero_point)  # rows of the residual stream
    return qp.PatchEmbedPrefixParams(embed=embed, prefix_tokens=len(prefix), prefix=prefix)


def _train_forward(node: Node, args: list, ctx: TrainContext):
    """The patch projection with the per-token bias (position embedding folded in) on the int32 grid."""
    import torch

    from mcuformer.codegen.fake_quant import linear_forward  # lazy: torch, for training only

    x = linear_forward(ctx, node, patchify_hwc(args[0], node.attrs.patch))  # (B, T, E)
    if node.attrs.prefix is not None:
        prefix = ctx.param(node, "prefix")
        x = torch.cat([prefix.expand(len(x), *prefix.shape), x], dim=1)
    return ctx.output(node, x)


def embed_image(kernel: KernelParams, image: np.ndarray) -> np.ndarray:
    """One int8 HWC image -> its token matrix (mcuf_patch_embed_s8 or mcuf_patch_embed_prefix_s8)."""
    if isinstance(kernel, qp.PatchEmbedPrefixParams):
        return ref.patch_embed_prefix(kernel, image)
    assert isinstance(kernel, qp.PatchEmbedParams)
    return ref.patch_embed(kernel, image)


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    assert node.kernel is not None
    return np.stack([embed_image(node.kernel, image) for image in args[0]])


def _shape_key(node: Node, graph: Graph) -> tuple[int, ...]:
    h, w, c = graph.tensors[node.inputs[0]].shape
    prefix = 0 if node.attrs.prefix is None else len(node.attrs.prefix)
    return h, w, c, node.attrs.patch, graph.tensors[node.outputs[0]].shape[1], prefix


def params_for_shapes(h: int, w: int, c: int, patch: int, dim: int, prefix: int) -> KernelParams:
    vec = patch * patch * c
    proj = qp.LinearParams(vec, dim, 0, 0, -128, 127, zeros_s8(dim, vec), None, zeros_s32(dim), zeros_s32(dim))
    tokens = (h // patch) * (w // patch)
    embed = qp.PatchEmbedParams(h, w, c, patch, dim, proj, zeros_s32(tokens, dim))
    return qp.PatchEmbedPrefixParams(embed, prefix, zeros_s8(prefix, dim)) if prefix else embed


def _features(node: Node, graph: Graph) -> Features:
    tokens, dim = graph.tensors[node.outputs[0]].shape
    vec = node.attrs.patch * node.attrs.patch * graph.tensors[node.inputs[0]].shape[2]
    return {"macs": tokens * dim * vec, "outputs": tokens * dim, "rows": tokens}


PATCH_EMBED = register(
    PrimitiveOp(
        Op.PATCH_EMBED,
        _evaluate,
        _quantize,
        _reference,
        _shape_key,
        params_for_shapes,
        _features,
        train_forward=_train_forward,
    )
)

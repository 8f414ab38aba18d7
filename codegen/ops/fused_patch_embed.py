"""fused_patch_embed: the patch embedding run stripe by stripe from the input callback
(mcuf_patch_embed_s8, token-tiled; mcuf_patch_embed_prefix_s8 first writes the prefix rows), or, in a
model with a convolutional stem, from the stem's feature map in the arena (mcuf_memory_reader)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen import scratch
from mcuformer.codegen.ir import FusedDims, Graph, KernelParams, Node, Op, Role, Schedule
from mcuformer.codegen.ops.base import Body, CallContext, FusedOp, Step, register
from mcuformer.codegen.ops.conv2d import stripe_source
from mcuformer.codegen.ops.patch_embed import embed_image


@dataclass(frozen=True)
class PatchEmbedDims(FusedDims):
    image_h: int
    image_w: int
    channels: int
    patch: int
    streamed: bool = True  # the input is the model's streamed image (else the stem's feature map in the arena)


def _dims(body: Body, graph: Graph) -> FusedDims:
    proj = body[Role.PROJ]
    h, w, c = graph.tensors[proj.inputs[0]].shape
    tokens, dim = graph.tensors[proj.outputs[0]].shape
    return PatchEmbedDims(tokens, dim, h, w, c, proj.attrs.patch, proj.inputs[0] in graph.streamed_inputs)


def _scratch(dims: FusedDims, variant: Schedule, tile: int) -> int:
    assert isinstance(dims, PatchEmbedDims)
    return scratch.patch_embed_s8_scratch_size(dims.image_h, dims.image_w, dims.channels, dims.patch, tile)


def _build_kernel(node: Node, kernels: Mapping[Role, KernelParams]) -> KernelParams:
    return kernels[Role.PROJ]


def _reference(node: Node, image: np.ndarray) -> np.ndarray:
    assert node.kernel is not None
    return embed_image(node.kernel, image)


def _call_args(node: Node, c: CallContext) -> tuple[str, ...]:
    assert isinstance(node.dims, PatchEmbedDims)
    return (c.params, *stripe_source(node.dims.streamed, node.inputs[0], c), c.scratch, c.arena(node.outputs[0]))


def _variant(body: Body) -> Schedule:
    return Schedule.DEFAULT if body[Role.PROJ].attrs.prefix is None else Schedule.PREFIX_TOKENS


FUSED_PATCH_EMBED = register(
    FusedOp(
        Op.FUSED_PATCH_EMBED,
        patterns=((Step(Op.PATCH_EMBED),),),
        dims=_dims,
        build_kernel=_build_kernel,
        reference=_reference,
        kernels={Schedule.DEFAULT: "mcuf_patch_embed_s8", Schedule.PREFIX_TOKENS: "mcuf_patch_embed_prefix_s8"},
        call_args=_call_args,
        scratch_bytes=_scratch,
        variant=_variant,
        tiled_variants=frozenset({Schedule.DEFAULT}),  # mcuf_patch_embed_prefix_s8 has no tile
    )
)

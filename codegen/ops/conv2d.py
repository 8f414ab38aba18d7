"""conv2d: one layer of the convolutional stem, a 3x3 convolution (padding 1, stride 1 or 2) with its
BatchNorm folded in (by the frontend) and ReLU folded into the requantization clamp; int8 HWC in and
out, per-output-channel weights, int32 bias (mcuf_conv2d_3x3_s8).

The fused op runs it row by row through a stripe reader with a rolling buffer of 3 input rows: from
the model's input callback for the first layer (the image is never held), from the previous layer's
feature map in the arena (``mcuf_memory_reader``) for the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref, scratch
from mcuformer.codegen.ir import FusedDims, Graph, KernelParams, Node, Op, QParams, Role, Schedule
from mcuformer.codegen.ops.base import (
    Body,
    CallContext,
    Features,
    FusedOp,
    PrimitiveOp,
    Step,
    TrainContext,
    register,
    zeros_s8,
    zeros_s32,
)


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """Float: (B, H, W, C) -> (B, H', W', C'), zero padding, then ReLU."""
    a = node.attrs
    cols = ref.im2col_3x3(np.asarray(args[0], dtype=np.float64), a.stride, 0.0)
    return np.maximum(cols @ a.weight.T + a.bias, 0.0)


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    a, src, out = node.attrs, q[node.inputs[0]], q[node.outputs[0]]
    h, w, c = graph.tensors[node.inputs[0]].shape
    return qp.conv2d_params(a.weight, a.bias, h, w, c, a.stride, src.scale, src.zero_point, out.scale, out.zero_point)


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(node.kernel, qp.Conv2dParams)
    return ref.conv2d(node.kernel, args[0])


def _train_forward(node: Node, args: list, ctx: TrainContext):
    """(B, H, W, C) -> (B, H', W', C'): fake-quantized weights and bias, zero padding (the input's zero
    point in the kernel), ReLU, the output's grid."""
    import torch.nn.functional as F

    from mcuformer.codegen.fake_quant import fake_quant_bias, fake_quant_weight  # lazy: torch, for training only

    x = args[0].permute(0, 3, 1, 2)  # NCHW
    w, s_w = fake_quant_weight(ctx.param(node, "weight"), ctx.weight_qmax(node))  # (C', 9C) in (ky, kx, c)
    kernel = w.reshape(len(w), 3, 3, x.shape[1]).permute(0, 3, 1, 2)
    bias = fake_quant_bias(ctx.param(node, "bias"), ctx.qparams(node.inputs[0]).scale * s_w)
    y = F.relu(F.conv2d(x, kernel, bias, stride=node.attrs.stride, padding=1))
    return ctx.output(node, y.permute(0, 2, 3, 1))


def _shape_key(node: Node, graph: Graph) -> tuple[int, ...]:
    h, w, c = graph.tensors[node.inputs[0]].shape
    return h, w, c, node.attrs.stride, graph.tensors[node.outputs[0]].shape[2]


def params_for_shapes(h: int, w: int, c: int, stride: int, out_channels: int) -> KernelParams:
    proj = qp.LinearParams(
        9 * c,
        out_channels,
        0,
        0,
        -128,
        127,
        zeros_s8(out_channels, 9 * c),
        zeros_s32(out_channels),
        zeros_s32(out_channels),
        zeros_s32(out_channels),
    )
    return qp.Conv2dParams(h, w, c, stride, proj)


def _features(node: Node, graph: Graph) -> Features:
    out_h, out_w, out_c = graph.tensors[node.outputs[0]].shape
    vec = 9 * graph.tensors[node.inputs[0]].shape[2]
    pixels = out_h * out_w
    return {"macs": pixels * out_c * vec, "outputs": pixels * out_c, "rows": pixels}


CONV2D = register(
    PrimitiveOp(
        Op.CONV2D,
        _evaluate,
        _quantize,
        _reference,
        _shape_key,
        params_for_shapes,
        _features,
        train_forward=_train_forward,
    )
)


@dataclass(frozen=True)
class Conv2dDims(FusedDims):
    """tokens: output pixels, dim: output channels."""

    in_h: int
    in_w: int
    in_channels: int
    stride: int
    streamed: bool  # the input is the model's streamed image (else a feature map in the arena)


def _dims(body: Body, graph: Graph) -> FusedDims:
    conv = body[Role.NONE]
    h, w, c = graph.tensors[conv.inputs[0]].shape
    out_h, out_w, out_c = graph.tensors[conv.outputs[0]].shape
    streamed = conv.inputs[0] in graph.streamed_inputs
    return Conv2dDims(out_h * out_w, out_c, h, w, c, conv.attrs.stride, streamed)


def _scratch(dims: FusedDims, variant: Schedule, tile: int) -> int:
    assert isinstance(dims, Conv2dDims)
    return scratch.conv2d_3x3_s8_scratch_size(dims.in_w, dims.in_channels)


def stripe_source(streamed: bool, tensor: str, c: CallContext) -> tuple[str, str]:
    """The (reader, ctx) arguments of a kernel that reads ``tensor`` stripe by stripe: the model's
    input callback, or mcuf_memory_reader over the tensor in the arena."""
    return ("read", "ctx") if streamed else ("mcuf_memory_reader", c.arena(tensor))


def _call_args(node: Node, c: CallContext) -> tuple[str, ...]:
    assert isinstance(node.dims, Conv2dDims)
    return (c.params, *stripe_source(node.dims.streamed, node.inputs[0], c), c.scratch, c.arena(node.outputs[0]))


def _fused_reference(node: Node, image: np.ndarray) -> np.ndarray:
    assert isinstance(node.kernel, qp.Conv2dParams)
    return ref.conv2d(node.kernel, image)


FUSED_CONV2D = register(
    FusedOp(
        Op.FUSED_CONV2D,
        patterns=((Step(Op.CONV2D),),),
        dims=_dims,
        build_kernel=lambda node, kernels: kernels[Role.NONE],
        reference=_fused_reference,
        kernels={Schedule.DEFAULT: "mcuf_conv2d_3x3_s8"},
        call_args=_call_args,
        scratch_bytes=_scratch,
    )
)

"""layernorm: (T, E) -> (T, E) over the last axis, integer (mcuf_layernorm_s8, the model's epsilon)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from mcuformer.codegen import qparams as qp
from mcuformer.codegen import ref
from mcuformer.codegen.ir import Graph, KernelParams, Node, Op, QParams
from mcuformer.codegen.ops.base import Features, PrimitiveOp, TrainContext, register, zeros_s32


def _evaluate(node: Node, args: list[np.ndarray]) -> np.ndarray:
    a, x = node.attrs, args[0]
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + a.eps) * a.gamma + a.beta


def _quantize(node: Node, q: Mapping[str, QParams], graph: Graph) -> KernelParams:
    a, src, out = node.attrs, q[node.inputs[0]], q[node.outputs[0]]
    return qp.layernorm_params(a.gamma, a.beta, src.scale, src.zero_point, out.scale, out.zero_point, eps=a.eps)


def _reference(node: Node, args: list[np.ndarray]) -> np.ndarray:
    assert isinstance(node.kernel, qp.LayerNormParams)
    return ref.layernorm(node.kernel, args[0])


def _train_forward(node: Node, args: list, ctx: TrainContext):
    """The kernel's integer normalisation ((x - mean) / sigma in Q12, its epsilon), gamma and beta on
    their fixed-point grids; the output rounded as the requantization does (gradient: float LayerNorm)."""
    import torch

    from mcuformer.codegen.fake_quant import round_ste, straight_through, to_int  # lazy: torch, for training only

    x, src = args[0], ctx.qparams(node.inputs[0])
    gamma, beta = ctx.param(node, "gamma"), ctx.param(node, "beta")
    mean = x.mean(dim=-1, keepdim=True)
    soft = (x - mean) / torch.sqrt(x.var(dim=-1, unbiased=False, keepdim=True) + node.attrs.eps)
    epsilon = qp.layernorm_epsilon(node.attrs.eps, x.shape[-1], src.scale)
    n = ref.layernorm_normalized(to_int(x, src), epsilon)  # offsets cancel: (x - mean) is shift-invariant
    z = straight_through(soft, torch.as_tensor(n / 2.0**qp.LN_NORM_BITS, dtype=x.dtype))
    g_exp = qp.layernorm_gamma_exponent(float(gamma.detach().abs().max()), float(beta.detach().abs().max()))
    g_step, b_step = 2.0**g_exp, 2.0 ** (qp.LN_NORM_BITS + g_exp)
    return ctx.output(node, z * (round_ste(gamma * g_step) / g_step) + round_ste(beta * b_step) / b_step)


def _shape_key(node: Node, graph: Graph) -> tuple[int, ...]:
    return (graph.tensors[node.inputs[0]].shape[1],)


def params_for_shapes(dim: int) -> KernelParams:
    return qp.LayerNormParams(dim, 0, 0, zeros_s32(dim), zeros_s32(dim), qp.Requant(0, 0))


def _features(node: Node, graph: Graph) -> Features:
    return {"norm": math.prod(graph.tensors[node.inputs[0]].shape)}


LAYERNORM = register(
    PrimitiveOp(
        Op.LAYERNORM,
        _evaluate,
        _quantize,
        _reference,
        _shape_key,
        params_for_shapes,
        _features,
        train_forward=_train_forward,
    )
)

"""Frontend: the static ViT (or just its ArchConfig, for the search's cost model) -> primitive float IR."""

from __future__ import annotations

import numpy as np

from codegen.ir import Attrs, Graph, Node, Op, Tensor
from mcuformer.arch import ArchConfig
from mcuformer.model import LN_EPS

Weights = dict[str, np.ndarray]


def from_torch(model) -> Graph:  # model: mcuformer.model.ViT (torch imported lazily by callers)
    weights = {name: value.detach().cpu().double().numpy() for name, value in model.state_dict().items()}
    return build_graph(model.arch, weights)


def build_graph(arch: ArchConfig, weights: Weights | None = None) -> Graph:
    """Build the primitive graph. With ``weights=None`` the graph has shapes only (no arrays)."""
    t, e = arch.tokens, arch.embed_dim
    tensors: dict[str, Tensor] = {}
    nodes: list[Node] = []

    def w(name: str) -> np.ndarray | None:
        return None if weights is None else weights[name]

    def tensor(name: str, *shape: int) -> str:
        tensors[name] = Tensor(name, tuple(shape))
        return name

    def linear(scope: str, role: str, src: str, dst: str, prefix: str, in_f: int, out_f: int, bias: bool) -> None:
        attrs = Attrs(
            weight=w(prefix + ".weight"),
            bias=w(prefix + ".bias") if bias else None,
            in_features=in_f,
            out_features=out_f,
            role=role,
        )
        nodes.append(Node(f"{scope}.{role}", Op.LINEAR, (src,), (dst,), attrs, scope))

    def maybe_lowrank(scope: str, role: str, src: str, dst: str, prefix: str, in_f: int, out_f: int, rank: int):
        if rank == 0:
            linear(scope, role, src, dst, prefix, in_f, out_f, bias=True)
            return
        mid = tensor(f"{scope}.{role}_mid", t, rank)
        linear(scope, role + ".down", src, mid, prefix + ".down", in_f, rank, bias=False)
        linear(scope, role + ".up", mid, dst, prefix + ".up", rank, out_f, bias=True)

    def layernorm(scope: str, role: str, src: str, dst: str, prefix: str) -> None:
        attrs = Attrs(gamma=w(prefix + ".weight"), beta=w(prefix + ".bias"), eps=LN_EPS, role=role)
        nodes.append(Node(f"{scope}.{role}", Op.LAYERNORM, (src,), (dst,), attrs, scope))

    image = tensor("image", arch.image_size, arch.image_size, arch.in_channels)
    x = tensor("x0", t, e)
    token_bias = None
    if weights is not None:
        token_bias = weights["patch_embed.bias"][None, :] + weights["pos_embed"]  # (T, E): pos folded in
    nodes.append(
        Node(
            "patch_embed",
            Op.PATCH_EMBED,
            (image,),
            (x,),
            Attrs(weight=w("patch_embed.weight"), bias=token_bias, patch=arch.patch_size, role="proj"),
            "patch_embed",
        )
    )

    for i in range(arch.depth):
        p, scope = f"blocks.{i}", f"blocks.{i}.attn"
        heads, rank, hidden = arch.num_heads[i], arch.attn_rank[i], arch.mlp_hidden(i)
        y = tensor(f"{scope}.ln", t, e)
        layernorm(scope, "ln", x, y, p + ".ln1")
        qkv_in, qkv_in_dim = y, e
        if rank:
            qkv_in, qkv_in_dim = tensor(f"{scope}.qkv_mid", t, rank), rank
            linear(scope, "qkv_down", y, qkv_in, p + ".attn.qkv_down", e, rank, bias=False)
        q, k, v = (tensor(f"{scope}.{n}", t, e) for n in "qkv")
        for role, dst in (("q", q), ("k", k), ("v", v)):
            linear(scope, role, qkv_in, dst, f"{p}.attn.{role}", qkv_in_dim, e, bias=True)
        scores = tensor(f"{scope}.scores", heads, t, t)
        nodes.append(
            Node(f"{scope}.scores", Op.ATTN_SCORES, (q, k), (scores,), Attrs(heads=heads, role="scores"), scope)
        )
        probs = tensor(f"{scope}.probs", heads, t, t)
        nodes.append(Node(f"{scope}.softmax", Op.SOFTMAX, (scores,), (probs,), Attrs(role="softmax"), scope))
        heads_out = tensor(f"{scope}.av", t, e)
        nodes.append(Node(f"{scope}.av", Op.ATTN_AV, (probs, v), (heads_out,), Attrs(heads=heads, role="av"), scope))
        proj = tensor(f"{scope}.proj", t, e)
        linear(scope, "proj", heads_out, proj, p + ".attn.proj", e, e, bias=True)
        x_attn = tensor(f"{scope}.out", t, e)
        nodes.append(Node(f"{scope}.residual", Op.ADD, (x, proj), (x_attn,), Attrs(role="residual"), scope))
        x = x_attn

        scope = f"blocks.{i}.mlp"
        y = tensor(f"{scope}.ln", t, e)
        layernorm(scope, "ln", x, y, p + ".ln2")
        h = tensor(f"{scope}.fc1", t, hidden)
        maybe_lowrank(scope, "fc1", y, h, p + ".fc1", e, hidden, arch.mlp_rank[i])
        g = tensor(f"{scope}.gelu", t, hidden)
        nodes.append(Node(f"{scope}.gelu", Op.GELU, (h,), (g,), Attrs(role="gelu"), scope))
        f = tensor(f"{scope}.fc2", t, e)
        maybe_lowrank(scope, "fc2", g, f, p + ".fc2", hidden, e, arch.mlp_rank[i])
        x_mlp = tensor(f"{scope}.out", t, e)
        nodes.append(Node(f"{scope}.residual", Op.ADD, (x, f), (x_mlp,), Attrs(role="residual"), scope))
        x = x_mlp

    scope = "head"
    y = tensor("head.ln", t, e)
    layernorm(scope, "ln", x, y, "norm")
    pooled = tensor("head.pool", 1, e)
    nodes.append(Node("head.pool", Op.MEAN_POOL, (y,), (pooled,), Attrs(role="pool"), scope))
    logits = tensor("logits", 1, arch.num_classes)
    linear(scope, "classifier", pooled, logits, "head", e, arch.num_classes, bias=True)
    meta = {"arch": arch, "quantized": False, "streamed_inputs": (image,), "external_outputs": (logits,)}
    return Graph(tensors, tuple(nodes), (image,), (logits,), meta)

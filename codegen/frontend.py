"""Frontend: the static ViT (or just its ArchConfig, for the search's cost model) -> primitive float IR."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mcuformer.arch import ArchConfig, conv_out_size
from mcuformer.codegen.ir import ArchLike, Attrs, Graph, Node, Op, Role, Tensor

Weights = dict[str, np.ndarray]


def from_torch(model) -> Graph:  # model: mcuformer.model.ViT (torch imported lazily by callers)
    from torch import nn

    weights = {name: value.detach().cpu().double().numpy() for name, value in model.state_dict().items()}
    ln_eps = {name: float(m.eps) for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    for i, layer in enumerate(getattr(model, "stem", ())):
        weights[f"stem.{i}.weight"], weights[f"stem.{i}.bias"] = fold_conv_bn(weights, f"stem.{i}", float(layer.bn.eps))
    return build_graph(model.arch, weights, ln_eps)


def fold_conv_bn(weights: Weights, prefix: str, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """A stem layer's conv (out, in, 3, 3, no bias) + BatchNorm (inference statistics) -> the weight
    (out, 9 * in) in im2col order (ky, kx, c) and the bias (out,) of one convolution."""
    w = weights[f"{prefix}.conv.weight"]
    bias = weights.get(f"{prefix}.conv.bias", np.zeros(w.shape[0]))
    scale = weights[f"{prefix}.bn.weight"] / np.sqrt(weights[f"{prefix}.bn.running_var"] + eps)
    folded = (w * scale[:, None, None, None]).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
    return folded, weights[f"{prefix}.bn.bias"] + (bias - weights[f"{prefix}.bn.running_mean"]) * scale


class GraphBuilder:
    """Appends primitive nodes in the frontend's naming scheme; shared with the ONNX importer, so both
    frontends build the same graph shapes (one definition of a block's node sequence)."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []

    def tensor(self, name: str, *shape: int) -> str:
        self.tensors[name] = Tensor(name, tuple(shape))
        return name

    def linear(
        self,
        scope: str,
        role: Role,
        src: str,
        dst: str,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        in_f: int,
        out_f: int,
        has_bias: bool | None = None,
        weight_bits: int = 8,
    ) -> None:
        """``has_bias``: whether the layer has a bias, for a shapes-only graph (default: bias is given).
        ``weight_bits``: 8 or 4 (the layer's weights packed as int4)."""
        has_bias = bias is not None if has_bias is None else has_bias
        attrs = Attrs(
            weight=weight,
            bias=bias,
            has_bias=has_bias,
            in_features=in_f,
            out_features=out_f,
            role=role,
            weight_bits=weight_bits,
        )
        self.nodes.append(Node(f"{scope}.{role}", Op.LINEAR, (src,), (dst,), attrs, scope))

    def layernorm(
        self, scope: str, role: Role, src: str, dst: str, gamma: np.ndarray | None, beta: np.ndarray | None, eps: float
    ) -> None:
        attrs = Attrs(gamma=gamma, beta=beta, eps=eps, role=role)
        self.nodes.append(Node(f"{scope}.{role}", Op.LAYERNORM, (src,), (dst,), attrs, scope))

    def attention_core(self, scope: str, q: str, k: str, v: str, heads: int, tokens: int, dim: int) -> str:
        """scores, softmax, weighted sum: q, k, v (tokens, dim) -> the concatenated heads (tokens, dim)."""
        scores = self.tensor(f"{scope}.scores", heads, tokens, tokens)
        self.nodes.append(
            Node(f"{scope}.scores", Op.ATTN_SCORES, (q, k), (scores,), Attrs(heads=heads, role=Role.SCORES), scope)
        )
        probs = self.tensor(f"{scope}.probs", heads, tokens, tokens)
        self.nodes.append(Node(f"{scope}.softmax", Op.SOFTMAX, (scores,), (probs,), Attrs(role=Role.SOFTMAX), scope))
        heads_out = self.tensor(f"{scope}.av", tokens, dim)
        self.nodes.append(
            Node(f"{scope}.av", Op.ATTN_AV, (probs, v), (heads_out,), Attrs(heads=heads, role=Role.AV), scope)
        )
        return heads_out

    def residual(self, scope: str, x: str, branch: str, tokens: int, dim: int) -> str:
        out = self.tensor(f"{scope}.out", tokens, dim)
        self.nodes.append(Node(f"{scope}.residual", Op.ADD, (x, branch), (out,), Attrs(role=Role.RESIDUAL), scope))
        return out

    def gelu(self, scope: str, src: str, tokens: int, hidden: int, approximate: str = "none") -> str:
        g = self.tensor(f"{scope}.gelu", tokens, hidden)
        self.nodes.append(
            Node(f"{scope}.gelu", Op.GELU, (src,), (g,), Attrs(role=Role.GELU, approximate=approximate), scope)
        )
        return g

    def graph(self, arch: ArchLike, image: str, logits: str) -> Graph:
        """The graph: the image is streamed (not in the arena), the logits belong to the caller."""
        return Graph(
            self.tensors,
            tuple(self.nodes),
            (image,),
            (logits,),
            arch=arch,
            streamed_inputs=(image,),
            external_outputs=(logits,),
        )


def build_graph(arch: ArchConfig, weights: Weights | None = None, ln_eps: Mapping[str, float] | None = None) -> Graph:
    """Build the primitive graph. With ``weights=None`` the graph has shapes only (no arrays).

    ``ln_eps`` maps each LayerNorm's module path (``blocks.0.ln1``, ``norm``) to its epsilon; it is
    required with weights (the integer LayerNorm folds it in), unused without.
    """
    t, e = arch.tokens, arch.embed_dim
    b = GraphBuilder()
    tensor = b.tensor

    def w(name: str) -> np.ndarray | None:
        return None if weights is None else weights[name]

    def linear(
        scope: str, role: Role, src: str, dst: str, prefix: str, in_f: int, out_f: int, bias: bool, bits: int = 8
    ) -> None:
        bias_f = w(prefix + ".bias") if bias else None
        b.linear(scope, role, src, dst, w(prefix + ".weight"), bias_f, in_f, out_f, has_bias=bias, weight_bits=bits)

    def maybe_lowrank(
        scope: str,
        roles: tuple[Role, Role, Role],
        src: str,
        dst: str,
        prefix: str,
        in_f: int,
        out_f: int,
        rank: int,
        bits: int,
    ) -> None:
        """roles: (dense, down, up)."""
        dense, down, up = roles
        if rank == 0:
            linear(scope, dense, src, dst, prefix, in_f, out_f, bias=True, bits=bits)
            return
        mid = tensor(f"{scope}.{dense}_mid", t, rank)
        linear(scope, down, src, mid, prefix + ".down", in_f, rank, bias=False, bits=bits)
        linear(scope, up, mid, dst, prefix + ".up", rank, out_f, bias=True, bits=bits)

    def layernorm(scope: str, role: Role, src: str, dst: str, prefix: str) -> None:
        eps = 0.0
        if weights is not None:
            if ln_eps is None or prefix not in ln_eps:
                raise ValueError(f"no epsilon given for LayerNorm {prefix!r}")
            eps = ln_eps[prefix]
        b.layernorm(scope, role, src, dst, w(prefix + ".weight"), w(prefix + ".bias"), eps)

    image = tensor("image", arch.image_size, arch.image_size, arch.in_channels)
    features, size = image, arch.image_size
    for i, (width, stride) in enumerate(zip(arch.stem_channels, arch.stem_strides, strict=True)):
        size = conv_out_size(size, stride)
        out = tensor(f"stem.{i}.out", size, size, width)
        attrs = Attrs(weight=w(f"stem.{i}.weight"), bias=w(f"stem.{i}.bias"), stride=stride)
        b.nodes.append(Node(f"stem.{i}", Op.CONV2D, (features,), (out,), attrs, f"stem.{i}"))
        features = out
    x = tensor("x0", t, e)
    token_bias = None
    if weights is not None:
        token_bias = weights["patch_embed.bias"][None, :] + weights["pos_embed"]  # (T, E): pos folded in
    b.nodes.append(
        Node(
            "patch_embed",
            Op.PATCH_EMBED,
            (features,),
            (x,),
            Attrs(weight=w("patch_embed.weight"), bias=token_bias, patch=arch.patch_size, role=Role.PROJ),
            "patch_embed",
        )
    )

    for i in range(arch.depth):
        p, scope = f"blocks.{i}", f"blocks.{i}.attn"
        heads, rank, hidden = arch.num_heads[i], arch.attn_rank[i], arch.mlp_hidden(i)
        bits = arch.bits_of(i)  # every linear of the block: q/k/v (+ down), proj, fc1, fc2 (+ factors)
        y = tensor(f"{scope}.ln", t, e)
        layernorm(scope, Role.LN, x, y, p + ".ln1")
        qkv_in, qkv_in_dim = y, e
        if rank:
            qkv_in, qkv_in_dim = tensor(f"{scope}.qkv_mid", t, rank), rank
            linear(scope, Role.QKV_DOWN, y, qkv_in, p + ".attn.qkv_down", e, rank, bias=False, bits=bits)
        q, k, v = (tensor(f"{scope}.{n}", t, e) for n in "qkv")
        for role, dst in ((Role.Q, q), (Role.K, k), (Role.V, v)):
            linear(scope, role, qkv_in, dst, f"{p}.attn.{role}", qkv_in_dim, e, bias=True, bits=bits)
        heads_out = b.attention_core(scope, q, k, v, heads, t, e)
        proj = tensor(f"{scope}.proj", t, e)
        linear(scope, Role.PROJ, heads_out, proj, p + ".attn.proj", e, e, bias=True, bits=bits)
        x = b.residual(scope, x, proj, t, e)

        scope = f"blocks.{i}.mlp"
        y = tensor(f"{scope}.ln", t, e)
        layernorm(scope, Role.LN, x, y, p + ".ln2")
        h = tensor(f"{scope}.fc1", t, hidden)
        fc1_roles = (Role.FC1, Role.FC1_DOWN, Role.FC1_UP)
        maybe_lowrank(scope, fc1_roles, y, h, p + ".fc1", e, hidden, arch.mlp_rank[i], bits)
        g = b.gelu(scope, h, t, hidden)
        f = tensor(f"{scope}.fc2", t, e)
        fc2_roles = (Role.FC2, Role.FC2_DOWN, Role.FC2_UP)
        maybe_lowrank(scope, fc2_roles, g, f, p + ".fc2", hidden, e, arch.mlp_rank[i], bits)
        x = b.residual(scope, x, f, t, e)

    scope = "head"
    y = tensor("head.ln", t, e)
    layernorm(scope, Role.LN, x, y, "norm")
    pooled = tensor("head.pool", 1, e)
    b.nodes.append(Node("head.pool", Op.MEAN_POOL, (y,), (pooled,), Attrs(role=Role.POOL), scope))
    logits = tensor("logits", 1, arch.num_classes)
    linear(scope, Role.CLASSIFIER, pooled, logits, "head", e, arch.num_classes, bias=True)
    return b.graph(arch, image, logits)

"""Fuse pass: replace each model unit (patch embedding, attention block, MLP block, head) by one fused
node that runs row by row (DESIGN section 4), keeping the primitive nodes as its ``body``.

The fused node declares what the memory planner needs: the residual stream is updated in place
(``inplace``), K and V are per-node ``workspace`` tensors, and ``scratch_bytes`` is the row scratch
of the C kernel (the *_scratch_size contract, mirrored by codegen.scratch).
"""

from __future__ import annotations

from dataclasses import replace

from mcuformer.codegen import scratch
from mcuformer.codegen.ir import Graph, IRError, Node, Op

ALL_HEADS = "all_heads"  # K and V of all heads resident: fewest instructions
PREFIX_TOKENS = "prefix_tokens"  # patch embedding that first writes the class / distillation token rows
PER_HEAD = "per_head"  # K_h and V_h of one head + the head outputs: less memory, LN recomputed per head

# Role sequences each fusion accepts (low-rank variants add the *.down / *.up roles).
_PATTERNS: dict[Op, tuple[tuple[str, ...], ...]] = {
    Op.FUSED_PATCH_EMBED: (("proj",),),
    Op.FUSED_ATTENTION: (
        ("ln", "q", "k", "v", "scores", "softmax", "av", "proj", "residual"),
        ("ln", "qkv_down", "q", "k", "v", "scores", "softmax", "av", "proj", "residual"),
    ),
    Op.FUSED_MLP: tuple(
        ("ln", *fc1, "gelu", *fc2, "residual")
        for fc1 in (("fc1",), ("fc1.down", "fc1.up"))
        for fc2 in (("fc2",), ("fc2.down", "fc2.up"))
    ),
    Op.FUSED_POOL_HEAD: (("ln", "pool", "classifier"),),
    Op.FUSED_TOKEN_HEAD: (("ln", "readout", "classifier"),),
    Op.FUSED_POOL_NORM_HEAD: (("pool", "ln", "classifier"),),
}
_HEAD_OPS = (Op.FUSED_POOL_HEAD, Op.FUSED_TOKEN_HEAD, Op.FUSED_POOL_NORM_HEAD)
_HEADS = {roles: op for op in _HEAD_OPS for roles in _PATTERNS[op]}


def _fused_op(scope: str, roles: tuple[str, ...]) -> Op:
    if scope == "patch_embed":
        return Op.FUSED_PATCH_EMBED
    if scope == "head":  # the readout decides: mean of LN rows, LN of class token rows, or LN of the mean
        return _HEADS.get(roles, Op.FUSED_POOL_HEAD)
    if scope.endswith(".attn"):
        return Op.FUSED_ATTENTION
    if scope.endswith(".mlp"):
        return Op.FUSED_MLP
    raise IRError(f"no fusion for scope '{scope}'")


def _variant(op: Op, body: list[Node]) -> str:
    if op == Op.FUSED_ATTENTION:
        return ALL_HEADS
    if op == Op.FUSED_PATCH_EMBED and body[0].attrs.prefix is not None:
        return PREFIX_TOKENS
    return ""


def _group_by_scope(nodes: tuple[Node, ...]) -> list[list[Node]]:
    groups: list[list[Node]] = []
    for node in nodes:
        if groups and groups[-1][0].scope == node.scope:
            groups[-1].append(node)
        else:
            groups.append([node])
    return groups


def fuse(graph: Graph) -> Graph:
    fused: list[Node] = []
    for body in _group_by_scope(graph.nodes):
        scope = body[0].scope
        roles = tuple(n.attrs.role for n in body)
        op = _fused_op(scope, roles)
        if roles not in _PATTERNS[op]:
            raise IRError(f"{scope}: op sequence {roles} matches no {op.value} pattern")
        by_role = {n.attrs.role: n for n in body}
        produced = {t for n in body for t in n.outputs}
        inputs = tuple(dict.fromkeys(t for n in body for t in n.inputs if t not in produced))
        outputs = (body[-1].outputs[0],)
        inplace: tuple[tuple[str, str], ...] = ()
        workspace: tuple[str, ...] = ()
        if op in (Op.FUSED_ATTENTION, Op.FUSED_MLP):
            inplace = ((by_role["ln"].inputs[0], outputs[0]),)  # token overwriting of the residual stream
        if op == Op.FUSED_ATTENTION:
            workspace = (by_role["k"].outputs[0], by_role["v"].outputs[0])
        node = Node(
            name=scope,
            op=op,
            inputs=inputs,
            outputs=outputs,
            scope=scope,
            body=tuple(body),
            inplace=inplace,
            workspace=workspace,
            scratch_bytes=scratch.for_fused(op, tuple(body), graph),
            variant=_variant(op, body),
        )
        if graph.meta.get("quantized"):
            from mcuformer.codegen.fused_kernels import build_fused_kernel

            node = replace(node, kernel=build_fused_kernel(node, graph))
        fused.append(node)
    return graph.with_nodes(tuple(fused))

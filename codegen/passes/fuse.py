"""Fuse pass: replace each model unit (patch embedding, attention block, MLP block, head: the nodes of
one scope) by one fused node that runs row by row (DESIGN section 4), keeping the primitive nodes as
its ``body``. The fused op is the registered one (codegen.ops) whose pattern is the unit's op
sequence (with roles where the sequence has several nodes of one op).

The fused node declares what the memory planner needs: its dims, in-place pairs (the residual stream
is updated in place), per-node ``workspace`` tensors (K and V), and ``scratch_bytes``, the row
scratch of its C kernel (codegen.scratch).
"""

from __future__ import annotations

from dataclasses import replace

from mcuformer.codegen.ir import Graph, IRError, Node
from mcuformer.codegen.ops import by_role, match_fused


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
    for group in _group_by_scope(graph.nodes):
        body = tuple(group)
        scope = body[0].scope
        definition = match_fused(body)
        if definition is None:
            sequence = [f"{n.op}" + (f" ({n.attrs.role})" if n.attrs.role else "") for n in body]
            raise IRError(f"{scope}: op sequence {sequence} matches no fused op pattern")
        roles = by_role(body)
        produced = {t for n in body for t in n.outputs}
        inputs = tuple(dict.fromkeys(t for n in body for t in n.inputs if t not in produced))
        outputs = (body[-1].outputs[0],)
        dims = definition.dims(roles, graph)
        variant = definition.variant(roles)
        node = Node(
            name=scope,
            op=definition.name,
            inputs=inputs,
            outputs=outputs,
            scope=scope,
            body=body,
            dims=dims,
            inplace=definition.inplace(roles, outputs[0]),
            workspace=definition.workspace(roles),
            scratch_bytes=definition.scratch_bytes(dims, variant, 1),
            variant=variant,
        )
        if graph.quantized:
            kernels = {role: n.kernel for role, n in roles.items() if n.kernel is not None}
            node = replace(node, kernel=definition.build_kernel(node, kernels))
        fused.append(node)
    return graph.with_nodes(tuple(fused))
